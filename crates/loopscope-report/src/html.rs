//! `--report FILE.html`: one self-contained HTML file with SVG plots, the run's parameters and
//! its summary table. Nothing in it is fetched: no script, no stylesheet, no font, no image by
//! address; the plots are inline SVG drawn by `plotters`' SVG backend.

use std::fmt::Write as _;

use plotters::prelude::*;
use serde::Serialize;

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum HtmlError {
    /// Plotting failed.
    #[error("cannot draw the {plot} plot: {reason}")]
    Plot {
        /// Which plot.
        plot: &'static str,
        /// Why.
        reason: String,
    },
    /// The summary could not be turned into a table.
    #[error("cannot tabulate the summary: {0}")]
    Summary(#[from] serde_json::Error),
}

/// A report being assembled: title, parameters, plots (SVG), summary rows.
pub struct HtmlReport {
    title: String,
    parameters: Vec<(String, String)>,
    plots: Vec<(String, String)>,
    tables: Vec<(String, Vec<String>, Vec<Vec<String>>)>,
    summary: Vec<(String, String)>,
}

const WIDTH: u32 = 900;
const HEIGHT: u32 = 360;

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

impl HtmlReport {
    /// An empty report titled `title`.
    pub fn new(title: impl Into<String>) -> Self {
        HtmlReport {
            title: title.into(),
            parameters: Vec::new(),
            plots: Vec::new(),
            tables: Vec::new(),
            summary: Vec::new(),
        }
    }

    /// One of the run's parameters (a flag and its value).
    pub fn parameter(&mut self, name: impl Into<String>, value: impl ToString) -> &mut Self {
        self.parameters.push((name.into(), value.to_string()));
        self
    }

    /// The summary's fields as table rows (nested objects are flattened to `a.b`).
    pub fn summary<T: Serialize>(&mut self, summary: &T) -> Result<&mut Self, HtmlError> {
        let value = serde_json::to_value(summary)?;
        flatten("", &value, &mut self.summary);
        Ok(self)
    }

    /// Adds a table under a heading (after the plots).
    pub fn table(
        &mut self,
        heading: impl Into<String>,
        header: &[&str],
        rows: Vec<Vec<String>>,
    ) -> &mut Self {
        self.tables.push((
            heading.into(),
            header.iter().map(|h| h.to_string()).collect(),
            rows,
        ));
        self
    }

    /// Adds a plot (an SVG document) under a heading.
    pub fn plot(&mut self, heading: impl Into<String>, svg: String) -> &mut Self {
        self.plots.push((heading.into(), svg));
        self
    }

    /// The whole HTML document.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let title = escape(&self.title);
        let _ = write!(
            out,
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <title>{title}</title><style>\
             body{{font-family:sans-serif;margin:2em;color:#222;background:#fff}}\
             table{{border-collapse:collapse;margin-bottom:1.5em}}\
             td,th{{border:1px solid #ccc;padding:2px 8px;text-align:left;font-size:90%}}\
             figure{{margin:0 0 1.5em 0}}</style></head><body>\n<h1>{title}</h1>\n"
        );
        out.push_str("<h2>Parameters</h2>\n<table>\n");
        for (name, value) in &self.parameters {
            let _ = writeln!(
                out,
                "<tr><th>{}</th><td>{}</td></tr>",
                escape(name),
                escape(value)
            );
        }
        out.push_str("</table>\n");
        for (heading, svg) in &self.plots {
            let _ = writeln!(
                out,
                "<h2>{}</h2>\n<figure class=\"plot\">{}</figure>",
                escape(heading),
                strip_xml_declaration(svg)
            );
        }
        for (heading, header, rows) in &self.tables {
            let _ = writeln!(out, "<h2>{}</h2>\n<table>\n<tr>", escape(heading));
            for cell in header {
                let _ = write!(out, "<th>{}</th>", escape(cell));
            }
            out.push_str("</tr>\n");
            for row in rows {
                out.push_str("<tr>");
                for cell in row {
                    let _ = write!(out, "<td>{}</td>", escape(cell));
                }
                out.push_str("</tr>\n");
            }
            out.push_str("</table>\n");
        }
        out.push_str("<h2>Summary</h2>\n<table>\n");
        for (name, value) in &self.summary {
            let _ = writeln!(
                out,
                "<tr><th>{}</th><td>{}</td></tr>",
                escape(name),
                escape(value)
            );
        }
        out.push_str("</table>\n</body></html>\n");
        out
    }
}

fn strip_xml_declaration(svg: &str) -> &str {
    match svg.strip_prefix("<?xml") {
        Some(rest) => rest
            .split_once("?>")
            .map_or(svg, |(_, after)| after.trim_start()),
        None => svg,
    }
}

fn flatten(prefix: &str, value: &serde_json::Value, out: &mut Vec<(String, String)>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, inner) in map {
                let name = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                flatten(&name, inner, out);
            }
        }
        serde_json::Value::Null => out.push((prefix.to_string(), "—".into())),
        serde_json::Value::String(text) => out.push((prefix.to_string(), text.clone())),
        other => out.push((prefix.to_string(), other.to_string())),
    }
}

fn plot_error(plot: &'static str) -> impl Fn(String) -> HtmlError {
    move |reason| HtmlError::Plot { plot, reason }
}

/// Latency distribution: a histogram of `values_us` on a logarithmic axis, with the
/// percentiles drawn as labelled vertical lines.
pub fn latency_histogram(
    values_us: &[f64],
    percentiles: &[(&str, f64)],
) -> Result<String, HtmlError> {
    let error = plot_error("latency histogram");
    let positive: Vec<f64> = values_us.iter().copied().filter(|v| *v > 0.0).collect();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| error(e.to_string()))?;
        let (low, high) = range_of(&positive);
        let (low, high) = (low * 0.9, high * 1.1);
        // 40 bins equally wide on the log axis.
        let bins = 40usize;
        let (log_low, log_high) = (low.log10(), high.log10());
        let step = (log_high - log_low) / bins as f64;
        let mut counts = vec![0u64; bins];
        for value in &positive {
            let index = (((value.log10() - log_low) / step) as usize).min(bins - 1);
            counts[index] += 1;
        }
        let top = counts.iter().copied().max().unwrap_or(1).max(1) as f64 * 1.15;
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d((low..high).log_scale(), 0.0..top)
            .map_err(|e| error(e.to_string()))?;
        chart
            .configure_mesh()
            .max_light_lines(2)
            .x_desc("round-trip time (µs, log scale)")
            .y_desc("replies")
            .draw()
            .map_err(|e| error(e.to_string()))?;
        chart
            .draw_series(counts.iter().enumerate().filter(|(_, c)| **c > 0).map(
                |(index, count)| {
                    let left = 10f64.powf(log_low + step * index as f64);
                    let right = 10f64.powf(log_low + step * (index + 1) as f64);
                    Rectangle::new(
                        [(left, 0.0), (right, *count as f64)],
                        BLUE.mix(0.6).filled(),
                    )
                },
            ))
            .map_err(|e| error(e.to_string()))?;
        let colors = [RED, MAGENTA, GREEN, BLACK, CYAN];
        for (index, (label, value)) in percentiles.iter().enumerate() {
            if *value <= 0.0 {
                continue;
            }
            let color = colors[index % colors.len()];
            chart
                .draw_series(LineSeries::new(
                    [(*value, 0.0), (*value, top)],
                    color.stroke_width(2),
                ))
                .map_err(|e| error(e.to_string()))?
                .label(format!("{label} {value:.1} µs"))
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], color));
        }
        draw_legend(&mut chart, &error)?;
        root.present().map_err(|e| error(e.to_string()))?;
    }
    Ok(svg)
}

