//! Facts several checks share, each measured at most once per run.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use loopscope_measure::ping::{self, IcmpPinger, PingConfig, SocketChoice, SocketKind};
use loopscope_sys::{Interface, InterfaceAddress, Route, RouteSocket};

use super::round_trips::{self, RoundTrip};
use crate::firewall::{self, Rulesets};
use crate::resolver::NameSource;
use crate::sysctl;

/// What the user chose.
#[derive(Debug, Clone)]
pub struct Options {
    /// Resolve from this hosts(5) file instead of the system resolver.
    pub hosts_file: Option<PathBuf>,
    /// Bytes the BERT check sends through the TCP loop.
    pub bert_bytes: u64,
    /// Round trips the latency check makes.
    pub latency_round_trips: u32,
    /// How long any one probe waits for an answer.
    pub timeout: Duration,
    /// Which ICMP socket kind to use.
    pub icmp_socket: SocketChoice,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            hosts_file: None,
            bert_bytes: 16 << 20,
            latency_round_trips: 2000,
            timeout: Duration::from_millis(700),
            icmp_socket: SocketChoice::Auto,
        }
    }
}

/// What netlink said, once.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub interfaces: Vec<Interface>,
    pub addresses: Vec<InterfaceAddress>,
    pub routes: Vec<Route>,
}

impl Snapshot {
    pub fn lo(&self) -> Option<&Interface> {
        self.interfaces
            .iter()
            .find(|link| link.name == "lo")
            .or_else(|| self.interfaces.iter().find(|link| link.loopback))
    }
}

/// Result of echoing to one loopback address.
#[derive(Debug, Clone)]
pub struct IcmpOutcome {
    pub kind: SocketKind,
    pub sent: u64,
    pub received: u64,
    pub rtt_us: f64,
    pub send_error: Option<String>,
}

/// Why echo could not run.
#[derive(Debug, Clone)]
pub enum IcmpFailure {
    /// No socket kind is allowed here (privilege, no IPv6): the check cannot say anything.
    NoSocket(String),
    /// The socket opened but the address has no route: loopback is broken.
    Unreachable(String),
}

/// Why a TCP or UDP round trip failed: the error's kind and number, for the checks to match
/// on, and its text for the finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeError {
    pub kind: std::io::ErrorKind,
    /// The errno, when the kernel gave one.
    pub errno: Option<i32>,
    text: String,
}

impl ProbeError {
    pub fn from_io(error: &std::io::Error) -> Self {
        ProbeError {
            kind: error.kind(),
            errno: error.raw_os_error(),
            text: describe_io(error),
        }
    }

    /// No answer came in time (dropped packets), as opposed to an answer that said no.
    pub fn timed_out(&self) -> bool {
        matches!(
            self.kind,
            std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
        )
    }

    pub fn refused(&self) -> bool {
        self.kind == std::io::ErrorKind::ConnectionRefused
    }

    fn crashed() -> Self {
        ProbeError {
            kind: std::io::ErrorKind::Other,
            errno: None,
            text: "the measurement thread crashed".into(),
        }
    }
}

impl std::fmt::Display for ProbeError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(&self.text)
    }
}

/// The shared, lazily measured facts.
pub struct Probe {
    /// What the user asked for (timeouts, the ICMP socket kind, a hosts file to read instead).
    pub options: Options,
    netlink: Option<Result<Snapshot, String>>,
    rulesets: Option<Rulesets>,
    icmp: [Option<Result<IcmpOutcome, IcmpFailure>>; 2],
    tcp: [Option<Result<RoundTrip, ProbeError>>; 2],
    udp: [Option<Result<RoundTrip, ProbeError>>; 2],
    alias: Option<(Ipv4Addr, Result<RoundTrip, ProbeError>)>,
    loops_measured: bool,
}

/// Index of a family in the per-family caches.
fn slot(address: IpAddr) -> usize {
    usize::from(address.is_ipv6())
}

pub(crate) const V4: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
pub(crate) const V6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);

