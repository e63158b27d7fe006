//! stask on PostgreSQL: the real binary against the local server the test scripts
//! start (`scripts/postgres.sh`), each test in a schema of its own.
//!
//! * a home whose `stask.toml` names a PostgreSQL database runs every command there;
//! * several hosts (each its own home and plugins directory) share one queue and run
//!   each task exactly once, also when one of them is killed;
//! * hosts starting at once migrate the schema once;
//! * a service whose connections are terminated by the server carries on;
//! * a login lock-out holds on every host;
//! * with three hosts and a witness worker recording every run: 20,000 tasks run once
//!   each and spread over the hosts; killing the leader hands the lead over while every
//!   schedule slot fires once; a task created through one host's API runs on another
//!   and a third streams its log live;
//! * `stask check` on a PostgreSQL home checks the database, not a SQLite file;
//! * the leader forgets hosts silent for a day.

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use stask_e2e::{wait_until, Background, Home};

#[path = "common/pg.rs"]
mod pg;
use pg::{admin, Schema};

const DEMO: &str = "stask_worker_demo";
/// The fixture worker that appends `TASK_ID HOST_PID RUNNER_PID` to `runs.log` in the
/// directory of its `dir` setting for every run.
const WITNESS: &str = "stask_fixture_witness";
const WAIT: Duration = Duration::from_secs(60);
/// The lease (`stale_after_secs`) the hosts of these tests run with.
const LEASE: Duration = Duration::from_secs(3);
/// How often the leader of several hosts looks for stuck tasks
/// (`SHARED_RECOVERY_INTERVAL` in the engine).
const CHECK_INTERVAL: Duration = Duration::from_secs(2);

impl Schema {
    fn new() -> Schema {
        Schema::named("stask_e2e")
    }

    /// A home on this schema holding `lib` in its own plugins directory (a host of
    /// its own, as on another machine).
    fn host_with(&self, lib: &str) -> Home {
        let home = self.home();
        home.install(lib);
        home
    }

    /// Terminates every server connection of stask processes using this schema.
    fn terminate_connections(&self) -> i64 {
        admin()
            .query_one(
                "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity
                 WHERE application_name = $1",
                &[&self.name],
            )
            .unwrap()
            .get(0)
    }
}

impl Schema {
    /// A connection of the test's own whose tables are this schema's (its application
    /// name is not the schema's, so [`Schema::terminate_connections`] spares it).
    fn client(&self) -> postgres::Client {
        let mut c = admin();
        c.batch_execute(&format!("SET search_path TO \"{}\"", self.name))
            .unwrap();
        c
    }

    /// The leader's owner id (`machine/pid/start`), if a host leads.
    fn leader(&self, c: &mut postgres::Client) -> Option<String> {
        c.query_opt("SELECT holder FROM leader", &[])
            .unwrap()
            .map(|r| r.get(0))
    }
}

/// The process id in an owner id (`machine/pid/start`).
fn owner_pid(owner: &str) -> u32 {
    let mut parts = owner.rsplitn(3, '/');
    let _start = parts.next();
    parts
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("not an owner id: {owner}"))
}

/// Registers the witness worker (active) through `home`, whose own plugins directory
/// then holds no library (hosts get their own copies), with a directory outside every
/// home to record runs in; returns that directory.
fn witness(home: &Home) -> PathBuf {
    home.install_active(&[WITNESS]);
    std::fs::remove_file(
        home.plugins_dir()
            .join(stask_e2e::plugin_file_name(WITNESS)),
    )
    .unwrap();
    let dir = home.scratch_dir().join("witness");
    std::fs::create_dir(&dir).unwrap();
    home.ok(&[
        "workers",
        "settings",
        "witness",
        &format!("dir={}", dir.display()),
    ]);
    dir
}

/// Every run the witness recorded in `dir`: (task id, host pid, runner pid).
fn witnessed(dir: &Path) -> Vec<(i64, u32, u32)> {
    let text = std::fs::read_to_string(dir.join("runs.log")).unwrap_or_default();
    text.lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            assert_eq!(f.len(), 3, "a whole line per run: {l:?}");
            (
                f[0].parse().unwrap(),
                f[1].parse().unwrap(),
                f[2].parse().unwrap(),
            )
        })
        .collect()
}

fn status_counts(home: &Home) -> serde_json::Value {
    home.json(&["stats"])
}

