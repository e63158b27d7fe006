//! 8: reads at scale: the dashboard, statistics and task list of the real HTTP API of
//! `stask serve` over 100k (and 1M) tasks, the queries underneath in-process, and the
//! current state of a 1 GB progress log.

use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, Instant};

use rusqlite::Connection;
use serde_json::json;
use stask_storage::{progress_log, Store};

use crate::report::{Cmp, Metric, Report};
use crate::util::{median, now_ms, run, Ctx, Env, Home, Res, Service};

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
        median(&list_q),
        median(&counts),
        median(&stats),
        median(&cli)
    );
    let at_1m = label == "1M";
    let q = |m: Metric| {
        if at_1m {
            m.target("< 20 ms at 1M tasks", Cmp::Below, 20.0)
        } else {
            m
        }
    };
    // Not what the API runs: what the dashboard would cost without the trigger-kept
    // counts, for comparison (no target).
    rep.add(
        Metric::new(
            &format!("reads.{scale_key}.counts_ms"),
            READS,
            &format!(
                "{label} tasks: comparison (no trigger-kept counts): SELECT status, COUNT(*) GROUP BY status"
            ),
            "ms",
            counts,
        )
        .note("what the dashboard would cost without the trigger-kept counts; the API does not run it"),
    );
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

const API_TARGET: &str = "< 20 ms at 1M tasks";

/// Requests timed per endpoint (after one warm-up request).
const API_REQUESTS: usize = 20;

/// What the API is asked, with whether the "< 20 ms at 1M tasks" target applies.
struct Endpoint {
    key: &'static str,
    path: &'static str,
    targeted: bool,
}

const ENDPOINTS: &[Endpoint] = &[
    Endpoint {
        key: "dashboard",
        path: "/api/v1/dashboard",
        targeted: true,
    },
    Endpoint {
        key: "stats",
        path: "/api/v1/stats",
        targeted: true,
    },
    Endpoint {
        key: "stats_overview",
        path: "/api/v1/stats/overview",
        targeted: true,
    },
    Endpoint {
        key: "stats_workers",
        path: "/api/v1/stats/workers",
        targeted: true,
    },
    Endpoint {
        key: "stats_time_month",
        path: "/api/v1/stats/time?period=month",
        targeted: true,
    },
    Endpoint {
        key: "tasks_page",
        path: "/api/v1/tasks?limit=50",
        targeted: false,
    },
    Endpoint {
        key: "tasks_failed_page",
        path: "/api/v1/tasks?limit=50&status=failed",
        targeted: false,
    },
];

fn api_label(scale: &str, e: &Endpoint) -> String {
    format!(
        "{scale} tasks: API GET {}",
        e.path.trim_start_matches("/api/v1")
    )
}

/// One GET with the token; the status and the whole body, read.
fn get(agent: &ureq::Agent, url: &str, auth: &str) -> Res<(u16, String)> {
    let res = agent
        .get(url)
        .header("Authorization", auth)
        .call()
        .ctx(&format!("GET {url}"))?;
    let status = res.status().as_u16();
    let body = res
        .into_body()
        .read_to_string()
        .ctx(&format!("GET {url}: body"))?;
    Ok((status, body))
}

