//! STAMP (RFC 8762), unauthenticated mode: the Session-Sender ([`send`]) and a stateless
//! Session-Reflector ([`reflect`]), over UDP on IPv4 or IPv6.
//!
//! Timestamps: the kernel's software timestamps (SO_TIMESTAMPING) where it gives them, the
//! user-space wall clock (`CLOCK_REALTIME`) where it does not, and the summary says which were
//! used. A packet carries the time read just before it was sent (T1 in the request, T3 in the
//! reply): the kernel's transmit timestamp exists only once the packet has left. The sender
//! computes with its kernel transmit timestamp (T1) and its kernel receive timestamp (T4); the
//! reflector puts its kernel receive timestamp in T2. With Follow-Up Telemetry (RFC 8972
//! §4.7) the reflector's next reply carries the kernel's transmit timestamp of the previous
//! one, and that packet's figures take it for T3 (a `t3_follow_up` event says so). The Error
//! Estimate carries the clock's real state: S from the kernel's NTP status (adjtimex), and an
//! error of the kernel's estimated error plus the clock's resolution plus the largest gap seen
//! between the time a packet carries and the kernel's transmit timestamp of that packet.
//!
//! One-way figures subtract two hosts' wall clocks: they are reported only when both ends say
//! their clocks are synchronised, or the reflector is on this host (one clock), or the
//! operator says both read one clock (`same_clock`), and withheld (with the reason) when any
//! one-way delay comes out negative beyond the error estimates.

use std::io::{self, Write};
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use loopscope_report::Record;
use loopscope_sys::TimestampedDatagram;
pub mod auth;
mod reflector;
pub mod tlv;

pub use auth::StampKey;
pub use loopscope_sys::SendOptions;
pub use reflector::{
    DEFAULT_MAX_REQUEST_LEN, DEFAULT_SESSION_TIMEOUT, ReflectorConfig, ReflectorEntry,
    ReflectorFileError, ReflectorSummary, StampCounters, StampResponder, parse_reflector_file,
};
use rustix::event::{PollFd, PollFlags, Timespec, poll};
use serde::Serialize;
pub use tlv::{RequestTlvs, TlvRequest};

use loopscope_wire::stamp::{
    ErrorEstimate, Mode, ReflectorPacket, ReflectorRepr, SenderPacket, SenderRepr, Timestamp,
};
pub use loopscope_wire::stamp::{
    MIN_AUTH_PACKET_LEN, MIN_PACKET_LEN, MIN_TWAMP_LIGHT_LEN, TimestampFormat,
};

/// Largest STAMP packet in one UDP/IPv4 datagram (65535 − 20 − 8).
pub const MAX_PACKET_LEN: usize = 65_507;

/// The TTL (IPv4) or hop limit (IPv6) replies leave with: the Session-Reflector sets 255, as
/// the TWAMP-Test reflector does (RFC 5357 §4.2.1), so the sender sees the hops of the way back.
pub const REFLECTOR_TTL: u8 = 255;

/// What a timestamp is worth before any transmit timestamp has been compared with it: the
/// time a packet carries is read before the send call, and what passes until the kernel
/// stamps it is unknown until measured. 100 µs is a bound on a loaded host.
pub(crate) const UNMEASURED_SEND_GAP: Duration = Duration::from_micros(100);

#[derive(Debug, thiserror::Error)]
/// Why a STAMP run could not start or went on no further.
pub enum StampError {
    #[error(
        "--size {0} is out of range: STAMP packets are {1}..={MAX_PACKET_LEN} octets in this mode (RFC 8762 §4.2)"
    )]
    /// The packet length asked for is outside what the mode allows (the length, the mode's minimum).
    Size(usize, usize),
    #[error("{0}")]
    /// A socket operation failed.
    Io(#[from] io::Error),
    #[error(
        "refusing to reflect on {0}: not a loopback address (pass --allow-remote to answer other hosts)"
    )]
    /// The reflector was asked to bind a non-loopback address without `allow_remote`.
    NotLoopback(SocketAddr),
    #[error("cannot run under SCHED_FIFO (--realtime needs root or CAP_SYS_NICE): {0}")]
    /// `--realtime` was refused.
    Realtime(io::Error),
}

/// The SCHED_FIFO priority of `--realtime` (BFD's too): above ordinary processes, below the
/// kernel's threaded interrupt handlers (50).
const REALTIME_PRIORITY: u8 = 10;

/// Runs the calling thread, and the threads it starts from now on (they inherit the policy),
/// under SCHED_FIFO: what `--realtime` asks for, never a default. A sender at 100,000 packets a
/// second, or a reflector answering them, never sleeps; as an ordinary task it shares its CPU
/// with every other runnable task (or autogroup) in slices of a scheduler tick (4 ms at
/// 250 Hz), and each slice given away is a stall of milliseconds in its schedule. Under
/// SCHED_FIFO only interrupts and higher priorities delay it, except that the kernel keeps 5%
/// of each CPU for ordinary tasks that have been waiting (sched_rt_runtime_us, the fair
/// server: 50 ms a second), which a busy host takes.
pub fn enter_realtime() -> Result<(), StampError> {
    loopscope_sys::set_realtime_priority(REALTIME_PRIORITY).map_err(StampError::Realtime)
}

pub(crate) fn wall_clock() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
}

/// The clock's Error Estimate: S from the kernel's sync status, the error its estimated error
/// plus the clock's resolution plus `send_gap` (how long after the time a packet carries the
/// kernel may stamp it).
pub(crate) fn clock_error_estimate(format: TimestampFormat, send_gap: Duration) -> ErrorEstimate {
    match loopscope_sys::clock_sync() {
        Ok(sync) => ErrorEstimate::new(
            sync.synchronised,
            format,
            sync.estimated_error + sync.resolution + send_gap,
        ),
        // No adjtimex (a sandbox): unsynchronised, and an error of a second says "unknown".
        Err(_) => ErrorEstimate::new(false, format, Duration::from_secs(1)),
    }
}

/// How long [`wait_for_receive_timestamps`] waits at most.
const TIMESTAMPS_LIVE_WAIT: Duration = Duration::from_secs(1);

/// Waits until the kernel stamps received packets, at most [`TIMESTAMPS_LIVE_WAIT`]; returns
/// whether it does.
///
/// Linux turns receive timestamping on for the whole host through a static key
/// (`netstamp_needed_key`, `net/core/dev.c`). When no other socket has it on, the first
/// SO_TIMESTAMPING socket does not flip the key itself but schedules a work item to do it, and
/// until a kernel worker runs it no packet is stamped. On a loaded host that took long enough
/// for the first 17 packets of a 1 ms run to arrive without a receive timestamp. A datagram
/// sent to ourselves on loopback shows when the key is on; the socket whose options asked for
/// it keeps it on.
pub(crate) fn wait_for_receive_timestamps() -> bool {
    let probe = || -> io::Result<bool> {
        let socket = UdpSocket::bind((std::net::Ipv4Addr::LOCALHOST, 0))?;
        loopscope_sys::enable_datagram_metadata(&socket, false, false)?;
        socket.connect(socket.local_addr()?)?;
        let started = Instant::now();
        let mut buffer = [0u8; 8];
        while started.elapsed() < TIMESTAMPS_LIVE_WAIT {
            socket.send(b"stamp?")?;
            wait_readable(&socket, Duration::from_millis(10))?;
            while let Ok(received) = loopscope_sys::recv_datagram(&socket, &mut buffer) {
                if received.kernel_rx.is_some() {
                    return Ok(true);
                }
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(false)
    };
    probe().unwrap_or(false)
}

fn receive(socket: &UdpSocket, buffer: &mut [u8]) -> io::Result<TimestampedDatagram> {
    loopscope_sys::recv_datagram(socket, buffer)
}

/// Waits until the socket is readable or `timeout` passes (ppoll: nanosecond timeouts, not the
/// jiffies SO_RCVTIMEO counts in). Returns whether it is readable.
fn wait_readable(socket: &UdpSocket, timeout: Duration) -> io::Result<bool> {
    let mut fds = [PollFd::new(socket, PollFlags::IN)];
    let timeout = Timespec {
        tv_sec: timeout.as_secs().min(i64::MAX as u64) as i64,
        tv_nsec: i64::from(timeout.subsec_nanos()),
    };
    match poll(&mut fds, Some(&timeout)) {
        Ok(ready) => Ok(ready > 0),
        Err(rustix::io::Errno::INTR) => Ok(false),
        Err(error) => Err(error.into()),
    }
}

/// How long before a send's deadline the sender stops sleeping and watches the clock: more
/// than a wake-up takes on a quiet host (a few microseconds with a 1 ns timer slack), so the
/// send leaves on time; at most this much CPU is spent per interval.
const SPIN_BEFORE_SEND: Duration = Duration::from_micros(50);

/// Waits until the socket is readable or the timer fires (or a signal).
fn wait_readable_or_timer(
    socket: &UdpSocket,
    timer: &loopscope_sys::DeadlineTimer,
) -> io::Result<()> {
    let mut fds = [
        PollFd::new(socket, PollFlags::IN),
        PollFd::new(timer, PollFlags::IN),
    ];
    match poll(&mut fds, None) {
        Ok(_) | Err(rustix::io::Errno::INTR) => Ok(()),
        Err(error) => Err(error.into()),
    }
}

fn is_would_block(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::WouldBlock
}

// ---------------------------------------------------------------------------------------------
// Session-Sender

#[derive(Debug, Clone)]
/// How a Session-Sender runs.
pub struct SenderConfig {
    /// The Session-Reflector.
    pub target: SocketAddr,
    /// Packets to send (None: until stopped).
    pub count: Option<u64>,
    /// Time between packets (the schedule is start + k × interval).
    pub interval: Duration,
    /// The test packet's length in octets (at least 44).
    pub size: usize,
    /// How long to wait for replies after the last packet is sent.
    pub timeout: Duration,
    /// The timestamp format of our packets (the reflector answers in it).
    pub format: TimestampFormat,
    /// TTL, DSCP and don't-fragment of the test packets.
    pub send_options: SendOptions,
    /// Authenticated mode (RFC 8762 §4.2.2) with this key.
    pub auth: Option<StampKey>,
    /// RFC 8972 TLVs to put after the base packet (then `size` is the base packet and these).
    pub tlvs: RequestTlvs,
    /// TWAMP-Light (RFC 5357 Appendix I): 41-octet packets allowed, no TLVs.
    pub twamp_light: bool,
    /// The reflector is stateful: report loss per direction from its sequence numbers.
    pub stateful_reflector: bool,
    /// The operator says sender and reflector read one clock (two network namespaces of one
    /// host): unsynchronised Error Estimates then do not withhold the one-way figures (a
    /// negative one-way delay still does).
    pub same_clock: bool,
}

/// Where a timestamp came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TimestampSource {
    /// The kernel's software timestamp (SO_TIMESTAMPING).
    Kernel,
    /// The user-space wall clock, read next to the system call.
    UserSpace,
}

/// One reply, measured.
#[derive(Debug, Clone, Serialize)]
pub struct StampReply {
    /// The reflector's address as the reply came from it.
    pub from: String,
    /// The sender's sequence number this reply answers.
    pub seq: u32,
    /// The reflector's own sequence number (equal to `seq` for a stateless reflector).
    pub reflector_seq: u32,
    /// The reply's length in octets.
    pub bytes: usize,
    /// T4 − T1: the kernel's transmit and receive timestamps when both are there, the
    /// monotonic clock around the system calls otherwise.
    pub rtt_us: f64,
    /// T3 − T2 on the reflector's clock.
    pub residence_us: f64,
    /// (T4 − T1) − (T3 − T2).
    pub rtt_net_us: f64,
    /// T2 − T1: needs the two hosts' clocks synchronised.
    pub forward_us: f64,
    /// T4 − T3: needs the two hosts' clocks synchronised.
    pub backward_us: f64,
    /// The TTL the reflector saw on our packet.
    pub forward_ttl: u8,
    /// The TTL the reply arrived with, if the kernel told.
    pub backward_ttl: Option<u8>,
    /// The reflector's Error Estimate had S set (its clock is synchronised).
    pub reflector_synchronised: bool,
    /// The reflector's error estimate, in µs.
    pub reflector_error_us: f64,
    /// Where this reply's T1 came from.
    pub t1_source: TimestampSource,
    /// Where this reply's T4 came from.
    pub t4_source: TimestampSource,
    /// The DSCP the reflector saw on our packet (Class of Service TLV), if asked.
    pub reflector_seen_dscp: Option<u8>,
    /// The ECN the reflector saw on our packet (Class of Service TLV).
    pub reflector_seen_ecn: Option<u8>,
    /// The DSCP this reply arrived with (a Class of Service TLV asks the reflector for one).
    pub reply_dscp: Option<u8>,
    /// Location TLV: our address and port as the reflector saw them (a NAT shows here), and
    /// the address and port it was reached on.
    pub reflector_saw_source: Option<String>,
    /// The address and port the reflector says it was reached on (Location TLV).
    pub reflector_saw_destination: Option<String>,
    /// Direct Measurement TLV: S_TxC, R_RxC and R_TxC as the reply carries them.
    pub direct_measurement: Option<[u32; 3]>,
    /// A second (or later) reply to the same sequence number.
    pub duplicate: bool,
    /// Answers a sequence number below one already answered.
    pub reordered: bool,
}

impl Record for StampReply {
    fn kind(&self) -> &'static str {
        "reply"
    }
    fn write_human(&self, out: &mut dyn Write) -> io::Result<()> {
        write!(
            out,
            "{} bytes from {}: seq={} rtt={:.1} µs residence={:.1} µs fwd={:.1} µs bwd={:.1} µs ttl={}",
            self.bytes,
            self.from,
            self.seq,
            self.rtt_us,
            self.residence_us,
            self.forward_us,
            self.backward_us,
            self.forward_ttl
        )?;
        if let Some(ttl) = self.backward_ttl {
            write!(out, "/{ttl}")?;
        }
        if self.duplicate {
            write!(out, " (DUP!)")?;
        }
        if self.reordered {
            write!(out, " (reordered)")?;
        }
        writeln!(out)
    }
}

