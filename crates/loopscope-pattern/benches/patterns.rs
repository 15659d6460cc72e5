//! Generation and checking of prbs31 and prbs9, each beside a memcpy of the same 1 MiB buffer
//! in the same run. Prints Gbit/s and the ratio to memcpy first, then runs criterion.
//!
//! Checking prbs9 streams continuously (the buffer holds a whole number of periods); checking
//! prbs31 uses a fresh checker per buffer, so its figure includes locking (hunt + confirm).

// criterion_group! generates public functions without docs.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use loopscope_pattern::{Checker, CheckerConfig, Expect, Generator, Isa, PatternKind, PatternSpec};

/// 1 MiB for prbs31; for prbs9 the nearest whole number of 511-bit periods (511 * 2048 bytes).
const PRBS31_BYTES: usize = 1 << 20;
const PRBS9_BYTES: usize = 511 * 2048;

fn buffer(kind: PatternKind, bytes: usize) -> (PatternSpec, Vec<u8>) {
    let spec = PatternSpec::standard(kind);
    let mut data = vec![0u8; bytes];
    Generator::new(&spec).fill(&mut data);
    (spec, data)
}

/// Seconds per call of `run`: the mean over calls filling about 30 ms.
fn time_once(run: &mut dyn FnMut()) -> f64 {
    let start = Instant::now();
    let mut calls = 0u32;
    while calls < 4 || start.elapsed() < Duration::from_millis(30) {
        run();
        calls += 1;
    }
    start.elapsed().as_secs_f64() / f64::from(calls)
}

/// Best Gbit/s of each job over interleaved rounds, so that load from other processes on the
/// machine hits every job alike and the ratios stay meaningful.
fn interleaved_gbits(bytes: usize, jobs: &mut [&mut dyn FnMut()]) -> Vec<f64> {
    let mut best = vec![f64::MAX; jobs.len()];
    for _ in 0..25 {
        for (job, best) in jobs.iter_mut().zip(&mut best) {
            *best = best.min(time_once(*job));
        }
    }
    best.iter().map(|s| bytes as f64 * 8.0 / s / 1e9).collect()
}

fn summary() {
    println!("pattern throughput (best of 25 interleaved rounds, one core), Gbit/s:");
    for (name, kind, bytes) in [
        ("prbs31", PatternKind::Prbs31, PRBS31_BYTES),
        ("prbs9", PatternKind::Prbs9, PRBS9_BYTES),
    ] {
        let (spec, data) = buffer(kind, bytes);
        let mut copy = vec![0u8; bytes];
        let mut memcpy = || {
            copy.copy_from_slice(black_box(&data));
            black_box(&copy);
        };
        let mut generator = Generator::new(&spec);
        let mut out = vec![0u8; bytes];
        let mut generate = || {
            generator.fill(&mut out);
            black_box(&out);
        };
        let continuous = name == "prbs9";
        let mut checker = Checker::new(CheckerConfig {
            expect: Expect::Pattern(spec.clone()),
        });
        let mut errors = 0;
        let mut check = || {
            if !continuous {
                checker = Checker::new(CheckerConfig {
                    expect: Expect::Pattern(spec.clone()),
                });
            }
            checker.feed(black_box(&data));
            errors += checker.counters().bit_errors;
        };
        let rates = interleaved_gbits(bytes, &mut [&mut memcpy, &mut generate, &mut check]);
        assert_eq!(errors, 0);
        let (memcpy, generate, check) = (rates[0], rates[1], rates[2]);
        println!(
            "  {name:7} memcpy {memcpy:6.1}  generate {generate:6.1} ({:.2}x memcpy)  check {check:6.1} ({:.2}x memcpy)  [{}]",
            generate / memcpy,
            check / memcpy,
            Isa::detect()
        );
    }
    per_isa();
    continuous();
}

/// Pieces of prbs31 checked one after another by one checker, as a BERT's receiver does.
const PIECES: usize = 8;

