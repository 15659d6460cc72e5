//! `loopscope pattern gen|check`: patterns to and from files, and the pattern flags `bert`
//! shares.

use std::fs::File;
use std::io::{self, BufWriter, IsTerminal, Read, Write};

use anyhow::{Context as _, bail};
use loopscope_measure::bert::{self, BertOptions};
use loopscope_pattern::checker::Expect;
use loopscope_pattern::{BitOrder, Generator, PatternKind, PatternSpec};
use loopscope_report::{Outcome, Printer};

use crate::Context;

/// Which pattern and how it is sent.
#[derive(clap::Args, Debug, Clone)]
pub struct PatternArgs {
    /// prbs7, prbs9, prbs11, prbs15, prbs20, qrss, prbs23, prbs29, prbs31, ones, zeros, alt,
    /// 1in8, 2in8, 3in24, hex:DEADBEEF (up to 64 bytes); `auto` on the receive side.
    #[arg(short, long, default_value = "prbs31")]
    pub pattern: String,
    #[command(flatten)]
    pub modifiers: PatternModifiers,
}

/// How a named pattern is turned into bytes: its polarity, direction and bit order (the
/// flags `bert`, `pattern gen` and `pattern check` share).
#[derive(clap::Args, Debug, Clone)]
pub struct PatternModifiers {
    /// Complement the pattern relative to the plain LFSR output (default: O.150's polarity).
    #[arg(long, conflicts_with = "no_invert")]
    pub invert: bool,
    /// Use the plain LFSR output even where O.150 inverts the pattern.
    #[arg(long)]
    pub no_invert: bool,
    /// Use the time-reversed sequence.
    #[arg(long)]
    pub reverse: bool,
    /// Put the first bit of the sequence in bit 7 of each byte (default: bit 0, as a UART sends).
    #[arg(long)]
    pub msb_first: bool,
}

impl PatternArgs {
    pub fn bit_order(&self) -> BitOrder {
        if self.modifiers.msb_first {
            BitOrder::MsbFirst
        } else {
            BitOrder::LsbFirst
        }
    }

    /// `None` when the pattern is `auto`.
    pub fn spec(&self) -> anyhow::Result<Option<PatternSpec>> {
        if self.pattern.eq_ignore_ascii_case("auto") {
            return Ok(None);
        }
        let kind: PatternKind = self.pattern.parse()?;
        let invert = match (self.modifiers.invert, self.modifiers.no_invert) {
            (true, _) => Some(true),
            (_, true) => Some(false),
            _ => None,
        };
        Ok(Some(PatternSpec {
            kind,
            invert,
            reverse: self.modifiers.reverse,
            bit_order: self.bit_order(),
        }))
    }

    /// What the receiver expects: the given pattern, or detection.
    pub fn expect(&self) -> anyhow::Result<Expect> {
        Ok(match self.spec()? {
            Some(spec) => Expect::Pattern(spec),
            None => Expect::Auto(self.bit_order()),
        })
    }
}

// Sizes, probabilities and confidence levels are read by the one unit parser every command
// shares (SI vs binary prefixes are documented there).
pub use loopscope_report::units::{parse_confidence, parse_probability, parse_size};

#[derive(clap::Subcommand, Debug)]
pub enum PatternCommand {
    /// Write a pattern to a file or a pipe.
    Gen(GenArgs),
    /// Check a captured stream and print the same summary as `bert`.
    Check(CheckArgs),
}

#[derive(clap::Args, Debug)]
pub struct GenArgs {
    /// The pattern (see `loopscope bert --help`).
    #[arg(value_name = "PATTERN")]
    pub pattern: String,
    /// How many bytes (e.g. 4096, 64Ki, 1G).
    #[arg(long, value_parser = parse_size)]
    pub bytes: u64,
    /// Write here instead of stdout (needed with --json, whose summary goes to stdout).
    #[arg(short, long)]
    pub output: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub modifiers: PatternModifiers,
}

/// What `pattern gen --json` reports once the file is written.
#[derive(serde::Serialize)]
struct GenSummary {
    pattern: String,
    bytes: u64,
    output: String,
}

