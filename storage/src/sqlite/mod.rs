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
//! * Free-text search reads the tasks' distinct texts, with a trigram index, instead of
//!   the task table ([`texts`]); the busiest writes keep them as they keep the statistics.
//! * `auto_vacuum = INCREMENTAL`, so space freed by clean-up can be given back in small
//!   steps ([`crate::TaskQueue::release_space`]).
//! * Checkpoints (copying the WAL into the database file, with its fsyncs) run on a
//!   background thread per process and database ([`checkpointer`]), not inside the
//!   commits of whoever happens to cross the WAL's size limit: an engine's claim must not
//!   wait for the disk.
//! * A database this process cannot write (its file, its directory or the file system
//!   is read-only) is opened read-only: reads work, every change fails
//!   with [`ErrorKind::ReadOnly`], and nothing that would write runs at open (settings,
//!   migrations, the import of older homes' files, the checkpointer).

mod accounts;
mod checkpointer;
mod claim;
#[cfg(test)]
mod conformance_tests;
mod deps;
mod files;
mod finish;
mod hosts;
mod legacy;
mod limits;
mod logs;
mod migrations;
mod queue;
mod registry;
mod schedules;
mod search;
mod stats;
#[cfg(test)]
mod test_support;
mod texts;
mod wakeups;
mod workflows;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

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
    /// the store is fully open; never for a read-only store).
    registered: bool,
    /// Whether the database was opened read-only (this process cannot write it).
    read_only: bool,
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
            rusqlite::ErrorCode::ReadOnly => ErrorKind::ReadOnly,
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
    ///
    /// A database this process cannot write is opened read-only instead: its schema
    /// must then be this build's (it cannot be upgraded), nothing is imported and no
    /// checkpointer runs; reads work and every change fails with
    /// [`ErrorKind::ReadOnly`].
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let (conn, access) = connect(path)?;
        SqliteStore::with_connection(path, conn, access)
    }

    /// The store of `conn`, opened with `access` to the database at `path`.
    fn with_connection(
        path: &Path,
        conn: Connection,
        access: Access,
    ) -> Result<SqliteStore, StoreError> {
        let read_only = access == Access::ReadOnly;
        let mut store = SqliteStore {
            conn,
            untracked: None,
            path: path.to_path_buf(),
            registered: false,
            read_only,
        };
        if read_only {
            check_schema_read_only(&store.conn)?;
            return Ok(store);
        }
        migrations::migrate(&mut store.conn)?;
        // Tasks stored before the text index existed get their texts (once; resumable).
        texts::fill(&mut store.conn)?;
        legacy::import(&mut store)?;
        checkpointer::opened(path);
        store.registered = true;
        Ok(store)
    }

    /// Whether the database was opened read-only: this process cannot write it (its
    /// file, its directory or the file system is read-only).
    pub fn is_read_only(&self) -> bool {
        self.read_only
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
            // A read-only store stays read-only, whatever another open would find.
            let conn = if self.read_only {
                connect_read_only(&self.path)?
            } else {
                connect(&self.path)?.0
            };
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

    fn check_integrity(&self) -> Result<Vec<String>, StoreError> {
        // quick_check: every page, record and index entry readable and consistent, without
        // the slower cross-check of index contents that integrity_check adds. At most 100
        // problems are listed.
        let rows = self
            .conn
            .prepare("PRAGMA quick_check(100)")
            .and_then(|mut s| {
                s.query_map([], |r| r.get::<_, String>(0))?
                    .collect::<rusqlite::Result<Vec<String>>>()
            });
        match rows {
            Ok(rows) => Ok(rows.into_iter().filter(|r| r != "ok").collect()),
            // Damage bad enough that the check cannot even walk the file is its answer.
            Err(rusqlite::Error::SqliteFailure(f, message))
                if matches!(
                    f.code,
                    rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase
                ) =>
            {
                Ok(vec![message.unwrap_or_else(|| f.to_string())])
            }
            Err(e) => Err(error("check database integrity", e)),
        }
    }

    fn swap_worker_settings(&mut self, swaps: &[crate::SettingsSwap]) -> Result<bool, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .context("begin replacing worker settings")?;
        let now = crate::now_ms();
        for swap in swaps {
            let changed = tx
                .execute(
                    "UPDATE workers SET settings = ?3, updated_at = ?4
                     WHERE identifier = ?1 AND settings = ?2",
                    rusqlite::params![swap.identifier, swap.expected, swap.settings, now],
                )
                .context("replace worker settings")?;
            if changed == 0 {
                // Dropping the transaction rolls back what the earlier swaps changed.
                return Ok(false);
            }
        }
        tx.commit().context("commit worker settings")?;
        Ok(true)
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

    fn try_lead(&mut self, owner: &str, now: i64, ttl_ms: i64) -> Result<bool, StoreError> {
        let holder: Option<String> = self
            .conn
            .query_row(
                "INSERT INTO leader (name, holder, expires_at) VALUES ('chores', ?1, ?2)
                 ON CONFLICT (name) DO UPDATE SET holder = excluded.holder,
                     expires_at = excluded.expires_at
                 WHERE leader.holder = excluded.holder OR leader.expires_at < ?3
                 RETURNING holder",
                rusqlite::params![owner, now.saturating_add(ttl_ms), now],
                |r| r.get(0),
            )
            .or_else(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok(None),
                e => Err(e),
            })
            .context("take the leadership")?;
        Ok(holder.as_deref() == Some(owner))
    }

    fn resign(&mut self, owner: &str) -> Result<(), StoreError> {
        self.conn
            .execute("DELETE FROM leader WHERE holder = ?1", [owner])
            .context("give the leadership up")?;
        Ok(())
    }
}

