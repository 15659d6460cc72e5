//! The records BFD runs print: events while running, one summary at the end.

use std::collections::BTreeMap;
use std::io::{self, Write};

use loopscope_report::Record;
use serde::Serialize;

use super::session::Session;

/// An event of a BFD run. In JSON it is its variant's object, with the variant's `type`.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum BfdEvent {
    /// The speaker has opened its sockets.
    Started(Started),
    /// A far end listens.
    Listening(Listening),
    /// A session changed state.
    State(StateChange),
    /// The intervals in force changed.
    Negotiated(Negotiated),
    /// A Poll Sequence ended with a Final.
    Poll(PollDone),
    /// The peer advertises new parameters.
    RemoteParameters(RemoteParameters),
    /// An echo (or S-BFD answer) came back.
    EchoReply(EchoReply),
    /// The echo function found its path and starts.
    EchoPath(EchoPath),
    /// A packet was dropped (the first few of each reason).
    Dropped(Dropped),
}

impl Record for BfdEvent {
    fn kind(&self) -> &'static str {
        match self {
            BfdEvent::Started(r) => r.kind(),
            BfdEvent::Listening(r) => r.kind(),
            BfdEvent::State(r) => r.kind(),
            BfdEvent::Negotiated(r) => r.kind(),
            BfdEvent::Poll(r) => r.kind(),
            BfdEvent::RemoteParameters(r) => r.kind(),
            BfdEvent::EchoReply(r) => r.kind(),
            BfdEvent::EchoPath(r) => r.kind(),
            BfdEvent::Dropped(r) => r.kind(),
        }
    }
    fn write_human(&self, out: &mut dyn Write) -> io::Result<()> {
        match self {
            BfdEvent::Started(r) => r.write_human(out),
            BfdEvent::Listening(r) => r.write_human(out),
            BfdEvent::State(r) => r.write_human(out),
            BfdEvent::Negotiated(r) => r.write_human(out),
            BfdEvent::Poll(r) => r.write_human(out),
            BfdEvent::RemoteParameters(r) => r.write_human(out),
            BfdEvent::EchoReply(r) => r.write_human(out),
            BfdEvent::EchoPath(r) => r.write_human(out),
            BfdEvent::Dropped(r) => r.write_human(out),
        }
    }
}

/// A received packet dropped (RFC 5880 §6.8.6); the first few of each reason are reported.
#[derive(Debug, Clone, Serialize)]
pub struct Dropped {
    /// The sender.
    pub from: String,
    /// The reason (RFC 5880 §6.8.6), as in the summary's `dropped`.
    pub reason: &'static str,
}

impl Record for Dropped {
    fn kind(&self) -> &'static str {
        "dropped"
    }
    fn write_human(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(
            out,
            "           dropped a packet from {}: {}",
            self.from, self.reason
        )
    }
}

#[derive(Debug, Clone, Serialize)]
/// A speaker or initiator has started.
pub struct Started {
    /// The peer.
    pub peer: String,
    /// Our source address and port.
    pub local: String,
    /// Our My Discriminator.
    pub my_discriminator: u32,
    /// Multihop (RFC 5883).
    pub multihop: bool,
    /// The passive role.
    pub passive: bool,
}

impl Record for Started {
    fn kind(&self) -> &'static str {
        "started"
    }
    fn write_human(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(
            out,
            "BFD {} from {}, my discriminator {:#010x}{}{}",
            self.peer,
            self.local,
            self.my_discriminator,
            if self.multihop { ", multihop" } else { "" },
            if self.passive { ", passive" } else { "" }
        )
    }
}

#[derive(Debug, Clone, Serialize)]
/// A far end (responder, reflector, echo) is listening.
pub struct Listening {
    /// The address and port.
    pub endpoint: String,
    /// What it answers (`bfd`, `bfd multihop`, `s-bfd reflector`, `bfd echo`).
    pub mode: &'static str,
}

