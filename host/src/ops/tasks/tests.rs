//! The task operations against a real store in a temporary home.

use std::time::Duration;

use serde_json::json;
use stask_storage::{now_ms, LogLine, NewTask, Priority, Status};

use super::*;
use crate::auth::Role;
use crate::ops::testing::{problem, woken, Env};
use crate::ops::Actor;
use crate::problem::ProblemKind;

fn request(data: serde_json::Value) -> TaskRequest {
    TaskRequest {
        worker: "w".into(),
        action: "noop".into(),
        data,
        priority: Priority::Normal,
        max_attempts: DEFAULT_MAX_ATTEMPTS,
        started_by: Some("ann".into()),
        allow_sensitive: false,
    }
}

fn operator(name: &str) -> Actor {
    Actor {
        name: name.into(),
        role: Role::Operator,
    }
}

fn create(env: &mut Env) -> i64 {
    create_tasks(&mut *env.store, &request(json!({"n": 1})), 1).unwrap()[0]
}

#[test]
fn create_checks_everything_before_storing_anything() {
    let mut env = Env::new();
    env.worker("off", crate::ops::testing::PLAIN_MANIFEST, false, true);
    let big = json!({ "x": "y".repeat(MAX_DATA_BYTES) });
    let cases: Vec<(TaskRequest, usize, &str, &str)> = vec![
        (request(json!({})), 0, "count", "invalid_count"),
        (
            TaskRequest {
                worker: "ghost".into(),
                ..request(json!({}))
            },
            1,
            "worker",
            "unknown_worker",
        ),
        (
            TaskRequest {
                worker: "off".into(),
                action: "go".into(),
                ..request(json!({}))
            },
            1,
            "worker",
            "worker_inactive",
        ),
        (
            TaskRequest {
                action: "fly".into(),
                ..request(json!({}))
            },
            1,
            "action",
            "unknown_action",
        ),
        (request(json!([1])), 1, "data", "data_not_object"),
        (request(big), 1, "data", "data_too_large"),
        (
            request(json!({"db": {"password": "x"}})),
            1,
            "data",
            "sensitive_data",
        ),
        (
            TaskRequest {
                max_attempts: 0,
                ..request(json!({}))
            },
            1,
            "max_attempts",
            "invalid_max_attempts",
        ),
    ];
    for (req, count, field, code) in cases {
        let p = problem(create_tasks(&mut *env.store, &req, count));
        assert_eq!(
            (p.kind, p.field.as_deref(), p.code),
            (ProblemKind::Invalid, Some(field), code),
            "{req:?}"
        );
        assert!(!p.message.contains("stask "), "{}", p.message);
    }
    assert!(env
        .store
        .list_tasks(&Default::default())
        .unwrap()
        .is_empty());
}

#[test]
fn refusals_keep_command_line_advice_in_their_hint() {
    let mut env = Env::new();
    env.worker("off", crate::ops::testing::PLAIN_MANIFEST, false, true);
    let p = problem(create_tasks(
        &mut *env.store,
        &request(json!({"password": "x"})),
        1,
    ));
    assert!(p.message.contains("'password'"), "{}", p.message);
    assert!(!p.message.contains("--allow-sensitive"), "{}", p.message);
    let hint = p.hint.unwrap();
    assert!(
        hint.contains("--allow-sensitive") && hint.contains("stask workers settings w"),
        "{hint}"
    );
    let off = TaskRequest {
        worker: "off".into(),
        action: "go".into(),
        ..request(json!({}))
    };
    let p = problem(create_tasks(&mut *env.store, &off, 1));
    assert_eq!(p.message, "worker 'off' is inactive; activate it first");
    assert_eq!(
        p.hint.as_deref(),
        Some("activate it with `stask workers activate off`")
    );
    let p = problem(find(&*env.store, 42));
    assert_eq!(
        (p.code, p.message.as_str()),
        ("task_not_found", "no task 42")
    );
    assert_eq!(p.hint.as_deref(), Some("see `stask tasks list`"));
}

