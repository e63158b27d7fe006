//! One execution slot: a thread that owns at most one runner process and the queue of
//! tasks the coordinator gave it.
//!
//! Tasks are pipelined: every queued task is sent to the runner at once, and the runner
//! runs them one after another, so a fast task costs no round trip. The head of the
//! queue is the task running now; its time limit and cancel grace period are enforced
//! by killing the runner's process group. When the runner dies or is killed, the head
//! gets the matching end (crash, timeout, cancel) and the tasks behind it are sent to a
//! fresh runner. A runner is kept while the library content (hash) and the process
//! limits stay the same, and while its tasks leave nothing behind (a runner whose task
//! left threads or processes retires, see [`crate::runner`]).
//!
//! Ending a runner ends every process below it ([`crate::process_tree`]), detached ones
//! included; what a runner that died by itself had started comes to the engine's
//! process (a subreaper), which ends it too.

use std::collections::{HashSet, VecDeque};
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::cache::CachedLibrary;
use super::ingest::{ingest, IngestError, IngestLimits, Ingested};
use super::limits::{self, Limits};
use super::protocol::{Command, Event};
use super::Msg;
use crate::process_tree::{self, Tracked};
use crate::runner::{COMMAND_FD, EVENT_FD};
use crate::sandbox::{self, Access, Confinement};
use crate::signals::describe_exit;

/// Longest line of a runner's stderr kept for the log; the rest of it is counted, not
/// kept (a plugin may print anything, any amount).
const MAX_STDERR_LINE: usize = 4096;

/// How much of a runner's last stderr output is kept to explain how it ended.
const STDERR_TAIL: usize = 4096;

/// How long a runner may take to load its library.
const LOAD_TIMEOUT: Duration = Duration::from_secs(10);

/// A task handed to a slot.
#[derive(Debug, Clone)]
pub struct Assignment {
    /// Task id.
    pub id: i64,
    /// Worker identifier.
    pub worker: String,
    /// Action.
    pub action: String,
    /// Data JSON text.
    pub data: String,
    /// Resolved settings JSON text.
    pub settings: String,
    /// The library copy to load.
    pub library: CachedLibrary,
    /// Time limit.
    pub timeout: Duration,
    /// Scratch directory the worker may write result files into; ingested into the
    /// store and removed when the attempt ends.
    pub result_dir: PathBuf,
    /// Longest result JSON accepted, in bytes.
    pub max_result_bytes: u64,
    /// Resource limits of the run.
    pub limits: Limits,
    /// What the run may touch beyond the sandbox's baseline.
    pub access: Arc<Access>,
    /// The follow-up tasks it may enqueue (its worker's registered manifest says).
    pub enqueues: Arc<Vec<String>>,
}

/// What arrives in a slot's inbox.
pub enum Inbox {
    /// Queue tasks (all of the same library as the slot's queue).
    Run(Vec<Assignment>),
    /// Cancel a task (ignored unless it is in this slot's queue).
    Cancel(i64),
    /// The service is stopping: kill the runner and end every queued task as
    /// interrupted.
    Interrupt,
    /// Finish the queue, stop the runner and end the thread.
    Shutdown,
    /// Events from runner generation `gen`.
    Runner(u64, Vec<Event>),
    /// Runner generation `gen` closed its protocol stream.
    RunnerGone(u64),
}

/// How a task's run ended, as seen by the slot.
#[derive(Debug, Clone)]
pub enum RunEnd {
    /// The action returned a result (JSON text).
    Ok(String),
    /// The action returned an error.
    Err(String),
    /// The runner died; how.
    Crashed(String),
    /// Killed after overrunning its time limit.
    TimedOut(Duration),
    /// Killed after ignoring a cancel request for the grace period.
    KilledAfterCancel(Duration),
    /// The runner could not be started or could not load the library.
    StartFailed(String),
    /// Killed because the service stopped.
    Interrupted,
    /// The run produced something the host refuses (a result or result files over
    /// their size limits); another attempt would do the same, so it is not retried.
    Refused(String),
}

