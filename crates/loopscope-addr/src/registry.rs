//! The IANA IPv4 and IPv6 Special-Purpose Address Registries (RFC 6890 and later updates),
//! transcribed by hand, row by row, from the snapshot published on **2026-07-18**:
//!
//! - <https://www.iana.org/assignments/iana-ipv4-special-registry/> (`data/iana-ipv4-special-registry.csv`)
//! - <https://www.iana.org/assignments/iana-ipv6-special-registry/> (`data/iana-ipv6-special-registry.csv`)
//!
//! A checked-in table rather than a build script: the rows are few, reviewable in a diff, and a
//! unit test re-reads both CSV files and checks every row and every attribute against this table.
//!
//! Footnotes: 127.0.0.0/8 and 2001::/23 "[1]" — False unless a more specific row says otherwise;
//! 192.0.0.0/24 "[2]" — usable only through its more specific rows; 6to4 and Teredo "N/A" —
//! reachability depends on the embedded IPv4 address and the relays; fc00::/7 "[4]" — see
//! RFC 4193. Rows with a termination date are deprecated and carry no attributes.
//!
//! [`OTHER_BLOCKS`] adds what the special-purpose registries leave out but a verdict needs:
//! multicast, the deprecated IPv4-compatible and site-local IPv6 blocks.

use std::net::IpAddr;

use serde::{Serialize, Serializer};

use crate::prefix::Prefix;

/// The date of the registry snapshot this table transcribes.
pub const REGISTRY_SNAPSHOT: &str = "2026-07-18";

/// Which registry a row comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RegistrySource {
    /// IANA IPv4 Special-Purpose Address Registry.
    IanaIpv4SpecialPurpose,
    /// IANA IPv6 Special-Purpose Address Registry.
    IanaIpv6SpecialPurpose,
    /// Not a special-purpose row: multicast and deprecated blocks from the address-space
    /// registries and RFCs (see the row's `rfc`).
    AddressSpace,
}

impl RegistrySource {
    /// The registry's full name, as IANA titles it.
    pub fn name(&self) -> &'static str {
        match self {
            RegistrySource::IanaIpv4SpecialPurpose => "IANA IPv4 Special-Purpose Address Registry",
            RegistrySource::IanaIpv6SpecialPurpose => "IANA IPv6 Special-Purpose Address Registry",
            RegistrySource::AddressSpace => "IANA address space registries / RFCs",
        }
    }
}

/// One attribute column (Source, Destination, Forwardable, Globally Reachable,
/// Reserved-by-Protocol) of a registry row, footnotes kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Flag {
    /// "True".
    True,
    /// "False".
    False,
    /// "False [1]": false unless a more specific row says otherwise.
    FalseUnlessMoreSpecific,
    /// "N/A": depends on the embedded IPv4 address (6to4, Teredo).
    DependsOnEmbedded,
    /// Blank: the row is deprecated (has a termination date).
    Unset,
}

impl Flag {
    /// `Some(bool)` where the registry gives a value, `None` for N/A and blanks.
    pub fn value(&self) -> Option<bool> {
        match self {
            Flag::True => Some(true),
            Flag::False | Flag::FalseUnlessMoreSpecific => Some(false),
            Flag::DependsOnEmbedded | Flag::Unset => None,
        }
    }
}

/// JSON: `true`, `false`, or `null` (N/A or blank; the row's `notes` say which).
impl Serialize for Flag {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.value() {
            Some(value) => serializer.serialize_bool(value),
            None => serializer.serialize_none(),
        }
    }
}

