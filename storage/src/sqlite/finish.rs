//! Recording how attempts ended, and taking deleted tasks out of the statistics: both
//! run on the trigger-less connection and update the statistics tables once per batch,
//! as the triggers of migration 4 would have row by row.

use std::collections::HashMap;

use rusqlite::{params, Transaction};

use super::logs::append;
use super::{texts, Context};
use crate::error::StoreError;
use crate::queue::{Finish, FinishColumns};

/// A JSON array of ids, for `json_each`: one statement for a whole batch.
pub(super) fn id_list(ids: &[i64]) -> String {
    serde_json::to_string(ids).expect("integers serialise")
}

/// A finish that would queue its task again while a cancel was requested becomes a
/// cancel ([`Finish::as_cancel`]); `None` when the finish stays as it is.
fn cancel_instead(tx: &Transaction<'_>, f: &Finish) -> Result<Option<Finish>, StoreError> {
    if !f.queues_again() {
        return Ok(None);
    }
    let requested: bool = tx
        .prepare_cached(
            "SELECT cancel_requested FROM tasks WHERE id = ?1 AND owner = ?2 AND status = 'running'",
        )
        .and_then(|mut s| {
            s.query_row(params![f.id, f.owner], |r| r.get(0))
                .or_else(|e| match e {
                    rusqlite::Error::QueryReturnedNoRows => Ok(false),
                    e => Err(e),
                })
        })
        .context("finish tasks")?;
    Ok(if requested { f.as_cancel() } else { None })
}

/// Applies `finishes` inside `tx` (on the trigger-less connection) with their log
/// lines and texts (for search), and counts them in the statistics; releases (or
/// cancels) the tasks waiting for those that ended (deps.rs). Returns which applied,
/// and whether a waiting task was released (the caller wakes the services).
pub(super) fn finish_in(
    tx: &Transaction<'_>,
    finishes: &[Finish],
) -> Result<(Vec<bool>, bool), StoreError> {
    // Cancels requested while the attempts ran win over queueing them again.
    let mut changed: Vec<Finish> = Vec::new();
    let mut which: Vec<Option<usize>> = Vec::with_capacity(finishes.len());
    for f in finishes {
        match cancel_instead(tx, f)? {
            Some(c) => {
                which.push(Some(changed.len()));
                changed.push(c);
            }
            None => which.push(None),
        }
    }
    let finishes: Vec<&Finish> = finishes
        .iter()
        .zip(&which)
        .map(|(f, w)| w.map_or(f, |i| &changed[i]))
        .collect();
    // The text each task has once its finish applies: no finish leaves it running.
    let messages: Vec<(i64, &str)> = finishes
        .iter()
        .map(|f| (f.id, f.message.as_str()))
        .collect();
    let texts = texts::intern_messages(tx, &messages)?;
    let mut applied = Vec::with_capacity(finishes.len());
    // Ids of the attempts that ended the task (not those queued again): they are
    // what the statistics count.
    let mut ended: Vec<i64> = Vec::with_capacity(finishes.len());
    // The lines of the finishes that applied, stored together.
    let mut lines = Vec::with_capacity(finishes.len() * 2);
    // Ids of the attempts that stopped running (each frees a slot of its key).
    let mut stopped: Vec<i64> = Vec::with_capacity(finishes.len());
    {
        let mut done = tx
            .prepare_cached(
                "UPDATE tasks SET status = ?3, result = ?4, error = ?5, progress = ?6,
                        processed = ?7, total = ?8, message = ?9, finished_at = ?10,
                        run_after = ?11, owner = NULL, cancel_requested = 0,
                        attempts = attempts - ?12, text_id = ?13
                     WHERE id = ?1 AND owner = ?2 AND status = 'running'",
            )
            .context("finish tasks")?;
        for (f, text) in finishes.iter().copied().zip(&texts) {
            let FinishColumns {
                status,
                result,
                error,
                finished_at,
                run_after,
                back,
            } = f.columns();
            let n = done
                .execute(params![
                    f.id,
                    f.owner,
                    status,
                    result,
                    error,
                    f.progress,
                    f.processed,
                    f.total,
                    f.message,
                    finished_at,
                    run_after,
                    back,
                    text
                ])
                .context("finish task")?;
            if n > 0 {
                stopped.push(f.id);
                lines.extend(f.lines.iter().map(|l| (f.id, l)));
                if finished_at.is_some() {
                    ended.push(f.id);
                }
            }
            applied.push(n > 0);
        }
    }
    append(tx, &lines)?;
    count_finished(tx, &ended)?;
    let now = finishes.iter().map(|f| f.at).max().unwrap_or(0);
    let released = super::deps::release(tx, &ended, now, false)?;
    // Each stopped attempt frees a slot of its key: the first task parked on it may go.
    let freed = super::limits::release(tx, &stopped, now)?;
    Ok((applied, released || freed))
}

