//! Dependencies between tasks on PostgreSQL (as the SQLite backend's, deps.rs there):
//! a waiting task is pending with `run_after` = [`WAITING_FOR_DEPENDENCIES`] and
//! `deps_left` > 0, so the claim never meets it; the transaction that ends a task counts
//! down its dependants and releases (or cancels) them.
//!
//! Across hosts: a creator locks the dependencies it reads (`FOR SHARE`), so none ends
//! between its look-up and its commit unseen; the release locks the dependants in id
//! order before counting them down, so two hosts ending two dependencies of one task at
//! once take turns on its row and exactly one of them releases it.

use std::collections::BTreeMap;

use postgres::GenericClient;

use super::logs::Numbered;
use super::queue::insert_in;
use super::wakeups::notify_in;
use super::{Context, Statements};
use crate::error::StoreError;
use crate::log_line::LogLine;
use crate::queue::{
    dependency_cancel_message, After, AfterInsert, Dependencies, NewTask, Status,
    WAITING_FOR_DEPENDENCIES,
};

/// Creates `t` to run after `after` inside the caller's transaction.
pub(crate) fn insert_after_in(
    tx: &mut impl GenericClient,
    t: &NewTask,
    after: &After,
    creation: &LogLine,
) -> Result<AfterInsert, StoreError> {
    let mut ids = after.ids.clone();
    ids.sort_unstable();
    ids.dedup();
    let statuses: BTreeMap<i64, Status> = tx
        .query(
            "SELECT id, status FROM tasks WHERE id = ANY($1) ORDER BY id FOR SHARE",
            &[&ids],
        )
        .context("read dependencies")?
        .iter()
        .map(|r| {
            let s: String = r.get(1);
            (r.get(0), Status::parse(&s).unwrap_or(Status::Failed))
        })
        .collect();
    if let Some(missing) = ids.iter().find(|id| !statuses.contains_key(id)) {
        return Ok(AfterInsert::Missing(*missing));
    }
    let cause = statuses
        .iter()
        .find(|(_, s)| matches!(s, Status::Failed | Status::Cancelled))
        .filter(|_| !after.any);
    // A task cancelled at once below is first "waiting", as only waiting tasks are
    // cancelled for their dependencies.
    let left = statuses.values().filter(|s| !s.is_final()).count() as i64;
    let left = if cause.is_some() { left.max(1) } else { left };
    let mut task = t.clone();
    if left > 0 {
        task.run_after = WAITING_FOR_DEPENDENCIES;
    }
    let id = insert_in(tx, &task, 1, creation)?[0];
    tx.execute(
        "WITH d AS (
             INSERT INTO task_deps (depends_on, task_id, after_any)
             SELECT dep, $1, $3 FROM UNNEST($2::BIGINT[]) AS dep
         )
         UPDATE tasks SET deps_left = $4 WHERE id = $1",
        &[&id, &ids, &after.any, &left],
    )
    .context("record dependencies")?;
    if let Some((dep, status)) = cause {
        let message = dependency_cancel_message(*dep, *status);
        cancel(tx, &[id], &[message], t.created_at)?;
    }
    Ok(AfterInsert::Created(id))
}

/// Cancels the tasks `ids` that still wait (one already released, run or cancelled
/// keeps its state), each with `messages[i]` as its message and last log line; returns
/// those cancelled. The statistics follow from the triggers.
fn cancel(
    tx: &mut impl GenericClient,
    ids: &[i64],
    messages: &[String],
    now: i64,
) -> Result<Vec<i64>, StoreError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let lines: Vec<String> = messages
        .iter()
        .map(|m| LogLine::new("cancelled", 0, 0, 0, "", m).text())
        .collect();
    let stored: Vec<std::borrow::Cow<'_, str>> =
        messages.iter().map(|m| super::storable(m)).collect();
    let stored: Vec<&str> = stored.iter().map(|m| m.as_ref()).collect();
    let rows = tx
        .query(
            "UPDATE tasks t SET status = 'cancelled', deps_left = 0, run_after = $3,
                    finished_at = $3, message = v.message, error = v.message,
                    log_seq = t.log_seq + 1
             FROM UNNEST($1::BIGINT[], $2::TEXT[]) AS v(id, message)
             WHERE t.id = v.id AND t.status = 'pending' AND t.deps_left > 0
             RETURNING t.id, t.log_seq",
            &[&ids, &stored, &now],
        )
        .context("cancel dependants")?;
    let mut numbered = Numbered::with_capacity(rows.len());
    let mut done = Vec::with_capacity(rows.len());
    for r in &rows {
        let id: i64 = r.get(0);
        let Some(i) = ids.iter().position(|x| *x == id) else {
            continue;
        };
        numbered.push(id, r.get(1), lines[i].as_str());
        done.push(id);
    }
    numbered.insert(tx)?;
    Ok(done)
}

