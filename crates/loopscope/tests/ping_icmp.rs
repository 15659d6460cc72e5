//! `loopscope ping icmp://...` in network namespaces this test creates: both socket kinds
//! (raw, and datagram once ping_group_range allows it), both families, replies matched to
//! requests, loss, two pingers side by side, Ctrl-C. Needs root; skips with a reason otherwise.

use std::collections::BTreeMap;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

mod support;

use support::Netns;

/// A namespace with lo up where every group may open ICMP datagram sockets.
impl Netns {
    fn create_for_ping(tag: &str) -> Option<Netns> {
        let netns = Netns::create("lsping", tag)?;
        netns.exec("ip", &["link", "set", "lo", "up"]);
        // Allow ICMP datagram sockets for every group (a new namespace starts with "1 0").
        netns.exec(
            "sysctl",
            &["-q", "-w", "net.ipv4.ping_group_range=0 2147483647"],
        );
        Some(netns)
    }

    fn ping_command(&self, kind: &str, args: &[&str]) -> Command {
        let mut command = self.command(loopscope_binary());
        command
            .arg("ping")
            .args(args)
            .env("LOOPSCOPE_ICMP_SOCKET", kind)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }

    fn ping(&self, kind: &str, args: &[&str]) -> Output {
        self.ping_command(kind, args).output().expect("run ping")
    }
}

/// The binary under test; `LOOPSCOPE_BIN` names another one (bench/ping_icmp.sh times a
/// release build, as the other benches do).
fn loopscope_binary() -> std::path::PathBuf {
    std::env::var_os("LOOPSCOPE_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| assert_cmd::cargo::cargo_bin("loopscope"))
}

fn records(output: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("JSON line"))
        .collect()
}

fn summary(records: &[Value]) -> &Value {
    records
        .iter()
        .find(|record| record["type"] == "summary")
        .expect("summary")
}

/// The timing comparison with iputils runs alone: the other tests of this file (which run in
/// parallel threads) take this lock shared, the comparison takes it exclusively.
static TIMING: std::sync::RwLock<()> = std::sync::RwLock::new(());

fn shared_with_other_tests() -> std::sync::RwLockReadGuard<'static, ()> {
    TIMING
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn has_ipv6() -> bool {
    std::path::Path::new("/proc/sys/net/ipv6").exists()
}

#[test]
fn both_kinds_both_families_match_every_reply() {
    let _timing = shared_with_other_tests();
    let Some(netns) = Netns::create_for_ping("kinds") else {
        return;
    };
    let mut targets = vec!["icmp://127.0.0.1"];
    if has_ipv6() {
        targets.push("icmp://[::1]");
    }
    for (kind, expected_kind) in [("raw", "raw"), ("dgram", "datagram")] {
        for target in &targets {
            let output = netns.ping(
                kind,
                &["--json", target, "-c", "5", "-i", "0.01", "-s", "100"],
            );
            let records = records(&output);
            assert_eq!(
                output.status.code(),
                Some(0),
                "{kind} {target}: {records:?}"
            );
            let replies: Vec<&Value> = records.iter().filter(|r| r["type"] == "reply").collect();
            let sequences: Vec<u64> = replies.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
            assert_eq!(sequences, [1, 2, 3, 4, 5], "{kind} {target}");
            for reply in &replies {
                // 100 payload bytes + the 8-byte ICMP header.
                assert_eq!(reply["bytes"], 108, "{kind} {target}");
                assert!(reply["rtt_us"].as_f64().unwrap() > 0.0);
                assert!(reply.get("duplicate").is_none());
            }
            if kind == "raw" && target.contains("127.0.0.1") {
                // Only raw IPv4 sockets see the IP header, hence the TTL.
                assert_eq!(replies[0]["ttl"], 64);
            }
            let summary = summary(&records);
            assert_eq!(summary["socket_kind"], expected_kind);
            assert_eq!(summary["transmitted"], 5);
            assert_eq!(summary["received"], 5);
            assert_eq!(summary["duplicates"], 0);
            assert_eq!(summary["loss_percent"], 0.0);
            assert_eq!(summary["passed"], true);
            let target_ip = if target.contains("::1") {
                "::1"
            } else {
                "127.0.0.1"
            };
            assert_eq!(summary["target"], target_ip);
            assert!(
                summary["rtt_p99_us"].as_f64().unwrap() >= summary["rtt_p50_us"].as_f64().unwrap()
            );
        }
    }
}

