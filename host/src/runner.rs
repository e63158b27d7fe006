//! The runner: a child process (`stask __runner LIBRARY`) that loads one plugin library
//! and runs tasks sent on stdin, streaming events back (see [`crate::engine::protocol`]).
//!
//! It never touches the database or log files; the host owns those. Progress reports
//! are coalesced here, so a worker may call `progress` once per item: the call only
//! stores numbers, and a flusher thread sends the latest values every
//! [`PROGRESS_INTERVAL`].

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufWriter, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{RResult, RStr, RString};
use stask_plugin_api::abi::{RunContext, RunContext_TO};

use crate::engine::protocol::{Command, Event};
use crate::loader;
use crate::protocol_fd;

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

type Flags = Arc<Mutex<HashMap<i64, Arc<AtomicBool>>>>;

fn flag(flags: &Flags, id: i64) -> Arc<AtomicBool> {
    flags
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(id)
        .or_default()
        .clone()
}

/// Child side of the runner; returns the exit code.
pub fn run_child(library: &Path) -> i32 {
    let out = Arc::new(Output {
        writer: Mutex::new(BufWriter::new(protocol_fd::take_stdout())),
    });
    let lib = match loader::load(library) {
        Ok(lib) => lib,
        Err(error) => {
            out.send(&Event::LoadFailed { error }, true);
            return 0;
        }
    };
    out.send(&Event::Ready, true);

    let flags: Flags = Arc::default();
    let (tx, rx) = mpsc::channel::<Command>();
    {
        let flags = flags.clone();
        std::thread::spawn(move || {
            let stdin = std::io::stdin();
            for line in stdin.lock().lines() {
                let Ok(line) = line else { break };
                match serde_json::from_str::<Command>(&line) {
                    Ok(Command::Cancel { id }) => flag(&flags, id).store(true, Ordering::Relaxed),
                    Ok(run @ Command::Run { .. }) => {
                        if tx.send(run).is_err() {
                            break;
                        }
                    }
                    Err(e) => eprintln!("stask runner: ignoring malformed command: {e}"),
                }
            }
            // The host closed our stdin (it stopped, or it died): nobody can record
            // what we would do next, so stop now. The host requeues unfinished work.
            std::process::exit(0);
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
        let result = run(
            RunContext_TO::from_ptr(&ctx, TD_Opaque),
            RStr::from_str(&worker),
            RStr::from_str(&action),
            RStr::from_str(&data),
            RStr::from_str(&settings),
        );
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
        out.send(&event, false);
        unflushed += 1;
    }
    out.flush();
    0
}
