//! Round-trip time: one engine for every ping, over any link or ICMP echo.
//!
//! The engine paces requests, matches replies to them by sequence number, gives up on a
//! request after its timeout, and tells duplicates, late replies and strangers apart. What
//! carries the requests is a [`Pinger`]:
//!
//! - [`LinkPinger`]: stamped, self-delimiting frames (`loopscope_wire::ping_frame`) over any
//!   [`loopscope_link::Link`], through a reflector or a loopback plug;
//! - [`IcmpPinger`]: ICMP or ICMPv6 echo (`icmp://ADDR`) through a datagram or raw socket.
//!
//! **What a round trip is**, the same for both: from the moment just before the request is
//! handed to the kernel (CLOCK_MONOTONIC read immediately before the send call) to the moment
//! the reply arrived. For ICMP the arrival is the kernel's receive timestamp (SO_TIMESTAMPNS),
//! as iputils `ping` takes it; for links it is the clock read as soon as the receive call
//! returns the reply. On loopback most of an ICMP round trip happens inside the send call, so
//! the send time must be read before it.
//!
//! Held against a packet capture on lo, a loopback echo spends 7-12 us between the request and
//! the reply crossing lo, and 15-30 us before that in the send call; the send call takes longer
//! the longer the CPU idled before it, for iputils as for us. So two pingers agree only when
//! they send equally often: iputils `ping -i 0.01` sends every 12-16 ms on a 250 Hz kernel (it
//! waits with SO_RCVTIMEO, counted in ticks), this engine every 10 ms (docs/benchmarks.md, "ICMP
//! round trip against a packet capture").
//!
//! One thread sends and receives: it waits for replies exactly until the next thing is due, so
//! nothing but the kernel sits between a reply arriving and its time being taken.

mod icmp;
mod link;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use loopscope_report::Record;
use loopscope_report::rtt::{PingReply, PingSummary, RttRecorder};
use serde::Serialize;
use serde_json::{Map, Value, json};

use loopscope_link::adapter::AdapterStack;
use loopscope_link::{Endpoint, LinkError};

pub use icmp::IcmpPinger;
pub use link::LinkPinger;
pub use loopscope_link::transport::icmp::{Bind, IcmpError, SocketChoice, SocketKind};

/// The longest interval, reply timeout or deadline a run accepts: the bound every duration
/// flag has (`loopscope_report::units`), far below where clock arithmetic could overflow.
pub const MAX_DURATION: Duration = loopscope_report::units::MAX_DURATION;

/// What to send and when to stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PingConfig {
    /// Stop after this many requests (`None`: until stopped or the deadline).
    pub count: Option<u64>,
    /// Time between requests; zero sends the next one as soon as the last is answered.
    pub interval: Duration,
    /// Payload bytes per request (what they mean is the pinger's: the frame payload over a
    /// link, the ICMP payload for echo).
    pub payload: usize,
    /// How long each request waits for its reply before it counts as lost.
    pub timeout: Duration,
    /// Stop after this long in all.
    pub deadline: Option<Duration>,
    /// Stop as soon as this many replies came back (one answer is enough for a probe).
    pub stop_after_replies: Option<u64>,
}

impl Default for PingConfig {
    fn default() -> Self {
        PingConfig {
            count: None,
            interval: Duration::from_secs(1),
            payload: 56,
            timeout: Duration::from_secs(2),
            deadline: None,
            stop_after_replies: None,
        }
    }
}

