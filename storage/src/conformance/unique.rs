//! Unique tasks: creating a task returns the one already there with the same key.

use std::collections::HashSet;
use std::sync::Barrier;

use super::{claim, completed, finish, line, register, task, texts, Harness};
use crate::{Inserted, NewTask, Status, Store, Uniqueness};

/// `key` matching pending and running tasks of any age.
fn active(key: &str) -> Uniqueness {
    Uniqueness {
        key: key.into(),
        statuses: vec![Status::Pending, Status::Running],
        since: None,
    }
}

fn create(s: &mut dyn Store, t: &NewTask, u: &Uniqueness) -> Inserted {
    s.insert_unique_task(t, u, &line("pending", "created unique"))
        .unwrap()
}

fn created(i: Inserted) -> i64 {
    match i {
        Inserted::Created(id) => id,
        Inserted::Existing(t) => panic!("expected a new task, got existing task {}", t.id),
    }
}

fn existing(i: Inserted) -> i64 {
    match i {
        Inserted::Existing(t) => t.id,
        Inserted::Created(id) => panic!("expected an existing task, got new task {id}"),
    }
}

pub fn a_second_task_with_the_key_returns_the_first_while_it_is_pending_or_running(
    h: &dyn Harness,
) {
    let mut s = h.open();
    register(&mut *s, &["w"], true);
    let first = created(create(&mut *s, &task("w", 100), &active("k")));
    // The new task is a task like any other, with its creation line.
    let t = s.get_task(first).unwrap().unwrap();
    assert_eq!((t.status, t.worker.as_str()), (Status::Pending, "w"));
    assert_eq!(texts(&*s, first), ["pending|0|0|0|-|created unique"]);

    assert_eq!(
        existing(create(&mut *s, &task("w", 200), &active("k"))),
        first
    );
    let c = claim(&mut *s, "me", 300, 1);
    assert_eq!(c[0].task.id, first);
    let Inserted::Existing(running) = create(&mut *s, &task("w", 400), &active("k")) else {
        panic!("a running task with the key is returned");
    };
    assert_eq!((running.id, running.status), (first, Status::Running));
    assert_eq!(
        s.task_status_counts().unwrap().pending,
        0,
        "nothing was added"
    );

    // Once it completed, the key is free again for these statuses...
    s.finish_tasks(&[finish(first, "me", completed(), "completed", 500)])
        .unwrap();
    let second = created(create(&mut *s, &task("w", 600), &active("k")));
    assert!(second > first);
    // ... and a completed task counts when the creator says so (the newest match).
    let done = Uniqueness {
        statuses: vec![Status::Completed, Status::Pending],
        ..active("k")
    };
    assert_eq!(existing(create(&mut *s, &task("w", 700), &done)), second);
    let only_done = Uniqueness {
        statuses: vec![Status::Completed],
        ..active("k")
    };
    assert_eq!(
        existing(create(&mut *s, &task("w", 700), &only_done)),
        first
    );
}

pub fn keys_are_matched_per_worker_and_action_and_within_the_period(h: &dyn Harness) {
    let mut s = h.open();
    register(&mut *s, &["w", "v"], true);
    let first = created(create(&mut *s, &task("w", 1_000), &active("k")));
    // Another key, another worker, another action: each its own task.
    created(create(&mut *s, &task("w", 1_000), &active("other")));
    created(create(&mut *s, &task("v", 1_000), &active("k")));
    let mut other_action = task("w", 1_000);
    other_action.action = "sync".into();
    created(create(&mut *s, &other_action, &active("k")));
    // A task created without a key never matches one.
    s.insert_tasks(&task("w", 1_000), 1, &line("pending", "plain"))
        .unwrap();
    let counts = s.task_status_counts().unwrap();
    assert_eq!(counts.pending, 5);

    // Within the period the first counts; created before it, it does not.
    let recent = Uniqueness {
        since: Some(1_000),
        ..active("k")
    };
    assert_eq!(existing(create(&mut *s, &task("w", 5_000), &recent)), first);
    let later = Uniqueness {
        since: Some(1_001),
        ..active("k")
    };
    let fresh = created(create(&mut *s, &task("w", 5_000), &later));
    // Both are pending with the key now; the newest is the one returned.
    assert_eq!(
        existing(create(&mut *s, &task("w", 6_000), &active("k"))),
        fresh
    );
}

pub fn creators_racing_with_one_key_make_one_task(h: &dyn Harness) {
    let mut s = h.open();
    register(&mut *s, &["w"], true);
    const CREATORS: usize = 8;
    let barrier = Barrier::new(CREATORS);
    let results: Vec<(bool, i64)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..CREATORS)
            .map(|_| {
                scope.spawn(|| {
                    let mut s = h.open();
                    barrier.wait();
                    match create(&mut *s, &task("w", 10), &active("race")) {
                        Inserted::Created(id) => (true, id),
                        Inserted::Existing(t) => (false, t.id),
                    }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let made: Vec<i64> = results.iter().filter(|r| r.0).map(|r| r.1).collect();
    assert_eq!(made.len(), 1, "exactly one creator creates: {results:?}");
    let ids: HashSet<i64> = results.iter().map(|r| r.1).collect();
    assert_eq!(ids, HashSet::from([made[0]]), "the others got that task");
    assert_eq!(s.task_status_counts().unwrap().pending, 1);
}
