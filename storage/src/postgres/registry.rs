//! The worker registry on PostgreSQL: one row per worker identifier.
//!
//! What differs from SQLite:
//! * Registration locks the `workers` table (`SHARE ROW EXCLUSIVE`, which conflicts
//!   with itself and with writes) for its short transaction: SQLite's single writer
//!   makes "append after the highest position" atomic, here two hosts registering at
//!   once would otherwise give their workers the same display position.
//! * Lists order identifiers with `COLLATE "C"` (byte order, as SQLite's `BINARY`),
//!   whatever the database's collation.

use postgres::{GenericClient, Row};

use super::schedules;
use super::{Context, PgStore};
use crate::error::StoreError;
use crate::now_ms;
use crate::registry::{
    LibraryFingerprint, Registry, RemovedWorker, Restorer, WorkerMetadata, WorkerRecord,
};

const COLUMNS: &str = "identifier, scope, title, description, icon, version, library_path,
    library_size, library_mtime_ns, library_sha256, manifest, settings, schedule, active,
    position, created_at, updated_at, inactive_reason";

fn from_row(r: &Row) -> WorkerRecord {
    WorkerRecord {
        identifier: r.get(0),
        scope: r.get(1),
        title: r.get(2),
        description: r.get(3),
        icon: r.get(4),
        version: r.get(5),
        library: LibraryFingerprint {
            path: r.get(6),
            size: r.get::<_, i64>(7) as u64,
            mtime_ns: r.get(8),
            sha256: r.get(9),
        },
        manifest: r.get(10),
        settings: r.get(11),
        schedule: r.get(12),
        active: r.get(13),
        position: r.get(14),
        created_at: r.get(15),
        updated_at: r.get(16),
        inactive_reason: r.get(17),
    }
}

/// What is remembered of removed worker `identifier`, with its schedule.
fn removed_worker(
    client: &mut impl GenericClient,
    identifier: &str,
) -> Result<Option<RemovedWorker>, StoreError> {
    let Some(row) = client
        .query_opt(
            "SELECT identifier, library_sha256, settings, active, inactive_reason, removed_at
             FROM removed_workers WHERE identifier = $1",
            &[&identifier],
        )
        .context("read removed worker")?
    else {
        return Ok(None);
    };
    let schedule = client
        .query_opt(
            &format!(
                "SELECT {} FROM removed_schedules WHERE worker = $1",
                schedules::COLUMNS
            ),
            &[&identifier],
        )
        .context("read removed schedule")?;
    Ok(Some(RemovedWorker {
        identifier: row.get(0),
        library_sha256: row.get(1),
        settings: row.get(2),
        active: row.get(3),
        inactive_reason: row.get(4),
        schedule: schedule.as_ref().map(schedules::from_row),
        removed_at: row.get(5),
    }))
}

