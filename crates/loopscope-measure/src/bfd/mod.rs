//! BFD (RFC 5880) over UDP: the speaker `loopscope bfd` runs ([`speak`]), the passive
//! responder of `reflect --bfd` ([`respond`]), the Seamless BFD initiator and reflector (RFC
//! 7880, RFC 7881: [`sbfd_initiate`], [`sbfd_reflect`]) and the echo function's far end
//! ([`echo_reflect`]).
//!
//! BFD runs over UDP sockets of its own rather than over a `Link`: it needs to set and read the
//! TTL of every datagram (RFC 5881 §5), to send from one source port and receive on the
//! well-known one, which no link offers. The session state machine is in [`session`], pure.

pub mod forwarded;
pub mod report;
pub mod session;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use std::os::fd::{AsFd, BorrowedFd};

use loopscope_link::reflector::{
    Answer, DEFAULT_RATE_BURST, DatagramResponder, EchoResponder, ReflectConfig, ReflectEvent,
    Reflector, Request,
};
use loopscope_sys::{
    DeadlineTimer, Readiness, enable_destination_reception, enable_hops_reception, recv_datagram,
    recv_datagrams, set_send_hops, wait_readable,
};
use loopscope_wire::bfd::{
    self as wire, ControlRepr, Diagnostic, EchoRepr, MAX_CONTROL_LEN, SINGLE_HOP_TTL, State,
};
use rand::Rng;

pub use forwarded::{ForwardedEcho, ForwardedEchoError};
pub use report::*;
use session::{DropReason, Session, SessionConfig, SessionEvent};

/// Errors that stop a BFD run before it starts.
#[derive(Debug, thiserror::Error)]
pub enum BfdRunError {
    #[error("cannot bind {address}: {source}")]
    /// A socket could not be bound.
    Bind {
        /// The address asked for.
        address: SocketAddr,
        /// Why the bind failed.
        source: io::Error,
    },
    #[error("no free source port in 49152..=65535 on {0} (RFC 5881 §4)")]
    /// Every port of the source range is taken.
    NoSourcePort(IpAddr),
    #[error("cannot run under SCHED_FIFO (needs root or CAP_SYS_NICE): {0}")]
    /// `--realtime` was refused.
    Realtime(io::Error),
    #[error("echo through the forwarding plane: {0}")]
    /// The forwarded echo cannot run.
    Echo(#[from] ForwardedEchoError),
    #[error("{0}")]
    /// Any other socket error.
    Io(#[from] io::Error),
}

/// The SCHED_FIFO priority of `--realtime`: above ordinary processes, below the kernel's own
/// threaded interrupt handlers (50).
const REALTIME_PRIORITY: u8 = 10;

/// The receive queue asked for on a far end's socket (SO_RCVBUF).
const RECEIVE_QUEUE: usize = 4 << 20;

/// Receive buffers hold any datagram, so an oversized one is seen whole and refused.
const RECEIVE_BUFFER: usize = 2048;

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        })
}

fn unspecified_like(peer: IpAddr) -> IpAddr {
    match peer {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    }
}

/// `ip`:`port`, with the interface `scope` when `ip` is an IPv6 link-local address, which
/// means nothing without one (RFC 4007 §6).
pub fn scoped(ip: IpAddr, port: u16, scope: u32) -> SocketAddr {
    match ip {
        IpAddr::V6(v6) if v6.is_unicast_link_local() => {
            SocketAddr::V6(std::net::SocketAddrV6::new(v6, port, 0, scope))
        }
        _ => SocketAddr::new(ip, port),
    }
}

/// The interface of a scoped IPv6 address (0: none).
fn scope_of(address: SocketAddr) -> u32 {
    match address {
        SocketAddr::V6(v6) => v6.scope_id(),
        SocketAddr::V4(_) => 0,
    }
}

/// Whether `from` is `peer`: the same address, and for a link-local one the same interface.
fn is_peer(from: SocketAddr, peer: SocketAddr) -> bool {
    from.ip() == peer.ip() && (scope_of(peer) == 0 || scope_of(from) == scope_of(peer))
}

/// The socket a session sends from: a source port in 49152..=65535 (RFC 5881 §4), TTL 255.
pub fn bind_source(local: IpAddr) -> Result<UdpSocket, BfdRunError> {
    bind_source_scoped(local, 0)
}

/// [`bind_source`] on a link-local address of interface `scope`.
pub fn bind_source_scoped(local: IpAddr, scope: u32) -> Result<UdpSocket, BfdRunError> {
    let mut rng = rand::rng();
    for _ in 0..256 {
        let port = rng.random_range(49152..=65535);
        match UdpSocket::bind(scoped(local, port, scope)) {
            Ok(socket) => {
                set_send_hops(&socket, SINGLE_HOP_TTL)?;
                return Ok(socket);
            }
            Err(error) if error.kind() == io::ErrorKind::AddrInUse => continue,
            Err(source) => {
                return Err(BfdRunError::Bind {
                    address: scoped(local, port, scope),
                    source,
                });
            }
        }
    }
    Err(BfdRunError::NoSourcePort(local))
}

/// A receiving socket on a well-known port that reports each datagram's TTL.
pub fn bind_receiver(address: SocketAddr) -> Result<UdpSocket, BfdRunError> {
    let socket =
        UdpSocket::bind(address).map_err(|source| BfdRunError::Bind { address, source })?;
    enable_hops_reception(&socket)?;
    // A responder of 1,000 sessions at 100 ms receives 10,000 packets a second, and the
    // default buffer (about 200 KB, some 270 packets) overflows when the host delays it by
    // 30 ms: sessions then fall for the host's sake. The kernel caps this at rmem_max.
    let _ = rustix::net::sockopt::set_socket_recv_buffer_size(&socket, RECEIVE_QUEUE);
    // Replies (S-BFD, echo) leave from this socket too.
    set_send_hops(&socket, SINGLE_HOP_TTL)?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}

/// Waits for `socket` until `deadline` (or 100 ms, so the stop flag is seen). Returns whether
/// a datagram is waiting.
fn wait_until(socket: &UdpSocket, deadline: Option<Instant>) -> io::Result<bool> {
    let cap = Instant::now() + Duration::from_millis(100);
    let until = deadline.map_or(cap, |d| d.min(cap));
    let timeout = until.saturating_duration_since(Instant::now());
    Ok(wait_readable(socket, Some(timeout))? == Readiness::Ready)
}

/// Waits until any of `fds` is readable, or 100 ms, so the stop flag is seen; the precise
/// deadline is a [`DeadlineTimer`] among `fds`.
fn wait_any(fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let mut polled: Vec<PollFd<'_>> = fds
        .iter()
        .map(|fd| PollFd::new(fd, PollFlags::IN))
        .collect();
    let cap = Timespec {
        tv_sec: 0,
        tv_nsec: 100_000_000,
    };
    match poll(&mut polled, Some(&cap)) {
        Ok(_) | Err(rustix::io::Errno::INTR) => Ok(()),
        Err(error) => Err(error.into()),
    }
}

/// The event of a state change: `change` is (from, to, the local diagnostic after it),
/// `remote` the state and diagnostic of the packet that caused it, `since_last_rx` the time
/// from the last packet for a Detection Time expiry.
fn state_change(
    peer: String,
    since_start: Duration,
    change: (State, State, Diagnostic),
    remote: Option<(State, Diagnostic)>,
    since_last_rx: Option<Duration>,
) -> StateChange {
    let (from, to, diagnostic) = change;
    StateChange {
        peer,
        local: None,
        t_s: since_start.as_secs_f64(),
        unix_ms: unix_ms(),
        from: from.to_string(),
        to: to.to_string(),
        diagnostic: diagnostic.name(),
        diagnostic_code: diagnostic.code(),
        remote_state: remote.map(|(state, _)| state.to_string()),
        remote_diagnostic: remote.map(|(_, diag)| diag.name()),
        remote_diagnostic_code: remote.map(|(_, diag)| diag.code()),
        detection_ms: since_last_rx.map(|d| d.as_secs_f64() * 1e3),
    }
}

