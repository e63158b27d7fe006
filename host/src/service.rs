//! `stask serve`: the engine in service mode, with signals, wake-ups and housekeeping.
//!
//! Threads: the engine's coordinator (claims and records), the HTTP API, a wake-up
//! listener, and a chores thread with its own store connection for everything that is
//! not running tasks — schedules, clean-up, discovery, and on a shared store forgetting
//! hosts silent for a day (clean-up and forgetting by the leader only) — so
//! housekeeping never stalls the queue. Stuck-task recovery runs inside the engine.
//!
//! No storage failure that may clear by itself (a lock held by another process, a full
//! disk) ends the service: every part logs it, backs off and tries again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use stask_storage::Store;

use crate::config::Config;
use crate::discovery;
use crate::engine::{self, is_transient, Mode, Msg};
use crate::home::Home;
use crate::ops::tasks::{self as task_ops, CleanRequest};

/// What the chores thread is told.
enum Chore {
    /// Something changed (a wake-up): schedules may be due sooner.
    Wake,
    /// Look for new plugin libraries (SIGHUP).
    Discover,
    /// The service stops.
    Stop,
}

/// Runs `f` until it succeeds or fails for good: a transient storage failure is
/// logged (once every 10 s) and tried again after a short, growing pause, while
/// `running` holds.
fn retry_transient<T>(
    what: &str,
    running: &AtomicBool,
    mut f: impl FnMut() -> Result<T>,
) -> Result<T> {
    let mut delay = Duration::from_millis(100);
    let mut last_logged: Option<Instant> = None;
    loop {
        match f() {
            Ok(v) => return Ok(v),
            Err(e) if is_transient(&e) && running.load(Ordering::Relaxed) => {
                if last_logged.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                    tracing::warn!("{what}: {e:#}; trying again");
                    last_logged = Some(Instant::now());
                }
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(e),
        }
    }
}

/// The service's chores, on their own thread.
struct Chores {
    home: Home,
    config: Config,
    exe: std::path::PathBuf,
    engine: Sender<Msg>,
    next_cleanup: Option<Instant>,
    next_schedules: Instant,
    /// When the leader next forgets long-silent hosts (`None`: a store of one host).
    next_forget: Option<Instant>,
}

/// A host whose lease has not been renewed for this long is forgotten: it is not coming
/// back as it was (a host that restarts registers again), and `workers show` should not
/// list it among the hosts able to run a worker.
const FORGET_HOSTS_AFTER: Duration = Duration::from_secs(24 * 60 * 60);

/// How often the leader looks for hosts to forget.
const FORGET_INTERVAL: Duration = Duration::from_secs(60 * 60);

