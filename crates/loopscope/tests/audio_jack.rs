//! `audio-latency jack:` beside Fons Adriaensen's `jack_delay` on the same JACK server.
//!
//! The setup, so anyone can repeat it by hand:
//!
//! ```text
//! jackd --no-realtime -n NAME -d dummy -r 48000 -p 256   # a real graph with real periods
//! export JACK_DEFAULT_SERVER=NAME
//! jack_wait -w -t 30                                      # until the server is up
//! jack_delay &                                            # prints a line per reading
//! jack_connect jack_delay:out jack_delay:in               # its output looped to its input
//! loopscope audio-latency 'jack:?connect=loop' -c 5       # ours (built --features jack)
//! ```
//!
//! Both loops go through the server's graph the same way (a client's output wired to its own
//! input, read at the start of the next cycle), so both must read one period, 256 frames, and
//! agree within 0.1 frame. Every wait is on an event (the server answering `jack_wait`, a line
//! printed); the time limits only bound a broken run.

use std::process::Stdio;
use std::time::Duration;

mod support;
use support::jack::{Started, delay_readings, jack_command, lines_of, on_path, start_dummy_server};

/// Starts `jackd -d dummy` under a name of its own and waits until it answers; `None` (after
/// saying why) where JACK is not installed.
fn start_server(tag: &str, also_needed: &[&str]) -> Option<(Started, String)> {
    if !cfg!(feature = "jack") {
        eprintln!(
            "skipped: built without the jack feature (scripts/test builds with --features loopscope/jack)"
        );
        return None;
    }
    let needed = ["jackd", "jack_wait"];
    if let Some(missing) = needed.iter().chain(also_needed).find(|p| !on_path(p)) {
        eprintln!("skipped: {missing} is not installed (Debian: jackd2, jack-delay)");
        return None;
    }
    let server = format!("loopscope-{tag}-{}", std::process::id());
    let jackd = start_dummy_server(&server);
    Some((jackd, server))
}

#[test]
fn agrees_with_jack_delay_on_a_jack_loop() {
    let Some((_jackd, server)) = start_server("delay", &["jack_connect", "jack_delay"]) else {
        return;
    };

    // jack_delay: its first line ("Signal below threshold...") says its ports exist.
    let mut jack_delay = Started::new(
        jack_command("jack_delay", &server)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start jack_delay"),
    );
    let lines = lines_of(&mut jack_delay.0);
    let limit = Duration::from_secs(60);
    lines
        .recv_timeout(limit)
        .expect("jack_delay printed nothing");
    let wired = jack_command("jack_connect", &server)
        .args(["jack_delay:out", "jack_delay:in"])
        .status()
        .unwrap();
    assert!(wired.success());

    // Ours, in the same graph at the same time.
    let ours = assert_cmd::Command::cargo_bin("loopscope")
        .unwrap()
        .args([
            "--json",
            "audio-latency",
            "jack:?connect=loop",
            "--count",
            "5",
        ])
        .env("JACK_DEFAULT_SERVER", &server)
        .env("JACK_NO_START_SERVER", "1")
        .timeout(Duration::from_secs(120))
        .output()
        .unwrap();
    assert_eq!(
        ours.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ours.stderr)
    );
    let ours: Vec<f64> = String::from_utf8_lossy(&ours.stdout)
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .filter(|v| v["type"] == "reading")
        .filter_map(|v| v["delay_frames"].as_f64())
        .collect();
    assert_eq!(ours.len(), 5);

    // jack_delay's readings: "    256.000 frames    5.333 ms".
    let theirs = delay_readings(&lines, limit, "jack_delay");
    eprintln!("jack_delay: {theirs:?}\nloopscope:  {ours:?}");
    let reference = theirs[theirs.len() - 1];
    assert!(
        theirs.iter().all(|t| (t - reference).abs() < 0.01),
        "jack_delay is not steady: {theirs:?}"
    );
    for delay in &ours {
        assert!(
            (delay - reference).abs() < 0.1,
            "loopscope {delay} vs jack_delay {reference}"
        );
    }
    // One period of the server, as the issue found by hand.
    assert!((reference - 256.0).abs() < 0.01, "{reference}");
}

/// The BERT through the modem over a JACK loop: error-free.
#[test]
fn bert_through_the_modem_over_jack_is_error_free() {
    let Some((_jackd, server)) = start_server("modem", &[]) else {
        return;
    };
    // 4800 bits: 600 bytes, about 6 s of line time at 960 bit/s.
    let output = assert_cmd::Command::cargo_bin("loopscope")
        .unwrap()
        .args([
            "--json",
            "bert",
            "jack:?connect=loop",
            "--modem",
            "--bits",
            "4800",
            "--drain-timeout",
            "10s",
        ])
        .env("JACK_DEFAULT_SERVER", &server)
        .env("JACK_NO_START_SERVER", "1")
        .timeout(Duration::from_secs(120))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary: serde_json::Value = stdout
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .find(|v| v["type"] == "summary")
        .expect("a summary");
    assert_eq!(output.status.code(), Some(0), "{summary}");
    assert_eq!(summary["bit_errors"], 0, "{summary}");
    assert_eq!(summary["slips"], 0, "{summary}");
    assert!(summary["bits"].as_u64().unwrap() >= 4600, "{summary}");
    assert_eq!(summary["link_stats"]["line_rate_bps"], 1200);
}
