//! The checker against streams built by hand around the reference generator: known error
//! positions, slips cut into the byte/bit stream, garbage, and auto-detection.

mod common;

use common::*;
use loopscope_pattern::{
    BitOrder, CheckCounters, Checker, CheckerConfig, Expect, Generator, PatternKind, PatternSpec,
};

/// The stream a spec emits, from the bit-serial reference (not the production generator).
fn stream(spec: &PatternSpec, bytes: usize) -> Vec<u8> {
    pack(&reference_bits(spec, bytes * 8), spec.bit_order)
}

fn check(expect: Expect, data: &[u8]) -> (CheckCounters, Option<PatternSpec>) {
    let mut checker = Checker::new(CheckerConfig { expect });
    checker.feed(data);
    (checker.counters().clone(), checker.pattern().cloned())
}

fn check_spec(spec: &PatternSpec, data: &[u8]) -> CheckCounters {
    check(Expect::Pattern(spec.clone()), data).0
}

fn flip(data: &mut [u8], bit: usize) {
    data[bit / 8] ^= 1 << (bit % 8);
}

fn some_specs() -> Vec<PatternSpec> {
    let mut specs: Vec<PatternSpec> = PatternKind::NAMED
        .iter()
        .map(|k| PatternSpec::standard(k.clone()))
        .collect();
    specs.push(spec(
        PatternKind::Prbs31,
        Some(false),
        true,
        BitOrder::MsbFirst,
    ));
    specs.push(spec(
        PatternKind::Qrss,
        Some(true),
        true,
        BitOrder::LsbFirst,
    ));
    specs.push(spec(PatternKind::Prbs9, None, true, BitOrder::MsbFirst));
    specs.push(spec(
        PatternKind::Hex(vec![0xDE, 0xAD, 0xBE, 0xEF]),
        None,
        false,
        BitOrder::LsbFirst,
    ));
    specs.push(spec(
        PatternKind::OneIn8,
        Some(true),
        false,
        BitOrder::MsbFirst,
    ));
    specs
}

#[test]
fn clean_streams_lock_quickly_and_count_no_errors() {
    for spec in some_specs() {
        let data = stream(&spec, 4096);
        let counters = check_spec(&spec, &data);
        let what = spec.describe();
        assert!(counters.in_sync, "{what}: {counters:?}");
        assert_eq!(counters.bit_errors, 0, "{what}");
        assert_eq!(counters.bits + counters.unsynced_bits, 4096 * 8, "{what}");
        assert!(counters.unsynced_bits <= 200, "{what}: {counters:?}");
        assert_eq!((counters.slips, counters.sync_losses), (0, 0), "{what}");
    }
}

#[test]
fn exactly_k_single_errors_are_counted_as_k() {
    for spec in some_specs() {
        let mut data = stream(&spec, 64 * 1024);
        // Errors far apart, after the lock, including in the last byte.
        let positions: Vec<usize> = (0..37).map(|i| 4000 + i * 13_999).collect();
        for &bit in &positions {
            flip(&mut data, bit);
        }
        let last = data.len() * 8 - 1;
        flip(&mut data, last);
        let counters = check_spec(&spec, &data);
        assert_eq!(counters.bit_errors, 38, "{}: {counters:?}", spec.describe());
        assert_eq!(counters.longest_burst_bits, 1);
        assert_eq!((counters.slips, counters.sync_losses), (0, 0));
    }
}

#[test]
fn feeding_in_pieces_counts_the_same_as_at_once() {
    let spec = PatternSpec::standard(PatternKind::Prbs15);
    let mut data = stream(&spec, 50_000);
    for bit in [3000, 90_000, 90_001, 250_000] {
        flip(&mut data, bit);
    }
    data.remove(30_000);
    let whole = check_spec(&spec, &data);
    let mut checker = Checker::new(CheckerConfig {
        expect: Expect::Pattern(spec.clone()),
    });
    let mut at = 0;
    let mut size = 1;
    while at < data.len() {
        let take = size.min(data.len() - at);
        checker.feed(&data[at..at + take]);
        at += take;
        size = size * 7 % 1000 + 1;
    }
    assert_eq!(checker.counters(), &whole);
    assert_eq!((whole.bit_errors, whole.slips), (4, 1), "{whole:?}");
}

