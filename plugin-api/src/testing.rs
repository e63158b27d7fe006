//! Run a worker's action in-process and record what it reports: unit tests for workers
//! without the host, without building or loading a library.
//!
//! The harness goes through the same path the host does: the manifest is validated,
//! the action must be declared, settings are checked against the schema with defaults
//! filled in, the worker talks to a real ABI context object, panics are caught, and the
//! result crosses as JSON.
//!
//! ```
//! use stask_plugin_api::prelude::*;
//! use stask_plugin_api::testing::TestRun;
//!
//! struct Count;
//! impl Worker for Count {
//!     fn manifest(&self) -> WorkerManifest {
//!         WorkerManifest::new("count", "Count").action(ActionSpec::new("run", "Run"))
//!     }
//!     fn run(&self, ctx: &Context<'_>, _action: &str, input: Input) -> Result<Value, Error> {
//!         let n = input.data_u64_or("n", 3)?;
//!         for i in 1..=n {
//!             ctx.progress(i, n, "counting");
//!         }
//!         Ok(json!({ "counted": n }))
//!     }
//! }
//!
//! let outcome = TestRun::new(&Count, "run").data(json!({ "n": 2 })).run();
//! assert_eq!(outcome.result, Ok(json!({ "counted": 2 })));
//! assert_eq!(outcome.progress().count(), 2);
//! ```

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{RResult, RStr, RString};
use serde_json::{Map, Value};

use crate::abi::{RunContext, RunContextRef, RunContext_TO};
use crate::export::guarded_run;
use crate::worker::{Context, Input, Level, Worker};

/// One thing the worker reported during a run.
///
/// ```
/// # use stask_plugin_api::prelude::*;
/// # use stask_plugin_api::testing::{Event, TestRun};
/// # struct Counter;
/// # impl Worker for Counter {
/// #     fn manifest(&self) -> WorkerManifest {
/// #         WorkerManifest::new("counter", "Counter")
/// #             .action(ActionSpec::new("count", "Count"))
/// #             .setting(SettingSpec::integer("step", "Step").default(1))
/// #     }
/// #     fn run(&self, ctx: &Context<'_>, _: &str, input: Input) -> Result<Value, Error> {
/// #         let n = input.data_u64_or("n", 3)?;
/// #         let step = input.setting_u64_or("step", 1);
/// #         ctx.info(&format!("task {}", ctx.task_id()));
/// #         let mut done = 0;
/// #         while done < n {
/// #             ctx.check_cancelled()?;
/// #             done = (done + step).min(n);
/// #             ctx.progress(done, n, "counting");
/// #         }
/// #         std::fs::write(ctx.result_dir().join("count.txt"), done.to_string())?;
/// #         Ok(json!({ "counted": done }))
/// #     }
/// # }
/// let out = TestRun::new(&Counter, "count").data(json!({ "n": 1 })).run();
/// assert_eq!(
///     out.events,
///     vec![
///         Event::Log { level: Level::Info, message: "task 1".into() },
///         Event::Progress { processed: 1, total: 1, message: "counting".into() },
///     ]
/// );
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A `progress` call.
    Progress {
        /// Items done.
        processed: u64,
        /// Items in all.
        total: u64,
        /// Message.
        message: String,
    },
    /// A log message.
    Log {
        /// Severity.
        level: Level,
        /// Message.
        message: String,
    },
}

