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
            assert_eq!(finding["interface"], "ifindex 7");
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
        &pcap(
            1,
            &[(
                1,
                0,
                ethernet(MAC_A, MAC_B, 0x0800, &ipv4_udp(CLEAN.0, CLEAN.1, 1, 2)),
            )],
        ),
    );
    let (code, lines) = scan(&[path.as_os_str()]);
    assert_eq!(code, 0);
    assert!(of_type(&lines, "finding").is_empty());
    assert_eq!(summary(&lines)["verdict"], "no martians");
}

#[test]
fn human_output_reads_like_the_kernel_log() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "one.pcap",
        &pcap(
            1,
            &[(
                1_700_000_000,
                0,
                ethernet(
                    MAC_A,
                    MAC_B,
                    0x0800,
                    &ipv4_udp([127, 0, 0, 1], [10, 0, 0, 2], 4000, 53),
                ),
            )],
        ),
    );
    let output = loopscope().arg("martians").arg(&path).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(
        text.contains("martian 127.0.0.1 -> 10.0.0.2 udp 4000->53 on ")
            && text.contains("from 02:00:5e:10:00:01: loopback address as source"),
        "{text}"
    );
    assert!(text.contains("verdict: martians found"), "{text}");
}

/// Damage is counted and reported, and the packets around it are still read.
#[test]
fn truncated_and_corrupt_files_are_counted_and_scanning_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let martian = ethernet(
        MAC_A,
        MAC_B,
        0x0800,
        &ipv4_udp([127, 0, 0, 1], [10, 0, 0, 2], 1, 2),
    );
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
    let frame =
        |source: [u8; 4]| ethernet(MAC_A, MAC_B, 0x0800, &ipv4_udp(source, [10, 0, 0, 2], 1, 2));
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
    let frame =
        |source: [u8; 4]| ethernet(MAC_A, MAC_B, 0x0800, &ipv4_udp(source, [10, 9, 9, 9], 1, 2));
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
    let frame = ethernet(
        MAC_A,
        MAC_B,
        0x0800,
        &ipv4_udp([127, 0, 0, 1], [10, 0, 0, 2], 1, 2),
    );
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
