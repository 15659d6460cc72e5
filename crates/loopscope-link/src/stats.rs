//! What a link tells about itself at the end of a run: typed, serialised under the JSON field
//! names the summaries have always used (a contract with users' scripts), and rendered as prose
//! for people.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::adapter::impair::ImpairmentStats;
use crate::niu::{NiuLogEntry, NiuStats};

/// Link-specific figures. Each part is present only on the links it applies to; in JSON the
/// parts are flattened into one object (`"transport"`, `"datagrams_lost"`, `"baud_measured"`,
/// `"impairment": {...}`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LinkStats {
    /// `tcp`, `udp`, `unix`, `unixgram`, `serial`, `pty`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transport: Option<&'static str>,
    /// The addresses of a connected IP socket.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub socket: Option<SocketStats>,
    /// Sequence accounting of a datagram link.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub datagrams: Option<DatagramStats>,
    /// A serial line's settings and counters.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub line: Option<LineStats>,
    /// The child process of an `exec:` link.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub process: Option<ProcessStats>,
    /// What the impairment adapter did (`sim:`, `--impair`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub impairment: Option<ImpairmentStats>,
    /// What a software NIU at the far end did (`niu`: its figures and its log).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub niu: Option<NiuReport>,
    /// The modem adapter's rates and counters (`--modem`).
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub modem: Option<ModemStats>,
    /// What the capture adapter wrote (`--capture FILE`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capture: Option<CaptureStats>,
}

/// The capture adapter's file (see [`crate::adapter::capture`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CaptureStats {
    /// The pcapng file written.
    pub file: String,
    /// Packets written.
    pub packets: u64,
    /// Bytes of link data in them.
    pub bytes: u64,
    /// Why writing stopped, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The modem adapter over an audio link (see [`crate::adapter::modem`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ModemStats {
    /// The modulation, in words.
    pub modulation: String,
    /// Bits per second on the line.
    pub line_rate_bps: u32,
    /// Data bits per second (8 of every 10 line bits: start and stop frame each byte).
    pub payload_rate_bps: u32,
    /// Bytes modulated.
    pub modem_bytes_sent: u64,
    /// Bytes demodulated.
    pub modem_bytes_received: u64,
    /// Stop bits that read as space.
    pub framing_errors: u64,
}

/// A software CSU/NIU's figures and the log of its state changes (see [`crate::niu`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NiuReport {
    /// Its counters.
    #[serde(flatten)]
    pub stats: NiuStats,
    /// Its state changes, in order.
    pub log: Vec<NiuLogEntry>,
}

/// The addresses of a connected IP socket.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SocketStats {
    /// The local address and port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local: Option<String>,
    /// The peer's address and port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
}

/// Sequence accounting of a datagram link (see [`crate::transport::datagram`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DatagramStats {
    /// Payload bytes per datagram (after the sequence header).
    pub datagram_payload_bytes: usize,
    /// Datagrams sent.
    pub datagrams_sent: u64,
    /// Distinct datagrams received (each sequence number once).
    pub datagrams_received: u64,
    /// Sent and never received (sent − received).
    pub datagrams_lost: u64,
    /// Copies of a datagram already received; their payload is not delivered again.
    pub datagrams_duplicated: u64,
    /// Arrived after a datagram with a higher number; counted as received, payload not
    /// delivered (the checker had moved past it).
    pub datagrams_reordered: u64,
    /// Not ours (wrong marker, too short); only present when some arrived.
    #[serde(skip_serializing_if = "is_zero")]
    pub datagrams_foreign: u64,
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

/// A serial line (a real port, or a pseudo-terminal with the built-in plug).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LineStats {
    /// The device path.
    pub device: String,
    /// The control-line loop test (`lines=1`): each pair's verdict.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub control_lines: Option<BTreeMap<String, String>>,
    /// `115200 8N1`.
    pub line_settings: String,
    /// Why there are no kernel line counters, when there are none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line_counters: Option<String>,
    /// The baud rate asked for.
    pub baud_configured: u32,
    /// Measured from the data: characters received × bits per character ÷ time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baud_measured: Option<f64>,
    /// Set when the measured rate is more than 1% off the configured one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baud_warning: Option<String>,
    /// Whether the far end paces characters at the baud rate (the built-in pty plug can).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paced: Option<bool>,
    /// The kernel's line counters since the port was opened, where the driver keeps them.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub counters: Option<LineCounterDeltas>,
}

/// The kernel's line counters (TIOCGICOUNT) since the port was opened.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LineCounterDeltas {
    /// Characters received.
    pub line_rx: i64,
    /// Characters transmitted.
    pub line_tx: i64,
    /// Framing errors (a stop bit read as space).
    pub line_frame_errors: i64,
    /// Hardware overruns (the UART's FIFO overflowed).
    pub line_overruns: i64,
    /// Parity errors.
    pub line_parity_errors: i64,
    /// Breaks received.
    pub line_breaks: i64,
    /// Buffer overruns (the tty's buffer overflowed).
    pub line_buffer_overruns: i64,
}

