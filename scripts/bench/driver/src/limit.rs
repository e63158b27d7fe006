//! The storage ceiling: what creating, claiming and finishing tasks costs in the store
//! alone, through the storage crate's public API (`stask_storage::Store`), with no CLI
//! processes, engine, runners or messages around it; and the steady throughput those
//! costs allow.

use std::time::{Duration, Instant};

use serde_json::json;
use stask_storage::{Claim, Finish, Store};

use crate::report::{Metric, Report};
use crate::seed::{creation_line, finish, noop_task, start_line, Fate};
use crate::util::{now_ms, Ctx, Env, Home, Res};

const LIMIT: &str = "4 limit (storage API)";

/// Tasks per `insert_tasks` call: what one steady producer's `tasks create --count 500`
/// stores in one transaction.
const INSERT_BATCH: usize = 500;

/// Inserts `n` demo tasks, `batch` per `insert_tasks` call, each with its creation
/// line (as `tasks create --count batch` does, without the process); returns the time.
fn insert(store: &mut dyn Store, n: usize, batch: usize) -> Res<Duration> {
    let creation = creation_line();
    let started = Instant::now();
    let mut left = n;
    while left > 0 {
        let k = left.min(batch);
        let task = noop_task(now_ms());
        let ids = store.insert_tasks(&task, k, &creation).ctx("insert")?;
        if ids.len() != k {
            return Err(format!("insert_tasks stored {} of {k}", ids.len()));
        }
        left -= k;
    }
    Ok(started.elapsed())
}

/// Claims and completes every pending task, `batch` at a time, as the engine's
/// coordinator does: each claim stores its tasks' start lines, and the previous batch's
/// finishes (with their final lines) are committed in the same transaction as the next
/// claim. Returns the tasks run and the time.
fn burn(store: &mut dyn Store, batch: usize) -> Res<(usize, Duration)> {
    let owner = "bench/limit";
    let started = Instant::now();
    let mut finishes: Vec<Finish> = Vec::new();
    let mut done = 0usize;
    loop {
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
        if claimed.is_empty() {
            break;
        }
        let now = now_ms();
        finishes = claimed
            .iter()
            .map(|c| finish(c.task.id, owner, Fate::Completed, now))
            .collect();
    }
    Ok((done, started.elapsed()))
}

/// 4: the store's own cost per task.
pub fn limit(env: &Env, rep: &mut Report) -> Res<()> {
    let n = env.n;
    // The engine claims one task per idle slot, plus up to 128 more per slot for its
    // pipelines once a kind of task is known to be fast: claims of cores x 128.
    let wide = env.cores * 128;
    let (mut inserts, mut runs, mut ceilings, mut narrow, mut one_batch) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..env.runs {
        // A fresh home per run (its demo worker registered and active); the store is
        // opened in this process and nothing else touches it.
        let home = Home::create(env, &format!("limit-{i}"), &[&env.demo_lib])?;
        let mut store = home.store()?;
        let inserted = insert(&mut *store, n, INSERT_BATCH)?;
        let (ran, took) = burn(&mut *store, wide)?;
        if ran != n {
            return Err(format!("limit: {ran} of {n} tasks were run"));
        }
        // The same burn with claims of one task per slot (no pipelining).
        insert(&mut *store, n, INSERT_BATCH)?;
        let (ran_narrow, took_narrow) = burn(&mut *store, env.cores)?;
        if ran_narrow != n {
            return Err(format!("limit: {ran_narrow} of {n} tasks were run"));
        }
        // All N in one insert_tasks call (what `tasks create --count N` stores).
        let one = insert(&mut *store, n, n)?;
        let counts = store.task_status_counts().ctx("counts")?;
        if counts.completed != 2 * n as i64 || counts.pending != n as i64 {
            return Err(format!("limit: unexpected counts afterwards: {counts:?}"));
        }
        drop(store);
        let (ins, run) = (
            n as f64 / inserted.as_secs_f64(),
            n as f64 / took.as_secs_f64(),
        );
        eprintln!(
            "  limit run {}: insert {ins:.0} tasks/s, claim+finish {run:.0} tasks/s, both {:.0} tasks/s; claims of {}: {:.0} tasks/s",
            i + 1,
            n as f64 / (inserted + took).as_secs_f64(),
            env.cores,
            n as f64 / took_narrow.as_secs_f64()
        );
        inserts.push(ins);
        runs.push(run);
        ceilings.push(n as f64 / (inserted + took).as_secs_f64());
        narrow.push(n as f64 / took_narrow.as_secs_f64());
        one_batch.push(n as f64 / one.as_secs_f64());
    }
    rep.add(
        Metric::new(
            "limit.tasks_per_s",
            LIMIT,
            &format!(
                "store: claim {wide} (cores x 128, as the engine) + finish, with start and final lines, {n} tasks"
            ),
            "tasks/s",
            runs,
        )
        .note("Store::claim with the previous batch's finishes in the same transaction, as the engine's coordinator"),
    );
    rep.add(
        Metric::new(
            "limit.steady_ceiling",
            LIMIT,
            &format!(
                "storage ceiling: insert (batches of {INSERT_BATCH}) + claim + finish, {n} tasks"
            ),
            "tasks/s",
            ceilings,
        )
        .note("N / (insert time + claim-and-finish time): every write takes SQLite's one write lock, so no number of cores runs them side by side; no processes, runners or messages counted"),
    );
    rep.add(
        Metric::new(
            "limit.insert_per_s",
            LIMIT,
            &format!(
                "store: insert_tasks, batches of {INSERT_BATCH}, with creation lines, {n} tasks"
            ),
            "tasks/s",
            inserts,
        )
        .note("one steady producer's `tasks create --count 500`, without its process"),
    );
    rep.add(Metric::new(
        "limit.insert_one_batch_per_s",
        LIMIT,
        &format!("store: insert_tasks, one batch of {n}, with creation lines"),
        "tasks/s",
        one_batch,
    ));
    rep.add(Metric::new(
        "limit.claims_of_cores",
        LIMIT,
        &format!(
            "store: claims of {} (one per slot) + finish, {n} tasks",
            env.cores
        ),
        "tasks/s",
        narrow,
    ));
    if let (Some(s), Some(l)) = (
        rep.get("burndown.tasks_per_s").cloned(),
        rep.get("limit.tasks_per_s").cloned(),
    ) {
        rep.add(
            Metric::ratio(
                "ratio.stask_over_limit",
                LIMIT,
                "stask burn-down / the store's claim + finish",
                &s,
                &l,
            )
            .note("1.0 would mean the engine, its processes and runners cost nothing beyond the store"),
        );
    }
    rep.detail(
        "limit",
        json!({
            "tasks": n, "api": "stask_storage::Store (SQLite backend)",
            "insert_batch": INSERT_BATCH, "claim_batch": wide, "narrow_claim_batch": env.cores,
            "lines_per_task": 3,
            "finishes": "committed with the next claim (Store::claim with finishes), as the engine",
        }),
    );
    Ok(())
}
