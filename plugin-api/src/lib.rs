//! # stask-plugin-api
//!
//! Everything needed to write an stask worker: a plugin library that the stask host
//! discovers in its plugins directory and runs in an isolated runner process.
//!
//! * Implement [`Worker`]: a [`WorkerManifest`] describing the worker, and `run`.
//! * Export it from a `cdylib` crate with [`export_workers!`].
//! * Unit-test it in-process with [`testing::TestRun`].
//!
//! The raw stable-ABI boundary lives in [`abi`]; authors never need it. The guide in this
//! crate's README walks from `stask new-worker` (which scaffolds a worker crate) to a
//! completed task: test, build, install, discover, activate, run, settings, secrets,
//! schedules and updates. The crate needs Rust 1.85 or newer.
//!
//! ```
//! use stask_plugin_api::prelude::*;
//!
//! struct Hello;
//!
//! impl Worker for Hello {
//!     fn manifest(&self) -> WorkerManifest {
//!         WorkerManifest::new("hello", "Hello")
//!             .scope("examples")
//!             .action(ActionSpec::new("greet", "Greet someone"))
//!     }
//!
//!     fn run(&self, ctx: &Context<'_>, _action: &str, input: Input) -> Result<Value, Error> {
//!         let name = input.data_str("name")?;
//!         ctx.info(&format!("Hello, **{name}**!"));
//!         Ok(json!({ "greeted": name }))
//!     }
//! }
//!
//! // In a cdylib crate: stask_plugin_api::export_workers![Hello];
//! ```

#![deny(missing_docs)]

pub mod abi;
pub mod access;
pub mod enqueue;
mod export;
pub mod manifest;
pub mod testing;
mod worker;

pub use manifest::{
    ActionSpec, LibraryManifest, LimitSpec, RateSpec, SettingKind, SettingSpec, WorkerManifest,
};
pub use worker::{Context, Error, Input, Level, Worker};

/// The usual imports for a worker crate.
///
/// ```
/// use stask_plugin_api::prelude::*;
///
/// // The manifest builders, the worker interface and serde_json's `json!` / `Value`:
/// let manifest: WorkerManifest = WorkerManifest::new("w", "W")
///     .action(ActionSpec::new("run", "Run"))
///     .setting(SettingSpec::boolean("dry_run", "Dry run").default(false));
/// let result: Result<Value, Error> = Ok(json!({ "ok": true }));
/// # let _ = (manifest, result, Level::Info);
/// # fn _uses(_: &dyn Worker, _: &Context<'_>, _: Input) {}
/// ```
pub mod prelude {
    pub use crate::manifest::{ActionSpec, LimitSpec, SettingSpec, WorkerManifest};
    pub use crate::worker::{Context, Error, Input, Level, Worker};
    pub use serde_json::{json, Value};
}

/// Re-exported so worker crates use the same serde_json as the SDK, without a
/// dependency of their own.
///
/// ```
/// use stask_plugin_api::serde_json;
///
/// let value: serde_json::Value = serde_json::from_str(r#"{"n": 3}"#).unwrap();
/// assert_eq!(value["n"], 3);
/// ```
pub use serde_json;

// The guide's Rust examples compile as doctests, so they cannot drift from the SDK.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

#[doc(hidden)]
pub mod __private {
    pub use crate::export::{manifest_entry, root_module, run_entry, set_host_services, Registry};
    pub use abi_stable::library::{
        __call_root_module_loader, CheckTypeLayout, LibHeader, RootModuleResult,
    };
    pub use abi_stable::std_types::{RResult, RStr, RString};
}

#[cfg(test)]
mod tests;
