//! One probe of one target: the measure, host and listeners engines called as the CLI calls
//! them, their typed results kept for the metrics.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use loopscope_host::doctor::{self, Status};
use loopscope_link::Endpoint;
use loopscope_link::adapter::AdapterStack;
use loopscope_measure::ping::{self, Bind, IcmpPinger, PingConfig, PingEvent, SocketChoice};

use crate::config::{IpProtocol, Module, Prober, Target};

/// Packet counts of ping bursts: one burst's, or the sum of every burst since a target
/// appeared (the `+=` that [`crate::metrics::TargetMetrics`] keeps).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct PacketCounters {
    /// Requests sent.
    pub sent: u64,
    /// Replies that came back in time (not duplicates, not corrupt).
    pub received: u64,
    /// Requests without a timely reply.
    pub lost: u64,
    /// Replies seen twice.
    pub duplicates: u64,
    /// Replies after their timeout (counted lost too).
    pub late: u64,
    /// Replies that came back altered.
    pub corrupt: u64,
}

impl PacketCounters {
    /// The share of the requests that were lost (0 to 1); `None` when nothing was sent.
    pub(crate) fn loss_ratio(&self) -> Option<f64> {
        (self.sent > 0).then(|| self.lost as f64 / self.sent as f64)
    }
}

impl std::ops::AddAssign for PacketCounters {
    fn add_assign(&mut self, other: PacketCounters) {
        self.sent += other.sent;
        self.received += other.received;
        self.lost += other.lost;
        self.duplicates += other.duplicates;
        self.late += other.late;
        self.corrupt += other.corrupt;
    }
}

/// What a ping burst found.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct PingCounts {
    /// Its packet counts.
    pub packets: PacketCounters,
    /// The round trips of the replies, in seconds.
    pub rtts_s: Vec<f64>,
    /// 4 or 6 for ICMP probes (blackbox's `probe_ip_protocol`).
    pub ip_version: Option<u8>,
    /// STAMP: the mean one-way delays of the replies, forward and backward, in seconds.
    pub one_way_s: Option<(f64, f64)>,
}

/// One listening socket reachable from outside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ExposedSocket {
    /// "tcp" or "udp".
    pub protocol: &'static str,
    /// The bound address.
    pub address: String,
    /// The port.
    pub port: u16,
    /// The holders' command names, joined by ",", or "" when unknown.
    pub process: String,
}

/// What a probe found, by module kind.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Findings {
    /// icmp and ping.
    Ping(PingCounts),
    /// Each doctor check's status.
    Doctor(Vec<(&'static str, Status)>),
    /// Sockets counted by exposure, and the exposed ones.
    Listeners {
        /// Sockets bound to loopback only.
        loopback_only: usize,
        /// The exposed sockets.
        exposed: Vec<ExposedSocket>,
    },
    /// The probe could not run (bad name, no socket): nothing was measured.
    Nothing,
}

/// The result of one probe.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ProbeResult {
    /// The probe succeeded (ping: at least one reply; doctor: no check failed; listeners: the
    /// list was read).
    pub success: bool,
    /// How long the probe took.
    pub duration: Duration,
    /// What it found.
    pub findings: Findings,
    /// Why it failed to run, when it did.
    pub error: Option<String>,
}

/// Runs one probe of `target` with `module`, stopping early when `stop` is set, and after
/// `budget` when one is given (a `/probe` scrape's timeout): what was measured until then is
/// the result, and requests still unanswered at that point count as lost.
pub(crate) fn run(
    module: &Module,
    target: &Target,
    stop: &AtomicBool,
    budget: Option<Duration>,
) -> ProbeResult {
    let started = Instant::now();
    let outcome = match module.prober {
        Prober::Icmp => icmp(module, target, stop, budget),
        Prober::Ping => link_ping(module, target, stop, budget),
        Prober::Stamp => stamp(module, target, stop, budget),
        Prober::Doctor => run_doctor(module, budget),
        Prober::Listeners => listeners(module),
        Prober::Bert | Prober::Martians => Err(format!(
            "{} modules run continuously (their figures are on /metrics, not per probe)",
            module.prober.name()
        )),
    };
    let duration = started.elapsed();
    match outcome {
        Ok((success, findings)) => ProbeResult {
            success,
            duration,
            findings,
            error: None,
        },
        Err(error) => ProbeResult {
            success: false,
            duration,
            findings: Findings::Nothing,
            error: Some(error),
        },
    }
}

fn ping_config(module: &Module, budget: Option<Duration>) -> PingConfig {
    PingConfig {
        count: Some(module.packets),
        interval: module.spacing,
        payload: module.payload,
        timeout: module.timeout,
        deadline: budget,
        stop_after_replies: None,
    }
}

