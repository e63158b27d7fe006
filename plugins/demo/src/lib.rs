//! The `demo` worker: predictable, tunable tasks for demonstrations, the host's
//! end-to-end tests and throughput benchmarks.
//!
//! * `run` works through timed steps, reporting progress and honouring cancellation
//!   within about 10 ms, and can be told to fail at a given step.
//! * `noop` returns at once and reports nothing, so benchmarks measure the host alone.
//! * `echo` returns its input, so tests can check that data survives the trip intact.
//! * `spin` reports progress many times in a tight loop and returns the cost per call
//!   measured inside the plugin (the progress-overhead benchmark).
//! * `stamp` returns the wall-clock time at which it started (the pickup-latency
//!   benchmark).
//! * `fan_out` enqueues follow-up `run` tasks of the demo worker (children of the
//!   running task), the one target its manifest declares.

#![warn(missing_docs)]

use std::fmt::Write as _;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use stask_plugin_api::prelude::*;

/// Longest uninterrupted sleep: bounds how late a cancellation is noticed.
const SLEEP_SLICE: Duration = Duration::from_millis(10);

const DEFAULT_STEPS: u64 = 10;
const DEFAULT_STEP_MS: u64 = 200;
const DEFAULT_MAX_STEPS: u64 = 1000;

const DEFAULT_FAN_OUT: u64 = 3;

const DEFAULT_SPIN_CALLS: u64 = 1_000_000;
/// Cancellation is checked once per this many `spin` calls.
const SPIN_CANCEL_EVERY: u64 = 1 << 16;

/// A worker whose tasks take a chosen time and report chosen progress.
#[derive(Debug, Default, Clone, Copy)]
pub struct Demo;

impl Worker for Demo {
    fn manifest(&self) -> WorkerManifest {
        WorkerManifest::new("demo", "Demo worker")
            .scope("examples")
            .icon("clock")
            .version(env!("CARGO_PKG_VERSION"))
            .description(
                "Runs timed steps with progress and logs, for trying out stask: watch a \
                 task live, cancel it, or make it fail on purpose.",
            )
            .action(
                ActionSpec::new("run", "Run steps")
                    .description(
                        "Works through 'steps' steps (default 10) of 'step_ms' milliseconds \
                         (default 200), logging and reporting progress for each. Optional \
                         data: 'fail_at' (a step number at which to fail) and 'message' (text \
                         logged at the start). Example: {\"steps\": 5, \"step_ms\": 1000}",
                    )
                    .scheduled(),
            )
            .action(ActionSpec::new("noop", "Do nothing").description(
                "Returns at once with no result, progress or logs; for measuring the host's \
                 own overhead.",
            ))
            .action(ActionSpec::new("echo", "Echo data").description(
                "Returns the task data unchanged as the result and logs its 'message' field \
                 if present. Example: {\"message\": \"hi\"}",
            ))
            .action(
                ActionSpec::new("digest", "Send a digest")
                    .description(
                        "Like echo, once per 'topic' at a time: while a digest of a topic is \
                         pending or running, creating another returns it (its default \
                         unique key is digest:{topic}). Example: {\"topic\": \"news\"}",
                    )
                    .unique_key("digest:{topic}"),
            )
            .action(ActionSpec::new("spin", "Spin on progress").description(
                "Reports progress 'calls' times (default 1,000,000) as fast as it can and \
                 returns {\"calls\": N, \"ns_per_call\": T}, the cost of one report \
                 measured inside the plugin. Example: {\"calls\": 1000}",
            ))
            .action(ActionSpec::new("stamp", "Time stamp").description(
                "Returns {\"started_ns\": T}, the wall-clock time (ns since the Unix \
                 epoch) at which the run started, for measuring pickup latency.",
            ))
            .action(ActionSpec::new("fan_out", "Fan out").description(
                "Enqueues 'count' (default 3) follow-up tasks of the demo worker's \
                 'action' (default run; the only one it may enqueue) with 'data' (default \
                 {\"steps\": 1, \"step_ms\": 10}), recorded as children of this task, \
                 then waits 'wait_ms' milliseconds (default 0). Returns {\"children\": \
                 [ids]}. Example: {\"count\": 5}",
            ))
            .enqueues("demo/run")
            .setting(
                SettingSpec::string("greeting", "Greeting")
                    .description("Word the run action greets with and returns in its result.")
                    .default("Hello"),
            )
            .setting(
                SettingSpec::string("api_key", "API key")
                    .description(
                        "Not used for anything: it only demonstrates how secret settings are \
                         stored and hidden.",
                    )
                    .secret(),
            )
            .setting(
                SettingSpec::integer("max_steps", "Maximum steps")
                    .description("Runs asking for more steps than this are refused.")
                    .default(DEFAULT_MAX_STEPS),
            )
    }

    fn run(&self, ctx: &Context<'_>, action: &str, input: Input) -> Result<Value, Error> {
        match action {
            "run" => run_steps(ctx, &input),
            "noop" => Ok(Value::Null),
            "echo" | "digest" => echo(ctx, input),
            "spin" => spin(ctx, &input),
            "stamp" => Ok(stamp()),
            "fan_out" => fan_out(ctx, &input),
            other => Err(Error::new(format!("unknown action '{other}'"))),
        }
    }
}

stask_plugin_api::export_workers![Demo];

/// What a `run` task asked for, checked before anything is reported.
struct Plan {
    steps: u64,
    step: Duration,
    fail_at: Option<u64>,
    message: Option<String>,
    greeting: String,
}

