//! Limits per key on PostgreSQL (see [`crate::limits`]). Claims on several hosts run at
//! once, so each key is serialized by a transaction-level advisory lock on its hash: a
//! claim *tries* the locks of its candidates' keys and leaves the tasks of a key it
//! could not lock for a later claim (it never waits, so claims cannot deadlock). Under
//! the lock, a key's running tasks and recent starts are counted with a snapshot that
//! sees every claim committed before: that count, not parking, is what keeps a key
//! within its limit. The locks and what is read under them go in one round trip,
//! through functions of the schema (migrations.rs) whose statements each take a
//! snapshot of their own.
//!
//! A park that another host has not committed yet must not be missed by the finish
//! that frees its key's slot, or the key's queue waits for its recheck. Two orders
//! ensure it:
//!
//! * **Finishes: the rows of the running tasks** ([`Order::RunningRows`]). A claim that
//!   parks a task on a concurrency limit first share-locks the running tasks it counted
//!   ([`confirm_parks`]), skipping rows another transaction is changing. If it locked
//!   them all, their finishes' updates wait for its commit, and the finishes look for
//!   parked tasks in a later statement, which sees the park. If it skipped one (a
//!   finish not committed yet, which may already have looked), it parks nothing of
//!   that key and a later claim looks again. A finish so takes no lock of its own:
//!   128 lock waits and releases a batch, in a queue where nothing may ever park.
//! * **Other releases: the keys' locks** ([`Order::KeyLocks`]): a cancel of a pending
//!   task or a start under a rate waits for its keys' locks, which a parking claim holds
//!   until it commits.
//!
//! A host of the previous version parks without the share locks. During a rolling
//! upgrade, a finish on a new host may then miss its park. The first task a claim parks
//! on a key carries a recheck time ([`crate::limits::PARK_RECHECK_MS`]), so the key's
//! queue moves again within it; under a limit above one, the key may run below its
//! limit until the tasks parked then are through (each finish releases one).

use std::collections::{HashMap, HashSet};

use postgres::GenericClient;

use super::{Context, PgStore, Statements};
use crate::error::StoreError;
use crate::limits::{limit_of, Candidate, Choice, KeyOf, LimitRule, LimitUsage, Limits, TaskLimit};

/// Class of the advisory locks on limit keys (two-key form); the second key is the
/// key's hash.
const LIMIT_LOCK_CLASS: i32 = 0x5354_4b4c; // "STKL"

// The literal of PARKED_UNTIL_RELEASED in the statements and the partial index on
// parked tasks with a time (migrations.rs), which a planner can only match as written.
const _: () = assert!(crate::limits::PARKED_UNTIL_RELEASED == 9_223_372_036_854_775_806);

/// A stable 32-bit hash (FNV-1a) of a worker's key, the same on every host.
fn key_hash(worker: &str, limit: &TaskLimit) -> i32 {
    let mut h: u32 = 0x811c_9dc5;
    for part in [worker, "\u{1f}", &limit.rule, "\u{1f}", &limit.key] {
        for b in part.bytes() {
            h ^= u32::from(b);
            h = h.wrapping_mul(0x0100_0193);
        }
    }
    h as i32
}

fn rule_from(
    concurrency: Option<i64>,
    rate: Option<i64>,
    period: Option<i64>,
    rule: String,
) -> LimitRule {
    LimitRule {
        rule,
        concurrency: concurrency.map(|n| n.clamp(0, u32::MAX.into()) as u32),
        rate: rate
            .zip(period)
            .map(|(n, p)| (n.clamp(0, u32::MAX.into()) as u32, p.max(1))),
    }
}

/// The rules of `workers`, by (worker, rule).
fn rules_of(
    tx: &mut impl GenericClient,
    workers: &[&str],
    statements: &Statements,
) -> Result<HashMap<(String, String), LimitRule>, StoreError> {
    let read = statements
        .get(
            tx,
            "SELECT worker, rule, concurrency, rate, period_ms FROM limit_rules
             WHERE worker = ANY($1)",
        )
        .context("read limit rules")?;
    Ok(tx
        .query(&read, &[&workers])
        .context("read limit rules")?
        .iter()
        .map(|r| {
            let worker: String = r.get(0);
            let rule = rule_from(r.get(2), r.get(3), r.get(4), r.get(1));
            ((worker, rule.rule.clone()), rule)
        })
        .collect())
}

/// How much of `rule` the key `limit` of `worker` uses at `now`, as the task view and
/// the API show it: its running tasks and, when the rule has a rate, its starts within
/// the period. A read of its own, without the key's lock (claims read the same under
/// it, in `stask_try_limit_keys`).
fn usage_of(
    client: &mut impl GenericClient,
    worker: &str,
    limit: &TaskLimit,
    rule: &LimitRule,
    now: i64,
    statements: &Statements,
) -> Result<LimitUsage, StoreError> {
    // No rate: no start is after a NULL, so the starts read as none.
    let since: Option<i64> = rule.rate.map(|(_, period)| now - period);
    let read = statements
        .get(
            client,
            "SELECT (SELECT COUNT(*) FROM tasks
                     WHERE limit_key IS NOT NULL AND status = 'running'
                       AND worker = $1 AND limit_rule = $2 AND limit_key = $3),
                    s.n, s.oldest
             FROM (SELECT COUNT(*) AS n, MIN(at) AS oldest FROM limit_starts
                   WHERE worker = $1 AND rule = $2 AND key = $3 AND at > $4) s",
        )
        .context("read the usage of a limit key")?;
    let r = client
        .query_one(&read, &[&worker, &limit.rule, &limit.key, &since])
        .context("read the usage of a limit key")?;
    Ok(LimitUsage {
        running: r.get(0),
        started: r.get(1),
        oldest_start: r.get(2),
    })
}

