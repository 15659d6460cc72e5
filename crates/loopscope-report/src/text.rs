//! Text that reaches a terminal: hostile bytes made harmless, and warnings on stderr.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::{self, Write};

/// Makes text safe to print on a terminal: every control character (C0, DEL, C1, and the
/// Unicode bidirectional overrides that reorder what a reader sees) is written as a visible
/// escape (`\x1b`, `\n`, `\u{202e}`), so that input from a capture file, a process name or an
/// address string cannot move the cursor, forge a line or recolour the output. Borrows when
/// there is nothing to escape (the common case).
///
/// For human output only: JSON output escapes control characters itself.
pub fn escape_control(text: &str) -> Cow<'_, str> {
    escape_with(text, |_| false)
}

/// Like [`escape_control`] but keeps line feeds and tabs: for a whole human report, whose lines
/// and columns are ours. The [`crate::Printer`] passes every human record through it, so a
/// record that forgets to escape a field still cannot drive the terminal.
pub fn escape_control_keep_lines(text: &str) -> Cow<'_, str> {
    escape_with(text, |c| c == '\n' || c == '\t')
}

/// A count and its noun in the right number: `1 datagram`, `3 datagrams`. Human output only
/// (JSON carries the bare count). The plural is given, not derived: English does not derive it.
pub fn plural(count: u64, one: &str, many: &str) -> String {
    if count == 1 {
        format!("{count} {one}")
    } else {
        format!("{count} {many}")
    }
}

/// Items in their `Display` form, separated by commas: `127.0.0.1, ::1`. Human output only.
pub fn comma_list<T: std::fmt::Display>(items: impl IntoIterator<Item = T>) -> String {
    let mut list = String::new();
    for (index, item) in items.into_iter().enumerate() {
        if index > 0 {
            list.push_str(", ");
        }
        // Writing to a String cannot fail.
        let _ = std::fmt::Write::write_fmt(&mut list, format_args!("{item}"));
    }
    list
}

fn escape_with(text: &str, keep: impl Fn(char) -> bool) -> Cow<'_, str> {
    let escaped = |c: char| needs_escape(c) && !keep(c);
    if !text.chars().any(escaped) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if !escaped(c) {
            out.push(c);
            continue;
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) <= 0xff => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
        }
    }
    Cow::Owned(out)
}

fn needs_escape(c: char) -> bool {
    // `char::is_control` is Unicode's Cc: C0, DEL and C1.
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{2028}' | '\u{2029}')
        || ('\u{202a}'..='\u{202e}').contains(&c)
        || ('\u{2066}'..='\u{2069}').contains(&c)
}

/// Writes `loopscope: warning: MESSAGE` on stderr (control characters escaped). Warnings never
/// go to stdout, where they would end up inside a generated file or a JSON stream.
pub fn warn(message: &str) {
    let _ = writeln!(
        io::stderr().lock(),
        "loopscope: warning: {}",
        escape_control(message)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comma_list_separates_display_forms() {
        let addresses: [std::net::IpAddr; 2] =
            ["127.0.0.1".parse().unwrap(), "::1".parse().unwrap()];
        assert_eq!(comma_list(addresses), "127.0.0.1, ::1");
        assert_eq!(comma_list([7u16]), "7");
        assert_eq!(comma_list(Vec::<u16>::new()), "");
    }

    #[test]
    fn plain_text_is_borrowed() {
        assert!(matches!(escape_control("eth0 ünïcödé"), Cow::Borrowed(_)));
    }

    /// Known answers written by hand: ESC, CR, NUL, DEL, a C1 CSI and a right-to-left override.
    #[test]
    fn control_characters_become_visible_escapes() {
        assert_eq!(
            escape_control("a\u{1b}[2Jb\rc\0d\u{7f}e\u{9b}f\u{202e}g\nh\ti"),
            "a\\x1b[2Jb\\rc\\x00d\\x7fe\\x9bf\\u{202e}g\\nh\\ti"
        );
    }

    #[test]
    fn whole_reports_keep_their_lines_and_columns() {
        assert_eq!(
            escape_control_keep_lines("a\tb\n\u{1b}]0;title\u{7}\n"),
            "a\tb\n\\x1b]0;title\\x07\n"
        );
    }
}
