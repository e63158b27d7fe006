//! The task queue on SQLite: creation, claims, progress, outcomes, cancel / retry,
//! recovery reads and clean-up. Claims and outcomes live in `claim.rs` and `finish.rs`.

use rusqlite::{params, OptionalExtension, Row, TransactionBehavior};

use super::claim::{claim_due, claim_one};
use super::finish::{finish_in, id_list, uncount_deleted};
use super::logs::{append, append_lines};
use super::{texts, Context, SqliteStore};
use crate::error::StoreError;
use crate::log_line::LogLine;
use crate::queue::{
    After, AfterInsert, CancelResult, Claim, ClaimedTask, Dependencies, Finish, Inserted, NewTask,
    Priority, ProgressUpdate, RetryResult, RunningTask, StartLine, Status, TaskFilter, TaskQueue,
    TaskRecord, UniqueAfterInsert, Uniqueness,
};
use crate::wakeups::Wakeups;

/// The newest task of `t`'s worker and action matching `unique`, read inside `tx`.
fn find_unique(
    tx: &rusqlite::Transaction<'_>,
    t: &NewTask,
    unique: &Uniqueness,
) -> Result<Option<TaskRecord>, StoreError> {
    let statuses: Vec<&str> = unique.statuses.iter().map(|s| s.as_str()).collect();
    let statuses = serde_json::to_string(&statuses).unwrap_or_default();
    tx.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM tasks
         WHERE unique_key = ?1 AND worker = ?2 AND action = ?3
           AND status IN (SELECT value FROM json_each(?4)) AND created_at >= ?5
         ORDER BY id DESC LIMIT 1"
    ))
    .and_then(|mut s| {
        s.query_row(
            params![
                unique.key,
                t.worker,
                t.action,
                statuses,
                unique.since.unwrap_or(i64::MIN)
            ],
            from_row,
        )
        .optional()
    })
    .context("look for a task with the unique key")
}

pub(super) const COLUMNS: &str = "id, worker, action, status, priority, progress, processed,
    total, message, data, result, error, started_by, attempts, max_attempts, run_after,
    created_at, started_at, finished_at, heartbeat_at, owner, cancel_requested, limit_rule,
    limit_key, parent_id";

use crate::limits::limit_of;

pub(super) fn from_row(r: &Row<'_>) -> rusqlite::Result<TaskRecord> {
    let status: String = r.get(3)?;
    let status = Status::parse(&status).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            3,
            rusqlite::types::Type::Text,
            format!("unknown task status '{status}'").into(),
        )
    })?;
    Ok(TaskRecord {
        id: r.get(0)?,
        worker: r.get(1)?,
        action: r.get(2)?,
        status,
        priority: Priority::from_rank(r.get(4)?),
        progress: r.get(5)?,
        processed: r.get(6)?,
        total: r.get(7)?,
        message: r.get(8)?,
        data: r.get(9)?,
        result: r.get(10)?,
        error: r.get(11)?,
        started_by: r.get(12)?,
        attempts: r.get(13)?,
        max_attempts: r.get(14)?,
        run_after: r.get(15)?,
        created_at: r.get(16)?,
        started_at: r.get(17)?,
        finished_at: r.get(18)?,
        heartbeat_at: r.get(19)?,
        owner: r.get(20)?,
        cancel_requested: r.get(21)?,
        limit: limit_of(r.get(22)?, r.get(23)?),
        parent: r.get(24)?,
    })
}

/// Takes `count` ids from the store's counter (inside the caller's write transaction):
/// ids are never reused, also after the newest tasks were deleted.
pub(super) fn take_ids(conn: &rusqlite::Connection, count: usize) -> Result<i64, StoreError> {
    let first: i64 = conn
        .prepare_cached("SELECT value FROM meta WHERE key = 'next_task_id'")
        .and_then(|mut s| s.query_row([], |r| r.get(0)))
        .context("take task ids")?;
    // Never below the table's own maximum (a task inserted by other means).
    let max: i64 = conn
        .prepare_cached("SELECT COALESCE(MAX(id), 0) + 1 FROM tasks")
        .and_then(|mut s| s.query_row([], |r| r.get(0)))
        .context("take task ids")?;
    let first = first.max(max);
    conn.prepare_cached("UPDATE meta SET value = ?1 WHERE key = 'next_task_id'")
        .and_then(|mut s| s.execute([first + count as i64]))
        .context("take task ids")?;
    Ok(first)
}

