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

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

/// WAL pages after which a commit checkpoints by itself (about 40 MB).
pub(super) const SAFETY_NET_PAGES: i64 = 10_000;

/// How often the thread checkpoints.
const INTERVAL: Duration = Duration::from_millis(50);

/// Open stores per database file in this process; a file's thread runs while its
/// count is above zero.
static OPEN: Mutex<Option<HashMap<PathBuf, usize>>> = Mutex::new(None);

fn key(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// A store of `path` was opened: starts the file's checkpointer unless it runs.
pub(super) fn opened(path: &Path) {
    let key = key(path);
    let start = {
        let mut open = OPEN.lock().unwrap_or_else(|e| e.into_inner());
        let count = open
            .get_or_insert_with(HashMap::new)
            .entry(key.clone())
            .or_insert(0);
        *count += 1;
        *count == 1
    };
    if start {
        // Without the thread, commits still checkpoint at the safety net.
        let _ = std::thread::Builder::new()
            .name("sqlite-checkpointer".into())
            .spawn(move || run(&key));
    }
}

/// A store of `path` was closed.
pub(super) fn closed(path: &Path) {
    let key = key(path);
    let mut open = OPEN.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(count) = open.as_mut().and_then(|o| o.get_mut(&key)) {
        *count = count.saturating_sub(1);
    }
}

/// Whether a store of `path` is still open in this process (the entry goes when the
/// last one closed, so a later open starts a new thread).
fn still_open(path: &Path) -> bool {
    let mut open = OPEN.lock().unwrap_or_else(|e| e.into_inner());
    let Some(map) = open.as_mut() else {
        return false;
    };
    if map.get(path).is_some_and(|c| *c > 0) {
        return true;
    }
    map.remove(path);
    false
}

fn run(path: &Path) {
    loop {
        std::thread::sleep(INTERVAL);
        if !still_open(path) {
            return;
        }
        // A connection per round, closed right after, so the thread never keeps the
        // file open on its own. A failure (a lock) is tried again on the next round.
        if let Ok(conn) = super::connect(path) {
            let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
        }
    }
}
