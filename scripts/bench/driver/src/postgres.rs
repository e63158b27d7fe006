//! PostgreSQL: several `stask serve` hosts sharing one queue in one database.
//!
//! Every benchmark here works in schemas of its own on the server at
//! `STASK_BENCH_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`),
//! one schema per run, named `stask_bench_PID_…` and dropped afterwards (a schema left
//! by a driver that died is dropped by the next run). Each host is a home of its own
//! with its own plugins directory, whose `stask.toml` names the schema
//! (`options=-c search_path=…` in the URL), as on separate machines. When the server
//! cannot be reached, each benchmark reports itself as skipped with the reason and the
//! others run.
//!
//! * `pg_burndown`: N no-op tasks through `tasks process` (one host), and through one
//!   and three idle `stask serve` hosts (creation done -> all completed);
//! * `pg_raw`: the same claim-and-complete through the storage crate's public API, no
//!   engine or runners, in batches of 100 and 500 on one connection and of
//!   `cores x 128` on three connections at once;
//! * `pg_steady`: producers create while one and three hosts run;
//! * `pg_pickup`: one task at a time into an idle host, create -> start;
//! * `pg_failover`: a host holding running tasks is killed (SIGKILL) while another
//!   idles; time until the other has completed them.
//!
//! The driver's SQL is limited to the server's administration (creating and dropping
//! schemas, reading its version): stask's tables are only read and written through
//! `stask_storage`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::json;
use stask_storage::{Claim, Finish, Status, Store, TaskFilter, TaskRecord};

use crate::report::{Cmp, Metric, Report};
use crate::seed::{creation_line, finish, noop_task, start_line, Fate};
use crate::util::{
    cpu_ms, discard, install_lib, kill, now_ms, ns_since_epoch, percentile, proc_stat,
    produce_until, run, stop_child, ticks_ms, Ctx, Env, Home, Res, Sampler,
};

const BURN: &str = "14 PostgreSQL burn-down";
const RAW: &str = "15 PostgreSQL raw claim + complete (storage API)";
const STEADY: &str = "16 PostgreSQL steady (stask serve hosts)";
const PICKUP: &str = "17 PostgreSQL idle pickup";
const FAILOVER: &str = "18 PostgreSQL failover (SIGKILL)";

/// The server when `STASK_BENCH_DATABASE_URL` is not set: the local one the test
/// scripts use (`scripts/postgres.sh`).
const DEFAULT_SERVER: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Hosts of the multi-host benchmarks.
const HOSTS: usize = 3;

fn server_url() -> String {
    std::env::var("STASK_BENCH_DATABASE_URL").unwrap_or_else(|_| DEFAULT_SERVER.to_owned())
}

/// `url` with `params` (`a=b&c=d`) added to its query.
fn with_params(url: &str, params: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{params}")
}

/// A connection for the server's administration (schemas), failing within 5 s.
fn admin() -> Res<::postgres::Client> {
    let url = server_url();
    let url = if url.contains("connect_timeout") {
        url
    } else {
        with_params(&url, "connect_timeout=5")
    };
    ::postgres::Client::connect(&url, ::postgres::NoTls).map_err(|e| {
        // The client's message ("error connecting to server") without its cause says little.
        let mut why = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            why = format!("{why}: {s}");
            source = s.source();
        }
        format!(
            "cannot connect to PostgreSQL at {}: {why}",
            redact(&server_url())
        )
    })
}

fn redact(url: &str) -> String {
    stask_storage::postgres::redact(url)
}

/// The server's version when it can be reached, the reason otherwise. Schemas a
/// driver that is gone left behind are dropped on the way.
fn server() -> Res<String> {
    let mut c = admin()?;
    let version: String = c
        .query_one("SHOW server_version", &[])
        .ctx("read the server version")?
        .get(0);
    let leftovers: Vec<String> = c
        .query(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'stask\\_bench\\_%'",
            &[],
        )
        .ctx("list schemas")?
        .iter()
        .map(|r| r.get(0))
        .collect();
    for name in leftovers {
        let pid = name
            .strip_prefix("stask_bench_")
            .and_then(|rest| rest.split('_').next())
            .and_then(|p| p.parse::<u32>().ok());
        if pid.is_some_and(|p| !Path::new(&format!("/proc/{p}")).exists()) {
            eprintln!("  dropping schema {name}, left by a driver that is gone");
            let _ = c.batch_execute(&format!("DROP SCHEMA \"{name}\" CASCADE"));
        }
    }
    Ok(version)
}

/// Whether the benchmark can run: `Some(version)`, or `None` after reporting it as
/// skipped with the reason.
pub(crate) fn ready(rep: &mut Report, key: &str, bench: &str) -> Option<String> {
    match server() {
        Ok(v) => {
            eprintln!("  PostgreSQL {v} at {}", redact(&server_url()));
            Some(v)
        }
        Err(why) => {
            eprintln!("  skipped: {why}");
            let mut m = Metric::new(
                &format!("{key}.skipped"),
                bench,
                "skipped: PostgreSQL cannot be reached",
                "",
                Vec::new(),
            );
            m.status = Some("skipped".into());
            m.note = Some(format!(
                "{why} (set STASK_BENCH_DATABASE_URL, or start the local server with scripts/postgres.sh)"
            ));
            rep.add(m);
            rep.detail(key, json!({ "skipped": why }));
            None
        }
    }
}

/// CPU time (user + system, ms) the local server has used so far: its postmaster's,
/// that of the processes it runs now (backends, autovacuum, checkpointer, WAL
/// writer) and that of those it ran and waited for (ended connections). `None` when
/// the server is not on this machine (or its processes cannot be read).
pub(crate) fn server_cpu_ms() -> Option<f64> {
    static POSTMASTER: OnceLock<Option<u32>> = OnceLock::new();
    let postmaster = (*POSTMASTER.get_or_init(|| {
        let backend: i32 = admin()
            .ok()?
            .query_one("SELECT pg_backend_pid()", &[])
            .ok()?
            .get(0);
        // The backend's parent (field 4, ppid).
        Some(*proc_stat(backend as u32)?.get(1)? as u32)
    }))?;
    let ticks = |f: &[u64], from: usize, to: usize| -> Option<u64> {
        f.get(from..=to).map(|t| t.iter().sum())
    };
    // utime, stime, cutime, cstime: fields 14-17. A child the postmaster waits for
    // while the children are read would count in neither place (or in both), so the
    // reading is taken again until the postmaster's own figure did not move meanwhile.
    let mut total = 0;
    for _ in 0..100 {
        let before = ticks(&proc_stat(postmaster)?, 11, 14)?;
        let mut children = 0;
        for entry in std::fs::read_dir("/proc").ok()?.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some(f) = proc_stat(pid) {
                if f.get(1) == Some(&u64::from(postmaster)) {
                    children += ticks(&f, 11, 12).unwrap_or(0);
                }
            }
        }
        total = before + children;
        if ticks(&proc_stat(postmaster)?, 11, 14)? == before {
            break;
        }
    }
    Some(ticks_ms(total))
}

