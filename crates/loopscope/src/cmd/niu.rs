//! `loopscope reflect --niu t1|e1 LINK`: be a T1/E1 CSU/NIU that loops when commanded.

use std::io::{self, Write};
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use loopscope_link::niu::{self, LoopState, NiuConfig, NiuEvent, NiuLogEntry, NiuStats};
use loopscope_report::{Outcome, Printer, Record};
use serde::Serialize;

use super::ping::parse_duration;
use crate::Context;

/// The flags `reflect` takes to emulate a NIU.
#[derive(clap::Args, Debug, Clone)]
#[command(next_help_heading = "T1/E1 NIU emulation")]
pub struct NiuArgs {
    /// Be a T1/E1 CSU/NIU on LINK (stdio: for an exec: test set): t1 (= esf), esf, sf,
    /// e1-crc4 or e1. It loops on in-band codes and ESF FDL commands; times are line time.
    #[arg(long, value_name = "LINE")]
    pub niu: Option<String>,
    /// Open the loop by itself after this long in loopback (line time), e.g. 20m.
    #[arg(long, value_parser = parse_duration, requires = "niu")]
    pub loop_timeout: Option<Duration>,
    /// How long an in-band code must persist before it is obeyed (line time).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub niu_persistence: Duration,
}

#[derive(Serialize)]
struct EventRecord(NiuLogEntry);

impl Record for EventRecord {
    fn kind(&self) -> &'static str {
        "event"
    }

    fn write_human(&self, out: &mut dyn Write) -> io::Result<()> {
        let time = &self.0.time;
        match &self.0.event {
            NiuEvent::LoopClosed { t_s, mode, by } => {
                let mode = match mode {
                    LoopState::Payload => "payload",
                    _ => "line",
                };
                writeln!(out, "{time} [{t_s:9.3}s] {mode} loopback CLOSED by {by}")
            }
            NiuEvent::LoopOpened { t_s, by } => {
                writeln!(out, "{time} [{t_s:9.3}s] loopback OPENED by {by}")
            }
            NiuEvent::FrameAligned { t_s } => writeln!(out, "{time} [{t_s:9.3}s] frame aligned"),
            NiuEvent::FrameLost { t_s } => writeln!(out, "{time} [{t_s:9.3}s] loss of frame"),
        }
    }
}

#[derive(Serialize)]
struct SummaryRecord {
    endpoint: String,
    #[serde(flatten)]
    stats: NiuStats,
}

impl Record for SummaryRecord {
    fn kind(&self) -> &'static str {
        "summary"
    }

    fn write_human(&self, out: &mut dyn Write) -> io::Result<()> {
        let s = &self.stats;
        writeln!(out, "--- niu {} on {} ---", s.framing, self.endpoint)?;
        writeln!(
            out,
            "{:.3} s of line, {} loops closed, {} opened ({} by timeout), {} payload octets invented",
            s.line_seconds, s.loops_closed, s.loops_opened, s.timeouts, s.payload_underruns
        )
    }
}

pub fn run(endpoint: &str, args: &NiuArgs, context: &Context) -> anyhow::Result<Outcome> {
    let kind = args.niu.as_deref().unwrap_or("t1");
    let framing = NiuConfig::parse_kind(kind).map_err(|why| anyhow!("--niu: {why}"))?;
    let mut config = NiuConfig::new(framing);
    config.loop_timeout = args.loop_timeout.filter(|d| !d.is_zero());
    config.inband_persistence = args.niu_persistence;
    // On stdio the line is stdout: the log goes to stderr.
    let stdio = niu::is_stdio(endpoint);
    let out: Box<dyn Write> = if stdio {
        Box::new(io::stderr())
    } else {
        Box::new(loopscope_report::Stdout::live())
    };
    let mut printer = Printer::new(context.format, out);
    let link = niu::open_line(endpoint).with_context(|| format!("cannot open '{endpoint}'"))?;
    let stats = niu::serve(link, config, &context.stop, &mut |entry| {
        let _ = printer.emit(&EventRecord(entry.clone()));
    })
    .with_context(|| format!("NIU on '{endpoint}'"))?;
    printer.emit(&SummaryRecord {
        endpoint: endpoint.to_string(),
        stats,
    })?;
    Ok(Outcome::Passed)
}
