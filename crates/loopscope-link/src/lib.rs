//! Links: anything that gives back what you send, the adapters that wrap them, and the far ends.
//!
//! A link is named by an endpoint string (`loop:`, `sim:?ber=1e-6`, `exec:cat`,
//! `tcp://127.0.0.1:7007`). [`open`] turns the string into a [`Link`]; a test (in
//! `loopscope-measure`) splits it into a sending and a receiving half and drives each from its
//! own thread.
//!
//! - [`transport`]: one module per way of carrying bytes (memory, exec, sockets, serial, pty).
//! - [`adapter`]: links that wrap a link and are links themselves (impairment).
//! - [`reflector`]: the far end, which gives back what it receives.

#![forbid(unsafe_code)]

pub mod adapter;
pub mod endpoint;
pub mod eth_lb;
pub mod link;
pub mod niu;
pub mod reflector;
pub mod stats;
pub mod transport;

pub use endpoint::{Endpoint, EndpointError, ZoneError, parse_zoned_ip};
pub use link::{Cancel, Link, LinkError, LinkHalves, LinkReceiver, LinkSender, SendError};
pub use stats::LinkStats;

use transport::{exec, memory, pty, serial, tcp, udp, unix};

/// Opens the link an endpoint string names.
pub fn open(endpoint: &str) -> Result<Box<dyn Link>, LinkError> {
    let endpoint = Endpoint::parse(endpoint)?;
    open_endpoint(&endpoint)
}

/// Opens a parsed endpoint. Each scheme lives in its own module; this is the one place that
/// maps scheme names to them.
pub fn open_endpoint(endpoint: &Endpoint) -> Result<Box<dyn Link>, LinkError> {
    match endpoint.scheme.as_str() {
        "loop" => Ok(Box::new(memory::MemoryLoop::from_endpoint(endpoint)?)),
        "sim" if endpoint.option("niu").is_some() => niu::open_sim(endpoint),
        "sim" => Ok(Box::new(adapter::impair::SimLink::from_endpoint(endpoint)?)),
        "exec" => Ok(Box::new(exec::ExecLink::from_endpoint(endpoint)?)),
        "tcp" => Ok(Box::new(tcp::TcpLink::from_endpoint(endpoint)?)),
        "udp" => Ok(Box::new(udp::UdpLink::from_endpoint(endpoint)?)),
        "unix" => Ok(Box::new(unix::UnixLink::from_endpoint(endpoint)?)),
        "serial" => Ok(Box::new(serial::SerialLink::from_endpoint(endpoint)?)),
        "pty" => Ok(Box::new(pty::PtyLink::from_endpoint(endpoint)?)),
        "unixgram" => Ok(Box::new(unix::UnixgramLink::from_endpoint(endpoint)?)),
        audio if transport::audio::is_audio_scheme(audio) => Err(LinkError::Unsupported(format!(
            "'{audio}:' is an audio link: measure it with `loopscope audio-latency`, or add --modem to carry bytes over it"
        ))),
        other => Err(LinkError::UnknownScheme(other.to_string())),
    }
}
