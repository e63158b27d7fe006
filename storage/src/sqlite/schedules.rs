//! Worker schedules: at most one per worker, and the atomic "fire a due slot" step.
//!
//! The store knows nothing about schedule kinds or time zones: the host computes every
//! `next_run_at` and passes it in. What lives here is the guarantee that a slot fires at
//! most once: [`Schedules::fire_schedule`] re-reads the row, creates the task (or records
//! a skip) and advances `next_run_at` inside one `BEGIN IMMEDIATE` transaction, so two
//! service processes, or a service restarted mid-tick, cannot both fire the same slot.

use super::logs::append_lines;
use super::queue::take_ids;
use super::{Context, SqliteStore};
use crate::error::StoreError;
use crate::queue::Priority;
use crate::schedules::{
    FireOutcome, Firing, ScheduleRecord, Schedules, SCHEDULE_MAX_ATTEMPTS, SCHEDULE_STARTED_BY,
};
use crate::wakeups::Wakeups;
use rusqlite::{params, OptionalExtension, Row, TransactionBehavior};

pub(super) const COLUMNS: &str =
    "worker, spec, data, paused, next_run_at, last_run_at, last_task_id,
    skipped_count, last_skip_at, last_skip_reason, created_at, updated_at";

pub(super) fn from_row(r: &Row<'_>) -> rusqlite::Result<ScheduleRecord> {
    Ok(ScheduleRecord {
        worker: r.get(0)?,
        spec: r.get(1)?,
        data: r.get(2)?,
        paused: r.get(3)?,
        next_run_at: r.get(4)?,
        last_run_at: r.get(5)?,
        last_task_id: r.get(6)?,
        skipped_count: r.get(7)?,
        last_skip_at: r.get(8)?,
        last_skip_reason: r.get(9)?,
        created_at: r.get(10)?,
        updated_at: r.get(11)?,
    })
}

