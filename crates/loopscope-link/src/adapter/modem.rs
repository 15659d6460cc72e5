//! The modem adapter: turns an audio link into a byte link, so `bert` and `ping` run over audio.
//!
//! The modulation is Bell 202 (ITU-T V.23 mode 2 uses the same tones): binary FSK at 1200 baud,
//! mark (1) at 1200 Hz and space (0) at 2200 Hz, continuous phase, each byte sent
//! asynchronously as a start bit (space), eight data bits least significant first and a stop
//! bit (mark); the line idles at mark. The line rate is 1200 bit/s, the payload 960 bit/s.
//!
//! The receiver correlates the recording over one bit time with each tone (a non-coherent
//! matched filter), decides mark or space by the larger energy, and frames bytes as a UART
//! does: a mark-to-space edge starts a byte, each bit is read where the correlation window
//! covers it exactly, and a stop bit that reads space is counted as a framing error (the byte
//! is still delivered, so its damage shows as bit errors, and the receiver waits for mark
//! before the next start bit).
//!
//! On a real-time link (JACK) the modulator never waits: without data it sends idle mark. On a
//! simulated link there is no clock, so when it has nothing to send and everything sent has
//! come back through the channel, it waits for data (time stands still meanwhile); a run over
//! `audiosim:` takes as long as its computation, not as long as 1200 bit/s would.

use std::f64::consts::TAU;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::link::{
    Cancel, Link, LinkError, LinkHalves, LinkReceiver, LinkSender, LinkStats, SendError,
};
use crate::stats::ModemStats;
use crate::transport::audio::{self, AudioLink, AudioProcessor, Clocking, Flow, StreamInfo};

/// Bell 202 / V.23: tones and signalling rate.
pub const MARK_HZ: u32 = 1200;
/// The space tone (a 0 bit), in hertz.
pub const SPACE_HZ: u32 = 2200;
/// Bits per second on the line.
pub const BAUD: u32 = 1200;
/// Bits on the line per byte: start, eight data, stop.
const FRAME_BITS: u32 = 10;
/// Peak level of the carrier: −6 dBFS.
const AMPLITUDE: f64 = 0.5;
/// Idle mark at the start of the stream, so the receiver sees mark before the first start bit
/// (a modem's carrier before data).
const PREAMBLE_BITS: f64 = 10.0;
/// Before the first byte the modem waits, for at most this long in stream time, until it hears
/// its own carrier: a JACK port wired after the stream started would otherwise cut the first
/// bytes.
const CARRIER_WAIT_SECONDS: u64 = 2;
/// Bytes queued towards the modulator, and decoded bytes waiting for the reader.
const TX_QUEUE: usize = 64;
const RX_QUEUE: usize = 1 << 16;

/// What the modem says about itself and its run.
#[derive(Debug, Default)]
struct ModemCounters {
    bytes_sent: AtomicU64,
    bytes_received: AtomicU64,
    framing_errors: AtomicU64,
}

/// A byte link over an audio link.
pub struct ModemLink {
    audio: Box<dyn AudioLink>,
}

impl ModemLink {
    /// The modem over `audio`.
    pub fn new(audio: Box<dyn AudioLink>) -> Self {
        ModemLink { audio }
    }

    /// A description of the modulation, for reports.
    pub fn modulation() -> String {
        format!(
            "Bell 202 FSK {MARK_HZ}/{SPACE_HZ} Hz, {BAUD} bit/s line rate, {} bit/s payload (8N1)",
            BAUD * 8 / FRAME_BITS
        )
    }
}

/// Opens the audio link an endpoint names and puts the modem on it (`--modem`).
pub fn open(endpoint: &str) -> Result<Box<dyn Link>, LinkError> {
    let audio = audio::open(endpoint).map_err(|e| LinkError::Unsupported(e.to_string()))?;
    Ok(Box::new(ModemLink::new(audio)))
}

impl Link for ModemLink {
    fn describe(&self) -> String {
        format!("{} (modem: {})", self.audio.describe(), Self::modulation())
    }

