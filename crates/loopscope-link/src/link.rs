//! The Link abstraction.

use std::io;
use std::time::Duration;

use crate::endpoint::EndpointError;

/// A link's two halves, each driven from its own thread.
pub type LinkHalves = (Box<dyn LinkSender>, Box<dyn LinkReceiver>);

/// Something that gives back what is sent into it.
pub trait Link: Send {
    /// The endpoint as a user would write it, for reports.
    fn describe(&self) -> String;

    /// Splits the link into halves driven from separate threads. Opening the device or
    /// connecting happens before this returns, so environment errors surface here.
    fn split(self: Box<Self>) -> Result<LinkHalves, LinkError>;
}

/// The transmit half.
pub trait LinkSender: Send {
    /// Sends all of `data` (blocking until the link accepts it).
    fn send(&mut self, data: &[u8]) -> io::Result<()>;

    /// No more data will be sent: flush and signal end-of-stream where the link can.
    fn finish(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The receive half.
pub trait LinkReceiver: Send {
    /// Receives into `buf`. `Ok(0)` means the link closed (end of stream). A read that waits
    /// longer than the timeout set by [`LinkReceiver::set_timeout`] fails with
    /// `ErrorKind::TimedOut` or `ErrorKind::WouldBlock`.
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize>;

    /// Bounds how long one `recv` may wait (`None`: forever).
    fn set_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()>;

    /// Link-specific figures for the summary (datagram loss and reordering, serial line
    /// counters), as JSON fields merged under `"link"`.
    fn stats(&self) -> serde_json::Map<String, serde_json::Value> {
        serde_json::Map::new()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    #[error(
        "unknown link scheme '{0}:' (try loop:, sim:, exec:CMD, tcp://, udp://, unix:, unixgram:, serial:, pty:)"
    )]
    UnknownScheme(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("{0}")]
    Unsupported(String),
}

impl LinkError {
    pub fn io(what: impl Into<String>, source: io::Error) -> Self {
        LinkError::Io {
            what: what.into(),
            source,
        }
    }
}

/// True for the error kinds a receive timeout produces.
pub fn is_timeout(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
    )
}
