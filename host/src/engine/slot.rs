//! One execution slot: a thread that owns at most one runner process and runs the
//! tasks the coordinator hands it, one at a time.
//!
//! The slot enforces time limits and cancel grace periods by killing the runner's
//! process group, and turns a runner that dies into a clear "crashed" end for its task.
//! A runner is reused for the next task while the library content (hash) is the same.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command as Process, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use super::cache::CachedLibrary;
use super::protocol::{Command, Event};
use crate::signals::describe_exit;

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
    /// Result directory.
    pub result_dir: PathBuf,
}

/// What arrives in a slot's inbox.
pub enum Inbox {
    /// Run a task.
    Run(Box<Assignment>),
    /// Cancel a task (ignored unless it is this slot's).
    Cancel(i64),
    /// Stop a task at once because the service is stopping (kill its runner).
    Interrupt(i64),
    /// Finish the current task, stop the runner and end the thread.
    Shutdown,
    /// An event from runner generation `gen`.
    Runner(u64, Event),
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
    /// The run ended; the slot is free again.
    Done {
        /// Task.
        id: i64,
        /// Slot index.
        slot: usize,
        /// How.
        end: RunEnd,
    },
}

struct Runner {
    child: Child,
    stdin: ChildStdin,
    gen: u64,
    sha256: String,
}

impl Runner {
    fn send(&mut self, cmd: &Command) -> std::io::Result<()> {
        let line = serde_json::to_string(cmd).expect("command serializes");
        writeln!(self.stdin, "{line}")?;
        self.stdin.flush()
    }

    /// Kills the whole process group (a plugin may have started children) and reaps.
    fn kill(mut self) -> std::process::ExitStatus {
        let pid = self.child.id() as i32;
        // SAFETY: signalling a process group we created; no memory is involved.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
        self.child.wait().unwrap_or_else(|_| std::process::ExitStatus::from_raw(9))
    }

    /// Closes stdin so the runner exits by itself; kills it if it lingers.
    fn stop(mut self) {
        drop(std::mem::replace(&mut self.stdin, dummy_stdin()));
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        self.kill();
    }
}

/// A stand-in after closing the real stdin: the write end of a fresh pipe whose other end
/// is gone.
fn dummy_stdin() -> ChildStdin {
    let mut child = Process::new("true")
        .stdin(Stdio::piped())
        .spawn()
        .expect("spawn a placeholder process");
    let stdin = child.stdin.take().expect("piped");
    let _ = child.wait();
    stdin
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
    /// The inbox, and a sender into it for runner reader threads.
    pub inbox: Receiver<Inbox>,
    /// Sender into the own inbox.
    pub inbox_tx: Sender<Inbox>,
    /// Reports to the coordinator.
    pub out: Sender<super::Msg>,
    /// Set when a shutdown arrives while a task runs: the slot ends after that task.
    pub shutdown_requested: std::cell::Cell<bool>,
}

impl Slot {
    /// Runs until `Shutdown`.
    pub fn run(self) {
        let mut runner: Option<Runner> = None;
        let mut gen = 0u64;
        while let Ok(msg) = self.inbox.recv() {
            match msg {
                Inbox::Run(a) => {
                    let (end, keep_runner) = self.run_task(&a, &mut runner, &mut gen);
                    if !keep_runner {
                        if let Some(r) = runner.take() {
                            r.kill();
                        }
                    }
                    let _ = self.out.send(
                        FromSlot::Done {
                            id: a.id,
                            slot: self.index,
                            end,
                        }
                        .into(),
                    );
                    if self.shutdown_requested.get() {
                        break;
                    }
                }
                Inbox::Shutdown => break,
                Inbox::Cancel(_) | Inbox::Interrupt(_) | Inbox::Runner(..) | Inbox::RunnerGone(_) => {}
            }
        }
        if let Some(r) = runner.take() {
            r.stop();
        }
    }

