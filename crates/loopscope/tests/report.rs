//! `--report FILE.html`: the report is one self-contained file (nothing a browser would fetch),
//! and headless Chromium renders its plots: a screenshot has the plots' coloured pixels (the
//! tables and text are black and grey, so colour can only come from the plots).

use std::path::Path;
use std::process::{Command, Stdio};

mod support;
use support::{assert_exit, installed};

const BIN: &str = env!("CARGO_BIN_EXE_loopscope");

fn have_chromium() -> bool {
    let found = installed("chromium");
    if !found {
        eprintln!("skipping: chromium is not installed (Debian package chromium)");
    }
    found
}

/// Runs the binary with `args` then `--report`'s file `name` in a temporary directory, checks
/// the exit code and that the page is self-contained; returns the directory (the report goes
/// with it), the report's path and its text.
fn run_with_report(
    name: &str,
    args: &[&str],
    exit_code: i32,
) -> (tempfile::TempDir, std::path::PathBuf, String) {
    let directory = tempfile::tempdir().unwrap();
    let report = directory.path().join(name);
    let output = Command::new(BIN).args(args).arg(&report).output().unwrap();
    assert_exit(&output, exit_code);
    let html = std::fs::read_to_string(&report).unwrap();
    assert_self_contained(&html);
    (directory, report, html)
}

/// Nothing in the page that makes a browser fetch: no script, stylesheet, image, font or frame
/// by address, and no CSS import or url().
fn assert_self_contained(html: &str) {
    let lower = html.to_ascii_lowercase();
    for needle in [
        "<script",
        "<link",
        "<img",
        "<iframe",
        "<object",
        "<embed",
        " src=",
        " href=",
        "xlink:href",
        "@import",
        "url(",
    ] {
        assert!(!lower.contains(needle), "the report contains '{needle}'");
    }
}

/// Screenshot of `html` in headless Chromium: (pixels strongly coloured, total pixels), and the
/// count of pixels of each of the colours the plots use.
fn screenshot(html: &Path, directory: &Path) -> Vec<[u8; 3]> {
    let png = directory.join("shot.png");
    let output = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1000,1600",
        ])
        .arg(format!(
            "--user-data-dir={}",
            directory.join("profile").display()
        ))
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", html.display()))
        .output()
        .expect("run chromium");
    assert!(
        output.status.success() && png.exists(),
        "chromium failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(&png).expect("open the screenshot"),
    ));
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buffer = vec![0; reader.output_buffer_size().expect("size")];
    let info = reader.next_frame(&mut buffer).expect("a frame");
    let channels = info.color_type.samples();
    assert!(channels >= 3, "an RGB screenshot");
    buffer[..info.buffer_size()]
        .chunks(channels)
        .map(|pixel| [pixel[0], pixel[1], pixel[2]])
        .collect()
}

/// Pixels whose colour is far from grey: blue, red, green, orange.
fn coloured(pixels: &[[u8; 3]]) -> usize {
    pixels
        .iter()
        .filter(|[r, g, b]| {
            let max = (*r).max(*g).max(*b);
            let min = (*r).min(*g).min(*b);
            max - min > 100
        })
        .count()
}

#[test]
fn the_ping_report_renders_its_plots_in_chromium() {
    let (directory, report, html) = run_with_report(
        "ping.html",
        &["ping", "loop:", "-c", "200", "-i", "0", "-q", "--report"],
        0,
    );
    assert_eq!(html.matches("<svg").count(), 2, "two plots");
    assert!(html.contains("<th>transmitted</th><td>200</td>"));
    assert!(html.contains("Latency histogram"));
    if !have_chromium() {
        return;
    }
    let pixels = screenshot(&report, directory.path());
    let blue = pixels
        .iter()
        .filter(|[r, g, b]| *b > 180 && *r < 140 && *g < 140)
        .count();
    // The histogram's bars and the time series' points are blue; 200 replies fill far more
    // than a few thousand pixels.
    assert!(blue > 2000, "only {blue} blue pixels: the plots look blank");
    assert!(coloured(&pixels) > blue / 2);
}

