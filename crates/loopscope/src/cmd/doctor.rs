//! `loopscope doctor`: is this host's loopback healthy? Flags in, a table or NDJSON out.

use std::io::{self, Write};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context as _, bail};
use loopscope_host::doctor::{self, Check, CheckResult, Options, Probe, Status};
use loopscope_measure::ping::SocketChoice;
use loopscope_report::{Outcome, Printer, Progress, Record, Table};
use serde::Serialize;

use crate::Context;

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Exit status: 0 when no check FAILs (WARN and SKIP do not fail), 1 otherwise, 2 on bad flags.\n\
LOOPSCOPE_ICMP_SOCKET=raw|dgram forces the ICMP socket kind."
)]
pub struct Args {
    /// Run only this check (repeatable). `--list` shows the names.
    #[arg(long = "check", value_name = "NAME")]
    pub checks: Vec<String>,
    /// Do not run this check (repeatable).
    #[arg(long = "skip", value_name = "NAME")]
    pub skips: Vec<String>,
    /// List the checks and exit.
    #[arg(long)]
    pub list: bool,
    /// Resolve `localhost` from this hosts(5) file instead of the system resolver.
    #[arg(long, value_name = "PATH")]
    pub hosts_file: Option<PathBuf>,
    /// Also write an HTML report (each check's status and duration, the findings) to FILE.
    #[arg(long, value_name = "FILE.html")]
    pub report: Option<PathBuf>,
}

pub fn run(args: Args, context: &Context) -> anyhow::Result<Outcome> {
    let mut printer = Printer::stdout(context.format);
    if args.list {
        return list(&mut printer);
    }
    for name in args.checks.iter().chain(&args.skips) {
        if doctor::find(name).is_none() {
            bail!("no check named '{name}' (see `loopscope doctor --list`)");
        }
    }
    if let Some(path) = &args.hosts_file
        && let Err(error) = std::fs::read_to_string(path)
    {
        bail!("cannot read hosts file {}: {error}", path.display());
    }
    let selected: Vec<&'static Check> = doctor::CHECKS
        .iter()
        .filter(|check| args.checks.is_empty() || args.checks.iter().any(|name| name == check.name))
        .filter(|check| !args.skips.iter().any(|name| name == check.name))
        .collect();
    let options = Options {
        hosts_file: args.hosts_file.clone(),
        icmp_socket: SocketChoice::from_env()?,
        ..Options::default()
    };
    let mut probe = Probe::new(options);
    let progress = Progress::new(
        context.format,
        Some(selected.len() as u64),
        "{bar:30} {pos}/{len} {msg}",
    );
    let start = Instant::now();
    let mut done = 0u64;
    let mut write_error = None;
    let results = doctor::run(&selected, &mut probe, |result| {
        done += 1;
        progress.set_position(done);
        progress.set_message(result.name);
        if write_error.is_none()
            && let Err(error) = printer.emit_json_only(&CheckEvent(result))
        {
            write_error = Some(error);
        }
    });
    progress.finish();
    if let Some(error) = write_error {
        // stdout went away (a closed pipe): nothing more can be reported.
        return Err(error.into());
    }
    let summary = Summary::of(&results, start.elapsed().as_secs_f64());
    if !printer.is_json() {
        write_table(&results)?;
    }
    printer.emit(&summary)?;
    if let Some(path) = &args.report {
        use loopscope_report::html;
        let mut report = html::HtmlReport::new("loopscope doctor");
        let selected_names: Vec<&str> = selected.iter().map(|check| check.name).collect();
        report.parameter("checks", selected_names.join(", "));
        if let Some(hosts) = &args.hosts_file {
            report.parameter("hosts_file", hosts.display());
        }
        let bars: Vec<(&str, f64, &str)> = results
            .iter()
            .map(|result| (result.name, result.duration_ms, status_name(result.status)))
            .collect();
        report.plot("Checks", html::status_bars(&bars)?);
        report.table(
            "Findings",
            &["#", "check", "status", "finding", "fix", "ms"],
            results
                .iter()
                .enumerate()
                .map(|(index, result)| {
                    vec![
                        (index + 1).to_string(),
                        result.name.to_string(),
                        result.status.label().to_string(),
                        result.finding.clone(),
                        result.fix.clone().unwrap_or_default(),
                        format!("{:.2}", result.duration_ms),
                    ]
                })
                .collect(),
        );
        report.summary(&summary)?;
        std::fs::write(path, report.render())
            .with_context(|| format!("cannot write the report {}", path.display()))?;
    }
    Ok(Outcome::from_passed(summary.passed))
}

