//! Every notation family, and each library bypass the issue names, classified right. Expected
//! values are written by hand from the RFCs, glibc's inet_aton rules and the WHATWG URL Standard.

use std::net::{IpAddr, Ipv4Addr};

use loopscope_addr::analysis::analyze;
use loopscope_addr::notation::{self, Host, Notation, Parser};
use loopscope_addr::verdict::{EmbeddedKind, embedded_ipv4};
use loopscope_addr::{Decision, Policy, classify, is_loopback};

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn host_of(input: &str) -> Host {
    notation::parse(input).unwrap().host
}

fn reading(input: &str, parser: Parser) -> Option<Host> {
    notation::parse(input)
        .unwrap()
        .readings
        .into_iter()
        .find(|r| r.parser == parser)
        .and_then(|r| r.host)
}

fn v4(text: &str) -> Option<Host> {
    Some(Host::Ip(ip(text)))
}

#[test]
fn inet_aton_forms() {
    // glibc inet_aton(3): a.b.c.d, a.b.c (c 16 bits), a.b (b 24 bits), a (32 bits); 0x hex,
    // leading 0 octal.
    let cases: &[(&str, Option<Ipv4Addr>)] = &[
        ("127.1", Some(Ipv4Addr::new(127, 0, 0, 1))),
        ("127.0.1", Some(Ipv4Addr::new(127, 0, 0, 1))),
        ("2130706433", Some(Ipv4Addr::new(127, 0, 0, 1))),
        ("0x7f000001", Some(Ipv4Addr::new(127, 0, 0, 1))),
        ("0X7F000001", Some(Ipv4Addr::new(127, 0, 0, 1))),
        ("017700000001", Some(Ipv4Addr::new(127, 0, 0, 1))),
        ("0177.0.0.1", Some(Ipv4Addr::new(127, 0, 0, 1))),
        ("0x7f.0.0.0x1", Some(Ipv4Addr::new(127, 0, 0, 1))),
        ("0x7f.1", Some(Ipv4Addr::new(127, 0, 0, 1))),
        ("0177.0x0.00.1", Some(Ipv4Addr::new(127, 0, 0, 1))),
        ("10.0x10203", Some(Ipv4Addr::new(10, 1, 2, 3))),
        ("192.168.0x101", Some(Ipv4Addr::new(192, 168, 1, 1))),
        ("0x", Some(Ipv4Addr::new(0, 0, 0, 0))),
        ("0", Some(Ipv4Addr::new(0, 0, 0, 0))),
        ("4294967295", Some(Ipv4Addr::new(255, 255, 255, 255))),
        (
            "127.0.0.1 trailing words",
            Some(Ipv4Addr::new(127, 0, 0, 1)),
        ),
        ("4294967296", None),
        ("08.0.0.1", None),
        ("256.0.0.1", None),
        ("1.2.3.4.5", None),
        ("127.0.0.1.", None),
        ("127..1", None),
        ("1.2.65536", None),
        ("1.16777216", None),
        ("0x1g", None),
        ("", None),
        (" 127.0.0.1", None),
    ];
    for (text, want) in cases {
        assert_eq!(notation::parse_inet_aton(text), *want, "{text:?}");
    }
}

