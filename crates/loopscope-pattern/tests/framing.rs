//! T1/E1 framing against independent references: the CRCs by polynomial long division over
//! bit vectors, the frame layouts bit by bit against the standards' tables (written out again
//! here as literals, not taken from the crate), and the deframer's counts against errors placed
//! at known positions.

use loopscope_pattern::framing::crc::{Crc4, Crc6};
use loopscope_pattern::framing::{
    Deframer, DeframerEvent, FdlTx, Framer, Framing, PayloadSource, Timeslots,
};
use loopscope_pattern::loopcode::{Bom, BomDetector, Detection};
use rand_xoshiro::Xoshiro256PlusPlus;
use rand_xoshiro::rand_core::{RngCore, SeedableRng};

/// Remainder of `message(x) · x^width` divided by `generator` (coefficients highest first,
/// `width + 1` of them), by schoolbook long division on a bit vector.
fn long_division(message: &[u8], generator: &[u8]) -> Vec<u8> {
    let width = generator.len() - 1;
    let mut work: Vec<u8> = message.to_vec();
    work.extend(std::iter::repeat_n(0, width));
    for i in 0..message.len() {
        if work[i] == 1 {
            for (j, g) in generator.iter().enumerate() {
                work[i + j] ^= g;
            }
        }
    }
    work[message.len()..].to_vec()
}

/// x^6 + x + 1 and x^4 + x + 1, highest coefficient first.
const CRC6_GENERATOR: [u8; 7] = [1, 0, 0, 0, 0, 1, 1];
const CRC4_GENERATOR: [u8; 5] = [1, 0, 0, 1, 1];

fn to_bits(bytes: &[u8]) -> Vec<u8> {
    bytes
        .iter()
        .flat_map(|byte| (0..8).rev().map(move |i| (byte >> i) & 1))
        .collect()
}

fn from_bits(bits: &[u8]) -> Vec<u8> {
    bits.chunks(8)
        .map(|chunk| chunk.iter().fold(0u8, |acc, &b| (acc << 1) | b))
        .collect()
}

/// Random payload that remembers everything it handed out.
struct Recorded {
    rng: Xoshiro256PlusPlus,
    produced: Vec<u8>,
}

impl Recorded {
    fn new(seed: u64) -> Self {
        Recorded {
            rng: Xoshiro256PlusPlus::seed_from_u64(seed),
            produced: Vec::new(),
        }
    }
}

impl PayloadSource for Recorded {
    fn fill(&mut self, buf: &mut [u8]) {
        self.rng.fill_bytes(buf);
        self.produced.extend_from_slice(buf);
    }
}

#[test]
fn crc6_and_crc4_match_long_division_over_random_frames() {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(6);
    for round in 0..200 {
        // An ESF block: 24 frames of (F-bit = 1, 24 octets); an E1 sub-multiframe: 256 octets.
        let mut octets = vec![0u8; 24 * 24];
        rng.fill_bytes(&mut octets);
        let mut crc6 = Crc6::new();
        let mut message = Vec::new();
        for frame in octets.chunks(24) {
            crc6.bit(1);
            crc6.bytes(frame);
            message.push(1);
            message.extend(to_bits(frame));
        }
        assert_eq!(message.len(), 4632);
        let want = long_division(&message, &CRC6_GENERATOR);
        let got: Vec<u8> = (1..=6).map(|k| crc6.check_bit(k)).collect();
        assert_eq!(got, want, "CRC-6 round {round}");

        let mut smf = vec![0u8; 256];
        rng.fill_bytes(&mut smf);
        let mut crc4 = Crc4::new();
        crc4.bytes(&smf);
        let want = long_division(&to_bits(&smf), &CRC4_GENERATOR);
        let got: Vec<u8> = (1..=4).map(|k| crc4.check_bit(k)).collect();
        assert_eq!(got, want, "CRC-4 round {round}");
    }
}

