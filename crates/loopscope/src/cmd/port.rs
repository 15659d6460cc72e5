use anyhow::Context as _;
use loopscope_listeners::report::{PortSummary, SocketRecord, SocketTable, TrapRecord};
use loopscope_listeners::{Options, Source};
use loopscope_report::{Outcome, Printer};

use crate::Context;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The port to look up (TCP and UDP).
    pub port: u16,

    /// Look in another network namespace (a name from `ip netns list`, or a path).
    #[arg(long, value_name = "NAME")]
    pub netns: Option<String>,

    /// Where sockets are read from.
    #[arg(long, value_enum, default_value = "auto", env = loopscope_listeners::SOURCE_ENV)]
    pub source: super::listeners::SourceArg,
}

/// Exit 0 when no trap is found (held or not), 1 when one is.
pub fn run(args: Args, context: &Context) -> anyhow::Result<Outcome> {
    let options = Options {
        source: Source::from(args.source),
        netns: args.netns.clone(),
    };
    let report = loopscope_listeners::port::inspect(args.port, &options)
        .with_context(|| format!("looking up port {}", args.port))?;
    let summary = PortSummary::new(&report);
    let mut printer = Printer::stdout(context.format);
    let written = (|| -> std::io::Result<()> {
        if printer.is_json() {
            for holder in &report.holders {
                printer.emit(&SocketRecord(holder))?;
            }
        } else if !report.holders.is_empty() {
            printer.emit(&SocketTable(&report.holders))?;
        }
        for trap in &report.traps {
            printer.emit(&TrapRecord(trap))?;
        }
        printer.emit(&summary)
    })();
    if let Err(error) = written
        && error.kind() != std::io::ErrorKind::BrokenPipe
    {
        return Err(error).context("writing the report");
    }
    Ok(Outcome::from_passed(summary.passed))
}
