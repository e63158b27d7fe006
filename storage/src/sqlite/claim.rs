//! Claiming tasks: `UPDATE … RETURNING` inside a transaction that took the write lock
//! first (`BEGIN IMMEDIATE`), so no two processes ever claim the same task; each
//! claimed task's start line is stored in the same transaction.

use std::collections::HashMap;
use std::sync::Arc;

use rusqlite::{params, OptionalExtension, Transaction};

use super::logs::append;
use super::queue::{from_row, COLUMNS};
use super::Context;
use crate::error::StoreError;
use crate::queue::{ClaimedTask, ClaimedWorker, StartLine, TaskRecord};

/// The claim query's condition: pending, due, of an active worker and not excluded,
/// in claim order, at most `?3`. The claim walks the partial index `tasks_claim` in
/// claim order (forced: the planner would otherwise pick the status index and sort
/// every pending row on each claim).
pub(super) fn claimable(excluded: &[&str]) -> String {
    // Identifiers are URL-safe ([a-z0-9_-]), so quoting them inline is safe; the
    // filter keeps it so even if a caller passes something else.
    let list: Vec<String> = excluded
        .iter()
        .filter(|w| {
            w.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        })
        .map(|w| format!("'{w}'"))
        .collect();
    let exclusion = if list.is_empty() {
        String::new()
    } else {
        format!(" AND t.worker NOT IN ({})", list.join(","))
    };
    format!(
        "id IN (SELECT t.id FROM tasks t INDEXED BY tasks_claim
             JOIN workers w ON w.identifier = t.worker
             WHERE t.status = 'pending' AND t.run_after <= ?2 AND w.active = 1{exclusion}
             ORDER BY t.priority, t.id LIMIT ?3)"
    )
}

/// Claims the tasks matching `condition` (with `?1` owner, `?2` now, `?3` `arg`) inside
/// `tx` (on the trigger-less connection: a claim changes no statistic, running tasks
/// being counted as pending), and stores each one's start line. A running task names
/// no text: searches read its row (texts.rs).
pub(super) fn claim_in(
    tx: &Transaction<'_>,
    owner: &str,
    now: i64,
    condition: &str,
    arg: i64,
    start_line: StartLine<'_>,
) -> Result<Vec<ClaimedTask>, StoreError> {
    let mut claimed: Vec<TaskRecord> = {
        let mut stmt = tx
            .prepare_cached(&format!(
                "UPDATE tasks SET status = 'running', attempts = attempts + 1, owner = ?1,
                        started_at = ?2, heartbeat_at = ?2, finished_at = NULL,
                        cancel_requested = 0, progress = 0, processed = 0, total = 0,
                        message = 'Started', text_id = NULL
                     WHERE {condition}
                     RETURNING {COLUMNS}"
            ))
            .context("claim tasks")?;
        let rows = stmt
            .query_map(params![owner, now, arg], from_row)
            .context("claim tasks")?;
        rows.collect::<Result<_, _>>().context("claim tasks")?
    };
    // RETURNING yields rows in no particular order; keep the claim order.
    claimed.sort_by_key(|t| (t.priority.rank(), t.id));
    let starts: Vec<_> = claimed.iter().map(start_line).collect();
    let lines: Vec<_> = claimed.iter().map(|t| t.id).zip(&starts).collect();
    append(tx, &lines)?;
    let mut out = Vec::with_capacity(claimed.len());
    let mut query = tx
        .prepare_cached(
            "SELECT library_path, settings, manifest, library_sha256 FROM workers
             WHERE identifier = ?1",
        )
        .context("read worker of claimed task")?;
    let mut workers: HashMap<String, Arc<ClaimedWorker>> = HashMap::new();
    for task in claimed {
        let worker = match workers.get(&task.worker) {
            Some(w) => w.clone(),
            None => {
                let w = query
                    .query_row([&task.worker], |r| {
                        Ok(ClaimedWorker {
                            library_path: r.get(0)?,
                            library_sha256: r.get(3)?,
                            settings: r.get(1)?,
                            manifest: r.get(2)?,
                        })
                    })
                    .optional()
                    .context("read worker of claimed task")?
                    .unwrap_or_default();
                let w = Arc::new(w);
                workers.insert(task.worker.clone(), w.clone());
                w
            }
        };
        out.push(ClaimedTask { task, worker });
    }
    Ok(out)
}
