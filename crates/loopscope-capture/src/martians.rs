//! The martian scanner: every packet, from a file or a live socket, goes through
//! [`Scanner::observe`]; findings are printed as they are found (rate-limited when asked), flows
//! and per-reason totals are kept, and [`Scanner::finish`] prints the flow table and the summary.
//!
//! The per-packet path allocates nothing for a clean packet: decoding is zero-copy and the
//! verdicts are inline; only a finding builds its report record.

use std::collections::HashMap;
use std::io::{self, Write};
use std::net::IpAddr;
use std::path::Path;

use loopscope_report::{Format, Outcome, Printer, Record, Table};
use serde::Serialize;

use crate::CaptureError;
use crate::decode::{self, LinkAddr, Undecodable};
use crate::pcapfile::{self, CaptureFile, Interface, PacketVisitor, RecordMeta};
use crate::rules::{self, PacketReason, PacketVerdict};
use crate::urpf::{RouteTable, UrpfMode, UrpfVerdict};
use crate::writer::{PacketOrigin, PcapngWriter};

/// How findings are logged: at most `burst` per `interval_ns` of packet time, like the kernel's
/// `net_ratelimit()` (10 per 5 s); the rest are counted and reported as suppressed.
#[derive(Debug, Clone, Copy)]
pub struct RateLimit {
    pub burst: u32,
    pub interval_ns: u64,
}

impl RateLimit {
    /// The kernel's default for `martian source` lines: 10 messages per 5 seconds.
    pub const KERNEL: RateLimit = RateLimit {
        burst: 10,
        interval_ns: 5_000_000_000,
    };
}

#[derive(Debug, Default)]
pub struct ScanConfig {
    /// Interface names that are loopback interfaces (loopback traffic on them is normal).
    pub loopback_interfaces: Vec<String>,
    /// Routing table for uRPF verdicts.
    pub routes: Option<RouteTable>,
    /// The arrival interface to assume for uRPF when the capture does not name one.
    pub arrival_interface: Option<String>,
    pub rate_limit: Option<RateLimit>,
    /// Print only flows and the summary, not every finding.
    pub quiet: bool,
}

/// One packet as the scanner sees it, from whatever source.
pub struct Observation<'a> {
    pub time_ns: u64,
    pub linktype: u32,
    pub frame: &'a [u8],
    pub original_len: u32,
    /// Where the packet came from: the file name, or the live interface.
    pub input: &'a str,
    /// 0-based number of the packet in its input.
    pub number: u64,
    /// Interface name when known (pcapng IDB, live socket).
    pub interface_name: Option<&'a str>,
    pub if_index: Option<u32>,
    /// The interface is known to be a loopback interface.
    pub interface_is_loopback: bool,
    /// Link-layer source from outside the frame (sockaddr_ll); used when the frame has none.
    pub link_source: Option<LinkAddr>,
    /// Distinguishes interfaces for `--write-matches`.
    pub interface_key: (u32, u32),
}

/// One martian packet.
#[derive(Debug, Serialize)]
pub struct Finding {
    /// Always "finding"; serialised first so a finding can be written as its JSON line
    /// directly, byte-identical to what the Printer makes of it (see `Scanner::emit_finding`).
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub time: String,
    pub time_unix_ns: u64,
    pub input: String,
    pub packet: u64,
    pub interface: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub if_index: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link_source: Option<String>,
    pub source: IpAddr,
    pub destination: IpAddr,
    pub protocol: u8,
    pub source_port: u16,
    pub destination_port: u16,
    pub bytes: u32,
    pub fragment: bool,
    pub reasons: Vec<ReasonEntry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub urpf_drop: Option<Vec<&'static str>>,
}

#[derive(Debug, Serialize)]
pub struct ReasonEntry {
    pub side: &'static str,
    pub code: &'static str,
    pub rfc: &'static str,
    /// The human wording (MartianReason's Display); not in JSON, where `code` says it.
    #[serde(skip)]
    pub reason: loopscope_addr::martian::MartianReason,
}