/// A follow-up task the worker enqueued ([`Context::enqueue`]); the harness gives them
/// ids counting up from the task's own id.
///
/// ```
/// # use stask_plugin_api::prelude::*;
/// # use stask_plugin_api::testing::TestRun;
/// struct Fan;
/// impl Worker for Fan {
///     fn manifest(&self) -> WorkerManifest {
///         WorkerManifest::new("fan", "Fan")
///             .action(ActionSpec::new("out", "Fan out"))
///             .action(ActionSpec::new("leaf", "Leaf"))
///             .enqueues("fan/leaf")
///     }
///     fn run(&self, ctx: &Context<'_>, action: &str, input: Input) -> Result<Value, Error> {
///         if action == "out" {
///             for i in 0..input.data_u64_or("n", 2)? {
///                 ctx.enqueue("fan", "leaf", json!({ "i": i }))?;
///             }
///         }
///         Ok(Value::Null)
///     }
/// }
///
/// let out = TestRun::new(&Fan, "out").task_id(10).data(json!({ "n": 2 })).run();
/// let ids: Vec<u64> = out.enqueued().iter().map(|e| e.id).collect();
/// assert_eq!(ids, [11, 12]);
/// assert_eq!(out.enqueued()[1].data, json!({ "i": 1 }));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Enqueued {
    /// The id the harness gave it.
    pub id: u64,
    /// Its worker.
    pub worker: String,
    /// Its action.
    pub action: String,
    /// Its data.
    pub data: Value,
}

impl Enqueued {
    /// `worker/action`.
    ///
    /// ```
    /// # use stask_plugin_api::testing::Enqueued;
    /// let e = Enqueued { id: 2, worker: "a".into(), action: "b".into(), data: serde_json::json!({}) };
    /// assert_eq!(e.target(), "a/b");
    /// ```
    pub fn target(&self) -> String {
        format!("{}/{}", self.worker, self.action)
    }
}

/// A configured run of one action. Build it, then call [`TestRun::run`].
///
/// ```
/// # use stask_plugin_api::prelude::*;
/// # use stask_plugin_api::testing::{Event, TestRun};
/// # struct Counter;
/// # impl Worker for Counter {
/// #     fn manifest(&self) -> WorkerManifest {
/// #         WorkerManifest::new("counter", "Counter")
/// #             .action(ActionSpec::new("count", "Count"))
/// #             .setting(SettingSpec::integer("step", "Step").default(1))
/// #     }
/// #     fn run(&self, ctx: &Context<'_>, _: &str, input: Input) -> Result<Value, Error> {
/// #         let n = input.data_u64_or("n", 3)?;
/// #         let step = input.setting_u64_or("step", 1);
/// #         ctx.info(&format!("task {}", ctx.task_id()));
/// #         let mut done = 0;
/// #         while done < n {
/// #             ctx.check_cancelled()?;
/// #             done = (done + step).min(n);
/// #             ctx.progress(done, n, "counting");
/// #         }
/// #         std::fs::write(ctx.result_dir().join("count.txt"), done.to_string())?;
/// #         Ok(json!({ "counted": done }))
/// #     }
/// # }
/// let out = TestRun::new(&Counter, "count")   // worker and action
///     .data(json!({ "n": 4 }))                // task data (a JSON object)
///     .settings(json!({ "step": 2 }))         // operator settings (defaults are added)
///     .task_id(42)                            // what ctx.task_id() returns (default 1)
///     .run();
/// assert_eq!(out.result, Ok(json!({ "counted": 4 })));
/// assert_eq!(out.progress().count(), 2);
/// ```
pub struct TestRun<'w> {
    worker: &'w dyn Worker,
    action: String,
    data: Value,
    settings: Value,
    task_id: u64,
    cancel_after: Option<u64>,
}

/// What a run produced.
///
/// ```
/// # use stask_plugin_api::prelude::*;
/// # use stask_plugin_api::testing::{Event, TestRun};
/// # struct Counter;
/// # impl Worker for Counter {
/// #     fn manifest(&self) -> WorkerManifest {
/// #         WorkerManifest::new("counter", "Counter")
/// #             .action(ActionSpec::new("count", "Count"))
/// #             .setting(SettingSpec::integer("step", "Step").default(1))
/// #     }
/// #     fn run(&self, ctx: &Context<'_>, _: &str, input: Input) -> Result<Value, Error> {
/// #         let n = input.data_u64_or("n", 3)?;
/// #         let step = input.setting_u64_or("step", 1);
/// #         ctx.info(&format!("task {}", ctx.task_id()));
/// #         let mut done = 0;
/// #         while done < n {
/// #             ctx.check_cancelled()?;
/// #             done = (done + step).min(n);
/// #             ctx.progress(done, n, "counting");
/// #         }
/// #         std::fs::write(ctx.result_dir().join("count.txt"), done.to_string())?;
/// #         Ok(json!({ "counted": done }))
/// #     }
/// # }
/// let out = TestRun::new(&Counter, "count").run();
/// assert_eq!(out.result, Ok(json!({ "counted": 3 })));
/// assert_eq!(out.events.len(), 4); // one log line, three progress reports
/// assert!(out.result_file("count.txt").exists());
/// ```
#[derive(Debug)]
pub struct Outcome {
    /// The result, or the error message the host would record.
    pub result: Result<Value, String>,
    /// Everything the worker reported, in order.
    pub events: Vec<Event>,
    /// The result directory the worker could write into (deleted when dropped).
    pub result_dir: tempfile::TempDir,
    enqueued: Vec<Enqueued>,
}