/// Counts of dropped packets by reason, as JSON's `dropped` object.
#[derive(Debug, Default, Clone)]
pub struct DropCounts(pub BTreeMap<&'static str, u64>);

/// Dropped packets reported one by one, per reason; past this they are only counted, so a
/// flood of bad packets cannot flood the output.
const DROPS_REPORTED: u64 = 10;

impl DropCounts {
    /// Counts a drop; returns whether it is among the first few of its reason.
    fn add(&mut self, reason: DropReason) -> bool {
        let count = self.0.entry(reason.name()).or_default();
        *count += 1;
        *count <= DROPS_REPORTED
    }

    /// Counts a drop and reports it while under [`DROPS_REPORTED`].
    fn report(
        &mut self,
        reason: DropReason,
        from: SocketAddr,
        on_event: &mut impl FnMut(BfdEvent),
    ) {
        if self.add(reason) {
            on_event(BfdEvent::Dropped(Dropped {
                from: from.to_string(),
                reason: reason.name(),
            }));
        }
    }
    /// Drops of every reason together.
    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }
}

/// Checks the TTL (single hop: 255, RFC 5881 §5) and parses.
fn accept(bytes: &[u8], hops: Option<u8>, single_hop: bool) -> Result<ControlRepr, DropReason> {
    if single_hop && hops != Some(SINGLE_HOP_TTL) {
        return Err(DropReason::Ttl);
    }
    ControlRepr::parse_bytes(bytes).map_err(|error| DropReason::of(&error))
}

/// A parameter change the speaker makes during its run, through a Poll Sequence.
#[derive(Debug, Clone, Copy)]
pub struct Retime {
    /// How long after the start the change is made.
    pub after: Duration,
    /// The new Desired Min TX Interval.
    pub desired_min_tx: Duration,
    /// The new Required Min RX Interval.
    pub required_min_rx: Duration,
    /// The new Detect Mult.
    pub detect_mult: u8,
}

/// What `loopscope bfd` runs.
#[derive(Debug, Clone)]
pub struct SpeakerConfig {
    /// The peer (its address and the port to send to).
    pub peer: SocketAddr,
    /// The address to receive on and send from (unspecified: any).
    pub local: Option<IpAddr>,
    /// RFC 5883 multihop: no TTL check on receive.
    pub multihop: bool,
    /// The session parameters.
    pub session: SessionConfig,
    /// Stop after this many Control packets sent.
    pub count: Option<u64>,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// A parameter change during the run.
    pub retime: Option<Retime>,
    /// Send echo packets at this interval once Up.
    pub echo: Option<Duration>,
    /// How the echo packets come back.
    pub echo_via: EchoVia,
    /// Demand mode: start a Poll Sequence this often to check the path (RFC 5880 §6.6).
    pub demand_poll: Option<Duration>,
    /// Run the sending thread under SCHED_FIFO (needs CAP_SYS_NICE).
    pub realtime: bool,
}

/// Runs a session with `config.peer` until stopped, reporting each event to `on_event`.
pub fn speak(
    config: &SpeakerConfig,
    stop: &AtomicBool,
    mut on_event: impl FnMut(BfdEvent),
) -> Result<SpeakerSummary, BfdRunError> {
    let local = config
        .local
        .unwrap_or_else(|| unspecified_like(config.peer.ip()));
    let scope = scope_of(config.peer);
    let receiver = bind_receiver(scoped(local, config.peer.port(), scope))?;
    let sender = bind_source_scoped(local, scope)?;
    if config.realtime {
        loopscope_sys::set_realtime_priority(REALTIME_PRIORITY).map_err(BfdRunError::Realtime)?;
    }
    // Every wake-up is at an absolute deadline (RFC 5880 §6.8.7's schedule), so a late one
    // does not push the next.
    let timer = DeadlineTimer::new()?;
    let mut echo_path = match config.echo {
        Some(_) => Some(EchoLoop::open(config, local)?),
        None => None,
    };
    let start = Instant::now();
    let discriminator = rand::rng().random_range(1..=u32::MAX);
    let mut session = Session::new(config.session.clone(), discriminator, start);
    let mut stats = SpeakerStats::new(config, discriminator, start);
    if let Some(path) = &echo_path {
        stats.echo.via = path.via();
    }
    on_event(BfdEvent::Started(Started {
        peer: config.peer.to_string(),
        local: sender.local_addr()?.to_string(),
        my_discriminator: discriminator,
        multihop: config.multihop,
        passive: config.session.passive,
    }));
    let mut buffer = [0u8; RECEIVE_BUFFER];
    let mut out = [0u8; MAX_CONTROL_LEN];
    let mut retimed = false;
    let mut echo_next: Option<Instant> = None;
    let mut echo_sequence = 0u64;
    // While echoes are out: when the last came back (or the first left), and the Detection
    // Time.
    let mut echo_watch: Option<(Instant, Duration)> = None;
    let mut demand_poll_next: Option<Instant> = None;
    loop {
        let now = Instant::now();
        if stop.load(Ordering::SeqCst)
            || config.duration.is_some_and(|d| now >= start + d)
            || config.count.is_some_and(|c| stats.sent >= c)
        {
            break;
        }
        if let Some(retime) = config.retime
            && !retimed
            && now >= start + retime.after
        {
            retimed = true;
            session.change_parameters(
                now,
                retime.desired_min_tx,
                retime.required_min_rx,
                retime.detect_mult,
            );
        }
        session.on_timer(now);
        stats.absorb(&mut session, now, &mut on_event);
        // Demand mode: the peer is silent, and a Poll Sequence now and then checks the path.
        if let Some(every) = config.demand_poll {
            if !session.local_demand_active() {
                demand_poll_next = None;
            } else if let Some(at) = demand_poll_next {
                if now >= at && !session.poll_active() {
                    session.start_poll(now);
                    stats.demand_polls += 1;
                    stats.demand_poll_pending = true;
                    demand_poll_next = Some(now + every);
                }
            } else {
                demand_poll_next = Some(now + every);
            }
        }
        while let Some(len) = session.transmit_due(Instant::now(), &mut out) {
            let scheduled = session.last_scheduled();
            match sender.send_to(&out[..len], config.peer) {
                Ok(_) => {
                    stats.sent += 1;
                    if let Some(due) = scheduled {
                        stats.record_lateness(Instant::now().saturating_duration_since(due));
                    }
                }
                Err(_) => stats.send_errors += 1,
            }
            stats.absorb(&mut session, Instant::now(), &mut on_event);
        }
        // The echo function (RFC 5880 §6.4): only while Up and when the peer accepts echoes.
        if let (Some(interval), Some(path)) = (config.echo, echo_path.as_mut()) {
            let now = Instant::now();
            let up = session.state() == State::Up && !session.remote_min_echo_rx().is_zero();
            if !up {
                echo_next = None;
                echo_watch = None;
            } else if echo_next.is_none_or(|at| now >= at) {
                let pace = interval.max(session.remote_min_echo_rx());
                echo_next = Some(now + pace);
                let echo = EchoRepr {
                    discriminator,
                    sequence: echo_sequence + 1,
                    sent_ns: u64::try_from(now.duration_since(start).as_nanos()).unwrap_or(0),
                };
                if path.send(&echo, &mut on_event)? {
                    echo_sequence += 1;
                    stats.echo.sent += 1;
                    // The echo Detection Time is a local matter (RFC 5880 §6.8.5): ours is
                    // Detect Mult echo intervals without a packet back, counted from the
                    // first packet sent.
                    let detection = pace * u32::from(config.session.detect_mult.max(1));
                    let watch = echo_watch.get_or_insert((now, detection));
                    watch.1 = detection;
                }
            }
            while let Some((echo, ttl)) = path.receive(discriminator, &mut buffer)? {
                let now = Instant::now();
                let now_ns = u64::try_from(now.duration_since(start).as_nanos()).unwrap_or(0);
                let rtt = Duration::from_nanos(now_ns.saturating_sub(echo.sent_ns));
                stats.echo.record(rtt);
                if let Some(watch) = echo_watch.as_mut() {
                    watch.0 = now;
                }
                on_event(BfdEvent::EchoReply(EchoReply {
                    sequence: echo.sequence,
                    rtt_ms: rtt.as_secs_f64() * 1e3,
                    ttl,
                }));
            }
            if let Some((since, detection)) = echo_watch
                && session.state() == State::Up
                && Instant::now() >= since + detection
            {
                echo_watch = None;
                echo_next = None;
                stats.echo.failures += 1;
                session.echo_failed(Instant::now());
                stats.absorb(&mut session, Instant::now(), &mut on_event);
            }
        }
        let mut deadline = session.next_deadline();
        if let Some(at) = echo_next {
            deadline = Some(deadline.map_or(at, |d| d.min(at)));
        }
        if let Some(retime) = config.retime
            && !retimed
        {
            let at = start + retime.after;
            deadline = Some(deadline.map_or(at, |d| d.min(at)));
        }
        if let Some(duration) = config.duration {
            let at = start + duration;
            deadline = Some(deadline.map_or(at, |d| d.min(at)));
        }
        if let Some(at) = demand_poll_next {
            deadline = Some(deadline.map_or(at, |d| d.min(at)));
        }
        match deadline {
            Some(at) => timer.arm(at)?,
            None => timer.disarm()?,
        }
        match &echo_path {
            Some(echo) => wait_any(&[receiver.as_fd(), timer.as_fd(), echo.as_fd()])?,
            None => wait_any(&[receiver.as_fd(), timer.as_fd()])?,
        }
        timer.acknowledge()?;
        loop {
            let got = match recv_datagram(&receiver, &mut buffer) {
                Ok(got) => got,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => break,
                Err(error) => return Err(error.into()),
            };
            let now = Instant::now();
            if !got.from.is_some_and(|from| is_peer(from, config.peer)) {
                stats.from_others += 1;
                continue;
            }
            stats.received += 1;
            let bytes = &buffer[..got.len];
            let from = got.from.unwrap_or(config.peer);
            let result = accept(bytes, got.ttl, !config.multihop)
                .and_then(|repr| session.receive(now, bytes, &repr).map(|()| repr));
            match result {
                Ok(repr) => stats.on_valid(&session, &repr, now),
                Err(reason) => stats.dropped.report(reason, from, &mut on_event),
            }
            stats.absorb(&mut session, now, &mut on_event);
        }
    }
    // Leaving: tell the peer, so it goes Down at once with diagnostic 7 instead of timing out
    // (RFC 5880 §6.8.16).
    let was = session.state();
    session.admin_down(Instant::now());
    if let Some(len) = session.transmit_due(Instant::now(), &mut out)
        && sender.send_to(&out[..len], config.peer).is_ok()
    {
        stats.sent += 1;
    }
    Ok(stats.finish(&session, was))
}

