//! The STAMP Session-Reflector (RFC 8762 §4.3) as a responder of the one reflector
//! (`loopscope-link::reflector`): the reflector's loop receives, refuses (reserved source ports,
//! echo loops, the per-source rate limit), caps the reply at the request's length and counts;
//! [`StampResponder`] only turns a Session-Sender packet into a Session-Reflector packet.
//!
//! The reply carries T2 (the kernel's receive timestamp), T3 (the clock read just before the
//! send: the loop seals each reply of a batch right before its sendmmsg, see
//! [`StampResponder::seal`](DatagramResponder::seal)), the sender's TTL as received, the sender's fields copied, and the request's TLVs
//! answered (RFC 8972, see [`super::tlv`]). Stateless, or stateful (per-session sequence
//! numbers from 0, sessions keyed by source address and SSID, restarted after a timeout).

use std::collections::{HashMap, VecDeque};
use std::io::{self, Write};
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use loopscope_link::reflector::{Answer, DatagramCount, DatagramResponder, Request};
use loopscope_report::Record;
use loopscope_wire::stamp::{
    ErrorEstimate, Mode, ReflectorPacket, ReflectorRepr, SenderPacket, SenderRepr, Timestamp,
};
use serde::Serialize;

use super::tlv::{self, SessionFacts};
use super::{ERROR_ESTIMATE_REFRESH, REFLECTOR_TTL, StampKey, UNMEASURED_SEND_GAP, wall_clock};

/// How a STAMP Session-Reflector answers.
#[derive(Debug, Clone, Default)]
pub struct ReflectorConfig {
    /// Answer packets from sources other than loopback.
    pub allow_remote: bool,
    /// Drop every Nth valid packet instead of answering it (loss injection for tests).
    pub drop_every: Option<u64>,
    /// Authenticated mode (RFC 8762 §4.3.2) with this key: requests must carry its HMAC.
    pub auth: Option<StampKey>,
    /// TWAMP-Light (RFC 5357 Appendix I): requests of 41 octets and more are answered, and
    /// what follows the base packet is padding (zeros in the reply), not TLVs.
    pub twamp_light: bool,
    /// Stateful (RFC 8762 §4.3): each session (source address and SSID) gets the reflector's
    /// own sequence numbers from 0, so the sender can tell forward from backward loss; a
    /// session silent for this long starts again from 0.
    pub stateful_timeout: Option<Duration>,
    /// Requests longer than this are counted and dropped (None: [`DEFAULT_MAX_REQUEST_LEN`]).
    pub max_request_len: Option<usize>,
}

/// The longest request a reflector answers unless told otherwise: a jumbo frame's 9000-octet
/// IP payload. Longer ones are not STAMP traffic a network path carries whole.
pub const DEFAULT_MAX_REQUEST_LEN: usize = 9000;

impl ReflectorConfig {
    fn mode(&self) -> Mode {
        if self.auth.is_some() {
            Mode::Authenticated
        } else if self.twamp_light {
            Mode::TwampLight
        } else {
            Mode::Unauthenticated
        }
    }
}

/// How long a session of a stateless reflector is remembered for RFC 8972's per-session
/// answers (Direct Measurement counters, Follow-Up Telemetry).
const STATELESS_SESSION_MEMORY: Duration = Duration::from_secs(60);
/// Sessions remembered at most; silent ones are forgotten first.
const MAX_SESSIONS: usize = 65_536;

/// One session's state: RFC 8762 §4.3's sequence numbers and RFC 8972's counters.
#[derive(Debug, Clone, Copy)]
struct Session {
    /// The reflector's next sequence number (stateful mode).
    next_sequence: u32,
    /// Test packets received (R_RxC, RFC 8972 §4.5) and replies sent (R_TxC).
    received: u32,
    transmitted: u32,
    /// The reflector's sequence number of the last reply sent, and its kernel transmit
    /// timestamp once read (Follow-Up Telemetry, RFC 8972 §4.7).
    last_reply: Option<(u32, Option<Duration>)>,
    seen: Instant,
}

/// The sessions a reflector knows, keyed by source address and SSID (RFC 8972 §3).
#[derive(Default)]
struct Sessions {
    sessions: HashMap<(SocketAddr, u16), Session>,
}

impl Sessions {
    /// The session of `key`, started afresh when it was silent for `timeout`.
    fn get(&mut self, key: (SocketAddr, u16), timeout: Duration, now: Instant) -> &mut Session {
        if self.sessions.len() >= MAX_SESSIONS && !self.sessions.contains_key(&key) {
            self.sessions
                .retain(|_, session| now.duration_since(session.seen) < timeout);
            if self.sessions.len() >= MAX_SESSIONS {
                self.sessions.clear();
            }
        }
        let fresh = Session {
            next_sequence: 0,
            received: 0,
            transmitted: 0,
            last_reply: None,
            seen: now,
        };
        let session = self.sessions.entry(key).or_insert(fresh);
        if now.duration_since(session.seen) >= timeout {
            *session = fresh;
        }
        session.seen = now;
        session
    }
}

