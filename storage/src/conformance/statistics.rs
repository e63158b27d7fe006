//! Statistics follow every change of a task; finished tasks are counted per minute.

use super::{claim, completed, finish, insert, line, register, task, Harness};
use crate::{MinuteCounts, Outcome, Status, BUCKET_MS};

pub fn counts_and_activity_follow_every_change(h: &dyn Harness) {
    let mut s = h.open();
    register(&mut *s, &["a", "b"], true);
    let t0 = 1_700_000_000_000;
    let a = insert(&mut *s, &task("a", t0), 4);
    insert(&mut *s, &task("b", t0 + BUCKET_MS * 3), 2);
    let c = s.task_status_counts().unwrap();
    assert_eq!((c.pending, c.running), (6, 0));
    let claimed = claim(&mut *s, "me", t0 + 1_000, 3);
    let c = s.task_status_counts().unwrap();
    assert_eq!((c.pending, c.running), (3, 3));
    let at = t0 + BUCKET_MS * 5 + 7;
    s.finish_tasks(&[
        finish(claimed[0].task.id, "me", completed(), "completed", at),
        finish(
            claimed[1].task.id,
            "me",
            Outcome::Failed {
                error: "x".into(),
                retry_at: None,
            },
            "failed",
            at,
        ),
        finish(
            claimed[2].task.id,
            "me",
            Outcome::Failed {
                error: "x".into(),
                retry_at: Some(t0),
            },
            "pending",
            at,
        ),
    ])
    .unwrap();
    s.request_cancel(a[3], at, &line("cancelled", "stop"))
        .unwrap();
    let c = s.task_status_counts().unwrap();
    assert_eq!(
        (c.pending, c.running, c.completed, c.failed, c.cancelled),
        (3, 0, 1, 1, 1)
    );
    assert_eq!(s.count_tasks_by(Some("b"), None).unwrap(), 2);
    assert_eq!(s.count_tasks_by(None, Some(Status::Pending)).unwrap(), 3);
    assert_eq!(
        s.count_tasks_by(Some("a"), Some(Status::Completed))
            .unwrap(),
        1
    );
    let per_worker = s.worker_counts().unwrap();
    let wa = per_worker.iter().find(|w| w.worker == "a").unwrap();
    assert_eq!(
        (wa.counts.completed, wa.counts.failed, wa.counts.cancelled),
        (1, 1, 1)
    );
    assert_eq!(wa.runs, 2, "completed and failed runs are timed");
    assert_eq!(wa.run_ms, 2 * (at - (t0 + 1_000)));
    assert_eq!(
        s.worker_last_runs().unwrap()["a"].last_finished_at,
        Some(at)
    );
    let buckets = s.activity_by_bucket(t0, t0 + BUCKET_MS * 10).unwrap();
    let created: i64 = buckets.iter().map(|(_, a)| a.created).sum();
    let done: i64 = buckets.iter().map(|(_, a)| a.completed).sum();
    assert_eq!((created, done), (6, 1));
    let by_worker = s.activity_by_worker(t0, t0 + BUCKET_MS * 10).unwrap();
    assert_eq!(by_worker["a"].cancelled, 1);
    assert_eq!(by_worker["b"].created, 2);
    // Deleting finished tasks takes them out again; the last run is remembered.
    s.delete_finished_tasks(&[claimed[0].task.id, a[3]])
        .unwrap();
    let c = s.task_status_counts().unwrap();
    assert_eq!((c.completed, c.cancelled), (0, 0));
    let buckets = s.activity_by_bucket(t0, t0 + BUCKET_MS * 10).unwrap();
    let created: i64 = buckets.iter().map(|(_, a)| a.created).sum();
    assert_eq!(created, 4);
    assert_eq!(
        s.worker_last_runs().unwrap()["a"].last_finished_at,
        Some(at)
    );
    assert_eq!(s.count_active_workers().unwrap(), 2);
}

