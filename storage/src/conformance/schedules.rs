//! Schedules: set, pause, resume, and firing each slot at most once.

use std::sync::LazyLock;

use super::{claim, completed, finish, register, texts, Harness};
use crate::{FireOutcome, Firing, LogLine, Priority, Store, TaskFilter, SCHEDULE_STARTED_BY};

static CREATED: LazyLock<LogLine> =
    LazyLock::new(|| super::line("pending", "Task created by schedule (daily)"));

fn firing(slot: i64, now: i64, next: Option<i64>) -> Firing<'static> {
    Firing {
        worker: "w",
        slot,
        spec: "S",
        now,
        next_run_at: next,
        creation: &CREATED,
        limit: None,
    }
}

fn run_action(_manifest: &str) -> Result<String, String> {
    Ok("run".into())
}

fn task_count(store: &dyn Store) -> usize {
    store.list_tasks(&TaskFilter::default()).unwrap().len()
}

/// Runs and completes every pending task.
fn complete_all(store: &mut dyn Store) {
    for c in claim(store, "me", i64::MAX, 100) {
        store
            .finish_tasks(&[finish(c.task.id, "me", completed(), "completed", 1)])
            .unwrap();
    }
}

pub fn set_get_replace_list_delete(h: &dyn Harness) {
    let mut store = h.open();
    register(&mut *store, &["w"], true);
    assert_eq!(store.get_schedule("w").unwrap(), None);
    store.set_schedule("w", "S", "{}", Some(100), 1).unwrap();
    let s = store.get_schedule("w").unwrap().unwrap();
    assert_eq!(
        (s.next_run_at, s.paused, s.created_at),
        (Some(100), false, 1)
    );
    store
        .set_schedule("w", "T", r#"{"a":1}"#, Some(200), 2)
        .unwrap();
    let s = store.get_schedule("w").unwrap().unwrap();
    assert_eq!((s.spec.as_str(), s.data.as_str()), ("T", r#"{"a":1}"#));
    assert_eq!(
        (s.next_run_at, s.created_at, s.updated_at),
        (Some(200), 1, 2)
    );
    assert_eq!(store.list_schedules().unwrap().len(), 1);
    assert!(store.delete_schedule("w").unwrap());
    assert!(!store.delete_schedule("w").unwrap());
    assert!(store.list_schedules().unwrap().is_empty());
}

pub fn a_schedule_needs_a_registered_worker_and_goes_with_it(h: &dyn Harness) {
    let mut store = h.open();
    register(&mut *store, &["w"], true);
    assert!(store.set_schedule("ghost", "S", "{}", Some(1), 1).is_err());
    store.set_schedule("w", "S", "{}", Some(1), 1).unwrap();
    assert!(store.delete_worker("w").unwrap());
    assert_eq!(store.get_schedule("w").unwrap(), None);
}

pub fn fires_once_per_slot_with_the_creation_line_and_advances(h: &dyn Harness) {
    let mut store = h.open();
    register(&mut *store, &["w"], true);
    store
        .set_schedule("w", "S", r#"{"x":1}"#, Some(100), 1)
        .unwrap();
    assert_eq!(store.next_due_at().unwrap(), Some(100));
    assert!(store.due_schedules(99).unwrap().is_empty());
    assert_eq!(store.due_schedules(150).unwrap().len(), 1);
    // Not due yet: nothing happens.
    let early = store.fire_schedule(&firing(100, 99, Some(200)), &run_action);
    assert_eq!(early.unwrap(), FireOutcome::NotDue);
    let out = store
        .fire_schedule(&firing(100, 150, Some(200)), &run_action)
        .unwrap();
    let FireOutcome::Created { task_id, action } = out else {
        panic!("expected a task, got {out:?}");
    };
    assert_eq!(action, "run");
    let t = store.get_task(task_id).unwrap().unwrap();
    assert_eq!(t.started_by.as_deref(), Some(SCHEDULE_STARTED_BY));
    assert_eq!((t.max_attempts, t.priority), (3, Priority::Normal));
    assert_eq!(t.data, r#"{"x":1}"#);
    assert_eq!(
        texts(&*store, task_id),
        ["pending|0|0|0|-|Task created by schedule (daily)"],
        "the creation line is stored with the task"
    );
    let s = store.get_schedule("w").unwrap().unwrap();
    assert_eq!(
        (s.next_run_at, s.last_run_at, s.last_task_id),
        (Some(200), Some(150), Some(task_id))
    );
    // The same slot again (a second process, a restart): nothing.
    let again = store.fire_schedule(&firing(100, 150, Some(200)), &run_action);
    assert_eq!(again.unwrap(), FireOutcome::NotDue);
    assert_eq!(task_count(&*store), 1);
}

pub fn a_replaced_or_paused_schedule_is_not_fired_with_stale_values(h: &dyn Harness) {
    let mut store = h.open();
    register(&mut *store, &["w"], true);
    store.set_schedule("w", "S", "{}", Some(100), 1).unwrap();
    store.set_schedule("w", "T", "{}", Some(100), 2).unwrap();
    let out = store.fire_schedule(&firing(100, 150, Some(200)), &run_action);
    assert_eq!(out.unwrap(), FireOutcome::NotDue);
    store.set_schedule("w", "S", "{}", Some(100), 3).unwrap();
    assert!(store.pause_schedule("w", 4).unwrap());
    assert_eq!(store.next_due_at().unwrap(), None);
    assert!(store.due_schedules(1_000).unwrap().is_empty());
    let out = store.fire_schedule(&firing(100, 150, Some(200)), &run_action);
    assert_eq!(out.unwrap(), FireOutcome::NotDue);
    // Replacing a paused schedule keeps it paused and without a next run.
    store.set_schedule("w", "S", "{}", Some(100), 5).unwrap();
    let s = store.get_schedule("w").unwrap().unwrap();
    assert_eq!((s.paused, s.next_run_at), (true, None));
    assert!(store.resume_schedule("w", Some(300), 6).unwrap());
    let s = store.get_schedule("w").unwrap().unwrap();
    assert_eq!((s.paused, s.next_run_at), (false, Some(300)));
    assert_eq!(task_count(&*store), 0);
    assert!(!store.pause_schedule("ghost", 7).unwrap());
    assert!(!store.resume_schedule("ghost", None, 7).unwrap());
}

pub fn a_busy_previous_task_or_an_inactive_worker_records_a_skip(h: &dyn Harness) {
    let mut store = h.open();
    register(&mut *store, &["w"], true);
    store.set_schedule("w", "S", "{}", Some(100), 1).unwrap();
    let first = store
        .fire_schedule(&firing(100, 100, Some(200)), &run_action)
        .unwrap();
    assert!(matches!(first, FireOutcome::Created { .. }));
    let out = store
        .fire_schedule(&firing(200, 250, Some(300)), &run_action)
        .unwrap();
    let FireOutcome::Skipped { reason } = out else {
        panic!("expected a skip, got {out:?}");
    };
    assert!(reason.contains("still pending"), "{reason}");
    let s = store.get_schedule("w").unwrap().unwrap();
    assert_eq!(s.skipped_count, 1);
    assert_eq!((s.last_skip_at, s.next_run_at), (Some(250), Some(300)));
    assert_eq!(task_count(&*store), 1);

    // Once the previous task finished, the next slot creates a task again.
    complete_all(&mut *store);
    let out = store
        .fire_schedule(&firing(300, 300, Some(400)), &run_action)
        .unwrap();
    assert!(matches!(out, FireOutcome::Created { .. }), "{out:?}");

    store.set_worker_active("w", false).unwrap();
    complete_all(&mut *store);
    let out = store
        .fire_schedule(&firing(400, 400, None), &run_action)
        .unwrap();
    assert_eq!(
        out,
        FireOutcome::Skipped {
            reason: "worker inactive".into()
        }
    );
    let s = store.get_schedule("w").unwrap().unwrap();
    assert_eq!(s.skipped_count, 2);
    assert_eq!(s.last_skip_reason.as_deref(), Some("worker inactive"));
    assert_eq!(s.next_run_at, None);
    assert_eq!(store.next_due_at().unwrap(), None);
}

pub fn an_action_refused_by_the_host_is_a_skip(h: &dyn Harness) {
    let mut store = h.open();
    register(&mut *store, &["w"], true);
    store.set_schedule("w", "S", "{}", Some(100), 1).unwrap();
    let out = store
        .fire_schedule(&firing(100, 100, None), &|m| {
            assert!(m.contains("\"run\""));
            Err("no actions".into())
        })
        .unwrap();
    assert_eq!(
        out,
        FireOutcome::Skipped {
            reason: "no actions".into()
        }
    );
    assert_eq!(task_count(&*store), 0);
}

pub fn two_connections_fire_a_slot_once(h: &dyn Harness) {
    let mut a = h.open();
    register(&mut *a, &["w"], true);
    let mut b = h.open();
    a.set_schedule("w", "S", "{}", Some(100), 1).unwrap();
    let first = a.fire_schedule(&firing(100, 100, Some(200)), &run_action);
    let second = b.fire_schedule(&firing(100, 100, Some(200)), &run_action);
    assert!(matches!(first.unwrap(), FireOutcome::Created { .. }));
    assert_eq!(second.unwrap(), FireOutcome::NotDue);
    assert_eq!(task_count(&*a), 1);
}
