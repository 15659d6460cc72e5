//! `audio-latency`: the round-trip delay of an audio path, to a thousandth of a frame.
//!
//! The link plays the 13-tone test signal of [`mtdm`] and the analyser reads the recording: one
//! reading every 8192 frames over the last 65,536. A reading gives the delay in frames and
//! milliseconds, the polarity, the path's gain and the recorded level; successive readings give
//! the clock drift between playback and capture. A window without the test signal in it gives
//! "no signal", never a delay: a run that never saw the signal fails (exit 1).

use std::io::{self, Write};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::{self, SyncSender, TrySendError};

use loopscope_link::transport::audio::{
    AudioError, AudioLink, AudioProcessor, Clocking, Flow, ReportedLatency, RunEnd, StreamInfo,
};
use loopscope_report::Record;
use serde::Serialize;

pub mod mtdm;

pub use mtdm::{Analyzer, HOP, Measurement, NoReading, Reading, TestSignal, WINDOW};

/// What to measure.
#[derive(Debug, Clone, PartialEq)]
pub struct LatencyOptions {
    /// Stop after this many delays; `None`: until stopped.
    pub count: Option<u64>,
    /// Peak level of the test signal, dBFS.
    pub level_dbfs: f64,
}

impl Default for LatencyOptions {
    fn default() -> Self {
        LatencyOptions {
            count: Some(10),
            level_dbfs: -6.0,
        }
    }
}

/// Readings without a delay allowed beyond `count` before the run gives up: enough for a
/// delay of the whole range to arrive and a window to fill with it.
pub const SETTLE_READINGS: u64 = (WINDOW / HOP) as u64 + 1;

/// One reading, as reported.
#[derive(Debug, Clone, Serialize)]
pub struct LatencyReading {
    /// Stream time of the window's centre, seconds.
    pub t_s: f64,
    /// `"ok"`, or why there is no delay: `"no_signal"`, `"settling"`, `"inconsistent"`.
    pub status: &'static str,
    /// The round trip in frames, to a thousandth of a frame (`None` without a delay).
    pub delay_frames: Option<f64>,
    /// The same in milliseconds at the stream's rate.
    pub delay_ms: Option<f64>,
    /// `"normal"` or `"inverted"`.
    pub polarity: Option<&'static str>,
    /// Received tone amplitude over sent, dB: the gain of the path.
    pub gain_db: Option<f64>,
    /// RMS level of the received test signal, dBFS (AES17).
    pub level_dbfs: Option<f64>,
    /// Test signal over everything else in the window, dB.
    pub snr_db: Option<f64>,
    /// From the readings so far without a gap; `None` until three of them.
    pub drift_ppm: Option<f64>,
}

impl Record for LatencyReading {
    fn kind(&self) -> &'static str {
        "reading"
    }

    fn write_human(&self, out: &mut dyn Write) -> io::Result<()> {
        match (self.delay_frames, self.delay_ms) {
            (Some(frames), Some(ms)) => {
                write!(
                    out,
                    "{frames:12.3} frames {ms:9.3} ms  {}  level {:6.1} dBFS  snr {:5.1} dB",
                    self.polarity.unwrap_or("?"),
                    self.level_dbfs.unwrap_or(f64::NAN),
                    self.snr_db.unwrap_or(f64::NAN),
                )?;
                if let Some(drift) = self.drift_ppm {
                    write!(out, "  drift {drift:+8.2} ppm")?;
                }
                writeln!(out)
            }
            _ => writeln!(out, "{:>12} ({})", "-", self.status.replace('_', " ")),
        }
    }
}