#[test]
fn a_home_on_postgres_runs_tasks_end_to_end_and_keeps_no_sqlite_file() {
    let db = Schema::new();
    let home = db.home();
    let migrated = home.json(&["migrate"]);
    assert!(
        migrated["schema_version"].as_i64().unwrap() >= 1,
        "{migrated:#}"
    );
    assert!(
        migrated["database"]
            .as_str()
            .unwrap()
            .starts_with("postgres://"),
        "{migrated:#}"
    );
    home.install_active(&[DEMO]);
    let ids: Vec<i64> = (0..5)
        .map(|i| {
            home.create_task(
                "demo",
                "run",
                &json!({ "steps": 3, "step_ms": 1, "n": i }),
                &[],
            )
        })
        .collect();
    let summary = home.json(&["tasks", "process"]);
    assert_eq!(summary["completed"], 5, "{summary:#}");
    for id in &ids {
        let t = home.task(*id);
        assert_eq!(t["status"], "completed", "{t:#}");
        assert_eq!(t["attempts"], 1, "{t:#}");
        let logs = home.ok(&["tasks", "logs", &id.to_string(), "--raw"]);
        assert!(
            logs.lines().next().unwrap().starts_with("pending|"),
            "{logs}"
        );
        assert!(
            logs.lines().last().unwrap().starts_with("completed|"),
            "{logs}"
        );
        let files = t["result_files"].as_array().unwrap();
        assert!(!files.is_empty(), "{t:#}");
        let name = files[0]["name"].as_str().unwrap();
        let out = home.path().join(format!("out-{id}.bin"));
        home.ok(&[
            "tasks",
            "download",
            &id.to_string(),
            name,
            "-o",
            out.to_str().unwrap(),
        ]);
        assert!(std::fs::metadata(&out).unwrap().len() > 0);
    }
    let stats = status_counts(&home);
    assert!(stats.to_string().contains("completed"), "{stats:#}");
    assert!(
        !home.db_path().exists(),
        "nothing is stored in a SQLite file beside the home"
    );
}

#[test]
fn hosts_starting_at_once_migrate_the_schema_once() {
    let db = Schema::new();
    let homes: Vec<Home> = (0..4).map(|_| db.home()).collect();
    let runs: Vec<Background> = homes
        .iter()
        .map(|h| h.spawn(&["migrate", "--json"], &[]))
        .collect();
    for r in runs {
        let out = r.wait(WAIT);
        assert!(out.status.success(), "{out:?}");
    }
    let row = admin()
        .query_one(
            &format!(
                "SELECT COUNT(*), COUNT(DISTINCT version) FROM \"{}\".stask_schema",
                db.name
            ),
            &[],
        )
        .unwrap();
    let (recorded, distinct): (i64, i64) = (row.get(0), row.get(1));
    assert!(distinct >= 1);
    assert_eq!(recorded, distinct, "each migration recorded once");
}

/// Starts `stask serve` in `home` with a short lease, so a killed host's tasks are
/// recovered quickly.
fn serve(home: &Home) -> Background {
    serve_at(home).0
}

/// [`serve`], also returning the API's base URL.
fn serve_at(home: &Home) -> (Background, String) {
    // Ready once its HTTP address is published (a PostgreSQL store's wake-ups are
    // LISTEN/NOTIFY, so there is no wake-up socket to wait for).
    let lease = LEASE.as_secs().to_string();
    home.serve_http(
        &["--concurrency", "2"],
        &[
            ("STASK_STALE_AFTER_SECS", lease.as_str()),
            ("STASK_DISCOVER_ON_START", "false"),
        ],
    )
}