impl ReasonEntry {
    fn from_verdict(verdict: PacketReason) -> Self {
        ReasonEntry {
            side: verdict.side.as_str(),
            code: verdict.reason.code(),
            rfc: verdict.reason.rfc(),
            reason: verdict.reason,
        }
    }
}

impl Record for Finding {
    fn kind(&self) -> &'static str {
        "finding"
    }
    fn write_human(&self, out: &mut dyn Write) -> io::Result<()> {
        // Shaped like the kernel's log line, with the reasons spelled out.
        let reasons: Vec<String> = self
            .reasons
            .iter()
            .map(|reason| format!("{} ({})", reason.reason, reason.rfc))
            .collect();
        write!(
            out,
            "{} martian {} -> {} {} on {}",
            self.time,
            self.source,
            self.destination,
            protocol_label(self.protocol, self.source_port, self.destination_port),
            self.interface
        )?;
        if let Some(link) = &self.link_source {
            write!(out, " from {link}")?;
        }
        write!(out, ": {}", reasons.join("; "))?;
        if let Some(modes) = &self.urpf_drop
            && !modes.is_empty()
        {
            write!(out, " [uRPF drops: {}]", modes.join(", "))?;
        }
        writeln!(out)
    }
}

/// Logged when the rate limit let findings through again after suppressing some.
#[derive(Debug, Serialize)]
pub struct Suppressed {
    pub suppressed_findings: u64,
}

impl Record for Suppressed {
    fn kind(&self) -> &'static str {
        "suppressed"
    }
    fn write_human(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(
            out,
            "martians: {} findings suppressed (rate limit)",
            self.suppressed_findings
        )
    }
}

/// A read problem in one input, reported and then passed over.
#[derive(Debug, Serialize)]
pub struct InputDamage {
    pub input: String,
    pub corrupt_records: u64,
    pub truncated: bool,
    pub unrecoverable: bool,
}

impl Record for InputDamage {
    fn kind(&self) -> &'static str {
        "damage"
    }
    fn write_human(&self, out: &mut dyn Write) -> io::Result<()> {
        let mut parts = Vec::new();
        if self.corrupt_records > 0 {
            parts.push(format!("{} corrupt records skipped", self.corrupt_records));
        }
        if self.truncated {
            parts.push("truncated (last record incomplete)".to_string());
        }
        if self.unrecoverable {
            parts.push("the rest was unreadable".to_string());
        }
        writeln!(out, "{}: {}", self.input, parts.join(", "))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct FlowKey {
    source: IpAddr,
    destination: IpAddr,
    protocol: u8,
    source_port: u16,
    destination_port: u16,
}

#[derive(Debug, Clone)]
struct FlowStats {
    packets: u64,
    bytes: u64,
    first_ns: u64,
    last_ns: u64,
    verdicts: PacketVerdict,
    interface: String,
}

/// One martian flow (5-tuple aggregate) in the closing table.
#[derive(Debug, Serialize)]
pub struct FlowRecord {
    pub source: IpAddr,
    pub destination: IpAddr,
    pub protocol: u8,
    pub source_port: u16,
    pub destination_port: u16,
    pub packets: u64,
    pub bytes: u64,
    pub first_seen: String,
    pub last_seen: String,
    pub first_seen_unix_ns: u64,
    pub last_seen_unix_ns: u64,
    pub interface: String,
    pub reasons: Vec<String>,
}

impl Record for FlowRecord {
    fn kind(&self) -> &'static str {
        "flow"
    }
    fn write_human(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(
            out,
            "flow {} -> {} {}: {} packets, {} bytes, {} .. {}, {}",
            self.source,
            self.destination,
            protocol_label(self.protocol, self.source_port, self.destination_port),
            self.packets,
            self.bytes,
            self.first_seen,
            self.last_seen,
            self.reasons.join(", ")
        )
    }
}

