//! Loop-code and FDL-message detection: detected after the persistence and not before, at a
//! 10^-3 line error rate, framed and unframed; short matches never trigger.

use loopscope_pattern::framing::{Deframer, Framer, Framing, RepeatingBits, Timeslots};
use loopscope_pattern::loopcode::{
    Bom, BomDetector, Detection, InbandCode, InbandDetector, WINDOW_BITS,
};
use rand_xoshiro::Xoshiro256PlusPlus;
use rand_xoshiro::rand_core::{RngCore, SeedableRng};

/// 5 s at the T1 line rate.
const PERSISTENCE: u64 = 5 * 1_544_000;

/// The code repeated for `bits` bits (a whole number of bytes), starting at its first bit.
fn repeated(code: &str, bits: usize) -> Vec<u8> {
    let period: Vec<u8> = code.bytes().map(|b| b - b'0').collect();
    (0..bits / 8)
        .map(|byte| {
            (0..8).fold(0u8, |acc, i| {
                (acc << 1) | period[(byte * 8 + i) % period.len()]
            })
        })
        .collect()
}

fn random(bytes: usize, seed: u64) -> Vec<u8> {
    let mut out = vec![0u8; bytes];
    Xoshiro256PlusPlus::seed_from_u64(seed).fill_bytes(&mut out);
    out
}

/// Flips bits at rate `ber` (geometric gaps), returning how many.
fn add_errors(data: &mut [u8], ber: f64, seed: u64) -> u64 {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let total = data.len() as u64 * 8;
    let mut at = 0u64;
    let mut flipped = 0;
    loop {
        let uniform = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        let gap = ((1.0 - uniform).ln() / (1.0 - ber).ln()) as u64;
        at += gap;
        if at >= total {
            return flipped;
        }
        data[(at / 8) as usize] ^= 0x80 >> (at % 8);
        flipped += 1;
        at += 1;
    }
}

fn all_codes() -> Vec<InbandCode> {
    vec![
        InbandCode::loop_up(),
        InbandCode::loop_down(),
        InbandCode::arm(),
        InbandCode::disarm(),
    ]
}

fn detect(stream: &[u8], codes: &[InbandCode], persistence: u64) -> Vec<Detection> {
    let mut detector = InbandDetector::new(codes, persistence);
    for chunk in stream.chunks(4099) {
        detector.feed(chunk);
    }
    detector.take_detections()
}

#[test]
fn each_code_is_detected_after_its_persistence_and_not_before_at_1e_minus_3() {
    for (index, (code, bits)) in [
        ("loop-up", "00001"),
        ("loop-down", "001"),
        ("arm", "11000"),
        ("disarm", "11100"),
        ("0011", "0011"),
    ]
    .into_iter()
    .enumerate()
    {
        let wanted: InbandCode = code.parse().unwrap();
        assert_eq!(wanted.bit_string(), bits);
        let mut codes = all_codes();
        if !codes.contains(&wanted) {
            codes.push(wanted.clone());
        }
        // Random line for 1.3 s (not a whole window), then the code for 6 s.
        let start_bytes = 250_951;
        let start = start_bytes as u64 * 8;
        let mut stream = random(start_bytes, index as u64);
        stream.extend(repeated(bits, 6 * 1_544_000));
        let flipped = add_errors(&mut stream, 1e-3, 100 + index as u64);
        assert!(flipped > 10_000, "the line really is at 1e-3: {flipped}");

        let detections = detect(&stream, &codes, PERSISTENCE);
        assert_eq!(detections.len(), 1, "{code}: {detections:?}");
        let Detection::Inband {
            code: found,
            at_bit,
        } = &detections[0]
        else {
            panic!("{detections:?}");
        };
        assert_eq!(found, &wanted);
        assert!(*at_bit >= start + PERSISTENCE, "{code}: not before 5 s");
        assert!(
            *at_bit <= start + PERSISTENCE + 2 * WINDOW_BITS,
            "{code}: {} bits late",
            *at_bit - start - PERSISTENCE
        );

        // The same code stopping 2 windows short of the persistence is not detected.
        let short = (start + PERSISTENCE - 2 * WINDOW_BITS) as usize / 8;
        let mut cut = stream[..short].to_vec();
        cut.extend(random(2_000_000, 50 + index as u64));
        assert!(detect(&cut, &codes, PERSISTENCE).is_empty(), "{code}");
    }
}

#[test]
fn a_payload_with_brief_runs_of_the_code_never_loops() {
    // Random payload, with 00001 repeated for 4.9 s, then 1 s of random, three times over,
    // plus many 100 ms runs.
    let mut stream = Vec::new();
    for round in 0..3 {
        stream.extend(repeated("00001", 49 * 154_400 / 8 * 8));
        stream.extend(random(193_000, round));
    }
    for round in 0..20 {
        stream.extend(repeated("00001", 154_400 / 8 * 8 + 40));
        stream.extend(random(19_300, 10 + round));
    }
    add_errors(&mut stream, 1e-3, 7);
    assert!(detect(&stream, &all_codes(), PERSISTENCE).is_empty());
}

