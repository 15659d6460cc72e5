//! `loopscope martians FILE...` against capture files built here byte by byte.

mod martians_support;

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use martians_support::*;
use serde_json::Value;

fn loopscope() -> Command {
    Command::cargo_bin("loopscope").unwrap()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Runs `loopscope --json martians ARGS`, returns (exit code, records).
fn scan(args: &[&std::ffi::OsStr]) -> (i32, Vec<Value>) {
    let output = loopscope()
        .arg("--json")
        .arg("martians")
        .args(args)
        .output()
        .unwrap();
    (output.status.code().unwrap(), json_lines(&output.stdout))
}

/// What `loopscope martians --findings PATH` prints (human output, every finding on its line).
fn findings_text(path: &Path) -> String {
    let output = loopscope()
        .args(["martians", "--findings"])
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8(output.stdout).unwrap()
}

/// A UDP datagram from `source` to `destination` in an IPv4 packet in an Ethernet frame
/// between two ordinary MACs.
fn udp4_over_ethernet(source: [u8; 4], destination: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
    ethernet(
        MAC_A,
        MAC_B,
        0x0800,
        &ipv4_udp(source, destination, sport, dport),
    )
}

fn summary(lines: &[Value]) -> &Value {
    let summaries = of_type(lines, "summary");
    assert_eq!(summaries.len(), 1, "{lines:?}");
    assert_eq!(
        lines.last().unwrap()["type"],
        "summary",
        "summary comes last"
    );
    summaries[0]
}

const CLEAN: ([u8; 4], [u8; 4]) = ([10, 0, 0, 1], [10, 0, 0, 2]);

/// Each link type: one spoofed-loopback packet and one clean packet.
#[test]
fn every_link_type_finds_the_spoofed_loopback_packet() {
    let dir = tempfile::tempdir().unwrap();
    let martian = ipv4_udp([127, 0, 0, 1], [10, 0, 0, 2], 4000, 53);
    let clean = ipv4_udp(CLEAN.0, CLEAN.1, 4000, 53);
    let martian6 = ipv6_udp("::1", "fd00::2", 4000, 53);
    // (name, link type, martian frame, clean frame, expected link-layer source)
    type Case<'a> = (&'a str, u32, Vec<u8>, Vec<u8>, Option<&'a str>);
    let cases: Vec<Case> = vec![
        (
            "ethernet",
            1,
            ethernet(MAC_A, MAC_B, 0x0800, &martian),
            ethernet(MAC_A, MAC_B, 0x0800, &clean),
            Some("02:00:5e:10:00:01"),
        ),
        (
            "qinq",
            1,
            ethernet_qinq(MAC_A, 0x0800, &martian),
            ethernet_qinq(MAC_A, 0x0800, &clean),
            Some("02:00:5e:10:00:01"),
        ),
        (
            "sll",
            113,
            sll(1, &MAC_A, &martian),
            sll(1, &MAC_A, &clean),
            Some("02:00:5e:10:00:01"),
        ),
        (
            "sll2",
            276,
            sll2(7, 1, &MAC_A, &martian6),
            sll2(7, 1, &MAC_A, &clean),
            Some("02:00:5e:10:00:01"),
        ),
        ("raw", 101, martian.clone(), clean.clone(), None),
        ("ipv4", 228, martian.clone(), clean.clone(), None),
        (
            "ipv6",
            229,
            martian6.clone(),
            ipv6_udp("fd00::1", "fd00::2", 1, 2),
            None,
        ),
    ];
    for (name, linktype, bad, good, mac) in cases {
        let path = write(
            dir.path(),
            &format!("{name}.pcap"),
            &pcap(
                linktype,
                &[(1_700_000_000, 5, good), (1_700_000_001, 250_000, bad)],
            ),
        );
        if tshark_available() {
            let sources = tshark_sources(&path);
            assert_eq!(sources.len(), 2, "{name}: tshark sees two packets");
            assert!(
                sources[1] == "127.0.0.1" || sources[1] == "::1",
                "{name}: tshark decodes the spoofed source, got {sources:?}"
            );
        }
        let (code, lines) = scan(&[path.as_os_str()]);
        assert_eq!(code, 1, "{name}: martians found means exit 1");
        let findings = of_type(&lines, "finding");
        assert_eq!(findings.len(), 1, "{name}: {lines:?}");
        let finding = findings[0];
        assert!(
            finding["source"] == "127.0.0.1" || finding["source"] == "::1",
            "{name}: {finding}"
        );
        assert_eq!(finding["reasons"][0]["code"], "loopback_source", "{name}");
        assert_eq!(finding["packet"], 1, "{name}");
        assert_eq!(finding["time"], "2023-11-14T22:13:21.250000Z", "{name}");
        assert_eq!(finding["source_port"], 4000, "{name}");
        match mac {
            Some(mac) => assert_eq!(finding["link_source"], mac, "{name}"),
            None => assert!(finding.get("link_source").is_none(), "{name}"),
        }
        if name == "sll2" {
            assert_eq!(finding["if_index"], 7);
            // An SLL2 capture names its interface by index: this host's name for index 7 if
            // it has one (read from sysfs, independently of loopscope), else the index.
            let local = std::fs::read_dir("/sys/class/net")
                .into_iter()
                .flatten()
                .flatten()
                .find(|entry| {
                    std::fs::read_to_string(entry.path().join("ifindex"))
                        .is_ok_and(|index| index.trim() == "7")
                })
                .map(|entry| entry.file_name().to_string_lossy().into_owned());
            let expected = local.unwrap_or_else(|| "ifindex 7".to_string());
            assert_eq!(finding["interface"], expected.as_str());
        }
        let summary = summary(&lines);
        assert_eq!(summary["packets"], 2, "{name}");
        assert_eq!(summary["martian_packets"], 1, "{name}");
        assert_eq!(summary["reasons"]["loopback_source"], 1, "{name}");
        assert_eq!(summary["verdict"], "martians found");
    }
}

/// BSD null and OpenBSD loop captures are loopback interfaces: loopback traffic on them is
/// normal, other martians are not.
#[test]
fn bsd_loopback_link_types_are_loopback_interfaces() {
    let dir = tempfile::tempdir().unwrap();
    for (linktype, network_order) in [(0u32, false), (108, true)] {
        let path = write(
            dir.path(),
            &format!("null{linktype}.pcap"),
            &pcap(
                linktype,
                &[
                    (
                        1,
                        0,
                        null_header(
                            2,
                            network_order,
                            &ipv4_udp([127, 0, 0, 1], [127, 0, 0, 1], 1, 2),
                        ),
                    ),
                    (
                        2,
                        0,
                        null_header(24, network_order, &ipv6_udp("::1", "::1", 1, 2)),
                    ),
                    (
                        3,
                        0,
                        null_header(
                            2,
                            network_order,
                            &ipv4_udp([0, 0, 0, 7], [127, 0, 0, 1], 1, 2),
                        ),
                    ),
                ],
            ),
        );
        let (code, lines) = scan(&[path.as_os_str()]);
        assert_eq!(code, 1);
        let findings = of_type(&lines, "finding");
        assert_eq!(findings.len(), 1, "{lines:?}");
        assert_eq!(findings[0]["source"], "0.0.0.7");
        assert_eq!(findings[0]["reasons"][0]["code"], "this_network_source");
        assert_eq!(summary(&lines)["ip_packets"], 3);
    }
}

/// A pcapng with `lo` and `eth0`: loopback on lo is fine; on eth0 every kind of martian is
/// flagged with its reason, and flows aggregate.
#[test]
fn pcapng_interfaces_reasons_flows_and_totals() {
    let dir = tempfile::tempdir().unwrap();
    let base = 1_700_000_000_000_000_000u64;
    let on_eth0 = |packet: &[u8]| ethernet(MAC_A, MAC_B, ether_type_of(packet), packet);
    let mut bytes = pcapng_section();
    bytes.extend(pcapng_interface(1, "lo"));
    bytes.extend(pcapng_interface(1, "eth0"));
    let lo_frame = ethernet(
        [0; 6],
        [0; 6],
        0x0800,
        &ipv4_udp([127, 0, 0, 1], [127, 0, 0, 1], 5, 6),
    );
    let packets: Vec<(u32, Vec<u8>)> = vec![
        (0, lo_frame),
        (
            1,
            on_eth0(&ipv4_udp([127, 0, 0, 1], [10, 0, 0, 2], 4000, 53)),
        ),
        (
            1,
            on_eth0(&ipv4_udp([127, 0, 0, 1], [10, 0, 0, 2], 4000, 53)),
        ),
        (1, on_eth0(&ipv6_udp("::1", "fd00::2", 1000, 2000))),
        (1, on_eth0(&ipv6_udp("::ffff:10.0.0.9", "fd00::2", 1, 2))),
        (1, on_eth0(&ipv4_udp([0, 1, 2, 3], [10, 0, 0, 2], 1, 2))),
        (1, on_eth0(&ipv4_udp([224, 0, 0, 5], [10, 0, 0, 2], 1, 2))),
        (
            1,
            on_eth0(&ipv4_udp([255, 255, 255, 255], [10, 0, 0, 2], 1, 2)),
        ),
        (1, on_eth0(&ipv4_udp([240, 0, 0, 1], [10, 0, 0, 2], 1, 2))),
        (1, on_eth0(&ipv4_udp([10, 0, 0, 1], [127, 0, 0, 9], 1, 2))),
        (1, on_eth0(&ipv6_with_extensions("::1", "fd00::2"))),
        (1, on_eth0(&ipv4_udp(CLEAN.0, CLEAN.1, 1, 2))),
        // On-link uses of the unspecified source: DHCP discover, DAD neighbour solicitation.
        (
            1,
            on_eth0(&ipv4_udp([0, 0, 0, 0], [255, 255, 255, 255], 68, 67)),
        ),
        (
            1,
            on_eth0(&ipv6(
                "::".parse().unwrap(),
                "ff02::1:ff00:2".parse().unwrap(),
                58,
                &[135, 0, 0, 0, 0, 0, 0, 0],
            )),
        ),
    ];
    for (index, (if_id, frame)) in packets.iter().enumerate() {
        bytes.extend(pcapng_packet(
            *if_id,
            base + index as u64 * 1_000_000,
            frame,
        ));
    }
    let path = write(dir.path(), "mixed.pcapng", &bytes);
    if tshark_available() {
        assert_eq!(tshark_sources(&path).len(), packets.len());
    }
    let (code, lines) = scan(&[path.as_os_str()]);
    assert_eq!(code, 1);
    let findings = of_type(&lines, "finding");
    let codes: Vec<&str> = findings
        .iter()
        .map(|finding| finding["reasons"][0]["code"].as_str().unwrap())
        .collect();
    assert_eq!(
        codes,
        [
            "loopback_source",
            "loopback_source",
            "loopback_source",
            "ipv4_mapped_source",
            "this_network_source",
            "multicast_source",
            "limited_broadcast_source",
            "class_e_source",
            "loopback_destination",
            "loopback_source",
        ]
    );
    assert!(
        findings
            .iter()
            .all(|finding| finding["interface"] == "eth0")
    );
    assert_eq!(findings[8]["reasons"][0]["side"], "destination");
    let fragment = findings[9];
    assert_eq!(fragment["fragment"], true);
    assert_eq!(
        fragment["protocol"], 17,
        "extension headers are walked to UDP"
    );
    assert_eq!(fragment["source_port"], 5353);

    let flows = of_type(&lines, "flow");
    assert_eq!(flows.len(), 9);
    let repeated = flows[0];
    assert_eq!(repeated["source"], "127.0.0.1");
    assert_eq!(repeated["packets"], 2);
    let frame_len = (14 + 20 + 8 + 9) as u64;
    assert_eq!(repeated["bytes"], 2 * frame_len);
    assert_eq!(repeated["first_seen_unix_ns"], base + 1_000_000);
    assert_eq!(repeated["last_seen_unix_ns"], base + 2_000_000);

    let summary = summary(&lines);
    assert_eq!(summary["packets"], 14);
    assert_eq!(summary["martian_packets"], 10);
    assert_eq!(summary["martian_flows"], 9);
    assert_eq!(summary["reasons"]["loopback_source"], 4);
    assert_eq!(summary["reasons"]["class_e_source"], 1);
}

#[test]
fn a_clean_capture_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "clean.pcap",
        &pcap(1, &[(1, 0, udp4_over_ethernet(CLEAN.0, CLEAN.1, 1, 2))]),
    );
    let (code, lines) = scan(&[path.as_os_str()]);
    assert_eq!(code, 0);
    assert!(of_type(&lines, "finding").is_empty());
    assert_eq!(summary(&lines)["verdict"], "no martians");
}

