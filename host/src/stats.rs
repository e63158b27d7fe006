//! Statistics: the overview, per worker, and per period (today, this week, this month or
//! any range) with a per-day or per-hour series. The formulas are in README.md
//! ("Statistics"); the numbers come from tables the database keeps up to date on every
//! task change (see `stask_storage::Store::task_status_counts`), so computing them costs
//! the same whatever the number of tasks.
//!
//! Periods are calendar periods in the configured timezone: today is local midnight to
//! the next midnight, a week starts on Monday, a month on the 1st. Custom ranges are
//! resolved to 15 minutes (the buckets the database counts in).

use std::collections::BTreeMap;

use anyhow::Result;
use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use serde::Serialize;
use stask_storage::{Activity, Store, WorkerLastRun};

use crate::problem::Problem;
use crate::schedule::resolve_local;
use crate::views::{StatusCountsView, TimeView};

/// Ranges up to this long get an hourly series; longer ones a daily one.
pub const HOURLY_UP_TO: Duration = Duration::days(2);

/// Longest custom range (about ten years of days).
pub const MAX_RANGE_DAYS: i64 = 3660;

/// `part / whole`, or `None` when `whole` is 0.
fn ratio(part: i64, whole: i64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

/// Success and failure rates over finished tasks: completed / (completed + failed +
/// cancelled) and failed / (the same); `None` when nothing finished.
fn rates(completed: i64, failed: i64, cancelled: i64) -> (Option<f64>, Option<f64>) {
    let finished = completed + failed + cancelled;
    (ratio(completed, finished), ratio(failed, finished))
}

fn average(sum_ms: i64, n: i64) -> Option<f64> {
    (n > 0).then(|| sum_ms as f64 / n as f64)
}

/// Every task in the database.
#[derive(Debug, Clone, Serialize)]
pub struct Overview {
    /// Tasks in all.
    pub total: i64,
    /// Tasks per status.
    pub by_status: StatusCountsView,
    /// Completed + failed + cancelled.
    pub finished: i64,
    /// completed / finished (`null` when nothing finished).
    pub success_rate: Option<f64>,
    /// failed / finished.
    pub failure_rate: Option<f64>,
    /// Mean duration of the last attempt of completed and failed tasks, in ms.
    pub average_duration_ms: Option<f64>,
}

/// One worker's tasks (all of them, or those of a period).
#[derive(Debug, Clone, Serialize)]
pub struct WorkerStats {
    /// Worker identifier.
    pub worker: String,
    /// Title, when the worker is registered.
    pub title: Option<String>,
    /// Scope, when the worker is registered.
    pub scope: Option<String>,
    /// Whether the worker is still registered (its tasks stay after it is removed).
    pub registered: bool,
    /// Tasks created.
    pub created: i64,
    /// Tasks completed.
    pub completed: i64,
    /// Tasks failed.
    pub failed: i64,
    /// Tasks cancelled.
    pub cancelled: i64,
    /// Pending now (all-time view only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending: Option<i64>,
    /// Running now (all-time view only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub running: Option<i64>,
    /// completed / (completed + failed + cancelled).
    pub success_rate: Option<f64>,
    /// failed / (completed + failed + cancelled).
    pub failure_rate: Option<f64>,
    /// Mean duration of the last attempt of completed and failed tasks, in ms.
    pub average_duration_ms: Option<f64>,
    /// When a task of this worker last finished running (completed, failed or
    /// cancelled; ms). Kept after the task is cleaned up.
    pub last_execution: Option<i64>,
}

/// One point of a period's series.
#[derive(Debug, Clone, Serialize)]
pub struct Point {
    /// Start of the day or hour (ms).
    pub start: i64,
    /// `2026-03-01` or `2026-03-01 14:00` in the configured timezone.
    pub label: String,
    /// Tasks created in it.
    pub created: i64,
    /// Tasks that completed in it.
    pub completed: i64,
    /// Tasks that failed in it.
    pub failed: i64,
    /// Tasks cancelled in it.
    pub cancelled: i64,
}

/// The tasks of one period.
#[derive(Debug, Clone, Serialize)]
pub struct PeriodStats {
    /// `today`, `week`, `month` or `custom`.
    pub period: String,
    /// Start (inclusive).
    pub since: TimeView,
    /// End (exclusive).
    pub until: TimeView,
    /// The timezone days and hours are counted in.
    pub timezone: String,
    /// `hour` (ranges up to two days) or `day`.
    pub granularity: String,
    /// Tasks created in the period.
    pub created: i64,
    /// Tasks that completed in the period.
    pub completed: i64,
    /// Tasks that failed in the period.
    pub failed: i64,
    /// Tasks cancelled in the period.
    pub cancelled: i64,
    /// completed / (completed + failed + cancelled), of tasks that finished in it.
    pub success_rate: Option<f64>,
    /// failed / (completed + failed + cancelled).
    pub failure_rate: Option<f64>,
    /// Mean duration of completed and failed tasks that finished in it, in ms.
    pub average_duration_ms: Option<f64>,
    /// Per hour or per day.
    pub series: Vec<Point>,
}

/// Everything `stask stats` shows.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Every task.
    pub overview: Overview,
    /// Per worker: all time, or over the custom range when one was given.
    pub workers: Vec<WorkerStats>,
    /// Today, this week and this month; or the custom range alone.
    pub periods: Vec<PeriodStats>,
}