impl Schedules for SqliteStore {
    /// Sets (or replaces) a worker's schedule. A replaced schedule keeps its history
    /// (last run, last task, skips), so a task still running from the old definition
    /// still prevents a pile-up, and keeps its paused state; a paused schedule stores no
    /// `next_run_at` whatever is passed.
    fn set_schedule(
        &self,
        worker: &str,
        spec: &str,
        data: &str,
        next_run_at: Option<i64>,
        now: i64,
    ) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO schedules (worker, spec, data, next_run_at, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5)
                 ON CONFLICT (worker) DO UPDATE SET spec = excluded.spec,
                    data = excluded.data,
                    next_run_at = CASE WHEN paused THEN NULL ELSE excluded.next_run_at END,
                    updated_at = excluded.updated_at",
                params![worker, spec, data, next_run_at, now],
            )
            .context(&format!("set schedule of worker '{worker}'"))?;
        Ok(())
    }

    /// A worker's schedule, if it has one.
    fn get_schedule(&self, worker: &str) -> Result<Option<ScheduleRecord>, StoreError> {
        self.conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM schedules WHERE worker = ?1"),
                [worker],
                from_row,
            )
            .optional()
            .context("read schedule")
    }

    /// Every schedule, by worker identifier.
    fn list_schedules(&self) -> Result<Vec<ScheduleRecord>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!("SELECT {COLUMNS} FROM schedules ORDER BY worker"))
            .context("list schedules")?;
        let rows = stmt.query_map([], from_row).context("list schedules")?;
        rows.collect::<Result<_, _>>().context("list schedules")
    }

    /// Removes a worker's schedule (its tasks are kept). Returns false if it had none.
    fn delete_schedule(&self, worker: &str) -> Result<bool, StoreError> {
        let n = self
            .conn
            .execute("DELETE FROM schedules WHERE worker = ?1", [worker])
            .context("delete schedule")?;
        Ok(n > 0)
    }

    /// Pauses a schedule: it keeps its definition and history but never fires. Returns
    /// false if the worker has no schedule.
    fn pause_schedule(&self, worker: &str, now: i64) -> Result<bool, StoreError> {
        let n = self
            .conn
            .execute(
                "UPDATE schedules SET paused = 1, next_run_at = NULL, updated_at = ?2
                 WHERE worker = ?1",
                params![worker, now],
            )
            .context("pause schedule")?;
        Ok(n > 0)
    }

    /// Resumes a schedule with a `next_run_at` the host computed from now (slots that
    /// passed while paused are not caught up). Returns false if the worker has no
    /// schedule.
    fn resume_schedule(
        &self,
        worker: &str,
        next_run_at: Option<i64>,
        now: i64,
    ) -> Result<bool, StoreError> {
        let n = self
            .conn
            .execute(
                "UPDATE schedules SET paused = 0, next_run_at = ?2, updated_at = ?3
                 WHERE worker = ?1",
                params![worker, next_run_at, now],
            )
            .context("resume schedule")?;
        Ok(n > 0)
    }

    /// Unpaused schedules whose `next_run_at` is at or before `now`, earliest first.
    fn due_schedules(&self, now: i64) -> Result<Vec<ScheduleRecord>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM schedules
                 WHERE paused = 0 AND next_run_at IS NOT NULL AND next_run_at <= ?1
                 ORDER BY next_run_at, worker"
            ))
            .context("read due schedules")?;
        let rows = stmt
            .query_map([now], from_row)
            .context("read due schedules")?;
        rows.collect::<Result<_, _>>().context("read due schedules")
    }

    /// The earliest `next_run_at` of unpaused schedules: when the service must wake
    /// up next for schedules. Inactive workers' schedules count too, because their
    /// slots are recorded as skips.
    fn next_due_at(&self) -> Result<Option<i64>, StoreError> {
        self.conn
            .query_row(
                "SELECT MIN(next_run_at) FROM schedules
                 WHERE paused = 0 AND next_run_at IS NOT NULL",
                [],
                |r| r.get(0),
            )
            .context("read next schedule time")
    }

    /// Fires one due slot: in one `BEGIN IMMEDIATE` transaction, checks that the
    /// schedule still holds `f.slot` (unpaused, same spec, not after `f.now`), then
    /// either inserts a pending task (normal priority, [`SCHEDULE_MAX_ATTEMPTS`]
    /// attempts, started by [`SCHEDULE_STARTED_BY`], the schedule's data) or records a
    /// skip, and moves `next_run_at` to `f.next_run_at`.
    ///
    /// A slot is skipped when the worker is inactive or missing, when the previous task
    /// of this schedule is still pending or running (no pile-up), or when
    /// `scheduled_action` — given the worker's manifest JSON, returning the action to
    /// run or why there is none — returns an error.
    ///
    /// The created task's creation line is stored in the same transaction.
    fn fire_schedule(
        &mut self,
        f: &Firing<'_>,
        scheduled_action: &dyn Fn(&str) -> Result<String, String>,
    ) -> Result<FireOutcome, StoreError> {
        // IMMEDIATE takes the write lock before the row is read, so the check and the
        // advance cannot interleave with another process doing the same.
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .context("begin firing schedule")?;
        let row: Option<(String, Option<i64>, Option<i64>)> = tx
            .query_row(
                "SELECT data, next_run_at, last_task_id FROM schedules
                 WHERE worker = ?1 AND paused = 0 AND spec = ?2",
                params![f.worker, f.spec],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .context("read schedule")?;
        let Some((data, Some(next), last_task_id)) = row else {
            return Ok(FireOutcome::NotDue);
        };
        if next != f.slot || next > f.now {
            return Ok(FireOutcome::NotDue);
        }
        let worker: Option<(bool, String)> = tx
            .query_row(
                "SELECT active, manifest FROM workers WHERE identifier = ?1",
                [f.worker],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .context("read worker of schedule")?;
        let action = match worker {
            None => Err("worker not registered".to_owned()),
            Some((false, _)) => Err("worker inactive".to_owned()),
            Some((true, manifest)) => scheduled_action(&manifest),
        };
        let busy = match (&action, last_task_id) {
            (Ok(_), Some(id)) => tx
                .query_row(
                    "SELECT status FROM tasks WHERE id = ?1 AND status IN ('pending', 'running')",
                    [id],
                    |r| r.get::<_, String>(0),
                )
                .optional()
                .context("read previous scheduled task")?
                .map(|status| format!("previous task {id} is still {status}")),
            _ => None,
        };
        let outcome = match (action, busy) {
            (Err(reason), _) | (Ok(_), Some(reason)) => {
                tx.execute(
                    "UPDATE schedules SET next_run_at = ?2, skipped_count = skipped_count + 1,
                        last_skip_at = ?3, last_skip_reason = ?4, updated_at = ?3
                     WHERE worker = ?1",
                    params![f.worker, f.next_run_at, f.now, reason],
                )
                .context("record skipped schedule run")?;
                FireOutcome::Skipped { reason }
            }
            (Ok(action), None) => {
                let task_id = take_ids(&tx, 1)?;
                // Through the statistics triggers (this connection has them on).
                tx.execute(
                    "INSERT INTO tasks (id, worker, action, status, priority, data, started_by,
                        max_attempts, run_after, created_at, message, limit_rule, limit_key)
                     VALUES (?1, ?2, ?3, 'pending', ?4, ?5, ?6, ?7, ?8, ?8, ?9, ?10, ?11)",
                    params![
                        task_id,
                        f.worker,
                        action,
                        Priority::Normal.rank(),
                        data,
                        SCHEDULE_STARTED_BY,
                        SCHEDULE_MAX_ATTEMPTS,
                        f.now,
                        f.creation.message,
                        f.limit.as_ref().map(|l| &l.rule),
                        f.limit.as_ref().map(|l| &l.key)
                    ],
                )
                .context("create scheduled task")?;
                append_lines(&tx, task_id, std::slice::from_ref(f.creation))?;
                tx.execute(
                    "UPDATE schedules SET next_run_at = ?2, last_run_at = ?3, last_task_id = ?4,
                        updated_at = ?3
                     WHERE worker = ?1",
                    params![f.worker, f.next_run_at, f.now, task_id],
                )
                .context("advance schedule")?;
                FireOutcome::Created { task_id, action }
            }
        };
        tx.commit().context("commit schedule run")?;
        if matches!(outcome, FireOutcome::Created { .. }) {
            self.notify_work();
        }
        Ok(outcome)
    }
}