/// Human output is the busiest flows and the totals; `--findings` adds a line per packet,
/// shaped like the kernel's log line.
#[test]
fn human_output_is_a_flow_table_and_findings_read_like_the_kernel_log() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "one.pcap",
        &pcap(
            1,
            &[(
                1_700_000_000,
                0,
                udp4_over_ethernet([127, 0, 0, 1], [10, 0, 0, 2], 4000, 53),
            )],
        ),
    );
    let output = loopscope().arg("martians").arg(&path).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(!text.contains("martian 127.0.0.1"), "{text}");
    let row = text
        .lines()
        .find(|line| line.starts_with("127.0.0.1 "))
        .unwrap_or_else(|| panic!("no flow row: {text}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        cells[..6],
        ["127.0.0.1", "10.0.0.2", "udp", "4000->53", "1", "51"],
        "{text}"
    );
    assert!(row.ends_with("loopback_source"), "{row}");
    assert!(
        text.contains(
            "1 packet (1 IP, 0 non-IP, 0 malformed) in 1 input: 1 martian packet in 1 flow"
        ),
        "{text}"
    );
    assert!(text.contains("verdict: martians found"), "{text}");

    let text = findings_text(&path);
    assert!(
        text.contains("martian 127.0.0.1 -> 10.0.0.2 udp 4000->53 on ")
            && text.contains("from 02:00:5e:10:00:01: loopback address as source"),
        "{text}"
    );
}

