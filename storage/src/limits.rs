//! Limits per key: at most N running tasks, or at most N starts per period, among the
//! tasks of one worker that share a key — enforced by the claim itself, on every
//! backend and across hosts.
//!
//! The host decides which rule a task falls under and renders its key when the task is
//! created ([`TaskLimit`], stored with the task); the rules' numbers live in the store
//! ([`LimitRule`], per worker, replaced whenever the worker's manifest or settings
//! change), so a changed number applies to tasks already queued.
//!
//! A claim that meets a task whose key is at its limit does not take it and *parks* it:
//! its `run_after` moves a little into the future, so the claim's own "due" condition
//! keeps it out of the next claims without a join on the hot path. A task parked for
//! concurrency is made due again by the finish that frees a slot of its key (in the
//! finishing transaction, one parked task per finished one); one parked for a rate
//! becomes due when the oldest start of its period leaves the window, and the claim
//! that takes it releases the next of its key. Parking is only ever a hint:
//! correctness comes from the claim counting the key's running tasks and recent starts
//! before taking a task. The first task of a key that a claim parks is looked at again
//! after [`PARK_RECHECK_MS`] (or when its rate slot frees) whatever happens; the others
//! of the key wait [until released](PARKED_UNTIL_RELEASED), so a long queue on one key
//! comes back a task at a time rather than thousands at once into the claims' way,
//! hiding the tasks behind it. Whatever ends a key's running or waiting task releases
//! the next parked one: a finish, a start under a rate, a cancel of a pending task.

use std::collections::HashMap;

use crate::error::StoreError;

/// How long a task parked on a concurrency limit waits at most before a claim looks at
/// it again, should no finish release it (a host that died with the slot's task, a
/// release that ran before the park committed on another host).
pub const PARK_RECHECK_MS: i64 = 5_000;

/// The `run_after` of a parked task that only a release makes due: the finish of a
/// running task of its key, the start of one under a rate, or the cancel of a pending
/// one releases the next of the key in claim order. The first task of a key a claim
/// parks carries a time instead, so each key is looked at again without a release.
pub const PARKED_UNTIL_RELEASED: i64 = i64::MAX - 1;

/// The rule a task falls under and its key, fixed when the task is created.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskLimit {
    /// The rule's identity within its worker ([`LimitRule::rule`]).
    pub rule: String,
    /// The key rendered from the task (`shop:42`): tasks of one worker with the same
    /// rule and key share the rule's limits.
    pub key: String,
}

/// A worker's limit rule: its numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitRule {
    /// Its identity within the worker (what [`TaskLimit::rule`] names).
    pub rule: String,
    /// At most this many running tasks per key; `None`: no concurrency limit.
    pub concurrency: Option<u32>,
    /// At most `rate.0` starts per key within any `rate.1` milliseconds; `None`: no
    /// rate limit.
    pub rate: Option<(u32, i64)>,
}

/// How much of a key's limits is in use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimitUsage {
    /// Its tasks running now.
    pub running: i64,
    /// Its tasks started within the rule's rate period (0 without a rate).
    pub started: i64,
    /// The oldest of those starts (ms), when there is one: a start slot frees when it
    /// leaves the window.
    pub oldest_start: Option<i64>,
}

/// The limit rules of the store's workers.
pub trait Limits {
    /// Replaces the limit rules of `worker` with `rules` (none: its tasks run
    /// unlimited, whatever keys they were created with).
    fn set_limit_rules(&mut self, worker: &str, rules: &[LimitRule]) -> Result<(), StoreError>;

    /// The limit rules of `worker`, by rule.
    fn limit_rules(&self, worker: &str) -> Result<Vec<LimitRule>, StoreError>;

    /// The rule of `worker` named `limit.rule` (`None` when it has no such rule) and
    /// how much of it `limit.key` uses at `now`.
    fn limit_usage(
        &self,
        worker: &str,
        limit: &TaskLimit,
        now: i64,
    ) -> Result<Option<(LimitRule, LimitUsage)>, StoreError>;
}

/// The limit of a stored task from its two columns.
pub(crate) fn limit_of(rule: Option<String>, key: Option<String>) -> Option<TaskLimit> {
    Some(TaskLimit {
        rule: rule?,
        key: key?,
    })
}

