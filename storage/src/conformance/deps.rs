//! Dependencies between tasks: a task created to run after others is claimable only
//! once they have completed (or, with `any`, ended at all); a dependency that fails
//! finally or is cancelled cancels it, with a message naming the cause.

use std::sync::Barrier;

use super::{claim, completed, finish, ids, insert, line, register, task, texts, Harness};
use crate::{After, AfterInsert, Dependencies, Outcome, Status, Store, WAITING_FOR_DEPENDENCIES};

fn after(s: &mut dyn Store, ids: &[i64], any: bool, at: i64) -> i64 {
    let after = After {
        ids: ids.to_vec(),
        any,
    };
    match s
        .insert_task_after(&task("w", at), &after, &line("pending", "created after"))
        .unwrap()
    {
        AfterInsert::Created(id) => id,
        AfterInsert::Missing(id) => panic!("dependency {id} reported missing"),
    }
}

fn failed() -> Outcome {
    Outcome::Failed {
        error: "boom".into(),
        retry_at: None,
    }
}

fn status(s: &dyn Store, id: i64) -> Status {
    s.get_task(id).unwrap().unwrap().status
}

pub fn a_task_runs_only_after_its_dependencies_completed(h: &dyn Harness) {
    let mut s = h.open();
    register(&mut *s, &["w"], true);
    let a = insert(&mut *s, &task("w", 100), 1)[0];
    let c = insert(&mut *s, &task("w", 100), 1)[0];
    let b = after(&mut *s, &[a, c], false, 100);
    assert_eq!(texts(&*s, b), ["pending|0|0|0|-|created after"]);
    let t = s.get_task(b).unwrap().unwrap();
    assert_eq!(t.status, Status::Pending);
    assert_eq!(t.run_after, WAITING_FOR_DEPENDENCIES);
    assert_eq!(
        s.task_dependencies(b).unwrap(),
        Some(Dependencies {
            after: vec![a, c],
            any: false,
            waiting_on: vec![a, c],
        })
    );
    assert_eq!(s.task_dependencies(a).unwrap(), None);
    // Not claimable, not counted as due, not made due by hand.
    assert_eq!(s.count_claimable(1_000).unwrap(), 2);
    assert!(!s.make_task_due(b, 1_000).unwrap());
    s.make_all_due(1_000).unwrap();
    assert_eq!(ids(&claim(&mut *s, "me", 1_000, 10)), [a, c]);
    s.finish_tasks(&[finish(a, "me", completed(), "completed", 1_100)])
        .unwrap();
    assert_eq!(
        s.task_dependencies(b).unwrap().unwrap().waiting_on,
        [c],
        "one left"
    );
    assert!(claim(&mut *s, "me", 2_000, 10).is_empty());
    // The last one releases it, due from its finish.
    s.finish_tasks(&[finish(c, "me", completed(), "completed", 1_200)])
        .unwrap();
    assert_eq!(s.get_task(b).unwrap().unwrap().run_after, 1_200);
    assert!(s
        .task_dependencies(b)
        .unwrap()
        .unwrap()
        .waiting_on
        .is_empty());
    assert_eq!(ids(&claim(&mut *s, "me", 2_000, 10)), [b]);

    // A completed dependency is satisfied at once; a missing one is refused.
    let d = after(&mut *s, &[a], false, 3_000);
    assert_eq!(s.get_task(d).unwrap().unwrap().run_after, 3_000);
    assert_eq!(ids(&claim(&mut *s, "me", 3_000, 10)), [d]);
    let before = s.task_status_counts().unwrap();
    let refused = s
        .insert_task_after(
            &task("w", 3_000),
            &After {
                ids: vec![a, 999_999],
                any: false,
            },
            &line("pending", "x"),
        )
        .unwrap();
    assert_eq!(refused, AfterInsert::Missing(999_999));
    assert_eq!(
        s.task_status_counts().unwrap().pending,
        before.pending,
        "nothing was created"
    );
}

