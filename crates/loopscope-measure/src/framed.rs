//! The framed T1/E1 BERT and the loopback procedure a test set drives around it:
//!
//! 1. **Loop up**: send the loop-up command (an in-band code, framed or unframed, or an ESF
//!    FDL activate message) until the loop is seen to close: our own code comes back, or, for
//!    FDL commands (which go with the test pattern), our pattern comes back.
//! 2. **Loop closed**: send the framed test pattern and wait until the checker synchronises to
//!    it: the far end is looped.
//! 3. **BERT**: count for the chosen line time. Payload errors (the checker), framing-bit
//!    errors, CRC errors, E-bits and losses of frame (the deframer) are counted apart; every
//!    second is accounted by G.821 (payload bits) and, where the framing has a CRC, G.826
//!    (CRC blocks, with loss of frame as a defect).
//! 4. **Loop down**: send the loop-down command until the loop is seen to open (our code stops
//!    coming back, or our pattern does).
//! 5. **Confirm**: send the pattern for a while more: it must not come back.
//!
//! Every phase is an event. All times are **line time**: received bits divided by the line
//! rate, as in [`loopscope_link::niu`]. A second of G.826 is 8000 frames of received line.
//!
//! The transmitter runs on its own thread and sends what the current phase asks for; the
//! receiver (the caller's thread) decides when a phase ends, from what comes back.

use std::io::{self, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use loopscope_link::link::{Link, LinkError, is_timeout};
use loopscope_pattern::checker::Expect;
use loopscope_pattern::framing::{
    Deframer, DeframerCounters, DeframerEvent, FdlTx, Framer, Framing, PayloadSource,
    RepeatingBits, Timeslots,
};
use loopscope_pattern::g821::{G821, SecondTally};
use loopscope_pattern::g826::{BlockSecond, G826, G826Summary};
use loopscope_pattern::loopcode::{Bom, Detection, InbandCode, InbandDetector};
use loopscope_pattern::{
    BitOrder, CheckCounters, Checker, CheckerConfig, ErrorInjector, Generator, PatternSpec,
};
use loopscope_report::{Record, format_ratio};
use serde::Serialize;

use crate::bert::{CheckFigures, EndReason, G821Figures};
use crate::ending::{close_receiver, join_within, second_tally, send_failed, write_result};

/// How the far end is commanded to loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoopCommand {
    /// No command: the link is already a loop.
    None,
    /// In-band codes, framed (in every timeslot) or unframed (the whole line).
    Inband {
        /// The loop-up code.
        up: InbandCode,
        /// The loop-down code.
        down: InbandCode,
        /// Sent in every timeslot of framed line (true) or over the whole unframed line.
        framed: bool,
    },
    /// ESF FDL line loopback activate / deactivate.
    FdlLine,
    /// ESF FDL payload loopback activate / deactivate.
    FdlPayload,
}

impl LoopCommand {
    fn describe_up(&self) -> String {
        self.describe(true)
    }

    fn describe_down(&self) -> String {
        self.describe(false)
    }

    /// The loop-up (`activate`) or loop-down command, in words.
    fn describe(&self, activate: bool) -> String {
        let (line, payload) = if activate {
            (Bom::LineLoopbackActivate, Bom::PayloadLoopbackActivate)
        } else {
            (Bom::LineLoopbackDeactivate, Bom::PayloadLoopbackDeactivate)
        };
        match self {
            LoopCommand::None => "none".into(),
            LoopCommand::Inband { up, down, framed } => format!(
                "in-band {} {}",
                if activate { up } else { down }.bit_string(),
                if *framed { "framed" } else { "unframed" }
            ),
            LoopCommand::FdlLine => format!("fdl {line}"),
            LoopCommand::FdlPayload => format!("fdl {payload}"),
        }
    }

    fn is_fdl(&self) -> bool {
        matches!(self, LoopCommand::FdlLine | LoopCommand::FdlPayload)
    }
}

/// How long the BERT counts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FramedAmount {
    /// Line time.
    Duration(Duration),
    /// Until stopped.
    Unlimited,
}

/// How a framed BERT runs: the line, the timeslots, the loop command and the test.
#[derive(Debug, Clone)]
pub struct FramedOptions {
    /// The line's framing (T1 SF/ESF, E1 with or without CRC-4).
    pub framing: Framing,
    /// The timeslots the pattern goes in.
    pub timeslots: Timeslots,
    /// The payload pattern; it is sent most significant bit first whatever its bit order says
    /// (the order of bits in a timeslot).
    pub pattern: PatternSpec,
    /// How the far end is told to loop.
    pub command: LoopCommand,
    /// Send the loop-down command at the end (when there is a command).
    pub loop_down: bool,
    /// How long the BERT counts.
    pub amount: FramedAmount,
    /// How long to send a command and wait for the loop to close or open (line time).
    pub loop_wait: Duration,
    /// How long the pattern may take to come back once the loop is up (line time).
    pub sync_wait: Duration,
    /// How long the pattern is sent after loop-down to confirm it no longer comes back.
    pub confirm: Duration,
    /// Random errors injected into the payload before framing (probability per bit).
    pub inject_ber: f64,
    /// Seed of the injected errors: the same seed, the same errors.
    pub inject_seed: u64,
    /// The pass threshold; `None`: any error fails.
    pub max_ber: Option<f64>,
    /// Confidence of `ber_upper_bound`.
    pub confidence: f64,
    /// The octet in timeslots the pattern does not use.
    pub idle_octet: u8,
    /// Wall-clock time without any received data after which the link is taken as dead.
    pub drain_timeout: Duration,
}

