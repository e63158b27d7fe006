//! The peer of stask's throughput benchmarks, on effectum 0.7.0; prints one JSON object
//! with the figures.
//!
//! ```text
//! effectum-peer [--mode burndown] --db PATH --jobs N --concurrency C [--wal]
//!               [--runtime multi|current] [--min-concurrency M] [--threads T]
//! effectum-peer --mode steady --db PATH --seconds S [--warmup-ms W] [--wal]
//!               [--runtime current|multi] [--workers 10] [--concurrency 20]
//!               [--min-concurrency M] [--submitters 10] [--batch 20] [--threads T]
//! ```
//!
//! * **burndown**: N no-op jobs added first (not timed), then one worker with max
//!   concurrency C runs them to completion; jobs/s = N / time from building the worker
//!   until its finished count is N.
//! * **steady**: the shape of effectum's own stress test (`stress_test/src/main.rs` in
//!   github.com/dimfeld/effectum): 10 workers with max concurrency 20 each, sharing one
//!   job registry, while 10 submitter tasks each add batches of 20 jobs with `add_jobs`
//!   as fast as they can. The stress test adds a fixed 500,000 jobs; here the
//!   submitters run for the warm-up plus S seconds, and the figure is the jobs finished
//!   in the S-second window after the warm-up (the workers' finished counts at its end
//!   minus at its start) / the window.
//!
//! `--wal` creates the database file and switches it to WAL before effectum opens it:
//! effectum 0.7.0 asks for WAL with `PRAGMA journal = wal`, a pragma SQLite does not
//! know (the name is `journal_mode`), so as published it runs in rollback-journal mode.
//! The journal mode is stored in the file, so setting it beforehand sticks.
//!
//! `--runtime multi` runs a multi-threaded tokio runtime with T worker threads (default:
//! the number of cores, tokio's own default); `current` a current-thread one (the
//! default of effectum's stress test). Defaults: multi for burndown, current for steady.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use effectum::{Job, JobRegistry, JobRunner, Queue, RunningJob, Worker};

const USAGE: &str = "usage: effectum-peer [--mode burndown] --db PATH --jobs N --concurrency C \
    [--wal] [--runtime multi|current] [--min-concurrency M] [--threads T]\n       \
    effectum-peer --mode steady --db PATH --seconds S [--warmup-ms W] [--wal] \
    [--runtime current|multi] [--workers K] [--concurrency C] [--min-concurrency M] \
    [--submitters P] [--batch B] [--threads T]";

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Burndown,
    Steady,
}

#[derive(Debug, Clone)]
struct Args {
    mode: Mode,
    db: PathBuf,
    /// Burn-down: jobs to add and run.
    jobs: usize,
    /// Max concurrency of each worker.
    concurrency: Option<u16>,
    min_concurrency: Option<u16>,
    wal: bool,
    multi_thread: Option<bool>,
    /// Worker threads of the multi-threaded runtime (default: the cores).
    threads: Option<usize>,
    /// Steady: the measured window, after the warm-up.
    seconds: f64,
    warmup_ms: u64,
    workers: usize,
    submitters: usize,
    batch: usize,
}

fn number<T: std::str::FromStr>(flag: &str, text: String) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    text.parse().map_err(|e| format!("{flag}: {e}"))
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        mode: Mode::Burndown,
        db: PathBuf::new(),
        jobs: 0,
        concurrency: None,
        min_concurrency: None,
        wal: false,
        multi_thread: None,
        threads: None,
        seconds: 0.0,
        warmup_ms: 1000,
        workers: 10,
        submitters: 10,
        batch: 20,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--mode" => {
                args.mode = match value()?.as_str() {
                    "burndown" => Mode::Burndown,
                    "steady" => Mode::Steady,
                    other => return Err(format!("--mode: '{other}' is not burndown or steady")),
                }
            }
            "--db" => args.db = PathBuf::from(value()?),
            "--jobs" => args.jobs = number(&a, value()?)?,
            "--concurrency" => args.concurrency = Some(number(&a, value()?)?),
            "--min-concurrency" => args.min_concurrency = Some(number(&a, value()?)?),
            "--wal" => args.wal = true,
            "--runtime" => {
                args.multi_thread = Some(match value()?.as_str() {
                    "multi" => true,
                    "current" => false,
                    other => return Err(format!("--runtime: '{other}' is not multi or current")),
                })
            }
            "--threads" => args.threads = Some(number(&a, value()?)?),
            "--seconds" => args.seconds = number(&a, value()?)?,
            "--warmup-ms" => args.warmup_ms = number(&a, value()?)?,
            "--workers" => args.workers = number(&a, value()?)?,
            "--submitters" => args.submitters = number(&a, value()?)?,
            "--batch" => args.batch = number(&a, value()?)?,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument '{other}'")),
        }
    }
    let valid = !args.db.as_os_str().is_empty()
        && args.concurrency != Some(0)
        && args.threads != Some(0)
        && match args.mode {
            Mode::Burndown => args.jobs > 0 && args.concurrency.is_some(),
            Mode::Steady => {
                args.seconds > 0.0 && args.workers > 0 && args.submitters > 0 && args.batch > 0
            }
        };
    if !valid {
        return Err(USAGE.into());
    }
    // effectum fetches when fewer than min_concurrency jobs run, up to max_concurrency
    // minus those running: a minimum above the maximum would only add fetches for zero jobs.
    if let Some(m) = args.min_concurrency {
        let max = args.max_concurrency();
        if m == 0 || m > max {
            return Err(format!("--min-concurrency must be 1..={max}"));
        }
    }
    Ok(args)
}

