//! Limits per key on SQLite (see [`crate::limits`]): the rules, what a claim needs to
//! honour them, and the release of parked tasks when a slot frees. Every claim holds
//! the database's write lock, so counting a key's running tasks and taking one more
//! cannot race another claim.

use std::collections::HashMap;

use rusqlite::{params, Connection, OptionalExtension};

use super::{Context, SqliteStore};
use crate::error::StoreError;
use crate::limits::{Candidate, KeyOf, LimitRule, LimitUsage, Limits, TaskLimit};
use crate::wakeups::Wakeups;

fn rule_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<LimitRule> {
    let rate: Option<i64> = r.get(2)?;
    let period: Option<i64> = r.get(3)?;
    Ok(LimitRule {
        rule: r.get(0)?,
        concurrency: r
            .get::<_, Option<i64>>(1)?
            .map(|n| n.clamp(0, u32::MAX.into()) as u32),
        rate: rate
            .zip(period)
            .map(|(n, p)| (n.clamp(0, u32::MAX.into()) as u32, p.max(1))),
    })
}

/// The rules of `workers` (each once), by (worker, rule).
pub(super) fn rules_of(
    conn: &Connection,
    workers: &[&str],
) -> Result<HashMap<(String, String), LimitRule>, StoreError> {
    let mut out = HashMap::new();
    let mut stmt = conn
        .prepare_cached(
            "SELECT rule, concurrency, rate, period_ms FROM limit_rules WHERE worker = ?1",
        )
        .context("read limit rules")?;
    for w in workers {
        let rows = stmt
            .query_map([w], rule_from_row)
            .context("read limit rules")?;
        for rule in rows {
            let rule = rule.context("read limit rules")?;
            out.insert(((*w).to_owned(), rule.rule.clone()), rule);
        }
    }
    Ok(out)
}

/// The running tasks of every key of `workers` that has some: few (at most the
/// tasks running at all), so one read serves a whole claim.
fn running_of(conn: &Connection, workers: &[&str]) -> Result<HashMap<KeyOf, i64>, StoreError> {
    let mut out = HashMap::new();
    let mut stmt = conn
        .prepare_cached(
            "SELECT worker, limit_rule, limit_key, COUNT(*) FROM tasks
                 INDEXED BY tasks_limit_running
             WHERE limit_key IS NOT NULL AND status = 'running'
             GROUP BY worker, limit_rule, limit_key",
        )
        .context("count running tasks per key")?;
    let mut rows = stmt.query([]).context("count running tasks per key")?;
    while let Some(r) = rows.next().context("count running tasks per key")? {
        let worker: String = r.get(0).context("count running tasks per key")?;
        if !workers.contains(&worker.as_str()) {
            continue;
        }
        let limit = TaskLimit {
            rule: r.get(1).context("count running tasks per key")?,
            key: r.get(2).context("count running tasks per key")?,
        };
        out.insert(
            (worker, limit),
            r.get(3).context("count running tasks per key")?,
        );
    }
    Ok(out)
}