/// The speaker's running figures.
struct SpeakerStats {
    peer: String,
    start: Instant,
    discriminator: u32,
    sent: u64,
    received: u64,
    send_errors: u64,
    from_others: u64,
    dropped: DropCounts,
    came_up_after: Option<Duration>,
    up_since: Option<Instant>,
    uptime: Duration,
    flaps: u64,
    last_valid: Option<Instant>,
    interarrival: Histogram<u64>,
    promised_us: u64,
    over_promised: u64,
    missed: u64,
    /// Gaps counted by their ratio to the promised interval: below 75 %, 75-100 %, 100-150 %,
    /// 150-200 %, above 200 %.
    gap_buckets: [u64; 5],
    detections: Vec<Duration>,
    negotiated: Option<Negotiated>,
    states: Vec<StateChange>,
    echo: EchoStats,
    tx_late: Histogram<u64>,
    realtime: bool,
    demand_polls: u64,
    /// A demand Poll is out: its Final counts as an answer.
    demand_poll_pending: bool,
    demand_poll_times_ms: Vec<f64>,
}

impl SpeakerStats {
    fn new(config: &SpeakerConfig, discriminator: u32, start: Instant) -> Self {
        SpeakerStats {
            peer: config.peer.to_string(),
            start,
            discriminator,
            sent: 0,
            received: 0,
            send_errors: 0,
            from_others: 0,
            dropped: DropCounts::default(),
            came_up_after: None,
            up_since: None,
            uptime: Duration::ZERO,
            flaps: 0,
            last_valid: None,
            interarrival: Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds"),
            promised_us: 0,
            over_promised: 0,
            missed: 0,
            gap_buckets: [0; 5],
            detections: Vec::new(),
            negotiated: None,
            states: Vec::new(),
            echo: EchoStats::default(),
            tx_late: Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds"),
            realtime: config.realtime,
            demand_polls: 0,
            demand_poll_pending: false,
            demand_poll_times_ms: Vec::new(),
        }
    }

    fn record_lateness(&mut self, late: Duration) {
        let us = u64::try_from(late.as_micros()).unwrap_or(u64::MAX);
        // The histogram starts at 1 us; on time is recorded as its lowest bucket.
        let _ = self.tx_late.record(us.max(1));
    }

    /// A valid packet: its gap from the previous one counts while both ends are Up and it is
    /// a periodic packet (a Final answers a Poll out of schedule).
    fn on_valid(&mut self, session: &Session, repr: &ControlRepr, now: Instant) {
        let periodic = !repr.final_;
        if periodic
            && session.state() == State::Up
            && repr.state == State::Up
            && let Some(last) = self.last_valid
        {
            let gap = now.saturating_duration_since(last);
            let gap_us = u64::try_from(gap.as_micros()).unwrap_or(u64::MAX).max(1);
            let _ = self.interarrival.record(gap_us);
            let promised = u64::try_from(session.rx_interval().as_micros()).unwrap_or(u64::MAX);
            self.promised_us = promised;
            if promised > 0 {
                if gap_us > promised {
                    self.over_promised += 1;
                }
                let percent = gap_us.saturating_mul(100) / promised;
                let bucket = match percent {
                    0..75 => 0,
                    75..=100 => 1,
                    101..=150 => 2,
                    151..=200 => 3,
                    _ => 4,
                };
                self.gap_buckets[bucket] += 1;
                // Packets the peer should have sent in the gap and did not: the gap in whole
                // intervals, rounded, less the one that arrived.
                self.missed += ((gap_us + promised / 2) / promised).saturating_sub(1);
            }
        }
        if periodic && session.state() == State::Up && repr.state == State::Up {
            self.last_valid = Some(now);
        } else {
            self.last_valid = None;
        }
    }

