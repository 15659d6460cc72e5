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
    fn dotted_quad_fast_path_agrees_with_std(text in "[0-9.]{0,17}|[0-9]{0,4}\\.[0-9]{0,4}\\.[0-9]{0,4}\\.[0-9]{0,4}|[0-9a-f:.x ]{0,17}") {
        prop_assert_eq!(
            loopscope_addr::parse_dotted_quad(text.as_bytes()),
            text.parse::<Ipv4Addr>().ok(),
            "{:?}", text
        );
    }

    #[test]
    fn dotted_quad_fast_path_reads_every_address(bits in any::<u32>()) {
        let ip = Ipv4Addr::from_bits(bits);
        prop_assert_eq!(loopscope_addr::parse_dotted_quad(ip.to_string().as_bytes()), Some(ip));
        let verdict = loopscope_addr::classify_literal(&ip.to_string()).unwrap();
        prop_assert_eq!(verdict, classify(IpAddr::V4(ip)));
    }

    #[test]
    fn ipv6_fast_path_agrees_with_std(text in "[0-9a-fA-F:.]{0,45}|[0-9a-f]{0,5}(:[0-9a-f]{0,5}){1,9}(:[0-9]{1,3}(\\.[0-9]{1,3}){3})?") {
        prop_assert_eq!(
            loopscope_addr::parse_ipv6_text(text.as_bytes()),
            text.parse::<Ipv6Addr>().ok(),
            "{:?}", text
        );
    }

    #[test]
    fn ipv6_fast_path_reads_every_spelling(bits in any::<u128>(), zeros in any::<u128>(), cut in 0usize..8) {
        // Random groups with runs of zeros, so that `::` compression lands everywhere.
        let mut groups = Ipv6Addr::from_bits(bits).segments();
        for (index, group) in groups.iter_mut().enumerate() {
            if (zeros >> index) & 1 == 1 {
                *group = 0;
            }
        }
        let ip = Ipv6Addr::from(groups);
        let segments = ip.segments();
        let full = segments.iter().map(|g| format!("{g:04X}")).collect::<Vec<_>>().join(":");
        let short = segments.iter().map(|g| format!("{g:x}")).collect::<Vec<_>>().join(":");
        let [a, b, c, d] = ((ip.to_bits() as u32).to_be_bytes()).map(u32::from);
        let head = segments[..6].iter().map(|g| format!("{g:x}")).collect::<Vec<_>>().join(":");
        let dotted = format!("{head}:{a}.{b}.{c}.{d}");
        let mut compressed: Vec<String> = segments.iter().map(|g| format!("{g:x}")).collect();
        if segments[cut] == 0 {
            let end = (cut..8).take_while(|&i| segments[i] == 0).last().unwrap_or(cut);
            let left = compressed[..cut].join(":");
            let right = compressed[end + 1..].join(":");
            compressed = vec![format!("{left}::{right}")];
        }
        for text in [ip.to_string(), full, short, dotted, compressed.join(":")] {
            prop_assert_eq!(text.parse::<Ipv6Addr>().ok(), Some(ip), "std on {}", text);
            prop_assert_eq!(loopscope_addr::parse_ipv6_text(text.as_bytes()), Some(ip), "{}", text);
        }
        prop_assert_eq!(loopscope_addr::classify_literal(&ip.to_string()).unwrap(), classify(IpAddr::V6(ip)));
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
