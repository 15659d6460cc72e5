//! Records for `listeners` and `port`: one `socket` object per socket in JSON, a table for
//! humans, then a summary.

use std::io::{self, Write};
use std::net::IpAddr;

use loopscope_report::{Record, Table, comma_list, plural};
use serde::Serialize;

use crate::model::{Exposure, Family, Listener};
use crate::port::{PortReport, Trap};
use crate::{Snapshot, SocketSource};

/// One socket (JSON `"type":"socket"`).
#[derive(Serialize)]
#[serde(transparent)]
pub struct SocketRecord<'a>(pub &'a Listener);

impl Record for SocketRecord<'_> {
    fn kind(&self) -> &'static str {
        "socket"
    }
    fn write_human(&self, out: &mut dyn Write) -> io::Result<()> {
        SocketTable(std::slice::from_ref(self.0)).write_human(out)
    }
}

/// The human table of sockets (not emitted in JSON, where each socket is its own record).
#[derive(Serialize)]
#[serde(transparent)]
pub struct SocketTable<'a>(pub &'a [Listener]);

impl Record for SocketTable<'_> {
    fn kind(&self) -> &'static str {
        "sockets"
    }
    fn write_human(&self, out: &mut dyn Write) -> io::Result<()> {
        let mut table = Table::new(["PROTO", "LOCAL", "EXPOSURE", "REACH", "USER", "PROCESS"]);
        for listener in self.0 {
            table.row([
                proto_label(listener),
                local_label(listener),
                exposure_label(listener),
                families_label(&listener.reachable_families),
                listener
                    .user
                    .clone()
                    .unwrap_or_else(|| listener.uid.to_string()),
                process_label(listener),
            ]);
        }
        if self.0.is_empty() {
            return Ok(());
        }
        table.write(out)
    }
}

/// `tcp`, `tcp6`, `udp`, `udp6` as in `ss` and `netstat`.
pub fn proto_label(listener: &Listener) -> String {
    match listener.family {
        Family::Ipv4 => listener.protocol.name().to_string(),
        Family::Ipv6 => format!("{}6", listener.protocol.name()),
    }
}

/// `127.0.0.1:8080`, `[::]:80`, `0.0.0.0%eth0:53`.
pub fn local_label(listener: &Listener) -> String {
    let address = match listener.local_address {
        IpAddr::V6(v6) => format!("[{v6}]"),
        v4 => v4.to_string(),
    };
    match &listener.bound_interface {
        Some(device) => format!("{address}%{device}:{}", listener.local_port),
        None => format!("{address}:{}", listener.local_port),
    }
}

/// The binding in words for the human table, `EXPOSED ` first when it is reachable from
/// outside.
pub fn exposure_label(listener: &Listener) -> String {
    let prefix = if listener.exposed { "EXPOSED " } else { "" };
    let what = match listener.exposure {
        Exposure::LoopbackOnly => "loopback-only".to_string(),
        Exposure::Wildcard => "wildcard".to_string(),
        Exposure::Address => match &listener.address_interface {
            Some(interface) => format!("address on {interface}"),
            None => "address (on no interface)".to_string(),
        },
        Exposure::Interface => format!(
            "bound to {}",
            listener.bound_interface.as_deref().unwrap_or("?")
        ),
    };
    format!("{prefix}{what}")
}

fn families_label(families: &[Family]) -> String {
    families
        .iter()
        .map(|f| f.name())
        .collect::<Vec<_>>()
        .join("+")
}

fn process_label(listener: &Listener) -> String {
    if listener.processes.is_empty() {
        return "?".to_string();
    }
    listener
        .processes
        .iter()
        .map(|p| format!("{}[{}]", p.command, p.pid))
        .collect::<Vec<_>>()
        .join(",")
}

/// A socket that `--expect-loopback-only` found exposed.
#[derive(Debug, Clone, Serialize)]
pub struct Violation {
    /// `tcp` or `udp`.
    pub protocol: &'static str,
    /// The address it is bound to.
    pub local_address: IpAddr,
    /// The port.
    pub local_port: u16,
    /// How it is bound.
    pub exposure: Exposure,
}