pub fn a_failed_or_cancelled_dependency_cancels_its_dependants_unless_any(h: &dyn Harness) {
    let mut s = h.open();
    register(&mut *s, &["w"], true);
    let a = insert(&mut *s, &task("w", 100), 1)[0];
    let b = after(&mut *s, &[a], false, 100);
    let any = after(&mut *s, &[a], true, 100);
    // A dependant of a dependant is cancelled in turn.
    let d = after(&mut *s, &[b], false, 100);
    assert_eq!(ids(&claim(&mut *s, "me", 1_000, 10)), [a]);
    s.finish_tasks(&[finish(a, "me", failed(), "failed", 1_100)])
        .unwrap();
    let tb = s.get_task(b).unwrap().unwrap();
    let msg = format!("Cancelled: task #{a} it depends on failed");
    assert_eq!(
        (tb.status, tb.message.as_str(), tb.error.as_deref()),
        (Status::Cancelled, msg.as_str(), Some(msg.as_str()))
    );
    assert_eq!(tb.finished_at, Some(1_100));
    assert_eq!(
        texts(&*s, b).last().unwrap(),
        &format!("cancelled|0|0|0|-|{msg}")
    );
    let td = s.get_task(d).unwrap().unwrap();
    assert_eq!(
        (td.status, td.message),
        (
            Status::Cancelled,
            format!("Cancelled: task #{b} it depends on was cancelled")
        )
    );
    // With `any` it runs anyway.
    assert_eq!(ids(&claim(&mut *s, "me", 2_000, 10)), [any]);
    // The statistics saw both cancels.
    let counts = s.task_status_counts().unwrap();
    assert_eq!(
        (
            counts.pending,
            counts.running,
            counts.failed,
            counts.cancelled
        ),
        (0, 1, 1, 2)
    );

    // Cancelling a pending dependency cancels its dependants too.
    let e = insert(&mut *s, &task("w", 3_000), 1)[0];
    let f = after(&mut *s, &[e], false, 3_000);
    let g = after(&mut *s, &[e], true, 3_000);
    s.request_cancel(e, 3_100, &line("cancelled", "by hand"))
        .unwrap();
    assert_eq!(status(&*s, f), Status::Cancelled);
    assert_eq!(s.get_task(g).unwrap().unwrap().run_after, 3_100);

    // Created after a task that already failed: cancelled at once, or due with `any`.
    let late = after(&mut *s, &[a], false, 4_000);
    let t = s.get_task(late).unwrap().unwrap();
    assert_eq!(
        (t.status, t.message),
        (
            Status::Cancelled,
            format!("Cancelled: task #{a} it depends on failed")
        )
    );
    let late_any = after(&mut *s, &[a, e], true, 4_000);
    assert_eq!(s.get_task(late_any).unwrap().unwrap().run_after, 4_000);
    let claimed = ids(&claim(&mut *s, "me", 5_000, 10));
    assert!(claimed.contains(&g) && claimed.contains(&late_any));
    let counts = s.task_status_counts().unwrap();
    assert_eq!((counts.pending, counts.cancelled), (0, 5));
}

pub fn a_failed_attempt_that_is_retried_releases_nothing(h: &dyn Harness) {
    let mut s = h.open();
    register(&mut *s, &["w"], true);
    let a = insert(&mut *s, &task("w", 100), 1)[0];
    let b = after(&mut *s, &[a], false, 100);
    assert_eq!(ids(&claim(&mut *s, "me", 1_000, 10)), [a]);
    let retry = Outcome::Failed {
        error: "again".into(),
        retry_at: Some(2_000),
    };
    s.finish_tasks(&[finish(a, "me", retry, "pending", 1_100)])
        .unwrap();
    assert_eq!(status(&*s, b), Status::Pending);
    assert_eq!(
        s.get_task(b).unwrap().unwrap().run_after,
        WAITING_FOR_DEPENDENCIES
    );
    assert_eq!(ids(&claim(&mut *s, "me", 3_000, 10)), [a]);
    s.finish_tasks(&[finish(a, "me", completed(), "completed", 3_100)])
        .unwrap();
    assert_eq!(ids(&claim(&mut *s, "me", 4_000, 10)), [b]);
}

