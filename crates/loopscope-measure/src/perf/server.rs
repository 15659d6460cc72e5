//! The far end: `loopscope perf --server`. It speaks iperf3's control protocol, so stock
//! `iperf3 -c` clients and loopscope clients both use it, and it serves many tests at once
//! (stock iperf3 serves one).
//!
//! - One thread accepts; each new connection gets a thread that reads its cookie. An unknown
//!   cookie opens a test (that thread becomes the test's control thread); a known one is a
//!   data connection of that test, or one transaction of a `crr` test.
//! - UDP streams say hello to the server's port. The server answers from a new socket bound to
//!   the same port and connected to the client, so the kernel hands that client's later
//!   datagrams to it. UDP hellos carry no cookie: tests from one client address collect their
//!   UDP streams one at a time.
//! - What a client may ask is bounded ([`ServerLimits`]): concurrent tests, streams per test,
//!   block length, buffer memory over all tests, rate, duration. A request over a bound is
//!   refused with iperf3's error number for it (the stock client prints the reason), except
//!   duration and TCP rate, which are capped: the server paces what it sends and reads, and
//!   ends a test that runs past the limit (SERVER_TERMINATE).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::os::fd::AsFd;
use std::os::unix::net::UnixListener;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use loopscope_report::Record;
use loopscope_sys::{Readiness, thread_cpu_time, wait_readable};
use serde::Serialize;
use socket2::{Domain, Protocol, SockRef, Socket, Type};

use super::PerfError;
use super::client::{local_results, worker_cpu};
use super::control::{
    COOKIE_LEN, Control, ControlError, Cookie, Grant, MAX_PARAMS_JSON, State, StreamSock,
    TestParams, TestResults, UDP_HELLO, UDP_HELLO_REPLY, error_code, is_cookie, read_exact_by,
    stream_id,
};
use super::report::format_bytes;
use super::rr;
use super::stream::{DataSocket, Role, RunControl, Stream, WorkerOptions, spawn_worker};

/// Where the server listens.
#[derive(Debug, Clone)]
pub enum Listen {
    /// A TCP address (control and TCP data; UDP data on the same port).
    Tcp(SocketAddr),
    /// A Unix stream socket (control and data).
    Unix(std::os::unix::net::SocketAddr),
}

/// What one client may make the server do.
#[derive(Debug, Clone)]
pub struct ServerLimits {
    /// Tests running at once.
    pub max_tests: usize,
    /// Streams per test (`-P`).
    pub max_streams: u32,
    /// Bytes per write or datagram.
    pub max_length: u64,
    /// Buffer memory over every running test.
    pub max_memory: u64,
    /// Bits per second per direction of one test: UDP asking more is refused; TCP is paced.
    pub max_rate_bps: u64,
    /// Longer tests are ended at this point.
    pub max_duration: Duration,
    /// Socket buffers asked for are cut to this.
    pub max_window: u64,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_tests: 16,
            max_streams: 32,
            max_length: 1 << 20,
            max_memory: 256 << 20,
            max_rate_bps: 40_000_000_000,
            max_duration: Duration::from_secs(600),
            max_window: 16 << 20,
        }
    }
}

/// How a `perf --server` runs: where it listens and what it allows.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Where it listens.
    pub listen: Listen,
    /// What one client may make it do.
    pub limits: ServerLimits,
    /// Serve one test, then stop.
    pub once: bool,
    /// Behave as stock iperf3: no loopscope extension (grants, request-response).
    pub stock_only: bool,
    /// Receive TCP with MSG_TRUNC.
    pub skip_rx_copy: bool,
    /// Send TCP with MSG_ZEROCOPY (reverse and bidir tests).
    pub zerocopy: bool,
}

/// Something worth telling while the server runs.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ServerEvent {
    /// The server is ready for clients.
    Listening {
        /// Where it listens, as an endpoint a client can be given.
        endpoint: String,
    },
    /// A client's test began.
    TestStarted {
        /// The client's control connection address.
        client: String,
        /// `tcp`, `udp` or `unix`.
        protocol: &'static str,
        /// `throughput`, `rr` or `crr`.
        mode: &'static str,
        /// `send`, `receive` or `bidir`, from the client's side.
        direction: &'static str,
        /// Data streams of the test.
        streams: usize,
        /// Bytes per write or datagram.
        length: u64,
    },
    /// A client's test ended.
    TestEnded {
        /// The client's control connection address.
        client: String,
        /// How long it ran, seconds.
        seconds: f64,
        /// Bytes the server received.
        received_bytes: u64,
        /// Bytes the server sent.
        sent_bytes: u64,
        /// Both directions over `seconds`, bits per second.
        bits_per_second: f64,
        /// Request-response transactions served (rr, crr).
        transactions: Option<u64>,
        /// Why the test ended otherwise than by the client's TEST_END.
        #[serde(skip_serializing_if = "Option::is_none")]
        ended_early: Option<String>,
    },
    /// A client was refused (limits, a bad request, a busy server).
    Refused {
        /// The client's control connection address.
        client: String,
        /// Why, in words (the client hears the iperf3 error number).
        reason: String,
    },
}

