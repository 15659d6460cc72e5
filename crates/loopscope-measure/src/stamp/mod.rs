//! STAMP (RFC 8762), unauthenticated mode: the Session-Sender ([`send`]) and a stateless
//! Session-Reflector ([`reflect`]), over UDP.
//!
//! Timestamps come from the user-space wall clock (`CLOCK_REALTIME`) taken just before
//! `send` and just after `recv` returns; kernel timestamps (SO_TIMESTAMPING) are not used yet.
//! The round trip is measured on the monotonic clock; the one-way figures subtract timestamps
//! taken on two hosts' wall clocks and mean something only when those clocks are synchronised
//! (on loopback they are the same clock).

use std::collections::HashMap;
use std::io::{self, IoSliceMut, Write};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use loopscope_report::Record;
use nix::sys::socket::{
    ControlMessageOwned, MsgFlags, SockaddrStorage, recvmsg, setsockopt, sockopt,
};
use rustix::event::{PollFd, PollFlags, Timespec, poll};
use serde::Serialize;

pub use loopscope_wire::stamp::TimestampFormat;
use loopscope_wire::stamp::{
    ErrorEstimate, MIN_PACKET_LEN, Mode, ReflectorPacket, ReflectorRepr, SenderPacket, SenderRepr,
    Timestamp,
};

/// Largest STAMP packet in one UDP/IPv4 datagram (65535 − 20 − 8).
pub const MAX_PACKET_LEN: usize = 65_507;

/// What a user-space timestamp is worth: it is taken around a system call, so scheduling
/// delay, not clock resolution, dominates its error. 100 µs is a conservative bound on an
/// idle host; reported in the Error Estimate as RFC 4656 §4.1.2 asks.
const USER_SPACE_TIMESTAMP_ERROR: Duration = Duration::from_micros(100);

#[derive(Debug, thiserror::Error)]
pub enum StampError {
    #[error(
        "--size {0} is out of range: STAMP packets are {MIN_PACKET_LEN}..={MAX_PACKET_LEN} octets (RFC 8762 §4.2.1)"
    )]
    Size(usize),
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("{0}")]
    Socket(#[from] nix::Error),
    #[error(
        "refusing to reflect on {0}: not a loopback address (pass --allow-remote to answer other hosts)"
    )]
    NotLoopback(SocketAddr),
}

fn wall_clock() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
}

fn enable_ttl_reception(socket: &UdpSocket) -> Result<(), nix::Error> {
    if socket.local_addr().map(|a| a.is_ipv4()).unwrap_or(true) {
        setsockopt(socket, sockopt::Ipv4RecvTtl, &true)
    } else {
        setsockopt(socket, sockopt::Ipv6RecvHopLimit, &true)
    }
}

/// One datagram with its source and, when the kernel gave it, the TTL or hop limit it arrived
/// with.
struct Received {
    len: usize,
    from: Option<SocketAddr>,
    ttl: Option<u8>,
}

fn receive(socket: &UdpSocket, buffer: &mut [u8]) -> io::Result<Received> {
    let mut cmsg = nix::cmsg_space!(CInt, CInt);
    let mut iov = [IoSliceMut::new(buffer)];
    let message = recvmsg::<SockaddrStorage>(
        socket.as_raw_fd(),
        &mut iov,
        Some(cmsg.as_mut_slice()),
        MsgFlags::MSG_DONTWAIT,
    )
    .map_err(io::Error::from)?;
    let mut ttl = None;
    if let Ok(messages) = message.cmsgs() {
        for control in messages {
            match control {
                ControlMessageOwned::Ipv4Ttl(value) | ControlMessageOwned::Ipv6HopLimit(value) => {
                    ttl = u8::try_from(value).ok();
                }
                _ => {}
            }
        }
    }
    let from = message.address.and_then(|address| {
        if let Some(v4) = address.as_sockaddr_in() {
            Some(SocketAddr::V4((*v4).into()))
        } else {
            address
                .as_sockaddr_in6()
                .map(|v6| SocketAddr::V6((*v6).into()))
        }
    });
    Ok(Received {
        len: message.bytes,
        from,
        ttl,
    })
}

/// The C `int` IP_TTL and IPV6_HOPLIMIT control messages carry.
type CInt = i32;

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

fn is_would_block(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::WouldBlock
}

// ---------------------------------------------------------------------------------------------
// Session-Sender

#[derive(Debug, Clone)]
pub struct SenderConfig {
    pub target: SocketAddr,
    /// Packets to send (None: until stopped).
    pub count: Option<u64>,
    pub interval: Duration,
    /// The test packet's length in octets (at least 44).
    pub size: usize,
    /// How long to wait for replies after the last packet is sent.
    pub timeout: Duration,
    pub format: TimestampFormat,
}

