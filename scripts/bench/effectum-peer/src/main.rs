//! The peer of stask's burn-down benchmark: N no-op jobs on effectum 0.7.0, added first,
//! then run to completion by one worker; prints one JSON object with the figures.
//!
//! ```text
//! effectum-peer --db PATH --jobs N --concurrency C [--wal] [--runtime multi|current]
//!               [--min-concurrency M]
//! ```
//!
//! `--wal` creates the database file and switches it to WAL before effectum opens it:
//! effectum 0.7.0 asks for WAL with `PRAGMA journal = wal`, a pragma SQLite does not
//! know (the name is `journal_mode`), so as published it runs in rollback-journal mode.
//! The journal mode is stored in the file, so setting it beforehand sticks.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use effectum::{Job, JobRunner, Queue, RunningJob, Worker};

#[derive(Debug, Clone)]
struct Args {
    db: PathBuf,
    jobs: usize,
    concurrency: u16,
    min_concurrency: Option<u16>,
    wal: bool,
    multi_thread: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        db: PathBuf::new(),
        jobs: 0,
        concurrency: 1,
        min_concurrency: None,
        wal: false,
        multi_thread: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--db" => args.db = PathBuf::from(value()?),
            "--jobs" => args.jobs = value()?.parse().map_err(|e| format!("--jobs: {e}"))?,
            "--concurrency" => {
                args.concurrency = value()?
                    .parse()
                    .map_err(|e| format!("--concurrency: {e}"))?
            }
            "--min-concurrency" => {
                args.min_concurrency = Some(
                    value()?
                        .parse()
                        .map_err(|e| format!("--min-concurrency: {e}"))?,
                )
            }
            "--wal" => args.wal = true,
            "--runtime" => {
                args.multi_thread = match value()?.as_str() {
                    "multi" => true,
                    "current" => false,
                    other => return Err(format!("--runtime: '{other}' is not multi or current")),
                }
            }
            other => return Err(format!("unknown argument '{other}'")),
        }
    }
    if args.db.as_os_str().is_empty() || args.jobs == 0 || args.concurrency == 0 {
        return Err(
            "usage: effectum-peer --db PATH --jobs N --concurrency C [--wal] \
                    [--runtime multi|current] [--min-concurrency M]"
                .into(),
        );
    }
    Ok(args)
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

async fn burn_down(args: Args) -> Result<serde_json::Value, String> {
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

    let runner = JobRunner::builder("noop", noop).build();
    let started = Instant::now();
    let mut builder = Worker::builder(&queue, ())
        .max_concurrency(args.concurrency)
        .jobs([runner]);
    if let Some(m) = args.min_concurrency {
        builder = builder.min_concurrency(m);
    }
    let worker = builder
        .build()
        .await
        .map_err(|e| format!("start worker: {e}"))?;
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
    Ok(serde_json::json!({
        "jobs": args.jobs,
        "finished": finished,
        "concurrency": args.concurrency,
        "min_concurrency": args.min_concurrency.unwrap_or(args.concurrency),
        "runtime": if args.multi_thread { "multi_thread" } else { "current_thread" },
        "wal_prepared": args.wal,
        "add_seconds": add_seconds,
        "run_seconds": run_seconds,
        "tasks_per_s": args.jobs as f64 / run_seconds,
        "peak_rss_kb": peak_rss_kb(),
    }))
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("effectum-peer: {e}");
            std::process::exit(2);
        }
    };
    if args.wal {
        match journal_mode_wal(&args.db) {
            Ok(mode) if mode == "wal" => {}
            Ok(mode) => fail(&format!("could not switch to WAL (journal_mode is {mode})")),
            Err(e) => fail(&format!("prepare database: {e}")),
        }
    }
    let runtime = if args.multi_thread {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.concurrency as usize)
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    };
    let runtime = runtime.unwrap_or_else(|e| fail(&format!("tokio runtime: {e}")));
    let result = runtime.block_on(burn_down(args.clone()));
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
