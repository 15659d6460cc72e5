//! What a perf run reports: interval events while it runs, one summary at the end.

use std::io::{self, Write};

use hdrhistogram::Histogram;
use loopscope_report::{Record, Table, format_bit_rate, format_si};
use serde::Serialize;

/// One stream over one interval.
#[derive(Debug, Clone, Serialize)]
pub struct IntervalStream {
    /// The stream's number, as iperf3 numbers its streams.
    pub id: i64,
    /// `send` or `receive`, seen from this side.
    pub direction: &'static str,
    /// Bytes this side moved on the stream in the interval.
    pub bytes: u64,
    /// `bytes` over the interval, bits per second.
    pub bits_per_second: f64,
    /// TCP segments retransmitted in the interval (TCP_INFO, sending streams).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retransmits: Option<u64>,
    /// TCP's smoothed round-trip time at the interval's end (TCP_INFO `tcpi_rtt`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtt_us: Option<u32>,
    /// TCP's congestion window at the interval's end, bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snd_cwnd_bytes: Option<u64>,
    /// UDP datagrams moved in the interval.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub packets: Option<u64>,
}

/// Every stream over one interval, and their sum.
#[derive(Debug, Clone, Serialize)]
pub struct Interval {
    /// Start of the interval, seconds since the test began.
    pub start_s: f64,
    /// End of the interval, seconds since the test began.
    pub end_s: f64,
    /// Bytes over every stream in the interval.
    pub bytes: u64,
    /// `bytes` over the interval, bits per second.
    pub bits_per_second: f64,
    /// Each stream's share.
    pub streams: Vec<IntervalStream>,
}

/// Something worth telling while a perf client runs.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum PerfEvent {
    /// The test is set up: every stream is connected.
    Connected {
        /// The endpoint as the user wrote it.
        link: String,
        /// The control connection's local address (`unix` for Unix sockets).
        local: String,
        /// The control connection's peer address.
        remote: String,
        /// Data streams of the test.
        streams: usize,
    },
    /// One interval report (`--interval`).
    Interval(Interval),
}

impl Record for PerfEvent {
    fn kind(&self) -> &'static str {
        "event"
    }

    fn write_human(&self, out: &mut dyn Write) -> io::Result<()> {
        match self {
            PerfEvent::Connected {
                link,
                local,
                remote,
                streams,
            } => writeln!(
                out,
                "perf {link}: {streams} stream{} from {local} to {remote}",
                if *streams == 1 { "" } else { "s" }
            ),
            PerfEvent::Interval(interval) => {
                let mut line = format!(
                    "[{:6.2}-{:6.2} s]  {:>10}  {:>14}",
                    interval.start_s,
                    interval.end_s,
                    format_bytes(interval.bytes),
                    format_bit_rate(interval.bits_per_second)
                );
                let retransmits: Option<u64> = interval
                    .streams
                    .iter()
                    .filter_map(|s| s.retransmits)
                    .reduce(|a, b| a + b);
                if let Some(retransmits) = retransmits {
                    line.push_str(&format!("  {retransmits} retransmits"));
                }
                writeln!(out, "{line}")
            }
        }
    }
}

/// UDP figures of one stream, from the side that received it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct UdpFigures {
    /// Datagrams that arrived.
    pub packets: u64,
    /// Datagrams missing from the sequence numbers (negative when duplicates outnumber
    /// losses, as iperf3 counts them).
    pub lost_packets: i64,
    /// `lost_packets` over the datagrams expected (arrived plus lost), percent.
    pub lost_percent: f64,
    /// Datagrams that arrived after a later one (`null` where the far end did not say).
    pub out_of_order: Option<u64>,
    /// Interarrival jitter as RFC 3550 section 6.4.1 estimates it, milliseconds.
    pub jitter_ms: f64,
}

