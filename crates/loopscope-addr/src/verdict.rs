//! Verdicts on one address: loopback, reaches this host, martian, globally reachable, the
//! embedded IPv4 forms, and the SSRF decision under a [`Policy`]. Everything here is `Copy` and
//! allocation-free, so bulk classification runs at parsing speed.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::Serialize;

use crate::martian::{self, MartianReason};
use crate::prefix::Prefix;
use crate::registry::{self, Entry, Flag};

/// Which IPv6 form carries an IPv4 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EmbeddedKind {
    /// `::ffff:a.b.c.d` (RFC 4291 §2.5.5.2): a dual-stack socket connects to the IPv4 address.
    Ipv4Mapped,
    /// `::a.b.c.d` (RFC 4291 §2.5.5.1, deprecated).
    Ipv4Compatible,
    /// NAT64 well-known prefix `64:ff9b::/96` (RFC 6052): the translator contacts the IPv4 address.
    Nat64,
    /// Local-use NAT64 `64:ff9b:1::/48` (RFC 8215) read as a /96 prefix (IPv4 in the last 32 bits).
    Nat64Local96,
    /// Local-use NAT64 `64:ff9b:1::/48` read as a /48 prefix (RFC 6052 §2.2: bits 48-63 and
    /// 72-87, the u octet zero).
    Nat64Local48,
    /// 6to4 `2002:AABB:CCDD::/48` (RFC 3056): the relay's IPv4 address.
    SixToFour,
    /// Teredo server (RFC 4380 §4: bits 32-63).
    TeredoServer,
    /// Teredo client: the last 32 bits XOR-ed with all ones, with the XOR-ed port.
    TeredoClient,
}

impl EmbeddedKind {
    /// The kind's code in output.
    pub fn code(&self) -> &'static str {
        match self {
            EmbeddedKind::Ipv4Mapped => "ipv4_mapped",
            EmbeddedKind::Ipv4Compatible => "ipv4_compatible",
            EmbeddedKind::Nat64 => "nat64",
            EmbeddedKind::Nat64Local96 => "nat64_local_96",
            EmbeddedKind::Nat64Local48 => "nat64_local_48",
            EmbeddedKind::SixToFour => "6to4",
            EmbeddedKind::TeredoServer => "teredo_server",
            EmbeddedKind::TeredoClient => "teredo_client",
        }
    }
}

/// An IPv4 address found inside an IPv6 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Embedded {
    /// How it is embedded.
    pub kind: EmbeddedKind,
    /// The IPv4 address.
    pub ipv4: Ipv4Addr,
    /// The Teredo client's UDP port (un-XOR-ed).
    pub port: Option<u16>,
}

/// Up to two embedded addresses (Teredo has a server and a client).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct EmbeddedSet([Option<Embedded>; 2]);

impl EmbeddedSet {
    /// The embedded addresses, server first for Teredo.
    pub fn iter(&self) -> impl Iterator<Item = &Embedded> {
        self.0.iter().flatten()
    }
    /// No address is embedded.
    pub fn is_empty(&self) -> bool {
        self.0[0].is_none()
    }
    fn one(kind: EmbeddedKind, bits: u32) -> Self {
        EmbeddedSet([Some(embedded(kind, bits, None)), None])
    }
}

fn embedded(kind: EmbeddedKind, bits: u32, port: Option<u16>) -> Embedded {
    Embedded {
        kind,
        ipv4: Ipv4Addr::from_bits(bits),
        port,
    }
}

