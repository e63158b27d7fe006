//! Login throttling: after [`MAX_FAILURES`] failed password checks within [`WINDOW`]
//! for a user name, or from a client address, further attempts for it are refused
//! (HTTP 429 with `Retry-After`) until the oldest failure it counts leaves the window.
//! Refused attempts are not checked at all, so guessing cannot go on in the background.
//! Logins and the current password of a password change count together.
//!
//! The failures are kept in the store ([`stask_storage::Accounts`]), so every service
//! sharing it — the processes of one home, the hosts of one PostgreSQL database — counts
//! the same failures, and a lock-out holds on all of them; a restart forgets nothing.
//! Times are the wall clock in milliseconds, as everywhere in the store (hosts of one
//! database are expected to keep their clocks in sync). A check costs one statement;
//! recording its outcome one more.
//!
//! The user-name key holds a SHA-256 of the name, not the name: what people type into
//! the name field (sometimes a password) is not kept, and every key is short.

use std::net::IpAddr;
use std::time::Duration;

use stask_storage::{Store, StoreError};

use super::secret_hash;

/// Failed password checks allowed per key within [`WINDOW`].
pub const MAX_FAILURES: u32 = 5;

/// The window failures are counted in.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);

/// The throttling keys of one password check: the user name (case-insensitive) and
/// the client address each count failures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    user: String,
    addr: String,
}

impl Attempt {
    /// A check of `name`'s password asked from `client`.
    pub fn new(name: &str, client: IpAddr) -> Attempt {
        Attempt {
            user: format!("user:{}", secret_hash(&name.to_lowercase())),
            addr: format!("addr:{client}"),
        }
    }

    fn keys(&self) -> [&str; 2] {
        [&self.user, &self.addr]
    }

    /// `Some(wait)` when the name or the address is blocked at `now` (ms): how long
    /// until an attempt is allowed again (at least a millisecond).
    pub fn blocked_for(&self, store: &dyn Store, now: i64) -> Result<Option<Duration>, StoreError> {
        let until = store.login_blocked_until(&self.keys(), now, MAX_FAILURES, window_ms())?;
        Ok(until.map(|t| Duration::from_millis(t.saturating_sub(now).max(1) as u64)))
    }

    /// Records a failed check at `now` for the name and the address; returns whether
    /// one of them is blocked by it (to log the lock-out once).
    pub fn failed(&self, store: &mut dyn Store, now: i64) -> Result<bool, StoreError> {
        let counts = store.record_login_failure(&self.keys(), now, window_ms())?;
        Ok(counts.contains(&i64::from(MAX_FAILURES)))
    }

    /// A successful check forgets the failures of the name. The address's are kept:
    /// an attacker with one account could otherwise reset the counter of their address
    /// between guesses at other accounts.
    pub fn succeeded(&self, store: &dyn Store) -> Result<(), StoreError> {
        store.clear_login_failures(&self.user)
    }
}

fn window_ms() -> i64 {
    WINDOW.as_millis() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_the_name_and_the_address_until_the_oldest_counted_failure_expires() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = stask_storage::open_sqlite(&dir.path().join("stask.db")).unwrap();
        let s = &mut *store;
        let (ip1, ip2): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "::2".parse().unwrap());
        let ann = Attempt::new("Ann", ip1);
        let t0 = 1_000_000;
        for i in 0..i64::from(MAX_FAILURES) {
            assert_eq!(ann.blocked_for(s, t0 + i * 1_000).unwrap(), None);
            let blocks = ann.failed(s, t0 + i * 1_000).unwrap();
            assert_eq!(blocks, i + 1 == i64::from(MAX_FAILURES), "failure {i}");
        }
        let wait = ann.blocked_for(s, t0 + 10_000).unwrap().unwrap();
        assert_eq!(wait, WINDOW - Duration::from_secs(10));
        // Another user from the same address is blocked too; the same user (whatever
        // the case of the name) from elsewhere too.
        assert!(Attempt::new("bob", ip1)
            .blocked_for(s, t0 + 10_000)
            .unwrap()
            .is_some());
        assert!(Attempt::new("ANN", ip2)
            .blocked_for(s, t0 + 10_000)
            .unwrap()
            .is_some());
        assert_eq!(
            Attempt::new("bob", ip2)
                .blocked_for(s, t0 + 10_000)
                .unwrap(),
            None
        );
        let expired = t0 + window_ms();
        assert_eq!(ann.blocked_for(s, expired).unwrap(), None);
        // A success forgets the name, not the address.
        ann.succeeded(s).unwrap();
        assert_eq!(
            Attempt::new("ann", ip2)
                .blocked_for(s, t0 + 10_000)
                .unwrap(),
            None
        );
        assert!(ann.blocked_for(s, t0 + 10_000).unwrap().is_some());
    }

    #[test]
    fn keys_are_short_whatever_the_name() {
        let long = Attempt::new(&"x\0".repeat(10_000), "::1".parse().unwrap());
        assert!(long
            .keys()
            .iter()
            .all(|k| k.len() <= stask_storage::MAX_THROTTLE_KEY_BYTES && !k.contains('\0')));
        assert_eq!(
            Attempt::new("Ann", "::1".parse().unwrap()),
            Attempt::new("aNN", "::1".parse().unwrap())
        );
    }
}
