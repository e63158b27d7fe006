//! Claiming tasks on PostgreSQL: the rows to take are chosen with
//! `FOR UPDATE … SKIP LOCKED`, so hosts claiming at the same moment take different
//! tasks without waiting for each other, and a task is never claimed twice (the
//! update also re-checks that it is still pending). Each claimed task's start line is
//! stored in the same transaction.

use std::collections::HashMap;
use std::sync::Arc;

use postgres::GenericClient;

use super::logs::append;
use super::queue::{from_row, COLUMNS};
use super::Context;
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

/// Claims the tasks `pick` names for `owner` inside `tx` and stores each one's start
/// line; returns them in claim order with their workers' registrations.
pub(crate) fn claim_in(
    tx: &mut impl GenericClient,
    owner: &str,
    now: i64,
    pick: Pick<'_>,
    start_line: StartLine<'_>,
) -> Result<Vec<ClaimedTask>, StoreError> {
    let set = "status = 'running', attempts = t.attempts + 1, owner = $1, started_at = $2,
               heartbeat_at = $2, finished_at = NULL, cancel_requested = FALSE, progress = 0,
               processed = 0, total = 0, message = 'Started'";
    let returning: String = COLUMNS
        .split(',')
        .map(|c| format!("t.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ");
    let rows = match pick {
        Pick::Due { excluded, limit } => {
            let excluded: Vec<&str> = excluded.to_vec();
            tx.query(
                &format!(
                    "WITH picked AS (
                         SELECT t.id FROM tasks t JOIN workers w ON w.identifier = t.worker
                         WHERE t.status = 'pending' AND t.run_after <= $2 AND w.active
                           AND NOT (t.worker = ANY($4))
                         ORDER BY t.priority, t.id
                         LIMIT $3
                         FOR UPDATE OF t SKIP LOCKED
                     )
                     UPDATE tasks t SET {set}
                     FROM picked WHERE t.id = picked.id AND t.status = 'pending'
                     RETURNING {returning}"
                ),
                &[&owner, &now, &limit, &excluded],
            )
            .context("claim tasks")?
        }
        Pick::One(id) => tx
            .query(
                &format!(
                    "UPDATE tasks t SET {set}
                     WHERE t.id = $3 AND t.status = 'pending'
                     RETURNING {returning}"
                ),
                &[&owner, &now, &id],
            )
            .context("claim task")?,
    };
    let mut claimed: Vec<TaskRecord> = rows.iter().map(from_row).collect();
    // RETURNING yields rows in no particular order; keep the claim order.
    claimed.sort_by_key(|t| (t.priority.rank(), t.id));
    let starts: Vec<_> = claimed.iter().map(start_line).collect();
    let lines: Vec<_> = claimed.iter().map(|t| t.id).zip(&starts).collect();
    append(tx, &lines)?;
    let mut names: Vec<&str> = claimed.iter().map(|t| t.worker.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    let mut workers: HashMap<String, Arc<ClaimedWorker>> = HashMap::new();
    if !names.is_empty() {
        for r in tx
            .query(
                "SELECT identifier, library_path, settings, manifest, library_sha256 FROM workers
                 WHERE identifier = ANY($1)",
                &[&names],
            )
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