impl Record for ServerEvent {
    fn kind(&self) -> &'static str {
        "event"
    }

    fn write_human(&self, out: &mut dyn io::Write) -> io::Result<()> {
        match self {
            ServerEvent::Listening { endpoint } => {
                writeln!(out, "perf server listening on {endpoint}")
            }
            ServerEvent::TestStarted {
                client,
                protocol,
                mode,
                direction,
                streams,
                length,
            } => writeln!(
                out,
                "{client}: {mode} test over {protocol}, {streams} stream{}, the client {direction}s, {length}-byte blocks",
                if *streams == 1 { "" } else { "s" },
                direction = if *direction == "receive" {
                    "receive"
                } else if *direction == "bidir" {
                    "send and receive"
                } else {
                    "send"
                },
            ),
            ServerEvent::TestEnded {
                client,
                seconds,
                received_bytes,
                sent_bytes,
                bits_per_second,
                transactions,
                ended_early,
            } => {
                write!(
                    out,
                    "{client}: done after {seconds:.2} s: received {}, sent {}, {}",
                    format_bytes(*received_bytes),
                    format_bytes(*sent_bytes),
                    loopscope_report::format_bit_rate(*bits_per_second)
                )?;
                if let Some(transactions) = transactions {
                    write!(out, ", {transactions} transactions")?;
                }
                match ended_early {
                    Some(why) => writeln!(out, " (ended early: {why})"),
                    None => writeln!(out),
                }
            }
            ServerEvent::Refused { client, reason } => {
                writeln!(out, "{client}: refused: {reason}")
            }
        }
    }
}

/// What the server did, printed when it stops.
#[derive(Debug, Clone, Serialize)]
pub struct ServerSummary {
    /// Where it listened.
    pub endpoint: String,
    /// Tests served.
    pub tests: u64,
    /// Tests refused.
    pub tests_refused: u64,
    /// Bytes received over every test.
    pub received_bytes: u64,
    /// Bytes sent over every test.
    pub sent_bytes: u64,
    /// The most tests that ran at once.
    pub max_concurrent_tests: u64,
}

impl Record for ServerSummary {
    fn kind(&self) -> &'static str {
        "summary"
    }

    fn write_human(&self, out: &mut dyn io::Write) -> io::Result<()> {
        writeln!(
            out,
            "perf server {}: {} test{} served ({} refused), at most {} at once; received {}, sent {}",
            self.endpoint,
            self.tests,
            if self.tests == 1 { "" } else { "s" },
            self.tests_refused,
            self.max_concurrent_tests,
            format_bytes(self.received_bytes),
            format_bytes(self.sent_bytes)
        )
    }
}

/// Where the server tells its events (called from the threads that serve tests).
pub type EventSink = Arc<dyn Fn(ServerEvent) + Send + Sync>;

/// How long a new connection may take to send its cookie, and each setup step.
const COOKIE_TIMEOUT: Duration = Duration::from_secs(5);
const STEP_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections whose cookie is still awaited, at most.
const MAX_GREETING: usize = 256;
const ACCEPT_POLL: Duration = Duration::from_millis(200);

/// A running test, as data connections find it.
struct TestSlot {
    /// Where data connections go while the test collects them, with their accept order.
    streams: Option<mpsc::Sender<(u64, StreamSock)>>,
    /// Set for `crr`: each new connection is one transaction.
    crr: Option<CrrSlot>,
}

#[derive(Clone)]
struct CrrSlot {
    request_length: usize,
    response_length: usize,
    transactions: Arc<AtomicU64>,
    bytes: Arc<AtomicU64>,
    /// Connections routed to this test whose transaction is not yet counted. The response goes
    /// out before the count, so the client can end the test while its last transaction's
    /// handler sits between the two; the end waits for these.
    in_flight: Arc<AtomicU64>,
}

/// How long the end of a `crr` test waits for transactions still being counted (a connection
/// the client abandoned holds its handler until the read fails).
const CRR_SETTLE: Duration = Duration::from_secs(2);

struct Shared {
    options: ServerOptions,
    stop: Arc<AtomicBool>,
    events: EventSink,
    tests: Mutex<HashMap<Cookie, TestSlot>>,
    /// Tests waiting for UDP hellos, by client address.
    udp_waiting: Mutex<HashMap<IpAddr, mpsc::Sender<UdpSocket>>>,
    udp_waiting_changed: Condvar,
    udp_address: Option<SocketAddr>,
    memory_in_use: AtomicU64,
    running: AtomicUsize,
    greeting: AtomicUsize,
    tests_served: AtomicU64,
    tests_refused: AtomicU64,
    received_bytes: AtomicU64,
    sent_bytes: AtomicU64,
    max_running: AtomicU64,
    /// Set when `once` and the one test has ended.
    done: AtomicBool,
}

enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

/// Runs the server until `stop` (or after one test with `once`).
pub fn run_server(
    options: ServerOptions,
    stop: Arc<AtomicBool>,
    events: EventSink,
) -> Result<ServerSummary, PerfError> {
    let (listener, endpoint, udp) = match &options.listen {
        Listen::Tcp(address) => {
            let (listener, udp) = bind_tcp_and_udp(*address)?;
            let bound = listener
                .local_addr()
                .map_err(|e| PerfError::io("cannot read the bound address", e))?;
            (Listener::Tcp(listener), format!("tcp://{bound}"), Some(udp))
        }
        Listen::Unix(address) => {
            let listener = UnixListener::bind_addr(address).map_err(|e| PerfError::Listen {
                endpoint: describe_unix(address),
                source: e,
            })?;
            (Listener::Unix(listener), describe_unix(address), None)
        }
    };
    let shared = Arc::new(Shared {
        udp_address: udp.as_ref().and_then(|u| u.local_addr().ok()),
        options,
        stop,
        events,
        tests: Mutex::new(HashMap::new()),
        udp_waiting: Mutex::new(HashMap::new()),
        udp_waiting_changed: Condvar::new(),
        memory_in_use: AtomicU64::new(0),
        running: AtomicUsize::new(0),
        greeting: AtomicUsize::new(0),
        tests_served: AtomicU64::new(0),
        tests_refused: AtomicU64::new(0),
        received_bytes: AtomicU64::new(0),
        sent_bytes: AtomicU64::new(0),
        max_running: AtomicU64::new(0),
        done: AtomicBool::new(false),
    });
    (shared.events)(ServerEvent::Listening {
        endpoint: endpoint.clone(),
    });
    let udp_thread = match udp {
        Some(udp) => {
            let shared = Arc::clone(&shared);
            Some(
                std::thread::Builder::new()
                    .name("perf-udp-hello".into())
                    .spawn(move || answer_udp_hellos(&shared, &udp))
                    .map_err(|e| PerfError::io("cannot start the UDP thread", e))?,
            )
        }
        None => None,
    };
    accept_loop(&shared, &listener);
    // Let running tests see the stop and end (they send SERVER_TERMINATE).
    while shared.running.load(Ordering::Acquire) > 0 {
        std::thread::sleep(Duration::from_millis(20));
    }
    shared.done.store(true, Ordering::Release);
    if let Some(thread) = udp_thread {
        let _ = thread.join();
    }
    if let (Listener::Unix(_), Listen::Unix(address)) = (&listener, &shared.options.listen)
        && let Some(path) = address.as_pathname()
    {
        let _ = std::fs::remove_file(path);
    }
    Ok(ServerSummary {
        endpoint,
        tests: shared.tests_served.load(Ordering::Relaxed),
        tests_refused: shared.tests_refused.load(Ordering::Relaxed),
        received_bytes: shared.received_bytes.load(Ordering::Relaxed),
        sent_bytes: shared.sent_bytes.load(Ordering::Relaxed),
        max_concurrent_tests: shared.max_running.load(Ordering::Relaxed),
    })
}

