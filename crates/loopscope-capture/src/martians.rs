//! The martian scanner: every packet, from a file or a live socket, goes through
//! [`Scanner::observe`]; findings are reported as they are found (rate-limited when asked),
//! flows and per-reason totals are kept in bounded memory, and [`Scanner::finish`] reports the
//! busiest flows and the summary.
//!
//! The per-packet path allocates nothing for a clean packet: decoding is zero-copy and the
//! verdicts are inline; only a finding builds its report record.

use std::collections::HashMap;
use std::io::{self, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use loopscope_report::{Outcome, Printer, Record, Table, escape_control, plural};
use serde::Serialize;

use crate::CaptureError;
use crate::decode::{self, LinkAddr, Undecodable};
use crate::pcapfile::{self, Interface, PacketVisitor, RecordMeta};
use crate::rules::{self, PacketReason, PacketVerdict};
use crate::urpf::{RouteTable, UrpfMode, UrpfVerdict};
use crate::writer::{PacketOrigin, PcapngWriter};

/// How findings are logged: at most `burst` per `interval_ns` of packet time, like the kernel's
/// `net_ratelimit()` (10 per 5 s); the rest are counted and reported as suppressed.
#[derive(Debug, Clone, Copy)]
pub struct RateLimit {
    /// Findings let through at once.
    pub burst: u32,
    /// The interval over which `burst` findings are allowed, in packet time.
    pub interval_ns: u64,
}

impl RateLimit {
    /// The kernel's default for `martian source` lines: 10 messages per 5 seconds.
    pub const KERNEL: RateLimit = RateLimit {
        burst: 10,
        interval_ns: 5_000_000_000,
    };
}

/// The rate limiter's state; shared by the packet and the flow-export scanners.
#[derive(Debug, Default)]
pub struct LogLimiter {
    limit: Option<RateLimit>,
    window_start_ns: Option<u64>,
    logged_in_window: u32,
    suppressed_in_window: u64,
    /// Every finding not logged, over the whole run.
    pub suppressed_total: u64,
}

impl LogLimiter {
    /// A limiter that lets `limit` through (`None`: everything).
    pub fn new(limit: Option<RateLimit>) -> Self {
        LogLimiter {
            limit,
            ..LogLimiter::default()
        }
    }

    /// Whether a finding at `time_ns` may be logged, and the count of findings suppressed in
    /// the window that just closed (to report before it).
    pub fn allow(&mut self, time_ns: u64) -> (bool, Option<Suppressed>) {
        let Some(limit) = self.limit else {
            return (true, None);
        };
        let start = *self.window_start_ns.get_or_insert(time_ns);
        let mut closed = None;
        if time_ns.saturating_sub(start) >= limit.interval_ns {
            self.window_start_ns = Some(time_ns);
            self.logged_in_window = 0;
            closed = self.take_suppressed();
        }
        if self.logged_in_window < limit.burst {
            self.logged_in_window += 1;
            (true, closed)
        } else {
            self.suppressed_in_window += 1;
            self.suppressed_total += 1;
            (false, closed)
        }
    }

    /// The findings suppressed in the current window, if any (at the end of a run).
    pub fn take_suppressed(&mut self) -> Option<Suppressed> {
        (self.suppressed_in_window > 0).then(|| Suppressed {
            suppressed_findings: std::mem::take(&mut self.suppressed_in_window),
        })
    }
}

/// The default bound of the flow table: enough for every real incident, and a few megabytes
/// at most however many distinct spoofed sources arrive.
pub const DEFAULT_MAX_FLOWS: usize = 65_536;
/// How many flows the human summary lists by default.
pub const DEFAULT_TOP_FLOWS: usize = 20;

/// How a scan judges and reports.
#[derive(Debug)]
pub struct ScanConfig {
    /// Interface names that are loopback interfaces (loopback traffic on them is normal).
    pub loopback_interfaces: Vec<String>,
    /// Routing table for uRPF verdicts.
    pub routes: Option<RouteTable>,
    /// The interface the packets arrived on when the capture does not name one: used for
    /// uRPF, for the report, and (with `loopback_interfaces`) to know loopback traffic.
    pub arrival_interface: Option<String>,
    /// The rate limit on findings printed (`None`: every finding).
    pub rate_limit: Option<RateLimit>,
    /// Report only flows and the summary, not every finding.
    pub quiet: bool,
    /// Human output: also print each finding (JSON always carries them unless `quiet`).
    pub human_findings: bool,
    /// At most this many flows are tracked; packets of later flows count in the totals only.
    pub max_flows: usize,
    /// Report the busiest N flows (None: all tracked ones in JSON, [`DEFAULT_TOP_FLOWS`] in
    /// human output).
    pub top_flows: Option<usize>,
}

impl Default for ScanConfig {
    fn default() -> Self {
        ScanConfig {
            loopback_interfaces: Vec::new(),
            routes: None,
            arrival_interface: None,
            rate_limit: None,
            quiet: false,
            human_findings: true,
            max_flows: DEFAULT_MAX_FLOWS,
            top_flows: None,
        }
    }
}

/// One packet as the scanner sees it, from whatever source.
pub struct Observation<'a> {
    /// When it was captured, in nanoseconds since the Unix epoch.
    pub time_ns: u64,
    /// The link-layer header type (tcpdump.org LINKTYPE_*).
    pub linktype: u32,
    /// The frame as captured (maybe cut to the snap length).
    pub frame: &'a [u8],
    /// The frame's length on the wire.
    pub original_len: u32,
    /// Where the packet came from: the file name, or the live interface.
    pub input: &'a str,
    /// 0-based number of the packet in its input.
    pub number: u64,
    /// Interface name when known (pcapng IDB, live socket).
    pub interface_name: Option<&'a str>,
    /// The interface index when known.
    pub if_index: Option<u32>,
    /// The interface is known to be a loopback interface by its link type (ARPHRD_LOOPBACK).
    pub interface_is_loopback: bool,
    /// Link-layer source from outside the frame (sockaddr_ll); used when the frame has none.
    pub link_source: Option<LinkAddr>,
    /// Distinguishes interfaces for `--write-matches`.
    pub interface_key: (u32, u32),
}

