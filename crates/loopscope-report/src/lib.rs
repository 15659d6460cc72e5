//! The one output model every loopscope command uses.
//!
//! A command produces *records*: events while it runs and one summary at the end. Each record
//! knows how to render itself for humans; the [`Printer`] decides whether the human form or one
//! line of JSON goes to stdout. JSON lines carry a `"type"` field first (`"summary"` for the final
//! object), so `jq 'select(.type=="summary")'` always finds the result.
//!
//! Everything reaches stdout through [`stdout::Stdout`] (tty-aware buffering, a closed pipe
//! ends quietly) and stderr through [`stderr_line!`]; human text has its control characters
//! escaped ([`text`]). Nothing in loopscope calls `println!`.

#![forbid(unsafe_code)]

use std::io::{self, IsTerminal, Write};

use serde::Serialize;

pub mod html;
pub mod input;
pub mod prometheus;
pub mod rtt;
pub mod stdout;
mod table;
pub mod text;
pub mod units;
pub use input::{BoundedReadError, read_bounded, read_bounded_text};
pub use stdout::Stdout;
pub use table::Table;
pub use text::{comma_list, escape_control, plural};

/// How records are rendered on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Prose and tables for a person.
    Human,
    /// Newline-delimited JSON, one object per record.
    Json,
}

/// Something a command reports: an event while running or its final summary.
pub trait Record: Serialize {
    /// The value of the `"type"` field in JSON output (`"summary"` for the final record).
    fn kind(&self) -> &'static str;
    /// The human form; written as-is (include the trailing newline).
    fn write_human(&self, out: &mut dyn Write) -> io::Result<()>;
}

/// How a command that ran ended: the process exit code follows from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Exit 0: the test passed, nothing failed.
    Passed,
    /// Exit 1: the test ran and failed (errors over threshold, loss, a FAIL check, exposure).
    Failed,
}

impl Outcome {
    /// `Passed` when `passed`, else `Failed`.
    pub fn from_passed(passed: bool) -> Self {
        if passed {
            Outcome::Passed
        } else {
            Outcome::Failed
        }
    }
    /// The process exit code: 0 or 1.
    pub fn exit_code(self) -> u8 {
        match self {
            Outcome::Passed => 0,
            Outcome::Failed => 1,
        }
    }
    /// Failed if either failed.
    pub fn and(self, other: Outcome) -> Outcome {
        if self == Outcome::Passed && other == Outcome::Passed {
            Outcome::Passed
        } else {
            Outcome::Failed
        }
    }
}

/// Exit code for usage and environment errors (bad endpoint, device cannot open).
pub const EXIT_USAGE: u8 = 2;

/// Writes records to a sink (stdout in the binary, a buffer in tests) in the chosen format.
pub struct Printer<W: Write = Stdout> {
    format: Format,
    out: W,
    /// Reused for each JSON record, so a stream of many records allocates once.
    scratch: Vec<u8>,
}

impl Printer<Stdout> {
    /// Stdout, flushed after every record: for runs whose events someone follows (ping, bert,
    /// reflect, live captures).
    pub fn stdout(format: Format) -> Self {
        Printer::new(format, Stdout::live())
    }

    /// Stdout, buffered until the end (line by line on a terminal): for reports printed all at
    /// once (listeners, doctor, a capture file's findings).
    pub fn stdout_batch(format: Format) -> Self {
        Printer::new(format, Stdout::batch())
    }
}

impl<W: Write> Printer<W> {
    /// A printer over any sink (a `Vec<u8>` in tests); it flushes the sink after each record.
    pub fn new(format: Format, out: W) -> Self {
        Printer {
            format,
            out,
            scratch: Vec::new(),
        }
    }

    /// The output format chosen with `--json` or not.
    pub fn format(&self) -> Format {
        self.format
    }

    /// Whether records go out as NDJSON.
    pub fn is_json(&self) -> bool {
        self.format == Format::Json
    }

    /// Emits one record, then flushes the sink (which for [`Stdout::batch`] waits for the end).
    /// Write errors are returned; a closed stdout is not one (see [`stdout`]).
    pub fn emit<R: Record + ?Sized>(&mut self, record: &R) -> io::Result<()> {
        match self.format {
            Format::Human => {
                // Rendered whole, then escaped: a name with an escape sequence in it cannot
                // drive the terminal, whichever record forgot to escape it.
                self.scratch.clear();
                record.write_human(&mut self.scratch)?;
                let text = String::from_utf8_lossy(&self.scratch);
                self.out
                    .write_all(text::escape_control_keep_lines(&text).as_bytes())?;
            }
            Format::Json => {
                write_json_line(&mut self.out, &mut self.scratch, record.kind(), record)?
            }
        }
        self.out.flush()
    }