/// A packet that could not be sent.
#[derive(Debug, Clone, Serialize)]
pub struct StampSendFailed {
    /// The sequence number of the packet.
    pub seq: u32,
    /// What the send call said.
    pub error: String,
}

impl Record for StampSendFailed {
    fn kind(&self) -> &'static str {
        "send_error"
    }
    fn write_human(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(out, "seq={}: send failed: {}", self.seq, self.error)
    }
}

/// An earlier reply's figures again, with the reflector's kernel transmit timestamp for T3
/// that the next reply of the session brought (Follow-Up Telemetry, RFC 8972 §4.7).
///
/// Why an event of its own: a reply's event is printed when it arrives, before its follow-up
/// can, with the T3 the reply carried (the reflector's clock read before its send). The
/// summary uses the kernel's T3 where a follow-up gave one; were the events left as they are,
/// an operator recomputing the summary from them would find other figures and trust neither.
/// So the events keep what each reply said when it came, and this event, printed after the
/// reply it corrects, says for that packet by how much T3 moved and what its figures are now;
/// the summary is what the reply events give once these are applied.
#[derive(Debug, Clone, Serialize)]
pub struct StampT3FollowUp {
    /// The sender's sequence number of the reply corrected.
    pub seq: u32,
    /// The reflector's sequence number of it (what the Follow-Up Telemetry names).
    pub reflector_seq: u32,
    /// The kernel's transmit timestamp minus the T3 the reply carried, in µs.
    pub t3_correction_us: f64,
    /// T3 − T2 with the kernel's T3, in µs.
    pub residence_us: f64,
    /// (T4 − T1) − (T3 − T2) with the kernel's T3, in µs.
    pub rtt_net_us: f64,
    /// T4 − T3 with the kernel's T3, in µs.
    pub backward_us: f64,
}

impl Record for StampT3FollowUp {
    fn kind(&self) -> &'static str {
        "t3_follow_up"
    }
    fn write_human(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(
            out,
            "seq={}: the reflector's kernel sent it {:.1} µs after its T3: residence={:.1} µs bwd={:.1} µs",
            self.seq, self.t3_correction_us, self.residence_us, self.backward_us
        )
    }
}

