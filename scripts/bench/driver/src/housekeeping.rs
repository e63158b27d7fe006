//! What finished tasks cost and how they go: database bytes per finished task (10),
//! `tasks clean` of many finished tasks (11), and a new task's wait while the service's
//! start-up clean-up runs (12).

use std::time::{Duration, Instant};

use serde_json::json;
use stask_storage::Status;

use crate::report::{Cmp, Metric, Report};
use crate::seed::{self, Fate};
use crate::throughput::create_noops;
use crate::util::{id_of, median, now_ms, run, Ctx, Env, Home, Res, Service};

const DBSIZE: &str = "10 database size";
const CLEAN: &str = "11 clean-up (tasks clean)";
const STALL: &str = "12 housekeeping vs the queue";

const MB: f64 = 1024.0 * 1024.0;
const DAY_MS: i64 = 86_400_000;

/// 10: database bytes per finished no-op task with its log lines, after a burn-down of
/// N tasks (`tasks create --count N`, then `tasks process`). Both commands have exited,
/// so SQLite has checkpointed the WAL into the database file when the last connection
/// closed; the WAL's size is counted too in case one is left.
pub fn dbsize(env: &Env, rep: &mut Report) -> Res<()> {
    let n = env.n;
    let (mut per_task, mut marginal, mut empty_kb, mut lines) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..env.runs {
        let home = Home::create(env, &format!("dbsize-{i}"), &[&env.demo_lib])?;
        let empty = home.db_bytes();
        create_noops(env, &home, n)?;
        let summary = run(
            env.stask(&home.root).args(["tasks", "process", "--json"]),
            Duration::from_secs(120) + Duration::from_millis(2 * n as u64),
        )?
        .json()?;
        if summary["completed"].as_u64() != Some(n as u64) {
            return Err(format!(
                "tasks process did not complete {n} tasks: {summary}"
            ));
        }
        let wal = home.db().with_file_name("stask.db-wal");
        let wal_left = crate::util::file_size(&wal);
        let after = home.db_bytes();
        // Every task's log: created, started, completed.
        let store = home.store()?;
        let newest = store
            .list_tasks(&stask_storage::TaskFilter {
                limit: Some(1),
                ..Default::default()
            })
            .ctx("list")?;
        let id = newest.first().map(|t| t.id).ok_or("no task")?;
        let count = store.log_lines(id, 0, 100).ctx("log")?.len();
        drop(store);
        eprintln!(
            "  dbsize run {}: {} bytes for {n} tasks ({:.0} per task; empty home {} bytes, WAL left {wal_left}), {count} log lines per task",
            i + 1,
            after,
            after as f64 / n as f64,
            empty
        );
        per_task.push(after as f64 / n as f64);
        marginal.push((after as f64 - empty as f64) / n as f64);
        empty_kb.push(empty as f64 / 1024.0);
        lines.push(count as f64);
    }
    rep.add(
        Metric::new(
            "dbsize.bytes_per_task",
            DBSIZE,
            &format!("stask.db (+ -wal) / N after a burn-down of {n} no-op tasks"),
            "bytes/task",
            per_task,
        )
        .note("file sizes after `tasks process` exited (the last connection's close checkpoints the WAL)"),
    );
    rep.add(
        Metric::new(
            "dbsize.marginal_bytes_per_task",
            DBSIZE,
            "the same minus the empty home's database, / N",
            "bytes/task",
            marginal,
        )
        .note("what each finished task adds: its row, indexes, three log lines, statistics"),
    );
    rep.add(Metric::new(
        "dbsize.empty_home_kb",
        DBSIZE,
        "database of the empty home (demo worker registered)",
        "kB",
        empty_kb,
    ));
    rep.add(Metric::new(
        "dbsize.log_lines_per_task",
        DBSIZE,
        "log lines per finished no-op task",
        "lines",
        lines,
    ));
    rep.detail(
        "dbsize",
        json!({ "tasks": n, "worker": "demo", "action": "noop",
                "measured": "file sizes of stask.db and stask.db-wal after `tasks process` exited" }),
    );
    Ok(())
}

/// Tasks `tasks clean` removes in each run: 300,000 as the target says in full mode,
/// 30,000 in quick mode (reported per 100,000 against the same rate).
fn clean_tasks(env: &Env) -> usize {
    if env.quick {
        30_000
    } else {
        300_000
    }
}

/// The clean-up's mix: completed, with some failed and cancelled (`--include-failed`
/// takes all three).
fn clean_mix(i: usize) -> Fate {
    match i % 20 {
        0 => Fate::Failed,
        1 => Fate::Cancelled,
        _ => Fate::Completed,
    }
}

