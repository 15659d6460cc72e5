//! Martian flows in NetFlow v5, v9 and IPFIX exports.
//!
//! Parsing is netflow_parser's (maintained, covers v5/v7/v9/IPFIX with template caching). Its
//! `AutoScopedParser` keeps templates per exporter address and per v9 source id / IPFIX
//! observation domain (RFC 3954 §5.1, RFC 7011 §3.1), which is exactly the scoping collectors
//! need: two exporters, or two domains of one exporter, may reuse a template id for different
//! layouts.
//!
//! Inputs: datagrams from a UDP socket (`--collect udp://ADDR:PORT`), or a pcap/pcapng capture of
//! export traffic (`--flows FILE`): every UDP payload in it is offered to the parser with the
//! packet's IP source and UDP source port as the exporter. A capture is the format collectors
//! and exporters can both produce (`tcpdump -w exports.pcap udp port 2055`) and keeps the
//! exporter's address, which raw payload dumps would lose.

use std::collections::HashMap;
use std::io::Write;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use loopscope_report::{Outcome, Printer, Record, Table};
use netflow_parser::scoped_parser::{IpfixSourceKey, V9SourceKey};
use netflow_parser::variable_versions::ipfix::lookup::{IANAIPFixField, IPFixField};
use netflow_parser::variable_versions::ipfix::{FlowSetBody as IpfixBody, IPFix};
use netflow_parser::variable_versions::v9::{FlowSetBody as V9Body, V9};
use netflow_parser::{
    AutoScopedParser, DataNumber, FieldValue, NetflowPacket, NetflowParser, V9Field,
};
use serde::Serialize;

use crate::CaptureError;
use crate::decode;
use crate::martians::{LogLimiter, RateLimit};
use crate::pcapfile::{self, Interface, PacketVisitor, RecordMeta};
use crate::rules::{self, PacketVerdict};

/// The fields of one flow record that matter here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlowFields {
    /// The source address (IPv4 or IPv6 field).
    pub source: Option<IpAddr>,
    /// The destination address.
    pub destination: Option<IpAddr>,
    /// The SNMP index of the input interface.
    pub input_interface: Option<u32>,
    /// The SNMP index of the output interface.
    pub output_interface: Option<u32>,
    /// The IP protocol.
    pub protocol: Option<u8>,
    /// The transport source port.
    pub source_port: Option<u16>,
    /// The transport destination port.
    pub destination_port: Option<u16>,
    /// Packets in the flow.
    pub packets: Option<u64>,
    /// Bytes in the flow.
    pub bytes: Option<u64>,
}

/// A martian flow record.
#[derive(Debug, Serialize)]
pub struct FlowFinding {
    /// The exporter's address and port (where the datagram came from).
    pub exporter: SocketAddr,
    /// NetFlow version (5, 9) or 10 for IPFIX.
    pub version: u16,
    /// v9 source id or IPFIX observation domain id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observation_domain: Option<u32>,
    /// The flow's source address.
    pub source: IpAddr,
    /// The flow's destination address.
    pub destination: IpAddr,
    /// The SNMP index of the input interface.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_interface: Option<u32>,
    /// The SNMP index of the output interface.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_interface: Option<u32>,
    /// The IP protocol.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<u8>,
    /// The transport source port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_port: Option<u16>,
    /// The transport destination port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination_port: Option<u16>,
    /// Packets in the flow.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub packets: Option<u64>,
    /// Bytes in the flow.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// The martian reasons' codes.
    pub reasons: Vec<String>,
}

impl Record for FlowFinding {
    fn kind(&self) -> &'static str {
        "flow_finding"
    }
    fn write_human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let interface = |index: Option<u32>| index.map_or("?".to_string(), |i| i.to_string());
        let domain = self
            .observation_domain
            .map_or(String::new(), |domain| format!(" domain {domain}"));
        writeln!(
            out,
            "martian flow {} -> {} from exporter {}{} (v{}) in-if {} out-if {}: {} packets, {} bytes: {}",
            self.source,
            self.destination,
            self.exporter,
            domain,
            self.version,
            interface(self.input_interface),
            interface(self.output_interface),
            self.packets.map_or("?".into(), |n| n.to_string()),
            self.bytes.map_or("?".into(), |n| n.to_string()),
            self.reasons.join(", ")
        )
    }
}

