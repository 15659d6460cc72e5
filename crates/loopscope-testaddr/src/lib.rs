//! Race-free loopback addresses and bound sockets for test suites.
//!
//! Tests that run in parallel (threads of one `cargo test`, or the separate processes of
//! `cargo nextest`) fight over ports on 127.0.0.1. Picking a "free" port number and binding it
//! later is a check-then-use race: another test can take the port in between. On Linux the whole
//! 127.0.0.0/8 is routed to `lo`, so each test can have an address of its own instead.
//!
//! [`TestAddr::new`] claims a 127.x.y.z address that no other test on this host (in this
//! network namespace) holds at the same time, and keeps it until the `TestAddr` is dropped. It
//! hands back *bound* sockets, never a bare port number, so there is nothing to race:
//!
//! ```
//! use std::io::{Read, Write};
//!
//! let addr = loopscope_testaddr::TestAddr::new()?;
//! // The server side: bound and listening before anyone learns where it is.
//! let listener = addr.tcp_listener()?;
//! let server = listener.local_addr()?;
//! let echo = std::thread::spawn(move || -> std::io::Result<()> {
//!     let (mut stream, _) = listener.accept()?;
//!     let mut buf = [0u8; 5];
//!     stream.read_exact(&mut buf)?;
//!     stream.write_all(&buf)
//! });
//! // The client side, from the same address, so its traffic is this test's alone.
//! let mut client = addr.tcp_connect(server)?;
//! client.write_all(b"hello")?;
//! let mut reply = [0u8; 5];
//! client.read_exact(&mut reply)?;
//! assert_eq!(&reply, b"hello");
//! echo.join().expect("echo thread")?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # How an address is claimed
//!
//! A candidate address is claimed by binding an abstract Unix socket named after it
//! (`loopscope-testaddr/v1/127.x.y.z`). Binding is atomic, so two threads or processes can never
//! both hold a name; the kernel releases it when the socket closes, so a crashed test leaves no
//! stale lock behind. Abstract Unix names live in the network namespace, like the loopback
//! addresses they stand for. Candidates come from `127.1.0.1`-`127.254.255.254` (last octet
//! never 0 or 255), which avoids the well-known `127.0.x.x` addresses (127.0.0.1, systemd-resolved's
//! 127.0.0.53, Debian's 127.0.1.1, Docker's 127.0.0.11).
//!
//! # Where only 127.0.0.1 works
//!
//! Other systems (macOS, the BSDs) configure 127.0.0.1 alone. There, and wherever binding
//! 127.0.0.2 fails, or when the environment variable `LOOPSCOPE_TESTADDR=shared` is set,
//! [`TestAddr::new`] falls back to the shared 127.0.0.1: [`TestAddr::is_exclusive`] is false and
//! every socket is bound to port 0, so the kernel gives each one a unique port. Sockets on a fixed
//! port ([`TestAddr::tcp_listener_on`]) are only safe on an exclusive address.
//!
//! IPv6 has a single loopback address, `::1`; [`TestAddr::localhost_v6`] gives a shared one in the
//! same port-0 style.
//!
//! Keep the `TestAddr` alive as long as the sockets made from it: once it is dropped another test
//! may claim the same address (its port-0 sockets still get other ports, but fixed ports could
//! meet).

#![forbid(unsafe_code)]

use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub use socket2;
use socket2::{Domain, Socket, Type};

/// Set to `shared` to force the 127.0.0.1 / unique-port fallback (e.g. to test it).
pub const MODE_ENV: &str = "LOOPSCOPE_TESTADDR";

/// How long [`TestAddr::new`] waits for a free address before giving up.
const DEFAULT_WAIT: Duration = Duration::from_secs(30);

/// Why no address could be had.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Every address of the pool stayed claimed by other tests for the whole wait.
    #[error(
        "no free loopback address in {first}-{last} within {waited_ms} ms: all are held by other tests"
    )]
    Exhausted {
        /// The pool's first address.
        first: Ipv4Addr,
        /// The pool's last address.
        last: Ipv4Addr,
        /// How long the claim waited, in milliseconds.
        waited_ms: u128,
    },
    /// A pool must lie inside 127.0.0.0/8 with `first <= last`.
    #[error(
        "invalid address pool {first}-{last}: both ends must be in 127.0.0.0/8 and first <= last"
    )]
    InvalidPool {
        /// The first address asked for.
        first: Ipv4Addr,
        /// The last address asked for.
        last: Ipv4Addr,
    },
    /// The claim socket could not be created for a reason other than "already taken".
    #[error("cannot claim loopback address {ip}")]
    Claim {
        /// The address being claimed.
        ip: Ipv4Addr,
        /// Why the claim socket failed.
        #[source]
        source: io::Error,
    },
    /// The loopback address cannot be bound at all (loopback down, IPv6 disabled, ...).
    #[error("loopback address {ip} is not usable on this host")]
    Unavailable {
        /// The address that cannot be bound.
        ip: IpAddr,
        /// Why binding it failed.
        #[source]
        source: io::Error,
    },
}