/// One martian packet.
#[derive(Debug, Serialize)]
pub struct Finding {
    /// When it was captured (RFC 3339, UTC).
    pub time: String,
    /// The same in nanoseconds since the Unix epoch.
    pub time_unix_ns: u64,
    /// The file or interface it came from.
    pub input: String,
    /// Its 0-based number in that input.
    pub packet: u64,
    /// The interface it arrived on, or `?`.
    pub interface: String,
    /// The interface index, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub if_index: Option<u32>,
    /// The link-layer source (a MAC address), when the frame or socket gives one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link_source: Option<String>,
    /// The IP source address.
    pub source: IpAddr,
    /// The IP destination address.
    pub destination: IpAddr,
    /// The IP protocol.
    pub protocol: u8,
    /// The transport source port (0 without ports).
    pub source_port: u16,
    /// The transport destination port (0 without ports).
    pub destination_port: u16,
    /// The frame's length on the wire.
    pub bytes: u32,
    /// A fragment (only the first carries ports).
    pub fragment: bool,
    /// Why it is martian.
    pub reasons: Vec<ReasonEntry>,
    /// The uRPF modes that would drop it, when a routing table was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub urpf_drop: Option<Vec<&'static str>>,
}

/// One reason a packet is martian.
#[derive(Debug, Serialize)]
pub struct ReasonEntry {
    /// `source` or `destination`.
    pub side: &'static str,
    /// The reason's code (`loopback_source`...).
    pub code: &'static str,
    /// The RFC that makes it martian.
    pub rfc: &'static str,
    /// The human wording (MartianReason's Display); not in JSON, where `code` says it.
    #[serde(skip)]
    pub reason: loopscope_addr::martian::MartianReason,
}

impl ReasonEntry {
    fn from_reason(reason: PacketReason) -> Self {
        ReasonEntry {
            side: reason.side.as_str(),
            code: reason.reason.code(),
            rfc: reason.reason.rfc(),
            reason: reason.reason,
        }
    }
}

