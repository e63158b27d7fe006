//! The runner: a child process (`stask __runner LIBRARY`) that loads one plugin library
//! and runs tasks sent on descriptor 3, streaming events back on descriptor 4 (see
//! [`crate::engine::protocol`]). Plugin code gets `/dev/null` as stdin and stderr (the
//! host's debug log) as stdout.
//!
//! It never touches the database or log files; the host owns those. Progress reports
//! are coalesced here, so a worker may call `progress` once per item: the call only
//! stores numbers, and a flusher thread sends the latest values every
//! [`PROGRESS_INTERVAL`].
//!
//! After each task the runner ends every process the task started (it is a child
//! subreaper, so detached ones come back to it) and counts its own threads: a task that
//! left threads or processes behind makes the runner retire instead of running the next
//! task, so whatever was left cannot crash an innocent one.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::os::fd::FromRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{RResult, RStr, RString};
use stask_plugin_api::abi::{HostServicesFn, RunContext, RunContext_TO, HOST_SERVICES_SYMBOL};

use crate::engine::limits::limit_cpu_from_now;
use crate::engine::protocol::{Command, Event};
use crate::loader;
use crate::process_tree;

/// The descriptor commands arrive on (set up by the engine when it spawns the runner).
pub const COMMAND_FD: i32 = 3;

/// The descriptor events are written to.
pub const EVENT_FD: i32 = 4;

/// Results written before the runner flushes even though more tasks are queued.
const FLUSH_EVERY: usize = 32;

/// How often coalesced progress is sent to the host.
pub const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);

struct Output {
    writer: Mutex<BufWriter<File>>,
}

impl Output {
    fn send(&self, event: &Event, flush: bool) {
        let mut w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let line = serde_json::to_string(event).expect("event serializes");
        // The host is gone if this fails; there is no one left to tell.
        if writeln!(w, "{line}").is_err() || (flush && w.flush().is_err()) {
            std::process::exit(0);
        }
    }

    fn flush(&self) {
        let mut w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        if w.flush().is_err() {
            std::process::exit(0);
        }
    }
}

/// Progress of the running task, written by the worker and read by the flusher.
struct ProgressState {
    id: i64,
    seq: AtomicU64,
    sent_seq: Mutex<u64>,
    processed: AtomicU64,
    total: AtomicU64,
    message: Mutex<String>,
}

impl ProgressState {
    /// Sends the latest values if they changed since the last send.
    fn flush(&self, out: &Output) {
        let mut sent = self.sent_seq.lock().unwrap_or_else(|e| e.into_inner());
        let seq = self.seq.load(Ordering::Acquire);
        if seq == *sent {
            return;
        }
        *sent = seq;
        let message = self
            .message
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        out.send(
            &Event::Progress {
                id: self.id,
                processed: self.processed.load(Ordering::Relaxed),
                total: self.total.load(Ordering::Relaxed),
                message,
            },
            true,
        );
    }
}

struct Ctx {
    state: Arc<ProgressState>,
    cancelled: Arc<AtomicBool>,
    out: Arc<Output>,
    result_dir: String,
}

/// How long a run waits for the host to answer an enqueue request.
const ENQUEUE_TIMEOUT: Duration = Duration::from_secs(60);

/// Enqueue requests waiting for the host's answer, by request number (answers arrive on
/// the command stream, read by another thread).
#[derive(Default)]
struct Requests {
    next: AtomicU64,
    waiting: Mutex<HashMap<u64, mpsc::Sender<Result<i64, String>>>>,
}

impl Requests {
    fn answer(&self, request: u64, answer: Result<i64, String>) {
        let waiting = self
            .waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&request);
        if let Some(tx) = waiting {
            let _ = tx.send(answer);
        }
    }
}

impl RunContext for Ctx {
    fn progress(&self, processed: u64, total: u64, message: RStr<'_>) {
        let s = &self.state;
        s.processed.store(processed, Ordering::Relaxed);
        s.total.store(total, Ordering::Relaxed);
        {
            let mut m = s.message.lock().unwrap_or_else(|e| e.into_inner());
            if m.as_str() != message.as_str() {
                m.clear();
                m.push_str(message.as_str());
            }
        }
        s.seq.fetch_add(1, Ordering::Release);
    }

    fn log(&self, level: u8, message: RStr<'_>) {
        // Keep order: progress reported before this message lands before it.
        self.state.flush(&self.out);
        self.out.send(
            &Event::Log {
                id: self.state.id,
                level,
                message: message.as_str().to_owned(),
            },
            true,
        );
    }

    fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }

    fn task_id(&self) -> u64 {
        self.state.id as u64
    }

    fn result_dir(&self) -> RString {
        // Created on first use; the host does not create one for every task.
        if let Err(e) = std::fs::create_dir_all(&self.result_dir) {
            eprintln!(
                "stask runner: cannot create result directory {}: {e}",
                self.result_dir
            );
        }
        self.result_dir.as_str().into()
    }
}

/// The running task as the host services see it ([`host_enqueue`]).
struct Link {
    state: Arc<ProgressState>,
    out: Arc<Output>,
    requests: Arc<Requests>,
}

/// The task running now, for the host services a library calls by function pointer;
/// `None` between tasks.
static CURRENT: Mutex<Option<Arc<Link>>> = Mutex::new(None);

fn set_current(link: Option<Arc<Link>>) {
    *CURRENT.lock().unwrap_or_else(|e| e.into_inner()) = link;
}

/// Offers the loaded library the host's services, when it was built to take them (it
/// exports [`HOST_SERVICES_SYMBOL`]; libraries built earlier do not, and are left as
/// they are). Outside abi_stable's layout check on purpose: see the symbol's docs.
fn offer_host_services(library: &Path) {
    // SAFETY: the library is loaded already (this returns the same handle, no
    // initialiser runs again); the symbol's signature is fixed by its versioned name.
    let Ok(lib) = abi_stable::library::RawLibrary::load_at(library) else {
        return;
    };
    unsafe {
        if let Ok(services) = lib.get::<HostServicesFn>(HOST_SERVICES_SYMBOL) {
            (*services)(host_enqueue);
        }
    }
    // Never unloaded, like every plugin library (abi_stable keeps its own handle).
    std::mem::forget(lib);
}

/// The enqueue service a library calls: for the running task only, sent to the host
/// (which alone holds the store), waiting for its answer. Never unwinds into the
/// plugin.
extern "C" fn host_enqueue(
    task: u64,
    worker: RStr<'_>,
    action: RStr<'_>,
    data: RStr<'_>,
) -> RResult<u64, RString> {
    let answer = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let link = CURRENT.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match link {
            Some(link) if link.state.id as u64 == task => {
                link.enqueue(worker.as_str(), action.as_str(), data.as_str())
            }
            _ => Err(format!(
                "task #{task} is not running; a task enqueues only while it runs"
            )),
        }
    }));
    match answer {
        Ok(Ok(id)) => RResult::ROk(id),
        Ok(Err(e)) => RResult::RErr(e.into()),
        Err(_) => RResult::RErr("the runner failed while enqueueing".into()),
    }
}

impl Link {
    /// Asks the host to create the task and waits for its answer: the runner may be
    /// sandboxed and never touches the database.
    fn enqueue(&self, worker: &str, action: &str, data: &str) -> Result<u64, String> {
        let limit = crate::ops::tasks::create::MAX_DATA_BYTES;
        if data.len() > limit {
            // Refused here, so oversized data never crosses the protocol.
            return Err(format!(
                "task data is {} bytes; the limit is {limit} bytes. Pass large inputs as a file path instead",
                data.len()
            ));
        }
        let request = self.requests.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel();
        self.requests
            .waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(request, tx);
        // Keep order: progress reported before this request lands before it.
        self.state.flush(&self.out);
        self.out.send(
            &Event::Enqueue {
                id: self.state.id,
                request,
                worker: worker.to_owned(),
                action: action.to_owned(),
                data: data.to_owned(),
            },
            true,
        );
        match rx.recv_timeout(ENQUEUE_TIMEOUT) {
            Ok(answer) => answer.map(|id| id as u64),
            Err(_) => {
                self.requests
                    .waiting
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&request);
                Err(format!(
                    "the host did not answer within {} s; the task may or may not have been created",
                    ENQUEUE_TIMEOUT.as_secs()
                ))
            }
        }
    }
}

type Flags = Arc<Mutex<HashMap<i64, Arc<AtomicBool>>>>;

fn flag(flags: &Flags, id: i64) -> Arc<AtomicBool> {
    flags
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(id)
        .or_default()
        .clone()
}

