//! Limits per key: a claim never takes a task whose key is at its concurrency or rate
//! limit, whoever else claims at the same time; it parks it instead, and the finish
//! that frees a slot releases the next parked task of that key.

use std::collections::HashMap;
use std::sync::{Barrier, Mutex};

use super::{claim, completed, finish, ids, insert, register, task, Harness};
use crate::{
    LimitRule, LimitUsage, NewTask, Status, TaskLimit, PARKED_UNTIL_RELEASED, PARK_RECHECK_MS,
};

fn keyed(at: i64, key: &str) -> NewTask {
    NewTask {
        limit: Some(TaskLimit {
            rule: "per-shop".into(),
            key: key.into(),
        }),
        ..task("w", at)
    }
}

fn concurrency(n: u32) -> LimitRule {
    LimitRule {
        rule: "per-shop".into(),
        concurrency: Some(n),
        rate: None,
    }
}

/// The rule of [`keyed`] tasks as a rate: at most `n` starts per `per_ms`.
fn rate(n: u32, per_ms: i64) -> LimitRule {
    LimitRule {
        rule: "per-shop".into(),
        concurrency: None,
        rate: Some((n, per_ms)),
    }
}

pub fn rules_are_replaced_per_worker_and_read_back(h: &dyn Harness) {
    let mut s = h.open();
    register(&mut *s, &["w", "v"], true);
    let rate = LimitRule {
        rule: "api".into(),
        concurrency: None,
        rate: Some((60, 60_000)),
    };
    s.set_limit_rules("w", &[concurrency(2), rate.clone()])
        .unwrap();
    s.set_limit_rules("v", &[concurrency(5)]).unwrap();
    assert_eq!(s.limit_rules("w").unwrap(), vec![rate, concurrency(2)]);
    s.set_limit_rules("w", &[concurrency(1)]).unwrap();
    assert_eq!(s.limit_rules("w").unwrap(), vec![concurrency(1)]);
    assert_eq!(s.limit_rules("v").unwrap(), vec![concurrency(5)]);
    s.set_limit_rules("w", &[]).unwrap();
    assert!(s.limit_rules("w").unwrap().is_empty());
}

pub fn a_key_at_its_concurrency_is_skipped_and_parked_while_other_keys_run(h: &dyn Harness) {
    let mut s = h.open();
    register(&mut *s, &["w"], true);
    s.set_limit_rules("w", &[concurrency(1)]).unwrap();
    let a1 = insert(&mut *s, &keyed(100, "shop:1"), 1)[0];
    let a2 = insert(&mut *s, &keyed(100, "shop:1"), 1)[0];
    let b1 = insert(&mut *s, &keyed(100, "shop:2"), 1)[0];
    let free = insert(&mut *s, &task("w", 100), 1)[0];
    let got = claim(&mut *s, "o", 1_000, 10);
    assert_eq!(ids(&got), vec![a1, b1, free]);
    // The second task of shop:1 waits, parked, and says how much of its key is in use.
    let parked = s.get_task(a2).unwrap().unwrap();
    assert_eq!(parked.status, Status::Pending);
    assert!(parked.run_after > 1_000, "parked until later");
    let limit = parked.limit.clone().unwrap();
    assert_eq!(limit.key, "shop:1");
    let (rule, usage) = s.limit_usage("w", &limit, 1_000).unwrap().unwrap();
    assert_eq!(rule, concurrency(1));
    assert_eq!(usage.running, 1);
    assert!(claim(&mut *s, "o", 1_000, 10).is_empty());
    // Claiming it by id is refused too while its key is full.
    assert!(s
        .claim_task(a2, "o", 1_000, &|t| super::line(
            "running",
            &t.id.to_string()
        ))
        .unwrap()
        .is_none());
}

