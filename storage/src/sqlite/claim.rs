//! Claiming tasks: `UPDATE … RETURNING` inside a transaction that took the write lock
//! first (`BEGIN IMMEDIATE`), so no two processes ever claim the same task; each
//! claimed task's start line is stored in the same transaction.

use std::collections::HashMap;
use std::sync::Arc;

use rusqlite::{params, OptionalExtension, Transaction};

use super::finish::id_list;
use super::limits;
use super::logs::append;
use super::queue::{from_row, COLUMNS};
use super::Context;
use crate::error::StoreError;
use crate::limits::{limit_of, Candidate};
use crate::queue::{ClaimedTask, ClaimedWorker, StartLine, TaskRecord};

/// The candidates' query: pending, due, waiting for nothing, of an active worker and
/// not excluded, in claim order, at most `?2`. It walks the partial index `tasks_claim`
/// in claim order (forced: the planner would otherwise pick the status index and sort
/// every pending row on each claim); parked tasks and waiting dependants are not in it.
fn candidates_sql(excluded: &[&str]) -> String {
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
        "SELECT t.id, t.worker, t.limit_rule, t.limit_key FROM tasks t INDEXED BY tasks_claim
             JOIN workers w ON w.identifier = t.worker
             WHERE t.status = 'pending' AND t.deps_left = 0 AND t.parked = 0
               AND t.run_after <= ?1 AND w.active = 1{exclusion}
             ORDER BY t.priority, t.id LIMIT ?2"
    )
}

/// How many candidates a claim of `want` tasks reads at once: a few more than it
/// takes, so a few tasks at their limit do not cost a second read.
fn page_size(want: usize) -> usize {
    want + want / 4 + 8
}

/// At most this many reads of candidates per claim: a queue whose head is all at its
/// limits is parked a few pages at a time rather than in one long transaction.
const MAX_PAGES: usize = 8;

fn candidate_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Candidate> {
    Ok(Candidate {
        id: r.get(0)?,
        worker: r.get(1)?,
        limit: limit_of(r.get(2)?, r.get(3)?),
    })
}

/// Claims up to `want` due tasks in claim order, honouring the limits per key (see
/// [`crate::limits`]): tasks at their limit are parked instead.
pub(super) fn claim_due(
    tx: &Transaction<'_>,
    owner: &str,
    now: i64,
    excluded: &[&str],
    want: usize,
    start_line: StartLine<'_>,
) -> Result<Vec<ClaimedTask>, StoreError> {
    limits::unpark_due(tx, now)?;
    let sql = candidates_sql(excluded);
    let mut out = Vec::new();
    for _ in 0..MAX_PAGES {
        let left = want - out.len();
        let page = page_size(left);
        let candidates: Vec<Candidate> = {
            let mut stmt = tx.prepare_cached(&sql).context("claim tasks")?;
            let rows = stmt
                .query_map(params![now, page as i64], candidate_from_row)
                .context("claim tasks")?;
            rows.collect::<Result<_, _>>().context("claim tasks")?
        };
        let (rules, usage) = limits::needs(tx, &candidates, now)?;
        let choice = crate::limits::choose(&candidates, &rules, &usage, left, now);
        let parks = choice.parks(now);
        limits::park(tx, &parks)?;
        out.extend(claim_in(
            tx,
            owner,
            now,
            "id IN (SELECT value FROM json_each(?3))",
            &id_list(&choice.take),
            start_line,
        )?);
        // A start under a rate is recorded for the rate's count, and releases the next
        // parked task of its key (after the take, so not itself): the next page (or
        // claim) takes it while the rate has room, or parks it again until its slot
        // frees. It is due at once, so the engine's next look for due work finds it
        // with no wake-up.
        let released = !choice.rated.is_empty() && {
            limits::record_starts(tx, &candidates, &rules, &choice.rated, now)?;
            limits::release(tx, &choice.rated, now)?
        };
        // Done when full, or when the queue has nothing more (nothing was parked, so
        // a second read would only meet what this one left).
        if out.len() >= want || (!released && (candidates.len() < page || parks.is_empty())) {
            break;
        }
    }
    Ok(out)
}

/// Claims the pending task `id` (due or not, waiting for nothing) unless its key is at
/// its limit.
pub(super) fn claim_one(
    tx: &Transaction<'_>,
    owner: &str,
    now: i64,
    id: i64,
    start_line: StartLine<'_>,
) -> Result<Option<ClaimedTask>, StoreError> {
    let candidate: Option<Candidate> = tx
        .prepare_cached(
            "SELECT id, worker, limit_rule, limit_key FROM tasks
             WHERE id = ?1 AND status = 'pending' AND deps_left = 0",
        )
        .and_then(|mut s| s.query_row([id], candidate_from_row).optional())
        .context("claim task")?;
    let Some(candidate) = candidate else {
        return Ok(None);
    };
    let candidates = [candidate];
    let (rules, usage) = limits::needs(tx, &candidates, now)?;
    let choice = crate::limits::choose(&candidates, &rules, &usage, 1, now);
    if choice.take.is_empty() {
        return Ok(None);
    }
    let mut claimed = claim_in(
        tx,
        owner,
        now,
        "id IN (SELECT value FROM json_each(?3))",
        &id_list(&choice.take),
        start_line,
    )?;
    // A start under a rate is recorded and releases the next parked task of its key (as
    // in claim_due).
    if !choice.rated.is_empty() {
        limits::record_starts(tx, &candidates, &rules, &choice.rated, now)?;
        limits::release(tx, &choice.rated, now)?;
    }
    Ok(claimed.pop())
}

/// Claims the pending tasks matching `condition` (with `?1` owner, `?2` now, `?3` `arg`) inside
/// `tx` (on the trigger-less connection: a claim changes no statistic, running tasks
/// being counted as pending), and stores each one's start line. A running task names
/// no text: searches read its row (texts.rs).
fn claim_in(
    tx: &Transaction<'_>,
    owner: &str,
    now: i64,
    condition: &str,
    arg: &str,
    start_line: StartLine<'_>,
) -> Result<Vec<ClaimedTask>, StoreError> {
    let mut claimed: Vec<TaskRecord> = {
        let mut stmt = tx
            .prepare_cached(&format!(
                "UPDATE tasks SET status = 'running', attempts = attempts + 1, owner = ?1,
                        started_at = ?2, heartbeat_at = ?2, finished_at = NULL,
                        cancel_requested = 0, progress = 0, processed = 0, total = 0,
                        message = 'Started', text_id = NULL, parked = 0
                     WHERE {condition} AND +status = 'pending'
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
