//! `loopscope perf` against the reference: the stock iperf3 client and server (Debian's
//! iperf3 3.12) on loopback, both ways, with byte counts compared on both sides; and our own
//! server and client under bad input, limits and a peer that goes away.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::cargo::CommandCargoExt;
use serde_json::Value;

fn loopscope() -> Command {
    Command::cargo_bin("loopscope").expect("the binary is built")
}

fn have_iperf3() -> bool {
    let found = Command::new("iperf3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        eprintln!("skipping: iperf3 is not installed (scripts/test installs it as root)");
    }
    found
}

/// A port nobody listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind port 0")
        .port()
}

/// Whether something listens on `port` (TCP, IPv4 or IPv6), from /proc/net.
fn listening(port: u16) -> bool {
    let wanted = format!(":{port:04X} ");
    ["/proc/net/tcp", "/proc/net/tcp6"].iter().any(|file| {
        std::fs::read_to_string(file).is_ok_and(|table| {
            table.lines().skip(1).any(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                fields.len() > 3
                    && format!("{} ", fields[1]).ends_with(&wanted)
                    && fields[3] == "0A"
            })
        })
    })
}

/// A child killed when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A stock `iperf3 -s -1 -J` on a free port; `finish` returns its JSON report.
struct StockServer {
    child: Running,
    port: u16,
}