pub fn a_finish_releases_the_next_parked_task_of_its_key(h: &dyn Harness) {
    let mut s = h.open();
    register(&mut *s, &["w"], true);
    s.set_limit_rules("w", &[concurrency(1)]).unwrap();
    let first = insert(&mut *s, &keyed(100, "shop:1"), 3);
    assert_eq!(ids(&claim(&mut *s, "o", 1_000, 10)), vec![first[0]]);
    // The finish frees the slot: the next task is due at once, not after the recheck.
    let (applied, got) = s
        .claim(&crate::Claim {
            finishes: &[finish(first[0], "o", completed(), "completed", 1_100)],
            owner: "o",
            now: 1_100,
            limit: 10,
            excluded_workers: &[],
            start_line: &|t| super::line("running", &t.id.to_string()),
        })
        .unwrap();
    assert_eq!(applied, vec![true]);
    assert_eq!(ids(&got), vec![first[1]]);
    // A finish on its own (no claim in the transaction) also releases one.
    s.finish_tasks(&[finish(first[1], "o", completed(), "completed", 1_200)])
        .unwrap();
    let third = s.get_task(first[2]).unwrap().unwrap();
    assert!(third.run_after <= 1_200, "released: due at the finish");
    assert_eq!(ids(&claim(&mut *s, "o", 1_200, 10)), vec![first[2]]);
}

/// A claim with finishes and room of its own.
fn finish_and_claim(
    s: &mut dyn crate::Store,
    done: &[i64],
    now: i64,
    limit: usize,
    excluded: &[&str],
) -> Vec<i64> {
    let finishes: Vec<crate::Finish> = done
        .iter()
        .map(|id| finish(*id, "o", completed(), "completed", now))
        .collect();
    let (applied, got) = s
        .claim(&crate::Claim {
            finishes: &finishes,
            owner: "o",
            now,
            limit,
            excluded_workers: excluded,
            start_line: &|t| super::line("running", &t.id.to_string()),
        })
        .unwrap();
    assert!(applied.iter().all(|a| *a), "every finish applied");
    ids(&got)
}

pub fn tasks_released_to_a_claim_keep_claim_order_and_stay_due_when_not_taken(h: &dyn Harness) {
    let mut s = h.open();
    register(&mut *s, &["w", "v"], true);
    s.set_limit_rules("w", &[concurrency(1)]).unwrap();
    s.set_limit_rules("v", &[concurrency(1)]).unwrap();
    let a = insert(&mut *s, &keyed(100, "a"), 3);
    let b = insert(&mut *s, &keyed(100, "b"), 3);
    assert_eq!(ids(&claim(&mut *s, "o", 1_000, 10)), vec![a[0], b[0]]);
    // A newer task with no limit: the released tasks are older, so they go first.
    let free = insert(&mut *s, &task("w", 100), 1)[0];
    assert_eq!(
        finish_and_claim(&mut *s, &[a[0], b[0]], 1_100, 2, &[]),
        vec![a[1], b[1]]
    );
    // Room for one: the other released task is due for the next claim, not left parked
    // until the recheck.
    assert_eq!(
        finish_and_claim(&mut *s, &[a[1], b[1]], 1_200, 1, &[]),
        vec![a[2]]
    );
    let b2 = s.get_task(b[2]).unwrap().unwrap();
    assert!(b2.run_after <= 1_200, "released: due at the finish");
    assert_eq!(ids(&claim(&mut *s, "o", 1_200, 10)), vec![b[2], free]);
    // A released task of a worker the claim leaves out is not taken, and is due.
    let v = insert(
        &mut *s,
        &NewTask {
            limit: keyed(100, "c").limit,
            ..task("v", 100)
        },
        2,
    );
    assert_eq!(ids(&claim(&mut *s, "o", 1_300, 10)), vec![v[0]]);
    assert!(finish_and_claim(&mut *s, &[v[0]], 1_400, 10, &["v"]).is_empty());
    assert!(s.get_task(v[1]).unwrap().unwrap().run_after <= 1_400);
    assert_eq!(ids(&claim(&mut *s, "o", 1_400, 10)), vec![v[1]]);
}

pub fn a_parked_task_is_looked_at_again_after_the_recheck_time(h: &dyn Harness) {
    let mut s = h.open();
    register(&mut *s, &["w"], true);
    s.set_limit_rules("w", &[concurrency(1)]).unwrap();
    let t = insert(&mut *s, &keyed(100, "k"), 2);
    assert_eq!(ids(&claim(&mut *s, "o", 1_000, 10)), vec![t[0]]);
    assert!(claim(&mut *s, "o", 1_000, 10).is_empty());
    assert_eq!(
        s.get_task(t[1]).unwrap().unwrap().run_after,
        1_000 + PARK_RECHECK_MS
    );
    // Its time come, a claim looks at it again: the key is still full, so it is parked
    // again rather than run beside the first.
    let later = 1_001 + PARK_RECHECK_MS;
    assert!(claim(&mut *s, "p", later, 10).is_empty());
    assert_eq!(
        s.get_task(t[1]).unwrap().unwrap().run_after,
        later + PARK_RECHECK_MS
    );
    assert_eq!(s.count_claimable(later).unwrap(), 0);
}