impl Args {
    fn max_concurrency(&self) -> u16 {
        self.concurrency.unwrap_or(match self.mode {
            Mode::Burndown => 1,
            // The stress test's default.
            Mode::Steady => 20,
        })
    }

    fn multi_thread(&self) -> bool {
        self.multi_thread.unwrap_or(self.mode == Mode::Burndown)
    }

    fn threads(&self) -> usize {
        self.threads.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        })
    }

    /// The worker builder's `min_concurrency` (effectum's default: the maximum).
    fn min_concurrency(&self) -> u16 {
        self.min_concurrency.unwrap_or(self.max_concurrency())
    }

    fn runtime_json(&self) -> serde_json::Value {
        if self.multi_thread() {
            serde_json::json!({ "runtime": "multi_thread", "tokio_worker_threads": self.threads() })
        } else {
            serde_json::json!({ "runtime": "current_thread", "tokio_worker_threads": 1 })
        }
    }
}

/// The job: nothing at all.
async fn noop(_job: RunningJob, _ctx: ()) -> Result<(), String> {
    Ok(())
}

fn journal_mode(db: &Path) -> rusqlite::Result<String> {
    let conn = rusqlite::Connection::open(db)?;
    conn.pragma_query_value(None, "journal_mode", |r| r.get(0))
}

fn peak_rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// One worker running the no-op job, with the arguments' concurrency settings.
async fn worker(queue: &Queue, args: &Args, registry: &JobRegistry<()>) -> Result<Worker, String> {
    Worker::builder(queue, ())
        .registry(registry)
        .max_concurrency(args.max_concurrency())
        .min_concurrency(args.min_concurrency())
        .build()
        .await
        .map_err(|e| format!("start worker: {e}"))
}