/// The child process of an `exec:` link.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ProcessStats {
    /// The command as given.
    pub program: String,
    /// How it ended, as the system says it (`exit status: 0`, `signal: 9 (SIGKILL)`); absent
    /// while it still runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_status: Option<String>,
    /// Its exit code, when it exited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// The signal that killed it, when one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_signal: Option<i32>,
}

pub use loopscope_report::plural;

impl LinkStats {
    /// Nothing to report (the human summary then prints no link lines).
    pub fn is_empty(&self) -> bool {
        *self == LinkStats::default()
    }

    /// The figures as labelled lines of prose, for human summaries.
    pub fn human_lines(&self) -> Vec<(&'static str, String)> {
        let mut lines = Vec::new();
        let mut head = Vec::new();
        if let Some(transport) = self.transport {
            head.push(transport.to_string());
        }
        if let Some(socket) = &self.socket {
            match (&socket.local, &socket.peer) {
                (Some(local), Some(peer)) => head.push(format!("{local} to {peer}")),
                (None, Some(peer)) => head.push(format!("to {peer}")),
                (Some(local), None) => head.push(format!("from {local}")),
                (None, None) => {}
            }
        }
        if let Some(line) = &self.line {
            head.push(format!("{}, {}", line.device, line.line_settings));
        }
        if !head.is_empty() {
            lines.push(("link", head.join(" ")));
        }
        if let Some(d) = &self.datagrams {
            let mut text = format!(
                "{} sent, {} received, {} lost, {} duplicated, {} reordered ({}-byte payloads)",
                d.datagrams_sent,
                d.datagrams_received,
                d.datagrams_lost,
                d.datagrams_duplicated,
                d.datagrams_reordered,
                d.datagram_payload_bytes
            );
            if d.datagrams_foreign > 0 {
                text.push_str(&format!(
                    "; {} not ours",
                    plural(d.datagrams_foreign, "datagram", "datagrams")
                ));
            }
            lines.push(("datagrams", text));
        }
        if let Some(line) = &self.line {
            let mut parts = vec![format!("{} configured", line.baud_configured)];
            match line.baud_measured {
                Some(measured) => parts.push(format!("{measured:.0} measured")),
                None => parts.push("not measured (too little data)".into()),
            }
            match line.paced {
                Some(true) => parts.push("the plug paces at this rate".into()),
                Some(false) => parts.push("unpaced (pace=0)".into()),
                None => {}
            }
            lines.push(("baud", parts.join(", ")));
            if let Some(warning) = &line.baud_warning {
                lines.push(("warning", warning.clone()));
            }
            match (&line.counters, &line.line_counters) {
                (Some(c), _) => lines.push((
                    "line",
                    format!(
                        "{} received, {} sent, {} frame errors, {} overruns, {} parity errors, {} breaks, {} buffer overruns",
                        c.line_rx,
                        c.line_tx,
                        c.line_frame_errors,
                        c.line_overruns,
                        c.line_parity_errors,
                        c.line_breaks,
                        c.line_buffer_overruns
                    ),
                )),
                (None, Some(why)) => lines.push(("line", format!("no kernel counters ({why})"))),
                (None, None) => {}
            }
            if let Some(control) = &line.control_lines {
                let text = control
                    .iter()
                    .map(|(pair, verdict)| format!("{} {verdict}", pair.replace('_', "→")))
                    .collect::<Vec<_>>()
                    .join(", ");
                lines.push(("control", text));
            }
        }
        if let Some(p) = &self.process {
            let how = match (p.exit_code, p.exit_signal, &p.exit_status) {
                (Some(code), _, _) => format!("exited with status {code}"),
                (None, Some(signal), _) => format!("was killed by signal {signal}"),
                (None, None, Some(status)) => status.clone(),
                (None, None, None) => "still running at the end".into(),
            };
            lines.push(("program", format!("{} {how}", p.program)));
        }
        if let Some(i) = &self.impairment {
            let mut parts = Vec::new();
            let mut add = |count: u64, one: &str, many: &str, verb: &str| {
                if count > 0 {
                    parts.push(format!("{} {verb}", plural(count, one, many)));
                }
            };
            add(i.flipped_bits, "bit", "bits", "flipped");
            add(i.dropped_bytes, "byte", "bytes", "dropped");
            add(i.inserted_bytes, "byte", "bytes", "inserted");
            add(i.duplicated_bytes, "byte", "bytes", "duplicated");
            add(i.deleted_bits, "bit", "bits", "deleted");
            add(i.inserted_bits, "bit", "bits", "inserted");
            add(i.lost_messages, "message", "messages", "lost");
            add(i.reordered_messages, "message", "messages", "reordered");
            if parts.is_empty() {
                parts.push("nothing damaged".into());
            }
            lines.push(("impairment", parts.join(", ")));
        }
        if let Some(c) = &self.capture {
            let mut text = format!(
                "{} and {} written to {}",
                plural(c.packets, "packet", "packets"),
                plural(c.bytes, "byte", "bytes"),
                c.file
            );
            if let Some(error) = &c.error {
                text.push_str(&format!(" (stopped: {error})"));
            }
            lines.push(("capture", text));
        }
        if let Some(m) = &self.modem {
            lines.push((
                "modem",
                format!(
                    "{}, {} bit/s on the line ({} bit/s of data), {} sent, {} received, {}",
                    m.modulation,
                    m.line_rate_bps,
                    m.payload_rate_bps,
                    plural(m.modem_bytes_sent, "byte", "bytes"),
                    m.modem_bytes_received,
                    plural(m.framing_errors, "framing error", "framing errors")
                ),
            ));
        }
        if let Some(n) = &self.niu {
            lines.push((
                "niu",
                format!(
                    "{} framing, loop closed {} and opened {}, {}, {} payload underruns",
                    n.stats.framing,
                    plural(n.stats.loops_closed, "time", "times"),
                    plural(n.stats.loops_opened, "time", "times"),
                    plural(n.stats.timeouts, "timeout", "timeouts"),
                    n.stats.payload_underruns
                ),
            ));
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The JSON names are those the summaries carried when stats were a free-form map.
    #[test]
    fn serialises_under_the_established_field_names() {
        let stats = LinkStats {
            transport: Some("udp"),
            socket: Some(SocketStats {
                local: Some("127.0.0.1:5000".into()),
                peer: Some("127.0.0.1:7".into()),
            }),
            datagrams: Some(DatagramStats {
                datagram_payload_bytes: 1400,
                datagrams_sent: 10,
                datagrams_received: 9,
                datagrams_lost: 1,
                datagrams_duplicated: 0,
                datagrams_reordered: 2,
                datagrams_foreign: 0,
            }),
            impairment: Some(ImpairmentStats {
                flipped_bits: 3,
                ..Default::default()
            }),
            ..Default::default()
        };
        let value = serde_json::to_value(&stats).unwrap();
        assert_eq!(
            value,
            json!({
                "transport": "udp",
                "local": "127.0.0.1:5000",
                "peer": "127.0.0.1:7",
                "datagram_payload_bytes": 1400,
                "datagrams_sent": 10,
                "datagrams_received": 9,
                "datagrams_lost": 1,
                "datagrams_duplicated": 0,
                "datagrams_reordered": 2,
                "impairment": {
                    "flipped_bits": 3, "dropped_bytes": 0, "inserted_bytes": 0,
                    "duplicated_bytes": 0, "deleted_bits": 0, "inserted_bits": 0,
                    "lost_messages": 0, "reordered_messages": 0
                }
            })
        );
        assert_eq!(
            serde_json::to_value(LinkStats::default()).unwrap(),
            json!({})
        );
    }

    #[test]
    fn serial_names_and_prose() {
        let stats = LinkStats {
            transport: Some("serial"),
            line: Some(LineStats {
                device: "/dev/ttyS0".into(),
                line_settings: "9600 7E1".into(),
                baud_configured: 9600,
                baud_measured: Some(9598.0),
                counters: Some(LineCounterDeltas {
                    line_rx: 100,
                    line_tx: 100,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let value = serde_json::to_value(&stats).unwrap();
        for key in [
            "device",
            "line_settings",
            "baud_configured",
            "baud_measured",
            "line_rx",
            "line_tx",
            "line_frame_errors",
            "line_overruns",
            "line_parity_errors",
            "line_breaks",
            "line_buffer_overruns",
        ] {
            assert!(value.get(key).is_some(), "{key} missing: {value}");
        }
        let text: Vec<String> = stats
            .human_lines()
            .into_iter()
            .map(|(label, line)| format!("{label}: {line}"))
            .collect();
        assert_eq!(text[0], "link: serial /dev/ttyS0, 9600 7E1");
        assert_eq!(text[1], "baud: 9600 configured, 9598 measured");
        assert!(
            text[2].starts_with("line: 100 received, 100 sent"),
            "{text:?}"
        );
        assert!(!text.iter().any(|l| l.contains('{')), "{text:?}");
    }

    #[test]
    fn plurals() {
        assert_eq!(plural(1, "slip", "slips"), "1 slip");
        assert_eq!(plural(0, "slip", "slips"), "0 slips");
        assert_eq!(plural(2, "bit", "bits"), "2 bits");
    }
}
