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
