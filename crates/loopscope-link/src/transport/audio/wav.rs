//! `wav:OUT.wav,IN.wav` — play into a file, analyse a recording made elsewhere.
//!
//! The link first writes `seconds` (default 10) of the processor's output to OUT.wav (mono, at
//! `rate`, in `format` s16, s24, s32 or f32), then feeds IN.wav to the processor from its first
//! frame to its last. Frame `n` of IN.wav is taken to be recorded when frame `n` of OUT.wav was
//! played, so a recording that starts together with playback measures the round trip.
//!
//! Either side may be left out: `wav:OUT.wav` only writes the test signal, `wav:,IN.wav` only
//! analyses. `channel=N` picks the channel of a multi-channel recording (default 1). IN.wav is
//! opened and checked when the link is opened, so a missing file or a wrong format is a usage
//! error before anything is written.

use std::fs::File;
use std::io::BufReader;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use hound::{SampleFormat, WavReader, WavSpec, WavWriter};

use super::{
    AudioError, AudioLink, AudioProcessor, Clocking, Flow, RunEnd, RunReport, StreamInfo,
    parse_rate,
};
use crate::endpoint::Endpoint;

const OPTIONS: [&str; 4] = ["rate", "format", "seconds", "channel"];
const PERIOD: usize = 1024;

/// How OUT.wav stores samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WavFormat {
    /// 16-bit integer PCM.
    S16,
    /// 24-bit integer PCM.
    S24,
    /// 32-bit integer PCM.
    S32,
    /// 32-bit float.
    F32,
}

impl WavFormat {
    fn spec(self, rate: u32) -> WavSpec {
        let (bits_per_sample, sample_format) = match self {
            WavFormat::S16 => (16, SampleFormat::Int),
            WavFormat::S24 => (24, SampleFormat::Int),
            WavFormat::S32 => (32, SampleFormat::Int),
            WavFormat::F32 => (32, SampleFormat::Float),
        };
        WavSpec {
            channels: 1,
            sample_rate: rate,
            bits_per_sample,
            sample_format,
        }
    }
}

struct Recording {
    path: String,
    reader: WavReader<BufReader<File>>,
    channel: usize,
}

/// `wav:OUT.wav,IN.wav`: plays into one file and records from another (a recording made
/// elsewhere of what was played).
pub struct WavLink {
    out_path: Option<String>,
    recording: Option<Recording>,
    rate: u32,
    format: WavFormat,
    seconds: f64,
    description: String,
}

fn wav_error(path: &str, why: impl std::fmt::Display) -> AudioError {
    AudioError::Wav {
        path: path.to_string(),
        why: why.to_string(),
    }
}

impl WavLink {
    /// Reads the file names and options.
    pub fn from_endpoint(endpoint: &Endpoint) -> Result<Self, AudioError> {
        endpoint.reject_unknown_options(&OPTIONS)?;
        let (out_path, in_path) = match endpoint.target.split_once(',') {
            Some((out, input)) => (out, input),
            None => (endpoint.target.as_str(), ""),
        };
        let out_path = (!out_path.is_empty()).then(|| out_path.to_string());
        let in_path = (!in_path.is_empty()).then(|| in_path.to_string());
        if out_path.is_none() && in_path.is_none() {
            return Err(endpoint
                .invalid("name a file to write, one to analyse or both: wav:OUT.wav,IN.wav")
                .into());
        }
        let format = match endpoint.option("format").unwrap_or("s16") {
            "s16" => WavFormat::S16,
            "s24" => WavFormat::S24,
            "s32" => WavFormat::S32,
            "f32" => WavFormat::F32,
            other => {
                return Err(endpoint
                    .bad_value("format", other, "expected s16, s24, s32 or f32")
                    .into());
            }
        };
        let seconds = endpoint.parsed_option::<f64>("seconds")?.unwrap_or(10.0);
        if !(seconds > 0.0 && seconds <= 3600.0) {
            return Err(endpoint
                .bad_value("seconds", &seconds.to_string(), "must be within 0 to 3600")
                .into());
        }
        let channel = endpoint.parsed_option::<usize>("channel")?.unwrap_or(1);
        let recording = match &in_path {
            None => None,
            Some(path) => {
                let reader = WavReader::open(path).map_err(|e| wav_error(path, e))?;
                let spec = reader.spec();
                let supported = match spec.sample_format {
                    SampleFormat::Int => (8..=32).contains(&spec.bits_per_sample),
                    SampleFormat::Float => spec.bits_per_sample == 32,
                };
                if !supported {
                    return Err(wav_error(
                        path,
                        format!(
                            "unsupported sample format ({}-bit {:?}; expected 8 to 32-bit integer or 32-bit float)",
                            spec.bits_per_sample, spec.sample_format
                        ),
                    ));
                }
                if channel == 0 || channel > spec.channels as usize {
                    return Err(wav_error(
                        path,
                        format!(
                            "has {} channel(s); channel={channel} does not exist",
                            spec.channels
                        ),
                    ));
                }
                Some(Recording {
                    path: path.clone(),
                    reader,
                    channel: channel - 1,
                })
            }
        };
        // The recording's rate is the link's rate; a rate= that disagrees is a mistake.
        let rate = match &recording {
            Some(recording) => {
                let file_rate = recording.reader.spec().sample_rate;
                let rate = parse_rate(endpoint, file_rate)?;
                if rate != file_rate {
                    return Err(wav_error(
                        &recording.path,
                        format!("is recorded at {file_rate} Hz, not rate={rate}"),
                    ));
                }
                rate
            }
            None => parse_rate(endpoint, 48_000)?,
        };
        Ok(WavLink {
            out_path,
            recording,
            rate,
            format,
            seconds,
            description: endpoint.original.clone(),
        })
    }