/// One row of a registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Entry {
    /// The address block.
    pub block: Prefix,
    /// The registry's name for it.
    pub name: &'static str,
    /// The RFC that reserves it.
    pub rfc: &'static str,
    /// Which registry the row comes from.
    #[serde(rename = "registry")]
    pub source_registry: RegistrySource,
    /// When it was allocated (`YYYY-MM`).
    pub allocation_date: &'static str,
    /// When it was withdrawn, for a deprecated row.
    pub termination_date: Option<&'static str>,
    /// May appear as a source address.
    pub source: Flag,
    /// May appear as a destination address.
    pub destination: Flag,
    /// A router may forward it.
    pub forwardable: Flag,
    /// Reachable beyond its local domain.
    pub globally_reachable: Flag,
    /// Reserved by a protocol, not for general use.
    pub reserved_by_protocol: Flag,
    /// The registry's footnote for this row, in words.
    pub note: Option<&'static str>,
}

impl Entry {
    /// The row has a termination date (the block was withdrawn).
    pub fn deprecated(&self) -> bool {
        self.termination_date.is_some()
    }
}

use Flag::{
    DependsOnEmbedded as NA, False as F, FalseUnlessMoreSpecific as F1, True as T, Unset as U,
};

const NOTE_1: &str = "[1] False unless a more specific allocation says otherwise";
const NOTE_2: &str = "[2] usable only through its more specific allocations";
const NOTE_NA: &str =
    "N/A: global reachability depends on the embedded IPv4 address and on the relays";
const NOTE_ULA: &str = "[4] see RFC 4193: reachable only within the site that uses it";
const NOTE_DEPRECATED: &str = "deprecated: the registry gives no attributes after termination";

#[allow(clippy::too_many_arguments)]
const fn row(
    source_registry: RegistrySource,
    block: Prefix,
    name: &'static str,
    rfc: &'static str,
    allocation_date: &'static str,
    termination_date: Option<&'static str>,
    flags: [Flag; 5],
    note: Option<&'static str>,
) -> Entry {
    Entry {
        block,
        name,
        rfc,
        source_registry,
        allocation_date,
        termination_date,
        source: flags[0],
        destination: flags[1],
        forwardable: flags[2],
        globally_reachable: flags[3],
        reserved_by_protocol: flags[4],
        note,
    }
}

const V4: RegistrySource = RegistrySource::IanaIpv4SpecialPurpose;
const V6: RegistrySource = RegistrySource::IanaIpv6SpecialPurpose;

const fn p4(a: u8, b: u8, c: u8, d: u8, len: u8) -> Prefix {
    Prefix::v4([a, b, c, d], len)
}

const fn p6(segments: [u16; 8], len: u8) -> Prefix {
    Prefix::v6(segments, len)
}

