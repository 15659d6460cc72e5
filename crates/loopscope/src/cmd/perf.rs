//! `loopscope perf LINK`: throughput and request-response latency; `--server` is the far end.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, bail};
use loopscope_link::Endpoint;
use loopscope_link::adapter::AdapterStack;
use loopscope_link::transport::ip::{self, IpOptions};
use loopscope_link::transport::unix::unix_address;
use loopscope_measure::perf::{
    ClientOptions, Direction, EchoOptions, Listen, PerfError, PerfEvent, PerfSummary, RrOptions,
    SeriesPoint, SeriesRun, SeriesSummary, ServerEvent, ServerLimits, ServerOptions, SocketTuning,
    Transport, rr, run_client, run_echo, run_server, run_under_load,
};
use loopscope_report::{Outcome, Printer};

use crate::Context;
use loopscope_report::units::{UnitError, parse_duration, parse_rate, parse_size};

/// iperf3's well-known port, which `perf` uses too (it speaks iperf3's protocol).
const DEFAULT_PORT: u16 = 5201;

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Links: tcp://HOST:PORT, udp://HOST:PORT (UDP data, TCP control), unix:PATH \
(a 'loopscope perf --server' or a stock 'iperf3 -s'), iperf3://HOST[:PORT] (a stock iperf3 server, \
strictly its protocol), and any loop (loop:, sim:, exec:CMD, pty:, serial:...): there perf measures \
what comes back. The server speaks iperf3's control protocol: stock 'iperf3 -c' clients use it too."
)]
pub struct Args {
    /// The far end: tcp://HOST:PORT, udp://HOST:PORT, unix:PATH, iperf3://HOST[:PORT], or a loop
    /// link. With --server, where to listen (default tcp://127.0.0.1:5201).
    pub link: Option<String>,
    /// Be the far end: serve perf tests (also from stock iperf3 clients), many at once.
    #[arg(long, short = 's')]
    pub server: bool,
    /// Client: also write an HTML report with plots (throughput per interval) to FILE.
    #[arg(long, value_name = "FILE.html")]
    pub report: Option<std::path::PathBuf>,
    /// With --server: behave as stock iperf3, with no loopscope extension (no grants, no
    /// request-response).
    #[arg(long, requires = "server")]
    pub iperf3: bool,
    /// How long to run.
    #[arg(short = 't', long = "time", default_value = "10s", value_parser = parse_duration)]
    pub time: Duration,
    /// Move this many bytes (over all streams) instead of running for a time.
    #[arg(short = 'n', long, value_parser = parse_size)]
    pub bytes: Option<u64>,
    /// Parallel streams, each on its own thread.
    #[arg(short = 'P', long, default_value_t = 1)]
    pub parallel: u32,
    /// The server sends, the client receives.
    #[arg(short = 'R', long, conflicts_with = "bidir")]
    pub reverse: bool,
    /// Both directions at once (separate streams each way).
    #[arg(long)]
    pub bidir: bool,
    /// Bytes per write (per datagram with UDP). Default 128 KiB for streams; for UDP the
    /// control connection's MSS, as iperf3 does; 1 byte for --rr and --crr.
    #[arg(short = 'l', long, value_parser = parse_size)]
    pub length: Option<u64>,
    /// UDP data streams (the control connection stays TCP).
    #[arg(short = 'u', long)]
    pub udp: bool,
    /// Target bit rate per stream, e.g. 100M, 1.5G (default: unlimited; UDP 1M as iperf3).
    #[arg(short = 'b', long = "bitrate", value_parser = parse_rate)]
    pub bitrate: Option<u64>,
    /// Socket buffer size (SO_SNDBUF/SO_RCVBUF), e.g. 4Mi.
    #[arg(short = 'w', long, value_parser = parse_size)]
    pub window: Option<u64>,
    /// TCP congestion control algorithm (e.g. cubic, bbr).
    #[arg(short = 'C', long)]
    pub congestion: Option<String>,
    /// TCP_NODELAY on data streams.
    #[arg(short = 'N', long)]
    pub nodelay: bool,
    /// TCP maximum segment size.
    #[arg(short = 'M', long = "mss")]
    pub mss: Option<u32>,
    /// Report every interval (0: no interval reports).
    #[arg(short = 'i', long, default_value = "1s", value_parser = parse_duration)]
    pub interval: Duration,
    /// Receive TCP without copying to user space (MSG_TRUNC).
    #[arg(long)]
    pub skip_rx_copy: bool,
    /// Send TCP with MSG_ZEROCOPY (the kernel pins the pages instead of copying them; on
    /// loopback it copies anyway, and the summary says so).
    #[arg(long)]
    pub zerocopy: bool,
    /// Request-response: keep N transactions in flight per stream (N defaults to 1).
    #[arg(long, value_name = "N", num_args = 0..=1, default_missing_value = "1", conflicts_with_all = ["reverse", "bidir"])]
    pub rr: Option<usize>,
    /// Connect-request-response: a new TCP connection for every transaction.
    #[arg(long, conflicts_with_all = ["rr", "reverse", "bidir", "udp"])]
    pub crr: bool,
    /// Latency under load: beside --rr or --crr, run a throughput test of N streams (default 1,
    /// at -b if given) over the same link at the same time.
    #[arg(long, value_name = "N", num_args = 0..=1, default_missing_value = "1")]
    pub under_load: Option<u32>,
    /// Run the test this many times and report the spread (min, median, max, coefficient of
    /// variation).
    #[arg(long, default_value_t = 1)]
    pub repeat: usize,
    /// A run per message length, e.g. 64,1k,16k,128k (with --repeat, that many runs each).
    #[arg(long, value_delimiter = ',', value_parser = parse_size)]
    pub sweep: Option<Vec<u64>>,
    /// Response size of --rr and --crr (default: the request's --length).
    #[arg(long, value_parser = parse_size)]
    pub response_length: Option<u64>,
    /// Impair sent UDP datagrams with the sim: adapter's options (loss=, reorder=, seed=...).
    #[arg(long, value_name = "OPTIONS")]
    pub impair: Option<String>,
    /// UDP sequence numbers on 64 bits (iperf3's --udp-counters-64bit).
    #[arg(long)]
    pub udp_counters_64bit: bool,
    /// Treat a socket link as a loop: send and count what comes back (e.g. to 'loopscope reflect').
    #[arg(long)]
    pub echo: bool,
    /// How long connecting may take.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub connect_timeout: Duration,
    /// Loops: after the last send, how long to wait for the rest to come back.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub drain_timeout: Duration,
    /// Server: tests running at once.
    #[arg(long, default_value_t = 16, requires = "server")]
    pub max_tests: usize,
    /// Server: streams per test.
    #[arg(long, default_value_t = 32, requires = "server")]
    pub max_streams: u32,
    /// Server: longer tests are ended at this point.
    #[arg(long, default_value = "10m", value_parser = parse_duration, requires = "server")]
    pub max_duration: Duration,
    /// Server: bits per second per direction of one test (UDP asking more is refused, TCP is
    /// paced; 0 for no limit).
    #[arg(long, default_value = "40G", value_parser = parse_bit_rate_or_zero, requires = "server")]
    pub max_rate: u64,
    /// Server: buffer memory over all running tests.
    #[arg(long, default_value = "256Mi", value_parser = parse_size, requires = "server")]
    pub max_memory: u64,
    /// Server: serve one test, then exit.
    #[arg(short = '1', long, requires = "server")]
    pub once: bool,
}

