//! Progress-log lines as rows of `task_logs` (task, sequence number, text, the time it
//! was stored).

use rusqlite::{params, Connection, OptionalExtension};

use super::{Context, SqliteStore};
use crate::error::StoreError;
use crate::log_line::{LogLine, StoredLine};
use crate::logs::ProgressLogs;

/// Rows per INSERT statement when lines are stored in bulk.
const ROWS_PER_INSERT: usize = 64;

/// Takes `count` line numbers from the store-wide counter (inside the caller's write
/// transaction). Numbers grow with every line stored anywhere, so a task's lines are in
/// order of their numbers and a live view resumes after the last number it saw; no line
/// needs a look-up of its task's last line.
fn take_seqs(conn: &Connection, count: usize) -> Result<i64, StoreError> {
    let first: i64 = conn
        .prepare_cached("SELECT value FROM meta WHERE key = 'next_line_seq'")
        .and_then(|mut s| s.query_row([], |r| r.get(0)))
        .context("number log lines")?;
    conn.prepare_cached("UPDATE meta SET value = ?1 WHERE key = 'next_line_seq'")
        .and_then(|mut s| s.execute([first + count as i64]))
        .context("number log lines")?;
    Ok(first)
}

/// Appends lines (each with its task) inside the caller's transaction, in the order
/// given, a few dozen rows per statement, stamped with the time they are stored.
pub(super) fn append(conn: &Connection, lines: &[(i64, &LogLine)]) -> Result<(), StoreError> {
    let texts: Vec<(i64, String)> = lines.iter().map(|(t, l)| (*t, l.text())).collect();
    append_texts(conn, &texts, Some(crate::now_ms()))
}

/// [`append`] for lines given as their stored text (imported ones are kept exactly),
/// stamped with `at` (ms since the epoch; `None` for imported lines, whose time is
/// unknown).
pub(super) fn append_texts(
    conn: &Connection,
    lines: &[(i64, String)],
    at: Option<i64>,
) -> Result<(), StoreError> {
    if lines.is_empty() {
        return Ok(());
    }
    let mut seq = take_seqs(conn, lines.len())?;
    for chunk in lines.chunks(ROWS_PER_INSERT) {
        // The time is one bound parameter (?1) shared by every row: no per-row
        // function call, and the statement text (so the cached statement) depends on
        // the number of rows only.
        let values = (0..chunk.len())
            .map(|i| format!("(?{}, ?{}, ?{}, ?1)", 3 * i + 2, 3 * i + 3, 3 * i + 4))
            .collect::<Vec<_>>()
            .join(", ");
        let mut insert = conn
            .prepare_cached(&format!(
                "INSERT INTO task_logs (task_id, seq, line, at) VALUES {values}"
            ))
            .context("append to progress log")?;
        let mut args: Vec<rusqlite::types::Value> = Vec::with_capacity(1 + chunk.len() * 3);
        args.push(at.into());
        for (task, text) in chunk {
            args.push((*task).into());
            args.push(seq.into());
            args.push(text.clone().into());
            seq += 1;
        }
        insert
            .execute(rusqlite::params_from_iter(args))
            .context("append to progress log")?;
    }
    Ok(())
}

/// Appends `lines` to task `task`'s log inside the caller's transaction.
pub(super) fn append_lines(
    conn: &Connection,
    task: i64,
    lines: &[LogLine],
) -> Result<(), StoreError> {
    let all: Vec<(i64, &LogLine)> = lines.iter().map(|l| (task, l)).collect();
    append(conn, &all)
}

impl ProgressLogs for SqliteStore {
    fn log_lines(
        &self,
        task: i64,
        after: u64,
        limit: usize,
    ) -> Result<Vec<StoredLine>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT seq, line, at FROM task_logs WHERE task_id = ?1 AND seq > ?2
                 ORDER BY seq LIMIT ?3",
            )
            .context("read progress log")?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt
            .query_map(params![task, after as i64, limit], |r| {
                Ok(StoredLine {
                    seq: r.get::<_, i64>(0)? as u64,
                    text: r.get(1)?,
                    at: r.get(2)?,
                })
            })
            .context("read progress log")?;
        rows.collect::<Result<_, _>>().context("read progress log")
    }

    fn last_log_line(&self, task: i64) -> Result<Option<StoredLine>, StoreError> {
        self.conn
            .prepare_cached(
                "SELECT seq, line, at FROM task_logs WHERE task_id = ?1 ORDER BY seq DESC LIMIT 1",
            )
            .context("read progress log")?
            .query_row([task], |r| {
                Ok(StoredLine {
                    seq: r.get::<_, i64>(0)? as u64,
                    text: r.get(1)?,
                    at: r.get(2)?,
                })
            })
            .optional()
            .context("read progress log")
    }

    fn log_tail(&self, task: i64, count: usize) -> Result<(Vec<StoredLine>, u64), StoreError> {
        let total: i64 = self
            .conn
            .prepare_cached("SELECT COUNT(*) FROM task_logs WHERE task_id = ?1")
            .and_then(|mut s| s.query_row([task], |r| r.get(0)))
            .context("count progress-log lines")?;
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT seq, line, at FROM task_logs WHERE task_id = ?1 ORDER BY seq DESC LIMIT ?2",
            )
            .context("read progress log")?;
        let limit = i64::try_from(count).unwrap_or(i64::MAX);
        let rows = stmt
            .query_map(params![task, limit], |r| {
                Ok(StoredLine {
                    seq: r.get::<_, i64>(0)? as u64,
                    text: r.get(1)?,
                    at: r.get(2)?,
                })
            })
            .context("read progress log")?;
        let mut lines: Vec<StoredLine> = rows
            .collect::<Result<_, _>>()
            .context("read progress log")?;
        lines.reverse();
        Ok((lines, total as u64))
    }
}
