//! Outcome decisions: how an attempt's end becomes the task's next state (completed,
//! retry later, failed, cancelled, requeued) and the message that tells it. A pure
//! function of the attempt and the retry policy, so every rule is unit-tested here.

use std::time::Duration;

use stask_plugin_api::manifest::TIMEOUT_SETTING;
use stask_storage::{Outcome, Status};

use super::slot::RunEnd;
use crate::task_log::format_duration;

/// What the decision needs to know about the attempt.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// Attempts started so far, this one included.
    pub attempts: i64,
    /// Attempts allowed.
    pub max_attempts: i64,
    /// An operator asked to cancel it while it ran.
    pub cancel_requested: bool,
    /// How long it ran.
    pub took: Duration,
    /// A failure that another attempt cannot fix (invalid settings, a result over the
    /// size limit): no retry.
    pub final_failure: bool,
}

/// Automatic retries: the first delay, doubling with each attempt, at most `max`.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Delay after the first failed attempt.
    pub base: Duration,
    /// Longest delay.
    pub max: Duration,
}

impl RetryPolicy {
    /// The delay after failed attempt number `attempts` (from 1).
    pub fn delay(&self, attempts: i64) -> Duration {
        let factor = 1u32
            .checked_shl((attempts.max(1) - 1) as u32)
            .unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.max)
    }
}

/// Which summary count an outcome adds to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Completed.
    Completed,
    /// Failed with no attempts left.
    Failed,
    /// Failed, queued for an automatic retry.
    Retried,
    /// Cancelled on request.
    Cancelled,
    /// Interrupted by a service stop and queued again.
    Interrupted,
}

/// The decision.
#[derive(Debug, Clone)]
pub struct Decision {
    /// What to store.
    pub outcome: Outcome,
    /// The task's status afterwards (the status of the final log line).
    pub status: Status,
    /// The final line's message.
    pub message: String,
    /// When a retry is queued: after how long.
    pub retry_in: Option<Duration>,
    /// Which count it adds to.
    pub kind: Kind,
}