/// The closing record of a flow scan.
#[derive(Debug, Serialize, Default)]
pub struct FlowSummary {
    /// UDP datagrams read.
    pub datagrams: u64,
    /// NetFlow/IPFIX export packets decoded.
    pub export_packets: u64,
    /// Flow records decoded.
    pub flow_records: u64,
    /// Flow records with a martian address.
    pub martian_flows: u64,
    /// Packets those flows carried.
    pub martian_flow_packets: u64,
    /// Bytes those flows carried.
    pub martian_flow_bytes: u64,
    /// Datagrams the parser rejected (not NetFlow/IPFIX, corrupt, truncated).
    pub parse_errors: u64,
    /// Data records that arrived before their template (not decodable yet).
    pub records_without_template: u64,
    /// Distinct exporters seen.
    pub exporters: u64,
    /// Martian flows per reason code.
    pub reasons: std::collections::BTreeMap<String, u64>,
    /// Findings printed.
    pub findings_logged: u64,
    /// Findings the rate limit held back.
    pub findings_suppressed: u64,
    /// Templates refused for having more fields than `template_field_limit`.
    pub templates_refused: u64,
    /// Exporter scopes (exporter and observation domain) whose templates were dropped to keep
    /// within the bounds, least recently used first.
    pub template_scopes_evicted: u64,
    /// Templates dropped to keep within the bounds.
    pub templates_evicted: u64,
    /// The most fields a template may have.
    pub template_field_limit: u64,
    /// The most template fields kept over all exporters.
    pub template_field_budget: u64,
    /// The outcome in words for scripts: `no martian flows` or `martian flows found`.
    pub verdict: &'static str,
}

impl Record for FlowSummary {
    fn kind(&self) -> &'static str {
        "summary"
    }
    fn write_human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        writeln!(
            out,
            "{} datagrams from {} exporter(s): {} export packets, {} flow records, {} martian flows ({} packets, {} bytes)",
            self.datagrams,
            self.exporters,
            self.export_packets,
            self.flow_records,
            self.martian_flows,
            self.martian_flow_packets,
            self.martian_flow_bytes
        )?;
        if self.parse_errors > 0 || self.records_without_template > 0 {
            writeln!(
                out,
                "{} datagrams not parsable, {} data sets without a template yet",
                self.parse_errors, self.records_without_template
            )?;
        }
        if self.templates_refused > 0 || self.template_scopes_evicted > 0 {
            writeln!(
                out,
                "template bounds: {} templates refused (over {} fields), {} templates of {} exporter scopes evicted (budget {} fields)",
                self.templates_refused,
                self.template_field_limit,
                self.templates_evicted,
                self.template_scopes_evicted,
                self.template_field_budget
            )?;
        }
        if !self.reasons.is_empty() {
            let mut table = Table::new(["reason", "flows"]);
            for (reason, count) in &self.reasons {
                table.row([reason.clone(), count.to_string()]);
            }
            table.write(out)?;
        }
        if self.findings_suppressed > 0 {
            writeln!(
                out,
                "{} martian flows not logged (rate limit)",
                self.findings_suppressed
            )?;
        }
        writeln!(out, "verdict: {}", self.verdict)
    }
}

/// Bounds of the template state exporters can make the collector keep.
#[derive(Debug, Clone, Copy)]
pub struct TemplateLimits {
    /// A template with more fields is refused (counted). Real templates have tens.
    pub fields_per_template: usize,
    /// Templates kept per scope and template kind (the parser's per-scope LRU).
    pub templates_per_scope: usize,
    /// Exporter scopes (exporter address and observation domain / source id) kept.
    pub scopes: usize,
    /// Fields of every kept template together (each template also costs
    /// [`TEMPLATE_OVERHEAD_FIELDS`]); over it, whole scopes are evicted, least recently used
    /// first.
    pub total_fields: u64,
}

/// What a template costs besides its fields, in field-sized units.
pub const TEMPLATE_OVERHEAD_FIELDS: u64 = 8;

impl Default for TemplateLimits {
    fn default() -> Self {
        TemplateLimits {
            fields_per_template: 1024,
            templates_per_scope: 256,
            scopes: 1024,
            total_fields: 262_144,
        }
    }
}

