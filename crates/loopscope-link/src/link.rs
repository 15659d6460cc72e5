//! The Link abstraction: a link splits into a sending and a receiving half, each driven from its
//! own thread. Every blocking call wakes for its caller: a send gives up when its [`Cancel`]
//! fires (a stop flag set or a deadline passed), a receive returns when its timeout passes, so no
//! test can hang on a peer that stopped reading or writing.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::endpoint::EndpointError;

pub use crate::stats::LinkStats;

/// A link's two halves, each driven from its own thread.
pub type LinkHalves = (Box<dyn LinkSender>, Box<dyn LinkReceiver>);

/// Something that gives back what is sent into it.
pub trait Link: Send {
    /// The endpoint as a user would write it, for reports.
    fn describe(&self) -> String;

    /// Bits of each byte the link carries: 8, or 5..=7 on a serial line set to fewer data bits
    /// (the bits above are lost on the wire, so a test must not put anything there).
    fn data_bits(&self) -> u8 {
        8
    }

    /// Data bits per second a paced link carries (a serial line at its baud rate), so that a
    /// test keeps no more in flight than a moment of line time; `None` when not paced.
    fn line_rate_bps(&self) -> Option<f64> {
        None
    }

    /// Splits the link into halves driven from separate threads. Opening the device or
    /// connecting happens before this returns, so environment errors surface here.
    fn split(self: Box<Self>) -> Result<LinkHalves, LinkError>;
}

/// The transmit half.
pub trait LinkSender: Send {
    /// Sends all of `data`, waiting while the link is full, but never past `cancel`: a sender
    /// stuck behind a peer that stopped reading gives up when the caller's stop flag is set or
    /// its deadline passes. The error says how many bytes the link had taken by then.
    fn send(&mut self, data: &[u8], cancel: &Cancel) -> Result<(), SendError>;

    /// No more data will be sent: flush and signal end-of-stream where the link can, waiting
    /// (for a serial line to drain, say) no longer than `cancel` allows.
    fn finish(&mut self, cancel: &Cancel) -> io::Result<()> {
        let _ = cancel;
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

    /// Whether the link may lose data without closing (datagrams, an impairment that drops):
    /// then an end of stream with bytes missing is loss, not a link that closed early.
    fn is_lossy(&self) -> bool {
        false
    }

    /// Link-specific figures for the summary (datagram loss and reordering, serial line
    /// counters, what an impairment did).
    fn stats(&self) -> LinkStats {
        LinkStats::default()
    }
}

/// When a blocking call must give up: any of its flags set, or its deadline passed.
#[derive(Debug, Clone, Default)]
pub struct Cancel {
    flags: Vec<Arc<AtomicBool>>,
    deadline: Option<Instant>,
}

/// Longest a cancellable call blocks before it looks at its flags again.
pub const CANCEL_CHECK: Duration = Duration::from_millis(50);

impl Cancel {
    /// Never cancelled (for tests and for calls that cannot block).
    pub fn never() -> Self {
        Cancel::default()
    }

    /// Cancelled once `flag` is set.
    pub fn on(flag: Arc<AtomicBool>) -> Self {
        Cancel {
            flags: vec![flag],
            deadline: None,
        }
    }

    /// Also cancelled once `flag` is set.
    pub fn or_on(mut self, flag: Arc<AtomicBool>) -> Self {
        self.flags.push(flag);
        self
    }

    /// Also cancelled at `deadline` (the earlier deadline wins).
    pub fn until(mut self, deadline: Instant) -> Self {
        self.deadline = Some(self.deadline.map_or(deadline, |d| d.min(deadline)));
        self
    }

    /// Whether a flag is set or the deadline has passed.
    pub fn is_cancelled(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
            || self.flags.iter().any(|f| f.load(Ordering::Relaxed))
    }

    /// How long the next wait may block: at most [`CANCEL_CHECK`], less when the deadline is
    /// nearer; `None` when already cancelled.
    pub fn next_wait(&self) -> Option<Duration> {
        if self.flags.iter().any(|f| f.load(Ordering::Relaxed)) {
            return None;
        }
        match self.deadline {
            None => Some(CANCEL_CHECK),
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                (!left.is_zero()).then(|| left.min(CANCEL_CHECK))
            }
        }
    }

    /// Sleeps for `duration` or until cancelled, whichever is first; false when cancelled.
    pub fn sleep(&self, duration: Duration) -> bool {
        let until = Instant::now() + duration;
        loop {
            let Some(step) = self.next_wait() else {
                return false;
            };
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return true;
            }
            std::thread::sleep(step.min(left));
        }
    }
}

/// Why a send stopped short, and how many bytes of it the link had taken by then (those may
/// still come back, so a test counts them as sent).
#[derive(Debug)]
pub struct SendError {
    /// Bytes the link had taken before it stopped (they may still come back).
    pub accepted: usize,
    /// Why it stopped.
    pub kind: SendErrorKind,
}

