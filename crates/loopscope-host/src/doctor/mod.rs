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
pub use round_trips::RoundTrip;

/// The verdict of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    /// Nothing wrong.
    Pass,
    /// It works, but not as it should (a degraded path, a risky setting); exit 0.
    Warn,
    /// Loopback is broken here; the run exits 1.
    Fail,
    /// Could not be checked here (no privilege, no IPv6 in the kernel), with the reason.
    Skip,
}

impl Status {
    /// The word printed in human output (`PASS`, `WARN`, `FAIL`, `SKIP`), the same as in JSON.
    pub fn label(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
            Status::Skip => "SKIP",
        }
    }
}

/// When a repair has to run. Later stages rely on earlier ones: an address needs its interface
/// up; IPv6 on an interface needs it enabled and an MTU of at least 1280 (RFC 8200 section 5),
/// so the MTU comes before `::1`; the kernel adds an address's own local route, so a route
/// repair is only ever needed when the address is already there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Bringing `lo` up.
    Interface,
    /// Enabling IPv6 on `lo` (`disable_ipv6`).
    Ipv6,
    /// An MTU that carries IPv6 (at least 1280, RFC 8200 section 5).
    Mtu,
    /// Adding 127.0.0.1/8 or ::1/128 back.
    Address,
    /// Restoring the local routes of the `local` table.
    Route,
    /// Removing a rule that drops loopback traffic.
    Firewall,
    /// Setting a sysctl (route_localnet, ping_group_range, rp_filter).
    Sysctl,
    /// Mending `localhost` in the hosts file (RFC 6761 section 6.3).
    Resolver,
}

/// One shell command that mends what a check found, and the stage it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repair {
    /// When it must run relative to the other repairs.
    pub stage: Stage,
    /// The shell command, exactly as the user would type it.
    pub command: String,
}

impl Repair {
    /// A repair of `stage` that runs `command`.
    pub fn new(stage: Stage, command: impl Into<String>) -> Self {
        Repair {
            stage,
            command: command.into(),
        }
    }
}

/// What to do about a finding: commands to run, or advice when no command can be given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Remedy {
    /// Commands that mend it, in order.
    Run(Vec<Repair>),
    /// What to do when no command can be given (a container's host must act, say).
    Advice(String),
}

impl From<&str> for Remedy {
    fn from(text: &str) -> Self {
        Remedy::Advice(text.to_string())
    }
}

impl From<String> for Remedy {
    fn from(text: String) -> Self {
        Remedy::Advice(text)
    }
}

impl From<Vec<Repair>> for Remedy {
    fn from(repairs: Vec<Repair>) -> Self {
        Remedy::Run(repairs)
    }
}

impl From<Repair> for Remedy {
    fn from(repair: Repair) -> Self {
        Remedy::Run(vec![repair])
    }
}

/// What a check found: a verdict, one line, a fix, and figures for JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// The verdict.
    pub status: Status,
    /// One line saying what was found, in the user's terms.
    pub finding: String,
    /// The fix as one line of text (the commands joined with `&&`, or advice).
    pub fix: Option<String>,
    /// The commands of the fix, when it is commands.
    pub repairs: Vec<Repair>,
    /// Check-specific figures (`mtu`, `rtt_us`...), flattened into the JSON event.
    pub figures: Map<String, Value>,
}

impl Finding {
    fn new(status: Status, finding: impl Into<String>, remedy: Option<Remedy>) -> Self {
        let (fix, repairs) = match remedy {
            None => (None, Vec::new()),
            Some(Remedy::Advice(text)) => (Some(text), Vec::new()),
            Some(Remedy::Run(repairs)) if repairs.is_empty() => (None, repairs),
            Some(Remedy::Run(repairs)) => (
                Some(
                    repairs
                        .iter()
                        .map(|repair| repair.command.as_str())
                        .collect::<Vec<_>>()
                        .join(" && "),
                ),
                repairs,
            ),
        };
        Finding {
            status,
            finding: finding.into(),
            fix,
            repairs,
            figures: Map::new(),
        }
    }
    /// Nothing wrong: `finding` says what was seen.
    pub fn pass(finding: impl Into<String>) -> Self {
        Self::new(Status::Pass, finding, None)
    }
    /// Works but should not be left so; `fix` says how to mend it.
    pub fn warn(finding: impl Into<String>, fix: impl Into<Remedy>) -> Self {
        Self::new(Status::Warn, finding, Some(fix.into()))
    }
    /// Broken; `fix` says how to mend it.
    pub fn fail(finding: impl Into<String>, fix: impl Into<Remedy>) -> Self {
        Self::new(Status::Fail, finding, Some(fix.into()))
    }
    /// Could not be checked; `reason` says why.
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
    /// Its name in output and for `--check NAME` (a contract: scripts select by it).
    pub name: &'static str,
    /// What it checks, for `--list`.
    pub about: &'static str,
    /// Runs the check against the shared facts.
    pub run: fn(&mut Probe) -> Finding,
}

