//! Anti-spoofing ingress filters (BCP 38 / BCP 84, RFC 1812 §5.3.7) for nftables, iptables,
//! Cisco IOS and Junos: drop martian and loopback sources arriving on real interfaces, drop
//! loopback destinations arriving anywhere but `lo` (RFC 1122 §3.2.1.3), with the two on-link
//! exceptions hosts need (a DHCP client's 0.0.0.0 source; IPv6 duplicate address detection and
//! MLD from `::`), plus optional bogon prefixes from a file.
//!
//! The prefixes are the source rules of `loopscope-addr` written as prefixes; a unit test checks
//! every prefix against `loopscope_addr::martian::martian_source` so the two cannot drift apart.
//!
//! What reaches a shell script or an nft file is checked here, not by the caller: the filter
//! name and the interface name are refused unless they are plain identifiers
//! ([`AclError::Name`], [`AclError::Interface`]), so no input can inject a command or a rule.
//! A prefix that would drop the traffic of the host's own subnet or gateway (an address of the
//! host that will load the filter lies inside it) is left out, or kept on request, and reported
//! ([`Conflict`]).

use std::borrow::Cow;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;

use loopscope_addr::Prefix;
use loopscope_addr::prefix::PrefixError;
use serde::Serialize;

/// Output dialects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AclFormat {
    /// nftables (`nft -f`).
    Nftables,
    /// iptables (`iptables-restore`).
    Iptables,
    /// Cisco IOS extended access list.
    CiscoIos,
    /// Junos firewall filter.
    Junos,
}

impl AclFormat {
    /// Reads a `--format` value (`nftables`/`nft`, `iptables`, `cisco-ios`/`ios`/`cisco`,
    /// `junos`/`juniper`).
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "nftables" | "nft" => Some(AclFormat::Nftables),
            "iptables" => Some(AclFormat::Iptables),
            "cisco-ios" | "ios" | "cisco" => Some(AclFormat::CiscoIos),
            "junos" | "juniper" => Some(AclFormat::Junos),
            _ => None,
        }
    }

    /// Whether the filter is loaded on a Linux host (nftables, iptables) rather than a router.
    pub fn is_linux(self) -> bool {
        matches!(self, AclFormat::Nftables | AclFormat::Iptables)
    }
}

/// Why a filter could not be generated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AclError {
    #[error(
        "filter name '{0}' is not allowed: 1-{MAX_NAME_LEN} letters, digits, '_' or '-', starting with a letter"
    )]
    /// A filter name that could break out of the generated text.
    Name(String),
    #[error(
        "'{0}' is not an interface name (letters, digits, '.', '_', '-'; routers also '/' and ':'; at most {1} characters)"
    )]
    /// An interface name that could break out of the generated text; the number is the longest
    /// allowed.
    Interface(String, usize),
    #[error("bogons line {line}: {source}")]
    /// A line of the bogons file that is not a prefix.
    Bogon {
        /// Its line number, from 1.
        line: usize,
        /// What is wrong with it.
        source: PrefixError,
    },
}

/// The longest filter name: iptables chain names hold 28 characters (XT_EXTENSION_MAXNAMELEN).
pub const MAX_NAME_LEN: usize = 28;
/// Linux interface names hold 15 characters (IFNAMSIZ - 1).
const MAX_LINUX_INTERFACE_LEN: usize = 15;
const MAX_ROUTER_INTERFACE_LEN: usize = 64;

/// Checks a filter name: it becomes an nft table, an iptables chain, an IOS ACL or a Junos
/// filter name, so only a plain identifier is accepted (never quotes, spaces, `;`, `$` or a
/// leading `-` that the shell or iptables would read as more than a name).
pub fn check_name(name: &str) -> Result<(), AclError> {
    let plain = name.len() <= MAX_NAME_LEN
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if plain {
        Ok(())
    } else {
        Err(AclError::Name(name.to_string()))
    }
}