async fn burn_down(args: &Args) -> Result<serde_json::Value, String> {
    let queue = Queue::new(&args.db)
        .await
        .map_err(|e| format!("open queue: {e}"))?;

    // Add every job first (in chunks, each chunk one transaction), then start the worker.
    let add_started = Instant::now();
    let mut left = args.jobs;
    while left > 0 {
        let n = left.min(10_000);
        let jobs: Vec<Job> = (0..n).map(|_| Job::builder("noop").build()).collect();
        queue
            .add_jobs(jobs)
            .await
            .map_err(|e| format!("add jobs: {e}"))?;
        left -= n;
    }
    let add_seconds = add_started.elapsed().as_secs_f64();

    let registry = JobRegistry::new([JobRunner::builder("noop", noop).build()]);
    let started = Instant::now();
    let worker = worker(&queue, args, &registry).await?;
    // Bounded wait: at least 60 s, plus 10 ms per job.
    let deadline = started + Duration::from_secs(60) + Duration::from_millis(10) * args.jobs as u32;
    while worker.counts().finished < args.jobs as u64 {
        if Instant::now() > deadline {
            return Err(format!(
                "timed out with {} of {} jobs finished",
                worker.counts().finished,
                args.jobs
            ));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let run_seconds = started.elapsed().as_secs_f64();
    let finished = worker.counts().finished;
    worker
        .unregister(Some(Duration::from_secs(10)))
        .await
        .map_err(|e| format!("stop worker: {e}"))?;
    queue
        .close(Duration::from_secs(10))
        .await
        .map_err(|e| format!("close queue: {e}"))?;
    let mut out = serde_json::json!({
        "mode": "burndown",
        "jobs": args.jobs,
        "finished": finished,
        "concurrency": args.max_concurrency(),
        "min_concurrency": args.min_concurrency(),
        "wal_prepared": args.wal,
        "add_seconds": add_seconds,
        "run_seconds": run_seconds,
        "tasks_per_s": args.jobs as f64 / run_seconds,
        "peak_rss_kb": peak_rss_kb(),
    });
    merge(&mut out, args.runtime_json());
    Ok(out)
}

async fn steady(args: &Args) -> Result<serde_json::Value, String> {
    let queue = Arc::new(
        Queue::new(&args.db)
            .await
            .map_err(|e| format!("open queue: {e}"))?,
    );
    let registry = JobRegistry::new([JobRunner::builder("noop", noop).build()]);
    let mut workers = Vec::with_capacity(args.workers);
    for _ in 0..args.workers {
        workers.push(worker(&queue, args, &registry).await?);
    }
    let finished = |workers: &[Worker]| workers.iter().map(|w| w.counts().finished).sum::<u64>();

    let stop = Arc::new(AtomicBool::new(false));
    let submitted = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let submitters: Vec<_> = (0..args.submitters)
        .map(|_| {
            let (queue, stop, submitted) = (queue.clone(), stop.clone(), submitted.clone());
            let batch = args.batch;
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let jobs: Vec<Job> = (0..batch).map(|_| Job::builder("noop").build()).collect();
                    queue
                        .add_jobs(jobs)
                        .await
                        .map_err(|e| format!("add jobs: {e}"))?;
                    submitted.fetch_add(batch as u64, Ordering::Relaxed);
                }
                Ok::<(), String>(())
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(args.warmup_ms)).await;
    let t0 = Instant::now();
    let (f0, s0) = (finished(&workers), submitted.load(Ordering::Relaxed));
    // Finished counts once a second through the window, to show whether the rate holds.
    let window = Duration::from_secs_f64(args.seconds);
    let mut per_second = Vec::new();
    let mut last = (t0, f0);
    loop {
        let next = (last.0 + Duration::from_secs(1)).min(t0 + window);
        tokio::time::sleep_until(next.into()).await;
        let now = (Instant::now(), finished(&workers));
        per_second.push((now.1 - last.1) as f64 / (now.0 - last.0).as_secs_f64());
        last = now;
        if now.0 >= t0 + window {
            break;
        }
    }
    let (t1, f1) = last;
    let s1 = submitted.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    let submit_seconds = started.elapsed().as_secs_f64();
    for s in submitters {
        s.await.map_err(|e| format!("submitter: {e}"))??;
    }
    let window_s = (t1 - t0).as_secs_f64();
    let total_submitted = submitted.load(Ordering::Relaxed);
    let total_finished = finished(&workers);
    for w in workers {
        w.unregister(Some(Duration::from_secs(10)))
            .await
            .map_err(|e| format!("stop worker: {e}"))?;
    }
    queue
        .close(Duration::from_secs(10))
        .await
        .map_err(|e| format!("close queue: {e}"))?;
    let mut out = serde_json::json!({
        "mode": "steady",
        "workers": args.workers,
        "concurrency": args.max_concurrency(),
        "min_concurrency": args.min_concurrency(),
        "submitters": args.submitters,
        "batch": args.batch,
        "wal_prepared": args.wal,
        "warmup_ms": args.warmup_ms,
        "window_seconds": window_s,
        "submit_seconds": submit_seconds,
        "finished_in_window": f1 - f0,
        "submitted_in_window": s1 - s0,
        "tasks_per_s": (f1 - f0) as f64 / window_s,
        "submitted_per_s": (s1 - s0) as f64 / window_s,
        "finished_per_s_by_second": per_second.iter().map(|r| r.round()).collect::<Vec<_>>(),
        // Added and not yet finished (queued or running) when the window ended.
        "backlog": s1.saturating_sub(f1),
        "total_submitted": total_submitted,
        "total_finished": total_finished,
        "peak_rss_kb": peak_rss_kb(),
    });
    merge(&mut out, args.runtime_json());
    Ok(out)
}

fn merge(into: &mut serde_json::Value, from: serde_json::Value) {
    if let (Some(into), serde_json::Value::Object(from)) = (into.as_object_mut(), from) {
        into.extend(from);
    }
}

fn main() {
    let args = parse_args().unwrap_or_else(|e| {
        eprintln!("effectum-peer: {e}");
        std::process::exit(2);
    });
    if args.wal {
        match journal_mode_wal(&args.db) {
            Ok(mode) if mode == "wal" => {}
            Ok(mode) => fail(&format!("could not switch to WAL (journal_mode is {mode})")),
            Err(e) => fail(&format!("prepare database: {e}")),
        }
    }
    let runtime = if args.multi_thread() {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads())
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    };
    let runtime = runtime.unwrap_or_else(|e| fail(&format!("tokio runtime: {e}")));
    let result = runtime.block_on(async {
        match args.mode {
            Mode::Burndown => burn_down(&args).await,
            Mode::Steady => steady(&args).await,
        }
    });
    drop(runtime);
    match result {
        Ok(mut value) => {
            // Read back which journal mode the database really used.
            let mode = journal_mode(&args.db).unwrap_or_else(|e| format!("unknown ({e})"));
            value["journal_mode"] = serde_json::Value::String(mode);
            println!("{value}");
        }
        Err(e) => fail(&e),
    }
}

/// Creates the database file and sets WAL mode on it (persistent in the file).
fn journal_mode_wal(db: &Path) -> rusqlite::Result<String> {
    let conn = rusqlite::Connection::open(db)?;
    conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
}

fn fail(message: &str) -> ! {
    eprintln!("effectum-peer: {message}");
    std::process::exit(1);
}
