//! Wake-ups: telling idle services that there may be work, without polling.
//!
//! Operations that make work claimable (creating tasks, retrying, making tasks due,
//! requesting a cancel) send a wake-up themselves, so no caller can forget one. A
//! wake-up is a hint: a lost one only delays work until the services' periodic check.

use std::time::Duration;

use crate::error::StoreError;

/// Where a service waits for wake-ups.
pub trait WakeListener: Send {
    /// Blocks until a wake-up arrives or `timeout` passes; returns whether one arrived
    /// (several pending ones count as one).
    fn wait(&self, timeout: Duration) -> bool;
}

/// The wake-ups of a store.
pub trait Wakeups {
    /// Tells every listening service that there may be work. Never fails.
    fn notify_work(&self);

    /// Starts listening for wake-ups (a service does this once, at start).
    fn listen(&self) -> Result<Box<dyn WakeListener>, StoreError>;
}
