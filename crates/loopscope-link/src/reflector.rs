//! The far end: a software loopback plug that echoes everything back.
//!
//! - TCP and Unix stream: a few event loops serve every connection ([`stream_echo`]); bytes
//!   move socket → pipe → socket with splice(2), so they never enter user space and a
//!   connection holds only a pipe of kernel memory (bounded). Where splice is refused they go
//!   through a 64 KiB buffer. An impaired connection (`--impair`) has a thread of its own.
//! - UDP and Unix datagram: each datagram goes back to its sender unchanged. A datagram
//!   reflector is no amplifier and no party to a loop:
//!   - it never answers the source ports of echo, daytime, chargen and time (7, 13, 19, 37), nor
//!     its own port;
//!   - it recognises its own kind: a datagram that is, byte for byte, a reply it sent to that
//!     same source moments ago is another reflector (or an echo service) giving it back, and is
//!     not answered; two reflectors that one spoofed datagram set talking stop after one round;
//!   - it answers each source address at most [`DEFAULT_RATE_LIMIT_PPS`] datagrams a second by
//!     default (RFC 862 servers in the wild allow a few hundred), so a flood from one source
//!     gets mostly silence;
//!   - a reply is never longer than its request, even through `--impair dup=` or `insert=`
//!     (the damaged reply is cut to the request's length), so no byte is amplified;
//!   - refusals are counted and logged (at most a few lines a second).
//! - Any other link (serial ports, pseudo-terminals, `exec:`): what arrives is sent back.
//!
//! A stream client costs three descriptors (the socket and the splice pipe). At start the soft
//! RLIMIT_NOFILE is raised to the hard limit; clients beyond what the descriptors allow are
//! accepted and closed at once, and counted, rather than left waiting in the backlog.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::os::fd::AsFd;
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;
use socket2::Type;

use crate::endpoint::Endpoint;
use crate::link::{Cancel, Link, LinkError, is_timeout};
use crate::transport::ip::{self, IpOptions};
use loopscope_sys::{Readiness, wait_readable};

mod stream_echo;

/// Source ports a UDP reflector never answers: the classic amplification and echo-loop ports.
pub const REFUSED_SOURCE_PORTS: [u16; 4] = [7, 13, 19, 37];
/// How often blocking loops look at the stop flag.
const POLL: Duration = Duration::from_millis(200);
const COPY_BUFFER: usize = 64 * 1024;
/// Kernel memory per spliced connection (the pipe between the two splices).
const PIPE_SIZE: usize = 256 * 1024;
/// A connection thread's stack. Only its touched pages are resident; what matters is how many
/// ended threads' stacks glibc keeps for reuse (40 MiB of them, each holding a few resident
/// pages): at 128 KiB that was 312 stacks and 2.5 MB kept after 2,000 clients had left, at
/// 1 MiB it is 39.
const THREAD_STACK: usize = 1024 * 1024;
/// Sources remembered by the UDP rate limiter at most.
const MAX_SOURCES: usize = 65_536;
/// Datagrams answered per second per source address by default.
pub const DEFAULT_RATE_LIMIT_PPS: u32 = 1000;
/// Datagrams a source may send at once before the rate limit applies, by default.
pub const DEFAULT_RATE_BURST: u32 = 200;
/// How long a reply is remembered to recognise it coming back (another reflector's echo).
pub const ECHO_WINDOW: Duration = Duration::from_millis(500);
/// Replies remembered at most (older ones are forgotten first).
const MAX_REMEMBERED_REPLIES: usize = 65_536;
/// Descriptors one stream client costs: its socket and the two ends of its splice pipe.
const FDS_PER_CONNECTION: u64 = 3;
/// Descriptors kept for everything else (listeners, stdio, the reserve).
const FDS_RESERVED: u64 = 32;
/// Largest Unix datagram the reflector takes (the kernel allows up to the sender's send
/// buffer); a longer one is counted as truncated and not answered.
const MAX_UNIX_DATAGRAM: usize = 16 << 20;

use crate::adapter::impair::{Impairer, ImpairmentConfig, ImpairmentStats, SimLink};

/// How `reflect` serves: its limits, and the impairment it applies.
#[derive(Clone)]
pub struct ReflectConfig {
    /// Concurrent stream connections at most; more are accepted and closed at once.
    pub max_connections: u64,
    /// Datagrams per second per source address (0: no limit).
    pub rate_limit_pps: u32,
    /// Burst allowance of the per-source limit.
    pub rate_burst: u32,
    /// Move stream bytes with splice(2) (zero copy).
    pub zero_copy: bool,
    /// Impairment applied to what is reflected: each stream through the sim: adapter, each
    /// datagram as one message (so `loss=` and `reorder=` act on whole datagrams).
    pub impair: Option<ImpairmentConfig>,
}

impl Default for ReflectConfig {
    fn default() -> Self {
        ReflectConfig {
            max_connections: 1024,
            rate_limit_pps: DEFAULT_RATE_LIMIT_PPS,
            rate_burst: DEFAULT_RATE_BURST,
            zero_copy: true,
            impair: None,
        }
    }
}

/// Something worth telling while the reflector runs.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ReflectEvent {
    /// A service is ready.
    Listening {
        /// Where, as a client would write it (the port the kernel chose for `:0`).
        endpoint: String,
    },
    /// A stream client connected.
    Connected {
        /// Its address.
        peer: String,
    },
    /// A stream client went.
    Closed {
        /// Its address.
        peer: String,
        /// Bytes reflected to it.
        bytes: u64,
        /// Why it ended, when it was an error.
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// A client turned away (descriptor limit, source port, rate limit).
    Refused {
        /// Its address.
        peer: String,
        /// Why.
        reason: String,
    },
    /// Something failed that ends no service.
    Error {
        /// What.
        what: String,
    },
}

/// Where the reflector's events go (the binary prints them).
pub type EventSink = Arc<dyn Fn(ReflectEvent) + Send + Sync>;

#[derive(Default)]
struct Counters {
    connections: AtomicU64,
    active: AtomicU64,
    max_active: AtomicU64,
    connections_refused: AtomicU64,
    bytes: AtomicU64,
    datagrams: AtomicU64,
    refused_port: AtomicU64,
    refused_rate: AtomicU64,
    refused_unaddressed: AtomicU64,
    refused_echo: AtomicU64,
    refused_descriptors: AtomicU64,
    datagrams_received: AtomicU64,
    datagram_bytes_received: AtomicU64,
    datagram_bytes_reflected: AtomicU64,
    datagrams_truncated: AtomicU64,
    errors: AtomicU64,
    impairment: Mutex<ImpairmentStats>,
}

/// The figures printed when the reflector stops.
#[derive(Debug, Clone, Serialize)]
pub struct ReflectSummary {
    /// The endpoints served.
    pub endpoints: Vec<String>,
    /// Stream connections accepted.
    pub connections: u64,
    /// The most stream connections at once.
    pub max_concurrent_connections: u64,
    /// Stream connections refused.
    pub connections_refused: u64,
    /// Stream bytes reflected.
    pub bytes_reflected: u64,
    /// Datagrams reflected.
    pub datagrams_reflected: u64,
    /// Datagrams not answered for their source port (a service that answers back, such as echo
    /// or chargen, would loop with us).
    pub refused_source_port: u64,
    /// Datagrams not answered for the per-source rate limit.
    pub refused_rate_limit: u64,
    /// Unix datagrams not answered for coming from an unbound socket (no address to answer).
    pub refused_unaddressed: u64,
    /// Datagrams that were a reply of ours coming back (another reflector, an echo loop).
    pub refused_echo_loop: u64,
    /// Of `connections_refused`: refused because the descriptors ran out.
    pub refused_descriptor_limit: u64,
    /// Datagrams received.
    pub datagrams_received: u64,
    /// Datagram bytes received and reflected: the second never exceeds the first.
    pub datagram_bytes_received: u64,
    /// Datagram bytes reflected.
    pub datagram_bytes_reflected: u64,
    /// Unix datagrams too long to take whole (over 16 MiB), not answered.
    pub datagrams_truncated: u64,
    /// The soft RLIMIT_NOFILE the reflector ran with (raised to the hard limit at start).
    pub fd_limit: u64,
    /// Concurrent stream connections at most (the lower of --max-connections and what the
    /// descriptors allow).
    pub connection_limit: u64,
    /// Errors that ended a connection or dropped a datagram.
    pub errors: u64,
    /// How long it ran.
    pub elapsed_s: f64,
    /// Whether stream bytes moved by splice(2).
    pub zero_copy: bool,
    /// What the impairment did to reflected datagrams (`--impair` on datagram services).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub impairment: Option<ImpairmentStats>,
}

