//! The bit-error-rate test: a pattern generator on one thread sends through a link, the checker
//! on the calling thread receives, and the result is accounted per ITU-T G.821.
//!
//! The engine knows links only through the [`Link`] trait, so every transport runs it
//! unchanged. Its pure part, [`Measurement`] (checker, events, G.821 seconds), is shared with
//! [`check_stream`], which checks a captured file through the very same accounting.
//!
//! # What the counts mean
//!
//! - `bytes_sent`: bytes the link took (a send cut short by a deadline or a stop counts what
//!   went in). On a 5, 6 or 7-bit serial line each byte is one character carrying that many
//!   pattern bits.
//! - `bytes_received`: bytes the link gave back. A datagram that arrives twice, or after a later
//!   one, is counted in `link_stats` (`datagrams_duplicated`, `datagrams_reordered`) and its
//!   payload is not given back again, so duplicates never inflate it; bytes an impairment adapter
//!   inserts or duplicates (`link_stats.impairment`) are extra bytes on the line and are counted.
//!   So `bytes_received <= bytes_sent + inserted + duplicated`, with equality when nothing was lost.
//! - `bytes_missing = bytes_sent + inserted + duplicated - bytes_received`: what never came back;
//!   `loss_percent` is it over `bytes_sent`. Any loss fails the run unless `max_loss` allows it.
//! - G.821 counts whole seconds only, from the start of transmission. The last, partial second
//!   of a run is reported apart (`partial_second_*`) and is in no G.821 counter or percentage;
//!   its bits and errors are in the totals (`bits`, `bit_errors`, `ber`).

use std::io::{self, Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use loopscope_link::link::{Cancel, Link, LinkError, LinkStats, is_timeout};
use loopscope_link::stats::plural;
use loopscope_pattern::chars::{CharPacker, CharUnpacker};
use loopscope_pattern::checker::Expect;
use loopscope_pattern::g821::{G821, G821Summary, SecondTally};
use loopscope_pattern::{
    BitOrder, CheckCounters, Checker, CheckerConfig, ErrorInjector, Generator, PatternSpec,
};
use loopscope_report::{Record, format_bit_rate, format_ratio};
use serde::Serialize;

use crate::ending::{
    ber_failure, ber_with_bound, close_receiver, join_within, second_tally, send_failed,
    write_result,
};

/// How much to send.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Amount {
    /// This many bits of pattern.
    Bits(u64),
    /// For this long.
    Duration(Duration),
    /// Until stopped (Ctrl-C).
    Unlimited,
}

/// How a BERT runs: what to send, what to expect back, how much, and what passes.
#[derive(Debug, Clone)]
pub struct BertOptions {
    /// The pattern sent.
    pub tx_pattern: PatternSpec,
    /// What the checker expects back (the same pattern, or auto-detection).
    pub rx_expect: Expect,
    /// How much to send.
    pub amount: Amount,
    /// Random bit errors injected on transmit (probability per bit).
    pub inject_ber: f64,
    /// Seed of the injected random errors: the same seed, the same errors.
    pub inject_seed: u64,
    /// Length of an injected burst (SIGUSR2, or every `inject_burst_every`).
    pub inject_burst_bits: u32,
    /// Inject a burst this often, when set.
    pub inject_burst_every: Option<Duration>,
    /// Pass threshold; `None`: any error fails.
    pub max_ber: Option<f64>,
    /// Fraction of the bytes sent that may fail to come back; `None`: any loss fails.
    pub max_loss: Option<f64>,
    /// Confidence of `ber_upper_bound` (0.95: the true BER is below it with 95% confidence).
    pub confidence: f64,
    /// Bytes per send (fewer on a paced serial line, to keep little line time in flight).
    pub chunk_bytes: usize,
    /// After the last byte is sent, how long to wait for stragglers before calling them lost.
    pub drain_timeout: Duration,
}

impl BertOptions {
    /// Sends and expects `pattern`, 2^30 bits, no injected errors, any error fails.
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
            max_loss: None,
            confidence: 0.95,
            chunk_bytes: 256 * 1024,
            drain_timeout: Duration::from_secs(2),
        }
    }
}

/// Asynchronous requests from outside the run (signal handlers, Ctrl-C).
#[derive(Debug, Clone, Default)]
pub struct BertControl {
    /// Set to end the run as Ctrl-C does (the summary is still made).
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
    /// Stopped by the user (Ctrl-C, SIGTERM) or the caller.
    Interrupted,
    /// The link closed before everything came back.
    LinkClosed,
    /// Sending or receiving failed.
    LinkError,
    /// Everything was sent but not everything came back within the drain timeout.
    DrainTimeout,
}

impl EndReason {
    /// In words, for people.
    pub fn describe(self) -> &'static str {
        match self {
            EndReason::Completed => "completed",
            EndReason::Interrupted => "interrupted",
            EndReason::LinkClosed => "the link closed early",
            EndReason::LinkError => "the link failed",
            EndReason::DrainTimeout => "not everything came back within the drain timeout",
        }
    }
}