impl UdpFigures {
    /// The figures from the receiver's counts, with the loss percentage worked out.
    pub fn new(packets: u64, lost: i64, out_of_order: Option<u64>, jitter_s: f64) -> Self {
        let expected = packets as i64 + lost;
        UdpFigures {
            packets,
            lost_packets: lost,
            lost_percent: if expected > 0 {
                lost as f64 * 100.0 / expected as f64
            } else {
                0.0
            },
            out_of_order,
            jitter_ms: jitter_s * 1e3,
        }
    }
}

/// One stream over the whole test.
#[derive(Debug, Clone, Serialize)]
pub struct StreamSummary {
    /// The stream's number, as iperf3 numbers its streams.
    pub id: i64,
    /// `send` or `receive`, seen from this side.
    pub direction: &'static str,
    /// Bytes this side moved on the stream.
    pub bytes: u64,
    /// How long the stream ran, seconds.
    pub seconds: f64,
    /// `bytes` over `seconds`, bits per second.
    pub bits_per_second: f64,
    /// Bytes the far end counted on the stream (`null` when it reported nothing).
    pub peer_bytes: Option<u64>,
    /// TCP segments the sending side retransmitted.
    pub retransmits: Option<u64>,
    /// TCP's smoothed round-trip time at the end (TCP_INFO `tcpi_rtt`), sending streams.
    pub rtt_us: Option<u32>,
    /// Its variation (TCP_INFO `tcpi_rttvar`).
    pub rttvar_us: Option<u32>,
    /// TCP's congestion window at the end, bytes.
    pub snd_cwnd_bytes: Option<u64>,
    /// Loss, reordering and jitter as the receiving side saw them (UDP).
    pub udp: Option<UdpFigures>,
    /// `--zerocopy` on a sending stream: sends, completions, and how many the kernel copied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zerocopy: Option<super::stream::ZerocopyFigures>,
    /// What ended the stream, when it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Latency percentiles (request-response transactions, or TCP's smoothed RTT samples).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Percentiles {
    /// How many latencies were measured.
    pub samples: u64,
    /// The lowest, microseconds.
    pub min_us: f64,
    /// The median, microseconds.
    pub p50_us: f64,
    /// The 90th percentile, microseconds.
    pub p90_us: f64,
    /// The 99th percentile, microseconds.
    pub p99_us: f64,
    /// The 99.9th percentile, microseconds.
    pub p999_us: f64,
    /// The highest, microseconds.
    pub max_us: f64,
    /// The mean, microseconds.
    pub mean_us: f64,
}

impl Percentiles {
    /// From a histogram of nanoseconds; `None` when it is empty.
    pub fn from_nanos(histogram: &Histogram<u64>) -> Option<Percentiles> {
        if histogram.is_empty() {
            return None;
        }
        let us = |ns: u64| ns as f64 / 1e3;
        Some(Percentiles {
            samples: histogram.len(),
            min_us: us(histogram.min()),
            p50_us: us(histogram.value_at_quantile(0.50)),
            p90_us: us(histogram.value_at_quantile(0.90)),
            p99_us: us(histogram.value_at_quantile(0.99)),
            p999_us: us(histogram.value_at_quantile(0.999)),
            max_us: us(histogram.max()),
            mean_us: histogram.mean() / 1e3,
        })
    }
}

/// A histogram of nanoseconds from 1 ns to an hour, 3 significant digits.
pub(super) fn nanos_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000_000, 3)
        .expect("constant histogram bounds are valid")
}

/// The far end's view, from the results it sent back.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PeerFigures {
    /// CPU the far end spent in user mode, percent of one core.
    pub cpu_user_percent: f64,
    /// CPU the far end spent in the kernel, percent of one core.
    pub cpu_system_percent: f64,
    /// Bytes the far end counted over every stream.
    pub bytes: u64,
    /// The TCP congestion control the far end used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub congestion: Option<String>,
}