#[test]
fn netmask_octal_bypass_cve_2021_28918() {
    // npm netmask < 2.0.1 read 0177.0.0.1 as 177.0.0.1 (public); the OS connects to 127.0.0.1.
    let parsed = notation::parse("0177.0.0.1").unwrap();
    assert_eq!(parsed.notation, Notation::Ipv4InetAton);
    assert_eq!(parsed.host, Host::Ip(ip("127.0.0.1")));
    assert_eq!(reading("0177.0.0.1", Parser::Decimal), v4("177.0.0.1"));
    assert_eq!(reading("0177.0.0.1", Parser::Whatwg), v4("127.0.0.1"));
    assert_eq!(reading("0177.0.0.1", Parser::Strict), None);
    let analysis = analyze("0177.0.0.1", &Policy::default(), None).unwrap();
    assert!(analysis.loopback);
    assert_eq!(analysis.ssrf, Decision::Deny);
    assert!(analysis.reason.contains("loopback"), "{}", analysis.reason);
    assert!(analysis.reason.contains("177.0.0.1"), "{}", analysis.reason);
    // CVE-2021-29418: hex and mixed forms too.
    for input in ["0x7f.1", "0x7f000001", "127.1", "2130706433", "0177.1"] {
        let a = analyze(input, &Policy::default(), None).unwrap();
        assert!(a.loopback && a.ssrf == Decision::Deny, "{input}");
    }
    // A public address that only the decimal reader takes as private: denied as ambiguous.
    let a = analyze("010.8.8.8", &Policy::default(), None).unwrap();
    assert_eq!(a.address, Some(ip("8.8.8.8")));
    assert_eq!(a.ssrf, Decision::Deny);
    assert!(a.reason.contains("10.8.8.8"), "{}", a.reason);
}

#[test]
fn go_netip_ipv4_mapped_cve_2024_24790() {
    // Go's netip said ::ffff:127.0.0.1 was not loopback and ::ffff:10.0.0.1 not private.
    let policy = Policy::default();
    for (input, loopback) in [
        ("::ffff:127.0.0.1", true),
        ("[::ffff:7f00:1]", true),
        ("::ffff:10.0.0.1", false),
        ("::ffff:169.254.169.254", false),
        ("::ffff:0.0.0.0", false),
    ] {
        let a = analyze(input, &policy, None).unwrap();
        assert_eq!(a.loopback, loopback, "{input}");
        assert_eq!(a.ssrf, Decision::Deny, "{input}");
    }
    assert!(classify(ip("::ffff:0.0.0.0")).reaches_this_host);
    // Mapped public addresses reach the public IPv4 host: allowed.
    let a = analyze("::ffff:8.8.8.8", &policy, None).unwrap();
    assert_eq!(a.ssrf, Decision::Allow, "{}", a.reason);
    // And the private policy applies through the mapping.
    let private = Policy {
        allow_private: true,
        ..Policy::default()
    };
    assert_eq!(
        analyze("::ffff:10.0.0.1", &private, None).unwrap().ssrf,
        Decision::Allow
    );
}

#[test]
fn python_is_global_stale_rows_cve_2024_4032() {
    // Rows Python got wrong before the fix, with the registry's answer.
    for (input, global) in [
        ("192.0.0.1", false),
        ("192.0.0.9", true),
        ("192.0.0.10", true),
        ("192.0.0.170", false),
        ("198.18.0.1", false),
        ("240.0.0.1", false),
        ("0.1.2.3", false),
        ("2001:1::1", true),
        ("2001:1::2", true),
        ("2001:3::1", true),
        ("2001:4:112::1", true),
        ("2001:20::1", true),
        ("2001:2::1", false),
        ("2001:10::1", false),
        ("64:ff9b:1::1", false),
        ("100::1", false),
    ] {
        assert_eq!(classify(ip(input)).globally_reachable, global, "{input}");
    }
}

#[test]
fn rust_std_mapped_loopback() {
    let mapped: std::net::Ipv6Addr = "::ffff:127.0.0.1".parse().unwrap();
    assert!(!mapped.is_loopback(), "std changed: update the docs");
    assert!(is_loopback(IpAddr::V6(mapped)));
}

#[test]
fn new_registry_rows() {
    let doc = classify(ip("3fff::1"));
    assert_eq!(doc.entry.unwrap().name, "Documentation");
    assert!(!doc.globally_reachable);
    assert!(doc.martian_source.is_some());
    let srv6 = classify(ip("5f00:1::1"));
    assert_eq!(srv6.entry.unwrap().name, "Segment Routing (SRv6) SIDs");
    assert!(!srv6.globally_reachable);
    let dummy = classify(ip("100:0:0:1::1"));
    assert_eq!(dummy.entry.unwrap().name, "Dummy IPv6 Prefix");
    assert!(dummy.martian_source.is_none() && dummy.martian_destination.is_some());
    let nat64 = classify(ip("64:ff9b:1::8.8.8.8"));
    assert_eq!(nat64.entry.unwrap().rfc, "[RFC8215]");
    assert!(!nat64.globally_reachable);
    for input in ["3fff::1", "5f00::1", "100:0:0:1::1", "64:ff9b:1::1"] {
        let a = analyze(input, &Policy::default(), None).unwrap();
        assert_eq!(a.ssrf, Decision::Deny, "{input}");
    }
}