/// `count` bytes of framed signal and the payload the framer consumed.
fn framed(
    framing: Framing,
    slots: &str,
    count: usize,
    seed: u64,
    configure: impl FnOnce(&mut Framer),
) -> (Vec<u8>, Vec<u8>) {
    let timeslots = Timeslots::parse(slots, framing).unwrap();
    let mut framer = Framer::new(framing, &timeslots, 0x7F);
    configure(&mut framer);
    let mut source = Recorded::new(seed);
    let mut out = vec![0u8; count];
    framer.fill(&mut out, &mut source);
    (out, source.produced)
}

#[test]
fn esf_layout_bit_by_bit() {
    // ANSI T1.403 Table 3: F-bits of frames 4, 8, ... 24 are 0 0 1 0 1 1; frames 2, 6, ... 22
    // carry C1..C6 of the previous ESF; odd frames carry the data link (idle: HDLC flags).
    const FPS: [u8; 6] = [0, 0, 1, 0, 1, 1];
    const FLAG: [u8; 8] = [0, 1, 1, 1, 1, 1, 1, 0];
    let esfs = 5;
    let (line, payload) = framed(Framing::Esf, "1-12", esfs * 579, 1, |_| {});
    let bits = to_bits(&line);
    assert_eq!(bits.len(), esfs * 24 * 193);
    let mut fdl_index = 0;
    for frame in 0..esfs * 24 {
        let start = frame * 193;
        let number = frame % 24 + 1;
        let f_bit = bits[start];
        match number % 4 {
            0 => assert_eq!(f_bit, FPS[number / 4 - 1], "FPS in frame {number}"),
            2 if frame >= 24 => {
                // CRC of the previous ESF, its F-bits counted as 1.
                let previous = frame / 24 - 1;
                let mut message = Vec::new();
                for f in previous * 24..previous * 24 + 24 {
                    message.push(1);
                    message.extend_from_slice(&bits[f * 193 + 1..f * 193 + 193]);
                }
                let check = long_division(&message, &CRC6_GENERATOR);
                assert_eq!(f_bit, check[(number - 2) / 4], "C bit in frame {number}");
            }
            2 => {}
            _ => {
                assert_eq!(f_bit, FLAG[fdl_index % 8], "FDL bit in frame {number}");
                fdl_index += 1;
            }
        }
        for slot in 1..=24usize {
            let at = start + 1 + 8 * (slot - 1);
            let octet = from_bits(&bits[at..at + 8])[0];
            let want = if slot <= 12 {
                payload[frame * 12 + slot - 1]
            } else {
                0x7F
            };
            assert_eq!(octet, want, "frame {frame} timeslot {slot}");
        }
    }
}

#[test]
fn sf_layout_bit_by_bit() {
    // ANSI T1.107: Ft = 1 0 1 0 1 0 (odd frames), Fs = 0 0 1 1 1 0 (even frames).
    const FT: [u8; 6] = [1, 0, 1, 0, 1, 0];
    const FS: [u8; 6] = [0, 0, 1, 1, 1, 0];
    let (line, payload) = framed(Framing::Sf, "6x56k", 3 * 12 * 193 / 8 + 1, 2, |_| {});
    let bits = to_bits(&line);
    let payload_bits = to_bits(&payload);
    for frame in 0..36 {
        let start = frame * 193;
        let number = frame % 12 + 1;
        let want = if number % 2 == 1 {
            FT[number / 2]
        } else {
            FS[number / 2 - 1]
        };
        assert_eq!(bits[start], want, "F-bit of frame {number}");
        for slot in 1..=24usize {
            let at = start + 1 + 8 * (slot - 1);
            if slot <= 6 {
                // 56k: bits 1-7 are payload, bit 8 is 1.
                let from = (frame * 6 + slot - 1) * 7;
                assert_eq!(&bits[at..at + 7], &payload_bits[from..from + 7]);
                assert_eq!(bits[at + 7], 1, "bit 8 of a 56k channel");
            } else {
                assert_eq!(from_bits(&bits[at..at + 8])[0], 0x7F);
            }
        }
    }
}