/// Takes the protocol descriptors, marked close-on-exec so processes a plugin starts do
/// not inherit them, and points stdout at stderr. `None` when the descriptors are not
/// there (the runner was not started by an engine).
fn take_protocol() -> Option<(File, File)> {
    for fd in [COMMAND_FD, EVENT_FD] {
        // SAFETY: fcntl on descriptor numbers; no memory is involved.
        if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } != 0 {
            return None;
        }
    }
    // SAFETY: the engine handed us these two descriptors for our own use; plugin output
    // to fd 1 goes where stderr goes (the host reads it as bytes and logs it).
    unsafe {
        libc::dup2(2, 1);
        Some((File::from_raw_fd(COMMAND_FD), File::from_raw_fd(EVENT_FD)))
    }
}

/// Child side of the runner; returns the exit code. `sandbox` is the confinement (JSON)
/// the engine chose; it is applied before any other thread exists and before the
/// library is loaded.
pub fn run_child(library: &Path, sandbox: Option<&str>) -> i32 {
    let Some((commands, events)) = take_protocol() else {
        eprintln!(
            "stask __runner is started by the stask engine, which passes it descriptors {COMMAND_FD} and {EVENT_FD}; run tasks with `stask tasks process` or `stask serve`"
        );
        return 2;
    };
    if let Err(e) = process_tree::become_subreaper() {
        eprintln!(
            "stask runner: cannot become a subreaper ({e}); processes a task leaves may outlive it"
        );
    }
    let out = Arc::new(Output {
        writer: Mutex::new(BufWriter::new(events)),
    });
    let confined = match confine(sandbox) {
        Ok(status) => status,
        Err(message) => {
            let error = loader::LoadError::new("sandbox", message);
            out.send(&Event::LoadFailed { error }, true);
            return 0;
        }
    };
    let lib = match loader::load(library) {
        Ok(lib) => lib,
        Err(error) => {
            out.send(&Event::LoadFailed { error }, true);
            return 0;
        }
    };
    offer_host_services(library);
    out.send(&Event::Ready { sandbox: confined }, true);

    let flags: Flags = Arc::default();
    let requests: Arc<Requests> = Arc::default();
    let (tx, rx) = mpsc::channel::<Command>();
    {
        let flags = flags.clone();
        let requests = requests.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(commands).lines() {
                let Ok(line) = line else { break };
                match serde_json::from_str::<Command>(&line) {
                    Ok(Command::Cancel { id }) => flag(&flags, id).store(true, Ordering::Relaxed),
                    Ok(Command::Enqueued {
                        request,
                        task,
                        error,
                    }) => requests.answer(
                        request,
                        match (task, error) {
                            (Some(id), _) => Ok(id),
                            (None, e) => {
                                Err(e.unwrap_or_else(|| "the host created no task".into()))
                            }
                        },
                    ),
                    Ok(run @ Command::Run { .. }) => {
                        if tx.send(run).is_err() {
                            break;
                        }
                    }
                    Err(e) => eprintln!("stask runner: ignoring malformed command: {e}"),
                }
            }
            // The host closed our command stream (it stopped, or it died): nobody can
            // record what we would do next, so stop now, taking every process the task
            // started along. The host requeues unfinished work.
            process_tree::end_own_descendants();
            // SAFETY: _exit ends the process at once; plugin threads must not run
            // exit handlers.
            unsafe { libc::_exit(0) }
        });
    }

    let current: Arc<Mutex<Option<Arc<ProgressState>>>> = Arc::default();
    {
        let current = current.clone();
        let out = out.clone();
        std::thread::spawn(move || loop {
            std::thread::sleep(PROGRESS_INTERVAL);
            let state = current.lock().unwrap_or_else(|e| e.into_inner()).clone();
            if let Some(state) = state {
                state.flush(&out);
            }
        });
    }

    let run = lib.run();
    // Threads of the runner itself (and whatever the library started while loading):
    // more than this after a task means the task left some running.
    let own_threads = process_tree::thread_count();
    let mut unflushed = 0usize;
    loop {
        // Flush when no further command is queued, so pipelined tasks share writes, and
        // every FLUSH_EVERY results, so the host can record (and refill) while we run.
        if unflushed >= FLUSH_EVERY {
            out.flush();
            unflushed = 0;
        }
        let cmd = match rx.try_recv() {
            Ok(c) => c,
            Err(mpsc::TryRecvError::Empty) => {
                out.flush();
                unflushed = 0;
                match rx.recv() {
                    Ok(c) => c,
                    Err(_) => break,
                }
            }
            Err(mpsc::TryRecvError::Disconnected) => break,
        };
        let Command::Run {
            id,
            worker,
            action,
            data,
            settings,
            result_dir,
            max_result_bytes,
            cpu_secs,
        } = cmd
        else {
            continue;
        };
        let cancelled = flag(&flags, id);
        if cancelled.load(Ordering::Relaxed) {
            // Cancelled while it waited in the pipeline: it never starts.
            flags.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
            out.send(
                &Event::Done {
                    id,
                    ok: None,
                    err: Some("cancelled before it started".into()),
                    refused: None,
                },
                false,
            );
            continue;
        }
        let state = Arc::new(ProgressState {
            id,
            seq: AtomicU64::new(0),
            sent_seq: Mutex::new(0),
            processed: AtomicU64::new(0),
            total: AtomicU64::new(0),
            message: Mutex::new(String::new()),
        });
        *current.lock().unwrap_or_else(|e| e.into_inner()) = Some(state.clone());
        let ctx = Ctx {
            state: state.clone(),
            cancelled,
            out: out.clone(),
            result_dir,
        };
        set_current(Some(Arc::new(Link {
            state: state.clone(),
            out: out.clone(),
            requests: requests.clone(),
        })));
        // Only runs with a CPU allowance touch the limit (it is lifted again after
        // them): two system calls saved on every other run.
        if cpu_secs.is_some() {
            limit_cpu_from_now(cpu_secs);
        }
        let result = run(
            RunContext_TO::from_ptr(&ctx, TD_Opaque),
            RStr::from_str(&worker),
            RStr::from_str(&action),
            RStr::from_str(&data),
            RStr::from_str(&settings),
        );
        if cpu_secs.is_some() {
            limit_cpu_from_now(None);
        }
        set_current(None);
        let left = leftovers(own_threads);
        *current.lock().unwrap_or_else(|e| e.into_inner()) = None;
        state.flush(&out);
        flags.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
        let event = match result {
            // Refused here, so an oversized result never crosses the protocol.
            RResult::ROk(json) if json.len() as u64 > max_result_bytes => Event::Done {
                id,
                ok: None,
                err: None,
                refused: Some(crate::engine::slot::result_too_large(
                    json.len(),
                    max_result_bytes,
                )),
            },
            RResult::ROk(json) => Event::Done {
                id,
                ok: Some(json.into_string()),
                err: None,
                refused: None,
            },
            RResult::RErr(e) => Event::Done {
                id,
                ok: None,
                err: Some(e.into_string()),
                refused: None,
            },
        };
        if let Some(reason) = left {
            out.send(&event, false);
            out.send(&Event::Retiring { reason }, true);
            process_tree::end_own_descendants();
            // SAFETY: _exit ends the process at once, so the threads the task left
            // never run again (exit handlers could give them time to crash).
            unsafe { libc::_exit(0) }
        }
        out.send(&event, false);
        unflushed += 1;
    }
    out.flush();
    process_tree::end_own_descendants();
    0
}

