//! `loopscope bfd` against `loopscope reflect --bfd` (and `--sbfd`, `--bfd-echo`) on loopback
//! addresses of their own (127.77.N.x, one pair per test, so parallel tests never share a
//! port). Every wait is on a line the programs print, never on a sleep.

use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::Duration;

use assert_cmd::cargo::CommandCargoExt;
use serde_json::Value;

mod support;
use support::is_root;

/// Longest wait for an expected line: generous, since CI runs beside stress-ng.
const PATIENCE: Duration = Duration::from_secs(60);

struct Running {
    child: Child,
    lines: Receiver<Value>,
}

impl Running {
    fn start(args: &[&str]) -> Running {
        let mut child = Command::cargo_bin("loopscope")
            .expect("binary")
            .arg("--json")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn loopscope");
        let stdout = child.stdout.take().expect("stdout");
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let value: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
                if send.send(value).is_err() {
                    break;
                }
            }
        });
        Running { child, lines }
    }

    /// The first line for which `wanted` holds (earlier lines are passed over).
    fn wait_for(&self, what: &str, wanted: impl Fn(&Value) -> bool) -> Value {
        loop {
            match self.lines.recv_timeout(PATIENCE) {
                Ok(line) if wanted(&line) => return line,
                Ok(_) => {}
                Err(_) => panic!("no line with {what} within {PATIENCE:?}"),
            }
        }
    }

    /// Ctrl-C, then the summary and the exit code.
    fn interrupt(mut self) -> (Value, i32) {
        rustix::process::kill_process(
            rustix::process::Pid::from_child(&self.child),
            rustix::process::Signal::INT,
        )
        .expect("SIGINT");
        let summary = self.wait_for("the summary", |v| v["type"] == "summary");
        let status = self.child.wait().expect("wait");
        (summary, status.code().unwrap_or(-1))
    }

    /// Waits for the end of a run with an end of its own.
    fn finish(mut self) -> (Value, i32) {
        let summary = self.wait_for("the summary", |v| v["type"] == "summary");
        let status = self.child.wait().expect("wait");
        (summary, status.code().unwrap_or(-1))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn is_state(to: &'static str) -> impl Fn(&Value) -> bool {
    move |v| v["type"] == "state" && v["to"] == to
}

fn responder(address: &str, extra: &[&str]) -> Running {
    let endpoint = format!("udp://{address}");
    let mut args = vec!["reflect", "--bfd", endpoint.as_str()];
    args.extend_from_slice(extra);
    let running = Running::start(&args);
    running.wait_for("listening", |v| v["type"] == "listening");
    running
}

#[test]
fn a_session_comes_up_and_a_vanished_peer_is_detected_within_the_detection_time() {
    let far = responder(
        "127.77.1.1",
        &["--bfd-min-tx", "100ms", "--bfd-min-rx", "100ms"],
    );
    let speaker = Running::start(&[
        "bfd",
        "udp://127.77.1.1",
        "--local",
        "127.77.1.2",
        "--min-tx",
        "100ms",
        "--min-rx",
        "100ms",
    ]);
    speaker.wait_for("Up", is_state("Up"));
    speaker.wait_for("100 ms x 3", |v| {
        v["type"] == "negotiated" && v["detection_time_ms"] == 300.0
    });
    far.wait_for("the responder's Up", is_state("Up"));
    drop(far); // SIGKILL: no AdminDown, the peer just goes silent
    let down = speaker.wait_for("Down", is_state("Down"));
    assert_eq!(down["diagnostic_code"], 1, "{down}");
    assert_eq!(down["diagnostic"], "Control Detection Time Expired");
    // RFC 5880 §6.8.4: Down a Detection Time (3 × 100 ms) after the last packet; the issue
    // allows one interval more.
    let detected = down["detection_ms"].as_f64().expect("detection_ms");
    assert!((300.0..=400.0).contains(&detected), "{down}");
    let (summary, code) = speaker.interrupt();
    assert_eq!(code, 1, "a flap fails the run: {summary}");
    assert_eq!(summary["flaps"], 1);
    assert_eq!(summary["came_up"], true);
    assert_eq!(summary["detections"], 1);
    assert_eq!(summary["detection_p99_ms"], detected);
}

#[test]
fn a_session_that_never_comes_up_is_exit_1() {
    let (summary, code) = Running::start(&[
        "bfd",
        "udp://127.77.2.1",
        "--local",
        "127.77.2.2",
        "--duration",
        "1500ms",
    ])
    .finish();
    assert_eq!(code, 1, "{summary}");
    assert_eq!(summary["came_up"], false);
    assert!(summary["sent"].as_u64().expect("sent") >= 1);
}

/// Writes a key file the test owns.
fn key_file(dir: &tempfile::TempDir, key: &str) -> String {
    let path = dir.path().join("key");
    std::fs::write(&path, format!("{key}\n")).expect("write key");
    path.display().to_string()
}

/// A BFD header written out by hand (RFC 5880 §4.1), not by our emitter.
fn header(state: u8, flags: u8, length: u8, mine: u32, yours: u32) -> Vec<u8> {
    let mut packet = vec![0x20, (state << 6) | flags, 3, length];
    for word in [mine, yours, 100_000, 100_000, 0] {
        packet.extend_from_slice(&word.to_be_bytes());
    }
    packet
}

#[test]
fn bad_packets_are_counted_and_dropped_and_the_session_is_unaffected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let auth = format!("sha1:5:{}", key_file(&dir, "s3cret"));
    let _far = responder(
        "127.77.3.1",
        &[
            "--bfd-min-tx",
            "100ms",
            "--bfd-min-rx",
            "100ms",
            "--bfd-auth",
            &auth,
        ],
    );
    let speaker = Running::start(&[
        "bfd",
        "udp://127.77.3.1",
        "--local",
        "127.77.3.2",
        "--min-tx",
        "100ms",
        "--min-rx",
        "100ms",
        "--auth",
        &auth,
    ]);
    let started = speaker.wait_for("started", |v| v["type"] == "started");
    let ours = u32::try_from(started["my_discriminator"].as_u64().expect("discriminator"))
        .expect("32 bits");
    speaker.wait_for("Up", is_state("Up"));
    // From the peer's address, so only the packets' faults can get them dropped.
    let forger = UdpSocket::bind("127.77.3.1:0").expect("bind");
    let to = "127.77.3.2:3784";
    // Wrong TTL: a well-formed packet sent with 254 (RFC 5881 §5).
    forger.set_ttl(254).expect("ttl");
    let mut good_layout = header(3, 0x04, 52, 0x0102_0304, ours);
    good_layout.extend_from_slice(&[4, 28, 5, 0, 0, 0, 0, 9]);
    good_layout.extend_from_slice(&[0xab; 20]);
    forger.send_to(&good_layout, to).expect("send");
    forger.set_ttl(255).expect("ttl");
    // Bad length: the Length field says 30 in a 24-octet datagram.
    forger
        .send_to(&header(3, 0, 30, 0x0102_0304, ours), to)
        .expect("send");
    // Zero My Discriminator.
    forger.send_to(&header(1, 0, 24, 0, 0), to).expect("send");
    // A keyed SHA-1 section whose hash is not the packet's.
    forger.send_to(&good_layout, to).expect("send");
    for _ in 0..4 {
        speaker.wait_for("a drop", |v| v["type"] == "dropped");
    }
    let (summary, code) = speaker.interrupt();
    assert_eq!(code, 0, "{summary}");
    assert_eq!(summary["flaps"], 0);
    let dropped = &summary["dropped"];
    assert_eq!(dropped["ttl"], 1, "{summary}");
    assert_eq!(dropped["malformed"], 1, "{summary}");
    assert_eq!(dropped["zero_discriminator"], 1, "{summary}");
    assert!(
        dropped["auth_failed"].as_u64() == Some(1) || dropped["auth_sequence"].as_u64() == Some(1),
        "{summary}"
    );
}

