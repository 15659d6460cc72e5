//! `loopscope addr ARG...`: what an address is, in every notation, and whether it is safe to
//! contact. All logic lives in `loopscope-addr`; this module wires flags and prints.
//!
//! Inputs come from the arguments, or one per line (blank lines and `#` comments skipped) from
//! `--file PATH`, from stdin when the only argument is `-`, or from stdin when there are no
//! arguments and stdin is not a terminal. Reading lines is *bulk mode*: one record per line as it
//! is read (streaming NDJSON with `--json`), and an unparsable line is reported as an `error`
//! record rather than ending the run.
//!
//! Exit codes: 0 normally; 1 with `--fail-on-deny` when any input's SSRF verdict is deny (or, in
//! bulk mode, a line is unparsable); 2 when an argument (not a bulk line) does not parse, or a
//! flag is wrong.

use std::fs::File;
use std::io::{self, BufRead, BufReader, IsTerminal, Write};
use std::path::PathBuf;

use anyhow::Context as _;
use loopscope_addr::analysis::{Analysis, analyze};
use loopscope_addr::guard::{Resolver, StaticResolver, SystemResolver};
use loopscope_addr::registry::REGISTRY_SNAPSHOT;
use loopscope_addr::{Decision, Policy, Prefix};
use loopscope_report::input::BoundedLines;
use loopscope_report::{Outcome, Printer, Record, Table, escape_control, read_bounded_text};
use serde::Serialize;

use crate::Context;

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Bulk mode: --file PATH, or `-`, or no inputs with stdin not a terminal: one input per \
line, streamed (NDJSON with --json); a line that does not parse becomes an \"error\" record.\n\
Exit status: 0 normally; 1 with --fail-on-deny when an input is denied (in bulk mode also when a \
line does not parse); 2 when an argument does not parse or a flag is wrong.\n\n\
Examples:\n  loopscope addr 0177.0.0.1 '[::ffff:127.0.0.1]:80' 'http://evil.com\\@127.0.0.1/'\n  \
loopscope --json addr --fail-on-deny \"$URL\"\n  \
loopscope --json addr --file urls.txt --allow-private"
)]
pub struct Args {
    /// Addresses, host names, host:port or URLs. `-` (alone) reads one per line from stdin, as
    /// does giving none when stdin is not a terminal.
    pub inputs: Vec<String>,
    /// Read one address or URL per line from this file (bulk mode).
    #[arg(long, value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// SSRF policy: also allow the private ranges 10/8, 172.16/12, 192.168/16 and fc00::/7.
    #[arg(long)]
    pub allow_private: bool,
    /// SSRF policy: allow this prefix whatever it is (repeatable), e.g. 127.0.0.0/8.
    #[arg(long, value_name = "PREFIX")]
    pub allow: Vec<Prefix>,
    /// SSRF policy: deny this prefix before anything is allowed (repeatable).
    #[arg(long, value_name = "PREFIX")]
    pub deny: Vec<Prefix>,
    /// Do not resolve host names (names other than localhost are then denied as unresolved).
    #[arg(long, conflicts_with = "hosts_file")]
    pub no_resolve: bool,
    /// Resolve names from this hosts(5) file instead of the system resolver.
    #[arg(long, value_name = "PATH")]
    pub hosts_file: Option<PathBuf>,
    /// Exit 1 if any input is denied by the SSRF policy (for scripts: `addr --fail-on-deny "$URL"
    /// && fetch "$URL"`).
    #[arg(long)]
    pub fail_on_deny: bool,
}

/// The longest bulk input line read (a URL is at most a few kilobytes).
const MAX_LINE_BYTES: usize = 64 << 10;
/// The largest hosts file read.
const MAX_HOSTS_BYTES: u64 = 64 << 20;

