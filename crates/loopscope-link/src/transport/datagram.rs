//! Datagram links (`udp:`, `unixgram:`) carry a byte stream in numbered datagrams.
//!
//! Each datagram is `[b'L', b'S', b'D', 1]`, a 64-bit big-endian sequence number, then payload.
//! The receiver delivers payloads in arrival order, except that duplicates and datagrams that
//! arrive after a later one (reordered) are counted and dropped: the pattern checker has already
//! resynchronised past them, so a lost or late datagram reaches it as missing bytes (one slip).
//! Loss, duplication and reordering (RFC 4737's definition: a datagram whose number is below one
//! already received) are reported in `stats()` next to the checker's bit errors.
//!
//! Both halves live in one process, so the sender sees how far the receiver has got and keeps at
//! most `window` datagrams in flight: a BERT must not overrun the peer's socket buffer and then
//! report the overrun as line loss.

use std::io;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use loopscope_wire::datagram::{Datagram, DatagramRepr};

use crate::endpoint::{Endpoint, EndpointError};
use crate::link::{Cancel, LinkReceiver, LinkSender, LinkStats, SendError};
use crate::stats::DatagramStats;
use loopscope_sys::{COARSE_TIMEOUT, SocketTimeout, recv_timeout, timed_out};

pub use loopscope_wire::datagram::{HEADER_LEN as HEADER, MAGIC};
/// Payload per datagram by default: 1412-byte UDP payloads fit a 1500-byte MTU over IPv4 and IPv6.
pub const DEFAULT_PAYLOAD: usize = 1400;
/// Datagrams in flight by default.
pub const DEFAULT_WINDOW: u64 = 128;
/// How long the sender waits for an answer to a full window before assuming it was lost.
const STALL: Duration = Duration::from_millis(50);
/// How far back duplicates are recognised.
const HISTORY: u64 = 4096;

/// Options every datagram link takes.
pub const DATAGRAM_OPTIONS: &[&str] = &["size", "window"];

/// How a datagram link cuts the stream (options `size` and `window`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DatagramSettings {
    /// Payload bytes per datagram (after the header).
    pub payload: usize,
    /// Datagrams in flight at most (0: unlimited).
    pub window: u64,
}

impl DatagramSettings {
    /// Reads `size` (at most `max_payload`) and `window` from the endpoint.
    pub fn from_endpoint(endpoint: &Endpoint, max_payload: usize) -> Result<Self, EndpointError> {
        let payload = endpoint
            .parsed_option::<usize>("size")?
            .unwrap_or(DEFAULT_PAYLOAD);
        if payload == 0 || payload > max_payload {
            return Err(endpoint.bad_value(
                "size",
                &payload.to_string(),
                format!("payload bytes per datagram must be 1..={max_payload}"),
            ));
        }
        let window = endpoint
            .parsed_option::<u64>("window")?
            .unwrap_or(DEFAULT_WINDOW);
        Ok(DatagramSettings { payload, window })
    }
}

/// Writes the header for `seq` into the first [`HEADER`] bytes of `out` (the layout is
/// `loopscope_wire::datagram`'s).
pub fn write_header(out: &mut [u8], seq: u64) {
    DatagramRepr { sequence: seq }.emit(out);
}

/// The sequence number of a datagram, or `None` when it is not one of ours.
pub fn parse_header(datagram: &[u8]) -> Option<u64> {
    Datagram::new_checked(datagram)
        .ok()
        .map(|view| DatagramRepr::parse(&view).sequence)
}

/// A connected datagram socket shared by both halves.
pub trait DatagramSocket: AsFd + Send + Sync + 'static {}

impl DatagramSocket for std::net::UdpSocket {}

impl DatagramSocket for std::os::unix::net::UnixDatagram {}

/// What sender and receiver share: how many were sent, how many are accounted for.
#[derive(Default)]
struct Window {
    sent: AtomicU64,
    /// The sender has finished: once every datagram is accounted for, the stream ends.
    finished: AtomicBool,
    /// Highest sequence received + 1: everything below is received or known missing.
    accounted: AtomicU64,
    sender_waiting: AtomicBool,
    lock: Mutex<()>,
    progressed: Condvar,
}

