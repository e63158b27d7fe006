//! Throughput: burn-down through `stask tasks process`, steady state under `stask serve`,
//! and the same burn-down on effectum (the peer).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rusqlite::params;
use serde_json::json;

use crate::report::{Cmp, Metric, Report};
use crate::util::{discard, now_ms, percentile, run, run_sampled, Ctx, Env, Home, Res, Service};

const BURN: &str = "1 burn-down (tasks process)";
const STEADY: &str = "2 steady (stask serve)";
const PEER: &str = "3 peer (effectum 0.7.0)";
const MEMORY: &str = "9 memory (peak RSS)";

fn kb_to_mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

/// Creates `n` no-op demo tasks in one CLI call; returns the call's wall time.
pub(crate) fn create_noops(env: &Env, home: &Home, n: usize) -> Res<Duration> {
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
    if let (Some(s), Some(c)) = (
        rep.get("steady.completed_per_s").cloned(),
        rep.get("limit.steady_ceiling").cloned(),
    ) {
        rep.add(
            Metric::ratio(
                "ratio.steady_over_ceiling",
                STEADY,
                "steady / the limit's steady ceiling (section 4)",
                &s,
                &c,
            )
            .note("what the CLI processes, runners, messages and engine cost beyond raw SQL and file calls"),
        );
    }
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
        figures.push((key, m.clone()));
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
        for (key, peer) in figures {
            let mut m = Metric::ratio(
                &format!("ratio.stask_over_effectum_{key}"),
                PEER,
                &format!("stask burn-down / effectum {key}"),
                &s,
                &peer,
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
