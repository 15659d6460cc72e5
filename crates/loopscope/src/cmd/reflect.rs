//! `loopscope reflect LINK`: be the far end, echo everything back.

use std::io::{self, Write};
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use loopscope_link::Endpoint;
use loopscope_link::adapter::AdapterStack;
use loopscope_link::reflector::{
    DEFAULT_RATE_BURST, DEFAULT_RATE_LIMIT_PPS, ReflectConfig, ReflectEvent, ReflectSummary,
    Reflector,
};
use loopscope_link::stats::plural;
use loopscope_report::{Outcome, Printer, Record};
use serde::Serialize;

use crate::Context;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Where to reflect: tcp://[HOST]:PORT, udp://[HOST]:PORT, unix:PATH, unixgram:PATH,
    /// serial:/dev/ttyX?baud=..., pty: (prints the device to open; its plug paces at the speed
    /// the client sets, pty:?pace=0 does not). An empty HOST means 127.0.0.1; port 0 picks a
    /// free port (printed). With --stamp: udp://ADDR[:PORT] (default udp://127.0.0.1:862). With --eth-lb: an
    /// interface.
    #[arg(required_unless_present = "stamp")]
    pub endpoint: Option<String>,
    /// Be a STAMP Session-Reflector (RFC 8762, RFC 8972 TLVs) on the endpoint, behind the same
    /// source-port, echo-loop and rate-limit rules as every datagram service.
    #[arg(long)]
    pub stamp: bool,
    /// --stamp: stateful (RFC 8762 §4.3), numbering each session's replies from 0.
    #[arg(long, requires = "stamp")]
    pub stateful: bool,
    /// --stamp --stateful: a session silent this long starts again from 0.
    #[arg(long, requires = "stateful", default_value = "60s", value_parser = super::ping::parse_duration)]
    pub session_timeout: std::time::Duration,
    /// --stamp: authenticated mode (RFC 8762 §4.2.2) with the key in this file.
    #[arg(long, value_name = "KEYFILE", requires = "stamp")]
    pub auth: Option<std::path::PathBuf>,
    /// --stamp: answer TWAMP-Light senders (RFC 5357 Appendix I).
    #[arg(long, requires = "stamp", conflicts_with = "auth")]
    pub twamp_light: bool,
    /// --stamp: answer sources other than loopback.
    #[arg(long, requires = "stamp")]
    pub allow_remote: bool,
    /// --stamp: reflect under SCHED_FIFO (needs root or CAP_SYS_NICE), so other processes on a
    /// busy host do not hold replies back for a scheduler tick at a time.
    #[arg(long, requires = "stamp")]
    pub realtime: bool,
    /// --stamp: run every reflector a TOML file lists ([[stamp]] tables with listen, stateful,
    /// session_timeout, auth, twamp_light, allow_remote) instead of the endpoint.
    #[arg(
        long,
        value_name = "FILE",
        requires = "stamp",
        conflicts_with = "endpoint"
    )]
    pub config: Option<std::path::PathBuf>,
    /// Plain RFC 862 echo: serve TCP and UDP on the endpoint's port.
    #[arg(long)]
    pub echo: bool,
    /// Impair what is reflected, with the sim: adapter's parameters (e.g. "drop=0.01&seed=1").
    #[arg(long, value_name = "PARAMS")]
    pub impair: Option<String>,
    /// Concurrent stream connections at most (more are closed at once and counted).
    #[arg(long, default_value_t = 1024)]
    pub max_connections: u64,
    /// UDP datagrams per second answered per source address, after a burst of a fifth of that
    /// (at least 200). The default stops a flood from one source; a BERT over UDP needs more:
    /// give 0 (no limit) on a network you trust.
    #[arg(long, default_value_t = DEFAULT_RATE_LIMIT_PPS, value_name = "PPS")]
    pub rate_limit: u32,
    /// Copy stream bytes through user space instead of splice(2).
    #[arg(long)]
    pub no_splice: bool,
    /// Print only where it listens and the final summary (no per-connection lines).
    #[arg(short, long)]
    pub quiet: bool,
    #[command(flatten)]
    pub niu: super::niu::NiuArgs,
    #[command(flatten)]
    pub bfd: super::bfd::ReflectArgs,
    #[command(flatten)]
    pub eth_lb: super::eth_lb::EthLbReflectArgs,
}