/// Hundreds of martian packets from many sources give the busiest 20 flows and a count of the
/// rest in human output, not a line per packet; `--top` changes the number; JSON keeps every
/// finding.
#[test]
fn many_martians_give_a_bounded_human_summary() {
    let dir = tempfile::tempdir().unwrap();
    let mut packets = Vec::new();
    // Source 127.0.0.k sends k packets, k = 1..=30: 465 packets in 30 flows.
    for k in 1..=30u8 {
        for i in 0..u32::from(k) {
            let frame = udp4_over_ethernet([127, 0, 0, k], [10, 0, 0, 2], 4000, 53);
            packets.push((1_700_000_000 + i, u32::from(k), frame));
        }
    }
    let path = write(dir.path(), "many.pcap", &pcap(1, &packets));
    let output = loopscope().arg("martians").arg(&path).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let text = String::from_utf8(output.stdout).unwrap();
    let rows: Vec<&str> = text
        .lines()
        .filter(|line| line.starts_with("127.0.0."))
        .collect();
    assert_eq!(rows.len(), 20, "{text}");
    assert!(rows[0].starts_with("127.0.0.30 "), "busiest first: {text}");
    assert!(rows[19].starts_with("127.0.0.11 "), "{text}");
    assert!(text.contains("... and 10 more flows"), "{text}");
    assert!(text.lines().count() < 40, "{text}");

    let output = loopscope()
        .args(["martians", "--top", "3"])
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.contains("... and 27 more flows"), "{text}");

    let (code, lines) = scan(&[path.as_os_str()]);
    assert_eq!(code, 1);
    assert_eq!(of_type(&lines, "finding").len(), 465);
    assert_eq!(of_type(&lines, "flow").len(), 30);
    assert_eq!(summary(&lines)["flows_reported"], 30);
}