/// Checks an interface name for the dialect: Linux names (`eth0`, `veth-a.100`, `br_lan`), or
/// router names with `/` and `:` (`GigabitEthernet0/0/1`, `ge-0/0/0.0`).
pub fn check_interface(format: AclFormat, interface: &str) -> Result<(), AclError> {
    let max = if format.is_linux() {
        MAX_LINUX_INTERFACE_LEN
    } else {
        MAX_ROUTER_INTERFACE_LEN
    };
    let allowed = |c: char| {
        c.is_ascii_alphanumeric()
            || matches!(c, '.' | '_' | '-')
            || (!format.is_linux() && matches!(c, '/' | ':'))
    };
    let plain = !interface.is_empty()
        && interface.len() <= max
        && interface.starts_with(|c: char| c.is_ascii_alphanumeric())
        && interface.chars().all(allowed)
        && interface != "."
        && interface != "..";
    if plain {
        Ok(())
    } else {
        Err(AclError::Interface(interface.to_string(), max))
    }
}

/// A prefix to drop, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclEntry {
    /// The prefix.
    pub prefix: Prefix,
    /// Why it is dropped (the registry row or the bogons file's comment).
    pub why: Cow<'static, str>,
}

impl AclEntry {
    /// An IPv4 prefix (the dialects keep the families apart).
    pub fn is_v4(&self) -> bool {
        matches!(self.prefix, Prefix::V4 { .. })
    }

    /// `127.0.0.0/8`, `::ffff:0:0/96`: IPv4-mapped prefixes in hex, since router dialects do
    /// not all take the dotted `::ffff:0.0.0.0` form Rust prints.
    pub fn cidr(&self) -> String {
        match self.prefix.first() {
            IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() => {
                let segments = v6.segments();
                format!(
                    "::ffff:{:x}:{:x}/{}",
                    segments[6],
                    segments[7],
                    self.prefix.len()
                )
            }
            _ => self.prefix.to_string(),
        }
    }

    /// Cisco IPv4 wildcard form: `127.0.0.0 0.255.255.255`, `host 1.2.3.4`.
    fn cisco_v4(&self) -> String {
        let len = self.prefix.len();
        if len == 32 {
            return format!("host {}", self.prefix.first());
        }
        let wildcard = if len == 0 { u32::MAX } else { u32::MAX >> len };
        format!("{} {}", self.prefix.first(), Ipv4Addr::from(wildcard))
    }
}

/// What an address of this host is: its own, or the gateway it routes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HostRole {
    /// One of the host's own addresses.
    Address,
    /// The host's default gateway.
    Gateway,
}

/// An address the host that loads the filter depends on, and the interface it sits on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostAddress {
    /// The address.
    pub address: IpAddr,
    /// The interface it is on.
    pub interface: String,
    /// The host's own, or its gateway.
    pub role: HostRole,
}

/// A prefix that contains an address of the host (or its gateway): dropping it as a source
/// would cut the host off from its own subnet or gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Conflict {
    /// The prefix, as text.
    pub prefix: String,
    /// Why the filter would drop it.
    pub why: String,
    /// The host's address inside it.
    pub address: IpAddr,
    /// The interface that address is on.
    pub interface: String,
    /// The host's own, or its gateway.
    pub role: HostRole,
    /// Kept in the filter anyway (`keep_conflicting`), or left out.
    pub kept: bool,
}

/// Martian source prefixes, as RFC 1812 §5.3.7, RFC 4291 and the IANA special-purpose registries
/// (via loopscope-addr) define them.
pub fn martian_source_prefixes() -> Vec<AclEntry> {
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
    .filter_map(|(prefix, why)| {
        // A static, tested list: every line parses (`prefixes_agree_with_the_address_rules`).
        Some(AclEntry {
            prefix: prefix.parse().ok()?,
            why: Cow::Borrowed(why),
        })
    })
    .collect()
}

/// Reads a bogon list: one prefix per line, `#` comments, extra words ignored (so Team Cymru's
/// and similar lists load as they are).
pub fn parse_bogons(text: &str) -> Result<Vec<AclEntry>, AclError> {
    let mut prefixes = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        let Some(word) = line.split_whitespace().next() else {
            continue;
        };
        let prefix = Prefix::from_str(word).map_err(|source| AclError::Bogon {
            line: number + 1,
            source,
        })?;
        prefixes.push(AclEntry {
            prefix,
            why: Cow::Borrowed("bogon (from file)"),
        });
    }
    Ok(prefixes)
}

