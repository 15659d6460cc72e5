//! A software CSU/NIU (smart jack): the far end of a T1 or E1 line that obeys loopback
//! commands. It is a reflector that only reflects when told to.
//!
//! - **Not looped**, it absorbs what arrives (the customer side is not emulated) and sends its
//!   own framed idle signal back: the line's framing with the idle code in every timeslot.
//! - A **loop-up** in-band code (`00001`, or the smart-jack arm `11000`) that persists for the
//!   persistence time (5 s by default), or an ESF **line loopback activate** message, closes a
//!   **line loopback**: every received bit goes back as it came, framing and CRC included.
//! - An ESF **payload loopback activate** message closes a **payload loopback**: the received
//!   payload goes back in newly generated framing (fresh F-bits, CRC, data link), so the CRC
//!   errors of the forward path are not passed on (on E1 they are reported back in the E-bits).
//! - A **loop-down** code (`001`, or disarm `11100`), the matching ESF deactivate message, or
//!   the **loop timeout** opens the loop again.
//!
//! **Time is line time**: bits received divided by the line rate (1.544 or 2.048 Mbit/s), as a
//! unit clocked by the line counts it. Over a link paced at the line rate (a real rig, or
//! `sim:?rate=1544k`) that is wall-clock time; over an unpaced software link it runs faster,
//! which keeps tests fast and independent of how busy the machine is. Every state change is
//! logged with its line time and the wall-clock time.
//!
//! In-band codes are looked for both in the deframed payload (framed codes run on in the
//! payload across the framing bits) and on the raw line (unframed codes, which also take the
//! framing away). The output always has exactly as many bits as the input, as a line unit's
//! transmitter runs at the line rate.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use loopscope_pattern::framing::{Deframer, Framer, Framing, PayloadSource, Timeslots};
use loopscope_pattern::loopcode::{
    Bom, BomDetector, DEFAULT_BOM_REPETITIONS, DEFAULT_INBAND_PERSISTENCE_S, Detection, InbandCode,
    InbandDetector,
};
use serde::Serialize;

use crate::endpoint::{Endpoint, EndpointError};
use crate::link::{
    Cancel, Link, LinkError, LinkHalves, LinkReceiver, LinkSender, LinkStats, SendError, is_timeout,
};
use crate::stats::NiuReport;

/// How the far end behaves.
#[derive(Debug, Clone, PartialEq)]
pub struct NiuConfig {
    /// The line's framing (T1 SF/ESF or E1).
    pub framing: Framing,
    /// How long an in-band code must persist (line time).
    pub inband_persistence: Duration,
    /// Valid repetitions of an ESF bit-oriented message before it is obeyed.
    pub bom_repetitions: u32,
    /// A loop opens by itself after this long (line time); `None`: never.
    pub loop_timeout: Option<Duration>,
    /// In-band codes that close a line loop.
    pub loop_up_codes: Vec<InbandCode>,
    /// In-band codes that open it.
    pub loop_down_codes: Vec<InbandCode>,
    /// The octet sent in every timeslot while not looped.
    pub idle_octet: u8,
}

/// The option names `sim:?niu=...` adds.
pub const NIU_OPTIONS: [&str; 4] = ["niu", "loop_timeout", "niu_persistence", "niu_idle"];

impl NiuConfig {
    /// The usual unit: loop-up/arm close a line loop, loop-down/disarm open it, 5 s
    /// persistence, no timeout.
    pub fn new(framing: Framing) -> Self {
        NiuConfig {
            framing,
            inband_persistence: Duration::from_secs_f64(DEFAULT_INBAND_PERSISTENCE_S),
            bom_repetitions: DEFAULT_BOM_REPETITIONS,
            loop_timeout: None,
            loop_up_codes: vec![InbandCode::loop_up(), InbandCode::arm()],
            loop_down_codes: vec![InbandCode::loop_down(), InbandCode::disarm()],
            idle_octet: if framing.is_t1() { 0x7F } else { 0xD5 },
        }
    }

    /// `t1` is ESF; otherwise a framing name (`esf`, `sf`, `e1-crc4`, `e1`).
    pub fn parse_kind(text: &str) -> Result<Framing, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "t1" => Ok(Framing::Esf),
            other => other.parse::<Framing>().map_err(|e| {
                format!("{e}; for the NIU also t1 (= esf)")
                    .replace("(expected esf", "(expected t1, esf")
            }),
        }
    }
}