#[test]
fn random_errors_measure_a_ber_inside_the_99_percent_interval() {
    // Errors from our own xorshift at rate p, counted independently of the checker.
    let spec = PatternSpec::standard(PatternKind::Prbs31);
    let p = 1e-3;
    let bytes = 1 << 20;
    let mut data = stream(&spec, bytes);
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut injected = 0u64;
    for bit in 8 * 1024..bytes * 8 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        if (state >> 11) as f64 / (1u64 << 53) as f64 <= p {
            flip(&mut data, bit);
            injected += 1;
        }
    }
    let counters = check_spec(&spec, &data);
    assert_eq!(counters.bit_errors, injected, "{counters:?}");
    let n = (bytes * 8 - 8 * 1024) as f64;
    let ber = counters.bit_errors as f64 / n;
    // 99% two-sided interval of a Poisson count with mean n p (normal approximation).
    let half = 2.576 * (n * p).sqrt() / n;
    assert!((ber - p).abs() <= half, "ber {ber} outside {p} +- {half}");
}

#[test]
fn a_dropped_byte_and_an_inserted_byte_are_one_slip_each() {
    for spec in [
        PatternSpec::standard(PatternKind::Prbs31),
        PatternSpec::standard(PatternKind::Prbs9),
        PatternSpec::standard(PatternKind::Qrss),
        spec(PatternKind::Prbs23, None, true, BitOrder::MsbFirst),
    ] {
        let what = spec.describe();
        let mut dropped = stream(&spec, 20_000);
        dropped.remove(10_000);
        let counters = check_spec(&spec, &dropped);
        assert_eq!(counters.slips, 1, "{what}: {counters:?}");
        assert_eq!(counters.deleted_bits, 8, "{what}");
        assert!(counters.bit_errors <= 64, "{what}: {counters:?}");
        assert_eq!(counters.sync_losses, 0);
        assert!(counters.in_sync);

        let mut inserted = stream(&spec, 20_000);
        inserted.insert(10_000, 0x5A);
        let counters = check_spec(&spec, &inserted);
        assert_eq!(counters.slips, 1, "{what}: {counters:?}");
        assert_eq!(counters.inserted_bits, 8, "{what}");
        assert!(counters.bit_errors <= 64, "{what}: {counters:?}");
        assert!(counters.in_sync);
    }
}

fn bits_of(data: &[u8]) -> Vec<bool> {
    data.iter()
        .flat_map(|b| (0..8).map(move |i| b >> i & 1 == 1))
        .collect()
}

#[test]
fn a_single_bit_slip_either_way_is_one_slip() {
    let spec = PatternSpec::standard(PatternKind::Prbs31);
    let mut bits = bits_of(&stream(&spec, 20_000));
    bits.remove(77_777);
    bits.truncate(bits.len() / 8 * 8);
    let counters = check_spec(&spec, &pack(&bits, BitOrder::LsbFirst));
    assert_eq!(
        (counters.slips, counters.deleted_bits),
        (1, 1),
        "{counters:?}"
    );
    assert!(counters.bit_errors <= 64);

    let mut bits = bits_of(&stream(&spec, 20_000));
    bits.insert(77_777, true);
    bits.insert(77_777, false);
    bits.insert(77_777, true);
    bits.truncate(bits.len() / 8 * 8);
    let counters = check_spec(&spec, &pack(&bits, BitOrder::LsbFirst));
    assert_eq!(
        (counters.slips, counters.inserted_bits),
        (1, 3),
        "{counters:?}"
    );
    assert!(counters.bit_errors <= 64);
}

#[test]
fn an_error_burst_is_counted_bit_for_bit_not_as_a_slip() {
    let spec = PatternSpec::standard(PatternKind::Prbs15);
    let mut data = stream(&spec, 20_000);
    for bit in 50_000..50_100 {
        flip(&mut data, bit);
    }
    let counters = check_spec(&spec, &data);
    assert_eq!(counters.bit_errors, 100, "{counters:?}");
    assert_eq!(counters.longest_burst_bits, 100);
    assert_eq!((counters.slips, counters.sync_losses), (0, 0));
    assert_eq!(counters.bits + counters.unsynced_bits, 20_000 * 8);
}

fn garbage(bytes: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..bytes)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 32) as u8
        })
        .collect()
}

