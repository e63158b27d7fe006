//! 8: reads at scale: the dashboard, statistics and task list of the real HTTP API of
//! `stask serve` over 100k (and 1M) tasks, the queries underneath in-process, and the
//! current state of a long progress log; free-text search of the task list, through the
//! API and in-process. Tasks are seeded through the storage crate's public API (no SQL
//! in the driver).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::json;
use stask_storage::{Claim, LogLine, Store, TaskFilter, TaskQuery};

use crate::report::{Cmp, Metric, Report};
use crate::seed::{self, Fate, Seeded};
use crate::util::{median, now_ms, run, Ctx, Env, Home, Res, Service};

const READS: &str = "8 reads at scale";

/// Seeds `n` tasks in the mix of a long-running installation (90 % completed, 5 %
/// failed, 1 % cancelled, 4 % pending, spread over the ids), each with its log lines.
fn populate(store: &mut dyn Store, n: usize) -> Res<Seeded> {
    // A minute ago: recent enough that the service's clean-up at start (30 days) keeps
    // them.
    seed::seed(store, n, now_ms() - 60_000, seed::installation_mix)
}

/// The store's kept counts per status, by name.
fn status_counts(store: &dyn Store) -> Res<HashMap<String, i64>> {
    let c = store.task_status_counts().ctx("task_status_counts")?;
    Ok([
        ("pending", c.pending),
        ("running", c.running),
        ("completed", c.completed),
        ("failed", c.failed),
        ("cancelled", c.cancelled),
    ]
    .into_iter()
    .filter(|(_, n)| *n > 0)
    .map(|(s, n)| (s.to_owned(), n))
    .collect())
}

/// Checks the store's counts against what was seeded.
fn check_seeded(store: &dyn Store, s: &Seeded) -> Res<()> {
    let c = status_counts(store)?;
    let n = |k: &str| c.get(k).copied().unwrap_or(0);
    if n("completed") != s.completed
        || n("failed") != s.failed
        || n("cancelled") != s.cancelled
        || n("pending") != s.pending
        || n("running") != 0
    {
        return Err(format!("the store counts {c:?} after seeding {s:?}"));
    }
    Ok(())
}

/// The search benchmarks' target: a free-text search of the task list at 1M tasks.
const SEARCH_TARGET: &str = "< 50 ms at 1M tasks";

/// A free-text search of the task list (`q=` of the API, `TaskQuery::text`), with what
/// it must find in a seeded home.
struct Search {
    key: &'static str,
    /// The text, as typed.
    text: &'static str,
    /// The text in the API's query string.
    url_text: &'static str,
    /// What it finds, for labels.
    what: &'static str,
    /// What it must find.
    finds: Finds,
}

/// What a search must find in a seeded home.
#[derive(Clone, Copy)]
enum Finds {
    /// The task with this id, alone (ids count from 1 in a fresh home).
    Id(i64),
    /// Every task of this status (its message says it), and no other.
    Status(&'static str),
    /// Nothing.
    Nothing,
}

/// The searches timed at each scale. Seeded tasks differ only in their outcome's
/// message, so these stand for the three shapes of a search: by id (one match, besides
/// a text nothing holds), a word of 1 % of the tasks (10,000 at 1M), and a text
/// nothing holds (a typo: the whole table searched for nothing).
const SEARCHES: &[Search] = &[
    Search {
        key: "id",
        text: "#50000",
        url_text: "%2350000",
        what: "'#50000' (an id: 1 match)",
        finds: Finds::Id(50_000),
    },
    Search {
        key: "word",
        text: "cancelled",
        url_text: "cancelled",
        what: "'cancelled' (1 % of the tasks)",
        finds: Finds::Status("cancelled"),
    },
    Search {
        key: "none",
        text: "timeout",
        url_text: "timeout",
        what: "'timeout' (no match)",
        finds: Finds::Nothing,
    },
];

impl Search {
    /// The total it must report.
    fn expected(&self, counts: &HashMap<String, i64>) -> i64 {
        match self.finds {
            Finds::Id(_) => 1,
            Finds::Status(s) => counts.get(s).copied().unwrap_or(0),
            Finds::Nothing => 0,
        }
    }

