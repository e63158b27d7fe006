//! Throughput: burn-down through `stask tasks process`, steady state under `stask serve`,
//! the same burn-down on effectum (the peer), and the raw SQLite limit.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, TransactionBehavior};
use serde_json::json;
use stask_storage::progress_log::{self, LogLine};
use stask_storage::{Finish, Outcome, Store};

use crate::report::{Cmp, Metric, Report};
use crate::util::{discard, now_ms, percentile, run, run_sampled, Ctx, Env, Home, Res, Service};

const BURN: &str = "1 burn-down (tasks process)";
const STEADY: &str = "2 steady (stask serve)";
const PEER: &str = "3 peer (effectum 0.7.0)";
const LIMIT: &str = "4 limit (raw SQLite)";
const MEMORY: &str = "9 memory (peak RSS)";

fn kb_to_mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

/// Creates `n` no-op demo tasks in one CLI call; returns the call's wall time.
fn create_noops(env: &Env, home: &Home, n: usize) -> Res<Duration> {
    let ran = run(
        env.stask(&home.root)
            .args(["tasks", "create", "demo", "noop", "--count", &n.to_string()]),
        Duration::from_secs(120) + Duration::from_millis(n as u64),
    )?;
    Ok(ran.wall)
}

/// 1: N no-op tasks created first, then `tasks process` runs them all.
pub fn burndown(env: &Env, rep: &mut Report) -> Res<()> {
    let n = env.n;
    let mut rates = Vec::new();
    let mut create_rates = Vec::new();
    let mut process_mb = Vec::new();
    let mut runner_mb = Vec::new();
    for i in 0..env.runs {
        let home = Home::create(env, &format!("burndown-{i}"), &[&env.demo_lib])?;
        let created = create_noops(env, &home, n)?;
        create_rates.push(n as f64 / created.as_secs_f64());
        let (ran, mem) = run_sampled(
            env.stask(&home.root).args(["tasks", "process", "--json"]),
            Duration::from_secs(120) + Duration::from_millis(2 * n as u64),
        )?;
        let summary = ran.json()?;
        let completed = summary["completed"].as_u64().unwrap_or(0) as usize;
        if completed != n {
            return Err(format!(
                "tasks process completed {completed} of {n} tasks: {summary}"
            ));
        }
        let rate = n as f64 / ran.wall.as_secs_f64();
        eprintln!(
            "  burn-down run {}: {:.0} tasks/s ({:.2} s), process {} kB, runner {} kB ({} runners)",
            i + 1,
            rate,
            ran.wall.as_secs_f64(),
            mem.main_kb,
            mem.runner_kb,
            mem.runners
        );
        rates.push(rate);
        process_mb.push(kb_to_mb(mem.main_kb));
        if mem.runners > 0 {
            runner_mb.push(kb_to_mb(mem.runner_kb));
        }
    }
    rep.add(
        Metric::new(
            "burndown.tasks_per_s",
            BURN,
            &format!("{n} no-op tasks, concurrency {}", env.cores),
            "tasks/s",
            rates,
        )
        .target(">= 30,000 tasks/s", Cmp::AtLeast, 30_000.0),
    );
    rep.add(
        Metric::new(
            "burndown.create_tasks_per_s",
            BURN,
            &format!("creating them (tasks create --count {n})"),
            "tasks/s",
            create_rates,
        )
        .note("one CLI call, one transaction, one log file per task"),
    );
    rep.add(Metric::new(
        "memory.process_mb",
        MEMORY,
        "tasks process (burn-down)",
        "MB",
        process_mb,
    ));
    rep.add(Metric::new(
        "memory.runner_mb",
        MEMORY,
        "one runner process (burn-down)",
        "MB",
        runner_mb,
    ));
    rep.detail(
        "burndown",
        json!({ "tasks": n, "concurrency": env.cores, "worker": "demo", "action": "noop" }),
    );
    Ok(())
}