/// Issue 12 item 5: the flow table is bounded; the summary says so, the busiest flows are
/// reported and every packet is still in the totals.
#[test]
fn the_flow_table_is_bounded_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let mut packets = Vec::new();
    for k in 1..=50u8 {
        let frame = udp4_over_ethernet([127, 0, 1, k], [10, 0, 0, 2], 4000, 53);
        // The first flow repeats: it is tracked before the table fills.
        let copies = if k == 1 { 5 } else { 1 };
        for _ in 0..copies {
            packets.push((1_700_000_000, u32::from(k), frame.clone()));
        }
    }
    let path = write(dir.path(), "spray.pcap", &pcap(1, &packets));
    let (code, lines) = scan(&[
        path.as_os_str(),
        "--max-flows".as_ref(),
        "10".as_ref(),
        "--quiet".as_ref(),
    ]);
    assert_eq!(code, 1);
    let summary = summary(&lines);
    assert_eq!(summary["martian_packets"], 54);
    assert_eq!(summary["martian_flows"], 10);
    assert_eq!(summary["flow_table_limit"], 10);
    assert_eq!(summary["flow_table_full"], true);
    assert_eq!(summary["untracked_flow_packets"], 40);
    let flows = of_type(&lines, "flow");
    assert_eq!(flows.len(), 10);
    assert_eq!(flows[0]["source"], "127.0.1.1");
    assert_eq!(flows[0]["packets"], 5);
    let output = loopscope()
        .args(["martians", "--max-flows", "10"])
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(
        text.contains(
            "flow table full at 10 flows: 40 martian packets of later flows are in the totals only"
        ),
        "{text}"
    );
}

/// Damage is counted and reported, and the packets around it are still read.
#[test]
fn truncated_and_corrupt_files_are_counted_and_scanning_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let martian = udp4_over_ethernet([127, 0, 0, 1], [10, 0, 0, 2], 1, 2);
    // pcap cut in the middle of its third record.
    let full = pcap(
        1,
        &[
            (1, 0, martian.clone()),
            (2, 0, martian.clone()),
            (3, 0, martian.clone()),
        ],
    );
    let truncated = write(dir.path(), "truncated.pcap", &full[..full.len() - 10]);
    // pcapng with a garbage block between two good packets: the block's length is sane, its
    // content is not (an EPB naming an interface that does not exist), plus a malformed frame.
    let mut bytes = pcapng_section();
    bytes.extend(pcapng_interface(1, "eth0"));
    bytes.extend(pcapng_packet(0, 1, &martian));
    bytes.extend(pcapng_packet(9, 2, &martian));
    let mut broken_len = pcapng_packet(0, 3, &martian);
    let end = broken_len.len();
    broken_len[end - 4..].copy_from_slice(&999u32.to_le_bytes()); // trailing length mismatch
    bytes.extend(broken_len);
    bytes.extend(pcapng_packet(0, 4, &martian[..20])); // IP header cut short
    bytes.extend(pcapng_packet(0, 5, &martian));
    let corrupt = write(dir.path(), "corrupt.pcapng", &bytes);

    let (code, lines) = scan(&[truncated.as_os_str(), corrupt.as_os_str()]);
    assert_eq!(code, 1);
    assert_eq!(of_type(&lines, "finding").len(), 4);
    let damage = of_type(&lines, "damage");
    assert_eq!(damage.len(), 2, "{lines:?}");
    assert_eq!(damage[0]["truncated"], true);
    assert_eq!(damage[1]["corrupt_records"], 2);
    let summary = summary(&lines);
    assert_eq!(summary["inputs"], 2);
    assert_eq!(summary["truncated_inputs"], 1);
    assert_eq!(summary["corrupt_records"], 2);
    assert_eq!(summary["malformed_packets"], 1);
}

