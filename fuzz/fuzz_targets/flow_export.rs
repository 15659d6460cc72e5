//! NetFlow v5/v9 and IPFIX datagrams, with template state carried across datagrams: the input
//! is a sequence of datagrams (a 2-byte length before each) from a few exporters, so a template
//! sent in one datagram shapes how the next is read.
//!
//! One scanner serves every input and is reset before each: a new scanner allocates about
//! 1 MB of parser tables, which held this target to ~900 executions a second.
#![no_main]

use std::cell::RefCell;
use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use libfuzzer_sys::fuzz_target;
use loopscope_fuzz as _;
use loopscope_capture::flowexport::{FlowScanner, TemplateLimits};
use loopscope_report::{Format, Printer};

thread_local! {
    static SCANNER: RefCell<FlowScanner<std::io::Sink>> =
        RefCell::new(FlowScanner::new(Printer::new(Format::Json, std::io::sink())));
}

/// The scope a datagram names, read from its header by hand: version, then the v9 source id
/// (bytes 16..20, RFC 3954 section 5.1) or the IPFIX observation domain (bytes 12..16, RFC 7011
/// section 3.1); v5 and v7 have one scope per exporter.
fn scope_of(datagram: &[u8]) -> Option<(u16, u32)> {
    let word = |at: usize| -> Option<u32> {
        Some(u32::from_be_bytes(datagram.get(at..at + 4)?.try_into().ok()?))
    };
    match u16::from_be_bytes([*datagram.first()?, *datagram.get(1)?]) {
        version @ (5 | 7) => Some((version, 0)),
        9 => Some((9, word(16)?)),
        10 => Some((10, word(12)?)),
        _ => None,
    }
}

fuzz_target!(|data: &[u8]| {
    SCANNER.with_borrow_mut(|scanner| {
        scanner.reset();
        let mut rest = data;
        let mut time_ns = 0u64;
        let mut scopes_sent = HashSet::new();
        while let [selector, high, low, tail @ ..] = rest {
            let length = usize::from(u16::from_be_bytes([*high, *low])).min(tail.len());
            let (datagram, after) = tail.split_at(length);
            let exporter = SocketAddr::new(
                IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)),
                2055 + u16::from(*selector % 4),
            );
            if let Some(scope) = scope_of(datagram) {
                scopes_sent.insert((exporter, scope));
            }
            time_ns += 1_000_000;
            scanner.datagram(exporter, time_ns, datagram);
            rest = after;
        }
        // The parser keeps state per scope: an exporter's v5/v7 stream, and each v9 source id
        // or IPFIX observation domain it uses (chosen by the sender, so as many as it likes).
        // It never holds a scope that no datagram named, nor more than the scanner's bound
        // (plus the exporters' legacy streams) however many were named.
        let held = scanner.parser_sources();
        assert!(
            held <= scopes_sent.len(),
            "{held} parser scopes, {} named",
            scopes_sent.len()
        );
        assert!(held <= TemplateLimits::default().scopes + 4, "{held} parser scopes");
    });
});
