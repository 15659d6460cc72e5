//! `loopscope martians --flows FILE` and `--collect udp://...`: NetFlow v5, v9 (RFC 3954) and
//! IPFIX (RFC 7011) datagrams built byte by byte from the RFC layouts.

mod martians_support;

use std::net::UdpSocket;
use std::process::Stdio;
use std::time::Duration;

use assert_cmd::Command;
use martians_support::*;
use serde_json::Value;

fn be16(out: &mut Vec<u8>, value: u16) {
    out.extend_from_slice(&value.to_be_bytes());
}
fn be32(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_be_bytes());
}

/// NetFlow v5 record fields: (src, dst, input, output, packets, bytes, sport, dport, protocol).
type V5Record = ([u8; 4], [u8; 4], u16, u16, u32, u32, u16, u16, u8);

/// NetFlow v5: 24-byte header, 48-byte records (Cisco's v5 layout).
fn netflow_v5(records: &[V5Record]) -> Vec<u8> {
    let mut out = Vec::new();
    be16(&mut out, 5);
    be16(&mut out, records.len() as u16);
    be32(&mut out, 360_000); // sys_uptime ms
    be32(&mut out, 1_700_000_000);
    be32(&mut out, 0);
    be32(&mut out, 1); // flow_sequence
    out.extend_from_slice(&[0, 0]); // engine type, id
    be16(&mut out, 0); // sampling
    for (src, dst, input, output, packets, bytes, sport, dport, protocol) in records {
        out.extend_from_slice(src);
        out.extend_from_slice(dst);
        out.extend_from_slice(&[0, 0, 0, 0]); // nexthop
        be16(&mut out, *input);
        be16(&mut out, *output);
        be32(&mut out, *packets);
        be32(&mut out, *bytes);
        be32(&mut out, 350_000); // first
        be32(&mut out, 359_000); // last
        be16(&mut out, *sport);
        be16(&mut out, *dport);
        out.push(0); // pad1
        out.push(0x10); // tcp_flags
        out.push(*protocol);
        out.push(0); // tos
        be16(&mut out, 0); // src_as
        be16(&mut out, 0); // dst_as
        out.push(24);
        out.push(24);
        be16(&mut out, 0); // pad2
    }
    out
}

/// A v9 or IPFIX set: id, length, body padded to 4 bytes.
fn set(id: u16, body: &[u8]) -> Vec<u8> {
    let mut padded = body.to_vec();
    while !padded.len().is_multiple_of(4) {
        padded.push(0);
    }
    let mut out = Vec::new();
    be16(&mut out, id);
    be16(&mut out, (4 + padded.len()) as u16);
    out.extend_from_slice(&padded);
    out
}

fn template(template_id: u16, fields: &[(u16, u16)]) -> Vec<u8> {
    let mut out = Vec::new();
    be16(&mut out, template_id);
    be16(&mut out, fields.len() as u16);
    for (kind, length) in fields {
        be16(&mut out, *kind);
        be16(&mut out, *length);
    }
    out
}

/// NetFlow v9 packet (RFC 3954 §5.1): header then flowsets; `count` counts records.
fn netflow_v9(source_id: u32, count: u16, flowsets: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    be16(&mut out, 9);
    be16(&mut out, count);
    be32(&mut out, 360_000);
    be32(&mut out, 1_700_000_000);
    be32(&mut out, 7);
    be32(&mut out, source_id);
    for flowset in flowsets {
        out.extend_from_slice(flowset);
    }
    out
}

/// IPFIX message (RFC 7011 §3.1): 16-byte header whose length covers the whole message.
fn ipfix(domain: u32, sets: &[Vec<u8>]) -> Vec<u8> {
    let body: Vec<u8> = sets.concat();
    let mut out = Vec::new();
    be16(&mut out, 10);
    be16(&mut out, (16 + body.len()) as u16);
    be32(&mut out, 1_700_000_000);
    be32(&mut out, 1);
    be32(&mut out, domain);
    out.extend_from_slice(&body);
    out
}

