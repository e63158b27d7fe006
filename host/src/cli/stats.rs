//! `stask stats [--since DATE --until DATE]`: the overview, per-worker numbers and
//! today / this week / this month (or the given range with its series). `--json` prints
//! what `GET /api/v1/stats` answers.

use std::time::Duration;

use anyhow::Result;
use chrono::Utc;
use clap::Args;
use stask_storage::Store;

use super::print_json;
use crate::config::Config;
use crate::stats::{self, PeriodStats};
use crate::task_log::format_duration;

/// Flags of `stask stats`.
#[derive(Debug, Args)]
#[command(after_help = "\
Dates are YYYY-MM-DD (a whole day: --until includes its day), \"YYYY-MM-DD HH:MM\" in the
configured timezone, or RFC 3339. Formulas: README.md, section Statistics.")]
pub(super) struct StatsArgs {
    /// Start of a custom range (inclusive).
    #[arg(long)]
    since: Option<String>,
    /// End of a custom range [default: now].
    #[arg(long, requires = "since")]
    until: Option<String>,
}

fn percent(r: Option<f64>) -> String {
    r.map_or("-".to_owned(), |r| format!("{:.1}%", r * 100.0))
}

fn duration(ms: Option<f64>) -> String {
    ms.map_or("-".to_owned(), |ms| {
        format_duration(Duration::from_millis(ms.max(0.0).round() as u64))
    })
}

fn time(ms: Option<i64>, tz: chrono_tz::Tz) -> String {
    ms.map_or("-".to_owned(), |ms| {
        crate::schedule::tick::ms_to_utc(ms)
            .with_timezone(&tz)
            .format("%Y-%m-%d %H:%M")
            .to_string()
    })
}

fn period_row(label: &str, p: &PeriodStats) {
    println!(
        "{label:<12}  {:>9}  {:>9}  {:>7}  {:>9}  {:>8}  {:>8}",
        p.created,
        p.completed,
        p.failed,
        p.cancelled,
        percent(p.success_rate),
        duration(p.average_duration_ms)
    );
}

pub(super) fn run(store: &dyn Store, config: &Config, args: StatsArgs, json: bool) -> Result<()> {
    let tz = config.tz();
    let now = Utc::now();
    let range = match &args.since {
        None => None,
        Some(since) => Some(stats::resolve_range(
            None,
            Some(since),
            args.until.as_deref(),
            tz,
            now,
        )?),
    };
    let custom = range.is_some();
    let report = stats::report(store, range, tz, now)?;
    if json {
        return print_json(&report);
    }
    let o = &report.overview;
    let c = &o.by_status;
    println!(
        "Tasks: {} in all — {} pending, {} running, {} completed, {} failed, {} cancelled",
        o.total, c.pending, c.running, c.completed, c.failed, c.cancelled
    );
    println!(
        "Success rate {}, failure rate {} (of {} finished); average duration {}",
        percent(o.success_rate),
        percent(o.failure_rate),
        o.finished,
        duration(o.average_duration_ms)
    );
    println!();
    if custom {
        let p = &report.periods[0];
        println!(
            "From {} to {} ({}):",
            p.since.local, p.until.local, p.timezone
        );
    } else {
        println!("Per worker (all time):");
    }
    if report.workers.is_empty() {
        println!("  no workers and no tasks");
    } else {
        let width = report
            .workers
            .iter()
            .map(|w| w.worker.len())
            .max()
            .unwrap_or(6)
            .max(6);
        println!(
            "  {:<width$}  {:>9}  {:>9}  {:>7}  {:>8}  {:>8}  LAST RUN",
            "WORKER", "CREATED", "COMPLETED", "FAILED", "SUCCESS", "AVG TIME"
        );
        for w in &report.workers {
            println!(
                "  {:<width$}  {:>9}  {:>9}  {:>7}  {:>8}  {:>8}  {}",
                w.worker,
                w.created,
                w.completed,
                w.failed,
                percent(w.success_rate),
                duration(w.average_duration_ms),
                time(w.last_execution, tz)
            );
        }
    }
    println!();
    println!(
        "{:<12}  {:>9}  {:>9}  {:>7}  {:>9}  {:>8}  {:>8}",
        if custom { "" } else { "PERIOD" },
        "CREATED",
        "COMPLETED",
        "FAILED",
        "CANCELLED",
        "SUCCESS",
        "AVG TIME"
    );
    if custom {
        let p = &report.periods[0];
        period_row("total", p);
        println!();
        println!(
            "{:<16}  {:>9}  {:>9}  {:>7}  {:>9}",
            if p.granularity == "hour" {
                "HOUR"
            } else {
                "DAY"
            },
            "CREATED",
            "COMPLETED",
            "FAILED",
            "CANCELLED"
        );
        for pt in &p.series {
            println!(
                "{:<16}  {:>9}  {:>9}  {:>7}  {:>9}",
                pt.label, pt.created, pt.completed, pt.failed, pt.cancelled
            );
        }
    } else {
        for (label, p) in ["today", "this week", "this month"]
            .iter()
            .zip(&report.periods)
        {
            period_row(label, p);
        }
    }
    Ok(())
}
