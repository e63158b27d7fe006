//! Statistics read from the tables that triggers keep up to date (migration 4):
//! `task_counts` (tasks per worker and status), `task_activity` (per 15-minute bucket
//! and worker: created and finished tasks, run time) and `worker_activity` (last start
//! and finish per worker). Each query reads a few rows per worker or per bucket, never
//! the tasks table, so its cost does not grow with the number of tasks.

use std::collections::HashMap;

use rusqlite::params;

use super::{Context, SqliteStore};
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

fn activity_from(r: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<Activity> {
    Ok(Activity {
        created: r.get(first)?,
        completed: r.get(first + 1)?,
        failed: r.get(first + 2)?,
        cancelled: r.get(first + 3)?,
        run_ms: r.get(first + 4)?,
        runs: r.get(first + 5)?,
    })
}

const ACTIVITY_SUMS: &str = "COALESCE(SUM(created), 0), COALESCE(SUM(completed), 0),
    COALESCE(SUM(failed), 0), COALESCE(SUM(cancelled), 0), COALESCE(SUM(run_ms), 0),
    COALESCE(SUM(runs), 0)";

impl Statistics for SqliteStore {
    /// Tasks per status, from the trigger-maintained counts (constant cost).
    fn task_status_counts(&self) -> Result<StatusCounts, StoreError> {
        // Both reads in one snapshot (see `snapshot`).
        let snapshot = self.snapshot()?;
        let mut c = StatusCounts::default();
        let mut stmt = self
            .conn
            .prepare_cached("SELECT status, SUM(n) FROM task_counts GROUP BY status")
            .context("count tasks")?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
            .context("count tasks")?;
        for row in rows {
            let (s, n) = row.context("count tasks")?;
            set_count(&mut c, &s, n);
        }
        // The counts keep running tasks in the pending row (see migration 4).
        c.running = self.running_by_worker()?.values().sum();
        c.pending -= c.running;
        drop(snapshot);
        Ok(c)
    }

    /// Tasks of `worker` (or of every worker) with `status` (or any), from the counts.
    fn count_tasks_by(
        &self,
        worker: Option<&str>,
        status: Option<Status>,
    ) -> Result<i64, StoreError> {
        if matches!(status, Some(Status::Running | Status::Pending)) {
            let _snapshot = self.snapshot()?;
            let running: i64 = self
                .running_by_worker()?
                .iter()
                .filter(|(w, _)| worker.is_none_or(|x| x == w.as_str()))
                .map(|(_, n)| n)
                .sum();
            if status == Some(Status::Running) {
                return Ok(running);
            }
            // The pending row holds pending and running tasks (see migration 4).
            return Ok(self.count_tasks_by_row(worker, Some(Status::Pending))? - running);
        }
        self.count_tasks_by_row(worker, status)
    }

    /// Per worker (including workers no longer registered that still have tasks):
    /// tasks per status and run time, by worker identifier.
    fn worker_counts(&self) -> Result<Vec<WorkerCounts>, StoreError> {
        let _snapshot = self.snapshot()?;
        let running = self.running_by_worker()?;
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT worker, status, n, run_ms, runs FROM task_counts
                 WHERE n <> 0 ORDER BY worker",
            )
            .context("count tasks per worker")?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, i64>(4)?,
                ))
            })
            .context("count tasks per worker")?;
        let mut out: Vec<WorkerCounts> = Vec::new();
        for row in rows {
            let (worker, status, n, run_ms, runs) = row.context("count tasks per worker")?;
            if out.last().is_none_or(|w| w.worker != worker) {
                out.push(WorkerCounts {
                    worker,
                    ..Default::default()
                });
            }
            let w = out.last_mut().expect("pushed above");
            set_count(&mut w.counts, &status, n);
            if status == "pending" {
                // The pending row holds pending and running tasks (see migration 4).
                let running = running.get(&w.worker).copied().unwrap_or(0);
                w.counts.running += running;
                w.counts.pending -= running;
            }
            w.run_ms += run_ms;
            w.runs += runs;
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
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT bucket, {ACTIVITY_SUMS} FROM task_activity
                 WHERE bucket >= ?1 AND bucket < ?2 GROUP BY bucket ORDER BY bucket"
            ))
            .context("read activity")?;
        let rows = stmt
            .query_map(params![bucket_floor(since), until], |r| {
                Ok((r.get(0)?, activity_from(r, 1)?))
            })
            .context("read activity")?;
        rows.collect::<Result<_, _>>().context("read activity")
    }

    /// Activity summed over `[since, until)` per worker.
    fn activity_by_worker(
        &self,
        since: i64,
        until: i64,
    ) -> Result<HashMap<String, Activity>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT worker, {ACTIVITY_SUMS} FROM task_activity
                 WHERE bucket >= ?1 AND bucket < ?2 GROUP BY worker"
            ))
            .context("read activity per worker")?;
        let rows = stmt
            .query_map(params![bucket_floor(since), until], |r| {
                Ok((r.get(0)?, activity_from(r, 1)?))
            })
            .context("read activity per worker")?;
        rows.collect::<Result<_, _>>()
            .context("read activity per worker")
    }

    /// When each worker's tasks last finished.
    fn worker_last_runs(&self) -> Result<HashMap<String, WorkerLastRun>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT worker, last_finished_at FROM worker_activity")
            .context("read worker activity")?;
        let rows = stmt
            .query_map([], |r| {
                // The triggers keep a maximum with 0 standing for "never".
                let finished: Option<i64> = r.get(1)?;
                Ok((
                    r.get(0)?,
                    WorkerLastRun {
                        last_finished_at: finished.filter(|t| *t > 0),
                    },
                ))
            })
            .context("read worker activity")?;
        rows.collect::<Result<_, _>>()
            .context("read worker activity")
    }

    /// Number of active workers.
    fn count_active_workers(&self) -> Result<i64, StoreError> {
        self.conn
            .query_row("SELECT COUNT(*) FROM workers WHERE active = 1", [], |r| {
                r.get(0)
            })
            .context("count active workers")
    }

    fn finished_per_minute(&self, since: i64, until: i64) -> Result<Vec<MinuteCounts>, StoreError> {
        // From the per-minute counts the triggers and the finish batches keep: a few
        // rows per call however many tasks finished in the range.
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT minute, completed, failed FROM task_minutes
                 WHERE minute >= ?1 AND minute < ?2 AND (completed <> 0 OR failed <> 0)
                 ORDER BY minute",
            )
            .context("count finished tasks per minute")?;
        // Minutes whose start lies in [since, until).
        let first = since.div_euclid(60_000) + (since.rem_euclid(60_000) != 0) as i64;
        let end = until.div_euclid(60_000) + (until.rem_euclid(60_000) != 0) as i64;
        let rows = stmt
            .query_map(params![first, end], |r| {
                Ok(MinuteCounts {
                    minute: r.get::<_, i64>(0)? * 60_000,
                    completed: r.get(1)?,
                    failed: r.get(2)?,
                })
            })
            .context("count finished tasks per minute")?;
        rows.collect::<Result<_, _>>()
            .context("count finished tasks per minute")
    }
}