    /// Whether a first page of 50 (`ids` with their statuses) and its `total` are
    /// right.
    fn is_right(&self, total: i64, tasks: &[(i64, String)], expected: i64) -> bool {
        total == expected
            && tasks.len() as i64 == expected.min(50)
            && tasks.iter().all(|(id, status)| match self.finds {
                Finds::Id(want) => *id == want,
                Finds::Status(s) => status == s,
                Finds::Nothing => false,
            })
    }

    /// Checks a page the store returned, so a fast wrong answer is never timed.
    fn check(&self, total: i64, tasks: &[stask_storage::TaskRecord], expected: i64) -> Res<()> {
        let seen: Vec<(i64, String)> = tasks
            .iter()
            .map(|t| (t.id, t.status.as_str().to_owned()))
            .collect();
        if self.is_right(total, &seen, expected) {
            Ok(())
        } else {
            Err(format!(
                "search for {:?}: total {total}, expected {expected}; first tasks {:?}",
                self.text,
                seen.get(..5.min(seen.len()))
            ))
        }
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
    let store = home.store()?;
    // What `tasks list --limit 50` asks the store (newest first), in-process.
    let filter = TaskFilter {
        limit: Some(50),
        ..TaskFilter::default()
    };
    let list_q = timed(20, || {
        Ok(store.list_tasks(&filter).ctx("list_tasks")?.len())
    })?;
    // What a dashboard calls: the statistics the store keeps as tasks change.
    let stats = timed(20, || {
        let c = store.task_status_counts().ctx("task_status_counts")?;
        Ok(c.completed as usize)
    })?;
    let per_worker = timed(20, || Ok(store.worker_counts().ctx("worker_counts")?.len()))?;
    let counts = status_counts(&*store)?;
    let mut searched = Vec::new();
    for s in SEARCHES {
        let expected = s.expected(&counts);
        let query = TaskQuery {
            text: Some(s.text.to_owned()),
            limit: 50,
            ..TaskQuery::default()
        };
        let ms = timed(20, || {
            let page = store.search_tasks(&query).ctx("search_tasks")?;
            s.check(page.total, &page.tasks, expected)?;
            Ok(page.tasks.len())
        })?;
        searched.push((s, ms));
    }
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
        "  {label}: list query {:.2} ms, stats {:.3} ms, CLI list {:.2} ms, search {}",
        median(&list_q),
        median(&stats),
        median(&cli),
        searched
            .iter()
            .map(|(s, ms)| format!("{} {:.2} ms", s.key, median(ms)))
            .collect::<Vec<_>>()
            .join(", ")
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
        &format!("{label} tasks: Store::list_tasks(), newest 50"),
        "ms",
        list_q,
    )));
    for (s, ms) in searched {
        let mut m = Metric::new(
            &format!("reads.{scale_key}.search_{}_ms", s.key),
            READS,
            &format!("{label} tasks: Store::search_tasks(), text {}", s.what),
            "ms",
            ms,
        )
        .note("first page of 50 with the total of matches");
        if at_1m {
            m = m.target(SEARCH_TARGET, Cmp::Below, 50.0);
        }
        rep.add(m);
    }
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