/// Deletes tasks (ids of rows present) with their logs and result files, and the texts
/// no other task names, and takes them out of the statistics, inside the caller's
/// transaction on the trigger-less connection.
fn delete_in(tx: &rusqlite::Transaction<'_>, ids: &[i64]) -> Result<(), StoreError> {
    // Each id once: the statistics are taken out per row read back.
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    let ids = &ids[..];
    if ids.is_empty() {
        return Ok(());
    }
    let text_ids = uncount_deleted(tx, ids)?;
    let list = id_list(ids);
    for sql in [
        "DELETE FROM result_chunks WHERE file_id IN (SELECT f.id FROM json_each(?1) AS j
            JOIN result_files AS f ON f.task_id = j.value)",
        "DELETE FROM result_files WHERE task_id IN (SELECT value FROM json_each(?1))",
        "DELETE FROM task_logs WHERE task_id IN (SELECT value FROM json_each(?1))",
        "DELETE FROM task_deps WHERE task_id IN (SELECT value FROM json_each(?1))",
        "DELETE FROM tasks WHERE id IN (SELECT value FROM json_each(?1))",
    ] {
        tx.prepare_cached(sql)
            .and_then(|mut s| s.execute([&list]))
            .context("delete tasks")?;
    }
    texts::forget_unused(tx, &text_ids)?;
    Ok(())
}

/// Inserts `count` tasks like `t` (with `unique_key`) and their creation lines inside
/// the caller's write transaction on the trigger-less connection, counting them in the
/// statistics. Returns their ids, in order.
pub(super) fn insert_in(
    tx: &rusqlite::Transaction<'_>,
    t: &NewTask,
    count: usize,
    creation: &LogLine,
    unique_key: Option<&str>,
) -> Result<Vec<i64>, StoreError> {
    let first = take_ids(tx, count)?;
    let ids: Vec<i64> = (first..first + count as i64).collect();
    // One text for the whole batch (the search index, texts.rs).
    let text = texts::intern(tx, &t.worker, &t.action, &creation.message)?;
    {
        let mut stmt = tx
            .prepare_cached(
                "INSERT INTO tasks (id, worker, action, status, priority, data, started_by,
                        max_attempts, run_after, created_at, message, text_id, unique_key,
                        limit_rule, limit_key, parent_id)
                     VALUES (?1, ?2, ?3, 'pending', ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13,
                        ?14, ?15)",
            )
            .context("create task")?;
        for id in &ids {
            stmt.execute(params![
                id,
                t.worker,
                t.action,
                t.priority.rank(),
                t.data,
                t.started_by,
                t.max_attempts,
                t.run_after,
                t.created_at,
                creation.message,
                text,
                unique_key,
                t.limit.as_ref().map(|l| &l.rule),
                t.limit.as_ref().map(|l| &l.key),
                t.parent,
            ])
            .context("create task")?;
        }
    }
    let lines: Vec<_> = ids.iter().map(|id| (*id, creation)).collect();
    append(tx, &lines)?;
    // As the insert trigger of migration 4 counts each row.
    tx.prepare_cached(
        "INSERT INTO task_counts (worker, status, n) VALUES (?1, 'pending', ?2)
             ON CONFLICT (worker, status) DO UPDATE SET n = n + excluded.n",
    )
    .and_then(|mut s| s.execute(params![t.worker, count as i64]))
    .context("count new tasks")?;
    tx.prepare_cached(
        "INSERT INTO task_activity (bucket, worker, created) VALUES (?1, ?2, ?3)
             ON CONFLICT (bucket, worker) DO UPDATE SET created = created + excluded.created",
    )
    .and_then(|mut s| {
        s.execute(params![
            crate::bucket_floor(t.created_at),
            t.worker,
            count as i64
        ])
    })
    .context("count new tasks")?;
    Ok(ids)
}

impl TaskQueue for SqliteStore {
    fn insert_tasks(
        &mut self,
        t: &NewTask,
        count: usize,
        creation: &LogLine,
    ) -> Result<Vec<i64>, StoreError> {
        let tx = self
            .untracked()?
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .context("begin creating tasks")?;
        let ids = insert_in(&tx, t, count, creation, None)?;
        tx.commit().context("commit new tasks")?;
        self.notify_work();
        Ok(ids)
    }

