//! The exporter's configuration file (TOML): probe modules and the targets that use them.
//!
//! ```toml
//! [modules.icmp]
//! prober = "icmp"          # icmp | ping | bert | doctor | listeners | martians
//! packets = 5              # a burst per probe, so loss and percentiles are real
//! spacing = "10ms"         # between the packets of a burst
//! timeout = "1s"           # per packet
//!
//! [[targets]]
//! name = "lo4"
//! module = "icmp"
//! target = "127.0.0.1"
//! interval = "1s"
//! ```
//!
//! A configuration is checked whole before it is used: every error names the line it is on.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::ops::Range;
use std::time::Duration;

use loopscope_report::prometheus::Histogram;
use serde::Deserialize;
use toml::Spanned;

/// Why a configuration was refused; the message starts with `line N:` when a line is known.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ConfigError {
    /// One line: where and why.
    pub message: String,
}

impl ConfigError {
    /// The message as one printable line. Reasons quote the file's values, and a TOML string
    /// may hold escaped line breaks and control characters: printed raw, a refused reload
    /// could forge lines in the exporter's log or drive the terminal (found by the
    /// `exporter_config` fuzz target).
    fn new(message: impl std::fmt::Display) -> Self {
        ConfigError {
            message: loopscope_report::text::escape_control(&message.to_string()).into_owned(),
        }
    }

    fn at(text: &str, span: Range<usize>, reason: impl std::fmt::Display) -> Self {
        let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
        ConfigError::new(format_args!("line {line}: {reason}"))
    }
}

/// What a module measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Prober {
    /// ICMP/ICMPv6 echo to an address or host name.
    Icmp,
    /// Stamped frames over any link endpoint (`udp://`, `tcp://`, `serial:`...) to a
    /// reflector or a loopback plug.
    Ping,
    /// STAMP (RFC 8762) test packets to a session-reflector (`HOST:PORT`, port 862 by
    /// default): round trips and the delay of each direction.
    Stamp,
    /// A continuous, slow BERT over a link.
    Bert,
    /// This host's (or a namespace's) loopback health: each doctor check as a gauge.
    Doctor,
    /// Listening sockets and their exposure.
    Listeners,
    /// A continuous capture on an interface (the target), martian packets counted by reason.
    Martians,
}

impl Prober {
    /// The name the configuration and the metrics use.
    pub fn name(self) -> &'static str {
        match self {
            Prober::Icmp => "icmp",
            Prober::Ping => "ping",
            Prober::Stamp => "stamp",
            Prober::Bert => "bert",
            Prober::Doctor => "doctor",
            Prober::Listeners => "listeners",
            Prober::Martians => "martians",
        }
    }
}

/// Which IP version an ICMP probe uses for a host name with addresses of both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum IpProtocol {
    /// IPv4 only.
    Ip4,
    /// IPv6 only.
    Ip6,
    /// IPv4 when the name has an IPv4 address or the probe over it cannot start, else IPv6.
    PreferIp4,
    /// IPv6 first, IPv4 when the name has none or the probe over IPv6 cannot start.
    #[default]
    PreferIp6,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    listen: Option<Spanned<String>>,
    #[serde(default)]
    workers: Option<Spanned<usize>>,
    #[serde(default)]
    modules: BTreeMap<String, Spanned<RawModule>>,
    #[serde(default)]
    targets: Vec<Spanned<RawTarget>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModule {
    prober: Prober,
    packets: Option<Spanned<u64>>,
    spacing: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    payload: Option<usize>,
    ip_protocol: Option<IpProtocol>,
    rtt_buckets: Option<Spanned<Vec<f64>>>,
    impair: Option<Spanned<String>>,
    pattern: Option<Spanned<String>>,
    netns: Option<String>,
    checks: Option<Vec<Spanned<String>>>,
    hosts_file: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    name: Spanned<String>,
    module: Spanned<String>,
    #[serde(default)]
    target: Option<Spanned<String>>,
    interval: Option<Spanned<String>>,
    source: Option<Spanned<String>>,
    interface: Option<String>,
}

/// A probe module: what to measure and how.
#[derive(Debug, Clone, PartialEq)]
pub struct Module {
    /// Its name in the configuration (and the `module` label).
    pub name: String,
    /// What it measures.
    pub prober: Prober,
    /// Packets per probe (ping, icmp).
    pub packets: u64,
    /// Time between the packets of a probe.
    pub spacing: Duration,
    /// How long a packet waits for its reply before it counts as lost.
    pub timeout: Duration,
    /// Payload bytes per packet.
    pub payload: usize,
    /// IPv4/IPv6 choice for host names (icmp).
    pub ip_protocol: IpProtocol,
    /// Upper bounds of the RTT histogram's buckets, in seconds.
    pub rtt_buckets: Vec<f64>,
    /// Impairment options for link modules (the `sim:` options, as `--impair` takes them).
    pub impair: Option<String>,
    /// BERT pattern (bert); the link's pace sets the rate (a serial line's baud rate, or
    /// `impair = "rate=9600"`).
    pub pattern: String,
    /// Network namespace (name under /run/netns or a path) the doctor, listeners or martians
    /// capture look at.
    pub netns: Option<String>,
    /// Doctor checks to run (empty: all).
    pub checks: Vec<String>,
    /// hosts(5) file the doctor resolves `localhost` from.
    pub hosts_file: Option<String>,
}

