//! `alsa:DEVICE?rate=48000&channels=2&format=s16|s24|s32|f32&period=256&periods=2` — an ALSA
//! PCM device, played and recorded at once (built with the `alsa` cargo feature, which links
//! libasound).
//!
//! DEVICE is any ALSA PCM name: `hw:0,0`, `plughw:Loopback,0`, `default`, or a plugin such as
//! `jack` (libasound2-plugins' PCM that is a JACK client). `capture=DEVICE2` records from
//! another device (default: the same one). The test signal goes out on every output channel and
//! is taken from input channel `in_channel` (1-based, default 1).
//!
//! The loop is `alsa_delay`'s (zita-alsa-pcmi): the playback buffer is filled with `periods`
//! periods of silence, both streams start together (`snd_pcm_link`), and every cycle reads one
//! period from the capture side and writes one period to the playback side. So frame `n` the
//! processor renders is played `periods × period` frames after frame `n` it captures is
//! recorded, and the delay measured includes that buffering, as `alsa_delay`'s does; the report
//! gives the buffering as the device's latency, so the excess over it is the converters' and
//! the cable's (`alsa_delay -E`).

use std::ffi::CString;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use ::alsa::pcm::{Access, Format, HwParams, IO, PCM};
use ::alsa::{Direction, ValueOr};

use super::{
    AudioError, AudioLink, AudioProcessor, Clocking, Flow, ReportedLatency, RunEnd, RunReport,
    StreamInfo, parse_rate,
};
use crate::endpoint::{Endpoint, EndpointError};

const OPTIONS: [&str; 7] = [
    "rate",
    "channels",
    "format",
    "period",
    "periods",
    "capture",
    "in_channel",
];
/// How long one wait for a period may take before the device counts as gone (a JACK server
/// that stopped, a USB device unplugged).
const DEVICE_SILENCE_MS: u32 = 5_000;

/// Sample formats the link speaks (little-endian, interleaved).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SampleFormat {
    S16,
    /// 24 bits in the low bytes of 32 (S24_LE).
    S24,
    S32,
    F32,
}

impl SampleFormat {
    fn parse(endpoint: &Endpoint) -> Result<Self, EndpointError> {
        match endpoint.option("format").unwrap_or("s16") {
            "s16" => Ok(SampleFormat::S16),
            "s24" => Ok(SampleFormat::S24),
            "s32" => Ok(SampleFormat::S32),
            "f32" => Ok(SampleFormat::F32),
            other => Err(endpoint.bad_value("format", other, "expected s16, s24, s32 or f32")),
        }
    }

    fn alsa(self) -> Format {
        match self {
            SampleFormat::S16 => Format::s16(),
            SampleFormat::S24 => Format::s24(),
            SampleFormat::S32 => Format::s32(),
            SampleFormat::F32 => Format::float(),
        }
    }

    fn name(self) -> &'static str {
        match self {
            SampleFormat::S16 => "s16",
            SampleFormat::S24 => "s24",
            SampleFormat::S32 => "s32",
            SampleFormat::F32 => "f32",
        }
    }

    /// Full scale of the integer formats.
    fn scale(self) -> f64 {
        match self {
            SampleFormat::S16 => 32_767.0,
            SampleFormat::S24 => 8_388_607.0,
            SampleFormat::S32 => 2_147_483_647.0,
            SampleFormat::F32 => 1.0,
        }
    }
}

/// What the endpoint asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Settings {
    playback: String,
    capture: String,
    rate: u32,
    channels: u32,
    format: SampleFormat,
    period: u32,
    periods: u32,
    in_channel: u32,
}

/// `alsa:DEVICE`: an ALSA PCM device, played and recorded at once.
pub struct AlsaLink {
    settings: Settings,
    playback: PCM,
    capture: PCM,
    description: String,
}

fn alsa_error(what: impl std::fmt::Display, error: ::alsa::Error) -> AudioError {
    AudioError::Alsa(format!("{what}: {error}"))
}

fn device_name(endpoint: &Endpoint, key: &str, name: &str) -> Result<String, EndpointError> {
    if name.is_empty() || name.contains('\0') {
        return Err(endpoint.bad_value(key, name, "an ALSA PCM name such as hw:0,0 or default"));
    }
    Ok(name.to_string())
}

