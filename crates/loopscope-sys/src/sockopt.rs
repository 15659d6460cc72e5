//! Socket options no safe wrapper offers.

use std::io;
use std::os::fd::{AsFd, AsRawFd};

/// ICMP6_FILTER's option number (linux/icmpv6.h).
const ICMP6_FILTER: libc::c_int = 1;

/// ICMP6_FILTER (RFC 3542 section 3.2) on a raw ICMPv6 socket: pass only the message types
/// listed, block every other.
pub fn set_icmpv6_filter(socket: impl AsFd, pass: &[u8]) -> io::Result<()> {
    // Linux's `struct icmp6_filter`: eight 32-bit words; a set bit blocks the type
    // (word = type >> 5, bit = type & 31).
    let mut filter = [u32::MAX; 8];
    for &kind in pass {
        filter[usize::from(kind >> 5)] &= !(1u32 << (kind & 31));
    }
    let socket = socket.as_fd();
    // SAFETY: the pointer and length describe `filter`, the 32-byte struct icmp6_filter, which
    // lives across the call (the kernel copies it); the descriptor is borrowed and open.
    let result = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_ICMPV6,
            ICMP6_FILTER,
            filter.as_ptr().cast(),
            std::mem::size_of_val(&filter) as libc::socklen_t,
        )
    };
    if result != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv6Addr, SocketAddrV6};
    use std::time::Duration;

    use rustix::net::{AddressFamily, SendFlags, SocketType, ipproto};

    use super::*;
    use crate::{Readiness, wait_readable};

    #[test]
    fn the_filter_is_refused_off_icmpv6() {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        assert!(set_icmpv6_filter(&udp, &[129]).is_err());
    }

    /// The kernel applies the filter: in a network namespace of our own (no other pinger), an
    /// echo request to ::1 on a raw ICMPv6 socket passing only type `pass` yields that type
    /// and nothing else (the request and the reply both cross lo). Needs root.
    #[test]
    fn the_kernel_passes_only_the_listed_types() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipping: raw ICMPv6 sockets and namespaces need root");
            return;
        }
        std::thread::spawn(|| {
            crate::enter_new_network_namespace().expect("a namespace with lo up");
            for pass in [129u8, 128] {
                let socket = rustix::net::socket(
                    AddressFamily::INET6,
                    SocketType::RAW,
                    Some(ipproto::ICMPV6),
                )
                .expect("raw ICMPv6 socket");
                set_icmpv6_filter(&socket, &[pass]).expect("filter");
                // Echo request (RFC 4443 section 4.1); a raw ICMPv6 socket gets its checksum
                // filled in by the kernel (RFC 3542 section 3.1).
                let request = [128u8, 0, 0, 0, 0x12, 0x34, 0, 1, b'l', b's'];
                let to = SocketAddrV6::new(Ipv6Addr::LOCALHOST, 0, 0, 0);
                rustix::net::sendto(&socket, &request, SendFlags::empty(), &to).expect("send");
                let ready = wait_readable(&socket, Some(Duration::from_secs(10))).expect("wait");
                assert_eq!(
                    ready,
                    Readiness::Ready,
                    "nothing arrived with type {pass} passed"
                );
                let mut buf = [0u8; 256];
                let n = rustix::io::read(&socket, &mut buf).expect("read");
                assert!(n >= 8);
                assert_eq!(buf[0], pass, "the filter let another type through");
                assert_eq!(&buf[4..6], &[0x12, 0x34], "not our echo");
                // The other message crossed lo before (request) or right after (reply) this
                // one; only the filter keeps it out. Wait for it long enough to have arrived.
                let other = wait_readable(&socket, Some(Duration::from_millis(200))).expect("wait");
                assert_eq!(
                    other,
                    Readiness::TimedOut,
                    "a blocked type arrived (pass {pass})"
                );
            }
        })
        .join()
        .expect("namespace thread");
    }
}