/// `eth0 (ifindex 4)`, `ifindex 4`, `eth0`, escaped for a terminal.
fn interface_label(interface: &str, if_index: Option<u32>) -> String {
    let name = escape_control(interface);
    match if_index {
        Some(index) if !interface.starts_with("ifindex ") => format!("{name} (ifindex {index})"),
        _ => name.into_owned(),
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
            interface_label(&self.interface, self.if_index)
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
    /// Findings held back since the last one printed.
    pub suppressed_findings: u64,
}

impl Record for Suppressed {
    fn kind(&self) -> &'static str {
        "suppressed"
    }
    fn write_human(&self, out: &mut dyn Write) -> io::Result<()> {
        let findings = if self.suppressed_findings == 1 {
            "finding"
        } else {
            "findings"
        };
        writeln!(
            out,
            "martians: {} {findings} suppressed (rate limit)",
            self.suppressed_findings
        )
    }
}

/// A read problem in one input, reported and then passed over.
#[derive(Debug, Serialize)]
pub struct InputDamage {
    /// The file.
    pub input: String,
    /// Records that could not be read and were skipped.
    pub corrupt_records: u64,
    /// The file ended inside a record.
    pub truncated: bool,
    /// Reading stopped: nothing after the damage could be read.
    pub unrecoverable: bool,
    /// The read error, when there was one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_error: Option<String>,
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
        if let Some(error) = &self.read_error {
            parts.push(format!("reading failed part way: {error}"));
        }
        writeln!(out, "{}: {}", escape_control(&self.input), parts.join(", "))
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

/// One martian flow (5-tuple aggregate) among the busiest.
#[derive(Debug, Serialize)]
pub struct FlowRecord {
    /// The IP source address.
    pub source: IpAddr,
    /// The IP destination address.
    pub destination: IpAddr,
    /// The IP protocol.
    pub protocol: u8,
    /// The transport source port.
    pub source_port: u16,
    /// The transport destination port.
    pub destination_port: u16,
    /// Packets of the flow.
    pub packets: u64,
    /// Bytes of the flow.
    pub bytes: u64,
    /// Its first packet (RFC 3339, UTC).
    pub first_seen: String,
    /// Its last packet (RFC 3339, UTC).
    pub last_seen: String,
    /// The first packet in nanoseconds since the Unix epoch.
    pub first_seen_unix_ns: u64,
    /// The last packet in nanoseconds since the Unix epoch.
    pub last_seen_unix_ns: u64,
    /// The interface it arrived on.
    pub interface: String,
    /// The martian reasons' codes.
    pub reasons: Vec<String>,
}

impl Record for FlowRecord {
    fn kind(&self) -> &'static str {
        "flow"
    }
    fn write_human(&self, out: &mut dyn Write) -> io::Result<()> {
        FlowTable {
            flows: std::slice::from_ref(self),
            not_shown: 0,
        }
        .write_human(out)
    }
}

/// The busiest flows as one table (human output; JSON has a `flow` record per flow).
#[derive(Serialize)]
struct FlowTable<'a> {
    flows: &'a [FlowRecord],
    not_shown: u64,
}

impl Record for FlowTable<'_> {
    fn kind(&self) -> &'static str {
        "flows"
    }
    fn write_human(&self, out: &mut dyn Write) -> io::Result<()> {
        let mut table = Table::new([
            "source",
            "destination",
            "protocol",
            "packets",
            "bytes",
            "interface",
            "reasons",
        ]);
        for flow in self.flows {
            table.row([
                flow.source.to_string(),
                flow.destination.to_string(),
                protocol_label(flow.protocol, flow.source_port, flow.destination_port),
                flow.packets.to_string(),
                flow.bytes.to_string(),
                escape_control(&flow.interface).into_owned(),
                flow.reasons.join(", "),
            ]);
        }
        table.write(out)?;
        if self.not_shown > 0 {
            let flows = if self.not_shown == 1 { "flow" } else { "flows" };
            writeln!(
                out,
                "... and {} more {flows} (--top N shows more, --json all)",
                self.not_shown
            )?;
        }
        Ok(())
    }
}

