//! Limits per key: the no-op burn-down of section 1 (`stask tasks process`), with tasks
//! that carry no limit and with every task under a concurrency-1 rule, each with one of
//! 1,000 keys, side by side in the same run, on SQLite and on PostgreSQL. The keyed
//! queue comes in two orders: interleaved (key = i mod 1,000, so neighbours in the queue
//! have different keys, as tasks created over time for many customers would) and
//! grouped (each key's tasks one after the other, as when one customer's batch is
//! queued at once: a claim meets many tasks of a key that is busy and parks them).
//!
//! Every queue is seeded through the storage crate's public API (the rule set with
//! `Limits::set_limit_rules`), so the only difference is the limit. After each keyed
//! run the driver checks that the rule held: no two tasks of one key ran at once (by
//! their stored start and finish times).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::json;
use stask_storage::{Claim, Finish, LimitRule, NewTask, Store, TaskLimit};

use crate::postgres::{all_ran_once, pg_home, ready, Schema};
use crate::report::{Cmp, Metric, Report};
use crate::seed::{creation_line, finish, noop_task, start_line, Fate};
use crate::util::{now_ms, run, Ctx, Env, Home, Res};

const KEYED: &str = "20 limits per key (burn-down)";
const PG_KEYED: &str = "20b PostgreSQL limits per key (burn-down)";

/// Distinct keys.
const KEYS: usize = 1_000;

/// The rule's name (its identity within the demo worker).
const RULE: &str = "per_key";

/// Connections seeding an interleaved queue on PostgreSQL at once.
const PG_WRITERS: usize = 8;

/// How a burn-down's queue is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Queue {
    /// No limit.
    Unlimited,
    /// Key `key-(i mod KEYS)`: neighbours have different keys.
    Interleaved,
    /// Each key's tasks one after the other.
    Grouped,
}

impl Queue {
    const ALL: [Queue; 3] = [Queue::Unlimited, Queue::Interleaved, Queue::Grouped];

    fn key(self) -> &'static str {
        match self {
            Queue::Unlimited => "unlimited",
            Queue::Interleaved => "interleaved",
            Queue::Grouped => "grouped",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Queue::Unlimited => "unlimited",
            Queue::Interleaved => "keyed, interleaved",
            Queue::Grouped => "keyed, grouped",
        }
    }
}

fn keyed_task(at: i64, key: usize) -> NewTask {
    NewTask {
        limit: Some(TaskLimit {
            rule: RULE.into(),
            key: format!("key-{key}"),
        }),
        ..noop_task(at)
    }
}

/// Stores `n` no-op demo tasks as `queue` says (keyed ones under [`RULE`], set to
/// concurrency 1 first). `open` opens another connection to the store: unlimited and
/// interleaved tasks are inserted one per call, by `writers` connections at once (each
/// its share of the keys), since a PostgreSQL commit waits for its flush. The unlimited
/// queue is built as the interleaved one is, so that the limit is the only difference
/// between them.
fn seed(
    open: &(dyn Fn() -> Res<Box<dyn Store>> + Sync),
    n: usize,
    queue: Queue,
    writers: usize,
) -> Res<()> {
    let now = crate::util::now_ms();
    let creation = creation_line();
    let mut store = open()?;
    let stored = |ids: Vec<i64>, k: usize| -> Res<()> {
        if ids.len() == k {
            Ok(())
        } else {
            Err(format!("insert_tasks stored {} of {k}", ids.len()))
        }
    };
    if queue != Queue::Unlimited {
        store
            .set_limit_rules(
                "demo",
                &[LimitRule {
                    rule: RULE.into(),
                    concurrency: Some(1),
                    rate: None,
                }],
            )
            .ctx("set the limit rule")?;
    }
    if queue == Queue::Grouped {
        for key in 0..KEYS {
            // The first n mod KEYS keys get one more.
            let k = n / KEYS + usize::from(key < n % KEYS);
            if k > 0 {
                let ids = store
                    .insert_tasks(&keyed_task(now, key), k, &creation)
                    .ctx("insert keyed tasks")?;
                stored(ids, k)?;
            }
        }
        return Ok(());
    }
    drop(store);
    let results: Vec<Res<()>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..writers)
            .map(|w| {
                let creation = &creation;
                s.spawn(move || -> Res<()> {
                    let mut store = open()?;
                    for i in (w..n).step_by(writers) {
                        let task = match queue {
                            Queue::Unlimited => noop_task(now),
                            _ => keyed_task(now, i % KEYS),
                        };
                        let ids = store
                            .insert_tasks(&task, 1, creation)
                            .ctx("insert a task")?;
                        stored(ids, 1)?;
                    }
                    Ok(())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("writer panicked".into())))
            .collect()
    });
    results.into_iter().collect()
}

