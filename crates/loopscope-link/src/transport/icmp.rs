//! `icmp://ADDR`: ICMP echo through the unprivileged datagram kind of socket
//! (`SOCK_DGRAM`/`IPPROTO_ICMP`, allowed by `net.ipv4.ping_group_range`) or the raw kind
//! (`SOCK_RAW`, needs `CAP_NET_RAW`).
//!
//! ICMP echo gives back what is sent, but one message at a time with its own sequence numbers,
//! so it is not a byte-stream [`crate::Link`]: `ping` drives an [`EchoSocket`] directly.
//!
//! Matching replies differs between the two kinds. A datagram socket gets only replies to
//! itself, but the kernel rewrites the identifier (it becomes the socket's "port"), so replies
//! are matched on the sequence number and the payload stamp. A raw socket sees every ICMP
//! message for the host, our own requests to a loopback address included, so replies are
//! matched on type, identifier, sequence and stamp.
//!
//! Times: the send time is read from CLOCK_MONOTONIC immediately before the request is handed
//! to the kernel; the arrival time is the kernel's receive timestamp (SO_TIMESTAMPNS, as
//! iputils takes SO_TIMESTAMP), moved from CLOCK_REALTIME onto CLOCK_MONOTONIC by a pair of
//! clock readings taken together ([`loopscope_sys::ClockPair`]), or the
//! monotonic clock read when the reply is read if the kernel gave no timestamp.

use std::io::{self, IoSliceMut};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::os::fd::{AsFd, AsRawFd};
use std::time::Duration;

use loopscope_wire::icmp::{self as wire, EchoKind, EchoPacket, EchoRepr, EchoStamp, Version};
use loopscope_wire::ipv4::Ipv4Packet;
use nix::sys::socket::{ControlMessageOwned, MsgFlags, setsockopt, sockopt};
use serde::Serialize;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::endpoint::{Endpoint, EndpointError};

pub use loopscope_wire::icmp::STAMP_LEN;

/// Largest ICMP payload in one IPv4 datagram (65535 - 20 - 8).
pub const MAX_PAYLOAD: usize = 65_507;

/// The address an `icmp:` endpoint names: `icmp://127.0.0.1`, `icmp://[::1]`, `icmp:::1`,
/// `icmp://localhost` (resolved; the first answer is used). Zone indices (`fe80::1%lo`) are not
/// supported.
pub fn target(endpoint: &Endpoint) -> Result<IpAddr, EndpointError> {
    endpoint.reject_unknown_options(&[])?;
    let host = endpoint.target.trim_end_matches('/');
    let host = host
        .strip_prefix('[')
        .and_then(|inner| inner.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() {
        return Err(endpoint.invalid("names no address (try icmp://127.0.0.1 or icmp://[::1])"));
    }
    if let Ok(address) = host.parse::<IpAddr>() {
        return Ok(address);
    }
    (host, 0)
        .to_socket_addrs()
        .ok()
        .and_then(|mut addresses| addresses.next())
        .map(|address| address.ip())
        .ok_or_else(|| {
            endpoint.invalid(format!(
                "'{host}' is neither an address nor a name that resolves"
            ))
        })
}

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
    /// `datagram` or `raw`, as reports show it.
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
    /// This kind and no other.
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

/// Why an ICMP echo socket could not be used.
#[derive(Debug, thiserror::Error)]
pub enum IcmpError {
    /// Not `raw`, `dgram` or `auto`.
    #[error("unknown ICMP socket kind '{0}' (expected raw, dgram or auto)")]
    BadChoice(String),
    #[error(
        "cannot open an ICMP socket: datagram refused ({datagram}), raw refused ({raw}); allow ping sockets with `sysctl -w net.ipv4.ping_group_range=\"0 2147483647\"` or run with CAP_NET_RAW"
    )]
    /// Neither kind could be opened.
    NoSocket {
        /// Why the datagram socket was refused.
        datagram: io::Error,
        /// Why the raw socket was refused.
        raw: io::Error,
    },
    /// The kind asked for could not be opened.
    #[error("cannot open a {kind} ICMP socket: {error}{hint}")]
    Open {
        /// `datagram` or `raw`.
        kind: &'static str,
        /// Why.
        error: io::Error,
        /// How to allow it, or empty.
        hint: &'static str,
    },
    /// The socket opened but the target cannot be reached (no route, address missing).
    #[error("no route to {target}: {error}")]
    Unreachable {
        /// The address.
        target: IpAddr,
        /// What the kernel said.
        error: io::Error,
    },
    /// A send or receive failed.
    #[error("ICMP socket I/O: {0}")]
    Io(#[from] io::Error),
}