enum Service {
    Tcp(TcpListener),
    /// UDP echo through the impairment adapter.
    Udp(UdpSocket, ImpairmentConfig),
    UnixStream(UnixListener),
    UnixDatagram(UnixDatagram),
    Link(Box<dyn Link>),
    /// The loopback plug on the master side of a pseudo-terminal (it holds the slave open so
    /// the pair outlives the clients that come and go).
    Pty(crate::transport::pty::Plug),
    /// A UDP socket whose requests a protocol answers (STAMP, S-BFD...).
    Responder(UdpSocket, Box<dyn DatagramResponder>, Arc<DatagramCounters>),
}

/// The far end: serves every endpoint it was given until stopped.
pub struct Reflector {
    services: Vec<(String, Service)>,
    /// Socket files to remove when the reflector ends.
    cleanup: Vec<PathBuf>,
    config: ReflectConfig,
    counters: Arc<Counters>,
}

impl Reflector {
    /// Binds what `endpoint` names. With `echo`, an IP endpoint gets RFC 862 echo on both TCP
    /// and UDP at its port. An empty host means loopback (127.0.0.1).
    pub fn bind(endpoint: &Endpoint, echo: bool, config: ReflectConfig) -> Result<Self, LinkError> {
        let mut reflector = Reflector {
            services: Vec::new(),
            cleanup: Vec::new(),
            config,
            counters: Arc::new(Counters::default()),
        };
        let scheme = endpoint.scheme.as_str();
        match scheme {
            "tcp" | "udp" => {
                endpoint.reject_unknown_options(&["iface"])?;
                let options = IpOptions::from_endpoint(endpoint)?;
                let addrs = ip::resolve(endpoint, Some(ip::DEFAULT_LISTEN))?;
                let addr = addrs[0];
                let want_tcp = scheme == "tcp" || echo;
                let want_udp = scheme == "udp" || echo;
                let mut port = addr.port();
                if want_tcp {
                    let listener = bind_tcp(SocketAddr::new(addr.ip(), port), &options)
                        .map_err(|e| LinkError::io(format!("cannot listen on tcp {addr}"), e))?;
                    let local = listener.local_addr().map_err(|e| LinkError::io("tcp", e))?;
                    port = local.port();
                    reflector
                        .services
                        .push((format!("tcp://{local}"), Service::Tcp(listener)));
                }
                if want_udp {
                    let udp_addr = SocketAddr::new(addr.ip(), port);
                    let socket = bind_udp(udp_addr, &options)
                        .map_err(|e| LinkError::io(format!("cannot bind udp {udp_addr}"), e))?;
                    let local = socket.local_addr().map_err(|e| LinkError::io("udp", e))?;
                    // Plain echo is a responder of the one batched datagram loop; impairment
                    // (which holds datagrams back and sends some twice) has its own loop.
                    let service = match &reflector.config.impair {
                        Some(impair) => Service::Udp(socket, impair.clone()),
                        None => Service::Responder(
                            socket,
                            Box::new(EchoResponder),
                            Arc::new(DatagramCounters::default()),
                        ),
                    };
                    reflector.services.push((format!("udp://{local}"), service));
                }
            }
            "unix" | "unixgram" => {
                endpoint.reject_unknown_options(&[])?;
                let address = crate::transport::unix::unix_address(endpoint)?;
                if let Some(path) = address.as_pathname() {
                    remove_stale_socket(path, scheme == "unix")?;
                }
                let name = format!("{scheme}:{}", endpoint.target);
                if scheme == "unix" {
                    let listener = UnixListener::bind_addr(&address)
                        .map_err(|e| LinkError::io(format!("cannot listen on {name}"), e))?;
                    reflector
                        .services
                        .push((name, Service::UnixStream(listener)));
                } else {
                    let socket = UnixDatagram::bind_addr(&address)
                        .map_err(|e| LinkError::io(format!("cannot bind {name}"), e))?;
                    reflector
                        .services
                        .push((name, Service::UnixDatagram(socket)));
                }
                if let Some(path) = address.as_pathname() {
                    reflector.cleanup.push(path.to_path_buf());
                }
            }
            "pty" => {
                let (path, plug) = crate::transport::pty::open_far_end(endpoint)?;
                reflector
                    .services
                    .push((format!("serial:{path}"), Service::Pty(plug)));
            }
            _ => {
                if echo {
                    return Err(LinkError::Unsupported(format!(
                        "--echo serves TCP and UDP: give tcp://HOST:PORT, not {}",
                        endpoint.original
                    )));
                }
                let link = crate::open_endpoint(endpoint)?;
                reflector
                    .services
                    .push((endpoint.original.clone(), Service::Link(link)));
            }
        }
        Ok(reflector)
    }

    /// A reflector that serves nothing yet: add services with [`Reflector::add_responder`].
    pub fn new(config: ReflectConfig) -> Self {
        Reflector {
            services: Vec::new(),
            cleanup: Vec::new(),
            config,
            counters: Arc::new(Counters::default()),
        }
    }

    /// Binds a UDP socket on `address` whose requests `responder` answers, behind the same
    /// rules as every datagram service (source ports, echo loops, the per-source rate limit,
    /// no reply longer than its request). Returns the endpoint clients reach (the port the
    /// kernel chose for 0) and the service's own counters, which the reflector's summary
    /// also sums.
    pub fn add_responder(
        &mut self,
        address: SocketAddr,
        mut responder: Box<dyn DatagramResponder>,
    ) -> Result<(String, Arc<DatagramCounters>), LinkError> {
        let socket = bind_udp(address, &IpOptions::default())
            .map_err(|e| LinkError::io(format!("cannot bind udp {address}"), e))?;
        responder
            .prepare(&socket)
            .map_err(|e| LinkError::io(format!("cannot set up udp {address}"), e))?;
        let local = socket.local_addr().map_err(|e| LinkError::io("udp", e))?;
        let name = format!("udp://{local}");
        let counters = Arc::new(DatagramCounters::default());
        self.services.push((
            name.clone(),
            Service::Responder(socket, responder, Arc::clone(&counters)),
        ));
        Ok((name, counters))
    }

    /// Where clients reach this reflector (ports resolved when 0 was asked for).
    pub fn endpoints(&self) -> Vec<String> {
        self.services.iter().map(|(name, _)| name.clone()).collect()
    }

    /// Serves until `stop` is set (or a single-port link closes), then sums up.
    pub fn run(mut self, stop: Arc<AtomicBool>, events: EventSink) -> ReflectSummary {
        let started = Instant::now();
        let endpoints = self.endpoints();
        let fd_limit = raise_fd_limit();
        let by_descriptors = fd_limit.saturating_sub(FDS_RESERVED) / FDS_PER_CONNECTION;
        self.config.max_connections = self.config.max_connections.min(by_descriptors.max(1));
        for endpoint in &endpoints {
            events(ReflectEvent::Listening {
                endpoint: endpoint.clone(),
            });
        }
        // Each thread would get its own malloc arena (up to eight per core), and an arena's
        // free top is never returned; with the one main arena the trim when the clients have
        // left gives it all back. Too late if a thread allocated already: the binary calls
        // `prepare_allocator` before it starts any.
        prepare_allocator();
        let mut workers: Vec<JoinHandle<()>> = Vec::new();
        for (name, service) in self.services {
            let stop = Arc::clone(&stop);
            let thread_events = Arc::clone(&events);
            let counters = Arc::clone(&self.counters);
            let config = self.config.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("reflect {name}"))
                .spawn(move || {
                    let events = thread_events;
                    let result = match service {
                        Service::Tcp(listener) => {
                            serve_listener(&listener, &stop, &events, &counters, &config, |l| {
                                l.accept().map(|(s, peer)| {
                                    let _ = s.set_nodelay(true);
                                    (Conn::Tcp(s), peer.to_string())
                                })
                            })
                        }
                        Service::UnixStream(listener) => {
                            serve_listener(&listener, &stop, &events, &counters, &config, |l| {
                                l.accept()
                                    .map(|(s, _)| (Conn::Unix(s), "unix client".into()))
                            })
                        }
                        Service::Udp(socket, impair) => {
                            serve_impaired_udp(&socket, impair, &stop, &events, &counters, &config)
                        }
                        Service::UnixDatagram(socket) => {
                            serve_unix_datagram(&socket, &stop, &events, &counters)
                        }
                        Service::Link(link) => serve_link(link, &stop, &counters, &config),
                        Service::Responder(socket, mut responder, own) => serve_responder(
                            &socket,
                            responder.as_mut(),
                            &stop,
                            &events,
                            &counters,
                            &own,
                            &config,
                        ),
                        Service::Pty(mut plug) => plug.run(
                            &stop,
                            &mut |n| {
                                counters.bytes.fetch_add(n as u64, Ordering::Relaxed);
                            },
                            crate::transport::pty::OnHangUp::Wait,
                        ),
                    };
                    if let Err(e) = result {
                        counters.errors.fetch_add(1, Ordering::Relaxed);
                        events(ReflectEvent::Error {
                            what: format!("{name}: {e}"),
                        });
                    }
                    // A single-port service ending (the serial port vanished) ends the run.
                    stop.store(true, Ordering::SeqCst);
                });
            match spawned {
                Ok(handle) => workers.push(handle),
                Err(e) => events(ReflectEvent::Error {
                    what: format!("cannot start a thread: {e}"),
                }),
            }
        }
        for worker in workers {
            let _ = worker.join();
        }
        for path in &self.cleanup {
            let _ = std::fs::remove_file(path);
        }
        let c = &self.counters;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ReflectSummary {
            endpoints,
            connections: load(&c.connections),
            max_concurrent_connections: load(&c.max_active),
            connections_refused: load(&c.connections_refused),
            bytes_reflected: load(&c.bytes),
            datagrams_reflected: load(&c.datagrams),
            refused_source_port: load(&c.refused_port),
            refused_rate_limit: load(&c.refused_rate),
            refused_unaddressed: load(&c.refused_unaddressed),
            refused_echo_loop: load(&c.refused_echo),
            refused_descriptor_limit: load(&c.refused_descriptors),
            datagrams_received: load(&c.datagrams_received),
            datagram_bytes_received: load(&c.datagram_bytes_received),
            datagram_bytes_reflected: load(&c.datagram_bytes_reflected),
            datagrams_truncated: load(&c.datagrams_truncated),
            fd_limit,
            connection_limit: self.config.max_connections,
            errors: load(&c.errors),
            elapsed_s: started.elapsed().as_secs_f64(),
            zero_copy: self.config.zero_copy && self.config.impair.is_none(),
            impairment: self
                .config
                .impair
                .as_ref()
                .and_then(|_| c.impairment.lock().ok().map(|s| s.clone())),
        }
    }
}

