//! The task queue on PostgreSQL: creation, progress, cancel / retry, recovery reads
//! and clean-up. Claims and outcomes live in `claim.rs` and `finish.rs`.
//!
//! Ids come from a sequence, so they are never reused (also after the newest tasks
//! were deleted) and hosts creating tasks at once never wait for each other.

use postgres::{GenericClient, Row};

use super::claim::{claim_in, Pick, UNPARK_EVERY_MS};
use super::finish::finish_in;
use super::logs::{append, append_lines, Numbered};
use super::wakeups::notify_in;
use super::{Context, PgStore};
use crate::error::StoreError;
use crate::log_line::LogLine;
use crate::queue::{
    After, AfterInsert, CancelResult, Claim, ClaimedTask, Dependencies, Finish, Inserted, NewTask,
    Priority, ProgressUpdate, RetryResult, RunningTask, StartLine, Status, TaskFilter, TaskQueue,
    TaskRecord, UniqueAfterInsert, Uniqueness,
};

/// Takes the unique key's lock for the rest of `tx`, then reads the newest task of
/// `t`'s worker and action matching `unique`. Creators of one key, on any host, take
/// turns from the lock to their commit (it is released only after the commit is
/// visible), so each one's look-up, a new statement under READ COMMITTED, sees the
/// task of the one before it.
fn lock_and_find_unique(
    tx: &mut postgres::Transaction<'_>,
    t: &NewTask,
    unique: &Uniqueness,
) -> Result<Option<TaskRecord>, StoreError> {
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, $2)",
        &[
            &UNIQUE_LOCK_CLASS,
            &unique_lock_key(&t.worker, &t.action, &unique.key),
        ],
    )
    .context("wait for other creators of the unique key")?;
    let statuses: Vec<&str> = unique.statuses.iter().map(|s| s.as_str()).collect();
    let key = super::storable(&unique.key);
    let existing = tx
        .query_opt(
            &format!(
                "SELECT {COLUMNS} FROM tasks
                 WHERE unique_key = $1 AND worker = $2 AND action = $3
                   AND status = ANY($4) AND created_at >= $5
                 ORDER BY id DESC LIMIT 1"
            ),
            &[
                &key,
                &t.worker,
                &t.action,
                &statuses,
                &unique.since.unwrap_or(i64::MIN),
            ],
        )
        .context("look for a task with the unique key")?;
    Ok(existing.as_ref().map(from_row))
}

/// The task columns, in [`TaskRecord`] order (read by [`from_row`]).
pub(crate) const COLUMNS: &str = "id, worker, action, status, priority, progress, processed,
    total, message, data, result, error, started_by, attempts, max_attempts, run_after,
    created_at, started_at, finished_at, heartbeat_at, owner, cancel_requested, limit_rule,
    limit_key, parent_id";

/// A task from a row of [`COLUMNS`].
pub(crate) fn from_row(r: &Row) -> TaskRecord {
    let status: String = r.get(3);
    TaskRecord {
        id: r.get(0),
        worker: r.get(1),
        action: r.get(2),
        // The column's CHECK constraint admits only these.
        status: Status::parse(&status).unwrap_or(Status::Failed),
        priority: Priority::from_rank(r.get::<_, i16>(4).into()),
        progress: r.get(5),
        processed: r.get(6),
        total: r.get(7),
        message: r.get(8),
        data: r.get(9),
        result: r.get(10),
        error: r.get(11),
        started_by: r.get(12),
        attempts: r.get(13),
        max_attempts: r.get(14),
        run_after: r.get(15),
        created_at: r.get(16),
        started_at: r.get(17),
        finished_at: r.get(18),
        heartbeat_at: r.get(19),
        owner: r.get(20),
        cancel_requested: r.get(21),
        limit: crate::limits::limit_of(r.get(22), r.get(23)),
        parent: r.get(24),
    }
}

/// Inserts `count` tasks like `t` with their creation line inside the caller's
/// transaction, and queues a wake-up in it. Returns the new ids, in order.
pub(crate) fn insert_in(
    tx: &mut impl GenericClient,
    t: &NewTask,
    count: usize,
    creation: &LogLine,
) -> Result<Vec<i64>, StoreError> {
    insert_keyed_in(tx, t, count, creation, None)
}

