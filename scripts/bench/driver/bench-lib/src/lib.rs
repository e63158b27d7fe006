//! A minimal worker for the discovery benchmarks. Its identifier is a marker string
//! that the driver overwrites (same length) in copies of the built library, giving
//! each copy its own identifier: many distinct libraries from one build.

#![warn(missing_docs)]

use stask_plugin_api::prelude::*;

/// The identifier as built; [`MARKER`] is replaced in each copy.
pub const MARKER: &str = "benchlib-id-000000000000";

/// A worker that does nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct BenchLib;

impl Worker for BenchLib {
    fn manifest(&self) -> WorkerManifest {
        WorkerManifest::new(MARKER, "Benchmark library")
            .version(env!("CARGO_PKG_VERSION"))
            .description("A copy of the benchmark library (discovery benchmarks).")
            .action(ActionSpec::new("noop", "Do nothing").description("Returns at once."))
    }

    fn run(&self, _ctx: &Context<'_>, _action: &str, _input: Input) -> Result<Value, Error> {
        Ok(Value::Null)
    }
}

stask_plugin_api::export_workers![BenchLib];
