//! `port PORT`: who holds a port, on which addresses and families, and the traps.

use std::net::{IpAddr, ToSocketAddrs};

use loopscope_report::comma_list;
use serde::Serialize;

use crate::model::{Exposure, Family, Listener, Protocol, unmap};
use crate::{Error, Options, Snapshot, snapshot};

/// A way a port can surprise whoever relies on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TrapKind {
    /// `localhost` resolves to an address nobody holds the port on first (::1 before 127.0.0.1),
    /// while a later one works: clients that try only the first address are refused.
    LocalhostOrder,
    /// Held, but on no address that `localhost` resolves to.
    LocalhostUnreachable,
    /// Held by a user other than the one asking: you cannot stop it or take the port.
    OtherUser,
    /// Inside net.ipv4.ip_local_port_range and not reserved: the kernel may hand the port to an
    /// outgoing connection, so a service starting later can find it taken.
    Ephemeral,
}

impl TrapKind {
    /// The JSON and human name of the trap.
    pub fn name(self) -> &'static str {
        match self {
            TrapKind::LocalhostOrder => "localhost_order",
            TrapKind::LocalhostUnreachable => "localhost_unreachable",
            TrapKind::OtherUser => "other_user",
            TrapKind::Ephemeral => "ephemeral",
        }
    }
}

/// A trap found on the port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Trap {
    /// Which.
    pub trap: TrapKind,
    /// The protocol it concerns, when only one does.
    pub protocol: Option<Protocol>,
    /// In words, with the addresses or users involved.
    pub detail: String,
}

/// The host facts the traps are judged against (read from the system by [`HostFacts::read`],
/// built by hand in tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFacts {
    /// getaddrinfo("localhost") in the order clients try them.
    pub localhost: Vec<IpAddr>,
    /// net.ipv4.ip_local_port_range.
    pub ephemeral_range: Option<(u16, u16)>,
    /// net.ipv4.ip_local_reserved_ports, as ranges.
    pub reserved_ports: Vec<(u16, u16)>,
    /// The effective uid of the caller.
    pub uid: u32,
}

impl HostFacts {
    /// Reads the facts from this host: the resolver's order for `localhost`, the port ranges in
    /// /proc/sys, and the caller's uid.
    pub fn read() -> HostFacts {
        let mut localhost = Vec::new();
        // std's to_socket_addrs is getaddrinfo, keeping its (RFC 6724 / gai.conf) order.
        if let Ok(addresses) = ("localhost", 0).to_socket_addrs() {
            for address in addresses {
                if !localhost.contains(&address.ip()) {
                    localhost.push(address.ip());
                }
            }
        }
        let ephemeral_range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .ok()
            .and_then(|text| parse_port_range(&text));
        let reserved_ports = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_reserved_ports")
            .map(|text| parse_port_list(&text))
            .unwrap_or_default();
        HostFacts {
            localhost,
            ephemeral_range,
            reserved_ports,
            uid: nix::unistd::geteuid().as_raw(),
        }
    }
}

/// "32768\t60999\n" -> (32768, 60999).
pub fn parse_port_range(text: &str) -> Option<(u16, u16)> {
    let mut fields = text.split_whitespace();
    let low = fields.next()?.parse().ok()?;
    let high = fields.next()?.parse().ok()?;
    (low <= high).then_some((low, high))
}

/// "8080,9000-9010" -> [(8080, 8080), (9000, 9010)]; malformed items are skipped.
pub fn parse_port_list(text: &str) -> Vec<(u16, u16)> {
    text.trim()
        .split(',')
        .filter_map(|item| {
            let item = item.trim();
            match item.split_once('-') {
                Some((low, high)) => Some((low.trim().parse().ok()?, high.trim().parse().ok()?)),
                None => {
                    let port = item.parse().ok()?;
                    Some((port, port))
                }
            }
        })
        .collect()
}

/// What `port` found about one port number.
#[derive(Debug, Clone)]
pub struct PortReport {
    /// The port.
    pub port: u16,
    /// The sockets bound to it.
    pub holders: Vec<Listener>,
    /// The traps found.
    pub traps: Vec<Trap>,
    /// The host facts they were judged against.
    pub facts: HostFacts,
    /// Where the sockets were read from (`sock_diag`, `proc`).
    pub snapshot_source: &'static str,
    /// Processes whose file descriptors could not be read (holders may be missing).
    pub processes_unreadable: usize,
    /// Anything the reader should know (a fallback source, a guess).
    pub notes: Vec<String>,
}

