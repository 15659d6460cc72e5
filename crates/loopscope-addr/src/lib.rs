//! Address intelligence for loopscope: what an address is, in every notation, and whether it is
//! safe to contact.
//!
//! - [`is_loopback`] and [`martian`]: fast, allocation-free per-packet predicates.
//! - [`registry`]: the IANA IPv4 and IPv6 Special-Purpose Address Registries, every row, as of
//!   [`registry::REGISTRY_SNAPSHOT`] (2026-07-18).
//! - [`notation`]: every way an address is written (inet_aton forms, WHATWG URL hosts, bracketed
//!   IPv6 with zones, whole URLs) and each parser's reading where they disagree.
//! - [`verdict`]: loopback, reaches-this-host, martian, globally reachable, embedded IPv4, and
//!   the SSRF decision under a [`Policy`].
//! - [`guard`]: resolves names (through a [`guard::Resolver`]), checks every answer and returns
//!   the vetted socket addresses to connect to.
//! - [`analysis`]: all of the above for one input, as one serialisable record.
//!
//! This crate is pure: no I/O except through the resolver trait of the guard.
pub mod analysis;
pub mod guard;
pub mod martian;
pub mod notation;
pub mod prefix;
pub mod registry;
pub mod verdict;

pub use prefix::Prefix;
pub use verdict::{Decision, Policy, SsrfReason, Verdict, classify};

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Is `ip` a loopback address: `127.0.0.0/8`, `::1`, or an IPv4-mapped loopback
/// `::ffff:127.0.0.0/104`?
///
/// Unlike `std`'s `Ipv6Addr::is_loopback`, the IPv4-mapped form counts: a dual-stack socket that
/// connects to `::ffff:127.0.0.1` talks to 127.0.0.1 (RFC 4291 §2.5.5.2, RFC 3493 §3.7).
///
/// The deprecated IPv4-*compatible* form `::127.0.0.1` (`::7f00:1`, RFC 4291 §2.5.5.1) is **not**
/// loopback: Linux gives it no special meaning (it is routed like any other IPv6 address and,
/// without a `sit` tunnel, is unreachable), so packets to it never reach `lo`. The classifier still
/// reports the embedded 127.0.0.1 and the SSRF policy denies it, because it is not globally
/// reachable and older stacks translated it.
#[inline]
pub fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_loopback_v4(v4),
        IpAddr::V6(v6) => is_loopback_v6(v6),
    }
}

#[inline]
fn is_loopback_v4(ip: Ipv4Addr) -> bool {
    ip.octets()[0] == 127
}

#[inline]
fn is_loopback_v6(ip: Ipv6Addr) -> bool {
    let bits = ip.to_bits();
    bits == 1 || (bits >> 24) == ((0xffff_u128 << 8) | 127)
}

/// The IPv4 address inside an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`), if it is one.
#[inline]
pub fn ipv4_mapped(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let bits = ip.to_bits();
    ((bits >> 32) == 0xffff).then(|| Ipv4Addr::from_bits(bits as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_forms() {
        // Written by hand from RFC 1122 §3.2.1.3 and RFC 4291 §2.5.3, §2.5.5.
        for yes in [
            "127.0.0.0",
            "127.0.0.1",
            "127.255.255.255",
            "127.1.2.3",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:127.255.255.255",
            "::ffff:7f00:0",
        ] {
            assert!(is_loopback(yes.parse().unwrap()), "{yes}");
        }
        for no in [
            "126.255.255.255",
            "128.0.0.0",
            "0.0.0.0",
            "::",
            "::2",
            "::ffff:126.255.255.255",
            "::ffff:128.0.0.0",
            "::127.0.0.1",
            "::fffe:127.0.0.1",
            "1::ffff:127.0.0.1",
            "64:ff9b::127.0.0.1",
        ] {
            assert!(!is_loopback(no.parse().unwrap()), "{no}");
        }
    }

    #[test]
    fn std_disagrees_on_mapped_loopback() {
        // The Rust std behaviour the issue names: `Ipv6Addr::is_loopback` says no.
        let mapped: Ipv6Addr = "::ffff:127.0.0.1".parse().unwrap();
        assert!(!mapped.is_loopback());
        assert!(is_loopback(IpAddr::V6(mapped)));
    }
}