/// 11: `stask tasks clean --older-than 1s --include-failed` of many finished tasks,
/// each with three log lines, seeded through the storage API as finished two days ago.
pub fn clean(env: &Env, rep: &mut Report) -> Res<()> {
    let n = clean_tasks(env);
    let (mut secs, mut per_100k, mut before_mb, mut after_mb, mut released_mb) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut seeding = Vec::new();
    for i in 0..env.runs {
        let home = Home::create(env, &format!("clean-{i}"), &[&env.demo_lib])?;
        {
            let mut store = home.store()?;
            let s = seed::seed(&mut *store, n, now_ms() - 2 * DAY_MS, clean_mix)?;
            seeding.push(json!({ "insert_s": s.insert.as_secs_f64(),
                                 "claim_finish_s": s.finish.as_secs_f64() }));
        }
        // The seeding's store is closed: its last close checkpointed the WAL into the
        // file, so the file holds everything.
        let before = home.db_bytes();
        let ran = run(
            env.stask(&home.root).args([
                "tasks",
                "clean",
                "--older-than",
                "1s",
                "--include-failed",
                "--json",
            ]),
            Duration::from_secs(600),
        )?;
        let report = ran.json()?;
        let deleted = report["deleted_tasks"].as_u64().unwrap_or(0) as usize;
        if deleted != n {
            return Err(format!(
                "tasks clean deleted {deleted} of {n} tasks: {report}"
            ));
        }
        let released = report["released_bytes"].as_f64().unwrap_or(f64::NAN);
        let left = home.store()?.task_status_counts().ctx("counts")?;
        // Measured after that store closed too (the last close checkpoints and removes
        // the WAL), so the figure is the file the clean-up left.
        let after = home.db_bytes();
        if left.completed + left.failed + left.cancelled != 0 {
            return Err(format!("finished tasks left after the clean-up: {left:?}"));
        }
        let s = ran.wall.as_secs_f64();
        eprintln!(
            "  clean run {}: {n} tasks in {s:.2} s ({:.2} s per 100k); database {:.1} MB -> {:.1} MB ({:.1} MB given back)",
            i + 1,
            s * 100_000.0 / n as f64,
            before as f64 / MB,
            after as f64 / MB,
            released / MB
        );
        secs.push(s);
        per_100k.push(s * 100_000.0 / n as f64);
        before_mb.push(before as f64 / MB);
        after_mb.push(after as f64 / MB);
        released_mb.push(released / MB);
    }
    // Issue 12: clean-up is linear in what it removes "and the database gives the
    // space back": judged as the file shrinking to at most half (every task goes).
    let gave_back = median(&after_mb) <= median(&before_mb) / 2.0;
    let whole = Metric::new(
        "clean.seconds",
        CLEAN,
        &format!("tasks clean --older-than 1s --include-failed, {n} finished tasks"),
        "s",
        secs,
    )
    .note("the whole command (process start included); 3 log lines per task");
    let per = Metric::new(
        "clean.seconds_per_100k",
        CLEAN,
        "the same, per 100,000 tasks",
        "s",
        per_100k,
    );
    if env.quick {
        rep.add(whole);
        rep.add(
            per.target("< 1.67 s per 100k (300k < 5 s)", Cmp::Below, 5.0 / 3.0)
                .note("quick mode cleans 30,000: the target's rate, per 100,000"),
        );
    } else {
        rep.add(whole.target("300k in < 5 s", Cmp::Below, 5.0));
        rep.add(per);
    }
    rep.add(Metric::new(
        "clean.db_before_mb",
        CLEAN,
        "database before (stask.db + -wal, all connections closed)",
        "MB",
        before_mb,
    ));
    rep.add(
        Metric::new(
            "clean.db_after_mb",
            CLEAN,
            "database after (all connections closed)",
            "MB",
            after_mb,
        )
        .target_judged("space given back (<= half of before)", gave_back)
        .note("file sizes once the command exited; every finished task was removed"),
    );
    rep.add(Metric::new(
        "clean.released_mb",
        CLEAN,
        "space given back, as the command reports it (released_bytes)",
        "MB",
        released_mb,
    ));
    rep.detail(
        "clean",
        json!({ "tasks": n, "mix": "90% completed, 5% failed, 5% cancelled",
                "finished": "2 days before the run (Finish.at)",
                "seeded_with": "stask_storage::Store insert_tasks + claim + finishes, 3 log lines per task",
                "seeding_seconds": seeding }),
    );
    Ok(())
}

