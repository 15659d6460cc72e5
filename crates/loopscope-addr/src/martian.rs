//! Martian addresses: addresses that must not appear as the source or destination of a packet on
//! a real (non-loopback) interface.
//!
//! The rules are RFC 1812 §5.3.7 ("Martian Address Filtering") for IPv4, RFC 4291 for IPv6, and
//! the Source / Destination columns of the IANA special-purpose registries (snapshot
//! 2026-07-18). Each reason also says what Linux does with such a packet
//! ([`MartianReason::linux`]), because Linux departs from the RFCs in places (class E is accepted,
//! `route_localnet` lets 127/8 through).
//!
//! These functions run per packet: they do not allocate and only compare integers.
//! "Loopback arriving on an interface other than `lo`" is the capture side's decision: it knows
//! the interface; these functions only judge the address.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::Serialize;

/// Why an address is martian in the given direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MartianReason {
    // --- as a source ---
    /// 127.0.0.0/8, ::1 or ::ffff:127.0.0.0/104 as a source.
    LoopbackSource,
    /// 0.0.0.0/8 as a source ("this network", RFC 1122 §3.2.1.3; DHCP's 0.0.0.0 is link-only).
    ThisNetworkSource,
    /// `::` as a source (RFC 4291 §2.5.2: never forwarded; DAD uses it on-link only).
    UnspecifiedSource,
    /// A multicast group (224.0.0.0/4, ff00::/8) as a source.
    MulticastSource,
    /// 255.255.255.255 as a source.
    LimitedBroadcastSource,
    /// 240.0.0.0/4 (class E, reserved) as a source.
    ClassESource,
    /// An IPv4-mapped address ::ffff:0:0/96 as a source on the wire.
    Ipv4MappedSource,
    /// A deprecated IPv4-compatible address ::/96 (other than :: and ::1) as a source.
    Ipv4CompatibleSource,
    /// Documentation space (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32,
    /// 3fff::/20) as a source.
    DocumentationSource,
    /// The unassigned parts of the IETF protocol assignment blocks (192.0.0.0/24, 2001::/23),
    /// and NAT64/DNS64 discovery 192.0.0.170-171, as a source.
    ProtocolAssignmentSource,

    // --- as a destination ---
    /// 127.0.0.0/8, ::1 or ::ffff:127.0.0.0/104 as a destination.
    LoopbackDestination,
    /// 0.0.0.0/8 as a destination.
    ThisNetworkDestination,
    /// `::` as a destination.
    UnspecifiedDestination,
    /// 240.0.0.0/4 except 255.255.255.255 as a destination.
    ClassEDestination,
    /// An IPv4-mapped address as a destination on the wire.
    Ipv4MappedDestination,
    /// A deprecated IPv4-compatible address as a destination.
    Ipv4CompatibleDestination,
    /// Documentation space as a destination.
    DocumentationDestination,
    /// The dummy addresses 192.0.0.8 and 100:0:0:1::/64 (source only) as a destination.
    DummyDestination,
    /// The unassigned parts of the IETF protocol assignment blocks as a destination.
    ProtocolAssignmentDestination,
    /// Interface-local multicast ffx1::/16 received from the wire.
    InterfaceLocalMulticastDestination,
    /// Multicast with the reserved scope 0 (ffx0::/16).
    ReservedMulticastScopeDestination,
}

/// What the Linux kernel does with a packet that carries such an address, arriving on a
/// non-loopback interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LinuxTreatment {
    /// Dropped by the IP input path (counted as a martian; logged with `log_martians`).
    Dropped,
    /// Dropped unless `net.ipv4.conf.<dev>.route_localnet=1` (IPv4 127/8 only).
    DroppedUnlessRouteLocalnet,
    /// Dropped by the transport (TCP refuses IPv4-mapped sources), not by IP input.
    DroppedByTransport,
    /// Accepted and routed like any other address (the RFCs say drop; Linux does not).
    Accepted,
}

