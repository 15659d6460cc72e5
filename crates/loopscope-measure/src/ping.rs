//! Round-trip time over any link: small stamped frames, replies matched by sequence number.
//!
//! A frame is self-delimiting so it survives stream links (TCP, serial) where writes merge and
//! split: `[0xF0, b'L', b'P', b'G']`, payload length (u16), sequence (u64), send time (u64 ns,
//! CLOCK_MONOTONIC), the payload (bytes derived from the sequence), and a CRC-32 over everything
//! after the magic. All integers big-endian. After a corrupt frame the parser scans for the next
//! magic, so one line error costs one frame, not the run.
//!
//! One thread sends and receives: it waits for replies exactly until the next send is due, so
//! nothing but the kernel sits between the reply arriving and its time being taken.

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use loopscope_report::rtt::{PingReply, PingSummary, RttRecorder};
use serde_json::{Map, Value, json};

use loopscope_link::link::{Link, LinkError, is_timeout};

pub const MAGIC: [u8; 4] = [0xF0, b'L', b'P', b'G'];
/// Magic, length, sequence, timestamp.
pub const HEADER: usize = 4 + 2 + 8 + 8;
pub const TRAILER: usize = 4;
pub const MAX_PAYLOAD: usize = u16::MAX as usize;

/// Monotonic clock in nanoseconds (CLOCK_MONOTONIC, as the frames carry it).
pub fn now_ns() -> u64 {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn payload_byte(seq: u64, index: usize) -> u8 {
    (seq as u8).wrapping_add(index as u8).wrapping_mul(31) ^ 0x5A
}

/// Builds one frame into `out` (cleared first).
pub fn encode_frame(out: &mut Vec<u8>, seq: u64, sent_ns: u64, payload: usize) {
    let payload = payload.min(MAX_PAYLOAD);
    out.clear();
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&(payload as u16).to_be_bytes());
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&sent_ns.to_be_bytes());
    out.extend((0..payload).map(|i| payload_byte(seq, i)));
    let crc = crc32fast::hash(&out[4..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    Frame {
        seq: u64,
        sent_ns: u64,
        len: usize,
    },
    /// A frame whose checksum or payload was wrong.
    Corrupt,
}

/// Reassembles frames from a byte stream.
#[derive(Default)]
pub struct FrameParser {
    buffer: Vec<u8>,
    /// The payload length every frame of this run has; a frame that claims another is corrupt
    /// at once, rather than stalling the parser until a bogus length's worth of bytes arrives.
    expected_payload: Option<usize>,
}

impl FrameParser {
    pub fn expecting(payload: usize) -> Self {
        FrameParser {
            buffer: Vec::new(),
            expected_payload: Some(payload),
        }
    }

    pub fn push(&mut self, data: &[u8]) {
        self.buffer.extend_from_slice(data);
    }

    /// The next complete frame, a corrupt one, or `None` until more bytes arrive.
    pub fn next_frame(&mut self) -> Option<Parsed> {
        let start = find_magic(&self.buffer);
        match start {
            Some(start) => {
                self.buffer.drain(..start);
            }
            None => {
                // Keep a possible partial magic at the end.
                let keep = self.buffer.len().min(MAGIC.len() - 1);
                let cut = self.buffer.len() - keep;
                self.buffer.drain(..cut);
                return None;
            }
        }
        if self.buffer.len() < HEADER {
            return None;
        }
        let payload = u16::from_be_bytes([self.buffer[4], self.buffer[5]]) as usize;
        if self.expected_payload.is_some_and(|p| p != payload) {
            self.buffer.drain(..1);
            return Some(Parsed::Corrupt);
        }
        let total = HEADER + payload + TRAILER;
        if self.buffer.len() < total {
            return None;
        }
        let frame = &self.buffer[..total];
        let crc = u32::from_be_bytes([
            frame[total - 4],
            frame[total - 3],
            frame[total - 2],
            frame[total - 1],
        ]);
        if crc32fast::hash(&frame[4..total - 4]) != crc {
            // Skip this magic and look for the next one.
            self.buffer.drain(..1);
            return Some(Parsed::Corrupt);
        }
        let seq = u64::from_be_bytes(frame[6..14].try_into().unwrap_or_default());
        let sent_ns = u64::from_be_bytes(frame[14..22].try_into().unwrap_or_default());
        let intact = frame[HEADER..HEADER + payload]
            .iter()
            .enumerate()
            .all(|(i, &b)| b == payload_byte(seq, i));
        self.buffer.drain(..total);
        Some(if intact {
            Parsed::Frame {
                seq,
                sent_ns,
                len: total,
            }
        } else {
            Parsed::Corrupt
        })
    }
}

fn find_magic(buffer: &[u8]) -> Option<usize> {
    buffer.windows(MAGIC.len()).position(|w| w == MAGIC)
}

#[derive(Debug, Clone)]
pub struct PingConfig {
    pub count: Option<u64>,
    /// Zero: send the next request as soon as the previous reply arrives.
    pub interval: Duration,
    pub payload: usize,
    pub timeout: Duration,
    pub deadline: Option<Duration>,
}

/// The result of a ping run: the summary, and why it ended early if it did.
pub struct PingOutcome {
    pub summary: PingSummary,
    /// The link failed mid-run (the summary holds what was measured until then).
    pub link_error: Option<String>,
}

enum Slot {
    Waiting { sent_ns: u64, seq: u64 },
}

/// Runs a ping over `link`, calling `on_reply` for every reply.
pub fn run(
    link: Box<dyn Link>,
    config: &PingConfig,
    stop: &AtomicBool,
    on_reply: &mut dyn FnMut(&PingReply),
) -> Result<PingOutcome, LinkError> {
    let target = link.describe();
    let (mut tx, mut rx) = link.split()?;
    let mut recorder = RttRecorder::new();
    let mut parser = FrameParser::expecting(config.payload.min(MAX_PAYLOAD));
    let mut frame = Vec::with_capacity(HEADER + config.payload + TRAILER);
    let mut buffer = vec![0u8; 65_536];
    // Outstanding requests, oldest first (sequence numbers only grow).
    let mut outstanding: VecDeque<Slot> = VecDeque::new();
    // Sequences answered or given up recently, to tell duplicates and late replies apart.
    let mut answered = std::collections::HashSet::new();
    let mut answered_order = VecDeque::new();
    let mut given_up = 0u64; // every seq below this that is not outstanding was lost
    let mut late = 0u64;
    let mut corrupt = 0u64;
    let mut unexpected = 0u64;
    let mut link_error = None;
    let started = now_ns();
    let deadline_ns = config.deadline.map(|d| started + d.as_nanos() as u64);
    let interval_ns = config.interval.as_nanos() as u64;
    let timeout_ns = config.timeout.as_nanos().max(1) as u64;
    let mut next_send = started;
    let mut sent = 0u64;
    let mut current_timeout: Option<Duration> = None;

    'run: loop {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let now = now_ns();
        if deadline_ns.is_some_and(|d| now >= d) {
            break;
        }
        // Give up on requests whose time is over.
        while let Some(Slot::Waiting { sent_ns, seq }) = outstanding.front() {
            if now.saturating_sub(*sent_ns) < timeout_ns {
                break;
            }
            given_up = given_up.max(seq + 1);
            outstanding.pop_front();
        }
        let done_sending = config.count.is_some_and(|c| sent >= c);
        if done_sending && outstanding.is_empty() {
            break;
        }
        let may_send =
            !done_sending && (interval_ns > 0 || outstanding.is_empty()) && now >= next_send;
        if may_send {
            let stamp = now_ns();
            encode_frame(&mut frame, sent, stamp, config.payload);
            if let Err(e) = tx.send(&frame) {
                link_error = Some(format!("send failed: {e}"));
                break;
            }
            recorder.sent();
            outstanding.push_back(Slot::Waiting {
                sent_ns: stamp,
                seq: sent,
            });
            sent += 1;
            next_send = if interval_ns == 0 {
                stamp
            } else {
                (next_send + interval_ns).max(stamp)
            };
            continue;
        }
        // Wait for replies until the next thing is due.
        let mut wake = u64::MAX;
        if !done_sending && (interval_ns > 0 || outstanding.is_empty()) {
            wake = wake.min(next_send);
        }
        if let Some(Slot::Waiting { sent_ns, .. }) = outstanding.front() {
            wake = wake.min(sent_ns + timeout_ns);
        }
        if let Some(d) = deadline_ns {
            wake = wake.min(d);
        }
        let wait = Duration::from_nanos(wake.saturating_sub(now).max(1_000));
        // Re-arming the timeout costs a system call on some links: keep the current one when it
        // overshoots the wanted wake-up by little.
        let keep = current_timeout
            .is_some_and(|c| c >= wait && c - wait <= Duration::from_millis(1).max(wait / 8));
        if !keep {
            rx.set_timeout(Some(wait))
                .map_err(|e| LinkError::io("cannot set receive timeout", e))?;
            current_timeout = Some(wait);
        }
        let n = match rx.recv(&mut buffer) {
            Ok(0) => {
                link_error = Some("the link closed".into());
                break;
            }
            Ok(n) => n,
            Err(e) if is_timeout(&e) => continue,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                link_error = Some(format!("receive failed: {e}"));
                break;
            }
        };
        let arrived = now_ns();
        parser.push(&buffer[..n]);
        while let Some(parsed) = parser.next_frame() {
            match parsed {
                Parsed::Corrupt => {
                    corrupt += 1;
                    recorder.error();
                }
                Parsed::Frame { seq, len, .. } => {
                    if let Some(pos) = outstanding
                        .iter()
                        .position(|Slot::Waiting { seq: s, .. }| *s == seq)
                    {
                        let Some(Slot::Waiting { sent_ns, .. }) = outstanding.remove(pos) else {
                            continue;
                        };
                        let rtt = arrived.saturating_sub(sent_ns);
                        recorder.reply(rtt);
                        answered.insert(seq);
                        answered_order.push_back(seq);
                        if answered_order.len() > 65_536
                            && let Some(old) = answered_order.pop_front()
                        {
                            answered.remove(&old);
                        }
                        on_reply(&PingReply {
                            from: target.clone(),
                            seq,
                            bytes: len,
                            rtt_us: rtt as f64 / 1000.0,
                            ttl: None,
                            duplicate: false,
                        });
                    } else if answered.contains(&seq) {
                        recorder.duplicate();
                        on_reply(&PingReply {
                            from: target.clone(),
                            seq,
                            bytes: len,
                            rtt_us: 0.0,
                            ttl: None,
                            duplicate: true,
                        });
                    } else if seq < given_up {
                        late += 1;
                    } else {
                        // A sequence never sent: another sender on a shared reflector, or a
                        // corrupted frame that happened to pass the checksum.
                        unexpected += 1;
                    }
                }
            }
            if stop.load(Ordering::Relaxed) {
                break 'run;
            }
        }
    }
    let elapsed_s = now_ns().saturating_sub(started) as f64 / 1e9;
    let mut summary = recorder.summary(&target, elapsed_s);
    let mut extra = Map::new();
    extra.insert("late".into(), json!(late));
    extra.insert("corrupt".into(), json!(corrupt));
    if unexpected > 0 {
        extra.insert("unexpected".into(), json!(unexpected));
    }
    extra.insert("payload_bytes".into(), json!(config.payload));
    let stats = rx.stats();
    if !stats.is_empty() {
        extra.insert("link".into(), Value::Object(stats));
    }
    if let Some(error) = &link_error {
        extra.insert("link_error".into(), json!(error));
        summary.passed = false;
    }
    summary.extra = extra;
    let _ = tx.finish();
    Ok(PingOutcome {
        summary,
        link_error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_layout_is_as_documented() {
        let mut f = Vec::new();
        encode_frame(&mut f, 0x0102030405060708, 0x1112131415161718, 2);
        assert_eq!(&f[..4], &[0xF0, b'L', b'P', b'G']);
        assert_eq!(&f[4..6], &[0, 2]);
        assert_eq!(&f[6..14], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(
            &f[14..22],
            &[0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18]
        );
        assert_eq!(f.len(), HEADER + 2 + TRAILER);
        // CRC-32 (IEEE) of everything after the magic, computed independently bit by bit.
        let mut crc = 0xFFFF_FFFFu32;
        for &byte in &f[4..f.len() - 4] {
            crc ^= byte as u32;
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        assert_eq!(&f[f.len() - 4..], &(!crc).to_be_bytes());
    }

    #[test]
    fn parser_reassembles_split_frames_and_resyncs_after_corruption() {
        let mut stream = Vec::new();
        let mut f = Vec::new();
        for seq in 0..5u64 {
            encode_frame(&mut f, seq, 1000 + seq, 7);
            if seq == 2 {
                f[HEADER + 1] ^= 0x10; // a bit error in the payload
            }
            stream.extend_from_slice(b"xx"); // line noise between frames
            stream.extend_from_slice(&f);
        }
        let mut parser = FrameParser::default();
        let mut seen = Vec::new();
        for piece in stream.chunks(3) {
            parser.push(piece);
            while let Some(p) = parser.next_frame() {
                seen.push(p);
            }
        }
        let frames: Vec<_> = seen
            .iter()
            .filter_map(|p| match p {
                Parsed::Frame { seq, sent_ns, .. } => Some((*seq, *sent_ns)),
                Parsed::Corrupt => None,
            })
            .collect();
        assert_eq!(frames, vec![(0, 1000), (1, 1001), (3, 1003), (4, 1004)]);
        assert_eq!(seen.iter().filter(|p| **p == Parsed::Corrupt).count(), 1);
    }

    #[test]
    fn pings_over_the_memory_loop() {
        let link = Box::new(loopscope_link::transport::memory::MemoryLoop::new());
        let config = PingConfig {
            count: Some(20),
            interval: Duration::ZERO,
            payload: 56,
            timeout: Duration::from_secs(2),
            deadline: None,
        };
        let mut replies = Vec::new();
        let outcome = run(link, &config, &AtomicBool::new(false), &mut |r| {
            replies.push(r.seq)
        })
        .unwrap();
        assert_eq!(replies, (0..20).collect::<Vec<_>>());
        assert_eq!(outcome.summary.transmitted, 20);
        assert_eq!(outcome.summary.received, 20);
        assert!(outcome.summary.passed);
    }

    proptest::proptest! {
        #[test]
        fn parser_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let mut parser = FrameParser::default();
            let mut magic_stream = MAGIC.to_vec();
            magic_stream.extend_from_slice(&bytes);
            parser.push(&magic_stream);
            while parser.next_frame().is_some() {}
        }
    }
}