/// Expired tasks waiting for the service's clean-up at start.
fn stall_tasks(env: &Env) -> usize {
    if env.quick {
        30_000
    } else {
        100_000
    }
}

/// One create-to-start sample: a service started on `home`, one task created with the
/// CLI as soon as it is ready, its `started_at - created_at`. Returns the wait (ms),
/// the completed tasks still in the store when the CLI returned, and the service's
/// clean-up log line.
fn stall_sample(env: &Env, home: &Home) -> Res<(f64, i64, String)> {
    let service = Service::start(env, home)?;
    let created = run(
        env.stask(&home.root)
            .args(["tasks", "create", "demo", "noop", "--json"]),
        Duration::from_secs(60),
    )?;
    let id = id_of(&created)?;
    let store = home.store()?;
    let still = store.task_status_counts().ctx("counts")?.completed;
    let deadline = Instant::now() + Duration::from_secs(120);
    let task = loop {
        let t = store
            .get_task(id)
            .ctx("read task")?
            .ok_or_else(|| format!("task {id} is gone"))?;
        match t.status {
            Status::Completed => break t,
            Status::Failed | Status::Cancelled => return Err(format!("task {id} {}", t.status)),
            _ if Instant::now() > deadline => {
                return Err(format!("task {id} did not complete within 120 s"))
            }
            _ => std::thread::sleep(Duration::from_millis(2)),
        }
    };
    // The clean-up's own report, once it is done (it logs when it ends).
    let log_path = home.root.join("serve.log");
    let deadline = Instant::now() + Duration::from_secs(120);
    let cleanup = loop {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        if let Some(line) = log.lines().find(|l| l.contains("clean-up of tasks")) {
            break line.trim().to_owned();
        }
        if Instant::now() > deadline {
            break String::from("(no clean-up line in serve.log within 120 s)");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    drop(store);
    service.stop()?;
    let started = task.started_at.ok_or("the task has no started_at")?;
    Ok(((started - task.created_at) as f64, still, cleanup))
}

/// 12: a new task's create-to-start wait while `stask serve` runs its clean-up at start
/// over many expired tasks, next to the same on a home with nothing to clean.
pub fn housekeeping(env: &Env, rep: &mut Report) -> Res<()> {
    let n = stall_tasks(env);
    let (mut waits, mut still, mut lines) = (Vec::new(), Vec::new(), Vec::new());
    let mut baseline = Vec::new();
    for i in 0..env.runs {
        let home = Home::create(env, &format!("stall-{i}"), &[&env.demo_lib])?;
        {
            // Completed 60 days ago: past the default retention of 30 days.
            let mut store = home.store()?;
            seed::seed(&mut *store, n, now_ms() - 60 * DAY_MS, |_| Fate::Completed)?;
        }
        let (wait, left, line) = stall_sample(env, &home)?;
        eprintln!(
            "  housekeeping run {}: create-to-start {wait:.0} ms, {left} of {n} expired tasks still stored when the CLI returned; serve.log: {line}",
            i + 1
        );
        waits.push(wait);
        still.push(left as f64);
        lines.push(line);
        let empty = Home::create(env, &format!("stall-empty-{i}"), &[&env.demo_lib])?;
        let (wait, _, _) = stall_sample(env, &empty)?;
        baseline.push(wait);
    }
    rep.add(
        Metric::new(
            "housekeeping.create_to_start_ms",
            STALL,
            &format!("create-to-start of a task created as serve starts over {n} expired tasks"),
            "ms",
            waits,
        )
        .target("p50 < 200 ms", Cmp::Below, 200.0)
        .note("started_at - created_at (ms) from the store; the median of the runs is their p50"),
    );
    rep.add(
        Metric::new(
            "housekeeping.expired_left",
            STALL,
            "expired tasks still stored when the CLI had created it",
            "tasks",
            still,
        )
        .note("> 0: the clean-up was still running when the task was queued"),
    );
    rep.add(
        Metric::new(
            "housekeeping.baseline_create_to_start_ms",
            STALL,
            "the same on a home with nothing to clean (comparison)",
            "ms",
            baseline,
        )
        .note("includes the service's first claim and its runner's start"),
    );
    rep.detail(
        "housekeeping",
        json!({ "expired_tasks": n, "finished": "60 days before the run (retention 30d)",
                "ready": "the service's wake-up socket exists",
                "serve_cleanup_log": lines }),
    );
    Ok(())
}
