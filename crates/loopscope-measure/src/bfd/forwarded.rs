//! The echo function as RFC 5880 §6.4 and RFC 5881 §4 mean it: an echo packet leaves for the
//! peer's link-layer address with one of our own addresses as its IP destination, so the
//! peer's forwarding plane (not its BFD) routes it straight back to us.
//!
//! A UDP socket cannot send such a packet (the kernel would deliver a datagram to our own
//! address over `lo`), so the packet is built whole, Ethernet header first, and sent on a raw
//! AF_PACKET socket bound to the interface toward the peer, as FRR's bfdd does on Linux. It
//! comes back on the same socket: our kernel drops it after that (its source is one of our
//! own addresses, a martian on any interface but `lo`), which is why the raw socket, not a UDP
//! one, must receive it. The peer's link-layer address is read from the kernel's neighbour
//! table, which the Control packets sent to the peer have filled.

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};

use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TransportSlice};
use loopscope_sys::{BpfInstruction, EthernetSocket, NetlinkError, RouteSocket};
use loopscope_wire::bfd::{CONTROL_PORT, ECHO_LEN, ECHO_PORT, EchoRepr};

/// EtherTypes (IEEE 802 numbers, as in linux/if_ether.h).
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;

/// `PACKET_HOST` (linux/if_packet.h): a frame addressed to this host's link-layer address.
const PACKET_HOST: u8 = 0;

/// The hop count echo packets leave with, so the one the peer takes shows on return.
pub const ECHO_SEND_HOPS: u8 = 255;

/// Why the forwarded echo cannot run.
#[derive(Debug, thiserror::Error)]
pub enum ForwardedEchoError {
    /// The peer is reached over a loopback interface: no forwarding plane lies between.
    #[error(
        "the peer {peer} is reached over {interface}, a loopback interface with no forwarding plane to loop echo packets: use --echo-via port with `reflect --bfd-echo` at the far end"
    )]
    Loopback {
        /// The peer.
        peer: IpAddr,
        /// The interface.
        interface: String,
    },
    /// No interface holds the local address.
    #[error("no interface holds {0}, the address the echo packets are sent to")]
    NoInterface(IpAddr),
    /// A forwarding plane does not forward link-local packets back (RFC 4291 §2.5.6).
    #[error(
        "{0} is link-local, and a router does not forward link-local packets (RFC 4291 §2.5.6): use --echo-via port with `reflect --bfd-echo` at the far end"
    )]
    LinkLocal(IpAddr),
    /// The raw socket was refused.
    #[error("cannot open a raw socket on {interface} (needs root or CAP_NET_RAW): {source}")]
    Raw {
        /// The interface.
        interface: String,
        /// Why.
        source: io::Error,
    },
    /// Netlink failed.
    #[error("reading interfaces and neighbours: {0}")]
    Netlink(#[from] NetlinkError),
    /// Any other socket error.
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// One echo packet back, as the raw socket saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForwardedReply {
    /// The packet.
    pub echo: EchoRepr,
    /// The TTL or hop limit it came back with (255 less the hops that forwarded it).
    pub hops: u8,
}

/// The raw socket, the interface and both link-layer addresses of the forwarded echo.
#[derive(Debug)]
pub struct ForwardedEcho {
    socket: EthernetSocket,
    if_index: u32,
    interface: String,
    local: IpAddr,
    peer: IpAddr,
    own_mac: [u8; 6],
    peer_mac: Option<[u8; 6]>,
}

/// `tcpdump -dd 'udp dst port 3785 and (ip or ip6)'`: the kernel queues only echo packets on
/// the socket, not every IP frame of the interface (FRR's bfdd installs the IPv4 half).
const ECHO_FILTER: [(u16, u8, u8, u32); 16] = [
    (0x28, 0, 0, 0x0000_000c),
    (0x15, 0, 4, 0x0000_86dd),
    (0x30, 0, 0, 0x0000_0014),
    (0x15, 0, 11, 0x0000_0011),
    (0x28, 0, 0, 0x0000_0038),
    (0x15, 8, 9, 0x0000_0ec9),
    (0x15, 0, 8, 0x0000_0800),
    (0x30, 0, 0, 0x0000_0017),
    (0x15, 0, 6, 0x0000_0011),
    (0x28, 0, 0, 0x0000_0014),
    (0x45, 4, 0, 0x0000_1fff),
    (0xb1, 0, 0, 0x0000_000e),
    (0x48, 0, 0, 0x0000_0010),
    (0x15, 0, 1, 0x0000_0ec9),
    (0x06, 0, 0, 0x0004_0000),
    (0x06, 0, 0, 0x0000_0000),
];

