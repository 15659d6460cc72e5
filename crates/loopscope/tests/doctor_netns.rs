//! `loopscope doctor` against broken hosts built in network namespaces this test creates:
//! each breakage must fail the right check for the right reason, and a healthy namespace must
//! pass every check. Needs root (`ip netns add`); skips with a printed reason otherwise.

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

mod support;

use support::Netns;

/// The doctor-specific uses of a test namespace.
impl Netns {
    fn create_for_doctor(tag: &str) -> Option<Netns> {
        Netns::create("lsdoc", tag)
    }

    /// A doctor namespace with `lo` up.
    fn with_lo_up(tag: &str) -> Option<Netns> {
        let netns = Netns::create_for_doctor(tag)?;
        netns.exec("ip", &["link", "set", "lo", "up"]);
        Some(netns)
    }

    /// [`Netns::with_lo_up`], when the kernel has IPv6; else it says why the test skips.
    fn with_ipv6_and_lo_up(tag: &str) -> Option<Netns> {
        if !has_ipv6() {
            eprintln!("skipping: this kernel has no IPv6");
            return None;
        }
        Netns::with_lo_up(tag)
    }

    /// `loopscope --json doctor ARGS` inside the namespace: exit code and the JSON records.
    fn doctor(&self, args: &[&str]) -> (i32, Vec<Value>) {
        self.doctor_with_env(args, &[])
    }

    /// The doctor inside the namespace with only the checks `names` (`--check NAME` each).
    fn doctor_checks(&self, names: &[&str]) -> (i32, Vec<Value>) {
        let args: Vec<&str> = names.iter().flat_map(|name| ["--check", name]).collect();
        self.doctor(&args)
    }

    fn doctor_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> (i32, Vec<Value>) {
        let binary = assert_cmd::cargo::cargo_bin("loopscope");
        let output = Command::new("ip")
            .args(["netns", "exec", &self.name])
            .arg(&binary)
            .args(["--json", "doctor"])
            .args(args)
            .envs(env.iter().copied())
            .output()
            .expect("run loopscope doctor");
        let records = String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(|line| serde_json::from_str(line).expect("every stdout line is JSON"))
            .collect();
        (output.status.code().unwrap_or(-1), records)
    }
}

