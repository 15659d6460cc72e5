//! ITU-T G.821 error-performance events from per-second tallies.
//!
//! Definitions (ITU-T G.821, bit based):
//! - an **errored second** (ES) has at least one bit error or a loss of sync;
//! - a **severely errored second** (SES) has a BER of at least 1e-3 or a loss of sync;
//! - an **error-free second** (EFS) has neither (counted in available time);
//! - **unavailable time** begins at the first of 10 consecutive SES (those 10 seconds are
//!   unavailable) and ends at the first of 10 consecutive non-SES seconds (those 10 seconds are
//!   available). ES, SES and EFS are counted in available time only.
//!
//! Whether a run of SES (or, while unavailable, of non-SES seconds) changes the state is known
//! only once it reaches 10 seconds, so up to 9 seconds stay undecided. [`G821::summary`] settles
//! such a tail as the current state: while available, fewer than 10 trailing SES are available
//! SES (unavailability has not been established); while unavailable, fewer than 10 trailing
//! non-SES seconds stay unavailable. This is how a test that ends there must count them too, and
//! later seconds can still turn them the other way, so a mid-run summary may differ from the
//! final one in at most the last 9 seconds.
//!
//! Only whole seconds are pushed: G.821 counts seconds, and a partial last second of a test
//! counted as one would inflate every figure and percentage (the BERT engine reports it apart).

use serde::Serialize;

use crate::availability::{self, Availability};

/// BER at or above which a second is severely errored.
pub const SES_BER_THRESHOLD: f64 = 1e-3;
/// Consecutive seconds that enter or leave unavailable time.
pub use crate::availability::UNAVAILABILITY_SECONDS;

/// What happened in one second of a test.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SecondTally {
    /// Bits compared in the second.
    pub bits: u64,
    /// Of them, bits received wrong.
    pub bit_errors: u64,
    /// Sync was lost or absent during the second (counts as severely errored).
    pub sync_loss: bool,
}

impl SecondTally {
    /// At least one bit error, or sync lost or absent (G.821 ES).
    pub fn is_errored(&self) -> bool {
        self.sync_loss || self.bit_errors > 0
    }

    /// A BER of at least 1e-3, or sync lost or absent (G.821 SES).
    pub fn is_severely_errored(&self) -> bool {
        self.sync_loss
            || (self.bits > 0 && self.bit_errors as f64 >= SES_BER_THRESHOLD * self.bits as f64)
    }
}

/// G.821 figures over a test; ES, SES and EFS are counted in available time only.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct G821Summary {
    /// Whole seconds pushed.
    pub seconds: u64,
    /// Seconds in available time.
    pub available_seconds: u64,
    /// Seconds in unavailable time (UAS).
    pub unavailable_seconds: u64,
    /// Errored seconds (ES).
    pub errored_seconds: u64,
    /// Severely errored seconds (SES).
    pub severely_errored_seconds: u64,
    /// Error-free seconds (EFS).
    pub error_free_seconds: u64,
}

impl availability::Second for SecondTally {
    fn is_severely_errored(&self) -> bool {
        SecondTally::is_severely_errored(self)
    }
}

impl availability::Tally<SecondTally> for G821Summary {
    fn add_available(&mut self, second: &SecondTally) {
        G821Summary::add_available(self, second);
    }

    fn add_unavailable(&mut self) {
        G821Summary::add_unavailable(self);
    }
}

impl G821Summary {
    /// %ES over available time (0 when nothing is available).
    pub fn es_percent(&self) -> f64 {
        percent(self.errored_seconds, self.available_seconds)
    }

    /// %SES over available time (0 when nothing is available).
    pub fn ses_percent(&self) -> f64 {
        percent(self.severely_errored_seconds, self.available_seconds)
    }

    fn add_available(&mut self, second: &SecondTally) {
        self.seconds += 1;
        self.available_seconds += 1;
        if second.is_errored() {
            self.errored_seconds += 1;
        } else {
            self.error_free_seconds += 1;
        }
        if second.is_severely_errored() {
            self.severely_errored_seconds += 1;
        }
    }

    fn add_unavailable(&mut self) {
        self.seconds += 1;
        self.unavailable_seconds += 1;
    }
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        100.0 * part as f64 / whole as f64
    }
}

/// Accumulates seconds; the 10-second unavailability rule needs look-ahead, so a summary
/// taken mid-run settles the undecided tail as described in the module documentation.
#[derive(Debug, Default, Clone)]
pub struct G821 {
    seconds: Availability<SecondTally, G821Summary>,
}

impl G821 {
    /// Nothing counted yet.
    pub fn new() -> Self {
        G821::default()
    }

    /// Whether the test is in unavailable time (as far as decided).
    pub fn is_unavailable(&self) -> bool {
        self.seconds.is_unavailable()
    }

    /// Counts one whole second.
    pub fn push(&mut self, second: SecondTally) {
        self.seconds.push(second);
    }

    /// The figures so far, the undecided tail counted in the current state.
    pub fn summary(&self) -> G821Summary {
        self.seconds.summary()
    }
}