pub fn two_dependencies_ending_at_once_release_their_dependant_once(h: &dyn Harness) {
    let mut s = h.open();
    register(&mut *s, &["w"], true);
    for (round, outcome) in [completed(), failed(), completed()].into_iter().enumerate() {
        let at = 10_000 * (round as i64 + 1);
        let a = insert(&mut *s, &task("w", at), 2);
        let b = after(&mut *s, &a, false, at);
        assert_eq!(ids(&claim(&mut *s, "me", at, 10)), a);
        let barrier = Barrier::new(2);
        std::thread::scope(|scope| {
            for id in &a {
                let (barrier, outcome) = (&barrier, outcome.clone());
                scope.spawn(move || {
                    let mut s = h.open();
                    let status = if matches!(outcome, Outcome::Completed { .. }) {
                        "completed"
                    } else {
                        "failed"
                    };
                    barrier.wait();
                    let done = s
                        .finish_tasks(&[finish(*id, "me", outcome, status, at + 100)])
                        .unwrap();
                    assert_eq!(done, [true]);
                });
            }
        });
        let t = s.get_task(b).unwrap().unwrap();
        if matches!(outcome, Outcome::Completed { .. }) {
            assert_eq!(t.status, Status::Pending);
            assert_eq!(ids(&claim(&mut *s, "me", at + 200, 10)), [b]);
            s.finish_tasks(&[finish(b, "me", completed(), "completed", at + 300)])
                .unwrap();
        } else {
            assert_eq!(t.status, Status::Cancelled);
            // One cancel: one last line, counted once.
            let lines = texts(&*s, b);
            assert_eq!(lines.len(), 2, "{lines:?}");
            assert!(lines[1].starts_with("cancelled|"));
        }
    }
    let counts = s.task_status_counts().unwrap();
    assert_eq!(
        (
            counts.pending,
            counts.running,
            counts.completed,
            counts.failed,
            counts.cancelled
        ),
        (0, 0, 6, 2, 1)
    );
}

pub fn deleting_a_dependency_or_a_dependant_leaves_no_waiting_task_behind(h: &dyn Harness) {
    let mut s = h.open();
    register(&mut *s, &["w"], true);
    let a = insert(&mut *s, &task("w", 100), 2);
    let b = after(&mut *s, &a, false, 100);
    assert_eq!(ids(&claim(&mut *s, "me", 1_000, 1)), [a[0]]);
    s.finish_tasks(&[finish(a[0], "me", completed(), "completed", 1_100)])
        .unwrap();
    // The finished dependency goes; the dependant still names it and waits for the other.
    assert_eq!(s.delete_finished_tasks(&[a[0]]).unwrap(), [a[0]]);
    assert_eq!(
        s.task_dependencies(b).unwrap().unwrap(),
        Dependencies {
            after: a.clone(),
            any: false,
            waiting_on: vec![a[1]],
        }
    );
    assert_eq!(ids(&claim(&mut *s, "me", 2_000, 10)), [a[1]]);
    s.finish_tasks(&[finish(a[1], "me", completed(), "completed", 2_100)])
        .unwrap();
    assert_eq!(ids(&claim(&mut *s, "me", 3_000, 10)), [b]);
    s.finish_tasks(&[finish(b, "me", completed(), "completed", 3_100)])
        .unwrap();
    assert_eq!(s.delete_finished_tasks(&[b]).unwrap(), [b]);
    assert_eq!(s.task_dependencies(b).unwrap(), None);
}