/// The RTT buckets when a module gives none: 1 µs to about 4 s, doubling (23 buckets). Loopback
/// round trips are a few to a few tens of microseconds, so the first buckets must start there
/// (smokeping_prober's start at 50 µs and put every loopback RTT in one bucket).
pub(crate) fn default_rtt_buckets() -> Vec<f64> {
    Histogram::exponential_bounds(1e-6, 2.0, 23)
}

impl Module {
    fn defaults(name: &str, prober: Prober) -> Module {
        Module {
            name: name.to_string(),
            prober,
            packets: 5,
            spacing: Duration::from_millis(10),
            timeout: Duration::from_secs(1),
            payload: 56,
            ip_protocol: IpProtocol::default(),
            rtt_buckets: default_rtt_buckets(),
            impair: None,
            pattern: "prbs15".into(),
            netns: None,
            checks: Vec::new(),
            hosts_file: None,
        }
    }

    /// The modules that exist without a configuration: `icmp`, as blackbox_exporter's example
    /// configuration names it, so a scrape config written for it works unchanged.
    pub fn builtin() -> BTreeMap<String, Module> {
        let mut modules = BTreeMap::new();
        modules.insert("icmp".into(), Module::defaults("icmp", Prober::Icmp));
        let mut v4 = Module::defaults("icmp_ipv4", Prober::Icmp);
        v4.ip_protocol = IpProtocol::Ip4;
        modules.insert(v4.name.clone(), v4);
        let mut v6 = Module::defaults("icmp_ipv6", Prober::Icmp);
        v6.ip_protocol = IpProtocol::Ip6;
        modules.insert(v6.name.clone(), v6);
        modules.insert("doctor".into(), Module::defaults("doctor", Prober::Doctor));
        modules.insert(
            "listeners".into(),
            Module::defaults("listeners", Prober::Listeners),
        );
        modules
    }

    /// The longest a probe of this module can take (what `/probe` and the scheduler expect).
    pub fn expected_duration(&self) -> Duration {
        match self.prober {
            Prober::Icmp | Prober::Ping | Prober::Stamp => {
                self.spacing * u32::try_from(self.packets.saturating_sub(1)).unwrap_or(u32::MAX)
                    + self.timeout
            }
            _ => self.timeout,
        }
    }
}

/// One thing to probe on a schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// Its name (the `target` label): unique in the file.
    pub name: String,
    /// The module's name.
    pub module: String,
    /// What to probe: an address or host name (icmp), an endpoint (ping, bert), an interface
    /// (martians, `any` for all); empty for
    /// host-wide modules (doctor, listeners).
    pub target: String,
    /// Time between probes.
    pub interval: Duration,
    /// Source address of the probe's packets.
    pub source: Option<IpAddr>,
    /// Interface the probe's socket is bound to (SO_BINDTODEVICE).
    pub interface: Option<String>,
}

/// A whole configuration, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `listen` from the file (the command line's `--listen` wins).
    pub listen: Option<String>,
    /// Threads that run probes at once.
    pub workers: usize,
    /// Modules by name: the built-in ones plus the file's (which may replace them).
    pub modules: BTreeMap<String, Module>,
    /// Targets in file order.
    pub targets: Vec<Target>,
}

/// The default number of probe threads. A thousand targets probed every second with bursts of
/// about 50 ms keep some 60 busy.
pub(crate) const DEFAULT_WORKERS: usize = 64;