/// What the sender tells while it runs.
pub enum SenderEvent<'a> {
    /// A reply, measured.
    Reply(&'a StampReply),
    /// A packet the kernel refused to send.
    SendFailed(&'a StampSendFailed),
    /// An earlier reply's figures with the kernel's T3 a follow-up brought.
    T3FollowUp(&'a StampT3FollowUp),
}

/// A reply's four timestamps in nanoseconds since the Unix epoch, all read through the
/// reflector's timestamp format (its seconds field wraps; ours must wrap alike), and its
/// round trip.
#[derive(Debug, Clone, Copy)]
struct ReplyTimes {
    t1_ns: i128,
    t2_ns: i128,
    t3_ns: i128,
    t4_ns: i128,
    rtt_us: f64,
}

impl ReplyTimes {
    /// The times of `reply`, sent at `t1` and received at `t4` by our clock. The round trip is
    /// T4 − T1, or `monotonic_rtt_us` when one of them is not the kernel's (the monotonic clock
    /// around the system calls is then the better measure).
    fn new(
        reply: &ReflectorRepr,
        t1: Duration,
        t4: Duration,
        monotonic_rtt_us: Option<f64>,
    ) -> Self {
        let format = reply.error_estimate.format();
        let ours = |at: Duration| Timestamp::from_unix(at, format).to_unix_nanos(format);
        let (t1_ns, t4_ns) = (ours(t1), ours(t4));
        ReplyTimes {
            t1_ns,
            t2_ns: reply.receive_timestamp.to_unix_nanos(format),
            t3_ns: reply.timestamp.to_unix_nanos(format),
            t4_ns,
            rtt_us: monotonic_rtt_us.unwrap_or((t4_ns - t1_ns) as f64 / 1e3),
        }
    }

    fn residence_us(&self) -> f64 {
        (self.t3_ns - self.t2_ns) as f64 / 1e3
    }

    fn rtt_net_us(&self) -> f64 {
        self.rtt_us - self.residence_us()
    }

    fn forward_us(&self) -> f64 {
        (self.t2_ns - self.t1_ns) as f64 / 1e3
    }

    fn backward_us(&self) -> f64 {
        (self.t4_ns - self.t3_ns) as f64 / 1e3
    }
}

/// A reply remembered until the next reply's Follow-Up Telemetry names it.
#[derive(Debug, Clone, Copy)]
struct AwaitingFollowUp {
    /// The sender's sequence number.
    seq: u32,
    /// Where its figures are in the run's vectors.
    index: usize,
    /// Its timestamps, T3 the one it carried.
    times: ReplyTimes,
}

/// Replies awaiting their Follow-Up Telemetry, by the reflector's sequence number (what the
/// follow-up names: a stateful reflector's own numbers, ours from a stateless one), and
/// follow-ups that came before the reply they name: a reply overtaken on the way back by the
/// next one (seen on a path with 1 ms of jitter) arrives after its follow-up.
#[derive(Debug, Default)]
struct FollowUpBook {
    awaiting: std::collections::HashMap<u32, AwaitingFollowUp>,
    early: std::collections::HashMap<u32, Timestamp>,
}

/// Replies (and early follow-ups) kept at most: a reply is normally named by the next, and
/// one whose successor was lost (or said "unavailable") is never named; a follow-up whose
/// reply was lost is never used.
const FOLLOW_UP_WINDOW: u32 = 4096;

/// Keeps `map` under [`FOLLOW_UP_WINDOW`] entries: when it grows past, only the sequence
/// numbers within half of it below `newest` stay.
fn keep_window<V>(map: &mut std::collections::HashMap<u32, V>, newest: u32) {
    if map.len() > FOLLOW_UP_WINDOW as usize {
        map.retain(|&seq, _| newest.wrapping_sub(seq) < FOLLOW_UP_WINDOW / 2);
    }
}

impl FollowUpBook {
    /// Files the figures of a first reply in `run`, applies the Follow-Up Telemetry it
    /// carried to the earlier reply it names, and a follow-up that came before it to itself;
    /// keeps it for the follow-up of the next when the session asked for them. Returns the
    /// corrected figures of the replies corrected (to be told after this reply's own event).
    fn file(
        &mut self,
        run: &mut SenderRun,
        reply: &ReflectorRepr,
        times: &ReplyTimes,
        follow_up: Option<(u32, Timestamp)>,
        wants_follow_up: bool,
    ) -> [Option<StampT3FollowUp>; 2] {
        let format = reply.error_estimate.format();
        let index = run.record(reply.sender_sequence, times);
        let named = follow_up.and_then(|follow_up| self.apply(follow_up, format, run));
        if !wants_follow_up {
            return [named, None];
        }
        self.awaiting.insert(
            reply.sequence,
            AwaitingFollowUp {
                seq: reply.sender_sequence,
                index,
                times: *times,
            },
        );
        keep_window(&mut self.awaiting, reply.sequence);
        let own = self
            .early
            .remove(&reply.sequence)
            .and_then(|kernel_t3| self.apply((reply.sequence, kernel_t3), format, run));
        [named, own]
    }

    /// Applies a follow-up (the reflector's sequence number of an earlier reply and the
    /// kernel's transmit timestamp of it, in `format`) to that reply's figures in `run`.
    /// Returns the corrected figures, or `None` when it names no reply awaiting one (it is kept
    /// for the reply it names, should that come later), or a time that cannot be that reply's
    /// send, and the reply keeps its own T3: before the T3 it carried (the reflector reads T3
    /// before its send, the kernel stamps the packet during it: a reflector whose session
    /// restarted and reused the number), or so late that the reflector would have held the
    /// packet longer than its whole round trip (a peer whose follow-up is not its kernel's
    /// transmit time; durations on two clocks compare, their offset does not matter).
    fn apply(
        &mut self,
        (reflector_seq, kernel_t3): (u32, Timestamp),
        format: TimestampFormat,
        run: &mut SenderRun,
    ) -> Option<StampT3FollowUp> {
        let Some(awaiting) = self.awaiting.remove(&reflector_seq) else {
            self.early.insert(reflector_seq, kernel_t3);
            keep_window(&mut self.early, reflector_seq);
            return None;
        };
        let kernel_t3_ns = kernel_t3.to_unix_nanos(format);
        let correction_us = (kernel_t3_ns - awaiting.times.t3_ns) as f64 / 1e3;
        run.counts.follow_ups += 1;
        run.follow_up_correction_max_us = Some(
            run.follow_up_correction_max_us
                .map_or(correction_us, |m: f64| m.max(correction_us)),
        );
        let corrected = ReplyTimes {
            t3_ns: kernel_t3_ns,
            ..awaiting.times
        };
        if correction_us < 0.0 || corrected.residence_us() > corrected.rtt_us {
            return None;
        }
        run.take_kernel_t3(awaiting.index, &corrected);
        Some(StampT3FollowUp {
            seq: awaiting.seq,
            reflector_seq,
            t3_correction_us: round3(correction_us),
            residence_us: corrected.residence_us(),
            rtt_net_us: corrected.rtt_net_us(),
            backward_us: corrected.backward_us(),
        })
    }
}

impl SenderRun {
    /// Files the figures of a first reply to `seq`; returns where they are in the vectors.
    fn record(&mut self, seq: u32, times: &ReplyTimes) -> usize {
        let index = self.rtt_us.len();
        self.rtt_us.push(times.rtt_us);
        self.rtt_net_us.push(times.rtt_net_us());
        self.residence_us.push(times.residence_us());
        self.forward_us.push(times.forward_us());
        self.backward_us.push(times.backward_us());
        self.one_way_sequence
            .push((seq, times.forward_us(), times.backward_us(), false));
        index
    }

    /// Files again, at `index` (where [`SenderRun::record`] put them), the figures that T3
    /// moves, with the kernel's T3 a follow-up brought.
    fn take_kernel_t3(&mut self, index: usize, corrected: &ReplyTimes) {
        self.residence_us[index] = corrected.residence_us();
        self.rtt_net_us[index] = corrected.rtt_net_us();
        self.backward_us[index] = corrected.backward_us();
        self.one_way_sequence[index].2 = corrected.backward_us();
        self.one_way_sequence[index].3 = true;
        self.counts.t3_from_follow_up += 1;
    }
}

#[derive(Clone, Copy)]
struct Sent {
    at: Instant,
    /// The time the packet carries (T1 as sent).
    user_t1: Duration,
    /// The kernel's transmit timestamp, once read from the error queue.
    kernel_t1: Option<Duration>,
    replies: u32,
}

/// What a sender run counts, and its summary reports under the same names: the one list of
/// these fields (JSON names are a contract).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StampCounts {
    /// Packets sent.
    pub transmitted: u64,
    /// Distinct sequence numbers answered.
    pub received: u64,
    /// Replies beyond the first to a sequence number.
    pub duplicates: u64,
    /// Replies that answered a sequence number below one already answered.
    pub reordered: u64,
    /// Datagrams that were not a STAMP reply to this session (too short, unknown sequence).
    pub foreign: u64,
    /// Replies dropped for a wrong HMAC (authenticated mode).
    pub bad_hmac: u64,
    /// Reply TLVs the reflector flagged U (not processed).
    pub tlv_unrecognized: u64,
    /// Reply TLVs flagged M (malformed).
    pub tlv_malformed: u64,
    /// Reply TLVs flagged I: the reflector found our HMAC TLV wrong.
    pub tlv_integrity_failed: u64,
    /// Follow-Up Telemetry (RFC 8972 §4.7): replies whose T3 a later reply corrected with the
    /// kernel's transmit timestamp.
    pub follow_ups: u64,
    /// Replies whose figures (backward delay, residence, round trip less residence) use the
    /// kernel's transmit timestamp a later reply's Follow-Up Telemetry carried instead of the
    /// T3 the reply itself carried. Below `follow_ups` by the follow-ups that named a time that
    /// cannot be that reply's send (before the T3 it carried, or later than its round trip
    /// allows): the reply keeps its own.
    pub t3_from_follow_up: u64,
    /// Packets the kernel refused to send.
    pub send_errors: u64,
    /// Replies whose T1 was the kernel's transmit timestamp.
    pub t1_kernel: u64,
    /// Replies whose T4 was the kernel's receive timestamp.
    pub t4_kernel: u64,
}

/// The two clocks as the Error Estimates (RFC 8762 §4.1.1) describe them, in the run and in
/// its summary alike.
#[derive(Debug, Default, Clone, Copy, PartialEq, Serialize)]
pub struct StampClocks {
    /// This host's clock is synchronised (adjtimex), as our Error Estimate said.
    pub sender_synchronised: bool,
    /// Every reply's Error Estimate had S set.
    pub reflector_synchronised: bool,
    /// Our own Error Estimate (the last sent), in µs.
    pub sender_error_us: f64,
    /// The largest Error Estimate the reflector sent, in µs.
    pub reflector_error_us: f64,
}

/// What a sender run measured.
#[derive(Debug, Default)]
pub struct SenderRun {
    /// What was counted: the summary's counts, the same fields.
    pub counts: StampCounts,
    /// The two clocks as the Error Estimates describe them.
    pub clocks: StampClocks,
    /// The Direct Measurement counters of the reply to the highest sequence number answered.
    pub direct_measurement: Option<(u32, [u32; 3])>,
    /// Timestamp Information TLV: the reflector's T2 and T3 sync source and method.
    pub timestamp_information: Option<[u8; 4]>,
    /// The largest Follow-Up correction, in µs.
    pub follow_up_correction_max_us: Option<f64>,
    /// The DSCP replies arrived with, at its lowest and highest.
    pub reply_dscp_range: Option<(u8, u8)>,
    /// Round trip (T4 − T1) of each first reply, in µs.
    pub rtt_us: Vec<f64>,
    /// Round trip less the reflector's residence, (T4 − T1) − (T3 − T2), in µs.
    pub rtt_net_us: Vec<f64>,
    /// The reflector's residence (T3 − T2), in µs.
    pub residence_us: Vec<f64>,
    /// Forward delay (T2 − T1), in µs.
    pub forward_us: Vec<f64>,
    /// Backward delay (T4 − T3), in µs.
    pub backward_us: Vec<f64>,
    /// Sequence number, forward and backward delay, and whether the backward one uses the
    /// kernel's T3 a follow-up brought, in the order the replies arrived (for IPDV and jitter).
    pub one_way_sequence: Vec<(u32, f64, f64, bool)>,
    /// The TTL the reflector saw on our packets, and the one its replies arrived with, at
    /// their lowest.
    pub forward_ttl_min: Option<u8>,
    /// The lowest TTL our replies arrived with.
    pub backward_ttl_min: Option<u8>,
    /// The reflector is on this host, so both ends read one clock.
    pub same_host: bool,
    /// The operator said both ends read one clock (`--same-clock`).
    pub same_clock: bool,
    /// The session asked for Follow-Up Telemetry (RFC 8972 §4.7).
    pub follow_up_requested: bool,
    /// The session ran in authenticated mode.
    pub authenticated: bool,
    /// The session ran as TWAMP-Light.
    pub twamp_light: bool,
    /// The reflector is stateful (the user says so): per-direction loss is computed.
    pub stateful_reflector: bool,
    /// The highest reflector sequence number seen (a stateful reflector numbers what it
    /// reflected from 0).
    pub reflector_sequence_max: Option<u32>,
    /// How long the run took.
    pub elapsed: Duration,
    /// Time from the first send to the last.
    pub send_span: Duration,
    /// How late each send was against its schedule, at worst.
    pub max_send_lag: Duration,
    /// How late each send was against its schedule, in µs, in sending order.
    pub send_lag_us: Vec<f64>,
}

/// How often the sender re-reads the clock's sync status and re-encodes its Error Estimate.
pub(crate) const ERROR_ESTIMATE_REFRESH: Duration = Duration::from_secs(1);

/// The sender's transmit timestamps: which packet each belongs to, how many were read, and
/// the largest gap seen between a packet's carried time and its kernel stamp.
struct TxStamps {
    /// The sequence numbers of the packets the kernel took, in order: SOF_TIMESTAMPING_OPT_ID
    /// numbers transmit timestamps by this order (`sent_order[id]` is the sequence number of
    /// the id-th packet the kernel took).
    sent_order: Vec<u32>,
    /// Transmit timestamps read so far: the kernel queues one per packet it took.
    collected: usize,
    largest_gap: Duration,
    /// The stamps of one error-queue read (kept: no allocation per read).
    buffer: Vec<loopscope_sys::TxTimestamp>,
}

impl TxStamps {
    /// Reads every transmit timestamp queued on the socket's error queue and files it with the
    /// packet it belongs to, a batch per system call.
    fn collect(&mut self, socket: &UdpSocket, sent: &mut [Sent]) {
        loop {
            // Packets the kernel took whose stamp is not read yet: none, no system call (the
            // sender looks between every two sends); one, a plain recvmsg; more, a batch.
            let expected = self.sent_order.len().saturating_sub(self.collected);
            if expected == 0 {
                break;
            }
            self.buffer.clear();
            let read =
                loopscope_sys::recv_tx_timestamps(socket, &mut self.buffer, expected).unwrap_or(0);
            self.collected += self.buffer.len();
            for stamp in &self.buffer {
                let Some(&sequence) = self.sent_order.get(stamp.id as usize) else {
                    continue;
                };
                if let Some(slot) = sent.get_mut(sequence as usize) {
                    slot.kernel_t1 = Some(stamp.at);
                    self.largest_gap = self.largest_gap.max(stamp.at.saturating_sub(slot.user_t1));
                }
            }
            if read < expected.min(loopscope_sys::TX_TIMESTAMP_BATCH) {
                break;
            }
        }
    }
}

/// Runs of at most this many packets get their per-packet records allocated, and the memory
/// touched, before the first send (see [`prefaulted`]): some 150 octets a packet.
const PREFAULT_MAX_PACKETS: u64 = 4_000_000;

/// A vector with room for `capacity` items whose memory is written once now. The kernel maps
/// each page of a fresh allocation at its first write (a page fault: microseconds, more in a
/// virtual machine), and a vector grown as packets go takes one every few hundred packets,
/// and is moved when it doubles, in the middle of the schedule the sender is keeping.
/// `filler` is written everywhere, and is not all zeros: a fresh allocation filled with zeros
/// may be turned into one the kernel zeroes on demand, which touches nothing.
fn prefaulted<T: Copy>(capacity: usize, filler: T) -> Vec<T> {
    let mut vector = Vec::with_capacity(capacity);
    vector
        .spare_capacity_mut()
        .fill(std::mem::MaybeUninit::new(filler));
    std::hint::black_box(&mut vector);
    vector
}

/// The receive queue asked for on the sender's socket (SO_RCVBUF), as the reflector's.
const RECEIVE_QUEUE: usize = 4 << 20;

/// Sizes the sender's receive queue for the replies of a burst. When the host delays the sender
/// (264 ms seen beside a busy build), the absolute schedule sends the packets that fell due at
/// once, and their replies arrive together with as many transmit timestamps, which the kernel
/// charges to the same receive buffer. The default (about 200 KB) overflowed then: 10 to 108 of
/// 10,000 replies at 1 ms were dropped by our own socket and reported as lost on the path. The
/// kernel caps SO_RCVBUF at net.core.rmem_max; SO_RCVBUFFORCE passes the cap where we may (root).
fn hold_a_late_burst(socket: &UdpSocket) {
    use rustix::net::sockopt;
    let _ = sockopt::set_socket_recv_buffer_size(socket, RECEIVE_QUEUE);
    // The kernel reports twice what it granted (its bookkeeping overhead, socket(7)).
    if sockopt::socket_recv_buffer_size(socket).is_ok_and(|granted| granted < 2 * RECEIVE_QUEUE) {
        let _ = sockopt::set_socket_recv_buffer_size_force(socket, RECEIVE_QUEUE);
    }
}

/// Runs a STAMP session: packets at absolute deadlines start + k × interval (a late send does
/// not push the later ones back), replies matched by the Session-Sender Sequence Number.
pub fn send(
    config: &SenderConfig,
    stop: &Arc<AtomicBool>,
    mut on_event: impl FnMut(SenderEvent<'_>),
) -> Result<SenderRun, StampError> {
    let mode = if config.auth.is_some() {
        Mode::Authenticated
    } else if config.twamp_light {
        Mode::TwampLight
    } else {
        Mode::Unauthenticated
    };
    let size_error = || StampError::Size(config.size, mode.base_len());
    if config.size < mode.base_len() + config.tlvs.len() || config.size > MAX_PACKET_LEN {
        return Err(size_error());
    }
    let ipv6 = config.target.is_ipv6();
    let bind: SocketAddr = if ipv6 {
        SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0))
    } else {
        SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, 0))
    };
    let socket = UdpSocket::bind(bind)?;
    socket.connect(config.target)?;
    socket.set_nonblocking(true)?;
    hold_a_late_burst(&socket);
    loopscope_sys::enable_datagram_metadata(&socket, ipv6, true)?;
    // Not live yet: the replies say so, one by one (t4_source), as before.
    let _ = wait_for_receive_timestamps();
    loopscope_sys::set_send_options(&socket, ipv6, config.send_options)?;

    let count = config.count.unwrap_or(u64::from(u32::MAX)).min(1 << 32);
    let interval_ns = config.interval.as_nanos();
    let planned = config
        .count
        .filter(|&count| count <= PREFAULT_MAX_PACKETS)
        .unwrap_or(0) as usize;
    let mut sent: Vec<Sent> = prefaulted(
        planned,
        Sent {
            at: Instant::now(),
            user_t1: Duration::MAX,
            kernel_t1: None,
            replies: u32::MAX,
        },
    );
    let mut tx = TxStamps {
        sent_order: prefaulted(planned, u32::MAX),
        collected: 0,
        largest_gap: Duration::ZERO,
        buffer: Vec::with_capacity(loopscope_sys::TX_TIMESTAMP_BATCH),
    };
    let mut run = SenderRun {
        clocks: StampClocks {
            reflector_synchronised: true,
            ..StampClocks::default()
        },
        same_host: config.target.ip().is_loopback(),
        same_clock: config.same_clock,
        follow_up_requested: config.tlvs.wants_follow_up(),
        authenticated: config.auth.is_some(),
        twamp_light: config.twamp_light,
        stateful_reflector: config.stateful_reflector,
        send_lag_us: prefaulted(planned, f64::NAN),
        rtt_us: prefaulted(planned, f64::NAN),
        rtt_net_us: prefaulted(planned, f64::NAN),
        residence_us: prefaulted(planned, f64::NAN),
        forward_us: prefaulted(planned, f64::NAN),
        backward_us: prefaulted(planned, f64::NAN),
        one_way_sequence: prefaulted(planned, (u32::MAX, f64::NAN, f64::NAN, false)),
        ..SenderRun::default()
    };
    let mut highest_answered: Option<u32> = None;
    let mut follow_ups = FollowUpBook::default();
    let mut buffer = vec![0u8; MAX_PACKET_LEN.max(config.size) + 1];
    let mut packet = vec![0u8; config.size];
    let mut error_estimate = clock_error_estimate(config.format, UNMEASURED_SEND_GAP);
    let mut estimate_read = Instant::now();
    SenderRepr {
        sequence: 0,
        timestamp: Timestamp::default(),
        error_estimate,
        ssid: 0,
    }
    .emit(&mut packet, mode)
    .map_err(|_| size_error())?;
    let tlv_range = mode.base_len()..mode.base_len() + config.tlvs.len();
    packet[tlv_range.clone()].copy_from_slice(config.tlvs.as_bytes());
    // Pacing: an absolute schedule on a timerfd (as BFD's speaker), woken a little before each
    // deadline, then the last microseconds spent reading replies without sleeping. A sleep's
    // wake-up is late by the timer slack (50 µs by default, asked down to 1 ns here) plus the
    // scheduler's latency, tens of microseconds on a busy host; at 100,000 packets a second
    // (10 µs apart) the sender never sleeps at all.
    let _ = rustix::thread::set_current_timer_slack(std::num::NonZeroU64::new(1));
    let timer = loopscope_sys::DeadlineTimer::new()?;
    let start = Instant::now();
    let mut last_send = start;
    let mut any_reply = false;
    let deadline_of = |k: u64| start + Duration::from_nanos((interval_ns * u128::from(k)) as u64);

    loop {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let now = Instant::now();
        let next = sent.len() as u64;
        if next < count {
            let deadline = deadline_of(next);
            if now >= deadline {
                if now - estimate_read >= ERROR_ESTIMATE_REFRESH {
                    let gap = if tx.sent_order.is_empty() || tx.largest_gap.is_zero() {
                        UNMEASURED_SEND_GAP
                    } else {
                        tx.largest_gap
                    };
                    error_estimate = clock_error_estimate(config.format, gap);
                    estimate_read = now;
                }
                let sequence = next as u32;
                let user_t1 = wall_clock();
                let mut view =
                    SenderPacket::new_checked(&mut packet[..], mode).map_err(|_| size_error())?;
                view.set_sequence(sequence);
                view.set_timestamp(Timestamp::from_unix(user_t1, config.format));
                view.set_error_estimate(error_estimate);
                config.tlvs.sign(
                    &mut packet[tlv_range.clone()],
                    sequence,
                    sequence.wrapping_add(1),
                    config.auth.as_ref(),
                );
                if let Some(key) = &config.auth {
                    key.sign(&mut packet);
                }
                let at = Instant::now();
                run.max_send_lag = run.max_send_lag.max(at - deadline);
                run.send_lag_us.push((at - deadline).as_secs_f64() * 1e6);
                sent.push(Sent {
                    at,
                    user_t1,
                    kernel_t1: None,
                    replies: 0,
                });
                last_send = at;
                match socket.send(&packet) {
                    Ok(_) => {
                        run.counts.transmitted += 1;
                        tx.sent_order.push(sequence);
                    }
                    Err(error) => {
                        run.counts.send_errors += 1;
                        on_event(SenderEvent::SendFailed(&StampSendFailed {
                            seq: sequence,
                            error: error.to_string(),
                        }));
                    }
                }
                // No wait: read whatever is already in, then send the next one that is due.
            } else if deadline - now > SPIN_BEFORE_SEND {
                timer.arm(deadline - SPIN_BEFORE_SEND)?;
                wait_readable_or_timer(&socket, &timer)?;
                timer.acknowledge()?;
            }
            // Else within SPIN_BEFORE_SEND of the deadline: read what is in and look again.
        } else {
            let all_in = run.counts.received >= run.counts.transmitted;
            let end = last_send + config.timeout;
            if all_in || now >= end {
                break;
            }
            wait_readable(&socket, end - now)?;
        }
        tx.collect(&socket, &mut sent);
        // Drain whatever arrived, but a packet that falls due goes out first: replies keep
        // their kernel T4 in the queue, while each one read before a due send (a system call
        // and its bookkeeping, a microsecond or two) would be the next send's lateness, tens
        // of microseconds after a reflector's burst. One reply is read per turn at least, so a
        // sender behind its schedule still keeps pace with its replies.
        let next_due = ((sent.len() as u64) < count).then(|| deadline_of(sent.len() as u64));
        let mut read_this_turn = 0usize;
        loop {
            if read_this_turn > 0 && next_due.is_some_and(|due| Instant::now() >= due) {
                break;
            }
            read_this_turn += 1;
            let received = match receive(&socket, &mut buffer) {
                Ok(received) => received,
                Err(error) if is_would_block(&error) => break,
                // An ICMP port unreachable from an earlier send surfaces here on a connected
                // socket: the packet is lost, which the count shows.
                Err(error) if error.kind() == io::ErrorKind::ConnectionRefused => break,
                Err(error) => return Err(error.into()),
            };
            let arrived = Instant::now();
            let user_t4 = wall_clock();
            let Ok(view) = ReflectorPacket::new_checked(&buffer[..received.len], mode) else {
                run.counts.foreign += 1;
                continue;
            };
            if let Some(key) = &config.auth
                && !key.verify(view.as_bytes())
            {
                run.counts.bad_hmac += 1;
                continue;
            }
            let reply = ReflectorRepr::parse(&view);
            let reply_tlvs = if mode == Mode::TwampLight {
                tlv::ReplyTlvs::default()
            } else {
                tlv::read_reply_tlvs(view.tail(), config.auth.as_ref(), reply.sequence)
            };
            if reply_tlvs.reply_hmac_wrong {
                run.counts.bad_hmac += 1;
                continue;
            }
            if sent
                .get(reply.sender_sequence as usize)
                .is_some_and(|slot| slot.kernel_t1.is_none())
            {
                tx.collect(&socket, &mut sent);
            }
            let Some(slot) = sent.get_mut(reply.sender_sequence as usize) else {
                run.counts.foreign += 1;
                continue;
            };
            slot.replies += 1;
            let duplicate = slot.replies > 1;
            let reordered = !duplicate
                && highest_answered.is_some_and(|highest| reply.sender_sequence < highest);
            if duplicate {
                run.counts.duplicates += 1;
            } else {
                run.counts.received += 1;
                if reordered {
                    run.counts.reordered += 1;
                }
                highest_answered = Some(
                    highest_answered
                        .map_or(reply.sender_sequence, |h| h.max(reply.sender_sequence)),
                );
            }
            any_reply = true;
            let (t1, t1_source) = match slot.kernel_t1 {
                Some(kernel) => (kernel, TimestampSource::Kernel),
                None => (slot.user_t1, TimestampSource::UserSpace),
            };
            let (t4, t4_source) = match received.kernel_rx {
                Some(kernel) => (kernel, TimestampSource::Kernel),
                None => (user_t4, TimestampSource::UserSpace),
            };
            let monotonic_rtt_us = (t1_source != TimestampSource::Kernel
                || t4_source != TimestampSource::Kernel)
                .then(|| (arrived - slot.at).as_secs_f64() * 1e6);
            let times = ReplyTimes::new(&reply, t1, t4, monotonic_rtt_us);
            let measured = StampReply {
                from: received
                    .from
                    .map_or_else(|| config.target.to_string(), |a| a.to_string()),
                seq: reply.sender_sequence,
                reflector_seq: reply.sequence,
                bytes: received.len,
                rtt_us: times.rtt_us,
                residence_us: times.residence_us(),
                rtt_net_us: times.rtt_net_us(),
                forward_us: times.forward_us(),
                backward_us: times.backward_us(),
                forward_ttl: reply.sender_ttl,
                backward_ttl: received.ttl,
                reflector_synchronised: reply.error_estimate.synchronised(),
                reflector_error_us: round3(reply.error_estimate.error_seconds() * 1e6),
                t1_source,
                t4_source,
                reflector_seen_dscp: reply_tlvs.seen_dscp,
                reflector_seen_ecn: reply_tlvs.seen_ecn,
                reply_dscp: received.tos.map(|tos| tos >> 2),
                reflector_saw_source: reply_tlvs.seen_source.map(|a| a.to_string()),
                reflector_saw_destination: reply_tlvs.seen_destination.map(|a| a.to_string()),
                direct_measurement: reply_tlvs.direct_measurement,
                duplicate,
                reordered,
            };
            let mut corrections = [None, None];
            if !duplicate {
                // The follow-up names the reflector's previous reply: its figures take the
                // kernel's T3, and an event after this reply's says so (see
                // `StampT3FollowUp`); a follow-up that overtook the reply it names is applied
                // when that reply comes. The last reply of a session is named by none and
                // keeps the T3 it carried, as does one whose follow-up says "unavailable"
                // (zeros, which `read_reply_tlvs` drops).
                corrections = follow_ups.file(
                    &mut run,
                    &reply,
                    &times,
                    reply_tlvs.follow_up,
                    config.tlvs.wants_follow_up(),
                );
                run.clocks.reflector_synchronised &= measured.reflector_synchronised;
                run.clocks.reflector_error_us = run
                    .clocks
                    .reflector_error_us
                    .max(measured.reflector_error_us);
                run.reflector_sequence_max = Some(
                    run.reflector_sequence_max
                        .map_or(reply.sequence, |m| m.max(reply.sequence)),
                );
                run.counts.tlv_unrecognized += u64::from(reply_tlvs.unrecognized);
                run.counts.tlv_malformed += u64::from(reply_tlvs.malformed);
                run.counts.tlv_integrity_failed += u64::from(reply_tlvs.integrity_failed);
                if let Some(counters) = reply_tlvs.direct_measurement
                    && run
                        .direct_measurement
                        .is_none_or(|(seq, _)| reply.sender_sequence >= seq)
                {
                    run.direct_measurement = Some((reply.sender_sequence, counters));
                }
                if reply_tlvs.timestamp_information.is_some() {
                    run.timestamp_information = reply_tlvs.timestamp_information;
                }
                if let Some(dscp) = measured.reply_dscp {
                    run.reply_dscp_range = Some(
                        run.reply_dscp_range
                            .map_or((dscp, dscp), |(low, high)| (low.min(dscp), high.max(dscp))),
                    );
                }
                run.counts.t1_kernel += u64::from(t1_source == TimestampSource::Kernel);
                run.counts.t4_kernel += u64::from(t4_source == TimestampSource::Kernel);
                run.forward_ttl_min = Some(
                    run.forward_ttl_min
                        .map_or(measured.forward_ttl, |t| t.min(measured.forward_ttl)),
                );
                if let Some(ttl) = measured.backward_ttl {
                    run.backward_ttl_min = Some(run.backward_ttl_min.map_or(ttl, |t| t.min(ttl)));
                }
            }
            on_event(SenderEvent::Reply(&measured));
            for corrected in corrections.iter().flatten() {
                on_event(SenderEvent::T3FollowUp(corrected));
            }
        }
    }
    if !any_reply {
        run.clocks.reflector_synchronised = false;
    }
    run.clocks.sender_synchronised = error_estimate.synchronised();
    run.clocks.sender_error_us = round3(error_estimate.error_seconds() * 1e6);
    run.elapsed = start.elapsed();
    run.send_span = sent
        .last()
        .map_or(Duration::ZERO, |last| last.at - sent[0].at);
    Ok(run)
}