/// Counts down the tasks waiting for `ended` (tasks that just completed, failed finally
/// or were cancelled inside the caller's transaction): the last dependency releases a
/// task (due at `now`, with a wake-up), a failed or cancelled one cancels it unless it
/// runs after any outcome, and a cancelled task's own dependants follow. When nothing
/// waits for them this is one statement, an index probe of `task_deps`.
pub(crate) fn release(
    tx: &mut impl GenericClient,
    ended: &[i64],
    now: i64,
    statements: Option<&Statements>,
) -> Result<(), StoreError> {
    if ended.is_empty() {
        return Ok(());
    }
    // Most ended tasks have no dependants: one probe of the dependency index (no
    // locks, planned in a fraction of the locking query's time) says so. A dependant
    // recorded after it committed found its dependency ended and was handled then.
    const PROBE: &str = "SELECT EXISTS (SELECT 1 FROM task_deps WHERE depends_on = ANY($1))";
    let any: bool = match statements {
        Some(st) => {
            let probe = st.get(tx, PROBE).context("release dependants")?;
            tx.query_one(&probe, &[&ended])
        }
        None => tx.query_one(PROBE, &[&ended]),
    }
    .context("release dependants")?
    .get(0);
    if !any {
        return Ok(());
    }
    let mut released = false;
    let mut frontier = ended.to_vec();
    while !frontier.is_empty() {
        // The waiting dependants, locked in id order (see the module's comment).
        let waiting: Vec<i64> = tx
            .query(
                "SELECT t.id FROM tasks t
                 WHERE t.id IN (SELECT task_id FROM task_deps WHERE depends_on = ANY($1))
                   AND t.status = 'pending' AND t.deps_left > 0
                 ORDER BY t.id FOR UPDATE",
                &[&frontier],
            )
            .context("release dependants")?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if waiting.is_empty() {
            break;
        }
        // task -> (dependencies that ended, the first failed or cancelled one that
        // cancels it).
        let mut hits: BTreeMap<i64, (i64, Option<(i64, Status)>)> = BTreeMap::new();
        for r in tx
            .query(
                "SELECT d.task_id, d.depends_on, e.status, d.after_any
                 FROM task_deps d JOIN tasks e ON e.id = d.depends_on
                 WHERE d.depends_on = ANY($1) AND d.task_id = ANY($2)
                 ORDER BY d.task_id, d.depends_on",
                &[&frontier, &waiting],
            )
            .context("release dependants")?
        {
            let status: String = r.get(2);
            let status = Status::parse(&status).unwrap_or(Status::Failed);
            let any: bool = r.get(3);
            let hit = hits.entry(r.get(0)).or_default();
            hit.0 += 1;
            if !any && hit.1.is_none() && status != Status::Completed {
                hit.1 = Some((r.get(1), status));
            }
        }
        let (mut count_ids, mut counts) = (Vec::new(), Vec::new());
        let (mut cancel_ids, mut messages) = (Vec::new(), Vec::new());
        for (task, (n, cause)) in hits {
            match cause {
                Some((dep, status)) => {
                    cancel_ids.push(task);
                    messages.push(dependency_cancel_message(dep, status));
                }
                None => {
                    count_ids.push(task);
                    counts.push(n);
                }
            }
        }
        if !count_ids.is_empty() {
            let rows = tx
                .query(
                    "UPDATE tasks t SET deps_left = t.deps_left - v.n,
                            run_after = CASE WHEN t.deps_left - v.n <= 0 THEN $3
                                             ELSE t.run_after END
                     FROM UNNEST($1::BIGINT[], $2::BIGINT[]) AS v(id, n)
                     WHERE t.id = v.id AND t.status = 'pending' AND t.deps_left > 0
                     RETURNING t.deps_left",
                    &[&count_ids, &counts, &now],
                )
                .context("release dependants")?;
            released |= rows.iter().any(|r| r.get::<_, i64>(0) <= 0);
        }
        frontier = cancel(tx, &cancel_ids, &messages, now)?;
    }
    if released {
        notify_in(tx)?;
    }
    Ok(())
}

/// The dependencies of task `id` as [`crate::TaskQueue::task_dependencies`] reads them.
pub(crate) fn dependencies(
    tx: &mut impl GenericClient,
    id: i64,
) -> Result<Option<Dependencies>, StoreError> {
    let rows = tx
        .query(
            "SELECT d.depends_on, d.after_any, e.status, t.status, t.deps_left
             FROM task_deps d JOIN tasks t ON t.id = d.task_id
             LEFT JOIN tasks e ON e.id = d.depends_on
             WHERE d.task_id = $1 ORDER BY d.depends_on",
            &[&id],
        )
        .context("read dependencies")?;
    let mut deps: Option<Dependencies> = None;
    for r in &rows {
        let dep: i64 = r.get(0);
        let d = deps.get_or_insert_with(|| Dependencies {
            after: Vec::new(),
            any: r.get(1),
            waiting_on: Vec::new(),
        });
        d.after.push(dep);
        let dep_status: Option<String> = r.get(2);
        let ended = dep_status
            .as_deref()
            .and_then(Status::parse)
            .is_none_or(Status::is_final);
        let status: String = r.get(3);
        let left: i64 = r.get(4);
        if status == "pending" && left > 0 && !ended {
            d.waiting_on.push(dep);
        }
    }
    Ok(deps)
}
