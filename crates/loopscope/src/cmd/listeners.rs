use std::io::{self, BufWriter, Write};

use anyhow::Context as _;
use loopscope_listeners::report::{ListenersSummary, SocketRecord, SocketTable};
use loopscope_listeners::{Options, Source};
use loopscope_report::{Outcome, Printer};

use crate::Context;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// List only sockets reachable from outside (wildcard, specific non-loopback address, or
    /// bound to a non-loopback interface).
    #[arg(long)]
    pub exposed: bool,

    /// Audit another network namespace: a name from `ip netns list`, or a path such as
    /// /proc/PID/ns/net (needs root).
    #[arg(long, value_name = "NAME")]
    pub netns: Option<String>,

    /// Exit 1 if any socket (or any socket on the given ports) is reachable from outside.
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

impl From<SourceArg> for Source {
    fn from(value: SourceArg) -> Self {
        match value {
            SourceArg::Auto => Source::Auto,
            SourceArg::Netlink => Source::Netlink,
            SourceArg::Proc => Source::Proc,
        }
    }
}

/// Stdout through a buffer that the printer's per-record flush does not drain: 10,000 socket
/// records then leave in a few large writes instead of one write each.
struct FlushAtEnd<W: Write>(BufWriter<W>);

impl<W: Write> Write for FlushAtEnd<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.0.write_all(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

pub fn run(args: Args, context: &Context) -> anyhow::Result<Outcome> {
    let source = Source::from(args.source);
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

    let stdout = io::stdout();
    let mut printer = Printer::new(
        context.format,
        FlushAtEnd(BufWriter::with_capacity(1 << 16, stdout.lock())),
    );
    let written = (|| -> io::Result<()> {
        if printer.is_json() {
            for listener in &shown {
                printer.emit(&SocketRecord(listener))?;
            }
        } else {
            printer.emit(&SocketTable(&shown))?;
        }
        printer.emit(&summary)?;
        printer.into_inner().0.flush()
    })();
    match written {
        Ok(()) => {}
        // A closed pipe (`| head`) is the reader's choice, not an error.
        Err(error) if error.kind() == io::ErrorKind::BrokenPipe => {}
        Err(error) => return Err(error).context("writing the report"),
    }
    Ok(Outcome::from_passed(summary.passed))
}