impl MartianReason {
    /// Every reason, in declaration order.
    pub const ALL: [MartianReason; 21] = [
        MartianReason::LoopbackSource,
        MartianReason::ThisNetworkSource,
        MartianReason::UnspecifiedSource,
        MartianReason::MulticastSource,
        MartianReason::LimitedBroadcastSource,
        MartianReason::ClassESource,
        MartianReason::Ipv4MappedSource,
        MartianReason::Ipv4CompatibleSource,
        MartianReason::DocumentationSource,
        MartianReason::ProtocolAssignmentSource,
        MartianReason::LoopbackDestination,
        MartianReason::ThisNetworkDestination,
        MartianReason::UnspecifiedDestination,
        MartianReason::ClassEDestination,
        MartianReason::Ipv4MappedDestination,
        MartianReason::Ipv4CompatibleDestination,
        MartianReason::DocumentationDestination,
        MartianReason::DummyDestination,
        MartianReason::ProtocolAssignmentDestination,
        MartianReason::InterfaceLocalMulticastDestination,
        MartianReason::ReservedMulticastScopeDestination,
    ];

    /// A stable snake_case identifier (the same string serde produces).
    pub fn code(&self) -> &'static str {
        use MartianReason::*;
        match self {
            LoopbackSource => "loopback_source",
            ThisNetworkSource => "this_network_source",
            UnspecifiedSource => "unspecified_source",
            MulticastSource => "multicast_source",
            LimitedBroadcastSource => "limited_broadcast_source",
            ClassESource => "class_e_source",
            Ipv4MappedSource => "ipv4_mapped_source",
            Ipv4CompatibleSource => "ipv4_compatible_source",
            DocumentationSource => "documentation_source",
            ProtocolAssignmentSource => "protocol_assignment_source",
            LoopbackDestination => "loopback_destination",
            ThisNetworkDestination => "this_network_destination",
            UnspecifiedDestination => "unspecified_destination",
            ClassEDestination => "class_e_destination",
            Ipv4MappedDestination => "ipv4_mapped_destination",
            Ipv4CompatibleDestination => "ipv4_compatible_destination",
            DocumentationDestination => "documentation_destination",
            DummyDestination => "dummy_destination",
            ProtocolAssignmentDestination => "protocol_assignment_destination",
            InterfaceLocalMulticastDestination => "interface_local_multicast_destination",
            ReservedMulticastScopeDestination => "reserved_multicast_scope_destination",
        }
    }

    /// The document (and section) that makes the address martian in this direction.
    pub fn rfc(&self) -> &'static str {
        use MartianReason::*;
        match self {
            LoopbackSource | LoopbackDestination => "RFC 1812 §5.3.7; RFC 4291 §2.5.3",
            ThisNetworkSource | ThisNetworkDestination => "RFC 1812 §5.3.7; RFC 1122 §3.2.1.3",
            UnspecifiedSource | UnspecifiedDestination => "RFC 4291 §2.5.2",
            MulticastSource => "RFC 1812 §5.3.7; RFC 4291 §2.7",
            LimitedBroadcastSource => "RFC 1812 §5.3.7; RFC 919 §7",
            ClassESource | ClassEDestination => "RFC 1812 §5.3.7; RFC 1112 §4",
            Ipv4MappedSource | Ipv4MappedDestination => "RFC 4291 §2.5.5.2; RFC 4942 §2.2",
            Ipv4CompatibleSource | Ipv4CompatibleDestination => "RFC 4291 §2.5.5.1",
            DocumentationSource | DocumentationDestination => "RFC 5737; RFC 3849; RFC 9637",
            DummyDestination => "RFC 7600; RFC 9780",
            ProtocolAssignmentSource | ProtocolAssignmentDestination => {
                "RFC 6890 §2.1; RFC 2928; RFC 8880"
            }
            InterfaceLocalMulticastDestination => "RFC 4291 §2.7 (Errata 3480)",
            ReservedMulticastScopeDestination => "RFC 4291 §2.7",
        }
    }

    /// True for the reasons that describe a source address.
    pub fn is_source(&self) -> bool {
        (*self as u8) < (MartianReason::LoopbackDestination as u8)
    }

    /// What Linux does with such a packet arriving on a real interface.
    pub fn linux(&self) -> LinuxTreatment {
        use LinuxTreatment::*;
        use MartianReason::*;
        match self {
            // ip_route_input_slow(): 127/8 is martian unless route_localnet; ip6_rcv_core()
            // drops ::1 off loopback unconditionally (see `linux_note`).
            LoopbackSource | LoopbackDestination => DroppedUnlessRouteLocalnet,
            ThisNetworkSource | ThisNetworkDestination => Dropped,
            MulticastSource | LimitedBroadcastSource => Dropped,
            UnspecifiedSource | UnspecifiedDestination => Accepted,
            ClassESource | ClassEDestination => Accepted,
            Ipv4MappedSource => DroppedByTransport,
            Ipv4MappedDestination => Accepted,
            Ipv4CompatibleSource | Ipv4CompatibleDestination => Accepted,
            DocumentationSource | DocumentationDestination => Accepted,
            DummyDestination => Accepted,
            ProtocolAssignmentSource | ProtocolAssignmentDestination => Accepted,
            InterfaceLocalMulticastDestination | ReservedMulticastScopeDestination => Dropped,
        }
    }

    /// One sentence on the Linux behaviour, naming the code path.
    pub fn linux_note(&self) -> &'static str {
        use MartianReason::*;
        match self {
            LoopbackSource | LoopbackDestination => {
                "IPv4: ip_route_input_slow() drops 127/8 as martian unless route_localnet=1 on \
                 the receiving device; IPv6: ip6_rcv_core() drops ::1 off loopback always"
            }
            ThisNetworkSource => {
                "ip_route_input_slow() drops 0/8 sources except towards 255.255.255.255 (DHCP)"
            }
            ThisNetworkDestination => "ip_route_input_slow() drops 0/8 destinations",
            MulticastSource => {
                "ip_route_input_slow() drops multicast sources; ip6_rcv_core() drops ff00::/8 \
                 sources"
            }
            LimitedBroadcastSource => "ip_route_input_slow() drops 255.255.255.255 sources",
            ClassESource | ClassEDestination => {
                "Linux treats 240/4 as ordinary unicast since 2.6.25; no martian check"
            }
            UnspecifiedSource | UnspecifiedDestination => {
                "no check in ip6_rcv_core(); :: as source is normal for DAD on-link"
            }
            Ipv4MappedSource => {
                "accepted by IPv6 input; tcp_v6_conn_request() drops IPv4-mapped sources"
            }
            Ipv4MappedDestination => "accepted by IPv6 input; no local address matches it",
            Ipv4CompatibleSource | Ipv4CompatibleDestination => {
                "routed as ordinary IPv6 (sit tunnels aside)"
            }
            DocumentationSource | DocumentationDestination | DummyDestination => {
                "routed as ordinary unicast; only a filter (rp_filter, nftables) stops it"
            }
            ProtocolAssignmentSource | ProtocolAssignmentDestination => {
                "routed as ordinary unicast; only a filter stops it"
            }
            InterfaceLocalMulticastDestination => {
                "ip6_rcv_core() drops scope-1 multicast not received on loopback"
            }
            ReservedMulticastScopeDestination => "ip6_rcv_core() drops scope-0 multicast",
        }
    }
}