/// Why a send stopped short.
#[derive(Debug)]
pub enum SendErrorKind {
    /// The caller's stop flag or deadline fired while the link was full.
    Cancelled,
    /// The link failed.
    Failed(io::Error),
}

impl SendError {
    /// The caller stopped the send after `accepted` bytes.
    pub fn cancelled(accepted: usize) -> Self {
        SendError {
            accepted,
            kind: SendErrorKind::Cancelled,
        }
    }

    /// The link failed with `error` after `accepted` bytes.
    pub fn failed(accepted: usize, error: io::Error) -> Self {
        SendError {
            accepted,
            kind: SendErrorKind::Failed(error),
        }
    }

    /// Whether the caller stopped it (as opposed to the link failing).
    pub fn is_cancelled(&self) -> bool {
        matches!(self.kind, SendErrorKind::Cancelled)
    }

    /// The same error after `earlier` more bytes were taken by earlier pieces of one send.
    pub fn after(mut self, earlier: usize) -> Self {
        self.accepted += earlier;
        self
    }

    /// As an `io::Error` (cancellation is `ErrorKind::Interrupted`).
    pub fn into_io(self) -> io::Error {
        match self.kind {
            SendErrorKind::Cancelled => io::Error::new(
                io::ErrorKind::Interrupted,
                "stopped while the link was full",
            ),
            SendErrorKind::Failed(error) => error,
        }
    }

    /// The I/O error, when the link failed.
    pub fn io_error(&self) -> Option<&io::Error> {
        match &self.kind {
            SendErrorKind::Cancelled => None,
            SendErrorKind::Failed(error) => Some(error),
        }
    }
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            SendErrorKind::Cancelled => write!(f, "stopped while the link was full"),
            SendErrorKind::Failed(error) => write!(f, "{error}"),
        }
    }
}

impl std::error::Error for SendError {}

impl From<io::Error> for SendError {
    fn from(error: io::Error) -> Self {
        SendError::failed(0, error)
    }
}

/// Why a link could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The endpoint string is wrong.
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    #[error(
        "unknown link scheme '{0}:' (try loop:, sim:, exec:CMD, tcp://, udp://, unix:, unixgram:, serial:, pty:)"
    )]
    /// No link has this scheme.
    UnknownScheme(String),
    // The cause is the error's source, not part of this message: a chain printed with `{:#}`
    // (anyhow) then names it once, not twice.
    /// Opening failed in the system (no such device, connection refused...).
    #[error("{what}")]
    Io {
        /// What was being done, for the user.
        what: String,
        /// The system's error.
        #[source]
        source: io::Error,
    },
    /// The link cannot do what was asked (an audio link without `--modem`, say).
    #[error("{0}")]
    Unsupported(String),
}

impl LinkError {
    /// An `Io` error: `what` was being done when `source` happened.
    pub fn io(what: impl Into<String>, source: io::Error) -> Self {
        LinkError::Io {
            what: what.into(),
            source,
        }
    }
}

/// An error and its causes, joined by ": ", each said once (as anyhow's `{:#}` prints them).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// True for the error kinds a receive timeout produces.
pub fn is_timeout(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancel_fires_on_any_flag_or_the_deadline() {
        let a = Arc::new(AtomicBool::new(false));
        let b = Arc::new(AtomicBool::new(false));
        let cancel = Cancel::on(Arc::clone(&a)).or_on(Arc::clone(&b));
        assert!(!cancel.is_cancelled());
        assert_eq!(cancel.next_wait(), Some(CANCEL_CHECK));
        b.store(true, Ordering::SeqCst);
        assert!(cancel.is_cancelled());
        assert_eq!(cancel.next_wait(), None);
        let past = Cancel::never().until(Instant::now());
        assert!(past.is_cancelled());
        assert!(!past.sleep(Duration::from_secs(3600)), "sleep ends at once");
        let soon = Cancel::never().until(Instant::now() + Duration::from_millis(5));
        assert!(soon.next_wait().unwrap() <= Duration::from_millis(5));
    }

    /// The cause of an I/O failure is printed once by an error chain, not twice.
    #[test]
    fn an_io_error_names_its_cause_once_in_a_chain() {
        let error = LinkError::io(
            "tcp://127.0.0.1:1: cannot connect",
            io::Error::from_raw_os_error(libc::ECONNREFUSED),
        );
        // What anyhow's `{:#}` prints: each error of the source chain, joined by ": ".
        let mut chain = error.to_string();
        let mut source = std::error::Error::source(&error);
        while let Some(cause) = source {
            chain.push_str(": ");
            chain.push_str(&cause.to_string());
            source = cause.source();
        }
        assert_eq!(chain.matches("Connection refused").count(), 1, "{chain}");
        assert_eq!(error_chain(&error), chain);
    }
}
