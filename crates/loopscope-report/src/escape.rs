//! Control characters out of human output.
//!
//! Text that others choose reaches our human output: process names (any user sets one with
//! `prctl(PR_SET_NAME)`), interface names in a crafted pcapng file, addresses typed by an
//! attacker. Printed raw, an escape sequence in such a name moves the cursor, rewrites earlier
//! lines or forges a verdict. Escaped, it shows as what it is: `\x1b[2K`.
//!
//! What is escaped: the C0 controls (U+0000–U+001F), DEL (U+007F), the C1 controls
//! (U+0080–U+009F, which some terminals read as CSI and OSC) and the Unicode bidirectional
//! overrides and isolates (U+202A–U+202E, U+2066–U+2069), which reorder what a reader sees.

use std::borrow::Cow;
use std::fmt::Write as _;

fn is_dangerous(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

fn escape_with(text: &str, keep: impl Fn(char) -> bool) -> Cow<'_, str> {
    if !text.chars().any(|c| is_dangerous(c) && !keep(c)) {
        return Cow::Borrowed(text);
    }
    let mut escaped = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if !is_dangerous(c) || keep(c) {
            escaped.push(c);
            continue;
        }
        match c {
            '\n' => escaped.push_str("\\n"),
            '\r' => escaped.push_str("\\r"),
            '\t' => escaped.push_str("\\t"),
            c if u32::from(c) < 0x80 => {
                let _ = write!(escaped, "\\x{:02x}", u32::from(c));
            }
            c => {
                let _ = write!(escaped, "\\u{{{:x}}}", u32::from(c));
            }
        }
    }
    Cow::Owned(escaped)
}

/// `text` with every control character escaped (`\n`, `\t`, `\x1b`, `\u{9b}`, `\u{202e}`): for
/// one field (a name, an address) that must stay on its line.
pub fn escape_control(text: &str) -> Cow<'_, str> {
    escape_with(text, |_| false)
}

/// Like [`escape_control`] but keeps line feeds and tabs: for whole human reports, whose lines
/// and columns are ours. The [`crate::Printer`] passes every human record through it.
pub fn escape_control_keep_lines(text: &str) -> Cow<'_, str> {
    escape_with(text, |c| c == '\n' || c == '\t')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed_unchanged() {
        let name = "sshd: root@pts/0 — ünïcode";
        assert!(matches!(escape_control(name), Cow::Borrowed(n) if n == name));
    }

    #[test]
    fn escape_sequences_and_line_breaks_are_made_visible() {
        assert_eq!(escape_control("evil\x1b[2Kname"), "evil\\x1b[2Kname");
        assert_eq!(escape_control("a\nverdict: ok\r"), "a\\nverdict: ok\\r");
        assert_eq!(escape_control("\u{9b}31m"), "\\u{9b}31m");
        assert_eq!(escape_control("abc\u{202e}fdp.exe"), "abc\\u{202e}fdp.exe");
        assert_eq!(escape_control("nul\0del\x7f"), "nul\\x00del\\x7f");
    }

    #[test]
    fn whole_reports_keep_their_lines_and_columns() {
        assert_eq!(
            escape_control_keep_lines("a\tb\n\x1b]0;title\x07\n"),
            "a\tb\n\\x1b]0;title\\x07\n"
        );
    }
}