impl Settings {
    fn parse(endpoint: &Endpoint) -> Result<Settings, EndpointError> {
        endpoint.reject_unknown_options(&OPTIONS)?;
        if endpoint.target.is_empty() {
            return Err(endpoint.invalid(
                "alsa: needs a device (for example alsa:hw:0,0, alsa:default, alsa:jack)",
            ));
        }
        let playback = device_name(endpoint, "device", &endpoint.target)?;
        let capture = match endpoint.option("capture") {
            Some(name) => device_name(endpoint, "capture", name)?,
            None => playback.clone(),
        };
        let rate = parse_rate(endpoint, 48_000)?;
        let channels = endpoint.parsed_option::<u32>("channels")?.unwrap_or(2);
        if !(1..=64).contains(&channels) {
            return Err(endpoint.bad_value("channels", &channels.to_string(), "1 to 64"));
        }
        let period = endpoint.parsed_option::<u32>("period")?.unwrap_or(256);
        if !(16..=65_536).contains(&period) {
            return Err(endpoint.bad_value("period", &period.to_string(), "16 to 65536 frames"));
        }
        let periods = endpoint.parsed_option::<u32>("periods")?.unwrap_or(2);
        if !(2..=64).contains(&periods) {
            return Err(endpoint.bad_value("periods", &periods.to_string(), "2 to 64"));
        }
        let in_channel = endpoint.parsed_option::<u32>("in_channel")?.unwrap_or(1);
        if !(1..=channels).contains(&in_channel) {
            return Err(endpoint.bad_value(
                "in_channel",
                &in_channel.to_string(),
                format!("1 to channels ({channels})"),
            ));
        }
        Ok(Settings {
            playback,
            capture,
            rate,
            channels,
            format: SampleFormat::parse(endpoint)?,
            period,
            periods,
            in_channel,
        })
    }

    /// Opens one direction and sets its hardware parameters exactly, or says which one the
    /// device refused.
    fn open(&self, direction: Direction) -> Result<PCM, AudioError> {
        let (name, side) = match direction {
            Direction::Playback => (&self.playback, "playback"),
            Direction::Capture => (&self.capture, "capture"),
        };
        let c_name = CString::new(name.as_str())
            .map_err(|_| AudioError::Alsa(format!("'{name}': a device name has no NUL byte")))?;
        let pcm = PCM::open(&c_name, direction, false)
            .map_err(|e| alsa_error(format!("cannot open ALSA device '{name}' for {side}"), e))?;
        {
            let refused = |what: String, e| {
                alsa_error(format!("ALSA device '{name}' ({side}) refuses {what}"), e)
            };
            let hw = HwParams::any(&pcm).map_err(|e| refused("any configuration".into(), e))?;
            hw.set_access(Access::RWInterleaved)
                .map_err(|e| refused("interleaved read/write access".into(), e))?;
            hw.set_format(self.format.alsa())
                .map_err(|e| refused(format!("format {}", self.format.name()), e))?;
            hw.set_channels(self.channels)
                .map_err(|e| refused(format!("{} channels", self.channels), e))?;
            // The rate exactly: a resampler in the path would blur what is measured.
            hw.set_rate_resample(false)
                .map_err(|e| refused("running without a resampler".into(), e))?;
            hw.set_rate(self.rate, ValueOr::Nearest)
                .map_err(|e| refused(format!("rate {} Hz", self.rate), e))?;
            hw.set_period_size(i64::from(self.period), ValueOr::Nearest)
                .map_err(|e| refused(format!("a period of {} frames", self.period), e))?;
            hw.set_periods(self.periods, ValueOr::Nearest)
                .map_err(|e| refused(format!("{} periods", self.periods), e))?;
            pcm.hw_params(&hw)
                .map_err(|e| refused("these parameters".into(), e))?;
        }
        Ok(pcm)
    }
}

impl AlsaLink {
    /// Reads the device name and options.
    pub fn from_endpoint(endpoint: &Endpoint) -> Result<Self, AudioError> {
        let settings = Settings::parse(endpoint)?;
        // Both directions are opened and configured here, so a missing device or a refused
        // parameter is a usage error before anything runs.
        let playback = settings.open(Direction::Playback)?;
        let capture = settings.open(Direction::Capture)?;
        Ok(AlsaLink {
            settings,
            playback,
            capture,
            description: endpoint.original.clone(),
        })
    }
}

/// Interleaved samples of one format, converted from and to the processor's mono `f32`.
enum Buffers {
    I16(Vec<i16>, Vec<i16>),
    I32(Vec<i32>, Vec<i32>),
    F32(Vec<f32>, Vec<f32>),
}

/// Reads and writes one period, whatever the sample format.
struct Streams<'a> {
    settings: &'a Settings,
    out: Vec<f32>,
    buffers: Buffers,
    playback: &'a PCM,
    capture: &'a PCM,
}

fn to_int(sample: f32, scale: f64) -> f64 {
    (f64::from(sample) * scale)
        .round()
        .clamp(-scale - 1.0, scale)
}