#[test]
fn every_authentication_type_comes_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = key_file(&dir, "0123456789");
    for (n, kind) in ["simple", "md5", "meticulous-md5", "sha1", "meticulous-sha1"]
        .into_iter()
        .enumerate()
    {
        let far_address = format!("127.77.4.{}", 2 * n + 1);
        let near_address = format!("127.77.4.{}", 2 * n + 2);
        let auth = format!("{kind}:{n}:{key}");
        let _far = responder(&far_address, &["--bfd-auth", &auth]);
        let speaker = Running::start(&[
            "bfd",
            &format!("udp://{far_address}"),
            "--local",
            &near_address,
            "--auth",
            &auth,
        ]);
        speaker.wait_for("Up", is_state("Up"));
        let (summary, code) = speaker.interrupt();
        assert_eq!(code, 0, "{kind}: {summary}");
        assert_eq!(summary["dropped"], serde_json::json!({}), "{kind}");
    }
    // A wrong key never comes up: the responder drops every packet, so it never speaks.
    let other_dir = tempfile::tempdir().expect("tempdir");
    let other = key_file(&other_dir, "another");
    let far = responder("127.77.4.21", &["--bfd-auth", &format!("md5:1:{key}")]);
    let (summary, code) = Running::start(&[
        "bfd",
        "udp://127.77.4.21",
        "--local",
        "127.77.4.22",
        "--auth",
        &format!("md5:1:{other}"),
        "--duration",
        "1500ms",
    ])
    .finish();
    assert_eq!(code, 1, "{summary}");
    assert_eq!(summary["received"], 0, "{summary}");
    far.wait_for("a dropped packet", |v| {
        v["type"] == "dropped" && v["reason"] == "auth_failed"
    });
}

