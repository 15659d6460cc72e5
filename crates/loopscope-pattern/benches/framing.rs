//! T1/E1 framing and deframing throughput, against the goal of 1000 times the T1 line rate
//! (1.544 Gbit/s of line signal) on one core. Prints each job's line rate and its multiple of
//! the T1 rate first (best of interleaved rounds), then runs criterion.
//!
//! - `frame`: the framer fills 1 s of line signal, the payload a QRSS generator in every
//!   timeslot (what the test set sends).
//! - `deframe`: the deframer takes 1 s of line signal apart (alignment kept, framing bits and
//!   CRC checked, payload extracted).
//! - `deframe+check`: the deframer and the QRSS checker on its payload: checking a recording.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use loopscope_pattern::framing::{Deframer, Framer, Framing, Timeslots};
use loopscope_pattern::{Checker, CheckerConfig, Expect, Generator, PatternKind, PatternSpec};

const T1_RATE: f64 = 1_544_000.0;

fn qrss() -> PatternSpec {
    let mut spec = PatternSpec::standard(PatternKind::Qrss);
    spec.bit_order = loopscope_pattern::BitOrder::MsbFirst;
    spec
}

/// About one second of framed line, the payload QRSS in every timeslot: a whole number of
/// multiframes (and bytes), so that feeding it again continues the frame sequence.
fn line(framing: Framing) -> Vec<u8> {
    let mut framer = Framer::new(framing, &Timeslots::all(framing), 0xFF);
    // 8 multiframes are a whole number of bytes for every framing.
    let unit = 8 * framing.multiframe_frames();
    let frames = 8000 / unit * unit;
    let mut out = vec![0u8; frames * framing.frame_bits() / 8];
    framer.fill(&mut out, &mut Generator::new(&qrss()));
    out
}

fn thread_cpu_seconds() -> f64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9
}

/// (wall, CPU) seconds per call of `run`, over calls filling about 50 ms. On a shared machine
/// the CPU time of this thread is the honest "one core" figure; the wall time is shown beside.
fn time_once(run: &mut dyn FnMut()) -> (f64, f64) {
    let start = Instant::now();
    let cpu_start = thread_cpu_seconds();
    let mut calls = 0u32;
    while calls < 3 || start.elapsed() < Duration::from_millis(50) {
        run();
        calls += 1;
    }
    let calls = f64::from(calls);
    (
        start.elapsed().as_secs_f64() / calls,
        (thread_cpu_seconds() - cpu_start) / calls,
    )
}

fn summary() {
    println!(
        "T1/E1 framing throughput, line bits, one core (best of 15 interleaved rounds; CPU time, wall time in brackets):"
    );
    for framing in [Framing::Esf, Framing::Sf, Framing::E1Crc4] {
        let all = Timeslots::all(framing);
        let input = line(framing);
        let bytes = input.len();
        let mut framer = Framer::new(framing, &all, 0xFF);
        let mut generator = Generator::new(&qrss());
        let mut out = vec![0u8; bytes];
        let mut frame = || {
            framer.fill(&mut out, &mut generator);
            black_box(&out);
        };
        let mut deframer = Deframer::new(framing, &all);
        let mut payload = Vec::with_capacity(bytes);
        let mut deframe = || {
            payload.clear();
            deframer.feed(black_box(&input), &mut payload);
            black_box(&payload);
            assert!(deframer.counters().in_frame);
        };
        let mut deframer2 = Deframer::new(framing, &all);
        let mut payload2 = Vec::with_capacity(bytes);
        let mut checker = Checker::new(CheckerConfig {
            expect: Expect::Pattern(qrss()),
        });
        let mut check = || {
            payload2.clear();
            deframer2.feed(black_box(&input), &mut payload2);
            checker.feed(&payload2);
            black_box(checker.counters());
        };
        let mut best = [(f64::MAX, f64::MAX); 3];
        for _ in 0..15 {
            let jobs: [&mut dyn FnMut(); 3] = [&mut frame, &mut deframe, &mut check];
            for (job, best) in jobs.into_iter().zip(&mut best) {
                let (wall, cpu) = time_once(job);
                *best = (best.0.min(wall), best.1.min(cpu));
            }
        }
        for (name, (wall, cpu)) in ["frame", "deframe", "deframe+check"].iter().zip(best) {
            let bps = bytes as f64 * 8.0 / cpu.max(1e-9);
            let wall_bps = bytes as f64 * 8.0 / wall;
            println!(
                "  {:8} {:14} {:7.2} Gbit/s = {:6.0}x the T1 line rate   [wall {:6.2} Gbit/s = {:6.0}x]",
                framing.name(),
                name,
                bps / 1e9,
                bps / T1_RATE,
                wall_bps / 1e9,
                wall_bps / T1_RATE
            );
        }
    }
}

fn bench(c: &mut Criterion) {
    summary();
    for framing in [Framing::Esf, Framing::E1Crc4] {
        let all = Timeslots::all(framing);
        let input = line(framing);
        let mut group = c.benchmark_group(format!("framing/{}", framing.name()));
        group.throughput(Throughput::Bytes(input.len() as u64));
        group.bench_function("frame", |b| {
            let mut framer = Framer::new(framing, &all, 0xFF);
            let mut generator = Generator::new(&qrss());
            let mut out = vec![0u8; input.len()];
            b.iter(|| {
                framer.fill(&mut out, &mut generator);
                black_box(&out);
            });
        });
        group.bench_function("deframe", |b| {
            let mut deframer = Deframer::new(framing, &all);
            let mut payload = Vec::with_capacity(input.len());
            b.iter(|| {
                payload.clear();
                deframer.feed(black_box(&input), &mut payload);
                black_box(&payload);
            });
        });
        group.finish();
    }
}

fn main() {
    let mut criterion = Criterion::default()
        .configure_from_args()
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    bench(&mut criterion);
    criterion.final_summary();
}
