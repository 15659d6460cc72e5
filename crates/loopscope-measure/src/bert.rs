//! The bit-error-rate test: a pattern generator on one thread sends through a link, the checker
//! on the calling thread receives, and the result is accounted per ITU-T G.821.
//!
//! The runner knows links only through the [`Link`] trait, so every transport runs it unchanged.

use std::io::{self, Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use loopscope_pattern::checker::Expect;
use loopscope_pattern::g821::{G821, SecondTally};
use loopscope_pattern::{
    BitOrder, CheckCounters, Checker, CheckerConfig, ErrorInjector, Generator, PatternSpec,
};
use loopscope_report::{Record, format_bit_rate, format_ratio};
use serde::Serialize;

use loopscope_link::link::{Link, LinkError, is_timeout};

/// How much to send.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Amount {
    Bits(u64),
    Duration(Duration),
    /// Until stopped (Ctrl-C).
    Unlimited,
}

#[derive(Debug, Clone)]
pub struct BertOptions {
    pub tx_pattern: PatternSpec,
    pub rx_expect: Expect,
    pub amount: Amount,
    /// Random bit errors injected on transmit (probability per bit).
    pub inject_ber: f64,
    pub inject_seed: u64,
    /// Length of an injected burst (SIGUSR2, or every `inject_burst_every`).
    pub inject_burst_bits: u32,
    pub inject_burst_every: Option<Duration>,
    /// Pass threshold; `None`: any error fails.
    pub max_ber: Option<f64>,
    pub confidence: f64,
    pub chunk_bytes: usize,
    /// After the last byte is sent, how long to wait for stragglers before calling them lost.
    pub drain_timeout: Duration,
}

impl BertOptions {
    pub fn new(pattern: PatternSpec) -> Self {
        BertOptions {
            rx_expect: Expect::Pattern(pattern.clone()),
            tx_pattern: pattern,
            amount: Amount::Bits(1 << 30),
            inject_ber: 0.0,
            inject_seed: 1,
            inject_burst_bits: 16,
            inject_burst_every: None,
            max_ber: None,
            confidence: 0.95,
            chunk_bytes: 256 * 1024,
            drain_timeout: Duration::from_secs(2),
        }
    }
}

/// Asynchronous requests from outside the run (signal handlers, Ctrl-C).
#[derive(Debug, Clone, Default)]
pub struct BertControl {
    pub stop: Arc<AtomicBool>,
    /// Each increment injects one single-bit error (SIGUSR1).
    pub single_errors: Arc<AtomicU64>,
    /// Each increment injects one burst (SIGUSR2).
    pub bursts: Arc<AtomicU64>,
}

/// Why the run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// Everything was sent and what came back was checked.
    Completed,
    /// Stopped by the user (Ctrl-C) or the caller.
    Interrupted,
    /// The link closed before everything came back.
    LinkClosed,
    /// Sending or receiving failed.
    LinkError,
    /// Everything was sent but not everything came back within the drain timeout.
    DrainTimeout,
}

/// Something that happened while running (JSON events; notable ones also in human output).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum BertEvent {
    SyncAcquired {
        t_s: f64,
        pattern: String,
    },
    SyncLost {
        t_s: f64,
        bit_errors: u64,
    },
    Slip {
        t_s: f64,
        slips: u64,
        inserted_bits: u64,
        deleted_bits: u64,
    },
    Second {
        t_s: f64,
        second: u64,
        bits: u64,
        bit_errors: u64,
        ber: f64,
        severely_errored: bool,
    },
}

impl Record for BertEvent {
    fn kind(&self) -> &'static str {
        "event"
    }

    fn write_human(&self, out: &mut dyn Write) -> io::Result<()> {
        match self {
            BertEvent::SyncAcquired { t_s, pattern } => {
                writeln!(out, "[{t_s:8.3}s] sync acquired: {pattern}")
            }
            BertEvent::SyncLost { t_s, bit_errors } => {
                writeln!(out, "[{t_s:8.3}s] sync lost after {bit_errors} bit errors")
            }
            BertEvent::Slip {
                t_s,
                slips,
                inserted_bits,
                deleted_bits,
            } => writeln!(
                out,
                "[{t_s:8.3}s] slip #{slips} (so far {inserted_bits} bits inserted, {deleted_bits} deleted)"
            ),
            BertEvent::Second { .. } => Ok(()),
        }
    }
}

