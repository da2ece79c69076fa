//! Text that others chose, made safe to show: a child's output, a spool file's name or
//! a task id reaches a terminal or a log with its control characters written out
//! (`\x1b`, `\r`, `\n`), so it cannot move the cursor, clear the screen, set a window
//! title or start a log line of its own. What is stored (the history file, `--json`)
//! keeps the text as it was written; only what is shown is escaped.

use std::borrow::Cow;

/// `text` with every control character escaped: C0 (`\n`, `\r`, `\t` by name, the
/// others as `\x1b`), DEL as `\x7f`, and C1 (which some terminals obey as ESC
/// sequences) as `\u{9b}`. Backslashes are left alone: the result is for reading,
/// not for parsing back.
pub fn escape(text: &str) -> Cow<'_, str> {
    escape_but(text, None)
}

/// `escape` for text of several lines: each line escaped, the line breaks kept.
pub fn escape_lines(text: &str) -> Cow<'_, str> {
    escape_but(text, Some(b'\n'))
}

/// Every control character but `keep` escaped. By bytes, with the text between
/// controls copied whole and a run of one control written out at once: every line a
/// flooding child writes passes through here, up to a thousand a second, and the
/// loop must not cost much even unoptimised.
fn escape_but(text: &str, keep: Option<u8>) -> Cow<'_, str> {
    let bytes = text.as_bytes();
    let mut out: Option<String> = None;
    let (mut copied, mut at) = (0, 0);
    while let Some(found) = next_control(bytes, at) {
        if Some(bytes[found]) == keep {
            at = found + 1;
            continue;
        }
        let out = out.get_or_insert_with(|| String::with_capacity(text.len() + 16));
        out.push_str(&text[copied..found]);
        let end = if bytes[found] == 0xc2 {
            out.push_str(&format!(r"\u{{{:x}}}", bytes[found + 1]));
            found + 2
        } else {
            let mut end = found + 1;
            while end < bytes.len() && bytes[end] == bytes[found] {
                end += 1;
            }
            out.push_str(&c0_or_del(bytes[found]).repeat(end - found));
            end
        };
        (copied, at) = (end, end);
    }
    match out {
        None => Cow::Borrowed(text),
        Some(mut out) => {
            out.push_str(&text[copied..]);
            Cow::Owned(out)
        }
    }
}

/// Where the next control character starts, at or after `from`: a C0 byte, DEL, or a
/// C1 character (two bytes in UTF-8: 0xC2, then 0x80 to 0x9F). These are exactly the
/// characters of Unicode's category Cc (`char::is_control`).
fn next_control(bytes: &[u8], from: usize) -> Option<usize> {
    let mut at = from;
    while at < bytes.len() {
        match bytes[at] {
            0x00..=0x1f | 0x7f => return Some(at),
            0xc2 if at + 1 < bytes.len() && (0x80..=0x9f).contains(&bytes[at + 1]) => {
                return Some(at);
            }
            _ => at += 1,
        }
    }
    None
}

/// How a C0 byte or DEL is written out.
fn c0_or_del(byte: u8) -> &'static str {
    const C0: [&str; 32] = [
        r"\x00", r"\x01", r"\x02", r"\x03", r"\x04", r"\x05", r"\x06", r"\x07", r"\x08", r"\t",
        r"\n", r"\x0b", r"\x0c", r"\r", r"\x0e", r"\x0f", r"\x10", r"\x11", r"\x12", r"\x13",
        r"\x14", r"\x15", r"\x16", r"\x17", r"\x18", r"\x19", r"\x1a", r"\x1b", r"\x1c", r"\x1d",
        r"\x1e", r"\x1f",
    ];
    C0.get(usize::from(byte)).copied().unwrap_or(r"\x7f")
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
    fn exactly_the_control_characters_are_escaped() {
        for code in 0..0x3000u32 {
            let Some(c) = char::from_u32(code) else {
                continue;
            };
            let text = format!("a{c}b");
            let escaped = escape(&text);
            assert_eq!(
                matches!(escaped, Cow::Owned(_)),
                c.is_control(),
                "U+{code:04X}: {escaped:?}"
            );
            assert!(!escaped.chars().any(char::is_control), "U+{code:04X}");
        }
    }

    #[test]
    fn several_lines_keep_their_breaks() {
        assert!(matches!(escape_lines("one\ntwo"), Cow::Borrowed(_)));
        assert_eq!(escape_lines("one\x1b[2J\ntwo\r"), "one\\x1b[2J\ntwo\\r");
    }
}