/// The closing record.
#[derive(Debug, Serialize, Default)]
pub struct Summary {
    /// Inputs read (files, or 1 for a live capture).
    pub inputs: u64,
    /// Packets read.
    pub packets: u64,
    /// Their bytes on the wire.
    pub bytes: u64,
    /// Packets that decoded to IPv4 or IPv6.
    pub ip_packets: u64,
    /// Packets of other protocols (ARP...).
    pub non_ip_packets: u64,
    /// Packets whose headers did not decode.
    pub malformed_packets: u64,
    /// Packets of a link type not read here.
    pub unsupported_linktype_packets: u64,
    /// Capture records that could not be read.
    pub corrupt_records: u64,
    /// Inputs that ended inside a record.
    pub truncated_inputs: u64,
    /// Martian packets.
    pub martian_packets: u64,
    /// Their bytes.
    pub martian_bytes: u64,
    /// Distinct martian flows tracked (all of them unless `flow_table_full`).
    pub martian_flows: u64,
    /// The most flows tracked at once.
    pub flow_table_limit: u64,
    /// The table filled up: later flows were counted in the totals only.
    pub flow_table_full: bool,
    /// Martian packets of flows that arrived after the table was full.
    pub untracked_flow_packets: u64,
    /// Flow records reported (the busiest flows, by packets).
    pub flows_reported: u64,
    /// Findings printed.
    pub findings_logged: u64,
    /// Findings the rate limit held back.
    pub findings_suppressed: u64,
    /// Martian packets per reason code (`loopback_source` ...).
    pub reasons: std::collections::BTreeMap<String, u64>,
    /// Packets each uRPF mode would drop (present when a routing table was given).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub urpf_drops: Option<std::collections::BTreeMap<&'static str, u64>>,
    /// Packets written with `--write-matches`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub matches_written: Option<u64>,
    /// The outcome in words for scripts: `no martians` or `martians found`.
    pub verdict: &'static str,
}

impl Record for Summary {
    fn kind(&self) -> &'static str {
        "summary"
    }
    fn write_human(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(
            out,
            "{} ({} IP, {} non-IP, {} malformed) in {}: {} in {}",
            plural(self.packets, "packet", "packets"),
            self.ip_packets,
            self.non_ip_packets,
            self.malformed_packets,
            plural(self.inputs, "input", "inputs"),
            plural(self.martian_packets, "martian packet", "martian packets"),
            plural(self.martian_flows, "flow", "flows")
        )?;
        if self.flow_table_full {
            writeln!(
                out,
                "flow table full at {} flows: {} of later flows are in the totals only",
                self.flow_table_limit,
                plural(
                    self.untracked_flow_packets,
                    "martian packet",
                    "martian packets"
                )
            )?;
        }
        if self.corrupt_records > 0 || self.truncated_inputs > 0 {
            writeln!(
                out,
                "damage: {} skipped, {}",
                plural(self.corrupt_records, "corrupt record", "corrupt records"),
                plural(self.truncated_inputs, "truncated input", "truncated inputs")
            )?;
        }
        if self.unsupported_linktype_packets > 0 {
            writeln!(
                out,
                "{} of unsupported link types skipped",
                plural(self.unsupported_linktype_packets, "packet", "packets")
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
                "{} not logged (rate limit)",
                plural(self.findings_suppressed, "finding", "findings")
            )?;
        }
        if let Some(written) = self.matches_written {
            writeln!(
                out,
                "{} written to the matches file",
                plural(written, "packet", "packets")
            )?;
        }
        writeln!(out, "verdict: {}", self.verdict)
    }
}

/// Findings, flows and totals over any number of inputs.
pub struct Scanner<W: Write> {
    printer: Printer<W>,
    config: ScanConfig,
    summary: Summary,
    flows: HashMap<FlowKey, FlowStats>,
    reason_totals: HashMap<PacketReason, u64>,
    urpf_totals: [u64; 4],
    writer: Option<PcapngWriter>,
    limiter: LogLimiter,
    /// This host's names of interface indexes that captures carry without a name (SLL2).
    local_names: HashMap<u32, Option<String>>,
    /// A failed stdout write (closed pipe) ends the scan; kept to report at the end.
    output_error: Option<io::Error>,
    write_error: Option<CaptureError>,
}

impl<W: Write> Scanner<W> {
    /// A scanner printing through `printer`.
    pub fn new(printer: Printer<W>, config: ScanConfig) -> Self {
        Scanner {
            printer,
            limiter: LogLimiter::new(config.rate_limit),
            summary: Summary {
                flow_table_limit: config.max_flows as u64,
                ..Summary::default()
            },
            config,
            flows: HashMap::new(),
            reason_totals: HashMap::new(),
            urpf_totals: [0; 4],
            writer: None,
            local_names: HashMap::new(),
            output_error: None,
            write_error: None,
        }
    }

