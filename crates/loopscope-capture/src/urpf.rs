//! Unicast reverse-path forwarding (RFC 3704) as a verdict, not a filter: for each packet's
//! source and arrival interface, which of the four uRPF modes would drop it.
//!
//! - strict (§2.2): the best (longest-prefix) route back to the source must leave through the
//!   interface the packet arrived on;
//! - feasible path (§2.3): any route back to the source, best or not, through the arrival
//!   interface will do (alternate paths count);
//! - loose (§2.4): any route back to the source will do, whatever the interface; a null route
//!   (blackhole, unreachable, prohibit) is no route;
//! - loose ignoring the default route (§2.4, last paragraph): as loose, but 0.0.0.0/0 and ::/0
//!   do not count.
//!
//! The table comes from the kernel (netlink, every table: `local` and `main` and policy tables),
//! from `ip -j route show table all` JSON, or from a plain `PREFIX INTERFACE` list. Lookups hash
//! each prefix length present, longest first (at most 33 or 129 probes), so a full routing table
//! costs no more per packet than a host's handful of routes.

use std::collections::HashMap;
use std::net::IpAddr;

use loopscope_addr::Prefix;
use serde::Serialize;

use crate::CaptureError;

/// What a route does with matching packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteKind {
    /// Forwards (unicast, local, broadcast, multicast ...): a path back exists.
    Forward,
    /// blackhole, unreachable, prohibit, throw: no path back (RFC 3704 §2.4 "null route").
    Null,
}

/// A route as uRPF needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The destination prefix.
    pub prefix: Prefix,
    /// Interfaces the route leaves through (several for ECMP); empty for null routes.
    pub interfaces: Vec<String>,
    /// What kind of route.
    pub kind: RouteKind,
}

/// The uRPF modes, in the order reports list them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UrpfMode {
    /// The source must route back out of the arrival interface (RFC 3704 §2.2).
    Strict,
    /// Any route back, best or not, through the arrival interface (RFC 3704 §2.3).
    FeasiblePath,
    /// Any route back at all (RFC 3704 §2.4).
    Loose,
    /// Loose, but a default route does not count.
    LooseIgnoreDefault,
}

impl UrpfMode {
    /// Every mode, in the order reports list them.
    pub const ALL: [UrpfMode; 4] = [
        UrpfMode::Strict,
        UrpfMode::FeasiblePath,
        UrpfMode::Loose,
        UrpfMode::LooseIgnoreDefault,
    ];
    /// The mode's code in output.
    pub fn code(self) -> &'static str {
        match self {
            UrpfMode::Strict => "strict",
            UrpfMode::FeasiblePath => "feasible_path",
            UrpfMode::Loose => "loose",
            UrpfMode::LooseIgnoreDefault => "loose_ignore_default",
        }
    }
}

/// Which modes drop a packet. A mode that needs the arrival interface is not judged (neither
/// drop nor pass) when the interface is unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UrpfVerdict {
    drops: [bool; 4],
    judged: [bool; 4],
}

impl UrpfVerdict {
    /// Whether `mode` drops the packet.
    pub fn drops(&self, mode: UrpfMode) -> bool {
        self.drops[mode as usize]
    }
    /// Whether `mode` could judge it (the strict and feasible modes need the arrival interface).
    pub fn judged(&self, mode: UrpfMode) -> bool {
        self.judged[mode as usize]
    }
    /// Any mode drops it.
    pub fn any_drop(&self) -> bool {
        self.drops.iter().any(|drop| *drop)
    }
    /// The modes that drop, as codes.
    pub fn dropping_modes(&self) -> Vec<&'static str> {
        UrpfMode::ALL
            .iter()
            .filter(|mode| self.drops(**mode))
            .map(|mode| mode.code())
            .collect()
    }
}

/// Routes of one family, indexed by prefix length.
#[derive(Debug, Default, Clone)]
struct FamilyTable {
    /// Prefix lengths present, longest first.
    lengths: Vec<u8>,
    /// (masked prefix, length) -> indices into `routes`.
    by_prefix: HashMap<(u128, u8), Vec<usize>>,
}

/// The routes uRPF looks up (longest prefix match).
#[derive(Debug, Default, Clone)]
pub struct RouteTable {
    routes: Vec<Route>,
    v4: FamilyTable,
    v6: FamilyTable,
}