// Information element ids (shared by v9 and IPFIX for these).
const OCTETS: u16 = 1;
const PACKETS: u16 = 2;
const PROTOCOL: u16 = 4;
const SRC_PORT: u16 = 7;
const SRC_V4: u16 = 8;
const INPUT_IF: u16 = 10;
const DST_PORT: u16 = 11;
const DST_V4: u16 = 12;
const OUTPUT_IF: u16 = 14;
const SRC_V6: u16 = 27;
const DST_V6: u16 = 28;

fn exporter_frame(source: [u8; 4], sport: u16, payload: &[u8]) -> Vec<u8> {
    ethernet(
        MAC_A,
        MAC_B,
        0x0800,
        &ipv4(source, [10, 0, 0, 1], 17, &udp(sport, 2055, payload)),
    )
}

fn run_flows(path: &std::path::Path) -> (i32, Vec<Value>) {
    let output = Command::cargo_bin("loopscope")
        .unwrap()
        .args(["--json", "martians", "--flows"])
        .arg(path)
        .output()
        .unwrap();
    (output.status.code().unwrap(), json_lines(&output.stdout))
}

#[test]
fn v5_v9_and_ipfix_martian_flows_with_exporter_and_interfaces() {
    let dir = tempfile::tempdir().unwrap();
    let v5 = netflow_v5(&[
        ([127, 0, 0, 1], [10, 0, 0, 2], 3, 5, 10, 1000, 4000, 53, 17),
        ([10, 0, 0, 7], [10, 0, 0, 2], 3, 5, 1, 60, 1, 2, 6),
    ]);
    let v9_template = template(
        256,
        &[
            (SRC_V4, 4),
            (DST_V4, 4),
            (INPUT_IF, 2),
            (OUTPUT_IF, 2),
            (PACKETS, 4),
            (OCTETS, 4),
            (PROTOCOL, 1),
            (SRC_PORT, 2),
            (DST_PORT, 2),
        ],
    );
    let mut v9_record = vec![0, 0, 0, 9, 10, 0, 0, 2];
    v9_record.extend_from_slice(&[0, 4, 0, 6, 0, 0, 0, 3, 0, 0, 0, 180, 17, 0, 68, 0, 67]);
    let v9 = netflow_v9(77, 2, &[set(0, &v9_template), set(256, &v9_record)]);
    // IPFIX: the template in one message, the data in the next (cached per exporter+domain).
    let ipfix_template = ipfix(
        42,
        &[set(
            2,
            &template(
                300,
                &[
                    (SRC_V6, 16),
                    (DST_V6, 16),
                    (INPUT_IF, 4),
                    (PACKETS, 8),
                    (OCTETS, 8),
                ],
            ),
        )],
    );
    let mut ipfix_record = Vec::new();
    ipfix_record.extend_from_slice(&"::1".parse::<std::net::Ipv6Addr>().unwrap().octets());
    ipfix_record.extend_from_slice(&"fd00::2".parse::<std::net::Ipv6Addr>().unwrap().octets());
    ipfix_record.extend_from_slice(&[0, 0, 0, 11]);
    ipfix_record.extend_from_slice(&7u64.to_be_bytes());
    ipfix_record.extend_from_slice(&700u64.to_be_bytes());
    let ipfix_data = ipfix(42, &[set(300, &ipfix_record)]);
    // A second exporter sends data for template 300 without ever sending the template.
    let orphan = ipfix(42, &[set(300, &ipfix_record)]);
    let capture = pcap(
        1,
        &[
            (1, 0, exporter_frame([10, 9, 9, 9], 50000, &v5)),
            (2, 0, exporter_frame([10, 9, 9, 9], 50000, &v9)),
            (3, 0, exporter_frame([10, 9, 9, 9], 50000, &ipfix_template)),
            (4, 0, exporter_frame([10, 9, 9, 9], 50000, &ipfix_data)),
            (5, 0, exporter_frame([10, 9, 9, 10], 50001, &orphan)),
        ],
    );
    let path = dir.path().join("exports.pcap");
    std::fs::write(&path, capture).unwrap();
    let (code, lines) = run_flows(&path);
    assert_eq!(code, 1);
    let findings = of_type(&lines, "flow_finding");
    assert_eq!(findings.len(), 3, "{lines:?}");

    let v5 = findings[0];
    assert_eq!(v5["version"], 5);
    assert_eq!(v5["exporter"], "10.9.9.9:50000");
    assert_eq!(v5["source"], "127.0.0.1");
    assert_eq!(v5["input_interface"], 3);
    assert_eq!(v5["output_interface"], 5);
    assert_eq!(v5["packets"], 10);
    assert_eq!(v5["bytes"], 1000);
    assert_eq!(v5["reasons"][0], "loopback_source");

    let v9 = findings[1];
    assert_eq!(v9["version"], 9);
    assert_eq!(v9["observation_domain"], 77);
    assert_eq!(v9["source"], "0.0.0.9");
    assert_eq!(v9["input_interface"], 4);
    assert_eq!(v9["output_interface"], 6);
    assert_eq!(v9["packets"], 3);
    assert_eq!(v9["bytes"], 180);
    assert_eq!(v9["source_port"], 68);
    assert_eq!(v9["reasons"][0], "this_network_source");

    let ipfix = findings[2];
    assert_eq!(ipfix["version"], 10);
    assert_eq!(ipfix["observation_domain"], 42);
    assert_eq!(ipfix["source"], "::1");
    assert_eq!(ipfix["input_interface"], 11);
    assert_eq!(ipfix["packets"], 7);
    assert_eq!(ipfix["bytes"], 700);

    let summary = of_type(&lines, "summary")[0];
    assert_eq!(summary["datagrams"], 5);
    assert_eq!(summary["exporters"], 2);
    assert_eq!(summary["martian_flows"], 3);
    assert_eq!(
        summary["flow_records"], 4,
        "2 v5 + 1 v9 + 1 IPFIX records decoded"
    );
    assert_eq!(summary["records_without_template"], 1);
}