/// The candidates a claim may consider, the rules of their workers and the usage of
/// their keys.
pub(super) type Prepared = (
    Vec<Candidate>,
    HashMap<(String, String), LimitRule>,
    HashMap<KeyOf, LimitUsage>,
);

/// What a claim of `candidates` may do about their limits: the candidates it may
/// consider (those of keys another claim holds are left out), the rules and the usage
/// of their keys. Takes the advisory lock of each key it keeps.
pub(super) fn prepare(
    tx: &mut impl GenericClient,
    candidates: Vec<Candidate>,
    now: i64,
    statements: &Statements,
) -> Result<Prepared, StoreError> {
    let mut workers: Vec<&str> = candidates
        .iter()
        .filter(|c| c.limit.is_some())
        .map(|c| c.worker.as_str())
        .collect();
    if workers.is_empty() {
        return Ok((candidates, HashMap::new(), HashMap::new()));
    }
    workers.sort_unstable();
    workers.dedup();
    let rules = rules_of(tx, &workers, statements)?;
    prepare_with(tx, candidates, rules, now, statements)
}

/// The rule of a candidate as the claim's reads join it (`limit_rules` columns rule,
/// concurrency, rate, period_ms: NULL when the task has no rule).
pub(super) fn joined_rule(
    r: &postgres::Row,
    first: usize,
) -> Option<((String, String), LimitRule)> {
    let rule: Option<String> = r.get(first);
    let worker: String = r.get(1);
    rule.map(|rule| {
        (
            (worker, rule.clone()),
            rule_from(r.get(first + 1), r.get(first + 2), r.get(first + 3), rule),
        )
    })
}

/// [`prepare`] with the rules of the candidates' keys already read (with the
/// candidates: a key whose rule is missing has none, and runs unlimited).
fn prepare_with(
    tx: &mut impl GenericClient,
    candidates: Vec<Candidate>,
    rules: HashMap<(String, String), LimitRule>,
    now: i64,
    statements: &Statements,
) -> Result<Prepared, StoreError> {
    let mut usage = HashMap::new();
    let mut busy = HashSet::new();
    let (keys, _) = new_keys(&candidates, 0, &rules, &usage, &busy, usize::MAX);
    try_keys(tx, &keys, &rules, now, statements, &mut usage, &mut busy)?;
    let candidates = without_busy(&candidates, &busy);
    Ok((candidates, rules, usage))
}

/// What a claim's page chose: the candidates considered, the rules and usage, the
/// choice, and the ids of candidates of keys another claim holds (left for later).
pub(super) type Chosen = (Prepared, Choice, Vec<i64>);

/// Chooses, as [`crate::limits::choose`], at most `want` of `candidates` (a page read
/// in claim order, longer than `want` so that tasks behind a busy key can fill its
/// place), locking keys and reading their usage only as far down the page as the choice
/// needs: first the first `want` distinct keys and, only when the choice falls short
/// and candidates are left, the rest of the page's (two round trips at most). A page of
/// distinct keys so locks and counts the `want` keys it takes, not the whole page's
/// (128 instead of 168 a batch).
pub(super) fn choose_within(
    tx: &mut impl GenericClient,
    candidates: Vec<Candidate>,
    rules: HashMap<(String, String), LimitRule>,
    want: usize,
    now: i64,
    statements: &Statements,
) -> Result<Chosen, StoreError> {
    if rules.is_empty() {
        let choice = crate::limits::choose(&candidates, &rules, &HashMap::new(), want, now);
        return Ok(((candidates, rules, HashMap::new()), choice, Vec::new()));
    }
    let mut usage = HashMap::new();
    let mut busy = HashSet::new();
    // Candidates before `end` have their keys locked (or found busy).
    let mut end = 0;
    let mut max_keys = want;
    loop {
        let (keys, next_end) = new_keys(&candidates, end, &rules, &usage, &busy, max_keys);
        try_keys(tx, &keys, &rules, now, statements, &mut usage, &mut busy)?;
        end = next_end;
        let considered = without_busy(&candidates[..end], &busy);
        let choice = crate::limits::choose(&considered, &rules, &usage, want, now);
        if choice.take.len() >= want || end == candidates.len() {
            let left: Vec<i64> = if busy.is_empty() {
                Vec::new()
            } else {
                candidates[..end]
                    .iter()
                    .filter(|c| {
                        c.limit
                            .as_ref()
                            .is_some_and(|l| busy.contains(&(c.worker.clone(), l.clone())))
                    })
                    .map(|c| c.id)
                    .collect()
            };
            return Ok(((considered, rules, usage), choice, left));
        }
        max_keys = usize::MAX;
    }
}

