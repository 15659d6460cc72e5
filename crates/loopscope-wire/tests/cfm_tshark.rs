//! tshark's CFM dissector (an independent decoder) reads the loopback PDUs we emit: a pcap of
//! Ethernet frames (EtherType 0x8902) is written by hand and decoded field by field.

use std::process::Command;

use loopscope_wire::cfm::{ETHERTYPE_CFM, LoopbackKind, LoopbackRepr, tlv_type};

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
    let dir = std::env::temp_dir().join(format!("loopscope-cfm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("lb.pcap");
    std::fs::write(&path, pcap(&frames)).expect("write pcap");
    let output = Command::new("tshark")
        .args(["-r", path.to_str().expect("path"), "-T", "fields"])
        .args(
            [
                "cfm.md.level",
                "cfm.version",
                "cfm.opcode",
                "cfm.first.tlv.offset",
                "cfm.lb.transaction.id",
                "cfm.tlv.type",
                "cfm.tlv.data.value",
                "_ws.malformed",
                "_ws.expert",
            ]
            .iter()
            .flat_map(|field| ["-e", field]),
        )
        .output()
        .expect("tshark -r");
    std::fs::remove_dir_all(&dir).expect("clean up");
    let text = String::from_utf8_lossy(&output.stdout);
    let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split('\t').collect()).collect();
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