/// How a connection may use the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    ReadWrite,
    ReadOnly,
}

/// Opens one connection with stask's settings; read-only when this process cannot
/// write the database.
///
/// SQLite itself opens a file it cannot write read-only. A writable file in a
/// directory this process cannot write is found out by the first statement: the WAL's
/// shared-memory file (`-shm`) cannot be created (`SQLITE_READONLY_DIRECTORY`). Either
/// way the connection is opened again read-only ([`connect_read_only`]). Whether the
/// file and its directory can be written is left to SQLite to find out: opening (and
/// closing) a descriptor of the database outside SQLite would release the locks other
/// connections of this process hold on it.
fn connect(path: &Path) -> Result<(Connection, Access), StoreError> {
    let conn = Connection::open(path)
        .map_err(|e| error(&format!("open database {}", path.display()), e))?;
    if conn
        .is_readonly(rusqlite::DatabaseName::Main)
        .unwrap_or(false)
    {
        drop(conn);
        return Ok((connect_read_only(path)?, Access::ReadOnly));
    }
    match configure(&conn) {
        Ok(()) => Ok((conn, Access::ReadWrite)),
        Err(e) if e.kind() == ErrorKind::ReadOnly => {
            drop(conn);
            Ok((connect_read_only(path)?, Access::ReadOnly))
        }
        Err(e) => Err(e),
    }
}

/// stask's settings of a read-write connection.
fn configure(conn: &Connection) -> Result<(), StoreError> {
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
    Ok(())
}

/// Opens a read-only connection: no settings that write, every change refused by
/// SQLite (`SQLITE_READONLY`, [`ErrorKind::ReadOnly`]).
///
/// Reading a WAL database needs its shared-memory file (`-shm`). SQLite (since 3.22)
/// reads a read-only database whose `-wal` and `-shm` files exist, or can be created.
/// In a read-only directory (or file system) without them (how a database is left once its last
/// connection has closed) it cannot: then nothing has the database open (an open WAL
/// database always has its `-wal` file), every committed change is in the database
/// file, and it is opened as immutable (read without the WAL and without locks). With a
/// `-wal` (or rollback `-journal`) file but no way to read it, opening fails: the
/// database file alone would be out of date.
fn connect_read_only(path: &Path) -> Result<Connection, StoreError> {
    let what = format!("open database {} read-only", path.display());
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| error(&what, e))?;
    conn.busy_handler(Some(wait_for_lock))
        .context("set busy handler")?;
    // The first read opens the WAL, if the database uses one.
    let first = conn.query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(()));
    let Err(e) = first else {
        return Ok(conn);
    };
    // The shared-memory file cannot be created: SQLITE_READONLY_DIRECTORY /
    // _CANTINIT in a directory this user cannot write, SQLITE_CANTOPEN on a read-only
    // file system.
    let no_shm = matches!(
        &e,
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(f.code, rusqlite::ErrorCode::ReadOnly | rusqlite::ErrorCode::CannotOpen)
    );
    let e = error(&what, e);
    if !no_shm {
        return Err(e);
    }
    drop(conn);
    let beside = |suffix: &str| {
        let mut name = OsString::from(path.as_os_str());
        name.push(suffix);
        PathBuf::from(name)
    };
    for journal in [beside("-wal"), beside("-journal")] {
        if std::fs::symlink_metadata(&journal).is_ok() {
            return Err(StoreError::new(
                ErrorKind::ReadOnly,
                what,
                format!(
                    "changes in '{}' cannot be read without write access to the database's directory ({e})",
                    journal.display()
                ),
            ));
        }
    }
    let conn = Connection::open_with_flags(
        immutable_uri(path),
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| error(&what, e))?;
    conn.query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(()))
        .context(&what)?;
    Ok(conn)
}

/// `file:PATH?immutable=1`, with every byte of the path that is not plainly safe in a
/// URI percent-encoded (so any path, also one that is not UTF-8, names its file).
fn immutable_uri(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt as _;
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut uri = String::from("file:");
    for &b in absolute.as_os_str().as_bytes() {
        if b.is_ascii_alphanumeric() || b"/-._~".contains(&b) {
            uri.push(char::from(b));
        } else {
            uri.push_str(&format!("%{b:02X}"));
        }
    }
    uri.push_str("?immutable=1");
    uri
}

