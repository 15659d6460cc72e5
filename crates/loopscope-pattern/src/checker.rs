//! The self-synchronising checker.

use serde::Serialize;

use crate::spec::{BitOrder, PatternSpec};

/// What the checker expects to receive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    Pattern(PatternSpec),
    /// Detect pattern, polarity and direction from the arriving bits (in this bit order).
    Auto(BitOrder),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckerConfig {
    pub expect: Expect,
}

/// Running totals; every field only grows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CheckCounters {
    /// Bits compared against the reference while in sync.
    pub bits: u64,
    pub bit_errors: u64,
    /// Bits received while hunting for sync (not compared).
    pub unsynced_bits: u64,
    pub sync_losses: u64,
    /// Slips: dropped or inserted bits/bytes after which the pattern resumed at another phase.
    pub slips: u64,
    pub inserted_bits: u64,
    pub deleted_bits: u64,
    pub longest_burst_bits: u64,
    pub in_sync: bool,
}

pub struct Checker {
    config: CheckerConfig,
    counters: CheckCounters,
}

impl Checker {
    pub fn new(config: CheckerConfig) -> Self {
        Checker {
            config,
            counters: CheckCounters::default(),
        }
    }

    pub fn feed(&mut self, data: &[u8]) {
        let _ = (data, &self.config);
        todo!("checker")
    }

    pub fn counters(&self) -> &CheckCounters {
        &self.counters
    }

    /// The pattern being checked: the configured one, or what auto-detection found.
    pub fn pattern(&self) -> Option<&PatternSpec> {
        match &self.config.expect {
            Expect::Pattern(spec) => Some(spec),
            Expect::Auto(_) => None,
        }
    }
}