/// `stats` are fixed facts about the socket (transport, addresses); the datagram counts are
/// added by the receiver.
pub fn halves<S: DatagramSocket>(
    socket: S,
    settings: DatagramSettings,
    stats: LinkStats,
) -> (DatagramSender<S>, DatagramReceiver<S>) {
    let socket = Arc::new(socket);
    let window = Arc::new(Window::default());
    (
        DatagramSender {
            socket: Arc::clone(&socket),
            window: Arc::clone(&window),
            limit: settings.window,
            forgiven: 0,
            buffer: vec![0u8; HEADER + settings.payload],
            payload: settings.payload,
        },
        DatagramReceiver {
            socket,
            window,
            timeout: SocketTimeout::default(),
            buffer: vec![0u8; 65_536],
            pending: 0..0,
            counters: DatagramCounters::default(),
            seen: vec![0u64; (HISTORY / 64) as usize],
            fixed_stats: stats,
            payload: settings.payload,
        },
    )
}

/// Cuts the stream into numbered datagrams, keeping at most a window in flight.
pub struct DatagramSender<S: DatagramSocket> {
    socket: Arc<S>,
    window: Arc<Window>,
    limit: u64,
    /// Sequence below which the sender stopped waiting for answers (they were lost).
    forgiven: u64,
    buffer: Vec<u8>,
    payload: usize,
}

impl<S: DatagramSocket> DatagramSender<S> {
    /// Waits until `seq` fits the window; false when cancelled first.
    fn wait_for_room(&mut self, seq: u64, cancel: &Cancel) -> bool {
        if self.limit == 0 {
            return true;
        }
        let started = Instant::now();
        loop {
            if cancel.is_cancelled() {
                return false;
            }
            let accounted = self
                .window
                .accounted
                .load(Ordering::Acquire)
                .max(self.forgiven);
            if seq.saturating_sub(accounted) < self.limit {
                return true;
            }
            if started.elapsed() >= STALL {
                // A whole window vanished: stop waiting for it.
                self.forgiven = seq;
                return true;
            }
            let guard = match self.window.lock.lock() {
                Ok(guard) => guard,
                Err(poisoned) => poisoned.into_inner(),
            };
            self.window.sender_waiting.store(true, Ordering::SeqCst);
            // Re-check under the lock so a wake-up between the check and the wait is not missed.
            let accounted = self
                .window
                .accounted
                .load(Ordering::Acquire)
                .max(self.forgiven);
            if seq.saturating_sub(accounted) >= self.limit {
                let _ = self
                    .window
                    .progressed
                    .wait_timeout(guard, Duration::from_millis(2));
            }
            self.window.sender_waiting.store(false, Ordering::SeqCst);
        }
    }
}

impl<S: DatagramSocket> LinkSender for DatagramSender<S> {
    /// Sends `data` in numbered datagrams. A datagram counts as accepted once the socket took
    /// it, so `accepted` is always a whole number of payloads.
    fn send(&mut self, data: &[u8], cancel: &Cancel) -> Result<(), SendError> {
        let mut accepted = 0usize;
        for piece in data.chunks(self.payload) {
            let seq = self.window.sent.load(Ordering::Relaxed);
            if !self.wait_for_room(seq, cancel) {
                return Err(SendError::cancelled(accepted));
            }
            write_header(&mut self.buffer, seq);
            self.buffer[HEADER..HEADER + piece.len()].copy_from_slice(piece);
            let datagram = &self.buffer[..HEADER + piece.len()];
            loop {
                let sent = rustix::net::send(
                    self.socket.as_fd(),
                    datagram,
                    rustix::net::SendFlags::DONTWAIT | rustix::net::SendFlags::NOSIGNAL,
                );
                match sent {
                    Ok(_) => break,
                    Err(rustix::io::Errno::INTR) => {}
                    // A full socket buffer, or a connected Unix peer's full queue (poll(2)
                    // on our socket reports when it has room): wait, but not past the cancel.
                    Err(rustix::io::Errno::AGAIN) => {
                        let Some(wait) = cancel.next_wait() else {
                            return Err(SendError::cancelled(accepted));
                        };
                        loopscope_sys::wait_writable(self.socket.as_fd(), Some(wait))
                            .map_err(|e| SendError::failed(accepted, e))?;
                    }
                    // No buffer space in the stack (a full device queue): nothing to poll for.
                    Err(rustix::io::Errno::NOBUFS) => {
                        if !cancel.sleep(Duration::from_micros(50)) {
                            return Err(SendError::cancelled(accepted));
                        }
                    }
                    Err(e) => return Err(SendError::failed(accepted, e.into())),
                }
            }
            self.window.sent.store(seq + 1, Ordering::Release);
            accepted += piece.len();
        }
        Ok(())
    }

