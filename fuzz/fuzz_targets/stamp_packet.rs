//! STAMP test packets (RFC 8762, RFC 8972) in both modes: the views, the Reprs and the TLV
//! iterator, on any bytes a reflector or a sender can be sent. What parses must emit and parse
//! back to the same fields, and TLV iteration must cover the tail exactly.
#![no_main]

use libfuzzer_sys::fuzz_target;
use loopscope_fuzz as _;
use loopscope_wire::stamp::{
    Mode, ReflectorPacket, ReflectorRepr, SenderPacket, SenderRepr, StampError, TlvIter,
};

fuzz_target!(|data: &[u8]| {
    for mode in [Mode::Unauthenticated, Mode::Authenticated, Mode::TwampLight] {
        if let Ok(view) = SenderPacket::new_checked(data, mode) {
            let repr = SenderRepr::parse(&view);
            let mut out = vec![0u8; data.len()];
            repr.emit(&mut out, mode).expect("room for the base packet");
            let again = SenderPacket::new_checked(&out[..], mode).expect("emitted");
            assert_eq!(SenderRepr::parse(&again), repr);
            let mut covered = 0;
            for item in TlvIter::new(view.tail()) {
                match item {
                    Ok((offset, tlv)) => {
                        assert_eq!(offset, covered);
                        covered += tlv.as_bytes().len();
                    }
                    Err(StampError::TruncatedTlv { offset }) => {
                        assert_eq!(offset, covered);
                        covered = view.tail().len();
                    }
                    Err(other) => panic!("{other}"),
                }
            }
            assert_eq!(covered, view.tail().len());
        }
        if let Ok(view) = ReflectorPacket::new_checked(data, mode) {
            let repr = ReflectorRepr::parse(&view);
            let mut out = vec![0u8; data.len()];
            repr.emit(&mut out, mode).expect("room for the base packet");
            let again = ReflectorPacket::new_checked(&out[..], mode).expect("emitted");
            assert_eq!(ReflectorRepr::parse(&again), repr);
        }
    }
});