pub fn finished_tasks_are_counted_per_minute(h: &dyn Harness) {
    let mut s = h.open();
    register(&mut *s, &["a"], true);
    let t0 = 1_700_000_040_000; // a whole minute
    assert_eq!(t0 % 60_000, 0);
    insert(&mut *s, &task("a", t0), 5);
    let claimed = claim(&mut *s, "me", t0 + 1_000, 5);
    let failed = || Outcome::Failed {
        error: "x".into(),
        retry_at: None,
    };
    let retried = Outcome::Failed {
        error: "x".into(),
        retry_at: Some(t0 + 600_000),
    };
    s.finish_tasks(&[
        finish(
            claimed[0].task.id,
            "me",
            completed(),
            "completed",
            t0 + 60_000,
        ),
        finish(
            claimed[1].task.id,
            "me",
            completed(),
            "completed",
            t0 + 119_999,
        ),
        finish(claimed[2].task.id, "me", failed(), "failed", t0 + 60_500),
        finish(claimed[3].task.id, "me", failed(), "failed", t0 + 180_000),
        // Waiting for its retry: not failed (yet).
        finish(claimed[4].task.id, "me", retried, "pending", t0 + 60_000),
    ])
    .unwrap();
    let per = s.finished_per_minute(t0, t0 + 240_000).unwrap();
    assert_eq!(
        per,
        vec![
            MinuteCounts {
                minute: t0 + 60_000,
                completed: 2,
                failed: 1
            },
            MinuteCounts {
                minute: t0 + 180_000,
                completed: 0,
                failed: 1
            },
        ]
    );
    // The range is half-open and minutes outside it are left out.
    let per = s.finished_per_minute(t0 + 120_000, t0 + 180_000).unwrap();
    assert!(per.is_empty(), "{per:?}");
    assert!(s.finished_per_minute(0, t0).unwrap().is_empty());
}

/// Counts read while another connection runs, fails and retries a task always add up:
/// the running and the other counts come from one snapshot. (Read with two
/// statements, a reader could count the task as running and then, after it failed,
/// find it in the failed count too: "1 running, -1 pending, 1 failed".)
pub fn counts_read_while_tasks_move_come_from_one_snapshot(h: &dyn Harness) {
    let mut writer = h.open();
    register(&mut *writer, &["a"], true);
    let t0 = 1_700_000_000_000;
    insert(&mut *writer, &task("a", t0), 1);
    let reader = h.open();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let sane = |c: &crate::StatusCounts| {
        let all = [c.pending, c.running, c.completed, c.failed, c.cancelled];
        all.iter().sum::<i64>() == 1 && all.iter().all(|n| (0..=1).contains(n))
    };
    std::thread::scope(|scope| {
        let moving = scope.spawn(|| {
            // Claim the task, fail it, retry it: over and over.
            for i in 0..300 {
                let claimed = claim(&mut *writer, "me", t0 + 1_000, 1);
                let id = claimed[0].task.id;
                let failed = Outcome::Failed {
                    error: "x".into(),
                    retry_at: None,
                };
                let applied = writer
                    .finish_tasks(&[finish(id, "me", failed, "failed", t0 + i)])
                    .unwrap();
                assert_eq!(applied, vec![true]);
                let retried = writer
                    .retry_task(id, t0 + i, &|_| line("pending", "again"))
                    .unwrap();
                assert!(matches!(retried, Some(crate::RetryResult::Queued(_))));
            }
            stop.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        let mut reads = 0;
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            let c = reader.task_status_counts().unwrap();
            assert!(sane(&c), "task_status_counts after {reads} reads: {c:?}");
            let w = reader.worker_counts().unwrap();
            let a = &w.iter().find(|w| w.worker == "a").unwrap().counts;
            assert!(sane(a), "worker_counts after {reads} reads: {a:?}");
            let pending = reader.count_tasks_by(Some("a"), Some(Status::Pending));
            assert!(matches!(pending, Ok(0 | 1)), "count_tasks_by: {pending:?}");
            reads += 1;
        }
        moving.join().unwrap();
    });
}
