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
    #[serde(flatten)]
    pub entry: Entry,
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
    pub code: &'static str,
    pub rfc: &'static str,
    pub linux: LinuxTreatment,
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
    pub kind: &'static str,
    pub ipv4: Ipv4Addr,
    pub port: Option<u16>,
    pub registry: Option<&'static str>,
    pub loopback: bool,
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
    pub parser: &'static str,
    pub used_by: &'static str,
    /// The host it would contact, or `null` if it rejects the input.
    pub host: Option<Host>,
    pub agrees: bool,
}

/// One resolved address of a name, with its own decision.
#[derive(Debug, Clone, Serialize)]
pub struct AnswerReport {
    pub address: IpAddr,
    pub registry: Option<&'static str>,
    pub loopback: bool,
    pub globally_reachable: bool,
    pub ssrf: Decision,
    pub reason: String,
}

/// Everything about one input.
#[derive(Debug, Clone, Serialize)]
pub struct Analysis {
    pub input: String,
    /// The address that would be contacted (the first answer for a name; `null` if unresolved).
    pub address: Option<IpAddr>,
    pub host: Host,
    pub notation: &'static str,
    pub port: Option<u16>,
    pub zone: Option<String>,
    pub scheme: Option<String>,
    /// The most specific registry row, or `null` for ordinary unicast.
    pub registry: Option<RegistryRow>,
    pub registry_snapshot: &'static str,
    /// Every row containing the address, least specific first (`BLOCK NAME`).
    pub within: Vec<String>,
    pub loopback: bool,
    /// `localhost`, `localhost.` or `*.localhost` (RFC 6761 §6.3).
    pub loopback_by_name: bool,
    pub reaches_this_host: bool,
    /// `null` when the input is a name that did not resolve: then it is not known.
    pub globally_reachable: Option<bool>,
    /// False for a name whose addresses are unknown (resolution failed or is off); the
    /// address fields then describe nothing.
    pub resolved: bool,
    pub martian_source: Option<&'static str>,
    pub martian_destination: Option<&'static str>,
    pub martian_source_detail: Option<Martian>,
    pub martian_destination_detail: Option<Martian>,
    pub embedded: Vec<EmbeddedReport>,
    pub readings: Vec<ReadingReport>,
    /// For names: every answer, each checked.
    pub answers: Vec<AnswerReport>,
    pub ssrf: Decision,
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