#[test]
fn the_bert_report_marks_errored_seconds_in_chromium() {
    // A burst every second at 1 Mbit/s: errored seconds (orange) among error-free (green).
    // Injected errors fail the run.
    let (directory, report, html) = run_with_report(
        "bert.html",
        &[
            "bert",
            "sim:?rate=1M",
            "--duration",
            "4s",
            "--inject-burst-every",
            "1500ms",
            "--report",
        ],
        1,
    );
    assert!(html.contains("<th>errored_seconds</th>"));
    if !have_chromium() {
        return;
    }
    let pixels = screenshot(&report, directory.path());
    let orange = pixels
        .iter()
        .filter(|[r, g, b]| *r > 220 && (120..=180).contains(g) && *b < 40)
        .count();
    let green = pixels
        .iter()
        .filter(|[r, g, b]| *r < 40 && *g > 220 && *b < 40)
        .count();
    assert!(orange > 500, "only {orange} orange (ES) pixels");
    assert!(green > 500, "only {green} green (error-free) pixels");
}

/// Blue pixels: the plotted series and bars.
fn blue(pixels: &[[u8; 3]]) -> usize {
    pixels
        .iter()
        .filter(|[r, g, b]| *b > 180 && *r < 140 && *g < 140)
        .count()
}

#[test]
fn the_perf_report_plots_throughput_per_interval() {
    let (directory, report, html) = run_with_report(
        "perf.html",
        &["perf", "loop:", "-t", "3s", "-i", "500ms", "--report"],
        0,
    );
    assert!(html.contains("Throughput per interval"));
    if !have_chromium() {
        return;
    }
    let pixels = screenshot(&report, directory.path());
    assert!(blue(&pixels) > 300, "only {} blue pixels", blue(&pixels));
}

#[test]
fn the_stamp_report_plots_both_directions() {
    use std::io::BufRead;
    let directory = tempfile::tempdir().unwrap();
    let mut reflector = Command::new(BIN)
        .args(["--json", "stamp", "--reflect", "udp://127.0.0.1:0"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(reflector.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let event: serde_json::Value = serde_json::from_str(&line).unwrap();
    let endpoint = event["endpoint"].as_str().unwrap().to_string();
    let report = directory.path().join("stamp.html");
    let output = Command::new(BIN)
        .args([
            "stamp",
            &endpoint,
            "--count",
            "100",
            "--interval",
            "5ms",
            "-q",
            "--report",
        ])
        .arg(&report)
        .output()
        .unwrap();
    let _ = reflector.kill();
    let _ = reflector.wait();
    assert_exit(&output, 0);
    let html = std::fs::read_to_string(&report).unwrap();
    assert_self_contained(&html);
    assert!(html.contains("forward (sender to reflector)"));
    assert_eq!(html.matches("<svg").count(), 2);
    if !have_chromium() {
        return;
    }
    let pixels = screenshot(&report, directory.path());
    // Forward is blue, backward red.
    let red = pixels
        .iter()
        .filter(|[r, g, b]| *r > 180 && *g < 100 && *b < 100)
        .count();
    assert!(blue(&pixels) > 300, "only {} blue pixels", blue(&pixels));
    assert!(red > 300, "only {red} red pixels");
}

#[test]
fn the_doctor_report_shows_each_check() {
    let directory = tempfile::tempdir().unwrap();
    let report = directory.path().join("doctor.html");
    let output = Command::new(BIN)
        .args([
            "doctor",
            "--check",
            "lo_exists",
            "--check",
            "lo_up",
            "--check",
            "lo_mtu",
            "--report",
        ])
        .arg(&report)
        .output()
        .unwrap();
    assert!(
        matches!(output.status.code(), Some(0 | 1)),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let html = std::fs::read_to_string(&report).unwrap();
    assert_self_contained(&html);
    for check in ["lo_exists", "lo_up", "lo_mtu"] {
        assert!(html.contains(&format!("<td>{check}</td>")), "{check}");
    }
    if !have_chromium() {
        return;
    }
    let pixels = screenshot(&report, directory.path());
    // One bar per check, coloured by its status: some colour must be there.
    assert!(coloured(&pixels) > 300, "the check bars look blank");
}
