//! The background checkpointer: one thread per process and database file, while the
//! process has a store of that file open, that copies the WAL into the database every
//! few milliseconds (`PRAGMA wal_checkpoint(PASSIVE)`, which never blocks readers or
//! writers).
//!
//! With SQLite's default, the commit that crosses 1,000 WAL pages runs the checkpoint
//! itself, fsyncs included; on a busy service that commit is usually an engine's claim,
//! and the queue waits for the disk. Here commits only checkpoint past
//! [`SAFETY_NET_PAGES`] (when no checkpointer runs for long), and the thread does the
//! rest off the critical path.
//!
//! The thread keeps one plain connection (no pragmas that could write). When the
//! process closes its last store of the file, that connection is closed at once, before
//! the store's own connections: the last of those is then the file's last, and SQLite
//! checkpoints and removes the WAL as a command ends.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use rusqlite::Connection;

/// WAL pages after which a commit checkpoints by itself (about 40 MB).
pub(super) const SAFETY_NET_PAGES: i64 = 10_000;

/// How often the thread checkpoints.
const INTERVAL: Duration = Duration::from_millis(50);

/// The checkpointer of one file.
#[derive(Default)]
struct File {
    /// Open stores of the file in this process.
    stores: usize,
    /// Whether its thread runs (it stops itself once `stores` is 0).
    running: bool,
    /// The thread's connection, closed by the last store's close.
    conn: Option<Connection>,
}

type Shared = Arc<(Mutex<File>, Condvar)>;

static FILES: Mutex<Option<HashMap<PathBuf, Shared>>> = Mutex::new(None);

fn shared(path: &Path) -> Shared {
    let key = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut files = FILES.lock().unwrap_or_else(|e| e.into_inner());
    files
        .get_or_insert_with(HashMap::new)
        .entry(key)
        .or_default()
        .clone()
}

/// A store of `path` was opened: starts the file's checkpointer unless it runs.
pub(super) fn opened(path: &Path) {
    let file = shared(path);
    let start = {
        let mut f = file.0.lock().unwrap_or_else(|e| e.into_inner());
        f.stores += 1;
        let start = !f.running;
        f.running = true;
        start
    };
    if start {
        let path = path.to_path_buf();
        let thread_file = file.clone();
        let spawned = std::thread::Builder::new()
            .name("sqlite-checkpointer".into())
            .spawn(move || run(&path, &thread_file));
        if spawned.is_err() {
            // Without the thread, commits still checkpoint at the safety net.
            file.0.lock().unwrap_or_else(|e| e.into_inner()).running = false;
        }
    }
}

/// A store of `path` is closing: when it is the last, the thread's connection is
/// closed now (waiting for a checkpoint in progress) and the thread stops.
pub(super) fn closed(path: &Path) {
    let file = shared(path);
    let conn = {
        let mut f = file.0.lock().unwrap_or_else(|e| e.into_inner());
        f.stores = f.stores.saturating_sub(1);
        if f.stores > 0 {
            return;
        }
        f.conn.take()
    };
    drop(conn);
    file.1.notify_all();
}

fn run(path: &Path, file: &Shared) {
    let (lock, wake) = &**file;
    let mut f = lock.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        f = wake
            .wait_timeout(f, INTERVAL)
            .unwrap_or_else(|e| e.into_inner())
            .0;
        if f.stores == 0 {
            f.running = false;
            f.conn = None;
            return;
        }
        if f.conn.is_none() {
            // A plain connection: the checkpoint needs no settings, and setting any
            // could start a write.
            f.conn = Connection::open(path).ok();
        }
        // Held under the lock, so a closing store waits for it rather than racing it.
        // A failure (a lock held elsewhere) is tried again on the next round.
        if let Some(conn) = &f.conn {
            let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
        }
    }
}