#[test]
fn embedded_ipv4_forms() {
    let one = |text: &str| -> Vec<(EmbeddedKind, Ipv4Addr, Option<u16>)> {
        let IpAddr::V6(v6) = ip(text) else { panic!() };
        embedded_ipv4(v6)
            .iter()
            .map(|e| (e.kind, e.ipv4, e.port))
            .collect()
    };
    let a = |s: &str| s.parse::<Ipv4Addr>().unwrap();
    assert_eq!(
        one("::ffff:1.2.3.4"),
        [(EmbeddedKind::Ipv4Mapped, a("1.2.3.4"), None)]
    );
    assert_eq!(
        one("::127.0.0.1"),
        [(EmbeddedKind::Ipv4Compatible, a("127.0.0.1"), None)]
    );
    assert_eq!(
        one("64:ff9b::c000:221"),
        [(EmbeddedKind::Nat64, a("192.0.2.33"), None)]
    );
    // RFC 6052 §2.4 example table: 192.0.2.33 under a /48 prefix 2001:db8:122::/48 is
    // 2001:db8:122:c000:2:2100::; the same layout under 64:ff9b:1::/48:
    assert_eq!(
        one("64:ff9b:1:c000:2:2100::"),
        [
            (EmbeddedKind::Nat64Local96, a("0.0.0.0"), None),
            (EmbeddedKind::Nat64Local48, a("192.0.2.33"), None)
        ]
    );
    assert_eq!(
        one("2002:c000:221::1"),
        [(EmbeddedKind::SixToFour, a("192.0.2.33"), None)]
    );
    // RFC 4380 §4 example: server 65.54.227.120, client 192.0.2.45 port 40000.
    assert_eq!(
        one("2001:0:4136:e378:8000:63bf:3fff:fdd2"),
        [
            (EmbeddedKind::TeredoServer, a("65.54.227.120"), None),
            (EmbeddedKind::TeredoClient, a("192.0.2.45"), Some(40000))
        ]
    );
    assert!(one("2606:4700::1").is_empty());
    assert!(one("::1").is_empty());
    // ::127.0.0.1 is not loopback on Linux, but is denied: its embedded address is.
    assert!(!is_loopback(ip("::127.0.0.1")));
    let a = analyze("::127.0.0.1", &Policy::default(), None).unwrap();
    assert_eq!(a.ssrf, Decision::Deny);
    assert!(a.embedded[0].loopback);
    // A NAT64 address of a loopback target: the prefix is global, the target is not.
    let n = analyze("64:ff9b::7f00:1", &Policy::default(), None).unwrap();
    assert_eq!(n.ssrf, Decision::Deny);
    assert!(n.reason.contains("127.0.0.1"), "{}", n.reason);
}

#[test]
fn whatwg_hosts() {
    let l = v4("127.0.0.1");
    // Fullwidth and enclosed digits fold to ASCII under IDNA (UTS #46), then IPv4 parsing.
    assert_eq!(Some(host_of("１２７.０.０.１")), l);
    assert_eq!(Some(host_of("http://①②⑦.⓪.⓪.①/")), l);
    assert_eq!(Some(host_of("127.0.0.1.")), l);
    assert_eq!(
        notation::parse("127.0.0.1.").unwrap().notation,
        Notation::UrlHost
    );
    assert_eq!(Some(host_of("http://0x7f.1/")), l);
    assert_eq!(Some(host_of("http://127.0.0.%31/")), l);
    assert_eq!(Some(host_of("http://2130706433/")), l);
    assert_eq!(host_of("http://ⓛⓞⓒⓐⓛⓗⓞⓢⓣ/"), Host::Name("localhost".into()));
    assert_eq!(
        host_of("http://LOCALHOST./"),
        Host::Name("localhost.".into())
    );
    assert_eq!(
        host_of("http://bücher.example/"),
        Host::Name("xn--bcher-kva.example".into())
    );
}