/// The IPv4 addresses an IPv6 address carries, by the forms of RFC 4291, 6052, 8215, 3056, 4380.
pub fn embedded_ipv4(ip: Ipv6Addr) -> EmbeddedSet {
    let bits = ip.to_bits();
    let low = bits as u32;
    if (bits >> 32) == 0xffff {
        return EmbeddedSet::one(EmbeddedKind::Ipv4Mapped, low);
    }
    if (bits >> 32) == 0 && bits > 1 {
        return EmbeddedSet::one(EmbeddedKind::Ipv4Compatible, low);
    }
    if (bits >> 32) == 0x0064_ff9b_0000_0000_0000_0000 {
        return EmbeddedSet::one(EmbeddedKind::Nat64, low);
    }
    if (bits >> 80) == 0x0064_ff9b_0001 {
        let as96 = Some(embedded(EmbeddedKind::Nat64Local96, low, None));
        let u_octet = (bits >> 56) & 0xff;
        let as48 = (u_octet == 0).then(|| {
            let v4 = (((bits >> 64) & 0xffff) << 16) | ((bits >> 40) & 0xffff);
            embedded(EmbeddedKind::Nat64Local48, v4 as u32, None)
        });
        return EmbeddedSet([as96, as48]);
    }
    if (bits >> 112) == 0x2002 {
        return EmbeddedSet::one(EmbeddedKind::SixToFour, (bits >> 80) as u32);
    }
    if (bits >> 96) == 0x2001_0000 {
        let server = embedded(EmbeddedKind::TeredoServer, (bits >> 64) as u32, None);
        let port = !((bits >> 32) as u16);
        let client = embedded(EmbeddedKind::TeredoClient, !low, Some(port));
        return EmbeddedSet([Some(server), Some(client)]);
    }
    EmbeddedSet::default()
}

/// Why `globally_reachable` is what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reach {
    /// The registry row's Globally Reachable column decides.
    Registry,
    /// The row says N/A (6to4, Teredo) or the NAT64 well-known prefix: the embedded IPv4
    /// addresses decide (RFC 6052 §3.1 forbids the well-known prefix for non-global IPv4).
    Embedded,
    /// Ordinary IPv4 unicast, or IPv6 global unicast 2000::/3, with no special-purpose row.
    GlobalUnicast,
    /// IPv6 outside 2000::/3 and every special row: "Reserved by IETF" in the IPv6 Address
    /// Space registry.
    ReservedByIetf,
}

/// Everything known about one address, without allocating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressVerdict {
    /// The address judged.
    pub address: IpAddr,
    /// The most specific registry row (special-purpose, or multicast / deprecated blocks).
    pub entry: Option<&'static Entry>,
    /// 127/8, ::1, ::ffff:127.0.0.0/104 (see [`crate::is_loopback`]).
    pub loopback: bool,
    /// A connection to it lands on this host: loopback, or the unspecified 0.0.0.0 / :: (and
    /// ::ffff:0.0.0.0), which Linux connects to the local host.
    pub reaches_this_host: bool,
    /// The registry marks it globally reachable (the most specific row decides).
    pub globally_reachable: bool,
    /// Why `globally_reachable` is what it is.
    pub reach: Reach,
    /// Why a packet from it is martian, if it is.
    pub martian_source: Option<MartianReason>,
    /// Why a packet to it is martian, if it is.
    pub martian_destination: Option<MartianReason>,
    /// IPv4 addresses embedded in it.
    pub embedded: EmbeddedSet,
}

/// Classifies one address.
#[inline]
pub fn classify(address: IpAddr) -> AddressVerdict {
    let entry = registry::lookup(address);
    let embedded = match address {
        IpAddr::V6(v6) => embedded_ipv4(v6),
        IpAddr::V4(_) => EmbeddedSet::default(),
    };
    let loopback = crate::is_loopback(address);
    let unspecified = match address {
        IpAddr::V4(v4) => v4.to_bits() == 0,
        IpAddr::V6(v6) => v6.to_bits() == 0 || v6.to_bits() == 0xffff_0000_0000,
    };
    let (globally_reachable, reach) = match entry {
        Some(entry) => match entry.globally_reachable {
            Flag::True if embedded.is_empty() => (true, Reach::Registry),
            Flag::True | Flag::DependsOnEmbedded => (
                embedded.iter().all(|e| ipv4_globally_reachable(e.ipv4)),
                Reach::Embedded,
            ),
            Flag::False | Flag::FalseUnlessMoreSpecific | Flag::Unset => (false, Reach::Registry),
        },
        None => match address {
            IpAddr::V4(_) => (true, Reach::GlobalUnicast),
            IpAddr::V6(v6) if (v6.to_bits() >> 125) == 1 => (true, Reach::GlobalUnicast),
            IpAddr::V6(_) => (false, Reach::ReservedByIetf),
        },
    };
    AddressVerdict {
        address,
        entry,
        loopback,
        reaches_this_host: loopback || unspecified,
        globally_reachable,
        reach,
        martian_source: martian::martian_source(address),
        martian_destination: martian::martian_destination(address),
        embedded,
    }
}