impl Probe {
    /// A probe that has measured nothing yet: every fact is measured on first use and kept.
    pub fn new(options: Options) -> Self {
        Probe {
            options,
            netlink: None,
            rulesets: None,
            icmp: [None, None],
            tcp: [None, None],
            udp: [None, None],
            alias: None,
            loops_measured: false,
        }
    }

    /// A probe whose netlink facts are `snapshot`, for checks judged on a state made by hand.
    #[cfg(test)]
    pub fn with_snapshot(options: Options, snapshot: Snapshot) -> Self {
        let mut probe = Probe::new(options);
        probe.netlink = Some(Ok(snapshot));
        probe
    }

    /// Where names are resolved: the system resolver, or the hosts file given instead.
    pub fn resolver_source(&self) -> NameSource {
        match &self.options.hosts_file {
            Some(path) => NameSource::HostsFile(path.clone()),
            None => NameSource::System,
        }
    }

    /// Links, addresses and routes; `Err` says why netlink could not be read.
    pub fn netlink(&mut self) -> Result<&Snapshot, String> {
        let snapshot = self.netlink.get_or_insert_with(|| {
            let mut netlink = RouteSocket::open().map_err(|error| error.to_string())?;
            Ok(Snapshot {
                interfaces: netlink.interfaces().map_err(|error| error.to_string())?,
                addresses: netlink.addresses().map_err(|error| error.to_string())?,
                routes: netlink.routes().map_err(|error| error.to_string())?,
            })
        });
        snapshot.as_ref().map_err(Clone::clone)
    }

    /// The nftables and iptables rules that drop or reject, read once.
    pub fn rulesets(&mut self) -> &Rulesets {
        self.rulesets.get_or_insert_with(firewall::read_rulesets)
    }

    /// Echo to 127.0.0.1 or ::1: three requests 10 ms apart.
    pub fn icmp(&mut self, target: IpAddr) -> Result<IcmpOutcome, IcmpFailure> {
        self.measure_loops();
        let (choice, timeout) = (self.options.icmp_socket, self.options.timeout);
        self.icmp[slot(target)]
            .get_or_insert_with(|| measure_icmp(target, choice, timeout))
            .clone()
    }

    /// A TCP round trip through the reflector on `target` (127.0.0.1 or ::1), measured once
    /// with the engine `ping` uses.
    pub fn tcp(&mut self, target: IpAddr) -> Result<RoundTrip, ProbeError> {
        self.measure_loops();
        let timeout = self.options.timeout;
        self.tcp[slot(target)]
            .get_or_insert_with(|| measure_tcp(target, timeout))
            .clone()
    }

    /// A UDP round trip through the reflector on `target`, measured once with the engine `ping`
    /// uses.
    pub fn udp(&mut self, target: IpAddr) -> Result<RoundTrip, ProbeError> {
        self.measure_loops();
        let timeout = self.options.timeout;
        self.udp[slot(target)]
            .get_or_insert_with(|| measure_udp(target, timeout))
            .clone()
    }

    /// A random address in 127.0.0.0/8 (outside 127.0.0.0/16) and whether TCP works on it.
    pub fn alias(&mut self) -> (Ipv4Addr, Result<RoundTrip, ProbeError>) {
        self.measure_loops();
        let timeout = self.options.timeout;
        self.alias
            .get_or_insert_with(|| {
                let alias = random_alias();
                (alias, measure_tcp(alias.into(), timeout))
            })
            .clone()
    }

