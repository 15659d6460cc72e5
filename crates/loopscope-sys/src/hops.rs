//! The TTL (IPv4) or hop limit (IPv6) of UDP datagrams: set on what is sent, read from what
//! arrives. BFD's single-hop mode sends with 255 and discards anything that arrives with less
//! (RFC 5881 §5, the GTSM rule of RFC 5082), which needs the received value as a control
//! message. Here are the socket options; the datagrams are read by the one receive path of
//! [`crate::recv_datagram`] and [`crate::recv_datagrams`], which report the TTL beside the
//! timestamps STAMP reads. All calls are nix's and rustix's safe ones; nothing here is `unsafe`.

use std::io;
use std::os::fd::AsFd;

use nix::sys::socket::{setsockopt, sockopt};

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
/// (IP_RECVTTL, IPV6_RECVHOPLIMIT), read as [`TimestampedDatagram::ttl`](crate::TimestampedDatagram).
pub fn enable_hops_reception(socket: &impl AsFd) -> io::Result<()> {
    if is_ipv6(socket)? {
        setsockopt(socket, sockopt::Ipv6RecvHopLimit, &true)?;
    } else {
        setsockopt(socket, sockopt::Ipv4RecvTtl, &true)?;
    }
    Ok(())
}

/// Asks the kernel to attach the address each datagram was sent to (IP_PKTINFO,
/// IPV6_PKTINFO), so one socket bound to the unspecified address can tell which of its local
/// addresses a peer spoke to (read as [`TimestampedDatagram::to`](crate::TimestampedDatagram)).
pub fn enable_destination_reception(socket: &impl AsFd) -> io::Result<()> {
    if is_ipv6(socket)? {
        setsockopt(socket, sockopt::Ipv6RecvPacketInfo, &true)?;
    } else {
        setsockopt(socket, sockopt::Ipv4PacketInfo, &true)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::net::UdpSocket;
    use std::time::Duration;

    use super::*;
    use crate::{Readiness, TimestampedDatagram, recv_datagram, wait_readable};

    fn round_trip(bind: &str, hops: u8) -> TimestampedDatagram {
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
        let got = recv_datagram(&receiver, &mut buffer).expect("recv");
        assert_eq!(&buffer[..got.len], b"hops");
        assert_eq!(got.from, Some(sender.local_addr().expect("addr")));
        got
    }

    /// Loopback delivers without a hop, so what is set is what arrives.
    #[test]
    fn the_ttl_set_is_the_ttl_received_over_ipv4_and_ipv6() {
        assert_eq!(round_trip("127.0.0.1:0", 255).ttl, Some(255));
        assert_eq!(round_trip("127.0.0.1:0", 17).ttl, Some(17));
        if UdpSocket::bind("[::1]:0").is_ok() {
            assert_eq!(round_trip("[::1]:0", 255).ttl, Some(255));
            assert_eq!(round_trip("[::1]:0", 3).ttl, Some(3));
        }
    }
}