/// One reply, measured.
#[derive(Debug, Clone, Serialize)]
pub struct StampReply {
    pub from: String,
    /// The sender's sequence number this reply answers.
    pub seq: u32,
    /// The reflector's own sequence number (equal to `seq` for a stateless reflector).
    pub reflector_seq: u32,
    pub bytes: usize,
    /// T4 − T1 on this host's monotonic clock.
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
    pub reflector_synchronised: bool,
    pub duplicate: bool,
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
    pub seq: u32,
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

pub enum SenderEvent<'a> {
    Reply(&'a StampReply),
    SendFailed(&'a StampSendFailed),
}

struct Sent {
    at: Instant,
    replies: u32,
}

/// What a sender run measured.
#[derive(Debug, Default)]
pub struct SenderRun {
    pub transmitted: u64,
    /// Distinct sequence numbers answered.
    pub received: u64,
    pub duplicates: u64,
    pub reordered: u64,
    /// Datagrams that were not a STAMP reply to this session (too short, unknown sequence).
    pub foreign: u64,
    pub send_errors: u64,
    pub rtt_us: Vec<f64>,
    pub rtt_net_us: Vec<f64>,
    pub residence_us: Vec<f64>,
    pub forward_us: Vec<f64>,
    pub backward_us: Vec<f64>,
    pub elapsed: Duration,
    /// Time from the first send to the last.
    pub send_span: Duration,
    /// How late each send was against its schedule, at worst.
    pub max_send_lag: Duration,
    pub reflector_synchronised: bool,
}

/// Runs a STAMP session: packets at absolute deadlines start + k × interval (a late send does
/// not push the later ones back), replies matched by the Session-Sender Sequence Number.
pub fn send(
    config: &SenderConfig,
    stop: &Arc<AtomicBool>,
    mut on_event: impl FnMut(SenderEvent<'_>),
) -> Result<SenderRun, StampError> {
    if config.size < MIN_PACKET_LEN || config.size > MAX_PACKET_LEN {
        return Err(StampError::Size(config.size));
    }
    let bind: SocketAddr = if config.target.is_ipv4() {
        "0.0.0.0:0".parse().expect("literal address")
    } else {
        "[::]:0".parse().expect("literal address")
    };
    let socket = UdpSocket::bind(bind)?;
    socket.connect(config.target)?;
    socket.set_nonblocking(true)?;
    enable_ttl_reception(&socket)?;

    let error_estimate = ErrorEstimate::new(false, config.format, USER_SPACE_TIMESTAMP_ERROR);
    let count = config.count.unwrap_or(u64::from(u32::MAX)).min(1 << 32);
    let interval_ns = config.interval.as_nanos();
    let mut sent: Vec<Sent> = Vec::new();
    let mut run = SenderRun {
        reflector_synchronised: true,
        ..SenderRun::default()
    };
    let mut highest_answered: Option<u32> = None;
    let mut buffer = vec![0u8; MAX_PACKET_LEN.max(config.size) + 1];
    let mut packet = vec![0u8; config.size];
    SenderRepr {
        sequence: 0,
        timestamp: Timestamp::default(),
        error_estimate,
        ssid: 0,
    }
    .emit(&mut packet, Mode::Unauthenticated)
    .map_err(|_| StampError::Size(config.size))?;
    let start = Instant::now();
    let mut last_send = start;
    let mut any_reply = false;

    loop {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let now = Instant::now();
        let next = sent.len() as u64;
        if next < count {
            let deadline = start + Duration::from_nanos((interval_ns * u128::from(next)) as u64);
            if now >= deadline {
                let sequence = next as u32;
                let timestamp = Timestamp::from_unix(wall_clock(), config.format);
                let mut view = SenderPacket::new_checked(&mut packet[..], Mode::Unauthenticated)
                    .map_err(|_| StampError::Size(config.size))?;
                view.set_sequence(sequence);
                view.set_timestamp(timestamp);
                let at = Instant::now();
                run.max_send_lag = run.max_send_lag.max(at - deadline);
                sent.push(Sent { at, replies: 0 });
                last_send = at;
                match socket.send(&packet) {
                    Ok(_) => run.transmitted += 1,
                    Err(error) => {
                        run.send_errors += 1;
                        on_event(SenderEvent::SendFailed(&StampSendFailed {
                            seq: sequence,
                            error: error.to_string(),
                        }));
                    }
                }
                // No wait: read whatever is already in, then send the next one that is due.
            } else {
                wait_readable(&socket, deadline - now)?;
            }
        } else {
            let all_in = run.received >= run.transmitted;
            let end = last_send + config.timeout;
            if all_in || now >= end {
                break;
            }
            wait_readable(&socket, end - now)?;
        }
        // Drain whatever arrived.
        loop {
            let received = match receive(&socket, &mut buffer) {
                Ok(received) => received,
                Err(error) if is_would_block(&error) => break,
                // An ICMP port unreachable from an earlier send surfaces here on a connected
                // socket: the packet is lost, which the count shows.
                Err(error) if error.kind() == io::ErrorKind::ConnectionRefused => break,
                Err(error) => return Err(error.into()),
            };
            let arrived = Instant::now();
            let t4 = wall_clock();
            let Ok(view) =
                ReflectorPacket::new_checked(&buffer[..received.len], Mode::Unauthenticated)
            else {
                run.foreign += 1;
                continue;
            };
            let reply = ReflectorRepr::parse(&view);
            let Some(slot) = sent.get_mut(reply.sender_sequence as usize) else {
                run.foreign += 1;
                continue;
            };
            slot.replies += 1;
            let duplicate = slot.replies > 1;
            let reordered = !duplicate
                && highest_answered.is_some_and(|highest| reply.sender_sequence < highest);
            if duplicate {
                run.duplicates += 1;
            } else {
                run.received += 1;
                if reordered {
                    run.reordered += 1;
                }
                highest_answered = Some(
                    highest_answered
                        .map_or(reply.sender_sequence, |h| h.max(reply.sender_sequence)),
                );
            }
            any_reply = true;
            let reflector_format = reply.error_estimate.format();
            let t1 = reply
                .sender_timestamp
                .to_unix_nanos(reply.sender_error_estimate.format());
            let t2 = reply.receive_timestamp.to_unix_nanos(reflector_format);
            let t3 = reply.timestamp.to_unix_nanos(reflector_format);
            let t4 = Timestamp::from_unix(t4, config.format).to_unix_nanos(config.format);
            let rtt_us = (arrived - slot.at).as_secs_f64() * 1e6;
            let residence_us = (t3 - t2) as f64 / 1e3;
            let measured = StampReply {
                from: received
                    .from
                    .map_or_else(|| config.target.to_string(), |a| a.to_string()),
                seq: reply.sender_sequence,
                reflector_seq: reply.sequence,
                bytes: received.len,
                rtt_us,
                residence_us,
                rtt_net_us: rtt_us - residence_us,
                forward_us: (t2 - t1) as f64 / 1e3,
                backward_us: (t4 - t3) as f64 / 1e3,
                forward_ttl: reply.sender_ttl,
                backward_ttl: received.ttl,
                reflector_synchronised: reply.error_estimate.synchronised(),
                duplicate,
                reordered,
            };
            if !duplicate {
                run.rtt_us.push(measured.rtt_us);
                run.rtt_net_us.push(measured.rtt_net_us);
                run.residence_us.push(measured.residence_us);
                run.forward_us.push(measured.forward_us);
                run.backward_us.push(measured.backward_us);
                run.reflector_synchronised &= measured.reflector_synchronised;
            }
            on_event(SenderEvent::Reply(&measured));
        }
    }
    if !any_reply {
        run.reflector_synchronised = false;
    }
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

fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

/// min, p50, p90, p99, p99.9 and max of one figure, in µs.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Spread {
    pub min: Option<f64>,
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p99: Option<f64>,
    pub p999: Option<f64>,
    pub max: Option<f64>,
}

impl Spread {
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

    fn insert_into(&self, prefix: &str, map: &mut serde_json::Map<String, serde_json::Value>) {
        for (name, value) in [
            ("min", self.min),
            ("p50", self.p50),
            ("p90", self.p90),
            ("p99", self.p99),
            ("p999", self.p999),
            ("max", self.max),
        ] {
            map.insert(format!("{prefix}_{name}_us"), serde_json::json!(value));
        }
    }
}

/// The final record of a sender run.
#[derive(Debug, Clone, Serialize)]
pub struct StampSummary {
    pub target: String,
    pub transmitted: u64,
    pub received: u64,
    pub lost: u64,
    pub loss_percent: f64,
    pub duplicates: u64,
    pub reordered: u64,
    pub foreign: u64,
    pub send_errors: u64,
    pub elapsed_s: f64,
    /// (last send − first send) / (transmitted − 1).
    pub achieved_interval_us: Option<f64>,
    pub max_send_lag_us: f64,
    pub timestamp_source: &'static str,
    /// The one-way figures subtract the two hosts' wall clocks: they mean something only when
    /// the clocks are synchronised (always true on loopback, where both are this host's).
    pub one_way_requires_synchronised_clocks: bool,
    /// Every reply's error estimate had S set.
    pub reflector_synchronised: bool,
    #[serde(flatten)]
    pub figures: serde_json::Map<String, serde_json::Value>,
    pub passed: bool,
    #[serde(skip)]
    rtt: Spread,
    #[serde(skip)]
    residence: Spread,
    #[serde(skip)]
    forward: Spread,
    #[serde(skip)]
    backward: Spread,
}

impl StampSummary {
    pub fn new(target: &str, run: &SenderRun) -> Self {
        let lost = run.transmitted.saturating_sub(run.received);
        let rtt = Spread::of(&run.rtt_us);
        let rtt_net = Spread::of(&run.rtt_net_us);
        let residence = Spread::of(&run.residence_us);
        let forward = Spread::of(&run.forward_us);
        let backward = Spread::of(&run.backward_us);
        let mut figures = serde_json::Map::new();
        rtt.insert_into("rtt", &mut figures);
        rtt_net.insert_into("rtt_net", &mut figures);
        residence.insert_into("residence", &mut figures);
        forward.insert_into("forward", &mut figures);
        backward.insert_into("backward", &mut figures);
        StampSummary {
            target: target.to_owned(),
            transmitted: run.transmitted,
            received: run.received,
            lost,
            loss_percent: if run.transmitted == 0 {
                0.0
            } else {
                round3(lost as f64 * 100.0 / run.transmitted as f64)
            },
            duplicates: run.duplicates,
            reordered: run.reordered,
            foreign: run.foreign,
            send_errors: run.send_errors,
            elapsed_s: round3(run.elapsed.as_secs_f64()),
            achieved_interval_us: (run.transmitted > 1)
                .then(|| round3(run.send_span.as_secs_f64() * 1e6 / (run.transmitted - 1) as f64)),
            max_send_lag_us: round3(run.max_send_lag.as_secs_f64() * 1e6),
            timestamp_source: "user-space CLOCK_REALTIME",
            one_way_requires_synchronised_clocks: true,
            reflector_synchronised: run.reflector_synchronised,
            figures,
            passed: run.transmitted > 0 && lost == 0 && run.send_errors == 0,
            rtt,
            residence,
            forward,
            backward,
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
        writeln!(out, "--- {} STAMP statistics ---", self.target)?;
        writeln!(
            out,
            "{} packets transmitted, {} received, {} lost ({}% loss), {} duplicates, {} reordered, time {:.3} s",
            self.transmitted,
            self.received,
            self.lost,
            self.loss_percent,
            self.duplicates,
            self.reordered,
            self.elapsed_s
        )?;
        if let Some(interval) = self.achieved_interval_us {
            writeln!(
                out,
                "achieved interval {interval:.1} µs, worst send lag {:.1} µs",
                self.max_send_lag_us
            )?;
        }
        for (name, spread) in [
            ("rtt", &self.rtt),
            ("residence", &self.residence),
            ("forward*", &self.forward),
            ("backward*", &self.backward),
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
            "* one-way figures subtract two hosts' clocks ({}): valid only if they are synchronised (on loopback they are one clock)",
            self.timestamp_source
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Session-Reflector

#[derive(Debug, Clone)]
pub struct ReflectorConfig {
    /// Answer packets from non-loopback sources and bind non-loopback addresses.
    pub allow_remote: bool,
    /// Packets answered per second per source address (0: no limit).
    pub rate_limit_pps: u32,
    /// Drop every Nth valid packet instead of answering it (loss injection for tests).
    pub drop_every: Option<u64>,
}

/// What a reflector did.
#[derive(Debug, Default, Clone, Serialize)]
pub struct ReflectorSummary {
    pub received: u64,
    pub reflected: u64,
    pub too_short: u64,
    pub refused_source: u64,
    pub refused_rate_limit: u64,
    pub dropped_on_purpose: u64,
    pub send_errors: u64,
}

impl Record for ReflectorSummary {
    fn kind(&self) -> &'static str {
        "summary"
    }
    fn write_human(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(
            out,
            "STAMP reflector: {} received, {} reflected, {} too short, {} refused by source, {} by rate limit, {} dropped on purpose, {} send errors",
            self.received,
            self.reflected,
            self.too_short,
            self.refused_source,
            self.refused_rate_limit,
            self.dropped_on_purpose,
            self.send_errors
        )
    }
}

/// Binds a reflector socket, refusing non-loopback addresses unless allowed.
pub fn bind_reflector(
    address: SocketAddr,
    config: &ReflectorConfig,
) -> Result<UdpSocket, StampError> {
    if !config.allow_remote && !address.ip().is_loopback() {
        return Err(StampError::NotLoopback(address));
    }
    let socket = UdpSocket::bind(address)?;
    enable_ttl_reception(&socket)?;
    Ok(socket)
}

/// Per-source token bucket: `rate` tokens a second, a burst of rate/50 (at least 64).
struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: HashMap<std::net::IpAddr, (f64, Instant)>,
}

impl RateLimiter {
    fn allow(&mut self, source: std::net::IpAddr, now: Instant) -> bool {
        if self.rate == 0.0 {
            return true;
        }
        if self.buckets.len() > 65_536 {
            self.buckets.clear();
        }
        let (tokens, last) = self.buckets.entry(source).or_insert((self.burst, now));
        *tokens = (*tokens + (now - *last).as_secs_f64() * self.rate).min(self.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// A stateless Session-Reflector (RFC 8762 §4.3): the reply carries the sender's sequence
/// number as its own, T2 taken when the packet is read, T3 just before the reply is sent, the
/// sender's TTL as received, and the same length as the request (never larger: no
/// amplification). Runs until `stop`.
pub fn reflect(
    socket: &UdpSocket,
    config: &ReflectorConfig,
    stop: &Arc<AtomicBool>,
) -> Result<ReflectorSummary, StampError> {
    socket.set_nonblocking(true)?;
    let own_port = socket.local_addr()?.port();
    let mut summary = ReflectorSummary::default();
    let mut limiter = RateLimiter {
        rate: f64::from(config.rate_limit_pps),
        burst: f64::from((config.rate_limit_pps / 50).max(64)),
        buckets: HashMap::new(),
    };
    let mut buffer = vec![0u8; MAX_PACKET_LEN + 1];
    let mut reply_buffer = vec![0u8; MAX_PACKET_LEN + 1];
    let mut valid: u64 = 0;
    while !stop.load(Ordering::SeqCst) {
        if !wait_readable(socket, Duration::from_millis(100))? {
            continue;
        }
        loop {
            let received = match receive(socket, &mut buffer) {
                Ok(received) => received,
                Err(error) if is_would_block(&error) => break,
                Err(error) if error.kind() == io::ErrorKind::ConnectionRefused => continue,
                Err(error) => return Err(error.into()),
            };
            let t2 = wall_clock();
            summary.received += 1;
            let Some(source) = received.from else {
                summary.refused_source += 1;
                continue;
            };
            if (!config.allow_remote && !source.ip().is_loopback())
                || loopscope_link::reflector::udp_refusal(&source, own_port).is_some()
            {
                summary.refused_source += 1;
                continue;
            }
            let Ok(view) =
                SenderPacket::new_checked(&buffer[..received.len], Mode::Unauthenticated)
            else {
                summary.too_short += 1;
                continue;
            };
            let request = SenderRepr::parse(&view);
            valid += 1;
            if config
                .drop_every
                .is_some_and(|n| n > 0 && valid.is_multiple_of(n))
            {
                summary.dropped_on_purpose += 1;
                continue;
            }
            if !limiter.allow(source.ip(), Instant::now()) {
                summary.refused_rate_limit += 1;
                continue;
            }
            // Answer in the sender's timestamp format, so both ends read each other's stamps.
            let format = request.error_estimate.format();
            let reply = ReflectorRepr {
                sequence: request.sequence,
                timestamp: Timestamp::default(),
                error_estimate: ErrorEstimate::new(false, format, USER_SPACE_TIMESTAMP_ERROR),
                ssid: request.ssid,
                receive_timestamp: Timestamp::from_unix(t2, format),
                sender_sequence: request.sequence,
                sender_timestamp: request.timestamp,
                sender_error_estimate: request.error_estimate,
                sender_ttl: received.ttl.unwrap_or(0),
            };
            // The reply is as long as the request (no amplification); the padding is zeros.
            let bytes = &mut reply_buffer[..received.len];
            bytes[MIN_PACKET_LEN..].fill(0);
            if reply.emit(bytes, Mode::Unauthenticated).is_err() {
                summary.too_short += 1;
                continue;
            }
            let Ok(mut out) = ReflectorPacket::new_checked(&mut *bytes, Mode::Unauthenticated)
            else {
                summary.too_short += 1;
                continue;
            };
            out.set_timestamp(Timestamp::from_unix(wall_clock(), format));
            match socket.send_to(bytes, source) {
                Ok(_) => summary.reflected += 1,
                Err(_) => summary.send_errors += 1,
            }
        }
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::percentile;

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
