//! `audiosim:` — a simulated audio channel.
//!
//! `audiosim:?delay=123.456&noise_db=-60&gain_db=-6&invert=1&drift_ppm=50&rate=48000`
//!
//! Recorded frame `n` is the played signal at time `n / (1 + drift) - delay` (samples),
//! interpolated between samples by a windowed sinc, times the gain (negated with `invert`), plus
//! white Gaussian noise from a seeded generator. So:
//!
//! - `delay` is the round trip in frames (fractional, 0 up to 10,000,000);
//! - `drift_ppm` is how much faster the recording clock runs than the playback clock, so the
//!   delay grows by `drift_ppm` millionths of a frame per frame;
//! - `noise_db` is the noise's RMS level in dBFS, where 0 dBFS is the RMS of a full-scale sine
//!   (AES17), so a full-scale sine over `noise_db=-40` has a signal-to-noise ratio of 40 dB;
//! - `gain_db` scales the signal (not the noise);
//! - `period` is how many frames each call carries (default 256), `seed` picks the noise.
//!
//! There is no clock: the channel runs as fast as its processor, which may block.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rand::SeedableRng;
use rand_distr::{Distribution, Normal};
use rand_xoshiro::Xoshiro256PlusPlus;

use super::interpolate::{HALF_TAPS, SincInterpolator};
use super::{
    AudioError, AudioLink, AudioProcessor, Clocking, Flow, RunEnd, RunReport, StreamInfo,
    parse_flag, parse_rate,
};
use crate::endpoint::{Endpoint, EndpointError};

const OPTIONS: [&str; 8] = [
    "delay",
    "noise_db",
    "gain_db",
    "invert",
    "drift_ppm",
    "rate",
    "period",
    "seed",
];
const MAX_DELAY: f64 = 10_000_000.0;
const MAX_DRIFT_PPM: f64 = 10_000.0;

/// What the simulated channel does to the signal.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AudioSimConfig {
    /// The channel's delay, in frames (fractions allowed).
    pub delay_frames: f64,
    /// Noise RMS in dBFS (AES17); `None`: no noise.
    pub noise_dbfs: Option<f64>,
    /// Gain in dB (negative: quieter).
    pub gain_db: f64,
    /// Invert the polarity.
    pub invert: bool,
    /// Clock drift between playback and capture, in parts per million.
    pub drift_ppm: f64,
    /// Frames per second.
    pub rate: u32,
    /// Frames per period.
    pub period: u32,
    /// Seed of the noise: the same seed, the same noise.
    pub seed: u64,
}

impl Default for AudioSimConfig {
    fn default() -> Self {
        AudioSimConfig {
            delay_frames: 0.0,
            noise_dbfs: None,
            gain_db: 0.0,
            invert: false,
            drift_ppm: 0.0,
            rate: 48_000,
            period: 256,
            seed: 1,
        }
    }
}

impl AudioSimConfig {
    /// Reads the options of an `audiosim:` endpoint.
    pub fn from_endpoint(endpoint: &Endpoint) -> Result<Self, EndpointError> {
        endpoint.reject_unknown_options(&OPTIONS)?;
        if !endpoint.target.is_empty() {
            return Err(endpoint.invalid("audiosim: takes no target (write audiosim:?delay=...)"));
        }
        let finite = |key: &str, range: std::ops::RangeInclusive<f64>, default: f64| {
            let value = endpoint.parsed_option::<f64>(key)?.unwrap_or(default);
            if !value.is_finite() || !range.contains(&value) {
                return Err(endpoint.bad_value(
                    key,
                    &value.to_string(),
                    format!("must be within {} to {}", range.start(), range.end()),
                ));
            }
            Ok(value)
        };
        let period = endpoint.parsed_option::<u32>("period")?.unwrap_or(256);
        if !(16..=65_536).contains(&period) {
            return Err(endpoint.bad_value(
                "period",
                &period.to_string(),
                "must be within 16 to 65536 frames",
            ));
        }
        Ok(AudioSimConfig {
            delay_frames: finite("delay", 0.0..=MAX_DELAY, 0.0)?,
            noise_dbfs: match endpoint.option("noise_db") {
                None => None,
                Some(_) => Some(finite("noise_db", -200.0..=20.0, 0.0)?),
            },
            gain_db: finite("gain_db", -200.0..=40.0, 0.0)?,
            invert: parse_flag(endpoint, "invert")?,
            drift_ppm: finite("drift_ppm", -MAX_DRIFT_PPM..=MAX_DRIFT_PPM, 0.0)?,
            rate: parse_rate(endpoint, 48_000)?,
            period,
            seed: endpoint.parsed_option::<u64>("seed")?.unwrap_or(1),
        })
    }
}