/// What a STAMP responder counted beyond the reflector's own counts.
#[derive(Debug, Default)]
pub struct StampCounters {
    too_short: AtomicU64,
    too_long: AtomicU64,
    refused_remote: AtomicU64,
    dropped_on_purpose: AtomicU64,
    bad_hmac: AtomicU64,
    tlv_processed: AtomicU64,
    tlv_unrecognized: AtomicU64,
    tlv_malformed: AtomicU64,
    tlv_integrity_failed: AtomicU64,
    t2_kernel: AtomicU64,
    t3_gap_max_ns: AtomicU64,
    dscp_from_cos: AtomicU64,
    follow_up_unavailable: AtomicU64,
}

fn add(counter: &AtomicU64, value: u64) {
    if value > 0 {
        counter.fetch_add(value, Ordering::Relaxed);
    }
}

/// What a STAMP reflector did: the reflector loop's counts and the responder's.
#[derive(Debug, Default, Clone, Serialize)]
pub struct ReflectorSummary {
    /// Where it listened.
    pub endpoint: String,
    /// Datagrams received.
    pub received: u64,
    /// Replies sent.
    pub reflected: u64,
    /// Requests shorter than the mode's base packet (or a reply that could not be built).
    pub too_short: u64,
    /// Requests longer than the longest answered (9000 octets unless configured).
    pub too_long: u64,
    /// Refused for their source: reserved or zero source port, the reflector's own port, or
    /// not loopback without `allow_remote`.
    pub refused_source: u64,
    /// Refused by the per-source rate limit.
    pub refused_rate_limit: u64,
    /// Refused for being a reply of ours coming back (another reflector: a loop).
    pub refused_echo_loop: u64,
    /// Dropped by `drop_every` (loss injection).
    pub dropped_on_purpose: u64,
    /// Replies the kernel refused to send.
    pub send_errors: u64,
    /// Requests dropped for a wrong HMAC (authenticated mode).
    pub bad_hmac: u64,
    /// RFC 8972 TLVs answered, returned with the U flag (not processed here), with the M flag
    /// (malformed), with the I flag (an HMAC TLV that did not verify).
    pub tlv_processed: u64,
    /// TLVs returned with the U flag.
    pub tlv_unrecognized: u64,
    /// TLVs returned with the M flag.
    pub tlv_malformed: u64,
    /// HMAC TLVs returned with the I flag.
    pub tlv_integrity_failed: u64,
    /// Replies sent with the DSCP a Class of Service TLV asked for (RFC 8972 §4.4).
    pub dscp_from_cos: u64,
    /// Packets whose T2 is the kernel's receive timestamp (the rest: user-space clock).
    pub t2_kernel: u64,
    /// The largest gap seen between a reply's T3 and the kernel's transmit timestamp of it.
    pub t3_gap_max_us: f64,
    /// Replies whose Follow-Up Telemetry TLV (RFC 8972 §4.7) went out zeroed ("unavailable")
    /// although their session had sent a reply before: its kernel transmit timestamp was not
    /// on the error queue when they left. A session's first reply, with none before it, is
    /// not counted.
    pub follow_up_unavailable: u64,
}

impl ReflectorSummary {
    /// The summary of one STAMP reflector from the loop's counts and the responder's.
    pub fn new(endpoint: &str, loop_counts: DatagramCount, stamp: &StampCounters) -> Self {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ReflectorSummary {
            endpoint: endpoint.to_owned(),
            received: loop_counts.received,
            reflected: loop_counts.answered,
            too_short: load(&stamp.too_short),
            too_long: load(&stamp.too_long),
            refused_source: loop_counts.refused_source_port + load(&stamp.refused_remote),
            refused_rate_limit: loop_counts.refused_rate_limit,
            refused_echo_loop: loop_counts.refused_echo_loop,
            dropped_on_purpose: load(&stamp.dropped_on_purpose),
            send_errors: loop_counts.send_errors,
            bad_hmac: load(&stamp.bad_hmac),
            tlv_processed: load(&stamp.tlv_processed),
            tlv_unrecognized: load(&stamp.tlv_unrecognized),
            tlv_malformed: load(&stamp.tlv_malformed),
            tlv_integrity_failed: load(&stamp.tlv_integrity_failed),
            dscp_from_cos: load(&stamp.dscp_from_cos),
            t2_kernel: load(&stamp.t2_kernel),
            t3_gap_max_us: super::round3(load(&stamp.t3_gap_max_ns) as f64 / 1e3),
            follow_up_unavailable: load(&stamp.follow_up_unavailable),
        }
    }
}

impl Record for ReflectorSummary {
    fn kind(&self) -> &'static str {
        "summary"
    }
    fn write_human(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(
            out,
            "STAMP reflector {}: {} received, {} reflected, {} too short, {} too long, {} wrong HMAC, {} refused by source, {} by rate limit, {} echo loops, {} dropped on purpose, {} send errors; TLVs {} answered, {} U, {} M, {} I; T2 from the kernel for {}, T3 at most {:.1} µs before the kernel's transmit timestamp; {} follow-ups without their previous reply's transmit timestamp",
            self.endpoint,
            self.received,
            self.reflected,
            self.too_short,
            self.too_long,
            self.bad_hmac,
            self.refused_source,
            self.refused_rate_limit,
            self.refused_echo_loop,
            self.dropped_on_purpose,
            self.send_errors,
            self.tlv_processed,
            self.tlv_unrecognized,
            self.tlv_malformed,
            self.tlv_integrity_failed,
            self.t2_kernel,
            self.t3_gap_max_us,
            self.follow_up_unavailable
        )
    }
}