/// The closing record.
#[derive(Debug, Serialize, Default)]
pub struct Summary {
    pub inputs: u64,
    pub packets: u64,
    pub bytes: u64,
    pub ip_packets: u64,
    pub non_ip_packets: u64,
    pub malformed_packets: u64,
    pub unsupported_linktype_packets: u64,
    pub corrupt_records: u64,
    pub truncated_inputs: u64,
    pub martian_packets: u64,
    pub martian_bytes: u64,
    pub martian_flows: u64,
    pub findings_logged: u64,
    pub findings_suppressed: u64,
    /// Martian packets per reason code (`loopback_source` ...).
    pub reasons: std::collections::BTreeMap<String, u64>,
    /// Packets each uRPF mode would drop (present when a routing table was given).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub urpf_drops: Option<std::collections::BTreeMap<&'static str, u64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub matches_written: Option<u64>,
    pub verdict: &'static str,
}

impl Record for Summary {
    fn kind(&self) -> &'static str {
        "summary"
    }
    fn write_human(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(
            out,
            "{} packets ({} IP, {} non-IP, {} malformed) in {} input(s): {} martian packets in {} flows",
            self.packets,
            self.ip_packets,
            self.non_ip_packets,
            self.malformed_packets,
            self.inputs,
            self.martian_packets,
            self.martian_flows
        )?;
        if self.corrupt_records > 0 || self.truncated_inputs > 0 {
            writeln!(
                out,
                "damage: {} corrupt records skipped, {} truncated input(s)",
                self.corrupt_records, self.truncated_inputs
            )?;
        }
        if self.unsupported_linktype_packets > 0 {
            writeln!(
                out,
                "{} packets of unsupported link types skipped",
                self.unsupported_linktype_packets
            )?;
        }
        if !self.reasons.is_empty() {
            let mut table = Table::new(["reason", "packets"]);
            for (reason, count) in &self.reasons {
                table.row([reason.clone(), count.to_string()]);
            }
            table.write(out)?;
        }
        if let Some(drops) = &self.urpf_drops {
            let mut table = Table::new(["uRPF mode", "would drop"]);
            for mode in UrpfMode::ALL {
                let count = drops.get(mode.code()).copied().unwrap_or(0);
                table.row([mode.code().to_string(), count.to_string()]);
            }
            table.write(out)?;
        }
        if self.findings_suppressed > 0 {
            writeln!(
                out,
                "{} findings not logged (rate limit)",
                self.findings_suppressed
            )?;
        }
        if let Some(written) = self.matches_written {
            writeln!(out, "{written} packets written to the matches file")?;
        }
        writeln!(out, "verdict: {}", self.verdict)
    }
}

/// Findings, flows and totals over any number of inputs.
pub struct Scanner<W: Write> {
    format: Format,
    out: W,
    config: ScanConfig,
    summary: Summary,
    flows: HashMap<FlowKey, FlowStats>,
    reason_totals: HashMap<PacketReason, u64>,
    urpf_totals: [u64; 4],
    writer: Option<PcapngWriter>,
    window_start_ns: Option<u64>,
    logged_in_window: u32,
    suppressed_in_window: u64,
    /// A failed stdout write (closed pipe) ends the scan; kept to report at the end.
    output_error: Option<io::Error>,
    write_error: Option<CaptureError>,
}

impl<W: Write> Scanner<W> {
    pub fn new(printer: Printer<W>, config: ScanConfig) -> Self {
        let format = printer.format();
        Scanner {
            format,
            out: printer.into_inner(),
            config,
            summary: Summary::default(),
            flows: HashMap::new(),
            reason_totals: HashMap::new(),
            urpf_totals: [0; 4],
            writer: None,
            window_start_ns: None,
            logged_in_window: 0,
            suppressed_in_window: 0,
            output_error: None,
            write_error: None,
        }
    }