/// The addresses to try for an ICMP target, in the order the module's IP protocol asks for.
/// A name is resolved afresh on every probe (getaddrinfo, no cache of ours), so a changed
/// record is followed as soon as the system's resolver lets it expire: the record's TTL.
pub(crate) fn resolve(host: &str, protocol: IpProtocol) -> Result<Vec<IpAddr>, String> {
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    let addresses: Vec<IpAddr> = match literal.parse::<IpAddr>() {
        Ok(address) => vec![address],
        Err(_) => (literal, 0)
            .to_socket_addrs()
            .map_err(|error| format!("cannot resolve '{host}': {error}"))?
            .map(|address: SocketAddr| address.ip())
            .collect(),
    };
    let (v4, v6): (Vec<IpAddr>, Vec<IpAddr>) = addresses.into_iter().partition(IpAddr::is_ipv4);
    let ordered: Vec<IpAddr> = match protocol {
        IpProtocol::Ip4 => v4,
        IpProtocol::Ip6 => v6,
        IpProtocol::PreferIp4 => v4
            .into_iter()
            .take(1)
            .chain(v6.into_iter().take(1))
            .collect(),
        IpProtocol::PreferIp6 => v6
            .into_iter()
            .take(1)
            .chain(v4.into_iter().take(1))
            .collect(),
    };
    if ordered.is_empty() {
        return Err(format!(
            "'{host}' has no address of the family the module asks for ({protocol:?})"
        ));
    }
    Ok(ordered)
}

fn icmp(
    module: &Module,
    target: &Target,
    stop: &AtomicBool,
    budget: Option<Duration>,
) -> Result<(bool, Findings), String> {
    let host = target
        .target
        .strip_prefix("icmp://")
        .unwrap_or(&target.target);
    let addresses = resolve(host, module.ip_protocol)?;
    let bind = Bind {
        source: target.source,
        interface: target.interface.clone(),
    };
    let choice = SocketChoice::from_env().map_err(|error| error.to_string())?;
    // The preferred family first; the other one when a socket for the first cannot be opened
    // (no route, no address of that family here).
    let mut last_error = String::new();
    for address in addresses {
        let mut pinger = match IcmpPinger::open_bound(address, choice, &bind) {
            Ok(pinger) => pinger,
            Err(error) => {
                last_error = format!("{address}: {error}");
                continue;
            }
        };
        let mut counts = run_ping(&mut pinger, module, stop, budget);
        counts.ip_version = Some(if address.is_ipv4() { 4 } else { 6 });
        return Ok((counts.packets.received > 0, Findings::Ping(counts)));
    }
    Err(last_error)
}

fn link_ping(
    module: &Module,
    target: &Target,
    stop: &AtomicBool,
    budget: Option<Duration>,
) -> Result<(bool, Findings), String> {
    let endpoint = Endpoint::parse(&target.target).map_err(|error| error.to_string())?;
    let adapters = AdapterStack::from_flags(false, module.impair.as_deref(), None)
        .map_err(|error| error.to_string())?;
    let mut pinger =
        ping::open(&endpoint, SocketChoice::Auto, &adapters).map_err(|error| error.to_string())?;
    let counts = run_ping(pinger.as_mut(), module, stop, budget);
    Ok((counts.packets.received > 0, Findings::Ping(counts)))
}

fn stamp(
    module: &Module,
    target: &Target,
    exporter_stop: &AtomicBool,
    budget: Option<Duration>,
) -> Result<(bool, Findings), String> {
    use loopscope_measure::stamp::{self, SenderConfig, TimestampFormat};
    let text = target
        .target
        .strip_prefix("udp://")
        .unwrap_or(&target.target);
    // The STAMP port (RFC 8762 section 4.1) when none is given.
    let with_port = if text.parse::<SocketAddr>().is_ok()
        || text.rsplit_once(':').is_some_and(|(host, port)| {
            !host.ends_with(':') && !host.contains(':') && port.parse::<u16>().is_ok()
        }) {
        text.to_string()
    } else {
        format!("{text}:862")
    };
    let address = with_port
        .to_socket_addrs()
        .map_err(|error| format!("cannot resolve '{text}': {error}"))?
        .next()
        .ok_or_else(|| format!("'{text}' has no address"))?;
    let config = SenderConfig {
        target: address,
        count: Some(module.packets),
        interval: module.spacing,
        size: module.payload.max(stamp::MIN_PACKET_LEN),
        timeout: module.timeout,
        format: TimestampFormat::Ntp,
        send_options: stamp::SendOptions::default(),
        auth: None,
        tlvs: stamp::RequestTlvs::new(),
        twamp_light: false,
        stateful_reflector: false,
        same_clock: false,
    };
    // The STAMP sender has a stop flag of its own and no deadline: a watchdog sets the flag
    // when the exporter stops or the budget is spent, and ends as soon as the run does.
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let (done, finished) = std::sync::mpsc::channel::<()>();
    let run = std::thread::scope(|scope| {
        let stop = &stop;
        scope.spawn(move || {
            let until = budget.map(|budget| Instant::now() + budget);
            loop {
                let left = until.map_or(Duration::from_millis(100), |until| {
                    until
                        .saturating_duration_since(Instant::now())
                        .min(Duration::from_millis(100))
                });
                if exporter_stop.load(std::sync::atomic::Ordering::Relaxed) || left.is_zero() {
                    stop.store(true, std::sync::atomic::Ordering::SeqCst);
                    return;
                }
                if finished.recv_timeout(left) != Err(std::sync::mpsc::RecvTimeoutError::Timeout) {
                    return;
                }
            }
        });
        let run = stamp::send(&config, stop, |_| {});
        drop(done);
        run
    })
    .map_err(|error| error.to_string())?;
    let mean = |values: &[f64]| values.iter().sum::<f64>() / values.len().max(1) as f64 / 1e6;
    let counts = PingCounts {
        packets: PacketCounters {
            sent: run.counts.transmitted,
            received: run.counts.received,
            lost: run.counts.transmitted.saturating_sub(run.counts.received),
            duplicates: run.counts.duplicates,
            ..PacketCounters::default()
        },
        rtts_s: run.rtt_us.iter().map(|us| us / 1e6).collect(),
        one_way_s: (!run.forward_us.is_empty())
            .then(|| (mean(&run.forward_us), mean(&run.backward_us))),
        ..PingCounts::default()
    };
    Ok((counts.packets.received > 0, Findings::Ping(counts)))
}

