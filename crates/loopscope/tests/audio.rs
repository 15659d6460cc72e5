//! `loopscope audio-latency` end to end: recordings delayed by sox, bad input, no signal.

use std::path::Path;

use assert_cmd::Command;

fn loopscope() -> Command {
    Command::cargo_bin("loopscope").unwrap()
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

fn json_lines(stdout: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

fn summary(stdout: &[u8]) -> serde_json::Value {
    json_lines(stdout)
        .into_iter()
        .find(|v| v["type"] == "summary")
        .expect("a summary line")
}

fn sox(args: &[&str], dir: &Path) {
    let status = std::process::Command::new("sox")
        .args(args)
        .current_dir(dir)
        .status()
        .unwrap();
    assert!(status.success(), "sox {args:?}");
}

/// The test signal written by `wav:OUT.wav`, delayed by sox (an independent tool) by a known
/// number of frames, gives back that delay.
#[test]
fn sox_delayed_recordings_give_their_delay() {
    if !on_path("sox") {
        eprintln!("skipped: sox is not installed (Debian: sox)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    loopscope()
        .args(["audio-latency", "wav:out.wav?seconds=3"])
        .current_dir(dir.path())
        .assert()
        .success();
    // 1234 frames of silence in front, 24-bit, inverted and 6 dB down.
    sox(
        &[
            "out.wav", "-b", "24", "a.wav", "pad", "1234s", "vol", "-0.5",
        ],
        dir.path(),
    );
    // 40,000 frames: most of the range.
    sox(&["out.wav", "b.wav", "pad", "40000s"], dir.path());
    // Half a frame: up to 96 kHz, 247 frames of silence there, back down to 48 kHz (sox's
    // rate effect is linear-phase and compensates its own delay).
    sox(&["out.wav", "-r", "96000", "up.wav"], dir.path());
    sox(&["up.wav", "padded.wav", "pad", "247s"], dir.path());
    sox(&["padded.wav", "-r", "48000", "c.wav"], dir.path());
    for (file, delay, polarity, gain_db) in [
        ("a.wav", 1234.0, "inverted", -6.02),
        ("b.wav", 40_000.0, "normal", 0.0),
        ("c.wav", 123.5, "normal", 0.0),
    ] {
        let output = loopscope()
            .args(["--json", "audio-latency", &format!("wav:,{file}")])
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(0), "{file}");
        let summary = summary(&output.stdout);
        let got = summary["delay_frames"].as_f64().unwrap();
        assert!((got - delay).abs() < 0.01, "{file}: {got}");
        assert_eq!(summary["polarity"], polarity, "{file}");
        let gain = summary["gain_db"].as_f64().unwrap();
        assert!((gain - gain_db).abs() < 0.05, "{file}: {gain} dB");
        assert!(
            summary["valid_readings"].as_u64().unwrap() >= 5,
            "{summary}"
        );
        let ms = summary["delay_ms"].as_f64().unwrap();
        assert!((ms - delay / 48.0).abs() < 0.001);
    }
}

/// A missing device, an unsupported rate, or a WAV of the wrong format: one line, exit 2.
#[test]
fn bad_input_is_one_line_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("text.wav"), "not a wave file").unwrap();
    loopscope()
        .args(["audio-latency", "wav:rate44k.wav?seconds=0.1&rate=44100"])
        .current_dir(dir.path())
        .assert()
        .success();
    for (link, says) in [
        ("wav:,missing.wav", "missing.wav"),
        ("wav:,text.wav", "text.wav"),
        ("wav:,rate44k.wav?rate=48000", "44100 Hz"),
        ("audiosim:?rate=1000", "unsupported sample rate"),
        ("audiosim:?delay=12&bogus=1", "unknown option 'bogus'"),
        ("jack:?connect=loop", "JACK"),
    ] {
        let output = loopscope()
            .args(["audio-latency", link, "--count", "1"])
            .current_dir(dir.path())
            // No JACK server goes by this name, so jack: fails to connect (or, without
            // libjack, to load): a missing device either way.
            .env("JACK_DEFAULT_SERVER", "loopscope-no-such-server")
            .env("JACK_NO_START_SERVER", "1")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{link}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{link}: {stderr}");
        assert!(stderr.contains(says), "{link}: {stderr}");
        assert!(output.stdout.is_empty(), "{link}");
    }
}

/// Silence or noise alone never reads as a delay: "no signal" and exit 1.
#[test]
fn no_signal_exits_1_and_never_reads_zero() {
    for link in [
        "audiosim:?delay=10&gain_db=-200",
        "audiosim:?delay=10&gain_db=-200&noise_db=-30",
    ] {
        let output = loopscope()
            .args(["audio-latency", link, "--count", "1"])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(1), "{link}");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(stdout.contains("no signal"), "{stdout}");
        assert!(!stdout.contains(" ms"), "{stdout}");

        let output = loopscope()
            .args(["--json", "audio-latency", link, "--count", "1"])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(1));
        let summary = summary(&output.stdout);
        assert!(summary["delay_ms"].is_null(), "{summary}");
        assert_eq!(summary["passed"], false);
        assert!(summary["error"].as_str().unwrap().starts_with("no signal"));
    }
}

#[test]
fn json_readings_then_one_summary() {
    let output = loopscope()
        .args([
            "--json",
            "audio-latency",
            "audiosim:?delay=480.25&invert=1",
            "--count",
            "3",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    let lines = json_lines(&output.stdout);
    let readings: Vec<_> = lines.iter().filter(|v| v["type"] == "reading").collect();
    assert_eq!(readings.len(), 3);
    for reading in &readings {
        assert_eq!(reading["status"], "ok");
        assert!((reading["delay_frames"].as_f64().unwrap() - 480.25).abs() < 0.01);
        assert!((reading["delay_ms"].as_f64().unwrap() - 10.005_208).abs() < 0.001);
        assert_eq!(reading["polarity"], "inverted");
    }
    assert_eq!(lines.last().unwrap()["type"], "summary");
    assert_eq!(lines.last().unwrap()["rate_hz"], 48_000);
}
