//! stask on PostgreSQL: the real binary against the local server the test scripts
//! start (`scripts/postgres.sh`), each test in a schema of its own.
//!
//! * a home whose `stask.toml` names a PostgreSQL database runs every command there;
//! * several hosts (each its own home and plugins directory) share one queue and run
//!   each task exactly once, also when one of them is killed;
//! * hosts starting at once migrate the schema once;
//! * a service whose connections are terminated by the server carries on.

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
    let versions: i64 = admin()
        .query_one(
            &format!("SELECT COUNT(*) FROM \"{}\".stask_schema", db.name),
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(versions, 1, "each migration recorded once");
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
    let hosts: Vec<Home> = (0..3).map(|_| db.home()).collect();
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
    let hosts: Vec<Home> = (0..2).map(|_| db.home()).collect();
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