/// Stops services with SIGTERM; each must exit cleanly.
fn stop_all(services: impl IntoIterator<Item = Background>) {
    let mut services: Vec<Background> = services.into_iter().collect();
    for s in &mut services {
        s.signal(libc::SIGTERM);
    }
    for s in services {
        let out = s.wait(WAIT);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Tasks by status, from the shared store.
fn counts(home: &Home) -> std::collections::HashMap<String, i64> {
    let list = home.json(&["tasks", "list", "--limit", "100000"]);
    let mut out = std::collections::HashMap::new();
    for t in list.as_array().unwrap() {
        *out.entry(t["status"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    out
}

#[test]
fn several_hosts_share_one_queue_and_run_each_task_once() {
    let db = Schema::new();
    let first = db.home();
    first.install_active(&[DEMO]);
    let hosts: Vec<Home> = (0..3).map(|_| db.host_with(DEMO)).collect();
    let mut services: Vec<Background> = hosts.iter().map(serve).collect();
    let n = 300;
    first.ok(&["tasks", "create", "demo", "noop", "--count", &n.to_string()]);
    wait_until(WAIT, "every task completed", || {
        (counts(&first).get("completed").copied() == Some(n)).then_some(())
    });
    let list = first.json(&["tasks", "list", "--limit", "100000"]);
    for t in list.as_array().unwrap() {
        assert_eq!(t["attempts"], 1, "each task ran once: {t:#}");
    }
    for s in &mut services {
        s.signal(libc::SIGTERM);
    }
    for s in services {
        assert!(s.wait(WAIT).status.success());
    }
}

/// The rule: a killed host's tasks are recovered within its lease plus one
/// check interval. The time is printed (`--nocapture`) as the measured failover.
#[test]
fn a_killed_busy_host_s_tasks_are_recovered_within_the_lease_and_completed_once() {
    let db = Schema::new();
    let first = db.home();
    first.install_active(&[DEMO]);
    let hosts: Vec<Home> = (0..2).map(|_| db.host_with(DEMO)).collect();
    let mut c = db.client();
    // The survivor starts first and leads, as a live leader is what recovers a host.
    let survivor = serve(&hosts[0]);
    wait_until(WAIT, "the first host leads", || {
        db.leader(&mut c).filter(|l| owner_pid(l) == survivor.pid())
    });
    let mut victim = serve(&hosts[1]);
    // Long enough that the victim still runs its tasks when it is killed; more than
    // both hosts' slots, so each gets some.
    let ids: Vec<i64> = (0..4)
        .map(|_| first.create_task("demo", "run", &json!({ "steps": 40, "step_ms": 100 }), &[]))
        .collect();
    let pattern = format!("%/{}/%", victim.pid());
    let held_by_victim = |c: &mut postgres::Client| -> i64 {
        c.query_one(
            "SELECT COUNT(*) FROM tasks WHERE status = 'running' AND owner LIKE $1",
            &[&pattern],
        )
        .unwrap()
        .get(0)
    };
    let held = wait_until(WAIT, "the victim runs tasks", || {
        Some(held_by_victim(&mut c)).filter(|n| *n > 0)
    });
    victim.kill9();
    let killed = Instant::now();
    wait_until(WAIT, "the victim's tasks are recovered", || {
        std::thread::sleep(Duration::from_millis(20));
        (held_by_victim(&mut c) == 0).then_some(())
    });
    let failover = killed.elapsed();
    eprintln!(
        "failover: {held} task(s) of a SIGKILLed host recovered after {:.2} s (lease {} s, check interval {} s)",
        failover.as_secs_f64(),
        LEASE.as_secs(),
        CHECK_INTERVAL.as_secs()
    );
    assert!(
        failover <= LEASE + CHECK_INTERVAL,
        "recovered within the lease plus one check interval, not after {failover:?}"
    );
    wait_until(WAIT, "every task completed", || {
        (counts(&first).get("completed").copied() == Some(ids.len() as i64)).then_some(())
    });
    let mut recovered = 0;
    for id in ids {
        let t = first.task(id);
        let log = first.ok(&["tasks", "logs", &id.to_string(), "--raw"]);
        let completions = log.lines().filter(|l| l.starts_with("completed|")).count();
        assert_eq!(completions, 1, "completed once: {log}");
        assert_eq!(t["status"], "completed", "{t:#}");
        if log.contains("Recovered: ") {
            recovered += 1;
            assert!(log.contains(&format!("process {}", victim.pid())), "{log}");
        }
    }
    // It may have claimed more between the count and the kill.
    assert!(
        recovered >= held,
        "each task the victim held was recovered: {recovered} < {held}"
    );
    stop_all([survivor]);
}

#[test]
fn a_service_whose_connections_are_terminated_carries_on() {
    let db = Schema::new();
    let home = db.home();
    home.install_active(&[DEMO]);
    let mut svc = serve(&home);
    let before = home.create_task("demo", "noop", &json!({}), &[]);
    wait_until(WAIT, "the first task completed", || {
        (home.task(before)["status"] == "completed").then_some(())
    });
    let terminated = db.terminate_connections();
    assert!(terminated > 0, "the service had connections to terminate");
    std::thread::sleep(Duration::from_millis(500));
    assert!(svc.try_status().is_none(), "the service is still running");
    let after = home.create_task("demo", "noop", &json!({}), &[]);
    wait_until(WAIT, "a task created after the cut completed", || {
        (home.task(after)["status"] == "completed").then_some(())
    });
    svc.signal(libc::SIGTERM);
    assert!(svc.wait(WAIT).status.success());
}

#[test]
fn a_database_url_that_is_not_postgres_is_refused_naming_the_key() {
    let home = Home::new();
    std::fs::write(
        home.path().join("stask.toml"),
        "database_url = \"mysql://x\"\n",
    )
    .unwrap();
    let err = home.fail(&["tasks", "list"]);
    assert!(
        err.contains("database_url") && err.contains("PostgreSQL"),
        "{err}"
    );
    let err = home.fail(&["--database", "sqlite:x", "migrate"]);
    assert!(err.contains("PostgreSQL URL"), "{err}");
}

#[test]
fn a_host_claims_only_tasks_whose_library_it_holds_and_workers_say_which_hosts_can_run_them() {
    let db = Schema::new();
    let first = db.home();
    first.install_active(&[DEMO]);
    // Another machine's plugins directory would have other files: this host has none.
    std::fs::remove_file(first.plugins_dir().join(stask_e2e::plugin_file_name(DEMO))).unwrap();
    let empty = db.home();
    let mut without = serve(&empty);
    let ids: Vec<i64> = (0..3)
        .map(|_| first.create_task("demo", "noop", &json!({}), &[]))
        .collect();
    let shown = first.json(&["workers", "show", "demo"]);
    assert_eq!(shown["hosts"], json!([]), "no host can run it: {shown:#}");
    let text = first.ok(&["workers", "show", "demo"]);
    assert!(text.contains("no live host holds its library"), "{text}");
    std::thread::sleep(Duration::from_secs(2));
    for id in &ids {
        let t = first.task(*id);
        assert_eq!(
            t["status"], "pending",
            "not claimed by a host without the library: {t:#}"
        );
        assert_eq!(t["attempts"], 0, "{t:#}");
    }
    // A host with the library (its own file of the same content, at another path).
    let holder = db.home();
    holder.install_as(DEMO, "elsewhere/libdemo-copy.so");
    let mut with = serve(&holder);
    wait_until(
        WAIT,
        "the tasks completed on the host that holds the library",
        || {
            ids.iter()
                .all(|id| first.task(*id)["status"] == "completed")
                .then_some(())
        },
    );
    let shown = first.json(&["workers", "show", "demo"]);
    let hosts = shown["hosts"].as_array().unwrap();
    assert_eq!(hosts.len(), 1, "{shown:#}");
    for s in [&mut without, &mut with] {
        s.signal(libc::SIGTERM);
    }
    assert!(without.wait(WAIT).status.success());
    assert!(with.wait(WAIT).status.success());
}

#[test]
fn a_host_stopped_past_its_lease_changes_nothing_when_it_resumes_and_its_runners_are_gone() {
    let db = Schema::new();
    let first = db.home();
    first.install_active(&[DEMO]);
    let a = db.host_with(DEMO);
    let b = db.host_with(DEMO);
    let mut host_a = serve(&a);
    let ids: Vec<i64> = (0..2)
        .map(|_| first.create_task("demo", "run", &json!({ "steps": 40, "step_ms": 100 }), &[]))
        .collect();
    wait_until(WAIT, "host A runs both tasks", || {
        (counts(&first).get("running").copied() == Some(2)).then_some(())
    });
    let runners_of_a =
        || stask_e2e::processes_with_cmdline(&["__runner", a.path().to_str().unwrap()]);
    wait_until(WAIT, "host A has runners", || {
        (!runners_of_a().is_empty()).then_some(())
    });
    host_a.signal(libc::SIGSTOP);
    let mut host_b = serve(&b);
    wait_until(WAIT, "host B recovered and completed both tasks", || {
        ids.iter()
            .all(|id| first.task(*id)["status"] == "completed")
            .then_some(())
    });
    let before: Vec<String> = ids
        .iter()
        .map(|id| first.ok(&["tasks", "logs", &id.to_string(), "--raw"]))
        .collect();
    host_a.signal(libc::SIGCONT);
    wait_until(WAIT, "host A's runners are gone", || {
        runners_of_a().is_empty().then_some(())
    });
    // Let host A record whatever it still had.
    std::thread::sleep(Duration::from_secs(2));
    for (id, before) in ids.iter().zip(before) {
        let after = first.ok(&["tasks", "logs", &id.to_string(), "--raw"]);
        assert_eq!(after, before, "host A's late outcome changed nothing");
        let completions = after
            .lines()
            .filter(|l| l.starts_with("completed|"))
            .count();
        assert_eq!(completions, 1, "{after}");
        assert!(after.contains("Recovered: "), "{after}");
    }
    for s in [&mut host_a, &mut host_b] {
        s.signal(libc::SIGTERM);
    }
    assert!(host_a.wait(WAIT).status.success());
    assert!(host_b.wait(WAIT).status.success());
}

/// `POST /api/v1/auth/login` at `base`: the status, `Retry-After` and the body.
fn login(base: &str, name: &str, password: &str) -> (u16, Option<String>, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(WAIT))
        .build()
        .into();
    let res = agent
        .post(format!("{base}/api/v1/auth/login"))
        .header("Content-Type", "application/json")
        .send(json!({ "name": name, "password": password }).to_string())
        .unwrap_or_else(|e| panic!("login at {base}: {e}"));
    let status = res.status().as_u16();
    let retry = res
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = res.into_body().read_to_string().unwrap();
    (status, retry, body)
}

#[test]
fn a_login_lock_out_holds_on_every_host() {
    let db = Schema::new();
    let (a, b) = (db.home(), db.home());
    let out = a.run_with_input(
        &[
            "users",
            "add",
            "ann",
            "--role",
            "viewer",
            "--password-stdin",
        ],
        &[],
        "ann-password-1\n",
    );
    assert!(out.status.success(), "{out:?}");
    let env = [("STASK_DISCOVER_ON_START", "false")];
    let (mut first, url_a) = a.serve_http(&[], &env);
    let (mut second, url_b) = b.serve_http(&[], &env);
    assert_eq!(login(&url_b, "ann", "ann-password-1").0, 200);
    // Failures on either host count together: five, none of the hosts saw five.
    for i in 0..5 {
        let url = if i % 2 == 0 { &url_a } else { &url_b };
        let (status, _, body) = login(url, "ann", &format!("wrong-{i}"));
        assert_eq!(status, 401, "{body}");
    }
    for url in [&url_a, &url_b] {
        let (status, retry, body) = login(url, "ann", "ann-password-1");
        assert_eq!(status, 429, "the right password is refused too: {body}");
        assert!(body.contains("too_many_attempts"), "{body}");
        let retry: u64 = retry.expect("Retry-After").parse().unwrap();
        assert!(retry > 0 && retry <= 15 * 60, "{retry}");
        // The address is blocked too, whatever the name.
        assert_eq!(login(url, "someone", "whatever-1").0, 429);
    }
    for svc in [&mut first, &mut second] {
        svc.signal(libc::SIGTERM);
    }
    for svc in [first, second] {
        assert!(svc.wait(WAIT).status.success());
    }
}

#[test]
fn one_host_leads_the_chores_and_another_takes_over_when_it_stops() {
    let db = Schema::new();
    let first = db.home();
    first.install_active(&[DEMO]);
    let a = db.host_with(DEMO);
    let b = db.host_with(DEMO);
    let mut host_a = serve(&a);
    let leader = || -> Option<String> {
        admin()
            .query_opt(&format!("SELECT holder FROM \"{}\".leader", db.name), &[])
            .unwrap()
            .map(|r| r.get(0))
    };
    let first_leader = wait_until(WAIT, "a host leads", leader);
    let mut host_b = serve(&b);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        leader(),
        Some(first_leader.clone()),
        "one leader while it lives"
    );
    host_a.signal(libc::SIGTERM);
    assert!(host_a.wait(WAIT).status.success());
    let next = wait_until(WAIT, "the other host leads", || {
        leader().filter(|l| *l != first_leader)
    });
    assert_ne!(next, first_leader);
    host_b.signal(libc::SIGTERM);
    assert!(host_b.wait(WAIT).status.success());
}

#[test]
fn twenty_thousand_tasks_over_three_hosts_run_once_each_and_every_host_runs_some() {
    const N: i64 = 20_000;
    let db = Schema::new();
    let first = db.home();
    let runs = witness(&first);
    let hosts: Vec<Home> = (0..3).map(|_| db.host_with(WITNESS)).collect();
    let services: Vec<Background> = hosts.iter().map(serve).collect();
    let started = Instant::now();
    first.ok(&[
        "tasks",
        "create",
        "witness",
        "record",
        "--count",
        &N.to_string(),
    ]);
    let mut c = db.client();
    // Generous: three hosts do about 1,000 tasks/s; a busy machine is slower.
    wait_until(Duration::from_secs(600), "every task completed", || {
        let row = c
            .query_one(
                "SELECT COUNT(*) FILTER (WHERE status = 'completed'),
                        COUNT(*) FILTER (WHERE status = 'failed'),
                        MIN(error) FILTER (WHERE status = 'failed')
                 FROM tasks",
                &[],
            )
            .unwrap();
        let (completed, failed): (i64, i64) = (row.get(0), row.get(1));
        assert_eq!(
            failed,
            0,
            "no task fails: {:?}",
            row.get::<_, Option<String>>(2)
        );
        if completed == N {
            return Some(());
        }
        std::thread::sleep(Duration::from_millis(200));
        None
    });
    let took = started.elapsed();
    let row = c
        .query_one(
            "SELECT COUNT(*), MAX(attempts), MIN(attempts) FROM tasks",
            &[],
        )
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), N);
    assert_eq!(
        (row.get::<_, i64>(1), row.get::<_, i64>(2)),
        (1, 1),
        "every task ran in one attempt"
    );
    let ids: std::collections::HashSet<i64> = c
        .query("SELECT id FROM tasks", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut per_task: HashMap<i64, Vec<(u32, u32)>> = HashMap::new();
    let mut per_host: HashMap<u32, usize> = HashMap::new();
    for (task, host, runner) in witnessed(&runs) {
        per_task.entry(task).or_default().push((host, runner));
        *per_host.entry(host).or_default() += 1;
    }
    let mut twice: Vec<_> = per_task.iter().filter(|(_, r)| r.len() > 1).collect();
    twice.sort();
    if let Some((id, _)) = twice.first() {
        let log: Vec<String> = c
            .query(
                "SELECT seq, line FROM task_logs WHERE task_id = $1 ORDER BY seq",
                &[id],
            )
            .map(|rows| {
                rows.iter()
                    .map(|r| format!("{} {}", r.get::<_, i64>(0), r.get::<_, String>(1)))
                    .collect()
            })
            .unwrap_or_default();
        let pids: Vec<u32> = services.iter().map(Background::pid).collect();
        // What the hosts said about it (fencing, store failures).
        let said: Vec<String> = services
            .iter()
            .flat_map(|s| {
                let pid = s.pid();
                s.stderr_so_far()
                    .lines()
                    .filter(|l| l.contains("WARN") || l.contains("ERROR"))
                    .map(|l| format!("{pid}: {l}"))
                    .collect::<Vec<_>>()
            })
            .collect();
        panic!(
            "{} tasks run more than once (task: [(host pid, runner pid)]): {:?}; hosts {pids:?}; the first one's log: {log:#?}; the hosts' warnings: {said:#?}",
            twice.len(),
            &twice[..twice.len().min(20)],
        );
    }
    let missing = ids.iter().filter(|id| !per_task.contains_key(id)).count();
    assert_eq!(missing, 0, "every task's run was witnessed");
    assert_eq!(per_task.len(), ids.len(), "only these tasks ran");
    let pids: Vec<u32> = services.iter().map(Background::pid).collect();
    eprintln!(
        "{N} tasks on three hosts in {:.1} s ({:.0} tasks/s); runs per host: {:?}",
        took.as_secs_f64(),
        N as f64 / took.as_secs_f64(),
        pids.iter()
            .map(|p| per_host.get(p).copied().unwrap_or(0))
            .collect::<Vec<_>>()
    );
    for (host, n) in &per_host {
        assert!(
            pids.contains(host),
            "run by a host of the test: {host} ({n})"
        );
    }
    for pid in &pids {
        assert!(
            per_host.get(pid).copied().unwrap_or(0) > 0,
            "host {pid} ran some tasks: {per_host:?}"
        );
    }
    stop_all(services);
}

/// The tasks a schedule created: (id, created at in ms).
fn scheduled_tasks(c: &mut postgres::Client) -> Vec<(i64, i64)> {
    c.query(
        "SELECT id, created_at FROM tasks WHERE started_by = 'schedule' ORDER BY id",
        &[],
    )
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

/// Schedules fire without needing the leader, but its death must neither stop them nor
/// make a slot fire twice; the lead passes to a live host. A schedule's shortest period
/// is one minute, so this test takes about two.
#[test]
fn killing_the_leader_while_schedules_fire_hands_the_lead_over_and_each_slot_fires_once() {
    let db = Schema::new();
    let first = db.home();
    let runs = witness(&first);
    let hosts: Vec<Home> = (0..3).map(|_| db.host_with(WITNESS)).collect();
    let mut services: Vec<Option<Background>> = hosts.iter().map(|h| Some(serve(h))).collect();
    let mut c = db.client();
    wait_until(WAIT, "a host leads", || db.leader(&mut c));
    first.ok(&["workers", "schedule", "witness", "regular", "--every", "1m"]);
    let next_run = |c: &mut postgres::Client| -> i64 {
        c.query_one(
            "SELECT next_run_at FROM schedules WHERE worker = 'witness'",
            &[],
        )
        .unwrap()
        .get::<_, Option<i64>>(0)
        .expect("the schedule has a next run")
    };
    let first_slot = next_run(&mut c);
    // Kill the leader just before the slot, so the slot fires (and the lead moves)
    // while it is dying or dead.
    let now_ms = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
    };
    let until_slot = (first_slot - 300 - now_ms()).max(0) as u64;
    std::thread::sleep(Duration::from_millis(until_slot));
    let old = db.leader(&mut c).expect("a host leads");
    let index = services
        .iter()
        .position(|s| s.as_ref().is_some_and(|s| s.pid() == owner_pid(&old)))
        .unwrap_or_else(|| panic!("the leader {old} is a host of the test"));
    let mut leader = services[index].take().unwrap();
    leader.kill9();
    let killed = Instant::now();
    let survivors: Vec<u32> = services.iter().flatten().map(Background::pid).collect();
    let new = wait_until(WAIT, "another host leads", || {
        db.leader(&mut c).filter(|l| *l != old)
    });
    eprintln!(
        "the lead passed from process {} to {} {:.1} s after the kill",
        owner_pid(&old),
        owner_pid(&new),
        killed.elapsed().as_secs_f64()
    );
    assert!(survivors.contains(&owner_pid(&new)), "{new} is a live host");
    // The slot after the kill fires too, on a live host.
    let second_slot = first_slot + 60_000;
    wait_until(
        Duration::from_secs(180),
        "the slot after the kill has fired",
        || {
            std::thread::sleep(Duration::from_millis(100));
            (next_run(&mut c) > second_slot).then_some(())
        },
    );
    let row = c
        .query_one(
            "SELECT skipped_count, last_skip_reason FROM schedules WHERE worker = 'witness'",
            &[],
        )
        .unwrap();
    assert_eq!(
        row.get::<_, i64>(0),
        0,
        "no slot skipped: {:?}",
        row.get::<_, Option<String>>(1)
    );
    let tasks = scheduled_tasks(&mut c);
    assert_eq!(tasks.len(), 2, "one task per slot: {tasks:?}");
    for ((id, created), slot) in tasks.iter().zip([first_slot, second_slot]) {
        assert!(
            (slot..slot + 60_000).contains(created),
            "task {id} created at {created} fired slot {slot}"
        );
    }
    wait_until(WAIT, "the scheduled tasks completed", || {
        tasks
            .iter()
            .all(|(id, _)| first.task(*id)["status"] == "completed")
            .then_some(())
    });
    let mut ran: Vec<i64> = witnessed(&runs).iter().map(|r| r.0).collect();
    ran.sort_unstable();
    let ids: Vec<i64> = tasks.iter().map(|t| t.0).collect();
    assert_eq!(ran, ids, "each scheduled task ran once");
    stop_all(services.into_iter().flatten());
}

/// Server-sent events read as they come: (event, data, id).
struct Events {
    lines: std::io::Lines<BufReader<ureq::BodyReader<'static>>>,
}

impl Events {
    /// `GET base/api/v1/tasks/{id}/events` with `token`, from after line `after`.
    fn open(base: &str, token: &str, id: i64, after: Option<u64>) -> Events {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(300)))
            .build()
            .into();
        let mut req = agent
            .get(format!("{base}/api/v1/tasks/{id}/events"))
            .header("Authorization", format!("Bearer {token}"));
        if let Some(seq) = after {
            req = req.header("Last-Event-ID", seq.to_string());
        }
        let res = req.call().expect("events request");
        Events {
            lines: BufReader::new(res.into_body().into_reader()).lines(),
        }
    }

    /// The next event; `None` when the stream ended.
    fn next(&mut self) -> Option<(String, Value, Option<u64>)> {
        let (mut event, mut data, mut id) = (String::new(), String::new(), None);
        for line in self.lines.by_ref() {
            let line = line.expect("read event stream");
            if line.is_empty() {
                if data.is_empty() {
                    continue;
                }
                let data = serde_json::from_str(&data).expect("event data is JSON");
                return Some((event, data, id));
            }
            if let Some(v) = line.strip_prefix("event:") {
                event = v.trim().to_owned();
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push_str(v.trim_start());
            } else if let Some(v) = line.strip_prefix("id:") {
                id = Some(v.trim().parse().expect("an id is a line's sequence number"));
            }
        }
        None
    }
}