#[test]
fn created_tasks_are_pending_with_their_creation_line_and_wake_the_services() {
    let mut env = Env::new();
    let wake = env.listen();
    let ids = create_tasks(
        &mut *env.store,
        &request(json!({"token": "t"})).clone_with_sensitive(),
        3,
    )
    .unwrap();
    assert_eq!(ids.len(), 3);
    assert!(woken(&*wake));
    let t = find(&*env.store, ids[0]).unwrap();
    assert_eq!(
        (t.status, t.started_by.as_deref(), t.max_attempts),
        (Status::Pending, Some("ann"), 3)
    );
    let lines = env.store.log_lines(ids[0], 0, 10).unwrap();
    assert_eq!(lines.len(), 1);
    assert_eq!(
        lines[0].parse().unwrap().message,
        "Task created (priority normal, by ann)"
    );
}

impl TaskRequest {
    fn clone_with_sensitive(&self) -> TaskRequest {
        TaskRequest {
            allow_sensitive: true,
            ..self.clone()
        }
    }
}

#[test]
fn operators_change_only_their_own_tasks_and_admins_any() {
    let mut env = Env::new();
    let id = create(&mut env);
    let p = problem(cancel(&mut *env.store, &operator("bob"), id));
    assert_eq!((p.kind, p.code), (ProblemKind::Forbidden, "not_your_task"));
    assert_eq!(find(&*env.store, id).unwrap().status, Status::Pending);

    let (done, t) = cancel(&mut *env.store, &operator("ann"), id).unwrap();
    assert_eq!((done, t.status), (Cancelled::Now, Status::Cancelled));
    let p = problem(cancel(&mut *env.store, &operator("ann"), id));
    assert_eq!(
        (p.kind, p.code),
        (ProblemKind::Conflict, "already_finished")
    );

    let p = problem(retry(&mut *env.store, &operator("bob"), id));
    assert_eq!(p.code, "not_your_task");
    let r = retry(&mut *env.store, &Actor::local(), id).unwrap();
    assert_eq!((r.was, r.task.status), (Status::Cancelled, Status::Pending));
    let p = problem(retry(&mut *env.store, &Actor::local(), id));
    assert_eq!(p.code, "not_retryable");
    let last = env
        .store
        .last_log_line(id)
        .unwrap()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        (last.status.as_str(), last.message.as_str()),
        (
            "pending",
            "Queued for retry (was cancelled; 0 attempts so far)"
        )
    );
}

#[test]
fn run_now_needs_a_pending_task_of_an_active_worker() {
    let mut env = Env::new();
    let id = create(&mut env);
    let r = run_now(&mut *env.store, id).unwrap();
    assert_eq!(r.task.status, Status::Pending);
    assert!(r.task.run_after <= now_ms());
    assert!(!r.made_due, "a new task was due already");

    env.store.set_worker_active("w", false).unwrap();
    let p = problem(run_now(&mut *env.store, id));
    assert_eq!((p.kind, p.code), (ProblemKind::Conflict, "worker_inactive"));
    assert!(p.hint.unwrap().contains("stask workers activate w"));

    cancel(&mut *env.store, &Actor::local(), id).unwrap();
    assert_eq!(problem(run_now(&mut *env.store, id)).code, "not_pending");
}

#[test]
fn only_finished_tasks_are_deleted() {
    let mut env = Env::new();
    let id = create(&mut env);
    assert_eq!(problem(delete(&mut *env.store, id)).code, "not_finished");
    cancel(&mut *env.store, &Actor::local(), id).unwrap();
    delete(&mut *env.store, id).unwrap();
    assert_eq!(problem(find(&*env.store, id)).code, "task_not_found");
}