/// A framed code runs on in the payload across the framing bits, so it is looked for in the
/// deframed payload (on the raw line each framing bit shifts its phase).
#[test]
fn framed_codes_are_detected_in_the_payload() {
    for framing in [Framing::Esf, Framing::Sf, Framing::E1Crc4] {
        let rate = framing.line_rate_bps();
        let all = Timeslots::all(framing);
        let mut framer = Framer::new(framing, &all, 0x7F);
        let mut code = RepeatingBits::new(&[0, 0, 1]);
        let mut line = vec![0u8; framing.bytes_per_second() * 6];
        framer.fill(&mut line, &mut code);
        add_errors(&mut line, 1e-3, 3);
        assert_eq!(rate * 6 / 8, line.len() as u64);

        let mut deframer = Deframer::new(framing, &all);
        let mut payload = Vec::new();
        deframer.feed(&line, &mut payload);
        // The payload is 24/193 (T1) or 31/32 (E1) of the line: 5 s of payload bits.
        let payload_persistence = 5 * all.payload_rate_bps();
        let detections = detect(&payload, &all_codes(), payload_persistence);
        assert!(
            matches!(&detections[..], [Detection::Inband { code, .. }] if *code == InbandCode::loop_down()),
            "{framing} payload: {detections:?}"
        );
    }
}

#[test]
fn codes_do_not_trigger_each_other() {
    for (sent, index) in [("00001", 0u64), ("001", 1), ("11000", 2), ("11100", 3)] {
        let stream = repeated(sent, 7_000_000);
        let detections = detect(&stream, &all_codes(), 2_000_000);
        assert_eq!(detections.len(), 1, "{sent}");
        let Detection::Inband { code, .. } = &detections[0] else {
            panic!()
        };
        assert_eq!(code.bit_string(), sent, "only {sent} itself, index {index}");
    }
}

#[test]
fn a_detected_code_clears_when_it_stops() {
    let mut stream = repeated("00001", 3_000_000);
    stream.extend(random(100_000, 1));
    let detections = detect(&stream, &all_codes(), 1_000_000);
    assert!(matches!(&detections[..], [
        Detection::Inband { .. },
        Detection::InbandCleared { at_bit, .. }
    ] if *at_bit > 3_000_000 && *at_bit <= 3_000_000 + 2 * WINDOW_BITS));
}

/// Bits of a hand-built data-link stream: each message written as T1.403 prints it, sent
/// rightmost bit first.
fn hand_built(messages: &[(&str, usize)]) -> Vec<u8> {
    let mut bits = Vec::new();
    for (written, times) in messages {
        let line: Vec<u8> = written
            .bytes()
            .filter(|b| *b != b' ')
            .rev()
            .map(|b| b - b'0')
            .collect();
        for _ in 0..*times {
            bits.extend_from_slice(&line);
        }
    }
    bits
}

#[test]
fn fdl_messages_decode_from_a_hand_built_bit_string() {
    // Flags (idle), then 6 line-loopback-activate, flags, 12 payload-loopback-deactivate.
    let flags: Vec<u8> = "01111110".repeat(4).bytes().map(|b| b - b'0').collect();
    let mut bits = flags.clone();
    bits.extend(hand_built(&[("00001110 11111111", 6)]));
    bits.extend(&flags);
    let second = bits.len();
    bits.extend(hand_built(&[("00110010 11111111", 12)]));
    let mut detector = BomDetector::new(5);
    detector.feed(&bits);
    assert_eq!(
        detector.take_detections(),
        [
            Detection::Bom {
                message: Bom::LineLoopbackActivate,
                at_bit: (32 + 5 * 16) as u64
            },
            Detection::Bom {
                message: Bom::PayloadLoopbackDeactivate,
                at_bit: (second + 5 * 16) as u64
            },
        ]
    );
    // Read left to right instead, the same text is another (unknown) code.
    let wrong_way: Vec<u8> = "1111111100001110"
        .repeat(8)
        .bytes()
        .map(|b| b - b'0')
        .collect();
    let mut detector = BomDetector::new(5);
    detector.feed(&wrong_way);
    assert!(matches!(
        detector.take_detections()[..],
        [Detection::UnknownBom {
            octet: 0b0000_1110,
            ..
        }]
    ));
}

#[test]
fn fdl_detection_needs_its_repetitions_and_survives_a_corrupted_one() {
    for bom in Bom::ALL {
        let line = bom.line_bits();
        // Four repetitions are not enough.
        let mut detector = BomDetector::new(5);
        detector.feed(&line.repeat(4));
        detector.feed(&[0; 64]);
        assert!(detector.take_detections().is_empty(), "{bom}");
        // A corrupted repetition (the fourth, hit by an error) does not break the count: four
        // valid of five are not enough, the next one makes five.
        let mut stream = line.repeat(5);
        stream[3 * 16 + 2] ^= 1;
        let mut detector = BomDetector::new(5);
        detector.feed(&stream);
        assert!(
            detector.take_detections().is_empty(),
            "{bom}: four valid of five"
        );
        detector.feed(&line);
        assert!(
            matches!(detector.take_detections()[..], [Detection::Bom { message, .. }] if message == bom),
            "{bom}"
        );
    }
}
