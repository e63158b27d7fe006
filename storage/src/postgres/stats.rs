//! Statistics on PostgreSQL, read from the tables the statement-level triggers of
//! [`super::migrations`] keep: `task_counts` (tasks per worker and status),
//! `task_activity` (per 15-minute bucket and worker: created and finished tasks, run
//! time) and `worker_activity` (last finish per worker). Each of them is split in up
//! to 16 shards (one per writing connection, so hosts never wait for each other's
//! counters) that every query sums. Each query reads a few rows per worker or per
//! bucket; the tasks table only for its running rows, which are few.
//!
//! What differs from SQLite:
//! * Running tasks are counted in the 'pending' row of `task_counts`, as in SQLite, and
//!   split out with a count of the running rows. Here the counts and the running rows
//!   are read by one statement, so they come from one snapshot even while other hosts
//!   claim and finish tasks (SQLite reads them with two statements).
//! * `SUM` of a `BIGINT` is a `NUMERIC` in PostgreSQL: sums are cast back to `BIGINT`.
//! * Workers are ordered with `COLLATE "C"` (byte order, as SQLite's `BINARY`).

use std::collections::HashMap;

use postgres::Row;

use super::{Context, PgStore};
use crate::error::StoreError;
use crate::queue::{Status, StatusCounts};
use crate::statistics::{
    bucket_floor, Activity, MinuteCounts, Statistics, WorkerCounts, WorkerLastRun,
};

fn set_count(c: &mut StatusCounts, status: &str, n: i64) {
    match Status::parse(status) {
        Some(Status::Pending) => c.pending += n,
        Some(Status::Running) => c.running += n,
        Some(Status::Completed) => c.completed += n,
        Some(Status::Failed) => c.failed += n,
        Some(Status::Cancelled) => c.cancelled += n,
        None => {}
    }
}

fn activity_from(r: &Row, first: usize) -> Activity {
    Activity {
        created: r.get(first),
        completed: r.get(first + 1),
        failed: r.get(first + 2),
        cancelled: r.get(first + 3),
        run_ms: r.get(first + 4),
        runs: r.get(first + 5),
    }
}

const ACTIVITY_SUMS: &str = "COALESCE(SUM(created), 0)::BIGINT,
    COALESCE(SUM(completed), 0)::BIGINT, COALESCE(SUM(failed), 0)::BIGINT,
    COALESCE(SUM(cancelled), 0)::BIGINT, COALESCE(SUM(run_ms), 0)::BIGINT,
    COALESCE(SUM(runs), 0)::BIGINT";

impl Statistics for PgStore {
    /// Tasks per status, from the trigger-maintained counts (constant cost).
    fn task_status_counts(&self) -> Result<StatusCounts, StoreError> {
        // The counts keep running tasks in the pending row (see the module docs); the
        // running rows are counted live, in the same statement.
        let rows = self
            .client()?
            .query(
                "SELECT status, COALESCE(SUM(n), 0)::BIGINT FROM task_counts GROUP BY status
                 UNION ALL
                 SELECT 'running', COUNT(*) FROM tasks WHERE status = 'running'",
                &[],
            )
            .context("count tasks")?;
        let mut c = StatusCounts::default();
        for r in &rows {
            set_count(&mut c, r.get(0), r.get(1));
        }
        c.pending -= c.running;
        Ok(c)
    }

    /// Tasks of `worker` (or of every worker) with `status` (or any), from the counts.
    fn count_tasks_by(
        &self,
        worker: Option<&str>,
        status: Option<Status>,
    ) -> Result<i64, StoreError> {
        let mut client = self.client()?;
        if matches!(status, Some(Status::Running | Status::Pending)) {
            // The pending row holds pending and running tasks (see the module docs).
            let row = client
                .query_one(
                    "SELECT
                        (SELECT COALESCE(SUM(n), 0)::BIGINT FROM task_counts
                         WHERE ($1::TEXT IS NULL OR worker = $1) AND status = 'pending'),
                        (SELECT COUNT(*) FROM tasks
                         WHERE status = 'running' AND ($1::TEXT IS NULL OR worker = $1))",
                    &[&worker],
                )
                .context("count tasks")?;
            let (both, running): (i64, i64) = (row.get(0), row.get(1));
            return Ok(if status == Some(Status::Running) {
                running
            } else {
                both - running
            });
        }
        Ok(client
            .query_one(
                "SELECT COALESCE(SUM(n), 0)::BIGINT FROM task_counts
                 WHERE ($1::TEXT IS NULL OR worker = $1) AND ($2::TEXT IS NULL OR status = $2)",
                &[&worker, &status.map(Status::as_str)],
            )
            .context("count tasks")?
            .get(0))
    }