impl Registry for PgStore {
    /// All workers, in display order.
    fn list_workers(&self) -> Result<Vec<WorkerRecord>, StoreError> {
        let rows = self
            .client()?
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM workers ORDER BY position, identifier COLLATE \"C\""
                ),
                &[],
            )
            .context("list workers")?;
        Ok(rows.iter().map(from_row).collect())
    }

    /// One worker by identifier.
    fn get_worker(&self, identifier: &str) -> Result<Option<WorkerRecord>, StoreError> {
        let row = self
            .client()?
            .query_opt(
                &format!("SELECT {COLUMNS} FROM workers WHERE identifier = $1"),
                &[&identifier],
            )
            .context("read worker")?;
        Ok(row.as_ref().map(from_row))
    }

    /// Registers new workers in one transaction: all or none; remembered workers get
    /// back what `restore` decides and their schedule.
    fn register_workers(
        &mut self,
        workers: &[(String, WorkerMetadata<'_>, LibraryFingerprint, bool)],
        restore: &mut Restorer<'_>,
    ) -> Result<Vec<RemovedWorker>, StoreError> {
        let mut client = self.client()?;
        let mut tx = client.transaction().context("begin registration")?;
        // Positions are handed out one registration at a time, across hosts too; the
        // lock also orders this against removals (which write workers), so what is
        // remembered is read whole.
        tx.batch_execute("LOCK TABLE workers IN SHARE ROW EXCLUSIVE MODE")
            .context("wait for other registrations")?;
        let now = now_ms();
        let mut position: i64 = tx
            .query_one("SELECT COALESCE(MAX(position), 0) FROM workers", &[])
            .context("read positions")?
            .get(0);
        let mut restored = Vec::new();
        for (identifier, meta, lib, active) in workers {
            position += 1;
            let size = lib.size as i64;
            let removed = removed_worker(&mut tx, identifier)?;
            let (settings, active, reason) = match &removed {
                Some(r) => {
                    let back = restore(r, lib);
                    (back.settings, back.active, back.inactive_reason)
                }
                None => ("{}".to_owned(), *active, None),
            };
            // Dropping the transaction on an error rolls back the earlier inserts.
            tx.execute(
                "INSERT INTO workers (identifier, scope, title, description, icon, version,
                    library_path, library_size, library_mtime_ns, library_sha256, manifest,
                    settings, active, position, created_at, updated_at, inactive_reason)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15,
                    $15, $16)",
                &[
                    identifier,
                    &meta.scope,
                    &meta.title,
                    &meta.description,
                    &meta.icon,
                    &meta.version,
                    &lib.path,
                    &size,
                    &lib.mtime_ns,
                    &lib.sha256,
                    &meta.manifest,
                    &settings,
                    &active,
                    &position,
                    &now,
                    &reason,
                ],
            )
            .context(&format!("register worker '{identifier}'"))?;
            if let Some(r) = removed {
                let cols = schedules::COLUMNS;
                tx.execute(
                    &format!(
                        "INSERT INTO schedules ({cols}) SELECT {cols} FROM removed_schedules
                         WHERE worker = $1"
                    ),
                    &[identifier],
                )
                .context("restore schedule")?;
                tx.execute(
                    "DELETE FROM removed_schedules WHERE worker = $1",
                    &[identifier],
                )
                .context("forget removed schedule")?;
                tx.execute(
                    "DELETE FROM removed_workers WHERE identifier = $1",
                    &[identifier],
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
        removed_worker(&mut *self.client()?, identifier)
    }

    /// Replaces a worker's manifest-derived fields and library fingerprint after its
    /// library changed. Operator state (settings, schedule, active) is kept.
    fn update_worker_library(
        &self,
        identifier: &str,
        meta: &WorkerMetadata<'_>,
        lib: &LibraryFingerprint,
    ) -> Result<bool, StoreError> {
        let size = lib.size as i64;
        let n = self
            .client()?
            .execute(
                "UPDATE workers SET scope = $2, title = $3, description = $4, icon = $5,
                    version = $6, manifest = $7, library_path = $8, library_size = $9,
                    library_mtime_ns = $10, library_sha256 = $11, updated_at = $12
                 WHERE identifier = $1",
                &[
                    &identifier,
                    &meta.scope,
                    &meta.title,
                    &meta.description,
                    &meta.icon,
                    &meta.version,
                    &meta.manifest,
                    &lib.path,
                    &size,
                    &lib.mtime_ns,
                    &lib.sha256,
                    &now_ms(),
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
        let size = lib.size as i64;
        let n = self
            .client()?
            .execute(
                "UPDATE workers SET scope = $2, title = $3, description = $4, icon = $5,
                    version = $6, manifest = $7, library_path = $8, library_size = $9,
                    library_mtime_ns = $10, library_sha256 = $11, updated_at = $12,
                    active = FALSE, inactive_reason = $13
                 WHERE identifier = $1",
                &[
                    &identifier,
                    &meta.scope,
                    &meta.title,
                    &meta.description,
                    &meta.icon,
                    &meta.version,
                    &meta.manifest,
                    &lib.path,
                    &size,
                    &lib.mtime_ns,
                    &lib.sha256,
                    &now_ms(),
                    &reason,
                ],
            )
            .context("update worker")?;
        Ok(n > 0)
    }

    /// Records a new size/mtime for a library whose contents (hash) did not change, so
    /// the next rescan can skip hashing it.
    fn touch_library(&self, path: &str, size: u64, mtime_ns: i64) -> Result<(), StoreError> {
        self.client()?
            .execute(
                "UPDATE workers SET library_size = $2, library_mtime_ns = $3
                 WHERE library_path = $1",
                &[&path, &(size as i64), &mtime_ns],
            )
            .context("update library fingerprint")?;
        Ok(())
    }

    /// Sets a worker's active flag; activating clears its inactive reason (an operator
    /// has decided). Returns false if no such worker exists.
    fn set_worker_active(&self, identifier: &str, active: bool) -> Result<bool, StoreError> {
        let n = self
            .client()?
            .execute(
                "UPDATE workers SET active = $2, updated_at = $3,
                    inactive_reason = CASE WHEN $2 THEN NULL ELSE inactive_reason END
                 WHERE identifier = $1",
                &[&identifier, &active, &now_ms()],
            )
            .context("change worker state")?;
        Ok(n > 0)
    }

    /// Replaces a worker's settings (a validated JSON object). Returns false if no such
    /// worker exists.
    fn set_worker_settings(&self, identifier: &str, settings: &str) -> Result<bool, StoreError> {
        let n = self
            .client()?
            .execute(
                "UPDATE workers SET settings = $2, updated_at = $3 WHERE identifier = $1",
                &[&identifier, &settings, &now_ms()],
            )
            .context("save worker settings")?;
        Ok(n > 0)
    }

    /// Removes a worker from the registry (its tasks are kept; its schedule goes with
    /// it, by the foreign key) and remembers its settings, state and schedule.
    fn delete_worker(&self, identifier: &str) -> Result<bool, StoreError> {
        let mut client = self.client()?;
        let mut tx = client.transaction().context("begin removal")?;
        // The row lock first: a settings change committed meanwhile is either in the
        // copy or waits and then finds no worker.
        let found = tx
            .query_opt(
                "SELECT 1 FROM workers WHERE identifier = $1 FOR UPDATE",
                &[&identifier],
            )
            .context("lock worker")?;
        if found.is_none() {
            return Ok(false);
        }
        // Replaces what an earlier removal of the identifier left (a later one is newer).
        tx.execute(
            "INSERT INTO removed_workers (identifier, library_sha256, settings, active,
                inactive_reason, removed_at)
             SELECT identifier, library_sha256, settings, active, inactive_reason, $2
             FROM workers WHERE identifier = $1
             ON CONFLICT (identifier) DO UPDATE SET library_sha256 = excluded.library_sha256,
                settings = excluded.settings, active = excluded.active,
                inactive_reason = excluded.inactive_reason, removed_at = excluded.removed_at",
            &[&identifier, &now_ms()],
        )
        .context("remember removed worker")?;
        let cols = schedules::COLUMNS;
        tx.execute(
            "DELETE FROM removed_schedules WHERE worker = $1",
            &[&identifier],
        )
        .context("remember removed schedule")?;
        tx.execute(
            &format!(
                "INSERT INTO removed_schedules ({cols}) SELECT {cols} FROM schedules
                 WHERE worker = $1"
            ),
            &[&identifier],
        )
        .context("remember removed schedule")?;
        let n = tx
            .execute("DELETE FROM workers WHERE identifier = $1", &[&identifier])
            .context("delete worker")?;
        tx.commit().context("commit removal")?;
        Ok(n > 0)
    }
}