    fn split(self: Box<Self>) -> Result<LinkHalves, LinkError> {
        let rate = self.audio.rate();
        if rate < 8_000 {
            return Err(LinkError::Unsupported(format!(
                "the modem needs at least 8000 frames per second, the link has {rate}"
            )));
        }
        let (tx_bytes, tx_queue) = mpsc::sync_channel::<Vec<u8>>(TX_QUEUE);
        let (rx_queue, rx_bytes) = mpsc::sync_channel::<u8>(RX_QUEUE);
        let counters = Arc::new(ModemCounters::default());
        let failure = Arc::new(Mutex::new(None));
        let stop = Arc::new(AtomicBool::new(false));
        let processor = ModemProcessor::new(rate, tx_queue, rx_queue, Arc::clone(&counters));
        let audio = self.audio;
        let (failure_in_thread, stop_in_thread) = (Arc::clone(&failure), Arc::clone(&stop));
        std::thread::Builder::new()
            .name("modem".into())
            .spawn(move || {
                if let Err(error) = audio.run(Box::new(processor), stop_in_thread)
                    && let Ok(mut slot) = failure_in_thread.lock()
                {
                    *slot = Some(error.to_string());
                }
            })
            .map_err(|e| LinkError::io("cannot start the modem thread", e))?;
        Ok((
            Box::new(ModemSender {
                queue: Some(tx_bytes),
                counters: Arc::clone(&counters),
            }),
            Box::new(ModemReceiver {
                bytes: rx_bytes,
                timeout: None,
                counters,
                failure,
                stop,
            }),
        ))
    }
}

struct ModemSender {
    queue: Option<SyncSender<Vec<u8>>>,
    counters: Arc<ModemCounters>,
}

impl LinkSender for ModemSender {
    fn send(&mut self, data: &[u8], cancel: &Cancel) -> Result<(), SendError> {
        let closed = || io::Error::from(io::ErrorKind::BrokenPipe);
        let Some(queue) = self.queue.as_ref() else {
            return Err(SendError::failed(0, closed()));
        };
        let mut accepted = 0;
        // Small pieces, so the modulator's queue holds seconds of line time, not minutes.
        for piece in data.chunks(256) {
            let mut pending = piece.to_vec();
            // std's sync_channel has no send with a timeout: try, and wait in steps that look
            // at the cancel (a full queue drains at the line rate).
            loop {
                match queue.try_send(pending) {
                    Ok(()) => break,
                    Err(TrySendError::Full(back)) => {
                        pending = back;
                        if !cancel.sleep(Duration::from_millis(2)) {
                            return Err(SendError::cancelled(accepted));
                        }
                    }
                    Err(TrySendError::Disconnected(_)) => {
                        return Err(SendError::failed(accepted, closed()));
                    }
                }
            }
            accepted += piece.len();
            self.counters
                .bytes_sent
                .fetch_add(piece.len() as u64, Ordering::Relaxed);
        }
        Ok(())
    }

    fn finish(&mut self, _cancel: &Cancel) -> io::Result<()> {
        self.queue = None;
        Ok(())
    }
}

struct ModemReceiver {
    bytes: Receiver<u8>,
    timeout: Option<Duration>,
    counters: Arc<ModemCounters>,
    failure: Arc<Mutex<Option<String>>>,
    stop: Arc<AtomicBool>,
}

impl Drop for ModemReceiver {
    fn drop(&mut self) {
        // Nobody listens any more: let the audio run end.
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl LinkReceiver for ModemReceiver {
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let first = match self.timeout {
            None => self
                .bytes
                .recv()
                .map_err(|_| RecvTimeoutError::Disconnected),
            Some(timeout) => self.bytes.recv_timeout(timeout),
        };
        match first {
            Ok(byte) => buf[0] = byte,
            Err(RecvTimeoutError::Timeout) => return Err(io::ErrorKind::TimedOut.into()),
            Err(RecvTimeoutError::Disconnected) => {
                return match self.failure.lock().ok().and_then(|mut f| f.take()) {
                    Some(why) => Err(io::Error::other(why)),
                    None => Ok(0),
                };
            }
        }
        let mut filled = 1;
        while filled < buf.len() {
            match self.bytes.try_recv() {
                Ok(byte) => {
                    buf[filled] = byte;
                    filled += 1;
                }
                Err(_) => break,
            }
        }
        Ok(filled)
    }

    fn set_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.timeout = timeout;
        Ok(())
    }

    fn stats(&self) -> LinkStats {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        LinkStats {
            modem: Some(ModemStats {
                modulation: ModemLink::modulation(),
                line_rate_bps: BAUD,
                payload_rate_bps: BAUD * 8 / FRAME_BITS,
                modem_bytes_sent: load(&self.counters.bytes_sent),
                modem_bytes_received: load(&self.counters.bytes_received),
                framing_errors: load(&self.counters.framing_errors),
            }),
            ..Default::default()
        }
    }
}