impl Record for Listening {
    fn kind(&self) -> &'static str {
        "listening"
    }
    fn write_human(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(out, "{} listening on {}", self.mode, self.endpoint)
    }
}

/// A state change of a session.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StateChange {
    /// The peer's address (and port).
    pub peer: String,
    /// The local address of the session, where one process answers on several (the
    /// responder).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local: Option<String>,
    /// Seconds since the run started.
    pub t_s: f64,
    /// Milliseconds since the Unix epoch.
    pub unix_ms: u64,
    /// The state left.
    pub from: String,
    /// The state entered.
    pub to: String,
    /// The local diagnostic after the change (RFC 5880 §4.1's name and code).
    pub diagnostic: &'static str,
    /// Its code.
    pub diagnostic_code: u8,
    /// The state and diagnostic of the peer's packet that caused it.
    pub remote_state: Option<String>,
    /// The peer's diagnostic's name.
    pub remote_diagnostic: Option<&'static str>,
    /// Its code.
    pub remote_diagnostic_code: Option<u8>,
    /// For a detection-time expiry: the time from the last valid packet to the declaration.
    pub detection_ms: Option<f64>,
}

impl Record for StateChange {
    fn kind(&self) -> &'static str {
        "state"
    }
    fn write_human(&self, out: &mut dyn Write) -> io::Result<()> {
        write!(
            out,
            "{:>9.3} s  {}  {} -> {}  diag {} ({})",
            self.t_s, self.peer, self.from, self.to, self.diagnostic_code, self.diagnostic
        )?;
        if let (Some(state), Some(code), Some(name)) = (
            &self.remote_state,
            self.remote_diagnostic_code,
            self.remote_diagnostic,
        ) {
            write!(out, "; peer {state}, diag {code} ({name})")?;
        }
        if let Some(ms) = self.detection_ms {
            write!(out, "; detected after {ms:.1} ms")?;
        }
        writeln!(out)
    }
}

/// The intervals in force once Up.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Negotiated {
    /// The peer.
    pub peer: String,
    /// Our periodic transmit interval before jitter.
    pub tx_interval_ms: f64,
    /// The interval the peer should transmit at.
    pub rx_interval_ms: f64,
    /// How long without a packet before we declare the session Down.
    pub detection_time_ms: f64,
    /// The peer's Detect Mult.
    pub remote_detect_mult: u8,
    /// The peer's Desired Min TX Interval.
    pub remote_desired_min_tx_ms: f64,
    /// The peer's Required Min RX Interval.
    pub remote_required_min_rx_ms: f64,
    /// The peer's Required Min Echo RX Interval (zero: no echo).
    pub remote_required_min_echo_rx_ms: f64,
}

impl Negotiated {
    /// The figures of `session` now.
    pub fn of(peer: &str, session: &Session) -> Self {
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
        Negotiated {
            peer: peer.to_string(),
            tx_interval_ms: ms(session.tx_interval()),
            rx_interval_ms: ms(session.rx_interval()),
            detection_time_ms: ms(session.detection_time()),
            remote_detect_mult: session.remote_detect_mult(),
            remote_desired_min_tx_ms: ms(session.remote_desired_min_tx()),
            remote_required_min_rx_ms: ms(session.remote_min_rx()),
            remote_required_min_echo_rx_ms: ms(session.remote_min_echo_rx()),
        }
    }
}

impl Record for Negotiated {
    fn kind(&self) -> &'static str {
        "negotiated"
    }
    fn write_human(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(
            out,
            "           negotiated: tx {:.1} ms, rx {:.1} ms x {} = detection time {:.1} ms",
            self.tx_interval_ms,
            self.rx_interval_ms,
            self.remote_detect_mult,
            self.detection_time_ms
        )
    }
}

#[derive(Debug, Clone, Serialize)]
/// A Poll Sequence ended (RFC 5880 §6.5).
pub struct PollDone {
    /// The peer.
    pub peer: String,
    /// From the first Poll to the Final.
    pub took_ms: f64,
}