/// The overview.
pub fn overview(store: &dyn Store) -> Result<Overview> {
    let c = store.task_status_counts()?;
    let (run_ms, runs) = store
        .worker_counts()?
        .iter()
        .fold((0, 0), |(ms, n), w| (ms + w.run_ms, n + w.runs));
    let finished = c.completed + c.failed + c.cancelled;
    let (success_rate, failure_rate) = rates(c.completed, c.failed, c.cancelled);
    Ok(Overview {
        total: c.pending + c.running + finished,
        finished,
        success_rate,
        failure_rate,
        average_duration_ms: average(run_ms, runs),
        by_status: StatusCountsView::new(&c),
    })
}

/// Per worker: every registered worker and every worker that still has tasks, by
/// identifier. With `range`, the counts are those of tasks created / finished in it.
pub fn per_worker(store: &dyn Store, range: Option<(i64, i64)>) -> Result<Vec<WorkerStats>> {
    let registered: BTreeMap<String, (String, String)> = store
        .list_workers()?
        .into_iter()
        .map(|w| (w.identifier, (w.title, w.scope)))
        .collect();
    let last = store.worker_last_runs()?;
    let mut out: BTreeMap<String, WorkerStats> = BTreeMap::new();
    let blank = |id: &str, last: &WorkerLastRun| WorkerStats {
        worker: id.to_owned(),
        title: registered.get(id).map(|r| r.0.clone()),
        scope: registered.get(id).map(|r| r.1.clone()),
        registered: registered.contains_key(id),
        created: 0,
        completed: 0,
        failed: 0,
        cancelled: 0,
        pending: None,
        running: None,
        success_rate: None,
        failure_rate: None,
        average_duration_ms: None,
        last_execution: last.last_finished_at,
    };
    let none = WorkerLastRun::default();
    for id in registered.keys() {
        out.insert(id.clone(), blank(id, last.get(id).unwrap_or(&none)));
    }
    match range {
        None => {
            for w in store.worker_counts()? {
                let e = out
                    .entry(w.worker.clone())
                    .or_insert_with(|| blank(&w.worker, last.get(&w.worker).unwrap_or(&none)));
                let c = &w.counts;
                e.created = c.pending + c.running + c.completed + c.failed + c.cancelled;
                e.completed = c.completed;
                e.failed = c.failed;
                e.cancelled = c.cancelled;
                e.average_duration_ms = average(w.run_ms, w.runs);
            }
            for e in out.values_mut() {
                let c = store.count_tasks_by(Some(&e.worker), Some(stask_storage::Status::Pending));
                e.pending = Some(c?);
                let c = store.count_tasks_by(Some(&e.worker), Some(stask_storage::Status::Running));
                e.running = Some(c?);
            }
        }
        Some((since, until)) => {
            for (worker, a) in store.activity_by_worker(since, until)? {
                let e = out
                    .entry(worker.clone())
                    .or_insert_with(|| blank(&worker, last.get(&worker).unwrap_or(&none)));
                e.created = a.created;
                e.completed = a.completed;
                e.failed = a.failed;
                e.cancelled = a.cancelled;
                e.average_duration_ms = average(a.run_ms, a.runs);
            }
        }
    }
    Ok(out
        .into_values()
        .map(|mut e| {
            (e.success_rate, e.failure_rate) = rates(e.completed, e.failed, e.cancelled);
            e
        })
        .collect())
}