#[test]
fn two_pingers_side_by_side_count_only_their_own_replies() {
    let _timing = shared_with_other_tests();
    // A raw socket sees every echo reply on the host, and a datagram socket's identifier is
    // rewritten by the kernel: each run must still count exactly its own.
    let Some(netns) = Netns::create_for_ping("pair") else {
        return;
    };
    for kind in ["raw", "dgram"] {
        let args = ["--json", "icmp://127.0.0.1", "-c", "30", "-i", "0.005"];
        let first = netns.ping_command(kind, &args).spawn().expect("spawn");
        let second = netns.ping_command(kind, &args).spawn().expect("spawn");
        for child in [first, second] {
            let output = child.wait_with_output().expect("wait");
            let records = records(&output);
            let summary = summary(&records);
            assert_eq!(summary["received"], 30, "{kind}: {summary}");
            assert_eq!(summary["duplicates"], 0, "{kind}: {summary}");
            assert_eq!(
                records.iter().filter(|r| r["type"] == "reply").count(),
                30,
                "{kind}"
            );
        }
    }
}

#[test]
fn dropped_echo_is_loss_and_exit_1() {
    let _timing = shared_with_other_tests();
    let Some(netns) = Netns::create_for_ping("loss") else {
        return;
    };
    netns.exec("nft", &["add", "table", "inet", "lstest"]);
    netns.exec(
        "nft",
        &["add chain inet lstest input { type filter hook input priority 0 ; policy accept ; }"],
    );
    netns.exec(
        "nft",
        &["add rule inet lstest input meta l4proto icmp drop"],
    );
    let output = netns.ping(
        "raw",
        &[
            "--json",
            "icmp://127.0.0.1",
            "-c",
            "2",
            "-i",
            "0.05",
            "-W",
            "0.2",
        ],
    );
    assert_eq!(output.status.code(), Some(1));
    let records = records(&output);
    let summary = summary(&records);
    assert_eq!(summary["transmitted"], 2);
    assert_eq!(summary["received"], 0);
    assert_eq!(summary["loss_percent"], 100.0);
    assert_eq!(summary["passed"], false);
}

#[test]
fn human_output_names_the_socket_kind() {
    let _timing = shared_with_other_tests();
    let Some(netns) = Netns::create_for_ping("human") else {
        return;
    };
    let output = netns.ping("raw", &["icmp://127.0.0.1", "-c", "2", "-i", "0.01"]);
    assert_eq!(output.status.code(), Some(0));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.starts_with("PING 127.0.0.1: 56 data bytes, raw ICMP socket"),
        "{text}"
    );
    assert!(
        text.contains("64 bytes from 127.0.0.1: seq=1 ttl=64 time="),
        "{text}"
    );
    assert!(text.contains("--- 127.0.0.1 ping statistics ---"), "{text}");
    assert!(
        text.contains("2 packets transmitted, 2 received, 0% packet loss"),
        "{text}"
    );
}

#[test]
fn ctrl_c_prints_the_summary() {
    let _timing = shared_with_other_tests();
    let Some(netns) = Netns::create_for_ping("intr") else {
        return;
    };
    let run = support::running::Running::spawn(
        netns.ping_command("raw", &["--json", "icmp://127.0.0.1", "-i", "0.02"]),
    );
    // Three replies before Ctrl-C, not a fixed 400 ms: a starved run may not have installed
    // its handler, or sent three requests, by then. `ip netns exec` execs the program, so the
    // child's pid is loopscope's.
    for _ in 0..3 {
        run.wait_for("a reply", |v| v["type"] == "reply");
    }
    let (summary, code) = run.interrupt();
    let transmitted = summary["transmitted"].as_u64().unwrap();
    let received = summary["received"].as_u64().unwrap();
    assert!(transmitted >= 3, "{summary}");
    // A request in flight at the instant of the signal may go unanswered (one in ~1000 runs).
    assert!(received + 1 >= transmitted, "{summary}");
    let expected = if received == transmitted { 0 } else { 1 };
    assert_eq!(code, expected);
}

