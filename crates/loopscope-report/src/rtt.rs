//! Round-trip-time statistics and the ping report shared by every ping (links and ICMP echo):
//! iputils-style lines plus percentiles from an HDR histogram.

use std::io::{self, Write};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::Record;

/// Collects round trips. Times are kept in nanoseconds; reports are in microseconds.
pub struct RttRecorder {
    histogram: Histogram<u64>,
    transmitted: u64,
    received: u64,
    duplicates: u64,
    errors: u64,
    sum_ns: f64,
    sum_sq_ns: f64,
    /// The observed extremes, kept apart from the histogram: its values are bucket edges, and
    /// the summary's min and max must be round trips that happened.
    min_ns: u64,
    max_ns: u64,
}

impl Default for RttRecorder {
    fn default() -> Self {
        Self::new()
    }
}

impl RttRecorder {
    /// An empty recorder.
    pub fn new() -> Self {
        // 1 ns .. 1 hour at 3 significant figures: enough for loopback and for serial links.
        let histogram = Histogram::new_with_bounds(1, 3_600_000_000_000, 3)
            .expect("static histogram bounds are valid");
        RttRecorder {
            histogram,
            transmitted: 0,
            received: 0,
            duplicates: 0,
            errors: 0,
            sum_ns: 0.0,
            sum_sq_ns: 0.0,
            min_ns: u64::MAX,
            max_ns: 0,
        }
    }

    /// A request went out (the denominator of loss).
    pub fn sent(&mut self) {
        self.transmitted += 1;
    }

    /// A first, intact reply whose round trip took `rtt_ns`.
    pub fn reply(&mut self, rtt_ns: u64) {
        self.received += 1;
        self.min_ns = self.min_ns.min(rtt_ns);
        self.max_ns = self.max_ns.max(rtt_ns);
        // Saturate rather than fail on an absurd value: the count still matters.
        self.histogram.saturating_record(rtt_ns.max(1));
        let value = rtt_ns as f64;
        self.sum_ns += value;
        self.sum_sq_ns += value * value;
    }

    /// A reply to a request already answered: counted apart, as iputils does, and never a
    /// round trip (its time would measure the duplication, not the path).
    pub fn duplicate(&mut self) {
        self.duplicates += 1;
    }

    /// A reply that was wrong (corrupt payload, ICMP error).
    pub fn error(&mut self) {
        self.errors += 1;
    }

    /// Requests sent so far.
    pub fn transmitted(&self) -> u64 {
        self.transmitted
    }

    /// Intact first replies so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// The summary for `target` after `elapsed_s` seconds.
    pub fn summary(&self, target: &str, elapsed_s: f64) -> PingSummary {
        let us = |ns: f64| ns / 1000.0;
        let have = self.received > 0;
        let mean = if have {
            self.sum_ns / self.received as f64
        } else {
            0.0
        };
        // iputils' mdev: sqrt(mean of squares - square of mean).
        let mdev = if have {
            (self.sum_sq_ns / self.received as f64 - mean * mean)
                .max(0.0)
                .sqrt()
        } else {
            0.0
        };
        // A percentile is a bucket's highest equivalent value: keep it within what was seen.
        let quantile = |q: f64| {
            if have {
                us(self
                    .histogram
                    .value_at_quantile(q)
                    .clamp(self.min_ns, self.max_ns) as f64)
            } else {
                0.0
            }
        };
        let loss_percent = if self.transmitted == 0 {
            0.0
        } else {
            100.0 * (self.transmitted.saturating_sub(self.received)) as f64
                / self.transmitted as f64
        };
        PingSummary {
            target: target.to_string(),
            transmitted: self.transmitted,
            received: self.received,
            duplicates: self.duplicates,
            errors: self.errors,
            loss_percent,
            rtt_min_us: if have { us(self.min_ns as f64) } else { 0.0 },
            rtt_avg_us: us(mean),
            rtt_max_us: if have { us(self.max_ns as f64) } else { 0.0 },
            rtt_mdev_us: us(mdev),
            rtt_p50_us: quantile(0.50),
            rtt_p90_us: quantile(0.90),
            rtt_p99_us: quantile(0.99),
            rtt_p999_us: quantile(0.999),
            elapsed_s,
            passed: self.transmitted > 0 && self.received >= self.transmitted && self.errors == 0,
            extra: serde_json::Map::new(),
        }
    }
}

