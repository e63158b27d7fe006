//! The worker registry: one row per worker identifier, and what removed workers left
//! (`removed_workers`, `removed_schedules`) until their identifier is registered again.

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::schedules;
use super::{Context, SqliteStore};
use crate::error::StoreError;
use crate::now_ms;
use crate::registry::{
    LibraryFingerprint, Registry, RemovedWorker, Restorer, WorkerMetadata, WorkerRecord,
};

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

/// What is remembered of removed worker `identifier`, with its schedule.
fn removed_worker(
    conn: &Connection,
    identifier: &str,
) -> Result<Option<RemovedWorker>, StoreError> {
    let Some(mut removed) = conn
        .query_row(
            "SELECT identifier, library_sha256, settings, active, inactive_reason, removed_at
             FROM removed_workers WHERE identifier = ?1",
            [identifier],
            |r| {
                Ok(RemovedWorker {
                    identifier: r.get(0)?,
                    library_sha256: r.get(1)?,
                    settings: r.get(2)?,
                    active: r.get(3)?,
                    inactive_reason: r.get(4)?,
                    schedule: None,
                    removed_at: r.get(5)?,
                })
            },
        )
        .optional()
        .context("read removed worker")?
    else {
        return Ok(None);
    };
    removed.schedule = conn
        .query_row(
            &format!(
                "SELECT {} FROM removed_schedules WHERE worker = ?1",
                schedules::COLUMNS
            ),
            [identifier],
            schedules::from_row,
        )
        .optional()
        .context("read removed schedule")?;
    Ok(Some(removed))
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

    /// Registers new workers in one transaction: all or none; remembered workers get
    /// back what `restore` decides and their schedule.
    fn register_workers(
        &mut self,
        workers: &[(String, WorkerMetadata<'_>, LibraryFingerprint, bool)],
        restore: &mut Restorer<'_>,
    ) -> Result<Vec<RemovedWorker>, StoreError> {
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
        let mut restored = Vec::new();
        for (identifier, meta, lib, active) in workers {
            position += 1;
            let removed = removed_worker(&tx, identifier)?;
            let (settings, active, reason) = match &removed {
                Some(r) => {
                    let back = restore(r, lib);
                    (back.settings, back.active, back.inactive_reason)
                }
                None => ("{}".to_owned(), *active, None),
            };
            tx.execute(
                "INSERT INTO workers (identifier, scope, title, description, icon, version,
                    library_path, library_size, library_mtime_ns, library_sha256, manifest,
                    settings, active, position, created_at, updated_at, inactive_reason)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?15,
                    ?16)",
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
                    settings,
                    active,
                    position,
                    now,
                    reason
                ],
            )
            .context(&format!("register worker '{identifier}'"))?;
            if let Some(r) = removed {
                let cols = schedules::COLUMNS;
                tx.execute(
                    &format!(
                        "INSERT INTO schedules ({cols}) SELECT {cols} FROM removed_schedules
                         WHERE worker = ?1"
                    ),
                    [identifier],
                )
                .context("restore schedule")?;
                tx.execute(
                    "DELETE FROM removed_schedules WHERE worker = ?1",
                    [identifier],
                )
                .context("forget removed schedule")?;
                tx.execute(
                    "DELETE FROM removed_workers WHERE identifier = ?1",
                    [identifier],
                )
                .context("forget removed worker")?;
                restored.push(r);
            }
        }
        tx.commit().context("commit registration")?;
        Ok(restored)
    }

    /// What is remembered of a removed worker, if anything.
    fn get_removed_worker(&self, identifier: &str) -> Result<Option<RemovedWorker>, StoreError> {
        removed_worker(&self.conn, identifier)
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

    /// Removes a worker from the registry (its tasks are kept; its schedule goes with
    /// it, by the foreign key) and remembers its settings, state and schedule.
    fn delete_worker(&self, identifier: &str) -> Result<bool, StoreError> {
        // The first statement writes, so the transaction holds the write lock from the
        // copy on: what is remembered is the row that is deleted.
        let tx = self.conn.unchecked_transaction().context("begin removal")?;
        // Replaces what an earlier removal of the identifier left (a later one is newer).
        let kept = tx
            .execute(
                "INSERT INTO removed_workers (identifier, library_sha256, settings, active,
                    inactive_reason, removed_at)
                 SELECT identifier, library_sha256, settings, active, inactive_reason, ?2
                 FROM workers WHERE identifier = ?1
                 ON CONFLICT (identifier) DO UPDATE SET library_sha256 = excluded.library_sha256,
                    settings = excluded.settings, active = excluded.active,
                    inactive_reason = excluded.inactive_reason, removed_at = excluded.removed_at",
                params![identifier, now_ms()],
            )
            .context("remember removed worker")?;
        if kept > 0 {
            let cols = schedules::COLUMNS;
            tx.execute(
                "DELETE FROM removed_schedules WHERE worker = ?1",
                [identifier],
            )
            .context("remember removed schedule")?;
            tx.execute(
                &format!(
                    "INSERT INTO removed_schedules ({cols}) SELECT {cols} FROM schedules
                     WHERE worker = ?1"
                ),
                [identifier],
            )
            .context("remember removed schedule")?;
        }
        let n = tx
            .execute("DELETE FROM workers WHERE identifier = ?1", [identifier])
            .context("delete worker")?;
        tx.commit().context("commit removal")?;
        Ok(n > 0)
    }
}
