//! SO_ATTACH_FILTER on any socket: a classic BPF program the kernel runs on every packet
//! before it is queued, so a socket is never woken for what it would throw away. A raw ICMP
//! socket receives a copy of every ICMP message of the host; with a filter that passes only
//! its own echo replies (as iputils `ping` installs) a thousand probes in flight no longer
//! wake each other. Neither rustix nor nix offers SO_ATTACH_FILTER safely.

use std::io;
use std::os::fd::{AsFd, AsRawFd};

use crate::packet::BpfInstruction;

/// Attaches `program` to `socket` (replacing any filter it had). The kernel checks the program
/// (jumps in range, ends in a return) and refuses a bad one with `EINVAL`.
pub fn attach_filter(socket: impl AsFd, program: &[BpfInstruction]) -> io::Result<()> {
    let mut instructions: Vec<libc::sock_filter> = program
        .iter()
        .map(|op| libc::sock_filter {
            code: op.code,
            jt: op.jt,
            jf: op.jf,
            k: op.k,
        })
        .collect();
    let fprog = libc::sock_fprog {
        len: u16::try_from(instructions.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "BPF program too long"))?,
        filter: instructions.as_mut_ptr(),
    };
    let socket = socket.as_fd();
    // SAFETY: `fprog` points at `instructions`, which lives across the call (the kernel copies
    // the program); the option length is sock_fprog's size; the descriptor is borrowed and
    // open for the call.
    let result = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            (&fprog as *const libc::sock_fprog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if result != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, SocketAddrV4};

    use rustix::net::{AddressFamily, RecvFlags, SocketType};

    use super::*;

    const LD_B_ABS: u16 = 0x30; // BPF_LD | BPF_B | BPF_ABS
    const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const RET_K: u16 = 0x06; // BPF_RET | BPF_K

    fn op(code: u16, jt: u8, jf: u8, k: u32) -> BpfInstruction {
        BpfInstruction { code, jt, jf, k }
    }

    #[test]
    fn a_program_that_does_not_end_in_a_return_is_refused() {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        assert!(attach_filter(&udp, &[op(LD_B_ABS, 0, 0, 0)]).is_err());
        assert!(attach_filter(&udp, &[op(JEQ_K, 5, 0, 1), op(RET_K, 0, 0, 0)]).is_err());
        attach_filter(&udp, &[op(RET_K, 0, 0, u32::MAX)]).expect("accept-all program");
    }

    /// The kernel runs the program: a UDP socket whose filter passes only datagrams whose
    /// first payload byte is 7 (UDP sockets' filters see the UDP header at offset 0, so the
    /// payload starts at 8) receives the 7 and never the 9 sent before it.
    #[test]
    fn the_kernel_drops_what_the_program_refuses() {
        let receiver =
            rustix::net::socket(AddressFamily::INET, SocketType::DGRAM, None).expect("udp socket");
        rustix::net::bind(&receiver, &SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)).expect("bind");
        attach_filter(
            &receiver,
            &[
                op(LD_B_ABS, 0, 0, 8),
                op(JEQ_K, 0, 1, 7),
                op(RET_K, 0, 0, u32::MAX),
                op(RET_K, 0, 0, 0),
            ],
        )
        .expect("filter");
        let to = SocketAddrV4::try_from(rustix::net::getsockname(&receiver).expect("name"))
            .expect("IPv4");
        let sender = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        sender.send_to(&[9], to).expect("send 9");
        sender.send_to(&[7], to).expect("send 7");
        let mut buffer = [0u8; 16];
        let ready = crate::wait_readable(&receiver, Some(std::time::Duration::from_secs(30)))
            .expect("wait");
        assert_eq!(
            ready,
            crate::Readiness::Ready,
            "the passed datagram never came"
        );
        let (read, _) =
            rustix::net::recv(&receiver, &mut buffer, RecvFlags::DONTWAIT).expect("recv");
        assert_eq!(&buffer[..read], &[7], "the refused datagram was queued");
        // The 9 was sent first over the same path: had it passed, it would have been read
        // first; nothing else is queued either.
        assert!(rustix::net::recv(&receiver, &mut buffer, RecvFlags::DONTWAIT).is_err());
    }
}