/// 2: `stask serve` while two producers create tasks for a fixed time.
pub fn steady(env: &Env, rep: &mut Report) -> Res<()> {
    let secs: u64 = if env.quick { 10 } else { 30 };
    let warmup_ms: i64 = 1000;
    let batch = 500usize;
    // One producer per core: creating tasks (a process, a transaction and a log file
    // per task) is slower than running no-op ones, so one producer alone would measure
    // the producer.
    let producers = env.cores;
    let mut rates = Vec::new();
    let mut created_rates = Vec::new();
    let mut p50s = Vec::new();
    let mut p99s = Vec::new();
    let mut backlogs = Vec::new();
    let mut serve_mb = Vec::new();
    let mut runner_mb = Vec::new();
    for i in 0..env.runs {
        let home = Home::create(env, &format!("steady-{i}"), &[&env.demo_lib])?;
        let service = Service::start(env, &home)?;
        let created = AtomicUsize::new(0);
        let t0 = now_ms();
        let deadline = Instant::now() + Duration::from_secs(secs);
        let errors: Vec<String> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..producers)
                .map(|_| {
                    s.spawn(|| -> Res<()> {
                        while Instant::now() < deadline {
                            create_noops(env, &home, batch)?;
                            created.fetch_add(batch, Ordering::Relaxed);
                        }
                        Ok(())
                    })
                })
                .collect();
            handles
                .into_iter()
                .filter_map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err("producer panicked".into()))
                        .err()
                })
                .collect()
        });
        let t1 = now_ms();
        if let Some(e) = errors.first() {
            return Err(format!("producer failed: {e}"));
        }
        let conn = home.read_db()?;
        let backlog: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM tasks WHERE status = 'pending'",
                [],
                |r| r.get(0),
            )
            .ctx("count backlog")?;
        let mem = service.stop()?;
        let w0 = t0 + warmup_ms;
        let completed: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM tasks WHERE status = 'completed' AND finished_at >= ?1 AND finished_at < ?2",
                params![w0, t1],
                |r| r.get(0),
            )
            .ctx("count completed")?;
        let window_s = (t1 - w0) as f64 / 1000.0;
        let mut stmt = conn
            .prepare("SELECT started_at - created_at FROM tasks WHERE started_at >= ?1 AND started_at < ?2")
            .ctx("latency query")?;
        let waits: Vec<f64> = stmt
            .query_map(params![w0, t1], |r| r.get::<_, i64>(0))
            .ctx("latency query")?
            .filter_map(Result::ok)
            .map(|v| v as f64)
            .collect();
        let rate = completed as f64 / window_s;
        let made = created.load(Ordering::Relaxed);
        eprintln!(
            "  steady run {}: {:.0} completed/s, {:.0} created/s, backlog {backlog}, wait p50 {} ms p99 {} ms, serve {} kB",
            i + 1,
            rate,
            made as f64 / ((t1 - t0) as f64 / 1000.0),
            percentile(&waits, 50.0),
            percentile(&waits, 99.0),
            mem.main_kb
        );
        rates.push(rate);
        created_rates.push(made as f64 / ((t1 - t0) as f64 / 1000.0));
        p50s.push(percentile(&waits, 50.0));
        p99s.push(percentile(&waits, 99.0));
        backlogs.push(backlog as f64);
        serve_mb.push(kb_to_mb(mem.main_kb));
        if mem.runners > 0 {
            runner_mb.push(kb_to_mb(mem.runner_kb));
        }
    }
    let saturated = backlogs.iter().filter(|b| **b > 0.0).count();
    rep.add(
        Metric::new(
            "steady.completed_per_s",
            STEADY,
            &format!("completed while {producers} producers create ({secs} s)"),
            "tasks/s",
            rates,
        )
        .target(">= 30,000 tasks/s", Cmp::AtLeast, 30_000.0)
        .note(format!(
            "{saturated} of {} runs ended with a backlog (the service was the bound); in the others it kept up with the producers (they were the bound)",
            backlogs.len()
        )),
    );
    rep.add(Metric::new(
        "steady.created_per_s",
        STEADY,
        &format!("created by the producers (--count {batch} per call)"),
        "tasks/s",
        created_rates,
    ));
    rep.add(
        Metric::new(
            "steady.backlog",
            STEADY,
            "pending tasks when the producers stopped",
            "tasks",
            backlogs,
        )
        .note("> 0: the producers outpaced the service, so the waits below are queueing time"),
    );
    rep.add(Metric::new(
        "steady.wait_p50_ms",
        STEADY,
        "create-to-start wait p50 (tasks started in window)",
        "ms",
        p50s,
    ));
    rep.add(Metric::new(
        "steady.wait_p99_ms",
        STEADY,
        "create-to-start wait p99 (tasks started in window)",
        "ms",
        p99s,
    ));
    rep.add(
        Metric::new(
            "memory.serve_mb",
            MEMORY,
            "stask serve (steady)",
            "MB",
            serve_mb,
        )
        .target("< 50 MB", Cmp::Below, 50.0),
    );
    rep.add(Metric::new(
        "memory.serve_runner_mb",
        MEMORY,
        "one runner process (steady)",
        "MB",
        runner_mb,
    ));
    rep.detail(
        "steady",
        json!({
            "seconds": secs, "warmup_ms": warmup_ms, "producers": producers,
            "tasks_per_create_call": batch, "concurrency": env.cores,
        }),
    );
    Ok(())
}

