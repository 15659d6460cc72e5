//! The martian verdict on one packet: the address rules from `loopscope-addr`, plus the one
//! decision only the capture side can make: a loopback source or destination is normal on a
//! loopback interface and martian anywhere else (RFC 1122 §3.2.1.3, RFC 4291 §2.5.3).

use std::fmt;
use std::net::IpAddr;

use loopscope_addr::martian::{MartianReason, martian_destination, martian_source};
use serde::Serialize;

/// Which address of the packet a reason is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Source,
    Destination,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Source => "source",
            Side::Destination => "destination",
        }
    }
}

/// One reason a packet is martian.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Verdict {
    pub side: Side,
    pub reason: MartianReason,
}

impl Verdict {
    /// `loopback_source`, `class_e_destination` ...: the key of the per-reason totals (the
    /// codes name their side already).
    pub fn key(&self) -> &'static str {
        self.reason.code()
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.reason)
    }
}

/// At most one reason per side, stored inline (no allocation per packet).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Verdicts {
    pub source: Option<MartianReason>,
    pub destination: Option<MartianReason>,
}

impl Verdicts {
    pub fn is_martian(&self) -> bool {
        self.source.is_some() || self.destination.is_some()
    }
    pub fn iter(&self) -> impl Iterator<Item = Verdict> + '_ {
        let source = self.source.map(|reason| Verdict {
            side: Side::Source,
            reason,
        });
        let destination = self.destination.map(|reason| Verdict {
            side: Side::Destination,
            reason,
        });
        source.into_iter().chain(destination)
    }
}

/// Classifies a packet seen on an interface that is (or is not) a loopback interface.
pub fn classify(source: IpAddr, destination: IpAddr, on_loopback: bool) -> Verdicts {
    let mut verdicts = Verdicts {
        source: martian_source(source),
        destination: martian_destination(destination),
    };
    if on_loopback {
        // On lo, loopback traffic is what is expected; every other rule still applies.
        if loopscope_addr::is_loopback(source) {
            verdicts.source = None;
        }
        if loopscope_addr::is_loopback(destination) {
            verdicts.destination = None;
        }
    }
    verdicts
}