/// How the flow scanner reports.
#[derive(Debug, Clone, Copy, Default)]
pub struct FlowConfig {
    /// Only the summary, no per-flow findings.
    pub quiet: bool,
    /// The rate limit on findings printed (`None`: every finding).
    pub rate_limit: Option<RateLimit>,
    /// Bounds on the templates kept (a hostile exporter must not grow them without limit).
    pub limits: TemplateLimits,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum ScopeKey {
    V9(SocketAddr, u32),
    Ipfix(SocketAddr, u32),
}

/// What this collector believes one scope's parser holds: an upper bound (the parser may
/// have dropped some of them already), so the budget is never exceeded.
#[derive(Debug, Default)]
struct ScopeTemplates {
    /// (template kind, template id) -> fields.
    templates: HashMap<(u8, u16), u64>,
    cost: u64,
    last_used: u64,
}

/// One template announced in a datagram: kind (0 data, 1 options), id, field count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Announced {
    kind: u8,
    id: u16,
    fields: u64,
}

/// The templates a v9 or IPFIX datagram announces, read from the set headers before the
/// parser sees them. Why by hand: the parser drops a template over its field limit without
/// saying so, and the budget needs every template's size; this walks only the set and
/// template headers (RFC 3954 §5.2-6.1, RFC 7011 §3.3-3.4.2), always within `data`.
fn announced_templates(data: &[u8]) -> Option<(ScopeKeyKind, u32, Vec<Announced>)> {
    let u16_at = |at: usize| {
        data.get(at..at + 2)
            .map(|bytes| u16::from_be_bytes([bytes[0], bytes[1]]))
    };
    let u32_at = |at: usize| {
        data.get(at..at + 4)
            .map(|bytes| u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    };
    let version = u16_at(0)?;
    let (kind, domain, mut at, end) = match version {
        9 => (ScopeKeyKind::V9, u32_at(16)?, 20, data.len()),
        10 => {
            let length = usize::from(u16_at(2)?);
            (ScopeKeyKind::Ipfix, u32_at(12)?, 16, length.min(data.len()))
        }
        _ => return None,
    };
    let mut found = Vec::new();
    while at + 4 <= end {
        let set_id = u16_at(at)?;
        let set_len = usize::from(u16_at(at + 2)?);
        if set_len < 4 {
            break;
        }
        let set_end = (at + set_len).min(end);
        let mut record = at + 4;
        match (version, set_id) {
            // v9 template flowset; IPFIX template set.
            (9, 0) | (10, 2) => {
                while record + 4 <= set_end {
                    let id = u16_at(record)?;
                    let fields = u64::from(u16_at(record + 2)?);
                    found.push(Announced {
                        kind: 0,
                        id,
                        fields,
                    });
                    record += 4;
                    for _ in 0..fields {
                        let element = u16_at(record).unwrap_or(0);
                        record += if version == 10 && element & 0x8000 != 0 {
                            8
                        } else {
                            4
                        };
                    }
                }
            }
            // v9 options template: scope and option lengths in bytes, 4 per field.
            (9, 1) => {
                if let (Some(id), Some(scope), Some(options)) =
                    (u16_at(record), u16_at(record + 2), u16_at(record + 4))
                {
                    let fields = (u64::from(scope) + u64::from(options)) / 4;
                    found.push(Announced {
                        kind: 1,
                        id,
                        fields,
                    });
                }
            }
            // IPFIX options template set.
            (10, 3) => {
                while record + 6 <= set_end {
                    let id = u16_at(record)?;
                    let fields = u64::from(u16_at(record + 2)?);
                    found.push(Announced {
                        kind: 1,
                        id,
                        fields,
                    });
                    record += 6;
                    for _ in 0..fields {
                        let element = u16_at(record).unwrap_or(0);
                        record += if element & 0x8000 != 0 { 8 } else { 4 };
                    }
                }
            }
            _ => {}
        }
        at += set_len;
    }
    Some((kind, domain, found))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ScopeKeyKind {
    V9,
    Ipfix,
}

/// Parses export datagrams, keeps templates per exporter and domain, reports martian flows.
pub struct FlowScanner<W: Write> {
    printer: Printer<W>,
    parser: AutoScopedParser,
    config: FlowConfig,
    limiter: LogLimiter,
    summary: FlowSummary,
    exporters: std::collections::HashSet<SocketAddr>,
    scopes: HashMap<ScopeKey, ScopeTemplates>,
    template_cost: u64,
    tick: u64,
    output_error: Option<std::io::Error>,
}

fn wall_clock_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos().min(u128::from(u64::MAX)) as u64)
        .unwrap_or(0)
}

