//! Properties of the deframer over arbitrary input: it never panics, accounts for every bit it
//! consumed, and a framed payload survives any cutting of the stream and any timeslot set.

use loopscope_pattern::framing::{Deframer, Framer, Framing, RepeatingBits, Timeslots};
use proptest::prelude::*;

fn framing() -> impl Strategy<Value = Framing> {
    prop::sample::select(Framing::ALL.to_vec())
}

/// A timeslot list for `framing`, with a rate suffix sometimes.
fn slots(framing: Framing) -> impl Strategy<Value = Timeslots> {
    let max = framing.channels();
    (
        prop::collection::btree_set(1..=max, 1..=usize::from(max)),
        any::<bool>(),
    )
        .prop_map(move |(set, k56)| {
            let list: Vec<String> = set.iter().map(u8::to_string).collect();
            let text = format!("{}{}", list.join(","), if k56 { ":56k" } else { "" });
            Timeslots::parse(&text, framing).expect("a valid list")
        })
}

/// Feeds `line` to `deframer` in pieces of the lengths `cuts` gives, over and over.
fn feed_in_cuts(deframer: &mut Deframer, line: &[u8], cuts: &[usize], payload: &mut Vec<u8>) {
    let mut rest = line;
    for cut in cuts.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let take = (*cut).min(rest.len());
        deframer.feed(&rest[..take], payload);
        rest = &rest[take..];
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn arbitrary_bytes_never_panic_and_every_bit_is_accounted(
        framing in framing(),
        data in prop::collection::vec(any::<u8>(), 0..40_000),
        cuts in prop::collection::vec(1usize..5000, 1..20),
    ) {
        let mut deframer = Deframer::new(framing, &Timeslots::all(framing));
        let mut payload = Vec::new();
        feed_in_cuts(&mut deframer, &data, &cuts, &mut payload);
        let c = deframer.counters();
        let fed = data.len() as u64 * 8;
        prop_assert!(c.line_bits <= fed);
        prop_assert_eq!(
            c.line_bits,
            c.frames * framing.frame_bits() as u64 + c.out_of_frame_bits
        );
        prop_assert!(c.crc_errors <= c.crc_blocks);
    }

    #[test]
    fn a_framed_payload_survives_any_cutting_and_timeslot_set(
        (framing, timeslots) in framing().prop_flat_map(|f| (Just(f), slots(f))),
        cuts in prop::collection::vec(1usize..3000, 1..10),
        period in prop::collection::vec(0u8..2, 7..40),
    ) {
        let mut framer = Framer::new(framing, &timeslots, 0x7F);
        let mut source = RepeatingBits::new(&period);
        let mut line = vec![0u8; 40_000];
        framer.fill(&mut line, &mut source);
        let mut expected = vec![0u8; 40_000];
        RepeatingBits::new(&period).fill_into(&mut expected);
        let mut deframer = Deframer::new(framing, &timeslots);
        let mut payload = Vec::new();
        feed_in_cuts(&mut deframer, &line, &cuts, &mut payload);
        let c = deframer.counters();
        prop_assert!(c.in_frame);
        prop_assert_eq!(c.out_of_frame_bits, 0);
        prop_assert_eq!(c.frame_bit_errors + c.crc_errors + c.oof_events, 0);
        prop_assert!(!payload.is_empty());
        prop_assert_eq!(&payload[..], &expected[..payload.len()]);
    }
}