impl Record for PollDone {
    fn kind(&self) -> &'static str {
        "poll_final"
    }
    fn write_human(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(
            out,
            "           poll sequence answered with final after {:.1} ms",
            self.took_ms
        )
    }
}

#[derive(Debug, Clone, Serialize)]
/// The peer advertises new parameters (its Poll Sequence, or a change without one).
pub struct RemoteParameters {
    /// The peer.
    pub peer: String,
    /// Its Desired Min TX Interval.
    pub desired_min_tx_ms: f64,
    /// Its Required Min RX Interval.
    pub required_min_rx_ms: f64,
    /// Its Detect Mult.
    pub detect_mult: u8,
}

impl Record for RemoteParameters {
    fn kind(&self) -> &'static str {
        "remote_parameters"
    }
    fn write_human(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(
            out,
            "           peer now advertises: min tx {:.1} ms, min rx {:.1} ms, multiplier {}",
            self.desired_min_tx_ms, self.required_min_rx_ms, self.detect_mult
        )
    }
}

#[derive(Debug, Clone, Serialize)]
/// One echo (or S-BFD answer) back.
pub struct EchoReply {
    /// Its number.
    pub sequence: u64,
    /// Its round trip.
    pub rtt_ms: f64,
    /// The TTL or hop limit it came back with, when read (echo packets leave with 255: a
    /// peer's forwarding plane returns them with 254).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u8>,
}