/// Which loop is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LoopState {
    /// No loop: the far end sends idle.
    Open,
    /// Line loopback: every bit received goes back.
    Line,
    /// Payload loopback: the payload goes back in fresh framing with fresh CRC.
    Payload,
}

/// A state change of the far end.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum NiuEvent {
    /// A loop closed: `mode` line or payload, `by` the command that closed it.
    LoopClosed {
        /// Line time.
        t_s: f64,
        /// Which loop.
        mode: LoopState,
        /// The command that closed it.
        by: String,
    },
    /// The loop opened: `by` the command, or `timeout`.
    LoopOpened {
        /// Line time.
        t_s: f64,
        /// The command that opened it, or `timeout`.
        by: String,
    },
    /// The receiver found (or lost) the line's framing.
    FrameAligned {
        /// Line time.
        t_s: f64,
    },
    /// The receiver lost the line's framing.
    FrameLost {
        /// Line time.
        t_s: f64,
    },
}

/// A logged event with the wall-clock time it happened (RFC 3339, UTC).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NiuLogEntry {
    /// When, in RFC 3339 (UTC, milliseconds).
    pub time: String,
    /// What.
    #[serde(flatten)]
    pub event: NiuEvent,
}

impl NiuLogEntry {
    /// `event`, stamped with the wall clock now.
    pub fn now(event: NiuEvent) -> Self {
        NiuLogEntry {
            time: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            event,
        }
    }
}

/// What the far end did, for summaries.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct NiuStats {
    /// The framing, by name.
    pub framing: String,
    /// The loop state at the end.
    pub state: Option<LoopState>,
    /// Line time simulated.
    pub line_seconds: f64,
    /// Loops closed.
    pub loops_closed: u64,
    /// Loops opened (by command or timeout).
    pub loops_opened: u64,
    /// Loops opened by the timeout.
    pub timeouts: u64,
    /// Payload octets the payload loopback had to invent because none had arrived yet.
    pub payload_underruns: u64,
}

/// Received payload waiting to be sent back by the payload loopback.
struct PayloadQueue {
    bytes: VecDeque<u8>,
    idle: u8,
    underruns: u64,
}

impl PayloadSource for PayloadQueue {
    fn fill(&mut self, buf: &mut [u8]) {
        for slot in buf.iter_mut() {
            *slot = match self.bytes.pop_front() {
                Some(byte) => byte,
                None => {
                    self.underruns += 1;
                    self.idle
                }
            };
        }
    }
}

/// The far end's engine: feed it what arrives, send back what it returns.
pub struct Niu {
    config: NiuConfig,
    state: LoopState,
    deframer: Deframer,
    framer: Framer,
    queue: PayloadQueue,
    idle: IdleSource,
    raw_detector: InbandDetector,
    payload_detector: InbandDetector,
    bom_detector: BomDetector,
    line_bits: u64,
    loop_since_bits: u64,
    stats: NiuStats,
    events: Vec<NiuEvent>,
    payload_scratch: Vec<u8>,
}

struct IdleSource(u8);

impl PayloadSource for IdleSource {
    fn fill(&mut self, buf: &mut [u8]) {
        buf.fill(self.0);
    }
}

