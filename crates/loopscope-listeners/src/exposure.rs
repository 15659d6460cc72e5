//! The exposure verdict: pure, from a socket and the interface table.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::model::{Exposure, Family, RawSocket, is_loopback, is_wildcard, unmap};

/// A network interface, as the exposure verdict needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// Its name (`lo`, `eth0`).
    pub name: String,
    /// IFF_LOOPBACK: traffic on it never leaves the host.
    pub loopback: bool,
}

/// The interfaces of the namespace being audited.
#[derive(Debug, Clone, Default)]
pub struct Interfaces {
    /// Index -> interface.
    pub by_index: HashMap<u32, Interface>,
    /// Address -> the interface carrying it (IPv4-mapped addresses are stored unmapped).
    pub by_address: HashMap<IpAddr, String>,
}

impl Interfaces {
    /// From getifaddrs (addresses, flags) and if_nameindex (indexes), in the calling thread's
    /// network namespace.
    pub fn current() -> Result<Interfaces, nix::Error> {
        let mut interfaces = Interfaces::default();
        let mut loopback_names = std::collections::HashSet::new();
        for entry in nix::ifaddrs::getifaddrs()? {
            if entry
                .flags
                .contains(nix::net::if_::InterfaceFlags::IFF_LOOPBACK)
            {
                loopback_names.insert(entry.interface_name.clone());
            }
            let Some(address) = entry.address else {
                continue;
            };
            let ip = if let Some(v4) = address.as_sockaddr_in() {
                IpAddr::V4(v4.ip())
            } else if let Some(v6) = address.as_sockaddr_in6() {
                IpAddr::V6(v6.ip())
            } else {
                continue;
            };
            interfaces
                .by_address
                .entry(ip)
                .or_insert(entry.interface_name);
        }
        for pair in nix::net::if_::if_nameindex()?.iter() {
            let name = pair.name().to_string_lossy().into_owned();
            let loopback = loopback_names.contains(&name);
            interfaces
                .by_index
                .insert(pair.index(), Interface { name, loopback });
        }
        Ok(interfaces)
    }

    fn name_of_index(&self, index: u32) -> String {
        self.by_index
            .get(&index)
            .map(|interface| interface.name.clone())
            .unwrap_or_else(|| format!("if{index}"))
    }
}

/// What is concluded about one socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// How the socket is bound.
    pub exposure: Exposure,
    /// Reachable from outside this host (or namespace).
    pub exposed: bool,
    /// The IP versions that can reach it.
    pub reachable_families: Vec<Family>,
    /// The SO_BINDTODEVICE interface, by name.
    pub bound_interface: Option<String>,
    /// For a specific address: the interface that carries it.
    pub address_interface: Option<String>,
}

