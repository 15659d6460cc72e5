//! Links (anything that gives back what you send), the adapters that wrap them, and the tests
//! that drive them.
//!
//! A link is named by an endpoint string (`loop:`, `sim:?ber=1e-6`, `exec:cat`,
//! `tcp://127.0.0.1:7007`). [`open`] turns the string into a [`Link`]; a test splits it into a
//! sending and a receiving half and drives each from its own thread.

pub mod bert;
pub mod endpoint;
pub mod exec;
pub mod link;
pub mod memory;
pub mod sim;

pub use endpoint::{Endpoint, EndpointError};
pub use link::{Link, LinkError, LinkHalves, LinkReceiver, LinkSender};

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
        "sim" => Ok(Box::new(sim::SimLink::from_endpoint(endpoint)?)),
        "exec" => Ok(Box::new(exec::ExecLink::from_endpoint(endpoint)?)),
        other => Err(LinkError::UnknownScheme(other.to_string())),
    }
}
