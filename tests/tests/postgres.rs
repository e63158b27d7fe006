//! stask on PostgreSQL: the real binary against the local server the test scripts
//! start (`scripts/postgres.sh`), each test in a schema of its own.
//!
//! * a home whose `stask.toml` names a PostgreSQL database runs every command there;
//! * several hosts (each its own home and plugins directory) share one queue and run
//!   each task exactly once, also when one of them is killed;
//! * hosts starting at once migrate the schema once;
//! * a service whose connections are terminated by the server carries on;
//! * a login lock-out holds on every host.

use std::time::Duration;

use serde_json::json;
use stask_e2e::{wait_until, Background, Home};

const DEMO: &str = "stask_worker_demo";
const WAIT: Duration = Duration::from_secs(60);

/// The server the tests use.
fn server_url() -> String {
    std::env::var("STASK_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

fn admin() -> postgres::Client {
    postgres::Client::connect(&server_url(), postgres::NoTls).unwrap_or_else(|e| {
        panic!(
            "these tests need PostgreSQL at {} ({e}); start it with scripts/postgres.sh",
            server_url()
        )
    })
}

/// A schema of its own, dropped at the end; its connections carry the schema's name
/// as their application name, so a test can find (and terminate) them.
struct Schema {
    name: String,
}

impl Schema {
    fn new() -> Schema {
        let name = format!(
            "stask_e2e_{}_{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        );
        admin()
            .batch_execute(&format!("CREATE SCHEMA \"{name}\""))
            .unwrap();
        Schema { name }
    }

    fn url(&self) -> String {
        let base = server_url();
        let sep = if base.contains('?') { '&' } else { '?' };
        format!(
            "{base}{sep}options=-c%20search_path%3D{0}&application_name={0}",
            self.name
        )
    }

    /// A home (with its own plugins directory) whose store is this schema.
    fn home(&self) -> Home {
        let home = Home::new();
        std::fs::write(
            home.path().join("stask.toml"),
            format!("database_url = \"{}\"\n", self.url()),
        )
        .unwrap();
        // The harness made the home with a SQLite database; from now on nothing may
        // use it.
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(home.path().join(format!("stask.db{suffix}")));
        }
        home
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

impl Drop for Schema {
    fn drop(&mut self) {
        let _ = admin().batch_execute(&format!("DROP SCHEMA \"{}\" CASCADE", self.name));
    }
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
    // Ready once its HTTP address is published (a PostgreSQL store's wake-ups are
    // LISTEN/NOTIFY, so there is no wake-up socket to wait for).
    home.serve_http(
        &["--concurrency", "2"],
        &[
            ("STASK_STALE_AFTER_SECS", "3"),
            ("STASK_DISCOVER_ON_START", "false"),
        ],
    )
    .0
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

#[test]
fn a_killed_host_s_tasks_are_recovered_and_completed_once_by_the_others() {
    let db = Schema::new();
    let first = db.home();
    first.install_active(&[DEMO]);
    let hosts: Vec<Home> = (0..2).map(|_| db.host_with(DEMO)).collect();
    let mut victim = serve(&hosts[0]);
    // Long enough that the victim holds tasks when it is killed.
    let ids: Vec<i64> = (0..4)
        .map(|_| first.create_task("demo", "run", &json!({ "steps": 20, "step_ms": 100 }), &[]))
        .collect();
    wait_until(WAIT, "the first host runs tasks", || {
        (counts(&first).get("running").copied().unwrap_or(0) > 0).then_some(())
    });
    victim.kill9();
    let mut survivor = serve(&hosts[1]);
    wait_until(WAIT, "every task completed", || {
        (counts(&first).get("completed").copied() == Some(ids.len() as i64)).then_some(())
    });
    for id in ids {
        let t = first.task(id);
        let log = first.ok(&["tasks", "logs", &id.to_string(), "--raw"]);
        let completions = log.lines().filter(|l| l.starts_with("completed|")).count();
        assert_eq!(completions, 1, "completed once: {log}");
        assert_eq!(t["status"], "completed", "{t:#}");
    }
    survivor.signal(libc::SIGTERM);
    assert!(survivor.wait(WAIT).status.success());
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