#[test]
fn bad_targets_and_sizes_exit_2() {
    for args in [
        vec!["ping", "icmp://", "-c", "1"],
        vec!["ping", "icmp://127.0.0.1", "-c", "1", "-s", "8"],
        vec!["ping", "icmp://no-such-host.invalid", "-c", "1"],
    ] {
        let output = assert_cmd::Command::cargo_bin("loopscope")
            .unwrap()
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.starts_with("loopscope: error: "), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
    }
    let output = assert_cmd::Command::cargo_bin("loopscope")
        .unwrap()
        .args(["ping", "icmp://127.0.0.1", "-c", "1"])
        .env("LOOPSCOPE_ICMP_SOCKET", "carrier-pigeon")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("carrier-pigeon"));
}

/// Answers every loopscope echo request a second time, so each request gets two replies.
/// Written in Python so that it can run inside the namespace (`ip netns exec`).
const DUPLICATOR: &str = r#"
import socket, struct, sys
def checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while total >> 16:
        total = (total & 0xffff) + (total >> 16)
    return ~total & 0xffff
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
print("up", flush=True)
while True:
    packet = s.recv(65535)
    icmp = bytearray(packet[(packet[0] & 15) * 4:])
    if len(icmp) >= 12 and icmp[0] == 8 and icmp[8:12] == b"LSCP":
        icmp[0] = 0
        icmp[2:4] = b"\0\0"
        icmp[2:4] = struct.pack("!H", checksum(bytes(icmp)))
        s.sendto(bytes(icmp), ("127.0.0.1", 0))
"#;

#[test]
fn duplicate_replies_are_counted_not_double_counted() {
    let _timing = shared_with_other_tests();
    let Some(netns) = Netns::create_for_ping("dup") else {
        return;
    };
    let spawned = Command::new("ip")
        .args(["netns", "exec", &netns.name, "python3", "-c", DUPLICATOR])
        .stdout(Stdio::piped())
        .spawn();
    let Ok(mut duplicator) = spawned else {
        eprintln!("skipping: python3 is needed to inject duplicate replies");
        return;
    };
    let mut line = String::new();
    let stdout = duplicator.stdout.take().expect("piped");
    let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line);
    if line.trim() != "up" {
        let _ = duplicator.kill();
        let _ = duplicator.wait();
        eprintln!("skipping: python3 could not open a raw socket in the namespace");
        return;
    }
    let mut results = Vec::new();
    for kind in ["raw", "dgram"] {
        let output = netns.ping(
            kind,
            &["--json", "icmp://127.0.0.1", "-c", "3", "-i", "0.05"],
        );
        results.push((kind, output));
    }
    let _ = duplicator.kill();
    let _ = duplicator.wait();
    for (kind, output) in results {
        let records = records(&output);
        let summary = summary(&records);
        assert_eq!(summary["received"], 3, "{kind}: {summary}");
        // The run ends with the last genuine reply (as iputils' -c does), so the copy of the
        // last one may come too late to be seen; the earlier ones arrive 50 ms before the next.
        let duplicates_seen = summary["duplicates"].as_u64().unwrap();
        assert!((2..=3).contains(&duplicates_seen), "{kind}: {summary}");
        assert_eq!(summary["passed"], true, "{kind}");
        let duplicates: Vec<u64> = records
            .iter()
            .filter(|r| r["type"] == "reply" && r["duplicate"] == true)
            .map(|r| r["seq"].as_u64().unwrap())
            .collect();
        assert_eq!(duplicates[..2], [1, 2], "{kind}");
        assert_eq!(duplicates.len() as u64, duplicates_seen, "{kind}");
        assert_eq!(output.status.code(), Some(0), "{kind}");
    }
}