    /// Writes flagged packets to `path` as pcapng. Refused when `path` is one of `inputs`
    /// (the same file, by device and inode, under whatever name).
    pub fn write_matches(&mut self, path: &Path, inputs: &[PathBuf]) -> Result<(), CaptureError> {
        self.writer = Some(PcapngWriter::create(path, inputs)?);
        Ok(())
    }

    /// Emits a record unless output already failed.
    pub fn emit<R: Record>(&mut self, record: &R) {
        if self.output_error.is_none()
            && let Err(error) = self.printer.emit(record)
        {
            self.output_error = Some(error);
        }
    }

    /// Whether the scan should go on (stdout still open, matches file still writable).
    pub fn healthy(&self) -> bool {
        self.output_error.is_none() && self.write_error.is_none()
    }

    /// Scans one pcap or pcapng file (`-` for standard input; pipes work). Err only when the
    /// input cannot be opened or is not a capture at all; damage inside is reported and
    /// counted.
    pub fn scan_file(
        &mut self,
        path: &Path,
        stop: &std::sync::atomic::AtomicBool,
    ) -> Result<(), CaptureError> {
        let reader = pcapfile::open_capture(path)?;
        let name = path.display().to_string();
        let input_index = self.summary.inputs as u32;
        self.summary.inputs += 1;
        let mut visitor = FileVisitor {
            scanner: self,
            name: &name,
            input_index,
            stop,
        };
        let (_, damage) = pcapfile::read_capture(reader, &mut visitor)?;
        if damage.any() {
            self.summary.corrupt_records = self
                .summary
                .corrupt_records
                .saturating_add(damage.corrupt_records);
            if damage.truncated || damage.read_error.is_some() {
                self.summary.truncated_inputs += 1;
            }
            self.emit(&InputDamage {
                input: name,
                corrupt_records: damage.corrupt_records,
                truncated: damage.truncated,
                unrecoverable: damage.unrecoverable,
                read_error: damage.read_error,
            });
        }
        Ok(())
    }