/// A check's result as reported (JSON event `"type":"check"`).
#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    /// The check's name.
    pub name: &'static str,
    /// The verdict.
    pub status: Status,
    /// What was found.
    pub finding: String,
    /// How to mend it, as one line (commands joined with `&&`, or advice).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    /// The fix's commands, one per element, in the order to run them.
    #[serde(skip_serializing_if = "Vec::is_empty", serialize_with = "commands")]
    pub fix_commands: Vec<Repair>,
    /// How long the check took (including the probes it was the first to need).
    pub duration_ms: f64,
    /// Check-specific figures, flattened into the JSON event.
    #[serde(flatten)]
    pub figures: Map<String, Value>,
}

fn commands<S: serde::Serializer>(repairs: &[Repair], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(repairs.iter().map(|repair| repair.command.as_str()))
}

/// One command of the plan and the checks it answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedRepair {
    /// The shell command.
    pub command: String,
    /// Its stage: the plan runs stages in order.
    pub stage: Stage,
    /// The checks it answers (several checks fail for one cause).
    pub checks: Vec<&'static str>,
}

/// What to do about every FAIL and WARN: the commands, each once, in the order they must run,
/// then the advice that is not a command.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// The commands, each once, in the order to run them.
    pub repairs: Vec<PlannedRepair>,
    /// Advice that is not a command, with the checks it answers.
    pub advice: Vec<(String, Vec<&'static str>)>,
}

/// Gathers the fixes of the checks that failed or warned. Checks that fail for the same cause
/// carry the same repair (a downed lo fails a dozen checks and one command mends them all), so
/// each command appears once; the sort by stage is stable, so commands of one stage keep the
/// order the checks gave them.
pub fn plan(results: &[CheckResult]) -> Plan {
    let mut plan = Plan::default();
    for result in results {
        if !matches!(result.status, Status::Fail | Status::Warn) {
            continue;
        }
        if result.fix_commands.is_empty() {
            let Some(advice) = &result.fix else {
                continue;
            };
            match plan.advice.iter_mut().find(|(known, _)| known == advice) {
                Some((_, names)) => names.push(result.name),
                None => plan.advice.push((advice.clone(), vec![result.name])),
            }
            continue;
        }
        for repair in &result.fix_commands {
            match plan
                .repairs
                .iter_mut()
                .find(|planned| planned.command == repair.command)
            {
                Some(planned) => {
                    if !planned.checks.contains(&result.name) {
                        planned.checks.push(result.name);
                    }
                }
                None => plan.repairs.push(PlannedRepair {
                    command: repair.command.clone(),
                    stage: repair.stage,
                    checks: vec![result.name],
                }),
            }
        }
    }
    plan.repairs.sort_by_key(|planned| planned.stage);
    plan
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
            fix_commands: finding.repairs,
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

    fn result(name: &'static str, finding: Finding) -> CheckResult {
        CheckResult {
            name,
            status: finding.status,
            finding: finding.finding,
            fix: finding.fix,
            fix_commands: finding.repairs,
            duration_ms: 0.0,
            figures: finding.figures,
        }
    }

    #[test]
    fn the_plan_runs_each_command_once_in_stage_order() {
        let mtu = Repair::new(Stage::Mtu, "ip link set lo mtu 65536");
        let address = Repair::new(Stage::Address, "ip -6 addr add ::1/128 dev lo");
        let rule = Repair::new(Stage::Firewall, "nft delete rule inet t input handle 3");
        let results = [
            // Listed before the MTU check, as lo_ipv6 is: the plan still puts the MTU first.
            result(
                "lo_ipv6",
                Finding::fail("no ::1", vec![mtu.clone(), address.clone()]),
            ),
            result("lo_mtu", Finding::warn("MTU 1000", mtu.clone())),
            result(
                "tcp_v6",
                Finding::fail("no TCP", vec![mtu.clone(), address]),
            ),
            result("firewall", Finding::fail("dropped", rule)),
            result("bert", Finding::fail("bit errors", "run a memory test")),
            result("route_localnet", Finding::pass("fine")),
        ];
        assert_eq!(
            results[0].fix.as_deref(),
            Some("ip link set lo mtu 65536 && ip -6 addr add ::1/128 dev lo")
        );
        let plan = plan(&results);
        let commands: Vec<(&str, Vec<&str>)> = plan
            .repairs
            .iter()
            .map(|planned| (planned.command.as_str(), planned.checks.clone()))
            .collect();
        assert_eq!(
            commands,
            [
                (
                    "ip link set lo mtu 65536",
                    vec!["lo_ipv6", "lo_mtu", "tcp_v6"]
                ),
                ("ip -6 addr add ::1/128 dev lo", vec!["lo_ipv6", "tcp_v6"]),
                ("nft delete rule inet t input handle 3", vec!["firewall"]),
            ]
        );
        assert_eq!(
            plan.advice,
            [("run a memory test".to_string(), vec!["bert"])]
        );
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