/// The `listeners` summary.
#[derive(Serialize)]
pub struct ListenersSummary {
    /// Sockets found.
    pub sockets: usize,
    /// How many are listed (fewer than `sockets` with `--exposed`).
    pub shown: usize,
    /// Sockets reachable from outside.
    pub exposed: usize,
    /// Sockets bound to a loopback address (127/8, ::1).
    pub loopback_only: usize,
    /// Sockets per kind of binding, exposed or not (a socket tied to `lo` counts under
    /// `interface` and is not exposed).
    pub wildcard: usize,
    /// Bound to one specific non-loopback address.
    pub address: usize,
    /// Tied to one interface (SO_BINDTODEVICE).
    pub interface: usize,
    /// The exposed sockets per kind; they add up to `exposed`.
    pub exposed_wildcard: usize,
    /// Exposed and bound to a specific address.
    pub exposed_address: usize,
    /// Exposed and tied to a non-loopback interface.
    pub exposed_interface: usize,
    /// Sockets not reachable from outside (`sockets - exposed`): loopback addresses and
    /// sockets tied to a loopback interface.
    pub not_exposed: usize,
    /// Where the sockets were read from (`sock_diag`, `proc`, `sock_diag+proc`).
    pub source: &'static str,
    /// The source asked for (`auto`, `netlink`, `proc`).
    pub requested_source: SocketSource,
    /// The namespace audited.
    pub netns: Option<String>,
    /// Processes whose file descriptors could not be read.
    pub processes_unreadable: usize,
    /// Sockets no process was found holding.
    pub sockets_without_owner: usize,
    /// Set with `--expect-loopback-only`: the ports checked (empty: all).
    pub expect_loopback_only: Option<Vec<u16>>,
    /// The sockets that break `--expect-loopback-only`.
    pub violations: Vec<Violation>,
    /// No violation (and nothing else that fails the run).
    pub passed: bool,
    /// Anything the reader should know (a fallback source, a guess).
    pub notes: Vec<String>,
}

impl ListenersSummary {
    /// The summary of `snapshot`, with `expect_loopback_only` checked when given.
    pub fn new(
        snapshot: &Snapshot,
        requested_source: SocketSource,
        shown: usize,
        expect_loopback_only: Option<&[u16]>,
    ) -> ListenersSummary {
        let count = |exposure: Exposure| {
            snapshot
                .listeners
                .iter()
                .filter(|l| l.exposure == exposure)
                .count()
        };
        let count_exposed = |exposure: Exposure| {
            snapshot
                .listeners
                .iter()
                .filter(|l| l.exposed && l.exposure == exposure)
                .count()
        };
        let exposed = snapshot.listeners.iter().filter(|l| l.exposed).count();
        let violations: Vec<Violation> = match expect_loopback_only {
            None => Vec::new(),
            Some(ports) => snapshot
                .listeners
                .iter()
                .filter(|l| l.exposed && (ports.is_empty() || ports.contains(&l.local_port)))
                .map(|l| Violation {
                    protocol: l.protocol.name(),
                    local_address: l.local_address,
                    local_port: l.local_port,
                    exposure: l.exposure,
                })
                .collect(),
        };
        ListenersSummary {
            sockets: snapshot.listeners.len(),
            shown,
            exposed,
            loopback_only: count(Exposure::LoopbackOnly),
            wildcard: count(Exposure::Wildcard),
            address: count(Exposure::Address),
            interface: count(Exposure::Interface),
            exposed_wildcard: count_exposed(Exposure::Wildcard),
            exposed_address: count_exposed(Exposure::Address),
            exposed_interface: count_exposed(Exposure::Interface),
            not_exposed: snapshot.listeners.len() - exposed,
            source: snapshot.source,
            requested_source,
            netns: snapshot.netns.clone(),
            processes_unreadable: snapshot.processes_unreadable,
            sockets_without_owner: snapshot.sockets_without_owner,
            expect_loopback_only: expect_loopback_only.map(<[u16]>::to_vec),
            passed: violations.is_empty(),
            violations,
            notes: snapshot
                .notes
                .iter()
                .cloned()
                .chain(crate::ownerless_note(
                    snapshot.sockets_without_owner,
                    snapshot.processes_unreadable,
                ))
                .collect(),
        }
    }
}