#[test]
fn unreadable_input_exits_two() {
    let dir = tempfile::tempdir().unwrap();
    let text = write(
        dir.path(),
        "notes.txt",
        b"this is not a capture file at all",
    );
    let output = loopscope().arg("martians").arg(&text).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with("loopscope: error:") && stderr.contains("not a pcap"),
        "{stderr}"
    );
    let output = loopscope()
        .args(["martians", "/nonexistent/loopscope.pcap"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let output = loopscope().arg("martians").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
}

/// `--write-matches` writes exactly the flagged packets, in a file tshark opens.
#[test]
fn write_matches_produces_a_pcapng_of_the_flagged_packets() {
    let dir = tempfile::tempdir().unwrap();
    let frame = |source: [u8; 4]| udp4_over_ethernet(source, [10, 0, 0, 2], 1, 2);
    let path = write(
        dir.path(),
        "in.pcap",
        &pcap(
            1,
            &[
                (1, 0, frame([10, 0, 0, 1])),
                (2, 0, frame([127, 0, 0, 1])),
                (3, 0, frame([10, 0, 0, 3])),
                (4, 0, frame([0, 0, 0, 0])),
            ],
        ),
    );
    let sll2_path = write(
        dir.path(),
        "in2.pcap",
        &pcap(
            276,
            &[(5, 0, sll2(3, 1, &MAC_A, &ipv6_udp("::1", "fd00::1", 1, 2)))],
        ),
    );
    let out = dir.path().join("matches.pcapng");
    let (code, lines) = scan(&[
        path.as_os_str(),
        sll2_path.as_os_str(),
        "--write-matches".as_ref(),
        out.as_os_str(),
    ]);
    assert_eq!(code, 1);
    assert_eq!(summary(&lines)["matches_written"], 3);
    if tshark_available() {
        assert_eq!(tshark_sources(&out), ["127.0.0.1", "0.0.0.0", "::1"]);
    }
    // And it reads back as a capture with the same findings.
    let (code, lines) = scan(&[out.as_os_str()]);
    assert_eq!(code, 1);
    assert_eq!(of_type(&lines, "finding").len(), 3);
}

/// uRPF verdicts from a `PREFIX INTERFACE` file, with the arrival interface from the pcapng.
#[test]
fn urpf_modes_from_a_routes_file() {
    let dir = tempfile::tempdir().unwrap();
    let routes = write(
        dir.path(),
        "routes.txt",
        b"default eth0\n10.0.0.0/8 eth1\n10.1.0.0/16 eth0\n127.0.0.0/8 lo\n",
    );
    let mut bytes = pcapng_section();
    bytes.extend(pcapng_interface(1, "eth0"));
    let frame = |source: [u8; 4]| udp4_over_ethernet(source, [10, 9, 9, 9], 1, 2);
    bytes.extend(pcapng_packet(0, 1, &frame([10, 1, 2, 3]))); // best route eth0: passes all
    bytes.extend(pcapng_packet(0, 2, &frame([10, 2, 2, 3]))); // best route eth1: strict drops
    bytes.extend(pcapng_packet(0, 3, &frame([100, 64, 1, 1]))); // only the default covers it
    bytes.extend(pcapng_packet(0, 4, &frame([127, 0, 0, 1]))); // martian and strict drop
    let path = write(dir.path(), "urpf.pcapng", &bytes);
    let (code, lines) = scan(&[
        path.as_os_str(),
        "--urpf-routes".as_ref(),
        routes.as_os_str(),
    ]);
    assert_eq!(code, 1);
    let findings = of_type(&lines, "finding");
    let drops: Vec<(&str, Vec<&str>)> = findings
        .iter()
        .map(|finding| {
            (
                finding["source"].as_str().unwrap(),
                finding["urpf_drop"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|mode| mode.as_str().unwrap())
                    .collect(),
            )
        })
        .collect();
    assert_eq!(
        drops,
        [
            ("10.2.2.3", vec!["strict"]),
            ("100.64.1.1", vec!["loose_ignore_default"]),
            ("127.0.0.1", vec!["strict"]),
        ]
    );
    let summary = summary(&lines);
    assert_eq!(summary["urpf_drops"]["strict"], 2);
    assert_eq!(summary["urpf_drops"]["loose"], 0);
    assert_eq!(summary["martian_packets"], 1);
}

/// Kernel-like rate limiting: N findings per window, then a count of the suppressed ones.
#[test]
fn log_rate_limit_suppresses_with_a_count() {
    let dir = tempfile::tempdir().unwrap();
    let frame = udp4_over_ethernet([127, 0, 0, 1], [10, 0, 0, 2], 1, 2);
    // Five packets in the first second, one six seconds later.
    let packets: Vec<(u32, u32, Vec<u8>)> = (0..5)
        .map(|i| (100, i * 1000, frame.clone()))
        .chain([(106, 0, frame.clone())])
        .collect();
    let path = write(dir.path(), "burst.pcap", &pcap(1, &packets));
    let (code, lines) = scan(&[path.as_os_str(), "--log-burst".as_ref(), "2".as_ref()]);
    assert_eq!(code, 1);
    let kinds: Vec<&str> = lines
        .iter()
        .map(|line| line["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "finding",
            "finding",
            "suppressed",
            "finding",
            "flow",
            "summary"
        ]
    );
    assert_eq!(of_type(&lines, "suppressed")[0]["suppressed_findings"], 3);
    let summary = summary(&lines);
    assert_eq!(summary["martian_packets"], 6);
    assert_eq!(summary["findings_suppressed"], 3);
    assert_eq!(summary["findings_logged"], 3);
}

/// The 62-byte frame of the adversarial campaign (issue 12, item 1), byte for byte: IPv6 from
/// ::1 whose Hop-by-Hop header names Hop-by-Hop again with nothing after it. etherparse 0.17
/// read past the frame on it and `martians` died with SIGSEGV (exit 139); now the spoofed ::1
/// source is reported and the run exits 1.
#[test]
fn the_hop_by_hop_after_hop_by_hop_frame_is_a_martian_not_a_crash() {
    fn hex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|at| u8::from_str_radix(&text[at..at + 2], 16).unwrap())
            .collect()
    }
    // python3: ip = bytes.fromhex("6000000000080000") + bytes(15) + b"\x01"
    //   + bytes.fromhex("20010db8") + bytes(11) + b"\x02" + bytes.fromhex("0000010400000000")
    let mut ip = hex("6000000000080000");
    ip.extend([0u8; 15]);
    ip.push(1);
    ip.extend(hex("20010db8"));
    ip.extend([0u8; 11]);
    ip.push(2);
    ip.extend(hex("0000010400000000"));
    // f = b"\xff"*6 + b"\x02" + bytes(5) + b"\x86\xdd" + ip
    let mut frame = vec![0xff; 6];
    frame.push(2);
    frame.extend([0u8; 5]);
    frame.extend(hex("86dd"));
    frame.extend(&ip);
    assert_eq!(frame.len(), 62);
    // struct.pack("<IHHiIII", 0xa1b2c3d4, 2, 4, 0, 0, 65535, 1)
    //   + struct.pack("<IIII", 0, 0, len(f), len(f)) + f
    let mut file = hex("d4c3b2a1020004000000000000000000ffff000001000000");
    file.extend(hex("0000000000000000"));
    file.extend((frame.len() as u32).to_le_bytes());
    file.extend((frame.len() as u32).to_le_bytes());
    file.extend(&frame);
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "crash.pcap", &file);
    for json in [false, true] {
        let mut command = loopscope();
        if json {
            command.arg("--json");
        }
        let output = command.arg("martians").arg(&path).output().unwrap();
        assert_eq!(
            output.status.code(),
            Some(1),
            "json={json}: {:?} {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        if json {
            let lines = json_lines(&output.stdout);
            let findings = of_type(&lines, "finding");
            assert_eq!(findings.len(), 1, "{lines:?}");
            assert_eq!(findings[0]["source"], "::1");
            assert_eq!(summary(&lines)["packets"], 1);
        }
    }
}