/// The local address: `local` when given, else the one the kernel sends to `peer` from.
fn local_route(peer: SocketAddr, local: Option<IpAddr>) -> io::Result<IpAddr> {
    if let Some(local) = local
        && !local.is_unspecified()
    {
        return Ok(local);
    }
    let probe = UdpSocket::bind(SocketAddr::new(
        match peer {
            SocketAddr::V4(_) => IpAddr::from([0u8; 4]),
            SocketAddr::V6(_) => IpAddr::from([0u8; 16]),
        },
        0,
    ))?;
    // connect() on UDP sends nothing: it only asks the routing table for the source.
    probe.connect(peer)?;
    Ok(probe.local_addr()?.ip())
}

/// Whether `address` is in `network`/`prefix_len`.
fn within(address: IpAddr, network: IpAddr, prefix_len: u8) -> bool {
    let (a, n, bits) = match (address, network) {
        (IpAddr::V4(a), IpAddr::V4(n)) => (
            u128::from(u32::from(a)) << 96,
            u128::from(u32::from(n)) << 96,
            prefix_len.min(32),
        ),
        (IpAddr::V6(a), IpAddr::V6(n)) => (u128::from(a), u128::from(n), prefix_len.min(128)),
        _ => return false,
    };
    let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
    a & mask == n & mask
}

impl ForwardedEcho {
    /// Finds the interface toward `peer` (its zone, for a scoped IPv6 address) and opens the
    /// raw socket on it.
    pub fn open(
        peer: SocketAddr,
        local: Option<IpAddr>,
        scope: Option<u32>,
    ) -> Result<Self, ForwardedEchoError> {
        let control = SocketAddr::new(peer.ip(), CONTROL_PORT);
        let control = match (control, peer) {
            (SocketAddr::V6(mut v6), SocketAddr::V6(given)) => {
                v6.set_scope_id(given.scope_id());
                SocketAddr::V6(v6)
            }
            (other, _) => other,
        };
        let local = local_route(control, local)?;
        for address in [local, peer.ip()] {
            if let IpAddr::V6(v6) = address
                && v6.is_unicast_link_local()
            {
                return Err(ForwardedEchoError::LinkLocal(address));
            }
        }
        let mut netlink = RouteSocket::open()?;
        let if_index = match scope.filter(|&index| index != 0) {
            Some(index) => index,
            // The interface holding the address, or the prefix it falls in (127.77.7.2 is
            // in lo's 127.0.0.1/8).
            None => netlink
                .addresses()?
                .into_iter()
                .filter(|address| within(local, address.address, address.prefix_len))
                .max_by_key(|address| (address.address == local, address.prefix_len))
                .map(|address| address.index)
                .ok_or(ForwardedEchoError::NoInterface(local))?,
        };
        let interface = netlink
            .interfaces()?
            .into_iter()
            .find(|interface| interface.index == if_index)
            .ok_or(ForwardedEchoError::NoInterface(local))?;
        if interface.loopback {
            return Err(ForwardedEchoError::Loopback {
                peer: peer.ip(),
                interface: interface.name,
            });
        }
        let ethertype = match local {
            IpAddr::V4(_) => ETHERTYPE_IPV4,
            IpAddr::V6(_) => ETHERTYPE_IPV6,
        };
        let raw = |source| ForwardedEchoError::Raw {
            interface: interface.name.clone(),
            source,
        };
        let socket = EthernetSocket::open(if_index, ethertype).map_err(raw)?;
        let program: Vec<BpfInstruction> = ECHO_FILTER
            .iter()
            .map(|&(code, jt, jf, k)| BpfInstruction { code, jt, jf, k })
            .collect();
        loopscope_sys::attach_filter(&socket, &program).map_err(raw)?;
        let own_mac = socket.hardware_address().map_err(raw)?;
        Ok(ForwardedEcho {
            socket,
            if_index,
            interface: interface.name,
            local,
            peer: peer.ip(),
            own_mac,
            peer_mac: None,
        })
    }

    /// The interface the echo packets leave by.
    pub fn interface(&self) -> &str {
        &self.interface
    }

    /// Our address: the IP source and destination of every echo packet.
    pub fn local(&self) -> IpAddr {
        self.local
    }

    /// The peer's link-layer address, once known.
    pub fn peer_mac(&self) -> Option<[u8; 6]> {
        self.peer_mac
    }

    /// Looks the peer up in the neighbour table; returns whether its address is known.
    pub fn resolve(&mut self) -> Result<bool, ForwardedEchoError> {
        if self.peer_mac.is_some() {
            return Ok(true);
        }
        let found = RouteSocket::open()?
            .neighbours()?
            .into_iter()
            .filter(|entry| {
                entry.index == self.if_index && entry.address == self.peer && entry.usable
            })
            .find_map(|entry| <[u8; 6]>::try_from(entry.link_address?.as_slice()).ok());
        self.peer_mac = found;
        Ok(found.is_some())
    }