impl<'w> TestRun<'w> {
    /// A run of `action` with empty data and settings.
    ///
    /// ```
    /// # use stask_plugin_api::prelude::*;
    /// # use stask_plugin_api::testing::{Event, TestRun};
    /// # struct Counter;
    /// # impl Worker for Counter {
    /// #     fn manifest(&self) -> WorkerManifest {
    /// #         WorkerManifest::new("counter", "Counter")
    /// #             .action(ActionSpec::new("count", "Count"))
    /// #             .setting(SettingSpec::integer("step", "Step").default(1))
    /// #     }
    /// #     fn run(&self, ctx: &Context<'_>, _: &str, input: Input) -> Result<Value, Error> {
    /// #         let n = input.data_u64_or("n", 3)?;
    /// #         let step = input.setting_u64_or("step", 1);
    /// #         ctx.info(&format!("task {}", ctx.task_id()));
    /// #         let mut done = 0;
    /// #         while done < n {
    /// #             ctx.check_cancelled()?;
    /// #             done = (done + step).min(n);
    /// #             ctx.progress(done, n, "counting");
    /// #         }
    /// #         std::fs::write(ctx.result_dir().join("count.txt"), done.to_string())?;
    /// #         Ok(json!({ "counted": done }))
    /// #     }
    /// # }
    /// let out = TestRun::new(&Counter, "count").run();
    /// assert_eq!(out.result, Ok(json!({ "counted": 3 })));
    /// // An action the manifest does not declare is refused, as the host would:
    /// let out = TestRun::new(&Counter, "fly").run();
    /// assert_eq!(out.result, Err("worker 'counter' has no action 'fly'".to_owned()));
    /// ```
    pub fn new(worker: &'w dyn Worker, action: &str) -> Self {
        TestRun {
            worker,
            action: action.to_owned(),
            data: Value::Object(Map::new()),
            settings: Value::Object(Map::new()),
            task_id: 1,
            cancel_after: None,
        }
    }

    /// Sets the task data (should be a JSON object, as the host requires).
    ///
    /// ```
    /// # use stask_plugin_api::prelude::*;
    /// # use stask_plugin_api::testing::{Event, TestRun};
    /// # struct Counter;
    /// # impl Worker for Counter {
    /// #     fn manifest(&self) -> WorkerManifest {
    /// #         WorkerManifest::new("counter", "Counter")
    /// #             .action(ActionSpec::new("count", "Count"))
    /// #             .setting(SettingSpec::integer("step", "Step").default(1))
    /// #     }
    /// #     fn run(&self, ctx: &Context<'_>, _: &str, input: Input) -> Result<Value, Error> {
    /// #         let n = input.data_u64_or("n", 3)?;
    /// #         let step = input.setting_u64_or("step", 1);
    /// #         ctx.info(&format!("task {}", ctx.task_id()));
    /// #         let mut done = 0;
    /// #         while done < n {
    /// #             ctx.check_cancelled()?;
    /// #             done = (done + step).min(n);
    /// #             ctx.progress(done, n, "counting");
    /// #         }
    /// #         std::fs::write(ctx.result_dir().join("count.txt"), done.to_string())?;
    /// #         Ok(json!({ "counted": done }))
    /// #     }
    /// # }
    /// let out = TestRun::new(&Counter, "count").data(json!({ "n": 5 })).run();
    /// assert_eq!(out.result, Ok(json!({ "counted": 5 })));
    /// let out = TestRun::new(&Counter, "count").data(json!([5])).run();
    /// assert_eq!(out.result, Err("task data must be a JSON object".to_owned()));
    /// ```
    pub fn data(mut self, data: Value) -> Self {
        self.data = data;
        self
    }

