//! ICMP echo sockets: the unprivileged datagram kind (`SOCK_DGRAM`/`IPPROTO_ICMP`, allowed by
//! `net.ipv4.ping_group_range`) and the raw kind (`SOCK_RAW`, needs `CAP_NET_RAW`).
//!
//! Matching replies differs between them. A datagram socket gets only replies to itself, but
//! the kernel rewrites the identifier (it becomes the socket's "port"), so replies are matched
//! on the sequence number and the payload stamp. A raw socket sees every ICMP message for the
//! host, our own requests to a loopback address included, so replies are matched on type,
//! identifier, sequence and stamp.

use std::io::{self, Read};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use loopscope_sys::Readiness;
use serde::Serialize;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::wire::{self, EchoKind, EchoPacket, EchoRepr, Version};

/// Which kind of socket carries the echo.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SocketKind {
    /// SOCK_DGRAM + IPPROTO_ICMP(V6): "ping sockets", no privilege when the group is allowed.
    Datagram,
    /// SOCK_RAW: needs CAP_NET_RAW.
    Raw,
}

impl SocketKind {
    pub fn name(self) -> &'static str {
        match self {
            SocketKind::Datagram => "datagram",
            SocketKind::Raw => "raw",
        }
    }
}

/// Which kind the caller wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketChoice {
    /// Datagram when `ping_group_range` allows it, raw otherwise.
    Auto,
    Only(SocketKind),
}

impl SocketChoice {
    /// Reads `LOOPSCOPE_ICMP_SOCKET` (`raw`, `dgram`/`datagram`, `auto`); unset means auto.
    pub fn from_env() -> Result<Self, IcmpError> {
        match std::env::var("LOOPSCOPE_ICMP_SOCKET") {
            Err(_) => Ok(SocketChoice::Auto),
            Ok(value) => value.parse(),
        }
    }
}

impl std::str::FromStr for SocketChoice {
    type Err = IcmpError;
    fn from_str(text: &str) -> Result<Self, IcmpError> {
        match text.trim().to_ascii_lowercase().as_str() {
            "" | "auto" => Ok(SocketChoice::Auto),
            "raw" => Ok(SocketChoice::Only(SocketKind::Raw)),
            "dgram" | "datagram" => Ok(SocketChoice::Only(SocketKind::Datagram)),
            _ => Err(IcmpError::BadChoice(text.to_string())),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IcmpError {
    #[error("unknown ICMP socket kind '{0}' (expected raw, dgram or auto)")]
    BadChoice(String),
    #[error(
        "cannot open an ICMP socket: datagram refused ({datagram}), raw refused ({raw}); allow ping sockets with `sysctl -w net.ipv4.ping_group_range=\"0 2147483647\"` or run with CAP_NET_RAW"
    )]
    NoSocket { datagram: io::Error, raw: io::Error },
    #[error("cannot open a {kind} ICMP socket: {error}{hint}")]
    Open {
        kind: &'static str,
        error: io::Error,
        hint: &'static str,
    },
    #[error("ICMP socket I/O: {0}")]
    Io(#[from] io::Error),
}

/// A reply that matched a request of ours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EchoReply {
    pub from: IpAddr,
    pub sequence: u64,
    /// ICMP message bytes (header and payload), as ping reports them.
    pub bytes: usize,
    pub ttl: Option<u8>,
    /// The payload came back different from what was sent.
    pub corrupt: bool,
}

/// Bytes at the start of every payload: magic, per-socket token, full sequence number.
pub const STAMP_LEN: usize = 16;
const MAGIC: &[u8; 4] = b"LSCP";

/// An ICMP echo socket connected to one target.
pub struct EchoSocket {
    socket: Socket,
    kind: SocketKind,
    version: Version,
    target: IpAddr,
    identifier: u16,
    token: u32,
    buffer: Vec<u8>,
}

impl EchoSocket {
    /// Opens and connects a socket of the chosen kind to `target`.
    pub fn open(target: IpAddr, choice: SocketChoice) -> Result<Self, IcmpError> {
        let socket_and_kind = match choice {
            SocketChoice::Only(kind) => open_kind(target, kind).map_err(|error| IcmpError::Open {
                kind: kind.name(),
                error,
                hint: match kind {
                    SocketKind::Datagram => {
                        " (is your group inside net.ipv4.ping_group_range? `sysctl -w net.ipv4.ping_group_range=\"0 2147483647\"`)"
                    }
                    SocketKind::Raw => " (raw sockets need root or CAP_NET_RAW)",
                },
            })?,
            SocketChoice::Auto => match open_kind(target, SocketKind::Datagram) {
                Ok(pair) => pair,
                Err(datagram) => match open_kind(target, SocketKind::Raw) {
                    Ok(pair) => pair,
                    Err(raw) => return Err(IcmpError::NoSocket { datagram, raw }),
                },
            },
        };
        let (socket, kind) = socket_and_kind;
        let version = match target {
            IpAddr::V4(_) => Version::V4,
            IpAddr::V6(_) => Version::V6,
        };
        let identifier = match kind {
            // The kernel puts the socket's local "port" in the identifier field.
            SocketKind::Datagram => socket
                .local_addr()
                .ok()
                .and_then(|address| address.as_socket())
                .map(|address| address.port())
                .unwrap_or(0),
            SocketKind::Raw => (std::process::id() as u16) ^ rand::random::<u16>(),
        };
        Ok(EchoSocket {
            socket,
            kind,
            version,
            target,
            identifier,
            token: rand::random(),
            buffer: vec![0u8; 65_536 + 60],
        })
    }

