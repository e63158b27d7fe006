//! Recording how attempts ended, only while the claiming owner still holds the task
//! (`owner = $owner AND status = 'running'`): a late outcome from a host that lost its
//! lease (its tasks were recovered and perhaps claimed again) changes nothing. The
//! statistics follow from the triggers.
//!
//! A batch is set-based, whatever its size: one statement updates every task and
//! numbers their last lines, and the lines are stored with the claim's (or alone);
//! finishes that queue their task again first read the task's cancel request with one
//! more statement. Per-task statements made a batch cost a
//! round trip and a trigger run per task, which capped several hosts together at
//! about a thousand tasks a second.

use std::collections::HashMap;

use postgres::GenericClient;

use super::limits::{Handed, Order, Release};
use super::logs::Numbered;
use super::Context;
use super::Statements;
use crate::error::StoreError;
use crate::limits::{limit_of, KeyOf};
use crate::queue::{Finish, FinishColumns};

/// Applies `finishes` inside `tx`, adding their log lines to `lines` (stored by the
/// caller, with the claim's start lines); returns which applied. A finish
/// that would queue its task again while a cancel was requested becomes that cancel
/// ([`Finish::as_cancel`]). A finish that queues its task again sends a wake-up in the
/// transaction. With `hand_off`, the parked tasks the finishes release are handed there
/// for a claim in the same transaction ([`super::limits::release`]).
pub(crate) fn finish_in(
    tx: &mut impl GenericClient,
    finishes: &[Finish],
    lines: &mut Numbered<'_>,
    statements: &Statements,
    hand_off: Option<&mut Vec<Handed>>,
) -> Result<Vec<bool>, StoreError> {
    let mut applied = vec![false; finishes.len()];
    if finishes.is_empty() {
        return Ok(applied);
    }
    // A finish that would queue its task again needs the task's cancel request, read
    // with the row locked (so it cannot change before the update below), rows in id
    // order. Other finishes go straight to the update: its owner check is what makes
    // a late outcome change nothing, and should two writers ever lock rows of one
    // batch in opposite orders (a late outcome racing a recovery), the server ends one
    // of them with a deadlock error, a transient failure that is tried again.
    let again: Vec<&Finish> = finishes.iter().filter(|f| f.queues_again()).collect();
    let cancel_requested: HashMap<i64, bool> = if again.is_empty() {
        HashMap::new()
    } else {
        let ids: Vec<i64> = again.iter().map(|f| f.id).collect();
        let owners: Vec<&str> = again.iter().map(|f| f.owner.as_str()).collect();
        tx.query(
            "SELECT t.id, t.cancel_requested
             FROM tasks t JOIN UNNEST($1::BIGINT[], $2::TEXT[]) AS f(id, owner)
                  ON t.id = f.id AND t.owner = f.owner
             WHERE t.status = 'running'
             ORDER BY t.id FOR UPDATE OF t",
            &[&ids, &owners],
        )
        .context("finish tasks")?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
    };

    // What each task becomes (the first finish of a task, if a batch names one twice;
    // the others do not apply, as the task is no longer running then).
    let mut changed: Vec<(usize, Option<Finish>)> = Vec::with_capacity(finishes.len());
    let mut seen = std::collections::HashSet::with_capacity(finishes.len());
    for (i, f) in finishes.iter().enumerate() {
        if !seen.insert(f.id) {
            continue;
        }
        let instead = if cancel_requested.get(&f.id) == Some(&true) {
            f.as_cancel()
        } else {
            None
        };
        changed.push((i, instead));
    }
    let chosen: Vec<(usize, &Finish)> = changed
        .iter()
        .map(|(i, c)| (*i, c.as_ref().unwrap_or(&finishes[*i])))
        .collect();
    let rows: Vec<FinishColumns<'_>> = chosen.iter().map(|(_, f)| f.columns()).collect();
    let ids: Vec<i64> = chosen.iter().map(|(_, f)| f.id).collect();
    let owners: Vec<&str> = chosen.iter().map(|(_, f)| f.owner.as_str()).collect();
    let statuses: Vec<&str> = rows.iter().map(|r| r.status).collect();
    let results: Vec<Option<std::borrow::Cow<'_, str>>> =
        rows.iter().map(|r| r.result.map(super::storable)).collect();
    let errors: Vec<Option<std::borrow::Cow<'_, str>>> =
        rows.iter().map(|r| r.error.map(super::storable)).collect();
    let results: Vec<Option<&str>> = results.iter().map(|r| r.as_deref()).collect();
    let errors: Vec<Option<&str>> = errors.iter().map(|r| r.as_deref()).collect();
    let progress: Vec<i64> = chosen.iter().map(|(_, f)| f.progress).collect();
    let processed: Vec<i64> = chosen.iter().map(|(_, f)| f.processed).collect();
    let totals: Vec<i64> = chosen.iter().map(|(_, f)| f.total).collect();
    let messages: Vec<std::borrow::Cow<'_, str>> = chosen
        .iter()
        .map(|(_, f)| super::storable(&f.message))
        .collect();
    let messages: Vec<&str> = messages.iter().map(|m| m.as_ref()).collect();
    let finished: Vec<Option<i64>> = rows.iter().map(|r| r.finished_at).collect();
    let run_after: Vec<i64> = rows.iter().map(|r| r.run_after).collect();
    let back: Vec<i64> = rows.iter().map(|r| r.back).collect();
    let line_counts: Vec<i64> = chosen.iter().map(|(_, f)| f.lines.len() as i64).collect();
    // Applies only where the owner still holds the task; takes each task's line
    // numbers as it goes.
    let update = statements
        .get(
            tx,
            "UPDATE tasks t SET status = v.status, result = v.result, error = v.error,
                    progress = v.progress, processed = v.processed, total = v.total,
                    message = v.message, finished_at = v.finished_at,
                    run_after = v.run_after, owner = NULL, cancel_requested = FALSE,
                    attempts = t.attempts - v.back, log_seq = t.log_seq + v.lines
             FROM UNNEST($1::BIGINT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::TEXT[],
                         $6::BIGINT[], $7::BIGINT[], $8::BIGINT[], $9::TEXT[], $10::BIGINT[],
                         $11::BIGINT[], $12::BIGINT[], $13::BIGINT[])
                  AS v(id, owner, status, result, error, progress, processed, total,
                       message, finished_at, run_after, back, lines)
             WHERE t.id = v.id AND t.owner = v.owner AND t.status = 'running'
             RETURNING t.id, t.log_seq - v.lines, t.worker, t.limit_rule, t.limit_key",
        )
        .context("finish tasks")?;
    // Each attempt that stopped running frees a slot of its key. Which keys have parked
    // tasks is read in a statement after this update (limits::release, after the
    // running rows): a claim parking a task of a key share-locks its running tasks,
    // so this update waits for that claim's commit and the later read sees its park.
    // Read here, with the update, it missed a park that a claim on another connection
    // committed after the update looked, and that key's other parked tasks waited for
    // its recheck (the conformance case of eight concurrent claimers caught it).
    let mut freed: Vec<KeyOf> = Vec::new();
    let done: HashMap<i64, i64> = tx
        .query(
            &update,
            &[
                &ids,
                &owners,
                &statuses,
                &results,
                &errors,
                &progress,
                &processed,
                &totals,
                &messages,
                &finished,
                &run_after,
                &back,
                &line_counts,
            ],
        )
        .context("finish tasks")?
        .iter()
        .map(|r| {
            if let Some(limit) = limit_of(r.get(3), r.get(4)) {
                freed.push((r.get(2), limit));
            }
            (r.get(0), r.get(1))
        })
        .collect();
    let mut requeued = false;
    // Tasks that ended (not queued again): their dependants are released with one
    // statement for the batch (deps.rs).
    let mut ended = Vec::new();
    for ((i, f), row) in chosen.iter().zip(&rows) {
        let Some(&before) = done.get(&f.id) else {
            continue;
        };
        applied[*i] = true;
        requeued |= row.status == "pending";
        if row.finished_at.is_some() {
            ended.push(f.id);
        }
        for (n, line) in f.lines.iter().enumerate() {
            lines.push(f.id, before + 1 + n as i64, line.text());
        }
    }
    if requeued {
        super::wakeups::notify_in(tx)?;
    }
    let now = chosen.iter().map(|(_, f)| f.at).max().unwrap_or(0);
    super::deps::release(tx, &ended, now, Some(statements))?;
    let how = match hand_off {
        Some(handed) => Release::HandTo(handed),
        None => Release::Due(Order::RunningRows),
    };
    super::limits::release(tx, &freed, now, statements, how)?;
    Ok(applied)
}