fn describe_unix(address: &std::os::unix::net::SocketAddr) -> String {
    use std::os::linux::net::SocketAddrExt;
    if let Some(path) = address.as_pathname() {
        format!("unix:{}", path.display())
    } else if let Some(name) = address.as_abstract_name() {
        format!("unix:@{}", String::from_utf8_lossy(name))
    } else {
        "unix:".into()
    }
}

/// How many ports the kernel may pick before the server gives up finding one free for both
/// TCP and UDP.
const PORT_PICKS: usize = 64;

/// A TCP listener and a UDP socket on the same port number (UDP tests say hello there, as
/// iperf3's do). When the kernel picks the port (port 0) it picks one free for TCP only: TCP
/// and UDP ports are separate spaces, and the UDP port of that number can belong to any other
/// process's socket, a client's ephemeral one for instance (so under a busy test suite a server
/// could fail to start, now and then, with no "listening" line). Then another is picked; the
/// refused listeners are held until one fits, so the kernel cannot hand the same port back.
fn bind_tcp_and_udp(address: SocketAddr) -> Result<(TcpListener, UdpSocket), PerfError> {
    let mut refused = Vec::new();
    loop {
        let listener = listen_tcp(address)?;
        let bound = listener
            .local_addr()
            .map_err(|e| PerfError::io("cannot read the bound address", e))?;
        match bind_udp(bound) {
            Ok(udp) => return Ok((listener, udp)),
            Err(e)
                if address.port() == 0
                    && e.kind() == io::ErrorKind::AddrInUse
                    && refused.len() < PORT_PICKS =>
            {
                refused.push(listener);
            }
            Err(e) => {
                return Err(PerfError::Listen {
                    endpoint: format!("udp://{bound}"),
                    source: e,
                });
            }
        }
    }
}

fn listen_tcp(address: SocketAddr) -> Result<TcpListener, PerfError> {
    let socket = Socket::new(
        Domain::for_address(address),
        Type::STREAM,
        Some(Protocol::TCP),
    )
    .map_err(|e| PerfError::io("cannot open a TCP socket", e))?;
    socket
        .set_reuse_address(true)
        .map_err(|e| PerfError::io("cannot set SO_REUSEADDR", e))?;
    socket
        .bind(&address.into())
        .map_err(|e| PerfError::Listen {
            endpoint: format!("tcp://{address}"),
            source: e,
        })?;
    socket
        .listen(1024)
        .map_err(|e| PerfError::io("cannot listen", e))?;
    Ok(TcpListener::from(socket))
}

fn bind_udp(address: SocketAddr) -> io::Result<UdpSocket> {
    let socket = Socket::new(
        Domain::for_address(address),
        Type::DGRAM,
        Some(Protocol::UDP),
    )?;
    socket.set_reuse_address(true)?;
    socket.bind(&address.into())?;
    Ok(UdpSocket::from(socket))
}

fn stopping(shared: &Shared) -> bool {
    shared.stop.load(Ordering::Relaxed) || shared.done.load(Ordering::Relaxed)
}

fn accept_loop(shared: &Arc<Shared>, listener: &Listener) {
    // Clients open a test's data connections one after the other; the order they were
    // accepted in is the order of the streams (it decides which way each carries data), while
    // the threads that read their cookies may finish in any order.
    let mut accepted_count = 0u64;
    loop {
        if stopping(shared) {
            return;
        }
        let fd = match listener {
            Listener::Tcp(l) => l.as_fd(),
            Listener::Unix(l) => l.as_fd(),
        };
        match wait_readable(fd, Some(ACCEPT_POLL)) {
            Ok(Readiness::Ready) => {}
            _ => continue,
        }
        let accepted = match listener {
            Listener::Tcp(l) => l.accept().map(|(s, _)| StreamSock::Tcp(s)),
            Listener::Unix(l) => l.accept().map(|(s, _)| StreamSock::Unix(s)),
        };
        let Ok(socket) = accepted else {
            continue;
        };
        // Control messages are single bytes: Nagle would hold each one back until the
        // client's delayed ACK (tens of milliseconds), while data already flows. Data
        // connections get the test's own setting once they are known.
        if let StreamSock::Tcp(stream) = &socket {
            let _ = stream.set_nodelay(true);
        }
        if shared.greeting.fetch_add(1, Ordering::AcqRel) >= MAX_GREETING {
            shared.greeting.fetch_sub(1, Ordering::AcqRel);
            continue; // dropped: closes the connection
        }
        accepted_count += 1;
        let order = accepted_count;
        let shared = Arc::clone(shared);
        let spawned = std::thread::Builder::new()
            .name("perf-conn".into())
            .stack_size(256 * 1024)
            .spawn(move || {
                greet(&shared, socket, order);
            });
        if spawned.is_err() {
            // The closure (and its counter decrement) never ran.
            continue;
        }
    }
}