pub fn a_rate_limit_lets_n_starts_per_period_and_the_rest_wait(h: &dyn Harness) {
    let mut s = h.open();
    register(&mut *s, &["w"], true);
    s.set_limit_rules("w", &[rate(2, 60_000)]).unwrap();
    let t = insert(&mut *s, &keyed(100, "api"), 4);
    let got = claim(&mut *s, "o", 10_000, 10);
    assert_eq!(ids(&got), t[..2].to_vec());
    // Finishing does not give starts back: the window does.
    s.finish_tasks(&[
        finish(t[0], "o", completed(), "completed", 10_100),
        finish(t[1], "o", completed(), "completed", 10_100),
    ])
    .unwrap();
    assert!(claim(&mut *s, "o", 20_000, 10).is_empty());
    let waiting = s.get_task(t[2]).unwrap().unwrap();
    assert_eq!(waiting.status, Status::Pending);
    assert_eq!(
        waiting.run_after, 70_000,
        "due when the oldest start leaves the window"
    );
    let usage = s
        .limit_usage("w", waiting.limit.as_ref().unwrap(), 20_000)
        .unwrap()
        .unwrap()
        .1;
    assert_eq!(
        usage,
        LimitUsage {
            running: 0,
            started: 2,
            oldest_start: Some(10_000),
        }
    );
    assert!(claim(&mut *s, "o", 69_999, 10).is_empty());
    // (A backend may look for parked tasks whose time has come a little later.)
    assert_eq!(ids(&claim(&mut *s, "o", 71_000, 10)), t[2..].to_vec());
}

pub fn every_start_under_a_rate_counts_a_retried_tasks_too(h: &dyn Harness) {
    let mut s = h.open();
    register(&mut *s, &["w"], true);
    s.set_limit_rules("w", &[rate(2, 60_000)]).unwrap();
    let t = insert(&mut *s, &keyed(100, "api"), 2);
    assert_eq!(ids(&claim(&mut *s, "o", 10_000, 1)), vec![t[0]]);
    // The attempt fails and is retried at once: its second start is a second call to
    // whatever the rate protects, so the key's two starts are used up.
    let retry = crate::Outcome::Failed {
        error: "timed out".into(),
        retry_at: Some(10_100),
    };
    let (applied, _) = s
        .claim(&crate::Claim {
            finishes: &[finish(t[0], "o", retry, "failed", 10_100)],
            owner: "o",
            now: 10_100,
            limit: 0,
            excluded_workers: &[],
            start_line: &|t| super::line("running", &t.id.to_string()),
        })
        .unwrap();
    assert_eq!(applied, vec![true]);
    assert_eq!(ids(&claim(&mut *s, "o", 10_200, 1)), vec![t[0]]);
    assert!(claim(&mut *s, "o", 10_300, 10).is_empty());
    let usage = s
        .limit_usage(
            "w",
            &TaskLimit {
                rule: "per-shop".into(),
                key: "api".into(),
            },
            10_300,
        )
        .unwrap()
        .unwrap()
        .1;
    assert_eq!((usage.started, usage.oldest_start), (2, Some(10_000)));
    assert_eq!(s.get_task(t[1]).unwrap().unwrap().run_after, 70_000);
}

pub fn a_changed_rule_applies_to_tasks_already_queued(h: &dyn Harness) {
    let mut s = h.open();
    register(&mut *s, &["w"], true);
    s.set_limit_rules("w", &[concurrency(1)]).unwrap();
    let t = insert(&mut *s, &keyed(100, "k"), 3);
    assert_eq!(claim(&mut *s, "o", 1_000, 10).len(), 1);
    s.set_limit_rules("w", &[concurrency(3)]).unwrap();
    assert_eq!(ids(&claim(&mut *s, "o", 1_000, 10)), t[1..].to_vec());
    // No rule at all: tasks with keys run unlimited.
    let more = insert(&mut *s, &keyed(100, "k"), 2);
    s.set_limit_rules("w", &[]).unwrap();
    assert_eq!(ids(&claim(&mut *s, "o", 1_000, 10)), more);
}

