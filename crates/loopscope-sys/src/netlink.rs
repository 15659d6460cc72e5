//! Netlink, synchronously: one request, read to DONE, no runtime. Messages are built and parsed
//! by the netlink-packet-* crates (one version line: core 0.9, route 0.34, sock-diag 0.5); the
//! socket is netlink-sys.
//!
//! [`RouteSocket`] dumps interfaces, addresses and routes (rtnetlink), for the doctor and for
//! uRPF; [`SockDiag`] dumps listening sockets (inet_diag), for `listeners`.

use std::io;
use std::net::IpAddr;
use std::time::Duration;

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_REQUEST, NetlinkDeserializable, NetlinkHeader,
    NetlinkMessage, NetlinkPayload, NetlinkSerializable,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteType,
};
use netlink_packet_sock_diag::SockDiagMessage;
use netlink_packet_sock_diag::constants::{
    AF_INET, AF_INET6, IPPROTO_TCP, IPPROTO_UDP, TCP_CLOSE, TCP_LISTEN,
};
use netlink_packet_sock_diag::inet::nlas::Nla;
use netlink_packet_sock_diag::inet::{ExtensionFlags, InetRequest, SocketId, StateFlags};
use netlink_sys::protocols::{NETLINK_ROUTE, NETLINK_SOCK_DIAG};
use netlink_sys::{Socket, SocketAddr};

/// Why a netlink query failed.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// The socket could not be opened, bound or connected (no netlink in this sandbox, or the
    /// family is missing from the kernel).
    #[error("cannot open a netlink socket: {0}")]
    Open(io::Error),
    /// Sending the request or reading the reply failed.
    #[error("netlink I/O: {0}")]
    Io(io::Error),
    /// The kernel answered the request with an error (ENOENT: a diag module is missing;
    /// EAFNOSUPPORT: no IPv6).
    #[error("the kernel refused the netlink request: {0}")]
    Refused(io::Error),
    /// The reply could not be parsed.
    #[error("malformed netlink reply: {0}")]
    Decode(String),
}

/// How long a dump waits for the kernel's next datagram before giving up.
const REPLY_TIMEOUT: Duration = Duration::from_secs(2);
/// A dump that raced with a change (NLM_F_DUMP_INTR) is taken again, this many times at most.
const DUMP_ATTEMPTS: usize = 4;

/// One netlink socket of one protocol, used for one dump at a time.
struct Channel {
    socket: Socket,
    sequence: u32,
    buffer: Vec<u8>,
}

impl Channel {
    fn open(protocol: isize) -> Result<Self, NetlinkError> {
        let mut socket = Socket::new(protocol).map_err(NetlinkError::Open)?;
        socket.bind_auto().map_err(NetlinkError::Open)?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(NetlinkError::Open)?;
        crate::fdio::set_receive_timeout(&socket, Some(REPLY_TIMEOUT))
            .map_err(NetlinkError::Open)?;
        // Large dumps (10,000 sockets) arrive faster with a bigger receive buffer; best effort.
        let _ = socket.set_rx_buf_sz(1 << 20);
        Ok(Channel {
            socket,
            sequence: 0,
            buffer: vec![0; 64 * 1024],
        })
    }

    /// Sends `request` as a dump and collects every reply message, retaking the dump when the
    /// kernel says it raced with a change.
    fn dump<T>(&mut self, request: T) -> Result<Vec<T>, NetlinkError>
    where
        T: NetlinkSerializable + NetlinkDeserializable + Clone,
    {
        let mut attempt = 1;
        loop {
            let (replies, consistent) = self.dump_once(request.clone())?;
            if consistent || attempt == DUMP_ATTEMPTS {
                return Ok(replies);
            }
            attempt += 1;
        }
    }

    fn dump_once<T>(&mut self, request: T) -> Result<(Vec<T>, bool), NetlinkError>
    where
        T: NetlinkSerializable + NetlinkDeserializable,
    {
        let sequence = self.send(request, NLM_F_DUMP)?;

        let mut replies = Vec::new();
        let mut consistent = true;
        loop {
            let size = receive(&self.socket, &mut self.buffer)?;
            if size == 0 {
                return Err(NetlinkError::Decode(
                    "the kernel closed the dump early".into(),
                ));
            }
            let size = size.min(self.buffer.len());
            let mut offset = 0;
            while offset < size {
                let message = NetlinkMessage::<T>::deserialize(&self.buffer[offset..size])
                    .map_err(|error| NetlinkError::Decode(error.to_string()))?;
                let length = message.header.length as usize;
                // Replies to an earlier, abandoned request of this socket are skipped.
                if message.header.sequence_number == sequence {
                    if message.header.flags & NLM_F_DUMP_INTR != 0 {
                        consistent = false;
                    }
                    match message.payload {
                        NetlinkPayload::Done(_) => return Ok((replies, consistent)),
                        NetlinkPayload::Error(error) => {
                            return Err(NetlinkError::Refused(match error.code {
                                Some(code) => io::Error::from_raw_os_error(-code.get()),
                                None => io::Error::other("an ACK where a dump was expected"),
                            }));
                        }
                        NetlinkPayload::InnerMessage(inner) => replies.push(inner),
                        _ => {}
                    }
                }
                if length == 0 {
                    break;
                }
                // Messages are 4-byte aligned within a datagram (NLMSG_ALIGN).
                offset += (length + 3) & !3;
            }
        }
    }

