//! Operations on one registered worker shared by the CLI and the HTTP API.

use anyhow::Result;
use stask_storage::{Store, WorkerRecord};

use crate::problem::Problem;

/// The error for an unknown worker identifier.
pub fn not_found(id: &str) -> anyhow::Error {
    Problem::not_found(
        "worker_not_found",
        format!("no worker '{id}' is registered (see `stask workers list`; new libraries are registered by `stask workers discover`)"),
    )
    .into()
}

/// Reads a worker, failing with [`not_found`] when it is not registered.
pub fn find(store: &dyn Store, id: &str) -> Result<WorkerRecord> {
    store.get_worker(id)?.ok_or_else(|| not_found(id))
}

/// Activates or deactivates a worker. A worker whose library file is gone cannot be
/// activated. Activation wakes the services (its pending tasks may now run).
pub fn set_active(store: &dyn Store, id: &str, active: bool) -> Result<()> {
    if active {
        let w = find(store, id)?;
        if !std::path::Path::new(&w.library.path).exists() {
            return Err(Problem::conflict(
                "library_missing",
                format!(
                    "worker '{id}' cannot be activated: its library '{}' no longer exists (restore it, or remove the worker with `stask workers clean-orphaned`)",
                    w.library.path
                ),
            )
            .into());
        }
    }
    if !store.set_worker_active(id, active)? {
        return Err(not_found(id));
    }
    if active {
        store.notify_work();
    }
    Ok(())
}
