//! The Prometheus text exposition format (version 0.0.4): what `loopscope exporter` serves on
//! `/metrics` and `/probe`, rendered from the same typed summaries the CLI prints.
//!
//! Hand-written rather than taken from `prometheus`/`prometheus-client`: those crates own the
//! metric values (a registry of atomics that the program updates), while here every scrape
//! renders a snapshot of summaries that already exist, so only the text encoding is needed.
//! The encoding is small and fully specified (Prometheus "Exposition formats"): `# HELP` and
//! `# TYPE` once per family, every sample of a family together, label values escaped (`\\`,
//! `\"`, `\n`), histograms as cumulative `_bucket{le=...}` plus `_sum` and `_count`. The tests
//! here check the text; `promtool check metrics` checks the exporter's output in the binary's
//! tests.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The type of a metric family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Only goes up (reset on restart); the name ends in `_total`.
    Counter,
    /// Any value now.
    Gauge,
    /// Cumulative buckets, a sum and a count.
    Histogram,
}

impl MetricKind {
    fn name(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
            MetricKind::Histogram => "histogram",
        }
    }
}

/// Observations in fixed buckets, cumulative as Prometheus wants them. Bucket bounds are upper
/// bounds in the metric's base unit (seconds); `+Inf` is implicit.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    bounds: Vec<f64>,
    /// Observations per bucket (not cumulative); one more than `bounds`: the last is `+Inf`.
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    /// An empty histogram with these upper bounds (sorted, finite, deduplicated here).
    pub fn new(bounds: &[f64]) -> Self {
        let mut bounds: Vec<f64> = bounds.iter().copied().filter(|b| b.is_finite()).collect();
        bounds.sort_by(f64::total_cmp);
        bounds.dedup();
        let counts = vec![0; bounds.len() + 1];
        Histogram {
            bounds,
            counts,
            sum: 0.0,
            count: 0,
        }
    }

    /// `count` bounds from `start`, each `factor` times the one before (Prometheus'
    /// `ExponentialBuckets`).
    pub fn exponential_bounds(start: f64, factor: f64, count: usize) -> Vec<f64> {
        std::iter::successors(Some(start), |b| Some(b * factor))
            .take(count)
            .collect()
    }

    /// Records one value.
    pub fn observe(&mut self, value: f64) {
        let index = self.bounds.partition_point(|bound| *bound < value);
        self.counts[index] += 1;
        self.sum += value;
        self.count += 1;
    }

    /// The upper bounds (without `+Inf`).
    pub fn bounds(&self) -> &[f64] {
        &self.bounds
    }

    /// How many values were recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The sum of the recorded values.
    pub fn sum(&self) -> f64 {
        self.sum
    }

    /// `(upper bound, cumulative count)` for every bucket, `+Inf` last.
    pub fn cumulative(&self) -> Vec<(f64, u64)> {
        let mut total = 0;
        self.bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(&self.counts)
            .map(|(bound, count)| {
                total += count;
                (bound, total)
            })
            .collect()
    }
}

struct Family {
    kind: MetricKind,
    help: String,
    /// Rendered sample lines, in the order they were added.
    lines: String,
}

/// A set of metric families being assembled for one scrape. Samples may be added in any order;
/// [`Exposition::render`] groups each family's samples under its `# HELP` and `# TYPE`.
#[derive(Default)]
pub struct Exposition {
    families: BTreeMap<String, Family>,
    /// Family names in the order they were first declared (the output order).
    order: Vec<String>,
}

/// Label pairs of one sample.
pub type Labels<'a> = &'a [(&'a str, &'a str)];

impl Exposition {
    /// An empty exposition.
    pub fn new() -> Self {
        Self::default()
    }

    /// Declares a family (idempotent: a second call keeps the first help text).
    pub fn family(&mut self, name: &str, kind: MetricKind, help: &str) -> &mut Self {
        if !self.families.contains_key(name) {
            self.order.push(name.to_string());
            self.families.insert(
                name.to_string(),
                Family {
                    kind,
                    help: help.to_string(),
                    lines: String::new(),
                },
            );
        }
        self
    }

    /// A counter or gauge sample. The family must have been declared; an undeclared one is
    /// declared as untyped-looking gauge so nothing is lost (and `promtool` would flag it).
    pub fn sample(&mut self, name: &str, labels: Labels<'_>, value: f64) {
        let family = self.entry(name, MetricKind::Gauge);
        write_sample(&mut family.lines, name, labels, None, value);
    }

    /// A histogram sample set: buckets, `_sum` and `_count`.
    pub fn histogram(&mut self, name: &str, labels: Labels<'_>, histogram: &Histogram) {
        let family = self.entry(name, MetricKind::Histogram);
        let bucket = format!("{name}_bucket");
        for (bound, cumulative) in histogram.cumulative() {
            let le = format_value(bound);
            write_sample(
                &mut family.lines,
                &bucket,
                labels,
                Some(("le", &le)),
                cumulative as f64,
            );
        }
        write_sample(
            &mut family.lines,
            &format!("{name}_sum"),
            labels,
            None,
            histogram.sum(),
        );
        write_sample(
            &mut family.lines,
            &format!("{name}_count"),
            labels,
            None,
            histogram.count() as f64,
        );
    }

