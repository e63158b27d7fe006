//! Login throttling: after [`MAX_FAILURES`] failed logins within [`WINDOW`] for a user
//! name, or from a client address, further attempts for it are refused (HTTP 429 with
//! `Retry-After`) until the oldest failure leaves the window. Refused attempts are not
//! checked at all, so guessing cannot go on in the background.
//!
//! Kept in memory: a restart forgets failures, which costs an attacker a restart of the
//! service they cannot cause.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Failed logins allowed per key within [`WINDOW`].
pub const MAX_FAILURES: usize = 5;

/// The window failures are counted in.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);

/// Keys tracked at most; past this, keys with no failure left in the window are
/// dropped (spraying random user names cannot grow memory without bound).
const MAX_KEYS: usize = 10_000;

/// Failed-login counters per key (`user:NAME`, `addr:IP`).
#[derive(Debug)]
pub struct LoginLimiter {
    max_failures: usize,
    window: Duration,
    failures: HashMap<String, VecDeque<Instant>>,
}

impl Default for LoginLimiter {
    fn default() -> Self {
        LoginLimiter::new(MAX_FAILURES, WINDOW)
    }
}

impl LoginLimiter {
    /// A limiter allowing `max_failures` per `window`.
    pub fn new(max_failures: usize, window: Duration) -> Self {
        LoginLimiter {
            max_failures,
            window,
            failures: HashMap::new(),
        }
    }

    fn expire(&mut self, key: &str, now: Instant) {
        if let Some(q) = self.failures.get_mut(key) {
            while q
                .front()
                .is_some_and(|t| now.duration_since(*t) >= self.window)
            {
                q.pop_front();
            }
            if q.is_empty() {
                self.failures.remove(key);
            }
        }
    }

    /// `Some(wait)` when any of `keys` is blocked: how long until an attempt is
    /// allowed again.
    pub fn blocked(&mut self, keys: &[String], now: Instant) -> Option<Duration> {
        let mut wait: Option<Duration> = None;
        for key in keys {
            self.expire(key, now);
            if let Some(q) = self.failures.get(key) {
                if q.len() >= self.max_failures {
                    let oldest = q[q.len() - self.max_failures];
                    let left = self.window.saturating_sub(now.duration_since(oldest));
                    wait = Some(wait.map_or(left, |w| w.max(left)));
                }
            }
        }
        wait
    }

    /// Records a failed attempt for every key.
    pub fn failed(&mut self, keys: &[String], now: Instant) {
        if self.failures.len() >= MAX_KEYS {
            let window = self.window;
            self.failures
                .retain(|_, q| q.back().is_some_and(|t| now.duration_since(*t) < window));
        }
        for key in keys {
            let q = self.failures.entry(key.clone()).or_default();
            q.push_back(now);
            // Only the newest `max_failures` matter.
            while q.len() > self.max_failures {
                q.pop_front();
            }
        }
    }

    /// Forgets the failures of `key` (a user who logged in). Client addresses are not
    /// cleared by a success: an attacker with one account could otherwise reset the
    /// counter of their address between guesses at other accounts.
    pub fn succeeded(&mut self, key: &str) {
        self.failures.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_the_limit_until_the_oldest_failure_expires() {
        let mut l = LoginLimiter::new(3, Duration::from_secs(60));
        let t0 = Instant::now();
        let keys = vec!["user:ann".to_owned(), "addr:1".to_owned()];
        for i in 0..3 {
            assert_eq!(l.blocked(&keys, t0 + Duration::from_secs(i)), None);
            l.failed(&keys, t0 + Duration::from_secs(i));
        }
        let wait = l.blocked(&keys, t0 + Duration::from_secs(10)).unwrap();
        assert_eq!(wait, Duration::from_secs(50));
        // Another user from the same address is blocked too; the same user elsewhere too.
        assert!(l
            .blocked(
                &["user:bob".into(), "addr:1".into()],
                t0 + Duration::from_secs(10)
            )
            .is_some());
        assert!(l
            .blocked(
                &["user:ann".into(), "addr:2".into()],
                t0 + Duration::from_secs(10)
            )
            .is_some());
        assert_eq!(l.blocked(&keys, t0 + Duration::from_secs(61)), None);
        l.succeeded("user:ann");
        assert_eq!(l.blocked(&["user:ann".into()], t0), None);
    }
}