impl std::fmt::Debug for Niu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Niu")
            .field("framing", &self.config.framing)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl Niu {
    /// A far end that is open and in its idle state.
    pub fn new(config: NiuConfig) -> Self {
        let framing = config.framing;
        let all = Timeslots::all(framing);
        let mut framer = Framer::new(framing, &all, config.idle_octet);
        // The payload loopback sends what has arrived: take it one frame at a time.
        framer.set_batch_frames(1);
        let codes: Vec<InbandCode> = config
            .loop_up_codes
            .iter()
            .chain(&config.loop_down_codes)
            .cloned()
            .collect();
        let seconds = config.inband_persistence.as_secs_f64();
        let raw_persistence = (seconds * framing.line_rate_bps() as f64) as u64;
        let payload_persistence = (seconds * all.payload_rate_bps() as f64) as u64;
        let mut deframer = Deframer::new(framing, &all);
        deframer.collect_fdl(true);
        Niu {
            state: LoopState::Open,
            deframer,
            framer,
            queue: PayloadQueue {
                bytes: VecDeque::new(),
                idle: 0xFF,
                underruns: 0,
            },
            idle: IdleSource(config.idle_octet),
            raw_detector: InbandDetector::new(&codes, raw_persistence),
            payload_detector: InbandDetector::new(&codes, payload_persistence),
            bom_detector: BomDetector::new(config.bom_repetitions),
            line_bits: 0,
            loop_since_bits: 0,
            stats: NiuStats {
                framing: framing.name().into(),
                state: Some(LoopState::Open),
                ..NiuStats::default()
            },
            events: Vec::new(),
            payload_scratch: Vec::new(),
            config,
        }
    }

    /// The loop state now.
    pub fn state(&self) -> LoopState {
        self.state
    }

    /// Its figures so far.
    pub fn stats(&self) -> NiuStats {
        NiuStats {
            payload_underruns: self.queue.underruns,
            ..self.stats.clone()
        }
    }

    /// State changes since the last call.
    pub fn take_events(&mut self) -> Vec<NiuEvent> {
        std::mem::take(&mut self.events)
    }

    fn line_time_s(&self) -> f64 {
        self.line_bits as f64 / self.config.framing.line_rate_bps() as f64
    }

    /// Processes received line bytes; appends exactly as many bytes to `output`.
    pub fn process(&mut self, input: &[u8], output: &mut Vec<u8>) {
        // Commands take effect within 10 ms of line time.
        let slice = self.config.framing.bytes_per_second() / 100;
        for piece in input.chunks(slice) {
            self.receive(piece);
            self.transmit(piece, output);
        }
    }

    fn receive(&mut self, piece: &[u8]) {
        let mut payload = std::mem::take(&mut self.payload_scratch);
        payload.clear();
        self.deframer.feed(piece, &mut payload);
        self.line_bits += piece.len() as u64 * 8;
        for event in self.deframer.take_events() {
            let t_s = self.line_time_s();
            self.events.push(match event {
                loopscope_pattern::framing::DeframerEvent::FrameAligned { .. } => {
                    NiuEvent::FrameAligned { t_s }
                }
                loopscope_pattern::framing::DeframerEvent::FrameLost { .. } => {
                    NiuEvent::FrameLost { t_s }
                }
            });
        }
        self.raw_detector.feed(piece);
        self.payload_detector.feed(&payload);
        let fdl = self.deframer.take_fdl_bits();
        self.bom_detector.feed(&fdl);
        if self.state == LoopState::Payload {
            self.queue.bytes.extend(&payload);
        }
        self.payload_scratch = payload;
        let mut detections = self.raw_detector.take_detections();
        detections.extend(self.payload_detector.take_detections());
        detections.extend(self.bom_detector.take_detections());
        for detection in detections {
            self.obey(detection);
        }
        if self.state != LoopState::Open
            && let Some(timeout) = self.config.loop_timeout
        {
            let limit = (timeout.as_secs_f64() * self.config.framing.line_rate_bps() as f64) as u64;
            if self.line_bits - self.loop_since_bits >= limit {
                self.stats.timeouts += 1;
                self.open("timeout".into());
            }
        }
    }

    fn obey(&mut self, detection: Detection) {
        match detection {
            Detection::Inband { code, .. } => {
                let describe = |kind: &str| format!("in-band {kind} {}", code.bit_string());
                if self.state == LoopState::Open
                    && self.config.loop_up_codes.iter().any(|c| c == &code)
                {
                    self.close(LoopState::Line, describe("loop-up"));
                } else if self.state != LoopState::Open
                    && self.config.loop_down_codes.iter().any(|c| c == &code)
                {
                    self.open(describe("loop-down"));
                }
            }
            Detection::Bom { message, .. } => {
                let by = format!("fdl {}", message.name());
                match (message, self.state) {
                    (Bom::LineLoopbackActivate, LoopState::Open) => self.close(LoopState::Line, by),
                    (Bom::PayloadLoopbackActivate, LoopState::Open) => {
                        self.close(LoopState::Payload, by)
                    }
                    (Bom::LineLoopbackDeactivate, LoopState::Line)
                    | (Bom::PayloadLoopbackDeactivate, LoopState::Payload) => self.open(by),
                    _ => {}
                }
            }
            Detection::InbandCleared { .. } | Detection::UnknownBom { .. } => {}
        }
    }

    fn close(&mut self, mode: LoopState, by: String) {
        self.state = mode;
        self.loop_since_bits = self.line_bits;
        self.queue.bytes.clear();
        self.stats.loops_closed += 1;
        self.stats.state = Some(mode);
        self.events.push(NiuEvent::LoopClosed {
            t_s: self.line_time_s(),
            mode,
            by,
        });
    }

    fn open(&mut self, by: String) {
        self.state = LoopState::Open;
        self.stats.loops_opened += 1;
        self.stats.state = Some(LoopState::Open);
        self.events.push(NiuEvent::LoopOpened {
            t_s: self.line_time_s(),
            by,
        });
    }

    fn transmit(&mut self, piece: &[u8], output: &mut Vec<u8>) {
        self.stats.line_seconds = self.line_time_s();
        match self.state {
            LoopState::Line => output.extend_from_slice(piece),
            LoopState::Payload => {
                let start = output.len();
                output.resize(start + piece.len(), 0);
                self.framer.fill(&mut output[start..], &mut self.queue);
                // What is left is the frame or two in flight; more means the loop fell behind
                // (the framer sent idle while the receiver reframed): keep the latest.
                let limit = 16 * usize::from(self.config.framing.channels());
                let excess = self.queue.bytes.len().saturating_sub(limit);
                self.queue.bytes.drain(..excess);
            }
            LoopState::Open => {
                let start = output.len();
                output.resize(start + piece.len(), 0);
                self.framer.fill(&mut output[start..], &mut self.idle);
            }
        }
    }
}