/// The limited keys (with a rule) of `candidates` from `from` on that are in neither
/// `usage` nor `busy`, each once with its lock hash, in the candidates' order, at most
/// `max` of them; and the position of the first candidate whose key would have been
/// one more (the candidates' length when none would).
fn new_keys(
    candidates: &[Candidate],
    from: usize,
    rules: &HashMap<(String, String), LimitRule>,
    usage: &HashMap<KeyOf, LimitUsage>,
    busy: &HashSet<KeyOf>,
    max: usize,
) -> (Vec<(KeyOf, i32)>, usize) {
    let mut keys: Vec<(KeyOf, i32)> = Vec::new();
    // Each key once, found with a set (a claim of 256 keys compared each with all the
    // others).
    let mut seen: HashSet<(&str, &TaskLimit)> = HashSet::new();
    for (at, c) in candidates.iter().enumerate().skip(from) {
        let Some(limit) = &c.limit else { continue };
        if !rules.contains_key(&(c.worker.clone(), limit.rule.clone())) {
            continue;
        }
        if seen.contains(&(c.worker.as_str(), limit)) {
            continue;
        }
        let key = (c.worker.clone(), limit.clone());
        if usage.contains_key(&key) || busy.contains(&key) {
            continue;
        }
        if keys.len() == max {
            return (keys, at);
        }
        seen.insert((c.worker.as_str(), limit));
        let hash = key_hash(&c.worker, limit);
        keys.push((key, hash));
    }
    (keys, candidates.len())
}

/// Tries the locks of `keys` and reads the usage of those it holds into `usage`; those
/// another claim holds go to `busy`. One round trip (`stask_try_limit_keys`,
/// migrations.rs): the usage is read after the locks, so it sees every claim of those
/// keys committed before.
fn try_keys(
    tx: &mut impl GenericClient,
    keys: &[(KeyOf, i32)],
    rules: &HashMap<(String, String), LimitRule>,
    now: i64,
    statements: &Statements,
    usage: &mut HashMap<KeyOf, LimitUsage>,
    busy: &mut HashSet<KeyOf>,
) -> Result<(), StoreError> {
    if keys.is_empty() {
        return Ok(());
    }
    let hashes: Vec<i32> = keys.iter().map(|(_, h)| *h).collect();
    let workers: Vec<&str> = keys.iter().map(|((w, _), _)| w.as_str()).collect();
    let names: Vec<&str> = keys.iter().map(|((_, l), _)| l.rule.as_str()).collect();
    let limit_keys: Vec<&str> = keys.iter().map(|((_, l), _)| l.key.as_str()).collect();
    let since: Vec<Option<i64>> = keys
        .iter()
        .map(|((w, l), _)| {
            rules[&(w.clone(), l.rule.clone())]
                .rate
                .map(|(_, period)| now - period)
        })
        .collect();
    let try_lock = statements
        .get(
            tx,
            "SELECT key_index, key_held, key_running, key_started, key_oldest
             FROM stask_try_limit_keys($1, $2, $3, $4, $5, $6)",
        )
        .context("lock limit keys")?;
    for r in tx
        .query(
            &try_lock,
            &[
                &LIMIT_LOCK_CLASS,
                &hashes,
                &workers,
                &names,
                &limit_keys,
                &since,
            ],
        )
        .context("lock limit keys")?
    {
        let i: i64 = r.get(0);
        let (key, _) = &keys[(i - 1) as usize];
        if r.get(1) {
            let usage_of_key = LimitUsage {
                running: r.get::<_, Option<i64>>(2).unwrap_or(0),
                started: r.get(3),
                oldest_start: r.get(4),
            };
            usage.insert(key.clone(), usage_of_key);
        } else {
            busy.insert(key.clone());
        }
    }
    Ok(())
}

/// `candidates` without those of keys in `busy`.
fn without_busy(candidates: &[Candidate], busy: &HashSet<KeyOf>) -> Vec<Candidate> {
    candidates
        .iter()
        .filter(|c| match &c.limit {
            Some(l) => busy.is_empty() || !busy.contains(&(c.worker.clone(), l.clone())),
            None => true,
        })
        .cloned()
        .collect()
}

/// Records a start at `now` for each of `rated` (the key of a task a claim took under a
/// rule with a rate, with the rule's period), and forgets the starts of those keys that
/// have left their window.
pub(super) fn record_starts(
    tx: &mut impl GenericClient,
    rated: &[(KeyOf, i64)],
    now: i64,
    statements: &Statements,
) -> Result<(), StoreError> {
    if rated.is_empty() {
        return Ok(());
    }
    let workers: Vec<&str> = rated.iter().map(|((w, _), _)| w.as_str()).collect();
    let rules: Vec<&str> = rated.iter().map(|((_, l), _)| l.rule.as_str()).collect();
    let names: Vec<&str> = rated.iter().map(|((_, l), _)| l.key.as_str()).collect();
    let since: Vec<i64> = rated.iter().map(|(_, period)| now - period).collect();
    let record = statements
        .get(
            tx,
            "WITH k AS (
                 SELECT * FROM UNNEST($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::BIGINT[])
                     AS k(w, r, k, since)
             ), gone AS (
                 DELETE FROM limit_starts s USING k
                 WHERE s.worker = k.w AND s.rule = k.r AND s.key = k.k AND s.at <= k.since
             )
             INSERT INTO limit_starts (worker, rule, key, at) SELECT w, r, k, $5 FROM k",
        )
        .context("record starts under a rate")?;
    tx.execute(&record, &[&workers, &rules, &names, &since, &now])
        .context("record starts under a rate")?;
    Ok(())
}

