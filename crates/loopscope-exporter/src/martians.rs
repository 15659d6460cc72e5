//! A capture that never ends: `loopscope-capture`'s martian engine (the same scanner
//! `loopscope martians --interface` runs) on the target's interface, in the module's network
//! namespace when it names one. Its per-reason counts go into the target's counters as packets
//! come; when the capture fails it starts again after the target's interval.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use loopscope_capture::live::{self, LiveOptions};
use loopscope_capture::martians::{ScanConfig, Scanner};
use loopscope_report::{Format, Printer};

use crate::config::{Module, Target};
use crate::metrics::TargetMetrics;

/// What a continuous martian capture has counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct MartianCounters {
    /// Packets looked at, martian or not (since the exporter started, over every capture run).
    pub packets: u64,
    /// Martian packets by reason code (`loopback_source`...), sorted by code.
    pub by_reason: Vec<(&'static str, u64)>,
    /// Captures started (1 + restarts after a failure).
    pub runs: u64,
}

/// One capture run, until stopped or failed; `Some(reason)` when it failed.
pub(crate) fn capture_once(
    module: &Module,
    target: &Target,
    metrics: &Arc<Mutex<TargetMetrics>>,
    stop: &AtomicBool,
    global_stop: &AtomicBool,
) -> Option<String> {
    let both = AnyStop { stop, global_stop };
    // The counts of earlier runs, to which this run's are added.
    let base = {
        let mut metrics = crate::lock(metrics);
        let counters = metrics
            .martians
            .get_or_insert_with(MartianCounters::default);
        counters.runs += 1;
        counters.clone()
    };
    let options = LiveOptions {
        interface: target.target.clone(),
        duration: None,
        include_outgoing: false,
    };
    let outcome = loopscope_listeners::in_netns(module.netns.as_deref(), || {
        let config = ScanConfig {
            quiet: true,
            human_findings: false,
            ..ScanConfig::default()
        };
        // The findings are counted, not printed: the printer writes nowhere.
        let mut scanner = Scanner::new(Printer::new(Format::Json, std::io::sink()), config);
        let stop_flag = AtomicBool::new(false);
        // Published at most every 100 ms while packets flow, and at once when they pause
        // (the capture calls back every 100 ms without a packet).
        let (mut published, mut last_seen, mut published_at) = (0u64, 0u64, Instant::now());
        live::run_live_watched(&mut scanner, &options, &stop_flag, &mut |scanner| {
            if both.stopped() {
                stop_flag.store(true, Ordering::SeqCst);
            }
            let packets = scanner.packets_seen();
            let flowing = packets != last_seen;
            last_seen = packets;
            if packets == published
                || (flowing && published_at.elapsed() < Duration::from_millis(100))
            {
                return;
            }
            let counts = scanner.reason_counts();
            let mut metrics = crate::lock(metrics);
            let counters = metrics
                .martians
                .get_or_insert_with(MartianCounters::default);
            counters.packets = base.packets + packets;
            counters.by_reason = add_counts(&base.by_reason, &counts);
            published = packets;
            published_at = Instant::now();
        })
    });
    match outcome {
        Ok(Ok(())) => None,
        Ok(Err(error)) => Some(error.to_string()),
        Err(error) => Some(error.to_string()),
    }
}

/// Two stop flags read as one.
struct AnyStop<'a> {
    stop: &'a AtomicBool,
    global_stop: &'a AtomicBool,
}

impl AnyStop<'_> {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst) || self.global_stop.load(Ordering::SeqCst)
    }
}

/// `base` plus `more`, by reason code, sorted by code.
fn add_counts(
    base: &[(&'static str, u64)],
    more: &[(&'static str, u64)],
) -> Vec<(&'static str, u64)> {
    let mut sums: std::collections::BTreeMap<&'static str, u64> = base.iter().copied().collect();
    for &(code, count) in more {
        *sums.entry(code).or_insert(0) += count;
    }
    sums.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_of_runs_add_by_reason() {
        assert_eq!(
            add_counts(
                &[("loopback_source", 3), ("class_e_source", 1)],
                &[("loopback_source", 2), ("multicast_source", 5)]
            ),
            vec![
                ("class_e_source", 1),
                ("loopback_source", 5),
                ("multicast_source", 5)
            ]
        );
    }
}
