//! The progress-log line format: one event a line, exactly as the original product
//! writes it.
//!
//! ```text
//! status|progress|processed|total|eta|message
//! running|45|150|325|2m 15s|Processing products...
//! completed|100|325|325|0s|Task completed successfully (5.2s)
//! ```
//!
//! The message is the last field, so a line is split at most five times and a `|` in a
//! message survives. Backslashes, newlines and carriage returns in messages are escaped
//! (`\\`, `\n`, `\r`), so one event is always one line.
//!
//! Messages come from plugin code, so every other control character is escaped too
//! ([`escape_text`]): NUL as `\0`, the rest of C0 but the tab, DEL and C1 as `\xHH` (two
//! lowercase hex digits: the character U+00HH, so ESC is `\x1b`). A stored line then
//! never carries a terminal escape sequence or a NUL, whatever a plugin reported, and
//! because a backslash is always doubled the escapes are unambiguous: `\x1b` in a line is
//! an ESC the plugin sent, `\\x1b` the four characters it wrote.
//!
//! Lines are stored as rows (task, sequence number, text) in the task's transaction;
//! the text of a line is exactly what [`LogLine::format`] returns without its newline,
//! so a whole log is its rows joined by newlines.

use std::borrow::Cow;

/// Longest message kept in a line, in bytes; longer ones are cut (on a char boundary).
pub const MAX_MESSAGE_BYTES: usize = 4096;

/// One event of a task's progress log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// Task status when the line was written.
    pub status: String,
    /// Percent done, 0-100.
    pub progress: u8,
    /// Items processed.
    pub processed: u64,
    /// Items in all (0 when unknown).
    pub total: u64,
    /// Estimated time left (`2m 15s`), `-` when unknown.
    pub eta: String,
    /// Message, unescaped.
    pub message: String,
}

impl LogLine {
    /// A line with the given fields; `progress` is clamped to 100 and the message cut to
    /// [`MAX_MESSAGE_BYTES`].
    pub fn new(
        status: &str,
        progress: u8,
        processed: u64,
        total: u64,
        eta: &str,
        message: &str,
    ) -> Self {
        LogLine {
            status: status.to_owned(),
            progress: progress.min(100),
            processed,
            total,
            eta: if eta.is_empty() {
                "-".to_owned()
            } else {
                // The ETA is not escaped: no separator and no control character in it.
                eta.chars()
                    .map(|c| if c == '|' || c.is_control() { ' ' } else { c })
                    .collect()
            },
            message: truncate(message, MAX_MESSAGE_BYTES).to_owned(),
        }
    }

    /// The line as it appears in a log download, with its trailing newline.
    pub fn format(&self) -> String {
        let mut s = self.text();
        s.push('\n');
        s
    }

    /// The line's stored text: [`LogLine::format`] without the newline.
    pub fn text(&self) -> String {
        let mut s = String::with_capacity(32 + self.message.len());
        use std::fmt::Write as _;
        let _ = write!(
            s,
            "{}|{}|{}|{}|{}|",
            self.status, self.progress, self.processed, self.total, self.eta
        );
        escape_into(&self.message, &mut s);
        s
    }

