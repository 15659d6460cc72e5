//! `loopscope bert` and `loopscope pattern` driven as a user would, through the real binary.

use std::process::{Command, Stdio};
use std::time::Duration;

use assert_cmd::cargo::CommandCargoExt;
use serde_json::Value;

fn loopscope() -> Command {
    Command::cargo_bin("loopscope").expect("the binary is built")
}

/// Runs and returns (exit code, JSON lines, stderr).
fn run_json(args: &[&str]) -> (i32, Vec<Value>, String) {
    let output = loopscope().args(args).arg("--json").output().expect("runs");
    let stdout = String::from_utf8(output.stdout).expect("utf-8");
    let lines = stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect();
    (
        output.status.code().unwrap_or(-1),
        lines,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn summary(lines: &[Value]) -> &Value {
    let last = lines.last().expect("some output");
    assert_eq!(last["type"], "summary", "the last line is the summary");
    last
}

#[test]
fn clean_loop_passes_with_every_contract_field() {
    let (code, lines, stderr) = run_json(&["bert", "loop:", "--bytes", "8M"]);
    assert_eq!(code, 0, "{stderr}");
    let s = summary(&lines);
    for field in [
        "pattern",
        "inverted",
        "bits",
        "bit_errors",
        "ber",
        "ber_upper_bound",
        "confidence",
        "sync_losses",
        "slips",
        "errored_seconds",
        "severely_errored_seconds",
        "unavailable_seconds",
        "error_free_seconds",
        "elapsed_s",
        "throughput_bps",
        "passed",
    ] {
        assert!(s.get(field).is_some(), "summary lacks {field}: {s}");
    }
    assert_eq!(s["pattern"], "prbs31");
    assert_eq!(s["inverted"], true, "O.150 sends 2^31-1 inverted");
    assert_eq!(s["bit_errors"], 0);
    assert_eq!(s["passed"], true);
    // Only the first bits before synchronisation go unchecked.
    let bits = s["bits"].as_u64().unwrap();
    assert!(bits <= 64_000_000 && bits > 64_000_000 - 1024, "{bits}");
    // No errors in N bits: the 95% bound is -ln(0.05)/N = 2.996/N.
    let bound = s["ber_upper_bound"].as_f64().unwrap();
    assert!((bound * bits as f64 - 2.996).abs() < 0.01, "{bound}");
}

#[test]
fn random_line_errors_are_measured_at_the_rate_the_channel_made() {
    let (code, lines, _) = run_json(&[
        "bert",
        "sim:?ber=1e-4&seed=3",
        "--bytes",
        "4M",
        "--max-ber",
        "1e-3",
    ]);
    let s = summary(&lines);
    assert_eq!(code, 0, "{s}");
    let flipped = s["link_stats"]["impairment"]["flipped_bits"]
        .as_u64()
        .unwrap();
    let errors = s["bit_errors"].as_u64().unwrap();
    // Each flipped bit is one error (a free-running checker does not triple-count); a handful
    // may fall into the unchecked acquisition bits.
    assert!(
        errors <= flipped && flipped - errors <= 3,
        "checker {errors}, channel {flipped}"
    );
    // 32 Mbit at 1e-4: 3200 expected; the 99% interval is about +-2.576*sqrt(3200) = +-146.
    assert!((errors as f64 - 3200.0).abs() < 146.0, "{errors}");
    assert_eq!(s["slips"], 0);
}

#[test]
fn injected_errors_are_counted_once_each_and_fail_the_run() {
    let (code, lines, _) = run_json(&[
        "bert",
        "loop:",
        "--bytes",
        "2M",
        "--inject-ber",
        "1e-5",
        "--pattern",
        "prbs23",
    ]);
    let s = summary(&lines);
    assert_eq!(code, 1, "errors fail the run by default");
    assert_eq!(s["passed"], false);
    let injected = s["injected_bits"].as_u64().unwrap();
    assert!(injected > 50, "{injected}");
    let errors = s["bit_errors"].as_u64().unwrap();
    assert!(
        errors <= injected && injected - errors <= 3,
        "checker {errors}, injected {injected}"
    );
}

#[test]
fn a_dropped_byte_is_a_slip_not_a_flood_of_errors() {
    let (code, lines, _) = run_json(&[
        "bert",
        "sim:?drop=2e-7&seed=5",
        "--bytes",
        "16M",
        "--pattern",
        "prbs15",
    ]);
    let s = summary(&lines);
    assert_eq!(code, 1);
    let dropped = s["link_stats"]["impairment"]["dropped_bytes"]
        .as_u64()
        .unwrap();
    assert!(dropped >= 1, "the channel dropped something: {s}");
    assert_eq!(s["slips"].as_u64().unwrap(), dropped, "{s}");
    // Around each slip only a bounded number of bits can be miscounted.
    assert!(s["bit_errors"].as_u64().unwrap() <= dropped * 64, "{s}");
}

#[test]
fn the_receiver_detects_the_pattern() {
    let (code, lines, _) = run_json(&[
        "bert",
        "loop:",
        "--bytes",
        "1M",
        "--pattern",
        "prbs11",
        "--reverse",
        "--rx-pattern",
        "auto",
    ]);
    let s = summary(&lines);
    assert_eq!(code, 0, "{s}");
    assert_eq!(s["pattern"], "prbs11");
    assert_eq!(s["reversed"], true);
    assert_eq!(s["auto_detected"], true);
}

#[test]
fn exec_cat_is_a_loop() {
    let (code, lines, stderr) = run_json(&["bert", "exec:cat", "--bytes", "4M"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(summary(&lines)["bit_errors"], 0);
}

#[test]
fn a_link_that_ends_early_still_reports_what_it_measured() {
    // head passes the first 1 MB back and exits: the run must end with a partial summary.
    let (code, lines, _) = run_json(&["bert", "exec:head -c 1000000", "--bytes", "8M"]);
    assert_eq!(code, 1);
    let s = summary(&lines);
    assert_eq!(s["end_reason"], "link_closed");
    assert_eq!(s["bytes_received"], 1_000_000);
    assert!(s["bits"].as_u64().unwrap() > 7_000_000);
    assert_eq!(s["passed"], false);
}

#[test]
fn bad_input_is_one_line_and_exit_2() {
    for args in [
        &["bert", "loop:", "--pattern", "prbs8"][..],
        &["bert", "nonsense", "--bytes", "1k"],
        &["bert", "warp://x", "--bytes", "1k"],
        &["bert", "sim:?ber=2", "--bytes", "1k"],
        &["bert", "exec:/no/such/program", "--bytes", "1k"],
        &["bert", "loop:", "--pattern", "hex:ABC"],
        &["pattern", "check", "/no/such/file"],
    ] {
        let output = loopscope().args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("loopscope: error: "),
            "{args:?}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

/// The bit stream of a generated file, least significant bit of each byte first.
fn bits_lsb_first(bytes: &[u8]) -> Vec<u8> {
    bytes
        .iter()
        .flat_map(|b| (0..8).map(move |k| (b >> k) & 1))
        .collect()
}

#[test]
fn generated_files_follow_the_o150_recurrence_and_check_clean() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("prbs9.bin");
    let status = loopscope()
        .args(["pattern", "gen", "prbs9", "--bytes", "4096", "-o"])
        .arg(&path)
        .status()
        .unwrap();
    assert!(status.success());
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(bytes.len(), 4096);
    // 2^9-1 is sent non-inverted: b[t] = b[t-5] ^ b[t-9], whatever the start phase.
    let bits = bits_lsb_first(&bytes);
    assert!((9..bits.len()).all(|t| bits[t] == bits[t - 5] ^ bits[t - 9]));
    assert!(bits.contains(&1));

    let (code, lines, _) = run_json(&[
        "pattern",
        "check",
        path.to_str().unwrap(),
        "--pattern",
        "auto",
        "--bit-rate",
        "8k",
    ]);
    assert_eq!(code, 0);
    let s = summary(&lines);
    assert_eq!(s["pattern"], "prbs9");
    assert_eq!(s["inverted"], false);
    assert_eq!(s["bit_errors"], 0);
    // 32768 bits at 8000 bit/s: four whole seconds, all error-free, and 768 bits (0.096 s)
    // of a fifth, which G.821 does not count (issue 11: a partial second counted as whole).
    assert_eq!(s["error_free_seconds"], 4);
    assert_eq!(s["available_seconds"], 4);
    assert_eq!(s["partial_second_s"], 0.096);
    assert_eq!(s["partial_second_bits"], 768);

    // One flipped bit in the file is one error.
    let mut damaged = bytes.clone();
    damaged[2000] ^= 0x10;
    std::fs::write(&path, &damaged).unwrap();
    let (code, lines, _) = run_json(&[
        "pattern",
        "check",
        path.to_str().unwrap(),
        "--pattern",
        "prbs9",
    ]);
    assert_eq!(code, 1);
    let s = summary(&lines);
    assert_eq!(s["bit_errors"], 1);
    assert_eq!(
        s["errored_seconds"],
        Value::Null,
        "no --bit-rate, no seconds"
    );
}

#[test]
fn msb_first_reverses_the_bits_of_each_byte() {
    let generate = |extra: &[&str]| {
        let output = loopscope()
            .args(["pattern", "gen", "prbs15", "--bytes", "256"])
            .args(extra)
            .stdout(Stdio::piped())
            .output()
            .unwrap();
        assert!(output.status.success());
        output.stdout
    };
    let lsb = generate(&[]);
    let msb = generate(&["--msb-first"]);
    assert_eq!(
        msb,
        lsb.iter().map(|b| b.reverse_bits()).collect::<Vec<_>>()
    );
    // --no-invert complements the O.150 (inverted) 2^15-1 stream.
    let plain = generate(&["--no-invert"]);
    assert_eq!(plain, lsb.iter().map(|b| !b).collect::<Vec<_>>());
}

#[cfg(unix)]
#[test]
fn ctrl_c_and_sigusr1_during_a_run() {
    let child = loopscope()
        .args(["bert", "sim:?rate=20M", "--forever", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id().to_string();
    std::thread::sleep(Duration::from_millis(800));
    for _ in 0..2 {
        assert!(
            Command::new("kill")
                .args(["-USR1", &pid])
                .status()
                .unwrap()
                .success()
        );
        std::thread::sleep(Duration::from_millis(400));
    }
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    let last: Value = serde_json::from_str(stdout.lines().last().expect("a summary")).unwrap();
    assert_eq!(last["type"], "summary");
    assert_eq!(last["end_reason"], "interrupted");
    assert_eq!(last["injected_bits"], 2);
    assert_eq!(last["bit_errors"], 2, "{last}");
    assert_eq!(
        output.status.code(),
        Some(1),
        "errors were injected, so the run fails"
    );
}

#[test]
fn completions_and_man_page() {
    let output = loopscope().args(["completions", "bash"]).output().unwrap();
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains("loopscope"));
    let output = loopscope().arg("man").output().unwrap();
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains(".TH loopscope"));
}