/// Nearest-rank percentile of sorted values (`p` in 0..=100).
fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

pub(crate) fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

/// min, p50, p90, p99, p99.9 and max of one figure, in µs.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Spread {
    /// The smallest value.
    pub min: Option<f64>,
    /// The median (nearest rank).
    pub p50: Option<f64>,
    /// The 90th percentile (nearest rank).
    pub p90: Option<f64>,
    /// The 99th percentile (nearest rank).
    pub p99: Option<f64>,
    /// The 99.9th percentile (nearest rank).
    pub p999: Option<f64>,
    /// The largest value.
    pub max: Option<f64>,
}

impl Spread {
    /// The spread of `values` (all `None` when there are none).
    pub fn of(values: &[f64]) -> Self {
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let at = |p| percentile(&sorted, p).map(round3);
        Spread {
            min: at(0.0),
            p50: at(50.0),
            p90: at(90.0),
            p99: at(99.0),
            p999: at(99.9),
            max: at(100.0),
        }
    }

    /// Its six figures with their names.
    fn named(&self) -> [(&'static str, Option<f64>); 6] {
        [
            ("min", self.min),
            ("p50", self.p50),
            ("p90", self.p90),
            ("p99", self.p99),
            ("p999", self.p999),
            ("max", self.max),
        ]
    }
}

/// The spreads of a sender run, each serialised as `{figure}_{min|p50|p90|p99|p999|max}_us`
/// (`rtt_p50_us`, `forward_p99_us`, `send_lag_p99_us`...): the JSON names are a contract.
#[derive(Debug, Clone, Default)]
pub struct StampFigures {
    /// Round trip, (T4 − T1).
    pub rtt: Spread,
    /// Round trip less the reflector's residence, (T4 − T1) − (T3 − T2).
    pub rtt_net: Spread,
    /// The reflector's residence, (T3 − T2).
    pub residence: Spread,
    /// Forward delay (T2 − T1); empty when the one-way figures are withheld.
    pub forward: Spread,
    /// Backward delay (T4 − T3); empty when withheld.
    pub backward: Spread,
    /// IPDV of the forward direction (RFC 3393).
    pub forward_ipdv: Spread,
    /// IPDV of the backward direction.
    pub backward_ipdv: Spread,
    /// How late each send was against its schedule (start + k × interval).
    pub send_lag: Spread,
}

impl StampFigures {
    fn named(&self) -> [(&'static str, &Spread); 8] {
        [
            ("rtt", &self.rtt),
            ("rtt_net", &self.rtt_net),
            ("residence", &self.residence),
            ("forward", &self.forward),
            ("backward", &self.backward),
            ("forward_ipdv", &self.forward_ipdv),
            ("backward_ipdv", &self.backward_ipdv),
            ("send_lag", &self.send_lag),
        ]
    }
}

impl Serialize for StampFigures {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(8 * 6))?;
        for (figure, spread) in self.named() {
            for (name, value) in spread.named() {
                map.serialize_entry(&format!("{figure}_{name}_us"), &value)?;
            }
        }
        map.end()
    }
}