/// Something that happened while running (JSON events; notable ones also in human output).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum BertEvent {
    /// The checker found the pattern (first time, or again after a loss).
    SyncAcquired {
        /// Seconds since the start.
        t_s: f64,
        /// The pattern found, described.
        pattern: String,
    },
    /// The checker lost the pattern and hunts again.
    SyncLost {
        /// Seconds since the start.
        t_s: f64,
        /// Bit errors so far.
        bit_errors: u64,
    },
    /// One or more slips found in one piece of received data.
    Slip {
        /// Seconds since the start.
        t_s: f64,
        /// Slips so far (the last of this event's).
        slips: u64,
        /// Slips this event reports (numbered `slips - new_slips + 1 ..= slips`).
        new_slips: u64,
        /// Bits inserted at slips so far.
        inserted_bits: u64,
        /// Bits deleted at slips so far.
        deleted_bits: u64,
    },
    /// A whole second closed (G.821 accounting).
    Second {
        /// Seconds since the start (its end).
        t_s: f64,
        /// Its number, from 1.
        second: u64,
        /// Bits compared in it.
        bits: u64,
        /// Bit errors in it.
        bit_errors: u64,
        /// Its BER.
        ber: f64,
        /// It was severely errored (G.821: BER >= 1e-3 or sync lost).
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
            BertEvent::SyncLost { t_s, bit_errors } => writeln!(
                out,
                "[{t_s:8.3}s] sync lost after {}",
                plural(*bit_errors, "bit error", "bit errors")
            ),
            BertEvent::Slip {
                t_s,
                slips,
                new_slips,
                inserted_bits,
                deleted_bits,
            } => {
                let which = if *new_slips <= 1 {
                    format!("slip #{slips}")
                } else {
                    format!("slips #{} to #{slips}", slips + 1 - new_slips)
                };
                writeln!(
                    out,
                    "[{t_s:8.3}s] {which} (so far {} inserted, {} deleted)",
                    plural(*inserted_bits, "bit", "bits"),
                    plural(*deleted_bits, "bit", "bits")
                )
            }
            BertEvent::Second { .. } => Ok(()),
        }
    }
}

/// Where the checked bytes came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BertInput {
    /// Sent through a link and received back.
    #[default]
    Link,
    /// Read from a captured stream (`pattern check`).
    Stream,
}

/// What the pattern checker found, under the names both BERTs' summaries carry (`bert`'s and
/// the framed BERT's): one type, so the two JSON contracts cannot drift apart.
#[derive(Debug, Clone, Serialize)]
pub struct CheckFigures {
    /// Bits compared while in sync.
    pub bits: u64,
    /// Of them, bits received wrong.
    pub bit_errors: u64,
    /// `bit_errors / bits` (0 before any bit was compared).
    pub ber: f64,
    /// The BER the true one is below at `confidence` (Poisson bound; 1 before any bit).
    pub ber_upper_bound: f64,
    /// That confidence.
    pub confidence: f64,
    /// The `--max-ber` pass threshold, when set.
    pub max_ber: Option<f64>,
    /// Times sync was lost.
    pub sync_losses: u64,
    /// Slips: the pattern resumed at another phase.
    pub slips: u64,
    /// The bits slips inserted and deleted and the longest burst (`bert` reports them; the
    /// framed BERT's summary has never carried them).
    #[serde(flatten)]
    pub detail: Option<SlipDetail>,
    /// Bits received while hunting for the pattern (not compared).
    pub unsynced_bits: u64,
    /// In sync at the end.
    pub in_sync: bool,
}

/// Where bits were lost or gained, beyond the counts of [`CheckFigures`].
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct SlipDetail {
    /// Bits inserted at slips.
    pub inserted_bits: u64,
    /// Bits deleted at slips.
    pub deleted_bits: u64,
    /// The longest error burst, in bits.
    pub longest_burst_bits: u64,
}

impl CheckFigures {
    /// The figures of the checker's `counters`, with the BER's bound at `confidence`.
    pub(crate) fn new(counters: &CheckCounters, confidence: f64, max_ber: Option<f64>) -> Self {
        let (ber, ber_upper_bound) = ber_with_bound(counters.bits, counters.bit_errors, confidence);
        CheckFigures {
            bits: counters.bits,
            bit_errors: counters.bit_errors,
            ber,
            ber_upper_bound,
            confidence,
            max_ber,
            sync_losses: counters.sync_losses,
            slips: counters.slips,
            detail: Some(SlipDetail {
                inserted_bits: counters.inserted_bits,
                deleted_bits: counters.deleted_bits,
                longest_burst_bits: counters.longest_burst_bits,
            }),
            unsynced_bits: counters.unsynced_bits,
            in_sync: counters.in_sync,
        }
    }

    /// The BER verdict: above `max_ber` when set, else any bit error (`None`: it passes).
    pub(crate) fn ber_failure(&self) -> Option<String> {
        ber_failure(self.ber, self.bit_errors, self.max_ber)
    }
}

/// The G.821 figures of a run (ITU-T G.821), under the names both BERTs' summaries carry.
/// `bert`'s are `G821Figures<Option<u64>, Option<f64>>`: a checked stream with no time base
/// has none, and each field is then `null`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct G821Figures<Count = u64, Percent = f64> {
    /// Errored seconds (ES).
    pub errored_seconds: Count,
    /// Severely errored seconds (SES).
    pub severely_errored_seconds: Count,
    /// Unavailable seconds (UAS).
    pub unavailable_seconds: Count,
    /// Error-free seconds (EFS).
    pub error_free_seconds: Count,
    /// Available seconds.
    pub available_seconds: Count,
    /// %ES: errored over available seconds.
    pub es_percent: Percent,
    /// %SES: severely errored over available seconds.
    pub ses_percent: Percent,
}

impl From<&G821Summary> for G821Figures {
    fn from(g: &G821Summary) -> Self {
        G821Figures {
            errored_seconds: g.errored_seconds,
            severely_errored_seconds: g.severely_errored_seconds,
            unavailable_seconds: g.unavailable_seconds,
            error_free_seconds: g.error_free_seconds,
            available_seconds: g.available_seconds,
            es_percent: g.es_percent(),
            ses_percent: g.ses_percent(),
        }
    }
}

impl From<Option<G821Figures>> for G821Figures<Option<u64>, Option<f64>> {
    fn from(figures: Option<G821Figures>) -> Self {
        G821Figures {
            errored_seconds: figures.map(|g| g.errored_seconds),
            severely_errored_seconds: figures.map(|g| g.severely_errored_seconds),
            unavailable_seconds: figures.map(|g| g.unavailable_seconds),
            error_free_seconds: figures.map(|g| g.error_free_seconds),
            available_seconds: figures.map(|g| g.available_seconds),
            es_percent: figures.map(|g| g.es_percent),
            ses_percent: figures.map(|g| g.ses_percent),
        }
    }
}

