//! Limits per key: the no-op burn-down of section 1 (`stask tasks process`), with tasks
//! that carry no limit and with every task under a concurrency-1 rule, each with one of
//! 1,000 keys, side by side in the same run, on SQLite and on PostgreSQL. The keyed
//! queue comes in two orders: interleaved (key = i mod 1,000, so neighbours in the queue
//! have different keys, as tasks created over time for many customers would) and
//! grouped (each key's tasks one after the other, as when one customer's batch is
//! queued at once: a claim meets many tasks of a key that is busy and parks them).
//!
//! Every queue is seeded through the storage crate's public API (the rule set with
//! `Limits::set_limit_rules`), so the only difference is the limit. Each queue of a run
//! comes in [`SLICES`] slices, all seeded before the first burn-down and burnt down in
//! turn, and each burn-down reports the CPU time it took per task. After each keyed
//! run the driver checks that the rule held: no two tasks of one key ran at once (by
//! their stored start and finish times).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::json;
use stask_storage::{Claim, Finish, LimitRule, NewTask, Store, TaskLimit};

use crate::postgres::{all_ran_once, pg_home, ready, server_cpu_ms, Schema};
use crate::report::{Cmp, Metric, Report};
use crate::seed::{creation_line, finish, noop_task, start_line, Fate};
use crate::util::{children_cpu_ms, now_ms, run, Ctx, Env, Home, Res};

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

/// One burn-down: its rate and the CPU time it took per task.
struct Burn {
    /// Tasks per second.
    rate: f64,
    /// CPU µs per task of `stask` and its runner processes.
    host_us: f64,
    /// CPU µs per task of the PostgreSQL server (all its processes), when it runs on
    /// this machine.
    server_us: Option<f64>,
}

/// One burn-down of `home`'s seeded tasks through `tasks process`. Where the ratio of
/// two rates moves from run to run, the CPU each side spent per task tells whether a
/// run did more work or only waited longer. The server's CPU is read only `on_postgres`.
fn burn(env: &Env, home: &Home, n: usize, on_postgres: bool) -> Res<Burn> {
    let host_before = children_cpu_ms();
    let server_before = if on_postgres { server_cpu_ms() } else { None };
    let ran = run(
        env.stask(&home.root).args(["tasks", "process", "--json"]),
        Duration::from_secs(300) + Duration::from_millis(10 * n as u64),
    )?;
    let host_us = (children_cpu_ms() - host_before) * 1000.0 / n as f64;
    let server_us = server_before
        .zip(server_cpu_ms())
        .map(|(before, after)| (after - before) * 1000.0 / n as f64);
    let summary = ran.json()?;
    let completed = summary["completed"].as_u64().unwrap_or(0) as usize;
    if completed != n {
        return Err(format!(
            "tasks process completed {completed} of {n} tasks: {summary}"
        ));
    }
    Ok(Burn {
        rate: n as f64 / ran.wall.as_secs_f64(),
        host_us,
        server_us,
    })
}