impl<W: Write> FlowScanner<W> {
    /// A scanner with the default configuration.
    pub fn new(printer: Printer<W>) -> Self {
        Self::with_config(printer, FlowConfig::default())
    }

    /// A scanner with `config`.
    pub fn with_config(printer: Printer<W>, config: FlowConfig) -> Self {
        let limits = config.limits;
        let builder = NetflowParser::builder()
            .with_cache_size(limits.templates_per_scope.max(1))
            .with_max_field_count(limits.fields_per_template);
        let parser = AutoScopedParser::try_with_builder(builder)
            .and_then(|parser| parser.with_max_sources(limits.scopes.max(1)))
            // The limits above are all non-zero; should the parser still refuse them, its own
            // defaults (also bounded) apply and the budget below still holds.
            .unwrap_or_else(|_| AutoScopedParser::new());
        FlowScanner {
            printer,
            parser,
            limiter: LogLimiter::new(config.rate_limit),
            summary: FlowSummary {
                template_field_limit: limits.fields_per_template as u64,
                template_field_budget: limits.total_fields,
                ..FlowSummary::default()
            },
            config,
            exporters: Default::default(),
            scopes: HashMap::new(),
            template_cost: 0,
            tick: 0,
            output_error: None,
        }
    }

    /// Forgets everything learned (templates, scopes, exporters, counts), as a new scanner
    /// would start, but keeps the parser's tables. Building those allocates about 1 MB (the
    /// parser reserves room for 10,000 exporters in each of three tables), which made a fresh
    /// scanner per fuzzing input cost more than the parsing it was there for.
    pub fn reset(&mut self) {
        let ipfix: Vec<IpfixSourceKey> = self
            .parser
            .ipfix_info()
            .into_iter()
            .map(|(key, _)| *key)
            .collect();
        for key in &ipfix {
            self.parser.remove_ipfix_source(key);
        }
        let v9: Vec<V9SourceKey> = self
            .parser
            .v9_info()
            .into_iter()
            .map(|(key, _)| *key)
            .collect();
        for key in &v9 {
            self.parser.remove_v9_source(key);
        }
        let legacy: Vec<SocketAddr> = self
            .parser
            .legacy_info()
            .into_iter()
            .map(|(addr, _)| *addr)
            .collect();
        for addr in &legacy {
            self.parser.remove_legacy_source(addr);
        }
        let limits = self.config.limits;
        self.limiter = LogLimiter::new(self.config.rate_limit);
        self.summary = FlowSummary {
            template_field_limit: limits.fields_per_template as u64,
            template_field_budget: limits.total_fields,
            ..FlowSummary::default()
        };
        self.exporters.clear();
        self.scopes.clear();
        self.template_cost = 0;
        self.tick = 0;
        self.output_error = None;
    }

    /// How many exporter scopes the parser holds state for (each kind together).
    pub fn parser_sources(&self) -> usize {
        self.parser.source_count()
    }

    fn emit<R: Record>(&mut self, record: &R) {
        if self.output_error.is_none()
            && let Err(error) = self.printer.emit(record)
        {
            self.output_error = Some(error);
        }
    }

    /// No write to the output has failed (a closed pipe ends the scan).
    pub fn healthy(&self) -> bool {
        self.output_error.is_none()
    }

