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
///
/// ```
/// use stask_plugin_api::prelude::*;
///
/// /// Adds two numbers from the task data.
/// struct Adder;
///
/// impl Worker for Adder {
///     fn manifest(&self) -> WorkerManifest {
///         WorkerManifest::new("adder", "Adder")
///             .action(ActionSpec::new("add", "Add").description("Data: {\"a\": 1, \"b\": 2}"))
///     }
///
///     fn run(&self, _ctx: &Context<'_>, action: &str, input: Input) -> Result<Value, Error> {
///         match action {
///             "add" => Ok(json!(input.data_u64_or("a", 0)? + input.data_u64_or("b", 0)?)),
///             other => Err(Error::new(format!("unknown action '{other}'"))),
///         }
///     }
/// }
///
/// // In the worker's cdylib crate: stask_plugin_api::export_workers![Adder];
/// let out = stask_plugin_api::testing::TestRun::new(&Adder, "add")
///     .data(json!({ "a": 2, "b": 3 }))
///     .run();
/// assert_eq!(out.result, Ok(json!(5)));
/// ```
pub trait Worker: Send + Sync + 'static {
    /// Describes the worker. Called when the library is discovered and before runs; keep
    /// it cheap and deterministic.
    ///
    /// ```
    /// # use stask_plugin_api::prelude::*;
    /// # struct Mailer;
    /// # impl Worker for Mailer {
    /// fn manifest(&self) -> WorkerManifest {
    ///     WorkerManifest::new("mailer", "Newsletter")
    ///         .icon("mail")
    ///         .version(env!("CARGO_PKG_VERSION"))
    ///         .action(ActionSpec::new("send", "Send the newsletter"))
    ///         .setting(SettingSpec::integer("batch_size", "Batch size").default(100))
    /// }
    /// #     fn run(&self, _: &Context<'_>, _: &str, _: Input) -> Result<Value, Error> {
    /// #         Ok(Value::Null)
    /// #     }
    /// # }
    /// assert!(Mailer.manifest().validate().is_ok());
    /// ```
    fn manifest(&self) -> WorkerManifest;

    /// Runs `action` (always one the manifest declares) with the task's input.
    ///
    /// Returns the task's result (any JSON value; `Value::Null` for none) or an
    /// [`Error`] whose message operators will read. A panic is caught and reported as an
    /// error too, but a clear error is kinder.
    ///
    /// ```
    /// # use stask_plugin_api::prelude::*;
    /// # use stask_plugin_api::testing::TestRun;
    /// # struct Greeter;
    /// # impl Worker for Greeter {
    /// #     fn manifest(&self) -> WorkerManifest {
    /// #         WorkerManifest::new("greeter", "Greeter").action(ActionSpec::new("greet", "Greet"))
    /// #     }
    /// fn run(&self, ctx: &Context<'_>, action: &str, input: Input) -> Result<Value, Error> {
    ///     match action {
    ///         "greet" => {
    ///             let name = input.data_str("name")?;
    ///             ctx.info(&format!("Greeting **{name}**"));
    ///             Ok(json!({ "greeted": name }))
    ///         }
    ///         other => Err(Error::new(format!("unknown action '{other}'"))),
    ///     }
    /// }
    /// # }
    /// let out = TestRun::new(&Greeter, "greet").data(json!({ "name": "Ada" })).run();
    /// assert_eq!(out.result, Ok(json!({ "greeted": "Ada" })));
    /// ```
    fn run(&self, ctx: &Context<'_>, action: &str, input: Input) -> Result<Value, Error>;
}

/// What a run receives: the task's data and the worker's settings (defaults filled in,
/// secrets included).
///
/// In tests you can build one directly; in a run the SDK builds it from what the host
/// passes.
///
/// ```
/// use stask_plugin_api::prelude::*;
///
/// let input = Input {
///     data: json!({ "file": "products.csv", "limit": 10 }).as_object().unwrap().clone(),
///     settings: json!({ "dry_run": true }).as_object().unwrap().clone(),
/// };
/// assert_eq!(input.data_str("file").unwrap(), "products.csv");
/// assert_eq!(input.data_u64_or("limit", 100).unwrap(), 10);
/// assert!(input.setting_bool_or("dry_run", false));
/// ```
#[derive(Debug, Clone, Default)]
pub struct Input {
    /// The task's input data, always a JSON object.
    pub data: Map<String, Value>,
    /// The worker's settings, validated against its schema.
    pub settings: Map<String, Value>,
}

