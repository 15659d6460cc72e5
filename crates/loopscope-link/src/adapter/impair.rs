//! The impairment adapter: wraps any link and damages what passes through it, reproducibly.
//!
//! `sim:?ber=1e-6` is the memory loop behind this adapter; `--impair ber=1e-6&drop=1e-7` puts
//! the same adapter in front of any other link (compare smoltcp's `phy::FaultInjector`).
//!
//! Impairments act on the transmit path, in this order per `send` call: whole-message loss and
//! reordering (a `send` is one datagram on datagram links), byte drops / duplicates / inserts,
//! bit slips, random bit errors (uniform, or Gilbert-Elliott bursts), then rate limit and delay.
//! Every random draw comes from one seeded generator, so a seed reproduces a run exactly.

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use serde::Serialize;

use crate::endpoint::{Endpoint, EndpointError};
use crate::link::{
    Cancel, Link, LinkError, LinkHalves, LinkReceiver, LinkSender, LinkStats, SendError,
};
use crate::transport::memory::MemoryLoop;

/// What to do to the traffic. Probabilities are per bit (`ber`, `slip`), per byte (`drop`,
/// `insert`, `dup`) or per message (`loss`, `reorder`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ImpairmentConfig {
    /// Random bit-error probability (in the good state when Gilbert-Elliott is on).
    pub ber: f64,
    /// Gilbert-Elliott: probability per bit of moving from the good to the bad state.
    pub ge_enter: f64,
    /// Gilbert-Elliott: probability per bit of leaving the bad state.
    pub ge_leave: f64,
    /// Gilbert-Elliott: bit-error probability in the bad state.
    pub ge_ber: f64,
    /// Probability per byte that it is dropped.
    pub drop: f64,
    /// Probability per byte that a byte is inserted.
    pub insert: f64,
    /// Probability per byte that it is sent twice.
    pub dup: f64,
    /// Probability per bit that one bit is lost or gained (half each), shifting what follows.
    pub slip: f64,
    /// Probability per message that it is lost.
    pub loss: f64,
    /// Probability per message that it is held back and sent after the next one.
    pub reorder: f64,
    /// How long everything is held before it comes out (a delay line).
    pub delay: Duration,
    /// Bits per second; 0 is unlimited.
    pub rate_bps: u64,
    /// Seed of the random draws: the same seed gives the same damage.
    pub seed: u64,
}

/// The option names `sim:` and `--impair` accept.
pub const IMPAIRMENT_OPTIONS: [&str; 14] = [
    "ber", "ge_enter", "ge_leave", "ge_ber", "drop", "insert", "dup", "slip", "loss", "reorder",
    "delay", "rate", "seed", "depth",
];

impl ImpairmentConfig {
    /// Parses `key=value&key=value` (what follows `?` in `sim:?...`, or the `--impair` value).
    pub fn parse(text: &str) -> Result<Self, EndpointError> {
        let endpoint = Endpoint::parse(&format!("sim:?{}", text.trim_start_matches('?')))?;
        Self::from_endpoint(&endpoint)
    }

    /// Reads the options of a `sim:` endpoint (or of `--impair`, which takes the same).
    pub fn from_endpoint(endpoint: &Endpoint) -> Result<Self, EndpointError> {
        endpoint.reject_unknown_options(&IMPAIRMENT_OPTIONS)?;
        let probability = |key: &str| -> Result<f64, EndpointError> {
            let value = endpoint.parsed_option::<f64>(key)?.unwrap_or(0.0);
            if !(0.0..=1.0).contains(&value) {
                return Err(endpoint.bad_value(
                    key,
                    &value.to_string(),
                    "a probability must be within 0..=1",
                ));
            }
            Ok(value)
        };
        let delay = match endpoint.option("delay") {
            None => Duration::ZERO,
            Some(text) => loopscope_report::units::parse_duration(text)
                .map_err(|why| endpoint.bad_value("delay", text, why))?,
        };
        let rate_bps = match endpoint.option("rate") {
            None => 0,
            Some(text) => loopscope_report::units::parse_rate(text)
                .map_err(|why| endpoint.bad_value("rate", text, why))?,
        };
        let config = ImpairmentConfig {
            ber: probability("ber")?,
            ge_enter: probability("ge_enter")?,
            ge_leave: probability("ge_leave")?,
            ge_ber: match endpoint.option("ge_ber") {
                None => 0.5,
                Some(_) => probability("ge_ber")?,
            },
            drop: probability("drop")?,
            insert: probability("insert")?,
            dup: probability("dup")?,
            slip: probability("slip")?,
            loss: probability("loss")?,
            reorder: probability("reorder")?,
            delay,
            rate_bps,
            seed: endpoint.parsed_option::<u64>("seed")?.unwrap_or(1),
        };
        if config.ge_enter > 0.0 && config.ge_leave == 0.0 {
            return Err(endpoint.bad_value(
                "ge_leave",
                "0",
                "Gilbert-Elliott needs ge_leave > 0 (or the channel never leaves the bad state)",
            ));
        }
        Ok(config)
    }