#[derive(Serialize)]
pub struct EventRecord(pub ReflectEvent);

impl Record for EventRecord {
    fn kind(&self) -> &'static str {
        match self.0 {
            ReflectEvent::Listening { .. } => "listening",
            ReflectEvent::Connected { .. } => "connected",
            ReflectEvent::Closed { .. } => "closed",
            ReflectEvent::Refused { .. } => "refused",
            ReflectEvent::Error { .. } => "error",
        }
    }

    fn write_human(&self, out: &mut dyn Write) -> io::Result<()> {
        match &self.0 {
            ReflectEvent::Listening { endpoint } => writeln!(out, "reflecting on {endpoint}"),
            ReflectEvent::Connected { peer } => writeln!(out, "connected: {peer}"),
            ReflectEvent::Closed { peer, bytes, error } => match error {
                None => writeln!(out, "closed: {peer} ({bytes} bytes reflected)"),
                Some(e) => writeln!(out, "closed: {peer} ({bytes} bytes reflected): {e}"),
            },
            ReflectEvent::Refused { peer, reason } => writeln!(out, "refused: {peer}: {reason}"),
            ReflectEvent::Error { what } => writeln!(out, "error: {what}"),
        }
    }
}

#[derive(Serialize)]
struct SummaryRecord(ReflectSummary);

impl Record for SummaryRecord {
    fn kind(&self) -> &'static str {
        "summary"
    }

    fn write_human(&self, out: &mut dyn Write) -> io::Result<()> {
        let s = &self.0;
        writeln!(out, "\n--- reflect {} ---", s.endpoints.join(", "))?;
        writeln!(
            out,
            "{} (at most {} at once, {} refused), {} and {} reflected in {:.1} s",
            plural(s.connections, "connection", "connections"),
            s.max_concurrent_connections,
            s.connections_refused,
            plural(s.bytes_reflected, "byte", "bytes"),
            plural(s.datagrams_reflected, "datagram", "datagrams"),
            s.elapsed_s
        )?;
        if s.refused_descriptor_limit > 0 {
            writeln!(
                out,
                "{} refused for want of file descriptors (limit {}, so at most {} connections)",
                plural(s.refused_descriptor_limit, "connection", "connections"),
                s.fd_limit,
                s.connection_limit
            )?;
        }
        let refused = s.refused_source_port
            + s.refused_rate_limit
            + s.refused_unaddressed
            + s.refused_echo_loop
            + s.datagrams_truncated;
        if refused > 0 {
            writeln!(
                out,
                "refused {}: {} by source port, {} by rate limit, {} echoing our replies (a loop), {} unaddressed, {} too long",
                plural(refused, "datagram", "datagrams"),
                s.refused_source_port,
                s.refused_rate_limit,
                s.refused_echo_loop,
                s.refused_unaddressed,
                s.datagrams_truncated
            )?;
        }
        if s.errors > 0 {
            writeln!(out, "errors: {}", s.errors)?;
        }
        Ok(())
    }
}