#[test]
fn bulk_actions_answer_per_id_and_refuse_bad_requests() {
    let mut env = Env::new();
    let mine = create(&mut env);
    let theirs = create_tasks(
        &mut *env.store,
        &TaskRequest {
            started_by: Some("bob".into()),
            ..request(json!({}))
        },
        1,
    )
    .unwrap()[0];

    assert_eq!(
        BulkAction::parse(" nuke ").unwrap_err().code,
        "invalid_action"
    );
    assert_eq!(BulkAction::parse(" retry ").unwrap(), BulkAction::Retry);
    assert_eq!(bulk_ids(&[]).unwrap_err().field.as_deref(), Some("ids"));
    assert!(bulk_ids(&vec![1; MAX_BULK + 1]).is_err());
    assert_eq!(bulk_ids(&[3, 1, 3, 2, 1]).unwrap(), [3, 1, 2]);
    // No task has an id below 1: such an id is refused, naming its place.
    assert_eq!(
        bulk_ids(&[3, 0]).unwrap_err().field.as_deref(),
        Some("ids[1]")
    );

    let ann = operator("ann");
    let p = problem(bulk(&mut *env.store, &ann, BulkAction::Delete, &[mine]));
    assert_eq!(p.kind, ProblemKind::Forbidden);

    let results = bulk(
        &mut *env.store,
        &ann,
        BulkAction::Cancel,
        &[mine, 999, theirs, mine],
    )
    .unwrap();
    let shown: Vec<(i64, Result<&str, &str>)> = results
        .iter()
        .map(|(id, r)| {
            let r = match r {
                Ok(Done::Cancelled(c)) => Ok(c.as_str()),
                Ok(other) => panic!("{other:?}"),
                Err(p) => Err(p.code),
            };
            (*id, r)
        })
        .collect();
    assert_eq!(
        shown,
        [
            (mine, Ok("cancelled")),
            (999, Err("task_not_found")),
            (theirs, Err("not_your_task")),
        ]
    );
    let retried = bulk(&mut *env.store, &ann, BulkAction::Retry, &[mine]).unwrap();
    assert!(matches!(
        retried[0].1,
        Ok(Done::Retried {
            was: Status::Cancelled,
            ..
        })
    ));
}

#[test]
fn process_now_makes_waiting_tasks_due_and_counts_the_claimable() {
    let mut env = Env::new();
    let later = now_ms() + 3_600_000;
    let line = LogLine::new("pending", 0, 0, 0, "", "Task created");
    env.store
        .insert_tasks(
            &NewTask {
                limit: None,
                parent: None,
                worker: "w".into(),
                action: "noop".into(),
                data: "{}".into(),
                priority: Priority::Low,
                max_attempts: 1,
                started_by: None,
                run_after: later,
                created_at: now_ms(),
            },
            2,
            &line,
        )
        .unwrap();
    assert_eq!(env.store.count_claimable(now_ms()).unwrap(), 0);
    let wake = env.listen();
    let one_slot = Capacity {
        concurrency: 1,
        ..Capacity::default()
    };
    let due = process_now(&mut *env.store, &one_slot).unwrap();
    assert_eq!((due.made_due, due.claimable), (2, 2));
    // One slot: one starts, the other waits for it.
    assert_eq!((due.due.starting, due.due.slots_busy), (1, 1), "{due:?}");
    assert!(woken(&*wake));
    let again = process_now(&mut *env.store, &one_slot).unwrap();
    assert_eq!((again.made_due, again.claimable), (0, 2));
    env.store.set_worker_active("w", false).unwrap();
    let inactive = process_now(&mut *env.store, &one_slot).unwrap();
    assert_eq!(
        (inactive.due.starting, inactive.due.worker_inactive),
        (0, 2),
        "{inactive:?}"
    );
}

