//! Recording how attempts ended, only while the claiming owner still holds the task
//! (`owner = $owner AND status = 'running'`): a late outcome from a host that lost its
//! lease (its tasks were recovered and perhaps claimed again) changes nothing. The
//! statistics follow from the triggers.

use postgres::GenericClient;

use super::logs::append;
use super::Context;
use crate::error::StoreError;
use crate::queue::{Finish, Outcome};

/// A finish that would queue its task again while a cancel was requested becomes a
/// cancel ([`Finish::as_cancel`]); `None` when the finish stays as it is. The row is
/// locked as it is read, so the request cannot change before the finish applies.
fn cancel_instead(tx: &mut impl GenericClient, f: &Finish) -> Result<Option<Finish>, StoreError> {
    if !f.queues_again() {
        return Ok(None);
    }
    let requested = tx
        .query_opt(
            "SELECT cancel_requested FROM tasks
             WHERE id = $1 AND owner = $2 AND status = 'running' FOR UPDATE",
            &[&f.id, &f.owner],
        )
        .context("finish tasks")?
        .is_some_and(|r| r.get::<_, bool>(0));
    Ok(if requested { f.as_cancel() } else { None })
}

/// Applies `finishes` inside `tx` with their log lines; returns which applied. A finish
/// that queues its task again sends a wake-up in the transaction.
pub(crate) fn finish_in(
    tx: &mut impl GenericClient,
    finishes: &[Finish],
) -> Result<Vec<bool>, StoreError> {
    // Rows are locked in id order, so two hosts finishing overlapping batches (a late
    // outcome racing a recovery) cannot deadlock.
    let mut order: Vec<usize> = (0..finishes.len()).collect();
    order.sort_by_key(|&i| finishes[i].id);
    let mut applied = vec![false; finishes.len()];
    let mut lines = Vec::with_capacity(finishes.len() * 2);
    let mut requeued = false;
    let mut changed: Vec<Finish> = Vec::new();
    let mut chosen: Vec<(usize, Option<usize>)> = Vec::with_capacity(finishes.len());
    for &i in &order {
        match cancel_instead(tx, &finishes[i])? {
            Some(c) => {
                chosen.push((i, Some(changed.len())));
                changed.push(c);
            }
            None => chosen.push((i, None)),
        }
    }
    let statement = tx
        .prepare(
            "UPDATE tasks SET status = $3, result = $4, error = $5, progress = $6,
                    processed = $7, total = $8, message = $9, finished_at = $10,
                    run_after = $11, owner = NULL, cancel_requested = FALSE,
                    attempts = attempts - $12
             WHERE id = $1 AND owner = $2 AND status = 'running'",
        )
        .context("finish tasks")?;
    for (i, c) in &chosen {
        let f = c.map_or(&finishes[*i], |c| &changed[c]);
        let (status, result, error, finished_at, run_after) = match &f.outcome {
            Outcome::Completed { result } => {
                ("completed", Some(result.as_str()), None, Some(f.at), 0)
            }
            Outcome::Failed {
                error,
                retry_at: Some(at),
            } => ("pending", None, Some(error.as_str()), None, *at),
            Outcome::Failed {
                error,
                retry_at: None,
            } => ("failed", None, Some(error.as_str()), Some(f.at), 0),
            Outcome::Cancelled { message } => {
                ("cancelled", None, Some(message.as_str()), Some(f.at), 0)
            }
            Outcome::Requeued => ("pending", None, None, None, f.at),
        };
        let back: i64 = matches!(f.outcome, Outcome::Requeued).into();
        let error = error.map(super::storable);
        let result = result.map(super::storable);
        let message = super::storable(&f.message);
        let n = tx
            .execute(
                &statement,
                &[
                    &f.id,
                    &f.owner,
                    &status,
                    &result,
                    &error,
                    &f.progress,
                    &f.processed,
                    &f.total,
                    &message,
                    &finished_at,
                    &run_after,
                    &back,
                ],
            )
            .context("finish task")?;
        if n > 0 {
            requeued |= status == "pending";
            lines.extend(f.lines.iter().map(|l| (f.id, l)));
        }
        applied[*i] = n > 0;
    }
    append(tx, &lines)?;
    if requeued {
        super::wakeups::notify_in(tx)?;
    }
    Ok(applied)
}