/// The IPv4 registry, in the registry's order. The one row with two blocks
/// ("192.0.0.170/32, 192.0.0.171/32") is two entries here.
#[rustfmt::skip]
pub static IPV4_SPECIAL: [Entry; 26] = [
    row(V4, p4(0, 0, 0, 0, 8), "\"This network\"", "[RFC791], Section 3.2", "1981-09", None, [T, F, F, F, T], None),
    row(V4, p4(0, 0, 0, 0, 32), "\"This host on this network\"", "[RFC1122], Section 3.2.1.3", "1981-09", None, [T, F, F, F, T], None),
    row(V4, p4(10, 0, 0, 0, 8), "Private-Use", "[RFC1918]", "1996-02", None, [T, T, T, F, F], None),
    row(V4, p4(100, 64, 0, 0, 10), "Shared Address Space", "[RFC6598]", "2012-04", None, [T, T, T, F, F], None),
    row(V4, p4(127, 0, 0, 0, 8), "Loopback", "[RFC1122], Section 3.2.1.3", "1981-09", None, [F1, F1, F1, F1, T], Some(NOTE_1)),
    row(V4, p4(169, 254, 0, 0, 16), "Link Local", "[RFC3927]", "2005-05", None, [T, T, F, F, T], None),
    row(V4, p4(172, 16, 0, 0, 12), "Private-Use", "[RFC1918]", "1996-02", None, [T, T, T, F, F], None),
    row(V4, p4(192, 0, 0, 0, 24), "IETF Protocol Assignments", "[RFC6890], Section 2.1", "2010-01", None, [F, F, F, F, F], Some(NOTE_2)),
    row(V4, p4(192, 0, 0, 0, 29), "IPv4 Service Continuity Prefix", "[RFC7335]", "2011-06", None, [T, T, T, F, F], None),
    row(V4, p4(192, 0, 0, 8, 32), "IPv4 dummy address", "[RFC7600]", "2015-03", None, [T, F, F, F, F], None),
    row(V4, p4(192, 0, 0, 9, 32), "Port Control Protocol Anycast", "[RFC7723]", "2015-10", None, [T, T, T, T, F], None),
    row(V4, p4(192, 0, 0, 10, 32), "Traversal Using Relays around NAT Anycast", "[RFC8155]", "2017-02", None, [T, T, T, T, F], None),
    row(V4, p4(192, 0, 0, 170, 32), "NAT64/DNS64 Discovery", "[RFC8880][RFC7050], Section 2.2", "2013-02", None, [F, F, F, F, T], None),
    row(V4, p4(192, 0, 0, 171, 32), "NAT64/DNS64 Discovery", "[RFC8880][RFC7050], Section 2.2", "2013-02", None, [F, F, F, F, T], None),
    row(V4, p4(192, 0, 2, 0, 24), "Documentation (TEST-NET-1)", "[RFC5737]", "2010-01", None, [F, F, F, F, F], None),
    row(V4, p4(192, 31, 196, 0, 24), "AS112-v4", "[RFC7535]", "2014-12", None, [T, T, T, T, F], None),
    row(V4, p4(192, 52, 193, 0, 24), "AMT", "[RFC7450]", "2014-12", None, [T, T, T, T, F], None),
    row(V4, p4(192, 88, 99, 0, 24), "Deprecated (6to4 Relay Anycast)", "[RFC7526]", "2001-06", Some("2015-03"), [U, U, U, U, U], Some(NOTE_DEPRECATED)),
    row(V4, p4(192, 88, 99, 2, 32), "6a44-relay anycast address", "[RFC6751]", "2012-10", None, [T, T, T, F, F], None),
    row(V4, p4(192, 168, 0, 0, 16), "Private-Use", "[RFC1918]", "1996-02", None, [T, T, T, F, F], None),
    row(V4, p4(192, 175, 48, 0, 24), "Direct Delegation AS112 Service", "[RFC7534]", "1996-01", None, [T, T, T, T, F], None),
    row(V4, p4(198, 18, 0, 0, 15), "Benchmarking", "[RFC2544]", "1999-03", None, [T, T, T, F, F], None),
    row(V4, p4(198, 51, 100, 0, 24), "Documentation (TEST-NET-2)", "[RFC5737]", "2010-01", None, [F, F, F, F, F], None),
    row(V4, p4(203, 0, 113, 0, 24), "Documentation (TEST-NET-3)", "[RFC5737]", "2010-01", None, [F, F, F, F, F], None),
    row(V4, p4(240, 0, 0, 0, 4), "Reserved", "[RFC1112], Section 4", "1989-08", None, [F, F, F, F, T], None),
    row(V4, p4(255, 255, 255, 255, 32), "Limited Broadcast", "[RFC8190] [RFC919], Section 7", "1984-10", None, [F, T, F, F, T], None),
];