#[test]
fn e1_crc4_layout_bit_by_bit() {
    // G.704 Table 5B: Si of frames 1,3,5,7,9,11 = 0 0 1 0 1 1; frames 13 and 15: E-bits;
    // even frames: C1..C4 of the previous sub-multiframe. FAS = x0011011; NFAS = x1A11111.
    const MFAS: [u8; 6] = [0, 0, 1, 0, 1, 1];
    let multiframes = 4;
    let (line, payload) = framed(Framing::E1Crc4, "1-31", multiframes * 16 * 32, 3, |_| {});
    for frame in 0..multiframes * 16 {
        let ts0 = line[frame * 32];
        let number = frame % 16;
        let si = ts0 >> 7;
        if number % 2 == 0 {
            assert_eq!(ts0 & 0x7F, 0b001_1011, "FAS in frame {frame}");
            if frame >= 8 {
                let smf = frame / 8 - 1;
                let mut message = to_bits(&line[smf * 256..smf * 256 + 256]);
                for f in (0..8).step_by(2) {
                    message[f * 256] = 0; // the C-bit positions count as 0
                }
                let check = long_division(&message, &CRC4_GENERATOR);
                assert_eq!(si, check[(number % 8) / 2], "C bit in frame {number}");
            }
        } else {
            assert_eq!(
                ts0 & 0x7F,
                0b101_1111,
                "NFAS in frame {frame} (A = 0, Sa = 1)"
            );
            let want = if number < 12 { MFAS[number / 2] } else { 1 };
            assert_eq!(si, want, "Si of frame {number}");
        }
        assert_eq!(
            &line[frame * 32 + 1..frame * 32 + 32],
            &payload[frame * 31..frame * 31 + 31]
        );
    }
}

#[test]
fn e1_without_crc4_sends_si_as_one() {
    let (line, _) = framed(Framing::E1, "1-31", 8 * 32, 4, |_| {});
    for frame in 0..8 {
        let ts0 = line[frame * 32];
        let want = if frame % 2 == 0 { 0x9B } else { 0xDF };
        assert_eq!(ts0, want, "TS0 of frame {frame}");
    }
}

fn deframe(framing: Framing, slots: &str, line: &[u8], piece: usize) -> (Deframer, Vec<u8>) {
    let mut deframer = Deframer::new(framing, &Timeslots::parse(slots, framing).unwrap());
    let mut payload = Vec::new();
    for chunk in line.chunks(piece) {
        deframer.feed(chunk, &mut payload);
    }
    (deframer, payload)
}

#[test]
fn every_framing_round_trips_through_the_deframer() {
    for (framing, slots) in [
        (Framing::Sf, "1-24"),
        (Framing::Esf, "1-12"),
        (Framing::Esf, "2,5,9-11:56k"),
        (Framing::E1, "1-31"),
        (Framing::E1Crc4, "1-15,17-31"),
    ] {
        let bytes = framing.bytes_per_second() / 4;
        let (line, payload) = framed(framing, slots, bytes, 7, |_| {});
        let (deframer, received) = deframe(framing, slots, &line, 1000);
        let c = deframer.counters();
        assert!(c.in_frame, "{framing}");
        assert_eq!(c.alignments, 1, "{framing}");
        assert_eq!(
            c.out_of_frame_bits, 0,
            "{framing}: aligned at the first bit"
        );
        assert_eq!(
            (c.frame_bit_errors, c.crc_errors, c.oof_events),
            (0, 0, 0),
            "{framing}"
        );
        if let Some(frames) = framing.crc_block_frames() {
            // Every block but the first is checked (the last may be incomplete).
            let blocks = (c.frames as usize) / frames;
            assert_eq!(c.crc_blocks as usize, blocks - 1, "{framing}");
        }
        let per_frame = Timeslots::parse(slots, framing).unwrap().bits_per_frame() as u64;
        assert_eq!(received.len() as u64, c.frames * per_frame / 8, "{framing}");
        assert!(c.frames * framing.frame_bits() as u64 > bytes as u64 * 8 - 4 * 4632);
        assert_eq!(received, payload[..received.len()], "{framing} payload");
    }
}