#[inline]
fn ipv4_globally_reachable(ip: Ipv4Addr) -> bool {
    registry::lookup(IpAddr::V4(ip)).is_none_or(|entry| entry.globally_reachable == Flag::True)
}

/// What an SSRF guard may contact. The default denies everything that is not globally
/// reachable (loopback, 0.0.0.0, private, link-local incl. cloud metadata 169.254.169.254,
/// documentation, reserved, multicast ...).
///
/// A `deny` prefix matches every form that reaches the same IPv4 host: `8.8.8.8/32` also denies
/// `::ffff:8.8.8.8`, `64:ff9b::8.8.8.8`, the 6to4 `2002:808:808::/48` and Teredo addresses
/// carrying it, and `::ffff:8.8.8.8/128` denies `8.8.8.8`. `allow` prefixes match only as
/// written (and IPv4-mapped addresses as their IPv4 address).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// Also allow the private ranges: 10/8, 172.16/12, 192.168/16 (RFC 1918) and fc00::/7
    /// (RFC 4193). Link-local, loopback and shared address space stay denied.
    pub allow_private: bool,
    /// Allow these prefixes whatever they are (e.g. 127.0.0.0/8 for a local test server).
    pub allow: Vec<Prefix>,
    /// Deny these prefixes, before anything is allowed.
    pub deny: Vec<Prefix>,
}

/// Allow or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Let the connection through.
    Allow,
    /// Refuse it.
    Deny,
}

impl Decision {
    /// `allow` or `deny`, as output shows it.
    pub fn code(&self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
        }
    }
}

/// Why the SSRF decision went the way it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SsrfReason {
    /// In a prefix the policy denies.
    DeniedPrefix(Prefix),
    /// In a prefix the policy allows.
    AllowedPrefix(Prefix),
    /// A private block the policy allows.
    AllowedPrivate(&'static Entry),
    /// Globally reachable (with the row that says so, if any).
    GloballyReachable(Option<&'static Entry>),
    /// A loopback address.
    Loopback,
    /// The unspecified address (Linux connects it to this host).
    Unspecified,
    /// Multicast.
    Multicast,
    /// A special-purpose block that is not globally reachable.
    NotGloballyReachable(&'static Entry),
    /// An embedded IPv4 address that is not globally reachable.
    EmbeddedNotGloballyReachable(Embedded),
    /// IPv6 outside 2000::/3 with no assignment: reserved by the IETF (IANA IPv6 Address Space registry).
    ReservedByIetf,
}

impl fmt::Display for SsrfReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SsrfReason::DeniedPrefix(prefix) => write!(f, "in denied prefix {prefix}"),
            SsrfReason::AllowedPrefix(prefix) => write!(f, "in allowed prefix {prefix}"),
            SsrfReason::AllowedPrivate(entry) => {
                write!(
                    f,
                    "private ({} {}) and private ranges are allowed",
                    entry.name, entry.block
                )
            }
            SsrfReason::GloballyReachable(Some(entry)) => write!(
                f,
                "globally reachable ({} {}, {})",
                entry.name, entry.block, entry.rfc
            ),
            SsrfReason::GloballyReachable(None) => {
                f.write_str("globally reachable unicast (no special-purpose row)")
            }
            SsrfReason::Loopback => f.write_str("loopback: reaches this host"),
            SsrfReason::Unspecified => {
                f.write_str("unspecified address: connecting to it reaches this host on Linux")
            }
            SsrfReason::Multicast => f.write_str("multicast: a group, not a host"),
            SsrfReason::NotGloballyReachable(entry) => write!(
                f,
                "not globally reachable: {} {} ({})",
                entry.name, entry.block, entry.rfc
            ),
            SsrfReason::EmbeddedNotGloballyReachable(embedded) => {
                let inner = classify(IpAddr::V4(embedded.ipv4));
                let what = inner.entry.map_or("not globally reachable", |e| e.name);
                write!(
                    f,
                    "embedded {} address {} is {}",
                    embedded.kind.code(),
                    embedded.ipv4,
                    what
                )
            }
            SsrfReason::ReservedByIetf => {
                f.write_str("IPv6 outside 2000::/3 with no assignment: reserved by the IETF")
            }
        }
    }
}