/// Reads a new connection's cookie and routes it. `order` is its place in the accept queue.
fn greet(shared: &Arc<Shared>, socket: StreamSock, order: u64) {
    let mut cookie: Cookie = [0; COOKIE_LEN];
    let read = read_exact_by(
        &socket,
        &mut cookie,
        Some(Instant::now() + COOKIE_TIMEOUT),
        Some(&shared.stop),
        "with its cookie",
    );
    shared.greeting.fetch_sub(1, Ordering::AcqRel);
    if read.is_err() || !is_cookie(&cookie) {
        return; // not a test: close
    }
    let route = {
        let Ok(tests) = shared.tests.lock() else {
            return;
        };
        tests.get(&cookie).map(|slot| {
            // Counted under the lock, so the end of the test (which takes the slot away under
            // it first) sees every connection that will count a transaction.
            if let Some(crr) = &slot.crr {
                crr.in_flight.fetch_add(1, Ordering::AcqRel);
            }
            (slot.streams.clone(), slot.crr.clone())
        })
    };
    match route {
        Some((_, Some(crr))) => {
            if let Ok(true) = rr::respond_once(&socket, crr.request_length, crr.response_length) {
                crr.transactions.fetch_add(1, Ordering::Relaxed);
                crr.bytes
                    .fetch_add(crr.request_length as u64, Ordering::Relaxed);
            }
            crr.in_flight.fetch_sub(1, Ordering::AcqRel);
        }
        Some((Some(streams), None)) => {
            let _ = streams.send((order, socket));
        }
        Some((None, None)) => {} // a test not collecting streams: close
        None => run_test(shared, socket, cookie),
    }
}

/// Hands each UDP hello to the test waiting for streams from that address.
fn answer_udp_hellos(shared: &Shared, socket: &UdpSocket) {
    let _ = socket.set_read_timeout(Some(ACCEPT_POLL));
    let mut buffer = [0u8; 2048];
    while !stopping(shared) {
        let Ok((count, peer)) = socket.recv_from(&mut buffer) else {
            continue;
        };
        if count != UDP_HELLO.len() || buffer[..4] != UDP_HELLO {
            continue;
        }
        let waiter = shared
            .udp_waiting
            .lock()
            .ok()
            .and_then(|w| w.get(&peer.ip()).cloned());
        let (Some(waiter), Some(local)) = (waiter, shared.udp_address) else {
            continue;
        };
        let connected = (|| {
            let stream = bind_udp(local)?;
            stream.connect(peer)?;
            stream.send(&UDP_HELLO_REPLY)?;
            Ok::<_, io::Error>(stream)
        })();
        if let Ok(stream) = connected {
            let _ = waiter.send(stream);
        }
    }
}

/// Why a test's parameters are refused: iperf3's error number and our words.
struct Refusal {
    code: i32,
    reason: String,
}

fn refuse(code: i32, reason: impl Into<String>) -> Refusal {
    Refusal {
        code,
        reason: reason.into(),
    }
}

/// What a test will be, once its parameters passed the limits.
struct Plan {
    params: TestParams,
    length: usize,
    /// Per-stream rate for what the server sends, and for what it reads (TCP).
    send_rate_per_stream: u64,
    receive_rate_per_stream: u64,
    memory: u64,
    duration_cap: Duration,
}

fn plan(shared: &Shared, params: TestParams, is_unix: bool) -> Result<Plan, Refusal> {
    let limits = &shared.options.limits;
    if params.reverse && params.bidirectional {
        return Err(refuse(
            error_code::BOTH_REVERSE_AND_BIDIR,
            "both reverse and bidirectional",
        ));
    }
    if params.udp && is_unix {
        return Err(refuse(
            error_code::PROTOCOL,
            "UDP streams need a TCP control connection",
        ));
    }
    let rr = params.extension.as_ref().and_then(|e| e.request_response);
    if shared.options.stock_only && params.extension.is_some() && rr.is_some() {
        return Err(refuse(
            error_code::PROTOCOL,
            "request-response is a loopscope extension, off on this server (--iperf3)",
        ));
    }
    if rr.is_some() && (params.reverse || params.bidirectional) {
        return Err(refuse(
            error_code::PROTOCOL,
            "request-response runs client to server",
        ));
    }
    if rr.is_some_and(|rr| params.udp && rr.connect_per_transaction) {
        return Err(refuse(error_code::PROTOCOL, "--crr opens TCP connections"));
    }
    if params.parallel == 0 || params.parallel > limits.max_streams {
        return Err(refuse(
            error_code::PARALLEL,
            format!(
                "{} streams asked, at most {} served",
                params.parallel, limits.max_streams
            ),
        ));
    }
    let length = match params.length {
        0 if params.udp => 1460,
        0 => 128 * 1024,
        n => n,
    };
    if params.udp && !(16..=65_507).contains(&length) {
        return Err(refuse(
            error_code::UDP_BLOCK_SIZE,
            format!("{length}-byte datagrams asked (16 to 65507)"),
        ));
    }
    if length > limits.max_length {
        return Err(refuse(
            error_code::BLOCK_SIZE,
            format!(
                "{length}-byte blocks asked, at most {} served",
                limits.max_length
            ),
        ));
    }
    if let Some(rr) = rr
        && (rr.response_length == 0 || rr.response_length > rr::MAX_MESSAGE as u64)
    {
        return Err(refuse(
            error_code::BLOCK_SIZE,
            "response length out of range (1 byte to 1 MiB)",
        ));
    }
    let streams = u64::from(params.parallel) * if params.bidirectional { 2 } else { 1 };
    let asked_rate = params.bandwidth.saturating_mul(u64::from(params.parallel));
    if params.udp
        && limits.max_rate_bps > 0
        && (params.bandwidth == 0 || asked_rate > limits.max_rate_bps)
    {
        return Err(refuse(
            error_code::TOTAL_RATE,
            format!(
                "UDP at {} asked, at most {} per direction served",
                if params.bandwidth == 0 {
                    "an unlimited rate".to_string()
                } else {
                    loopscope_report::format_bit_rate(asked_rate as f64)
                },
                loopscope_report::format_bit_rate(limits.max_rate_bps as f64)
            ),
        ));
    }
    let cap = |asked: u64| -> u64 {
        match (asked, limits.max_rate_bps) {
            (0, limit) => limit,
            (asked, 0) => asked,
            (asked, limit) => asked.min(limit),
        }
    };
    let total_rate = cap(asked_rate);
    let per_stream = total_rate / u64::from(params.parallel).max(1);
    let memory = streams.saturating_mul(length.max(65_536))
        + rr.map_or(0, |rr| rr.response_length.saturating_mul(streams));
    let duration_cap = limits.max_duration;
    Ok(Plan {
        length: length as usize,
        send_rate_per_stream: per_stream,
        // Reading is only held back when a limit applies, so an unlimited TCP test pays
        // nothing for pacing.
        receive_rate_per_stream: if limits.max_rate_bps > 0 && !params.udp {
            per_stream
        } else {
            0
        },
        memory,
        duration_cap,
        params,
    })
}