    /// Runs every loop measurement at once, the first time any is asked for: when a firewall
    /// drops loopback traffic each one costs a timeout, and waiting for them in turn would
    /// make the doctor slow exactly when it is needed.
    fn measure_loops(&mut self) {
        if self.loops_measured {
            return;
        }
        self.loops_measured = true;
        let (choice, timeout) = (self.options.icmp_socket, self.options.timeout);
        let families: &[IpAddr] = if sysctl::kernel_has_ipv6() {
            &[V4, V6]
        } else {
            &[V4]
        };
        let alias = random_alias();
        let crashed = ProbeError::crashed;
        std::thread::scope(|scope| {
            let icmp: Vec<_> = families
                .iter()
                .map(|&target| scope.spawn(move || measure_icmp(target, choice, timeout)))
                .collect();
            let tcp: Vec<_> = families
                .iter()
                .map(|&target| scope.spawn(move || measure_tcp(target, timeout)))
                .collect();
            let udp: Vec<_> = families
                .iter()
                .map(|&target| scope.spawn(move || measure_udp(target, timeout)))
                .collect();
            let alias_trip = scope.spawn(move || measure_tcp(alias.into(), timeout));
            for ((&target, icmp), (tcp, udp)) in
                families.iter().zip(icmp).zip(tcp.into_iter().zip(udp))
            {
                let index = slot(target);
                self.icmp[index] = Some(
                    icmp.join()
                        .unwrap_or_else(|_| Err(IcmpFailure::NoSocket(crashed().to_string()))),
                );
                self.tcp[index] = Some(tcp.join().unwrap_or_else(|_| Err(crashed())));
                self.udp[index] = Some(udp.join().unwrap_or_else(|_| Err(crashed())));
            }
            self.alias = Some((alias, alias_trip.join().unwrap_or_else(|_| Err(crashed()))));
        });
    }
}

fn random_alias() -> Ipv4Addr {
    // Avoid 127.0.0.0/16 (127.0.0.1 and friends) and the /8's network and broadcast addresses.
    Ipv4Addr::new(
        127,
        rand::random_range(1..=254),
        rand::random(),
        rand::random_range(1..=254),
    )
}

/// Three echo requests 10 ms apart with the `ping` engine.
fn measure_icmp(
    target: IpAddr,
    choice: SocketChoice,
    timeout: Duration,
) -> Result<IcmpOutcome, IcmpFailure> {
    let mut pinger = IcmpPinger::open(target, choice).map_err(|error| {
        if let Some(reason) = error.unreachable() {
            IcmpFailure::Unreachable(describe_io(reason))
        } else if let ping::IcmpError::NoSocket { .. } = error {
            IcmpFailure::NoSocket(
                "no ICMP socket for this user: ping_group_range excludes its groups and raw sockets need CAP_NET_RAW (see ping_group_range)".into(),
            )
        } else {
            IcmpFailure::NoSocket(error.to_string())
        }
    })?;
    let config = PingConfig {
        count: Some(3),
        interval: Duration::from_millis(10),
        payload: 56,
        timeout,
        deadline: None,
        stop_after_replies: None,
    };
    let never = AtomicBool::new(false);
    let outcome = ping::run(&mut pinger, &config, &never, &mut |_| {});
    if let Some(failure) = outcome.link_failure {
        return Err(IcmpFailure::NoSocket(failure.to_string()));
    }
    let summary = outcome.summary;
    Ok(IcmpOutcome {
        kind: pinger.kind(),
        sent: summary.transmitted,
        received: summary.received,
        rtt_us: summary.rtt_avg_us,
        send_error: summary
            .extra
            .get("send_error")
            .and_then(|error| error.as_str())
            .map(str::to_string),
    })
}

fn measure_tcp(target: IpAddr, timeout: Duration) -> Result<RoundTrip, ProbeError> {
    round_trips::tcp_round_trip(target, timeout).map_err(|error| ProbeError::from_io(&error))
}

fn measure_udp(target: IpAddr, timeout: Duration) -> Result<RoundTrip, ProbeError> {
    round_trips::udp_round_trip(target, timeout).map_err(|error| ProbeError::from_io(&error))
}

/// `connection timed out` reads better than the raw `os error 110` text in a finding.
pub(crate) fn describe_io(error: &std::io::Error) -> String {
    match error.kind() {
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => {
            "timed out (packets dropped?)".into()
        }
        _ => {
            let text = error.to_string();
            // "Network is unreachable (os error 101)": the number adds nothing for a reader.
            match text.rfind(" (os error ") {
                Some(at) if text.ends_with(')') => text[..at].to_string(),
                _ => text,
            }
        }
    }
}
