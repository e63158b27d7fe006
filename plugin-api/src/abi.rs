//! The raw, stable-ABI boundary between the host's runner and a plugin library.
//!
//! Plugin authors never use this module directly: [`export_workers!`](crate::export_workers)
//! builds the root module, and the runner in the host calls through it. It is public so
//! that the host (and tools that inspect libraries) can name the same types.
//!
//! Evolution rules: [`WorkerLib`] is an abi_stable *prefix type*. abi_stable's load-time
//! check accepts a library whose prefix types have *more* fields than the host's, never
//! fewer, so an entry point (or a [`RunContext`] method) added on the host's side would
//! refuse every library built before it. Host services added since travel outside the
//! checked layouts instead ([`HOST_SERVICES_SYMBOL`]). The manifest crosses the boundary
//! as JSON (see [`crate::manifest`]), so new optional manifest fields need no ABI change
//! at all.
//!
//! ```
//! use stask_plugin_api::abi::{RunContextRef, WorkerLibRef, API_VERSION};
//!
//! // The version a library built against this SDK declares.
//! assert_eq!(API_VERSION, env!("CARGO_PKG_VERSION"));
//! // The host calls a library through its root module's entry points:
//! fn entry_points(lib: WorkerLibRef) -> (stask_plugin_api::abi::ManifestFn, stask_plugin_api::abi::RunFn) {
//!     (lib.manifest(), lib.run())
//! }
//! # let _ = entry_points;
//! # let _: Option<RunContextRef<'_>> = None;
//! ```

// `#[sabi_trait]` expands to impl blocks inside a const item, which newer rustc flags.
#![allow(non_local_definitions)]

use abi_stable::{
    declare_root_module_statics,
    library::RootModule,
    package_version_strings, sabi_trait,
    sabi_types::VersionStrings,
    std_types::{RResult, RStr, RString},
    StableAbi,
};

/// Log levels as they cross the ABI (`u8`, so that an unknown future level from a
/// newer SDK is still representable and shown as `info`).
///
/// ```
/// use stask_plugin_api::{abi::level, Level};
///
/// assert_eq!(level::ERROR, Level::Error.code());
/// assert_eq!(Level::from_code(level::DEBUG), Level::Debug);
/// ```
pub mod level {
    /// Verbose diagnostics.
    ///
    /// ```
    /// assert_eq!(stask_plugin_api::abi::level::DEBUG, 0);
    /// ```
    pub const DEBUG: u8 = 0;
    /// Normal progress narration; what the live view shows.
    ///
    /// ```
    /// assert_eq!(stask_plugin_api::abi::level::INFO, 1);
    /// ```
    pub const INFO: u8 = 1;
    /// Something unexpected that the worker recovered from.
    ///
    /// ```
    /// assert_eq!(stask_plugin_api::abi::level::WARN, 2);
    /// ```
    pub const WARN: u8 = 2;
    /// Something failed.
    ///
    /// ```
    /// assert_eq!(stask_plugin_api::abi::level::ERROR, 3);
    /// ```
    pub const ERROR: u8 = 3;
}