impl IcmpError {
    /// When a socket could be opened but the target itself is unreachable (no route, address
    /// missing), as opposed to a missing privilege or an unsupported family: why.
    pub fn unreachable(&self) -> Option<&io::Error> {
        match self {
            IcmpError::Unreachable { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// A reply that matched a request of ours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EchoReply {
    /// Who answered.
    pub from: IpAddr,
    /// The request's full 64-bit sequence number (from the payload's stamp).
    pub sequence: u64,
    /// ICMP message bytes (header and payload), as ping reports them.
    pub bytes: usize,
    /// The IP TTL or hop limit, where the socket gives it.
    pub ttl: Option<u8>,
    /// The payload came back different from what was sent.
    pub corrupt: bool,
    /// When the reply arrived, in CLOCK_MONOTONIC nanoseconds.
    pub arrived_ns: u64,
    /// The arrival time is the kernel's receive timestamp (not the time it was read).
    pub kernel_timestamp: bool,
}

/// An ICMP echo socket connected to one target.
pub struct EchoSocket {
    socket: Socket,
    kind: SocketKind,
    version: Version,
    target: IpAddr,
    identifier: u16,
    token: u32,
    buffer: Vec<u8>,
    message: Vec<u8>,
    control: Vec<u8>,
}

impl EchoSocket {
    /// Opens and connects a socket of the chosen kind to `target`.
    pub fn open(target: IpAddr, choice: SocketChoice) -> Result<Self, IcmpError> {
        Self::open_bound(target, choice, &Bind::default())
    }

    /// Opens a socket as [`EchoSocket::open`] does, sending from `bind`'s source address and
    /// through its interface when it names them.
    pub fn open_bound(
        target: IpAddr,
        choice: SocketChoice,
        bind: &Bind,
    ) -> Result<Self, IcmpError> {
        // A raw socket's identifier is ours to choose, and chosen first: its filter names it.
        let raw_identifier = (std::process::id() as u16) ^ rand::random::<u16>();
        let open_kind = |kind| open_kind(target, kind, bind, raw_identifier);
        let (socket, kind) = match choice {
            SocketChoice::Only(kind) => open_kind(kind).map_err(|error| match error {
                Opened::Refused(error) => IcmpError::Open {
                    kind: kind.name(),
                    error,
                    hint: match kind {
                        SocketKind::Datagram => {
                            " (is your group inside net.ipv4.ping_group_range? `sysctl -w net.ipv4.ping_group_range=\"0 2147483647\"`)"
                        }
                        SocketKind::Raw => " (raw sockets need root or CAP_NET_RAW)",
                    },
                },
                Opened::Unreachable(error) => IcmpError::Unreachable { target, error },
            })?,
            SocketChoice::Auto => match open_kind(SocketKind::Datagram) {
                Ok(pair) => pair,
                Err(Opened::Unreachable(error)) => {
                    return Err(IcmpError::Unreachable { target, error });
                }
                Err(Opened::Refused(datagram)) => match open_kind(SocketKind::Raw) {
                    Ok(pair) => pair,
                    Err(Opened::Unreachable(error)) => {
                        return Err(IcmpError::Unreachable { target, error });
                    }
                    Err(Opened::Refused(raw)) => {
                        return Err(IcmpError::NoSocket { datagram, raw });
                    }
                },
            },
        };
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
            SocketKind::Raw => raw_identifier,
        };
        Ok(EchoSocket {
            socket,
            kind,
            version,
            target,
            identifier,
            token: rand::random(),
            buffer: vec![0u8; 65_536 + 60],
            message: Vec::new(),
            control: nix::cmsg_space!(nix::sys::time::TimeSpec),
        })
    }

    /// The kind of socket opened.
    pub fn kind(&self) -> SocketKind {
        self.kind
    }

    /// The address pinged.
    pub fn target(&self) -> IpAddr {
        self.target
    }

    /// Sends echo request number `sequence` with a payload of `payload_len` bytes (at least
    /// [`STAMP_LEN`]). Returns the send time: CLOCK_MONOTONIC read just before the request was
    /// handed to the kernel (on loopback most of the round trip happens inside that call).
    pub fn send(&mut self, sequence: u64, payload_len: usize) -> Result<u64, IcmpError> {
        let payload_len = payload_len.max(STAMP_LEN);
        self.message.resize(wire::HEADER_LEN + payload_len, 0);
        let stamp = EchoStamp {
            token: self.token,
            sequence,
        };
        let mut payload = std::mem::take(&mut self.buffer);
        wire::fill_payload(&stamp, &mut payload[..payload_len]);
        let repr = EchoRepr {
            version: self.version,
            kind: EchoKind::Request,
            identifier: self.identifier,
            sequence: sequence as u16,
            payload: &payload[..payload_len],
        };
        if let Ok(mut packet) = EchoPacket::new_checked(&mut self.message[..]) {
            repr.emit(&mut packet);
        }
        self.buffer = payload;
        let sent_ns = monotonic_ns();
        loop {
            match self.socket.send(&self.message) {
                Ok(_) => return Ok(sent_ns),
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(error.into()),
            }
        }
    }

    /// Waits up to `timeout` for a reply to one of our requests; `Ok(None)` on timeout or when
    /// a signal interrupted the wait. Anything else that arrives (our own requests on a raw
    /// socket, other pingers' replies, ICMP errors) is skipped.
    pub fn receive(&mut self, timeout: Duration) -> Result<Option<EchoReply>, IcmpError> {
        let started = monotonic_ns();
        let limit = u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX);
        loop {
            let left = limit.saturating_sub(monotonic_ns().saturating_sub(started));
            if left == 0 {
                return Ok(None);
            }
            // SO_RCVTIMEO counts in scheduler ticks (4-10 ms); poll sleeps on a high-resolution
            // timer, which sub-millisecond intervals need.
            if !wait_readable(&self.socket, Duration::from_nanos(left))? {
                return Ok(None);
            }
            let (size, kernel_realtime) = match self.read_datagram() {
                Ok(read) => read,
                Err(error)
                    if matches!(
                        error.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) =>
                {
                    continue;
                }
                // An ICMP error queued on a connected socket (e.g. unreachable): not a reply.
                Err(error) if error.raw_os_error().is_some_and(is_icmp_error) => continue,
                Err(error) => return Err(error.into()),
            };
            let now = loopscope_sys::ClockPair::now();
            let (arrived_ns, kernel_timestamp) =
                match kernel_realtime.and_then(|kernel| now.monotonic_of(kernel)) {
                    Some(arrived) => (arrived, true),
                    None => (now.monotonic_ns, false),
                };
            if let Some(mut reply) = self.match_reply(size) {
                reply.arrived_ns = arrived_ns;
                reply.kernel_timestamp = kernel_timestamp;
                return Ok(Some(reply));
            }
        }
    }

    /// One datagram into `buffer`, with the kernel's receive time (CLOCK_REALTIME ns).
    fn read_datagram(&mut self) -> io::Result<(usize, Option<u64>)> {
        let mut iov = [IoSliceMut::new(&mut self.buffer)];
        let message = nix::sys::socket::recvmsg::<()>(
            self.socket.as_raw_fd(),
            &mut iov,
            Some(&mut self.control[..]),
            MsgFlags::MSG_DONTWAIT,
        )
        .map_err(io::Error::from)?;
        let mut kernel = None;
        if let Ok(messages) = message.cmsgs() {
            for control in messages {
                if let ControlMessageOwned::ScmTimestampns(time) = control {
                    let seconds = u64::try_from(time.tv_sec()).unwrap_or(0);
                    let nanos = u64::try_from(time.tv_nsec()).unwrap_or(0);
                    kernel = seconds
                        .checked_mul(1_000_000_000)
                        .and_then(|ns| ns.checked_add(nanos));
                }
            }
        }
        Ok((message.bytes, kernel))
    }

    fn match_reply(&self, size: usize) -> Option<EchoReply> {
        let datagram = &self.buffer[..size];
        let (ttl, message) = match (self.kind, self.version) {
            // Only raw IPv4 sockets deliver the IP header.
            (SocketKind::Raw, Version::V4) => {
                let ip = Ipv4Packet::new_checked(datagram).ok()?;
                (Some(ip.ttl()), &datagram[ip.header_len()..])
            }
            _ => (None, datagram),
        };
        let packet = EchoPacket::new_checked(message).ok()?;
        let parsed = EchoRepr::parse(&packet, self.version);
        // A reply whose checksum fails is still ours to count (as corrupt) when its stamp says
        // so; only the header fields decide whether it is an echo reply at all.
        let (repr, checksum_ok) = match parsed {
            Ok(repr) => (repr, true),
            Err(wire::EchoError::BadChecksum { .. }) => (
                EchoRepr {
                    version: self.version,
                    kind: self.version.kind_of(packet.message_type())?,
                    identifier: packet.identifier(),
                    sequence: packet.sequence(),
                    payload: packet.payload(),
                },
                false,
            ),
            Err(_) => return None,
        };
        if repr.kind != EchoKind::Reply {
            return None;
        }
        if self.kind == SocketKind::Raw && repr.identifier != self.identifier {
            return None;
        }
        let stamp = EchoStamp::parse(repr.payload).ok()?;
        if stamp.token != self.token || stamp.sequence as u16 != repr.sequence {
            return None;
        }
        let corrupt = !checksum_ok || !wire::payload_is_intact(&stamp, repr.payload);
        Some(EchoReply {
            from: self.target,
            sequence: stamp.sequence,
            bytes: message.len(),
            ttl,
            corrupt,
            arrived_ns: 0,
            kernel_timestamp: false,
        })
    }
}

/// CLOCK_MONOTONIC in nanoseconds.
pub fn monotonic_ns() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    timespec_ns(now.tv_sec, now.tv_nsec)
}

