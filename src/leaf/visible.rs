//! Text that others chose, made safe to show: a child's output, a spool file's name or
//! a task id reaches a terminal or a log with its control characters written out
//! (`\x1b`, `\r`, `\n`), so it cannot move the cursor, clear the screen, set a window
//! title or start a log line of its own. What is stored (the history file, `--json`)
//! keeps the text as it was written; only what is shown is escaped.

use std::borrow::Cow;
use std::fmt::Write;

/// `text` with every control character escaped: C0 (`\n`, `\r`, `\t` by name, the
/// others as `\x1b`), DEL as `\x7f`, and C1 (which some terminals obey as ESC
/// sequences) as `\u{9b}`. Backslashes are left alone: the result is for reading,
/// not for parsing back.
pub fn escape(text: &str) -> Cow<'_, str> {
    // `char::is_control` is exactly C0, DEL and C1 (Unicode's Cc).
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str(r"\n"),
            '\r' => out.push_str(r"\r"),
            '\t' => out.push_str(r"\t"),
            c if (c as u32) < 0x20 || c == '\x7f' => {
                let _ = write!(out, r"\x{:02x}", c as u32);
            }
            c if c.is_control() => {
                let _ = write!(out, r"\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// `escape` for text of several lines: each line escaped, the line breaks kept.
pub fn escape_lines(text: &str) -> Cow<'_, str> {
    if !text.chars().any(|c| c != '\n' && c.is_control()) {
        return Cow::Borrowed(text);
    }
    let lines: Vec<Cow<'_, str>> = text.split('\n').map(escape).collect();
    Cow::Owned(lines.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_written_out_and_the_rest_is_untouched() {
        assert!(matches!(escape("plain text, ünïcödé ✓"), Cow::Borrowed(_)));
        assert_eq!(
            escape("\x1b]0;owned\x07\x1b[2J\rok\nFAKE\tx\x7f\u{9b}31m\0"),
            r"\x1b]0;owned\x07\x1b[2J\rok\nFAKE\tx\x7f\u{9b}31m\x00"
        );
        // What comes out holds no control character, so escaping it again changes
        // nothing.
        let once = escape("a\x1b[1mb\u{85}c").into_owned();
        assert!(!once.chars().any(char::is_control), "{once}");
        assert_eq!(escape(&once), once);
    }

    #[test]
    fn several_lines_keep_their_breaks() {
        assert!(matches!(escape_lines("one\ntwo"), Cow::Borrowed(_)));
        assert_eq!(escape_lines("one\x1b[2J\ntwo\r"), "one\\x1b[2J\ntwo\\r");
    }
}