    /// Sends `request` with `flags` (besides NLM_F_REQUEST) under the next sequence number,
    /// which it returns: the replies to it carry that number.
    fn send<T>(&mut self, request: T, flags: u16) -> Result<u32, NetlinkError>
    where
        T: NetlinkSerializable,
    {
        self.sequence = self.sequence.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = self.sequence;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(request));
        packet.finalize();
        let mut bytes = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut bytes);
        send(&self.socket, &bytes)?;
        Ok(self.sequence)
    }

    /// Sends `request` (a change, not a dump) and waits for the kernel's acknowledgement.
    fn change<T>(&mut self, request: T) -> Result<(), NetlinkError>
    where
        T: NetlinkSerializable + NetlinkDeserializable,
    {
        let sequence = self.send(request, NLM_F_ACK)?;
        loop {
            let size = receive(&self.socket, &mut self.buffer)?.min(self.buffer.len());
            if size == 0 {
                return Err(NetlinkError::Decode(
                    "the kernel closed the socket before acknowledging".into(),
                ));
            }
            let message = NetlinkMessage::<T>::deserialize(&self.buffer[..size])
                .map_err(|error| NetlinkError::Decode(error.to_string()))?;
            // An acknowledgement is an error message with code 0 (netlink(7)); replies to an
            // earlier, abandoned request of this socket are skipped.
            if message.header.sequence_number == sequence
                && let NetlinkPayload::Error(error) = message.payload
            {
                return match error.code {
                    None => Ok(()),
                    Some(code) => Err(NetlinkError::Refused(io::Error::from_raw_os_error(
                        -code.get(),
                    ))),
                };
            }
        }
    }
}

/// A dump is one unit: EINTR while sending or reading it is retried (the fdio EINTR rule for
/// calls that have moved data).
fn send(socket: &Socket, bytes: &[u8]) -> Result<(), NetlinkError> {
    loop {
        match socket.send(bytes, 0) {
            Ok(_) => return Ok(()),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(NetlinkError::Io(error)),
        }
    }
}

fn receive(socket: &Socket, buffer: &mut [u8]) -> Result<usize, NetlinkError> {
    loop {
        match socket.recv(&mut &mut buffer[..], 0) {
            Ok(size) => return Ok(size),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                return Err(NetlinkError::Io(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the kernel stopped answering mid-dump",
                )));
            }
            Err(error) => return Err(NetlinkError::Io(error)),
        }
    }
}

/// One network interface as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// Interface index (ifindex).
    pub index: u32,
    /// Interface name (IFLA_IFNAME).
    pub name: String,
    /// Administratively up (IFF_UP).
    pub up: bool,
    /// The carrier is up (IFF_LOWER_UP).
    pub lower_up: bool,
    /// A loopback interface (IFF_LOOPBACK).
    pub loopback: bool,
    /// IFLA_MTU.
    pub mtu: Option<u32>,
}

/// One address on an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceAddress {
    /// The interface it is on.
    pub index: u32,
    /// The interface's own address (IFA_LOCAL, or IFA_ADDRESS where there is no IFA_LOCAL).
    pub address: IpAddr,
    /// The prefix length.
    pub prefix_len: u8,
    /// IFA_F_TENTATIVE: IPv6 duplicate address detection has not ended (RFC 4862 §5.4); the
    /// address cannot be used yet, and the kernel adds its local route only when it ends.
    pub tentative: bool,
    /// IFA_F_DADFAILED: duplicate address detection found the address in use elsewhere.
    pub dad_failed: bool,
}

/// One entry of the neighbour table (ARP for IPv4, NDP for IPv6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neighbour {
    /// The interface it is reached through.
    pub index: u32,
    /// Its IP address (NDA_DST).
    pub address: IpAddr,
    /// Its link-layer address (NDA_LLADDR), when resolved.
    pub link_address: Option<Vec<u8>>,
    /// The entry can be sent to: resolved and not failed (REACHABLE, STALE, DELAY, PROBE,
    /// PERMANENT, NOARP).
    pub usable: bool,
}