/// The final record of a perf run.
#[derive(Debug, Clone, Serialize)]
pub struct PerfSummary {
    /// The endpoint as the user wrote it.
    pub link: String,
    /// `throughput`, `rr`, `crr` or `echo` (throughput of a loop: what comes back).
    pub mode: &'static str,
    /// `tcp`, `udp`, `unix`, or the link's scheme in echo mode.
    pub protocol: String,
    /// `send`, `receive`, `bidir` or `echo`.
    pub direction: &'static str,
    /// How long the test ran, seconds.
    pub seconds: f64,
    /// Bytes this side moved over every stream (sent plus received).
    pub bytes: u64,
    /// `bytes` over `seconds`, bits per second.
    pub bits_per_second: f64,
    /// Bytes this side sent.
    pub sent_bytes: u64,
    /// Bytes this side received.
    pub received_bytes: u64,
    /// `sent_bytes` over `seconds`, bits per second.
    pub send_bits_per_second: f64,
    /// `received_bytes` over `seconds`, bits per second.
    pub receive_bits_per_second: f64,
    /// TCP retransmits of the sending side, whichever end sent.
    pub retransmits: Option<u64>,
    /// Round-trip time: transaction latency in rr/crr, TCP_INFO's smoothed RTT sampled every
    /// 100 ms in throughput mode.
    pub rtt_p50_us: Option<f64>,
    /// Its 99th percentile, microseconds (`rtt_p50_us` is the median).
    pub rtt_p99_us: Option<f64>,
    /// Request-response transactions completed (rr, crr).
    pub transactions: Option<u64>,
    /// `transactions` over `seconds`.
    pub transactions_per_second: Option<f64>,
    /// The transactions' latency percentiles (rr, crr).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency: Option<Percentiles>,
    /// CPU this side used over the test, in percent of one core (threads summed).
    pub cpu_user_percent: f64,
    /// CPU this side spent in the kernel, percent of one core (`cpu_user_percent`: in
    /// user mode).
    pub cpu_system_percent: f64,
    /// The far end's figures, from the results it sent back (`null` without them).
    pub peer: Option<PeerFigures>,
    /// Loss, reordering and jitter summed over UDP streams (jitter: the largest).
    pub udp: Option<UdpFigures>,
    /// Each stream over the whole test.
    pub streams: Vec<StreamSummary>,
    /// The interval reports (`--interval`).
    pub intervals: Vec<Interval>,
    /// False when the run ended before its results were exchanged.
    pub complete: bool,
    /// Why the run ended early, if it did.
    pub ended_early: Option<String>,
    /// What the server's limits did to this test (cut its duration, paced its rate).
    pub server_limit: Option<String>,
    /// `--under-load`: the throughput test that ran beside the request-response one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load: Option<LoadFigures>,
    /// The test ran to its end and exchanged results (exit 0).
    pub passed: bool,
}