    fn finish(&mut self, _cancel: &Cancel) -> io::Result<()> {
        self.window.finished.store(true, Ordering::Release);
        Ok(())
    }
}

/// What the receiver counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DatagramCounters {
    /// Distinct datagrams received (each sequence number once).
    pub received: u64,
    /// Copies of a datagram already received.
    pub duplicates: u64,
    /// Arrived after a datagram with a higher number (and were not duplicates).
    pub reordered: u64,
    /// Not ours (wrong magic, too short).
    pub foreign: u64,
    /// Next expected sequence number (highest received + 1).
    pub next: u64,
}

/// Puts datagrams back in order of their numbers, counting loss, duplicates and reordering.
pub struct DatagramReceiver<S: DatagramSocket> {
    socket: Arc<S>,
    window: Arc<Window>,
    timeout: SocketTimeout,
    buffer: Vec<u8>,
    pending: std::ops::Range<usize>,
    counters: DatagramCounters,
    /// Bitmap of the last HISTORY sequence numbers received.
    seen: Vec<u64>,
    fixed_stats: LinkStats,
    payload: usize,
}

impl<S: DatagramSocket> DatagramReceiver<S> {
    fn seen_bit(&mut self, seq: u64) -> (usize, u64) {
        let slot = seq % HISTORY;
        ((slot / 64) as usize, 1u64 << (slot % 64))
    }

    /// Classifies a datagram; true when its payload goes on to the reader.
    fn accept(&mut self, seq: u64) -> bool {
        let c = &mut self.counters;
        if seq >= c.next {
            // Clear the history slots the window slides over.
            let advance = (seq + 1 - c.next).min(HISTORY);
            for s in (seq + 1 - advance)..=seq {
                let (word, bit) = {
                    let slot = s % HISTORY;
                    ((slot / 64) as usize, 1u64 << (slot % 64))
                };
                self.seen[word] &= !bit;
            }
            let c = &mut self.counters;
            c.next = seq + 1;
            c.received += 1;
            let (word, bit) = self.seen_bit(seq);
            self.seen[word] |= bit;
            true
        } else if c.next - seq > HISTORY {
            // Too old to tell a duplicate from a late arrival: count it as reordered.
            c.reordered += 1;
            false
        } else {
            let (word, bit) = self.seen_bit(seq);
            if self.seen[word] & bit != 0 {
                self.counters.duplicates += 1;
            } else {
                self.seen[word] |= bit;
                self.counters.received += 1;
                self.counters.reordered += 1;
            }
            false
        }
    }

    /// What it has counted so far.
    pub fn counters(&self) -> DatagramCounters {
        self.counters
    }

    fn publish_progress(&self) {
        self.window
            .accounted
            .store(self.counters.next, Ordering::Release);
        if self.window.sender_waiting.load(Ordering::SeqCst) {
            let _guard = self.window.lock.lock();
            self.window.progressed.notify_one();
        }
    }
}