impl loopscope_report::Record for GenSummary {
    fn kind(&self) -> &'static str {
        "summary"
    }
    fn write_human(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(
            out,
            "{} bytes of {} written to {}",
            self.bytes, self.pattern, self.output
        )
    }
}

#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    /// The captured stream; `-` reads stdin.
    pub file: String,
    #[command(flatten)]
    pub pattern: PatternArgs,
    /// The line rate the capture was taken at, to cut it into seconds for G.821 figures
    /// (bit/s: 9600, 64k, 1.5M).
    #[arg(long, value_parser = loopscope_report::units::parse_rate)]
    pub bit_rate: Option<u64>,
    /// Pass when the BER is at most this (default: any error fails).
    #[arg(long, value_parser = parse_probability)]
    pub max_ber: Option<f64>,
    /// Confidence level of the BER upper bound.
    #[arg(long, default_value = "0.95", value_parser = parse_confidence)]
    pub confidence: f64,
}

pub fn run(command: PatternCommand, context: &Context) -> anyhow::Result<Outcome> {
    match command {
        PatternCommand::Gen(args) => generate(args, context),
        PatternCommand::Check(args) => check(args, context),
    }
}

fn generate(args: GenArgs, context: &Context) -> anyhow::Result<Outcome> {
    if context.format == loopscope_report::Format::Json && args.output.is_none() {
        bail!("--json needs -o FILE: without it stdout carries the pattern itself");
    }
    let pattern = PatternArgs {
        pattern: args.pattern.clone(),
        modifiers: args.modifiers.clone(),
    };
    let Some(spec) = pattern.spec()? else {
        bail!("'auto' only applies to checking; name the pattern to generate");
    };
    let mut out: Box<dyn Write> = match &args.output {
        Some(path) => Box::new(BufWriter::new(
            File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
        )),
        None if io::stdout().is_terminal() => {
            bail!("refusing to write binary data to a terminal; use -o FILE or a pipe")
        }
        // The shared stdout: a reader that stops early (`| head -c 100`) ends the run quietly.
        None => Box::new(loopscope_report::Stdout::batch()),
    };
    let mut generator = Generator::new(&spec);
    let mut buf = vec![0u8; 1 << 20];
    let mut left = args.bytes;
    while left > 0 && !loopscope_report::stdout::is_closed() {
        let n = left.min(buf.len() as u64) as usize;
        generator.fill(&mut buf[..n]);
        out.write_all(&buf[..n]).context("write failed")?;
        left -= n as u64;
    }
    out.flush().context("write failed")?;
    if let Some(path) = &args.output
        && context.format == loopscope_report::Format::Json
    {
        Printer::stdout(context.format).emit(&GenSummary {
            pattern: args.pattern,
            bytes: args.bytes,
            output: path.display().to_string(),
        })?;
    }
    Ok(Outcome::Passed)
}

fn check(args: CheckArgs, context: &Context) -> anyhow::Result<Outcome> {
    let expect = args.pattern.expect()?;
    let reader: Box<dyn Read> = if args.file == "-" {
        Box::new(io::stdin().lock())
    } else {
        Box::new(File::open(&args.file).with_context(|| format!("cannot open {}", args.file))?)
    };
    let fallback = args
        .pattern
        .spec()?
        .unwrap_or_else(|| PatternSpec::standard(PatternKind::Prbs31));
    // The BERT engine's pure part checks the stream: no link, no transmitter.
    let mut options = BertOptions::new(fallback);
    options.rx_expect = expect;
    options.max_ber = args.max_ber;
    options.confidence = args.confidence;
    options.chunk_bytes = 1 << 20;
    let mut printer = Printer::stdout(context.format);
    let mut events = super::bert::EventPrinter::new(context.format);
    let summary = bert::check_stream(
        reader,
        &args.file,
        &options,
        args.bit_rate,
        &context.stop,
        &mut |event| events.print(&event),
    )?;
    printer.emit(&summary)?;
    Ok(Outcome::from_passed(summary.passed))
}