/// A schema of its own on the server, dropped (with everything in it) when dropped.
/// Connections to it carry its name as their application name.
pub(crate) struct Schema {
    name: String,
}

impl Schema {
    /// A new schema, `stask_bench_PID_N_TAG`: short, because stask names its wake-up
    /// channel after the schema and a channel name has at most 63 bytes.
    pub(crate) fn new(tag: &str) -> Res<Schema> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "stask_bench_{}_{}_{tag}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        if name.len() > 40 {
            return Err(format!("schema name {name} is too long (at most 40 bytes)"));
        }
        // One of a dead driver with this process id would be in the way.
        admin()?
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS \"{name}\" CASCADE; CREATE SCHEMA \"{name}\""
            ))
            .ctx("create a schema")?;
        Ok(Schema { name })
    }

    /// The URL stask is given: the server, this schema first on the search path.
    fn url(&self) -> String {
        with_params(
            &server_url(),
            &format!(
                "options=-c%20search_path%3D{0}&application_name={0}",
                self.name
            ),
        )
    }

    /// Vacuums and analyzes the schema's tasks after seeding, then checkpoints, so that
    /// every queue of a comparison starts from a settled table (visibility map set,
    /// statistics read) rather than from wherever autovacuum got to, and right after a
    /// checkpoint. A burn-down that a checkpoint started in the middle of writes a full
    /// page image at the first change of every page after it: with checkpoints every few
    /// minutes, that fell on one queue of a comparison and not the other at random.
    /// (In the server's log of one run, a keyed burn-down at 0.75x of its unlimited
    /// one began ten seconds after a checkpoint started, its unlimited pair minutes
    /// after one.)
    pub(crate) fn settle(&self) -> Res<()> {
        // Two requests: VACUUM refuses to run in the transaction block that one request
        // of several statements makes.
        let mut admin = admin()?;
        admin
            .batch_execute(&format!("VACUUM ANALYZE \"{}\".tasks", self.name))
            .ctx("vacuum the seeded tasks")?;
        admin.batch_execute("CHECKPOINT").ctx("checkpoint")
    }

    /// The store, through the storage crate's public API.
    pub(crate) fn store(&self) -> Res<Box<dyn Store>> {
        stask_storage::open(&self.url()).ctx("open the PostgreSQL store")
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        if let Ok(mut c) = admin() {
            // A killed host's connections may outlive it for a moment.
            let _ = c.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
                &[&self.name],
            );
            if let Err(e) = c.batch_execute(&format!("DROP SCHEMA \"{}\" CASCADE", self.name)) {
                eprintln!("  warning: cannot drop schema {}: {e}", self.name);
            }
        }
    }
}

/// A home on `schema` (its own directory and plugins directory; its `stask.toml` names
/// the schema) with `libs` installed; with `discover`, also registered and activated in
/// the shared database.
pub(crate) fn pg_home(
    env: &Env,
    schema: &Schema,
    name: &str,
    libs: &[&Path],
    discover: bool,
) -> Res<Home> {
    let root = env.work.join(name);
    if root.exists() {
        discard(&root);
    }
    std::fs::create_dir_all(&root).ctx("create home")?;
    let home = Home { root };
    std::fs::write(
        home.root.join("stask.toml"),
        format!("database_url = \"{}\"\n", schema.url()),
    )
    .ctx("write stask.toml")?;
    run(
        env.stask(&home.root).args(["init", "--json"]),
        Duration::from_secs(60),
    )?;
    // Nothing may use a SQLite file beside the home.
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(home.root.join(format!("stask.db{suffix}")));
    }
    for lib in libs {
        let file = lib.file_name().ok_or("library path has no file name")?;
        install_lib(lib, &home.plugins().join(file))?;
    }
    if discover && !libs.is_empty() {
        let report = run(
            env.stask(&home.root)
                .args(["workers", "discover", "--activate", "--json"]),
            Duration::from_secs(60),
        )?
        .json()?;
        let registered = report["registered"].as_array().map_or(0, Vec::len);
        if registered != libs.len() {
            return Err(format!(
                "discovery registered {registered} of {} libraries: {report}",
                libs.len()
            ));
        }
    }
    Ok(home)
}

