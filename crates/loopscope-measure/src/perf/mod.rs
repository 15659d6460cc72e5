//! `perf`: throughput and latency over a link.
//!
//! - `client`: a test against a `loopscope perf --server` or a stock `iperf3 -s`, in
//!   iperf3's control protocol (`control`): TCP, UDP (with loss, reordering and RFC 3550
//!   jitter, `udp`) or Unix streams; parallel streams each on its own thread (`stream`),
//!   reverse and bidirectional; TCP_INFO and getrusage figures.
//! - `rr`: request-response transactions (`--rr`, `--crr`) against our server.
//! - `server`: the far end, serving many clients at once within limits.
//! - `echo`: throughput of a loop (`loop:`, `exec:`, `pty:`, a reflector): what comes back.

mod client;
mod control;
mod echo;
mod report;
pub mod rr;
mod server;
mod stream;
mod udp;

pub use client::{ClientOptions, Transport, run_client, run_under_load};
pub use control::{
    ControlError, Grant, MAX_PARAMS_JSON, ParamError, State, TestParams, TestResults,
};
pub use echo::{EchoOptions, run_echo};
pub use report::{PerfEvent, PerfSummary, SeriesPoint, SeriesRun, SeriesSummary, Spread};
pub use rr::RrOptions;
pub use server::{
    EventSink, Listen, ServerEvent, ServerLimits, ServerOptions, ServerSummary, run_server,
};

use std::io;

/// Which way the bytes go, from the client's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// The client sends (iperf3's default).
    Send,
    /// The server sends (`--reverse`).
    Receive,
    /// Both at once, on separate streams (`--bidir`).
    Bidir,
}

impl Direction {
    /// The name reports use: `send`, `receive` or `bidir`.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Send => "send",
            Direction::Receive => "receive",
            Direction::Bidir => "bidir",
        }
    }
}

/// Socket settings for data streams.
#[derive(Debug, Clone, Default)]
pub struct SocketTuning {
    /// SO_SNDBUF and SO_RCVBUF.
    pub window: Option<usize>,
    /// TCP_CONGESTION.
    pub congestion: Option<String>,
    /// TCP_NODELAY.
    pub nodelay: bool,
    /// TCP_MAXSEG.
    pub mss: Option<u32>,
}

impl SocketTuning {
    /// What must be set before connecting (buffers decide the window scale; MSS the SYN).
    pub fn apply_before_connect(&self, socket: &socket2::Socket) -> io::Result<()> {
        if let Some(window) = self.window {
            socket.set_send_buffer_size(window)?;
            socket.set_recv_buffer_size(window)?;
        }
        if let Some(mss) = self.mss {
            socket.set_tcp_mss(mss)?;
        }
        if let Some(congestion) = &self.congestion {
            socket
                .set_tcp_congestion(congestion.as_bytes())
                .map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!("congestion control '{congestion}' is not available here: {e}"),
                    )
                })?;
        }
        Ok(())
    }
}

/// Why a perf run could not be made or ended in error.
#[derive(Debug, thiserror::Error)]
pub enum PerfError {
    #[error(
        "cannot connect to {link}: {source} (is 'loopscope perf --server' or 'iperf3 -s' running there?)"
    )]
    /// Nothing answered at the far end.
    Connect {
        /// The endpoint as the user wrote it.
        link: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The server could not listen where it was told.
    #[error("cannot listen on {endpoint}: {source}")]
    Listen {
        /// Where.
        endpoint: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The control connection failed or the peer broke iperf3's protocol.
    #[error(transparent)]
    Control(#[from] ControlError),
    /// The link of an echo test could not be opened or failed.
    #[error(transparent)]
    Link(loopscope_link::LinkError),
    /// Options that cannot go together or exceed a limit.
    #[error("{0}")]
    Usage(String),
    /// A socket or thread call failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// Why.
        #[source]
        source: io::Error,
    },
}

impl PerfError {
    /// An [`PerfError::Io`] saying what was being done.
    pub fn io(what: &'static str, source: io::Error) -> Self {
        PerfError::Io { what, source }
    }

    /// Whether the error is the environment's (exit 2: nothing could be tested) rather than
    /// the far end's behaviour during a test (exit 1).
    pub fn is_environment(&self) -> bool {
        matches!(
            self,
            PerfError::Connect { .. }
                | PerfError::Listen { .. }
                | PerfError::Usage(_)
                | PerfError::Link(_)
        )
    }
}
