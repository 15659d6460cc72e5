//! Adapters: links that wrap another link and are links themselves, in the manner of smoltcp's
//! `phy` wrappers (`FaultInjector`, `PcapWriter`).
//!
//! - [`modem`]: a Bell 202 FSK modem that turns an audio link into a byte link.
//! - [`impair`]: damages what passes (bit errors, drops, slips, loss, delay, rate).
//! - [`capture`]: writes what crosses the link to a pcapng file.
//!
//! [`AdapterStack`] is the one place that turns the adapter flags the commands share
//! (`--modem`, `--impair OPTIONS`, `--capture FILE`) into adapters around a link: `bert` and
//! `ping` open their links through it, and `reflect` takes its impairment from it.

pub mod capture;
pub mod impair;
pub mod modem;

use std::path::{Path, PathBuf};

use crate::endpoint::{Endpoint, EndpointError};
use crate::link::{Link, LinkError};

use capture::CaptureLink;
use impair::{ImpairmentConfig, SimLink};

/// The adapters to put around a link, from the command line.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AdapterStack {
    /// `--modem`: the endpoint is an audio link; carry bytes over it with the FSK modem.
    pub modem: bool,
    /// `--impair OPTIONS`: the `sim:` adapter's options.
    pub impair: Option<ImpairmentConfig>,
    /// `--capture FILE`: where to write what crosses the link.
    pub capture: Option<PathBuf>,
}

impl AdapterStack {
    /// Parses the adapter flags. `impair` is what follows `sim:?` (e.g. `ber=1e-6&seed=1`).
    pub fn from_flags(
        modem: bool,
        impair: Option<&str>,
        capture: Option<&Path>,
    ) -> Result<Self, EndpointError> {
        Ok(AdapterStack {
            modem,
            impair: impair.map(ImpairmentConfig::parse).transpose()?,
            capture: capture.map(Path::to_path_buf),
        })
    }

    /// No adapter asked for.
    pub fn is_empty(&self) -> bool {
        !self.modem && self.impair.is_none() && self.capture.is_none()
    }

    /// Opens the link `endpoint` names with the adapters around it.
    pub fn open(&self, endpoint: &Endpoint) -> Result<Box<dyn Link>, LinkError> {
        let link = if self.modem {
            modem::open(&endpoint.original)?
        } else {
            crate::open_endpoint(endpoint)?
        };
        self.wrap(link)
    }

    /// Puts the impairment and capture adapters around `link` (the modem, which needs an audio
    /// link, is put on by [`AdapterStack::open`]). The capture sits next to the link, so the
    /// file shows what went onto it (after impairment on the way out) and what came off it
    /// (before the impairment's delay line on the way back), as a capture on the wire would.
    pub fn wrap(&self, link: Box<dyn Link>) -> Result<Box<dyn Link>, LinkError> {
        let mut link = link;
        if let Some(path) = &self.capture {
            link = Box::new(CaptureLink::wrap(link, path));
        }
        if let Some(config) = &self.impair {
            link = Box::new(SimLink::wrap(link, config.clone()));
        }
        Ok(link)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse_into_the_stack_and_typos_are_refused() {
        let stack =
            AdapterStack::from_flags(false, Some("ber=1e-6&seed=3"), Some(Path::new("x.pcapng")))
                .unwrap();
        assert_eq!(
            stack.impair.as_ref().map(|c| (c.ber, c.seed)),
            Some((1e-6, 3))
        );
        assert_eq!(stack.capture.as_deref(), Some(Path::new("x.pcapng")));
        assert!(!stack.is_empty());
        assert!(
            AdapterStack::from_flags(false, None, None)
                .unwrap()
                .is_empty()
        );
        assert!(
            !AdapterStack::from_flags(true, None, None)
                .unwrap()
                .is_empty()
        );
        let error = AdapterStack::from_flags(false, Some("bre=1"), None).unwrap_err();
        assert!(
            error.to_string().contains("unknown option 'bre'"),
            "{error}"
        );
    }

    #[test]
    fn impairment_wraps_the_capture_which_wraps_the_link() {
        let stack =
            AdapterStack::from_flags(false, Some("seed=1"), Some(Path::new("x.pcapng"))).unwrap();
        let link = stack.open(&Endpoint::parse("loop:").unwrap()).unwrap();
        assert_eq!(link.describe(), "loop: (impaired)");
    }
}