/// The simulated channel.
pub struct AudioSim {
    config: AudioSimConfig,
    description: String,
}

impl AudioSim {
    /// A simulated channel doing what `config` says.
    pub fn new(config: AudioSimConfig) -> Self {
        let description = format!(
            "audiosim:?delay={}&rate={}{}{}{}{}",
            config.delay_frames,
            config.rate,
            config
                .noise_dbfs
                .map(|db| format!("&noise_db={db}"))
                .unwrap_or_default(),
            if config.gain_db != 0.0 {
                format!("&gain_db={}", config.gain_db)
            } else {
                String::new()
            },
            if config.invert { "&invert=1" } else { "" },
            if config.drift_ppm != 0.0 {
                format!("&drift_ppm={}", config.drift_ppm)
            } else {
                String::new()
            },
        );
        AudioSim {
            config,
            description,
        }
    }

    /// Reads the options of an `audiosim:` endpoint.
    pub fn from_endpoint(endpoint: &Endpoint) -> Result<Self, EndpointError> {
        Ok(Self::new(AudioSimConfig::from_endpoint(endpoint)?))
    }

    /// What it does.
    pub fn config(&self) -> &AudioSimConfig {
        &self.config
    }
}

/// What has been played, kept from the oldest sample the channel can still need.
struct Played {
    samples: VecDeque<f32>,
    /// Stream index of `samples[0]`.
    first: i64,
}

impl Played {
    fn end(&self) -> i64 {
        self.first + self.samples.len() as i64
    }

    fn get(&self, index: i64) -> f32 {
        if index < self.first {
            // Before the stream started the line was silent; after trimming we never look back
            // this far.
            return 0.0;
        }
        self.samples
            .get((index - self.first) as usize)
            .copied()
            .unwrap_or(0.0)
    }

    fn forget_before(&mut self, index: i64) {
        while self.first < index && !self.samples.is_empty() {
            self.samples.pop_front();
            self.first += 1;
        }
    }
}

impl AudioLink for AudioSim {
    fn describe(&self) -> String {
        self.description.clone()
    }

    fn rate(&self) -> u32 {
        self.config.rate
    }

