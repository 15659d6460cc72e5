//! Listening TCP and bound, unconnected UDP sockets from the kernel's sock_diag netlink
//! interface (inet_diag): the only source that also reports IPV6_V6ONLY
//! (`INET_DIAG_SKV6ONLY`) and the SO_BINDTODEVICE interface (`idiag_if`).

use std::io;

use netlink_packet_core::{
    NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_sock_diag::SockDiagMessage;
use netlink_packet_sock_diag::constants::{
    AF_INET, AF_INET6, IPPROTO_TCP, IPPROTO_UDP, TCP_CLOSE, TCP_LISTEN,
};
use netlink_packet_sock_diag::inet::nlas::Nla;
use netlink_packet_sock_diag::inet::{ExtensionFlags, InetRequest, SocketId, StateFlags};
use netlink_sys::protocols::NETLINK_SOCK_DIAG;
use netlink_sys::{Socket, SocketAddr};

use crate::model::{Family, Protocol, RawSocket};

/// One sock_diag dump failed: the kernel lacks the module (`inet_diag`, `udp_diag`), the
/// netlink family is not there, or the reply could not be parsed.
#[derive(Debug, thiserror::Error)]
pub enum DiagError {
    // The io::Error is part of the message (not `source()`): these errors also end up as
    // one-line notes in the report.
    #[error("sock_diag netlink socket: {0}")]
    Socket(io::Error),
    #[error("sock_diag dump of {protocol} {family}: {cause}")]
    Dump {
        protocol: &'static str,
        family: &'static str,
        cause: io::Error,
    },
    #[error("sock_diag reply for {protocol} {family} could not be parsed: {detail}")]
    Parse {
        protocol: &'static str,
        family: &'static str,
        detail: String,
    },
}

/// An open sock_diag socket, reused for the four dumps.
pub struct Diag {
    socket: Socket,
    buffer: Vec<u8>,
    sequence: u32,
}

impl Diag {
    pub fn open() -> Result<Diag, DiagError> {
        let mut socket = Socket::new(NETLINK_SOCK_DIAG).map_err(DiagError::Socket)?;
        socket.bind_auto().map_err(DiagError::Socket)?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(DiagError::Socket)?;
        // Large dumps (10,000 sockets) arrive faster with a bigger receive buffer; the kernel
        // fills each read up to the buffer size we offer (at most 32 KiB per message batch).
        let _ = socket.set_rx_buf_sz(1 << 20);
        Ok(Diag {
            socket,
            buffer: vec![0; 64 * 1024],
            sequence: 1,
        })
    }

    /// Every socket of `protocol`/`family` in the listening (TCP) or unconnected (UDP) state.
    pub fn dump(
        &mut self,
        protocol: Protocol,
        family: Family,
        out: &mut Vec<RawSocket>,
    ) -> Result<(), DiagError> {
        let (ip_protocol, states) = match protocol {
            Protocol::Tcp => (IPPROTO_TCP, StateFlags::from_bits_truncate(1 << TCP_LISTEN)),
            Protocol::Udp => (IPPROTO_UDP, StateFlags::from_bits_truncate(1 << TCP_CLOSE)),
        };
        let (af, socket_id) = match family {
            Family::Ipv4 => (AF_INET, SocketId::new_v4()),
            Family::Ipv6 => (AF_INET6, SocketId::new_v6()),
        };
        let dump_error = |cause: io::Error| DiagError::Dump {
            protocol: protocol.name(),
            family: family.name(),
            cause,
        };
        let parse_error = |detail: String| DiagError::Parse {
            protocol: protocol.name(),
            family: family.name(),
            detail,
        };

        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_DUMP;
        header.sequence_number = self.sequence;
        self.sequence = self.sequence.wrapping_add(1);
        let mut request = NetlinkMessage::new(
            header,
            SockDiagMessage::InetRequest(InetRequest {
                family: af,
                protocol: ip_protocol,
                extensions: ExtensionFlags::empty(),
                states,
                socket_id,
            })
            .into(),
        );
        request.finalize();
        let mut bytes = vec![0; request.buffer_len()];
        request.serialize(&mut bytes);
        self.socket.send(&bytes, 0).map_err(dump_error)?;

        loop {
            let received = self
                .socket
                .recv(&mut &mut self.buffer[..], 0)
                .map_err(dump_error)?;
            if received == 0 {
                return Err(dump_error(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "netlink socket closed mid-dump",
                )));
            }
            let mut offset = 0;
            while offset < received {
                let message =
                    NetlinkMessage::<SockDiagMessage>::deserialize(&self.buffer[offset..received])
                        .map_err(|e| parse_error(e.to_string()))?;
                let length = message.header.length as usize;
                match message.payload {
                    NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(response)) => {
                        let id = &response.header.socket_id;
                        let v6only = response.nlas.iter().find_map(|nla| match nla {
                            Nla::SkV6Only(v6only) => Some(*v6only),
                            _ => None,
                        });
                        out.push(RawSocket {
                            protocol,
                            family,
                            address: id.source_address,
                            port: id.source_port,
                            v6only: match family {
                                Family::Ipv4 => None,
                                Family::Ipv6 => v6only,
                            },
                            bound_ifindex: Some(id.interface_id),
                            uid: response.header.uid,
                            inode: u64::from(response.header.inode),
                        });
                    }
                    NetlinkPayload::Done(_) => return Ok(()),
                    NetlinkPayload::Error(error) => {
                        return Err(dump_error(match error.code {
                            Some(code) => io::Error::from_raw_os_error(-code.get()),
                            None => io::Error::other("unexpected netlink ACK"),
                        }));
                    }
                    _ => {}
                }
                if length == 0 {
                    break;
                }
                // Netlink messages are 4-byte aligned.
                offset += (length + 3) & !3;
            }
        }
    }
}
