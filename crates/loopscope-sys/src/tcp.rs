//! What `perf` asks of a TCP socket beyond reading and writing: the kernel's view of the
//! connection (`TCP_INFO`, tcp(7)) and receiving without copying (`MSG_TRUNC` on a stream).

use std::io;
use std::os::fd::{AsFd, AsRawFd};

use rustix::net::RecvFlags;

/// The `TCP_INFO` figures `perf` reports. Times in microseconds, as the kernel keeps them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TcpInfo {
    /// Smoothed round-trip time (srtt).
    pub rtt_us: u32,
    /// Round-trip time variation (rttvar).
    pub rttvar_us: u32,
    /// Segments retransmitted over the life of the connection.
    pub total_retransmits: u32,
    /// Congestion window, in segments.
    pub snd_cwnd_segments: u32,
    /// Sending maximum segment size, in bytes.
    pub snd_mss: u32,
    /// Path MTU.
    pub pmtu: u32,
}

impl TcpInfo {
    /// The congestion window in bytes (segments × MSS), as iperf3 reports `snd_cwnd`.
    pub fn snd_cwnd_bytes(&self) -> u64 {
        u64::from(self.snd_cwnd_segments) * u64::from(self.snd_mss)
    }
}

/// Reads `TCP_INFO` of a TCP socket (any state). Fails with the kernel's error on a socket of
/// another kind.
pub fn tcp_info(socket: impl AsFd) -> io::Result<TcpInfo> {
    let socket = socket.as_fd();
    // SAFETY: an all-zero `tcp_info` is a valid value (plain integers only).
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut length = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: the pointer and length describe `info`, which lives across the call; the kernel
    // writes at most `length` bytes and stores how many it wrote back in `length`. The
    // descriptor is borrowed and open.
    let result = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&raw mut info).cast(),
            &mut length,
        )
    };
    if result != 0 {
        return Err(io::Error::last_os_error());
    }
    // Older kernels fill a shorter struct; the fields read here are all in the first 104
    // bytes, present since Linux 2.6.
    if (length as usize) < 104 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the kernel's TCP_INFO is too short",
        ));
    }
    Ok(TcpInfo {
        rtt_us: info.tcpi_rtt,
        rttvar_us: info.tcpi_rttvar,
        total_retransmits: info.tcpi_total_retrans,
        snd_cwnd_segments: info.tcpi_snd_cwnd,
        snd_mss: info.tcpi_snd_mss,
        pmtu: info.tcpi_pmtu,
    })
}

/// Receives up to `buffer.len()` bytes of a TCP stream and throws them away in the kernel
/// (`MSG_TRUNC` on a stream socket, tcp(7)): the bytes are consumed and counted, never copied
/// to user space, so `buffer` only sets how much one call may take. Returns how many bytes
/// were consumed; 0 means the peer closed.
pub fn recv_discard(socket: impl AsFd, buffer: &mut [u8]) -> io::Result<usize> {
    let (_, consumed) = rustix::net::recv(socket, buffer, RecvFlags::TRUNC)?;
    Ok(consumed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn tcp_info_reads_a_live_connection_and_refuses_udp() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        client.write_all(&[7u8; 1000]).unwrap();
        let mut got = [0u8; 1000];
        server.read_exact(&mut got).unwrap();
        let info = tcp_info(&client).unwrap();
        // Loopback's MTU is 65536 and the MSS follows it; an MSS of 0 would mean the struct
        // was read at the wrong offsets.
        assert!(info.snd_mss > 500, "{info:?}");
        assert!(info.snd_cwnd_segments >= 1, "{info:?}");
        assert!(info.pmtu >= 1280, "{info:?}");
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        assert!(tcp_info(&udp).is_err());
    }

    #[test]
    fn discarding_consumes_exactly_what_was_sent() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let sent = 300_000usize;
        let writer = std::thread::spawn(move || {
            client.write_all(&vec![0x5a; sent]).unwrap();
            // closing ends the stream, so the loop below ends on 0
        });
        let mut buffer = vec![0u8; 65_536];
        let mut consumed = 0;
        loop {
            let count = recv_discard(&server, &mut buffer).unwrap();
            if count == 0 {
                break;
            }
            consumed += count;
        }
        writer.join().unwrap();
        assert_eq!(consumed, sent);
        // The kernel never copied: the buffer is as it was.
        assert!(buffer.iter().all(|&byte| byte == 0));
    }
}