/// Parses the NIU options of `sim:?niu=esf&loop_timeout=20m&niu_persistence=5s`.
pub fn config_from_endpoint(endpoint: &Endpoint) -> Result<Option<NiuConfig>, EndpointError> {
    let Some(kind) = endpoint.option("niu") else {
        return Ok(None);
    };
    let framing =
        NiuConfig::parse_kind(kind).map_err(|why| endpoint.bad_value("niu", kind, why))?;
    let mut config = NiuConfig::new(framing);
    let duration = |key: &str| -> Result<Option<Duration>, EndpointError> {
        endpoint
            .option(key)
            .map(|text| {
                loopscope_report::units::parse_duration(text)
                    .map_err(|why| endpoint.bad_value(key, text, why))
            })
            .transpose()
    };
    config.loop_timeout = duration("loop_timeout")?.filter(|d| !d.is_zero());
    if let Some(persistence) = duration("niu_persistence")? {
        config.inband_persistence = persistence;
    }
    if let Some(text) = endpoint.option("niu_idle") {
        config.idle_octet = u8::from_str_radix(text.trim_start_matches("0x"), 16)
            .map_err(|_| endpoint.bad_value("niu_idle", text, "expected a hex octet such as 7F"))?;
    }
    Ok(Some(config))
}

/// `sim:?...&niu=esf`: the impaired memory loop with an emulated NIU at its far end.
pub fn open_sim(endpoint: &Endpoint) -> Result<Box<dyn Link>, LinkError> {
    let config = config_from_endpoint(endpoint)?
        .ok_or_else(|| LinkError::Unsupported("open_sim needs the niu= option".into()))?;
    let mut inner = endpoint.clone();
    inner
        .options
        .retain(|(key, _)| !NIU_OPTIONS.contains(&key.as_str()));
    let link = crate::adapter::impair::SimLink::from_endpoint(&inner)?;
    Ok(Box::new(NiuLink::wrap(
        Box::new(link),
        config,
        endpoint.original.clone(),
    )))
}

/// A link whose far end is an emulated NIU: what the inner link delivers goes through the NIU
/// before it is received. The NIU's log is in the receiver's `stats()` under `niu`.
pub struct NiuLink {
    inner: Box<dyn Link>,
    config: NiuConfig,
    description: String,
}

impl NiuLink {
    /// The NIU in front of `inner`, reported as `description`.
    pub fn wrap(inner: Box<dyn Link>, config: NiuConfig, description: String) -> Self {
        NiuLink {
            inner,
            config,
            description,
        }
    }
}

impl Link for NiuLink {
    fn describe(&self) -> String {
        self.description.clone()
    }