#[test]
fn localhost_names_rfc_6761() {
    for name in [
        "localhost",
        "localhost.",
        "LocalHost",
        "a.b.localhost",
        "x.localhost.",
    ] {
        assert!(notation::is_localhost_name(name), "{name}");
        let a = analyze(name, &Policy::default(), None).unwrap();
        assert!(a.loopback && a.loopback_by_name, "{name}");
        assert_eq!(a.ssrf, Decision::Deny);
        assert_eq!(a.answers.len(), 2);
    }
    for name in [
        "localhost.example",
        "notlocalhost",
        "localhost.com",
        "xlocalhost",
    ] {
        assert!(!notation::is_localhost_name(name), "{name}");
    }
}

#[test]
fn bracketed_ipv6_and_zones() {
    let p = notation::parse("[::1]:8080").unwrap();
    assert_eq!(
        (p.notation, p.host, p.port),
        (Notation::Ipv6Bracketed, Host::Ip(ip("::1")), Some(8080))
    );
    let p = notation::parse("fe80::1%eth0").unwrap();
    assert_eq!(
        (p.notation, p.zone.as_deref()),
        (Notation::Ipv6Zone, Some("eth0"))
    );
    let p = notation::parse("[fe80::1%25eth0]:443").unwrap();
    assert_eq!((p.zone.as_deref(), p.port), (Some("eth0"), Some(443)));
    let p = notation::parse("http://[fe80::1%25lo]:8080/x").unwrap();
    assert_eq!(
        (p.notation, p.host, p.zone.as_deref(), p.port),
        (
            Notation::Url,
            Host::Ip(ip("fe80::1")),
            Some("lo"),
            Some(8080)
        )
    );
    // WHATWG rejects zone ids; that is reported as a reading.
    assert!(
        p.readings
            .iter()
            .any(|r| r.parser == Parser::Whatwg && r.host.is_none())
    );
    let p = notation::parse("http://[::ffff:127.0.0.1]/").unwrap();
    assert_eq!(p.host, Host::Ip(ip("::ffff:7f00:1")));
    assert!(notation::parse("[::1").is_err());
    assert!(notation::parse("[::1]x").is_err());
}

#[test]
fn whole_urls_userinfo_fragments_backslashes() {
    let p = notation::parse("http://user:pass@127.0.0.1:8080/x?y#z").unwrap();
    assert_eq!((p.host, p.port), (Host::Ip(ip("127.0.0.1")), Some(8080)));
    let p = notation::parse("https://example.com@10.0.0.1/").unwrap();
    assert_eq!(p.host, Host::Ip(ip("10.0.0.1")));
    // A fragment hides the @: both readers stop at '#'.
    assert_eq!(
        host_of("http://evil.test#@127.0.0.1/"),
        Host::Name("evil.test".into())
    );
    // WHATWG turns '\' into '/', RFC 3986 does not: they read different hosts.
    let p = notation::parse("http://127.0.0.1\\@evil.test/").unwrap();
    assert_eq!(p.host, Host::Ip(ip("127.0.0.1")));
    assert_eq!(
        p.readings
            .iter()
            .find(|r| r.parser == Parser::Rfc3986)
            .unwrap()
            .host,
        Some(Host::Name("evil.test".into()))
    );
    let p = notation::parse("http://evil.test\\@127.0.0.1/").unwrap();
    assert_eq!(p.host, Host::Name("evil.test".into()));
    assert_eq!(
        p.readings
            .iter()
            .find(|r| r.parser == Parser::Rfc3986)
            .unwrap()
            .host,
        v4("127.0.0.1")
    );
    // Disagreement denies even when the primary host would be allowed.
    let mut resolver = loopscope_addr::guard::StaticResolver::new();
    resolver.insert("evil.test", [ip("93.184.215.14")]);
    let a = analyze(
        "http://evil.test\\@127.0.0.1/",
        &Policy::default(),
        Some(&resolver),
    )
    .unwrap();
    assert_eq!(a.address, Some(ip("93.184.215.14")));
    assert_eq!(a.ssrf, Decision::Deny);
    assert!(a.reason.contains("rfc3986"), "{}", a.reason);
    let a = analyze("https://evil.test/", &Policy::default(), Some(&resolver)).unwrap();
    assert_eq!(a.ssrf, Decision::Allow, "{}", a.reason);
    assert_eq!(a.port, Some(443));
}