    pub fn kind(&self) -> SocketKind {
        self.kind
    }

    pub fn target(&self) -> IpAddr {
        self.target
    }

    /// Sends echo request number `sequence` with a payload of `payload_len` bytes
    /// (at least [`STAMP_LEN`]).
    pub fn send(&mut self, sequence: u64, payload_len: usize) -> Result<(), IcmpError> {
        let payload = self.payload(sequence, payload_len.max(STAMP_LEN));
        let repr = EchoRepr {
            version: self.version,
            kind: EchoKind::Request,
            identifier: self.identifier,
            sequence: sequence as u16,
            payload: &payload,
        };
        let mut message = vec![0u8; repr.buffer_len()];
        if let Ok(mut packet) = EchoPacket::new_checked(&mut message[..]) {
            repr.emit(&mut packet);
        }
        self.socket.send(&message)?;
        Ok(())
    }

    /// Waits up to `timeout` for a reply to one of our requests; `Ok(None)` on timeout, and
    /// when a signal interrupts the wait (the EINTR rule of `loopscope_sys`: the caller looks at
    /// its stop flag and calls again).
    /// Anything else that arrives (our own requests on a raw socket, other pingers' replies,
    /// ICMP errors) is skipped.
    pub fn receive(&mut self, timeout: Duration) -> Result<Option<EchoReply>, IcmpError> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            // SO_RCVTIMEO counts in scheduler ticks (4-10 ms); ppoll sleeps on a high-resolution
            // timer, which sub-millisecond intervals need.
            match loopscope_sys::wait_readable(&self.socket, Some(left))? {
                Readiness::Ready => {}
                Readiness::TimedOut | Readiness::Interrupted => return Ok(None),
            }
            let size = match (&self.socket).read(&mut self.buffer) {
                Ok(size) => size,
                Err(error)
                    if matches!(
                        error.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    continue;
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                // An ICMP error queued on a connected socket (e.g. unreachable): not a reply.
                Err(error) if error.raw_os_error().is_some_and(is_icmp_error) => continue,
                Err(error) => return Err(error.into()),
            };
            if let Some(reply) = self.match_reply(size) {
                return Ok(Some(reply));
            }
        }
    }