    /// Writes flagged packets to `path` as pcapng.
    pub fn write_matches(&mut self, path: &Path) -> Result<(), CaptureError> {
        self.writer = Some(PcapngWriter::create(path)?);
        Ok(())
    }

    /// Emits a record unless output already failed.
    pub fn emit<R: Record>(&mut self, record: &R) {
        if self.output_error.is_none()
            && let Err(error) = Printer::new(self.format, &mut self.out).emit(record)
        {
            self.output_error = Some(error);
        }
    }

    /// Findings can be many: in JSON they are serialised straight to the output (the record
    /// leads with its own "type", so the line is the one the Printer would write) instead of
    /// through an intermediate JSON value.
    fn emit_finding(&mut self, finding: &Finding) {
        if self.format != Format::Json {
            return self.emit(finding);
        }
        if self.output_error.is_some() {
            return;
        }
        let result = serde_json::to_writer(&mut self.out, finding)
            .map_err(io::Error::other)
            .and_then(|()| self.out.write_all(b"\n"))
            .and_then(|()| self.out.flush());
        if let Err(error) = result {
            self.output_error = Some(error);
        }
    }

    /// Whether the scan should go on (stdout still open, matches file still writable).
    pub fn healthy(&self) -> bool {
        self.output_error.is_none() && self.write_error.is_none()
    }

    /// Scans one pcap or pcapng file. Err only when the file cannot be opened or is not a
    /// capture at all; damage inside is reported and counted.
    pub fn scan_file(
        &mut self,
        path: &Path,
        stop: &std::sync::atomic::AtomicBool,
    ) -> Result<(), CaptureError> {
        let file = CaptureFile::open(path)?;
        let name = path.display().to_string();
        let input_index = self.summary.inputs as u32;
        self.summary.inputs += 1;
        let mut visitor = FileVisitor {
            scanner: self,
            name: &name,
            input_index,
            stop,
        };
        let (_, damage) = pcapfile::read_capture(file.bytes(), &mut visitor)?;
        if damage.corrupt_records > 0 || damage.truncated || damage.unrecoverable {
            self.summary.corrupt_records += damage.corrupt_records;
            if damage.truncated {
                self.summary.truncated_inputs += 1;
            }
            self.emit(&InputDamage {
                input: name,
                corrupt_records: damage.corrupt_records,
                truncated: damage.truncated,
                unrecoverable: damage.unrecoverable,
            });
        }
        Ok(())
    }

    /// Counts one input that is not a file (a live interface, a collector).
    pub fn add_input(&mut self) {
        self.summary.inputs += 1;
    }