fn check<'a>(records: &'a [Value], name: &str) -> &'a Value {
    records
        .iter()
        .find(|record| record["type"] == "check" && record["name"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {records:#?}"))
}

fn status(records: &[Value], name: &str) -> String {
    check(records, name)["status"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn finding(records: &[Value], name: &str) -> String {
    check(records, name)["finding"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The command the doctor gives to mend check `name` (empty when it gives none).
fn fix(records: &[Value], name: &str) -> String {
    check(records, name)["fix"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn summary(records: &[Value]) -> &Value {
    records
        .iter()
        .find(|record| record["type"] == "summary")
        .expect("a summary record")
}

fn hosts_file(text: &str) -> (tempfile::NamedTempFile, PathBuf) {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    file.write_all(text.as_bytes()).expect("write hosts file");
    let path = file.path().to_path_buf();
    (file, path)
}

const GOOD_HOSTS: &str = "127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n";

fn has_ipv6() -> bool {
    std::path::Path::new("/proc/sys/net/ipv6").exists()
}

#[test]
fn healthy_namespace_passes_every_check() {
    let Some(netns) = Netns::with_lo_up("ok") else {
        return;
    };
    let (_file, path) = hosts_file(GOOD_HOSTS);
    let (code, records) = netns.doctor(&["--hosts-file", path.to_str().unwrap()]);
    for record in records.iter().filter(|record| record["type"] == "check") {
        let expected = if !has_ipv6() && record["status"] == "SKIP" {
            "SKIP"
        } else {
            "PASS"
        };
        assert_eq!(record["status"], expected, "{record}");
    }
    let summary = summary(&records);
    assert_eq!(summary["passed"], true);
    assert_eq!(summary["fail"], 0);
    assert_eq!(summary["warn"], 0);
    assert!(summary["checks"].as_u64().unwrap() >= 24);
    assert_eq!(code, 0);
    // The namespace check found the namespace by its `ip netns` name.
    assert!(finding(&records, "namespace").contains(&netns.name));
    // Figures: lo's MTU is the kernel default in a fresh namespace.
    assert_eq!(check(&records, "lo_mtu")["mtu"], 65536);
    assert_eq!(check(&records, "icmp_v4")["received"], 3);
    assert!(check(&records, "latency")["rtt_p50_us"].as_f64().unwrap() > 0.0);
    // The BERT sent 16 MiB and compared all of it but the few bits needed to synchronise.
    let bert = check(&records, "bert");
    assert_eq!(bert["bytes"], 16u64 << 20);
    assert_eq!(bert["bit_errors"], 0);
    let bits = bert["bits"].as_u64().unwrap();
    assert!(
        bits <= 8 * (16u64 << 20) && bits > 8 * (16u64 << 20) - 1024,
        "{bert}"
    );
}

#[test]
fn lo_down_fails_with_the_fix() {
    let Some(netns) = Netns::create_for_doctor("down") else {
        return;
    };
    let (code, records) = netns.doctor_checks(&["lo_up", "lo_ipv4", "tcp_v4", "icmp_v4"]);
    assert_eq!(code, 1);
    assert_eq!(status(&records, "lo_up"), "FAIL");
    assert!(finding(&records, "lo_up").contains("DOWN"));
    assert_eq!(check(&records, "lo_up")["fix"], "ip link set lo up");
    for name in ["lo_ipv4", "tcp_v4", "icmp_v4"] {
        assert_eq!(status(&records, name), "FAIL", "{name}");
        assert_eq!(check(&records, name)["fix"], "ip link set lo up", "{name}");
    }
    assert_eq!(summary(&records)["passed"], false);
}

#[test]
fn deleted_127_0_0_1_fails_address_route_and_traffic() {
    let Some(netns) = Netns::with_lo_up("nov4") else {
        return;
    };
    netns.exec("ip", &["addr", "del", "127.0.0.1/8", "dev", "lo"]);
    let (code, records) = netns.doctor_checks(&["lo_ipv4", "route_local_v4", "tcp_v4", "lo_ipv6"]);
    assert_eq!(code, 1);
    assert_eq!(status(&records, "lo_ipv4"), "FAIL");
    assert!(finding(&records, "lo_ipv4").contains("127.0.0.1 is not on lo"));
    assert_eq!(
        check(&records, "lo_ipv4")["fix"],
        "ip addr add 127.0.0.1/8 dev lo"
    );
    assert_eq!(status(&records, "route_local_v4"), "FAIL");
    assert!(finding(&records, "route_local_v4").contains("127.0.0.0/8"));
    assert_eq!(status(&records, "tcp_v4"), "FAIL");
    // IPv6 is untouched.
    if has_ipv6() {
        assert_eq!(status(&records, "lo_ipv6"), "PASS");
    }
}

#[test]
fn deleted_ipv6_loopback_fails_lo_ipv6() {
    let Some(netns) = Netns::with_ipv6_and_lo_up("nov6") else {
        return;
    };
    netns.exec("ip", &["-6", "addr", "del", "::1/128", "dev", "lo"]);
    let (code, records) = netns.doctor_checks(&["lo_ipv6", "tcp_v6", "lo_ipv4", "disable_ipv6"]);
    assert_eq!(code, 1);
    assert_eq!(status(&records, "lo_ipv6"), "FAIL");
    assert!(finding(&records, "lo_ipv6").contains("::1 is not on lo"));
    assert_eq!(
        check(&records, "lo_ipv6")["fix"],
        "ip -6 addr add ::1/128 dev lo"
    );
    assert_eq!(status(&records, "tcp_v6"), "FAIL");
    assert_eq!(status(&records, "lo_ipv4"), "PASS");
    assert_eq!(status(&records, "disable_ipv6"), "PASS");
}

#[test]
fn ipv6_disabled_on_lo_is_named() {
    let Some(netns) = Netns::with_ipv6_and_lo_up("dis6") else {
        return;
    };
    netns.exec("sysctl", &["-q", "-w", "net.ipv6.conf.lo.disable_ipv6=1"]);
    let (code, records) = netns.doctor_checks(&["disable_ipv6", "lo_ipv6", "icmp_v6"]);
    assert_eq!(code, 1);
    assert_eq!(status(&records, "disable_ipv6"), "FAIL");
    assert_eq!(
        check(&records, "disable_ipv6")["fix"],
        "sysctl -w net.ipv6.conf.lo.disable_ipv6=0"
    );
    assert_eq!(status(&records, "lo_ipv6"), "FAIL");
    assert!(finding(&records, "lo_ipv6").contains("disable_ipv6=1"));
    assert_eq!(status(&records, "icmp_v6"), "FAIL");
}

/// A namespace with `lo` up and one nft `rule` on its input hook (table `inet lstest`); `None`
/// (after saying why) without nft or root.
fn netns_with_nft_rule(tag: &str, rule: &str) -> Option<Netns> {
    if !support::nft_available() {
        return None;
    }
    let netns = Netns::with_lo_up(tag)?;
    netns.exec("nft", &["add", "table", "inet", "lstest"]);
    netns.exec(
        "nft",
        &["add chain inet lstest input { type filter hook input priority 0 ; policy accept ; }"],
    );
    netns.exec("nft", &[&format!("add rule inet lstest input {rule}")]);
    Some(netns)
}

#[test]
fn nft_rule_dropping_icmp_on_lo_is_named() {
    let Some(netns) = netns_with_nft_rule("nfticmp", "iifname \"lo\" meta l4proto icmp drop")
    else {
        return;
    };
    let (code, records) = netns.doctor_checks(&["icmp_v4", "tcp_v4", "firewall"]);
    assert_eq!(code, 1);
    assert_eq!(status(&records, "icmp_v4"), "FAIL");
    assert!(finding(&records, "icmp_v4").starts_with("0/3 echo replies"));
    assert_eq!(status(&records, "tcp_v4"), "PASS");
    assert_eq!(status(&records, "firewall"), "FAIL");
    let text = finding(&records, "firewall");
    assert!(text.contains("ICMP to 127.0.0.1"), "{text}");
    assert!(
        text.contains("inet lstest input handle")
            && text.contains("iifname \"lo\" meta l4proto icmp drop"),
        "{text}"
    );
    let fix = fix(&records, "firewall");
    assert!(
        fix.starts_with("nft delete rule inet lstest input handle "),
        "{fix}"
    );
}

#[test]
fn nft_rule_dropping_tcp_on_lo_is_named() {
    let Some(netns) = netns_with_nft_rule("nfttcp", "iif lo meta l4proto tcp counter drop") else {
        return;
    };
    let (code, records) = netns.doctor_checks(&["tcp_v4", "udp_v4", "firewall"]);
    assert_eq!(code, 1);
    assert_eq!(status(&records, "tcp_v4"), "FAIL");
    assert!(finding(&records, "tcp_v4").contains("timed out"));
    assert_eq!(status(&records, "udp_v4"), "PASS");
    assert_eq!(status(&records, "firewall"), "FAIL");
    let text = finding(&records, "firewall");
    assert!(text.contains("TCP on 127.0.0.1"), "{text}");
    assert!(
        text.contains("iif lo meta l4proto tcp counter drop"),
        "{text}"
    );
}

#[test]
fn ping_group_range_decides_the_socket_kind() {
    let Some(netns) = Netns::with_lo_up("pgr") else {
        return;
    };
    // A new namespace starts with "1 0": only raw sockets (we are root).
    let (_, records) = netns.doctor_checks(&["ping_group_range", "icmp_v4"]);
    assert_eq!(status(&records, "ping_group_range"), "PASS");
    assert_eq!(
        check(&records, "ping_group_range")["ping_group_range"],
        "1 0"
    );
    assert_eq!(
        check(&records, "ping_group_range")["datagram_allowed"],
        false
    );
    assert_eq!(check(&records, "icmp_v4")["socket_kind"], "raw");

    netns.exec(
        "sysctl",
        &["-q", "-w", "net.ipv4.ping_group_range=0 2147483647"],
    );
    let (_, records) = netns.doctor_checks(&["ping_group_range", "icmp_v4", "icmp_v6"]);
    assert!(finding(&records, "ping_group_range").contains("includes gid 0"));
    assert_eq!(check(&records, "icmp_v4")["socket_kind"], "datagram");
    assert_eq!(status(&records, "icmp_v4"), "PASS");
    if has_ipv6() {
        assert_eq!(check(&records, "icmp_v6")["socket_kind"], "datagram");
        assert_eq!(status(&records, "icmp_v6"), "PASS");
    }
    // Forcing raw still works.
    let (_, records) =
        netns.doctor_with_env(&["--check", "icmp_v4"], &[("LOOPSCOPE_ICMP_SOCKET", "raw")]);
    assert_eq!(check(&records, "icmp_v4")["socket_kind"], "raw");
    assert_eq!(status(&records, "icmp_v4"), "PASS");
}

#[test]
fn route_localnet_is_a_warning_with_the_interface() {
    let Some(netns) = Netns::with_lo_up("rln") else {
        return;
    };
    netns.exec(
        "sysctl",
        &["-q", "-w", "net.ipv4.conf.all.route_localnet=1"],
    );
    let (code, records) = netns.doctor_checks(&["route_localnet"]);
    assert_eq!(code, 0, "a warning does not fail the run");
    assert_eq!(status(&records, "route_localnet"), "WARN");
    assert!(finding(&records, "route_localnet").contains("all"));
    assert!(
        check(&records, "route_localnet")["fix"]
            .as_str()
            .unwrap()
            .contains("net.ipv4.conf.all.route_localnet=0")
    );
}

/// Runs `localhost_order` in a namespace where a server listens on `bind` port 45678 and
/// localhost resolves to ::1 first; `None` (reason printed) when that cannot be built here.
fn localhost_order_with_ipv4_server(tag: &str, bind: &str) -> Option<(i32, Vec<Value>)> {
    let netns = Netns::with_ipv6_and_lo_up(tag)?;
    let mut server = Command::new("ip")
        .args(["netns", "exec", &netns.name, "python3", "-c"])
        .arg(format!("import socket,time\ns=socket.socket()\ns.bind(('{bind}',45678))\ns.listen()\nprint('up',flush=True)\ntime.sleep(20)"))
        .stdout(std::process::Stdio::piped())
        .spawn();
    let Ok(ref mut child) = server else {
        eprintln!("skipping: python3 is needed to hold a listener in the namespace");
        return None;
    };
    let mut line = String::new();
    let stdout = child.stdout.take().expect("piped stdout");
    let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line);
    if line.trim() != "up" {
        let _ = child.kill();
        let _ = child.wait();
        eprintln!("skipping: python3 could not hold a listener in the namespace");
        return None;
    }
    let (_file, path) = hosts_file(GOOD_HOSTS);
    let result = netns.doctor(&[
        "--hosts-file",
        path.to_str().unwrap(),
        "--check",
        "localhost_order",
    ]);
    let _ = child.kill();
    let _ = child.wait();
    Some(result)
}

#[test]
fn node_17_trap_names_the_stranded_port() {
    // A server on 127.0.0.1 only, inside the namespace, while localhost resolves to ::1 first.
    let Some((code, records)) = localhost_order_with_ipv4_server("node", "127.0.0.1") else {
        return;
    };
    assert_eq!(code, 0);
    assert_eq!(status(&records, "localhost_order"), "WARN");
    let text = finding(&records, "localhost_order");
    assert!(
        text.contains("::1 first") && text.contains("45678") && text.contains("ECONNREFUSED ::1"),
        "{text}"
    );
    assert_eq!(
        check(&records, "localhost_order")["ports_other_family_only"][0],
        45678
    );
}

#[test]
fn node_17_trap_says_what_a_wildcard_server_is_bound_to() {
    // 0.0.0.0 takes IPv4 connections on every address: it is not "only on 127.0.0.1", but
    // ::1 still misses it (issue 11 item 8).
    let Some((code, records)) = localhost_order_with_ipv4_server("node0", "0.0.0.0") else {
        return;
    };
    assert_eq!(code, 0);
    assert_eq!(status(&records, "localhost_order"), "WARN");
    let text = finding(&records, "localhost_order");
    assert!(
        text.contains("45678 (bound to 0.0.0.0)") && text.contains("only IPv4"),
        "{text}"
    );
    assert!(!text.contains("127.0.0.1"), "{text}");
}

#[test]
fn localhost_order_says_timed_out_when_packets_are_dropped() {
    if !has_ipv6() {
        eprintln!("skipping: this kernel has no IPv6");
        return;
    }
    let Some(netns) = netns_with_nft_rule("ordto", "iif lo meta l4proto tcp drop") else {
        return;
    };
    let (_file, path) = hosts_file(GOOD_HOSTS);
    let (code, records) = netns.doctor(&[
        "--hosts-file",
        path.to_str().unwrap(),
        "--check",
        "localhost_order",
    ]);
    assert_eq!(code, 1);
    assert_eq!(status(&records, "localhost_order"), "FAIL");
    let text = finding(&records, "localhost_order");
    // A dropped SYN is a timeout, not a refusal (issue 11 item 8).
    assert!(
        text.contains("time out") && !text.contains("ECONNREFUSED"),
        "{text}"
    );
    // The fix is the rule that drops it.
    let fix = fix(&records, "localhost_order");
    assert!(
        fix.starts_with("nft delete rule inet lstest input handle "),
        "{fix}"
    );
}

#[test]
fn unprivileged_user_gets_skips_with_reasons_not_failures() {
    let Some(netns) = Netns::with_lo_up("nobody") else {
        return;
    };
    let setpriv = ["/usr/bin/setpriv", "/bin/setpriv"]
        .into_iter()
        .find(|path| std::path::Path::new(path).exists());
    let Some(setpriv) = setpriv else {
        eprintln!("skipping: setpriv (util-linux) is needed to drop privileges");
        return;
    };
    let binary = assert_cmd::cargo::cargo_bin("loopscope");
    let output = Command::new("ip")
        .args(["netns", "exec", &netns.name, setpriv])
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&binary)
        .args([
            "--json",
            "doctor",
            "--check",
            "ping_group_range",
            "--check",
            "icmp_v4",
            "--check",
            "firewall",
            "--check",
            "lo_up",
            "--check",
            "tcp_v4",
        ])
        .output()
        .expect("run doctor as nobody");
    let stderr = String::from_utf8_lossy(&output.stderr);
    if stderr.contains("Permission denied") && output.stdout.is_empty() {
        eprintln!("skipping: user nobody cannot execute {}", binary.display());
        return;
    }
    assert!(!stderr.contains("panicked"), "{stderr}");
    let records: Vec<Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("JSON line"))
        .collect();
    // A new namespace's ping_group_range is "1 0" and nobody lacks CAP_NET_RAW.
    assert_eq!(status(&records, "ping_group_range"), "WARN");
    assert_eq!(status(&records, "icmp_v4"), "SKIP");
    assert!(finding(&records, "icmp_v4").contains("no ICMP socket for this user"));
    assert_eq!(status(&records, "firewall"), "SKIP");
    assert!(
        finding(&records, "firewall").contains("need root"),
        "{}",
        finding(&records, "firewall")
    );
    // What needs no privilege still runs.
    assert_eq!(status(&records, "lo_up"), "PASS");
    assert_eq!(status(&records, "tcp_v4"), "PASS");
    assert_eq!(output.status.code(), Some(0));
}

#[test]
fn only_127_0_0_1_local_is_macos_style() {
    let Some(netns) = Netns::with_lo_up("mac") else {
        return;
    };
    netns.exec("ip", &["addr", "del", "127.0.0.1/8", "dev", "lo"]);
    netns.exec("ip", &["addr", "add", "127.0.0.1/32", "dev", "lo"]);
    let (code, records) =
        netns.doctor_checks(&["lo_ipv4", "route_local_v4", "tcp_v4", "alias_127"]);
    assert_eq!(code, 1);
    assert_eq!(status(&records, "lo_ipv4"), "WARN");
    assert!(finding(&records, "lo_ipv4").contains("127.0.0.1/32"));
    assert_eq!(status(&records, "tcp_v4"), "PASS");
    assert_eq!(status(&records, "route_local_v4"), "FAIL");
    assert_eq!(status(&records, "alias_127"), "FAIL");
    assert!(finding(&records, "alias_127").contains("macOS-style"));
    // One repair for all three: adding 127.0.0.1/8 makes the kernel add local 127.0.0.0/8 too,
    // so an `ip route add` after it would fail with "File exists" (issue 11 item 7; this test
    // used to expect that route command for alias_127).
    let repair = "ip addr add 127.0.0.1/8 dev lo";
    for name in ["lo_ipv4", "route_local_v4", "alias_127"] {
        assert_eq!(check(&records, name)["fix"], repair, "{name}");
    }
    assert_eq!(summary(&records)["fixes"], serde_json::json!([repair]));
}

#[test]
fn iptables_rule_dropping_tcp_on_lo_is_named() {
    let iptables = ["/usr/sbin/iptables", "/sbin/iptables"]
        .into_iter()
        .any(|path| std::path::Path::new(path).exists());
    if !iptables {
        eprintln!("skipping: iptables is not installed");
        return;
    }
    let Some(netns) = Netns::with_lo_up("ipt") else {
        return;
    };
    netns.exec(
        "iptables",
        &["-A", "INPUT", "-i", "lo", "-p", "tcp", "-j", "DROP"],
    );
    let (code, records) = netns.doctor_checks(&["firewall"]);
    assert_eq!(code, 1);
    assert_eq!(status(&records, "firewall"), "FAIL");
    let text = finding(&records, "firewall");
    // iptables-nft rules are read through nft; iptables-legacy ones through iptables-save.
    assert!(text.contains("TCP on 127.0.0.1"), "{text}");
    assert!(
        text.contains("INPUT") && (text.contains("iifname \"lo\"") || text.contains("-i lo")),
        "{text}"
    );
}

fn tool_available(name: &str) -> bool {
    ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
        .iter()
        .any(|dir| std::path::Path::new(dir).join(name).exists())
}

/// `iptables -A INPUT -i lo -p tcp -j REJECT` through one iptables backend: the firewall check
/// must name the rule and give the command that deletes it, and never send the user hunting
/// for eBPF programs when a rule explains the failure (issue 11 item 6).
fn iptables_reject_is_named(program: &str) {
    if !tool_available(program) {
        eprintln!("skipping: {program} is not installed");
        return;
    }
    let Some(netns) = Netns::with_lo_up(&format!("rej{}", program.len())) else {
        return;
    };
    let added = netns
        .command(program)
        .args(["-A", "INPUT", "-i", "lo", "-p", "tcp", "-j", "REJECT"])
        .output()
        .expect("run iptables");
    if !added.status.success() {
        eprintln!(
            "skipping: {program} cannot add a rule here: {}",
            String::from_utf8_lossy(&added.stderr).trim()
        );
        return;
    }
    let (_file, path) = hosts_file(GOOD_HOSTS);
    let (code, records) = netns.doctor(&[
        "--hosts-file",
        path.to_str().unwrap(),
        "--check",
        "tcp_v4",
        "--check",
        "udp_v4",
        "--check",
        "firewall",
        "--check",
        "localhost_order",
    ]);
    assert_eq!(code, 1);
    assert_eq!(status(&records, "tcp_v4"), "FAIL");
    assert_eq!(status(&records, "udp_v4"), "PASS");
    // The doctor's own probe listeners, refused by the rule, are gone before it counts the
    // host's servers: they are not "ports that accept only IPv4".
    assert_eq!(
        status(&records, "localhost_order"),
        "PASS",
        "{}",
        finding(&records, "localhost_order")
    );
    let firewall = check(&records, "firewall");
    assert_eq!(firewall["status"], "FAIL", "{firewall}");
    let text = finding(&records, "firewall");
    assert!(text.contains("TCP on 127.0.0.1"), "{text}");
    assert!(
        text.contains("-A INPUT -i lo -p tcp -j REJECT"),
        "the rule is named as iptables shows it: {text}"
    );
    let fix = firewall["fix"].as_str().unwrap_or_default();
    assert!(
        !text.contains("eBPF") && !fix.contains("bpftool"),
        "{firewall}"
    );
    // The tcp_v4 check points at the same repair.
    assert_eq!(check(&records, "tcp_v4")["fix"], firewall["fix"]);
    // The printed fix deletes exactly that rule: afterwards TCP on lo works again.
    let deleted = netns
        .command("sh")
        .args(["-c", fix])
        .output()
        .expect("run the fix");
    assert!(
        deleted.status.success(),
        "{fix}: {}",
        String::from_utf8_lossy(&deleted.stderr)
    );
    let (code, records) = netns.doctor_checks(&["tcp_v4", "firewall"]);
    assert_eq!(status(&records, "firewall"), "PASS");
    assert_eq!(code, 0);
}

#[test]
fn iptables_nft_reject_on_lo_is_named() {
    iptables_reject_is_named("iptables-nft");
}

#[test]
fn iptables_legacy_reject_on_lo_is_named() {
    iptables_reject_is_named("iptables-legacy");
}
