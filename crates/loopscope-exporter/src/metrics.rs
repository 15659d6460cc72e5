//! What the exporter keeps per target between scrapes, and how it becomes metrics.
//!
//! Names follow Prometheus' conventions: base units in the name (`_seconds`, `_ratio`),
//! counters end in `_total`, and every label has a bounded set of values (the configured
//! target and module names, a doctor check's name and status, an exposed socket's protocol,
//! address, port and command). A lost packet is a count, never a round trip of 0.

use loopscope_host::doctor::Status;
use loopscope_report::prometheus::{Exposition, Histogram, MetricKind};

use crate::bert::BertCounters;
use crate::martians::MartianCounters;
use crate::probe::{ExposedSocket, Findings, PacketCounters, ProbeResult};

/// Everything kept for one scheduled target.
#[derive(Debug, Clone)]
pub(crate) struct TargetMetrics {
    /// The module's name (a label).
    pub module: String,
    /// Probes run.
    pub probes: u64,
    /// Probes that failed.
    pub failures: u64,
    /// The last probe's result (None before the first ends).
    pub last_success: Option<bool>,
    /// The last probe's duration.
    pub last_duration_s: f64,
    /// Packet counters since the exporter started (or the target appeared).
    pub packets: PacketCounters,
    /// The last probe's loss ratio.
    pub last_loss_ratio: Option<f64>,
    /// The last probe's IP version (ICMP).
    pub ip_version: Option<u8>,
    /// The last STAMP probe's mean one-way delays (forward, backward), in seconds.
    pub one_way_s: Option<(f64, f64)>,
    /// Round trips of every probe.
    pub rtt: Histogram,
    /// The doctor's checks as of the last probe.
    pub doctor: Vec<(&'static str, Status)>,
    /// Listeners as of the last probe: loopback-only count and the exposed sockets.
    pub listeners: Option<(usize, Vec<ExposedSocket>)>,
    /// A continuous BERT's counters.
    pub bert: Option<BertCounters>,
    /// A continuous martian capture's counters.
    pub martians: Option<MartianCounters>,
}

impl TargetMetrics {
    /// Fresh metrics for a target of `module` with these RTT buckets.
    pub(crate) fn new(module: &str, rtt_buckets: &[f64]) -> Self {
        TargetMetrics {
            module: module.to_string(),
            probes: 0,
            failures: 0,
            last_success: None,
            last_duration_s: 0.0,
            packets: PacketCounters::default(),
            last_loss_ratio: None,
            ip_version: None,
            one_way_s: None,
            rtt: Histogram::new(rtt_buckets),
            doctor: Vec::new(),
            listeners: None,
            bert: None,
            martians: None,
        }
    }