/// A read-only database cannot be migrated: its schema must be this build's.
fn check_schema_read_only(conn: &Connection) -> Result<(), StoreError> {
    let current: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .context("read schema version")?;
    let latest = migrations::LATEST;
    if current > latest {
        return Err(StoreError::new(
            ErrorKind::NewerSchema,
            "open database",
            format!(
                "its schema version {current} is newer than this stask supports ({latest}); upgrade stask"
            ),
        ));
    }
    if current < latest {
        return Err(StoreError::new(
            ErrorKind::ReadOnly,
            "open database",
            format!(
                "its schema version {current} is older than this stask's ({latest}), and a database that cannot be written cannot be upgraded; run any stask command once with write access to upgrade it"
            ),
        ));
    }
    Ok(())
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

    /// A store of `path` opened the way [`connect`] opens one it cannot write.
    fn open_read_only(path: &Path) -> Result<SqliteStore, StoreError> {
        SqliteStore::with_connection(path, connect_read_only(path)?, Access::ReadOnly)
    }

    #[test]
    fn a_read_only_store_reads_and_refuses_changes_saying_the_home_is_read_only() {
        use crate::{Registry, TaskQueue};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stask.db");
        let id = {
            let mut s = SqliteStore::open(&path).unwrap();
            assert!(!s.is_read_only());
            let t = crate::conformance::task("w", 0);
            s.insert_tasks(&t, 1, &crate::conformance::line("pending", "created"))
                .unwrap()[0]
        };
        let mut s = open_read_only(&path).unwrap();
        assert!(s.is_read_only() && !s.registered);
        assert_eq!(s.get_task(id).unwrap().unwrap().worker, "w");
        assert!(s.list_workers().unwrap().is_empty());
        let t = crate::conformance::task("w", 0);
        let e = s
            .insert_tasks(&t, 1, &crate::conformance::line("pending", "created"))
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ReadOnly, "{e}");
        assert!(!e.is_transient());
        let text = e.to_string();
        assert!(
            text.contains("read-only") && text.contains("writable"),
            "{text}"
        );
    }

    #[test]
    fn a_read_only_database_of_another_schema_version_is_refused_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stask.db");
        drop(SqliteStore::open(&path).unwrap());
        let set_version = |v: i64| {
            let conn = Connection::open(&path).unwrap();
            conn.pragma_update(None, "user_version", v).unwrap();
        };
        set_version(migrations::LATEST - 1);
        let e = open_read_only(&path)
            .err()
            .expect("an older schema is refused");
        assert_eq!(e.kind(), ErrorKind::ReadOnly);
        assert!(e.to_string().contains("older"), "{e}");
        assert!(e.to_string().contains("upgrade"), "{e}");
        set_version(migrations::LATEST + 1);
        let e = open_read_only(&path)
            .err()
            .expect("a newer schema is refused");
        assert_eq!(e.kind(), ErrorKind::NewerSchema, "{e}");
        // With write access the older schema is brought up to date, as ever.
        set_version(migrations::LATEST);
        assert!(open_read_only(&path).is_ok());
    }

    #[test]
    fn an_immutable_uri_names_any_path_even_one_that_is_not_utf8() {
        use std::os::unix::ffi::OsStrExt as _;
        let dir = tempfile::tempdir().unwrap();
        let odd = dir
            .path()
            .join(std::ffi::OsStr::from_bytes(b"a b%20c?d#e&\xff"));
        std::fs::create_dir(&odd).unwrap();
        let path = odd.join("stask.db");
        drop(SqliteStore::open(&path).unwrap());
        let uri = immutable_uri(&path);
        assert!(uri.is_ascii() && uri.ends_with("?immutable=1"), "{uri}");
        let conn = Connection::open_with_flags(
            &uri,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI,
        )
        .unwrap();
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, migrations::LATEST);
        // Not another (new, empty) file: nothing was created beside the database.
        let names: Vec<_> = std::fs::read_dir(&odd).unwrap().flatten().collect();
        assert_eq!(names.len(), 1, "{names:?}");
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

    #[test]
    fn the_integrity_check_reports_damaged_pages() {
        use crate::TaskQueue;
        use std::io::{Seek, SeekFrom, Write};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stask.db");
        {
            let mut s = SqliteStore::open(&path).unwrap();
            let mut t = crate::conformance::task("w", 0);
            t.data = format!(r#"{{"filler":"{}"}}"#, "x".repeat(2000));
            s.insert_tasks(&t, 400, &crate::conformance::line("pending", "created"))
                .unwrap();
            assert!(s.check_integrity().unwrap().is_empty());
        }
        // Garbage over a run of pages in the middle of the file (the tasks' pages).
        let len = std::fs::metadata(&path).unwrap().len();
        let mut f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.seek(SeekFrom::Start((len / 2) & !4095)).unwrap();
        f.write_all(&[0xA5; 4096 * 8]).unwrap();
        drop(f);
        let s = SqliteStore::open(&path).unwrap();
        let problems = s.check_integrity().unwrap();
        assert!(!problems.is_empty(), "damage went unnoticed");
    }
}
