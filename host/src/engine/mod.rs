//! The task engine: claims tasks, runs them in runner processes through slots, and
//! records everything (database rows and progress-log lines).
//!
//! One coordinator thread owns the database connection: slots report to it over a
//! channel, and it applies whatever arrived in one batch (one transaction for
//! progress). Progress-log lines go to the log-writer thread; finished tasks are
//! committed once their final lines are written, in the same transaction as the next
//! claim when there is one. Plugin code runs only in runner processes.
//!
//! ```text
//!   coordinator ──Run/Cancel──▶ slot 0 ──stdin──▶ runner process (library A)
//!     ▲   │  ▲                  slot 1 ──stdin──▶ runner process (library B)
//!     │   │  └── Progress/Log/Done ─┘ ◀──stdout── events
//!     │   └──lines──▶ log writer
//!     └──── LogsWritten ──┘
//! ```

pub mod cache;
pub mod log_writer;
pub mod protocol;
pub mod slot;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use serde::Serialize;
use serde_json::{Map, Value};
use stask_plugin_api::manifest::TIMEOUT_SETTING;
use stask_plugin_api::{Level, WorkerManifest};
use stask_storage::progress_log::LogLine;
use stask_storage::{
    now_ms, ClaimedTask, ClaimedWorker, Finish, Outcome, ProgressUpdate, Status, Store,
};

use crate::home::Home;
use crate::recovery::{self, Recovered};
use crate::task_log::{self, format_duration};
use cache::LibraryCache;
use log_writer::LogWriter;
use slot::{Assignment, FromSlot, Inbox, RunEnd, Slot};

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
    /// How often running tasks' heartbeats are refreshed.
    pub heartbeat_interval: Duration,
    /// A running task whose heartbeat is older than this is taken as abandoned.
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
    /// Run until stopped: claim whenever woken, run housekeeping on its schedule.
    Service,
}

/// What the engine's coordinator receives.
#[derive(Debug)]
pub enum Msg {
    /// A report from a slot.
    Slot(FromSlot),
    /// There may be new work (a wake-up datagram, a signal, a timer).
    Wake,
    /// Stop: finish or requeue running tasks, then return.
    Stop,
    /// Run discovery of new plugin libraries (SIGHUP).
    Discover,
    /// The log writer has written every batch up to this sequence number.
    LogsWritten(u64),
}

impl From<FromSlot> for Msg {
    fn from(f: FromSlot) -> Self {
        Msg::Slot(f)
    }
}

