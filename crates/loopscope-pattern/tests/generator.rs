//! Known-answer tests of the word-parallel generator against the bit-serial reference in
//! `common` (ITU-T O.150 polynomials and polarity).

mod common;

use common::*;
use loopscope_pattern::{BitOrder, Generator, PatternKind, PatternSpec};

/// How many bits to compare: a full period (plus a little, to see the wrap) up to order 23, a
/// long stretch for 29 and 31.
fn stretch(kind: &PatternKind) -> usize {
    match kind.polynomial() {
        Some((n, _)) if n <= 23 => (((1usize << n) - 1) + 200).div_ceil(8) * 8,
        Some(_) => 1 << 22,
        None => 8 * 1024,
    }
}

fn generated(spec: &PatternSpec, bytes: usize) -> Vec<u8> {
    let mut generator = Generator::new(spec);
    let mut out = vec![0u8; bytes];
    generator.fill(&mut out);
    out
}

#[test]
fn every_pattern_matches_the_bit_serial_reference_in_every_variant() {
    for kind in prbs_kinds().into_iter().chain(fixed_kinds()) {
        let len = stretch(&kind);
        for reverse in [false, true] {
            let plain = kind
                .is_pseudo_random()
                .then(|| plain_stream(&kind, reverse, len));
            for invert in [None, Some(false), Some(true)] {
                for order in [BitOrder::LsbFirst, BitOrder::MsbFirst] {
                    // Long stretches only in the default order; the others over 64 Kibit.
                    let len = if invert.is_none() && order == BitOrder::LsbFirst {
                        len
                    } else {
                        len.min(1 << 16)
                    };
                    let spec = spec(kind.clone(), invert, reverse, order);
                    let want = pack(&reference_bits_from(&spec, len, plain.as_deref()), order);
                    let got = generated(&spec, len / 8);
                    if let Some(at) = want.iter().zip(&got).position(|(w, g)| w != g) {
                        panic!(
                            "{} differs from the reference at byte {at}: want {:02x} got {:02x}",
                            spec.describe(),
                            want[at],
                            got[at]
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn standard_polarity_follows_o150() {
    // prbs31 (inverted per O.150) starts with 31 zeros; prbs9 (not inverted) with 9 ones.
    let prbs31 = generated(&PatternSpec::standard(PatternKind::Prbs31), 4);
    assert_eq!(prbs31, [0x00, 0x00, 0x00, 0x80]);
    let prbs9 = generated(&PatternSpec::standard(PatternKind::Prbs9), 2);
    assert_eq!(prbs9[0], 0xFF);
    assert_eq!(prbs9[1] & 1, 1);
    assert_eq!(prbs9[1] >> 1 & 1, 0);
    // hex words come out verbatim in either bit order.
    for order in [BitOrder::LsbFirst, BitOrder::MsbFirst] {
        let spec = spec(PatternKind::Hex(vec![0xDE, 0xAD]), None, false, order);
        assert_eq!(generated(&spec, 5), [0xDE, 0xAD, 0xDE, 0xAD, 0xDE]);
    }
}

#[test]
fn split_fills_equal_one_fill() {
    let spec = PatternSpec::standard(PatternKind::Qrss);
    let whole = generated(&spec, 100_003);
    let mut generator = Generator::new(&spec);
    let mut pieces = Vec::new();
    let mut size = 1;
    while pieces.len() < whole.len() {
        let take = size.min(whole.len() - pieces.len());
        let mut buf = vec![0u8; take];
        generator.fill(&mut buf);
        pieces.extend_from_slice(&buf);
        size = size * 3 % 20_011 + 1;
    }
    assert_eq!(pieces.len(), whole.len());
    let first_difference = pieces.iter().zip(&whole).position(|(a, b)| a != b);
    assert_eq!(first_difference, None);
}

fn bits_of(bytes: &[u8]) -> Vec<bool> {
    bytes
        .iter()
        .flat_map(|b| (0..8).map(move |i| b >> i & 1 == 1))
        .collect()
}

/// Longest runs of ones and zeros over a cyclic stretch of bits.
fn longest_runs(bits: &[bool]) -> (usize, usize) {
    let (mut ones, mut zeros, mut run, mut last) = (0, 0, 0, None);
    for &bit in bits.iter().chain(bits.iter()) {
        run = if Some(bit) == last { run + 1 } else { 1 };
        last = Some(bit);
        if bit {
            ones = ones.max(run);
        } else {
            zeros = zeros.max(run);
        }
    }
    (ones.min(bits.len()), zeros.min(bits.len()))
}

#[test]
fn run_lengths_are_those_each_pattern_must_have() {
    // A plain m-sequence of order n: longest run n ones and n-1 zeros (over one period).
    for kind in prbs_kinds() {
        let (n, _) = kind.polynomial().expect("prbs");
        if n > 20 {
            continue;
        }
        let period = (1usize << n) - 1;
        let spec = spec(kind.clone(), Some(false), false, BitOrder::LsbFirst);
        let bits = &bits_of(&generated(&spec, period.div_ceil(8) * 8 / 8 + 8))[..period];
        let (ones, zeros) = longest_runs(bits);
        if kind == PatternKind::Qrss {
            assert_eq!(zeros, 14, "QRSS never more than 14 zeros");
            assert!(ones >= 20);
        } else {
            assert_eq!((ones, zeros), (n as usize, n as usize - 1), "{kind}");
        }
    }
    // Inverted QRSS: never more than 14 ones; reversed QRSS keeps the 14-zero limit.
    let inverted = spec(PatternKind::Qrss, Some(true), false, BitOrder::LsbFirst);
    let bits = bits_of(&generated(&inverted, 1 << 18));
    assert!(longest_runs(&bits).0 <= 14);
    let reversed = spec(PatternKind::Qrss, None, true, BitOrder::LsbFirst);
    let bits = bits_of(&generated(&reversed, 1 << 18));
    assert!(longest_runs(&bits).1 <= 14);
    // Fixed patterns.
    let fixed = |kind: PatternKind| bits_of(&generated(&PatternSpec::standard(kind), 96));
    assert_eq!(longest_runs(&fixed(PatternKind::TwoIn8)).1, 4);
    assert_eq!(longest_runs(&fixed(PatternKind::ThreeIn24)).1, 15);
    assert_eq!(longest_runs(&fixed(PatternKind::OneIn8)).1, 7);
    let ones_share = fixed(PatternKind::ThreeIn24).iter().filter(|b| **b).count();
    assert_eq!(ones_share * 8, 96 * 8);
}

#[test]
fn large_and_small_fills_in_any_order_continue_the_reference() {
    // Large fills take the in-place path, small ones the buffered path; mixing them must not
    // lose the phase.
    let specs = [
        spec(PatternKind::Prbs31, None, false, BitOrder::LsbFirst),
        spec(PatternKind::Prbs31, Some(false), true, BitOrder::MsbFirst),
        spec(PatternKind::Prbs15, None, true, BitOrder::LsbFirst),
        spec(PatternKind::Prbs7, Some(true), true, BitOrder::MsbFirst),
        spec(PatternKind::Prbs9, None, false, BitOrder::LsbFirst),
    ];
    let sizes = [50_001usize, 3, 100_000, 77, 40_000, 8, 16_384];
    let total: usize = sizes.iter().sum();
    for spec in specs {
        let want = pack(&reference_bits(&spec, total * 8), spec.bit_order);
        let mut generator = Generator::new(&spec);
        let mut got = Vec::new();
        for size in sizes {
            let mut buf = vec![0u8; size];
            generator.fill(&mut buf);
            got.extend_from_slice(&buf);
        }
        let first_difference = got.iter().zip(&want).position(|(a, b)| a != b);
        assert_eq!(first_difference, None, "{}", spec.describe());
    }
}