/// The IPv6 registry, in the registry's order.
#[rustfmt::skip]
pub static IPV6_SPECIAL: [Entry; 25] = [
    row(V6, p6([0, 0, 0, 0, 0, 0, 0, 1], 128), "Loopback Address", "[RFC4291]", "2006-02", None, [F, F, F, F, T], None),
    row(V6, p6([0; 8], 128), "Unspecified Address", "[RFC4291]", "2006-02", None, [T, F, F, F, T], None),
    row(V6, p6([0, 0, 0, 0, 0, 0xffff, 0, 0], 96), "IPv4-mapped Address", "[RFC4291]", "2006-02", None, [F, F, F, F, T], None),
    row(V6, p6([0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96), "IPv4-IPv6 Translat.", "[RFC6052]", "2010-10", None, [T, T, T, T, F], None),
    row(V6, p6([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48), "IPv4-IPv6 Translat.", "[RFC8215]", "2017-06", None, [T, T, T, F, F], None),
    row(V6, p6([0x100, 0, 0, 0, 0, 0, 0, 0], 64), "Discard-Only Address Block", "[RFC6666]", "2012-06", None, [T, T, T, F, F], None),
    row(V6, p6([0x100, 0, 0, 1, 0, 0, 0, 0], 64), "Dummy IPv6 Prefix", "[RFC9780]", "2025-04", None, [T, F, F, F, F], None),
    row(V6, p6([0x2001, 0, 0, 0, 0, 0, 0, 0], 23), "IETF Protocol Assignments", "[RFC2928]", "2000-09", None, [F1, F1, F1, F1, F], Some(NOTE_1)),
    row(V6, p6([0x2001, 0, 0, 0, 0, 0, 0, 0], 32), "TEREDO", "[RFC4380] [RFC8190]", "2006-01", None, [T, T, T, NA, F], Some(NOTE_NA)),
    row(V6, p6([0x2001, 1, 0, 0, 0, 0, 0, 1], 128), "Port Control Protocol Anycast", "[RFC7723]", "2015-10", None, [T, T, T, T, F], None),
    row(V6, p6([0x2001, 1, 0, 0, 0, 0, 0, 2], 128), "Traversal Using Relays around NAT Anycast", "[RFC8155]", "2017-02", None, [T, T, T, T, F], None),
    row(V6, p6([0x2001, 1, 0, 0, 0, 0, 0, 3], 128), "DNS-SD Service Registration Protocol Anycast", "[RFC9665]", "2024-04", None, [T, T, T, T, F], None),
    row(V6, p6([0x2001, 2, 0, 0, 0, 0, 0, 0], 48), "Benchmarking", "[RFC5180][RFC Errata 1752]", "2008-04", None, [T, T, T, F, F], None),
    row(V6, p6([0x2001, 3, 0, 0, 0, 0, 0, 0], 32), "AMT", "[RFC7450]", "2014-12", None, [T, T, T, T, F], None),
    row(V6, p6([0x2001, 4, 0x112, 0, 0, 0, 0, 0], 48), "AS112-v6", "[RFC7535]", "2014-12", None, [T, T, T, T, F], None),
    row(V6, p6([0x2001, 0x10, 0, 0, 0, 0, 0, 0], 28), "Deprecated (previously ORCHID)", "[RFC4843]", "2007-03", Some("2014-03"), [U, U, U, U, U], Some(NOTE_DEPRECATED)),
    row(V6, p6([0x2001, 0x20, 0, 0, 0, 0, 0, 0], 28), "ORCHIDv2", "[RFC7343]", "2014-07", None, [T, T, T, T, F], None),
    row(V6, p6([0x2001, 0x30, 0, 0, 0, 0, 0, 0], 28), "Drone Remote ID Protocol Entity Tags (DETs) Prefix", "[RFC9374]", "2022-12", None, [T, T, T, T, F], None),
    row(V6, p6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32), "Documentation", "[RFC3849]", "2004-07", None, [F, F, F, F, F], None),
    row(V6, p6([0x2002, 0, 0, 0, 0, 0, 0, 0], 16), "6to4", "[RFC3056]", "2001-02", None, [T, T, T, NA, F], Some(NOTE_NA)),
    row(V6, p6([0x2620, 0x4f, 0x8000, 0, 0, 0, 0, 0], 48), "Direct Delegation AS112 Service", "[RFC7534]", "2011-05", None, [T, T, T, T, F], None),
    row(V6, p6([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20), "Documentation", "[RFC9637]", "2024-07", None, [F, F, F, F, F], None),
    row(V6, p6([0x5f00, 0, 0, 0, 0, 0, 0, 0], 16), "Segment Routing (SRv6) SIDs", "[RFC9602]", "2024-04", None, [T, T, T, F, F], None),
    row(V6, p6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7), "Unique-Local", "[RFC4193] [RFC8190]", "2005-10", None, [T, T, T, F, F], Some(NOTE_ULA)),
    row(V6, p6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10), "Link-Local Unicast", "[RFC4291]", "2006-02", None, [T, T, F, F, T], None),
];

