//! Every row of the IANA special-purpose registries (snapshot 2026-07-18): its first address,
//! its last address and one just outside, each with the most specific row it must land in.
//! The expected blocks are written by hand from the registry text, not produced by the code.

use std::net::IpAddr;

use loopscope_addr::classify;
use loopscope_addr::registry::{self, IPV4_SPECIAL, IPV6_SPECIAL};

/// (address, block of the most specific row with attributes, or None for ordinary space)
const CASES: &[(&str, Option<&str>)] = &[
    // 0.0.0.0/8 and 0.0.0.0/32
    ("0.0.0.0", Some("0.0.0.0/32")),
    ("0.0.0.1", Some("0.0.0.0/8")),
    ("0.255.255.255", Some("0.0.0.0/8")),
    ("1.0.0.0", None),
    // 10.0.0.0/8
    ("10.0.0.0", Some("10.0.0.0/8")),
    ("10.255.255.255", Some("10.0.0.0/8")),
    ("9.255.255.255", None),
    ("11.0.0.0", None),
    // 100.64.0.0/10
    ("100.64.0.0", Some("100.64.0.0/10")),
    ("100.127.255.255", Some("100.64.0.0/10")),
    ("100.63.255.255", None),
    ("100.128.0.0", None),
    // 127.0.0.0/8
    ("127.0.0.0", Some("127.0.0.0/8")),
    ("127.255.255.255", Some("127.0.0.0/8")),
    ("126.255.255.255", None),
    ("128.0.0.0", None),
    // 169.254.0.0/16
    ("169.254.0.0", Some("169.254.0.0/16")),
    ("169.254.255.255", Some("169.254.0.0/16")),
    ("169.253.255.255", None),
    ("169.255.0.0", None),
    // 172.16.0.0/12
    ("172.16.0.0", Some("172.16.0.0/12")),
    ("172.31.255.255", Some("172.16.0.0/12")),
    ("172.15.255.255", None),
    ("172.32.0.0", None),
    // 192.0.0.0/24 and its more specific rows
    ("192.0.0.0", Some("192.0.0.0/29")),
    ("192.0.0.7", Some("192.0.0.0/29")),
    ("192.0.0.8", Some("192.0.0.8/32")),
    ("192.0.0.9", Some("192.0.0.9/32")),
    ("192.0.0.10", Some("192.0.0.10/32")),
    ("192.0.0.11", Some("192.0.0.0/24")),
    ("192.0.0.169", Some("192.0.0.0/24")),
    ("192.0.0.170", Some("192.0.0.170/32")),
    ("192.0.0.171", Some("192.0.0.171/32")),
    ("192.0.0.172", Some("192.0.0.0/24")),
    ("192.0.0.255", Some("192.0.0.0/24")),
    ("191.255.255.255", None),
    ("192.0.1.0", None),
    // 192.0.2.0/24
    ("192.0.2.0", Some("192.0.2.0/24")),
    ("192.0.2.255", Some("192.0.2.0/24")),
    ("192.0.1.255", None),
    ("192.0.3.0", None),
    // 192.31.196.0/24
    ("192.31.196.0", Some("192.31.196.0/24")),
    ("192.31.196.255", Some("192.31.196.0/24")),
    ("192.31.195.255", None),
    ("192.31.197.0", None),
    // 192.52.193.0/24
    ("192.52.193.0", Some("192.52.193.0/24")),
    ("192.52.193.255", Some("192.52.193.0/24")),
    ("192.52.192.255", None),
    ("192.52.194.0", None),
    // 192.88.99.0/24 (deprecated: no attributes, so no row applies) and 192.88.99.2/32
    ("192.88.99.0", None),
    ("192.88.99.1", None),
    ("192.88.99.2", Some("192.88.99.2/32")),
    ("192.88.99.3", None),
    ("192.88.99.255", None),
    // 192.168.0.0/16
    ("192.168.0.0", Some("192.168.0.0/16")),
    ("192.168.255.255", Some("192.168.0.0/16")),
    ("192.167.255.255", None),
    ("192.169.0.0", None),
    // 192.175.48.0/24
    ("192.175.48.0", Some("192.175.48.0/24")),
    ("192.175.48.255", Some("192.175.48.0/24")),
    ("192.175.47.255", None),
    ("192.175.49.0", None),
    // 198.18.0.0/15
    ("198.18.0.0", Some("198.18.0.0/15")),
    ("198.19.255.255", Some("198.18.0.0/15")),
    ("198.17.255.255", None),
    ("198.20.0.0", None),
    // 198.51.100.0/24
    ("198.51.100.0", Some("198.51.100.0/24")),
    ("198.51.100.255", Some("198.51.100.0/24")),
    ("198.51.99.255", None),
    ("198.51.101.0", None),
    // 203.0.113.0/24
    ("203.0.113.0", Some("203.0.113.0/24")),
    ("203.0.113.255", Some("203.0.113.0/24")),
    ("203.0.112.255", None),
    ("203.0.114.0", None),
    // 240.0.0.0/4, 255.255.255.255/32; below is multicast (not a special-purpose row)
    ("240.0.0.0", Some("240.0.0.0/4")),
    ("255.255.255.254", Some("240.0.0.0/4")),
    ("255.255.255.255", Some("255.255.255.255/32")),
    ("239.255.255.255", Some("224.0.0.0/4")),
    ("223.255.255.255", None),
    // ::1/128, ::/128, and the deprecated IPv4-compatible ::/96 around them
    ("::1", Some("::1/128")),
    ("::", Some("::/128")),
    ("::2", Some("::/96")),
    ("::255.255.255.255", Some("::/96")),
    ("::1:0:0", None),
    // ::ffff:0:0/96
    ("::ffff:0:0", Some("::ffff:0.0.0.0/96")),
    ("::ffff:255.255.255.255", Some("::ffff:0.0.0.0/96")),
    ("::fffe:ffff:ffff", None),
    ("::1:0:0:0", None),
    // 64:ff9b::/96
    ("64:ff9b::", Some("64:ff9b::/96")),
    ("64:ff9b::ffff:ffff", Some("64:ff9b::/96")),
    ("64:ff9b::1:0:0", None),
    ("64:ff9a:ffff:ffff:ffff:ffff:ffff:ffff", None),
    // 64:ff9b:1::/48
    ("64:ff9b:1::", Some("64:ff9b:1::/48")),
    ("64:ff9b:1:ffff:ffff:ffff:ffff:ffff", Some("64:ff9b:1::/48")),
    ("64:ff9b:0:ffff:ffff:ffff:ffff:ffff", None),
    ("64:ff9b:2::", None),
    // 100::/64 and 100:0:0:1::/64
    ("100::", Some("100::/64")),
    ("100::ffff:ffff:ffff:ffff", Some("100::/64")),
    ("ff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", None),
    ("100:0:0:1::", Some("100:0:0:1::/64")),
    ("100:0:0:1:ffff:ffff:ffff:ffff", Some("100:0:0:1::/64")),
    ("100:0:0:2::", None),
    // 2001::/23 and its rows
    ("2001::", Some("2001::/32")),
    ("2001:0:ffff:ffff:ffff:ffff:ffff:ffff", Some("2001::/32")),
    ("2001:1::", Some("2001::/23")),
    ("2001:1::1", Some("2001:1::1/128")),
    ("2001:1::2", Some("2001:1::2/128")),
    ("2001:1::3", Some("2001:1::3/128")),
    ("2001:1::4", Some("2001::/23")),
    ("2001:2::", Some("2001:2::/48")),
    ("2001:2:0:ffff:ffff:ffff:ffff:ffff", Some("2001:2::/48")),
    ("2001:2:1::", Some("2001::/23")),
    ("2001:3::", Some("2001:3::/32")),
    ("2001:3:ffff:ffff:ffff:ffff:ffff:ffff", Some("2001:3::/32")),
    ("2001:4::", Some("2001::/23")),
    ("2001:4:111:ffff:ffff:ffff:ffff:ffff", Some("2001::/23")),
    ("2001:4:112::", Some("2001:4:112::/48")),
    (
        "2001:4:112:ffff:ffff:ffff:ffff:ffff",
        Some("2001:4:112::/48"),
    ),
    ("2001:4:113::", Some("2001::/23")),
    // ORCHID 2001:10::/28 is deprecated: the /23 applies
    ("2001:10::", Some("2001::/23")),
    ("2001:1f:ffff:ffff:ffff:ffff:ffff:ffff", Some("2001::/23")),
    ("2001:20::", Some("2001:20::/28")),
    (
        "2001:2f:ffff:ffff:ffff:ffff:ffff:ffff",
        Some("2001:20::/28"),
    ),
    ("2001:30::", Some("2001:30::/28")),
    (
        "2001:3f:ffff:ffff:ffff:ffff:ffff:ffff",
        Some("2001:30::/28"),
    ),
    ("2001:40::", Some("2001::/23")),
    ("2001:1ff:ffff:ffff:ffff:ffff:ffff:ffff", Some("2001::/23")),
    ("2001:200::", None),
    ("2000:ffff:ffff:ffff:ffff:ffff:ffff:ffff", None),
    // 2001:db8::/32
    ("2001:db8::", Some("2001:db8::/32")),
    (
        "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff",
        Some("2001:db8::/32"),
    ),
    ("2001:db7:ffff:ffff:ffff:ffff:ffff:ffff", None),
    ("2001:db9::", None),
    // 2002::/16
    ("2002::", Some("2002::/16")),
    ("2002:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Some("2002::/16")),
    ("2003::", None),
    // 2620:4f:8000::/48
    ("2620:4f:8000::", Some("2620:4f:8000::/48")),
    (
        "2620:4f:8000:ffff:ffff:ffff:ffff:ffff",
        Some("2620:4f:8000::/48"),
    ),
    ("2620:4f:7fff:ffff:ffff:ffff:ffff:ffff", None),
    ("2620:4f:8001::", None),
    // 3fff::/20
    ("3fff::", Some("3fff::/20")),
    ("3fff:fff:ffff:ffff:ffff:ffff:ffff:ffff", Some("3fff::/20")),
    ("3ffe:ffff:ffff:ffff:ffff:ffff:ffff:ffff", None),
    ("3fff:1000::", None),
    // 5f00::/16
    ("5f00::", Some("5f00::/16")),
    ("5f00:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Some("5f00::/16")),
    ("5eff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", None),
    ("5f01::", None),
    // fc00::/7
    ("fc00::", Some("fc00::/7")),
    ("fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Some("fc00::/7")),
    ("fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", None),
    ("fe00::", None),
    // fe80::/10, then deprecated site-local fec0::/10 and multicast ff00::/8
    ("fe80::", Some("fe80::/10")),
    ("febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Some("fe80::/10")),
    ("fe7f:ffff:ffff:ffff:ffff:ffff:ffff:ffff", None),
    ("fec0::", Some("fec0::/10")),
    ("ff00::", Some("ff00::/8")),
];

#[test]
fn every_row_first_last_and_outside() {
    for (text, want) in CASES {
        let ip: IpAddr = text.parse().unwrap();
        let got = registry::lookup(ip).map(|e| e.block.to_string());
        assert_eq!(got.as_deref(), *want, "{text}");
    }
}

#[test]
fn every_row_is_exercised_by_the_cases() {
    let blocks: Vec<String> = CASES
        .iter()
        .filter_map(|(_, want)| want.map(str::to_string))
        .collect();
    for entry in IPV4_SPECIAL.iter().chain(&IPV6_SPECIAL) {
        if entry.deprecated() {
            // Deprecated rows are covered above by the addresses inside them.
            assert!(registry::deprecated_row(entry.block.first()).is_some());
            continue;
        }
        assert!(
            blocks.contains(&entry.block.to_string()),
            "no case lands in {}",
            entry.block
        );
    }
}

/// Globally reachable, by hand from the registry column (and the embedded address where the
/// registry says N/A or where RFC 6052 §3.1 forbids the NAT64 well-known prefix).
#[test]
fn globally_reachable_by_hand() {
    let cases: &[(&str, bool)] = &[
        ("8.8.8.8", true),
        ("192.0.0.9", true),
        ("192.0.0.10", true),
        ("192.0.0.8", false),
        ("192.0.0.1", false),
        ("192.31.196.1", true),
        ("192.175.48.1", true),
        ("192.88.99.2", false),
        ("100.64.0.1", false),
        ("198.18.0.1", false),
        ("224.0.0.1", false),
        ("255.255.255.255", false),
        ("2606:4700:4700::1111", true),
        ("2001:1::1", true),
        ("2001:1::3", true),
        ("2001:3::1", true),
        ("2001:4:112::1", true),
        ("2001:20::1", true),
        ("2001:30::1", true),
        ("2620:4f:8000::1", true),
        ("2001:2::1", false),
        ("2001:1::4", false),
        ("2001:10::1", false),
        ("64:ff9b::8.8.8.8", true),
        ("64:ff9b::127.0.0.1", false),
        ("64:ff9b::10.0.0.1", false),
        ("64:ff9b:1::8.8.8.8", false),
        ("2002:808:808::", true),
        ("2002:7f00:1::", false),
        ("2002:c0a8:101::", false),
        ("3fff::1", false),
        ("5f00::1", false),
        ("100:0:0:1::1", false),
        ("100::1", false),
        ("4000::1", false),
        ("fc00::1", false),
        ("fe80::1", false),
        ("ff0e::1", false),
        ("::ffff:8.8.8.8", false),
    ];
    for (text, want) in cases {
        let verdict = classify(text.parse().unwrap());
        assert_eq!(verdict.globally_reachable, *want, "{text}");
    }
}