#[test]
fn multihop_sessions_use_port_4784() {
    let _far = responder("127.77.5.1", &["--bfd-multihop"]);
    let speaker = Running::start(&[
        "bfd",
        "udp://127.77.5.1",
        "--local",
        "127.77.5.2",
        "--multihop",
    ]);
    let started = speaker.wait_for("started", |v| v["type"] == "started");
    assert_eq!(started["peer"], "127.77.5.1:4784");
    speaker.wait_for("Up", is_state("Up"));
    let (_, code) = speaker.interrupt();
    assert_eq!(code, 0);
}

#[test]
fn the_sbfd_reflector_answers_its_discriminator_only() {
    let reflector = Running::start(&["reflect", "--sbfd", "42", "udp://127.77.6.1"]);
    reflector.wait_for("listening", |v| v["type"] == "listening");
    let (summary, code) = Running::start(&[
        "bfd",
        "--sbfd",
        "42",
        "udp://127.77.6.1",
        "--count",
        "5",
        "--min-tx",
        "20ms",
    ])
    .finish();
    assert_eq!(code, 0, "{summary}");
    assert_eq!(summary["answered"], 5);
    assert_eq!(summary["came_up"], true);
    let (summary, code) = Running::start(&[
        "bfd",
        "--sbfd",
        "43",
        "udp://127.77.6.1",
        "--count",
        "3",
        "--min-tx",
        "20ms",
    ])
    .finish();
    assert_eq!(code, 1, "{summary}");
    assert_eq!(summary["answered"], 0);
}

#[test]
fn the_echo_function_reports_round_trips() {
    let _far = responder("127.77.7.1", &["--bfd-echo", "--bfd-min-rx", "50ms"]);
    let speaker = Running::start(&[
        "bfd",
        "udp://127.77.7.1",
        "--local",
        "127.77.7.2",
        "--echo",
        "50ms",
    ]);
    let reply = speaker.wait_for("an echo reply", |v| v["type"] == "reply");
    assert!(reply["rtt_ms"].as_f64().expect("rtt") > 0.0);
    let (summary, code) = speaker.interrupt();
    assert_eq!(code, 0, "{summary}");
    assert!(summary["echo"]["received"].as_u64() >= Some(1), "{summary}");
}

#[test]
fn bad_arguments_are_one_line_and_exit_2() {
    for args in [
        &["bfd", "udp://127.0.0.1", "--auth", "rot13:1:/nonexistent"][..],
        &["bfd", "udp://127.0.0.1", "--auth", "md5:1:/nonexistent/key"],
        &["bfd", "udp://127.0.0.1", "--auth", "md5:300:/dev/null"],
        &["bfd", "--sbfd", "0", "udp://127.0.0.1"],
        &["bfd", "udp://127.0.0.1", "--min-tx", "0s"],
        &["bfd", "udp://127.0.0.1", "--retime", "1s:2s"],
        &["bfd", "tcp://127.0.0.1"],
    ] {
        let output = Command::cargo_bin("loopscope")
            .expect("binary")
            .args(args)
            .output()
            .expect("run");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("loopscope: error: "),
            "{args:?}: {stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
    }
}