impl fmt::Display for MartianReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use MartianReason::*;
        let text = match self {
            LoopbackSource => "loopback address as source",
            ThisNetworkSource => "\"this network\" 0.0.0.0/8 as source",
            UnspecifiedSource => "unspecified address :: as source",
            MulticastSource => "multicast address as source",
            LimitedBroadcastSource => "limited broadcast 255.255.255.255 as source",
            ClassESource => "reserved class E 240.0.0.0/4 as source",
            Ipv4MappedSource => "IPv4-mapped address on the wire as source",
            Ipv4CompatibleSource => "deprecated IPv4-compatible address as source",
            DocumentationSource => "documentation address as source",
            ProtocolAssignmentSource => "IETF protocol assignment block (not a source) as source",
            LoopbackDestination => "loopback address as destination",
            ThisNetworkDestination => "\"this network\" 0.0.0.0/8 as destination",
            UnspecifiedDestination => "unspecified address :: as destination",
            ClassEDestination => "reserved class E 240.0.0.0/4 as destination",
            Ipv4MappedDestination => "IPv4-mapped address on the wire as destination",
            Ipv4CompatibleDestination => "deprecated IPv4-compatible address as destination",
            DocumentationDestination => "documentation address as destination",
            DummyDestination => "dummy (source-only) address as destination",
            ProtocolAssignmentDestination => {
                "IETF protocol assignment block (not a destination) as destination"
            }
            InterfaceLocalMulticastDestination => "interface-local multicast from the wire",
            ReservedMulticastScopeDestination => "multicast with reserved scope 0",
        };
        f.write_str(text)
    }
}

