//! From one captured frame to the few fields martian rules look at: addresses, ports, protocol,
//! link-layer source. Zero-copy and allocation-free: etherparse's lax slicing does the IP and
//! transport layers (it keeps what it could read from truncated or odd packets); the link
//! headers etherparse does not cover leniently (Linux SLL, SLL2, BSD null/loopback) are a few
//! fixed offsets read here, and so are VLAN tags, of any depth (etherparse reads at most three,
//! and a spoofed source behind a fourth tag must still be seen).

use std::fmt;
use std::net::IpAddr;

use etherparse::{EtherType, LaxNetSlice, LaxSlicedPacket, TransportSlice};

/// Link-layer header types (tcpdump.org LINKTYPE_* values) that loopscope reads.
pub mod linktype {
    /// BSD loopback: 4-byte address family in the capturing host's byte order.
    pub const NULL: u32 = 0;
    /// Ethernet (IEEE 802.3).
    pub const ETHERNET: u32 = 1;
    /// Raw IPv4 or IPv6 (version nibble decides).
    pub const RAW: u32 = 101;
    /// OpenBSD loopback: 4-byte address family in network byte order.
    pub const LOOP: u32 = 108;
    /// Linux cooked capture v1 (`any` interface).
    pub const LINUX_SLL: u32 = 113;
    /// Raw IPv4.
    pub const IPV4: u32 = 228;
    /// Raw IPv6.
    pub const IPV6: u32 = 229;
    /// Linux cooked capture v2.
    pub const LINUX_SLL2: u32 = 276;

    /// Every link type whose frames can be decoded.
    pub const SUPPORTED: [u32; 8] = [NULL, ETHERNET, RAW, LOOP, LINUX_SLL, IPV4, IPV6, LINUX_SLL2];

    /// Whether frames of this link type can be decoded.
    pub fn is_supported(linktype: u32) -> bool {
        SUPPORTED.contains(&linktype)
    }
}

/// ARPHRD_LOOPBACK: the hardware type Linux gives `lo` (seen in SLL headers and sockaddr_ll).
pub const ARPHRD_LOOPBACK: u16 = 772;

/// A link-layer address of up to 8 bytes (Ethernet MACs are 6), stored inline.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct LinkAddr {
    bytes: [u8; 8],
    len: u8,
}

impl LinkAddr {
    /// The first 8 bytes of `address` (longer link addresses are cut).
    pub fn new(address: &[u8]) -> Self {
        let len = address.len().min(8);
        let mut bytes = [0u8; 8];
        bytes[..len].copy_from_slice(&address[..len]);
        LinkAddr {
            bytes,
            len: len as u8,
        }
    }
    /// The address bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
    /// The link had no source address.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl fmt::Display for LinkAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, byte) in self.as_bytes().iter().enumerate() {
            if index > 0 {
                f.write_str(":")?;
            }
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for LinkAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LinkAddr({self})")
    }
}

/// What one frame says about itself at the IP layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoded {
    /// The IP source address.
    pub source: IpAddr,
    /// The IP destination address.
    pub destination: IpAddr,
    /// IP protocol of the payload after IPv6 extension headers (6 TCP, 17 UDP, 58 ICMPv6 ...).
    pub protocol: u8,
    /// 0 when the payload has no ports (ICMP, non-first fragments).
    pub source_port: u16,
    /// 0 when the payload has no ports.
    pub destination_port: u16,
    /// Link-layer source (Ethernet source MAC, SLL sender address); empty when the link has none.
    pub link_source: LinkAddr,
    /// The interface index an SLL2 header carries.
    pub if_index: Option<u32>,
    /// The link type says it is a loopback (SLL hardware type 772, BSD null/loop headers).
    /// Never guessed from addresses: an Ethernet frame with all-zero MACs is still Ethernet
    /// (Linux `lo` captured as Ethernet is known by its interface, not by its MACs).
    pub link_is_loopback: bool,
    /// The packet is a fragment (IPv4 MF/offset or an IPv6 fragment header).
    pub fragment: bool,
}

/// Why a frame could not be decoded to IP addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Undecodable {
    /// A well-formed frame that does not carry IPv4 or IPv6 (ARP, LLDP ...).
    NotIp,
    /// The frame claims IP but is too short or malformed to yield both addresses.
    Malformed,
    /// A link type loopscope does not read.
    UnsupportedLinktype,
}