    fn absorb(&mut self, session: &mut Session, now: Instant, on_event: &mut impl FnMut(BfdEvent)) {
        for event in session.drain_events() {
            match event {
                SessionEvent::StateChange {
                    from,
                    to,
                    diagnostic,
                    remote,
                    since_last_rx,
                } => {
                    if to == State::Up {
                        self.came_up_after.get_or_insert(now - self.start);
                        self.up_since = Some(now);
                    }
                    if from == State::Up {
                        // A Poll unanswered when the session fell is not answered later.
                        self.demand_poll_pending = false;
                        if let Some(since) = self.up_since.take() {
                            self.uptime += now.saturating_duration_since(since);
                        }
                        if to != State::AdminDown {
                            self.flaps += 1;
                        }
                    }
                    self.last_valid = None;
                    if let Some(detected) = since_last_rx {
                        self.detections.push(detected);
                    }
                    let change = state_change(
                        self.peer.clone(),
                        now.duration_since(self.start),
                        (from, to, diagnostic),
                        remote,
                        since_last_rx,
                    );
                    self.states.push(change.clone());
                    on_event(BfdEvent::State(change));
                }
                SessionEvent::PollCompleted { took } => {
                    if std::mem::take(&mut self.demand_poll_pending) {
                        self.demand_poll_times_ms.push(took.as_secs_f64() * 1e3);
                    }
                    on_event(BfdEvent::Poll(PollDone {
                        peer: self.peer.clone(),
                        took_ms: took.as_secs_f64() * 1e3,
                    }));
                }
                SessionEvent::RemoteParameters {
                    desired_min_tx_us,
                    required_min_rx_us,
                    detect_mult,
                } => on_event(BfdEvent::RemoteParameters(RemoteParameters {
                    peer: self.peer.clone(),
                    desired_min_tx_ms: f64::from(desired_min_tx_us) / 1e3,
                    required_min_rx_ms: f64::from(required_min_rx_us) / 1e3,
                    detect_mult,
                })),
            }
        }
        if session.state() == State::Up {
            let negotiated = Negotiated::of(&self.peer, session);
            if self.negotiated.as_ref() != Some(&negotiated) {
                self.negotiated = Some(negotiated.clone());
                on_event(BfdEvent::Negotiated(negotiated));
            }
        }
    }

    fn finish(mut self, session: &Session, final_state: State) -> SpeakerSummary {
        let now = Instant::now();
        if let Some(since) = self.up_since.take() {
            self.uptime += now.saturating_duration_since(since);
        }
        let mut detections: Vec<f64> = self
            .detections
            .iter()
            .map(|d| d.as_secs_f64() * 1e3)
            .collect();
        detections.sort_by(f64::total_cmp);
        let detection_p99_ms = percentile(&detections, 0.99);
        let h = &self.interarrival;
        let have_gaps = !h.is_empty();
        let ms = |us: u64| us as f64 / 1e3;
        let came_up = self.came_up_after.is_some();
        SpeakerSummary {
            peer: self.peer,
            my_discriminator: self.discriminator,
            your_discriminator: session.remote_discriminator(),
            state: final_state.to_string(),
            came_up,
            time_to_up_ms: self.came_up_after.map(|d| d.as_secs_f64() * 1e3),
            uptime_s: self.uptime.as_secs_f64(),
            flaps: self.flaps,
            elapsed_s: now.duration_since(self.start).as_secs_f64(),
            sent: self.sent,
            received: self.received,
            send_errors: self.send_errors,
            from_other_hosts: self.from_others,
            dropped: self.dropped.0,
            negotiated: self.negotiated,
            interarrival_count: h.len(),
            interarrival_min_ms: have_gaps.then(|| ms(h.min())),
            interarrival_p50_ms: have_gaps.then(|| ms(h.value_at_quantile(0.5))),
            interarrival_p99_ms: have_gaps.then(|| ms(h.value_at_quantile(0.99))),
            interarrival_max_ms: have_gaps.then(|| ms(h.max())),
            promised_interval_ms: (self.promised_us > 0).then(|| ms(self.promised_us)),
            over_promised: self.over_promised,
            missed: self.missed,
            interarrival_histogram: [
                "under_75_percent",
                "75_to_100_percent",
                "100_to_150_percent",
                "150_to_200_percent",
                "over_200_percent",
            ]
            .into_iter()
            .zip(self.gap_buckets)
            .collect(),
            detections: detections.len() as u64,
            detection_p99_ms,
            echo: (self.echo.sent > 0).then(|| self.echo.summary()),
            tx_late_count: self.tx_late.len(),
            tx_late_p50_us: (!self.tx_late.is_empty()).then(|| self.tx_late.value_at_quantile(0.5)),
            tx_late_p99_us: (!self.tx_late.is_empty())
                .then(|| self.tx_late.value_at_quantile(0.99)),
            tx_late_max_us: (!self.tx_late.is_empty()).then(|| self.tx_late.max()),
            realtime: self.realtime,
            demand_polls: self.demand_polls,
            demand_polls_answered: self.demand_poll_times_ms.len() as u64,
            demand_poll_p99_ms: {
                self.demand_poll_times_ms.sort_by(f64::total_cmp);
                percentile(&self.demand_poll_times_ms, 0.99)
            },
            state_changes: self.states,
            passed: came_up && self.flaps == 0,
        }
    }
}