/// Why a ping cannot start.
#[derive(Debug, thiserror::Error)]
pub enum PingError {
    #[error(
        "{what} ({days} days) is too long: at most {max} days (100 years)",
        days = value.as_secs() / 86_400,
        max = MAX_DURATION.as_secs() / 86_400
    )]
    /// A duration too long to compute with safely.
    TooLong {
        /// Which duration.
        what: &'static str,
        /// Its value.
        value: Duration,
    },
    /// A payload size the target's transport cannot carry.
    #[error("the payload of {payload} bytes is out of range for {target}: {allowed}")]
    Payload {
        /// The size asked for.
        payload: usize,
        /// The target.
        target: String,
        /// The sizes it can carry.
        allowed: String,
    },
    /// The link could not be opened.
    #[error(transparent)]
    Link(#[from] LinkError),
    /// The endpoint string is wrong.
    #[error(transparent)]
    Endpoint(#[from] loopscope_link::EndpointError),
    /// No ICMP socket could be used.
    #[error(transparent)]
    Icmp(#[from] loopscope_link::transport::icmp::IcmpError),
}

impl PingConfig {
    /// Refuses durations whose arithmetic could not be trusted (issue: `-w 5124095h` once
    /// wrapped around to a run of zero requests).
    pub fn validate(&self) -> Result<(), PingError> {
        let checks = [
            ("the interval", Some(self.interval)),
            ("the reply timeout", Some(self.timeout)),
            ("the deadline", self.deadline),
        ];
        for (what, value) in checks {
            if let Some(value) = value
                && value > MAX_DURATION
            {
                return Err(PingError::TooLong { what, value });
            }
        }
        Ok(())
    }
}

/// A request that could not be sent. `Transient` failures (a firewall rejecting one ICMP
/// request) count as lost and the run goes on; a `Fatal` one ends it.
#[derive(Debug)]
pub enum SendError {
    /// Counts as lost; the run goes on.
    Transient(io::Error),
    /// Ends the run.
    Fatal(io::Error),
}

/// Why a run ended before its time: the link failed.
#[derive(Debug)]
pub enum LinkFailure {
    /// The link closed.
    Closed,
    /// Sending failed.
    Send(io::Error),
    /// Receiving failed.
    Receive(io::Error),
}

impl std::fmt::Display for LinkFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LinkFailure::Closed => write!(f, "the link closed"),
            LinkFailure::Send(error) => write!(f, "send failed: {error}"),
            LinkFailure::Receive(error) => write!(f, "receive failed: {error}"),
        }
    }
}

impl LinkFailure {
    /// The operating system's error, when there is one.
    pub fn io_error(&self) -> Option<&io::Error> {
        match self {
            LinkFailure::Closed => None,
            LinkFailure::Send(error) | LinkFailure::Receive(error) => Some(error),
        }
    }
}

/// What a pinger received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// A reply to request `sequence`.
    Reply {
        /// Its sequence number.
        sequence: u64,
        /// Bytes as the report counts them (the whole frame, or the ICMP message).
        bytes: usize,
        /// When it arrived, CLOCK_MONOTONIC nanoseconds.
        arrived_ns: u64,
        /// The IP TTL or hop limit, where the socket gives it.
        ttl: Option<u8>,
        /// It came back altered.
        corrupt: bool,
    },
    /// Bytes that were meant as a reply but cannot be matched to a request (a frame whose
    /// checksum failed).
    Garbage,
}

/// Something that carries echo requests and brings replies back.
pub trait Pinger {
    /// The target as reports name it.
    fn target(&self) -> String;

    /// Whether several replies to one request are expected (a multicast Ethernet loopback):
    /// the run then listens until the last request's timeout has passed, not only until every
    /// request has its first reply, so that the later repliers are heard (as duplicates).
    fn awaits_every_reply(&self) -> bool {
        false
    }

    /// The sequence number of the first request (ICMP counts from 1 as iputils does).
    fn first_sequence(&self) -> u64 {
        0
    }

    /// Bytes of payload this pinger accepts.
    fn payload_range(&self) -> std::ops::RangeInclusive<usize>;

    /// The line a human run starts with.
    fn banner(&self, payload: usize) -> String;

    /// Sends request `sequence` with `payload` bytes; returns the send time (CLOCK_MONOTONIC
    /// nanoseconds read just before the send call).
    fn send(&mut self, sequence: u64, payload: usize) -> Result<u64, SendError>;

    /// Waits up to `wait` for replies and appends what came to `out` (nothing on timeout or
    /// when a signal interrupted the wait).
    fn receive(&mut self, wait: Duration, out: &mut Vec<Received>) -> Result<(), LinkFailure>;

    /// Pinger-specific summary fields (socket kind, link counters).
    fn summary_fields(&self, fields: &mut Map<String, Value>);

    /// No more requests will be sent.
    fn finish(&mut self) {}
}

/// Opens the pinger an endpoint names: ICMP echo for `icmp://ADDR`, frames over the link for
/// every other scheme, with `adapters` (impairment, capture) around the link. ICMP echo is not
/// a link, so adapters there are an error.
pub fn open(
    endpoint: &Endpoint,
    icmp_socket: SocketChoice,
    adapters: &AdapterStack,
) -> Result<Box<dyn Pinger>, PingError> {
    if endpoint.scheme == "icmp" {
        if !adapters.is_empty() {
            return Err(PingError::Link(LinkError::Unsupported(
                "--modem, --impair and --capture wrap a link; ICMP echo (icmp://) is not one"
                    .into(),
            )));
        }
        let target = loopscope_link::transport::icmp::target(endpoint)?;
        return Ok(Box::new(IcmpPinger::open(target, icmp_socket)?));
    }
    Ok(Box::new(LinkPinger::new(adapters.open(endpoint)?)?))
}

