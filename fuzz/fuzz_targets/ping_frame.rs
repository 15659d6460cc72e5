//! The ping frame (a byte stream cut anywhere, so the reassembler sees partial and junk frames)
//! and the datagram header.
#![no_main]

use libfuzzer_sys::fuzz_target;
use loopscope_link::transport::datagram::parse_header;
use loopscope_wire::ping_frame::StreamDecoder as FrameParser;

fuzz_target!(|data: &[u8]| {
    let _ = parse_header(data);
    let Some((&cut, stream)) = data.split_first() else {
        return;
    };
    let mut parser = FrameParser::expecting(usize::from(cut) * 4);
    for chunk in stream.chunks(usize::from(cut).max(1)) {
        parser.push(chunk);
        while parser.next_frame().is_some() {}
    }
});
