//! `tcp://HOST:PORT` — a TCP connection to a reflector (`loopscope reflect`, an echo server).
//!
//! Options: `bind=ADDR`, `iface=NAME` (see [`crate::transport::ip`]), `nodelay=0|1` (default 1: small ping
//! frames must not wait for Nagle), `connect_timeout=SECONDS` (default 5).

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use socket2::Type;

use crate::endpoint::{Endpoint, EndpointError};
use crate::link::{Link, LinkError, LinkReceiver, LinkSender};
use crate::stats::{LinkStats, SocketStats};
use crate::transport::ip::{self, IP_OPTIONS, IpOptions};
use crate::transport::stream::{StreamReceiver, StreamSender};

/// `tcp://HOST:PORT`: a connection to a reflector.
pub struct TcpLink {
    original: String,
    peers: Vec<SocketAddr>,
    options: IpOptions,
    nodelay: bool,
    connect_timeout: Duration,
}

impl TcpLink {
    /// Reads the address and the socket options.
    pub fn from_endpoint(endpoint: &Endpoint) -> Result<Self, EndpointError> {
        let mut known = IP_OPTIONS.to_vec();
        known.extend(["nodelay", "connect_timeout"]);
        endpoint.reject_unknown_options(&known)?;
        let nodelay = endpoint.parsed_option::<u8>("nodelay")?.unwrap_or(1) != 0;
        let connect_timeout = endpoint
            .parsed_option::<f64>("connect_timeout")?
            .unwrap_or(5.0);
        let connect_timeout = Duration::try_from_secs_f64(connect_timeout)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| {
                endpoint.bad_value(
                    "connect_timeout",
                    &connect_timeout.to_string(),
                    "expected a positive number of seconds",
                )
            })?;
        Ok(TcpLink {
            original: endpoint.original.clone(),
            peers: ip::resolve(endpoint, None)?,
            options: IpOptions::from_endpoint(endpoint)?,
            nodelay,
            connect_timeout,
        })
    }

    /// Connects to the first peer address that answers.
    pub fn connect(&self) -> Result<TcpStream, LinkError> {
        let mut last = None;
        for peer in &self.peers {
            let attempt = (|| {
                let socket = ip::new_socket(peer, Type::STREAM)?;
                self.options.apply(&socket, peer)?;
                socket.connect_timeout(&(*peer).into(), self.connect_timeout)?;
                socket.set_tcp_nodelay(self.nodelay)?;
                Ok::<_, std::io::Error>(TcpStream::from(socket))
            })();
            match attempt {
                Ok(stream) => return Ok(stream),
                Err(e) => last = Some((peer, e)),
            }
        }
        match last {
            Some((peer, e)) => Err(LinkError::io(
                format!(
                    "{}: cannot connect to {peer} (is 'loopscope reflect' running there?)",
                    self.original
                ),
                e,
            )),
            None => Err(LinkError::Unsupported(format!(
                "{}: no address to connect to",
                self.original
            ))),
        }
    }
}

impl Link for TcpLink {
    fn describe(&self) -> String {
        self.original.clone()
    }

    fn split(self: Box<Self>) -> Result<(Box<dyn LinkSender>, Box<dyn LinkReceiver>), LinkError> {
        let stream = self.connect()?;
        let stats = LinkStats {
            transport: Some("tcp"),
            socket: Some(SocketStats {
                local: stream.local_addr().ok().map(|a| a.to_string()),
                peer: stream.peer_addr().ok().map(|a| a.to_string()),
            }),
            ..Default::default()
        };
        let reader = stream
            .try_clone()
            .map_err(|e| LinkError::io(format!("{}: cannot clone socket", self.original), e))?;
        Ok((
            Box::new(StreamSender::new(stream)),
            Box::new(StreamReceiver::new(reader, stats)),
        ))
    }
}
