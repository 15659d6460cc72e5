//! The kernel's routing tables over rtnetlink (synchronous: one dump request, read to DONE).
//! Every table is dumped (local, main and policy tables), IPv4 and IPv6; interface indices are
//! named with `if_indextoname`.

use std::collections::HashMap;
use std::net::IpAddr;

use netlink_packet_core::{
    NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage, RouteType};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

use crate::CaptureError;
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
    for family in [AddressFamily::Inet, AddressFamily::Inet6] {
        dump(family, &mut routes)?;
    }
    Ok(RouteTable::new(routes))
}

fn dump(family: AddressFamily, routes: &mut Vec<Route>) -> Result<(), CaptureError> {
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

    let mut names: HashMap<u32, String> = HashMap::new();
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
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewRoute(route)) => {
                    if let Some(route) = convert(&route, &mut names) {
                        routes.push(route);
                    }
                }
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
    let mut name = |index: u32| {
        names
            .entry(index)
            .or_insert_with(|| interface_name(index).unwrap_or_else(|| format!("ifindex{index}")))
            .clone()
    };
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
        prefix,
        prefix_len: message.header.destination_prefix_length,
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
