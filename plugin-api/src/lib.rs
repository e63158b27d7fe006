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
//! crate's README walks from `cargo new` to a library the host accepts.
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

#![warn(missing_docs)]

pub mod abi;
mod export;
pub mod manifest;
pub mod testing;
mod worker;

pub use manifest::{ActionSpec, LibraryManifest, SettingKind, SettingSpec, WorkerManifest};
pub use worker::{Context, Error, Input, Level, Worker};

/// The usual imports for a worker crate.
pub mod prelude {
    pub use crate::manifest::{ActionSpec, SettingSpec, WorkerManifest};
    pub use crate::worker::{Context, Error, Input, Level, Worker};
    pub use serde_json::{json, Value};
}

/// Re-exported so worker crates use the same serde_json as the SDK.
pub use serde_json;

#[doc(hidden)]
pub mod __private {
    pub use crate::export::{manifest_entry, root_module, run_entry, Registry};
    pub use abi_stable::library::{
        __call_root_module_loader, CheckTypeLayout, LibHeader, RootModuleResult,
    };
    pub use abi_stable::std_types::{RResult, RStr, RString};
}

#[cfg(test)]
mod tests;