/// The type of a route (`rtm_type`, RTN_* in linux/rtnetlink.h).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteKind {
    /// A gateway or direct route.
    Unicast,
    /// Accepted locally (the `local` table).
    Local,
    /// Accepted locally as broadcast, sent as broadcast.
    Broadcast,
    /// Accepted locally as broadcast, sent as unicast.
    Anycast,
    /// A multicast route.
    Multicast,
    /// Dropped silently.
    Blackhole,
    /// Dropped with ICMP unreachable.
    Unreachable,
    /// Dropped with ICMP administratively prohibited.
    Prohibit,
    /// Not in this table: the lookup continues with the next rule.
    Throw,
    /// Address translation (obsolete).
    Nat,
    /// Any other type number.
    Other(u8),
}

impl RouteKind {
    /// Routes that drop what they match (blackhole, unreachable, prohibit) or send the lookup
    /// elsewhere (throw): no interface is reached through them.
    pub fn is_null(self) -> bool {
        matches!(
            self,
            RouteKind::Blackhole | RouteKind::Unreachable | RouteKind::Prohibit | RouteKind::Throw
        )
    }
}

/// One route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Routing table id (RTA_TABLE, which holds ids above 255).
    pub table: u32,
    /// The route's type.
    pub kind: RouteKind,
    /// RTA_DST; `None` for a default route.
    pub destination: Option<IpAddr>,
    /// The destination prefix length.
    pub prefix_len: u8,
    /// The output interfaces: RTA_OIF, then each multipath next hop's.
    pub output_interfaces: Vec<u32>,
    /// RTA_GATEWAY, when the route has one.
    pub gateway: Option<IpAddr>,
    /// True for an IPv6 route.
    pub ipv6: bool,
}

impl Route {
    /// The destination, with the family's unspecified address for a default route.
    pub fn destination_or_default(&self) -> IpAddr {
        self.destination.unwrap_or(if self.ipv6 {
            IpAddr::from([0u8; 16])
        } else {
            IpAddr::from([0u8; 4])
        })
    }
}

/// The `local` routing table's id (RT_TABLE_LOCAL).
pub const TABLE_LOCAL: u32 = 255;
/// The `main` routing table's id (RT_TABLE_MAIN).
pub const TABLE_MAIN: u32 = 254;

/// A synchronous rtnetlink client.
pub struct RouteSocket {
    channel: Channel,
}

impl RouteSocket {
    /// Opens an rtnetlink socket in the calling thread's network namespace.
    pub fn open() -> Result<Self, NetlinkError> {
        Ok(RouteSocket {
            channel: Channel::open(NETLINK_ROUTE)?,
        })
    }

    /// Dumps `request` and keeps what `pick` makes of each reply (the replies of the kind asked
    /// for; it drops the rest).
    fn dump_picking<T>(
        &mut self,
        request: RouteNetlinkMessage,
        pick: impl FnMut(RouteNetlinkMessage) -> Option<T>,
    ) -> Result<Vec<T>, NetlinkError> {
        Ok(self
            .channel
            .dump(request)?
            .into_iter()
            .filter_map(pick)
            .collect())
    }

    /// Every interface.
    pub fn interfaces(&mut self) -> Result<Vec<Interface>, NetlinkError> {
        self.dump_picking(
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            |message| match message {
                RouteNetlinkMessage::NewLink(link) => Some(interface_from(&link)),
                _ => None,
            },
        )
    }

    /// Sets the interface `index` administratively up (IFF_UP), as `ip link set DEV up`.
    pub fn set_link_up(&mut self, index: u32) -> Result<(), NetlinkError> {
        let mut request = LinkMessage::default();
        request.header.index = index;
        request.header.flags = LinkFlags::Up;
        request.header.change_mask = LinkFlags::Up;
        self.channel.change(RouteNetlinkMessage::SetLink(request))
    }

    /// Every address of both families.
    pub fn addresses(&mut self) -> Result<Vec<InterfaceAddress>, NetlinkError> {
        self.dump_picking(
            RouteNetlinkMessage::GetAddress(AddressMessage::default()),
            |message| match message {
                RouteNetlinkMessage::NewAddress(address) => address_from(&address),
                _ => None,
            },
        )
    }

    /// Every neighbour-table entry of both families.
    pub fn neighbours(&mut self) -> Result<Vec<Neighbour>, NetlinkError> {
        self.dump_picking(
            RouteNetlinkMessage::GetNeighbour(NeighbourMessage::default()),
            |message| match message {
                RouteNetlinkMessage::NewNeighbour(neighbour) => neighbour_from(&neighbour),
                _ => None,
            },
        )
    }