/// `default_v6only` is `net.ipv6.bindv6only`, the guess for `[::]` sockets whose V6ONLY the
/// source did not report (/proc/net).
pub fn judge(socket: &RawSocket, interfaces: &Interfaces, default_v6only: bool) -> Verdict {
    let address = unmap(socket.address);
    let reachable_families = match address {
        IpAddr::V4(_) => vec![Family::Ipv4],
        IpAddr::V6(v6) if v6.is_unspecified() => {
            if socket.v6only.unwrap_or(default_v6only) {
                vec![Family::Ipv6]
            } else {
                vec![Family::Ipv4, Family::Ipv6]
            }
        }
        IpAddr::V6(_) => vec![Family::Ipv6],
    };
    let bound_index = socket.bound_ifindex.filter(|&index| index != 0);
    let bound_interface = bound_index.map(|index| interfaces.name_of_index(index));
    let (exposure, exposed, address_interface) = if is_loopback(address) {
        (Exposure::LoopbackOnly, false, None)
    } else if let Some(index) = bound_index {
        // Unknown interface: assume the worst.
        let on_loopback = interfaces
            .by_index
            .get(&index)
            .is_some_and(|interface| interface.loopback);
        (Exposure::Interface, !on_loopback, None)
    } else if is_wildcard(address) {
        (Exposure::Wildcard, true, None)
    } else {
        (
            Exposure::Address,
            true,
            interfaces.by_address.get(&address).cloned(),
        )
    };
    Verdict {
        exposure,
        exposed,
        reachable_families,
        bound_interface,
        address_interface,
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;
    use crate::model::Protocol;

    fn socket(address: IpAddr, v6only: Option<bool>, bound: Option<u32>) -> RawSocket {
        RawSocket {
            protocol: Protocol::Tcp,
            family: if address.is_ipv4() {
                Family::Ipv4
            } else {
                Family::Ipv6
            },
            address,
            port: 8080,
            v6only,
            bound_ifindex: bound,
            uid: 0,
            inode: 1,
        }
    }

    fn host() -> Interfaces {
        let mut interfaces = Interfaces::default();
        interfaces.by_index.insert(
            1,
            Interface {
                name: "lo".into(),
                loopback: true,
            },
        );
        interfaces.by_index.insert(
            2,
            Interface {
                name: "eth0".into(),
                loopback: false,
            },
        );
        interfaces
            .by_address
            .insert(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)), "eth0".into());
        interfaces
    }

    fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(a, b, c, d))
    }

    #[test]
    fn every_127_address_and_mapped_loopback_is_loopback_only() {
        for address in [
            v4(127, 0, 0, 1),
            v4(127, 0, 0, 53),
            v4(127, 255, 255, 254),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
            IpAddr::V6(Ipv4Addr::new(127, 9, 9, 9).to_ipv6_mapped()),
        ] {
            let verdict = judge(&socket(address, Some(true), Some(0)), &host(), false);
            assert_eq!(verdict.exposure, Exposure::LoopbackOnly, "{address}");
            assert!(!verdict.exposed);
        }
        let mapped = judge(
            &socket(
                IpAddr::V6(Ipv4Addr::LOCALHOST.to_ipv6_mapped()),
                Some(false),
                Some(0),
            ),
            &host(),
            false,
        );
        assert_eq!(mapped.reachable_families, vec![Family::Ipv4]);
    }

    #[test]
    fn wildcards_are_exposed_and_v6only_decides_the_families() {
        let any4 = judge(&socket(v4(0, 0, 0, 0), None, Some(0)), &host(), false);
        assert_eq!((any4.exposure, any4.exposed), (Exposure::Wildcard, true));
        assert_eq!(any4.reachable_families, vec![Family::Ipv4]);

        let any6 = IpAddr::V6(Ipv6Addr::UNSPECIFIED);
        let dual = judge(&socket(any6, Some(false), Some(0)), &host(), true);
        assert_eq!(dual.reachable_families, vec![Family::Ipv4, Family::Ipv6]);
        let only6 = judge(&socket(any6, Some(true), Some(0)), &host(), false);
        assert_eq!(only6.reachable_families, vec![Family::Ipv6]);
        // Unknown V6ONLY (/proc fallback): the sysctl default decides.
        let guessed = judge(&socket(any6, None, None), &host(), false);
        assert_eq!(guessed.reachable_families, vec![Family::Ipv4, Family::Ipv6]);
        // ::ffff:0.0.0.0 is the IPv4 wildcard.
        let mapped_any = judge(
            &socket(
                IpAddr::V6(Ipv4Addr::UNSPECIFIED.to_ipv6_mapped()),
                Some(false),
                Some(0),
            ),
            &host(),
            false,
        );
        assert_eq!(mapped_any.exposure, Exposure::Wildcard);
        assert_eq!(mapped_any.reachable_families, vec![Family::Ipv4]);
    }

    #[test]
    fn specific_addresses_name_their_interface() {
        let verdict = judge(&socket(v4(192, 0, 2, 10), None, Some(0)), &host(), false);
        assert_eq!(verdict.exposure, Exposure::Address);
        assert!(verdict.exposed);
        assert_eq!(verdict.address_interface.as_deref(), Some("eth0"));
        let nonlocal = judge(&socket(v4(198, 51, 100, 7), None, Some(0)), &host(), false);
        assert_eq!(nonlocal.address_interface, None);
    }

    #[test]
    fn bound_to_a_device_is_exposed_unless_the_device_is_loopback() {
        let on_eth = judge(&socket(v4(0, 0, 0, 0), None, Some(2)), &host(), false);
        assert_eq!(on_eth.exposure, Exposure::Interface);
        assert!(on_eth.exposed);
        assert_eq!(on_eth.bound_interface.as_deref(), Some("eth0"));
        let on_lo = judge(&socket(v4(0, 0, 0, 0), None, Some(1)), &host(), false);
        assert_eq!(on_lo.exposure, Exposure::Interface);
        assert!(!on_lo.exposed);
        let unknown = judge(&socket(v4(0, 0, 0, 0), None, Some(99)), &host(), false);
        assert!(unknown.exposed);
        assert_eq!(unknown.bound_interface.as_deref(), Some("if99"));
    }
}