impl G821Figures<Option<u64>, Option<f64>> {
    /// The figures, when the run had a time base.
    pub fn known(&self) -> Option<G821Figures> {
        Some(G821Figures {
            errored_seconds: self.errored_seconds?,
            severely_errored_seconds: self.severely_errored_seconds?,
            unavailable_seconds: self.unavailable_seconds?,
            error_free_seconds: self.error_free_seconds?,
            available_seconds: self.available_seconds?,
            es_percent: self.es_percent?,
            ses_percent: self.ses_percent?,
        })
    }
}

/// The result of a BERT run or a stream check. Field names are a contract with users' scripts.
#[derive(Debug, Clone, Serialize)]
pub struct BertSummary {
    /// The link, as the user wrote it.
    pub link: String,
    /// The pattern's name.
    pub pattern: String,
    /// The pattern is sent inverted.
    pub inverted: bool,
    /// The pattern is time-reversed.
    pub reversed: bool,
    /// Which bit of each byte goes first.
    pub bit_order: BitOrder,
    /// The pattern was found by `--pattern auto`.
    pub auto_detected: bool,
    /// Pattern bits per byte on the link (fewer than 8 on a 5, 6 or 7-bit serial line).
    pub data_bits: u8,
    /// What the checker found (the names the framed BERT's summary carries too).
    #[serde(flatten)]
    pub check: CheckFigures,
    /// G.821 over whole seconds (each `null` when the stream has no time base).
    #[serde(flatten)]
    pub g821: G821Figures<Option<u64>, Option<f64>>,
    /// The last second of the run, shorter than a second: not in the G.821 figures.
    pub partial_second_s: Option<f64>,
    /// Bits compared in the partial last second.
    pub partial_second_bits: Option<u64>,
    /// Bit errors in it.
    pub partial_second_bit_errors: Option<u64>,
    /// Bytes the link took (see the module documentation).
    pub bytes_sent: u64,
    /// Bytes the link gave back.
    pub bytes_received: u64,
    /// Bytes sent that never came back (0 when everything did).
    pub bytes_missing: u64,
    /// `bytes_missing` over `bytes_sent`, in percent.
    pub loss_percent: f64,
    /// The `--max-loss` allowance, in percent.
    pub max_loss_percent: Option<f64>,
    /// Bit errors injected on transmit.
    pub injected_bits: u64,
    /// Wall time of the run.
    pub elapsed_s: f64,
    /// Pattern bits received per second.
    pub throughput_bps: f64,
    /// Why the run ended.
    pub end_reason: EndReason,
    /// What went wrong, when something did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Link-specific figures (datagram loss, serial line counters, impairment done).
    pub link_stats: LinkStats,
    /// No failure reason (see [`BertSummary::failure_reasons`]).
    pub passed: bool,
    /// Where the checked bytes came from (not in JSON).
    #[serde(skip)]
    pub source: BertInput,
}