impl Input {
    /// A required string field of the task data, or an error naming it.
    ///
    /// ```
    /// # use stask_plugin_api::prelude::*;
    /// # let input = Input { data: json!({ "file": "a.csv", "n": 3 }).as_object().unwrap().clone(), settings: json!({}).as_object().unwrap().clone() };
    /// assert_eq!(input.data_str("file")?, "a.csv");
    /// assert_eq!(input.data_str("path").unwrap_err().message(), "task data is missing the 'path' field");
    /// assert!(input.data_str("n").is_err()); // not a string
    /// # Ok::<(), Error>(())
    /// ```
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
    ///
    /// ```
    /// # use stask_plugin_api::prelude::*;
    /// # let input = Input { data: json!({ "n": 3, "bad": -1 }).as_object().unwrap().clone(), settings: json!({}).as_object().unwrap().clone() };
    /// assert_eq!(input.data_u64_or("n", 10)?, 3);
    /// assert_eq!(input.data_u64_or("missing", 10)?, 10);
    /// assert!(input.data_u64_or("bad", 10).is_err()); // negative
    /// # Ok::<(), Error>(())
    /// ```
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
    ///
    /// ```
    /// # use stask_plugin_api::prelude::*;
    /// # let input = Input { data: json!({ "note": "hi", "empty": null }).as_object().unwrap().clone(), settings: json!({}).as_object().unwrap().clone() };
    /// assert_eq!(input.data_str_opt("note")?, Some("hi"));
    /// assert_eq!(input.data_str_opt("empty")?, None);
    /// assert_eq!(input.data_str_opt("missing")?, None);
    /// # Ok::<(), Error>(())
    /// ```
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
    ///
    /// ```
    /// # use stask_plugin_api::prelude::*;
    /// # let input = Input { data: json!({ "force": true, "bad": "yes" }).as_object().unwrap().clone(), settings: json!({}).as_object().unwrap().clone() };
    /// assert!(input.data_bool_or("force", false)?);
    /// assert!(!input.data_bool_or("missing", false)?);
    /// assert!(input.data_bool_or("bad", false).is_err());
    /// # Ok::<(), Error>(())
    /// ```
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
    ///
    /// ```
    /// # use stask_plugin_api::prelude::*;
    /// # let input = Input { data: json!({}).as_object().unwrap().clone(), settings: json!({ "sender": "news@example.com" }).as_object().unwrap().clone() };
    /// assert_eq!(input.setting_str("sender"), Some("news@example.com"));
    /// assert_eq!(input.setting_str("reply_to"), None);
    /// ```
    pub fn setting_str(&self, key: &str) -> Option<&str> {
        self.settings.get(key).and_then(Value::as_str)
    }

    /// An integer setting (defaults applied), or `default`.
    ///
    /// ```
    /// # use stask_plugin_api::prelude::*;
    /// # let input = Input { data: json!({}).as_object().unwrap().clone(), settings: json!({ "batch_size": 50 }).as_object().unwrap().clone() };
    /// assert_eq!(input.setting_u64_or("batch_size", 100), 50);
    /// assert_eq!(input.setting_u64_or("retries", 3), 3);
    /// ```
    pub fn setting_u64_or(&self, key: &str, default: u64) -> u64 {
        self.settings
            .get(key)
            .and_then(Value::as_u64)
            .unwrap_or(default)
    }