    fn insert_unique_task(
        &mut self,
        t: &NewTask,
        unique: &Uniqueness,
        creation: &LogLine,
    ) -> Result<Inserted, StoreError> {
        // IMMEDIATE takes the database's write lock before the look-up, so creators in
        // other processes wait and then see this one's task: look-up and insert are one
        // step for all of them.
        let tx = self
            .untracked()?
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .context("begin creating a unique task")?;
        if let Some(task) = find_unique(&tx, t, unique)? {
            // Nothing written: the transaction ends without a commit.
            return Ok(Inserted::Existing(Box::new(task)));
        }
        let ids = insert_in(&tx, t, 1, creation, Some(&unique.key))?;
        tx.commit().context("commit new task")?;
        self.notify_work();
        Ok(Inserted::Created(ids[0]))
    }

    fn insert_task_after(
        &mut self,
        t: &NewTask,
        after: &After,
        creation: &LogLine,
    ) -> Result<AfterInsert, StoreError> {
        // IMMEDIATE: the dependencies' statuses cannot change between their look-up
        // and the insert, so none ends unseen by the new task.
        let tx = self
            .untracked()?
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .context("begin creating a task with dependencies")?;
        let inserted = super::deps::insert_after_in(&tx, t, after, creation)?;
        if let AfterInsert::Missing(_) = inserted {
            return Ok(inserted);
        }
        tx.commit().context("commit new task")?;
        self.notify_work();
        Ok(inserted)
    }

    fn insert_unique_task_after(
        &mut self,
        t: &NewTask,
        unique: &Uniqueness,
        after: &After,
        creation: &LogLine,
    ) -> Result<UniqueAfterInsert, StoreError> {
        // IMMEDIATE, as both: the key's look-up, the dependencies' statuses and the
        // insert are one step.
        let tx = self
            .untracked()?
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .context("begin creating a unique task with dependencies")?;
        if let Some(task) = find_unique(&tx, t, unique)? {
            return Ok(UniqueAfterInsert::Existing(Box::new(task)));
        }
        let id = match super::deps::insert_after_in(&tx, t, after, creation)? {
            AfterInsert::Created(id) => id,
            // Nothing written: the transaction ends without a commit.
            AfterInsert::Missing(id) => return Ok(UniqueAfterInsert::Missing(id)),
        };
        tx.prepare_cached("UPDATE tasks SET unique_key = ?2 WHERE id = ?1")
            .and_then(|mut s| s.execute(params![id, unique.key]))
            .context("create task")?;
        tx.commit().context("commit new task")?;
        self.notify_work();
        Ok(UniqueAfterInsert::Created(id))
    }

    fn task_dependencies(&self, id: i64) -> Result<Option<Dependencies>, StoreError> {
        super::deps::dependencies(&self.conn, id)
    }

    fn get_task(&self, id: i64) -> Result<Option<TaskRecord>, StoreError> {
        self.conn
            .prepare_cached(&format!("SELECT {COLUMNS} FROM tasks WHERE id = ?1"))
            .and_then(|mut s| s.query_row([id], from_row).optional())
            .context("read task")
    }

    fn list_tasks(&self, f: &TaskFilter) -> Result<Vec<TaskRecord>, StoreError> {
        let mut sql = format!("SELECT {COLUMNS} FROM tasks WHERE 1=1");
        let mut args: Vec<Box<dyn rusqlite::ToSql>> = Vec::new();
        if let Some(s) = f.status {
            sql.push_str(" AND status = ?");
            args.push(Box::new(s.as_str()));
        }
        if let Some(w) = &f.worker {
            sql.push_str(" AND worker = ?");
            args.push(Box::new(w.clone()));
        }
        sql.push_str(" ORDER BY id DESC");
        if let Some(l) = f.limit {
            sql.push_str(&format!(" LIMIT {l}"));
        }
        let mut stmt = self.conn.prepare(&sql).context("list tasks")?;
        let rows = stmt
            .query_map(rusqlite::params_from_iter(args.iter()), from_row)
            .context("list tasks")?;
        rows.collect::<Result<_, _>>().context("list tasks")
    }