    /// Every route of both families in every table.
    pub fn routes(&mut self) -> Result<Vec<Route>, NetlinkError> {
        let mut routes = Vec::new();
        for family in [
            netlink_packet_route::AddressFamily::Inet,
            netlink_packet_route::AddressFamily::Inet6,
        ] {
            let mut request = RouteMessage::default();
            request.header = RouteHeader {
                address_family: family,
                ..request.header
            };
            // A kernel without IPv6 answers the Inet6 dump with an error: the caller sees no
            // IPv6 routes, which is the truth.
            let replies = match self.channel.dump(RouteNetlinkMessage::GetRoute(request)) {
                Ok(replies) => replies,
                Err(NetlinkError::Refused(_))
                    if family == netlink_packet_route::AddressFamily::Inet6 =>
                {
                    Vec::new()
                }
                Err(error) => return Err(error),
            };
            routes.extend(replies.into_iter().filter_map(|message| match message {
                RouteNetlinkMessage::NewRoute(route) => route_from(&route),
                _ => None,
            }));
        }
        Ok(routes)
    }
}

fn interface_from(message: &LinkMessage) -> Interface {
    let flags = message.header.flags;
    let mut interface = Interface {
        index: message.header.index,
        name: String::new(),
        up: flags.contains(LinkFlags::Up),
        lower_up: flags.contains(LinkFlags::LowerUp),
        loopback: flags.contains(LinkFlags::Loopback),
        mtu: None,
    };
    for attribute in &message.attributes {
        match attribute {
            LinkAttribute::IfName(name) => interface.name = name.clone(),
            LinkAttribute::Mtu(mtu) => interface.mtu = Some(*mtu),
            _ => {}
        }
    }
    interface
}

fn address_from(message: &AddressMessage) -> Option<InterfaceAddress> {
    // IFA_LOCAL is the interface's own address on point-to-point links; IFA_ADDRESS otherwise.
    let mut address = None;
    // The header carries the low 8 flag bits; IFA_FLAGS, when present, all 32.
    let mut flags = AddressFlags::from_bits_retain(u32::from(message.header.flags.bits()));
    for attribute in &message.attributes {
        match attribute {
            AddressAttribute::Local(ip) => address = Some(*ip),
            AddressAttribute::Address(ip) if address.is_none() => address = Some(*ip),
            AddressAttribute::Flags(all) => flags = *all,
            _ => {}
        }
    }
    Some(InterfaceAddress {
        index: message.header.index,
        address: address?,
        prefix_len: message.header.prefix_len,
        tentative: flags.contains(AddressFlags::Tentative),
        dad_failed: flags.contains(AddressFlags::Dadfailed),
    })
}

fn neighbour_from(message: &NeighbourMessage) -> Option<Neighbour> {
    let mut address = None;
    let mut link_address = None;
    for attribute in &message.attributes {
        match attribute {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => {
                address = Some(IpAddr::V4(*ip));
            }
            NeighbourAttribute::Destination(NeighbourAddress::Inet6(ip)) => {
                address = Some(IpAddr::V6(*ip));
            }
            NeighbourAttribute::LinkLayerAddress(bytes) => link_address = Some(bytes.clone()),
            _ => {}
        }
    }
    let usable = link_address.is_some()
        && matches!(
            message.header.state,
            NeighbourState::Reachable
                | NeighbourState::Stale
                | NeighbourState::Delay
                | NeighbourState::Probe
                | NeighbourState::Permanent
                | NeighbourState::Noarp
        );
    Some(Neighbour {
        index: message.header.ifindex,
        address: address?,
        link_address,
        usable,
    })
}

fn route_address(address: &RouteAddress) -> Option<IpAddr> {
    match address {
        RouteAddress::Inet(ip) => Some(IpAddr::V4(*ip)),
        RouteAddress::Inet6(ip) => Some(IpAddr::V6(*ip)),
        _ => None,
    }
}

fn route_from(message: &RouteMessage) -> Option<Route> {
    let ipv6 = match message.header.address_family {
        netlink_packet_route::AddressFamily::Inet => false,
        netlink_packet_route::AddressFamily::Inet6 => true,
        _ => return None,
    };
    let mut route = Route {
        table: u32::from(message.header.table),
        kind: match message.header.kind {
            RouteType::Unicast => RouteKind::Unicast,
            RouteType::Local => RouteKind::Local,
            RouteType::Broadcast => RouteKind::Broadcast,
            RouteType::Anycast => RouteKind::Anycast,
            RouteType::Multicast => RouteKind::Multicast,
            RouteType::BlackHole => RouteKind::Blackhole,
            RouteType::Unreachable => RouteKind::Unreachable,
            RouteType::Prohibit => RouteKind::Prohibit,
            RouteType::Throw => RouteKind::Throw,
            RouteType::Nat => RouteKind::Nat,
            other => RouteKind::Other(u8::from(other)),
        },
        destination: None,
        prefix_len: message.header.destination_prefix_length,
        output_interfaces: Vec::new(),
        gateway: None,
        ipv6,
    };
    let mut multipath = Vec::new();
    for attribute in &message.attributes {
        match attribute {
            RouteAttribute::Table(table) => route.table = *table,
            RouteAttribute::Destination(address) => route.destination = route_address(address),
            RouteAttribute::Gateway(address) => route.gateway = route_address(address),
            RouteAttribute::Oif(index) => route.output_interfaces.insert(0, *index),
            RouteAttribute::MultiPath(hops) => {
                multipath.extend(hops.iter().map(|hop| hop.interface_index));
            }
            _ => {}
        }
    }
    route.output_interfaces.extend(multipath);
    Some(route)
}

