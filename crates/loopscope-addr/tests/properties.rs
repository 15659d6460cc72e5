//! Property tests: no panic on arbitrary input; format-then-parse round trips. (cargo-fuzz needs
//! nightly, which this project does not use; these proptests stand in for fuzz targets.)

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use loopscope_addr::analysis::analyze;
use loopscope_addr::notation::{self, Host};
use loopscope_addr::{Policy, Prefix, classify, martian};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn never_panics_on_strings(text in "\\PC{0,64}") {
        let _ = notation::parse(&text);
        let _ = notation::parse_inet_aton(&text);
        let _ = notation::parse_decimal_parts(&text);
        let _ = analyze(&text, &Policy::default(), None);
        let _ = text.parse::<Prefix>();
    }

    #[test]
    fn never_panics_on_address_like_strings(text in "[0-9a-fA-FxX.:%\\[\\]@/\\\\#?]{0,48}") {
        let _ = notation::parse(&text);
        let _ = analyze(&text, &Policy::default(), None);
        let _ = analyze(&format!("http://{text}/"), &Policy::default(), None);
    }

    #[test]
    fn never_panics_on_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = notation::parse(&text);
        let _ = analyze(&text, &Policy::default(), None);
    }

    #[test]
    fn every_address_classifies(bits in any::<u128>(), v4 in any::<u32>()) {
        for ip in [IpAddr::V6(Ipv6Addr::from_bits(bits)), IpAddr::V4(Ipv4Addr::from_bits(v4))] {
            let verdict = classify(ip);
            let _ = Policy::default().check(&verdict);
            let _ = martian::martian_source(ip);
        }
    }

    #[test]
    fn ipv4_text_round_trips(bits in any::<u32>()) {
        let ip = Ipv4Addr::from_bits(bits);
        let want = Host::Ip(IpAddr::V4(ip));
        prop_assert_eq!(notation::parse(&ip.to_string()).unwrap().host, want.clone());
        prop_assert_eq!(notation::parse(&format!("http://{ip}/")).unwrap().host, want.clone());
        // The inet_aton spellings of the same address, formatted independently.
        let [a, b, c, d] = ip.octets();
        for text in [
            format!("{bits}"),
            format!("0x{bits:x}"),
            format!("0{bits:o}"),
            format!("0{a:o}.0x{b:x}.{c}.0{d:o}"),
            format!("{a}.{}", u32::from_be_bytes([0, b, c, d])),
            format!("{a}.{b}.{}", u16::from_be_bytes([c, d])),
        ] {
            prop_assert_eq!(notation::parse_inet_aton(&text), Some(ip), "{}", text);
            prop_assert_eq!(notation::parse(&text).unwrap().host, want.clone(), "{}", text);
        }
    }

    #[test]
    fn ipv6_text_round_trips(bits in any::<u128>(), port in any::<u16>()) {
        let ip = Ipv6Addr::from_bits(bits);
        let want = Host::Ip(IpAddr::V6(ip));
        prop_assert_eq!(notation::parse(&ip.to_string()).unwrap().host, want.clone());
        let bracketed = notation::parse(&format!("[{ip}]:{port}")).unwrap();
        prop_assert_eq!(bracketed.host, want.clone());
        prop_assert_eq!(bracketed.port, Some(port));
        prop_assert_eq!(notation::parse(&format!("http://[{ip}]/")).unwrap().host, want);
    }

    #[test]
    fn prefix_text_round_trips(bits in any::<u128>(), len in 0u8..=128) {
        let prefix = Prefix::new(IpAddr::V6(Ipv6Addr::from_bits(bits)), len).unwrap();
        prop_assert_eq!(prefix.to_string().parse::<Prefix>().unwrap(), prefix);
        prop_assert!(prefix.contains(prefix.first()) && prefix.contains(prefix.last()));
    }
}