    /// Looks at one packet. Returns whether it was martian (or dropped by uRPF).
    pub fn observe(&mut self, observation: &Observation<'_>) -> bool {
        self.summary.packets += 1;
        self.summary.bytes += u64::from(observation.original_len);
        // The common case (plain Ethernet or raw IP) costs a few loads: addresses first, the
        // full decode only for packets that need it.
        let mut full = None;
        let (source, destination, link_is_loopback) =
            match decode::fast_addresses(observation.linktype, observation.frame) {
                Some(addresses) => addresses,
                None => match decode::decode(observation.linktype, observation.frame) {
                    Ok(decoded) => {
                        full = Some(decoded);
                        (
                            decoded.source,
                            decoded.destination,
                            decoded.link_is_loopback,
                        )
                    }
                    Err(Undecodable::NotIp) => {
                        self.summary.non_ip_packets += 1;
                        return false;
                    }
                    Err(Undecodable::Malformed) => {
                        self.summary.malformed_packets += 1;
                        return false;
                    }
                    Err(Undecodable::UnsupportedLinktype) => {
                        self.summary.unsupported_linktype_packets += 1;
                        return false;
                    }
                },
            };
        self.summary.ip_packets += 1;
        let on_loopback = observation.interface_is_loopback
            || link_is_loopback
            || observation.interface_name.is_some_and(|name| {
                self.config
                    .loopback_interfaces
                    .iter()
                    .any(|loopback| loopback == name)
            });
        if self.config.routes.is_none()
            && !rules::classify(source, destination, on_loopback).is_martian()
        {
            return false;
        }
        let decoded = match full {
            Some(decoded) => decoded,
            // fast_addresses accepted it, so the full decode does too (property-tested);
            // should the two ever disagree, the packet counts as malformed rather than panic.
            None => match decode::decode(observation.linktype, observation.frame) {
                Ok(decoded) => decoded,
                Err(_) => {
                    self.summary.ip_packets -= 1;
                    self.summary.malformed_packets += 1;
                    return false;
                }
            },
        };
        let context = rules::PacketContext {
            protocol: decoded.protocol,
            source_port: decoded.source_port,
            destination_port: decoded.destination_port,
        };
        let verdicts =
            rules::classify_packet(decoded.source, decoded.destination, context, on_loopback);
        // uRPF is about forwarded traffic: the on-link uses of the unspecified source (DHCP
        // discover, DAD, MLD) have no route back by design and are never forwarded.
        let on_link_only =
            rules::is_on_link_unspecified_use(decoded.source, decoded.destination, context);
        let urpf: Option<UrpfVerdict> =
            self.config
                .routes
                .as_ref()
                .filter(|_| !on_link_only)
                .map(|routes| {
                    let arrival = observation
                        .interface_name
                        .or(self.config.arrival_interface.as_deref());
                    routes.check(decoded.source, arrival)
                });
        let urpf_drop = urpf.is_some_and(|verdict| verdict.any_drop());
        if !verdicts.is_martian() && !urpf_drop {
            return false;
        }
        if let Some(verdict) = urpf {
            for mode in UrpfMode::ALL {
                if verdict.drops(mode) {
                    self.urpf_totals[mode as usize] += 1;
                }
            }
        }
        if verdicts.is_martian() {
            self.summary.martian_packets += 1;
            self.summary.martian_bytes += u64::from(observation.original_len);
            for verdict in verdicts.iter() {
                *self.reason_totals.entry(verdict).or_insert(0) += 1;
            }
        }

        let interface = match (observation.interface_name, decoded.if_index) {
            (Some(name), _) => name.to_string(),
            (None, Some(index)) => format!("ifindex {index}"),
            (None, None) => observation.input.to_string(),
        };
        let key = FlowKey {
            source: decoded.source,
            destination: decoded.destination,
            protocol: decoded.protocol,
            source_port: decoded.source_port,
            destination_port: decoded.destination_port,
        };
        let flow = self.flows.entry(key).or_insert_with(|| FlowStats {
            packets: 0,
            bytes: 0,
            first_ns: observation.time_ns,
            last_ns: observation.time_ns,
            verdicts,
            interface: interface.clone(),
        });
        flow.packets += 1;
        flow.bytes += u64::from(observation.original_len);
        flow.first_ns = flow.first_ns.min(observation.time_ns);
        flow.last_ns = flow.last_ns.max(observation.time_ns);

        if let Some(writer) = &mut self.writer {
            let origin = PacketOrigin {
                input: observation.interface_key.0,
                interface: observation.interface_key.1,
                linktype: observation.linktype,
                interface_name: observation.interface_name,
            };
            if let Err(error) = writer.write_packet(
                &origin,
                observation.time_ns,
                observation.original_len,
                observation.frame,
            ) {
                self.write_error = Some(error);
            }
        }

        if self.config.quiet || !self.rate_allows(observation.time_ns) {
            return true;
        }
        let link_source = if decoded.link_source.is_empty() {
            observation.link_source
        } else {
            Some(decoded.link_source)
        };
        let finding = Finding {
            kind: "finding",
            time: format_time(observation.time_ns),
            time_unix_ns: observation.time_ns,
            input: observation.input.to_string(),
            packet: observation.number,
            interface,
            if_index: observation.if_index.or(decoded.if_index),
            link_source: link_source
                .filter(|link| !link.is_empty())
                .map(|link| link.to_string()),
            source: decoded.source,
            destination: decoded.destination,
            protocol: decoded.protocol,
            source_port: decoded.source_port,
            destination_port: decoded.destination_port,
            bytes: observation.original_len,
            fragment: decoded.fragment,
            reasons: verdicts.iter().map(ReasonEntry::from_verdict).collect(),
            urpf_drop: urpf.map(|verdict| verdict.dropping_modes()),
        };
        self.summary.findings_logged += 1;
        self.emit_finding(&finding);
        true
    }