/// Issue 12 item 7: a spoofed 127.0.0.1 behind four VLAN tags (802.1ad, 802.1Q, 0x9100,
/// 802.1Q) is found, with its ports.
#[test]
fn martians_behind_any_depth_of_vlan_tags_are_found() {
    let dir = tempfile::tempdir().unwrap();
    let packet = ipv4_udp([127, 0, 0, 1], [10, 0, 0, 2], 4000, 53);
    let mut frame = MAC_B.to_vec();
    frame.extend_from_slice(&MAC_A);
    for tag in [0x88a8u16, 0x8100, 0x9100, 0x8100] {
        frame.extend_from_slice(&tag.to_be_bytes());
        frame.extend_from_slice(&[0x00, 0x0a]);
    }
    frame.extend_from_slice(&0x0800u16.to_be_bytes());
    frame.extend_from_slice(&packet);
    let path = write(dir.path(), "tags.pcap", &pcap(1, &[(1, 0, frame)]));
    if tshark_available() {
        assert_eq!(tshark_sources(&path), ["127.0.0.1"]);
    }
    let (code, lines) = scan(&[path.as_os_str()]);
    assert_eq!(code, 1, "{lines:?}");
    let findings = of_type(&lines, "finding");
    assert_eq!(findings.len(), 1);
    assert_eq!(findings[0]["source"], "127.0.0.1");
    assert_eq!(findings[0]["destination_port"], 53);
    assert_eq!(summary(&lines)["non_ip_packets"], 0);
}