/// A reply built but for T3 and the HMAC over it (written by `seal`, just before the send).
#[derive(Debug, Clone, Copy)]
struct Unsealed {
    format: loopscope_wire::stamp::TimestampFormat,
    session: (SocketAddr, u16),
    sequence: u32,
    /// Where its Follow-Up Telemetry value and its HMAC TLV are in the reply's tail (after the
    /// base packet), when it has them (the follow-up is written at `seal`, the HMAC TLV again
    /// over it).
    follow_up_at: Option<usize>,
    hmac_at: Option<usize>,
}

/// The STAMP Session-Reflector, plugged into `loopscope-link`'s reflector.
pub struct StampResponder {
    config: ReflectorConfig,
    mode: Mode,
    counters: Arc<StampCounters>,
    sessions: Sessions,
    valid: u64,
    /// What T3 is worth: the clock's state, refreshed every second, and the gap between the
    /// time a reply carries and the kernel's transmit timestamp of it, measured as we go.
    clock: Option<loopscope_sys::ClockSync>,
    clock_read: Instant,
    t3_gap: Duration,
    /// Replies the kernel took, oldest first: (the kernel's OPT_ID number, the T3 it carries,
    /// its session and the reflector's sequence number).
    in_flight: VecDeque<(u32, Duration, (SocketAddr, u16), u32)>,
    /// Replies answered but not yet sealed (T3 unwritten), in the loop's order.
    unsealed: VecDeque<Unsealed>,
    /// Replies sealed and being sent: what to file in `in_flight` once the send went through.
    sealed: VecDeque<(Duration, (SocketAddr, u16), u32)>,
    sent_ok: u32,
    /// The transmit timestamps of one error-queue read (kept: no allocation per read).
    tx_stamps: Vec<loopscope_sys::TxTimestamp>,
    /// The serving socket (a second descriptor of it), to read transmit timestamps off its
    /// error queue when sealing a reply whose Follow-Up Telemetry needs one not yet read.
    error_queue: Option<UdpSocket>,
}

impl StampResponder {
    /// A responder answering as `config` says.
    pub fn new(config: ReflectorConfig) -> Self {
        StampResponder {
            mode: config.mode(),
            config,
            counters: Arc::new(StampCounters::default()),
            sessions: Sessions::default(),
            valid: 0,
            clock: loopscope_sys::clock_sync().ok(),
            clock_read: Instant::now(),
            t3_gap: Duration::ZERO,
            in_flight: VecDeque::new(),
            unsealed: VecDeque::new(),
            sealed: VecDeque::new(),
            sent_ok: 0,
            tx_stamps: Vec::with_capacity(loopscope_sys::TX_TIMESTAMP_BATCH),
            error_queue: None,
        }
    }

    /// Its counters, read for the summary while or after it serves.
    pub fn counters(&self) -> Arc<StampCounters> {
        Arc::clone(&self.counters)
    }

    fn error_estimate(&mut self, format: loopscope_wire::stamp::TimestampFormat) -> ErrorEstimate {
        if self.clock_read.elapsed() >= ERROR_ESTIMATE_REFRESH {
            self.clock = loopscope_sys::clock_sync().ok();
            self.clock_read = Instant::now();
        }
        let gap = if self.t3_gap.is_zero() {
            UNMEASURED_SEND_GAP
        } else {
            self.t3_gap
        };
        match self.clock {
            Some(sync) => ErrorEstimate::new(
                sync.synchronised,
                format,
                sync.estimated_error + sync.resolution + gap,
            ),
            None => ErrorEstimate::new(false, format, Duration::from_secs(1)),
        }
    }

    /// Takes back the count of a reply that did not leave.
    fn unsend(&mut self, key: (SocketAddr, u16)) {
        if let Some(session) = self.sessions.sessions.get_mut(&key) {
            session.transmitted = session.transmitted.wrapping_sub(1);
        }
    }

    /// Files the transmit timestamps the kernel queued: T3's gap, and each session's last
    /// reply for Follow-Up Telemetry. A batch of them per system call (recvmmsg on the error
    /// queue): under load the kernel queues one per reply.
    fn collect_tx_timestamps(&mut self, socket: &UdpSocket) {
        let mut stamps = std::mem::take(&mut self.tx_stamps);
        loop {
            stamps.clear();
            let expected = self.in_flight.len().max(1);
            let read =
                loopscope_sys::recv_tx_timestamps(socket, &mut stamps, expected).unwrap_or(0);
            for stamp in &stamps {
                self.file_tx_timestamp(*stamp);
            }
            // A short batch emptied the queue; and once every reply sent has its stamp the
            // queue holds no more (one system call saved).
            if read < expected.min(loopscope_sys::TX_TIMESTAMP_BATCH) || self.in_flight.is_empty() {
                break;
            }
        }
        self.tx_stamps = stamps;
    }

