//! The ping frame as a byte stream cut anywhere (the first byte picks the cut and the run's
//! payload length), so the stream decoder sees merged, partial and junk frames; and the
//! datagram link's header reader on the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use loopscope_fuzz as _;
use loopscope_link::transport::datagram::parse_header;
use loopscope_wire::ping_frame::StreamDecoder;

fuzz_target!(|data: &[u8]| {
    let _ = parse_header(data);
    let Some((&cut, stream)) = data.split_first() else {
        return;
    };
    let mut decoder = StreamDecoder::expecting(usize::from(cut) * 4);
    let mut frames = 0usize;
    for chunk in stream.chunks(usize::from(cut).max(1)) {
        decoder.push(chunk);
        while decoder.next_frame().is_some() {
            frames += 1;
            // Every frame found consumes at least one byte of input.
            assert!(frames <= stream.len());
        }
    }
});