const AS: RegistrySource = RegistrySource::AddressSpace;

/// Blocks outside the special-purpose registries that a verdict still needs.
#[rustfmt::skip]
pub static OTHER_BLOCKS: [Entry; 4] = [
    row(AS, p4(224, 0, 0, 0, 4), "Multicast", "[RFC5771] [RFC1112]", "1989-08", None, [F, T, T, F, T], Some("IANA IPv4 Multicast Address Space registry; a group, not a host")),
    row(AS, p6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8), "Multicast", "[RFC4291], Section 2.7", "2006-02", None, [F, T, T, F, T], Some("IANA IPv6 Multicast Address Space registry; a group, not a host")),
    row(AS, p6([0; 8], 96), "IPv4-compatible Address (deprecated)", "[RFC4291], Section 2.5.5.1", "2006-02", Some("2006-02"), [F, F, F, F, T], Some("deprecated by RFC 4291; no current stack gives it meaning")),
    row(AS, p6([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10), "Site-Local Unicast (deprecated)", "[RFC3879]", "1998-12", Some("2004-09"), [T, T, F, F, T], Some("deprecated by RFC 3879; still site-scoped where used")),
];

/// Every row that contains `ip`, least specific first. Does not allocate.
pub fn matching(ip: IpAddr) -> impl Iterator<Item = &'static Entry> {
    let (special, other): (&'static [Entry], &'static [Entry]) = match ip {
        IpAddr::V4(_) => (&IPV4_SPECIAL, &OTHER_BLOCKS[..1]),
        IpAddr::V6(_) => (&IPV6_SPECIAL, &OTHER_BLOCKS[1..]),
    };
    let mut all: [Option<&'static Entry>; 8] = [None; 8];
    let mut count = 0;
    for entry in special.iter().chain(other) {
        if entry.block.contains(ip) && count < all.len() {
            all[count] = Some(entry);
            count += 1;
        }
    }
    all[..count].sort_by_key(|entry| entry.map(|e| e.block.len()));
    all.into_iter().flatten()
}

/// The most specific row that contains `ip` and still has attributes (a deprecated row gives
/// way to the row that contains it), or `None` for ordinary unicast space.
#[inline]
pub fn lookup(ip: IpAddr) -> Option<&'static Entry> {
    match ip {
        IpAddr::V4(v4) => lookup_v4(v4.to_bits()),
        IpAddr::V6(v6) => lookup_v6(v6.to_bits()),
    }
}

/// Index of the rows that can hold an address, by its first octet (IPv4) or first 16 bits
/// (IPv6): ranges into the tables above, in their registry order. Every other address has no row,
/// and is answered without scanning. `every_row_first_last_and_outside` in tests/ pins this.
#[inline]
fn lookup_v4(bits: u32) -> Option<&'static Entry> {
    let (special, other) = match bits >> 24 {
        0 => (0..2, 0..0),
        10 => (2..3, 0..0),
        100 => (3..4, 0..0),
        127 => (4..5, 0..0),
        169 => (5..6, 0..0),
        172 => (6..7, 0..0),
        192 => (7..21, 0..0),
        198 => (21..23, 0..0),
        203 => (23..24, 0..0),
        224..=239 => (0..0, 0..1),
        240..=255 => (24..26, 0..0),
        _ => return None,
    };
    best(&IPV4_SPECIAL[special], &OTHER_BLOCKS[other], |p| {
        p.contains_v4(bits)
    })
}