impl Record for PerfSummary {
    fn kind(&self) -> &'static str {
        "summary"
    }

    fn write_human(&self, out: &mut dyn Write) -> io::Result<()> {
        let what = match self.mode {
            "echo" => "throughput of what came back",
            "rr" => "request-response",
            "crr" => "connect-request-response",
            _ => "throughput",
        };
        writeln!(
            out,
            "\nperf {}: {what} over {}, {} stream{}, {:.2} s",
            self.link,
            self.protocol,
            self.streams.len(),
            if self.streams.len() == 1 { "" } else { "s" },
            self.seconds
        )?;
        if self.mode == "echo" {
            let mut table = Table::new(["stream", "came back", "bit rate"]);
            for stream in &self.streams {
                table.row([
                    stream.id.to_string(),
                    format_bytes(stream.bytes),
                    format_bit_rate(stream.bits_per_second),
                ]);
            }
            table.write(out)?;
            writeln!(
                out,
                "sent {}, {} came back ({})",
                format_bytes(self.sent_bytes),
                format_bytes(self.received_bytes),
                format_bit_rate(self.bits_per_second)
            )?;
        } else {
            self.write_stream_table(out)?;
        }
        for stream in self.streams.iter().filter(|s| s.error.is_some()) {
            writeln!(
                out,
                "stream {}: {}",
                stream.id,
                stream.error.as_deref().unwrap_or_default()
            )?;
        }
        if let Some(transactions) = self.transactions {
            writeln!(
                out,
                "{transactions} transactions, {:.0} per second",
                self.transactions_per_second.unwrap_or(0.0)
            )?;
        }
        if let Some(latency) = &self.latency {
            writeln!(
                out,
                "round trip: min {:.1} us, median {:.1} us, p90 {:.1} us, p99 {:.1} us, max {:.1} us",
                latency.min_us, latency.p50_us, latency.p90_us, latency.p99_us, latency.max_us
            )?;
        } else if let (Some(p50), Some(p99)) = (self.rtt_p50_us, self.rtt_p99_us) {
            writeln!(
                out,
                "TCP round-trip time (kernel's smoothed estimate): median {p50:.0} us, p99 {p99:.0} us"
            )?;
        }
        if let Some(retransmits) = self.retransmits {
            writeln!(out, "retransmitted segments: {retransmits}")?;
        }
        let zerocopy: Vec<_> = self.streams.iter().filter_map(|s| s.zerocopy).collect();
        if !zerocopy.is_empty() {
            let sends: u64 = zerocopy.iter().map(|z| z.sends).sum();
            let completed: u64 = zerocopy.iter().map(|z| z.completed).sum();
            let copied: u64 = zerocopy.iter().map(|z| z.copied).sum();
            writeln!(
                out,
                "MSG_ZEROCOPY: {sends} sends, {completed} reported complete, {copied} of them copied by the kernel after all"
            )?;
        }
        write!(
            out,
            "CPU: this side {:.1}% user, {:.1}% system",
            self.cpu_user_percent, self.cpu_system_percent
        )?;
        match &self.peer {
            Some(peer) => writeln!(
                out,
                "; far end {:.1}% user, {:.1}% system",
                peer.cpu_user_percent, peer.cpu_system_percent
            )?,
            None => writeln!(out)?,
        }
        if let Some(load) = &self.load {
            writeln!(
                out,
                "under load: {} stream{} moving {} ({}) at the same time",
                load.streams,
                if load.streams == 1 { "" } else { "s" },
                format_bit_rate(load.bits_per_second),
                format_bytes(load.bytes)
            )?;
        }
        if let Some(limit) = &self.server_limit {
            writeln!(out, "server limit: {limit}")?;
        }
        if let Some(reason) = &self.ended_early {
            writeln!(out, "ended early: {reason} (partial results)")?;
        }
        Ok(())
    }
}

impl PerfSummary {
    /// The per-stream table of a test against a perf server.
    fn write_stream_table(&self, out: &mut dyn Write) -> io::Result<()> {
        let udp = self.streams.iter().any(|s| s.udp.is_some());
        let mut header = vec![
            "stream",
            "direction",
            "bytes",
            "bit rate",
            "far end counted",
        ];
        if udp {
            header.extend(["lost", "out of order", "jitter"]);
        } else {
            header.extend(["retransmits", "rtt", "cwnd"]);
        }
        let mut table = Table::new(header);
        for stream in &self.streams {
            let mut row = vec![
                stream.id.to_string(),
                stream.direction.to_string(),
                format_bytes(stream.bytes),
                format_bit_rate(stream.bits_per_second),
                stream.peer_bytes.map_or("-".into(), format_bytes),
            ];
            if let Some(udp) = &stream.udp {
                row.extend([
                    format!(
                        "{}/{} ({:.3}%)",
                        udp.lost_packets,
                        udp.packets as i64 + udp.lost_packets,
                        udp.lost_percent
                    ),
                    udp.out_of_order.map_or("-".into(), |n| n.to_string()),
                    format!("{:.3} ms", udp.jitter_ms),
                ]);
            } else if udp {
                row.extend(["-".into(), "-".into(), "-".into()]);
            } else {
                row.extend([
                    stream.retransmits.map_or("-".into(), |n| n.to_string()),
                    stream.rtt_us.map_or("-".into(), |us| format!("{us} us")),
                    stream.snd_cwnd_bytes.map_or("-".into(), format_bytes),
                ]);
            }
            table.row(row);
        }
        if self.streams.len() > 1 {
            for (direction, bytes, rate) in [
                ("send", self.sent_bytes, self.send_bits_per_second),
                ("receive", self.received_bytes, self.receive_bits_per_second),
            ] {
                if self.streams.iter().any(|s| s.direction == direction) {
                    let peer: Option<u64> = self
                        .streams
                        .iter()
                        .filter(|s| s.direction == direction)
                        .map(|s| s.peer_bytes)
                        .sum();
                    table.row([
                        "sum".to_string(),
                        direction.to_string(),
                        format_bytes(bytes),
                        format_bit_rate(rate),
                        peer.map_or("-".into(), format_bytes),
                    ]);
                }
            }
        }
        table.write(out)
    }
}