    fn write_output(
        path: &str,
        spec: WavSpec,
        frames: u64,
        processor: &mut dyn AudioProcessor,
        stop: &AtomicBool,
    ) -> Result<u64, AudioError> {
        let mut writer = WavWriter::create(path, spec).map_err(|e| wav_error(path, e))?;
        let mut block = vec![0f32; PERIOD];
        let mut written = 0u64;
        while written < frames && !stop.load(Ordering::Relaxed) {
            let take = (frames - written).min(PERIOD as u64) as usize;
            processor.render(&mut block[..take]);
            for &sample in &block[..take] {
                let sample = sample.clamp(-1.0, 1.0);
                let result = match (spec.sample_format, spec.bits_per_sample) {
                    (SampleFormat::Float, _) => writer.write_sample(sample),
                    (_, bits) => {
                        // Full scale is 2^(bits-1), as readers (and sox) divide by it; +1.0
                        // itself clips to the largest code.
                        let full_scale = (1i64 << (bits - 1)) as f64;
                        let code = (sample as f64 * full_scale)
                            .round()
                            .clamp(-full_scale, full_scale - 1.0);
                        writer.write_sample(code as i32)
                    }
                };
                result.map_err(|e| wav_error(path, e))?;
            }
            written += take as u64;
        }
        writer.finalize().map_err(|e| wav_error(path, e))?;
        Ok(written)
    }

    fn read_recording(
        recording: Recording,
        processor: &mut dyn AudioProcessor,
        stop: &AtomicBool,
    ) -> Result<(u64, RunEnd), AudioError> {
        let Recording {
            path,
            mut reader,
            channel,
        } = recording;
        let spec = reader.spec();
        let channels = spec.channels as usize;
        let samples: Box<dyn Iterator<Item = Result<f32, hound::Error>> + '_> =
            match spec.sample_format {
                SampleFormat::Float => Box::new(reader.samples::<f32>()),
                SampleFormat::Int => {
                    let scale = 1.0 / (1u64 << (spec.bits_per_sample - 1)) as f32;
                    Box::new(
                        reader
                            .samples::<i32>()
                            .map(move |s| s.map(|v| v as f32 * scale)),
                    )
                }
            };
        let mut block = Vec::with_capacity(PERIOD);
        let mut captured = 0u64;
        for (index, value) in samples.enumerate() {
            let value = value.map_err(|e| wav_error(&path, e))?;
            if index % channels != channel {
                continue;
            }
            block.push(value);
            if block.len() == PERIOD {
                captured += PERIOD as u64;
                if processor.capture(&block) == Flow::Stop {
                    return Ok((captured, RunEnd::Done));
                }
                block.clear();
                if stop.load(Ordering::Relaxed) {
                    return Ok((captured, RunEnd::Stopped));
                }
            }
        }
        if !block.is_empty() {
            captured += block.len() as u64;
            if processor.capture(&block) == Flow::Stop {
                return Ok((captured, RunEnd::Done));
            }
        }
        Ok((captured, RunEnd::InputEnded))
    }
}