fn bind_tcp(addr: SocketAddr, options: &IpOptions) -> io::Result<TcpListener> {
    let socket = ip::new_socket(&addr, Type::STREAM)?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    if let Some(iface) = &options.iface {
        socket.bind_device(Some(iface.as_bytes()))?;
    }
    socket.bind(&addr.into())?;
    // Many clients connect at once in tests and benchmarks: a deep accept queue.
    socket.listen(4096)?;
    Ok(socket.into())
}

fn bind_udp(addr: SocketAddr, options: &IpOptions) -> io::Result<UdpSocket> {
    let socket = ip::new_socket(&addr, Type::DGRAM)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    let _ = socket.set_recv_buffer_size(crate::transport::udp::SOCKET_BUFFER);
    let _ = socket.set_send_buffer_size(crate::transport::udp::SOCKET_BUFFER);
    if let Some(iface) = &options.iface {
        socket.bind_device(Some(iface.as_bytes()))?;
    }
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// Removes a socket file left by a reflector that died, but never a live one or a non-socket.
fn remove_stale_socket(path: &std::path::Path, stream: bool) -> Result<(), LinkError> {
    use std::os::unix::fs::FileTypeExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if !meta.file_type().is_socket() {
        return Err(LinkError::Unsupported(format!(
            "{} exists and is not a socket; not replacing it",
            path.display()
        )));
    }
    let live = if stream {
        UnixStream::connect(path).is_ok()
    } else {
        UnixDatagram::unbound()
            .and_then(|s| s.connect(path))
            .is_ok()
    };
    if live {
        return Err(LinkError::Unsupported(format!(
            "{} is in use by another process",
            path.display()
        )));
    }
    std::fs::remove_file(path)
        .map_err(|e| LinkError::io(format!("cannot remove stale {}", path.display()), e))
}

enum Conn {
    Tcp(std::net::TcpStream),
    Unix(UnixStream),
}

impl Conn {
    /// The socket alone, for the echo loops.
    fn into_fd(self) -> std::os::fd::OwnedFd {
        match self {
            Conn::Tcp(s) => s.into(),
            Conn::Unix(s) => s.into(),
        }
    }

    /// The connection as a link, for the impairment adapter.
    fn into_link(self) -> io::Result<Box<dyn Link>> {
        Ok(match self {
            Conn::Tcp(s) => Box::new(ConnLink {
                sender: Box::new(crate::transport::stream::StreamSender::new(s.try_clone()?)),
                receiver: Box::new(crate::transport::stream::StreamReceiver::new(
                    s,
                    Default::default(),
                )),
            }),
            Conn::Unix(s) => Box::new(ConnLink {
                sender: Box::new(crate::transport::stream::StreamSender::new(s.try_clone()?)),
                receiver: Box::new(crate::transport::stream::StreamReceiver::new(
                    s,
                    Default::default(),
                )),
            }),
        })
    }
}

/// An accepted connection seen as a link (its halves already made).
struct ConnLink {
    sender: Box<dyn crate::link::LinkSender>,
    receiver: Box<dyn crate::link::LinkReceiver>,
}

impl Link for ConnLink {
    fn describe(&self) -> String {
        "connection".into()
    }

    fn split(
        self: Box<Self>,
    ) -> Result<
        (
            Box<dyn crate::link::LinkSender>,
            Box<dyn crate::link::LinkReceiver>,
        ),
        LinkError,
    > {
        Ok((self.sender, self.receiver))
    }
}

fn serve_listener<L: AsFd>(
    listener: &L,
    stop: &Arc<AtomicBool>,
    events: &EventSink,
    counters: &Arc<Counters>,
    config: &ReflectConfig,
    accept: impl Fn(&L) -> io::Result<(Conn, String)>,
) -> io::Result<()> {
    // One descriptor held in reserve: when accept(2) fails for want of descriptors, it is given
    // up for a moment to take the waiting client and close it at once, refused and counted,
    // instead of leaving it in the backlog unanswered.
    let mut reserve = open_reserve();
    let mut served_since_trim = false;
    // Whether the loops were asked to close their gone clients since the last accept: the
    // first answer to running out of descriptors (see `EchoLoops::reap`).
    let mut reaped = false;
    // Made before the first client, once: no thread per client (see `stream_echo`). An
    // impaired connection runs the impairment adapter's blocking link, on a thread of its own.
    let mut loops = if config.impair.is_none() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Some(stream_echo::EchoLoops::start(
            cores.min(4),
            config.zero_copy,
            stop,
            counters,
            events,
        )?)
    } else {
        None
    };
    while !stop.load(Ordering::Relaxed) {
        // Timed out or interrupted: look at the stop flag again.
        if wait_readable(listener, Some(POLL))? != Readiness::Ready {
            if served_since_trim && counters.active.load(Ordering::Relaxed) == 0 {
                // Idle: the clients have left and their threads have ended. RSS goes back to
                // where it was before they came.
                loopscope_sys::release_free_memory();
                served_since_trim = false;
            }
            continue;
        }
        let (conn, peer) = match accept(listener) {
            Ok(accepted) => accepted,
            Err(e) if interrupted_or_not_ready(&e) => continue,
            Err(e)
                if e.raw_os_error() == Some(libc::EMFILE)
                    || e.raw_os_error() == Some(libc::ENFILE) =>
            {
                // Clients that have gone may still hold descriptors their loop has not yet
                // closed: those go first, then the accept is tried again.
                if let Some(loops) = loops.as_ref().filter(|_| !reaped) {
                    loops.reap();
                    reaped = true;
                    continue;
                }
                drop(reserve.take());
                if let Ok((_refused, peer)) = accept(listener) {
                    counters.connections_refused.fetch_add(1, Ordering::Relaxed);
                    counters.refused_descriptors.fetch_add(1, Ordering::Relaxed);
                    events(ReflectEvent::Refused {
                        peer,
                        reason: "out of file descriptors".into(),
                    });
                }
                reserve = open_reserve();
                if reserve.is_none() {
                    // Not even one descriptor came back: wait for connections to end.
                    std::thread::sleep(Duration::from_millis(10));
                }
                continue;
            }
            Err(e) => return Err(e),
        };
        reaped = false;
        let mut active = counters.active.load(Ordering::Relaxed);
        if active >= config.max_connections
            && let Some(loops) = &loops
        {
            // Clients that have gone still count until their loop has seen them go, and under
            // a flood of connect-and-abort cycles this thread runs ahead of the loops: they
            // close those first, so that no client is refused for clients already gone.
            loops.reap();
            active = counters.active.load(Ordering::Relaxed);
        }
        if active >= config.max_connections {
            counters.connections_refused.fetch_add(1, Ordering::Relaxed);
            events(ReflectEvent::Refused {
                peer,
                reason: format!("more than {} connections", config.max_connections),
            });
            continue; // dropping `conn` closes it
        }
        counters.connections.fetch_add(1, Ordering::Relaxed);
        served_since_trim = true;
        let now = counters.active.fetch_add(1, Ordering::Relaxed) + 1;
        counters.max_active.fetch_max(now, Ordering::Relaxed);
        events(ReflectEvent::Connected { peer: peer.clone() });
        if let Some(loops) = &mut loops {
            loops.add(conn.into_fd(), peer);
            continue;
        }
        let counters2 = Arc::clone(counters);
        let events2 = Arc::clone(events);
        let config2 = config.clone();
        let stop2 = Arc::clone(stop);
        let spawned = std::thread::Builder::new()
            .stack_size(THREAD_STACK)
            .spawn(move || {
                let mut moved = 0u64;
                let result = reflect_connection(conn, &config2, &counters2, &stop2, &mut moved);
                counters2.active.fetch_sub(1, Ordering::Relaxed);
                events2(ReflectEvent::Closed {
                    peer,
                    bytes: moved,
                    error: result.err().map(|e| e.to_string()),
                });
            });
        if let Err(e) = spawned {
            counters.active.fetch_sub(1, Ordering::Relaxed);
            counters.errors.fetch_add(1, Ordering::Relaxed);
            events(ReflectEvent::Error {
                what: format!("cannot start a connection thread: {e}"),
            });
        }
    }
    Ok(())
}

