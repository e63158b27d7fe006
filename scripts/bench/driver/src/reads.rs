//! 8: reads at scale: listing and counting 100k (and 1M) tasks, and the current state
//! of a 1 GB progress log.

use std::io::Write;
use std::time::{Duration, Instant};

use rusqlite::Connection;
use serde_json::json;
use stask_storage::{progress_log, Store};

use crate::report::{Cmp, Metric, Report};
use crate::util::{now_ms, run, Ctx, Env, Home, Res};

const READS: &str = "8 reads at scale";

/// Marks most tasks finished, as a long-running installation would have them: 90 %
/// completed, 5 % failed, 1 % cancelled, 4 % left pending.
fn age(conn: &Connection) -> Res<()> {
    let now = now_ms();
    conn.execute_batch(&format!(
        "UPDATE tasks SET status = 'completed', attempts = 1, started_at = created_at,
            finished_at = created_at + 5, progress = 100, result = 'null',
            message = 'Task completed successfully (5ms)'
          WHERE id % 100 < 90;
         UPDATE tasks SET status = 'failed', attempts = 3, started_at = created_at,
            finished_at = created_at + 5, error = 'failed on purpose',
            message = 'Task failed after 5ms: failed on purpose'
          WHERE id % 100 BETWEEN 90 AND 94;
         UPDATE tasks SET status = 'cancelled', finished_at = {now},
            message = 'Cancelled before it started', error = 'Cancelled before it started'
          WHERE id % 100 = 95;"
    ))
    .ctx("age the tasks")
}

/// Copies existing rows (new ids) until there are `total`.
fn grow(conn: &Connection, total: i64) -> Res<()> {
    loop {
        let have: i64 = conn
            .query_row("SELECT COUNT(*) FROM tasks", [], |r| r.get(0))
            .ctx("count")?;
        if have >= total {
            return Ok(());
        }
        let add = (total - have).min(have);
        conn.execute(
            "INSERT INTO tasks (worker, action, status, priority, progress, processed, total,
                message, data, result, error, started_by, attempts, max_attempts, run_after,
                created_at, started_at, finished_at, heartbeat_at, owner, cancel_requested)
             SELECT worker, action, status, priority, progress, processed, total, message,
                data, result, error, started_by, attempts, max_attempts, run_after, created_at,
                started_at, finished_at, heartbeat_at, owner, cancel_requested
             FROM tasks ORDER BY id LIMIT ?1",
            [add],
        )
        .ctx("copy rows")?;
    }
}

