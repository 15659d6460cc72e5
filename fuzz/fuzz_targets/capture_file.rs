//! pcap and pcapng files: the reader, then every frame through the packet decoder.
#![no_main]

use libfuzzer_sys::fuzz_target;
use loopscope_fuzz as _;
use loopscope_capture::decode;
use loopscope_capture::pcapfile::{Interface, PacketVisitor, RecordMeta, read_capture};

struct DecodeEveryFrame;

impl PacketVisitor for DecodeEveryFrame {
    fn packet(&mut self, interfaces: &[Interface], meta: RecordMeta, frame: &[u8]) -> bool {
        let linktype = interfaces
            .get(meta.interface as usize)
            .map_or(decode::linktype::ETHERNET, |interface| interface.linktype);
        let _ = decode::decode(linktype, frame);
        let _ = decode::udp_payload(linktype, frame);
        true
    }
}

fuzz_target!(|data: &[u8]| {
    let _ = read_capture(data, &mut DecodeEveryFrame);
});