#[test]
fn unparsable_inputs_are_errors() {
    for input in ["", "   ", "a b c", "http://", "http://[::1/", "[zz::1]"] {
        assert!(notation::parse(input).is_err(), "{input:?}");
    }
}

#[test]
fn unspecified_reaches_this_host() {
    for input in [
        "0.0.0.0",
        "::",
        "0",
        "::ffff:0.0.0.0",
        "http://0.0.0.0:8080/",
    ] {
        let a = analyze(input, &Policy::default(), None).unwrap();
        assert!(a.reaches_this_host, "{input}");
        assert_eq!(a.ssrf, Decision::Deny, "{input}");
    }
    assert!(!classify(ip("0.0.0.1")).reaches_this_host);
}

#[test]
fn policy_options() {
    let private = Policy {
        allow_private: true,
        ..Policy::default()
    };
    let check = |policy: &Policy, input: &str| policy.check(&classify(ip(input))).0;
    assert_eq!(check(&private, "10.1.2.3"), Decision::Allow);
    assert_eq!(check(&private, "172.31.0.1"), Decision::Allow);
    assert_eq!(check(&private, "fd00::1"), Decision::Allow);
    // Private does not open link-local (cloud metadata), loopback or shared space.
    assert_eq!(check(&private, "169.254.169.254"), Decision::Deny);
    assert_eq!(check(&private, "127.0.0.1"), Decision::Deny);
    assert_eq!(check(&private, "100.64.0.1"), Decision::Deny);
    let named = Policy {
        allow: vec!["127.0.0.0/8".parse().unwrap()],
        deny: vec![
            "127.0.0.2/32".parse().unwrap(),
            "8.8.8.0/24".parse().unwrap(),
        ],
        ..Policy::default()
    };
    assert_eq!(check(&named, "127.0.0.1"), Decision::Allow);
    assert_eq!(check(&named, "::ffff:127.0.0.1"), Decision::Allow);
    assert_eq!(check(&named, "127.0.0.2"), Decision::Deny);
    assert_eq!(check(&named, "::ffff:127.0.0.2"), Decision::Deny);
    assert_eq!(check(&named, "8.8.8.8"), Decision::Deny);
    assert_eq!(check(&named, "8.8.4.4"), Decision::Allow);
    assert_eq!(check(&Policy::default(), "224.0.0.1"), Decision::Deny);
    assert_eq!(check(&Policy::default(), "4000::1"), Decision::Deny);
}

/// A bare input that is not an address must be a host name a resolver could look up (RFC 1123
/// §2.1): `not-an-address!!` is reported as neither, not sent to the resolver.
#[test]
fn bare_inputs_that_cannot_be_host_names_are_errors() {
    use loopscope_addr::notation::{NotationError, parse};
    for bad in ["not-an-address!!", "a..b", "evil$(id).test"] {
        assert!(
            matches!(parse(bad), Err(NotationError::NotHostName { .. })),
            "{bad}: {:?}",
            parse(bad)
        );
    }
    let long_label = format!("{}.test", "a".repeat(64));
    assert!(parse(&long_label).is_err());
    assert!(parse("x!:80").is_err());
    for good in [
        "example.com",
        "EXAMPLE.com.",
        "_dmarc.example.com",
        "münchen.de",
        "localhost",
        "host-1.example:8080",
    ] {
        assert!(parse(good).is_ok(), "{good}: {:?}", parse(good));
    }
}