    fn entry(&mut self, name: &str, kind: MetricKind) -> &mut Family {
        if !self.families.contains_key(name) {
            self.family(name, kind, "");
        }
        self.families
            .get_mut(name)
            .expect("the family was just declared")
    }

    /// The text exposition: families in declaration order, each with its samples. Families
    /// without samples are left out (a `# TYPE` with nothing under it says nothing).
    pub fn render(&self) -> String {
        let mut out = String::new();
        for name in &self.order {
            let Some(family) = self.families.get(name) else {
                continue;
            };
            if family.lines.is_empty() {
                continue;
            }
            if !family.help.is_empty() {
                let _ = writeln!(out, "# HELP {name} {}", escape_help(&family.help));
            }
            let _ = writeln!(out, "# TYPE {name} {}", family.kind.name());
            out.push_str(&family.lines);
        }
        out
    }
}

/// The content type of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

fn write_sample(
    out: &mut String,
    name: &str,
    labels: Labels<'_>,
    extra: Option<(&str, &str)>,
    value: f64,
) {
    out.push_str(name);
    let mut pairs = labels.iter().copied().chain(extra).peekable();
    if pairs.peek().is_some() {
        out.push('{');
        for (index, (key, value)) in pairs.enumerate() {
            if index > 0 {
                out.push(',');
            }
            let _ = write!(out, "{key}=\"{}\"", escape_label_value(value));
        }
        out.push('}');
    }
    out.push(' ');
    out.push_str(&format_value(value));
    out.push('\n');
}

/// A sample value as the format spells it: `+Inf`, `-Inf`, `NaN`, else a decimal float.
pub fn format_value(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value == f64::INFINITY {
        "+Inf".into()
    } else if value == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        // Rust's shortest round-trip form (`1e-6` prints as `0.000001`): Go's ParseFloat, which
        // Prometheus uses, reads it back to the same value.
        format!("{value}")
    }
}

/// A label value escaped: backslash, double quote and line feed.
pub fn escape_label_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Whether `name` is a valid metric or label name (`[a-zA-Z_:][a-zA-Z0-9_:]*`; labels may not
/// use `:`, which callers pass as `allow_colon = false`).
pub fn valid_name(name: &str, allow_colon: bool) -> bool {
    let mut chars = name.chars();
    let ok_first = |c: char| c.is_ascii_alphabetic() || c == '_' || (allow_colon && c == ':');
    match chars.next() {
        Some(first) if ok_first(first) => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || (allow_colon && c == ':'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_are_grouped_with_help_and_type() {
        let mut exposition = Exposition::new();
        exposition.family("a_total", MetricKind::Counter, "Things.");
        exposition.family("b", MetricKind::Gauge, "Level.");
        exposition.sample("a_total", &[("target", "x")], 1.0);
        exposition.sample("b", &[], 0.5);
        exposition.sample("a_total", &[("target", "y")], 2.0);
        assert_eq!(
            exposition.render(),
            "# HELP a_total Things.\n# TYPE a_total counter\na_total{target=\"x\"} 1\n\
             a_total{target=\"y\"} 2\n# HELP b Level.\n# TYPE b gauge\nb 0.5\n"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        let mut exposition = Exposition::new();
        exposition.family("m", MetricKind::Gauge, "h");
        exposition.sample("m", &[("l", "a\"b\\c\nd")], 1.0);
        assert!(exposition.render().contains("m{l=\"a\\\"b\\\\c\\nd\"} 1\n"));
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let mut histogram = Histogram::new(&[0.001, 0.000_01, 0.0001]);
        assert_eq!(histogram.bounds(), &[0.000_01, 0.0001, 0.001]);
        for value in [0.000_005, 0.000_01, 0.000_05, 0.5] {
            histogram.observe(value);
        }
        // An observation equal to a bound falls in that bucket (le = less or equal).
        assert_eq!(
            histogram.cumulative(),
            vec![(0.000_01, 2), (0.0001, 3), (0.001, 3), (f64::INFINITY, 4)]
        );
        let mut exposition = Exposition::new();
        exposition.family("rtt_seconds", MetricKind::Histogram, "RTT.");
        exposition.histogram("rtt_seconds", &[("t", "x")], &histogram);
        let text = exposition.render();
        assert!(text.contains("rtt_seconds_bucket{t=\"x\",le=\"0.00001\"} 2\n"));
        assert!(text.contains("rtt_seconds_bucket{t=\"x\",le=\"+Inf\"} 4\n"));
        assert!(text.contains("rtt_seconds_count{t=\"x\"} 4\n"));
        assert!(text.contains("# TYPE rtt_seconds histogram\n"));
    }

    #[test]
    fn exponential_bounds_follow_the_factor() {
        let bounds = Histogram::exponential_bounds(1e-6, 2.0, 4);
        assert_eq!(bounds, vec![1e-6, 2e-6, 4e-6, 8e-6]);
    }

    #[test]
    fn special_values() {
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(format_value(1e-6), "0.000001");
        assert_eq!(format_value(3.0), "3");
    }

    #[test]
    fn names() {
        assert!(valid_name("loopscope_probe_rtt_seconds", true));
        assert!(valid_name("job:rate5m", true));
        assert!(!valid_name("job:rate5m", false));
        assert!(!valid_name("9lives", true));
        assert!(!valid_name("", true));
    }
}