/// The starts of `key` of `worker` after `since`, and the oldest of them.
fn starts_of(
    conn: &Connection,
    worker: &str,
    key: &TaskLimit,
    since: i64,
) -> Result<(i64, Option<i64>), StoreError> {
    conn.prepare_cached(
        "SELECT COUNT(*), MIN(at) FROM limit_starts
         WHERE worker = ?1 AND rule = ?2 AND key = ?3 AND at > ?4",
    )
    .and_then(|mut s| {
        s.query_row(params![worker, key.rule, key.key, since], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
    })
    .context("count a key's recent starts")
}

/// Records a start at `now` for each of `rated` (ids of `candidates` a claim took under
/// a rule with a rate), and forgets the starts of their keys that have left the rule's
/// window.
pub(super) fn record_starts(
    conn: &Connection,
    candidates: &[Candidate],
    rules: &HashMap<(String, String), LimitRule>,
    rated: &[i64],
    now: i64,
) -> Result<(), StoreError> {
    let mut add = conn
        .prepare_cached("INSERT INTO limit_starts (worker, rule, key, at) VALUES (?1, ?2, ?3, ?4)")
        .context("record a start under a rate")?;
    let mut prune = conn
        .prepare_cached(
            "DELETE FROM limit_starts WHERE worker = ?1 AND rule = ?2 AND key = ?3 AND at <= ?4",
        )
        .context("record a start under a rate")?;
    for c in candidates.iter().filter(|c| rated.contains(&c.id)) {
        let Some(limit) = &c.limit else { continue };
        let Some((_, period)) = rules
            .get(&(c.worker.clone(), limit.rule.clone()))
            .and_then(|r| r.rate)
        else {
            continue;
        };
        prune
            .execute(params![c.worker, limit.rule, limit.key, now - period])
            .context("record a start under a rate")?;
        add.execute(params![c.worker, limit.rule, limit.key, now])
            .context("record a start under a rate")?;
    }
    Ok(())
}

/// How much of `rule` the key `key` of `worker` uses at `now`.
fn usage_of(
    conn: &Connection,
    worker: &str,
    key: &TaskLimit,
    rule: &LimitRule,
    now: i64,
) -> Result<LimitUsage, StoreError> {
    let running: i64 = conn
        .prepare_cached(
            "SELECT COUNT(*) FROM tasks INDEXED BY tasks_limit_running
             WHERE worker = ?1 AND limit_rule = ?2 AND limit_key = ?3
               AND limit_key IS NOT NULL AND status = 'running'",
        )
        .and_then(|mut s| s.query_row(params![worker, key.rule, key.key], |r| r.get(0)))
        .context("count a key's running tasks")?;
    let (started, oldest_start) = match rule.rate {
        None => (0, None),
        Some((_, period)) => starts_of(conn, worker, key, now - period)?,
    };
    Ok(LimitUsage {
        running,
        started,
        oldest_start,
    })
}

/// The rules and key usage a claim of `candidates` needs.
pub(super) type Needs = (
    HashMap<(String, String), LimitRule>,
    HashMap<KeyOf, LimitUsage>,
);

/// Reads the rules and usage the limited `candidates` need (nothing when none is
/// limited).
pub(super) fn needs(
    conn: &Connection,
    candidates: &[Candidate],
    now: i64,
) -> Result<Needs, StoreError> {
    let mut workers: Vec<&str> = candidates
        .iter()
        .filter(|c| c.limit.is_some())
        .map(|c| c.worker.as_str())
        .collect();
    if workers.is_empty() {
        return Ok(Default::default());
    }
    workers.sort_unstable();
    workers.dedup();
    let rules = rules_of(conn, &workers)?;
    let running = running_of(conn, &workers)?;
    let mut usage = HashMap::new();
    for c in candidates {
        let Some(limit) = &c.limit else { continue };
        let key = (c.worker.clone(), limit.clone());
        if usage.contains_key(&key) {
            continue;
        }
        if let Some(rule) = rules.get(&(c.worker.clone(), limit.rule.clone())) {
            let (started, oldest_start) = match rule.rate {
                None => (0, None),
                Some((_, period)) => starts_of(conn, &c.worker, limit, now - period)?,
            };
            let used = LimitUsage {
                running: running.get(&key).copied().unwrap_or(0),
                started,
                oldest_start,
            };
            usage.insert(key, used);
        }
    }
    Ok((rules, usage))
}

/// Parks the tasks `ids` until `until` (see [`crate::limits`]).
pub(super) fn park(conn: &Connection, ids: &[(i64, i64)]) -> Result<(), StoreError> {
    let mut stmt = conn
        .prepare_cached("UPDATE tasks SET parked = 1, run_after = ?2 WHERE id = ?1")
        .context("park tasks at their limit")?;
    for (id, until) in ids {
        stmt.execute(params![id, until])
            .context("park tasks at their limit")?;
    }
    Ok(())
}

/// Puts the parked tasks whose time has come back in the claim's way.
pub(super) fn unpark_due(conn: &Connection, now: i64) -> Result<(), StoreError> {
    conn.prepare_cached("UPDATE tasks SET parked = 0 WHERE parked = 1 AND run_after <= ?1")
        .and_then(|mut s| s.execute([now]))
        .context("look again at parked tasks")?;
    Ok(())
}

/// Makes due, for each task of `stopped` (attempts that just stopped running) that has
/// a key, the first task parked on that key: its slot is free now. Returns whether
/// any was released.
pub(super) fn release(conn: &Connection, stopped: &[i64], now: i64) -> Result<bool, StoreError> {
    if stopped.is_empty() {
        return Ok(false);
    }
    // Most finishes free a slot no task waits for: one probe of the (small) index of
    // parked tasks spares a statement per key. Writers take turns on SQLite, so no
    // claim parks a task between this probe and the commit.
    let any_parked: bool = conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM tasks INDEXED BY tasks_parked_until WHERE parked = 1)",
        )
        .and_then(|mut s| s.query_row([], |r| r.get(0)))
        .context("release parked tasks")?;
    if !any_parked {
        return Ok(false);
    }
    let freed = keys_of(conn, stopped)?;
    let mut counts: HashMap<&KeyOf, i64> = HashMap::new();
    for k in &freed {
        *counts.entry(k).or_default() += 1;
    }
    let mut stmt = conn
        .prepare_cached(
            "UPDATE tasks SET parked = 0, run_after = ?4
             WHERE id IN (SELECT id FROM tasks INDEXED BY tasks_parked
                          WHERE worker = ?1 AND limit_rule = ?2 AND limit_key = ?3
                            AND parked = 1 AND status = 'pending'
                          ORDER BY priority, id LIMIT ?5)",
        )
        .context("release parked tasks")?;
    let mut released = 0;
    for ((worker, limit), n) in counts {
        released += stmt
            .execute(params![worker, limit.rule, limit.key, now, n])
            .context("release parked tasks")?;
    }
    Ok(released > 0)
}

