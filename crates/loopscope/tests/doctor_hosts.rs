//! `loopscope doctor --hosts-file`: the resolver checks read a hosts(5) file we write, so each
//! case is exact. No root needed. Also the flags' errors and `--list`.

use std::io::Write;
use std::net::{Ipv6Addr, TcpListener};

use assert_cmd::Command;
use serde_json::Value;

fn doctor(hosts: &str, checks: &[&str]) -> (i32, Vec<Value>) {
    let (code, records, _) = doctor_with_path(hosts, checks);
    (code, records)
}

/// Also gives the path of the hosts file the doctor read (fixes must name it).
fn doctor_with_path(hosts: &str, checks: &[&str]) -> (i32, Vec<Value>, String) {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    file.write_all(hosts.as_bytes()).expect("write hosts");
    let mut command = Command::cargo_bin("loopscope").expect("binary");
    command
        .args(["--json", "doctor", "--hosts-file"])
        .arg(file.path());
    for check in checks {
        command.args(["--check", check]);
    }
    let output = command.output().expect("run doctor");
    let records = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("JSON line"))
        .collect();
    let path = file.path().display().to_string();
    (output.status.code().unwrap_or(-1), records, path)
}

fn check<'a>(records: &'a [Value], name: &str) -> &'a Value {
    records
        .iter()
        .find(|record| record["type"] == "check" && record["name"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {records:#?}"))
}

/// Whether TCP over ::1 works here (the "::1 works but is not returned" warning needs it).
fn ipv6_loopback_works() -> bool {
    TcpListener::bind((Ipv6Addr::LOCALHOST, 0)).is_ok()
}

#[test]
fn hosts_file_without_localhost_fails() {
    let (code, records, path) = doctor_with_path(
        "127.0.0.1 something-else\n",
        &["localhost", "localhost_order"],
    );
    assert_eq!(code, 1);
    let localhost = check(&records, "localhost");
    assert_eq!(localhost["status"], "FAIL");
    assert!(
        localhost["finding"]
            .as_str()
            .unwrap()
            .contains("localhost does not resolve"),
        "{localhost}"
    );
    // The fix writes to the hosts file the doctor read, not /etc/hosts (issue 11 item 8).
    let fix = localhost["fix"].as_str().unwrap();
    assert!(
        fix.contains("127.0.0.1 localhost") && fix.ends_with(&format!(">> {path}")),
        "{fix}"
    );
    assert_eq!(check(&records, "localhost_order")["status"], "SKIP");
}

#[test]
fn hosts_file_without_ipv6_loopback_warns() {
    if !ipv6_loopback_works() {
        eprintln!("skipping: ::1 does not work on this machine, so its absence is no warning");
        return;
    }
    let (code, records, path) = doctor_with_path("127.0.0.1 localhost\n", &["localhost"]);
    assert_eq!(code, 0, "a warning does not fail the run");
    let localhost = check(&records, "localhost");
    assert_eq!(localhost["status"], "WARN");
    assert!(
        localhost["finding"]
            .as_str()
            .unwrap()
            .contains("::1 works but is not returned")
    );
    assert_eq!(localhost["addresses"], serde_json::json!(["127.0.0.1"]));
    assert_eq!(
        localhost["fix"],
        format!("echo '::1 localhost ip6-localhost ip6-loopback' >> {path}")
    );
}

#[test]
fn hosts_file_with_both_families_passes_in_rfc_6724_order() {
    if !ipv6_loopback_works() {
        eprintln!("skipping: ::1 does not work here, so it would be sorted last");
        return;
    }
    // File order is IPv4 first; glibc's sort (RFC 6724 precedence 50 > 35) puts ::1 first.
    let (code, records) = doctor(
        "127.0.0.1 localhost\n::1 localhost ip6-localhost\n",
        &["localhost"],
    );
    assert_eq!(code, 0);
    let localhost = check(&records, "localhost");
    assert_eq!(localhost["status"], "PASS");
    assert_eq!(
        localhost["addresses"],
        serde_json::json!(["::1", "127.0.0.1"])
    );
}

#[test]
fn non_loopback_localhost_fails() {
    let (code, records) = doctor("127.0.0.1 localhost\n192.0.2.7 localhost\n", &["localhost"]);
    assert_eq!(code, 1);
    let localhost = check(&records, "localhost");
    assert_eq!(localhost["status"], "FAIL");
    assert!(localhost["finding"].as_str().unwrap().contains("192.0.2.7"));
}

#[test]
fn ipv6_only_localhost_warns() {
    let (code, records, path) = doctor_with_path("::1 localhost\n", &["localhost"]);
    assert_eq!(code, 0);
    assert_eq!(check(&records, "localhost")["status"], "WARN");
    assert_eq!(
        check(&records, "localhost")["fix"],
        format!("echo '127.0.0.1 localhost' >> {path}")
    );
}

#[test]
fn dot_localhost_answered_off_host_fails() {
    let (code, records) = doctor(
        "127.0.0.1 localhost\n203.0.113.9 loopscope-doctor.localhost\n",
        &["localhost_subdomain"],
    );
    assert_eq!(code, 1);
    assert_eq!(check(&records, "localhost_subdomain")["status"], "FAIL");
    let (code, records) = doctor(
        "127.0.0.1 localhost loopscope-doctor.localhost\n",
        &["localhost_subdomain"],
    );
    assert_eq!(code, 0);
    assert_eq!(check(&records, "localhost_subdomain")["status"], "PASS");
}

#[test]
fn bad_flags_exit_2_with_one_line() {
    let output = Command::cargo_bin("loopscope")
        .unwrap()
        .args(["doctor", "--check", "no_such_check"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("no check named 'no_such_check'"),
        "{stderr}"
    );

    let output = Command::cargo_bin("loopscope")
        .unwrap()
        .args(["doctor", "--hosts-file", "/nonexistent/hosts"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("/nonexistent/hosts"));
}

#[test]
fn list_names_every_check() {
    let output = Command::cargo_bin("loopscope")
        .unwrap()
        .args(["--json", "doctor", "--list"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let names: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| {
            serde_json::from_str::<Value>(line).unwrap()["name"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    for expected in [
        "lo_up",
        "lo_ipv4",
        "lo_ipv6",
        "lo_mtu",
        "route_local_v4",
        "route_local_v6",
        "route_localnet",
        "rp_filter",
        "disable_ipv6",
        "ping_group_range",
        "icmp_v4",
        "icmp_v6",
        "tcp_v4",
        "tcp_v6",
        "udp_v4",
        "udp_v6",
        "alias_127",
        "localhost",
        "localhost_order",
        "localhost_subdomain",
        "firewall",
        "namespace",
        "bert",
        "latency",
    ] {
        assert!(
            names.iter().any(|name| name == expected),
            "missing {expected}"
        );
    }
}

#[test]
fn human_table_and_summary() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(b"127.0.0.1 other\n").unwrap();
    let output = Command::cargo_bin("loopscope")
        .unwrap()
        .args(["doctor", "--check", "localhost", "--hosts-file"])
        .arg(file.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.starts_with("CHECK"), "{text}");
    assert!(text.contains("localhost  FAIL"), "{text}");
    assert!(text.contains("To fix:"), "{text}");
    assert!(
        text.contains("1 checks in") && text.contains("1 fail"),
        "{text}"
    );
}