/// The transmit side: bytes to continuous-phase FSK.
struct Modulator {
    samples_per_bit: f64,
    phase: f64,
    mark_step: f64,
    space_step: f64,
    /// Line bits of the byte being sent, least significant first; `bits_left` of them remain.
    shift: u16,
    bits_left: u32,
    /// Frame index at which the current bit ends.
    bit_end: f64,
    /// Frames rendered.
    frame: u64,
}

impl Modulator {
    fn new(rate: u32) -> Self {
        let samples_per_bit = rate as f64 / BAUD as f64;
        Modulator {
            samples_per_bit,
            phase: 0.0,
            mark_step: TAU * MARK_HZ as f64 / rate as f64,
            space_step: TAU * SPACE_HZ as f64 / rate as f64,
            shift: 0,
            bits_left: 0,
            bit_end: PREAMBLE_BITS * samples_per_bit,
            frame: 0,
        }
    }

    /// The line bit now on the line; at a bit boundary the next one is taken from the byte
    /// being sent, or `next_byte` is asked for the next byte (`None`: idle at mark).
    fn next_sample(&mut self, next_byte: &mut dyn FnMut() -> Option<u8>) -> f32 {
        if self.frame as f64 >= self.bit_end {
            if self.bits_left > 0 {
                self.shift >>= 1;
                self.bits_left -= 1;
            }
            if self.bits_left == 0
                && let Some(byte) = next_byte()
            {
                // start (0), data LSB first, stop (1)
                self.shift = ((byte as u16) << 1) | (1 << 9);
                self.bits_left = FRAME_BITS;
            }
            self.bit_end += self.samples_per_bit;
        }
        let bit = self.bits_left == 0 || self.shift & 1 == 1;
        let value = AMPLITUDE * self.phase.sin();
        self.phase += if bit { self.mark_step } else { self.space_step };
        if self.phase > TAU {
            self.phase -= TAU;
        }
        self.frame += 1;
        value as f32
    }

    /// No byte on the line: idle mark (the preamble, or nothing to send).
    fn idle(&self) -> bool {
        self.bits_left == 0
    }
}

/// One tone's sliding correlation over a bit time.
struct Correlator {
    table: Vec<(f64, f64)>,
    index: usize,
    ring: Vec<(f64, f64)>,
    sum: (f64, f64),
}

impl Correlator {
    fn new(rate: u32, hz: u32, window: usize) -> Self {
        // e^{-jωn} repeats after rate/gcd(rate, hz) frames: a short exact table.
        let period = (rate / gcd(rate, hz)) as usize;
        let table = (0..period)
            .map(|n| {
                let angle = -TAU * (hz as f64) * (n as f64) / rate as f64;
                (angle.cos(), angle.sin())
            })
            .collect();
        Correlator {
            table,
            index: 0,
            ring: vec![(0.0, 0.0); window],
            sum: (0.0, 0.0),
        }
    }

    /// Takes frame `n` (the `position`-th in the ring) and gives the energy over the window.
    fn push(&mut self, x: f64, position: usize) -> f64 {
        let (c, s) = self.table[self.index];
        self.index = (self.index + 1) % self.table.len();
        let product = (x * c, x * s);
        let old = std::mem::replace(&mut self.ring[position], product);
        self.sum.0 += product.0 - old.0;
        self.sum.1 += product.1 - old.1;
        self.sum.0 * self.sum.0 + self.sum.1 * self.sum.1
    }

    /// Re-adds the window from scratch, so rounding never accumulates.
    fn resum(&mut self) {
        self.sum = self
            .ring
            .iter()
            .fold((0.0, 0.0), |acc, p| (acc.0 + p.0, acc.1 + p.1));
    }
}

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Framing {
    /// Waiting for a start bit; a start needs a whole bit time of mark before it (which also
    /// rides out the transient of a carrier switching on).
    Hunting { mark_run: usize },
    /// A byte is being read: the frame index of bit 0's decision point and what is read so far.
    Reading { start: f64, bit: u32, byte: u16 },
}

/// The receive side: FSK to bytes.
struct Demodulator {
    samples_per_bit: f64,
    window: usize,
    mark: Correlator,
    space: Correlator,
    position: usize,
    frame: u64,
    framing: Framing,
    /// A whole bit of mark has been heard at least once.
    carrier_heard: bool,
}

impl Demodulator {
    fn new(rate: u32) -> Self {
        let samples_per_bit = rate as f64 / BAUD as f64;
        let window = samples_per_bit.round() as usize;
        Demodulator {
            samples_per_bit,
            window,
            mark: Correlator::new(rate, MARK_HZ, window),
            space: Correlator::new(rate, SPACE_HZ, window),
            position: 0,
            frame: 0,
            framing: Framing::Hunting { mark_run: 0 },
            carrier_heard: false,
        }
    }

