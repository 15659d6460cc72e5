use anyhow::Context as _;
use loopscope_listeners::report::{ListenersSummary, SocketRecord, SocketTable};
use loopscope_listeners::{Options, SocketSource};
use loopscope_report::{Outcome, Printer};

use crate::Context;

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Exposure: loopback-only (127/8, ::1), or exposed: wildcard (0.0.0.0, [::] \
which without IPV6_V6ONLY also takes IPv4), a specific non-loopback address, or tied to a \
non-loopback interface (SO_BINDTODEVICE).\n\
Exit status: 0 the list was made; with --expect-loopback-only, 1 when a socket on the given ports \
(or any port) is exposed; 2 bad flags or a namespace that cannot be entered.\n\n\
Examples:\n  loopscope listeners\n  loopscope listeners --exposed --json\n  \
loopscope listeners --expect-loopback-only 5432 6379"
)]
pub struct Args {
    /// List only sockets reachable from outside (wildcard, specific non-loopback address, or
    /// bound to a non-loopback interface).
    #[arg(long)]
    pub exposed: bool,

    /// Audit another network namespace: a name from `ip netns list`, or a path such as
    /// /proc/PID/ns/net (needs root).
    #[arg(long, value_name = "NAME")]
    pub netns: Option<String>,

    /// Exit 1 if any socket (or any socket on the given ports) is reachable from outside: a gate
    /// for CI. Without it, `listeners` lists and exits 0.
    #[arg(long, value_name = "PORT", num_args = 0..)]
    pub expect_loopback_only: Option<Vec<u16>>,

    /// Where sockets are read from: sock_diag netlink with /proc/net fallback (auto), or one only.
    #[arg(long, value_enum, default_value = "auto", env = loopscope_listeners::SOURCE_ENV)]
    pub source: SourceArg,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum SourceArg {
    Auto,
    Netlink,
    Proc,
}

impl From<SourceArg> for SocketSource {
    fn from(value: SourceArg) -> Self {
        match value {
            SourceArg::Auto => SocketSource::Auto,
            SourceArg::Netlink => SocketSource::Netlink,
            SourceArg::Proc => SocketSource::Proc,
        }
    }
}

pub fn run(args: Args, context: &Context) -> anyhow::Result<Outcome> {
    let source = SocketSource::from(args.source);
    let options = Options {
        source,
        netns: args.netns.clone(),
    };
    let snapshot = loopscope_listeners::snapshot(&options).context("listing sockets")?;
    let shown: Vec<_> = snapshot
        .listeners
        .iter()
        .filter(|listener| !args.exposed || listener.exposed)
        .cloned()
        .collect();
    let summary = ListenersSummary::new(
        &snapshot,
        source,
        shown.len(),
        args.expect_loopback_only.as_deref(),
    );

    // 10,000 socket records leave in a few large writes (one per record on a terminal).
    let mut printer = Printer::stdout_batch(context.format);
    if printer.is_json() {
        for listener in &shown {
            printer.emit(&SocketRecord(listener))?;
        }
    } else {
        printer.emit(&SocketTable(&shown))?;
    }
    printer.emit(&summary)?;
    Ok(Outcome::from_passed(summary.passed))
}
