//! Hosts on SQLite (usually one: the machine the file is on).

use rusqlite::params;

use super::{Context, SqliteStore};
use crate::error::StoreError;
use crate::hosts::{HostRecord, Hosts};

impl Hosts for SqliteStore {
    fn register_host(&mut self, h: &HostRecord) -> Result<(), StoreError> {
        let libraries = serde_json::to_string(&h.libraries).expect("strings serialise");
        self.conn
            .execute(
                "INSERT INTO hosts (id, name, version, capacity, libraries, started_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (id) DO UPDATE SET name = excluded.name,
                    version = excluded.version, capacity = excluded.capacity,
                    libraries = excluded.libraries, started_at = excluded.started_at",
                params![h.id, h.name, h.version, h.capacity, libraries, h.started_at],
            )
            .context("register host")?;
        Ok(())
    }

    fn list_hosts(&self) -> Result<Vec<HostRecord>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT h.id, h.name, h.version, h.capacity, h.libraries, h.started_at,
                        o.renewed_at
                 FROM hosts h LEFT JOIN owners o ON o.id = h.id ORDER BY h.id",
            )
            .context("list hosts")?;
        let rows = stmt
            .query_map([], |r| {
                let libraries: String = r.get(4)?;
                Ok(HostRecord {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    version: r.get(2)?,
                    capacity: r.get(3)?,
                    libraries: serde_json::from_str(&libraries).unwrap_or_default(),
                    started_at: r.get(5)?,
                    renewed_at: r.get(6)?,
                })
            })
            .context("list hosts")?;
        rows.collect::<Result<_, _>>().context("list hosts")
    }

    fn remove_host(&mut self, id: &str) -> Result<(), StoreError> {
        self.conn
            .execute("DELETE FROM hosts WHERE id = ?1", [id])
            .context("remove host")?;
        Ok(())
    }

    fn forget_hosts_silent_since(&mut self, cutoff: i64) -> Result<usize, StoreError> {
        self.conn
            .execute(
                "DELETE FROM hosts WHERE id IN (
                     SELECT h.id FROM hosts h LEFT JOIN owners o ON o.id = h.id
                     WHERE COALESCE(o.renewed_at, h.started_at) < ?1)",
                [cutoff],
            )
            .context("forget silent hosts")
    }
}
