//! `udp://HOST:PORT` — numbered datagrams to a reflector (see [`crate::transport::datagram`]).
//!
//! Options: `bind=ADDR`, `iface=NAME`, `size=BYTES` (payload per datagram, default 1400),
//! `window=N` (datagrams in flight, default 128, 0 for no limit).

use std::net::{SocketAddr, UdpSocket};

use socket2::Type;

use crate::endpoint::{Endpoint, EndpointError};
use crate::link::{Link, LinkError, LinkReceiver, LinkSender};
use crate::stats::{LinkStats, SocketStats};
use crate::transport::datagram::{self, DATAGRAM_OPTIONS, DatagramSettings, HEADER};
use crate::transport::ip::{self, IP_OPTIONS, IpOptions};

/// Socket buffers asked for: room for bursts without loss on loopback.
pub const SOCKET_BUFFER: usize = 4 << 20;

/// `udp://HOST:PORT`: numbered datagrams to a reflector.
pub struct UdpLink {
    original: String,
    peer: SocketAddr,
    options: IpOptions,
    settings: DatagramSettings,
}

impl UdpLink {
    /// Reads the address, the socket and the datagram options.
    pub fn from_endpoint(endpoint: &Endpoint) -> Result<Self, EndpointError> {
        let mut known = IP_OPTIONS.to_vec();
        known.extend(DATAGRAM_OPTIONS);
        endpoint.reject_unknown_options(&known)?;
        let peers = ip::resolve(endpoint, None)?;
        Ok(UdpLink {
            original: endpoint.original.clone(),
            peer: peers[0],
            options: IpOptions::from_endpoint(endpoint)?,
            settings: DatagramSettings::from_endpoint(endpoint, 65_507 - HEADER)?,
        })
    }

    fn open(&self) -> std::io::Result<UdpSocket> {
        let socket = ip::new_socket(&self.peer, Type::DGRAM)?;
        // Best effort: the kernel caps these at net.core.[rw]mem_max.
        let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
        let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
        self.options.apply(&socket, &self.peer)?;
        socket.connect(&self.peer.into())?;
        Ok(socket.into())
    }
}

impl Link for UdpLink {
    fn describe(&self) -> String {
        self.original.clone()
    }

    fn split(self: Box<Self>) -> Result<(Box<dyn LinkSender>, Box<dyn LinkReceiver>), LinkError> {
        let socket = self
            .open()
            .map_err(|e| LinkError::io(format!("{}: cannot open UDP socket", self.original), e))?;
        let stats = LinkStats {
            transport: Some("udp"),
            socket: Some(SocketStats {
                local: socket.local_addr().ok().map(|a| a.to_string()),
                peer: Some(self.peer.to_string()),
            }),
            ..Default::default()
        };
        let (tx, rx) = datagram::halves(socket, self.settings, stats);
        Ok((Box::new(tx), Box::new(rx)))
    }
}