impl FramedOptions {
    /// A 10-second test of `pattern` in every timeslot of a `framing` line, with no loop
    /// command and no injected errors (any error fails).
    pub fn new(framing: Framing, pattern: PatternSpec) -> Self {
        FramedOptions {
            framing,
            timeslots: Timeslots::all(framing),
            pattern,
            command: LoopCommand::None,
            loop_down: true,
            amount: FramedAmount::Duration(Duration::from_secs(10)),
            loop_wait: Duration::from_secs(10),
            sync_wait: Duration::from_secs(2),
            confirm: Duration::from_secs(1),
            inject_ber: 0.0,
            inject_seed: 1,
            max_ber: None,
            confidence: 0.95,
            idle_octet: if framing.is_t1() { 0xFF } else { 0xD5 },
            drain_timeout: Duration::from_secs(2),
        }
    }
}

/// Something that happened (line time `t_s`).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum FramedEvent {
    /// The loop-up command started.
    LoopUpSent {
        /// Line time.
        t_s: f64,
        /// The command, described.
        command: String,
    },
    /// Our own loop-up code came back: the far end is looping.
    LoopUpReturned {
        /// Line time.
        t_s: f64,
    },
    /// The test pattern came back: the loop is closed.
    LoopClosed {
        /// Line time.
        t_s: f64,
        /// Line time from the loop-up command to the pattern coming back.
        after_s: f64,
    },
    /// The pattern did not come back within the wait: the loop did not close.
    LoopNotClosed {
        /// Line time.
        t_s: f64,
    },
    /// The BERT began counting.
    BertStarted {
        /// Line time.
        t_s: f64,
    },
    /// The BERT stopped counting.
    BertFinished {
        /// Line time.
        t_s: f64,
        /// Whole seconds counted.
        seconds: u64,
    },
    /// The loop-down command started.
    LoopDownSent {
        /// Line time.
        t_s: f64,
        /// The command, described.
        command: String,
    },
    /// The pattern no longer comes back: the loop is open.
    LoopOpened {
        /// Line time.
        t_s: f64,
    },
    /// The pattern still came back after loop-down: the loop did not open.
    LoopStillClosed {
        /// Line time.
        t_s: f64,
    },
    /// Frame alignment found.
    FrameAligned {
        /// Line time.
        t_s: f64,
    },
    /// Frame alignment lost.
    FrameLost {
        /// Line time.
        t_s: f64,
    },
    /// The checker found the pattern in the payload.
    SyncAcquired {
        /// Line time.
        t_s: f64,
        /// The pattern found, described.
        pattern: String,
    },
    /// The checker lost the pattern.
    SyncLost {
        /// Line time.
        t_s: f64,
        /// Bit errors so far.
        bit_errors: u64,
    },
    /// A whole second of the BERT closed (G.821 and G.826 accounting).
    Second {
        /// Line time (its end).
        t_s: f64,
        /// Its number, from 1.
        second: u64,
        /// Payload bits compared in it.
        bits: u64,
        /// Payload bit errors in it.
        bit_errors: u64,
        /// CRC blocks that ended in it.
        crc_blocks: u64,
        /// Of them, blocks whose CRC failed.
        crc_errors: u64,
        /// Framing bits received wrong in it.
        frame_bit_errors: u64,
        /// A defect (loss of frame) was present in it.
        defect: bool,
        /// It was severely errored (G.821, and G.826 too where the framing has a CRC).
        severely_errored: bool,
    },
}

impl Record for FramedEvent {
    fn kind(&self) -> &'static str {
        "event"
    }

    fn write_human(&self, out: &mut dyn Write) -> io::Result<()> {
        match self {
            FramedEvent::LoopUpSent { t_s, command } => {
                writeln!(out, "[{t_s:8.3}s] loop-up: sending {command}")
            }
            FramedEvent::LoopUpReturned { t_s } => {
                writeln!(out, "[{t_s:8.3}s] loop-up code is coming back")
            }
            FramedEvent::LoopClosed { t_s, after_s } => writeln!(
                out,
                "[{t_s:8.3}s] loop closed: the test pattern comes back ({after_s:.3} s after loop-up)"
            ),
            FramedEvent::LoopNotClosed { t_s } => writeln!(
                out,
                "[{t_s:8.3}s] loop NOT closed: the test pattern does not come back"
            ),
            FramedEvent::BertStarted { t_s } => writeln!(out, "[{t_s:8.3}s] BERT started"),
            FramedEvent::BertFinished { t_s, seconds } => {
                writeln!(out, "[{t_s:8.3}s] BERT finished after {seconds} s")
            }
            FramedEvent::LoopDownSent { t_s, command } => {
                writeln!(out, "[{t_s:8.3}s] loop-down: sending {command}")
            }
            FramedEvent::LoopOpened { t_s } => writeln!(
                out,
                "[{t_s:8.3}s] loop opened: the test pattern no longer comes back"
            ),
            FramedEvent::LoopStillClosed { t_s } => writeln!(
                out,
                "[{t_s:8.3}s] loop still CLOSED after loop-down: the pattern still comes back"
            ),
            FramedEvent::FrameAligned { t_s } => writeln!(out, "[{t_s:8.3}s] frame aligned"),
            FramedEvent::FrameLost { t_s } => writeln!(out, "[{t_s:8.3}s] LOSS OF FRAME"),
            FramedEvent::SyncAcquired { t_s, pattern } => {
                writeln!(out, "[{t_s:8.3}s] pattern sync: {pattern}")
            }
            FramedEvent::SyncLost { t_s, bit_errors } => writeln!(
                out,
                "[{t_s:8.3}s] pattern sync lost after {bit_errors} bit errors"
            ),
            FramedEvent::Second { .. } => Ok(()),
        }
    }
}