/// What a slot reports to the coordinator.
#[derive(Debug)]
pub enum FromSlot {
    /// Coalesced progress.
    Progress {
        /// Task.
        id: i64,
        /// Processed.
        processed: u64,
        /// Total.
        total: u64,
        /// Message.
        message: String,
    },
    /// A worker log message.
    Log {
        /// Task.
        id: i64,
        /// Level code.
        level: u8,
        /// Message.
        message: String,
    },
    /// A task's run ended.
    Done {
        /// Task.
        id: i64,
        /// Slot index.
        slot: usize,
        /// How.
        end: RunEnd,
        /// How long it ran in the runner (zero when it never started).
        ran: Duration,
        /// What ingesting its result files left out, one message each.
        skipped_files: Vec<String>,
    },
}

struct Runner {
    child: Child,
    /// The command stream (the runner's descriptor 3); closing it asks the runner to
    /// exit.
    commands: Option<File>,
    sha256: String,
    /// The process limits it was started with.
    limits: (Option<u64>, Option<u64>),
    /// The access its sandbox grants.
    access: Arc<Access>,
    ready: bool,
    /// It said it will exit after the task it just finished (that task left something
    /// behind); nothing more is sent to it, and its exit charges no task.
    retiring: bool,
    /// The end of what it wrote to stderr, to explain a crash.
    stderr_tail: Arc<Mutex<Vec<u8>>>,
    /// The stderr reader, done when every writer (the runner and all it started) is gone.
    stderr_reader: Option<std::thread::JoinHandle<()>>,
    /// Keeps the stray sweep away from this child until it was waited for.
    _tracked: Tracked,
    /// How many queue entries (from the front) were sent to this runner.
    sent: usize,
    load_deadline: Instant,
    /// Counts the process as alive (metrics) until it is reaped and this is dropped.
    _alive: crate::metrics::RunnerAlive,
}

impl Runner {
    fn send_all(&mut self, cmds: impl Iterator<Item = Command>) -> std::io::Result<()> {
        let Some(stdin) = self.commands.as_mut() else {
            return Err(std::io::ErrorKind::BrokenPipe.into());
        };
        let mut buf = String::new();
        for cmd in cmds {
            buf.push_str(&serde_json::to_string(&cmd).expect("command serializes"));
            buf.push('\n');
        }
        stdin.write_all(buf.as_bytes())?;
        stdin.flush()
    }

    /// Kills the runner and every process below it (a plugin may have started
    /// children, detached ones too) and reaps.
    fn kill(mut self) -> std::process::ExitStatus {
        let pid = self.child.id() as i32;
        process_tree::kill_tree(pid, true);
        let status = self
            .child
            .wait()
            .unwrap_or_else(|_| std::process::ExitStatus::from_raw(9));
        // What it had started was orphaned to us when it died: reap that too.
        process_tree::end_strays();
        status
    }

    /// Closes the command stream so the runner exits by itself (ending what its tasks
    /// started); kills it if it lingers.
    fn stop(mut self) {
        self.commands = None;
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                process_tree::end_strays();
                return;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        self.kill();
    }