/// How hosts get hostnames of their own (a UTS namespace each, `unshare --uts`), so
/// that recovery works as between machines: on one machine a host tells a dead owner
/// on the same machine from `/proc` at once, without waiting for its lease. `None`
/// when unshare cannot do it here.
fn uts_prefix() -> Option<&'static [&'static str]> {
    static PREFIX: OnceLock<Option<&'static [&'static str]>> = OnceLock::new();
    *PREFIX.get_or_init(|| {
        const CANDIDATES: [&[&str]; 2] = [&["--uts"], &["--user", "--map-root-user", "--uts"]];
        CANDIDATES.into_iter().find(|p| {
            Command::new("unshare")
                .args(*p)
                .args(["sh", "-c", "hostname stask-bench-probe"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
    })
}

/// A running `stask serve` on a PostgreSQL home, stopped (SIGTERM, then SIGKILL after
/// 60 s) when dropped.
pub(crate) struct PgHost {
    child: Option<Child>,
    sampler: Option<Sampler>,
    log: PathBuf,
}

impl PgHost {
    /// Starts `stask serve` in `home` (no discovery at start, HTTP on an ephemeral
    /// port, `extra` environment) and waits until it listens. With `hostname`, in a UTS
    /// namespace of its own with that hostname (see [`uts_prefix`]).
    pub(crate) fn start(
        env: &Env,
        home: &Home,
        extra: &[(&str, &str)],
        hostname: Option<&str>,
    ) -> Res<PgHost> {
        let log = home.root.join("serve.log");
        let file = std::fs::File::create(&log).ctx("create serve.log")?;
        let mut cmd = match hostname.zip(uts_prefix()) {
            Some((name, prefix)) => {
                let mut c = Command::new("unshare");
                c.args(prefix)
                    .args(["sh", "-c", "hostname \"$0\" && exec \"$@\"", name])
                    .arg(&env.stask);
                c
            }
            None => Command::new(&env.stask),
        };
        // As Env::stask: no inherited STASK_* variables, the home, cores slots.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("STASK_") || k == "RUST_LOG" {
                cmd.env_remove(k);
            }
        }
        cmd.env("STASK_HOME", &home.root)
            .env("STASK_CONCURRENCY", env.cores.to_string())
            .env("STASK_DISCOVER_ON_START", "false")
            .env("STASK_BIND", "127.0.0.1:0");
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let child = cmd
            .arg("serve")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .ctx("cannot start `stask serve`")?;
        let pid = child.id();
        let mut host = PgHost {
            sampler: Some(Sampler::start(pid)),
            child: Some(child),
            log,
        };
        // Ready once its HTTP address is published (no wake-up socket on PostgreSQL:
        // wake-ups are LISTEN/NOTIFY).
        let addr = home.root.join("run").join(format!("http-{pid}.addr"));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if std::fs::read_to_string(&addr).is_ok_and(|t| t.ends_with('\n')) {
                return Ok(host);
            }
            if let Some(Ok(Some(status))) = host.child.as_mut().map(Child::try_wait) {
                return Err(format!(
                    "`stask serve` exited at start ({status}): {}",
                    host.log_tail()
                ));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "`stask serve` did not listen within 30 s: {}",
                    host.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    }

    /// Waits until the host is idle: its CPU time grew by at most 20 ms over the last
    /// 500 ms (start-up work does not overlap what is measured).
    fn settle(&self, timeout: Duration) -> Res<()> {
        let pid = self.pid().ok_or("the host is not running")?;
        let started = Instant::now();
        let mut window: std::collections::VecDeque<(Instant, f64)> = Default::default();
        loop {
            let now = Instant::now();
            let cpu = cpu_ms(pid).ok_or("cannot read the host's CPU time")?;
            window.push_back((now, cpu));
            while window
                .front()
                .is_some_and(|(t, _)| now - *t > Duration::from_millis(500))
            {
                window.pop_front();
            }
            let (first_t, first_cpu) = window.front().copied().unwrap_or((now, cpu));
            if now - first_t >= Duration::from_millis(450) && cpu - first_cpu <= 20.0 {
                return Ok(());
            }
            if now - started > timeout {
                return Err(format!(
                    "`stask serve` was still busy {timeout:?} after its start"
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL, reaped at once.
    fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(s) = self.sampler.take() {
            s.stop();
        }
    }

    /// Sends a signal (SIGSTOP, SIGCONT).
    fn signal(&self, signal: i32) {
        if let Some(pid) = self.pid() {
            kill(pid, signal);
        }
    }

    /// Stops the host (SIGTERM); its peak RSS in kB.
    pub(crate) fn stop(mut self) -> Res<u64> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Res<u64> {
        let Some(mut child) = self.child.take() else {
            return Ok(0);
        };
        // A host a benchmark stopped (SIGSTOP) must run again to end.
        kill(child.id(), libc::SIGCONT);
        let status = stop_child(&mut child, Duration::from_secs(60));
        let mem = self.sampler.take().map(Sampler::stop).unwrap_or_default();
        match status {
            Some(s) if s.success() => Ok(mem.main_kb),
            Some(s) => Err(format!(
                "`stask serve` exited with {s} when stopped: {}",
                self.log_tail()
            )),
            None => Err("`stask serve` did not stop within 60 s of SIGTERM; killed".into()),
        }
    }
}

impl Drop for PgHost {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// Stops hosts; the largest peak RSS in kB.
fn stop_all(hosts: Vec<PgHost>) -> Res<u64> {
    let mut peak = 0;
    let mut first_err = None;
    for h in hosts {
        match h.stop() {
            Ok(kb) => peak = peak.max(kb),
            Err(e) => first_err = first_err.or(Some(e)),
        }
    }
    first_err.map_or(Ok(peak), Err)
}

/// Creates `n` no-op demo tasks in one CLI call; the wall clock (ms) right after it
/// exited, and its duration.
fn create_noops(env: &Env, home: &Home, n: usize) -> Res<(i64, Duration)> {
    let ran = run(
        env.stask(&home.root)
            .args(["tasks", "create", "demo", "noop", "--count", &n.to_string()]),
        Duration::from_secs(120) + Duration::from_millis(n as u64),
    )?;
    Ok((ns_since_epoch(ran.ended) as i64 / 1_000_000, ran.wall))
}

/// Polls the kept counts until `n` tasks are completed; the wall clock (ms) when seen.
fn wait_completed(store: &dyn Store, n: i64, timeout: Duration) -> Res<i64> {
    let deadline = Instant::now() + timeout;
    loop {
        let c = store.task_status_counts().ctx("count tasks")?;
        if c.completed >= n {
            return Ok(now_ms());
        }
        if c.failed + c.cancelled > 0 {
            return Err(format!("tasks failed or were cancelled: {c:?}"));
        }
        if Instant::now() > deadline {
            return Err(format!(
                "not all {n} tasks completed within {timeout:?}: {c:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Every task, checked to have run once and completed.
pub(crate) fn all_ran_once(store: &dyn Store, n: usize) -> Res<Vec<TaskRecord>> {
    let tasks = store.list_tasks(&TaskFilter::default()).ctx("list tasks")?;
    if tasks.len() != n {
        return Err(format!("{} tasks stored, {n} expected", tasks.len()));
    }
    if let Some(t) = tasks
        .iter()
        .find(|t| t.status != Status::Completed || t.attempts != 1)
    {
        return Err(format!(
            "task {} is {} after {} attempts (each should have completed in one)",
            t.id, t.status, t.attempts
        ));
    }
    Ok(tasks)
}

/// A client home (which registers the demo worker) and `hosts` homes of its own on
/// `schema`, each running a settled `stask serve`. Keep the homes while the hosts run.
fn start_cluster(
    env: &Env,
    schema: &Schema,
    prefix: &str,
    hosts: usize,
) -> Res<(Home, Vec<Home>, Vec<PgHost>)> {
    let client = pg_home(
        env,
        schema,
        &format!("{prefix}-client"),
        &[&env.demo_lib],
        true,
    )?;
    let homes: Vec<Home> = (0..hosts)
        .map(|h| {
            pg_home(
                env,
                schema,
                &format!("{prefix}-host{h}"),
                &[&env.demo_lib],
                false,
            )
        })
        .collect::<Res<_>>()?;
    let running: Vec<PgHost> = homes
        .iter()
        .map(|h| PgHost::start(env, h, &[], None))
        .collect::<Res<_>>()?;
    for h in &running {
        h.settle(Duration::from_secs(30))?;
    }
    Ok((client, homes, running))
}

/// One burn-down through `hosts` idle `stask serve` hosts: N tasks created in one CLI
/// call, then the time from the creation done (the CLI's exit, or the first start if
/// a host started one before the driver saw the exit) to the driver seeing all of them
/// completed. Returns tasks/s and the creation's duration.
fn serve_burndown(env: &Env, tag: &str, hosts: usize, n: usize) -> Res<(f64, Duration)> {
    let schema = Schema::new(tag)?;
    let (client, _homes, running) = start_cluster(env, &schema, tag, hosts)?;
    let store = schema.store()?;
    let (exit_ms, created) = create_noops(env, &client, n)?;
    let seen = wait_completed(
        &*store,
        n as i64,
        Duration::from_secs(300) + Duration::from_millis(10 * n as u64),
    )?;
    stop_all(running)?;
    let tasks = all_ran_once(&*store, n)?;
    let first_start = tasks
        .iter()
        .filter_map(|t| t.started_at)
        .min()
        .unwrap_or(exit_ms);
    let last_finish = tasks
        .iter()
        .filter_map(|t| t.finished_at)
        .max()
        .unwrap_or(seen);
    let t0 = exit_ms.min(first_start);
    let rate = n as f64 / ((seen - t0).max(1) as f64 / 1000.0);
    eprintln!(
        "    {hosts} host(s): {rate:.0} tasks/s ({:.2} s; first start {} ms after the CLI's exit, last finish {} ms before the driver saw it)",
        (seen - t0) as f64 / 1000.0,
        first_start - exit_ms,
        seen - last_finish
    );
    drop(store);
    Ok((rate, created))
}

/// pg_burndown: N no-op tasks through one host's `tasks process`, and through one and
/// three idle `stask serve` hosts.
pub fn burndown(env: &Env, rep: &mut Report) -> Res<()> {
    let Some(version) = ready(rep, "pg_burndown", BURN) else {
        return Ok(());
    };
    let n = env.n;
    let (mut process, mut creates, mut one, mut three) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..env.runs {
        // One host: `tasks process` in the home that created the tasks.
        {
            let schema = Schema::new(&format!("burn{i}"))?;
            let home = pg_home(
                env,
                &schema,
                &format!("pg-burn-{i}"),
                &[&env.demo_lib],
                true,
            )?;
            let (_, created) = create_noops(env, &home, n)?;
            creates.push(n as f64 / created.as_secs_f64());
            let ran = run(
                env.stask(&home.root).args(["tasks", "process", "--json"]),
                Duration::from_secs(300) + Duration::from_millis(10 * n as u64),
            )?;
            let summary = ran.json()?;
            let completed = summary["completed"].as_u64().unwrap_or(0) as usize;
            if completed != n {
                return Err(format!(
                    "tasks process completed {completed} of {n} tasks: {summary}"
                ));
            }
            all_ran_once(&*schema.store()?, n)?;
            let rate = n as f64 / ran.wall.as_secs_f64();
            eprintln!(
                "  run {}: tasks process {rate:.0} tasks/s ({:.2} s), created at {:.0} tasks/s",
                i + 1,
                ran.wall.as_secs_f64(),
                n as f64 / created.as_secs_f64()
            );
            process.push(rate);
        }
        one.push(serve_burndown(env, &format!("burn1h{i}"), 1, n)?.0);
        three.push(serve_burndown(env, &format!("burn3h{i}"), HOSTS, n)?.0);
    }
    let c = env.cores;
    rep.add(
        Metric::new(
            "pg.burndown.process_tasks_per_s",
            BURN,
            &format!("{n} no-op tasks, tasks process, one host (concurrency {c})"),
            "tasks/s",
            process,
        )
        .note("N / wall time of `stask tasks process` (process start included)"),
    );
    rep.add(Metric::new(
        "pg.burndown.create_tasks_per_s",
        BURN,
        &format!("creating them (tasks create --count {n})"),
        "tasks/s",
        creates,
    ));
    let one = Metric::new(
        "pg.burndown.serve1_tasks_per_s",
        BURN,
        &format!(
            "{n} no-op tasks, 1 stask serve host (concurrency {c}), creation done -> all completed"
        ),
        "tasks/s",
        one,
    );
    rep.add(one.clone());
    let three = Metric::new(
        "pg.burndown.serve3_tasks_per_s",
        BURN,
        &format!("{n} no-op tasks, {HOSTS} stask serve hosts (concurrency {c} each), creation done -> all completed"),
        "tasks/s",
        three,
    )
    .target(">= 10,000 tasks/s", Cmp::AtLeast, 10_000.0)
    .note("from the creating CLI's exit (or the first start, if earlier) until the driver saw N completed (kept counts polled every 5 ms); every task checked to have run once");
    rep.add(three.clone());
    rep.add(
        Metric::ratio(
            "pg.ratio.serve3_over_serve1",
            BURN,
            &format!("{HOSTS} hosts / 1 host (stask serve)"),
            &three,
            &one,
        )
        .note("the hosts share the machine's cores with each other and with the server"),
    );
    add_raw_ratios(rep);
    rep.detail(
        "pg_burndown",
        json!({
            "server_version": version, "tasks": n, "hosts": HOSTS, "concurrency_per_host": c,
            "schema": "a fresh schema per run and configuration, dropped afterwards",
            "start": "min(creating CLI's exit, first started_at)",
            "end": "the driver sees task_status_counts().completed == N (polled every 5 ms)",
        }),
    );
    Ok(())
}

/// Claims and completes every pending task, `batch` at a time, as the engine's
/// coordinator does (each claim stores its start lines; the previous batch's finishes
/// with their final lines go in the same transaction). Returns tasks run and time.
fn burn(store: &mut dyn Store, owner: &str, batch: usize) -> Res<(usize, Duration)> {
    let started = Instant::now();
    let mut finishes: Vec<Finish> = Vec::new();
    let mut done = 0usize;
    loop {
        let (applied, claimed) = store
            .claim(&Claim {
                finishes: &finishes,
                owner,
                now: now_ms(),
                limit: batch,
                excluded_workers: &[],
                start_line: &start_line,
            })
            .ctx("claim")?;
        if applied.iter().any(|a| !a) {
            return Err("a finish did not apply".into());
        }
        done += applied.len();
        if claimed.is_empty() {
            break;
        }
        let now = now_ms();
        finishes = claimed
            .iter()
            .map(|c| finish(c.task.id, owner, Fate::Completed, now))
            .collect();
    }
    Ok((done, started.elapsed()))
}

/// Inserts `n` demo no-op tasks, `batch` per call, with their creation lines.
fn insert(store: &mut dyn Store, n: usize, batch: usize) -> Res<Duration> {
    let creation = creation_line();
    let started = Instant::now();
    let mut left = n;
    while left > 0 {
        let k = left.min(batch);
        let ids = store
            .insert_tasks(&noop_task(now_ms()), k, &creation)
            .ctx("insert")?;
        if ids.len() != k {
            return Err(format!("insert_tasks stored {} of {k}", ids.len()));
        }
        left -= k;
    }
    Ok(started.elapsed())
}

/// Tasks per `insert_tasks` call in the raw benchmark (a steady producer's call).
const RAW_INSERT_BATCH: usize = 500;

/// Claim batches of the raw benchmark on one connection.
const RAW_BATCHES: [usize; 2] = [100, 500];

/// pg_raw: claim + complete through the storage API alone.
pub fn raw(env: &Env, rep: &mut Report) -> Res<()> {
    let Some(version) = ready(rep, "pg_raw", RAW) else {
        return Ok(());
    };
    let n = env.n;
    let wide = env.cores * 128;
    let mut inserts = Vec::new();
    let mut per_batch: Vec<Vec<f64>> = vec![Vec::new(); RAW_BATCHES.len()];
    let mut parallel = Vec::new();
    for i in 0..env.runs {
        let schema = Schema::new(&format!("raw{i}"))?;
        // The demo worker registered and active (claims join the workers).
        let _home = pg_home(env, &schema, &format!("pg-raw-{i}"), &[&env.demo_lib], true)?;
        let mut store = schema.store()?;
        let mut line = format!("  run {}:", i + 1);
        for (k, batch) in RAW_BATCHES.iter().enumerate() {
            let inserted = insert(&mut *store, n, RAW_INSERT_BATCH)?;
            if k == 0 {
                inserts.push(n as f64 / inserted.as_secs_f64());
                line += &format!(" insert {:.0} tasks/s;", n as f64 / inserted.as_secs_f64());
            }
            let (ran, took) = burn(&mut *store, "bench/pg-raw", *batch)?;
            if ran != n {
                return Err(format!("raw: {ran} of {n} tasks were run"));
            }
            let rate = n as f64 / took.as_secs_f64();
            line += &format!(" batches of {batch}: {rate:.0} tasks/s;");
            per_batch[k].push(rate);
        }
        // Three connections at once (as three hosts), claims of cores x 128.
        insert(&mut *store, n, RAW_INSERT_BATCH)?;
        let url = schema.url();
        let started = Instant::now();
        let results: Vec<Res<usize>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..HOSTS)
                .map(|h| {
                    let url = url.clone();
                    s.spawn(move || -> Res<usize> {
                        let mut store = stask_storage::open(&url).ctx("open the store")?;
                        Ok(burn(&mut *store, &format!("bench/pg-raw-{h}"), wide)?.0)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err("a burn thread panicked".into()))
                })
                .collect()
        });
        let took = started.elapsed();
        let ran: usize = results.into_iter().collect::<Res<Vec<_>>>()?.iter().sum();
        if ran != n {
            return Err(format!(
                "raw, {HOSTS} connections: {ran} of {n} tasks were run"
            ));
        }
        let counts = store.task_status_counts().ctx("counts")?;
        if counts.completed != (n * (RAW_BATCHES.len() + 1)) as i64 {
            return Err(format!("raw: unexpected counts afterwards: {counts:?}"));
        }
        let rate = n as f64 / took.as_secs_f64();
        eprintln!("{line} {HOSTS} connections x {wide}: {rate:.0} tasks/s");
        parallel.push(rate);
    }
    rep.add(Metric::new(
        "pg.raw.insert_per_s",
        RAW,
        &format!(
            "store: insert_tasks, batches of {RAW_INSERT_BATCH}, with creation lines, {n} tasks"
        ),
        "tasks/s",
        inserts,
    ));
    for (k, batch) in RAW_BATCHES.iter().enumerate() {
        rep.add(
            Metric::new(
                &format!("pg.raw.b{batch}_tasks_per_s"),
                RAW,
                &format!("store: claim {batch} + finish the previous batch, one connection, {n} tasks"),
                "tasks/s",
                per_batch[k].clone(),
            )
            .note("Store::claim with the previous batch's finishes in the same transaction, start and final lines stored, as the engine's coordinator"),
        );
    }
    rep.add(Metric::new(
        "pg.raw.c3_tasks_per_s",
        RAW,
        &format!("store: {HOSTS} connections at once, claims of {wide} (cores x 128) + finish, {n} tasks"),
        "tasks/s",
        parallel,
    ));
    add_raw_ratios(rep);
    rep.detail(
        "pg_raw",
        json!({
            "server_version": version, "tasks": n, "api": "stask_storage::Store (PostgreSQL backend)",
            "insert_batch": RAW_INSERT_BATCH, "claim_batches": RAW_BATCHES,
            "parallel": { "connections": HOSTS, "claim_batch": wide },
            "lines_per_task": 3,
        }),
    );
    Ok(())
}

/// The ratios of the burn-downs to the raw figures, once both ran (whichever ran
/// second adds them).
fn add_raw_ratios(rep: &mut Report) {
    if rep.get("pg.ratio.serve3_over_raw").is_some() {
        return;
    }
    let Some(three) = rep.get("pg.burndown.serve3_tasks_per_s").cloned() else {
        return;
    };
    let best = RAW_BATCHES
        .iter()
        .filter_map(|b| rep.get(&format!("pg.raw.b{b}_tasks_per_s")).cloned())
        .filter(|m| m.median.is_finite())
        .max_by(|a, b| a.median.total_cmp(&b.median));
    let Some(best) = best else {
        return;
    };
    rep.add(
        Metric::ratio(
            "pg.ratio.serve3_over_raw",
            RAW,
            &format!("{HOSTS}-host burn-down / raw claim + complete ({})", best.key),
            &three,
            &best,
        )
        .target(">= 0.4x", Cmp::AtLeast, 0.4)
        .note("against the faster of the one-connection batch sizes; median / median, min and max pair the worst and best runs"),
    );
    if let Some(par) = rep.get("pg.raw.c3_tasks_per_s").cloned() {
        rep.add(Metric::ratio(
            "pg.ratio.serve3_over_raw_c3",
            RAW,
            &format!("{HOSTS}-host burn-down / raw on {HOSTS} connections"),
            &three,
            &par,
        ));
    }
    if let Some(process) = rep.get("pg.burndown.process_tasks_per_s").cloned() {
        rep.add(Metric::ratio(
            "pg.ratio.process_over_raw",
            RAW,
            &format!(
                "tasks process (one host) / raw claim + complete ({})",
                best.key
            ),
            &process,
            &best,
        ));
    }
}

/// Steady figures of one host count.
#[derive(Default)]
struct SteadyRuns {
    rates: Vec<f64>,
    created: Vec<f64>,
    backlogs: Vec<f64>,
    p50s: Vec<f64>,
    p99s: Vec<f64>,
    serve_mb: Vec<f64>,
}

/// pg_steady: `cores` producers call `tasks create demo noop --count 500` in a loop
/// while one and three hosts run; completed/s in the window after a warm-up.
pub fn steady(env: &Env, rep: &mut Report) -> Res<()> {
    let Some(version) = ready(rep, "pg_steady", STEADY) else {
        return Ok(());
    };
    let secs: u64 = if env.quick { 10 } else { 30 };
    let warmup_ms: i64 = 1000;
    let batch = 500usize;
    let producers = env.cores;
    let mut by_hosts: Vec<(usize, SteadyRuns)> = Vec::new();
    for hosts in [1, HOSTS] {
        let mut r = SteadyRuns::default();
        for i in 0..env.runs {
            let tag = format!("steady{hosts}h{i}");
            let schema = Schema::new(&tag)?;
            let (client, _homes, running) =
                start_cluster(env, &schema, &format!("pg-{tag}"), hosts)?;
            let t0 = now_ms();
            let deadline = Instant::now() + Duration::from_secs(secs);
            let created = produce_until(deadline, producers, batch, || {
                create_noops(env, &client, batch).map(|_| ())
            });
            let t1 = now_ms();
            let created = created?;
            let store = schema.store()?;
            let backlog = store.task_status_counts().ctx("count backlog")?.pending;
            let peak_kb = stop_all(running)?;
            let w0 = t0 + warmup_ms;
            let tasks = store.list_tasks(&TaskFilter::default()).ctx("list tasks")?;
            let completed = tasks
                .iter()
                .filter(|t| t.status == Status::Completed)
                .filter(|t| t.finished_at.is_some_and(|f| f >= w0 && f < t1))
                .count();
            if let Some(t) = tasks.iter().find(|t| t.attempts > 1) {
                return Err(format!("task {} ran {} times", t.id, t.attempts));
            }
            let window_s = (t1 - w0) as f64 / 1000.0;
            let waits: Vec<f64> = tasks
                .iter()
                .filter_map(|t| Some((t.started_at?, t.created_at)))
                .filter(|(s, _)| *s >= w0 && *s < t1)
                .map(|(s, c)| (s - c) as f64)
                .collect();
            drop(tasks);
            drop(store);
            let rate = completed as f64 / window_s;
            let made = created as f64 / ((t1 - t0) as f64 / 1000.0);
            eprintln!(
                "  {hosts} host(s), run {}: {rate:.0} completed/s, {made:.0} created/s, backlog {backlog}, wait p50 {} ms p99 {} ms, serve {peak_kb} kB",
                i + 1,
                percentile(&waits, 50.0),
                percentile(&waits, 99.0),
            );
            r.rates.push(rate);
            r.created.push(made);
            r.backlogs.push(backlog as f64);
            r.p50s.push(percentile(&waits, 50.0));
            r.p99s.push(percentile(&waits, 99.0));
            r.serve_mb.push(peak_kb as f64 / 1024.0);
        }
        by_hosts.push((hosts, r));
    }
    for (hosts, r) in by_hosts {
        let k = format!("pg.steady{hosts}");
        let saturated = r
            .backlogs
            .iter()
            .filter(|b| **b > (batch * producers) as f64)
            .count();
        rep.add(
            Metric::new(
                &format!("{k}.tasks_per_s"),
                STEADY,
                &format!("{hosts} host(s): completed while {producers} producers create ({secs} s)"),
                "tasks/s",
                r.rates,
            )
            .note(format!(
                "{saturated} of {} runs ended with a backlog above one batch per producer (the hosts were the bound)",
                r.backlogs.len()
            )),
        );
        rep.add(Metric::new(
            &format!("{k}.created_per_s"),
            STEADY,
            &format!("{hosts} host(s): created by the producers (--count {batch} per call)"),
            "tasks/s",
            r.created,
        ));
        rep.add(Metric::new(
            &format!("{k}.backlog"),
            STEADY,
            &format!("{hosts} host(s): pending tasks when the producers stopped"),
            "tasks",
            r.backlogs,
        ));
        rep.add(
            Metric::new(
                &format!("{k}.wait_p50_ms"),
                STEADY,
                &format!("{hosts} host(s): create-to-start wait p50 (tasks started in window)"),
                "ms",
                r.p50s,
            )
            .note("with a backlog: queueing time"),
        );
        rep.add(Metric::new(
            &format!("{k}.wait_p99_ms"),
            STEADY,
            &format!("{hosts} host(s): create-to-start wait p99 (tasks started in window)"),
            "ms",
            r.p99s,
        ));
        rep.add(Metric::new(
            &format!("{k}.serve_mb"),
            STEADY,
            &format!("{hosts} host(s): stask serve peak RSS (largest host)"),
            "MB",
            r.serve_mb,
        ));
    }
    if let (Some(a), Some(b)) = (
        rep.get(&format!("pg.steady{HOSTS}.tasks_per_s")).cloned(),
        rep.get("pg.steady1.tasks_per_s").cloned(),
    ) {
        rep.add(Metric::ratio(
            "pg.ratio.steady3_over_steady1",
            STEADY,
            &format!("{HOSTS} hosts / 1 host (steady)"),
            &a,
            &b,
        ));
    }
    if let Some(s) = rep.get("steady.tasks_per_s").cloned() {
        if let Some(one) = rep.get("pg.steady1.tasks_per_s").cloned() {
            rep.add(Metric::ratio(
                "pg.ratio.steady1_over_sqlite",
                STEADY,
                "1 host on PostgreSQL / stask serve on SQLite (section 2)",
                &one,
                &s,
            ));
        }
    }
    rep.detail(
        "pg_steady",
        json!({
            "server_version": version, "seconds": secs, "warmup_ms": warmup_ms,
            "producers": producers, "tasks_per_create_call": batch,
            "hosts": [1, HOSTS], "concurrency_per_host": env.cores,
        }),
    );
    Ok(())
}

/// pg_pickup: with one `stask serve` idle, one `demo stamp` task at a time; from the
/// task's `created_at` (taken by the CLI before its insert) to its `started_at` (taken
/// by the host when it claims it), and from the CLI's exit to the runner's start.
pub fn pickup(env: &Env, rep: &mut Report) -> Res<()> {
    let Some(version) = ready(rep, "pg_pickup", PICKUP) else {
        return Ok(());
    };
    let samples: usize = if env.quick { 20 } else { 100 };
    let pause = Duration::from_millis(100);
    let schema = Schema::new("pickup")?;
    let client = pg_home(env, &schema, "pg-pickup-client", &[&env.demo_lib], true)?;
    let home = pg_home(env, &schema, "pg-pickup-host", &[&env.demo_lib], false)?;
    let host = PgHost::start(env, &home, &[], None)?;
    host.settle(Duration::from_secs(30))?;
    let store = schema.store()?;
    let mut from_row = Vec::new();
    let mut from_exit = Vec::new();
    // The first task starts the runner process: a warm-up, not a sample.
    for i in 0..=samples {
        let created = run(
            env.stask(&client.root)
                .args(["tasks", "create", "demo", "stamp", "--json"]),
            Duration::from_secs(30),
        )?;
        let exit_ns = ns_since_epoch(created.ended);
        let id = crate::util::id_of(&created)?;
        let deadline = Instant::now() + Duration::from_secs(30);
        let task = loop {
            let t = store
                .get_task(id)
                .ctx("read task")?
                .ok_or_else(|| format!("stamp task {id} is gone"))?;
            match t.status {
                Status::Completed => break t,
                Status::Failed | Status::Cancelled => {
                    return Err(format!("stamp task {id} {}", t.status))
                }
                _ if Instant::now() > deadline => {
                    return Err(format!("stamp task {id} not done within 30 s"))
                }
                _ => std::thread::sleep(Duration::from_millis(2)),
            }
        };
        let started_at = task
            .started_at
            .ok_or("a completed task without started_at")?;
        let result: serde_json::Value =
            serde_json::from_str(task.result.as_deref().unwrap_or("null")).unwrap_or_default();
        let started_ns = result["started_ns"]
            .as_u64()
            .ok_or_else(|| format!("no started_ns in the result of task {id}"))?
            as i128;
        if i > 0 {
            from_row.push((started_at - task.created_at) as f64);
            from_exit.push((started_ns - exit_ns) as f64 / 1e6);
        }
        std::thread::sleep(pause);
    }
    drop(store);
    host.stop()?;
    eprintln!(
        "  created_at -> started_at p50 {} ms, p99 {} ms; CLI exit -> runner start p50 {:.2} ms, p99 {:.2} ms",
        percentile(&from_row, 50.0),
        percentile(&from_row, 99.0),
        percentile(&from_exit, 50.0),
        percentile(&from_exit, 99.0)
    );
    rep.add(
        Metric::new(
            "pg.pickup.p50_ms",
            PICKUP,
            &format!("created_at -> started_at, idle host, p50 of {samples}"),
            "ms",
            from_row.clone(),
        )
        .target("p50 < 10 ms", Cmp::Below, 10.0)
        .note("whole ms (the task's columns); includes the CLI's insert and commit, the NOTIFY, the host's claim"),
    );
    rep.add(Metric::derived(
        "pg.pickup.p99_ms",
        PICKUP,
        &format!("created_at -> started_at, idle host, p99 of {samples}"),
        "ms",
        percentile(&from_row, 99.0),
        crate::util::min(&from_row),
        crate::util::max(&from_row),
    ));
    rep.add(
        Metric::new(
            "pg.pickup.exit_p50_ms",
            PICKUP,
            "CLI exit -> runner start (demo stamp), p50",
            "ms",
            from_exit.clone(),
        )
        .note("negative: the runner started before the driver saw the CLI exit"),
    );
    rep.add(Metric::derived(
        "pg.pickup.exit_p99_ms",
        PICKUP,
        "CLI exit -> runner start (demo stamp), p99",
        "ms",
        percentile(&from_exit, 99.0),
        crate::util::min(&from_exit),
        crate::util::max(&from_exit),
    ));
    rep.detail(
        "pg_pickup",
        json!({ "server_version": version, "samples": samples, "warmup_tasks": 1,
                "pause_ms": pause.as_millis() as u64, "hosts": 1 }),
    );
    Ok(())
}

/// Steps and step length of the failover's tasks (`demo run`): long enough to be
/// running when the host is killed, short enough not to hide the recovery.
const FAILOVER_STEPS: u64 = 10;
const FAILOVER_STEP_MS: u64 = 100;

/// The short lease of the failover's second configuration.
const SHORT_STALE_SECS: u64 = 5;

/// One failover: hosts A and B idle (the one started first takes the leadership of the
/// stuck-task check, a 30 s term: A when `victim_leads`), B paused (SIGSTOP) while
/// `cores` tasks are created so that A claims them all, then resumed; A is killed
/// (SIGKILL) once all are running. Returns (kill -> all completed, kill -> last
/// restart, restart -> completed), in s.
fn failover_once(
    env: &Env,
    tag: &str,
    stale: Option<u64>,
    victim_leads: bool,
) -> Res<(f64, f64, f64)> {
    let schema = Schema::new(tag)?;
    let client = pg_home(
        env,
        &schema,
        &format!("pg-{tag}-client"),
        &[&env.demo_lib],
        true,
    )?;
    let a_home = pg_home(
        env,
        &schema,
        &format!("pg-{tag}-a"),
        &[&env.demo_lib],
        false,
    )?;
    let b_home = pg_home(
        env,
        &schema,
        &format!("pg-{tag}-b"),
        &[&env.demo_lib],
        false,
    )?;
    let stale_s = stale.map(|s| s.to_string());
    let extra: Vec<(&str, &str)> = stale_s
        .as_deref()
        .map(|s| vec![("STASK_STALE_AFTER_SECS", s)])
        .unwrap_or_default();
    let start_a = || PgHost::start(env, &a_home, &extra, Some("stask-bench-a"));
    let start_b = || PgHost::start(env, &b_home, &extra, Some("stask-bench-b"));
    let (mut a, b) = if victim_leads {
        let a = start_a()?;
        a.settle(Duration::from_secs(30))?;
        (a, start_b()?)
    } else {
        let b = start_b()?;
        b.settle(Duration::from_secs(30))?;
        (start_a()?, b)
    };
    a.settle(Duration::from_secs(30))?;
    b.settle(Duration::from_secs(30))?;
    let store = schema.store()?;
    b.signal(libc::SIGSTOP);
    let data = json!({ "steps": FAILOVER_STEPS, "step_ms": FAILOVER_STEP_MS }).to_string();
    let tasks = env.cores;
    let mut ids = Vec::new();
    for _ in 0..tasks {
        ids.push(crate::util::id_of(&run(
            env.stask(&client.root)
                .args(["tasks", "create", "demo", "run", "--json", "--data", &data]),
            Duration::from_secs(30),
        )?)?);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let c = store.task_status_counts().ctx("count tasks")?;
        if c.running == tasks as i64 {
            break;
        }
        if Instant::now() > deadline {
            b.signal(libc::SIGCONT);
            return Err(format!(
                "host A did not run all {tasks} tasks within 20 s: {c:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    b.signal(libc::SIGCONT);
    let killed = now_ms();
    a.kill9();
    wait_completed(&*store, tasks as i64, Duration::from_secs(180))?;
    let mut last_start = 0;
    let mut last_finish = 0;
    for id in &ids {
        let t = store
            .get_task(*id)
            .ctx("read task")?
            .ok_or_else(|| format!("task {id} is gone"))?;
        if t.attempts != 2 {
            return Err(format!(
                "task {id} took {} attempts (1 lost with host A, 1 on host B expected)",
                t.attempts
            ));
        }
        let lines = store.log_lines(*id, 0, 10_000).ctx("read log")?;
        let parsed: Vec<_> = lines.iter().filter_map(|l| l.parse()).collect();
        let completions = parsed.iter().filter(|l| l.status == "completed").count();
        if completions != 1 || !parsed.iter().any(|l| l.message.starts_with("Recovered: ")) {
            return Err(format!(
                "task {id}: expected one recovery and one completion in its log"
            ));
        }
        last_start = last_start.max(t.started_at.unwrap_or(0));
        last_finish = last_finish.max(t.finished_at.unwrap_or(0));
    }
    drop(store);
    b.stop()?;
    let s = |ms: i64| ms as f64 / 1000.0;
    Ok((
        s(last_finish - killed),
        s(last_start - killed),
        s(last_finish - last_start),
    ))
}

/// pg_failover: kill -> all of the killed host's tasks completed by the other host,
/// with the default lease (30 s) and a short one.
pub fn failover(env: &Env, rep: &mut Report) -> Res<()> {
    let Some(version) = ready(rep, "pg_failover", FAILOVER) else {
        return Ok(());
    };
    let uts = uts_prefix();
    if uts.is_none() {
        eprintln!("  warning: unshare --uts does not work here: the hosts share a hostname, so recovery takes the /proc fast path");
    }
    // (key, stale_after, whether the killed host leads the stuck-task check)
    let configs = [
        ("default", 30, true),
        ("short", SHORT_STALE_SECS, true),
        ("short_follower", SHORT_STALE_SECS, false),
    ];
    let mut figures = Vec::new();
    for (c, (label, stale, leads)) in configs.into_iter().enumerate() {
        let (mut total, mut restart, mut rerun) = (Vec::new(), Vec::new(), Vec::new());
        // The default lease is the hosts' own default: no variable set.
        let setting = (stale != 30).then_some(stale);
        for i in 0..env.runs {
            let (t, r, d) = failover_once(env, &format!("fail{c}r{i}"), setting, leads)?;
            eprintln!(
                "  stale_after {stale} s, the killed host {} the leader, run {}: kill -> completed {t:.1} s (kill -> restarted {r:.1} s, rerun {d:.1} s)",
                if leads { "was" } else { "was not" },
                i + 1
            );
            total.push(t);
            restart.push(r);
            rerun.push(d);
        }
        figures.push((label, stale, leads, total, restart, rerun));
    }
    let task_s = (FAILOVER_STEPS * FAILOVER_STEP_MS) as f64 / 1000.0;
    for (label, stale, leads, total, restart, rerun) in figures {
        let k = format!("pg.failover.{label}");
        let who = if leads {
            "killed host leading the stuck-task check"
        } else {
            "the idle host leading the stuck-task check"
        };
        let m = Metric::new(
            &format!("{k}.kill_to_completed_s"),
            FAILOVER,
            &format!(
                "stale_after {stale} s, {who}: SIGKILL -> all {} of its tasks completed on the idle host",
                env.cores
            ),
            "s",
            total,
        );
        let m = if stale == 30 {
            m.target("< 35 s (stale_after 30 s)", Cmp::Below, 35.0)
        } else {
            m
        };
        rep.add(m.note(format!(
            "tasks of {task_s} s (demo run); the host started first holds the leadership (a 30 s term, renewed by its check every 10 s); the idle host checks every 10 s"
        )));
        rep.add(Metric::new(
            &format!("{k}.kill_to_restart_s"),
            FAILOVER,
            &format!("stale_after {stale} s, {who}: SIGKILL -> the last of them started again"),
            "s",
            restart,
        ));
        rep.add(Metric::new(
            &format!("{k}.rerun_s"),
            FAILOVER,
            &format!("stale_after {stale} s, {who}: restart -> completed"),
            "s",
            rerun,
        ));
    }
    rep.detail(
        "pg_failover",
        json!({
            "server_version": version, "tasks": env.cores, "task": "demo run",
            "steps": FAILOVER_STEPS, "step_ms": FAILOVER_STEP_MS,
            "configurations": configs.iter().map(|(k, s, l)| json!({ "key": k, "stale_after_secs": s, "killed_host_leads": l })).collect::<Vec<_>>(),
            "hostnames": if uts.is_some() { "one per host (unshare --uts), as on separate machines" } else { "shared: recovery through /proc" },
            "scenario": "hosts A and B start one after the other (the first takes the leadership); B is paused (SIGSTOP) while the tasks are created so A claims them all, resumed, then A is killed (SIGKILL) once all run",
        }),
    );
    Ok(())
}