/// The IPv4 prefix an IPv6 prefix stands for when it lies wholly inside one of the forms that
/// carry an IPv4 address in fixed bits: IPv4-mapped and -compatible (RFC 4291 §2.5.5), the
/// NAT64 well-known and local-use /96 prefixes (RFC 6052, RFC 8215), 6to4 (RFC 3056), and a
/// whole Teredo address (its client, RFC 4380 §4).
pub fn ipv4_prefix_of(prefix: &Prefix) -> Option<Prefix> {
    let Prefix::V6 { bits, len } = *prefix else {
        return None;
    };
    let low = |from_bit: u8| -> Prefix {
        // The IPv4 part is the last 32 bits; the prefix fixes `len - from_bit` of them.
        let v4 = bits as u32;
        Prefix::v4(v4.to_be_bytes(), len.saturating_sub(from_bit).min(32))
    };
    let in_block = |block: u128, block_len: u8| {
        len >= block_len
            && (bits >> (128 - u32::from(block_len))) == block >> (128 - u32::from(block_len))
    };
    if in_block(0xffff_u128 << 32, 96)
        || in_block(0x0064_ff9b_u128 << 96, 96)
        || in_block(0x0064_ff9b_0001_u128 << 80, 96)
        || (in_block(0, 96) && len == 128 && bits > 1)
    {
        return Some(low(96));
    }
    if in_block(0x2002_u128 << 112, 16) {
        let v4 = (bits >> 80) as u32;
        return Some(Prefix::v4(v4.to_be_bytes(), (len - 16).min(32)));
    }
    if in_block(0x2001_0000_u128 << 96, 32) && len == 128 {
        return Some(Prefix::v4((!(bits as u32)).to_be_bytes(), 32));
    }
    None
}

/// Whether a deny prefix matches the address, or any IPv4 host the address reaches (itself,
/// or embedded in an IPv6 form), in either direction.
fn denies_any_form(prefix: &Prefix, verdict: &AddressVerdict) -> bool {
    if prefix.contains(verdict.address) {
        return true;
    }
    let as_v4 = match prefix {
        Prefix::V4 { .. } => Some(*prefix),
        Prefix::V6 { .. } => ipv4_prefix_of(prefix),
    };
    let Some(v4_prefix) = as_v4 else {
        return false;
    };
    match verdict.address {
        IpAddr::V4(_) => v4_prefix.contains(verdict.address),
        IpAddr::V6(_) => verdict
            .embedded
            .iter()
            .any(|embedded| v4_prefix.contains(IpAddr::V4(embedded.ipv4))),
    }
}