/// Jobs of the as-published (rollback-journal) effectum runs: it runs at a few
/// hundred jobs per second (every commit syncs its journal), and its rate does not
/// depend on the count, so more jobs would only make the run longer.
const PUBLISHED_JOBS: usize = 2_000;

/// 3: the same burn-down on effectum, as published and with WAL prepared.
pub fn peer(env: &Env, rep: &mut Report) -> Res<()> {
    let mut figures = Vec::new();
    for (key, label, wal) in [
        (
            "published",
            "effectum as published (rollback journal)",
            false,
        ),
        ("wal", "effectum with WAL prepared", true),
    ] {
        let n = if wal {
            env.n
        } else {
            env.n.min(PUBLISHED_JOBS)
        };
        let mut rates = Vec::new();
        let mut mbs = Vec::new();
        let mut modes = Vec::new();
        for i in 0..env.runs {
            let dir = env.work.join(format!("peer-{key}-{i}"));
            discard(&dir);
            std::fs::create_dir_all(&dir).ctx("create peer directory")?;
            let db = dir.join("effectum.db");
            let mut cmd = std::process::Command::new(&env.peer);
            cmd.arg("--db").arg(&db).args([
                "--jobs",
                &n.to_string(),
                "--concurrency",
                &env.cores.to_string(),
            ]);
            if wal {
                cmd.arg("--wal");
            }
            let result = run(
                &mut cmd,
                Duration::from_secs(120) + Duration::from_millis(10 * n as u64),
            );
            discard(&dir);
            let out = result?.json()?;
            if out["finished"].as_u64() != Some(n as u64) {
                return Err(format!("effectum finished fewer jobs than {n}: {out}"));
            }
            let rate = out["tasks_per_s"].as_f64().unwrap_or(f64::NAN);
            let mode = out["journal_mode"].as_str().unwrap_or("?").to_owned();
            eprintln!(
                "  effectum {key} run {}: {rate:.0} jobs/s (journal_mode {mode})",
                i + 1
            );
            rates.push(rate);
            mbs.push(out["peak_rss_kb"].as_f64().unwrap_or(f64::NAN) / 1024.0);
            modes.push(mode);
        }
        let expected = if wal { "wal" } else { "delete" };
        let note = format!("journal_mode read back: {}", modes.join(", "));
        if modes.iter().any(|m| m != expected) {
            eprintln!(
                "  warning: effectum {key} ran with journal_mode {modes:?}, expected {expected}"
            );
        }
        let m = Metric::new(
            &format!("peer.{key}.tasks_per_s"),
            PEER,
            &format!("{label}, {n} no-op jobs"),
            "tasks/s",
            rates,
        )
        .note(note);
        figures.push((key, m.median, m.min, m.max));
        rep.add(m);
        rep.add(Metric::new(
            &format!("memory.peer_{key}_mb"),
            MEMORY,
            &format!("effectum process ({key})"),
            "MB",
            mbs,
        ));
    }
    if let Some(s) = rep.get("burndown.tasks_per_s").cloned() {
        for (key, med, lo, hi) in figures {
            let mut m = Metric::derived(
                &format!("ratio.stask_over_effectum_{key}"),
                PEER,
                &format!("stask burn-down / effectum {key}"),
                "x",
                s.median / med,
                s.min / hi,
                s.max / lo,
            )
            .note("median / median; min and max pair the worst and best runs");
            if key == "wal" {
                m = m.target(">= 1.5x", Cmp::AtLeast, 1.5);
            }
            rep.add(m);
        }
    }
    rep.detail(
        "peer",
        json!({
            "crate": "effectum 0.7.0", "jobs_wal": env.n,
            "jobs_published": env.n.min(PUBLISHED_JOBS), "max_concurrency": env.cores,
            "min_concurrency": env.cores, "tokio_runtime": "multi_thread",
            "tokio_worker_threads": env.cores, "autoheartbeat": false,
            "add_jobs_chunk": 10_000,
        }),
    );
    Ok(())
}

