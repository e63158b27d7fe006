//! Progress-log lines as rows of `task_logs` (task, sequence number, text).

use rusqlite::{params, Connection, OptionalExtension};

use super::{Context, SqliteStore};
use crate::error::StoreError;
use crate::log_line::{LogLine, StoredLine};
use crate::logs::ProgressLogs;

/// Appends `lines` to task `task`'s log inside the caller's transaction, after its last
/// line (one index seek to find it).
pub(super) fn append_lines(
    conn: &Connection,
    task: i64,
    lines: &[LogLine],
) -> Result<(), StoreError> {
    if lines.is_empty() {
        return Ok(());
    }
    let last: i64 = conn
        .prepare_cached("SELECT COALESCE(MAX(seq), 0) FROM task_logs WHERE task_id = ?1")
        .and_then(|mut s| s.query_row([task], |r| r.get(0)))
        .context("append to progress log")?;
    append_from(conn, task, last + 1, lines)
}

/// Stores `lines` as lines `first`, `first + 1`, … of task `task`'s log (a new task's
/// log starts at 1, with nothing to look up).
pub(super) fn append_from(
    conn: &Connection,
    task: i64,
    first: i64,
    lines: &[LogLine],
) -> Result<(), StoreError> {
    let mut insert = conn
        .prepare_cached("INSERT INTO task_logs (task_id, seq, line) VALUES (?1, ?2, ?3)")
        .context("append to progress log")?;
    for (i, line) in lines.iter().enumerate() {
        insert
            .execute(params![task, first + i as i64, line.text()])
            .context("append to progress log")?;
    }
    Ok(())
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
                "SELECT seq, line FROM task_logs WHERE task_id = ?1 AND seq > ?2
                 ORDER BY seq LIMIT ?3",
            )
            .context("read progress log")?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt
            .query_map(params![task, after as i64, limit], |r| {
                Ok(StoredLine {
                    seq: r.get::<_, i64>(0)? as u64,
                    text: r.get(1)?,
                })
            })
            .context("read progress log")?;
        rows.collect::<Result<_, _>>().context("read progress log")
    }

    fn last_log_line(&self, task: i64) -> Result<Option<StoredLine>, StoreError> {
        self.conn
            .prepare_cached(
                "SELECT seq, line FROM task_logs WHERE task_id = ?1 ORDER BY seq DESC LIMIT 1",
            )
            .context("read progress log")?
            .query_row([task], |r| {
                Ok(StoredLine {
                    seq: r.get::<_, i64>(0)? as u64,
                    text: r.get(1)?,
                })
            })
            .optional()
            .context("read progress log")
    }
}