/// The result. The payload fields carry the same names as `bert`'s summary.
#[derive(Debug, Clone, Serialize)]
pub struct FramedSummary {
    /// The link, as the user wrote it.
    pub link: String,
    /// The line's framing.
    pub framing: Framing,
    /// The timeslots the pattern went in.
    pub timeslots: String,
    /// Payload bits per second in those timeslots.
    pub payload_rate_bps: u64,
    /// The pattern's name.
    pub pattern: String,
    /// The loop-up command, described.
    pub loop_up: String,
    /// The loop-down command, described.
    pub loop_down: String,
    /// Whether the loop closed (true when no command was needed and the pattern came back).
    pub loop_closed: bool,
    /// Line time from the first loop-up bit to the pattern coming back.
    pub loop_up_s: Option<f64>,
    /// Whether the loop was seen to open after loop-down (`None`: no loop-down sent).
    pub loop_opened: Option<bool>,
    /// Payload, from the pattern checker during the BERT (`bert`'s names; without `bert`'s
    /// slip detail).
    #[serde(flatten)]
    pub check: CheckFigures,
    /// G.821 over the BERT's whole seconds.
    #[serde(flatten)]
    pub g821: G821Figures,
    // Framing, from the deframer during the BERT.
    /// Frames received in alignment.
    pub frames: u64,
    /// Framing bits received wrong.
    pub frame_bit_errors: u64,
    /// CRC blocks checked.
    pub crc_blocks: u64,
    /// Of them, blocks whose CRC failed.
    pub crc_errors: u64,
    /// Block errors the far end reported (E1 E-bits).
    pub far_end_block_errors: u64,
    /// Losses of frame alignment.
    pub oof_events: u64,
    /// Line bits received while out of frame.
    pub out_of_frame_bits: u64,
    /// In frame at the end.
    pub in_frame: bool,
    /// G.826 from the CRC blocks (`null` for framings without a CRC).
    pub g826: Option<G826Summary>,
    /// Payload bit errors injected on transmit.
    pub injected_bits: u64,
    /// What went wrong, in words (loss of frame, the loop did not close or open).
    pub findings: Vec<String>,
    /// Line time the test took.
    pub line_time_s: f64,
    /// Wall time the test took.
    pub elapsed_s: f64,
    /// Bytes of line sent.
    pub bytes_sent: u64,
    /// Bytes of line received.
    pub bytes_received: u64,
    /// Why the run ended.
    pub end_reason: EndReason,
    /// What went wrong, when something did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The link's own figures.
    pub link_stats: loopscope_link::LinkStats,
    /// No failure reason (see [`FramedSummary::failure_reasons`]).
    pub passed: bool,
}

impl FramedSummary {
    /// Why the run failed (empty when it passed).
    pub fn failure_reasons(&self) -> Vec<String> {
        let mut reasons = self.findings.clone();
        if self.check.bits == 0 && self.loop_closed {
            reasons.push("never synchronised to the pattern".into());
        }
        reasons.extend(self.check.ber_failure());
        if self.check.max_ber.is_none() {
            for (count, what) in [
                (self.check.slips, "slips"),
                (self.check.sync_losses, "pattern sync losses"),
                (self.crc_errors, "CRC errors"),
                (self.frame_bit_errors, "framing-bit errors"),
                (self.oof_events, "losses of frame"),
            ] {
                if count > 0 {
                    reasons.push(format!("{count} {what}"));
                }
            }
        }
        match self.end_reason {
            EndReason::LinkClosed => reasons.push("the link closed early".into()),
            EndReason::LinkError => reasons.push("the link failed".into()),
            _ => {}
        }
        reasons
    }
}

impl Record for FramedSummary {
    fn kind(&self) -> &'static str {
        "summary"
    }

    fn write_human(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(
            out,
            "--- {} framed bert: {} {} in timeslots {} ({}) ---",
            self.link,
            self.framing,
            self.pattern,
            self.timeslots,
            loopscope_report::format_bit_rate(self.payload_rate_bps as f64)
        )?;
        let opened = match self.loop_opened {
            None => "not sent".to_string(),
            Some(true) => format!("{}, loop opened", self.loop_down),
            Some(false) => format!("{}, loop did NOT open", self.loop_down),
        };
        let closed = match (self.loop_closed, self.loop_up_s) {
            (true, Some(s)) => format!("closed after {s:.3} s"),
            (true, None) => "closed".into(),
            (false, _) => "NOT closed".into(),
        };
        writeln!(
            out,
            "loop         up: {} ({closed}); down: {opened}",
            self.loop_up
        )?;
        writeln!(
            out,
            "payload      {} bits, {} bit errors, BER {} (< {} at {:.0}% confidence), {} sync losses, {} slips",
            self.check.bits,
            self.check.bit_errors,
            format_ratio(self.check.ber),
            format_ratio(self.check.ber_upper_bound),
            self.check.confidence * 100.0,
            self.check.sync_losses,
            self.check.slips
        )?;
        writeln!(
            out,
            "framing      {} frames, {} framing-bit errors, {} of {} CRC blocks errored, {} far-end block errors, {} losses of frame{}",
            self.frames,
            self.frame_bit_errors,
            self.crc_errors,
            self.crc_blocks,
            self.far_end_block_errors,
            self.oof_events,
            if self.in_frame { "" } else { " (NOT in frame)" }
        )?;
        writeln!(
            out,
            "G.821        ES {}, SES {}, UAS {}, EFS {}, %ES {:.3}, %SES {:.3}",
            self.g821.errored_seconds,
            self.g821.severely_errored_seconds,
            self.g821.unavailable_seconds,
            self.g821.error_free_seconds,
            self.g821.es_percent,
            self.g821.ses_percent
        )?;
        if let Some(g) = &self.g826 {
            writeln!(
                out,
                "G.826        ES {}, SES {}, BBE {}, UAS {}, ESR {:.4}, SESR {:.4}, BBER {}",
                g.es,
                g.ses,
                g.bbe,
                g.uas,
                g.esr,
                g.sesr,
                format_ratio(g.bber)
            )?;
        }
        if self.injected_bits > 0 {
            writeln!(
                out,
                "injected     {} payload bit errors",
                self.injected_bits
            )?;
        }
        writeln!(
            out,
            "time         {:.3} s of line in {:.3} s, {} bytes sent, {} received",
            self.line_time_s, self.elapsed_s, self.bytes_sent, self.bytes_received
        )?;
        if let Some(error) = &self.error {
            writeln!(out, "ended        {:?}: {error}", self.end_reason)?;
        }
        write_result(out, self.passed, &self.failure_reasons())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Phase {
    LoopUp = 0,
    Pattern = 1,
    LoopDown = 2,
    Confirm = 3,
    Done = 4,
}

impl Phase {
    fn from_u8(value: u8) -> Phase {
        match value {
            0 => Phase::LoopUp,
            1 => Phase::Pattern,
            2 => Phase::LoopDown,
            3 => Phase::Confirm,
            _ => Phase::Done,
        }
    }
}

struct Shared {
    phase: AtomicU8,
    sent: AtomicU64,
    injected: AtomicU64,
    done: AtomicBool,
    failed: AtomicBool,
}

/// The payload pattern with injected errors.
struct InjectedPattern {
    generator: Generator,
    injector: ErrorInjector,
}

impl PayloadSource for InjectedPattern {
    fn fill(&mut self, buf: &mut [u8]) {
        self.generator.fill(buf);
        self.injector.apply(buf);
    }
}

/// What the framer's payload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mapping {
    /// A loop code in every timeslot.
    Code,
    /// The test pattern in the chosen timeslots.
    Pattern,
}