/// Decodes one frame of the given link type.
pub fn decode(linktype: u32, frame: &[u8]) -> Result<Decoded, Undecodable> {
    match linktype {
        linktype::ETHERNET => {
            let header = frame.get(0..14).ok_or(Undecodable::Malformed)?;
            let ether_type = u16::from_be_bytes([header[12], header[13]]);
            from_ether_type(
                ether_type,
                &frame[14..],
                LinkAddr::new(&header[6..12]),
                None,
                false,
            )
        }
        linktype::RAW | linktype::IPV4 | linktype::IPV6 => {
            from_ip(frame, LinkAddr::default(), false)
        }
        linktype::NULL | linktype::LOOP => {
            let header = frame.get(0..4).ok_or(Undecodable::Malformed)?;
            let header = [header[0], header[1], header[2], header[3]];
            // DLT_NULL is in the capturing host's byte order, DLT_LOOP in network order; the
            // family is small, so whichever reading is small is the right one.
            let little = u32::from_le_bytes(header);
            let big = u32::from_be_bytes(header);
            let family = if linktype == linktype::LOOP || little > 0xffff {
                big
            } else {
                little
            };
            match family {
                // AF_INET everywhere; AF_INET6 on Linux (10), NetBSD/OpenBSD (24),
                // FreeBSD (28), macOS (30).
                2 | 10 | 24 | 28 | 30 => from_ip(&frame[4..], LinkAddr::default(), true),
                _ => Err(Undecodable::NotIp),
            }
        }
        linktype::LINUX_SLL => {
            // packet type(2) ARPHRD(2) address length(2) address(8) protocol(2)
            let header = frame.get(0..16).ok_or(Undecodable::Malformed)?;
            let hardware = u16::from_be_bytes([header[2], header[3]]);
            let address_len = usize::from(u16::from_be_bytes([header[4], header[5]])).min(8);
            let protocol = u16::from_be_bytes([header[14], header[15]]);
            let link_source = LinkAddr::new(&header[6..6 + address_len]);
            from_ether_type(
                protocol,
                &frame[16..],
                link_source,
                None,
                hardware == ARPHRD_LOOPBACK,
            )
        }
        linktype::LINUX_SLL2 => {
            // protocol(2) reserved(2) ifindex(4) ARPHRD(2) packet type(1) address length(1)
            // address(8)
            let header = frame.get(0..20).ok_or(Undecodable::Malformed)?;
            let protocol = u16::from_be_bytes([header[0], header[1]]);
            let if_index = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
            let hardware = u16::from_be_bytes([header[8], header[9]]);
            let address_len = usize::from(header[11]).min(8);
            let link_source = LinkAddr::new(&header[12..12 + address_len]);
            from_ether_type(
                protocol,
                &frame[20..],
                link_source,
                Some(if_index),
                hardware == ARPHRD_LOOPBACK,
            )
        }
        _ => Err(Undecodable::UnsupportedLinktype),
    }
}

/// The addresses of a plain Ethernet or raw-IP packet, read at fixed offsets; None for anything
/// else (VLAN tags, cooked headers, non-IP, short or odd headers), which [`decode`] handles.
///
/// Why by hand: this runs for every packet, and the general slicer (etherparse) builds and
/// copies a few hundred bytes of slice state per packet, which profiled at about 40% of a scan.
/// Martian verdicts need only the two addresses; ports and link addresses are decoded with
/// [`decode`] for the few packets that turn out martian. It accepts exactly what etherparse's
/// lax IPv4/IPv6 header check accepts (version, IHL >= 5, the header present), so both paths
/// agree on every frame (a property test holds them to it). Neither looks at the MACs.
#[inline]
pub fn fast_addresses(linktype: u32, frame: &[u8]) -> Option<(IpAddr, IpAddr)> {
    let offset = match linktype {
        linktype::ETHERNET => {
            let header = frame.get(0..14)?;
            let ether_type = u16::from_be_bytes([header[12], header[13]]);
            let expected_version = match ether_type {
                0x0800 => 4,
                0x86dd => 6,
                _ => return None,
            };
            if frame.get(14).map(|byte| byte >> 4) != Some(expected_version) {
                return None;
            }
            14
        }
        linktype::RAW | linktype::IPV4 | linktype::IPV6 => 0,
        _ => return None,
    };
    let ip = frame.get(offset..)?;
    match ip.first()? >> 4 {
        4 => {
            let header_len = usize::from(ip[0] & 0x0f) * 4;
            if header_len < 20 || ip.len() < header_len {
                return None;
            }
            let source = [ip[12], ip[13], ip[14], ip[15]];
            let destination = [ip[16], ip[17], ip[18], ip[19]];
            Some((IpAddr::from(source), IpAddr::from(destination)))
        }
        6 => {
            let header = ip.get(..40)?;
            let mut source = [0u8; 16];
            let mut destination = [0u8; 16];
            source.copy_from_slice(&header[8..24]);
            destination.copy_from_slice(&header[24..40]);
            Some((IpAddr::from(source), IpAddr::from(destination)))
        }
        _ => None,
    }
}