/// The round trips iputils `ping` printed (`time=0.037 ms` per reply), by sequence number, in
/// microseconds.
fn iputils_round_trips(output: &Output) -> BTreeMap<u64, f64> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            let sequence = line.split("icmp_seq=").nth(1)?.split_whitespace().next()?;
            let ms = line.split("time=").nth(1)?.split_whitespace().next()?;
            Some((sequence.parse().ok()?, ms.parse::<f64>().ok()? * 1000.0))
        })
        .collect()
}

/// The round trips of a `loopscope ping --json` run, by sequence number, in microseconds.
fn our_round_trips(output: &Output) -> BTreeMap<u64, f64> {
    records(output)
        .iter()
        .filter(|record| record["type"] == "reply" && record.get("duplicate").is_none())
        .map(|record| {
            (
                record["seq"].as_u64().unwrap(),
                record["rtt_us"].as_f64().unwrap(),
            )
        })
        .collect()
}

fn median(values: &[f64]) -> f64 {
    let mut values = values.to_vec();
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    if values.len().is_multiple_of(2) {
        (values[middle - 1] + values[middle]) / 2.0
    } else {
        values[middle]
    }
}

/// One echo exchange as the packet capture saw it on the namespace's lo: when the request and
/// the reply crossed it (the kernel's timestamps, CLOCK_REALTIME nanoseconds).
#[derive(Debug, Clone, Copy)]
struct Exchange {
    request_ns: u64,
    reply_ns: u64,
}

impl Exchange {
    /// The round trip on the wire, in microseconds.
    fn wire_us(&self) -> f64 {
        self.reply_ns.saturating_sub(self.request_ns) as f64 / 1000.0
    }
}

/// tcpdump on a namespace's lo, the independent reference for round trips: the kernel stamps
/// each echo request and reply as it crosses lo, and a reply's stamp there is the very receive
/// timestamp (SO_TIMESTAMP) both pingers read, so the capture's reply minus request is the part
/// of a round trip that no pinger's own code or send call is in. It stops by itself after the
/// number of packets it was told to expect.
struct Capture {
    child: std::process::Child,
    file: std::path::PathBuf,
    _directory: tempfile::TempDir,
}

/// Echo requests and replies only (ICMP types 8 and 0, ICMPv6 128 and 129 on lo, where no
/// extension header comes between).
const ECHO_FILTER: &str = "icmp[icmptype] == icmp-echo or icmp[icmptype] == icmp-echoreply \
     or (icmp6 and (ip6[40] == 128 or ip6[40] == 129))";

impl Capture {
    /// Starts capturing `packets` echo packets; returns once tcpdump listens (`None`, with the
    /// reason printed, without tcpdump and tshark).
    fn start(netns: &Netns, packets: usize) -> Option<Capture> {
        if !support::installed("tcpdump") || !support::installed("tshark") {
            eprintln!(
                "skipping: tcpdump and tshark are the reference (apt-get install tcpdump tshark)"
            );
            return None;
        }
        let directory = tempfile::tempdir().expect("temporary directory");
        let file = directory.path().join("echo.pcap");
        let child = support::tshark::capture(
            netns.command("tcpdump"),
            "lo",
            &["-c", &packets.to_string()],
            &file,
            ECHO_FILTER,
        );
        Some(Capture {
            child,
            file,
            _directory: directory,
        })
    }