/// The result of a run. Field names carry units and are a contract with users' scripts.
#[derive(Debug, Clone, Serialize)]
pub struct LatencySummary {
    /// The link, as the user wrote it.
    pub link: String,
    /// The stream's sample rate.
    pub rate_hz: u32,
    /// Readings made (one every 8192 frames once a window is full).
    pub readings: u64,
    /// Readings that gave a delay.
    pub valid_readings: u64,
    /// The last delay measured, frames.
    pub delay_frames: Option<f64>,
    /// The last delay, in milliseconds.
    pub delay_ms: Option<f64>,
    /// Lowest delay over the run, frames.
    pub delay_min_frames: Option<f64>,
    /// Highest delay over the run, frames.
    pub delay_max_frames: Option<f64>,
    /// Polarity of the last reading: `"normal"` or `"inverted"` (a path that inverts the signal).
    pub polarity: Option<&'static str>,
    /// Gain of the path at the last reading, dB.
    pub gain_db: Option<f64>,
    /// Level of the received test signal at the last reading, dBFS (AES17).
    pub level_dbfs: Option<f64>,
    /// Signal-to-noise ratio at the last reading, dB.
    pub snr_db: Option<f64>,
    /// Clock drift between playback and capture, parts per million (`None` until three
    /// readings without a gap).
    pub drift_ppm: Option<f64>,
    /// What the device or server says its buffering adds (JACK port latencies, the ALSA
    /// buffer), frames.
    pub reported_latency_frames: Option<u32>,
    /// The measured delay beyond `reported_latency_frames` (as `alsa_delay -E` reports it):
    /// what the buffering does not explain.
    pub excess_frames: Option<f64>,
    /// Buffer overruns and underruns the device or server reported.
    pub xruns: u64,
    /// Frames the link played.
    pub frames_played: u64,
    /// Frames the link recorded.
    pub frames_captured: u64,
    /// How the stream ended.
    pub end: RunEnd,
    /// `"no signal"` and the like when no reading gave a delay.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// A delay was measured (see `error` otherwise).
    pub passed: bool,
}

impl Record for LatencySummary {
    fn kind(&self) -> &'static str {
        "summary"
    }

    fn write_human(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(
            out,
            "audio latency over {} at {} Hz",
            self.link, self.rate_hz
        )?;
        match (self.delay_frames, self.delay_ms) {
            (Some(frames), Some(ms)) => {
                writeln!(out, "  round trip   {frames:.3} frames ({ms:.3} ms)")?;
                if let (Some(lo), Some(hi)) = (self.delay_min_frames, self.delay_max_frames) {
                    writeln!(
                        out,
                        "  range        {lo:.3} to {hi:.3} frames over {} readings",
                        self.valid_readings
                    )?;
                }
                writeln!(out, "  polarity     {}", self.polarity.unwrap_or("?"))?;
                if let (Some(gain), Some(level), Some(snr)) =
                    (self.gain_db, self.level_dbfs, self.snr_db)
                {
                    writeln!(
                        out,
                        "  level        {level:.1} dBFS (path gain {gain:+.2} dB, snr {snr:.1} dB)"
                    )?;
                }
                match self.drift_ppm {
                    Some(drift) => writeln!(out, "  clock drift  {drift:+.2} ppm")?,
                    None => writeln!(out, "  clock drift  (needs three readings in a row)")?,
                }
                if let (Some(reported), Some(excess)) =
                    (self.reported_latency_frames, self.excess_frames)
                {
                    writeln!(
                        out,
                        "  reported     {reported} frames by the server; excess {excess:.3} frames"
                    )?;
                }
            }
            _ => writeln!(
                out,
                "  {}",
                self.error.as_deref().unwrap_or("no delay measured")
            )?,
        }
        if self.xruns > 0 {
            writeln!(
                out,
                "  xruns        {} (each may shift the delay)",
                self.xruns
            )?;
        }
        Ok(())
    }
}

/// Accumulates readings into the summary and the drift estimate.
struct Tally {
    rate: u32,
    readings: u64,
    valid: u64,
    last: Option<(Measurement, Option<f64>)>,
    min: f64,
    max: f64,
    /// Consecutive valid readings, (centre frame, unwrapped delay), for the drift fit.
    run: Vec<(f64, f64)>,
    saw_settling: bool,
    saw_inconsistent: bool,
}