#[test]
fn process_now_counts_neither_waiting_dependants_nor_parked_tasks_as_starting() {
    let mut env = Env::new();
    let now = now_ms();
    let line = LogLine::new("pending", 0, 0, 0, "", "Task created");
    let plain = NewTask {
        limit: None,
        parent: None,
        worker: "w".into(),
        action: "noop".into(),
        data: "{}".into(),
        priority: Priority::Normal,
        max_attempts: 1,
        started_by: None,
        run_after: now,
        created_at: now,
    };
    // Two tasks of one key under a concurrency-1 rule: a claim runs the first and
    // parks the second.
    env.store
        .set_limit_rules(
            "w",
            &[stask_storage::LimitRule {
                rule: "per-shop".into(),
                concurrency: Some(1),
                rate: None,
            }],
        )
        .unwrap();
    let keyed = NewTask {
        limit: Some(stask_storage::TaskLimit {
            rule: "per-shop".into(),
            key: "shop:1".into(),
        }),
        ..plain.clone()
    };
    let k = env.store.insert_tasks(&keyed, 2, &line).unwrap();
    let start = |_: &stask_storage::TaskRecord| LogLine::new("running", 0, 0, 0, "", "Started");
    let (_, claimed) = env
        .store
        .claim(&stask_storage::Claim {
            finishes: &[],
            owner: "o",
            now,
            limit: 10,
            excluded_workers: &[],
            start_line: &start,
        })
        .unwrap();
    assert_eq!(claimed.len(), 1, "the second task of the key is parked");
    assert_eq!(claimed[0].task.id, k[0]);
    // A due task, and one that runs after it.
    let a = env.store.insert_tasks(&plain, 1, &line).unwrap()[0];
    let after = stask_storage::After {
        ids: vec![a],
        any: false,
    };
    assert!(matches!(
        env.store.insert_task_after(&plain, &after, &line).unwrap(),
        stask_storage::AfterInsert::Created(_)
    ));
    let four_slots = Capacity {
        concurrency: 4,
        ..Capacity::default()
    };
    let due = process_now(&mut *env.store, &four_slots).unwrap();
    // Free slots for all three, yet only the due task starts.
    assert_eq!(due.claimable, 1, "{due:?}");
    assert_eq!(due.due.starting, 1, "{due:?}");
    assert_eq!((due.due.dependencies, due.due.limit), (1, 1), "{due:?}");
    assert_eq!(due.due.slots_busy, 0, "{due:?}");
}

#[test]
fn clean_requests_have_one_default_and_name_their_statuses() {
    let r = CleanRequest::parse(None, false).unwrap();
    assert_eq!(
        r.older_than,
        crate::task_log::parse_age(DEFAULT_OLDER_THAN).unwrap()
    );
    assert_eq!(r.statuses(), [Status::Completed]);
    let r = CleanRequest::parse(Some("12h"), true).unwrap();
    assert_eq!(r.older_than.as_secs(), 12 * 3600);
    assert_eq!(r.statuses().len(), 3);
    let p = CleanRequest::parse(Some("soon"), false).unwrap_err();
    assert_eq!(
        (p.field.as_deref(), p.code),
        (Some("older_than"), "invalid_age")
    );
}

#[test]
fn clean_removes_only_the_statuses_asked_for() {
    let mut env = Env::new();
    let id = create(&mut env);
    cancel(&mut *env.store, &Actor::local(), id).unwrap();
    let after = now_ms() + 1_000;
    let completed_only = CleanRequest::parse(None, false).unwrap().statuses();
    let report = clean::clean_before(&mut *env.store, completed_only, after).unwrap();
    assert_eq!(report.deleted_tasks, 0);
    let all = CleanRequest::parse(None, true).unwrap().statuses();
    let report = clean::clean_before(&mut *env.store, all, after).unwrap();
    assert_eq!(report.deleted_tasks, 1);
    assert_eq!(problem(find(&*env.store, id)).code, "task_not_found");
    // The request's age is counted back from now: a task that just finished stays.
    let id = create(&mut env);
    cancel(&mut *env.store, &Actor::local(), id).unwrap();
    let a_minute = CleanRequest::parse(Some("1m"), true).unwrap();
    assert_eq!(clean(&mut *env.store, &a_minute).unwrap().deleted_tasks, 0);
}