/// Takes memory from the server's budget; false when there is not enough left.
fn reserve_memory(shared: &Shared, bytes: u64) -> bool {
    shared
        .memory_in_use
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
            let total = used.checked_add(bytes)?;
            (total <= shared.options.limits.max_memory).then_some(total)
        })
        .is_ok()
}

/// Releases what a test held when it ends, however it ends.
struct TestGuard<'a> {
    shared: &'a Shared,
    cookie: Cookie,
    memory: u64,
    counted: bool,
}

impl Drop for TestGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut tests) = self.shared.tests.lock() {
            tests.remove(&self.cookie);
        }
        self.shared
            .memory_in_use
            .fetch_sub(self.memory, Ordering::AcqRel);
        if self.counted {
            self.shared.running.fetch_sub(1, Ordering::AcqRel);
        }
        if self.shared.options.once {
            self.shared.done.store(true, Ordering::Release);
        }
    }
}

/// One test, on its control connection's thread.
fn run_test(shared: &Arc<Shared>, socket: StreamSock, cookie: Cookie) {
    let client = socket.peer_name();
    let is_unix = !socket.is_tcp();
    let client_ip = match &socket {
        StreamSock::Tcp(stream) => stream.peer_addr().ok().map(|a| a.ip()),
        StreamSock::Unix(_) => None,
    };
    let control = Control::new(socket);
    let refused = |reason: String| {
        shared.tests_refused.fetch_add(1, Ordering::Relaxed);
        (shared.events)(ServerEvent::Refused {
            client: client.clone(),
            reason,
        });
    };
    // Admission: a slot among the running tests.
    let running = shared.running.fetch_add(1, Ordering::AcqRel) + 1;
    let mut guard = TestGuard {
        shared,
        cookie,
        memory: 0,
        counted: true,
    };
    if running > shared.options.limits.max_tests
        || (shared.options.once && shared.tests_served.load(Ordering::Relaxed) > 0)
    {
        let _ = control.write_state(State::AccessDenied);
        refused(format!(
            "{} tests already running",
            shared.options.limits.max_tests
        ));
        return;
    }
    shared
        .max_running
        .fetch_max(running as u64, Ordering::Relaxed);
    if let Ok(mut tests) = shared.tests.lock() {
        tests.insert(
            cookie,
            TestSlot {
                streams: None,
                crr: None,
            },
        );
    }
    let setup_deadline = || Some(Instant::now() + STEP_TIMEOUT);
    let params = (|| {
        control.write_state(State::ParamExchange)?;
        let object = control.read_json(
            MAX_PARAMS_JSON,
            setup_deadline(),
            Some(&shared.stop),
            "with the parameters",
        )?;
        Ok::<_, ControlError>(object)
    })();
    let params = match params {
        Ok(object) => match TestParams::from_json(&object) {
            Ok(params) => params,
            Err(error) => {
                let _ = control.write_server_error(error_code::RECEIVE_PARAMS);
                refused(format!("unusable parameters: {error}"));
                return;
            }
        },
        Err(error) => {
            refused(format!("no usable parameters: {error}"));
            return;
        }
    };
    let plan = match plan(shared, params, is_unix) {
        Ok(plan) => plan,
        Err(refusal) => {
            let _ = control.write_server_error(refusal.code);
            refused(refusal.reason);
            return;
        }
    };
    if !reserve_memory(shared, plan.memory) {
        let _ = control.write_server_error(error_code::SERVER_BUSY);
        refused(format!(
            "{} of buffers asked, more than the server has left",
            format_bytes(plan.memory)
        ));
        return;
    }
    guard.memory = plan.memory;
    if plan.params.extension.is_some() && !shared.options.stock_only {
        let grant = Grant {
            max_duration_ms: plan.duration_cap.as_millis() as u64,
            max_rate_bps: shared.options.limits.max_rate_bps,
        };
        if control.write_state(State::Grant).is_err()
            || control.write_json(&grant.to_json()).is_err()
        {
            return;
        }
    }
    let streams = match collect_streams(shared, &control, &plan, cookie, client_ip) {
        Ok(streams) => streams,
        Err(error) => {
            refused(format!("streams not set up: {error}"));
            return;
        }
    };
    shared.tests_served.fetch_add(1, Ordering::Relaxed);
    let outcome = serve(shared, &control, &plan, cookie, &client, streams);
    shared
        .received_bytes
        .fetch_add(outcome.received_bytes, Ordering::Relaxed);
    shared
        .sent_bytes
        .fetch_add(outcome.sent_bytes, Ordering::Relaxed);
    (shared.events)(outcome.event(client));
}

