//! `loopscope stamp`: our Session-Sender against our Session-Reflector on loopback, a packet
//! built independently (Python's struct, from RFC 8762's layout) reflected by ours, and
//! tshark's TWAMP-Test dissector reading what we sent.

mod support;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ChildStdout, Command, Stdio};

use assert_cmd::cargo::CommandCargoExt;
use serde_json::Value;

/// A reflector child process, ended (SIGINT, so it reports) when dropped.
struct Reflector {
    child: Child,
    stdout: BufReader<ChildStdout>,
    endpoint: String,
}

impl Reflector {
    fn start(extra: &[&str]) -> Reflector {
        Self::start_with(Command::cargo_bin("loopscope").expect("binary"), extra)
    }

    fn start_with(mut command: Command, extra: &[&str]) -> Reflector {
        let mut child = command
            .args(["--json", "stamp", "--reflect", "udp://127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the reflector");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("listening line");
        let event: Value = serde_json::from_str(&line).expect("listening event is JSON");
        assert_eq!(event["type"], "listening", "{line}");
        let endpoint = event["endpoint"].as_str().expect("endpoint").to_owned();
        Reflector {
            child,
            stdout,
            endpoint,
        }
    }

    /// Ends the reflector with SIGINT and returns its summary.
    fn finish(mut self) -> Value {
        rustix::process::kill_process(
            rustix::process::Pid::from_child(&self.child),
            rustix::process::Signal::INT,
        )
        .expect("signal the reflector");
        let mut rest = String::new();
        self.stdout.read_to_string(&mut rest).expect("read");
        self.child.wait().expect("wait");
        let last = rest.lines().last().expect("a summary line");
        serde_json::from_str(last).expect("summary is JSON")
    }
}

impl Drop for Reflector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run_sender(endpoint: &str, args: &[&str]) -> (Option<i32>, Vec<Value>) {
    let output = Command::cargo_bin("loopscope")
        .expect("binary")
        .args(["--json", "stamp", endpoint])
        .args(args)
        .output()
        .expect("run the sender");
    let events = String::from_utf8(output.stdout)
        .expect("utf-8")
        .lines()
        .map(|line| serde_json::from_str(line).expect("every line is JSON"))
        .collect();
    (output.status.code(), events)
}

fn summary(events: &[Value]) -> &Value {
    let last = events.last().expect("at least a summary");
    assert_eq!(last["type"], "summary");
    last
}

#[test]
fn a_thousand_packets_at_one_millisecond_are_all_sent_and_answered() {
    let reflector = Reflector::start(&[]);
    let (code, events) = run_sender(
        &reflector.endpoint,
        &["--count", "1000", "--interval", "1ms", "--timeout", "5s"],
    );
    let summary = summary(&events);
    assert_eq!(summary["transmitted"], 1000, "{summary}");
    assert_eq!(summary["received"], 1000, "{summary}");
    assert_eq!(summary["lost"], 0);
    assert_eq!(summary["duplicates"], 0);
    assert_eq!(code, Some(0));
    // Absolute deadlines: the mean interval is the asked one however late single sends were.
    let achieved = summary["achieved_interval_us"].as_f64().expect("interval");
    assert!((999.0..=1001.0).contains(&achieved), "{achieved}");
    let replies: Vec<&Value> = events.iter().filter(|e| e["type"] == "reply").collect();
    assert_eq!(replies.len(), 1000);
    for reply in &replies {
        // Stateless reflector: its sequence number is ours; the TTL it saw is loopback's 64.
        assert_eq!(reply["seq"], reply["reflector_seq"]);
        assert_eq!(reply["forward_ttl"], 64, "{reply}");
        assert!(reply["residence_us"].as_f64().expect("residence") >= 0.0);
        let rtt = reply["rtt_us"].as_f64().expect("rtt");
        assert!(rtt > 0.0);
    }
    for field in [
        "rtt_p50_us",
        "rtt_p99_us",
        "forward_p50_us",
        "backward_p99_us",
    ] {
        assert!(summary[field].as_f64().is_some(), "{field} in {summary}");
    }
    assert_eq!(summary["one_way_requires_synchronised_clocks"], true);
    let reflected = reflector.finish();
    assert_eq!(reflected["reflected"], 1000, "{reflected}");
}

#[test]
fn loss_at_the_reflector_is_counted_exactly() {
    let reflector = Reflector::start(&["--drop-every", "10"]);
    let (code, events) = run_sender(
        &reflector.endpoint,
        &["--count", "100", "--interval", "1ms", "--timeout", "1s"],
    );
    let summary = summary(&events);
    assert_eq!(summary["transmitted"], 100);
    assert_eq!(summary["received"], 90, "{summary}");
    assert_eq!(summary["lost"], 10);
    assert_eq!(summary["loss_percent"], 10.0);
    assert_eq!(code, Some(1), "loss fails the run");
    let answered: Vec<u64> = events
        .iter()
        .filter(|e| e["type"] == "reply")
        .map(|e| e["seq"].as_u64().expect("seq"))
        .collect();
    // The reflector drops its 10th, 20th, ... packet: sequence numbers 9, 19, ...
    for seq in 0..100u64 {
        assert_eq!(answered.contains(&seq), seq % 10 != 9, "seq {seq}");
    }
    let reflected = reflector.finish();
    assert_eq!(reflected["dropped_on_purpose"], 10);
}

#[test]
fn a_short_size_is_a_usage_error() {
    let output = Command::cargo_bin("loopscope")
        .expect("binary")
        .args(["stamp", "udp://127.0.0.1:9", "--size", "43", "--count", "1"])
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("44"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn the_reflector_refuses_a_non_loopback_address() {
    let output = Command::cargo_bin("loopscope")
        .expect("binary")
        .args(["stamp", "--reflect", "udp://0.0.0.0:0"])
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--allow-remote"));
}

/// A Session-Sender packet packed by Python's struct from RFC 8762 Figure 2, reflected by ours,
/// and the reply unpacked by the layout of Figure 4, field by field.
#[test]
fn an_independently_built_packet_is_reflected_field_by_field() {
    if Command::new("python3").arg("-V").output().is_err() {
        eprintln!("skipping: no python3");
        return;
    }
    let reflector = Reflector::start(&[]);
    let port = reflector.endpoint.rsplit(':').next().expect("port");
    let script = r#"
import socket, struct, sys, time
port = int(sys.argv[1])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(10)
NTP = 2208988800
now = time.time()
secs = int(now) + NTP
frac = int((now % 1) * 2**32)
# Figure 2: seq, timestamp (NTP), error estimate S=0 Z=0 scale=1 mult=3, 30 MBZ, 20 padding
request = struct.pack('!IIIH30x', 0xDEADBEEF, secs, frac, 0x0103) + bytes(20)
assert len(request) == 64
sent_at = time.time()
s.sendto(request, ('127.0.0.1', port))
reply, _ = s.recvfrom(2048)
received_at = time.time()
assert len(reply) == 64, len(reply)
# Figure 4
(seq, t3s, t3f, ee, t2s, t2f, sseq, t1s, t1f, see, ttl) = struct.unpack('!IIIH2xIIIIIH2xB3x', reply[:44])
assert seq == 0xDEADBEEF, hex(seq)
assert sseq == 0xDEADBEEF
assert (t1s, t1f) == (secs, frac), 'sender timestamp copied'
assert see == 0x0103, 'sender error estimate copied'
assert ttl == 64, ttl
assert ee & 0x4000 == 0, 'NTP answered in NTP'
assert ee & 0xff != 0, 'multiplier must not be zero'
t2 = t2s - NTP + t2f / 2**32
t3 = t3s - NTP + t3f / 2**32
assert sent_at - 0.001 <= t2 <= t3 <= received_at + 0.001, (sent_at, t2, t3, received_at)
assert reply[44:] == bytes(20), 'padding'
assert reply[14:16] == b'\0\0' and reply[38:40] == b'\0\0' and reply[41:44] == b'\0\0\0', 'MBZ'
print('ok')
"#;
    let output = Command::new("python3")
        .args(["-c", script, port])
        .output()
        .expect("python3");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "ok");
    let summary = reflector.finish();
    assert_eq!(summary["reflected"], 1);
}

/// tshark's TWAMP-Test dissector (the STAMP layout is TWAMP's, RFC 8762 §4) reads the sequence
/// numbers, TTL and error estimates we put on the wire, captured on the loopback of a namespace
/// of the test's own so no other traffic mixes in.
#[test]
fn tshark_decodes_our_packets() {
    let Some(netns) = support::Netns::create("stamp", "tshark") else {
        return;
    };
    if Command::new("tshark").arg("-v").output().is_err() {
        eprintln!("skipping: no tshark");
        return;
    }
    netns.exec("ip", &["link", "set", "lo", "up"]);
    let capture = tempfile::NamedTempFile::new().expect("temp file");
    let capture_path = capture.path().to_str().expect("utf-8 path").to_owned();
    let mut tshark = netns
        .command("tshark")
        .args([
            "-i",
            "lo",
            "-f",
            "udp port 8620",
            "-c",
            "6",
            // A bound, so a capture that misses packets ends the test instead of hanging it.
            "-a",
            "duration:120",
            "-w",
            &capture_path,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tshark");
    // "Capturing on 'Loopback: lo'" comes before dumpcap has attached; "Capture started" after.
    let mut tshark_err = BufReader::new(tshark.stderr.take().expect("stderr"));
    let mut line = String::new();
    while !line.contains("Capture started") {
        line.clear();
        if tshark_err.read_line(&mut line).expect("tshark stderr") == 0 {
            panic!("tshark ended before capturing");
        }
    }
    let binary = assert_cmd::cargo::cargo_bin("loopscope");
    let mut reflector_command = netns.command(&binary);
    reflector_command.args(["--json", "stamp", "--reflect", "udp://127.0.0.1:8620"]);
    let mut reflector = reflector_command
        .stdout(Stdio::piped())
        .spawn()
        .expect("reflector");
    let mut reflector_out = BufReader::new(reflector.stdout.take().expect("stdout"));
    line.clear();
    reflector_out.read_line(&mut line).expect("listening");
    assert!(line.contains("listening"), "{line}");
    let sender = netns
        .command(&binary)
        .args([
            "--json",
            "stamp",
            "udp://127.0.0.1:8620",
            "--count",
            "3",
            "--interval",
            "10ms",
            "--size",
            "60",
            "--timestamp",
            "ptp",
        ])
        .output()
        .expect("sender");
    if sender.status.code() != Some(0) {
        let _ = tshark.kill();
    }
    assert_eq!(sender.status.code(), Some(0));
    tshark.wait().expect("tshark ends after 6 packets");
    let _ = reflector.kill();
    let _ = reflector.wait();

    let decoded = Command::new("tshark")
        .env("TZ", "UTC")
        .args([
            "-r",
            &capture_path,
            "-d",
            "udp.port==8620,twamp.test",
            "-T",
            "fields",
        ])
        .args(
            [
                "udp.dstport",
                "twamp.test.seq_number",
                "twamp.test.error_estimate.z",
                "twamp.test.sender_seq_number",
                "twamp.test.sender_ttl",
                "_ws.malformed",
                "frame.time",
                "twamp.test.timestamp",
            ]
            .iter()
            .flat_map(|field| ["-e", field]),
        )
        .output()
        .expect("tshark -r");
    let text = String::from_utf8_lossy(&decoded.stdout);
    let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(rows.len(), 6, "{text}");
    let mut requests = Vec::new();
    let mut replies = Vec::new();
    for row in &rows {
        assert_eq!(row.len(), 8, "{text}");
        assert_eq!(row[5], "", "malformed: {text}");
        // tshark's dissector reads every packet with the reflector's layout; a request's
        // sender fields are MBZ octets there.
        if row[0] == "8620" {
            requests.push(row[1].to_owned());
        } else {
            assert_eq!(row[1], row[3], "stateless: seq == sender seq: {text}");
            assert_eq!(row[4], "64", "sender TTL: {text}");
            replies.push(row[3].to_owned());
        }
        // Z of the error estimate, then of the sender's error estimate (MBZ in a request).
        let z_bits = if row[0] == "8620" { "1,0" } else { "1,1" };
        assert_eq!(row[2], z_bits, "Z bit (PTPv2): {text}");
        // Our PTPv2 timestamp names the day the capture was taken ("Nov 30, 2026 ...").
        let day = |field: &str| field.split(' ').take(3).collect::<Vec<_>>().join(" ");
        assert_eq!(
            day(row[7]),
            day(row[6]),
            "timestamp vs capture time: {text}"
        );
    }
    assert_eq!(requests, ["0", "1", "2"], "{text}");
    assert_eq!(replies, ["0", "1", "2"], "{text}");
}