impl Record for ListenersSummary {
    fn kind(&self) -> &'static str {
        "summary"
    }
    fn write_human(&self, out: &mut dyn Write) -> io::Result<()> {
        if self.shown > 0 {
            writeln!(out)?;
        }
        let place = match &self.netns {
            Some(netns) => format!(" in network namespace {netns}"),
            None => String::new(),
        };
        // Every figure on this line is a part of the one before the parenthesis, so the line
        // adds up: exposed + not exposed = sockets, and the kinds add up to exposed.
        writeln!(
            out,
            "{}{place}: {} exposed ({} wildcard, {} specific address, {} interface-bound), {} loopback-only; source {}",
            plural(self.sockets as u64, "socket", "sockets"),
            self.exposed,
            self.exposed_wildcard,
            self.exposed_address,
            self.exposed_interface,
            self.not_exposed,
            self.source
        )?;
        if let Some(ports) = &self.expect_loopback_only {
            let scope = if ports.is_empty() {
                "every port".to_string()
            } else {
                format!(
                    "port{} {}",
                    if ports.len() == 1 { "" } else { "s" },
                    comma_list(ports)
                )
            };
            if self.violations.is_empty() {
                writeln!(out, "PASS: {scope} loopback-only")?;
            } else {
                for violation in &self.violations {
                    writeln!(
                        out,
                        "FAIL: {} {}:{} is exposed ({})",
                        violation.protocol,
                        match violation.local_address {
                            IpAddr::V6(v6) => format!("[{v6}]"),
                            v4 => v4.to_string(),
                        },
                        violation.local_port,
                        violation.exposure.name()
                    )?;
                }
            }
        }
        for note in &self.notes {
            writeln!(out, "note: {note}")?;
        }
        Ok(())
    }
}

/// One trap found by `port` (JSON `"type":"trap"`).
#[derive(Serialize)]
#[serde(transparent)]
pub struct TrapRecord<'a>(pub &'a Trap);

impl Record for TrapRecord<'_> {
    fn kind(&self) -> &'static str {
        "trap"
    }
    fn write_human(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(
            out,
            "trap {}: {}",
            self.0.trap.name(),
            loopscope_report::escape_control(&self.0.detail)
        )
    }
}

/// The `port` summary.
#[derive(Serialize)]
pub struct PortSummary {
    /// The port.
    pub port: u16,
    /// Whether anything holds it.
    pub held: bool,
    /// The protocols it is held on.
    pub protocols: Vec<&'static str>,
    /// The addresses it is bound to.
    pub addresses: Vec<IpAddr>,
    /// The IP versions that can reach it.
    pub families: Vec<Family>,
    /// Whether any holder is reachable from outside.
    pub exposed: bool,
    /// The processes holding it.
    pub pids: Vec<u32>,
    /// What `localhost` resolves to, in the order clients try.
    pub localhost_addresses: Vec<IpAddr>,
    /// net.ipv4.ip_local_port_range, `[low, high]`.
    pub ephemeral_range: Option<[u16; 2]>,
    /// The traps found.
    pub traps: Vec<crate::port::TrapKind>,
    /// No trap found.
    pub passed: bool,
    /// Where the sockets were read from.
    pub source: &'static str,
    /// Anything the reader should know.
    pub notes: Vec<String>,
}

impl PortSummary {
    /// The summary of `report`.
    pub fn new(report: &PortReport) -> PortSummary {
        let mut protocols = Vec::new();
        let mut addresses = Vec::new();
        let mut families = Vec::new();
        let mut pids = Vec::new();
        for holder in &report.holders {
            if !protocols.contains(&holder.protocol.name()) {
                protocols.push(holder.protocol.name());
            }
            if !addresses.contains(&holder.local_address) {
                addresses.push(holder.local_address);
            }
            for family in &holder.reachable_families {
                if !families.contains(family) {
                    families.push(*family);
                }
            }
            for process in &holder.processes {
                if !pids.contains(&process.pid) {
                    pids.push(process.pid);
                }
            }
        }
        families.sort();
        pids.sort_unstable();
        PortSummary {
            port: report.port,
            held: !report.holders.is_empty(),
            protocols,
            addresses,
            families,
            exposed: report.holders.iter().any(|h| h.exposed),
            pids,
            localhost_addresses: report.facts.localhost.clone(),
            ephemeral_range: report.facts.ephemeral_range.map(|(a, b)| [a, b]),
            traps: report.traps.iter().map(|t| t.trap).collect(),
            // A port reachable from outside fails, as a trap does: the command answers "is
            // this port safe to rely on, and only from here?".
            passed: report.traps.is_empty() && !report.holders.iter().any(|h| h.exposed),
            source: report.snapshot_source,
            notes: report
                .notes
                .iter()
                .cloned()
                .chain(crate::ownerless_note(
                    report
                        .holders
                        .iter()
                        .filter(|h| h.processes.is_empty())
                        .count(),
                    report.processes_unreadable,
                ))
                .collect(),
        }
    }
}

