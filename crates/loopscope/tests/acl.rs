//! `loopscope acl`: the generated filters name the right prefixes in each dialect, and the
//! nftables one passes `nft -c` (as root).

use assert_cmd::Command;

mod support;
use support::is_root;

fn acl(args: &[&str]) -> std::process::Output {
    Command::cargo_bin("loopscope")
        .unwrap()
        .arg("acl")
        .args(args)
        .output()
        .unwrap()
}

fn text(output: &std::process::Output) -> String {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

#[test]
fn every_dialect_drops_loopback_sources_and_protects_loopback() {
    let nft = text(&acl(&["--format", "nftables"]));
    assert!(
        nft.contains("127.0.0.0/8,") && nft.contains("::/96,"),
        "{nft}"
    );
    assert!(nft.contains("iif \"lo\" accept"));
    assert!(nft.contains("ip daddr 127.0.0.0/8 counter drop"));
    assert!(nft.contains("ip6 daddr ::1 counter drop"));

    let iptables = text(&acl(&["--format", "iptables", "--interface", "eth0"]));
    assert!(iptables.contains("iptables -w -t raw -A PREROUTING -i eth0 -j LOOPSCOPE_ANTISPOOF"));
    assert!(iptables.contains("-s 127.0.0.0/8 "));
    assert!(iptables.contains("ip6tables -w -t raw -A LOOPSCOPE_ANTISPOOF -d ::1/128"));

    let ios = text(&acl(&["--format", "cisco-ios", "--interface", "Gi0/1"]));
    assert!(
        ios.contains(" deny ip 127.0.0.0 0.255.255.255 any log"),
        "{ios}"
    );
    assert!(ios.contains(" deny ip any 127.0.0.0 0.255.255.255 log"));
    assert!(ios.contains(" deny ipv6 ::ffff:0:0/96 any log"));
    assert!(ios.contains("interface Gi0/1\n ip access-group LOOPSCOPE-ANTISPOOF-IN in"));

    let junos = text(&acl(&["--format", "junos"]));
    assert!(junos.contains("127.0.0.0/8; /* loopback"), "{junos}");
    assert!(junos.contains("family inet6"));
    assert!(junos.contains("discard;"));
}

#[test]
fn bogons_are_added_and_bad_ones_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let bogons = dir.path().join("bogons.txt");
    std::fs::write(&bogons, "# bogons\n100.64.0.0/10\n2001:db8:ffff::/48 doc\n").unwrap();
    let output = Command::cargo_bin("loopscope")
        .unwrap()
        .args(["--json", "acl", "--format", "nftables", "--bogons"])
        .arg(&bogons)
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["type"], "summary");
    let prefixes: Vec<&str> = json["prefixes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|prefix| prefix.as_str().unwrap())
        .collect();
    assert!(prefixes.contains(&"100.64.0.0/10") && prefixes.contains(&"127.0.0.0/8"));
    assert!(
        json["text"]
            .as_str()
            .unwrap()
            .contains("100.64.0.0/10, # bogon")
    );

    std::fs::write(&bogons, "100.64.0.0/40\n").unwrap();
    let output = acl(&["--format", "nftables", "--bogons", bogons.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    let output = acl(&["--format", "pf"]);
    assert_eq!(output.status.code(), Some(2));
}

/// The kernel's own parser accepts the nftables ruleset (with an overlapping bogon list too).
#[test]
fn nft_accepts_the_ruleset() {
    if !is_root() {
        eprintln!("skipping: `nft -c` needs root (CAP_NET_ADMIN)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let bogons = dir.path().join("bogons.txt");
    std::fs::write(&bogons, "127.0.0.0/16\n100.64.0.0/10\n::1/128\n").unwrap();
    for extra in [vec![], vec!["--interface", "eth0"]] {
        let mut args = vec!["--format", "nftables", "--bogons", bogons.to_str().unwrap()];
        args.extend(extra);
        let rules = dir.path().join("rules.nft");
        std::fs::write(&rules, text(&acl(&args))).unwrap();
        let check = std::process::Command::new("nft")
            .arg("-c")
            .arg("-f")
            .arg(&rules)
            .output()
            .unwrap();
        assert!(
            check.status.success(),
            "nft -c rejected the ruleset: {}",
            String::from_utf8_lossy(&check.stderr)
        );
    }
}

/// Issue 11 item 9: in a namespace whose veth interface holds 192.0.2.5/24 (TEST-NET-1) with
/// a gateway at 192.0.2.1, the nftables filter must not drop 192.0.2.0/24 as a bogon source:
/// that would cut the host off from its own subnet. The prefix is left out and warned about
/// (and listed in the JSON `conflicts`); `--keep-conflicting` keeps it; the filter still loads.
#[test]
fn a_filter_never_drops_the_subnet_this_host_sits_in() {
    let Some(netns) = support::Netns::create("lsacl", "subnet") else {
        return;
    };
    netns.exec("ip", &["link", "set", "lo", "up"]);
    // A veth pair inside the namespace: veth0 on TEST-NET-1, its peer on 10.9.0.0/24.
    netns.exec(
        "ip",
        &[
            "link", "add", "veth0", "type", "veth", "peer", "name", "veth1",
        ],
    );
    netns.exec("ip", &["addr", "add", "192.0.2.5/24", "dev", "veth0"]);
    netns.exec("ip", &["addr", "add", "10.9.0.1/24", "dev", "veth1"]);
    netns.exec("ip", &["link", "set", "veth0", "up"]);
    netns.exec("ip", &["link", "set", "veth1", "up"]);
    netns.exec("ip", &["route", "add", "default", "via", "192.0.2.1"]);
    let binary = assert_cmd::cargo::cargo_bin("loopscope");
    let run = |args: &[&str]| {
        let output = netns.command(&binary).args(args).output().unwrap();
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output
    };

    let output = run(&["--json", "acl", "--format", "nftables"]);
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let text = json["text"].as_str().unwrap();
    assert!(!text.contains("192.0.2.0/24"), "{text}");
    assert!(
        text.contains("198.51.100.0/24"),
        "other bogons stay: {text}"
    );
    let conflicts = json["conflicts"].as_array().unwrap();
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    assert_eq!(conflicts[0]["prefix"], "192.0.2.0/24");
    assert_eq!(conflicts[0]["interface"], "veth0");
    assert_eq!(conflicts[0]["kept"], false);
    assert!(
        ["192.0.2.5", "192.0.2.1"].contains(&conflicts[0]["address"].as_str().unwrap()),
        "{conflicts:?}"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with("loopscope: warning: 192.0.2.0/24") && stderr.contains("left out"),
        "{stderr}"
    );

    // The human output is the ruleset itself: no warning inside it, and nft accepts it.
    let output = run(&["acl", "--format", "nftables"]);
    let rules = String::from_utf8(output.stdout).unwrap();
    assert!(!rules.contains("warning") && !rules.contains("192.0.2.0/24"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rules.nft");
    std::fs::write(&path, &rules).unwrap();
    netns.exec("nft", &["-f", path.to_str().unwrap()]);

    // Filtering only veth1, whose subnet is not a bogon, keeps TEST-NET-1.
    let output = run(&["acl", "--format", "iptables", "--interface", "veth1"]);
    assert!(String::from_utf8_lossy(&output.stdout).contains("-s 192.0.2.0/24 "));
    assert!(output.stderr.is_empty());

    let output = run(&[
        "--json",
        "acl",
        "--format",
        "iptables",
        "--keep-conflicting",
    ]);
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(json["text"].as_str().unwrap().contains("-s 192.0.2.0/24 "));
    assert_eq!(json["conflicts"][0]["kept"], true);
    assert!(String::from_utf8_lossy(&output.stderr).contains("kept"));

    // A router's filter is not this host's: no check.
    let output = run(&["acl", "--format", "junos"]);
    assert!(String::from_utf8_lossy(&output.stdout).contains("192.0.2.0/24;"));
}

/// Names that would reach the shell script or the nft file as code are refused with exit 2.
#[test]
fn injected_names_are_refused() {
    for args in [
        vec!["--format", "iptables", "--name", "x; reboot"],
        vec!["--format", "nftables", "--interface", "eth0\" accept; #"],
        vec!["--format", "iptables", "--interface=-j ACCEPT"],
    ] {
        let output = acl(&args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(output.stdout.is_empty());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.starts_with("loopscope: error:"), "{stderr}");
    }
}