/// Issue 12 item 7: all-zero MACs do not make a frame loopback traffic: on an interface named
/// eth0 a 127.0.0.1 source is martian. Loopback-ness comes from the interface: a pcap of `lo`
/// (Ethernet frames with zero MACs, no interface name) is loopback when told the interface.
#[test]
fn loopback_is_decided_by_the_interface_not_by_zero_macs() {
    let dir = tempfile::tempdir().unwrap();
    let zero_mac_frame = ethernet(
        [0; 6],
        [0; 6],
        0x0800,
        &ipv4_udp([127, 0, 0, 1], [127, 0, 0, 1], 5, 6),
    );
    let mut bytes = pcapng_section();
    bytes.extend(pcapng_interface(1, "eth0"));
    bytes.extend(pcapng_packet(0, 1, &zero_mac_frame));
    let eth0 = write(dir.path(), "eth0.pcapng", &bytes);
    let (code, lines) = scan(&[eth0.as_os_str()]);
    assert_eq!(code, 1, "{lines:?}");
    let findings = of_type(&lines, "finding");
    assert_eq!(findings.len(), 1);
    assert_eq!(findings[0]["interface"], "eth0");

    let lo = write(dir.path(), "lo.pcap", &pcap(1, &[(1, 0, zero_mac_frame)]));
    let (code, _) = scan(&[lo.as_os_str()]);
    assert_eq!(
        code, 1,
        "an unnamed Ethernet capture is not assumed to be lo"
    );
    let (code, lines) = scan(&[
        lo.as_os_str(),
        "--arrival-interface".as_ref(),
        "lo".as_ref(),
    ]);
    assert_eq!(code, 0, "{lines:?}");
    assert!(of_type(&lines, "finding").is_empty());
}

/// An SLL2 capture carries only an interface index: it is named by this host's interface of
/// that index (1 is `lo` in every Linux network namespace).
#[test]
fn sll2_interface_indexes_are_named_by_this_host() {
    let dir = tempfile::tempdir().unwrap();
    let frame = sll2(1, 1, &MAC_A, &ipv4_udp([0, 0, 0, 9], [10, 0, 0, 2], 1, 2));
    let path = write(dir.path(), "sll2.pcap", &pcap(276, &[(1, 0, frame)]));
    let (_, lines) = scan(&[path.as_os_str()]);
    let findings = of_type(&lines, "finding");
    assert_eq!(findings[0]["if_index"], 1);
    assert_eq!(findings[0]["interface"], "lo");
    let text = findings_text(&path);
    assert!(text.contains(" on lo (ifindex 1)"), "{text}");
    assert!(!text.contains("on ifindex"), "{text}");
}

/// Issue 12 item 10: a pcapng interface name carrying terminal escapes (here one that would
/// clear the screen and forge a "verdict: no martians" line) is printed escaped.
#[test]
fn interface_names_cannot_inject_terminal_escapes() {
    let dir = tempfile::tempdir().unwrap();
    let forged = "eth0\u{1b}[2J\rverdict: no martians\n";
    let mut bytes = pcapng_section();
    bytes.extend(pcapng_interface(1, forged));
    bytes.extend(pcapng_packet(
        0,
        1,
        &udp4_over_ethernet([127, 0, 0, 1], [10, 0, 0, 2], 1, 2),
    ));
    let path = write(dir.path(), "forged.pcapng", &bytes);
    let text = findings_text(&path);
    assert!(!text.contains('\u{1b}') && !text.contains('\r'), "{text:?}");
    assert!(
        text.contains("eth0\\x1b[2J\\rverdict: no martians\\n"),
        "{text}"
    );
    assert_eq!(
        text.lines()
            .filter(|line| line.starts_with("verdict:"))
            .collect::<Vec<_>>(),
        ["verdict: martians found"]
    );
    // JSON keeps the name as it is (JSON escapes control characters itself).
    let (_, lines) = scan(&[path.as_os_str()]);
    assert_eq!(of_type(&lines, "finding")[0]["interface"], forged);
}

/// Issue 12 item 3: the matches file may not be an input (by inode: under another name, a
/// hard link, too); the input is untouched and nothing is written.
#[test]
fn write_matches_refuses_to_overwrite_an_input() {
    let dir = tempfile::tempdir().unwrap();
    let frame = udp4_over_ethernet([127, 0, 0, 1], [10, 0, 0, 2], 1, 2);
    let bytes = pcap(1, &[(1, 0, frame.clone()), (2, 0, frame)]);
    let input = write(dir.path(), "x.pcap", &bytes);
    let link = dir.path().join("same.pcap");
    std::fs::hard_link(&input, &link).unwrap();
    let dotted = dir.path().join(".").join("x.pcap");
    for output_path in [&input, &link, &dotted] {
        let output = loopscope()
            .arg("martians")
            .arg(&input)
            .arg("--write-matches")
            .arg(output_path)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{output_path:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.starts_with("loopscope: error:") && stderr.contains("is the input"),
            "{stderr}"
        );
        assert_eq!(std::fs::read(&input).unwrap(), bytes, "the input is intact");
    }
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "no temporary file left: {names:?}");
}

