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
    /// Complement the pattern relative to the plain LFSR output (default: O.150's polarity).
    #[arg(long, conflicts_with = "no_invert")]
    pub invert: bool,
    /// Send the plain LFSR output even where O.150 inverts it.
    #[arg(long)]
    pub no_invert: bool,
    /// Send the time-reversed sequence.
    #[arg(long)]
    pub reverse: bool,
    /// Put the first bit of the sequence in bit 7 of each byte (default: bit 0, as a UART sends).
    #[arg(long)]
    pub msb_first: bool,
}

impl PatternArgs {
    pub fn bit_order(&self) -> BitOrder {
        if self.msb_first {
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
        let invert = match (self.invert, self.no_invert) {
            (true, _) => Some(true),
            (_, true) => Some(false),
            _ => None,
        };
        Ok(Some(PatternSpec {
            kind,
            invert,
            reverse: self.reverse,
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

/// Sizes as people write them: `1G` (10^9), `64Ki` (2^10 multiples), `1e6`, `4096`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| c.is_ascii_alphabetic() && c != 'e' && c != 'E')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a size (try 4096, 64k, 1G, 1Gi)"))?;
    let scale = match unit.trim_end_matches(['B', 'b']) {
        "" => 1.0,
        "k" | "K" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024.0f64.powi(4),
        _ => {
            return Err(format!(
                "'{text}': unknown unit '{unit}' (use k, M, G, T or Ki, Mi, Gi, Ti)"
            ));
        }
    };
    let size = value * scale;
    if !size.is_finite() || size < 0.0 || size > u64::MAX as f64 {
        return Err(format!("'{text}' is out of range"));
    }
    Ok(size.round() as u64)
}

/// A probability such as a BER: `1e-6`, `0.001`.
pub fn parse_probability(text: &str) -> Result<f64, String> {
    let value: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("'{text}' is not a number"))?;
    if !(0.0..=1.0).contains(&value) {
        return Err(format!("'{text}' must be between 0 and 1"));
    }
    Ok(value)
}

/// A confidence level, as a fraction (0.95) or a percentage (95).
pub fn parse_confidence(text: &str) -> Result<f64, String> {
    let value: f64 = text
        .trim()
        .trim_end_matches('%')
        .parse()
        .map_err(|_| format!("'{text}' is not a number"))?;
    let value = if value > 1.0 { value / 100.0 } else { value };
    if !(value > 0.0 && value < 1.0) {
        return Err(format!(
            "'{text}': a confidence level is between 0 and 1 (or 0% and 100%), exclusive"
        ));
    }
    Ok(value)
}

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
    /// Write here instead of stdout.
    #[arg(short, long)]
    pub output: Option<std::path::PathBuf>,
    #[arg(long, conflicts_with = "no_invert")]
    pub invert: bool,
    #[arg(long)]
    pub no_invert: bool,
    #[arg(long)]
    pub reverse: bool,
    #[arg(long)]
    pub msb_first: bool,
}

#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    /// The captured stream; `-` reads stdin.
    pub file: String,
    #[command(flatten)]
    pub pattern: PatternArgs,
    /// The line rate the capture was taken at, to cut it into seconds for G.821 figures.
    #[arg(long, value_parser = parse_size)]
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
        PatternCommand::Gen(args) => generate(args),
        PatternCommand::Check(args) => check(args, context),
    }
}

fn generate(args: GenArgs) -> anyhow::Result<Outcome> {
    let pattern = PatternArgs {
        pattern: args.pattern,
        invert: args.invert,
        no_invert: args.no_invert,
        reverse: args.reverse,
        msb_first: args.msb_first,
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
        None => Box::new(io::stdout().lock()),
    };
    let mut generator = Generator::new(&spec);
    let mut buf = vec![0u8; 1 << 20];
    let mut left = args.bytes;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        generator.fill(&mut buf[..n]);
        out.write_all(&buf[..n]).context("write failed")?;
        left -= n as u64;
    }
    out.flush().context("write failed")?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("1G"), Ok(1_000_000_000));
        assert_eq!(parse_size("64Ki"), Ok(65_536));
        assert_eq!(parse_size("1e6"), Ok(1_000_000));
        assert_eq!(parse_size("2MB"), Ok(2_000_000));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("1X").is_err());
        assert!(parse_size("-5").is_err());
    }

    #[test]
    fn confidences() {
        assert_eq!(parse_confidence("95"), Ok(0.95));
        assert_eq!(parse_confidence("0.99"), Ok(0.99));
        assert_eq!(parse_confidence("99%"), Ok(0.99));
        assert!(parse_confidence("100").is_err());
        assert!(parse_confidence("0").is_err());
    }
}