/// The final record of every ping.
#[derive(Debug, Clone, Serialize)]
/// The field names are a contract with users' scripts (iputils' words, with units).
pub struct PingSummary {
    /// What was pinged, as the user wrote it.
    pub target: String,
    /// Requests sent.
    pub transmitted: u64,
    /// Intact first replies.
    pub received: u64,
    /// Replies to requests already answered.
    pub duplicates: u64,
    /// Replies that came back wrong (corrupt payload, ICMP error).
    pub errors: u64,
    /// Requests without a reply, in percent of those sent.
    pub loss_percent: f64,
    /// The shortest round trip observed (not a histogram bucket edge).
    pub rtt_min_us: f64,
    /// The mean round trip.
    pub rtt_avg_us: f64,
    /// The longest round trip observed.
    pub rtt_max_us: f64,
    /// iputils' mean deviation: sqrt(mean of squares - square of mean).
    pub rtt_mdev_us: f64,
    /// Median round trip (HDR histogram, 3 significant figures, clamped to min..max).
    pub rtt_p50_us: f64,
    /// 90th percentile round trip.
    pub rtt_p90_us: f64,
    /// 99th percentile round trip.
    pub rtt_p99_us: f64,
    /// 99.9th percentile round trip.
    pub rtt_p999_us: f64,
    /// Wall time of the run.
    pub elapsed_s: f64,
    /// Every request answered, intact.
    pub passed: bool,
    /// Transport-specific fields (socket kind, link counters), flattened into the JSON.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Record for PingSummary {
    fn kind(&self) -> &'static str {
        "summary"
    }

    fn write_human(&self, out: &mut dyn Write) -> io::Result<()> {
        let ms = |us: f64| us / 1000.0;
        writeln!(out, "\n--- {} ping statistics ---", self.target)?;
        let mut line = format!(
            "{} packets transmitted, {} received, ",
            self.transmitted, self.received
        );
        if self.duplicates > 0 {
            line.push_str(&format!("+{} duplicates, ", self.duplicates));
        }
        if self.errors > 0 {
            line.push_str(&format!("+{} errors, ", self.errors));
        }
        line.push_str(&format!(
            "{}% packet loss, time {:.0}ms",
            format_loss(self.loss_percent),
            self.elapsed_s * 1000.0
        ));
        writeln!(out, "{line}")?;
        if self.received > 0 {
            writeln!(
                out,
                "rtt min/avg/max/mdev = {:.3}/{:.3}/{:.3}/{:.3} ms",
                ms(self.rtt_min_us),
                ms(self.rtt_avg_us),
                ms(self.rtt_max_us),
                ms(self.rtt_mdev_us)
            )?;
            writeln!(
                out,
                "rtt p50/p90/p99/p99.9 = {:.3}/{:.3}/{:.3}/{:.3} ms",
                ms(self.rtt_p50_us),
                ms(self.rtt_p90_us),
                ms(self.rtt_p99_us),
                ms(self.rtt_p999_us)
            )?;
        }
        Ok(())
    }
}

/// iputils prints loss as an integer unless it is fractional.
fn format_loss(percent: f64) -> String {
    if percent.fract() == 0.0 {
        format!("{percent:.0}")
    } else {
        format!("{percent:.4}").trim_end_matches('0').to_string()
    }
}