    /// Sets the worker settings (validated against the schema when the run starts).
    ///
    /// ```
    /// # use stask_plugin_api::prelude::*;
    /// # use stask_plugin_api::testing::{Event, TestRun};
    /// # struct Counter;
    /// # impl Worker for Counter {
    /// #     fn manifest(&self) -> WorkerManifest {
    /// #         WorkerManifest::new("counter", "Counter")
    /// #             .action(ActionSpec::new("count", "Count"))
    /// #             .setting(SettingSpec::integer("step", "Step").default(1))
    /// #     }
    /// #     fn run(&self, ctx: &Context<'_>, _: &str, input: Input) -> Result<Value, Error> {
    /// #         let n = input.data_u64_or("n", 3)?;
    /// #         let step = input.setting_u64_or("step", 1);
    /// #         ctx.info(&format!("task {}", ctx.task_id()));
    /// #         let mut done = 0;
    /// #         while done < n {
    /// #             ctx.check_cancelled()?;
    /// #             done = (done + step).min(n);
    /// #             ctx.progress(done, n, "counting");
    /// #         }
    /// #         std::fs::write(ctx.result_dir().join("count.txt"), done.to_string())?;
    /// #         Ok(json!({ "counted": done }))
    /// #     }
    /// # }
    /// let out = TestRun::new(&Counter, "count").settings(json!({ "step": 3 })).run();
    /// assert_eq!(out.progress().count(), 1);
    /// let out = TestRun::new(&Counter, "count").settings(json!({ "step": "big" })).run();
    /// assert_eq!(out.result, Err("setting 'step' must be an integer, got string".to_owned()));
    /// ```
    pub fn settings(mut self, settings: Value) -> Self {
        self.settings = settings;
        self
    }

    /// Sets the task id the worker sees.
    ///
    /// ```
    /// # use stask_plugin_api::prelude::*;
    /// # use stask_plugin_api::testing::{Event, TestRun};
    /// # struct Counter;
    /// # impl Worker for Counter {
    /// #     fn manifest(&self) -> WorkerManifest {
    /// #         WorkerManifest::new("counter", "Counter")
    /// #             .action(ActionSpec::new("count", "Count"))
    /// #             .setting(SettingSpec::integer("step", "Step").default(1))
    /// #     }
    /// #     fn run(&self, ctx: &Context<'_>, _: &str, input: Input) -> Result<Value, Error> {
    /// #         let n = input.data_u64_or("n", 3)?;
    /// #         let step = input.setting_u64_or("step", 1);
    /// #         ctx.info(&format!("task {}", ctx.task_id()));
    /// #         let mut done = 0;
    /// #         while done < n {
    /// #             ctx.check_cancelled()?;
    /// #             done = (done + step).min(n);
    /// #             ctx.progress(done, n, "counting");
    /// #         }
    /// #         std::fs::write(ctx.result_dir().join("count.txt"), done.to_string())?;
    /// #         Ok(json!({ "counted": done }))
    /// #     }
    /// # }
    /// let out = TestRun::new(&Counter, "count").task_id(7).run();
    /// assert_eq!(out.logs().next(), Some((Level::Info, "task 7")));
    /// ```
    pub fn task_id(mut self, id: u64) -> Self {
        self.task_id = id;
        self
    }