/// Looks up `port` in a fresh snapshot and judges the traps against this host.
pub fn inspect(port: u16, options: &Options) -> Result<PortReport, Error> {
    let snapshot = snapshot(options)?;
    Ok(judge_port(port, snapshot, HostFacts::read()))
}

/// The pure part of [`inspect`].
pub fn judge_port(port: u16, snapshot: Snapshot, facts: HostFacts) -> PortReport {
    let holders: Vec<Listener> = snapshot
        .listeners
        .into_iter()
        .filter(|listener| listener.local_port == port)
        .collect();
    let mut traps = Vec::new();

    for protocol in [Protocol::Tcp, Protocol::Udp] {
        let of_protocol: Vec<&Listener> =
            holders.iter().filter(|l| l.protocol == protocol).collect();
        if of_protocol.is_empty() || facts.localhost.is_empty() {
            continue;
        }
        let reaches: Vec<bool> = facts
            .localhost
            .iter()
            .map(|&destination| of_protocol.iter().any(|l| accepts(l, destination)))
            .collect();
        let held_on = describe_addresses(&of_protocol);
        if !reaches.iter().any(|&r| r) {
            traps.push(Trap {
                trap: TrapKind::LocalhostUnreachable,
                protocol: Some(protocol),
                detail: format!(
                    "{} port {port} is held on {held_on} only, which none of localhost's addresses ({}) reaches",
                    protocol.name(),
                    comma_list(&facts.localhost)
                ),
            });
        } else if !reaches[0] {
            let working = facts
                .localhost
                .iter()
                .zip(&reaches)
                .filter(|(_, reaches)| **reaches)
                .map(|(address, _)| *address)
                .collect::<Vec<_>>();
            traps.push(Trap {
                trap: TrapKind::LocalhostOrder,
                protocol: Some(protocol),
                detail: format!(
                    "localhost resolves to {} first, but {} port {port} is held on {held_on} only: clients that try just the first address of localhost are refused (only {} works)",
                    facts.localhost[0],
                    protocol.name(),
                    comma_list(&working)
                ),
            });
        }
    }

    let mut other_users: Vec<String> = Vec::new();
    for holder in &holders {
        let mut uids = vec![(holder.uid, holder.user.clone())];
        uids.extend(
            holder
                .processes
                .iter()
                .filter_map(|p| Some((p.uid?, p.user.clone()))),
        );
        for (uid, user) in uids {
            if uid != facts.uid {
                let who = match user {
                    Some(name) => format!("{name} (uid {uid})"),
                    None => format!("uid {uid}"),
                };
                if !other_users.contains(&who) {
                    other_users.push(who);
                }
            }
        }
    }
    if !other_users.is_empty() {
        traps.push(Trap {
            trap: TrapKind::OtherUser,
            protocol: None,
            detail: format!(
                "port {port} is held by {}, not by you (uid {}): you cannot stop it or bind the port yourself",
                other_users.join(", "),
                facts.uid
            ),
        });
    }

    if let Some((low, high)) = facts.ephemeral_range
        && (low..=high).contains(&port)
        && !facts
            .reserved_ports
            .iter()
            .any(|&(a, b)| (a..=b).contains(&port))
    {
        traps.push(Trap {
            trap: TrapKind::Ephemeral,
            protocol: None,
            detail: format!(
                "port {port} is in the ephemeral range {low}-{high}: the kernel may give it to an outgoing connection, so a service that starts later can find it taken (reserve it in net.ipv4.ip_local_reserved_ports, or pick a port below {low})"
            ),
        });
    }

    PortReport {
        port,
        holders,
        traps,
        facts,
        snapshot_source: snapshot.source,
        processes_unreadable: snapshot.processes_unreadable,
        notes: snapshot.notes,
    }
}

/// Would a connection (or datagram) from this host to `destination` reach this socket?
pub fn accepts(listener: &Listener, destination: IpAddr) -> bool {
    // Tied to a non-loopback device: traffic to a loopback address arrives on lo, not there.
    if listener.exposure == Exposure::Interface && listener.exposed {
        return false;
    }
    let local = unmap(listener.local_address);
    match unmap(destination) {
        destination @ IpAddr::V4(_) => {
            local == destination
                || local == IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)
                || (listener.local_address.is_unspecified()
                    && listener.reachable_families.contains(&Family::Ipv4))
        }
        destination @ IpAddr::V6(_) => {
            listener.family == Family::Ipv6
                && (listener.local_address == destination
                    || listener.local_address.is_unspecified())
        }
    }
}

