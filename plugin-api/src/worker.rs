//! The plain-Rust interface a plugin author implements.

use std::fmt;
use std::path::PathBuf;

use abi_stable::std_types::RStr;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::abi::{level, RunContextRef};
use crate::manifest::WorkerManifest;

/// A task worker. Implement it, then export it with [`export_workers!`](crate::export_workers).
///
/// A runner process runs one task at a time but reuses the instance for later tasks of
/// the same library: keep per-task state on the stack, not in `self`.
pub trait Worker: Send + Sync + 'static {
    /// Describes the worker. Called when the library is discovered and before runs; keep
    /// it cheap and deterministic.
    fn manifest(&self) -> WorkerManifest;

    /// Runs `action` (always one the manifest declares) with the task's input.
    ///
    /// Returns the task's result (any JSON value; `Value::Null` for none) or an
    /// [`Error`] whose message operators will read. A panic is caught and reported as an
    /// error too, but a clear error is kinder.
    fn run(&self, ctx: &Context<'_>, action: &str, input: Input) -> Result<Value, Error>;
}

/// What a run receives: the task's data and the worker's settings (defaults filled in,
/// secrets included).
#[derive(Debug, Clone, Default)]
pub struct Input {
    /// The task's input data, always a JSON object.
    pub data: Map<String, Value>,
    /// The worker's settings, validated against its schema.
    pub settings: Map<String, Value>,
}

impl Input {
    /// A required string field of the task data, or an error naming it.
    pub fn data_str(&self, key: &str) -> Result<&str, Error> {
        match self.data.get(key) {
            Some(Value::String(s)) => Ok(s),
            Some(_) => Err(Error::new(format!(
                "task data field '{key}' must be a string"
            ))),
            None => Err(Error::new(format!(
                "task data is missing the '{key}' field"
            ))),
        }
    }

    /// An optional unsigned integer field of the task data, with a default.
    pub fn data_u64_or(&self, key: &str, default: u64) -> Result<u64, Error> {
        match self.data.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => v.as_u64().ok_or_else(|| {
                Error::new(format!(
                    "task data field '{key}' must be a non-negative integer, got {v}"
                ))
            }),
        }
    }

    /// An optional string field of the task data.
    pub fn data_str_opt(&self, key: &str) -> Result<Option<&str>, Error> {
        match self.data.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(Error::new(format!(
                "task data field '{key}' must be a string, got {other}"
            ))),
        }
    }

    /// An optional boolean field of the task data, with a default.
    pub fn data_bool_or(&self, key: &str, default: bool) -> Result<bool, Error> {
        match self.data.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(other) => Err(Error::new(format!(
                "task data field '{key}' must be true or false, got {other}"
            ))),
        }
    }

    /// A string setting (defaults applied), if set.
    pub fn setting_str(&self, key: &str) -> Option<&str> {
        self.settings.get(key).and_then(Value::as_str)
    }

    /// An integer setting (defaults applied), or `default`.
    pub fn setting_u64_or(&self, key: &str, default: u64) -> u64 {
        self.settings
            .get(key)
            .and_then(Value::as_u64)
            .unwrap_or(default)
    }

    /// A boolean setting (defaults applied), or `default`.
    pub fn setting_bool_or(&self, key: &str, default: bool) -> bool {
        self.settings
            .get(key)
            .and_then(Value::as_bool)
            .unwrap_or(default)
    }

    /// The whole task data deserialized into `T`.
    pub fn data_as<T: DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_value(Value::Object(self.data.clone()))
            .map_err(|e| Error::new(format!("invalid task data: {e}")))
    }

    /// A setting's value (defaults already applied), if set.
    pub fn setting(&self, key: &str) -> Option<&Value> {
        self.settings.get(key)
    }
}

/// An action's failure, with a message for operators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    message: String,
}

impl Error {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        Error {
            message: message.into(),
        }
    }

    /// The error returned by [`Context::check_cancelled`].
    pub fn cancelled() -> Self {
        Error::new("cancelled")
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl From<String> for Error {
    fn from(message: String) -> Self {
        Error { message }
    }
}

impl From<&str> for Error {
    fn from(message: &str) -> Self {
        Error::new(message)
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::new(e.to_string())
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::new(e.to_string())
    }
}

/// Severity of a log message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Verbose diagnostics.
    Debug,
    /// Normal narration.
    Info,
    /// Recovered problems.
    Warn,
    /// Failures.
    Error,
}

impl Level {
    /// The ABI code.
    pub fn code(self) -> u8 {
        match self {
            Level::Debug => level::DEBUG,
            Level::Info => level::INFO,
            Level::Warn => level::WARN,
            Level::Error => level::ERROR,
        }
    }

    /// From an ABI code; unknown codes (from a newer SDK) read as `Info`.
    pub fn from_code(code: u8) -> Self {
        match code {
            level::DEBUG => Level::Debug,
            level::WARN => Level::Warn,
            level::ERROR => Level::Error,
            _ => Level::Info,
        }
    }

    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

/// The running task as seen by the worker: report progress, log, check cancellation.
pub struct Context<'a> {
    raw: RunContextRef<'a>,
}

impl<'a> Context<'a> {
    /// Wraps the raw ABI context (used by the export glue and the test harness).
    #[doc(hidden)]
    pub fn from_raw(raw: RunContextRef<'a>) -> Self {
        Context { raw }
    }

    /// Reports that `processed` of `total` items are done. Call it as often as once per
    /// item: the host keeps the log bounded and the call costs nanoseconds.
    pub fn progress(&self, processed: u64, total: u64, message: &str) {
        self.raw.progress(processed, total, RStr::from_str(message));
    }

    /// Writes a message to the task's log. `**bold**` is rendered by the web interface;
    /// nothing else is interpreted.
    pub fn log(&self, level: Level, message: &str) {
        self.raw.log(level.code(), RStr::from_str(message));
    }

    /// Logs at info level.
    pub fn info(&self, message: &str) {
        self.log(Level::Info, message);
    }

    /// Logs at warn level.
    pub fn warn(&self, message: &str) {
        self.log(Level::Warn, message);
    }

    /// Logs at error level.
    pub fn error(&self, message: &str) {
        self.log(Level::Error, message);
    }

    /// Logs at debug level.
    pub fn debug(&self, message: &str) {
        self.log(Level::Debug, message);
    }

    /// True once an operator cancelled the task.
    pub fn is_cancelled(&self) -> bool {
        self.raw.is_cancelled()
    }

    /// `Err(Error::cancelled())` once the task was cancelled, for use with `?` in loops.
    pub fn check_cancelled(&self) -> Result<(), Error> {
        if self.is_cancelled() {
            Err(Error::cancelled())
        } else {
            Ok(())
        }
    }

    /// The task's id.
    pub fn task_id(&self) -> u64 {
        self.raw.task_id()
    }

    /// The directory for this task's result files (it exists). Operators can list and
    /// download what you write there.
    pub fn result_dir(&self) -> PathBuf {
        PathBuf::from(self.raw.result_dir().as_str())
    }
}
