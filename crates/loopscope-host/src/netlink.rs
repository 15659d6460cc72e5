//! What the kernel says about `lo`, its addresses and the local routing table, over rtnetlink.
//!
//! Messages are built and parsed by `netlink-packet-route`; the socket is `netlink-sys`, used
//! synchronously (one dump at a time, no runtime needed).

use std::io;
use std::net::IpAddr;
use std::time::Duration;

use netlink_packet_core::{
    NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteType,
};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

/// Why a netlink query failed.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("cannot open a netlink socket: {0}")]
    Open(io::Error),
    #[error("netlink I/O: {0}")]
    Io(io::Error),
    #[error("the kernel refused the netlink request: {0}")]
    Refused(io::Error),
    #[error("malformed netlink reply: {0}")]
    Decode(String),
}

/// One network interface as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    pub index: u32,
    pub name: String,
    pub up: bool,
    pub lower_up: bool,
    pub loopback: bool,
    pub mtu: Option<u32>,
}

/// One address on an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    pub index: u32,
    pub address: IpAddr,
    pub prefix_len: u8,
}

/// One route (only what the doctor looks at).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub table: u32,
    pub kind: RouteKind,
    pub destination: Option<IpAddr>,
    pub prefix_len: u8,
    pub output_index: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteKind {
    Local,
    Unicast,
    Broadcast,
    Other,
}

/// The `local` routing table's id (RT_TABLE_LOCAL).
pub const TABLE_LOCAL: u32 = 255;

/// A synchronous rtnetlink client.
pub struct Rtnetlink {
    socket: Socket,
    sequence: u32,
}

impl Rtnetlink {
    pub fn open() -> Result<Self, NetlinkError> {
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(NetlinkError::Open)?;
        socket.bind_auto().map_err(NetlinkError::Open)?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(NetlinkError::Open)?;
        set_receive_timeout(&socket, Duration::from_secs(2));
        Ok(Rtnetlink {
            socket,
            sequence: 0,
        })
    }

    pub fn interfaces(&mut self) -> Result<Vec<Interface>, NetlinkError> {
        let replies = self.dump(RouteNetlinkMessage::GetLink(LinkMessage::default()))?;
        Ok(replies
            .into_iter()
            .filter_map(|message| match message {
                RouteNetlinkMessage::NewLink(link) => Some(interface_from(&link)),
                _ => None,
            })
            .collect())
    }

    pub fn addresses(&mut self) -> Result<Vec<Address>, NetlinkError> {
        let replies = self.dump(RouteNetlinkMessage::GetAddress(AddressMessage::default()))?;
        Ok(replies
            .into_iter()
            .filter_map(|message| match message {
                RouteNetlinkMessage::NewAddress(address) => address_from(&address),
                _ => None,
            })
            .collect())
    }

    /// Every route of both families in every table.
    pub fn routes(&mut self) -> Result<Vec<Route>, NetlinkError> {
        let mut routes = Vec::new();
        for family in [
            netlink_packet_route::AddressFamily::Inet,
            netlink_packet_route::AddressFamily::Inet6,
        ] {
            let mut request = RouteMessage::default();
            request.header = RouteHeader {
                address_family: family,
                ..request.header
            };
            // A kernel without IPv6 answers the Inet6 dump with nothing (or an error): the
            // caller sees no IPv6 routes, which is the truth.
            let replies = match self.dump(RouteNetlinkMessage::GetRoute(request)) {
                Ok(replies) => replies,
                Err(NetlinkError::Refused(_))
                    if family == netlink_packet_route::AddressFamily::Inet6 =>
                {
                    Vec::new()
                }
                Err(error) => return Err(error),
            };
            routes.extend(replies.into_iter().filter_map(|message| match message {
                RouteNetlinkMessage::NewRoute(route) => Some(route_from(&route)),
                _ => None,
            }));
        }
        Ok(routes)
    }