    /// A boolean setting (defaults applied), or `default`.
    ///
    /// ```
    /// # use stask_plugin_api::prelude::*;
    /// # let input = Input { data: json!({}).as_object().unwrap().clone(), settings: json!({ "dry_run": true }).as_object().unwrap().clone() };
    /// assert!(input.setting_bool_or("dry_run", false));
    /// assert!(!input.setting_bool_or("verbose", false));
    /// ```
    pub fn setting_bool_or(&self, key: &str, default: bool) -> bool {
        self.settings
            .get(key)
            .and_then(Value::as_bool)
            .unwrap_or(default)
    }

    /// The whole task data deserialized into `T`.
    ///
    /// Derive `serde::Deserialize` for `T` (add `serde = { version = "1", features =
    /// ["derive"] }` to your dependencies); errors name the field.
    ///
    /// ```
    /// # use stask_plugin_api::prelude::*;
    /// # use serde::Deserialize;
    /// #[derive(Debug, Deserialize)]
    /// struct Import {
    ///     file: String,
    ///     #[serde(default)]
    ///     limit: Option<u32>,
    /// }
    ///
    /// # let input = Input { data: json!({ "file": "a.csv" }).as_object().unwrap().clone(), ..Input::default() };
    /// let import: Import = input.data_as()?;
    /// assert_eq!((import.file.as_str(), import.limit), ("a.csv", None));
    /// # let bad = Input { data: json!({ "limit": 1 }).as_object().unwrap().clone(), ..Input::default() };
    /// # assert!(bad.data_as::<Import>().unwrap_err().message().contains("file"));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn data_as<T: DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_value(Value::Object(self.data.clone()))
            .map_err(|e| Error::new(format!("invalid task data: {e}")))
    }

    /// A setting's value (defaults already applied), if set.
    ///
    /// ```
    /// # use stask_plugin_api::prelude::*;
    /// # let input = Input { data: json!({}).as_object().unwrap().clone(), settings: json!({ "rate": 2.5 }).as_object().unwrap().clone() };
    /// assert_eq!(input.setting("rate").and_then(Value::as_f64), Some(2.5));
    /// assert!(input.setting("missing").is_none());
    /// ```
    pub fn setting(&self, key: &str) -> Option<&Value> {
        self.settings.get(key)
    }
}

/// An action's failure, with a message for operators.
///
/// The message is what operators read in the task's error: say what was wrong and what
/// to do. `?` converts `String`, `&str`, [`std::io::Error`] and [`serde_json::Error`]
/// into it.
///
/// ```
/// use stask_plugin_api::Error;
///
/// fn read_config(path: &str) -> Result<String, Error> {
///     if path.is_empty() {
///         return Err(Error::new("no configuration file given; set the 'config' field"));
///     }
///     Ok(std::fs::read_to_string(path)?) // an io::Error becomes an Error
/// }
///
/// assert!(read_config("").unwrap_err().message().starts_with("no configuration file"));
/// assert!(read_config("/nonexistent/stask.conf").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    message: String,
}

impl Error {
    /// An error with this message.
    ///
    /// ```
    /// # use stask_plugin_api::Error;
    /// let e = Error::new(format!("products file '{}' does not exist", "x.csv"));
    /// assert_eq!(e.to_string(), "products file 'x.csv' does not exist");
    /// ```
    pub fn new(message: impl Into<String>) -> Self {
        Error {
            message: message.into(),
        }
    }

    /// The error returned by [`Context::check_cancelled`].
    ///
    /// ```
    /// # use stask_plugin_api::Error;
    /// assert_eq!(Error::cancelled().message(), "cancelled");
    /// ```
    pub fn cancelled() -> Self {
        Error::new("cancelled")
    }

    /// The message.
    ///
    /// ```
    /// # use stask_plugin_api::Error;
    /// let e: Error = "disk full".into();
    /// assert_eq!(e.message(), "disk full");
    /// ```
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
///
/// ```
/// use stask_plugin_api::Level;
///
/// assert!(Level::Error > Level::Warn);
/// assert_eq!(Level::Warn.as_str(), "warn");
/// ```
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
    /// The ABI code (see [`crate::abi::level`]).
    ///
    /// ```
    /// # use stask_plugin_api::{abi::level, Level};
    /// assert_eq!(Level::Warn.code(), level::WARN);
    /// ```
    pub fn code(self) -> u8 {
        match self {
            Level::Debug => level::DEBUG,
            Level::Info => level::INFO,
            Level::Warn => level::WARN,
            Level::Error => level::ERROR,
        }
    }