/// The start of `date` in `tz` (its first valid instant on a day that starts with a
/// daylight-saving gap).
fn day_start(tz: Tz, date: NaiveDate) -> DateTime<Utc> {
    resolve_local(tz, date.and_hms_opt(0, 0, 0).expect("midnight exists"))
        .unwrap_or_else(|| Utc.from_utc_datetime(&date.and_hms_opt(0, 0, 0).expect("midnight")))
}

/// The calendar period containing `now`: `today`, `week` (from Monday) or `month`.
pub fn calendar_period(name: &str, tz: Tz, now: DateTime<Utc>) -> Option<(i64, i64)> {
    let today = now.with_timezone(&tz).date_naive();
    let (first, next) = match name {
        "today" => (today, today + Duration::days(1)),
        "week" => {
            let monday = today - Duration::days(today.weekday().num_days_from_monday() as i64);
            (monday, monday + Duration::days(7))
        }
        "month" => {
            let first = today.with_day(1)?;
            let next = if first.month() == 12 {
                NaiveDate::from_ymd_opt(first.year() + 1, 1, 1)?
            } else {
                NaiveDate::from_ymd_opt(first.year(), first.month() + 1, 1)?
            };
            (first, next)
        }
        _ => return None,
    };
    Some((
        day_start(tz, first).timestamp_millis(),
        day_start(tz, next).timestamp_millis(),
    ))
}

/// Reads a range bound: `YYYY-MM-DD` (local midnight; for the end, the end of that
/// day), `YYYY-MM-DD HH:MM[:SS]` or `YYYY-MM-DDTHH:MM[:SS]` (local time), or RFC 3339
/// with an offset (`2026-03-01T08:00:00Z`).
pub fn parse_bound(text: &str, tz: Tz, end: bool, field: &str) -> Result<i64, Problem> {
    let t = text.trim();
    if let Ok(d) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        let d = if end { d + Duration::days(1) } else { d };
        return Ok(day_start(tz, d).timestamp_millis());
    }
    if let Ok(at) = DateTime::parse_from_rfc3339(t) {
        return Ok(at.timestamp_millis());
    }
    for fmt in [
        "%Y-%m-%d %H:%M",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%dT%H:%M:%S",
    ] {
        if let Ok(local) = NaiveDateTime::parse_from_str(t, fmt) {
            if let Some(at) = resolve_local(tz, local) {
                return Ok(at.timestamp_millis());
            }
        }
    }
    Err(Problem::invalid(
        field,
        "invalid_date",
        format!("'{text}' is not a date like 2026-03-01, a local time like \"2026-03-01 08:30\" or an RFC 3339 time"),
    ))
}

