//! What the kernel tells about a socket, and what we conclude from it.

use std::net::{IpAddr, Ipv4Addr};

use serde::Serialize;

/// The transport of a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP (listening sockets).
    Tcp,
    /// UDP (unconnected bound sockets: UDP has no listen state).
    Udp,
}

impl Protocol {
    /// `tcp` or `udp`, as output shows it.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// The address family of a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// IPv4.
    Ipv4,
    /// IPv6 (an IPv6 socket may take IPv4 too, unless V6ONLY).
    Ipv6,
}

impl Family {
    /// `ipv4` or `ipv6`, as output shows it.
    pub fn name(self) -> &'static str {
        match self {
            Family::Ipv4 => "ipv4",
            Family::Ipv6 => "ipv6",
        }
    }
}

/// One socket as the kernel reports it (sock_diag or /proc/net), before any judgement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawSocket {
    /// TCP or UDP.
    pub protocol: Protocol,
    /// The socket's own family: an AF_INET6 socket bound to `::ffff:127.0.0.1` is `Ipv6`.
    pub family: Family,
    /// The address it is bound to.
    pub address: IpAddr,
    /// The port it is bound to.
    pub port: u16,
    /// IPV6_V6ONLY of an AF_INET6 socket; `None` for AF_INET, or when the source cannot tell
    /// (/proc/net).
    pub v6only: Option<bool>,
    /// SO_BINDTODEVICE interface index: `Some(0)` not bound, `None` unknown (/proc/net).
    pub bound_ifindex: Option<u32>,
    /// The owner's uid as the kernel records it.
    pub uid: u32,
    /// The socket's inode.
    pub inode: u64,
}

/// The exposure verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Exposure {
    /// Bound to a loopback address (127/8, ::1, ::ffff:127.x): unreachable from outside.
    LoopbackOnly,
    /// Tied to one interface with SO_BINDTODEVICE (exposed unless that interface is a loopback).
    Interface,
    /// Bound to one specific non-loopback address: reachable wherever that address is routed.
    Address,
    /// 0.0.0.0 or `[::]`: every address of the host.
    Wildcard,
}

impl Exposure {
    /// The JSON and human name (`loopback_only`, `interface`, `address`, `wildcard`).
    pub fn name(self) -> &'static str {
        match self {
            Exposure::LoopbackOnly => "loopback_only",
            Exposure::Interface => "interface",
            Exposure::Address => "address",
            Exposure::Wildcard => "wildcard",
        }
    }
}

/// A process that holds a socket (has a file descriptor for it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Process {
    /// Its process id.
    pub pid: u32,
    /// `/proc/PID/comm`: the command name, as `ss -p` shows it.
    pub command: String,
    /// The real uid of the process, when /proc shows it.
    pub uid: Option<u32>,
    /// That uid's user name, when it has one.
    pub user: Option<String>,
}

/// One listening or bound socket, judged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Listener {
    /// TCP or UDP.
    pub protocol: Protocol,
    /// IPv4 or IPv6.
    pub family: Family,
    /// The address it is bound to.
    pub local_address: IpAddr,
    /// The port it is bound to.
    pub local_port: u16,
    /// How it is bound, and so who can reach it.
    pub exposure: Exposure,
    /// Reachable from outside this host (or namespace).
    pub exposed: bool,
    /// Which IP versions can reach it: `[::]` without V6ONLY takes IPv4 too.
    pub reachable_families: Vec<Family>,
    /// IPV6_V6ONLY, when the source reports it (sock_diag does, /proc/net does not).
    pub v6only: Option<bool>,
    /// SO_BINDTODEVICE interface name.
    pub bound_interface: Option<String>,
    /// For a specific address: the interface that carries it (None if no interface does, e.g.
    /// a nonlocal/freebind bind, or if it could not be looked up).
    pub address_interface: Option<String>,
    /// The socket's owner uid as the kernel records it.
    pub uid: u32,
    /// The owner's user name, when the uid has one.
    pub user: Option<String>,
    /// The socket's inode, which ties it to the file descriptors of its holders.
    pub inode: u64,
    /// The processes holding it.
    pub processes: Vec<Process>,
}

/// The v4 address inside an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`), else the address.
pub(crate) fn unmap(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => address,
        },
        v4 => v4,
    }
}

/// Loopback in the wide sense: all of 127/8, ::1, and IPv4-mapped 127/8.
pub(crate) fn is_loopback(address: IpAddr) -> bool {
    unmap(address).is_loopback()
}

/// 0.0.0.0, `::`, and the mapped `::ffff:0.0.0.0`.
pub(crate) fn is_wildcard(address: IpAddr) -> bool {
    address.is_unspecified() || unmap(address) == IpAddr::V4(Ipv4Addr::UNSPECIFIED)
}