fn timespec_ns(seconds: i64, nanos: i64) -> u64 {
    u64::try_from(seconds)
        .unwrap_or(0)
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::try_from(nanos).unwrap_or(0))
}

/// Waits until `socket` is readable or `timeout` passes; `Ok(false)` on timeout or when a
/// signal interrupted the wait (the caller looks at its stop flag and waits again).
fn wait_readable(socket: &Socket, timeout: Duration) -> io::Result<bool> {
    Ok(matches!(
        loopscope_sys::wait_readable(socket, Some(timeout))?,
        loopscope_sys::Readiness::Ready
    ))
}

fn is_icmp_error(code: i32) -> bool {
    matches!(
        code,
        libc::EHOSTUNREACH | libc::ENETUNREACH | libc::ECONNREFUSED | libc::EPROTO
    )
}

/// Why a socket of one kind could not be used.
enum Opened {
    /// Privilege, family or protocol refused: another kind may work.
    Refused(io::Error),
    /// The socket opened but connecting to the target failed (no route, no address).
    Unreachable(io::Error),
}

/// Where an echo socket sends from: a source address, an interface (SO_BINDTODEVICE), both
/// or neither (the kernel's choice).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bind {
    /// The source address of the requests.
    pub source: Option<IpAddr>,
    /// The interface the requests leave by.
    pub interface: Option<String>,
}

