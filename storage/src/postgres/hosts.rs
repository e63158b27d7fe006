//! Hosts on PostgreSQL: every `stask serve` sharing the database.

use super::{Context, PgStore};
use crate::error::StoreError;
use crate::hosts::{HostRecord, Hosts};

impl Hosts for PgStore {
    fn register_host(&mut self, h: &HostRecord) -> Result<(), StoreError> {
        let libraries = serde_json::to_string(&h.libraries).expect("strings serialise");
        self.client()?
            .execute(
                "INSERT INTO hosts (id, name, version, capacity, libraries, started_at)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (id) DO UPDATE SET name = excluded.name,
                    version = excluded.version, capacity = excluded.capacity,
                    libraries = excluded.libraries, started_at = excluded.started_at",
                &[
                    &h.id,
                    &h.name,
                    &h.version,
                    &h.capacity,
                    &libraries,
                    &h.started_at,
                ],
            )
            .context("register host")?;
        Ok(())
    }

    fn list_hosts(&self) -> Result<Vec<HostRecord>, StoreError> {
        let rows = self
            .client()?
            .query(
                "SELECT h.id, h.name, h.version, h.capacity, h.libraries, h.started_at,
                        o.renewed_at
                 FROM hosts h LEFT JOIN owners o ON o.id = h.id ORDER BY h.id COLLATE \"C\"",
                &[],
            )
            .context("list hosts")?;
        Ok(rows
            .iter()
            .map(|r| HostRecord {
                id: r.get(0),
                name: r.get(1),
                version: r.get(2),
                capacity: r.get(3),
                libraries: serde_json::from_str(r.get::<_, &str>(4)).unwrap_or_default(),
                started_at: r.get(5),
                renewed_at: r.get(6),
            })
            .collect())
    }

    fn remove_host(&mut self, id: &str) -> Result<(), StoreError> {
        self.client()?
            .execute("DELETE FROM hosts WHERE id = $1", &[&id])
            .context("remove host")?;
        Ok(())
    }

    fn forget_hosts_silent_since(&mut self, cutoff: i64) -> Result<usize, StoreError> {
        let n = self
            .client()?
            .execute(
                "DELETE FROM hosts h USING hosts x LEFT JOIN owners o ON o.id = x.id
                 WHERE h.id = x.id AND COALESCE(o.renewed_at, x.started_at) < $1",
                &[&cutoff],
            )
            .context("forget silent hosts")?;
        Ok(n as usize)
    }
}