fn timed<F: FnMut() -> Res<usize>>(times: usize, mut f: F) -> Res<Vec<f64>> {
    f()?; // warm-up
    let mut out = Vec::new();
    for _ in 0..times {
        let t = Instant::now();
        f()?;
        out.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(out)
}

fn measure(env: &Env, home: &Home, label: &str, rep: &mut Report) -> Res<()> {
    let scale_key = label.replace(' ', "");
    let conn = home.read_db()?;
    // The query behind `tasks list` (newest first, limit 50), in-process.
    let list_sql = "SELECT id, worker, action, status, priority, progress, processed, total,
        message, data, result, error, started_by, attempts, max_attempts, run_after,
        created_at, started_at, finished_at, heartbeat_at, owner, cancel_requested
        FROM tasks WHERE 1=1 ORDER BY id DESC LIMIT 50";
    let list_q = timed(20, || {
        let mut stmt = conn.prepare_cached(list_sql).ctx("list")?;
        let rows = stmt.query_map([], |r| r.get::<_, i64>(0)).ctx("list")?;
        Ok(rows.count())
    })?;
    let counts = timed(20, || {
        let mut stmt = conn
            .prepare_cached("SELECT status, COUNT(*) FROM tasks GROUP BY status")
            .ctx("counts")?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
            .ctx("counts")?;
        Ok(rows.count())
    })?;
    // What a dashboard would call: the trigger-kept statistics of stask_storage.
    let store = Store::open(&home.db()).ctx("open the store")?;
    let stats = timed(20, || {
        let c = store.task_status_counts().ctx("task_status_counts")?;
        Ok(c.completed as usize)
    })?;
    let per_worker = timed(20, || Ok(store.worker_counts().ctx("worker_counts")?.len()))?;
    drop(store);
    let cli = timed(10, || {
        let out = run(
            env.stask(&home.root)
                .args(["tasks", "list", "--limit", "50", "--json"]),
            Duration::from_secs(60),
        )?
        .json()?;
        Ok(out.as_array().map_or(0, Vec::len))
    })?;
    eprintln!(
        "  {label}: list query {:.2} ms, counts {:.2} ms, stats {:.3} ms, CLI list {:.2} ms",
        crate::util::median(&list_q),
        crate::util::median(&counts),
        crate::util::median(&stats),
        crate::util::median(&cli)
    );
    let at_1m = label == "1M";
    let q = |m: Metric| {
        if at_1m {
            m.target("< 20 ms at 1M tasks", Cmp::Below, 20.0)
        } else {
            m
        }
    };
    rep.add(q(Metric::new(
        &format!("reads.{scale_key}.counts_ms"),
        READS,
        &format!("{label} tasks: SELECT status, COUNT(*) GROUP BY status"),
        "ms",
        counts,
    )));
    rep.add(q(Metric::new(
        &format!("reads.{scale_key}.status_counts_ms"),
        READS,
        &format!("{label} tasks: Store::task_status_counts()"),
        "ms",
        stats,
    )));
    rep.add(q(Metric::new(
        &format!("reads.{scale_key}.worker_counts_ms"),
        READS,
        &format!("{label} tasks: Store::worker_counts()"),
        "ms",
        per_worker,
    )));
    rep.add(q(Metric::new(
        &format!("reads.{scale_key}.list_query_ms"),
        READS,
        &format!("{label} tasks: list query, newest 50"),
        "ms",
        list_q,
    )));
    rep.add(
        Metric::new(
            &format!("reads.{scale_key}.list_cli_ms"),
            READS,
            &format!("{label} tasks: `tasks list --limit 50 --json`"),
            "ms",
            cli,
        )
        .note("whole command, process start included"),
    );
    Ok(())
}

pub fn reads(env: &Env, rep: &mut Report) -> Res<()> {
    let home = Home::create(env, "reads", &[&env.demo_lib])?;
    let ran = run(
        env.stask(&home.root)
            .args(["tasks", "create", "demo", "noop", "--count", "100000"]),
        Duration::from_secs(300),
    )?;
    eprintln!("  created 100k tasks in {:.2} s", ran.wall.as_secs_f64());
    {
        let conn = Connection::open(home.db()).ctx("open")?;
        conn.busy_timeout(Duration::from_secs(10)).ctx("busy")?;
        age(&conn)?;
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .ctx("checkpoint")?;
    }
    measure(env, &home, "100k", rep)?;
    if env.quick {
        for (key, label) in [
            (
                "reads.1M.counts_ms",
                "1M tasks: SELECT status, COUNT(*) GROUP BY status",
            ),
            (
                "reads.1M.status_counts_ms",
                "1M tasks: Store::task_status_counts()",
            ),
            (
                "reads.1M.worker_counts_ms",
                "1M tasks: Store::worker_counts()",
            ),
            ("reads.1M.list_query_ms", "1M tasks: list query, newest 50"),
        ] {
            rep.not_measured(
                key,
                READS,
                label,
                "ms",
                "< 20 ms at 1M tasks",
                "1M tasks only in --full",
            );
        }
    } else {
        {
            let conn = Connection::open(home.db()).ctx("open")?;
            conn.busy_timeout(Duration::from_secs(10)).ctx("busy")?;
            grow(&conn, 1_000_000)?;
            conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
                .ctx("checkpoint")?;
        }
        measure(env, &home, "1M", rep)?;
    }
    drop(home);
    big_log(env, rep)?;
    rep.detail(
        "reads",
        json!({
            "created_with": "tasks create demo noop --count 100000 (one transaction)",
            "mix": "90% completed, 5% failed, 1% cancelled, 4% pending (SQL)",
            "grown_to_1m_with": "INSERT ... SELECT copies of the rows (no log files)",
            "cache": "warm (one warm-up query first)",
        }),
    );
    Ok(())
}

/// The current state of a 1 GiB progress log, with `progress_log::last_line`.
fn big_log(env: &Env, rep: &mut Report) -> Res<()> {
    let path = env.work.join("big.log");
    let small = env.work.join("small.log");
    let result = (|| -> Res<(Vec<f64>, Vec<f64>, u64)> {
        let mut chunk = String::with_capacity(1 << 20);
        let mut i = 0u64;
        while chunk.len() < (1 << 20) - 128 {
            chunk.push_str(&format!(
                "running|{}|{i}|1000000|1m 5s|Processing item {i} of the import\n",
                i / 10_000
            ));
            i += 1;
        }
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path).ctx("create big log")?);
        let mut written = 0u64;
        while written < (1 << 30) {
            f.write_all(chunk.as_bytes()).ctx("write big log")?;
            written += chunk.len() as u64;
        }
        let last = "completed|100|1000000|1000000|0s|Task completed successfully (1h 2m)\n";
        f.write_all(last.as_bytes()).ctx("write big log")?;
        f.flush().ctx("write big log")?;
        drop(f);
        std::fs::write(
            &small,
            format!("{}{last}", &chunk[..chunk.find('\n').unwrap_or(0) + 1]),
        )
        .ctx("write small log")?;
        let size = std::fs::metadata(&path).ctx("stat")?.len();
        let time = |p: &std::path::Path| -> Res<Vec<f64>> {
            let mut out = Vec::new();
            for _ in 0..5 {
                let t = Instant::now();
                for _ in 0..1000 {
                    let l = progress_log::last_line(p).ctx("last_line")?;
                    if l.as_ref().map(|l| l.status.as_str()) != Some("completed") {
                        return Err(format!("last_line read {l:?}"));
                    }
                }
                out.push(t.elapsed().as_secs_f64() * 1e6 / 1000.0);
            }
            Ok(out)
        };
        Ok((time(&path)?, time(&small)?, size))
    })();
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_file(&small);
    let (big, tiny, size) = result?;
    rep.add(
        Metric::new(
            "reads.log_1gb_last_line_us",
            READS,
            &format!("last_line of a {:.2} GB log", size as f64 / 1e9),
            "us/call",
            big,
        )
        .note("5 runs of 1000 calls, page cache warm"),
    );
    rep.add(Metric::new(
        "reads.log_small_last_line_us",
        READS,
        "last_line of a 2-line log (for comparison)",
        "us/call",
        tiny,
    ));
    Ok(())
}