impl Record for PortSummary {
    fn kind(&self) -> &'static str {
        "summary"
    }
    fn write_human(&self, out: &mut dyn Write) -> io::Result<()> {
        if self.held {
            writeln!(
                out,
                "port {}: held over {} on {} (reachable over {}){}",
                self.port,
                self.protocols.join("+"),
                self.addresses
                    .iter()
                    .map(|a| match a {
                        IpAddr::V6(v6) => format!("[{v6}]"),
                        v4 => v4.to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
                families_label(&self.families),
                if self.exposed {
                    "; EXPOSED beyond loopback"
                } else {
                    "; loopback-only"
                }
            )?;
        } else {
            writeln!(out, "port {}: nobody holds it (tcp or udp)", self.port)?;
        }
        if self.traps.is_empty() {
            writeln!(out, "no traps")?;
        } else {
            writeln!(out, "{}", plural(self.traps.len() as u64, "trap", "traps"))?;
        }
        for note in &self.notes {
            writeln!(out, "note: {note}")?;
        }
        let mut failures = Vec::new();
        if self.exposed {
            failures.push("exposed beyond loopback".to_string());
        }
        if !self.traps.is_empty() {
            failures.push(plural(self.traps.len() as u64, "trap", "traps"));
        }
        if failures.is_empty() {
            writeln!(out, "PASS")
        } else {
            writeln!(out, "FAIL: {}", failures.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use loopscope_report::{Format, Printer};

    use super::*;
    use crate::model::{Process, Protocol};

    fn listener(
        address: IpAddr,
        exposure: Exposure,
        exposed: bool,
        device: Option<&str>,
    ) -> Listener {
        Listener {
            protocol: Protocol::Tcp,
            family: Family::Ipv4,
            local_address: address,
            local_port: 8002,
            exposure,
            exposed,
            reachable_families: vec![Family::Ipv4],
            v6only: None,
            bound_interface: device.map(str::to_string),
            address_interface: None,
            uid: 0,
            user: Some("root".into()),
            inode: 1,
            processes: vec![Process {
                pid: 42,
                command: "evil\x1b]0;pwned\x07\nforged".into(),
                uid: Some(0),
                user: Some("root".into()),
            }],
        }
    }

    fn human<R: Record>(record: &R) -> String {
        let mut printer = Printer::new(Format::Human, Vec::new());
        printer.emit(record).unwrap();
        String::from_utf8(printer.into_inner()).unwrap()
    }

    /// The defect: five wildcard sockets and one tied to `lo` printed "5 exposed (5 wildcard,
    /// 0 specific address, 1 interface-bound)".
    #[test]
    fn the_totals_line_adds_up() {
        let wildcard = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        let mut listeners = vec![listener(wildcard, Exposure::Wildcard, true, None); 5];
        listeners.push(listener(
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            Exposure::Interface,
            false,
            Some("lo"),
        ));
        listeners.push(listener(
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            Exposure::LoopbackOnly,
            false,
            None,
        ));
        let snapshot = Snapshot {
            listeners,
            source: "sock_diag",
            netns: None,
            processes_unreadable: 0,
            sockets_without_owner: 0,
            notes: Vec::new(),
        };
        let summary = ListenersSummary::new(&snapshot, SocketSource::Auto, 7, None);
        let text = human(&summary);
        assert!(
            text.contains(
                "7 sockets: 5 exposed (5 wildcard, 0 specific address, 0 interface-bound), 2 loopback-only"
            ),
            "{text}"
        );
        assert_eq!(
            summary.exposed_wildcard + summary.exposed_address + summary.exposed_interface,
            summary.exposed
        );
        assert_eq!(summary.exposed + summary.not_exposed, summary.sockets);
        // The per-kind counts keep their meaning (a JSON contract).
        assert_eq!(
            (summary.wildcard, summary.interface, summary.loopback_only),
            (5, 1, 1)
        );
    }

    #[test]
    fn a_process_name_cannot_drive_the_terminal_or_forge_a_row() {
        let socket = listener(
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            Exposure::LoopbackOnly,
            false,
            None,
        );
        let text = human(&SocketTable(std::slice::from_ref(&socket)));
        assert!(!text.contains('\x1b') && !text.contains('\x07'), "{text:?}");
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(
            text.contains("evil\\x1b]0;pwned\\x07\\nforged[42]"),
            "{text}"
        );
    }

    #[test]
    fn an_exposed_port_fails_even_without_a_trap() {
        let report = PortReport {
            port: 8002,
            holders: vec![listener(
                IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                Exposure::Wildcard,
                true,
                None,
            )],
            traps: Vec::new(),
            facts: crate::port::HostFacts {
                localhost: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
                ephemeral_range: None,
                reserved_ports: Vec::new(),
                uid: 0,
            },
            snapshot_source: "sock_diag",
            processes_unreadable: 0,
            notes: Vec::new(),
        };
        let summary = PortSummary::new(&report);
        assert!(!summary.passed);
        let text = human(&summary);
        assert!(text.ends_with("FAIL: exposed beyond loopback\n"), "{text}");
    }
}
