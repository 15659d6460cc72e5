//! NetFlow v5/v9 and IPFIX datagrams, with template state carried across datagrams: the input
//! is a sequence of datagrams (a 2-byte length before each) from a few exporters, so a template
//! sent in one datagram shapes how the next is read.
//!
//! One scanner serves every input and is reset before each: a new scanner allocates about
//! 1 MB of parser tables, which held this target to ~900 executions a second.
#![no_main]

use std::cell::RefCell;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use libfuzzer_sys::fuzz_target;
use loopscope_fuzz as _;
use loopscope_capture::flowexport::FlowScanner;
use loopscope_report::{Format, Printer};

thread_local! {
    static SCANNER: RefCell<FlowScanner<std::io::Sink>> =
        RefCell::new(FlowScanner::new(Printer::new(Format::Json, std::io::sink())));
}

fuzz_target!(|data: &[u8]| {
    SCANNER.with_borrow_mut(|scanner| {
        scanner.reset();
        let mut rest = data;
        let mut time_ns = 0u64;
        while let [selector, high, low, tail @ ..] = rest {
            let length = usize::from(u16::from_be_bytes([*high, *low])).min(tail.len());
            let (datagram, after) = tail.split_at(length);
            let exporter = SocketAddr::new(
                IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)),
                2055 + u16::from(*selector % 4),
            );
            time_ns += 1_000_000;
            scanner.datagram(exporter, time_ns, datagram);
            rest = after;
        }
        assert!(
            scanner.parser_sources() <= 8,
            "more parser scopes than exporters and domains could make"
        );
    });
});