/// The transmitter: sends what the phase asks for, 10 ms of line at a time.
fn transmit(
    sender: &mut dyn loopscope_link::LinkSender,
    options: &FramedOptions,
    shared: &Shared,
    stop: &Arc<AtomicBool>,
) -> Option<io::Error> {
    // A send blocked on a full link gives up when the run is stopped.
    let cancel = loopscope_link::Cancel::on(Arc::clone(stop));
    let framing = options.framing;
    let all = Timeslots::all(framing);
    let mut framer = Framer::new(framing, &options.timeslots, options.idle_octet);
    let mut pattern = InjectedPattern {
        generator: Generator::new(&options.pattern),
        injector: ErrorInjector::new(options.inject_ber, options.inject_seed),
    };
    let (mut up_code, mut down_code) = match &options.command {
        LoopCommand::Inband { up, down, .. } => (
            RepeatingBits::new(up.bits()),
            RepeatingBits::new(down.bits()),
        ),
        _ => (RepeatingBits::octet(0xFF), RepeatingBits::octet(0xFF)),
    };
    let unframed = matches!(options.command, LoopCommand::Inband { framed: false, .. });
    let mut chunk = vec![0u8; framing.bytes_per_second() / 100];
    let mut current: Option<Phase> = None;
    let mut current_mapping = Mapping::Pattern;
    let mut sent = 0u64;
    let mut error = None;
    while !stop.load(Ordering::Relaxed) {
        let phase = Phase::from_u8(shared.phase.load(Ordering::Acquire));
        if phase == Phase::Done {
            break;
        }
        if current != Some(phase) {
            current = Some(phase);
            let command_phase = matches!(phase, Phase::LoopUp | Phase::LoopDown);
            let (mapping, fdl) = match (&options.command, command_phase) {
                (LoopCommand::Inband { .. }, true) => (Mapping::Code, FdlTx::Idle),
                (LoopCommand::FdlLine | LoopCommand::FdlPayload, true) => {
                    let message = match (&options.command, phase) {
                        (LoopCommand::FdlLine, Phase::LoopUp) => Bom::LineLoopbackActivate,
                        (LoopCommand::FdlLine, _) => Bom::LineLoopbackDeactivate,
                        (_, Phase::LoopUp) => Bom::PayloadLoopbackActivate,
                        _ => Bom::PayloadLoopbackDeactivate,
                    };
                    (Mapping::Pattern, FdlTx::Repeat(message.line_bits()))
                }
                _ => (Mapping::Pattern, FdlTx::Idle),
            };
            // Only a change of payload drops what the framer holds: the pattern must run on
            // unbroken from an FDL command into the test.
            if mapping != current_mapping {
                current_mapping = mapping;
                match mapping {
                    Mapping::Code => framer.set_timeslots(&all),
                    Mapping::Pattern => framer.set_timeslots(&options.timeslots),
                }
            }
            framer.set_fdl(fdl);
        }
        match (phase, &options.command) {
            (Phase::LoopUp, LoopCommand::Inband { .. }) if unframed => up_code.fill(&mut chunk),
            (Phase::LoopDown, LoopCommand::Inband { .. }) if unframed => down_code.fill(&mut chunk),
            (Phase::LoopUp, LoopCommand::Inband { .. }) => framer.fill(&mut chunk, &mut up_code),
            (Phase::LoopDown, LoopCommand::Inband { .. }) => {
                framer.fill(&mut chunk, &mut down_code)
            }
            _ => framer.fill(&mut chunk, &mut pattern),
        }
        if let Err(e) = sender.send(&chunk, &cancel) {
            error = send_failed(e, &mut sent, &shared.sent, &shared.failed);
            break;
        }
        sent += chunk.len() as u64;
        shared.sent.store(sent, Ordering::Release);
        shared
            .injected
            .store(pattern.injector.injected_bits(), Ordering::Release);
    }
    if error.is_none()
        && let Err(e) = sender.finish(&cancel)
    {
        error = Some(e);
    }
    shared.done.store(true, Ordering::Release);
    error
}

/// The measurement window of the BERT.
struct Bert {
    start_bytes: u64,
    /// Received bytes of the second being counted.
    second_bytes: u64,
    seconds: u64,
    g821: G821,
    g826: G826,
    frame_base: DeframerCounters,
    last_frame: DeframerCounters,
    last_check: CheckCounters,
    finished: bool,
    final_frame: Option<DeframerCounters>,
    final_check: Option<CheckCounters>,
    /// The checker's counters when the BERT started (bits since the pattern was found).
    check_base: CheckCounters,
}