/// The final record of a sender run.
#[derive(Debug, Clone, Serialize)]
pub struct StampSummary {
    /// The reflector tested.
    pub target: String,
    /// What the run counted (JSON: `transmitted`, `received`, `duplicates`...).
    #[serde(flatten)]
    pub counts: StampCounts,
    /// The clocks' Error Estimates (JSON: `sender_synchronised`, `reflector_error_us`...).
    #[serde(flatten)]
    pub clocks: StampClocks,
    /// Packets sent and never answered.
    pub lost: u64,
    /// `lost` as a share of `transmitted`, in percent.
    pub loss_percent: f64,
    /// Loss per direction from the Direct Measurement TLV (RFC 8972 §4.5) of the last reply:
    /// forward = S_TxC − R_RxC, backward = R_TxC − replies received up to it. Null without
    /// the TLV.
    pub dm_forward_lost: Option<u64>,
    /// Backward loss from the Direct Measurement TLV (see `dm_forward_lost`).
    pub dm_backward_lost: Option<u64>,
    /// Timestamp Information TLV (RFC 8972 §4.3): the reflector's sync source and method for
    /// T2 and T3, as numbers of the IANA registries.
    pub reflector_timestamp_information: Option<[u8; 4]>,
    /// The largest Follow-Up correction, in µs.
    pub follow_up_correction_max_us: Option<f64>,
    /// The DSCP the replies arrived with, lowest and highest (null when the kernel told none).
    pub reply_dscp_min: Option<u8>,
    /// The highest DSCP a reply arrived with.
    pub reply_dscp_max: Option<u8>,
    /// Loss per direction, from a stateful reflector's own sequence numbers (RFC 8762 §4.3),
    /// over the packets up to the last one answered: of those, it reflected its highest
    /// number plus one, so forward = answered-through − reflected and backward = reflected −
    /// received.
    /// Null unless `--stateful-reflector` says the reflector numbers its replies itself (a
    /// stateless one copies ours, which says nothing).
    pub forward_lost: Option<u64>,
    /// Backward loss from the stateful reflector's numbers (see `forward_lost`).
    pub backward_lost: Option<u64>,
    /// Packets after the last one answered, none of them answered: lost, but whether on the
    /// way out or on the way back no number can tell (the reflector's count of them would
    /// arrive only in a later reply, and there is none). Counted in `lost`, in neither
    /// direction: `forward_lost + backward_lost + lost_direction_unknown == lost`, and the
    /// Direct Measurement figures, taken from the last reply, leave out the same packets.
    /// Null when no per-direction figure is given.
    pub lost_direction_unknown: Option<u64>,
    /// "unauthenticated" or "authenticated" (RFC 8762 §4.2), or "twamp-light".
    pub mode: &'static str,
    /// How long the run took, in seconds.
    pub elapsed_s: f64,
    /// (last send − first send) / (transmitted − 1).
    pub achieved_interval_us: Option<f64>,
    /// How late the latest send was against its schedule, in µs.
    pub max_send_lag_us: f64,
    /// Where T1 and T4 came from: "kernel SO_TIMESTAMPING", "user-space CLOCK_REALTIME", or
    /// "mixed" (see `t1_kernel` and `t4_kernel`).
    pub timestamp_source: &'static str,
    /// The one-way figures subtract the two hosts' wall clocks: they mean something only when
    /// the clocks are synchronised (always true on loopback, where both are this host's).
    pub one_way_requires_synchronised_clocks: bool,
    /// Whether the one-way figures are given; when not, `one_way_withheld` says why.
    pub one_way_valid: bool,
    /// Why the one-way figures are withheld, when they are.
    pub one_way_withheld: Option<String>,
    /// The operator said sender and reflector read one clock (`--same-clock`): the Error
    /// Estimates' S bits did not withhold the one-way figures (a negative delay still would).
    pub same_clock: bool,
    /// The reflector is on this host (not in the JSON: `one_way_withheld` says the outcome).
    #[serde(skip)]
    pub same_host: bool,
    /// The session asked for Follow-Up Telemetry (not in the JSON: `follow_ups` counts them).
    #[serde(skip)]
    pub follow_up_requested: bool,
    /// RFC 3550 interarrival jitter of each direction (J += (|D| − J)/16 over consecutive
    /// replies), in µs.
    pub forward_jitter_us: Option<f64>,
    /// RFC 3550 jitter of the backward direction, in µs.
    pub backward_jitter_us: Option<f64>,
    /// Lowest TTL the reflector saw on our packets, and lowest our replies arrived with.
    pub forward_ttl: Option<u8>,
    /// The lowest TTL the replies arrived with.
    pub backward_ttl: Option<u8>,
    #[serde(flatten)]
    /// The percentiles (`rtt_p50_us`, `forward_p99_us`, `send_lag_p99_us`...).
    pub figures: StampFigures,
    /// No packet was lost and every send went out.
    pub passed: bool,
}