fn status_name(status: Status) -> &'static str {
    match status {
        Status::Pass => "pass",
        Status::Warn => "warn",
        Status::Fail => "fail",
        Status::Skip => "skip",
    }
}

fn list(printer: &mut Printer) -> anyhow::Result<Outcome> {
    if printer.is_json() {
        for check in doctor::CHECKS {
            printer.emit(&ListedCheck {
                name: check.name,
                about: check.about,
            })?;
        }
    } else {
        let mut table = Table::new(["CHECK", "WHAT IT CHECKS"]);
        for check in doctor::CHECKS {
            table.row([check.name, check.about]);
        }
        table.write(&mut loopscope_report::Stdout::batch())?;
    }
    Ok(Outcome::Passed)
}

fn write_table(results: &[CheckResult]) -> io::Result<()> {
    let mut table = Table::new(["CHECK", "STATUS", "FINDING"]);
    for result in results {
        table.row([result.name, result.status.label(), result.finding.as_str()]);
    }
    let mut out = loopscope_report::Stdout::batch();
    table.write(&mut out)?;
    // Each command once, numbered in the order to run it, with the checks it answers: a downed
    // lo fails a dozen checks and one command repairs them all. Advice that is no command
    // follows.
    let plan = doctor::plan(results);
    if !plan.repairs.is_empty() || !plan.advice.is_empty() {
        writeln!(out, "\nTo fix:")?;
        for (number, repair) in plan.repairs.iter().enumerate() {
            writeln!(
                out,
                "  {}. {}\n       ({})",
                number + 1,
                repair.command,
                repair.checks.join(", ")
            )?;
        }
        for (advice, names) in &plan.advice {
            writeln!(out, "  - {advice}\n       ({})", names.join(", "))?;
        }
    }
    Ok(())
}

/// One check as a JSON event: `{"type":"check","name":...,"status":"PASS",...}`.
#[derive(Serialize)]
#[serde(transparent)]
struct CheckEvent<'a>(&'a CheckResult);

impl Record for CheckEvent<'_> {
    fn kind(&self) -> &'static str {
        "check"
    }
    fn write_human(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(
            out,
            "{} {} {}",
            self.0.name,
            self.0.status.label(),
            self.0.finding
        )
    }
}

#[derive(Serialize)]
struct ListedCheck {
    name: &'static str,
    about: &'static str,
}

impl Record for ListedCheck {
    fn kind(&self) -> &'static str {
        "check_info"
    }
    fn write_human(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(out, "{}  {}", self.name, self.about)
    }
}

#[derive(Serialize)]
struct Summary {
    checks: usize,
    pass: usize,
    warn: usize,
    fail: usize,
    skip: usize,
    failed_checks: Vec<&'static str>,
    warned_checks: Vec<&'static str>,
    /// The commands that mend every FAIL and WARN, each once, in the order to run them.
    fixes: Vec<String>,
    /// What to do where no command can be given.
    advice: Vec<String>,
    elapsed_s: f64,
    passed: bool,
}

impl Summary {
    fn of(results: &[CheckResult], elapsed_s: f64) -> Self {
        let count = |status: Status| {
            results
                .iter()
                .filter(|result| result.status == status)
                .count()
        };
        let names = |status: Status| {
            results
                .iter()
                .filter(|result| result.status == status)
                .map(|result| result.name)
                .collect::<Vec<_>>()
        };
        let plan = doctor::plan(results);
        Summary {
            checks: results.len(),
            pass: count(Status::Pass),
            warn: count(Status::Warn),
            fail: count(Status::Fail),
            skip: count(Status::Skip),
            failed_checks: names(Status::Fail),
            warned_checks: names(Status::Warn),
            fixes: plan
                .repairs
                .into_iter()
                .map(|repair| repair.command)
                .collect(),
            advice: plan.advice.into_iter().map(|(advice, _)| advice).collect(),
            elapsed_s,
            passed: count(Status::Fail) == 0,
        }
    }
}

impl Record for Summary {
    fn kind(&self) -> &'static str {
        "summary"
    }
    fn write_human(&self, out: &mut dyn Write) -> io::Result<()> {
        let Summary {
            checks,
            elapsed_s,
            pass,
            warn,
            fail,
            skip,
            ..
        } = self;
        let verdict = if *fail > 0 {
            "loopback is BROKEN"
        } else if *warn > 0 {
            "loopback works, with warnings"
        } else {
            "loopback is healthy"
        };
        writeln!(
            out,
            "\n{checks} checks in {elapsed_s:.1} s: {pass} pass, {warn} warn, {fail} fail, {skip} skip: {verdict}"
        )
    }
}
