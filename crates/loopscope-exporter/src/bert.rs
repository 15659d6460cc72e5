//! A BERT that never ends: `measure::bert` with no amount, watched all day (a serial line with a
//! loopback plug, a reflector far away). Its per-second figures (G.821 seconds) go into the
//! target's counters as they come; when the link fails the run starts again after the target's
//! interval.

use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};

use loopscope_link::Endpoint;
use loopscope_link::adapter::AdapterStack;
use loopscope_measure::bert::{self, Amount, BertControl, BertEvent, BertOptions};
use loopscope_pattern::{PatternKind, PatternSpec};

use crate::config::{Module, Target};
use crate::metrics::TargetMetrics;

/// What a continuous BERT has counted.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct BertCounters {
    /// Bits checked in whole seconds.
    pub bits: u64,
    /// Bit errors in them.
    pub bit_errors: u64,
    /// Whole seconds measured.
    pub seconds: u64,
    /// Seconds with at least one error (G.821 ES).
    pub errored_seconds: u64,
    /// Seconds with a BER of 1e-3 or worse (G.821 SES).
    pub severely_errored_seconds: u64,
    /// The checker is in sync now.
    pub in_sync: bool,
    /// Times sync was lost.
    pub sync_losses: u64,
    /// Bit slips.
    pub slips: u64,
    /// Runs started (1 + restarts after a link failure).
    pub runs: u64,
}

/// One BERT run over `target`, until `stop` or a link failure; `Some(reason)` when it failed.
/// The checker is out of sync once the run has ended.
pub(crate) fn run_once_then_unsync(
    module: &Module,
    target: &Target,
    metrics: &Arc<Mutex<TargetMetrics>>,
    stop: &Arc<AtomicBool>,
) -> Option<String> {
    let error = run_once(module, target, metrics, stop);
    let mut metrics = crate::lock(metrics);
    metrics
        .bert
        .get_or_insert_with(BertCounters::default)
        .in_sync = false;
    error
}

fn run_once(
    module: &Module,
    target: &Target,
    metrics: &Arc<Mutex<TargetMetrics>>,
    stop: &Arc<AtomicBool>,
) -> Option<String> {
    let kind: PatternKind = match module.pattern.parse() {
        Ok(kind) => kind,
        Err(error) => return Some(format!("{error}")),
    };
    let link = match AdapterStack::from_flags(false, module.impair.as_deref(), None)
        .map_err(|error| error.to_string())
        .and_then(|adapters| {
            Endpoint::parse(&target.target)
                .map_err(|error| error.to_string())
                .and_then(|endpoint| adapters.open(&endpoint).map_err(|e| e.to_string()))
        }) {
        Ok(link) => link,
        Err(error) => return Some(error),
    };
    let mut options = BertOptions::new(PatternSpec::standard(kind));
    options.amount = Amount::Unlimited;
    // Small chunks: a slow link should report every second, not every 256 KiB.
    options.chunk_bytes = 4096;
    let control = BertControl {
        stop: Arc::clone(stop),
        single_errors: Arc::new(AtomicU64::new(0)),
        bursts: Arc::new(AtomicU64::new(0)),
    };
    {
        let mut metrics = crate::lock(metrics);
        metrics.bert.get_or_insert_with(BertCounters::default).runs += 1;
    }
    let result = bert::run(
        link,
        &options,
        &control,
        &mut |event| {
            let mut metrics = crate::lock(metrics);
            let counters = metrics.bert.get_or_insert_with(BertCounters::default);
            match event {
                BertEvent::SyncAcquired { .. } => counters.in_sync = true,
                BertEvent::SyncLost { .. } => {
                    counters.in_sync = false;
                    counters.sync_losses += 1;
                }
                BertEvent::Slip { new_slips, .. } => counters.slips += new_slips,
                BertEvent::Second {
                    bits,
                    bit_errors,
                    severely_errored,
                    ..
                } => {
                    counters.seconds += 1;
                    counters.bits += bits;
                    counters.bit_errors += bit_errors;
                    if bit_errors > 0 {
                        counters.errored_seconds += 1;
                    }
                    if severely_errored {
                        counters.severely_errored_seconds += 1;
                    }
                }
            }
        },
        &mut |_, _| {},
    );
    match result {
        Ok(summary) => summary.error,
        Err(error) => Some(error.to_string()),
    }
}
