//! `loopscope bert LINK`: a bit-error-rate test over any link.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context as _, bail};
use loopscope_link::Endpoint;
use loopscope_link::adapter::AdapterStack;
use loopscope_measure::bert::{self, Amount, BertControl, BertEvent, BertOptions};
use loopscope_report::{Format, Outcome, Printer, Progress, format_bit_rate};

use super::pattern::{PatternArgs, parse_confidence, parse_probability, parse_size};
use super::ping::parse_duration;
use crate::Context;

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Links: loop: (in-memory), sim:?ber=1e-6&seed=1 (impaired loop), exec:CMD (a child's stdin/stdout), \
and the socket and serial links. Send SIGUSR1 to inject one bit error, SIGUSR2 to inject a burst."
)]
pub struct Args {
    /// The link to test, e.g. loop:, sim:?ber=1e-6, exec:cat, tcp://127.0.0.1:7007
    pub link: String,
    #[command(flatten)]
    pub pattern: PatternArgs,
    /// What the receiver expects when it differs from what is sent (`auto` detects it).
    #[arg(long)]
    pub rx_pattern: Option<String>,
    /// Send this many bits.
    #[arg(long, value_parser = parse_size, group = "amount")]
    pub bits: Option<u64>,
    /// Send this many bytes (e.g. 1G, 64Mi).
    #[arg(long, value_parser = parse_size, group = "amount")]
    pub bytes: Option<u64>,
    /// Send for this long (e.g. 10s, 15m, 24h); without an amount the run lasts 10 s.
    #[arg(long, value_parser = parse_duration, group = "amount")]
    pub duration: Option<Duration>,
    /// Run until Ctrl-C.
    #[arg(long, group = "amount")]
    pub forever: bool,
    /// Pass when the BER is at most this (default: any error, slip or sync loss fails).
    #[arg(long, value_parser = parse_probability)]
    pub max_ber: Option<f64>,
    /// Pass when at most this share of the bytes sent fails to come back, as a fraction (0.01)
    /// or a percentage (1%); slips and sync losses are then judged as that loss (default: any
    /// loss fails, as lost datagrams on udp:).
    #[arg(long, value_parser = parse_loss, value_name = "SHARE")]
    pub max_loss: Option<f64>,
    /// Confidence level of the BER upper bound (0.95 or 95).
    #[arg(long, default_value = "0.95", value_parser = parse_confidence)]
    pub confidence: f64,
    /// Inject random bit errors on transmit at this rate per bit.
    #[arg(long, value_parser = parse_probability, default_value = "0")]
    pub inject_ber: f64,
    /// Seed for injected errors (the same seed gives the same errors).
    #[arg(long, default_value_t = 1)]
    pub inject_seed: u64,
    /// Length in bits of an injected burst (SIGUSR2 or --inject-burst-every).
    #[arg(long, default_value_t = 16)]
    pub inject_burst: u32,
    /// Inject a burst periodically, e.g. every 1s.
    #[arg(long, value_parser = parse_duration)]
    pub inject_burst_every: Option<Duration>,
    /// Impair the link: the options of sim: (ber=, drop=, slip=, loss=, delay=, rate=, seed=...).
    #[arg(long, value_name = "OPTIONS")]
    pub impair: Option<String>,
    /// LINK is an audio link (audiosim:, jack:): carry the bytes over it with a Bell 202 FSK
    /// modem (1200 bit/s line rate, 960 bit/s payload).
    #[arg(long)]
    pub modem: bool,
    /// Write what crosses the link to this pcapng file (tshark and Wireshark read it).
    #[arg(long, value_name = "FILE")]
    pub capture: Option<std::path::PathBuf>,
    /// Also write an HTML report with plots (BER over time, the G.821 errored and severely
    /// errored seconds on a timeline) to FILE.
    #[arg(long, value_name = "FILE.html")]
    pub report: Option<std::path::PathBuf>,
    /// After the last byte is sent, how long to wait for the rest to come back.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub drain_timeout: Duration,
    /// Bytes per send.
    #[arg(long, default_value = "256Ki", value_parser = parse_size)]
    pub chunk: u64,
    #[command(flatten)]
    pub framed: super::framed::FramedArgs,
}