#[test]
fn huge_clean_up_ages_are_refused_and_never_reach_into_the_future() {
    // 28847129751 weeks once wrapped around to a few minutes.
    let p = CleanRequest::parse(Some("28847129751w"), true).unwrap_err();
    assert_eq!(
        (p.field.as_deref(), p.code),
        (Some("older_than"), "invalid_age")
    );
    assert!(p.message.contains("maximum is 100 years"), "{}", p.message);
    // The cutoff saturates at the earliest time instead of wrapping.
    let now = now_ms();
    assert_eq!(clean::cutoff(now, Duration::from_secs(60)), now - 60_000);
    assert_eq!(clean::cutoff(now, Duration::MAX), now - i64::MAX);
    assert!(clean::cutoff(now, Duration::MAX) < 0);
    assert_eq!(
        clean::cutoff(i64::MIN + 5, Duration::from_secs(1)),
        i64::MIN
    );
    // Even an age no parser would give removes nothing that just finished.
    let mut env = Env::new();
    let id = create(&mut env);
    cancel(&mut *env.store, &Actor::local(), id).unwrap();
    for older_than in [
        Duration::MAX,
        Duration::from_secs(28_847_129_751 * 7 * 86_400),
    ] {
        let req = CleanRequest {
            older_than,
            include_failed: true,
        };
        assert_eq!(clean(&mut *env.store, &req).unwrap().deleted_tasks, 0);
    }
    assert!(find(&*env.store, id).is_ok());
}

#[test]
fn priorities_and_statuses_are_read_with_the_field_named() {
    assert_eq!(parse_priority("high", "priority").unwrap(), Priority::High);
    let p = parse_priority("urgent", "priority").unwrap_err();
    assert_eq!(
        (p.field.as_deref(), p.code),
        (Some("priority"), "invalid_priority")
    );
    assert_eq!(parse_status("failed", "status").unwrap(), Status::Failed);
    assert_eq!(
        parse_status("done", "status").unwrap_err().code,
        "invalid_status"
    );
}

#[test]
fn result_files_are_found_by_name_or_position() {
    let mut env = Env::new();
    let id = create(&mut env);
    let p = problem(result_file(&*env.store, id, "a.txt"));
    assert_eq!(
        (p.code, p.message.as_str()),
        (
            "file_not_found",
            "task 1 has no result file 'a.txt' (it has none)"
        )
    );
    for name in ["b.txt", "parts/1.csv"] {
        env.store
            .put_result_file(id, name, &mut &b"hello"[..], 1 << 20)
            .unwrap();
    }
    let names = |wanted: &str| result_file(&*env.store, id, wanted).map(|f| (f.name, f.size));
    assert_eq!(names("parts/1.csv").unwrap(), ("parts/1.csv".to_owned(), 5));
    assert_eq!(names("0").unwrap().0, "b.txt");
    let p = problem(names("2"));
    assert!(
        p.message.ends_with("its files: b.txt, parts/1.csv"),
        "{}",
        p.message
    );
    assert_eq!(
        problem(result_file(&*env.store, 99, "x")).code,
        "task_not_found"
    );
}

/// The JSON view of a task, to compare an answer with the task as stored field by
/// field.
fn shown(t: &stask_storage::TaskRecord) -> serde_json::Value {
    serde_json::to_value(crate::views::TaskView::summary(t)).unwrap()
}

/// Claims task `id` for owner `o` with a start line.
fn claim(env: &mut Env, id: i64, o: &str) {
    let start = |_: &stask_storage::TaskRecord| LogLine::new("running", 0, 0, 0, "", "Started");
    env.store
        .claim_task(id, o, now_ms(), &start)
        .unwrap()
        .expect("claimed");
}

