//! The worker registry: one row per worker identifier.

use rusqlite::{params, OptionalExtension, Row};

use super::{Context, SqliteStore};
use crate::error::StoreError;
use crate::now_ms;
use crate::registry::{LibraryFingerprint, Registry, WorkerMetadata, WorkerRecord};

const COLUMNS: &str = "identifier, scope, title, description, icon, version, library_path,
    library_size, library_mtime_ns, library_sha256, manifest, settings, schedule, active,
    position, created_at, updated_at, inactive_reason";

fn from_row(r: &Row<'_>) -> rusqlite::Result<WorkerRecord> {
    Ok(WorkerRecord {
        identifier: r.get(0)?,
        scope: r.get(1)?,
        title: r.get(2)?,
        description: r.get(3)?,
        icon: r.get(4)?,
        version: r.get(5)?,
        library: LibraryFingerprint {
            path: r.get(6)?,
            size: r.get::<_, i64>(7)? as u64,
            mtime_ns: r.get(8)?,
            sha256: r.get(9)?,
        },
        manifest: r.get(10)?,
        settings: r.get(11)?,
        schedule: r.get(12)?,
        active: r.get(13)?,
        position: r.get(14)?,
        created_at: r.get(15)?,
        updated_at: r.get(16)?,
        inactive_reason: r.get(17)?,
    })
}

impl Registry for SqliteStore {
    /// All workers, in display order.
    fn list_workers(&self) -> Result<Vec<WorkerRecord>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM workers ORDER BY position, identifier"
            ))
            .context("list workers")?;
        let rows = stmt.query_map([], from_row).context("list workers")?;
        rows.collect::<Result<_, _>>().context("list workers")
    }

    /// One worker by identifier.
    fn get_worker(&self, identifier: &str) -> Result<Option<WorkerRecord>, StoreError> {
        self.conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM workers WHERE identifier = ?1"),
                [identifier],
                from_row,
            )
            .optional()
            .context("read worker")
    }

    /// Registers new workers in one transaction: all or none.
    fn insert_workers(
        &mut self,
        workers: &[(String, WorkerMetadata<'_>, LibraryFingerprint, bool)],
    ) -> Result<(), StoreError> {
        // The write lock first: this transaction reads (the last position) before it
        // writes, and a deferred one would fail at once, without waiting, when another
        // connection wrote in between.
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .context("begin registration")?;
        let now = now_ms();
        let mut position: i64 = tx
            .query_row("SELECT COALESCE(MAX(position), 0) FROM workers", [], |r| {
                r.get(0)
            })
            .context("read positions")?;
        for (identifier, meta, lib, active) in workers {
            position += 1;
            tx.execute(
                "INSERT INTO workers (identifier, scope, title, description, icon, version,
                    library_path, library_size, library_mtime_ns, library_sha256, manifest,
                    settings, active, position, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, '{}', ?12, ?13, ?14, ?14)",
                params![
                    identifier,
                    meta.scope,
                    meta.title,
                    meta.description,
                    meta.icon,
                    meta.version,
                    lib.path,
                    lib.size as i64,
                    lib.mtime_ns,
                    lib.sha256,
                    meta.manifest,
                    active,
                    position,
                    now
                ],
            )
            .context(&format!("register worker '{identifier}'"))?;
        }
        tx.commit().context("commit registration")
    }

    /// Replaces a worker's manifest-derived fields and library fingerprint after its
    /// library changed. Operator state (settings, schedule, active) is kept.
    fn update_worker_library(
        &self,
        identifier: &str,
        meta: &WorkerMetadata<'_>,
        lib: &LibraryFingerprint,
    ) -> Result<bool, StoreError> {
        let n = self
            .conn
            .execute(
                "UPDATE workers SET scope = ?2, title = ?3, description = ?4, icon = ?5,
                    version = ?6, manifest = ?7, library_path = ?8, library_size = ?9,
                    library_mtime_ns = ?10, library_sha256 = ?11, updated_at = ?12
                 WHERE identifier = ?1",
                params![
                    identifier,
                    meta.scope,
                    meta.title,
                    meta.description,
                    meta.icon,
                    meta.version,
                    meta.manifest,
                    lib.path,
                    lib.size as i64,
                    lib.mtime_ns,
                    lib.sha256,
                    now_ms()
                ],
            )
            .context("update worker")?;
        Ok(n > 0)
    }

    /// Like [`Registry::update_worker_library`], and deactivates the worker with
    /// `reason` in the same statement.
    fn update_worker_library_held(
        &self,
        identifier: &str,
        meta: &WorkerMetadata<'_>,
        lib: &LibraryFingerprint,
        reason: &str,
    ) -> Result<bool, StoreError> {
        let n = self
            .conn
            .execute(
                "UPDATE workers SET scope = ?2, title = ?3, description = ?4, icon = ?5,
                    version = ?6, manifest = ?7, library_path = ?8, library_size = ?9,
                    library_mtime_ns = ?10, library_sha256 = ?11, updated_at = ?12,
                    active = 0, inactive_reason = ?13
                 WHERE identifier = ?1",
                params![
                    identifier,
                    meta.scope,
                    meta.title,
                    meta.description,
                    meta.icon,
                    meta.version,
                    meta.manifest,
                    lib.path,
                    lib.size as i64,
                    lib.mtime_ns,
                    lib.sha256,
                    now_ms(),
                    reason
                ],
            )
            .context("update worker")?;
        Ok(n > 0)
    }

    /// Records a new size/mtime for a library whose contents (hash) did not change, so
    /// the next rescan can skip hashing it.
    fn touch_library(&self, path: &str, size: u64, mtime_ns: i64) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE workers SET library_size = ?2, library_mtime_ns = ?3 WHERE library_path = ?1",
                params![path, size as i64, mtime_ns],
            )
            .context("update library fingerprint")?;
        Ok(())
    }

    /// Sets a worker's active flag; activating clears its inactive reason (an operator
    /// has decided). Returns false if no such worker exists.
    fn set_worker_active(&self, identifier: &str, active: bool) -> Result<bool, StoreError> {
        let n = self
            .conn
            .execute(
                "UPDATE workers SET active = ?2, updated_at = ?3,
                    inactive_reason = CASE WHEN ?2 THEN NULL ELSE inactive_reason END
                 WHERE identifier = ?1",
                params![identifier, active, now_ms()],
            )
            .context("change worker state")?;
        Ok(n > 0)
    }

    /// Replaces a worker's settings (a validated JSON object). Returns false if no such
    /// worker exists.
    fn set_worker_settings(&self, identifier: &str, settings: &str) -> Result<bool, StoreError> {
        let n = self
            .conn
            .execute(
                "UPDATE workers SET settings = ?2, updated_at = ?3 WHERE identifier = ?1",
                params![identifier, settings, now_ms()],
            )
            .context("save worker settings")?;
        Ok(n > 0)
    }

    /// Removes a worker from the registry (its tasks are kept).
    fn delete_worker(&self, identifier: &str) -> Result<bool, StoreError> {
        let n = self
            .conn
            .execute("DELETE FROM workers WHERE identifier = ?1", [identifier])
            .context("delete worker")?;
        Ok(n > 0)
    }
}