    /// From an ABI code; unknown codes (from a newer SDK) read as `Info`.
    ///
    /// ```
    /// # use stask_plugin_api::Level;
    /// assert_eq!(Level::from_code(3), Level::Error);
    /// assert_eq!(Level::from_code(200), Level::Info);
    /// ```
    pub fn from_code(code: u8) -> Self {
        match code {
            level::DEBUG => Level::Debug,
            level::WARN => Level::Warn,
            level::ERROR => Level::Error,
            _ => Level::Info,
        }
    }

    /// Lowercase name.
    ///
    /// ```
    /// # use stask_plugin_api::Level;
    /// assert_eq!(Level::Debug.as_str(), "debug");
    /// ```
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
///
/// The SDK passes one to [`Worker::run`]; in unit tests [`TestRun`](crate::testing::TestRun)
/// records what the worker reports through it. It is neither `Send` nor `Sync`: report
/// from the thread that called `run`.
///
/// ```
/// # use stask_plugin_api::prelude::*;
/// # use stask_plugin_api::testing::TestRun;
/// # struct Example;
/// # impl Worker for Example {
/// #     fn manifest(&self) -> WorkerManifest {
/// #         WorkerManifest::new("example", "Example").action(ActionSpec::new("run", "Run"))
/// #     }
/// fn run(&self, ctx: &Context<'_>, _action: &str, input: Input) -> Result<Value, Error> {
///     let n = input.data_u64_or("n", 3)?;
///     ctx.info(&format!("Processing {n} items for task {}", ctx.task_id()));
///     for i in 1..=n {
///         ctx.check_cancelled()?;
///         ctx.progress(i, n, "Processing...");
///     }
///     std::fs::write(ctx.result_dir().join("summary.txt"), format!("{n} items\n"))?;
///     Ok(json!({ "items": n }))
/// }
/// # }
/// # let out = TestRun::new(&Example, "run").run();
/// # assert_eq!(out.result, Ok(json!({ "items": 3 })));
/// # assert_eq!(out.progress().count(), 3);
/// ```
pub struct Context<'a> {
    raw: RunContextRef<'a>,
    /// Where `enqueue` goes instead of the host's service (the test harness).
    enqueue_to: Option<&'a EnqueueHook<'a>>,
}

/// What the test harness puts in place of the host's enqueue service.
pub(crate) type EnqueueHook<'a> = dyn Fn(&str, &str, &str) -> Result<u64, String> + 'a;

impl<'a> Context<'a> {
    /// Wraps the raw ABI context (used by the export glue and the test harness).
    #[doc(hidden)]
    pub fn from_raw(raw: RunContextRef<'a>) -> Self {
        Context {
            raw,
            enqueue_to: None,
        }
    }

    /// The same with enqueue requests going to `hook` (the test harness).
    pub(crate) fn with_enqueue(raw: RunContextRef<'a>, hook: &'a EnqueueHook<'a>) -> Self {
        Context {
            raw,
            enqueue_to: Some(hook),
        }
    }

    /// Reports that `processed` of `total` items are done. Call it as often as once per
    /// item: the host keeps the log bounded and the call costs nanoseconds.
    ///
    /// ```
    /// # use stask_plugin_api::prelude::*;
    /// # use stask_plugin_api::testing::TestRun;
    /// # struct Example;
    /// # impl Worker for Example {
    /// #     fn manifest(&self) -> WorkerManifest {
    /// #         WorkerManifest::new("example", "Example").action(ActionSpec::new("run", "Run"))
    /// #     }
    /// fn run(&self, ctx: &Context<'_>, _action: &str, input: Input) -> Result<Value, Error> {
    ///     for (i, item) in ["a", "b"].iter().enumerate() {
    ///         ctx.progress(i as u64 + 1, 2, &format!("Imported {item}"));
    ///     }
    ///     Ok(Value::Null)
    /// }
    /// # }
    /// # let out = TestRun::new(&Example, "run").run();
    /// # assert_eq!(out.progress().last(), Some((2, 2, "Imported b")));
    /// ```
    pub fn progress(&self, processed: u64, total: u64, message: &str) {
        self.raw.progress(processed, total, RStr::from_str(message));
    }

