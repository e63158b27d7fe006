//! The task queue: creation, atomic claims, outcomes, cancel / retry, recovery, clean-up.
//!
//! Claims run inside `BEGIN IMMEDIATE` with `UPDATE … RETURNING`: the write lock is
//! taken before the pending rows are read, so two processes can never claim the same
//! task, whatever they do at the same time.

use std::collections::HashMap;
use std::fmt;

use rusqlite::{params, OptionalExtension, Row, TransactionBehavior};
use serde::Serialize;

use crate::store::{Context, Store, StoreError};

/// Where a task is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Waiting to be claimed (possibly not before `run_after`).
    Pending,
    /// Claimed by a process and running in a runner.
    Running,
    /// Finished successfully.
    Completed,
    /// Finished with an error and no attempts left (or not retried yet by hand).
    Failed,
    /// Stopped by an operator.
    Cancelled,
}

impl Status {
    /// All statuses, in lifecycle order.
    pub const ALL: [Status; 5] = [
        Status::Pending,
        Status::Running,
        Status::Completed,
        Status::Failed,
        Status::Cancelled,
    ];

    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Running => "running",
            Status::Completed => "completed",
            Status::Failed => "failed",
            Status::Cancelled => "cancelled",
        }
    }

    /// Parses a stored or user-supplied name.
    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// True for completed, failed and cancelled.
    pub fn is_final(self) -> bool {
        matches!(self, Status::Completed | Status::Failed | Status::Cancelled)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad` honours width and alignment, so tables line up.
        f.pad(self.as_str())
    }
}

/// Claim order: high before normal before low.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// Claimed first.
    High,
    /// The default.
    Normal,
    /// Claimed last.
    Low,
}

impl Priority {
    /// Stored rank (lower runs first).
    pub fn rank(self) -> i64 {
        match self {
            Priority::High => 0,
            Priority::Normal => 1,
            Priority::Low => 2,
        }
    }

    /// From a stored rank.
    pub fn from_rank(rank: i64) -> Priority {
        match rank {
            0 => Priority::High,
            2 => Priority::Low,
            _ => Priority::Normal,
        }
    }

    /// The name shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::High => "high",
            Priority::Normal => "normal",
            Priority::Low => "low",
        }
    }

    /// Parses `high`, `normal` or `low`.
    pub fn parse(s: &str) -> Option<Priority> {
        [Priority::High, Priority::Normal, Priority::Low]
            .into_iter()
            .find(|p| p.as_str() == s)
    }
}

/// A task to insert.
#[derive(Debug, Clone)]
pub struct NewTask {
    /// Worker identifier.
    pub worker: String,
    /// Action name.
    pub action: String,
    /// Input data, a JSON object as text.
    pub data: String,
    /// Claim priority.
    pub priority: Priority,
    /// Attempts allowed before the task stays failed.
    pub max_attempts: u32,
    /// Who created it.
    pub started_by: Option<String>,
    /// Not claimed before this time (ms since epoch).
    pub run_after: i64,
    /// Creation time (ms since epoch).
    pub created_at: i64,
}

/// A stored task.
#[derive(Debug, Clone, Serialize)]
pub struct TaskRecord {
    /// Id.
    pub id: i64,
    /// Worker identifier.
    pub worker: String,
    /// Action name.
    pub action: String,
    /// Status.
    pub status: Status,
    /// Priority.
    pub priority: Priority,
    /// Percent done.
    pub progress: i64,
    /// Items processed.
    pub processed: i64,
    /// Items in all.
    pub total: i64,
    /// Latest message.
    pub message: String,
    /// Input data (JSON text; may hold values to redact before showing). Not serialized:
    /// views show it redacted and parsed.
    #[serde(skip_serializing)]
    pub data: String,
    /// Result JSON text of a completed task. Not serialized: views show it parsed.
    #[serde(skip_serializing)]
    pub result: Option<String>,
    /// Error message of the last failed attempt.
    pub error: Option<String>,
    /// Who created it.
    pub started_by: Option<String>,
    /// Attempts started so far.
    pub attempts: i64,
    /// Attempts allowed.
    pub max_attempts: i64,
    /// Not claimed before (ms).
    pub run_after: i64,
    /// Created (ms).
    pub created_at: i64,
    /// Last attempt started (ms).
    pub started_at: Option<i64>,
    /// Finished (ms).
    pub finished_at: Option<i64>,
    /// Last sign of life of the process running it (ms).
    pub heartbeat_at: Option<i64>,
    /// Process that claimed it.
    pub owner: Option<String>,
    /// An operator asked to cancel it while running.
    pub cancel_requested: bool,
}

const COLUMNS: &str = "id, worker, action, status, priority, progress, processed, total, message,
    data, result, error, started_by, attempts, max_attempts, run_after, created_at, started_at,
    finished_at, heartbeat_at, owner, cancel_requested";

fn from_row(r: &Row<'_>) -> rusqlite::Result<TaskRecord> {
    let status: String = r.get(3)?;
    Ok(TaskRecord {
        id: r.get(0)?,
        worker: r.get(1)?,
        action: r.get(2)?,
        status: Status::parse(&status).unwrap_or(Status::Failed),
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
    })
}

/// A claimed task with what the runner needs from its worker's registration.
#[derive(Debug, Clone)]
pub struct ClaimedTask {
    /// The task, now running.
    pub task: TaskRecord,
    /// Its worker's registration, read once per claim and shared by the claim's tasks.
    pub worker: std::sync::Arc<ClaimedWorker>,
}

/// What running a task needs from its worker's registration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClaimedWorker {
    /// The worker's library file.
    pub library_path: String,
    /// The worker's stored settings (JSON object text, secrets included).
    pub settings: String,
    /// The worker's manifest JSON.
    pub manifest: String,
}

/// How an attempt ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Success, with the result JSON text.
    Completed {
        /// Result JSON.
        result: String,
    },
    /// Failure. With `retry_at`, the task goes back to pending until then.
    Failed {
        /// Error message.
        error: String,
        /// When to retry (ms), if attempts remain.
        retry_at: Option<i64>,
    },
    /// Stopped on an operator's request.
    Cancelled {
        /// What happened.
        message: String,
    },
    /// Interrupted through no fault of its own (the service stopped): back to pending,
    /// and the attempt does not count.
    Requeued,
}

/// The final state of one attempt, applied by [`Store::finish_tasks`].
#[derive(Debug, Clone)]
pub struct Finish {
    /// Task id.
    pub id: i64,
    /// The claim it ends (a recovered and re-claimed task is not touched by a stale owner).
    pub owner: String,
    /// How it ended.
    pub outcome: Outcome,
    /// Final percent.
    pub progress: i64,
    /// Final processed count.
    pub processed: i64,
    /// Final total.
    pub total: i64,
    /// Final message.
    pub message: String,
    /// When (ms).
    pub at: i64,
}

/// A progress update of a running task.
#[derive(Debug, Clone)]
pub struct ProgressUpdate {
    /// Task id.
    pub id: i64,
    /// Percent.
    pub progress: i64,
    /// Processed.
    pub processed: i64,
    /// Total.
    pub total: i64,
    /// Message.
    pub message: String,
}

/// What `request_cancel` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelResult {
    /// The task was pending and is now cancelled.
    CancelledPending,
    /// The task is running; its runner was asked to stop.
    Requested,
    /// The task had already ended with this status.
    AlreadyFinal(Status),
}

/// Filter for [`Store::list_tasks`].
#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    /// Only this status.
    pub status: Option<Status>,
    /// Only this worker.
    pub worker: Option<String>,
    /// At most this many (newest first).
    pub limit: Option<u32>,
}

/// Counts per status.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StatusCounts {
    /// Pending.
    pub pending: i64,
    /// Running.
    pub running: i64,
    /// Completed.
    pub completed: i64,
    /// Failed.
    pub failed: i64,
    /// Cancelled.
    pub cancelled: i64,
}

/// How long a new task stays unclaimable if its creator dies before writing its first
/// log line. Creators store tasks hidden (`run_after` this far ahead), write their
/// creation lines, then make them due with [`Store::release_new_tasks`] — within
/// milliseconds normally — so no engine starts a task whose log does not begin with its
/// creation.
pub const NEW_TASK_HIDDEN_MS: i64 = 30_000;

impl Store {
    /// Inserts `count` identical pending tasks in one transaction; returns their ids in
    /// creation order.
    ///
    /// The rows are inserted without the statistics triggers (see [`Store::untracked`])
    /// and counted once for the batch: they share worker, status and creation time.
    pub fn insert_tasks(&mut self, t: &NewTask, count: usize) -> Result<Vec<i64>, StoreError> {
        let tx = self
            .untracked()?
            .transaction()
            .context("begin creating tasks")?;
        let mut ids = Vec::with_capacity(count);
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO tasks (worker, action, status, priority, data, started_by,
                        max_attempts, run_after, created_at, message)
                     VALUES (?1, ?2, 'pending', ?3, ?4, ?5, ?6, ?7, ?8, 'Task created')",
                )
                .context("create task")?;
            for _ in 0..count {
                stmt.execute(params![
                    t.worker,
                    t.action,
                    t.priority.rank(),
                    t.data,
                    t.started_by,
                    t.max_attempts,
                    t.run_after,
                    t.created_at
                ])
                .context("create task")?;
                ids.push(tx.last_insert_rowid());
            }
        }
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
                crate::stats::bucket_floor(t.created_at),
                t.worker,
                count as i64
            ])
        })
        .context("count new tasks")?;
        tx.commit().context("commit new tasks")?;
        Ok(ids)
    }

    /// Makes tasks stored by [`Store::insert_tasks`] with `run_after = hidden_until`
    /// claimable now: the ids from `first` to `last` that are still pending and hidden.
    /// Creators store tasks hidden until their first log lines are written, so an
    /// engine never starts a task whose log does not begin with its creation.
    pub fn release_new_tasks(
        &mut self,
        first: i64,
        last: i64,
        hidden_until: i64,
        now: i64,
    ) -> Result<usize, StoreError> {
        self.conn
            .prepare_cached(
                "UPDATE tasks SET run_after = ?4
                 WHERE id BETWEEN ?1 AND ?2 AND status = 'pending' AND run_after = ?3",
            )
            .context("release new tasks")?
            .execute(params![first, last, hidden_until, now])
            .context("release new tasks")
    }

    /// One task.
    pub fn get_task(&self, id: i64) -> Result<Option<TaskRecord>, StoreError> {
        self.conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM tasks WHERE id = ?1"),
                [id],
                from_row,
            )
            .optional()
            .context("read task")
    }

    /// Tasks matching the filter, newest first.
    pub fn list_tasks(&self, f: &TaskFilter) -> Result<Vec<TaskRecord>, StoreError> {
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

    /// Pending tasks that are due and belong to active workers.
    pub fn count_claimable(&self, now: i64) -> Result<i64, StoreError> {
        self.conn
            .query_row(
                "SELECT COUNT(*) FROM tasks WHERE status = 'pending' AND run_after <= ?1
                   AND worker IN (SELECT identifier FROM workers WHERE active = 1)",
                [now],
                |r| r.get(0),
            )
            .context("count pending tasks")
    }

    /// Earliest `run_after` of pending tasks of active workers (to know when to wake).
    pub fn next_run_after(&self) -> Result<Option<i64>, StoreError> {
        self.conn
            .query_row(
                "SELECT MIN(run_after) FROM tasks WHERE status = 'pending'
                   AND worker IN (SELECT identifier FROM workers WHERE active = 1)",
                [],
                |r| r.get(0),
            )
            .context("read next retry time")
    }

    /// Claims up to `limit` due pending tasks of active workers, in priority then FIFO
    /// order, for `owner`. The claim walks the partial index `tasks_claim` in claim
    /// order (forced: the planner would otherwise pick the status index and sort every
    /// pending row on each claim).
    pub fn claim_tasks(
        &mut self,
        owner: &str,
        now: i64,
        limit: usize,
    ) -> Result<Vec<ClaimedTask>, StoreError> {
        self.claim_tasks_except(owner, now, limit, &[])
    }

    /// Like [`Store::claim_tasks`], skipping the tasks of the `excluded` workers (those at
    /// their concurrency limit).
    pub fn claim_tasks_except(
        &mut self,
        owner: &str,
        now: i64,
        limit: usize,
        excluded: &[&str],
    ) -> Result<Vec<ClaimedTask>, StoreError> {
        // Identifiers are URL-safe ([a-z0-9_-]), so quoting them inline is safe; the
        // check keeps it so even if a caller passes something else.
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
        self.claim_where(owner, now, &claimable(&exclusion), limit as i64)
    }

    /// [`Store::finish_tasks`] then [`Store::claim_tasks`] in one transaction: an
    /// engine records what ended and takes the next batch with one commit.
    pub fn finish_and_claim(
        &mut self,
        finishes: &[Finish],
        owner: &str,
        now: i64,
        limit: usize,
    ) -> Result<(Vec<bool>, Vec<ClaimedTask>), StoreError> {
        let tx = self
            .untracked()?
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .context("begin finish and claim")?;
        let applied = finish_in(&tx, finishes)?;
        let claimed = claim_in(&tx, owner, now, &claimable(""), limit as i64)?;
        tx.commit().context("commit finish and claim")?;
        Ok((applied, claimed))
    }

    /// Claims one specific pending task (for `tasks execute`), whatever its `run_after`.
    pub fn claim_task(
        &mut self,
        id: i64,
        owner: &str,
        now: i64,
    ) -> Result<Option<ClaimedTask>, StoreError> {
        Ok(self
            .claim_where(owner, now, "id = ?3 AND status = 'pending'", id)?
            .pop())
    }

    fn claim_where(
        &mut self,
        owner: &str,
        now: i64,
        condition: &str,
        arg: i64,
    ) -> Result<Vec<ClaimedTask>, StoreError> {
        // No statistic changes when a task starts (running tasks are counted as
        // pending), so the claim runs on the connection without triggers.
        let tx = self
            .untracked()?
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .context("begin claim")?;
        let out = claim_in(&tx, owner, now, condition, arg)?;
        tx.commit().context("commit claim")?;
        Ok(out)
    }

    /// Applies progress updates in one transaction.
    pub fn update_progress(&mut self, updates: &[ProgressUpdate]) -> Result<(), StoreError> {
        if updates.is_empty() {
            return Ok(());
        }
        let tx = self.conn.transaction().context("begin progress update")?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "UPDATE tasks SET progress = ?2, processed = ?3, total = ?4, message = ?5
                     WHERE id = ?1 AND status = 'running'",
                )
                .context("update progress")?;
            for u in updates {
                stmt.execute(params![u.id, u.progress, u.processed, u.total, u.message])
                    .context("update progress")?;
            }
        }
        tx.commit().context("commit progress update")
    }

    /// Records how attempts ended, in one transaction. Returns, per entry, whether it
    /// applied (false when the task was no longer running under that owner, e.g. it
    /// was recovered by another process meanwhile).
    ///
    /// The rows are updated without the statistics triggers (on the engine's
    /// connection, see [`Store::untracked`]); [`count_finished`] then adds the whole
    /// batch to the statistics tables in the same transaction: four statements per
    /// batch instead of four per task.
    pub fn finish_tasks(&mut self, finishes: &[Finish]) -> Result<Vec<bool>, StoreError> {
        let tx = self
            .untracked()?
            .transaction()
            .context("begin finishing tasks")?;
        let applied = finish_in(&tx, finishes)?;
        tx.commit().context("commit finished tasks")?;
        Ok(applied)
    }

    /// Marks this owner's running tasks as alive.
    pub fn heartbeat(&self, owner: &str, now: i64) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "UPDATE tasks SET heartbeat_at = ?2 WHERE owner = ?1 AND status = 'running'",
            )
            .context("heartbeat")?
            .execute(params![owner, now])
            .context("heartbeat")?;
        Ok(())
    }

    /// Running tasks of `owner` whose cancellation was requested.
    pub fn cancel_requests(&self, owner: &str) -> Result<Vec<i64>, StoreError> {
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

    /// Cancels a pending task outright, or flags a running one for its owner to stop.
    pub fn request_cancel(
        &mut self,
        id: i64,
        now: i64,
        message: &str,
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
        let result = match status {
            Status::Pending => {
                tx.execute(
                    "UPDATE tasks SET status = 'cancelled', finished_at = ?2, message = ?3,
                        error = ?3 WHERE id = ?1",
                    params![id, now, message],
                )
                .context("cancel task")?;
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
        Ok(Some(result))
    }

    /// Puts a failed or cancelled task back to pending; the attempt count is kept.
    /// Returns the status the task had, or `None` if it does not exist.
    pub fn retry_task(&mut self, id: i64, now: i64) -> Result<Option<(Status, bool)>, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .context("begin retry")?;
        let status: Option<String> = tx
            .query_row("SELECT status FROM tasks WHERE id = ?1", [id], |r| r.get(0))
            .optional()
            .context("read task")?;
        let Some(status) = status.as_deref().and_then(Status::parse) else {
            return Ok(None);
        };
        let ok = matches!(status, Status::Failed | Status::Cancelled);
        if ok {
            tx.execute(
                "UPDATE tasks SET status = 'pending', run_after = ?2, finished_at = NULL,
                    cancel_requested = 0, message = 'Queued for retry'
                 WHERE id = ?1",
                params![id, now],
            )
            .context("retry task")?;
        }
        tx.commit().context("commit retry")?;
        Ok(Some((status, ok)))
    }

    /// Every running task (for stuck-task recovery).
    pub fn running_tasks(&self) -> Result<Vec<TaskRecord>, StoreError> {
        self.list_tasks(&TaskFilter {
            status: Some(Status::Running),
            ..Default::default()
        })
    }

    /// Ids of finished tasks with these statuses that finished before `cutoff`, oldest
    /// first, at most `limit`.
    pub fn finished_before(
        &self,
        statuses: &[Status],
        cutoff: i64,
        limit: u32,
    ) -> Result<Vec<i64>, StoreError> {
        let list: Vec<String> = statuses
            .iter()
            .map(|s| format!("'{}'", s.as_str()))
            .collect();
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT id FROM tasks WHERE status IN ({}) AND finished_at < ?1 ORDER BY id LIMIT ?2",
                list.join(",")
            ))
            .context("find old tasks")?;
        let rows = stmt
            .query_map(params![cutoff, limit], |r| r.get(0))
            .context("find old tasks")?;
        rows.collect::<Result<_, _>>().context("find old tasks")
    }

    /// Deletes tasks by id in one transaction (only finished ones: a task that started
    /// running again meanwhile is kept). Returns the ids deleted.
    pub fn delete_finished_tasks(&mut self, ids: &[i64]) -> Result<Vec<i64>, StoreError> {
        let tx = self.conn.transaction().context("begin delete")?;
        let mut deleted = Vec::new();
        {
            let mut stmt = tx
                .prepare_cached(
                    "DELETE FROM tasks WHERE id = ?1 AND status IN ('completed','failed','cancelled')",
                )
                .context("delete task")?;
            for id in ids {
                if stmt.execute([id]).context("delete task")? > 0 {
                    deleted.push(*id);
                }
            }
        }
        tx.commit().context("commit delete")?;
        Ok(deleted)
    }

    /// Which of these ids exist.
    pub fn existing_task_ids(
        &self,
        ids: &[i64],
    ) -> Result<std::collections::HashSet<i64>, StoreError> {
        let mut out = std::collections::HashSet::new();
        if ids.len() > 1000 {
            // Sweeping a log directory of a large home: one scan of the primary key
            // beats a point query per file.
            let mut stmt = self
                .conn
                .prepare_cached("SELECT id FROM tasks ORDER BY id")
                .context("check tasks")?;
            let all: Vec<i64> = stmt
                .query_map([], |r| r.get(0))
                .context("check tasks")?
                .collect::<Result<_, _>>()
                .context("check tasks")?;
            out.extend(ids.iter().filter(|id| all.binary_search(id).is_ok()));
            return Ok(out);
        }
        let mut stmt = self
            .conn
            .prepare_cached("SELECT 1 FROM tasks WHERE id = ?1")
            .context("check tasks")?;
        for id in ids {
            if stmt.exists([id]).context("check tasks")? {
                out.insert(*id);
            }
        }
        Ok(out)
    }
}

/// The claim query's condition: pending, due, of an active worker and not excluded,
/// in claim order, at most `?3`.
fn claimable(exclusion: &str) -> String {
    format!(
        "id IN (SELECT t.id FROM tasks t INDEXED BY tasks_claim
             JOIN workers w ON w.identifier = t.worker
             WHERE t.status = 'pending' AND t.run_after <= ?2 AND w.active = 1{exclusion}
             ORDER BY t.priority, t.id LIMIT ?3)"
    )
}

/// Claims the tasks matching `condition` inside `tx` (on the trigger-less connection).
fn claim_in(
    tx: &rusqlite::Transaction<'_>,
    owner: &str,
    now: i64,
    condition: &str,
    arg: i64,
) -> Result<Vec<ClaimedTask>, StoreError> {
    let claimed: Vec<TaskRecord> = {
        let mut stmt = tx
            .prepare_cached(&format!(
                "UPDATE tasks SET status = 'running', attempts = attempts + 1, owner = ?1,
                        started_at = ?2, heartbeat_at = ?2, finished_at = NULL,
                        cancel_requested = 0, progress = 0, processed = 0, total = 0,
                        message = 'Started'
                     WHERE {condition}
                     RETURNING {COLUMNS}"
            ))
            .context("claim tasks")?;
        let rows = stmt
            .query_map(params![owner, now, arg], from_row)
            .context("claim tasks")?;
        rows.collect::<Result<_, _>>().context("claim tasks")?
    };
    let mut out = Vec::with_capacity(claimed.len());
    {
        let mut query = tx
            .prepare_cached(
                "SELECT library_path, settings, manifest FROM workers WHERE identifier = ?1",
            )
            .context("read worker of claimed task")?;
        let mut workers: std::collections::HashMap<String, std::sync::Arc<ClaimedWorker>> =
            std::collections::HashMap::new();
        for task in claimed {
            let worker = match workers.get(&task.worker) {
                Some(w) => w.clone(),
                None => {
                    let w = query
                        .query_row([&task.worker], |r| {
                            Ok(ClaimedWorker {
                                library_path: r.get(0)?,
                                settings: r.get(1)?,
                                manifest: r.get(2)?,
                            })
                        })
                        .optional()
                        .context("read worker of claimed task")?
                        .unwrap_or_default();
                    let w = std::sync::Arc::new(w);
                    workers.insert(task.worker.clone(), w.clone());
                    w
                }
            };
            out.push(ClaimedTask { task, worker });
        }
    }
    // RETURNING yields rows in no particular order; keep the claim order.
    out.sort_by_key(|c| (c.task.priority.rank(), c.task.id));
    Ok(out)
}

/// Applies `finishes` inside `tx` (on the trigger-less connection) and counts them in
/// the statistics; returns which applied.
fn finish_in(tx: &rusqlite::Transaction<'_>, finishes: &[Finish]) -> Result<Vec<bool>, StoreError> {
    let mut applied = Vec::with_capacity(finishes.len());
    // Ids of the attempts that ended the task (not those queued again): they are
    // what the statistics count.
    let mut ended: Vec<i64> = Vec::with_capacity(finishes.len());
    {
        let mut done = tx
            .prepare_cached(
                "UPDATE tasks SET status = ?3, result = ?4, error = ?5, progress = ?6,
                        processed = ?7, total = ?8, message = ?9, finished_at = ?10,
                        run_after = ?11, owner = NULL, cancel_requested = 0,
                        attempts = attempts - ?12
                     WHERE id = ?1 AND owner = ?2 AND status = 'running'",
            )
            .context("finish tasks")?;
        for f in finishes {
            let (status, result, error, finished_at, run_after) = match &f.outcome {
                Outcome::Completed { result } => {
                    ("completed", Some(result.as_str()), None, Some(f.at), 0)
                }
                Outcome::Failed {
                    error,
                    retry_at: Some(at),
                } => ("pending", None, Some(error.as_str()), None, *at),
                Outcome::Failed {
                    error,
                    retry_at: None,
                } => ("failed", None, Some(error.as_str()), Some(f.at), 0),
                Outcome::Cancelled { message } => {
                    ("cancelled", None, Some(message.as_str()), Some(f.at), 0)
                }
                Outcome::Requeued => ("pending", None, None, None, f.at),
            };
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
                    matches!(f.outcome, Outcome::Requeued) as i64
                ])
                .context("finish task")?;
            if n > 0 && finished_at.is_some() {
                ended.push(f.id);
            }
            applied.push(n > 0);
        }
    }
    count_finished(tx, &ended)?;
    Ok(applied)
}

/// Adds tasks that just finished (`ids`: rows updated from running to completed,
/// failed or cancelled with no trigger run) to the statistics tables, as the triggers of
/// migration 4 would have row by row: in `task_counts` each leaves the pending row
/// (running tasks are counted there) for its final status, with its run time when it
/// completed or failed; `task_activity` counts it in the 15-minute bucket of its
/// finish; `worker_activity` keeps the latest finish. The figures come from the rows
/// themselves (one read of the batch), so they cannot disagree with them.
fn count_finished(tx: &rusqlite::Transaction<'_>, ids: &[i64]) -> Result<(), StoreError> {
    if ids.is_empty() {
        return Ok(());
    }
    // (worker, status) -> (tasks, run ms, runs); pending entries are negative.
    let mut counts: HashMap<(String, String), (i64, i64, i64)> = HashMap::new();
    // (bucket, worker) -> (completed, failed, cancelled, run ms, runs).
    let mut activity: HashMap<(i64, String), [i64; 5]> = HashMap::new();
    let mut last: HashMap<String, i64> = HashMap::new();
    {
        let mut rows = tx
            .prepare_cached(
                "SELECT t.worker, t.status, t.started_at, t.finished_at
                 FROM json_each(?1) AS j JOIN tasks AS t ON t.id = j.value",
            )
            .context("count finished tasks")?;
        let ids = serde_json::to_string(ids).expect("integers serialise");
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
                .entry((crate::stats::bucket_floor(at), worker.clone()))
                .or_default();
            match status.as_str() {
                "completed" => bucket[0] += 1,
                "failed" => bucket[1] += 1,
                _ => bucket[2] += 1,
            }
            bucket[3] += run_ms;
            bucket[4] += ran as i64;
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
    for ((bucket, worker), [completed, failed, cancelled, run_ms, runs]) in &activity {
        add.execute(params![
            bucket, worker, completed, failed, cancelled, run_ms, runs
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
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database with one active worker, `w`, so its tasks can be claimed.
    fn store() -> (tempfile::TempDir, Store) {
        crate::test_support::store_with_workers(&["w"])
    }

    fn new_task() -> NewTask {
        NewTask {
            worker: "w".into(),
            action: "a".into(),
            data: "{}".into(),
            priority: Priority::Normal,
            max_attempts: 1,
            started_by: None,
            run_after: 0,
            created_at: 0,
        }
    }

    #[test]
    fn tasks_inserted_hidden_are_claimable_only_once_released() {
        let (_d, mut s) = store();
        let mut hidden = new_task();
        hidden.run_after = 5_000;
        let ids = s.insert_tasks(&hidden, 3).unwrap();
        assert!(s.claim_tasks("me", 1_000, 10).unwrap().is_empty());
        // A task of someone else that happens to be hidden until the same time is
        // outside the range and stays hidden.
        let other = s.insert_tasks(&hidden, 1).unwrap()[0];
        assert_eq!(
            s.release_new_tasks(ids[0], ids[2], 5_000, 1_000).unwrap(),
            3
        );
        let claimed: Vec<i64> = s
            .claim_tasks("me", 1_000, 10)
            .unwrap()
            .iter()
            .map(|c| c.task.id)
            .collect();
        assert_eq!(claimed, ids);
        assert!(!claimed.contains(&other));
        // Released twice: nothing changes (they are running now).
        assert_eq!(
            s.release_new_tasks(ids[0], ids[2], 5_000, 1_000).unwrap(),
            0
        );
    }

    #[test]
    fn a_writer_waits_for_another_connections_lock_instead_of_failing() {
        let (dir, mut s) = store();
        let path = dir.path().join("stask.db");
        let (locked_tx, locked_rx) = std::sync::mpsc::channel();
        let holder = std::thread::spawn(move || {
            let mut other = Store::open(&path).unwrap();
            let tx = other
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .unwrap();
            locked_tx.send(()).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(300));
            tx.commit().unwrap();
        });
        locked_rx.recv().unwrap();
        let ids = s.insert_tasks(&new_task(), 2).unwrap();
        assert_eq!(ids.len(), 2);
        holder.join().unwrap();
    }

    #[test]
    fn existing_ids_agree_for_small_and_large_sweeps() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("t.db")).unwrap();
        let ids = s.insert_tasks(&new_task(), 1500).unwrap();
        let probe: Vec<i64> = (1..=1600).collect();
        let found = s.existing_task_ids(&probe).unwrap();
        assert_eq!(found.len(), 1500);
        assert!(ids.iter().all(|id| found.contains(id)));
        let few = s.existing_task_ids(&[1, 1500, 9999]).unwrap();
        assert_eq!(few.len(), 2);
    }
}
