//! T1/E1 loopback in software, through the real binary: the test set (`bert --framing`) against
//! the emulated NIU, both as a child process on stdio (`exec:loopscope reflect --niu t1 stdio:`)
//! and in process (`sim:?niu=esf`).

use serde_json::Value;

mod support;
use support::{loopscope, run_json, summary};

fn binary_path() -> String {
    assert_cmd::cargo::cargo_bin("loopscope")
        .to_string_lossy()
        .into_owned()
}

/// The procedure's phase events, in order.
fn phases(lines: &[Value]) -> Vec<String> {
    lines
        .iter()
        .filter(|l| l["type"] == "event")
        .filter_map(|l| l["event"].as_str())
        .filter(|e| e.starts_with("loop") || e.starts_with("bert"))
        .map(str::to_string)
        .collect()
}

#[test]
fn loop_up_framed_qrss_on_timeslots_1_to_12_loop_down_against_the_niu_on_stdio() {
    let far_end = format!("exec:{} reflect --niu t1 stdio:", binary_path());
    let (code, lines, stderr) = run_json(&[
        "bert",
        &far_end,
        "--framing",
        "esf",
        "--timeslots",
        "1-12",
        "--pattern",
        "qrss",
        "--loop-up",
        "inband",
        "--duration",
        "5s",
    ]);
    assert_eq!(code, 0, "{stderr}\n{lines:?}");
    assert_eq!(
        phases(&lines),
        [
            "loop_up_sent",
            "loop_up_returned",
            "loop_closed",
            "bert_started",
            "bert_finished",
            "loop_down_sent",
            "loop_opened"
        ]
    );
    let s = summary(&lines);
    assert_eq!(s["framing"], "esf");
    assert_eq!(s["timeslots"], "1-12");
    assert_eq!(s["payload_rate_bps"], 768_000);
    assert_eq!(s["loop_closed"], true);
    assert_eq!(s["loop_opened"], true);
    assert_eq!(s["bit_errors"], 0);
    let counted = s["bits"].as_u64().unwrap() + s["unsynced_bits"].as_u64().unwrap();
    assert!(counted.abs_diff(5 * 768_000) < 64, "{counted}");
    for field in ["frame_bit_errors", "crc_errors", "oof_events"] {
        assert_eq!(s[field], 0, "{field}");
    }
    assert!(s["crc_blocks"].as_u64().unwrap() >= 1666);
    assert_eq!(s["g826"]["es"], 0);
    assert_eq!(s["g826"]["seconds"], 5);
    // The NIU logged each state change, with the time, on its stderr (inherited here).
    assert!(
        stderr.contains("line loopback CLOSED by in-band loop-up 00001"),
        "{stderr}"
    );
    assert!(
        stderr.contains("loopback OPENED by in-band loop-down 001"),
        "{stderr}"
    );
    let closed_line = stderr
        .lines()
        .find(|l| l.contains("CLOSED"))
        .expect("a close line");
    assert!(
        closed_line.contains('T') && closed_line.contains('Z'),
        "{closed_line}"
    );
}

#[test]
fn line_errors_are_counted_apart_as_payload_framing_bit_and_crc_errors() {
    let (code, lines, stderr) = run_json(&[
        "bert",
        "sim:?niu=esf&ber=5e-4&seed=11",
        "--framing",
        "esf",
        "--timeslots",
        "1-12",
        "--pattern",
        "qrss",
        "--loop-up",
        "inband",
        "--duration",
        "20s",
        "--max-ber",
        "1e-2",
    ]);
    assert_eq!(code, 0, "the payload BER is under --max-ber: {stderr}");
    let s = summary(&lines);
    assert_eq!(s["loop_closed"], true);
    let bits = s["bits"].as_f64().unwrap();
    let ber = 5e-4;
    let payload_errors = s["bit_errors"].as_f64().unwrap();
    let sigma = (bits * ber).sqrt();
    assert!(
        (payload_errors - bits * ber).abs() < 5.0 * sigma,
        "payload errors {payload_errors} of {bits}"
    );
    // 2000 framing-pattern bits a second, at the same rate.
    let frame_bit_errors = s["frame_bit_errors"].as_f64().unwrap();
    assert!(
        (frame_bit_errors - 40_000.0 * ber).abs() < 5.0 * (40_000.0 * ber).sqrt() + 1.0,
        "framing-bit errors {frame_bit_errors}"
    );
    let blocks = s["crc_blocks"].as_f64().unwrap();
    let p_block = 1.0 - (1.0_f64 - ber).powi(4632);
    let crc_errors = s["crc_errors"].as_f64().unwrap();
    assert!(
        (crc_errors - blocks * p_block).abs() < 5.0 * (blocks * p_block * (1.0 - p_block)).sqrt(),
        "CRC errors {crc_errors} of {blocks}"
    );
    // Every bit the channel flipped is at most one of these counts.
    let flipped = s["link_stats"]["impairment"]["flipped_bits"]
        .as_f64()
        .expect("impairment stats");
    assert!(payload_errors + frame_bit_errors < flipped);
    let g826 = &s["g826"];
    assert!(g826["ses"].as_u64().unwrap() + g826["uas"].as_u64().unwrap() >= 19);
}

