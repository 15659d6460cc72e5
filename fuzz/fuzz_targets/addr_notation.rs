//! Address and URL notations: the multi-parser reading, the literal fast path (which must agree
//! with std's parser wherever std accepts), and the full analysis under the default policy.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use libfuzzer_sys::fuzz_target;
use loopscope_fuzz as _;
use loopscope_addr::{analysis, notation, parse_dotted_quad, parse_ipv6_text};

fuzz_target!(|data: &[u8]| {
    if let Ok(std_v6) = std::str::from_utf8(data).unwrap_or("").parse::<Ipv6Addr>() {
        assert_eq!(parse_ipv6_text(data), Some(std_v6));
    }
    if let Ok(std_v4) = std::str::from_utf8(data).unwrap_or("").parse::<Ipv4Addr>() {
        assert_eq!(parse_dotted_quad(data), Some(std_v4));
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = notation::parse(text);
    let _ = notation::parse_strict(text).map(|address: IpAddr| address.is_loopback());
    let _ = analysis::analyze(text, &Default::default(), None);
});