/// Class of the advisory locks on unique keys (two-key form: a space apart from the
/// single-key locks, such as the migrations'); the second key is the key's hash.
const UNIQUE_LOCK_CLASS: i32 = 0x5354_4b55; // "STKU"

/// A stable 32-bit hash (FNV-1a) of a unique key with its worker and action, the same
/// in every host: the second key of their advisory lock.
fn unique_lock_key(worker: &str, action: &str, key: &str) -> i32 {
    let mut h: u32 = 0x811c_9dc5;
    for part in [worker, action, key] {
        // A separator no identifier contains, so ("a", "bc") and ("ab", "c") differ.
        for b in part.bytes().chain([0u8]) {
            h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
        }
    }
    h as i32
}

/// [`insert_in`], the tasks created with `unique_key`.
fn insert_keyed_in(
    tx: &mut impl GenericClient,
    t: &NewTask,
    count: usize,
    creation: &LogLine,
    unique_key: Option<&str>,
) -> Result<Vec<i64>, StoreError> {
    if count == 0 {
        return Ok(Vec::new());
    }
    let priority = t.priority.rank() as i16;
    let max_attempts = i64::from(t.max_attempts);
    let n = count as i64;
    let text = creation.text();
    // One statement for the whole batch: the ids, the rows, and their first lines.
    let rows = tx
        .query(
            "WITH ids AS (
                 SELECT nextval('task_ids') AS id FROM generate_series(1, $1::BIGINT)
             ), made AS (
                 INSERT INTO tasks (id, worker, action, status, priority, data, started_by,
                     max_attempts, run_after, created_at, message, log_seq, unique_key,
                     limit_rule, limit_key, parent_id)
                 SELECT id, $2, $3, 'pending', $4, $5, $6, $7, $8, $9, $10, 1, $12, $13, $14, $15
                 FROM ids
                 RETURNING id
             ), lines AS (
                 INSERT INTO task_logs (task_id, seq, line) SELECT id, 1, $11 FROM made
             )
             SELECT id FROM made ORDER BY id",
            &[
                &n,
                &t.worker,
                &t.action,
                &priority,
                &t.data,
                &t.started_by,
                &max_attempts,
                &t.run_after,
                &t.created_at,
                &super::storable(&creation.message),
                &text,
                &unique_key.map(super::storable),
                &t.limit.as_ref().map(|l| super::storable(&l.rule)),
                &t.limit.as_ref().map(|l| super::storable(&l.key)),
                &t.parent,
            ],
        )
        .context("create tasks")?;
    notify_in(tx)?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Deletes tasks (ids of rows present) with their logs and result files inside the
/// caller's transaction (the statistics follow from the delete trigger).
fn delete_in(tx: &mut impl GenericClient, ids: &[i64]) -> Result<(), StoreError> {
    if ids.is_empty() {
        return Ok(());
    }
    for sql in [
        "DELETE FROM result_chunks WHERE file_id IN
            (SELECT id FROM result_files WHERE task_id = ANY($1))",
        "DELETE FROM result_files WHERE task_id = ANY($1)",
        "DELETE FROM task_logs WHERE task_id = ANY($1)",
        "DELETE FROM task_deps WHERE task_id = ANY($1)",
        "DELETE FROM tasks WHERE id = ANY($1)",
    ] {
        tx.execute(sql, &[&ids]).context("delete tasks")?;
    }
    Ok(())
}

impl TaskQueue for PgStore {
    fn insert_tasks(
        &mut self,
        t: &NewTask,
        count: usize,
        creation: &LogLine,
    ) -> Result<Vec<i64>, StoreError> {
        let mut client = self.client()?;
        let mut tx = client.transaction().context("begin creating tasks")?;
        let ids = insert_in(&mut tx, t, count, creation)?;
        tx.commit().context("commit new tasks")?;
        Ok(ids)
    }

    fn insert_task_after(
        &mut self,
        t: &NewTask,
        after: &After,
        creation: &LogLine,
    ) -> Result<AfterInsert, StoreError> {
        let mut client = self.client()?;
        let mut tx = client
            .transaction()
            .context("begin creating a task with dependencies")?;
        let inserted = super::deps::insert_after_in(&mut tx, t, after, creation)?;
        if let AfterInsert::Missing(_) = inserted {
            // Nothing written: the transaction rolls back.
            return Ok(inserted);
        }
        tx.commit().context("commit new task")?;
        Ok(inserted)
    }

