//! Worker schedules on PostgreSQL: at most one per worker, and the atomic "fire a due
//! slot" step.
//!
//! The store knows nothing about schedule kinds or time zones: the host computes every
//! `next_run_at` and passes it in. What lives here is the guarantee that a slot fires at
//! most once, with any number of hosts:
//!
//! * [`Schedules::fire_schedule`] reads the schedule with `SELECT … FOR UPDATE` inside
//!   its transaction (SQLite takes the database's write lock with `BEGIN IMMEDIATE`
//!   instead). A second host firing the same slot waits on the row lock; once the first
//!   commits, PostgreSQL re-reads the locked row at its newest version (read committed),
//!   so the second host sees `next_run_at` already moved past the slot and does nothing.
//!   The compare (still the same slot, spec, unpaused), the created task with its
//!   creation line ([`insert_in`], which also queues the wake-up `NOTIFY`) and the
//!   advance of `next_run_at` commit together or not at all.
//! * Lists order workers with `COLLATE "C"` (byte order, as SQLite's `BINARY`).

use postgres::Row;

use super::queue::insert_in;
use super::{Context, PgStore};
use crate::error::StoreError;
use crate::queue::{NewTask, Priority};
use crate::schedules::{
    FireOutcome, Firing, ScheduleRecord, Schedules, SCHEDULE_MAX_ATTEMPTS, SCHEDULE_STARTED_BY,
};

pub(super) const COLUMNS: &str =
    "worker, spec, data, paused, next_run_at, last_run_at, last_task_id,
    skipped_count, last_skip_at, last_skip_reason, created_at, updated_at";

pub(super) fn from_row(r: &Row) -> ScheduleRecord {
    ScheduleRecord {
        worker: r.get(0),
        spec: r.get(1),
        data: r.get(2),
        paused: r.get(3),
        next_run_at: r.get(4),
        last_run_at: r.get(5),
        last_task_id: r.get(6),
        skipped_count: r.get(7),
        last_skip_at: r.get(8),
        last_skip_reason: r.get(9),
        created_at: r.get(10),
        updated_at: r.get(11),
    }
}