    /// Takes one frame; gives a byte when one completes, with whether its stop bit was good.
    fn push(&mut self, sample: f32) -> Option<(u8, bool)> {
        let x = sample as f64;
        let mark = self.mark.push(x, self.position);
        let space = self.space.push(x, self.position);
        self.position += 1;
        if self.position == self.window {
            self.position = 0;
        }
        if self.frame.is_multiple_of(65_536) {
            self.mark.resum();
            self.space.resum();
        }
        let now = self.frame as f64;
        self.frame += 1;
        let is_mark = mark > space;
        match self.framing {
            Framing::Hunting { mark_run } => {
                if is_mark {
                    self.carrier_heard |= mark_run + 1 >= self.window;
                    self.framing = Framing::Hunting {
                        mark_run: mark_run + 1,
                    };
                } else if mark_run < self.window {
                    self.framing = Framing::Hunting { mark_run: 0 };
                } else {
                    // The edge shows when the window is half into the start bit; the window
                    // covers the start bit exactly half a bit later.
                    self.framing = Framing::Reading {
                        start: now + self.samples_per_bit / 2.0,
                        bit: 0,
                        byte: 0,
                    };
                }
                None
            }
            Framing::Reading { start, bit, byte } => {
                let decide_at = start + bit as f64 * self.samples_per_bit;
                if now + 0.5 < decide_at {
                    return None;
                }
                if bit == 0 && is_mark {
                    // Not a start bit after all (a noise spike).
                    self.framing = Framing::Hunting {
                        mark_run: self.window,
                    };
                    return None;
                }
                let byte = byte | (u16::from(is_mark) << bit);
                if bit + 1 < FRAME_BITS {
                    self.framing = Framing::Reading {
                        start,
                        bit: bit + 1,
                        byte,
                    };
                    return None;
                }
                // A good stop bit is a whole bit of mark: the next start may follow at once.
                self.framing = Framing::Hunting {
                    mark_run: if is_mark { self.window } else { 0 },
                };
                Some((((byte >> 1) & 0xff) as u8, is_mark))
            }
        }
    }
}

/// Runs inside the audio link's period callback.
struct ModemProcessor {
    modulator: Modulator,
    demodulator: Demodulator,
    tx_queue: Receiver<Vec<u8>>,
    tx_open: bool,
    pending: Vec<u8>,
    pending_at: usize,
    rx_queue: SyncSender<u8>,
    counters: Arc<ModemCounters>,
    /// Offline links: the frame after which everything rendered has come back.
    latency_bound: Option<u64>,
    /// Frames after which data goes out even if the carrier was never heard.
    carrier_wait_frames: u64,
    last_data_frame: u64,
    captured: u64,
    receiver_gone: bool,
}

impl ModemProcessor {
    fn new(
        rate: u32,
        tx_queue: Receiver<Vec<u8>>,
        rx_queue: SyncSender<u8>,
        counters: Arc<ModemCounters>,
    ) -> Self {
        ModemProcessor {
            modulator: Modulator::new(rate),
            demodulator: Demodulator::new(rate),
            tx_queue,
            tx_open: true,
            pending: Vec::new(),
            pending_at: 0,
            rx_queue,
            counters,
            latency_bound: None,
            carrier_wait_frames: CARRIER_WAIT_SECONDS * rate as u64,
            last_data_frame: 0,
            captured: 0,
            receiver_gone: false,
        }
    }

    /// Everything rendered so far has been captured and framed (offline links only).
    fn flushed(&self) -> bool {
        match self.latency_bound {
            None => false,
            Some(bound) => {
                let framing = (3.0 * FRAME_BITS as f64 * self.modulator.samples_per_bit) as u64;
                self.captured >= self.last_data_frame.saturating_add(bound + framing)
            }
        }
    }
}

impl AudioProcessor for ModemProcessor {
    fn start(&mut self, info: &StreamInfo) {
        self.latency_bound = match info.clocking {
            Clocking::Offline {
                latency_bound_frames,
            } => Some(latency_bound_frames),
            Clocking::RealTime => None,
        };
    }