/// Adds tasks that just finished (`ids`: rows updated from running to completed,
/// failed or cancelled with no trigger run) to the statistics tables, as the triggers of
/// migration 4 would have row by row: in `task_counts` each leaves the pending row
/// (running tasks are counted there) for its final status, with its run time when it
/// completed or failed; `task_activity` counts it in the 15-minute bucket of its
/// finish; `worker_activity` keeps the latest finish. The figures come from the rows
/// themselves (one read of the batch), so they cannot disagree with them.
pub(super) fn count_finished(tx: &Transaction<'_>, ids: &[i64]) -> Result<(), StoreError> {
    if ids.is_empty() {
        return Ok(());
    }
    // (worker, status) -> (tasks, run ms, runs); pending entries are negative.
    let mut counts: HashMap<(String, String), (i64, i64, i64)> = HashMap::new();
    let mut activity: HashMap<(i64, String), Ended> = HashMap::new();
    let mut last: HashMap<String, i64> = HashMap::new();
    // minute -> (completed, failed), for `task_minutes`.
    let mut minutes: HashMap<i64, (i64, i64)> = HashMap::new();
    {
        let mut rows = tx
            .prepare_cached(
                "SELECT t.worker, t.status, t.started_at, t.finished_at
                 FROM json_each(?1) AS j JOIN tasks AS t ON t.id = j.value",
            )
            .context("count finished tasks")?;
        let ids = id_list(ids);
        let mut rows = rows.query([ids]).context("count finished tasks")?;
        while let Some(r) = rows.next().context("count finished tasks")? {
            let worker: String = r.get(0).context("count finished tasks")?;
            let status: String = r.get(1).context("count finished tasks")?;
            let started: Option<i64> = r.get(2).context("count finished tasks")?;
            let Some(at): Option<i64> = r.get(3).context("count finished tasks")? else {
                continue;
            };
            let ran = status != "cancelled" && started.is_some();
            let run_ms = started.filter(|_| ran).map_or(0, |s| at - s);
            let bucket = activity
                .entry((crate::bucket_floor(at), worker.clone()))
                .or_default();
            match status.as_str() {
                "completed" => bucket.completed += 1,
                "failed" => bucket.failed += 1,
                _ => bucket.cancelled += 1,
            }
            match status.as_str() {
                "completed" => minutes.entry(minute_of(at)).or_default().0 += 1,
                "failed" => minutes.entry(minute_of(at)).or_default().1 += 1,
                _ => {}
            }
            bucket.run_ms += run_ms;
            bucket.runs += ran as i64;
            let latest = last.entry(worker.clone()).or_insert(at);
            *latest = (*latest).max(at);
            counts
                .entry((worker.clone(), "pending".into()))
                .or_default()
                .0 -= 1;
            let now = counts.entry((worker, status)).or_default();
            now.0 += 1;
            now.1 += run_ms;
            now.2 += ran as i64;
        }
    }
    let mut count = tx
        .prepare_cached(
            "INSERT INTO task_counts (worker, status, n, run_ms, runs) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (worker, status) DO UPDATE SET n = n + excluded.n,
                run_ms = run_ms + excluded.run_ms, runs = runs + excluded.runs",
        )
        .context("count finished tasks")?;
    for ((worker, status), (n, run_ms, runs)) in &counts {
        count
            .execute(params![worker, status, n, run_ms, runs])
            .context("count finished tasks")?;
    }
    let mut add = tx
        .prepare_cached(
            "INSERT INTO task_activity (bucket, worker, completed, failed, cancelled, run_ms, runs)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (bucket, worker) DO UPDATE SET
                completed = completed + excluded.completed, failed = failed + excluded.failed,
                cancelled = cancelled + excluded.cancelled,
                run_ms = run_ms + excluded.run_ms, runs = runs + excluded.runs",
        )
        .context("record task activity")?;
    for ((bucket, worker), e) in &activity {
        add.execute(params![
            bucket,
            worker,
            e.completed,
            e.failed,
            e.cancelled,
            e.run_ms,
            e.runs
        ])
        .context("record task activity")?;
    }
    let mut latest = tx
        .prepare_cached(
            "INSERT INTO worker_activity (worker, last_finished_at) VALUES (?1, ?2)
             ON CONFLICT (worker) DO UPDATE SET
                last_finished_at = MAX(COALESCE(last_finished_at, 0), excluded.last_finished_at)",
        )
        .context("record last run")?;
    for (worker, at) in &last {
        latest
            .execute(params![worker, at])
            .context("record last run")?;
    }
    let mut per_minute = tx
        .prepare_cached(
            "INSERT INTO task_minutes (minute, completed, failed) VALUES (?1, ?2, ?3)
             ON CONFLICT (minute) DO UPDATE SET completed = completed + excluded.completed,
                failed = failed + excluded.failed",
        )
        .context("count finished tasks per minute")?;
    for (minute, (completed, failed)) in &minutes {
        per_minute
            .execute(params![minute, completed, failed])
            .context("count finished tasks per minute")?;
    }
    Ok(())
}