/// Sends CREATE_STREAMS and takes the data connections (or UDP sockets) the client opens.
fn collect_streams(
    shared: &Shared,
    control: &Control,
    plan: &Plan,
    cookie: Cookie,
    client_ip: Option<IpAddr>,
) -> Result<Vec<Arc<Stream>>, PerfError> {
    let params = &plan.params;
    let count = params.parallel as usize * if params.bidirectional { 2 } else { 1 };
    let deadline = Instant::now() + STEP_TIMEOUT;
    // The client sends on the first `parallel` streams of a bidirectional test.
    let role = |index: usize| {
        if params.reverse || (params.bidirectional && index >= params.parallel as usize) {
            Role::Send
        } else {
            Role::Receive
        }
    };
    let mut streams = Vec::with_capacity(count);
    if params.udp {
        let Some(ip) = client_ip else {
            return Err(PerfError::Usage(
                "UDP over a Unix control connection".into(),
            ));
        };
        let (sender, receiver) = mpsc::channel();
        // One test per client address collects UDP streams at a time.
        {
            let mut waiting = shared
                .udp_waiting
                .lock()
                .map_err(|_| PerfError::Usage("server state poisoned".into()))?;
            while waiting.contains_key(&ip) {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() || stopping(shared) {
                    return Err(PerfError::io(
                        "another test from this address is setting up UDP streams",
                        io::ErrorKind::TimedOut.into(),
                    ));
                }
                waiting = shared
                    .udp_waiting_changed
                    .wait_timeout(waiting, left.min(ACCEPT_POLL))
                    .map_err(|_| PerfError::Usage("server state poisoned".into()))?
                    .0;
            }
            waiting.insert(ip, sender);
        }
        let collected = (|| {
            control.write_state(State::CreateStreams)?;
            for index in 0..count {
                let socket = receive_by(&receiver, deadline, shared)?;
                if let Some(window) = params.window {
                    let window = window.min(shared.options.limits.max_window) as usize;
                    let _ = SockRef::from(&socket).set_recv_buffer_size(window);
                    let _ = SockRef::from(&socket).set_send_buffer_size(window);
                }
                streams.push(Arc::new(Stream::new(
                    stream_id(index),
                    role(index),
                    DataSocket::Udp(socket),
                )));
            }
            Ok::<_, PerfError>(())
        })();
        if let Ok(mut waiting) = shared.udp_waiting.lock() {
            waiting.remove(&ip);
        }
        shared.udp_waiting_changed.notify_all();
        collected?;
    } else {
        let (sender, receiver) = mpsc::channel();
        if let Ok(mut tests) = shared.tests.lock()
            && let Some(slot) = tests.get_mut(&cookie)
        {
            slot.streams = Some(sender);
        }
        let collected = (|| {
            control.write_state(State::CreateStreams)?;
            let mut sockets = Vec::with_capacity(count);
            for _ in 0..count {
                sockets.push(receive_by(&receiver, deadline, shared)?);
            }
            sockets.sort_by_key(|(order, _)| *order);
            for (index, (_, socket)) in sockets.into_iter().enumerate() {
                if let StreamSock::Tcp(stream) = &socket {
                    let tuned = SockRef::from(stream);
                    let _ = tuned.set_tcp_nodelay(params.nodelay);
                    if let Some(window) = params.window {
                        let window = window.min(shared.options.limits.max_window) as usize;
                        let _ = tuned.set_recv_buffer_size(window);
                        let _ = tuned.set_send_buffer_size(window);
                    }
                    if let Some(congestion) = &params.congestion
                        && tuned.set_tcp_congestion(congestion.as_bytes()).is_err()
                    {
                        let _ = control.write_server_error(error_code::CONGESTION);
                        return Err(PerfError::Usage(format!(
                            "congestion control '{congestion}' is not available here"
                        )));
                    }
                }
                streams.push(Arc::new(Stream::new(
                    stream_id(index),
                    role(index),
                    DataSocket::Stream(socket),
                )));
            }
            Ok::<_, PerfError>(())
        })();
        if let Ok(mut tests) = shared.tests.lock()
            && let Some(slot) = tests.get_mut(&cookie)
        {
            slot.streams = None;
        }
        collected?;
    }
    Ok(streams)
}

fn receive_by<T>(
    receiver: &mpsc::Receiver<T>,
    deadline: Instant,
    shared: &Shared,
) -> Result<T, PerfError> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stopping(shared) {
            return Err(PerfError::io(
                "the client did not open its streams",
                io::ErrorKind::TimedOut.into(),
            ));
        }
        match receiver.recv_timeout(left.min(ACCEPT_POLL)) {
            Ok(item) => return Ok(item),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(PerfError::io(
                    "stream hand-over closed",
                    io::ErrorKind::BrokenPipe.into(),
                ));
            }
        }
    }
}

struct Outcome {
    seconds: f64,
    received_bytes: u64,
    sent_bytes: u64,
    transactions: Option<u64>,
    ended_early: Option<String>,
}

impl Outcome {
    fn event(self, client: String) -> ServerEvent {
        ServerEvent::TestEnded {
            client,
            seconds: self.seconds,
            received_bytes: self.received_bytes,
            sent_bytes: self.sent_bytes,
            bits_per_second: (self.received_bytes + self.sent_bytes) as f64 * 8.0
                / self.seconds.max(1e-9),
            transactions: self.transactions,
            ended_early: self.ended_early,
        }
    }
}

