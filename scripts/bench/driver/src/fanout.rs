//! Fan-out / fan-in: 1,000 no-op tasks and one final task created to run after all of
//! them (`--after` every one), run by the real engine (`stask tasks process`, and an
//! idle `stask serve` started once they are stored) on SQLite and on PostgreSQL.
//!
//! Every task is a `demo stamp` (it returns at once, with the wall clock at which it
//! started in `result.started_ns`). The figures are read back from the stored tasks:
//! the delay between the last dependency's finish and the final task's start as the
//! store records them (the release happens in the finishing transaction; what remains
//! is the engine's next claim), the same seen from the plugins (the final task's own
//! start − the last dependency's own start, which covers the outcome's way back from
//! the runner and the final task's way out to one), and the total time from the first
//! dependency's start to the final task's finish. Tasks are seeded through the storage
//! crate's public API (`insert_tasks`, `insert_task_after`), as `tasks create --after`
//! stores them.

use std::time::{Duration, Instant};

use serde_json::json;
use stask_storage::{After, AfterInsert, NewTask, Status, Store, TaskFilter, TaskRecord};

use crate::postgres::{pg_home, ready, PgHost, Schema};
use crate::report::{Cmp, Metric, Report};
use crate::seed::{creation_line, noop_task};
use crate::util::{run, Ctx, Env, Home, Res, Service};

const FANOUT: &str = "19 fan-out / fan-in (dependencies)";
const PG_FANOUT: &str = "19b PostgreSQL fan-out / fan-in (dependencies)";

/// Tasks the final one runs after.
const DEPS: usize = 1_000;

/// What runs the tasks.
#[derive(Debug, Clone, Copy)]
enum Engine {
    /// `stask tasks process` in the home.
    Process,
    /// An idle `stask serve` started after the tasks were stored, stopped once the final
    /// task ended.
    Serve,
}

/// One run's figures (ms).
struct FanIn {
    /// The final task's start - the last dependency's finish (stored times).
    delay: f64,
    /// The final task's plugin start - the last dependency's plugin start.
    plugin_delay: f64,
    /// The final task's finish - the first dependency's start.
    total: f64,
}

/// Stores `DEPS` no-op tasks and one that runs after all of them; returns the final
/// task's id.
fn seed(store: &mut dyn Store) -> Res<i64> {
    let now = crate::util::now_ms();
    let creation = creation_line();
    let stamp = NewTask {
        action: "stamp".into(),
        ..noop_task(now)
    };
    let ids = store
        .insert_tasks(&stamp, DEPS, &creation)
        .ctx("insert the dependencies")?;
    if ids.len() != DEPS {
        return Err(format!("insert_tasks stored {} of {DEPS}", ids.len()));
    }
    let after = After { ids, any: false };
    match store
        .insert_task_after(&stamp, &after, &creation)
        .ctx("insert the final task")?
    {
        AfterInsert::Created(id) => Ok(id),
        AfterInsert::Missing(id) => Err(format!("dependency {id} is missing")),
    }
}

