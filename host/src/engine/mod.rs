//! The task engine: claims tasks, runs them in runner processes through slots, and
//! records everything they report in the store.
//!
//! Its parts, each one concept (as River's producer / executor / completer):
//!
//! * [`coordinator`]: the one thread that talks to the store; routes work between
//!   the parts and keeps the timers.
//! * [`dispatch`]: the slots, how many tasks to claim, which slot takes each task.
//! * [`slot`]: one thread per slot owning a runner process; time limits, cancels,
//!   crashes; ingests result files when an attempt ends ([`ingest`]).
//! * [`outcome`]: how an attempt's end becomes the task's next state (pure).
//! * [`completer`]: reports and outcomes kept until the store has recorded them.
//!
//! ```text
//!   coordinator ──Run/Cancel──▶ slot 0 ──commands──▶ runner process (library A)
//!     ▲     │                   slot 1 ──commands──▶ runner process (library B)
//!     │     │                     │ ◀──events── (progress, log, done)
//!     │     └── claim + finishes, progress + lines ──▶ store ◀── result files ──┘
//!     └──────────── Progress / Log / Done ──────────────┘
//! ```
//!
//! Plugin code runs only in runner processes.

pub mod cache;
mod completer;
mod coordinator;
mod dispatch;
pub mod hosting;
pub mod ingest;
pub mod limits;
mod outcome;
pub mod protocol;
mod resolve;
mod running;
pub use running::start_line;
pub mod slot;
mod speed;

use std::collections::BTreeMap;
use std::sync::mpsc::{self, Sender};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use serde::Serialize;
use stask_storage::LogLine;

use crate::home::Home;
use crate::recovery::{self, Recovered};
use coordinator::Coordinator;
use dispatch::Dispatcher;
use ingest::IngestLimits;
use slot::{FromSlot, Slot, StoreOpener};

/// Memory a run may use when neither its worker's settings nor the host's
/// configuration say otherwise, in MiB: enough for any ordinary worker, and a stop for
/// one that grows without end before it takes the machine down.
pub const DEFAULT_MEMORY_MB: u64 = 1024;

/// Files a run may have open when nothing else is set.
pub const DEFAULT_OPEN_FILES: u64 = 1024;

/// Engine tuning. [`EngineConfig::default`] holds the documented defaults.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Tasks run at the same time (runner processes).
    pub concurrency: usize,
    /// Time limit of a run when neither the worker's manifest nor its settings set one.
    pub default_timeout: Duration,
    /// How long a cancelled task may take to stop before its runner is killed.
    pub cancel_grace: Duration,
    /// First automatic-retry delay; doubles with each attempt.
    pub retry_base: Duration,
    /// Longest automatic-retry delay.
    pub retry_max: Duration,
    /// How often the engine renews its lease on its tasks.
    pub heartbeat_interval: Duration,
    /// A running task whose owner has not renewed its lease for this long is taken as
    /// abandoned.
    pub stale_after: Duration,
    /// How often stuck tasks are looked for while running.
    pub recovery_interval: Duration,
    /// Worker log messages kept per attempt; later ones are dropped (with a note).
    pub max_log_lines: u32,
    /// Per-worker limits of tasks at the same time.
    pub worker_concurrency: BTreeMap<String, usize>,
    /// When the service stops: how long running tasks get to finish before they are
    /// interrupted and requeued.
    pub shutdown_grace: Duration,
    /// Longest result JSON of a run, in bytes.
    pub max_result_json_bytes: u64,
    /// Largest result file, in bytes.
    pub max_result_file_bytes: u64,
    /// All result files of a task together, in bytes.
    pub max_result_task_bytes: u64,
    /// Resource limits of a run when the worker's settings set none.
    pub limits: limits::Limits,
    /// What happens to runs on a kernel without Landlock.
    pub sandbox: crate::sandbox::Mode,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            concurrency: std::thread::available_parallelism().map_or(2, |n| n.get()),
            default_timeout: Duration::from_secs(3600),
            cancel_grace: Duration::from_secs(5),
            retry_base: Duration::from_secs(2),
            retry_max: Duration::from_secs(3600),
            heartbeat_interval: Duration::from_secs(2),
            stale_after: Duration::from_secs(30),
            recovery_interval: Duration::from_secs(10),
            max_log_lines: 10_000,
            worker_concurrency: BTreeMap::new(),
            shutdown_grace: Duration::from_secs(30),
            max_result_json_bytes: 1 << 20,
            max_result_file_bytes: 256 << 20,
            max_result_task_bytes: 1 << 30,
            limits: limits::Limits {
                memory_mb: Some(DEFAULT_MEMORY_MB),
                cpu_secs: None,
                open_files: Some(DEFAULT_OPEN_FILES),
            },
            sandbox: crate::sandbox::Mode::BestEffort,
        }
    }
}

/// What the engine should do.
#[derive(Debug, Clone, Copy)]
pub enum Mode {
    /// Run every claimable task, then return.
    Drain,
    /// Run this one task now (it must be pending), then return.
    One(i64),
    /// Run until stopped: claim whenever woken.
    Service,
}

/// What the engine's coordinator receives.
#[derive(Debug)]
pub enum Msg {
    /// A report from a slot.
    Slot(FromSlot),
    /// There may be new work (a wake-up, a timer of the service's chores).
    Wake,
    /// Stop: finish or requeue running tasks, then return.
    Stop,
}