    /// Writes a message to the task's log. `**bold**` is rendered by the web interface;
    /// nothing else is interpreted.
    ///
    /// ```
    /// # use stask_plugin_api::prelude::*;
    /// # use stask_plugin_api::testing::TestRun;
    /// # struct Example;
    /// # impl Worker for Example {
    /// #     fn manifest(&self) -> WorkerManifest {
    /// #         WorkerManifest::new("example", "Example").action(ActionSpec::new("run", "Run"))
    /// #     }
    /// fn run(&self, ctx: &Context<'_>, _action: &str, input: Input) -> Result<Value, Error> {
    ///     ctx.log(Level::Warn, "Skipped **3** rows without a price");
    ///     Ok(Value::Null)
    /// }
    /// # }
    /// # let out = TestRun::new(&Example, "run").run();
    /// # assert_eq!(out.logs().next(), Some((Level::Warn, "Skipped **3** rows without a price")));
    /// ```
    pub fn log(&self, level: Level, message: &str) {
        self.raw.log(level.code(), RStr::from_str(message));
    }

    /// Logs at info level.
    ///
    /// ```
    /// # use stask_plugin_api::prelude::*;
    /// # use stask_plugin_api::testing::TestRun;
    /// # struct Example;
    /// # impl Worker for Example {
    /// #     fn manifest(&self) -> WorkerManifest {
    /// #         WorkerManifest::new("example", "Example").action(ActionSpec::new("run", "Run"))
    /// #     }
    /// fn run(&self, ctx: &Context<'_>, _action: &str, input: Input) -> Result<Value, Error> {
    ///     ctx.info("Starting the import");
    ///     Ok(Value::Null)
    /// }
    /// # }
    /// # let out = TestRun::new(&Example, "run").run();
    /// # assert_eq!(out.logs().next(), Some((Level::Info, "Starting the import")));
    /// ```
    pub fn info(&self, message: &str) {
        self.log(Level::Info, message);
    }

    /// Logs at warn level.
    ///
    /// ```
    /// # use stask_plugin_api::prelude::*;
    /// # use stask_plugin_api::testing::TestRun;
    /// # struct Example;
    /// # impl Worker for Example {
    /// #     fn manifest(&self) -> WorkerManifest {
    /// #         WorkerManifest::new("example", "Example").action(ActionSpec::new("run", "Run"))
    /// #     }
    /// fn run(&self, ctx: &Context<'_>, _action: &str, input: Input) -> Result<Value, Error> {
    ///     ctx.warn("The feed was empty; nothing to do");
    ///     Ok(Value::Null)
    /// }
    /// # }
    /// # let out = TestRun::new(&Example, "run").run();
    /// # assert_eq!(out.logs().next().unwrap().0, Level::Warn);
    /// ```
    pub fn warn(&self, message: &str) {
        self.log(Level::Warn, message);
    }

    /// Logs at error level.
    ///
    /// ```
    /// # use stask_plugin_api::prelude::*;
    /// # use stask_plugin_api::testing::TestRun;
    /// # struct Example;
    /// # impl Worker for Example {
    /// #     fn manifest(&self) -> WorkerManifest {
    /// #         WorkerManifest::new("example", "Example").action(ActionSpec::new("run", "Run"))
    /// #     }
    /// fn run(&self, ctx: &Context<'_>, _action: &str, input: Input) -> Result<Value, Error> {
    ///     ctx.error("Row 17: price is not a number");
    ///     Ok(Value::Null)
    /// }
    /// # }
    /// # let out = TestRun::new(&Example, "run").run();
    /// # assert_eq!(out.logs().next().unwrap().0, Level::Error);
    /// ```
    pub fn error(&self, message: &str) {
        self.log(Level::Error, message);
    }

