//! Hand-built packets and capture files for the martians tests. Everything is written byte by
//! byte from the formats' specifications (RFC 791, RFC 8200, IEEE 802.1Q, the pcap and pcapng
//! specifications, tcpdump.org's link-type pages), independently of the code under test; where
//! tshark is installed the tests also have it decode the same files.

// `pub` here means shared with the test files that include this module (a test crate has no
// public API for unreachable_pub to guard).
#![allow(dead_code, unreachable_pub)]

use std::net::IpAddr;
use std::path::Path;
use std::process::Command;

pub const MAC_A: [u8; 6] = [0x02, 0x00, 0x5e, 0x10, 0x00, 0x01];
pub const MAC_B: [u8; 6] = [0x02, 0x00, 0x5e, 0x10, 0x00, 0x02];

fn checksum(bytes: &[u8]) -> u16 {
    let mut sum = 0u32;
    for chunk in bytes.chunks(2) {
        let word = u16::from_be_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

pub fn udp(source_port: u16, destination_port: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&source_port.to_be_bytes());
    out.extend_from_slice(&destination_port.to_be_bytes());
    out.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0]); // checksum 0: "none" (RFC 768); decoders accept it
    out.extend_from_slice(payload);
    out
}

/// IPv4 header (no options) + payload.
pub fn ipv4(source: [u8; 4], destination: [u8; 4], protocol: u8, payload: &[u8]) -> Vec<u8> {
    let total = 20 + payload.len();
    let mut header = vec![
        0x45,
        0,
        (total >> 8) as u8,
        total as u8,
        0x12,
        0x34,
        0x40, // DF
        0,
        64,
        protocol,
        0,
        0,
    ];
    header.extend_from_slice(&source);
    header.extend_from_slice(&destination);
    let sum = checksum(&header);
    header[10..12].copy_from_slice(&sum.to_be_bytes());
    header.extend_from_slice(payload);
    header
}

pub fn ipv4_udp(source: [u8; 4], destination: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
    ipv4(source, destination, 17, &udp(sport, dport, b"loopscope"))
}

/// IPv6 header + payload; `next_header` names the payload.
pub fn ipv6(source: IpAddr, destination: IpAddr, next_header: u8, payload: &[u8]) -> Vec<u8> {
    let (IpAddr::V6(source), IpAddr::V6(destination)) = (source, destination) else {
        panic!("ipv6() wants IPv6 addresses");
    };
    let mut out = vec![0x60, 0, 0, 0];
    out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    out.push(next_header);
    out.push(64);
    out.extend_from_slice(&source.octets());
    out.extend_from_slice(&destination.octets());
    out.extend_from_slice(payload);
    out
}

pub fn ipv6_udp(source: &str, destination: &str, sport: u16, dport: u16) -> Vec<u8> {
    ipv6(
        source.parse().unwrap(),
        destination.parse().unwrap(),
        17,
        &udp(sport, dport, b"loopscope"),
    )
}

/// IPv6 with a hop-by-hop options header (PadN) and a fragment header (first fragment,
/// more-fragments set) in front of UDP.
pub fn ipv6_with_extensions(source: &str, destination: &str) -> Vec<u8> {
    let mut payload = vec![44, 0, 1, 4, 0, 0, 0, 0]; // hop-by-hop: next=fragment, PadN(4)
    payload.extend_from_slice(&[17, 0, 0x00, 0x01, 0xca, 0xfe, 0xba, 0xbe]); // frag: next=UDP, M=1
    payload.extend_from_slice(&udp(5353, 5353, b"fragmented"));
    ipv6(
        source.parse().unwrap(),
        destination.parse().unwrap(),
        0,
        &payload,
    )
}