/// One series: a line through `points` with a dot at each, named `label` in the legend.
fn draw_line_with_points<'a, DB, X, Y>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<X, Y>>,
    label: &str,
    points: &[(f64, f64)],
    color: RGBColor,
    error: &impl Fn(String) -> HtmlError,
) -> Result<(), HtmlError>
where
    DB: DrawingBackend + 'a,
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    chart
        .draw_series(LineSeries::new(
            points.iter().copied(),
            color.stroke_width(1),
        ))
        .map_err(|e| error(e.to_string()))?
        .label(label)
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], color));
    chart
        .draw_series(points.iter().map(|p| Circle::new(*p, 2, color.filled())))
        .map_err(|e| error(e.to_string()))?;
    Ok(())
}

/// The legend box of the series drawn with a label, in the top right corner.
fn draw_legend<'a, DB, X, Y>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<X, Y>>,
    error: &impl Fn(String) -> HtmlError,
) -> Result<(), HtmlError>
where
    DB: DrawingBackend + 'a,
    X: Ranged,
    Y: Ranged,
{
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| error(e.to_string()))
}

fn range_of(values: &[f64]) -> (f64, f64) {
    let low = values.iter().copied().fold(f64::INFINITY, f64::min);
    let high = values.iter().copied().fold(0.0, f64::max);
    if !low.is_finite() || high <= 0.0 {
        return (1.0, 10.0);
    }
    if high <= low {
        return (low * 0.5, low * 2.0);
    }
    (low, high)
}

