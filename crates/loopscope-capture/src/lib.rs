//! Martian packets in pcap/pcapng, live AF_PACKET and flow exports; uRPF; anti-spoofing ACLs.
//!
//! The address rules (what is martian as a source or destination) come from `loopscope-addr`;
//! this crate adds what depends on where a packet was seen (a loopback address is fine on `lo`
//! and martian anywhere else), reads the packets, and reports.

#![forbid(unsafe_code)]
// Not every public item is documented yet (docs/design.md lists the crates still to do);
// delete this line once `cargo clippy` passes without it.
#![allow(missing_docs)]

pub mod acl;
pub mod decode;
pub mod flowexport;
pub mod kernel_routes;
pub mod live;
pub mod martians;
pub mod pcapfile;
pub mod rules;
pub mod urpf;
pub mod writer;

/// Errors of this crate: bad input or an environment that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("cannot open {path}: {source}")]
    Open {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("not a pcap or pcapng file: {0}")]
    NotCapture(String),
    #[error("routes: {0}")]
    Routes(String),
    #[error("{0}")]
    Usage(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("output: {0}")]
    Output(std::io::Error),
}