impl Config {
    /// Parses and checks a configuration file's text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let raw: RawFile = toml::from_str(text).map_err(|error| {
            let reason = error.message().trim().to_string();
            match error.span() {
                Some(span) => ConfigError::at(text, span, reason),
                None => ConfigError::new(reason),
            }
        })?;
        let duration = |value: &Spanned<String>| {
            loopscope_report::units::parse_duration(value.get_ref())
                .map_err(|error| ConfigError::at(text, value.span(), error))
        };
        let mut modules = Module::builtin();
        for (name, spanned) in &raw.modules {
            let at = spanned.span();
            let raw_module = spanned.get_ref();
            let mut module = Module::defaults(name, raw_module.prober);
            if let Some(packets) = &raw_module.packets {
                if *packets.get_ref() == 0 || *packets.get_ref() > 10_000 {
                    return Err(ConfigError::at(
                        text,
                        packets.span(),
                        "packets must be 1..=10000",
                    ));
                }
                module.packets = *packets.get_ref();
            }
            if let Some(spacing) = &raw_module.spacing {
                module.spacing = duration(spacing)?;
            }
            if let Some(timeout) = &raw_module.timeout {
                module.timeout = duration(timeout)?;
                if module.timeout.is_zero() {
                    return Err(ConfigError::at(
                        text,
                        timeout.span(),
                        "timeout must be above 0",
                    ));
                }
            }
            if let Some(payload) = raw_module.payload {
                module.payload = payload;
            }
            if let Some(ip_protocol) = raw_module.ip_protocol {
                module.ip_protocol = ip_protocol;
            }
            if let Some(buckets) = &raw_module.rtt_buckets {
                let values = buckets.get_ref();
                if values.is_empty() || values.iter().any(|b| !b.is_finite() || *b <= 0.0) {
                    return Err(ConfigError::at(
                        text,
                        buckets.span(),
                        "rtt_buckets must be positive, finite seconds (e.g. [1e-6, 1e-5, 1e-4])",
                    ));
                }
                module.rtt_buckets = values.clone();
            }
            if let Some(impair) = &raw_module.impair {
                loopscope_link::adapter::AdapterStack::from_flags(
                    false,
                    Some(impair.get_ref()),
                    None,
                )
                .map_err(|error| ConfigError::at(text, impair.span(), error))?;
                if raw_module.prober != Prober::Ping && raw_module.prober != Prober::Bert {
                    return Err(ConfigError::at(
                        text,
                        impair.span(),
                        "impair wraps a link: only ping and bert modules take it",
                    ));
                }
                module.impair = Some(impair.get_ref().clone());
            }
            if let Some(pattern) = &raw_module.pattern {
                pattern
                    .get_ref()
                    .parse::<loopscope_pattern::spec::PatternKind>()
                    .map_err(|error| ConfigError::at(text, pattern.span(), error))?;
                module.pattern = pattern.get_ref().clone();
            }
            module.netns = raw_module.netns.clone();
            if let Some(checks) = &raw_module.checks {
                for check in checks {
                    if loopscope_host::doctor::find(check.get_ref()).is_none() {
                        return Err(ConfigError::at(
                            text,
                            check.span(),
                            format!(
                                "no doctor check named '{}' (see `loopscope doctor --list`)",
                                check.get_ref()
                            ),
                        ));
                    }
                }
                module.checks = checks.iter().map(|c| c.get_ref().clone()).collect();
            }
            module.hosts_file = raw_module.hosts_file.clone();
            if name.is_empty() {
                return Err(ConfigError::at(text, at, "a module needs a name"));
            }
            modules.insert(name.clone(), module);
        }

        let mut targets: Vec<Target> = Vec::new();
        for spanned in &raw.targets {
            let raw_target = spanned.get_ref();
            let name = raw_target.name.get_ref();
            if name.is_empty() {
                return Err(ConfigError::at(
                    text,
                    raw_target.name.span(),
                    "a target's name cannot be empty",
                ));
            }
            if targets.iter().any(|t| &t.name == name) {
                return Err(ConfigError::at(
                    text,
                    raw_target.name.span(),
                    format!("a second target named '{name}': names must be unique"),
                ));
            }
            let module_name = raw_target.module.get_ref();
            let Some(module) = modules.get(module_name) else {
                let known: Vec<&str> = modules.keys().map(String::as_str).collect();
                return Err(ConfigError::at(
                    text,
                    raw_target.module.span(),
                    format!(
                        "no module named '{module_name}' (modules: {})",
                        known.join(", ")
                    ),
                ));
            };
            let target_text = raw_target
                .target
                .as_ref()
                .map(|t| t.get_ref().clone())
                .unwrap_or_default();
            let needs_target = matches!(
                module.prober,
                Prober::Icmp | Prober::Ping | Prober::Stamp | Prober::Bert | Prober::Martians
            );
            if needs_target && target_text.is_empty() {
                return Err(ConfigError::at(
                    text,
                    spanned.span(),
                    format!(
                        "target '{name}': module '{module_name}' ({}) needs target = \"...\"",
                        module.prober.name()
                    ),
                ));
            }
            if matches!(module.prober, Prober::Ping | Prober::Bert)
                && let Some(spanned_target) = &raw_target.target
                && let Err(error) = loopscope_link::Endpoint::parse(&target_text)
            {
                return Err(ConfigError::at(text, spanned_target.span(), error));
            }
            let interval = match &raw_target.interval {
                Some(interval) => {
                    let value = duration(interval)?;
                    if value < Duration::from_millis(10) {
                        return Err(ConfigError::at(
                            text,
                            interval.span(),
                            "interval must be at least 10ms",
                        ));
                    }
                    value
                }
                None => Duration::from_secs(15),
            };
            let source = match &raw_target.source {
                Some(source) => Some(source.get_ref().parse::<IpAddr>().map_err(|_| {
                    ConfigError::at(
                        text,
                        source.span(),
                        format!("source '{}' is not an IP address", source.get_ref()),
                    )
                })?),
                None => None,
            };
            targets.push(Target {
                name: name.clone(),
                module: module_name.clone(),
                target: target_text,
                interval,
                source,
                interface: raw_target.interface.clone(),
            });
        }
        let workers = match &raw.workers {
            Some(workers) if *workers.get_ref() == 0 || *workers.get_ref() > 4096 => {
                return Err(ConfigError::at(
                    text,
                    workers.span(),
                    "workers must be 1..=4096",
                ));
            }
            Some(workers) => *workers.get_ref(),
            None => DEFAULT_WORKERS,
        };
        Ok(Config {
            listen: raw.listen.map(|l| l.into_inner()),
            workers,
            modules,
            targets,
        })
    }

    /// Reads and checks a configuration file.
    pub fn load(path: &std::path::Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| {
            ConfigError::new(format_args!("cannot read {}: {error}", path.display()))
        })?;
        Config::parse(&text).map_err(|error| {
            ConfigError::new(format_args!("{}: {}", path.display(), error.message))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `exporter_config` fuzz target's find: an `impair` string with an escaped line break
    /// and a backspace was quoted raw in the refusal, two lines with a control character.
    #[test]
    fn a_refusal_quoting_control_characters_stays_one_printable_line() {
        let error = Config::parse(
            "[modules.serial]\nprober = \"bert\"\nimpair = \"nope\\nreloaded: ok\\b\"\n",
        )
        .unwrap_err();
        assert!(error.message.starts_with("line 3: "), "{}", error.message);
        assert!(
            !error.message.chars().any(char::is_control),
            "{:?}",
            error.message
        );
        assert!(
            error.message.contains("nope\\nreloaded: ok\\x08"),
            "{}",
            error.message
        );
    }

    #[test]
    fn a_small_file() {
        let config = Config::parse(
            "[modules.burst]\nprober = \"icmp\"\npackets = 3\nspacing = \"5ms\"\n\n\
             [[targets]]\nname = \"lo\"\nmodule = \"burst\"\ntarget = \"127.0.0.1\"\ninterval = \"2s\"\n",
        )
        .unwrap();
        let module = &config.modules["burst"];
        assert_eq!(module.packets, 3);
        assert_eq!(module.spacing, Duration::from_millis(5));
        assert_eq!(config.targets[0].interval, Duration::from_secs(2));
        assert_eq!(config.targets[0].module, "burst");
        assert!(config.modules.contains_key("icmp"));
    }

    #[test]
    fn errors_name_the_line() {
        let error =
            Config::parse("[[targets]]\nname = \"a\"\nmodule = \"nope\"\ntarget = \"127.0.0.1\"\n")
                .unwrap_err();
        assert!(
            error.message.starts_with("line 3: no module named 'nope'"),
            "{}",
            error.message
        );

        let error = Config::parse("[[targets]]\nname = \"a\"\nmodule = \"icmp\"\ntarget = \"127.0.0.1\"\ninterval = \"soon\"\n").unwrap_err();
        assert!(error.message.starts_with("line 5: "), "{}", error.message);

        let error = Config::parse("listen = \n").unwrap_err();
        assert!(error.message.starts_with("line 1: "), "{}", error.message);

        let error = Config::parse("[[targets]]\nname = \"a\"\nmodul = \"icmp\"\n").unwrap_err();
        assert!(error.message.contains("unknown field"), "{}", error.message);

        let error = Config::parse(
            "[[targets]]\nname = \"a\"\nmodule = \"icmp\"\ntarget = \"::1\"\n\n[[targets]]\nname = \"a\"\nmodule = \"icmp\"\ntarget = \"::1\"\n",
        )
        .unwrap_err();
        assert!(
            error.message.starts_with("line 7: a second target"),
            "{}",
            error.message
        );
    }

    #[test]
    fn icmp_needs_a_target() {
        let error = Config::parse("[[targets]]\nname = \"a\"\nmodule = \"icmp\"\n").unwrap_err();
        assert!(error.message.contains("needs target"), "{}", error.message);
        // Host-wide modules do not.
        Config::parse("[[targets]]\nname = \"host\"\nmodule = \"doctor\"\n").unwrap();
    }

    #[test]
    fn default_buckets_start_at_a_microsecond() {
        let buckets = default_rtt_buckets();
        assert_eq!(buckets[0], 1e-6);
        assert!(*buckets.last().unwrap() > 4.0);
    }
}