    /// Records the templates a datagram announces before the parser installs them.
    fn account_templates(&mut self, exporter: SocketAddr, data: &[u8]) -> Option<ScopeKey> {
        let (kind, domain, announced) = announced_templates(data)?;
        let key = match kind {
            ScopeKeyKind::V9 => ScopeKey::V9(exporter, domain),
            ScopeKeyKind::Ipfix => ScopeKey::Ipfix(exporter, domain),
        };
        self.tick += 1;
        let limit = self.config.limits.fields_per_template as u64;
        let scope = self.scopes.entry(key).or_default();
        scope.last_used = self.tick;
        for template in announced {
            if template.fields > limit {
                self.summary.templates_refused += 1;
                continue;
            }
            let old = if template.fields == 0 {
                // A withdrawal (RFC 7011 §8.1).
                scope.templates.remove(&(template.kind, template.id))
            } else {
                scope.templates.insert(
                    (template.kind, template.id),
                    template.fields + TEMPLATE_OVERHEAD_FIELDS,
                )
            };
            let added = if template.fields == 0 {
                0
            } else {
                template.fields + TEMPLATE_OVERHEAD_FIELDS
            };
            let removed = old.unwrap_or(0);
            scope.cost = (scope.cost + added).saturating_sub(removed);
            self.template_cost = (self.template_cost + added).saturating_sub(removed);
        }
        Some(key)
    }

    /// Evicts whole scopes, least recently used first, until the templates fit the budget
    /// and the scope count fits its bound (`current` last of all).
    fn enforce_template_budget(&mut self, current: ScopeKey) {
        let limits = self.config.limits;
        loop {
            let over_budget = self.template_cost > limits.total_fields;
            if !over_budget && self.scopes.len() <= limits.scopes {
                break;
            }
            // Over the field budget only scopes holding templates are worth evicting.
            let victim = self
                .scopes
                .iter()
                .filter(|(key, scope)| **key != current && (!over_budget || scope.cost > 0))
                .min_by_key(|(_, scope)| scope.last_used)
                .map(|(key, _)| *key)
                .unwrap_or(current);
            let Some(scope) = self.scopes.remove(&victim) else {
                break;
            };
            self.template_cost = self.template_cost.saturating_sub(scope.cost);
            self.summary.template_scopes_evicted += 1;
            self.summary.templates_evicted += scope.templates.len() as u64;
            match victim {
                ScopeKey::V9(addr, source_id) => {
                    self.parser
                        .remove_v9_source(&V9SourceKey { addr, source_id });
                }
                ScopeKey::Ipfix(addr, observation_domain_id) => {
                    self.parser.remove_ipfix_source(&IpfixSourceKey {
                        addr,
                        observation_domain_id,
                    });
                }
            }
            if victim == current {
                break;
            }
        }
    }

    /// One export datagram from `exporter`, received (or captured) at `time_ns`.
    pub fn datagram(&mut self, exporter: SocketAddr, time_ns: u64, data: &[u8]) {
        self.summary.datagrams += 1;
        self.exporters.insert(exporter);
        let scope = self.account_templates(exporter, data);
        let result = self.parser.parse_from_source(exporter, data);
        if let Some(scope) = scope {
            self.enforce_template_budget(scope);
        }
        if result.error.is_some() {
            self.summary.parse_errors += 1;
        }
        for packet in result.packets {
            self.summary.export_packets += 1;
            match packet {
                NetflowPacket::V5(v5) => {
                    for record in &v5.flowsets {
                        let fields = FlowFields {
                            source: Some(IpAddr::V4(record.src_addr)),
                            destination: Some(IpAddr::V4(record.dst_addr)),
                            input_interface: Some(u32::from(record.input)),
                            output_interface: Some(u32::from(record.output)),
                            protocol: Some(record.protocol_number),
                            source_port: Some(record.src_port),
                            destination_port: Some(record.dst_port),
                            packets: Some(u64::from(record.d_pkts)),
                            bytes: Some(u64::from(record.d_octets)),
                        };
                        self.flow(exporter, 5, None, time_ns, &fields);
                    }
                }
                NetflowPacket::V9(v9) => self.v9(exporter, time_ns, &v9),
                NetflowPacket::IPFix(ipfix) => self.ipfix(exporter, time_ns, &ipfix),
                // v7 (Catalyst switches) has the same addresses as v5 but is rare; counted only.
                _ => {}
            }
        }
    }

    fn v9(&mut self, exporter: SocketAddr, time_ns: u64, v9: &V9) {
        let domain = Some(v9.header.source_id);
        for flowset in &v9.flowsets {
            match &flowset.body {
                V9Body::Data(data) => {
                    for record in &data.fields {
                        let fields = v9_fields(record);
                        self.flow(exporter, 9, domain, time_ns, &fields);
                    }
                }
                V9Body::NoTemplate(_) => self.summary.records_without_template += 1,
                _ => {}
            }
        }
    }