    /// The last lines it wrote to stderr, once the stream ended (waiting briefly for
    /// the reader to catch up after the process is gone).
    fn stderr_tail(&mut self) -> String {
        if let Some(reader) = self.stderr_reader.take() {
            let deadline = Instant::now() + Duration::from_millis(500);
            while !reader.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        let tail = self.stderr_tail.lock().unwrap_or_else(|e| e.into_inner());
        String::from_utf8_lossy(&tail).into_owned()
    }
}

/// The slot's thread body.
pub struct Slot {
    /// Index, reported back with `Done`.
    pub index: usize,
    /// The stask executable (runners are this binary in `__runner` mode).
    pub exe: PathBuf,
    /// Working directory of runners (the home).
    pub workdir: PathBuf,
    /// Grace period after a cancel request.
    pub cancel_grace: Duration,
    /// The inbox.
    pub inbox: Receiver<Inbox>,
    /// Sender into the own inbox, for runner reader threads.
    pub inbox_tx: Sender<Inbox>,
    /// Reports to the coordinator.
    pub out: Sender<Msg>,
    /// Opens a store for ingesting result files (on first need).
    pub open_store: StoreOpener,
    /// Size limits of result files.
    pub limits: IngestLimits,
    /// How long an ingest waits for a failing store (`None`: as long as it takes, for a
    /// service).
    pub ingest_patience: Option<Duration>,
    /// What happens to runs on a kernel without Landlock.
    pub sandbox: sandbox::Mode,
}

/// Opens a store connection for a thread that needs its own.
pub type StoreOpener =
    std::sync::Arc<dyn Fn() -> anyhow::Result<Box<dyn stask_storage::Store>> + Send + Sync>;

/// The slot's mutable state.
struct State {
    queue: VecDeque<Assignment>,
    runner: Option<Runner>,
    gen: u64,
    /// When the head started (for its time limit).
    head_started: Instant,
    /// Ids with a cancel request; the head's grace deadline when it is one of them.
    cancelled: HashSet<i64>,
    grace_deadline: Option<Instant>,
    shutdown: bool,
    /// The slot's own store connection, for ingesting result files and creating the
    /// tasks a running task enqueues.
    store: Option<Box<dyn stask_storage::Store>>,
    /// The task at the head and how many follow-up tasks its attempt has enqueued.
    enqueued: (i64, u32),
}

impl Slot {
    /// Runs until `Shutdown` (after its queue is empty).
    pub fn run(self) {
        let mut st = State {
            queue: VecDeque::new(),
            runner: None,
            gen: 0,
            head_started: Instant::now(),
            cancelled: HashSet::new(),
            grace_deadline: None,
            shutdown: false,
            store: None,
            enqueued: (0, 0),
        };
        loop {
            if st.queue.is_empty() && st.shutdown {
                break;
            }
            self.feed(&mut st);
            let timeout = self
                .next_deadline(&st)
                .map_or(Duration::from_secs(3600), |d| {
                    d.saturating_duration_since(Instant::now())
                });
            match self.inbox.recv_timeout(timeout) {
                Ok(msg) => self.handle(&mut st, msg),
                Err(RecvTimeoutError::Timeout) => self.on_deadline(&mut st),
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        if let Some(r) = st.runner.take() {
            r.stop();
        }
    }

    /// Starts a runner when there is work, and sends it every task not sent yet.
    fn feed(&self, st: &mut State) {
        let Some(head) = st.queue.front() else {
            return;
        };
        if st.runner.as_ref().is_some_and(|r| {
            r.sha256 != head.library.sha256
                || r.limits != head.limits.process_key()
                || *r.access != *head.access
        }) {
            if let Some(r) = st.runner.take() {
                r.stop();
            }
        }
        if st.runner.is_none() {
            st.gen += 1;
            match self.spawn(head, st.gen) {
                Ok(r) => st.runner = Some(r),
                Err(e) => {
                    self.end_all(st, RunEnd::StartFailed(e));
                    return;
                }
            }
        }
        let r = st.runner.as_mut().expect("runner present");
        if !r.ready || r.retiring || r.sent >= st.queue.len() {
            return;
        }
        if r.sent == 0 {
            st.head_started = Instant::now();
        }
        let cmds = st.queue.iter().skip(r.sent).map(|a| Command::Run {
            id: a.id,
            worker: a.worker.clone(),
            action: a.action.clone(),
            data: a.data.clone(),
            settings: a.settings.clone(),
            result_dir: a.result_dir.display().to_string(),
            max_result_bytes: a.max_result_bytes,
            cpu_secs: a.limits.cpu_secs,
        });
        // Cancel requests that came before the task was sent travel right behind it.
        let cancels: Vec<Command> = st
            .queue
            .iter()
            .skip(r.sent)
            .filter(|a| st.cancelled.contains(&a.id))
            .map(|a| Command::Cancel { id: a.id })
            .collect();
        // A write error means the runner is gone; RunnerGone will follow.
        if r.send_all(cmds.chain(cancels)).is_ok() {
            r.sent = st.queue.len();
        }
    }

    fn next_deadline(&self, st: &State) -> Option<Instant> {
        let r = st.runner.as_ref()?;
        if st.queue.is_empty() {
            return None;
        }
        if !r.ready {
            return Some(r.load_deadline);
        }
        let head = st.queue.front()?;
        let limit = st.head_started + head.timeout;
        Some(st.grace_deadline.map_or(limit, |g| g.min(limit)))
    }

    fn handle(&self, st: &mut State, msg: Inbox) {
        match msg {
            Inbox::Run(batch) => st.queue.extend(batch.into_iter().map(|mut a| {
                // Result files go to this slot's private directory, the only part of
                // the scratch area its runner's sandbox may write.
                if let Some(engine_dir) = a.result_dir.parent() {
                    a.result_dir = engine_dir
                        .join(format!("slot-{}", self.index))
                        .join(a.id.to_string());
                }
                a
            })),
            Inbox::Cancel(id) => self.cancel(st, id),
            Inbox::Interrupt => {
                if let Some(r) = st.runner.take() {
                    r.kill();
                }
                self.end_all(st, RunEnd::Interrupted);
            }
            Inbox::Shutdown => st.shutdown = true,
            Inbox::Runner(g, events) if g == st.gen => {
                for ev in events {
                    self.on_event(st, ev);
                }
            }
            Inbox::RunnerGone(g) if g == st.gen => self.on_runner_gone(st),
            Inbox::Runner(..) | Inbox::RunnerGone(_) => {}
        }
    }

    fn cancel(&self, st: &mut State, id: i64) {
        let Some(pos) = st.queue.iter().position(|a| a.id == id) else {
            return;
        };
        if !st.cancelled.insert(id) {
            return;
        }
        let sent = st
            .runner
            .as_ref()
            .map_or(0, |r| if r.ready { r.sent } else { 0 });
        if pos >= sent {
            // Not sent to a runner yet: it never starts.
            if let Some(a) = st.queue.remove(pos) {
                st.cancelled.remove(&id);
                self.report(
                    st,
                    &a,
                    RunEnd::Err("cancelled before it started".into()),
                    Duration::ZERO,
                );
            }
            return;
        }
        if let Some(r) = st.runner.as_mut() {
            let _ = r.send_all(std::iter::once(Command::Cancel { id }));
        }
        if pos == 0 {
            st.grace_deadline = Some(Instant::now() + self.cancel_grace);
        }
    }

    fn on_event(&self, st: &mut State, ev: Event) {
        match ev {
            Event::Ready { sandbox } => {
                if let Some(r) = st.runner.as_mut() {
                    r.ready = true;
                    if sandbox != "full" && self.sandbox != sandbox::Mode::Off {
                        warn_unconfined(&sandbox);
                    }
                }
            }
            Event::LoadFailed { error } => {
                if !error.detail.is_empty() {
                    tracing::debug!(detail = %error.detail, "library load details");
                }
                if let Some(r) = st.runner.take() {
                    r.kill();
                }
                let msg = format!(
                    "the worker's library could not be loaded: {}",
                    error.message
                );
                self.end_all(st, RunEnd::StartFailed(msg));
            }
            Event::Progress {
                id,
                processed,
                total,
                message,
            } => {
                self.send(FromSlot::Progress {
                    id,
                    processed,
                    total,
                    message,
                });
            }
            Event::Log { id, level, message } => {
                self.send(FromSlot::Log { id, level, message });
            }
            Event::Done {
                id,
                ok,
                err,
                refused,
            } => {
                if st.queue.front().map(|a| a.id) != Some(id) {
                    tracing::warn!(task = id, "runner finished a task out of order; ignored");
                    return;
                }
                let Some(a) = st.queue.pop_front() else {
                    return;
                };
                if let Some(r) = st.runner.as_mut() {
                    r.sent = r.sent.saturating_sub(1);
                }
                st.cancelled.remove(&id);
                let end = match (refused, ok, err) {
                    (Some(why), _, _) => RunEnd::Refused(why),
                    (None, Some(result), _) if result.len() as u64 > a.max_result_bytes => {
                        RunEnd::Refused(result_too_large(result.len(), a.max_result_bytes))
                    }
                    (None, Some(result), _) => RunEnd::Ok(result),
                    (None, None, Some(e)) => {
                        let e = limits::explain_error(e, &a.limits);
                        let access = (self.sandbox != sandbox::Mode::Off).then_some(&*a.access);
                        RunEnd::Err(sandbox::explain_denial(e, &a.worker, access))
                    }
                    (None, None, None) => RunEnd::Err("the worker returned nothing".into()),
                };
                let ran = st.head_started.elapsed();
                self.next_head(st);
                self.report(st, &a, end, ran);
            }
            Event::Enqueue {
                id,
                request,
                worker,
                action,
                data,
            } => self.on_enqueue(st, id, request, &worker, &action, &data),
            Event::Retiring { reason } => {
                if let Some(r) = st.runner.as_mut() {
                    r.retiring = true;
                    tracing::info!(
                        runner = r.child.id(),
                        "runner retired: its last task left {reason}; the next task gets a fresh runner"
                    );
                }
            }
        }
    }

    /// A running task asks for a follow-up task. Created here, in the engine (the
    /// runner may be sandboxed and never touches the store), after the checks the
    /// runner cannot influence: the task must be the one running, the target declared
    /// in its worker's registered manifest, and the attempt under the bound. Then the
    /// same creation path as the CLI's and the API's, with the parent recorded. The
    /// answer goes back to the runner, and a line to the parent's log either way.
    ///
    /// A created task is committed before the answer is sent: it stays whatever becomes
    /// of the parent (a crash, a retry, a cancel).
    fn on_enqueue(
        &self,
        st: &mut State,
        id: i64,
        request: u64,
        worker: &str,
        action: &str,
        data: &str,
    ) {
        let answer = self.enqueue(st, id, worker, action, data);
        let target = format!("{worker}/{action}");
        let (level, message) = match &answer {
            Ok((child, false)) => (
                stask_plugin_api::abi::level::INFO,
                format!("Enqueued task #{child} ({target})"),
            ),
            Ok((child, true)) => (
                stask_plugin_api::abi::level::INFO,
                format!(
                    "Enqueued {target}: task #{child} with the same unique key is already waiting"
                ),
            ),
            Err(e) => (
                stask_plugin_api::abi::level::ERROR,
                format!("Enqueue refused: {e}"),
            ),
        };
        self.send(FromSlot::Log { id, level, message });
        let reply = match answer {
            Ok((child, _)) => Command::Enqueued {
                request,
                task: Some(child),
                error: None,
            },
            Err(e) => Command::Enqueued {
                request,
                task: None,
                error: Some(e),
            },
        };
        if let Some(r) = st.runner.as_mut() {
            // A write error means the runner is gone; RunnerGone will follow.
            let _ = r.send_all(std::iter::once(reply));
        }
    }

    /// Checks and creates one follow-up task of the running task `id`; its id and
    /// whether it existed already (the action's unique key found it).
    fn enqueue(
        &self,
        st: &mut State,
        id: i64,
        worker: &str,
        action: &str,
        data: &str,
    ) -> Result<(i64, bool), String> {
        use stask_plugin_api::enqueue;
        let Some(head) = st.queue.front().filter(|a| a.id == id) else {
            return Err(format!("task #{id} is not running in this runner"));
        };
        if !enqueue::allows(&head.enqueues, worker, action) {
            return Err(enqueue::refusal(
                &head.worker,
                &head.enqueues,
                worker,
                action,
            ));
        }
        if st.enqueued.0 != id {
            st.enqueued = (id, 0);
        }
        if st.enqueued.1 >= enqueue::MAX_PER_ATTEMPT {
            return Err(enqueue::too_many());
        }
        let data: serde_json::Value =
            serde_json::from_str(data).map_err(|e| format!("task data is not valid JSON: {e}"))?;
        let req = crate::ops::tasks::create::TaskRequest {
            worker: worker.to_owned(),
            action: action.to_owned(),
            data,
            priority: stask_storage::Priority::Normal,
            max_attempts: crate::ops::tasks::create::DEFAULT_MAX_ATTEMPTS,
            started_by: Some(format!("task #{id}")),
            allow_sensitive: false,
        };
        let store = self
            .store(st)
            .map_err(|e| format!("the task could not be stored: {e:#}"))?;
        match crate::ops::tasks::create::create_child(store, &req, id) {
            Ok(created) => {
                st.enqueued.1 += 1;
                Ok((created.first.id, created.existing))
            }
            Err(e) => {
                if crate::engine::is_transient(&e) {
                    // A connection that failed may be broken: the next use opens a
                    // fresh one.
                    st.store = None;
                }
                Err(format!("{e:#}"))
            }
        }
    }

    /// The next task in the queue starts now.
    fn next_head(&self, st: &mut State) {
        st.enqueued = (0, 0);
        st.head_started = Instant::now();
        st.grace_deadline = st
            .queue
            .front()
            .filter(|a| st.cancelled.contains(&a.id))
            .map(|_| Instant::now() + self.cancel_grace);
    }

    fn on_runner_gone(&self, st: &mut State) {
        let Some(mut r) = st.runner.take() else {
            return;
        };
        let (how, signal) = match r.child.wait() {
            Ok(s) => (describe_exit(s.code(), s.signal()), s.signal()),
            Err(e) => (format!("could not be waited for ({e})"), None),
        };
        // What it had started was orphaned to us when it died.
        process_tree::end_strays();
        if r.retiring {
            // It finished its task and left as it said it would: no one is charged.
            return;
        }
        if !r.ready {
            self.end_all(
                st,
                RunEnd::Crashed(format!(
                    "the runner process crashed while loading the library: {how}"
                )),
            );
            return;
        }
        if r.sent > 0 {
            let tail = r.stderr_tail();
            let no_limits = Limits::default();
            let limits = st.queue.front().map_or(&no_limits, |a| &a.limits);
            let message = limits::explain(&how, signal, &tail, limits);
            self.end_head(st, RunEnd::Crashed(message));
        }
        // Tasks behind the head never started; the next runner gets them.
    }

    fn on_deadline(&self, st: &mut State) {
        let Some(r) = st.runner.take() else { return };
        let ready = r.ready;
        r.kill();
        if !ready {
            let msg = format!(
                "the runner did not load the library within {} s",
                LOAD_TIMEOUT.as_secs()
            );
            self.end_all(st, RunEnd::StartFailed(msg));
            return;
        }
        let now = Instant::now();
        let end = if st.grace_deadline.is_some_and(|g| now >= g) {
            RunEnd::KilledAfterCancel(self.cancel_grace)
        } else {
            RunEnd::TimedOut(st.queue.front().map_or(Duration::ZERO, |a| a.timeout))
        };
        self.end_head(st, end);
    }

    fn end_head(&self, st: &mut State, end: RunEnd) {
        if let Some(a) = st.queue.pop_front() {
            st.cancelled.remove(&a.id);
            let ran = st.head_started.elapsed();
            self.next_head(st);
            self.report(st, &a, end, ran);
        } else {
            self.next_head(st);
        }
    }

    fn end_all(&self, st: &mut State, end: RunEnd) {
        st.enqueued = (0, 0);
        let queue: Vec<Assignment> = st.queue.drain(..).collect();
        st.cancelled.clear();
        st.grace_deadline = None;
        for a in &queue {
            self.report(st, a, end.clone(), Duration::ZERO);
        }
    }

    /// Ingests the task's result files (when its scratch directory exists), then
    /// reports how it ended. A result file over a limit fails the attempt for good.
    fn report(&self, st: &mut State, a: &Assignment, mut end: RunEnd, ran: Duration) {
        let mut skipped_files = Vec::new();
        if a.result_dir.exists() {
            match self.ingest_waiting(st, a) {
                Ok(got) => {
                    skipped_files = got.skipped;
                    match got.error {
                        Some(e) if matches!(end, RunEnd::Ok(_)) => {
                            end = match e {
                                IngestError::Limit(m) => RunEnd::Refused(m),
                                IngestError::Store { message, .. } => RunEnd::Err(message),
                            }
                        }
                        Some(e) => skipped_files.push(e.message().to_owned()),
                        None => {}
                    }
                }
                Err(message) => {
                    if matches!(end, RunEnd::Ok(_)) {
                        end = RunEnd::Err(message);
                    } else {
                        skipped_files.push(message);
                    }
                }
            }
            // Whatever happened, the next attempt starts with an empty directory.
            let _ = std::fs::remove_dir_all(&a.result_dir);
        }
        self.send(FromSlot::Done {
            id: a.id,
            slot: self.index,
            end,
            ran,
            skipped_files,
        });
    }

    /// Ingests the task's scratch directory, waiting out a store that fails in a way
    /// that may clear by itself (a successful run must not fail, and be run again, for a
    /// lock held elsewhere): tried again with growing pauses for as long as
    /// `ingest_patience` allows (a service: always). `Err` when the store could not be
    /// opened in time.
    fn ingest_waiting(&self, st: &mut State, a: &Assignment) -> Result<Ingested, String> {
        let started = Instant::now();
        let mut pause = Duration::from_millis(100);
        loop {
            let failure = match self.store(st) {
                Ok(store) => {
                    let got = ingest(store, a.id, &a.result_dir, self.limits);
                    match &got.error {
                        Some(IngestError::Store {
                            transient: true,
                            message,
                        }) => message.clone(),
                        _ => return Ok(got),
                    }
                }
                Err(e) if crate::engine::is_transient(&e) => {
                    format!("result files could not be stored: {e:#}")
                }
                Err(e) => return Err(format!("result files could not be stored: {e:#}")),
            };
            if self.ingest_patience.is_some_and(|p| started.elapsed() >= p) {
                return Err(failure);
            }
            tracing::warn!(task = a.id, "{failure}; trying again");
            // A connection that failed may be broken: open a fresh one.
            st.store = None;
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_secs(5));
        }
    }

    /// The slot's store connection, opened on first use.
    fn store<'s>(&self, st: &'s mut State) -> anyhow::Result<&'s mut dyn stask_storage::Store> {
        if st.store.is_none() {
            st.store = Some((self.open_store)()?);
        }
        Ok(&mut **st.store.as_mut().expect("opened above"))
    }