/// Chores a service runs between tasks (schedules, clean-up, discovery). The engine
/// calls them from its coordinator thread, which owns the database connection.
pub trait Housekeeping {
    /// Runs whatever is due at `now`; returns whether tasks may have been created and
    /// when it next wants to run.
    fn run_due(&mut self, store: &mut Store, now: Instant) -> Result<(bool, Instant)>;
    /// Looks for new plugin libraries.
    fn discover(&mut self, store: &mut Store) -> Result<()>;
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

/// Called for every progress-log line the engine writes, with the task id.
pub type Observer<'a> = &'a mut dyn FnMut(i64, &LogLine);

struct Running {
    task: stask_storage::TaskRecord,
    /// The slot it was queued on; `None` while it waits for one.
    slot: Option<usize>,
    started: Instant,
    processed: u64,
    total: u64,
    message: String,
    log_lines: u32,
    cancel_sent: bool,
}

impl Running {
    fn line(&self, status: &str, message: &str) -> LogLine {
        LogLine::new(
            status,
            task_log::percent(self.processed, self.total),
            self.processed,
            self.total,
            &task_log::eta(
                self.started.elapsed().as_millis() as i64,
                self.processed,
                self.total,
            ),
            message,
        )
    }
}

/// Runs the engine in `mode` until it has nothing left to do (or, in service mode,
/// until a [`Msg::Stop`] arrives on the channel returned by [`channel`]).
pub fn run(home: &Home, cfg: &EngineConfig, mode: Mode, observer: Observer<'_>) -> Result<Summary> {
    let (tx, rx) = channel();
    run_with(home, cfg, mode, observer, (tx, rx), None)
}

/// The engine's message channel: keep the sender to wake or stop a service.
pub fn channel() -> (Sender<Msg>, mpsc::Receiver<Msg>) {
    mpsc::channel()
}

/// [`run`] with an externally created channel and service housekeeping.
pub fn run_with(
    home: &Home,
    cfg: &EngineConfig,
    mode: Mode,
    observer: Observer<'_>,
    channel: (Sender<Msg>, mpsc::Receiver<Msg>),
    housekeeping: Option<&mut dyn Housekeeping>,
) -> Result<Summary> {
    let owner = recovery::owner_id();
    let mut store = home.store()?;
    let log_dir = home.log_dir();
    // Recover first, so a task left running by a killed process can be run again now.
    let mut summary = Summary {
        recovered: recovery::recover_stuck(
            &mut store,
            &log_dir,
            &owner,
            now_ms(),
            cfg.stale_after.as_millis() as i64,
        )?,
        ..Summary::default()
    };
    let mut engine = Engine::start(home, cfg, owner, store, observer, channel)?;
    let result = engine.run(mode, &mut summary, housekeeping);
    engine.shutdown();
    result.map(|()| summary)
}

struct Engine<'a> {
    cfg: EngineConfig,
    owner: String,
    store: Store,
    home: Home,
    cache: LibraryCache,
    slots: Vec<SlotInfo>,
    threads: Vec<std::thread::JoinHandle<()>>,
    /// Claimed tasks that no slot can take yet, in claim order.
    waiting: VecDeque<Assignment>,
    /// Assignments per slot, sent together by `flush_assignments`.
    outbox: Vec<Vec<Assignment>>,
    events: mpsc::Receiver<Msg>,
    running: HashMap<i64, Running>,
    /// Recent run time per (worker, action): decides which tasks may be pipelined.
    speed: HashMap<(String, String), Speed>,
    /// Resolved settings and time limit per worker, with the registration they came from.
    resolved: HashMap<String, ResolvedWorker>,
    /// Appends progress-log lines on its own thread.
    writer: LogWriter,
    /// Finished attempts whose final lines are not yet reported written, with the
    /// writer's sequence number of those lines.
    unrecorded: VecDeque<(u64, Vec<Finish>)>,
    /// The highest sequence number the writer has reported.
    written: u64,
    /// Finished attempts whose lines are written, to commit with the next claim (one
    /// transaction for both) or before the coordinator waits.
    ready: Vec<Finish>,
    /// When the earliest retry this engine scheduled itself falls due.
    own_retry: Option<Instant>,
    observer: Observer<'a>,
}

/// The coordinator's view of a slot.
struct SlotInfo {
    tx: Sender<Inbox>,
    /// Tasks queued on it (the first one running).
    queued: usize,
    /// Library hash of its queue.
    sha256: Option<String>,
    /// Whether everything queued is known to be fast (so more fast tasks may queue).
    fast_only: bool,
}

/// Exponentially weighted run time of one kind of task.
#[derive(Clone, Copy, Default)]
struct Speed {
    avg_ms: f64,
    samples: u32,
}

impl Speed {
    fn record(&mut self, ms: f64) {
        self.avg_ms = if self.samples == 0 {
            ms
        } else {
            self.avg_ms * 0.8 + ms * 0.2
        };
        self.samples = self.samples.saturating_add(1);
    }

    /// Short enough that queueing it behind others delays nothing noticeably.
    fn is_fast(&self) -> bool {
        self.samples >= 3 && self.avg_ms < FAST_TASK_MS
    }
}

/// Tasks with a recent average run time under this many milliseconds are pipelined.
const FAST_TASK_MS: f64 = 5.0;

/// How many fast tasks one slot may have queued in its runner at once. A high-priority
/// task claimed later waits at most about `PIPELINE_DEPTH * FAST_TASK_MS` behind them.
const PIPELINE_DEPTH: usize = 128;

/// How often an idle service checks the queue even without a wake-up (tasks created by
/// a process that could not reach its socket, e.g. on another machine).
const SERVICE_FALLBACK: Duration = Duration::from_secs(2);

/// Shortest time between two lookups of the earliest future retry.
const RETRY_LOOKUP: Duration = Duration::from_millis(500);

/// Changes gathered from one batch of slot events, applied together.
#[derive(Default)]
struct Batch {
    lines: Vec<(i64, LogLine)>,
    progress: Vec<ProgressUpdate>,
    finishes: Vec<Finish>,
}