/// One or more series over time: `(label, points (t_s, value))`, on a log y axis when
/// `log_y` (values that are 0 are left out there).
pub fn over_time(
    y_label: &str,
    series: &[(&str, Vec<(f64, f64)>)],
    log_y: bool,
) -> Result<String, HtmlError> {
    series_plot("time (s)", y_label, series, log_y)
}

/// Like [`over_time`] with another x axis (a packet number, an interval's end).
pub fn series_plot(
    x_label: &str,
    y_label: &str,
    series: &[(&str, Vec<(f64, f64)>)],
    log_y: bool,
) -> Result<String, HtmlError> {
    let error = plot_error("time series");
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| error(e.to_string()))?;
        let all: Vec<(f64, f64)> = series
            .iter()
            .flat_map(|(_, points)| points.iter().copied())
            .filter(|(_, y)| y.is_finite() && (!log_y || *y > 0.0))
            .collect();
        let t_max = all.iter().map(|(t, _)| *t).fold(0.0, f64::max).max(1e-3);
        let values: Vec<f64> = all.iter().map(|(_, y)| *y).collect();
        let colors = [BLUE, RED, GREEN, MAGENTA, BLACK];
        macro_rules! draw {
            ($chart:expr) => {{
                let mut chart = $chart;
                chart
                    .configure_mesh()
                    .max_light_lines(2)
                    .x_desc(x_label)
                    .y_desc(y_label)
                    .draw()
                    .map_err(|e| error(e.to_string()))?;
                for (index, (label, points)) in series.iter().enumerate() {
                    let points: Vec<(f64, f64)> = points
                        .iter()
                        .copied()
                        .filter(|(_, y)| y.is_finite() && (!log_y || *y > 0.0))
                        .collect();
                    let color = colors[index % colors.len()];
                    draw_line_with_points(&mut chart, label, &points, color, &error)?;
                }
                draw_legend(&mut chart, &error)?;
            }};
        }
        if log_y {
            let (low, high) = range_of(&values);
            draw!(
                ChartBuilder::on(&root)
                    .margin(12)
                    .x_label_area_size(40)
                    .y_label_area_size(70)
                    .build_cartesian_2d(0.0..t_max, (low * 0.5..high * 2.0).log_scale())
                    .map_err(|e| error(e.to_string()))?
            );
        } else {
            let high = values.iter().copied().fold(0.0, f64::max);
            let high = if high > 0.0 { high * 1.1 } else { 1.0 };
            draw!(
                ChartBuilder::on(&root)
                    .margin(12)
                    .x_label_area_size(40)
                    .y_label_area_size(70)
                    .build_cartesian_2d(0.0..t_max, 0.0..high)
                    .map_err(|e| error(e.to_string()))?
            );
        }
        root.present().map_err(|e| error(e.to_string()))?;
    }
    Ok(svg)
}

