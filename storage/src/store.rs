//! Opening the database and the error type shared by every operation.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::Connection;

use crate::migrations;

/// A connection to the stask database.
///
/// One `Store` per thread; SQLite in WAL mode lets several processes (the service, CLI
/// commands) share the file, and a busy handler makes a writer wait for another instead
/// of failing.
pub struct Store {
    pub(crate) conn: Connection,
    /// A second connection to the same file with triggers switched off, opened on
    /// first use, for the busiest writes only (see [`Store::untracked`]).
    untracked: Option<Connection>,
    path: PathBuf,
}

/// A storage failure, with the operation that failed.
#[derive(Debug)]
pub struct StoreError {
    context: String,
    source: rusqlite::Error,
}

impl StoreError {
    pub(crate) fn new(context: impl Into<String>, source: rusqlite::Error) -> Self {
        StoreError {
            context: context.into(),
            source,
        }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.context, self.source)
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Adds the operation's name to a rusqlite error.
pub(crate) trait Context<T> {
    fn context(self, what: &str) -> Result<T, StoreError>;
}

impl<T> Context<T> for Result<T, rusqlite::Error> {
    fn context(self, what: &str) -> Result<T, StoreError> {
        self.map_err(|e| StoreError::new(what, e))
    }
}

impl Store {
    /// Opens (creating if needed) the database at `path` and brings its schema up to
    /// date.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let conn = connect(path)?;
        let mut store = Store {
            conn,
            untracked: None,
            path: path.to_path_buf(),
        };
        migrations::migrate(&mut store.conn)?;
        Ok(store)
    }

    /// The connection for the busiest writes: inserting tasks, claiming them and
    /// recording how they ended. It is the same database with triggers switched off.
    ///
    /// The statistics triggers cost each inserted row two statements, each claimed row
    /// three WHEN checks and each finished row four statements (and a statement
    /// journal) — most of a no-op task's database time. These writes keep the
    /// statistics themselves, once per batch: [`Store::insert_tasks`] counts its rows
    /// (they share worker and creation time), a claim changes no statistic (running
    /// tasks are counted as pending), and [`Store::finish_tasks`] counts its batch from
    /// the updated rows. Nothing else may use this connection: any other change to
    /// `tasks` must go through the triggers.
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

    /// The schema version the database is at.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        self.conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .context("read schema version")
    }
}

/// Opens one connection with stask's settings.
fn connect(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)
        .map_err(|e| StoreError::new(format!("open database {}", path.display()), e))?;
    conn.busy_handler(Some(wait_for_lock))
        .context("set busy handler")?;
    // WAL lets readers run beside the single writer; NORMAL syncs at checkpoints,
    // which is durable across process crashes (the case that matters here).
    conn.pragma_update(None, "journal_mode", "WAL")
        .context("enable WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")
        .context("set synchronous")?;
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
    if waited >= LOCK_WAIT {
        return false;
    }
    std::thread::sleep(if attempt < FINE {
        FINE_STEP
    } else {
        COARSE_STEP
    });
    true
}

/// Milliseconds since the Unix epoch: the unit of every timestamp in the database.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
