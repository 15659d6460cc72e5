//! `loopscope ping LINK`: flags to `loopscope_measure::ping`, which pings ICMP echo for
//! `icmp://ADDR` and stamped frames over every other link.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use loopscope_link::adapter::AdapterStack;
use loopscope_link::{Endpoint, EndpointError};
use loopscope_measure::ping::{self, PingConfig, PingEvent, SocketChoice};
use loopscope_report::{Outcome, Printer};

use crate::Context;

#[derive(clap::Args, Debug)]
#[command(after_help = "\
Round trip: from just before the request is handed to the kernel (CLOCK_MONOTONIC read \
immediately before the send call) to the reply's arrival. For icmp:// the arrival is the \
kernel's receive timestamp (SO_TIMESTAMPNS), as iputils ping takes it; over other links it is \
the clock read as soon as the reply is received. Replies are matched to requests by sequence \
number; a reply later than -W counts as lost.")]
pub struct Args {
    /// The link: icmp://127.0.0.1, icmp://[::1], udp://127.0.0.1:7007, tcp://..., serial:..., pty:
    pub endpoint: String,
    #[command(flatten)]
    pub schedule: Schedule,
    /// Payload size in bytes.
    #[arg(short = 's', long, default_value_t = 56)]
    pub size: usize,
    /// ENDPOINT is an audio link (audiosim:, jack:): carry the frames over it with a Bell 202
    /// FSK modem (1200 bit/s).
    #[arg(long)]
    pub modem: bool,
    /// Print only the summary.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// ICMP only: auto (a datagram socket where net.ipv4.ping_group_range allows it, else
    /// raw), raw or dgram. Default: $LOOPSCOPE_ICMP_SOCKET, else auto.
    #[arg(long, value_name = "KIND")]
    pub socket: Option<String>,
    /// Impair the link: the options of sim: (ber=, drop=, loss=, delay=, rate=, seed=...).
    #[arg(long, value_name = "OPTIONS")]
    pub impair: Option<String>,
    /// Write what crosses the link to this pcapng file (tshark and Wireshark read it).
    #[arg(long, value_name = "FILE")]
    pub capture: Option<PathBuf>,
    /// Also write an HTML report with plots (latency histogram, latency over time) to FILE.
    #[arg(long, value_name = "FILE.html")]
    pub report: Option<PathBuf>,
}

/// The request schedule `ping` and `eth-lb` share (the ping engine's): how many requests, how
/// often, how long each reply may take, and how long the whole run may last.
#[derive(clap::Args, Debug)]
pub struct Schedule {
    /// Stop after this many requests (default: until Ctrl-C).
    #[arg(short = 'c', long)]
    pub count: Option<u64>,
    /// Time between requests, e.g. 1s, 200ms, 0 (as fast as replies come back).
    #[arg(short = 'i', long, default_value = "1s", value_parser = parse_duration)]
    pub interval: Duration,
    /// How long to wait for each reply before counting it lost.
    #[arg(short = 'W', long, default_value = "2s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Stop after this long in all.
    #[arg(short = 'w', long, value_parser = parse_duration)]
    pub deadline: Option<Duration>,
}

impl Schedule {
    /// Neither a count nor a deadline: only a signal ends the run.
    pub fn runs_until_stopped(&self) -> bool {
        self.count.is_none() && self.deadline.is_none()
    }

    /// The ping engine's configuration for requests carrying `payload` octets, checked.
    pub fn ping_config(&self, payload: usize) -> anyhow::Result<PingConfig> {
        let config = PingConfig {
            count: self.count,
            interval: self.interval,
            payload,
            timeout: self.timeout,
            deadline: self.deadline,
            stop_after_replies: None,
        };
        config.validate()?;
        Ok(config)
    }
}

pub fn run(args: Args, context: &Context) -> anyhow::Result<Outcome> {
    let endpoint = match Endpoint::parse(&args.endpoint) {
        // `ping 127.0.0.1`, typed as to ping(8): over ICMP is the only thing it can mean.
        Err(EndpointError::BareHost { text, url_host }) => {
            bail!("'{text}' names a host, not a link: did you mean icmp://{url_host}?")
        }
        parsed => parsed?,
    };
    let icmp = endpoint.scheme == "icmp";
    let socket = match (&args.socket, icmp) {
        (Some(_), false) => bail!("--socket applies to icmp:// only"),
        (Some(kind), true) => kind.parse::<SocketChoice>().context("--socket")?,
        (None, true) => SocketChoice::from_env().context("LOOPSCOPE_ICMP_SOCKET")?,
        (None, false) => SocketChoice::Auto,
    };
    let config = args.schedule.ping_config(args.size)?;
    let adapters =
        AdapterStack::from_flags(args.modem, args.impair.as_deref(), args.capture.as_deref())
            .context("bad --impair")?;
    let mut pinger = ping::open(&endpoint, socket, &adapters)
        .with_context(|| format!("cannot ping over '{}'", args.endpoint))?;
    let range = pinger.payload_range();
    if !range.contains(&args.size) {
        bail!(
            "--size {} is out of range: payloads over {} are {}..={} bytes{}",
            args.size,
            args.endpoint,
            range.start(),
            range.end(),
            if icmp {
                " (the first 16 carry the stamp that matches replies)"
            } else {
                ""
            }
        );
    }
    let mut printer = Printer::stdout(context.format);
    if !printer.is_json() {
        loopscope_report::stdout_line!("{}", pinger.banner(args.size))?;
    }
    let quiet = args.quiet;
    let started = std::time::Instant::now();
    let mut replies: Vec<(f64, f64)> = Vec::new();
    let keep_replies = args.report.is_some();
    let outcome = ping::run(
        pinger.as_mut(),
        &config,
        &context.stop,
        &mut |event| match event {
            PingEvent::Reply(reply) => {
                if keep_replies && !reply.duplicate && !reply.corrupt {
                    replies.push((started.elapsed().as_secs_f64(), reply.rtt_us));
                }
                if !quiet {
                    let _ = printer.emit(reply);
                }
            }
            PingEvent::SendFailed(failure) => {
                let _ = printer.emit(failure);
            }
        },
    );
    printer.emit(&outcome.summary)?;
    if let Some(path) = &args.report {
        let mut parameters = vec![
            ("link", args.endpoint.clone()),
            (
                "count",
                args.schedule
                    .count
                    .map_or("until stopped".into(), |c| c.to_string()),
            ),
            ("interval", format!("{:?}", args.schedule.interval)),
            ("size", format!("{} bytes", args.size)),
            ("timeout", format!("{:?}", args.schedule.timeout)),
        ];
        if let Some(deadline) = args.schedule.deadline {
            parameters.push(("deadline", format!("{deadline:?}")));
        }
        if let Some(impair) = &args.impair {
            parameters.push(("impair", impair.clone()));
        }
        let html = loopscope_report::html::ping_report(&parameters, &replies, &outcome.summary)?;
        std::fs::write(path, html)
            .with_context(|| format!("cannot write the report {}", path.display()))?;
    }
    if let Some(failure) = &outcome.link_failure {
        loopscope_report::stderr_line!("loopscope: the link failed mid-run: {failure}");
    }
    Ok(Outcome::from_passed(outcome.summary.passed))
}

pub use loopscope_report::units::parse_duration;