    /// Emits a record only in JSON form (live events that the human view shows as progress).
    pub fn emit_json_only<R: Record + ?Sized>(&mut self, record: &R) -> io::Result<()> {
        if self.format == Format::Json {
            self.emit(record)?;
        }
        Ok(())
    }

    /// The sink back (for tests, and for scanners that keep their own writer).
    pub fn into_inner(self) -> W {
        self.out
    }
}

/// Writes what [`to_json_line`] returns, without building a `serde_json::Value` for records
/// that serialise as an object with no `"type"` key of their own (almost all): the record's
/// own serialisation is spliced after the type field. Commands that emit a record per packet
/// depend on this speed.
fn write_json_line<T: Serialize + ?Sized>(
    out: &mut dyn Write,
    scratch: &mut Vec<u8>,
    kind: &str,
    value: &T,
) -> io::Result<()> {
    scratch.clear();
    serde_json::to_writer(&mut *scratch, value).map_err(io::Error::other)?;
    // `"type":` can only appear in the serialised bytes as a key (inside a string value its
    // quote would be escaped); nested keys named type take the general path too.
    let has_type_key = scratch.windows(7).any(|window| window == b"\"type\":");
    if scratch.first() != Some(&b'{') || has_type_key {
        return out.write_all(to_json_line(kind, value)?.as_bytes());
    }
    scratch.push(b'\n');
    let mut head = Vec::with_capacity(kind.len() + 12);
    head.extend_from_slice(b"{\"type\":");
    serde_json::to_writer(&mut head, kind).map_err(io::Error::other)?;
    if scratch.len() > 3 {
        head.push(b',');
    }
    out.write_all(&head)?;
    out.write_all(&scratch[1..])
}

/// Serialises `value` as one JSON line with `"type": kind` as its first field.
pub fn to_json_line<T: Serialize + ?Sized>(kind: &str, value: &T) -> io::Result<String> {
    let value = serde_json::to_value(value).map_err(io::Error::other)?;
    let mut object = serde_json::Map::new();
    object.insert("type".into(), serde_json::Value::String(kind.into()));
    match value {
        serde_json::Value::Object(fields) => {
            for (key, field) in fields {
                if key != "type" {
                    object.insert(key, field);
                }
            }
        }
        other => {
            object.insert("value".into(), other);
        }
    }
    let mut line = serde_json::to_string(&object).map_err(io::Error::other)?;
    line.push('\n');
    Ok(line)
}

/// Live progress on stderr, shown only for human output on a terminal (never in `--json`).
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    /// `total` is the expected number of units (bytes, packets) when known.
    pub fn new(format: Format, total: Option<u64>, template: &str) -> Self {
        let visible = format == Format::Human && io::stderr().is_terminal();
        let bar = visible.then(|| {
            let bar = match total {
                Some(total) => indicatif::ProgressBar::new(total),
                None => indicatif::ProgressBar::new_spinner(),
            };
            bar.set_draw_target(indicatif::ProgressDrawTarget::stderr_with_hz(4));
            if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
                bar.set_style(style);
            }
            bar
        });
        Progress { bar }
    }

    /// A progress display that shows nothing.
    pub fn hidden() -> Self {
        Progress { bar: None }
    }

    /// How many units are done.
    pub fn set_position(&self, position: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(position);
        }
    }

    /// The text after the bar (rates, error counts).
    pub fn set_message(&self, message: impl Into<String>) {
        if let Some(bar) = &self.bar {
            bar.set_message(message.into());
        }
    }

    /// Clears the bar from the terminal; call before printing the summary.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Formats a rate in bit/s with an SI prefix, e.g. `12.3 Gbit/s`.
pub fn format_bit_rate(bits_per_second: f64) -> String {
    format_si(bits_per_second, "bit/s")
}