/// Resolves what a caller asked for to `(name, since, until)`: a calendar `period`, or
/// a custom range from `since` (required) to `until` (default: now).
pub fn resolve_range(
    period: Option<&str>,
    since: Option<&str>,
    until: Option<&str>,
    tz: Tz,
    now: DateTime<Utc>,
) -> Result<(String, i64, i64), Problem> {
    match period.map(str::trim) {
        Some(p @ ("today" | "week" | "month")) => {
            if since.is_some() || until.is_some() {
                let field = if since.is_some() { "since" } else { "until" };
                return Err(Problem::invalid(
                    field,
                    "range_with_period",
                    format!("{field} goes with a custom range, not with period={p}"),
                ));
            }
            let (a, b) = calendar_period(p, tz, now).expect("known period");
            Ok((p.to_owned(), a, b))
        }
        Some("custom") | None => {
            let Some(since) = since else {
                return Err(Problem::invalid(
                    "since",
                    "missing_since",
                    "a custom range needs since (e.g. since=2026-03-01)",
                ));
            };
            let a = parse_bound(since, tz, false, "since")?;
            let b = match until {
                Some(u) => parse_bound(u, tz, true, "until")?,
                None => now.timestamp_millis(),
            };
            if b <= a {
                return Err(Problem::invalid(
                    "until",
                    "empty_range",
                    "until must be after since",
                ));
            }
            if b - a > MAX_RANGE_DAYS * 86_400_000 {
                return Err(Problem::invalid(
                    "since",
                    "range_too_long",
                    format!("a range may span at most {MAX_RANGE_DAYS} days"),
                ));
            }
            Ok(("custom".to_owned(), a, b))
        }
        Some(other) => Err(Problem::invalid(
            "period",
            "invalid_period",
            format!("'{other}' is not a period; use today, week, month or custom"),
        )),
    }
}

fn ms_to_utc(ms: i64) -> DateTime<Utc> {
    crate::schedule::tick::ms_to_utc(ms)
}

/// Slot starts of the series over `[since, until)`, with labels.
fn slots(tz: Tz, since: i64, until: i64) -> (String, Vec<(i64, String)>) {
    let mut out = Vec::new();
    if Duration::milliseconds(until - since) <= HOURLY_UP_TO {
        let local = ms_to_utc(since).with_timezone(&tz);
        let floor = local
            .with_minute(0)
            .and_then(|t| t.with_second(0))
            .and_then(|t| t.with_nanosecond(0))
            .map_or(since, |t| t.timestamp_millis());
        let mut at = floor;
        while at < until {
            let label = ms_to_utc(at)
                .with_timezone(&tz)
                .format("%Y-%m-%d %H:00")
                .to_string();
            out.push((at.max(since), label));
            at += 3_600_000;
        }
        ("hour".to_owned(), out)
    } else {
        let mut date = ms_to_utc(since).with_timezone(&tz).date_naive();
        let last = ms_to_utc(until - 1).with_timezone(&tz).date_naive();
        while date <= last {
            let start = day_start(tz, date).timestamp_millis().max(since);
            out.push((start, date.format("%Y-%m-%d").to_string()));
            date += Duration::days(1);
        }
        ("day".to_owned(), out)
    }
}

/// The tasks of `[since, until)` with their series.
pub fn period(
    store: &dyn Store,
    name: &str,
    since: i64,
    until: i64,
    tz: Tz,
) -> Result<PeriodStats> {
    let (granularity, slots) = slots(tz, since, until);
    let mut series: Vec<Point> = slots
        .into_iter()
        .map(|(start, label)| Point {
            start,
            label,
            created: 0,
            completed: 0,
            failed: 0,
            cancelled: 0,
        })
        .collect();
    let mut total = Activity::default();
    for (bucket, a) in store.activity_by_bucket(since, until)? {
        total.add(&a);
        // The last slot starting at or before the bucket.
        let i = series
            .partition_point(|p| p.start <= bucket)
            .saturating_sub(1);
        if let Some(p) = series.get_mut(i) {
            p.created += a.created;
            p.completed += a.completed;
            p.failed += a.failed;
            p.cancelled += a.cancelled;
        }
    }
    let (success_rate, failure_rate) = rates(total.completed, total.failed, total.cancelled);
    Ok(PeriodStats {
        period: name.to_owned(),
        since: TimeView::new(since, tz),
        until: TimeView::new(until, tz),
        timezone: tz.name().to_owned(),
        granularity,
        created: total.created,
        completed: total.completed,
        failed: total.failed,
        cancelled: total.cancelled,
        success_rate,
        failure_rate,
        average_duration_ms: average(total.run_ms, total.runs),
        series,
    })
}