    /// Adds one probe's result.
    pub(crate) fn record(&mut self, result: &ProbeResult) {
        self.probes += 1;
        if !result.success {
            self.failures += 1;
        }
        self.last_success = Some(result.success);
        self.last_duration_s = result.duration.as_secs_f64();
        match &result.findings {
            Findings::Ping(counts) => {
                self.packets += counts.packets;
                self.last_loss_ratio = counts.packets.loss_ratio();
                self.ip_version = counts.ip_version;
                self.one_way_s = counts.one_way_s;
                for rtt in &counts.rtts_s {
                    self.rtt.observe(*rtt);
                }
            }
            Findings::Doctor(checks) => self.doctor.clone_from(checks),
            Findings::Listeners {
                loopback_only,
                exposed,
            } => self.listeners = Some((*loopback_only, exposed.clone())),
            Findings::Nothing => {}
        }
    }
}

/// Declares the per-target families (their help text), in the order they are shown.
pub(crate) fn declare_target_families(out: &mut Exposition) {
    use MetricKind::{Counter, Gauge, Histogram as Hist};
    let families: [(&str, MetricKind, &str); 31] = [
        (
            "loopscope_probe_success",
            Gauge,
            "1 when the target's last probe succeeded (ping: at least one reply; doctor: no check failed).",
        ),
        (
            "loopscope_probe_duration_seconds",
            Gauge,
            "How long the target's last probe took.",
        ),
        ("loopscope_probes_total", Counter, "Probes run."),
        (
            "loopscope_probe_failures_total",
            Counter,
            "Probes that failed.",
        ),
        (
            "loopscope_probe_packets_sent_total",
            Counter,
            "Echo requests sent.",
        ),
        (
            "loopscope_probe_packets_received_total",
            Counter,
            "Replies received within the timeout.",
        ),
        (
            "loopscope_probe_packets_lost_total",
            Counter,
            "Requests without a reply within the timeout (a loss is counted here, never as an RTT of 0).",
        ),
        (
            "loopscope_probe_packets_duplicate_total",
            Counter,
            "Replies received more than once.",
        ),
        (
            "loopscope_probe_packets_late_total",
            Counter,
            "Replies that came after their timeout (also counted as lost).",
        ),
        (
            "loopscope_probe_packets_corrupt_total",
            Counter,
            "Replies that came back altered.",
        ),
        (
            "loopscope_probe_loss_ratio",
            Gauge,
            "Share of the last probe's requests that were lost (0 to 1).",
        ),
        (
            "loopscope_probe_ip_protocol",
            Gauge,
            "IP version the last ICMP probe used (4 or 6).",
        ),
        (
            "loopscope_stamp_one_way_delay_seconds",
            Gauge,
            "Mean one-way delay of the last STAMP probe, by direction (the hosts' clocks must agree; on loopback they do).",
        ),
        (
            "loopscope_probe_rtt_seconds",
            Hist,
            "Round-trip times of the replies.",
        ),
        (
            "loopscope_doctor_check",
            Gauge,
            "1 for each doctor check's current status (pass, warn, fail, skip), 0 for the others.",
        ),
        (
            "loopscope_listeners_loopback_only",
            Gauge,
            "Listening sockets reachable only over loopback.",
        ),
        (
            "loopscope_listeners_exposed",
            Gauge,
            "Listening sockets reachable from outside this host.",
        ),
        (
            "loopscope_listener_exposed",
            Gauge,
            "1 for each listening socket reachable from outside, with its owner.",
        ),
        (
            "loopscope_bert_bits_total",
            Counter,
            "Bits a continuous BERT checked (whole seconds).",
        ),
        (
            "loopscope_bert_bit_errors_total",
            Counter,
            "Bit errors a continuous BERT found.",
        ),
        (
            "loopscope_bert_seconds_total",
            Counter,
            "Whole seconds a continuous BERT measured (G.821).",
        ),
        (
            "loopscope_bert_errored_seconds_total",
            Counter,
            "Seconds with at least one bit error (G.821 ES).",
        ),
        (
            "loopscope_bert_severely_errored_seconds_total",
            Counter,
            "Seconds with a bit error ratio of 1e-3 or worse (G.821 SES).",
        ),
        (
            "loopscope_bert_sync",
            Gauge,
            "1 while the BERT checker is synchronised to the pattern.",
        ),
        (
            "loopscope_bert_sync_losses_total",
            Counter,
            "Times the BERT checker lost sync.",
        ),
        (
            "loopscope_bert_slips_total",
            Counter,
            "Bit slips (inserted or deleted bits) the BERT found.",
        ),
        (
            "loopscope_bert_runs_total",
            Counter,
            "BERT runs started (restarts after a link failure included).",
        ),
        (
            "loopscope_martian_packets_total",
            Counter,
            "Martian packets a continuous capture saw, by reason (a packet with two reasons counts under both).",
        ),
        (
            "loopscope_capture_packets_total",
            Counter,
            "Packets a continuous martian capture looked at, martian or not.",
        ),
        (
            "loopscope_capture_runs_total",
            Counter,
            "Martian captures started (restarts after a failure included).",
        ),
        (
            "loopscope_target_info",
            Gauge,
            "1 per configured target, with its module.",
        ),
    ];
    for (name, kind, help) in families {
        out.family(name, kind, help);
    }
}

const STATUSES: [(Status, &str); 4] = [
    (Status::Pass, "pass"),
    (Status::Warn, "warn"),
    (Status::Fail, "fail"),
    (Status::Skip, "skip"),
];

/// Writes one target's samples.
pub(crate) fn render_target(out: &mut Exposition, target: &str, metrics: &TargetMetrics) {
    let labels = [("target", target), ("module", metrics.module.as_str())];
    out.sample("loopscope_target_info", &labels, 1.0);
    if let Some(success) = metrics.last_success {
        out.sample(
            "loopscope_probe_success",
            &labels,
            f64::from(u8::from(success)),
        );
        out.sample(
            "loopscope_probe_duration_seconds",
            &labels,
            metrics.last_duration_s,
        );
    }
    out.sample("loopscope_probes_total", &labels, metrics.probes as f64);
    out.sample(
        "loopscope_probe_failures_total",
        &labels,
        metrics.failures as f64,
    );
    let packets = &metrics.packets;
    let is_ping = packets.sent > 0 || metrics.rtt.count() > 0;
    if is_ping {
        for (name, value) in [
            ("loopscope_probe_packets_sent_total", packets.sent),
            ("loopscope_probe_packets_received_total", packets.received),
            ("loopscope_probe_packets_lost_total", packets.lost),
            (
                "loopscope_probe_packets_duplicate_total",
                packets.duplicates,
            ),
            ("loopscope_probe_packets_late_total", packets.late),
            ("loopscope_probe_packets_corrupt_total", packets.corrupt),
        ] {
            out.sample(name, &labels, value as f64);
        }
        if let Some(ratio) = metrics.last_loss_ratio {
            out.sample("loopscope_probe_loss_ratio", &labels, ratio);
        }
        if let Some(version) = metrics.ip_version {
            out.sample("loopscope_probe_ip_protocol", &labels, f64::from(version));
        }
        if let Some((forward, backward)) = metrics.one_way_s {
            for (direction, value) in [("forward", forward), ("backward", backward)] {
                out.sample(
                    "loopscope_stamp_one_way_delay_seconds",
                    &[
                        ("target", target),
                        ("module", metrics.module.as_str()),
                        ("direction", direction),
                    ],
                    value,
                );
            }
        }
        out.histogram("loopscope_probe_rtt_seconds", &labels, &metrics.rtt);
    }
    for (check, status) in &metrics.doctor {
        for (candidate, name) in STATUSES {
            out.sample(
                "loopscope_doctor_check",
                &[("target", target), ("check", check), ("status", name)],
                f64::from(u8::from(*status == candidate)),
            );
        }
    }
    if let Some(bert) = &metrics.bert {
        for (name, value) in [
            ("loopscope_bert_bits_total", bert.bits),
            ("loopscope_bert_bit_errors_total", bert.bit_errors),
            ("loopscope_bert_seconds_total", bert.seconds),
            ("loopscope_bert_errored_seconds_total", bert.errored_seconds),
            (
                "loopscope_bert_severely_errored_seconds_total",
                bert.severely_errored_seconds,
            ),
            ("loopscope_bert_sync_losses_total", bert.sync_losses),
            ("loopscope_bert_slips_total", bert.slips),
            ("loopscope_bert_runs_total", bert.runs),
        ] {
            out.sample(name, &labels, value as f64);
        }
        out.sample(
            "loopscope_bert_sync",
            &labels,
            f64::from(u8::from(bert.in_sync)),
        );
    }
    if let Some(martians) = &metrics.martians {
        out.sample(
            "loopscope_capture_packets_total",
            &labels,
            martians.packets as f64,
        );
        out.sample(
            "loopscope_capture_runs_total",
            &labels,
            martians.runs as f64,
        );
        for &(reason, count) in &martians.by_reason {
            out.sample(
                "loopscope_martian_packets_total",
                &[
                    ("target", target),
                    ("module", metrics.module.as_str()),
                    ("reason", reason),
                ],
                count as f64,
            );
        }
    }
    if let Some((loopback_only, exposed)) = &metrics.listeners {
        out.sample(
            "loopscope_listeners_loopback_only",
            &labels,
            *loopback_only as f64,
        );
        out.sample("loopscope_listeners_exposed", &labels, exposed.len() as f64);
        for socket in exposed {
            let port = socket.port.to_string();
            out.sample(
                "loopscope_listener_exposed",
                &[
                    ("target", target),
                    ("protocol", socket.protocol),
                    ("address", &socket.address),
                    ("port", &port),
                    ("process", &socket.process),
                ],
                1.0,
            );
        }
    }
}

/// The `/probe` answer for one probe, in blackbox_exporter's names (`probe_success`,
/// `probe_duration_seconds`, `probe_ip_protocol`, `probe_icmp_duration_seconds`) plus the
/// burst's own figures.
pub(crate) fn render_probe(result: &ProbeResult, rtt_buckets: &[f64]) -> String {
    let mut out = Exposition::new();
    out.family(
        "probe_success",
        MetricKind::Gauge,
        "Displays whether or not the probe was a success",
    );
    out.sample("probe_success", &[], f64::from(u8::from(result.success)));
    out.family(
        "probe_duration_seconds",
        MetricKind::Gauge,
        "Returns how long the probe took to complete in seconds",
    );
    out.sample("probe_duration_seconds", &[], result.duration.as_secs_f64());
    let mut metrics = TargetMetrics::new("", rtt_buckets);
    metrics.record(result);
    if let Findings::Ping(counts) = &result.findings {
        if let Some(version) = counts.ip_version {
            out.family(
                "probe_ip_protocol",
                MetricKind::Gauge,
                "Specifies whether probe ip protocol is IP4 or IP6",
            );
            out.sample("probe_ip_protocol", &[], f64::from(version));
        }
        if !counts.rtts_s.is_empty() {
            // blackbox's one packet per probe: here the mean of the burst's round trips. With
            // no reply there is no sample at all (blackbox shows 0 for a lost packet).
            let mean = counts.rtts_s.iter().sum::<f64>() / counts.rtts_s.len() as f64;
            out.family(
                "probe_icmp_duration_seconds",
                MetricKind::Gauge,
                "Duration of icmp request by phase",
            );
            out.sample("probe_icmp_duration_seconds", &[("phase", "rtt")], mean);
            let min = counts.rtts_s.iter().copied().fold(f64::INFINITY, f64::min);
            let max = counts.rtts_s.iter().copied().fold(0.0, f64::max);
            out.family(
                "probe_rtt_seconds",
                MetricKind::Gauge,
                "Round trips of this probe's burst: min, mean and max.",
            );
            for (stat, value) in [("min", min), ("mean", mean), ("max", max)] {
                out.sample("probe_rtt_seconds", &[("stat", stat)], value);
            }
        }
        out.family(
            "probe_packets_sent",
            MetricKind::Gauge,
            "Echo requests this probe sent.",
        );
        out.sample("probe_packets_sent", &[], counts.packets.sent as f64);
        out.family(
            "probe_packets_received",
            MetricKind::Gauge,
            "Replies this probe received within the timeout.",
        );
        out.sample(
            "probe_packets_received",
            &[],
            counts.packets.received as f64,
        );
        if let Some(ratio) = counts.packets.loss_ratio() {
            out.family(
                "probe_packet_loss_ratio",
                MetricKind::Gauge,
                "Share of this probe's requests that were lost (0 to 1).",
            );
            out.sample("probe_packet_loss_ratio", &[], ratio);
        }
    } else {
        declare_target_families(&mut out);
        render_target(&mut out, "probe", &metrics);
    }
    out.render()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::probe::PingCounts;

    fn ping_result(sent: u64, rtts: &[f64]) -> ProbeResult {
        ProbeResult {
            success: !rtts.is_empty(),
            duration: Duration::from_millis(50),
            findings: Findings::Ping(PingCounts {
                packets: PacketCounters {
                    sent,
                    received: rtts.len() as u64,
                    lost: sent - rtts.len() as u64,
                    ..PacketCounters::default()
                },
                rtts_s: rtts.to_vec(),
                ip_version: Some(4),
                ..PingCounts::default()
            }),
            error: None,
        }
    }

    #[test]
    fn counters_add_up_over_probes() {
        let mut metrics = TargetMetrics::new("icmp", &[1e-5, 1e-4]);
        metrics.record(&ping_result(5, &[2e-5, 3e-5, 5e-6]));
        metrics.record(&ping_result(5, &[]));
        assert_eq!(
            (
                metrics.packets.sent,
                metrics.packets.received,
                metrics.packets.lost
            ),
            (10, 3, 7)
        );
        assert_eq!(metrics.probes, 2);
        assert_eq!(metrics.failures, 1);
        assert_eq!(metrics.last_loss_ratio, Some(1.0));
        // The lost packets are not round trips: three observations only.
        assert_eq!(metrics.rtt.count(), 3);
        let mut out = Exposition::new();
        declare_target_families(&mut out);
        render_target(&mut out, "lo", &metrics);
        let text = out.render();
        assert!(
            text.contains("loopscope_probe_packets_lost_total{target=\"lo\",module=\"icmp\"} 7\n")
        );
        assert!(text.contains(
            "loopscope_probe_rtt_seconds_bucket{target=\"lo\",module=\"icmp\",le=\"0.00001\"} 1\n"
        ));
        assert!(text.contains("loopscope_probe_success{target=\"lo\",module=\"icmp\"} 0\n"));
    }

    #[test]
    fn a_lost_probe_has_no_rtt() {
        let text = render_probe(&ping_result(5, &[]), &[1e-5]);
        assert!(text.contains("probe_success 0\n"));
        assert!(!text.contains("probe_icmp_duration_seconds"));
        assert!(text.contains("probe_packet_loss_ratio 1\n"));
    }
}