/// How each check went: one bar per check, as tall as the check took, coloured by its status
/// (`pass`, `warn`, `fail`, `skip`), in the order the checks ran.
pub fn status_bars(checks: &[(&str, f64, &str)]) -> Result<String, HtmlError> {
    let error = plot_error("checks");
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| error(e.to_string()))?;
        let top = checks.iter().map(|(_, ms, _)| *ms).fold(1.0, f64::max) * 1.1;
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .caption(
                "green pass, orange warn, red fail, grey skip",
                ("sans-serif", 14),
            )
            .build_cartesian_2d(0.0..checks.len().max(1) as f64, (0.01..top).log_scale())
            .map_err(|e| error(e.to_string()))?;
        chart
            .configure_mesh()
            .max_light_lines(2)
            .x_desc("check (in the order they ran; names in the table below)")
            .y_desc("duration (ms, log scale)")
            .draw()
            .map_err(|e| error(e.to_string()))?;
        let orange = RGBColor(240, 150, 0);
        chart
            .draw_series(checks.iter().enumerate().map(|(index, (_, ms, status))| {
                let color = match *status {
                    "pass" => GREEN,
                    "warn" => orange,
                    "fail" => RED,
                    _ => RGBColor(150, 150, 150),
                };
                let x = index as f64;
                Rectangle::new([(x + 0.1, 0.01), (x + 0.9, ms.max(0.011))], color.filled())
            }))
            .map_err(|e| error(e.to_string()))?;
        root.present().map_err(|e| error(e.to_string()))?;
    }
    Ok(svg)
}

/// One second of a BERT, for the G.821 timeline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BertSecond {
    /// The second's end, seconds since the start.
    pub t_s: f64,
    /// Bits checked in it.
    pub bits: u64,
    /// Bit errors in it.
    pub bit_errors: u64,
    /// G.821 severely errored (BER of 1e-3 or worse).
    pub severely_errored: bool,
}

/// BER per second on a log axis (error-free seconds sit on the floor line), and below it the
/// G.821 timeline: each second green (error free), orange (errored, ES) or red (severely
/// errored, SES).
pub fn ber_timeline(seconds: &[BertSecond]) -> Result<String, HtmlError> {
    let error = plot_error("BER");
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT + 130)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| error(e.to_string()))?;
        let (upper, lower) = root.split_vertically(HEIGHT);
        let t_max = seconds.iter().map(|s| s.t_s).fold(1.0, f64::max);
        let floor = seconds
            .iter()
            .filter(|s| s.bits > 0)
            .map(|s| 1.0 / s.bits as f64)
            .fold(1.0, f64::min)
            .min(1e-9);
        let mut chart = ChartBuilder::on(&upper)
            .margin(12)
            .x_label_area_size(30)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..t_max, (floor / 2.0..1.0).log_scale())
            .map_err(|e| error(e.to_string()))?;
        chart
            .configure_mesh()
            .max_light_lines(2)
            .x_desc("time (s)")
            .y_desc("bit error ratio")
            .y_label_formatter(&|v| format!("{v:.0e}"))
            .draw()
            .map_err(|e| error(e.to_string()))?;
        let points: Vec<(f64, f64)> = seconds
            .iter()
            .map(|s| {
                let ber = if s.bits == 0 {
                    floor
                } else {
                    (s.bit_errors as f64 / s.bits as f64).max(floor)
                };
                (s.t_s, ber)
            })
            .collect();
        draw_line_with_points(
            &mut chart,
            "BER per second (floor: error free)",
            &points,
            BLUE,
            &error,
        )?;
        draw_legend(&mut chart, &error)?;

        let mut timeline = ChartBuilder::on(&lower)
            .margin(12)
            .x_label_area_size(30)
            .y_label_area_size(70)
            .caption(
                "G.821: green error free, orange ES, red SES",
                ("sans-serif", 14),
            )
            .build_cartesian_2d(0.0..t_max, 0.0..1.0)
            .map_err(|e| error(e.to_string()))?;
        timeline
            .configure_mesh()
            .max_light_lines(2)
            .disable_y_mesh()
            .disable_y_axis()
            .x_desc("time (s)")
            .draw()
            .map_err(|e| error(e.to_string()))?;
        let orange = RGBColor(240, 150, 0);
        timeline
            .draw_series(seconds.iter().map(|s| {
                let color = if s.severely_errored {
                    RED
                } else if s.bit_errors > 0 {
                    orange
                } else {
                    GREEN
                };
                Rectangle::new([(s.t_s - 1.0, 0.0), (s.t_s, 1.0)], color.filled())
            }))
            .map_err(|e| error(e.to_string()))?;
        root.present().map_err(|e| error(e.to_string()))?;
    }
    Ok(svg)
}