/// Host-side services a running action can call.
///
/// Implemented by the host's runner; plugins receive it as [`RunContextRef`]. Its layout
/// is frozen: a method appended here would make libraries built before it fail
/// abi_stable's check, so newer services go through [`HOST_SERVICES_SYMBOL`].
///
/// Workers never implement it: the host's runner does, and so does
/// [`TestRun`](crate::testing::TestRun) for unit tests. An implementation, as a host
/// or a test double writes it:
///
/// ```
/// use std::sync::Mutex;
/// use abi_stable::sabi_trait::TD_Opaque;
/// use abi_stable::std_types::{RStr, RString};
/// use stask_plugin_api::abi::{RunContext, RunContextRef, RunContext_TO};
///
/// /// Prints what the worker reports.
/// struct Printer {
///     lines: Mutex<Vec<String>>,
/// }
///
/// impl RunContext for Printer {
///     fn progress(&self, processed: u64, total: u64, message: RStr<'_>) {
///         self.lines.lock().unwrap().push(format!("{processed}/{total} {message}"));
///     }
///     fn log(&self, level: u8, message: RStr<'_>) {
///         self.lines.lock().unwrap().push(format!("[{level}] {message}"));
///     }
///     fn is_cancelled(&self) -> bool {
///         false
///     }
///     fn task_id(&self) -> u64 {
///         1
///     }
///     fn result_dir(&self) -> RString {
///         std::env::temp_dir().display().to_string().into()
///     }
/// }
///
/// let printer = Printer { lines: Mutex::new(Vec::new()) };
/// // What the host passes to a library's `run` entry point:
/// let ctx: RunContextRef<'_> = RunContext_TO::from_ptr(&printer, TD_Opaque);
/// ctx.progress(1, 2, RStr::from_str("halfway"));
/// ctx.log(stask_plugin_api::abi::level::INFO, RStr::from_str("hello"));
/// assert_eq!(*printer.lines.lock().unwrap(), ["1/2 halfway", "[1] hello"]);
/// ```
#[sabi_trait]
pub trait RunContext {
    /// Reports progress: `processed` of `total` items, with a short message.
    /// Cheap enough to call once per item; the host coalesces.
    fn progress(&self, processed: u64, total: u64, message: RStr<'_>);

    /// Writes a message to the task's log at the given [`level`].
    fn log(&self, level: u8, message: RStr<'_>);

    /// True once the task was cancelled; the action should stop soon after.
    fn is_cancelled(&self) -> bool;

    /// The id of the task being run.
    fn task_id(&self) -> u64;

    /// Absolute path of a directory where the action may write result files.
    #[sabi(last_prefix_field)]
    fn result_dir(&self) -> RString;
}

/// Host services beyond [`RunContext`], handed to a library through a versioned symbol
/// rather than by growing a checked type.
///
/// abi_stable compares the host's layouts with the library's when it loads one, and a
/// prefix type (the root module, the [`RunContext`] vtable) may have *more* fields in the
/// library than in the host, never fewer: a method appended to `RunContext`, which the
/// host implements, makes every library built before it fail to load ("too many
/// fields"). So newer services travel outside the checked layout: a library built with
/// this SDK exports [`HOST_SERVICES_SYMBOL`] (`export_workers!` does), and a runner that
/// finds it calls it once, after loading the library, with the services' entry points.
/// A library without the symbol (built earlier) is never offered them and loads as
/// before; a library run by a host that never calls it gets [`ENQUEUE_UNSUPPORTED`] from
/// `Context::enqueue`. Changing a signature here means a new symbol name (`_v2`).
///
/// ```
/// use stask_plugin_api::abi::{EnqueueFn, HostServicesFn, HOST_SERVICES_SYMBOL};
/// use abi_stable::std_types::{RResult, RStr, RString};
///
/// assert_eq!(HOST_SERVICES_SYMBOL, b"stask_host_services_v1\0");
/// // What a host passes: the id of the running task, then worker, action and data.
/// extern "C" fn enqueue(task: u64, _: RStr<'_>, _: RStr<'_>, _: RStr<'_>) -> RResult<u64, RString> {
///     RResult::ROk(task + 1)
/// }
/// let _: EnqueueFn = enqueue;
/// # let _: Option<HostServicesFn> = None;
/// ```
pub const HOST_SERVICES_SYMBOL: &[u8] = b"stask_host_services_v1\0";

/// The host's enqueue service: creates `action` of `worker` with `data` (JSON object
/// text) as a child of running task `task`; the new task's id, or why not. The host
/// answers only for the task it is running.
pub type EnqueueFn = extern "C" fn(
    task: u64,
    worker: RStr<'_>,
    action: RStr<'_>,
    data: RStr<'_>,
) -> RResult<u64, RString>;

/// The signature of [`HOST_SERVICES_SYMBOL`]: receives the host's services.
pub type HostServicesFn = extern "C" fn(enqueue: EnqueueFn);

/// What `Context::enqueue` returns when the host offered no enqueue service (a host
/// older than the plugin's SDK).
///
/// ```
/// assert!(stask_plugin_api::abi::ENQUEUE_UNSUPPORTED.contains("upgrade stask"));
/// ```
pub const ENQUEUE_UNSUPPORTED: &str =
    "this stask host cannot enqueue tasks from a running task (it is older than the plugin's SDK); upgrade stask";

/// The context as passed across the boundary: a borrowed, type-erased trait object.
///
/// ```
/// use abi_stable::sabi_trait::TD_Opaque;
/// use abi_stable::std_types::{RStr, RString};
/// use stask_plugin_api::abi::{RunContext, RunContextRef, RunContext_TO};
///
/// struct Quiet;
/// impl RunContext for Quiet {
///     fn progress(&self, _: u64, _: u64, _: RStr<'_>) {}
///     fn log(&self, _: u8, _: RStr<'_>) {}
///     fn is_cancelled(&self) -> bool { true }
///     fn task_id(&self) -> u64 { 9 }
///     fn result_dir(&self) -> RString { RString::from("/tmp") }
/// }
///
/// let ctx: RunContextRef<'_> = RunContext_TO::from_ptr(&Quiet, TD_Opaque);
/// assert_eq!(ctx.task_id(), 9);
/// assert!(ctx.is_cancelled());
/// ```
pub type RunContextRef<'a> = RunContext_TO<'a, abi_stable::sabi_types::RRef<'a, ()>>;

/// Signature of the manifest entry point: the library manifest as JSON, or an error.
///
/// ```
/// use abi_stable::std_types::{RResult, RString};
/// use stask_plugin_api::abi::ManifestFn;
///
/// extern "C" fn manifest() -> RResult<RString, RString> {
///     RResult::RErr(RString::from("this example exports no workers"))
/// }
/// let entry: ManifestFn = manifest;
/// assert!(entry().into_result().is_err());
/// ```
pub type ManifestFn = extern "C" fn() -> RResult<RString, RString>;

/// Signature of the run entry point.
///
/// Arguments: context, worker identifier, action name, input data (JSON object text),
/// settings (JSON object text). Returns the result as JSON text, or an error message.
///
/// ```
/// use abi_stable::std_types::{RResult, RStr, RString};
/// use stask_plugin_api::abi::{RunContextRef, RunFn};
///
/// extern "C" fn run(
///     _ctx: RunContextRef<'_>,
///     worker: RStr<'_>,
///     action: RStr<'_>,
///     _data: RStr<'_>,
///     _settings: RStr<'_>,
/// ) -> RResult<RString, RString> {
///     RResult::RErr(format!("no worker '{worker}' with action '{action}'").into())
/// }
/// let _entry: RunFn = run;
/// ```
pub type RunFn = extern "C" fn(
    RunContextRef<'_>,
    RStr<'_>,
    RStr<'_>,
    RStr<'_>,
    RStr<'_>,
) -> RResult<RString, RString>;

/// The root module every stask plugin library exports.
///
/// `export_workers!` builds and exports it. Reading it from a library is what the host
/// does in its probe and runner processes, never in a long-lived process (abi_stable never
/// unloads a library):
///
/// ```no_run
/// use abi_stable::library::RootModule;
/// use stask_plugin_api::{abi::WorkerLibRef, LibraryManifest};
///
/// let lib = WorkerLibRef::load_from_file("plugins/libmy_worker.so".as_ref()).unwrap();
/// let json = lib.manifest()().into_result().unwrap();
/// let manifest: LibraryManifest = serde_json::from_str(&json).unwrap();
/// println!("{} workers", manifest.workers.len());
/// ```
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = WorkerLibRef)))]
#[sabi(missing_field(panic))]
pub struct WorkerLib {
    /// Returns the [`LibraryManifest`](crate::manifest::LibraryManifest) as JSON
    /// (see [`ManifestFn`]).
    pub manifest: extern "C" fn() -> RResult<RString, RString>,
    /// Runs one action of one of the library's workers (see [`RunFn`]).
    #[sabi(last_prefix_field)]
    pub run: extern "C" fn(
        RunContextRef<'_>,
        RStr<'_>,
        RStr<'_>,
        RStr<'_>,
        RStr<'_>,
    ) -> RResult<RString, RString>,
}

impl RootModule for WorkerLibRef {
    declare_root_module_statics! {WorkerLibRef}
    const BASE_NAME: &'static str = "stask_worker";
    const NAME: &'static str = "stask_worker";
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}

/// The plugin-api version this crate was built as (the ABI version a library declares).
///
/// ```
/// // A host supporting 0.1 loads libraries built against any 0.1.x.
/// assert!(stask_plugin_api::abi::API_VERSION.starts_with("0.1."));
/// ```
pub const API_VERSION: &str = env!("CARGO_PKG_VERSION");