/// Checks an answer against the database's own counts, so a fast wrong answer (an
/// error, an empty list) is never timed as a result.
fn check(e: &Endpoint, v: &serde_json::Value, counts: &HashMap<String, i64>) -> Res<()> {
    let total: i64 = counts.values().sum();
    let n = |s: &str| counts.get(s).copied().unwrap_or(0);
    let ok = match e.key {
        "dashboard" => {
            v["tasks"]["total"].as_i64() == Some(total)
                && v["tasks"]["pending"].as_i64() == Some(n("pending"))
                && v["tasks"]["running"].as_i64() == Some(0)
                && v["recent_tasks"].as_array().map(Vec::len) == Some(10)
        }
        "stats" => v["overview"]["total"].as_i64() == Some(total),
        "stats_overview" => v["total"].as_i64() == Some(total),
        "stats_workers" => v["workers"].as_array().is_some_and(|w| !w.is_empty()),
        "stats_time_month" => v["series"].as_array().is_some_and(|s| !s.is_empty()),
        "tasks_page" => {
            v["total"].as_i64() == Some(total) && v["tasks"].as_array().map(Vec::len) == Some(50)
        }
        "tasks_failed_page" => {
            v["total"].as_i64() == Some(n("failed"))
                && v["tasks"]
                    .as_array()
                    .is_some_and(|t| t.len() == 50 && t.iter().all(|t| t["status"] == "failed"))
        }
        _ => true,
    };
    if ok {
        Ok(())
    } else {
        let text = v.to_string();
        Err(format!(
            "GET {}: unexpected answer (database counts {counts:?}): {}",
            e.path,
            text.get(..600).unwrap_or(&text)
        ))
    }
}

