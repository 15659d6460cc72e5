//! Anti-spoofing ingress filters (BCP 38 / BCP 84, RFC 1812 §5.3.7) for nftables, iptables,
//! Cisco IOS and Junos: drop martian and loopback sources arriving on real interfaces, drop
//! loopback destinations arriving anywhere but `lo` (RFC 1122 §3.2.1.3), with the two on-link
//! exceptions hosts need (a DHCP client's 0.0.0.0 source; IPv6 duplicate address detection and
//! MLD from `::`), plus optional bogon prefixes from a file.
//!
//! The prefixes are the source rules of `loopscope-addr` written as prefixes; a unit test checks
//! every prefix against `loopscope_addr::martian::martian_source` so the two cannot drift apart.

use std::fmt::Write as _;
use std::net::IpAddr;

use crate::CaptureError;
use crate::urpf::parse_prefix;

/// Output dialects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AclFormat {
    Nftables,
    Iptables,
    CiscoIos,
    Junos,
}

impl AclFormat {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "nftables" | "nft" => Some(AclFormat::Nftables),
            "iptables" => Some(AclFormat::Iptables),
            "cisco-ios" | "ios" | "cisco" => Some(AclFormat::CiscoIos),
            "junos" | "juniper" => Some(AclFormat::Junos),
            _ => None,
        }
    }
}

/// A prefix and why it is filtered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prefix {
    pub address: IpAddr,
    pub len: u8,
    pub why: String,
}

impl Prefix {
    fn new(text: &str, why: &str) -> Self {
        // The built-in list is static and tested; fall back to a host route rather than panic.
        let (address, len) = parse_prefix(text).unwrap_or((IpAddr::from([0, 0, 0, 0]), 32));
        Prefix {
            address,
            len,
            why: why.to_string(),
        }
    }
    pub fn is_v4(&self) -> bool {
        self.address.is_ipv4()
    }
    /// `127.0.0.0/8`, `::ffff:0:0/96`: IPv4-mapped prefixes in hex, since router dialects do
    /// not all take the dotted `::ffff:0.0.0.0` form Rust prints.
    pub fn cidr(&self) -> String {
        match self.address {
            IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() => {
                let segments = v6.segments();
                format!("::ffff:{:x}:{:x}/{}", segments[6], segments[7], self.len)
            }
            address => format!("{address}/{}", self.len),
        }
    }
    /// Cisco IPv4 wildcard form: `127.0.0.0 0.255.255.255`, `host 1.2.3.4`.
    fn cisco_v4(&self) -> String {
        if self.len == 32 {
            return format!("host {}", self.address);
        }
        let wildcard = if self.len == 0 {
            u32::MAX
        } else {
            u32::MAX >> self.len
        };
        format!("{} {}", self.address, std::net::Ipv4Addr::from(wildcard))
    }
}

/// Martian source prefixes, as RFC 1812 §5.3.7, RFC 4291 and the IANA special-purpose registries
/// (via loopscope-addr) define them.
pub fn martian_source_prefixes() -> Vec<Prefix> {
    [
        ("0.0.0.0/8", "\"this network\" (RFC 1122 3.2.1.3)"),
        ("127.0.0.0/8", "loopback (RFC 1122 3.2.1.3)"),
        ("224.0.0.0/4", "multicast as source (RFC 1812 5.3.7)"),
        (
            "240.0.0.0/4",
            "class E and limited broadcast (RFC 1812 5.3.7)",
        ),
        ("192.0.2.0/24", "documentation TEST-NET-1 (RFC 5737)"),
        ("198.51.100.0/24", "documentation TEST-NET-2 (RFC 5737)"),
        ("203.0.113.0/24", "documentation TEST-NET-3 (RFC 5737)"),
        (
            "::/96",
            "unspecified, loopback and IPv4-compatible (RFC 4291 2.5.2-2.5.5.1)",
        ),
        (
            "::ffff:0:0/96",
            "IPv4-mapped on the wire (RFC 4291 2.5.5.2)",
        ),
        ("ff00::/8", "multicast as source (RFC 4291 2.7)"),
        ("2001:db8::/32", "documentation (RFC 3849)"),
        ("3fff::/20", "documentation (RFC 9637)"),
    ]
    .into_iter()
    .map(|(prefix, why)| Prefix::new(prefix, why))
    .collect()
}

