//! The kernel's routing tables over rtnetlink (synchronous: one dump request, read to DONE).
//! Every table is dumped (local, main and policy tables), IPv4 and IPv6; interface indices are
//! named with `if_indextoname`. The same dump gives the host's own addresses (the `local`
//! routes) and its gateways, which `acl` must not filter away.

use std::collections::HashMap;
use std::net::IpAddr;

use loopscope_addr::Prefix;
use netlink_packet_core::{
    NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage, RouteType};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

use crate::CaptureError;
use crate::acl::{HostAddress, HostRole};
use crate::live::interface_name;
use crate::urpf::{Route, RouteKind, RouteTable};

fn io_error(context: &str, source: std::io::Error) -> CaptureError {
    CaptureError::Io {
        context: format!("netlink {context}"),
        source,
    }
}

/// Reads every IPv4 and IPv6 route of every table.
pub fn kernel_routes() -> Result<RouteTable, CaptureError> {
    let mut routes = Vec::new();
    let mut names = HashMap::new();
    for family in [AddressFamily::Inet, AddressFamily::Inet6] {
        dump(family, &mut |message| {
            if let Some(route) = convert(message, &mut names) {
                routes.push(route);
            }
        })?;
    }
    Ok(RouteTable::new(routes))
}

/// The host's own addresses (every `local` route but those on loopback interfaces) and the
/// gateways its routes go through, each with its interface.
pub fn host_addresses() -> Result<Vec<HostAddress>, CaptureError> {
    let mut found: Vec<HostAddress> = Vec::new();
    let mut names = HashMap::new();
    for family in [AddressFamily::Inet, AddressFamily::Inet6] {
        dump(family, &mut |message| {
            let mut destination = None;
            let mut gateway = None;
            let mut interface = None;
            for attribute in &message.attributes {
                match attribute {
                    RouteAttribute::Destination(address) => destination = ip_of(address),
                    RouteAttribute::Gateway(address) => gateway = ip_of(address),
                    RouteAttribute::Oif(index) => interface = Some(*index),
                    _ => {}
                }
            }
            let Some(index) = interface else {
                return;
            };
            let name = interface_name_cached(&mut names, index);
            let candidate = match (message.header.kind, destination, gateway) {
                (RouteType::Local, Some(address), _) if !loopscope_addr::is_loopback(address) => {
                    (address, HostRole::Address)
                }
                (_, _, Some(address)) => (address, HostRole::Gateway),
                _ => return,
            };
            let entry = HostAddress {
                address: candidate.0,
                interface: name,
                role: candidate.1,
            };
            if entry.interface != "lo" && !found.contains(&entry) {
                found.push(entry);
            }
        })?;
    }
    Ok(found)
}

fn ip_of(address: &RouteAddress) -> Option<IpAddr> {
    match address {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

fn interface_name_cached(names: &mut HashMap<u32, String>, index: u32) -> String {
    names
        .entry(index)
        .or_insert_with(|| interface_name(index).unwrap_or_else(|| format!("ifindex{index}")))
        .clone()
}

fn dump(family: AddressFamily, each: &mut dyn FnMut(&RouteMessage)) -> Result<(), CaptureError> {
    let mut socket = Socket::new(NETLINK_ROUTE).map_err(|e| io_error("socket", e))?;
    socket.bind_auto().map_err(|e| io_error("bind", e))?;
    socket
        .connect(&SocketAddr::new(0, 0))
        .map_err(|e| io_error("connect", e))?;
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    let mut request_message = RouteMessage::default();
    request_message.header.address_family = family;
    let mut request = NetlinkMessage::new(
        header,
        NetlinkPayload::from(RouteNetlinkMessage::GetRoute(request_message)),
    );
    request.finalize();
    let mut buffer = vec![0u8; request.buffer_len()];
    request.serialize(&mut buffer);
    socket.send(&buffer, 0).map_err(|e| io_error("send", e))?;

    let mut receive = vec![0u8; 1 << 16];
    loop {
        let size = socket
            .recv(&mut &mut receive[..], 0)
            .map_err(|e| io_error("recv", e))?;
        let mut offset = 0;
        while offset < size {
            let message =
                NetlinkMessage::<RouteNetlinkMessage>::deserialize(&receive[offset..size])
                    .map_err(|error| CaptureError::Routes(format!("netlink: {error}")))?;
            let length = message.header.length as usize;
            match message.payload {
                NetlinkPayload::Done(_) => return Ok(()),
                NetlinkPayload::Error(error) => {
                    return Err(CaptureError::Routes(format!(
                        "netlink route dump: {error:?}"
                    )));
                }
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewRoute(route)) => each(&route),
                _ => {}
            }
            if length == 0 {
                break;
            }
            offset += length;
        }
    }
}

fn convert(message: &RouteMessage, names: &mut HashMap<u32, String>) -> Option<Route> {
    let mut name = |index: u32| interface_name_cached(names, index);
    let mut prefix: Option<IpAddr> = None;
    let mut interfaces = Vec::new();
    for attribute in &message.attributes {
        match attribute {
            RouteAttribute::Destination(RouteAddress::Inet(v4)) => prefix = Some(IpAddr::V4(*v4)),
            RouteAttribute::Destination(RouteAddress::Inet6(v6)) => prefix = Some(IpAddr::V6(*v6)),
            RouteAttribute::Oif(index) => interfaces.push(name(*index)),
            RouteAttribute::MultiPath(hops) => {
                for hop in hops {
                    interfaces.push(name(hop.interface_index));
                }
            }
            _ => {}
        }
    }
    let prefix = match (prefix, message.header.address_family) {
        (Some(prefix), _) => prefix,
        // No RTA_DST: the default route of the family.
        (None, AddressFamily::Inet) => IpAddr::from([0u8; 4]),
        (None, AddressFamily::Inet6) => IpAddr::from([0u8; 16]),
        _ => return None,
    };
    let kind = match message.header.kind {
        RouteType::BlackHole | RouteType::Unreachable | RouteType::Prohibit | RouteType::Throw => {
            RouteKind::Null
        }
        _ => RouteKind::Forward,
    };
    Some(Route {
        prefix: Prefix::new(prefix, message.header.destination_prefix_length).ok()?,
        interfaces,
        kind,
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