impl SqliteStore {
    /// Running tasks per worker, counted live: they are few (at most the engines'
    /// claims), found through the status index, and not kept by the triggers so that a
    /// claim costs no counter update.
    /// A read transaction: the statements run while it lives see one snapshot of the
    /// database. The counts keep running tasks in the pending row and are split with a
    /// count of the running rows; read in two snapshots, a task claimed or requeued in
    /// between is counted twice or not at all (a pending task shown as running). Ends
    /// (rolls back: it only read) when dropped.
    fn snapshot(&self) -> Result<rusqlite::Transaction<'_>, StoreError> {
        self.conn
            .unchecked_transaction()
            .context("begin a consistent read")
    }

    fn running_by_worker(&self) -> Result<std::collections::HashMap<String, i64>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT worker, COUNT(*) FROM tasks WHERE status = 'running' GROUP BY worker",
            )
            .context("count running tasks")?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
            .context("count running tasks")?;
        rows.collect::<Result<_, _>>()
            .context("count running tasks")
    }

    fn count_tasks_by_row(
        &self,
        worker: Option<&str>,
        status: Option<Status>,
    ) -> Result<i64, StoreError> {
        self.conn
            .prepare_cached(
                "SELECT COALESCE(SUM(n), 0) FROM task_counts
                 WHERE (?1 IS NULL OR worker = ?1) AND (?2 IS NULL OR status = ?2)",
            )
            .context("count tasks")?
            .query_row(params![worker, status.map(Status::as_str)], |r| r.get(0))
            .context("count tasks")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log_line::LogLine;
    use crate::queue::{Claim, ClaimedTask, NewTask, Priority, TaskQueue};
    use crate::{Store, BUCKET_MS};

    fn store() -> (tempfile::TempDir, SqliteStore) {
        super::super::test_support::store_with_workers(&["a", "b"])
    }

    fn line() -> LogLine {
        LogLine::new("pending", 0, 0, 0, "", "x")
    }

    fn insert(s: &mut SqliteStore, t: &NewTask, n: usize) -> Vec<i64> {
        s.insert_tasks(t, n, &line()).unwrap()
    }

    fn claim(s: &mut SqliteStore, owner: &str, now: i64, limit: usize) -> Vec<ClaimedTask> {
        s.claim(&Claim {
            finishes: &[],
            owner,
            now,
            limit,
            excluded_workers: &[],
            start_line: &|_| line(),
        })
        .unwrap()
        .1
    }

    fn new_task(worker: &str, at: i64) -> NewTask {
        NewTask {
            limit: None,
            parent: None,
            worker: worker.into(),
            action: "run".into(),
            data: "{}".into(),
            priority: Priority::Normal,
            max_attempts: 3,
            started_by: None,
            run_after: at,
            created_at: at,
        }
    }

    /// bucket, worker, created, completed, failed, cancelled, run_ms, runs
    type ActivityRow = (i64, String, i64, i64, i64, i64, i64, i64);

    /// The maintained tables equal the same aggregates computed from `tasks`.
    fn assert_consistent(s: &SqliteStore) {
        let fresh: Vec<(String, String, i64, i64, i64)> = s
            .conn
            .prepare(
                "SELECT worker, CASE WHEN status = 'running' THEN 'pending' ELSE status END, COUNT(*),
                    COALESCE(SUM(CASE WHEN status IN ('completed','failed') AND started_at IS NOT NULL
                        AND finished_at IS NOT NULL THEN finished_at - started_at END), 0),
                    SUM(status IN ('completed','failed') AND started_at IS NOT NULL
                        AND finished_at IS NOT NULL)
                 FROM tasks GROUP BY 1, 2 ORDER BY 1, 2",
            )
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let kept: Vec<(String, String, i64, i64, i64)> = s
            .conn
            .prepare(
                "SELECT worker, status, n, run_ms, runs FROM task_counts WHERE n <> 0 ORDER BY 1, 2",
            )
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(fresh, kept);
        let fresh: Vec<ActivityRow> = s
            .conn
            .prepare(
                "SELECT b, worker, SUM(c), SUM(co), SUM(f), SUM(ca), SUM(ms), SUM(runs) FROM (
                    SELECT created_at / 900000 * 900000 AS b, worker, 1 AS c, 0 AS co, 0 AS f,
                        0 AS ca, 0 AS ms, 0 AS runs FROM tasks
                    UNION ALL
                    SELECT finished_at / 900000 * 900000, worker, 0, status = 'completed',
                        status = 'failed', status = 'cancelled',
                        CASE WHEN status <> 'cancelled' AND started_at IS NOT NULL
                            THEN finished_at - started_at ELSE 0 END,
                        status <> 'cancelled' AND started_at IS NOT NULL
                    FROM tasks WHERE status IN ('completed','failed','cancelled')
                        AND finished_at IS NOT NULL)
                 GROUP BY 1, 2 ORDER BY 1, 2",
            )
            .unwrap()
            .query_map([], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                ))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let kept: Vec<ActivityRow> = s
            .conn
            .prepare(
                "SELECT bucket, worker, created, completed, failed, cancelled, run_ms, runs
                 FROM task_activity
                 WHERE created <> 0 OR completed <> 0 OR failed <> 0 OR cancelled <> 0
                 ORDER BY 1, 2",
            )
            .unwrap()
            .query_map([], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                ))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(fresh, kept);
        // The per-minute counts of the throughput chart (migration 14).
        let per_minute = |sql: &str| -> Vec<(i64, i64, i64)> {
            s.conn
                .prepare(sql)
                .unwrap()
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
        };
        let fresh = per_minute(
            "SELECT finished_at / 60000, SUM(status = 'completed'), SUM(status = 'failed')
             FROM tasks WHERE status IN ('completed', 'failed') AND finished_at IS NOT NULL
             GROUP BY 1 ORDER BY 1",
        );
        // Rows that fall to zero are deleted, so none is left over.
        let kept = per_minute("SELECT minute, completed, failed FROM task_minutes ORDER BY 1");
        assert_eq!(fresh, kept, "task_minutes");
    }

    #[test]
    fn maintained_statistics_follow_every_change_of_a_task() {
        let (_d, mut s) = store();
        let t0 = 1_700_000_000_000;
        let ids = insert(&mut s, &new_task("a", t0), 4);
        insert(&mut s, &new_task("b", t0 + BUCKET_MS * 3), 2);
        assert_consistent(&s);
        let claimed = claim(&mut s, "me", t0 + 1000, 3);
        assert_eq!(claimed.len(), 3);
        assert_consistent(&s);
        let finish = |id, outcome| crate::queue::Finish {
            id,
            owner: "me".into(),
            outcome,
            progress: 100,
            processed: 0,
            total: 0,
            message: "done".into(),
            at: t0 + BUCKET_MS * 5 + 7,
            lines: vec![],
        };
        s.finish_tasks(&[
            finish(
                claimed[0].task.id,
                crate::queue::Outcome::Completed {
                    result: "null".into(),
                },
            ),
            finish(
                claimed[1].task.id,
                crate::queue::Outcome::Failed {
                    error: "x".into(),
                    retry_at: None,
                },
            ),
            finish(
                claimed[2].task.id,
                crate::queue::Outcome::Failed {
                    error: "x".into(),
                    retry_at: Some(t0 + 5000),
                },
            ),
        ])
        .unwrap();
        assert_consistent(&s);
        s.request_cancel(ids[3], t0 + 9000, &line()).unwrap();
        s.retry_task(claimed[1].task.id, t0 + 10_000, &|_| line())
            .unwrap();
        assert_consistent(&s);
        s.delete_finished_tasks(&[claimed[0].task.id, ids[3]])
            .unwrap();
        assert_consistent(&s);
        // A row inserted already finished, then deleted.
        s.conn
            .execute(
                "INSERT INTO tasks (id, worker, action, status, created_at, started_at, finished_at)
                 VALUES (100, 'b', 'run', 'failed', ?1, ?1, ?2)",
                [t0 + 10, t0 + BUCKET_MS * 2],
            )
            .unwrap();
        assert_consistent(&s);
        assert_eq!(
            s.worker_last_runs().unwrap()["b"].last_finished_at,
            Some(t0 + BUCKET_MS * 2)
        );
        // Clean-up in batches (without the triggers) keeps them too.
        let old = s
            .delete_finished_before(&[Status::Failed, Status::Completed], i64::MAX, 10)
            .unwrap();
        assert_eq!(old, [100]);
        assert_consistent(&s);

        let c = s.task_status_counts().unwrap();
        assert_eq!((c.pending, c.running, c.completed), (4, 0, 0));
        assert_eq!(s.count_tasks_by(Some("b"), None).unwrap(), 2);
        assert_eq!(s.count_tasks_by(None, Some(Status::Pending)).unwrap(), 4);
        let last = s.worker_last_runs().unwrap();
        assert_eq!(last["a"].last_finished_at, Some(t0 + BUCKET_MS * 5 + 7));
        let by_bucket = s.activity_by_bucket(t0, t0 + BUCKET_MS * 10).unwrap();
        let total: i64 = by_bucket.iter().map(|(_, a)| a.created).sum();
        assert_eq!(total, 4, "two of the six were deleted: {by_bucket:?}");
    }

    /// A database whose tasks finished before the per-minute counts existed gets them
    /// from its tasks when it is opened (migration 14), and the chart reads them.
    #[test]
    fn per_minute_counts_are_built_from_the_tasks_of_an_older_database() {
        let (dir, s) = store();
        let t0 = 1_700_000_040_000;
        s.conn
            .execute_batch(&format!(
                "INSERT INTO tasks (id, worker, action, status, created_at, started_at, finished_at)
                 VALUES (1, 'a', 'run', 'completed', {t0}, {t0}, {t0} + 5),
                        (2, 'a', 'run', 'failed', {t0}, {t0}, {t0} + 59999),
                        (3, 'b', 'run', 'completed', {t0}, {t0}, {t0} + 60000),
                        (4, 'b', 'run', 'cancelled', {t0}, NULL, {t0} + 60000);
                 DROP TRIGGER tasks_minutes_insert; DROP TRIGGER tasks_minutes_delete;
                 DROP TRIGGER tasks_minutes_update; DROP TABLE task_minutes;
                 {} {} {} {}
                 PRAGMA user_version = {};",
                super::super::migrations::UNDO_STARTS,
                super::super::migrations::UNDO_WORKFLOWS,
                super::super::migrations::UNDO_LIMITS,
                super::super::migrations::UNDO_AFTER_MINUTES,
                super::super::migrations::MINUTES_VERSION - 1
            ))
            .unwrap();
        drop(s);
        let s = SqliteStore::open(&dir.path().join("stask.db")).unwrap();
        assert_consistent(&s);
        let per = s.finished_per_minute(t0, t0 + 180_000).unwrap();
        assert_eq!(
            per,
            [
                MinuteCounts {
                    minute: t0,
                    completed: 1,
                    failed: 1
                },
                MinuteCounts {
                    minute: t0 + 60_000,
                    completed: 1,
                    failed: 0
                },
            ]
        );
        // Minutes whose start lies in the range: one that starts before it is left out.
        assert_eq!(
            s.finished_per_minute(t0 + 1, t0 + 120_000).unwrap().len(),
            1
        );
    }

    /// `finish_tasks` skips the triggers and counts the batch itself: every kind of
    /// ending, several per worker and bucket, and a finish that does not apply.
    #[test]
    fn finishing_a_batch_counts_what_the_triggers_would() {
        let (_d, mut s) = store();
        let t0 = 1_700_000_000_000;
        insert(&mut s, &new_task("a", t0), 5);
        insert(&mut s, &new_task("b", t0 + 1), 3);
        let claimed = claim(&mut s, "me", t0 + 1000, 8);
        assert_eq!(claimed.len(), 8);
        assert_consistent(&s);
        let ids: Vec<i64> = claimed.iter().map(|c| c.task.id).collect();
        let finish = |id, owner: &str, outcome, at| crate::queue::Finish {
            id,
            owner: owner.into(),
            outcome,
            progress: 100,
            processed: 0,
            total: 0,
            message: "done".into(),
            at,
            lines: vec![],
        };
        use crate::queue::Outcome::*;
        let done = || Completed {
            result: "null".into(),
        };
        let applied = s
            .finish_tasks(&[
                finish(ids[0], "me", done(), t0 + 2000),
                finish(ids[1], "me", done(), t0 + 2500),
                finish(ids[2], "me", done(), t0 + BUCKET_MS + 1),
                finish(ids[3], "me", Requeued, t0 + 3000),
                finish(ids[4], "someone else", done(), t0 + 3000),
                finish(
                    ids[5],
                    "me",
                    Cancelled {
                        message: "stop".into(),
                    },
                    t0 + 4000,
                ),
                finish(
                    ids[6],
                    "me",
                    Failed {
                        error: "x".into(),
                        retry_at: None,
                    },
                    t0 + 5000,
                ),
                finish(
                    ids[7],
                    "me",
                    Failed {
                        error: "x".into(),
                        retry_at: Some(t0 + 9000),
                    },
                    t0 + 5000,
                ),
            ])
            .unwrap();
        assert_eq!(applied, [true, true, true, true, false, true, true, true]);
        assert_consistent(&s);
        let c = s.task_status_counts().unwrap();
        assert_eq!(
            (c.pending, c.running, c.completed, c.failed, c.cancelled),
            (2, 1, 3, 1, 1)
        );
        let last = s.worker_last_runs().unwrap();
        assert_eq!(last["a"].last_finished_at, Some(t0 + BUCKET_MS + 1));
        assert_eq!(last["b"].last_finished_at, Some(t0 + 5000));
        // The same finish again changes nothing.
        let again = s
            .finish_tasks(&[finish(ids[0], "me", done(), t0 + 6000)])
            .unwrap();
        assert_eq!(again, [false]);
        assert_consistent(&s);
    }

    /// One transaction records what ended and claims the next batch, which may hold
    /// a retry the same call queued.
    #[test]
    fn finish_and_claim_records_then_claims_in_one_go() {
        let (_d, mut s) = store();
        let t0 = 1_700_000_000_000;
        let ids = insert(&mut s, &new_task("a", t0), 3);
        let first = claim(&mut s, "me", t0 + 10, 2);
        assert_eq!(first.len(), 2);
        let finish = |id, outcome| crate::queue::Finish {
            id,
            owner: "me".into(),
            outcome,
            progress: 0,
            processed: 0,
            total: 0,
            message: "m".into(),
            at: t0 + 20,
            lines: vec![],
        };
        let (applied, claimed) = s
            .claim(&Claim {
                finishes: &[
                    finish(
                        ids[0],
                        crate::queue::Outcome::Completed {
                            result: "null".into(),
                        },
                    ),
                    finish(
                        ids[1],
                        crate::queue::Outcome::Failed {
                            error: "x".into(),
                            retry_at: Some(t0 + 20),
                        },
                    ),
                ],
                owner: "me",
                now: t0 + 30,
                limit: 5,
                excluded_workers: &[],
                start_line: &|_| line(),
            })
            .unwrap();
        assert_eq!(applied, [true, true]);
        let mut got: Vec<i64> = claimed.iter().map(|c| c.task.id).collect();
        got.sort();
        assert_eq!(got, [ids[1], ids[2]], "the retry and the last pending task");
        assert_eq!(
            claimed
                .iter()
                .find(|c| c.task.id == ids[1])
                .unwrap()
                .task
                .attempts,
            2
        );
        assert_consistent(&s);
        let c = s.task_status_counts().unwrap();
        assert_eq!((c.pending, c.running, c.completed), (0, 2, 1));
    }

    #[test]
    fn the_migration_computes_statistics_of_existing_tasks() {
        let (dir, mut s) = store();
        let t0 = 1_700_000_000_000;
        insert(&mut s, &new_task("a", t0), 3);
        let claimed = claim(&mut s, "me", t0 + 1000, 2);
        s.finish_tasks(&[crate::queue::Finish {
            id: claimed[0].task.id,
            owner: "me".into(),
            outcome: crate::queue::Outcome::Completed {
                result: "null".into(),
            },
            progress: 100,
            processed: 0,
            total: 0,
            message: "done".into(),
            at: t0 + 5000,
            lines: vec![],
        }])
        .unwrap();
        // Back to version 3, as a database made by an older stask.
        s.conn
            .execute_batch(super::super::migrations::UNDO_STARTS)
            .unwrap();
        s.conn
            .execute_batch(super::super::migrations::UNDO_WORKFLOWS)
            .unwrap();
        s.conn
            .execute_batch(super::super::migrations::UNDO_LIMITS)
            .unwrap();
        s.conn
            .execute_batch(super::super::migrations::UNDO_TEXT_INDEX)
            .unwrap();
        s.conn
            .execute_batch(
                "DROP TRIGGER tasks_stats_insert; DROP TRIGGER tasks_stats_delete;
                 DROP TRIGGER tasks_stats_update; DROP TRIGGER tasks_stats_insert_finished;
                 DROP TRIGGER tasks_stats_delete_finished;
                 DROP TRIGGER tasks_stats_update_unfinished;
                 DROP TRIGGER tasks_stats_update_finished; DROP TABLE task_counts;
                 DROP TABLE task_activity; DROP TABLE worker_activity; DROP TABLE sessions;
                 DROP TABLE users; DROP TABLE api_tokens; DROP INDEX tasks_created;
                 DROP INDEX tasks_started_by; DROP TABLE task_logs; DROP TABLE result_files;
                 DROP TABLE result_chunks; DROP TABLE owners; DROP TABLE meta; DROP TABLE hosts; DROP TABLE leader;
                 DROP TABLE login_failures; DROP INDEX tasks_unique;
                 ALTER TABLE tasks DROP COLUMN unique_key;
                 DROP TABLE removed_workers; DROP TABLE removed_schedules;
                 DROP TABLE task_deps; ALTER TABLE tasks DROP COLUMN deps_left;
                 ALTER TABLE workers DROP COLUMN inactive_reason; PRAGMA user_version = 3;",
            )
            .unwrap();
        drop(s);
        let s = SqliteStore::open(&dir.path().join("stask.db")).unwrap();
        assert_eq!(
            s.schema_version().unwrap(),
            super::super::migrations::LATEST
        );
        assert_consistent(&s);
        let c = s.task_status_counts().unwrap();
        assert_eq!((c.pending, c.running, c.completed), (1, 1, 1));
        let last = s.worker_last_runs().unwrap();
        assert_eq!(last["a"].last_finished_at, Some(t0 + 5000));
    }
}