/// Formats a value with an SI prefix (k, M, G, T) and a unit.
pub fn format_si(value: f64, unit: &str) -> String {
    const PREFIXES: [(f64, &str); 4] = [(1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")];
    for (scale, prefix) in PREFIXES {
        if value.abs() >= scale {
            return format!("{:.2} {prefix}{unit}", value / scale);
        }
    }
    format!("{value:.0} {unit}")
}

/// Formats a probability such as a BER in scientific notation (`0` stays `0`).
pub fn format_ratio(value: f64) -> String {
    if value == 0.0 {
        "0".to_string()
    } else {
        format!("{value:.3e}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Example {
        bits: u64,
        r#type: &'static str,
    }

    impl Record for Example {
        fn kind(&self) -> &'static str {
            "summary"
        }
        fn write_human(&self, out: &mut dyn Write) -> io::Result<()> {
            writeln!(out, "bits: {}", self.bits)
        }
    }

    #[test]
    fn json_lines_lead_with_type_and_do_not_duplicate_it() {
        let mut printer = Printer::new(Format::Json, Vec::new());
        printer
            .emit(&Example {
                bits: 42,
                r#type: "ignored",
            })
            .unwrap();
        let text = String::from_utf8(printer.into_inner()).unwrap();
        assert_eq!(text, "{\"type\":\"summary\",\"bits\":42}\n");
    }

    #[derive(Serialize)]
    struct Nested {
        name: &'static str,
        inner: Vec<Option<u8>>,
        text: &'static str,
    }

    impl Record for Nested {
        fn kind(&self) -> &'static str {
            "event"
        }
        fn write_human(&self, _: &mut dyn Write) -> io::Result<()> {
            Ok(())
        }
    }

    #[derive(Serialize)]
    struct Empty {}

    impl Record for Empty {
        fn kind(&self) -> &'static str {
            "empty"
        }
        fn write_human(&self, _: &mut dyn Write) -> io::Result<()> {
            Ok(())
        }
    }

    /// The spliced fast path writes byte for byte what the general path (through a
    /// `serde_json::Value`) writes.
    #[test]
    fn fast_json_lines_equal_the_general_form() {
        let record = Nested {
            name: "x",
            inner: vec![Some(1), None],
            text: "say \"type\": no",
        };
        let mut printer = Printer::new(Format::Json, Vec::new());
        printer.emit(&record).unwrap();
        printer.emit(&Empty {}).unwrap();
        let text = String::from_utf8(printer.into_inner()).unwrap();
        let expected =
            to_json_line("event", &record).unwrap() + &to_json_line("empty", &Empty {}).unwrap();
        assert_eq!(text, expected);
        assert_eq!(
            text,
            "{\"type\":\"event\",\"name\":\"x\",\"inner\":[1,null],\"text\":\"say \\\"type\\\": no\"}\n{\"type\":\"empty\"}\n"
        );
    }

    #[test]
    fn human_output_uses_the_record_renderer() {
        let mut printer = Printer::new(Format::Human, Vec::new());
        printer
            .emit(&Example {
                bits: 7,
                r#type: "x",
            })
            .unwrap();
        assert_eq!(
            String::from_utf8(printer.into_inner()).unwrap(),
            "bits: 7\n"
        );
    }

    struct Named(&'static str);

    impl Serialize for Named {
        fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            serializer.serialize_str(self.0)
        }
    }

    impl Record for Named {
        fn kind(&self) -> &'static str {
            "name"
        }
        fn write_human(&self, out: &mut dyn Write) -> io::Result<()> {
            writeln!(out, "process\t{}", self.0)
        }
    }

    #[test]
    fn human_output_cannot_carry_terminal_escapes() {
        let mut printer = Printer::new(Format::Human, Vec::new());
        printer
            .emit(&Named("x\x1b]0;owned\x07\rverdict: ok"))
            .unwrap();
        assert_eq!(
            String::from_utf8(printer.into_inner()).unwrap(),
            "process\tx\\x1b]0;owned\\x07\\rverdict: ok\n"
        );
        // JSON escapes control characters itself.
        let mut printer = Printer::new(Format::Json, Vec::new());
        printer.emit(&Named("\x1b")).unwrap();
        assert_eq!(
            String::from_utf8(printer.into_inner()).unwrap(),
            "{\"type\":\"name\",\"value\":\"\\u001b\"}\n"
        );
    }

    #[test]
    fn si_prefixes() {
        assert_eq!(format_bit_rate(12.345e9), "12.35 Gbit/s");
        assert_eq!(format_bit_rate(999.0), "999 bit/s");
        assert_eq!(format_ratio(0.0), "0");
        assert_eq!(format_ratio(1.5e-7), "1.500e-7");
    }
}
