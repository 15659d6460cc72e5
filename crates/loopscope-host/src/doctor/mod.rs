//! `loopscope doctor`: named checks of this host's loopback, each PASS / WARN / FAIL / SKIP with
//! a one-line finding and the command that would fix it.
//!
//! A check is one function `fn(&mut Probe) -> Finding` in the [`CHECKS`] registry. Facts that
//! several checks need (the netlink snapshot, whether TCP over ::1 works) are measured once by
//! the [`Probe`] and shared, so each check also runs alone (`--check NAME`).

mod checks;
mod probe;
mod round_trips;

use std::time::Instant;

use serde::Serialize;
use serde_json::{Map, Value};

pub use checks::CHECKS;
pub use probe::{Options, Probe};

/// The verdict of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    Pass,
    Warn,
    Fail,
    Skip,
}

impl Status {
    pub fn label(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
            Status::Skip => "SKIP",
        }
    }
}

/// What a check found: a verdict, one line, a fix, and figures for JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub status: Status,
    pub finding: String,
    pub fix: Option<String>,
    pub figures: Map<String, Value>,
}

impl Finding {
    fn new(status: Status, finding: impl Into<String>, fix: Option<String>) -> Self {
        Finding {
            status,
            finding: finding.into(),
            fix,
            figures: Map::new(),
        }
    }
    pub fn pass(finding: impl Into<String>) -> Self {
        Self::new(Status::Pass, finding, None)
    }
    pub fn warn(finding: impl Into<String>, fix: impl Into<String>) -> Self {
        Self::new(Status::Warn, finding, Some(fix.into()))
    }
    pub fn fail(finding: impl Into<String>, fix: impl Into<String>) -> Self {
        Self::new(Status::Fail, finding, Some(fix.into()))
    }
    pub fn skip(reason: impl Into<String>) -> Self {
        Self::new(Status::Skip, reason, None)
    }
    /// Adds a check-specific figure (`mtu`, `rtt_us`, `socket_kind`...) to the JSON event.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.figures.insert(key.to_string(), value.into());
        self
    }
}

/// One entry of the registry.
pub struct Check {
    pub name: &'static str,
    /// What it checks, for `--list`.
    pub about: &'static str,
    pub run: fn(&mut Probe) -> Finding,
}

/// A check's result as reported (JSON event `"type":"check"`).
#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    pub name: &'static str,
    pub status: Status,
    pub finding: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    pub duration_ms: f64,
    #[serde(flatten)]
    pub figures: Map<String, Value>,
}

/// Looks a check up by name.
pub fn find(name: &str) -> Option<&'static Check> {
    CHECKS.iter().find(|check| check.name == name)
}

/// Runs `checks` in order; `on_result` sees each result as it is made.
pub fn run(
    checks: &[&'static Check],
    probe: &mut Probe,
    mut on_result: impl FnMut(&CheckResult),
) -> Vec<CheckResult> {
    let mut results = Vec::with_capacity(checks.len());
    for check in checks {
        let start = Instant::now();
        // A bug in one check must not take the others down: it becomes that check's FAIL.
        let finding = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (check.run)(probe)))
            .unwrap_or_else(|panic| {
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|text| text.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                Finding::fail(
                    format!("the check crashed: {message}"),
                    "report this as a loopscope bug",
                )
            });
        let result = CheckResult {
            name: check.name,
            status: finding.status,
            finding: finding.finding,
            fix: finding.fix,
            duration_ms: start.elapsed().as_secs_f64() * 1e3,
            figures: finding.figures,
        };
        on_result(&result);
        results.push(result);
    }
    results
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_names_are_unique_snake_case() {
        let mut names: Vec<&str> = CHECKS.iter().map(|check| check.name).collect();
        assert!(names.iter().all(|name| {
            name.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        }));
        names.sort_unstable();
        let count = names.len();
        names.dedup();
        assert_eq!(names.len(), count, "duplicate check names");
    }

    #[test]
    fn a_panicking_check_becomes_a_fail() {
        static BROKEN: Check = Check {
            name: "broken",
            about: "panics",
            run: |_| panic!("boom"),
        };
        let mut probe = Probe::new(Options::default());
        let results = run(&[&BROKEN], &mut probe, |_| {});
        assert_eq!(results[0].status, Status::Fail);
        assert!(results[0].finding.contains("boom"));
    }
}
