//! The `loopscope` binary: argument parsing and wiring only. Every command's logic lives in a
//! library crate; `cmd/<command>.rs` turns flags into a library call and a report.

#![forbid(unsafe_code)]
// A binary has no public API: `pub` in its modules means "shared within the binary", which
// unreachable_pub would only ask to spell `pub(crate)`, and missing_docs is about public APIs.
#![allow(unreachable_pub, missing_docs)]

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use loopscope_report::{EXIT_USAGE, Format, stderr_line};

mod cmd;
mod signals;

#[derive(Parser, Debug)]
#[command(
    name = "loopscope",
    version,
    about = "Every kind of loopback test: BERT over any link, loopback health, addresses, martians, listeners",
    after_help = "Exit status: 0 the test passed; 1 it ran and failed (errors over threshold, loss, a \
FAIL check, an exposed port, martians found); 2 usage or environment error, one line starting \
'loopscope: error:'.\n\nRun 'loopscope man COMMAND' for a command's manual page.",
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
    /// BFD speaker (RFC 5880/5881/5883) or Seamless BFD initiator (RFC 7880/7881) against a peer.
    Bfd(cmd::bfd::Args),
    /// Ethernet loopback (Y.1731 / 802.1ag LBM and LBR) to a MEP's MAC: round trips and bit errors.
    EthLb(cmd::eth_lb::Args),
    /// Throughput and request-response latency over a link; also iperf3's client and server.
    Perf(cmd::perf::Args),
    /// Round-trip latency of an audio path, to a thousandth of a frame (audiosim:, wav:, jack:).
    AudioLatency(cmd::audio::Args),
    /// Be the far end: echo everything back on a link.
    Reflect(cmd::reflect::Args),
    /// STAMP (RFC 8762) session-sender, or with --reflect the session-reflector.
    Stamp(cmd::stamp::Args),
    /// Is this host's loopback healthy?
    Doctor(cmd::doctor::Args),
    /// Serve loopscope's tests to Prometheus: scheduled probes on /metrics, blackbox-style /probe.
    Exporter(cmd::exporter::Args),
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
    /// Print a manual page (roff): the overview, or one command's (`loopscope man bert`).
    Man(cmd::meta::ManArgs),
}

/// Subcommands whose output is text for another program, where `--json` has no meaning: the
/// flag is hidden from their help and completions, and refused if given.
const TEXT_ONLY: [&str; 2] = ["completions", "man"];

/// What every command receives besides its own flags.
pub struct Context {
    pub format: Format,
    /// Set by Ctrl-C (SIGINT), SIGTERM or SIGHUP, or when the reader of stdout goes away: end
    /// the run and report what was measured.
    pub stop: Arc<AtomicBool>,
}

/// The clap command, as parsed and as shown in help, completions and man pages.
pub fn cli_command() -> clap::Command {
    let mut command = Cli::command();
    // A hidden `--json` of their own keeps the global one out of these commands' help and
    // completions; given anyway, it still reaches `Cli::json`, and main refuses it.
    for name in TEXT_ONLY {
        command = command.mut_subcommand(name, |sub| {
            sub.arg(
                clap::Arg::new("json")
                    .long("json")
                    .global(true)
                    .hide(true)
                    .action(clap::ArgAction::SetTrue),
            )
        });
    }
    command
}

/// The command as shell completions see it. Completion generators offer hidden flags too, so
/// here `--json` is not global: it is given to each command that has a JSON form.
pub fn completion_command() -> clap::Command {
    let mut command = Cli::command().mut_arg("json", |arg| arg.global(false));
    let json = command
        .get_arguments()
        .find(|arg| arg.get_id() == "json")
        .cloned();
    let names: Vec<String> = command
        .get_subcommands()
        .map(|sub| sub.get_name().to_string())
        .filter(|name| !TEXT_ONLY.contains(&name.as_str()))
        .collect();
    if let Some(json) = json {
        for name in names {
            let json = json.clone().global(true);
            command = command.mut_subcommand(name, |sub| sub.arg(json));
        }
    }
    command
}