impl<'a> Engine<'a> {
    fn start(
        home: &Home,
        cfg: &EngineConfig,
        owner: String,
        store: Store,
        observer: Observer<'a>,
        (out_tx, out_rx): (Sender<Msg>, mpsc::Receiver<Msg>),
    ) -> Result<Self> {
        let exe = std::env::current_exe()?;
        let n = cfg.concurrency.max(1);
        let mut slots = Vec::with_capacity(n);
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
            };
            threads.push(
                std::thread::Builder::new()
                    .name(format!("slot-{index}"))
                    .spawn(move || slot.run())?,
            );
            slots.push(SlotInfo {
                tx,
                queued: 0,
                sha256: None,
                fast_only: true,
            });
        }
        Ok(Engine {
            cfg: cfg.clone(),
            owner,
            store,
            cache: LibraryCache::new(home.cache_dir(), home.plugins_dir()),
            home: home.clone(),
            slots,
            threads,
            waiting: VecDeque::new(),
            outbox: (0..n).map(|_| Vec::new()).collect(),
            events: out_rx,
            running: HashMap::new(),
            speed: HashMap::new(),
            resolved: HashMap::new(),
            writer: LogWriter::start(&home.log_dir(), out_tx.clone())?,
            unrecorded: VecDeque::new(),
            written: 0,
            ready: Vec::new(),
            own_retry: None,
            observer,
        })
    }

    fn run(
        &mut self,
        mode: Mode,
        summary: &mut Summary,
        mut housekeeping: Option<&mut dyn Housekeeping>,
    ) -> Result<()> {
        let service = matches!(mode, Mode::Service);
        let mut last_heartbeat = Instant::now();
        let mut last_cancel_check = Instant::now();
        let mut last_recovery = Instant::now();
        let mut claimed_one = false;
        // Service: claim only when there may be work (start, wake-up, a freed slot, a
        // due retry, the fallback check), never in a polling loop.
        let mut want_claim = true;
        let mut next_retry: Option<Instant> = None;
        let mut last_retry_lookup = Instant::now() - RETRY_LOOKUP;
        let mut next_chores = Instant::now();
        let mut fallback = Instant::now() + SERVICE_FALLBACK;
        let mut stop_deadline: Option<Instant> = None;
        let mut interrupted = false;
        loop {
            let stopping = stop_deadline.is_some();
            if service && !stopping {
                let now = Instant::now();
                if let Some(h) = housekeeping.as_deref_mut() {
                    if now >= next_chores {
                        let (created, next) = h.run_due(&mut self.store, now)?;
                        want_claim |= created;
                        next_chores = next;
                    }
                }
                let retry_due = next_retry.is_some_and(|r| now >= r);
                let own_due = self.own_retry.is_some_and(|r| now >= r);
                if retry_due || own_due || now >= fallback {
                    want_claim = true;
                    fallback = now + SERVICE_FALLBACK;
                }
                if retry_due {
                    next_retry = None;
                }
                if own_due {
                    self.own_retry = None;
                }
            }
            let mut claimed_now = 0;
            let free = self.claim_capacity();
            if !stopping && free > 0 && (want_claim || !service) {
                let claimed = match mode {
                    Mode::Drain | Mode::Service => self.claim(free)?,
                    Mode::One(_) if claimed_one => Vec::new(),
                    Mode::One(id) => {
                        claimed_one = true;
                        self.commit_ready()?;
                        match self.store.claim_task(id, &self.owner, now_ms())? {
                            Some(c) => vec![c],
                            None => bail!(not_executable(&self.store, id)?),
                        }
                    }
                };
                claimed_now = claimed.len();
                // A full batch means more may be waiting; keep claiming as slots free up.
                want_claim = claimed_now == free;
                // The earliest future retry scans the pending rows, so it is looked up at
                // most every RETRY_LOOKUP, not after every short claim.
                if service && claimed_now < free && last_retry_lookup.elapsed() >= RETRY_LOOKUP {
                    last_retry_lookup = Instant::now();
                    next_retry = self.store.next_run_after()?.map(|at| {
                        Instant::now() + Duration::from_millis((at - now_ms()).max(0) as u64)
                    });
                }
                let mut batch = Batch::default();
                for c in claimed {
                    self.dispatch(c, &mut batch, summary);
                }
                self.flush_assignments();
                self.apply(batch)?;
            }
            if self.running.is_empty() && claimed_now == 0 && (!service || stopping) {
                if self.unrecorded.is_empty() && self.ready.is_empty() {
                    return Ok(());
                }
                // Record the last outcomes, then look once more: one of them may have
                // queued a retry that is due now.
                self.record_all()?;
                want_claim = true;
                continue;
            }
            self.commit_ready()?;
            // Sleep until something arrives or a timer is due.
            let mut wake_at = Instant::now() + Duration::from_secs(3600);
            if !self.running.is_empty() {
                wake_at = wake_at.min(Instant::now() + Duration::from_millis(50));
            }
            if service {
                wake_at = wake_at.min(fallback).min(next_chores);
                for r in [next_retry, self.own_retry].into_iter().flatten() {
                    wake_at = wake_at.min(r);
                }
            }
            if let Some(d) = stop_deadline {
                wake_at = wake_at.min(d);
            }
            let mut batch = Batch::default();
            let first = self
                .events
                .recv_timeout(wake_at.saturating_duration_since(Instant::now()));
            let mut next = match first {
                Ok(m) => Some(m),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => bail!("the engine's channel closed"),
            };
            while let Some(msg) = next {
                match msg {
                    Msg::Slot(ev) => {
                        if matches!(ev, FromSlot::Done { .. }) {
                            want_claim = true;
                        }
                        self.handle(ev, &mut batch, summary);
                    }
                    Msg::Wake => {
                        want_claim = true;
                        // A schedule may have been set that is due sooner.
                        next_chores = Instant::now();
                    }
                    Msg::Stop => {
                        if stop_deadline.is_none() {
                            tracing::info!(
                                running = self.running.len(),
                                "stopping: no new tasks are claimed; running tasks get {} to finish",
                                format_duration(self.cfg.shutdown_grace)
                            );
                            stop_deadline = Some(Instant::now() + self.cfg.shutdown_grace);
                        }
                    }
                    Msg::Discover => {
                        if let Some(h) = housekeeping.as_deref_mut() {
                            if let Err(e) = h.discover(&mut self.store) {
                                tracing::warn!("discovery failed: {e:#}");
                            }
                        }
                    }
                    Msg::LogsWritten(seq) => self.written = self.written.max(seq),
                }
                next = self.events.try_recv().ok();
            }
            self.assign_waiting();
            self.flush_assignments();
            self.apply(batch)?;
            if let Some(deadline) = stop_deadline {
                if !interrupted && Instant::now() >= deadline && !self.running.is_empty() {
                    interrupted = true;
                    tracing::warn!(
                        running = self.running.len(),
                        "grace period over: interrupting running tasks; they will be retried"
                    );
                    for slot in self.slots.iter().filter(|s| s.queued > 0) {
                        let _ = slot.tx.send(Inbox::Interrupt);
                    }
                    let mut batch = Batch::default();
                    for a in std::mem::take(&mut self.waiting) {
                        if let Some(mut r) = self.running.remove(&a.id) {
                            self.conclude(&mut r, RunEnd::Interrupted, false, &mut batch, summary);
                        }
                    }
                    self.apply(batch)?;
                }
            }
            if last_cancel_check.elapsed() >= Duration::from_millis(200) && !self.running.is_empty()
            {
                last_cancel_check = Instant::now();
                let mut batch = Batch::default();
                for id in self.store.cancel_requests(&self.owner)? {
                    let Some(r) = self.running.get_mut(&id) else {
                        continue;
                    };
                    if r.cancel_sent {
                        continue;
                    }
                    r.cancel_sent = true;
                    match r.slot {
                        Some(slot) => {
                            tracing::info!(task = id, "cancel requested; telling the worker");
                            let _ = self.slots[slot].tx.send(Inbox::Cancel(id));
                        }
                        None => {
                            // Still waiting for a slot: it never starts.
                            self.waiting.retain(|a| a.id != id);
                            if let Some(mut r) = self.running.remove(&id) {
                                let end = RunEnd::Err("cancelled before it started".into());
                                self.conclude(&mut r, end, false, &mut batch, summary);
                            }
                        }
                    }
                }
                self.apply(batch)?;
            }
            if last_heartbeat.elapsed() >= self.cfg.heartbeat_interval && !self.running.is_empty() {
                last_heartbeat = Instant::now();
                self.store.heartbeat(&self.owner, now_ms())?;
            }
            if last_recovery.elapsed() >= self.cfg.recovery_interval {
                last_recovery = Instant::now();
                let found = recovery::recover_stuck(
                    &mut self.store,
                    &self.home.log_dir(),
                    &self.owner,
                    now_ms(),
                    self.cfg.stale_after.as_millis() as i64,
                )?;
                want_claim |= found.iter().any(|r| r.requeued);
                summary.recovered.extend(found);
            }
        }
    }

    /// Claims up to `free` tasks, honouring per-worker limits; commits the ready
    /// finished attempts in the same transaction.
    fn claim(&mut self, free: usize) -> Result<Vec<ClaimedTask>> {
        if self.cfg.worker_concurrency.is_empty() {
            let ready = std::mem::take(&mut self.ready);
            return match self
                .store
                .finish_and_claim(&ready, &self.owner, now_ms(), free)
            {
                Ok((_, claimed)) => Ok(claimed),
                Err(e) => {
                    // Kept for the final attempt to record them as the engine stops.
                    self.ready = ready;
                    Err(e.into())
                }
            };
        }
        self.commit_ready()?;
        // With limits, claim one at a time so a batch cannot overshoot a worker's limit.
        let mut out: Vec<ClaimedTask> = Vec::new();
        while out.len() < free {
            let mut busy: HashMap<&str, usize> = HashMap::new();
            for r in self.running.values() {
                *busy.entry(r.task.worker.as_str()).or_default() += 1;
            }
            for c in &out {
                *busy.entry(c.task.worker.as_str()).or_default() += 1;
            }
            let excluded: Vec<&str> = self
                .cfg
                .worker_concurrency
                .iter()
                .filter(|(w, limit)| busy.get(w.as_str()).copied().unwrap_or(0) >= **limit)
                .map(|(w, _)| w.as_str())
                .collect();
            let mut got = self
                .store
                .claim_tasks_except(&self.owner, now_ms(), 1, &excluded)?;
            match got.pop() {
                Some(c) => out.push(c),
                None => break,
            }
        }
        Ok(out)
    }

    /// How many tasks to claim now: one per idle slot, plus room in the pipelines of
    /// slots running fast tasks (only when some kind of task is known to be fast).
    fn claim_capacity(&self) -> usize {
        if !self.waiting.is_empty() {
            return 0;
        }
        let idle = self.slots.iter().filter(|s| s.queued == 0).count();
        let any_fast = self.speed.values().any(Speed::is_fast);
        if !any_fast {
            return idle;
        }
        idle * PIPELINE_DEPTH
            + self
                .slots
                .iter()
                .filter(|s| s.queued > 0 && s.fast_only)
                .map(|s| PIPELINE_DEPTH.saturating_sub(s.queued))
                .sum::<usize>()
    }

    fn is_fast(&self, a: &Assignment) -> bool {
        self.speed
            .get(&(a.worker.clone(), a.action.clone()))
            .is_some_and(Speed::is_fast)
    }

    /// Puts a prepared task on a slot: an idle one, or (for fast tasks) the emptiest
    /// slot already running fast tasks of the same library; else it waits.
    fn assign(&mut self, a: Assignment) {
        let fast = self.is_fast(&a);
        let slot = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| {
                s.queued == 0
                    || (fast
                        && s.fast_only
                        && s.queued < PIPELINE_DEPTH
                        && s.sha256.as_deref() == Some(a.library.sha256.as_str()))
            })
            .min_by_key(|(i, s)| (s.queued, *i))
            .map(|(i, _)| i);
        let Some(i) = slot else {
            self.waiting.push_back(a);
            return;
        };
        let s = &mut self.slots[i];
        if s.queued == 0 {
            s.fast_only = true;
            s.sha256 = Some(a.library.sha256.clone());
        }
        s.queued += 1;
        s.fast_only &= fast;
        if let Some(r) = self.running.get_mut(&a.id) {
            r.slot = Some(i);
        }
        self.outbox[i].push(a);
    }

    /// Sends what `assign` queued, one message per slot.
    fn flush_assignments(&mut self) {
        for (i, batch) in self.outbox.iter_mut().enumerate() {
            if !batch.is_empty() {
                let _ = self.slots[i].tx.send(Inbox::Run(std::mem::take(batch)));
            }
        }
    }

    fn assign_waiting(&mut self) {
        while let Some(a) = self.waiting.pop_front() {
            let before = self.waiting.len();
            self.assign(a);
            if self.waiting.len() > before {
                break; // It went back to the end of the queue: no slot is free.
            }
        }
    }

    /// Prepares a claimed task and hands it to a slot; problems found here end the
    /// attempt at once.
    fn dispatch(&mut self, c: ClaimedTask, batch: &mut Batch, summary: &mut Summary) {
        let task = c.task;
        let id = task.id;
        let mut running = Running {
            slot: None,
            started: Instant::now(),
            processed: 0,
            total: 0,
            message: String::new(),
            log_lines: 0,
            cancel_sent: false,
            task,
        };
        let (attempt, max) = (running.task.attempts, running.task.max_attempts);
        let start_message = if attempt <= max {
            format!("Started attempt {attempt} of {max}")
        } else {
            format!(
                "Started attempt {attempt} (retried by hand after its {max} automatic attempts)"
            )
        };
        let start_line = running.line("running", &start_message);
        batch.lines.push((id, start_line));
        // Debug, not info: at thousands of tasks a second, a start line per task cost the
        // coordinator a sixth of its time in a busy service; the line at the end says
        // how it went.
        tracing::debug!(task = id, worker = %running.task.worker, action = %running.task.action, attempt = running.task.attempts, "task started");
        match self.prepare(&running, &c.worker) {
            Ok(assignment) => {
                self.running.insert(id, running);
                self.assign(assignment);
            }
            Err((message, retryable)) => {
                let end = if retryable {
                    RunEnd::StartFailed(message)
                } else {
                    RunEnd::Err(message)
                };
                self.conclude(&mut running, end, !retryable, batch, summary);
            }
        }
    }

    fn prepare(
        &mut self,
        r: &Running,
        worker: &Arc<ClaimedWorker>,
    ) -> Result<Assignment, (String, bool)> {
        let (settings, timeout) = self.resolve(&r.task.worker, worker)?;
        let t = &r.task;
        let library = worker.library_path.as_str();
        let library = self
            .cache
            .prepare(std::path::Path::new(library))
            .map_err(|e| (format!("{e:#}"), true))?;
        // The runner creates it when the worker first asks for it: most tasks write no
        // result files, and a mkdir per task is a measurable share of a no-op task.
        let result_dir = task_log::result_dir(&self.home.results_root(), t.id);
        Ok(Assignment {
            id: t.id,
            worker: t.worker.clone(),
            action: t.action.clone(),
            data: t.data.clone(),
            settings,
            library,
            timeout,
            result_dir,
        })
    }

    /// The settings JSON and time limit for a worker's runs, parsed once per change of
    /// its registration rather than once per task.
    fn resolve(
        &mut self,
        name: &str,
        worker: &Arc<ClaimedWorker>,
    ) -> Result<(String, Duration), (String, bool)> {
        if let Some((seen, resolved)) = self.resolved.get(name) {
            if Arc::ptr_eq(seen, worker) || **seen == **worker {
                return resolved.clone();
            }
        }
        let resolved = resolve_worker(name, worker, self.cfg.default_timeout);
        self.resolved
            .insert(name.to_owned(), (worker.clone(), resolved.clone()));
        resolved
    }

    fn handle(&mut self, ev: FromSlot, batch: &mut Batch, summary: &mut Summary) {
        match ev {
            FromSlot::Progress {
                id,
                processed,
                total,
                message,
            } => {
                let Some(r) = self.running.get_mut(&id) else {
                    return;
                };
                r.processed = processed;
                r.total = total;
                r.message = message;
                let line = r.line("running", &r.message);
                batch.progress.push(ProgressUpdate {
                    id,
                    progress: line.progress as i64,
                    processed: processed as i64,
                    total: total as i64,
                    message: r.message.clone(),
                });
                batch.lines.push((id, line));
            }
            FromSlot::Log { id, level, message } => {
                let Some(r) = self.running.get_mut(&id) else {
                    return;
                };
                r.log_lines += 1;
                if r.log_lines > self.cfg.max_log_lines {
                    if r.log_lines == self.cfg.max_log_lines + 1 {
                        let note = format!(
                            "[warn] log limit of {} messages reached; further messages of this attempt are dropped",
                            self.cfg.max_log_lines
                        );
                        batch.lines.push((id, r.line("running", &note)));
                    }
                    return;
                }
                let text = match Level::from_code(level) {
                    Level::Info => message,
                    other => format!("[{}] {message}", other.as_str()),
                };
                batch.lines.push((id, r.line("running", &text)));
            }
            FromSlot::Done { id, slot, end, ran } => {
                if let Some(s) = self.slots.get_mut(slot) {
                    s.queued = s.queued.saturating_sub(1);
                }
                let Some(mut r) = self.running.remove(&id) else {
                    return;
                };
                if let RunEnd::Ok(_) | RunEnd::Err(_) = end {
                    self.speed
                        .entry((r.task.worker.clone(), r.task.action.clone()))
                        .or_default()
                        .record(ran.as_secs_f64() * 1000.0);
                }
                self.conclude(&mut r, end, false, batch, summary);
            }
        }
    }

    /// Turns how a run ended into the task's next state, its last log line and the
    /// summary counts.
    fn conclude(
        &mut self,
        r: &mut Running,
        end: RunEnd,
        final_failure: bool,
        batch: &mut Batch,
        summary: &mut Summary,
    ) {
        let now = now_ms();
        let took = format_duration(r.started.elapsed());
        let t = &r.task;
        let (outcome, status, message) = match end {
            RunEnd::Ok(result) => {
                if r.total == 0 {
                    r.processed = 0;
                } else {
                    r.processed = r.total;
                }
                summary.completed += 1;
                (
                    Outcome::Completed { result },
                    "completed",
                    format!("Task completed successfully ({took})"),
                )
            }
            RunEnd::Interrupted => {
                summary.interrupted += 1;
                (
                    Outcome::Requeued,
                    "pending",
                    format!("Interrupted after {took} because the service stopped; queued again (this attempt does not count)"),
                )
            }
            RunEnd::Err(_) | RunEnd::KilledAfterCancel(_) if r.cancel_sent => {
                summary.cancelled += 1;
                let message = match end {
                    RunEnd::KilledAfterCancel(grace) => format!(
                        "Task cancelled after {took}: the worker did not stop within {} and was killed",
                        format_duration(grace)
                    ),
                    _ => format!("Task cancelled after {took}"),
                };
                (
                    Outcome::Cancelled {
                        message: message.clone(),
                    },
                    "cancelled",
                    message,
                )
            }
            other => {
                let error = match other {
                    RunEnd::Err(e) | RunEnd::Crashed(e) | RunEnd::StartFailed(e) => e,
                    RunEnd::TimedOut(limit) => format!(
                        "timed out after {}: the run exceeded the worker's time limit and was killed (change it with the `{TIMEOUT_SETTING}` setting)",
                        format_duration(limit)
                    ),
                    RunEnd::KilledAfterCancel(grace) => format!("killed after {}", format_duration(grace)),
                    RunEnd::Ok(_) | RunEnd::Interrupted => unreachable!("handled above"),
                };
                if !final_failure && t.attempts < t.max_attempts {
                    let delay = self.retry_delay(t.attempts);
                    summary.retried += 1;
                    // Wake for our own retries without waiting for a lookup.
                    let at = Instant::now() + delay;
                    self.own_retry = Some(self.own_retry.map_or(at, |r| r.min(at)));
                    let message = format!(
                        "Attempt {} of {} failed: {error}; retrying in {}",
                        t.attempts,
                        t.max_attempts,
                        format_duration(delay)
                    );
                    (
                        Outcome::Failed {
                            error,
                            retry_at: Some(now + delay.as_millis() as i64),
                        },
                        "pending",
                        message,
                    )
                } else {
                    summary.failed += 1;
                    let message = format!("Task failed after {took}: {error}");
                    (
                        Outcome::Failed {
                            error,
                            retry_at: None,
                        },
                        "failed",
                        message,
                    )
                }
            }
        };
        tracing::info!(task = t.id, worker = %t.worker, action = %t.action, status, "{message}");
        let mut line = r.line(status, &message);
        if status == "completed" {
            line.progress = 100;
            line.eta = "0s".into();
        } else {
            line.eta = "-".into();
        }
        batch.finishes.push(Finish {
            id: t.id,
            owner: self.owner.clone(),
            outcome,
            progress: line.progress as i64,
            processed: r.processed as i64,
            total: r.total as i64,
            message: message.clone(),
            at: now,
        });
        batch.lines.push((t.id, line));
    }

    fn retry_delay(&self, attempts: i64) -> Duration {
        let factor = 1u32
            .checked_shl((attempts.max(1) - 1) as u32)
            .unwrap_or(u32::MAX);
        self.cfg
            .retry_base
            .saturating_mul(factor)
            .min(self.cfg.retry_max)
    }

    /// Hands the batch's lines to the log writer, records progress, and readies the
    /// finished attempts whose final lines are written. Lines first, then the
    /// database: a crash in between leaves a task the recovery will find, never a
    /// database state the log does not explain.
    fn apply(&mut self, batch: Batch) -> Result<()> {
        for (id, line) in &batch.lines {
            (self.observer)(*id, line);
        }
        if !batch.lines.is_empty() {
            let close = batch.finishes.iter().map(|f| f.id).collect();
            let seq = self.writer.send(batch.lines, close);
            if !batch.finishes.is_empty() {
                self.unrecorded.push_back((seq, batch.finishes));
            }
        }
        self.store.update_progress(&batch.progress)?;
        self.take_written();
        Ok(())
    }

    /// Moves the finished attempts whose lines are written to `ready`.
    fn take_written(&mut self) {
        while self
            .unrecorded
            .front()
            .is_some_and(|(seq, _)| *seq <= self.written)
        {
            let (_, finishes) = self.unrecorded.pop_front().expect("checked above");
            self.ready.extend(finishes);
        }
    }

    /// Commits the ready finished attempts (when no claim is about to carry them).
    fn commit_ready(&mut self) -> Result<()> {
        if !self.ready.is_empty() {
            self.store.finish_tasks(&std::mem::take(&mut self.ready))?;
        }
        Ok(())
    }

    /// Waits for the writer, then commits every finished attempt.
    fn record_all(&mut self) -> Result<()> {
        self.written = self.writer.flush();
        self.take_written();
        self.commit_ready()
    }

    fn shutdown(&mut self) {
        // After an error: still record what finished (the run loop's normal exit has
        // already done so, and then this finds nothing).
        if let Err(e) = self.record_all() {
            tracing::warn!("cannot record finished tasks: {e:#}");
        }
        for s in &self.slots {
            let _ = s.tx.send(Inbox::Shutdown);
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

type ResolvedWorker = (
    Arc<ClaimedWorker>,
    Result<(String, Duration), (String, bool)>,
);

/// Validates a worker's stored settings against its manifest: the settings JSON a run
/// receives (defaults filled in) and its time limit, or why the task cannot run (with
/// whether a retry could help).
fn resolve_worker(
    name: &str,
    worker: &ClaimedWorker,
    default_timeout: Duration,
) -> Result<(String, Duration), (String, bool)> {
    let manifest: WorkerManifest = serde_json::from_str(&worker.manifest)
        .map_err(|_| (format!("worker '{name}' is no longer registered"), false))?;
    let stored: Map<String, Value> = serde_json::from_str(&worker.settings).unwrap_or_default();
    let resolved = manifest.resolve_settings(&stored).map_err(|e| {
        (
            format!("worker '{name}' settings are invalid: {e}; fix them with `stask workers settings {name}`"),
            false,
        )
    })?;
    let timeout = resolved
        .get(TIMEOUT_SETTING)
        .and_then(Value::as_u64)
        .or(manifest.timeout_secs)
        .map_or(default_timeout, Duration::from_secs);
    Ok((Value::Object(resolved).to_string(), timeout))
}

/// Why `execute` cannot claim a task.
fn not_executable(store: &Store, id: i64) -> Result<String> {
    Ok(match store.get_task(id)? {
        None => format!("no task {id} (see `stask tasks list`)"),
        Some(t) => match t.status {
            Status::Running => format!("task {id} is already running"),
            Status::Completed => {
                format!("task {id} already completed; create a new task to run it again")
            }
            Status::Failed | Status::Cancelled => format!(
                "task {id} is {}; queue it again with `stask tasks retry {id}`, then execute it",
                t.status
            ),
            Status::Pending => format!("task {id} could not be claimed; try again"),
        },
    })
}
