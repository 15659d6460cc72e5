//! Everything about one input, as one serialisable record (what `loopscope addr` prints).

use std::net::{IpAddr, Ipv4Addr};

use serde::Serialize;

use crate::guard::{LOCALHOST_ADDRESSES, Resolver};
use crate::martian::{LinuxTreatment, MartianReason};
use crate::notation::{self, Host, NotationError, Parsed};
use crate::registry::{self, Entry, REGISTRY_SNAPSHOT};
use crate::verdict::{AddressVerdict, Decision, Embedded, Policy, classify};

/// A registry row as reported.
#[derive(Debug, Clone, Serialize)]
pub struct RegistryRow {
    /// The row itself, its fields flattened into the JSON object.
    #[serde(flatten)]
    pub entry: Entry,
    /// The date of the registry copy compiled in (IANA updates the registries).
    pub snapshot: &'static str,
}

impl RegistryRow {
    fn new(entry: &Entry) -> Self {
        RegistryRow {
            entry: *entry,
            snapshot: REGISTRY_SNAPSHOT,
        }
    }
}

/// A martian verdict as reported.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Martian {
    /// The reason's code (`loopback_source`, `this_network_source`...), as `martians` prints it.
    pub code: &'static str,
    /// The RFC that makes it martian.
    pub rfc: &'static str,
    /// What this Linux kernel does with such a packet.
    pub linux: LinuxTreatment,
    /// That treatment in words.
    pub linux_note: &'static str,
}

impl From<MartianReason> for Martian {
    fn from(reason: MartianReason) -> Self {
        Martian {
            code: reason.code(),
            rfc: reason.rfc(),
            linux: reason.linux(),
            linux_note: reason.linux_note(),
        }
    }
}

/// An embedded IPv4 address, classified in turn.
#[derive(Debug, Clone, Serialize)]
pub struct EmbeddedReport {
    /// How it is embedded (`ipv4_mapped`, `nat64`, `6to4`, `teredo_client`...).
    pub kind: &'static str,
    /// The IPv4 address.
    pub ipv4: Ipv4Addr,
    /// The Teredo client's UDP port, where there is one.
    pub port: Option<u16>,
    /// The most specific registry row containing it.
    pub registry: Option<&'static str>,
    /// It is a loopback address (127/8).
    pub loopback: bool,
    /// The registry marks it globally reachable.
    pub globally_reachable: bool,
}

impl From<&Embedded> for EmbeddedReport {
    fn from(embedded: &Embedded) -> Self {
        let verdict = classify(IpAddr::V4(embedded.ipv4));
        EmbeddedReport {
            kind: embedded.kind.code(),
            ipv4: embedded.ipv4,
            port: embedded.port,
            registry: verdict.entry.map(|e| e.name),
            loopback: verdict.loopback,
            globally_reachable: verdict.globally_reachable,
        }
    }
}

/// One parser's reading.
#[derive(Debug, Clone, Serialize)]
pub struct ReadingReport {
    /// The parser's code (`strict`, `inet_aton`, `whatwg`, `decimal`, `rfc3986`).
    pub parser: &'static str,
    /// Which software reads addresses that way.
    pub used_by: &'static str,
    /// The host it would contact, or `null` if it rejects the input.
    pub host: Option<Host>,
    /// It reads the same host as the primary reading.
    pub agrees: bool,
}

/// One resolved address of a name, with its own decision.
#[derive(Debug, Clone, Serialize)]
pub struct AnswerReport {
    /// The address.
    pub address: IpAddr,
    /// The most specific registry row containing it.
    pub registry: Option<&'static str>,
    /// It is a loopback address.
    pub loopback: bool,
    /// The registry marks it globally reachable.
    pub globally_reachable: bool,
    /// Whether the SSRF guard lets a connection to it through.
    pub ssrf: Decision,
    /// Why, in words.
    pub reason: String,
}

/// Everything about one input.
#[derive(Debug, Clone, Serialize)]
pub struct Analysis {
    /// The input as given.
    pub input: String,
    /// The address that would be contacted (the first answer for a name; `null` if unresolved).
    pub address: Option<IpAddr>,
    /// The host the primary reading found (an address or a name).
    pub host: Host,
    /// Its notation (`ipv4`, `ipv4_inet_aton`, `url`...).
    pub notation: &'static str,
    /// The port, when the input has one.
    pub port: Option<u16>,
    /// The IPv6 zone (`%eth0`), when the input has one.
    pub zone: Option<String>,
    /// The URL scheme, when the input is a URL.
    pub scheme: Option<String>,
    /// The most specific registry row, or `null` for ordinary unicast.
    pub registry: Option<RegistryRow>,
    /// The date of the registry copy compiled in.
    pub registry_snapshot: &'static str,
    /// Every row containing the address, least specific first (`BLOCK NAME`).
    pub within: Vec<String>,
    /// 127/8, ::1 or ::ffff:127.0.0.0/104.
    pub loopback: bool,
    /// `localhost`, `localhost.` or `*.localhost` (RFC 6761 §6.3).
    pub loopback_by_name: bool,
    /// A connection to it lands on this host (loopback, or the unspecified address, which Linux
    /// connects locally).
    pub reaches_this_host: bool,
    /// `null` when the input is a name that did not resolve: then it is not known.
    pub globally_reachable: Option<bool>,
    /// False for a name whose addresses are unknown (resolution failed or is off); the
    /// address fields then describe nothing.
    pub resolved: bool,
    /// The code of the reason a packet *from* it is martian, if it is.
    pub martian_source: Option<&'static str>,
    /// The code of the reason a packet *to* it is martian, if it is.
    pub martian_destination: Option<&'static str>,
    /// That source verdict with its RFC and the kernel's treatment.
    pub martian_source_detail: Option<Martian>,
    /// That destination verdict with its RFC and the kernel's treatment.
    pub martian_destination_detail: Option<Martian>,
    /// IPv4 addresses embedded in it (RFC 4291 mapped, RFC 6052 NAT64, RFC 3056 6to4, RFC
    /// 4380 Teredo), each classified.
    pub embedded: Vec<EmbeddedReport>,
    /// How each parser reads the input: where they disagree, the input is ambiguous.
    pub readings: Vec<ReadingReport>,
    /// For names: every answer, each checked.
    pub answers: Vec<AnswerReport>,
    /// Whether the SSRF guard lets a connection to it through.
    pub ssrf: Decision,
    /// Why, in words.
    pub reason: String,
}