    /// Whether it would change nothing at all.
    pub fn is_noop(&self) -> bool {
        let probabilities = [
            self.ber,
            self.ge_enter,
            self.drop,
            self.insert,
            self.dup,
            self.slip,
            self.loss,
            self.reorder,
        ];
        probabilities.iter().all(|p| *p == 0.0) && self.delay.is_zero() && self.rate_bps == 0
    }
}

/// What the adapter did, for the summary (`link.impairment`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ImpairmentStats {
    /// Bits flipped.
    pub flipped_bits: u64,
    /// Bytes dropped.
    pub dropped_bytes: u64,
    /// Bytes inserted.
    pub inserted_bytes: u64,
    /// Bytes sent twice (the copies).
    pub duplicated_bytes: u64,
    /// Bits lost at slips.
    pub deleted_bits: u64,
    /// Bits gained at slips.
    pub inserted_bits: u64,
    /// Messages (sends, datagrams) lost whole.
    pub lost_messages: u64,
    /// Messages held back and sent after the next one.
    pub reordered_messages: u64,
}

/// Draws the gap to the next event of probability `p` per trial (geometric), so rare events
/// cost nothing per byte.
fn next_gap(rng: &mut Xoshiro256PlusPlus, p: f64) -> u64 {
    if p <= 0.0 {
        return u64::MAX;
    }
    if p >= 1.0 {
        return 0;
    }
    let uniform: f64 = rng.random::<f64>();
    let gap = (1.0 - uniform).ln() / (1.0 - p).ln();
    if gap >= u64::MAX as f64 {
        u64::MAX
    } else {
        gap as u64
    }
}

/// Adds bits, least significant first, and yields whole bytes: the slip stage works on bits.
#[derive(Default)]
struct BitPacker {
    accumulator: u64,
    count: u32,
}

impl BitPacker {
    fn push(&mut self, bits: u64, count: u32, out: &mut Vec<u8>) {
        self.accumulator |= bits << self.count;
        self.count += count;
        while self.count >= 8 {
            out.push(self.accumulator as u8);
            self.accumulator >>= 8;
            self.count -= 8;
        }
    }
}

/// The impairment engine on its own, for links and for the reflector.
pub struct Impairer {
    config: ImpairmentConfig,
    // One generator per stage, so the damage depends on the byte stream and the seed, not on
    // how the stream was cut into messages.
    rng_messages: Xoshiro256PlusPlus,
    rng_bytes: Xoshiro256PlusPlus,
    rng_slips: Xoshiro256PlusPlus,
    rng_flips: Xoshiro256PlusPlus,
    stats: ImpairmentStats,
    // Distances (in bytes or bits) to the next event of each kind.
    until_drop: u64,
    until_insert: u64,
    until_dup: u64,
    until_slip: u64,
    until_flip: u64,
    /// Gilbert-Elliott state: bits left in the current state, and whether it is the bad one.
    state_left: u64,
    bad_state: bool,
    slip_packer: Option<BitPacker>,
    held_message: Option<Vec<u8>>,
    /// Cut every message to the length it came in with (see [`Impairer::without_growth`]).
    no_growth: bool,
    scratch: Vec<u8>,
    scratch2: Vec<u8>,
}

impl Impairer {
    /// An impairer whose random stages are seeded from `config.seed`.
    pub fn new(config: ImpairmentConfig) -> Self {
        let stage = |index: u64| {
            Xoshiro256PlusPlus::seed_from_u64(config.seed.wrapping_mul(4).wrapping_add(index))
        };
        let (rng_messages, mut rng_bytes, mut rng_slips, mut rng_flips) =
            (stage(0), stage(1), stage(2), stage(3));
        let until_drop = next_gap(&mut rng_bytes, config.drop);
        let until_insert = next_gap(&mut rng_bytes, config.insert);
        let until_dup = next_gap(&mut rng_bytes, config.dup);
        let until_slip = next_gap(&mut rng_slips, config.slip);
        let until_flip = next_gap(&mut rng_flips, config.ber);
        let state_left = next_gap(&mut rng_flips, config.ge_enter);
        Impairer {
            config,
            rng_messages,
            rng_bytes,
            rng_slips,
            rng_flips,
            stats: ImpairmentStats::default(),
            until_drop,
            until_insert,
            until_dup,
            until_slip,
            until_flip,
            state_left,
            bad_state: false,
            slip_packer: None,
            held_message: None,
            no_growth: false,
            scratch: Vec::new(),
            scratch2: Vec::new(),
        }
    }