/// IPDV (RFC 3393: the difference of one-way delays of consecutive packets, here consecutive
/// sequence numbers both answered) and RFC 3550 jitter, from (seq, forward, backward, backward
/// with the kernel's T3) in arrival order. Two backward delays are differenced only when both
/// took T3 alike: the carried T3 runs ahead of the kernel's by the reflector's send path (some
/// 10 µs on loopback), so a pair of one of each (the last reply of a follow-up session and its
/// predecessor) would show that as a variation of the path.
fn variation(sequence: &[(u32, f64, f64, bool)]) -> (Vec<f64>, Vec<f64>, Option<f64>, Option<f64>) {
    let mut by_seq = sequence.to_vec();
    by_seq.sort_by_key(|&(seq, ..)| seq);
    let mut forward_ipdv = Vec::new();
    let mut backward_ipdv = Vec::new();
    for pair in by_seq.windows(2) {
        if pair[1].0 == pair[0].0.wrapping_add(1) {
            forward_ipdv.push(pair[1].1 - pair[0].1);
            if pair[1].3 == pair[0].3 {
                backward_ipdv.push(pair[1].2 - pair[0].2);
            }
        }
    }
    type OneWay = (u32, f64, f64, bool);
    let jitter = |pick: fn(&OneWay) -> f64, comparable: fn(&OneWay, &OneWay) -> bool| {
        let mut jitter: Option<f64> = None;
        for pair in sequence.windows(2) {
            if !comparable(&pair[0], &pair[1]) {
                continue;
            }
            let d = (pick(&pair[1]) - pick(&pair[0])).abs();
            let j = jitter.unwrap_or(0.0);
            jitter = Some(j + (d - j) / 16.0);
        }
        jitter.map(round3)
    };
    (
        forward_ipdv,
        backward_ipdv,
        jitter(|x| x.1, |_, _| true),
        jitter(|x| x.2, |a, b| a.3 == b.3),
    )
}

impl StampSummary {
    /// The summary of a sender run against `target`.
    pub fn new(target: &str, run: &SenderRun) -> Self {
        let lost = run.counts.transmitted.saturating_sub(run.counts.received);
        let rtt = Spread::of(&run.rtt_us);
        let rtt_net = Spread::of(&run.rtt_net_us);
        let residence = Spread::of(&run.residence_us);
        // Clock check: a one-way delay below zero by more than both error estimates together
        // cannot be a delay; two hosts' clocks that do not both say synchronised cannot be
        // subtracted. One host's clock (a reflector on loopback) is always comparable.
        let tolerance_us = run.clocks.sender_error_us + run.clocks.reflector_error_us;
        let most_negative = run
            .forward_us
            .iter()
            .chain(&run.backward_us)
            .copied()
            .fold(f64::INFINITY, f64::min);
        let withheld = if run.counts.received == 0 {
            Some("no replies".to_owned())
        } else if most_negative < -tolerance_us {
            Some(format!(
                "a one-way delay of {most_negative:.1} µs is negative beyond the error estimates (±{tolerance_us:.1} µs): the clocks are not synchronised"
            ))
        } else if !(run.same_host
            || run.same_clock
            || (run.clocks.sender_synchronised && run.clocks.reflector_synchronised))
        {
            Some(format!(
                "the error estimates say the clocks are not synchronised (sender S={}, reflector S={})",
                u8::from(run.clocks.sender_synchronised),
                u8::from(run.clocks.reflector_synchronised)
            ))
        } else {
            None
        };
        let one_way_valid = withheld.is_none();
        let (forward_ipdv, backward_ipdv, forward_jitter, backward_jitter) =
            variation(&run.one_way_sequence);
        let keep = |values: &[f64]| {
            if one_way_valid {
                Spread::of(values)
            } else {
                Spread::default()
            }
        };
        let forward = keep(&run.forward_us);
        let backward = keep(&run.backward_us);
        // IPDV and jitter difference two delays of the same direction, so a constant clock
        // offset cancels: they stay valid when the one-way delays are withheld.
        let forward_ipdv = Spread::of(&forward_ipdv);
        let backward_ipdv = Spread::of(&backward_ipdv);
        let figures = StampFigures {
            rtt,
            rtt_net,
            residence,
            forward,
            backward,
            forward_ipdv,
            backward_ipdv,
            // How far each send was behind its schedule (start + k × interval).
            send_lag: Spread::of(&run.send_lag_us),
        };
        let timestamp_source = if run.counts.received == 0 {
            "none"
        } else if run.counts.t1_kernel == run.counts.received
            && run.counts.t4_kernel == run.counts.received
        {
            "kernel SO_TIMESTAMPING"
        } else if run.counts.t1_kernel == 0 && run.counts.t4_kernel == 0 {
            "user-space CLOCK_REALTIME"
        } else {
            "mixed"
        };
        // Sequence numbers count from 0: every packet up to the highest one answered had its
        // chance to be answered, those after it none that we could see.
        let answered_through = run
            .one_way_sequence
            .iter()
            .map(|(sequence, ..)| u64::from(*sequence) + 1)
            .max()
            .unwrap_or(0);
        let reflected = run.reflector_sequence_max.map_or(0, |m| u64::from(m) + 1);
        StampSummary {
            target: target.to_owned(),
            counts: run.counts,
            clocks: run.clocks,
            lost,
            loss_percent: if run.counts.transmitted == 0 {
                0.0
            } else {
                round3(lost as f64 * 100.0 / run.counts.transmitted as f64)
            },
            dm_forward_lost: run
                .direct_measurement
                .map(|(_, [sent, received, _])| u64::from(sent.saturating_sub(received))),
            dm_backward_lost: run.direct_measurement.map(|(seq, [_, _, reflected])| {
                let answered_up_to = run
                    .one_way_sequence
                    .iter()
                    .filter(|(answered, ..)| *answered <= seq)
                    .count() as u64;
                u64::from(reflected).saturating_sub(answered_up_to)
            }),
            reflector_timestamp_information: run.timestamp_information,
            follow_up_correction_max_us: run.follow_up_correction_max_us.map(round3),
            reply_dscp_min: run.reply_dscp_range.map(|(low, _)| low),
            reply_dscp_max: run.reply_dscp_range.map(|(_, high)| high),
            forward_lost: run
                .stateful_reflector
                .then(|| answered_through.saturating_sub(reflected)),
            backward_lost: run
                .stateful_reflector
                .then(|| reflected.saturating_sub(run.counts.received)),
            lost_direction_unknown: (run.stateful_reflector || run.direct_measurement.is_some())
                .then(|| run.counts.transmitted.saturating_sub(answered_through)),
            mode: if run.authenticated {
                "authenticated"
            } else if run.twamp_light {
                "twamp-light"
            } else {
                "unauthenticated"
            },
            elapsed_s: round3(run.elapsed.as_secs_f64()),
            achieved_interval_us: (run.counts.transmitted > 1).then(|| {
                round3(run.send_span.as_secs_f64() * 1e6 / (run.counts.transmitted - 1) as f64)
            }),
            max_send_lag_us: round3(run.max_send_lag.as_secs_f64() * 1e6),
            timestamp_source,
            one_way_requires_synchronised_clocks: true,
            one_way_valid,
            one_way_withheld: withheld,
            same_clock: run.same_clock,
            same_host: run.same_host,
            follow_up_requested: run.follow_up_requested,
            forward_jitter_us: forward_jitter,
            backward_jitter_us: backward_jitter,
            forward_ttl: run.forward_ttl_min,
            backward_ttl: run.backward_ttl_min,
            figures,
            passed: run.counts.transmitted > 0 && lost == 0 && run.counts.send_errors == 0,
        }
    }
}

fn fmt_us(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"))
}