/// The report of a ping run: latency histogram with its percentiles, latency over time, the
/// parameters and the summary. `replies` are `(seconds since the start, RTT in µs)`.
pub fn ping_report(
    parameters: &[(&str, String)],
    replies: &[(f64, f64)],
    summary: &crate::rtt::PingSummary,
) -> Result<String, HtmlError> {
    let mut report = HtmlReport::new(format!("loopscope ping {}", summary.target));
    for (name, value) in parameters {
        report.parameter(*name, value);
    }
    let rtts: Vec<f64> = replies.iter().map(|(_, rtt)| *rtt).collect();
    report.plot(
        "Latency histogram",
        latency_histogram(
            &rtts,
            &[
                ("p50", summary.rtt_p50_us),
                ("p90", summary.rtt_p90_us),
                ("p99", summary.rtt_p99_us),
                ("p99.9", summary.rtt_p999_us),
            ],
        )?,
    );
    report.plot(
        "Latency over time",
        over_time("round-trip time (µs)", &[("rtt", replies.to_vec())], true)?,
    );
    report.summary(summary)?;
    Ok(report.render())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_is_self_contained_and_escaped() {
        let mut report = HtmlReport::new("ping <icmp://127.0.0.1>");
        report.parameter("count", 5);
        #[derive(Serialize)]
        struct Summary {
            received: u64,
            link: Inner,
        }
        #[derive(Serialize)]
        struct Inner {
            bytes: u64,
        }
        report
            .summary(&Summary {
                received: 5,
                link: Inner { bytes: 10 },
            })
            .unwrap();
        let svg = latency_histogram(&[10.0, 12.0, 30.0], &[("p50", 12.0), ("p99", 30.0)]).unwrap();
        report.plot("Latency", svg);
        let html = report.render();
        assert!(html.contains("<title>ping &lt;icmp://127.0.0.1&gt;</title>"));
        assert!(html.contains("<th>link.bytes</th><td>10</td>"));
        assert!(html.contains("<svg"));
        assert!(!html.contains("<?xml"));
        // Nothing that a browser would fetch.
        for needle in ["<script", "src=", "href=", "@import", "url("] {
            assert!(!html.contains(needle), "found {needle}");
        }
    }

    #[test]
    fn every_plot_draws_with_empty_and_odd_input() {
        latency_histogram(&[], &[]).unwrap();
        latency_histogram(&[5.0, 5.0], &[("p50", 5.0)]).unwrap();
        over_time("rtt (µs)", &[("rtt", vec![])], true).unwrap();
        over_time("rtt (µs)", &[("rtt", vec![(0.0, 0.0), (1.0, 3.0)])], false).unwrap();
        ber_timeline(&[]).unwrap();
        let svg = ber_timeline(&[
            BertSecond {
                t_s: 1.0,
                bits: 1000,
                bit_errors: 0,
                severely_errored: false,
            },
            BertSecond {
                t_s: 2.0,
                bits: 1000,
                bit_errors: 2,
                severely_errored: true,
            },
        ])
        .unwrap();
        assert!(svg.contains("<rect"));
    }
}