/// The receiver's side of the procedure.
struct Receiver<'a> {
    options: &'a FramedOptions,
    shared: &'a Shared,
    emit: &'a mut dyn FnMut(FramedEvent),
    deframer: Deframer,
    /// All timeslots, to see our own in-band code come back (only while a command is sent).
    code_deframer: Deframer,
    raw_detector: Option<InbandDetector>,
    payload_detector: Option<InbandDetector>,
    code_seen: bool,
    checker: Checker,
    confirm_checker: Checker,
    /// Watches the pattern during an FDL loop-down: it stops coming back when the loop opens.
    watch_checker: Checker,
    phase: Phase,
    phase_start_bytes: u64,
    received: u64,
    loop_up_start: Option<u64>,
    loop_closed_at: Option<u64>,
    loop_opened: Option<bool>,
    bert: Option<Bert>,
    ever_aligned: bool,
    findings: Vec<String>,
    payload: Vec<u8>,
    code_payload: Vec<u8>,
    last_sync: CheckCounters,
}

impl<'a> Receiver<'a> {
    fn t_s(&self) -> f64 {
        self.received as f64 * 8.0 / self.options.framing.line_rate_bps() as f64
    }

    fn bytes_for(&self, duration: Duration) -> u64 {
        (duration.as_secs_f64() * self.options.framing.bytes_per_second() as f64) as u64
    }

    fn phase_elapsed(&self) -> u64 {
        self.received - self.phase_start_bytes
    }

    fn set_phase(&mut self, phase: Phase) {
        self.phase = phase;
        self.phase_start_bytes = self.received;
        self.shared.phase.store(phase as u8, Ordering::Release);
        let t_s = self.t_s();
        match phase {
            Phase::LoopUp => {
                self.loop_up_start = Some(self.received);
                self.arm_detectors(true);
                (self.emit)(FramedEvent::LoopUpSent {
                    t_s,
                    command: self.options.command.describe_up(),
                });
            }
            Phase::LoopDown => {
                self.arm_detectors(false);
                self.watch_checker = new_checker(&self.options.pattern);
                (self.emit)(FramedEvent::LoopDownSent {
                    t_s,
                    command: self.options.command.describe_down(),
                });
            }
            Phase::Pattern => {
                self.checker = new_checker(&self.options.pattern);
                self.last_sync = CheckCounters::default();
            }
            Phase::Confirm => {
                self.confirm_checker = new_checker(&self.options.pattern);
            }
            Phase::Done => {}
        }
    }

    /// Watches for our own in-band code coming back: 50 ms of it is enough to know.
    fn arm_detectors(&mut self, up: bool) {
        self.code_seen = false;
        self.raw_detector = None;
        self.payload_detector = None;
        if let LoopCommand::Inband {
            up: up_code,
            down: down_code,
            framed,
        } = &self.options.command
        {
            let code = if up { up_code } else { down_code };
            let framing = self.options.framing;
            if *framed {
                let rate = Timeslots::all(framing).payload_rate_bps();
                self.payload_detector =
                    Some(InbandDetector::new(std::slice::from_ref(code), rate / 20));
                self.code_deframer = Deframer::new(framing, &Timeslots::all(framing));
            } else {
                self.raw_detector = Some(InbandDetector::new(
                    std::slice::from_ref(code),
                    framing.line_rate_bps() / 20,
                ));
            }
        }
    }

    /// Feeds the code detectors; returns (code seen now, code cleared now).
    fn watch_code(&mut self, data: &[u8]) -> (bool, bool) {
        let mut detections = Vec::new();
        if let Some(detector) = self.raw_detector.as_mut() {
            detector.feed(data);
            detections.extend(detector.take_detections());
        }
        if let Some(detector) = self.payload_detector.as_mut() {
            self.code_payload.clear();
            self.code_deframer.feed(data, &mut self.code_payload);
            detector.feed(&self.code_payload);
            detections.extend(detector.take_detections());
        }
        let seen = detections
            .iter()
            .any(|d| matches!(d, Detection::Inband { .. }));
        let cleared = detections
            .iter()
            .any(|d| matches!(d, Detection::InbandCleared { .. }));
        (seen, cleared)
    }

    fn observe_checker(&mut self) {
        let now = self.checker.counters().clone();
        let t_s = self.t_s();
        if now.sync_losses > self.last_sync.sync_losses {
            (self.emit)(FramedEvent::SyncLost {
                t_s,
                bit_errors: now.bit_errors,
            });
        }
        if now.in_sync && !self.last_sync.in_sync {
            let pattern = self
                .checker
                .pattern()
                .map(PatternSpec::describe)
                .unwrap_or_default();
            (self.emit)(FramedEvent::SyncAcquired { t_s, pattern });
        }
        self.last_sync = now;
    }

    /// One slice of received line (at most 10 ms, never across a BERT second).
    fn slice(&mut self, data: &[u8]) {
        self.received += data.len() as u64;
        self.payload.clear();
        self.deframer.feed(data, &mut self.payload);
        for event in self.deframer.take_events() {
            let t_s = self.t_s();
            (self.emit)(match event {
                DeframerEvent::FrameAligned { .. } => {
                    self.ever_aligned = true;
                    FramedEvent::FrameAligned { t_s }
                }
                DeframerEvent::FrameLost { .. } => FramedEvent::FrameLost { t_s },
            });
        }
        match self.phase {
            Phase::LoopUp => self.loop_up(data),
            Phase::Pattern => self.pattern(),
            Phase::LoopDown => self.loop_down(data),
            Phase::Confirm => self.confirm(),
            Phase::Done => {}
        }
    }

