//! `loopscope bert LINK --framing esf|sf|e1-crc4|e1`: the framed T1/E1 BERT and the loopback
//! procedure around it (loop-up, BERT, loop-down, confirm).

use std::time::Duration;

use anyhow::{Context as _, bail};
use loopscope_link::adapter::AdapterStack;
use loopscope_measure::framed::{self, FramedAmount, FramedEvent, FramedOptions, LoopCommand};
use loopscope_pattern::framing::{Framing, Timeslots};
use loopscope_pattern::loopcode::InbandCode;
use loopscope_report::{Format, Outcome, Printer};

use super::ping::parse_duration;
use crate::Context;

/// The flags `bert` takes for a framed T1/E1 test.
#[derive(clap::Args, Debug, Clone)]
#[command(next_help_heading = "T1/E1 framing")]
pub struct FramedArgs {
    /// Framed T1/E1 BERT: esf, sf, e1-crc4 or e1. Durations are then line time (bits received
    /// / line rate), and the pattern goes into timeslots most significant bit first.
    #[arg(long, value_name = "FRAMING")]
    pub framing: Option<String>,
    /// Timeslots that carry the pattern: 1-24, 1-12, 1,3,5-7, 6x64k, 6x56k, LIST:56k (default all).
    #[arg(long, value_name = "LIST", requires = "framing")]
    pub timeslots: Option<String>,
    /// Command the far end to loop first: inband, fdl-line, fdl-payload or none (default none:
    /// the link is a loop already).
    #[arg(long, value_name = "METHOD", requires = "framing")]
    pub loop_up: Option<String>,
    /// In-band loop-up code: loop-up (00001), arm (11000), or the code's bits.
    #[arg(long, value_name = "CODE", requires = "framing")]
    pub loop_up_code: Option<String>,
    /// In-band loop-down code: loop-down (001), disarm (11100), or the code's bits.
    #[arg(long, value_name = "CODE", requires = "framing")]
    pub loop_down_code: Option<String>,
    /// Send in-band codes unframed (over the whole line) instead of in every timeslot.
    #[arg(long, requires = "framing")]
    pub unframed_codes: bool,
    /// Leave the loop up at the end (send no loop-down).
    #[arg(long, requires = "framing")]
    pub no_loop_down: bool,
    /// How long to send a loop command and wait for the loop to close or open (line time).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub loop_wait: Duration,
}

fn loop_command(args: &FramedArgs, framing: Framing) -> anyhow::Result<LoopCommand> {
    let codes_given = args.loop_up_code.is_some() || args.loop_down_code.is_some();
    let method = match (&args.loop_up, codes_given) {
        (Some(method), _) => method.trim().to_ascii_lowercase(),
        (None, true) => "inband".into(),
        (None, false) => "none".into(),
    };
    let command = match method.as_str() {
        "none" => LoopCommand::None,
        "inband" | "in-band" => LoopCommand::Inband {
            up: match &args.loop_up_code {
                Some(code) => code.parse::<InbandCode>()?,
                None => InbandCode::loop_up(),
            },
            down: match &args.loop_down_code {
                Some(code) => code.parse::<InbandCode>()?,
                None => InbandCode::loop_down(),
            },
            framed: !args.unframed_codes,
        },
        "fdl-line" => LoopCommand::FdlLine,
        "fdl-payload" => LoopCommand::FdlPayload,
        _ => bail!(
            "unknown --loop-up method '{method}' (expected inband, fdl-line, fdl-payload or none)"
        ),
    };
    if matches!(command, LoopCommand::FdlLine | LoopCommand::FdlPayload) {
        if framing != Framing::Esf {
            bail!("--loop-up {method} sends ESF data-link messages: it needs --framing esf");
        }
        if codes_given {
            bail!("--loop-up-code and --loop-down-code are in-band codes: use --loop-up inband");
        }
    }
    if command == LoopCommand::None && args.unframed_codes {
        bail!("--unframed-codes needs an in-band --loop-up");
    }
    Ok(command)
}

pub fn run(args: &super::bert::Args, context: &Context) -> anyhow::Result<Outcome> {
    let flags = &args.framed;
    let Some(framing_name) = &flags.framing else {
        bail!("--framing is required for a framed test");
    };
    let framing: Framing = framing_name.parse()?;
    let timeslots = match &flags.timeslots {
        Some(text) => Timeslots::parse(text, framing)?,
        None => Timeslots::all(framing),
    };
    let Some(pattern) = args.pattern.spec()? else {
        bail!("--pattern auto does not apply with --framing: name the pattern to send");
    };
    if args.rx_pattern.is_some() {
        bail!("--rx-pattern does not apply with --framing (the pattern sent is the one checked)");
    }
    if args.bits.is_some() || args.bytes.is_some() {
        bail!("with --framing give --duration (line time) or --forever, not --bits or --bytes");
    }
    let command = loop_command(flags, framing)?;
    let amount = match (args.duration, args.forever) {
        (Some(duration), _) => FramedAmount::Duration(duration),
        (None, true) => FramedAmount::Unlimited,
        (None, false) => FramedAmount::Duration(Duration::from_secs(10)),
    };
    let adapters =
        AdapterStack::from_flags(args.modem, args.impair.as_deref(), args.capture.as_deref())
            .context("bad --impair")?;
    let link = adapters
        .open(&loopscope_link::Endpoint::parse(&args.link)?)
        .with_context(|| format!("cannot open link '{}'", args.link))?;
    let mut options = FramedOptions::new(framing, pattern);
    options.timeslots = timeslots;
    options.command = command;
    options.loop_down = !flags.no_loop_down;
    options.amount = amount;
    options.loop_wait = flags.loop_wait;
    options.inject_ber = args.inject_ber;
    options.inject_seed = args.inject_seed;
    options.max_ber = args.max_ber;
    options.confidence = args.confidence;
    options.drain_timeout = args.drain_timeout;

    let mut printer = Printer::stdout(context.format);
    let json = context.format == Format::Json;
    let summary = framed::run(link, &options, &context.stop, &mut |event| {
        if json || !matches!(event, FramedEvent::Second { .. }) {
            let _ = printer.emit(&event);
        }
    })
    .with_context(|| format!("cannot run over '{}'", args.link))?;
    printer.emit(&summary)?;
    Ok(Outcome::from_passed(summary.passed))
}
