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
#![forbid(unsafe_code)]

pub mod analysis;
pub mod guard;
pub mod martian;
pub mod notation;
pub mod prefix;
pub mod registry;
pub mod verdict;

pub use prefix::Prefix;
pub use verdict::{AddressVerdict, Decision, Policy, SsrfReason, classify};

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Classifies a strict literal address (dotted-quad IPv4 or IPv6 text, as `std` parses it):
/// the allocation-free bulk path. Other notations go through [`analysis::analyze`].
#[inline]
pub fn classify_literal(text: &str) -> Option<AddressVerdict> {
    let bytes = text.as_bytes();
    // IPv6 text always has a ':' within its first five bytes; IPv4 never has one.
    let fast = if bytes.iter().take(5).any(|&b| b == b':') {
        parse_ipv6_text(bytes).map(IpAddr::V6)
    } else {
        parse_dotted_quad(bytes).map(IpAddr::V4)
    };
    fast.or_else(|| text.parse::<IpAddr>().ok()).map(classify)
}

const NOT_HEX: u8 = 0xff;

/// The value of each byte as a hex digit, or [`NOT_HEX`].
static HEX_VALUE: [u8; 256] = {
    let mut table = [NOT_HEX; 256];
    let mut byte = 0;
    while byte < 256 {
        table[byte] = match byte as u8 {
            c @ b'0'..=b'9' => c - b'0',
            c @ b'a'..=b'f' => c - b'a' + 10,
            c @ b'A'..=b'F' => c - b'A' + 10,
            _ => NOT_HEX,
        };
        byte += 1;
    }
    table
};

/// IPv6 text exactly as `std` accepts it (RFC 4291 §2.2: eight groups of 1-4 hex digits, one
/// `::` standing for at least one zero group, an optional strict dotted-quad tail; no zone), in
/// one pass. Hand-written for speed like [`parse_dotted_quad`]; `tests/properties.rs` checks it
/// against `std`.
pub fn parse_ipv6_text(text: &[u8]) -> Option<Ipv6Addr> {
    let n = text.len();
    if !(2..=45).contains(&n) {
        return None;
    }
    let mut groups = [0u16; 8];
    let mut count = 0usize;
    let mut gap: Option<usize> = None;
    let mut at = 0usize;
    if text[0] == b':' {
        if text[1] != b':' {
            return None;
        }
        gap = Some(0);
        at = 2;
        if at == n {
            return Some(Ipv6Addr::UNSPECIFIED);
        }
    }
    loop {
        let start = at;
        let mut value: u32 = 0;
        while at < n && at - start < 4 {
            // A table, not a match: random hex digits would mispredict digit-vs-letter branches.
            let digit = HEX_VALUE[usize::from(text[at])];
            if digit == NOT_HEX {
                break;
            }
            value = (value << 4) | u32::from(digit);
            at += 1;
        }
        if at == start {
            return None;
        }
        if at < n && text[at] == b'.' {
            // A dotted-quad tail fills the last two groups and ends the text.
            if count > 6 {
                return None;
            }
            let [a, b, c, d] = parse_dotted_quad(&text[start..])?.octets();
            groups[count] = u16::from_be_bytes([a, b]);
            groups[count + 1] = u16::from_be_bytes([c, d]);
            count += 2;
            break;
        }
        if count == 8 {
            return None;
        }
        groups[count] = value as u16;
        count += 1;
        if at == n {
            break;
        }
        if text[at] != b':' {
            return None;
        }
        at += 1;
        if at == n {
            return None;
        }
        if text[at] == b':' {
            if gap.is_some() {
                return None;
            }
            gap = Some(count);
            at += 1;
            if at == n {
                break;
            }
        }
    }
    match gap {
        None if count == 8 => {}
        None => return None,
        Some(_) if count >= 8 => return None,
        Some(position) => {
            let tail = count - position;
            groups.copy_within(position..count, 8 - tail);
            groups[position..8 - tail].fill(0);
        }
    }
    Some(Ipv6Addr::from(groups))
}

/// Strict dotted-quad IPv4, exactly what `std` accepts (four decimal parts 0-255, no leading
/// zeros, nothing else), in one pass over the bytes. Written by hand because `std`'s general
/// parser costs more than the whole classification; `tests/properties.rs` checks it against
/// `std` on arbitrary input.
#[inline]
pub fn parse_dotted_quad(text: &[u8]) -> Option<Ipv4Addr> {
    if text.len() < 7 || text.len() > 15 {
        return None;
    }
    let mut octets = [0u8; 4];
    let mut at = 0;
    for (index, octet) in octets.iter_mut().enumerate() {
        let start = at;
        let mut value: u32 = 0;
        while at < text.len() && at - start < 3 && text[at].is_ascii_digit() {
            value = value * 10 + u32::from(text[at] - b'0');
            at += 1;
        }
        let digits = at - start;
        if digits == 0 || value > 255 || (digits > 1 && text[start] == b'0') {
            return None;
        }
        *octet = value as u8;
        if index < 3 {
            if text.get(at) != Some(&b'.') {
                return None;
            }
            at += 1;
        }
    }
    (at == text.len()).then_some(Ipv4Addr::from(octets))
}

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