/// A rate limit: a bit rate, or 0 for none.
fn parse_bit_rate_or_zero(text: &str) -> Result<u64, UnitError> {
    if text.trim() == "0" {
        return Ok(0);
    }
    parse_rate(text)
}

pub fn run(args: Args, context: &Context) -> anyhow::Result<Outcome> {
    if args.server {
        return serve(&args, context);
    }
    let Some(link) = args.link.clone() else {
        bail!(
            "name the far end (e.g. tcp://127.0.0.1:5201, iperf3://HOST, exec:cat) or give --server"
        );
    };
    if args.parallel == 0 || args.parallel > 128 {
        bail!("-P must be between 1 and 128");
    }
    if args.time.is_zero() && args.bytes.is_none() {
        bail!("--time must be above 0");
    }
    if args.bytes == Some(0) {
        bail!("--bytes must be above 0");
    }
    let endpoint = Endpoint::parse(&link)?;
    let socket_scheme = matches!(endpoint.scheme.as_str(), "tcp" | "udp" | "unix" | "iperf3");
    if args.echo || !socket_scheme {
        return echo(&args, &link, context);
    }
    let stock = endpoint.scheme == "iperf3";
    let udp = args.udp || endpoint.scheme == "udp";
    let transport = if endpoint.scheme == "unix" {
        endpoint.reject_unknown_options(&[])?;
        Transport::Unix(unix_address(&endpoint)?)
    } else {
        endpoint.reject_unknown_options(ip::IP_OPTIONS)?;
        let endpoint = if stock && ip::split_host_port(&endpoint.target).is_none() {
            // iperf3://HOST: the well-known port.
            let with_port = format!("{}:{DEFAULT_PORT}", endpoint.target);
            Endpoint::parse(&format!("iperf3://{with_port}"))?
        } else {
            endpoint.clone()
        };
        Transport::Tcp {
            peers: ip::resolve(&endpoint, None)?,
            source: IpOptions::from_endpoint(&endpoint)?,
        }
    };
    let request_response = match (args.rr, args.crr) {
        (None, false) => None,
        (inflight, crr) => {
            if stock {
                bail!(
                    "--rr and --crr are loopscope's own: use tcp:// or unix:// against 'loopscope perf --server'"
                );
            }
            if crr && (udp || matches!(transport, Transport::Unix(_))) {
                bail!("--crr opens TCP connections: use tcp://");
            }
            let inflight = inflight.unwrap_or(1);
            // Over UDP each message carries a 16-byte numbered header.
            let smallest = if udp { rr::UDP_MIN_MESSAGE as u64 } else { 1 };
            let length = args.length.unwrap_or(smallest);
            let response = args.response_length.unwrap_or(length);
            if udp && (length < smallest || response < smallest || length.max(response) > 65_507) {
                bail!("UDP requests and responses must be between 16 and 65507 bytes");
            }
            if inflight == 0 || inflight > 4096 {
                bail!("--rr N: N must be between 1 and 4096");
            }
            if length == 0
                || response == 0
                || length > rr::MAX_MESSAGE as u64
                || response > rr::MAX_MESSAGE as u64
            {
                bail!("request and response lengths must be between 1 byte and 1 MiB");
            }
            if (inflight as u64) * length.max(response) > rr::MAX_INFLIGHT_BYTES as u64 {
                bail!(
                    "--rr N times the message size must stay within 1 MiB (both ends would block writing)"
                );
            }
            Some(RrOptions {
                inflight,
                response_length: response as usize,
                connect_per_transaction: crr,
            })
        }
    };
    let length = match (args.length, udp, &request_response) {
        (Some(length), ..) => length,
        (None, true, Some(_)) => rr::UDP_MIN_MESSAGE as u64,
        (None, false, Some(_)) => 1,
        // 0 asks for the control connection's MSS.
        (None, true, None) => 0,
        (None, false, None) => 128 * 1024,
    };
    if udp && length != 0 && !(16..=65_507).contains(&length) {
        bail!("-l with UDP must be between 16 and 65507 bytes");
    }
    if !udp && (length == 0 || length > 64 << 20) {
        bail!("-l must be between 1 byte and 64 MiB");
    }
    let impair = match &args.impair {
        None => None,
        Some(_) if !udp => bail!(
            "--impair applies to UDP datagrams here (add -u); for a loop use sim: or a link's --impair"
        ),
        // The datagram path impairs in the engine; the options are parsed by the one builder.
        Some(text) => {
            AdapterStack::from_flags(false, Some(text), None)
                .context("bad --impair")?
                .impair
        }
    };
    if args.udp && endpoint.scheme == "unix" {
        bail!("UDP data needs a TCP control connection: use udp://HOST:PORT");
    }
    let options = ClientOptions {
        link: link.clone(),
        transport,
        udp,
        stock,
        duration: args.time,
        bytes: args.bytes,
        parallel: args.parallel,
        direction: if args.bidir {
            Direction::Bidir
        } else if args.reverse {
            Direction::Receive
        } else {
            Direction::Send
        },
        length: length as usize,
        bandwidth: args.bitrate.unwrap_or(if udp { 1_000_000 } else { 0 }),
        tuning: SocketTuning {
            window: args.window.map(|w| w as usize),
            congestion: args.congestion.clone(),
            nodelay: args.nodelay || request_response.is_some(),
            mss: args.mss,
        },
        interval: (!args.interval.is_zero()).then_some(args.interval),
        skip_rx_copy: args.skip_rx_copy,
        zerocopy: args.zerocopy,
        impair,
        udp_counters_64bit: args.udp_counters_64bit,
        connect_timeout: args.connect_timeout,
        request_response,
    };
    if args.under_load.is_some() && options.request_response.is_none() {
        bail!(
            "--under-load measures --rr or --crr latency while a throughput test runs: add --rr or --crr"
        );
    }
    let load = args.under_load.map(|streams| ClientOptions {
        parallel: streams.clamp(1, 128),
        direction: Direction::Send,
        length: 128 * 1024,
        bandwidth: args.bitrate.unwrap_or(0),
        request_response: None,
        interval: None,
        // The load must outlast the latency test; it is stopped when that ends.
        duration: options.duration + Duration::from_secs(3600),
        bytes: None,
        ..options.clone()
    });
    let run_once = |options: &ClientOptions,
                    events: &mut dyn FnMut(&PerfEvent)|
     -> Result<PerfSummary, PerfError> {
        match &load {
            Some(load) => run_under_load(options, load, &context.stop, events),
            None => run_client(options, &context.stop, events),
        }
    };
    let mut printer = Printer::stdout(context.format);
    if args.repeat <= 1 && args.sweep.is_none() {
        let mut intervals: Vec<(f64, f64)> = Vec::new();
        let result = run_once(&options, &mut |event: &PerfEvent| {
            if let PerfEvent::Interval(interval) = event {
                intervals.push((interval.end_s, interval.bits_per_second / 1e9));
            }
            let _ = printer.emit(event);
        });
        if let (Some(path), Ok(summary)) = (&args.report, &result) {
            write_report(path, &args, intervals, summary)?;
        }
        return finish(result, &mut printer);
    }
    if args.report.is_some() {
        bail!("--report writes one run's report: it does not go with --repeat or --sweep");
    }
    if args.repeat == 0 || args.repeat > 1000 {
        bail!("--repeat must be between 1 and 1000");
    }
    let lengths = match &args.sweep {
        Some(lengths) => lengths.clone(),
        None => vec![options.length as u64],
    };
    if lengths
        .iter()
        .any(|&l| l == 0 || l > 64 << 20 || (udp && !(16..=65_507).contains(&l)))
    {
        bail!("--sweep lengths must be between 1 byte and 64 MiB (16 to 65507 with UDP)");
    }
    let json = printer.is_json();
    let mut points = Vec::new();
    let mut passed = true;
    let mut run = 0;
    'lengths: for length in lengths {
        let mut options = options.clone();
        options.length = length as usize;
        if let Some(rr) = &mut options.request_response
            && args.response_length.is_none()
        {
            rr.response_length = length as usize;
        }
        let mut runs = Vec::new();
        for _ in 0..args.repeat {
            if context.stop.load(std::sync::atomic::Ordering::Relaxed) {
                break 'lengths;
            }
            run += 1;
            let result = run_once(&options, &mut |event: &PerfEvent| {
                if json {
                    let _ = printer.emit(event);
                }
            });
            match result {
                Ok(summary) => {
                    passed &= summary.passed;
                    printer.emit(&SeriesRun {
                        event: "run",
                        run,
                        length,
                        summary: summary.clone(),
                    })?;
                    runs.push(summary);
                }
                Err(error) if error.is_environment() => return Err(error.into()),
                Err(error) => {
                    loopscope_report::stderr_line!("loopscope: error: run {run}: {error}");
                    passed = false;
                    break 'lengths;
                }
            }
        }
        points.extend(SeriesPoint::new(length, &runs));
    }
    let summary = SeriesSummary {
        link,
        mode: if options.request_response.is_some() {
            "request-response"
        } else {
            "throughput"
        },
        points,
        passed,
    };
    printer.emit(&summary)?;
    Ok(Outcome::from_passed(summary.passed))
}