/// One input's analysis as an output record.
#[derive(Serialize)]
#[serde(transparent)]
struct AddressRecord<'a> {
    analysis: &'a Analysis,
    /// Human output: a blank line first, between the tables of several inputs.
    #[serde(skip)]
    separated: bool,
}

impl Record for AddressRecord<'_> {
    fn kind(&self) -> &'static str {
        "address"
    }
    fn write_human(&self, out: &mut dyn Write) -> io::Result<()> {
        if self.separated {
            writeln!(out)?;
        }
        // The input is the user's (or an attacker's) text: every line of the table is escaped
        // so that no control character reaches the terminal.
        let mut table = Vec::new();
        write_table(self.analysis, &mut table)?;
        for line in String::from_utf8_lossy(&table).lines() {
            writeln!(out, "{}", escape_control(line))?;
        }
        Ok(())
    }
}

/// A line of bulk input that could not be used.
#[derive(Serialize)]
struct ErrorRecord {
    input: String,
    error: String,
    /// Bulk mode: the line number (1-based) in the input.
    #[serde(skip_serializing_if = "Option::is_none")]
    line: Option<u64>,
}

impl Record for ErrorRecord {
    fn kind(&self) -> &'static str {
        "error"
    }
    fn write_human(&self, out: &mut dyn Write) -> io::Result<()> {
        let at = self
            .line
            .map_or(String::new(), |line| format!("line {line}: "));
        writeln!(
            out,
            "{at}{}: error: {}",
            escape_control(&self.input),
            escape_control(&self.error)
        )
    }
}

/// A compact one-line form for bulk human output.
#[derive(Serialize)]
#[serde(transparent)]
struct BulkLine<'a>(&'a Analysis);

impl Record for BulkLine<'_> {
    fn kind(&self) -> &'static str {
        "address"
    }
    fn write_human(&self, out: &mut dyn Write) -> io::Result<()> {
        let a = self.0;
        writeln!(
            out,
            "{}\t{}\t{}\t{}\t{}",
            escape_control(&a.input),
            a.address.map_or("-".to_string(), |ip| ip.to_string()),
            a.registry.as_ref().map_or("-", |r| r.entry.name),
            a.ssrf.code(),
            escape_control(&a.reason)
        )
    }
}

#[derive(Serialize)]
struct Summary {
    inputs: u64,
    allowed: u64,
    denied: u64,
    unparsable: u64,
    loopback: u64,
    registry_snapshot: &'static str,
}

impl Record for Summary {
    fn kind(&self) -> &'static str {
        "summary"
    }
    fn write_human(&self, out: &mut dyn Write) -> io::Result<()> {
        let Summary {
            inputs,
            allowed,
            denied,
            unparsable,
            loopback,
            registry_snapshot,
        } = self;
        writeln!(
            out,
            "{inputs} inputs: {allowed} allowed, {denied} denied, {unparsable} unparsable, {loopback} loopback (IANA registries of {registry_snapshot})"
        )
    }
}

