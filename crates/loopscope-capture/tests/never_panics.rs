//! Property tests: the parsers of untrusted bytes (frames, capture files, flow exports, route and
//! bogon files) never panic, whatever they are given. cargo-fuzz would explore further but needs
//! a nightly toolchain, which this project does not use; these run in the normal suite.

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;

use loopscope_capture::decode::{decode, fast_addresses, linktype, udp_payload};
use loopscope_capture::flowexport::FlowScanner;
use loopscope_capture::martians::{ScanConfig, Scanner};
use loopscope_capture::pcapfile::{Interface, PacketVisitor, RecordMeta, read_capture};
use loopscope_capture::urpf::RouteTable;
use loopscope_report::{Format, Printer};
use proptest::prelude::*;

/// Every link type the decoder supports, and one it does not (147, DLT_USER0).
fn linktypes() -> Vec<u32> {
    linktype::SUPPORTED.into_iter().chain([147]).collect()
}

struct Count(u64);

impl PacketVisitor for Count {
    fn packet(&mut self, _: &[Interface], _: RecordMeta, frame: &[u8]) -> bool {
        self.0 += frame.len() as u64;
        true
    }
}

/// A small valid pcapng (SHB, IDB, one EPB) to mutate.
fn pcapng_seed() -> Vec<u8> {
    let mut out = Vec::new();
    let block = |kind: u32, body: &[u8], out: &mut Vec<u8>| {
        let length = (12 + body.len()) as u32;
        out.extend_from_slice(&kind.to_le_bytes());
        out.extend_from_slice(&length.to_le_bytes());
        out.extend_from_slice(body);
        out.extend_from_slice(&length.to_le_bytes());
    };
    let mut shb = 0x1a2b_3c4du32.to_le_bytes().to_vec();
    shb.extend_from_slice(&[1, 0, 0, 0]);
    shb.extend_from_slice(&(-1i64).to_le_bytes());
    block(0x0a0d_0d0a, &shb, &mut out);
    block(1, &[1, 0, 0, 0, 0, 0, 0, 0], &mut out);
    let mut epb = vec![0u8; 20];
    epb[12] = 28;
    epb[16] = 28;
    epb.extend_from_slice(&[0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0, 127, 0, 0, 1]);
    epb.extend_from_slice(&[10, 0, 0, 1, 0, 1, 0, 2, 0, 8, 0, 0]);
    block(6, &epb, &mut out);
    out
}

fn pcap_seed() -> Vec<u8> {
    let mut out = 0xa1b2_c3d4u32.to_le_bytes().to_vec();
    out.extend_from_slice(&[
        2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 101, 0, 0, 0,
    ]);
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&28u32.to_le_bytes());
    out.extend_from_slice(&28u32.to_le_bytes());
    out.extend_from_slice(&[0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0, 127, 0, 0, 1]);
    out.extend_from_slice(&[10, 0, 0, 1, 0, 1, 0, 2, 0, 8, 0, 0]);
    out
}

fn mutate(mut seed: Vec<u8>, edits: &[(usize, u8)], cut: usize) -> Vec<u8> {
    for (position, value) in edits {
        let index = position % seed.len();
        seed[index] = *value;
    }
    seed.truncate(cut.min(seed.len()));
    seed
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn frames_decode_or_fail_cleanly(kind in 0usize..=linktype::SUPPORTED.len(), bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = decode(linktypes()[kind], &bytes);
        let _ = udp_payload(linktypes()[kind], &bytes);
    }

    /// The hand-written fast path and the full decode agree on every frame the fast path
    /// accepts (addresses, and neither calls it loopback traffic whatever its MACs), and the
    /// fast path accepts the common cases.
    #[test]
    fn fast_path_agrees_with_the_full_decode(
        kind in 0usize..=linktype::SUPPORTED.len(),
        zero_macs in any::<bool>(),
        ether_type in prop_oneof![Just(0x0800u16), Just(0x86dd), Just(0x8100), any::<u16>()],
        first in prop_oneof![Just(0x45u8), Just(0x46), Just(0x60), Just(0x44), any::<u8>()],
        bytes in proptest::collection::vec(any::<u8>(), 0..100),
    ) {
        let linktype = linktypes()[kind];
        let mut frame = Vec::new();
        if linktype == linktype::ETHERNET {
            frame.extend_from_slice(&if zero_macs { [0u8; 12] } else { [2u8; 12] });
            frame.extend_from_slice(&ether_type.to_be_bytes());
        }
        frame.push(first);
        frame.extend_from_slice(&bytes);
        if let Some((source, destination)) = fast_addresses(linktype, &frame) {
            let full = decode(linktype, &frame);
            prop_assert!(full.is_ok(), "fast path accepted what decode rejects: {frame:?}");
            let full = full.unwrap();
            prop_assert_eq!((full.source, full.destination, full.link_is_loopback), (source, destination, false));
        } else if let Ok(full) = decode(linktype, &frame) {
            // Declining is allowed (VLANs, cooked headers), but not for plain IPv4/IPv6.
            let version = first >> 4;
            let plain = matches!(linktype, linktype::RAW | linktype::IPV4 | linktype::IPV6)
                || (linktype == linktype::ETHERNET
                    && matches!((ether_type, version), (0x0800, 4) | (0x86dd, 6)));
            prop_assert!(!plain, "fast path declined a plain packet decode accepts: {full:?}");
        }
    }

    #[test]
    fn arbitrary_files_read_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = read_capture(bytes.as_slice(), &mut Count(0));
    }

    #[test]
    fn mutated_captures_read_without_panic(
        pcapng in any::<bool>(),
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..6),
        cut in 0usize..200,
    ) {
        let seed = if pcapng { pcapng_seed() } else { pcap_seed() };
        let bytes = mutate(seed, &edits, cut);
        let _ = read_capture(bytes.as_slice(), &mut Count(0));
        // And through the whole scanner, via a file.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.cap");
        std::fs::write(&path, &bytes).unwrap();
        let mut scanner = Scanner::new(Printer::new(Format::Json, Vec::new()), ScanConfig::default());
        let _ = scanner.scan_file(&path, &AtomicBool::new(false));
        let _ = scanner.finish();
    }

    #[test]
    fn flow_datagrams_parse_without_panic(
        version in prop_oneof![Just(5u16), Just(9u16), Just(10u16), any::<u16>()],
        body in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let mut datagram = version.to_be_bytes().to_vec();
        datagram.extend_from_slice(&body);
        let mut scanner = FlowScanner::new(Printer::new(Format::Json, Vec::new()));
        let exporter: SocketAddr = "192.0.2.1:2055".parse().unwrap();
        scanner.datagram(exporter, 0, &datagram);
        scanner.datagram(exporter, 1, &datagram);
        let _ = scanner.finish();
    }

    #[test]
    fn route_and_bogon_files_parse_without_panic(text in "\\PC{0,200}") {
        let _ = RouteTable::parse(&text);
        let _ = loopscope_capture::acl::parse_bogons(&text);
    }

    #[test]
    fn route_lines_parse_without_panic(lines in proptest::collection::vec("[0-9a-f:./]{0,20} [a-z0-9]{0,6}", 0..8)) {
        if let Ok(table) = RouteTable::parse(&lines.join("\n")) {
            let _ = table.check("10.0.0.1".parse().unwrap(), Some("eth0"));
            let _ = table.check("::1".parse().unwrap(), None);
        }
    }
}