/// The keys of the tasks `ids` that have one (one read for the batch).
fn keys_of(conn: &Connection, ids: &[i64]) -> Result<Vec<KeyOf>, StoreError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut stmt = conn
        .prepare_cached(
            "SELECT t.worker, t.limit_rule, t.limit_key
             FROM json_each(?1) AS j JOIN tasks AS t ON t.id = j.value
             WHERE t.limit_key IS NOT NULL AND t.limit_rule IS NOT NULL",
        )
        .context("read the keys of finished tasks")?;
    let rows = stmt
        .query_map([super::finish::id_list(ids)], |r| {
            Ok((
                r.get::<_, String>(0)?,
                TaskLimit {
                    rule: r.get(1)?,
                    key: r.get(2)?,
                },
            ))
        })
        .context("read the keys of finished tasks")?;
    rows.collect::<Result<_, _>>()
        .context("read the keys of finished tasks")
}

impl Limits for SqliteStore {
    fn set_limit_rules(&mut self, worker: &str, rules: &[LimitRule]) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .context("set limit rules")?;
        tx.execute("DELETE FROM limit_rules WHERE worker = ?1", [worker])
            .context("set limit rules")?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO limit_rules (worker, rule, concurrency, rate, period_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .context("set limit rules")?;
            for r in rules {
                stmt.execute(params![
                    worker,
                    r.rule,
                    r.concurrency,
                    r.rate.map(|(n, _)| n),
                    r.rate.map(|(_, p)| p)
                ])
                .context("set limit rules")?;
            }
        }
        // Parked tasks are looked at again under the new numbers (a parked task was
        // due when it was parked, so it is due again at once).
        tx.execute(
            "UPDATE tasks SET parked = 0, run_after = MIN(run_after, created_at)
             WHERE parked = 1 AND worker = ?1",
            params![worker],
        )
        .context("set limit rules")?;
        tx.commit().context("set limit rules")?;
        self.notify_work();
        Ok(())
    }

    fn limit_rules(&self, worker: &str) -> Result<Vec<LimitRule>, StoreError> {
        let mut rules: Vec<LimitRule> = rules_of(&self.conn, &[worker])?.into_values().collect();
        rules.sort_by(|a, b| a.rule.cmp(&b.rule));
        Ok(rules)
    }

    fn limit_usage(
        &self,
        worker: &str,
        limit: &TaskLimit,
        now: i64,
    ) -> Result<Option<(LimitRule, LimitUsage)>, StoreError> {
        let rule = self
            .conn
            .prepare_cached(
                "SELECT rule, concurrency, rate, period_ms FROM limit_rules
                 WHERE worker = ?1 AND rule = ?2",
            )
            .and_then(|mut s| s.query_row([worker, &limit.rule], rule_from_row).optional())
            .context("read a limit rule")?;
        let Some(rule) = rule else { return Ok(None) };
        let usage = usage_of(&self.conn, worker, limit, &rule, now)?;
        Ok(Some((rule, usage)))
    }
}
