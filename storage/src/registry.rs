//! The worker registry: one record per worker identifier, with the library it comes
//! from, its manifest, its operator settings and whether it is active.

use crate::error::StoreError;
use crate::schedules::ScheduleRecord;

/// Identity of a library file's contents as last seen, used to decide cheaply whether
/// it changed (size and mtime first, the hash only when those differ).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LibraryFingerprint {
    /// Path of the file in the plugins directory.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i64,
    /// SHA-256 of the contents, lowercase hex.
    pub sha256: String,
}

/// A registered worker.
#[derive(Debug, Clone)]
pub struct WorkerRecord {
    /// Unique id from the manifest.
    pub identifier: String,
    /// Scope from the manifest.
    pub scope: String,
    /// Title from the manifest.
    pub title: String,
    /// Description from the manifest.
    pub description: String,
    /// Icon name from the manifest.
    pub icon: String,
    /// Worker version from the manifest.
    pub version: String,
    /// The library it was loaded from.
    pub library: LibraryFingerprint,
    /// The worker's full manifest as JSON.
    pub manifest: String,
    /// Operator-set settings as a JSON object (secrets included: never print raw).
    pub settings: String,
    /// Schedule as JSON, if any.
    pub schedule: Option<String>,
    /// Whether tasks may run.
    pub active: bool,
    /// Why the worker was made inactive by stask rather than by an operator (its
    /// library was replaced by a file with other contents, see
    /// [`Registry::update_worker_library_held`]); cleared when it is activated.
    pub inactive_reason: Option<String>,
    /// Display order.
    pub position: i64,
    /// When registered (ms since epoch).
    pub created_at: i64,
    /// When last changed (ms since epoch).
    pub updated_at: i64,
}

/// Fields of a worker that come from its library's manifest.
#[derive(Debug, Clone)]
pub struct WorkerMetadata<'a> {
    /// Scope.
    pub scope: &'a str,
    /// Title.
    pub title: &'a str,
    /// Description.
    pub description: &'a str,
    /// Icon name.
    pub icon: &'a str,
    /// Version.
    pub version: &'a str,
    /// Full manifest JSON.
    pub manifest: &'a str,
}

/// What [`Registry::delete_worker`] keeps of a removed worker, so that a worker
/// registered again under the same identifier gets back what the operator had set
/// (see [`Registry::register_workers`]). Kept until that happens: one row per
/// identifier, replaced by a later removal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemovedWorker {
    /// The worker's identifier.
    pub identifier: String,
    /// SHA-256 of the library it was registered from, to tell the same code coming back
    /// from other code exporting the same identifier.
    pub library_sha256: String,
    /// Its operator settings as stored (secret values still encrypted).
    pub settings: String,
    /// Whether it was active.
    pub active: bool,
    /// Why stask had made it inactive, if it had.
    pub inactive_reason: Option<String>,
    /// Its schedule as it was, history included.
    pub schedule: Option<ScheduleRecord>,
    /// When it was removed (ms since epoch).
    pub removed_at: i64,
}

/// How a worker registered again takes back what it left (decided by the host, which
/// knows the new manifest): the settings to store and whether it is active. Its
/// schedule always comes back as it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restoration {
    /// The settings to store (a JSON object).
    pub settings: String,
    /// Whether it is active.
    pub active: bool,
    /// Why it is inactive, when stask decided so.
    pub inactive_reason: Option<String>,
}

impl Restoration {
    /// Everything as it was, except that it is active only when the same library (by
    /// hash) comes back and it was active: other code exporting the identifier waits
    /// for an operator.
    pub fn as_removed(removed: &RemovedWorker, lib: &LibraryFingerprint) -> Restoration {
        let same = removed.library_sha256 == lib.sha256;
        let active = removed.active && same;
        let inactive_reason = if active {
            None
        } else if !same && removed.active {
            Some("registered again from a different library; it stays inactive until an operator activates it".to_owned())
        } else {
            removed.inactive_reason.clone()
        };
        Restoration {
            settings: removed.settings.clone(),
            active,
            inactive_reason,
        }
    }
}

/// The host's decision for each remembered worker registered again, called inside the
/// registering transaction with what was kept and the new library.
pub type Restorer<'a> = dyn FnMut(&RemovedWorker, &LibraryFingerprint) -> Restoration + 'a;

/// The worker registry of a store.
pub trait Registry {
    /// All workers, in display order.
    fn list_workers(&self) -> Result<Vec<WorkerRecord>, StoreError>;

    /// One worker by identifier.
    fn get_worker(&self, identifier: &str) -> Result<Option<WorkerRecord>, StoreError>;

    /// Registers new workers in one transaction: all or none. A worker whose
    /// identifier was removed before gets back what it left, as
    /// [`Restoration::as_removed`] decides.
    fn insert_workers(
        &mut self,
        workers: &[(String, WorkerMetadata<'_>, LibraryFingerprint, bool)],
    ) -> Result<(), StoreError> {
        self.register_workers(workers, &mut Restoration::as_removed)
            .map(|_| ())
    }

    /// Registers new workers in one transaction: all or none. For each identifier that
    /// [`Registry::delete_worker`] remembered, `restore` decides the settings and state
    /// it comes back with (the tuple's active flag is not used for it), its schedule
    /// comes back as it was, and the memory is deleted, all in the same transaction.
    /// Returns what was remembered of the workers that came back.
    fn register_workers(
        &mut self,
        workers: &[(String, WorkerMetadata<'_>, LibraryFingerprint, bool)],
        restore: &mut Restorer<'_>,
    ) -> Result<Vec<RemovedWorker>, StoreError>;

    /// What is remembered of a removed worker, if anything.
    fn get_removed_worker(&self, identifier: &str) -> Result<Option<RemovedWorker>, StoreError>;

    /// Replaces a worker's manifest-derived fields and library fingerprint after its
    /// library changed. Operator state (settings, schedule, active) is kept.
    fn update_worker_library(
        &self,
        identifier: &str,
        meta: &WorkerMetadata<'_>,
        lib: &LibraryFingerprint,
    ) -> Result<bool, StoreError>;

    /// Like [`Registry::update_worker_library`], and in the same change deactivates the
    /// worker with `reason` (kept in [`WorkerRecord::inactive_reason`] until it is
    /// activated again): for code that must not run before an operator has looked at
    /// it. Settings and schedule are kept. Returns false if no such worker exists.
    fn update_worker_library_held(
        &self,
        identifier: &str,
        meta: &WorkerMetadata<'_>,
        lib: &LibraryFingerprint,
        reason: &str,
    ) -> Result<bool, StoreError>;

    /// Records a new size/mtime for a library whose contents (hash) did not change, so
    /// the next rescan can skip hashing it.
    fn touch_library(&self, path: &str, size: u64, mtime_ns: i64) -> Result<(), StoreError>;

    /// Sets a worker's active flag; activating clears its
    /// [`WorkerRecord::inactive_reason`]. Returns false if no such worker exists.
    fn set_worker_active(&self, identifier: &str, active: bool) -> Result<bool, StoreError>;

    /// Replaces a worker's settings (a validated JSON object). Returns false if no such
    /// worker exists.
    fn set_worker_settings(&self, identifier: &str, settings: &str) -> Result<bool, StoreError>;

    /// Removes a worker from the registry (its tasks are kept) and, in the same
    /// transaction, remembers its settings, state and schedule as a [`RemovedWorker`],
    /// replacing what an earlier removal of the identifier left.
    fn delete_worker(&self, identifier: &str) -> Result<bool, StoreError>;
}
