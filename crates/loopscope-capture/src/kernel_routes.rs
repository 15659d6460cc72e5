//! The kernel's routing tables, from `loopscope-sys`'s rtnetlink dump: every table (local,
//! main and policy tables), IPv4 and IPv6, with interface indices named from the same
//! namespace's interface dump. The same dump gives the host's own addresses (the `local`
//! routes) and its gateways, which `acl` must not filter away.

use std::collections::HashMap;
use std::net::IpAddr;

use loopscope_addr::Prefix;
use loopscope_sys::{NetlinkError, RouteKind as KernelRouteKind, RouteSocket};

use crate::CaptureError;
use crate::acl::{HostAddress, HostRole};
use crate::urpf::{Route, RouteKind, RouteTable};

fn netlink_error(error: NetlinkError) -> CaptureError {
    match error {
        NetlinkError::Open(source) | NetlinkError::Io(source) => CaptureError::Io {
            context: "netlink route dump".into(),
            source,
        },
        other => CaptureError::Routes(format!("netlink route dump: {other}")),
    }
}

/// Every route of both families in every table, and the names of the interfaces.
fn dump() -> Result<(Vec<loopscope_sys::Route>, HashMap<u32, String>), CaptureError> {
    let mut socket = RouteSocket::open().map_err(netlink_error)?;
    let names = socket
        .interfaces()
        .map_err(netlink_error)?
        .into_iter()
        .map(|interface| (interface.index, interface.name))
        .collect();
    Ok((socket.routes().map_err(netlink_error)?, names))
}

fn name_of(names: &HashMap<u32, String>, index: u32) -> String {
    names
        .get(&index)
        .cloned()
        .unwrap_or_else(|| format!("ifindex{index}"))
}

/// Reads every IPv4 and IPv6 route of every table.
pub fn kernel_routes() -> Result<RouteTable, CaptureError> {
    let (routes, names) = dump()?;
    Ok(RouteTable::new(
        routes
            .iter()
            .filter_map(|route| convert(route, &names))
            .collect(),
    ))
}

/// The host's own addresses (every `local` route but those on loopback interfaces) and the
/// gateways its routes go through, each with its interface.
pub fn host_addresses() -> Result<Vec<HostAddress>, CaptureError> {
    let (routes, names) = dump()?;
    let mut found: Vec<HostAddress> = Vec::new();
    for route in routes {
        let Some(&index) = route.output_interfaces.first() else {
            continue;
        };
        let candidate = match (route.kind, route.destination, route.gateway) {
            (KernelRouteKind::Local, Some(address), _) if !loopscope_addr::is_loopback(address) => {
                (address, HostRole::Address)
            }
            (_, _, Some(address)) => (address, HostRole::Gateway),
            _ => continue,
        };
        let entry = HostAddress {
            address: candidate.0,
            interface: name_of(&names, index),
            role: candidate.1,
        };
        if entry.interface != "lo" && !found.contains(&entry) {
            found.push(entry);
        }
    }
    Ok(found)
}

fn convert(route: &loopscope_sys::Route, names: &HashMap<u32, String>) -> Option<Route> {
    // No RTA_DST: the default route of the family.
    let destination: IpAddr = route.destination_or_default();
    Some(Route {
        prefix: Prefix::new(destination, route.prefix_len).ok()?,
        interfaces: route
            .output_interfaces
            .iter()
            .map(|&index| name_of(names, index))
            .collect(),
        kind: if route.kind.is_null() {
            RouteKind::Null
        } else {
            RouteKind::Forward
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every Linux host has `local 127.0.0.1 dev lo` in its local table: strict uRPF therefore
    /// drops 127.0.0.1 arriving on any other interface, and passes it on lo.
    #[test]
    fn kernel_table_has_the_loopback_route() {
        let table = match kernel_routes() {
            Ok(table) => table,
            Err(error) => {
                eprintln!("skipping: no netlink route dump here ({error})");
                return;
            }
        };
        assert!(!table.is_empty());
        let loopback: IpAddr = "127.0.0.1".parse().unwrap();
        let on_lo = table.check(loopback, Some("lo"));
        assert!(!on_lo.any_drop(), "{on_lo:?}");
        let elsewhere = table.check(loopback, Some("loopscope-no-such-if"));
        assert!(elsewhere.drops(crate::urpf::UrpfMode::Strict));
    }
}
