//! ITU-T G.826 block-based error performance, from per-second tallies of blocks (ESF CRC-6
//! superframes, E1 CRC-4 sub-multiframes) and defects.
//!
//! Definitions (G.826 §3 and Annex A):
//! - an **errored block** (EB) has one or more bit errors (here: its CRC failed);
//! - an **errored second** (ES) has one or more errored blocks or at least one defect;
//! - a **severely errored second** (SES) has 30% or more errored blocks, or at least one
//!   defect (loss of frame, loss of signal);
//! - a **background block error** (BBE) is an errored block not in an SES;
//! - **unavailable time** begins at the first of 10 consecutive SES (those 10 seconds are
//!   unavailable) and ends at the first of 10 consecutive non-SES seconds (which are
//!   available). ES, SES, EB and BBE are counted in available time only;
//! - **ESR** = ES / available seconds, **SESR** = SES / available seconds, **BBER** = BBE /
//!   blocks in available time outside SESs.
//!
//! As with G.821 ([`crate::g821`]), a run of up to 9 seconds that might still change the state
//! is undecided; [`G826::summary`] counts such a tail in the current state.
//!
//! The summary's field names are the abbreviations test sets print: `es`, `ses`, `bbe`, `eb`,
//! `uas`, `esr`, `sesr`, `bber`.

use serde::Serialize;

use crate::availability::{self, Availability};

/// Fraction of errored blocks that makes a second severely errored (30%).
pub const SES_BLOCK_FRACTION: f64 = 0.3;
/// Consecutive seconds that enter or leave unavailable time.
pub use crate::availability::UNAVAILABILITY_SECONDS;

/// What happened in one second.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlockSecond {
    /// Blocks that ended in this second.
    pub blocks: u64,
    /// Of them, blocks whose CRC failed.
    pub errored_blocks: u64,
    /// A defect (loss of frame or of signal) was present during the second.
    pub defect: bool,
}

impl BlockSecond {
    /// At least one errored block, or a defect (G.826 ES).
    pub fn is_errored(&self) -> bool {
        self.defect || self.errored_blocks > 0
    }

    /// 30% or more errored blocks, or a defect. Compared in integers: `10 * eb >= 3 * blocks`.
    pub fn is_severely_errored(&self) -> bool {
        self.defect || (self.blocks > 0 && 10 * self.errored_blocks >= 3 * self.blocks)
    }
}

/// G.826 figures over a measurement.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct G826Summary {
    /// Whole seconds pushed.
    pub seconds: u64,
    /// Seconds in available time.
    pub available_seconds: u64,
    /// Unavailable seconds.
    pub uas: u64,
    /// Errored seconds (available time).
    pub es: u64,
    /// Severely errored seconds (available time).
    pub ses: u64,
    /// Errored blocks (available time).
    pub eb: u64,
    /// Background block errors: errored blocks outside SESs (available time).
    pub bbe: u64,
    /// Blocks in available time.
    pub blocks: u64,
    /// Blocks in available time outside SESs: the denominator of BBER.
    pub bbe_blocks: u64,
    /// Errored second ratio: ES over available seconds.
    pub esr: f64,
    /// Severely errored second ratio: SES over available seconds.
    pub sesr: f64,
    /// Background block error ratio: BBE over blocks in available time outside SESs.
    pub bber: f64,
}

impl availability::Second for BlockSecond {
    fn is_severely_errored(&self) -> bool {
        BlockSecond::is_severely_errored(self)
    }
}

impl availability::Tally<BlockSecond> for G826Summary {
    fn add_available(&mut self, second: &BlockSecond) {
        G826Summary::add_available(self, second);
    }

    fn add_unavailable(&mut self) {
        G826Summary::add_unavailable(self);
    }
}

impl G826Summary {
    fn add_available(&mut self, second: &BlockSecond) {
        self.seconds += 1;
        self.available_seconds += 1;
        self.blocks += second.blocks;
        self.eb += second.errored_blocks;
        if second.is_errored() {
            self.es += 1;
        }
        if second.is_severely_errored() {
            self.ses += 1;
        } else {
            self.bbe += second.errored_blocks;
            self.bbe_blocks += second.blocks;
        }
    }

    fn add_unavailable(&mut self) {
        self.seconds += 1;
        self.uas += 1;
    }

    fn with_ratios(mut self) -> Self {
        let ratio = |part: u64, whole: u64| {
            if whole == 0 {
                0.0
            } else {
                part as f64 / whole as f64
            }
        };
        self.esr = ratio(self.es, self.available_seconds);
        self.sesr = ratio(self.ses, self.available_seconds);
        self.bber = ratio(self.bbe, self.bbe_blocks);
        self
    }
}

/// Accumulates seconds.
#[derive(Debug, Clone, Default)]
pub struct G826 {
    seconds: Availability<BlockSecond, G826Summary>,
}

impl G826 {
    /// Nothing counted yet.
    pub fn new() -> Self {
        G826::default()
    }

    /// Whether the measurement is in unavailable time (as far as decided).
    pub fn is_unavailable(&self) -> bool {
        self.seconds.is_unavailable()
    }

    /// Counts one whole second.
    pub fn push(&mut self, second: BlockSecond) {
        self.seconds.push(second);
    }

    /// The figures so far, the undecided tail counted in the current state.
    pub fn summary(&self) -> G826Summary {
        self.seconds.summary().with_ratios()
    }
}
