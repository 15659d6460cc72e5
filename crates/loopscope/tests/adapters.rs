//! The adapter flags every link test shares, through the one stack builder: `--capture` writes
//! pcapng files that tshark reads, with one packet per send and per receive; `--impair` acts the
//! same on `ping` as on `bert`. tshark is the independent reader (scripts/test installs it);
//! the tests that need it skip with the reason when it is missing.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};

use serde_json::Value;

mod support;
use support::{loopscope, summary_of};

/// A `loopscope reflect` child on a port the kernel picks, killed when the test ends.
struct Reflector {
    child: Child,
    endpoint: String,
}

impl Reflector {
    fn start(endpoint: &str) -> Reflector {
        let child = loopscope()
            .args(["--json", "reflect", endpoint, "--quiet"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("reflect starts");
        // Owned by the guard at once, so a failure below still kills and reaps the child.
        let mut reflector = Reflector {
            child,
            endpoint: String::new(),
        };
        let mut stdout = BufReader::new(reflector.child.stdout.take().expect("stdout"));
        loop {
            let mut line = String::new();
            if stdout.read_line(&mut line).expect("reflect output") == 0 {
                panic!("reflect exited before listening");
            }
            let record: Value = serde_json::from_str(&line).expect("JSON line");
            if record["type"] == "listening" {
                reflector.endpoint = record["endpoint"].as_str().expect("endpoint").to_string();
                return reflector;
            }
        }
    }
}

impl Drop for Reflector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tshark_present() -> bool {
    let present = support::installed("tshark");
    if !present {
        eprintln!("skipping: tshark is not installed (apt-get install tshark)");
    }
    present
}

/// Every packet tshark decodes in `file`: (direction from the EPB flags, UDP source port, UDP
/// payload bytes).
fn tshark_packets(file: &std::path::Path) -> Vec<(u32, u16, usize)> {
    support::tshark::fields(
        file,
        &[],
        &["frame.packet_flags_direction", "udp.srcport", "udp.length"],
    )
    .iter()
    .map(|fields| {
        let direction = u32::from_str_radix(fields[0].trim_start_matches("0x"), 16)
            .unwrap_or_else(|_| panic!("direction in {fields:?}"));
        let port = fields[1]
            .parse()
            .unwrap_or_else(|_| panic!("port in {fields:?}"));
        let length: usize = fields[2]
            .parse()
            .unwrap_or_else(|_| panic!("length in {fields:?}"));
        (direction, port, length - 8)
    })
    .collect()
}

const OUTBOUND: u32 = 2;
const INBOUND: u32 = 1;

#[test]
fn ping_over_udp_captures_one_packet_per_request_and_per_reply() {
    if !tshark_present() {
        return;
    }
    let reflector = Reflector::start("udp://127.0.0.1:0");
    let dir = tempfile::tempdir().expect("temporary directory");
    let file = dir.path().join("run.pcapng");
    let output = loopscope()
        .args([
            "--json",
            "ping",
            "-c",
            "5",
            "-i",
            "0",
            &reflector.endpoint,
            "--capture",
        ])
        .arg(&file)
        .output()
        .expect("run ping");
    assert_eq!(output.status.code(), Some(0));
    let summary = summary_of(&output);
    assert_eq!(
        (
            summary["transmitted"].as_u64(),
            summary["received"].as_u64()
        ),
        (Some(5), Some(5))
    );
    let packets = tshark_packets(&file);
    // Request and reply alternate (one outstanding at a time): out from the near end's port,
    // back from the echo port, each a whole 82-byte frame (56 payload + 26).
    let expected: Vec<(u32, u16, usize)> = (0..5)
        .flat_map(|_| [(OUTBOUND, 49152, 82), (INBOUND, 7, 82)])
        .collect();
    assert_eq!(packets, expected);
}

#[test]
fn bert_over_tcp_captures_every_byte_sent_and_received() {
    if !tshark_present() {
        return;
    }
    let reflector = Reflector::start("tcp://127.0.0.1:0");
    let dir = tempfile::tempdir().expect("temporary directory");
    let file = dir.path().join("run.pcapng");
    let output = loopscope()
        .args([
            "--json",
            "bert",
            &reflector.endpoint,
            "--bytes",
            "1Mi",
            "--chunk",
            "64Ki",
        ])
        .arg("--capture")
        .arg(&file)
        .output()
        .expect("run bert");
    let summary = summary_of(&output);
    assert_eq!(output.status.code(), Some(0), "{summary}");
    let packets = tshark_packets(&file);
    let sent: usize = packets
        .iter()
        .filter(|p| p.0 == OUTBOUND)
        .map(|p| p.2)
        .sum();
    let received: usize = packets.iter().filter(|p| p.0 == INBOUND).map(|p| p.2).sum();
    assert_eq!(sent as u64, summary["bytes_sent"].as_u64().unwrap());
    assert_eq!(received as u64, summary["bytes_received"].as_u64().unwrap());
    assert_eq!(sent, 1 << 20);
    // 16 sends of 64 KiB, each in two packets (a UDP packet carries 65,507 bytes at most).
    assert_eq!(packets.iter().filter(|p| p.0 == OUTBOUND).count(), 32);
    assert!(packets.iter().all(|p| (p.0 == OUTBOUND) == (p.1 == 49152)));
}

/// `--impair` on `ping` goes through the same builder as on `bert`: loss=1 loses every
/// request, and the summary says what the impairment did.
#[test]
fn ping_takes_impair_like_bert() {
    let output = loopscope()
        .args([
            "--json", "ping", "-c", "3", "-i", "0", "-W", "100ms", "loop:", "--impair", "loss=1",
        ])
        .output()
        .expect("run ping");
    assert_eq!(output.status.code(), Some(1));
    let summary = summary_of(&output);
    assert_eq!(summary["received"], 0);
    assert_eq!(summary["link"]["impairment"]["lost_messages"], 3);
    let output = loopscope()
        .args(["ping", "-c", "1", "loop:", "--impair", "bre=1"])
        .output()
        .expect("run ping");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("unknown option 'bre'"), "{stderr}");
}