    fn render(&mut self, output: &mut [f32]) {
        for slot in output {
            let may_send =
                self.demodulator.carrier_heard || self.modulator.frame >= self.carrier_wait_frames;
            let Self {
                modulator,
                tx_queue,
                tx_open,
                pending,
                pending_at,
                ..
            } = self;
            let mut next_byte = || {
                if !may_send {
                    return None;
                }
                if *pending_at >= pending.len() {
                    if !*tx_open {
                        return None;
                    }
                    match tx_queue.try_recv() {
                        Ok(chunk) => {
                            *pending = chunk;
                            *pending_at = 0;
                        }
                        Err(TryRecvError::Empty) => return None,
                        Err(TryRecvError::Disconnected) => {
                            *tx_open = false;
                            return None;
                        }
                    }
                }
                let byte = pending.get(*pending_at).copied();
                *pending_at += 1;
                byte
            };
            *slot = modulator.next_sample(&mut next_byte);
            if !modulator.idle() {
                self.last_data_frame = modulator.frame;
            } else if may_send
                && self.pending_at >= self.pending.len()
                && self.tx_open
                && self.flushed()
                && !self.receiver_gone
            {
                // Offline and nothing in flight: wait for the next data (time stands still).
                match self.tx_queue.recv() {
                    Ok(chunk) => {
                        self.pending = chunk;
                        self.pending_at = 0;
                    }
                    Err(_) => self.tx_open = false,
                }
            }
        }
    }

    fn capture(&mut self, input: &[f32]) -> Flow {
        for &sample in input {
            if let Some((byte, framed)) = self.demodulator.push(sample) {
                if !framed {
                    self.counters.framing_errors.fetch_add(1, Ordering::Relaxed);
                }
                self.counters.bytes_received.fetch_add(1, Ordering::Relaxed);
                let delivered = if self.latency_bound.is_some() {
                    self.rx_queue.send(byte).is_ok()
                } else {
                    // A real-time thread never waits; a reader this far behind has gone.
                    !matches!(
                        self.rx_queue.try_send(byte),
                        Err(TrySendError::Disconnected(_))
                    )
                };
                if !delivered {
                    self.receiver_gone = true;
                }
            }
        }
        self.captured += input.len() as u64;
        // Offline: the sender has finished and everything it sent has come back.
        let drained = !self.tx_open && self.pending_at >= self.pending.len() && self.flushed();
        if self.receiver_gone || drained {
            Flow::Stop
        } else {
            Flow::Continue
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bit-level reference: the line bits of an 8N1 byte stream, one per bit time.
    fn line_bits(bytes: &[u8]) -> Vec<bool> {
        let mut bits = vec![true; PREAMBLE_BITS as usize];
        for &byte in bytes {
            bits.push(false);
            bits.extend((0..8).map(|i| byte >> i & 1 == 1));
            bits.push(true);
        }
        bits.extend([true; 5]);
        bits
    }

    /// The modulator's output, bit by bit, against the frequency each bit must have: a
    /// per-bit DFT at both tones over the samples of that bit, independent of the demodulator.
    #[test]
    fn modulates_8n1_bell_202() {
        let rate = 48_000;
        let bytes = [0x55u8, 0x00, 0xff, 0xa3];
        let mut modulator = Modulator::new(rate);
        let mut queue: Vec<u8> = bytes.iter().rev().copied().collect();
        let mut frames = Vec::new();
        for _ in 0..(55 * 40) {
            frames.push(modulator.next_sample(&mut || queue.pop()));
        }
        let expected = line_bits(&bytes);
        for (index, want_mark) in expected.iter().enumerate().take(expected.len() - 4) {
            let bit = &frames[index * 40..(index + 1) * 40];
            let energy = |hz: f64| {
                let (mut re, mut im) = (0.0, 0.0);
                for (n, &x) in bit.iter().enumerate() {
                    let angle = TAU * hz * n as f64 / rate as f64;
                    re += x as f64 * angle.cos();
                    im += x as f64 * angle.sin();
                }
                re * re + im * im
            };
            assert_eq!(
                energy(1200.0) > energy(2200.0),
                *want_mark,
                "line bit {index}"
            );
        }
    }

    #[test]
    fn demodulates_what_it_modulates_at_common_rates() {
        for rate in [8_000, 44_100, 48_000, 96_000] {
            let mut modulator = Modulator::new(rate);
            let mut demodulator = Demodulator::new(rate);
            let data: Vec<u8> = (0..=255u8).chain([0, 0xff, 0x55, 0xaa]).collect();
            let mut queue: Vec<u8> = data.iter().rev().copied().collect();
            let mut got = Vec::new();
            let frames = (rate as usize / 1200 + 1) * 10 * (data.len() + 4);
            for _ in 0..frames {
                let sample = modulator.next_sample(&mut || queue.pop());
                if let Some((byte, framed)) = demodulator.push(sample) {
                    assert!(framed);
                    got.push(byte);
                }
            }
            assert_eq!(got, data, "at {rate} Hz");
        }
    }
}