    /// The martian packets counted so far by reason code (`loopback_source`...), for a
    /// watcher that reads them while the scan goes on (the exporter's live counters).
    pub fn reason_counts(&self) -> Vec<(&'static str, u64)> {
        let mut counts: Vec<(&'static str, u64)> = self
            .reason_totals
            .iter()
            .map(|(reason, count)| (reason.key(), *count))
            .collect();
        counts.sort_unstable();
        counts
    }

    /// Packets looked at so far (martian or not).
    pub fn packets_seen(&self) -> u64 {
        self.summary.packets
    }

    /// Counts one input that is not a file (a live interface, a collector).
    pub fn add_input(&mut self) {
        self.summary.inputs += 1;
    }

    /// The name this host gives interface `index`, for captures that carry only the index.
    fn local_name(&mut self, index: u32) -> Option<&str> {
        self.local_names
            .entry(index)
            .or_insert_with(|| crate::live::interface_name(index))
            .as_deref()
    }

    /// Looks at one packet. Returns whether it was martian (or dropped by uRPF).
    pub fn observe(&mut self, observation: &Observation<'_>) -> bool {
        self.summary.packets += 1;
        self.summary.bytes = self
            .summary
            .bytes
            .saturating_add(u64::from(observation.original_len));
        // The common case (plain Ethernet or raw IP) costs a few loads: addresses first, the
        // full decode only for packets that need it.
        let mut full = None;
        let (source, destination, link_is_loopback) =
            match decode::fast_addresses(observation.linktype, observation.frame) {
                Some((source, destination)) => (source, destination, false),
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
        let named = observation
            .interface_name
            .or(self.config.arrival_interface.as_deref());
        let on_loopback = observation.interface_is_loopback
            || link_is_loopback
            || named.is_some_and(|name| {
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
        let urpf: Option<UrpfVerdict> = self
            .config
            .routes
            .as_ref()
            .filter(|_| !on_link_only)
            .map(|routes| routes.check(decoded.source, named));
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
            self.summary.martian_bytes = self
                .summary
                .martian_bytes
                .saturating_add(u64::from(observation.original_len));
            for reason in verdicts.iter() {
                *self.reason_totals.entry(reason).or_insert(0) += 1;
            }
        }

        let if_index = observation.if_index.or(decoded.if_index);
        let interface = match (named, if_index) {
            (Some(name), _) => name.to_string(),
            (None, Some(index)) => match self.local_name(index) {
                Some(name) => name.to_string(),
                None => format!("ifindex {index}"),
            },
            (None, None) => observation.input.to_string(),
        };
        let key = FlowKey {
            source: decoded.source,
            destination: decoded.destination,
            protocol: decoded.protocol,
            source_port: decoded.source_port,
            destination_port: decoded.destination_port,
        };
        let bytes = u64::from(observation.original_len);
        let room = self.flows.len() < self.config.max_flows;
        match self.flows.get_mut(&key) {
            Some(flow) => {
                flow.packets = flow.packets.saturating_add(1);
                flow.bytes = flow.bytes.saturating_add(bytes);
                flow.first_ns = flow.first_ns.min(observation.time_ns);
                flow.last_ns = flow.last_ns.max(observation.time_ns);
            }
            None if room => {
                self.flows.insert(
                    key,
                    FlowStats {
                        packets: 1,
                        bytes,
                        first_ns: observation.time_ns,
                        last_ns: observation.time_ns,
                        verdicts,
                        interface: interface.clone(),
                    },
                );
            }
            None => {
                self.summary.flow_table_full = true;
                self.summary.untracked_flow_packets += 1;
            }
        }

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

        let shown = self.printer.is_json() || self.config.human_findings;
        if self.config.quiet || !shown {
            return true;
        }
        let (allowed, closed_window) = self.limiter.allow(observation.time_ns);
        if let Some(suppressed) = closed_window {
            self.emit(&suppressed);
        }
        if !allowed {
            return true;
        }
        let link_source = if decoded.link_source.is_empty() {
            observation.link_source
        } else {
            Some(decoded.link_source)
        };
        let finding = Finding {
            time: format_time(observation.time_ns),
            time_unix_ns: observation.time_ns,
            input: observation.input.to_string(),
            packet: observation.number,
            interface,
            if_index,
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
            reasons: verdicts.iter().map(ReasonEntry::from_reason).collect(),
            urpf_drop: urpf.map(|verdict| verdict.dropping_modes()),
        };
        self.summary.findings_logged += 1;
        self.emit(&finding);
        true
    }

    /// Reports the busiest flows and the summary, and hands back the output (for the caller
    /// to flush and see whether stdout took it all). Err when the matches file or stdout
    /// failed (a closed pipe is not a failure).
    pub fn finish(mut self) -> Result<(Outcome, Summary, W), CaptureError> {
        if let Some(suppressed) = self.limiter.take_suppressed() {
            self.emit(&suppressed);
        }
        self.summary.findings_suppressed = self.limiter.suppressed_total;
        let mut flows: Vec<(FlowKey, FlowStats)> = self.flows.drain().collect();
        self.summary.martian_flows = flows.len() as u64;
        let top = match self.config.top_flows {
            Some(top) => top,
            None if self.printer.is_json() => flows.len(),
            None => DEFAULT_TOP_FLOWS,
        };
        let by_packets = |a: &(FlowKey, FlowStats), b: &(FlowKey, FlowStats)| {
            b.1.packets
                .cmp(&a.1.packets)
                .then(a.1.first_ns.cmp(&b.1.first_ns))
        };
        if top < flows.len() {
            flows.select_nth_unstable_by(top, by_packets);
            flows.truncate(top);
        }
        flows.sort_by(by_packets);
        let records: Vec<FlowRecord> = flows
            .into_iter()
            .map(|(key, stats)| FlowRecord {
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
                    .map(|reason| reason.key().to_string())
                    .collect(),
            })
            .collect();
        self.summary.flows_reported = records.len() as u64;
        if self.printer.is_json() {
            for record in &records {
                self.emit(record);
            }
        } else if !records.is_empty() {
            let table = FlowTable {
                not_shown: self.summary.martian_flows - records.len() as u64,
                flows: &records,
            };
            self.emit(&table);
        }
        self.summary.reasons = self
            .reason_totals
            .iter()
            .map(|(reason, count)| (reason.key().to_string(), *count))
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
        Ok((
            Outcome::from_passed(!found),
            summary,
            self.printer.into_inner(),
        ))
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