/// Share-locks the running tasks of the keys on which `choice` parks tasks for a
/// concurrency limit, so that their finishes, which take no lock of their own
/// ([`Order::RunningRows`]), look for parked tasks only after this claim commits (see
/// the module docs). Rows another transaction is changing are skipped, never waited
/// for (that transaction may be a claim waiting for this one's rows in turn): a key
/// with fewer running tasks locked than `usage` counted parks nothing, and its tasks
/// stay due for a later claim, which counts again. Returns the ids so left.
pub(super) fn confirm_parks(
    tx: &mut impl GenericClient,
    choice: &mut Choice,
    candidates: &[Candidate],
    usage: &HashMap<KeyOf, LimitUsage>,
    statements: &Statements,
) -> Result<Vec<i64>, StoreError> {
    if choice.park.is_empty() {
        return Ok(Vec::new());
    }
    let key_of: HashMap<i64, (&str, &TaskLimit)> = candidates
        .iter()
        .filter_map(|c| Some((c.id, (c.worker.as_str(), c.limit.as_ref()?))))
        .collect();
    // Each key once, with the running tasks its park counted on (the claim's own
    // takes are locked by it already, and their finishes come after its commit).
    let mut keys: Vec<((&str, &TaskLimit), i64)> = Vec::new();
    let mut seen: HashSet<(&str, &TaskLimit)> = HashSet::new();
    for id in &choice.park {
        let Some(&(worker, limit)) = key_of.get(id) else {
            continue;
        };
        if !seen.insert((worker, limit)) {
            continue;
        }
        let running = usage
            .get(&(worker.to_owned(), limit.clone()))
            .map_or(0, |u| u.running);
        if running > 0 {
            keys.push(((worker, limit), running));
        }
    }
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let workers: Vec<&str> = keys.iter().map(|((w, _), _)| *w).collect();
    let rules: Vec<&str> = keys.iter().map(|((_, l), _)| l.rule.as_str()).collect();
    let names: Vec<&str> = keys.iter().map(|((_, l), _)| l.key.as_str()).collect();
    let lock = statements
        .get(
            tx,
            "SELECT k.n FROM tasks t
             JOIN UNNEST($1::TEXT[], $2::TEXT[], $3::TEXT[]) WITH ORDINALITY AS k(w, r, k, n)
                  ON t.worker = k.w AND t.limit_rule = k.r AND t.limit_key = k.k
             WHERE t.limit_key IS NOT NULL AND t.status = 'running'
             FOR SHARE OF t SKIP LOCKED",
        )
        .context("lock the running tasks of keys at their limit")?;
    let mut locked = vec![0_i64; keys.len()];
    for r in tx
        .query(&lock, &[&workers, &rules, &names])
        .context("lock the running tasks of keys at their limit")?
    {
        locked[(r.get::<_, i64>(0) - 1) as usize] += 1;
    }
    let unsure: Vec<(&str, &TaskLimit)> = keys
        .iter()
        .zip(&locked)
        .filter(|((_, running), locked)| **locked < *running)
        .map(|((key, _), _)| *key)
        .collect();
    if unsure.is_empty() {
        return Ok(Vec::new());
    }
    let unsure_key = |id: &i64| key_of.get(id).is_some_and(|k| unsure.contains(k));
    let left: Vec<i64> = choice
        .park
        .iter()
        .chain(&choice.until_released)
        .copied()
        .filter(unsure_key)
        .collect();
    choice.park.retain(|id| !unsure_key(id));
    choice.until_released.retain(|id| !unsure_key(id));
    Ok(left)
}

/// Parks the tasks `parks` (id, until).
pub(super) fn park(
    tx: &mut impl GenericClient,
    parks: &[(i64, i64)],
    statements: &Statements,
) -> Result<(), StoreError> {
    if parks.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = parks.iter().map(|(id, _)| *id).collect();
    let until: Vec<i64> = parks.iter().map(|(_, u)| *u).collect();
    let park = statements
        .get(
            tx,
            "UPDATE tasks t SET parked = TRUE, run_after = u.until
             FROM UNNEST($1::BIGINT[], $2::BIGINT[]) AS u(id, until) WHERE t.id = u.id",
        )
        .context("park tasks at their limit")?;
    tx.execute(&park, &[&ids, &until])
        .context("park tasks at their limit")?;
    Ok(())
}

/// Puts parked tasks whose time has come back in the claims' way (those another
/// claim holds are left to it).
pub(super) fn unpark_due(
    tx: &mut impl GenericClient,
    now: i64,
    statements: &Statements,
) -> Result<(), StoreError> {
    let unpark = statements
        .get(
            tx,
            "UPDATE tasks t SET parked = FALSE
             FROM (SELECT id FROM tasks
                   WHERE parked AND run_after <= $1 AND run_after < 9223372036854775806
                   ORDER BY run_after LIMIT 1000 FOR UPDATE SKIP LOCKED) p
             WHERE t.id = p.id",
        )
        .context("look again at parked tasks")?;
    tx.execute(&unpark, &[&now])
        .context("look again at parked tasks")?;
    Ok(())
}

/// A parked task a finish handed to the claim of the same transaction (its row
/// locked): the claim takes it at once when it has room, which spares writing the task
/// twice (released, then taken) and reading it back through the claim index.
pub(crate) struct Handed {
    /// The task as a claim candidate.
    pub candidate: Candidate,
    /// Its priority's rank (claim order is priority, then id).
    pub priority: i16,
    /// Whether its worker is active (a claim takes only tasks of active workers).
    pub active: bool,
    /// Its rule, by (worker, rule), when the rule exists.
    pub rule: Option<((String, String), LimitRule)>,
}

/// How a release is ordered after a claim on another connection that parks a task of
/// its keys (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Order {
    /// Wait for the keys' locks first: a claim holding one commits its parks before.
    KeyLocks,
    /// The keys' running tasks were updated by an earlier statement of the transaction
    /// (a finish): a parking claim that share-locked them commits first.
    RunningRows,
}