/// The task list's free-text searches ([`SEARCHES`]) through the API, with their own
/// target ([`SEARCH_TARGET`]).
fn search_path(s: &Search) -> String {
    format!("/api/v1/tasks?limit=50&q={}", s.url_text)
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

/// Asks `path` once as a warm-up and checks the answer with `check`, then times
/// [`API_REQUESTS`] more (ms each, to the body's last byte).
fn time_get(
    agent: &ureq::Agent,
    base: &str,
    path: &str,
    auth: &str,
    check: impl Fn(&serde_json::Value) -> Res<()>,
) -> Res<Vec<f64>> {
    let url = format!("{base}{path}");
    let (status, body) = get(agent, &url, auth)?; // warm-up
    if status != 200 {
        return Err(format!("GET {path}: {status}: {}", body.trim()));
    }
    let v: serde_json::Value = serde_json::from_str(&body).ctx(&format!("GET {path}: not JSON"))?;
    check(&v)?;
    let mut ms = Vec::with_capacity(API_REQUESTS);
    for _ in 0..API_REQUESTS {
        let t = Instant::now();
        let (status, body) = get(agent, &url, auth)?;
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
        if status != 200 || body.is_empty() {
            return Err(format!("GET {path}: {status}: {}", body.trim()));
        }
    }
    Ok(ms)
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
    let counts = status_counts(&*home.store()?)?;
    let started = Instant::now();
    let mut service = Service::start(env, home)?;
    let base = service.http_base(home, Duration::from_secs(60))?;
    let api_up_ms = started.elapsed().as_secs_f64() * 1000.0;
    // The API answers at once, but the service's start-up work (its clean-up at start,
    // for one) may run beside it for a while: measured after it settles.
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
    let note = format!(
        "{API_REQUESTS} requests after a warm-up, one keep-alive connection, to the last byte of the body"
    );
    for e in ENDPOINTS {
        let ms = time_get(&agent, &base, e.path, &auth, |v| check(e, v, &counts))?;
        medians.insert(e.key.to_owned(), json!(median(&ms)));
        let mut m = Metric::new(
            &format!("reads.{scale_key}.api_{}_ms", e.key),
            READS,
            &api_label(scale, e),
            "ms",
            ms,
        )
        .note(note.clone());
        if e.targeted && scale == "1M" {
            m = m.target(API_TARGET, Cmp::Below, 20.0);
        }
        rep.add(m);
    }
    for s in SEARCHES {
        let path = search_path(s);
        let expected = s.expected(&counts);
        let ms = time_get(&agent, &base, &path, &auth, |v| {
            let tasks: Vec<(i64, String)> = v["tasks"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|t| {
                            let status = t["status"].as_str().unwrap_or_default().to_owned();
                            (t["id"].as_i64().unwrap_or(0), status)
                        })
                        .collect()
                })
                .unwrap_or_default();
            let total = v["total"].as_i64().unwrap_or(-1);
            if s.is_right(total, &tasks, expected) {
                Ok(())
            } else {
                Err(format!(
                    "GET {path}: total {total}, expected {expected} (database counts {counts:?})"
                ))
            }
        })?;
        medians.insert(format!("search_{}", s.key), json!(median(&ms)));
        let mut m = Metric::new(
            &format!("reads.{scale_key}.api_search_{}_ms", s.key),
            READS,
            &format!("{scale} tasks: API GET /tasks?limit=50&q=, text {}", s.what),
            "ms",
            ms,
        )
        .note(note.clone());
        if scale == "1M" {
            m = m.target(SEARCH_TARGET, Cmp::Below, 50.0);
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
        "  {scale} via the API: dashboard {:.2} ms, stats {:.2} ms, tasks page {:.2} ms, search by id / word / nothing {:.2} / {:.2} / {:.2} ms (API up {api_up_ms:.0} ms after start, idle after {:.1} s and {startup_cpu_ms:.0} ms of CPU; {cpu_answering_ms:.0} ms of CPU answering; serve {serve_mb:.1} MB)",
        medians["dashboard"].as_f64().unwrap_or(f64::NAN),
        medians["stats"].as_f64().unwrap_or(f64::NAN),
        medians["tasks_page"].as_f64().unwrap_or(f64::NAN),
        medians["search_id"].as_f64().unwrap_or(f64::NAN),
        medians["search_word"].as_f64().unwrap_or(f64::NAN),
        medians["search_none"].as_f64().unwrap_or(f64::NAN),
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
    let mut seeded = {
        let mut store = home.store()?;
        let s = populate(&mut *store, 100_000)?;
        check_seeded(&*store, &s)?;
        s
    };
    eprintln!(
        "  seeded 100k tasks through the store: inserts {:.2} s, claims + finishes {:.2} s",
        seeded.insert.as_secs_f64(),
        seeded.finish.as_secs_f64()
    );
    let mut seeding = json!({ "100k": { "insert_s": seeded.insert.as_secs_f64(),
                                        "claim_finish_s": seeded.finish.as_secs_f64() } });
    // The service must not run the pending 4 % while it is measured (their retries are
    // a year ahead anyway): the worker is made inactive; the counts are checked after.
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
        for s in SEARCHES {
            rep.not_measured(
                &format!("reads.1M.api_search_{}_ms", s.key),
                READS,
                &format!("1M tasks: API GET /tasks?limit=50&q=, text {}", s.what),
                "ms",
                SEARCH_TARGET,
                why,
            );
            rep.not_measured(
                &format!("reads.1M.search_{}_ms", s.key),
                READS,
                &format!("1M tasks: Store::search_tasks(), text {}", s.what),
                "ms",
                SEARCH_TARGET,
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
            (
                "reads.1M.list_query_ms",
                "1M tasks: Store::list_tasks(), newest 50",
            ),
        ] {
            rep.not_measured(key, READS, label, "ms", API_TARGET, why);
        }
    } else {
        {
            // 900k more through the store, the worker active again for the claims.
            run(
                env.stask(&home.root)
                    .args(["workers", "activate", "demo", "--json"]),
                Duration::from_secs(60),
            )?;
            let mut store = home.store()?;
            let t = Instant::now();
            let more = populate(&mut *store, 900_000)?;
            seeded.completed += more.completed;
            seeded.failed += more.failed;
            seeded.cancelled += more.cancelled;
            seeded.pending += more.pending;
            check_seeded(&*store, &seeded)?;
            drop(store);
            run(
                env.stask(&home.root)
                    .args(["workers", "deactivate", "demo", "--json"]),
                Duration::from_secs(60),
            )?;
            eprintln!(
                "  grown to 1M tasks through the store in {:.1} s",
                t.elapsed().as_secs_f64()
            );
            seeding["1M"] = json!({ "insert_s": more.insert.as_secs_f64(),
                                    "claim_finish_s": more.finish.as_secs_f64() });
        }
        api.insert("1M".into(), measure_api(env, &home, "1M", &token, rep)?);
        measure(env, &home, "1M", rep)?;
    }
    drop(home);
    let log_lines = big_log(env, rep)?;
    rep.detail(
        "reads",
        json!({
            "seeded_with": "stask_storage::Store: insert_tasks (batches of 20,000, creation line each), claim (batches of 5,000, start line each) + finishes with their final lines committed with the next claim",
            "mix": "90% completed, 5% failed, 1% cancelled, 4% pending (a failed first attempt, retry a year ahead), spread over the ids",
            "seeding_seconds": seeding,
            "tasks": seeded.total(),
            "cache": "warm (one warm-up query or request first)",
            "long_log_lines": log_lines,
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

/// Lines of the long log (far above the engine's cap of 10,000 lines per attempt: a
/// task retried many times, or a log imported from an older stask).
const LONG_LOG_LINES: usize = 1_000_000;

/// The current state of a long progress log: `ProgressLogs::last_log_line` on a task
/// with a million lines, next to a task with three; and a live view resuming near the
/// end of the long one (`log_lines` after a sequence number). Returns the long log's
/// line count.
fn big_log(env: &Env, rep: &mut Report) -> Res<usize> {
    let home = Home::create(env, "reads-log", &[&env.demo_lib])?;
    let mut store = home.store()?;
    let owner = "bench/reads";
    let now = now_ms();
    let ids = store
        .insert_tasks(&seed::noop_task(now), 2, &seed::creation_line())
        .ctx("insert")?;
    let (big, small) = (ids[0], ids[1]);
    let t = Instant::now();
    // Both running: the long one gets its progress lines, then both finish.
    let (_, claimed) = store
        .claim(&Claim {
            finishes: &[],
            owner,
            now,
            limit: 2,
            excluded_workers: &[],
            start_line: &seed::start_line,
        })
        .ctx("claim")?;
    if claimed.len() != 2 {
        return Err(format!("claimed {} of 2 tasks", claimed.len()));
    }
    let total = LONG_LOG_LINES as u64;
    let mut i = 0u64;
    while i < total {
        let lines: Vec<(i64, LogLine)> = (i..(i + 10_000).min(total))
            .map(|k| {
                (
                    big,
                    LogLine::new(
                        "running",
                        (k * 100 / total) as u8,
                        k,
                        total,
                        "1m 5s",
                        &format!("Processing item {k} of the import"),
                    ),
                )
            })
            .collect();
        i += lines.len() as u64;
        store
            .record_progress(owner, &[], &lines)
            .ctx("record progress")?;
    }
    let applied = store
        .finish_tasks(&[
            seed::finish(big, owner, Fate::Completed, now_ms()),
            seed::finish(small, owner, Fate::Completed, now_ms()),
        ])
        .ctx("finish")?;
    if applied != [true, true] {
        return Err("the log tasks' finishes did not apply".into());
    }
    let written_s = t.elapsed().as_secs_f64();
    // Sequence numbers are store-wide (a task's have gaps): count the lines, and
    // resume the live view after the eleventh line from the end.
    let all = store.log_lines(big, 0, usize::MAX).ctx("log_lines")?;
    let lines = all.len();
    let resume_after = all[lines.saturating_sub(11)].seq;
    drop(all);
    if lines != LONG_LOG_LINES + 3 {
        return Err(format!(
            "the long log has {lines} lines, expected {}",
            LONG_LOG_LINES + 3
        ));
    }
    eprintln!("  wrote a {lines}-line log through the store in {written_s:.1} s");
    let time = |id: i64| -> Res<Vec<f64>> {
        let mut out = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            for _ in 0..1000 {
                let l = store.last_log_line(id).ctx("last_log_line")?;
                if !l.as_ref().is_some_and(|l| l.text.starts_with("completed|")) {
                    return Err(format!("last_log_line read {l:?}"));
                }
            }
            out.push(t.elapsed().as_secs_f64() * 1e6 / 1000.0);
        }
        Ok(out)
    };
    let (long, short) = (time(big)?, time(small)?);
    let mut tail = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        for _ in 0..1000 {
            let got = store.log_lines(big, resume_after, 100).ctx("log_lines")?;
            if got.len() != 10 {
                return Err(format!(
                    "log_lines after position {resume_after} gave {} lines",
                    got.len()
                ));
            }
        }
        tail.push(t.elapsed().as_secs_f64() * 1e6 / 1000.0);
    }
    drop(store);
    rep.add(
        Metric::new(
            "reads.log_long_last_line_us",
            READS,
            &format!("Store::last_log_line of a {lines}-line log"),
            "us/call",
            long,
        )
        .note("5 runs of 1000 calls, cache warm"),
    );
    rep.add(Metric::new(
        "reads.log_small_last_line_us",
        READS,
        "Store::last_log_line of a 3-line log (for comparison)",
        "us/call",
        short,
    ));
    rep.add(
        Metric::new(
            "reads.log_long_tail_us",
            READS,
            &format!("Store::log_lines, the last 10 of a {lines}-line log (a live view resuming)"),
            "us/call",
            tail,
        )
        .note("5 runs of 1000 calls, cache warm"),
    );
    Ok(lines)
}