/// What to generate.
#[derive(Debug, Clone, Default)]
pub struct AclOptions {
    /// Filter only packets arriving on this interface (all non-loopback ones otherwise).
    pub interface: Option<String>,
    /// Prefixes to drop besides the registries' (from `--bogons FILE`).
    pub bogons: Vec<AclEntry>,
    /// Name of the table/chain/ACL/filter.
    pub name: String,
    /// Addresses and gateways of the host that will load the filter (see [`Conflict`]).
    pub host: Vec<HostAddress>,
    /// Keep a prefix that contains one of `host` (reported all the same).
    pub keep_conflicting: bool,
}

/// A generated filter.
#[derive(Debug, Clone)]
pub struct Acl {
    /// The filter, in the chosen dialect, ready to load.
    pub text: String,
    /// Every prefix the filter drops as a source.
    pub prefixes: Vec<AclEntry>,
    /// Prefixes that contain an address of the host, left out or kept.
    pub conflicts: Vec<Conflict>,
}

/// Generates the filter text, after checking every name that reaches it.
pub fn generate(format: AclFormat, options: &AclOptions) -> Result<Acl, AclError> {
    check_name(&options.name)?;
    if let Some(interface) = &options.interface {
        check_interface(format, interface)?;
    }
    let mut prefixes = Vec::new();
    let mut conflicts = Vec::new();
    for entry in martian_source_prefixes()
        .into_iter()
        .chain(options.bogons.iter().cloned())
    {
        let hit = options.host.iter().find(|host| {
            entry.prefix.contains(host.address)
                && options
                    .interface
                    .as_ref()
                    .is_none_or(|interface| *interface == host.interface)
        });
        if let Some(host) = hit {
            conflicts.push(Conflict {
                prefix: entry.cidr(),
                why: entry.why.to_string(),
                address: host.address,
                interface: host.interface.clone(),
                role: host.role,
                kept: options.keep_conflicting,
            });
            if !options.keep_conflicting {
                continue;
            }
        }
        prefixes.push(entry);
    }
    let text = match format {
        AclFormat::Nftables => nftables(&prefixes, options),
        AclFormat::Iptables => iptables(&prefixes, options),
        AclFormat::CiscoIos => cisco(&prefixes, options),
        AclFormat::Junos => junos(&prefixes, options),
    };
    Ok(Acl {
        text,
        prefixes,
        conflicts,
    })
}

const HEADER: &str =
    "loopscope acl: anti-spoofing ingress filter (BCP 38/84, RFC 1812 5.3.7, RFC 3704)";