impl BertSummary {
    /// Why the run failed, in a few words (empty when it passed).
    pub fn failure_reasons(&self) -> Vec<String> {
        let mut reasons = Vec::new();
        if self.end_reason == EndReason::Interrupted {
            reasons.push("interrupted before the end".into());
        }
        if self.check.bits == 0 {
            reasons.push("never synchronised to the pattern".into());
        }
        reasons.extend(self.check.ber_failure());
        // Allowed loss makes slips and sync losses (the checker sees lost data as missing
        // bits); they are judged as loss then, not on their own.
        let judged_alone = self.check.max_ber.is_none() && self.max_loss_percent.is_none();
        if judged_alone && self.check.slips > 0 {
            reasons.push(plural(self.check.slips, "slip", "slips"));
        }
        if judged_alone && self.check.sync_losses > 0 {
            reasons.push(plural(self.check.sync_losses, "sync loss", "sync losses"));
        }
        if self.bytes_missing > 0 {
            match self.max_loss_percent {
                Some(max) if self.loss_percent <= max => {}
                Some(max) => reasons.push(format!(
                    "{:.3}% of the bytes lost, above --max-loss {max}%",
                    self.loss_percent
                )),
                None => reasons.push(format!(
                    "{} did not come back",
                    plural(self.bytes_missing, "byte", "bytes")
                )),
            }
        }
        match self.end_reason {
            EndReason::LinkClosed | EndReason::LinkError => {
                reasons.push(self.end_reason.describe().into());
            }
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
            options.push("inverted".to_string());
        }
        if self.reversed {
            options.push("reversed".into());
        }
        if self.bit_order == BitOrder::MsbFirst {
            options.push("msb-first".into());
        }
        if self.auto_detected {
            options.push("auto-detected".into());
        }
        if self.data_bits < 8 {
            options.push(format!("{} bits per character", self.data_bits));
        }
        if !options.is_empty() {
            pattern = format!("{pattern} ({})", options.join(", "));
        }
        let what = match self.source {
            BertInput::Link => "bert",
            BertInput::Stream => "pattern check",
        };
        writeln!(out, "--- {} {what}: {pattern} ---", self.link)?;
        let detail = self.check.detail.unwrap_or_default();
        let checked = self.check.bits;
        let rate = if self.check.bits > 0 {
            format!(" ({})", format_bit_rate(self.throughput_bps))
        } else {
            String::new()
        };
        let bytes = match self.source {
            BertInput::Link => format!(
                "{} sent, {} received",
                plural(self.bytes_sent, "byte", "bytes"),
                self.bytes_received
            ),
            BertInput::Stream => format!("{} read", plural(self.bytes_received, "byte", "bytes")),
        };
        writeln!(
            out,
            "bits         {checked} checked in {:.3} s{rate}, {bytes}",
            self.elapsed_s
        )?;
        if self.bytes_missing > 0 {
            writeln!(
                out,
                "lost         {} ({:.3}% of those sent)",
                plural(self.bytes_missing, "byte", "bytes"),
                self.loss_percent
            )?;
        }
        writeln!(
            out,
            "errors       {}, BER {} (< {} at {:.0}% confidence), longest burst {}",
            plural(self.check.bit_errors, "bit error", "bit errors"),
            format_ratio(self.check.ber),
            format_ratio(self.check.ber_upper_bound),
            self.check.confidence * 100.0,
            plural(detail.longest_burst_bits, "bit", "bits")
        )?;
        writeln!(
            out,
            "sync         {}, {}, {} ({} inserted, {} deleted), {} unsynchronised",
            if self.check.in_sync {
                "in sync"
            } else {
                "NOT in sync"
            },
            plural(self.check.sync_losses, "loss", "losses"),
            plural(self.check.slips, "slip", "slips"),
            plural(detail.inserted_bits, "bit", "bits"),
            plural(detail.deleted_bits, "bit", "bits"),
            plural(self.check.unsynced_bits, "bit", "bits")
        )?;
        if let Some(g) = self.g821.known() {
            let (es, ses, uas, efs) = (
                g.errored_seconds,
                g.severely_errored_seconds,
                g.unavailable_seconds,
                g.error_free_seconds,
            );
            let whole = g.available_seconds + uas;
            let mut line = format!(
                "{}: ES {es}, SES {ses}, UAS {uas}, EFS {efs}, %ES {:.3}, %SES {:.3}",
                plural(whole, "whole second", "whole seconds"),
                g.es_percent,
                g.ses_percent
            );
            if let (Some(s), Some(bits), Some(errors)) = (
                self.partial_second_s,
                self.partial_second_bits,
                self.partial_second_bit_errors,
            ) {
                line.push_str(&format!(
                    "; the last {s:.3} s is a partial second, not counted ({}, {})",
                    plural(bits, "bit", "bits"),
                    plural(errors, "error", "errors")
                ));
            }
            writeln!(out, "G.821        {line}")?;
        }
        if self.injected_bits > 0 {
            writeln!(
                out,
                "injected     {} on transmit",
                plural(self.injected_bits, "bit error", "bit errors")
            )?;
        }
        for (label, text) in self.link_stats.human_lines() {
            writeln!(out, "{label:<12} {text}")?;
        }
        if self.end_reason != EndReason::Completed || self.error.is_some() {
            match &self.error {
                Some(error) => {
                    writeln!(out, "ended        {}: {error}", self.end_reason.describe())?
                }
                None => writeln!(out, "ended        {}", self.end_reason.describe())?,
            }
        }
        write_result(out, self.passed, &self.failure_reasons())
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
        let pattern = || {
            checker
                .pattern()
                .map(PatternSpec::describe)
                .unwrap_or_default()
        };
        // A slip or a loss needs sync first: the first acquisition is told before them, even
        // when all three happened within one piece of data.
        let first_sync = !self.ever_synced && (now.in_sync || now.bits > 0);
        if first_sync {
            emit(BertEvent::SyncAcquired {
                t_s,
                pattern: pattern(),
            });
            self.ever_synced = true;
        }
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
                new_slips: now.slips - self.last.slips,
                inserted_bits: now.inserted_bits,
                deleted_bits: now.deleted_bits,
            });
        }
        // Re-acquisition is news only after a loss of sync.
        if !first_sync
            && now.in_sync
            && now.sync_losses > 0
            && (!self.last.in_sync || now.sync_losses > self.last.sync_losses)
        {
            emit(BertEvent::SyncAcquired {
                t_s,
                pattern: pattern(),
            });
        }
        self.last = now.clone();
    }
}

/// The last second of a run, shorter than a whole one.
#[derive(Debug, Clone, Copy, PartialEq)]
struct PartialSecond {
    duration_s: f64,
    bits: u64,
    bit_errors: u64,
}

/// Per-second G.821 accounting on a time line that starts with transmission (or with the
/// stream). Seconds before the first synchronisation are acquisition, not measurement, and are
/// not counted. Only whole seconds are pushed to G.821.
struct SecondClock {
    g821: G821,
    last: CheckCounters,
    seconds: u64,
    started: bool,
    /// End of the second being measured, in seconds from the start.
    next_boundary_s: f64,
    data_since_tick: bool,
}

impl SecondClock {
    fn new() -> Self {
        SecondClock {
            g821: G821::new(),
            last: CheckCounters::default(),
            seconds: 0,
            started: false,
            next_boundary_s: 1.0,
            data_since_tick: false,
        }
    }

    /// Closes every second that ends at or before `t_s`.
    fn tick_until(&mut self, t_s: f64, counters: &CheckCounters, emit: &mut dyn FnMut(BertEvent)) {
        while self.next_boundary_s <= t_s {
            let signal = std::mem::take(&mut self.data_since_tick);
            self.tick(counters, signal, self.next_boundary_s, emit);
            self.next_boundary_s += 1.0;
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
        let mut tally = second_tally(&self.last, counters, self.last.bits > 0);
        tally.sync_loss |= !signal;
        let SecondTally {
            bits, bit_errors, ..
        } = tally;
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
            severely_errored: tally.is_severely_errored(),
        });
        self.last = counters.clone();
    }

    /// What follows the last whole second up to `end_s`, when anything was measured in it.
    fn partial(&self, end_s: f64, counters: &CheckCounters) -> Option<PartialSecond> {
        let duration_s = end_s - (self.next_boundary_s - 1.0);
        let bits = counters.bits - self.last.bits;
        (duration_s > 0.0 && (self.started || bits > 0)).then(|| PartialSecond {
            // To the microsecond: finer is below any clock here, and 4.096 - 4.0 is not 0.096
            // in binary floating point.
            duration_s: (duration_s * 1e6).round() / 1e6,
            bits,
            bit_errors: counters.bit_errors - self.last.bit_errors,
        })
    }
}

/// The pure part of a BERT: what is done with the bytes that came back and with time. The same
/// for a live run over a link and for a captured stream.
pub struct Measurement {
    checker: Checker,
    watcher: EventWatcher,
    clock: Option<SecondClock>,
    /// Narrow characters (5..7 data bits): the pattern's bytes are rebuilt from their data bits.
    unpacker: Option<CharUnpacker>,
    unpacked: Vec<u8>,
}