/// Bytes with a binary prefix, as transfer sizes are usually read (`1.50 GiB`).
pub(super) fn format_bytes(bytes: u64) -> String {
    const UNITS: [(f64, &str); 4] = [
        (1_099_511_627_776.0, "TiB"),
        (1_073_741_824.0, "GiB"),
        (1_048_576.0, "MiB"),
        (1024.0, "KiB"),
    ];
    for (scale, unit) in UNITS {
        if bytes as f64 >= scale {
            return format!("{:.2} {unit}", bytes as f64 / scale);
        }
    }
    format!("{bytes} B")
}

/// A rate with SI prefix for messages (`12.3 Gbit/s`).
pub(super) fn format_rate(bits_per_second: f64) -> String {
    format_si(bits_per_second, "bit/s")
}

/// The load beside a `--under-load` latency test.
#[derive(Debug, Clone, Serialize)]
pub struct LoadFigures {
    /// Throughput streams of the load.
    pub streams: usize,
    /// Bytes the load moved.
    pub bytes: u64,
    /// Its throughput, bits per second.
    pub bits_per_second: f64,
    /// TCP retransmits of the load's streams.
    pub retransmits: Option<u64>,
}

/// How a figure spread over repeated runs.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Spread {
    /// The lowest value.
    pub min: f64,
    /// The median.
    pub median: f64,
    /// The highest value.
    pub max: f64,
    /// The mean.
    pub mean: f64,
    /// Coefficient of variation: standard deviation over the mean (0 for one run).
    pub cv: f64,
}

impl Spread {
    /// `None` for no values.
    pub fn of(values: &[f64]) -> Option<Spread> {
        if values.is_empty() {
            return None;
        }
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
        };
        let mean = sorted.iter().sum::<f64>() / n as f64;
        // The sample standard deviation (n - 1), as a spread of repeated measurements is read.
        let variance = if n > 1 {
            sorted.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64
        } else {
            0.0
        };
        Some(Spread {
            min: sorted[0],
            median,
            max: sorted[n - 1],
            mean,
            cv: if mean != 0.0 {
                variance.sqrt() / mean
            } else {
                0.0
            },
        })
    }
}

/// One message length of a `--repeat`/`--sweep` series.
#[derive(Debug, Clone, Serialize)]
pub struct SeriesPoint {
    /// The message length (bytes per write or datagram).
    pub length: u64,
    /// Runs made at this length.
    pub runs: usize,
    /// Throughput over the runs, bits per second.
    pub bits_per_second: Spread,
    /// Transactions per second over the runs (rr, crr).
    pub transactions_per_second: Option<Spread>,
    /// The median round trip over the runs, microseconds.
    pub rtt_p50_us: Option<Spread>,
    /// The 99th-percentile round trip over the runs, microseconds.
    pub rtt_p99_us: Option<Spread>,
}

impl SeriesPoint {
    /// Sums up the runs of one length.
    pub fn new(length: u64, runs: &[PerfSummary]) -> Option<SeriesPoint> {
        let figure = |pick: &dyn Fn(&PerfSummary) -> Option<f64>| -> Option<Spread> {
            let values: Vec<f64> = runs.iter().filter_map(pick).collect();
            if values.len() == runs.len() {
                Spread::of(&values)
            } else {
                None
            }
        };
        Some(SeriesPoint {
            length,
            runs: runs.len(),
            bits_per_second: figure(&|s| Some(s.bits_per_second))?,
            transactions_per_second: figure(&|s| s.transactions_per_second),
            rtt_p50_us: figure(&|s| s.rtt_p50_us),
            rtt_p99_us: figure(&|s| s.rtt_p99_us),
        })
    }
}