#[test]
fn alignment_is_found_at_any_bit_offset() {
    for (framing, offset) in [
        (Framing::Sf, 77usize),
        (Framing::Esf, 3001),
        (Framing::E1, 5),
        (Framing::E1Crc4, 2049),
    ] {
        let (line, payload) = framed(framing, "1-12", 40_000, 8, |_| {});
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(offset as u64);
        let mut noise = vec![0u8; offset.div_ceil(8)];
        rng.fill_bytes(&mut noise);
        let mut bits = to_bits(&noise)[..offset].to_vec();
        bits.extend(to_bits(&line));
        let shifted = from_bits(&bits[..bits.len() / 8 * 8]);
        let (mut deframer, received) = deframe(framing, "1-12", &shifted, 333);
        let c = deframer.counters().clone();
        assert_eq!(c.out_of_frame_bits, offset as u64, "{framing}");
        assert_eq!(
            c.frame_bit_errors + c.crc_errors + c.oof_events,
            0,
            "{framing}"
        );
        assert_eq!(received, payload[..received.len()], "{framing}");
        assert_eq!(
            deframer.take_events(),
            [DeframerEvent::FrameAligned {
                at_bit: offset as u64
            }]
        );
    }
}

/// Flips bit `index` of `line`.
fn flip(line: &mut [u8], index: usize) {
    line[index / 8] ^= 0x80 >> (index % 8);
}

#[test]
fn esf_errors_are_counted_where_they_fall() {
    // 14 ESFs; the hunt reads ESFs 0-3, so the errors come later: an FPS bit (frame 4 of
    // ESF 6), a payload bit of a selected timeslot (ESF 7), a bit of an unselected timeslot
    // (ESF 9), a CRC bit (frame 2 of ESF 11).
    let (mut line, payload) = framed(Framing::Esf, "1-12", 14 * 579, 9, |_| {});
    let esf = 24 * 193;
    let fps_bit = 6 * esf + 3 * 193;
    let payload_bit = 7 * esf + 5 * 193 + 1 + 8 * 2 + 4; // frame 6, timeslot 3, bit 5
    let idle_bit = 9 * esf + 9 * 193 + 1 + 8 * 20; // timeslot 21
    let crc_bit = 11 * esf + 193;
    for index in [fps_bit, payload_bit, idle_bit, crc_bit] {
        flip(&mut line, index);
    }
    let (deframer, received) = deframe(Framing::Esf, "1-12", &line, 4096);
    let c = deframer.counters();
    assert_eq!(
        c.frame_bit_errors, 1,
        "only the FPS bit is a framing-bit error"
    );
    assert_eq!(c.oof_events, 0);
    // The FPS bit is outside the CRC (F-bits count as 1). ESFs 7 and 9 fail their checks (sent
    // in ESFs 8 and 10); the flipped check bit in ESF 11 fails ESF 10's check.
    assert_eq!(
        c.crc_blocks, 13,
        "ESFs 0..=12 checked by the bits in ESFs 1..=13"
    );
    assert_eq!(c.crc_errors, 3);
    let differences: Vec<usize> = received
        .iter()
        .zip(&payload)
        .enumerate()
        .filter(|(_, (a, b))| a != b)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(differences, [(7 * 24 + 5) * 12 + 2], "one payload octet");
}

#[test]
fn two_errored_fps_bits_of_four_lose_frame_and_it_is_found_again() {
    let (mut line, _) = framed(Framing::Esf, "1-24", 30 * 579, 10, |_| {});
    let esf = 24 * 193;
    // FPS bits of frames 4 and 12 of ESF 6 (after the hunt's 4 ESFs): two of four in a row.
    flip(&mut line, 6 * esf + 3 * 193);
    flip(&mut line, 6 * esf + 11 * 193);
    let (mut deframer, _) = deframe(Framing::Esf, "1-24", &line, 2000);
    let c = deframer.counters().clone();
    assert_eq!(c.oof_events, 1);
    assert_eq!(c.alignments, 2);
    assert!(c.in_frame);
    assert_eq!(c.frame_bit_errors, 2);
    let events = deframer.take_events();
    assert_eq!(events.len(), 3, "{events:?}");
    assert_eq!(
        events[1],
        DeframerEvent::FrameLost {
            at_bit: (6 * esf + 12 * 193) as u64
        }
    );
}