#[inline]
fn lookup_v6(bits: u128) -> Option<&'static Entry> {
    let (special, other) = match (bits >> 112) as u16 {
        0x0000 => (0..3, 2..3),
        0x0064 => (3..5, 0..0),
        0x0100 => (5..7, 0..0),
        0x2001 => (7..19, 0..0),
        0x2002 => (19..20, 0..0),
        0x2620 => (20..21, 0..0),
        0x3fff => (21..22, 0..0),
        0x5f00 => (22..23, 0..0),
        0xfc00..=0xfdff => (23..24, 0..0),
        0xfe80..=0xfebf => (24..25, 0..0),
        0xfec0..=0xfeff => (0..0, 3..4),
        0xff00..=0xffff => (0..0, 1..2),
        _ => return None,
    };
    best(&IPV6_SPECIAL[special], &OTHER_BLOCKS[other], |p| {
        p.contains_v6(bits)
    })
}

#[inline]
fn best(
    special: &'static [Entry],
    other: &'static [Entry],
    contains: impl Fn(&Prefix) -> bool,
) -> Option<&'static Entry> {
    let mut found: Option<&'static Entry> = None;
    for entry in special.iter().chain(other) {
        if contains(&entry.block)
            && entry.globally_reachable != Flag::Unset
            && found.is_none_or(|f| entry.block.len() > f.block.len())
        {
            found = Some(entry);
        }
    }
    found
}