/// A loopback address held by one test, and the factory for its sockets.
pub struct TestAddr {
    ip: IpAddr,
    exclusive: bool,
    /// Holds the claim for as long as this value lives; `None` in the shared fallback.
    _claim: Option<claim::Claim>,
}

impl fmt::Debug for TestAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestAddr")
            .field("ip", &self.ip)
            .field("exclusive", &self.exclusive)
            .finish()
    }
}

impl fmt::Display for TestAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.ip.fmt(f)
    }
}

impl TestAddr {
    /// A 127.x.y.z address of this test's own, held until drop; where only 127.0.0.1 works,
    /// the shared 127.0.0.1 with unique (port 0) sockets. Waits up to 30 s if every address of
    /// the pool is taken (only plausible with a tiny custom [`Pool`]).
    pub fn new() -> Result<TestAddr, Error> {
        Pool::default().allocate_wait(DEFAULT_WAIT)
    }

    /// The shared 127.0.0.1: not exclusive, every socket on a kernel-chosen port.
    pub fn localhost_v4() -> Result<TestAddr, Error> {
        Self::shared(IpAddr::V4(Ipv4Addr::LOCALHOST))
    }

    /// The shared ::1 (IPv6 has one loopback address): not exclusive, every socket on a
    /// kernel-chosen port. Fails with [`Error::Unavailable`] where IPv6 is disabled.
    pub fn localhost_v6() -> Result<TestAddr, Error> {
        Self::shared(IpAddr::V6(Ipv6Addr::LOCALHOST))
    }

    fn shared(ip: IpAddr) -> Result<TestAddr, Error> {
        UdpSocket::bind((ip, 0)).map_err(|source| Error::Unavailable { ip, source })?;
        Ok(TestAddr {
            ip,
            exclusive: false,
            _claim: None,
        })
    }

    /// The address. Pass `SocketAddr::new(addr.ip(), 0)` to code that binds by itself.
    pub fn ip(&self) -> IpAddr {
        self.ip
    }

    /// True when the address is this test's alone; false in the shared 127.0.0.1 / ::1 mode.
    pub fn is_exclusive(&self) -> bool {
        self.exclusive
    }

    /// This address with `port`, for code under test that insists on binding by itself. Port 0
    /// keeps it race-free; a fixed port is only safe when [`is_exclusive`](Self::is_exclusive).
    pub fn socket_addr(&self, port: u16) -> SocketAddr {
        SocketAddr::new(self.ip, port)
    }

    /// A TCP listener on this address and a kernel-chosen port.
    pub fn tcp_listener(&self) -> io::Result<TcpListener> {
        TcpListener::bind(self.socket_addr(0))
    }

    /// A TCP listener on this address and `port`. Race-free only when the address is exclusive.
    pub fn tcp_listener_on(&self, port: u16) -> io::Result<TcpListener> {
        TcpListener::bind(self.socket_addr(port))
    }

    /// A UDP socket bound to this address and a kernel-chosen port.
    pub fn udp_socket(&self) -> io::Result<UdpSocket> {
        UdpSocket::bind(self.socket_addr(0))
    }

    /// A UDP socket bound to this address and `port` (e.g. the port of a TCP listener, for a
    /// service that answers on both). Race-free only when the address is exclusive.
    pub fn udp_socket_on(&self, port: u16) -> io::Result<UdpSocket> {
        UdpSocket::bind(self.socket_addr(port))
    }

    /// A TCP connection to `peer` whose source is this address, so the test's client traffic
    /// is told apart from every other test's.
    pub fn tcp_connect(&self, peer: SocketAddr) -> io::Result<TcpStream> {
        let socket = self.bind_socket(Type::STREAM, 0, |_| Ok(()))?;
        socket.connect(&peer.into())?;
        Ok(socket.into())
    }