/// Two observation domains of one exporter reuse template id 256 with the fields swapped: each
/// domain's data must be read with its own template.
#[test]
fn templates_are_scoped_per_observation_domain() {
    let dir = tempfile::tempdir().unwrap();
    let domain1 = ipfix(
        1,
        &[
            set(2, &template(256, &[(SRC_V4, 4), (DST_V4, 4)])),
            set(256, &[10, 0, 0, 5, 10, 0, 0, 6]),
        ],
    );
    let domain2_template = ipfix(2, &[set(2, &template(256, &[(DST_V4, 4), (SRC_V4, 4)]))]);
    // In domain 2 this record means dst 10.0.0.1, src 127.0.0.1.
    let domain2_data = ipfix(2, &[set(256, &[10, 0, 0, 1, 127, 0, 0, 1])]);
    let capture = pcap(
        1,
        &[
            (1, 0, exporter_frame([10, 9, 9, 9], 4739, &domain1)),
            (2, 0, exporter_frame([10, 9, 9, 9], 4739, &domain2_template)),
            (3, 0, exporter_frame([10, 9, 9, 9], 4739, &domain1)),
            (4, 0, exporter_frame([10, 9, 9, 9], 4739, &domain2_data)),
        ],
    );
    let path = dir.path().join("domains.pcap");
    std::fs::write(&path, capture).unwrap();
    let (code, lines) = run_flows(&path);
    assert_eq!(code, 1);
    let findings = of_type(&lines, "flow_finding");
    assert_eq!(findings.len(), 1, "{lines:?}");
    assert_eq!(findings[0]["source"], "127.0.0.1");
    assert_eq!(findings[0]["destination"], "10.0.0.1");
    assert_eq!(findings[0]["observation_domain"], 2);
    assert_eq!(findings[0]["reasons"][0], "loopback_source");
}