    /// Per worker (including workers no longer registered that still have tasks):
    /// tasks per status and run time, by worker identifier.
    fn worker_counts(&self) -> Result<Vec<WorkerCounts>, StoreError> {
        let rows = self
            .client()?
            .query(
                "SELECT c.worker, c.status, c.n, c.run_ms, c.runs,
                    CASE WHEN c.status = 'pending' THEN COALESCE(r.n, 0) ELSE 0 END
                 FROM (SELECT worker, status, SUM(n)::BIGINT AS n, SUM(run_ms)::BIGINT AS run_ms,
                              SUM(runs)::BIGINT AS runs
                       FROM task_counts GROUP BY worker, status) c
                 LEFT JOIN (SELECT worker, COUNT(*) AS n FROM tasks WHERE status = 'running'
                            GROUP BY worker) r ON r.worker = c.worker
                 WHERE c.n <> 0
                 ORDER BY c.worker COLLATE \"C\", c.status COLLATE \"C\"",
                &[],
            )
            .context("count tasks per worker")?;
        let mut out: Vec<WorkerCounts> = Vec::new();
        for r in &rows {
            let worker: &str = r.get(0);
            let status: &str = r.get(1);
            if out.last().is_none_or(|w| w.worker != worker) {
                out.push(WorkerCounts {
                    worker: worker.to_owned(),
                    ..Default::default()
                });
            }
            let w = out.last_mut().expect("pushed above");
            set_count(&mut w.counts, status, r.get(2));
            // The pending row holds pending and running tasks (see the module docs).
            let running: i64 = r.get(5);
            w.counts.running += running;
            w.counts.pending -= running;
            w.run_ms += r.get::<_, i64>(3);
            w.runs += r.get::<_, i64>(4);
        }
        Ok(out)
    }

    /// Activity summed over `[since, until)` (ms; rounded to buckets) per bucket, in
    /// bucket order. Buckets without activity are left out.
    fn activity_by_bucket(
        &self,
        since: i64,
        until: i64,
    ) -> Result<Vec<(i64, Activity)>, StoreError> {
        let rows = self
            .client()?
            .query(
                &format!(
                    "SELECT bucket, {ACTIVITY_SUMS} FROM task_activity
                     WHERE bucket >= $1 AND bucket < $2 GROUP BY bucket ORDER BY bucket"
                ),
                &[&bucket_floor(since), &until],
            )
            .context("read activity")?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), activity_from(r, 1)))
            .collect())
    }

    /// Activity summed over `[since, until)` per worker.
    fn activity_by_worker(
        &self,
        since: i64,
        until: i64,
    ) -> Result<HashMap<String, Activity>, StoreError> {
        let rows = self
            .client()?
            .query(
                &format!(
                    "SELECT worker, {ACTIVITY_SUMS} FROM task_activity
                     WHERE bucket >= $1 AND bucket < $2 GROUP BY worker"
                ),
                &[&bucket_floor(since), &until],
            )
            .context("read activity per worker")?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), activity_from(r, 1)))
            .collect())
    }

    /// When each worker's tasks last finished.
    fn worker_last_runs(&self) -> Result<HashMap<String, WorkerLastRun>, StoreError> {
        let rows = self
            .client()?
            .query(
                "SELECT worker, MAX(last_finished_at) FROM worker_activity GROUP BY worker",
                &[],
            )
            .context("read worker activity")?;
        Ok(rows
            .iter()
            .map(|r| {
                // The triggers keep a maximum with 0 standing for "never".
                let finished: Option<i64> = r.get(1);
                (
                    r.get(0),
                    WorkerLastRun {
                        last_finished_at: finished.filter(|t| *t > 0),
                    },
                )
            })
            .collect())
    }

    /// Number of active workers.
    fn count_active_workers(&self) -> Result<i64, StoreError> {
        Ok(self
            .client()?
            .query_one("SELECT COUNT(*) FROM workers WHERE active", &[])
            .context("count active workers")?
            .get(0))
    }

    fn finished_per_minute(&self, since: i64, until: i64) -> Result<Vec<MinuteCounts>, StoreError> {
        // The per-minute counts the triggers keep, summed over their shards.
        let rows = self
            .client()?
            .query(
                "SELECT minute, SUM(completed)::BIGINT, SUM(failed)::BIGINT FROM task_minutes
                 WHERE minute >= $1 AND minute < $2
                 GROUP BY minute HAVING SUM(completed) <> 0 OR SUM(failed) <> 0
                 ORDER BY minute",
                // Minutes whose start lies in [since, until), as on SQLite.
                &[
                    &((since.div_euclid(60_000) + i64::from(since.rem_euclid(60_000) != 0))
                        * 60_000),
                    &until,
                ],
            )
            .context("count finished tasks per minute")?;
        Ok(rows
            .iter()
            .map(|r| MinuteCounts {
                minute: r.get::<_, i64>(0),
                completed: r.get(1),
                failed: r.get(2),
            })
            .collect())
    }
}
