//! `loopscope martians`: spoofed loopback and other martian packets in captures (pcap,
//! pcapng), on a live interface (AF_PACKET), and in flow exports (NetFlow v5/v9, IPFIX); uRPF
//! verdicts against a routing table. Exit 1 when martians were found, 0 when none, 2 when an
//! input cannot be read.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use loopscope_capture::flowexport::{FlowConfig, FlowScanner};
use loopscope_capture::live::{LiveOptions, run_live};
use loopscope_capture::martians::{DEFAULT_MAX_FLOWS, RateLimit, ScanConfig, Scanner};
use loopscope_capture::urpf::RouteTable;
use loopscope_report::{Outcome, Printer, read_bounded_text};

use super::ping::parse_duration;
use crate::Context;

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Human output lists the busiest martian flows and the totals; --findings (and \
live capture, rate-limited) also prints each martian packet, and --json carries every packet \
as a \"finding\" record. SLL2 captures name interfaces by index: they are shown with this \
host's name for that index.\n\nExit status: 0 no martians, 1 martians found (or packets uRPF \
would drop), 2 an input could not be read or the output could not be written.\n\nExamples:\n  \
loopscope martians capture.pcapng\n  tcpdump -i eth0 -w - | loopscope martians -\n  \
loopscope martians --interface eth0 --duration 60s --urpf-routes kernel\n  \
loopscope martians --flows exports.pcap\n  loopscope martians --collect udp://127.0.0.1:2055 --duration 5m"
)]
pub struct Args {
    /// pcap or pcapng files to scan (link types Ethernet, Linux SLL/SLL2, raw IP, BSD loopback);
    /// `-` or a pipe reads standard input.
    pub files: Vec<PathBuf>,
    /// Capture live on this interface (`any` for all) through an AF_PACKET socket (needs root
    /// or CAP_NET_RAW).
    #[arg(long, short = 'i', conflicts_with_all = ["files", "flows", "collect"])]
    pub interface: Option<String>,
    /// Stop a live capture or collector after this long (e.g. 30s, 5m); default: until Ctrl-C.
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Flow exports to scan: pcap/pcapng captures of NetFlow v5/v9 or IPFIX export packets
    /// (every UDP payload is offered to the parser; the exporter is the packet's source).
    #[arg(long, value_name = "FILE", conflicts_with = "files")]
    pub flows: Vec<PathBuf>,
    /// Receive NetFlow/IPFIX exports on a UDP socket, e.g. udp://127.0.0.1:2055.
    #[arg(long, value_name = "udp://ADDR:PORT", conflicts_with = "files")]
    pub collect: Option<String>,
    /// Write the flagged packets to this pcapng file.
    #[arg(long, value_name = "OUT.pcapng")]
    pub write_matches: Option<PathBuf>,
    /// Check each packet's source with uRPF (RFC 3704) against a routing table: `kernel`
    /// (netlink, every table), `ip -j route show table all` JSON, or lines of
    /// `PREFIX INTERFACE`.
    #[arg(long, value_name = "FILE|kernel")]
    pub urpf_routes: Option<String>,
    /// The interface the packets arrived on when the capture does not name one (pcap files):
    /// used for uRPF and, with --loopback-interface, to know loopback captures (`tcpdump -i lo`
    /// writes Ethernet frames: give `--arrival-interface lo`).
    #[arg(long, value_name = "IF")]
    pub arrival_interface: Option<String>,
    /// Interface names on which loopback traffic is normal.
    #[arg(long, value_name = "IF", default_value = "lo")]
    pub loopback_interface: Vec<String>,
    /// Log at most this many findings per --log-interval, then count the rest (like the
    /// kernel's net_ratelimit). Default: 10 for live capture and --collect, unlimited for files.
    #[arg(long, value_name = "N")]
    pub log_burst: Option<u32>,
    /// The rate-limit window.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub log_interval: Duration,
    /// Print only the flow table and the summary (no per-packet or per-flow findings).
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// Human output: also print every martian packet as it is found (the default for live
    /// capture; --json always carries them).
    #[arg(long, conflicts_with = "quiet")]
    pub findings: bool,
    /// Report the busiest N flows (default: 20 in human output, every tracked flow in JSON).
    #[arg(long, value_name = "N")]
    pub top: Option<usize>,
    /// Track at most this many distinct flows; packets of later flows count in the totals.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_FLOWS)]
    pub max_flows: usize,
    /// Live: also look at packets this host sends.
    #[arg(long)]
    pub include_outgoing: bool,
}