    /// Waits until every expected packet was captured, then reads the exchanges with tshark:
    /// one map per pinger run (each run numbers its requests from 1, in the order they were
    /// captured), sequence number to exchange.
    fn finish(self) -> Vec<BTreeMap<u64, Exchange>> {
        let output = support::wait_or_kill(self.child, Duration::from_secs(120));
        assert!(output.status.success(), "tcpdump failed");
        let rows = support::tshark::fields(
            &self.file,
            &[],
            &[
                "frame.time_epoch",
                "icmp.type",
                "icmp.seq",
                "icmpv6.type",
                "icmpv6.echo.sequence_number",
            ],
        );
        let mut runs: Vec<BTreeMap<u64, Exchange>> = Vec::new();
        let mut requests: Vec<BTreeMap<u64, u64>> = Vec::new();
        for columns in &rows {
            let (kind, sequence) = if columns[1].is_empty() {
                (&columns[3], &columns[4])
            } else {
                (&columns[1], &columns[2])
            };
            let (Ok(kind), Ok(sequence)) = (kind.parse::<u8>(), sequence.parse::<u64>()) else {
                continue;
            };
            let at = support::tshark::epoch_ns(&columns[0]).expect("frame.time_epoch");
            match kind {
                8 | 128 => {
                    if sequence == 1 || requests.is_empty() {
                        requests.push(BTreeMap::new());
                        runs.push(BTreeMap::new());
                    }
                    requests.last_mut().unwrap().insert(sequence, at);
                }
                0 | 129 => {
                    let (Some(sent), Some(run)) = (requests.last(), runs.last_mut()) else {
                        continue;
                    };
                    if let Some(&request_ns) = sent.get(&sequence) {
                        run.entry(sequence).or_insert(Exchange {
                            request_ns,
                            reply_ns: at,
                        });
                    }
                }
                _ => {}
            }
        }
        runs
    }
}

/// The median time between a run's requests on the wire, in seconds.
fn spacing_s(runs: &[&BTreeMap<u64, Exchange>]) -> f64 {
    let gaps: Vec<f64> = runs
        .iter()
        .flat_map(|run| {
            run.values()
                .zip(run.values().skip(1))
                .map(|(a, b)| b.request_ns.saturating_sub(a.request_ns) as f64 / 1e9)
        })
        .collect();
    median(&gaps)
}

/// Issue 11 item 1: a round trip is timed from just before the request is handed to the
/// kernel to the kernel's receive timestamp of the reply. Whatever else it includes, it
/// contains the exchange on the wire: the send time comes before the request crosses lo, and
/// the reply's receive timestamp is the one the capture records. So no reply may read shorter
/// than the capture's request-to-reply time on lo. The send time once taken after `send()`
/// returned read about a third of iputils, less than the capture: this fails that way.
///
/// Independent of load: a busy machine only lengthens what comes before the request reaches
/// lo, which makes our figure larger, never smaller than the capture's. The tolerance is the
/// error allowed in moving the kernel's CLOCK_REALTIME stamp onto CLOCK_MONOTONIC.
#[test]
fn no_round_trip_reads_shorter_than_the_captured_exchange() {
    let _timing = shared_with_other_tests();
    let Some(netns) = Netns::create_for_ping("wire") else {
        return;
    };
    let mut targets = vec!["icmp://127.0.0.1"];
    if has_ipv6() {
        targets.push("icmp://[::1]");
    }
    const COUNT: usize = 10;
    const TOLERANCE_US: f64 = 1.0;
    for kind in ["raw", "dgram"] {
        for target in &targets {
            let Some(capture) = Capture::start(&netns, 2 * COUNT) else {
                return;
            };
            let output = netns.ping(
                kind,
                &["--json", target, "-c", &COUNT.to_string(), "-i", "0.01"],
            );
            assert_eq!(output.status.code(), Some(0), "{kind} {target}");
            let ours = our_round_trips(&output);
            let wire = capture.finish();
            assert_eq!(wire.len(), 1, "{kind} {target}: one run captured");
            assert_eq!(ours.len(), COUNT, "{kind} {target}");
            assert_eq!(wire[0].len(), COUNT, "{kind} {target}: captured exchanges");
            for (sequence, rtt_us) in &ours {
                let exchange = wire[0][sequence];
                assert!(
                    *rtt_us + TOLERANCE_US >= exchange.wire_us(),
                    "{kind} {target} seq {sequence}: loopscope read {rtt_us:.3} us, but the \
                     request and reply crossed lo {:.3} us apart",
                    exchange.wire_us()
                );
            }
        }
    }
}

/// One tool's figures over its rounds: round trips, the capture's exchanges of the same
/// packets, and how far apart its requests went.
struct Tally {
    rtt_us: Vec<f64>,
    wire_us: Vec<f64>,
    beyond_us: Vec<f64>,
    spacing_s: f64,
}

