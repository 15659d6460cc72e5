use anyhow::Context as _;
use loopscope_listeners::report::{PortSummary, SocketRecord, SocketTable, TrapRecord};
use loopscope_listeners::{Options, SocketSource};
use loopscope_report::{Outcome, Printer};

use crate::Context;

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Traps are ways a port that looks fine still fails its users:\n  \
localhost_order        localhost resolves first to an address the port is not held on \
(e.g. ::1 before 127.0.0.1), so clients that try only the first address are refused\n  \
localhost_unreachable  held, but on no address that localhost resolves to\n  \
other_user             held by another user: you can neither stop it nor take the port\n  \
ephemeral              inside net.ipv4.ip_local_port_range and not reserved: the kernel may \
give it to an outgoing connection first\n\
Exit status: 0 free, or held on loopback only with no trap; 1 exposed beyond loopback or a \
trap found; 2 bad flags.\n\n\
Examples:\n  loopscope port 22\n  loopscope --json port 5432"
)]
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

/// Exit 0 when the port is free or held on loopback only without a trap; 1 when it is exposed
/// beyond loopback or a trap is found.
pub fn run(args: Args, context: &Context) -> anyhow::Result<Outcome> {
    let options = Options {
        source: SocketSource::from(args.source),
        netns: args.netns.clone(),
    };
    let report = loopscope_listeners::port::inspect(args.port, &options)
        .with_context(|| format!("looking up port {}", args.port))?;
    let summary = PortSummary::new(&report);
    let mut printer = Printer::stdout_batch(context.format);
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
    printer.emit(&summary)?;
    Ok(Outcome::from_passed(summary.passed))
}