/// What a release does with the parked tasks it finds.
pub(super) enum Release<'a> {
    /// Makes them due at once, ordered after a parking claim as the [`Order`] says.
    Due(Order),
    /// Hands them, locked, to the claim in the same transaction, which takes them or
    /// gives them back with [`unpark`]. Only a finish hands tasks over, so after the
    /// running rows ([`Order::RunningRows`]).
    HandTo(&'a mut Vec<Handed>),
}

/// Releases, for each of `freed` (the key of a task that just stopped running, or of
/// one a key's parked tasks waited behind), the first task parked on that key, as
/// `how` says. Returns whether any was.
pub(super) fn release(
    tx: &mut impl GenericClient,
    freed: &[KeyOf],
    now: i64,
    statements: &Statements,
    how: Release<'_>,
) -> Result<bool, StoreError> {
    if freed.is_empty() {
        return Ok(false);
    }
    let mut counts: HashMap<&KeyOf, i64> = HashMap::new();
    for k in freed {
        *counts.entry(k).or_default() += 1;
    }
    // Only a release after the keys' locks needs their hashes, taken in one order on
    // every host; a finish's (after the running rows) takes no lock.
    let locking = matches!(how, Release::Due(Order::KeyLocks));
    let mut keys: Vec<(i32, &KeyOf, i64)> = counts
        .into_iter()
        .map(|(k, n)| (if locking { key_hash(&k.0, &k.1) } else { 0 }, k, n))
        .collect();
    if locking {
        keys.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(b.1)));
    }
    let mut hashes: Vec<i32> = keys.iter().map(|(h, _, _)| *h).collect();
    hashes.dedup();
    let workers: Vec<&str> = keys.iter().map(|(_, k, _)| k.0.as_str()).collect();
    let rules: Vec<&str> = keys.iter().map(|(_, k, _)| k.1.rule.as_str()).collect();
    let names: Vec<&str> = keys.iter().map(|(_, k, _)| k.1.key.as_str()).collect();
    let counts: Vec<i64> = keys.iter().map(|(_, _, n)| *n).collect();
    // After the keys' locks: the locks, then (when the keys' workers have any parked
    // task at all) one probe of the index of parked tasks per key (about 4 µs) in claim
    // order, in one round trip (`stask_release_parked`, migrations.rs): the probes read
    // with a snapshot taken after the locks. After the running rows (a finish's, which
    // also hands tasks over): the same without the locks, in a statement of its own,
    // whose snapshot is taken after the finish's update. The schema's
    // `stask_hand_parked`, the locked hand-over, is left for hosts of the previous
    // version. A queue parked on one key may hold any number, so a probe never looks
    // past the first.
    // The functions' first six arguments: the lock class and the keys.
    let keys_args: [&(dyn postgres::types::ToSql + Sync); 6] = [
        &LIMIT_LOCK_CLASS,
        &hashes,
        &workers,
        &rules,
        &names,
        &counts,
    ];
    // The statements' arguments: the keys, then (to release) the time.
    let key_columns = &keys_args[2..];
    match how {
        Release::HandTo(handed) => {
            let read = statements
                .get(
                    tx,
                    "SELECT p.id, p.worker, p.limit_rule, p.limit_key, p.priority,
                            COALESCE(w.active, FALSE), r.rule, r.concurrency, r.rate,
                            r.period_ms
                     FROM UNNEST($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::BIGINT[])
                          AS k(w, r, k, n)
                     CROSS JOIN LATERAL (
                         SELECT t.id, t.worker, t.limit_rule, t.limit_key, t.priority
                         FROM tasks t
                         WHERE t.worker = k.w AND t.limit_rule = k.r
                           AND t.limit_key = k.k AND t.parked AND t.status = 'pending'
                         ORDER BY t.priority, t.id LIMIT k.n
                         FOR UPDATE OF t SKIP LOCKED) p
                     LEFT JOIN workers w ON w.identifier = p.worker
                     LEFT JOIN limit_rules r
                          ON r.worker = p.worker AND r.rule = p.limit_rule
                     WHERE EXISTS (SELECT 1 FROM tasks x
                                   WHERE x.parked AND x.worker = ANY($1))",
                )
                .context("hand parked tasks to the claim")?;
            let rows = tx
                .query(&read, key_columns)
                .context("hand parked tasks to the claim")?;
            let any = !rows.is_empty();
            for r in rows {
                handed.push(Handed {
                    candidate: Candidate {
                        id: r.get(0),
                        worker: r.get(1),
                        limit: limit_of(r.get(2), r.get(3)),
                    },
                    priority: r.get(4),
                    active: r.get(5),
                    rule: joined_rule(&r, 6),
                });
            }
            Ok(any)
        }
        Release::Due(order) => {
            let released: i64 = match order {
                Order::KeyLocks => {
                    let release = statements
                        .get(
                            tx,
                            "SELECT stask_release_parked($1, $2, $3, $4, $5, $6, $7)",
                        )
                        .context("release parked tasks")?;
                    let mut args = keys_args.to_vec();
                    args.push(&now);
                    tx.query_one(&release, &args)
                        .context("release parked tasks")?
                        .get(0)
                }
                Order::RunningRows => {
                    let release = statements
                        .get(
                            tx,
                            "UPDATE tasks t SET parked = FALSE, run_after = $5
                             FROM UNNEST($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::BIGINT[])
                                  AS k(w, r, k, n)
                             CROSS JOIN LATERAL (
                                 SELECT x.id FROM tasks x
                                 WHERE x.worker = k.w AND x.limit_rule = k.r
                                   AND x.limit_key = k.k AND x.parked AND x.status = 'pending'
                                 ORDER BY x.priority, x.id LIMIT k.n
                                 FOR UPDATE OF x SKIP LOCKED) p
                             WHERE t.id = p.id
                               AND EXISTS (SELECT 1 FROM tasks y
                                           WHERE y.parked AND y.worker = ANY($1))",
                        )
                        .context("release parked tasks")?;
                    let mut args = key_columns.to_vec();
                    args.push(&now);
                    tx.execute(&release, &args)
                        .context("release parked tasks")? as i64
                }
            };
            if released > 0 {
                super::wakeups::notify_in(tx)?;
            }
            Ok(released > 0)
        }
    }
}