    /// Writes a reply's Follow-Up Telemetry (RFC 8972 §4.7) as it is about to leave: the
    /// session's last reply sent, and its kernel transmit timestamp.
    ///
    /// Why here and so: `respond` runs for a whole batch before any of it is sent, so a request
    /// whose predecessor in the session came in the same batch would name an older reply, and
    /// one whose predecessor's stamp has not been read yet would carry zeros. The loop seals
    /// each reply just before its send, and holds one back until the replies of its session
    /// sealed before it have left (`seal_waits_for_sent`: one more sendmmsg, only for
    /// follow-up requests of one session in one batch; other traffic keeps one system call per
    /// batch). The stamp of a reply the kernel has taken is then normally on the error queue
    /// already (the software transmit timestamp is taken by the driver inside the send on
    /// loopback and veth), so one non-blocking read gets it. We do not wait for a stamp still
    /// missing (a queueing discipline or a driver that stamps later, an error queue full under
    /// load): that would stall every session behind one, and zeros stay the honest answer the
    /// RFC allows for "unavailable"; never a stamp of another reply.
    fn answer_follow_up(&mut self, unsealed: &Unsealed, at: usize, reply: &mut [u8]) {
        let pending = |sessions: &Sessions| {
            sessions
                .sessions
                .get(&unsealed.session)
                .is_some_and(|session| matches!(session.last_reply, Some((_, None))))
        };
        if pending(&self.sessions)
            && !self.in_flight.is_empty()
            && let Some(socket) = self.error_queue.take()
        {
            self.collect_tx_timestamps(&socket);
            self.error_queue = Some(socket);
        }
        let last_reply = self
            .sessions
            .sessions
            .get(&unsealed.session)
            .and_then(|session| session.last_reply);
        if matches!(last_reply, Some((_, None))) {
            add(&self.counters.follow_up_unavailable, 1);
        }
        let base = self.mode.base_len();
        let hmac = match (&self.config.auth, unsealed.hmac_at) {
            (Some(key), Some(hmac_at)) => Some((key, hmac_at, unsealed.sequence)),
            _ => None,
        };
        if let Some(tail) = reply.get_mut(base..) {
            tlv::answer_follow_up(tail, at, last_reply, unsealed.format, hmac);
        }
    }

    fn file_tx_timestamp(&mut self, stamp: loopscope_sys::TxTimestamp) {
        while let Some(&(id, carried, key, sequence)) = self.in_flight.front() {
            if id.wrapping_sub(stamp.id) as i32 > 0 {
                break;
            }
            self.in_flight.pop_front();
            if id == stamp.id {
                self.t3_gap = self.t3_gap.max(stamp.at.saturating_sub(carried));
                self.counters
                    .t3_gap_max_ns
                    .fetch_max(self.t3_gap.as_nanos() as u64, Ordering::Relaxed);
                if let Some(session) = self.sessions.sessions.get_mut(&key)
                    && let Some((last, at)) = session.last_reply.as_mut()
                    && *last == sequence
                {
                    *at = Some(stamp.at);
                }
            }
        }
    }
}

impl DatagramResponder for StampResponder {
    fn prepare(&mut self, socket: &UdpSocket) -> io::Result<()> {
        let ipv6 = socket.local_addr()?.is_ipv6();
        loopscope_sys::enable_datagram_metadata(socket, ipv6, true)?;
        self.error_queue = Some(socket.try_clone()?);
        // Ready only once T2 can come from the kernel (or after a bounded wait; each packet
        // still counts whether its T2 did).
        let _ = super::wait_for_receive_timestamps();
        loopscope_sys::set_send_options(
            socket,
            ipv6,
            loopscope_sys::SendOptions {
                ttl: Some(REFLECTOR_TTL),
                ..loopscope_sys::SendOptions::default()
            },
        )
    }

