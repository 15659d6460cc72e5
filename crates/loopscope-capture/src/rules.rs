//! The martian verdict on one packet: the address rules from `loopscope-addr`, plus the one
//! decision only the capture side can make: a loopback source or destination is normal on a
//! loopback interface and martian anywhere else (RFC 1122 §3.2.1.3, RFC 4291 §2.5.3).

use std::fmt;
use std::net::IpAddr;

use loopscope_addr::martian::{MartianReason, martian_destination, martian_source};
use serde::Serialize;

/// Which address of the packet a reason is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Side {
    /// The packet's source address.
    Source,
    /// The packet's destination address.
    Destination,
}

impl Side {
    /// `source` or `destination`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Side::Source => "source",
            Side::Destination => "destination",
        }
    }
}

/// One reason a packet is martian.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct PacketReason {
    /// Which address.
    pub side: Side,
    /// What is wrong with it.
    pub reason: MartianReason,
}

impl PacketReason {
    /// `loopback_source`, `class_e_destination` ...: the key of the per-reason totals (the
    /// codes name their side already).
    pub(crate) fn key(&self) -> &'static str {
        self.reason.code()
    }
}

impl fmt::Display for PacketReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.reason)
    }
}

/// At most one reason per side, stored inline (no allocation per packet).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct PacketVerdict {
    /// What is wrong with the source, if anything.
    pub source: Option<MartianReason>,
    /// What is wrong with the destination, if anything.
    pub destination: Option<MartianReason>,
}

impl PacketVerdict {
    /// Either address is martian.
    pub(crate) fn is_martian(&self) -> bool {
        self.source.is_some() || self.destination.is_some()
    }
    /// The reasons, source first.
    pub(crate) fn iter(&self) -> impl Iterator<Item = PacketReason> + '_ {
        let source = self.source.map(|reason| PacketReason {
            side: Side::Source,
            reason,
        });
        let destination = self.destination.map(|reason| PacketReason {
            side: Side::Destination,
            reason,
        });
        source.into_iter().chain(destination)
    }
}

/// What besides the addresses decides a verdict: the on-link uses of the unspecified source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct PacketContext {
    /// The IP protocol.
    pub protocol: u8,
    /// The transport source port (0 without ports).
    pub source_port: u16,
    /// The transport destination port (0 without ports).
    pub destination_port: u16,
}

/// Whether a packet is one of the two on-link uses of an unspecified source that the RFCs
/// require: a DHCP client before it has an address (0.0.0.0:68 -> :67, RFC 2131 §4.1), and
/// IPv6 duplicate address detection and MLD reports from `::` to link-scope multicast
/// (RFC 4862 §5.4.2, RFC 3810 §5.2.13). Flagging them would bury real spoofing under every
/// host that boots.
pub(crate) fn is_on_link_unspecified_use(
    source: IpAddr,
    destination: IpAddr,
    context: PacketContext,
) -> bool {
    match (source, destination) {
        (IpAddr::V4(source), _) => {
            source.is_unspecified()
                && context.protocol == 17
                && context.source_port == 68
                && context.destination_port == 67
        }
        (IpAddr::V6(source), IpAddr::V6(destination)) => {
            source.is_unspecified() && context.protocol == 58 && destination.segments()[0] == 0xff02
        }
        _ => false,
    }
}

/// Classifies a packet (addresses plus protocol and ports) seen on an interface that is (or is
/// not) a loopback interface.
pub(crate) fn classify_packet(
    source: IpAddr,
    destination: IpAddr,
    context: PacketContext,
    on_loopback: bool,
) -> PacketVerdict {
    let mut verdicts = classify(source, destination, on_loopback);
    if verdicts.source.is_some() && is_on_link_unspecified_use(source, destination, context) {
        verdicts.source = None;
    }
    verdicts
}

/// Classifies a packet seen on an interface that is (or is not) a loopback interface.
pub(crate) fn classify(source: IpAddr, destination: IpAddr, on_loopback: bool) -> PacketVerdict {
    let mut verdicts = PacketVerdict {
        source: martian_source(source),
        destination: martian_destination(destination),
    };
    if on_loopback {
        // On lo, loopback traffic is what is expected; every other rule still applies.
        if loopscope_addr::is_loopback(source) {
            verdicts.source = None;
        }
        if loopscope_addr::is_loopback(destination) {
            verdicts.destination = None;
        }
    }
    verdicts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdicts(source: &str, destination: &str, protocol: u8, ports: (u16, u16)) -> PacketVerdict {
        let context = PacketContext {
            protocol,
            source_port: ports.0,
            destination_port: ports.1,
        };
        classify_packet(
            source.parse().unwrap(),
            destination.parse().unwrap(),
            context,
            false,
        )
    }

    #[test]
    fn on_link_unspecified_sources_are_not_martian() {
        assert!(!verdicts("0.0.0.0", "255.255.255.255", 17, (68, 67)).is_martian());
        assert!(!verdicts("::", "ff02::1:ff00:1", 58, (0, 0)).is_martian());
        assert!(!verdicts("::", "ff02::16", 58, (0, 0)).is_martian());
        // The same sources doing anything else are.
        assert!(verdicts("0.0.0.0", "10.0.0.1", 17, (68, 53)).is_martian());
        assert!(verdicts("0.0.0.0", "10.0.0.1", 6, (68, 67)).is_martian());
        assert!(verdicts("::", "fd00::1", 58, (0, 0)).is_martian());
        assert!(verdicts("::", "ff02::1", 17, (0, 0)).is_martian());
    }

    #[test]
    fn loopback_is_fine_on_loopback_only() {
        let (source, destination) = ("127.0.0.1".parse().unwrap(), "127.0.0.1".parse().unwrap());
        assert!(!classify(source, destination, true).is_martian());
        let off = classify(source, destination, false);
        assert_eq!(off.source, Some(MartianReason::LoopbackSource));
        assert_eq!(off.destination, Some(MartianReason::LoopbackDestination));
        // Other martians stay martian on lo.
        assert!(classify("0.0.0.1".parse().unwrap(), destination, true).is_martian());
    }
}