    fn insert_unique_task_after(
        &mut self,
        t: &NewTask,
        unique: &Uniqueness,
        after: &After,
        creation: &LogLine,
    ) -> Result<UniqueAfterInsert, StoreError> {
        let mut client = self.client()?;
        let mut tx = client
            .transaction()
            .context("begin creating a unique task with dependencies")?;
        if let Some(task) = lock_and_find_unique(&mut tx, t, unique)? {
            tx.commit().context("end creating a unique task")?;
            return Ok(UniqueAfterInsert::Existing(Box::new(task)));
        }
        let id = match super::deps::insert_after_in(&mut tx, t, after, creation)? {
            AfterInsert::Created(id) => id,
            // Nothing written: the transaction rolls back.
            AfterInsert::Missing(id) => return Ok(UniqueAfterInsert::Missing(id)),
        };
        tx.execute(
            "UPDATE tasks SET unique_key = $2 WHERE id = $1",
            &[&id, &super::storable(&unique.key)],
        )
        .context("create task")?;
        tx.commit().context("commit new task")?;
        Ok(UniqueAfterInsert::Created(id))
    }

    fn task_dependencies(&self, id: i64) -> Result<Option<Dependencies>, StoreError> {
        super::deps::dependencies(&mut *self.client()?, id)
    }

    fn insert_unique_task(
        &mut self,
        t: &NewTask,
        unique: &Uniqueness,
        creation: &LogLine,
    ) -> Result<Inserted, StoreError> {
        let mut client = self.client()?;
        let mut tx = client
            .transaction()
            .context("begin creating a unique task")?;
        if let Some(task) = lock_and_find_unique(&mut tx, t, unique)? {
            tx.commit().context("end creating a unique task")?;
            return Ok(Inserted::Existing(Box::new(task)));
        }
        let ids = insert_keyed_in(&mut tx, t, 1, creation, Some(&unique.key))?;
        tx.commit().context("commit new task")?;
        Ok(Inserted::Created(ids[0]))
    }

    fn get_task(&self, id: i64) -> Result<Option<TaskRecord>, StoreError> {
        let row = self
            .client()?
            .query_opt(
                &format!("SELECT {COLUMNS} FROM tasks WHERE id = $1"),
                &[&id],
            )
            .context("read task")?;
        Ok(row.as_ref().map(from_row))
    }