    fn match_reply(&self, size: usize) -> Option<EchoReply> {
        let datagram = &self.buffer[..size];
        let (ttl, message) = match (self.kind, self.version) {
            // Only raw IPv4 sockets deliver the IP header.
            (SocketKind::Raw, Version::V4) => {
                let (ttl, message) = wire::split_ipv4(datagram).ok()?;
                (Some(ttl), message)
            }
            _ => (None, datagram),
        };
        let packet = EchoPacket::new_checked(message).ok()?;
        let repr = EchoRepr::parse(&packet, self.version).ok()?;
        if repr.kind != EchoKind::Reply {
            return None;
        }
        if self.kind == SocketKind::Raw && repr.identifier != self.identifier {
            return None;
        }
        let stamp = repr.payload.get(..STAMP_LEN)?;
        if &stamp[..4] != MAGIC || stamp[4..8] != self.token.to_be_bytes() {
            return None;
        }
        let mut full = [0u8; 8];
        full.copy_from_slice(&stamp[8..16]);
        let sequence = u64::from_be_bytes(full);
        if sequence as u16 != repr.sequence {
            return None;
        }
        let corrupt = repr.payload != self.payload(sequence, repr.payload.len()).as_slice();
        Some(EchoReply {
            from: self.target,
            sequence,
            bytes: message.len(),
            ttl,
            corrupt,
        })
    }

    /// Stamp, then a counting fill the reply must carry back unchanged.
    fn payload(&self, sequence: u64, length: usize) -> Vec<u8> {
        let mut payload: Vec<u8> = (0..length).map(|index| index as u8).collect();
        if length >= STAMP_LEN {
            payload[..4].copy_from_slice(MAGIC);
            payload[4..8].copy_from_slice(&self.token.to_be_bytes());
            payload[8..16].copy_from_slice(&sequence.to_be_bytes());
        }
        payload
    }
}

/// The socket opened but the target has no route: a network fault, not a missing privilege.
#[derive(Debug, thiserror::Error)]
#[error("no route to the target: {0}")]
pub struct Unreachable(io::Error);

impl IcmpError {
    /// When a socket could be opened but the target itself is unreachable (no route, address
    /// missing), as opposed to a missing privilege or an unsupported family: why.
    pub fn unreachable(&self) -> Option<&io::Error> {
        fn unreachable(error: &io::Error) -> Option<&io::Error> {
            error
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<Unreachable>())
                .map(|Unreachable(inner)| inner)
        }
        match self {
            IcmpError::Open { error, .. } => unreachable(error),
            IcmpError::NoSocket { datagram, raw } => {
                unreachable(datagram).or_else(|| unreachable(raw))
            }
            _ => None,
        }
    }
}

fn is_icmp_error(code: i32) -> bool {
    matches!(
        code,
        libc::EHOSTUNREACH | libc::ENETUNREACH | libc::ECONNREFUSED | libc::EPROTO
    )
}

fn open_kind(target: IpAddr, kind: SocketKind) -> io::Result<(Socket, SocketKind)> {
    let (domain, protocol) = match target {
        IpAddr::V4(_) => (Domain::IPV4, Protocol::ICMPV4),
        IpAddr::V6(_) => (Domain::IPV6, Protocol::ICMPV6),
    };
    let socket_type = match kind {
        SocketKind::Datagram => Type::DGRAM,
        SocketKind::Raw => Type::RAW,
    };
    let socket = Socket::new(domain, socket_type, Some(protocol))?;
    // Reads only follow a ppoll that said "readable"; non-blocking guards against the rare
    // wake-up with nothing to read (a datagram dropped for a bad checksum).
    socket.set_nonblocking(true)?;
    let address = SockAddr::from(SocketAddr::new(target, 0));
    socket
        .connect(&address)
        .map_err(|error| io::Error::new(error.kind(), Unreachable(error)))?;
    if kind == SocketKind::Raw && matches!(target, IpAddr::V6(_)) {
        // Let only echo replies through on raw ICMPv6 (our own requests to ::1 would otherwise
        // arrive too); failure just means we filter in user space, which we do anyway.
        set_icmp6_filter_replies_only(&socket);
    }
    Ok((socket, kind))
}

/// ICMP6_FILTER (RFC 3542 section 3.2): block every type but echo reply (129). Failure just
/// means we filter in user space, which we do anyway.
fn set_icmp6_filter_replies_only(socket: &Socket) {
    let _ = loopscope_sys::set_icmpv6_filter(socket, &[129]);
}