/// An address as (bits, width) so IPv4 and IPv6 share one lookup.
fn key(address: IpAddr) -> (u128, u8) {
    match address {
        IpAddr::V4(v4) => (u128::from(u32::from(v4)), 32),
        IpAddr::V6(v6) => (u128::from(v6), 128),
    }
}

fn mask(bits: u128, width: u8, len: u8) -> u128 {
    let len = len.min(width);
    if len == 0 {
        return 0;
    }
    let keep = u32::from(width - len);
    (bits >> keep) << keep
}

impl RouteTable {
    /// A table of `routes`.
    pub fn new(routes: Vec<Route>) -> Self {
        let mut table = RouteTable {
            routes: Vec::new(),
            v4: FamilyTable::default(),
            v6: FamilyTable::default(),
        };
        for route in routes {
            table.push(route);
        }
        table
    }

    /// Adds a route.
    pub fn push(&mut self, route: Route) {
        // Prefix keeps its host bits zero, so its bits are the lookup key as they are.
        let (bits, len, family) = match route.prefix {
            Prefix::V4 { bits, len } => (u128::from(bits), len, &mut self.v4),
            Prefix::V6 { bits, len } => (bits, len, &mut self.v6),
        };
        let index = self.routes.len();
        family.by_prefix.entry((bits, len)).or_default().push(index);
        if !family.lengths.contains(&len) {
            family.lengths.push(len);
            family.lengths.sort_unstable_by(|a, b| b.cmp(a));
        }
        self.routes.push(route);
    }

    /// How many routes.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// No routes.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// Every route covering `address`, grouped by prefix length, longest first.
    fn matches(&self, address: IpAddr) -> impl Iterator<Item = (u8, &[usize])> {
        let (bits, width) = key(address);
        let family = if width == 32 { &self.v4 } else { &self.v6 };
        family.lengths.iter().filter_map(move |len| {
            family
                .by_prefix
                .get(&(mask(bits, width, *len), *len))
                .map(|indices| (*len, indices.as_slice()))
        })
    }

    /// Judges a packet from `source` that arrived on `arrival` (None when unknown).
    pub fn check(&self, source: IpAddr, arrival: Option<&str>) -> UrpfVerdict {
        let source = match source {
            // An IPv4-mapped source is looked up as the IPv4 address it names.
            IpAddr::V6(v6) => v6
                .to_ipv4_mapped()
                .map(IpAddr::V4)
                .unwrap_or(IpAddr::V6(v6)),
            other => other,
        };
        let mut best: Option<&[usize]> = None;
        let mut best_non_default: Option<&[usize]> = None;
        let mut feasible = false;
        for (len, indices) in self.matches(source) {
            if best.is_none() {
                best = Some(indices);
            }
            if len > 0 && best_non_default.is_none() {
                best_non_default = Some(indices);
            }
            if let Some(arrival) = arrival {
                feasible |= indices.iter().any(|index| {
                    let route = &self.routes[*index];
                    route.kind == RouteKind::Forward
                        && route.interfaces.iter().any(|name| name == arrival)
                });
            }
        }
        let forwards = |indices: Option<&[usize]>| {
            indices.is_some_and(|indices| {
                indices
                    .iter()
                    .any(|index| self.routes[*index].kind == RouteKind::Forward)
            })
        };
        let strict_pass = arrival.map(|arrival| {
            best.is_some_and(|indices| {
                indices.iter().any(|index| {
                    let route = &self.routes[*index];
                    route.kind == RouteKind::Forward
                        && route.interfaces.iter().any(|name| name == arrival)
                })
            })
        });
        let mut verdict = UrpfVerdict::default();
        let mut set = |mode: UrpfMode, pass: Option<bool>| {
            if let Some(pass) = pass {
                verdict.judged[mode as usize] = true;
                verdict.drops[mode as usize] = !pass;
            }
        };
        set(UrpfMode::Strict, strict_pass);
        set(UrpfMode::FeasiblePath, arrival.map(|_| feasible));
        set(UrpfMode::Loose, Some(forwards(best)));
        set(
            UrpfMode::LooseIgnoreDefault,
            Some(forwards(best_non_default)),
        );
        verdict
    }

