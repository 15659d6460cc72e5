//! The latency test over the simulated audio channel, against the delay, polarity, noise and
//! drift the channel was told to apply.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use loopscope_link::transport::audio;
use loopscope_measure::audio_latency::{self, LatencyOptions, LatencySummary, TestSignal};

fn measure(endpoint: &str, count: u64) -> (LatencySummary, Vec<audio_latency::LatencyReading>) {
    let link = audio::open(endpoint).unwrap();
    let mut readings = Vec::new();
    let summary = audio_latency::run(
        link,
        &LatencyOptions {
            count: Some(count),
            level_dbfs: -6.0,
        },
        Arc::new(AtomicBool::new(false)),
        &mut |r| readings.push(r.clone()),
    )
    .unwrap();
    (summary, readings)
}

fn valid_delays(readings: &[audio_latency::LatencyReading]) -> Vec<f64> {
    readings.iter().filter_map(|r| r.delay_frames).collect()
}

#[test]
fn fractional_delays_across_the_range_within_a_hundredth_of_a_frame() {
    for delay in [0.5, 123.456, 40_000.25] {
        let (summary, readings) = measure(&format!("audiosim:?delay={delay}"), 3);
        assert!(summary.passed, "{summary:?}");
        let delays = valid_delays(&readings);
        assert_eq!(delays.len(), 3, "{readings:?}");
        for got in delays {
            assert!((got - delay).abs() < 0.01, "set {delay}, measured {got}");
        }
        assert_eq!(summary.polarity, Some("normal"));
        assert!(summary.gain_db.unwrap().abs() < 0.01, "{summary:?}");
        let ms = summary.delay_ms.unwrap();
        assert!((ms - delay / 48.0).abs() < 0.01 / 48.0);
    }
}

#[test]
fn detects_inversion_and_gain() {
    let (summary, _) = measure("audiosim:?delay=777.7&invert=1&gain_db=-12", 2);
    assert_eq!(summary.polarity, Some("inverted"));
    assert!((summary.delay_frames.unwrap() - 777.7).abs() < 0.01);
    assert!(
        (summary.gain_db.unwrap() + 12.0).abs() < 0.01,
        "{summary:?}"
    );
    let (summary, _) = measure("audiosim:?delay=777.7&gain_db=-12", 2);
    assert_eq!(summary.polarity, Some("normal"));
}

#[test]
fn at_40_db_snr_within_five_hundredths_of_a_frame() {
    // The noise level is set 40 dB below the test signal's RMS, measured over a period of the
    // signal itself.
    let signal = TestSignal::new(-6.0);
    let mean_square = (0..audio_latency::WINDOW as u64)
        .map(|n| (signal.frame(n) as f64).powi(2))
        .sum::<f64>()
        / audio_latency::WINDOW as f64;
    let signal_dbfs = 10.0 * (2.0 * mean_square).log10();
    for (seed, delay) in [(1, 123.456), (2, 4321.9), (3, 40_000.25)] {
        let (summary, readings) = measure(
            &format!(
                "audiosim:?delay={delay}&noise_db={}&seed={seed}",
                signal_dbfs - 40.0
            ),
            5,
        );
        assert!(summary.passed, "{summary:?}");
        for got in valid_delays(&readings) {
            assert!((got - delay).abs() < 0.05, "set {delay}, measured {got}");
        }
        let snr = summary.snr_db.unwrap();
        assert!((snr - 40.0).abs() < 0.5, "snr {snr}");
    }
}

#[test]
fn drift_within_five_ppm() {
    for drift in [50.0, -120.0] {
        let (summary, _) = measure(&format!("audiosim:?delay=1000&drift_ppm={drift}"), 12);
        let got = summary.drift_ppm.unwrap();
        assert!((got - drift).abs() < 5.0, "set {drift} ppm, measured {got}");
    }
    let (summary, _) = measure("audiosim:?delay=1000", 6);
    assert!(summary.drift_ppm.unwrap().abs() < 0.01);
}

#[test]
fn no_signal_is_never_a_delay() {
    for endpoint in [
        "audiosim:?delay=100&gain_db=-200",
        "audiosim:?delay=100&gain_db=-200&noise_db=-20",
    ] {
        let (summary, readings) = measure(endpoint, 2);
        assert!(!summary.passed, "{endpoint}: {summary:?}");
        assert_eq!(summary.delay_frames, None);
        assert_eq!(summary.delay_ms, None);
        assert!(summary.error.as_deref().unwrap().starts_with("no signal"));
        assert!(!readings.is_empty());
        assert!(
            readings.iter().all(|r| r.status == "no_signal"),
            "{readings:?}"
        );
    }
}