/// Checks that the rule held: every task completed once, the rule is still set, and
/// no two tasks of a key overlapped (one started before the other finished).
fn check_keyed(store: &dyn Store, n: usize) -> Res<()> {
    let tasks = all_ran_once(store, n)?;
    let rules = store.limit_rules("demo").ctx("read the limit rules")?;
    if !rules
        .iter()
        .any(|r| r.rule == RULE && r.concurrency == Some(1))
    {
        return Err(format!(
            "the rule '{RULE}' was replaced while the tasks ran: {rules:?}"
        ));
    }
    let mut by_key: HashMap<String, Vec<(i64, i64)>> = HashMap::new();
    for t in &tasks {
        let limit = t
            .limit
            .as_ref()
            .ok_or_else(|| format!("task {} lost its limit", t.id))?;
        let (Some(s), Some(f)) = (t.started_at, t.finished_at) else {
            return Err(format!("task {} has no start or finish time", t.id));
        };
        by_key.entry(limit.key.clone()).or_default().push((s, f));
    }
    if by_key.len() != KEYS.min(n) {
        return Err(format!("{} keys, {} expected", by_key.len(), KEYS.min(n)));
    }
    for (key, mut runs) in by_key {
        runs.sort_unstable();
        // Times are whole milliseconds: a start in the millisecond of the previous
        // finish is not an overlap.
        if let Some(w) = runs.windows(2).find(|w| w[1].0 < w[0].1) {
            return Err(format!(
                "two tasks of key {key} ran at once: {:?} and {:?} (concurrency 1)",
                w[0], w[1]
            ));
        }
    }
    Ok(())
}