    fn respond(&mut self, request: &Request<'_>, reply: &mut [u8]) -> Answer {
        let counters = Arc::clone(&self.counters);
        let t2 = match request.kernel_rx {
            Some(kernel) => {
                add(&counters.t2_kernel, 1);
                kernel
            }
            None => wall_clock(),
        };
        if !self.config.allow_remote && !request.source.ip().is_loopback() {
            add(&counters.refused_remote, 1);
            return Answer::Silent;
        }
        let mode = self.mode;
        if request.bytes.len()
            > self
                .config
                .max_request_len
                .unwrap_or(DEFAULT_MAX_REQUEST_LEN)
        {
            add(&counters.too_long, 1);
            return Answer::Silent;
        }
        let Ok(view) = SenderPacket::new_checked(request.bytes, mode) else {
            add(&counters.too_short, 1);
            return Answer::Silent;
        };
        if let Some(key) = &self.config.auth
            && !key.verify(view.as_bytes())
        {
            add(&counters.bad_hmac, 1);
            return Answer::Silent;
        }
        let sender = SenderRepr::parse(&view);
        self.valid += 1;
        if self
            .config
            .drop_every
            .is_some_and(|n| n > 0 && self.valid.is_multiple_of(n))
        {
            add(&counters.dropped_on_purpose, 1);
            return Answer::Silent;
        }
        // Answer in the sender's timestamp format, so both ends read each other's stamps.
        let format = sender.error_estimate.format();
        let error_estimate = self.error_estimate(format);
        let now = Instant::now();
        let key = (request.source, sender.ssid);
        let timeout = self
            .config
            .stateful_timeout
            .unwrap_or(STATELESS_SESSION_MEMORY);
        let session = self.sessions.get(key, timeout, now);
        session.received = session.received.wrapping_add(1);
        // Counted when the reply is made, not when it has left: the loop answers a batch
        // before it sends it, and the next request of this session in the same batch counts
        // this reply too (taken back if the send fails).
        session.transmitted = session.transmitted.wrapping_add(1);
        let sequence = match self.config.stateful_timeout {
            Some(_) => {
                let own = session.next_sequence;
                session.next_sequence = own.wrapping_add(1);
                own
            }
            None => sender.sequence,
        };
        let facts = SessionFacts {
            received_tos: request.tos,
            source: request.source,
            destination: request.destination,
            received: session.received,
            transmitted: session.transmitted,
            last_reply: session.last_reply,
            synchronised: self.clock.is_some_and(|sync| sync.synchronised),
            t2_from_kernel: request.kernel_rx.is_some(),
            format,
        };
        let repr = ReflectorRepr {
            sequence,
            timestamp: Timestamp::default(),
            error_estimate,
            ssid: sender.ssid,
            receive_timestamp: Timestamp::from_unix(t2, format),
            sender_sequence: sender.sequence,
            sender_timestamp: sender.timestamp,
            sender_error_estimate: sender.error_estimate,
            sender_ttl: request.ttl.unwrap_or(0),
        };
        // The reply is as long as the request (no amplification); its tail is the request's
        // TLVs answered (RFC 8972), or its zero padding (TWAMP-Light: always padding).
        let base = mode.base_len();
        let outcome = if mode == Mode::TwampLight {
            reply[base..].fill(0);
            tlv::TlvOutcome::default()
        } else {
            tlv::reflect_tlvs(
                &request.bytes[base..],
                &mut reply[base..],
                &facts,
                self.config.auth.as_ref(),
                (sender.sequence, sequence),
            )
        };
        add(&counters.tlv_processed, u64::from(outcome.processed));
        add(&counters.tlv_unrecognized, u64::from(outcome.unrecognized));
        add(&counters.tlv_malformed, u64::from(outcome.malformed));
        add(
            &counters.tlv_integrity_failed,
            u64::from(outcome.integrity_failed),
        );
        if repr.emit(reply, mode).is_err()
            || ReflectorPacket::new_checked(&mut *reply, mode).is_err()
        {
            add(&counters.too_short, 1);
            self.unsend(key);
            return Answer::Silent;
        }
        self.unsealed.push_back(Unsealed {
            format,
            session: key,
            sequence,
            follow_up_at: outcome.follow_up_at,
            hmac_at: outcome.hmac_at,
        });
        if outcome.requested_dscp.is_some() {
            add(&counters.dscp_from_cos, 1);
        }
        Answer::Reply {
            len: reply.len(),
            dscp: outcome.requested_dscp,
        }
    }

    /// T3 is the clock read here, when the loop is about to send this reply: the loop answers
    /// a batch of requests, then seals each reply and sends the run of them with one sendmmsg,
    /// so T3 precedes the reply's own departure by at most the sealing of the replies after it
    /// and the sendmmsg reaching it. The kernel still stamps each datagram it sends with its
    /// own transmit timestamp (SOF_TIMESTAMPING_OPT_ID numbers them one by one, sendmmsg or
    /// not); `collect_tx_timestamps` matches each to the T3 its reply carries, and the largest
    /// gap is reported (`t3_gap_max_us`) and added to the error estimate.
    fn seal(&mut self, reply: &mut [u8]) {
        let Some(unsealed) = self.unsealed.pop_front() else {
            return;
        };
        if let Some(at) = unsealed.follow_up_at {
            self.answer_follow_up(&unsealed, at, reply);
        }
        let t3 = wall_clock();
        if let Ok(mut out) = ReflectorPacket::new_checked(&mut *reply, self.mode) {
            out.set_timestamp(Timestamp::from_unix(t3, unsealed.format));
        }
        if let Some(key) = &self.config.auth {
            key.sign(reply);
        }
        self.sealed
            .push_back((t3, unsealed.session, unsealed.sequence));
    }

    /// A reply with Follow-Up Telemetry whose session has a reply sealed before it in this
    /// batch waits for that one to leave, so that it can carry its transmit timestamp (see
    /// [`StampResponder::answer_follow_up`]).
    fn seal_waits_for_sent(&self) -> bool {
        match self.unsealed.front() {
            Some(next) if next.follow_up_at.is_some() => self
                .sealed
                .iter()
                .any(|&(_, session, _)| session == next.session),
            _ => false,
        }
    }