/// prbs31 checked as a BERT checks it: one checker fed consecutive 1 MiB pieces of the stream
/// (a fresh lock only every `PIECES` MiB), beside memcpy of the same pieces in the same order.
fn continuous() {
    let spec = PatternSpec::standard(PatternKind::Prbs31);
    let mut stream = vec![0u8; PIECES * PRBS31_BYTES];
    Generator::new(&spec).fill(&mut stream);
    let pieces: Vec<&[u8]> = stream.chunks(PRBS31_BYTES).collect();
    let mut copy = vec![0u8; PRBS31_BYTES];
    let mut next_copy = 0;
    let mut memcpy = || {
        copy.copy_from_slice(black_box(pieces[next_copy]));
        black_box(&copy);
        next_copy = (next_copy + 1) % PIECES;
    };
    let isas = Isa::available_all();
    let fresh = |isa| {
        Checker::with_isa(
            CheckerConfig {
                expect: Expect::Pattern(spec.clone()),
            },
            isa,
        )
    };
    let mut check_jobs: Vec<Box<dyn FnMut() + '_>> = isas
        .iter()
        .map(|&isa| {
            let mut checker = fresh(isa);
            let mut next = 0;
            let pieces = &pieces;
            let fresh = &fresh;
            Box::new(move || {
                if next == 0 {
                    checker = fresh(isa);
                }
                checker.feed(black_box(pieces[next]));
                assert_eq!(checker.counters().bit_errors, 0);
                next = (next + 1) % PIECES;
            }) as Box<dyn FnMut()>
        })
        .collect();
    let mut jobs: Vec<&mut dyn FnMut()> = vec![&mut memcpy];
    jobs.extend(
        check_jobs
            .iter_mut()
            .map(|job| &mut **job as &mut dyn FnMut()),
    );
    let rates = interleaved_gbits(PRBS31_BYTES, &mut jobs);
    let memcpy = rates[0];
    println!(
        "prbs31 checked continuously, {PIECES} consecutive 1 MiB pieces (memcpy of the same pieces {memcpy:.1} Gbit/s):"
    );
    for (i, isa) in isas.iter().enumerate() {
        let check = rates[1 + i];
        println!(
            "  {:8} check {check:6.1} ({:.2}x memcpy)",
            isa.name(),
            check / memcpy
        );
    }
}

/// prbs31 generation and checking on each instruction set this CPU runs, beside memcpy.
fn per_isa() {
    let (spec, data) = buffer(PatternKind::Prbs31, PRBS31_BYTES);
    let mut copy = vec![0u8; PRBS31_BYTES];
    let mut memcpy = || {
        copy.copy_from_slice(black_box(&data));
        black_box(&copy);
    };
    let isas = Isa::available_all();
    let mut generators: Vec<(Generator, Vec<u8>)> = isas
        .iter()
        .map(|&isa| (Generator::with_isa(&spec, isa), vec![0u8; PRBS31_BYTES]))
        .collect();
    let mut generate_jobs: Vec<Box<dyn FnMut() + '_>> = generators
        .iter_mut()
        .map(|(generator, out)| {
            Box::new(move || {
                generator.fill(out);
                black_box(&*out);
            }) as Box<dyn FnMut()>
        })
        .collect();
    let mut check_jobs: Vec<Box<dyn FnMut() + '_>> = isas
        .iter()
        .map(|&isa| {
            let spec = spec.clone();
            let data = &data;
            Box::new(move || {
                let mut checker = Checker::with_isa(
                    CheckerConfig {
                        expect: Expect::Pattern(spec.clone()),
                    },
                    isa,
                );
                checker.feed(black_box(data));
                assert_eq!(checker.counters().bit_errors, 0);
            }) as Box<dyn FnMut()>
        })
        .collect();
    let mut jobs: Vec<&mut dyn FnMut()> = vec![&mut memcpy];
    jobs.extend(
        generate_jobs
            .iter_mut()
            .map(|job| &mut **job as &mut dyn FnMut()),
    );
    jobs.extend(
        check_jobs
            .iter_mut()
            .map(|job| &mut **job as &mut dyn FnMut()),
    );
    let rates = interleaved_gbits(PRBS31_BYTES, &mut jobs);
    let memcpy = rates[0];
    println!("prbs31 per instruction set (memcpy {memcpy:.1} Gbit/s in the same rounds):");
    for (i, isa) in isas.iter().enumerate() {
        let generate = rates[1 + i];
        let check = rates[1 + isas.len() + i];
        println!(
            "  {:8} generate {generate:6.1} ({:.2}x memcpy)  check {check:6.1} ({:.2}x memcpy)",
            isa.name(),
            generate / memcpy,
            check / memcpy
        );
    }
}

fn benches(c: &mut Criterion) {
    for (name, kind, bytes) in [
        ("prbs31", PatternKind::Prbs31, PRBS31_BYTES),
        ("prbs9", PatternKind::Prbs9, PRBS9_BYTES),
    ] {
        let (spec, data) = buffer(kind, bytes);
        let mut group = c.benchmark_group(name);
        group.throughput(Throughput::Bytes(bytes as u64));
        let mut copy = vec![0u8; bytes];
        group.bench_function("memcpy", |b| {
            b.iter(|| {
                copy.copy_from_slice(black_box(&data));
                black_box(&copy);
            })
        });
        let mut generator = Generator::new(&spec);
        let mut out = vec![0u8; bytes];
        group.bench_function("generate", |b| {
            b.iter(|| {
                generator.fill(&mut out);
                black_box(&out);
            })
        });
        let continuous = name == "prbs9";
        let mut checker = Checker::new(CheckerConfig {
            expect: Expect::Pattern(spec.clone()),
        });
        group.bench_function("check", |b| {
            b.iter(|| {
                if !continuous {
                    checker = Checker::new(CheckerConfig {
                        expect: Expect::Pattern(spec.clone()),
                    });
                }
                checker.feed(black_box(&data));
            })
        });
        group.finish();
    }
}

fn main() {
    summary();
    let mut criterion = Criterion::default()
        .sample_size(20)
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500))
        .configure_from_args();
    benches(&mut criterion);
    criterion.final_summary();
}
