//! Ethernet loopback frames (Y.1731 / IEEE 802.1ag LBM and LBR, EtherType 0x8902, untagged or
//! with one 802.1Q tag; seeds in fuzz/seeds/cfm_packet, built with Python struct) on any bytes
//! a peer can send: the frame, the PDU and its TLVs parse without panicking; what parses emits
//! back to the same octets (Version and Flags, which emit writes as 0, aside) and parses to the
//! same fields; a Test TLV whose CRC-32 checks is rebuilt octet for octet, and so is the
//! Ethernet header with its tag.
#![no_main]

use libfuzzer_sys::fuzz_target;
use loopscope_fuzz as _;
use loopscope_wire::cfm::{self, CfmFrame, LoopbackPdu, LoopbackRepr, TestTlv, tlv_type};

fn check_pdu(bytes: &[u8]) {
    let Ok(pdu) = LoopbackPdu::new_checked(bytes) else {
        return;
    };
    let repr = LoopbackRepr::parse(&pdu).expect("a checked PDU parses");
    let emitted = repr.emit();
    assert_eq!(emitted.len(), repr.len());
    let mut expected = bytes[..repr.len()].to_vec();
    expected[0] &= 0xE0;
    expected[2] = 0;
    assert_eq!(emitted, expected);
    let again = LoopbackRepr::parse(&LoopbackPdu::new_checked(&emitted[..]).expect("emitted"))
        .expect("parses");
    assert_eq!(again, repr);
    for (kind, value) in &repr.tlvs {
        if *kind != tlv_type::TEST {
            continue;
        }
        let Ok(test) = TestTlv::parse(value) else {
            continue;
        };
        let with_crc = test.crc32.is_some();
        let rebuilt = cfm::test_tlv_value(test.pattern, with_crc, test.pattern_bytes);
        if test.crc_matches() != Some(false) {
            assert_eq!(&rebuilt, value);
        } else {
            assert_ne!(&rebuilt, value);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(frame) = CfmFrame::parse(data) {
        let _ = cfm::class1_level(&frame.destination);
        // The header, with its 802.1Q tag if any, is rebuilt octet for octet.
        let mut rebuilt = Vec::new();
        cfm::build_frame(
            frame.destination,
            frame.source,
            frame.vlan,
            frame.payload,
            &mut rebuilt,
        );
        assert_eq!(rebuilt, data);
        check_pdu(frame.payload);
    }
    check_pdu(data);
});