/// The figures of the burn-downs (`burns[q]`: per run, for `Queue::ALL[q]`) and the
/// keyed ones over the unlimited one, per run; `raw`: the same through the storage API
/// alone (no target).
fn add(
    rep: &mut Report,
    prefix: &str,
    section: &str,
    n: usize,
    burns: &[Vec<Burn>; 3],
    raw: &[Vec<f64>; 3],
    batch: usize,
) {
    let rates: [Vec<f64>; 3] = burns
        .each_ref()
        .map(|runs| runs.iter().map(|b| b.rate).collect());
    for (q, queue) in Queue::ALL.into_iter().enumerate() {
        let host: Vec<f64> = burns[q].iter().map(|b| b.host_us).collect();
        rep.add(
            Metric::new(
                &format!("{prefix}.{}_host_cpu_us", queue.key()),
                section,
                &format!("CPU per task of stask and its runners: {}", queue.name()),
                "µs",
                host,
            )
            .note("user + system time of `tasks process` and the processes it waited for, over the tasks"),
        );
        let server: Option<Vec<f64>> = burns[q].iter().map(|b| b.server_us).collect();
        if let Some(server) = server {
            rep.add(
                Metric::new(
                    &format!("{prefix}.{}_server_cpu_us", queue.key()),
                    section,
                    &format!("CPU per task of the PostgreSQL server: {}", queue.name()),
                    "µs",
                    server,
                )
                .note("user + system time of the server's processes during the burn-down (the postmaster, its children, and those it waited for), over the tasks"),
            );
        }
    }
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
    let [plain, interleaved, grouped] = &rates;
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

/// Slices each queue of a run is split into (a store of its own each, seeded before
/// the first burn-down). The slices of the queues are burnt down in turn, so that a
/// stretch of a slow machine falls on every queue rather than on one of them: on this
/// kind of machine one `tasks process` run of a queue took up to three quarters more
/// CPU time than the same run of the same queue minutes later, the server's included
/// (section 20).
const SLICES: usize = 5;

/// The order in which the queues' slices `slice` of run `i` are burnt down: the
/// unlimited and the interleaved one back to back, which of them first alternating
/// from slice to slice, the grouped one last.
fn order(i: usize, slice: usize) -> [usize; 3] {
    if (i + slice).is_multiple_of(2) {
        [0, 1, 2]
    } else {
        [1, 0, 2]
    }
}

/// The first `n` tasks split into [`SLICES`] slices: the size of slice `s`.
fn slice_of(n: usize, s: usize) -> usize {
    n / SLICES + usize::from(s < n % SLICES)
}

/// Run `i` of the three queues of `n` tasks each, in slices: `make(queue, slice, k)`
/// seeds a store of `k` tasks for a slice, `burn(store, queue, k)` burns one down (and
/// checks it). Returns each queue's burn-down over all of its slices.
fn sliced<T>(
    i: usize,
    n: usize,
    mut make: impl FnMut(Queue, usize, usize) -> Res<T>,
    mut burn: impl FnMut(&T, Queue, usize) -> Res<Burn>,
) -> Res<[Burn; 3]> {
    let mut slices: Vec<[T; 3]> = Vec::new();
    for s in 0..SLICES {
        let k = slice_of(n, s);
        let [a, b, c] = Queue::ALL;
        slices.push([make(a, s, k)?, make(b, s, k)?, make(c, s, k)?]);
    }
    // Per queue: seconds, host and server CPU ms (the server's while it can be read).
    let mut total = [(0.0, 0.0, Some(0.0)); 3];
    for (s, stores) in slices.iter().enumerate() {
        let k = slice_of(n, s);
        for q in order(i, s) {
            let b = burn(&stores[q], Queue::ALL[q], k)?;
            let (secs, host, server) = &mut total[q];
            *secs += k as f64 / b.rate;
            *host += b.host_us * k as f64 / 1000.0;
            *server = server
                .zip(b.server_us)
                .map(|(ms, us)| ms + us * k as f64 / 1000.0);
        }
    }
    Ok(total.map(|(secs, host, server)| Burn {
        rate: n as f64 / secs,
        host_us: host * 1000.0 / n as f64,
        server_us: server.map(|ms| ms * 1000.0 / n as f64),
    }))
}

/// A burn-down through the storage API alone, as a [`Burn`] (no CPU figures: the
/// driver's own process does the claiming).
fn raw_as_burn(rate: f64) -> Burn {
    Burn {
        rate,
        host_us: 0.0,
        server_us: None,
    }
}

/// Prints one queue's figures of a run.
fn progress(i: usize, queue: Queue, burnt: &Burn, raw_rate: f64) {
    eprintln!(
        "  run {} {}: {:.0} tasks/s, CPU per task {:.0} µs host, {} server (storage API alone: {raw_rate:.0})",
        i + 1,
        queue.name(),
        burnt.rate,
        burnt.host_us,
        burnt
            .server_us
            .map_or("-".to_owned(), |us| format!("{us:.0} µs")),
    );
}

/// Adds run `i`'s burn-downs to the figures and prints them.
fn record(
    i: usize,
    burnt: [Burn; 3],
    raw_burnt: [Burn; 3],
    burns: &mut [Vec<Burn>; 3],
    raw: &mut [Vec<f64>; 3],
) {
    for (q, (burnt, raw_burnt)) in burnt.into_iter().zip(raw_burnt).enumerate() {
        progress(i, Queue::ALL[q], &burnt, raw_burnt.rate);
        burns[q].push(burnt);
        raw[q].push(raw_burnt.rate);
    }
}

/// Seeds a SQLite slice of `k` tasks of `queue` in a home of its own.
fn sqlite_slice(env: &Env, name: &str, queue: Queue, k: usize) -> Res<Home> {
    let home = Home::create(env, name, &[&env.demo_lib])?;
    // One writer: SQLite takes one at a time anyway.
    seed(&|| home.store(), k, queue, 1)?;
    Ok(home)
}

/// keyed: on SQLite.
pub fn keyed(env: &Env, rep: &mut Report) -> Res<()> {
    let n = env.n;
    let batch = env.cores * 128;
    let mut burns: [Vec<Burn>; 3] = Default::default();
    let mut raw: [Vec<f64>; 3] = Default::default();
    for i in 0..env.runs {
        let burnt = sliced(
            i,
            n,
            |queue, s, k| sqlite_slice(env, &format!("keyed-{i}-{}-{s}", queue as usize), queue, k),
            |home, queue, k| {
                let burnt = burn(env, home, k, false)?;
                check(&*home.store()?, k, queue)?;
                Ok(burnt)
            },
        )?;
        let raw_burnt = sliced(
            i,
            n,
            |queue, s, k| {
                sqlite_slice(
                    env,
                    &format!("keyed-raw-{i}-{}-{s}", queue as usize),
                    queue,
                    k,
                )
            },
            |home, queue, k| {
                let rate = raw_burn(&mut *home.store()?, k, batch)?;
                check(&*home.store()?, k, queue)?;
                Ok(raw_as_burn(rate))
            },
        )?;
        record(i, burnt, raw_burnt, &mut burns, &mut raw);
    }
    add(rep, "keyed", KEYED, n, &burns, &raw, batch);
    rep.detail(
        "keyed",
        json!({
            "tasks": n, "keys": KEYS, "rule": { "concurrency": 1 }, "concurrency": env.cores,
            "orders": {
                "interleaved": "key-(i mod 1000): neighbours in the queue have different keys",
                "grouped": "each key's tasks one after the other (insert_tasks per key)",
            },
            "slices": SLICES,
            "runs": "each queue in slices, all seeded first; the slices burnt down in turn: unlimited and interleaved back to back (alternating which first), grouped last",
        }),
    );
    Ok(())
}

/// A PostgreSQL slice: its home, then its schema (dropped in this order).
type PgSlice = (Home, Schema);

/// Seeds a PostgreSQL slice of `k` tasks of `queue` in a schema of its own.
fn pg_slice(env: &Env, tag: &str, queue: Queue, k: usize) -> Res<PgSlice> {
    let schema = Schema::new(tag)?;
    let home = pg_home(
        env,
        &schema,
        &format!("pg-keyed-{tag}"),
        &[&env.demo_lib],
        true,
    )?;
    seed(&|| schema.store(), k, queue, PG_WRITERS)?;
    Ok((home, schema))
}

/// pg_keyed: on PostgreSQL (one host's `tasks process`).
pub fn pg_keyed(env: &Env, rep: &mut Report) -> Res<()> {
    let Some(version) = ready(rep, "pg_keyed", PG_KEYED) else {
        return Ok(());
    };
    let n = env.n;
    let batch = env.cores * 128;
    let mut burns: [Vec<Burn>; 3] = Default::default();
    let mut raw: [Vec<f64>; 3] = Default::default();
    for i in 0..env.runs {
        // Each slice is settled (vacuumed, analyzed, checkpointed) right before its
        // burn-down.
        let burnt = sliced(
            i,
            n,
            |queue, s, k| pg_slice(env, &format!("key{i}{}{s}", queue as usize), queue, k),
            |(home, schema), queue, k| {
                schema.settle()?;
                let burnt = burn(env, home, k, true)?;
                check(&*schema.store()?, k, queue)?;
                Ok(burnt)
            },
        )?;
        // The storage API alone, each slice on a schema of its own, the same way.
        let raw_burnt = sliced(
            i,
            n,
            |queue, s, k| pg_slice(env, &format!("keyr{i}{}{s}", queue as usize), queue, k),
            |(_, schema), queue, k| {
                schema.settle()?;
                let rate = raw_burn(&mut *schema.store()?, k, batch)?;
                check(&*schema.store()?, k, queue)?;
                Ok(raw_as_burn(rate))
            },
        )?;
        record(i, burnt, raw_burnt, &mut burns, &mut raw);
    }
    add(rep, "pg.keyed", PG_KEYED, n, &burns, &raw, batch);
    rep.detail(
        "pg_keyed",
        json!({
            "server_version": version, "tasks": n, "keys": KEYS, "rule": { "concurrency": 1 },
            "concurrency": env.cores, "interleaved_seeded_by": PG_WRITERS,
            "slices": SLICES,
            "runs": "each queue in slices, all seeded first; the slices burnt down in turn: unlimited and interleaved back to back (alternating which first), grouped last; each settled (vacuum, analyze, checkpoint) right before its burn-down",
        }),
    );
    Ok(())
}