pub fn a_head_of_queue_at_its_limit_does_not_hide_the_tasks_behind_it(h: &dyn Harness) {
    let mut s = h.open();
    register(&mut *s, &["w"], true);
    s.set_limit_rules("w", &[concurrency(1)]).unwrap();
    // 600 tasks of one key, then one of another: a claim of 4 still finds the latter.
    let head = insert(&mut *s, &keyed(100, "busy"), 600);
    let other = insert(&mut *s, &keyed(100, "other"), 1)[0];
    let got = ids(&claim(&mut *s, "o", 1_000, 4));
    assert!(got.contains(&head[0]), "{got:?}");
    // Pages of candidates park the rest of the head; the other key is reached within
    // a few claims, without the head ever running twice at once.
    let mut seen = got.clone();
    for _ in 0..200 {
        if seen.contains(&other) {
            break;
        }
        seen.extend(ids(&claim(&mut *s, "o", 1_000, 4)));
    }
    assert!(
        seen.contains(&other),
        "the task behind the head was never claimed"
    );
    assert_eq!(seen.iter().filter(|id| head.contains(id)).count(), 1);
}

pub fn a_long_queue_parked_on_one_key_does_not_come_back_all_at_once(h: &dyn Harness) {
    let mut s = h.open();
    register(&mut *s, &["w"], true);
    let rate = LimitRule {
        rule: "api".into(),
        concurrency: None,
        rate: Some((1, 60_000)),
    };
    s.set_limit_rules("w", &[concurrency(1), rate]).unwrap();
    let busy = insert(&mut *s, &keyed(100, "busy"), 3_000);
    let limited = |key: &str| NewTask {
        limit: Some(TaskLimit {
            rule: "api".into(),
            key: key.into(),
        }),
        ..task("w", 100)
    };
    let slow = insert(&mut *s, &limited("slow"), 3_000);
    // One claim runs the head of each key and parks the rest of both queues.
    let got = ids(&claim(&mut *s, "o", 1_000, 10_000));
    assert_eq!(got, vec![busy[0], slow[0]]);
    // Tasks created later, behind both queues.
    let other = insert(&mut *s, &keyed(100, "other"), 1)[0];
    let free = insert(&mut *s, &task("w", 100), 1)[0];
    // Well after the recheck time and the rate's next slot, small claims (an engine
    // with two free runners) reach the tasks behind at once: the parked queues come
    // back a task at a time, not thousands at once into the claims' way.
    let later = 1_000 + 60_000 + PARK_RECHECK_MS;
    let mut seen = Vec::new();
    for _ in 0..2 {
        seen.extend(ids(&claim(&mut *s, "p", later, 2)));
    }
    assert!(
        seen.contains(&other) && seen.contains(&free),
        "the tasks behind the parked queues waited: claimed {seen:?}"
    );
    // The rate's next start came too, and the busy key still runs one at a time.
    assert!(seen.contains(&slow[1]), "claimed {seen:?}");
    assert!(!seen.iter().any(|id| busy.contains(id)), "claimed {seen:?}");
    // When the busy key's task finishes, its next task is released.
    let finishes = [finish(busy[0], "o", completed(), "completed", later)];
    let (_, got) = s
        .claim(&crate::Claim {
            finishes: &finishes,
            owner: "o",
            now: later,
            limit: 10,
            excluded_workers: &[],
            start_line: &|t| super::line("running", &t.id.to_string()),
        })
        .unwrap();
    assert_eq!(ids(&got), vec![busy[1]]);
    // And the next after it, one that waited for a release rather than a time.
    assert_eq!(
        s.get_task(busy[2]).unwrap().unwrap().run_after,
        PARKED_UNTIL_RELEASED
    );
    assert_eq!(
        finish_and_claim(&mut *s, &[busy[1]], later + 1, 10, &[]),
        vec![busy[2]]
    );
}

