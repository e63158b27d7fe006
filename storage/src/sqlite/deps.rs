//! Dependencies between tasks on SQLite: creating a task that runs after others, and
//! releasing (or cancelling) the tasks that wait for tasks that just ended, inside the
//! transaction that ended them.
//!
//! A waiting task is pending with `run_after` = [`WAITING_FOR_DEPENDENCIES`] and
//! `deps_left` > 0, so the claim walks its index as before and never meets it. Each
//! dependency that ends counts it down; the last one sets `run_after` to the time it
//! ended. Writers hold the database's write lock, so no two count the same task at
//! once.

use std::collections::BTreeMap;

use rusqlite::{params, OptionalExtension, Transaction};

use super::finish::{count_finished, id_list};
use super::logs::append;
use super::queue::insert_in;
use super::{texts, Context};
use crate::error::StoreError;
use crate::log_line::LogLine;
use crate::queue::{
    dependency_cancel_message, After, AfterInsert, Dependencies, NewTask, Status,
    WAITING_FOR_DEPENDENCIES,
};

/// Creates `t` to run after `after` inside `tx` (an IMMEDIATE transaction on the
/// trigger-less connection).
pub(super) fn insert_after_in(
    tx: &Transaction<'_>,
    t: &NewTask,
    after: &After,
    creation: &LogLine,
) -> Result<AfterInsert, StoreError> {
    let mut ids = after.ids.clone();
    ids.sort_unstable();
    ids.dedup();
    let mut statuses: BTreeMap<i64, Status> = BTreeMap::new();
    {
        let mut stmt = tx
            .prepare_cached("SELECT status FROM tasks WHERE id = ?1")
            .context("read dependencies")?;
        for id in &ids {
            let status: Option<String> = stmt
                .query_row([id], |r| r.get(0))
                .optional()
                .context("read dependencies")?;
            match status.as_deref().and_then(Status::parse) {
                Some(s) => statuses.insert(*id, s),
                None => return Ok(AfterInsert::Missing(*id)),
            };
        }
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
    let id = insert_in(tx, &task, 1, creation, None)?[0];
    tx.prepare_cached("UPDATE tasks SET deps_left = ?2 WHERE id = ?1")
        .and_then(|mut s| s.execute(params![id, left]))
        .context("create task")?;
    {
        let mut stmt = tx
            .prepare_cached(
                "INSERT INTO task_deps (depends_on, task_id, after_any) VALUES (?1, ?2, ?3)",
            )
            .context("record dependencies")?;
        for dep in &ids {
            stmt.execute(params![dep, id, after.any])
                .context("record dependencies")?;
        }
    }
    // A dependency that already failed or was cancelled decides at once.
    if let Some((dep, status)) = cause {
        let message = dependency_cancel_message(*dep, *status);
        cancel(tx, &[(id, message)], t.created_at, false)?;
    }
    Ok(AfterInsert::Created(id))
}

/// Cancels tasks still waiting (`(id, message)`; one already released, run or
/// cancelled keeps its state) inside `tx`, each with its last log line;
/// returns those cancelled. On the trigger-less connection (`triggers` false) their
/// texts and statistics are kept here, as the triggers would; then what they wait for
/// ends for their own dependants too ([`release`] by the caller).
fn cancel(
    tx: &Transaction<'_>,
    which: &[(i64, String)],
    now: i64,
    triggers: bool,
) -> Result<Vec<i64>, StoreError> {
    let mut done = Vec::new();
    let mut lines = Vec::new();
    {
        let mut stmt = tx
            .prepare_cached(
                "UPDATE tasks SET status = 'cancelled', deps_left = 0, run_after = ?2,
                        finished_at = ?2, message = ?3, error = ?3
                 WHERE id = ?1 AND status = 'pending' AND deps_left > 0",
            )
            .context("cancel dependant")?;
        for (id, message) in which {
            if stmt
                .execute(params![id, now, message])
                .context("cancel dependant")?
                > 0
            {
                done.push(*id);
                lines.push((*id, LogLine::new("cancelled", 0, 0, 0, "", message)));
            }
        }
    }
    let refs: Vec<(i64, &LogLine)> = lines.iter().map(|(id, l)| (*id, l)).collect();
    append(tx, &refs)?;
    if !triggers {
        let messages: Vec<(i64, &str)> = lines
            .iter()
            .map(|(id, l)| (*id, l.message.as_str()))
            .collect();
        let text_ids = texts::intern_messages(tx, &messages)?;
        let mut set = tx
            .prepare_cached("UPDATE tasks SET text_id = ?2 WHERE id = ?1")
            .context("cancel dependant")?;
        for ((id, _), text) in messages.iter().zip(text_ids) {
            set.execute(params![id, text]).context("cancel dependant")?;
        }
        count_finished(tx, &done)?;
    }
    Ok(done)
}

/// Counts down the tasks waiting for `ended` (tasks that just completed, failed finally
/// or were cancelled, inside `tx`): the last dependency releases a task (due at `now`),
/// a failed or cancelled one cancels it unless it runs after any outcome, and a
/// cancelled task's own dependants follow. `triggers`: whether `tx` runs the triggers
/// (false on the trigger-less connection). Returns whether a task was released. Costs
/// one look-up in `task_deps` when nothing waits.
pub(super) fn release(
    tx: &Transaction<'_>,
    ended: &[i64],
    now: i64,
    triggers: bool,
) -> Result<bool, StoreError> {
    let mut released = false;
    let mut frontier = ended.to_vec();
    while !frontier.is_empty() {
        // task -> (dependencies that ended, the first failed or cancelled one that
        // cancels it).
        let mut hits: BTreeMap<i64, (i64, Option<(i64, Status)>)> = BTreeMap::new();
        {
            let mut stmt = tx
                .prepare_cached(
                    "SELECT d.task_id, d.depends_on, e.status, d.after_any
                     FROM json_each(?1) AS j JOIN task_deps AS d ON d.depends_on = j.value
                     JOIN tasks AS e ON e.id = d.depends_on
                     ORDER BY d.task_id, d.depends_on",
                )
                .context("release dependants")?;
            let mut rows = stmt
                .query([id_list(&frontier)])
                .context("release dependants")?;
            while let Some(r) = rows.next().context("release dependants")? {
                let task: i64 = r.get(0).context("release dependants")?;
                let dep: i64 = r.get(1).context("release dependants")?;
                let status: String = r.get(2).context("release dependants")?;
                let any: bool = r.get(3).context("release dependants")?;
                let status = Status::parse(&status).unwrap_or(Status::Failed);
                let hit = hits.entry(task).or_default();
                hit.0 += 1;
                if !any && hit.1.is_none() && status != Status::Completed {
                    hit.1 = Some((dep, status));
                }
            }
        }
        if hits.is_empty() {
            break;
        }
        let mut cancels = Vec::new();
        {
            let mut count = tx
                .prepare_cached(
                    "UPDATE tasks SET deps_left = deps_left - ?2,
                            run_after = CASE WHEN deps_left - ?2 <= 0 THEN ?3 ELSE run_after END
                     WHERE id = ?1 AND status = 'pending' AND deps_left > 0
                     RETURNING deps_left",
                )
                .context("release dependants")?;
            for (task, (n, cause)) in &hits {
                if let Some((dep, status)) = cause {
                    cancels.push((*task, dependency_cancel_message(*dep, *status)));
                    continue;
                }
                let left: Option<i64> = count
                    .query_row(params![task, n, now], |r| r.get(0))
                    .optional()
                    .context("release dependants")?;
                released |= left.is_some_and(|l| l <= 0);
            }
        }
        frontier = cancel(tx, &cancels, now, triggers)?;
    }
    Ok(released)
}

/// The dependencies of task `id` as [`crate::TaskQueue::task_dependencies`] reads them.
pub(super) fn dependencies(
    conn: &rusqlite::Connection,
    id: i64,
) -> Result<Option<Dependencies>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT d.depends_on, d.after_any, e.status, t.status, t.deps_left
             FROM task_deps AS d JOIN tasks AS t ON t.id = d.task_id
             LEFT JOIN tasks AS e ON e.id = d.depends_on
             WHERE d.task_id = ?1 ORDER BY d.depends_on",
        )
        .context("read dependencies")?;
    let rows = stmt
        .query_map([id], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, bool>(1)?,
                r.get::<_, Option<String>>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, i64>(4)?,
            ))
        })
        .context("read dependencies")?;
    let mut deps: Option<Dependencies> = None;
    for row in rows {
        let (dep, any, dep_status, status, left) = row.context("read dependencies")?;
        let d = deps.get_or_insert_with(|| Dependencies {
            after: Vec::new(),
            any,
            waiting_on: Vec::new(),
        });
        d.after.push(dep);
        let ended = dep_status
            .as_deref()
            .and_then(Status::parse)
            .is_none_or(Status::is_final);
        if status == "pending" && left > 0 && !ended {
            d.waiting_on.push(dep);
        }
    }
    Ok(deps)
}
