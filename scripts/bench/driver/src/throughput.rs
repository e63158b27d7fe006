//! Throughput: burn-down through `stask tasks process`, steady state under `stask serve`,
//! and the same burn-down on effectum (the peer).

use std::time::{Duration, Instant};

use serde_json::json;
use stask_storage::{Status, TaskFilter};

use crate::report::{Cmp, Metric, Report};
use crate::util::{
    discard, now_ms, percentile, produce_until, run, run_sampled, Ctx, Env, Home, Res, Service,
};

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
        .note("one CLI call, one transaction, the creation lines stored with the tasks"),
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
    // One producer per core: creating tasks (a process and a transaction per call) is
    // slower than running no-op ones, so one producer alone would measure the producer.
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
        let t0 = now_ms();
        let deadline = Instant::now() + Duration::from_secs(secs);
        let created = produce_until(deadline, producers, batch, || {
            create_noops(env, &home, batch).map(|_| ())
        });
        let t1 = now_ms();
        let created = created?;
        // Read through the storage API (no SQL in the driver): the backlog from the
        // kept counts now, the rest from every task's record once the service stopped.
        let backlog = home
            .store()?
            .task_status_counts()
            .ctx("count backlog")?
            .pending;
        let mem = service.stop()?;
        let w0 = t0 + warmup_ms;
        let tasks = home
            .store()?
            .list_tasks(&TaskFilter::default())
            .ctx("list tasks")?;
        let completed = tasks
            .iter()
            .filter(|t| t.status == Status::Completed)
            .filter(|t| t.finished_at.is_some_and(|f| f >= w0 && f < t1))
            .count();
        let window_s = (t1 - w0) as f64 / 1000.0;
        let waits: Vec<f64> = tasks
            .iter()
            .filter_map(|t| Some((t.started_at?, t.created_at)))
            .filter(|(s, _)| *s >= w0 && *s < t1)
            .map(|(s, c)| (s - c) as f64)
            .collect();
        drop(tasks);
        let rate = completed as f64 / window_s;
        let made = created;
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
    // One batch per producer may be waiting at any time while the service keeps up.
    let saturated = backlogs
        .iter()
        .filter(|b| **b > (batch * producers) as f64)
        .count();
    rep.add(
        Metric::new(
            "steady.tasks_per_s",
            STEADY,
            &format!("completed while {producers} producers create ({secs} s)"),
            "tasks/s",
            rates,
        )
        .target(">= 40,000 tasks/s", Cmp::AtLeast, 40_000.0)
        .note(format!(
            "{saturated} of {} runs ended with a backlog above one batch per producer (the service was the bound); in the others it kept up with the producers (they were the bound)",
            backlogs.len()
        )),
    );
    if let (Some(s), Some(c)) = (
        rep.get("steady.tasks_per_s").cloned(),
        rep.get("limit.steady_ceiling").cloned(),
    ) {
        rep.add(
            Metric::ratio(
                "ratio.steady_over_ceiling",
                STEADY,
                "steady / the storage ceiling (section 4)",
                &s,
                &c,
            )
            .note("what the CLI processes, runners, messages and engine cost beyond the store's own writes"),
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
    // Waits of a run whose producers outpace the service are queueing time: the
    // issue's latency targets hold at a rate the service sustains, which the paced run
    // below (section 2b) measures.
    rep.add(
        Metric::new(
            "steady.wait_p50_ms",
            STEADY,
            "create-to-start wait p50 (tasks started in window)",
            "ms",
            p50s,
        )
        .note("started_at - created_at; a batch of 500 shares one created_at, so its last task waits for the 499 before it; with a backlog, queueing time (the target is judged at a sustained rate: steady_paced)"),
    );
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

const PACED: &str = "2b steady, paced (stask serve)";

/// Creation rate of the paced run when the steady run did not run before it.
const PACED_DEFAULT_RATE: f64 = 10_000.0;

/// 2b: create-to-start at a creation rate the service sustains: `cores` producers call
/// `tasks create demo noop --count 100` on a fixed schedule, together at half the rate
/// the steady run (section 2) completed, for as long as that run; the waits of the
/// tasks created in the window (after the same warm-up) are the figures.
pub fn steady_paced(env: &Env, rep: &mut Report) -> Res<()> {
    let secs: u64 = if env.quick { 10 } else { 30 };
    let warmup_ms: i64 = 1000;
    let batch = 100usize;
    let producers = env.cores;
    let (rate, rate_from) = match rep.get("steady.tasks_per_s") {
        Some(m) if m.median.is_finite() && m.median > 0.0 => {
            (m.median / 2.0, "half of steady.tasks_per_s (this run)")
        }
        _ => (
            PACED_DEFAULT_RATE,
            "default (the steady benchmark did not run first)",
        ),
    };
    let interval = Duration::from_secs_f64(batch as f64 / rate);
    let (mut p50s, mut p99s, mut created_rates, mut backlogs, mut lates) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..env.runs {
        let home = Home::create(env, &format!("paced-{i}"), &[&env.demo_lib])?;
        let service = Service::start(env, &home)?;
        let t0 = now_ms();
        let start = Instant::now();
        // One producer per core, each calling on its own schedule (staggered by one
        // interval), so a slow call delays only its own producer's next one.
        let results: Vec<Res<(u32, u32)>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..producers)
                .map(|p| {
                    let home = &home;
                    s.spawn(move || -> Res<(u32, u32)> {
                        let (mut calls, mut late) = (0u32, 0u32);
                        while start.elapsed() < Duration::from_secs(secs) {
                            let due = start + interval * (calls * producers as u32 + p as u32);
                            let now = Instant::now();
                            if due > now {
                                std::thread::sleep(due - now);
                            } else if now - due > interval * producers as u32 {
                                late += 1;
                            }
                            create_noops(env, home, batch)?;
                            calls += 1;
                        }
                        Ok((calls, late))
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| Err("producer panicked".into())))
                .collect()
        });
        let (mut calls, mut late) = (0u32, 0u32);
        for r in results {
            let (c, l) = r?;
            calls += c;
            late += l;
        }
        let t1 = now_ms();
        let store = home.store()?;
        let backlog = store.task_status_counts().ctx("counts")?.pending;
        // Let the last batches start before the service stops.
        let deadline = Instant::now() + Duration::from_secs(30);
        while store.task_status_counts().ctx("counts")?.pending > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        drop(store);
        service.stop()?;
        let w0 = t0 + warmup_ms;
        let tasks = home
            .store()?
            .list_tasks(&TaskFilter::default())
            .ctx("list tasks")?;
        let waits: Vec<f64> = tasks
            .iter()
            .filter(|t| t.created_at >= w0 && t.created_at < t1)
            .filter_map(|t| Some((t.started_at? - t.created_at) as f64))
            .collect();
        let made = calls as f64 * batch as f64 / ((t1 - t0) as f64 / 1000.0);
        eprintln!(
            "  paced run {}: {made:.0} created/s (aim {rate:.0}), {} late calls of {calls}, backlog {backlog} at the end, wait p50 {} ms p99 {} ms ({} tasks)",
            i + 1,
            late,
            percentile(&waits, 50.0),
            percentile(&waits, 99.0),
            waits.len()
        );
        p50s.push(percentile(&waits, 50.0));
        p99s.push(percentile(&waits, 99.0));
        created_rates.push(made);
        backlogs.push(backlog as f64);
        lates.push(late as f64);
    }
    rep.add(
        Metric::new(
            "steady.paced.created_per_s",
            PACED,
            &format!("created at a steady rate ({rate_from}), --count {batch} per call"),
            "tasks/s",
            created_rates,
        )
        .note(format!(
            "aimed at {rate:.0} tasks/s: one call every {:.1} ms",
            interval.as_secs_f64() * 1000.0
        )),
    );
    rep.add(
        Metric::new(
            "steady.paced.backlog",
            PACED,
            "pending tasks when the producer stopped",
            "tasks",
            backlogs,
        )
        .note("about one batch or less: the service sustained the rate"),
    );
    rep.add(
        Metric::new(
            "steady.paced.wait_p50_ms",
            PACED,
            "create-to-start wait p50 (tasks created in window)",
            "ms",
            p50s,
        )
        .target("p50 < 20 ms", Cmp::Below, 20.0)
        .note(format!(
            "started_at - created_at (whole ms); a call's {batch} tasks share one created_at"
        )),
    );
    rep.add(
        Metric::new(
            "steady.paced.wait_p99_ms",
            PACED,
            "create-to-start wait p99 (tasks created in window)",
            "ms",
            p99s,
        )
        .target("p99 < 200 ms", Cmp::Below, 200.0),
    );
    rep.add(Metric::new(
        "steady.paced.late_calls",
        PACED,
        "producer calls that started more than their own interval late",
        "calls",
        lates,
    ));
    rep.detail(
        "steady_paced",
        json!({ "seconds": secs, "warmup_ms": warmup_ms, "producers": producers,
                "tasks_per_create_call": batch, "aimed_rate": rate, "rate_from": rate_from,
                "window": "tasks created from warmup_ms after the start until the producer stops" }),
    );
    Ok(())
}

/// Jobs of the as-published (rollback-journal) effectum runs: it runs at a few
/// hundred jobs per second (every commit syncs its journal), and its rate does not
/// depend on the count, so more jobs would only make the run longer.
const PUBLISHED_JOBS: usize = 2_000;

/// Max concurrency of the peer's WAL burn-down configurations. effectum's one writer
/// thread commits up to 50 queued operations (job completions, fetches) per
/// transaction, so the more jobs run at once, the more each commit carries: 2 (the
/// cores of the machine the figures come from, the only configuration measured
/// before), 20 (the per-worker maximum of effectum's stress test) and 200.
const PEER_CONCURRENCY: [usize; 3] = [2, 20, 200];

/// The tokio runtimes of the WAL configurations: the peer's `--runtime`, and a label.
/// The multi-threaded one has one worker thread per core (tokio's default).
const PEER_RUNTIMES: [(&str, &str); 2] = [("current", "current-thread"), ("multi", "multi-thread")];

/// `min_concurrency` of every WAL configuration and of the steady run. An effectum
/// worker fetches jobs only while fewer than `min_concurrency` of its jobs run, and
/// then up to `max_concurrency` minus those running. With the default (min = max) every
/// job that ends sends one fetch, for about one job, through the writer thread; with 1
/// the worker lets its jobs drain and fetches `max_concurrency` jobs in one query. On
/// the 2-core machine 1 was ~12 % faster at concurrency 2, 15-30 % at 20, and the same
/// within noise at 200 (there completions come back in groups, so fetches are batched
/// either way); never slower.
const PEER_MIN_CONCURRENCY: usize = 1;

/// Why [`PEER_MIN_CONCURRENCY`] (for the JSON details).
const PEER_MIN_CONCURRENCY_WHY: &str = "an effectum worker fetches only while fewer than \
    min_concurrency jobs run, up to max_concurrency minus those running: the default \
    (min = max) sends one fetch through the single writer thread per finished job, 1 \
    fetches a full batch once the worker's jobs have drained; measured on the 2-core \
    machine: ~12 % faster at concurrency 2, 15-30 % at 20, equal within noise at 200";

/// One configuration of the peer's burn-down over `env.runs` runs.
struct PeerRuns {
    rates: Vec<f64>,
    mbs: Vec<f64>,
    /// The journal mode each run's database was in, read back afterwards.
    modes: Vec<String>,
}

/// Runs the peer's burn-down `env.runs` times, each on a fresh database: `n` jobs and
/// `args` (concurrency, journal, runtime).
fn peer_burndown(env: &Env, key: &str, n: usize, args: &[&str]) -> Res<PeerRuns> {
    let mut out = PeerRuns {
        rates: Vec::new(),
        mbs: Vec::new(),
        modes: Vec::new(),
    };
    for i in 0..env.runs {
        let dir = env.work.join(format!("peer-{key}-{i}"));
        discard(&dir);
        std::fs::create_dir_all(&dir).ctx("create peer directory")?;
        let mut cmd = std::process::Command::new(&env.peer);
        cmd.arg("--db")
            .arg(dir.join("effectum.db"))
            .args(["--jobs", &n.to_string()])
            .args(args);
        let result = run(
            &mut cmd,
            Duration::from_secs(120) + Duration::from_millis(10 * n as u64),
        );
        discard(&dir);
        let ran = result?.json()?;
        if ran["finished"].as_u64() != Some(n as u64) {
            return Err(format!(
                "effectum {key} finished fewer jobs than {n}: {ran}"
            ));
        }
        let rate = ran["tasks_per_s"].as_f64().unwrap_or(f64::NAN);
        let mode = ran["journal_mode"].as_str().unwrap_or("?").to_owned();
        eprintln!(
            "  effectum {key} run {}: {rate:.0} jobs/s (journal_mode {mode})",
            i + 1
        );
        out.rates.push(rate);
        out.mbs
            .push(ran["peak_rss_kb"].as_f64().unwrap_or(f64::NAN) / 1024.0);
        out.modes.push(mode);
    }
    Ok(out)
}

/// The journal modes read back, as a metric note; warns when one is not `expected`.
fn journal_note(key: &str, modes: &[String], expected: &str) -> String {
    if modes.iter().any(|m| m != expected) {
        eprintln!("  warning: effectum {key} ran with journal_mode {modes:?}, expected {expected}");
    }
    format!("journal_mode read back: {}", modes.join(", "))
}

/// 3: the same burn-down on effectum: as published, and with WAL prepared at three
/// concurrencies on both tokio runtimes; the best of those is the figure to beat.
pub fn peer(env: &Env, rep: &mut Report) -> Res<()> {
    let n_published = env.n.min(PUBLISHED_JOBS);
    let cores = env.cores.to_string();
    let runs = peer_burndown(env, "published", n_published, &["--concurrency", &cores])?;
    let published = Metric::new(
        "peer.published.tasks_per_s",
        PEER,
        &format!("effectum as published (rollback journal), {n_published} no-op jobs"),
        "tasks/s",
        runs.rates,
    )
    .note(journal_note("published", &runs.modes, "delete"));
    rep.add(published.clone());
    rep.add(Metric::new(
        "memory.peer_published_mb",
        MEMORY,
        "effectum process (published)",
        "MB",
        runs.mbs,
    ));

    // (configuration key, its metric, its peak RSS figures)
    let mut wal: Vec<(String, Metric, Vec<f64>)> = Vec::new();
    let min = PEER_MIN_CONCURRENCY.to_string();
    for c in PEER_CONCURRENCY {
        for (runtime, runtime_label) in PEER_RUNTIMES {
            let key = format!("wal_c{c}_{runtime}");
            let c_arg = c.to_string();
            let args = [
                "--wal",
                "--concurrency",
                &c_arg,
                "--min-concurrency",
                &min,
                "--runtime",
                runtime,
            ];
            let runs = peer_burndown(env, &key, env.n, &args)?;
            let m = Metric::new(
                &format!("peer.{key}.tasks_per_s"),
                PEER,
                &format!(
                    "effectum with WAL, concurrency {c}, {runtime_label} runtime, {} no-op jobs",
                    env.n
                ),
                "tasks/s",
                runs.rates,
            )
            .note(journal_note(&key, &runs.modes, "wal"));
            rep.add(m.clone());
            wal.push((key, m, runs.mbs));
        }
    }
    let (best_key, best, best_mb) = wal
        .iter()
        .filter(|(_, m, _)| !m.median.is_nan())
        .max_by(|a, b| a.1.median.total_cmp(&b.1.median))
        .cloned()
        .ok_or("no WAL configuration of effectum gave a figure")?;
    let best = Metric::new(
        "peer.best.tasks_per_s",
        PEER,
        &format!("effectum at its best: {}", best.label),
        "tasks/s",
        best.runs.clone(),
    )
    .note(format!(
        "the WAL configuration with the highest median of the {} above (peer.{best_key}); \
         min_concurrency {PEER_MIN_CONCURRENCY} in all of them",
        wal.len()
    ));
    rep.add(best.clone());
    rep.add(Metric::new(
        "memory.peer_best_mb",
        MEMORY,
        &format!("effectum process (best: {best_key})"),
        "MB",
        best_mb,
    ));

    if let Some(s) = rep.get("burndown.tasks_per_s").cloned() {
        let note = "median / median; min and max pair the worst and best runs";
        rep.add(
            Metric::ratio(
                "ratio.stask_over_effectum_published",
                PEER,
                "stask burn-down / effectum published",
                &s,
                &published,
            )
            .note(note),
        );
        if let Some((_, c2, _)) = wal.iter().find(|(k, _, _)| k == "wal_c2_multi") {
            rep.add(
                Metric::ratio(
                    "ratio.stask_over_effectum_wal",
                    PEER,
                    "stask burn-down / effectum wal, concurrency 2, multi-thread",
                    &s,
                    c2,
                )
                .note(format!(
                    "{note}; the configuration compared before, kept for history (the target is on the best)"
                )),
            );
        }
        rep.add(
            Metric::ratio(
                "ratio.stask_over_effectum_best",
                PEER,
                &format!("stask burn-down / effectum at its best ({best_key})"),
                &s,
                &best,
            )
            .target(">= 1.5x", Cmp::AtLeast, 1.5)
            .note(note),
        );
    }
    rep.detail(
        "peer",
        json!({
            "crate": "effectum 0.7.0", "autoheartbeat": false, "add_jobs_chunk": 10_000,
            "jobs_published": n_published,
            "published": {
                "max_concurrency": env.cores, "min_concurrency": env.cores,
                "tokio_runtime": "multi_thread", "tokio_worker_threads": env.cores,
            },
            "jobs_wal": env.n,
            "wal": {
                "max_concurrency": PEER_CONCURRENCY,
                "tokio_runtimes": ["current_thread", "multi_thread"],
                "tokio_worker_threads_multi_thread": env.cores,
                "min_concurrency": PEER_MIN_CONCURRENCY,
                "min_concurrency_why": PEER_MIN_CONCURRENCY_WHY,
            },
            "best": best_key,
            "medians": wal.iter().map(|(k, m, _)| (k.clone(), json!(m.median))).collect::<serde_json::Map<_, _>>(),
        }),
    );
    Ok(())
}

/// The shape of effectum's own stress test (`stress_test/src/main.rs` in
/// github.com/dimfeld/effectum): workers, the max concurrency of each, submitter tasks,
/// jobs per `add_jobs` call. The runtime is its default build's (current-thread).
const STRESS_WORKERS: usize = 10;
const STRESS_CONCURRENCY: usize = 20;
const STRESS_SUBMITTERS: usize = 10;
const STRESS_BATCH: usize = 20;

/// 3: effectum under a steady load in the shape of its stress test, for as long as
/// stask's steady benchmark and with the same warm-up.
pub fn peer_steady(env: &Env, rep: &mut Report) -> Res<()> {
    // As in `steady`: the producers run `secs`, the window starts `warmup_ms` after them.
    let secs: u64 = if env.quick { 10 } else { 30 };
    let warmup_ms: u64 = 1000;
    let window_s = (secs * 1000 - warmup_ms) as f64 / 1000.0;
    let mut rates = Vec::new();
    let mut submitted_rates = Vec::new();
    let mut backlogs = Vec::new();
    let mut mbs = Vec::new();
    let mut modes = Vec::new();
    for i in 0..env.runs {
        let dir = env.work.join(format!("peer-steady-{i}"));
        discard(&dir);
        std::fs::create_dir_all(&dir).ctx("create peer directory")?;
        let mut cmd = std::process::Command::new(&env.peer);
        cmd.args(["--mode", "steady", "--wal", "--runtime", "current"])
            .arg("--db")
            .arg(dir.join("effectum.db"))
            .args(["--seconds", &window_s.to_string()])
            .args(["--warmup-ms", &warmup_ms.to_string()])
            .args(["--workers", &STRESS_WORKERS.to_string()])
            .args(["--concurrency", &STRESS_CONCURRENCY.to_string()])
            .args(["--min-concurrency", &PEER_MIN_CONCURRENCY.to_string()])
            .args(["--submitters", &STRESS_SUBMITTERS.to_string()])
            .args(["--batch", &STRESS_BATCH.to_string()]);
        let result = run(&mut cmd, Duration::from_secs(secs + 120));
        // A few large files (hundreds of MB: the submitters outpace the workers).
        discard(&dir);
        let out = result?.json()?;
        let rate = out["tasks_per_s"].as_f64().unwrap_or(f64::NAN);
        let submitted = out["submitted_per_s"].as_f64().unwrap_or(f64::NAN);
        let backlog = out["backlog"].as_f64().unwrap_or(f64::NAN);
        let mode = out["journal_mode"].as_str().unwrap_or("?").to_owned();
        eprintln!(
            "  effectum steady run {}: {rate:.0} finished/s, {submitted:.0} submitted/s, backlog {backlog:.0} (journal_mode {mode})",
            i + 1
        );
        rates.push(rate);
        submitted_rates.push(submitted);
        backlogs.push(backlog);
        mbs.push(out["peak_rss_kb"].as_f64().unwrap_or(f64::NAN) / 1024.0);
        modes.push(mode);
    }
    let shape = format!(
        "{STRESS_WORKERS} workers x {STRESS_CONCURRENCY}, {STRESS_SUBMITTERS} submitters x {STRESS_BATCH} jobs per add_jobs"
    );
    let steady = Metric::new(
        "peer.steady.tasks_per_s",
        PEER,
        &format!("effectum steady with WAL: finished while {shape} ({secs} s)"),
        "tasks/s",
        rates,
    )
    .note(format!(
        "finished in the {window_s} s after a {warmup_ms} ms warm-up; min_concurrency {PEER_MIN_CONCURRENCY}, current-thread runtime; {}",
        journal_note("steady", &modes, "wal")
    ));
    rep.add(steady.clone());
    rep.add(Metric::new(
        "peer.steady.submitted_per_s",
        PEER,
        "effectum steady: jobs added by the submitters",
        "tasks/s",
        submitted_rates,
    ));
    rep.add(
        Metric::new(
            "peer.steady.backlog",
            PEER,
            "effectum steady: jobs added and not finished at the window's end",
            "tasks",
            backlogs,
        )
        .note("> 0: the submitters outpaced the workers, so the workers were the bound"),
    );
    rep.add(Metric::new(
        "memory.peer_steady_mb",
        MEMORY,
        "effectum process (steady)",
        "MB",
        mbs,
    ));
    // stask's steady figure (section 2), when it ran before this.
    let stask = ["steady.tasks_per_s", "steady.completed_per_s"]
        .iter()
        .find_map(|k| rep.get(k).cloned());
    if let Some(s) = stask {
        rep.add(
            Metric::ratio(
                "ratio.stask_steady_over_effectum_steady",
                PEER,
                "stask steady / effectum steady",
                &s,
                &steady,
            )
            .target(">= 1.0x", Cmp::AtLeast, 1.0)
            .note(format!(
                "{} / peer.steady.tasks_per_s, median / median; min and max pair the worst and best runs",
                s.key
            )),
        );
    }
    rep.detail(
        "peer_steady",
        json!({
            "crate": "effectum 0.7.0", "shape": "effectum's stress_test/src/main.rs",
            "workers": STRESS_WORKERS, "max_concurrency": STRESS_CONCURRENCY,
            "min_concurrency": PEER_MIN_CONCURRENCY,
            "min_concurrency_why": PEER_MIN_CONCURRENCY_WHY,
            "submitters": STRESS_SUBMITTERS, "jobs_per_add_jobs": STRESS_BATCH,
            "tokio_runtime": "current_thread", "wal_prepared": true,
            "seconds": secs, "warmup_ms": warmup_ms, "window_seconds": window_s,
        }),
    );
    Ok(())
}
