//! The two halves of a connected stream socket (TCP, Unix stream), shared by `tcp:` and `unix:`.

use std::io;
use std::net::Shutdown;
use std::os::fd::AsFd;
use std::time::Duration;

use loopscope_sys::SocketTimeout;

use crate::link::{Cancel, LinkReceiver, LinkSender, LinkStats, SendError};
use crate::transport::send::{Writer, arm_send_timeout, write_all_until};

/// A connected stream socket that can be cloned into two halves.
pub(crate) trait StreamSocket: AsFd + Send + 'static {
    /// Ends the sending direction (a FIN on TCP), so the far end reads end of stream.
    fn shutdown_write(&self) -> io::Result<()>;
}

impl StreamSocket for std::net::TcpStream {
    fn shutdown_write(&self) -> io::Result<()> {
        self.shutdown(Shutdown::Write)
    }
}

impl StreamSocket for std::os::unix::net::UnixStream {
    fn shutdown_write(&self) -> io::Result<()> {
        self.shutdown(Shutdown::Write)
    }
}

/// The sending half of a stream socket.
pub(crate) struct StreamSender<S: StreamSocket> {
    socket: S,
    /// SO_SNDTIMEO is set; otherwise sends look at the cancel only between pieces.
    timed: bool,
}

impl<S: StreamSocket> StreamSender<S> {
    /// A sender over `socket`.
    pub(crate) fn new(socket: S) -> Self {
        let timed = arm_send_timeout(socket.as_fd()).is_ok();
        StreamSender { socket, timed }
    }
}

impl<S: StreamSocket> LinkSender for StreamSender<S> {
    fn send(&mut self, data: &[u8], cancel: &Cancel) -> Result<(), SendError> {
        if self.timed {
            return write_all_until(self.socket.as_fd(), data, Writer::Socket, cancel);
        }
        // No send timeout (a socket type without SO_SNDTIMEO): send without blocking and
        // wait for room in poll(2) instead.
        let mut accepted = 0;
        while accepted < data.len() {
            let fd = self.socket.as_fd();
            match rustix::net::send(
                fd,
                &data[accepted..],
                rustix::net::SendFlags::DONTWAIT | rustix::net::SendFlags::NOSIGNAL,
            ) {
                Ok(n) => accepted += n,
                Err(rustix::io::Errno::INTR) => {}
                Err(rustix::io::Errno::AGAIN) => {
                    let Some(wait) = cancel.next_wait() else {
                        return Err(SendError::cancelled(accepted));
                    };
                    loopscope_sys::wait_writable(fd, Some(wait))
                        .map_err(|e| SendError::failed(accepted, e))?;
                }
                Err(e) => return Err(SendError::failed(accepted, e.into())),
            }
        }
        Ok(())
    }

    fn finish(&mut self, _cancel: &Cancel) -> io::Result<()> {
        match self.socket.shutdown_write() {
            // The peer may already be gone; end of stream is what we wanted anyway.
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(()),
            other => other,
        }
    }
}

/// The receiving half of a stream socket.
pub(crate) struct StreamReceiver<S: StreamSocket> {
    socket: S,
    timeout: SocketTimeout,
    stats: LinkStats,
}

impl<S: StreamSocket> StreamReceiver<S> {
    /// `stats` are fixed facts about the connection (transport, addresses).
    pub(crate) fn new(socket: S, stats: LinkStats) -> Self {
        StreamReceiver {
            socket,
            timeout: SocketTimeout::default(),
            stats,
        }
    }
}

impl<S: StreamSocket> LinkReceiver for StreamReceiver<S> {
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        self.timeout.recv(self.socket.as_fd(), buf)
    }

    fn set_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.timeout.set(timeout);
        Ok(())
    }

    fn stats(&self) -> LinkStats {
        self.stats.clone()
    }
}
