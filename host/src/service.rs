//! `stask serve`: the engine in service mode, with signals, wake-ups and housekeeping
//! (stuck-task recovery runs inside the engine; clean-up and discovery here).

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use stask_storage::{Status, Store};

use crate::config::Config;
use crate::discovery;
use crate::engine::{self, Housekeeping, Mode, Msg};
use crate::home::Home;
use crate::task_clean;
use crate::wake::WakeSocket;

/// The service's chores between tasks.
struct Chores<'a> {
    home: &'a Home,
    config: &'a Config,
    exe: std::path::PathBuf,
    next_cleanup: Option<Instant>,
}

impl Housekeeping for Chores<'_> {
    fn run_due(&mut self, store: &mut Store, now: Instant) -> Result<(bool, Instant)> {
        let mut created = false;
        let mut next = now + Duration::from_secs(60);
        let report = crate::schedule::tick(store, self.home, self.config.tz(), chrono::Utc::now())?;
        created |= !report.created_tasks().is_empty();
        if let Some(at) = report.next_due_at {
            // A due time already passed gives a zero wait (to_std fails on negatives).
            let wait = (at - chrono::Utc::now()).to_std().unwrap_or_default();
            next = next.min(now + wait);
        }
        if let Some(at) = self.next_cleanup {
            if now >= at {
                let report = task_clean::clean(
                    self.home,
                    store,
                    self.config.retention(),
                    &[Status::Completed],
                )?;
                tracing::info!(
                    tasks = report.deleted_tasks.len(),
                    logs = report.removed_logs,
                    results = report.removed_result_dirs,
                    "clean-up of tasks completed more than {} ago",
                    self.config.retention
                );
                self.next_cleanup = self.config.cleanup_interval().map(|d| now + d);
            }
            if let Some(at) = self.next_cleanup {
                next = next.min(at);
            }
        }
        Ok((created, next))
    }

    fn discover(&mut self, store: &mut Store) -> Result<()> {
        let report = discovery::discover(store, &self.exe, self.home.plugins_dir(), false)?;
        for w in &report.registered {
            tracing::info!(worker = %w.identifier, library = %w.library, "registered new worker (inactive until activated)");
        }
        for s in &report.skipped {
            tracing::warn!(path = %s.path, "skipped plugin file: {}", s.reason);
        }
        Ok(())
    }
}

/// Runs the service until SIGTERM or SIGINT; SIGHUP runs discovery.
pub fn serve(home: &Home, config: &Config) -> Result<()> {
    let exe = std::env::current_exe().context("cannot locate the stask executable")?;
    let mut chores = Chores {
        home,
        config,
        exe,
        // Clean once at start, then on the interval.
        next_cleanup: config.cleanup_interval().map(|_| Instant::now()),
    };
    if config.discover_on_start {
        let mut store = home.store()?;
        chores.discover(&mut store)?;
    }
    let (tx, rx) = engine::channel();

    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGHUP,
    ])
    .context("cannot install signal handlers")?;
    let handle = signals.handle();
    {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for sig in signals.forever() {
                let msg = if sig == signal_hook::consts::SIGHUP {
                    Msg::Discover
                } else {
                    Msg::Stop
                };
                if tx.send(msg).is_err() {
                    break;
                }
            }
        });
    }

    // The API is up before the wake-up socket exists, so both mean "ready".
    let http = crate::http::start(home, config)?;
    let wake = match WakeSocket::bind(home) {
        Ok(w) => Some(std::sync::Arc::new(w)),
        Err(e) => {
            tracing::warn!("cannot bind the wake-up socket ({e}); new tasks are noticed by the periodic check only");
            None
        }
    };
    if let Some(w) = &wake {
        let w = w.clone();
        let tx = tx.clone();
        std::thread::spawn(move || {
            while w.wait().is_ok() {
                if tx.send(Msg::Wake).is_err() {
                    break;
                }
            }
        });
    }

    let cfg = config.engine();
    tracing::info!(
        home = %home.root().display(),
        concurrency = cfg.concurrency,
        "stask service started"
    );
    let mut observer = |_: i64, _: &stask_storage::progress_log::LogLine| {};
    let summary = engine::run_with(
        home,
        &cfg,
        Mode::Service,
        &mut observer,
        (tx, rx),
        Some(&mut chores),
    )?;
    handle.close();
    http.stop();
    // The listener thread still holds the socket (blocked in recv), so its Drop would
    // not run before exit: remove the file here.
    if let Some(w) = &wake {
        let _ = std::fs::remove_file(w.path());
    }
    tracing::info!(
        completed = summary.completed,
        failed = summary.failed,
        cancelled = summary.cancelled,
        interrupted = summary.interrupted,
        "stask service stopped"
    );
    Ok(())
}