/// The whole report: with a custom range, per-worker numbers and the one period are
/// those of the range; without, per-worker numbers are all-time and the periods are
/// today, this week and this month.
pub fn report(
    store: &dyn Store,
    range: Option<(String, i64, i64)>,
    tz: Tz,
    now: DateTime<Utc>,
) -> Result<Report> {
    let overview = overview(store)?;
    match range {
        Some((name, since, until)) => Ok(Report {
            overview,
            workers: per_worker(store, Some((since, until)))?,
            periods: vec![period(store, &name, since, until, tz)?],
        }),
        None => {
            let mut periods = Vec::new();
            for name in ["today", "week", "month"] {
                let (a, b) = calendar_period(name, tz, now).expect("known period");
                periods.push(period(store, name, a, b, tz)?);
            }
            Ok(Report {
                overview,
                workers: per_worker(store, None)?,
                periods,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn calendar_periods_follow_the_local_calendar() {
        let tz: Tz = "Europe/Kyiv".parse().unwrap();
        // Wednesday 2026-03-04 01:30 local (23:30 UTC the day before).
        let now = utc("2026-03-03T23:30:00Z");
        let (a, b) = calendar_period("today", tz, now).unwrap();
        assert_eq!(ms_to_utc(a), utc("2026-03-03T22:00:00Z"));
        assert_eq!(b - a, 86_400_000);
        let (a, _) = calendar_period("week", tz, now).unwrap();
        assert_eq!(ms_to_utc(a), utc("2026-03-01T22:00:00Z"), "Monday 2 March");
        let (a, b) = calendar_period("month", tz, now).unwrap();
        assert_eq!(ms_to_utc(a), utc("2026-02-28T22:00:00Z"));
        // March has a daylight-saving change (29th): 31 days minus one hour.
        assert_eq!(b - a, 31 * 86_400_000 - 3_600_000);
    }

    #[test]
    fn ranges_and_series() {
        let tz = chrono_tz::UTC;
        let now = utc("2026-03-04T12:00:00Z");
        let (_, a, b) =
            resolve_range(None, Some("2026-03-01"), Some("2026-03-03"), tz, now).unwrap();
        assert_eq!(b - a, 3 * 86_400_000, "until is inclusive of its day");
        let (g, s) = slots(tz, a, b);
        assert_eq!((g.as_str(), s.len()), ("day", 3));
        assert_eq!(s[2].1, "2026-03-03");
        let (_, a, b) = resolve_range(Some("today"), None, None, tz, now).unwrap();
        let (g, s) = slots(tz, a, b);
        assert_eq!((g.as_str(), s.len()), ("hour", 24));
        assert_eq!(s[13].1, "2026-03-04 13:00");
        let e = resolve_range(None, Some("yesterday"), None, tz, now).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("since"));
        let e = resolve_range(None, Some("2026-03-02"), Some("2026-03-01"), tz, now).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("until"));
        let e = resolve_range(Some("year"), None, None, tz, now).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("period"));
        let e = resolve_range(Some("today"), Some("2026-03-01"), None, tz, now).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("since"));
        assert!(resolve_range(None, None, None, tz, now).is_err());
        let t = parse_bound("2026-03-01T08:00:00+02:00", tz, false, "since").unwrap();
        assert_eq!(ms_to_utc(t), utc("2026-03-01T06:00:00Z"));
    }

    #[test]
    fn rates_exclude_unfinished_tasks() {
        assert_eq!(rates(3, 1, 0), (Some(0.75), Some(0.25)));
        assert_eq!(rates(0, 0, 0), (None, None));
    }
}
