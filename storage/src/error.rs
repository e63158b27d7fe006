//! The error every storage operation returns, whatever the backend.

use std::fmt;

/// What kind of failure a [`StoreError`] is, so callers can tell a condition that
/// clears by itself (wait and try again) from one that needs a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Another process holds a lock for longer than the operation waited.
    Busy,
    /// The disk (or the database's quota) is full.
    DiskFull,
    /// Reading or writing the database failed at the operating-system level, or the
    /// connection to a database server was lost.
    Io,
    /// The database was written by a newer stask.
    NewerSchema,
    /// A uniqueness rule refused the change (a name already taken).
    Conflict,
    /// The database cannot be changed here: its file, its directory or the file system
    /// is read-only for this user. Reading works (when the schema is this build's);
    /// changes need write access.
    ReadOnly,
    /// Anything else: a bug, a corrupt database, a refused statement.
    Other,
}

/// A storage failure: the operation that failed and why.
#[derive(Debug)]
pub struct StoreError {
    kind: ErrorKind,
    context: String,
    source: Box<dyn std::error::Error + Send + Sync>,
}

impl StoreError {
    /// An error of `kind` while doing `context`.
    pub fn new(
        kind: ErrorKind,
        context: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        StoreError {
            kind,
            context: context.into(),
            source: source.into(),
        }
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Whether waiting and trying again may succeed: a lock held by another process, a
    /// full disk, an I/O failure or a lost connection. A service backs off and retries
    /// these instead of stopping.
    pub fn is_transient(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::Busy | ErrorKind::DiskFull | ErrorKind::Io
        )
    }

    /// The same error with more context in front (`reading task 5: …`).
    pub fn context(mut self, outer: &str) -> Self {
        self.context = format!("{outer}: {}", self.context);
        self
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.context, self.source)?;
        match self.kind {
            ErrorKind::Busy => write!(
                f,
                " (another process held the database's write lock for too long; try again)"
            ),
            ErrorKind::DiskFull => write!(f, " (free some disk space, then try again)"),
            ErrorKind::ReadOnly => write!(
                f,
                " (the stask home is read-only for this user, and this needs to change it. Run it as the home's owner, or make the home and its database writable: check their permissions, and whether the file system is mounted read-only)"
            ),
            _ => Ok(()),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.source)
    }
}
