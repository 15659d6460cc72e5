//! Listening TCP and bound, unconnected UDP sockets from the kernel's sock_diag netlink
//! interface (inet_diag): the only source that also reports IPV6_V6ONLY
//! (`INET_DIAG_SKV6ONLY`) and the SO_BINDTODEVICE interface (`idiag_if`).

use std::io;

use loopscope_sys::{DiagProtocol, NetlinkError, SockDiag};

use crate::model::{Family, Protocol, RawSocket};

/// One sock_diag dump failed: the kernel lacks the module (`inet_diag`, `udp_diag`), the
/// netlink family is not there, or the reply could not be parsed.
#[derive(Debug, thiserror::Error)]
pub enum DiagError {
    // The io::Error is part of the message (not `source()`): these errors also end up as
    // one-line notes in the report.
    /// The sock_diag socket could not be opened (no such netlink family, or refused).
    #[error("sock_diag netlink socket: {0}")]
    Socket(io::Error),
    /// A dump failed part way.
    #[error("sock_diag dump of {protocol} {family}: {cause}")]
    Dump {
        /// `tcp` or `udp`.
        protocol: &'static str,
        /// `ipv4` or `ipv6`.
        family: &'static str,
        /// What the kernel said.
        cause: io::Error,
    },
    /// A reply did not parse as inet_diag messages.
    #[error("sock_diag reply for {protocol} {family} could not be parsed: {detail}")]
    Parse {
        /// `tcp` or `udp`.
        protocol: &'static str,
        /// `ipv4` or `ipv6`.
        family: &'static str,
        /// What did not parse.
        detail: String,
    },
}

/// An open sock_diag socket, reused for the four dumps.
pub(crate) struct Diag {
    socket: SockDiag,
}

impl Diag {
    /// Opens the socket the four dumps (TCP and UDP over IPv4 and IPv6) share.
    pub(crate) fn open() -> Result<Diag, DiagError> {
        let socket = SockDiag::open().map_err(|error| {
            DiagError::Socket(match error {
                NetlinkError::Open(cause)
                | NetlinkError::Io(cause)
                | NetlinkError::Refused(cause) => cause,
                NetlinkError::Decode(detail) => io::Error::other(detail),
            })
        })?;
        Ok(Diag { socket })
    }

    /// Every socket of `protocol`/`family` in the listening (TCP) or unconnected (UDP) state.
    pub(crate) fn dump(
        &mut self,
        protocol: Protocol,
        family: Family,
        out: &mut Vec<RawSocket>,
    ) -> Result<(), DiagError> {
        let diag_protocol = match protocol {
            Protocol::Tcp => DiagProtocol::Tcp,
            Protocol::Udp => DiagProtocol::Udp,
        };
        let sockets = self
            .socket
            .listening(diag_protocol, family == Family::Ipv6)
            .map_err(|error| match error {
                NetlinkError::Open(cause)
                | NetlinkError::Io(cause)
                | NetlinkError::Refused(cause) => DiagError::Dump {
                    protocol: protocol.name(),
                    family: family.name(),
                    cause,
                },
                NetlinkError::Decode(detail) => DiagError::Parse {
                    protocol: protocol.name(),
                    family: family.name(),
                    detail,
                },
            })?;
        out.extend(sockets.into_iter().map(|socket| RawSocket {
            protocol,
            family,
            address: socket.address,
            port: socket.port,
            v6only: socket.v6only,
            bound_ifindex: Some(socket.bound_ifindex),
            uid: socket.uid,
            inode: socket.inode,
        }));
        Ok(())
    }
}