/// Why `ip` may not be the source of a packet on a real interface, or `None` if it may.
#[inline]
pub fn martian_source(ip: IpAddr) -> Option<MartianReason> {
    match ip {
        IpAddr::V4(v4) => martian_source_v4(v4),
        IpAddr::V6(v6) => martian_source_v6(v6),
    }
}

/// Why `ip` may not be the destination of a packet on a real interface, or `None` if it may.
#[inline]
pub fn martian_destination(ip: IpAddr) -> Option<MartianReason> {
    match ip {
        IpAddr::V4(v4) => martian_destination_v4(v4),
        IpAddr::V6(v6) => martian_destination_v6(v6),
    }
}

#[inline]
fn is_documentation_v4(bits: u32) -> bool {
    let net24 = bits >> 8;
    net24 == 0xc00002 || net24 == 0xc63364 || net24 == 0xcb0071
}

/// 192.0.0.0/24 outside its rows whose Source/Destination are True: .0-.7 (/29), .8 (dummy,
/// source only), .9 (PCP anycast), .10 (TURN anycast). 192.0.0.170/171 are Source/Destination
/// False like the rest.
#[inline]
fn is_protocol_assignment_v4(bits: u32) -> bool {
    (bits >> 8) == 0xc00000 && (bits & 0xff) > 10
}

#[inline]
fn martian_source_v4(ip: Ipv4Addr) -> Option<MartianReason> {
    let bits = ip.to_bits();
    let first = (bits >> 24) as u8;
    match first {
        127 => Some(MartianReason::LoopbackSource),
        0 => Some(MartianReason::ThisNetworkSource),
        224..=239 => Some(MartianReason::MulticastSource),
        255 if bits == u32::MAX => Some(MartianReason::LimitedBroadcastSource),
        240..=255 => Some(MartianReason::ClassESource),
        _ if is_documentation_v4(bits) => Some(MartianReason::DocumentationSource),
        _ if is_protocol_assignment_v4(bits) => Some(MartianReason::ProtocolAssignmentSource),
        _ => None,
    }
}

#[inline]
fn martian_destination_v4(ip: Ipv4Addr) -> Option<MartianReason> {
    let bits = ip.to_bits();
    let first = (bits >> 24) as u8;
    match first {
        127 => Some(MartianReason::LoopbackDestination),
        0 => Some(MartianReason::ThisNetworkDestination),
        255 if bits == u32::MAX => None,
        240..=255 => Some(MartianReason::ClassEDestination),
        _ if is_documentation_v4(bits) => Some(MartianReason::DocumentationDestination),
        _ if bits == 0xc000_0008 => Some(MartianReason::DummyDestination),
        _ if is_protocol_assignment_v4(bits) => Some(MartianReason::ProtocolAssignmentDestination),
        _ => None,
    }
}

#[inline]
fn is_documentation_v6(bits: u128) -> bool {
    (bits >> 96) == 0x2001_0db8 || (bits >> 108) == 0x3fff0
}

