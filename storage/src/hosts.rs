//! Hosts: the `stask serve` processes sharing a store, what each can run, and whether
//! each is alive.
//!
//! Every engine registers itself when it starts (and again when its plugins change)
//! with the content hashes of the libraries it holds, so a worker can be shown with the
//! hosts able to run it, and one that no host can run is shown as such instead of
//! waiting silently. Whether a host is alive is its lease ([`crate::Leases`]): a host's
//! id is its owner id.

use crate::error::StoreError;

/// A registered host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRecord {
    /// The owner id of its engine (`machine/pid/start`): unique per process.
    pub id: String,
    /// The machine's name.
    pub name: String,
    /// Its stask version.
    pub version: String,
    /// Tasks it runs at once.
    pub capacity: i64,
    /// SHA-256 of every library it holds (sorted).
    pub libraries: Vec<String>,
    /// When it started (ms since epoch).
    pub started_at: i64,
    /// When its lease was last renewed (`None`: never, or released at a clean stop).
    pub renewed_at: Option<i64>,
}

/// The hosts of a store.
pub trait Hosts {
    /// Registers a host, or replaces its record (`renewed_at` is ignored: it is the
    /// lease's).
    fn register_host(&mut self, host: &HostRecord) -> Result<(), StoreError>;

    /// Every registered host with its lease's last renewal, by id.
    fn list_hosts(&self) -> Result<Vec<HostRecord>, StoreError>;

    /// Forgets a host (at a clean stop). Unknown ids are ignored.
    fn remove_host(&mut self, id: &str) -> Result<(), StoreError>;

    /// Forgets hosts whose lease was last renewed before `cutoff` (or never and that
    /// started before it); returns how many.
    fn forget_hosts_silent_since(&mut self, cutoff: i64) -> Result<usize, StoreError>;
}