    /// Logs at debug level.
    ///
    /// ```
    /// # use stask_plugin_api::prelude::*;
    /// # use stask_plugin_api::testing::TestRun;
    /// # struct Example;
    /// # impl Worker for Example {
    /// #     fn manifest(&self) -> WorkerManifest {
    /// #         WorkerManifest::new("example", "Example").action(ActionSpec::new("run", "Run"))
    /// #     }
    /// fn run(&self, ctx: &Context<'_>, _action: &str, input: Input) -> Result<Value, Error> {
    ///     ctx.debug("Connected to the feed in 12 ms");
    ///     Ok(Value::Null)
    /// }
    /// # }
    /// # let out = TestRun::new(&Example, "run").run();
    /// # assert_eq!(out.logs().next().unwrap().0, Level::Debug);
    /// ```
    pub fn debug(&self, message: &str) {
        self.log(Level::Debug, message);
    }

    /// True once an operator cancelled the task.
    ///
    /// ```
    /// # use stask_plugin_api::prelude::*;
    /// # use stask_plugin_api::testing::TestRun;
    /// # struct Example;
    /// # impl Worker for Example {
    /// #     fn manifest(&self) -> WorkerManifest {
    /// #         WorkerManifest::new("example", "Example").action(ActionSpec::new("run", "Run"))
    /// #     }
    /// fn run(&self, ctx: &Context<'_>, _action: &str, input: Input) -> Result<Value, Error> {
    ///     let mut done = 0;
    ///     while !ctx.is_cancelled() && done < 100 {
    ///         done += 1;
    ///         ctx.progress(done, 100, "Working");
    ///     }
    ///     Ok(json!({ "done": done }))
    /// }
    /// # }
    /// # let out = TestRun::new(&Example, "run").cancel_after_progress(2).run();
    /// # assert_eq!(out.result, Ok(json!({ "done": 2 })));
    /// ```
    pub fn is_cancelled(&self) -> bool {
        self.raw.is_cancelled()
    }

    /// `Err(Error::cancelled())` once the task was cancelled, for use with `?` in loops.
    ///
    /// ```
    /// # use stask_plugin_api::prelude::*;
    /// # use stask_plugin_api::testing::TestRun;
    /// # struct Example;
    /// # impl Worker for Example {
    /// #     fn manifest(&self) -> WorkerManifest {
    /// #         WorkerManifest::new("example", "Example").action(ActionSpec::new("run", "Run"))
    /// #     }
    /// fn run(&self, ctx: &Context<'_>, _action: &str, input: Input) -> Result<Value, Error> {
    ///     for i in 1..=100 {
    ///         ctx.check_cancelled()?;
    ///         ctx.progress(i, 100, "Working");
    ///     }
    ///     Ok(Value::Null)
    /// }
    /// # }
    /// # let out = TestRun::new(&Example, "run").cancel_after_progress(2).run();
    /// # assert_eq!(out.result, Err("cancelled".to_owned()));
    /// ```
    pub fn check_cancelled(&self) -> Result<(), Error> {
        if self.is_cancelled() {
            Err(Error::cancelled())
        } else {
            Ok(())
        }
    }

    /// The task's id.
    ///
    /// ```
    /// # use stask_plugin_api::prelude::*;
    /// # use stask_plugin_api::testing::TestRun;
    /// # struct Example;
    /// # impl Worker for Example {
    /// #     fn manifest(&self) -> WorkerManifest {
    /// #         WorkerManifest::new("example", "Example").action(ActionSpec::new("run", "Run"))
    /// #     }
    /// fn run(&self, ctx: &Context<'_>, _action: &str, input: Input) -> Result<Value, Error> {
    ///     ctx.info(&format!("Task {} starting", ctx.task_id()));
    ///     Ok(json!(ctx.task_id()))
    /// }
    /// # }
    /// # let out = TestRun::new(&Example, "run").task_id(42).run();
    /// # assert_eq!(out.result, Ok(json!(42)));
    /// ```
    pub fn task_id(&self) -> u64 {
        self.raw.task_id()
    }