#[test]
fn e1_three_bad_fas_words_lose_frame_and_e_bits_are_counted() {
    let (mut line, _) = framed(Framing::E1Crc4, "1-31", 200 * 32 * 16, 11, |framer| {
        framer.report_far_end_block_error();
        framer.report_far_end_block_error();
    });
    // Two errored FAS words in a row keep alignment; three lose it.
    for frame in [40usize, 42] {
        flip(&mut line, frame * 256 + 3);
    }
    for frame in [80usize, 82, 84] {
        flip(&mut line, frame * 256 + 5);
    }
    let (deframer, _) = deframe(Framing::E1Crc4, "1-31", &line, 999);
    let c = deframer.counters();
    assert_eq!(c.frame_bit_errors, 5);
    assert_eq!(c.oof_events, 1);
    assert!(c.in_frame);
    assert_eq!(c.far_end_block_errors, 2, "the two E-bits sent as 0");
    // FAS bits are inside the CRC-4: the sub-multiframe of frames 40-47 fails its check. The
    // one of frames 80-87 is never checked: alignment is lost at frame 84.
    assert_eq!(c.crc_errors, 1);
}

#[test]
fn an_unframed_stream_never_aligns() {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(12);
    let mut noise = vec![0u8; 400_000];
    rng.fill_bytes(&mut noise);
    for framing in Framing::ALL {
        let (deframer, payload) = deframe(framing, "1-12", &noise, 65536);
        let c = deframer.counters();
        assert!(!c.in_frame, "{framing}");
        assert_eq!(c.alignments, 0, "{framing}");
        assert!(payload.is_empty());
        assert!(c.out_of_frame_bits > 3_000_000, "{framing}");
    }
}

#[test]
fn fdl_messages_travel_in_the_data_link() {
    let (line, _) = framed(Framing::Esf, "1-24", 40 * 579, 13, |framer| {
        framer.set_fdl(FdlTx::Repeat(Bom::PayloadLoopbackActivate.line_bits()));
    });
    let mut deframer = Deframer::new(Framing::Esf, &Timeslots::all(Framing::Esf));
    deframer.collect_fdl(true);
    let mut payload = Vec::new();
    for chunk in line.chunks(579) {
        deframer.feed(chunk, &mut payload);
    }
    let fdl = deframer.take_fdl_bits();
    assert_eq!(fdl.len(), 40 * 12);
    // Independently: the data link carries "00010100 11111111" rightmost bit first.
    let written = "0001010011111111";
    let line_order: Vec<u8> = written.bytes().rev().map(|b| b - b'0').collect();
    for (i, &bit) in fdl.iter().enumerate() {
        assert_eq!(bit, line_order[i % 16], "FDL bit {i}");
    }
    let mut detector = BomDetector::new(5);
    detector.feed(&fdl);
    assert_eq!(
        detector.take_detections(),
        [Detection::Bom {
            message: Bom::PayloadLoopbackActivate,
            at_bit: 5 * 16
        }]
    );
}

#[test]
fn a_whole_number_of_multiframes_fed_again_continues_the_stream() {
    for framing in Framing::ALL {
        let unit = 8 * framing.multiframe_frames();
        let frames = 8000 / unit * unit;
        let (line, _) = framed(
            framing,
            "1-24",
            frames * framing.frame_bits() / 8,
            14,
            |_| {},
        );
        let mut deframer = Deframer::new(framing, &Timeslots::all(framing));
        let mut payload = Vec::new();
        for _ in 0..3 {
            deframer.feed(&line, &mut payload);
        }
        let c = deframer.counters();
        assert_eq!(c.oof_events, 0, "{framing}");
        assert_eq!(c.frames as usize, 3 * frames, "{framing}");
        assert_eq!(c.frame_bit_errors, 0, "{framing}");
    }
}