/// The transport protocol of a socket dump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiagProtocol {
    /// TCP sockets in LISTEN.
    Tcp,
    /// UDP sockets that are bound and not connected (TCP_CLOSE in the kernel's state field).
    Udp,
}

/// One socket from a sock_diag dump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiagSocket {
    /// Local address.
    pub address: IpAddr,
    /// Local port.
    pub port: u16,
    /// IPV6_V6ONLY (INET_DIAG_SKV6ONLY); `None` for IPv4 sockets and when not reported.
    pub v6only: Option<bool>,
    /// SO_BINDTODEVICE interface (`idiag_if`); 0 when not bound to one.
    pub bound_ifindex: u32,
    /// Owner uid.
    pub uid: u32,
    /// Socket inode (matches `socket:[N]` in /proc/PID/fd).
    pub inode: u64,
}

/// An open sock_diag (inet_diag) socket: the only source that reports IPV6_V6ONLY and the
/// SO_BINDTODEVICE interface of listening sockets.
pub struct SockDiag {
    channel: Channel,
}

impl SockDiag {
    /// Opens a sock_diag socket in the calling thread's network namespace.
    pub fn open() -> Result<Self, NetlinkError> {
        Ok(SockDiag {
            channel: Channel::open(NETLINK_SOCK_DIAG)?,
        })
    }