/// The classic BPF program of a raw echo socket: pass echo replies carrying `identifier`, drop
/// everything else in the kernel. A raw ICMP socket gets a copy of every ICMP message of the
/// host (other pingers' requests and replies, and on loopback our own requests): without this,
/// a thousand probes in flight each wake for the replies of all the others. iputils `ping`
/// installs the same kind of filter.
///
/// What the program sees differs by family: a raw IPv4 socket's packet starts with the IP
/// header (its length in the low nibble of the first byte, in 32-bit words: BPF's `MSH`
/// load), a raw ICMPv6 socket's with the ICMPv6 header. The identifier is at offset 4 and the
/// type at offset 0 of the ICMP header (RFC 792, RFC 4443 section 4).
pub fn echo_reply_filter(version: Version, identifier: u16) -> Vec<loopscope_sys::BpfInstruction> {
    const LDX_B_MSH: u16 = 0xb1; // BPF_LDX | BPF_B | BPF_MSH: X = 4 * (packet[k] & 0xf)
    const LD_H_IND: u16 = 0x48; // BPF_LD | BPF_H | BPF_IND: A = u16 at X + k
    const LD_B_IND: u16 = 0x50; // BPF_LD | BPF_B | BPF_IND: A = u8 at X + k
    const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const RET_K: u16 = 0x06; // BPF_RET | BPF_K
    let op = |code, jt, jf, k| loopscope_sys::BpfInstruction { code, jt, jf, k };
    let (header, reply_type) = match version {
        Version::V4 => (vec![op(LDX_B_MSH, 0, 0, 0)], 0u32),
        // X starts at 0: the ICMPv6 header is where the packet starts.
        Version::V6 => (Vec::new(), 129u32),
    };
    header
        .into_iter()
        .chain([
            op(LD_H_IND, 0, 0, 4),
            op(JEQ_K, 0, 3, u32::from(identifier)),
            op(LD_B_IND, 0, 0, 0),
            op(JEQ_K, 0, 1, reply_type),
            op(RET_K, 0, 0, u32::MAX),
            op(RET_K, 0, 0, 0),
        ])
        .collect()
}

