//! `loopscope perf` against the reference: the stock iperf3 client and server (Debian's
//! iperf3 3.12) on loopback, both ways, with byte counts compared on both sides; and our own
//! server and client under bad input, limits and a peer that goes away.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod support;
use support::{free_port, installed, is_root, json_lines, loopscope, summary_of};

fn have_iperf3() -> bool {
    let found = installed("iperf3");
    if !found {
        eprintln!("skipping: iperf3 is not installed (scripts/test installs it as root)");
    }
    found
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
    /// Killed (SIGKILL) when dropped.
    _child: Running,
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
            _child: Running(child),
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
    let summary = summary_of(&output);
    (output, summary)
}

/// Runs the stock client against `port` with `args`, to its end.
fn run_stock_client(port: u16, args: &[&str]) -> Output {
    Command::new("iperf3")
        .args(["-c", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .expect("iperf3 -c runs")
}

/// Runs the stock client against `port`; returns its `-J` report.
fn stock_client(port: u16, args: &[&str]) -> Value {
    let output = run_stock_client(port, &[&["-J"], args].concat());
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

/// With MSG_ZEROCOPY the stock server counts every byte sent, and the kernel reports every
/// zerocopy send complete (on loopback it copies them, and says so).
#[test]
fn tcp_zerocopy_to_stock_server_agrees_byte_for_byte() {
    against_stock_server(&["-t", "1", "-b", "200M", "--zerocopy"], |ours, theirs| {
        let sent = our_bytes(ours, "send");
        assert!(sent > 0);
        assert_eq!(sent, u64_at(theirs, "/end/sum_received/bytes"), "{theirs}");
        let zerocopy = &ours["streams"][0]["zerocopy"];
        let sends = u64_at(zerocopy, "/sends");
        assert!(sends > 0, "{ours}");
        assert_eq!(u64_at(zerocopy, "/completed"), sends, "{ours}");
        assert!(u64_at(zerocopy, "/copied") <= sends, "{ours}");
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
            assert!(sent > 0 && sent.is_multiple_of(1200));
            // The stock server's own report: bytes, datagrams and loss as it counted them. It
            // counts the gaps below the highest sequence number it saw, so datagrams lost after
            // the last to arrive are missing from its loss (iperf3 3.12 and since).
            let received = u64_at(theirs, "/end/sum_received/bytes");
            let their_lost = u64_at(theirs, "/end/sum_received/lost_packets");
            assert!(received + their_lost * 1200 <= sent, "{theirs}");
            assert_eq!(ours["streams"][0]["peer_bytes"].as_u64(), Some(received));
            // Ours: whatever of what we sent did not arrive, the end included.
            let arrived = ours["udp"]["packets"].as_u64().expect("packets");
            let lost = ours["udp"]["lost_packets"].as_u64().expect("lost");
            assert_eq!(arrived * 1200, received, "{ours}\n{theirs}");
            assert_eq!(arrived + lost, sent / 1200, "{ours}");
            assert!(lost >= their_lost, "{ours}\n{theirs}");
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

/// `iperf3 -c -O 1`: the first second is left out on both sides. The client restarts its
/// counters when its omit timer fires, the server when its own does, so the two counts differ
/// by what moved between the two timers; without omit on the server, it would report twice
/// what the client sent. The same run against the stock server shows the skew iperf3 itself has.
#[test]
fn stock_client_omitting_the_first_second_is_honoured_by_our_server() {
    if !have_iperf3() {
        return;
    }
    let args = ["-t", "1", "-O", "1", "-b", "200M"];
    let ratio = |report: &Value| {
        u64_at(report, "/end/sum_received/bytes") as f64
            / u64_at(report, "/end/sum_sent/bytes") as f64
    };
    let stock = StockServer::start();
    let reference = ratio(&stock_client(stock.port, &args));
    drop(stock);
    let Some((theirs, ours)) = stock_against_ours(&args) else {
        return;
    };
    let sent = u64_at(&theirs, "/end/sum_sent/bytes");
    // 200 Mbit/s for the one counted second, not two.
    assert!(sent > 10_000_000 && sent < 40_000_000, "{theirs}");
    assert_eq!(
        u64_at(&ours, "/received_bytes"),
        u64_at(&theirs, "/end/sum_received/bytes")
    );
    let ours = ratio(&theirs);
    eprintln!("received / sent with -O 1: stock server {reference:.4}, ours {ours:.4}");
    // Each end ends the omitted second on its own timer, as iperf3's server does: no message
    // marks it. So the two counts start apart by however late either timer fires, and on a
    // busy machine that is a tenth of a second or more (1.144 was seen at load 25, the stock
    // pair varying likewise). What shows the omitted second honoured is that the server counts
    // about one second's bytes, not the two seconds it received: a ratio near 1, never near 2.
    assert!(
        (0.5..1.5).contains(&ours),
        "ours {ours}, stock {reference}: {theirs}"
    );
    assert!(
        (0.5..1.5).contains(&reference),
        "the stock pair itself: {reference}"
    );
}

/// With UDP, loss is counted from the datagrams after the omitted second.
#[test]
fn stock_udp_client_omitting_the_first_second_counts_no_loss_from_it() {
    let Some((theirs, ours)) =
        stock_against_ours(&["-u", "-t", "1", "-O", "1", "-b", "10M", "-l", "1200"])
    else {
        return;
    };
    let sent_packets = u64_at(&theirs, "/end/sum_sent/packets");
    let received = u64_at(&ours, "/received_bytes") / 1200;
    let lost = u64_at(&theirs, "/end/sum_received/lost_packets");
    // About one second at 10 Mbit/s: 1042 datagrams of 1200 bytes; not two seconds' worth.
    assert!(sent_packets > 500 && sent_packets < 1600, "{theirs}");
    assert!(received <= sent_packets + 50, "{theirs}");
    assert!(lost * 20 < sent_packets, "{theirs}");
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
    assert!(sent > 0 && sent.is_multiple_of(1200));
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
    assert!(sent_by_us > 0 && sent_by_us.is_multiple_of(1200));
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

// ---- our client and server: streams, loss, limits, bad input ----

/// Names of the threads of a process, from /proc.
fn thread_names(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|tasks| {
            tasks
                .filter_map(|task| {
                    let path = task.ok()?.path().join("comm");
                    Some(std::fs::read_to_string(path).ok()?.trim().to_string())
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Reads a child's JSON lines until one satisfies `wanted`; panics if it ends first.
fn read_until(
    stdout: &mut BufReader<std::process::ChildStdout>,
    wanted: impl Fn(&Value) -> bool,
) -> Value {
    loop {
        let mut line = String::new();
        if stdout.read_line(&mut line).expect("output") == 0 {
            panic!("the output ended first");
        }
        if let Ok(record) = serde_json::from_str::<Value>(&line)
            && wanted(&record)
        {
            return record;
        }
    }
}

#[test]
fn four_streams_run_on_four_threads_and_the_sum_is_the_sum_of_the_streams() {
    let mut server = OurServer::start(&["--once"]);
    let link = format!("tcp://127.0.0.1:{}", server.port);
    let mut client = loopscope()
        .args(["--json", "perf", &link, "-P", "4", "-t", "2", "-i", "0.5"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("perf runs");
    let mut stdout = BufReader::new(client.stdout.take().expect("stdout"));
    // Once data flows, the four sending threads exist.
    read_until(&mut stdout, |r| r["event"] == "interval");
    let senders = thread_names(client.id())
        .iter()
        .filter(|name| name.starts_with("perf-send-"))
        .count();
    let summary = read_until(&mut stdout, |r| r["type"] == "summary");
    assert!(client.wait().expect("exit").success(), "{summary}");
    assert_eq!(senders, 4);
    let streams = summary["streams"].as_array().expect("streams");
    assert_eq!(streams.len(), 4);
    let sum: u64 = streams.iter().map(|s| s["bytes"].as_u64().unwrap()).sum();
    assert!(streams.iter().all(|s| s["bytes"].as_u64() > Some(0)));
    assert_eq!(summary["bytes"].as_u64(), Some(sum));
    assert_eq!(summary["sent_bytes"].as_u64(), Some(sum));
    // Our server reads each stream to its end: it counted every byte.
    let ended = server.next_event("test_ended");
    assert_eq!(ended["received_bytes"].as_u64(), Some(sum));
    for field in [
        "cpu_user_percent",
        "cpu_system_percent",
        "rtt_p50_us",
        "rtt_p99_us",
    ] {
        assert!(summary[field].is_number(), "{field}: {summary}");
    }
    assert!(
        summary["intervals"]
            .as_array()
            .is_some_and(|i| i.len() >= 3)
    );
}

/// A binomial count: |observed - n p| within 4.5 standard deviations (about 1 in 150,000 to
/// fail by chance, and the seed is fixed, so it does not fail by chance).
fn within_binomial(observed: f64, n: f64, p: f64) -> bool {
    let sigma = (n * p * (1.0 - p)).sqrt();
    (observed - n * p).abs() <= 4.5 * sigma
}

/// A UDP test of `seconds` at 40 Mbit/s in 1000-byte datagrams to a server of our own, through
/// the impairment `impair`: the server (for its events) and the client's summary.
fn impaired_udp_run(seconds: &str, impair: &str) -> (OurServer, Value) {
    let server = OurServer::start(&["--once"]);
    let link = format!("udp://127.0.0.1:{}", server.port);
    let (output, summary) = our_client(&[
        &link, "-t", seconds, "-b", "40M", "-l", "1000", "-w", "4Mi", "-i", "0", "--impair", impair,
    ]);
    assert!(output.status.success(), "{summary}");
    (server, summary)
}

#[test]
fn udp_loss_injected_at_one_percent_is_reported_as_one_percent() {
    let (mut server, summary) = impaired_udp_run("2", "loss=0.01&seed=7");
    let sent_datagrams = summary["sent_bytes"].as_u64().unwrap() / 1000;
    let udp = &summary["udp"];
    let lost = udp["lost_packets"].as_i64().unwrap();
    let arrived = udp["packets"].as_u64().unwrap();
    assert!(sent_datagrams > 5000, "{summary}");
    // The server saw every datagram the impairer let through, and counts the rest as lost.
    assert_eq!(arrived + lost as u64, sent_datagrams, "{summary}");
    assert!(
        within_binomial(lost as f64, sent_datagrams as f64, 0.01),
        "{lost} lost of {sent_datagrams}"
    );
    let percent = udp["lost_percent"].as_f64().unwrap();
    assert!((percent - lost as f64 * 100.0 / sent_datagrams as f64).abs() < 1e-9);
    assert_eq!(udp["out_of_order"].as_u64(), Some(0));
    let ended = server.next_event("test_ended");
    assert_eq!(ended["received_bytes"].as_u64(), Some(arrived * 1000));
}

/// Every datagram lost, so every loss comes after the last datagram to arrive: none shows the
/// gap. Counted as RFC 3550 A.3 and iperf3's receiver count (the highest sequence number seen
/// minus those received), they were counted nowhere: "0 lost of 0" for a test that sent
/// thousands. Issue 12: the same blind spot made 1 run in 100 of the 1% loss test miss the
/// last datagram. The sender's own count, from the results exchange, shows them all.
#[test]
fn udp_datagrams_lost_at_the_end_of_the_test_are_counted() {
    let (mut server, summary) = impaired_udp_run("1", "loss=1");
    let sent_datagrams = summary["sent_bytes"].as_u64().unwrap() / 1000;
    let udp = &summary["udp"];
    assert!(sent_datagrams > 1000, "{summary}");
    assert_eq!(udp["packets"].as_u64(), Some(0), "{summary}");
    assert_eq!(
        udp["lost_packets"].as_u64(),
        Some(sent_datagrams),
        "{summary}"
    );
    assert_eq!(udp["lost_percent"].as_f64(), Some(100.0), "{summary}");
    let ended = server.next_event("test_ended");
    assert_eq!(ended["received_bytes"].as_u64(), Some(0), "{ended}");
}

#[test]
fn udp_reordering_injected_is_counted_as_out_of_order() {
    let (_server, summary) = impaired_udp_run("1", "reorder=0.05&seed=3");
    let sent = summary["sent_bytes"].as_u64().unwrap() / 1000;
    let udp = &summary["udp"];
    let out_of_order = udp["out_of_order"].as_u64().unwrap();
    assert_eq!(udp["lost_packets"].as_i64(), Some(0), "{summary}");
    assert!(out_of_order > 0);
    // A held-back datagram can only be held when none is: slightly under 5%.
    assert!(
        within_binomial(out_of_order as f64, sent as f64, 0.05 * 0.95),
        "{out_of_order} of {sent}"
    );
}

#[test]
fn nothing_listening_is_a_one_line_error_and_exit_2() {
    let port = free_port();
    let output = loopscope()
        .args(["perf", &format!("tcp://127.0.0.1:{port}"), "-t", "1"])
        .output()
        .expect("perf runs");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("cannot connect"), "{stderr}");
}

#[test]
fn garbage_on_the_control_connection_is_a_one_line_error_and_exit_1() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().unwrap().port();
    let talker = std::thread::spawn(move || {
        let (mut peer, _) = listener.accept().expect("accept");
        let mut cookie = [0u8; 37];
        peer.read_exact(&mut cookie).expect("the cookie");
        peer.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n")
            .expect("write");
    });
    let output = loopscope()
        .args(["perf", &format!("tcp://127.0.0.1:{port}"), "-t", "1"])
        .output()
        .expect("perf runs");
    talker.join().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("0x48"), "{stderr}");
}

#[test]
fn bad_flags_are_usage_errors() {
    for args in [
        vec!["perf", "tcp://127.0.0.1:9", "-P", "0"],
        vec!["perf", "tcp://127.0.0.1:9", "-b", "fast"],
        vec!["perf", "tcp://127.0.0.1:9", "-u", "-l", "8"],
        vec!["perf", "tcp://127.0.0.1:9", "--reverse", "--bidir"],
        vec!["perf", "iperf3://127.0.0.1:9", "--rr"],
        vec!["perf", "loop:", "--reverse"],
        vec!["perf", "tcp://127.0.0.1:9?color=blue"],
        vec!["perf"],
    ] {
        let output = loopscope().args(&args).output().expect("perf runs");
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

/// A 60-second TCP test against a server of our own, once its first interval report is out:
/// the server, the client, and the client's JSON lines still to read.
fn a_minute_long_test_under_way() -> (OurServer, Child, BufReader<std::process::ChildStdout>) {
    let server = OurServer::start(&[]);
    let link = format!("tcp://127.0.0.1:{}", server.port);
    let mut client = loopscope()
        .args([
            "--json", "perf", &link, "-t", "60", "-i", "0.2", "-b", "100M",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("perf runs");
    let mut stdout = BufReader::new(client.stdout.take().expect("stdout"));
    read_until(&mut stdout, |r| r["event"] == "interval");
    (server, client, stdout)
}

/// In a network namespace of its own where the kernel may pick among 10 ports and the UDP
/// twins of 9 are held: starts `perf --server tcp://127.0.0.1:0` 5 times; the first line of
/// each, and the script's stderr.
const PORT_TWINS_TAKEN: &str = r#"
import socket, subprocess, sys
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
with open("/proc/sys/net/ipv4/ip_local_port_range", "w") as f:
    f.write("40000 40009")
held = []
for port in range(40000, 40009):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", port))
    held.append(s)
for _ in range(5):
    server = subprocess.Popen([sys.argv[1], "--json", "perf", "--server", "tcp://127.0.0.1:0"],
                              stdout=subprocess.PIPE)
    print(server.stdout.readline().decode().strip(), flush=True)
    server.kill()
    server.wait()
"#;

/// A server asked for any port needs one free for TCP and for UDP (UDP tests say hello on the
/// TCP port's number), but the kernel picks it for TCP alone. Issue 12: once, under load, a
/// server printed no "listening" line: its port's UDP twin was held by another socket (a
/// client's ephemeral one: the two port spaces are separate). Here 9 of the 10 ports the kernel
/// may pick have their UDP twin taken: before the fix 9 starts in 10 failed; now each start
/// finds the one port free for both.
#[test]
fn a_server_on_any_port_finds_one_free_for_udp_too() {
    if !is_root() || !installed("unshare") || !installed("python3") || !installed("ip") {
        eprintln!("skipping: needs root, unshare, ip and python3 (a network namespace)");
        return;
    }
    let binary = loopscope().get_program().to_owned();
    let output = Command::new("unshare")
        .args(["--net", "--", "python3", "-c", PORT_TWINS_TAKEN])
        .arg(&binary)
        .output()
        .expect("unshare runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 5, "{stdout}\n{stderr}");
    for line in lines {
        let record: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: '{line}'\n{stderr}"));
        assert_eq!(record["event"], "listening", "{line}");
        assert_eq!(record["endpoint"], "tcp://127.0.0.1:40009", "{line}");
    }
}

#[test]
fn a_server_that_goes_away_leaves_a_partial_summary_and_exit_1() {
    let (server, mut client, mut stdout) = a_minute_long_test_under_way();
    drop(server); // SIGKILL: no goodbye on the control connection
    let summary = read_until(&mut stdout, |r| r["type"] == "summary");
    let status = client.wait().expect("exit");
    assert_eq!(status.code(), Some(1), "{summary}");
    assert_eq!(summary["complete"], false);
    assert!(summary["ended_early"].is_string(), "{summary}");
    assert!(summary["bytes"].as_u64() > Some(0));
}

#[test]
fn ctrl_c_ends_the_test_with_a_full_summary() {
    let (_server, mut client, mut stdout) = a_minute_long_test_under_way();
    let _ = Command::new("kill")
        .args(["-INT", &client.id().to_string()])
        .status();
    let summary = read_until(&mut stdout, |r| r["type"] == "summary");
    assert!(client.wait().expect("exit").success(), "{summary}");
    assert_eq!(summary["complete"], true);
    assert_eq!(summary["ended_early"], "interrupted");
    assert!(summary["seconds"].as_f64() < Some(30.0));
    // Results were exchanged: the server's count of what we sent came back, to the byte.
    assert_eq!(summary["peer"]["bytes"], summary["sent_bytes"]);
}

#[test]
fn an_hour_at_100_gbit_is_cut_to_the_servers_limits() {
    let mut server = OurServer::start(&["--max-duration", "1s", "--max-rate", "100M"]);
    let link = format!("tcp://127.0.0.1:{}", server.port);
    let (output, summary) =
        our_client(&[&link, "-t", "1h", "-b", "100G", "-w", "256Ki", "-i", "0"]);
    assert_eq!(output.status.code(), Some(1), "{summary}");
    let limit = summary["server_limit"]
        .as_str()
        .expect("a server_limit note");
    assert!(limit.contains("at most 1 s"), "{limit}");
    assert!(summary["seconds"].as_f64() < Some(30.0));
    // Paced at 100 Mbit/s for about a second; what can exceed that is what the two
    // 256 KiB socket buffers (doubled by the kernel) held.
    let ended = server.next_event("test_ended");
    let received = ended["received_bytes"].as_u64().unwrap();
    let seconds = ended["seconds"].as_f64().unwrap();
    let bound = (100e6 / 8.0 * seconds) as u64 + 4 * 512 * 1024;
    assert!(received <= bound, "{received} > {bound}");

    // A stock client is ended by SERVER_TERMINATE, and UDP beyond the rate is refused.
    if have_iperf3() {
        let output = run_stock_client(server.port, &["-t", "3600", "-b", "100G"]);
        assert!(!output.status.success());
        let text = String::from_utf8_lossy(&output.stdout).to_string()
            + &String::from_utf8_lossy(&output.stderr);
        assert!(text.contains("the server has terminated"), "{text}");
        let ended = server.next_event("test_ended");
        assert!(
            ended["ended_early"]
                .as_str()
                .unwrap()
                .contains("duration limit")
        );
        let output = run_stock_client(server.port, &["-u", "-b", "100G", "-t", "1"]);
        let text = String::from_utf8_lossy(&output.stdout).to_string()
            + &String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success());
        assert!(text.contains("larger than server limit"), "{text}");
        let refused = server.next_event("refused");
        assert!(refused["reason"].as_str().unwrap().contains("UDP"));
    }
}

#[test]
fn garbage_sent_to_the_server_is_refused_and_it_serves_on() {
    let mut server = OurServer::start(&[]);
    let address = format!("127.0.0.1:{}", server.port);
    // A cookie, then parameters that are not JSON.
    let mut peer = TcpStream::connect(&address).expect("connect");
    peer.write_all(b"garbagegarbagegarbagegarbagegarbage1\0")
        .unwrap();
    let mut state = [0u8; 1];
    peer.read_exact(&mut state).unwrap();
    assert_eq!(state[0], 9, "PARAM_EXCHANGE");
    peer.write_all(&[0, 0, 0, 9]).unwrap();
    peer.write_all(b"{not json").unwrap();
    let refused = server.next_event("refused");
    assert!(
        refused["reason"].as_str().unwrap().contains("JSON"),
        "{refused}"
    );
    // A length that claims 4 GiB.
    let mut peer = TcpStream::connect(&address).expect("connect");
    peer.write_all(b"garbagegarbagegarbagegarbagegarbage2\0")
        .unwrap();
    peer.read_exact(&mut state).unwrap();
    peer.write_all(&[0xff, 0xff, 0xff, 0xff]).unwrap();
    let refused = server.next_event("refused");
    assert!(
        refused["reason"].as_str().unwrap().contains("at most"),
        "{refused}"
    );
    // Not a cookie at all: closed without a word.
    let mut peer = TcpStream::connect(&address).expect("connect");
    peer.write_all(&[0xffu8; 37]).unwrap();
    let mut rest = Vec::new();
    let _ = peer.read_to_end(&mut rest);
    assert!(rest.is_empty());
    // And a real test still runs.
    let (output, summary) = our_client(&[&format!("tcp://{address}"), "-t", "1", "-i", "0"]);
    assert!(output.status.success(), "{summary}");
}

#[test]
fn a_loop_link_counts_what_comes_back() {
    let (output, summary) = our_client(&["exec:cat", "-t", "1", "-l", "64Ki", "-i", "0"]);
    assert!(output.status.success(), "{summary}");
    assert_eq!(summary["mode"], "echo");
    let sent = summary["sent_bytes"].as_u64().unwrap();
    assert!(sent > 0);
    assert_eq!(summary["received_bytes"].as_u64(), Some(sent));
    assert_eq!(summary["bytes"].as_u64(), Some(sent));
}

#[test]
fn request_response_counts_agree_on_both_ends() {
    let mut server = OurServer::start(&[]);
    let link = format!("tcp://127.0.0.1:{}", server.port);
    let (output, summary) = our_client(&[
        &link,
        "--rr",
        "4",
        "-t",
        "1",
        "-l",
        "100",
        "--response-length",
        "200",
        "-i",
        "0",
    ]);
    assert!(output.status.success(), "{summary}");
    let transactions = summary["transactions"].as_u64().unwrap();
    assert!(transactions > 10);
    let rate = summary["transactions_per_second"].as_f64().unwrap();
    let seconds = summary["seconds"].as_f64().unwrap();
    assert!((rate * seconds - transactions as f64).abs() < 1.0);
    assert!(summary["rtt_p50_us"].as_f64() > Some(0.0));
    assert!(summary["rtt_p99_us"].as_f64() >= summary["rtt_p50_us"].as_f64());
    let ended = server.next_event("test_ended");
    assert_eq!(
        ended["transactions"].as_u64(),
        Some(transactions),
        "{ended}"
    );
    assert_eq!(ended["received_bytes"].as_u64(), Some(transactions * 100));

    let (output, summary) = our_client(&[&link, "--crr", "-t", "1", "-l", "64", "-i", "0"]);
    assert!(output.status.success(), "{summary}");
    let transactions = summary["transactions"].as_u64().unwrap();
    assert!(transactions > 5);
    let ended = server.next_event("test_ended");
    assert_eq!(
        ended["transactions"].as_u64(),
        Some(transactions),
        "{ended}"
    );
}

#[test]
fn request_response_against_a_stock_server_says_it_cannot() {
    if !have_iperf3() {
        return;
    }
    let server = StockServer::start();
    let output = loopscope()
        .args([
            "perf",
            &format!("tcp://127.0.0.1:{}", server.port),
            "--rr",
            "-t",
            "1",
        ])
        .output()
        .expect("perf runs");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("does not offer request-response"),
        "{stderr}"
    );
}

#[test]
fn unix_stream_sockets_carry_a_test_both_ways() {
    let directory = tempfile::tempdir().expect("temp dir");
    let path = directory.path().join("perf.sock");
    let endpoint = format!("unix:{}", path.display());
    let mut server = loopscope()
        .args(["--json", "perf", "--server", &endpoint])
        .stdout(Stdio::piped())
        .spawn()
        .expect("perf --server starts");
    let mut stdout = BufReader::new(server.stdout.take().expect("stdout"));
    let _server = Running(server);
    read_until(&mut stdout, |r| r["event"] == "listening");
    // Regression: the server once took a test's data connections in the order their cookies
    // were read (one thread each) instead of the order they were accepted, so with --bidir a
    // connection the client sent on could be one the server sent on too: both blocked. Four
    // streams each way, three times, made that likely.
    let bidir = vec!["--bidir", "-P", "4", "-t", "0.3"];
    let forward = vec!["-P", "2", "-t", "1"];
    let reverse = vec!["-R", "-P", "2", "-t", "1"];
    for direction in [forward, reverse, bidir.clone(), bidir.clone(), bidir] {
        let mut args = vec![endpoint.as_str(), "-i", "0"];
        args.extend(direction.iter().copied());
        let (output, summary) = our_client(&args);
        assert!(output.status.success(), "{summary}");
        assert_eq!(summary["protocol"], "unix");
        let ended = read_until(&mut stdout, |r| r["event"] == "test_ended");
        // Both ends read to end-of-stream: each counted every byte the other sent.
        assert_eq!(
            ended["received_bytes"], summary["sent_bytes"],
            "{direction:?}"
        );
        assert_eq!(
            ended["sent_bytes"], summary["received_bytes"],
            "{direction:?}"
        );
        for stream in summary["streams"].as_array().unwrap() {
            assert!(stream["bytes"].as_u64() > Some(0), "{summary}");
            assert_eq!(stream["bytes"], stream["peer_bytes"], "{summary}");
        }
    }
}

/// Regression: without `-l`, UDP datagrams take the control connection's MSS, as iperf3's do;
/// the senders once got a length of 0 and sent nothing.
#[test]
fn udp_without_a_length_sends_datagrams_of_the_announced_size() {
    against_stock_server(&["-u", "-t", "1", "-b", "10M"], |ours, theirs| {
        let size = u64_at(theirs, "/start/test_start/blksize");
        let sent = our_bytes(ours, "send");
        assert!(size >= 64, "{theirs}");
        assert!(
            sent > 0 && sent.is_multiple_of(size),
            "{sent} bytes of {size}-byte datagrams"
        );
        let received = u64_at(theirs, "/end/sum_received/bytes");
        let lost = u64_at(theirs, "/end/sum_received/lost_packets");
        assert_eq!(received + lost * size, sent);
    });
}

#[test]
fn repeat_and_sweep_report_the_spread_of_their_runs() {
    let server = OurServer::start(&[]);
    let link = format!("tcp://127.0.0.1:{}", server.port);
    let output = loopscope()
        .args([
            "--json", "perf", &link, "-t", "0.3", "-i", "0", "--repeat", "3",
        ])
        .args(["--sweep", "4096,65536", "-b", "2G"])
        .output()
        .expect("perf runs");
    assert!(output.status.success());
    let records = json_lines(&output.stdout);
    let runs: Vec<&Value> = records.iter().filter(|r| r["event"] == "run").collect();
    assert_eq!(runs.len(), 6);
    let summary = records.last().expect("a summary");
    assert_eq!(summary["type"], "summary");
    let points = summary["points"].as_array().expect("points");
    assert_eq!(points.len(), 2);
    for (point, length) in points.iter().zip([4096u64, 65536]) {
        assert_eq!(point["length"].as_u64(), Some(length));
        let mut rates: Vec<f64> = runs
            .iter()
            .filter(|r| r["length"].as_u64() == Some(length))
            .map(|r| r["bits_per_second"].as_f64().unwrap())
            .collect();
        rates.sort_by(f64::total_cmp);
        assert_eq!(rates.len(), 3);
        let spread = &point["bits_per_second"];
        assert_eq!(spread["min"].as_f64(), Some(rates[0]));
        assert_eq!(spread["median"].as_f64(), Some(rates[1]));
        assert_eq!(spread["max"].as_f64(), Some(rates[2]));
    }
}

#[test]
fn latency_under_load_runs_beside_a_throughput_test() {
    let mut server = OurServer::start(&[]);
    let link = format!("tcp://127.0.0.1:{}", server.port);
    let (output, summary) = our_client(&[
        &link,
        "--rr",
        "-l",
        "64",
        "-t",
        "1",
        "-i",
        "0",
        "--under-load",
        "2",
        "-b",
        "500M",
    ]);
    assert!(output.status.success(), "{summary}");
    assert!(summary["transactions"].as_u64() > Some(0));
    let load = &summary["load"];
    assert_eq!(load["streams"].as_u64(), Some(2));
    assert!(load["bytes"].as_u64() > Some(0), "{summary}");
    // The server saw both tests, each to its end.
    let first = server.next_event("test_ended");
    let second = server.next_event("test_ended");
    let received: Vec<u64> = [&first, &second]
        .iter()
        .map(|e| e["received_bytes"].as_u64().unwrap())
        .collect();
    assert!(
        received.contains(&load["bytes"].as_u64().unwrap()),
        "{first} {second}"
    );
}

#[test]
fn the_stock_client_gets_the_servers_output_when_it_asks() {
    if !have_iperf3() {
        return;
    }
    let server = OurServer::start(&["--once"]);
    let output = run_stock_client(server.port, &["-t", "1", "--get-server-output"]);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}");
    assert!(text.contains("loopscope perf server"), "{text}");
    assert!(text.contains("received"), "{text}");
}

#[test]
fn a_request_beyond_the_servers_memory_or_streams_is_refused() {
    let mut server = OurServer::start(&["--max-memory", "1Mi", "--max-streams", "4"]);
    let link = format!("tcp://127.0.0.1:{}", server.port);
    let output = loopscope()
        .args(["perf", &link, "-t", "1", "-P", "4", "-l", "1Mi"])
        .output()
        .expect("perf runs");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("refused"), "{stderr}");
    let refused = server.next_event("refused");
    assert!(
        refused["reason"].as_str().unwrap().contains("buffers"),
        "{refused}"
    );
    let output = loopscope()
        .args(["perf", &link, "-t", "1", "-P", "5"])
        .output()
        .expect("perf runs");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("parallel streams"), "{stderr}");
}

#[test]
fn the_server_prints_its_summary_on_ctrl_c() {
    let mut server = OurServer::start(&[]);
    let link = format!("tcp://127.0.0.1:{}", server.port);
    let (output, summary) = our_client(&[&link, "-t", "0.5", "-i", "0"]);
    assert!(output.status.success(), "{summary}");
    server.next_event("test_ended");
    let _ = Command::new("kill")
        .args(["-INT", &server._child.0.id().to_string()])
        .status();
    let record = read_until(&mut server.stdout, |r| r["type"] == "summary");
    assert_eq!(record["tests"].as_u64(), Some(1));
    assert_eq!(record["received_bytes"], summary["sent_bytes"]);
}

#[test]
fn udp_request_response_accounts_for_every_request() {
    let mut server = OurServer::start(&[]);
    let link = format!("udp://127.0.0.1:{}", server.port);
    let (output, summary) = our_client(&[&link, "--rr", "8", "-l", "64", "-t", "1", "-i", "0"]);
    assert!(output.status.success(), "{summary}");
    let transactions = summary["transactions"].as_u64().unwrap();
    let lost = summary["udp"]["lost_packets"].as_u64().unwrap();
    let requests = summary["sent_bytes"].as_u64().unwrap() / 64;
    assert!(transactions > 100, "{summary}");
    // Every request was answered, or given up as lost.
    assert_eq!(transactions + lost, requests, "{summary}");
    assert!(summary["rtt_p50_us"].as_f64() > Some(0.0));
    let ended = server.next_event("test_ended");
    let answered = ended["transactions"].as_u64().unwrap();
    assert!(answered >= transactions && answered <= requests, "{ended}");
    assert_eq!(
        ended["received_bytes"].as_u64(),
        Some(answered * 64),
        "{ended}"
    );
}

/// Unix datagrams: `perf unixgram:PATH` against `reflect` counts what came back, and the
/// reflector's own count of datagrams it returned says the same (1000-byte payloads; the
/// reflector counts the link's datagram header too, so datagrams are compared, not bytes).
#[test]
fn unixgram_throughput_through_reflect_agrees_with_the_reflectors_count() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("reflect.sock");
    let endpoint = format!("unixgram:{}", path.display());
    let mut reflect = loopscope()
        .args(["--json", "reflect", &endpoint])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("reflect starts");
    let mut lines = BufReader::new(reflect.stdout.take().unwrap()).lines();
    let first = lines.next().expect("reflect prints").unwrap();
    assert!(first.contains("listening"), "{first}");
    let reflect = Running(reflect);

    let (output, summary) = our_client(&[&endpoint, "-t", "1", "-l", "1000", "-i", "0"]);
    assert!(output.status.success(), "{summary}");
    let sent = u64_at(&summary, "/sent_bytes");
    let received = u64_at(&summary, "/received_bytes");
    assert!(received > 0 && received <= sent, "{summary}");
    assert_eq!(summary["protocol"], "unixgram");

    let pid = rustix::process::Pid::from_raw(reflect.0.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::INT).unwrap();
    let reflected = lines
        .map_while(Result::ok)
        .filter_map(|line| serde_json::from_str::<Value>(&line).ok())
        .find(|record| record["type"] == "summary")
        .expect("the reflector's summary");
    assert_eq!(
        u64_at(&reflected, "/datagrams_reflected") * 1000,
        received,
        "{reflected}\n{summary}"
    );
    drop(reflect);
}