/// A due task a claim looked at, in claim order.
#[derive(Debug, Clone)]
pub(crate) struct Candidate {
    /// Its id.
    pub id: i64,
    /// Its worker.
    pub worker: String,
    /// Its limit, when it has one.
    pub limit: Option<TaskLimit>,
}

/// A key of a worker, as the claim counts it.
pub(crate) type KeyOf = (String, TaskLimit);

/// What a claim does with the candidates it looked at.
#[derive(Debug, Default)]
pub(crate) struct Choice {
    /// Ids to take, in claim order.
    pub take: Vec<i64>,
    /// Ids to park on a concurrency limit (until now + [`PARK_RECHECK_MS`], or a finish).
    pub park: Vec<i64>,
    /// Ids to park on a rate limit, with the time a start slot frees.
    pub wait: Vec<(i64, i64)>,
    /// Ids to park [until released](PARKED_UNTIL_RELEASED): those of a key this claim
    /// already parked one of.
    pub until_released: Vec<i64>,
    /// Ids taken under a rule with a rate: the claim releases the next parked task of
    /// each one's key, which parks again with the time the next start slot frees.
    pub rated: Vec<i64>,
}

impl Choice {
    /// Every task to park, with the time it is looked at again.
    pub fn parks(&self, now: i64) -> Vec<(i64, i64)> {
        self.park
            .iter()
            .map(|id| (*id, now + PARK_RECHECK_MS))
            .chain(self.wait.iter().copied())
            .chain(
                self.until_released
                    .iter()
                    .map(|id| (*id, PARKED_UNTIL_RELEASED)),
            )
            .collect()
    }
}