/// The result of a BERT run or a stream check. Field names are a contract with users' scripts.
#[derive(Debug, Clone, Serialize)]
pub struct BertSummary {
    pub link: String,
    pub pattern: String,
    pub inverted: bool,
    pub reversed: bool,
    pub bit_order: BitOrder,
    /// The pattern was found by `--pattern auto`.
    pub auto_detected: bool,
    pub bits: u64,
    pub bit_errors: u64,
    pub ber: f64,
    pub ber_upper_bound: f64,
    pub confidence: f64,
    pub max_ber: Option<f64>,
    pub sync_losses: u64,
    pub slips: u64,
    pub inserted_bits: u64,
    pub deleted_bits: u64,
    pub longest_burst_bits: u64,
    pub unsynced_bits: u64,
    pub in_sync: bool,
    pub errored_seconds: Option<u64>,
    pub severely_errored_seconds: Option<u64>,
    pub unavailable_seconds: Option<u64>,
    pub error_free_seconds: Option<u64>,
    pub available_seconds: Option<u64>,
    pub es_percent: Option<f64>,
    pub ses_percent: Option<f64>,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// Bytes sent that never came back (0 when everything did).
    pub bytes_missing: u64,
    pub injected_bits: u64,
    pub elapsed_s: f64,
    pub throughput_bps: f64,
    pub end_reason: EndReason,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Link-specific figures (datagram loss, serial line counters, impairment done).
    pub link_stats: serde_json::Map<String, serde_json::Value>,
    pub passed: bool,
}

impl BertSummary {
    /// Why the run failed, in a few words (empty when it passed).
    pub fn failure_reasons(&self) -> Vec<String> {
        let mut reasons = Vec::new();
        if self.bits == 0 {
            reasons.push("never synchronised to the pattern".into());
        }
        match self.max_ber {
            Some(max) if self.ber > max => reasons.push(format!(
                "BER {} above --max-ber {}",
                format_ratio(self.ber),
                format_ratio(max)
            )),
            None if self.bit_errors > 0 => reasons.push(format!("{} bit errors", self.bit_errors)),
            _ => {}
        }
        if self.max_ber.is_none() && self.slips > 0 {
            reasons.push(format!("{} slips", self.slips));
        }
        if self.max_ber.is_none() && self.sync_losses > 0 {
            reasons.push(format!("{} sync losses", self.sync_losses));
        }
        if self.bytes_missing > 0 {
            reasons.push(format!("{} bytes did not come back", self.bytes_missing));
        }
        match self.end_reason {
            EndReason::LinkClosed => reasons.push("the link closed early".into()),
            EndReason::LinkError => reasons.push("the link failed".into()),
            _ => {}
        }
        reasons
    }
}