impl From<FromSlot> for Msg {
    fn from(f: FromSlot) -> Self {
        Msg::Slot(f)
    }
}

/// Totals of one engine run.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Summary {
    /// Tasks that completed.
    pub completed: usize,
    /// Tasks that failed with no attempts left.
    pub failed: usize,
    /// Tasks that were cancelled.
    pub cancelled: usize,
    /// Failed attempts that were queued for an automatic retry.
    pub retried: usize,
    /// Tasks interrupted by a service stop and queued again.
    pub interrupted: usize,
    /// Stuck tasks of dead processes that were recovered first.
    pub recovered: Vec<Recovered>,
}

/// Whether an error is a storage failure that may clear by itself (a lock held by
/// another process, a full disk, a lost connection).
pub fn is_transient(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<stask_storage::StoreError>()
            .is_some_and(stask_storage::StoreError::is_transient)
    })
}

/// Called for every progress-log line the engine produces, with the task id.
pub type Observer<'a> = &'a mut dyn FnMut(i64, &LogLine);

/// Runs the engine in `mode` until it has nothing left to do.
pub fn run(home: &Home, cfg: &EngineConfig, mode: Mode, observer: Observer<'_>) -> Result<Summary> {
    run_with(home, cfg, mode, observer, channel())
}

/// The engine's message channel: keep the sender to wake or stop a service.
pub fn channel() -> (Sender<Msg>, mpsc::Receiver<Msg>) {
    mpsc::channel()
}

/// [`run`] with an externally created channel (a service keeps its sender to wake and
/// stop the engine).
pub fn run_with(
    home: &Home,
    cfg: &EngineConfig,
    mode: Mode,
    observer: Observer<'_>,
    (out_tx, out_rx): (Sender<Msg>, mpsc::Receiver<Msg>),
) -> Result<Summary> {
    let owner = recovery::owner_id();
    let service = matches!(mode, Mode::Service);
    // What a runner that dies had started comes to this process, which ends it (see
    // crate::process_tree), instead of going to init and living on.
    if let Err(e) = crate::process_tree::become_subreaper() {
        tracing::warn!(
            "cannot become a subreaper ({e}): processes started by a crashed worker may outlive it"
        );
    }
    let start = || -> Result<(Box<dyn stask_storage::Store>, Vec<Recovered>)> {
        let mut store = home.store()?;
        store.renew_lease(&owner, stask_storage::now_ms())?;
        // Recover first, so a task left running by a killed process can run again now.
        let recovered = recovery::recover_stuck(
            &mut *store,
            &owner,
            stask_storage::now_ms(),
            cfg.stale_after.as_millis() as i64,
        )?;
        Ok((store, recovered))
    };
    // A service waits out a failing store at start too (until it is told to stop).
    let mut delay = Duration::from_millis(100);
    let (mut store, recovered) = loop {
        match start() {
            Ok(v) => break v,
            Err(e) if service && is_transient(&e) => {
                tracing::warn!("the engine cannot start yet: {e:#}; trying again");
                match out_rx.recv_timeout(delay) {
                    Ok(Msg::Stop) => return Ok(Summary::default()),
                    _ => delay = (delay * 2).min(Duration::from_secs(5)),
                }
            }
            Err(e) => return Err(e),
        }
    };
    // The keys that open stored secrets, once per engine start (secrets an older stask
    // stored in plaintext are encrypted first).
    let keys = crate::secrets::EngineKeys::start(home, &mut *store);
    recovery::remove_dead_scratch(&home.scratch_root());
    let mut summary = Summary {
        recovered,
        ..Summary::default()
    };
    let scratch = home.scratch_root().join(recovery::scratch_name());
    let exe = std::env::current_exe()?;
    let opener: StoreOpener = {
        let home = home.clone();
        Arc::new(move || home.store())
    };
    let limits = IngestLimits {
        per_file: cfg.max_result_file_bytes,
        per_task: cfg.max_result_task_bytes,
    };
    let n = cfg.concurrency.max(1);
    let mut senders = Vec::with_capacity(n);
    let mut threads = Vec::with_capacity(n);
    for index in 0..n {
        let (tx, rx) = mpsc::channel();
        let slot = Slot {
            index,
            exe: exe.clone(),
            workdir: home.root().to_path_buf(),
            cancel_grace: cfg.cancel_grace,
            inbox: rx,
            inbox_tx: tx.clone(),
            out: out_tx.clone(),
            open_store: opener.clone(),
            limits,
            ingest_patience: (!service).then_some(Duration::from_secs(30)),
            sandbox: cfg.sandbox,
        };
        threads.push(
            std::thread::Builder::new()
                .name(format!("slot-{index}"))
                .spawn(move || slot.run())?,
        );
        senders.push(tx);
    }
    drop(out_tx);
    let mut coordinator = Coordinator::new(
        cfg.clone(),
        owner,
        store,
        home,
        Dispatcher::new(senders),
        threads,
        out_rx,
        observer,
        scratch,
        service,
    );
    coordinator.resolver = resolve::Resolver::new(keys, home.root());
    if home.is_shared() {
        // One host among several: it runs what it holds (see hosting.rs).
        coordinator.hosting = Some(hosting::LocalLibraries::new(home.plugins_dir()));
    }
    let result = coordinator.run(mode, &mut summary);
    coordinator.shutdown(result.is_err());
    result.map(|()| summary)
}