    /// Any other socket on this address: a new socket of `kind` (`Type::STREAM`, `Type::DGRAM`,
    /// ...) in this address's family, given to `configure` to set options that must come before
    /// `bind` (`SO_REUSEPORT`, `IPV6_V6ONLY`, buffer sizes), then bound to this address and
    /// `port` (0: kernel-chosen). A stream socket is not yet listening: call `listen`.
    pub fn bind_socket(
        &self,
        kind: Type,
        port: u16,
        configure: impl FnOnce(&Socket) -> io::Result<()>,
    ) -> io::Result<Socket> {
        let address = self.socket_addr(port);
        let socket = Socket::new(Domain::for_address(address), kind, None)?;
        configure(&socket)?;
        socket.bind(&address.into())?;
        Ok(socket)
    }
}

/// A range of 127/8 addresses to allocate from. [`Pool::default`] is 127.1.0.1-127.254.255.254;
/// a small pool is useful for a suite that wants its tests' addresses to be easy to spot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool {
    first: u32,
    last: u32,
}

impl Default for Pool {
    fn default() -> Self {
        Pool {
            first: u32::from(Ipv4Addr::new(127, 1, 0, 1)),
            last: u32::from(Ipv4Addr::new(127, 254, 255, 254)),
        }
    }
}

impl Pool {
    /// The addresses `first..=last` (last octets 0 and 255 are skipped).
    pub fn new(first: Ipv4Addr, last: Ipv4Addr) -> Result<Pool, Error> {
        let valid = first.octets()[0] == 127 && last.octets()[0] == 127 && first <= last;
        let pool = Pool {
            first: u32::from(first),
            last: u32::from(last),
        };
        if !valid || !pool.has_candidates() {
            return Err(Error::InvalidPool { first, last });
        }
        Ok(pool)
    }

    /// The pool's first address.
    pub fn first(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.first)
    }

    /// The pool's last address.
    pub fn last(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.last)
    }

    /// Whether the pool holds any usable address. Among any three consecutive addresses one
    /// has a last octet other than 0 and 255, so looking at the first three is exact.
    fn has_candidates(&self) -> bool {
        (self.first..=self.last).take(3).any(usable)
    }

    /// Claim a free address now, or fail with [`Error::Exhausted`] if every candidate tried is
    /// held. In the shared fallback this gives the shared 127.0.0.1.
    pub fn allocate(&self) -> Result<TestAddr, Error> {
        self.allocate_wait(Duration::ZERO)
    }

    /// Claim a free address, waiting up to `timeout` for one to be released.
    pub fn allocate_wait(&self, timeout: Duration) -> Result<TestAddr, Error> {
        if !exclusive_addresses_available() {
            return TestAddr::localhost_v4();
        }
        let start = Instant::now();
        let mut pause = Duration::from_micros(200);
        loop {
            if let Some(found) = self.try_claim_one_round()? {
                return Ok(found);
            }
            let waited = start.elapsed();
            if waited >= timeout {
                return Err(Error::Exhausted {
                    first: self.first(),
                    last: self.last(),
                    waited_ms: waited.as_millis(),
                });
            }
            std::thread::sleep(pause.min(timeout - waited));
            pause = (pause * 2).min(Duration::from_millis(20));
        }
    }

    /// Try candidates from a random starting point; in a big pool a few tries suffice, a small
    /// pool is walked whole.
    fn try_claim_one_round(&self) -> Result<Option<TestAddr>, Error> {
        const MAX_TRIES: u64 = 4096;
        let span = u64::from(self.last) - u64::from(self.first) + 1;
        let start = random_u64() % span;
        for step in 0..span.min(MAX_TRIES) {
            let candidate = (u64::from(self.first) + (start + step) % span) as u32;
            if !usable(candidate) {
                continue;
            }
            let ip = Ipv4Addr::from(candidate);
            if let Some(claim) = claim::Claim::try_claim(ip)? {
                return Ok(Some(TestAddr {
                    ip: IpAddr::V4(ip),
                    exclusive: true,
                    _claim: Some(claim),
                }));
            }
        }
        Ok(None)
    }
}

/// Last octet 0 and 255 are valid host addresses inside 127/8, but some software treats them as
/// network or broadcast addresses; skip them so tests do not trip over that.
fn usable(address: u32) -> bool {
    let last_octet = address & 0xff;
    last_octet != 0 && last_octet != 255
}