    fn rate_allows(&mut self, time_ns: u64) -> bool {
        let Some(limit) = self.config.rate_limit else {
            return true;
        };
        let start = *self.window_start_ns.get_or_insert(time_ns);
        if time_ns.saturating_sub(start) >= limit.interval_ns {
            self.window_start_ns = Some(time_ns);
            self.logged_in_window = 0;
            if self.suppressed_in_window > 0 {
                let record = Suppressed {
                    suppressed_findings: self.suppressed_in_window,
                };
                self.suppressed_in_window = 0;
                self.emit(&record);
            }
        }
        if self.logged_in_window < limit.burst {
            self.logged_in_window += 1;
            true
        } else {
            self.suppressed_in_window += 1;
            self.summary.findings_suppressed += 1;
            false
        }
    }

    /// Prints the flow table and the summary; Err when the matches file or stdout failed.
    pub fn finish(mut self) -> Result<(Outcome, Summary), CaptureError> {
        if self.suppressed_in_window > 0 {
            let record = Suppressed {
                suppressed_findings: self.suppressed_in_window,
            };
            self.emit(&record);
        }
        let mut flows: Vec<(FlowKey, FlowStats)> = self.flows.drain().collect();
        flows.sort_by(|a, b| {
            b.1.packets
                .cmp(&a.1.packets)
                .then(a.1.first_ns.cmp(&b.1.first_ns))
        });
        self.summary.martian_flows = flows.len() as u64;
        for (key, stats) in flows {
            let record = FlowRecord {
                source: key.source,
                destination: key.destination,
                protocol: key.protocol,
                source_port: key.source_port,
                destination_port: key.destination_port,
                packets: stats.packets,
                bytes: stats.bytes,
                first_seen: format_time(stats.first_ns),
                last_seen: format_time(stats.last_ns),
                first_seen_unix_ns: stats.first_ns,
                last_seen_unix_ns: stats.last_ns,
                interface: stats.interface,
                reasons: stats
                    .verdicts
                    .iter()
                    .map(|verdict| verdict.key().to_string())
                    .collect(),
            };
            self.emit(&record);
        }
        self.summary.reasons = self
            .reason_totals
            .iter()
            .map(|(verdict, count)| (verdict.key().to_string(), *count))
            .collect();
        if self.config.routes.is_some() {
            self.summary.urpf_drops = Some(
                UrpfMode::ALL
                    .iter()
                    .map(|mode| (mode.code(), self.urpf_totals[*mode as usize]))
                    .collect(),
            );
        }
        if let Some(writer) = self.writer.take() {
            self.summary.matches_written = Some(writer.finish()?);
        }
        if let Some(error) = self.write_error.take() {
            return Err(error);
        }
        let found = self.summary.martian_packets > 0 || self.urpf_totals.iter().any(|n| *n > 0);
        self.summary.verdict = if found {
            "martians found"
        } else {
            "no martians"
        };
        let summary = std::mem::take(&mut self.summary);
        self.emit(&summary);
        // A closed stdout (`| head`) is the reader's choice, not an error of ours.
        if let Some(error) = self.output_error.take()
            && error.kind() != io::ErrorKind::BrokenPipe
        {
            return Err(CaptureError::Output(error));
        }
        Ok((Outcome::from_passed(!found), summary))
    }
}