/// Matches go through a temporary file renamed into place: a complete run leaves exactly the
/// output (readable by tshark) and no temporary file; a run that cannot write leaves nothing.
#[test]
fn write_matches_writes_through_a_temporary_file() {
    let dir = tempfile::tempdir().unwrap();
    let frame = udp4_over_ethernet([127, 0, 0, 1], [10, 0, 0, 2], 1, 2);
    let input = write(dir.path(), "in.pcap", &pcap(1, &[(1, 0, frame)]));
    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let out = out_dir.join("m.pcapng");
    std::fs::write(&out, b"old contents").unwrap();
    let (code, lines) = scan(&[
        input.as_os_str(),
        "--write-matches".as_ref(),
        out.as_os_str(),
    ]);
    assert_eq!(code, 1);
    assert_eq!(summary(&lines)["matches_written"], 1);
    let names: Vec<_> = std::fs::read_dir(&out_dir).unwrap().collect();
    assert_eq!(names.len(), 1);
    assert_eq!(
        &std::fs::read(&out).unwrap()[..4],
        &[0x0a, 0x0d, 0x0d, 0x0a]
    );
    if tshark_available() {
        assert_eq!(tshark_sources(&out), ["127.0.0.1"]);
    }
}

/// Issue 12 item 12: a capture on a pipe (`-` and `/dev/stdin`) is read like a file.
#[test]
fn captures_from_a_pipe_are_read() {
    let frame = udp4_over_ethernet([127, 0, 0, 1], [10, 0, 0, 2], 1, 2);
    let bytes = pcap(1, &[(1, 0, frame.clone()), (2, 0, frame)]);
    for name in ["-", "/dev/stdin"] {
        let output = loopscope()
            .args(["--json", "martians", name])
            .write_stdin(bytes.clone())
            .output()
            .unwrap();
        assert_eq!(
            output.status.code(),
            Some(1),
            "{name}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let lines = json_lines(&output.stdout);
        assert_eq!(summary(&lines)["martian_packets"], 2, "{name}");
    }
}

/// Issue 12 item 12: output that cannot be written (`> /dev/full`) is an error: exit 2 with
/// a message, not a silent exit 1.
#[test]
fn a_full_stdout_is_reported_with_exit_two() {
    let dir = tempfile::tempdir().unwrap();
    let frame = udp4_over_ethernet([127, 0, 0, 1], [10, 0, 0, 2], 1, 2);
    let path = write(dir.path(), "one.pcap", &pcap(1, &[(1, 0, frame)]));
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let output = std::process::Command::new(assert_cmd::cargo::cargo_bin("loopscope"))
        .arg("martians")
        .arg(&path)
        .stdout(full)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with("loopscope: error:") && stderr.contains("No space left"),
        "{stderr}"
    );
}

/// Issue 12 item 12: a capture truncated while it is being scanned ends the scan early with a
/// report (it was SIGBUS while the file was memory-mapped). Deterministic without timing: the
/// matches go to a FIFO this test reads, so `martians` cannot get more than the pipe's and its
/// own buffer's worth ahead of the reads; the file is cut while most of it is unread.
#[test]
fn a_capture_truncated_while_scanned_is_reported_not_fatal() {
    use std::io::Read;

    let dir = tempfile::tempdir().unwrap();
    let frame = ethernet(
        MAC_A,
        MAC_B,
        0x0800,
        &[ipv4_udp([127, 0, 0, 1], [10, 0, 0, 2], 1, 2), vec![0; 1200]].concat(),
    );
    // About 12 MB of martian packets.
    let packets: Vec<(u32, u32, Vec<u8>)> = (0..10_000).map(|i| (i, 0, frame.clone())).collect();
    let input = write(dir.path(), "growing.pcap", &pcap(1, &packets));
    let fifo = dir.path().join("matches.fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .is_ok_and(|status| status.success());
    if !made {
        eprintln!("skipping: mkfifo is not available");
        return;
    }
    let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("loopscope"))
        .args(["--json", "martians", "--quiet"])
        .arg(&input)
        .arg("--write-matches")
        .arg(&fifo)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut matches = std::fs::File::open(&fifo).unwrap();
    let mut first = vec![0u8; 4096];
    matches.read_exact(&mut first).unwrap();
    // martians is at most a few hundred kilobytes into the 12 MB input: cut it to 2 MB.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&input)
        .unwrap()
        .set_len(2_000_000)
        .unwrap();
    let mut rest = Vec::new();
    matches.read_to_end(&mut rest).unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(
        output.status.code(),
        Some(1),
        "{:?} {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let lines = json_lines(&output.stdout);
    let summary = summary(&lines);
    assert_eq!(summary["truncated_inputs"], 1, "{summary}");
    let seen = summary["martian_packets"].as_u64().unwrap();
    assert!((1..10_000).contains(&seen), "{summary}");
    assert_eq!(of_type(&lines, "damage")[0]["truncated"], true);
}
