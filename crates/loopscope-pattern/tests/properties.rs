//! Property tests: no input makes the checker panic, and the generator equals the bit-serial
//! reference for any spec and any way of splitting the output into calls.
//! (cargo-fuzz would need a nightly toolchain, which this project does not use.)

mod common;

use common::*;
use loopscope_pattern::{
    BitOrder, Checker, CheckerConfig, Expect, Generator, PatternKind, PatternSpec,
};
use proptest::prelude::*;

fn any_kind() -> impl Strategy<Value = PatternKind> {
    prop_oneof![
        (0..PatternKind::NAMED.len()).prop_map(|i| PatternKind::NAMED[i].clone()),
        prop::collection::vec(any::<u8>(), 1..=64).prop_map(PatternKind::Hex),
    ]
}

fn any_spec() -> impl Strategy<Value = PatternSpec> {
    (
        any_kind(),
        prop_oneof![Just(None), Just(Some(false)), Just(Some(true))],
        any::<bool>(),
        prop_oneof![Just(BitOrder::LsbFirst), Just(BitOrder::MsbFirst)],
    )
        .prop_map(|(kind, invert, reverse, bit_order)| PatternSpec {
            kind,
            invert,
            reverse,
            bit_order,
        })
}

fn feed_in_pieces(checker: &mut Checker, data: &[u8], sizes: &[usize]) {
    let mut at = 0;
    let mut i = 0;
    while at < data.len() {
        let take = sizes
            .get(i % sizes.len().max(1))
            .copied()
            .unwrap_or(1)
            .clamp(1, data.len() - at);
        checker.feed(&data[at..at + take]);
        at += take;
        i += 1;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(
        spec in any_spec(),
        auto in any::<bool>(),
        data in prop::collection::vec(any::<u8>(), 0..3000),
        sizes in prop::collection::vec(1usize..300, 1..8),
    ) {
        let expect = if auto { Expect::Auto(spec.bit_order) } else { Expect::Pattern(spec) };
        let mut checker = Checker::new(CheckerConfig { expect });
        feed_in_pieces(&mut checker, &data, &sizes);
        checker.finish();
        let counters = checker.counters();
        prop_assert_eq!(counters.bits + counters.unsynced_bits, data.len() as u64 * 8);
        prop_assert!(counters.bit_errors <= counters.bits);
    }

    #[test]
    fn pattern_with_damage_never_panics_and_pieces_equal_whole(
        spec in any_spec(),
        flips in prop::collection::vec(0usize..80_000, 0..20),
        cuts in prop::collection::vec((0usize..10_000, 0usize..40), 0..4),
        sizes in prop::collection::vec(1usize..2000, 1..6),
    ) {
        let mut data = pack(&reference_bits(&spec, 80_000), spec.bit_order);
        for bit in flips {
            data[bit / 8] ^= 1 << (bit % 8);
        }
        for (at, len) in cuts {
            let at = at.min(data.len());
            let end = (at + len).min(data.len());
            data.drain(at..end);
        }
        let mut whole = Checker::new(CheckerConfig { expect: Expect::Pattern(spec.clone()) });
        whole.feed(&data);
        let mut pieces = Checker::new(CheckerConfig { expect: Expect::Pattern(spec) });
        feed_in_pieces(&mut pieces, &data, &sizes);
        prop_assert_eq!(whole.counters(), pieces.counters());
        whole.finish();
        let counters = whole.counters();
        prop_assert_eq!(counters.bits + counters.unsynced_bits, data.len() as u64 * 8);
    }

    #[test]
    fn generator_equals_reference_for_any_spec_and_split(
        spec in any_spec(),
        sizes in prop::collection::vec(0usize..3000, 1..12),
    ) {
        let total: usize = sizes.iter().sum();
        let want = pack(&reference_bits(&spec, total * 8), spec.bit_order);
        let mut generator = Generator::new(&spec);
        let mut got = Vec::with_capacity(total);
        for size in sizes {
            let mut buf = vec![0u8; size];
            generator.fill(&mut buf);
            got.extend_from_slice(&buf);
        }
        prop_assert!(got == want, "{} differs", spec.describe());
    }
}
