//! The TTL (IPv4) or hop limit (IPv6) of UDP datagrams: set on what is sent, read from what
//! arrives. BFD's single-hop mode sends with 255 and discards anything that arrives with less
//! (RFC 5881 §5, the GTSM rule of RFC 5082), which needs the received value as a control
//! message. All calls are nix's and rustix's safe ones; nothing here is `unsafe`.

use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd};

use nix::sys::socket::{
    ControlMessageOwned, MsgFlags, SockaddrLike, SockaddrStorage, recvmsg, setsockopt, sockopt,
};

/// Which IP version a socket speaks, from its local address.
fn is_ipv6(socket: &impl AsFd) -> io::Result<bool> {
    let local = rustix::net::getsockname(socket)?;
    Ok(local.address_family() == rustix::net::AddressFamily::INET6)
}

/// Sends every datagram of `socket` with this TTL or unicast hop limit.
pub fn set_send_hops(socket: &impl AsFd, hops: u8) -> io::Result<()> {
    if is_ipv6(socket)? {
        setsockopt(socket, sockopt::Ipv6Ttl, &i32::from(hops))?;
    } else {
        rustix::net::sockopt::set_ip_ttl(socket, u32::from(hops))?;
    }
    Ok(())
}

/// Asks the kernel to attach the TTL or hop limit to every datagram received on `socket`
/// (IP_RECVTTL, IPV6_RECVHOPLIMIT), for [`recv_with_hops`].
pub fn enable_hops_reception(socket: &impl AsFd) -> io::Result<()> {
    if is_ipv6(socket)? {
        setsockopt(socket, sockopt::Ipv6RecvHopLimit, &true)?;
    } else {
        setsockopt(socket, sockopt::Ipv4RecvTtl, &true)?;
    }
    Ok(())
}

/// One datagram: its length, its source, and the TTL or hop limit it arrived with when the
/// kernel attached it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceivedDatagram {
    /// Octets written into the buffer.
    pub len: usize,
    /// The sender.
    pub from: Option<SocketAddr>,
    /// The TTL or hop limit, if [`enable_hops_reception`] was called.
    pub hops: Option<u8>,
}

/// Receives one datagram without waiting (`WouldBlock` when there is none) with its TTL or hop
/// limit.
pub fn recv_with_hops(socket: &impl AsFd, buffer: &mut [u8]) -> io::Result<ReceivedDatagram> {
    let mut space = nix::cmsg_space!(libc::c_int, libc::c_int);
    let mut iov = [IoSliceMut::new(buffer)];
    let message = recvmsg::<SockaddrStorage>(
        socket.as_fd().as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_DONTWAIT,
    )
    .map_err(io::Error::from)?;
    let mut hops = None;
    if let Ok(messages) = message.cmsgs() {
        for control in messages {
            if let ControlMessageOwned::Ipv4Ttl(value) | ControlMessageOwned::Ipv6HopLimit(value) =
                control
            {
                hops = u8::try_from(value).ok();
            }
        }
    }
    let from = message.address.and_then(|address| {
        if let Some(v4) = address.as_sockaddr_in() {
            Some(SocketAddr::V4((*v4).into()))
        } else if address.family().is_some() {
            address
                .as_sockaddr_in6()
                .map(|v6| SocketAddr::V6((*v6).into()))
        } else {
            None
        }
    });
    Ok(ReceivedDatagram {
        len: message.bytes,
        from,
        hops,
    })
}

#[cfg(test)]
mod tests {
    use std::net::UdpSocket;
    use std::time::Duration;

    use super::*;
    use crate::{Readiness, wait_readable};

    fn round_trip(bind: &str, hops: u8) -> ReceivedDatagram {
        let receiver = UdpSocket::bind(bind).expect("bind");
        enable_hops_reception(&receiver).expect("recv option");
        let sender = UdpSocket::bind(bind).expect("bind");
        set_send_hops(&sender, hops).expect("send option");
        sender
            .send_to(b"hops", receiver.local_addr().expect("addr"))
            .expect("send");
        let ready = wait_readable(&receiver, Some(Duration::from_secs(10))).expect("wait");
        assert_eq!(ready, Readiness::Ready);
        let mut buffer = [0u8; 16];
        let got = recv_with_hops(&receiver, &mut buffer).expect("recv");
        assert_eq!(&buffer[..got.len], b"hops");
        assert_eq!(got.from, Some(sender.local_addr().expect("addr")));
        got
    }

    /// Loopback delivers without a hop, so what is set is what arrives.
    #[test]
    fn the_ttl_set_is_the_ttl_received_over_ipv4_and_ipv6() {
        assert_eq!(round_trip("127.0.0.1:0", 255).hops, Some(255));
        assert_eq!(round_trip("127.0.0.1:0", 17).hops, Some(17));
        if UdpSocket::bind("[::1]:0").is_ok() {
            assert_eq!(round_trip("[::1]:0", 255).hops, Some(255));
            assert_eq!(round_trip("[::1]:0", 3).hops, Some(3));
        }
    }
}