/// Decides, in claim order, which candidates a claim takes (at most `want`): a task
/// without a limit, or whose rule is gone, always; one with a limit only while its key
/// has room, counting what this claim already took. `rules` holds the rules of the
/// candidates' workers, `usage` the usage of their keys (missing: none in use).
/// Candidates after the claim is full are left alone.
pub(crate) fn choose(
    candidates: &[Candidate],
    rules: &HashMap<(String, String), LimitRule>,
    usage: &HashMap<KeyOf, LimitUsage>,
    want: usize,
    now: i64,
) -> Choice {
    let mut choice = Choice::default();
    let mut taken: HashMap<KeyOf, i64> = HashMap::new();
    // Keys this claim parked a task of (the first of each comes back by itself).
    let mut parked: std::collections::HashSet<KeyOf> = std::collections::HashSet::new();
    for c in candidates {
        if choice.take.len() >= want {
            break;
        }
        let Some(limit) = &c.limit else {
            choice.take.push(c.id);
            continue;
        };
        let Some(rule) = rules.get(&(c.worker.clone(), limit.rule.clone())) else {
            choice.take.push(c.id);
            continue;
        };
        let key = (c.worker.clone(), limit.clone());
        let used = usage.get(&key).copied().unwrap_or_default();
        let extra = taken.get(&key).copied().unwrap_or(0);
        if let Some(max) = rule.concurrency {
            if used.running + extra >= i64::from(max) {
                if parked.contains(&key) {
                    choice.until_released.push(c.id);
                } else {
                    choice.park.push(c.id);
                    parked.insert(key);
                }
                continue;
            }
        }
        if let Some((max, period)) = rule.rate {
            if used.started + extra >= i64::from(max) {
                // The oldest start leaves the window at oldest + period; starts taken by
                // this very claim leave it at now + period.
                let frees = match used.oldest_start {
                    Some(oldest) if used.started > 0 => oldest + period,
                    _ => now + period,
                };
                // The first waits for the slot; the others of the key for a release
                // (its start releases the next).
                if parked.contains(&key) {
                    choice.until_released.push(c.id);
                } else {
                    choice.wait.push((c.id, frees.max(now + 1)));
                    parked.insert(key);
                }
                continue;
            }
            choice.rated.push(c.id);
        }
        *taken.entry(key).or_default() += 1;
        choice.take.push(c.id);
    }
    choice
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(id: i64, key: Option<&str>) -> Candidate {
        Candidate {
            id,
            worker: "w".into(),
            limit: key.map(|k| TaskLimit {
                rule: "r".into(),
                key: k.into(),
            }),
        }
    }

    fn rules(
        concurrency: Option<u32>,
        rate: Option<(u32, i64)>,
    ) -> HashMap<(String, String), LimitRule> {
        HashMap::from([(
            ("w".to_owned(), "r".to_owned()),
            LimitRule {
                rule: "r".into(),
                concurrency,
                rate,
            },
        )])
    }

    #[test]
    fn a_key_at_its_concurrency_is_parked_and_others_are_taken() {
        let c = [
            cand(1, Some("a")),
            cand(2, Some("a")),
            cand(3, Some("b")),
            cand(4, None),
        ];
        let choice = choose(&c, &rules(Some(1), None), &HashMap::new(), 10, 0);
        assert_eq!(choice.take, vec![1, 3, 4]);
        assert_eq!(choice.park, vec![2]);
    }

    /// Key "a" of worker "w" with `n` tasks running.
    fn running_on_a(n: i64) -> HashMap<KeyOf, LimitUsage> {
        let key = TaskLimit {
            rule: "r".into(),
            key: "a".into(),
        };
        HashMap::from([(
            ("w".to_owned(), key),
            LimitUsage {
                running: n,
                ..Default::default()
            },
        )])
    }

    #[test]
    fn running_tasks_of_a_key_count_against_it() {
        let c = [cand(1, Some("a"))];
        let usage = running_on_a(2);
        assert_eq!(
            choose(&c, &rules(Some(2), None), &usage, 10, 0).park,
            vec![1]
        );
        assert_eq!(
            choose(&c, &rules(Some(3), None), &usage, 10, 0).take,
            vec![1]
        );
    }

    #[test]
    fn a_rate_waits_until_the_oldest_start_leaves_the_window() {
        let c = [cand(1, Some("a")), cand(2, Some("a"))];
        let usage = HashMap::from([(
            (
                "w".to_owned(),
                TaskLimit {
                    rule: "r".into(),
                    key: "a".into(),
                },
            ),
            LimitUsage {
                running: 0,
                started: 1,
                oldest_start: Some(1_000),
            },
        )]);
        let choice = choose(&c, &rules(None, Some((2, 60_000))), &usage, 10, 5_000);
        assert_eq!(choice.take, vec![1]);
        assert_eq!(choice.wait, vec![(2, 61_000)]);
    }

    #[test]
    fn the_rest_of_a_key_waits_for_a_release_and_rated_starts_are_named() {
        let c = [
            cand(1, Some("a")),
            cand(2, Some("a")),
            cand(3, Some("a")),
            cand(4, Some("b")),
        ];
        let usage = running_on_a(1);
        let choice = choose(&c, &rules(Some(1), None), &usage, 10, 1_000);
        assert_eq!(choice.take, vec![4]);
        assert_eq!(choice.park, vec![1]);
        assert_eq!(choice.until_released, vec![2, 3]);
        assert!(choice.rated.is_empty());
        // Under a rate of one a minute, the first start is named for the release of the
        // next; the second waits for the slot, the third for a release.
        let choice = choose(
            &c,
            &rules(None, Some((1, 60_000))),
            &HashMap::new(),
            10,
            1_000,
        );
        assert_eq!(choice.take, vec![1, 4]);
        assert_eq!(choice.rated, vec![1, 4]);
        assert_eq!(choice.wait, vec![(2, 61_000)]);
        assert_eq!(choice.until_released, vec![3]);
        assert_eq!(
            choice.parks(1_000),
            vec![(2, 61_000), (3, PARKED_UNTIL_RELEASED)]
        );
    }

    #[test]
    fn a_task_whose_rule_is_gone_runs_unlimited_and_the_claim_stops_when_full() {
        let c = [cand(1, Some("a")), cand(2, Some("a")), cand(3, Some("a"))];
        let choice = choose(&c, &HashMap::new(), &HashMap::new(), 2, 0);
        assert_eq!(choice.take, vec![1, 2]);
        assert!(choice.park.is_empty());
    }
}