fn api_call(method: &str, url: &str, token: &str, body: &Value) -> (u16, Value) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(WAIT))
        .build()
        .into();
    let req = ureq::http::Request::builder()
        .method(method)
        .uri(url)
        .header("Authorization", format!("Bearer {token}"))
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .unwrap();
    let res = agent
        .run(req)
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = res.status().as_u16();
    let text = res.into_body().read_to_string().unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[test]
fn a_task_created_on_one_host_runs_on_another_and_a_third_streams_its_log_live() {
    let db = Schema::new();
    let first = db.home();
    first.install_active(&[DEMO]);
    std::fs::remove_file(first.plugins_dir().join(stask_e2e::plugin_file_name(DEMO))).unwrap();
    // Only B holds the library, so only B can run the task.
    let (a, b, c) = (db.home(), db.host_with(DEMO), db.home());
    let (host_a, url_a) = serve_at(&a);
    let (host_b, _) = serve_at(&b);
    let (host_c, url_c) = serve_at(&c);
    let token = first.json(&["tokens", "create", "--role", "operator", "--name", "op"])["token"]
        .as_str()
        .unwrap()
        .to_owned();
    // Long, so it is still running while the stream is read; cancelled at the end.
    let (status, created) = api_call(
        "POST",
        &format!("{url_a}/api/v1/tasks"),
        &token,
        &json!({ "worker": "demo", "action": "run", "data": { "steps": 600, "step_ms": 100 } }),
    );
    assert_eq!(status, 201, "{created:#}");
    let id = created["id"].as_i64().unwrap();
    let task_status = |url: &str| {
        let (code, t) = api_call(
            "GET",
            &format!("{url}/api/v1/tasks/{id}"),
            &token,
            &Value::Null,
        );
        assert_eq!(code, 200, "{t:#}");
        t["status"].as_str().unwrap().to_owned()
    };

    let mut live = Events::open(&url_c, &token, id, None);
    let mut seen: Vec<(u64, Value)> = Vec::new();
    // Lines the task reports as it runs (steps), beyond its creation and start lines.
    while seen
        .iter()
        .filter(|(_, d)| d["status"] == "running")
        .count()
        < 4
    {
        let (event, data, seq) = live.next().expect("the stream goes on while the task runs");
        assert_eq!(event, "line", "{data:#}");
        seen.push((seq.expect("a line has an id"), data));
    }
    assert_eq!(
        task_status(&url_c),
        "running",
        "host C streamed these lines while the task was still running"
    );
    let seqs: Vec<u64> = seen.iter().map(|(s, _)| *s).collect();
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "lines in order, none left out: {seqs:?}"
    );
    let runners = |home: &Home| {
        stask_e2e::processes_with_cmdline(&["__runner", home.path().to_str().unwrap()])
    };
    assert!(!runners(&b).is_empty(), "host B runs it");
    assert!(runners(&a).is_empty() && runners(&c).is_empty(), "only B");
    drop(live);

    // Resumed after the second line: the stream goes on from the third.
    let mut resumed = Events::open(&url_c, &token, id, Some(seqs[1]));
    for (seq, data) in &seen[2..] {
        let (event, got, got_seq) = resumed.next().expect("the resumed stream");
        assert_eq!(event, "line");
        assert_eq!((got_seq, &got), (Some(*seq), data), "the same lines again");
    }
    let (code, body) = api_call(
        "POST",
        &format!("{url_c}/api/v1/tasks/{id}/cancel"),
        &token,
        &json!({}),
    );
    assert_eq!(code, 200, "{body:#}");
    let mut last = *seqs.last().unwrap();
    let end = loop {
        let (event, data, seq) = resumed.next().expect("the stream ends with an end event");
        if event == "end" {
            break data;
        }
        let seq = seq.expect("a line has an id");
        assert_eq!(seq, last + 1, "no line left out");
        last = seq;
    };
    assert_eq!(end["status"], "cancelled", "{end:#}");
    assert_eq!(task_status(&url_a), "cancelled");
    stop_all([host_a, host_b, host_c]);
}