/// Reads a bogon list: one prefix per line, `#` comments, extra words ignored (so Team Cymru's
/// and similar lists load as they are).
pub fn parse_bogons(text: &str) -> Result<Vec<Prefix>, CaptureError> {
    let mut prefixes = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        let Some(word) = line.split_whitespace().next() else {
            continue;
        };
        let (address, len) = parse_prefix(word).ok_or_else(|| {
            CaptureError::Usage(format!(
                "bogons line {}: '{word}' is not a prefix (e.g. 100.64.0.0/10)",
                number + 1
            ))
        })?;
        prefixes.push(Prefix {
            address,
            len,
            why: "bogon (from file)".into(),
        });
    }
    Ok(prefixes)
}

#[derive(Debug, Clone, Default)]
pub struct AclOptions {
    /// Filter only packets arriving on this interface (all non-loopback ones otherwise).
    pub interface: Option<String>,
    pub bogons: Vec<Prefix>,
    /// Name of the table/chain/ACL/filter.
    pub name: String,
}

/// Generates the filter text.
pub fn generate(format: AclFormat, options: &AclOptions) -> String {
    let mut prefixes = martian_source_prefixes();
    prefixes.extend(options.bogons.iter().cloned());
    match format {
        AclFormat::Nftables => nftables(&prefixes, options),
        AclFormat::Iptables => iptables(&prefixes, options),
        AclFormat::CiscoIos => cisco(&prefixes, options),
        AclFormat::Junos => junos(&prefixes, options),
    }
}

const HEADER: &str =
    "loopscope acl: anti-spoofing ingress filter (BCP 38/84, RFC 1812 5.3.7, RFC 3704)";