/// IEEE 802.1Q C-tags, 802.1ad S-tags and the older QinQ tag types.
fn is_vlan_tag(ether_type: u16) -> bool {
    matches!(ether_type, 0x8100 | 0x88a8 | 0x9100 | 0x9200 | 0x9300)
}

/// Skips VLAN tags, however many (each is 4 bytes: TCI then the next type), to the payload's
/// EtherType. None when the frame ends inside a tag.
fn strip_vlan_tags(mut ether_type: u16, mut payload: &[u8]) -> Option<(u16, &[u8])> {
    while is_vlan_tag(ether_type) {
        let tag = payload.get(0..4)?;
        ether_type = u16::from_be_bytes([tag[2], tag[3]]);
        payload = &payload[4..];
    }
    Some((ether_type, payload))
}

fn from_ether_type(
    ether_type: u16,
    payload: &[u8],
    link_source: LinkAddr,
    if_index: Option<u32>,
    loopback: bool,
) -> Result<Decoded, Undecodable> {
    let (ether_type, payload) =
        strip_vlan_tags(ether_type, payload).ok_or(Undecodable::Malformed)?;
    match ether_type {
        0x0800 | 0x86dd => {
            let packet = LaxSlicedPacket::from_ether_type(EtherType(ether_type), payload);
            from_sliced(&packet, link_source, if_index, loopback)
        }
        _ => Err(Undecodable::NotIp),
    }
}

fn from_ip(packet: &[u8], link_source: LinkAddr, loopback: bool) -> Result<Decoded, Undecodable> {
    let packet = LaxSlicedPacket::from_ip(packet).map_err(|_| Undecodable::Malformed)?;
    from_sliced(&packet, link_source, None, loopback)
}

fn from_sliced(
    packet: &LaxSlicedPacket<'_>,
    link_source: LinkAddr,
    if_index: Option<u32>,
    link_is_loopback: bool,
) -> Result<Decoded, Undecodable> {
    // (addresses, protocol, fragmented, first fragment's payload when it is one)
    let (source, destination, protocol, fragment, first_fragment) = match &packet.net {
        Some(LaxNetSlice::Ipv4(ip)) => {
            let header = ip.header();
            let first = header.fragments_offset().value() == 0;
            (
                IpAddr::V4(header.source_addr()),
                IpAddr::V4(header.destination_addr()),
                ip.payload().ip_number.0,
                ip.is_payload_fragmented(),
                first.then_some(ip.payload().payload),
            )
        }
        Some(LaxNetSlice::Ipv6(ip)) => {
            let header = ip.header();
            let first = ipv6_first_fragment(header.next_header().0, ip.extensions().slice());
            (
                IpAddr::V6(header.source_addr()),
                IpAddr::V6(header.destination_addr()),
                ip.payload().ip_number.0,
                ip.is_payload_fragmented(),
                first.then_some(ip.payload().payload),
            )
        }
        Some(LaxNetSlice::Arp(_)) => return Err(Undecodable::NotIp),
        None => {
            // An Ethernet/VLAN frame whose type is not IP is simply not IP; one that says IP
            // but did not slice is malformed.
            return Err(match packet.stop_err {
                Some(_) => Undecodable::Malformed,
                None => Undecodable::NotIp,
            });
        }
    };
    let (source_port, destination_port) = match &packet.transport {
        Some(TransportSlice::Udp(udp)) => (udp.source_port(), udp.destination_port()),
        Some(TransportSlice::Tcp(tcp)) => (tcp.source_port(), tcp.destination_port()),
        // etherparse does not slice the transport of fragments; the first fragment still
        // starts with the ports (TCP, UDP, SCTP all put them in the first four bytes).
        _ => match (fragment, first_fragment, protocol) {
            (true, Some(payload), 6 | 17 | 132) if payload.len() >= 4 => (
                u16::from_be_bytes([payload[0], payload[1]]),
                u16::from_be_bytes([payload[2], payload[3]]),
            ),
            _ => (0, 0),
        },
    };
    Ok(Decoded {
        source,
        destination,
        protocol,
        source_port,
        destination_port,
        link_source,
        if_index,
        link_is_loopback,
        fragment,
    })
}