fn run_ping(
    pinger: &mut dyn ping::Pinger,
    module: &Module,
    stop: &AtomicBool,
    budget: Option<Duration>,
) -> PingCounts {
    let mut rtts_s = Vec::with_capacity(module.packets as usize);
    let outcome = ping::run(pinger, &ping_config(module, budget), stop, &mut |event| {
        if let PingEvent::Reply(reply) = event
            && !reply.duplicate
            && !reply.corrupt
        {
            rtts_s.push(reply.rtt_us / 1e6);
        }
    });
    let summary = outcome.summary;
    let extra = |name: &str| {
        summary
            .extra
            .get(name)
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0)
    };
    PingCounts {
        packets: PacketCounters {
            sent: summary.transmitted,
            received: summary.received,
            lost: summary.transmitted.saturating_sub(summary.received),
            duplicates: summary.duplicates,
            late: extra("late"),
            corrupt: extra("corrupt"),
        },
        rtts_s,
        ip_version: None,
        one_way_s: None,
    }
}

fn run_doctor(module: &Module, budget: Option<Duration>) -> Result<(bool, Findings), String> {
    let selected: Vec<&'static doctor::Check> = doctor::CHECKS
        .iter()
        .filter(|check| module.checks.is_empty() || module.checks.iter().any(|n| n == check.name))
        .collect();
    let options = doctor::Options {
        hosts_file: module.hosts_file.as_ref().map(Into::into),
        icmp_socket: SocketChoice::from_env().map_err(|error| error.to_string())?,
        timeout: module
            .timeout
            .min(Duration::from_secs(5))
            .min(budget.unwrap_or(Duration::MAX)),
        // A probe every few seconds must stay light: a short BERT and a short latency loop.
        bert_bytes: 1 << 20,
        latency_round_trips: 200,
    };
    let results = loopscope_listeners::in_netns(module.netns.as_deref(), move || {
        let mut probe = doctor::Probe::new(options);
        doctor::run(&selected, &mut probe, |_| {})
    })
    .map_err(|error| error.to_string())?;
    let statuses: Vec<(&'static str, Status)> = results
        .iter()
        .map(|result| (result.name, result.status))
        .collect();
    let passed = statuses.iter().all(|(_, status)| *status != Status::Fail);
    Ok((passed, Findings::Doctor(statuses)))
}

fn listeners(module: &Module) -> Result<(bool, Findings), String> {
    let snapshot = loopscope_listeners::snapshot(&loopscope_listeners::Options {
        source: loopscope_listeners::SocketSource::Auto,
        netns: module.netns.clone(),
    })
    .map_err(|error| error.to_string())?;
    let mut loopback_only = 0;
    let mut exposed = Vec::new();
    for listener in &snapshot.listeners {
        if !listener.exposed {
            loopback_only += 1;
            continue;
        }
        let mut commands: Vec<&str> = listener
            .processes
            .iter()
            .map(|process| process.command.as_str())
            .collect();
        commands.sort_unstable();
        commands.dedup();
        exposed.push(ExposedSocket {
            protocol: listener.protocol.name(),
            address: listener.local_address.to_string(),
            port: listener.local_port,
            process: commands.join(","),
        });
    }
    exposed.sort_by(|a, b| (a.protocol, a.port, &a.address).cmp(&(b.protocol, b.port, &b.address)));
    exposed.dedup();
    Ok((
        true,
        Findings::Listeners {
            loopback_only,
            exposed,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_addresses_need_no_resolver() {
        assert_eq!(
            resolve("127.0.0.1", IpProtocol::PreferIp6).unwrap(),
            vec!["127.0.0.1".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(
            resolve("[::1]", IpProtocol::Ip6).unwrap(),
            vec!["::1".parse::<IpAddr>().unwrap()]
        );
        // An IPv4 literal with an IPv6-only module is refused, not silently used.
        assert!(resolve("127.0.0.1", IpProtocol::Ip6).is_err());
    }
}