impl Policy {
    /// The SSRF decision for one address.
    pub fn check(&self, verdict: &AddressVerdict) -> (Decision, SsrfReason) {
        // An IPv4-mapped address is, to a dual-stack socket, its IPv4 address: judge that.
        let mapped = match verdict.address {
            IpAddr::V6(v6) => crate::ipv4_mapped(v6),
            IpAddr::V4(_) => None,
        };
        let mapped_verdict;
        let effective: &AddressVerdict = match mapped {
            Some(v4) => {
                mapped_verdict = classify(IpAddr::V4(v4));
                &mapped_verdict
            }
            None => verdict,
        };
        let in_list = |list: &[Prefix]| {
            list.iter()
                .find(|p| p.contains(verdict.address) || p.contains(effective.address))
                .copied()
        };
        // A deny rule names an IPv4 host in whatever form: it also matches every IPv6 form
        // that reaches that host, and a rule written in an IPv6 form matches the IPv4 host.
        if let Some(prefix) = self
            .deny
            .iter()
            .find(|prefix| denies_any_form(prefix, verdict))
            .copied()
        {
            return (Decision::Deny, SsrfReason::DeniedPrefix(prefix));
        }
        if let Some(prefix) = in_list(&self.allow) {
            return (Decision::Allow, SsrfReason::AllowedPrefix(prefix));
        }
        if let Some(entry) = effective.entry
            && self.allow_private
            && matches!(entry.name, "Private-Use" | "Unique-Local")
        {
            return (Decision::Allow, SsrfReason::AllowedPrivate(entry));
        }
        if effective.loopback {
            return (Decision::Deny, SsrfReason::Loopback);
        }
        if effective.reaches_this_host {
            return (Decision::Deny, SsrfReason::Unspecified);
        }
        if let Some(entry) = effective.entry
            && entry.name == "Multicast"
        {
            return (Decision::Deny, SsrfReason::Multicast);
        }
        if let Some(bad) = effective
            .embedded
            .iter()
            .find(|e| !ipv4_globally_reachable(e.ipv4))
        {
            return (
                Decision::Deny,
                SsrfReason::EmbeddedNotGloballyReachable(*bad),
            );
        }
        if effective.globally_reachable {
            return (
                Decision::Allow,
                SsrfReason::GloballyReachable(effective.entry),
            );
        }
        match effective.entry {
            Some(entry) => (Decision::Deny, SsrfReason::NotGloballyReachable(entry)),
            None => (Decision::Deny, SsrfReason::ReservedByIetf),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision(policy: &Policy, address: &str) -> Decision {
        policy.check(&classify(address.parse().unwrap())).0
    }

    fn deny(prefix: &str) -> Policy {
        Policy {
            deny: vec![prefix.parse().unwrap()],
            ..Policy::default()
        }
    }

    /// The forms of 8.8.8.8, written by hand from RFC 4291 §2.5.5.2 (mapped), RFC 6052 §2.2
    /// (NAT64 /96), RFC 8215 (local-use /96), RFC 3056 §2 (6to4: 2002:V4ADDR::/48) and RFC 4380
    /// §4 (Teredo: the client address inverted in the last 32 bits, 8.8.8.8 -> f7f7:f7f7).
    const FORMS_OF_8_8_8_8: [&str; 7] = [
        "8.8.8.8",
        "::ffff:8.8.8.8",
        "64:ff9b::808:808",
        "64:ff9b:1::808:808",
        "2002:808:808::1",
        "2002:808:808:1234::5",
        "2001:0:4136:e378:8000:63bf:f7f7:f7f7",
    ];

    #[test]
    fn a_deny_rule_matches_every_form_of_its_ipv4_host() {
        for rule in [
            "8.8.8.8/32",
            "8.8.0.0/16",
            "::ffff:8.8.8.8/128",
            "64:ff9b::808:808/128",
            "2002:808:808::/48",
            "2001:0:4136:e378:8000:63bf:f7f7:f7f7/128",
        ] {
            let policy = deny(rule);
            for form in FORMS_OF_8_8_8_8 {
                assert_eq!(decision(&policy, form), Decision::Deny, "{rule} vs {form}");
            }
            // 8.8.4.4 is another host (and 8.8.0.0/16 holds it, so skip that rule).
            if rule != "8.8.0.0/16" {
                for other in ["8.8.4.4", "::ffff:8.8.4.4", "2002:808:404::1"] {
                    assert_eq!(
                        decision(&policy, other),
                        Decision::Allow,
                        "{rule} vs {other}"
                    );
                }
            }
        }
    }

    #[test]
    fn ipv6_forms_name_their_ipv4_prefix() {
        let v4 = |text: &str| ipv4_prefix_of(&text.parse().unwrap()).map(|p| p.to_string());
        assert_eq!(v4("::ffff:10.0.0.0/104").as_deref(), Some("10.0.0.0/8"));
        assert_eq!(v4("64:ff9b::/96").as_deref(), Some("0.0.0.0/0"));
        assert_eq!(v4("2002:a00::/24").as_deref(), Some("10.0.0.0/8"));
        assert_eq!(v4("2002::/16").as_deref(), Some("0.0.0.0/0"));
        // Wider than the embedding block, or not an embedding form at all: no IPv4 meaning.
        assert_eq!(v4("::ffff:0:0/95"), None);
        assert_eq!(v4("2001:db8::/32"), None);
        assert_eq!(
            v4("2001::/32"),
            None,
            "a Teredo prefix names no single client"
        );
    }
}