#[test]
fn answers_are_built_from_what_was_committed_and_match_the_stored_task() {
    let mut env = Env::new();
    // Create: the first task as stored, without reading it back.
    let req = TaskRequest {
        priority: Priority::High,
        max_attempts: 7,
        ..request(json!({"n": 1, "password": "x"})).clone_with_sensitive()
    };
    let created = super::create(&mut *env.store, &req, 2).unwrap();
    assert_eq!(created.ids.len(), 2);
    let id = created.ids[0];
    assert_eq!(created.first.id, id);
    assert_eq!(
        shown(&created.first),
        shown(&find(&*env.store, id).unwrap())
    );

    // Cancelling a pending task.
    let (done, t) = cancel(&mut *env.store, &Actor::local(), id).unwrap();
    assert_eq!(done, Cancelled::Now);
    assert_eq!(shown(&t), shown(&find(&*env.store, id).unwrap()));

    // Retrying it: the task as the retry's transaction read it, with its changes.
    let r = retry(&mut *env.store, &Actor::local(), id).unwrap();
    assert_eq!(r.was, Status::Cancelled);
    assert_eq!(shown(&r.task), shown(&find(&*env.store, id).unwrap()));

    // Run now.
    let t = run_now(&mut *env.store, id).unwrap().task;
    assert_eq!(shown(&t), shown(&find(&*env.store, id).unwrap()));

    // Cancelling a running task: requested.
    claim(&mut env, id, "o1");
    let (done, t) = cancel(&mut *env.store, &Actor::local(), id).unwrap();
    assert_eq!(done, Cancelled::Requested);
    assert!(t.cancel_requested);
    assert_eq!(shown(&t), shown(&find(&*env.store, id).unwrap()));

    // A failed task retried keeps its attempts, progress and error in the answer.
    let other = created.ids[1];
    claim(&mut env, other, "o2");
    let applied = env
        .store
        .finish_tasks(&[stask_storage::Finish {
            id: other,
            owner: "o2".into(),
            outcome: stask_storage::Outcome::Failed {
                error: "boom".into(),
                retry_at: None,
            },
            progress: 40,
            processed: 4,
            total: 10,
            message: "boom".into(),
            at: now_ms(),
            lines: vec![LogLine::new("failed", 40, 4, 10, "", "boom")],
        }])
        .unwrap();
    assert_eq!(applied, [true]);
    let r = retry(&mut *env.store, &Actor::local(), other).unwrap();
    assert_eq!((r.was, r.task.attempts), (Status::Failed, 1));
    assert_eq!(shown(&r.task), shown(&find(&*env.store, other).unwrap()));
}

#[test]
fn details_hold_the_last_history_lines_and_count_them_all() {
    use crate::views::{TaskView, HISTORY_LINES};
    let mut env = Env::new();
    let id = create(&mut env);
    claim(&mut env, id, "o");
    // Creation and start lines, then enough progress lines to pass the cap.
    let extra = HISTORY_LINES + 5;
    let lines: Vec<(i64, LogLine)> = (1..=extra)
        .map(|i| {
            (
                id,
                LogLine::new("running", 0, i as u64, 0, "", &format!("line {i}")),
            )
        })
        .collect();
    for chunk in lines.chunks(4_000) {
        env.store.record_progress("o", &[], chunk).unwrap();
    }
    let t = find(&*env.store, id).unwrap();
    let view = TaskView::details(&*env.store, &t).unwrap();
    assert_eq!(view.log_lines, Some(extra as u64 + 2));
    let history = view.history.unwrap();
    assert_eq!(history.len(), HISTORY_LINES);
    assert_eq!(history[0].message, "line 6");
    assert_eq!(history.last().unwrap().message, format!("line {extra}"));

    // A short log is whole.
    let short = create(&mut env);
    let t = find(&*env.store, short).unwrap();
    let view = TaskView::details(&*env.store, &t).unwrap();
    assert_eq!(view.log_lines, Some(1));
    assert_eq!(view.history.unwrap().len(), 1);
}