    fn ipfix(&mut self, exporter: SocketAddr, time_ns: u64, ipfix: &IPFix) {
        let domain = Some(ipfix.header.observation_domain_id);
        for flowset in &ipfix.flowsets {
            match &flowset.body {
                IpfixBody::Data(data) => {
                    for record in &data.fields {
                        let fields = ipfix_fields(record);
                        self.flow(exporter, 10, domain, time_ns, &fields);
                    }
                }
                IpfixBody::V9Data(data) => {
                    for record in &data.fields {
                        let fields = v9_fields(record);
                        self.flow(exporter, 10, domain, time_ns, &fields);
                    }
                }
                IpfixBody::NoTemplate(_) => self.summary.records_without_template += 1,
                _ => {}
            }
        }
    }

    fn flow(
        &mut self,
        exporter: SocketAddr,
        version: u16,
        domain: Option<u32>,
        time_ns: u64,
        fields: &FlowFields,
    ) {
        self.summary.flow_records += 1;
        let (Some(source), Some(destination)) = (fields.source, fields.destination) else {
            return;
        };
        // A flow exporter sits on a real (non-loopback) interface: loopback is martian here.
        let context = rules::PacketContext {
            protocol: fields.protocol.unwrap_or(0),
            source_port: fields.source_port.unwrap_or(0),
            destination_port: fields.destination_port.unwrap_or(0),
        };
        let verdicts: PacketVerdict = rules::classify_packet(source, destination, context, false);
        if !verdicts.is_martian() {
            return;
        }
        // Counts come from the exporter, which may claim anything: they saturate.
        self.summary.martian_flows += 1;
        self.summary.martian_flow_packets = self
            .summary
            .martian_flow_packets
            .saturating_add(fields.packets.unwrap_or(0));
        self.summary.martian_flow_bytes = self
            .summary
            .martian_flow_bytes
            .saturating_add(fields.bytes.unwrap_or(0));
        let reasons: Vec<String> = verdicts
            .iter()
            .map(|reason| reason.key().to_string())
            .collect();
        for reason in &reasons {
            *self.summary.reasons.entry(reason.clone()).or_insert(0) += 1;
        }
        if self.config.quiet {
            return;
        }
        let (allowed, closed_window) = self.limiter.allow(time_ns);
        if let Some(suppressed) = closed_window {
            self.emit(&suppressed);
        }
        if !allowed {
            return;
        }
        let finding = FlowFinding {
            exporter,
            version,
            observation_domain: domain,
            source,
            destination,
            input_interface: fields.input_interface,
            output_interface: fields.output_interface,
            protocol: fields.protocol,
            source_port: fields.source_port,
            destination_port: fields.destination_port,
            packets: fields.packets,
            bytes: fields.bytes,
            reasons,
        };
        self.summary.findings_logged += 1;
        self.emit(&finding);
    }

    /// Reads every UDP payload of a pcap/pcapng capture (`-` for standard input) as an export
    /// datagram.
    pub fn scan_capture(
        &mut self,
        path: &Path,
        stop: &std::sync::atomic::AtomicBool,
    ) -> Result<pcapfile::ReadDamage, CaptureError> {
        let reader = pcapfile::open_capture(path)?;
        let mut visitor = ExportVisitor {
            scanner: self,
            stop,
        };
        let (_, damage) = pcapfile::read_capture(reader, &mut visitor)?;
        Ok(damage)
    }