fn run_stamp(args: &Args, context: &Context) -> anyhow::Result<Outcome> {
    use loopscope_measure::stamp::{self, ReflectorConfig};
    if args.impair.is_some() || args.echo || args.bfd.any() || args.eth_lb.eth_lb {
        anyhow::bail!("--stamp takes none of --impair, --echo, --eth-lb and the BFD options");
    }
    let read_key =
        |path: &std::path::Path| stamp::StampKey::from_file(path).map_err(anyhow::Error::from);
    let specs = match &args.config {
        Some(path) => {
            let text = loopscope_report::read_bounded(path, 1 << 20)
                .map_err(anyhow::Error::from)
                .and_then(|bytes| String::from_utf8(bytes).map_err(anyhow::Error::from))
                .with_context(|| format!("cannot read {}", path.display()))?;
            stamp::parse_reflector_file(&text)
                .with_context(|| format!("{}", path.display()))?
                .into_iter()
                .map(|entry| {
                    Ok(super::stamp::ReflectorSpec {
                        listen: entry.listen,
                        config: ReflectorConfig {
                            allow_remote: entry.allow_remote,
                            drop_every: None,
                            auth: entry.auth.as_deref().map(read_key).transpose()?,
                            twamp_light: entry.twamp_light,
                            stateful_timeout: entry.stateful_timeout,
                            max_request_len: None,
                        },
                    })
                })
                .collect::<anyhow::Result<Vec<_>>>()?
        }
        None => vec![super::stamp::ReflectorSpec {
            listen: args
                .endpoint
                .clone()
                .unwrap_or_else(|| "udp://127.0.0.1:862".to_owned()),
            config: ReflectorConfig {
                allow_remote: args.allow_remote,
                drop_every: None,
                auth: args.auth.as_deref().map(read_key).transpose()?,
                twamp_light: args.twamp_light,
                stateful_timeout: args.stateful.then_some(args.session_timeout),
                max_request_len: None,
            },
        }],
    };
    super::stamp::run_reflectors(specs, args.rate_limit, args.quiet, args.realtime, context)
}

pub fn run(args: Args, context: &Context) -> anyhow::Result<Outcome> {
    if args.stamp {
        return run_stamp(&args, context);
    }
    let endpoint_text = args.endpoint.clone().unwrap_or_default();
    if args.niu.niu.is_some() {
        return super::niu::run(&endpoint_text, &args.niu, context);
    }
    if args.bfd.any() {
        return super::bfd::run_reflect(&endpoint_text, &args.bfd, args.rate_limit, context);
    }
    if args.eth_lb.eth_lb {
        if args.impair.is_some() || args.echo || args.no_splice {
            anyhow::bail!("--eth-lb takes none of --impair, --echo and --no-splice");
        }
        let burst = (args.rate_limit / 5).max(DEFAULT_RATE_BURST);
        return super::eth_lb::run_reflect(
            &endpoint_text,
            &args.eth_lb,
            args.rate_limit,
            burst,
            context,
        );
    }
    let text = if args.echo && !endpoint_text.contains(':') {
        // `--echo 7007`: a bare port.
        format!("tcp://:{endpoint_text}")
    } else {
        endpoint_text.clone()
    };
    let endpoint = Endpoint::parse(&text)?;
    // The same adapter flags as bert and ping; the reflector applies the impairment to each
    // stream and datagram it serves.
    let adapters = AdapterStack::from_flags(false, args.impair.as_deref(), None)
        .with_context(|| format!("--impair {}", args.impair.as_deref().unwrap_or("")))?;
    let config = ReflectConfig {
        max_connections: args.max_connections.max(1),
        rate_limit_pps: args.rate_limit,
        rate_burst: (args.rate_limit / 5).max(DEFAULT_RATE_BURST),
        zero_copy: !args.no_splice,
        impair: adapters.impair,
    };
    let reflector = Reflector::bind(&endpoint, args.echo, config)
        .with_context(|| format!("cannot reflect on '{endpoint_text}'"))?;
    let printer = Arc::new(Mutex::new(Printer::stdout(context.format)));
    let quiet = args.quiet;
    let sink_printer = Arc::clone(&printer);
    let events = Arc::new(move |event: ReflectEvent| {
        // A refusal is a per-connection line too, and one a client can cause at will: with
        // `--quiet` it is only counted (the summary has it), so that no client can make the
        // accept loop wait on a stdout nobody reads.
        let chatty = matches!(
            event,
            ReflectEvent::Connected { .. }
                | ReflectEvent::Closed { .. }
                | ReflectEvent::Refused { .. }
        );
        if quiet && chatty {
            return;
        }
        if let Ok(mut printer) = sink_printer.lock() {
            let _ = printer.emit(&EventRecord(event));
        }
    });
    let summary = reflector.run(Arc::clone(&context.stop), events);
    let failed = summary.errors > 0 && summary.connections == 0 && summary.datagrams_reflected == 0;
    if let Ok(mut printer) = printer.lock() {
        printer.emit(&SummaryRecord(summary))?;
    }
    Ok(if failed {
        Outcome::Failed
    } else {
        Outcome::Passed
    })
}