fn nftables(prefixes: &[AclEntry], options: &AclOptions) -> String {
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

fn iptables(prefixes: &[AclEntry], options: &AclOptions) -> String {
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

fn cisco(prefixes: &[AclEntry], options: &AclOptions) -> String {
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

fn junos(prefixes: &[AclEntry], options: &AclOptions) -> String {
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
                prefix.why.replace('"', "'")
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
        let prefixes = martian_source_prefixes();
        assert_eq!(prefixes.len(), 12, "every line of the built-in list parses");
        for entry in prefixes {
            // ::/96 starts with :: (unspecified) and ends with ::255.255.255.255.
            for address in [entry.prefix.first(), entry.prefix.last()] {
                assert!(
                    martian_source(address).is_some(),
                    "{address} (from {}) is not a martian source for loopscope-addr",
                    entry.cidr()
                );
            }
        }
    }

    fn entry(text: &str) -> AclEntry {
        AclEntry {
            prefix: text.parse().unwrap(),
            why: Cow::Borrowed(""),
        }
    }

    #[test]
    fn cisco_wildcards_and_mapped_prefixes_in_hex() {
        assert_eq!(entry("127.0.0.0/8").cisco_v4(), "127.0.0.0 0.255.255.255");
        assert_eq!(entry("192.0.2.1/32").cisco_v4(), "host 192.0.2.1");
        assert_eq!(entry("::ffff:0:0/96").cidr(), "::ffff:0:0/96");
    }

    #[test]
    fn bogons_file() {
        let bogons = parse_bogons("# team cymru\n100.64.0.0/10 shared\n\n10.0.0.0/8\n").unwrap();
        assert_eq!(bogons.len(), 2);
        assert_eq!(bogons[0].cidr(), "100.64.0.0/10");
        assert!(matches!(
            parse_bogons("10.0.0.0/8\n10.0.0.0/33"),
            Err(AclError::Bogon { line: 2, .. })
        ));
    }

    fn options(name: &str, interface: Option<&str>) -> AclOptions {
        AclOptions {
            name: name.to_string(),
            interface: interface.map(str::to_string),
            ..AclOptions::default()
        }
    }

    /// The generator itself refuses what would reach a shell or an nft file as code, whatever
    /// the caller checked: names and interfaces carrying quotes, spaces, `;`, `$(...)`, a
    /// newline or a leading `-`.
    #[test]
    fn names_and_interfaces_that_could_inject_are_refused() {
        for format in [
            AclFormat::Nftables,
            AclFormat::Iptables,
            AclFormat::CiscoIos,
            AclFormat::Junos,
        ] {
            for name in [
                "",
                "x; rm -rf /",
                "x\" accept",
                "$(reboot)",
                "-j ACCEPT",
                "a\nb",
                "_leading",
                "a_name_that_is_longer_than_28_chars",
            ] {
                assert!(
                    matches!(
                        generate(format, &options(name, None)),
                        Err(AclError::Name(_))
                    ),
                    "{format:?} took name {name:?}"
                );
            }
            for interface in [
                "",
                "eth0\" accept",
                "eth0; reboot",
                "eth 0",
                "-j",
                "$(id)",
                "eth0\n",
                "`id`",
                "..",
            ] {
                assert!(
                    matches!(
                        generate(format, &options("ok", Some(interface))),
                        Err(AclError::Interface(..))
                    ),
                    "{format:?} took interface {interface:?}"
                );
            }
        }
        for good in ["eth0", "veth-a.100", "br_lan", "enp0s31f6"] {
            assert!(generate(AclFormat::Iptables, &options("ok", Some(good))).is_ok());
        }
        // '/' is a router interface (GigabitEthernet0/0/1), never a Linux one.
        assert!(generate(AclFormat::CiscoIos, &options("ok", Some("Gi0/0/1"))).is_ok());
        assert!(generate(AclFormat::Nftables, &options("ok", Some("Gi0/0/1"))).is_err());
        assert!(
            generate(
                AclFormat::Nftables,
                &options("ok", Some("sixteen_chars_xx"))
            )
            .is_err()
        );
    }

    /// A host on 192.0.2.5/24 (TEST-NET-1) would drop its own subnet: the prefix is left out
    /// and reported, or kept on request; an address on another interface than the one the
    /// filter names does not count.
    #[test]
    fn a_prefix_holding_a_host_address_is_left_out_and_reported() {
        let host = vec![
            HostAddress {
                address: "192.0.2.5".parse().unwrap(),
                interface: "eth0".into(),
                role: HostRole::Address,
            },
            HostAddress {
                address: "2001:db8::1".parse().unwrap(),
                interface: "eth1".into(),
                role: HostRole::Gateway,
            },
        ];
        let mut opts = AclOptions {
            host,
            ..options("ok", None)
        };
        let acl = generate(AclFormat::Nftables, &opts).unwrap();
        let cidrs: Vec<String> = acl.prefixes.iter().map(AclEntry::cidr).collect();
        assert!(!cidrs.contains(&"192.0.2.0/24".to_string()));
        assert!(!cidrs.contains(&"2001:db8::/32".to_string()));
        assert!(cidrs.contains(&"198.51.100.0/24".to_string()));
        assert!(!acl.text.contains("192.0.2.0/24"), "{}", acl.text);
        assert_eq!(acl.conflicts.len(), 2);
        assert_eq!(acl.conflicts[0].prefix, "192.0.2.0/24");
        assert_eq!(acl.conflicts[0].address.to_string(), "192.0.2.5");
        assert!(!acl.conflicts[0].kept);
        assert_eq!(acl.conflicts[1].role, HostRole::Gateway);

        opts.interface = Some("eth0".into());
        let acl = generate(AclFormat::Nftables, &opts).unwrap();
        assert_eq!(acl.conflicts.len(), 1, "eth1's gateway is not behind eth0");

        opts.keep_conflicting = true;
        let acl = generate(AclFormat::Nftables, &opts).unwrap();
        assert!(acl.text.contains("192.0.2.0/24"));
        assert!(acl.conflicts[0].kept);
    }
}
