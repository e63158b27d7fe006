//! Worker schedules: at most one per worker, and the atomic "fire a due slot" step.
//!
//! The store knows nothing about schedule kinds or time zones: the host computes every
//! `next_run_at` and passes it in. What the store guarantees is that a slot fires at
//! most once: [`Schedules::fire_schedule`] re-reads the row, creates the task with its
//! creation line (or records a skip) and advances `next_run_at` in one transaction, so
//! two services, or a service restarted mid-tick, cannot both fire the same slot.

use crate::error::StoreError;
use crate::log_line::LogLine;

/// `started_by` of tasks created by schedules.
pub const SCHEDULE_STARTED_BY: &str = "schedule";

/// Attempts allowed to a task created by a schedule.
pub const SCHEDULE_MAX_ATTEMPTS: u32 = 3;

/// A stored schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleRecord {
    /// The worker it belongs to (one schedule per worker).
    pub worker: String,
    /// The schedule's definition, JSON text owned by the host (e.g.
    /// `{"kind":"daily","at":"08:30"}`).
    pub spec: String,
    /// Input data of the tasks it creates, a JSON object as text.
    pub data: String,
    /// Paused schedules never fire and have no `next_run_at`.
    pub paused: bool,
    /// When it fires next (ms since epoch); `None` when paused or nothing is left to
    /// run (a one-off that already ran).
    pub next_run_at: Option<i64>,
    /// When it last created a task (ms).
    pub last_run_at: Option<i64>,
    /// The task it last created.
    pub last_task_id: Option<i64>,
    /// How many slots passed without a task (previous task still busy, worker inactive…).
    pub skipped_count: i64,
    /// When the last skip happened (ms).
    pub last_skip_at: Option<i64>,
    /// Why the last skip happened.
    pub last_skip_reason: Option<String>,
    /// When first set (ms).
    pub created_at: i64,
    /// When last changed by an operator or by firing (ms).
    pub updated_at: i64,
}

/// One due slot to fire, as read from [`Schedules::due_schedules`].
#[derive(Debug, Clone)]
pub struct Firing<'a> {
    /// The worker whose schedule fires.
    pub worker: &'a str,
    /// The slot being fired: the `next_run_at` that was read. Nothing happens unless
    /// the row still holds it, which is what stops a second process (or a restarted
    /// one) from firing the same slot again.
    pub slot: i64,
    /// The spec text that was read with the slot: a schedule replaced meanwhile is not
    /// fired with a `next_run_at` computed from its old definition.
    pub spec: &'a str,
    /// The current time (ms); the slot must not be after it.
    pub now: i64,
    /// The slot after this one, computed by the host from `now` (not from `slot`), so
    /// runs missed during downtime collapse into this one. `None`: no further run.
    pub next_run_at: Option<i64>,
    /// The first log line of the task, if one is created.
    pub creation: &'a LogLine,
    /// The limit rule and key the created task falls under (the host renders it from
    /// the worker's limits and the schedule's data); `None`: unlimited.
    pub limit: Option<crate::TaskLimit>,
}

/// What [`Schedules::fire_schedule`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FireOutcome {
    /// A pending task was created.
    Created {
        /// Its id.
        task_id: i64,
        /// The action it runs.
        action: String,
    },
    /// The slot passed without a task; the skip was recorded on the schedule.
    Skipped {
        /// Why.
        reason: String,
    },
    /// Nothing changed: the schedule is gone, paused, replaced, not due yet, or this
    /// slot was already fired.
    NotDue,
}

/// The schedules of a store.
pub trait Schedules {
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
    ) -> Result<(), StoreError>;

    /// A worker's schedule, if it has one.
    fn get_schedule(&self, worker: &str) -> Result<Option<ScheduleRecord>, StoreError>;

    /// Every schedule, by worker identifier.
    fn list_schedules(&self) -> Result<Vec<ScheduleRecord>, StoreError>;

    /// Removes a worker's schedule (its tasks are kept). Returns false if it had none.
    fn delete_schedule(&self, worker: &str) -> Result<bool, StoreError>;

    /// Pauses a schedule: it keeps its definition and history but never fires. Returns
    /// false if the worker has no schedule.
    fn pause_schedule(&self, worker: &str, now: i64) -> Result<bool, StoreError>;

    /// Resumes a schedule with a `next_run_at` the host computed from now (slots that
    /// passed while paused are not caught up). Returns false if the worker has no
    /// schedule.
    fn resume_schedule(
        &self,
        worker: &str,
        next_run_at: Option<i64>,
        now: i64,
    ) -> Result<bool, StoreError>;

    /// Unpaused schedules whose `next_run_at` is at or before `now`, earliest first.
    fn due_schedules(&self, now: i64) -> Result<Vec<ScheduleRecord>, StoreError>;

    /// The earliest `next_run_at` of unpaused schedules: when the service must wake
    /// up next for schedules. Inactive workers' schedules count too, because their
    /// slots are recorded as skips.
    fn next_due_at(&self) -> Result<Option<i64>, StoreError>;

    /// Fires one due slot: in one transaction, checks that the
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
    /// A created task gets `f.creation` as its first log line in the same
    /// transaction, and the services are woken.
    fn fire_schedule(
        &mut self,
        f: &Firing<'_>,
        scheduled_action: &dyn Fn(&str) -> Result<String, String>,
    ) -> Result<FireOutcome, StoreError>;
}
