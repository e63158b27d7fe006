//! Opening the database and the error type shared by every operation.

use std::fmt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::Connection;

use crate::migrations;

/// A connection to the stask database.
///
/// One `Store` per thread; SQLite in WAL mode lets several processes (the service, CLI
/// commands) share the file, and `busy_timeout` makes a writer wait for another instead
/// of failing.
pub struct Store {
    pub(crate) conn: Connection,
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
        let conn = Connection::open(path)
            .map_err(|e| StoreError::new(format!("open database {}", path.display()), e))?;
        conn.busy_timeout(Duration::from_secs(10))
            .context("set busy timeout")?;
        // WAL lets readers run beside the single writer; NORMAL syncs at checkpoints,
        // which is durable across process crashes (the case that matters here).
        conn.pragma_update(None, "journal_mode", "WAL")
            .context("enable WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .context("set synchronous")?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .context("enable foreign keys")?;
        let mut store = Store { conn };
        migrations::migrate(&mut store.conn)?;
        Ok(store)
    }

    /// The schema version the database is at.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        self.conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .context("read schema version")
    }
}

/// Milliseconds since the Unix epoch: the unit of every timestamp in the database.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