/// The summary of `--repeat` and `--sweep`: each length's spread over its runs.
#[derive(Debug, Clone, Serialize)]
pub struct SeriesSummary {
    /// The endpoint as the user wrote it.
    pub link: String,
    /// `throughput`, `rr`, `crr` or `echo`, as in each run's summary.
    pub mode: &'static str,
    /// One point per message length.
    pub points: Vec<SeriesPoint>,
    /// Every run passed.
    pub passed: bool,
}

impl Record for SeriesSummary {
    fn kind(&self) -> &'static str {
        "summary"
    }

    fn write_human(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(
            out,
            "\nperf {}: {} over repeated runs",
            self.link, self.mode
        )?;
        let latency = self.points.iter().any(|p| p.rtt_p50_us.is_some());
        let mut header = vec!["length", "runs", "bit rate min", "median", "max", "cv"];
        if latency {
            header.extend(["rtt p50 median", "rtt p99 median"]);
        }
        let mut table = Table::new(header);
        for point in &self.points {
            let rate = point.bits_per_second;
            let mut row = vec![
                format_bytes(point.length),
                point.runs.to_string(),
                format_bit_rate(rate.min),
                format_bit_rate(rate.median),
                format_bit_rate(rate.max),
                format!("{:.1}%", rate.cv * 100.0),
            ];
            if latency {
                row.push(
                    point
                        .rtt_p50_us
                        .map_or("-".into(), |s| format!("{:.1} us", s.median)),
                );
                row.push(
                    point
                        .rtt_p99_us
                        .map_or("-".into(), |s| format!("{:.1} us", s.median)),
                );
            }
            table.row(row);
        }
        table.write(out)
    }
}

/// One run of a series, as an event (the full summary in JSON, a line for people).
#[derive(Debug, Clone, Serialize)]
pub struct SeriesRun {
    /// Always `run`.
    pub event: &'static str,
    /// Its number within its length, from 1.
    pub run: usize,
    /// The message length it ran with.
    pub length: u64,
    /// The run's summary (its fields at the top level of the JSON object).
    #[serde(flatten)]
    pub summary: PerfSummary,
}

impl Record for SeriesRun {
    fn kind(&self) -> &'static str {
        "event"
    }

    fn write_human(&self, out: &mut dyn Write) -> io::Result<()> {
        let mut line = format!(
            "run {} ({}-byte messages): {} in {:.2} s, {}",
            self.run,
            self.length,
            format_bytes(self.summary.bytes),
            self.summary.seconds,
            format_bit_rate(self.summary.bits_per_second)
        );
        if let Some(rate) = self.summary.transactions_per_second {
            line.push_str(&format!(", {rate:.0} transactions/s"));
        }
        if let Some(reason) = &self.summary.ended_early {
            line.push_str(&format!(" (ended early: {reason})"));
        }
        writeln!(out, "{line}")
    }
}

#[cfg(test)]
mod tests {
    use super::Spread;

    #[test]
    fn spread_by_hand() {
        let spread = Spread::of(&[4.0, 1.0, 3.0, 2.0]).unwrap();
        assert_eq!(
            (spread.min, spread.median, spread.max, spread.mean),
            (1.0, 2.5, 4.0, 2.5)
        );
        // sample sd of 1,2,3,4 = sqrt(5/3)
        assert!((spread.cv - (5.0f64 / 3.0).sqrt() / 2.5).abs() < 1e-12);
        let one = Spread::of(&[7.0]).unwrap();
        assert_eq!((one.median, one.cv), (7.0, 0.0));
        assert!(Spread::of(&[]).is_none());
    }
}