    fn list_tasks(&self, f: &TaskFilter) -> Result<Vec<TaskRecord>, StoreError> {
        let status = f.status.map(Status::as_str);
        let limit = f.limit.map(i64::from);
        let rows = self
            .client()?
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM tasks
                     WHERE ($1::TEXT IS NULL OR status = $1) AND ($2::TEXT IS NULL OR worker = $2)
                     ORDER BY id DESC LIMIT $3"
                ),
                &[&status, &f.worker, &limit],
            )
            .context("list tasks")?;
        Ok(rows.iter().map(from_row).collect())
    }

    fn count_claimable(&self, now: i64) -> Result<i64, StoreError> {
        Ok(self
            .client()?
            .query_one(
                "SELECT COUNT(*) FROM tasks t JOIN workers w ON w.identifier = t.worker
                 WHERE t.status = 'pending' AND t.run_after <= $1 AND w.active
                   AND t.deps_left = 0 AND NOT t.parked",
                &[&now],
            )
            .context("count pending tasks")?
            .get(0))
    }

    fn count_held(&self) -> Result<Vec<(String, i64, i64)>, StoreError> {
        let rows = self
            .client()?
            .query(
                "SELECT worker, COUNT(*) FILTER (WHERE deps_left > 0),
                        COUNT(*) FILTER (WHERE deps_left = 0 AND parked)
                 FROM tasks WHERE status = 'pending' AND (deps_left > 0 OR parked)
                 GROUP BY worker ORDER BY worker",
                &[],
            )
            .context("count held tasks")?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect())
    }

    fn next_run_after(&self) -> Result<Option<i64>, StoreError> {
        Ok(self
            .client()?
            .query_one(
                "SELECT MIN(t.run_after) FROM tasks t JOIN workers w ON w.identifier = t.worker
                 WHERE t.status = 'pending' AND t.deps_left = 0 AND w.active
                   AND t.run_after < $1",
                // Tasks parked until released come back with a release, not a time.
                &[&crate::PARKED_UNTIL_RELEASED],
            )
            .context("read next retry time")?
            .get(0))
    }

    fn claim(&mut self, c: &Claim<'_>) -> Result<(Vec<bool>, Vec<ClaimedTask>), StoreError> {
        let mut client = self.client()?;
        let mut tx = client.transaction().context("begin claim")?;
        // The finishes' last lines and the start lines, stored by one statement.
        let mut lines = Numbered::with_capacity(c.finishes.len() * 2 + c.limit);
        // Parked tasks the finishes release go straight to this claim when it has room.
        let mut handed = Vec::new();
        let hand_off = (c.limit > 0).then_some(&mut handed);
        let applied = finish_in(&mut tx, c.finishes, &mut lines, &self.statements, hand_off)?;
        let claimed = if c.limit > 0 {
            // Parked tasks whose time has come are looked for at most every
            // UNPARK_EVERY_MS (and whenever the clock went back).
            let last = self.unparked_at.get();
            let unpark = c.now < last || c.now.saturating_sub(last) >= UNPARK_EVERY_MS;
            if unpark {
                self.unparked_at.set(c.now);
            }
            let pick = Pick::Due {
                excluded: c.excluded_workers,
                limit: c.limit as i64,
                unpark,
                handed,
            };
            claim_in(
                &mut tx,
                c.owner,
                c.now,
                pick,
                c.start_line,
                &mut lines,
                &self.statements,
            )?
        } else {
            Vec::new()
        };
        lines.insert_with(&mut tx, Some(&self.statements))?;
        tx.commit().context("commit claim")?;
        Ok((applied, claimed))
    }

    fn claim_task(
        &mut self,
        id: i64,
        owner: &str,
        now: i64,
        start_line: StartLine<'_>,
    ) -> Result<Option<ClaimedTask>, StoreError> {
        let mut client = self.client()?;
        let mut tx = client.transaction().context("begin claim")?;
        let mut lines = Numbered::with_capacity(1);
        let mut claimed = claim_in(
            &mut tx,
            owner,
            now,
            Pick::One(id),
            start_line,
            &mut lines,
            &self.statements,
        )?;
        lines.insert(&mut tx)?;
        tx.commit().context("commit claim")?;
        Ok(claimed.pop())
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
        let mut client = self.client()?;
        let mut tx = client.transaction().context("begin progress update")?;
        if !updates.is_empty() {
            let mut sorted: Vec<&ProgressUpdate> = updates.iter().collect();
            sorted.sort_by_key(|u| u.id);
            let ids: Vec<i64> = sorted.iter().map(|u| u.id).collect();
            let progress: Vec<i64> = sorted.iter().map(|u| u.progress).collect();
            let processed: Vec<i64> = sorted.iter().map(|u| u.processed).collect();
            let total: Vec<i64> = sorted.iter().map(|u| u.total).collect();
            let message: Vec<String> = sorted
                .iter()
                .map(|u| super::storable(&u.message).into_owned())
                .collect();
            tx.execute(
                "UPDATE tasks t SET progress = u.progress, processed = u.processed,
                        total = u.total, message = u.message
                 FROM UNNEST($2::BIGINT[], $3::BIGINT[], $4::BIGINT[], $5::BIGINT[], $6::TEXT[])
                      AS u(id, progress, processed, total, message)
                 WHERE t.id = u.id AND t.owner = $1 AND t.status = 'running'",
                &[&owner, &ids, &progress, &processed, &total, &message],
            )
            .context("update progress")?;
        }
        if !lines.is_empty() {
            // Lines of tasks still running under this owner, in order. The rows are
            // locked as they are checked (FOR UPDATE re-checks the condition on the
            // newest version of each row), so a task recovered by another host between
            // the check and the append cannot get this owner's late lines.
            let mut ids: Vec<i64> = lines.iter().map(|(id, _)| *id).collect();
            ids.sort_unstable();
            ids.dedup();
            let mine: std::collections::HashSet<i64> = tx
                .query(
                    "SELECT id FROM tasks WHERE id = ANY($1) AND owner = $2 AND status = 'running'
                     ORDER BY id FOR UPDATE",
                    &[&ids, &owner],
                )
                .context("append to progress log")?
                .iter()
                .map(|r| r.get(0))
                .collect();
            let keep: Vec<(i64, &LogLine)> = lines
                .iter()
                .filter(|(id, _)| mine.contains(id))
                .map(|(id, l)| (*id, l))
                .collect();
            append(&mut tx, &keep)?;
        }
        tx.commit().context("commit progress update")
    }

    fn finish_tasks(&mut self, finishes: &[Finish]) -> Result<Vec<bool>, StoreError> {
        if finishes.is_empty() {
            return Ok(Vec::new());
        }
        let mut client = self.client()?;
        let mut tx = client.transaction().context("begin finishing tasks")?;
        let mut lines = Numbered::with_capacity(finishes.len() * 2);
        let applied = finish_in(&mut tx, finishes, &mut lines, &self.statements, None)?;
        lines.insert_with(&mut tx, Some(&self.statements))?;
        tx.commit().context("commit finished tasks")?;
        Ok(applied)
    }

    fn cancel_requests(&self, owner: &str) -> Result<Vec<i64>, StoreError> {
        let rows = self
            .client()?
            .query(
                "SELECT id FROM tasks WHERE owner = $1 AND status = 'running' AND cancel_requested
                 ORDER BY id",
                &[&owner],
            )
            .context("read cancel requests")?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    fn request_cancel(
        &mut self,
        id: i64,
        now: i64,
        line: &LogLine,
    ) -> Result<Option<CancelResult>, StoreError> {
        let mut client = self.client()?;
        let mut tx = client.transaction().context("begin cancel")?;
        let status: Option<String> = tx
            .query_opt("SELECT status FROM tasks WHERE id = $1 FOR UPDATE", &[&id])
            .context("read task")?
            .map(|r| r.get(0));
        let Some(status) = status.as_deref().and_then(Status::parse) else {
            return Ok(None);
        };
        let result = match status {
            Status::Pending => {
                let key = tx
                    .query_one(
                        "UPDATE tasks SET status = 'cancelled', finished_at = $2, message = $3,
                            error = $3, deps_left = 0, parked = FALSE WHERE id = $1
                         RETURNING worker, limit_rule, limit_key",
                        &[&id, &now, &super::storable(&line.message)],
                    )
                    .context("cancel task")?;
                append_lines(&mut tx, id, std::slice::from_ref(line))?;
                super::deps::release(&mut tx, &[id], now, None)?;
                // The tasks of its key parked behind it are looked at again.
                if let Some(limit) = crate::limits::limit_of(key.get(1), key.get(2)) {
                    super::limits::release(
                        &mut tx,
                        &[(key.get(0), limit)],
                        now,
                        &self.statements,
                        super::limits::Release::Due(super::limits::Order::KeyLocks),
                    )?;
                }
                CancelResult::CancelledPending
            }
            Status::Running => {
                tx.execute(
                    "UPDATE tasks SET cancel_requested = TRUE WHERE id = $1",
                    &[&id],
                )
                .context("cancel task")?;
                // The engine running it looks at cancel requests when it wakes.
                notify_in(&mut tx)?;
                CancelResult::Requested
            }
            other => CancelResult::AlreadyFinal(other),
        };
        tx.commit().context("commit cancel")?;
        Ok(Some(result))
    }

    fn retry_task(
        &mut self,
        id: i64,
        now: i64,
        line: &dyn Fn(&TaskRecord) -> LogLine,
    ) -> Result<Option<RetryResult>, StoreError> {
        let mut client = self.client()?;
        let mut tx = client.transaction().context("begin retry")?;
        let task = tx
            .query_opt(
                &format!("SELECT {COLUMNS} FROM tasks WHERE id = $1 FOR UPDATE"),
                &[&id],
            )
            .context("read task")?
            .as_ref()
            .map(from_row);
        let Some(task) = task else {
            return Ok(None);
        };
        if !matches!(task.status, Status::Failed | Status::Cancelled) {
            return Ok(Some(RetryResult::NotRetryable(task.status)));
        }
        let line = line(&task);
        tx.execute(
            "UPDATE tasks SET status = 'pending', run_after = $2, finished_at = NULL,
                cancel_requested = FALSE, message = $3, deps_left = 0
             WHERE id = $1",
            &[&id, &now, &super::storable(&line.message)],
        )
        .context("retry task")?;
        append_lines(&mut tx, id, std::slice::from_ref(&line))?;
        notify_in(&mut tx)?;
        tx.commit().context("commit retry")?;
        Ok(Some(RetryResult::Queued(task.status)))
    }

    fn make_task_due(&mut self, id: i64, now: i64) -> Result<bool, StoreError> {
        let mut client = self.client()?;
        let mut tx = client.transaction().context("begin making a task due")?;
        let n = tx
            .execute(
                "UPDATE tasks SET run_after = LEAST(run_after, $2)
                 WHERE id = $1 AND status = 'pending' AND deps_left = 0",
                &[&id, &now],
            )
            .context("make task due")?;
        if n > 0 {
            notify_in(&mut tx)?;
        }
        tx.commit().context("commit making a task due")?;
        Ok(n > 0)
    }

    fn make_all_due(&mut self, now: i64) -> Result<usize, StoreError> {
        let mut client = self.client()?;
        let mut tx = client.transaction().context("begin making tasks due")?;
        let n = tx
            .execute(
                "UPDATE tasks SET run_after = $1
                 WHERE status = 'pending' AND run_after > $1 AND deps_left = 0",
                &[&now],
            )
            .context("make tasks due")?;
        notify_in(&mut tx)?;
        tx.commit().context("commit making tasks due")?;
        Ok(n as usize)
    }

    fn running_tasks(&self) -> Result<Vec<RunningTask>, StoreError> {
        let columns: String = COLUMNS
            .split(',')
            .map(|c| format!("t.{}", c.trim()))
            .collect::<Vec<_>>()
            .join(", ");
        let rows = self
            .client()?
            .query(
                &format!(
                    "SELECT {columns}, o.renewed_at FROM tasks t
                     LEFT JOIN owners o ON o.id = t.owner
                     WHERE t.status = 'running' ORDER BY t.id"
                ),
                &[],
            )
            .context("read running tasks")?;
        Ok(rows
            .iter()
            .map(|r| {
                let task = from_row(r);
                let renewed: Option<i64> = r.get(25);
                let alive_at = match (task.heartbeat_at, renewed) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    (a, b) => a.or(b),
                };
                RunningTask { task, alive_at }
            })
            .collect())
    }

    fn delete_finished_tasks(&mut self, ids: &[i64]) -> Result<Vec<i64>, StoreError> {
        let mut ids = ids.to_vec();
        ids.sort_unstable();
        ids.dedup();
        let mut client = self.client()?;
        let mut tx = client.transaction().context("begin delete")?;
        let finished: Vec<i64> = tx
            .query(
                "SELECT id FROM tasks WHERE id = ANY($1)
                   AND status IN ('completed', 'failed', 'cancelled')
                 ORDER BY id FOR UPDATE",
                &[&ids],
            )
            .context("delete tasks")?
            .iter()
            .map(|r| r.get(0))
            .collect();
        delete_in(&mut tx, &finished)?;
        tx.commit().context("commit delete")?;
        Ok(finished)
    }

    fn delete_finished_before(
        &mut self,
        statuses: &[Status],
        cutoff: i64,
        batch: usize,
    ) -> Result<Vec<i64>, StoreError> {
        let mut client = self.client()?;
        let mut tx = client.transaction().context("begin clean-up")?;
        let mut ids: Vec<i64> = Vec::new();
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
            // SKIP LOCKED: two hosts cleaning up at once take different rows.
            let rows = tx
                .query(
                    "SELECT id FROM tasks WHERE status = $1 AND finished_at < $2
                     ORDER BY finished_at LIMIT $3 FOR UPDATE SKIP LOCKED",
                    &[&s.as_str(), &cutoff, &(left as i64)],
                )
                .context("find old tasks")?;
            ids.extend(rows.iter().map(|r| r.get::<_, i64>(0)));
        }
        delete_in(&mut tx, &ids)?;
        tx.commit().context("commit clean-up")?;
        Ok(ids)
    }

    fn release_space(&mut self, _max_bytes: u64) -> Result<u64, StoreError> {
        // The server reclaims dead rows itself (autovacuum) and keeps the space for new
        // rows; giving it back to the file system would need VACUUM FULL, which locks
        // the tables for its whole run. Nothing is given back here.
        Ok(0)
    }
}