fn open_kind(
    target: IpAddr,
    kind: SocketKind,
    bind: &Bind,
    raw_identifier: u16,
) -> Result<(Socket, SocketKind), Opened> {
    let (domain, protocol) = match target {
        IpAddr::V4(_) => (Domain::IPV4, Protocol::ICMPV4),
        IpAddr::V6(_) => (Domain::IPV6, Protocol::ICMPV6),
    };
    let socket_type = match kind {
        SocketKind::Datagram => Type::DGRAM,
        SocketKind::Raw => Type::RAW,
    };
    let socket = Socket::new(domain, socket_type, Some(protocol)).map_err(Opened::Refused)?;
    if kind == SocketKind::Raw {
        // At once, so that as little as possible is queued unfiltered (what is, the matching
        // below skips). A kernel that refuses the program leaves the matching to user space.
        let version = match target {
            IpAddr::V4(_) => Version::V4,
            IpAddr::V6(_) => Version::V6,
        };
        let _ = loopscope_sys::attach_filter(&socket, &echo_reply_filter(version, raw_identifier));
    }
    // Reads only follow a poll that said "readable"; non-blocking guards against the rare
    // wake-up with nothing to read (a datagram dropped for a bad checksum).
    socket.set_nonblocking(true).map_err(Opened::Refused)?;
    // The kernel's receive timestamp on every reply (SO_TIMESTAMPNS). Without it the arrival
    // time is read in user space, which is later by the wake-up.
    let _ = setsockopt(&socket.as_fd(), sockopt::ReceiveTimestampns, &true);
    if let Some(interface) = &bind.interface {
        socket
            .bind_device(Some(interface.as_bytes()))
            .map_err(Opened::Unreachable)?;
    }
    if let Some(source) = bind.source {
        socket
            .bind(&SockAddr::from(SocketAddr::new(source, 0)))
            .map_err(Opened::Unreachable)?;
    }
    socket
        .connect(&SockAddr::from(SocketAddr::new(target, 0)))
        .map_err(Opened::Unreachable)?;
    if kind == SocketKind::Raw && matches!(target, IpAddr::V6(_)) {
        // Let only echo replies through on raw ICMPv6 (our own requests to ::1 would otherwise
        // arrive too); failure just means we filter in user space, which we do anyway.
        let _ = loopscope_sys::set_icmpv6_filter(&socket, &[129]);
    }
    Ok((socket, kind))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::net::RecvFlags;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn parse(text: &str) -> Result<IpAddr, EndpointError> {
        target(&Endpoint::parse(text).unwrap())
    }

    #[test]
    fn targets() {
        assert_eq!(
            parse("icmp://127.0.0.1").unwrap(),
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        );
        assert_eq!(
            parse("ICMP://[::1]").unwrap(),
            IpAddr::V6(Ipv6Addr::LOCALHOST)
        );
        assert_eq!(
            parse("icmp:127.0.0.2").unwrap(),
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))
        );
        assert!(parse("icmp://").is_err());
        assert!(parse("icmp://127.0.0.1?bogus=1").is_err());
        assert!(parse("icmp://no-such-host.invalid").is_err());
    }

    #[test]
    fn socket_choices() {
        assert_eq!(
            "raw".parse::<SocketChoice>().unwrap(),
            SocketChoice::Only(SocketKind::Raw)
        );
        assert_eq!(
            "DGRAM".parse::<SocketChoice>().unwrap(),
            SocketChoice::Only(SocketKind::Datagram)
        );
        assert_eq!("".parse::<SocketChoice>().unwrap(), SocketChoice::Auto);
        assert!("packet".parse::<SocketChoice>().is_err());
    }

    /// An echo request built here byte by byte (RFC 792, RFC 4443 section 4.1), not by the
    /// wire crate: type 8 or 128, code 0, `identifier`, sequence 1, a few bytes of payload. The
    /// IPv4 checksum is RFC 1071's; a raw ICMPv6 socket has the kernel fill its checksum in
    /// (RFC 3542 section 3.1).
    fn hand_built_request(version: Version, identifier: u16) -> Vec<u8> {
        let kind = if version == Version::V4 { 8u8 } else { 128 };
        let mut message = vec![kind, 0, 0, 0];
        message.extend_from_slice(&identifier.to_be_bytes());
        message.extend_from_slice(&[0, 1, b'h', b'a', b'n', b'd']);
        if version == Version::V4 {
            let mut sum: u32 = message
                .chunks(2)
                .map(|pair| u32::from(u16::from_be_bytes([pair[0], pair[1]])))
                .sum();
            while sum > 0xffff {
                sum = (sum & 0xffff) + (sum >> 16);
            }
            message[2..4].copy_from_slice(&(!(sum as u16)).to_be_bytes());
        }
        message
    }

    /// The ICMP message of what a raw socket read: after the IP header on IPv4, all of it on
    /// IPv6.
    fn icmp_part(version: Version, datagram: &[u8]) -> &[u8] {
        match version {
            Version::V4 => &datagram[usize::from(datagram[0] & 0xf) * 4..],
            Version::V6 => datagram,
        }
    }

    /// The kernel filter keeps a raw echo socket quiet for every ICMP message but its own echo
    /// replies: another pinger's request and reply, and our own request crossing lo. In a
    /// network namespace of the test's own (no other pinger), with an unfiltered raw socket as
    /// the witness that the other pinger's messages were delivered. Needs root.
    #[test]
    fn a_raw_socket_wakes_only_for_its_own_replies() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipping: raw ICMP sockets and network namespaces need root");
            return;
        }
        std::thread::spawn(|| {
            loopscope_sys::enter_new_network_namespace().expect("a namespace with lo up");
            for (version, localhost) in [
                (Version::V4, IpAddr::V4(Ipv4Addr::LOCALHOST)),
                (Version::V6, IpAddr::V6(Ipv6Addr::LOCALHOST)),
            ] {
                let (domain, protocol, reply_type) = match version {
                    Version::V4 => (Domain::IPV4, Protocol::ICMPV4, 0u8),
                    Version::V6 => (Domain::IPV6, Protocol::ICMPV6, 129),
                };
                let mut ours = EchoSocket::open(localhost, SocketChoice::Only(SocketKind::Raw))
                    .expect("raw echo socket");
                let witness = Socket::new(domain, Type::RAW, Some(protocol)).expect("witness");
                let stranger_id = ours.identifier ^ 0x5a5a;
                witness
                    .send_to(
                        &hand_built_request(version, stranger_id),
                        &SockAddr::from(SocketAddr::new(localhost, 0)),
                    )
                    .expect("stranger's request");
                // The witness sees the stranger's request, then its reply; every raw socket
                // gets its copy of the reply in the same delivery.
                let mut buffer = [0u8; 256];
                loop {
                    assert!(
                        wait_readable(&witness, Duration::from_secs(30)).expect("wait"),
                        "the stranger's reply never came ({version:?})"
                    );
                    let read = rustix::net::recv(&witness, &mut buffer, RecvFlags::empty())
                        .expect("witness read")
                        .0;
                    let icmp = icmp_part(version, &buffer[..read]);
                    if icmp[0] == reply_type && icmp[4..6] == stranger_id.to_be_bytes() {
                        break;
                    }
                }
                assert!(
                    rustix::net::recv(&ours.socket, &mut buffer, RecvFlags::DONTWAIT).is_err(),
                    "the stranger's messages were queued on our socket ({version:?})"
                );
                ours.send(1, 56).expect("our request");
                assert!(
                    wait_readable(&ours.socket, Duration::from_secs(30)).expect("wait"),
                    "our reply never came ({version:?})"
                );
                let read = rustix::net::recv(&ours.socket, &mut buffer, RecvFlags::DONTWAIT)
                    .expect("our read")
                    .0;
                let icmp = icmp_part(version, &buffer[..read]);
                // Our request crossed lo before its reply was made: had it passed, it would
                // be first.
                assert_eq!(
                    icmp[0], reply_type,
                    "our own request was queued ({version:?})"
                );
                assert_eq!(icmp[4..6], ours.identifier.to_be_bytes());
            }
        })
        .join()
        .expect("namespace thread");
    }
}