pub fn run(args: Args, context: &Context) -> anyhow::Result<Outcome> {
    if args.framed.framing.is_some() {
        return super::framed::run(&args, context);
    }
    let Some(tx_pattern) = args.pattern.spec()? else {
        bail!(
            "--pattern auto only applies to the receiver: name the pattern to send and add --rx-pattern auto"
        );
    };
    let rx_expect = match &args.rx_pattern {
        None => loopscope_pattern::checker::Expect::Pattern(tx_pattern.clone()),
        Some(rx) => PatternArgs {
            pattern: rx.clone(),
            ..args.pattern.clone()
        }
        .expect()?,
    };
    let amount = match (args.bits, args.bytes, args.duration, args.forever) {
        (Some(bits), ..) => Amount::Bits(bits),
        (_, Some(bytes), ..) => Amount::Bits(bytes.saturating_mul(8)),
        (_, _, Some(duration), _) => Amount::Duration(duration),
        (.., true) => Amount::Unlimited,
        _ => Amount::Duration(Duration::from_secs(10)),
    };
    if args.chunk == 0 || args.chunk > 64 << 20 {
        bail!("--chunk must be between 1 byte and 64 MiB");
    }
    let adapters =
        AdapterStack::from_flags(args.modem, args.impair.as_deref(), args.capture.as_deref())
            .context("bad --impair")?;
    let link = adapters
        .open(&Endpoint::parse(&args.link)?)
        .with_context(|| format!("cannot open link '{}'", args.link))?;
    let options = BertOptions {
        tx_pattern,
        rx_expect,
        amount,
        inject_ber: args.inject_ber,
        inject_seed: args.inject_seed,
        inject_burst_bits: args.inject_burst,
        inject_burst_every: args.inject_burst_every,
        max_ber: args.max_ber,
        max_loss: args.max_loss,
        confidence: args.confidence,
        chunk_bytes: args.chunk as usize,
        drain_timeout: args.drain_timeout,
    };
    let control = BertControl {
        stop: Arc::clone(&context.stop),
        single_errors: Arc::new(AtomicU64::new(0)),
        bursts: Arc::new(AtomicU64::new(0)),
    };
    listen_for_injection_signals(&control)?;

    let total_bytes = match amount {
        Amount::Bits(bits) => Some(bits.div_ceil(8)),
        _ => None,
    };
    let progress = Progress::new(
        context.format,
        total_bytes,
        // One rate, in bit/s, from the bytes checked (indicatif's own bytes-per-second in
        // GiB/s lagged behind it and read as a second, different figure).
        "{spinner} {bytes}/{total_bytes} {msg}",
    );
    let started = std::time::Instant::now();
    let mut events = EventPrinter::new(context.format);
    let mut seconds: Vec<loopscope_report::html::BertSecond> = Vec::new();
    let keep_seconds = args.report.is_some();
    let summary = bert::run(
        link,
        &options,
        &control,
        &mut |event| {
            if keep_seconds
                && let bert::BertEvent::Second {
                    t_s,
                    bits,
                    bit_errors,
                    severely_errored,
                    ..
                } = &event
            {
                seconds.push(loopscope_report::html::BertSecond {
                    t_s: *t_s,
                    bits: *bits,
                    bit_errors: *bit_errors,
                    severely_errored: *severely_errored,
                });
            }
            events.print(&event);
        },
        &mut |bytes, counters| {
            progress.set_position(bytes);
            let rate = bytes as f64 * 8.0 / started.elapsed().as_secs_f64().max(1e-9);
            progress.set_message(format!(
                "{} errors {} slips {}",
                format_bit_rate(rate),
                counters.bit_errors,
                counters.slips
            ));
        },
    )
    // The link's own error names the endpoint.
    .context("cannot start the test")?;
    progress.finish();
    events.finish();
    Printer::stdout(context.format).emit(&summary)?;
    if let Some(path) = &args.report {
        let mut report =
            loopscope_report::html::HtmlReport::new(format!("loopscope bert {}", args.link));
        report
            .parameter("link", &args.link)
            .parameter("pattern", &summary.pattern)
            .parameter(
                "amount",
                match amount {
                    Amount::Bits(bits) => format!("{bits} bits"),
                    Amount::Duration(duration) => format!("{duration:?}"),
                    Amount::Unlimited => "until stopped".into(),
                },
            )
            .parameter("inject_ber", args.inject_ber)
            .parameter("impair", args.impair.as_deref().unwrap_or("none"));
        report.plot(
            "Bit error ratio over time, G.821 seconds",
            loopscope_report::html::ber_timeline(&seconds)?,
        );
        report.summary(&summary)?;
        std::fs::write(path, report.render())
            .with_context(|| format!("cannot write the report {}", path.display()))?;
    }
    Ok(Outcome::from_passed(summary.passed))
}