    fn loop_up(&mut self, data: &[u8]) {
        let wait = self.bytes_for(self.options.loop_wait);
        if self.options.command.is_fdl() {
            // The pattern goes with the FDL command: the loop is closed when it comes back.
            let payload = std::mem::take(&mut self.payload);
            self.checker.feed(&payload);
            self.payload = payload;
            self.observe_checker();
            if self.checker.counters().in_sync {
                self.shared
                    .phase
                    .store(Phase::Pattern as u8, Ordering::Release);
                self.phase = Phase::Pattern;
                self.phase_start_bytes = self.received;
                self.start_bert();
                return;
            }
        } else {
            let (seen, _) = self.watch_code(data);
            if seen {
                self.code_seen = true;
                let t_s = self.t_s();
                (self.emit)(FramedEvent::LoopUpReturned { t_s });
                self.set_phase(Phase::Pattern);
                return;
            }
        }
        if self.phase_elapsed() >= wait {
            self.set_phase(Phase::Pattern);
        }
    }

    fn start_bert(&mut self) {
        let t_s = self.t_s();
        let start = self.loop_up_start.unwrap_or(0);
        self.loop_closed_at = Some(self.received);
        (self.emit)(FramedEvent::LoopClosed {
            t_s,
            after_s: (self.received - start) as f64 * 8.0
                / self.options.framing.line_rate_bps() as f64,
        });
        (self.emit)(FramedEvent::BertStarted { t_s });
        let counters = self.deframer.counters().clone();
        self.bert = Some(Bert {
            start_bytes: self.received,
            second_bytes: 0,
            seconds: 0,
            g821: G821::new(),
            g826: G826::new(),
            frame_base: counters.clone(),
            last_frame: counters,
            last_check: self.checker.counters().clone(),
            finished: false,
            final_frame: None,
            final_check: None,
            check_base: self.checker.counters().clone(),
        });
    }

    fn pattern(&mut self) {
        let payload = std::mem::take(&mut self.payload);
        let counting = self.bert.as_ref().is_some_and(|b| !b.finished);
        if self.bert.is_none() || counting {
            self.checker.feed(&payload);
            self.observe_checker();
        }
        self.payload = payload;
        if self.bert.is_none() {
            if self.checker.counters().in_sync {
                self.start_bert();
            } else if self.phase_elapsed() >= self.bytes_for(self.options.sync_wait) {
                let t_s = self.t_s();
                (self.emit)(FramedEvent::LoopNotClosed { t_s });
                let what = if self.ever_aligned {
                    format!(
                        "the test pattern did not come back within {:.1} s: the loop did not close",
                        self.options.sync_wait.as_secs_f64()
                    )
                } else {
                    format!(
                        "loss of frame: no {} frame alignment in {:.1} s of received signal",
                        self.options.framing,
                        self.t_s()
                    )
                };
                self.findings.push(what);
                self.after_bert();
            }
            return;
        }
        let bytes_per_second = self.options.framing.bytes_per_second() as u64;
        let Some(bert) = self.bert.as_mut() else {
            return;
        };
        bert.second_bytes = (self.received - bert.start_bytes) % bytes_per_second;
        if bert.second_bytes == 0 {
            self.close_second(true);
        }
        let limit = match self.options.amount {
            FramedAmount::Duration(duration) => Some(self.bytes_for(duration)),
            FramedAmount::Unlimited => None,
        };
        if let (Some(limit), Some(bert)) = (limit, self.bert.as_ref())
            && self.received - bert.start_bytes >= limit
        {
            self.finish_bert(true);
        }
    }

    /// Closes one second of the BERT (`whole`: a full second of line).
    fn close_second(&mut self, whole: bool) {
        let t_s = self.t_s();
        let counters = self.deframer.counters().clone();
        let check = self.checker.counters().clone();
        let Some(bert) = self.bert.as_mut() else {
            return;
        };
        if !whole && self.received == bert.start_bytes {
            return;
        }
        let last = &bert.last_frame;
        let blocks = counters.crc_blocks - last.crc_blocks;
        let crc_errors = counters.crc_errors - last.crc_errors;
        let frame_bit_errors = counters.frame_bit_errors - last.frame_bit_errors;
        let defect = counters.oof_events > last.oof_events
            || counters.out_of_frame_bits > last.out_of_frame_bits
            || !counters.in_frame;
        let mut tally = second_tally(&bert.last_check, &check, true);
        tally.sync_loss |= tally.bits == 0;
        let SecondTally {
            bits, bit_errors, ..
        } = tally;
        bert.g821.push(tally);
        let block_second = BlockSecond {
            blocks,
            errored_blocks: crc_errors,
            defect,
        };
        bert.g826.push(block_second);
        bert.seconds += 1;
        let severely_errored = if self.options.framing.crc_block_frames().is_some() {
            block_second.is_severely_errored() || tally.is_severely_errored()
        } else {
            tally.is_severely_errored()
        };
        (self.emit)(FramedEvent::Second {
            t_s,
            second: bert.seconds,
            bits,
            bit_errors,
            crc_blocks: blocks,
            crc_errors,
            frame_bit_errors,
            defect,
            severely_errored,
        });
        bert.last_frame = counters;
        bert.last_check = check;
    }

    /// Ends the BERT; `advance`: go on to the loop-down.
    fn finish_bert(&mut self, advance: bool) {
        if self.bert.as_ref().is_none_or(|b| b.finished) {
            return;
        }
        self.checker.finish();
        let partial = self.bert.as_ref().is_some_and(|b| {
            !(self.received - b.start_bytes)
                .is_multiple_of(self.options.framing.bytes_per_second() as u64)
        });
        if partial {
            self.close_second(false);
        }
        let t_s = self.t_s();
        let counters = self.deframer.counters().clone();
        let check = self.checker.counters().clone();
        if let Some(bert) = self.bert.as_mut() {
            bert.finished = true;
            bert.final_frame = Some(counters);
            bert.final_check = Some(check);
            (self.emit)(FramedEvent::BertFinished {
                t_s,
                seconds: bert.seconds,
            });
        }
        if advance {
            self.after_bert();
        }
    }

    fn after_bert(&mut self) {
        if self.options.command != LoopCommand::None && self.options.loop_down {
            self.set_phase(Phase::LoopDown);
        } else {
            self.set_phase(Phase::Done);
        }
    }