    fn after_send(&mut self, _socket: &UdpSocket, sent: bool) {
        let Some((t3, key, sequence)) = self.sealed.pop_front() else {
            return;
        };
        if !sent {
            self.unsend(key);
        } else {
            if let Some(session) = self.sessions.sessions.get_mut(&key) {
                session.last_reply = Some((sequence, None));
            }
            if self.in_flight.len() >= 4096 {
                self.in_flight.pop_front();
            }
            self.in_flight.push_back((self.sent_ok, t3, key, sequence));
            self.sent_ok = self.sent_ok.wrapping_add(1);
        }
    }

    /// Reading the error queue is a system call: once per batch sent, for all its replies
    /// (one recvmsg after a lone reply, so a follow-up has its timestamp at once; one recvmmsg
    /// after a full batch), and whenever the socket goes idle.
    fn after_batch(&mut self, socket: &UdpSocket) {
        if !self.in_flight.is_empty() {
            self.collect_tx_timestamps(socket);
        }
    }

    fn idle(&mut self, socket: &UdpSocket) {
        if !self.in_flight.is_empty() {
            self.collect_tx_timestamps(socket);
        }
    }
}

/// One reflector of a configuration file (see [`parse_reflector_file`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReflectorEntry {
    /// Where it listens, as written (`udp://ADDR[:PORT]`).
    pub listen: String,
    /// Stateful, with this session timeout.
    pub stateful_timeout: Option<Duration>,
    /// Authenticated mode with the key in this file.
    pub auth: Option<std::path::PathBuf>,
    /// TWAMP-Light.
    pub twamp_light: bool,
    /// Answer sources other than loopback.
    pub allow_remote: bool,
}

/// Why a reflector file was refused: one line, naming the line it is on when known.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ReflectorFileError(String);

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FileEntry {
    listen: toml::Spanned<String>,
    #[serde(default)]
    stateful: bool,
    session_timeout: Option<toml::Spanned<String>>,
    auth: Option<std::path::PathBuf>,
    #[serde(default)]
    twamp_light: bool,
    #[serde(default)]
    allow_remote: bool,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    stamp: Vec<FileEntry>,
}

/// The session timeout of a stateful reflector unless one is given.
pub const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_secs(60);