    /// The whole frame of one echo packet, or `None` while the peer's address is unknown.
    pub fn frame(&self, echo: &EchoRepr) -> Option<Vec<u8>> {
        let peer_mac = self.peer_mac?;
        let mut payload = [0u8; ECHO_LEN];
        echo.emit(&mut payload);
        let builder = PacketBuilder::ethernet2(self.own_mac, peer_mac);
        let builder = match self.local {
            IpAddr::V4(ip) => builder.ipv4(ip.octets(), ip.octets(), ECHO_SEND_HOPS),
            IpAddr::V6(ip) => builder.ipv6(ip.octets(), ip.octets(), ECHO_SEND_HOPS),
        }
        // RFC 5881 §4 leaves the echo's source port to the sender; FRR uses 3785 too.
        .udp(ECHO_PORT, ECHO_PORT);
        let mut frame = Vec::with_capacity(builder.size(payload.len()));
        builder.write(&mut frame, &payload).ok()?;
        Some(frame)
    }

    /// Sends one echo packet; `Ok(false)` while the peer's address is unknown.
    pub fn send(&self, echo: &EchoRepr) -> io::Result<bool> {
        match self.frame(echo) {
            Some(frame) => self.socket.send(&frame).map(|()| true),
            None => Ok(false),
        }
    }

    /// The next echo packet of `discriminator` that came back, if one is queued; other frames
    /// queued before it are passed over.
    pub fn try_recv(
        &self,
        discriminator: u32,
        buffer: &mut [u8],
    ) -> io::Result<Option<ForwardedReply>> {
        while let Some(frame) = self.socket.try_recv(buffer)? {
            // Our own frame going out is seen too: only one addressed to us has come back.
            if frame.packet_type != PACKET_HOST || frame.truncated {
                continue;
            }
            if let Some(reply) = returned_echo(&buffer[..frame.len], self.local, discriminator) {
                return Ok(Some(reply));
            }
        }
        Ok(None)
    }
}

impl std::os::fd::AsFd for ForwardedEcho {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

/// The echo packet in `frame` when it is one of ours come back: from and to `local`, UDP to
/// the echo port, with our discriminator.
pub fn returned_echo(frame: &[u8], local: IpAddr, discriminator: u32) -> Option<ForwardedReply> {
    let packet = SlicedPacket::from_ethernet(frame).ok()?;
    let (source, destination, hops) = match packet.net? {
        NetSlice::Ipv4(ip) => {
            let header = ip.header();
            (
                IpAddr::V4(header.source_addr()),
                IpAddr::V4(header.destination_addr()),
                header.ttl(),
            )
        }
        NetSlice::Ipv6(ip) => {
            let header = ip.header();
            (
                IpAddr::V6(header.source_addr()),
                IpAddr::V6(header.destination_addr()),
                header.hop_limit(),
            )
        }
        NetSlice::Arp(_) => return None,
    };
    if source != local || destination != local {
        return None;
    }
    let TransportSlice::Udp(udp) = packet.transport? else {
        return None;
    };
    if udp.destination_port() != ECHO_PORT {
        return None;
    }
    let echo = EchoRepr::parse(udp.payload()).ok()?;
    (echo.discriminator == discriminator).then_some(ForwardedReply { echo, hops })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_within_its_prefix_only() {
        let ip = |text: &str| text.parse::<IpAddr>().unwrap();
        assert!(within(ip("127.77.7.2"), ip("127.0.0.1"), 8));
        assert!(!within(ip("128.0.0.1"), ip("127.0.0.1"), 8));
        assert!(within(ip("10.77.0.2"), ip("10.77.0.2"), 32));
        assert!(within(ip("192.0.2.9"), ip("0.0.0.0"), 0));
        assert!(within(ip("2001:db8::9"), ip("2001:db8::1"), 64));
        assert!(!within(ip("2001:db9::9"), ip("2001:db8::1"), 64));
        assert!(!within(ip("::ffff:10.0.0.1"), ip("10.0.0.1"), 32));
    }

    /// A frame of ours as the peer's forwarding plane returns it (TTL 254), and the frames
    /// that are not: another source, another port, another session.
    #[test]
    fn only_our_own_echo_come_back_is_taken() {
        let local: IpAddr = "10.77.0.2".parse().unwrap();
        let echo = EchoRepr {
            discriminator: 7,
            sequence: 3,
            sent_ns: 99,
        };
        let mut payload = [0u8; ECHO_LEN];
        echo.emit(&mut payload);
        let frame = |source: [u8; 4], port: u16| {
            let builder = PacketBuilder::ethernet2([2; 6], [4; 6])
                .ipv4(source, [10, 77, 0, 2], 254)
                .udp(ECHO_PORT, port);
            let mut frame = Vec::new();
            builder.write(&mut frame, &payload).unwrap();
            frame
        };
        assert_eq!(
            returned_echo(&frame([10, 77, 0, 2], ECHO_PORT), local, 7),
            Some(ForwardedReply { echo, hops: 254 })
        );
        assert_eq!(
            returned_echo(&frame([10, 77, 0, 1], ECHO_PORT), local, 7),
            None
        );
        assert_eq!(returned_echo(&frame([10, 77, 0, 2], 3784), local, 7), None);
        assert_eq!(
            returned_echo(&frame([10, 77, 0, 2], ECHO_PORT), local, 8),
            None
        );
    }
}