/// The drift fit uses at most this many readings (about 10 s at 48 kHz).
const DRIFT_READINGS: usize = 64;

impl Tally {
    fn new(rate: u32) -> Self {
        Tally {
            rate,
            readings: 0,
            valid: 0,
            last: None,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            run: Vec::new(),
            saw_settling: false,
            saw_inconsistent: false,
        }
    }

    fn add(&mut self, reading: &Reading) -> LatencyReading {
        self.readings += 1;
        let t_s = reading.centre_frame as f64 / self.rate as f64;
        let measurement = match reading.result {
            Ok(measurement) => measurement,
            Err(why) => {
                self.run.clear();
                match why {
                    NoReading::Settling => self.saw_settling = true,
                    NoReading::Inconsistent => self.saw_inconsistent = true,
                    NoReading::NoSignal => {}
                }
                return LatencyReading {
                    t_s,
                    status: match why {
                        NoReading::NoSignal => "no_signal",
                        NoReading::Settling => "settling",
                        NoReading::Inconsistent => "inconsistent",
                    },
                    delay_frames: None,
                    delay_ms: None,
                    polarity: None,
                    gain_db: None,
                    level_dbfs: None,
                    snr_db: None,
                    drift_ppm: None,
                };
            }
        };
        self.valid += 1;
        self.min = self.min.min(measurement.delay_frames);
        self.max = self.max.max(measurement.delay_frames);
        // A drifting delay may cross the end of the range; unwrap it against the previous one.
        let window = WINDOW as f64;
        let mut delay = measurement.delay_frames;
        if let Some(&(_, previous)) = self.run.last() {
            delay += ((previous - delay) / window).round() * window;
        }
        self.run.push((reading.centre_frame as f64, delay));
        if self.run.len() > DRIFT_READINGS {
            self.run.remove(0);
        }
        let drift_ppm = drift_ppm(&self.run);
        self.last = Some((measurement, drift_ppm));
        LatencyReading {
            t_s,
            status: "ok",
            delay_frames: Some(measurement.delay_frames),
            delay_ms: Some(measurement.delay_frames * 1000.0 / self.rate as f64),
            polarity: Some(polarity(measurement.inverted)),
            gain_db: Some(measurement.gain_db),
            level_dbfs: Some(measurement.level_dbfs),
            snr_db: Some(measurement.snr_db),
            drift_ppm,
        }
    }
}

fn polarity(inverted: bool) -> &'static str {
    if inverted { "inverted" } else { "normal" }
}

/// The least-squares slope of delay over frame index, in millionths; needs three points.
fn drift_ppm(points: &[(f64, f64)]) -> Option<f64> {
    if points.len() < 3 {
        return None;
    }
    let count = points.len() as f64;
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / count;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / count;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (x, y) in points {
        sxy += (x - mean_x) * (y - mean_y);
        sxx += (x - mean_x) * (x - mean_x);
    }
    (sxx > 0.0).then(|| sxy / sxx * 1e6)
}

/// Plays the test signal and analyses what comes back, inside the link's period callback.
struct LatencyProcessor {
    signal: TestSignal,
    analyzer: Analyzer,
    rendered: u64,
    readings: SyncSender<Reading>,
    blocking: bool,
    /// Stop after this many readings with a delay, or this many readings in all.
    want_valid: Option<u64>,
    give_up_after: Option<u64>,
    valid: u64,
    total: u64,
    done: bool,
}

impl AudioProcessor for LatencyProcessor {
    fn start(&mut self, info: &StreamInfo) {
        self.blocking = matches!(info.clocking, Clocking::Offline { .. });
    }

    fn render(&mut self, output: &mut [f32]) {
        self.signal.render(self.rendered, output);
        self.rendered += output.len() as u64;
    }

    fn discontinuity(&mut self) {
        self.analyzer.discontinuity();
    }