pub fn run(args: Args, context: &Context) -> anyhow::Result<Outcome> {
    let policy = Policy {
        allow_private: args.allow_private,
        allow: args.allow.clone(),
        deny: args.deny.clone(),
    };
    let hosts;
    let resolver: Option<&dyn Resolver> = if args.no_resolve {
        None
    } else if let Some(path) = &args.hosts_file {
        let text = read_bounded_text(path, MAX_HOSTS_BYTES).context("reading the hosts file")?;
        hosts = StaticResolver::parse_hosts(&text);
        Some(&hosts)
    } else {
        Some(&SystemResolver)
    };
    let mut printer = Printer::stdout(context.format);
    let mut summary = Summary {
        inputs: 0,
        allowed: 0,
        denied: 0,
        unparsable: 0,
        loopback: 0,
        registry_snapshot: REGISTRY_SNAPSHOT,
    };

    let stdin_bulk = (args.inputs.len() == 1 && args.inputs[0] == "-")
        || (args.inputs.is_empty() && args.file.is_none() && !io::stdin().is_terminal());
    let bulk: Option<Box<dyn BufRead>> = match &args.file {
        Some(path) => {
            if !args.inputs.is_empty() {
                anyhow::bail!("give inputs either as arguments or with --file, not both");
            }
            let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
            Some(Box::new(BufReader::new(file)))
        }
        None if stdin_bulk => Some(Box::new(io::stdin().lock())),
        None => None,
    };

    if let Some(reader) = bulk {
        for (index, line) in BoundedLines::new(reader, MAX_LINE_BYTES).enumerate() {
            if context.stop.load(std::sync::atomic::Ordering::Relaxed) {
                break;
            }
            let line_number = index as u64 + 1;
            let line = match line {
                Ok(line) => line,
                Err(error) => {
                    // What was read is reported before the error ends the run.
                    let _ = printer.emit(&summary);
                    return Err(anyhow::Error::new(error).context("reading input"));
                }
            };
            let emitted = match line {
                // A line that is too long or not UTF-8 is one bad input, not the end of the run.
                Err(error) => {
                    summary.inputs += 1;
                    summary.unparsable += 1;
                    printer.emit(&ErrorRecord {
                        input: String::new(),
                        error: error.to_string(),
                        line: Some(line_number),
                    })
                }
                Ok(line) => {
                    let input = line.trim();
                    if input.is_empty() || input.starts_with('#') {
                        continue;
                    }
                    summary.inputs += 1;
                    match analyze(input, &policy, resolver) {
                        Ok(analysis) => {
                            count(&mut summary, &analysis);
                            printer.emit(&BulkLine(&analysis))
                        }
                        Err(error) => {
                            summary.unparsable += 1;
                            printer.emit(&ErrorRecord {
                                input: input.to_string(),
                                error: error.to_string(),
                                line: Some(line_number),
                            })
                        }
                    }
                }
            };
            if emitted.is_err() {
                break; // stdout closed (e.g. `| head`): stop quietly
            }
        }
        let _ = printer.emit(&summary);
        let failed = summary.denied + summary.unparsable > 0;
        return Ok(Outcome::from_passed(!(args.fail_on_deny && failed)));
    }

    if args.inputs.is_empty() {
        anyhow::bail!("give an address, host name or URL (or --file PATH, or - for stdin)");
    }
    let mut errors = Vec::new();
    let mut shown = 0;
    for input in &args.inputs {
        summary.inputs += 1;
        match analyze(input, &policy, resolver) {
            Ok(analysis) => {
                count(&mut summary, &analysis);
                printer.emit(&AddressRecord {
                    analysis: &analysis,
                    separated: shown > 0,
                })?;
                shown += 1;
            }
            Err(error) => {
                summary.unparsable += 1;
                errors.push(error.to_string());
            }
        }
    }
    if printer.is_json() {
        printer.emit(&summary)?;
    }
    if let Some(first) = errors.first() {
        anyhow::bail!("{}", escape_control(first));
    }
    Ok(Outcome::from_passed(
        !(args.fail_on_deny && summary.denied > 0),
    ))
}

fn count(summary: &mut Summary, analysis: &Analysis) {
    match analysis.ssrf {
        Decision::Allow => summary.allowed += 1,
        Decision::Deny => summary.denied += 1,
    }
    if analysis.loopback {
        summary.loopback += 1;
    }
}

fn yes_no(value: bool) -> &'static str {
    if value { "yes" } else { "no" }
}

fn flag(value: Option<bool>) -> &'static str {
    match value {
        Some(true) => "true",
        Some(false) => "false",
        None => "n/a",
    }
}