#[test]
fn the_loop_opens_on_the_niu_timeout() {
    let far_end = format!(
        "exec:{} reflect --niu t1 --loop-timeout 2s stdio:",
        binary_path()
    );
    let (code, lines, stderr) = run_json(&[
        "bert",
        &far_end,
        "--framing",
        "esf",
        "--loop-up",
        "inband",
        "--duration",
        "6s",
        "--loop-wait",
        "7s",
    ]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("loopback OPENED by timeout"), "{stderr}");
    let s = summary(&lines);
    let findings = s["findings"].to_string();
    assert!(findings.contains("stopped coming back"), "{findings}");
    // The same over the in-process NIU, whose log is in the summary.
    let (code, lines, _) = run_json(&[
        "bert",
        "sim:?niu=esf&loop_timeout=2s",
        "--framing",
        "esf",
        "--loop-up",
        "fdl-line",
        "--duration",
        "6s",
    ]);
    assert_eq!(code, 1);
    let log = summary(&lines)["link_stats"]["niu"]["log"]
        .as_array()
        .expect("NIU log")
        .clone();
    let opened = log
        .iter()
        .find(|e| e["event"] == "loop_opened")
        .expect("opened");
    assert_eq!(opened["by"], "timeout");
    let closed = log
        .iter()
        .find(|e| e["event"] == "loop_closed")
        .expect("closed");
    assert_eq!(closed["by"], "fdl line-loopback-activate");
    let held = opened["t_s"].as_f64().unwrap() - closed["t_s"].as_f64().unwrap();
    assert!((held - 2.0).abs() < 0.02, "{held}");
}

#[test]
fn a_signal_without_the_framing_is_reported_as_loss_of_frame() {
    // An E1 far end answers an ESF test set: there is no ESF framing in what comes back.
    let (code, lines, stderr) = run_json(&["bert", "sim:?niu=e1", "--framing", "esf"]);
    assert_eq!(code, 1, "{stderr}");
    let s = summary(&lines);
    assert_eq!(s["in_frame"], false);
    assert!(
        s["findings"][0]
            .as_str()
            .unwrap()
            .starts_with("loss of frame: no esf frame alignment"),
        "{s}"
    );
    // Noise from a child that then exits.
    let (code, lines, stderr) = run_json(&[
        "bert",
        "exec:head -c 3000000 /dev/urandom",
        "--framing",
        "e1-crc4",
    ]);
    assert_eq!(code, 1, "{stderr}");
    let findings = summary(&lines)["findings"].to_string();
    assert!(findings.contains("loss of frame"), "{findings}");
}

#[test]
fn bad_names_are_one_line_and_exit_2() {
    for args in [
        &[
            "bert",
            "loop:",
            "--framing",
            "esf",
            "--loop-up-code",
            "bogus",
        ][..],
        &["bert", "loop:", "--framing", "esf", "--loop-up", "smoke"],
        &["bert", "loop:", "--framing", "t3"],
        &["bert", "loop:", "--framing", "esf", "--timeslots", "0-30"],
        &["bert", "loop:", "--framing", "e1", "--loop-up", "fdl-line"],
        &["reflect", "--niu", "t2", "stdio:"],
    ] {
        let output = loopscope().args(args).output().expect("runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("loopscope: error: "), "{stderr}");
    }
}