/// The dashboard, statistics and task list as the real API serves them: `stask serve`
/// on the home (HTTP on an ephemeral loopback port), a viewer token, one keep-alive
/// connection; each endpoint once as a warm-up (answer checked), then timed from the
/// request to the last byte of the body. The service is stopped with SIGTERM after.
fn measure_api(
    env: &Env,
    home: &Home,
    scale: &str,
    token: &str,
    rep: &mut Report,
) -> Res<serde_json::Value> {
    let scale_key = scale.replace(' ', "");
    let counts: HashMap<String, i64> = {
        let conn = home.read_db()?;
        let mut stmt = conn
            .prepare("SELECT status, COUNT(*) FROM tasks GROUP BY status")
            .ctx("counts")?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
            .ctx("counts")?;
        rows.collect::<Result<_, _>>().ctx("counts")?
    };
    let started = Instant::now();
    let mut service = Service::start(env, home)?;
    let base = service.http_base(home, Duration::from_secs(60))?;
    let api_up_ms = started.elapsed().as_secs_f64() * 1000.0;
    // The API answers at once, but the service's start-up work (the clean-up at start
    // lists every log file) runs beside it for a while: measured after it settles.
    let (settled, startup_cpu_ms) = service.settle(Duration::from_secs(120))?;
    let cpu_before = crate::util::cpu_ms(service.pid().unwrap_or(0)).unwrap_or(f64::NAN);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .max_redirects(0)
        .build()
        .into();
    let auth = format!("Bearer {token}");
    let mut medians = serde_json::Map::new();
    for e in ENDPOINTS {
        let url = format!("{base}{}", e.path);
        let (status, body) = get(&agent, &url, &auth)?; // warm-up
        if status != 200 {
            return Err(format!("GET {}: {status}: {}", e.path, body.trim()));
        }
        let v: serde_json::Value =
            serde_json::from_str(&body).ctx(&format!("GET {}: not JSON", e.path))?;
        check(e, &v, &counts)?;
        let mut ms = Vec::with_capacity(API_REQUESTS);
        for _ in 0..API_REQUESTS {
            let t = Instant::now();
            let (status, body) = get(&agent, &url, &auth)?;
            ms.push(t.elapsed().as_secs_f64() * 1000.0);
            if status != 200 || body.is_empty() {
                return Err(format!("GET {}: {status}: {}", e.path, body.trim()));
            }
        }
        medians.insert(e.key.to_owned(), json!(median(&ms)));
        let mut m = Metric::new(
            &format!("reads.{scale_key}.api_{}_ms", e.key),
            READS,
            &api_label(scale, e),
            "ms",
            ms,
        )
        .note(format!(
            "{API_REQUESTS} requests after a warm-up, one keep-alive connection, to the last byte of the body"
        ));
        if e.targeted && scale == "1M" {
            m = m.target(API_TARGET, Cmp::Below, 20.0);
        }
        rep.add(m);
    }
    let cpu_answering_ms =
        crate::util::cpu_ms(service.pid().unwrap_or(0)).unwrap_or(f64::NAN) - cpu_before;
    // Nothing ran meanwhile (the worker is inactive): the counts are the same after.
    let (_, body) = get(&agent, &format!("{base}/api/v1/dashboard"), &auth)?;
    let after: serde_json::Value = serde_json::from_str(&body).ctx("dashboard: not JSON")?;
    check(&ENDPOINTS[0], &after, &counts)?;
    drop(agent);
    let mem = service.stop()?;
    let serve_mb = mem.main_kb as f64 / 1024.0;
    rep.add(
        Metric::new(
            &format!("reads.{scale_key}.api_serve_mb"),
            READS,
            &format!("{scale} tasks: stask serve peak RSS while answering"),
            "MB",
            vec![serve_mb],
        )
        .note("VmHWM, one sample per scale"),
    );
    eprintln!(
        "  {scale} via the API: dashboard {:.2} ms, stats {:.2} ms, tasks page {:.2} ms (API up {api_up_ms:.0} ms after start, idle after {:.1} s and {startup_cpu_ms:.0} ms of CPU; {cpu_answering_ms:.0} ms of CPU answering; serve {serve_mb:.1} MB)",
        medians["dashboard"].as_f64().unwrap_or(f64::NAN),
        medians["stats"].as_f64().unwrap_or(f64::NAN),
        medians["tasks_page"].as_f64().unwrap_or(f64::NAN),
        settled.as_secs_f64(),
    );
    Ok(json!({
        "api_up_ms_after_start": api_up_ms,
        "idle_s_after_start": settled.as_secs_f64(),
        "startup_cpu_ms": startup_cpu_ms,
        "cpu_ms_while_answering": cpu_answering_ms,
        "status_counts": counts,
        "median_ms": medians,
    }))
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
    // The service must not run the pending 4 % while it is measured: the worker is
    // made inactive (its tasks stay pending; the counts are checked after).
    run(
        env.stask(&home.root)
            .args(["workers", "deactivate", "demo", "--json"]),
        Duration::from_secs(60),
    )?;
    let token = run(
        env.stask(&home.root).args([
            "tokens", "create", "--role", "viewer", "--name", "bench", "--json",
        ]),
        Duration::from_secs(60),
    )?
    .json()?["token"]
        .as_str()
        .ok_or("`tokens create --json` printed no token")?
        .to_owned();
    let mut api = serde_json::Map::new();
    api.insert("100k".into(), measure_api(env, &home, "100k", &token, rep)?);
    measure(env, &home, "100k", rep)?;
    if env.quick {
        let why = "1M tasks only in --full";
        for e in ENDPOINTS.iter().filter(|e| e.targeted) {
            rep.not_measured(
                &format!("reads.1M.api_{}_ms", e.key),
                READS,
                &api_label("1M", e),
                "ms",
                API_TARGET,
                why,
            );
        }
        for (key, label) in [
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
            rep.not_measured(key, READS, label, "ms", API_TARGET, why);
        }
    } else {
        {
            let conn = Connection::open(home.db()).ctx("open")?;
            conn.busy_timeout(Duration::from_secs(10)).ctx("busy")?;
            let t = Instant::now();
            grow(&conn, 1_000_000)?;
            conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
                .ctx("checkpoint")?;
            eprintln!("  grown to 1M tasks in {:.1} s", t.elapsed().as_secs_f64());
        }
        api.insert("1M".into(), measure_api(env, &home, "1M", &token, rep)?);
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
            "cache": "warm (one warm-up query or request first)",
            "api": {
                "service": "stask serve, STASK_DISCOVER_ON_START=false, HTTP on 127.0.0.1:0 (address from HOME/run/http-PID.addr), demo worker deactivated so the pending tasks stay pending; measured once its CPU time grows by at most 20 ms in 500 ms (start-up work done)",
                "auth": "Authorization: Bearer <token of `stask tokens create --role viewer --name bench --json`>",
                "client": "ureq 3 (blocking), one keep-alive connection; time = request sent to the body's last byte",
                "requests_per_endpoint": API_REQUESTS,
                "by_scale": api,
            },
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
