//! `ping` over in-process links: the summary's figures against the replies it printed, a reply
//! slower than `-W`, and durations too long to be meant.

use std::process::Command;

use assert_cmd::cargo::CommandCargoExt;
use serde_json::Value;

fn ping(args: &[&str]) -> (Option<i32>, Vec<Value>, String) {
    let output = Command::cargo_bin("loopscope")
        .expect("the binary is built")
        .arg("--json")
        .arg("ping")
        .args(args)
        .output()
        .expect("run ping");
    let records = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("JSON line"))
        .collect();
    (
        output.status.code(),
        records,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn summary(records: &[Value]) -> &Value {
    records
        .iter()
        .find(|record| record["type"] == "summary")
        .expect("a summary")
}

/// Issue 11 item 4: a reply line said `time=4.535 ms` while the summary's max said 4.538 (a
/// histogram bucket's edge). The summary's min and max are replies that were printed.
#[test]
fn summary_min_and_max_are_round_trips_that_were_printed() {
    let (code, records, _) = ping(&["loop:", "-c", "40", "-i", "0"]);
    assert_eq!(code, Some(0));
    let rtts: Vec<f64> = records
        .iter()
        .filter(|record| record["type"] == "reply")
        .map(|record| record["rtt_us"].as_f64().unwrap())
        .collect();
    assert_eq!(rtts.len(), 40);
    let summary = summary(&records);
    let min = rtts.iter().copied().fold(f64::INFINITY, f64::min);
    let max = rtts.iter().copied().fold(0.0, f64::max);
    assert_eq!(summary["rtt_min_us"].as_f64(), Some(min));
    assert_eq!(summary["rtt_max_us"].as_f64(), Some(max));
    for key in ["rtt_p50_us", "rtt_p90_us", "rtt_p99_us", "rtt_p999_us"] {
        let p = summary[key].as_f64().unwrap();
        assert!((min..=max).contains(&p), "{key} {p} outside {min}..={max}");
    }
}

/// Issue 12 item 2: `ping 'sim:?delay=5s' -c 1 -W 100ms` waited for the reply and reported a
/// 5000 ms round trip. It is a loss, reported before the reply could have come.
#[test]
fn a_reply_later_than_the_timeout_is_a_loss_reported_without_waiting_for_it() {
    let (code, records, _) = ping(&["sim:?delay=5s", "-c", "1", "-W", "100ms"]);
    assert_eq!(code, Some(1));
    assert!(records.iter().all(|record| record["type"] != "reply"));
    let summary = summary(&records);
    assert_eq!(summary["transmitted"], 1);
    assert_eq!(summary["received"], 0);
    assert_eq!(summary["loss_percent"], 100.0);
    assert!(summary["elapsed_s"].as_f64().unwrap() < 5.0, "{summary}");
}

/// Issue 12 item 8: `ping loop: -w 5124095h` wrapped around to "0 packets transmitted", and
/// huge -W/-i overflowed the clock. They are refused with one line and exit 2.
#[test]
fn durations_too_long_to_be_meant_exit_2() {
    for args in [
        ["loop:", "-w", "5124095h"],
        ["loop:", "-W", "10000000000000000000s"],
        ["loop:", "-i", "10000000000000000000s"],
    ] {
        let (code, records, stderr) = ping(&args);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(records.is_empty(), "{args:?}");
        let first = stderr.lines().next().unwrap_or_default();
        assert!(first.starts_with("loopscope: error: "), "{stderr}");
        assert!(first.contains("too large"), "{stderr}");
    }
}