/// Applies the engine's confinement; returns how it went ("full", "partial", "none").
fn confine(sandbox: Option<&str>) -> Result<String, String> {
    let Some(text) = sandbox else {
        return Ok("none".into());
    };
    let confinement: crate::sandbox::Confinement = serde_json::from_str(text)
        .map_err(|e| format!("the runner's sandbox description is not valid ({e})"))?;
    Ok(match confinement.apply()? {
        crate::sandbox::Outcome::Full => "full",
        crate::sandbox::Outcome::Partial => "partial",
        crate::sandbox::Outcome::None => "none",
    }
    .into())
}

/// What a task left behind: processes (ended here) and threads beyond the runner's
/// own. `None` when it left nothing.
fn leftovers(own_threads: Option<usize>) -> Option<String> {
    let processes = process_tree::end_own_descendants();
    let threads = match (own_threads, process_tree::thread_count()) {
        (Some(own), Some(now)) if now > own => {
            // A thread on its way out (a pool shutting down) gets a moment to finish.
            std::thread::sleep(std::time::Duration::from_millis(20));
            process_tree::thread_count().map_or(0, |n| n.saturating_sub(own))
        }
        _ => 0,
    };
    let mut what = Vec::new();
    if processes > 0 {
        what.push(format!("{processes} process(es), ended now"));
    }
    if threads > 0 {
        what.push(format!("{threads} thread(s) still running"));
    }
    (!what.is_empty()).then(|| what.join(" and "))
}