    fn spawn(&self, lib: &CachedLibrary, gen: u64) -> Result<Runner, String> {
        let mut child = Process::new(&self.exe)
            .arg("__runner")
            .arg(&lib.path)
            .current_dir(&self.workdir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .map_err(|e| format!("could not start a runner process: {e}"))?;
        let stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");
        let stdin = child.stdin.take().expect("piped");
        let tx = self.inbox_tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                match serde_json::from_str::<Event>(&line) {
                    Ok(ev) => {
                        if tx.send(Inbox::Runner(gen, ev)).is_err() {
                            return;
                        }
                    }
                    Err(e) => tracing::warn!("runner sent a malformed event ({e}): {line}"),
                }
            }
            let _ = tx.send(Inbox::RunnerGone(gen));
        });
        let pid = child.id();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                tracing::debug!(target: "stask::runner", runner = pid, "{line}");
            }
        });
        Ok(Runner {
            child,
            stdin,
            gen,
            sha256: lib.sha256.clone(),
        })
    }

    /// Runs one task. Returns how it ended and whether the runner can be kept for the
    /// next task.
    fn run_task(&self, a: &Assignment, slot_runner: &mut Option<Runner>, gen: &mut u64) -> (RunEnd, bool) {
        if slot_runner.as_ref().is_some_and(|r| r.sha256 != a.library.sha256) {
            if let Some(r) = slot_runner.take() {
                r.stop();
            }
        }
        let mut ready = slot_runner.is_some();
        if slot_runner.is_none() {
            *gen += 1;
            match self.spawn(&a.library, *gen) {
                Ok(r) => *slot_runner = Some(r),
                Err(e) => return (RunEnd::StartFailed(e), false),
            }
        }
        let started = Instant::now();
        let mut deadline = started + LOAD_TIMEOUT;
        let mut cancel_deadline: Option<Instant> = None;
        let mut cancel_pending = false;
        let run_cmd = Command::Run {
            id: a.id,
            worker: a.worker.clone(),
            action: a.action.clone(),
            data: a.data.clone(),
            settings: a.settings.clone(),
            result_dir: a.result_dir.display().to_string(),
        };
        if ready {
            deadline = started + a.timeout;
            if slot_runner.as_mut().unwrap().send(&run_cmd).is_err() {
                // The reused runner died while idle: its exit shows up as RunnerGone.
                ready = false;
                deadline = started + LOAD_TIMEOUT;
            }
        }
        let current_gen = slot_runner.as_ref().unwrap().gen;
        loop {
            let wait_until = cancel_deadline.map_or(deadline, |c| c.min(deadline));
            let timeout = wait_until.saturating_duration_since(Instant::now());
            match self.inbox.recv_timeout(timeout) {
                Ok(Inbox::Runner(g, ev)) if g == current_gen => match ev {
                    Event::Ready => {
                        ready = true;
                        deadline = Instant::now() + a.timeout;
                        let r = slot_runner.as_mut().unwrap();
                        if r.send(&run_cmd).is_err() {
                            continue; // RunnerGone follows.
                        }
                        if cancel_pending {
                            let _ = r.send(&Command::Cancel { id: a.id });
                        }
                    }
                    Event::LoadFailed { error } => {
                        if !error.detail.is_empty() {
                            tracing::debug!(detail = %error.detail, "library load details");
                        }
                        return (RunEnd::StartFailed(format!("the worker's library could not be loaded: {}", error.message)), false);
                    }
                    Event::Progress { id, processed, total, message } if id == a.id => {
                        let _ = self.out.send(FromSlot::Progress { id, processed, total, message }.into());
                    }
                    Event::Log { id, level, message } if id == a.id => {
                        let _ = self.out.send(FromSlot::Log { id, level, message }.into());
                    }
                    Event::Done { id, ok, err } if id == a.id => {
                        let end = match (ok, err) {
                            (Some(result), _) => RunEnd::Ok(result),
                            (None, Some(e)) => RunEnd::Err(e),
                            (None, None) => RunEnd::Err("the worker returned nothing".into()),
                        };
                        return (end, true);
                    }
                    other => tracing::warn!("runner event for another task ignored: {other:?}"),
                },
                Ok(Inbox::RunnerGone(g)) if g == current_gen => {
                    let mut r = slot_runner.take().unwrap();
                    let status = r.child.wait();
                    let how = match status {
                        Ok(s) => describe_exit(s.code(), s.signal()),
                        Err(e) => format!("could not be waited for ({e})"),
                    };
                    let what = if ready { "the runner process crashed" } else { "the runner process crashed while loading the library" };
                    return (RunEnd::Crashed(format!("{what}: {how}")), false);
                }
                Ok(Inbox::Runner(..)) | Ok(Inbox::RunnerGone(_)) => {}
                Ok(Inbox::Cancel(id)) if id == a.id && cancel_deadline.is_none() => {
                    cancel_deadline = Some(Instant::now() + self.cancel_grace);
                    if ready {
                        let _ = slot_runner.as_mut().unwrap().send(&Command::Cancel { id });
                    } else {
                        cancel_pending = true;
                    }
                }
                Ok(Inbox::Cancel(_)) => {}
                Ok(Inbox::Interrupt(id)) if id == a.id => {
                    if let Some(r) = slot_runner.take() {
                        r.kill();
                    }
                    return (RunEnd::Interrupted, false);
                }
                Ok(Inbox::Interrupt(_)) => {}
                Ok(Inbox::Shutdown) => self.shutdown_requested.set(true),
                Ok(Inbox::Run(other)) => {
                    tracing::error!(task = other.id, "slot busy; task handed back");
                    let _ = self.out.send(
                        FromSlot::Done {
                            id: other.id,
                            slot: usize::MAX,
                            end: RunEnd::StartFailed("internal error: slot was busy".into()),
                        }
                        .into(),
                    );
                }
                Err(RecvTimeoutError::Timeout) => {
                    let now = Instant::now();
                    let r = slot_runner.take().unwrap();
                    r.kill();
                    if cancel_deadline.is_some_and(|c| now >= c) {
                        return (RunEnd::KilledAfterCancel(self.cancel_grace), false);
                    }
                    if !ready {
                        return (RunEnd::StartFailed(format!("the runner did not load the library within {} s", LOAD_TIMEOUT.as_secs())), false);
                    }
                    return (RunEnd::TimedOut(a.timeout), false);
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.shutdown_requested.set(true);
                    return (RunEnd::Crashed("the engine stopped".into()), false);
                }
            }
        }
    }
}
