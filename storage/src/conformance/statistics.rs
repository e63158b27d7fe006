//! Statistics follow every change of a task.

use super::{claim, completed, finish, insert, line, register, task, Harness};
use crate::{Outcome, Status, BUCKET_MS};

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