fn nftables(prefixes: &[Prefix], options: &AclOptions) -> String {
    let mut out = String::new();
    let join = |v4: bool| {
        prefixes
            .iter()
            .filter(|prefix| prefix.is_v4() == v4)
            .map(|prefix| format!("\t\t\t{}, # {}", prefix.cidr(), prefix.why))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let _ = writeln!(out, "# {HEADER}");
    let _ = writeln!(
        out,
        "# Load with: nft -f FILE   (check first with: nft -c -f FILE)"
    );
    let _ = writeln!(out, "table inet {} {{", options.name);
    for (set, kind, v4) in [
        ("martian_v4", "ipv4_addr", true),
        ("martian_v6", "ipv6_addr", false),
    ] {
        let _ = writeln!(out, "\tset {set} {{");
        let _ = writeln!(out, "\t\ttype {kind}");
        // auto-merge: bogon lists may overlap the built-in prefixes.
        let _ = writeln!(out, "\t\tflags interval");
        let _ = writeln!(out, "\t\tauto-merge");
        let _ = writeln!(out, "\t\telements = {{\n{}\n\t\t}}", join(v4));
        let _ = writeln!(out, "\t}}");
    }
    let _ = writeln!(out, "\tchain ingress_antispoof {{");
    let _ = writeln!(
        out,
        "\t\t# raw priority: before conntrack and routing, like the kernel's own martian check"
    );
    let _ = writeln!(
        out,
        "\t\ttype filter hook prerouting priority raw; policy accept;"
    );
    let _ = writeln!(out, "\t\tiif \"lo\" accept");
    if let Some(interface) = &options.interface {
        let _ = writeln!(out, "\t\tiifname != \"{interface}\" accept");
    }
    let _ = writeln!(
        out,
        "\t\tip saddr 0.0.0.0 udp sport 68 udp dport 67 accept comment \"DHCP client before it has an address\""
    );
    let _ = writeln!(
        out,
        "\t\tip6 saddr :: icmpv6 type {{ nd-neighbor-solicit, mld-listener-report, mld2-listener-report }} accept comment \"DAD and MLD from ::\""
    );
    let _ = writeln!(
        out,
        "\t\tip saddr @martian_v4 counter drop comment \"martian source\""
    );
    let _ = writeln!(
        out,
        "\t\tip6 saddr @martian_v6 counter drop comment \"martian source\""
    );
    let _ = writeln!(
        out,
        "\t\tip daddr 127.0.0.0/8 counter drop comment \"loopback destination off lo\""
    );
    let _ = writeln!(
        out,
        "\t\tip6 daddr ::1 counter drop comment \"loopback destination off lo\""
    );
    let _ = writeln!(out, "\t}}");
    let _ = writeln!(out, "}}");
    out
}

fn iptables(prefixes: &[Prefix], options: &AclOptions) -> String {
    let chain = options.name.to_ascii_uppercase();
    let mut out = String::new();
    let _ = writeln!(out, "#!/bin/sh");
    let _ = writeln!(out, "# {HEADER}");
    let _ = writeln!(
        out,
        "# Run as root: sh FILE. Rules go in the raw table's PREROUTING, before conntrack."
    );
    let _ = writeln!(out, "set -e");
    for (tool, v4) in [("iptables", true), ("ip6tables", false)] {
        let _ = writeln!(out, "\n# IPv{}", if v4 { 4 } else { 6 });
        let _ = writeln!(out, "{tool} -w -t raw -N {chain}");
        let jump_if = options
            .interface
            .as_ref()
            .map_or(String::new(), |interface| format!(" -i {interface}"));
        let _ = writeln!(out, "{tool} -w -t raw -A PREROUTING{jump_if} -j {chain}");
        let _ = writeln!(out, "{tool} -w -t raw -A {chain} -i lo -j RETURN");
        if v4 {
            let _ = writeln!(
                out,
                "{tool} -w -t raw -A {chain} -s 0.0.0.0/32 -p udp --sport 68 --dport 67 -j RETURN"
            );
        } else {
            for icmp_type in ["135", "143", "131"] {
                let _ = writeln!(
                    out,
                    "{tool} -w -t raw -A {chain} -s ::/128 -p ipv6-icmp --icmpv6-type {icmp_type} -j RETURN"
                );
            }
        }
        for prefix in prefixes.iter().filter(|prefix| prefix.is_v4() == v4) {
            let _ = writeln!(
                out,
                "{tool} -w -t raw -A {chain} -s {} -m comment --comment \"martian source: {}\" -j DROP",
                prefix.cidr(),
                prefix.why.replace('"', "'")
            );
        }
        let loopback = if v4 { "127.0.0.0/8" } else { "::1/128" };
        let _ = writeln!(
            out,
            "{tool} -w -t raw -A {chain} -d {loopback} -m comment --comment \"loopback destination off lo\" -j DROP"
        );
    }
    out
}

fn cisco(prefixes: &[Prefix], options: &AclOptions) -> String {
    let name = options.name.to_ascii_uppercase().replace('_', "-");
    let mut out = String::new();
    let _ = writeln!(out, "! {HEADER}");
    let _ = writeln!(out, "ip access-list extended {name}-IN");
    let _ = writeln!(
        out,
        " remark martian and loopback sources, loopback destinations"
    );
    let _ = writeln!(
        out,
        " permit udp host 0.0.0.0 eq bootpc host 255.255.255.255 eq bootps"
    );
    for prefix in prefixes.iter().filter(|prefix| prefix.is_v4()) {
        let _ = writeln!(out, " remark {}", prefix.why);
        let _ = writeln!(out, " deny ip {} any log", prefix.cisco_v4());
    }
    let _ = writeln!(out, " deny ip any 127.0.0.0 0.255.255.255 log");
    let _ = writeln!(out, " permit ip any any");
    let _ = writeln!(out, "!");
    let _ = writeln!(out, "ipv6 access-list {name}-IN6");
    let _ = writeln!(out, " permit icmp host :: any nd-ns");
    let _ = writeln!(out, " permit icmp host :: any mld-report");
    for prefix in prefixes.iter().filter(|prefix| !prefix.is_v4()) {
        let _ = writeln!(out, " remark {}", prefix.why);
        let _ = writeln!(out, " deny ipv6 {} any log", prefix.cidr());
    }
    let _ = writeln!(out, " deny ipv6 any host ::1 log");
    let _ = writeln!(out, " permit ipv6 any any");
    let _ = writeln!(out, "!");
    let interface = options.interface.as_deref().unwrap_or("GigabitEthernet0/0");
    let _ = writeln!(out, "interface {interface}");
    let _ = writeln!(out, " ip access-group {name}-IN in");
    let _ = writeln!(out, " ipv6 traffic-filter {name}-IN6 in");
    let _ = writeln!(out, " ip verify unicast source reachable-via rx");
    let _ = writeln!(out, "!");
    out
}

fn junos(prefixes: &[Prefix], options: &AclOptions) -> String {
    let name = options.name.to_ascii_uppercase().replace('_', "-");
    let mut out = String::new();
    let _ = writeln!(out, "/* {HEADER} */");
    let _ = writeln!(out, "firewall {{");
    for (family, v4) in [("inet", true), ("inet6", false)] {
        let filter = if v4 {
            format!("{name}-IN")
        } else {
            format!("{name}-IN6")
        };
        let _ = writeln!(out, "    family {family} {{");
        let _ = writeln!(out, "        filter {filter} {{");
        if v4 {
            let _ = writeln!(
                out,
                "            term dhcp-discover {{\n                from {{\n                    source-address 0.0.0.0/32;\n                    protocol udp;\n                    source-port 68;\n                    destination-port 67;\n                }}\n                then accept;\n            }}"
            );
        } else {
            let _ = writeln!(
                out,
                "            term dad-and-mld {{\n                from {{\n                    source-address ::/128;\n                    next-header icmp6;\n                    icmp-type [ neighbor-solicit membership-report ];\n                }}\n                then accept;\n            }}"
            );
        }
        let _ = writeln!(out, "            term martian-source {{");
        let _ = writeln!(out, "                from {{");
        let _ = writeln!(out, "                    source-address {{");
        for prefix in prefixes.iter().filter(|prefix| prefix.is_v4() == v4) {
            let _ = writeln!(
                out,
                "                        {}; /* {} */",
                prefix.cidr(),
                prefix.why
            );
        }
        let _ = writeln!(out, "                    }}");
        let _ = writeln!(out, "                }}");
        let _ = writeln!(
            out,
            "                then {{\n                    count martian-source;\n                    syslog;\n                    discard;\n                }}"
        );
        let _ = writeln!(out, "            }}");
        let loopback = if v4 { "127.0.0.0/8" } else { "::1/128" };
        let _ = writeln!(
            out,
            "            term loopback-destination {{\n                from {{\n                    destination-address {{\n                        {loopback};\n                    }}\n                }}\n                then {{\n                    count loopback-destination;\n                    discard;\n                }}\n            }}"
        );
        let _ = writeln!(
            out,
            "            term rest {{\n                then accept;\n            }}"
        );
        let _ = writeln!(out, "        }}");
        let _ = writeln!(out, "    }}");
    }
    let _ = writeln!(out, "}}");
    let interface = options.interface.as_deref().unwrap_or("ge-0/0/0");
    let _ = writeln!(
        out,
        "interfaces {{\n    {interface} {{\n        unit 0 {{\n            family inet {{\n                rpf-check;\n                filter {{\n                    input {name}-IN;\n                }}\n            }}\n            family inet6 {{\n                rpf-check;\n                filter {{\n                    input {name}-IN6;\n                }}\n            }}\n        }}\n    }}\n}}"
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use loopscope_addr::martian::martian_source;

    /// Every built-in prefix is martian by loopscope-addr's rules at its first and last address.
    #[test]
    fn prefixes_agree_with_the_address_rules() {
        for prefix in martian_source_prefixes() {
            let last = match prefix.address {
                IpAddr::V4(v4) => {
                    let host = if prefix.len == 32 {
                        0
                    } else {
                        u32::MAX >> prefix.len
                    };
                    IpAddr::V4((u32::from(v4) | host).into())
                }
                IpAddr::V6(v6) => {
                    let host = if prefix.len == 128 {
                        0
                    } else {
                        u128::MAX >> prefix.len
                    };
                    IpAddr::V6((u128::from(v6) | host).into())
                }
            };
            // ::/96 starts with :: (unspecified) and ends with ::255.255.255.255.
            for address in [prefix.address, last] {
                assert!(
                    martian_source(address).is_some(),
                    "{address} (from {}) is not a martian source for loopscope-addr",
                    prefix.cidr()
                );
            }
        }
    }

    #[test]
    fn cisco_wildcards() {
        assert_eq!(
            Prefix::new("127.0.0.0/8", "").cisco_v4(),
            "127.0.0.0 0.255.255.255"
        );
        assert_eq!(Prefix::new("192.0.2.1/32", "").cisco_v4(), "host 192.0.2.1");
    }

    #[test]
    fn bogons_file() {
        let bogons = parse_bogons("# team cymru\n100.64.0.0/10 shared\n\n10.0.0.0/8\n").unwrap();
        assert_eq!(bogons.len(), 2);
        assert_eq!(bogons[0].cidr(), "100.64.0.0/10");
        assert!(parse_bogons("10.0.0.0/33").is_err());
    }
}
