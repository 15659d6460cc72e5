//! Zero-copy echo of a stream socket onto itself: socket → pipe → socket with splice(2), so the
//! bytes never enter user space (rustix's safe `splice` and pipe calls).

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use rustix::pipe::{PipeFlags, SpliceFlags};

/// A pipe to splice through.
#[derive(Debug)]
pub struct SplicePipe {
    read_end: OwnedFd,
    write_end: OwnedFd,
    capacity: usize,
}

impl SplicePipe {
    /// A pipe asked to hold `size` bytes (F_SETPIPE_SZ). The size is best effort: an
    /// unprivileged user past the pipe quota keeps the default (64 KiB).
    pub fn new(size: usize) -> io::Result<Self> {
        let (read_end, write_end) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC)?;
        let capacity = rustix::pipe::fcntl_setpipe_size(&write_end, size).unwrap_or(65_536);
        Ok(SplicePipe {
            read_end,
            write_end,
            capacity,
        })
    }

    /// Bytes the pipe holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Moves what `socket` has (at most the pipe's capacity) through the pipe and back into
    /// `socket`. Returns the bytes moved; 0 means the peer closed its sending side.
    ///
    /// Blocks like a read on the socket. EINTR is retried here: once bytes sit in the pipe they
    /// must go out, or they would be lost.
    pub fn echo_once(&self, socket: impl AsFd) -> io::Result<usize> {
        let socket = socket.as_fd();
        let n = retry(|| {
            rustix::pipe::splice(
                socket,
                None,
                &self.write_end,
                None,
                self.capacity,
                SpliceFlags::MOVE,
            )
        })?;
        let mut left = n;
        while left > 0 {
            let m = retry(|| {
                rustix::pipe::splice(&self.read_end, None, socket, None, left, SpliceFlags::MOVE)
            })?;
            if m == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            left -= m;
        }
        Ok(n)
    }
}

fn retry(mut call: impl FnMut() -> rustix::io::Result<usize>) -> io::Result<usize> {
    loop {
        match call() {
            Err(rustix::io::Errno::INTR) => {}
            other => return other.map_err(io::Error::from),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;

    use super::*;

    /// Bytes written by the peer come back unchanged through the pipe, and a closed peer
    /// reads as 0.
    #[test]
    fn a_stream_is_echoed_through_the_pipe() {
        let (mut peer, ours) = UnixStream::pair().expect("socketpair");
        let pipe = SplicePipe::new(1 << 16).expect("pipe");
        assert!(pipe.capacity() >= 4096);
        let data: Vec<u8> = (0..3000u32).map(|i| (i * 31 % 251) as u8).collect();
        peer.write_all(&data).expect("write");
        let mut echoed = 0;
        while echoed < data.len() {
            echoed += pipe.echo_once(&ours).expect("splice");
        }
        let mut back = vec![0u8; data.len()];
        peer.read_exact(&mut back).expect("read back");
        assert_eq!(back, data);
        peer.shutdown(std::net::Shutdown::Write).expect("shutdown");
        assert_eq!(pipe.echo_once(&ours).expect("splice at end"), 0);
    }
}
