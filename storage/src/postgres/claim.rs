//! Claiming tasks on PostgreSQL: the rows to take are chosen with
//! `FOR UPDATE … SKIP LOCKED`, so hosts claiming at the same moment take different
//! tasks without waiting for each other, and a task is never claimed twice (the
//! update also re-checks that it is still pending). Each claimed task's start line is
//! stored in the same transaction, numbered by the claim's own update of the row.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use postgres::GenericClient;

use super::limits;
use super::logs::Numbered;
use super::queue::{from_row, COLUMNS};
use super::Context;
use super::Statements;
use crate::error::StoreError;
use crate::limits::{limit_of, Candidate, KeyOf, LimitRule};
use crate::queue::{ClaimedTask, ClaimedWorker, StartLine, TaskRecord};

/// Which tasks a claim takes.
pub(crate) enum Pick<'a> {
    /// Due tasks of active, not excluded workers, in claim order, at most this many.
    Due {
        /// Workers not to take tasks of.
        excluded: &'a [&'a str],
        /// At most this many.
        limit: i64,
        /// Whether to put parked tasks whose time has come back first.
        unpark: bool,
        /// Parked tasks the finishes of this transaction released (locked): taken
        /// first in claim order when their keys have room, made due otherwise.
        handed: Vec<limits::Handed>,
    },
    /// This pending task, due or not.
    One(i64),
}

/// How often (ms) one store's claims look for parked tasks whose time has come.
pub(crate) const UNPARK_EVERY_MS: i64 = 200;

/// At most this many reads of candidates per claim: a queue whose head is all at its
/// limits is parked a few pages at a time rather than in one long transaction.
const MAX_PAGES: usize = 8;

/// The keys of the candidates `rated` (taken under a rule with a rate), each with its
/// rule's period.
fn rated_starts(
    candidates: &[Candidate],
    rules: &HashMap<(String, String), LimitRule>,
    rated: &HashSet<i64>,
) -> Vec<(KeyOf, i64)> {
    candidates
        .iter()
        .filter(|c| rated.contains(&c.id))
        .filter_map(|c| {
            let limit = c.limit.clone()?;
            let (_, period) = rules.get(&(c.worker.clone(), limit.rule.clone()))?.rate?;
            Some(((c.worker.clone(), limit), period))
        })
        .collect()
}

/// Records a start for each of the candidates `rated` (taken under a rule with a rate)
/// and releases the next parked task of each one's key: the claim takes it while the
/// rate has room, or parks it again until its slot frees. Called after the take, so a
/// task never releases itself. Returns whether any task was released.
fn start_under_rates(
    tx: &mut impl GenericClient,
    candidates: &[Candidate],
    rules: &HashMap<(String, String), LimitRule>,
    rated: &[i64],
    now: i64,
    statements: &Statements,
) -> Result<bool, StoreError> {
    if rated.is_empty() {
        return Ok(false);
    }
    let rated: HashSet<i64> = rated.iter().copied().collect();
    let started = rated_starts(candidates, rules, &rated);
    limits::record_starts(tx, &started, now, statements)?;
    let keys: Vec<KeyOf> = started.into_iter().map(|(k, _)| k).collect();
    limits::release(
        tx,
        &keys,
        now,
        statements,
        limits::Release::Due(limits::Order::KeyLocks),
    )
}

/// Takes the pending tasks `ids` for `owner` with the prepared update `sql`.
fn take_rows(
    tx: &mut impl GenericClient,
    sql: &str,
    owner: &str,
    now: i64,
    ids: &[i64],
    statements: &Statements,
) -> Result<Vec<postgres::Row>, StoreError> {
    let statement = statements.get(tx, sql).context("claim tasks")?;
    tx.query(&statement, &[&owner, &now, &ids])
        .context("claim tasks")
}