/// A spare descriptor (see `serve_listener`).
fn open_reserve() -> Option<std::fs::File> {
    std::fs::File::open("/dev/null").ok()
}

/// Readies the allocator for a long-running reflector: one malloc arena for the whole process
/// (`loopscope_sys::use_one_malloc_arena`), so that the trims at idle give back what clients
/// took. Call it before the process starts any thread: a thread that allocates earlier gets an
/// arena of its own, which glibc then shares out round robin to later threads, and no trim
/// returns such an arena's free top (issue 12: a signal thread started first left a second
/// arena holding 460 KiB after 2,000 TCP clients had left). [`Reflector::run`] calls it
/// again, for callers that did not.
pub fn prepare_allocator() {
    loopscope_sys::use_one_malloc_arena();
}

/// Raises the soft RLIMIT_NOFILE to the hard limit; returns the soft limit now in effect.
pub fn raise_fd_limit() -> u64 {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if let (Some(current), Some(hard)) = (limit.current, limit.maximum)
        && current < hard
        && setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(hard),
                maximum: Some(hard),
            },
        )
        .is_ok()
    {
        return hard;
    }
    // `None` is unlimited.
    limit.current.unwrap_or(u64::MAX)
}

/// An impaired connection, on its own thread: the impairment adapter's link is blocking.
fn reflect_connection(
    conn: Conn,
    config: &ReflectConfig,
    counters: &Counters,
    stop: &Arc<AtomicBool>,
    moved: &mut u64,
) -> io::Result<()> {
    let impair = config.impair.clone().unwrap_or_default();
    let link = Box::new(SimLink::wrap(conn.into_link()?, impair));
    reflect_link_halves(link, stop, counters, moved)
}

fn reflect_link_halves(
    link: Box<dyn Link>,
    stop: &Arc<AtomicBool>,
    counters: &Counters,
    moved: &mut u64,
) -> io::Result<()> {
    let (mut tx, mut rx) = link
        .split()
        .map_err(|e| io::Error::other(crate::link::error_chain(&e)))?;
    rx.set_timeout(Some(POLL))?;
    let mut buffer = vec![0u8; COPY_BUFFER];
    // The stop flag reaches a send that waits on a client that stopped reading.
    let cancel = Cancel::on(Arc::clone(stop));
    while !stop.load(Ordering::Relaxed) {
        match rx.recv(&mut buffer) {
            Ok(0) => break,
            Ok(n) => {
                let sent = tx.send(&buffer[..n], &cancel);
                let accepted = match &sent {
                    Ok(()) => n,
                    Err(e) => e.accepted,
                };
                *moved += accepted as u64;
                counters.bytes.fetch_add(accepted as u64, Ordering::Relaxed);
                match sent {
                    Ok(()) => {}
                    Err(e) if e.is_cancelled() => break,
                    Err(e) => return Err(e.into_io()),
                }
            }
            Err(e) if is_timeout(&e) => {}
            Err(e) => return Err(e),
        }
    }
    let _ = tx.finish(&cancel);
    Ok(())
}

fn serve_link(
    link: Box<dyn Link>,
    stop: &Arc<AtomicBool>,
    counters: &Counters,
    config: &ReflectConfig,
) -> io::Result<()> {
    let link: Box<dyn Link> = match &config.impair {
        Some(impair) => Box::new(SimLink::wrap(link, impair.clone())),
        None => link,
    };
    let mut moved = 0;
    reflect_link_halves(link, stop, counters, &mut moved)
}

/// A token bucket per source address.
struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: HashMap<IpAddr, (f64, Instant)>,
}

impl RateLimiter {
    fn new(rate: u32, burst: u32) -> Self {
        RateLimiter {
            rate: rate as f64,
            burst: burst.max(1) as f64,
            buckets: HashMap::new(),
        }
    }

    fn allow(&mut self, source: IpAddr, now: Instant) -> bool {
        if self.rate <= 0.0 {
            return true;
        }
        if self.buckets.len() >= MAX_SOURCES && !self.buckets.contains_key(&source) {
            // Bounded memory: forget sources idle for a second (their buckets are full anyway).
            self.buckets
                .retain(|_, (_, last)| now.duration_since(*last) < Duration::from_secs(1));
            if self.buckets.len() >= MAX_SOURCES {
                self.buckets.clear();
            }
        }
        let (tokens, last) = self.buckets.entry(source).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * self.rate).min(self.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

impl RateLimiter {
    /// Forgets the sources whose bucket has filled up again: a new bucket starts full, so
    /// their next datagram is treated exactly as if they were remembered. An empty table gives
    /// its room back.
    fn forget_full(&mut self, now: Instant) {
        let (rate, burst) = (self.rate, self.burst);
        self.buckets.retain(|_, (tokens, last)| {
            *tokens + now.duration_since(*last).as_secs_f64() * rate < burst
        });
        if self.buckets.is_empty() {
            self.buckets = HashMap::new();
        } else {
            self.buckets.shrink_to_fit();
        }
    }
}

/// Logs refusals without letting a flood of them flood the log: the first few, then at most
/// one a second (the counters always count every one).
struct RefusalLog {
    logged: u64,
    last: Option<Instant>,
}

impl RefusalLog {
    fn should_log(&mut self, now: Instant) -> bool {
        let due = self.logged < 10
            || self
                .last
                .is_none_or(|last| now.duration_since(last) >= Duration::from_secs(1));
        if due {
            self.logged += 1;
            self.last = Some(now);
        }
        due
    }
}

/// Why a UDP datagram from `source` gets no answer, if it gets none.
pub fn udp_refusal(source: &SocketAddr, own_port: u16) -> Option<&'static str> {
    let port = source.port();
    if REFUSED_SOURCE_PORTS.contains(&port) {
        Some("source port is echo/daytime/chargen/time (amplification)")
    } else if port == own_port {
        Some("source port is the reflector's own (echo loop)")
    } else if port == 0 {
        Some("source port 0")
    } else {
        None
    }
}

/// Remembers the replies sent lately, to recognise one coming back: a datagram from a source
/// that is byte for byte what we answered that source within [`ECHO_WINDOW`] is that source
/// echoing us (another reflector, an RFC 862 service), and answering it would start a loop.
/// A client never needs to send back the very datagram it got (loopscope's carry sequence
/// numbers); one that repeats a fixed payload is answered again once the window has passed.
struct EchoGuard<K> {
    recent: HashMap<(K, u32, usize), Instant>,
    order: VecDeque<((K, u32, usize), Instant)>,
}

impl<K: Hash + Eq + Clone> EchoGuard<K> {
    fn new() -> Self {
        EchoGuard {
            recent: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    fn key(peer: &K, datagram: &[u8]) -> (K, u32, usize) {
        (peer.clone(), crc32fast::hash(datagram), datagram.len())
    }

    /// True when `datagram` from `peer` is a reply we sent `peer` within the window.
    fn is_our_echo(&mut self, peer: &K, datagram: &[u8], now: Instant) -> bool {
        self.forget_old(now);
        self.recent
            .get(&Self::key(peer, datagram))
            .is_some_and(|sent| now.duration_since(*sent) < ECHO_WINDOW)
    }

    fn replied(&mut self, peer: &K, datagram: &[u8], now: Instant) {
        let key = Self::key(peer, datagram);
        self.recent.insert(key.clone(), now);
        self.order.push_back((key, now));
        if self.order.len() > MAX_REMEMBERED_REPLIES
            && let Some((oldest, at)) = self.order.pop_front()
            && self.recent.get(&oldest) == Some(&at)
        {
            self.recent.remove(&oldest);
        }
    }

    /// Gives back the room of replies forgotten: all of it once none is remembered.
    fn shrink(&mut self) {
        if self.order.is_empty() {
            self.recent = HashMap::new();
            self.order = VecDeque::new();
        } else {
            self.recent.shrink_to_fit();
            self.order.shrink_to_fit();
        }
    }

    fn forget_old(&mut self, now: Instant) {
        while let Some((key, at)) = self.order.front() {
            if now.duration_since(*at) < ECHO_WINDOW {
                break;
            }
            if self.recent.get(key) == Some(at) {
                self.recent.remove(key);
            }
            self.order.pop_front();
        }
    }
}

/// Why a datagram gets no answer, counted and logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    SourcePort(&'static str),
    RateLimit,
    Echo,
}

impl Refusal {
    fn reason(self) -> &'static str {
        match self {
            Refusal::SourcePort(why) => why,
            Refusal::RateLimit => "rate limit",
            Refusal::Echo => "a reply of ours coming back (another reflector?): echo loop",
        }
    }