    /// Listens on a UDP socket until `stop` or the duration ends.
    pub fn collect(
        &mut self,
        bind: SocketAddr,
        duration: Option<Duration>,
        stop: &std::sync::atomic::AtomicBool,
    ) -> Result<(), CaptureError> {
        let socket = UdpSocket::bind(bind).map_err(|source| CaptureError::Io {
            context: format!("binding the collector to {bind}"),
            source,
        })?;
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .map_err(|source| CaptureError::Io {
                context: "collector socket timeout".into(),
                source,
            })?;
        let deadline = duration.and_then(|duration| Instant::now().checked_add(duration));
        let mut buffer = vec![0u8; 65_536];
        while !stop.load(std::sync::atomic::Ordering::Relaxed) && self.healthy() {
            if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                break;
            }
            match socket.recv_from(&mut buffer) {
                Ok((length, exporter)) => {
                    self.datagram(exporter, wall_clock_ns(), &buffer[..length])
                }
                Err(error)
                    if matches!(
                        error.kind(),
                        std::io::ErrorKind::WouldBlock
                            | std::io::ErrorKind::TimedOut
                            | std::io::ErrorKind::Interrupted
                    ) => {}
                Err(source) => {
                    return Err(CaptureError::Io {
                        context: format!("receiving on {bind}"),
                        source,
                    });
                }
            }
        }
        Ok(())
    }

    /// Reports the summary and hands back the output (see `Scanner::finish`).
    pub fn finish(mut self) -> Result<(Outcome, FlowSummary, W), CaptureError> {
        if let Some(suppressed) = self.limiter.take_suppressed() {
            self.emit(&suppressed);
        }
        self.summary.findings_suppressed = self.limiter.suppressed_total;
        self.summary.exporters = self.exporters.len() as u64;
        let found = self.summary.martian_flows > 0;
        self.summary.verdict = if found {
            "martian flows found"
        } else {
            "no martian flows"
        };
        let summary = std::mem::take(&mut self.summary);
        self.emit(&summary);
        if let Some(error) = self.output_error.take()
            && error.kind() != std::io::ErrorKind::BrokenPipe
        {
            return Err(CaptureError::Output(error));
        }
        Ok((
            Outcome::from_passed(!found),
            summary,
            self.printer.into_inner(),
        ))
    }
}

struct ExportVisitor<'s, 'a, W: Write> {
    scanner: &'s mut FlowScanner<W>,
    stop: &'a std::sync::atomic::AtomicBool,
}

impl<W: Write> PacketVisitor for ExportVisitor<'_, '_, W> {
    fn packet(&mut self, interfaces: &[Interface], meta: RecordMeta, frame: &[u8]) -> bool {
        let linktype = interfaces
            .get(meta.interface as usize)
            .map(|interface| interface.linktype)
            .unwrap_or(0);
        if let Some((decoded, payload)) = decode::udp_payload(linktype, frame) {
            let exporter = SocketAddr::new(decoded.source, decoded.source_port);
            self.scanner.datagram(exporter, meta.time_ns, payload);
        }
        self.scanner.healthy() && !self.stop.load(std::sync::atomic::Ordering::Relaxed)
    }
}

fn number(value: &FieldValue) -> Option<u64> {
    match value {
        FieldValue::DataNumber(number) => match number {
            DataNumber::U8(n) => Some(u64::from(*n)),
            DataNumber::U16(n) => Some(u64::from(*n)),
            DataNumber::U24(n) | DataNumber::U32(n) => Some(u64::from(*n)),
            DataNumber::U64(n) => Some(*n),
            DataNumber::U128(n) => u64::try_from(*n).ok(),
            _ => None,
        },
        FieldValue::ProtocolType(protocol) => Some(u64::from(u8::from(*protocol))),
        _ => None,
    }
}

