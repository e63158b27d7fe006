//! The machine's limit: what claiming, completing and creating tasks costs in raw
//! SQLite and raw file operations with stask's own schema and settings, with no engine,
//! processes or runners around it; and the steady throughput those costs allow.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, TransactionBehavior};
use serde_json::json;
use stask_storage::progress_log::{self, LogLine};
use stask_storage::{Finish, Outcome, Store};

use crate::report::{Metric, Report};
use crate::throughput::create_noops;
use crate::util::{discard, now_ms, Ctx, Env, Home, Res};

const LIMIT: &str = "4 limit (raw SQLite)";

/// Tasks the creation limit creates, at the least.
const CREATE_AT_LEAST: usize = 100_000;

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

/// A connection with stask's settings (WAL, `synchronous=NORMAL`, foreign keys) and, as
/// stask's storage does for inserts, claims and finishes, no statistics triggers: the
/// loops below update the statistics tables once per batch.
fn raw_connection(db: &Path) -> Res<Connection> {
    let conn = Connection::open(db).ctx("open")?;
    conn.busy_timeout(Duration::from_secs(10))
        .ctx("busy timeout")?;
    conn.pragma_update(None, "journal_mode", "WAL").ctx("WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")
        .ctx("synchronous")?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .ctx("foreign keys")?;
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_TRIGGER,
        false,
    )
    .ctx("triggers off")?;
    Ok(conn)
}

/// Claims and completes every task with plain SQL, `batch` at a time; returns the
/// wall time. With `logs`, appends the start and end lines to each task's log as the
/// engine does.
fn raw_burn(db: &Path, batch: usize, log_dir: Option<&Path>) -> Res<Duration> {
    let mut conn = raw_connection(db)?;
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
                progress_log::append(&dir.join(progress_log::file_name(*id)), &[line])
                    .ctx("log")?;
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
                progress_log::append(&dir.join(progress_log::file_name(*id)), &[line])
                    .ctx("log")?;
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

/// Creates `n` demo tasks the cheapest way stask's schema and log format allow: one
/// transaction of inserts with the batch's statistics (as `Store::insert_tasks` does),
/// then one log file per task holding its creation line (as `tasks create` does).
/// Returns the time of each half.
fn raw_create(db: &Path, n: usize, log_dir: &Path) -> Res<(Duration, Duration)> {
    let mut conn = raw_connection(db)?;
    let started = Instant::now();
    let now = now_ms();
    let tx = conn.transaction().ctx("begin insert")?;
    let mut ids = Vec::with_capacity(n);
    {
        let mut stmt = tx
            .prepare_cached(
                "INSERT INTO tasks (worker, action, status, priority, data, max_attempts,
                    run_after, created_at, message)
                 VALUES ('demo', 'noop', 'pending', 1, '{}', 3, ?1, ?1, 'Task created')",
            )
            .ctx("insert")?;
        for _ in 0..n {
            stmt.execute([now]).ctx("insert")?;
            ids.push(tx.last_insert_rowid());
        }
    }
    tx.execute(
        "INSERT INTO task_counts (worker, status, n) VALUES ('demo', 'pending', ?1)
         ON CONFLICT (worker, status) DO UPDATE SET n = n + excluded.n",
        [n as i64],
    )
    .ctx("count")?;
    tx.execute(
        "INSERT INTO task_activity (bucket, worker, created) VALUES (?1, 'demo', ?2)
         ON CONFLICT (bucket, worker) DO UPDATE SET created = created + excluded.created",
        params![now / 900_000 * 900_000, n as i64],
    )
    .ctx("count")?;
    tx.commit().ctx("commit insert")?;
    let inserted = started.elapsed();
    let started = Instant::now();
    let line = LogLine::new("pending", 0, 0, 0, "", "Task created (priority normal)");
    for id in ids {
        progress_log::append(
            &log_dir.join(progress_log::file_name(id)),
            std::slice::from_ref(&line),
        )
        .ctx("create log")?;
    }
    Ok((inserted, started.elapsed()))
}