impl Record for BertSummary {
    fn kind(&self) -> &'static str {
        "summary"
    }

    fn write_human(&self, out: &mut dyn Write) -> io::Result<()> {
        let mut pattern = self.pattern.clone();
        let mut options = Vec::new();
        if self.inverted {
            options.push("inverted");
        }
        if self.reversed {
            options.push("reversed");
        }
        if self.bit_order == BitOrder::MsbFirst {
            options.push("msb-first");
        }
        if self.auto_detected {
            options.push("auto-detected");
        }
        if !options.is_empty() {
            pattern = format!("{pattern} ({})", options.join(", "));
        }
        writeln!(out, "--- {} bert: {pattern} ---", self.link)?;
        writeln!(
            out,
            "bits         {} checked in {:.3} s ({}), {} bytes sent, {} received",
            self.bits,
            self.elapsed_s,
            format_bit_rate(self.throughput_bps),
            self.bytes_sent,
            self.bytes_received
        )?;
        writeln!(
            out,
            "errors       {} bit errors, BER {} (< {} at {:.0}% confidence), longest burst {} bits",
            self.bit_errors,
            format_ratio(self.ber),
            format_ratio(self.ber_upper_bound),
            self.confidence * 100.0,
            self.longest_burst_bits
        )?;
        writeln!(
            out,
            "sync         {}, {} losses, {} slips ({} bits inserted, {} deleted), {} bits unsynchronised",
            if self.in_sync {
                "in sync"
            } else {
                "NOT in sync"
            },
            self.sync_losses,
            self.slips,
            self.inserted_bits,
            self.deleted_bits,
            self.unsynced_bits
        )?;
        if let (Some(es), Some(ses), Some(uas), Some(efs)) = (
            self.errored_seconds,
            self.severely_errored_seconds,
            self.unavailable_seconds,
            self.error_free_seconds,
        ) {
            writeln!(
                out,
                "G.821        ES {es}, SES {ses}, UAS {uas}, EFS {efs}, %ES {:.3}, %SES {:.3}",
                self.es_percent.unwrap_or(0.0),
                self.ses_percent.unwrap_or(0.0)
            )?;
        }
        if self.injected_bits > 0 {
            writeln!(
                out,
                "injected     {} bit errors on transmit",
                self.injected_bits
            )?;
        }
        if !self.link_stats.is_empty() {
            writeln!(
                out,
                "link         {}",
                serde_json::Value::Object(self.link_stats.clone())
            )?;
        }
        if let Some(error) = &self.error {
            writeln!(out, "ended        {:?}: {error}", self.end_reason)?;
        }
        let reasons = self.failure_reasons();
        if self.passed {
            writeln!(out, "result       PASS")
        } else {
            writeln!(out, "result       FAIL: {}", reasons.join("; "))
        }
    }
}

/// Turns checker counters into events by watching them change.
struct EventWatcher {
    last: CheckCounters,
    ever_synced: bool,
}

impl EventWatcher {
    fn new() -> Self {
        EventWatcher {
            last: CheckCounters::default(),
            ever_synced: false,
        }
    }

    fn observe(&mut self, checker: &Checker, t_s: f64, emit: &mut dyn FnMut(BertEvent)) {
        let now = checker.counters();
        if now.sync_losses > self.last.sync_losses {
            emit(BertEvent::SyncLost {
                t_s,
                bit_errors: now.bit_errors,
            });
        }
        if now.slips > self.last.slips {
            emit(BertEvent::Slip {
                t_s,
                slips: now.slips,
                inserted_bits: now.inserted_bits,
                deleted_bits: now.deleted_bits,
            });
        }
        if now.in_sync && !self.last.in_sync {
            let pattern = checker
                .pattern()
                .map(PatternSpec::describe)
                .unwrap_or_default();
            if !self.ever_synced
                || now.sync_losses > self.last.sync_losses
                || self.last.sync_losses > 0
            {
                emit(BertEvent::SyncAcquired { t_s, pattern });
            }
            self.ever_synced = true;
        }
        self.last = now.clone();
    }
}

/// Per-second G.821 accounting. Seconds before the first synchronisation are acquisition, not
/// measurement, and are not counted.
struct SecondClock {
    g821: G821,
    last: CheckCounters,
    seconds: u64,
    started: bool,
}

impl SecondClock {
    fn new() -> Self {
        SecondClock {
            g821: G821::new(),
            last: CheckCounters::default(),
            seconds: 0,
            started: false,
        }
    }

