//! `unix:PATH` — a Unix stream socket to a reflector. `unix:@NAME` names a socket in Linux's
//! abstract namespace (no file on disk).

use std::os::unix::net::{SocketAddr, UnixStream};

use crate::endpoint::{Endpoint, EndpointError};
use crate::link::{Link, LinkError, LinkReceiver, LinkSender};
use crate::stats::LinkStats;
use crate::transport::stream::{StreamReceiver, StreamSender};

/// Turns `PATH` or `@NAME` into a Unix socket address.
pub fn unix_address(endpoint: &Endpoint) -> Result<SocketAddr, EndpointError> {
    let target = endpoint.target.as_str();
    if target.is_empty() {
        return Err(endpoint.invalid(format!(
            "expected {}:PATH or {}:@ABSTRACT_NAME",
            endpoint.scheme, endpoint.scheme
        )));
    }
    let address = if let Some(name) = target.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        SocketAddr::from_abstract_name(name.as_bytes())
    } else {
        SocketAddr::from_pathname(target)
    };
    address.map_err(|e| endpoint.invalid(format!("not a usable socket address: {e}")))
}

/// `unix:PATH` (or `unix:@NAME`, abstract): a Unix stream connection to a reflector.
pub struct UnixLink {
    original: String,
    address: SocketAddr,
}

impl UnixLink {
    /// Reads the path.
    pub fn from_endpoint(endpoint: &Endpoint) -> Result<Self, EndpointError> {
        endpoint.reject_unknown_options(&[])?;
        Ok(UnixLink {
            original: endpoint.original.clone(),
            address: unix_address(endpoint)?,
        })
    }
}

impl Link for UnixLink {
    fn describe(&self) -> String {
        self.original.clone()
    }

    fn split(self: Box<Self>) -> Result<(Box<dyn LinkSender>, Box<dyn LinkReceiver>), LinkError> {
        let stream = UnixStream::connect_addr(&self.address).map_err(|e| {
            LinkError::io(
                format!(
                    "{}: cannot connect (is 'loopscope reflect' running there?)",
                    self.original
                ),
                e,
            )
        })?;
        let reader = stream
            .try_clone()
            .map_err(|e| LinkError::io(format!("{}: cannot clone socket", self.original), e))?;
        let stats = LinkStats {
            transport: Some("unix"),
            ..Default::default()
        };
        Ok((
            Box::new(StreamSender::new(stream)),
            Box::new(StreamReceiver::new(reader, stats)),
        ))
    }
}

/// `unixgram:PATH` — numbered datagrams over a Unix datagram socket (see [`crate::transport::datagram`]).
/// The client binds an abstract address of its own so the reflector can answer.
pub struct UnixgramLink {
    original: String,
    address: SocketAddr,
    settings: crate::transport::datagram::DatagramSettings,
}

impl UnixgramLink {
    /// Reads the path and the datagram options.
    pub fn from_endpoint(endpoint: &Endpoint) -> Result<Self, EndpointError> {
        endpoint.reject_unknown_options(crate::transport::datagram::DATAGRAM_OPTIONS)?;
        Ok(UnixgramLink {
            original: endpoint.original.clone(),
            address: unix_address(endpoint)?,
            settings: crate::transport::datagram::DatagramSettings::from_endpoint(
                endpoint, 60_000,
            )?,
        })
    }
}

/// A fresh abstract address for a client socket: unique per process and call.
pub fn client_abstract_address() -> std::io::Result<SocketAddr> {
    use std::os::linux::net::SocketAddrExt;
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = format!(
        "loopscope-client-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    SocketAddr::from_abstract_name(name.as_bytes())
}

impl Link for UnixgramLink {
    fn describe(&self) -> String {
        self.original.clone()
    }

    fn split(self: Box<Self>) -> Result<(Box<dyn LinkSender>, Box<dyn LinkReceiver>), LinkError> {
        use std::os::unix::net::UnixDatagram;
        let open = || {
            let socket = UnixDatagram::bind_addr(&client_abstract_address()?)?;
            socket.connect_addr(&self.address)?;
            Ok::<_, std::io::Error>(socket)
        };
        let socket = open().map_err(|e| {
            LinkError::io(
                format!(
                    "{}: cannot connect (is 'loopscope reflect' running there?)",
                    self.original
                ),
                e,
            )
        })?;
        let stats = LinkStats {
            transport: Some("unixgram"),
            ..Default::default()
        };
        let (tx, rx) = crate::transport::datagram::halves(socket, self.settings, stats);
        Ok((Box::new(tx), Box::new(rx)))
    }
}
