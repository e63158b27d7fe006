//! The SQLite backend: the embedded default, one database file beside the home.
//!
//! * WAL with `synchronous=NORMAL`: readers run beside the single writer; commits are
//!   durable across process crashes (the case that matters here).
//! * Writers take the lock first (`BEGIN IMMEDIATE`) wherever they read before they
//!   write, so two processes can never claim the same task; a busy handler makes a
//!   writer wait for another in short steps instead of failing.
//! * The busiest writes (inserting, claiming and finishing tasks) run on a second
//!   connection with triggers off and keep the statistics themselves, once per batch
//!   ([`SqliteStore::untracked`]).
//! * Wake-ups are datagrams to the sockets services bind in `run/` beside the database
//!   ([`wakeups`]).
//! * `auto_vacuum = INCREMENTAL`, so space freed by clean-up can be given back in small
//!   steps ([`crate::TaskQueue::release_space`]).
//! * Checkpoints (copying the WAL into the database file, with its fsyncs) run on a
//!   background thread per process and database ([`checkpointer`]), not inside the
//!   commits of whoever happens to cross the WAL's size limit: an engine's claim must not
//!   wait for the disk.

mod accounts;
mod checkpointer;
mod claim;
#[cfg(test)]
mod conformance_tests;
mod files;
mod finish;
mod legacy;
mod logs;
mod migrations;
mod queue;
mod registry;
mod schedules;
mod search;
mod stats;
#[cfg(test)]
mod test_support;
mod wakeups;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::Connection;

use crate::error::{ErrorKind, StoreError};
use crate::{Leases, Store};

/// A connection to an stask SQLite database.
///
/// One per thread; SQLite in WAL mode lets several processes (the service, CLI
/// commands) share the file.
pub struct SqliteStore {
    pub(crate) conn: Connection,
    /// A second connection to the same file with triggers switched off, opened on
    /// first use, for the busiest writes only (see [`SqliteStore::untracked`]).
    untracked: Option<Connection>,
    path: PathBuf,
    /// Whether this store counts towards the file's background checkpointer (set once
    /// the store is fully open).
    registered: bool,
}

/// Adds the operation's name (and the kind of failure) to a rusqlite error.
pub(crate) trait Context<T> {
    fn context(self, what: &str) -> Result<T, StoreError>;
}

impl<T> Context<T> for Result<T, rusqlite::Error> {
    fn context(self, what: &str) -> Result<T, StoreError> {
        self.map_err(|e| error(what, e))
    }
}