    /// Parses one line (without its newline). `None` for anything malformed.
    pub fn parse(line: &str) -> Option<LogLine> {
        let mut parts = line.splitn(6, '|');
        let status = parts.next()?;
        let progress = parts.next()?.parse().ok()?;
        let processed = parts.next()?.parse().ok()?;
        let total = parts.next()?.parse().ok()?;
        let eta = parts.next()?;
        let message = parts.next()?;
        if status.is_empty() {
            return None;
        }
        Some(LogLine {
            status: status.to_owned(),
            progress,
            processed,
            total,
            eta: eta.to_owned(),
            message: unescape(message),
        })
    }
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn escape_into(message: &str, out: &mut String) {
    for c in message.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\0' => out.push_str("\\0"),
            // A tab is harmless on a terminal and common in messages.
            '\t' => out.push('\t'),
            c if c.is_control() => {
                use std::fmt::Write as _;
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
}

/// `text` with backslashes, line breaks and control characters escaped exactly as in a
/// line's message (`\\`, `\n`, `\r`, `\0`, `\xHH`; tabs kept): safe to print to a
/// terminal, and unambiguous. Borrowed when there is nothing to escape.
pub fn escape_text(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    escape_into(text, &mut out);
    Cow::Owned(out)
}

fn needs_escape(c: char) -> bool {
    c == '\\' || (c.is_control() && c != '\t')
}

/// `line` with its control characters (but tabs) escaped as [`escape_text`] does and
/// its backslashes left alone: for whole lines written before the message escaping
/// covered control characters, whose backslashes are already escapes.
fn escape_controls(line: &str) -> Cow<'_, str> {
    if !line.chars().any(|c| c.is_control() && c != '\t') {
        return Cow::Borrowed(line);
    }
    let mut out = String::with_capacity(line.len() + 8);
    for c in line.chars() {
        if c.is_control() && c != '\t' {
            escape_into(c.encode_utf8(&mut [0; 4]), &mut out);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('0') => out.push('\0'),
            Some('\\') => out.push('\\'),
            Some('x') => {
                let rest = chars.as_str();
                match rest
                    .get(..2)
                    .and_then(|hex| u32::from_str_radix(hex, 16).ok())
                    .and_then(char::from_u32)
                {
                    Some(decoded) => {
                        out.push(decoded);
                        chars = rest[2..].chars();
                    }
                    None => out.push_str("\\x"),
                }
            }
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

/// One stored line of a task's log: its sequence number and its text, exactly as
/// formatted. Numbers grow with every line stored (they are store-wide, so a task's
/// numbers have gaps); a task's lines are in order of their numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredLine {
    /// Position of the line (greater than 0): live views resume after the last one
    /// seen.
    pub seq: u64,
    /// The line's text without a newline.
    pub text: String,
    /// When the line was stored (ms since the epoch); `None` for lines stored before
    /// stask kept the time of each line (schema versions before the `at` column).
    pub at: Option<i64>,
}

impl StoredLine {
    /// The line's fields; `None` if the text is malformed (an imported legacy line).
    pub fn parse(&self) -> Option<LogLine> {
        LogLine::parse(&self.text)
    }
}

/// The complete lines of a legacy log file's bytes (files written before logs moved
/// into the database): a last line without its newline was a write in progress, or a
/// crash mid-write, and is left out. Bytes that are not UTF-8 are kept as U+FFFD, and
/// control characters (but tabs) are escaped as in messages written today.
pub fn complete_lines(bytes: &[u8]) -> Vec<String> {
    let Some(end) = bytes.iter().rposition(|&b| b == b'\n') else {
        return Vec::new();
    };
    bytes[..end]
        .split(|&b| b == b'\n')
        .map(|l| escape_controls(&String::from_utf8_lossy(l)).into_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_pipes_newlines_and_backslashes() {
        let l = LogLine::new("running", 45, 150, 325, "2m 15s", "a|b\nc\\d\re");
        let text = l.format();
        assert_eq!(text, "running|45|150|325|2m 15s|a|b\\nc\\\\d\\re\n");
        assert_eq!(LogLine::parse(text.trim_end_matches('\n')), Some(l));
    }

    #[test]
    fn control_characters_are_escaped_visibly_and_round_trip() {
        let msg = "\u{1b}[31mred\u{1b}[0m nul:\0 bell:\u{7} tab:\t del:\u{7f} csi:\u{9b} \\x1b";
        let l = LogLine::new("running", 1, 1, 2, "", msg);
        let text = l.text();
        assert_eq!(
            text,
            "running|1|1|2|-|\\x1b[31mred\\x1b[0m nul:\\0 bell:\\x07 tab:\t del:\\x7f csi:\\x9b \\\\x1b"
        );
        assert!(
            !text.chars().any(|c| c.is_control() && c != '\t'),
            "{text:?}"
        );
        assert_eq!(LogLine::parse(&text), Some(l));
        assert_eq!(escape_text(msg), text.splitn(6, '|').last().unwrap());
        assert!(matches!(escape_text("plain\ttext"), Cow::Borrowed(_)));
        // A backslash before something that is not an escape stays as it was.
        assert_eq!(unescape("a\\xzz\\q"), "a\\xzz\\q");
    }

    #[test]
    fn long_messages_are_cut_on_a_char_boundary() {
        let msg = "é".repeat(MAX_MESSAGE_BYTES);
        let l = LogLine::new("running", 0, 0, 0, "", &msg);
        assert!(l.message.len() <= MAX_MESSAGE_BYTES);
        assert!(l.message.chars().all(|c| c == 'é'));
    }

    #[test]
    fn a_stored_line_is_the_formatted_text_without_its_newline() {
        let l = LogLine::new("pending", 0, 0, 0, "", "Task created");
        let stored = StoredLine {
            seq: 1,
            text: l.text(),
            at: None,
        };
        assert_eq!(stored.text, "pending|0|0|0|-|Task created");
        assert_eq!(stored.parse(), Some(l));
    }

    #[test]
    fn legacy_files_keep_complete_lines_only() {
        let text = b"pending|0|0|0|-|created\nrunning|10|1|10|9s|one\nrunning|20|2|10|8s|tw";
        assert_eq!(
            complete_lines(text),
            vec![
                "pending|0|0|0|-|created".to_owned(),
                "running|10|1|10|9s|one".to_owned()
            ]
        );
        assert!(complete_lines(b"torn").is_empty());
        assert_eq!(
            complete_lines(b"running|0|0|0|-|\x1b[1mbold \\n\n"),
            ["running|0|0|0|-|\\x1b[1mbold \\n"],
            "control characters of old lines are escaped, their escapes kept"
        );
        assert_eq!(
            complete_lines(b"a\xffb\n"),
            ["a\u{fffd}b"],
            "nothing is dropped"
        );
    }
}