#[test]
fn a_pending_task_says_why_it_waits() {
    let mut env = Env::new();
    let cap = |n: usize, limit: Option<usize>| Capacity {
        concurrency: n,
        worker_limits: limit
            .map(|l| [("w".to_owned(), l)].into())
            .unwrap_or_default(),
    };
    let why = |env: &Env, id: i64, c: &Capacity| {
        let t = find(&*env.store, id).unwrap();
        WaitContext::load(&*env.store, c)
            .unwrap()
            .waiting(&t, now_ms())
    };
    let a = create(&mut env);
    let b = create(&mut env);
    assert_eq!(why(&env, a, &cap(2, None)), Some(Waiting::Queued));

    // One running of one slot: the other waits for the slot, or for the worker's limit.
    claim(&mut env, a, "o1");
    assert_eq!(
        why(&env, a, &cap(2, None)),
        None,
        "running tasks do not wait"
    );
    assert_eq!(
        why(&env, b, &cap(1, None)),
        Some(Waiting::SlotsBusy {
            running: 1,
            capacity: 1
        })
    );
    assert_eq!(
        why(&env, b, &cap(4, Some(1))),
        Some(Waiting::WorkerLimit {
            limit: 1,
            running: 1
        })
    );
    assert_eq!(why(&env, b, &cap(4, Some(2))), Some(Waiting::Queued));

    // A retry's backoff, and a task created for later.
    let later = now_ms() + 600_000;
    let applied = env
        .store
        .finish_tasks(&[stask_storage::Finish {
            id: a,
            owner: "o1".into(),
            outcome: stask_storage::Outcome::Failed {
                error: "boom".into(),
                retry_at: Some(later),
            },
            progress: 0,
            processed: 0,
            total: 0,
            message: "boom".into(),
            at: now_ms(),
            lines: vec![LogLine::new("pending", 0, 0, 0, "", "Retry later")],
        }])
        .unwrap();
    assert_eq!(applied, [true]);
    assert_eq!(
        why(&env, a, &cap(4, None)),
        Some(Waiting::RetryAt { at: later })
    );
    let scheduled = env
        .store
        .insert_tasks(
            &NewTask {
                limit: None,
                parent: None,
                worker: "w".into(),
                action: "noop".into(),
                data: "{}".into(),
                priority: Priority::Low,
                max_attempts: 1,
                started_by: None,
                run_after: later,
                created_at: now_ms(),
            },
            1,
            &LogLine::new("pending", 0, 0, 0, "", "Task created"),
        )
        .unwrap()[0];
    assert_eq!(
        why(&env, scheduled, &cap(4, None)),
        Some(Waiting::ScheduledFor { at: later })
    );

    // An inactive worker, a held one, and one no longer registered.
    env.store.set_worker_active("w", false).unwrap();
    assert_eq!(
        why(&env, b, &cap(4, None)),
        Some(Waiting::WorkerInactive { reason: None })
    );
    env.store.delete_worker("w").unwrap();
    assert_eq!(why(&env, b, &cap(4, None)), Some(Waiting::UnknownWorker));
}

#[test]
fn on_a_shared_store_a_task_no_live_host_can_run_says_so() {
    let mut env = Env::new();
    let id = create(&mut env);
    let now = now_ms();
    // A live host that holds some other library.
    env.store
        .register_host(&stask_storage::HostRecord {
            id: "m/1/1".into(),
            name: "m".into(),
            version: "0".into(),
            capacity: 4,
            libraries: vec!["0".repeat(64)],
            started_at: now,
            renewed_at: None,
        })
        .unwrap();
    env.store.renew_lease("m/1/1", now).unwrap();
    let t = find(&*env.store, id).unwrap();
    let ctx = WaitContext::load(&*env.store, &Capacity::default()).unwrap();
    assert_eq!(ctx.waiting(&t, now_ms()), Some(Waiting::NoHost));
    assert_eq!(ctx.due_summary().no_host, 1);
}
