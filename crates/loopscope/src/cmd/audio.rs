//! `loopscope audio-latency LINK`: the round trip of an audio path (multi-tone phase method).

use anyhow::Context as _;
use loopscope_link::transport::audio::{self, RunEnd};
use loopscope_measure::audio_latency::{self, LatencyOptions};
use loopscope_report::{Format, Outcome, Printer};

use crate::Context;

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Links: audiosim:?delay=123.456&noise_db=-60&gain_db=-6&invert=1&drift_ppm=50&rate=48000 \
(simulated), wav:OUT.wav,IN.wav (write the test signal, analyse a recording made elsewhere; \
wav:OUT.wav only writes, wav:,IN.wav only analyses), jack:?connect=loop or \
jack:?out=system:playback_1&in=system:capture_1 (a JACK client).\n\n\
One reading every 8192 frames, each over the last 65,536: delays from 0 to 65,535 frames to \
about 1/1000 frame. A window without the test signal reads \"no signal\"; a run with no \
delay at all exits 1."
)]
pub struct Args {
    /// The audio link, e.g. audiosim:?delay=100, wav:out.wav,in.wav, jack:?connect=loop
    pub link: String,
    /// Stop after this many delays (default: until Ctrl-C, or the end of a recording).
    #[arg(short = 'c', long)]
    pub count: Option<u64>,
    /// Peak level of the test signal in dBFS.
    #[arg(long, default_value_t = -6.0, allow_negative_numbers = true)]
    pub level: f64,
}

pub fn run(args: Args, context: &Context) -> anyhow::Result<Outcome> {
    if !(-60.0..=0.0).contains(&args.level) {
        anyhow::bail!("--level {} is outside -60 to 0 dBFS", args.level);
    }
    if args.count == Some(0) {
        anyhow::bail!("--count must be at least 1");
    }
    let link = audio::open(&args.link)
        .with_context(|| format!("cannot open audio link '{}'", args.link))?;
    let options = LatencyOptions {
        count: args.count,
        level_dbfs: args.level,
    };
    let mut printer = Printer::stdout(context.format);
    let summary = audio_latency::run(
        link,
        &options,
        std::sync::Arc::clone(&context.stop),
        &mut |reading| {
            let _ = printer.emit(reading);
        },
    )
    .with_context(|| format!("cannot run over '{}'", args.link))?;
    // wav:OUT.wav alone only writes the test signal: nothing was recorded, nothing failed.
    if summary.frames_captured == 0 && summary.end == RunEnd::InputEnded {
        if context.format == Format::Human {
            loopscope_report::stderr_line!(
                "loopscope: wrote {} frames of the test signal; play it through the path, record \
                 it from the start, and analyse with wav:,RECORDING.wav",
                summary.frames_played
            );
        } else {
            printer.emit(&summary)?;
        }
        return Ok(Outcome::Passed);
    }
    printer.emit(&summary)?;
    Ok(Outcome::from_passed(summary.passed))
}
