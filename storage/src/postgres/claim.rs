//! Claiming tasks on PostgreSQL: the rows to take are chosen with
//! `FOR UPDATE … SKIP LOCKED`, so hosts claiming at the same moment take different
//! tasks without waiting for each other, and a task is never claimed twice (the
//! update also re-checks that it is still pending). Each claimed task's start line is
//! stored in the same transaction, numbered by the claim's own update of the row.

use std::collections::HashMap;
use std::sync::Arc;

use postgres::GenericClient;

use super::logs::Numbered;
use super::queue::{from_row, COLUMNS};
use super::Context;
use super::Statements;
use crate::error::StoreError;
use crate::queue::{ClaimedTask, ClaimedWorker, StartLine, TaskRecord};

/// Which tasks a claim takes.
pub(crate) enum Pick<'a> {
    /// Due tasks of active, not excluded workers, in claim order, at most this many.
    Due {
        /// Workers not to take tasks of.
        excluded: &'a [&'a str],
        /// At most this many.
        limit: i64,
    },
    /// This pending task, due or not.
    One(i64),
}

/// Claims the tasks `pick` names for `owner` inside `tx`, adding each one's start line
/// to `lines` (the caller stores them); returns them in claim order with their
/// workers' registrations.
pub(crate) fn claim_in(
    tx: &mut impl GenericClient,
    owner: &str,
    now: i64,
    pick: Pick<'_>,
    start_line: StartLine<'_>,
    lines: &mut Numbered<'_>,
    statements: &Statements,
) -> Result<Vec<ClaimedTask>, StoreError> {
    let set = "status = 'running', attempts = t.attempts + 1, owner = $1, started_at = $2,
               heartbeat_at = $2, finished_at = NULL, cancel_requested = FALSE, progress = 0,
               processed = 0, total = 0, message = 'Started', log_seq = t.log_seq + 1";
    // The task columns, then the start line's number (taken by the claim itself).
    let returning: String = COLUMNS
        .split(',')
        .map(|c| format!("t.{}", c.trim()))
        .chain(std::iter::once("t.log_seq".to_owned()))
        .collect::<Vec<_>>()
        .join(", ");
    let seq_column = COLUMNS.split(',').count();
    let rows = match pick {
        // The workers to take tasks of are read once (an array), so the pick walks the
        // claim index in claim order and stops after `limit` rows, whatever the
        // number of pending tasks; a join with the workers table made the planner read
        // and sort every pending task (16 ms for a batch of 256 with 20,000 waiting).
        Pick::Due { excluded, limit } => {
            let excluded: Vec<&str> = excluded.to_vec();
            let sql = format!(
                "WITH picked AS (
                         SELECT t.id FROM tasks t
                         WHERE t.status = 'pending' AND t.run_after <= $2
                           AND t.worker = ANY(ARRAY(
                               SELECT identifier FROM workers
                               WHERE active AND NOT (identifier = ANY($4))))
                         ORDER BY t.priority, t.id
                         LIMIT $3
                         FOR UPDATE OF t SKIP LOCKED
                     )
                     UPDATE tasks t SET {set}
                     FROM picked WHERE t.id = picked.id AND t.status = 'pending'
                     RETURNING {returning}"
            );
            let statement = statements.get(tx, &sql).context("claim tasks")?;
            tx.query(&statement, &[&owner, &now, &limit, &excluded])
                .context("claim tasks")?
        }
        Pick::One(id) => tx
            .query(
                &format!(
                    "UPDATE tasks t SET {set}
                     WHERE t.id = $3 AND t.status = 'pending' AND t.deps_left = 0
                     RETURNING {returning}"
                ),
                &[&owner, &now, &id],
            )
            .context("claim task")?,
    };
    let mut claimed: Vec<(TaskRecord, i64)> = rows
        .iter()
        .map(|r| (from_row(r), r.get::<_, i64>(seq_column)))
        .collect();
    // RETURNING yields rows in no particular order; keep the claim order.
    claimed.sort_by_key(|(t, _)| (t.priority.rank(), t.id));
    for (task, seq) in &claimed {
        lines.push(task.id, *seq, start_line(task).text());
    }
    let claimed: Vec<TaskRecord> = claimed.into_iter().map(|(t, _)| t).collect();
    let mut names: Vec<&str> = claimed.iter().map(|t| t.worker.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    let mut workers: HashMap<String, Arc<ClaimedWorker>> = HashMap::new();
    if !names.is_empty() {
        let read = statements
            .get(
                tx,
                "SELECT identifier, library_path, settings, manifest, library_sha256 FROM workers
                 WHERE identifier = ANY($1)",
            )
            .context("read workers of claimed tasks")?;
        for r in tx
            .query(&read, &[&names])
            .context("read workers of claimed tasks")?
        {
            workers.insert(
                r.get(0),
                Arc::new(ClaimedWorker {
                    library_path: r.get(1),
                    library_sha256: r.get(4),
                    settings: r.get(2),
                    manifest: r.get(3),
                }),
            );
        }
    }
    Ok(claimed
        .into_iter()
        .map(|task| {
            let worker = workers.get(&task.worker).cloned().unwrap_or_default();
            ClaimedTask { task, worker }
        })
        .collect())
}