/// Makes the parked tasks `ids` due at `now` (handed to a claim that did not take
/// them).
pub(super) fn unpark(
    tx: &mut impl GenericClient,
    ids: &[i64],
    now: i64,
    statements: &Statements,
) -> Result<(), StoreError> {
    if ids.is_empty() {
        return Ok(());
    }
    let unpark = statements
        .get(
            tx,
            "UPDATE tasks SET parked = FALSE, run_after = $2
             WHERE id = ANY($1) AND parked AND status = 'pending'",
        )
        .context("release parked tasks")?;
    if tx
        .execute(&unpark, &[&ids, &now])
        .context("release parked tasks")?
        > 0
    {
        super::wakeups::notify_in(tx)?;
    }
    Ok(())
}

impl Limits for PgStore {
    fn set_limit_rules(&mut self, worker: &str, rules: &[LimitRule]) -> Result<(), StoreError> {
        let mut client = self.client()?;
        let mut tx = client.transaction().context("set limit rules")?;
        tx.execute("DELETE FROM limit_rules WHERE worker = $1", &[&worker])
            .context("set limit rules")?;
        for r in rules {
            tx.execute(
                "INSERT INTO limit_rules (worker, rule, concurrency, rate, period_ms)
                 VALUES ($1, $2, $3, $4, $5)",
                &[
                    &worker,
                    &super::storable(&r.rule),
                    &r.concurrency.map(i64::from),
                    &r.rate.map(|(n, _)| i64::from(n)),
                    &r.rate.map(|(_, p)| p),
                ],
            )
            .context("set limit rules")?;
        }
        // Parked tasks are looked at again under the new numbers (a parked task was
        // due when it was parked, so it is due again at once).
        tx.execute(
            "UPDATE tasks SET parked = FALSE, run_after = LEAST(run_after, created_at)
             WHERE parked AND worker = $1",
            &[&worker],
        )
        .context("set limit rules")?;
        super::wakeups::notify_in(&mut tx)?;
        tx.commit().context("set limit rules")?;
        Ok(())
    }

    fn limit_rules(&self, worker: &str) -> Result<Vec<LimitRule>, StoreError> {
        let mut client = self.client()?;
        let mut rules: Vec<LimitRule> = rules_of(&mut *client, &[worker], &self.statements)?
            .into_values()
            .collect();
        rules.sort_by(|a, b| a.rule.cmp(&b.rule));
        Ok(rules)
    }

