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
    use super::*;

    /// Only raw ICMPv6 sockets take the option; anything else says so (ENOPROTOOPT/EINVAL),
    /// and a root test sees it accepted.
    #[test]
    fn the_filter_is_refused_off_icmpv6_and_taken_on_it() {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        assert!(set_icmpv6_filter(&udp, &[129]).is_err());
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipping the raw half: raw ICMPv6 sockets need CAP_NET_RAW");
            return;
        }
        let Ok(raw) = rustix::net::socket(
            rustix::net::AddressFamily::INET6,
            rustix::net::SocketType::RAW,
            Some(rustix::net::ipproto::ICMPV6),
        ) else {
            eprintln!("skipping the raw half: no IPv6 here");
            return;
        };
        set_icmpv6_filter(&raw, &[129]).expect("raw ICMPv6 takes the filter");
    }
}
