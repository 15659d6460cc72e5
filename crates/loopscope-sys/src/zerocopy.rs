//! Sending without copying (`MSG_ZEROCOPY`, Linux 4.14; the kernel's
//! Documentation/networking/msg_zerocopy.rst): the kernel pins the sender's pages instead of
//! copying them into the socket buffer, and tells the sender on the socket's error queue when
//! each send's pages are free again, and whether it had to copy after all (it always does on
//! loopback, where a pinned page would be handed straight to a receiver).

use std::io;
use std::os::fd::{AsFd, AsRawFd};

use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
use rustix::net::SendFlags;

/// `SO_ZEROCOPY` (asm-generic/socket.h); the libc crate does not define it.
const SO_ZEROCOPY: libc::c_int = 60;
/// `SO_EE_ORIGIN_ZEROCOPY` (linux/errqueue.h): a completion notification.
const SO_EE_ORIGIN_ZEROCOPY: u8 = 5;
/// `SO_EE_CODE_ZEROCOPY_COPIED` (linux/errqueue.h): the kernel copied the data after all.
const SO_EE_CODE_ZEROCOPY_COPIED: u8 = 1;

/// Lets the socket take [`send_zerocopy`] (`SO_ZEROCOPY`). Fails on a kernel or socket kind
/// without it (Unix sockets, Linux before 4.14).
pub fn enable_zerocopy(socket: impl AsFd) -> io::Result<()> {
    let socket = socket.as_fd();
    let one: libc::c_int = 1;
    // SAFETY: the pointer and length describe `one`, which lives across the call; the kernel
    // only reads it. The descriptor is borrowed and open.
    let result = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_ZEROCOPY,
            (&raw const one).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if result != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sends with `MSG_ZEROCOPY`. The caller must leave `data` unchanged until the kernel reports
/// the send complete ([`reap_zerocopy`]); a buffer that is never written again qualifies.
/// `ENOBUFS` means too many sends wait for completion: reap, then send again.
pub fn send_zerocopy(socket: impl AsFd, data: &[u8]) -> io::Result<usize> {
    let flags = SendFlags::from_bits_retain(libc::MSG_ZEROCOPY as u32);
    Ok(rustix::net::send(socket, data, flags)?)
}

/// Completions read from a socket's error queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ZerocopyCompletions {
    /// Zerocopy sends the kernel finished with.
    pub completed: u64,
    /// Of those, the ones where it copied the data after all.
    pub copied: u64,
}

impl std::ops::AddAssign for ZerocopyCompletions {
    fn add_assign(&mut self, other: Self) {
        self.completed += other.completed;
        self.copied += other.copied;
    }
}

/// Reads every completion queued on the socket's error queue, without waiting.
pub fn reap_zerocopy(socket: impl AsFd) -> io::Result<ZerocopyCompletions> {
    let socket = socket.as_fd();
    let mut total = ZerocopyCompletions::default();
    loop {
        let mut space = nix::cmsg_space!(libc::sock_extended_err, libc::sockaddr_in6);
        let message = match recvmsg::<()>(
            socket.as_raw_fd(),
            &mut [],
            Some(&mut space),
            MsgFlags::MSG_ERRQUEUE | MsgFlags::MSG_DONTWAIT,
        ) {
            Ok(message) => message,
            Err(nix::errno::Errno::EAGAIN) => return Ok(total),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(errno) => return Err(errno.into()),
        };
        for cmsg in message.cmsgs()? {
            let (ControlMessageOwned::Ipv4RecvErr(error, _)
            | ControlMessageOwned::Ipv6RecvErr(error, _)) = cmsg
            else {
                continue;
            };
            if error.ee_origin != SO_EE_ORIGIN_ZEROCOPY {
                continue;
            }
            // Sends are numbered from 0 per socket; one notification covers the inclusive
            // range ee_info..=ee_data (a 32-bit counter that wraps).
            let count = u64::from(error.ee_data.wrapping_sub(error.ee_info)) + 1;
            total.completed += count;
            if error.ee_code & SO_EE_CODE_ZEROCOPY_COPIED != 0 {
                total.copied += count;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::{TcpListener, TcpStream};
    use std::time::{Duration, Instant};

    #[test]
    fn every_zerocopy_send_is_reported_complete_and_the_bytes_arrive() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        if let Err(error) = enable_zerocopy(&client) {
            eprintln!("skipping: this kernel refuses SO_ZEROCOPY ({error})");
            return;
        }
        let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7) as u8).collect();
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            server.read_to_end(&mut got).unwrap();
            got
        });
        let mut sends = 0u64;
        let mut done = ZerocopyCompletions::default();
        for chunk in data.chunks(50_000) {
            let mut offset = 0;
            while offset < chunk.len() {
                match send_zerocopy(&client, &chunk[offset..]) {
                    Ok(count) => {
                        offset += count;
                        sends += 1;
                    }
                    Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                        done += reap_zerocopy(&client).unwrap();
                    }
                    Err(e) => panic!("{e}"),
                }
            }
        }
        client.shutdown(std::net::Shutdown::Write).unwrap();
        let got = reader.join().unwrap();
        assert_eq!(got, data);
        // Completions follow the receiver's reads; wait for the last (an event, with a
        // generous bound only against a kernel that never sends it).
        let deadline = Instant::now() + Duration::from_secs(30);
        while done.completed < sends && Instant::now() < deadline {
            crate::wait_readable(&client, Some(Duration::from_millis(100))).ok();
            done += reap_zerocopy(&client).unwrap();
        }
        assert_eq!(done.completed, sends, "{done:?}");
        assert!(done.copied <= done.completed);
    }
}