    fn limit_usage(
        &self,
        worker: &str,
        limit: &TaskLimit,
        now: i64,
    ) -> Result<Option<(LimitRule, LimitUsage)>, StoreError> {
        let mut client = self.client()?;
        let rules = rules_of(&mut *client, &[worker], &self.statements)?;
        let Some(rule) = rules.get(&(worker.to_owned(), limit.rule.clone())).cloned() else {
            return Ok(None);
        };
        let usage = usage_of(&mut *client, worker, limit, &rule, now, &self.statements)?;
        Ok(Some((rule, usage)))
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::super::claim::{claim_in, Pick};
    use super::super::conformance_tests::{test_url, PgHarness};
    use super::super::logs::Numbered;
    use super::super::Statements;
    use super::{key_hash, LIMIT_LOCK_CLASS};
    use crate::conformance::{claim, completed, finish, ids, insert, register, task, Harness};
    use crate::{LimitRule, NewTask, TaskLimit};

    /// A store where worker "w" has the rule "per-shop": concurrency 1.
    fn per_shop_store(h: &PgHarness) -> Box<dyn crate::Store> {
        let mut s = h.open();
        register(&mut *s, &["w"], true);
        let rule = LimitRule {
            rule: "per-shop".into(),
            concurrency: Some(1),
            rate: None,
        };
        s.set_limit_rules("w", &[rule]).unwrap();
        s
    }

    /// Ten keys of "per-shop" (that no other test locks) with one task each, in key
    /// order: the store, the keys and the tasks.
    fn ten_keys(h: &PgHarness) -> (Box<dyn crate::Store>, Vec<TaskLimit>, Vec<i64>) {
        let mut s = per_shop_store(h);
        let run = format!("ten-{}-{}", std::process::id(), crate::now_ms());
        let limits: Vec<TaskLimit> = (0..10)
            .map(|k| TaskLimit {
                rule: "per-shop".into(),
                key: format!("{run}-{k}"),
            })
            .collect();
        let tasks: Vec<i64> = limits
            .iter()
            .map(|l| {
                let keyed = NewTask {
                    limit: Some(l.clone()),
                    ..task("w", 100)
                };
                insert(&mut *s, &keyed, 1)[0]
            })
            .collect();
        (s, limits, tasks)
    }

    /// A key at concurrency 1 of worker "w" with one task running (claimed by "o" at
    /// 1,000) and one waiting behind it: the store, the key and both tasks' ids. The
    /// key is one no other test locks (advisory locks are the database's, not the
    /// schema's).
    fn one_running_one_waiting(h: &PgHarness) -> (Box<dyn crate::Store>, TaskLimit, i64, i64) {
        let mut s = per_shop_store(h);
        let limit = TaskLimit {
            rule: "per-shop".into(),
            key: format!("race-{}-{}", std::process::id(), crate::now_ms()),
        };
        let keyed = NewTask {
            limit: Some(limit.clone()),
            ..task("w", 100)
        };
        let running = insert(&mut *s, &keyed, 1)[0];
        assert_eq!(claim(&mut *s, "o", 1_000, 1).len(), 1);
        let waiting = insert(&mut *s, &keyed, 1)[0];
        (s, limit, running, waiting)
    }

    /// A connection of its own to the harness's schema, with its backend's pid.
    fn connect_with_pid(h: &PgHarness) -> (postgres::Client, i32) {
        let mut client = postgres::Client::connect(&h.url(), postgres::NoTls).unwrap();
        let pid = client
            .query_one("SELECT pg_backend_pid()", &[])
            .unwrap()
            .get(0);
        (client, pid)
    }

    /// Waits until some backend waits for a lock that the backend `pid` holds.
    fn wait_until_blocked_by(pid: i32) {
        let mut watch = postgres::Client::connect(&test_url(), postgres::NoTls).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while watch
            .query_one(
                "SELECT COUNT(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))",
                &[&pid],
            )
            .unwrap()
            .get::<_, i64>(0)
            == 0
        {
            assert!(
                Instant::now() < deadline,
                "the finish never waited for the claim"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Claims at most `limit` due tasks as "other" at `now` inside `tx`, which the
    /// caller leaves open (another host's claim before its commit); returns the ids
    /// taken. (Its start lines are not stored.)
    fn claim_inside(tx: &mut postgres::Transaction<'_>, now: i64, limit: i64) -> Vec<i64> {
        let statements = Statements::default();
        let mut lines = Numbered::with_capacity(limit as usize);
        let start_line = |_: &crate::TaskRecord| crate::LogLine::new("running", 0, 0, 0, "", "");
        let pick = Pick::Due {
            excluded: &[],
            limit,
            unpark: false,
            handed: Vec::new(),
        };
        claim_in(tx, "other", now, pick, &start_line, &mut lines, &statements)
            .unwrap()
            .iter()
            .map(|c| c.task.id)
            .collect()
    }

    /// A finish of a key's running task, started while another host's claim parks a
    /// task of that key and before the claim commits, releases the parked task: the
    /// claim share-locked the running task, so the finish's update waits for its
    /// commit and the finish then sees the park. Without that order the park was
    /// missed and the key's queue waited for its recheck. `finish_it` finishes the
    /// running task (by "o" at 1,100) and says whether the waiting task is now claimed
    /// by a claim in the same transaction rather than only made due.
    fn a_finish_racing_a_park_sees_it(
        finish_it: impl FnOnce(&mut dyn crate::Store, i64) -> bool + Send,
    ) {
        let h = PgHarness::new();
        let (mut s, _, running, waiting) = one_running_one_waiting(&h);
        // Another host's claim, not committed yet: the key is at its limit, so it
        // parks the waiting task.
        let (mut other, other_pid) = connect_with_pid(&h);
        let mut claim_tx = other.transaction().unwrap();
        assert!(claim_inside(&mut claim_tx, 1_050, 1).is_empty());
        let parked: bool = claim_tx
            .query_one("SELECT parked FROM tasks WHERE id = $1", &[&waiting])
            .unwrap()
            .get(0);
        assert!(parked, "the claim parked the waiting task");

        let claimed = std::thread::scope(|scope| {
            let finishing = scope.spawn(|| finish_it(&mut *s, running));
            // The finish has started and waits for the claim.
            wait_until_blocked_by(other_pid);
            claim_tx.commit().unwrap();
            finishing.join().unwrap()
        });
        let after = s.get_task(waiting).unwrap().unwrap();
        if claimed {
            assert_eq!(after.status, crate::Status::Running);
        } else {
            assert!(
                after.run_after <= 1_100,
                "the finish released the task parked meanwhile (due at {})",
                after.run_after
            );
            assert_eq!(ids(&claim(&mut *s, "o", 1_100, 1)), vec![waiting]);
        }
    }

    #[test]
    fn a_finish_on_its_own_racing_a_park_releases_the_parked_task() {
        a_finish_racing_a_park_sees_it(|s, running| {
            let applied = s
                .finish_tasks(&[finish(running, "o", completed(), "completed", 1_100)])
                .unwrap();
            assert_eq!(applied, vec![true]);
            false
        });
    }

    #[test]
    fn a_finish_in_a_claim_racing_a_park_lets_the_claim_take_the_parked_task() {
        a_finish_racing_a_park_sees_it(|s, running| {
            let (applied, claimed) = s
                .claim(&crate::Claim {
                    finishes: &[finish(running, "o", completed(), "completed", 1_100)],
                    owner: "o",
                    now: 1_100,
                    limit: 1,
                    excluded_workers: &[],
                    start_line: &|_| crate::LogLine::new("running", 0, 0, 0, "", "started"),
                })
                .unwrap();
            assert_eq!(applied, vec![true]);
            assert_eq!(claimed.len(), 1, "the claim took the parked task");
            true
        });
    }

    /// A claim that finds a key at its limit while the key's running task is being
    /// finished on another connection (not committed yet, and past looking for parked
    /// tasks) does not park the waiting task: it cannot lock the running task, so
    /// nothing would release the park but its recheck. The waiting task stays due and
    /// the first claim after the finish commits takes it.
    #[test]
    fn a_claim_parks_nothing_behind_a_running_task_being_finished_elsewhere() {
        let h = PgHarness::new();
        let (mut s, _, running, waiting) = one_running_one_waiting(&h);
        let mut other = postgres::Client::connect(&h.url(), postgres::NoTls).unwrap();
        let mut finish_tx = other.transaction().unwrap();
        finish_tx
            .execute(
                "UPDATE tasks SET status = 'completed', owner = NULL, finished_at = 1050
                 WHERE id = $1",
                &[&running],
            )
            .unwrap();
        // The running task still counts (its finish is not committed): nothing taken,
        // and (without waiting for the finish) nothing parked.
        assert!(claim(&mut *s, "o", 1_060, 1).is_empty());
        let after = s.get_task(waiting).unwrap().unwrap();
        assert!(
            after.run_after <= 1_060,
            "the waiting task was parked until {}",
            after.run_after
        );
        finish_tx.commit().unwrap();
        assert_eq!(ids(&claim(&mut *s, "o", 1_100, 1)), vec![waiting]);
    }

    /// A claim locks the keys of the tasks it takes first, and goes further down its
    /// page only as far as it falls short: the tasks of keys another host's claim holds
    /// are left, and those behind them take their places, in claim order.
    #[test]
    fn a_claim_short_of_keys_another_claim_holds_fills_up_from_further_down() {
        let h = PgHarness::new();
        let (mut s, limits, tasks) = ten_keys(&h);
        // Another host's claim holds the first two keys.
        let mut other = postgres::Client::connect(&h.url(), postgres::NoTls).unwrap();
        let mut held = other.transaction().unwrap();
        for l in &limits[..2] {
            held.execute(
                "SELECT pg_advisory_xact_lock($1, $2)",
                &[&LIMIT_LOCK_CLASS, &key_hash("w", l)],
            )
            .unwrap();
        }
        let mut claimed = ids(&claim(&mut *s, "o", 1_000, 5));
        claimed.sort_unstable();
        assert_eq!(claimed, tasks[2..7].to_vec());
        held.rollback().unwrap();
        // The held keys' tasks were left due, not parked.
        let mut next = ids(&claim(&mut *s, "o", 1_000, 5));
        next.sort_unstable();
        let mut rest = tasks[..2].to_vec();
        rest.extend_from_slice(&tasks[7..]);
        assert_eq!(next, rest);
    }

    /// Advisory locks of limit keys the backend `pid` holds.
    fn key_locks_held_by(pid: i32) -> i64 {
        postgres::Client::connect(&test_url(), postgres::NoTls)
            .unwrap()
            .query_one(
                "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND granted
                   AND pid = $1 AND classid = $2::INT::OID",
                &[&pid, &LIMIT_LOCK_CLASS],
            )
            .unwrap()
            .get(0)
    }

    /// A claim of five tasks from a queue of ten distinct keys locks (and counts) the
    /// five keys of the tasks it takes, not the whole page's.
    #[test]
    fn a_claim_of_distinct_keys_locks_only_the_keys_of_the_tasks_it_takes() {
        let h = PgHarness::new();
        ten_keys(&h);
        let (mut other, pid) = connect_with_pid(&h);
        let mut claim_tx = other.transaction().unwrap();
        assert_eq!(claim_inside(&mut claim_tx, 1_000, 5).len(), 5);
        assert_eq!(key_locks_held_by(pid), 5);
        claim_tx.rollback().unwrap();
    }

    /// A queue whose head is a key's tasks that a claim leaves due (not parked) still
    /// gives the claim the work behind them: later pages read past what earlier pages
    /// left. `block` holds the key on another connection while the claim runs, given
    /// the key's running task and the key.
    fn a_claim_reads_past_the_tasks_it_leaves(
        block: impl FnOnce(&mut postgres::Transaction<'_>, i64, &TaskLimit),
    ) {
        let h = PgHarness::new();
        let (mut s, limit, running, _) = one_running_one_waiting(&h);
        let keyed = NewTask {
            limit: Some(limit.clone()),
            ..task("w", 100)
        };
        // More of the key's tasks than a claim of two reads in a page (ten).
        insert(&mut *s, &keyed, 11);
        let free = insert(&mut *s, &task("w", 100), 1)[0];
        let mut other = postgres::Client::connect(&h.url(), postgres::NoTls).unwrap();
        let mut blocking = other.transaction().unwrap();
        block(&mut blocking, running, &limit);
        let claimed = ids(&claim(&mut *s, "o", 1_050, 2));
        assert_eq!(claimed, vec![free]);
        blocking.rollback().unwrap();
    }

    /// The key's running task is being changed on another connection (a progress
    /// update, not committed): the claim cannot confirm parks of the key and leaves its
    /// tasks due.
    #[test]
    fn a_claim_reads_past_tasks_whose_parks_it_cannot_confirm() {
        a_claim_reads_past_the_tasks_it_leaves(|tx, running, _| {
            tx.execute("UPDATE tasks SET progress = 5 WHERE id = $1", &[&running])
                .unwrap();
        });
    }

    /// Another host's claim holds the key: the claim leaves its tasks to it.
    #[test]
    fn a_claim_reads_past_tasks_of_a_key_another_claim_holds() {
        a_claim_reads_past_the_tasks_it_leaves(|tx, _, limit| {
            tx.execute(
                "SELECT pg_advisory_xact_lock($1, $2)",
                &[&LIMIT_LOCK_CLASS, &key_hash("w", limit)],
            )
            .unwrap();
        });
    }
}