/// The deprecated row (if any) that contains `ip`: such rows have no attributes, so [`lookup`]
/// skips them, but the report still names them.
pub fn deprecated_row(ip: IpAddr) -> Option<&'static Entry> {
    IPV4_SPECIAL
        .iter()
        .chain(&IPV6_SPECIAL)
        .find(|entry| entry.deprecated() && entry.block.contains(ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Splits one CSV line, honouring quotes and doubled quotes (RFC 4180).
    fn csv_fields(line: &str) -> Vec<String> {
        let mut fields = vec![String::new()];
        let mut quoted = false;
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            match (c, quoted) {
                ('"', true) if chars.peek() == Some(&'"') => {
                    chars.next();
                    fields.last_mut().unwrap().push('"');
                }
                ('"', _) => quoted = !quoted,
                (',', false) => fields.push(String::new()),
                (c, _) => fields.last_mut().unwrap().push(c),
            }
        }
        fields
    }

    fn flag(text: &str) -> Flag {
        match text {
            "True" => Flag::True,
            "False" | "False [4]" => Flag::False,
            "False [1]" => Flag::FalseUnlessMoreSpecific,
            "N/A [2]" | "N/A [3]" => Flag::DependsOnEmbedded,
            "" => Flag::Unset,
            other => panic!("unknown attribute {other:?}"),
        }
    }

    /// Every CSV row, every column, against the hand-made table (in order).
    fn check(csv: &str, table: &[Entry]) {
        let mut entries = table.iter();
        let mut rows = 0;
        for line in csv.lines().skip(1).filter(|l| !l.trim().is_empty()) {
            rows += 1;
            let f = csv_fields(line);
            assert_eq!(f.len(), 10, "{line}");
            for block in f[0].split(", ") {
                let block = block.split(" [").next().unwrap();
                let entry = entries.next().expect("table shorter than CSV");
                assert_eq!(entry.block, block.parse::<Prefix>().unwrap(), "{line}");
                assert_eq!(entry.name, f[1], "{line}");
                assert_eq!(entry.rfc, f[2], "{line}");
                assert_eq!(entry.allocation_date, f[3], "{line}");
                let termination = (f[4] != "N/A").then_some(f[4].as_str());
                assert_eq!(entry.termination_date, termination, "{line}");
                let flags = [
                    entry.source,
                    entry.destination,
                    entry.forwardable,
                    entry.globally_reachable,
                    entry.reserved_by_protocol,
                ];
                for (column, got) in flags.iter().enumerate() {
                    assert_eq!(*got, flag(&f[5 + column]), "{line} column {column}");
                }
            }
        }
        assert!(entries.next().is_none(), "table longer than CSV");
        assert!(rows >= 25);
    }

    #[test]
    fn ipv4_table_matches_the_csv_snapshot() {
        check(
            include_str!("../data/iana-ipv4-special-registry.csv"),
            &IPV4_SPECIAL,
        );
    }

    #[test]
    fn ipv6_table_matches_the_csv_snapshot() {
        check(
            include_str!("../data/iana-ipv6-special-registry.csv"),
            &IPV6_SPECIAL,
        );
    }

    #[test]
    fn lookup_prefers_the_most_specific_row() {
        let name = |s: &str| lookup(s.parse().unwrap()).map(|e| e.name);
        assert_eq!(name("0.0.0.0"), Some("\"This host on this network\""));
        assert_eq!(name("0.0.0.1"), Some("\"This network\""));
        assert_eq!(name("192.0.0.9"), Some("Port Control Protocol Anycast"));
        assert_eq!(name("192.0.0.100"), Some("IETF Protocol Assignments"));
        assert_eq!(name("2001::1"), Some("TEREDO"));
        assert_eq!(name("2001:1::4"), Some("IETF Protocol Assignments"));
        // Deprecated rows give way to their parent, or to no row at all.
        assert_eq!(name("2001:10::1"), Some("IETF Protocol Assignments"));
        assert_eq!(name("192.88.99.1"), None);
        assert_eq!(name("192.88.99.2"), Some("6a44-relay anycast address"));
        assert_eq!(name("8.8.8.8"), None);
        assert_eq!(name("ff02::1"), Some("Multicast"));
        let chain: Vec<_> = matching("192.0.0.9".parse().unwrap())
            .map(|e| e.block.to_string())
            .collect();
        assert_eq!(chain, ["192.0.0.0/24", "192.0.0.9/32"]);
    }

    /// The indexed lookup against a plain scan of every row, at every row's edges and at
    /// pseudo-random addresses.
    #[test]
    fn indexed_lookup_equals_a_full_scan() {
        let scan = |ip: IpAddr| {
            IPV4_SPECIAL
                .iter()
                .chain(&IPV6_SPECIAL)
                .chain(&OTHER_BLOCKS)
                .filter(|e| e.block.contains(ip) && e.globally_reachable != Flag::Unset)
                .max_by_key(|e| e.block.len())
        };
        let mut addresses = Vec::new();
        for entry in IPV4_SPECIAL
            .iter()
            .chain(&IPV6_SPECIAL)
            .chain(&OTHER_BLOCKS)
        {
            for edge in [entry.block.first(), entry.block.last()] {
                addresses.push(edge);
                match edge {
                    IpAddr::V4(v4) => {
                        addresses.push(v4.to_bits().wrapping_add(1).to_be_bytes().into());
                        addresses.push(v4.to_bits().wrapping_sub(1).to_be_bytes().into());
                    }
                    IpAddr::V6(v6) => {
                        addresses.push(v6.to_bits().wrapping_add(1).to_be_bytes().into());
                        addresses.push(v6.to_bits().wrapping_sub(1).to_be_bytes().into());
                    }
                }
            }
        }
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            addresses.push(IpAddr::V4((state as u32).into()));
            let top = [0u16, 0x64, 0x100, 0x2001, 0x2002, 0xfe80, 0xff02][(state % 7) as usize];
            let bits =
                (u128::from(top) << 112) | (u128::from(state) << 40) | u128::from(state >> 50);
            addresses.push(IpAddr::V6(bits.into()));
        }
        for ip in addresses {
            assert_eq!(lookup(ip), scan(ip), "{ip}");
        }
    }
}
