//! Append-only progress logs: `storage/stask/{task_id}.log`, one event a line.
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
//! Readers never trust the end of the file: a last line without its newline is a write
//! in progress (or a crash mid-write) and is ignored, never reported as an error.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

use serde::Serialize;

/// Longest message kept in a line, in bytes; longer ones are cut (on a char boundary)
/// so the last line can always be found by reading a bounded tail of the file.
pub const MAX_MESSAGE_BYTES: usize = 4096;

/// One event of a task's progress log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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
                eta.replace(['|', '\n', '\r'], " ")
            },
            message: truncate(message, MAX_MESSAGE_BYTES).to_owned(),
        }
    }

    /// The line as written to the file, with its trailing newline.
    pub fn format(&self) -> String {
        let mut s = String::with_capacity(32 + self.message.len());
        use std::fmt::Write as _;
        let _ = write!(
            s,
            "{}|{}|{}|{}|{}|",
            self.status, self.progress, self.processed, self.total, self.eta
        );
        escape_into(&self.message, &mut s);
        s.push('\n');
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
            c => out.push(c),
        }
    }
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
            Some('\\') => out.push('\\'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

/// Appends lines to a log file, creating it when needed, in one write so concurrent
/// appenders never interleave within a line.
pub fn append(path: &Path, lines: &[LogLine]) -> io::Result<()> {
    if lines.is_empty() {
        return Ok(());
    }
    let mut buf = String::new();
    for l in lines {
        buf.push_str(&l.format());
    }
    let mut f = OpenOptions::new().create(true).append(true).open(path)?;
    f.write_all(buf.as_bytes())
}

/// File name of task `id`'s log inside the log directory.
pub fn file_name(id: i64) -> String {
    format!("{id}.log")
}

/// Appends to many task logs, keeping the files of running tasks open: an engine
/// writes several lines per task, and reopening the file for each costs more than the
/// write.
pub struct OpenLogs {
    dir: std::path::PathBuf,
    files: std::collections::HashMap<i64, File>,
}

/// Open files kept at most; past this, all are closed and reopened on demand.
const MAX_OPEN_LOGS: usize = 1024;

impl OpenLogs {
    /// Logs in `dir`.
    pub fn new(dir: &Path) -> Self {
        OpenLogs {
            dir: dir.to_path_buf(),
            files: std::collections::HashMap::new(),
        }
    }

    /// Appends lines to task `id`'s log in one write.
    pub fn append(&mut self, id: i64, lines: &[LogLine]) -> io::Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        let mut buf = String::new();
        for l in lines {
            buf.push_str(&l.format());
        }
        if !self.files.contains_key(&id) {
            if self.files.len() >= MAX_OPEN_LOGS {
                self.files.clear();
            }
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.dir.join(file_name(id)))?;
            self.files.insert(id, f);
        }
        let f = self.files.get_mut(&id).expect("just inserted");
        f.write_all(buf.as_bytes())
    }

    /// Closes task `id`'s log (after its final line).
    pub fn close(&mut self, id: i64) {
        self.files.remove(&id);
    }
}

/// The last complete line of the log, read from the end of the file: the cost does not
/// depend on the file's size. `Ok(None)` when the file is missing or has no complete
/// line.
pub fn last_line(path: &Path) -> io::Result<Option<LogLine>> {
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let len = f.metadata()?.len();
    // A line is at most ~4 KiB of message escaped (x2) plus fields; read a bit more.
    let window = (MAX_MESSAGE_BYTES as u64 * 2 + 256).min(len);
    let mut tail_len = window.min(len);
    loop {
        let start = len - tail_len;
        f.seek(SeekFrom::Start(start))?;
        let mut buf = vec![0u8; tail_len as usize];
        f.read_exact(&mut buf)?;
        // Drop a torn last line: everything after the final newline.
        let Some(end) = buf.iter().rposition(|&b| b == b'\n') else {
            if start == 0 {
                return Ok(None);
            }
            tail_len = (tail_len * 2).min(len);
            continue;
        };
        let complete = &buf[..end];
        match complete.iter().rposition(|&b| b == b'\n') {
            Some(prev) => return Ok(parse_bytes(&complete[prev + 1..])),
            None if start == 0 => return Ok(parse_bytes(complete)),
            None if tail_len == len => return Ok(parse_bytes(complete)),
            None => tail_len = (tail_len * 2).min(len),
        }
    }
}

fn parse_bytes(b: &[u8]) -> Option<LogLine> {
    LogLine::parse(std::str::from_utf8(b).ok()?)
}

/// Complete lines from byte `offset` on, and the offset just after the last complete
/// line (where the next read should continue). A torn last line is left for later.
pub fn read_from(path: &Path, offset: u64) -> io::Result<(Vec<LogLine>, u64)> {
    read_from_limited(path, offset, usize::MAX)
}

/// Like [`read_from`], returning at most `max_lines` lines.
pub fn read_from_limited(
    path: &Path,
    offset: u64,
    max_lines: usize,
) -> io::Result<(Vec<LogLine>, u64)> {
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Vec::new(), offset)),
        Err(e) => return Err(e),
    };
    let len = f.metadata()?.len();
    if offset >= len {
        return Ok((Vec::new(), offset.min(len)));
    }
    f.seek(SeekFrom::Start(offset))?;
    let mut buf = Vec::new();
    f.take(len - offset).read_to_end(&mut buf)?;
    let mut lines = Vec::new();
    let mut consumed = 0usize;
    let mut start = 0usize;
    for (i, &b) in buf.iter().enumerate() {
        if b != b'\n' {
            continue;
        }
        if lines.len() >= max_lines {
            break;
        }
        if let Some(l) = parse_bytes(&buf[start..i]) {
            lines.push(l);
        }
        start = i + 1;
        consumed = start;
    }
    Ok((lines, offset + consumed as u64))
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
    fn last_line_ignores_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("1.log");
        append(&p, &[LogLine::new("pending", 0, 0, 0, "", "created")]).unwrap();
        append(&p, &[LogLine::new("running", 10, 1, 10, "9s", "one")]).unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&p)
            .unwrap()
            .write_all(b"running|20|2|10|8s|tw")
            .unwrap();
        let last = last_line(&p).unwrap().unwrap();
        assert_eq!(last.message, "one");
        let (lines, next) = read_from(&p, 0).unwrap();
        assert_eq!(lines.len(), 2);
        let (more, next2) = read_from(&p, next).unwrap();
        assert!(more.is_empty());
        assert_eq!(next, next2);
    }

    #[test]
    fn last_line_of_a_large_file_reads_only_the_tail() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("2.log");
        let many: Vec<LogLine> = (0..20_000)
            .map(|i| LogLine::new("running", 1, i, 20_000, "", "x"))
            .collect();
        append(&p, &many).unwrap();
        assert_eq!(last_line(&p).unwrap().unwrap().processed, 19_999);
    }

    #[test]
    fn long_messages_are_cut_on_a_char_boundary() {
        let msg = "é".repeat(MAX_MESSAGE_BYTES);
        let l = LogLine::new("running", 0, 0, 0, "", &msg);
        assert!(l.message.len() <= MAX_MESSAGE_BYTES);
        assert!(l.message.chars().all(|c| c == 'é'));
    }

    #[test]
    fn missing_file_has_no_last_line() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(last_line(&dir.path().join("none.log")).unwrap(), None);
    }
}