    fn loop_down(&mut self, data: &[u8]) {
        let wait = self.bytes_for(self.options.loop_wait);
        if self.options.command.is_fdl() {
            let payload = std::mem::take(&mut self.payload);
            self.watch_checker.feed(&payload);
            self.payload = payload;
            // Open once the pattern that came back is lost, or if it never came back.
            let watch = self.watch_checker.counters();
            let never = self.phase_elapsed() >= self.bytes_for(Duration::from_millis(200))
                && watch.bits == 0;
            if watch.sync_losses > 0 || never {
                self.set_phase(Phase::Confirm);
                return;
            }
        } else {
            let (seen, cleared) = self.watch_code(data);
            self.code_seen |= seen;
            if self.code_seen && cleared {
                self.set_phase(Phase::Confirm);
                return;
            }
        }
        if self.phase_elapsed() >= wait {
            self.set_phase(Phase::Confirm);
        }
    }

    fn confirm(&mut self) {
        let payload = std::mem::take(&mut self.payload);
        self.confirm_checker.feed(&payload);
        self.payload = payload;
        let t_s = self.t_s();
        if self.confirm_checker.counters().in_sync {
            (self.emit)(FramedEvent::LoopStillClosed { t_s });
            self.loop_opened = Some(false);
            self.findings.push(
                "the loop did not open: the test pattern still comes back after loop-down".into(),
            );
            self.set_phase(Phase::Done);
        } else if self.phase_elapsed() >= self.bytes_for(self.options.confirm) {
            (self.emit)(FramedEvent::LoopOpened { t_s });
            self.loop_opened = Some(true);
            self.set_phase(Phase::Done);
        }
    }
}

fn new_checker(pattern: &PatternSpec) -> Checker {
    Checker::new(CheckerConfig {
        expect: Expect::Pattern(pattern.clone()),
    })
}

/// Runs the procedure over `link`. Environment errors (the link cannot open) are `Err`;
/// anything that goes wrong once running ends the run with a summary.
pub fn run(
    link: Box<dyn Link>,
    options: &FramedOptions,
    stop: &Arc<AtomicBool>,
    emit: &mut dyn FnMut(FramedEvent),
) -> Result<FramedSummary, LinkError> {
    let mut options = options.clone();
    options.pattern.bit_order = BitOrder::MsbFirst;
    let options = &options;
    let description = link.describe();
    let (mut sender, mut receiver) = link.split()?;
    let started = Instant::now();
    let first_phase = if options.command == LoopCommand::None {
        Phase::Pattern
    } else {
        Phase::LoopUp
    };
    let shared = Arc::new(Shared {
        phase: AtomicU8::new(first_phase as u8),
        sent: AtomicU64::new(0),
        injected: AtomicU64::new(0),
        done: AtomicBool::new(false),
        failed: AtomicBool::new(false),
    });
    let tx_thread = {
        let shared = Arc::clone(&shared);
        let stop = Arc::clone(stop);
        let options = options.clone();
        thread::Builder::new()
            .name("framed-tx".into())
            .spawn(move || transmit(sender.as_mut(), &options, &shared, &stop))
            .map_err(|e| LinkError::io("cannot start the transmit thread", e))?
    };

    let framing = options.framing;
    let mut rx = Receiver {
        options,
        shared: &shared,
        emit,
        deframer: Deframer::new(framing, &options.timeslots),
        code_deframer: Deframer::new(framing, &Timeslots::all(framing)),
        raw_detector: None,
        payload_detector: None,
        code_seen: false,
        checker: new_checker(&options.pattern),
        confirm_checker: new_checker(&options.pattern),
        watch_checker: new_checker(&options.pattern),
        phase: first_phase,
        phase_start_bytes: 0,
        received: 0,
        loop_up_start: None,
        loop_closed_at: None,
        loop_opened: None,
        bert: None,
        ever_aligned: false,
        findings: Vec::new(),
        payload: Vec::new(),
        code_payload: Vec::new(),
        last_sync: CheckCounters::default(),
    };
    rx.set_phase(first_phase);

    let slice = framing.bytes_per_second() / 100;
    let bytes_per_second = framing.bytes_per_second() as u64;
    let mut buf = vec![0u8; 64 * 1024];
    let _ = receiver.set_timeout(Some(Duration::from_millis(100)));
    let mut last_data = Instant::now();
    let mut end_reason = EndReason::Completed;
    let mut error = None;
    while rx.phase != Phase::Done {
        if stop.load(Ordering::Relaxed) {
            end_reason = EndReason::Interrupted;
            break;
        }
        match receiver.recv(&mut buf) {
            Ok(0) => {
                end_reason = EndReason::LinkClosed;
                error = Some(format!(
                    "the link closed after {} bytes came back",
                    rx.received
                ));
                break;
            }
            Ok(n) => {
                last_data = Instant::now();
                let mut data = &buf[..n];
                while !data.is_empty() && rx.phase != Phase::Done {
                    // Never across a BERT second, at most 10 ms of line.
                    let mut take = data.len().min(slice);
                    if let Some(bert) = rx.bert.as_ref().filter(|b| !b.finished) {
                        let into = (rx.received - bert.start_bytes) % bytes_per_second;
                        take = take.min((bytes_per_second - into) as usize);
                    }
                    rx.slice(&data[..take]);
                    data = &data[take..];
                }
            }
            Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => {
                if last_data.elapsed() >= options.drain_timeout
                    && (shared.done.load(Ordering::Acquire) || rx.received > 0)
                {
                    end_reason = EndReason::DrainTimeout;
                    error = Some(format!(
                        "nothing came back for {:.1} s",
                        options.drain_timeout.as_secs_f64()
                    ));
                    break;
                }
                if shared.failed.load(Ordering::Acquire) && shared.done.load(Ordering::Acquire) {
                    end_reason = EndReason::LinkError;
                    break;
                }
            }
            Err(e) => {
                end_reason = EndReason::LinkError;
                error = Some(format!("receive failed: {e}"));
                break;
            }
        }
    }
    // A run cut short still reports what it measured.
    rx.finish_bert(false);
    shared.phase.store(Phase::Done as u8, Ordering::Release);
    // Keep reading for a moment so a transmitter blocked on a full link sees the end.
    let (_, link_stats) = close_receiver(receiver, &shared.done, &mut buf);
    let tx_error = join_within(tx_thread, Duration::from_secs(2), Some);
    if let Some(e) = tx_error
        && error.is_none()
        && end_reason == EndReason::Completed
    {
        end_reason = EndReason::after_send_failure(&e);
        error = Some(format!("send failed: {e}"));
    }
    if !rx.ever_aligned && !rx.findings.iter().any(|f| f.starts_with("loss of frame")) {
        rx.findings.push(format!(
            "loss of frame: no {} frame alignment in {:.1} s of received signal",
            framing,
            rx.t_s()
        ));
    }
    Ok(summarize(
        &rx,
        options,
        description,
        Totals {
            started,
            end_reason,
            error,
            link_stats,
            bytes_sent: shared.sent.load(Ordering::Acquire),
            injected_bits: shared.injected.load(Ordering::Acquire),
        },
    ))
}