    /// What it does.
    pub fn config(&self) -> &ImpairmentConfig {
        &self.config
    }

    /// Never lets a message grow: what byte insertions and duplications add is cut off at the
    /// message's original length (the damage stays, shifted; no byte is amplified). For a
    /// reflector, whose replies must never be longer than the requests.
    pub fn without_growth(mut self) -> Self {
        self.no_growth = true;
        self
    }

    /// What it has done so far.
    pub fn stats(&self) -> &ImpairmentStats {
        &self.stats
    }

    /// Impairs one message; calls `deliver` for each message that goes on (none when lost,
    /// two when a held-back one is released behind it).
    pub fn process(
        &mut self,
        message: &[u8],
        deliver: &mut dyn FnMut(&[u8]) -> io::Result<()>,
    ) -> io::Result<()> {
        if self.config.loss > 0.0 && self.rng_messages.random::<f64>() < self.config.loss {
            self.stats.lost_messages += 1;
            return Ok(());
        }
        let mut data = std::mem::take(&mut self.scratch);
        data.clear();
        self.damage_bytes(message, &mut data);
        self.damage_bits(&mut data);
        if self.no_growth {
            data.truncate(message.len());
        }
        let result = if self.config.reorder > 0.0
            && self.held_message.is_none()
            && self.rng_messages.random::<f64>() < self.config.reorder
        {
            self.stats.reordered_messages += 1;
            self.held_message = Some(data.clone());
            Ok(())
        } else {
            let sent = deliver(&data);
            match (sent, self.held_message.take()) {
                (Ok(()), Some(held)) => deliver(&held),
                (result, _) => result,
            }
        };
        self.scratch = data;
        result
    }

    /// Delivers a message still held back for reordering (at the end of a run).
    pub fn flush(&mut self, deliver: &mut dyn FnMut(&[u8]) -> io::Result<()>) -> io::Result<()> {
        match self.held_message.take() {
            Some(held) => deliver(&held),
            None => Ok(()),
        }
    }

    /// Byte-level drops, duplicates and inserts.
    fn damage_bytes(&mut self, input: &[u8], out: &mut Vec<u8>) {
        let mut at = 0usize;
        while at < input.len() {
            let left = (input.len() - at) as u64;
            let next_event = self.until_drop.min(self.until_insert).min(self.until_dup);
            if next_event >= left {
                out.extend_from_slice(&input[at..]);
                self.until_drop = self.until_drop.saturating_sub(left);
                self.until_insert = self.until_insert.saturating_sub(left);
                self.until_dup = self.until_dup.saturating_sub(left);
                return;
            }
            let run = next_event as usize;
            out.extend_from_slice(&input[at..at + run]);
            at += run;
            self.until_drop -= next_event;
            self.until_insert -= next_event;
            self.until_dup -= next_event;
            let byte = input[at];
            if self.until_drop == 0 {
                self.stats.dropped_bytes += 1;
                self.until_drop = next_gap(&mut self.rng_bytes, self.config.drop).saturating_add(1);
            } else if self.until_insert == 0 {
                out.push(self.rng_bytes.random::<u8>());
                out.push(byte);
                self.stats.inserted_bytes += 1;
                self.until_insert =
                    next_gap(&mut self.rng_bytes, self.config.insert).saturating_add(1);
            } else {
                out.push(byte);
                out.push(byte);
                self.stats.duplicated_bytes += 1;
                self.until_dup = next_gap(&mut self.rng_bytes, self.config.dup).saturating_add(1);
            }
            // The byte at `at` has been handled by exactly one event; the other counters
            // advance past it too.
            at += 1;
            for until in [
                &mut self.until_drop,
                &mut self.until_insert,
                &mut self.until_dup,
            ] {
                *until = until.saturating_sub(1);
            }
        }
    }

    /// Bit slips, then bit errors.
    fn damage_bits(&mut self, data: &mut Vec<u8>) {
        if self.config.slip > 0.0 || self.slip_packer.is_some() {
            self.slip_bits(data);
        }
        if self.config.ge_enter > 0.0 {
            self.flip_gilbert_elliott(data);
        } else if self.config.ber > 0.0 {
            self.until_flip = flip_at_rate(
                &mut self.rng_flips,
                data,
                self.until_flip,
                self.config.ber,
                &mut self.stats.flipped_bits,
            );
        }
    }

