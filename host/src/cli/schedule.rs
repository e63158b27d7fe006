//! `stask workers schedule ID [KIND] …`: show, set, remove, pause and resume a
//! worker's schedule. The checks live in [`crate::ops::schedules`] and the view in
//! [`crate::views::ScheduleView`]; this file only maps flags to them and prints.

use anyhow::{bail, Result};
use chrono::Utc;
use chrono_tz::Tz;
use clap::Args;
use stask_storage::Store;

use super::{print_json, read_data};
use crate::ops::schedules::{self, Changed, ScheduleChange};
use crate::ops::workers;
use crate::schedule::{InputNames, SpecInput};
use crate::views::ScheduleView;

/// Flags of `stask workers schedule`.
#[derive(Debug, Args)]
#[command(after_help = "\
Times are wall-clock times in the configured timezone.

Examples:
  stask workers schedule product                                  show the schedule
  stask workers schedule product daily --at 08:30 --data '{\"file\": \"products.csv\"}'
  stask workers schedule product once --at \"2026-12-01 08:00\"
  stask workers schedule product hourly --minute 15
  stask workers schedule product weekly --days mon,fri --at 08:30
  stask workers schedule product regular --every 60m --from 05:00 --to 23:00
  stask workers schedule product --pause | --resume
  stask workers schedule product manual                           on demand only")]
pub(super) struct ScheduleArgs {
    /// Worker identifier.
    id: String,
    /// manual (removes the schedule), once, hourly, daily, weekly or regular. Without
    /// it the schedule is shown (after --data, --pause or --resume are applied).
    kind: Option<String>,
    /// once: local "YYYY-MM-DD HH:MM"; daily and weekly: local HH:MM.
    #[arg(long)]
    at: Option<String>,
    /// hourly: minute of the hour, 0-59 [default: 0].
    #[arg(long, allow_hyphen_values = true)]
    minute: Option<String>,
    /// weekly: weekdays, e.g. mon,wed,fri.
    #[arg(long)]
    days: Option<String>,
    /// regular: interval, e.g. 30m, 2h or 1h30m.
    #[arg(long)]
    every: Option<String>,
    /// regular: start of the daily window, HH:MM [default: 00:00].
    #[arg(long)]
    from: Option<String>,
    /// regular: end of the window, HH:MM, inclusive; earlier than --from crosses
    /// midnight [default: 23:59].
    #[arg(long)]
    to: Option<String>,
    /// Data of the tasks it creates: a JSON object, or @file.json [default: the
    /// schedule's current data, else {}].
    #[arg(long)]
    data: Option<String>,
    /// Accept credential-looking keys in --data.
    #[arg(long)]
    allow_sensitive: bool,
    /// Pause the schedule: it is kept but never fires until resumed.
    #[arg(long, conflicts_with = "resume")]
    pause: bool,
    /// Resume a paused schedule; its next run is computed from now.
    #[arg(long)]
    resume: bool,
}

/// Runs `stask workers schedule`; `tz` is the configured schedule timezone.
pub(super) fn run(store: &dyn Store, args: ScheduleArgs, json: bool, tz: Tz) -> Result<()> {
    let id = args.id.as_str();
    let worker = workers::find(store, id)?;
    let timing = args.kind.as_deref().map(|kind| spec_input(&args, kind));
    if timing.is_none() {
        let given = spec_input(&args, "");
        let first = given.timing().into_iter().find(|(_, v)| v.is_some());
        if let Some((name, _)) = first {
            bail!(
                "--{name} needs a schedule kind, e.g. `stask workers schedule {id} daily --at 08:30`"
            );
        }
    }
    let change = ScheduleChange {
        timing,
        data: args.data.as_deref().map(read_data).transpose()?,
        allow_sensitive: args.allow_sensitive,
        paused: if args.pause {
            Some(true)
        } else if args.resume {
            Some(false)
        } else {
            None
        },
    };
    let headline = match schedules::change(store, id, &change, tz, Utc::now())? {
        Changed::Removed { had: true } => {
            Some(format!("{id} now runs on demand only (schedule removed)"))
        }
        Changed::Removed { had: false } => {
            Some(format!("{id} had no schedule; it runs on demand only"))
        }
        Changed::Set => Some(format!("Schedule of {id} set")),
        Changed::Kept { data, paused } => {
            let mut changed = Vec::new();
            if data {
                changed.push("data updated");
            }
            match paused {
                Some(true) => changed.push("paused"),
                Some(false) => changed.push("resumed"),
                None => {}
            }
            (!changed.is_empty()).then(|| format!("Schedule of {id}: {}", changed.join(", ")))
        }
    };

    let view = ScheduleView::load(store, id, tz)?;
    if json {
        return print_json(&view);
    }
    if let Some(h) = headline {
        println!("{h}");
    }
    print_view(&view, worker.active);
    Ok(())
}

fn spec_input(args: &ScheduleArgs, kind: &str) -> SpecInput {
    SpecInput {
        kind: kind.to_owned(),
        at: args.at.clone(),
        minute: args.minute.clone(),
        days: args.days.clone(),
        every: args.every.clone(),
        from: args.from.clone(),
        to: args.to.clone(),
        names: InputNames::Flags,
    }
}

fn print_view(v: &ScheduleView, worker_active: bool) {
    if v.spec.is_none() {
        println!(
            "{} runs on demand only (manual). Set a schedule with e.g. `stask workers schedule {} daily --at 08:30`.",
            v.worker, v.worker
        );
        return;
    }
    println!("{}: {}", v.worker, v.description);
    println!("  timezone:  {}", v.timezone);
    let state = match (v.paused, worker_active) {
        (true, _) => "paused (resume with --resume)".to_owned(),
        (false, true) => "active".to_owned(),
        (false, false) => format!(
            "active, but the worker is inactive: runs are skipped until `stask workers activate {}`",
            v.worker
        ),
    };
    println!("  state:     {state}");
    println!("  data:      {}", v.data);
    match (&v.next_run, v.paused) {
        (Some(t), false) => println!("  next run:  {} ({})", t.local, t.utc),
        (_, true) => println!("  next run:  - (paused)"),
        (None, false) => println!("  next run:  - (nothing left to run)"),
    }
    match &v.last_run {
        Some(t) => {
            let task = v
                .last_task_id
                .map(|id| format!(", task {id}"))
                .unwrap_or_default();
            println!("  last run:  {} ({}){task}", t.local, t.utc);
        }
        None => println!("  last run:  -"),
    }
    if v.skipped_count > 0 {
        let last = match (&v.last_skip, &v.last_skip_reason) {
            (Some(t), Some(r)) => format!("; last at {}: {r}", t.local),
            _ => String::new(),
        };
        println!("  skipped:   {}{last}", v.skipped_count);
    } else {
        println!("  skipped:   0");
    }
}