    fn run(
        self: Box<Self>,
        mut processor: Box<dyn AudioProcessor>,
        stop: Arc<AtomicBool>,
    ) -> Result<RunReport, AudioError> {
        let config = self.config;
        let period = config.period as usize;
        let clock_ratio = 1.0 + config.drift_ppm * 1e-6;
        // Positive drift makes the delay grow; allow for a long run (10^9 frames) of it.
        let growth = (config.drift_ppm.max(0.0) * 1e-6 * 1e9).ceil();
        let latency_bound_frames =
            (config.delay_frames + growth).ceil() as u64 + 2 * HALF_TAPS as u64 + 2 * period as u64;
        processor.start(&StreamInfo {
            rate: config.rate,
            period: config.period,
            clocking: Clocking::Offline {
                latency_bound_frames,
            },
        });

        let interpolator = SincInterpolator::new();
        let gain = 10f64.powf(config.gain_db / 20.0) * if config.invert { -1.0 } else { 1.0 };
        let noise = match config.noise_dbfs {
            Some(db) => Some(
                Normal::new(0.0, 10f64.powf(db / 20.0) / std::f64::consts::SQRT_2).map_err(
                    |e| {
                        AudioError::Endpoint(EndpointError::Invalid {
                            endpoint: self.description.clone(),
                            why: format!("noise_db: {e}"),
                        })
                    },
                )?,
            ),
            None => None,
        };
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(config.seed);
        let mut played = Played {
            samples: VecDeque::new(),
            first: 0,
        };
        let mut out_block = vec![0f32; period];
        let mut in_block = vec![0f32; period];
        let mut captured: u64 = 0;
        let source_time = |n: u64| n as f64 / clock_ratio - config.delay_frames;

        let end = loop {
            if stop.load(Ordering::Relaxed) {
                break RunEnd::Stopped;
            }
            let last_needed =
                source_time(captured + period as u64 - 1).floor() as i64 + HALF_TAPS as i64 + 1;
            while played.end() <= last_needed {
                processor.render(&mut out_block);
                played.samples.extend(out_block.iter().copied());
            }
            for (j, slot) in in_block.iter_mut().enumerate() {
                let t = source_time(captured + j as u64);
                let clean = interpolator.at(t, |i| played.get(i)) as f64;
                let hiss = noise.as_ref().map_or(0.0, |n| n.sample(&mut rng));
                *slot = (gain * clean + hiss) as f32;
            }
            captured += period as u64;
            played.forget_before(source_time(captured).floor() as i64 - HALF_TAPS as i64 - 1);
            if processor.capture(&in_block) == Flow::Stop {
                break RunEnd::Done;
            }
        };
        Ok(RunReport {
            end,
            frames_played: played.end().max(0) as u64,
            frames_captured: captured,
            xruns: 0,
            reported_latency: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::TAU;
    use std::sync::Mutex;

    /// Plays a sine, records what comes back.
    struct SineRecorder {
        cycles_per_sample: f64,
        rendered: u64,
        recorded: Arc<Mutex<Vec<f32>>>,
        want: usize,
    }

    impl AudioProcessor for SineRecorder {
        fn start(&mut self, _: &StreamInfo) {}
        fn render(&mut self, output: &mut [f32]) {
            for slot in output {
                *slot = (0.5 * (TAU * self.cycles_per_sample * self.rendered as f64).sin()) as f32;
                self.rendered += 1;
            }
        }
        fn capture(&mut self, input: &[f32]) -> Flow {
            let mut recorded = self.recorded.lock().unwrap();
            recorded.extend_from_slice(input);
            if recorded.len() >= self.want {
                Flow::Stop
            } else {
                Flow::Continue
            }
        }
    }

    fn record(endpoint: &str, cycles_per_sample: f64, want: usize) -> Vec<f32> {
        let link = AudioSim::from_endpoint(&Endpoint::parse(endpoint).unwrap()).unwrap();
        let recorded = Arc::new(Mutex::new(Vec::new()));
        let processor = SineRecorder {
            cycles_per_sample,
            rendered: 0,
            recorded: Arc::clone(&recorded),
            want,
        };
        let report = Box::new(link)
            .run(Box::new(processor), Arc::new(AtomicBool::new(false)))
            .unwrap();
        assert_eq!(report.end, RunEnd::Done);
        recorded.lock().unwrap().clone()
    }

    /// The recording against the sine computed directly at the delayed, scaled time.
    #[test]
    fn delays_scales_and_inverts_a_sine_exactly() {
        let f = 0.0625;
        let got = record(
            "audiosim:?delay=123.456&gain_db=-6&invert=1&period=100",
            f,
            5000,
        );
        let gain = -(10f64.powf(-6.0 / 20.0));
        for (n, &sample) in got.iter().enumerate().skip(200) {
            let expected = gain * 0.5 * (TAU * f * (n as f64 - 123.456)).sin();
            assert!(
                (sample as f64 - expected).abs() < 2e-5,
                "frame {n}: {sample} vs {expected}"
            );
        }
        // Before the signal arrives the line is silent.
        assert!(got[..60].iter().all(|s| s.abs() < 1e-6));
    }

    #[test]
    fn drift_stretches_time() {
        let f = 0.05;
        let got = record("audiosim:?delay=10&drift_ppm=1000", f, 20_000);
        for (n, &sample) in got.iter().enumerate().skip(100) {
            let t = n as f64 / 1.001 - 10.0;
            let expected = 0.5 * (TAU * f * t).sin();
            assert!((sample as f64 - expected).abs() < 2e-5, "frame {n}");
        }
    }

    #[test]
    fn noise_has_the_level_asked_for_and_the_seed_repeats_it() {
        let got = record("audiosim:?noise_db=-20&gain_db=-200", 0.1, 200_000);
        let rms = (got.iter().map(|s| (*s as f64).powi(2)).sum::<f64>() / got.len() as f64).sqrt();
        let dbfs = 20.0 * (rms * std::f64::consts::SQRT_2).log10();
        assert!((dbfs + 20.0).abs() < 0.1, "{dbfs} dBFS");
        let again = record("audiosim:?noise_db=-20&gain_db=-200", 0.1, 1000);
        assert_eq!(&got[..1000], &again[..1000]);
        let other = record("audiosim:?noise_db=-20&gain_db=-200&seed=2", 0.1, 1000);
        assert_ne!(&got[..1000], &other[..1000]);
    }

    #[test]
    fn rejects_bad_options() {
        for bad in [
            "audiosim:?rate=1000",
            "audiosim:?delay=-1",
            "audiosim:?delay=nan",
            "audiosim:?bogus=1",
            "audiosim:?invert=maybe",
            "audiosim:?period=3",
            "audiosim:x",
        ] {
            let endpoint = Endpoint::parse(bad).unwrap();
            assert!(AudioSimConfig::from_endpoint(&endpoint).is_err(), "{bad}");
        }
    }
}