/// Prints the summary; an error that came from the far end (not the environment) is exit 1.
fn finish(
    result: Result<PerfSummary, PerfError>,
    printer: &mut Printer,
) -> anyhow::Result<Outcome> {
    match result {
        Ok(summary) => {
            printer.emit(&summary)?;
            Ok(Outcome::from_passed(summary.passed))
        }
        Err(error) if error.is_environment() => Err(error.into()),
        Err(error) => {
            loopscope_report::stderr_line!("loopscope: error: {error}");
            Ok(Outcome::Failed)
        }
    }
}

fn echo(args: &Args, link: &str, context: &Context) -> anyhow::Result<Outcome> {
    if args.repeat > 1 || args.sweep.is_some() || args.under_load.is_some() {
        bail!("--repeat, --sweep and --under-load need a perf server (tcp://, udp://, unix:)");
    }
    if args.reverse || args.bidir || args.udp || args.rr.is_some() || args.crr {
        bail!(
            "over a loop, perf measures what comes back: --reverse, --bidir, -u, --rr and --crr need a perf server (tcp://, udp://, unix:)"
        );
    }
    // The same adapter flags, through the same builder, as bert, ping and reflect.
    let adapters =
        AdapterStack::from_flags(false, args.impair.as_deref(), None).context("bad --impair")?;
    // Opening once up front turns a bad endpoint into a usage error before any thread runs.
    loopscope_link::open(link).with_context(|| format!("cannot open link '{link}'"))?;
    let open = || -> Result<Box<dyn loopscope_link::Link>, loopscope_link::LinkError> {
        adapters.wrap(loopscope_link::open(link)?)
    };
    let options = EchoOptions {
        link: link.to_string(),
        parallel: args.parallel,
        duration: args.time,
        bytes: args.bytes,
        length: args.length.unwrap_or(128 * 1024).clamp(1, 64 << 20) as usize,
        interval: (!args.interval.is_zero()).then_some(args.interval),
        drain_timeout: args.drain_timeout,
    };
    let mut printer = Printer::stdout(context.format);
    let mut intervals: Vec<(f64, f64)> = Vec::new();
    let result = run_echo(&open, &options, &context.stop, &mut |event: &PerfEvent| {
        if let PerfEvent::Interval(interval) = event {
            intervals.push((interval.end_s, interval.bits_per_second / 1e9));
        }
        let _ = printer.emit(event);
    });
    if let (Some(path), Ok(summary)) = (&args.report, &result) {
        write_report(path, args, intervals, summary)?;
    }
    finish(result, &mut printer)
}