/// Reads a file of STAMP reflectors, one `[[stamp]]` table each:
///
/// ```toml
/// [[stamp]]
/// listen = "udp://127.0.0.1:862"
///
/// [[stamp]]
/// listen = "udp://[::1]:8620"
/// stateful = true
/// session_timeout = "30s"   # default 60s
/// auth = "/etc/loopscope/stamp.key"
/// twamp_light = false
/// allow_remote = false
/// ```
pub fn parse_reflector_file(text: &str) -> Result<Vec<ReflectorEntry>, ReflectorFileError> {
    let line_of = |at: usize| text[..at.min(text.len())].matches('\n').count() + 1;
    let file: File = toml::from_str(text).map_err(|error| {
        let line = error.span().map(|span| line_of(span.start));
        let message = error.message().trim().to_owned();
        ReflectorFileError(match line {
            Some(line) => format!("line {line}: {message}"),
            None => message,
        })
    })?;
    if file.stamp.is_empty() {
        return Err(ReflectorFileError(
            "no [[stamp]] reflector in the file".to_owned(),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    file.stamp
        .into_iter()
        .map(|entry| {
            let at = line_of(entry.listen.span().start);
            let listen = entry.listen.into_inner();
            if !seen.insert(listen.clone()) {
                return Err(ReflectorFileError(format!(
                    "line {at}: {listen} is listed twice"
                )));
            }
            let timeout = match entry.session_timeout {
                Some(text) => {
                    let line = line_of(text.span().start);
                    let value = loopscope_report::units::parse_duration(text.get_ref())
                        .map_err(|error| ReflectorFileError(format!("line {line}: {error}")))?;
                    if value.is_zero() {
                        return Err(ReflectorFileError(format!(
                            "line {line}: a session timeout of zero ends every session at once"
                        )));
                    }
                    value
                }
                None => DEFAULT_SESSION_TIMEOUT,
            };
            Ok(ReflectorEntry {
                listen,
                stateful_timeout: entry.stateful.then_some(timeout),
                auth: entry.auth,
                twamp_light: entry.twamp_light,
                allow_remote: entry.allow_remote,
            })
        })
        .collect()
}

impl ReflectorSummary {
    /// The sum of several reflectors' summaries (their endpoints joined).
    pub fn total(parts: &[ReflectorSummary]) -> Self {
        let mut total = ReflectorSummary {
            endpoint: parts
                .iter()
                .map(|part| part.endpoint.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            ..ReflectorSummary::default()
        };
        for part in parts {
            total.received += part.received;
            total.reflected += part.reflected;
            total.too_short += part.too_short;
            total.too_long += part.too_long;
            total.refused_source += part.refused_source;
            total.refused_rate_limit += part.refused_rate_limit;
            total.refused_echo_loop += part.refused_echo_loop;
            total.dropped_on_purpose += part.dropped_on_purpose;
            total.send_errors += part.send_errors;
            total.bad_hmac += part.bad_hmac;
            total.tlv_processed += part.tlv_processed;
            total.tlv_unrecognized += part.tlv_unrecognized;
            total.tlv_malformed += part.tlv_malformed;
            total.tlv_integrity_failed += part.tlv_integrity_failed;
            total.dscp_from_cos += part.dscp_from_cos;
            total.t2_kernel += part.t2_kernel;
            total.t3_gap_max_us = total.t3_gap_max_us.max(part.t3_gap_max_us);
            total.follow_up_unavailable += part.follow_up_unavailable;
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use loopscope_link::reflector::DatagramCounters;
    use loopscope_link::reflector::{ReflectConfig, Reflector};
    use loopscope_wire::stamp::TimestampFormat;
    use std::sync::atomic::AtomicBool;

    /// A responder served by the reflector's loop on a loopback port in a thread of its own,
    /// and a client socket with the kernel's receive timestamps on.
    struct Served {
        endpoint: String,
        address: SocketAddr,
        loop_counts: Arc<DatagramCounters>,
        stop: Arc<AtomicBool>,
        handle: std::thread::JoinHandle<loopscope_link::reflector::ReflectSummary>,
        client: UdpSocket,
    }

    impl Served {
        fn start(responder: StampResponder) -> Served {
            let mut reflector = Reflector::new(ReflectConfig {
                rate_limit_pps: 0,
                ..ReflectConfig::default()
            });
            let (endpoint, loop_counts) = reflector
                .add_responder(SocketAddr::from(([127, 0, 0, 1], 0)), Box::new(responder))
                .unwrap();
            let address = endpoint.trim_start_matches("udp://").parse().unwrap();
            let stop = Arc::new(AtomicBool::new(false));
            let flag = Arc::clone(&stop);
            let handle = std::thread::spawn(move || reflector.run(flag, Arc::new(|_| {})));
            let client = UdpSocket::bind("127.0.0.1:0").unwrap();
            loopscope_sys::enable_datagram_metadata(&client, false, false).unwrap();
            Served {
                endpoint,
                address,
                loop_counts,
                stop,
                handle,
                client,
            }
        }

        /// Stops the loop and waits for it: its endpoint and counters.
        fn stop(self) -> (String, Arc<DatagramCounters>) {
            self.stop.store(true, Ordering::SeqCst);
            self.handle.join().unwrap();
            (self.endpoint, self.loop_counts)
        }
    }

    /// Bursts of one session's requests with Follow-Up Telemetry, sent with one sendmmsg each
    /// (so they reach the batched loop together, as on a loaded host): every reply after the
    /// first names the previous reply (its sequence number) and a transmit time no earlier than
    /// the T3 that reply carried (read before its send) and no later than the kernel's receive
    /// timestamp of it at our socket (on loopback the transmit stamp is taken before the reply
    /// reaches us). Zeros, or an older reply's stamp (taken before the previous reply's T3
    /// was read), fail. Without root, beside tests/stamp_followup.rs's capture.
    #[test]
    fn follow_up_names_the_previous_reply_within_a_burst() {
        let responder = StampResponder::new(ReflectorConfig {
            stateful_timeout: Some(DEFAULT_SESSION_TIMEOUT),
            ..ReflectorConfig::default()
        });
        let stamp = responder.counters();
        let served = Served::start(responder);
        let (address, client) = (served.address, &served.client);
        let format = TimestampFormat::Ptp;
        /// One reply as our socket got it (times in ns since the Unix epoch).
        #[derive(Clone, Copy)]
        struct Seen {
            sequence: u32,
            t3: i128,
            follow_up: Option<(u32, i128)>,
            kernel_t4: Option<i128>,
        }
        let mut replies: Vec<Seen> = Vec::new();
        for round in 0..8u32 {
            let requests: Vec<Vec<u8>> = (0..16u32)
                .map(|i| {
                    let mut packet = vec![0u8; 64];
                    SenderRepr {
                        sequence: round * 16 + i,
                        timestamp: Timestamp::from_unix(wall_clock(), format),
                        error_estimate: ErrorEstimate::new(false, format, Duration::from_millis(1)),
                        ssid: 7,
                    }
                    .emit(&mut packet, Mode::Unauthenticated)
                    .unwrap();
                    packet[44..48].copy_from_slice(&[0x80, 7, 0, 16]);
                    packet
                })
                .collect();
            let batch: Vec<(&[u8], SocketAddr)> =
                requests.iter().map(|r| (r.as_slice(), address)).collect();
            assert_eq!(loopscope_sys::send_datagrams(client, &batch).unwrap(), 16);
            let mut buffer = [0u8; 128];
            let before = replies.len();
            while replies.len() < before + 16 {
                let ready = loopscope_sys::wait_readable(client, Some(Duration::from_secs(10)));
                assert_eq!(ready.unwrap(), loopscope_sys::Readiness::Ready);
                while let Ok(got) = loopscope_sys::recv_datagram(client, &mut buffer) {
                    let view =
                        ReflectorPacket::new_checked(&buffer[..got.len], Mode::Unauthenticated)
                            .unwrap();
                    let reply = ReflectorRepr::parse(&view);
                    let follow_up = tlv::read_reply_tlvs(view.tail(), None, reply.sequence)
                        .follow_up
                        .map(|(sequence, sent)| (sequence, sent.to_unix_nanos(format)));
                    replies.push(Seen {
                        sequence: reply.sequence,
                        t3: reply.timestamp.to_unix_nanos(format),
                        follow_up,
                        kernel_t4: got.kernel_rx.map(|t4| t4.as_nanos() as i128),
                    });
                }
            }
        }
        let (endpoint, loop_counts) = served.stop();
        let summary = ReflectorSummary::new(&endpoint, loop_counts.read(), &stamp);
        assert_eq!(summary.follow_up_unavailable, 0, "{summary:?}");
        let mut t4_checked = 0;
        for pair in replies.windows(2) {
            let (previous, reply) = (pair[0], pair[1]);
            let sequence = reply.sequence;
            assert_eq!(sequence, previous.sequence + 1, "stateful numbering");
            let Some((named, sent)) = reply.follow_up else {
                panic!("reply {sequence}: no follow-up (zeros)");
            };
            assert_eq!(
                named, previous.sequence,
                "reply {sequence} names the wrong reply"
            );
            assert!(
                sent >= previous.t3,
                "reply {sequence}: stamp {sent} before the previous T3 {}",
                previous.t3
            );
            if let Some(t4) = previous.kernel_t4 {
                assert!(
                    sent <= t4,
                    "reply {sequence}: stamp {sent} after its T4 {t4}"
                );
                t4_checked += 1;
            }
        }
        assert!(
            t4_checked >= 16,
            "only {t4_checked} replies had a kernel T4"
        );
    }

    /// A burst of requests sent with one sendmmsg reaches the reflector's batched loop together;
    /// each reply still carries its own T2 (the kernel's receive timestamp of that request) and
    /// a T3 read when its batch was sent: T2 <= T3 <= T4 (the kernel's receive timestamp of the
    /// reply at our socket) for every reply, and the reflector matched the kernel's transmit
    /// timestamps to the T3 its replies carried.
    #[test]
    fn a_burst_keeps_each_replys_own_t2_and_an_honest_t3() {
        let responder = StampResponder::new(ReflectorConfig::default());
        let stamp = responder.counters();
        let served = Served::start(responder);
        let (address, client) = (served.address, &served.client);
        let format = TimestampFormat::Ptp;
        let requests: Vec<Vec<u8>> = (0..32u32)
            .map(|sequence| {
                let mut packet = vec![0u8; 44];
                SenderRepr {
                    sequence,
                    timestamp: Timestamp::from_unix(wall_clock(), format),
                    error_estimate: ErrorEstimate::new(false, format, Duration::from_millis(1)),
                    ssid: 7,
                }
                .emit(&mut packet, Mode::Unauthenticated)
                .unwrap();
                packet
            })
            .collect();
        let mut t4_checked = 0;
        let mut sequences = Vec::new();
        // Rounds until the kernel's receive timestamps are on everywhere (the first packets
        // after it is turned on may come without).
        for _round in 0..20 {
            let batch: Vec<(&[u8], SocketAddr)> =
                requests.iter().map(|r| (r.as_slice(), address)).collect();
            assert_eq!(loopscope_sys::send_datagrams(client, &batch).unwrap(), 32);
            let mut replies = 0;
            let mut buffer = [0u8; 128];
            while replies < 32 {
                let ready = loopscope_sys::wait_readable(client, Some(Duration::from_secs(10)));
                assert_eq!(ready.unwrap(), loopscope_sys::Readiness::Ready);
                while let Ok(got) = loopscope_sys::recv_datagram(client, &mut buffer) {
                    replies += 1;
                    let view =
                        ReflectorPacket::new_checked(&buffer[..got.len], Mode::Unauthenticated)
                            .unwrap();
                    let reply = ReflectorRepr::parse(&view);
                    sequences.push(reply.sender_sequence);
                    let t2 = reply.receive_timestamp.to_unix_nanos(format);
                    let t3 = reply.timestamp.to_unix_nanos(format);
                    assert!(t2 <= t3, "T2 {t2} after T3 {t3}");
                    if let Some(t4) = got.kernel_rx {
                        assert!(t3 <= t4.as_nanos() as i128, "T3 {t3} after T4 {t4:?}");
                        t4_checked += 1;
                    }
                }
            }
            if t4_checked >= 32 {
                break;
            }
        }
        assert!(
            t4_checked >= 32,
            "only {t4_checked} replies had a kernel T4"
        );
        let expected: Vec<u32> = (0..32).cycle().take(sequences.len()).collect();
        assert_eq!(sequences, expected, "replies out of order");
        let (endpoint, loop_counts) = served.stop();
        let summary = ReflectorSummary::new(&endpoint, loop_counts.read(), &stamp);
        assert_eq!(summary.reflected, sequences.len() as u64);
        assert!(summary.t2_kernel > 0);
        // T3 is read before the send, so the kernel's transmit timestamp is never earlier;
        // the gap is measured and reported.
        assert!(summary.t3_gap_max_us > 0.0);
    }
}
