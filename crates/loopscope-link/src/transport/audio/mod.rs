//! Audio links: a sample stream in place of a byte stream.
//!
//! An audio path is clocked: the device plays and records one period of frames at a time
//! whether or not anyone has something to say, and what comes back is a changed copy of what
//! went out (delayed, scaled, noisy, perhaps inverted, on a slightly different clock). That does
//! not fit the byte [`crate::Link`] trait (`send` a buffer, `recv` a buffer), so audio links have
//! their own trait, shaped like every pro-audio API (JACK, CoreAudio, ALSA mmap): the link calls
//! a [`AudioProcessor`] once per period with the frames to play and the frames recorded.
//!
//! - [`sim`]: `audiosim:?delay=123.456&noise_db=-60&gain_db=-6&invert=1&drift_ppm=50`, a
//!   simulated channel (fractional delay by windowed-sinc interpolation, seeded noise).
//! - [`wav`]: `wav:OUT.wav,IN.wav`, play into a file and analyse a recording made elsewhere.
//! - `jack`: `jack:?connect=loop`, a JACK client, with the `jack` cargo feature (building it
//!   needs libjack's pkg-config file; libjack itself is loaded at run time).
//! - `alsa`: `alsa:DEVICE?rate=&channels=&format=&period=&periods=`, an ALSA PCM device, with
//!   the `alsa` cargo feature (building it needs libasound2-dev).
//!
//! Tests run over an audio link in `loopscope-measure` (`audio_latency`); the modem adapter
//! ([`crate::adapter::modem`]) turns an audio link into a byte link.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use crate::endpoint::{Endpoint, EndpointError};

#[cfg(feature = "alsa")]
pub mod alsa;
pub mod interpolate;
#[cfg(feature = "jack")]
pub mod jack;
pub mod sim;
pub mod wav;

/// The sample rates every audio link accepts. Below 8 kHz the test tones and the modem's
/// carriers no longer fit; above 384 kHz no converter exists.
pub const RATES: std::ops::RangeInclusive<u32> = 8_000..=384_000;

/// The endpoint schemes that name audio links.
pub const SCHEMES: [&str; 4] = ["audiosim", "wav", "jack", "alsa"];

/// True when `scheme` names an audio link rather than a byte link.
pub fn is_audio_scheme(scheme: &str) -> bool {
    SCHEMES.contains(&scheme)
}

/// How the link's clock relates to the caller's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Clocking {
    /// A real device or server: periods come on a real-time thread at the sample rate, and the
    /// processor must never block in them.
    RealTime,
    /// A simulated or file link: there is no clock, the link runs as fast as the processor lets
    /// it, and the processor may block (time stands still meanwhile). What is rendered comes
    /// back at most `latency_bound_frames` later.
    Offline {
        /// The most frames after which what is rendered comes back.
        latency_bound_frames: u64,
    },
}

/// What a processor learns when the stream starts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StreamInfo {
    /// Frames per second.
    pub rate: u32,
    /// Frames per period (what one `render`/`capture` call carries at most).
    pub period: u32,
    /// Whether the link has a clock of its own.
    pub clocking: Clocking,
}

/// Whether the run goes on after a period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Keep going.
    Continue,
    /// The processor has what it needs: end the run.
    Stop,
}

/// What runs over an audio link: a test signal generator and analyser, or a modem.
///
/// Samples are mono `f32` with full scale ±1.0. `render` and `capture` each see one unbroken
/// stream: frame `n` of all `render` calls is played at the same device time as frame `n` of all
/// `capture` calls is recorded, so a delay measured in frames is the round trip.
pub trait AudioProcessor: Send {
    /// Called once before the first period.
    fn start(&mut self, info: &StreamInfo);
    /// Fills `output` with the next frames to play.
    fn render(&mut self, output: &mut [f32]);
    /// Takes the next frames recorded.
    fn capture(&mut self, input: &[f32]) -> Flow;
    /// The streams broke and were restarted (an xrun): what comes next may be delayed
    /// differently from what came before. Frame counting goes on as if nothing happened.
    fn discontinuity(&mut self) {}
}

/// The latency a device or server says it adds, in frames (JACK's port latency ranges).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ReportedLatency {
    /// Frames the playback side adds.
    pub playback_frames: u32,
    /// Frames the capture side adds.
    pub capture_frames: u32,
}

impl ReportedLatency {
    /// Both sides together: what a loop through the device adds.
    pub fn total_frames(&self) -> u32 {
        self.playback_frames + self.capture_frames
    }
}