fn describe_addresses(listeners: &[&Listener]) -> String {
    let mut addresses: Vec<String> = Vec::new();
    for listener in listeners {
        let text = match listener.local_address {
            IpAddr::V6(v6) => format!("[{v6}]"),
            v4 => v4.to_string(),
        };
        if !addresses.contains(&text) {
            addresses.push(text);
        }
    }
    addresses.join(", ")
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    fn listener(protocol: Protocol, address: IpAddr, v6only: Option<bool>, uid: u32) -> Listener {
        let family = if address.is_ipv4() {
            Family::Ipv4
        } else {
            Family::Ipv6
        };
        let reachable = if address == IpAddr::V6(Ipv6Addr::UNSPECIFIED) && v6only == Some(false) {
            vec![Family::Ipv4, Family::Ipv6]
        } else if unmap(address).is_ipv4() {
            vec![Family::Ipv4]
        } else {
            vec![Family::Ipv6]
        };
        Listener {
            protocol,
            family,
            local_address: address,
            local_port: 5432,
            exposure: Exposure::LoopbackOnly,
            exposed: false,
            reachable_families: reachable,
            v6only,
            bound_interface: None,
            address_interface: None,
            uid,
            user: None,
            inode: 1,
            processes: vec![],
        }
    }

    fn snapshot_of(listeners: Vec<Listener>) -> Snapshot {
        Snapshot {
            listeners,
            source: "sock_diag",
            netns: None,
            processes_unreadable: 0,
            sockets_without_owner: 0,
            notes: vec![],
        }
    }

    fn facts(localhost: Vec<IpAddr>) -> HostFacts {
        HostFacts {
            localhost,
            ephemeral_range: Some((32768, 60999)),
            reserved_ports: vec![(40000, 40010)],
            uid: 1000,
        }
    }

    const V4: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
    const V6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);

    fn kinds(report: &PortReport) -> Vec<TrapKind> {
        report.traps.iter().map(|t| t.trap).collect()
    }

    #[test]
    fn held_on_127_only_while_localhost_is_v6_first_is_a_trap() {
        let report = judge_port(
            5432,
            snapshot_of(vec![listener(Protocol::Tcp, V4, None, 1000)]),
            facts(vec![V6, V4]),
        );
        assert_eq!(kinds(&report), vec![TrapKind::LocalhostOrder]);
        assert!(report.traps[0].detail.contains("::1 first"));
        // v4 first: no trap.
        let fine = judge_port(
            5432,
            snapshot_of(vec![listener(Protocol::Tcp, V4, None, 1000)]),
            facts(vec![V4, V6]),
        );
        assert!(fine.traps.is_empty());
    }

    #[test]
    fn dual_stack_wildcard_serves_both_localhost_addresses() {
        let any6 = IpAddr::V6(Ipv6Addr::UNSPECIFIED);
        let dual = judge_port(
            5432,
            snapshot_of(vec![listener(Protocol::Tcp, any6, Some(false), 1000)]),
            facts(vec![V6, V4]),
        );
        assert!(dual.traps.is_empty());
        // V6ONLY [::] with localhost -> 127.0.0.1 only: unreachable through localhost.
        let only6 = judge_port(
            5432,
            snapshot_of(vec![listener(Protocol::Tcp, any6, Some(true), 1000)]),
            facts(vec![V4]),
        );
        assert_eq!(kinds(&only6), vec![TrapKind::LocalhostUnreachable]);
    }

    #[test]
    fn other_users_and_ephemeral_ports_are_traps() {
        let mut held = listener(Protocol::Udp, V4, None, 105);
        held.local_port = 45000;
        held.user = Some("postgres".into());
        let report = judge_port(45000, snapshot_of(vec![held]), facts(vec![V4]));
        assert_eq!(
            kinds(&report),
            vec![TrapKind::OtherUser, TrapKind::Ephemeral]
        );
        assert!(report.traps[0].detail.contains("postgres (uid 105)"));
        // Reserved ports are not handed out by the kernel.
        let reserved = judge_port(40005, snapshot_of(vec![]), facts(vec![V4]));
        assert!(reserved.traps.is_empty());
        assert!(reserved.holders.is_empty());
    }

    #[test]
    fn port_lists_and_ranges_parse() {
        assert_eq!(parse_port_range("32768\t60999\n"), Some((32768, 60999)));
        assert_eq!(parse_port_range("9 1"), None);
        assert_eq!(parse_port_range(""), None);
        assert_eq!(
            parse_port_list("8080,9000-9010,x\n"),
            vec![(8080, 8080), (9000, 9010)]
        );
        assert!(parse_port_list("\n").is_empty());
    }
}