impl StockServer {
    fn start() -> StockServer {
        let port = free_port();
        let child = Command::new("iperf3")
            .args(["-s", "-1", "-J", "-B", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("iperf3 -s starts");
        let child = Running(child);
        let started = Instant::now();
        while !listening(port) {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "iperf3 -s never listened on {port}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        StockServer { child, port }
    }

    fn finish(mut self) -> Value {
        let mut text = String::new();
        self.child
            .0
            .stdout
            .take()
            .expect("stdout")
            .read_to_string(&mut text)
            .expect("iperf3 output");
        let _ = self.child.0.wait();
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("iperf3 -J output ({e}): {text}"))
    }
}

/// Our server on a free port, printing JSON; the first line says where.
struct OurServer {
    child: Running,
    stdout: BufReader<std::process::ChildStdout>,
    port: u16,
}

impl OurServer {
    fn start(extra: &[&str]) -> OurServer {
        let mut child = loopscope()
            .args(["--json", "perf", "--server", "tcp://127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("perf --server starts");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("server output");
        let record: Value = serde_json::from_str(&line).expect("JSON line");
        assert_eq!(record["event"], "listening", "{line}");
        let endpoint = record["endpoint"].as_str().expect("endpoint");
        let port = endpoint
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("a port");
        OurServer {
            child: Running(child),
            stdout,
            port,
        }
    }

    /// The next record with `"event": name`.
    fn next_event(&mut self, name: &str) -> Value {
        loop {
            let mut line = String::new();
            if self.stdout.read_line(&mut line).expect("server output") == 0 {
                panic!("the server ended before '{name}'");
            }
            let record: Value = serde_json::from_str(&line).expect("JSON line");
            if record["event"] == name {
                return record;
            }
        }
    }
}

/// Runs our client with `--json`; returns the output and its summary record.
fn our_client(args: &[&str]) -> (Output, Value) {
    let output = loopscope()
        .args(["--json", "perf"])
        .args(args)
        .output()
        .expect("perf runs");
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    let summary = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|r| r["type"] == "summary")
        .unwrap_or_else(|| {
            panic!(
                "no summary; stdout: {stdout}\nstderr: {}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
    (output, summary)
}

/// Runs the stock client against `port`; returns its `-J` report.
fn stock_client(port: u16, args: &[&str]) -> Value {
    let output = Command::new("iperf3")
        .args(["-c", "127.0.0.1", "-p", &port.to_string(), "-J"])
        .args(args)
        .output()
        .expect("iperf3 -c runs");
    let text = String::from_utf8_lossy(&output.stdout);
    let report: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("iperf3 -J output ({e}): {text}"));
    assert!(
        output.status.success() && report.get("error").is_none(),
        "iperf3 -c failed: {text}"
    );
    report
}

fn u64_at(value: &Value, pointer: &str) -> u64 {
    value
        .pointer(pointer)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("no number at {pointer} in {value}"))
}

/// Sum of our summary's streams going one way.
fn our_bytes(summary: &Value, direction: &str) -> u64 {
    summary["streams"]
        .as_array()
        .expect("streams")
        .iter()
        .filter(|s| s["direction"] == direction)
        .map(|s| s["bytes"].as_u64().expect("bytes"))
        .sum()
}

// ---- our client against the stock server ----

/// The stock server's own report of what it received (or sent) equals what our client sent
/// (or received), byte for byte.
fn against_stock_server(args: &[&str], check: impl Fn(&Value, &Value)) {
    if !have_iperf3() {
        return;
    }
    let server = StockServer::start();
    let link = format!("iperf3://127.0.0.1:{}", server.port);
    let mut all = vec![link.as_str(), "-i", "0"];
    all.extend_from_slice(args);
    let (output, summary) = our_client(&all);
    assert!(output.status.success(), "perf failed: {summary}");
    let report = server.finish();
    check(&summary, &report);
}

/// The most a TCP stream can hold between one application's write and the other's read:
/// the largest send buffer plus the largest receive buffer the kernel allows.
fn tcp_in_flight_bound() -> u64 {
    let largest = |file: &str| -> u64 {
        std::fs::read_to_string(file)
            .ok()
            .and_then(|text| text.split_whitespace().last()?.parse().ok())
            .unwrap_or_else(|| panic!("cannot read {file}"))
    };
    largest("/proc/sys/net/ipv4/tcp_wmem") + largest("/proc/sys/net/ipv4/tcp_rmem")
}

/// A stock server stops reading when the client's TEST_END arrives (iperf3 3.12 does the
/// same with its own client): it may count less than was sent, by at most what the streams
/// held. What it reports back through the protocol is exactly what it printed.
#[test]
fn tcp_two_streams_to_stock_server_agree() {
    against_stock_server(&["-t", "1", "-P", "2"], |ours, theirs| {
        let sent = our_bytes(ours, "send");
        let received = u64_at(theirs, "/end/sum_received/bytes");
        assert_eq!(ours["streams"].as_array().unwrap().len(), 2);
        assert_eq!(ours["bytes"].as_u64(), Some(sent));
        assert!(received > 0 && received <= sent, "{ours}\n{theirs}");
        assert!(
            sent - received <= 2 * tcp_in_flight_bound(),
            "{ours}\n{theirs}"
        );
        assert_eq!(ours["peer"]["bytes"].as_u64(), Some(received));
        for (index, stream) in ours["streams"].as_array().unwrap().iter().enumerate() {
            let theirs = u64_at(theirs, &format!("/end/streams/{index}/receiver/bytes"));
            assert_eq!(stream["peer_bytes"].as_u64(), Some(theirs));
        }
    });
}

/// Paced below what the stock server reads, every byte sent is counted before TEST_END.
#[test]
fn tcp_paced_to_stock_server_agrees_byte_for_byte() {
    against_stock_server(&["-t", "1", "-b", "200M"], |ours, theirs| {
        let sent = our_bytes(ours, "send");
        assert!(sent > 0);
        assert_eq!(sent, u64_at(theirs, "/end/sum_received/bytes"), "{theirs}");
    });
}

#[test]
fn tcp_reverse_from_stock_server_agrees_byte_for_byte() {
    against_stock_server(&["-t", "1", "-R"], |ours, theirs| {
        let received = our_bytes(ours, "receive");
        assert!(received > 0);
        assert_eq!(received, u64_at(theirs, "/end/sum_sent/bytes"), "{theirs}");
    });
}

#[test]
fn tcp_bidir_with_stock_server_agrees_both_ways() {
    against_stock_server(&["-t", "1", "--bidir", "-b", "500M"], |ours, theirs| {
        let sent = our_bytes(ours, "send");
        let received = our_bytes(ours, "receive");
        assert!(sent > 0 && received > 0);
        assert_eq!(sent, u64_at(theirs, "/end/sum_received/bytes"), "{theirs}");
        assert_eq!(
            received,
            u64_at(theirs, "/end/sum_sent_bidir_reverse/bytes"),
            "{theirs}"
        );
    });
}

#[test]
fn udp_to_stock_server_agrees_on_datagrams() {
    against_stock_server(
        &["-u", "-t", "1", "-b", "20M", "-l", "1200"],
        |ours, theirs| {
            let sent = our_bytes(ours, "send");
            assert!(sent > 0 && sent % 1200 == 0);
            // The stock server's own report: bytes, datagrams and loss as it counted them.
            let received = u64_at(theirs, "/end/sum_received/bytes");
            let lost = u64_at(theirs, "/end/sum_received/lost_packets");
            assert_eq!(received + lost * 1200, sent, "{theirs}");
            assert_eq!(ours["udp"]["lost_packets"].as_u64(), Some(lost), "{ours}");
            assert_eq!(ours["streams"][0]["peer_bytes"].as_u64(), Some(received));
        },
    );
}

#[test]
fn udp_reverse_from_stock_server_agrees_on_bytes() {
    against_stock_server(
        &["-u", "-R", "-t", "1", "-b", "20M", "-l", "1200"],
        |ours, theirs| {
            let received = our_bytes(ours, "receive");
            let sent_by_them = u64_at(theirs, "/end/sum_sent/bytes");
            assert!(received > 0);
            // What we did not receive, we report as lost: received + lost = sent, in datagrams.
            let lost = ours["udp"]["lost_packets"].as_i64().unwrap();
            assert!(lost >= 0);
            assert_eq!(
                received + lost as u64 * 1200,
                sent_by_them,
                "{ours}\n{theirs}"
            );
        },
    );
}

// ---- the stock client against our server ----

/// Runs the stock client against a fresh server of ours (`--once`); returns the stock
/// report and our server's `test_ended` record.
fn stock_against_ours(args: &[&str]) -> Option<(Value, Value)> {
    if !have_iperf3() {
        return None;
    }
    let mut server = OurServer::start(&["--once"]);
    let report = stock_client(server.port, args);
    let ended = server.next_event("test_ended");
    assert!(ended.get("ended_early").is_none(), "{ended}");
    Some((report, ended))
}

#[test]
fn stock_client_two_streams_to_our_server_agree_byte_for_byte() {
    let Some((theirs, ours)) = stock_against_ours(&["-t", "1", "-P", "2"]) else {
        return;
    };
    let sent = u64_at(&theirs, "/end/sum_sent/bytes");
    assert!(sent > 0);
    assert_eq!(u64_at(&ours, "/received_bytes"), sent, "{theirs}");
    assert_eq!(u64_at(&theirs, "/end/sum_received/bytes"), sent);
    assert_eq!(theirs["end"]["streams"].as_array().unwrap().len(), 2);
}

#[test]
fn stock_client_reverse_from_our_server_counts_what_we_sent() {
    let Some((theirs, ours)) = stock_against_ours(&["-t", "1", "-R", "-P", "2"]) else {
        return;
    };
    let sent_by_us = u64_at(&ours, "/sent_bytes");
    assert!(sent_by_us > 0);
    // The stock client's receiver stops counting at its TEST_END, so it can count less than
    // what was in flight; what it reports as the sender's figure is ours.
    assert_eq!(u64_at(&theirs, "/end/sum_sent/bytes"), sent_by_us);
    let received = u64_at(&theirs, "/end/sum_received/bytes");
    assert!(received <= sent_by_us && received > 0);
}

#[test]
fn stock_client_bidir_with_our_server() {
    let Some((theirs, ours)) = stock_against_ours(&["-t", "1", "--bidir", "-b", "500M"]) else {
        return;
    };
    assert_eq!(
        u64_at(&ours, "/received_bytes"),
        u64_at(&theirs, "/end/sum_sent/bytes")
    );
    assert_eq!(
        u64_at(&ours, "/sent_bytes"),
        u64_at(&theirs, "/end/sum_sent_bidir_reverse/bytes")
    );
}

#[test]
fn stock_udp_client_to_our_server_agrees_on_datagrams() {
    let Some((theirs, ours)) = stock_against_ours(&["-u", "-t", "1", "-b", "20M", "-l", "1200"])
    else {
        return;
    };
    let sent = u64_at(&theirs, "/end/sum_sent/bytes");
    assert!(sent > 0 && sent % 1200 == 0);
    let lost = u64_at(&theirs, "/end/sum_received/lost_packets");
    assert_eq!(
        u64_at(&ours, "/received_bytes") + lost * 1200,
        sent,
        "{theirs}"
    );
}

#[test]
fn stock_udp_client_reverse_from_our_server() {
    let Some((theirs, ours)) =
        stock_against_ours(&["-u", "-R", "-t", "1", "-b", "20M", "-l", "1200"])
    else {
        return;
    };
    let sent_by_us = u64_at(&ours, "/sent_bytes");
    assert!(sent_by_us > 0 && sent_by_us % 1200 == 0);
    // The sender's figure the stock client reports is ours.
    assert_eq!(u64_at(&theirs, "/end/sum_sent/bytes"), sent_by_us);
    // iperf3's `packets` is what the receiver expected (the highest sequence number): every
    // one of them is a datagram we sent.
    let expected = u64_at(&theirs, "/end/sum_received/packets");
    let lost = u64_at(&theirs, "/end/sum_received/lost_packets");
    assert!(expected * 1200 <= sent_by_us, "{theirs}");
    assert_eq!(
        (expected - lost) * 1200,
        u64_at(&theirs, "/end/sum_received/bytes")
    );
}
