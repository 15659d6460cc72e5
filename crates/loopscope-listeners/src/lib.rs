//! Listening sockets and their exposure (sock_diag, /proc), port owners.
//!
//! [`snapshot`] lists every listening TCP socket and every bound, unconnected UDP socket of a
//! network namespace, with the processes that hold each one and an exposure verdict
//! ([`Exposure`]). The kernel's sock_diag netlink interface is the main source because it alone
//! reports IPV6_V6ONLY and SO_BINDTODEVICE; `/proc/net/{tcp,tcp6,udp,udp6}` is the fallback.
//! [`port::inspect`] answers "who holds this port, and what could go wrong".

#![forbid(unsafe_code)]

use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};

use loopscope_report::plural;
use serde::Serialize;

mod diag;
mod exposure;
mod model;
mod owners;
pub mod port;
mod procnet;
pub mod report;

pub use exposure::{Interfaces, Verdict, judge};
pub use model::{Exposure, Family, Listener, Process, Protocol, RawSocket};

/// Environment variable (also `--source`) choosing the socket source: `auto`, `netlink`, `proc`.
pub const SOURCE_ENV: &str = "LOOPSCOPE_LISTENERS_SOURCE";

/// What keeps `listeners` or `port` from reading the sockets.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "cannot open network namespace {name} (names come from `ip netns list`; a path such as /proc/PID/ns/net works too)"
    )]
    /// The namespace file could not be opened.
    NetnsOpen {
        /// The namespace as given.
        name: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// setns(2) refused.
    #[error("cannot enter network namespace {name} (needs root / CAP_SYS_ADMIN)")]
    NetnsEnter {
        /// The namespace as given.
        name: String,
        /// Why.
        #[source]
        source: nix::Error,
    },
    /// An empty namespace name, `.` or `..`.
    #[error("invalid network namespace name {0:?}")]
    NetnsName(String),
    /// sock_diag failed and `--source netlink` allows no fallback.
    #[error("sock_diag unavailable (try --source proc)")]
    Netlink(#[from] diag::DiagError),
    /// Neither source could be read; the text says what each said.
    #[error("neither sock_diag nor /proc/net could be read: {0}")]
    NoSource(String),
    /// The thread that enters the namespace panicked.
    #[error("the namespace thread panicked")]
    Thread,
}

/// Where sockets are read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SocketSource {
    /// sock_diag, and /proc/net for any table sock_diag cannot dump.
    #[default]
    Auto,
    /// sock_diag only; failing if it is unavailable.
    Netlink,
    /// /proc/net only (no V6ONLY, no bound interface).
    Proc,
}

/// What to read and where.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Where sockets are read from.
    pub source: SocketSource,
    /// A name under /run/netns, or a path to a network namespace file.
    pub netns: Option<String>,
}

/// Everything `listeners` reports.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Every listening TCP and unconnected UDP socket, judged.
    pub listeners: Vec<Listener>,
    /// "sock_diag", "proc", or "sock_diag+proc" when some tables came from /proc/net.
    pub source: &'static str,
    /// The namespace audited (`None`: this process's own).
    pub netns: Option<String>,
    /// Processes whose fd table could not be read.
    pub processes_unreadable: usize,
    /// Sockets for which no holding process was found.
    pub sockets_without_owner: usize,
    /// Things the reader should know (fallbacks, unreadable processes).
    pub notes: Vec<String>,
}

const TABLES: [(Protocol, Family); 4] = [
    (Protocol::Tcp, Family::Ipv4),
    (Protocol::Tcp, Family::Ipv6),
    (Protocol::Udp, Family::Ipv4),
    (Protocol::Udp, Family::Ipv6),
];

/// What is read inside the audited namespace.
struct NamespaceView {
    sockets: Vec<RawSocket>,
    interfaces: Interfaces,
    default_v6only: bool,
    used_netlink: bool,
    used_proc: bool,
    notes: Vec<String>,
}

