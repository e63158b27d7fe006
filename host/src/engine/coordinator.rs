//! The coordinator: the engine's one thread that talks to the store. It routes work
//! between the store, the dispatcher (slots) and the completer, and keeps the timers
//! (lease renewal, cancel checks, recovery, retries, the service's fallback check).
//!
//! One cycle: claim (committing the finished attempts of the last cycle in the same
//! transaction), hand the claimed tasks to slots, wait for slot reports, record their
//! progress and lines in one transaction, decide how finished attempts end.
//!
//! A store failure that may clear by itself (a lock held elsewhere, a full disk, a lost
//! connection) never ends a service: the coordinator logs it, backs off, keeps every
//! report and outcome in the completer and tries again. One-shot commands wait for it
//! for a while, then fail.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use stask_plugin_api::Level;
use stask_storage::{
    now_ms, Claim, ClaimedTask, Finish, ProgressUpdate, Status, Store, StoreError,
};

use super::cache::LibraryCache;
use super::completer::Completer;
use super::dispatch::Dispatcher;
use super::outcome::{decide, Attempt, Kind, RetryPolicy};
use super::resolve::Resolver;
use super::running::{start_line, Running};
use super::slot::{Assignment, FromSlot, RunEnd};
use super::{EngineConfig, Mode, Msg, Observer, Summary};
use crate::home::Home;
use crate::metrics::{self, Outcome, SeriesCache};
use crate::recovery;
use crate::task_log::format_duration;

/// How often an idle service checks the queue even without a wake-up (tasks created by
/// a process that could not reach it, e.g. on another machine).
const SERVICE_FALLBACK: Duration = Duration::from_secs(2);

/// Shortest time between two lookups of the earliest future retry.
const RETRY_LOOKUP: Duration = Duration::from_millis(500);

/// How long a one-shot command (process, execute) waits for a failing store.
const ONE_SHOT_PATIENCE: Duration = Duration::from_secs(30);

/// When each periodic step last ran or runs next.
struct Timers {
    lease: Instant,
    cancel_check: Instant,
    recovery: Instant,
    /// The earliest future retry found by a lookup.
    next_retry: Option<Instant>,
    retry_lookup: Instant,
    /// The earliest retry this engine scheduled itself (no lookup needed).
    own_retry: Option<Instant>,
    fallback: Instant,
    /// Set once a stop was asked for: running tasks get until then.
    stop_deadline: Option<Instant>,
    interrupted: bool,
}

/// A streak of store failures that may clear by themselves.
struct Failing {
    since: Instant,
    /// No store work before this.
    until: Instant,
    delay: Duration,
    last_logged: Instant,
}

/// The coordinator's state.
pub(super) struct Coordinator<'a> {
    pub cfg: EngineConfig,
    pub owner: String,
    pub store: Box<dyn Store>,
    pub cache: LibraryCache,
    pub dispatcher: Dispatcher,
    pub threads: Vec<JoinHandle<()>>,
    pub events: Receiver<Msg>,
    pub running: HashMap<i64, Running>,
    pub resolver: Resolver,
    pub completer: Completer,
    pub observer: Observer<'a>,
    /// This engine's scratch directories (`{scratch}/{task id}`).
    pub scratch: PathBuf,
    pub service: bool,
    /// Metrics series by worker and action (looked up once each).
    series: SeriesCache,
    timers: Timers,
    failing: Option<Failing>,
    /// On a shared store: the libraries this host holds (it claims only their tasks).
    pub hosting: Option<super::hosting::LocalLibraries>,
    /// When the lease was last renewed: a host that cannot renew it for most of the
    /// time others wait before recovering its tasks stops its runners (fencing).
    lease_renewed: Instant,
    /// Whether runners were stopped because the lease could not be renewed: nothing
    /// is claimed until it is again.
    fenced: bool,
}