    fn send(&self, f: FromSlot) {
        let _ = self.out.send(f.into());
    }

    fn spawn(&self, head: &Assignment, gen: u64) -> Result<Runner, String> {
        let (lib, limits) = (&head.library, &head.limits);
        let failed = |e: std::io::Error| format!("could not start a runner process: {e}");
        // The slot's private directory: result files and the runner's TMPDIR, the only
        // part of the home its sandbox may write.
        let private = head
            .result_dir
            .parent()
            .map_or_else(|| self.workdir.join("scratch"), Path::to_path_buf);
        // A fresh TMPDIR for every runner: what an earlier runner of this slot (perhaps
        // another worker's) left there is not this one's to read.
        let tmp = private.join("tmp");
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(failed)?;
        let confinement = Confinement {
            mode: self.sandbox,
            library: lib.path.clone(),
            private,
            access: (*head.access).clone(),
        };
        let confinement = serde_json::to_string(&confinement).expect("serializes");
        // The protocol's two pipes; every end is close-on-exec, so no other child
        // (another slot's runner spawned meanwhile) inherits one and keeps it open.
        let (command_read, command_write) = pipe().map_err(failed)?;
        let (event_read, event_write) = pipe().map_err(failed)?;
        let (child_in, child_out) = (command_read.as_raw_fd(), event_write.as_raw_fd());
        let limits_for_child = *limits;
        let mut process = Process::new(&self.exe);
        process
            .arg("__runner")
            .arg(&lib.path)
            .arg("--sandbox")
            .arg(confinement)
            .env("TMPDIR", &tmp)
            .current_dir(&self.workdir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0);
        // SAFETY: between fork and exec only async-signal-safe calls (fcntl, dup2,
        // setrlimit) on descriptors and values prepared before the fork.
        unsafe {
            process.pre_exec(move || {
                // Move both ends clear of 3 and 4 first: either may have one of those
                // numbers already.
                let a = libc::fcntl(child_in, libc::F_DUPFD_CLOEXEC, 10);
                let b = libc::fcntl(child_out, libc::F_DUPFD_CLOEXEC, 10);
                if a < 0 || b < 0 || libc::dup2(a, COMMAND_FD) < 0 || libc::dup2(b, EVENT_FD) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                limits_for_child.apply_to_process()
            });
        }
        let (mut child, tracked) = process_tree::spawn_tracked(&mut process).map_err(failed)?;
        drop((command_read, event_write));
        let stderr = child.stderr.take().expect("piped");
        let tx = self.inbox_tx.clone();
        let events = File::from(event_read);
        std::thread::spawn(move || read_events(events, gen, tx));
        let pid = child.id();
        let stderr_tail: Arc<Mutex<Vec<u8>>> = Arc::default();
        let tail = stderr_tail.clone();
        let stderr_reader = std::thread::spawn(move || drain_stderr(stderr, pid, &tail));
        Ok(Runner {
            child,
            commands: Some(File::from(command_write)),
            sha256: lib.sha256.clone(),
            limits: limits.process_key(),
            access: head.access.clone(),
            ready: false,
            retiring: false,
            stderr_tail,
            stderr_reader: Some(stderr_reader),
            _tracked: tracked,
            sent: 0,
            load_deadline: Instant::now() + LOAD_TIMEOUT,
            _alive: crate::metrics::global().runner_started(),
        })
    }
}