/// Runs the test from TEST_START to IPERF_DONE.
fn serve(
    shared: &Arc<Shared>,
    control: &Control,
    plan: &Plan,
    cookie: Cookie,
    client: &str,
    streams: Vec<Arc<Stream>>,
) -> Outcome {
    let cpu_before = thread_cpu_time().unwrap_or_default();
    let params = &plan.params;
    let rr = params.extension.as_ref().and_then(|e| e.request_response);
    (shared.events)(ServerEvent::TestStarted {
        client: client.to_string(),
        protocol: if params.udp {
            "udp"
        } else if matches!(control.socket(), StreamSock::Unix(_)) {
            "unix"
        } else {
            "tcp"
        },
        mode: match rr {
            Some(rr) if rr.connect_per_transaction => "crr",
            Some(_) => "rr",
            None => "throughput",
        },
        direction: if params.bidirectional {
            "bidir"
        } else if params.reverse {
            "receive"
        } else {
            "send"
        },
        streams: streams.len(),
        length: plan.length as u64,
    });
    // A byte or block count bounds what the server sends in a reverse test.
    let budget = if params.bytes > 0 {
        Some(params.bytes)
    } else if params.blocks > 0 {
        Some(params.blocks.saturating_mul(plan.length as u64))
    } else {
        None
    };
    let run = Arc::new(RunControl::new(
        budget.filter(|_| params.reverse || params.bidirectional),
    ));
    let crr_counters = rr.filter(|rr| rr.connect_per_transaction).map(|rr| {
        let slot = CrrSlot {
            request_length: plan.length,
            response_length: rr.response_length as usize,
            transactions: Arc::new(AtomicU64::new(0)),
            bytes: Arc::new(AtomicU64::new(0)),
            in_flight: Arc::new(AtomicU64::new(0)),
        };
        if let Ok(mut tests) = shared.tests.lock()
            && let Some(test) = tests.get_mut(&cookie)
        {
            test.crr = Some(slot.clone());
        }
        slot
    });
    let rr_transactions = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    let mut ended_early = None;
    let started = (|| {
        control.write_state(State::TestStart)?;
        control.write_state(State::TestRunning)?;
        Ok::<_, ControlError>(())
    })();
    if let Err(error) = started {
        ended_early = Some(error.to_string());
    } else {
        for stream in &streams {
            let spawned = match rr {
                Some(rr) => {
                    let (stream, run, transactions) = (
                        Arc::clone(stream),
                        Arc::clone(&run),
                        Arc::clone(&rr_transactions),
                    );
                    let request_length = plan.length;
                    std::thread::Builder::new()
                        .name(format!("perf-respond-{}", stream.id))
                        .spawn(move || {
                            let cpu = thread_cpu_time().unwrap_or_default();
                            let stop = || {
                                run.abort.load(Ordering::Relaxed)
                                    || run.drain_receivers.load(Ordering::Relaxed)
                            };
                            let _ = match &stream.socket {
                                DataSocket::Stream(socket) => rr::respond(
                                    socket,
                                    request_length,
                                    rr.response_length as usize,
                                    &stream.bytes,
                                    &transactions,
                                    &stop,
                                ),
                                DataSocket::Udp(socket) => rr::respond_datagrams(
                                    socket,
                                    rr.response_length as usize,
                                    &stream.bytes,
                                    &transactions,
                                    &stop,
                                ),
                            };
                            if let Ok(mut slot) = stream.cpu.lock() {
                                *slot = thread_cpu_time().unwrap_or_default().since(cpu);
                            }
                            stream.finished.store(true, Ordering::Release);
                        })
                }
                None => spawn_worker(
                    Arc::clone(stream),
                    Arc::clone(&run),
                    WorkerOptions {
                        length: plan.length,
                        rate_bps: match stream.role {
                            Role::Send => plan.send_rate_per_stream,
                            Role::Receive => plan.receive_rate_per_stream,
                        },
                        counters_64bit: params.udp_counters_64bit,
                        skip_rx_copy: shared.options.skip_rx_copy,
                        zerocopy: shared.options.zerocopy,
                        impair: None,
                    },
                ),
            };
            match spawned {
                Ok(handle) => workers.push((stream.role, handle)),
                Err(error) => {
                    ended_early = Some(format!("cannot start a stream thread: {error}"));
                    break;
                }
            }
        }
    }
    // Wait for TEST_END, within the duration cap. A client's `-O N` (iperf3's omit) leaves
    // the first N seconds out of what is counted and reported, as iperf3's server does: the
    // counters restart when they end, and so does the clock the rates are taken over.
    let cap = run.started + plan.duration_cap;
    let mut omit_until =
        (params.omit_seconds > 0).then(|| run.started + Duration::from_secs(params.omit_seconds));
    let mut counted_from = run.started;
    let mut exchange = ended_early.is_none();
    while exchange {
        if let Some(until) = omit_until
            && Instant::now() >= until
        {
            for stream in &streams {
                stream.omit_so_far();
            }
            counted_from = Instant::now();
            omit_until = None;
        }
        if shared.stop.load(Ordering::Relaxed) {
            let _ = control.write_state(State::ServerTerminate);
            ended_early = Some("the server was stopped".into());
            exchange = false;
            break;
        }
        let now = Instant::now();
        if now >= cap {
            let _ = control.write_state(State::ServerTerminate);
            ended_early = Some(format!(
                "ran into the server's duration limit ({} s)",
                plan.duration_cap.as_secs_f64()
            ));
            exchange = false;
            break;
        }
        let wake = omit_until.map_or(cap, |until| until.min(cap));
        match control.readable_within(wake.saturating_duration_since(now).min(ACCEPT_POLL)) {
            Ok(false) => continue,
            Ok(true) => {}
            Err(error) => {
                ended_early = Some(error.to_string());
                exchange = false;
                break;
            }
        }
        match control.read_state(Some(Instant::now() + STEP_TIMEOUT), None, "during the test") {
            Ok(State::TestEnd) => break,
            Ok(State::ClientTerminate) => {
                ended_early = Some("the client ended the test".into());
                exchange = false;
            }
            Ok(other) => {
                let _ = control.write_server_error(error_code::UNKNOWN_MESSAGE);
                ended_early = Some(format!("the client sent {other:?} during the test"));
                exchange = false;
            }
            Err(error) => {
                ended_early = Some(error.to_string());
                exchange = false;
            }
        }
    }
    let run_seconds = counted_from.elapsed().as_secs_f64();
    run.stop_senders.store(true, Ordering::Relaxed);
    let (senders, receivers): (Vec<_>, Vec<_>) = workers
        .into_iter()
        .partition(|(role, _)| *role == Role::Send);
    for (_, worker) in senders {
        let _ = worker.join();
    }
    let retransmits: Vec<Option<u64>> = streams.iter().map(|s| s.retransmits()).collect();
    // The client reads to end-of-stream: close what we sent on.
    for stream in streams.iter().filter(|s| s.role == Role::Send) {
        stream.socket.close_both();
    }
    run.drain_receivers.store(true, Ordering::Relaxed);
    if !exchange {
        run.abort.store(true, Ordering::Relaxed);
    }
    for (_, worker) in receivers {
        let _ = worker.join();
    }
    if let Some(crr) = &crr_counters {
        // No new connection joins the test after this; then the ones already routed finish
        // counting (a client's completed transaction was answered before it was counted).
        if let Ok(mut tests) = shared.tests.lock()
            && let Some(test) = tests.get_mut(&cookie)
        {
            test.crr = None;
        }
        let settle_until = Instant::now() + CRR_SETTLE;
        while crr.in_flight.load(Ordering::Acquire) > 0
            && Instant::now() < settle_until
            && !shared.stop.load(Ordering::Relaxed)
        {
            std::thread::sleep(Duration::from_millis(1));
        }
        rr_transactions.fetch_add(crr.transactions.load(Ordering::Acquire), Ordering::Relaxed);
        if let Some(first) = streams.first() {
            first
                .bytes
                .fetch_add(crr.bytes.load(Ordering::Acquire), Ordering::Relaxed);
        }
    }
    if exchange {
        let cpu = thread_cpu_time().unwrap_or_default().since(cpu_before) + worker_cpu(&streams);
        // The client's results come first: a UDP receiver counts its losses from what the
        // client says it sent, the last datagrams included.
        let ours = |theirs: &TestResults| {
            let mut ours = local_results(&streams, cpu, run_seconds, &retransmits, Some(theirs));
            if params.get_server_output {
                // What the client asked to see: this test as the server saw it.
                ours.server_output_text = Some(server_output(&streams, run_seconds, cpu));
            }
            ours
        };
        if let Err(error) = exchange_results(control, ours) {
            ended_early = Some(error.to_string());
        }
    }
    for stream in &streams {
        stream.socket.close_both();
    }
    let total = |role: Role| -> u64 {
        streams
            .iter()
            .filter(|s| s.role == role)
            .map(|s| s.bytes())
            .sum()
    };
    Outcome {
        seconds: run_seconds,
        received_bytes: total(Role::Receive),
        sent_bytes: total(Role::Send),
        transactions: rr.map(|_| rr_transactions.load(Ordering::Relaxed)),
        ended_early,
    }
}