    fn count(self, counters: &Counters) {
        let counter = match self {
            Refusal::SourcePort(_) => &counters.refused_port,
            Refusal::RateLimit => &counters.refused_rate,
            Refusal::Echo => &counters.refused_echo,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// The rules every datagram service keeps before it answers anything: no answer to the
/// reserved source ports or its own, none to a datagram that is a reply of ours coming back,
/// and at most the per-source rate. One copy, for plain UDP echo and for every
/// [`DatagramResponder`] alike.
struct DatagramGate {
    own_port: u16,
    limiter: RateLimiter,
    guard: EchoGuard<SocketAddr>,
    log: RefusalLog,
}

impl DatagramGate {
    fn new(own_port: u16, config: &ReflectConfig) -> Self {
        DatagramGate {
            own_port,
            limiter: RateLimiter::new(config.rate_limit_pps, config.rate_burst),
            guard: EchoGuard::new(),
            log: RefusalLog {
                logged: 0,
                last: None,
            },
        }
    }

    /// Why `datagram` from `source` gets no answer, counted and (sparingly) logged; `None`
    /// when it may be answered.
    fn refuse(
        &mut self,
        source: SocketAddr,
        datagram: &[u8],
        counters: &Counters,
        events: &EventSink,
    ) -> Option<Refusal> {
        let now = Instant::now();
        let refusal = udp_refusal(&source, self.own_port)
            .map(Refusal::SourcePort)
            .or_else(|| {
                self.guard
                    .is_our_echo(&source, datagram, now)
                    .then_some(Refusal::Echo)
            })
            .or_else(|| (!self.limiter.allow(source.ip(), now)).then_some(Refusal::RateLimit))?;
        refusal.count(counters);
        if self.log.should_log(now) {
            events(ReflectEvent::Refused {
                peer: source.to_string(),
                reason: refusal.reason().to_string(),
            });
        }
        Some(refusal)
    }

    /// Sends `reply` to `to`, remembers it (to know it if it comes back) and counts it.
    fn reply(
        &mut self,
        socket: &UdpSocket,
        reply: &[u8],
        to: SocketAddr,
        counters: &Counters,
    ) -> io::Result<usize> {
        let sent = socket.send_to(reply, to);
        match &sent {
            Ok(_) => self.replied(reply, to, counters),
            // A full send buffer or a vanished peer: the datagram is lost, as UDP may.
            Err(_) => {
                counters.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        sent
    }

    /// Forgets the sources whose state no longer changes what happens to their next datagram
    /// (a full rate-limit bucket, replies older than the echo window), and gives the tables'
    /// room back once they are empty. True when nothing is remembered any more.
    fn forget_idle_sources(&mut self, now: Instant) -> bool {
        self.limiter.forget_full(now);
        self.guard.forget_old(now);
        self.guard.shrink();
        self.limiter.buckets.is_empty() && self.guard.recent.is_empty()
    }

    /// Remembers a reply that went to `to` (to know it if it comes back) and counts it.
    fn replied(&mut self, reply: &[u8], to: SocketAddr, counters: &Counters) {
        self.guard.replied(&to, reply, Instant::now());
        counters.datagrams.fetch_add(1, Ordering::Relaxed);
        let bytes = reply.len() as u64;
        counters.bytes.fetch_add(bytes, Ordering::Relaxed);
        counters
            .datagram_bytes_reflected
            .fetch_add(bytes, Ordering::Relaxed);
    }
}

/// A signal broke the call off, or nothing was there after all (a readiness that went stale):
/// the caller waits and tries again.
fn interrupted_or_not_ready(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock
    )
}

fn count_received(counters: &Counters, len: usize) {
    counters.datagrams_received.fetch_add(1, Ordering::Relaxed);
    counters
        .datagram_bytes_received
        .fetch_add(len as u64, Ordering::Relaxed);
}

/// UDP echo through the impairment adapter, one datagram at a time: the impairer holds
/// datagrams back (reordering) and sends some twice, so it does not fit a responder's one reply
/// per request. The same gate keeps the same rules.
fn serve_impaired_udp(
    socket: &UdpSocket,
    impair: ImpairmentConfig,
    stop: &AtomicBool,
    events: &EventSink,
    counters: &Counters,
    config: &ReflectConfig,
) -> io::Result<()> {
    let mut gate = DatagramGate::new(socket.local_addr()?.port(), config);
    // A reply is never longer than its request: byte insertions and duplications damage the
    // reply but are cut off at the request's length.
    let mut impairer = Impairer::new(impair).without_growth();
    let mut buffer = vec![0u8; DATAGRAM_BUFFER];
    socket.set_read_timeout(Some(POLL))?;
    // A datagram held back for reordering goes out after this much quiet, so the last one of a
    // run is not lost.
    let quiet = Duration::from_millis(5);
    let mut last_source: Option<SocketAddr> = None;
    let mut idle = IdleRelease::default();
    while !stop.load(Ordering::Relaxed) {
        // Usually one blocking recvfrom (SO_RCVTIMEO wakes it to look at the stop flag); only
        // while a datagram is held back for reordering does it wait briefly in ppoll first.
        if let Some(source) = last_source {
            match wait_readable(socket, Some(quiet))? {
                Readiness::Ready => {}
                // A signal: look at the stop flag, then wait out the quiet again.
                Readiness::Interrupted => continue,
                Readiness::TimedOut => {
                    last_source = None;
                    impairer.flush(&mut |d| {
                        let _ = gate.reply(socket, d, source, counters);
                        Ok(())
                    })?;
                    publish_impairment(&impairer, counters);
                    continue;
                }
            }
        }
        let (n, source) = match socket.recv_from(&mut buffer) {
            Ok(received) => received,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                // A whole POLL without a datagram: forget the sources that no longer matter.
                idle.forget_sources(&mut gate, Instant::now());
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // ICMP errors reported for earlier answers: not this datagram's problem.
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => continue,
            Err(e) => return Err(e),
        };
        count_received(counters, n);
        idle.served();
        let datagram = &buffer[..n];
        if gate.refuse(source, datagram, counters, events).is_some() {
            continue;
        }
        // A client switching source while one of its datagrams is held back: the held one goes
        // to the client it came from, before this one is handled.
        if let Some(last) = last_source.filter(|last| *last != source) {
            impairer.flush(&mut |d| {
                let _ = gate.reply(socket, d, last, counters);
                Ok(())
            })?;
        }
        impairer.process(datagram, &mut |d| {
            let _ = gate.reply(socket, d, source, counters);
            Ok(())
        })?;
        publish_impairment(&impairer, counters);
        last_source = Some(source);
    }
    Ok(())
}

/// One received datagram as a [`DatagramResponder`] sees it: its octets and what the kernel
/// said about it.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The datagram.
    pub bytes: &'a [u8],
    /// Its source.
    pub source: SocketAddr,
    /// The address it was sent to and the port it arrived on (IP_PKTINFO), when known.
    pub destination: Option<SocketAddr>,
    /// Its TTL (IPv4) or hop limit (IPv6) on arrival, when the responder asked for it.
    pub ttl: Option<u8>,
    /// Its TOS octet (IPv4) or traffic class (IPv6): DSCP and ECN.
    pub tos: Option<u8>,
    /// The kernel's receive timestamp (CLOCK_REALTIME since the Unix epoch), when on.
    pub kernel_rx: Option<Duration>,
}

/// What a responder makes of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Send the first `len` octets of the reply buffer, with this DSCP (None: the socket's
    /// default, 0). The reflector never sends more than the request's length (the buffer is
    /// that long): no amplification.
    Reply {
        /// Octets of the reply buffer to send.
        len: usize,
        /// The DSCP the reply leaves with (RFC 8972 §4.4's Class of Service asks for one).
        dscp: Option<u8>,
    },
    /// Send nothing (the responder counts why).
    Silent,
}

/// A protocol answered by the reflector's datagram loop: plain UDP echo ([`EchoResponder`],
/// also the far end of BFD's echo function), STAMP's Session-Reflector and the S-BFD
/// reflector (`loopscope-measure`), and any other request/response protocol over UDP. The loop owns the socket, the refusals (reserved
/// source ports, echo loops, the per-source rate limit), the length rule and the counters;
/// the responder only turns a request into a reply.
pub trait DatagramResponder: Send {
    /// Readies the bound socket before serving: kernel timestamps, the TTL replies leave with.
    fn prepare(&mut self, socket: &UdpSocket) -> io::Result<()>;
    /// Writes the answer to `request` into `reply`, a buffer exactly as long as the request.
    fn respond(&mut self, request: &Request<'_>, reply: &mut [u8]) -> Answer;
    /// Called for each reply, in the order `respond` gave them, just before it is sent: the
    /// last moment to write into it (STAMP's T3 and the HMAC over it). The loop answers a
    /// batch of requests with one sendmmsg, so `respond` may run some microseconds before
    /// the send; `seal` runs right before it.
    fn seal(&mut self, reply: &mut [u8]) {
        let _ = reply;
    }
    /// Asked before each reply of a batch but the first is sealed: whether it must wait until
    /// the replies sealed before it have left (and `after_send` was told). The loop then sends
    /// those first, with a system call of their own. STAMP's Follow-Up Telemetry carries the
    /// transmit timestamp of the previous reply of its session, which that reply has only
    /// once it was sent.
    fn seal_waits_for_sent(&self) -> bool {
        false
    }
    /// Told after each reply went out (`sent`) or failed, in the order `respond` gave them;
    /// the socket is there to read what the send left behind (transmit timestamps on the
    /// error queue).
    fn after_send(&mut self, socket: &UdpSocket, sent: bool) {
        let _ = (socket, sent);
    }
    /// Told once a batch's replies have all been sent (or failed), after their `after_send`:
    /// the time for work done once per system call rather than per reply (reading their
    /// transmit timestamps from the error queue together).
    fn after_batch(&mut self, socket: &UdpSocket) {
        let _ = socket;
    }
    /// Told when the socket has nothing more queued (before the loop waits): the time for
    /// work that need not be done per packet.
    fn idle(&mut self, socket: &UdpSocket) {
        let _ = socket;
    }
}

/// What one datagram service saw, counted by the reflector's loop (the reflector's summary
/// adds them up over all services).
#[derive(Debug, Default)]
pub struct DatagramCounters {
    received: AtomicU64,
    answered: AtomicU64,
    refused_source_port: AtomicU64,
    refused_rate_limit: AtomicU64,
    refused_echo_loop: AtomicU64,
    send_errors: AtomicU64,
}

/// A reading of [`DatagramCounters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DatagramCount {
    /// Datagrams received.
    pub received: u64,
    /// Replies sent.
    pub answered: u64,
    /// Not answered for their source port (reserved, zero, or the service's own).
    pub refused_source_port: u64,
    /// Not answered for the per-source rate limit.
    pub refused_rate_limit: u64,
    /// Not answered for being a reply of ours coming back.
    pub refused_echo_loop: u64,
    /// Replies the kernel refused to send.
    pub send_errors: u64,
}

impl DatagramCounters {
    /// The counts now.
    pub fn read(&self) -> DatagramCount {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        DatagramCount {
            received: load(&self.received),
            answered: load(&self.answered),
            refused_source_port: load(&self.refused_source_port),
            refused_rate_limit: load(&self.refused_rate_limit),
            refused_echo_loop: load(&self.refused_echo_loop),
            send_errors: load(&self.send_errors),
        }
    }
}

/// Datagrams read (recvmmsg) and answered (sendmmsg) per system call at most. A batch is as
/// full as the socket's queue: one datagram while the reflector keeps up (no added delay),
/// more under load, where two system calls then serve the whole batch.
const DATAGRAM_BATCH: usize = 32;
/// A datagram buffer: the largest UDP payload fits whole.
const DATAGRAM_BUFFER: usize = 65_536;
/// How long the loop keeps looking at the socket without sleeping after it last had work. A
/// sleeping thread's wake-up takes from a few to tens of microseconds (an interrupt to the
/// other core, the scheduler), which is most of a reply's residence when requests come every
/// few microseconds; polling for this long after each batch costs at most this much CPU per
/// burst of traffic, and nothing while idle.
const BUSY_POLL: Duration = Duration::from_micros(50);
/// How long a batch's send waits for room in a full send buffer before its replies are lost.
const SEND_ROOM_WAIT: Duration = Duration::from_millis(10);

/// A reply of the batch being answered: its slot in the reply buffers, its length, its DSCP and
/// where it goes.
#[derive(Debug, Clone, Copy)]
struct Outgoing {
    slot: usize,
    len: usize,
    dscp: u8,
    to: SocketAddr,
}

fn serve_responder(
    socket: &UdpSocket,
    responder: &mut dyn DatagramResponder,
    stop: &AtomicBool,
    events: &EventSink,
    counters: &Counters,
    own: &DatagramCounters,
    config: &ReflectConfig,
) -> io::Result<()> {
    socket.set_nonblocking(true)?;
    let local = socket.local_addr()?;
    let mut gate = DatagramGate::new(local.port(), config);
    let mut sender = BatchSender {
        socket,
        ipv6: local.is_ipv6(),
        reply_dscp: 0,
        counters,
        own,
    };
    // One mapping each, touched only as far as datagrams reach (the kernel gives fresh zeroed
    // pages on first write): 2 MiB of address space, not of memory, and what a burst touched
    // goes back when the loop is idle.
    let mut request_memory = loopscope_sys::PageBuffer::new(DATAGRAM_BATCH * DATAGRAM_BUFFER)?;
    let mut reply_memory = loopscope_sys::PageBuffer::new(DATAGRAM_BATCH * DATAGRAM_BUFFER)?;
    let mut requests: Vec<&mut [u8]> = request_memory.chunks_mut(DATAGRAM_BUFFER).collect();
    let mut replies: Vec<&mut [u8]> = reply_memory.chunks_mut(DATAGRAM_BUFFER).collect();
    let mut received = Vec::with_capacity(DATAGRAM_BATCH);
    let mut outgoing: Vec<Outgoing> = Vec::with_capacity(DATAGRAM_BATCH);
    let mut idle = IdleRelease::default();
    while !stop.load(Ordering::Relaxed) {
        if wait_readable(socket, Some(POLL))? != Readiness::Ready {
            // A whole POLL without a datagram: what the last burst made the loop hold goes
            // back, so RSS returns to where it was before the clients came (issue 12).
            if idle.buffers_touched {
                requests.clear();
                replies.clear();
                let _ = request_memory.release();
                let _ = reply_memory.release();
                requests = request_memory.chunks_mut(DATAGRAM_BUFFER).collect();
                replies = reply_memory.chunks_mut(DATAGRAM_BUFFER).collect();
                idle.buffers_touched = false;
            }
            idle.forget_sources(&mut gate, Instant::now());
            continue;
        }
        idle.served();
        // Drain what is queued, a batch at a time, and keep looking for BUSY_POLL after the
        // last batch before waiting again.
        let mut busy_until = Instant::now() + BUSY_POLL;
        loop {
            match loopscope_sys::recv_datagrams(socket, &mut requests, &mut received) {
                Ok(_) => busy_until = Instant::now() + BUSY_POLL,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // Look without sleeping (a zero-timeout poll: no batch to set up) until a
                    // datagram comes or the time is up.
                    let mut arrived = false;
                    while Instant::now() < busy_until && !stop.load(Ordering::Relaxed) {
                        if wait_readable(socket, Some(Duration::ZERO))? == Readiness::Ready {
                            arrived = true;
                            break;
                        }
                        std::hint::spin_loop();
                    }
                    if arrived {
                        continue;
                    }
                    responder.idle(socket);
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // ICMP errors reported for earlier answers: not this datagram's problem.
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => continue,
                Err(e) => return Err(e),
            }
            outgoing.clear();
            // Every rule is kept per datagram, in arrival order, as if they came one by one.
            for (slot, datagram) in received.iter().enumerate() {
                count_received(counters, datagram.len);
                bump(&own.received);
                let Some(source) = datagram.from else {
                    continue;
                };
                let bytes = &requests[slot][..datagram.len];
                match gate.refuse(source, bytes, counters, events) {
                    None => {}
                    Some(Refusal::SourcePort(_)) => {
                        bump(&own.refused_source_port);
                        continue;
                    }
                    Some(Refusal::RateLimit) => {
                        bump(&own.refused_rate_limit);
                        continue;
                    }
                    Some(Refusal::Echo) => {
                        bump(&own.refused_echo_loop);
                        continue;
                    }
                }
                let incoming = Request {
                    bytes,
                    source,
                    destination: datagram.to.map(|ip| SocketAddr::new(ip, gate.own_port)),
                    ttl: datagram.ttl,
                    tos: datagram.tos,
                    kernel_rx: datagram.kernel_rx,
                };
                let out = &mut replies[slot][..datagram.len];
                if let Answer::Reply { len, dscp } = responder.respond(&incoming, out) {
                    outgoing.push(Outgoing {
                        slot,
                        // The amplification rule, whatever the responder says.
                        len: len.min(datagram.len),
                        dscp: dscp.unwrap_or(0) & 0x3F,
                        to: source,
                    });
                }
            }
            sender.send(responder, &mut gate, &mut replies, &outgoing);
            if !outgoing.is_empty() {
                responder.after_batch(socket);
            }
        }
    }
    Ok(())
}

/// What an idle datagram loop still has to give back.
#[derive(Debug, Default)]
struct IdleRelease {
    /// The batch buffers were written since they were last released.
    buffers_touched: bool,
    /// The gate remembers sources (rate-limit buckets, recent replies) that may be forgotten.
    sources_remembered: bool,
}

impl IdleRelease {
    fn served(&mut self) {
        self.buffers_touched = true;
        self.sources_remembered = true;
    }

    /// Forgets what the gate no longer needs; once it remembers nothing, the allocator's free
    /// memory goes back to the kernel (the tables' room was freed to it). A table entry may
    /// outlive one idle wake (a reply is remembered for [`ECHO_WINDOW`]), so this goes on at
    /// each idle wake until all is forgotten, then stops until the next datagram.
    fn forget_sources(&mut self, gate: &mut DatagramGate, now: Instant) {
        if self.sources_remembered && gate.forget_idle_sources(now) {
            loopscope_sys::release_free_memory();
            self.sources_remembered = false;
        }
    }
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Sends a batch's replies with sendmmsg, in runs of one DSCP (a socket option, set only when
/// it changes: most replies keep one).
struct BatchSender<'a> {
    socket: &'a UdpSocket,
    ipv6: bool,
    reply_dscp: u8,
    counters: &'a Counters,
    own: &'a DatagramCounters,
}

impl BatchSender<'_> {
    fn send(
        &mut self,
        responder: &mut dyn DatagramResponder,
        gate: &mut DatagramGate,
        replies: &mut [&mut [u8]],
        outgoing: &[Outgoing],
    ) {
        let mut start = 0;
        while start < outgoing.len() {
            let dscp = outgoing[start].dscp;
            let end = outgoing[start..]
                .iter()
                .position(|reply| reply.dscp != dscp)
                .map_or(outgoing.len(), |run| start + run);
            if dscp != self.reply_dscp {
                let options = loopscope_sys::SendOptions {
                    dscp: Some(dscp),
                    ..Default::default()
                };
                if loopscope_sys::set_send_options(self.socket, self.ipv6, options).is_ok() {
                    self.reply_dscp = dscp;
                }
            }
            self.send_run(responder, gate, replies, &outgoing[start..end]);
            start = end;
        }
    }

    fn send_run(
        &mut self,
        responder: &mut dyn DatagramResponder,
        gate: &mut DatagramGate,
        replies: &mut [&mut [u8]],
        run: &[Outgoing],
    ) {
        let mut start = 0;
        while start < run.len() {
            // The last moment a reply can change: STAMP reads T3 here, just before the one
            // system call that sends the run, or the part of it up to a reply that must wait
            // for the ones before it to have left.
            let mut end = start;
            while end < run.len() && (end == start || !responder.seal_waits_for_sent()) {
                let reply = run[end];
                responder.seal(&mut replies[reply.slot][..reply.len]);
                end += 1;
            }
            self.send_sealed(responder, gate, replies, &run[start..end]);
            start = end;
        }
    }

    fn send_sealed(
        &mut self,
        responder: &mut dyn DatagramResponder,
        gate: &mut DatagramGate,
        replies: &[&mut [u8]],
        run: &[Outgoing],
    ) {
        let batch: Vec<(&[u8], SocketAddr)> = run
            .iter()
            .map(|reply| (&replies[reply.slot][..reply.len], reply.to))
            .collect();
        let mut next = 0;
        let mut waited = false;
        while next < batch.len() {
            match loopscope_sys::send_datagrams(self.socket, &batch[next..]) {
                Ok(sent) if sent > 0 => {
                    for (bytes, to) in &batch[next..next + sent] {
                        gate.replied(bytes, *to, self.counters);
                        bump(&self.own.answered);
                        responder.after_send(self.socket, true);
                    }
                    next += sent;
                }
                // A full send buffer: wait once for room, then what still does not fit is lost
                // as UDP may lose it.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && !waited => {
                    waited = true;
                    let _ = loopscope_sys::wait_writable(self.socket, Some(SEND_ROOM_WAIT));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // This reply failed (a full buffer, a vanished route): count it, send the rest.
                _ => {
                    self.counters.errors.fetch_add(1, Ordering::Relaxed);
                    bump(&self.own.send_errors);
                    responder.after_send(self.socket, false);
                    next += 1;
                }
            }
        }
    }
}

/// The plain echo: each datagram goes back as it came (RFC 862 over UDP, and the far end of
/// BFD's echo function, RFC 5880 §6.4).
#[derive(Debug, Default, Clone, Copy)]
pub struct EchoResponder;

impl DatagramResponder for EchoResponder {
    fn prepare(&mut self, _socket: &UdpSocket) -> io::Result<()> {
        Ok(())
    }

