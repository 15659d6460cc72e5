//! ICMP6_FILTER (RFC 3542 section 3.2): which ICMPv6 types a raw ICMPv6 socket receives.
//! Neither rustix nor nix offers this option.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// `ICMP6_FILTER` from `<netinet/icmp6.h>` (not in the libc crate).
const ICMP6_FILTER: libc::c_int = 1;

/// Lets only the ICMPv6 message types in `types` through to `socket` (a raw ICMPv6 socket).
pub fn pass_only(socket: BorrowedFd<'_>, types: &[u8]) -> io::Result<()> {
    // struct icmp6_filter is 256 bits; a set bit blocks the type, in Linux's layout: word
    // type >> 5, bit type & 31.
    let mut filter = [u32::MAX; 8];
    for &message_type in types {
        filter[usize::from(message_type >> 5)] &= !(1u32 << (message_type & 31));
    }
    // SAFETY: the descriptor is borrowed, so it stays open for the call; the option value
    // points at a live 32-byte array, the size of struct icmp6_filter, whose length is passed.
    let result = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_ICMPV6,
            ICMP6_FILTER,
            filter.as_ptr().cast(),
            std::mem::size_of_val(&filter) as libc::socklen_t,
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