/// EXCHANGE_RESULTS from the server's side: theirs in, ours out, DISPLAY_RESULTS, IPERF_DONE.
fn exchange_results(
    control: &Control,
    ours: impl FnOnce(&TestResults) -> TestResults,
) -> Result<(), ControlError> {
    let deadline = Some(Instant::now() + STEP_TIMEOUT);
    control.write_state(State::ExchangeResults)?;
    let theirs = control.read_json(
        MAX_PARAMS_JSON * 16,
        deadline,
        None,
        "with the client's results",
    )?;
    let theirs = TestResults::from_json(&theirs).map_err(|e| ControlError::Garbage {
        what: format!("unusable results ({e})"),
    })?;
    control.write_json(&ours(&theirs).to_json())?;
    control.write_state(State::DisplayResults)?;
    // The client's IPERF_DONE; a client that just closes is done too.
    match control.read_state(deadline, None, "after the results") {
        Ok(State::IperfDone) | Err(ControlError::Closed { .. }) => Ok(()),
        Ok(other) => Err(ControlError::Garbage {
            what: format!("{other:?} instead of IPERF_DONE"),
        }),
        Err(error) => Err(error),
    }
}

/// The text a client gets back with `--get-server-output`: one line per stream and the CPU.
fn server_output(streams: &[Arc<Stream>], seconds: f64, cpu: loopscope_sys::CpuTime) -> String {
    let mut text = String::from("loopscope perf server\n");
    for stream in streams {
        let bytes = stream.bytes();
        text.push_str(&format!(
            "[{:>3}] {} {} in {seconds:.2} s, {}\n",
            stream.id,
            if stream.role == Role::Send {
                "sent"
            } else {
                "received"
            },
            format_bytes(bytes),
            loopscope_report::format_bit_rate(bytes as f64 * 8.0 / seconds.max(1e-9))
        ));
    }
    text.push_str(&format!(
        "CPU {:.1}% user, {:.1}% system\n",
        cpu.user.as_secs_f64() * 100.0 / seconds.max(1e-9),
        cpu.system.as_secs_f64() * 100.0 / seconds.max(1e-9)
    ));
    text
}
