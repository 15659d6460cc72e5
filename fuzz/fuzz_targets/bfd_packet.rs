//! BFD Control packets (RFC 5880) and loopscope's echo packets, on any bytes a peer can send:
//! what parses must emit back to the same octets and parse to the same fields; signing and
//! verifying must never panic, and a packet we sign must verify.
#![no_main]

use libfuzzer_sys::fuzz_target;
use loopscope_fuzz as _;
use loopscope_wire::bfd::{self, ControlRepr, EchoRepr, MAX_CONTROL_LEN};

fuzz_target!(|data: &[u8]| {
    let _ = EchoRepr::parse(data);
    let Ok(repr) = ControlRepr::parse_bytes(data) else {
        return;
    };
    let mut out = [0u8; MAX_CONTROL_LEN];
    let len = repr.emit(&mut out).expect("a parsed packet fits");
    // The keyed sections' Reserved octet is ignored on receipt and sent as zero (RFC 5880
    // §4.3, §4.4); every other octet must come back as it was.
    let mut expected = data[..len].to_vec();
    if repr.auth.is_some_and(|auth| auth.auth_type.is_keyed()) {
        expected[bfd::HEADER_LEN + 3] = 0;
    }
    assert_eq!(&out[..len], &expected[..]);
    assert_eq!(ControlRepr::parse_bytes(&out[..len]), Ok(repr));
    let _ = bfd::verify(data, &repr, b"fuzz");
    if bfd::sign(&mut out[..len], b"fuzz").is_ok()
        && repr.auth.is_some_and(|auth| auth.auth_type.is_keyed())
    {
        let signed = ControlRepr::parse_bytes(&out[..len]).expect("still valid");
        assert!(bfd::verify(&out[..len], &signed, b"fuzz"));
    }
});