/// A file's findings leave in large writes at the end (line by line on a terminal); live runs
/// flush every record so findings show up as they happen.
fn output(context: &Context, live: bool) -> Printer {
    if live {
        Printer::stdout(context.format)
    } else {
        Printer::stdout_batch(context.format)
    }
}

pub fn run(args: Args, context: &Context) -> anyhow::Result<Outcome> {
    if !args.flows.is_empty() || args.collect.is_some() {
        return run_flows(&args, context);
    }
    if args.files.is_empty() && args.interface.is_none() {
        anyhow::bail!(
            "nothing to scan: give capture files, --interface IF, --flows FILE or --collect udp://ADDR:PORT"
        );
    }
    let routes = match args.urpf_routes.as_deref() {
        None => None,
        Some("kernel") => Some(
            loopscope_capture::kernel_routes::kernel_routes()
                .context("reading the kernel routing tables")?,
        ),
        Some(path) => {
            let text = read_bounded_text(std::path::Path::new(path), MAX_ROUTES_BYTES)?;
            Some(RouteTable::parse(&text).with_context(|| format!("routes file {path}"))?)
        }
    };
    let live = args.interface.is_some();
    let burst = args.log_burst.or(live.then_some(RateLimit::KERNEL.burst));
    let config = ScanConfig {
        loopback_interfaces: args.loopback_interface.clone(),
        routes,
        arrival_interface: args.arrival_interface.clone(),
        rate_limit: burst.map(|burst| RateLimit {
            burst,
            interval_ns: args.log_interval.as_nanos().min(u128::from(u64::MAX)) as u64,
        }),
        quiet: args.quiet,
        human_findings: args.findings || live,
        max_flows: args.max_flows.max(1),
        top_flows: args.top,
    };
    check_inputs(&args.files)?;
    let mut scanner = Scanner::new(output(context, live), config);
    if let Some(path) = &args.write_matches {
        scanner.write_matches(path, &args.files)?;
    }
    if let Some(interface) = &args.interface {
        let options = LiveOptions {
            interface: interface.clone(),
            duration: args.duration,
            include_outgoing: args.include_outgoing,
        };
        run_live(&mut scanner, &options, &context.stop)?;
    } else {
        for path in &args.files {
            if context.stop.load(std::sync::atomic::Ordering::Relaxed) || !scanner.healthy() {
                break;
            }
            scanner.scan_file(path, &context.stop)?;
        }
    }
    // What is still buffered is flushed at the end of main, whose error (a full disk) is the
    // run's error, exit 2.
    let (outcome, _, _stdout) = scanner.finish()?;
    Ok(outcome)
}

/// The largest routes file read (a full Internet table as `ip -j route` is about 100 MB).
const MAX_ROUTES_BYTES: u64 = 256 << 20;

/// Inputs that cannot be read at all are usage errors (exit 2): all are checked before anything
/// is printed. `-` is standard input.
fn check_inputs(paths: &[PathBuf]) -> anyhow::Result<()> {
    for path in paths {
        if path.as_os_str() != "-" {
            std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
        }
    }
    Ok(())
}

fn run_flows(args: &Args, context: &Context) -> anyhow::Result<Outcome> {
    let live = args.collect.is_some();
    let config = FlowConfig {
        quiet: args.quiet,
        rate_limit: args
            .log_burst
            .or(live.then_some(RateLimit::KERNEL.burst))
            .map(|burst| RateLimit {
                burst,
                interval_ns: args.log_interval.as_nanos().min(u128::from(u64::MAX)) as u64,
            }),
        ..FlowConfig::default()
    };
    let mut scanner = FlowScanner::with_config(output(context, live), config);
    check_inputs(&args.flows)?;
    for path in &args.flows {
        scanner.scan_capture(path, &context.stop)?;
    }
    if let Some(endpoint) = &args.collect {
        let address = endpoint
            .strip_prefix("udp://")
            .ok_or_else(|| anyhow::anyhow!("--collect wants udp://ADDR:PORT, got '{endpoint}'"))?;
        let address: std::net::SocketAddr = address.parse().map_err(|_| {
            anyhow::anyhow!("--collect: '{address}' is not ADDR:PORT (e.g. 127.0.0.1:2055)")
        })?;
        scanner.collect(address, args.duration, &context.stop)?;
    }
    // What is still buffered is flushed at the end of main, whose error (a full disk) is the
    // run's error, exit 2.
    let (outcome, _, _stdout) = scanner.finish()?;
    Ok(outcome)
}