/// The columns the engine's claim returns.
const COLUMNS: &str = "id, worker, action, status, priority, progress, processed, total, message,
    data, result, error, started_by, attempts, max_attempts, run_after, created_at, started_at,
    finished_at, heartbeat_at, owner, cancel_requested";

fn claim_sql(indexed: bool) -> String {
    let hint = if indexed {
        " INDEXED BY tasks_claim"
    } else {
        ""
    };
    format!(
        "UPDATE tasks SET status = 'running', attempts = attempts + 1, owner = ?1,
            started_at = ?2, heartbeat_at = ?2, finished_at = NULL,
            cancel_requested = 0, progress = 0, processed = 0, total = 0, message = 'Started'
         WHERE id IN (SELECT t.id FROM tasks t{hint} JOIN workers w ON w.identifier = t.worker
                      WHERE t.status = 'pending' AND t.run_after <= ?2 AND w.active = 1
                      ORDER BY t.priority, t.id LIMIT ?3)
         RETURNING {COLUMNS}"
    )
}

const FINISH_SQL: &str = "UPDATE tasks SET status = 'completed', result = 'null', error = NULL,
        progress = 100, processed = 0, total = 0, message = ?3, finished_at = ?4, run_after = 0,
        owner = NULL, cancel_requested = 0
     WHERE id = ?1 AND owner = ?2 AND status = 'running'";