    fn respond(&mut self, request: &Request<'_>, reply: &mut [u8]) -> Answer {
        reply.copy_from_slice(request.bytes);
        Answer::Reply {
            len: reply.len(),
            dscp: None,
        }
    }
}

fn publish_impairment(impairer: &Impairer, counters: &Counters) {
    if let Ok(mut shared) = counters.impairment.lock() {
        shared.clone_from(impairer.stats());
    }
}

/// A Unix datagram's source, as a key for the echo guard.
fn unix_key(address: &std::os::unix::net::SocketAddr) -> Vec<u8> {
    use std::os::linux::net::SocketAddrExt;
    match (address.as_pathname(), address.as_abstract_name()) {
        (Some(path), _) => path.as_os_str().as_encoded_bytes().to_vec(),
        (None, Some(name)) => [b"@".as_slice(), name].concat(),
        (None, None) => Vec::new(),
    }
}

fn serve_unix_datagram(
    socket: &UnixDatagram,
    stop: &AtomicBool,
    events: &EventSink,
    counters: &Counters,
) -> io::Result<()> {
    let mut buffer = vec![0u8; 65_536];
    let mut guard = EchoGuard::new();
    let mut log = RefusalLog {
        logged: 0,
        last: None,
    };
    while !stop.load(Ordering::Relaxed) {
        // Timed out or interrupted: look at the stop flag again.
        if wait_readable(socket, Some(POLL))? != Readiness::Ready {
            continue;
        }
        // Learn the datagram's length first (MSG_PEEK | MSG_TRUNC gives the whole length on
        // Unix sockets since Linux 3.4), so none is silently cut to the buffer.
        let length = match rustix::net::recvfrom(
            socket.as_fd(),
            &mut [0u8; 1][..],
            rustix::net::RecvFlags::PEEK
                | rustix::net::RecvFlags::TRUNC
                | rustix::net::RecvFlags::DONTWAIT,
        ) {
            Ok((_, length, _)) => length,
            Err(rustix::io::Errno::INTR | rustix::io::Errno::AGAIN) => continue,
            Err(e) => return Err(e.into()),
        };
        if length > buffer.len() && length <= MAX_UNIX_DATAGRAM {
            buffer.resize(length, 0);
        }
        let (n, source) = match socket.recv_from(&mut buffer) {
            Ok(received) => received,
            Err(e) if interrupted_or_not_ready(&e) => continue,
            Err(e) => return Err(e),
        };
        count_received(counters, length.max(n));
        let now = Instant::now();
        if length > n {
            counters.datagrams_truncated.fetch_add(1, Ordering::Relaxed);
            if log.should_log(now) {
                events(ReflectEvent::Refused {
                    peer: "unix client".into(),
                    reason: format!(
                        "a {length}-byte datagram is over the {MAX_UNIX_DATAGRAM}-byte limit"
                    ),
                });
            }
            continue;
        }
        if source.is_unnamed() {
            counters.refused_unaddressed.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let key = unix_key(&source);
        let datagram = &buffer[..n];
        if guard.is_our_echo(&key, datagram, now) {
            Refusal::Echo.count(counters);
            if log.should_log(now) {
                events(ReflectEvent::Refused {
                    peer: String::from_utf8_lossy(&key).into_owned(),
                    reason: Refusal::Echo.reason().into(),
                });
            }
            continue;
        }
        loop {
            match socket.send_to_addr(datagram, &source) {
                Ok(_) => {
                    guard.replied(&key, datagram, Instant::now());
                    counters.datagrams.fetch_add(1, Ordering::Relaxed);
                    counters.bytes.fetch_add(n as u64, Ordering::Relaxed);
                    counters
                        .datagram_bytes_reflected
                        .fetch_add(n as u64, Ordering::Relaxed);
                    break;
                }
                // The client's queue is full: Unix datagrams block rather than drop; wait, but
                // not past a stop.
                Err(e)
                    if (e.kind() == io::ErrorKind::WouldBlock
                        || e.raw_os_error() == Some(libc::ENOBUFS))
                        && !stop.load(Ordering::Relaxed) =>
                {
                    std::thread::sleep(Duration::from_micros(50));
                }
                Err(_) => {
                    counters.errors.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_amplifier_ports_and_its_own() {
        let at = |port| SocketAddr::new(IpAddr::from([127, 0, 0, 1]), port);
        for port in [7, 13, 19, 37, 5000, 0] {
            assert!(udp_refusal(&at(port), 5000).is_some(), "{port}");
        }
        assert!(udp_refusal(&at(40000), 5000).is_none());
    }

    /// Answers with the DSCP the request's first octet names, so one batch needs several
    /// runs of sendmmsg.
    struct DscpResponder;

    impl DatagramResponder for DscpResponder {
        fn prepare(&mut self, _socket: &UdpSocket) -> io::Result<()> {
            Ok(())
        }

        fn respond(&mut self, request: &Request<'_>, reply: &mut [u8]) -> Answer {
            reply.copy_from_slice(request.bytes);
            Answer::Reply {
                // Asks for more than the request: the loop cuts it.
                len: reply.len() + 100,
                dscp: Some(request.bytes[0]),
            }
        }
    }

    fn run_reflector(
        responder: Box<dyn DatagramResponder>,
    ) -> (
        SocketAddr,
        Arc<DatagramCounters>,
        Arc<AtomicBool>,
        JoinHandle<ReflectSummary>,
    ) {
        let mut reflector = Reflector::new(ReflectConfig {
            rate_limit_pps: 0,
            ..ReflectConfig::default()
        });
        let (endpoint, counters) = reflector
            .add_responder(SocketAddr::from(([127, 0, 0, 1], 0)), responder)
            .unwrap();
        let address = endpoint.trim_start_matches("udp://").parse().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = std::thread::spawn(move || reflector.run(flag, Arc::new(|_| {})));
        (address, counters, stop, handle)
    }

    /// Collects `count` replies (or what came in 10 s): payload and TOS octet.
    fn collect(client: &UdpSocket, count: usize) -> Vec<(Vec<u8>, Option<u8>)> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut got = Vec::new();
        let mut buffer = [0u8; 256];
        while got.len() < count && Instant::now() < deadline {
            if wait_readable(client, Some(Duration::from_millis(100))).unwrap() != Readiness::Ready
            {
                continue;
            }
            while let Ok(datagram) = loopscope_sys::recv_datagram(client, &mut buffer) {
                got.push((buffer[..datagram.len].to_vec(), datagram.tos));
            }
        }
        got
    }

    /// A burst that lands in few batches is answered datagram by datagram: every request once,
    /// in order, each with its own DSCP (runs split at each change), none longer than its
    /// request; a reply sent back from the same source is refused as an echo loop even inside
    /// a batch of fresh requests.
    #[test]
    fn a_burst_keeps_every_rule_per_datagram() {
        let (address, counters, stop, handle) = run_reflector(Box::new(DscpResponder));
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        loopscope_sys::enable_datagram_metadata(&client, false, false).unwrap();
        let dscps = [0u8, 0, 46, 46, 46, 10, 0, 63];
        let requests: Vec<Vec<u8>> = (0..64u8)
            .map(|i| vec![dscps[usize::from(i) % dscps.len()], i, 0xAA, 0x55])
            .collect();
        let batch: Vec<(&[u8], SocketAddr)> =
            requests.iter().map(|r| (r.as_slice(), address)).collect();
        assert_eq!(loopscope_sys::send_datagrams(&client, &batch).unwrap(), 64);
        let replies = collect(&client, 64);
        let expected: Vec<(Vec<u8>, Option<u8>)> = requests
            .iter()
            .map(|r| (r.clone(), Some(r[0] << 2)))
            .collect();
        assert_eq!(replies, expected);
        // Two of our replies come back amid two fresh requests: only the fresh ones answered.
        let fresh = [vec![0u8, 200], vec![0u8, 201]];
        let mixed: Vec<(&[u8], SocketAddr)> = vec![
            (requests[3].as_slice(), address),
            (fresh[0].as_slice(), address),
            (requests[9].as_slice(), address),
            (fresh[1].as_slice(), address),
        ];
        assert_eq!(loopscope_sys::send_datagrams(&client, &mixed).unwrap(), 4);
        let replies = collect(&client, 2);
        let payloads: Vec<Vec<u8>> = replies.into_iter().map(|(p, _)| p).collect();
        assert_eq!(payloads, fresh.to_vec());
        // Read once the loop has ended: a reply can reach us before the loop counts it.
        stop.store(true, Ordering::SeqCst);
        let summary = handle.join().unwrap();
        let count = counters.read();
        assert_eq!(count.received, 68);
        assert_eq!(count.answered, 66);
        assert_eq!(count.refused_echo_loop, 2);
        assert_eq!(summary.datagrams_reflected, 66);
        assert_eq!(summary.datagram_bytes_reflected, 64 * 4 + 2 * 2);
        assert_eq!(summary.refused_echo_loop, 2);
    }

    /// 1,000 sources (each its own address, so each its own rate-limit bucket) answered once:
    /// an idle gate keeps them as long as they matter (a reply for the echo window, an emptied
    /// bucket until it is full again), and forgets all of them afterwards, its tables' room
    /// included. A source still short of tokens is not forgotten: it stays limited. Instants
    /// are given, not read, so the test does not depend on how fast it runs.
    #[test]
    fn an_idle_gate_forgets_every_source_and_gives_its_room_back() {
        let config = ReflectConfig::default();
        let mut gate = DatagramGate::new(7, &config);
        let t0 = Instant::now();
        let sources: Vec<SocketAddr> = (0..1000u16)
            .map(|i| SocketAddr::from(([127, 1, (i >> 8) as u8, i as u8], 40000 + i)))
            .collect();
        for source in &sources {
            assert!(gate.limiter.allow(source.ip(), t0));
            gate.guard.replied(source, b"ping", t0);
        }
        // One source spends its whole burst and is refused.
        let greedy = IpAddr::from([127, 2, 0, 1]);
        let burst = config.rate_burst as usize;
        let allowed = (0..burst + 1)
            .filter(|_| gate.limiter.allow(greedy, t0))
            .count();
        assert_eq!(allowed, burst);
        assert!(
            !gate.forget_idle_sources(t0),
            "replies within the window are kept"
        );
        assert_eq!(gate.guard.recent.len(), 1000);
        assert!(gate.guard.is_our_echo(&sources[0], b"ping", t0));
        assert!(
            !gate.limiter.allow(greedy, t0),
            "a limited source stays limited"
        );
        // Past the window and the time a bucket takes to fill (burst / rate = 0.2 s).
        let later = t0 + ECHO_WINDOW + Duration::from_secs(1);
        assert!(gate.forget_idle_sources(later));
        assert_eq!(gate.limiter.buckets.capacity(), 0);
        assert_eq!(gate.guard.recent.capacity(), 0);
        assert_eq!(gate.guard.order.capacity(), 0);
        // Forgotten is as new: a full burst again.
        let allowed = (0..burst + 1)
            .filter(|_| gate.limiter.allow(greedy, later))
            .count();
        assert_eq!(allowed, burst);
    }

    /// The fault (issue 12): under connect-and-abort cycles the accept thread ran ahead of the
    /// loops, gone clients still counted against the connection limit, and live ones were
    /// refused for them (406 of 10,000). With a limit of 4, 200 clients that connect and reset
    /// one after the other, then one that wants its echo: nobody is refused, every one is
    /// counted as a connection, and the last gets its bytes back.
    #[test]
    fn clients_that_have_gone_never_cost_a_later_client_its_answer() {
        use std::io::{Read, Write};
        let endpoint = Endpoint::parse("tcp://127.0.0.1:0").unwrap();
        let config = ReflectConfig {
            max_connections: 4,
            ..ReflectConfig::default()
        };
        let reflector = Reflector::bind(&endpoint, false, config).unwrap();
        let address: SocketAddr = reflector.endpoints()[0]
            .trim_start_matches("tcp://")
            .parse()
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = std::thread::spawn(move || reflector.run(flag, Arc::new(|_| {})));
        for _ in 0..200 {
            let client = std::net::TcpStream::connect(address).unwrap();
            socket2::SockRef::from(&client)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
            drop(client); // a reset
        }
        let mut client = std::net::TcpStream::connect(address).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        client.write_all(b"still answered").unwrap();
        let mut back = [0u8; 14];
        let answered = client.read_exact(&mut back);
        drop(client);
        stop.store(true, Ordering::SeqCst);
        let summary = handle.join().unwrap();
        assert_eq!(summary.connections_refused, 0, "{summary:?}");
        assert_eq!(summary.connections, 201, "{summary:?}");
        answered.unwrap();
        assert_eq!(&back, b"still answered");
    }

    #[test]
    fn rate_limiter_allows_the_burst_then_the_rate() {
        let mut limiter = RateLimiter::new(1000, 10);
        let t0 = Instant::now();
        let source = IpAddr::from([127, 0, 0, 9]);
        let allowed = (0..20).filter(|_| limiter.allow(source, t0)).count();
        assert_eq!(allowed, 10);
        // 5 ms later at 1000/s: 5 more tokens.
        let t1 = t0 + Duration::from_millis(5);
        let allowed = (0..20).filter(|_| limiter.allow(source, t1)).count();
        assert_eq!(allowed, 5);
        // Another source has its own bucket.
        assert!(limiter.allow(IpAddr::from([127, 0, 0, 10]), t1));
    }
}