/// `stask check --json` in `home` (with `args` before it): the exit code and report.
fn check(home: &Home, args: &[&str]) -> (Option<i32>, Value) {
    let mut all = args.to_vec();
    all.extend(["check", "--json"]);
    let mut cmd = home.command(&all, &[]);
    cmd.env_remove("STASK_SECRET_KEY");
    let out = stask_e2e::run_with_timeout(&mut cmd, WAIT);
    let report = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", stask_e2e::describe("check", &out)));
    (out.status.code(), report)
}

/// The `database` findings of a check report, and whether any finding names a SQLite
/// file.
fn database_findings(report: &Value) -> Vec<&Value> {
    let findings = report["findings"].as_array().unwrap();
    assert!(
        !report.to_string().contains("stask.db") && !report.to_string().contains("quick_check"),
        "nothing about a SQLite file on a PostgreSQL home: {report:#}"
    );
    findings
        .iter()
        .filter(|f| f["check"] == "database")
        .collect()
}

#[test]
fn check_on_a_postgres_home_checks_the_server_the_schema_and_the_key_not_a_sqlite_file() {
    let db = Schema::new();
    let home = db.home();
    home.install_active(&[DEMO]);
    let out = home.run_with_input(
        &["workers", "settings", "demo", "--secret", "api_key"],
        &[],
        "not-a-real-key\n",
    );
    assert!(out.status.success(), "{out:?}");
    let (code, r) = check(&home, &[]);
    assert_eq!(code, Some(0), "{r:#}");
    let found = database_findings(&r);
    assert_eq!(found.len(), 1, "{r:#}");
    let message = found[0]["message"].as_str().unwrap();
    assert!(
        found[0]["ok"] == true
            && message.contains("PostgreSQL")
            && message.contains("schema version"),
        "{r:#}"
    );
    assert!(!message.contains("password"), "{message}");
    let key = r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["check"] == "key")
        .unwrap();
    assert!(
        key["ok"] == true
            && key["message"]
                .as_str()
                .unwrap()
                .contains("opens all 1 stored secret"),
        "{r:#}"
    );

    // Another key cannot open the stored secret: the key check says so.
    let other = Home::new();
    std::fs::copy(
        other.path().join("secret.key"),
        home.path().join("secret.key"),
    )
    .unwrap();
    let (code, r) = check(&home, &[]);
    assert_eq!(code, Some(1), "{r:#}");
    let bad: Vec<&Value> = r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["ok"] == false)
        .collect();
    assert!(
        !bad.is_empty() && bad.iter().all(|f| f["check"] == "key"),
        "only the key: {r:#}"
    );

    // A server that does not answer.
    let (code, r) = check(
        &home,
        &["--database", "postgres://postgres@127.0.0.1:1/postgres"],
    );
    assert_eq!(code, Some(1), "{r:#}");
    let found = database_findings(&r);
    assert!(
        found.len() == 1
            && found[0]["ok"] == false
            && found[0]["message"]
                .as_str()
                .unwrap()
                .contains("cannot be reached"),
        "{r:#}"
    );

    // A schema a newer stask upgraded.
    db.client()
        .batch_execute("INSERT INTO stask_schema (version) VALUES (100000)")
        .unwrap();
    let (code, r) = check(&home, &[]);
    assert_eq!(code, Some(1), "{r:#}");
    let found = database_findings(&r);
    assert!(
        found[0]["ok"] == false && found[0]["message"].as_str().unwrap().contains("newer"),
        "{r:#}"
    );
}

