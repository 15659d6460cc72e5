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
//! loopscope audio-latency 'jack:?connect=loop' -c 5       # ours, looped the same way
//! ```
//!
//! Both loops go through the server's graph the same way (a client's output wired to its own
//! input, read at the start of the next cycle), so both must read one period, 256 frames, and
//! agree within 0.1 frame. Every wait is on an event (the server answering `jack_wait`, a line
//! printed); the time limits only bound a broken run.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Kills and reaps a child we started when the test ends, however it ends.
struct Started(Child);

impl Drop for Started {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

fn jack_command(program: &str, server: &str) -> Command {
    let mut command = Command::new(program);
    command
        .env("JACK_DEFAULT_SERVER", server)
        .env("JACK_NO_START_SERVER", "1");
    command
}

#[test]
fn agrees_with_jack_delay_on_a_jack_loop() {
    let needed = ["jackd", "jack_wait", "jack_connect", "jack_delay"];
    if let Some(missing) = needed.iter().find(|p| !on_path(p)) {
        eprintln!("skipped: {missing} is not installed (Debian: jackd2, jack-delay)");
        return;
    }
    let server = format!("loopscope-test-{}", std::process::id());
    let _jackd = Started(
        Command::new("jackd")
            .args(["--no-realtime", "-n", &server])
            .args(["-d", "dummy", "-r", "48000", "-p", "256"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start jackd"),
    );
    let up = jack_command("jack_wait", &server)
        .args(["-w", "-t", "60"])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(up.success(), "the JACK server did not come up");

    // jack_delay: its first line ("Signal below threshold...") says its ports exist.
    let mut jack_delay = Started(
        jack_command("jack_delay", &server)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start jack_delay"),
    );
    let stdout = jack_delay.0.stdout.take().unwrap();
    let (lines_tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
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
    let mut theirs = Vec::new();
    while theirs.len() < 5 {
        let line = lines
            .recv_timeout(limit)
            .expect("jack_delay stopped reading");
        if let Some(frames) = line
            .split_whitespace()
            .next()
            .and_then(|w| w.parse::<f64>().ok())
            && line.contains("frames")
        {
            theirs.push(frames);
        }
    }
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