impl<'a> Streams<'a> {
    fn new(settings: &'a Settings, playback: &'a PCM, capture: &'a PCM) -> Self {
        let samples = (settings.period * settings.channels) as usize;
        let buffers = match settings.format {
            SampleFormat::S16 => Buffers::I16(vec![0; samples], vec![0; samples]),
            SampleFormat::S24 | SampleFormat::S32 => {
                Buffers::I32(vec![0; samples], vec![0; samples])
            }
            SampleFormat::F32 => Buffers::F32(vec![0.0; samples], vec![0.0; samples]),
        };
        Streams {
            settings,
            out: vec![0.0; settings.period as usize],
            buffers,
            playback,
            capture,
        }
    }

    /// Writes `frames` frames of `self.out` to every output channel.
    fn write(&mut self, frames: usize) -> ::alsa::Result<()> {
        let channels = self.settings.channels as usize;
        let scale = self.settings.format.scale();
        let mut written = 0;
        while written < frames {
            let done = match &mut self.buffers {
                Buffers::I16(_, out) => {
                    for (frame, &sample) in out.chunks_mut(channels).zip(&self.out[written..frames])
                    {
                        frame.fill(to_int(sample, scale) as i16);
                    }
                    writei(
                        self.playback.io_i16()?,
                        &out[..(frames - written) * channels],
                    )?
                }
                Buffers::I32(_, out) => {
                    for (frame, &sample) in out.chunks_mut(channels).zip(&self.out[written..frames])
                    {
                        frame.fill(to_int(sample, scale) as i32);
                    }
                    let io = match self.settings.format {
                        SampleFormat::S24 => self.playback.io_i32_s24()?,
                        _ => self.playback.io_i32()?,
                    };
                    writei(io, &out[..(frames - written) * channels])?
                }
                Buffers::F32(_, out) => {
                    for (frame, &sample) in out.chunks_mut(channels).zip(&self.out[written..frames])
                    {
                        frame.fill(sample);
                    }
                    writei(
                        self.playback.io_f32()?,
                        &out[..(frames - written) * channels],
                    )?
                }
            };
            written += done;
        }
        Ok(())
    }

    /// Reads one period and hands input channel `in_channel` to `into`.
    fn read(&mut self, into: &mut Vec<f32>) -> ::alsa::Result<()> {
        let channels = self.settings.channels as usize;
        let pick = (self.settings.in_channel - 1) as usize;
        let scale = self.settings.format.scale() as f32;
        let frames = self.settings.period as usize;
        into.clear();
        while into.len() < frames {
            let want = (frames - into.len()) * channels;
            match &mut self.buffers {
                Buffers::I16(input, _) => {
                    let got = self.capture.io_i16()?.readi(&mut input[..want])?;
                    into.extend(
                        input
                            .chunks(channels)
                            .take(got)
                            .map(|f| f32::from(f[pick]) / scale),
                    );
                }
                Buffers::I32(input, _) => {
                    let io = match self.settings.format {
                        SampleFormat::S24 => self.capture.io_i32_s24()?,
                        _ => self.capture.io_i32()?,
                    };
                    let got = io.readi(&mut input[..want])?;
                    into.extend(
                        input
                            .chunks(channels)
                            .take(got)
                            .map(|f| (f64::from(f[pick]) / f64::from(scale)) as f32),
                    );
                }
                Buffers::F32(input, _) => {
                    let got = self.capture.io_f32()?.readi(&mut input[..want])?;
                    into.extend(input.chunks(channels).take(got).map(|f| f[pick]));
                }
            }
        }
        Ok(())
    }
}

fn writei<S: Copy>(io: IO<'_, S>, samples: &[S]) -> ::alsa::Result<usize> {
    io.writei(samples)
}

impl AudioLink for AlsaLink {
    fn describe(&self) -> String {
        self.description.clone()
    }

    fn rate(&self) -> u32 {
        self.settings.rate
    }