/// Claims and completes every task with plain SQL, `batch` at a time; returns the
/// wall time. With `logs`, appends the start and end lines to each task's log as the
/// engine does.
fn raw_burn(db: &Path, batch: usize, log_dir: Option<&Path>) -> Res<Duration> {
    let mut conn = Connection::open(db).ctx("open")?;
    conn.busy_timeout(Duration::from_secs(10))
        .ctx("busy timeout")?;
    conn.pragma_update(None, "journal_mode", "WAL").ctx("WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")
        .ctx("synchronous")?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .ctx("foreign keys")?;
    // As stask's storage does for claims and finishes: no statistics triggers; the
    // statistics tables are updated once per batch below.
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_TRIGGER,
        false,
    )
    .ctx("triggers off")?;
    let indexed = conn.prepare(&claim_sql(true)).is_ok();
    let claim = claim_sql(indexed);
    let owner = "bench/limit";
    let started = Instant::now();
    loop {
        let now = now_ms();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .ctx("begin claim")?;
        let claimed: Vec<(i64, String)> = {
            let mut stmt = tx.prepare_cached(&claim).ctx("claim")?;
            let rows = stmt
                .query_map(params![owner, now, batch as i64], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .ctx("claim")?;
            rows.collect::<Result<_, _>>().ctx("claim")?
        };
        if let Some((_, worker)) = claimed.first() {
            // What a runner needs from the worker's registration, once per batch.
            let _: (String, String, String) = tx
                .prepare_cached(
                    "SELECT library_path, settings, manifest FROM workers WHERE identifier = ?1",
                )
                .ctx("worker")?
                .query_row([worker], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .ctx("worker")?;
        }
        tx.commit().ctx("commit claim")?;
        if claimed.is_empty() {
            break;
        }
        if let Some(dir) = log_dir {
            for (id, _) in &claimed {
                let line = LogLine::new("running", 0, 0, 0, "", "Started attempt 1 of 3");
                progress_log::append(&dir.join(format!("{id}.log")), &[line]).ctx("log")?;
            }
        }
        let now = now_ms();
        if let Some(dir) = log_dir {
            for (id, _) in &claimed {
                let line = LogLine::new(
                    "completed",
                    100,
                    0,
                    0,
                    "0s",
                    "Task completed successfully (1ms)",
                );
                progress_log::append(&dir.join(format!("{id}.log")), &[line]).ctx("log")?;
            }
        }
        let tx = conn.transaction().ctx("begin finish")?;
        {
            let mut stmt = tx.prepare_cached(FINISH_SQL).ctx("finish")?;
            for (id, _) in &claimed {
                stmt.execute(params![id, owner, "Task completed successfully (1ms)", now])
                    .ctx("finish")?;
            }
            // The batch's statistics (every task here is a demo task that completed).
            let (k, worker) = (claimed.len() as i64, &claimed[0].1);
            tx.execute(
                "UPDATE task_counts SET n = n - ?2 WHERE worker = ?1 AND status = 'pending'",
                params![worker, k],
            )
            .ctx("count")?;
            tx.execute(
                "INSERT INTO task_counts (worker, status, n, runs) VALUES (?1, 'completed', ?2, ?2)
                 ON CONFLICT (worker, status) DO UPDATE SET n = n + excluded.n,
                    runs = runs + excluded.runs",
                params![worker, k],
            )
            .ctx("count")?;
            tx.execute(
                "INSERT INTO task_activity (bucket, worker, completed, runs) VALUES (?1, ?2, ?3, ?3)
                 ON CONFLICT (bucket, worker) DO UPDATE SET
                    completed = completed + excluded.completed, runs = runs + excluded.runs",
                params![now / 900_000 * 900_000, worker, k],
            )
            .ctx("count")?;
            tx.execute(
                "INSERT INTO worker_activity (worker, last_finished_at) VALUES (?1, ?2)
                 ON CONFLICT (worker) DO UPDATE SET last_finished_at = excluded.last_finished_at",
                params![worker, now],
            )
            .ctx("count")?;
        }
        tx.commit().ctx("commit finish")?;
    }
    Ok(started.elapsed())
}

/// The same loop through stask's storage layer (`claim_tasks` + `finish_tasks`).
fn storage_burn(db: &Path, batch: usize) -> Res<Duration> {
    let mut store = Store::open(db).ctx("open store")?;
    let owner = "bench/storage";
    let started = Instant::now();
    loop {
        let claimed = store.claim_tasks(owner, now_ms(), batch).ctx("claim")?;
        if claimed.is_empty() {
            break;
        }
        let now = now_ms();
        let finishes: Vec<Finish> = claimed
            .iter()
            .map(|c| Finish {
                id: c.task.id,
                owner: owner.to_owned(),
                outcome: Outcome::Completed {
                    result: "null".into(),
                },
                progress: 100,
                processed: 0,
                total: 0,
                message: "Task completed successfully (1ms)".into(),
                at: now,
            })
            .collect();
        store.finish_tasks(&finishes).ctx("finish")?;
    }
    Ok(started.elapsed())
}

fn count_completed(db: &Path) -> Res<i64> {
    let conn = Connection::open(db).ctx("open")?;
    conn.query_row(
        "SELECT COUNT(*) FROM tasks WHERE status = 'completed'",
        [],
        |r| r.get(0),
    )
    .ctx("count")
}

/// 4: the raw SQLite cost of claiming and completing N rows.
pub fn limit(env: &Env, rep: &mut Report) -> Res<()> {
    let n = env.n;
    // One home with N tasks; every run works on a fresh copy of its database.
    let src = Home::create(env, "limit-src", &[&env.demo_lib])?;
    create_noops(env, &src, n)?;
    {
        let conn = Connection::open(src.db()).ctx("open")?;
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .ctx("checkpoint")?;
    }
    // The engine claims one task per idle slot, plus up to 128 more per slot for its
    // pipelines once a kind of task is known to be fast: claims of cores x 128.
    let wide = env.cores * 128;
    let variants: [(&str, String, usize, u8); 4] = [
        (
            "limit.tasks_per_s",
            format!("raw SQL, claims of {wide} (cores x 128, as the engine)"),
            wide,
            0,
        ),
        (
            "limit.with_logs",
            format!("raw SQL, claims of {wide}, + 2 log appends/task"),
            wide,
            1,
        ),
        (
            "limit.storage_layer",
            format!("stask_storage claim_tasks/finish_tasks, {wide}"),
            wide,
            2,
        ),
        (
            "limit.claims_of_cores",
            format!("raw SQL, claims of {} (one per slot)", env.cores),
            env.cores,
            0,
        ),
    ];
    for (key, label, batch, kind) in variants {
        let mut rates = Vec::new();
        for i in 0..env.runs {
            let dir = env.work.join(format!("limit-{i}"));
            discard(&dir);
            std::fs::create_dir_all(dir.join("logs")).ctx("create limit directory")?;
            let db = dir.join("stask.db");
            std::fs::copy(src.db(), &db).ctx("copy database")?;
            if kind == 1 {
                // The engine appends to logs that `tasks create` already wrote.
                for id in 1..=n {
                    let line =
                        LogLine::new("pending", 0, 0, 0, "", "Task created (priority normal)");
                    progress_log::append(&dir.join("logs").join(format!("{id}.log")), &[line])
                        .ctx("create log")?;
                }
            }
            let took = match kind {
                0 => raw_burn(&db, batch, None),
                1 => raw_burn(&db, batch, Some(&dir.join("logs"))),
                _ => storage_burn(&db, batch),
            };
            let done = count_completed(&db);
            discard(&dir);
            let took = took?;
            if done? != n as i64 {
                return Err(format!("{key}: not every task was completed"));
            }
            rates.push(n as f64 / took.as_secs_f64());
        }
        eprintln!("  {key}: {:.0} tasks/s", crate::util::median(&rates));
        rep.add(Metric::new(
            key,
            LIMIT,
            &format!("{label}, {n} rows"),
            "tasks/s",
            rates,
        ));
    }
    if let (Some(s), Some(l)) = (
        rep.get("burndown.tasks_per_s").cloned(),
        rep.get("limit.tasks_per_s").cloned(),
    ) {
        rep.add(
            Metric::derived(
                "ratio.stask_over_limit",
                LIMIT,
                "stask burn-down / limit",
                "x",
                s.median / l.median,
                s.min / l.max,
                s.max / l.min,
            )
            .note("1.0 would mean the engine costs nothing beyond SQLite"),
        );
    }
    rep.detail(
        "limit",
        json!({ "rows": n, "journal_mode": "wal", "synchronous": "normal",
                "claim_batch": wide, "schema": "stask's own (created by stask init)" }),
    );
    Ok(())
}