    /// Closes one second; `signal` says whether any data arrived in it.
    fn tick(
        &mut self,
        counters: &CheckCounters,
        signal: bool,
        t_s: f64,
        emit: &mut dyn FnMut(BertEvent),
    ) {
        if !self.started {
            if counters.bits == 0 {
                self.last = counters.clone();
                return;
            }
            self.started = true;
        }
        let bits = counters.bits - self.last.bits;
        let bit_errors = counters.bit_errors - self.last.bit_errors;
        let hunting = counters.unsynced_bits > self.last.unsynced_bits && self.last.bits > 0;
        let sync_loss = counters.sync_losses > self.last.sync_losses || hunting || !signal;
        let tally = SecondTally {
            bits,
            bit_errors,
            sync_loss,
        };
        self.g821.push(tally);
        self.seconds += 1;
        let ber = if bits > 0 {
            bit_errors as f64 / bits as f64
        } else {
            0.0
        };
        emit(BertEvent::Second {
            t_s,
            second: self.seconds,
            bits,
            bit_errors,
            ber,
            severely_errored: sync_loss || ber >= 1e-3,
        });
        self.last = counters.clone();
    }
}

/// Everything the summary needs besides the checker.
struct Totals {
    link: String,
    bytes_sent: u64,
    bytes_received: u64,
    injected_bits: u64,
    elapsed: Duration,
    end_reason: EndReason,
    error: Option<String>,
    link_stats: serde_json::Map<String, serde_json::Value>,
}

fn summarize(
    checker: &Checker,
    fallback: &PatternSpec,
    g821: Option<&G821>,
    options: &BertOptions,
    auto: bool,
    totals: Totals,
) -> BertSummary {
    let c = checker.counters();
    let spec = checker
        .pattern()
        .cloned()
        .unwrap_or_else(|| fallback.clone());
    let ber = if c.bits > 0 {
        c.bit_errors as f64 / c.bits as f64
    } else {
        0.0
    };
    let ber_upper_bound = if c.bits > 0 {
        loopscope_pattern::confidence::ber_upper_bound(c.bits, c.bit_errors, options.confidence)
    } else {
        1.0
    };
    let g = g821.map(G821::summary);
    let elapsed_s = totals.elapsed.as_secs_f64();
    let throughput_bps = if elapsed_s > 0.0 {
        totals.bytes_received as f64 * 8.0 / elapsed_s
    } else {
        0.0
    };
    let bytes_missing = totals.bytes_sent.saturating_sub(totals.bytes_received);
    let mut summary = BertSummary {
        link: totals.link,
        pattern: spec.kind.name(),
        inverted: spec.inverted(),
        reversed: spec.reverse,
        bit_order: spec.bit_order,
        auto_detected: auto && checker.pattern().is_some(),
        bits: c.bits,
        bit_errors: c.bit_errors,
        ber,
        ber_upper_bound,
        confidence: options.confidence,
        max_ber: options.max_ber,
        sync_losses: c.sync_losses,
        slips: c.slips,
        inserted_bits: c.inserted_bits,
        deleted_bits: c.deleted_bits,
        longest_burst_bits: c.longest_burst_bits,
        unsynced_bits: c.unsynced_bits,
        in_sync: c.in_sync,
        errored_seconds: g.as_ref().map(|g| g.errored_seconds),
        severely_errored_seconds: g.as_ref().map(|g| g.severely_errored_seconds),
        unavailable_seconds: g.as_ref().map(|g| g.unavailable_seconds),
        error_free_seconds: g.as_ref().map(|g| g.error_free_seconds),
        available_seconds: g.as_ref().map(|g| g.available_seconds),
        es_percent: g.as_ref().map(|g| g.es_percent()),
        ses_percent: g.as_ref().map(|g| g.ses_percent()),
        bytes_sent: totals.bytes_sent,
        bytes_received: totals.bytes_received,
        bytes_missing,
        injected_bits: totals.injected_bits,
        elapsed_s,
        throughput_bps,
        end_reason: totals.end_reason,
        error: totals.error,
        link_stats: totals.link_stats,
        passed: false,
    };
    summary.passed = summary.failure_reasons().is_empty();
    summary
}