/// Decides how an attempt that ended with `end` leaves its task; `now` (ms) dates a
/// retry.
pub fn decide(end: RunEnd, a: &Attempt, policy: &RetryPolicy, now: i64) -> Decision {
    let took = format_duration(a.took);
    match end {
        RunEnd::Ok(result) => Decision {
            outcome: Outcome::Completed { result },
            status: Status::Completed,
            message: format!("Task completed successfully ({took})"),
            retry_in: None,
            kind: Kind::Completed,
        },
        RunEnd::Interrupted => Decision {
            outcome: Outcome::Requeued,
            status: Status::Pending,
            message: format!(
                "Interrupted after {took} because the service stopped; queued again (this attempt does not count)"
            ),
            retry_in: None,
            kind: Kind::Interrupted,
        },
        RunEnd::Err(_) | RunEnd::KilledAfterCancel(_) if a.cancel_requested => {
            let message = match end {
                RunEnd::KilledAfterCancel(grace) => format!(
                    "Task cancelled after {took}: the worker did not stop within {} and was killed",
                    format_duration(grace)
                ),
                _ => format!("Task cancelled after {took}"),
            };
            Decision {
                outcome: Outcome::Cancelled {
                    message: message.clone(),
                },
                status: Status::Cancelled,
                message,
                retry_in: None,
                kind: Kind::Cancelled,
            }
        }
        other => {
            let final_failure = a.final_failure || matches!(other, RunEnd::Refused(_));
            let error = match other {
                RunEnd::Err(e) | RunEnd::Crashed(e) | RunEnd::StartFailed(e) | RunEnd::Refused(e) => e,
                RunEnd::TimedOut(limit) => format!(
                    "timed out after {}: the run exceeded the worker's time limit and was killed (change it with the `{TIMEOUT_SETTING}` setting)",
                    format_duration(limit)
                ),
                RunEnd::KilledAfterCancel(grace) => {
                    format!("killed after {}", format_duration(grace))
                }
                RunEnd::Ok(_) | RunEnd::Interrupted => unreachable!("handled above"),
            };
            if !final_failure && a.attempts < a.max_attempts {
                let delay = policy.delay(a.attempts);
                let message = format!(
                    "Attempt {} of {} failed: {error}; retrying in {}",
                    a.attempts,
                    a.max_attempts,
                    format_duration(delay)
                );
                Decision {
                    outcome: Outcome::Failed {
                        error,
                        retry_at: Some(now + delay.as_millis() as i64),
                    },
                    status: Status::Pending,
                    message,
                    retry_in: Some(delay),
                    kind: Kind::Retried,
                }
            } else {
                Decision {
                    message: format!("Task failed after {took}: {error}"),
                    outcome: Outcome::Failed {
                        error,
                        retry_at: None,
                    },
                    status: Status::Failed,
                    retry_in: None,
                    kind: Kind::Failed,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: RetryPolicy = RetryPolicy {
        base: Duration::from_secs(2),
        max: Duration::from_secs(10),
    };

    fn attempt(attempts: i64, max_attempts: i64) -> Attempt {
        Attempt {
            attempts,
            max_attempts,
            cancel_requested: false,
            took: Duration::from_millis(1500),
            final_failure: false,
        }
    }

    #[test]
    fn success_completes_with_its_result() {
        let d = decide(RunEnd::Ok("{\"n\":1}".into()), &attempt(1, 3), &POLICY, 0);
        assert_eq!((d.status, d.kind), (Status::Completed, Kind::Completed));
        assert!(matches!(d.outcome, Outcome::Completed { ref result } if result == "{\"n\":1}"));
        assert_eq!(d.message, "Task completed successfully (1.5s)");
    }

    #[test]
    fn failures_retry_with_doubling_delays_until_attempts_run_out() {
        let d = decide(RunEnd::Err("boom".into()), &attempt(1, 3), &POLICY, 1_000);
        assert_eq!((d.status, d.kind), (Status::Pending, Kind::Retried));
        assert_eq!(d.retry_in, Some(Duration::from_secs(2)));
        assert!(
            matches!(d.outcome, Outcome::Failed { retry_at: Some(3_000), ref error } if error == "boom")
        );
        assert_eq!(d.message, "Attempt 1 of 3 failed: boom; retrying in 2.0s");
        let d = decide(
            RunEnd::Crashed("SIGSEGV".into()),
            &attempt(2, 3),
            &POLICY,
            0,
        );
        assert_eq!(d.retry_in, Some(Duration::from_secs(4)));
        let d = decide(RunEnd::Err("boom".into()), &attempt(3, 3), &POLICY, 0);
        assert_eq!((d.status, d.kind), (Status::Failed, Kind::Failed));
        assert!(matches!(d.outcome, Outcome::Failed { retry_at: None, .. }));
        assert_eq!(d.message, "Task failed after 1.5s: boom");
    }

    #[test]
    fn delays_are_capped() {
        assert_eq!(POLICY.delay(1), Duration::from_secs(2));
        assert_eq!(POLICY.delay(3), Duration::from_secs(8));
        assert_eq!(POLICY.delay(4), Duration::from_secs(10));
        assert_eq!(POLICY.delay(80), Duration::from_secs(10));
    }

    #[test]
    fn a_final_failure_is_not_retried() {
        let mut a = attempt(1, 3);
        a.final_failure = true;
        let d = decide(RunEnd::Err("bad settings".into()), &a, &POLICY, 0);
        assert_eq!(d.kind, Kind::Failed);
    }

    #[test]
    fn a_refused_result_is_not_retried() {
        let d = decide(
            RunEnd::Refused("too large".into()),
            &attempt(1, 3),
            &POLICY,
            0,
        );
        assert_eq!((d.status, d.kind), (Status::Failed, Kind::Failed));
        assert_eq!(d.message, "Task failed after 1.5s: too large");
    }

    #[test]
    fn an_error_after_a_cancel_request_is_a_cancel() {
        let mut a = attempt(1, 3);
        a.cancel_requested = true;
        let d = decide(RunEnd::Err("stopped".into()), &a, &POLICY, 0);
        assert_eq!((d.status, d.kind), (Status::Cancelled, Kind::Cancelled));
        let d = decide(
            RunEnd::KilledAfterCancel(Duration::from_secs(5)),
            &a,
            &POLICY,
            0,
        );
        assert!(
            d.message.contains("did not stop within 5.0s"),
            "{}",
            d.message
        );
        // A crash is a crash even after a cancel request.
        let d = decide(RunEnd::Crashed("SIGABRT".into()), &a, &POLICY, 0);
        assert_eq!(d.kind, Kind::Retried);
    }

    #[test]
    fn timeouts_name_the_setting_and_interruptions_do_not_count() {
        let d = decide(
            RunEnd::TimedOut(Duration::from_secs(60)),
            &attempt(3, 3),
            &POLICY,
            0,
        );
        assert!(d.message.contains("timed out after 1m 0s"), "{}", d.message);
        assert!(d.message.contains(TIMEOUT_SETTING));
        let d = decide(RunEnd::Interrupted, &attempt(3, 3), &POLICY, 0);
        assert_eq!((d.status, d.kind), (Status::Pending, Kind::Interrupted));
        assert!(matches!(d.outcome, Outcome::Requeued));
    }
}
