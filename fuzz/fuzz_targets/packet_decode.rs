//! One frame of any supported link type (the first two bytes pick it): Ethernet with any depth
//! of VLAN tags, SLL/SLL2, BSD loopback, raw IPv4/IPv6 with extension headers and fragments.
//! The per-packet fast path must agree with the full decoder on every frame it accepts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use loopscope_fuzz as _;
use loopscope_capture::decode::{self, linktype};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, frame)) = data.split_first() else {
        return;
    };
    let linktype = linktype::SUPPORTED[usize::from(selector) % linktype::SUPPORTED.len()];
    let full = decode::decode(linktype, frame);
    if let Some((source, destination)) = decode::fast_addresses(linktype, frame) {
        let full = full.expect("the fast path accepted a frame the decoder refuses");
        assert_eq!((full.source, full.destination), (source, destination));
    }
    let _ = decode::udp_payload(linktype, frame);
});