/// Analyses one input. Names are resolved with `resolver` when given (every answer checked);
/// without one, a name other than localhost is reported unresolved and denied.
pub fn analyze(
    input: &str,
    policy: &Policy,
    resolver: Option<&dyn Resolver>,
) -> Result<Analysis, NotationError> {
    let parsed = notation::parse(input)?;
    let loopback_by_name = matches!(&parsed.host, Host::Name(n) if notation::is_localhost_name(n));
    let answers: Result<Vec<IpAddr>, String> = match &parsed.host {
        Host::Ip(ip) => Ok(vec![*ip]),
        Host::Name(_) if loopback_by_name => Ok(LOCALHOST_ADDRESSES.to_vec()),
        Host::Name(name) => match resolver {
            Some(resolver) => resolver.resolve(name).map_err(|e| e.to_string()),
            None => Err(format!("name '{name}' not resolved (resolution is off)")),
        },
    };
    let readings = reading_reports(&parsed);
    let disagreement: Vec<String> = parsed
        .disagreements()
        .map(|r| {
            let host = r.host.as_ref().map_or(String::new(), Host::to_string);
            format!("{} ({}) reads {host}", r.parser.code(), r.parser.who())
        })
        .collect();

    let resolved = answers.is_ok();
    let (answers, unresolved) = match answers {
        Ok(answers) => (answers, None),
        Err(message) => (Vec::new(), Some(message)),
    };
    let verdicts: Vec<AddressVerdict> = answers.iter().map(|ip| classify(*ip)).collect();
    let decisions: Vec<_> = verdicts.iter().map(|v| policy.check(v)).collect();
    let first = verdicts.first();

    let denied = decisions
        .iter()
        .enumerate()
        .find(|(_, (d, _))| *d == Decision::Deny)
        .map(|(index, (_, why))| {
            if answers.len() > 1 {
                format!("answer {} {why}", answers[index])
            } else {
                why.to_string()
            }
        });
    let disagree = (!disagreement.is_empty())
        .then(|| format!("parsers disagree on the host: {}", disagreement.join("; ")));
    // The primary reading's own reason comes first; a disagreement alone is enough to deny.
    let (ssrf, reason) = match (unresolved, denied, disagree) {
        (Some(message), _, _) => (Decision::Deny, message),
        (None, Some(why), Some(disagree)) => (Decision::Deny, format!("{why}; also {disagree}")),
        (None, Some(why), None) => (Decision::Deny, why),
        (None, None, Some(disagree)) => (Decision::Deny, disagree),
        (None, None, None) => {
            let why = decisions
                .first()
                .map_or(String::new(), |(_, why)| why.to_string());
            (Decision::Allow, why)
        }
    };

    let answer_reports = if matches!(parsed.host, Host::Name(_)) {
        verdicts
            .iter()
            .zip(&decisions)
            .map(|(v, (d, why))| AnswerReport {
                address: v.address,
                registry: v.entry.map(|e| e.name),
                loopback: v.loopback,
                globally_reachable: v.globally_reachable,
                ssrf: *d,
                reason: why.to_string(),
            })
            .collect()
    } else {
        Vec::new()
    };

    Ok(Analysis {
        input: input.to_string(),
        address: first.map(|v| v.address),
        host: parsed.host.clone(),
        notation: parsed.notation.code(),
        port: parsed.port,
        zone: parsed.zone.clone(),
        scheme: parsed.scheme.clone(),
        registry: first.and_then(|v| v.entry).map(RegistryRow::new),
        registry_snapshot: REGISTRY_SNAPSHOT,
        within: first.map_or(Vec::new(), |v| {
            registry::matching(v.address)
                .map(|e| format!("{} {}", e.block, e.name))
                .collect()
        }),
        loopback: loopback_by_name || verdicts.iter().any(|v| v.loopback),
        loopback_by_name,
        reaches_this_host: loopback_by_name || verdicts.iter().any(|v| v.reaches_this_host),
        globally_reachable: (!verdicts.is_empty())
            .then(|| verdicts.iter().all(|v| v.globally_reachable)),
        resolved,
        martian_source: first.and_then(|v| v.martian_source).map(|m| m.code()),
        martian_destination: first.and_then(|v| v.martian_destination).map(|m| m.code()),
        martian_source_detail: first.and_then(|v| v.martian_source).map(Martian::from),
        martian_destination_detail: first.and_then(|v| v.martian_destination).map(Martian::from),
        embedded: first.map_or(Vec::new(), |v| v.embedded.iter().map(Into::into).collect()),
        readings,
        answers: answer_reports,
        ssrf,
        reason,
    })
}

fn reading_reports(parsed: &Parsed) -> Vec<ReadingReport> {
    parsed
        .readings
        .iter()
        .map(|r| ReadingReport {
            parser: r.parser.code(),
            used_by: r.parser.who(),
            host: r.host.clone(),
            agrees: r.host.as_ref() == Some(&parsed.host),
        })
        .collect()
}