/// Runs [`raw_create`] on fresh copies of an empty home's database and reports both
/// halves, then the steady throughput the measured costs allow on this machine: the
/// steady benchmark creates and runs tasks at once, so it pays both sides.
fn creation_and_ceiling(env: &Env, rep: &mut Report) -> Res<()> {
    // At least as many tasks as the steady benchmark creates in a run: on this machine
    // each new file costs more the more a run creates (about 30 µs each for 10,000,
    // 45 µs for 100,000; as much in 100 directories as in one).
    let n = env.n.max(CREATE_AT_LEAST);
    let empty = Home::create(env, "limit-empty", &[&env.demo_lib])?;
    let (mut rows, mut logs) = (Vec::new(), Vec::new());
    for i in 0..env.runs {
        let (dir, db) = run_copy(env, &format!("limit-create-{i}"), &empty)?;
        let (inserted, logged) = raw_create(&db, n, &dir.join("logs"))?;
        let pending: i64 = Connection::open(&db)
            .ctx("open")?
            .query_row(
                "SELECT COUNT(*) FROM tasks WHERE status = 'pending'",
                [],
                |r| r.get(0),
            )
            .ctx("count")?;
        discard(&dir);
        if pending != n as i64 {
            return Err(format!("limit.create: {pending} of {n} tasks were stored"));
        }
        rows.push(n as f64 / inserted.as_secs_f64());
        logs.push(n as f64 / logged.as_secs_f64());
    }
    let rows = Metric::new(
        "limit.create_rows",
        LIMIT,
        &format!("raw SQL, insert {n} rows in one transaction"),
        "tasks/s",
        rows,
    );
    let logs = Metric::new(
        "limit.create_logs",
        LIMIT,
        &format!("create {n} log files with their creation line"),
        "tasks/s",
        logs,
    )
    .note("the kernel's cost of one new file on this disk; the log format needs one per task at creation");
    eprintln!(
        "  limit.create_rows: {:.0} tasks/s, limit.create_logs: {:.0} tasks/s",
        rows.median, logs.median
    );
    // Every task is created (row + log file) and run (claim, two log appends, finish);
    // with each step as cheap as raw SQL and raw file calls and every core busy, the
    // machine runs at most cores / (sum of the per-task times) tasks per second.
    if let Some(run) = rep.get("limit.with_logs").cloned() {
        let ceiling = |r: f64, l: f64, w: f64| env.cores as f64 / (1.0 / r + 1.0 / l + 1.0 / w);
        rep.add(
            Metric::derived(
                "limit.steady_ceiling",
                LIMIT,
                &format!("steady ceiling: {} cores / per-task sum of the above", env.cores),
                "tasks/s",
                ceiling(rows.median, logs.median, run.median),
                ceiling(rows.min, logs.min, run.min),
                ceiling(rows.max, logs.max, run.max),
            )
            .note("no processes, runners or messages counted: the steady benchmark cannot exceed this here"),
        );
    }
    rep.add(rows);
    rep.add(logs);
    Ok(())
}

/// A fresh work directory `name` for one run, with an empty `logs/` and a copy of
/// `home`'s database; returns the directory and the copy's path.
fn run_copy(env: &Env, name: &str, home: &Home) -> Res<(PathBuf, PathBuf)> {
    let dir = env.work.join(name);
    discard(&dir);
    std::fs::create_dir_all(dir.join("logs")).ctx("create limit directory")?;
    let db = dir.join("stask.db");
    std::fs::copy(home.db(), &db).ctx("copy database")?;
    Ok((dir, db))
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
            let (dir, db) = run_copy(env, &format!("limit-{i}"), &src)?;
            if kind == 1 {
                // The engine appends to logs that `tasks create` already wrote.
                for id in 1..=n {
                    let line =
                        LogLine::new("pending", 0, 0, 0, "", "Task created (priority normal)");
                    progress_log::append(
                        &dir.join("logs").join(progress_log::file_name(id as i64)),
                        &[line],
                    )
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
            Metric::ratio(
                "ratio.stask_over_limit",
                LIMIT,
                "stask burn-down / limit",
                &s,
                &l,
            )
            .note("1.0 would mean the engine costs nothing beyond SQLite"),
        );
    }
    creation_and_ceiling(env, rep)?;
    rep.detail(
        "limit",
        json!({ "rows": n, "journal_mode": "wal", "synchronous": "normal",
                "claim_batch": wide, "schema": "stask's own (created by stask init)" }),
    );
    Ok(())
}