#[test]
fn garbage_datagrams_are_counted_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let capture = pcap(
        1,
        &[
            (
                1,
                0,
                exporter_frame([10, 9, 9, 9], 1, b"\x00\x09garbage that is not netflow"),
            ),
            (
                2,
                0,
                exporter_frame([10, 9, 9, 9], 1, &[0, 10, 0, 200, 1, 2]),
            ),
            (
                3,
                0,
                exporter_frame(
                    [10, 9, 9, 9],
                    1,
                    &netflow_v5(&[([10, 0, 0, 1], [10, 0, 0, 2], 1, 2, 1, 1, 1, 1, 6)]),
                ),
            ),
        ],
    );
    let path = dir.path().join("garbage.pcap");
    std::fs::write(&path, capture).unwrap();
    let (code, lines) = run_flows(&path);
    assert_eq!(code, 0, "{lines:?}");
    let summary = of_type(&lines, "summary")[0];
    assert_eq!(summary["datagrams"], 3);
    assert_eq!(summary["parse_errors"], 2);
    assert_eq!(summary["flow_records"], 1);
    assert_eq!(summary["verdict"], "no martian flows");
}

/// The UDP collector: exports sent to 127.0.0.1 are flagged with the sender as exporter. The
/// test waits for the collector's first finding (a datagram sent before it has bound is lost,
/// so one goes out each time no finding came), then ends the run with SIGINT, which still
/// gives the summary.
#[test]
fn udp_collector_flags_martian_flows() {
    use std::io::BufRead;

    let port = {
        let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("loopscope"))
        .args(["--json", "martians", "--duration", "10m", "--collect"])
        .arg(format!("udp://127.0.0.1:{port}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (lines_tx, lines_rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    let datagram = netflow_v5(&[([240, 0, 0, 1], [10, 0, 0, 2], 9, 1, 5, 500, 1, 2, 17)]);
    let first = loop {
        sender.send_to(&datagram, ("127.0.0.1", port)).unwrap();
        match lines_rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => break line,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
            Err(error) => panic!("the collector ended early: {error}"),
        }
    };
    let interrupted = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupted.success());
    let status = child.wait().unwrap();
    reader.join().unwrap();
    let rest: Vec<String> = lines_rx.try_iter().collect();
    assert_eq!(status.code(), Some(1));
    let lines = json_lines([first, rest.join("\n")].join("\n").as_bytes());
    let findings = of_type(&lines, "flow_finding");
    assert!(!findings.is_empty());
    assert_eq!(
        findings[0]["exporter"],
        sender.local_addr().unwrap().to_string()
    );
    assert_eq!(findings[0]["source"], "240.0.0.1");
    assert_eq!(findings[0]["input_interface"], 9);
    assert_eq!(findings[0]["reasons"][0], "class_e_source");
    assert_eq!(lines.last().unwrap()["type"], "summary");
}

fn run_flows_with(path: &std::path::Path, extra: &[&str]) -> (i32, Vec<Value>) {
    let output = Command::cargo_bin("loopscope")
        .unwrap()
        .args(["--json", "martians"])
        .args(extra)
        .arg("--flows")
        .arg(path)
        .output()
        .unwrap();
    (output.status.code().unwrap(), json_lines(&output.stdout))
}

/// Issue 12 item 12: `-q` and `--log-burst` act on flow findings as they do on packets.
#[test]
fn quiet_and_log_burst_apply_to_flow_findings() {
    let dir = tempfile::tempdir().unwrap();
    let records: Vec<V5Record> = (1..=6)
        .map(|k| ([127, 0, 0, k], [10, 0, 0, 2], 1, 2, 1, 60, 1, 2, 17))
        .collect();
    let capture = pcap(
        1,
        &[(
            1,
            0,
            exporter_frame([10, 9, 9, 9], 2055, &netflow_v5(&records)),
        )],
    );
    let path = dir.path().join("six.pcap");
    std::fs::write(&path, capture).unwrap();

    let (code, lines) = run_flows_with(&path, &["-q"]);
    assert_eq!(code, 1);
    assert!(of_type(&lines, "flow_finding").is_empty(), "{lines:?}");
    assert_eq!(of_type(&lines, "summary")[0]["martian_flows"], 6);

    let (code, lines) = run_flows_with(&path, &["--log-burst", "2"]);
    assert_eq!(code, 1);
    assert_eq!(of_type(&lines, "flow_finding").len(), 2, "{lines:?}");
    assert_eq!(of_type(&lines, "suppressed")[0]["suppressed_findings"], 4);
    let summary = of_type(&lines, "summary")[0];
    assert_eq!(summary["findings_logged"], 2);
    assert_eq!(summary["findings_suppressed"], 4);
    assert_eq!(summary["martian_flows"], 6);
}