/// Whether an IPv6 packet is not a fragment or is the first fragment (offset 0), walking the
/// extension headers that etherparse already bounded (RFC 8200 section 4).
///
/// Why by hand: etherparse's `Ipv6ExtensionSliceIter` (0.17 and 0.21 alike) trusts the last
/// header's next-header field and reads past the checked bytes when a Hop-by-Hop header is
/// followed by another Hop-by-Hop header: an out-of-bounds read that one 62-byte frame turns
/// into SIGSEGV. This walk only reads inside `extensions`.
fn ipv6_first_fragment(mut next_header: u8, mut extensions: &[u8]) -> bool {
    loop {
        let length = match next_header {
            // Hop-by-Hop, Routing, Destination Options: (length + 1) * 8 octets.
            0 | 43 | 60 => extensions
                .get(1)
                .map(|length| (usize::from(*length) + 1) * 8),
            // Fragment: 8 octets; the offset is the high 13 bits of octets 2-3.
            44 => {
                return match extensions.get(2..4) {
                    Some(offset) => u16::from_be_bytes([offset[0], offset[1]]) >> 3 == 0,
                    None => true,
                };
            }
            // Authentication Header (RFC 4302): (length + 2) * 4 octets.
            51 => extensions
                .get(1)
                .map(|length| (usize::from(*length) + 2) * 4),
            _ => return true,
        };
        match (length, extensions.first()) {
            (Some(length), Some(following)) if length <= extensions.len() => {
                next_header = *following;
                extensions = &extensions[length..];
            }
            _ => return true,
        }
    }
}

fn ip_after_tags(ether_type: u16, payload: &[u8]) -> Option<LaxSlicedPacket<'_>> {
    let (ether_type, payload) = strip_vlan_tags(ether_type, payload)?;
    Some(LaxSlicedPacket::from_ether_type(
        EtherType(ether_type),
        payload,
    ))
}