impl Record for StampSummary {
    fn kind(&self) -> &'static str {
        "summary"
    }
    fn write_human(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(
            out,
            "--- {} STAMP statistics ({}) ---",
            self.target, self.mode
        )?;
        if self.counts.bad_hmac > 0 {
            writeln!(
                out,
                "{} replies dropped for a wrong HMAC",
                self.counts.bad_hmac
            )?;
        }
        writeln!(
            out,
            "{} packets transmitted, {} received, {} lost ({}% loss), {} duplicates, {} reordered, time {:.3} s",
            self.counts.transmitted,
            self.counts.received,
            self.lost,
            self.loss_percent,
            self.counts.duplicates,
            self.counts.reordered,
            self.elapsed_s
        )?;
        if let (Some(forward), Some(backward)) = (self.forward_lost, self.backward_lost) {
            write!(
                out,
                "lost forward {forward}, backward {backward} (the stateful reflector's numbers)"
            )?;
            match self.lost_direction_unknown {
                Some(unknown) if unknown > 0 => {
                    writeln!(out, "; {unknown} after the last answer, direction unknown")?
                }
                _ => writeln!(out)?,
            }
        }
        if let Some(interval) = self.achieved_interval_us {
            writeln!(
                out,
                "achieved interval {interval:.1} µs, worst send lag {:.1} µs",
                self.max_send_lag_us
            )?;
        }
        for (name, spread) in [
            ("rtt", &self.figures.rtt),
            ("residence", &self.figures.residence),
            ("forward*", &self.figures.forward),
            ("backward*", &self.figures.backward),
            ("fwd ipdv", &self.figures.forward_ipdv),
            ("bwd ipdv", &self.figures.backward_ipdv),
        ] {
            writeln!(
                out,
                "{name:<10} min/p50/p90/p99/p99.9/max = {}/{}/{}/{}/{}/{} µs",
                fmt_us(spread.min),
                fmt_us(spread.p50),
                fmt_us(spread.p90),
                fmt_us(spread.p99),
                fmt_us(spread.p999),
                fmt_us(spread.max)
            )?;
        }
        writeln!(
            out,
            "jitter (RFC 3550) fwd/bwd = {}/{} µs, ttl seen fwd/bwd = {}/{}",
            fmt_us(self.forward_jitter_us),
            fmt_us(self.backward_jitter_us),
            self.forward_ttl
                .map_or_else(|| "-".to_owned(), |t| t.to_string()),
            self.backward_ttl
                .map_or_else(|| "-".to_owned(), |t| t.to_string()),
        )?;
        writeln!(
            out,
            "timestamps: {} (T1 kernel {}, T4 kernel {} of {}); error estimate ours {:.1} µs (S={}), reflector's {:.1} µs (S={})",
            self.timestamp_source,
            self.counts.t1_kernel,
            self.counts.t4_kernel,
            self.counts.received,
            self.clocks.sender_error_us,
            u8::from(self.clocks.sender_synchronised),
            self.clocks.reflector_error_us,
            u8::from(self.clocks.reflector_synchronised),
        )?;
        if self.counts.t3_from_follow_up > 0 {
            writeln!(
                out,
                "T3: the reflector's kernel transmit timestamp from Follow-Up Telemetry for {} of {} replies (largest move {} µs), the time the reply carried for the rest",
                self.counts.t3_from_follow_up,
                self.counts.received,
                fmt_us(self.follow_up_correction_max_us),
            )?;
        } else if self.counts.received > 0 {
            writeln!(
                out,
                "T3: the time each reply carried (the reflector's clock read before its send){}",
                if self.follow_up_requested {
                    ""
                } else {
                    "; --tlv follow-up asks for the kernel's transmit timestamps"
                }
            )?;
        }
        let clocks_agree = self.clocks.sender_synchronised && self.clocks.reflector_synchronised;
        match &self.one_way_withheld {
            None if self.same_clock && !self.same_host && !clocks_agree => writeln!(
                out,
                "* one-way figures given because --same-clock says both ends read one clock (the error estimates say sender S={}, reflector S={})",
                u8::from(self.clocks.sender_synchronised),
                u8::from(self.clocks.reflector_synchronised)
            ),
            None => writeln!(
                out,
                "* one-way figures subtract two clocks: the error estimates (or one host's clock) say they are comparable"
            ),
            Some(reason) => writeln!(out, "* one-way figures withheld: {reason}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::percentile;

    /// The summary's JSON names are a contract: this list was written from the summary as it
    /// was before its counts, clocks and figures became shared types, and the summary must give
    /// exactly these names, its values taken from the run.
    /// A run of ten against a stateful reflector: packet 2 lost on the way out (the reflector
    /// numbered six packets of 0..=6), packet 4's reply lost on the way back, 7, 8 and 9 never
    /// answered. The last three cannot be placed: a reflector that got them would have said
    /// so only in a later reply. Before, they were all called forward loss.
    #[test]
    fn losses_after_the_last_answer_have_no_direction() {
        let mut run = super::SenderRun {
            stateful_reflector: true,
            ..Default::default()
        };
        run.counts.transmitted = 10;
        // (sender sequence, reflector sequence) of each reply received.
        let replies = [(0, 0), (1, 1), (3, 2), (5, 4), (6, 5)];
        run.counts.received = replies.len() as u64;
        run.one_way_sequence = replies
            .iter()
            .map(|&(seq, _)| (seq, 1.0, 1.0, false))
            .collect();
        run.reflector_sequence_max = replies.iter().map(|&(_, reflector)| reflector).max();
        let summary = super::StampSummary::new("udp://127.0.0.1:862", &run);
        assert_eq!(summary.lost, 5);
        assert_eq!(summary.forward_lost, Some(1));
        assert_eq!(summary.backward_lost, Some(1));
        assert_eq!(summary.lost_direction_unknown, Some(3));

        // Nothing answered: all of it unplaced.
        let mut silent = super::SenderRun {
            stateful_reflector: true,
            ..Default::default()
        };
        silent.counts.transmitted = 4;
        let summary = super::StampSummary::new("udp://127.0.0.1:862", &silent);
        assert_eq!(
            (
                summary.forward_lost,
                summary.backward_lost,
                summary.lost_direction_unknown
            ),
            (Some(0), Some(0), Some(4))
        );
    }

    #[test]
    fn the_summary_json_keeps_its_names() {
        let mut run = super::SenderRun::default();
        run.counts.transmitted = 5;
        run.counts.received = 4;
        run.counts.t1_kernel = 3;
        run.clocks.reflector_error_us = 2.5;
        run.rtt_us = vec![10.0, 20.0, 30.0, 40.0];
        let summary = super::StampSummary::new("udp://127.0.0.1:862", &run);
        let json = serde_json::to_value(&summary).unwrap();
        let object = json.as_object().unwrap();
        let mut names: Vec<&str> = object.keys().map(String::as_str).collect();
        names.sort_unstable();
        let mut expected: Vec<String> = "target transmitted received lost loss_percent \
            duplicates reordered foreign bad_hmac tlv_unrecognized tlv_malformed \
            tlv_integrity_failed dm_forward_lost dm_backward_lost reflector_timestamp_information \
            follow_ups follow_up_correction_max_us reply_dscp_min reply_dscp_max forward_lost \
            backward_lost lost_direction_unknown mode send_errors elapsed_s achieved_interval_us max_send_lag_us \
            timestamp_source t1_kernel t4_kernel one_way_requires_synchronised_clocks \
            one_way_valid one_way_withheld reflector_synchronised sender_synchronised \
            sender_error_us reflector_error_us forward_jitter_us backward_jitter_us forward_ttl \
            backward_ttl passed \
            t3_from_follow_up same_clock"
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        for figure in [
            "rtt",
            "rtt_net",
            "residence",
            "forward",
            "backward",
            "forward_ipdv",
            "backward_ipdv",
            "send_lag",
        ] {
            for name in ["min", "p50", "p90", "p99", "p999", "max"] {
                expected.push(format!("{figure}_{name}_us"));
            }
        }
        expected.sort_unstable();
        assert_eq!(names, expected);
        assert_eq!(json["transmitted"], 5);
        assert_eq!(json["received"], 4);
        assert_eq!(json["lost"], 1);
        assert_eq!(json["t1_kernel"], 3);
        assert_eq!(json["reflector_error_us"], 2.5);
        assert_eq!(json["rtt_p50_us"], 20.0);
        assert_eq!(json["rtt_max_us"], 40.0);
        assert!(json["residence_p99_us"].is_null());
    }

    /// Follow-Up Telemetry (RFC 8972 §4.7), a known answer. Four replies of a stateful
    /// reflector (its numbers 10..=13 for our 0..=3), written octet by octet from RFC 8762
    /// §4.3.1 in PTPv2 format (seconds, nanoseconds: exact), go through the sender's parsing
    /// and filing. Reply 1's follow-up says reply 10 left at 185 µs, not the 160 µs it carried;
    /// reply 2's says "unavailable" (zeros); reply 3's names a time before reply 12's carried
    /// T3, and reply 4's one that would make reply 13's residence (5870 µs) longer than its
    /// round trip (150 µs): neither can be its transmit time. The figures below are worked out by hand from
    /// the times in the table.
    #[test]
    fn a_follow_up_gives_the_earlier_reply_the_kernels_t3() {
        use loopscope_wire::stamp::{Mode, ReflectorPacket, ReflectorRepr};
        const EPOCH_S: u64 = 1_700_000_000;
        let ptp = |micros: u64| -> [u8; 8] {
            let mut octets = [0u8; 8];
            octets[..4].copy_from_slice(&(EPOCH_S as u32).to_be_bytes());
            octets[4..].copy_from_slice(&((micros * 1000) as u32).to_be_bytes());
            octets
        };
        let at = |micros: u64| {
            std::time::Duration::from_secs(EPOCH_S) + std::time::Duration::from_micros(micros)
        };
        // The follow-up a reply carries: the reflector's sequence number it names, and the
        // kernel's T3 of that reply in µs (None: zeros, "unavailable").
        type FollowUp = Option<(u32, Option<u64>)>;
        // (our seq, reflector seq, T1, T2, T3 carried, T4 in µs, follow-up).
        let table: [(u32, u32, u64, u64, u64, u64, FollowUp); 5] = [
            (0, 10, 100, 150, 160, 300, None),
            (1, 11, 1100, 1160, 1170, 1290, Some((10, Some(185)))),
            (2, 12, 2100, 2140, 2150, 2260, Some((0, None))),
            (3, 13, 3100, 3130, 3140, 3250, Some((12, Some(2140)))),
            (4, 14, 4100, 4130, 4140, 4250, Some((13, Some(9000)))),
        ];
        let mut run = super::SenderRun::default();
        let mut book = super::FollowUpBook::default();
        let mut corrections = Vec::new();
        for (seq, reflector_seq, t1, t2, t3, t4, follow_up) in table {
            let mut packet = Vec::new();
            packet.extend_from_slice(&reflector_seq.to_be_bytes());
            packet.extend_from_slice(&ptp(t3));
            packet.extend_from_slice(&[0x40, 0x01, 0, 0]); // S=0, Z=1 (PTPv2); SSID 0
            packet.extend_from_slice(&ptp(t2));
            packet.extend_from_slice(&seq.to_be_bytes());
            packet.extend_from_slice(&ptp(t1));
            packet.extend_from_slice(&[0x40, 0x01, 0, 0, 64, 0, 0, 0]); // TTL 64
            assert_eq!(packet.len(), 44);
            if let Some((named, kernel_t3)) = follow_up {
                packet.extend_from_slice(&[0, 7, 0, 16]);
                packet.extend_from_slice(&named.to_be_bytes());
                packet.extend_from_slice(&kernel_t3.map_or([0; 8], ptp));
                packet.extend_from_slice(&[u8::from(kernel_t3.is_some()) * 2, 0, 0, 0]);
            }
            let view = ReflectorPacket::new_checked(&packet[..], Mode::Unauthenticated).unwrap();
            let reply = ReflectorRepr::parse(&view);
            let tlvs = super::tlv::read_reply_tlvs(view.tail(), None, reply.sequence);
            let times = super::ReplyTimes::new(&reply, at(t1), at(t4), None);
            run.counts.received += 1;
            run.counts.transmitted += 1;
            corrections.extend(
                book.file(&mut run, &reply, &times, tlvs.follow_up, true)
                    .into_iter()
                    .flatten(),
            );
        }
        assert_eq!(corrections.len(), 1, "{corrections:?}");
        let corrected = &corrections[0];
        assert_eq!((corrected.seq, corrected.reflector_seq), (0, 10));
        // 185 − 160; 185 − 150; 300 − 185; (300 − 100) − 35.
        assert_eq!(corrected.t3_correction_us, 25.0);
        assert_eq!(corrected.residence_us, 35.0);
        assert_eq!(corrected.backward_us, 115.0);
        assert_eq!(corrected.rtt_net_us, 165.0);
        // Packet 0 with the kernel's T3; 1 (its follow-up unavailable), 2 (its follow-up
        // before its T3), 3 (its follow-up after its T4) and 4 (the last: no follow-up)
        // with the T3 each carried.
        assert_eq!(run.residence_us, [35.0, 10.0, 10.0, 10.0, 10.0]);
        assert_eq!(run.backward_us, [115.0, 120.0, 110.0, 110.0, 110.0]);
        assert_eq!(run.rtt_us, [200.0, 190.0, 160.0, 150.0, 150.0]);
        assert_eq!(run.rtt_net_us, [165.0, 180.0, 150.0, 140.0, 140.0]);
        assert_eq!(run.forward_us, [50.0, 60.0, 40.0, 30.0, 30.0]);
        let backward_in_order: Vec<f64> = run.one_way_sequence.iter().map(|x| x.2).collect();
        assert_eq!(backward_in_order, [115.0, 120.0, 110.0, 110.0, 110.0]);
        assert_eq!(run.counts.follow_ups, 3, "the two refused are counted");
        assert_eq!(run.counts.t3_from_follow_up, 1);
        // The largest move a follow-up named, refused or not: 9000 − 3140.
        assert_eq!(run.follow_up_correction_max_us, Some(5860.0));

        run.same_host = true;
        run.follow_up_requested = true;
        let summary = super::StampSummary::new("udp://127.0.0.1:862", &run);
        assert_eq!(summary.figures.residence.max, Some(35.0));
        // Backward IPDV of consecutive packets whose T3 came alike: 0 (kernel T3) and 1 (its
        // own) are not differenced; 110 − 120, 110 − 110, 110 − 110. Backward jitter over
        // the same pairs: J = 10/16, then twice J −= J/16.
        assert_eq!(summary.figures.backward_ipdv.min, Some(-10.0));
        assert_eq!(summary.figures.backward_ipdv.max, Some(0.0));
        assert_eq!(summary.backward_jitter_us, Some(0.549));
        // Forward: 60 − 50, 40 − 60, 30 − 40, 30 − 30.
        assert_eq!(summary.figures.forward_ipdv.min, Some(-20.0));
        assert_eq!(summary.figures.forward_ipdv.max, Some(10.0));
        assert_eq!(summary.figures.backward.max, Some(120.0));
        assert_eq!(summary.figures.backward.min, Some(110.0));
        let json = serde_json::to_value(&summary).unwrap();
        assert_eq!(json["t3_from_follow_up"], 1);
        assert_eq!(json["follow_ups"], 3);
        let mut human = Vec::new();
        loopscope_report::Record::write_human(&summary, &mut human).unwrap();
        let human = String::from_utf8(human).unwrap();
        assert!(
            human.contains("kernel transmit timestamp from Follow-Up Telemetry for 1 of 5"),
            "{human}"
        );
    }

    /// A reply overtaken on the way back by the next: its follow-up (in the next reply)
    /// comes first and is applied when it arrives. Replies 0, 2, 1 of a stateless reflector
    /// (its numbers ours), NTP format (the times carried rounded to 2^-32 s and back, within a
    /// nanosecond); 2 names 1 (kernel T3 at 1190 µs, carried 1170), 1 names 0 (185, carried
    /// 160).
    #[test]
    fn a_follow_up_before_its_reply_waits_for_it() {
        use loopscope_wire::stamp::{
            ErrorEstimate, Mode, ReflectorPacket, ReflectorRepr, Timestamp, TimestampFormat,
        };
        let at = |micros: u64| {
            std::time::Duration::from_secs(1_700_000_000) + std::time::Duration::from_micros(micros)
        };
        let ntp = |micros: u64| Timestamp::from_unix(at(micros), TimestampFormat::Ntp);
        let mut run = super::SenderRun::default();
        let mut book = super::FollowUpBook::default();
        let mut told = Vec::new();
        // (seq, T1, T2, T3 carried, T4, follow-up (names, kernel T3)), in arrival order.
        for (seq, t1, t2, t3, t4, follow_up) in [
            (0u32, 100, 150, 160, 300, None),
            (2, 2100, 2140, 2150, 2260, Some((1u32, 1190))),
            (1, 1100, 1160, 1170, 1290, Some((0, 185))),
        ] {
            let mut packet = vec![0u8; 44 + 20];
            ReflectorRepr {
                sequence: seq,
                timestamp: ntp(t3),
                error_estimate: ErrorEstimate::new(
                    false,
                    TimestampFormat::Ntp,
                    std::time::Duration::from_micros(1),
                ),
                ssid: 0,
                receive_timestamp: ntp(t2),
                sender_sequence: seq,
                sender_timestamp: ntp(t1),
                sender_error_estimate: ErrorEstimate::default(),
                sender_ttl: 64,
            }
            .emit(&mut packet, Mode::Unauthenticated)
            .unwrap();
            if let Some((named, kernel_t3)) = follow_up {
                packet[44..48].copy_from_slice(&[0, 7, 0, 16]);
                packet[48..52].copy_from_slice(&named.to_be_bytes());
                packet[52..60].copy_from_slice(&ntp(kernel_t3).0.to_be_bytes());
                packet[60] = 2;
            }
            let view = ReflectorPacket::new_checked(&packet[..], Mode::Unauthenticated).unwrap();
            let reply = ReflectorRepr::parse(&view);
            let tlvs = super::tlv::read_reply_tlvs(view.tail(), None, reply.sequence);
            let times = super::ReplyTimes::new(&reply, at(t1), at(t4), None);
            let filed = book.file(&mut run, &reply, &times, tlvs.follow_up, true);
            told.extend(filed.into_iter().flatten().map(|c| (seq, c)));
        }
        // Arrived as reply 1: its follow-up corrects 0, and the early one corrects 1 itself.
        let corrected: Vec<(u32, u32, f64)> = told
            .iter()
            .map(|(arrived, c)| (*arrived, c.seq, c.t3_correction_us))
            .collect();
        assert_eq!(corrected, [(1, 0, 25.0), (1, 1, 20.0)]);
        let near = |values: &[f64], expected: [f64; 3]| {
            values
                .iter()
                .zip(expected)
                .all(|(value, expected)| (value - expected).abs() < 0.002)
        };
        // In arrival order 0, 2, 1: 300 − 185, 2260 − 2150 (the last), 1290 − 1190.
        assert!(
            near(&run.backward_us, [115.0, 110.0, 100.0]),
            "{:?}",
            run.backward_us
        );
        // 185 − 150, 2150 − 2140, 1190 − 1160.
        assert!(
            near(&run.residence_us, [35.0, 10.0, 30.0]),
            "{:?}",
            run.residence_us
        );
        assert_eq!(run.counts.t3_from_follow_up, 2);
    }

    /// `--same-clock`: unsynchronised Error Estimates off loopback withhold the one-way
    /// figures unless the operator says both ends read one clock; a negative delay beyond the
    /// error estimates withholds them whatever the operator says.
    #[test]
    fn same_clock_overrides_the_s_bits_but_not_a_negative_delay() {
        let run_with = |backward: f64, same_clock: bool| {
            let mut run = super::SenderRun {
                same_clock,
                ..Default::default()
            };
            run.counts.transmitted = 1;
            run.counts.received = 1;
            run.clocks.sender_error_us = 1.0;
            run.clocks.reflector_error_us = 1.0;
            run.rtt_us = vec![100.0];
            run.forward_us = vec![50.0];
            run.backward_us = vec![backward];
            run.one_way_sequence = vec![(0, 50.0, backward, false)];
            super::StampSummary::new("udp://10.0.0.1:862", &run)
        };
        let withheld = run_with(50.0, false);
        assert!(!withheld.one_way_valid);
        assert_eq!(withheld.figures.backward.p50, None);
        let stated = run_with(50.0, true);
        assert!(stated.one_way_valid, "{:?}", stated.one_way_withheld);
        assert_eq!(stated.figures.backward.p50, Some(50.0));
        assert_eq!(stated.figures.forward.p50, Some(50.0));
        let mut human = Vec::new();
        loopscope_report::Record::write_human(&stated, &mut human).unwrap();
        let human = String::from_utf8(human).unwrap();
        assert!(human.contains("given because --same-clock"), "{human}");
        let negative = run_with(-5.0, true);
        assert!(!negative.one_way_valid);
        assert!(
            negative
                .one_way_withheld
                .as_deref()
                .is_some_and(|reason| reason.contains("negative")),
            "{:?}",
            negative.one_way_withheld
        );
    }

    #[test]
    fn nearest_rank_percentiles() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&values, 50.0), Some(50.0));
        assert_eq!(percentile(&values, 99.0), Some(99.0));
        assert_eq!(percentile(&values, 99.9), Some(100.0));
        assert_eq!(percentile(&values, 0.0), Some(1.0));
        assert_eq!(percentile(&[], 50.0), None);
    }
}