/// True when this host gives each test its own 127.x.y.z (Linux, 127.0.0.2 bindable, not
/// forced off by `LOOPSCOPE_TESTADDR=shared`).
pub fn exclusive_addresses_available() -> bool {
    if std::env::var_os(MODE_ENV).is_some_and(|mode| mode == "shared") {
        return false;
    }
    static PROBE: OnceLock<bool> = OnceLock::new();
    *PROBE.get_or_init(|| {
        cfg!(any(target_os = "linux", target_os = "android"))
            && UdpSocket::bind((Ipv4Addr::new(127, 0, 0, 2), 0)).is_ok()
    })
}

/// Not for cryptography: spreads concurrent allocators over the pool so they rarely meet.
/// std's `RandomState` is seeded randomly per process and varies per instance; the counter,
/// pid and clock make each call differ.
fn random_u64() -> u64 {
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(CALLS.fetch_add(1, Ordering::Relaxed));
    hasher.write_u32(std::process::id());
    if let Ok(since_epoch) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        hasher.write_u128(since_epoch.as_nanos());
    }
    hasher.finish()
}

#[cfg(any(target_os = "linux", target_os = "android"))]
mod claim {
    use std::io;
    use std::net::Ipv4Addr;
    #[cfg(target_os = "android")]
    use std::os::android::net::SocketAddrExt;
    #[cfg(target_os = "linux")]
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};

    /// An abstract Unix socket named after the address; the name is held while it is open.
    pub(crate) struct Claim {
        _socket: UnixDatagram,
    }

    impl Claim {
        /// `Ok(None)` when another test holds the address.
        pub(crate) fn try_claim(ip: Ipv4Addr) -> Result<Option<Claim>, super::Error> {
            let name = format!("loopscope-testaddr/v1/{ip}");
            let address = SocketAddr::from_abstract_name(name.as_bytes())
                .map_err(|source| super::Error::Claim { ip, source })?;
            match UnixDatagram::bind_addr(&address) {
                Ok(socket) => Ok(Some(Claim { _socket: socket })),
                Err(error) if error.kind() == io::ErrorKind::AddrInUse => Ok(None),
                Err(source) => Err(super::Error::Claim { ip, source }),
            }
        }
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
mod claim {
    use std::net::Ipv4Addr;

    /// Never constructed: without Linux's routed 127/8 the shared fallback is used.
    pub struct Claim;

    impl Claim {
        pub fn try_claim(_ip: Ipv4Addr) -> Result<Option<Claim>, super::Error> {
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_rejects_addresses_outside_loopback_and_reversed_ranges() {
        assert!(Pool::new(Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(127, 0, 0, 9)).is_err());
        assert!(Pool::new(Ipv4Addr::new(127, 9, 0, 9), Ipv4Addr::new(127, 9, 0, 1)).is_err());
        // Only unusable last octets: nothing to hand out.
        assert!(Pool::new(Ipv4Addr::new(127, 9, 0, 255), Ipv4Addr::new(127, 9, 1, 0)).is_err());
        assert!(Pool::new(Ipv4Addr::new(127, 9, 0, 1), Ipv4Addr::new(127, 9, 0, 1)).is_ok());
    }

    #[test]
    fn default_pool_avoids_well_known_loopback_addresses() {
        let pool = Pool::default();
        assert_eq!(pool.first(), Ipv4Addr::new(127, 1, 0, 1));
        assert_eq!(pool.last(), Ipv4Addr::new(127, 254, 255, 254));
        assert!(!usable(u32::from(Ipv4Addr::new(127, 3, 4, 0))));
        assert!(!usable(u32::from(Ipv4Addr::new(127, 3, 4, 255))));
        assert!(usable(u32::from(Ipv4Addr::new(127, 3, 4, 5))));
    }

    #[test]
    fn a_held_address_is_not_handed_out_again_until_dropped() {
        if !exclusive_addresses_available() {
            eprintln!("skip: this host has 127.0.0.1 only");
            return;
        }
        // A one-address pool: the second allocation must fail while the first lives.
        let pool = Pool::new(
            Ipv4Addr::new(127, 253, 17, 9),
            Ipv4Addr::new(127, 253, 17, 9),
        )
        .expect("valid pool");
        let held = pool
            .allocate_wait(Duration::from_secs(5))
            .expect("first allocation");
        assert_eq!(held.ip(), IpAddr::V4(Ipv4Addr::new(127, 253, 17, 9)));
        assert!(held.is_exclusive());
        assert!(matches!(pool.allocate(), Err(Error::Exhausted { .. })));
        drop(held);
        let again = pool.allocate().expect("free again after drop");
        assert_eq!(again.ip(), IpAddr::V4(Ipv4Addr::new(127, 253, 17, 9)));
    }
}
