//! Statistics: tasks per worker and status, created and finished tasks per 15-minute
//! bucket, and when each worker's tasks last finished. Backends keep them as the tasks
//! change, so reading them costs the same with a million tasks as with ten.

use std::collections::HashMap;

use crate::error::StoreError;
use crate::queue::{Status, StatusCounts};

/// Width of a `task_activity` bucket in milliseconds (15 minutes: local days and hours
/// of every timezone in use are whole numbers of buckets).
pub const BUCKET_MS: i64 = 15 * 60 * 1000;

/// Tasks of one worker per status, with run time of completed and failed ones.
#[derive(Debug, Clone, Default)]
pub struct WorkerCounts {
    /// Worker identifier.
    pub worker: String,
    /// Tasks per status.
    pub counts: StatusCounts,
    /// Summed duration (ms) of the last attempt of completed and failed tasks.
    pub run_ms: i64,
    /// How many tasks `run_ms` sums.
    pub runs: i64,
}

/// Created and finished tasks in one bucket or range.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Activity {
    /// Tasks created.
    pub created: i64,
    /// Tasks that finished completed.
    pub completed: i64,
    /// Tasks that finished failed (no attempts left, or not retried yet).
    pub failed: i64,
    /// Tasks cancelled.
    pub cancelled: i64,
    /// Summed duration (ms) of the last attempt of the completed and failed ones.
    pub run_ms: i64,
    /// How many tasks `run_ms` sums.
    pub runs: i64,
}

impl Activity {
    /// Adds another bucket's numbers.
    pub fn add(&mut self, o: &Activity) {
        self.created += o.created;
        self.completed += o.completed;
        self.failed += o.failed;
        self.cancelled += o.cancelled;
        self.run_ms += o.run_ms;
        self.runs += o.runs;
    }
}

/// When a worker's tasks last finished (ms; kept after the tasks are cleaned).
#[derive(Debug, Clone, Copy, Default)]
pub struct WorkerLastRun {
    /// Latest finish of a task (completed, failed or cancelled).
    pub last_finished_at: Option<i64>,
}

/// Tasks that finished in one minute (the dashboard's throughput chart).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MinuteCounts {
    /// Start of the minute (ms since the epoch, a multiple of 60,000).
    pub minute: i64,
    /// Tasks whose last attempt completed in that minute.
    pub completed: i64,
    /// Tasks that failed in that minute (no attempts left, or not retried yet).
    pub failed: i64,
}

/// The start of the bucket holding `ms`.
pub fn bucket_floor(ms: i64) -> i64 {
    ms.div_euclid(BUCKET_MS) * BUCKET_MS
}

/// Statistics of a store, kept up to date as tasks change.
pub trait Statistics {
    /// Tasks per status, from the trigger-maintained counts (constant cost).
    fn task_status_counts(&self) -> Result<StatusCounts, StoreError>;

    /// Tasks of `worker` (or of every worker) with `status` (or any), from the counts.
    fn count_tasks_by(
        &self,
        worker: Option<&str>,
        status: Option<Status>,
    ) -> Result<i64, StoreError>;

    /// Per worker (including workers no longer registered that still have tasks):
    /// tasks per status and run time, by worker identifier.
    fn worker_counts(&self) -> Result<Vec<WorkerCounts>, StoreError>;

    /// Activity summed over `[since, until)` (ms; rounded to buckets) per bucket, in
    /// bucket order. Buckets without activity are left out.
    fn activity_by_bucket(
        &self,
        since: i64,
        until: i64,
    ) -> Result<Vec<(i64, Activity)>, StoreError>;

    /// Activity summed over `[since, until)` per worker.
    fn activity_by_worker(
        &self,
        since: i64,
        until: i64,
    ) -> Result<HashMap<String, Activity>, StoreError>;

    /// When each worker's tasks last finished.
    fn worker_last_runs(&self) -> Result<HashMap<String, WorkerLastRun>, StoreError>;

    /// Number of active workers.
    fn count_active_workers(&self) -> Result<i64, StoreError>;

    /// Stored tasks that are completed or failed, per minute of their finish time, for
    /// the minutes starting in `[since, until)` (ms; callers pass whole minutes), in
    /// minute order; minutes without any are left out. Tasks already cleaned up are not
    /// counted. Both backends read per-minute counts kept like the other statistics (a
    /// few rows, however many tasks finished).
    fn finished_per_minute(&self, since: i64, until: i64) -> Result<Vec<MinuteCounts>, StoreError>;
}