    /// Cancels the task once the worker has reported progress `calls` times
    /// (`0`: cancelled before it starts).
    ///
    /// ```
    /// # use stask_plugin_api::prelude::*;
    /// # use stask_plugin_api::testing::{Event, TestRun};
    /// # struct Counter;
    /// # impl Worker for Counter {
    /// #     fn manifest(&self) -> WorkerManifest {
    /// #         WorkerManifest::new("counter", "Counter")
    /// #             .action(ActionSpec::new("count", "Count"))
    /// #             .setting(SettingSpec::integer("step", "Step").default(1))
    /// #     }
    /// #     fn run(&self, ctx: &Context<'_>, _: &str, input: Input) -> Result<Value, Error> {
    /// #         let n = input.data_u64_or("n", 3)?;
    /// #         let step = input.setting_u64_or("step", 1);
    /// #         ctx.info(&format!("task {}", ctx.task_id()));
    /// #         let mut done = 0;
    /// #         while done < n {
    /// #             ctx.check_cancelled()?;
    /// #             done = (done + step).min(n);
    /// #             ctx.progress(done, n, "counting");
    /// #         }
    /// #         std::fs::write(ctx.result_dir().join("count.txt"), done.to_string())?;
    /// #         Ok(json!({ "counted": done }))
    /// #     }
    /// # }
    /// let out = TestRun::new(&Counter, "count")
    ///     .data(json!({ "n": 100 }))
    ///     .cancel_after_progress(5)
    ///     .run();
    /// assert_eq!(out.result, Err("cancelled".to_owned()));
    /// assert_eq!(out.progress().count(), 5);
    /// ```
    pub fn cancel_after_progress(mut self, calls: u64) -> Self {
        self.cancel_after = Some(calls);
        self
    }

    /// Runs the action and returns what happened. Problems the host would refuse before
    /// running (invalid manifest, undeclared action, bad settings) come back as `Err`
    /// results with the host's message.
    ///
    /// ```
    /// # use stask_plugin_api::prelude::*;
    /// # use stask_plugin_api::testing::{Event, TestRun};
    /// # struct Counter;
    /// # impl Worker for Counter {
    /// #     fn manifest(&self) -> WorkerManifest {
    /// #         WorkerManifest::new("counter", "Counter")
    /// #             .action(ActionSpec::new("count", "Count"))
    /// #             .setting(SettingSpec::integer("step", "Step").default(1))
    /// #     }
    /// #     fn run(&self, ctx: &Context<'_>, _: &str, input: Input) -> Result<Value, Error> {
    /// #         let n = input.data_u64_or("n", 3)?;
    /// #         let step = input.setting_u64_or("step", 1);
    /// #         ctx.info(&format!("task {}", ctx.task_id()));
    /// #         let mut done = 0;
    /// #         while done < n {
    /// #             ctx.check_cancelled()?;
    /// #             done = (done + step).min(n);
    /// #             ctx.progress(done, n, "counting");
    /// #         }
    /// #         std::fs::write(ctx.result_dir().join("count.txt"), done.to_string())?;
    /// #         Ok(json!({ "counted": done }))
    /// #     }
    /// # }
    /// let outcome = TestRun::new(&Counter, "count").run();
    /// assert!(outcome.result.is_ok());
    /// ```
    pub fn run(self) -> Outcome {
        let result_dir = tempfile::tempdir().expect("create a temporary result directory");
        // What the manifest declares; a run that never starts enqueues nothing.
        let (identifier, targets) =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.worker.manifest()))
                .map(|m| (m.identifier, m.enqueues))
                .unwrap_or_default();
        let recorder = Recorder {
            identifier,
            targets,
            enqueued: Mutex::new(Vec::new()),
            events: Mutex::new(Vec::new()),
            progress_calls: AtomicU64::new(0),
            cancel_after: self.cancel_after,
            task_id: self.task_id,
            result_dir: result_dir.path().to_path_buf(),
        };
        let result = match self.prepare() {
            Err(e) => Err(e),
            Ok(input) => {
                let raw: RunContextRef<'_> = RunContext_TO::from_ptr(&recorder, TD_Opaque);
                let hook =
                    |worker: &str, action: &str, data: &str| recorder.enqueue(worker, action, data);
                let ctx = Context::with_enqueue(raw, &hook);
                let worker = self.worker;
                let action = self.action.as_str();
                match guarded_run(|| {
                    worker
                        .run(&ctx, action, input)
                        .map_err(|e| e.message().to_owned())
                }) {
                    RResult::ROk(json) => {
                        Ok(serde_json::from_str(json.as_str()).expect("result JSON"))
                    }
                    RResult::RErr(e) => Err(e.into_string()),
                }
            }
        };
        Outcome {
            result,
            events: recorder
                .events
                .into_inner()
                .unwrap_or_else(|e| e.into_inner()),
            result_dir,
            enqueued: recorder
                .enqueued
                .into_inner()
                .unwrap_or_else(|e| e.into_inner()),
        }
    }

    fn prepare(&self) -> Result<Input, String> {
        // The host reads the manifest behind a panic guard too.
        let manifest =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.worker.manifest()))
                .map_err(|p| {
                    format!(
                        "the worker panicked while describing itself: {}",
                        crate::export::panic_message(&*p)
                    )
                })?;
        manifest.validate()?;
        if manifest.find_action(&self.action).is_none() {
            return Err(format!(
                "worker '{}' has no action '{}'",
                manifest.identifier, self.action
            ));
        }
        let Value::Object(data) = self.data.clone() else {
            return Err("task data must be a JSON object".into());
        };
        let Value::Object(given) = self.settings.clone() else {
            return Err("worker settings must be a JSON object".into());
        };
        let settings = manifest.resolve_settings(&given)?;
        Ok(Input { data, settings })
    }
}