/// 2001::/23 outside its rows whose Source/Destination are True (Teredo 2001::/32, 2001:1::1-3,
/// 2001:2::/48, 2001:3::/32, 2001:4:112::/48, 2001:20::/28, 2001:30::/28). The deprecated
/// ORCHID 2001:10::/28 has no attributes any more and falls back to the /23's False.
#[inline]
fn is_protocol_assignment_v6(bits: u128) -> bool {
    if (bits >> 105) != (0x2001_u128 << 7) {
        return false;
    }
    let second = ((bits >> 96) & 0xffff) as u16;
    let allowed = match second {
        0x0000 | 0x0003 => true,
        0x0001 => matches!(bits & !(0xffff_ffff_u128 << 96), 1..=3),
        0x0002 => (bits >> 80) & 0xffff == 0,
        0x0004 => (bits >> 80) & 0xffff == 0x0112,
        0x0020..=0x003f => true,
        _ => false,
    };
    !allowed
}

#[inline]
fn martian_source_v6(ip: Ipv6Addr) -> Option<MartianReason> {
    let bits = ip.to_bits();
    if (bits >> 32) == 0 {
        return Some(match bits {
            0 => MartianReason::UnspecifiedSource,
            1 => MartianReason::LoopbackSource,
            _ => MartianReason::Ipv4CompatibleSource,
        });
    }
    if (bits >> 32) == 0xffff {
        return Some(if (bits >> 24) & 0xff == 127 {
            MartianReason::LoopbackSource
        } else {
            MartianReason::Ipv4MappedSource
        });
    }
    if (bits >> 120) == 0xff {
        return Some(MartianReason::MulticastSource);
    }
    if is_documentation_v6(bits) {
        return Some(MartianReason::DocumentationSource);
    }
    if is_protocol_assignment_v6(bits) {
        return Some(MartianReason::ProtocolAssignmentSource);
    }
    None
}