pub fn cancelling_or_starting_by_id_the_task_a_key_waits_behind_releases_the_next(h: &dyn Harness) {
    let mut s = h.open();
    register(&mut *s, &["w"], true);
    s.set_limit_rules("w", &[rate(1, 60_000)]).unwrap();
    let t = insert(&mut *s, &keyed(100, "k"), 4);
    assert_eq!(ids(&claim(&mut *s, "o", 1_000, 10)), vec![t[0]]);
    // The second waits for the rate's next slot, the others for a release.
    assert_eq!(s.get_task(t[1]).unwrap().unwrap().run_after, 61_000);
    for id in &t[2..] {
        assert_eq!(
            s.get_task(*id).unwrap().unwrap().run_after,
            PARKED_UNTIL_RELEASED
        );
    }
    // Cancelling the one that waits for the slot releases the next: a claim looks at it
    // and, the rate being full, parks it for the slot in its place.
    let cancelled = s
        .request_cancel(t[1], 2_000, &super::line("cancelled", "Cancelled"))
        .unwrap();
    assert_eq!(cancelled, Some(crate::CancelResult::CancelledPending));
    assert!(s.get_task(t[2]).unwrap().unwrap().run_after <= 2_000);
    assert!(claim(&mut *s, "o", 2_000, 10).is_empty());
    assert_eq!(s.get_task(t[2]).unwrap().unwrap().run_after, 61_000);
    // Starting it by id at its slot releases the last, which waits for the slot after.
    let started = s
        .claim_task(t[2], "o", 61_000, &|t| {
            super::line("running", &t.id.to_string())
        })
        .unwrap();
    assert_eq!(started.map(|c| c.task.id), Some(t[2]));
    assert!(s.get_task(t[3]).unwrap().unwrap().run_after <= 61_000);
    assert!(claim(&mut *s, "o", 61_000, 10).is_empty());
    assert_eq!(ids(&claim(&mut *s, "o", 121_000, 10)), vec![t[3]]);
}

pub fn concurrent_claims_never_run_a_key_beyond_its_limit(h: &dyn Harness) {
    let mut s = h.open();
    register(&mut *s, &["w"], true);
    s.set_limit_rules("w", &[concurrency(2)]).unwrap();
    for k in 0..10 {
        insert(&mut *s, &keyed(100, &format!("k{k}")), 20);
    }
    drop(s);
    // Eight claimers take, finish and take again; every claim checks how many tasks of
    // each key run at that moment across all of them.
    let running: Mutex<HashMap<String, i64>> = Mutex::new(HashMap::new());
    let worst: Mutex<i64> = Mutex::new(0);
    let done: Mutex<usize> = Mutex::new(0);
    let barrier = Barrier::new(8);
    std::thread::scope(|scope| {
        for n in 0..8 {
            let (running, worst, done, barrier) = (&running, &worst, &done, &barrier);
            scope.spawn(move || {
                let mut s = h.open();
                let owner = format!("o{n}");
                barrier.wait();
                let mut idle = 0;
                while idle < 20 {
                    let got = claim(&mut *s, &owner, 1_000, 3);
                    if got.is_empty() {
                        idle += 1;
                        std::thread::sleep(std::time::Duration::from_millis(2));
                        continue;
                    }
                    idle = 0;
                    for c in &got {
                        let key = c.task.limit.clone().unwrap().key;
                        let mut r = running.lock().unwrap();
                        let now = r.entry(key).or_default();
                        *now += 1;
                        let mut w = worst.lock().unwrap();
                        *w = (*w).max(*now);
                    }
                    std::thread::sleep(std::time::Duration::from_millis(1));
                    // Out of the count before the finish commits: a claim that sees
                    // the slot free may take it at once.
                    for c in &got {
                        let key = c.task.limit.clone().unwrap().key;
                        *running.lock().unwrap().get_mut(&key).unwrap() -= 1;
                    }
                    let finishes: Vec<_> = got
                        .iter()
                        .map(|c| finish(c.task.id, &owner, completed(), "completed", 1_000))
                        .collect();
                    s.finish_tasks(&finishes).unwrap();
                    *done.lock().unwrap() += got.len();
                }
            });
        }
    });
    assert_eq!(*done.lock().unwrap(), 200, "every task ran once");
    assert!(
        *worst.lock().unwrap() <= 2,
        "a key ran {} at once",
        worst.lock().unwrap()
    );
}
