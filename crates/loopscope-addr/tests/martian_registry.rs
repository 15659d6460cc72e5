//! The hand-coded martian predicates agree with the registry's Source and Destination columns at
//! the first and last address of every row, except where RFC 1812 / RFC 4291 are stricter than
//! the registry (listed here, each with its reason).

use std::net::IpAddr;

use loopscope_addr::martian::{martian_destination, martian_source};
use loopscope_addr::registry::{self, IPV4_SPECIAL, IPV6_SPECIAL, OTHER_BLOCKS};

/// Rows whose registry Source is True but which RFC 1812 §5.3.7 / RFC 4291 §2.5.2 still make
/// martian on the wire: "this network" may only be a source on the local link (DHCP), and `::`
/// must never be forwarded.
const STRICTER_SOURCE: &[&str] = &["0.0.0.0/8", "0.0.0.0/32", "::/128"];

#[test]
fn martian_predicates_follow_the_registry_columns() {
    for entry in IPV4_SPECIAL
        .iter()
        .chain(&IPV6_SPECIAL)
        .chain(&OTHER_BLOCKS)
    {
        if entry.deprecated() && entry.source.value().is_none() {
            continue;
        }
        for ip in [entry.block.first(), entry.block.last()] {
            // Judge by the most specific row at this address (a more specific row may override).
            let row = registry::lookup(ip).expect("inside a row");
            let block = row.block.to_string();
            let source_ok = row.source.value().unwrap_or(true);
            let destination_ok = row.destination.value().unwrap_or(true);
            let got_source = martian_source(ip).is_none();
            let got_destination = martian_destination(ip).is_none();
            if STRICTER_SOURCE.contains(&block.as_str()) {
                assert!(!got_source, "{ip} ({block}) should be a martian source");
            } else {
                assert_eq!(got_source, source_ok, "source {ip} ({block})");
            }
            // Multicast is a fine destination; only scopes 0 and 1 are dropped off the wire.
            let scope_exception =
                matches!(ip, IpAddr::V6(v6) if v6.segments()[0] & 0xff0e == 0xff00);
            if !scope_exception {
                assert_eq!(
                    got_destination, destination_ok,
                    "destination {ip} ({block})"
                );
            }
        }
    }
}