    fn slip_bits(&mut self, data: &mut Vec<u8>) {
        let mut out = std::mem::take(&mut self.scratch2);
        out.clear();
        let packer = self.slip_packer.get_or_insert_with(BitPacker::default);
        for &byte in data.iter() {
            if self.until_slip >= 8 {
                self.until_slip -= 8;
                packer.push(u64::from(byte), 8, &mut out);
                continue;
            }
            let position = self.until_slip as u32;
            let low = u64::from(byte) & ((1u64 << position) - 1);
            let high = u64::from(byte) >> position;
            if self.rng_slips.random::<bool>() {
                // Lose bit `position`.
                packer.push(low, position, &mut out);
                packer.push(high >> 1, 7 - position, &mut out);
                self.stats.deleted_bits += 1;
            } else {
                // Gain a random bit before `position`.
                packer.push(low, position, &mut out);
                packer.push(u64::from(self.rng_slips.random::<bool>()), 1, &mut out);
                packer.push(high, 8 - position, &mut out);
                self.stats.inserted_bits += 1;
            }
            // At most one slip per byte; the next gap counts from the following byte.
            self.until_slip = next_gap(&mut self.rng_slips, self.config.slip);
        }
        std::mem::swap(data, &mut out);
        self.scratch2 = out;
    }

    fn flip_gilbert_elliott(&mut self, data: &mut [u8]) {
        let total_bits = data.len() as u64 * 8;
        let mut bit = 0u64;
        while bit < total_bits {
            let span = self.state_left.min(total_bits - bit);
            let rate = if self.bad_state {
                self.config.ge_ber
            } else {
                self.config.ber
            };
            let mut position = bit;
            let stop = bit + span;
            let mut gap = next_gap(&mut self.rng_flips, rate);
            while rate > 0.0 && position.saturating_add(gap) < stop {
                position += gap;
                data[(position / 8) as usize] ^= 1 << (position % 8);
                self.stats.flipped_bits += 1;
                position += 1;
                gap = next_gap(&mut self.rng_flips, rate);
            }
            bit += span;
            self.state_left -= span;
            if self.state_left == 0 {
                self.bad_state = !self.bad_state;
                let leave = if self.bad_state {
                    self.config.ge_leave
                } else {
                    self.config.ge_enter
                };
                self.state_left = next_gap(&mut self.rng_flips, leave).saturating_add(1);
            }
        }
    }
}

/// Flips bits at rate `p`, starting `until` bits into `data`; returns the distance to the next
/// flip past the end of `data`.
fn flip_at_rate(
    rng: &mut Xoshiro256PlusPlus,
    data: &mut [u8],
    mut until: u64,
    p: f64,
    flipped: &mut u64,
) -> u64 {
    let total_bits = data.len() as u64 * 8;
    let mut position = 0u64;
    loop {
        if until >= total_bits - position {
            return until - (total_bits - position);
        }
        position += until;
        data[(position / 8) as usize] ^= 1 << (position % 8);
        *flipped += 1;
        position += 1;
        until = next_gap(rng, p);
    }
}

/// `sim:` — the memory loop (or any link) behind an [`Impairer`].
pub struct SimLink {
    inner: Box<dyn Link>,
    config: ImpairmentConfig,
    description: String,
}

impl SimLink {
    /// `sim:?options` over the memory loop.
    pub fn from_endpoint(endpoint: &Endpoint) -> Result<Self, EndpointError> {
        if !endpoint.target.is_empty() {
            return Err(endpoint.invalid("sim: impairs the memory loop; to impair another link use --impair OPTIONS with that link"));
        }
        let config = ImpairmentConfig::from_endpoint(endpoint)?;
        let depth = endpoint
            .parsed_option::<usize>("depth")?
            .unwrap_or(8)
            .max(1);
        let inner: Box<dyn Link> = Box::new(MemoryLoopWithDepth(depth));
        Ok(SimLink {
            inner,
            config,
            description: endpoint.original.clone(),
        })
    }

    /// Wraps any link.
    pub fn wrap(inner: Box<dyn Link>, config: ImpairmentConfig) -> Self {
        let description = format!("{} (impaired)", inner.describe());
        SimLink {
            inner,
            config,
            description,
        }
    }
}

struct MemoryLoopWithDepth(usize);

impl Link for MemoryLoopWithDepth {
    fn describe(&self) -> String {
        "loop:".into()
    }
    fn split(self: Box<Self>) -> Result<LinkHalves, LinkError> {
        let (tx, rx) = MemoryLoop::pair(self.0);
        Ok((Box::new(tx), Box::new(rx)))
    }
}

impl Link for SimLink {
    fn describe(&self) -> String {
        self.description.clone()
    }

    fn data_bits(&self) -> u8 {
        self.inner.data_bits()
    }