fn percentile(sorted: &[f64], quantile: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    // Nearest rank.
    let rank = ((quantile * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

/// Echo round trips.
#[derive(Debug, Default)]
struct EchoStats {
    sent: u64,
    rtts_us: Vec<u64>,
    via: &'static str,
    failures: u64,
}

impl EchoStats {
    fn record(&mut self, rtt: Duration) {
        self.rtts_us
            .push(u64::try_from(rtt.as_micros()).unwrap_or(u64::MAX));
    }

    fn summary(&self) -> EchoSummary {
        let mut sorted: Vec<f64> = self.rtts_us.iter().map(|&us| us as f64 / 1e3).collect();
        sorted.sort_by(f64::total_cmp);
        let received = sorted.len() as u64;
        EchoSummary {
            sent: self.sent,
            received,
            lost: self.sent.saturating_sub(received),
            rtt_min_ms: sorted.first().copied(),
            rtt_p50_ms: percentile(&sorted, 0.5),
            rtt_p99_ms: percentile(&sorted, 0.99),
            rtt_max_ms: sorted.last().copied(),
            via: self.via,
            failures: self.failures,
        }
    }
}

/// How the echo function's packets come back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EchoVia {
    /// Through the peer's forwarding plane (RFC 5881 §4), except toward a peer reached over a
    /// loopback interface, where only `reflect --bfd-echo` on its echo port can loop them.
    #[default]
    Auto,
    /// Through the peer's forwarding plane: to its link-layer address, with our own address
    /// as IP source and destination.
    Forwarding,
    /// To the peer's UDP port 3785, where `reflect --bfd-echo` sends them back.
    Port,
}

/// The echo function's sockets: a UDP socket to the peer's echo port, or the raw socket of
/// the forwarded echo.
enum EchoLoop {
    Port {
        socket: UdpSocket,
        to: SocketAddr,
        announced: bool,
    },
    Forwarding(Box<ForwardedEcho>),
}

impl EchoLoop {
    fn open(config: &SpeakerConfig, local: IpAddr) -> Result<Self, BfdRunError> {
        let scope = match config.peer {
            SocketAddr::V6(v6) => Some(v6.scope_id()),
            SocketAddr::V4(_) => None,
        };
        let forwarded = match config.echo_via {
            EchoVia::Port => None,
            EchoVia::Forwarding => Some(ForwardedEcho::open(config.peer, config.local, scope)?),
            EchoVia::Auto => match ForwardedEcho::open(config.peer, config.local, scope) {
                Ok(echo) => Some(echo),
                Err(ForwardedEchoError::Loopback { .. }) => None,
                Err(error) => return Err(error.into()),
            },
        };
        if let Some(echo) = forwarded {
            return Ok(EchoLoop::Forwarding(Box::new(echo)));
        }
        let socket = bind_source_scoped(local, scope.unwrap_or(0))?;
        enable_hops_reception(&socket)?;
        socket.set_nonblocking(true)?;
        let mut to = config.peer;
        to.set_port(wire::ECHO_PORT);
        Ok(EchoLoop::Port {
            socket,
            to,
            announced: false,
        })
    }

    fn via(&self) -> &'static str {
        match self {
            EchoLoop::Port { .. } => "port",
            EchoLoop::Forwarding(_) => "forwarding",
        }
    }

    /// Sends one echo packet; `Ok(false)` when none could leave (the forwarded echo waits for
    /// the peer's link-layer address). The path is reported before the first.
    fn send(
        &mut self,
        echo: &EchoRepr,
        on_event: &mut impl FnMut(BfdEvent),
    ) -> Result<bool, BfdRunError> {
        match self {
            EchoLoop::Port {
                socket,
                to,
                announced,
            } => {
                if !*announced {
                    *announced = true;
                    on_event(BfdEvent::EchoPath(EchoPath {
                        via: "port",
                        interface: None,
                        address: to.to_string(),
                        peer_mac: None,
                    }));
                }
                let mut packet = [0u8; wire::ECHO_LEN];
                echo.emit(&mut packet);
                Ok(socket.send_to(&packet, *to).is_ok())
            }
            EchoLoop::Forwarding(forwarded) => {
                let known = forwarded.peer_mac().is_some();
                if !forwarded.resolve()? {
                    return Ok(false);
                }
                if !known && let Some(mac) = forwarded.peer_mac() {
                    on_event(BfdEvent::EchoPath(EchoPath {
                        via: "forwarding",
                        interface: Some(forwarded.interface().to_string()),
                        address: forwarded.local().to_string(),
                        peer_mac: Some(
                            mac.iter()
                                .map(|octet| format!("{octet:02x}"))
                                .collect::<Vec<_>>()
                                .join(":"),
                        ),
                    }));
                }
                Ok(forwarded.send(echo).is_ok_and(|sent| sent))
            }
        }
    }

    /// The next of our echo packets back, with the TTL it came back with.
    fn receive(
        &mut self,
        discriminator: u32,
        buffer: &mut [u8],
    ) -> Result<Option<(EchoRepr, Option<u8>)>, BfdRunError> {
        match self {
            EchoLoop::Port { socket, .. } => {
                while let Ok(got) = recv_datagram(&*socket, buffer) {
                    if let Ok(echo) = EchoRepr::parse(&buffer[..got.len])
                        && echo.discriminator == discriminator
                    {
                        return Ok(Some((echo, got.ttl)));
                    }
                }
                Ok(None)
            }
            EchoLoop::Forwarding(forwarded) => Ok(forwarded
                .try_recv(discriminator, buffer)?
                .map(|reply| (reply.echo, Some(reply.hops)))),
        }
    }
}

impl AsFd for EchoLoop {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            EchoLoop::Port { socket, .. } => socket.as_fd(),
            EchoLoop::Forwarding(forwarded) => forwarded.as_fd(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The passive responder

/// What `reflect --bfd` runs.
#[derive(Debug, Clone)]
pub struct ResponderConfig {
    /// The addresses to answer on, one receiving socket each. An unspecified address answers
    /// on every local address: the address each peer spoke to is read per datagram
    /// (IP_PKTINFO) and its session answers from it.
    pub listen: Vec<SocketAddr>,
    /// RFC 5883 multihop: no TTL check on receive.
    pub multihop: bool,
    /// Each session's parameters (`passive` is forced on).
    pub session: SessionConfig,
    /// Run under SCHED_FIFO (needs CAP_SYS_NICE), so a busy host does not delay the sessions'
    /// packets and timers.
    pub realtime: bool,
}

/// A session's identity before the peer knows our discriminator (RFC 5881 §3 leaves the
/// choice of fields to us): the local address it spoke to, its address, its discriminator.
type PeerKey = (IpAddr, IpAddr, u32);

struct Peer {
    session: Session,
    key: PeerKey,
    to: SocketAddr,
    /// The deadline this session has in the timer heap (others there for it are stale).
    scheduled: Option<Instant>,
}

/// The responder's running state: sessions by our discriminator, a timer heap, one source
/// socket per local address (RFC 5881 §4 allows sessions to share a source port).
struct Responder<'a, F: FnMut(BfdEvent)> {
    config: SessionConfig,
    port: u16,
    start: Instant,
    peers: HashMap<u32, Peer>,
    by_key: HashMap<PeerKey, u32>,
    /// By local address and, for a link-local one, its interface.
    senders: HashMap<(IpAddr, u32), UdpSocket>,
    timers: BinaryHeap<Reverse<(Instant, u32)>>,
    dropped: DropCounts,
    received: u64,
    sent: u64,
    sessions_created: u64,
    ups: u64,
    downs: u64,
    on_event: &'a mut F,
}

impl<F: FnMut(BfdEvent)> Responder<'_, F> {
    fn sender(&mut self, local: IpAddr, scope: u32) -> Result<&UdpSocket, BfdRunError> {
        let scope = match local {
            IpAddr::V6(v6) if v6.is_unicast_link_local() => scope,
            _ => 0,
        };
        match self.senders.entry((local, scope)) {
            std::collections::hash_map::Entry::Occupied(entry) => Ok(entry.into_mut()),
            std::collections::hash_map::Entry::Vacant(entry) => {
                let socket = bind_source_scoped(local, scope)?;
                socket.set_nonblocking(true)?;
                Ok(entry.insert(socket))
            }
        }
    }

    /// Fires the session's timers, sends what is due, reports its events, forgets it after
    /// a Detection Time of silence in Down (its next packet opens a new one; RFC 5880 §6.8.1
    /// leaves this to us), and files its next deadline.
    fn service(&mut self, discriminator: u32, now: Instant) -> Result<(), BfdRunError> {
        let mut out = [0u8; MAX_CONTROL_LEN];
        let Some(peer) = self.peers.get_mut(&discriminator) else {
            return Ok(());
        };
        peer.session.on_timer(now);
        let local = peer.key.0;
        let to = peer.to;
        let mut packets: Vec<([u8; MAX_CONTROL_LEN], usize)> = Vec::new();
        while let Some(len) = peer.session.transmit_due(now, &mut out) {
            packets.push((out, len));
        }
        let events = peer.session.drain_events();
        let forget = peer.session.last_rx().is_none() && peer.session.state() == State::Down;
        let next = peer.session.next_deadline();
        if !packets.is_empty() {
            let sender = self.sender(local, scope_of(to))?;
            let mut sent = 0;
            for (packet, len) in &packets {
                if sender.send_to(&packet[..*len], to).is_ok() {
                    sent += 1;
                }
            }
            self.sent += sent;
        }
        for event in events {
            if let SessionEvent::StateChange {
                from,
                to: state,
                diagnostic,
                remote,
                since_last_rx,
            } = event
            {
                if state == State::Up {
                    self.ups += 1;
                }
                if from == State::Up {
                    self.downs += 1;
                }
                let mut change = state_change(
                    to.to_string(),
                    now.duration_since(self.start),
                    (from, state, diagnostic),
                    remote,
                    since_last_rx,
                );
                change.local = Some(local.to_string());
                (self.on_event)(BfdEvent::State(change));
            }
        }
        if forget {
            if let Some(peer) = self.peers.remove(&discriminator) {
                self.by_key.remove(&peer.key);
            }
            return Ok(());
        }
        if let Some(peer) = self.peers.get_mut(&discriminator)
            && next != peer.scheduled
        {
            peer.scheduled = next;
            if let Some(at) = next {
                self.timers.push(Reverse((at, discriminator)));
            }
        }
        Ok(())
    }

    /// Services every session whose deadline has come; returns the next deadline.
    fn fire_timers(&mut self, now: Instant) -> Result<Option<Instant>, BfdRunError> {
        while let Some(&Reverse((at, discriminator))) = self.timers.peek() {
            if at > now {
                return Ok(Some(at));
            }
            self.timers.pop();
            let Some(peer) = self.peers.get_mut(&discriminator) else {
                continue;
            };
            if peer.scheduled != Some(at) {
                continue; // stale: the session has a newer deadline in the heap
            }
            peer.scheduled = None;
            self.service(discriminator, now)?;
        }
        Ok(None)
    }

    /// One datagram from `from` to `local`.
    fn receive(
        &mut self,
        bytes: &[u8],
        ttl: Option<u8>,
        from: SocketAddr,
        local: IpAddr,
        multihop: bool,
        now: Instant,
    ) -> Result<(), BfdRunError> {
        self.received += 1;
        let repr = match accept(bytes, ttl, !multihop) {
            Ok(repr) => repr,
            Err(reason) => {
                self.dropped.report(reason, from, self.on_event);
                return Ok(());
            }
        };
        // RFC 5880 §6.3: a non-zero Your Discriminator selects the session; zero, the
        // addresses and the peer's discriminator do (RFC 5881 §3).
        let discriminator = if repr.your_discriminator != 0 {
            repr.your_discriminator
        } else {
            let key = (local, from.ip(), repr.my_discriminator);
            match self.by_key.get(&key) {
                Some(&known) => known,
                None => {
                    let mut rng = rand::rng();
                    let mut fresh = rng.random_range(1..=u32::MAX);
                    while self.peers.contains_key(&fresh) {
                        fresh = rng.random_range(1..=u32::MAX);
                    }
                    self.peers.insert(
                        fresh,
                        Peer {
                            session: Session::new(self.config.clone(), fresh, now),
                            key,
                            to: scoped(from.ip(), self.port, scope_of(from)),
                            scheduled: None,
                        },
                    );
                    self.by_key.insert(key, fresh);
                    self.sessions_created += 1;
                    fresh
                }
            }
        };
        let Some(peer) = self.peers.get_mut(&discriminator) else {
            self.dropped
                .report(DropReason::UnknownDiscriminator, from, self.on_event);
            return Ok(());
        };
        if peer.to.ip() != from.ip() || peer.key.0 != local {
            self.dropped
                .report(DropReason::UnknownDiscriminator, from, self.on_event);
            return Ok(());
        }
        if let Err(reason) = peer.session.receive(now, bytes, &repr) {
            self.dropped.report(reason, from, self.on_event);
        }
        self.service(discriminator, now)
    }
}

/// Waits until one of `fds` is readable or `timeout` passes.
fn poll_readable(fds: &[BorrowedFd<'_>], timeout: Duration) -> io::Result<()> {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let mut polled: Vec<PollFd<'_>> = fds
        .iter()
        .map(|fd| PollFd::new(fd, PollFlags::IN))
        .collect();
    let timeout = Timespec {
        tv_sec: i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX),
        tv_nsec: i64::from(timeout.subsec_nanos()),
    };
    match poll(&mut polled, Some(&timeout)) {
        Ok(_) | Err(rustix::io::Errno::INTR) => Ok(()),
        Err(error) => Err(error.into()),
    }
}

/// Answers every peer that opens a session with us on any of `config.listen`, until stopped;
/// one event per state change. Timers live in a heap, so a wake-up costs the sessions due,
/// not all of them.
pub fn respond(
    config: &ResponderConfig,
    stop: &AtomicBool,
    mut on_event: impl FnMut(BfdEvent),
) -> Result<ResponderSummary, BfdRunError> {
    if config.realtime {
        loopscope_sys::set_realtime_priority(REALTIME_PRIORITY).map_err(BfdRunError::Realtime)?;
    }
    let mut receivers = Vec::with_capacity(config.listen.len());
    for &listen in &config.listen {
        let socket = bind_receiver(listen)?;
        if listen.ip().is_unspecified() {
            enable_destination_reception(&socket)?;
        }
        on_event(BfdEvent::Listening(Listening {
            endpoint: socket.local_addr()?.to_string(),
            mode: if config.multihop {
                "bfd multihop"
            } else {
                "bfd"
            },
        }));
        receivers.push((listen, socket));
    }
    let port = config
        .listen
        .first()
        .map_or(wire::CONTROL_PORT, SocketAddr::port);
    let mut session_config = config.session.clone();
    session_config.passive = true;
    let start = Instant::now();
    let mut responder = Responder {
        config: session_config,
        port,
        start,
        peers: HashMap::new(),
        by_key: HashMap::new(),
        senders: HashMap::new(),
        timers: BinaryHeap::new(),
        dropped: DropCounts::default(),
        received: 0,
        sent: 0,
        sessions_created: 0,
        ups: 0,
        downs: 0,
        on_event: &mut on_event,
    };
    let mut buffers = vec![[0u8; RECEIVE_BUFFER]; REFLECT_BATCH];
    let mut got = Vec::with_capacity(REFLECT_BATCH);
    while !stop.load(Ordering::SeqCst) {
        let next = responder.fire_timers(Instant::now())?;
        let wait = next.map_or(Duration::from_millis(100), |at| {
            at.saturating_duration_since(Instant::now())
                .min(Duration::from_millis(100))
        });
        let fds: Vec<BorrowedFd<'_>> = receivers.iter().map(|(_, s)| s.as_fd()).collect();
        poll_readable(&fds, wait)?;
        for (listen, socket) in &receivers {
            loop {
                match recv_datagrams(socket, &mut buffers, &mut got) {
                    Ok(_) => {}
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                    Err(error) if error.kind() == io::ErrorKind::Interrupted => break,
                    Err(error) => return Err(error.into()),
                }
                let now = Instant::now();
                for (datagram, buffer) in got.iter().zip(&buffers) {
                    let Some(from) = datagram.from else { continue };
                    let local = if listen.ip().is_unspecified() {
                        datagram.to.unwrap_or(listen.ip())
                    } else {
                        listen.ip()
                    };
                    responder.receive(
                        &buffer[..datagram.len],
                        datagram.ttl,
                        from,
                        local,
                        config.multihop,
                        now,
                    )?;
                }
            }
        }
    }
    // Leaving: every session goes AdminDown, so peers do not wait a Detection Time.
    let now = Instant::now();
    let discriminators: Vec<u32> = responder.peers.keys().copied().collect();
    for discriminator in discriminators {
        if let Some(peer) = responder.peers.get_mut(&discriminator) {
            peer.session.admin_down(now);
        }
        responder.service(discriminator, now)?;
    }
    Ok(ResponderSummary {
        endpoint: config
            .listen
            .iter()
            .map(SocketAddr::to_string)
            .collect::<Vec<_>>()
            .join(","),
        sessions: responder.sessions_created,
        sessions_up: responder
            .peers
            .values()
            .filter(|peer| peer.session.remote_state() == State::Up)
            .count() as u64,
        ups: responder.ups,
        downs: responder.downs,
        received: responder.received,
        sent: responder.sent,
        dropped: responder.dropped.0,
        elapsed_s: start.elapsed().as_secs_f64(),
    })
}

// ---------------------------------------------------------------------------------------------
// Seamless BFD

/// The S-BFD reflector (RFC 7880 §7.2.2, RFC 7881): stateless; answers every Control packet
/// whose Your Discriminator is one of ours.
#[derive(Debug, Clone)]
pub struct ReflectorConfig {
    /// The address and port to answer on (7784 by default).
    pub listen: SocketAddr,
    /// The discriminators answered; packets for others are dropped.
    pub discriminators: Vec<u32>,
    /// The Required Min RX Interval the reflector advertises.
    pub min_rx: Duration,
    /// Packets answered per second per source address (0: no limit), as for every datagram
    /// service of the reflector.
    pub rate_limit_pps: u32,
}

/// Runs the S-BFD reflector until stopped: a responder of the one reflector
/// (`loopscope-link::reflector`), whose batched loop (recvmmsg/sendmmsg) keeps the rules of
/// every datagram service (reserved source ports, echo loops, the per-source rate limit, no
/// reply longer than its request) and counts; [`SbfdResponder`] only answers.
pub fn sbfd_reflect(
    config: &ReflectorConfig,
    stop: &Arc<AtomicBool>,
    on_event: impl FnMut(BfdEvent),
) -> Result<ReflectorSummary, BfdRunError> {
    let responder = SbfdResponder::new(config.discriminators.clone(), config.min_rx);
    let dropped = Arc::clone(&responder.dropped);
    serve_datagrams(
        config.listen,
        Box::new(responder),
        config.rate_limit_pps,
        ("s-bfd reflector", dropped),
        stop,
        on_event,
    )
}

/// Runs one datagram responder on the reflector until stopped, telling where it listens, and
/// sums up in BFD's reflector summary: the loop's refusals join the responder's drops.
fn serve_datagrams(
    listen: SocketAddr,
    responder: Box<dyn DatagramResponder>,
    rate_limit_pps: u32,
    (mode, dropped): (&'static str, Arc<Mutex<DropCounts>>),
    stop: &Arc<AtomicBool>,
    mut on_event: impl FnMut(BfdEvent),
) -> Result<ReflectorSummary, BfdRunError> {
    let start = Instant::now();
    let mut reflector = Reflector::new(ReflectConfig {
        rate_limit_pps,
        rate_burst: (rate_limit_pps / 5).max(DEFAULT_RATE_BURST),
        ..ReflectConfig::default()
    });
    let (endpoint, loop_counts) = reflector
        .add_responder(listen, responder)
        .map_err(|error| BfdRunError::Bind {
            address: listen,
            source: io::Error::other(loopscope_link::link::error_chain(&error)),
        })?;
    on_event(BfdEvent::Listening(Listening {
        endpoint: endpoint.trim_start_matches("udp://").to_owned(),
        mode,
    }));
    // The loop's own failure ends the run; it is this function's error, as before.
    let failure: Arc<Mutex<Option<String>>> = Arc::default();
    let failed = Arc::clone(&failure);
    reflector.run(
        Arc::clone(stop),
        Arc::new(move |event| {
            if let ReflectEvent::Error { what } = event
                && let Ok(mut failed) = failed.lock()
            {
                failed.get_or_insert(what);
            }
        }),
    );
    if let Some(what) = failure.lock().ok().and_then(|mut failed| failed.take()) {
        return Err(BfdRunError::Io(io::Error::other(what)));
    }
    let counts = loop_counts.read();
    let mut dropped = dropped.lock().map(|d| d.0.clone()).unwrap_or_default();
    for (reason, count) in [
        ("refused_source_port", counts.refused_source_port),
        ("refused_rate_limit", counts.refused_rate_limit),
        ("refused_echo_loop", counts.refused_echo_loop),
        ("send_error", counts.send_errors),
    ] {
        if count > 0 {
            *dropped.entry(reason).or_default() += count;
        }
    }
    Ok(ReflectorSummary {
        endpoint: listen.to_string(),
        received: counts.received,
        answered: counts.answered,
        dropped,
        elapsed_s: start.elapsed().as_secs_f64(),
    })
}

/// Datagrams the passive responder reads per system call (recvmmsg).
const REFLECT_BATCH: usize = 64;

/// Readies a far end's socket as BFD wants it: each datagram's TTL reported (the GTSM check),
/// a deep receive queue, replies leaving with TTL 255 (RFC 5881 §5).
fn prepare_far_end(socket: &UdpSocket) -> io::Result<()> {
    enable_hops_reception(socket)?;
    // A responder of 1,000 sessions at 100 ms receives 10,000 packets a second, and the
    // default buffer (about 200 KB, some 270 packets) overflows when the host delays it by
    // 30 ms. The kernel caps this at rmem_max.
    let _ = rustix::net::sockopt::set_socket_recv_buffer_size(socket, RECEIVE_QUEUE);
    set_send_hops(socket, SINGLE_HOP_TTL)
}

/// The S-BFD reflector's answers (RFC 7880 §7.2.2), as a responder of the one reflector.
pub struct SbfdResponder {
    discriminators: Vec<u32>,
    min_rx: Duration,
    dropped: Arc<Mutex<DropCounts>>,
}

impl SbfdResponder {
    /// Answers Control packets for `discriminators`, advertising `min_rx`.
    pub fn new(discriminators: Vec<u32>, min_rx: Duration) -> Self {
        SbfdResponder {
            discriminators,
            min_rx,
            dropped: Arc::default(),
        }
    }

    fn drop(&self, reason: DropReason) -> Answer {
        if let Ok(mut dropped) = self.dropped.lock() {
            dropped.add(reason);
        }
        Answer::Silent
    }
}

impl DatagramResponder for SbfdResponder {
    fn prepare(&mut self, socket: &UdpSocket) -> io::Result<()> {
        prepare_far_end(socket)
    }

    fn respond(&mut self, request: &Request<'_>, reply: &mut [u8]) -> Answer {
        let repr = match accept(request.bytes, request.ttl, false) {
            Ok(repr) => repr,
            Err(reason) => return self.drop(reason),
        };
        if !self.discriminators.contains(&repr.your_discriminator) {
            return self.drop(DropReason::UnknownDiscriminator);
        }
        if repr.auth.is_some() {
            // No keys are configured on the reflector.
            return self.drop(DropReason::AuthMismatch);
        }
        let mut answer = [0u8; MAX_CONTROL_LEN];
        match sbfd_answer(&repr, self.min_rx, &mut answer) {
            // Never longer than the request: a request carries at least the 24-octet base.
            Some(len) if len <= reply.len() => {
                reply[..len].copy_from_slice(&answer[..len]);
                Answer::Reply { len, dscp: None }
            }
            _ => self.drop(DropReason::Malformed),
        }
    }
}

/// The reflector's answer (RFC 7880 §7.2.2): the discriminators swapped, state Up, the
/// initiator's Desired Min TX and Detect Mult copied, our Required Min RX, no echo, P answered
/// with F.
pub fn sbfd_answer(
    repr: &ControlRepr,
    min_rx: Duration,
    out: &mut [u8; MAX_CONTROL_LEN],
) -> Option<usize> {
    let answer = ControlRepr {
        diagnostic: Diagnostic::None,
        state: State::Up,
        poll: false,
        final_: repr.poll,
        control_plane_independent: false,
        demand: false,
        detect_mult: repr.detect_mult,
        my_discriminator: repr.your_discriminator,
        your_discriminator: repr.my_discriminator,
        desired_min_tx_us: repr.desired_min_tx_us,
        required_min_rx_us: session::micros(min_rx),
        required_min_echo_rx_us: 0,
        auth: None,
    };
    answer.emit(out).ok()
}

/// An S-BFD initiator's probe (RFC 7880 §7.2.1): state Up, the Demand bit set (the reflector
/// sends nothing of its own), our discriminator and the reflector's.
pub fn sbfd_probe(mine: u32, reflector: u32, interval: Duration, detect_mult: u8) -> ControlRepr {
    ControlRepr {
        diagnostic: Diagnostic::None,
        state: State::Up,
        poll: false,
        final_: false,
        control_plane_independent: false,
        demand: true,
        detect_mult: detect_mult.max(1),
        my_discriminator: mine,
        your_discriminator: reflector,
        desired_min_tx_us: session::micros(interval),
        required_min_rx_us: 0,
        required_min_echo_rx_us: 0,
        auth: None,
    }
}

/// What `bfd --sbfd DISC` runs.
#[derive(Debug, Clone)]
pub struct InitiatorConfig {
    /// The reflector (its address and port).
    pub peer: SocketAddr,
    /// The address to send from (unspecified: any).
    pub local: Option<IpAddr>,
    /// The reflector's discriminator (Your Discriminator of every probe).
    pub remote_discriminator: u32,
    /// The interval between probes.
    pub interval: Duration,
    /// Probes without an answer before the session is Down.
    pub detect_mult: u8,
    /// Stop after this many probes.
    pub count: Option<u64>,
    /// Stop after this long.
    pub duration: Option<Duration>,
}

/// The S-BFD initiator (RFC 7880 §7.2.1): sends Up packets to the reflector's discriminator;
/// the session is Up while answers come, Down after Detect Mult intervals without one. Each
/// answer's round trip is reported like a ping's.
pub fn sbfd_initiate(
    config: &InitiatorConfig,
    stop: &AtomicBool,
    mut on_event: impl FnMut(BfdEvent),
) -> Result<InitiatorSummary, BfdRunError> {
    let local = config
        .local
        .unwrap_or_else(|| unspecified_like(config.peer.ip()));
    let socket = bind_source_scoped(local, scope_of(config.peer))?;
    enable_hops_reception(&socket)?;
    socket.set_nonblocking(true)?;
    let discriminator = rand::rng().random_range(1..=u32::MAX);
    let start = Instant::now();
    on_event(BfdEvent::Started(Started {
        peer: config.peer.to_string(),
        local: socket.local_addr()?.to_string(),
        my_discriminator: discriminator,
        multihop: false,
        passive: false,
    }));
    let mut outstanding: Option<Instant> = None;
    let mut rtts: Vec<f64> = Vec::new();
    let (mut sent, mut answered) = (0u64, 0u64);
    let mut dropped = DropCounts::default();
    let mut state = State::Down;
    let mut last_answer: Option<Instant> = None;
    let mut flaps = 0u64;
    let mut came_up = false;
    let mut next_tx = start;
    let mut buffer = [0u8; RECEIVE_BUFFER];
    let mut out = [0u8; MAX_CONTROL_LEN];
    let detection = config.interval * u32::from(config.detect_mult.max(1));
    let peer_name = config.peer.to_string();
    let change = |to: State,
                  diagnostic: Diagnostic,
                  now: Instant,
                  state: &mut State,
                  on_event: &mut dyn FnMut(BfdEvent)| {
        let from = std::mem::replace(state, to);
        on_event(BfdEvent::State(state_change(
            peer_name.clone(),
            now.duration_since(start),
            (from, to, diagnostic),
            None,
            None,
        )));
    };
    loop {
        let now = Instant::now();
        let all_sent = config.count.is_some_and(|c| sent >= c);
        // The last probe has no next one to be judged by: it gets the detection time, the
        // wait any probe's answer is allowed (RFC 7880 §7.2.1), not one interval. Ending an
        // interval after it counted an answer the host delayed past that as lost.
        let last_settled_at = outstanding.map_or(next_tx, |at| (at + detection).max(next_tx));
        if stop.load(Ordering::SeqCst)
            || config.duration.is_some_and(|d| now >= start + d)
            || (all_sent && now >= last_settled_at)
        {
            break;
        }
        if state == State::Up && last_answer.is_some_and(|at| now >= at + detection) {
            flaps += 1;
            change(
                State::Down,
                Diagnostic::ControlDetectionTimeExpired,
                now,
                &mut state,
                &mut on_event,
            );
        }
        if now >= next_tx && config.count.is_none_or(|c| sent < c) {
            // S-BFD packets carry no sequence number: an answer is matched to the latest
            // probe, and a probe unanswered when the next leaves counts as lost.
            let probe = sbfd_probe(
                discriminator,
                config.remote_discriminator,
                config.interval,
                config.detect_mult,
            );
            if let Ok(len) = probe.emit(&mut out)
                && socket.send_to(&out[..len], config.peer).is_ok()
            {
                sent += 1;
                outstanding = Some(now);
            }
            next_tx = now + config.interval;
        }
        let wake = if config.count.is_some_and(|c| sent >= c) {
            outstanding.map_or(next_tx, |at| (at + detection).max(next_tx))
        } else {
            next_tx
        };
        if !wait_until(&socket, Some(wake))? {
            continue;
        }
        while let Ok(got) = recv_datagram(&socket, &mut buffer) {
            let now = Instant::now();
            let repr = match accept(&buffer[..got.len], got.ttl, false) {
                Ok(repr) => repr,
                Err(reason) => {
                    dropped.add(reason);
                    continue;
                }
            };
            if repr.your_discriminator != discriminator
                || repr.my_discriminator != config.remote_discriminator
            {
                dropped.add(DropReason::UnknownDiscriminator);
                continue;
            }
            answered += 1;
            last_answer = Some(now);
            if repr.state == State::Up && state != State::Up {
                came_up = true;
                change(State::Up, Diagnostic::None, now, &mut state, &mut on_event);
            } else if repr.state == State::AdminDown && state == State::Up {
                flaps += 1;
                change(
                    State::Down,
                    Diagnostic::NeighborSignaledSessionDown,
                    now,
                    &mut state,
                    &mut on_event,
                );
            }
            if let Some(at) = outstanding.take() {
                let rtt = now.duration_since(at).as_secs_f64() * 1e3;
                rtts.push(rtt);
                on_event(BfdEvent::EchoReply(EchoReply {
                    sequence: sent,
                    rtt_ms: rtt,
                    ttl: None,
                }));
            }
        }
    }
    rtts.sort_by(f64::total_cmp);
    Ok(InitiatorSummary {
        peer: config.peer.to_string(),
        remote_discriminator: config.remote_discriminator,
        state: state.to_string(),
        came_up,
        flaps,
        sent,
        answered,
        lost: sent.saturating_sub(answered),
        rtt_min_ms: rtts.first().copied(),
        rtt_p50_ms: percentile(&rtts, 0.5),
        rtt_p99_ms: percentile(&rtts, 0.99),
        rtt_max_ms: rtts.last().copied(),
        dropped: dropped.0,
        elapsed_s: start.elapsed().as_secs_f64(),
        passed: came_up && flaps == 0,
    })
}

// ---------------------------------------------------------------------------------------------
// The echo function's far end

/// Sends every datagram that arrives on the echo port back where it came from: what a peer's
/// forwarding plane does with BFD echo packets (RFC 5880 §6.4, RFC 5881 §4). The plain echo
/// responder of the one reflector, behind its rules, on a socket readied as BFD's far ends.
pub fn echo_reflect(
    listen: SocketAddr,
    rate_limit_pps: u32,
    stop: &Arc<AtomicBool>,
    on_event: impl FnMut(BfdEvent),
) -> Result<ReflectorSummary, BfdRunError> {
    serve_datagrams(
        listen,
        Box::new(BfdEchoResponder),
        rate_limit_pps,
        ("bfd echo", Arc::default()),
        stop,
        on_event,
    )
}

/// [`EchoResponder`] on a socket readied as BFD's far ends (replies with TTL 255).
struct BfdEchoResponder;

impl DatagramResponder for BfdEchoResponder {
    fn prepare(&mut self, socket: &UdpSocket) -> io::Result<()> {
        prepare_far_end(socket)
    }

    fn respond(&mut self, request: &Request<'_>, reply: &mut [u8]) -> Answer {
        EchoResponder.respond(request, reply)
    }
}

#[cfg(test)]
mod tests;
