//! `loopscope ping icmp://...` in network namespaces this test creates: both socket kinds
//! (raw, and datagram once ping_group_range allows it), both families, replies matched to
//! requests, loss, two pingers side by side, Ctrl-C. Needs root; skips with a reason otherwise.

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
        let mut command = self.command(assert_cmd::cargo::cargo_bin("loopscope"));
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
    let child = netns
        .ping_command("raw", &["--json", "icmp://127.0.0.1", "-i", "0.02"])
        .spawn()
        .expect("spawn");
    std::thread::sleep(Duration::from_millis(400));
    // `ip netns exec` execs the program, so the child's pid is loopscope's.
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let output = child.wait_with_output().expect("wait");
    let records = records(&output);
    let summary = summary(&records);
    let transmitted = summary["transmitted"].as_u64().unwrap();
    let received = summary["received"].as_u64().unwrap();
    assert!(transmitted >= 3, "{summary}");
    // A request in flight at the instant of the signal may go unanswered (one in ~1000 runs).
    assert!(received + 1 >= transmitted, "{summary}");
    let expected = if received == transmitted { 0 } else { 1 };
    assert_eq!(output.status.code(), Some(expected));
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

/// The round trips iputils `ping` printed (`time=0.037 ms` per reply), in microseconds.
fn iputils_round_trips(output: &Output) -> Vec<f64> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split("time=").nth(1))
        .filter_map(|rest| rest.split_whitespace().next())
        .filter_map(|ms| ms.parse::<f64>().ok())
        .map(|ms| ms * 1000.0)
        .collect()
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    if values.len().is_multiple_of(2) {
        (values[middle - 1] + values[middle]) / 2.0
    } else {
        values[middle]
    }
}

/// Issue 11 item 1: `ping icmp://127.0.0.1` read about 3x lower than iputils `ping` on the same
/// host, because the send time was taken after `send()` returned. Both tools now time the same
/// thing, so their medians agree within 15%, for IPv4 and IPv6.
///
/// The two tools run in alternating rounds (a busy spell hits both), the medians are over every
/// reply of every round, and no other test of this file runs meanwhile.
///
/// Not in the CI run: on a heavily oversubscribed machine (load 13-20 on 2 cores) the kernel
/// defers loopback receive processing to ksoftirqd, and iputils' medians grow more than ours
/// (ratios 0.75-0.88 seen, with ours the lower), so the comparison is a timing benchmark, not a
/// pass/fail test. `bench/ping_icmp.sh` runs it and prints the ratios.
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
    const COUNT: usize = 20;
    let count = COUNT.to_string();
    for (address, endpoint) in targets {
        let (mut theirs, mut ours) = (Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            let run_iputils = |theirs: &mut Vec<f64>| {
                let output = netns
                    .command("ping")
                    .args(["-n", "-c", &count, "-i", "0.01", address])
                    .output()
                    .expect("run iputils ping");
                assert!(output.status.success(), "iputils ping {address} failed");
                theirs.extend(iputils_round_trips(&output));
            };
            let run_ours = |ours: &mut Vec<f64>| {
                let output = netns.ping("auto", &["--json", endpoint, "-c", &count, "-i", "0.01"]);
                assert_eq!(output.status.code(), Some(0), "loopscope ping {endpoint}");
                ours.extend(
                    records(&output)
                        .iter()
                        .filter(|record| record["type"] == "reply")
                        .map(|record| record["rtt_us"].as_f64().unwrap()),
                );
            };
            if round.is_multiple_of(2) {
                run_iputils(&mut theirs);
                run_ours(&mut ours);
            } else {
                run_ours(&mut ours);
                run_iputils(&mut theirs);
            }
        }
        assert_eq!(
            theirs.len(),
            ROUNDS * COUNT,
            "iputils replies for {address}"
        );
        assert_eq!(
            ours.len(),
            ROUNDS * COUNT,
            "loopscope replies for {address}"
        );
        let (theirs, ours) = (median(&mut theirs), median(&mut ours));
        let ratio = ours / theirs;
        eprintln!(
            "{address}: median round trip loopscope {ours:.1} us, iputils {theirs:.1} us, ratio {ratio:.3}"
        );
        assert!(
            (0.85..=1.15).contains(&ratio),
            "{address}: loopscope median {ours:.1} us vs iputils {theirs:.1} us (ratio {ratio:.3})"
        );
    }
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
