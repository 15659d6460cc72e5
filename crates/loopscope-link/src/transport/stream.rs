//! The two halves of a connected stream socket (TCP, Unix stream), shared by `tcp:` and `unix:`.

use std::io::{self, Write};
use std::net::Shutdown;
use std::os::fd::AsFd;
use std::time::Duration;

use crate::link::{LinkReceiver, LinkSender};
use loopscope_sys::SocketTimeout;

/// A connected stream socket that can be cloned into two halves.
pub trait StreamSocket: Write + AsFd + Send + 'static {
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

pub struct StreamSender<S: StreamSocket> {
    socket: S,
}

impl<S: StreamSocket> StreamSender<S> {
    pub fn new(socket: S) -> Self {
        StreamSender { socket }
    }
}

impl<S: StreamSocket> LinkSender for StreamSender<S> {
    fn send(&mut self, data: &[u8]) -> io::Result<()> {
        self.socket.write_all(data)
    }

    fn finish(&mut self) -> io::Result<()> {
        match self.socket.shutdown_write() {
            // The peer may already be gone; end of stream is what we wanted anyway.
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(()),
            other => other,
        }
    }
}

pub struct StreamReceiver<S: StreamSocket> {
    socket: S,
    timeout: SocketTimeout,
    stats: serde_json::Map<String, serde_json::Value>,
}

impl<S: StreamSocket> StreamReceiver<S> {
    /// `stats` are fixed facts about the connection (transport, addresses).
    pub fn new(socket: S, stats: serde_json::Map<String, serde_json::Value>) -> Self {
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

    fn stats(&self) -> serde_json::Map<String, serde_json::Value> {
        self.stats.clone()
    }
}