impl Measurement {
    /// `data_bits`: pattern bits per byte received (8, or a serial line's 5..7); `seconds`:
    /// keep G.821 seconds.
    pub fn new(expect: Expect, data_bits: u8, seconds: bool) -> Self {
        let order = match &expect {
            Expect::Pattern(spec) => spec.bit_order,
            Expect::Auto(order) => *order,
        };
        Measurement {
            checker: Checker::new(CheckerConfig { expect }),
            watcher: EventWatcher::new(),
            clock: seconds.then(SecondClock::new),
            unpacker: (data_bits < 8).then(|| CharUnpacker::new(data_bits, order)),
            unpacked: Vec::new(),
        }
    }

    /// The checker's totals so far.
    pub fn counters(&self) -> &CheckCounters {
        self.checker.counters()
    }

    /// Checks `data` that arrived at `t_s` (seconds since the start); close the seconds that
    /// ended before it first, with [`Measurement::tick_until`].
    pub fn feed(&mut self, data: &[u8], t_s: f64, emit: &mut dyn FnMut(BertEvent)) {
        match &mut self.unpacker {
            Some(unpacker) => {
                self.unpacked.clear();
                unpacker.unpack(data, &mut self.unpacked);
                self.checker.feed(&self.unpacked);
            }
            None => self.checker.feed(data),
        }
        if let Some(clock) = &mut self.clock {
            clock.data_since_tick = true;
        }
        self.watcher.observe(&self.checker, t_s, emit);
    }

    /// Closes every whole second that ends at or before `t_s`.
    pub fn tick_until(&mut self, t_s: f64, emit: &mut dyn FnMut(BertEvent)) {
        if let Some(clock) = &mut self.clock {
            clock.tick_until(t_s, self.checker.counters(), emit);
        }
    }

    /// Settles the checker, closes the whole seconds up to `end_s` and returns the partial one
    /// after them.
    fn finish(&mut self, end_s: f64, emit: &mut dyn FnMut(BertEvent)) -> Option<PartialSecond> {
        self.checker.finish();
        self.watcher.observe(&self.checker, end_s, emit);
        let clock = self.clock.as_mut()?;
        clock.tick_until(end_s, self.checker.counters(), emit);
        clock.partial(end_s, self.checker.counters())
    }
}

/// Everything the summary needs besides the measurement.
struct Totals {
    link: String,
    source: BertInput,
    data_bits: u8,
    bytes_sent: u64,
    bytes_received: u64,
    injected_bits: u64,
    elapsed: Duration,
    end_reason: EndReason,
    error: Option<String>,
    link_stats: LinkStats,
}

fn summarize(
    measurement: &Measurement,
    partial: Option<PartialSecond>,
    fallback: &PatternSpec,
    options: &BertOptions,
    totals: Totals,
) -> BertSummary {
    let checker = &measurement.checker;
    let c = checker.counters();
    let spec = checker
        .pattern()
        .cloned()
        .unwrap_or_else(|| fallback.clone());
    let auto = matches!(options.rx_expect, Expect::Auto(_));
    let elapsed_s = totals.elapsed.as_secs_f64();
    let throughput_bps = if elapsed_s > 0.0 {
        totals.bytes_received as f64 * f64::from(totals.data_bits) / elapsed_s
    } else {
        0.0
    };
    let added = totals
        .link_stats
        .impairment
        .as_ref()
        .map_or(0, |i| i.inserted_bytes.saturating_add(i.duplicated_bytes));
    let bytes_missing = totals
        .bytes_sent
        .saturating_add(added)
        .saturating_sub(totals.bytes_received);
    let loss_percent = if totals.bytes_sent > 0 {
        100.0 * bytes_missing as f64 / totals.bytes_sent as f64
    } else {
        0.0
    };
    let mut summary = BertSummary {
        link: totals.link,
        pattern: spec.kind.name(),
        inverted: spec.inverted(),
        reversed: spec.reverse,
        bit_order: spec.bit_order,
        auto_detected: auto && checker.pattern().is_some(),
        data_bits: totals.data_bits,
        check: CheckFigures::new(c, options.confidence, options.max_ber),
        g821: measurement
            .clock
            .as_ref()
            .map(|clock| G821Figures::from(&clock.g821.summary()))
            .into(),
        partial_second_s: partial.map(|p| p.duration_s),
        partial_second_bits: partial.map(|p| p.bits),
        partial_second_bit_errors: partial.map(|p| p.bit_errors),
        bytes_sent: totals.bytes_sent,
        bytes_received: totals.bytes_received,
        bytes_missing,
        loss_percent,
        max_loss_percent: options.max_loss.map(|m| m * 100.0),
        injected_bits: totals.injected_bits,
        elapsed_s,
        throughput_bps,
        end_reason: totals.end_reason,
        error: totals.error,
        link_stats: totals.link_stats,
        passed: false,
        source: totals.source,
    };
    summary.passed = summary.failure_reasons().is_empty();
    summary
}

/// What the transmit thread and the receive side share.
struct TxShared {
    /// Bytes the link took.
    sent: AtomicU64,
    /// Bytes that came back (for the in-flight limit on paced links).
    received: AtomicU64,
    done: AtomicBool,
    /// The transmitter got to the end of its run (its amount, its deadline or a stop), as
    /// opposed to failing or being halted by the receive side.
    reached_end: AtomicBool,
    /// When the transmitter stopped, in nanoseconds since the start.
    done_at_ns: AtomicU64,
    /// Set by the receive side when it has ended the run first; cancels a blocked send.
    halt: Arc<AtomicBool>,
    /// Sending failed: what was sent is not all there will be, so keep reading to the end.
    failed: AtomicBool,
}

/// What the transmit thread hands back.
struct TxResult {
    injected_bits: u64,
    error: Option<io::Error>,
}