/// The UDP payload of a frame, for reading flow exports out of captures.
pub fn udp_payload(linktype: u32, frame: &[u8]) -> Option<(Decoded, &[u8])> {
    let decoded = decode(linktype, frame).ok()?;
    if decoded.protocol != 17 || decoded.fragment {
        return None;
    }
    let packet = match linktype {
        linktype::ETHERNET => {
            let ether_type = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
            ip_after_tags(ether_type, frame.get(14..)?)?
        }
        linktype::RAW | linktype::IPV4 | linktype::IPV6 => LaxSlicedPacket::from_ip(frame).ok()?,
        linktype::NULL | linktype::LOOP => LaxSlicedPacket::from_ip(frame.get(4..)?).ok()?,
        linktype::LINUX_SLL => {
            let protocol = u16::from_be_bytes([*frame.get(14)?, *frame.get(15)?]);
            ip_after_tags(protocol, frame.get(16..)?)?
        }
        linktype::LINUX_SLL2 => {
            let protocol = u16::from_be_bytes([*frame.first()?, *frame.get(1)?]);
            ip_after_tags(protocol, frame.get(20..)?)?
        }
        _ => return None,
    };
    match packet.transport {
        Some(TransportSlice::Udp(udp)) => Some((decoded, udp.payload())),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn udp_v4(source: [u8; 4], destination: [u8; 4]) -> Vec<u8> {
        let builder = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4(source, destination, 64)
            .udp(4000, 53);
        let mut out = Vec::new();
        builder.write(&mut out, b"hello").unwrap();
        out
    }

    #[test]
    fn ethernet_ipv4_udp() {
        let frame = udp_v4([127, 0, 0, 1], [10, 0, 0, 2]);
        let decoded = decode(linktype::ETHERNET, &frame).unwrap();
        assert_eq!(decoded.source, IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)));
        assert_eq!(decoded.destination, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)));
        assert_eq!(
            (
                decoded.protocol,
                decoded.source_port,
                decoded.destination_port
            ),
            (17, 4000, 53)
        );
        assert_eq!(decoded.link_source.to_string(), "02:00:00:00:00:01");
        assert!(!decoded.link_is_loopback);
    }

    #[test]
    fn linux_sll2_carries_ifindex_and_sender() {
        let mut frame = vec![0x86, 0xdd, 0, 0, 0, 0, 0, 7, 0, 1, 0, 6];
        frame.extend_from_slice(&[0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff, 0, 0]);
        let builder = PacketBuilder::ipv6(
            Ipv6Addr::LOCALHOST.octets(),
            Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1).octets(),
            64,
        )
        .udp(1, 2);
        builder.write(&mut frame, b"x").unwrap();
        let decoded = decode(linktype::LINUX_SLL2, &frame).unwrap();
        assert_eq!(decoded.source, IpAddr::V6(Ipv6Addr::LOCALHOST));
        assert_eq!(decoded.if_index, Some(7));
        assert_eq!(decoded.link_source.to_string(), "aa:bb:cc:dd:ee:ff");
    }

    #[test]
    fn arp_is_not_ip_and_short_frames_are_malformed() {
        let mut arp = vec![0xff; 6];
        arp.extend_from_slice(&[2, 0, 0, 0, 0, 1, 0x08, 0x06]);
        arp.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
        arp.extend_from_slice(&[0; 20]);
        assert_eq!(decode(linktype::ETHERNET, &arp), Err(Undecodable::NotIp));
        assert_eq!(
            decode(linktype::ETHERNET, &[1, 2, 3]),
            Err(Undecodable::Malformed)
        );
        assert_eq!(
            decode(linktype::RAW, &[0x45, 0]),
            Err(Undecodable::Malformed)
        );
        assert_eq!(decode(999, &[0; 40]), Err(Undecodable::UnsupportedLinktype));
    }

    /// A 127.0.0.1 source behind five tags of mixed kinds is still found (etherparse alone
    /// stops at three and calls the rest not IP); a frame cut inside a tag is malformed.
    #[test]
    fn any_depth_of_vlan_tags() {
        let inner = udp_v4([127, 0, 0, 1], [10, 0, 0, 2]);
        let mut frame = inner[..12].to_vec();
        for tag in [0x88a8u16, 0x8100, 0x9100, 0x8100, 0x8100] {
            frame.extend_from_slice(&tag.to_be_bytes());
            frame.extend_from_slice(&[0x00, 0x64]);
        }
        frame.extend_from_slice(&inner[12..]);
        let decoded = decode(linktype::ETHERNET, &frame).unwrap();
        assert_eq!(decoded.source, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(decoded.destination_port, 53);
        assert!(udp_payload(linktype::ETHERNET, &frame).is_some());
        assert_eq!(
            decode(linktype::ETHERNET, &frame[..12 + 5 * 4 - 2]),
            Err(Undecodable::Malformed)
        );
    }

    /// All-zero MACs on an Ethernet link do not make the frame loopback traffic.
    #[test]
    fn zero_macs_are_not_loopback() {
        let mut frame = udp_v4([127, 0, 0, 1], [127, 0, 0, 1]);
        frame[..12].fill(0);
        assert!(!decode(linktype::ETHERNET, &frame).unwrap().link_is_loopback);
    }

    /// A Hop-by-Hop header whose next header is again Hop-by-Hop, with nothing after it: this
    /// 62-byte frame made etherparse's extension iterator read out of bounds (SIGSEGV).
    #[test]
    fn hop_by_hop_after_hop_by_hop_is_decoded_without_reading_past_the_frame() {
        let mut frame = vec![0xff; 6];
        frame.extend_from_slice(&[2, 0, 0, 0, 0, 0, 0x86, 0xdd]);
        frame.extend_from_slice(&[0x60, 0, 0, 0, 0, 8, 0, 0]);
        frame.extend_from_slice(&[0; 15]);
        frame.push(1);
        frame.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
        frame.extend_from_slice(&[0; 11]);
        frame.push(2);
        frame.extend_from_slice(&[0, 0, 1, 4, 0, 0, 0, 0]);
        assert_eq!(frame.len(), 62);
        // The IPv6 header itself is intact, so its spoofed ::1 source is still reported: a bad
        // extension chain must not hide a martian.
        let decoded = decode(linktype::ETHERNET, &frame).unwrap();
        assert_eq!(decoded.source, IpAddr::V6(Ipv6Addr::LOCALHOST));
        assert!(!decoded.fragment);
    }
}