impl Plan {
    fn from_input(input: &Input) -> Result<Plan, Error> {
        let steps = input.data_u64_or("steps", DEFAULT_STEPS)?;
        let step_ms = input.data_u64_or("step_ms", DEFAULT_STEP_MS)?;
        let max_steps = match input.setting("max_steps") {
            None | Some(Value::Null) => DEFAULT_MAX_STEPS,
            Some(v) => v.as_u64().ok_or_else(|| {
                Error::new(format!(
                    "setting 'max_steps' must be a non-negative integer, got {v}"
                ))
            })?,
        };
        if steps > max_steps {
            return Err(Error::new(format!(
                "{steps} steps requested but the max_steps setting allows at most {max_steps}"
            )));
        }
        let fail_at = match input.data.get("fail_at") {
            None | Some(Value::Null) => None,
            Some(_) => {
                let k = input.data_u64_or("fail_at", 0)?;
                if k == 0 || k > steps {
                    return Err(Error::new(format!(
                        "fail_at must be a step number from 1 to {steps}, got {k}"
                    )));
                }
                Some(k)
            }
        };
        let message = match input.data.get("message") {
            None | Some(Value::Null) => None,
            Some(_) => Some(input.data_str("message")?.to_owned()),
        };
        let greeting = match input.setting("greeting") {
            Some(Value::String(s)) => s.clone(),
            _ => "Hello".to_owned(),
        };
        Ok(Plan {
            steps,
            step: Duration::from_millis(step_ms),
            fail_at,
            message,
            greeting,
        })
    }
}

fn run_steps(ctx: &Context<'_>, input: &Input) -> Result<Value, Error> {
    let plan = Plan::from_input(input)?;
    if let Some(message) = &plan.message {
        ctx.info(message);
    }
    ctx.info(&format!(
        "{}! Running **{}** steps of {} ms",
        plan.greeting,
        plan.steps,
        plan.step.as_millis()
    ));
    let mut report = String::new();
    let outcome = work(ctx, &plan, &mut report);
    // Written whatever the outcome, so a failed or cancelled task still shows how far it
    // got in its result files.
    let path = ctx.result_dir().join("steps.txt");
    std::fs::write(&path, &report)
        .map_err(|e| Error::new(format!("could not write '{}': {e}", path.display())))?;
    outcome?;
    Ok(json!({ "steps": plan.steps, "greeting": plan.greeting }))
}

fn work(ctx: &Context<'_>, plan: &Plan, report: &mut String) -> Result<(), Error> {
    let n = plan.steps;
    for i in 1..=n {
        ctx.check_cancelled()?;
        ctx.info(&format!("Step **{i}** of {n}"));
        if plan.fail_at == Some(i) {
            let _ = writeln!(report, "step {i} of {n}: failed as requested");
            return Err(Error::new(format!("failed at step {i} as requested")));
        }
        ctx.progress(i, n, &format!("Working on step {i}"));
        sleep(ctx, plan.step)?;
        let _ = writeln!(report, "step {i} of {n}: done");
    }
    Ok(())
}

/// Sleeps in short slices, checking for cancellation between them.
fn sleep(ctx: &Context<'_>, duration: Duration) -> Result<(), Error> {
    let mut left = duration;
    while !left.is_zero() {
        if ctx.is_cancelled() {
            return Err(Error::cancelled());
        }
        let slice = left.min(SLEEP_SLICE);
        std::thread::sleep(slice);
        left -= slice;
    }
    ctx.check_cancelled()
}

fn echo(ctx: &Context<'_>, input: Input) -> Result<Value, Error> {
    match input.data.get("message") {
        None => {}
        Some(Value::String(s)) => ctx.info(s),
        Some(other) => ctx.info(&other.to_string()),
    }
    Ok(Value::Object(input.data))
}

/// Calls `progress` `calls` times and measures the time per call.
fn spin(ctx: &Context<'_>, input: &Input) -> Result<Value, Error> {
    let calls = input.data_u64_or("calls", DEFAULT_SPIN_CALLS)?;
    let started = Instant::now();
    for i in 1..=calls {
        ctx.progress(i, calls, "spinning");
        if i % SPIN_CANCEL_EVERY == 0 {
            ctx.check_cancelled()?;
        }
    }
    let elapsed = started.elapsed();
    let ns_per_call = if calls == 0 {
        0.0
    } else {
        elapsed.as_nanos() as f64 / calls as f64
    };
    Ok(json!({ "calls": calls, "ns_per_call": ns_per_call }))
}

/// Enqueues follow-up tasks of the demo worker, then waits as asked.
fn fan_out(ctx: &Context<'_>, input: &Input) -> Result<Value, Error> {
    let count = input.data_u64_or("count", DEFAULT_FAN_OUT)?;
    let action = input.data_str_opt("action")?.unwrap_or("run");
    let data = match input.data.get("data") {
        None | Some(Value::Null) => json!({ "steps": 1, "step_ms": 10 }),
        Some(d) => d.clone(),
    };
    let wait = Duration::from_millis(input.data_u64_or("wait_ms", 0)?);
    let mut children = Vec::new();
    for i in 1..=count {
        ctx.check_cancelled()?;
        let id = ctx.enqueue("demo", action, data.clone())?;
        ctx.progress(i, count, &format!("Enqueued task #{id}"));
        children.push(id);
    }
    sleep(ctx, wait)?;
    Ok(json!({ "children": children }))
}

/// The current wall-clock time in ns since the Unix epoch.
fn stamp() -> Value {
    let ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    json!({ "started_ns": ns })
}

#[cfg(test)]
mod tests;