    fn dump(
        &mut self,
        request: RouteNetlinkMessage,
    ) -> Result<Vec<RouteNetlinkMessage>, NetlinkError> {
        self.sequence = self.sequence.wrapping_add(1);
        let sequence = self.sequence;
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_DUMP;
        header.sequence_number = sequence;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(request));
        packet.finalize();
        let mut buffer = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut buffer);
        self.socket.send(&buffer, 0).map_err(NetlinkError::Io)?;

        let mut replies = Vec::new();
        let mut receive = vec![0u8; 64 * 1024];
        loop {
            let size = self
                .socket
                .recv(&mut &mut receive[..], 0)
                .map_err(NetlinkError::Io)?;
            if size == 0 {
                return Err(NetlinkError::Decode(
                    "the kernel closed the dump early".into(),
                ));
            }
            let mut offset = 0;
            while offset < size {
                let message =
                    NetlinkMessage::<RouteNetlinkMessage>::deserialize(&receive[offset..size])
                        .map_err(|error| NetlinkError::Decode(error.to_string()))?;
                let length = message.header.length as usize;
                if message.header.sequence_number == sequence {
                    match message.payload {
                        NetlinkPayload::Done(_) => return Ok(replies),
                        NetlinkPayload::Error(error) => {
                            if let Some(code) = error.code {
                                return Err(NetlinkError::Refused(io::Error::from_raw_os_error(
                                    -code.get(),
                                )));
                            }
                        }
                        NetlinkPayload::InnerMessage(inner) => replies.push(inner),
                        _ => {}
                    }
                }
                if length == 0 {
                    break;
                }
                // Messages are 4-byte aligned within a datagram.
                offset += (length + 3) & !3;
            }
        }
    }
}

fn set_receive_timeout(socket: &Socket, timeout: Duration) {
    use std::os::fd::AsRawFd;
    let value = libc::timeval {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_usec: timeout.subsec_micros() as libc::suseconds_t,
    };
    // SAFETY: a valid fd and a correctly sized timeval; failure only leaves reads unbounded.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&value as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        );
    }
}

fn interface_from(message: &LinkMessage) -> Interface {
    let mut link = Interface {
        index: message.header.index,
        name: String::new(),
        up: message.header.flags.contains(LinkFlags::Up),
        lower_up: message.header.flags.contains(LinkFlags::LowerUp),
        loopback: message.header.flags.contains(LinkFlags::Loopback),
        mtu: None,
    };
    for attribute in &message.attributes {
        match attribute {
            LinkAttribute::IfName(name) => link.name = name.clone(),
            LinkAttribute::Mtu(mtu) => link.mtu = Some(*mtu),
            _ => {}
        }
    }
    link
}

fn address_from(message: &AddressMessage) -> Option<Address> {
    // IFA_LOCAL is the interface's own address on point-to-point links; IFA_ADDRESS otherwise.
    let mut address = None;
    for attribute in &message.attributes {
        match attribute {
            AddressAttribute::Local(ip) => address = Some(*ip),
            AddressAttribute::Address(ip) if address.is_none() => address = Some(*ip),
            _ => {}
        }
    }
    Some(Address {
        index: message.header.index,
        address: address?,
        prefix_len: message.header.prefix_len,
    })
}

fn route_from(message: &RouteMessage) -> Route {
    let mut route = Route {
        table: u32::from(message.header.table),
        kind: match message.header.kind {
            RouteType::Local => RouteKind::Local,
            RouteType::Unicast => RouteKind::Unicast,
            RouteType::Broadcast => RouteKind::Broadcast,
            _ => RouteKind::Other,
        },
        destination: None,
        prefix_len: message.header.destination_prefix_length,
        output_index: None,
    };
    for attribute in &message.attributes {
        match attribute {
            RouteAttribute::Table(table) => route.table = *table,
            RouteAttribute::Destination(RouteAddress::Inet(ip)) => {
                route.destination = Some(IpAddr::V4(*ip))
            }
            RouteAttribute::Destination(RouteAddress::Inet6(ip)) => {
                route.destination = Some(IpAddr::V6(*ip))
            }
            RouteAttribute::Oif(index) => route.output_index = Some(*index),
            _ => {}
        }
    }
    route
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lo_is_listed_when_netlink_is_available() {
        let Ok(mut netlink) = Rtnetlink::open() else {
            eprintln!("skipping: no netlink socket in this sandbox");
            return;
        };
        let links = netlink.interfaces().expect("link dump");
        let lo = links.iter().find(|link| link.name == "lo").expect("lo");
        assert!(lo.loopback, "lo carries IFF_LOOPBACK");
        // lo's index is 1 in every network namespace (it is created first).
        assert_eq!(lo.index, 1);
        let routes = netlink.routes().expect("route dump");
        assert!(!routes.is_empty());
    }
}