    fn count_claimable(&self, now: i64) -> Result<i64, StoreError> {
        self.conn
            .query_row(
                "SELECT COUNT(*) FROM tasks WHERE status = 'pending' AND run_after <= ?1
                   AND deps_left = 0 AND parked = 0
                   AND worker IN (SELECT identifier FROM workers WHERE active = 1)",
                [now],
                |r| r.get(0),
            )
            .context("count pending tasks")
    }

    fn count_held(&self) -> Result<Vec<(String, i64, i64)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT worker, SUM(deps_left > 0), SUM(deps_left = 0 AND parked = 1)
                 FROM tasks WHERE status = 'pending' AND (deps_left > 0 OR parked = 1)
                 GROUP BY worker ORDER BY worker",
            )
            .context("count held tasks")?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .context("count held tasks")?;
        rows.collect::<Result<_, _>>().context("count held tasks")
    }

    fn next_run_after(&self) -> Result<Option<i64>, StoreError> {
        self.conn
            .query_row(
                "SELECT MIN(run_after) FROM tasks WHERE status = 'pending' AND deps_left = 0
                   AND run_after < ?1
                   AND worker IN (SELECT identifier FROM workers WHERE active = 1)",
                // Tasks parked until released come back with a release, not a time.
                [crate::PARKED_UNTIL_RELEASED],
                |r| r.get(0),
            )
            .context("read next retry time")
    }

    fn claim(&mut self, c: &Claim<'_>) -> Result<(Vec<bool>, Vec<ClaimedTask>), StoreError> {
        let tx = self
            .untracked()?
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .context("begin claim")?;
        let (applied, released) = finish_in(&tx, c.finishes)?;
        let claimed = if c.limit > 0 {
            claim_due(
                &tx,
                c.owner,
                c.now,
                c.excluded_workers,
                c.limit,
                c.start_line,
            )?
        } else {
            Vec::new()
        };
        tx.commit().context("commit claim")?;
        if released {
            self.notify_work();
        }
        Ok((applied, claimed))
    }

    fn claim_task(
        &mut self,
        id: i64,
        owner: &str,
        now: i64,
        start_line: StartLine<'_>,
    ) -> Result<Option<ClaimedTask>, StoreError> {
        let tx = self
            .untracked()?
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .context("begin claim")?;
        let claimed = claim_one(&tx, owner, now, id, start_line)?;
        tx.commit().context("commit claim")?;
        Ok(claimed)
    }

    fn record_progress(
        &mut self,
        owner: &str,
        updates: &[ProgressUpdate],
        lines: &[(i64, LogLine)],
    ) -> Result<(), StoreError> {
        if updates.is_empty() && lines.is_empty() {
            return Ok(());
        }
        // No statistic depends on progress, so the trigger-less connection serves (and
        // the engine keeps all its writes on one connection).
        let tx = self
            .untracked()?
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .context("begin progress update")?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "UPDATE tasks SET progress = ?3, processed = ?4, total = ?5, message = ?6
                     WHERE id = ?1 AND owner = ?2 AND status = 'running'",
                )
                .context("update progress")?;
            for u in updates {
                stmt.execute(params![
                    u.id,
                    owner,
                    u.progress,
                    u.processed,
                    u.total,
                    u.message
                ])
                .context("update progress")?;
            }
            let mut owned = tx
                .prepare_cached(
                    "SELECT 1 FROM tasks WHERE id = ?1 AND owner = ?2 AND status = 'running'",
                )
                .context("append to progress log")?;
            // Lines of tasks still running under this owner, in order.
            let mut mine: std::collections::HashMap<i64, bool> = std::collections::HashMap::new();
            let mut keep = Vec::with_capacity(lines.len());
            for (id, line) in lines {
                let owned = match mine.get(id) {
                    Some(o) => *o,
                    None => {
                        let o = owned
                            .exists(params![id, owner])
                            .context("append to progress log")?;
                        mine.insert(*id, o);
                        o
                    }
                };
                if owned {
                    keep.push((*id, line));
                }
            }
            append(&tx, &keep)?;
        }
        tx.commit().context("commit progress update")
    }

    fn finish_tasks(&mut self, finishes: &[Finish]) -> Result<Vec<bool>, StoreError> {
        if finishes.is_empty() {
            return Ok(Vec::new());
        }
        let tx = self
            .untracked()?
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .context("begin finishing tasks")?;
        let (applied, released) = finish_in(&tx, finishes)?;
        tx.commit().context("commit finished tasks")?;
        if released {
            self.notify_work();
        }
        Ok(applied)
    }

    fn cancel_requests(&self, owner: &str) -> Result<Vec<i64>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id FROM tasks WHERE owner = ?1 AND status = 'running' AND cancel_requested = 1",
            )
            .context("read cancel requests")?;
        let rows = stmt
            .query_map([owner], |r| r.get(0))
            .context("read cancel requests")?;
        rows.collect::<Result<_, _>>()
            .context("read cancel requests")
    }

    fn request_cancel(
        &mut self,
        id: i64,
        now: i64,
        line: &LogLine,
    ) -> Result<Option<CancelResult>, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .context("begin cancel")?;
        let status: Option<String> = tx
            .query_row("SELECT status FROM tasks WHERE id = ?1", [id], |r| r.get(0))
            .optional()
            .context("read task")?;
        let Some(status) = status.as_deref().and_then(Status::parse) else {
            return Ok(None);
        };
        let mut released = false;
        let result = match status {
            Status::Pending => {
                tx.execute(
                    "UPDATE tasks SET status = 'cancelled', finished_at = ?2, message = ?3,
                        error = ?3, deps_left = 0, parked = 0 WHERE id = ?1",
                    params![id, now, line.message],
                )
                .context("cancel task")?;
                append_lines(&tx, id, std::slice::from_ref(line))?;
                // On this connection the triggers keep texts and statistics.
                released = super::deps::release(&tx, &[id], now, true)?;
                // The tasks of its key parked behind it are looked at again.
                released |= super::limits::release(&tx, &[id], now)?;
                CancelResult::CancelledPending
            }
            Status::Running => {
                tx.execute("UPDATE tasks SET cancel_requested = 1 WHERE id = ?1", [id])
                    .context("cancel task")?;
                CancelResult::Requested
            }
            other => CancelResult::AlreadyFinal(other),
        };
        tx.commit().context("commit cancel")?;
        if result == CancelResult::Requested || released {
            // The engine running it looks at cancel requests when it wakes.
            self.notify_work();
        }
        Ok(Some(result))
    }

    fn retry_task(
        &mut self,
        id: i64,
        now: i64,
        line: &dyn Fn(&TaskRecord) -> LogLine,
    ) -> Result<Option<RetryResult>, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .context("begin retry")?;
        let task = tx
            .prepare_cached(&format!("SELECT {COLUMNS} FROM tasks WHERE id = ?1"))
            .and_then(|mut s| s.query_row([id], from_row).optional())
            .context("read task")?;
        let Some(task) = task else {
            return Ok(None);
        };
        if !matches!(task.status, Status::Failed | Status::Cancelled) {
            return Ok(Some(RetryResult::NotRetryable(task.status)));
        }
        let line = line(&task);
        tx.execute(
            "UPDATE tasks SET status = 'pending', run_after = ?2, finished_at = NULL,
                cancel_requested = 0, message = ?3, deps_left = 0
             WHERE id = ?1",
            params![id, now, line.message],
        )
        .context("retry task")?;
        append_lines(&tx, id, std::slice::from_ref(&line))?;
        tx.commit().context("commit retry")?;
        self.notify_work();
        Ok(Some(RetryResult::Queued(task.status)))
    }

    fn make_task_due(&mut self, id: i64, now: i64) -> Result<bool, StoreError> {
        let n = self
            .conn
            .execute(
                "UPDATE tasks SET run_after = MIN(run_after, ?2)
                 WHERE id = ?1 AND status = 'pending' AND deps_left = 0",
                params![id, now],
            )
            .context("make task due")?;
        if n > 0 {
            self.notify_work();
        }
        Ok(n > 0)
    }

    fn make_all_due(&mut self, now: i64) -> Result<usize, StoreError> {
        let n = self
            .conn
            .execute(
                "UPDATE tasks SET run_after = ?1
                 WHERE status = 'pending' AND run_after > ?1 AND deps_left = 0",
                [now],
            )
            .context("make tasks due")?;
        self.notify_work();
        Ok(n)
    }

    fn running_tasks(&self) -> Result<Vec<RunningTask>, StoreError> {
        let columns: String = COLUMNS
            .split(',')
            .map(|c| format!("t.{}", c.trim()))
            .collect::<Vec<_>>()
            .join(", ");
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT {columns}, o.renewed_at FROM tasks t
                 LEFT JOIN owners o ON o.id = t.owner
                 WHERE t.status = 'running' ORDER BY t.id"
            ))
            .context("read running tasks")?;
        let rows = stmt
            .query_map([], |r| {
                let task = from_row(r)?;
                let renewed: Option<i64> = r.get(25)?;
                let alive_at = match (task.heartbeat_at, renewed) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    (a, b) => a.or(b),
                };
                Ok(RunningTask { task, alive_at })
            })
            .context("read running tasks")?;
        rows.collect::<Result<_, _>>().context("read running tasks")
    }

    fn delete_finished_tasks(&mut self, ids: &[i64]) -> Result<Vec<i64>, StoreError> {
        let mut ids = ids.to_vec();
        ids.sort_unstable();
        ids.dedup();
        let ids = &ids[..];
        let tx = self
            .untracked()?
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .context("begin delete")?;
        let finished: Vec<i64> = {
            let mut stmt = tx
                .prepare_cached(
                    "SELECT t.id FROM json_each(?1) AS j JOIN tasks AS t ON t.id = j.value
                     WHERE t.status IN ('completed', 'failed', 'cancelled')",
                )
                .context("delete tasks")?;
            let rows = stmt
                .query_map([id_list(ids)], |r| r.get(0))
                .context("delete tasks")?;
            rows.collect::<Result<_, _>>().context("delete tasks")?
        };
        delete_in(&tx, &finished)?;
        tx.commit().context("commit delete")?;
        Ok(finished)
    }

    fn delete_finished_before(
        &mut self,
        statuses: &[Status],
        cutoff: i64,
        batch: usize,
    ) -> Result<Vec<i64>, StoreError> {
        let tx = self
            .untracked()?
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .context("begin clean-up")?;
        let mut ids: Vec<i64> = Vec::new();
        {
            // One walk of the (status, finished_at) index per status: no sort of every
            // match, so each batch costs what it deletes.
            let mut stmt = tx
                .prepare_cached(
                    "SELECT id FROM tasks WHERE status = ?1 AND finished_at < ?2
                     ORDER BY finished_at LIMIT ?3",
                )
                .context("find old tasks")?;
            let mut seen = Vec::new();
            for s in statuses.iter().filter(|s| s.is_final()) {
                if seen.contains(s) {
                    continue;
                }
                seen.push(*s);
                let left = batch.saturating_sub(ids.len());
                if left == 0 {
                    break;
                }
                let rows = stmt
                    .query_map(params![s.as_str(), cutoff, left as i64], |r| r.get(0))
                    .context("find old tasks")?;
                for id in rows {
                    ids.push(id.context("find old tasks")?);
                }
            }
        }
        delete_in(&tx, &ids)?;
        // Texts left behind by other changes than deletes, a few at each clean-up.
        texts::sweep(&tx)?;
        tx.commit().context("commit clean-up")?;
        Ok(ids)
    }

    fn release_space(&mut self, max_bytes: u64) -> Result<u64, StoreError> {
        let page: i64 = self
            .conn
            .pragma_query_value(None, "page_size", |r| r.get(0))
            .context("read page size")?;
        let free = |c: &rusqlite::Connection| -> Result<i64, StoreError> {
            c.pragma_query_value(None, "freelist_count", |r| r.get(0))
                .context("read free pages")
        };
        let before = free(&self.conn)?;
        if before == 0 {
            return Ok(0);
        }
        let pages = (max_bytes / page.max(1) as u64).max(1);
        // The pragma frees one page per step of its statement: step it to the end
        // (a batch execution would step it once).
        let mut stmt = self
            .conn
            .prepare(&format!("PRAGMA incremental_vacuum({pages})"))
            .context("give space back")?;
        let mut rows = stmt.query([]).context("give space back")?;
        while rows.next().context("give space back")?.is_some() {}
        drop(rows);
        drop(stmt);
        let after = free(&self.conn)?;
        Ok((before - after).max(0) as u64 * page as u64)
    }
}