fn write_table(a: &Analysis, out: &mut dyn Write) -> io::Result<()> {
    let mut table = Table::new([a.input.as_str(), ""]);
    table.row(["notation", a.notation]);
    let address = match (&a.address, &a.host) {
        (Some(ip), loopscope_addr::notation::Host::Name(name)) => format!("{ip} (from {name})"),
        (Some(ip), _) => ip.to_string(),
        (None, host) => format!("{host} (unresolved)"),
    };
    table.row(["address".to_string(), address]);
    if let Some(port) = a.port {
        table.row(["port".to_string(), port.to_string()]);
    }
    if let Some(zone) = &a.zone {
        table.row(["zone", zone.as_str()]);
    }
    match &a.registry {
        Some(row) => {
            let e = &row.entry;
            table.row([
                "registry".to_string(),
                format!(
                    "{} {} {} ({}, {})",
                    e.name,
                    e.block,
                    e.rfc,
                    e.source_registry.name(),
                    row.snapshot
                ),
            ]);
            table.row([
                "attributes".to_string(),
                format!(
                    "source={} destination={} forwardable={} globally_reachable={} reserved_by_protocol={}",
                    flag(e.source.value()),
                    flag(e.destination.value()),
                    flag(e.forwardable.value()),
                    flag(e.globally_reachable.value()),
                    flag(e.reserved_by_protocol.value())
                ),
            ]);
            if let Some(note) = e.note {
                table.row(["note", note]);
            }
        }
        None if a.address.is_some() => {
            table.row([
                "registry".to_string(),
                format!("no special-purpose row (IANA registries of {REGISTRY_SNAPSHOT})"),
            ]);
        }
        None => {}
    }
    if a.within.len() > 1 {
        table.row(["within".to_string(), a.within.join(" > ")]);
    }
    // A name that did not resolve has no address: what it would reach is not known.
    let known = |value: bool| {
        if a.resolved {
            yes_no(value)
        } else {
            "unknown (not resolved)"
        }
    };
    let loopback = if a.loopback_by_name {
        "yes (by name, RFC 6761)"
    } else {
        known(a.loopback)
    };
    table.row(["loopback", loopback]);
    table.row(["reaches this host", known(a.reaches_this_host)]);
    table.row([
        "globally reachable",
        a.globally_reachable
            .map_or("unknown (not resolved)", yes_no),
    ]);
    for (label, martian) in [
        ("martian source", &a.martian_source_detail),
        ("martian destination", &a.martian_destination_detail),
    ] {
        let text = match martian {
            Some(m) => format!("{} ({}); Linux: {}", m.code, m.rfc, m.linux_note),
            None => "no".to_string(),
        };
        table.row([label.to_string(), text]);
    }
    for embedded in &a.embedded {
        let port = embedded
            .port
            .map_or(String::new(), |p| format!(" port {p}"));
        table.row([
            format!("embedded {}", embedded.kind),
            format!(
                "{}{port}: {}, loopback {}, globally reachable {}",
                embedded.ipv4,
                embedded.registry.unwrap_or("ordinary unicast"),
                yes_no(embedded.loopback),
                yes_no(embedded.globally_reachable)
            ),
        ]);
    }
    // Show the readings when they matter: one reads another host, or an address is rejected
    // by some parser (a notation only some software understands).
    let differs = a.readings.iter().any(|r| r.host.is_some() && !r.agrees);
    let literal = matches!(a.host, loopscope_addr::notation::Host::Ip(_));
    if differs || (literal && a.readings.iter().any(|r| r.host.is_none())) {
        for r in &a.readings {
            let host = r
                .host
                .as_ref()
                .map_or("rejects".to_string(), |h| h.to_string());
            table.row([
                format!("reading {}", r.parser),
                format!("{host}  ({})", r.used_by),
            ]);
        }
    }
    for answer in &a.answers {
        table.row([
            format!("answer {}", answer.address),
            format!("{}: {}", answer.ssrf.code(), answer.reason),
        ]);
    }
    table.row([
        "ssrf".to_string(),
        format!("{}: {}", a.ssrf.code(), a.reason),
    ]);
    table.write(out)
}