/// Polls task `id` until it ended (every 5 ms); an error unless it completed.
fn wait_done(store: &dyn Store, id: i64, timeout: Duration) -> Res<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let t = store
            .get_task(id)
            .ctx("read the final task")?
            .ok_or("the final task is gone")?;
        match t.status {
            Status::Completed => return Ok(()),
            Status::Failed | Status::Cancelled => {
                return Err(format!("the final task ended {}: {}", t.status, t.message))
            }
            _ if Instant::now() > deadline => {
                return Err(format!(
                    "the final task did not complete within {timeout:?} ({})",
                    t.status
                ))
            }
            _ => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// The figures of a run, checking that every task completed in one attempt and the
/// final task started after its last dependency finished.
fn fan_in(store: &dyn Store, last: i64) -> Res<FanIn> {
    let tasks = store.list_tasks(&TaskFilter::default()).ctx("list tasks")?;
    if tasks.len() != DEPS + 1 {
        return Err(format!(
            "{} tasks stored, {} expected",
            tasks.len(),
            DEPS + 1
        ));
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
    let fin = tasks
        .iter()
        .find(|t| t.id == last)
        .ok_or("the final task is gone")?;
    let deps = tasks.iter().filter(|t| t.id != last);
    let last_finish = deps.clone().filter_map(|t| t.finished_at).max();
    let first_start = deps.filter_map(|t| t.started_at).min();
    let (Some(last_finish), Some(first_start), Some(started), Some(finished)) =
        (last_finish, first_start, fin.started_at, fin.finished_at)
    else {
        return Err("a completed task has no start or finish time".into());
    };
    if started < last_finish {
        return Err(format!(
            "the final task started {} ms before its last dependency finished",
            last_finish - started
        ));
    }
    let stamp = |t: &TaskRecord| -> Res<i64> {
        let result: serde_json::Value =
            serde_json::from_str(t.result.as_deref().unwrap_or("null")).ctx("read a result")?;
        result["started_ns"]
            .as_i64()
            .ok_or_else(|| format!("task {} has no result.started_ns: {result}", t.id))
    };
    let mut last_dep = i64::MIN;
    for t in tasks.iter().filter(|t| t.id != last) {
        last_dep = last_dep.max(stamp(t)?);
    }
    Ok(FanIn {
        delay: (started - last_finish) as f64,
        plugin_delay: (stamp(fin)? - last_dep) as f64 / 1e6,
        total: (finished - first_start) as f64,
    })
}

/// Runs the seeded tasks of `home` with `engine` until the final task `last` ended.
/// `serve` starts the service (SQLite or PostgreSQL host) and returns what stops it.
fn run_engine(
    env: &Env,
    home: &Home,
    store: &dyn Store,
    last: i64,
    engine: Engine,
    serve: impl FnOnce() -> Res<Box<dyn FnOnce() -> Res<()>>>,
) -> Res<()> {
    let timeout = Duration::from_secs(120);
    match engine {
        Engine::Process => {
            let ran = run(
                env.stask(&home.root).args(["tasks", "process", "--json"]),
                timeout,
            )?;
            let summary = ran.json()?;
            let completed = summary["completed"].as_u64().unwrap_or(0) as usize;
            if completed != DEPS + 1 {
                return Err(format!(
                    "tasks process completed {completed} of {} tasks: {summary}",
                    DEPS + 1
                ));
            }
            Ok(())
        }
        Engine::Serve => {
            let stop = serve()?;
            let waited = wait_done(store, last, timeout);
            let stopped = stop();
            waited.and(stopped)
        }
    }
}

/// The figures of `runs` (delay and total per run) as metrics under `prefix`.
fn add(rep: &mut Report, prefix: &str, section: &str, what: &str, runs: &[FanIn]) {
    rep.add(
        Metric::new(
            &format!("{prefix}_delay_ms"),
            section,
            &format!("{what}: last dependency finished -> final task started"),
            "ms",
            runs.iter().map(|r| r.delay).collect(),
        )
        .target("<= 50 ms", Cmp::AtMost, 50.0)
        .note("started_at of the final task - the largest finished_at of its 1,000 dependencies (stored times, whole ms; finished_at is taken when the engine's coordinator concludes the attempt)"),
    );
    rep.add(
        Metric::new(
            &format!("{prefix}_plugin_delay_ms"),
            section,
            &format!("{what}: the same, seen from the plugins"),
            "ms",
            runs.iter().map(|r| r.plugin_delay).collect(),
        )
        .target("<= 50 ms", Cmp::AtMost, 50.0)
        .note("the final task's result.started_ns - the latest result.started_ns of its dependencies (demo stamp returns at once): the outcome's way back from the runner, its commit with the release, the claim and the way out to a runner"),
    );
    rep.add(Metric::new(
        &format!("{prefix}_total_ms"),
        section,
        &format!("{what}: first dependency started -> final task finished"),
        "ms",
        runs.iter().map(|r| r.total).collect(),
    ));
}

fn log_run(what: &str, i: usize, r: &FanIn) {
    eprintln!(
        "  {what} run {}: final task started {:.0} ms after its last dependency finished ({:.1} ms from plugin to plugin); {:.0} ms in all",
        i + 1,
        r.delay,
        r.plugin_delay,
        r.total
    );
}

/// fanout: on SQLite, through `tasks process` and through `stask serve`.
pub fn fanout(env: &Env, rep: &mut Report) -> Res<()> {
    let mut by_engine: Vec<(Engine, Vec<FanIn>)> =
        vec![(Engine::Process, Vec::new()), (Engine::Serve, Vec::new())];
    for i in 0..env.runs {
        for (engine, runs) in by_engine.iter_mut() {
            let home = Home::create(env, &format!("fanout-{i}-{engine:?}"), &[&env.demo_lib])?;
            let mut store = home.store()?;
            let last = seed(&mut *store)?;
            run_engine(env, &home, &*store, last, *engine, || {
                let service = Service::start(env, &home)?;
                Ok(Box::new(move || service.stop().map(|_| ())))
            })?;
            let r = fan_in(&*store, last)?;
            log_run(&format!("{engine:?}"), i, &r);
            runs.push(r);
        }
    }
    let [(_, process), (_, serve)] = &by_engine[..] else {
        unreachable!()
    };
    add(rep, "fanout.process", FANOUT, "tasks process", process);
    add(
        rep,
        "fanout.serve",
        FANOUT,
        "stask serve (started after the tasks were stored)",
        serve,
    );
    rep.detail(
        "fanout",
        json!({
            "dependencies": DEPS, "concurrency": env.cores, "worker": "demo", "action": "stamp",
            "seeded": "insert_tasks (1,000) + insert_task_after (the final task), storage API",
        }),
    );
    Ok(())
}

/// pg_fanout: the same on PostgreSQL (one host), through `tasks process` and `stask
/// serve`.
pub fn pg_fanout(env: &Env, rep: &mut Report) -> Res<()> {
    let Some(version) = ready(rep, "pg_fanout", PG_FANOUT) else {
        return Ok(());
    };
    let mut by_engine: Vec<(Engine, Vec<FanIn>)> =
        vec![(Engine::Process, Vec::new()), (Engine::Serve, Vec::new())];
    for i in 0..env.runs {
        for (engine, runs) in by_engine.iter_mut() {
            let schema = Schema::new(&format!("fan{i}{}", *engine as u8))?;
            let home = pg_home(
                env,
                &schema,
                &format!("pg-fanout-{i}-{engine:?}"),
                &[&env.demo_lib],
                true,
            )?;
            let mut store = schema.store()?;
            let last = seed(&mut *store)?;
            run_engine(env, &home, &*store, last, *engine, || {
                let host = PgHost::start(env, &home, &[], None)?;
                Ok(Box::new(move || host.stop().map(|_| ())))
            })?;
            let r = fan_in(&*store, last)?;
            log_run(&format!("PostgreSQL {engine:?}"), i, &r);
            runs.push(r);
        }
    }
    let [(_, process), (_, serve)] = &by_engine[..] else {
        unreachable!()
    };
    add(
        rep,
        "pg.fanout.process",
        PG_FANOUT,
        "tasks process",
        process,
    );
    add(
        rep,
        "pg.fanout.serve",
        PG_FANOUT,
        "one stask serve host (started after the tasks were stored)",
        serve,
    );
    rep.detail(
        "pg_fanout",
        json!({
            "server_version": version, "dependencies": DEPS, "concurrency": env.cores,
            "schema": "a fresh schema per run, dropped afterwards",
        }),
    );
    Ok(())
}