#[inline]
fn martian_destination_v6(ip: Ipv6Addr) -> Option<MartianReason> {
    let bits = ip.to_bits();
    if (bits >> 32) == 0 {
        return Some(match bits {
            0 => MartianReason::UnspecifiedDestination,
            1 => MartianReason::LoopbackDestination,
            _ => MartianReason::Ipv4CompatibleDestination,
        });
    }
    if (bits >> 32) == 0xffff {
        return Some(if (bits >> 24) & 0xff == 127 {
            MartianReason::LoopbackDestination
        } else {
            MartianReason::Ipv4MappedDestination
        });
    }
    if (bits >> 120) == 0xff {
        return match (bits >> 112) & 0xf {
            0 => Some(MartianReason::ReservedMulticastScopeDestination),
            1 => Some(MartianReason::InterfaceLocalMulticastDestination),
            _ => None,
        };
    }
    if is_documentation_v6(bits) {
        return Some(MartianReason::DocumentationDestination);
    }
    if (bits >> 64) == 0x0100_0000_0000_0001 {
        return Some(MartianReason::DummyDestination);
    }
    if is_protocol_assignment_v6(bits) {
        return Some(MartianReason::ProtocolAssignmentDestination);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::MartianReason::*;
    use super::*;

    fn src(text: &str) -> Option<MartianReason> {
        martian_source(text.parse().unwrap())
    }
    fn dst(text: &str) -> Option<MartianReason> {
        martian_destination(text.parse().unwrap())
    }

    #[test]
    fn ipv4_sources_by_hand() {
        let cases: &[(&str, Option<MartianReason>)] = &[
            ("127.0.0.1", Some(LoopbackSource)),
            ("127.255.255.255", Some(LoopbackSource)),
            ("0.0.0.0", Some(ThisNetworkSource)),
            ("0.255.255.255", Some(ThisNetworkSource)),
            ("1.0.0.0", None),
            ("224.0.0.0", Some(MulticastSource)),
            ("239.255.255.255", Some(MulticastSource)),
            ("223.255.255.255", None),
            ("240.0.0.0", Some(ClassESource)),
            ("255.255.255.254", Some(ClassESource)),
            ("255.255.255.255", Some(LimitedBroadcastSource)),
            ("192.0.2.1", Some(DocumentationSource)),
            ("198.51.100.255", Some(DocumentationSource)),
            ("203.0.113.0", Some(DocumentationSource)),
            ("203.0.114.0", None),
            ("192.0.0.8", None),
            ("192.0.0.10", None),
            ("192.0.0.11", Some(ProtocolAssignmentSource)),
            ("192.0.0.170", Some(ProtocolAssignmentSource)),
            ("192.0.1.0", None),
            ("10.0.0.1", None),
            ("169.254.1.1", None),
            ("8.8.8.8", None),
        ];
        for (text, want) in cases {
            assert_eq!(src(text), *want, "source {text}");
        }
    }

    #[test]
    fn ipv4_destinations_by_hand() {
        let cases: &[(&str, Option<MartianReason>)] = &[
            ("127.0.0.1", Some(LoopbackDestination)),
            ("0.0.0.0", Some(ThisNetworkDestination)),
            ("224.0.0.1", None),
            ("255.255.255.255", None),
            ("240.0.0.1", Some(ClassEDestination)),
            ("255.255.255.254", Some(ClassEDestination)),
            ("192.0.0.8", Some(DummyDestination)),
            ("192.0.0.9", None),
            ("192.0.0.171", Some(ProtocolAssignmentDestination)),
            ("198.51.100.7", Some(DocumentationDestination)),
            ("100.64.0.1", None),
        ];
        for (text, want) in cases {
            assert_eq!(dst(text), *want, "destination {text}");
        }
    }

    #[test]
    fn ipv6_by_hand() {
        let sources: &[(&str, Option<MartianReason>)] = &[
            ("::", Some(UnspecifiedSource)),
            ("::1", Some(LoopbackSource)),
            ("::2", Some(Ipv4CompatibleSource)),
            ("::127.0.0.1", Some(Ipv4CompatibleSource)),
            ("::ffff:127.0.0.1", Some(LoopbackSource)),
            ("::ffff:10.0.0.1", Some(Ipv4MappedSource)),
            ("::1:0:0", None),
            ("ff02::1", Some(MulticastSource)),
            ("2001:db8::1", Some(DocumentationSource)),
            ("3fff:fff:ffff::", Some(DocumentationSource)),
            ("3fff:1000::", None),
            ("2001::1", None),
            ("2001:1::1", None),
            ("2001:1::4", Some(ProtocolAssignmentSource)),
            ("2001:2::1", None),
            ("2001:2:1::1", Some(ProtocolAssignmentSource)),
            ("2001:4:112::1", None),
            ("2001:4:113::1", Some(ProtocolAssignmentSource)),
            ("2001:10::1", Some(ProtocolAssignmentSource)),
            ("2001:20::1", None),
            ("2001:3f:ffff::", None),
            ("2001:40::", Some(ProtocolAssignmentSource)),
            ("2001:1ff:ffff::", Some(ProtocolAssignmentSource)),
            ("2001:200::", None),
            ("100:0:0:1::1", None),
            ("fe80::1", None),
            ("2606:4700::1", None),
        ];
        for (text, want) in sources {
            assert_eq!(src(text), *want, "source {text}");
        }
        let destinations: &[(&str, Option<MartianReason>)] = &[
            ("::", Some(UnspecifiedDestination)),
            ("::1", Some(LoopbackDestination)),
            ("::ffff:127.1.2.3", Some(LoopbackDestination)),
            ("::ffff:1.2.3.4", Some(Ipv4MappedDestination)),
            ("ff00::1", Some(ReservedMulticastScopeDestination)),
            ("ff11::1", Some(InterfaceLocalMulticastDestination)),
            ("ff02::1", None),
            ("100:0:0:1::", Some(DummyDestination)),
            ("100:0:0:1:ffff:ffff:ffff:ffff", Some(DummyDestination)),
            ("100:0:0:2::", None),
            ("100::1", None),
        ];
        for (text, want) in destinations {
            assert_eq!(dst(text), *want, "destination {text}");
        }
    }

    #[test]
    fn codes_are_unique_snake_case_and_match_serde() {
        let mut seen = std::collections::HashSet::new();
        for reason in MartianReason::ALL {
            let code = reason.code();
            assert!(seen.insert(code));
            assert!(
                code.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            );
            assert_eq!(
                serde_json::to_string(&reason).unwrap(),
                format!("\"{code}\"")
            );
            assert_eq!(reason.is_source(), code.ends_with("_source"));
            assert!(!reason.rfc().is_empty() && !reason.linux_note().is_empty());
        }
    }
}