/// The pattern as it goes on the link: bytes, or characters of fewer data bits.
struct TxPattern {
    generator: Generator,
    injector: ErrorInjector,
    packer: Option<(CharPacker, u8)>,
    bytes: Vec<u8>,
    /// Characters packed and not yet sent, in order.
    carry: Vec<u8>,
    injected: u64,
}

impl TxPattern {
    /// Puts the next `n` link bytes in `out`, with the requested errors.
    fn next(&mut self, n: usize, out: &mut Vec<u8>) {
        let Some((packer, width)) = &mut self.packer else {
            // The generator overwrites every byte: resize without clearing, so a buffer of the
            // right length is not zeroed first (a memset per chunk cost a tenth of loop: speed).
            out.resize(n, 0);
            self.generator.fill(out);
            self.injector.apply(out);
            self.injected = self.injector.injected_bits();
            return;
        };
        let width = *width;
        out.clear();
        while self.carry.len() < n {
            let bits = (n - self.carry.len()) as u64 * u64::from(width);
            let need = bits.saturating_sub(u64::from(packer.pending_bits()));
            self.bytes.resize(need.div_ceil(8).max(1) as usize, 0);
            self.generator.fill(&mut self.bytes);
            packer.pack(&self.bytes, &mut self.carry);
        }
        out.extend(self.carry.drain(..n));
        // Errors go into the data bits only: a flip in the bits above would be lost on the
        // wire and never seen, so it must not be made or counted.
        let mask = (0xffu16 >> (8 - width)) as u8;
        let clean = out.clone();
        self.injector.apply(out);
        for (byte, original) in out.iter_mut().zip(&clean) {
            let flipped = (*byte ^ original) & mask;
            self.injected += u64::from(flipped.count_ones());
            *byte = original ^ flipped;
        }
    }
}

fn nanos_since(start: Instant) -> u64 {
    start.elapsed().as_nanos().min(u128::from(u64::MAX)) as u64
}