impl Chores {
    fn run(mut self, inbox: mpsc::Receiver<Chore>, running: Arc<AtomicBool>) {
        let mut store: Option<Box<dyn Store>> = None;
        let mut backoff = Duration::from_millis(100);
        loop {
            let now = Instant::now();
            let mut next = self.next_schedules;
            if let Some(c) = self.next_cleanup {
                next = next.min(c);
            }
            if let Some(c) = self.next_forget {
                next = next.min(c);
            }
            let mut discover = false;
            match inbox.recv_timeout(next.saturating_duration_since(now)) {
                Ok(Chore::Stop) | Err(RecvTimeoutError::Disconnected) => return,
                Ok(Chore::Wake) => self.next_schedules = Instant::now(),
                Ok(Chore::Discover) => discover = true,
                Err(RecvTimeoutError::Timeout) => {}
            }
            if !running.load(Ordering::Relaxed) {
                return;
            }
            let result = (|| -> Result<()> {
                if store.is_none() {
                    store = Some(self.home.store()?);
                }
                let store = &mut **store.as_mut().expect("opened above");
                if discover {
                    self.discover(store)?;
                }
                self.run_due(store)
            })();
            match result {
                Ok(()) => backoff = Duration::from_millis(100),
                Err(e) => {
                    let transient = is_transient(&e);
                    tracing::warn!(
                        "housekeeping failed: {e:#}{}",
                        if transient { "; trying again" } else { "" }
                    );
                    if discover {
                        // Asked for explicitly: not forgotten because the store failed.
                        self.next_schedules = Instant::now() + backoff;
                    }
                    // Let the next try reopen a connection that may be broken.
                    if !transient {
                        store = None;
                    }
                    let retry = Instant::now() + backoff;
                    self.next_schedules = self.next_schedules.max(retry);
                    // A failed clean-up stays due, but not before the pause either.
                    if let Some(at) = self.next_cleanup.as_mut() {
                        *at = (*at).max(retry);
                    }
                    if let Some(at) = self.next_forget.as_mut() {
                        *at = (*at).max(retry);
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    }

    /// Fires due schedules and runs a due clean-up; sets when to come back.
    fn run_due(&mut self, store: &mut dyn Store) -> Result<()> {
        let now = Instant::now();
        if now >= self.next_schedules {
            let report = crate::schedule::tick(store, self.config.tz(), chrono::Utc::now())?;
            let metrics = crate::metrics::global();
            for f in &report.fired {
                match &f.result {
                    crate::schedule::FiredResult::Created { action, .. } => {
                        metrics.schedule_fired(&f.worker, action)
                    }
                    crate::schedule::FiredResult::Skipped { .. } => {
                        metrics.schedule_skipped(&f.worker)
                    }
                }
            }
            if !report.created_tasks().is_empty() {
                let _ = self.engine.send(Msg::Wake);
            }
            self.next_schedules = now + Duration::from_secs(60);
            if let Some(at) = report.next_due_at {
                // A due time already passed gives a zero wait (to_std fails on negatives).
                let wait = (at - chrono::Utc::now()).to_std().unwrap_or_default();
                self.next_schedules = self.next_schedules.min(now + wait);
            }
        }
        if self.next_cleanup.is_some_and(|at| now >= at) && !self.leads(store) {
            // Another host leads and cleans up; look again at the next interval.
            self.next_cleanup = self.config.cleanup_interval().map(|d| now + d);
        }
        if self.next_cleanup.is_some_and(|at| now >= at) {
            let started = Instant::now();
            let request = CleanRequest {
                older_than: self.config.retention(),
                include_failed: false,
            };
            let report = task_ops::clean(store, &request)?;
            tracing::info!(
                tasks = report.deleted_tasks,
                released_bytes = report.released_bytes,
                "clean-up of tasks completed more than {} ago took {}",
                self.config.retention,
                crate::task_log::format_duration(started.elapsed())
            );
            self.next_cleanup = self.config.cleanup_interval().map(|d| now + d);
        }
        if self.next_forget.is_some_and(|at| now >= at) {
            self.forget_silent_hosts(store, now)?;
        }
        Ok(())
    }

    /// On a shared store, the leader forgets hosts silent for [`FORGET_HOSTS_AFTER`]
    /// (their records would otherwise stay for ever: a host that is killed, or whose
    /// machine is gone, never unregisters).
    fn forget_silent_hosts(&mut self, store: &mut dyn Store, now: Instant) -> Result<()> {
        if !store.is_shared() {
            self.next_forget = None;
            return Ok(());
        }
        if self.leads(store) {
            let cutoff = stask_storage::now_ms() - FORGET_HOSTS_AFTER.as_millis() as i64;
            let forgotten = store.forget_hosts_silent_since(cutoff)?;
            if forgotten > 0 {
                tracing::info!(
                    hosts = forgotten,
                    "forgot hosts whose lease was last renewed more than {} ago",
                    crate::task_log::format_duration(FORGET_HOSTS_AFTER)
                );
            }
        }
        self.next_forget = Some(now + FORGET_INTERVAL);
        Ok(())
    }

    /// Whether this host runs the store-wide chores: always on its own store; on a
    /// store shared by several hosts, only while it holds the leadership (which the
    /// engine's stuck-task check renews).
    fn leads(&self, store: &mut dyn Store) -> bool {
        if !store.is_shared() {
            return true;
        }
        let owner = crate::recovery::owner_id();
        // The same term the engine's stuck-task check keeps (half a lease).
        let term = (self.config.stale_after_secs * 1000 / 2).max(6_000) as i64;
        match store.try_lead(&owner, stask_storage::now_ms(), term) {
            Ok(leads) => leads,
            Err(e) => {
                tracing::debug!("cannot check the leadership: {e}");
                false
            }
        }
    }

    fn discover(&mut self, store: &mut dyn Store) -> Result<()> {
        let report = discovery::discover(store, &self.exe, self.home.plugins_dir(), false)?;
        for w in &report.registered {
            tracing::info!(worker = %w.identifier, library = %w.library, "registered new worker (inactive until activated)");
        }
        for r in &report.restored {
            tracing::info!(worker = %r.worker.identifier, library = %r.worker.library, active = r.worker.active, "{}", r.message);
        }
        for s in &report.skipped {
            tracing::warn!(path = %s.path, "skipped plugin file: {}", s.reason);
        }
        Ok(())
    }
}

/// Runs the service until SIGTERM or SIGINT; SIGHUP runs discovery.
pub fn serve(home: &Home, config: &Config) -> Result<()> {
    // A write past the file-size limit (RLIMIT_FSIZE) must fail like a full disk,
    // which the service waits out, instead of killing it with SIGXFSZ.
    // SAFETY: setting a signal's disposition to "ignore" runs no code of ours.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    let exe = std::env::current_exe().context("cannot locate the stask executable")?;
    let running = Arc::new(AtomicBool::new(true));
    let (tx, rx) = engine::channel();
    let (chores_tx, chores_rx) = mpsc::channel::<Chore>();

    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGHUP,
    ])
    .context("cannot install signal handlers")?;
    let handle = signals.handle();
    {
        let tx = tx.clone();
        let chores_tx = chores_tx.clone();
        let running = running.clone();
        std::thread::spawn(move || {
            for sig in signals.forever() {
                if sig == signal_hook::consts::SIGHUP {
                    let _ = chores_tx.send(Chore::Discover);
                    continue;
                }
                running.store(false, Ordering::Relaxed);
                let _ = chores_tx.send(Chore::Stop);
                if tx.send(Msg::Stop).is_err() {
                    break;
                }
            }
        });
    }

    let store = retry_transient("cannot open the store", &running, || home.store())?;
    if config.discover_on_start {
        let mut store = store;
        retry_transient("discovery at start failed", &running, || {
            let report = discovery::discover(&mut *store, &exe, home.plugins_dir(), false)?;
            for w in &report.registered {
                tracing::info!(worker = %w.identifier, library = %w.library, "registered new worker (inactive until activated)");
            }
            for s in &report.skipped {
                tracing::warn!(path = %s.path, "skipped plugin file: {}", s.reason);
            }
            Ok(())
        })?;
    } else {
        // Discovery syncs them itself; a store an older stask wrote has workers with
        // limits in their manifests and none in the store yet.
        let mut store = store;
        retry_transient("cannot sync the workers' limits", &running, || {
            crate::limits::sync_all(&mut *store)
        })?;
    }

    // The API is up before the wake-up listener exists, so both mean "ready".
    let http = crate::http::start(home, config)?;
    let listener = retry_transient("cannot listen for wake-ups", &running, || {
        Ok(home.store()?.listen()?)
    });
    let listener_thread = match listener {
        Ok(listener) => {
            let tx = tx.clone();
            let chores_tx = chores_tx.clone();
            let running = running.clone();
            Some(std::thread::spawn(move || {
                // Dropping the listener (when the service stops) removes its socket.
                while running.load(Ordering::Relaxed) {
                    if listener.wait(Duration::from_millis(200)) {
                        let _ = chores_tx.send(Chore::Wake);
                        if tx.send(Msg::Wake).is_err() {
                            break;
                        }
                    }
                }
            }))
        }
        Err(e) => {
            tracing::warn!(
                "cannot listen for wake-ups ({e:#}); new tasks are noticed by the periodic check only"
            );
            None
        }
    };

    let chores = Chores {
        home: home.clone(),
        config: config.clone(),
        exe,
        engine: tx.clone(),
        // Clean once at start, then on the interval.
        next_cleanup: config.cleanup_interval().map(|_| Instant::now()),
        next_schedules: Instant::now(),
        // Once at start (by the leader), then on the interval.
        next_forget: Some(Instant::now()),
    };
    let chores_thread = {
        let running = running.clone();
        std::thread::Builder::new()
            .name("chores".into())
            .spawn(move || chores.run(chores_rx, running))?
    };

    let cfg = config.engine();
    tracing::info!(
        home = %home.root().display(),
        concurrency = cfg.concurrency,
        "stask service started"
    );
    let mut observer = |_: i64, _: &stask_storage::LogLine| {};
    let summary = engine::run_with(home, &cfg, Mode::Service, &mut observer, (tx, rx));
    running.store(false, Ordering::Relaxed);
    let _ = chores_tx.send(Chore::Stop);
    let _ = chores_thread.join();
    if let Some(t) = listener_thread {
        let _ = t.join();
    }
    handle.close();
    http.stop();
    let summary = summary?;
    tracing::info!(
        completed = summary.completed,
        failed = summary.failed,
        cancelled = summary.cancelled,
        interrupted = summary.interrupted,
        "stask service stopped"
    );
    Ok(())
}