#[test]
fn check_creates_no_schema_in_an_empty_postgres_database() {
    let db = Schema::new();
    // No command has opened the database: it has no stask schema.
    let home = db.home();
    let (code, r) = check(&home, &[]);
    assert_eq!(code, Some(1), "{r:#}");
    let found = database_findings(&r);
    assert!(
        found.len() == 1
            && found[0]["ok"] == false
            && found[0]["message"]
                .as_str()
                .unwrap()
                .contains("no stask schema")
            && found[0]["fix"].as_str().unwrap().contains("stask migrate"),
        "{r:#}"
    );
    let created: bool = db
        .client()
        .query_one("SELECT to_regclass('stask_schema') IS NOT NULL", &[])
        .unwrap()
        .get(0);
    assert!(!created, "check changes nothing");
}

#[test]
fn the_leader_forgets_hosts_silent_for_a_day() {
    let db = Schema::new();
    let home = db.home();
    home.json(&["migrate"]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let hour = 3_600_000_i64;
    let mut c = db.client();
    // (id, started, lease last renewed)
    let hosts: [(&str, i64, Option<i64>); 4] = [
        ("gone/1/1", now - 72 * hour, None),
        ("silent/2/2", now - 72 * hour, Some(now - 25 * hour)),
        ("quiet/3/3", now - 72 * hour, Some(now - 23 * hour)),
        ("new/4/4", now - hour, None),
    ];
    for (id, started, renewed) in hosts {
        c.execute(
            "INSERT INTO hosts (id, name, version, capacity, libraries, started_at)
             VALUES ($1, 'elsewhere', '0.1.0', 2, '[]', $2)",
            &[&id, &started],
        )
        .unwrap();
        if let Some(at) = renewed {
            c.execute(
                "INSERT INTO owners (id, renewed_at) VALUES ($1, $2)",
                &[&id, &at],
            )
            .unwrap();
        }
    }
    let svc = serve(&home);
    let ids = |c: &mut postgres::Client| -> Vec<String> {
        c.query("SELECT id FROM hosts ORDER BY id", &[])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    };
    wait_until(WAIT, "the leader forgot the hosts silent for a day", || {
        std::thread::sleep(Duration::from_millis(50));
        let left = ids(&mut c);
        (!left.iter().any(|h| h == "gone/1/1" || h == "silent/2/2")).then_some(())
    });
    let left = ids(&mut c);
    for kept in ["quiet/3/3", "new/4/4"] {
        assert!(left.iter().any(|h| h == kept), "{kept} is kept: {left:?}");
    }
    assert!(
        left.iter().any(|h| owner_pid(h) == svc.pid()),
        "the live host is kept: {left:?}"
    );
    stop_all([svc]);
}