fn main() -> ExitCode {
    let cli = match cli_command()
        .try_get_matches()
        .and_then(|matches| Cli::from_arg_matches(&matches))
    {
        Ok(cli) => cli,
        Err(error) => return usage_error(&error),
    };
    if cli.json && matches!(cli.command, Command::Completions(_) | Command::Man(_)) {
        stderr_line!(
            "loopscope: error: --json does not apply to 'completions' or 'man', which print text for the shell or man(1)"
        );
        return ExitCode::from(EXIT_USAGE);
    }

    if matches!(cli.command, Command::Reflect(_)) {
        // Before the first thread (the signal thread below); see the function.
        loopscope_link::reflector::prepare_allocator();
    }
    let stop = Arc::new(AtomicBool::new(false));
    if runs_until_stopped(&cli.command) {
        // Nobody reads what the run prints any more (`| head -1`), and it would never end by
        // itself: end it as Ctrl-C would. A run with an end of its own goes on to it, so its
        // exit code is the one it would have had.
        let reader_gone = Arc::clone(&stop);
        loopscope_report::stdout::on_closed(move || reader_gone.store(true, Ordering::SeqCst));
    }
    let hangup_stops = !matches!(cli.command, Command::Exporter(_));
    if let Err(error) = signals::install(&stop, hangup_stops) {
        stderr_line!("loopscope: error: cannot install signal handlers: {error}");
        return ExitCode::from(EXIT_USAGE);
    }
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
        Command::Bfd(args) => cmd::bfd::run(args, &context),
        Command::EthLb(args) => cmd::eth_lb::run(args, &context),
        Command::Perf(args) => cmd::perf::run(args, &context),
        Command::AudioLatency(args) => cmd::audio::run(args, &context),
        Command::Reflect(args) => cmd::reflect::run(args, &context),
        Command::Stamp(args) => cmd::stamp::run(args, &context),
        Command::Doctor(args) => cmd::doctor::run(args, &context),
        Command::Exporter(args) => cmd::exporter::run(&args, &context),
        Command::Addr(args) => cmd::addr::run(args, &context),
        Command::Martians(args) => cmd::martians::run(args, &context),
        Command::Acl(args) => cmd::acl::run(args, &context),
        Command::Listeners(args) => cmd::listeners::run(args, &context),
        Command::Port(args) => cmd::port::run(args, &context),
        Command::Completions(args) => cmd::meta::completions(&args, &mut completion_command()),
        Command::Man(args) => cmd::meta::man(&args, cli_command()),
    };
    let code = match result {
        Ok(outcome) => outcome.exit_code(),
        Err(error) => {
            // One line: the cause chain joined, so scripts and humans see what and why.
            stderr_line!("loopscope: error: {}", one_line(&cause_chain(&error)));
            EXIT_USAGE
        }
    };
    // What is still buffered goes out now. A closed pipe is fine (the reader chose to stop);
    // any other failure (a full disk) means the report was lost, which the user must hear.
    match loopscope_report::stdout::finish() {
        Ok(()) => ExitCode::from(code),
        Err(error) => {
            if code != EXIT_USAGE {
                stderr_line!("loopscope: error: {error}");
            }
            ExitCode::from(EXIT_USAGE)
        }
    }
}

/// Whether the command runs until a signal stops it (no count, duration or end of input).
fn runs_until_stopped(command: &Command) -> bool {
    match command {
        Command::Ping(args) => args.schedule.runs_until_stopped(),
        Command::Bert(args) => args.forever,
        Command::Reflect(_) => true,
        Command::Exporter(args) => !args.check,
        Command::Bfd(args) => args.count.is_none() && args.duration.is_none(),
        Command::EthLb(args) => args.schedule.runs_until_stopped(),
        Command::Stamp(args) => args.reflect.is_some() || args.count.is_none(),
        Command::Perf(args) => args.server,
        Command::AudioLatency(args) => args.count.is_none() && !args.link.starts_with("wav:"),
        Command::Martians(args) => {
            (args.interface.is_some() || args.collect.is_some()) && args.duration.is_none()
        }
        _ => false,
    }
}

/// The error and its causes joined by ": ", as anyhow's `{:#}` does, but a cause whose text
/// the line already holds is left out: library errors often quote their source in their own
/// message and also mark it as the source, which printed "refused: refused" (issue 11).
/// Mending it here covers every error type at once.
fn cause_chain(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if line.is_empty() {
            line = text;
        } else if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
    }
    line
}

/// The longest error line printed; causes that quote a 100 KB argument are cut in the middle.
const MAX_ERROR_CHARS: usize = 600;

/// Error text on one line: embedded line breaks (a cause that quotes a multi-line input)
/// become spaces, other control characters in quoted input are shown as escapes (issue 12
/// item 10: they would drive the terminal), and a line longer than [`MAX_ERROR_CHARS`] keeps
/// its start and its end (the cause comes last) with the middle left out.
fn one_line(text: &str) -> String {
    let line = text
        .split(['\n', '\r'])
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let line = loopscope_report::text::escape_control(&line).into_owned();
    let length = line.chars().count();
    if length <= MAX_ERROR_CHARS {
        return line;
    }
    let keep = MAX_ERROR_CHARS / 2;
    let head: String = line.chars().take(keep).collect();
    let tail: String = line.chars().skip(length - keep).collect();
    format!(
        "{head} … ({} characters left out) … {tail}",
        length - 2 * keep
    )
}

/// clap's errors, in the project's form: the first line is `loopscope: error: WHAT`; clap's
/// tips and the usage line follow on their own lines. Help and version go to stdout, exit 0.
fn usage_error(error: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if !error.use_stderr() {
        // --help, --version: a closed stdout is not worth a word.
        let _ = error.print();
        return ExitCode::SUCCESS;
    }
    let rendered = error.render().to_string();
    let mut lines = rendered
        .lines()
        .map(str::trim_end)
        .filter(|line| !line.is_empty());
    let first = match error.kind() {
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            "a command is required (see the list below)".to_string()
        }
        _ => {
            let line = lines.next().unwrap_or("invalid usage");
            line.strip_prefix("error: ").unwrap_or(line).to_string()
        }
    };
    stderr_line!("loopscope: error: {}", one_line(&first));
    for line in lines {
        stderr_line!("{}", one_line(line));
    }
    ExitCode::from(EXIT_USAGE)
}