/// The `task_minutes` row of a finish at `at` (ms): SQL's `finished_at / 60000`, which
/// truncates as Rust's division does.
fn minute_of(at: i64) -> i64 {
    at / 60_000
}

/// Finished tasks of one (bucket, worker), as `task_activity` counts them.
#[derive(Default)]
struct Ended {
    completed: i64,
    failed: i64,
    cancelled: i64,
    run_ms: i64,
    runs: i64,
}

/// Takes tasks about to be deleted (`ids`, rows still present) out of the statistics,
/// as the delete triggers of migration 4 would row by row: `task_counts` loses each
/// one from its status row (running counted as pending) with its run time, and
/// `task_activity` loses its creation and, for a finished task, its finish.
/// `worker_activity` keeps the latest finish. Returns the texts the tasks name
/// (distinct), read with the rest, for [`texts::forget_unused`] once they are gone.
pub(super) fn uncount_deleted(tx: &Transaction<'_>, ids: &[i64]) -> Result<Vec<i64>, StoreError> {
    let mut texts = Vec::new();
    if ids.is_empty() {
        return Ok(texts);
    }
    let mut counts: HashMap<(String, String), (i64, i64, i64)> = HashMap::new();
    let mut created: HashMap<(i64, String), i64> = HashMap::new();
    let mut ended: HashMap<(i64, String), Ended> = HashMap::new();
    let mut minutes: HashMap<i64, (i64, i64)> = HashMap::new();
    {
        let mut rows = tx
            .prepare_cached(
                "SELECT t.worker, t.status, t.created_at, t.started_at, t.finished_at, t.text_id
                 FROM json_each(?1) AS j JOIN tasks AS t ON t.id = j.value",
            )
            .context("count deleted tasks")?;
        let mut rows = rows.query([id_list(ids)]).context("count deleted tasks")?;
        while let Some(r) = rows.next().context("count deleted tasks")? {
            let worker: String = r.get(0).context("count deleted tasks")?;
            let status: String = r.get(1).context("count deleted tasks")?;
            let created_at: i64 = r.get(2).context("count deleted tasks")?;
            let started: Option<i64> = r.get(3).context("count deleted tasks")?;
            let finished: Option<i64> = r.get(4).context("count deleted tasks")?;
            if let Some(text) = r.get::<_, Option<i64>>(5).context("count deleted tasks")? {
                texts.push(text);
            }
            *created
                .entry((crate::bucket_floor(created_at), worker.clone()))
                .or_default() += 1;
            let counted_ms = match (status.as_str(), started, finished) {
                ("completed" | "failed", Some(s), Some(f)) => Some(f - s),
                _ => None,
            };
            let row_status = if status == "running" {
                "pending".to_owned()
            } else {
                status.clone()
            };
            let c = counts.entry((worker.clone(), row_status)).or_default();
            c.0 += 1;
            c.1 += counted_ms.unwrap_or(0);
            c.2 += counted_ms.is_some() as i64;
            let finished_status = matches!(status.as_str(), "completed" | "failed" | "cancelled");
            if let (true, Some(at)) = (finished_status, finished) {
                match status.as_str() {
                    "completed" => minutes.entry(minute_of(at)).or_default().0 += 1,
                    "failed" => minutes.entry(minute_of(at)).or_default().1 += 1,
                    _ => {}
                }
                let e = ended.entry((crate::bucket_floor(at), worker)).or_default();
                match status.as_str() {
                    "completed" => e.completed += 1,
                    "failed" => e.failed += 1,
                    _ => e.cancelled += 1,
                }
                if status != "cancelled" {
                    if let Some(s) = started {
                        e.run_ms += at - s;
                        e.runs += 1;
                    }
                }
            }
        }
    }
    let mut count = tx
        .prepare_cached(
            "UPDATE task_counts SET n = n - ?3, run_ms = run_ms - ?4, runs = runs - ?5
             WHERE worker = ?1 AND status = ?2",
        )
        .context("count deleted tasks")?;
    for ((worker, status), (n, run_ms, runs)) in &counts {
        count
            .execute(params![worker, status, n, run_ms, runs])
            .context("count deleted tasks")?;
    }
    let mut uncreate = tx
        .prepare_cached(
            "UPDATE task_activity SET created = created - ?3 WHERE bucket = ?1 AND worker = ?2",
        )
        .context("count deleted tasks")?;
    for ((bucket, worker), n) in &created {
        uncreate
            .execute(params![bucket, worker, n])
            .context("count deleted tasks")?;
    }
    let mut unfinish = tx
        .prepare_cached(
            "UPDATE task_activity SET completed = completed - ?3, failed = failed - ?4,
                cancelled = cancelled - ?5, run_ms = run_ms - ?6, runs = runs - ?7
             WHERE bucket = ?1 AND worker = ?2",
        )
        .context("count deleted tasks")?;
    for ((bucket, worker), e) in &ended {
        unfinish
            .execute(params![
                bucket,
                worker,
                e.completed,
                e.failed,
                e.cancelled,
                e.run_ms,
                e.runs
            ])
            .context("count deleted tasks")?;
    }
    let mut per_minute = tx
        .prepare_cached(
            "UPDATE task_minutes SET completed = completed - ?2, failed = failed - ?3
             WHERE minute = ?1",
        )
        .context("count deleted tasks per minute")?;
    let mut empty = tx
        .prepare_cached(
            "DELETE FROM task_minutes WHERE minute = ?1 AND completed = 0 AND failed = 0",
        )
        .context("count deleted tasks per minute")?;
    for (minute, (completed, failed)) in &minutes {
        per_minute
            .execute(params![minute, completed, failed])
            .context("count deleted tasks per minute")?;
        empty
            .execute([minute])
            .context("count deleted tasks per minute")?;
    }
    texts.sort_unstable();
    texts.dedup();
    Ok(texts)
}