/// One reply, as an event while running.
#[derive(Debug, Clone, Serialize)]
pub struct PingReply {
    /// Who answered (an address, or the link's endpoint).
    pub from: String,
    /// The request's sequence number.
    pub seq: u64,
    /// Bytes of the reply as received.
    pub bytes: usize,
    /// Its round trip.
    pub rtt_us: f64,
    /// The IP TTL or hop limit of an ICMP reply, where the socket gives it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u8>,
    /// A second reply to the same request.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
    /// The reply came back altered (its payload or checksum was wrong): counted as an error,
    /// not as a round trip.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub corrupt: bool,
}

impl PingReply {
    /// The round trip as every report shows it: nanoseconds to microseconds, the same
    /// conversion the summary makes, so a reply and the summary's min or max agree exactly.
    pub fn rtt_us_from_ns(rtt_ns: u64) -> f64 {
        rtt_ns as f64 / 1000.0
    }
}

impl Record for PingReply {
    fn kind(&self) -> &'static str {
        "reply"
    }

    fn write_human(&self, out: &mut dyn Write) -> io::Result<()> {
        let ttl = self.ttl.map(|t| format!(" ttl={t}")).unwrap_or_default();
        let dup = match (self.duplicate, self.corrupt) {
            (true, _) => " (DUP!)",
            (false, true) => " (corrupt!)",
            (false, false) => "",
        };
        writeln!(
            out,
            "{} bytes from {}: seq={}{} time={:.3} ms{}",
            self.bytes,
            self.from,
            self.seq,
            ttl,
            self.rtt_us / 1000.0,
            dup
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 11 item 4: a reply line said `time=4.535 ms` while the summary said `max 4.538`
    /// (the histogram bucket's edge). The extremes are the round trips that happened.
    #[test]
    fn min_and_max_are_the_observed_round_trips_not_bucket_edges() {
        let observed = [4_535_123u64, 71_443, 1_234_567, 71_424_999];
        let mut rtt = RttRecorder::new();
        for &ns in &observed {
            rtt.sent();
            rtt.reply(ns);
        }
        let s = rtt.summary("x", 1.0);
        assert_eq!(s.rtt_min_us, PingReply::rtt_us_from_ns(71_443));
        assert_eq!(s.rtt_max_us, PingReply::rtt_us_from_ns(71_424_999));
        // Percentiles stay within the extremes even where a bucket edge lies outside.
        for p in [s.rtt_p50_us, s.rtt_p90_us, s.rtt_p99_us, s.rtt_p999_us] {
            assert!(p >= s.rtt_min_us && p <= s.rtt_max_us, "{p}");
        }
        let mut one = RttRecorder::new();
        one.sent();
        one.reply(4_535_123);
        let s = one.summary("x", 1.0);
        assert_eq!(s.rtt_p999_us, 4535.123);
        assert_eq!(s.rtt_p50_us, 4535.123);
    }

    #[test]
    fn statistics_match_hand_computed_values() {
        let mut rtt = RttRecorder::new();
        for ns in [100_000u64, 200_000, 300_000, 400_000] {
            rtt.sent();
            rtt.reply(ns);
        }
        rtt.sent(); // lost
        let s = rtt.summary("127.0.0.1", 5.0);
        assert_eq!((s.transmitted, s.received), (5, 4));
        assert_eq!(s.loss_percent, 20.0);
        assert!((s.rtt_avg_us - 250.0).abs() < 1e-9);
        // mdev = sqrt(mean(x^2) - mean^2) = sqrt(75000 - 62500) us = 111.803 us
        assert!((s.rtt_mdev_us - 111.803).abs() < 0.01, "{}", s.rtt_mdev_us);
        assert!((s.rtt_min_us - 100.0).abs() < 0.1 && (s.rtt_max_us - 400.0).abs() < 0.5);
        assert!((s.rtt_p50_us - 200.0).abs() < 0.5, "{}", s.rtt_p50_us);
        assert!(!s.passed);
        let mut text = Vec::new();
        s.write_human(&mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert!(
            text.contains("5 packets transmitted, 4 received, 20% packet loss"),
            "{text}"
        );
        assert!(
            text.contains("rtt min/avg/max/mdev = 0.100/0.250/0.400/0.112 ms"),
            "{text}"
        );
    }
}