#[test]
fn garbage_is_a_sync_loss_then_the_checker_resyncs() {
    let spec = PatternSpec::standard(PatternKind::Prbs23);
    let pattern = stream(&spec, 40_000);
    for garbage_bytes in [1000, 20_000] {
        let mut data = pattern[..10_000].to_vec();
        data.extend(garbage(garbage_bytes, 42));
        // The pattern resumes at an unrelated phase.
        data.extend_from_slice(&pattern[25_000..]);
        let counters = check_spec(&spec, &data);
        assert_eq!(counters.sync_losses, 1, "{garbage_bytes}: {counters:?}");
        assert_eq!(counters.slips, 0);
        assert!(counters.in_sync);
        assert!(counters.unsynced_bits >= garbage_bytes as u64 * 8);
        assert!(counters.bit_errors <= 64, "{counters:?}");
    }
    // Garbage from the start: never in sync, nothing compared, no panic.
    let counters = check_spec(&spec, &garbage(50_000, 7));
    assert!(!counters.in_sync);
    assert_eq!(counters.bits, 0);
    assert_eq!(counters.unsynced_bits, 400_000);
}

#[test]
fn a_checker_reloading_from_the_line_would_count_three_a_free_running_one_counts_one() {
    // A bit error inside the hunt-confirm stretch and after: each counts once.
    let spec = PatternSpec::standard(PatternKind::Prbs7);
    let mut data = stream(&spec, 1000);
    flip(&mut data, 500);
    flip(&mut data, 5000);
    let counters = check_spec(&spec, &data);
    assert_eq!(counters.bit_errors, 2, "{counters:?}");
}

/// What auto-detection must report: PRBS exactly; fixed patterns forward, alt plain.
fn normalised(spec: &PatternSpec) -> (PatternKind, bool, bool) {
    match spec.kind {
        PatternKind::Alt | PatternKind::Ones | PatternKind::Zeros => {
            let kind = match (&spec.kind, spec.inverted()) {
                (PatternKind::Ones, true) => PatternKind::Zeros,
                (PatternKind::Zeros, true) => PatternKind::Ones,
                (kind, _) => kind.clone(),
            };
            (kind, false, false)
        }
        ref kind if !kind.is_pseudo_random() => (kind.clone(), spec.inverted(), false),
        ref kind => (kind.clone(), spec.inverted(), spec.reverse),
    }
}

#[test]
fn auto_identifies_every_pattern_polarity_and_direction() {
    for order in [BitOrder::LsbFirst, BitOrder::MsbFirst] {
        for kind in PatternKind::NAMED.iter() {
            for invert in [false, true] {
                for reverse in [false, true] {
                    let sent = spec(kind.clone(), Some(invert), reverse, order);
                    // QRSS and prbs20 differ only at rare bits: give them a long stretch.
                    let bytes = if kind.polynomial().is_some_and(|(n, _)| n == 20) {
                        1 << 18
                    } else {
                        8 * 1024
                    };
                    let data = stream(&sent, bytes);
                    let (counters, found) = check(Expect::Auto(order), &data);
                    let found = found.unwrap_or_else(|| {
                        panic!("{} not detected: {counters:?}", sent.describe())
                    });
                    assert_eq!(
                        normalised(&found),
                        normalised(&sent),
                        "sent {} found {}",
                        sent.describe(),
                        found.describe()
                    );
                    assert_eq!(found.bit_order, order);
                    assert!(counters.in_sync, "{}: {counters:?}", sent.describe());
                    assert_eq!(counters.bit_errors, 0, "{}: {counters:?}", sent.describe());
                }
            }
        }
    }
}

#[test]
fn auto_on_the_production_generator_output_too() {
    // The generator and the checker agree end to end (prbs31, O.150 polarity).
    let sent = PatternSpec::standard(PatternKind::Prbs31);
    let mut data = vec![0u8; 100_000];
    Generator::new(&sent).fill(&mut data);
    let (counters, found) = check(Expect::Auto(BitOrder::LsbFirst), &data);
    assert_eq!(found.as_ref().map(|s| s.inverted()), Some(true));
    assert_eq!(found.map(|s| s.kind), Some(PatternKind::Prbs31));
    assert_eq!(counters.bit_errors, 0);
}