    fn split(self: Box<Self>) -> Result<LinkHalves, LinkError> {
        let (sender, receiver) = self.inner.split()?;
        Ok((
            sender,
            Box::new(NiuReceiver {
                inner: receiver,
                niu: Niu::new(self.config),
                log: Vec::new(),
                pending: Vec::new(),
                read_at: 0,
                scratch: Vec::new(),
            }),
        ))
    }
}

struct NiuReceiver {
    inner: Box<dyn LinkReceiver>,
    niu: Niu,
    log: Vec<NiuLogEntry>,
    pending: Vec<u8>,
    read_at: usize,
    scratch: Vec<u8>,
}

impl LinkReceiver for NiuReceiver {
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.read_at == self.pending.len() {
            self.scratch.resize(buf.len().max(4096), 0);
            let n = self.inner.recv(&mut self.scratch)?;
            if n == 0 {
                return Ok(0);
            }
            self.pending.clear();
            self.read_at = 0;
            self.niu.process(&self.scratch[..n], &mut self.pending);
            for event in self.niu.take_events() {
                self.log.push(NiuLogEntry::now(event));
            }
        }
        let take = (self.pending.len() - self.read_at).min(buf.len());
        buf[..take].copy_from_slice(&self.pending[self.read_at..self.read_at + take]);
        self.read_at += take;
        Ok(take)
    }

    fn set_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.inner.set_timeout(timeout)
    }

    fn stats(&self) -> LinkStats {
        LinkStats {
            niu: Some(NiuReport {
                stats: self.niu.stats(),
                log: self.log.clone(),
            }),
            ..self.inner.stats()
        }
    }
}

/// `stdio:` (or `-`): the line is this process's stdin and stdout, as when a test set runs
/// `exec:loopscope reflect --niu t1 stdio:`.
struct StdioLink;

impl Link for StdioLink {
    fn describe(&self) -> String {
        "stdio:".into()
    }

    fn split(self: Box<Self>) -> Result<LinkHalves, LinkError> {
        Ok((Box::new(StdoutSender), Box::new(StdinReceiver)))
    }
}

struct StdoutSender;

impl LinkSender for StdoutSender {
    // Stdout of a process a test set runs (`exec:loopscope reflect --niu …`): the reader is
    // that test set, which reads as long as it runs.
    fn send(&mut self, data: &[u8], _cancel: &Cancel) -> Result<(), SendError> {
        let mut out = io::stdout();
        out.write_all(data)?;
        out.flush().map_err(|e| SendError::failed(data.len(), e))
    }
}

/// Reads block until data or end of input (a test set closing the line ends the NIU).
struct StdinReceiver;

impl LinkReceiver for StdinReceiver {
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        io::stdin().read(buf)
    }

    fn set_timeout(&mut self, _timeout: Option<Duration>) -> io::Result<()> {
        Ok(())
    }
}

/// Whether `text` names the process's own stdin/stdout.
pub fn is_stdio(text: &str) -> bool {
    matches!(text.trim(), "-" | "stdio:" | "stdio")
}

/// Opens the line a far end serves: `stdio:` or any link endpoint.
pub fn open_line(text: &str) -> Result<Box<dyn Link>, LinkError> {
    if is_stdio(text) {
        Ok(Box::new(StdioLink))
    } else {
        crate::open(text)
    }
}

/// Serves as the far end on `link` until it closes or `stop` is set; `on_event` sees every
/// state change. Returns what the far end did.
pub fn serve(
    link: Box<dyn Link>,
    config: NiuConfig,
    stop: &Arc<AtomicBool>,
    on_event: &mut dyn FnMut(&NiuLogEntry),
) -> Result<NiuStats, LinkError> {
    let (mut sender, mut receiver) = link.split()?;
    let _ = receiver.set_timeout(Some(Duration::from_millis(200)));
    // A line that stops taking data does not hold the far end past a stop.
    let cancel = Cancel::on(Arc::clone(stop));
    let mut niu = Niu::new(config);
    let mut buf = vec![0u8; 64 * 1024];
    let mut out = Vec::with_capacity(buf.len());
    while !stop.load(Ordering::Relaxed) {
        let n = match receiver.recv(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(LinkError::io("the line failed", e)),
        };
        out.clear();
        niu.process(&buf[..n], &mut out);
        for event in niu.take_events() {
            on_event(&NiuLogEntry::now(event));
        }
        if let Err(e) = sender.send(&out, &cancel) {
            if e.is_cancelled() {
                break;
            }
            let e = e.into_io();
            if matches!(
                e.kind(),
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
            ) {
                break;
            }
            return Err(LinkError::io("cannot send on the line", e));
        }
    }
    let _ = sender.finish(&cancel);
    Ok(niu.stats())
}

