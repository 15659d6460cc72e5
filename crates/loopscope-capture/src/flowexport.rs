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

use std::io::Write;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

use loopscope_report::{Outcome, Printer, Record, Table};
use netflow_parser::variable_versions::ipfix::lookup::{IANAIPFixField, IPFixField};
use netflow_parser::variable_versions::ipfix::{FlowSetBody as IpfixBody, IPFix};
use netflow_parser::variable_versions::v9::{FlowSetBody as V9Body, V9};
use netflow_parser::{AutoScopedParser, DataNumber, FieldValue, NetflowPacket, V9Field};
use serde::Serialize;

use crate::CaptureError;
use crate::decode;
use crate::pcapfile::{self, CaptureFile, Interface, PacketVisitor, RecordMeta};
use crate::rules::{self, PacketVerdict};

/// The fields of one flow record that matter here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlowFields {
    pub source: Option<IpAddr>,
    pub destination: Option<IpAddr>,
    pub input_interface: Option<u32>,
    pub output_interface: Option<u32>,
    pub protocol: Option<u8>,
    pub source_port: Option<u16>,
    pub destination_port: Option<u16>,
    pub packets: Option<u64>,
    pub bytes: Option<u64>,
}

/// A martian flow record.
#[derive(Debug, Serialize)]
pub struct FlowFinding {
    pub exporter: SocketAddr,
    pub version: u16,
    /// v9 source id or IPFIX observation domain id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observation_domain: Option<u32>,
    pub source: IpAddr,
    pub destination: IpAddr,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_interface: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_interface: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination_port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub packets: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
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

#[derive(Debug, Serialize, Default)]
pub struct FlowSummary {
    pub datagrams: u64,
    pub export_packets: u64,
    pub flow_records: u64,
    pub martian_flows: u64,
    pub martian_flow_packets: u64,
    pub martian_flow_bytes: u64,
    /// Datagrams the parser rejected (not NetFlow/IPFIX, corrupt, truncated).
    pub parse_errors: u64,
    /// Data records that arrived before their template (not decodable yet).
    pub records_without_template: u64,
    pub exporters: u64,
    pub reasons: std::collections::BTreeMap<String, u64>,
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
        if !self.reasons.is_empty() {
            let mut table = Table::new(["reason", "flows"]);
            for (reason, count) in &self.reasons {
                table.row([reason.clone(), count.to_string()]);
            }
            table.write(out)?;
        }
        writeln!(out, "verdict: {}", self.verdict)
    }
}

/// Parses export datagrams, keeps templates per exporter and domain, reports martian flows.
pub struct FlowScanner<W: Write> {
    printer: Printer<W>,
    parser: AutoScopedParser,
    summary: FlowSummary,
    exporters: std::collections::HashSet<SocketAddr>,
    output_error: Option<std::io::Error>,
}

impl<W: Write> FlowScanner<W> {
    pub fn new(printer: Printer<W>) -> Self {
        FlowScanner {
            printer,
            parser: AutoScopedParser::new(),
            summary: FlowSummary::default(),
            exporters: Default::default(),
            output_error: None,
        }
    }

    fn emit<R: Record>(&mut self, record: &R) {
        if self.output_error.is_none()
            && let Err(error) = self.printer.emit(record)
        {
            self.output_error = Some(error);
        }
    }

    pub fn healthy(&self) -> bool {
        self.output_error.is_none()
    }

    /// One export datagram from `exporter`.
    pub fn datagram(&mut self, exporter: SocketAddr, data: &[u8]) {
        self.summary.datagrams += 1;
        self.exporters.insert(exporter);
        let result = self.parser.parse_from_source(exporter, data);
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
                        self.flow(exporter, 5, None, &fields);
                    }
                }
                NetflowPacket::V9(v9) => self.v9(exporter, &v9),
                NetflowPacket::IPFix(ipfix) => self.ipfix(exporter, &ipfix),
                // v7 (Catalyst switches) has the same addresses as v5 but is rare; counted only.
                _ => {}
            }
        }
    }

    fn v9(&mut self, exporter: SocketAddr, v9: &V9) {
        let domain = Some(v9.header.source_id);
        for flowset in &v9.flowsets {
            match &flowset.body {
                V9Body::Data(data) => {
                    for record in &data.fields {
                        let fields = v9_fields(record);
                        self.flow(exporter, 9, domain, &fields);
                    }
                }
                V9Body::NoTemplate(_) => self.summary.records_without_template += 1,
                _ => {}
            }
        }
    }

    fn ipfix(&mut self, exporter: SocketAddr, ipfix: &IPFix) {
        let domain = Some(ipfix.header.observation_domain_id);
        for flowset in &ipfix.flowsets {
            match &flowset.body {
                IpfixBody::Data(data) => {
                    for record in &data.fields {
                        let fields = ipfix_fields(record);
                        self.flow(exporter, 10, domain, &fields);
                    }
                }
                IpfixBody::V9Data(data) => {
                    for record in &data.fields {
                        let fields = v9_fields(record);
                        self.flow(exporter, 10, domain, &fields);
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
        self.summary.martian_flows += 1;
        self.summary.martian_flow_packets += fields.packets.unwrap_or(0);
        self.summary.martian_flow_bytes += fields.bytes.unwrap_or(0);
        let reasons: Vec<String> = verdicts
            .iter()
            .map(|verdict| verdict.key().to_string())
            .collect();
        for reason in &reasons {
            *self.summary.reasons.entry(reason.clone()).or_insert(0) += 1;
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
        self.emit(&finding);
    }

    /// Reads every UDP payload of a pcap/pcapng capture as an export datagram.
    pub fn scan_capture(
        &mut self,
        path: &Path,
        stop: &std::sync::atomic::AtomicBool,
    ) -> Result<pcapfile::ReadDamage, CaptureError> {
        let file = CaptureFile::open(path)?;
        let mut visitor = ExportVisitor {
            scanner: self,
            stop,
        };
        let (_, damage) = pcapfile::read_capture(file.bytes(), &mut visitor)?;
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
        let deadline = duration.map(|duration| Instant::now() + duration);
        let mut buffer = vec![0u8; 65_536];
        while !stop.load(std::sync::atomic::Ordering::Relaxed) && self.healthy() {
            if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                break;
            }
            match socket.recv_from(&mut buffer) {
                Ok((length, exporter)) => self.datagram(exporter, &buffer[..length]),
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

    pub fn finish(mut self) -> Result<(Outcome, FlowSummary), CaptureError> {
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
        Ok((Outcome::from_passed(!found), summary))
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
            self.scanner.datagram(exporter, payload);
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
