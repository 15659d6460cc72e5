//! Every instruction set of the PRBS word kernels (`loopscope_pattern::Isa`) that this CPU
//! runs, against the bit-serial reference in `common`: the generator's bytes, and the checker's
//! count of bits flipped on purpose. CI's CPU decides which sets run; the portable one always
//! does, and the test prints which ones it covered.

mod common;

use common::*;
use loopscope_pattern::{BitOrder, Checker, CheckerConfig, Expect, Generator, Isa, PatternSpec};
use proptest::prelude::*;

fn any_prbs_spec() -> impl Strategy<Value = PatternSpec> {
    let kinds = prbs_kinds();
    (
        0..kinds.len(),
        prop_oneof![Just(None), Just(Some(false)), Just(Some(true))],
        any::<bool>(),
        prop_oneof![Just(BitOrder::LsbFirst), Just(BitOrder::MsbFirst)],
    )
        .prop_map(move |(i, invert, reverse, order)| spec(kinds[i].clone(), invert, reverse, order))
}

#[test]
fn the_machine_runs_at_least_the_portable_kernels() {
    let sets = Isa::available_all();
    println!(
        "kernel sets on this CPU: {sets:?}; chosen: {}",
        Isa::detect()
    );
    assert!(sets.contains(&Isa::Portable));
    assert_eq!(sets.first().copied(), Some(Isa::detect()));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]

    /// Fills of every size (small ones go through the LFSR buffer, large ones run the recurrence
    /// in the output itself), split anywhere, equal the bit-serial reference on every path.
    #[test]
    fn every_isa_generates_the_reference(
        spec in any_prbs_spec(),
        sizes in prop::collection::vec(0usize..12_000, 1..6),
    ) {
        let total: usize = sizes.iter().sum();
        let want = pack(&reference_bits(&spec, total * 8), spec.bit_order);
        for isa in Isa::available_all() {
            let mut generator = Generator::with_isa(&spec, isa);
            let mut got = Vec::with_capacity(total);
            for &size in &sizes {
                let mut buf = vec![0u8; size];
                generator.fill(&mut buf);
                got.extend_from_slice(&buf);
            }
            let first_difference = want.iter().zip(&got).position(|(w, g)| w != g);
            prop_assert!(
                first_difference.is_none(),
                "{} on {isa}: first difference at byte {first_difference:?}",
                spec.describe()
            );
        }
    }

    /// The checker counts exactly the bits flipped in the reference stream (sparse flips after
    /// the lock, so none is a burst that looks like a slip), on every path, fed in pieces.
    #[test]
    fn every_isa_counts_exactly_the_flipped_bits(
        spec in any_prbs_spec(),
        flips in prop::collection::btree_set(0usize..1_500, 0..40),
        sizes in prop::collection::vec(1usize..40_000, 1..5),
    ) {
        const LOCKED_AFTER_BITS: usize = 4096;
        const SPACING_BITS: usize = 128;
        let len_bits = LOCKED_AFTER_BITS + 1_500 * SPACING_BITS + 4096;
        let mut data = pack(&reference_bits(&spec, len_bits), spec.bit_order);
        for &slot in &flips {
            let bit = LOCKED_AFTER_BITS + slot * SPACING_BITS + slot % 64;
            let at = match spec.bit_order {
                BitOrder::LsbFirst => bit % 8,
                BitOrder::MsbFirst => 7 - bit % 8,
            };
            data[bit / 8] ^= 1 << at;
        }
        for isa in Isa::available_all() {
            let mut checker = Checker::with_isa(
                CheckerConfig { expect: Expect::Pattern(spec.clone()) },
                isa,
            );
            let mut at = 0;
            for size in sizes.iter().cycle() {
                if at == data.len() {
                    break;
                }
                let take = (*size).min(data.len() - at);
                checker.feed(&data[at..at + take]);
                at += take;
            }
            checker.finish();
            let counters = checker.counters();
            prop_assert_eq!(counters.bit_errors, flips.len() as u64, "{} on {}", spec.describe(), isa);
            prop_assert_eq!(counters.bits + counters.unsynced_bits, len_bits as u64);
            prop_assert_eq!(counters.sync_losses + counters.slips, 0);
            prop_assert!(counters.unsynced_bits < LOCKED_AFTER_BITS as u64);
        }
    }
}