/// Claims and completes every seeded task through the storage API alone, `batch` per
/// claim, each claim carrying the previous batch's finishes (as the engine's
/// coordinator does; no CLI, engine or runners): tasks/s. A claim that finds nothing
/// while tasks are left (parked ones not yet released) is tried again 1 ms later.
fn raw_burn(store: &mut dyn Store, n: usize, batch: usize) -> Res<f64> {
    let owner = "bench/keyed";
    let started = Instant::now();
    let deadline = started + Duration::from_secs(120);
    let mut finishes: Vec<Finish> = Vec::new();
    let mut done = 0usize;
    while done < n {
        let (applied, claimed) = store
            .claim(&Claim {
                finishes: &finishes,
                owner,
                now: now_ms(),
                limit: batch,
                excluded_workers: &[],
                start_line: &start_line,
            })
            .ctx("claim")?;
        if applied.iter().any(|a| !a) {
            return Err("a finish did not apply".into());
        }
        done += applied.len();
        let now = now_ms();
        finishes = claimed
            .iter()
            .map(|c| finish(c.task.id, owner, Fate::Completed, now))
            .collect();
        if claimed.is_empty() && done < n {
            if Instant::now() > deadline {
                return Err(format!(
                    "{done} of {n} tasks ran; the others were never claimed"
                ));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

/// One burn-down of `home`'s seeded tasks through `tasks process`: tasks/s.
fn burn(env: &Env, home: &Home, n: usize) -> Res<f64> {
    let ran = run(
        env.stask(&home.root).args(["tasks", "process", "--json"]),
        Duration::from_secs(300) + Duration::from_millis(10 * n as u64),
    )?;
    let summary = ran.json()?;
    let completed = summary["completed"].as_u64().unwrap_or(0) as usize;
    if completed != n {
        return Err(format!(
            "tasks process completed {completed} of {n} tasks: {summary}"
        ));
    }
    Ok(n as f64 / ran.wall.as_secs_f64())
}

/// The figures of the burn-downs (`rates[q]`: per run, for `Queue::ALL[q]`) and the
/// keyed ones over the unlimited one, per run; `raw`: the same through the storage API
/// alone (no target).
fn add(
    rep: &mut Report,
    prefix: &str,
    section: &str,
    n: usize,
    rates: &[Vec<f64>; 3],
    raw: &[Vec<f64>; 3],
    batch: usize,
) {
    for (q, queue) in Queue::ALL.into_iter().enumerate() {
        rep.add(Metric::new(
            &format!("{prefix}.raw_{}_tasks_per_s", queue.key()),
            section,
            &format!(
                "storage API alone, claims of {batch}: {n} tasks, {}",
                queue.name()
            ),
            "tasks/s",
            raw[q].clone(),
        ));
        if q > 0 {
            let ratios: Vec<f64> = raw[q].iter().zip(&raw[0]).map(|(k, p)| k / p).collect();
            rep.add(
                Metric::new(
                    &format!("{prefix}.raw_{}_over_unlimited", queue.key()),
                    section,
                    &format!("storage API alone: {} / unlimited", queue.name()),
                    "x",
                    ratios,
                )
                .note("the claim's own cost of the limit, without the engine"),
            );
        }
    }
    let [plain, interleaved, grouped] = rates;
    rep.add(Metric::new(
        &format!("{prefix}.unlimited_tasks_per_s"),
        section,
        &format!("{n} no-op tasks, no limit (tasks process)"),
        "tasks/s",
        plain.clone(),
    ));
    for (key, what, rates) in [
        ("interleaved", "interleaved keys", interleaved),
        ("grouped", "each key's tasks together", grouped),
    ] {
        rep.add(Metric::new(
            &format!("{prefix}.{key}_tasks_per_s"),
            section,
            &format!(
                "{n} no-op tasks, {KEYS} keys under a concurrency-1 rule, {what} (tasks process)"
            ),
            "tasks/s",
            rates.clone(),
        ));
        let ratios: Vec<f64> = rates.iter().zip(plain).map(|(k, p)| k / p).collect();
        rep.add(
            Metric::new(
                &format!("{prefix}.{key}_over_unlimited"),
                section,
                &format!("{what} / unlimited (paired runs)"),
                "x",
                ratios,
            )
            .target(">= 0.8 (within 20 %)", Cmp::AtLeast, 0.8)
            .note("each run's keyed burn-down over that run's unlimited one; the keyed runs are checked: no two tasks of a key overlapped"),
        );
    }
}

/// Checks a finished burn-down of `queue`.
fn check(store: &dyn Store, n: usize, queue: Queue) -> Res<()> {
    if queue == Queue::Unlimited {
        all_ran_once(store, n).map(|_| ())
    } else {
        check_keyed(store, n)
    }
}

/// keyed: on SQLite.
pub fn keyed(env: &Env, rep: &mut Report) -> Res<()> {
    let n = env.n;
    let batch = env.cores * 128;
    let mut rates: [Vec<f64>; 3] = Default::default();
    let mut raw: [Vec<f64>; 3] = Default::default();
    for i in 0..env.runs {
        for (q, queue) in Queue::ALL.into_iter().enumerate() {
            let home = Home::create(env, &format!("keyed-{i}-{q}"), &[&env.demo_lib])?;
            // One writer: SQLite takes one at a time anyway.
            seed(&|| home.store(), n, queue, 1)?;
            let rate = burn(env, &home, n)?;
            check(&*home.store()?, n, queue)?;
            let home = Home::create(env, &format!("keyed-raw-{i}-{q}"), &[&env.demo_lib])?;
            seed(&|| home.store(), n, queue, 1)?;
            let raw_rate = raw_burn(&mut *home.store()?, n, batch)?;
            check(&*home.store()?, n, queue)?;
            eprintln!(
                "  run {} {}: {rate:.0} tasks/s (storage API alone: {raw_rate:.0})",
                i + 1,
                queue.name()
            );
            rates[q].push(rate);
            raw[q].push(raw_rate);
        }
    }
    add(rep, "keyed", KEYED, n, &rates, &raw, batch);
    rep.detail(
        "keyed",
        json!({
            "tasks": n, "keys": KEYS, "rule": { "concurrency": 1 }, "concurrency": env.cores,
            "orders": {
                "interleaved": "key-(i mod 1000): neighbours in the queue have different keys",
                "grouped": "each key's tasks one after the other (insert_tasks per key)",
            },
        }),
    );
    Ok(())
}

/// pg_keyed: on PostgreSQL (one host's `tasks process`).
pub fn pg_keyed(env: &Env, rep: &mut Report) -> Res<()> {
    let Some(version) = ready(rep, "pg_keyed", PG_KEYED) else {
        return Ok(());
    };
    let n = env.n;
    let batch = env.cores * 128;
    let mut rates: [Vec<f64>; 3] = Default::default();
    let mut raw: [Vec<f64>; 3] = Default::default();
    for i in 0..env.runs {
        for (q, queue) in Queue::ALL.into_iter().enumerate() {
            let schema = Schema::new(&format!("key{i}{q}"))?;
            let home = pg_home(
                env,
                &schema,
                &format!("pg-keyed-{i}-{q}"),
                &[&env.demo_lib],
                true,
            )?;
            seed(&|| schema.store(), n, queue, PG_WRITERS)?;
            schema.settle()?;
            let rate = burn(env, &home, n)?;
            check(&*schema.store()?, n, queue)?;
            drop(home);
            drop(schema);
            // The storage API alone, on a schema of its own.
            let schema = Schema::new(&format!("keyr{i}{q}"))?;
            let _home = pg_home(
                env,
                &schema,
                &format!("pg-keyed-raw-{i}-{q}"),
                &[&env.demo_lib],
                true,
            )?;
            seed(&|| schema.store(), n, queue, PG_WRITERS)?;
            schema.settle()?;
            let raw_rate = raw_burn(&mut *schema.store()?, n, batch)?;
            check(&*schema.store()?, n, queue)?;
            eprintln!(
                "  run {} {}: {rate:.0} tasks/s (storage API alone: {raw_rate:.0})",
                i + 1,
                queue.name()
            );
            rates[q].push(rate);
            raw[q].push(raw_rate);
        }
    }
    add(rep, "pg.keyed", PG_KEYED, n, &rates, &raw, batch);
    rep.detail(
        "pg_keyed",
        json!({
            "server_version": version, "tasks": n, "keys": KEYS, "rule": { "concurrency": 1 },
            "concurrency": env.cores, "interleaved_seeded_by": PG_WRITERS,
        }),
    );
    Ok(())
}