impl Tally {
    fn of(tool_runs: &[BTreeMap<u64, f64>], wire_runs: &[&BTreeMap<u64, Exchange>]) -> Tally {
        let mut tally = Tally {
            rtt_us: Vec::new(),
            wire_us: Vec::new(),
            beyond_us: Vec::new(),
            spacing_s: spacing_s(wire_runs),
        };
        for (tool, wire) in tool_runs.iter().zip(wire_runs) {
            for (sequence, rtt_us) in tool {
                tally.rtt_us.push(*rtt_us);
                if let Some(exchange) = wire.get(sequence) {
                    tally.wire_us.push(exchange.wire_us());
                    tally.beyond_us.push(rtt_us - exchange.wire_us());
                }
            }
        }
        tally
    }
}

/// Runs `rounds` alternating rounds of `count` requests from iputils (`ping -i 0.01`) and from
/// loopscope (`-i ours_interval`) with the capture running: (iputils, loopscope).
fn alternate(
    netns: &Netns,
    address: &str,
    endpoint: &str,
    rounds: usize,
    count: usize,
    ours_interval: &str,
) -> (Tally, Tally) {
    let capture = Capture::start(netns, rounds * 2 * 2 * count).expect("capture");
    let count_text = count.to_string();
    let mut runs: Vec<(bool, BTreeMap<u64, f64>)> = Vec::new();
    for round in 0..rounds {
        let iputils_first = round.is_multiple_of(2);
        for iputils in [iputils_first, !iputils_first] {
            if iputils {
                let output = netns
                    .command("ping")
                    .args(["-n", "-c", &count_text, "-i", "0.01", address])
                    .output()
                    .expect("run iputils ping");
                assert!(output.status.success(), "iputils ping {address} failed");
                runs.push((true, iputils_round_trips(&output)));
            } else {
                let output = netns.ping(
                    "auto",
                    &["--json", endpoint, "-c", &count_text, "-i", ours_interval],
                );
                assert_eq!(output.status.code(), Some(0), "loopscope ping {endpoint}");
                runs.push((false, our_round_trips(&output)));
            }
        }
    }
    let wire = capture.finish();
    assert_eq!(wire.len(), runs.len(), "captured runs for {address}");
    let pick = |iputils: bool| {
        let tool: Vec<BTreeMap<u64, f64>> = runs
            .iter()
            .filter(|(is_iputils, _)| *is_iputils == iputils)
            .map(|(_, rtts)| rtts.clone())
            .collect();
        let wire: Vec<&BTreeMap<u64, Exchange>> = runs
            .iter()
            .zip(&wire)
            .filter(|((is_iputils, _), _)| *is_iputils == iputils)
            .map(|(_, exchanges)| exchanges)
            .collect();
        Tally::of(&tool, &wire)
    };
    let (theirs, ours) = (pick(true), pick(false));
    assert_eq!(
        theirs.rtt_us.len(),
        rounds * count,
        "iputils replies for {address}"
    );
    assert_eq!(
        ours.rtt_us.len(),
        rounds * count,
        "loopscope replies for {address}"
    );
    (theirs, ours)
}

/// Prints one comparison line; returns the ratio of the medians (ours / iputils).
fn report(address: &str, label: &str, theirs: &Tally, ours: &Tally) -> f64 {
    let ratio = median(&ours.rtt_us) / median(&theirs.rtt_us);
    eprintln!(
        "{address}: {label}: requests every {:.1} ms (iputils) / {:.1} ms (loopscope); median \
         round trip loopscope {:.1} us, iputils {:.1} us, ratio {ratio:.3}; on the wire (capture) \
         {:.1} / {:.1} us; each tool's figure minus the capture's, median (min): loopscope \
         {:+.1} ({:+.1}) us, iputils {:+.1} ({:+.1}) us",
        theirs.spacing_s * 1e3,
        ours.spacing_s * 1e3,
        median(&ours.rtt_us),
        median(&theirs.rtt_us),
        median(&ours.wire_us),
        median(&theirs.wire_us),
        median(&ours.beyond_us),
        ours.beyond_us.iter().copied().fold(f64::INFINITY, f64::min),
        median(&theirs.beyond_us),
        theirs
            .beyond_us
            .iter()
            .copied()
            .fold(f64::INFINITY, f64::min),
    );
    ratio
}