    fn run(
        self: Box<Self>,
        mut processor: Box<dyn AudioProcessor>,
        stop: Arc<AtomicBool>,
    ) -> Result<RunReport, AudioError> {
        let AlsaLink {
            settings,
            playback,
            capture,
            description: _,
        } = *self;
        let period = settings.period as usize;
        let buffering = settings.period * settings.periods;
        processor.start(&StreamInfo {
            rate: settings.rate,
            period: settings.period,
            clocking: Clocking::RealTime,
        });
        // Start both directions together where the devices allow it (the same card); a plugin
        // that cannot be linked (JACK's) starts with the first write and read instead.
        let linked = capture.link(&playback).is_ok();
        let mut streams = Streams::new(&settings, &playback, &capture);
        let mut input = Vec::with_capacity(period);
        let mut xruns = 0u64;
        let mut frames_played = 0u64;
        let mut frames_captured = 0u64;
        let prime = |streams: &mut Streams<'_>| -> ::alsa::Result<()> {
            streams.out.fill(0.0);
            for _ in 0..settings.periods {
                streams.write(period)?;
            }
            if !linked {
                capture.start()?;
            }
            Ok(())
        };
        prime(&mut streams).map_err(|e| alsa_error("cannot start the streams", e))?;
        let end = loop {
            if stop.load(Ordering::Relaxed) {
                break RunEnd::Stopped;
            }
            match capture.wait(Some(DEVICE_SILENCE_MS)) {
                Ok(true) => {}
                Ok(false) => break RunEnd::ServerGone,
                Err(e) if e.errno() == libc::EPIPE || e.errno() == libc::ESTRPIPE => {}
                Err(e) => return Err(alsa_error("waiting for the capture stream", e)),
            }
            let cycle = streams.read(&mut input).and_then(|()| {
                frames_captured += input.len() as u64;
                let flow = processor.capture(&input);
                if flow == Flow::Stop {
                    return Ok(Flow::Stop);
                }
                processor.render(&mut streams.out);
                streams.write(period)?;
                frames_played += period as u64;
                Ok(Flow::Continue)
            });
            match cycle {
                Ok(Flow::Continue) => {}
                Ok(Flow::Stop) => break RunEnd::Done,
                // An over- or underrun: the frame mapping is broken; count it, restart both
                // directions from silence as alsa_delay does.
                Err(e) if e.errno() == libc::EPIPE || e.errno() == libc::ESTRPIPE => {
                    xruns += 1;
                    let restarted = playback
                        .drop()
                        .and_then(|()| capture.drop())
                        .and_then(|()| playback.prepare())
                        .and_then(|()| if linked { Ok(()) } else { capture.prepare() })
                        .and_then(|()| prime(&mut streams));
                    if let Err(e) = restarted {
                        return Err(alsa_error("cannot restart after an xrun", e));
                    }
                    // The restart may start the two directions a period apart from before.
                    processor.discontinuity();
                }
                Err(e) => return Err(alsa_error("the ALSA stream failed", e)),
            }
        };
        let _ = playback.drop();
        let _ = capture.drop();
        Ok(RunReport {
            end,
            frames_played,
            frames_captured,
            xruns,
            reported_latency: Some(ReportedLatency {
                playback_frames: buffering,
                capture_frames: 0,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(text: &str) -> Result<Settings, EndpointError> {
        Settings::parse(&Endpoint::parse(text).unwrap())
    }

    #[test]
    fn the_endpoint_reads_every_option_and_refuses_bad_values() {
        let s = settings("alsa:hw:Loopback,0?rate=44100&channels=1&format=f32&period=128&periods=3&capture=hw:Loopback,1").unwrap();
        assert_eq!(
            s,
            Settings {
                playback: "hw:Loopback,0".into(),
                capture: "hw:Loopback,1".into(),
                rate: 44_100,
                channels: 1,
                format: SampleFormat::F32,
                period: 128,
                periods: 3,
                in_channel: 1,
            }
        );
        let d = settings("alsa:default").unwrap();
        assert_eq!(
            (d.rate, d.channels, d.format, d.period, d.periods),
            (48_000, 2, SampleFormat::S16, 256, 2)
        );
        for bad in [
            "alsa:",
            "alsa:default?format=u8",
            "alsa:default?rate=1000",
            "alsa:default?periods=1",
            "alsa:default?channels=0",
            "alsa:default?in_channel=3",
            "alsa:default?colour=blue",
        ] {
            assert!(settings(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_missing_device_is_an_error_not_a_panic() {
        let link = AlsaLink::from_endpoint(&Endpoint::parse("alsa:no_such_device_here").unwrap());
        let Err(error) = link else {
            panic!("a device that does not exist opened");
        };
        assert!(error.to_string().contains("no_such_device_here"), "{error}");
    }

    #[test]
    fn samples_scale_to_full_scale_and_clip() {
        assert_eq!(to_int(1.0, 32_767.0), 32_767.0);
        assert_eq!(to_int(-1.0, 32_767.0), -32_767.0);
        assert_eq!(to_int(2.0, 32_767.0), 32_767.0);
        assert_eq!(to_int(-2.0, 32_767.0), -32_768.0);
        assert_eq!(to_int(0.5, 8_388_607.0), 4_194_304.0);
    }
}