/// Something that happened while pinging.
#[derive(Debug)]
pub enum PingEvent<'a> {
    /// A reply (duplicates and corrupt ones included).
    Reply(&'a PingReply),
    /// A request could not be sent (e.g. a firewall rejected it on output); it counts as lost.
    SendFailed(&'a SendFailure),
}

/// A request that could not be sent (firewall, no route).
#[derive(Debug, Clone, Serialize)]
pub struct SendFailure {
    /// The request's sequence number.
    pub seq: u64,
    /// Why it could not be sent.
    pub error: String,
}

impl Record for SendFailure {
    fn kind(&self) -> &'static str {
        "send_error"
    }
    fn write_human(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(out, "seq={}: send failed: {}", self.seq, self.error)
    }
}

/// The result of a run: the summary, and why it ended early if the link failed.
#[derive(Debug)]
pub struct PingOutcome {
    /// What was measured.
    pub summary: PingSummary,
    /// The link failed mid-run (the summary holds what was measured until then).
    pub link_failure: Option<LinkFailure>,
}

/// How often a waiting run looks at the stop flag.
const POLL: Duration = Duration::from_millis(100);
/// Answered sequence numbers remembered to recognise duplicates.
const ANSWERED_MEMORY: usize = 65_536;

/// Runs a ping over `pinger` until `count` requests were answered or timed out, the deadline
/// passes, enough replies came back, the link fails, or `stop` is set. `on_event` sees every
/// reply (duplicates included) and every request that could not be sent.
pub fn run(
    pinger: &mut dyn Pinger,
    config: &PingConfig,
    stop: &AtomicBool,
    on_event: &mut dyn FnMut(PingEvent<'_>),
) -> PingOutcome {
    let target = pinger.target();
    let mut recorder = RttRecorder::new();
    // Outstanding requests by sequence, with their send time.
    let mut outstanding: BTreeMap<u64, u64> = BTreeMap::new();
    // Answered requests with their send time (to time duplicates too), oldest evicted first.
    let mut answered: HashMap<u64, u64> = HashMap::new();
    let mut answered_order: VecDeque<u64> = VecDeque::new();
    let mut late = 0u64;
    let mut corrupt = 0u64;
    let mut unexpected = 0u64;
    let mut send_error: Option<String> = None;
    let mut link_failure = None;
    let mut received = Vec::new();

    let first = pinger.first_sequence();
    let mut next_sequence = first;
    let timeout_ns = duration_ns(config.timeout).max(1);
    let interval_ns = duration_ns(config.interval);
    let started = now_ns();
    let deadline_ns = config
        .deadline
        .map(|deadline| started.saturating_add(duration_ns(deadline)));
    let mut next_send = started;
    let awaits_every_reply = pinger.awaits_every_reply();
    let mut last_sent_ns: Option<u64> = None;

    loop {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let now = now_ns();
        if deadline_ns.is_some_and(|deadline| now >= deadline) {
            break;
        }
        if config
            .stop_after_replies
            .is_some_and(|wanted| recorder.received() >= wanted)
        {
            break;
        }
        // Requests unanswered within the timeout are lost; a reply after that is late.
        outstanding.retain(|_, sent| now.saturating_sub(*sent) < timeout_ns);

        let sent = next_sequence - first;
        let more_to_send = config.count.is_none_or(|count| sent < count);
        let due = if interval_ns == 0 {
            outstanding.is_empty()
        } else {
            now >= next_send
        };
        if more_to_send && due {
            let sequence = next_sequence;
            next_sequence += 1;
            recorder.sent();
            match pinger.send(sequence, config.payload) {
                Ok(sent_ns) => {
                    outstanding.insert(sequence, sent_ns);
                    last_sent_ns = Some(sent_ns);
                }
                Err(SendError::Transient(error)) => {
                    let failure = SendFailure {
                        seq: sequence,
                        error: error.to_string(),
                    };
                    on_event(PingEvent::SendFailed(&failure));
                    send_error = Some(failure.error);
                }
                Err(SendError::Fatal(error)) => {
                    link_failure = Some(LinkFailure::Send(error));
                    break;
                }
            }
            next_send = next_send.saturating_add(interval_ns);
            if next_send < now {
                // Fell behind (a slow terminal, a suspended process): do not burst to catch up.
                next_send = now.saturating_add(interval_ns);
            }
            continue;
        }
        // Listening on for more replies to the last request, until its timeout.
        let listening_until = last_sent_ns
            .filter(|_| awaits_every_reply)
            .map(|sent| sent.saturating_add(timeout_ns))
            .filter(|until| now < *until);
        if !more_to_send && outstanding.is_empty() && listening_until.is_none() {
            break;
        }

        let mut wake = now.saturating_add(duration_ns(POLL));
        if more_to_send && interval_ns > 0 {
            wake = wake.min(next_send);
        }
        if let Some(oldest) = outstanding.values().min() {
            wake = wake.min(oldest.saturating_add(timeout_ns));
        }
        if let Some(deadline) = deadline_ns {
            wake = wake.min(deadline);
        }
        if let Some(until) = listening_until {
            wake = wake.min(until);
        }
        let wait = Duration::from_nanos(wake.saturating_sub(now).max(1_000));
        received.clear();
        if let Err(failure) = pinger.receive(wait, &mut received) {
            link_failure = Some(failure);
            break;
        }
        for item in received.drain(..) {
            let (sequence, bytes, arrived_ns, ttl, is_corrupt) = match item {
                Received::Garbage => {
                    corrupt += 1;
                    recorder.error();
                    continue;
                }
                Received::Reply {
                    sequence,
                    bytes,
                    arrived_ns,
                    ttl,
                    corrupt,
                } => (sequence, bytes, arrived_ns, ttl, corrupt),
            };
            let reply = |rtt_ns: u64, duplicate: bool| PingReply {
                from: target.clone(),
                seq: sequence,
                bytes,
                rtt_us: PingReply::rtt_us_from_ns(rtt_ns),
                ttl,
                duplicate,
                corrupt: is_corrupt,
            };
            if let Some(sent_ns) = outstanding.get(&sequence).copied() {
                let rtt_ns = arrived_ns.saturating_sub(sent_ns);
                outstanding.remove(&sequence);
                if rtt_ns >= timeout_ns {
                    // It came, but after its time was up (the wait overshot): lost, not a
                    // round trip of more than the timeout.
                    late += 1;
                    continue;
                }
                if is_corrupt {
                    corrupt += 1;
                    recorder.error();
                } else {
                    recorder.reply(rtt_ns);
                }
                answered.insert(sequence, sent_ns);
                answered_order.push_back(sequence);
                if answered_order.len() > ANSWERED_MEMORY
                    && let Some(old) = answered_order.pop_front()
                {
                    answered.remove(&old);
                }
                on_event(PingEvent::Reply(&reply(rtt_ns, false)));
            } else if let Some(sent_ns) = answered.get(&sequence).copied() {
                recorder.duplicate();
                on_event(PingEvent::Reply(&reply(
                    arrived_ns.saturating_sub(sent_ns),
                    true,
                )));
            } else if sequence >= first && sequence < next_sequence {
                late += 1;
            } else {
                // A sequence never sent: another sender on a shared reflector, or a corrupted
                // frame that happened to pass the checksum.
                unexpected += 1;
            }
        }
    }
    pinger.finish();
    let elapsed_s = now_ns().saturating_sub(started) as f64 / 1e9;
    let mut summary = recorder.summary(&target, elapsed_s);
    let mut fields = Map::new();
    fields.insert("late".into(), json!(late));
    fields.insert("corrupt".into(), json!(corrupt));
    if unexpected > 0 {
        fields.insert("unexpected".into(), json!(unexpected));
    }
    fields.insert("payload_bytes".into(), json!(config.payload));
    pinger.summary_fields(&mut fields);
    if let Some(error) = send_error {
        fields.insert("send_error".into(), json!(error));
    }
    if let Some(failure) = &link_failure {
        fields.insert("link_error".into(), json!(failure.to_string()));
        summary.passed = false;
    }
    summary.extra = fields;
    PingOutcome {
        summary,
        link_failure,
    }
}

/// CLOCK_MONOTONIC in nanoseconds: the clock every pinger's times are on.
pub fn now_ns() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    u64::try_from(now.tv_sec)
        .unwrap_or(0)
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::try_from(now.tv_nsec).unwrap_or(0))
}

fn duration_ns(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests;