/// Tasks no claim takes however many slots are free (waiting for their dependencies,
/// parked at a limit per key) are not claimable, even once everything was made due,
/// and are counted apart per worker.
pub fn waiting_and_parked_tasks_are_held_not_claimable(h: &dyn Harness) {
    let mut s = h.open();
    register(&mut *s, &["w"], true);
    s.set_limit_rules(
        "w",
        &[crate::LimitRule {
            rule: "per-shop".into(),
            concurrency: Some(1),
            rate: None,
        }],
    )
    .unwrap();
    let keyed = crate::NewTask {
        limit: Some(crate::TaskLimit {
            rule: "per-shop".into(),
            key: "shop:1".into(),
        }),
        ..task("w", 100)
    };
    let k1 = insert(&mut *s, &keyed, 1)[0];
    let k2 = insert(&mut *s, &keyed, 1)[0];
    let a = insert(&mut *s, &task("w", 100), 1)[0];
    let b = after(&mut *s, &[a], false, 100);
    let free = insert(&mut *s, &task("w", 100), 1)[0];
    // Nothing parked yet; b waits.
    assert_eq!(s.count_held().unwrap(), [("w".to_owned(), 1, 0)]);
    // Two slots: k1 and a run, k2 is parked behind k1; b waits for a; free is due.
    assert_eq!(ids(&claim(&mut *s, "me", 1_000, 2)), [k1, a]);
    assert_eq!(ids(&claim(&mut *s, "me", 1_000, 1)), [free]);
    assert_eq!(status(&*s, k2), Status::Pending);
    assert_eq!(status(&*s, b), Status::Pending);
    assert_eq!(s.count_held().unwrap(), [("w".to_owned(), 1, 1)]);
    assert_eq!(s.count_claimable(1_000).unwrap(), 0);
    s.make_all_due(1_000).unwrap();
    assert_eq!(s.count_claimable(1_000).unwrap(), 0, "still held");
    assert_eq!(
        s.get_task(b).unwrap().unwrap().run_after,
        WAITING_FOR_DEPENDENCIES
    );
    // Their dependency and their key's running task end: both are claimable.
    s.finish_tasks(&[
        finish(k1, "me", completed(), "completed", 1_100),
        finish(a, "me", completed(), "completed", 1_100),
    ])
    .unwrap();
    assert!(s.count_held().unwrap().is_empty());
    assert_eq!(s.count_claimable(2_000).unwrap(), 2);
}

/// A task with a unique key and dependencies: created with the key to wait for them
/// when no task has the key, else the task that has it is returned and nothing is
/// written; a missing dependency writes nothing either.
pub fn a_unique_task_after_others_is_created_once(h: &dyn Harness) {
    use crate::{Inserted, UniqueAfterInsert, Uniqueness};
    let mut s = h.open();
    register(&mut *s, &["w"], true);
    let a = insert(&mut *s, &task("w", 100), 1)[0];
    let unique = Uniqueness {
        key: "k".into(),
        statuses: vec![Status::Pending, Status::Running],
        since: None,
    };
    let deps = After {
        ids: vec![a],
        any: false,
    };
    let creation = line("pending", "created unique after");
    let b = match s
        .insert_unique_task_after(&task("w", 200), &unique, &deps, &creation)
        .unwrap()
    {
        UniqueAfterInsert::Created(id) => id,
        other => panic!("expected a new task, got {other:?}"),
    };
    assert_eq!(
        s.get_task(b).unwrap().unwrap().run_after,
        WAITING_FOR_DEPENDENCIES
    );
    assert_eq!(texts(&*s, b), ["pending|0|0|0|-|created unique after"]);
    assert_eq!(s.task_dependencies(b).unwrap().unwrap().waiting_on, [a]);
    // The key is stored: a second creator, with dependencies or without, gets it.
    match s
        .insert_unique_task_after(&task("w", 300), &unique, &deps, &creation)
        .unwrap()
    {
        UniqueAfterInsert::Existing(t) => assert_eq!(t.id, b),
        other => panic!("expected the task with the key, got {other:?}"),
    }
    match s
        .insert_unique_task(&task("w", 300), &unique, &creation)
        .unwrap()
    {
        Inserted::Existing(t) => assert_eq!(t.id, b),
        Inserted::Created(id) => panic!("created {id} beside the task with the key"),
    }
    // Another key after a task that does not exist: nothing is written.
    let other = Uniqueness {
        key: "other".into(),
        ..unique.clone()
    };
    let missing = After {
        ids: vec![a, 999_999],
        any: false,
    };
    assert!(matches!(
        s.insert_unique_task_after(&task("w", 400), &other, &missing, &creation)
            .unwrap(),
        UniqueAfterInsert::Missing(999_999)
    ));
    assert_eq!(s.task_status_counts().unwrap().pending, 2);
    // It runs once its dependency completed, like any dependant.
    assert_eq!(ids(&claim(&mut *s, "me", 1_000, 10)), [a]);
    s.finish_tasks(&[finish(a, "me", completed(), "completed", 1_100)])
        .unwrap();
    assert_eq!(ids(&claim(&mut *s, "me", 2_000, 10)), [b]);
}