/// Issue 12 item 12: counts claimed by an exporter saturate at u64::MAX instead of wrapping.
#[test]
fn flow_totals_saturate() {
    let dir = tempfile::tempdir().unwrap();
    let template = ipfix(
        5,
        &[set(
            2,
            &template(400, &[(SRC_V4, 4), (DST_V4, 4), (PACKETS, 8), (OCTETS, 8)]),
        )],
    );
    let mut record = vec![127, 0, 0, 1, 10, 0, 0, 2];
    record.extend_from_slice(&(u64::MAX - 1).to_be_bytes());
    record.extend_from_slice(&(u64::MAX - 1).to_be_bytes());
    let data = ipfix(5, &[set(400, &[record.clone(), record].concat())]);
    let capture = pcap(
        1,
        &[
            (1, 0, exporter_frame([10, 9, 9, 9], 4739, &template)),
            (2, 0, exporter_frame([10, 9, 9, 9], 4739, &data)),
        ],
    );
    let path = dir.path().join("huge.pcap");
    std::fs::write(&path, capture).unwrap();
    let (code, lines) = run_flows_with(&path, &[]);
    assert_eq!(code, 1);
    let summary = of_type(&lines, "summary")[0];
    assert_eq!(summary["martian_flows"], 2);
    assert_eq!(summary["martian_flow_packets"], u64::MAX);
    assert_eq!(summary["martian_flow_bytes"], u64::MAX);
}

/// An IPFIX template with `fields` copies of sourceIPv4Address.
fn wide_template(domain: u32, template_id: u16, fields: usize) -> Vec<u8> {
    let fields: Vec<(u16, u16)> = vec![(SRC_V4, 4); fields];
    ipfix(domain, &[set(2, &template(template_id, &fields))])
}

/// Issue 12 item 4: templates are bounded. One template over the field limit is refused; a
/// flood of wide templates from many observation domains (chosen by the sender) evicts the
/// least recently used domains to stay within the field budget, and both are counted. An
/// evicted domain's data then has no template; the domain sent last keeps its own.
#[test]
fn template_state_is_bounded_and_refusals_counted() {
    let dir = tempfile::tempdir().unwrap();
    let mut frames = vec![(
        0,
        0,
        exporter_frame([10, 9, 9, 9], 4739, &wide_template(1, 256, 2000)),
    )];
    // 400 domains x 1000 fields: 403,200 field units, over the 262,144 budget.
    for domain in 100..500u32 {
        frames.push((
            1,
            0,
            exporter_frame([10, 9, 9, 9], 4739, &wide_template(domain, 256, 1000)),
        ));
    }
    // A record for template 256 (1000 source addresses and nothing else) in the first and the
    // last domain of the flood.
    let record = [127u8, 0, 0, 1].repeat(1000);
    for domain in [100u32, 499] {
        frames.push((
            2,
            0,
            exporter_frame([10, 9, 9, 9], 4739, &ipfix(domain, &[set(256, &record)])),
        ));
    }
    let path = dir.path().join("flood.pcap");
    std::fs::write(&path, pcap(1, &frames)).unwrap();
    let (_, lines) = run_flows_with(&path, &["-q"]);
    let summary = of_type(&lines, "summary")[0];
    assert_eq!(summary["templates_refused"], 1, "{summary}");
    assert_eq!(summary["template_field_limit"], 1024);
    assert_eq!(summary["template_field_budget"], 262_144);
    // 262,144 / 1,008 = 260 domains fit: 140 are evicted, the oldest first.
    assert_eq!(summary["template_scopes_evicted"], 140, "{summary}");
    assert_eq!(summary["templates_evicted"], 140);
    assert_eq!(
        summary["records_without_template"], 1,
        "domain 100 was evicted"
    );
    assert_eq!(summary["flow_records"], 1, "domain 499 kept its template");
}