/// A [`StoreError`] from a rusqlite error, classified.
pub(crate) fn error(what: &str, e: rusqlite::Error) -> StoreError {
    let kind = match &e {
        rusqlite::Error::SqliteFailure(f, _) => match f.code {
            rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked => {
                ErrorKind::Busy
            }
            rusqlite::ErrorCode::DiskFull => ErrorKind::DiskFull,
            rusqlite::ErrorCode::SystemIoFailure | rusqlite::ErrorCode::CannotOpen => ErrorKind::Io,
            rusqlite::ErrorCode::ConstraintViolation
                if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                    || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
            {
                ErrorKind::Conflict
            }
            _ => ErrorKind::Other,
        },
        _ => ErrorKind::Other,
    };
    StoreError::new(kind, what, e)
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`, brings its schema up to date
    /// and imports the progress logs and result files an older stask kept as files
    /// beside it.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let conn = connect(path)?;
        let mut store = SqliteStore {
            conn,
            untracked: None,
            path: path.to_path_buf(),
            registered: false,
        };
        migrations::migrate(&mut store.conn)?;
        legacy::import(&mut store)?;
        checkpointer::opened(path);
        store.registered = true;
        Ok(store)
    }

    /// The connection for the busiest writes: inserting tasks, claiming them, recording
    /// how they ended and deleting them. It is the same database with triggers switched
    /// off.
    ///
    /// The statistics triggers cost each inserted row two statements, each claimed row
    /// three WHEN checks and each finished row four statements (and a statement
    /// journal) — most of a no-op task's database time. These writes keep the
    /// statistics themselves, once per batch. Nothing else may use this connection: any
    /// other change to `tasks` must go through the triggers.
    pub(crate) fn untracked(&mut self) -> Result<&mut Connection, StoreError> {
        if self.untracked.is_none() {
            let conn = connect(&self.path)?;
            conn.set_db_config(
                rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_TRIGGER,
                false,
            )
            .context("switch triggers off")?;
            self.untracked = Some(conn);
        }
        Ok(self.untracked.as_mut().expect("opened above"))
    }

    /// The directory holding the database file.
    pub(crate) fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        // Runs before the connections close: when this was the process's last store of
        // the file, the checkpointer's connection goes first, so the last of ours is
        // the file's last and checkpoints and removes the WAL.
        if self.registered {
            checkpointer::closed(&self.path);
        }
    }
}

impl Store for SqliteStore {
    fn schema_version(&self) -> Result<i64, StoreError> {
        self.conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .context("read schema version")
    }

    fn describe(&self) -> String {
        format!("SQLite database {}", self.path.display())
    }

    fn private_files(&self) -> Vec<PathBuf> {
        let name = self.path.file_name().unwrap_or_default().to_string_lossy();
        ["", "-wal", "-shm", "-journal"]
            .iter()
            .map(|suffix| self.path.with_file_name(format!("{name}{suffix}")))
            .collect()
    }
}

impl Leases for SqliteStore {
    fn renew_lease(&mut self, owner: &str, now: i64) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "INSERT INTO owners (id, renewed_at) VALUES (?1, ?2)
                 ON CONFLICT (id) DO UPDATE SET renewed_at = excluded.renewed_at",
            )
            .and_then(|mut s| s.execute(rusqlite::params![owner, now]))
            .context("renew lease")?;
        Ok(())
    }

    fn release_lease(&mut self, owner: &str) -> Result<(), StoreError> {
        self.conn
            .execute("DELETE FROM owners WHERE id = ?1", [owner])
            .context("release lease")?;
        Ok(())
    }
}

/// Opens one connection with stask's settings.
fn connect(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)
        .map_err(|e| error(&format!("open database {}", path.display()), e))?;
    conn.busy_handler(Some(wait_for_lock))
        .context("set busy handler")?;
    // Per connection, before anything that could write.
    conn.pragma_update(None, "synchronous", "NORMAL")
        .context("set synchronous")?;
    // Incremental auto-vacuum can only be chosen before the first table exists; on an
    // existing database the pragma would start a write (existing databases are
    // switched once by their migration, which must VACUUM to do it).
    let pages: i64 = conn
        .pragma_query_value(None, "page_count", |r| r.get(0))
        .context("read the database size")?;
    if pages == 0 {
        conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")
            .context("set auto_vacuum")?;
    }
    conn.pragma_update(None, "journal_mode", "WAL")
        .context("enable WAL")?;
    // The background checkpointer keeps the WAL short; a commit checkpoints by itself
    // only as a safety net, when the WAL has grown far past that.
    conn.pragma_update(None, "wal_autocheckpoint", checkpointer::SAFETY_NET_PAGES)
        .context("set the checkpoint limit")?;
    // A WAL that grew in a burst (a big clean-up, a big result file) shrinks back to
    // this size when it next starts over, so the space goes back to the file system.
    conn.pragma_update(None, "journal_size_limit", 64 << 20)
        .context("set the WAL size limit")?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .context("enable foreign keys")?;
    Ok(conn)
}

/// How long a writer waits for another's lock before giving up with "database is
/// locked".
const LOCK_WAIT: Duration = Duration::from_secs(10);

/// Waits briefly for another connection's lock; `attempt` counts from 0.
///
/// SQLite's own busy timeout sleeps 1, 2, 5, 10 … 100 ms between tries, so a writer
/// that meets the engine's short, frequent transactions (or a CLI's insert) once tends
/// to sleep far longer than the lock is held: with the service and producers writing
/// together, both sides spent most of their time asleep. Short sleeps first keep the
/// wait close to the actual hold time; after 20 ms the steps grow to 1 ms.
fn wait_for_lock(attempt: i32) -> bool {
    const FINE: i32 = 200;
    const FINE_STEP: Duration = Duration::from_micros(100);
    const COARSE_STEP: Duration = Duration::from_millis(1);
    let waited = if attempt < FINE {
        FINE_STEP * attempt as u32
    } else {
        FINE_STEP * FINE as u32 + COARSE_STEP * (attempt - FINE) as u32
    };
    if waited >= lock_wait() {
        return false;
    }
    std::thread::sleep(if attempt < FINE {
        FINE_STEP
    } else {
        COARSE_STEP
    });
    true
}

/// [`LOCK_WAIT`], or `STASK_LOCK_WAIT_MS` when set (tests of what happens when the wait
/// runs out use a short one).
fn lock_wait() -> Duration {
    static WAIT: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();
    *WAIT.get_or_init(|| {
        std::env::var("STASK_LOCK_WAIT_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map_or(LOCK_WAIT, Duration::from_millis)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_timeouts_and_full_disks_are_transient_and_bugs_are_not() {
        let failure = |code| rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None);
        let busy = error("claim tasks", failure(rusqlite::ffi::SQLITE_BUSY));
        assert_eq!(busy.kind(), ErrorKind::Busy);
        assert!(busy.is_transient());
        assert!(busy.to_string().contains("try again"), "{busy}");
        let full = error("claim tasks", failure(rusqlite::ffi::SQLITE_FULL));
        assert_eq!(full.kind(), ErrorKind::DiskFull);
        assert!(full.is_transient() && full.to_string().contains("disk space"));
        assert!(error("x", failure(rusqlite::ffi::SQLITE_IOERR)).is_transient());
        let bug = error("x", rusqlite::Error::InvalidQuery);
        assert!(!bug.is_transient());
        let corrupt = error("x", failure(rusqlite::ffi::SQLITE_CORRUPT));
        assert!(!corrupt.is_transient());
    }

    #[test]
    fn a_writer_waits_for_another_connections_lock_instead_of_failing() {
        use crate::TaskQueue;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stask.db");
        let mut s = SqliteStore::open(&path).unwrap();
        let (locked_tx, locked_rx) = std::sync::mpsc::channel();
        let holder = std::thread::spawn(move || {
            let mut other = SqliteStore::open(&path).unwrap();
            let tx = other
                .conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .unwrap();
            locked_tx.send(()).unwrap();
            std::thread::sleep(Duration::from_millis(300));
            tx.commit().unwrap();
        });
        locked_rx.recv().unwrap();
        let t = crate::conformance::task("w", 0);
        let ids = s
            .insert_tasks(&t, 2, &crate::conformance::line("pending", "created"))
            .unwrap();
        assert_eq!(ids.len(), 2);
        holder.join().unwrap();
    }
}