impl Outcome {
    /// The progress events as `(processed, total, message)`.
    ///
    /// ```
    /// # use stask_plugin_api::prelude::*;
    /// # use stask_plugin_api::testing::{Event, TestRun};
    /// # struct Counter;
    /// # impl Worker for Counter {
    /// #     fn manifest(&self) -> WorkerManifest {
    /// #         WorkerManifest::new("counter", "Counter")
    /// #             .action(ActionSpec::new("count", "Count"))
    /// #             .setting(SettingSpec::integer("step", "Step").default(1))
    /// #     }
    /// #     fn run(&self, ctx: &Context<'_>, _: &str, input: Input) -> Result<Value, Error> {
    /// #         let n = input.data_u64_or("n", 3)?;
    /// #         let step = input.setting_u64_or("step", 1);
    /// #         ctx.info(&format!("task {}", ctx.task_id()));
    /// #         let mut done = 0;
    /// #         while done < n {
    /// #             ctx.check_cancelled()?;
    /// #             done = (done + step).min(n);
    /// #             ctx.progress(done, n, "counting");
    /// #         }
    /// #         std::fs::write(ctx.result_dir().join("count.txt"), done.to_string())?;
    /// #         Ok(json!({ "counted": done }))
    /// #     }
    /// # }
    /// let out = TestRun::new(&Counter, "count").data(json!({ "n": 2 })).run();
    /// let progress: Vec<_> = out.progress().collect();
    /// assert_eq!(progress, vec![(1, 2, "counting"), (2, 2, "counting")]);
    /// ```
    pub fn progress(&self) -> impl Iterator<Item = (u64, u64, &str)> {
        self.events.iter().filter_map(|e| match e {
            Event::Progress {
                processed,
                total,
                message,
            } => Some((*processed, *total, message.as_str())),
            Event::Log { .. } => None,
        })
    }

