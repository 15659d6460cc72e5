//! tshark's CFM dissector (an independent decoder) reads the loopback PDUs we emit: a pcap of
//! Ethernet frames (EtherType 0x8902) is written by hand and decoded field by field.

use std::process::Command;

use loopscope_wire::cfm::{
    self, CHASSIS_ID_MAC_ADDRESS, ETHERTYPE_CFM, LoopbackKind, LoopbackRepr, MepMipId, SenderId,
    TagStack, TestPattern, VlanTag, tlv_type,
};

fn pcap(frames: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    // pcap global header: magic, version 2.4, zone, sigfigs, snaplen, LINKTYPE_ETHERNET (1).
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&[0u8; 8]);
    out.extend_from_slice(&65_535u32.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    for (index, frame) in frames.iter().enumerate() {
        out.extend_from_slice(&(1_700_000_000u32 + index as u32).to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        out.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        out.extend_from_slice(frame);
    }
    out
}

/// tshark's reading of `frames` (written to a pcap named after `name` in a directory of its
/// own): one line a frame, `fields` separated by `|`.
fn tshark_fields(name: &str, frames: &[Vec<u8>], fields: &[&str]) -> String {
    let dir = std::env::temp_dir().join(format!("loopscope-cfm-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("lb.pcap");
    std::fs::write(&path, pcap(frames)).expect("write pcap");
    let output = Command::new("tshark")
        .args(["-r", path.to_str().expect("path"), "-T", "fields"])
        .args(["-E", "separator=|"])
        .args(fields.iter().flat_map(|field| ["-e", field]))
        .output()
        .expect("tshark -r");
    std::fs::remove_dir_all(&dir).expect("clean up");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn ethernet(destination: [u8; 6], pdu: &[u8]) -> Vec<u8> {
    let mut frame = destination.to_vec();
    frame.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x01]);
    frame.extend_from_slice(&ETHERTYPE_CFM.to_be_bytes());
    frame.extend_from_slice(pdu);
    frame
}

#[test]
fn tshark_decodes_lbm_and_lbr() {
    if Command::new("tshark").arg("-v").output().is_err() {
        eprintln!("skipping: no tshark");
        return;
    }
    let message = LoopbackRepr {
        kind: LoopbackKind::Message,
        level: 5,
        transaction_id: 0xDEAD_BEEF,
        tlvs: vec![(tlv_type::DATA, vec![0x11, 0x22, 0x33, 0x44])],
    };
    let reply = LoopbackRepr {
        kind: LoopbackKind::Reply,
        ..message.clone()
    };
    // The class 1 multicast address of MD level 5 (IEEE 802.1ag Table 8-9): 01-80-C2-00-00-35.
    let frames = [
        ethernet([0x01, 0x80, 0xC2, 0x00, 0x00, 0x35], &message.emit()),
        ethernet([0x02, 0, 0, 0, 0, 0x01], &reply.emit()),
    ];
    let text = tshark_fields(
        "lb",
        &frames,
        &[
            "cfm.md.level",
            "cfm.version",
            "cfm.opcode",
            "cfm.first.tlv.offset",
            "cfm.lb.transaction.id",
            "cfm.tlv.type",
            "cfm.tlv.data.value",
            "_ws.malformed",
            "_ws.expert",
        ],
    );
    let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split('|').collect()).collect();
    assert_eq!(rows.len(), 2, "{text}");
    for (row, opcode) in rows.iter().zip(["3", "2"]) {
        assert_eq!(row[0], "5", "level: {text}");
        assert_eq!(row[1], "0", "version: {text}");
        assert_eq!(row[2], opcode, "opcode: {text}");
        assert_eq!(row[3], "4", "first TLV offset: {text}");
        assert_eq!(row[4], "3735928559", "transaction id 0xDEADBEEF: {text}");
        assert_eq!(row[5], "3,0", "Data TLV then End TLV: {text}");
        assert_eq!(row[6], "11223344", "data: {text}");
        assert_eq!(row[7], "", "malformed: {text}");
        assert_eq!(row[8], "", "expert info: {text}");
    }
}

/// An LBM as `eth-lb --vlan 100:3.200:5 --sender-id --target-mep 12 --pattern prbs31-crc`
/// builds it, read by tshark: the 802.1ad S-tag and the 802.1Q C-tag, the Sender ID TLV's
/// Chassis ID, the TLV types and lengths in order, the Test TLV's pattern type, and its CRC-32
/// equal to the one Python's zlib computes over the TLV's Type through the pattern (the span
/// scapy's OAM layer covers), over 200 octets of varied pattern.
#[test]
fn tshark_decodes_q_in_q_id_tlvs_and_the_test_tlv_crc() {
    if Command::new("tshark").arg("-v").output().is_err()
        || Command::new("python3").arg("-V").output().is_err()
    {
        eprintln!("skipping: no tshark or no python3");
        return;
    }
    let own = [0x02, 0, 0, 0, 0, 0x01];
    let pattern: Vec<u8> = (0..200u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let test = cfm::test_tlv_value(TestPattern::Prbs31, true, &pattern);
    let sender = SenderId {
        chassis_id: Some((CHASSIS_ID_MAC_ADDRESS, &own[..])),
        management_domain: None,
        management_address: None,
    };
    let message = LoopbackRepr {
        kind: LoopbackKind::Message,
        level: 2,
        transaction_id: 7,
        tlvs: vec![
            (tlv_type::SENDER_ID, sender.emit()),
            (tlv_type::TARGET_MEP_MIP_ID, MepMipId::Mep(12).emit()),
            (tlv_type::TEST, test.clone()),
        ],
    };
    let tags = TagStack::q_in_q(
        VlanTag {
            id: 100,
            pcp: 3,
            dei: false,
        },
        VlanTag {
            id: 200,
            pcp: 5,
            dei: false,
        },
    );
    let mut frame = Vec::new();
    cfm::build_frame(
        [0x02, 0, 0, 0, 0, 0x02],
        own,
        &tags,
        &message.emit(),
        &mut frame,
    );
    // zlib's CRC-32 over Type (32), Length, Pattern Type (3) and the pattern.
    let mut span = vec![tlv_type::TEST];
    span.extend_from_slice(&(test.len() as u16).to_be_bytes());
    span.extend_from_slice(&test[..test.len() - 4]);
    let hex: String = span.iter().map(|b| format!("{b:02x}")).collect();
    let python = Command::new("python3")
        .args([
            "-c",
            "import sys, zlib; print('%08x' % zlib.crc32(bytes.fromhex(sys.argv[1])))",
            &hex,
        ])
        .output()
        .expect("python3");
    let zlib_crc = String::from_utf8_lossy(&python.stdout).trim().to_string();
    assert_eq!(zlib_crc.len(), 8, "{python:?}");
    let text = tshark_fields(
        "qinq",
        &[frame],
        &[
            "ieee8021ad.id",
            "ieee8021ad.priority",
            "vlan.id",
            "vlan.priority",
            "cfm.md.level",
            "cfm.opcode",
            "cfm.tlv.type",
            "cfm.tlv.length",
            "cfm.tlv.chassis.id.subtype",
            "cfm.tlv.chassis.id",
            "cfm.tlv.tst.test.pattern.type",
            "cfm.tlv.tst.crc32",
            "_ws.malformed",
            "_ws.expert",
        ],
    );
    let row: Vec<&str> = text.trim_end().split('|').collect();
    assert_eq!(
        row,
        [
            "100",
            "3",
            "200",
            "5",
            "2",
            "3",
            "1,33,32,0",
            "8,25,205",
            "4",
            "020000000001",
            "3",
            zlib_crc.as_str(),
            "",
            ""
        ],
        "{text}"
    );
}