    /// Every listening TCP socket, or every bound unconnected UDP socket, of one family.
    /// `Refused` with ENOENT means the kernel lacks the protocol's diag module (`udp_diag`).
    pub fn listening(
        &mut self,
        protocol: DiagProtocol,
        ipv6: bool,
    ) -> Result<Vec<DiagSocket>, NetlinkError> {
        let (ip_protocol, states) = match protocol {
            DiagProtocol::Tcp => (IPPROTO_TCP, StateFlags::from_bits_truncate(1 << TCP_LISTEN)),
            DiagProtocol::Udp => (IPPROTO_UDP, StateFlags::from_bits_truncate(1 << TCP_CLOSE)),
        };
        let (family, socket_id) = if ipv6 {
            (AF_INET6, SocketId::new_v6())
        } else {
            (AF_INET, SocketId::new_v4())
        };
        let replies = self
            .channel
            .dump(SockDiagMessage::InetRequest(InetRequest {
                family,
                protocol: ip_protocol,
                extensions: ExtensionFlags::empty(),
                states,
                socket_id,
            }))?;
        Ok(replies
            .into_iter()
            .filter_map(|message| match message {
                SockDiagMessage::InetResponse(response) => {
                    let id = &response.header.socket_id;
                    let v6only = response.nlas.iter().find_map(|nla| match nla {
                        Nla::SkV6Only(v6only) => Some(*v6only),
                        _ => None,
                    });
                    Some(DiagSocket {
                        address: id.source_address,
                        port: id.source_port,
                        v6only: if ipv6 { v6only } else { None },
                        bound_ifindex: id.interface_id,
                        uid: response.header.uid,
                        inode: u64::from(response.header.inode),
                    })
                }
                _ => None,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::process::Command;

    use serde_json::Value;

    use super::*;

    /// The flags come from IFA_FLAGS when the kernel sends it (all 32 bits), else from the
    /// header's 8; a tentative address and a failed one are told apart.
    #[test]
    fn address_flags_are_read_from_ifa_flags_or_the_header() {
        let mut message = AddressMessage::default();
        message.header.index = 1;
        message.header.prefix_len = 128;
        message.attributes.push(AddressAttribute::Address(
            std::net::Ipv6Addr::LOCALHOST.into(),
        ));
        let plain = address_from(&message).expect("an address");
        assert!(!plain.tentative && !plain.dad_failed);
        message.header.flags = netlink_packet_route::address::AddressHeaderFlags::Tentative;
        let from_header = address_from(&message).expect("an address");
        assert!(from_header.tentative && !from_header.dad_failed);
        message.attributes.push(AddressAttribute::Flags(
            AddressFlags::Dadfailed | AddressFlags::Permanent,
        ));
        let from_attribute = address_from(&message).expect("an address");
        assert!(!from_attribute.tentative && from_attribute.dad_failed);
    }

    /// IFA_F_TENTATIVE as the kernel sets it, compared with iproute2: an address added to a
    /// link that is down stays tentative (duplicate address detection waits for the link);
    /// one added with `nodad` never is.
    #[test]
    fn a_tentative_address_is_read_as_ip_shows_it() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipping: making a link in a new network namespace needs root");
            return;
        }
        if Command::new("ip").arg("-V").output().is_err() {
            eprintln!("skipping: ip (iproute2) is not installed");
            return;
        }
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    crate::enter_new_network_namespace().expect("a namespace with lo up");
                    run_ip(&[
                        "link", "add", "lst0", "type", "veth", "peer", "name", "lst1",
                    ]);
                    run_ip(&["addr", "add", "2001:db8:7::1/64", "dev", "lst0"]);
                    run_ip(&["addr", "add", "2001:db8:7::2/64", "dev", "lst0", "nodad"]);
                    let mut by_ip = BTreeMap::new();
                    for link in ip_json(&["-6", "addr", "show", "dev", "lst0"])
                        .as_array()
                        .expect("array")
                    {
                        for info in link["addr_info"].as_array().expect("addr_info") {
                            let address: IpAddr =
                                info["local"].as_str().expect("local").parse().expect("ip");
                            by_ip.insert(address, info["tentative"] == true);
                        }
                    }
                    let ours: BTreeMap<IpAddr, bool> = RouteSocket::open()
                        .expect("open")
                        .addresses()
                        .expect("dump")
                        .into_iter()
                        .filter(|a| by_ip.contains_key(&a.address))
                        .map(|a| {
                            assert!(!a.dad_failed, "{a:?}");
                            (a.address, a.tentative)
                        })
                        .collect();
                    let first: IpAddr = "2001:db8:7::1".parse().expect("ip");
                    assert_eq!(by_ip.get(&first), Some(&true), "ip: {by_ip:?}");
                    assert_eq!(ours, by_ip);
                })
                .join()
                .expect("the namespace thread");
        });
    }

    fn ip_json(args: &[&str]) -> Value {
        let output = Command::new("ip")
            .arg("-j")
            .args(args)
            .output()
            .expect("ip runs");
        assert!(output.status.success(), "ip {args:?}: {output:?}");
        serde_json::from_slice(&output.stdout).expect("ip -j gives JSON")
    }

    fn run_ip(args: &[&str]) {
        let status = Command::new("ip").args(args).status().expect("ip runs");
        assert!(status.success(), "ip {args:?}");
    }

    /// Runs `compare` in a network namespace of its own (with interfaces, addresses and routes
    /// of every kind set up) when root, else in the current one. `ip` started from the thread
    /// runs in the thread's namespace.
    fn in_test_namespace(compare: impl FnOnce() + Send) {
        if Command::new("ip").arg("-V").output().is_err() {
            eprintln!("skipping: ip (iproute2) is not installed");
            return;
        }
        if !rustix::process::geteuid().is_root() {
            eprintln!("not root: comparing in the current network namespace");
            compare();
            return;
        }
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    crate::enter_new_network_namespace().expect("a namespace with lo up");
                    run_ip(&[
                        "link", "add", "lsd0", "type", "veth", "peer", "name", "lsd1",
                    ]);
                    run_ip(&["link", "set", "lsd0", "up", "mtu", "1400"]);
                    run_ip(&["link", "set", "lsd1", "up"]);
                    run_ip(&["addr", "add", "192.0.2.1/24", "dev", "lsd0"]);
                    run_ip(&["addr", "add", "2001:db8::1/64", "dev", "lsd0", "nodad"]);
                    run_ip(&["route", "add", "198.51.100.0/24", "via", "192.0.2.254"]);
                    run_ip(&["route", "add", "blackhole", "203.0.113.0/24"]);
                    run_ip(&["-6", "route", "add", "unreachable", "2001:db8:1::/48"]);
                    run_ip(&["route", "add", "10.9.0.0/16", "table", "100", "dev", "lsd0"]);
                    run_ip(&["route", "add", "prohibit", "10.11.0.0/16", "table", "1000"]);
                    run_ip(&["route", "add", "throw", "10.12.0.0/16", "table", "100"]);
                    run_ip(&[
                        "route",
                        "add",
                        "10.10.0.0/16",
                        "nexthop",
                        "via",
                        "192.0.2.2",
                        "nexthop",
                        "dev",
                        "lsd1",
                    ]);
                    run_ip(&["route", "add", "default", "via", "192.0.2.254"]);
                    compare();
                })
                .join()
                .expect("namespace thread");
        });
    }

    /// Takes `ip`'s view, ours, and `ip`'s again; compares when the two `ip` views agree (the
    /// host may change meanwhile: IPv6 link-local addresses appear, other tests add links).
    fn sandwich<T: PartialEq + std::fmt::Debug>(reference: impl Fn() -> T, ours: impl Fn() -> T) {
        let mut last = None;
        for _ in 0..20 {
            let before = reference();
            let mine = ours();
            if before != reference() {
                continue;
            }
            if mine == before {
                return;
            }
            last = Some((mine, before));
        }
        let (mine, theirs) = last.expect("the host never held still for two ip runs");
        panic!("netlink dump differs from ip -j:\nours: {mine:#?}\nip:   {theirs:#?}");
    }

    fn name_to_index() -> BTreeMap<String, u32> {
        ip_json(&["link"])
            .as_array()
            .expect("array")
            .iter()
            .map(|link| {
                (
                    link["ifname"].as_str().expect("ifname").to_string(),
                    link["ifindex"].as_u64().expect("ifindex") as u32,
                )
            })
            .collect()
    }

    #[test]
    fn interfaces_match_ip_link() {
        in_test_namespace(|| {
            sandwich(
                || {
                    let mut links: Vec<(u32, String, bool, bool, bool, Option<u32>)> =
                        ip_json(&["link"])
                            .as_array()
                            .expect("array")
                            .iter()
                            .map(|link| {
                                let flags: Vec<&str> = link["flags"]
                                    .as_array()
                                    .expect("flags")
                                    .iter()
                                    .filter_map(Value::as_str)
                                    .collect();
                                (
                                    link["ifindex"].as_u64().expect("ifindex") as u32,
                                    link["ifname"].as_str().expect("ifname").to_string(),
                                    flags.contains(&"UP"),
                                    flags.contains(&"LOWER_UP"),
                                    flags.contains(&"LOOPBACK"),
                                    link["mtu"].as_u64().map(|mtu| mtu as u32),
                                )
                            })
                            .collect();
                    links.sort();
                    links
                },
                || {
                    let mut links: Vec<_> = RouteSocket::open()
                        .expect("open")
                        .interfaces()
                        .expect("dump")
                        .into_iter()
                        .map(|i| (i.index, i.name, i.up, i.lower_up, i.loopback, i.mtu))
                        .collect();
                    links.sort();
                    links
                },
            );
        });
    }

    #[test]
    fn addresses_match_ip_addr() {
        in_test_namespace(|| {
            sandwich(
                || {
                    let mut addresses = BTreeSet::new();
                    for link in ip_json(&["addr"]).as_array().expect("array") {
                        let index = link["ifindex"].as_u64().expect("ifindex") as u32;
                        for info in link["addr_info"].as_array().expect("addr_info") {
                            let address: IpAddr =
                                info["local"].as_str().expect("local").parse().expect("ip");
                            let prefix = info["prefixlen"].as_u64().expect("prefixlen") as u8;
                            addresses.insert((index, address, prefix));
                        }
                    }
                    addresses
                },
                || {
                    RouteSocket::open()
                        .expect("open")
                        .addresses()
                        .expect("dump")
                        .into_iter()
                        .map(|a| (a.index, a.address, a.prefix_len))
                        .collect::<BTreeSet<_>>()
                },
            );
        });
    }

    /// One route as both sides can say it: family, table, type, destination/prefix, output
    /// interfaces (sorted) and gateway.
    type RouteKey = (bool, u32, String, String, Vec<u32>, Option<IpAddr>);

    fn kind_name(kind: RouteKind) -> String {
        match kind {
            RouteKind::Unicast => "unicast".into(),
            RouteKind::Local => "local".into(),
            RouteKind::Broadcast => "broadcast".into(),
            RouteKind::Anycast => "anycast".into(),
            RouteKind::Multicast => "multicast".into(),
            RouteKind::Blackhole => "blackhole".into(),
            RouteKind::Unreachable => "unreachable".into(),
            RouteKind::Prohibit => "prohibit".into(),
            RouteKind::Throw => "throw".into(),
            RouteKind::Nat => "nat".into(),
            RouteKind::Other(number) => number.to_string(),
        }
    }

    fn ip_routes() -> BTreeSet<RouteKey> {
        let names = name_to_index();
        let index = |name: &Value| names[name.as_str().expect("dev")];
        let mut routes = BTreeSet::new();
        for (ipv6, family) in [(false, "-4"), (true, "-6")] {
            for route in ip_json(&[family, "route", "show", "table", "all"])
                .as_array()
                .expect("array")
            {
                let table = match route["table"].as_str() {
                    None | Some("main") => TABLE_MAIN,
                    Some("local") => TABLE_LOCAL,
                    Some(number) => number.parse().expect("table number"),
                };
                let kind = route["type"].as_str().unwrap_or("unicast").to_string();
                let destination = match route["dst"].as_str().expect("dst") {
                    "default" if ipv6 => "::/0".to_string(),
                    "default" => "0.0.0.0/0".to_string(),
                    with_prefix if with_prefix.contains('/') => with_prefix.to_string(),
                    host if ipv6 => format!("{host}/128"),
                    host => format!("{host}/32"),
                };
                let mut devices: Vec<u32> = route.get("dev").map(index).into_iter().collect();
                if let Some(hops) = route.get("nexthops").and_then(Value::as_array) {
                    devices.extend(hops.iter().map(|hop| index(&hop["dev"])));
                }
                devices.sort_unstable();
                let gateway = route["gateway"]
                    .as_str()
                    .map(|g| g.parse().expect("gateway"));
                routes.insert((ipv6, table, kind, destination, devices, gateway));
            }
        }
        routes
    }

    fn our_routes() -> BTreeSet<RouteKey> {
        RouteSocket::open()
            .expect("open")
            .routes()
            .expect("dump")
            .into_iter()
            // ip hides cloned (cached) IPv6 routes; the kernel does not dump them unasked.
            .map(|route| {
                let mut devices = route.output_interfaces.clone();
                devices.sort_unstable();
                (
                    route.ipv6,
                    route.table,
                    kind_name(route.kind),
                    format!("{}/{}", route.destination_or_default(), route.prefix_len),
                    devices,
                    route.gateway,
                )
            })
            .collect()
    }

    #[test]
    fn routes_match_ip_route_show_table_all() {
        in_test_namespace(|| {
            let ours = our_routes();
            if rustix::process::geteuid().is_root() {
                // The namespace's routes of every kind are all there.
                let kinds: BTreeSet<&str> = ours.iter().map(|route| route.2.as_str()).collect();
                for kind in ["unicast", "local", "broadcast", "blackhole", "unreachable"] {
                    assert!(kinds.contains(kind), "{kind} missing from {ours:#?}");
                }
                for kind in ["prohibit", "throw", "multicast"] {
                    assert!(kinds.contains(kind), "{kind} missing from {ours:#?}");
                }
                assert!(ours.iter().any(|route| route.1 == 1000), "table 1000");
                assert!(ours.iter().any(|route| route.4.len() == 2), "multipath");
            }
            sandwich(ip_routes, our_routes);
        });
    }

    #[test]
    fn listening_sockets_match_ss() {
        if Command::new("ss").arg("-V").output().is_err() {
            eprintln!("skipping: ss (iproute2) is not installed");
            return;
        }
        in_test_namespace(compare_listeners_with_ss);
    }

    fn compare_listeners_with_ss() {
        let held = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let held6 = std::net::TcpListener::bind("[::1]:0").ok();
        let bound = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let inode = rustix::fs::fstat(&held).expect("fstat").st_ino;
        let ss_inodes = |flags: &str| {
            let output = Command::new("ss").arg(flags).output().expect("ss");
            String::from_utf8(output.stdout)
                .expect("utf-8")
                .split_whitespace()
                .filter_map(|field| field.strip_prefix("ino:"))
                .map(|inode| inode.parse::<u64>().expect("inode"))
                .collect::<BTreeSet<_>>()
        };
        // `None`: the kernel has no diag module for the protocol (udp_diag is optional).
        let ours = |protocol: DiagProtocol| -> Option<BTreeSet<u64>> {
            let mut diag = SockDiag::open().expect("sock_diag");
            let mut inodes = BTreeSet::new();
            for ipv6 in [false, true] {
                match diag.listening(protocol, ipv6) {
                    Ok(sockets) => inodes.extend(sockets.into_iter().map(|socket| socket.inode)),
                    Err(NetlinkError::Refused(_)) if ipv6 || protocol == DiagProtocol::Udp => {
                        if !ipv6 {
                            return None;
                        }
                    }
                    Err(error) => panic!("{error}"),
                }
            }
            Some(inodes)
        };
        let tcp = ours(DiagProtocol::Tcp).expect("TCP sock_diag");
        assert!(tcp.contains(&inode));
        if let Some(held6) = &held6 {
            assert!(tcp.contains(&rustix::fs::fstat(held6).expect("fstat").st_ino));
        }
        let mut diag = SockDiag::open().expect("sock_diag");
        let ours_held = diag
            .listening(DiagProtocol::Tcp, false)
            .expect("dump")
            .into_iter()
            .find(|socket| socket.inode == inode)
            .expect("our listener");
        assert_eq!(
            std::net::SocketAddr::new(ours_held.address, ours_held.port),
            held.local_addr().expect("addr")
        );
        assert_eq!(ours_held.uid, rustix::process::geteuid().as_raw());
        assert_eq!((ours_held.bound_ifindex, ours_held.v6only), (0, None));
        sandwich(
            || ss_inodes("-tlnHe"),
            || ours(DiagProtocol::Tcp).expect("TCP"),
        );
        match ours(DiagProtocol::Udp) {
            None => eprintln!("no udp_diag in this kernel: UDP not compared"),
            Some(udp) => {
                assert!(udp.contains(&rustix::fs::fstat(&bound).expect("fstat").st_ino));
                sandwich(
                    || ss_inodes("-ulnHe"),
                    || ours(DiagProtocol::Udp).expect("UDP"),
                );
            }
        }
    }
}
