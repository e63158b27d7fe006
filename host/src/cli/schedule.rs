//! `stask workers schedule ID [KIND] …`: show, set, remove, pause and resume a
//! worker's schedule. The checks and the view live in `crate::schedule::manage`; this
//! file only maps flags to them and prints.

use anyhow::{anyhow, bail, Context, Result};
use chrono::Utc;
use chrono_tz::Tz;
use clap::Args;
use serde_json::Value;
use stask_storage::Store;

use super::print_json;
use crate::schedule::{manage, ScheduleView, SpecInput};

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
    let now = Utc::now();
    let id = args.id.as_str();
    let worker = store.get_worker(id)?.ok_or_else(|| {
        anyhow!("no worker '{id}' is registered (see `stask workers list`; new libraries are registered by `stask workers discover`)")
    })?;
    let data = args.data.as_deref().map(read_data).transpose()?;
    let timing = [
        ("at", &args.at),
        ("minute", &args.minute),
        ("days", &args.days),
        ("every", &args.every),
        ("from", &args.from),
        ("to", &args.to),
    ];

    let headline = match args.kind.as_deref() {
        Some(kind) if kind.trim().eq_ignore_ascii_case("manual") => {
            if data.is_some() || args.pause || args.resume {
                bail!("manual removes the schedule, so it takes no --data, --pause or --resume");
            }
            // Timing flags are refused by the same check as for other kinds.
            spec_input(&args, kind)
                .parse(tz, now)
                .map_err(|e| anyhow!(e))?;
            let had = manage::remove(store, id)?;
            Some(if had {
                format!("{id} now runs on demand only (schedule removed)")
            } else {
                format!("{id} had no schedule; it runs on demand only")
            })
        }
        Some(kind) => {
            let spec = spec_input(&args, kind)
                .parse(tz, now)
                .map_err(|e| anyhow!(e))?
                .ok_or_else(|| anyhow!("manual takes no options"))?;
            let data = match data {
                Some(d) => d,
                // Changing the timing keeps the data already set.
                None => match store.get_schedule(id)? {
                    Some(rec) => serde_json::from_str(&rec.data).unwrap_or_default(),
                    None => Value::Object(Default::default()),
                },
            };
            manage::set(store, id, &spec, &data, args.allow_sensitive, tz, now)?;
            pause_or_resume(store, id, &args, tz)?;
            Some(format!("Schedule of {id} set"))
        }
        None => {
            if let Some((name, _)) = timing.iter().find(|(_, v)| v.is_some()) {
                bail!(
                    "--{name} needs a schedule kind, e.g. `stask workers schedule {id} daily --at 08:30`"
                );
            }
            let mut changed = Vec::new();
            if let Some(d) = &data {
                manage::set_data(store, id, d, args.allow_sensitive, now)?;
                changed.push("data updated");
            }
            changed.extend(pause_or_resume(store, id, &args, tz)?);
            (!changed.is_empty()).then(|| format!("Schedule of {id}: {}", changed.join(", ")))
        }
    };
    if headline.is_some() {
        // A running service sleeps until the next due schedule it knows of; wake it
        // so it sees this change.
        store.notify_work();
    }

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
    }
}

/// Applies --pause / --resume; returns what changed.
fn pause_or_resume(
    store: &dyn Store,
    id: &str,
    args: &ScheduleArgs,
    tz: Tz,
) -> Result<Option<&'static str>> {
    // Taken after any set, so a resumed schedule's next run counts from this moment.
    let now = Utc::now();
    if args.pause {
        manage::pause(store, id, now)?;
        Ok(Some("paused"))
    } else if args.resume {
        manage::resume(store, id, tz, now)?;
        Ok(Some("resumed"))
    } else {
        Ok(None)
    }
}

/// `--data`: a JSON object given inline or as `@file.json`.
fn read_data(text: &str) -> Result<Value> {
    let (source, content) = match text.strip_prefix('@') {
        Some(path) => (
            format!("file '{path}'"),
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read data file '{path}'"))?,
        ),
        None => ("--data".to_owned(), text.to_owned()),
    };
    serde_json::from_str(&content).map_err(|e| anyhow!("{source} is not valid JSON: {e}"))
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
