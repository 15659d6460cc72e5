//! Listening TCP sockets from /proc/net/tcp and tcp6 (of our network namespace, parsed by
//! `loopscope-sys`): just enough to tell which loopback ports answer on which family. The full listener inventory lives in
//! `loopscope-listeners`; the doctor needs only this and must not depend on it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use loopscope_sys::{ProcNetTable, TCP_LISTEN};

/// Ports reachable over 127.0.0.1 and over ::1.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct LoopbackListeners {
    /// Ports listening on 127.0.0.1 (or on a wildcard that covers it).
    pub ipv4: BTreeSet<u16>,
    /// Ports listening on ::1 (or on `::`).
    pub ipv6: BTreeSet<u16>,
    /// The addresses those ports are bound to (`127.0.0.1`, `0.0.0.0`, `::`...).
    pub bound: BTreeMap<u16, BTreeSet<IpAddr>>,
}

/// Every TCP socket listening on a loopback or wildcard address, by the family that reaches
/// it.
pub(crate) fn loopback_listeners() -> LoopbackListeners {
    let mut found = LoopbackListeners::default();
    for table in [ProcNetTable::Tcp, ProcNetTable::Tcp6] {
        let Ok(text) = table.read() else {
            continue;
        };
        let listening = text
            .parse()
            .sockets
            .into_iter()
            .filter(|socket| socket.state == TCP_LISTEN);
        for socket in listening {
            let (address, port) = (socket.local_address, socket.local_port);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Listeners of our own, on each kind of address, land in the right family.
    #[test]
    fn own_listeners_are_found_by_family() {
        let v4 = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let v4_port = v4.local_addr().expect("addr").port();
        let v6 = std::net::TcpListener::bind("[::1]:0").ok();
        let found = loopback_listeners();
        assert!(found.ipv4.contains(&v4_port), "{found:?}");
        assert!(found.bound[&v4_port].contains(&IpAddr::from([127, 0, 0, 1])));
        if let Some(v6) = v6 {
            let v6_port = v6.local_addr().expect("addr").port();
            assert!(found.ipv6.contains(&v6_port), "{found:?}");
        }
        // A connected socket is not a listener.
        let client = std::net::TcpStream::connect(("127.0.0.1", v4_port)).expect("connect");
        let client_port = client.local_addr().expect("addr").port();
        assert!(!loopback_listeners().ipv4.contains(&client_port));
    }
}
