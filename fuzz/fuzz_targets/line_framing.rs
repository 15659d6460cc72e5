//! T1 (SF, ESF) and E1 (with and without CRC-4) deframing of bytes read from a line, with a
//! timeslot selection read from text as `--timeslots` gives it. The first byte picks the
//! framing, FDL collection and the chunk size; the second the length of the timeslot text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use loopscope_fuzz as _;
use loopscope_pattern::framing::{Deframer, Framing, Timeslots};

fuzz_target!(|data: &[u8]| {
    let [selector, text_len, rest @ ..] = data else {
        return;
    };
    let framing = Framing::ALL[usize::from(selector % 4)];
    let text_len = usize::from(*text_len % 32).min(rest.len());
    let (text, line) = rest.split_at(text_len);
    let timeslots = match std::str::from_utf8(text) {
        Ok(text) if !text.is_empty() => match Timeslots::parse(text, framing) {
            Ok(timeslots) => timeslots,
            Err(_) => return,
        },
        _ => Timeslots::all(framing),
    };
    let mut deframer = Deframer::new(framing, &timeslots);
    deframer.collect_fdl(selector & 0x04 != 0);
    let chunk = usize::from(selector >> 3).max(1);
    let mut payload = Vec::new();
    for piece in line.chunks(chunk) {
        deframer.feed(piece, &mut payload);
        let _ = deframer.take_events();
        let _ = deframer.take_fdl_bits();
    }
    // The payload can never be more bits than the line carried.
    assert!(payload.len() <= line.len());
    let _ = deframer.counters();
});