#[test]
fn tshark_decodes_every_packet_we_send() {
    if !is_root() {
        eprintln!("skipping: capturing on lo needs root");
        return;
    }
    if Command::new("tshark").arg("-v").output().is_err() {
        eprintln!("skipping: tshark is not installed");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    // Decoded live, line by line; a datagram to the discard port marks what has been seen, so
    // the test waits for the capture, not for a guessed time.
    let mut capture = Command::new("tshark")
        .args([
            "-i",
            "lo",
            "-f",
            "net 127.77.8.0/24",
            "-l",
            "-d",
            "udp.port==7784,bfd",
        ])
        .args(["-T", "fields", "-E", "separator=|"])
        .args([
            "-e",
            "udp.dstport",
            "-e",
            "udp.srcport",
            "-e",
            "_ws.col.Protocol",
        ])
        .args([
            "-e",
            "bfd.auth.type",
            "-e",
            "bfd.flags.p",
            "-e",
            "bfd.flags.f",
        ])
        .args(["-e", "_ws.malformed", "-e", "_ws.expert.severity"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("tshark");
    let stdout = capture.stdout.take().expect("stdout");
    let (send, decoded) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if send.send(line).is_err() {
                break;
            }
        }
    });
    let marker = UdpSocket::bind("127.77.8.99:0").expect("bind");
    let mut lines = Vec::new();
    // Each mark goes to a port of its own, so a late copy of an earlier one is not taken for it.
    let mark = |lines: &mut Vec<String>, port: u16| {
        // Resent until seen: the first may go out before the capture has started.
        loop {
            marker
                .send_to(b"mark", ("127.77.8.98", port))
                .expect("send marker");
            match decoded.recv_timeout(Duration::from_millis(200)) {
                Ok(line) if line.starts_with(&format!("{port}|")) => return,
                Ok(line) => lines.push(line),
                Err(mpsc::RecvTimeoutError::Timeout) => continue,
                Err(mpsc::RecvTimeoutError::Disconnected) => panic!("tshark ended"),
            }
        }
    };
    mark(&mut lines, 9);
    lines.clear();
    let key = key_file(&dir, "0123456789");
    let kinds = ["simple", "md5", "meticulous-md5", "sha1", "meticulous-sha1"];
    for (n, kind) in kinds.iter().enumerate() {
        let far = format!("127.77.8.{}", 2 * n + 1);
        let auth = format!("{kind}:{n}:{key}");
        let _far = responder(&far, &["--bfd-auth", &auth, "--bfd-echo"]);
        let speaker = Running::start(&[
            "bfd",
            &format!("udp://{far}"),
            "--local",
            &format!("127.77.8.{}", 2 * n + 2),
            "--auth",
            &auth,
            "--min-tx",
            "50ms",
            "--retime",
            "0s:60ms:60ms:4",
            "--echo",
            "50ms",
        ]);
        speaker.wait_for("a poll answered", |v| v["type"] == "poll_final");
        speaker.wait_for("an echo", |v| v["type"] == "reply");
        let (_, code) = speaker.interrupt();
        assert_eq!(code, 0, "{kind}");
    }
    let reflector = Running::start(&["reflect", "--sbfd", "7", "udp://127.77.8.31"]);
    reflector.wait_for("listening", |v| v["type"] == "listening");
    let (_, code) = Running::start(&[
        "bfd",
        "--sbfd",
        "7",
        "udp://127.77.8.31",
        "-c",
        "3",
        "--min-tx",
        "10ms",
    ])
    .finish();
    assert_eq!(code, 0);
    drop(reflector);
    mark(&mut lines, 13);
    let _ = capture.kill();
    let _ = capture.wait();
    let text = lines
        .iter()
        .filter(|line| !line.starts_with("9|") && !line.starts_with("13|"))
        .cloned()
        .collect::<Vec<_>>()
        .join("\n");
    let mut control = 0;
    let mut echo = 0;
    let (mut polls, mut finals, mut sbfd) = (0, 0, 0);
    let mut auth_types = std::collections::BTreeSet::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split('|').collect();
        assert_eq!(fields.len(), 8, "{line}");
        assert!(fields[6].is_empty(), "malformed: {line}");
        // Expert severities: 8388608 error, 6291456 warning.
        assert!(
            !fields[7]
                .split(',')
                .any(|s| s == "8388608" || s == "6291456"),
            "expert error or warning: {line}"
        );
        let set = |field: &str| field == "1" || field == "True";
        polls += usize::from(set(fields[4]));
        finals += usize::from(set(fields[5]));
        if fields[2] == "ICMP" {
            // Port unreachable from the kernel, quoting a packet that reached a closed socket
            // after its program ended.
            continue;
        }
        let ports = [fields[0], fields[1]];
        if ports.contains(&"3785") {
            echo += 1;
            continue;
        }
        assert!(
            fields[2].contains("BFD"),
            "a packet tshark does not see as BFD: {line}"
        );
        control += 1;
        sbfd += usize::from(ports.contains(&"7784"));
        if !fields[3].is_empty() {
            auth_types.insert(fields[3].to_string());
        }
    }
    assert!(
        control >= 20,
        "only {control} control packets captured:\n{text}"
    );
    assert!(
        sbfd >= 6,
        "{sbfd} S-BFD packets, not 3 probes and 3 answers:\n{text}"
    );
    assert!(
        polls >= 5 && finals >= 5,
        "{polls} polls, {finals} finals:\n{text}"
    );
    assert!(echo >= 2, "no echo packets captured:\n{text}");
    assert_eq!(
        auth_types.into_iter().collect::<Vec<_>>(),
        ["1", "2", "3", "4", "5"],
        "{text}"
    );
}