    /// The log events as `(level, message)`.
    ///
    /// ```
    /// # use stask_plugin_api::prelude::*;
    /// # use stask_plugin_api::testing::{Event, TestRun};
    /// # struct Counter;
    /// # impl Worker for Counter {
    /// #     fn manifest(&self) -> WorkerManifest {
    /// #         WorkerManifest::new("counter", "Counter")
    /// #             .action(ActionSpec::new("count", "Count"))
    /// #             .setting(SettingSpec::integer("step", "Step").default(1))
    /// #     }
    /// #     fn run(&self, ctx: &Context<'_>, _: &str, input: Input) -> Result<Value, Error> {
    /// #         let n = input.data_u64_or("n", 3)?;
    /// #         let step = input.setting_u64_or("step", 1);
    /// #         ctx.info(&format!("task {}", ctx.task_id()));
    /// #         let mut done = 0;
    /// #         while done < n {
    /// #             ctx.check_cancelled()?;
    /// #             done = (done + step).min(n);
    /// #             ctx.progress(done, n, "counting");
    /// #         }
    /// #         std::fs::write(ctx.result_dir().join("count.txt"), done.to_string())?;
    /// #         Ok(json!({ "counted": done }))
    /// #     }
    /// # }
    /// let out = TestRun::new(&Counter, "count").run();
    /// assert_eq!(out.logs().collect::<Vec<_>>(), vec![(Level::Info, "task 1")]);
    /// ```
    pub fn logs(&self) -> impl Iterator<Item = (Level, &str)> {
        self.events.iter().filter_map(|e| match e {
            Event::Log { level, message } => Some((*level, message.as_str())),
            Event::Progress { .. } => None,
        })
    }

    /// The path of a result file the worker wrote.
    ///
    /// ```
    /// # use stask_plugin_api::prelude::*;
    /// # use stask_plugin_api::testing::{Event, TestRun};
    /// # struct Counter;
    /// # impl Worker for Counter {
    /// #     fn manifest(&self) -> WorkerManifest {
    /// #         WorkerManifest::new("counter", "Counter")
    /// #             .action(ActionSpec::new("count", "Count"))
    /// #             .setting(SettingSpec::integer("step", "Step").default(1))
    /// #     }
    /// #     fn run(&self, ctx: &Context<'_>, _: &str, input: Input) -> Result<Value, Error> {
    /// #         let n = input.data_u64_or("n", 3)?;
    /// #         let step = input.setting_u64_or("step", 1);
    /// #         ctx.info(&format!("task {}", ctx.task_id()));
    /// #         let mut done = 0;
    /// #         while done < n {
    /// #             ctx.check_cancelled()?;
    /// #             done = (done + step).min(n);
    /// #             ctx.progress(done, n, "counting");
    /// #         }
    /// #         std::fs::write(ctx.result_dir().join("count.txt"), done.to_string())?;
    /// #         Ok(json!({ "counted": done }))
    /// #     }
    /// # }
    /// let out = TestRun::new(&Counter, "count").run();
    /// assert_eq!(std::fs::read_to_string(out.result_file("count.txt")).unwrap(), "3");
    /// ```
    pub fn result_file(&self, name: &str) -> PathBuf {
        self.result_dir.path().join(name)
    }

    /// The directory the worker could write results into.
    ///
    /// ```
    /// # use stask_plugin_api::prelude::*;
    /// # use stask_plugin_api::testing::{Event, TestRun};
    /// # struct Counter;
    /// # impl Worker for Counter {
    /// #     fn manifest(&self) -> WorkerManifest {
    /// #         WorkerManifest::new("counter", "Counter")
    /// #             .action(ActionSpec::new("count", "Count"))
    /// #             .setting(SettingSpec::integer("step", "Step").default(1))
    /// #     }
    /// #     fn run(&self, ctx: &Context<'_>, _: &str, input: Input) -> Result<Value, Error> {
    /// #         let n = input.data_u64_or("n", 3)?;
    /// #         let step = input.setting_u64_or("step", 1);
    /// #         ctx.info(&format!("task {}", ctx.task_id()));
    /// #         let mut done = 0;
    /// #         while done < n {
    /// #             ctx.check_cancelled()?;
    /// #             done = (done + step).min(n);
    /// #             ctx.progress(done, n, "counting");
    /// #         }
    /// #         std::fs::write(ctx.result_dir().join("count.txt"), done.to_string())?;
    /// #         Ok(json!({ "counted": done }))
    /// #     }
    /// # }
    /// let out = TestRun::new(&Counter, "count").run();
    /// let names: Vec<_> = std::fs::read_dir(out.result_path())
    ///     .unwrap()
    ///     .map(|e| e.unwrap().file_name())
    ///     .collect();
    /// assert_eq!(names, ["count.txt"]);
    /// ```
    pub fn result_path(&self) -> &Path {
        self.result_dir.path()
    }