    /// Parses a routes file: `ip -j route show table all` JSON (one or more arrays, so the
    /// IPv4 and IPv6 dumps can be concatenated), or lines of `PREFIX INTERFACE...` (`#` starts a
    /// comment; `blackhole`, `unreachable` or `prohibit` as the interface makes a null route).
    pub fn parse(text: &str) -> Result<Self, CaptureError> {
        if text.trim_start().starts_with('[') {
            return Self::parse_ip_json(text);
        }
        let mut routes = Vec::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let mut words = line.split_whitespace();
            let prefix = words.next().unwrap_or("");
            let prefix = parse_route_prefix(prefix).ok_or_else(|| {
                CaptureError::Routes(format!(
                    "line {}: '{prefix}' is not a prefix (e.g. 10.0.0.0/8, ::1/128, default)",
                    number + 1
                ))
            })?;
            let interfaces: Vec<String> = words.map(str::to_string).collect();
            let null = interfaces.len() == 1
                && matches!(
                    interfaces[0].as_str(),
                    "blackhole" | "unreachable" | "prohibit"
                );
            if interfaces.is_empty() {
                return Err(CaptureError::Routes(format!(
                    "line {}: no interface after the prefix",
                    number + 1
                )));
            }
            routes.push(Route {
                prefix,
                interfaces: if null { Vec::new() } else { interfaces },
                kind: if null {
                    RouteKind::Null
                } else {
                    RouteKind::Forward
                },
            });
        }
        Ok(RouteTable::new(routes))
    }

    fn parse_ip_json(text: &str) -> Result<Self, CaptureError> {
        let mut routes = Vec::new();
        let stream = serde_json::Deserializer::from_str(text).into_iter::<serde_json::Value>();
        for value in stream {
            let value = value.map_err(|error| {
                CaptureError::Routes(format!("not `ip -j route` JSON: {error}"))
            })?;
            let entries = value.as_array().ok_or_else(|| {
                CaptureError::Routes("`ip -j route` JSON must be an array of routes".into())
            })?;
            for entry in entries {
                if let Some(route) = route_from_ip_json(entry)? {
                    routes.push(route);
                }
            }
        }
        Ok(RouteTable::new(routes))
    }
}

fn route_from_ip_json(entry: &serde_json::Value) -> Result<Option<Route>, CaptureError> {
    let text = |field: &str| entry.get(field).and_then(|value| value.as_str());
    let Some(destination) = text("dst") else {
        return Err(CaptureError::Routes(format!(
            "route without \"dst\": {entry}"
        )));
    };
    // `ip` writes the default route as "default" and omits /32 and /128 on host routes; the
    // family of "default" follows the gateway or, failing that, is IPv4 unless "::" shows up.
    let prefix = if destination == "default" {
        let v6 = text("gateway").is_some_and(|gateway| gateway.contains(':'))
            || entry
                .get("family")
                .and_then(|family| family.as_str())
                .is_some_and(|family| family == "inet6");
        if v6 {
            Prefix::v6([0; 8], 0)
        } else {
            Prefix::v4([0; 4], 0)
        }
    } else {
        match parse_route_prefix(destination) {
            Some(prefix) => prefix,
            // Multicast "ff00::/8" and similar parse; anything else is an unknown form.
            None => {
                return Err(CaptureError::Routes(format!(
                    "route \"dst\" '{destination}' is not a prefix"
                )));
            }
        }
    };
    let kind = match text("type") {
        Some("blackhole" | "unreachable" | "prohibit" | "throw") => RouteKind::Null,
        _ => RouteKind::Forward,
    };
    let mut interfaces = Vec::new();
    if let Some(device) = text("dev") {
        interfaces.push(device.to_string());
    }
    if let Some(hops) = entry.get("nexthops").and_then(|hops| hops.as_array()) {
        for hop in hops {
            if let Some(device) = hop.get("dev").and_then(|device| device.as_str()) {
                interfaces.push(device.to_string());
            }
        }
    }
    Ok(Some(Route {
        prefix,
        interfaces,
        kind,
    }))
}