    fn line_rate_bps(&self) -> Option<f64> {
        let own = (self.config.rate_bps > 0).then_some(self.config.rate_bps as f64);
        match (own, self.inner.line_rate_bps()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn split(self: Box<Self>) -> Result<LinkHalves, LinkError> {
        let (inner_tx, inner_rx) = self.inner.split()?;
        let stats = Arc::new(Mutex::new(ImpairmentStats::default()));
        let sender = ImpairedSender {
            inner: inner_tx,
            impairer: Impairer::new(self.config.clone()),
            shared_stats: Arc::clone(&stats),
            pacer: Pacer::new(self.config.rate_bps),
        };
        let lossy = self.config.drop > 0.0 || self.config.loss > 0.0 || inner_rx.is_lossy();
        let receiver: Box<dyn LinkReceiver> = if self.config.delay.is_zero() {
            Box::new(ImpairedReceiver {
                inner: Some(inner_rx),
                delayed: None,
                stats,
                timeout: None,
                lossy,
            })
        } else {
            let delayed = DelayLine::start(inner_rx, self.config.delay, DELAY_LINE_BYTES)
                .map_err(|e| LinkError::io("cannot start the delay line", e))?;
            Box::new(ImpairedReceiver {
                inner: None,
                delayed: Some(delayed),
                stats,
                timeout: None,
                lossy,
            })
        };
        Ok((Box::new(sender), receiver))
    }
}

/// Keeps a sender under a bit rate by sleeping: a token bucket with a 10 ms burst.
struct Pacer {
    rate_bps: u64,
    start: Instant,
    sent_bits: u64,
}

impl Pacer {
    fn new(rate_bps: u64) -> Self {
        Pacer {
            rate_bps,
            start: Instant::now(),
            sent_bits: 0,
        }
    }

    /// Waits until `bytes` more may go; false when cancelled first.
    fn pace(&mut self, bytes: usize, cancel: &Cancel) -> bool {
        if self.rate_bps == 0 {
            return true;
        }
        self.sent_bits += bytes as u64 * 8;
        let due = Duration::from_secs_f64(self.sent_bits as f64 / self.rate_bps as f64);
        let elapsed = self.start.elapsed();
        if due > elapsed + Duration::from_millis(10) {
            return cancel.sleep(due - elapsed);
        }
        true
    }
}

struct ImpairedSender {
    inner: Box<dyn LinkSender>,
    impairer: Impairer,
    shared_stats: Arc<Mutex<ImpairmentStats>>,
    pacer: Pacer,
}

impl ImpairedSender {
    fn publish(&self) {
        if let Ok(mut shared) = self.shared_stats.lock() {
            *shared = self.impairer.stats().clone();
        }
    }
}

impl LinkSender for ImpairedSender {
    /// A message the impairment lost or holds back for reordering counts as taken by the link.
    /// When the inner link stops short, `accepted` counts the bytes of the damaged message it
    /// took, at most the length of `data` (drops and duplicates make the two differ).
    fn send(&mut self, data: &[u8], cancel: &Cancel) -> Result<(), SendError> {
        let inner = &mut self.inner;
        let pacer = &mut self.pacer;
        let mut failure: Option<SendError> = None;
        let mut delivered_current = false;
        let result = self.impairer.process(data, &mut |message| {
            let accepted_before = if delivered_current { data.len() } else { 0 };
            if !pacer.pace(message.len(), cancel) {
                failure = Some(SendError::cancelled(accepted_before));
                return Err(io::ErrorKind::Interrupted.into());
            }
            match inner.send(message, cancel) {
                Ok(()) => {
                    delivered_current = true;
                    Ok(())
                }
                Err(e) => {
                    let accepted = if delivered_current {
                        data.len()
                    } else {
                        e.accepted.min(data.len())
                    };
                    failure = Some(SendError {
                        accepted,
                        kind: e.kind,
                    });
                    Err(io::ErrorKind::Interrupted.into())
                }
            }
        });
        self.publish();
        match (result, failure) {
            (_, Some(failure)) => Err(failure),
            (Ok(()), None) => Ok(()),
            (Err(e), None) => Err(SendError::failed(0, e)),
        }
    }

    fn finish(&mut self, cancel: &Cancel) -> io::Result<()> {
        let inner = &mut self.inner;
        self.impairer
            .flush(&mut |message| inner.send(message, cancel).map_err(SendError::into_io))?;
        self.publish();
        self.inner.finish(cancel)
    }
}

/// Most bytes a delay line holds. Past it, the line stops taking data from the link below
/// until some comes due, so a long delay on a fast link acts as a link whose bandwidth-delay
/// product is this much, instead of buffering without bound (`delay=60s` over TCP once held
/// about 64 MiB per connection).
pub const DELAY_LINE_BYTES: usize = 4 << 20;

/// What the delay line's reader thread and the receiver share.
struct DelayState {
    /// Received data and when it comes due, oldest first; an empty chunk or an error ends it.
    queue: VecDeque<(Instant, io::Result<Vec<u8>>)>,
    /// Bytes in `queue`.
    bytes: usize,
    /// The receiver is gone: the reader thread ends.
    abandoned: bool,
}

struct DelayShared {
    state: Mutex<DelayState>,
    changed: Condvar,
}

impl DelayShared {
    fn lock(&self) -> std::sync::MutexGuard<'_, DelayState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Holds received data back by a fixed delay, on its own thread so arrival times are stamped
/// when data arrives, not when the test gets round to reading.
struct DelayLine {
    shared: Arc<DelayShared>,
    current: Vec<u8>,
    offset: usize,
    closed: bool,
}

/// How often the reader thread looks whether the receiver is still there.
const DELAY_POLL: Duration = Duration::from_millis(100);

impl DelayLine {
    fn start(
        mut inner: Box<dyn LinkReceiver>,
        delay: Duration,
        capacity: usize,
    ) -> io::Result<Self> {
        let shared = Arc::new(DelayShared {
            state: Mutex::new(DelayState {
                queue: VecDeque::new(),
                bytes: 0,
                abandoned: false,
            }),
            changed: Condvar::new(),
        });
        let reader = Arc::clone(&shared);
        inner.set_timeout(Some(DELAY_POLL))?;
        std::thread::Builder::new()
            .name("delay line".into())
            .spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    {
                        let mut state = reader.lock();
                        while state.bytes >= capacity && !state.abandoned {
                            state = reader
                                .changed
                                .wait_timeout(state, DELAY_POLL)
                                .map(|(guard, _)| guard)
                                .unwrap_or_else(|poisoned| poisoned.into_inner().0);
                        }
                        if state.abandoned {
                            return;
                        }
                    }
                    let room = capacity
                        .saturating_sub(reader.lock().bytes)
                        .clamp(1, buf.len());
                    let item = match inner.recv(&mut buf[..room]) {
                        Ok(n) => Ok(buf[..n].to_vec()),
                        Err(e) if crate::link::is_timeout(&e) => continue,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(error) => Err(error),
                    };
                    let end = matches!(&item, Ok(data) if data.is_empty()) || item.is_err();
                    let mut state = reader.lock();
                    if let Ok(data) = &item {
                        state.bytes += data.len();
                    }
                    state.queue.push_back((
                        Instant::now().checked_add(delay).unwrap_or_else(far_future),
                        item,
                    ));
                    reader.changed.notify_all();
                    if end || state.abandoned {
                        return;
                    }
                }
            })?;
        Ok(DelayLine {
            shared,
            current: Vec::new(),
            offset: 0,
            closed: false,
        })
    }