    /// The follow-up tasks the worker enqueued, in order (refused ones are not here:
    /// the worker got an error for each).
    ///
    /// ```
    /// # use stask_plugin_api::prelude::*;
    /// # use stask_plugin_api::testing::TestRun;
    /// struct Lonely;
    /// impl Worker for Lonely {
    ///     fn manifest(&self) -> WorkerManifest {
    ///         WorkerManifest::new("lonely", "Lonely").action(ActionSpec::new("run", "Run"))
    ///     }
    ///     fn run(&self, ctx: &Context<'_>, _: &str, _: Input) -> Result<Value, Error> {
    ///         ctx.enqueue("lonely", "run", json!({}))?; // declares no targets
    ///         Ok(Value::Null)
    ///     }
    /// }
    /// let out = TestRun::new(&Lonely, "run").run();
    /// assert!(out.enqueued().is_empty());
    /// assert!(out.result.unwrap_err().contains("declares no enqueue targets"));
    /// ```
    pub fn enqueued(&self) -> &[Enqueued] {
        &self.enqueued
    }
}

struct Recorder {
    identifier: String,
    targets: Vec<String>,
    enqueued: Mutex<Vec<Enqueued>>,
    events: Mutex<Vec<Event>>,
    progress_calls: AtomicU64,
    cancel_after: Option<u64>,
    task_id: u64,
    result_dir: PathBuf,
}

impl Recorder {
    fn push(&self, event: Event) {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(event);
    }
}

impl RunContext for Recorder {
    fn progress(&self, processed: u64, total: u64, message: RStr<'_>) {
        self.progress_calls.fetch_add(1, Ordering::Relaxed);
        self.push(Event::Progress {
            processed,
            total,
            message: message.as_str().to_owned(),
        });
    }

    fn log(&self, level: u8, message: RStr<'_>) {
        self.push(Event::Log {
            level: Level::from_code(level),
            message: message.as_str().to_owned(),
        });
    }

    fn is_cancelled(&self) -> bool {
        self.cancel_after
            .is_some_and(|n| self.progress_calls.load(Ordering::Relaxed) >= n)
    }

    fn task_id(&self) -> u64 {
        self.task_id
    }

    fn result_dir(&self) -> RString {
        self.result_dir.to_string_lossy().into_owned().into()
    }
}

impl Recorder {
    /// The host's checks that need no registry: a declared target, an object as data,
    /// the per-attempt bound. (Whether the target worker exists is the host's to say.)
    fn enqueue(&self, worker: &str, action: &str, data: &str) -> Result<u64, String> {
        let checked = if !crate::enqueue::allows(&self.targets, worker, action) {
            Err(crate::enqueue::refusal(
                &self.identifier,
                &self.targets,
                worker,
                action,
            ))
        } else {
            match serde_json::from_str::<Value>(data) {
                Ok(data @ Value::Object(_)) => Ok(data),
                Ok(_) => Err("task data must be a JSON object".to_owned()),
                Err(e) => Err(format!("task data is not valid JSON: {e}")),
            }
        };
        let mut list = self.enqueued.lock().unwrap_or_else(|e| e.into_inner());
        let data = match checked {
            Ok(_) if list.len() >= crate::enqueue::MAX_PER_ATTEMPT as usize => {
                Err(crate::enqueue::too_many())
            }
            other => other,
        };
        match data {
            Ok(data) => {
                let id = self.task_id + 1 + list.len() as u64;
                list.push(Enqueued {
                    id,
                    worker: worker.to_owned(),
                    action: action.to_owned(),
                    data,
                });
                Ok(id)
            }
            Err(message) => {
                drop(list);
                // The host writes a refusal to the task's log; so does the harness.
                self.push(Event::Log {
                    level: Level::Error,
                    message: format!("Enqueue refused: {message}"),
                });
                Err(message)
            }
        }
    }
}