/// What the transmit thread reports back.
struct TxShared {
    sent: AtomicU64,
    done: AtomicBool,
    /// Set by the receive side when it has ended the run first.
    halt: AtomicBool,
    /// Sending failed: what was sent is not all there will be, so keep reading to the end.
    failed: AtomicBool,
}

/// Runs a BERT over `link`. `emit` receives events; `progress` is called about ten times a
/// second with the bytes received so far. Environment errors (the link cannot open) are
/// returned as `Err`; anything that goes wrong once running ends the run with a summary.
pub fn run(
    link: Box<dyn Link>,
    options: &BertOptions,
    control: &BertControl,
    emit: &mut dyn FnMut(BertEvent),
    progress: &mut dyn FnMut(u64, &CheckCounters),
) -> Result<BertSummary, LinkError> {
    let description = link.describe();
    let (mut sender, mut receiver) = link.split()?;
    let start = Instant::now();
    let shared = Arc::new(TxShared {
        sent: AtomicU64::new(0),
        done: AtomicBool::new(false),
        halt: AtomicBool::new(false),
        failed: AtomicBool::new(false),
    });

    let tx_thread = {
        let shared = Arc::clone(&shared);
        let control = control.clone();
        let options = options.clone();
        thread::Builder::new()
            .name("bert-tx".into())
            .spawn(move || -> (u64, Option<io::Error>) {
                let mut generator = Generator::new(&options.tx_pattern);
                let mut injector = ErrorInjector::new(options.inject_ber, options.inject_seed);
                let mut buf = vec![0u8; options.chunk_bytes.max(1)];
                let limit_bytes = match options.amount {
                    Amount::Bits(bits) => bits.div_ceil(8),
                    _ => u64::MAX,
                };
                let mut next_burst = options.inject_burst_every.map(|every| start + every);
                let mut error = None;
                let mut sent = 0u64;
                while sent < limit_bytes
                    && !control.stop.load(Ordering::Relaxed)
                    && !shared.halt.load(Ordering::Relaxed)
                {
                    if let Amount::Duration(duration) = options.amount
                        && start.elapsed() >= duration
                    {
                        break;
                    }
                    let n = (limit_bytes - sent).min(buf.len() as u64) as usize;
                    let chunk = &mut buf[..n];
                    generator.fill(chunk);
                    for _ in 0..control.single_errors.swap(0, Ordering::Relaxed) {
                        injector.request_single();
                    }
                    let mut bursts = control.bursts.swap(0, Ordering::Relaxed);
                    if let Some(due) = next_burst
                        && Instant::now() >= due
                    {
                        bursts += 1;
                        next_burst = options.inject_burst_every.map(|every| due + every);
                    }
                    for _ in 0..bursts {
                        injector.request_burst(options.inject_burst_bits);
                    }
                    injector.apply(chunk);
                    if let Err(e) = sender.send(chunk) {
                        error = Some(e);
                        shared.failed.store(true, Ordering::Release);
                        break;
                    }
                    sent += n as u64;
                    shared.sent.store(sent, Ordering::Release);
                }
                if error.is_none()
                    && let Err(e) = sender.finish()
                {
                    error = Some(e);
                }
                shared.done.store(true, Ordering::Release);
                (injector.injected_bits(), error)
            })
            .map_err(|e| LinkError::io("cannot start the transmit thread", e))?
    };

    let auto = matches!(options.rx_expect, Expect::Auto(_));
    let mut checker = Checker::new(CheckerConfig {
        expect: options.rx_expect.clone(),
    });
    let mut watcher = EventWatcher::new();
    let mut clock = SecondClock::new();
    let mut buf = vec![0u8; options.chunk_bytes.max(4096)];
    let poll = Duration::from_millis(100);
    let _ = receiver.set_timeout(Some(poll));
    let mut received = 0u64;
    let mut last_data = start;
    let mut next_second = start + Duration::from_secs(1);
    let mut next_progress = start;
    let mut got_data_this_second = false;
    let mut end_reason = EndReason::Completed;
    let mut error: Option<String> = None;

    loop {
        let now = Instant::now();
        // Seconds are measured while the transmitter runs; waiting for stragglers afterwards is
        // not line time (the final partial second is closed below if it carried data).
        while now >= next_second && !shared.done.load(Ordering::Acquire) {
            let t_s = (next_second - start).as_secs_f64();
            clock.tick(checker.counters(), got_data_this_second, t_s, emit);
            got_data_this_second = false;
            next_second += Duration::from_secs(1);
        }
        if now >= next_progress {
            progress(received, checker.counters());
            next_progress = now + Duration::from_millis(100);
        }
        let tx_done = shared.done.load(Ordering::Acquire);
        let sent = shared.sent.load(Ordering::Acquire);
        // After a failed send, part of a chunk may still be on its way: read on to the end.
        if tx_done && received >= sent && !shared.failed.load(Ordering::Acquire) {
            break;
        }
        if tx_done && now.duration_since(last_data) >= options.drain_timeout {
            end_reason = if control.stop.load(Ordering::Relaxed) {
                EndReason::Interrupted
            } else {
                EndReason::DrainTimeout
            };
            break;
        }
        match receiver.recv(&mut buf) {
            Ok(0) => {
                // End of stream: normal only once everything sent has come back. The sender's
                // own finish() is what closes a loop, so give it a moment to say it is done.
                let give_up = Instant::now() + options.drain_timeout;
                while !shared.done.load(Ordering::Acquire) && Instant::now() < give_up {
                    thread::sleep(Duration::from_millis(1));
                }
                let sent = shared.sent.load(Ordering::Acquire);
                if !(shared.done.load(Ordering::Acquire) && received >= sent) {
                    end_reason = EndReason::LinkClosed;
                    error = Some(format!(
                        "the link closed after {received} of {sent} bytes came back"
                    ));
                }
                break;
            }
            Ok(n) => {
                received += n as u64;
                last_data = Instant::now();
                got_data_this_second = true;
                checker.feed(&buf[..n]);
                watcher.observe(&checker, start.elapsed().as_secs_f64(), emit);
            }
            Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                end_reason = EndReason::LinkError;
                error = Some(format!("receive failed: {e}"));
                break;
            }
        }
    }
    let user_stopped = control.stop.load(Ordering::Relaxed);
    // Stop the transmitter if the receive side ended first. Keep reading (and discarding) for a
    // moment so a sender blocked on a full link can see the halt, then collect what it did.
    shared.halt.store(true, Ordering::Relaxed);
    let give_up = Instant::now() + Duration::from_secs(2);
    while !shared.done.load(Ordering::Acquire) && Instant::now() < give_up {
        match receiver.recv(&mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    // Read after the transmitter is done, so what it published (impairment counts) is final.
    let link_stats = receiver.stats();
    drop(receiver);
    let (injected_bits, tx_error) = join_within(tx_thread, Duration::from_secs(2));
    if let Some(e) = tx_error
        && error.is_none()
        && end_reason == EndReason::Completed
    {
        // A peer that went away shows up on the sending side first (EPIPE, reset): that is the
        // link closing, not a fault of the link.
        let closed = matches!(
            e.kind(),
            io::ErrorKind::BrokenPipe
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::UnexpectedEof
        );
        end_reason = if closed {
            EndReason::LinkClosed
        } else {
            EndReason::LinkError
        };
        error = Some(format!(
            "send failed after {} bytes: {e}",
            shared.sent.load(Ordering::Acquire)
        ));
    }
    if end_reason == EndReason::Completed && user_stopped {
        end_reason = EndReason::Interrupted;
    }
    // Settle bits still under confirmation or recovery, then close the final partial second
    // if it carried data.
    checker.finish();
    if got_data_this_second {
        clock.tick(
            checker.counters(),
            true,
            start.elapsed().as_secs_f64(),
            emit,
        );
    }
    progress(received, checker.counters());
    let elapsed = last_data
        .duration_since(start)
        .max(Duration::from_micros(1));
    let totals = Totals {
        link: description,
        bytes_sent: shared.sent.load(Ordering::Acquire),
        bytes_received: received,
        injected_bits,
        elapsed,
        end_reason,
        error,
        link_stats,
    };
    Ok(summarize(
        &checker,
        &options.tx_pattern,
        Some(&clock.g821),
        options,
        auto,
        totals,
    ))
}

/// Joins the transmit thread, but does not hang the run on a sender stuck in a blocked link.
fn join_within(
    handle: thread::JoinHandle<(u64, Option<io::Error>)>,
    limit: Duration,
) -> (u64, Option<io::Error>) {
    let give_up = Instant::now() + limit;
    while !handle.is_finished() && Instant::now() < give_up {
        thread::sleep(Duration::from_millis(5));
    }
    if !handle.is_finished() {
        return (
            0,
            Some(io::Error::other(
                "the transmitter was still blocked in the link at the end",
            )),
        );
    }
    handle
        .join()
        .unwrap_or((0, Some(io::Error::other("the transmit thread panicked"))))
}

/// Checks a captured stream (a file, stdin) and summarises it like a BERT run. With
/// `bit_rate` the stream is cut into seconds of that many bits for G.821 figures; without it
/// those figures are absent (`null` in JSON).
pub fn check_stream(
    mut reader: impl Read,
    source: &str,
    options: &BertOptions,
    bit_rate: Option<u64>,
    stop: &AtomicBool,
    emit: &mut dyn FnMut(BertEvent),
) -> io::Result<BertSummary> {
    let start = Instant::now();
    let auto = matches!(options.rx_expect, Expect::Auto(_));
    let mut checker = Checker::new(CheckerConfig {
        expect: options.rx_expect.clone(),
    });
    let mut watcher = EventWatcher::new();
    let mut clock = bit_rate.map(|_| SecondClock::new());
    let mut buf = vec![0u8; options.chunk_bytes.max(4096)];
    let mut received = 0u64;
    let mut bits_into_second = 0u64;
    let mut end_reason = EndReason::Completed;
    let mut error = None;
    while !stop.load(Ordering::Relaxed) {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                end_reason = EndReason::LinkError;
                error = Some(format!("read failed: {e}"));
                break;
            }
        };
        // Feed whole "seconds" at a time so each tally closes on a second boundary.
        let mut data = &buf[..n];
        while !data.is_empty() {
            let take = match (bit_rate, clock.as_ref()) {
                (Some(rate), Some(_)) => {
                    (((rate.max(8) - bits_into_second) / 8).max(1) as usize).min(data.len())
                }
                _ => data.len(),
            };
            checker.feed(&data[..take]);
            received += take as u64;
            let t_s = match bit_rate {
                Some(rate) => received as f64 * 8.0 / rate as f64,
                None => start.elapsed().as_secs_f64(),
            };
            watcher.observe(&checker, t_s, emit);
            if let (Some(rate), Some(clock)) = (bit_rate, clock.as_mut()) {
                bits_into_second += take as u64 * 8;
                if bits_into_second >= rate.max(8) {
                    clock.tick(checker.counters(), true, t_s, emit);
                    bits_into_second = 0;
                }
            }
            data = &data[take..];
        }
    }
    if stop.load(Ordering::Relaxed) {
        end_reason = EndReason::Interrupted;
    }
    checker.finish();
    if let Some(clock) = clock.as_mut()
        && bits_into_second > 0
    {
        clock.tick(
            checker.counters(),
            true,
            received as f64 * 8.0 / bit_rate.unwrap_or(1) as f64,
            emit,
        );
    }
    let totals = Totals {
        link: source.to_string(),
        bytes_sent: received,
        bytes_received: received,
        injected_bits: 0,
        elapsed: start.elapsed().max(Duration::from_micros(1)),
        end_reason,
        error,
        link_stats: Default::default(),
    };
    Ok(summarize(
        &checker,
        &options.tx_pattern,
        clock.as_ref().map(|c| &c.g821),
        options,
        auto,
        totals,
    ))
}