/// `--report FILE.html`: throughput per interval (Gbit/s), the parameters and the summary.
fn write_report(
    path: &std::path::Path,
    args: &Args,
    intervals: Vec<(f64, f64)>,
    summary: &PerfSummary,
) -> anyhow::Result<()> {
    let mut report = loopscope_report::html::HtmlReport::new(format!(
        "loopscope perf {}",
        args.link.as_deref().unwrap_or_default()
    ));
    report
        .parameter("link", args.link.as_deref().unwrap_or_default())
        .parameter("streams", args.parallel)
        .parameter("time", format!("{:?}", args.time))
        .parameter("interval", format!("{:?}", args.interval));
    report.plot(
        "Throughput per interval",
        loopscope_report::html::over_time(
            "throughput (Gbit/s)",
            &[("all streams", intervals)],
            false,
        )?,
    );
    report.summary(summary)?;
    std::fs::write(path, report.render())
        .with_context(|| format!("cannot write the report {}", path.display()))?;
    Ok(())
}

fn serve(args: &Args, context: &Context) -> anyhow::Result<Outcome> {
    let text = args
        .link
        .clone()
        .unwrap_or_else(|| format!("tcp://127.0.0.1:{DEFAULT_PORT}"));
    let endpoint = Endpoint::parse(&text)?;
    let listen = match endpoint.scheme.as_str() {
        "tcp" | "iperf3" => {
            endpoint.reject_unknown_options(&[])?;
            let address = ip::resolve(&endpoint, Some(ip::DEFAULT_LISTEN))?;
            Listen::Tcp(address[0])
        }
        "unix" => {
            endpoint.reject_unknown_options(&[])?;
            Listen::Unix(unix_address(&endpoint)?)
        }
        other => bail!(
            "a perf server listens on tcp://[HOST]:PORT or unix:PATH, not {other}: (UDP tests use the TCP port's number)"
        ),
    };
    let options = ServerOptions {
        listen,
        limits: ServerLimits {
            max_tests: args.max_tests.max(1),
            max_streams: args.max_streams.max(1),
            max_length: 1 << 20,
            max_memory: args.max_memory,
            max_rate_bps: args.max_rate,
            max_duration: args.max_duration.max(Duration::from_millis(100)),
            max_window: 16 << 20,
        },
        once: args.once,
        stock_only: args.iperf3,
        skip_rx_copy: args.skip_rx_copy,
        zerocopy: args.zerocopy,
    };
    let printer = Arc::new(Mutex::new(Printer::stdout(context.format)));
    let sink = Arc::clone(&printer);
    let events = Arc::new(move |event: ServerEvent| {
        if let Ok(mut printer) = sink.lock() {
            let _ = printer.emit(&event);
        }
    });
    let summary = run_server(options, Arc::clone(&context.stop), events)
        .with_context(|| format!("cannot serve perf on '{text}'"))?;
    if let Ok(mut printer) = printer.lock() {
        printer.emit(&summary)?;
    }
    Ok(Outcome::Passed)
}