fn address(value: &FieldValue) -> Option<IpAddr> {
    match value {
        FieldValue::Ip4Addr(v4) => Some(IpAddr::V4(*v4)),
        FieldValue::Ip6Addr(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

fn v9_fields(record: &[(V9Field, FieldValue)]) -> FlowFields {
    let mut fields = FlowFields::default();
    for (field, value) in record {
        match field {
            V9Field::Ipv4SrcAddr | V9Field::Ipv6SrcAddr => fields.source = address(value),
            V9Field::Ipv4DstAddr | V9Field::Ipv6DstAddr => fields.destination = address(value),
            V9Field::InputSnmp => fields.input_interface = number(value).map(|n| n as u32),
            V9Field::OutputSnmp => fields.output_interface = number(value).map(|n| n as u32),
            V9Field::Protocol => fields.protocol = number(value).map(|n| n as u8),
            V9Field::L4SrcPort => fields.source_port = number(value).map(|n| n as u16),
            V9Field::L4DstPort => fields.destination_port = number(value).map(|n| n as u16),
            V9Field::InPkts => fields.packets = number(value),
            V9Field::InBytes => fields.bytes = number(value),
            _ => {}
        }
    }
    fields
}

fn ipfix_fields(record: &[(IPFixField, FieldValue)]) -> FlowFields {
    let mut fields = FlowFields::default();
    for (field, value) in record {
        let IPFixField::IANA(field) = field else {
            continue;
        };
        match field {
            IANAIPFixField::SourceIpv4address | IANAIPFixField::SourceIpv6address => {
                fields.source = address(value)
            }
            IANAIPFixField::DestinationIpv4address | IANAIPFixField::DestinationIpv6address => {
                fields.destination = address(value)
            }
            IANAIPFixField::IngressInterface => {
                fields.input_interface = number(value).map(|n| n as u32)
            }
            IANAIPFixField::EgressInterface => {
                fields.output_interface = number(value).map(|n| n as u32)
            }
            IANAIPFixField::ProtocolIdentifier => fields.protocol = number(value).map(|n| n as u8),
            IANAIPFixField::SourceTransportPort => {
                fields.source_port = number(value).map(|n| n as u16)
            }
            IANAIPFixField::DestinationTransportPort => {
                fields.destination_port = number(value).map(|n| n as u16)
            }
            IANAIPFixField::PacketDeltaCount | IANAIPFixField::PacketTotalCount => {
                fields.packets = number(value)
            }
            IANAIPFixField::OctetDeltaCount | IANAIPFixField::OctetTotalCount => {
                fields.bytes = number(value)
            }
            _ => {}
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;
    use loopscope_report::Format;

    const EXPORTER: SocketAddr =
        SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 9)), 2055);

    /// An IPFIX message (RFC 7011 section 3.1) of observation domain 7 holding `sets`.
    fn ipfix(sets: &[u8]) -> Vec<u8> {
        let mut message = vec![0, 10];
        message.extend_from_slice(&(16 + sets.len() as u16).to_be_bytes());
        message.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 7]);
        message.extend_from_slice(sets);
        message
    }

    /// Template 256: sourceIPv4Address (IE 8) and destinationIPv4Address (IE 12), 4 bytes each.
    fn template_set() -> Vec<u8> {
        vec![0, 2, 0, 16, 1, 0, 0, 2, 0, 8, 0, 4, 0, 12, 0, 4]
    }

    /// One record of template 256: 127.0.0.1 to 192.0.2.1, a loopback source on the wire.
    fn data_set() -> Vec<u8> {
        vec![1, 0, 0, 12, 127, 0, 0, 1, 192, 0, 2, 1]
    }

    fn summary_of(scanner: FlowScanner<Vec<u8>>) -> FlowSummary {
        scanner.finish().unwrap().1
    }

    #[test]
    fn a_reset_scanner_forgets_templates_as_a_new_one_has_none() {
        let with_template = ipfix(&[template_set(), data_set()].concat());
        let data_only = ipfix(&data_set());

        // The template makes the record readable: one martian flow.
        let mut fresh = FlowScanner::new(Printer::new(Format::Json, Vec::new()));
        fresh.datagram(EXPORTER, 1, &with_template);
        let learned = summary_of(fresh);
        assert_eq!((learned.flow_records, learned.martian_flows), (1, 1));

        // After a reset the template is gone: the same data is unreadable, as for a scanner
        // that never saw the template, and every count starts again from zero.
        let mut reused = FlowScanner::new(Printer::new(Format::Json, Vec::new()));
        reused.datagram(EXPORTER, 1, &with_template);
        assert_eq!(reused.parser_sources(), 1);
        reused.reset();
        assert_eq!(reused.parser_sources(), 0);
        reused.datagram(EXPORTER, 2, &data_only);
        let after_reset = summary_of(reused);

        let mut never_taught = FlowScanner::new(Printer::new(Format::Json, Vec::new()));
        never_taught.datagram(EXPORTER, 2, &data_only);
        let never = summary_of(never_taught);

        assert_eq!(after_reset.martian_flows, 0);
        assert_eq!(after_reset.records_without_template, 1);
        assert_eq!(after_reset.datagrams, 1);
        assert_eq!(
            format!("{after_reset:?}"),
            format!("{never:?}"),
            "a reset scanner must be indistinguishable from a new one"
        );
    }
}