    /// Waits for data that has come due, at most `timeout` (`None`: as long as it takes).
    fn recv(&mut self, buf: &mut [u8], timeout: Option<Duration>) -> io::Result<usize> {
        if self.offset >= self.current.len() {
            if self.closed {
                return Ok(0);
            }
            let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
            let mut state = self.shared.lock();
            loop {
                let now = Instant::now();
                let due = state.queue.front().map(|(due, _)| *due);
                if due.is_some_and(|due| due <= now) {
                    break;
                }
                let wake = match (due, deadline) {
                    (Some(due), Some(deadline)) => due.min(deadline),
                    (Some(due), None) => due,
                    (None, Some(deadline)) => deadline,
                    (None, None) => now + Duration::from_secs(3600),
                };
                if deadline.is_some_and(|d| now >= d) {
                    return Err(io::ErrorKind::TimedOut.into());
                }
                state = self
                    .shared
                    .changed
                    .wait_timeout(state, wake.saturating_duration_since(now))
                    .map(|(guard, _)| guard)
                    .unwrap_or_else(|poisoned| poisoned.into_inner().0);
            }
            let Some((_, item)) = state.queue.pop_front() else {
                return Err(io::ErrorKind::TimedOut.into());
            };
            if let Ok(data) = &item {
                state.bytes -= data.len();
            }
            self.shared.changed.notify_all();
            drop(state);
            let data = item?;
            if data.is_empty() {
                self.closed = true;
                return Ok(0);
            }
            self.current = data;
            self.offset = 0;
        }
        let available = &self.current[self.offset..];
        let take = available.len().min(buf.len());
        buf[..take].copy_from_slice(&available[..take]);
        self.offset += take;
        Ok(take)
    }

    #[cfg(test)]
    fn held_bytes(&self) -> usize {
        self.shared.lock().bytes + (self.current.len() - self.offset)
    }
}

impl Drop for DelayLine {
    fn drop(&mut self) {
        self.shared.lock().abandoned = true;
        self.shared.changed.notify_all();
    }
}

/// A deadline past any run (for delays too long to add to now).
fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600)
}

struct ImpairedReceiver {
    inner: Option<Box<dyn LinkReceiver>>,
    delayed: Option<DelayLine>,
    stats: Arc<Mutex<ImpairmentStats>>,
    timeout: Option<Duration>,
    /// The impairment drops bytes or loses messages (or the link below may lose data).
    lossy: bool,
}