impl<'a> Coordinator<'a> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        cfg: EngineConfig,
        owner: String,
        store: Box<dyn Store>,
        home: &Home,
        dispatcher: Dispatcher,
        threads: Vec<JoinHandle<()>>,
        events: Receiver<Msg>,
        observer: Observer<'a>,
        scratch: PathBuf,
        service: bool,
    ) -> Self {
        let now = Instant::now();
        Coordinator {
            cache: LibraryCache::new(home.cache_dir(), home.plugins_dir()),
            cfg,
            owner,
            store,
            dispatcher,
            threads,
            events,
            running: HashMap::new(),
            resolver: Resolver::default(),
            completer: Completer::default(),
            observer,
            scratch,
            service,
            series: SeriesCache::default(),
            hosting: None,
            lease_renewed: now,
            fenced: false,
            timers: Timers {
                lease: now,
                cancel_check: now,
                recovery: now,
                next_retry: None,
                retry_lookup: now - RETRY_LOOKUP,
                own_retry: None,
                fallback: now + SERVICE_FALLBACK,
                stop_deadline: None,
                interrupted: false,
            },
            failing: None,
        }
    }

    /// Runs until there is nothing left to do in `mode` (a service: until stopped).
    pub fn run(&mut self, mode: Mode, summary: &mut Summary) -> Result<()> {
        // A host of a shared store knows what it holds before its first claim, so it
        // never claims a task it cannot run.
        if let Some(hosting) = self.hosting.as_mut() {
            hosting.refresh(&mut *self.store, &self.owner, self.cfg.concurrency, true)?;
        }
        let mut claimed_one = false;
        // Service: claim only when there may be work (start, wake-up, a freed slot, a
        // due retry, the fallback check), never in a polling loop.
        let mut want_claim = true;
        loop {
            let stopping = self.timers.stop_deadline.is_some();
            if self.service && !stopping {
                want_claim |= self.due_timers();
            }
            let mut claimed_now = 0;
            let free = self.dispatcher.capacity();
            let one_done = matches!(mode, Mode::One(_)) && claimed_one;
            if !stopping
                && !one_done
                && free > 0
                && (want_claim || !self.service)
                && !self.backing_off()
            {
                let claimed = match mode {
                    Mode::One(id) => self.claim_one(id),
                    Mode::Drain | Mode::Service => self.claim(free),
                };
                if let Some(claimed) = self.guard(claimed)? {
                    if let (Mode::One(id), false) = (mode, claimed_one) {
                        if claimed.is_empty() {
                            bail!(not_executable(&*self.store, id)?);
                        }
                        claimed_one = true;
                    }
                    claimed_now = claimed.len();
                    // A full batch means more may be waiting; keep claiming as slots
                    // free up.
                    want_claim = claimed_now == free;
                    if self.service && claimed_now < free {
                        self.look_up_retries();
                    }
                    for c in claimed {
                        self.dispatch(c, summary);
                    }
                    self.dispatcher.flush();
                }
            }
            if self.running.is_empty() && claimed_now == 0 && (!self.service || stopping) {
                // A stopping service leaves what is unrecorded to `shutdown`, which
                // waits for a failing store only so long.
                if stopping {
                    return Ok(());
                }
                // A one-shot run whose claim met a failing store tries again (until
                // `guard` gives up) instead of ending as if the queue were empty.
                if self.failing.is_some() {
                    self.sleep_out_failure();
                    want_claim = true;
                    continue;
                }
                if self.completer.is_empty() {
                    return Ok(());
                }
                // Record the last outcomes, then look once more: one of them may have
                // queued a retry that is due now.
                let recorded = self.completer.record_all(&mut *self.store, &self.owner);
                if self.guard(recorded)?.is_none() {
                    self.sleep_out_failure();
                }
                want_claim = true;
                continue;
            }
            // Nothing is claimed until the next wake: commit finished attempts now.
            if self.completer.has_finishes() && !self.backing_off() {
                let recorded = self.completer.record_all(&mut *self.store, &self.owner);
                self.guard(recorded)?;
            }
            want_claim |= self.wait_and_handle(summary);
            self.dispatcher.assign_waiting(|id, slot| {
                if let Some(r) = self.running.get_mut(&id) {
                    r.slot = Some(slot);
                }
            });
            self.dispatcher.flush();
            if self.completer.has_progress() && !self.backing_off() {
                let recorded = self
                    .completer
                    .record_progress(&mut *self.store, &self.owner);
                self.guard(recorded)?;
            }
            self.interrupt_if_overdue(summary);
            self.check_cancels(summary)?;
            // Before renewing: a host that was silent (stopped, cut off) for most of the
            // lease finds out here, even if the renewal now succeeds.
            self.fence_if_silent();
            self.renew_lease()?;
            self.refresh_hosting();
            want_claim |= self.recover(summary)?;
        }
    }

    /// On a shared store, looks at this host's libraries and the registry again when
    /// due (registering the host when what it holds changed).
    fn refresh_hosting(&mut self) {
        let Some(hosting) = self.hosting.as_mut() else {
            return;
        };
        if self.failing.is_some() {
            return;
        }
        let capacity = self.cfg.concurrency;
        if let Err(e) = hosting.refresh(&mut *self.store, &self.owner, capacity, false) {
            tracing::debug!("cannot refresh this host's libraries: {e:#}");
        }
    }

    /// Fencing: when the lease has not been renewed for most of the time other hosts
    /// wait before they recover this engine's tasks, the runners are stopped and their
    /// tasks end as interrupted (recorded only if this engine still owns them), so a
    /// task is never run by two hosts at once. Claims resume once the lease is renewed.
    fn fence_if_silent(&mut self) {
        let limit = self.cfg.stale_after.mul_f64(0.75);
        if self.fenced || self.lease_renewed.elapsed() < limit {
            return;
        }
        tracing::warn!(
            "the lease could not be renewed for {}: stopping this host's runners, as other hosts may take over its tasks",
            format_duration(self.lease_renewed.elapsed())
        );
        self.fenced = true;
        // Idle runners too: nothing of this host's keeps running on its own.
        self.dispatcher.interrupt_all();
    }

    /// The service's timers: returns whether a claim is due (a retry, the fallback).
    fn due_timers(&mut self) -> bool {
        let now = Instant::now();
        let t = &mut self.timers;
        let retry_due = t.next_retry.is_some_and(|r| now >= r);
        let own_due = t.own_retry.is_some_and(|r| now >= r);
        let due = retry_due || own_due || now >= t.fallback;
        if due {
            t.fallback = now + SERVICE_FALLBACK;
        }
        if retry_due {
            t.next_retry = None;
        }
        if own_due {
            t.own_retry = None;
        }
        due
    }

    /// The earliest future retry: a scan of the pending rows, so at most every
    /// [`RETRY_LOOKUP`], not after every short claim.
    fn look_up_retries(&mut self) {
        if self.timers.retry_lookup.elapsed() < RETRY_LOOKUP {
            return;
        }
        self.timers.retry_lookup = Instant::now();
        match self.store.next_run_after() {
            Ok(at) => {
                // checked_add: a time too far ahead for the clock is no time to wake.
                self.timers.next_retry = at.and_then(|at| {
                    Instant::now().checked_add(Duration::from_millis(
                        at.saturating_sub(now_ms()).max(0) as u64,
                    ))
                })
            }
            Err(e) => tracing::debug!("cannot look up the next retry: {e}"),
        }
    }

    /// Claims up to `free` tasks, honouring per-worker limits; the finished attempts
    /// of the last cycle are committed in the same transaction (after this cycle's
    /// lines).
    fn claim(&mut self, free: usize) -> Result<Vec<ClaimedTask>> {
        self.completer
            .record_progress(&mut *self.store, &self.owner)?;
        // A fenced host records what ended but claims nothing new.
        let free = if self.fenced { 0 } else { free };
        // Workers whose library this host does not hold (a shared store).
        let not_here: Vec<&str> = self
            .hosting
            .as_ref()
            .map(|h| h.excluded().iter().map(String::as_str).collect())
            .unwrap_or_default();
        if self.cfg.worker_concurrency.is_empty() {
            let finishes = self.completer.take_finishes();
            let claimed = self.store.claim(&Claim {
                finishes: &finishes,
                owner: &self.owner,
                now: now_ms(),
                limit: free,
                excluded_workers: &not_here,
                start_line: &start_line,
            });
            return match claimed {
                Ok((applied, claimed)) => {
                    // The applied finishes' last lines and a start line per claimed task.
                    metrics::global().log_lines_written(
                        super::completer::finished_lines(&finishes, &applied) + claimed.len(),
                    );
                    Ok(claimed)
                }
                Err(e) => {
                    self.completer.restore(finishes);
                    Err(e.into())
                }
            };
        }
        self.completer.record_all(&mut *self.store, &self.owner)?;
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
            let mut excluded: Vec<&str> = self
                .cfg
                .worker_concurrency
                .iter()
                .filter(|(w, limit)| busy.get(w.as_str()).copied().unwrap_or(0) >= **limit)
                .map(|(w, _)| w.as_str())
                .collect();
            excluded.extend(not_here.iter().copied());
            let claimed = self.store.claim(&Claim {
                finishes: &[],
                owner: &self.owner,
                now: now_ms(),
                limit: 1,
                excluded_workers: &excluded,
                start_line: &start_line,
            });
            match claimed {
                Ok((_, mut got)) => match got.pop() {
                    Some(c) => {
                        metrics::global().log_lines_written(1);
                        out.push(c)
                    }
                    None => break,
                },
                // What was claimed before the failure is running under this owner now:
                // it must be run, not dropped (the next claim meets the failure again).
                Err(e) if !out.is_empty() => {
                    tracing::debug!("claim stopped early: {e}");
                    break;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(out)
    }

    /// Claims task `id` for `tasks execute` (empty when it cannot be claimed).
    fn claim_one(&mut self, id: i64) -> Result<Vec<ClaimedTask>> {
        self.completer.record_all(&mut *self.store, &self.owner)?;
        let claimed: Vec<ClaimedTask> = self
            .store
            .claim_task(id, &self.owner, now_ms(), &start_line)?
            .into_iter()
            .collect();
        metrics::global().log_lines_written(claimed.len());
        Ok(claimed)
    }

    /// Prepares a claimed task and hands it to a slot; problems found here end the
    /// attempt at once.
    fn dispatch(&mut self, c: ClaimedTask, summary: &mut Summary) {
        let id = c.task.id;
        (self.observer)(id, &start_line(&c.task));
        let series = self.series.get(&c.task.worker, &c.task.action);
        series.started(queue_wait(&c.task));
        let mut running = Running::new(c.task, series);
        // Debug, not info: at thousands of tasks a second, a start line per task cost
        // the coordinator a sixth of its time in a busy service; the line at the end
        // says how it went.
        tracing::debug!(task = id, worker = %running.task.worker, action = %running.task.action, attempt = running.task.attempts, "task started");
        let resolved = self.resolver.resolve(
            &running.task.worker,
            &c.worker,
            super::resolve::Defaults {
                timeout: self.cfg.default_timeout,
                limits: self.cfg.limits,
            },
        );
        let prepared = resolved.and_then(|r| {
            // On a shared store the task runs from this host's own file with the
            // registered content (the registered path is the registering host's).
            let path = match &self.hosting {
                Some(h) => h.file_of(&c.worker.library_sha256).ok_or_else(|| {
                    super::resolve::StartError {
                        message: format!(
                            "this host ({}) does not hold the library of worker '{}' (sha256 {}); another host will run it",
                            crate::recovery::hostname(),
                            running.task.worker,
                            c.worker.library_sha256
                        ),
                        retryable: true,
                    }
                })?,
                None => std::path::Path::new(&c.worker.library_path),
            };
            let library = self
                .cache
                .prepare(path)
                .map_err(|e| super::resolve::StartError {
                    message: format!("{e:#}"),
                    retryable: true,
                })?;
            let t = &running.task;
            Ok(Assignment {
                id: t.id,
                worker: t.worker.clone(),
                action: t.action.clone(),
                data: t.data.clone(),
                settings: r.settings,
                library,
                timeout: r.timeout,
                limits: r.limits,
                access: r.access,
                enqueues: r.enqueues,
                // The runner creates it when the worker first asks for it: most tasks
                // write no result files.
                result_dir: self.scratch.join(t.id.to_string()),
                max_result_bytes: self.cfg.max_result_json_bytes,
            })
        });
        match prepared {
            Ok(assignment) => {
                running.slot = self.dispatcher.assign(assignment);
                self.running.insert(id, running);
            }
            Err(e) => {
                let end = if e.retryable {
                    RunEnd::StartFailed(e.message)
                } else {
                    RunEnd::Err(e.message)
                };
                self.conclude(running, end, !e.retryable, Vec::new(), summary);
            }
        }
    }

    /// Waits for slot reports (or a timer) and handles everything that arrived;
    /// returns whether a claim may find work.
    fn wait_and_handle(&mut self, summary: &mut Summary) -> bool {
        let mut wake_at = Instant::now() + Duration::from_secs(3600);
        if !self.running.is_empty() {
            wake_at = wake_at.min(Instant::now() + Duration::from_millis(50));
        } else if !self.service {
            // A one-shot run with nothing running (every task it claimed ended before
            // starting) has nothing to wait for: back to claiming, or to ending.
            wake_at = Instant::now();
        }
        if self.service {
            wake_at = wake_at.min(self.timers.fallback);
            for r in [self.timers.next_retry, self.timers.own_retry]
                .into_iter()
                .flatten()
            {
                wake_at = wake_at.min(r);
            }
        }
        if let Some(d) = self.timers.stop_deadline {
            wake_at = wake_at.min(d);
        }
        if let Some(f) = &self.failing {
            wake_at = wake_at.min(f.until);
        }
        let mut want_claim = false;
        let first = self
            .events
            .recv_timeout(wake_at.saturating_duration_since(Instant::now()));
        let mut next = match first {
            Ok(m) => Some(m),
            Err(RecvTimeoutError::Timeout) => None,
            // Every sender is gone: nothing can arrive, and a service must stop.
            Err(RecvTimeoutError::Disconnected) => Some(Msg::Stop),
        };
        while let Some(msg) = next {
            match msg {
                Msg::Slot(ev) => {
                    want_claim |= matches!(ev, FromSlot::Done { .. });
                    self.handle(ev, summary);
                }
                Msg::Wake => want_claim = true,
                Msg::Stop => {
                    if self.timers.stop_deadline.is_none() {
                        tracing::info!(
                            running = self.running.len(),
                            "stopping: no new tasks are claimed; running tasks get {} to finish",
                            format_duration(self.cfg.shutdown_grace)
                        );
                        self.timers.stop_deadline = Some(Instant::now() + self.cfg.shutdown_grace);
                    }
                }
            }
            next = self.events.try_recv().ok();
        }
        want_claim
    }

    fn handle(&mut self, ev: FromSlot, summary: &mut Summary) {
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
                let line = r.line(Status::Running, &r.message);
                (self.observer)(id, &line);
                let update = ProgressUpdate {
                    id,
                    progress: line.progress as i64,
                    processed: processed as i64,
                    total: total as i64,
                    message: r.message.clone(),
                };
                self.completer.progress(update, line);
            }
            FromSlot::Log { id, level, message } => {
                let Some(r) = self.running.get_mut(&id) else {
                    return;
                };
                r.log_lines += 1;
                if r.log_lines > self.cfg.max_log_lines {
                    metrics::global().log_line_dropped();
                    if r.log_lines == self.cfg.max_log_lines + 1 {
                        let note = format!(
                            "[warn] log limit of {} messages reached; further messages of this attempt are dropped",
                            self.cfg.max_log_lines
                        );
                        let line = r.line(Status::Running, &note);
                        (self.observer)(id, &line);
                        self.completer.line(id, line);
                    }
                    return;
                }
                let text = match Level::from_code(level) {
                    Level::Info => message,
                    other => format!("[{}] {message}", other.as_str()),
                };
                let line = r.line(Status::Running, &text);
                (self.observer)(id, &line);
                self.completer.line(id, line);
            }
            FromSlot::Done {
                id,
                slot,
                end,
                ran,
                skipped_files,
            } => {
                self.dispatcher.done(slot);
                let Some(r) = self.running.remove(&id) else {
                    return;
                };
                if let RunEnd::Ok(_) | RunEnd::Err(_) = end {
                    self.dispatcher.speeds.record(
                        &r.task.worker,
                        &r.task.action,
                        ran.as_secs_f64() * 1000.0,
                    );
                }
                let notes = skipped_files
                    .into_iter()
                    .map(|m| format!("[warn] Result file skipped: {m}"))
                    .collect();
                self.conclude(r, end, false, notes, summary);
            }
        }
    }

    /// Turns how a run ended into the task's next state, its last log lines (`notes`
    /// first, then the line of the outcome) and the summary counts.
    fn conclude(
        &mut self,
        mut r: Running,
        end: RunEnd,
        final_failure: bool,
        notes: Vec<String>,
        summary: &mut Summary,
    ) {
        let now = now_ms();
        if let RunEnd::Ok(_) = end {
            r.processed = if r.total == 0 { 0 } else { r.total };
        }
        let attempt = Attempt {
            attempts: r.task.attempts,
            max_attempts: r.task.max_attempts,
            cancel_requested: r.cancel_sent,
            took: r.started.elapsed(),
            final_failure,
        };
        let policy = RetryPolicy {
            base: self.cfg.retry_base,
            max: self.cfg.retry_max,
        };
        let d = decide(end, &attempt, &policy, now);
        let outcome = match d.kind {
            Kind::Completed => {
                summary.completed += 1;
                Outcome::Completed
            }
            Kind::Failed => {
                summary.failed += 1;
                Outcome::Failed
            }
            Kind::Retried => {
                summary.retried += 1;
                Outcome::Retried
            }
            Kind::Cancelled => {
                summary.cancelled += 1;
                Outcome::Cancelled
            }
            Kind::Interrupted => {
                summary.interrupted += 1;
                Outcome::Interrupted
            }
        };
        r.series.finished(outcome, attempt.took);
        if let Some(delay) = d.retry_in {
            // Wake for our own retries without waiting for a lookup.
            let at = Instant::now() + delay;
            self.timers.own_retry = Some(self.timers.own_retry.map_or(at, |r| r.min(at)));
        }
        let t = &r.task;
        tracing::info!(task = t.id, worker = %t.worker, action = %t.action, status = %d.status, "{}", d.message);
        let mut lines: Vec<_> = notes.iter().map(|n| r.line(Status::Running, n)).collect();
        let mut last = r.line(d.status, &d.message);
        if d.status == Status::Completed {
            last.progress = 100;
            last.eta = "0s".into();
        } else {
            last.eta = "-".into();
        }
        lines.push(last);
        for l in &lines {
            (self.observer)(t.id, l);
        }
        self.completer.finish(Finish {
            id: t.id,
            owner: self.owner.clone(),
            outcome: d.outcome,
            progress: lines.last().map_or(0, |l| l.progress as i64),
            processed: r.processed as i64,
            total: r.total as i64,
            message: d.message,
            at: now,
            lines,
        });
    }

    /// After the stop's grace period: interrupts what still runs (it is requeued).
    fn interrupt_if_overdue(&mut self, summary: &mut Summary) {
        let Some(deadline) = self.timers.stop_deadline else {
            return;
        };
        if self.timers.interrupted || Instant::now() < deadline || self.running.is_empty() {
            return;
        }
        self.timers.interrupted = true;
        tracing::warn!(
            running = self.running.len(),
            "grace period over: interrupting running tasks; they will be retried"
        );
        self.dispatcher.interrupt_busy();
        for a in self.dispatcher.drain_waiting() {
            if let Some(r) = self.running.remove(&a.id) {
                self.conclude(r, RunEnd::Interrupted, false, Vec::new(), summary);
            }
        }
    }

    /// Passes cancel requests of running tasks on to their slots.
    fn check_cancels(&mut self, summary: &mut Summary) -> Result<()> {
        if self.running.is_empty()
            || self.timers.cancel_check.elapsed() < Duration::from_millis(200)
            || self.backing_off()
        {
            return Ok(());
        }
        self.timers.cancel_check = Instant::now();
        let requests = self.store.cancel_requests(&self.owner).map_err(Into::into);
        let Some(requests) = self.guard_read(requests)? else {
            return Ok(());
        };
        for id in requests {
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
                    self.dispatcher.cancel(slot, id);
                }
                None => {
                    // Still waiting for a slot: it never starts.
                    self.dispatcher.unwait(id);
                    if let Some(r) = self.running.remove(&id) {
                        let end = RunEnd::Err("cancelled before it started".into());
                        self.conclude(r, end, false, Vec::new(), summary);
                    }
                }
            }
        }
        Ok(())
    }

    /// Renews this engine's lease on its tasks.
    fn renew_lease(&mut self) -> Result<()> {
        // At least four renewals per lease: the fence falls at three quarters of it, so
        // a host renewing every 2 s with a 3 s lease would fence itself whenever a loop
        // ran a quarter second late (a busy machine), and runs its buffered,
        // already-finished tasks again.
        let every = self.cfg.heartbeat_interval.min(self.cfg.stale_after / 4);
        if self.timers.lease.elapsed() < every || self.backing_off() {
            return Ok(());
        }
        self.timers.lease = Instant::now();
        let renewed = self
            .store
            .renew_lease(&self.owner, now_ms())
            .map_err(Into::into);
        if self.guard(renewed)?.is_some() {
            self.lease_renewed = Instant::now();
            if self.fenced {
                tracing::info!("the lease is renewed again: this host claims tasks again");
                self.fenced = false;
            }
        }
        Ok(())
    }

    /// Looks for tasks of dead or silent owners; returns whether some were requeued.
    fn recover(&mut self, summary: &mut Summary) -> Result<bool> {
        let shared = self.store.is_shared();
        // Several hosts: only the leader checks, so it checks often (a dead host's tasks
        // are taken over within a couple of seconds of its lease running out).
        let interval = if shared {
            self.cfg.recovery_interval.min(SHARED_RECOVERY_INTERVAL)
        } else {
            self.cfg.recovery_interval
        };
        if self.timers.recovery.elapsed() < interval || self.backing_off() {
            return Ok(false);
        }
        self.timers.recovery = Instant::now();
        // Hosts sharing a store leave the check to one of them, the leader (a lease in
        // the store, renewed by each check; another host takes over when it runs out).
        // Its term is half a lease: a dead leader is replaced before the tasks of the
        // host that died with it are stale.
        if shared {
            let term = (self.cfg.stale_after / 2).max(interval * 3).as_millis() as i64;
            let leads = self.store.try_lead(&self.owner, now_ms(), term);
            match self.guard_read(leads.map_err(Into::into))? {
                Some(true) => {}
                _ => return Ok(false),
            }
        }
        let found = recovery::recover_stuck(
            &mut *self.store,
            &self.owner,
            now_ms(),
            self.cfg.stale_after.as_millis() as i64,
        );
        let Some(found) = self.guard_read(found)? else {
            return Ok(false);
        };
        let requeued = found.iter().any(|r| r.requeued);
        summary.recovered.extend(found);
        Ok(requeued)
    }

    /// Whether store work waits for a failure to clear.
    fn backing_off(&self) -> bool {
        self.failing
            .as_ref()
            .is_some_and(|f| Instant::now() < f.until)
    }

    /// Sleeps until the back-off of a failing store is over (when nothing else can
    /// happen meanwhile).
    fn sleep_out_failure(&self) {
        if let Some(f) = &self.failing {
            std::thread::sleep(f.until.saturating_duration_since(Instant::now()));
        }
    }

    /// Passes a store result through: `Some` on success; `None` when the store failed
    /// in a way that may clear by itself and the engine can wait (always for a service,
    /// up to [`ONE_SHOT_PATIENCE`] otherwise), after logging it and backing off.
    fn guard<T>(&mut self, result: Result<T>) -> Result<Option<T>> {
        self.guard_as(result, true)
    }

    /// [`Coordinator::guard`] for a read: a read that works says nothing about whether
    /// writes do again, so it does not end a failure streak.
    fn guard_read<T>(&mut self, result: Result<T>) -> Result<Option<T>> {
        self.guard_as(result, false)
    }

    fn guard_as<T>(&mut self, result: Result<T>, write: bool) -> Result<Option<T>> {
        let e = match result {
            Ok(v) => {
                if write {
                    if let Some(f) = self.failing.take() {
                        tracing::info!(
                            "the store works again after {}",
                            format_duration(f.since.elapsed())
                        );
                    }
                }
                return Ok(Some(v));
            }
            Err(e) => e,
        };
        let transient = e
            .downcast_ref::<StoreError>()
            .is_some_and(StoreError::is_transient);
        if !transient {
            return Err(e);
        }
        let now = Instant::now();
        let f = self.failing.get_or_insert(Failing {
            since: now,
            until: now,
            delay: Duration::ZERO,
            last_logged: now - Duration::from_secs(3600),
        });
        if !self.service && f.since.elapsed() >= ONE_SHOT_PATIENCE {
            return Err(e.context(format!(
                "the store kept failing for {}",
                format_duration(ONE_SHOT_PATIENCE)
            )));
        }
        f.delay = (f.delay * 2).clamp(Duration::from_millis(50), Duration::from_secs(2));
        f.until = now + f.delay;
        if f.last_logged.elapsed() >= Duration::from_secs(10) {
            f.last_logged = now;
            tracing::warn!(
                "storage failed ({e:#}); keeping {} running tasks and their reports, trying again",
                self.running.len()
            );
        }
        Ok(None)
    }

    /// Records whatever is left (waiting out a failing store for a while), stops the
    /// slots and gives the lease up. After an error (`failed`), tasks still in the slots
    /// are interrupted rather than waited for: their outcomes could not be recorded, and
    /// the next engine recovers them.
    pub fn shutdown(&mut self, failed: bool) {
        if failed {
            self.dispatcher.interrupt_busy();
        }
        let deadline = Instant::now() + ONE_SHOT_PATIENCE;
        loop {
            match self.completer.record_all(&mut *self.store, &self.owner) {
                Ok(()) => break,
                Err(e) => {
                    let transient = e
                        .downcast_ref::<StoreError>()
                        .is_some_and(StoreError::is_transient);
                    if !transient || Instant::now() >= deadline {
                        tracing::warn!(
                            "cannot record finished tasks: {e:#}; they will be recovered"
                        );
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
        self.dispatcher.shutdown();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        if let Err(e) = self.store.release_lease(&self.owner) {
            tracing::debug!("cannot release the lease: {e}");
        }
        if self.hosting.is_some() {
            if let Err(e) = self.store.remove_host(&self.owner) {
                tracing::debug!("cannot unregister this host: {e}");
            }
        }
        if self.store.is_shared() {
            // Another host may take the chores over at once.
            if let Err(e) = self.store.resign(&self.owner) {
                tracing::debug!("cannot give the leadership up: {e}");
            }
        }
        let _ = std::fs::remove_dir_all(&self.scratch);
    }
}

/// How often the leader of hosts sharing a store looks for stuck tasks.
const SHARED_RECOVERY_INTERVAL: Duration = Duration::from_secs(2);

/// How long a claimed attempt waited: from when it could first be claimed (its task's
/// creation, or the end of a retry's back-off or a delayed start) to the claim.
fn queue_wait(t: &stask_storage::TaskRecord) -> Duration {
    let due = t.created_at.max(t.run_after);
    let started = t.started_at.unwrap_or(due);
    Duration::from_millis(started.saturating_sub(due).max(0) as u64)
}

/// Why `execute` cannot claim a task.
fn not_executable(store: &dyn Store, id: i64) -> Result<String> {
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
            Status::Pending => match crate::ops::tasks::limit_waiting(store, &t)?
                .and_then(|w| w.limit_text())
            {
                // The claim refuses a task whose key is at its limit, also here.
                Some(why) => format!(
                    "task {id} waits for its limit per key: {why}; it runs once its key has room (a service claims it then), or execute it again later"
                ),
                None => format!("task {id} could not be claimed; try again"),
            },
        },
    })
}