struct Totals {
    started: Instant,
    end_reason: EndReason,
    error: Option<String>,
    link_stats: loopscope_link::LinkStats,
    bytes_sent: u64,
    injected_bits: u64,
}

fn summarize(
    rx: &Receiver<'_>,
    options: &FramedOptions,
    link: String,
    totals: Totals,
) -> FramedSummary {
    let c = rx
        .bert
        .as_ref()
        .and_then(|bert| {
            let end = bert.final_check.as_ref()?;
            let base = &bert.check_base;
            Some(CheckCounters {
                bits: end.bits - base.bits,
                bit_errors: end.bit_errors - base.bit_errors,
                unsynced_bits: end.unsynced_bits - base.unsynced_bits,
                sync_losses: end.sync_losses - base.sync_losses,
                slips: end.slips - base.slips,
                inserted_bits: end.inserted_bits - base.inserted_bits,
                deleted_bits: end.deleted_bits - base.deleted_bits,
                longest_burst_bits: end.longest_burst_bits,
                in_sync: end.in_sync,
            })
        })
        .unwrap_or_default();
    let (frame, g821, g826) = match rx.bert.as_ref() {
        Some(bert) => {
            let end = bert
                .final_frame
                .clone()
                .unwrap_or_else(|| rx.deframer.counters().clone());
            let base = &bert.frame_base;
            let frame = DeframerCounters {
                line_bits: end.line_bits - base.line_bits,
                frames: end.frames - base.frames,
                frame_bit_errors: end.frame_bit_errors - base.frame_bit_errors,
                crc_blocks: end.crc_blocks - base.crc_blocks,
                crc_errors: end.crc_errors - base.crc_errors,
                far_end_block_errors: end.far_end_block_errors - base.far_end_block_errors,
                remote_alarm_frames: end.remote_alarm_frames - base.remote_alarm_frames,
                oof_events: end.oof_events - base.oof_events,
                out_of_frame_bits: end.out_of_frame_bits - base.out_of_frame_bits,
                alignments: end.alignments - base.alignments,
                in_frame: end.in_frame,
            };
            (frame, bert.g821.summary(), Some(bert.g826.summary()))
        }
        None => (
            DeframerCounters {
                in_frame: rx.deframer.counters().in_frame,
                ..DeframerCounters::default()
            },
            G821::new().summary(),
            None,
        ),
    };
    let mut findings = rx.findings.clone();
    if c.sync_losses > 0 && !c.in_sync {
        findings.push(
            "the test pattern stopped coming back during the test: the loop opened or the far end stopped looping"
                .into(),
        );
    }
    if frame.oof_events > 0 {
        findings.push(format!(
            "{} losses of frame during the test",
            frame.oof_events
        ));
    }
    let rate = options.framing.line_rate_bps() as f64;
    let loop_up_s = match (rx.loop_up_start, rx.loop_closed_at) {
        (Some(start), Some(end)) => Some((end - start) as f64 * 8.0 / rate),
        _ => None,
    };
    let has_crc = options.framing.crc_block_frames().is_some();
    let mut summary = FramedSummary {
        link,
        framing: options.framing,
        timeslots: options.timeslots.describe(),
        payload_rate_bps: options.timeslots.payload_rate_bps(),
        pattern: options.pattern.describe(),
        loop_up: options.command.describe_up(),
        loop_down: if options.loop_down {
            options.command.describe_down()
        } else {
            "none".into()
        },
        loop_closed: rx.loop_closed_at.is_some(),
        loop_up_s,
        loop_opened: rx.loop_opened,
        check: CheckFigures {
            detail: None,
            ..CheckFigures::new(&c, options.confidence, options.max_ber)
        },
        g821: G821Figures::from(&g821),
        frames: frame.frames,
        frame_bit_errors: frame.frame_bit_errors,
        crc_blocks: frame.crc_blocks,
        crc_errors: frame.crc_errors,
        far_end_block_errors: frame.far_end_block_errors,
        oof_events: frame.oof_events,
        out_of_frame_bits: frame.out_of_frame_bits,
        in_frame: frame.in_frame,
        g826: if has_crc { g826 } else { None },
        injected_bits: totals.injected_bits,
        findings,
        line_time_s: rx.t_s(),
        elapsed_s: totals.started.elapsed().as_secs_f64(),
        bytes_sent: totals.bytes_sent,
        bytes_received: rx.received,
        end_reason: totals.end_reason,
        error: totals.error,
        link_stats: totals.link_stats,
        passed: false,
    };
    summary.passed = summary.failure_reasons().is_empty()
        && (options.command == LoopCommand::None || summary.loop_closed);
    summary
}