pub fn ethernet(source: [u8; 6], destination: [u8; 6], ether_type: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = destination.to_vec();
    out.extend_from_slice(&source);
    out.extend_from_slice(&ether_type.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Ethernet with 802.1ad + 802.1Q tags (QinQ).
pub fn ethernet_qinq(source: [u8; 6], ether_type: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = MAC_B.to_vec();
    out.extend_from_slice(&source);
    out.extend_from_slice(&[0x88, 0xa8, 0x00, 0x64]); // S-tag VLAN 100
    out.extend_from_slice(&[0x81, 0x00, 0x00, 0xc8]); // C-tag VLAN 200
    out.extend_from_slice(&ether_type.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

pub fn ether_type_of(packet: &[u8]) -> u16 {
    if packet[0] >> 4 == 6 { 0x86dd } else { 0x0800 }
}

/// Linux cooked v1: packet type, ARPHRD, address length, address (8), protocol.
pub fn sll(hardware: u16, address: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0];
    out.extend_from_slice(&hardware.to_be_bytes());
    out.extend_from_slice(&(address.len() as u16).to_be_bytes());
    let mut padded = [0u8; 8];
    padded[..address.len()].copy_from_slice(address);
    out.extend_from_slice(&padded);
    out.extend_from_slice(&ether_type_of(payload).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Linux cooked v2: protocol, reserved, ifindex, ARPHRD, packet type, address length, address.
pub fn sll2(if_index: u32, hardware: u16, address: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut out = ether_type_of(payload).to_be_bytes().to_vec();
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&if_index.to_be_bytes());
    out.extend_from_slice(&hardware.to_be_bytes());
    out.push(0);
    out.push(address.len() as u8);
    let mut padded = [0u8; 8];
    padded[..address.len()].copy_from_slice(address);
    out.extend_from_slice(&padded);
    out.extend_from_slice(payload);
    out
}

/// BSD null (host byte order, here little-endian) or OpenBSD loop (network order) header.
pub fn null_header(family: u32, network_order: bool, payload: &[u8]) -> Vec<u8> {
    let mut out = if network_order {
        family.to_be_bytes().to_vec()
    } else {
        family.to_le_bytes().to_vec()
    };
    out.extend_from_slice(payload);
    out
}

/// A little-endian microsecond pcap file.
pub fn pcap(linktype: u32, packets: &[(u32, u32, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&0i32.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&65535u32.to_le_bytes());
    out.extend_from_slice(&linktype.to_le_bytes());
    for (seconds, micros, frame) in packets {
        out.extend_from_slice(&seconds.to_le_bytes());
        out.extend_from_slice(&micros.to_le_bytes());
        out.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        out.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        out.extend_from_slice(frame);
    }
    out
}

fn pad4(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

fn block(block_type: u32, body: &[u8]) -> Vec<u8> {
    let mut padded = body.to_vec();
    pad4(&mut padded);
    let length = (12 + padded.len()) as u32;
    let mut out = block_type.to_le_bytes().to_vec();
    out.extend_from_slice(&length.to_le_bytes());
    out.extend_from_slice(&padded);
    out.extend_from_slice(&length.to_le_bytes());
    out
}

pub fn pcapng_section() -> Vec<u8> {
    let mut body = 0x1a2b_3c4du32.to_le_bytes().to_vec();
    body.extend_from_slice(&1u16.to_le_bytes());
    body.extend_from_slice(&0u16.to_le_bytes());
    body.extend_from_slice(&(-1i64).to_le_bytes());
    block(0x0a0d_0d0a, &body)
}

/// An IDB with if_name and if_tsresol = 9 (nanoseconds).
pub fn pcapng_interface(linktype: u16, name: &str) -> Vec<u8> {
    let mut body = linktype.to_le_bytes().to_vec();
    body.extend_from_slice(&[0, 0]);
    body.extend_from_slice(&0u32.to_le_bytes());
    body.extend_from_slice(&2u16.to_le_bytes());
    body.extend_from_slice(&(name.len() as u16).to_le_bytes());
    body.extend_from_slice(name.as_bytes());
    pad4(&mut body);
    body.extend_from_slice(&9u16.to_le_bytes());
    body.extend_from_slice(&1u16.to_le_bytes());
    body.extend_from_slice(&[9, 0, 0, 0]);
    body.extend_from_slice(&[0, 0, 0, 0]); // opt_endofopt
    block(1, &body)
}

pub fn pcapng_packet(if_id: u32, time_ns: u64, frame: &[u8]) -> Vec<u8> {
    let mut body = if_id.to_le_bytes().to_vec();
    body.extend_from_slice(&((time_ns >> 32) as u32).to_le_bytes());
    body.extend_from_slice(&(time_ns as u32).to_le_bytes());
    body.extend_from_slice(&(frame.len() as u32).to_le_bytes());
    body.extend_from_slice(&(frame.len() as u32).to_le_bytes());
    body.extend_from_slice(frame);
    block(6, &body)
}

pub fn tshark_available() -> bool {
    Command::new("tshark")
        .arg("--version")
        .output()
        .is_ok_and(|output| output.status.success())
}

/// Source addresses as tshark decodes them, one per packet ("" for non-IP).
pub fn tshark_sources(path: &Path) -> Vec<String> {
    let output = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(path)
        .args(["-T", "fields", "-e", "ip.src", "-e", "ipv6.src"])
        .output()
        .expect("tshark runs");
    assert!(
        output.status.success(),
        "tshark failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| line.trim().to_string())
        .collect()
}

/// Parses NDJSON stdout into values.
pub fn json_lines(stdout: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

pub fn of_type<'a>(lines: &'a [serde_json::Value], kind: &str) -> Vec<&'a serde_json::Value> {
    lines.iter().filter(|line| line["type"] == kind).collect()
}

/// Sends the frames in LOOPSCOPE_INJECT_FRAMES (hex, comma-separated) out of the interface in
/// LOOPSCOPE_INJECT_INTERFACE: the body of a test binary's inject helper, a test ignored by
/// default that [`inject_in_netns`] runs inside a namespace.
pub fn inject_from_env() {
    let interface = std::env::var("LOOPSCOPE_INJECT_INTERFACE").expect("interface");
    let frames: Vec<Vec<u8>> = std::env::var("LOOPSCOPE_INJECT_FRAMES")
        .expect("frames")
        .split(',')
        .map(|hex| {
            (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
                .collect()
        })
        .collect();
    loopscope_capture::live::inject_frames(&interface, &frames).expect("frames sent");
}

/// Runs this test binary's `helper` (which calls [`inject_from_env`]) inside `namespace` to
/// send `frames` out of `interface` there.
pub fn inject_in_netns(namespace: &str, interface: &str, helper: &str, frames: &[&[u8]]) {
    let hex: Vec<String> = frames
        .iter()
        .map(|frame| frame.iter().map(|byte| format!("{byte:02x}")).collect())
        .collect();
    let output = Command::new("ip")
        .args(["netns", "exec", namespace])
        .arg(std::env::current_exe().expect("test binary"))
        .args(["--ignored", "--exact", helper, "--nocapture"])
        .env("LOOPSCOPE_INJECT_INTERFACE", interface)
        .env("LOOPSCOPE_INJECT_FRAMES", hex.join(","))
        .output()
        .expect("run the inject helper");
    assert!(
        output.status.success(),
        "injecting failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