impl LinkReceiver for ImpairedReceiver {
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match (&mut self.inner, &mut self.delayed) {
            (Some(inner), _) => inner.recv(buf),
            (None, Some(delayed)) => delayed.recv(buf, self.timeout),
            (None, None) => Ok(0),
        }
    }

    fn set_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.timeout = timeout;
        match &mut self.inner {
            Some(inner) => inner.set_timeout(timeout),
            None => Ok(()),
        }
    }

    fn is_lossy(&self) -> bool {
        self.lossy || self.inner.as_ref().is_some_and(|inner| inner.is_lossy())
    }

    fn stats(&self) -> LinkStats {
        let mut stats = self
            .inner
            .as_ref()
            .map(|inner| inner.stats())
            .unwrap_or_default();
        if let Ok(impairment) = self.stats.lock() {
            stats.impairment = Some(impairment.clone());
        }
        stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(config: ImpairmentConfig, input: &[u8], chunk: usize) -> (Vec<u8>, ImpairmentStats) {
        let mut impairer = Impairer::new(config);
        let mut out = Vec::new();
        for piece in input.chunks(chunk) {
            impairer
                .process(piece, &mut |m| {
                    out.extend_from_slice(m);
                    Ok(())
                })
                .unwrap();
        }
        impairer
            .flush(&mut |m| {
                out.extend_from_slice(m);
                Ok(())
            })
            .unwrap();
        (out, impairer.stats().clone())
    }

    fn differing_bits(a: &[u8], b: &[u8]) -> u64 {
        a.iter()
            .zip(b)
            .map(|(x, y)| u64::from((x ^ y).count_ones()))
            .sum()
    }

    #[test]
    fn parses_options_and_rejects_typos() {
        let c = ImpairmentConfig::parse("ber=1e-6&drop=0.001&delay=5ms&rate=9600&seed=7").unwrap();
        assert_eq!((c.ber, c.drop, c.rate_bps, c.seed), (1e-6, 0.001, 9600, 7));
        assert_eq!(c.delay, Duration::from_millis(5));
        assert!(
            ImpairmentConfig::parse("bre=1e-6")
                .unwrap_err()
                .to_string()
                .contains("unknown option 'bre'")
        );
        assert!(ImpairmentConfig::parse("ber=2").is_err());
        assert!(ImpairmentConfig::parse("delay=soon").is_err());
        assert!(ImpairmentConfig::parse("ge_enter=0.01").is_err());
    }

    #[test]
    fn bit_error_count_matches_the_bits_that_differ_and_the_rate() {
        let input: Vec<u8> = (0..4_000_000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        let config = ImpairmentConfig {
            ber: 1e-4,
            seed: 42,
            ..Default::default()
        };
        let (out, stats) = run(config, &input, 65_537);
        assert_eq!(out.len(), input.len());
        assert_eq!(differing_bits(&out, &input), stats.flipped_bits);
        let expected = 32_000_000.0 * 1e-4; // 3200, sd ~57
        assert!(
            (stats.flipped_bits as f64 - expected).abs() < 5.0 * expected.sqrt(),
            "{}",
            stats.flipped_bits
        );
    }

    #[test]
    fn same_seed_same_damage() {
        let input = vec![0x55u8; 100_000];
        let config = ImpairmentConfig {
            ber: 1e-3,
            drop: 1e-4,
            dup: 1e-4,
            slip: 1e-5,
            seed: 9,
            ..Default::default()
        };
        let (a, b) = (run(config.clone(), &input, 1000), run(config, &input, 333));
        assert_eq!(a.1, b.1);
        assert!(a.0 == b.0, "the damaged streams differ");
    }

    #[test]
    fn byte_events_change_the_length_by_their_counts() {
        let input: Vec<u8> = (0..1_000_000u32).map(|i| i as u8).collect();
        let config = ImpairmentConfig {
            drop: 1e-4,
            insert: 1e-4,
            dup: 1e-4,
            seed: 3,
            ..Default::default()
        };
        let (out, stats) = run(config, &input, 4096);
        assert!(
            stats.dropped_bytes > 50 && stats.inserted_bytes > 50 && stats.duplicated_bytes > 50,
            "{stats:?}"
        );
        assert_eq!(
            out.len() as i64,
            input.len() as i64 - stats.dropped_bytes as i64
                + stats.inserted_bytes as i64
                + stats.duplicated_bytes as i64
        );
    }

    #[test]
    fn one_deleted_bit_shifts_the_rest_of_the_stream() {
        // With slip=1 every bit slips; with a tiny rate and a fixed seed we get a few. Check the
        // mechanics on a stream of all-different bytes: output bits = input bits with the
        // deleted/inserted positions removed/added, so the bit length changes by their counts.
        let input: Vec<u8> = (0..200_000u32).map(|i| (i * 37 + 11) as u8).collect();
        let config = ImpairmentConfig {
            slip: 2e-6,
            seed: 5,
            ..Default::default()
        };
        let (out, stats) = run(config, &input, 999);
        let slips = stats.deleted_bits + stats.inserted_bits;
        assert!(slips >= 1, "{stats:?}");
        let out_bits = out.len() as i64 * 8; // whole bytes only; up to 7 bits stay in the packer
        let expected_bits =
            input.len() as i64 * 8 - stats.deleted_bits as i64 + stats.inserted_bits as i64;
        assert!(expected_bits - out_bits >= 0 && expected_bits - out_bits < 8);
    }

    #[test]
    fn message_loss_and_reordering_are_counted() {
        let messages: Vec<Vec<u8>> = (0..10_000u32).map(|i| i.to_le_bytes().to_vec()).collect();
        let mut impairer = Impairer::new(ImpairmentConfig {
            loss: 0.01,
            reorder: 0.01,
            seed: 11,
            ..Default::default()
        });
        let mut delivered = Vec::new();
        for message in &messages {
            impairer
                .process(message, &mut |m| {
                    delivered.push(u32::from_le_bytes(m.try_into().unwrap()));
                    Ok(())
                })
                .unwrap();
        }
        impairer
            .flush(&mut |m| {
                delivered.push(u32::from_le_bytes(m.try_into().unwrap()));
                Ok(())
            })
            .unwrap();
        let stats = impairer.stats();
        assert_eq!(delivered.len() as u64, 10_000 - stats.lost_messages);
        let out_of_order = delivered.windows(2).filter(|w| w[1] < w[0]).count() as u64;
        assert_eq!(out_of_order, stats.reordered_messages);
        assert!(
            stats.lost_messages > 50 && stats.reordered_messages > 50,
            "{stats:?}"
        );
    }

    #[test]
    fn gilbert_elliott_errors_come_in_bursts() {
        let input = vec![0u8; 2_000_000];
        let config = ImpairmentConfig {
            ge_enter: 1e-5,
            ge_leave: 1e-2,
            ge_ber: 0.5,
            seed: 1,
            ..Default::default()
        };
        let (out, stats) = run(config, &input, 8192);
        assert_eq!(differing_bits(&out, &input), stats.flipped_bits);
        // Mean bad-state length 100 bits at 50% errors: errors cluster, so the gaps between
        // consecutive errors are mostly short while the overall rate is low.
        let positions: Vec<u64> = out
            .iter()
            .enumerate()
            .flat_map(|(i, b)| {
                (0..8)
                    .filter(move |k| b & (1 << k) != 0)
                    .map(move |k| i as u64 * 8 + k)
            })
            .collect();
        let short_gaps = positions.windows(2).filter(|w| w[1] - w[0] < 200).count();
        assert!(positions.len() > 100);
        assert!(
            short_gaps * 10 > positions.len() * 8,
            "{short_gaps} of {}",
            positions.len()
        );
    }

    /// `--impair delay=60s` over a fast link once buffered about 64 MiB per connection: the
    /// line now holds at most its capacity and stops taking data, so the sender waits (and
    /// gives up at its deadline) instead.
    #[test]
    fn a_long_delay_holds_at_most_its_capacity() {
        let capacity = 1 << 20;
        let (mut tx, rx) = MemoryLoop::pair(2);
        let line = DelayLine::start(Box::new(rx), Duration::from_secs(60), capacity).unwrap();
        let cancel = Cancel::never().until(Instant::now() + Duration::from_millis(300));
        let error = tx.send(&vec![0u8; 64 << 20], &cancel).unwrap_err();
        assert!(error.is_cancelled(), "{error}");
        assert!(line.held_bytes() <= capacity, "{}", line.held_bytes());
        // What the sender got in is in the line or still in the loop below it (2 chunks).
        assert!(
            error.accepted <= capacity + 3 * 256 * 1024,
            "{}",
            error.accepted
        );
    }

    /// A receive on `sim:?delay=1h` returns at its timeout, not after the hour.
    #[test]
    fn a_receive_on_a_long_delay_returns_at_its_timeout() {
        let endpoint = Endpoint::parse("sim:?delay=1h").unwrap();
        let link: Box<dyn Link> = Box::new(SimLink::from_endpoint(&endpoint).unwrap());
        let (mut tx, mut rx) = link.split().unwrap();
        tx.send(&[0u8; 1000], &Cancel::never()).unwrap();
        rx.set_timeout(Some(Duration::from_millis(50))).unwrap();
        let error = rx.recv(&mut [0u8; 64]).unwrap_err();
        assert!(crate::link::is_timeout(&error), "{error}");
    }
}
