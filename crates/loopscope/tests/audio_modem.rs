//! `bert --modem` and `ping --modem` over the simulated audio channel.

use assert_cmd::Command;

fn bert_summary(noise_db: f64) -> serde_json::Value {
    let output = Command::cargo_bin("loopscope")
        .unwrap()
        .args([
            "--json",
            "bert",
            &format!("audiosim:?delay=100.5&noise_db={noise_db}&seed=3"),
            "--modem",
            "--bits",
            "16000",
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .find(|v| v["type"] == "summary")
        .expect("a summary")
}

/// The carrier peaks at −6 dBFS; the noise is white over the whole band. As the noise falls the
/// BER falls, and well below the carrier the path keeps every bit.
#[test]
fn ber_through_the_modem_falls_as_the_noise_falls() {
    let mut bers = Vec::new();
    for noise_db in [-2.0, -4.0, -6.0] {
        let summary = bert_summary(noise_db);
        assert!(
            summary["bits"].as_u64().unwrap() > 4000,
            "{noise_db} dBFS: the checker never kept sync: {summary}"
        );
        bers.push((noise_db, summary["ber"].as_f64().unwrap()));
    }
    eprintln!("noise dBFS, BER: {bers:?}");
    assert!(bers[0].1 > bers[1].1 && bers[1].1 > bers[2].1, "{bers:?}");
    assert!(bers[0].1 > 1e-3, "{bers:?}");

    let quiet = bert_summary(-20.0);
    assert_eq!(quiet["bit_errors"], 0, "{quiet}");
    assert_eq!(quiet["slips"], 0, "{quiet}");
    assert_eq!(quiet["passed"], true, "{quiet}");
    assert!(quiet["bits"].as_u64().unwrap() >= 15_800, "{quiet}");
    assert_eq!(quiet["link_stats"]["payload_rate_bps"], 960);
}

#[test]
fn ping_through_the_modem() {
    let output = Command::cargo_bin("loopscope")
        .unwrap()
        .args([
            "--json",
            "ping",
            "audiosim:?delay=480",
            "--modem",
            "-c",
            "3",
            "-i",
            "0",
            "-s",
            "16",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    let summary = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .find(|v| v["type"] == "summary")
        .expect("a summary");
    assert_eq!(summary["received"], 3, "{summary}");
}

#[test]
fn modem_needs_an_audio_link() {
    let output = Command::cargo_bin("loopscope")
        .unwrap()
        .args(["bert", "loop:", "--modem", "--bits", "100"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("not an audio link"), "{stderr}");
}