/// Claims the tasks `pick` names for `owner` inside `tx`, adding each one's start line
/// to `lines` (the caller stores them); returns them in claim order with their
/// workers' registrations.
pub(crate) fn claim_in(
    tx: &mut impl GenericClient,
    owner: &str,
    now: i64,
    pick: Pick<'_>,
    start_line: StartLine<'_>,
    lines: &mut Numbered<'_>,
    statements: &Statements,
) -> Result<Vec<ClaimedTask>, StoreError> {
    let set = "status = 'running', attempts = t.attempts + 1, owner = $1, started_at = $2,
               heartbeat_at = $2, finished_at = NULL, cancel_requested = FALSE, progress = 0,
               processed = 0, total = 0, message = 'Started', log_seq = t.log_seq + 1,
               parked = FALSE";
    // The task columns, then the start line's number (taken by the claim itself).
    let returning: String = COLUMNS
        .split(',')
        .map(|c| format!("t.{}", c.trim()))
        .chain(std::iter::once("t.log_seq".to_owned()))
        .collect::<Vec<_>>()
        .join(", ");
    let seq_column = COLUMNS.split(',').count();
    let take_sql = format!(
        "UPDATE tasks t SET {set}
         FROM UNNEST($3::BIGINT[]) AS p(id)
         WHERE t.id = p.id AND t.status = 'pending'
         RETURNING {returning}"
    );
    let rows = match pick {
        // The workers to take tasks of are read once (an array), so the pick walks the
        // claim index in claim order and stops after `limit` rows, whatever the
        // number of pending tasks; a join with the workers table made the planner read
        // and sort every pending task (16 ms for a batch of 256 with 20,000 waiting).
        Pick::Due {
            excluded,
            limit,
            unpark,
            handed,
        } => {
            // Handed tasks of workers this claim may take join the first page in claim
            // order; the others are made due for later claims.
            let (mut handed, elsewhere): (Vec<limits::Handed>, Vec<limits::Handed>) = handed
                .into_iter()
                .partition(|h| h.active && !excluded.contains(&h.candidate.worker.as_str()));
            let mut unparked: Vec<i64> = elsewhere.iter().map(|h| h.candidate.id).collect();
            let excluded: Vec<&str> = excluded.to_vec();
            let read = statements
                .get(
                    tx,
                    "SELECT t.id, t.worker, t.limit_rule, t.limit_key, t.priority,
                            r.rule, r.concurrency, r.rate, r.period_ms
                     FROM tasks t
                     LEFT JOIN limit_rules r ON r.worker = t.worker AND r.rule = t.limit_rule
                     WHERE t.status = 'pending' AND t.deps_left = 0 AND NOT t.parked
                       AND t.run_after <= $1
                       AND t.worker = ANY(ARRAY(
                           SELECT identifier FROM workers
                           WHERE active AND NOT (identifier = ANY($3))))
                       AND NOT (t.id = ANY($4))
                     ORDER BY t.priority, t.id
                     LIMIT $2
                     FOR UPDATE OF t SKIP LOCKED",
                )
                .context("claim tasks")?;
            if unpark {
                limits::unpark_due(tx, now, statements)?;
            }
            let want = limit.max(0) as usize;
            let mut rows = Vec::new();
            // Candidates an earlier page left due though the claim had room (keys
            // another claim holds, parks it could not confirm): later pages read past
            // them (this claim's own row locks do not make SKIP LOCKED skip them).
            let mut left_behind: Vec<i64> = Vec::new();
            for _ in 0..MAX_PAGES {
                let left = want - rows.len();
                let page = left + left / 4 + 8;
                // The candidates come with their rules (a join with the small table of
                // rules, which spares a statement per page).
                let mut rules = HashMap::new();
                let mut candidates: Vec<(i16, Candidate)> = tx
                    .query(&read, &[&now, &(page as i64), &excluded, &left_behind])
                    .context("claim tasks")?
                    .iter()
                    .map(|r| {
                        let candidate = Candidate {
                            id: r.get(0),
                            worker: r.get(1),
                            limit: limit_of(r.get(2), r.get(3)),
                        };
                        if candidate.limit.is_some() {
                            rules.extend(limits::joined_rule(r, 5));
                        }
                        (r.get(4), candidate)
                    })
                    .collect();
                let read_all = candidates.len();
                let handed_ids: Vec<i64> = handed.iter().map(|h| h.candidate.id).collect();
                if !handed.is_empty() {
                    rules.extend(handed.iter_mut().filter_map(|h| h.rule.take()));
                    candidates.extend(handed.drain(..).map(|h| (h.priority, h.candidate)));
                    candidates.sort_by_key(|(priority, c)| (*priority, c.id));
                }
                let candidates: Vec<Candidate> = candidates.into_iter().map(|(_, c)| c).collect();
                let ((candidates, rules, usage), mut choice, busy) =
                    limits::choose_within(tx, candidates, rules, left, now, statements)?;
                let unconfirmed =
                    limits::confirm_parks(tx, &mut choice, &candidates, &usage, statements)?;
                let left_now = busy.len() + unconfirmed.len();
                left_behind.extend(busy);
                left_behind.extend(unconfirmed);
                let parks = choice.parks(now);
                limits::park(tx, &parks, statements)?;
                // Handed tasks neither taken nor parked again (the claim was full).
                if !handed_ids.is_empty() {
                    let kept: HashSet<i64> = choice
                        .take
                        .iter()
                        .copied()
                        .chain(parks.iter().map(|(id, _)| *id))
                        .collect();
                    unparked.extend(handed_ids.into_iter().filter(|id| !kept.contains(id)));
                }
                if !choice.take.is_empty() {
                    rows.extend(take_rows(
                        tx,
                        &take_sql,
                        owner,
                        now,
                        &choice.take,
                        statements,
                    )?);
                }
                // A start under a rate releases the next parked task of its key (after
                // the take, so not itself): the next page (or claim) takes it while the
                // rate has room, or parks it again until its slot frees.
                let released =
                    start_under_rates(tx, &candidates, &rules, &choice.rated, now, statements)?;
                // Another page while the claim has room and either a start under a rate
                // released a task, or this page was full and parked or left some of its
                // tasks (which later pages do not read again).
                let moved = !parks.is_empty() || left_now > 0;
                if rows.len() >= want || (!released && (read_all < page || !moved)) {
                    break;
                }
            }
            limits::unpark(tx, &unparked, now, statements)?;
            rows
        }
        Pick::One(id) => {
            let candidate = tx
                .query_opt(
                    "SELECT id, worker, limit_rule, limit_key FROM tasks
                     WHERE id = $1 AND status = 'pending' AND deps_left = 0 FOR UPDATE",
                    &[&id],
                )
                .context("claim task")?
                .map(|r| Candidate {
                    id: r.get(0),
                    worker: r.get(1),
                    limit: limit_of(r.get(2), r.get(3)),
                });
            match candidate {
                None => Vec::new(),
                Some(c) => {
                    let (candidates, rules, usage) = limits::prepare(tx, vec![c], now, statements)?;
                    let choice = crate::limits::choose(&candidates, &rules, &usage, 1, now);
                    if choice.take.is_empty() {
                        Vec::new()
                    } else {
                        let rows = take_rows(tx, &take_sql, owner, now, &choice.take, statements)?;
                        // As in a claim of due tasks.
                        start_under_rates(tx, &candidates, &rules, &choice.rated, now, statements)?;
                        rows
                    }
                }
            }
        }
    };
    let mut claimed: Vec<(TaskRecord, i64)> = rows
        .iter()
        .map(|r| (from_row(r), r.get::<_, i64>(seq_column)))
        .collect();
    // RETURNING yields rows in no particular order; keep the claim order.
    claimed.sort_by_key(|(t, _)| (t.priority.rank(), t.id));
    for (task, seq) in &claimed {
        lines.push(task.id, *seq, start_line(task).text());
    }
    let claimed: Vec<TaskRecord> = claimed.into_iter().map(|(t, _)| t).collect();
    let mut names: Vec<&str> = claimed.iter().map(|t| t.worker.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    let mut workers: HashMap<String, Arc<ClaimedWorker>> = HashMap::new();
    if !names.is_empty() {
        let read = statements
            .get(
                tx,
                "SELECT identifier, library_path, settings, manifest, library_sha256 FROM workers
                 WHERE identifier = ANY($1)",
            )
            .context("read workers of claimed tasks")?;
        for r in tx
            .query(&read, &[&names])
            .context("read workers of claimed tasks")?
        {
            workers.insert(
                r.get(0),
                Arc::new(ClaimedWorker {
                    library_path: r.get(1),
                    library_sha256: r.get(4),
                    settings: r.get(2),
                    manifest: r.get(3),
                }),
            );
        }
    }
    Ok(claimed
        .into_iter()
        .map(|task| {
            let worker = workers.get(&task.worker).cloned().unwrap_or_default();
            ClaimedTask { task, worker }
        })
        .collect())
}
