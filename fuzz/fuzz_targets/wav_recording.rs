//! A WAV recording made elsewhere (`wav:,IN.wav`), read as `audio-latency` reads it: the
//! link's header checks, then every sample of the chosen channel through the latency analyser.
//! The file is whatever the fuzzer gives, written to a private path on a memory file system.
//!
//! The test signal is built once (its tables cost ~80 ms of cosines, which held a target that
//! ran `audio_latency::run` per input to 11 executions a second); the analyser is new per input.
#![no_main]

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use loopscope_fuzz as _;
use loopscope_link::transport::audio::{self, AudioProcessor, Flow, StreamInfo};
use loopscope_measure::audio_latency::{Analyzer, TestSignal};

fn scratch_path() -> &'static str {
    static PATH: OnceLock<String> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = if std::path::Path::new("/dev/shm").is_dir() {
            "/dev/shm"
        } else {
            "/tmp"
        };
        format!("{dir}/loopscope-fuzz-wav-{}.wav", std::process::id())
    })
}

fn signal() -> &'static TestSignal {
    static SIGNAL: OnceLock<TestSignal> = OnceLock::new();
    SIGNAL.get_or_init(|| TestSignal::new(-6.0))
}

struct Analyse {
    analyzer: Analyzer,
    frames: u64,
}

impl AudioProcessor for Analyse {
    fn start(&mut self, _info: &StreamInfo) {}

    fn render(&mut self, output: &mut [f32]) {
        output.fill(0.0);
    }

    fn capture(&mut self, input: &[f32]) -> Flow {
        self.frames += input.len() as u64;
        self.analyzer.push(input, &mut |_reading| {});
        Flow::Continue
    }
}

fuzz_target!(|data: &[u8]| {
    let path = scratch_path();
    if std::fs::write(path, data).is_err() {
        return;
    }
    let Ok(link) = audio::open(&format!("wav:,{path}")) else {
        return;
    };
    let processor = Box::new(Analyse {
        analyzer: Analyzer::new(signal()),
        frames: 0,
    });
    if let Ok(report) = link.run(processor, Arc::new(AtomicBool::new(false))) {
        // Every frame captured came out of the file's bytes (at least one byte a sample).
        assert!(report.frames_captured <= data.len() as u64);
    }
});
