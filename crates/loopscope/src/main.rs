//! The `loopscope` binary: argument parsing and wiring only. Every command's logic lives in a
//! library crate; `cmd/<command>.rs` turns flags into a library call and a report.

#![forbid(unsafe_code)]
// A binary has no public API: `pub` in its modules means "shared within the binary", which
// unreachable_pub would only ask to spell `pub(crate)`, and missing_docs is about public APIs.
#![allow(unreachable_pub, missing_docs)]

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::{CommandFactory, Parser, Subcommand};
use loopscope_report::{EXIT_USAGE, Format};

mod cmd;

#[derive(Parser, Debug)]
#[command(
    name = "loopscope",
    version,
    about = "Every kind of loopback test: BERT over any link, loopback health, addresses, martians, listeners",
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    /// Newline-delimited JSON on stdout: events while running, then one object with "type":"summary".
    #[arg(long, global = true)]
    json: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Bit-error-rate test over a link (O.150 patterns, G.821 figures).
    Bert(cmd::bert::Args),
    /// Generate a pattern to a file, or check a captured stream.
    #[command(subcommand)]
    Pattern(cmd::pattern::PatternCommand),
    /// Round-trip latency over a link (or ICMP echo with icmp://ADDR).
    Ping(cmd::ping::Args),
    /// Round-trip latency of an audio path, to a thousandth of a frame (audiosim:, wav:, jack:).
    AudioLatency(cmd::audio::Args),
    /// Be the far end: echo everything back on a link.
    Reflect(cmd::reflect::Args),
    /// STAMP (RFC 8762) session-sender, or with --reflect the session-reflector.
    Stamp(cmd::stamp::Args),
    /// Is this host's loopback healthy?
    Doctor(cmd::doctor::Args),
    /// What is this address, in every notation? Loopback, martian, SSRF verdicts.
    Addr(cmd::addr::Args),
    /// Find spoofed loopback and other martian packets in captures, live traffic and flow exports.
    Martians(cmd::martians::Args),
    /// Generate anti-spoofing ingress filters.
    Acl(cmd::acl::Args),
    /// Listening sockets and their exposure.
    Listeners(cmd::listeners::Args),
    /// Who holds a port, on which addresses, and the traps.
    Port(cmd::port::Args),
    /// Print a shell completion script.
    Completions(cmd::meta::CompletionsArgs),
    /// Print the man page (roff).
    Man,
}

/// What every command receives besides its own flags.
pub struct Context {
    pub format: Format,
    /// Set by Ctrl-C (SIGINT) or SIGTERM: end the run and report what was measured.
    pub stop: Arc<AtomicBool>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let stop = Arc::new(AtomicBool::new(false));
    install_stop_handler(&stop);
    let context = Context {
        format: if cli.json {
            Format::Json
        } else {
            Format::Human
        },
        stop,
    };

    let result = match cli.command {
        Command::Bert(args) => cmd::bert::run(args, &context),
        Command::Pattern(command) => cmd::pattern::run(command, &context),
        Command::Ping(args) => cmd::ping::run(args, &context),
        Command::AudioLatency(args) => cmd::audio::run(args, &context),
        Command::Reflect(args) => cmd::reflect::run(args, &context),
        Command::Stamp(args) => cmd::stamp::run(args, &context),
        Command::Doctor(args) => cmd::doctor::run(args, &context),
        Command::Addr(args) => cmd::addr::run(args, &context),
        Command::Martians(args) => cmd::martians::run(args, &context),
        Command::Acl(args) => cmd::acl::run(args, &context),
        Command::Listeners(args) => cmd::listeners::run(args, &context),
        Command::Port(args) => cmd::port::run(args, &context),
        Command::Completions(args) => cmd::meta::completions(args, &mut Cli::command()),
        Command::Man => cmd::meta::man(&Cli::command()),
    };
    match result {
        Ok(outcome) => ExitCode::from(outcome.exit_code()),
        Err(error) => {
            // One line: the cause chain joined, so scripts and humans see what and why.
            eprintln!("loopscope: error: {error:#}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

/// First Ctrl-C asks the run to stop and report; a second one exits at once.
fn install_stop_handler(stop: &Arc<AtomicBool>) {
    let flag = Arc::clone(stop);
    let _ = ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
    });
}