/// Runs a BERT over `link`. `emit` receives events; `progress` is called about ten times a
/// second with the bytes received so far. Environment errors (the link cannot open) are
/// returned as `Err`; anything that goes wrong once running ends the run with a summary.
///
/// Nothing blocks past the caller's reach: the transmitter's sends give up at the stop flag,
/// at the end of a `Duration` run, and when the receive side ends first; the receiver wakes
/// every 100 ms. A stuck link ends the run at its deadline (or on the stop flag) plus at most
/// the drain timeout.
pub fn run(
    link: Box<dyn Link>,
    options: &BertOptions,
    control: &BertControl,
    emit: &mut dyn FnMut(BertEvent),
    progress: &mut dyn FnMut(u64, &CheckCounters),
) -> Result<BertSummary, LinkError> {
    let description = link.describe();
    let data_bits = link.data_bits().clamp(1, 8);
    // On a paced link (a serial line) keep about 50 ms of line time in flight, so the run ends
    // with its deadline, not seconds of buffered characters later.
    let in_flight_limit = link
        .line_rate_bps()
        .map(|rate| ((rate / f64::from(data_bits) * 0.05) as u64).max(16));
    let (mut sender, mut receiver) = link.split()?;
    let lossy = receiver.is_lossy();
    let start = Instant::now();
    let shared = Arc::new(TxShared {
        sent: AtomicU64::new(0),
        received: AtomicU64::new(0),
        done: AtomicBool::new(false),
        reached_end: AtomicBool::new(false),
        done_at_ns: AtomicU64::new(0),
        halt: Arc::new(AtomicBool::new(false)),
        failed: AtomicBool::new(false),
    });
    let chunk = match in_flight_limit {
        Some(limit) => options.chunk_bytes.min(limit as usize),
        None => options.chunk_bytes,
    }
    .max(1);

    let tx_thread = {
        let shared = Arc::clone(&shared);
        let control = control.clone();
        let options = options.clone();
        thread::Builder::new()
            .name("bert-tx".into())
            .spawn(move || -> TxResult {
                let order = options.tx_pattern.bit_order;
                let mut pattern = TxPattern {
                    generator: Generator::new(&options.tx_pattern),
                    injector: ErrorInjector::new(options.inject_ber, options.inject_seed),
                    packer: (data_bits < 8).then(|| (CharPacker::new(data_bits, order), data_bits)),
                    bytes: Vec::new(),
                    carry: Vec::new(),
                    injected: 0,
                };
                let mut buf = Vec::with_capacity(chunk);
                let limit_bytes = match options.amount {
                    Amount::Bits(bits) => bits.div_ceil(u64::from(data_bits)),
                    _ => u64::MAX,
                };
                let mut cancel =
                    Cancel::on(Arc::clone(&control.stop)).or_on(Arc::clone(&shared.halt));
                if let Amount::Duration(duration) = options.amount
                    && let Some(deadline) = start.checked_add(duration)
                {
                    cancel = cancel.until(deadline);
                }
                let mut next_burst = options
                    .inject_burst_every
                    .and_then(|every| start.checked_add(every));
                let mut error = None;
                let mut sent = 0u64;
                while sent < limit_bytes && !cancel.is_cancelled() {
                    if let Some(limit) = in_flight_limit {
                        let received = shared.received.load(Ordering::Acquire);
                        if sent.saturating_sub(received) >= limit {
                            if !cancel.sleep(Duration::from_millis(1)) {
                                break;
                            }
                            continue;
                        }
                    }
                    let n = (limit_bytes - sent).min(chunk as u64) as usize;
                    for _ in 0..control.single_errors.swap(0, Ordering::Relaxed) {
                        pattern.injector.request_single();
                    }
                    let mut bursts = control.bursts.swap(0, Ordering::Relaxed);
                    if let Some(due) = next_burst
                        && Instant::now() >= due
                    {
                        bursts += 1;
                        next_burst = options
                            .inject_burst_every
                            .and_then(|every| due.checked_add(every));
                    }
                    for _ in 0..bursts {
                        pattern.injector.request_burst(options.inject_burst_bits);
                    }
                    pattern.next(n, &mut buf);
                    match sender.send(&buf, &cancel) {
                        Ok(()) => sent += n as u64,
                        Err(e) => {
                            error = send_failed(e, &mut sent, &shared.sent, &shared.failed);
                            break;
                        }
                    }
                    shared.sent.store(sent, Ordering::Release);
                }
                shared
                    .done_at_ns
                    .store(nanos_since(start), Ordering::Release);
                if error.is_none() && !shared.halt.load(Ordering::Acquire) {
                    shared.reached_end.store(true, Ordering::Release);
                }
                if error.is_none() {
                    // End of stream is how a loop like exec:cat learns the input is over; give
                    // it a moment even after a deadline, but not past a stop.
                    let finish_cancel = Cancel::on(Arc::clone(&control.stop))
                        .until(Instant::now() + Duration::from_secs(1));
                    if let Err(e) = sender.finish(&finish_cancel) {
                        error = Some(e);
                    }
                }
                shared.done.store(true, Ordering::Release);
                TxResult {
                    injected_bits: pattern.injected,
                    error,
                }
            })
            .map_err(|e| LinkError::io("cannot start the transmit thread", e))?
    };

    let mut measurement = Measurement::new(options.rx_expect.clone(), data_bits, true);
    let mut buf = vec![0u8; options.chunk_bytes.max(4096)];
    let _ = receiver.set_timeout(Some(Duration::from_millis(100)));
    let mut received = 0u64;
    let mut last_data = start;
    let mut next_progress = start;
    let mut end_reason = EndReason::Completed;
    let mut error: Option<String> = None;
    let secs = |at: Instant| at.saturating_duration_since(start).as_secs_f64();
    let tx_end_s = |shared: &TxShared| shared.done_at_ns.load(Ordering::Acquire) as f64 / 1e9;
    // After a stop, stragglers are waited for only while they keep coming.
    let stop_drain = options.drain_timeout.min(Duration::from_millis(200));

    loop {
        let now = Instant::now();
        let tx_done = shared.done.load(Ordering::Acquire);
        // Line time runs while the transmitter runs, then as far as data keeps coming.
        let line_end_s = if tx_done {
            secs(last_data).max(tx_end_s(&shared))
        } else {
            secs(now)
        };
        measurement.tick_until(line_end_s, emit);
        if now >= next_progress {
            progress(received, measurement.counters());
            next_progress = now + Duration::from_millis(100);
        }
        let sent = shared.sent.load(Ordering::Acquire);
        // After a failed send, part of a chunk may still be on its way: read on to the end.
        if tx_done && received >= sent && !shared.failed.load(Ordering::Acquire) {
            break;
        }
        let stopped = control.stop.load(Ordering::Relaxed);
        let drain = if stopped {
            stop_drain
        } else {
            options.drain_timeout
        };
        if tx_done && now.duration_since(last_data) >= drain {
            end_reason = if stopped {
                EndReason::Interrupted
            } else {
                EndReason::DrainTimeout
            };
            break;
        }
        match receiver.recv(&mut buf) {
            Ok(0) => {
                // End of stream. Normal once the transmitter got to the end of its run (whose
                // finish() is what closes a loop like exec:cat) and everything it sent came
                // back, or on a link that loses data without closing once all of it is
                // accounted for. A transmitter still sending meets the closed link itself
                // (EPIPE, a reset) within moments; one that does not is halted.
                let give_up = Instant::now() + options.drain_timeout;
                while !shared.done.load(Ordering::Acquire) && Instant::now() < give_up {
                    thread::sleep(Duration::from_millis(1));
                }
                shared.halt.store(true, Ordering::Relaxed);
                let sent = shared.sent.load(Ordering::Acquire);
                let all_sent = shared.reached_end.load(Ordering::Acquire);
                if !(all_sent && (received >= sent || lossy)) {
                    end_reason = EndReason::LinkClosed;
                    error = Some(format!(
                        "it closed after {received} of {sent} bytes came back"
                    ));
                }
                break;
            }
            Ok(n) => {
                let at = Instant::now();
                measurement.tick_until(secs(at), emit);
                measurement.feed(&buf[..n], secs(at), emit);
                received += n as u64;
                shared.received.store(received, Ordering::Release);
                last_data = at;
            }
            Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                // A datagram peer answered with ICMP port unreachable: nobody listens there.
                end_reason = EndReason::LinkClosed;
                error = Some(format!("nobody answers at the far end ({e})"));
                break;
            }
            Err(e) => {
                end_reason = EndReason::LinkError;
                error = Some(format!("receive failed: {e}"));
                break;
            }
        }
    }
    let user_stopped = control.stop.load(Ordering::Relaxed);
    // Stop the transmitter if the receive side ended first (its blocked send sees the halt).
    // Keep reading for a moment so a sender stuck behind a full link can move, and count what
    // still comes back as received (unchecked: the run is over).
    shared.halt.store(true, Ordering::Relaxed);
    let (drained, link_stats) = close_receiver(receiver, &shared.done, &mut buf);
    received += drained;
    let tx = join_within(tx_thread, Duration::from_secs(2), |error| TxResult {
        injected_bits: 0,
        error: Some(error),
    });
    if let Some(e) = tx.error
        && error.is_none()
        && end_reason == EndReason::Completed
    {
        end_reason = EndReason::after_send_failure(&e);
        error = Some(format!(
            "send failed after {} bytes: {e}",
            shared.sent.load(Ordering::Acquire)
        ));
    }
    if user_stopped && matches!(end_reason, EndReason::Completed | EndReason::DrainTimeout) {
        end_reason = EndReason::Interrupted;
    }
    let done_s = tx_end_s(&shared);
    let end_s = secs(last_data).max(done_s);
    let partial = measurement.finish(end_s, emit);
    progress(received, measurement.counters());
    let totals = Totals {
        link: description,
        source: BertInput::Link,
        data_bits,
        bytes_sent: shared.sent.load(Ordering::Acquire),
        bytes_received: received,
        injected_bits: tx.injected_bits,
        elapsed: Duration::from_secs_f64(end_s).max(Duration::from_micros(1)),
        end_reason,
        error,
        link_stats,
    };
    Ok(summarize(
        &measurement,
        partial,
        &options.tx_pattern,
        options,
        totals,
    ))
}