/// Lists and judges the sockets of the current (or the given) network namespace.
pub fn snapshot(options: &Options) -> Result<Snapshot, Error> {
    let source = options.source;
    let view = in_netns(options.netns.as_deref(), move || {
        read_namespace(source, diag::Diag::open)
    })??;
    let NamespaceView {
        sockets,
        interfaces,
        default_v6only,
        used_netlink,
        used_proc,
        mut notes,
    } = view;

    let wanted: HashSet<u64> = sockets
        .iter()
        .map(|s| s.inode)
        .filter(|&i| i != 0)
        .collect();
    let mut found = owners::scan(Path::new("/proc"), &wanted);
    let mut users = owners::UserNames::default();
    for process in found.processes.values_mut() {
        process.user = process.uid.and_then(|uid| users.name(uid));
    }

    let mut sockets_without_owner = 0;
    let mut listeners: Vec<Listener> = sockets
        .into_iter()
        .map(|raw| {
            let verdict = judge(&raw, &interfaces, default_v6only);
            let processes: Vec<Process> = found
                .by_inode
                .get(&raw.inode)
                .map(|pids| {
                    pids.iter()
                        .filter_map(|pid| found.processes.get(pid).cloned())
                        .collect()
                })
                .unwrap_or_default();
            if processes.is_empty() {
                sockets_without_owner += 1;
            }
            Listener {
                protocol: raw.protocol,
                family: raw.family,
                local_address: raw.address,
                local_port: raw.port,
                exposure: verdict.exposure,
                exposed: verdict.exposed,
                reachable_families: verdict.reachable_families,
                v6only: raw.v6only,
                bound_interface: verdict.bound_interface,
                address_interface: verdict.address_interface,
                uid: raw.uid,
                user: users.name(raw.uid),
                inode: raw.inode,
                processes,
            }
        })
        .collect();
    listeners.sort_by(|a, b| {
        (a.protocol, a.local_port, a.family, a.local_address, a.inode).cmp(&(
            b.protocol,
            b.local_port,
            b.family,
            b.local_address,
            b.inode,
        ))
    });

    if !found.proc_listed {
        notes.push("/proc could not be listed: owning processes are unknown".into());
    }
    if found.unreadable > 0 {
        notes.push(format!(
            "{} could not be read (permission denied; run as root to see every owner): sockets they hold show no process",
            plural(found.unreadable as u64, "process", "processes")
        ));
    }
    if used_proc {
        notes.push(format!(
            "read from /proc/net: IPV6_V6ONLY and SO_BINDTODEVICE are unknown there; [::] sockets are assumed to follow net.ipv6.bindv6only={}",
            u8::from(default_v6only)
        ));
    }
    Ok(Snapshot {
        listeners,
        source: match (used_netlink, used_proc) {
            (true, true) => "sock_diag+proc",
            (false, _) => "proc",
            (true, false) => "sock_diag",
        },
        netns: options.netns.clone(),
        processes_unreadable: found.unreadable,
        sockets_without_owner,
        notes,
    })
}

/// The note for sockets no process was found holding, when that is not explained by
/// unreadable processes (those have their own note).
pub fn ownerless_note(sockets_without_owner: usize, processes_unreadable: usize) -> Option<String> {
    (sockets_without_owner > 0 && processes_unreadable == 0).then(|| {
        format!(
            "{} without a visible holder: held by a process in another PID namespace, or by the kernel",
            plural(sockets_without_owner as u64, "socket", "sockets")
        )
    })
}

/// A sock_diag dumper ([`diag::Diag`]); a trait so tests can stand in a kernel without
/// sock_diag, or without `udp_diag`.
trait Dumper {
    fn dump(
        &mut self,
        protocol: Protocol,
        family: Family,
        out: &mut Vec<RawSocket>,
    ) -> Result<(), diag::DiagError>;
}

impl Dumper for diag::Diag {
    fn dump(
        &mut self,
        protocol: Protocol,
        family: Family,
        out: &mut Vec<RawSocket>,
    ) -> Result<(), diag::DiagError> {
        diag::Diag::dump(self, protocol, family, out)
    }
}

/// Interfaces with net.ipv4.conf.IFACE.route_localnet=1: there, packets to 127/8 from outside
/// are routed rather than dropped as martians, so "loopback-only" IPv4 sockets can be reached.
fn route_localnet_interfaces() -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/proc/sys/net/ipv4/conf") else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|entry| {
            std::fs::read_to_string(entry.path().join("route_localnet"))
                .is_ok_and(|value| value.trim() == "1")
        })
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn read_namespace<D: Dumper>(
    source: SocketSource,
    open_diag: impl FnOnce() -> Result<D, diag::DiagError>,
) -> Result<NamespaceView, Error> {
    let mut view = NamespaceView {
        sockets: Vec::new(),
        interfaces: Interfaces::default(),
        default_v6only: std::fs::read_to_string("/proc/sys/net/ipv6/bindv6only")
            .map(|text| text.trim() == "1")
            .unwrap_or(false),
        used_netlink: false,
        used_proc: false,
        notes: Vec::new(),
    };
    match Interfaces::current() {
        Ok(interfaces) => view.interfaces = interfaces,
        Err(error) => view.notes.push(format!(
            "interfaces could not be listed ({error}): interface names are missing"
        )),
    }

    let localnet = route_localnet_interfaces();
    if !localnet.is_empty() {
        view.notes.push(format!(
            "route_localnet is on for {}: packets to 127/8 from outside are routed there, so loopback-only IPv4 sockets may be reachable",
            localnet.join(", ")
        ));
    }

    let mut diag = match source {
        SocketSource::Proc => None,
        SocketSource::Netlink => Some(open_diag()?),
        SocketSource::Auto => match open_diag() {
            Ok(diag) => Some(diag),
            Err(error) => {
                view.notes
                    .push(format!("{error}; falling back to /proc/net"));
                None
            }
        },
    };
    for (protocol, family) in TABLES {
        let table = procnet::table_of(protocol, family);
        if let Some(diag) = diag.as_mut() {
            match diag.dump(protocol, family, &mut view.sockets) {
                Ok(()) => {
                    view.used_netlink = true;
                    continue;
                }
                Err(error) if source == SocketSource::Netlink => return Err(error.into()),
                Err(error) => view.notes.push(format!(
                    "{error}; {} read from /proc/net instead",
                    table.file_name()
                )),
            }
        }
        // The table as this thread sees it, which matters after setns.
        match table.read() {
            Ok(text) => {
                view.used_proc = true;
                let malformed =
                    procnet::add_listening(text.parse(), protocol, family, &mut view.sockets);
                if malformed > 0 {
                    view.notes.push(format!(
                        "{}: {malformed} lines could not be parsed",
                        text.path
                    ));
                }
            }
            // IPv6 disabled: no tcp6/udp6 table, nothing listens there.
            Err(error)
                if error.kind() == std::io::ErrorKind::NotFound && family == Family::Ipv6 => {}
            Err(error) => {
                return Err(Error::NoSource(format!("{}: {error}", table.path())));
            }
        }
    }
    Ok(view)
}