impl Record for EchoReply {
    fn kind(&self) -> &'static str {
        "reply"
    }
    fn write_human(&self, out: &mut dyn Write) -> io::Result<()> {
        match self.ttl {
            Some(ttl) => writeln!(
                out,
                "           seq={} ttl={} time={:.3} ms",
                self.sequence, ttl, self.rtt_ms
            ),
            None => writeln!(
                out,
                "           seq={} time={:.3} ms",
                self.sequence, self.rtt_ms
            ),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
/// The path the echo function's packets take.
pub struct EchoPath {
    /// `forwarding`: to the peer's link-layer address with our own address as IP source and
    /// destination, looped by the peer's forwarding plane (RFC 5881 §4); `port`: to the peer's
    /// UDP port 3785, looped by `reflect --bfd-echo`.
    pub via: &'static str,
    /// The interface they leave by (forwarding).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    /// Their IP source and destination (forwarding), or where they are sent (port).
    pub address: String,
    /// The peer's link-layer address they are sent to (forwarding).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_mac: Option<String>,
}

impl Record for EchoPath {
    fn kind(&self) -> &'static str {
        "echo_path"
    }
    fn write_human(&self, out: &mut dyn Write) -> io::Result<()> {
        match (&self.interface, &self.peer_mac) {
            (Some(interface), Some(mac)) => writeln!(
                out,
                "           echo through the peer's forwarding plane: to {mac} on {interface}, IP {} to itself",
                self.address
            ),
            _ => writeln!(out, "           echo to {}", self.address),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
/// The echo function's round trips.
pub struct EchoSummary {
    /// Echo packets sent.
    pub sent: u64,
    /// Echo packets back.
    pub received: u64,
    /// Sent and not back.
    pub lost: u64,
    /// Shortest round trip.
    pub rtt_min_ms: Option<f64>,
    /// Median round trip.
    pub rtt_p50_ms: Option<f64>,
    /// 99th percentile round trip.
    pub rtt_p99_ms: Option<f64>,
    /// Longest round trip.
    pub rtt_max_ms: Option<f64>,
    /// `forwarding` or `port` (see the `echo_path` event).
    pub via: &'static str,
    /// Times the echo function failed: no packet back within its Detection Time, and the
    /// session went Down with diagnostic 2 (RFC 5880 §6.8.5).
    pub failures: u64,
}

fn opt(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_string(), |v| format!("{v:.3}"))
}

/// The speaker's summary.
#[derive(Debug, Clone, Serialize)]
pub struct SpeakerSummary {
    /// The peer.
    pub peer: String,
    /// Our My Discriminator.
    pub my_discriminator: u32,
    /// The peer's discriminator at the end.
    pub your_discriminator: u32,
    /// The state when the run ended (before the closing AdminDown).
    pub state: String,
    /// Whether the session ever came Up.
    pub came_up: bool,
    /// From the start to the first Up.
    pub time_to_up_ms: Option<f64>,
    /// Time spent Up.
    pub uptime_s: f64,
    /// Times the session left Up other than by our own AdminDown.
    pub flaps: u64,
    /// The whole run.
    pub elapsed_s: f64,
    /// Control packets sent.
    pub sent: u64,
    /// Control packets received from the peer.
    pub received: u64,
    /// Sends that failed.
    pub send_errors: u64,
    /// Packets from addresses other than the peer's.
    pub from_other_hosts: u64,
    /// Packets dropped, by reason (RFC 5880 §6.8.6).
    pub dropped: BTreeMap<&'static str, u64>,
    /// The intervals in force at the end.
    pub negotiated: Option<Negotiated>,
    /// Gaps between the peer's periodic packets while both ends were Up.
    pub interarrival_count: u64,
    /// Shortest gap.
    pub interarrival_min_ms: Option<f64>,
    /// Median gap.
    pub interarrival_p50_ms: Option<f64>,
    /// 99th percentile gap.
    pub interarrival_p99_ms: Option<f64>,
    /// Longest gap.
    pub interarrival_max_ms: Option<f64>,
    /// The interval the peer promised (the larger of its Desired Min TX and our Required Min
    /// RX); RFC 5880 §6.8.7 lets it send at 75..=100 % of it.
    pub promised_interval_ms: Option<f64>,
    /// Gaps longer than the promised interval.
    pub over_promised: u64,
    /// Packets missing from the gaps: each gap in promised intervals, rounded, less one.
    pub missed: u64,
    /// The gaps by their share of the promised interval (RFC 5880 §6.8.7 allows 75-100 %).
    pub interarrival_histogram: BTreeMap<&'static str, u64>,
    /// Control Detection Time expiries, and the 99th percentile of the time from the last
    /// packet to the declaration.
    pub detections: u64,
    /// 99th percentile of the detections.
    pub detection_p99_ms: Option<f64>,
    /// The echo function's figures, when it ran.
    pub echo: Option<EchoSummary>,
    /// Our periodic packets whose lateness was measured: how long after its deadline each
    /// left (read after `sendto` returned), in microseconds. RFC 5880 §6.8.7's random
    /// reduction is part of the deadline, so this is the jitter we add beyond it.
    pub tx_late_count: u64,
    /// Median lateness.
    pub tx_late_p50_us: Option<u64>,
    /// 99th percentile lateness.
    pub tx_late_p99_us: Option<u64>,
    /// Largest lateness.
    pub tx_late_max_us: Option<u64>,
    /// Whether the sender ran under SCHED_FIFO (`--realtime`).
    pub realtime: bool,
    /// Demand mode (RFC 5880 §6.6): the Poll Sequences started to check the path, those
    /// answered with a Final, and the 99th percentile of the time to the Final.
    pub demand_polls: u64,
    /// Polls answered with a Final.
    pub demand_polls_answered: u64,
    /// 99th percentile time from Poll to Final.
    pub demand_poll_p99_ms: Option<f64>,
    /// Every state change.
    pub state_changes: Vec<StateChange>,
    /// Came Up and never flapped.
    pub passed: bool,
}

impl Record for SpeakerSummary {
    fn kind(&self) -> &'static str {
        "summary"
    }
    fn write_human(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(out, "\n--- BFD {} ---", self.peer)?;
        match self.time_to_up_ms {
            Some(ms) => writeln!(
                out,
                "came up after {ms:.1} ms; up {:.1} s of {:.1} s; {} flap{}; ended {}",
                self.uptime_s,
                self.elapsed_s,
                self.flaps,
                if self.flaps == 1 { "" } else { "s" },
                self.state
            )?,
            None => writeln!(
                out,
                "never came up in {:.1} s (ended {})",
                self.elapsed_s, self.state
            )?,
        }
        writeln!(
            out,
            "{} control packets sent, {} received, {} dropped{}",
            self.sent,
            self.received,
            self.dropped.values().sum::<u64>(),
            if self.dropped.is_empty() {
                String::new()
            } else {
                format!(
                    " ({})",
                    self.dropped
                        .iter()
                        .map(|(k, v)| format!("{k} {v}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        )?;
        if let Some(n) = &self.negotiated {
            writeln!(
                out,
                "negotiated: tx {:.1} ms, rx {:.1} ms, detection time {:.1} ms",
                n.tx_interval_ms, n.rx_interval_ms, n.detection_time_ms
            )?;
        }
        if self.interarrival_count > 0 {
            writeln!(
                out,
                "peer inter-arrival min/p50/p99/max = {}/{}/{}/{} ms (promised {} ms): {} over, {} missed",
                opt(self.interarrival_min_ms),
                opt(self.interarrival_p50_ms),
                opt(self.interarrival_p99_ms),
                opt(self.interarrival_max_ms),
                opt(self.promised_interval_ms),
                self.over_promised,
                self.missed
            )?;
            writeln!(
                out,
                "  of the promised interval: <75 % {}, 75-100 % {}, 100-150 % {}, 150-200 % {}, >200 % {}",
                self.interarrival_histogram
                    .get("under_75_percent")
                    .unwrap_or(&0),
                self.interarrival_histogram
                    .get("75_to_100_percent")
                    .unwrap_or(&0),
                self.interarrival_histogram
                    .get("100_to_150_percent")
                    .unwrap_or(&0),
                self.interarrival_histogram
                    .get("150_to_200_percent")
                    .unwrap_or(&0),
                self.interarrival_histogram
                    .get("over_200_percent")
                    .unwrap_or(&0)
            )?;
        }
        if self.detections > 0 {
            writeln!(
                out,
                "{} detection-time expir{}, p99 {} ms from the last packet",
                self.detections,
                if self.detections == 1 { "y" } else { "ies" },
                opt(self.detection_p99_ms)
            )?;
        }
        if self.tx_late_count > 0 {
            let us = |v: Option<u64>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
            writeln!(
                out,
                "our sends past their deadline p50/p99/max = {}/{}/{} us ({} packets{})",
                us(self.tx_late_p50_us),
                us(self.tx_late_p99_us),
                us(self.tx_late_max_us),
                self.tx_late_count,
                if self.realtime { ", SCHED_FIFO" } else { "" }
            )?;
        }
        if self.demand_polls > 0 {
            writeln!(
                out,
                "demand mode: {} poll{} to check the path, {} answered, p99 {} ms",
                self.demand_polls,
                if self.demand_polls == 1 { "" } else { "s" },
                self.demand_polls_answered,
                opt(self.demand_poll_p99_ms)
            )?;
        }
        if let Some(echo) = &self.echo {
            writeln!(
                out,
                "echo ({}): {} sent, {} back, rtt min/p50/p99/max = {}/{}/{}/{} ms{}",
                if echo.via == "forwarding" {
                    "through the peer's forwarding plane"
                } else {
                    "to the peer's echo port"
                },
                echo.sent,
                echo.received,
                opt(echo.rtt_min_ms),
                opt(echo.rtt_p50_ms),
                opt(echo.rtt_p99_ms),
                opt(echo.rtt_max_ms),
                match echo.failures {
                    0 => String::new(),
                    n => format!("; failed {n} time{}", if n == 1 { "" } else { "s" }),
                }
            )?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize)]
/// The responder's summary.
pub struct ResponderSummary {
    /// The addresses answered on.
    pub endpoint: String,
    /// Sessions opened.
    pub sessions: u64,
    /// Sessions whose peer was Up at the end.
    pub sessions_up: u64,
    /// Transitions to Up.
    pub ups: u64,
    /// Transitions from Up (the closing AdminDown included).
    pub downs: u64,
    /// Packets received.
    pub received: u64,
    /// Packets sent.
    pub sent: u64,
    /// Drops by reason.
    pub dropped: BTreeMap<&'static str, u64>,
    /// The whole run.
    pub elapsed_s: f64,
}

impl Record for ResponderSummary {
    fn kind(&self) -> &'static str {
        "summary"
    }
    fn write_human(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(out, "\n--- BFD responder {} ---", self.endpoint)?;
        writeln!(
            out,
            "{} sessions ({} up at the end), {} ups, {} downs; {} received, {} sent, {} dropped in {:.1} s",
            self.sessions,
            self.sessions_up,
            self.ups,
            self.downs,
            self.received,
            self.sent,
            self.dropped.values().sum::<u64>(),
            self.elapsed_s
        )
    }
}

#[derive(Debug, Clone, Serialize)]
/// A reflector's summary (S-BFD or echo).
pub struct ReflectorSummary {
    /// The address answered on.
    pub endpoint: String,
    /// Packets received.
    pub received: u64,
    /// Packets answered.
    pub answered: u64,
    /// Drops by reason.
    pub dropped: BTreeMap<&'static str, u64>,
    /// The whole run.
    pub elapsed_s: f64,
}

impl Record for ReflectorSummary {
    fn kind(&self) -> &'static str {
        "summary"
    }
    fn write_human(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(out, "\n--- reflector {} ---", self.endpoint)?;
        writeln!(
            out,
            "{} received, {} answered, {} dropped in {:.1} s",
            self.received,
            self.answered,
            self.dropped.values().sum::<u64>(),
            self.elapsed_s
        )
    }
}

#[derive(Debug, Clone, Serialize)]
/// The S-BFD initiator's summary.
pub struct InitiatorSummary {
    /// The reflector.
    pub peer: String,
    /// Its discriminator.
    pub remote_discriminator: u32,
    /// The state at the end.
    pub state: String,
    /// Whether answers ever came.
    pub came_up: bool,
    /// Falls from Up.
    pub flaps: u64,
    /// Probes sent.
    pub sent: u64,
    /// Answers.
    pub answered: u64,
    /// Probes unanswered.
    pub lost: u64,
    /// Shortest round trip.
    pub rtt_min_ms: Option<f64>,
    /// Median round trip.
    pub rtt_p50_ms: Option<f64>,
    /// 99th percentile round trip.
    pub rtt_p99_ms: Option<f64>,
    /// Longest round trip.
    pub rtt_max_ms: Option<f64>,
    /// Drops by reason.
    pub dropped: BTreeMap<&'static str, u64>,
    /// The whole run.
    pub elapsed_s: f64,
    /// Came Up and never fell.
    pub passed: bool,
}

impl Record for InitiatorSummary {
    fn kind(&self) -> &'static str {
        "summary"
    }
    fn write_human(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(
            out,
            "\n--- S-BFD {} discriminator {} ---",
            self.peer, self.remote_discriminator
        )?;
        writeln!(
            out,
            "{} sent, {} answered, {} lost; {}; rtt min/p50/p99/max = {}/{}/{}/{} ms",
            self.sent,
            self.answered,
            self.lost,
            if self.came_up {
                "came up"
            } else {
                "never came up"
            },
            opt(self.rtt_min_ms),
            opt(self.rtt_p50_ms),
            opt(self.rtt_p99_ms),
            opt(self.rtt_max_ms)
        )
    }
}