impl<S: DatagramSocket> LinkReceiver for DatagramReceiver<S> {
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let deadline = self.timeout.get().map(|t| Instant::now() + t);
        while self.pending.is_empty() {
            // Everything the sender sent is received or known lost (a later one came): no
            // datagram can still be given back, so the stream has ended.
            if self.window.finished.load(Ordering::Acquire)
                && self.counters.next >= self.window.sent.load(Ordering::Acquire)
            {
                return Ok(0);
            }
            let fd = self.socket.as_fd();
            let n = match (self.timeout.get(), deadline) {
                // Short timeouts: precisely what is left of this call's time.
                (Some(t), Some(deadline)) if t < COARSE_TIMEOUT => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(timed_out());
                    }
                    recv_timeout(fd, &mut self.buffer, Some(left))?
                }
                // Long ones: the socket's own timeout (may overshoot by foreign datagrams).
                _ => self.timeout.recv(fd, &mut self.buffer)?,
            };
            match parse_header(&self.buffer[..n]) {
                None => self.counters.foreign += 1,
                Some(seq) => {
                    if self.accept(seq) {
                        self.pending = HEADER..n;
                    }
                    self.publish_progress();
                }
            }
        }
        let take = self.pending.len().min(buf.len());
        let start = self.pending.start;
        buf[..take].copy_from_slice(&self.buffer[start..start + take]);
        self.pending.start += take;
        Ok(take)
    }

    fn set_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.timeout.set(timeout);
        Ok(())
    }

    fn is_lossy(&self) -> bool {
        true
    }

    fn stats(&self) -> LinkStats {
        let c = self.counters;
        let sent = self.window.sent.load(Ordering::Acquire);
        LinkStats {
            datagrams: Some(DatagramStats {
                datagram_payload_bytes: self.payload,
                datagrams_sent: sent,
                datagrams_received: c.received,
                datagrams_lost: sent.saturating_sub(c.received),
                datagrams_duplicated: c.duplicates,
                datagrams_reordered: c.reordered,
                datagrams_foreign: c.foreign,
            }),
            ..self.fixed_stats.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixDatagram;

    fn datagram(seq: u64, payload: &[u8]) -> Vec<u8> {
        let mut d = vec![0u8; HEADER];
        write_header(&mut d, seq);
        d.extend_from_slice(payload);
        d
    }

    #[test]
    fn header_layout_is_magic_then_big_endian_sequence() {
        let d = datagram(0x0102_0304_0506_0708, b"x");
        assert_eq!(d, b"LSD\x01\x01\x02\x03\x04\x05\x06\x07\x08x");
        assert_eq!(parse_header(&d), Some(0x0102_0304_0506_0708));
        assert_eq!(parse_header(b"LSD\x02\0\0\0\0\0\0\0\0"), None);
        assert_eq!(parse_header(b"LSD\x01"), None);
    }

    /// Hand-built datagrams in the order 0 1 3 2 3 5 4 (2 and 4 late, 3 duplicated, the sender
    /// having sent 0..=6): the receiver delivers 0 1 3 5, counts 2 reordered, 1 duplicate, and
    /// 6 lost.
    #[test]
    fn counts_loss_duplication_and_reordering_of_hand_built_datagrams() {
        let (near, far) = UnixDatagram::pair().unwrap();
        let settings = DatagramSettings {
            payload: 16,
            window: 0,
        };
        let (_tx, mut rx) = halves(near, settings, LinkStats::default());
        for seq in [0u64, 1, 3, 2, 3, 5, 4] {
            far.send(&datagram(seq, &[seq as u8; 3])).unwrap();
        }
        far.send(b"not ours").unwrap();
        rx.window.sent.store(7, Ordering::SeqCst);
        rx.set_timeout(Some(Duration::from_millis(50))).unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 2];
        loop {
            match rx.recv(&mut buf) {
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if crate::link::is_timeout(&e) => break,
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(got, [0, 0, 0, 1, 1, 1, 3, 3, 3, 5, 5, 5]);
        let s = rx.stats().datagrams.unwrap();
        assert_eq!(s.datagrams_received, 6);
        assert_eq!(s.datagrams_reordered, 2);
        assert_eq!(s.datagrams_duplicated, 1);
        assert_eq!(s.datagrams_lost, 1);
        assert_eq!(s.datagrams_foreign, 1);
    }

    #[test]
    fn sender_splits_into_numbered_datagrams() {
        let (near, far) = UnixDatagram::pair().unwrap();
        let settings = DatagramSettings {
            payload: 4,
            window: 0,
        };
        let (mut tx, _rx) = halves(near, settings, LinkStats::default());
        tx.send(b"abcdefghij", &Cancel::never()).unwrap();
        let mut buf = [0u8; 64];
        let mut seen = Vec::new();
        for _ in 0..3 {
            let n = far.recv(&mut buf).unwrap();
            seen.push((parse_header(&buf[..n]).unwrap(), buf[HEADER..n].to_vec()));
        }
        assert_eq!(
            seen,
            vec![
                (0, b"abcd".to_vec()),
                (1, b"efgh".to_vec()),
                (2, b"ij".to_vec())
            ]
        );
    }

    proptest::proptest! {
        #[test]
        fn parse_header_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..40)) {
            let _ = parse_header(&bytes);
        }
    }
}
