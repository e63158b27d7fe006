//! The raw, stable-ABI boundary between the host's runner and a plugin library.
//!
//! Plugin authors never use this module directly: [`export_workers!`](crate::export_workers)
//! builds the root module, and the runner in the host calls through it. It is public so
//! that the host (and tools that inspect libraries) can name the same types.
//!
//! Evolution rules: [`WorkerLib`] is an abi_stable *prefix type*. New entry points are
//! appended after the last field and read by the host with the `*_opt` accessors, so a
//! library built against an older 0.1.x SDK keeps loading. The manifest crosses the
//! boundary as JSON (see [`crate::manifest`]), so new optional manifest fields need no
//! ABI change at all.

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
pub mod level {
    /// Verbose diagnostics.
    pub const DEBUG: u8 = 0;
    /// Normal progress narration; what the live view shows.
    pub const INFO: u8 = 1;
    /// Something unexpected that the worker recovered from.
    pub const WARN: u8 = 2;
    /// Something failed.
    pub const ERROR: u8 = 3;
}

/// Host-side services a running action can call.
///
/// Implemented by the host's runner; plugins receive it as [`RunContextRef`]. Methods are
/// appended only after `result_dir` (marked as the last prefix method) so older plugins
/// keep working with newer hosts.
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

/// The context as passed across the boundary: a borrowed, type-erased trait object.
pub type RunContextRef<'a> = RunContext_TO<'a, abi_stable::sabi_types::RRef<'a, ()>>;

/// Signature of the manifest entry point: the library manifest as JSON, or an error.
pub type ManifestFn = extern "C" fn() -> RResult<RString, RString>;

/// Signature of the run entry point.
///
/// Arguments: context, worker identifier, action name, input data (JSON object text),
/// settings (JSON object text). Returns the result as JSON text, or an error message.
pub type RunFn = extern "C" fn(
    RunContextRef<'_>,
    RStr<'_>,
    RStr<'_>,
    RStr<'_>,
    RStr<'_>,
) -> RResult<RString, RString>;

/// The root module every stask plugin library exports.
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
pub const API_VERSION: &str = env!("CARGO_PKG_VERSION");