/// Resolves `--netns NAME`: a bare name lives in /run/netns (as `ip netns` keeps them).
pub fn netns_path(name: &str) -> Result<PathBuf, Error> {
    if name.contains('/') {
        return Ok(PathBuf::from(name));
    }
    if name.is_empty() || name == "." || name == ".." {
        return Err(Error::NetnsName(name.to_string()));
    }
    Ok(Path::new("/run/netns").join(name))
}

/// Runs `work` in the given network namespace, on a thread of its own (setns changes only the
/// calling thread, and that thread is thrown away afterwards so nothing else runs there).
pub fn in_netns<T: Send>(netns: Option<&str>, work: impl FnOnce() -> T + Send) -> Result<T, Error> {
    let Some(name) = netns else {
        return Ok(work());
    };
    let path = netns_path(name)?;
    let file = File::open(&path).map_err(|source| Error::NetnsOpen {
        name: name.to_string(),
        source,
    })?;
    std::thread::scope(|scope| {
        scope
            .spawn(move || {
                nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).map_err(
                    |source| Error::NetnsEnter {
                        name: name.to_string(),
                        source,
                    },
                )?;
                Ok(work())
            })
            .join()
            .map_err(|_| Error::Thread)?
    })
}

#[cfg(test)]
mod tests {
    use std::io;

    use super::*;

    /// A kernel whose sock_diag has TCP but not UDP (no `udp_diag` module): the dump answers
    /// ENOENT, as the real kernel does.
    struct TcpOnly(diag::Diag);

    impl Dumper for TcpOnly {
        fn dump(
            &mut self,
            protocol: Protocol,
            family: Family,
            out: &mut Vec<RawSocket>,
        ) -> Result<(), diag::DiagError> {
            match protocol {
                Protocol::Tcp => self.0.dump(protocol, family, out),
                Protocol::Udp => Err(diag::DiagError::Dump {
                    protocol: protocol.name(),
                    family: family.name(),
                    cause: io::Error::from_raw_os_error(libc::ENOENT),
                }),
            }
        }
    }

    fn no_sock_diag() -> Result<diag::Diag, diag::DiagError> {
        Err(diag::DiagError::Socket(io::Error::from_raw_os_error(
            libc::EPROTONOSUPPORT,
        )))
    }

    fn inode_of(socket: &impl std::os::fd::AsFd) -> u64 {
        rustix::fs::fstat(socket).expect("fstat").st_ino
    }

    #[test]
    fn without_sock_diag_auto_falls_back_to_proc_with_a_note() {
        let held = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let view = read_namespace(SocketSource::Auto, no_sock_diag).expect("fallback works");
        assert!(!view.used_netlink);
        assert!(view.used_proc);
        assert!(
            view.notes
                .iter()
                .any(|n| n.contains("sock_diag netlink socket") && n.contains("falling back")),
            "{:?}",
            view.notes
        );
        assert!(view.sockets.iter().any(|s| s.inode == inode_of(&held)));
        // Asked for netlink only, the same kernel is an error, not a silent fallback.
        assert!(matches!(
            read_namespace(SocketSource::Netlink, no_sock_diag),
            Err(Error::Netlink(_))
        ));
    }

    #[test]
    fn a_missing_udp_diag_falls_back_for_udp_only() {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let view = read_namespace(SocketSource::Auto, || diag::Diag::open().map(TcpOnly))
            .expect("partial fallback");
        assert!(view.used_netlink && view.used_proc);
        let udp_notes = view
            .notes
            .iter()
            .filter(|n| n.contains("read from /proc/net instead"))
            .count();
        assert_eq!(udp_notes, 2, "{:?}", view.notes);
        let tcp_entry = view
            .sockets
            .iter()
            .find(|s| s.inode == inode_of(&tcp))
            .expect("tcp listed");
        // From sock_diag: the bound interface is known (0 = none).
        assert_eq!(tcp_entry.bound_ifindex, Some(0));
        let udp_entry = view
            .sockets
            .iter()
            .find(|s| s.inode == inode_of(&udp))
            .expect("udp listed");
        // From /proc/net: unknown.
        assert_eq!(udp_entry.bound_ifindex, None);
    }
}