impl AudioLink for WavLink {
    fn describe(&self) -> String {
        self.description.clone()
    }

    fn rate(&self) -> u32 {
        self.rate
    }

    fn run(
        self: Box<Self>,
        mut processor: Box<dyn AudioProcessor>,
        stop: Arc<AtomicBool>,
    ) -> Result<RunReport, AudioError> {
        processor.start(&StreamInfo {
            rate: self.rate,
            period: PERIOD as u32,
            clocking: Clocking::Offline {
                latency_bound_frames: u64::MAX,
            },
        });
        let mut frames_played = 0;
        if let Some(path) = &self.out_path {
            let frames = (self.seconds * self.rate as f64).round() as u64;
            frames_played = Self::write_output(
                path,
                self.format.spec(self.rate),
                frames,
                processor.as_mut(),
                &stop,
            )?;
        }
        let (frames_captured, end) = match self.recording {
            Some(recording) => Self::read_recording(recording, processor.as_mut(), &stop)?,
            None => (0, RunEnd::InputEnded),
        };
        Ok(RunReport {
            end,
            frames_played,
            frames_captured,
            xruns: 0,
            reported_latency: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    struct Ramp {
        next: f32,
        recorded: Arc<Mutex<Vec<f32>>>,
    }

    impl AudioProcessor for Ramp {
        fn start(&mut self, _: &StreamInfo) {}
        fn render(&mut self, output: &mut [f32]) {
            for slot in output {
                *slot = self.next;
                self.next = (self.next + 0.001) % 0.9;
            }
        }
        fn capture(&mut self, input: &[f32]) -> Flow {
            self.recorded.lock().unwrap().extend_from_slice(input);
            Flow::Continue
        }
    }

    fn run(endpoint: &str) -> (RunReport, Vec<f32>) {
        let link = WavLink::from_endpoint(&Endpoint::parse(endpoint).unwrap()).unwrap();
        let recorded = Arc::new(Mutex::new(Vec::new()));
        let report = Box::new(link)
            .run(
                Box::new(Ramp {
                    next: 0.0,
                    recorded: Arc::clone(&recorded),
                }),
                Arc::new(AtomicBool::new(false)),
            )
            .unwrap();
        let recorded = recorded.lock().unwrap().clone();
        (report, recorded)
    }

    #[test]
    fn what_is_written_reads_back_in_every_format() {
        let dir = tempfile::tempdir().unwrap();
        for (format, tolerance) in [("s16", 1.6e-5), ("s24", 6e-8), ("s32", 1e-8), ("f32", 0.0)] {
            let path = dir.path().join(format!("{format}.wav"));
            let path = path.to_str().unwrap();
            let (report, _) = run(&format!("wav:{path}?seconds=0.1&format={format}"));
            assert_eq!(report.frames_played, 4800);
            let (report, got) = run(&format!("wav:,{path}"));
            assert_eq!(report.end, RunEnd::InputEnded);
            assert_eq!(got.len(), 4800);
            let mut expected = 0f32;
            for &sample in &got {
                assert!((sample - expected).abs() <= tolerance, "{format}");
                expected = (expected + 0.001) % 0.9;
            }
        }
    }

    #[test]
    fn refuses_missing_files_wrong_rates_and_formats() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.wav");
        let err = WavLink::from_endpoint(
            &Endpoint::parse(&format!("wav:,{}", missing.display())).unwrap(),
        )
        .err()
        .unwrap();
        assert!(err.to_string().contains("missing.wav"), "{err}");

        let good = dir.path().join("good.wav");
        run(&format!("wav:{}?seconds=0.01&rate=44100", good.display()));
        let err = WavLink::from_endpoint(
            &Endpoint::parse(&format!("wav:,{}?rate=48000", good.display())).unwrap(),
        )
        .err()
        .unwrap();
        assert!(err.to_string().contains("44100 Hz"), "{err}");

        let text = dir.path().join("text.wav");
        std::fs::write(&text, "not a wave file").unwrap();
        assert!(
            WavLink::from_endpoint(&Endpoint::parse(&format!("wav:,{}", text.display())).unwrap())
                .is_err()
        );
        assert!(WavLink::from_endpoint(&Endpoint::parse("wav:").unwrap()).is_err());
        assert!(WavLink::from_endpoint(&Endpoint::parse("wav:x.wav?format=u8").unwrap()).is_err());
    }
}
