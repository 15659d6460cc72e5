//! ITU-T G.821 error-performance events from per-second tallies.

use serde::Serialize;

/// What happened in one second of a test.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SecondTally {
    pub bits: u64,
    pub bit_errors: u64,
    /// Sync was lost or absent during the second (counts as severely errored).
    pub sync_loss: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct G821Summary {
    pub seconds: u64,
    pub available_seconds: u64,
    pub unavailable_seconds: u64,
    pub errored_seconds: u64,
    pub severely_errored_seconds: u64,
    pub error_free_seconds: u64,
}

impl G821Summary {
    /// %ES over available time.
    pub fn es_percent(&self) -> f64 {
        todo!()
    }
    pub fn ses_percent(&self) -> f64 {
        todo!()
    }
}

/// Accumulates seconds; the 10-second unavailability rule needs look-ahead, so a summary
/// taken mid-run settles the undecided tail as the standard says at the end of a test.
#[derive(Debug, Default, Clone)]
pub struct G821 {}

impl G821 {
    pub fn new() -> Self {
        G821 {}
    }
    pub fn push(&mut self, second: SecondTally) {
        let _ = second;
        todo!()
    }
    pub fn summary(&self) -> G821Summary {
        todo!()
    }
}
