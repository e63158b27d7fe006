//! The task queue: creation, claims, outcomes, cancel and retry, clean-up.

use std::collections::HashSet;

use super::{claim, completed, finish, insert, line, register, task, texts, Harness};
use crate::{CancelResult, Claim, Outcome, Priority, ProgressUpdate, RetryResult, Status};

pub fn inserted_tasks_get_distinct_ids_and_their_creation_line(h: &dyn Harness) {
    let mut s = h.open();
    register(&mut *s, &["w"], true);
    let mut t = task("w", 1_000);
    t.data = r#"{"a":1}"#.into();
    t.started_by = Some("ann".into());
    let ids = s
        .insert_tasks(
            &t,
            3,
            &line("pending", "Task created (priority normal, by ann)"),
        )
        .unwrap();
    assert_eq!(ids.len(), 3);
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 3, "{ids:?}");
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "creation order: {ids:?}"
    );
    for id in &ids {
        let got = s.get_task(*id).unwrap().unwrap();
        assert_eq!(got.status, Status::Pending);
        assert_eq!((got.worker.as_str(), got.action.as_str()), ("w", "run"));
        assert_eq!(got.data, r#"{"a":1}"#);
        assert_eq!(got.started_by.as_deref(), Some("ann"));
        assert_eq!((got.attempts, got.max_attempts), (0, 3));
        assert_eq!(
            texts(&*s, *id),
            ["pending|0|0|0|-|Task created (priority normal, by ann)"]
        );
    }
    assert!(s.get_task(ids[2] + 1000).unwrap().is_none());
}

pub fn ids_are_never_reused_after_the_newest_tasks_are_deleted(h: &dyn Harness) {
    let mut s = h.open();
    register(&mut *s, &["w"], true);
    let first = insert(&mut *s, &task("w", 0), 2);
    let c = claim(&mut *s, "me", 10, 2);
    let finishes: Vec<_> = c
        .iter()
        .map(|c| finish(c.task.id, "me", completed(), "completed", 20))
        .collect();
    assert_eq!(s.finish_tasks(&finishes).unwrap(), [true, true]);
    assert_eq!(s.delete_finished_tasks(&first).unwrap().len(), 2);
    let again = insert(&mut *s, &task("w", 30), 1);
    assert!(
        again[0] > first[1],
        "new id {} after deleting {first:?}",
        again[0]
    );
    // Also through a fresh connection.
    let mut other = h.open();
    let later = insert(&mut *other, &task("w", 40), 1);
    assert!(later[0] > again[0]);
}

pub fn claims_follow_priority_then_creation_order(h: &dyn Harness) {
    let mut s = h.open();
    register(&mut *s, &["w"], true);
    let mut low = task("w", 0);
    low.priority = Priority::Low;
    let mut high = task("w", 0);
    high.priority = Priority::High;
    let l = insert(&mut *s, &low, 1);
    let n = insert(&mut *s, &task("w", 0), 2);
    let hi = insert(&mut *s, &high, 1);
    let got: Vec<i64> = claim(&mut *s, "me", 10, 10)
        .iter()
        .map(|c| c.task.id)
        .collect();
    assert_eq!(got, [hi[0], n[0], n[1], l[0]]);
}

pub fn only_due_tasks_of_active_and_not_excluded_workers_are_claimed(h: &dyn Harness) {
    let mut s = h.open();
    register(&mut *s, &["a", "b"], true);
    register(&mut *s, &["off"], false);
    let later = insert(&mut *s, &task("a", 5_000), 1);
    insert(&mut *s, &task("off", 0), 1);
    let b = insert(&mut *s, &task("b", 0), 1);
    let a = insert(&mut *s, &task("a", 0), 1);
    assert_eq!(s.count_claimable(100).unwrap(), 2);
    assert_eq!(s.next_run_after().unwrap(), Some(0));
    let (_, got) = s
        .claim(&Claim {
            finishes: &[],
            owner: "me",
            now: 100,
            limit: 10,
            excluded_workers: &["b"],
            start_line: &|_| line("running", "started"),
        })
        .unwrap();
    assert_eq!(got.iter().map(|c| c.task.id).collect::<Vec<_>>(), a);
    assert_eq!(got[0].worker.manifest, super::MANIFEST);
    assert_eq!(got[0].worker.library_path, "/x.so");
    let got: Vec<i64> = claim(&mut *s, "me", 100, 10)
        .iter()
        .map(|c| c.task.id)
        .collect();
    assert_eq!(got, b, "not due yet, or of an inactive worker");
    assert_eq!(s.next_run_after().unwrap(), Some(5_000));
    assert_eq!(claim(&mut *s, "me", 5_000, 10)[0].task.id, later[0]);
}