/// Why a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunEnd {
    /// The processor returned [`Flow::Stop`].
    Done,
    /// The stop flag was raised (Ctrl-C).
    Stopped,
    /// A file link's recording ended.
    InputEnded,
    /// The audio server went away.
    ServerGone,
}

/// How a run went.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RunReport {
    /// Why it ended.
    pub end: RunEnd,
    /// Frames played.
    pub frames_played: u64,
    /// Frames recorded.
    pub frames_captured: u64,
    /// Periods the server reported as over- or underrun (each breaks the frame mapping).
    pub xruns: u64,
    /// What the device says its buffering adds, where it says it.
    pub reported_latency: Option<ReportedLatency>,
}

/// An audio path that gives back (a changed copy of) what is played into it.
pub trait AudioLink: Send {
    /// The endpoint as a user would write it, for reports.
    fn describe(&self) -> String;
    /// Frames per second.
    fn rate(&self) -> u32;
    /// Runs the stream until the processor stops, the stop flag rises or the link ends.
    /// Environment errors (no server, unreadable file) surface as [`AudioError`] before the
    /// first period. The processor is moved in because a real-time link calls it from the
    /// server's thread; it hands its results out through channels of its own.
    fn run(
        self: Box<Self>,
        processor: Box<dyn AudioProcessor>,
        stop: Arc<AtomicBool>,
    ) -> Result<RunReport, AudioError>;
}

/// Errors of audio links: all of them are usage or environment errors (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    /// The endpoint string is wrong.
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    /// The scheme is not an audio link.
    #[error(
        "'{0}:' is not an audio link (audio links: audiosim:, wav:OUT.wav,IN.wav, jack:, alsa:DEVICE)"
    )]
    NotAudio(String),
    #[error("{path}: {why}")]
    /// A WAV file cannot be used.
    Wav {
        /// The file.
        path: String,
        /// Why.
        why: String,
    },
    /// The JACK server refused or is not there.
    #[error("JACK: {0}")]
    Jack(String),
    /// The ALSA device refused or is not there.
    #[error("ALSA: {0}")]
    Alsa(String),
    /// A worker thread could not start or failed.
    #[error("{0}")]
    Thread(String),
}

/// Opens the audio link an endpoint string names.
pub fn open(endpoint: &str) -> Result<Box<dyn AudioLink>, AudioError> {
    open_endpoint(&Endpoint::parse(endpoint)?)
}

/// Opens a parsed audio endpoint; the one place that maps audio schemes to their modules.
pub fn open_endpoint(endpoint: &Endpoint) -> Result<Box<dyn AudioLink>, AudioError> {
    match endpoint.scheme.as_str() {
        "audiosim" => Ok(Box::new(sim::AudioSim::from_endpoint(endpoint)?)),
        "wav" => Ok(Box::new(wav::WavLink::from_endpoint(endpoint)?)),
        #[cfg(feature = "jack")]
        "jack" => Ok(Box::new(jack::JackLink::from_endpoint(endpoint)?)),
        #[cfg(not(feature = "jack"))]
        "jack" => Err(AudioError::Jack(
            "this loopscope was built without JACK support (build with --features jack, which needs libjack-jackd2-dev)".into(),
        )),
        #[cfg(feature = "alsa")]
        "alsa" => Ok(Box::new(alsa::AlsaLink::from_endpoint(endpoint)?)),
        #[cfg(not(feature = "alsa"))]
        "alsa" => Err(AudioError::Alsa(
            "this loopscope was built without ALSA support (build with --features alsa, which needs libasound2-dev)".into(),
        )),
        other => Err(AudioError::NotAudio(other.to_string())),
    }
}

/// Parses the `rate=` option shared by every audio link.
pub(crate) fn parse_rate(endpoint: &Endpoint, default: u32) -> Result<u32, EndpointError> {
    let rate = endpoint.parsed_option::<u32>("rate")?.unwrap_or(default);
    if !RATES.contains(&rate) {
        return Err(endpoint.bad_value(
            "rate",
            &rate.to_string(),
            format!(
                "unsupported sample rate (supported: {} to {} Hz)",
                RATES.start(),
                RATES.end()
            ),
        ));
    }
    Ok(rate)
}

/// Parses an on/off option written `1`/`0`, `true`/`false`, `yes`/`no` or bare (`invert`).
pub(crate) fn parse_flag(endpoint: &Endpoint, key: &str) -> Result<bool, EndpointError> {
    match endpoint.option(key) {
        None => Ok(false),
        Some("" | "1" | "true" | "yes" | "on") => Ok(true),
        Some("0" | "false" | "no" | "off") => Ok(false),
        Some(other) => Err(endpoint.bad_value(key, other, "expected 1 or 0")),
    }
}
