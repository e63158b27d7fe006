//! The background checkpointer: one thread per process and database file that copies
//! the WAL into the database every few milliseconds (`PRAGMA wal_checkpoint(PASSIVE)`,
//! which never blocks readers or writers).
//!
//! With SQLite's default, the commit that crosses 1,000 WAL pages runs the checkpoint
//! itself, fsyncs included; on a busy service that commit is usually an engine's claim,
//! and the queue waits for the disk. Here commits only checkpoint past
//! [`SAFETY_NET_PAGES`] (when no checkpointer runs for long, e.g. only short-lived
//! commands write), and the thread does the rest off the critical path.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

/// WAL pages after which a commit checkpoints by itself (about 40 MB).
pub(super) const SAFETY_NET_PAGES: i64 = 10_000;

/// How often the thread checkpoints.
const INTERVAL: Duration = Duration::from_millis(50);

static RUNNING: Mutex<Option<HashSet<PathBuf>>> = Mutex::new(None);

/// Starts the checkpointer of `path` in this process, unless it runs already.
pub(super) fn start(path: &Path) {
    let key = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    {
        let mut running = RUNNING.lock().unwrap_or_else(|e| e.into_inner());
        if !running.get_or_insert_with(HashSet::new).insert(key.clone()) {
            return;
        }
    }
    let spawned = std::thread::Builder::new()
        .name("sqlite-checkpointer".into())
        .spawn(move || run(&key));
    if spawned.is_err() {
        // Without the thread, commits still checkpoint at the safety net.
        if let Some(running) = RUNNING.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            running.remove(path);
        }
    }
}

fn run(path: &Path) {
    let mut conn: Option<rusqlite::Connection> = None;
    loop {
        std::thread::sleep(INTERVAL);
        if !path.exists() {
            // The database is gone (a temporary home): nothing left to do.
            if let Some(running) = RUNNING.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
                running.remove(path);
            }
            return;
        }
        if conn.is_none() {
            conn = super::connect(path).ok();
        }
        let Some(c) = &conn else { continue };
        // A failure (the file went away, a lock) is tried again on the next round,
        // with a fresh connection.
        let done = c.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
        if done.is_err() {
            conn = None;
        }
    }
}
