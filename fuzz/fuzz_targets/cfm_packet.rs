//! Ethernet loopback frames (Y.1731 / IEEE 802.1ag LBM and LBR, EtherType 0x8902, untagged or
//! with up to two VLAN tags, 802.1Q or 802.1ad; seeds in fuzz/seeds/cfm_packet, built with
//! Python struct) on any bytes a peer can send: the frame, the PDU and its TLVs parse without
//! panicking; what parses emits back to the same octets (Version and Flags, which emit writes
//! as 0, aside; and only for today's First TLV Offset of 4, since emit writes no later
//! version's header) and parses to the same fields; the PDU's length ends at its End TLV; a
//! Test TLV whose CRC-32 checks is rebuilt octet for octet, and so are the Sender ID and
//! MEP/MIP ID TLVs that parse, and the Ethernet header with its tags.
#![no_main]

use libfuzzer_sys::fuzz_target;
use loopscope_fuzz as _;
use loopscope_wire::cfm::{
    self, CfmFrame, LoopbackPdu, LoopbackRepr, MepMipId, SenderId, TestTlv, tlv_type,
};

fn check_pdu(bytes: &[u8]) {
    let Ok(pdu) = LoopbackPdu::new_checked(bytes) else {
        return;
    };
    let repr = LoopbackRepr::parse(&pdu).expect("a checked PDU parses");
    let pdu_len = pdu.pdu_len();
    assert!(pdu_len <= bytes.len());
    assert_eq!(bytes[pdu_len - 1], tlv_type::END);
    let emitted = repr.emit();
    assert_eq!(emitted.len(), repr.len());
    if pdu.first_tlv_at() == cfm::HEADER_LEN {
        assert_eq!(pdu_len, repr.len());
        let mut expected = bytes[..repr.len()].to_vec();
        expected[0] &= 0xE0;
        expected[2] = 0;
        assert_eq!(emitted, expected);
    }
    let again = LoopbackRepr::parse(&LoopbackPdu::new_checked(&emitted[..]).expect("emitted"))
        .expect("parses");
    assert_eq!(again, repr);
    for (kind, value) in &repr.tlvs {
        if *kind == tlv_type::SENDER_ID {
            if let Ok(sender) = SenderId::parse(value) {
                assert_eq!(&sender.emit(), value);
            }
            continue;
        }
        if *kind == tlv_type::TARGET_MEP_MIP_ID || *kind == tlv_type::REPLYING_MEP_MIP_ID {
            if let Ok(MepMipId::Mep(id)) = MepMipId::parse(value) {
                assert_eq!(MepMipId::parse(&MepMipId::Mep(id).emit()), Ok(MepMipId::Mep(id)));
            }
            continue;
        }
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
        // The header, with its VLAN tags if any, is rebuilt octet for octet.
        let mut rebuilt = Vec::new();
        cfm::build_frame(
            frame.destination,
            frame.source,
            &frame.tags,
            frame.payload,
            &mut rebuilt,
        );
        let _ = frame.tags.vlan_ids();
        assert_eq!(rebuilt, data);
        check_pdu(frame.payload);
    }
    check_pdu(data);
});
