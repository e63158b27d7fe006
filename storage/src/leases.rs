//! Owner leases: how the store knows that the process that claimed a task is alive.
//!
//! Every process that claims tasks has an owner id and renews its lease at least every
//! few seconds while it runs them. A running task whose owner has not renewed within
//! the stale limit is abandoned and recovered by whoever notices (see
//! [`crate::TaskQueue::running_tasks`]). A host may add a faster local check (a dead
//! process on the same machine) on top.

use crate::error::StoreError;

/// The owner leases of a store.
pub trait Leases {
    /// Renews (or takes) `owner`'s lease at `now` (ms).
    fn renew_lease(&mut self, owner: &str, now: i64) -> Result<(), StoreError>;

    /// Gives `owner`'s lease up (the process is stopping and runs nothing any more).
    fn release_lease(&mut self, owner: &str) -> Result<(), StoreError>;

    /// Takes or keeps the leadership (who runs the store-wide chores: clean-up, the
    /// stuck-task check) for `owner` until `now + ttl_ms`: succeeds when nobody leads,
    /// the leader's term ran out, or `owner` leads already. Returns whether `owner`
    /// leads now. Atomic across processes and hosts: at most one leader at a time.
    fn try_lead(&mut self, owner: &str, now: i64, ttl_ms: i64) -> Result<bool, StoreError>;

    /// Gives the leadership up if `owner` holds it (a clean stop: another host may take
    /// it at once).
    fn resign(&mut self, owner: &str) -> Result<(), StoreError>;
}