    /// The directory for this task's result files (it exists). Operators can list and
    /// download what you write there.
    ///
    /// ```
    /// # use stask_plugin_api::prelude::*;
    /// # use stask_plugin_api::testing::TestRun;
    /// # struct Example;
    /// # impl Worker for Example {
    /// #     fn manifest(&self) -> WorkerManifest {
    /// #         WorkerManifest::new("example", "Example").action(ActionSpec::new("run", "Run"))
    /// #     }
    /// fn run(&self, ctx: &Context<'_>, _action: &str, input: Input) -> Result<Value, Error> {
    ///     let report = ctx.result_dir().join("report.csv");
    ///     std::fs::write(&report, "sku,price\\nA1,9.90\\n")?;
    ///     Ok(json!({ "file": "report.csv" }))
    /// }
    /// # }
    /// # let out = TestRun::new(&Example, "run").run();
    /// # assert!(std::fs::read_to_string(out.result_file("report.csv")).unwrap().starts_with("sku,price"));
    /// ```
    pub fn result_dir(&self) -> PathBuf {
        PathBuf::from(self.raw.result_dir().as_str())
    }

    /// Creates a follow-up task: `action` of `worker` with `data` (a JSON object),
    /// recorded as a child of this task, and returns its id. It is created as an
    /// operator's task would be (the same checks of worker, action and data; the
    /// action's default unique key applies, so the id may be that of a matching task
    /// already waiting) and runs on its own, whatever becomes of this one: a retried
    /// attempt enqueues again, so make follow-ups idempotent or give them a unique key.
    ///
    /// The worker must declare the target in its manifest with
    /// [`WorkerManifest::enqueues`]; anything else is refused, and the refusal is written
    /// to this task's log. One attempt may enqueue at most
    /// [`MAX_PER_ATTEMPT`](crate::enqueue::MAX_PER_ATTEMPT) tasks.
    ///
    /// ```
    /// # use stask_plugin_api::prelude::*;
    /// # use stask_plugin_api::testing::TestRun;
    /// struct Feed;
    /// impl Worker for Feed {
    ///     fn manifest(&self) -> WorkerManifest {
    ///         WorkerManifest::new("feed", "Feed")
    ///             .action(ActionSpec::new("fetch", "Fetch"))
    ///             .enqueues("mailer/send")
    ///     }
    ///     fn run(&self, ctx: &Context<'_>, _action: &str, _input: Input) -> Result<Value, Error> {
    ///         let id = ctx.enqueue("mailer", "send", json!({ "to": "ops@example.com" }))?;
    ///         ctx.info(&format!("Mail queued as task #{id}"));
    ///         // Not declared: refused with a clear error.
    ///         let refused = ctx.enqueue("feed", "purge", json!({})).unwrap_err();
    ///         assert!(refused.message().contains("may not enqueue 'feed/purge'"));
    ///         Ok(json!({ "mail": id }))
    ///     }
    /// }
    ///
    /// let out = TestRun::new(&Feed, "fetch").run();
    /// assert_eq!(out.enqueued().len(), 1);
    /// assert_eq!(out.enqueued()[0].target(), "mailer/send");
    /// assert_eq!(out.result, Ok(json!({ "mail": out.enqueued()[0].id })));
    /// ```
    pub fn enqueue(&self, worker: &str, action: &str, data: Value) -> Result<u64, Error> {
        let text = serde_json::to_string(&data)?;
        if let Some(hook) = self.enqueue_to {
            return hook(worker, action, &text).map_err(Error::new);
        }
        let Some(enqueue) = crate::export::host_enqueue() else {
            return Err(Error::new(crate::abi::ENQUEUE_UNSUPPORTED));
        };
        enqueue(
            self.task_id(),
            RStr::from_str(worker),
            RStr::from_str(action),
            RStr::from_str(&text),
        )
        .into_result()
        .map_err(|e| Error::new(e.into_string()))
    }
}
