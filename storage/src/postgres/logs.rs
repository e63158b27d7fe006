//! Progress-log lines as rows of `task_logs` (task, sequence number, text, and the time
//! it was stored, filled by the column's default).
//!
//! A task's lines are numbered from its row's `log_seq`, bumped by the statement that
//! adds them (or, for a claim's start line and a finish's last lines, by the claim or
//! finish itself): the bump locks the task's row until the transaction ends, so the lines of
//! one task are numbered in the order they are committed, whichever host writes them,
//! and a live view that resumes after the last number it saw misses nothing.

use postgres::GenericClient;

use super::{Context, PgStore, Statements};
use crate::error::StoreError;
use crate::log_line::{LogLine, StoredLine};
use crate::logs::ProgressLogs;

/// Appends lines (each with its task) inside the caller's transaction, in the order
/// given. Lines of a task that no longer exists are dropped.
pub(crate) fn append(
    tx: &mut impl GenericClient,
    lines: &[(i64, &LogLine)],
) -> Result<(), StoreError> {
    let texts: Vec<(i64, String)> = lines.iter().map(|(t, l)| (*t, l.text())).collect();
    append_texts(tx, &texts)
}

/// Appends `lines` to task `task`'s log inside the caller's transaction.
pub(crate) fn append_lines(
    tx: &mut impl GenericClient,
    task: i64,
    lines: &[LogLine],
) -> Result<(), StoreError> {
    let all: Vec<(i64, &LogLine)> = lines.iter().map(|l| (task, l)).collect();
    append(tx, &all)
}

/// [`append`] for lines given as their stored text.
pub(crate) fn append_texts(
    tx: &mut impl GenericClient,
    lines: &[(i64, String)],
) -> Result<(), StoreError> {
    if lines.is_empty() {
        return Ok(());
    }
    // How many lines each task gets, tasks in id order (the order rows are locked in,
    // so two writers of the same tasks cannot deadlock).
    let mut counts: std::collections::BTreeMap<i64, i64> = std::collections::BTreeMap::new();
    for (task, _) in lines {
        *counts.entry(*task).or_default() += 1;
    }
    let ids: Vec<i64> = counts.keys().copied().collect();
    let ns: Vec<i64> = counts.values().copied().collect();
    let rows = tx
        .query(
            "WITH wanted AS (
                 SELECT t.id FROM tasks t WHERE t.id = ANY($1) ORDER BY t.id FOR UPDATE
             )
             UPDATE tasks t SET log_seq = t.log_seq + c.n
             FROM UNNEST($1::BIGINT[], $2::BIGINT[]) AS c(id, n), wanted w
             WHERE t.id = c.id AND w.id = c.id
             RETURNING t.id, t.log_seq - c.n",
            &[&ids, &ns],
        )
        .context("number log lines")?;
    let mut next: std::collections::HashMap<i64, i64> = rows
        .iter()
        .map(|r| (r.get::<_, i64>(0), r.get::<_, i64>(1) + 1))
        .collect();
    let mut numbered = Numbered::with_capacity(lines.len());
    for (task, text) in lines {
        let Some(seq) = next.get_mut(task) else {
            continue; // the task is gone
        };
        numbered.push(*task, *seq, text);
        *seq += 1;
    }
    numbered.insert(tx)
}

/// Lines whose numbers were taken by the statement that changed their tasks (a claim
/// or a finish bumps `log_seq` itself, sparing a second update of the same rows),
/// stored with one statement.
pub(crate) struct Numbered<'a> {
    tasks: Vec<i64>,
    seqs: Vec<i64>,
    texts: Vec<std::borrow::Cow<'a, str>>,
}

impl<'a> Numbered<'a> {
    /// Room for `n` lines.
    pub(crate) fn with_capacity(n: usize) -> Self {
        Numbered {
            tasks: Vec::with_capacity(n),
            seqs: Vec::with_capacity(n),
            texts: Vec::with_capacity(n),
        }
    }

    /// Adds line number `seq` of task `task`.
    pub(crate) fn push(&mut self, task: i64, seq: i64, text: impl Into<std::borrow::Cow<'a, str>>) {
        self.tasks.push(task);
        self.seqs.push(seq);
        self.texts.push(text.into());
    }

    /// Stores the lines inside the caller's transaction.
    pub(crate) fn insert(self, tx: &mut impl GenericClient) -> Result<(), StoreError> {
        self.insert_with(tx, None)
    }

    /// [`Numbered::insert`] with the statement prepared on the connection, for the
    /// claim-and-finish cycle.
    pub(crate) fn insert_with(
        self,
        tx: &mut impl GenericClient,
        statements: Option<&Statements>,
    ) -> Result<(), StoreError> {
        if self.tasks.is_empty() {
            return Ok(());
        }
        const SQL: &str = "INSERT INTO task_logs (task_id, seq, line)
             SELECT * FROM UNNEST($1::BIGINT[], $2::BIGINT[], $3::TEXT[])";
        let texts: Vec<&str> = self.texts.iter().map(|t| t.as_ref()).collect();
        let params: [&(dyn postgres::types::ToSql + Sync); 3] = [&self.tasks, &self.seqs, &texts];
        match statements {
            Some(st) => {
                let statement = st.get(tx, SQL).context("append to progress log")?;
                tx.execute(&statement, &params)
            }
            None => tx.execute(SQL, &params),
        }
        .context("append to progress log")?;
        Ok(())
    }
}

fn stored(r: &postgres::Row) -> StoredLine {
    StoredLine {
        seq: r.get::<_, i64>(0) as u64,
        text: r.get(1),
        at: r.get(2),
    }
}

impl ProgressLogs for PgStore {
    fn log_lines(
        &self,
        task: i64,
        after: u64,
        limit: usize,
    ) -> Result<Vec<StoredLine>, StoreError> {
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self
            .client()?
            .query(
                "SELECT seq, line, at FROM task_logs WHERE task_id = $1 AND seq > $2
                 ORDER BY seq LIMIT $3",
                &[&task, &after, &limit],
            )
            .context("read progress log")?;
        Ok(rows.iter().map(stored).collect())
    }

    fn last_log_line(&self, task: i64) -> Result<Option<StoredLine>, StoreError> {
        let row = self
            .client()?
            .query_opt(
                "SELECT seq, line, at FROM task_logs WHERE task_id = $1 ORDER BY seq DESC LIMIT 1",
                &[&task],
            )
            .context("read progress log")?;
        Ok(row.as_ref().map(stored))
    }

    fn log_tail(&self, task: i64, count: usize) -> Result<(Vec<StoredLine>, u64), StoreError> {
        let mut client = self.client()?;
        let total: i64 = client
            .query_one(
                "SELECT COUNT(*) FROM task_logs WHERE task_id = $1",
                &[&task],
            )
            .context("count progress-log lines")?
            .get(0);
        let limit = i64::try_from(count).unwrap_or(i64::MAX);
        let rows = client
            .query(
                "SELECT seq, line, at FROM task_logs WHERE task_id = $1 ORDER BY seq DESC LIMIT $2",
                &[&task, &limit],
            )
            .context("read progress log")?;
        let mut lines: Vec<StoredLine> = rows.iter().map(stored).collect();
        lines.reverse();
        Ok((lines, total as u64))
    }
}
