//! Listening TCP sockets from /proc/net/tcp and tcp6 (of our network namespace): just enough
//! to tell which loopback ports answer on which family. The full listener inventory lives in
//! `loopscope-listeners`; the doctor needs only this and must not depend on it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Ports reachable over 127.0.0.1 and over ::1.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoopbackListeners {
    pub ipv4: BTreeSet<u16>,
    pub ipv6: BTreeSet<u16>,
    /// The addresses those ports are bound to (`127.0.0.1`, `0.0.0.0`, `::`...).
    pub bound: BTreeMap<u16, BTreeSet<IpAddr>>,
}

pub fn loopback_listeners() -> LoopbackListeners {
    let mut found = LoopbackListeners::default();
    for (path, v6) in [("/proc/net/tcp", false), ("/proc/net/tcp6", true)] {
        let Ok(text) = std::fs::read_to_string(path) else {
            continue;
        };
        for (address, port) in parse_listeners(&text, v6) {
            let reachable = match address {
                IpAddr::V4(ip) => ip.is_loopback() || ip.is_unspecified(),
                IpAddr::V6(ip) => {
                    ip.is_loopback()
                        || ip.is_unspecified()
                        || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
                }
            };
            if reachable {
                found.bound.entry(port).or_default().insert(address);
            }
            match address {
                IpAddr::V4(ip) if ip.is_loopback() || ip.is_unspecified() => {
                    found.ipv4.insert(port);
                }
                IpAddr::V6(ip) if ip.is_loopback() => {
                    found.ipv6.insert(port);
                }
                IpAddr::V6(ip) if ip.is_unspecified() => {
                    // [::] accepts ::1 and, unless IPV6_V6ONLY (not visible here), 127.0.0.1.
                    found.ipv6.insert(port);
                    found.ipv4.insert(port);
                }
                IpAddr::V6(ip) if ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()) => {
                    found.ipv4.insert(port);
                }
                _ => {}
            }
        }
    }
    found
}

/// Local address and port of every LISTEN (state 0A) row.
pub fn parse_listeners(text: &str, v6: bool) -> Vec<(IpAddr, u16)> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let local = fields.nth(1)?;
            let state = fields.nth(1)?;
            if state != "0A" {
                return None;
            }
            let (address, port) = local.split_once(':')?;
            let port = u16::from_str_radix(port, 16).ok()?;
            Some((parse_hex_address(address, v6)?, port))
        })
        .collect()
}

/// The kernel prints each 32-bit word of the (network-order) address as a native integer.
fn parse_hex_address(hex: &str, v6: bool) -> Option<IpAddr> {
    let words: Vec<u32> = (0..hex.len() / 8)
        .map(|index| u32::from_str_radix(hex.get(index * 8..index * 8 + 8)?, 16).ok())
        .collect::<Option<_>>()?;
    let bytes: Vec<u8> = words.iter().flat_map(|word| word.to_ne_bytes()).collect();
    match (v6, bytes.len()) {
        (false, 4) => Some(IpAddr::V4(Ipv4Addr::new(
            bytes[0], bytes[1], bytes[2], bytes[3],
        ))),
        (true, 16) => {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&bytes);
            Some(IpAddr::V6(Ipv6Addr::from(octets)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_endian = "little")]
    fn parses_kernel_rows() {
        // Rows as /proc/net/tcp prints them on x86-64 (little-endian words).
        let v4 = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:1538 00000000:0000 0A 00000000:00000000 00:00000000 00000000   999        0 1 1 0 100 0 0 10 0\n   1: 0100007F:0016 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0 100 0 0 10 0\n";
        assert_eq!(
            parse_listeners(v4, false),
            vec![(IpAddr::V4(Ipv4Addr::LOCALHOST), 5432)]
        );
        let v6 = "  sl  local_address                         remote_address                        st\n   0: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 3 1\n";
        assert_eq!(
            parse_listeners(v6, true),
            vec![(IpAddr::V6(Ipv6Addr::LOCALHOST), 8080)]
        );
        assert!(parse_listeners("header\ngarbage line\n  0: zz:zz 0 0A", false).is_empty());
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_proc_text_never_panics(text in "(?s).{0,400}") {
            let _ = parse_listeners(&text, false);
            let _ = parse_listeners(&text, true);
        }
    }
}