/// Issue 11 item 1: `ping icmp://127.0.0.1` read about 3x lower than iputils `ping` on the same
/// host, because the send time was taken after `send()` returned. Both tools now time the same
/// thing: from just before the send call to the kernel's receive timestamp.
///
/// Both are held against a packet capture on lo (see [`Capture`]): each tool's figure minus the
/// capture's for the same packet is the part spent before the request reached lo, and neither
/// may read below the capture. On loopback that part is most of the round trip, and it grows
/// with how long the CPU sat idle before the send (cold caches, halted vCPU): on this VM a
/// request after 2 ms reads about 12 us, after 16 ms or more about 35 us, for either tool.
/// iputils `ping -i 0.01` does not send every 10 ms: it waits for replies in `recvmsg()` with
/// SO_RCVTIMEO, a timer counted in scheduler ticks, so on a 250 Hz kernel its requests go out
/// every 12-16 ms. So the goal (medians within 15%) is checked with loopscope sending at the
/// interval iputils really kept, measured on the capture; the figure at the same nominal `-i`
/// is printed beside it.
///
/// The rounds alternate (a busy spell hits both) and no other test of this file runs
/// meanwhile. Not in the CI run: a timing comparison is a benchmark; `bench/ping_icmp.sh` runs
/// it and prints the ratios.
#[test]
#[ignore = "timing comparison with iputils: run by bench/ping_icmp.sh"]
fn icmp_round_trips_agree_with_iputils_ping() {
    if Command::new("ping").arg("-V").output().is_err() {
        eprintln!("skipping: iputils `ping` is not installed (apt-get install iputils-ping)");
        return;
    }
    let _alone = TIMING
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let Some(netns) = Netns::create_for_ping("iputils") else {
        return;
    };
    let mut targets = vec![("127.0.0.1", "icmp://127.0.0.1")];
    if has_ipv6() {
        targets.push(("::1", "icmp://[::1]"));
    }
    const ROUNDS: usize = 6;
    const COUNT: usize = 30;
    let mut failures = Vec::new();
    for (address, endpoint) in targets {
        let (theirs, ours) = alternate(&netns, address, endpoint, ROUNDS, COUNT, "0.01");
        report(address, "same -i 0.01", &theirs, &ours);
        // The interval iputils kept, to the microsecond.
        let matched = format!("{:.6}", theirs.spacing_s);
        let (theirs_matched, ours_matched) =
            alternate(&netns, address, endpoint, ROUNDS, COUNT, &matched);
        let ratio = report(
            address,
            &format!("loopscope -i {matched} (iputils' real spacing)"),
            &theirs_matched,
            &ours_matched,
        );
        for (tool, tally) in [
            ("iputils", &theirs),
            ("loopscope", &ours),
            ("iputils", &theirs_matched),
            ("loopscope", &ours_matched),
        ] {
            // iputils rounds both of its times down to the microsecond.
            let lowest = tally
                .beyond_us
                .iter()
                .copied()
                .fold(f64::INFINITY, f64::min);
            if lowest < -1.0 {
                failures.push(format!(
                    "{address}: {tool} read {lowest:.1} us below the capture"
                ));
            }
        }
        if !(0.85..=1.15).contains(&ratio) {
            failures.push(format!(
                "{address}: at the same real spacing, loopscope/iputils median {ratio:.3}"
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:?}");
}

/// Issue 12 (smaller faults): with lo down, `ping icmp://127.0.0.1` blamed ping_group_range.
/// The socket opens; the address has no route: say so.
#[test]
fn lo_down_is_network_unreachable_not_a_privilege_problem() {
    let _timing = shared_with_other_tests();
    // A new namespace's lo is down.
    let Some(netns) = Netns::create("lsping", "lodown") else {
        return;
    };
    let output = netns.ping("auto", &["icmp://127.0.0.1", "-c", "1"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("Network is unreachable"), "{stderr}");
    assert!(!stderr.contains("ping_group_range"), "{stderr}");
}