    fn capture(&mut self, input: &[f32]) -> Flow {
        let Self {
            analyzer,
            readings,
            blocking,
            valid,
            total,
            done,
            want_valid,
            give_up_after,
            ..
        } = self;
        analyzer.push(input, &mut |reading| {
            if *done {
                return;
            }
            *total += 1;
            if reading.result.is_ok() {
                *valid += 1;
            }
            // A real-time thread must not wait: if the reader is behind, the reading is
            // dropped (the channel holds minutes of them, so this means the reader is stuck).
            let delivered = if *blocking {
                readings.send(reading).is_ok()
            } else {
                !matches!(
                    readings.try_send(reading),
                    Err(TrySendError::Disconnected(_))
                )
            };
            if !delivered
                || want_valid.is_some_and(|want| *valid >= want)
                || give_up_after.is_some_and(|limit| *total >= limit)
            {
                *done = true;
            }
        });
        if self.done {
            Flow::Stop
        } else {
            Flow::Continue
        }
    }
}

/// Runs the latency test over `link`, calling `on_reading` for every reading as it comes.
pub fn run(
    link: Box<dyn AudioLink>,
    options: &LatencyOptions,
    stop: Arc<AtomicBool>,
    on_reading: &mut dyn FnMut(&LatencyReading),
) -> Result<LatencySummary, AudioError> {
    let rate = link.rate();
    let description = link.describe();
    let signal = TestSignal::new(options.level_dbfs);
    let (tx, rx) = mpsc::sync_channel(1024);
    let processor = LatencyProcessor {
        analyzer: Analyzer::new(&signal),
        signal,
        rendered: 0,
        readings: tx,
        blocking: true,
        want_valid: options.count,
        give_up_after: options.count.map(|count| count + SETTLE_READINGS),
        valid: 0,
        total: 0,
        done: false,
    };
    let runner = std::thread::Builder::new()
        .name("audio".into())
        .spawn(move || link.run(Box::new(processor), stop))
        .map_err(|e| AudioError::Thread(format!("cannot start the audio thread: {e}")))?;
    let mut tally = Tally::new(rate);
    for reading in rx {
        let reported = tally.add(&reading);
        on_reading(&reported);
    }
    let report = runner
        .join()
        .map_err(|_| AudioError::Thread("the audio thread panicked".into()))??;
    Ok(summarise(&tally, description, rate, &report))
}

fn summarise(
    tally: &Tally,
    link: String,
    rate: u32,
    report: &loopscope_link::transport::audio::RunReport,
) -> LatencySummary {
    let last = tally.last;
    let delay = last.map(|(m, _)| m.delay_frames);
    let reported = report
        .reported_latency
        .map(|r: ReportedLatency| r.total_frames());
    let error = if last.is_some() {
        None
    } else if tally.readings == 0 {
        Some(format!(
            "no signal: the run ended before a whole window of {WINDOW} frames was recorded"
        ))
    } else if tally.saw_inconsistent {
        Some("no signal: the tones' phases disagree (too much noise, or a path that is not linear-phase)".into())
    } else if tally.saw_settling {
        Some("no signal: the level never settled".into())
    } else {
        Some("no signal: the test tones were not found in the recording".into())
    };
    LatencySummary {
        link,
        rate_hz: rate,
        readings: tally.readings,
        valid_readings: tally.valid,
        delay_frames: delay,
        delay_ms: delay.map(|d| d * 1000.0 / rate as f64),
        delay_min_frames: last.map(|_| tally.min),
        delay_max_frames: last.map(|_| tally.max),
        polarity: last.map(|(m, _)| polarity(m.inverted)),
        gain_db: last.map(|(m, _)| m.gain_db),
        level_dbfs: last.map(|(m, _)| m.level_dbfs),
        snr_db: last.map(|(m, _)| m.snr_db),
        drift_ppm: last.and_then(|(_, drift)| drift),
        reported_latency_frames: reported,
        excess_frames: delay.zip(reported).map(|(d, r)| d - r as f64),
        xruns: report.xruns,
        frames_played: report.frames_played,
        frames_captured: report.frames_captured,
        end: report.end,
        passed: error.is_none(),
        error,
    }
}
