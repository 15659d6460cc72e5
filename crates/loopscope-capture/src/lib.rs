//! Martian packets in pcap/pcapng, live AF_PACKET and flow exports; uRPF; anti-spoofing ACLs.
//!
//! The address rules (what is martian as a source or destination) come from `loopscope-addr`;
//! this crate adds what depends on where a packet was seen (a loopback address is fine on `lo`
//! and martian anywhere else), reads the packets, and reports.

#![forbid(unsafe_code)]

pub mod acl;
pub mod decode;
pub mod flowexport;
pub mod kernel_routes;
pub mod live;
pub mod martians;
pub mod pcapfile;
mod rules;
pub mod urpf;
mod writer;

/// Errors of this crate: bad input or an environment that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// A capture file could not be opened.
    #[error("cannot open {path}: {source}")]
    Open {
        /// Its path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// An output file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// Its path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is neither pcap nor pcapng.
    #[error("not a pcap or pcapng file: {0}")]
    NotCapture(String),
    /// The routing table (for uRPF) could not be read.
    #[error("routes: {0}")]
    Routes(String),
    /// Flags that do not fit together; the text says how to fix them.
    #[error("{0}")]
    Usage(String),
    /// Another I/O failure.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// Writing the report failed.
    #[error("output: {0}")]
    Output(std::io::Error),
}