struct FileVisitor<'s, 'n, W: Write> {
    scanner: &'s mut Scanner<W>,
    name: &'n str,
    input_index: u32,
    stop: &'n std::sync::atomic::AtomicBool,
}

impl<W: Write> PacketVisitor for FileVisitor<'_, '_, W> {
    fn packet(&mut self, interfaces: &[Interface], meta: RecordMeta, frame: &[u8]) -> bool {
        let interface = interfaces.get(meta.interface as usize);
        let linktype = interface.map(|interface| interface.linktype).unwrap_or(0);
        let observation = Observation {
            time_ns: meta.time_ns,
            linktype,
            frame,
            original_len: meta.original_len,
            input: self.name,
            number: meta.number,
            interface_name: interface.and_then(|interface| interface.name.as_deref()),
            if_index: None,
            interface_is_loopback: false,
            link_source: None,
            interface_key: (self.input_index, meta.interface),
        };
        self.scanner.observe(&observation);
        // Polling the atomic every packet costs one relaxed load.
        self.scanner.healthy() && !self.stop.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// `udp 4000->53`, `tcp 1->2`, `icmp`, `proto 47`.
pub fn protocol_label(protocol: u8, source_port: u16, destination_port: u16) -> String {
    let name = match protocol {
        1 => "icmp",
        6 => "tcp",
        17 => "udp",
        58 => "icmp6",
        132 => "sctp",
        _ => return format!("proto {protocol}"),
    };
    if source_port == 0 && destination_port == 0 {
        name.to_string()
    } else {
        format!("{name} {source_port}->{destination_port}")
    }
}

/// RFC 3339 UTC with microseconds (`2026-11-25T12:00:00.123456Z`), computed without a calendar
/// crate (Howard Hinnant's days-to-civil algorithm).
pub fn format_time(time_ns: u64) -> String {
    let seconds = time_ns / 1_000_000_000;
    let micros = (time_ns % 1_000_000_000) / 1000;
    let days = (seconds / 86_400) as i64;
    let second_of_day = seconds % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        second_of_day / 3600,
        (second_of_day / 60) % 60,
        second_of_day % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_match_known_dates() {
        assert_eq!(format_time(0), "1970-01-01T00:00:00.000000Z");
        // 2024-02-29T12:34:56.789012Z leap day (date -u -d @1709210096).
        assert_eq!(
            format_time(1_709_210_096_789_012_345),
            "2024-02-29T12:34:56.789012Z"
        );
        assert_eq!(
            format_time(951_782_400_000_000_000),
            "2000-02-29T00:00:00.000000Z"
        );
    }
}

#[cfg(test)]
mod emit_tests {
    use super::*;

    /// The direct JSON path writes the same line the Printer would.
    #[test]
    fn direct_finding_lines_match_the_printer() {
        let finding = Finding {
            kind: "finding",
            time: format_time(1),
            time_unix_ns: 1,
            input: "x.pcap".into(),
            packet: 3,
            interface: "eth0".into(),
            if_index: None,
            link_source: Some("02:00:00:00:00:01".into()),
            source: "127.0.0.1".parse().unwrap(),
            destination: "10.0.0.1".parse().unwrap(),
            protocol: 17,
            source_port: 1,
            destination_port: 2,
            bytes: 60,
            fragment: false,
            reasons: vec![ReasonEntry::from_verdict(PacketReason {
                side: crate::rules::Side::Source,
                reason: loopscope_addr::martian::MartianReason::LoopbackSource,
            })],
            urpf_drop: Some(vec!["strict"]),
        };
        let mut printer = Printer::new(Format::Json, Vec::new());
        printer.emit(&finding).unwrap();
        let expected = String::from_utf8(printer.into_inner()).unwrap();
        let mut scanner = Scanner::new(
            Printer::new(Format::Json, Vec::new()),
            ScanConfig::default(),
        );
        scanner.emit_finding(&finding);
        assert_eq!(String::from_utf8(scanner.out).unwrap(), expected);
    }
}