impl Schedules for PgStore {
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
        self.client()?
            .execute(
                "INSERT INTO schedules (worker, spec, data, next_run_at, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $5)
                 ON CONFLICT (worker) DO UPDATE SET spec = excluded.spec,
                    data = excluded.data,
                    next_run_at = CASE WHEN schedules.paused THEN NULL
                                       ELSE excluded.next_run_at END,
                    updated_at = excluded.updated_at",
                &[&worker, &spec, &data, &next_run_at, &now],
            )
            .context(&format!("set schedule of worker '{worker}'"))?;
        Ok(())
    }

    /// A worker's schedule, if it has one.
    fn get_schedule(&self, worker: &str) -> Result<Option<ScheduleRecord>, StoreError> {
        let row = self
            .client()?
            .query_opt(
                &format!("SELECT {COLUMNS} FROM schedules WHERE worker = $1"),
                &[&worker],
            )
            .context("read schedule")?;
        Ok(row.as_ref().map(from_row))
    }

    /// Every schedule, by worker identifier.
    fn list_schedules(&self) -> Result<Vec<ScheduleRecord>, StoreError> {
        let rows = self
            .client()?
            .query(
                &format!("SELECT {COLUMNS} FROM schedules ORDER BY worker COLLATE \"C\""),
                &[],
            )
            .context("list schedules")?;
        Ok(rows.iter().map(from_row).collect())
    }

    /// Removes a worker's schedule (its tasks are kept). Returns false if it had none.
    fn delete_schedule(&self, worker: &str) -> Result<bool, StoreError> {
        let n = self
            .client()?
            .execute("DELETE FROM schedules WHERE worker = $1", &[&worker])
            .context("delete schedule")?;
        Ok(n > 0)
    }

    /// Pauses a schedule: it keeps its definition and history but never fires. Returns
    /// false if the worker has no schedule.
    fn pause_schedule(&self, worker: &str, now: i64) -> Result<bool, StoreError> {
        let n = self
            .client()?
            .execute(
                "UPDATE schedules SET paused = TRUE, next_run_at = NULL, updated_at = $2
                 WHERE worker = $1",
                &[&worker, &now],
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
            .client()?
            .execute(
                "UPDATE schedules SET paused = FALSE, next_run_at = $2, updated_at = $3
                 WHERE worker = $1",
                &[&worker, &next_run_at, &now],
            )
            .context("resume schedule")?;
        Ok(n > 0)
    }

    /// Unpaused schedules whose `next_run_at` is at or before `now`, earliest first.
    fn due_schedules(&self, now: i64) -> Result<Vec<ScheduleRecord>, StoreError> {
        let rows = self
            .client()?
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM schedules
                     WHERE NOT paused AND next_run_at IS NOT NULL AND next_run_at <= $1
                     ORDER BY next_run_at, worker COLLATE \"C\""
                ),
                &[&now],
            )
            .context("read due schedules")?;
        Ok(rows.iter().map(from_row).collect())
    }

    /// The earliest `next_run_at` of unpaused schedules: when the service must wake
    /// up next for schedules. Inactive workers' schedules count too, because their
    /// slots are recorded as skips.
    fn next_due_at(&self) -> Result<Option<i64>, StoreError> {
        Ok(self
            .client()?
            .query_one(
                "SELECT MIN(next_run_at) FROM schedules
                 WHERE NOT paused AND next_run_at IS NOT NULL",
                &[],
            )
            .context("read next schedule time")?
            .get(0))
    }

    /// Fires one due slot: in one transaction holding the schedule's row lock, checks
    /// that the schedule still holds `f.slot` (unpaused, same spec, not after `f.now`),
    /// then either inserts a pending task (normal priority, [`SCHEDULE_MAX_ATTEMPTS`]
    /// attempts, started by [`SCHEDULE_STARTED_BY`], the schedule's data) or records a
    /// skip, and moves `next_run_at` to `f.next_run_at`.
    ///
    /// A slot is skipped when the worker is inactive or missing, when the previous task
    /// of this schedule is still pending or running (no pile-up), or when
    /// `scheduled_action` — given the worker's manifest JSON, returning the action to
    /// run or why there is none — returns an error.
    ///
    /// The created task's creation line and the wake-up are in the same transaction.
    fn fire_schedule(
        &mut self,
        f: &Firing<'_>,
        scheduled_action: &dyn Fn(&str) -> Result<String, String>,
    ) -> Result<FireOutcome, StoreError> {
        let mut client = self.client()?;
        let mut tx = client.transaction().context("begin firing schedule")?;
        // The row lock serializes firings of this schedule across hosts; a host that
        // waited reads the row as the winner left it (see the module docs).
        let row = tx
            .query_opt(
                "SELECT data, next_run_at, last_task_id FROM schedules
                 WHERE worker = $1 AND NOT paused AND spec = $2
                 FOR UPDATE",
                &[&f.worker, &f.spec],
            )
            .context("read schedule")?;
        let Some(row) = row else {
            return Ok(FireOutcome::NotDue);
        };
        let data: String = row.get(0);
        let next: Option<i64> = row.get(1);
        let last_task_id: Option<i64> = row.get(2);
        let Some(next) = next else {
            return Ok(FireOutcome::NotDue);
        };
        if next != f.slot || next > f.now {
            return Ok(FireOutcome::NotDue);
        }
        let worker = tx
            .query_opt(
                "SELECT active, manifest FROM workers WHERE identifier = $1",
                &[&f.worker],
            )
            .context("read worker of schedule")?;
        let action = match worker {
            None => Err("worker not registered".to_owned()),
            Some(w) if !w.get::<_, bool>(0) => Err("worker inactive".to_owned()),
            Some(w) => scheduled_action(w.get::<_, &str>(1)),
        };
        let busy = match (&action, last_task_id) {
            (Ok(_), Some(id)) => tx
                .query_opt(
                    "SELECT status FROM tasks WHERE id = $1 AND status IN ('pending', 'running')",
                    &[&id],
                )
                .context("read previous scheduled task")?
                .map(|r| format!("previous task {id} is still {}", r.get::<_, &str>(0))),
            _ => None,
        };
        let outcome = match (action, busy) {
            (Err(reason), _) | (Ok(_), Some(reason)) => {
                tx.execute(
                    "UPDATE schedules SET next_run_at = $2, skipped_count = skipped_count + 1,
                        last_skip_at = $3, last_skip_reason = $4, updated_at = $3
                     WHERE worker = $1",
                    &[&f.worker, &f.next_run_at, &f.now, &reason],
                )
                .context("record skipped schedule run")?;
                FireOutcome::Skipped { reason }
            }
            (Ok(action), None) => {
                let task = NewTask {
                    limit: f.limit.clone(),
                    parent: None,
                    worker: f.worker.to_owned(),
                    action,
                    data,
                    priority: Priority::Normal,
                    max_attempts: SCHEDULE_MAX_ATTEMPTS,
                    started_by: Some(SCHEDULE_STARTED_BY.to_owned()),
                    run_after: f.now,
                    created_at: f.now,
                };
                // The task, its creation line and the wake-up, in this transaction.
                let task_id = insert_in(&mut tx, &task, 1, f.creation)?
                    .first()
                    .copied()
                    .ok_or_else(|| {
                        StoreError::new(
                            crate::error::ErrorKind::Other,
                            "create scheduled task",
                            "no task id was returned",
                        )
                    })?;
                tx.execute(
                    "UPDATE schedules SET next_run_at = $2, last_run_at = $3, last_task_id = $4,
                        updated_at = $3
                     WHERE worker = $1",
                    &[&f.worker, &f.next_run_at, &f.now, &task_id],
                )
                .context("advance schedule")?;
                FireOutcome::Created {
                    task_id,
                    action: task.action,
                }
            }
        };
        tx.commit().context("commit schedule run")?;
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Barrier;

    use super::super::conformance_tests::PgHarness;
    use crate::conformance::{register, Harness};
    use crate::{FireOutcome, Firing, LogLine, Store};

    /// Several hosts fire the same slots at the same moment: each slot has exactly one
    /// outcome (a task or a skip), the others find it fired.
    #[test]
    fn hosts_racing_for_the_same_slot_fire_it_once() {
        const HOSTS: usize = 4;
        const SLOTS: i64 = 15;
        let h = PgHarness::new();
        let mut setup = h.open();
        register(&mut *setup, &["w"], true);
        setup.set_schedule("w", "S", "{}", Some(100), 1).unwrap();
        let creation = LogLine::new("pending", 0, 0, 0, "", "Task created by schedule");
        let barrier = Barrier::new(HOSTS);
        let mut hosts: Vec<Box<dyn Store>> = (0..HOSTS).map(|_| h.open()).collect();
        let outcomes: Vec<Vec<FireOutcome>> = std::thread::scope(|scope| {
            let runs: Vec<_> = hosts
                .iter_mut()
                .map(|store| {
                    let (barrier, creation) = (&barrier, &creation);
                    scope.spawn(move || {
                        (1..=SLOTS)
                            .map(|i| {
                                let slot = i * 100;
                                barrier.wait();
                                store
                                    .fire_schedule(
                                        &Firing {
                                            worker: "w",
                                            slot,
                                            spec: "S",
                                            now: slot,
                                            next_run_at: Some(slot + 100),
                                            creation,
                                            limit: None,
                                        },
                                        &|_| Ok("run".into()),
                                    )
                                    .unwrap()
                            })
                            .collect()
                    })
                })
                .collect();
            runs.into_iter().map(|r| r.join().unwrap()).collect()
        });
        for slot in 0..SLOTS as usize {
            let fired = outcomes
                .iter()
                .filter(|o| o[slot] != FireOutcome::NotDue)
                .count();
            assert_eq!(fired, 1, "slot {slot}: {outcomes:?}");
        }
        let created = outcomes
            .iter()
            .flatten()
            .filter(|o| matches!(o, FireOutcome::Created { .. }))
            .count();
        let s = setup.get_schedule("w").unwrap().unwrap();
        assert_eq!(s.next_run_at, Some((SLOTS + 1) * 100));
        assert_eq!(created as i64 + s.skipped_count, SLOTS);
        assert_eq!(
            setup
                .list_tasks(&crate::TaskFilter::default())
                .unwrap()
                .len(),
            created
        );
    }
}