/// `10.0.0.0/8`, `::1/128`, `192.0.2.1` (a host), `default` (IPv4 0/0), as `ip route` writes
/// them.
pub fn parse_route_prefix(text: &str) -> Option<Prefix> {
    if text == "default" {
        return Some(Prefix::v4([0; 4], 0));
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> RouteTable {
        RouteTable::parse(
            "# prefix interface\n\
             default eth0\n\
             10.0.0.0/8 eth1\n\
             10.1.0.0/16 eth2\n\
             127.0.0.0/8 lo\n\
             192.0.2.0/24 blackhole\n\
             2001:db8::/32 eth1 eth2\n",
        )
        .unwrap()
    }

    fn drops(verdict: UrpfVerdict) -> Vec<&'static str> {
        verdict.dropping_modes()
    }

    #[test]
    fn strict_wants_the_best_route_on_the_arrival_interface() {
        let table = table();
        let source: IpAddr = "10.1.2.3".parse().unwrap();
        // Best route is 10.1/16 via eth2; 10/8 via eth1 is a feasible (alternate) path.
        assert!(drops(table.check(source, Some("eth2"))).is_empty());
        assert_eq!(drops(table.check(source, Some("eth1"))), vec!["strict"]);
        assert_eq!(
            drops(table.check(source, Some("eth9"))),
            vec!["strict", "feasible_path"]
        );
    }

    #[test]
    fn loose_modes_and_the_default_route() {
        let table = table();
        // Only the default route covers 198.51.100.7.
        let verdict = table.check("198.51.100.7".parse().unwrap(), Some("eth0"));
        assert_eq!(drops(verdict), vec!["loose_ignore_default"]);
        // A null route is no route back.
        let verdict = table.check("192.0.2.9".parse().unwrap(), Some("eth0"));
        assert_eq!(
            drops(verdict),
            vec!["strict", "loose", "loose_ignore_default"]
        );
        // Spoofed loopback arriving on eth0: the best route points at lo, but the default
        // route through eth0 is a feasible path (why feasible-path alone is weak with defaults).
        let verdict = table.check("127.0.0.1".parse().unwrap(), Some("eth0"));
        assert_eq!(drops(verdict), vec!["strict"]);
        let verdict = table.check("127.0.0.1".parse().unwrap(), Some("eth1"));
        assert_eq!(drops(verdict), vec!["strict", "feasible_path"]);
    }

    #[test]
    fn unknown_interface_leaves_interface_modes_unjudged() {
        let verdict = table().check("10.1.2.3".parse().unwrap(), None);
        assert!(!verdict.judged(UrpfMode::Strict));
        assert!(!verdict.judged(UrpfMode::FeasiblePath));
        assert!(verdict.judged(UrpfMode::Loose));
        assert!(!verdict.any_drop());
    }

    #[test]
    fn ecmp_and_ipv6() {
        let table = table();
        let source: IpAddr = "2001:db8::5".parse().unwrap();
        assert!(!table.check(source, Some("eth2")).any_drop());
        // No IPv6 default in the table: an unknown IPv6 source fails every mode.
        let verdict = table.check("2001:db9::1".parse().unwrap(), Some("eth1"));
        assert_eq!(verdict.dropping_modes().len(), 4);
    }

    #[test]
    fn ip_json_routes() {
        let json = r#"[{"type":"unicast","dst":"default","gateway":"10.0.0.1","dev":"eth0","table":"main"},
            {"dst":"10.0.0.0/24","dev":"eth0","protocol":"kernel","scope":"link","prefsrc":"10.0.0.5"},
            {"type":"local","dst":"127.0.0.1","table":"local","dev":"lo"},
            {"type":"blackhole","dst":"203.0.113.0/24"}]
            [{"dst":"fe80::/64","dev":"eth0"},{"dst":"default","gateway":"fe80::1","dev":"eth0"}]"#;
        let table = RouteTable::parse(json).unwrap();
        assert_eq!(table.len(), 6);
        assert_eq!(
            table
                .check("127.0.0.1".parse().unwrap(), Some("eth0"))
                .dropping_modes(),
            vec!["strict"]
        );
        assert_eq!(
            table
                .check("2001:db8::1".parse().unwrap(), Some("eth0"))
                .dropping_modes(),
            vec!["loose_ignore_default"]
        );
        assert!(RouteTable::parse("[{\"dev\":\"x\"}]").is_err());
        assert!(RouteTable::parse("not-a-prefix eth0").is_err());
    }
}