/// Warns (once per process) that runners run without the sandbox's full protection.
fn warn_unconfined(status: &str) {
    static WARNED: std::sync::Once = std::sync::Once::new();
    WARNED.call_once(|| {
        if status == "partial" {
            tracing::warn!("this kernel's Landlock lacks some features: runners are only partly sandboxed (see the README's threat model)");
        } else {
            tracing::warn!("this kernel does not support Landlock: runners run without a sandbox (`sandbox = \"best-effort\"`; set it to \"required\" to refuse that)");
        }
    });
}

/// A pipe whose ends are both close-on-exec: (read, write).
fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array, which we then own.
    unsafe {
        if libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok((OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])))
    }
}

/// Reads what a runner (and plugin code in it) writes to stderr, as bytes, until every
/// writer is gone: never stops early, whatever arrives (invalid UTF-8, endless lines),
/// because a runner whose stderr is no longer read fails on its next write. Lines go to
/// the debug log, cut at [`MAX_STDERR_LINE`]; the last [`STDERR_TAIL`] bytes are kept in
/// `tail` to explain a crash.
fn drain_stderr(stderr: std::process::ChildStderr, pid: u32, tail: &Mutex<Vec<u8>>) {
    let mut reader = BufReader::with_capacity(64 * 1024, stderr);
    let mut line: Vec<u8> = Vec::new();
    let mut cut = 0usize;
    loop {
        let buf = match reader.fill_buf() {
            Ok([]) => break,
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        let n = buf.len();
        {
            let mut t = tail.lock().unwrap_or_else(|e| e.into_inner());
            t.extend_from_slice(buf);
            if t.len() > STDERR_TAIL {
                let excess = t.len() - STDERR_TAIL;
                t.drain(..excess);
            }
        }
        for &b in &buf[..n] {
            if b == b'\n' {
                log_stderr_line(pid, &line, cut);
                line.clear();
                cut = 0;
            } else if line.len() < MAX_STDERR_LINE {
                line.push(b);
            } else {
                cut += 1;
            }
        }
        reader.consume(n);
    }
    if !line.is_empty() {
        log_stderr_line(pid, &line, cut);
    }
}

fn log_stderr_line(pid: u32, line: &[u8], cut: usize) {
    let text = String::from_utf8_lossy(line);
    if cut > 0 {
        tracing::debug!(target: "stask::runner", runner = pid, "{text}… ({cut} more bytes)");
    } else {
        tracing::debug!(target: "stask::runner", runner = pid, "{text}");
    }
}

/// The message of a result over the size limit.
pub fn result_too_large(len: usize, limit: u64) -> String {
    format!(
        "the result is {len} bytes, over the limit of {limit} bytes (setting `max_result_json_kb`); keep large output in result files"
    )
}

/// Reads a runner's events, forwarding whatever complete lines each read brought as one
/// batch, then `RunnerGone` at end of stream.
fn read_events(events: File, gen: u64, tx: Sender<Inbox>) {
    let mut reader = BufReader::with_capacity(64 * 1024, events);
    let mut pending = Vec::new();
    loop {
        let buf = match reader.fill_buf() {
            Ok([]) | Err(_) => break,
            Ok(b) => b,
        };
        let n = buf.len();
        // Only the bytes just read can hold the line's end: searching the whole
        // pending buffer on every read made a long line cost quadratic time.
        let newline = buf.iter().rposition(|&b| b == b'\n');
        let before = pending.len();
        pending.extend_from_slice(buf);
        reader.consume(n);
        let Some(end) = newline.map(|i| before + i) else {
            continue;
        };
        let mut events = Vec::new();
        for line in pending[..end].split(|&b| b == b'\n') {
            if line.is_empty() {
                continue;
            }
            match serde_json::from_slice::<Event>(line) {
                Ok(ev) => events.push(ev),
                Err(e) => tracing::warn!(
                    "runner sent a malformed event ({e}): {}",
                    String::from_utf8_lossy(line)
                ),
            }
        }
        pending.drain(..=end);
        if !events.is_empty() && tx.send(Inbox::Runner(gen, events)).is_err() {
            return;
        }
    }
    let _ = tx.send(Inbox::RunnerGone(gen));
}