#[cfg(test)]
mod tests {
    use super::*;
    use loopscope_pattern::framing::{FdlTx, RepeatingBits};

    fn framed_code(framing: Framing, bits: &[u8], seconds: usize) -> Vec<u8> {
        let mut framer = Framer::new(framing, &Timeslots::all(framing), 0x7F);
        let mut line = vec![0u8; framing.bytes_per_second() * seconds];
        framer.fill(&mut line, &mut RepeatingBits::new(bits));
        line
    }

    #[test]
    fn loop_up_closes_a_line_loop_after_the_persistence_and_loop_down_opens_it() {
        let mut niu = Niu::new(NiuConfig::new(Framing::Esf));
        let mut out = Vec::new();
        let up = framed_code(Framing::Esf, &[0, 0, 0, 0, 1], 6);
        niu.process(&up[..up.len() * 4 / 6], &mut out);
        assert_eq!(niu.state(), LoopState::Open, "not after 4 s");
        niu.process(&up[up.len() * 4 / 6..], &mut out);
        assert_eq!(niu.state(), LoopState::Line);
        let events = niu.take_events();
        let closed_at = events
            .iter()
            .find_map(|e| match e {
                NiuEvent::LoopClosed { t_s, mode, .. } => Some((*t_s, *mode)),
                _ => None,
            })
            .unwrap();
        assert_eq!(closed_at.1, LoopState::Line);
        assert!(closed_at.0 >= 5.0 && closed_at.0 < 5.2, "{closed_at:?}");
        // Looped: what comes in goes out, bit for bit.
        let data: Vec<u8> = (0..=255u8).cycle().take(19300).collect();
        out.clear();
        niu.process(&data, &mut out);
        assert_eq!(out, data);
        let down = framed_code(Framing::Esf, &[0, 0, 1], 6);
        niu.process(&down, &mut out);
        assert_eq!(niu.state(), LoopState::Open);
        assert_eq!(out.len(), 19300 + down.len(), "as many bytes out as in");
    }

    #[test]
    fn fdl_payload_loop_regenerates_framing_and_times_out() {
        let mut config = NiuConfig::new(Framing::Esf);
        config.loop_timeout = Some(Duration::from_secs(2));
        let mut niu = Niu::new(config);
        let all = Timeslots::all(Framing::Esf);
        let mut framer = Framer::new(Framing::Esf, &all, 0x7F);
        framer.set_fdl(FdlTx::Repeat(Bom::PayloadLoopbackActivate.line_bits()));
        let mut line = vec![0u8; 193_000 / 10];
        framer.fill(&mut line, &mut RepeatingBits::octet(0x55));
        let mut out = Vec::new();
        niu.process(&line, &mut out);
        assert_eq!(niu.state(), LoopState::Payload);
        framer.set_fdl(FdlTx::Idle);
        let mut line = vec![0u8; 193_000];
        framer.fill(&mut line, &mut RepeatingBits::octet(0xA3));
        out.clear();
        niu.process(&line, &mut out);
        // What comes back is framed afresh and carries the payload sent.
        let mut deframer = Deframer::new(Framing::Esf, &all);
        let mut payload = Vec::new();
        deframer.feed(&out, &mut payload);
        assert!(deframer.counters().in_frame);
        assert_eq!(deframer.counters().crc_errors, 0);
        assert!(payload.len() > 100_000);
        assert!(payload[payload.len() - 50_000..].iter().all(|&b| b == 0xA3));
        let mut rest = vec![0u8; 193_000];
        framer.fill(&mut rest, &mut RepeatingBits::octet(0xA3));
        niu.process(&rest, &mut out);
        assert_eq!(niu.state(), LoopState::Open);
        assert!(niu.take_events().iter().any(
            |e| matches!(e, NiuEvent::LoopOpened { by, t_s } if by == "timeout" && *t_s > 2.0 && *t_s < 2.2)
        ));
        assert_eq!(niu.stats().timeouts, 1);
    }
}