/// Checks a captured stream (a file, stdin) through the same [`Measurement`] as a BERT run and
/// summarises it alike. With `bit_rate` the stream is cut into seconds of that many bits for
/// G.821 figures; without it those figures are absent (`null` in JSON).
pub fn check_stream(
    mut reader: impl Read,
    source: &str,
    options: &BertOptions,
    bit_rate: Option<u64>,
    stop: &AtomicBool,
    emit: &mut dyn FnMut(BertEvent),
) -> io::Result<BertSummary> {
    let start = Instant::now();
    let mut measurement = Measurement::new(options.rx_expect.clone(), 8, bit_rate.is_some());
    let mut buf = vec![0u8; options.chunk_bytes.max(4096)];
    let mut received = 0u64;
    let mut end_reason = EndReason::Completed;
    let mut error = None;
    // Seconds on the stream's own time base: bits read over the line rate.
    let rate = bit_rate.map(|r| r.max(8));
    let t_of = |bytes: u64| match rate {
        Some(rate) => bytes as f64 * 8.0 / rate as f64,
        None => start.elapsed().as_secs_f64(),
    };
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
        // Feed up to each second boundary, so each second closes on its own bits, and in
        // pieces of a millisecond of line time, so events carry their time to the millisecond.
        let mut data = &buf[..n];
        while !data.is_empty() {
            let take = match rate {
                Some(rate) => {
                    let into_second = (received * 8) % rate;
                    let to_boundary = ((rate - into_second) / 8).max(1);
                    let millisecond = (rate / 8000).max(1);
                    (to_boundary.min(millisecond) as usize).min(data.len())
                }
                None => data.len(),
            };
            received += take as u64;
            let t_s = t_of(received);
            measurement.feed(&data[..take], t_s, emit);
            measurement.tick_until(t_s, emit);
            data = &data[take..];
        }
    }
    if stop.load(Ordering::Relaxed) {
        end_reason = EndReason::Interrupted;
    }
    let end_s = t_of(received);
    let partial = measurement.finish(end_s, emit);
    let totals = Totals {
        link: source.to_string(),
        source: BertInput::Stream,
        data_bits: 8,
        bytes_sent: received,
        bytes_received: received,
        injected_bits: 0,
        elapsed: start.elapsed().max(Duration::from_micros(1)),
        end_reason,
        error,
        link_stats: LinkStats::default(),
    };
    Ok(summarize(
        &measurement,
        partial,
        &options.tx_pattern,
        options,
        totals,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use loopscope_link::link::{LinkHalves, LinkReceiver, LinkSender, SendError};
    use loopscope_pattern::PatternKind;
    use std::sync::Mutex;

    /// A far end that echoes the first send, then stops taking data and closes its side (as a
    /// reflector killed after one chunk: everything sent so far came back, then end of stream).
    struct EchoOnceThenClose;

    struct Shared {
        echoed: Mutex<Option<Vec<u8>>>,
    }

    struct OnceSender {
        shared: Arc<Shared>,
        sent_once: bool,
    }

    struct OnceReceiver {
        shared: Arc<Shared>,
        given: usize,
    }

    impl Link for EchoOnceThenClose {
        fn describe(&self) -> String {
            "echo-once:".into()
        }

        fn split(self: Box<Self>) -> Result<LinkHalves, LinkError> {
            let shared = Arc::new(Shared {
                echoed: Mutex::new(None),
            });
            Ok((
                Box::new(OnceSender {
                    shared: Arc::clone(&shared),
                    sent_once: false,
                }),
                Box::new(OnceReceiver { shared, given: 0 }),
            ))
        }
    }

    impl LinkSender for OnceSender {
        fn send(&mut self, data: &[u8], cancel: &Cancel) -> Result<(), SendError> {
            if !self.sent_once {
                self.sent_once = true;
                *self.shared.echoed.lock().unwrap() = Some(data.to_vec());
                return Ok(());
            }
            // Full from now on: wait as a blocked socket would, until cancelled.
            while cancel.sleep(Duration::from_millis(5)) {}
            Err(SendError::cancelled(0))
        }
    }

    impl LinkReceiver for OnceReceiver {
        fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let echoed = self.shared.echoed.lock().unwrap();
            match echoed.as_ref() {
                None => {
                    drop(echoed);
                    thread::sleep(Duration::from_millis(5));
                    Err(io::ErrorKind::TimedOut.into())
                }
                Some(data) if self.given < data.len() => {
                    let n = (data.len() - self.given).min(buf.len());
                    buf[..n].copy_from_slice(&data[self.given..self.given + n]);
                    self.given += n;
                    Ok(n)
                }
                Some(_) => Ok(0),
            }
        }

        fn set_timeout(&mut self, _timeout: Option<Duration>) -> io::Result<()> {
            Ok(())
        }
    }

    /// A stream that ends while the transmitter is still in its run is a link that closed
    /// early, even when all that was sent so far came back (under load, a run through a
    /// reflector killed after one chunk once passed as completed).
    #[test]
    fn an_end_of_stream_mid_run_is_a_closed_link_even_with_nothing_missing() {
        let mut options = BertOptions::new(PatternSpec::standard(PatternKind::Prbs15));
        options.amount = Amount::Duration(Duration::from_secs(3600));
        options.chunk_bytes = 64 * 1024;
        options.drain_timeout = Duration::from_millis(100);
        let summary = run(
            Box::new(EchoOnceThenClose),
            &options,
            &BertControl::default(),
            &mut |_| {},
            &mut |_, _| {},
        )
        .unwrap();
        assert_eq!(summary.bytes_sent, 64 * 1024);
        assert_eq!(summary.bytes_received, 64 * 1024);
        assert_eq!(summary.end_reason, EndReason::LinkClosed, "{summary:?}");
        assert!(!summary.passed);
    }
}