pub fn concurrent_claims_never_take_a_task_twice(h: &dyn Harness) {
    let mut s = h.open();
    register(&mut *s, &["w"], true);
    let ids = insert(&mut *s, &task("w", 0), 400);
    let taken: Vec<Vec<i64>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|i| {
                scope.spawn(move || {
                    let mut s = h.open();
                    let owner = format!("owner-{i}");
                    let mut mine = Vec::new();
                    loop {
                        let got = claim(&mut *s, &owner, 10, 7);
                        if got.is_empty() {
                            return mine;
                        }
                        mine.extend(got.iter().map(|c| c.task.id));
                    }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let all: Vec<i64> = taken.iter().flatten().copied().collect();
    let distinct: HashSet<i64> = all.iter().copied().collect();
    assert_eq!(all.len(), distinct.len(), "a task was claimed twice");
    assert_eq!(distinct, ids.into_iter().collect::<HashSet<_>>());
}

pub fn a_claim_stores_the_start_line_and_a_finish_its_last_lines(h: &dyn Harness) {
    let mut s = h.open();
    register(&mut *s, &["w"], true);
    let ids = insert(&mut *s, &task("w", 0), 2);
    let c = claim(&mut *s, "me", 10, 1);
    let t = &c[0].task;
    assert_eq!(t.id, ids[0]);
    assert_eq!(
        (t.status, t.attempts, t.owner.as_deref()),
        (Status::Running, 1, Some("me"))
    );
    assert_eq!(
        texts(&*s, t.id),
        [
            "pending|0|0|0|-|created",
            &format!("running|0|0|0|-|started {}", t.id)
        ]
    );
    let mut f = finish(t.id, "me", completed(), "completed", 20);
    f.lines.insert(0, line("running", "[warn] a note"));
    // Finish one, claim the other, in one call.
    let (applied, next) = s
        .claim(&Claim {
            finishes: &[f],
            owner: "me",
            now: 30,
            limit: 5,
            excluded_workers: &[],
            start_line: &|t| line("running", &format!("started {}", t.id)),
        })
        .unwrap();
    assert_eq!(applied, [true]);
    assert_eq!(next.iter().map(|c| c.task.id).collect::<Vec<_>>(), [ids[1]]);
    let done = s.get_task(ids[0]).unwrap().unwrap();
    assert_eq!(done.status, Status::Completed);
    assert_eq!(done.result.as_deref(), Some("null"));
    assert_eq!(done.finished_at, Some(20));
    let log = texts(&*s, ids[0]);
    assert_eq!(
        log[2..],
        [
            "running|0|0|0|-|[warn] a note",
            "completed|0|0|0|-|ended completed"
        ]
    );
    let last = s.last_log_line(ids[0]).unwrap().unwrap();
    assert_eq!(last.text, "completed|0|0|0|-|ended completed");
    assert_eq!(last.parse().unwrap().status, done.status.as_str());
}

pub fn finishes_apply_only_for_the_owner_of_the_claim(h: &dyn Harness) {
    let mut s = h.open();
    register(&mut *s, &["w"], true);
    insert(&mut *s, &task("w", 0), 1);
    let id = claim(&mut *s, "me", 10, 1)[0].task.id;
    let late = finish(id, "someone else", completed(), "completed", 20);
    assert_eq!(s.finish_tasks(&[late]).unwrap(), [false]);
    assert_eq!(s.get_task(id).unwrap().unwrap().status, Status::Running);
    assert_eq!(texts(&*s, id).len(), 2, "a refused finish adds no line");
    let ok = finish(id, "me", completed(), "completed", 20);
    assert_eq!(s.finish_tasks(std::slice::from_ref(&ok)).unwrap(), [true]);
    // The same finish twice: the second changes nothing.
    assert_eq!(s.finish_tasks(&[ok]).unwrap(), [false]);
    assert_eq!(texts(&*s, id).len(), 3);
}

pub fn retries_and_requeues_go_back_to_pending(h: &dyn Harness) {
    let mut s = h.open();
    register(&mut *s, &["w"], true);
    insert(&mut *s, &task("w", 0), 2);
    let c = claim(&mut *s, "me", 10, 2);
    let (a, b) = (c[0].task.id, c[1].task.id);
    let retry = Outcome::Failed {
        error: "boom".into(),
        retry_at: Some(5_000),
    };
    s.finish_tasks(&[
        finish(a, "me", retry, "pending", 20),
        finish(b, "me", Outcome::Requeued, "pending", 20),
    ])
    .unwrap();
    let ta = s.get_task(a).unwrap().unwrap();
    assert_eq!(
        (ta.status, ta.attempts, ta.run_after),
        (Status::Pending, 1, 5_000)
    );
    assert_eq!(ta.error.as_deref(), Some("boom"));
    assert_eq!(ta.owner, None);
    let tb = s.get_task(b).unwrap().unwrap();
    assert_eq!(
        (tb.status, tb.attempts),
        (Status::Pending, 0),
        "a requeue does not count"
    );
    assert_eq!(
        claim(&mut *s, "me", 100, 5)
            .iter()
            .map(|c| c.task.id)
            .collect::<Vec<_>>(),
        [b]
    );
    let again = claim(&mut *s, "me", 5_000, 5);
    assert_eq!((again[0].task.id, again[0].task.attempts), (a, 2));
    let failed = Outcome::Failed {
        error: "boom".into(),
        retry_at: None,
    };
    s.finish_tasks(&[finish(a, "me", failed, "failed", 6_000)])
        .unwrap();
    let ta = s.get_task(a).unwrap().unwrap();
    assert_eq!((ta.status, ta.finished_at), (Status::Failed, Some(6_000)));
}

pub fn progress_and_lines_are_recorded_only_for_the_owner(h: &dyn Harness) {
    let mut s = h.open();
    register(&mut *s, &["w"], true);
    insert(&mut *s, &task("w", 0), 1);
    let id = claim(&mut *s, "me", 10, 1)[0].task.id;
    let update = ProgressUpdate {
        id,
        progress: 40,
        processed: 4,
        total: 10,
        message: "four".into(),
    };
    s.record_progress(
        "me",
        std::slice::from_ref(&update),
        &[(id, line("running", "one")), (id, line("running", "two"))],
    )
    .unwrap();
    let t = s.get_task(id).unwrap().unwrap();
    assert_eq!(
        (t.progress, t.processed, t.total, t.message.as_str()),
        (40, 4, 10, "four")
    );
    assert_eq!(texts(&*s, id).len(), 4);
    s.record_progress(
        "other",
        &[ProgressUpdate {
            progress: 90,
            ..update
        }],
        &[(id, line("running", "not mine"))],
    )
    .unwrap();
    assert_eq!(s.get_task(id).unwrap().unwrap().progress, 40);
    assert_eq!(
        texts(&*s, id).len(),
        4,
        "lines of another owner are dropped"
    );
    // Nothing to record is fine.
    s.record_progress("me", &[], &[]).unwrap();
}

pub fn claim_task_takes_one_pending_task_whatever_its_due_time(h: &dyn Harness) {
    let mut s = h.open();
    register(&mut *s, &["w"], true);
    let id = insert(&mut *s, &task("w", 1_000_000), 1)[0];
    let start = |t: &crate::TaskRecord| line("running", &format!("started {}", t.id));
    let got = s.claim_task(id, "me", 10, &start).unwrap().unwrap();
    assert_eq!((got.task.id, got.task.status), (id, Status::Running));
    assert!(
        s.claim_task(id, "me", 10, &start).unwrap().is_none(),
        "running already"
    );
    assert!(s.claim_task(id + 100, "me", 10, &start).unwrap().is_none());
    assert_eq!(texts(&*s, id).len(), 2);
}

pub fn cancel_ends_pending_tasks_and_flags_running_ones(h: &dyn Harness) {
    let mut s = h.open();
    register(&mut *s, &["w"], true);
    let ids = insert(&mut *s, &task("w", 0), 2);
    let running = claim(&mut *s, "me", 10, 1)[0].task.id;
    let pending = ids[1];
    let l = line("cancelled", "Cancelled before it started");
    assert_eq!(
        s.request_cancel(pending, 20, &l).unwrap(),
        Some(CancelResult::CancelledPending)
    );
    let t = s.get_task(pending).unwrap().unwrap();
    assert_eq!((t.status, t.finished_at), (Status::Cancelled, Some(20)));
    assert_eq!(
        texts(&*s, pending).last().unwrap(),
        "cancelled|0|0|0|-|Cancelled before it started"
    );
    assert_eq!(
        s.request_cancel(running, 20, &l).unwrap(),
        Some(CancelResult::Requested)
    );
    assert_eq!(
        s.get_task(running).unwrap().unwrap().status,
        Status::Running
    );
    assert_eq!(texts(&*s, running).len(), 2, "a request adds no line");
    assert_eq!(s.cancel_requests("me").unwrap(), [running]);
    assert!(s.cancel_requests("other").unwrap().is_empty());
    assert_eq!(
        s.request_cancel(pending, 30, &l).unwrap(),
        Some(CancelResult::AlreadyFinal(Status::Cancelled))
    );
    assert_eq!(s.request_cancel(pending + 100, 30, &l).unwrap(), None);
}

pub fn retry_queues_failed_and_cancelled_tasks_with_their_line(h: &dyn Harness) {
    let mut s = h.open();
    register(&mut *s, &["w"], true);
    let ids = insert(&mut *s, &task("w", 0), 2);
    let id = claim(&mut *s, "me", 10, 1)[0].task.id;
    let failed = Outcome::Failed {
        error: "boom".into(),
        retry_at: None,
    };
    s.finish_tasks(&[finish(id, "me", failed, "failed", 20)])
        .unwrap();
    let text = |t: &crate::TaskRecord| {
        line(
            "pending",
            &format!(
                "Queued for retry (was {}; {} attempts)",
                t.status, t.attempts
            ),
        )
    };
    assert_eq!(
        s.retry_task(id, 30, &text).unwrap(),
        Some(RetryResult::Queued(Status::Failed))
    );
    let t = s.get_task(id).unwrap().unwrap();
    assert_eq!(
        (t.status, t.attempts, t.run_after),
        (Status::Pending, 1, 30)
    );
    assert_eq!(t.message, "Queued for retry (was failed; 1 attempts)");
    assert_eq!(
        texts(&*s, id).last().unwrap(),
        "pending|0|0|0|-|Queued for retry (was failed; 1 attempts)"
    );
    assert_eq!(
        s.retry_task(ids[1], 30, &text).unwrap(),
        Some(RetryResult::NotRetryable(Status::Pending))
    );
    assert_eq!(texts(&*s, ids[1]).len(), 1);
    assert_eq!(s.retry_task(ids[1] + 100, 30, &text).unwrap(), None);
}

pub fn make_due_moves_pending_tasks_forward(h: &dyn Harness) {
    let mut s = h.open();
    register(&mut *s, &["w"], true);
    let a = insert(&mut *s, &task("w", 5_000), 1)[0];
    insert(&mut *s, &task("w", 9_000), 2);
    assert!(s.make_task_due(a, 100).unwrap());
    assert_eq!(s.get_task(a).unwrap().unwrap().run_after, 100);
    assert!(!s.make_task_due(a + 100, 100).unwrap());
    assert_eq!(s.make_all_due(200).unwrap(), 2);
    assert_eq!(s.count_claimable(200).unwrap(), 3);
}

pub fn deleting_takes_logs_and_files_and_leaves_unfinished_tasks(h: &dyn Harness) {
    let mut s = h.open();
    register(&mut *s, &["w"], true);
    let ids = insert(&mut *s, &task("w", 0), 3);
    let c = claim(&mut *s, "me", 10, 2);
    s.put_result_file(c[0].task.id, "a.txt", &mut &b"hello"[..], 100)
        .unwrap();
    let file = s.result_files(c[0].task.id).unwrap()[0].id;
    s.finish_tasks(&[finish(c[0].task.id, "me", completed(), "completed", 20)])
        .unwrap();
    // One finished, one running, one pending: only the finished one goes.
    assert_eq!(s.delete_finished_tasks(&ids).unwrap(), [ids[0]]);
    assert!(s.get_task(ids[0]).unwrap().is_none());
    assert!(texts(&*s, ids[0]).is_empty());
    assert!(s.result_files(ids[0]).unwrap().is_empty());
    assert!(s.result_file_chunk(ids[0], file, 0).unwrap().is_none());
    assert!(s.get_task(ids[1]).unwrap().is_some() && s.get_task(ids[2]).unwrap().is_some());
}

pub fn clean_up_deletes_old_finished_tasks_in_batches(h: &dyn Harness) {
    let mut s = h.open();
    register(&mut *s, &["w"], true);
    insert(&mut *s, &task("w", 0), 7);
    let c = claim(&mut *s, "me", 10, 6);
    let ends: Vec<_> = c
        .iter()
        .enumerate()
        .map(|(i, c)| match i {
            0..=2 => finish(c.task.id, "me", completed(), "completed", 100 + i as i64),
            3 => finish(
                c.task.id,
                "me",
                Outcome::Failed {
                    error: "x".into(),
                    retry_at: None,
                },
                "failed",
                100,
            ),
            4 => finish(c.task.id, "me", completed(), "completed", 10_000),
            _ => finish(c.task.id, "me", Outcome::Requeued, "pending", 100),
        })
        .collect();
    s.finish_tasks(&ends).unwrap();
    let first = s
        .delete_finished_before(&[Status::Completed], 1_000, 2)
        .unwrap();
    assert_eq!(first.len(), 2, "a batch is at most its size");
    let second = s
        .delete_finished_before(&[Status::Completed], 1_000, 2)
        .unwrap();
    assert_eq!(second.len(), 1);
    assert!(s
        .delete_finished_before(&[Status::Completed], 1_000, 2)
        .unwrap()
        .is_empty());
    let mut gone: Vec<i64> = first.iter().chain(&second).copied().collect();
    gone.sort();
    assert_eq!(gone, c[..3].iter().map(|c| c.task.id).collect::<Vec<_>>());
    // The failed one goes only when asked for; the recent and unfinished ones stay.
    assert_eq!(
        s.delete_finished_before(&[Status::Failed, Status::Completed], 1_000, 10)
            .unwrap(),
        [c[3].task.id]
    );
    assert_eq!(s.task_status_counts().unwrap().pending, 2);
    assert_eq!(s.task_status_counts().unwrap().completed, 1);
    s.release_space(1 << 20).unwrap();
}

pub fn space_freed_by_clean_up_is_given_back(h: &dyn Harness) {
    let mut s = h.open();
    register(&mut *s, &["w"], true);
    let mut t = task("w", 0);
    t.data = format!(r#"{{"pad":"{}"}}"#, "x".repeat(2_000));
    let ids = insert(&mut *s, &t, 2_000);
    let c = claim(&mut *s, "me", 10, 2_000);
    let ends: Vec<_> = c
        .iter()
        .map(|c| finish(c.task.id, "me", completed(), "completed", 20))
        .collect();
    s.finish_tasks(&ends).unwrap();
    assert_eq!(
        s.delete_finished_before(&[Status::Completed], 1_000, 5_000)
            .unwrap()
            .len(),
        ids.len()
    );
    let mut released = 0;
    loop {
        let step = s.release_space(1 << 20).unwrap();
        released += step;
        if step < 1 << 20 {
            break;
        }
    }
    h.check_released(released);
    assert_eq!(s.release_space(1 << 20).unwrap(), 0, "nothing left to give");
}

pub fn a_cancel_requested_while_an_attempt_ran_wins_over_a_retry_or_requeue(h: &dyn Harness) {
    let mut s = h.open();
    register(&mut *s, &["w"], true);
    insert(&mut *s, &task("w", 0), 2);
    let c = claim(&mut *s, "me", 10, 2);
    let (a, b) = (c[0].task.id, c[1].task.id);
    let l = line("cancelled", "Cancelled before it started");
    for id in [a, b] {
        assert_eq!(
            s.request_cancel(id, 20, &l).unwrap(),
            Some(CancelResult::Requested)
        );
    }
    let retry = Outcome::Failed {
        error: "boom".into(),
        retry_at: Some(30),
    };
    s.finish_tasks(&[
        finish(a, "me", retry, "pending", 30),
        finish(b, "me", Outcome::Requeued, "pending", 30),
    ])
    .unwrap();
    for id in [a, b] {
        let t = s.get_task(id).unwrap().unwrap();
        assert_eq!(
            t.status,
            Status::Cancelled,
            "task {id} runs again despite the cancel"
        );
        let last = texts(&*s, id).pop().unwrap();
        assert!(last.starts_with("cancelled|"), "{last}");
    }
    assert!(claim(&mut *s, "me", 100, 5).is_empty());
    assert_eq!(s.task_status_counts().unwrap().cancelled, 2);
}

pub fn deleting_the_same_id_twice_counts_it_once(h: &dyn Harness) {
    let mut s = h.open();
    register(&mut *s, &["w"], true);
    let ids = insert(&mut *s, &task("w", 0), 2);
    let c = claim(&mut *s, "me", 10, 1);
    s.finish_tasks(&[finish(c[0].task.id, "me", completed(), "completed", 20)])
        .unwrap();
    let gone = s.delete_finished_tasks(&[ids[0], ids[0]]).unwrap();
    assert_eq!(gone, [ids[0]]);
    let counts = s.task_status_counts().unwrap();
    assert_eq!((counts.completed, counts.pending), (0, 1));
    assert_eq!(
        s.delete_finished_before(&[Status::Completed, Status::Completed], i64::MAX, 10)
            .unwrap(),
        Vec::<i64>::new()
    );
    assert_eq!(s.task_status_counts().unwrap().pending, 1);
}

pub fn concurrent_writers_number_lines_in_order_and_ids_apart(h: &dyn Harness) {
    let mut s = h.open();
    register(&mut *s, &["w"], true);
    insert(&mut *s, &task("w", 0), 4);
    let running: Vec<i64> = claim(&mut *s, "me", 10, 4)
        .iter()
        .map(|c| c.task.id)
        .collect();
    let created: Vec<Vec<i64>> = std::thread::scope(|scope| {
        let writers: Vec<_> = (0..3)
            .map(|i| {
                let running = running.clone();
                scope.spawn(move || {
                    let mut s = h.open();
                    let mut ids = Vec::new();
                    for round in 0..30 {
                        if i == 0 {
                            let lines: Vec<_> = running
                                .iter()
                                .map(|id| (*id, line("running", &format!("round {round}"))))
                                .collect();
                            s.record_progress("me", &[], &lines).unwrap();
                        } else {
                            ids.extend(insert(&mut *s, &task("w", 0), 5));
                        }
                    }
                    ids
                })
            })
            .collect();
        writers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let all: Vec<i64> = created.into_iter().flatten().collect();
    assert_eq!(all.len(), 300);
    assert_eq!(
        all.iter().collect::<HashSet<_>>().len(),
        300,
        "ids are distinct"
    );
    for id in running {
        let lines = s.log_lines(id, 0, usize::MAX).unwrap();
        assert!(lines.windows(2).all(|w| w[0].seq < w[1].seq));
        let rounds: Vec<String> = lines[2..].iter().map(|l| l.text.clone()).collect();
        let expected: Vec<String> = (0..30)
            .map(|r| format!("running|0|0|0|-|round {r}"))
            .collect();
        assert_eq!(
            rounds, expected,
            "lines of task {id} in the order they were stored"
        );
        // Resuming after any line gives exactly the lines after it.
        let mid = &lines[10];
        assert_eq!(s.log_lines(id, mid.seq, usize::MAX).unwrap(), lines[11..]);
    }
}