/// A share of the data: a fraction (`0.01`) or a percentage (`1%`).
pub fn parse_loss(text: &str) -> Result<f64, String> {
    let trimmed = text.trim();
    let (number, scale) = match trimmed.strip_suffix('%') {
        Some(number) => (number, 100.0),
        None => (trimmed, 1.0),
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("'{text}' is not a share (try 0.01 or 1%)"))?;
    let share = value / scale;
    if !(0.0..=1.0).contains(&share) {
        return Err(format!("'{text}' must be between 0 and 1 (or 0% and 100%)"));
    }
    Ok(share)
}

/// SIGUSR1 injects one bit error, SIGUSR2 one burst, while the run goes on.
fn listen_for_injection_signals(control: &BertControl) -> anyhow::Result<()> {
    use signal_hook::consts::{SIGUSR1, SIGUSR2};
    let mut signals = signal_hook::iterator::Signals::new([SIGUSR1, SIGUSR2])
        .context("cannot install signal handlers")?;
    let (single, bursts) = (
        Arc::clone(&control.single_errors),
        Arc::clone(&control.bursts),
    );
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                match signal {
                    SIGUSR1 => single.fetch_add(1, Ordering::Relaxed),
                    _ => bursts.fetch_add(1, Ordering::Relaxed),
                };
            }
        })
        .context("cannot start the signal thread")?;
    Ok(())
}

/// Prints events: all of them in JSON; in human form the notable ones, at most
/// `HUMAN_EVENT_LIMIT`, then a count of the rest (a badly broken link slips thousands of times).
pub struct EventPrinter {
    printer: Printer,
    shown: u64,
    suppressed: u64,
}

const HUMAN_EVENT_LIMIT: u64 = 20;

impl EventPrinter {
    pub fn new(format: Format) -> Self {
        EventPrinter {
            printer: Printer::stdout(format),
            shown: 0,
            suppressed: 0,
        }
    }

    pub fn print(&mut self, event: &BertEvent) {
        if self.printer.format() == Format::Json {
            let _ = self.printer.emit(event);
            return;
        }
        if matches!(event, BertEvent::Second { .. }) {
            return;
        }
        if self.shown < HUMAN_EVENT_LIMIT {
            self.shown += 1;
            let _ = self.printer.emit(event);
        } else {
            self.suppressed += 1;
        }
    }
}

impl EventPrinter {
    /// Says how many events were not shown; call before the summary.
    pub fn finish(&mut self) {
        if self.suppressed > 0 {
            let mut out = loopscope_report::Stdout::live();
            let _ = std::io::Write::write_all(
                &mut out,
                format!(
                    "... {} more events not shown (use --json for all)\n",
                    self.suppressed
                )
                .as_bytes(),
            );
        }
    }
}
