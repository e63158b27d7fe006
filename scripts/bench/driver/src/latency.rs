//! Progress-report overhead (`demo spin`) and idle pickup latency (`demo stamp`).

use std::time::{Duration, Instant};

use serde_json::json;
use stask_storage::Status;

use crate::report::{Cmp, Metric, Report};
use crate::util::{id_of, ns_since_epoch, percentile, run, Ctx, Env, Home, Res, Service};

const PROGRESS: &str = "5 progress overhead (demo spin)";
const PICKUP: &str = "6 idle pickup (demo stamp)";

/// 5: `demo spin` through the real host: cost per `progress` call and log lines.
pub fn progress(env: &Env, rep: &mut Report) -> Res<()> {
    let calls: u64 = if env.quick { 1_000_000 } else { 10_000_000 };
    let home = Home::create(env, "progress", &[&env.demo_lib])?;
    let mut ns = Vec::new();
    let mut lines = Vec::new();
    let mut bounded = true;
    let mut bounds = Vec::new();
    for i in 0..env.runs {
        let data = json!({ "calls": calls }).to_string();
        let id = id_of(&run(
            env.stask(&home.root)
                .args(["tasks", "create", "demo", "spin", "--json", "--data", &data]),
            Duration::from_secs(30),
        )?)?;
        let view = run(
            env.stask(&home.root)
                .args(["tasks", "execute", &id.to_string(), "--json"]),
            Duration::from_secs(600),
        )?
        .json()?;
        let per_call = view["result"]["ns_per_call"]
            .as_f64()
            .ok_or_else(|| format!("no ns_per_call in {view}"))?;
        let run_ms = view["duration_ms"].as_f64().unwrap_or(0.0);
        let count = home
            .store()?
            .log_lines(id, 0, 1_000_000)
            .ctx("read the task's log")?
            .len();
        // created + started + completed, and at most one progress line per 100 ms
        // (rounded up, plus one for a flush at the end).
        let bound = 3 + (run_ms / 100.0).ceil() as usize + 1;
        bounded &= count <= bound;
        bounds.push(bound);
        eprintln!(
            "  spin run {}: {per_call:.1} ns/call, {count} log lines (bound {bound}), run {run_ms} ms",
            i + 1
        );
        ns.push(per_call);
        lines.push(count as f64);
    }
    rep.add(
        Metric::new(
            "progress.ns_per_call",
            PROGRESS,
            &format!("ctx.progress() cost, {calls} calls"),
            "ns/call",
            ns,
        )
        .target("< 50 ns per call", Cmp::Below, 50.0),
    );
    rep.add(
        Metric::new(
            "progress.log_lines",
            PROGRESS,
            "lines in the task's log",
            "lines",
            lines,
        )
        .target_judged("<= 4 + 1 per 100 ms run", bounded)
        .note(format!("bounds per run: {bounds:?}")),
    );
    rep.detail(
        "progress",
        json!({ "calls": calls, "via": "tasks create demo spin + tasks execute" }),
    );
    Ok(())
}

/// 6: with `stask serve` idle, from the CLI's exit to the runner starting the task.
pub fn pickup(env: &Env, rep: &mut Report) -> Res<()> {
    let samples: usize = if env.quick { 20 } else { 100 };
    let pause = Duration::from_millis(100);
    let home = Home::create(env, "pickup", &[&env.demo_lib])?;
    let service = Service::start(env, &home)?;
    let store = home.store()?;
    let mut from_exit = Vec::new();
    let mut from_row = Vec::new();
    // The first task starts the runner process; it is a warm-up, not a sample.
    for i in 0..=samples {
        let created = run(
            env.stask(&home.root)
                .args(["tasks", "create", "demo", "stamp", "--json"]),
            Duration::from_secs(30),
        )?;
        let exit_ns = ns_since_epoch(created.ended);
        let id = id_of(&created)?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let status = store
                .get_task(id)
                .ctx("read status")?
                .ok_or_else(|| format!("stamp task {id} is gone"))?
                .status;
            match status {
                Status::Completed => break,
                Status::Failed | Status::Cancelled => {
                    return Err(format!("stamp task {id} {status}"))
                }
                _ if Instant::now() > deadline => {
                    return Err(format!("stamp task {id} not done within 30 s"))
                }
                _ => std::thread::sleep(Duration::from_millis(2)),
            }
        }
        let view = run(
            env.stask(&home.root)
                .args(["tasks", "show", &id.to_string(), "--json"]),
            Duration::from_secs(30),
        )?
        .json()?;
        let started_ns = view["result"]["started_ns"]
            .as_u64()
            .ok_or_else(|| format!("no result.started_ns in {view}"))?
            as i128;
        let created_ms = view["created_at"].as_i64().unwrap_or(0) as i128;
        if i > 0 {
            from_exit.push((started_ns - exit_ns) as f64 / 1e6);
            from_row.push((started_ns - created_ms * 1_000_000) as f64 / 1e6);
        }
        std::thread::sleep(pause);
    }
    drop(store);
    let mem = service.stop()?;
    eprintln!(
        "  pickup: p50 {:.2} ms, p99 {:.2} ms (serve {} kB)",
        percentile(&from_exit, 50.0),
        percentile(&from_exit, 99.0),
        mem.main_kb
    );
    let p99 = percentile(&from_exit, 99.0);
    rep.add(
        Metric::new(
            "pickup.p50_ms",
            PICKUP,
            &format!("CLI exit -> runner start, p50 of {samples}"),
            "ms",
            from_exit.clone(),
        )
        .target("p50 < 5 ms", Cmp::Below, 5.0)
        .note("negative: the runner started before the driver saw the CLI exit (the wake-up is sent before the CLI exits)"),
    );
    rep.add(Metric::derived(
        "pickup.p99_ms",
        PICKUP,
        &format!("CLI exit -> runner start, p99 of {samples}"),
        "ms",
        p99,
        crate::util::min(&from_exit),
        crate::util::max(&from_exit),
    ));
    let row_p99 = percentile(&from_row, 99.0);
    rep.add(
        Metric::new(
            "pickup.from_created_at_p50_ms",
            PICKUP,
            "row created_at -> runner start, p50",
            "ms",
            from_row.clone(),
        )
        .note("includes the CLI's insert (with its creation line), wake-up and exit; created_at is whole ms (adds 0-1 ms)"),
    );
    rep.add(Metric::derived(
        "pickup.from_created_at_p99_ms",
        PICKUP,
        "row created_at -> runner start, p99",
        "ms",
        row_p99,
        crate::util::min(&from_row),
        crate::util::max(&from_row),
    ));
    rep.detail(
        "pickup",
        json!({ "samples": samples, "warmup_tasks": 1, "pause_ms": pause.as_millis() as u64 }),
    );
    Ok(())
}
