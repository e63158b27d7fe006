//! `stask tasks …`: create, list, show, logs, cancel, retry, execute, process, clean.

use std::io::IsTerminal;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use serde_json::Value;
use stask_storage::{
    escape_text as shown, now_ms, LogLine, Priority, Status, Store, StoredLine, TaskFilter,
};

use super::{print_json, read_data};
use crate::config::Config;
use crate::engine::{self, Mode};
use crate::home::Home;
use crate::ops::tasks::{
    self as ops, attempts_so_far, find, CleanRequest, TaskRequest, DEFAULT_MAX_ATTEMPTS,
    DEFAULT_OLDER_THAN,
};
use crate::ops::Actor;
use crate::task_log::{format_duration, parse_age};
use crate::views::{LogLineView, TaskView};

#[derive(Debug, Subcommand)]
pub(super) enum TasksCommand {
    /// Queue a task for a worker's action; prints its id.
    Create {
        /// Worker identifier.
        worker: String,
        /// Action name (see `stask workers show WORKER`).
        action: String,
        /// Input data: a JSON object, or @FILE to read it from a file.
        #[arg(long)]
        data: Option<String>,
        /// high, normal or low.
        #[arg(long, default_value = "normal", value_parser = parse_priority)]
        priority: Priority,
        /// Attempts before the task stays failed (1-100).
        #[arg(long, default_value_t = DEFAULT_MAX_ATTEMPTS)]
        max_attempts: u32,
        /// Who is creating the task (recorded as started_by).
        #[arg(long)]
        user: Option<String>,
        /// Accept data keys that look like credentials.
        #[arg(long)]
        allow_sensitive: bool,
        /// Create this many identical tasks at once (prints one id per line).
        #[arg(long, default_value_t = 1)]
        count: usize,
        /// Create the task only if no task of this worker and action with this key is
        /// pending or running (see --unique-states); otherwise print that task's id and
        /// exit with 3. Default: the action's declared key, if any.
        #[arg(long, value_name = "KEY")]
        unique_key: Option<String>,
        /// Only tasks with the key created within this long count, e.g. 10m, 2h, 1d
        /// [default: any age].
        #[arg(long, value_name = "AGE", value_parser = parse_age)]
        unique_for: Option<Duration>,
        /// The statuses in which a task with the key counts, comma-separated.
        #[arg(long, value_name = "STATES", value_parser = parse_unique_states)]
        unique_states: Option<UniqueStates>,
        /// Ignore the action's declared unique key: always create the task.
        #[arg(long)]
        no_unique: bool,
        /// Run only after these tasks completed (comma-separated ids); if one fails or
        /// is cancelled, this task is cancelled, naming it.
        #[arg(long, value_name = "ID[,ID...]", value_delimiter = ',')]
        after: Vec<i64>,
        /// With --after: run once those tasks ended, whatever their outcome.
        #[arg(long)]
        after_any: bool,
    },
    /// List tasks, newest first.
    List {
        /// Only this status (pending, running, completed, failed, cancelled).
        #[arg(long, value_parser = parse_status)]
        status: Option<Status>,
        /// Only this worker.
        #[arg(long)]
        worker: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Show a task: metadata, data (credentials redacted), result, error, files, history.
    Show {
        /// Task id.
        id: i64,
    },
    /// Print a task's progress log.
    Logs {
        /// Task id.
        id: i64,
        /// Keep printing new lines until the task ends.
        #[arg(short, long)]
        follow: bool,
        /// Print the log's lines exactly as stored in the database.
        #[arg(long)]
        raw: bool,
    },
    /// Write one of a task's result files to standard output or a new file.
    Download {
        /// Task id.
        id: i64,
        /// The file's name as `tasks show` lists it (e.g. `summary.json`,
        /// `parts/1.csv`), or its position in that list (from 0).
        name: String,
        /// Write to this new file instead of standard output.
        #[arg(short, long)]
        output: Option<std::path::PathBuf>,
    },
    /// Cancel a pending task, or stop a running one.
    Cancel {
        /// Task id.
        id: i64,
    },
    /// Queue a failed or cancelled task again (the attempt count keeps counting).
    Retry {
        /// Task id.
        id: i64,
    },
    /// Run one pending task now, in the foreground.
    Execute {
        /// Task id.
        id: i64,
    },
    /// Run every pending task now and exit.
    Process {
        /// Tasks at once [default: STASK_CONCURRENCY or the number of CPUs].
        #[arg(long)]
        concurrency: Option<usize>,
    },
    /// Delete finished tasks older than a cutoff, with their logs and result files.
    Clean {
        /// Age cutoff, e.g. 30d, 12h, 90m.
        #[arg(long, default_value = DEFAULT_OLDER_THAN, value_parser = parse_age)]
        older_than: Duration,
        /// Also delete failed and cancelled tasks (default: completed only).
        #[arg(long)]
        include_failed: bool,
    },
}

/// Prints a task created or found with a unique key (its id alone on stdout, so
/// `id=$(stask tasks create …)` works either way) and returns the exit code.
fn print_unique(created: &ops::Created, key: &str, json: bool) -> Result<i32> {
    let t = &created.first;
    if json {
        print_json(&serde_json::json!({
            "id": t.id,
            "existing": created.existing,
            "status": t.status.as_str(),
            "unique_key": key,
        }))?;
    } else {
        println!("{}", t.id);
        if created.existing {
            eprintln!(
                "task {} ({}) already has unique key '{}'; no task was created",
                t.id,
                t.status,
                shown(key)
            );
        }
    }
    Ok(if created.existing { EXIT_EXISTING } else { 0 })
}

fn parse_priority(s: &str) -> Result<Priority, String> {
    ops::parse_priority(s, "priority").map_err(|p| p.message)
}

fn parse_status(s: &str) -> Result<Status, String> {
    ops::parse_status(s, "status").map_err(|p| p.message)
}

/// `--unique-states`, parsed (a newtype: clap would read a `Vec` as a repeated option).
#[derive(Debug, Clone)]
pub(super) struct UniqueStates(Vec<Status>);

fn parse_unique_states(s: &str) -> Result<UniqueStates, String> {
    ops::parse_unique_states(s.split(','), "unique_states")
        .map(UniqueStates)
        .map_err(|p| p.message)
}

/// Exit code of `tasks create` when a task with the unique key was there and is
/// printed instead of a new one.
pub const EXIT_EXISTING: i32 = 3;

pub(super) fn run(home: &Home, config: &Config, cmd: TasksCommand, json: bool) -> Result<i32> {
    let mut store = home.store()?;
    match cmd {
        TasksCommand::Create {
            worker,
            action,
            data,
            priority,
            max_attempts,
            user,
            allow_sensitive,
            count,
            unique_key,
            unique_for,
            unique_states,
            no_unique,
            after,
            after_any,
        } => {
            let data = match data {
                None => Value::Object(Default::default()),
                Some(text) => read_data(&text)?,
            };
            let req = TaskRequest {
                worker,
                action,
                data,
                priority,
                max_attempts,
                started_by: user,
                allow_sensitive,
            };
            let unique = ops::UniqueRequest {
                key: unique_key,
                within: unique_for,
                statuses: unique_states.map(|s| s.0),
                ignore_default: no_unique,
            };
            let created = if after.is_empty() && !after_any {
                ops::create_with(&mut *store, &req, count, &unique)?
            } else {
                let after = ops::AfterRequest {
                    ids: after,
                    any: after_any,
                };
                let created = ops::create_after(&mut *store, &req, count, &unique, &after)?;
                if created.first.status == Status::Cancelled {
                    // Created, but one of its dependencies had already failed.
                    eprintln!(
                        "task {}: {}",
                        created.first.id,
                        shown(&created.first.message)
                    );
                }
                created
            };
            if let Some(key) = &created.unique_key {
                return print_unique(&created, key, json);
            }
            let ids = created.ids;
            if json && ids.len() == 1 {
                print_json(&serde_json::json!({ "id": ids[0] }))?;
            } else if json {
                print_json(&serde_json::json!({ "ids": ids }))?;
            } else {
                let mut out = std::io::BufWriter::new(std::io::stdout().lock());
                for id in &ids {
                    use std::io::Write as _;
                    writeln!(out, "{id}")?;
                }
            }
        }
        TasksCommand::List {
            status,
            worker,
            limit,
        } => {
            let tasks = store.list_tasks(&TaskFilter {
                status,
                worker,
                limit: Some(limit),
            })?;
            if json {
                let views: Vec<TaskView> = tasks.iter().map(TaskView::summary).collect();
                print_json(&views)?;
            } else if tasks.is_empty() {
                println!("No tasks.");
            } else {
                println!(
                    "{:>6}  {:<24}  {:<9}  {:>4}  {:<6}  {:<19}  MESSAGE",
                    "ID", "WORKER/ACTION", "STATUS", "%", "PRIO", "CREATED"
                );
                for t in &tasks {
                    println!(
                        "{:>6}  {:<24}  {:<9}  {:>4}  {:<6}  {:<19}  {}",
                        t.id,
                        format!("{}/{}", t.worker, t.action),
                        t.status,
                        t.progress,
                        t.priority.as_str(),
                        time(t.created_at),
                        one_line(&t.message, 60)
                    );
                }
            }
        }
        TasksCommand::Show { id } => {
            let t = find(&*store, id)?;
            let mut view = TaskView::details(&*store, &t)?;
            // A pending task held by its limit per key says so (its run_after is the
            // claim's, not a schedule's or a retry's).
            if t.status == Status::Pending {
                view.waiting = ops::limit_waiting(&*store, &t)?;
            }
            if json {
                print_json(&view)?;
            } else {
                print_task(&view);
            }
        }
        TasksCommand::Download { id, name, output } => {
            download(&*store, id, &name, output.as_deref())?;
        }
        TasksCommand::Logs { id, follow, raw } => {
            find(&*store, id)?;
            follow_logs(&*store, id, follow, raw)?;
        }
        TasksCommand::Cancel { id } => {
            let (result, _) = ops::cancel(&mut *store, &Actor::local(), id)?;
            if json {
                print_json(&serde_json::json!({ "id": id, "result": result.as_str() }))?;
            } else {
                let text = match result {
                    ops::Cancelled::Now => "cancelled",
                    ops::Cancelled::Requested => {
                        "cancel requested; the worker is being told to stop"
                    }
                };
                println!("task {id}: {text}");
            }
        }
        TasksCommand::Retry { id } => {
            let t = ops::retry(&mut *store, &Actor::local(), id)?.task;
            if json {
                print_json(
                    &serde_json::json!({ "id": id, "status": "pending", "attempts": t.attempts }),
                )?;
            } else {
                println!("task {id} queued again ({})", attempts_so_far(t.attempts));
            }
        }
        TasksCommand::Execute { id } => {
            drop(store);
            return execute(home, config, id, json);
        }
        TasksCommand::Process { concurrency } => {
            drop(store);
            return process(home, config, concurrency, json);
        }
        TasksCommand::Clean {
            older_than,
            include_failed,
        } => {
            let report = ops::clean(
                &mut *store,
                &CleanRequest {
                    older_than,
                    include_failed,
                },
            )?;
            if json {
                print_json(&report)?;
            } else {
                println!(
                    "Removed {} tasks with their logs and result files; {} given back to the file system.",
                    report.deleted_tasks,
                    crate::task_log::format_bytes(report.released_bytes)
                );
            }
        }
    }
    Ok(0)
}

fn time(ms: i64) -> String {
    use chrono::TimeZone;
    match chrono::Local.timestamp_millis_opt(ms) {
        chrono::LocalResult::Single(t) => t.format("%Y-%m-%d %H:%M:%S").to_string(),
        _ => "-".into(),
    }
}

/// A message on one line of at most `max` characters, escaped as log lines are (it is
/// plugin text: no terminal escape sequence gets through, tabs become spaces).
fn one_line(s: &str, max: usize) -> String {
    let flat = shown(s).replace('\t', " ");
    if flat.chars().count() <= max {
        flat
    } else {
        let cut: String = flat.chars().take(max - 1).collect();
        format!("{cut}…")
    }
}

fn print_task(t: &TaskView) {
    println!("Task {} — {}/{}", t.id, t.worker, t.action);
    println!(
        "  status:     {} (attempt {} of {})",
        t.status, t.attempts, t.max_attempts
    );
    println!("  priority:   {}", t.priority);
    if let Some(by) = &t.started_by {
        println!("  started by: {by}");
    }
    if let Some(parent) = t.parent {
        println!("  enqueued by: #{parent}");
    }
    if let Some(children) = t.children.as_deref().filter(|c| !c.is_empty()) {
        let ids: Vec<String> = children.iter().map(|id| format!("#{id}")).collect();
        println!("  enqueued:   {}", ids.join(", "));
    }
    println!("  created:    {}", time(t.created_at));
    if let Some(s) = t.started_at {
        println!("  started:    {}", time(s));
    }
    if let Some(f) = t.finished_at {
        let took = t
            .duration_ms
            .map(|d| {
                format!(
                    " (took {})",
                    format_duration(Duration::from_millis(d.max(0) as u64))
                )
            })
            .unwrap_or_default();
        println!("  finished:   {}{took}", time(f));
    }
    if let Some(d) = &t.dependencies {
        let list = |ids: &[i64]| -> String {
            ids.iter()
                .map(|id| format!("#{id}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let any = if d.any {
            " (whatever their outcome)"
        } else {
            ""
        };
        println!("  after:      {}{any}", list(&d.after));
        if !d.waiting_on.is_empty() {
            println!("  waiting on: {}", list(&d.waiting_on));
        }
    }
    if let Some(l) = &t.limit {
        println!(
            "  limit:      key '{}' (rule {})",
            shown(&l.key),
            shown(&l.rule)
        );
    }
    let limit_text = t.waiting.as_ref().and_then(|w| w.limit_text());
    if let Some(why) = &limit_text {
        println!("  waiting:    {}", shown(why));
    } else if t.status == Status::Pending.as_str()
        && t.run_after > now_ms()
        && t.run_after != stask_storage::WAITING_FOR_DEPENDENCIES
        && t.run_after != stask_storage::PARKED_UNTIL_RELEASED
    {
        println!("  next try:   {}", time(t.run_after));
    }
    println!(
        "  progress:   {}% ({}/{})",
        t.progress, t.processed, t.total
    );
    // Messages and errors are plugin text: escaped like the lines of the log.
    println!("  message:    {}", shown(&t.message));
    println!("  data:       {}", t.data);
    if let Some(r) = &t.result {
        println!("  result:     {r}");
    }
    if let Some(e) = &t.error {
        println!("  error:      {}", shown(e));
    }
    if let Some(files) = &t.result_files {
        if !files.is_empty() {
            println!("  result files:");
            for f in files {
                println!("    {} ({} bytes)", shown(&f.name), f.size);
            }
        }
    }
    if let Some(n) = t.log_lines {
        println!("  log:        {n} lines (`stask tasks logs {}`)", t.id);
    }
    if let Some(h) = &t.history {
        let skip = h.len().saturating_sub(20);
        let all = t.log_lines.unwrap_or(h.len() as u64);
        println!(
            "  progress history{}:",
            if all > h.len() as u64 || skip > 0 {
                format!(" (last {} of {all})", h.len() - skip)
            } else {
                String::new()
            }
        );
        for l in &h[skip..] {
            println!("    {}", format_line(l));
        }
    }
}

/// A log line for people: status, percent, counts, ETA and message, the message escaped
/// exactly as in the stored line (what `--raw` prints), so both show the same text.
fn format_line(l: &LogLineView) -> String {
    let counts = if l.total > 0 {
        format!(" {}/{}", l.processed, l.total)
    } else {
        String::new()
    };
    let eta = if l.eta != "-" && l.status == "running" {
        format!(" ETA {}", l.eta)
    } else {
        String::new()
    };
    format!(
        "{:<9} {:>3}%{counts}{eta}  {}",
        l.status,
        l.progress,
        shown(&l.message)
    )
}

/// Writes result file `name` of task `id` to `output` (a new file) or stdout.
fn download(
    store: &dyn Store,
    id: i64,
    name: &str,
    output: Option<&std::path::Path>,
) -> Result<()> {
    use std::io::Write as _;
    let file = ops::result_file(store, id, name)?;
    // A new file is written under a temporary name and renamed when complete, so a
    // failed download leaves nothing behind (and never overwrites a file).
    let (mut out, tmp): (Box<dyn std::io::Write>, Option<std::path::PathBuf>) = match output {
        Some(path) => {
            if path.exists() {
                bail!(
                    "'{}' already exists (an existing file is never overwritten; choose another --output)",
                    path.display()
                );
            }
            let tmp = path.with_file_name(format!(
                ".{}.{}.part",
                path.file_name().unwrap_or_default().to_string_lossy(),
                std::process::id()
            ));
            let f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)
                .with_context(|| format!("cannot create '{}'", tmp.display()))?;
            (Box::new(std::io::BufWriter::new(f)), Some(tmp))
        }
        None => (Box::new(std::io::stdout().lock()), None),
    };
    let written = (|| -> Result<()> {
        let (mut index, mut sent) = (0, 0u64);
        while let Some(chunk) = store.result_file_chunk(id, file.id, index)? {
            out.write_all(&chunk)?;
            sent += chunk.len() as u64;
            index += 1;
        }
        if sent < file.size {
            bail!("result file '{}' of task {id} was replaced while it was being downloaded; download it again", file.name);
        }
        out.flush()?;
        Ok(())
    })();
    drop(out);
    match (written, tmp, output) {
        (Ok(()), Some(tmp), Some(path)) => {
            // Never over a file that appeared meanwhile.
            if path.exists() {
                let _ = std::fs::remove_file(&tmp);
                bail!(
                    "'{}' appeared while the file was being downloaded; nothing was overwritten",
                    path.display()
                );
            }
            std::fs::rename(&tmp, path)
                .with_context(|| format!("cannot move the download to '{}'", path.display()))
        }
        (Err(e), Some(tmp), _) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
        (result, _, _) => result,
    }
}

/// Prints one stored line: exactly as stored with `--raw`, else for people.
fn print_line(l: &StoredLine, raw: bool) {
    match l.parse() {
        Some(parsed) if !raw => println!("{}", format_line(&LogLineView::new(&parsed))),
        _ => println!("{}", l.text),
    }
}

fn follow_logs(store: &dyn Store, id: i64, follow: bool, raw: bool) -> Result<()> {
    const PAGE: usize = 1000;
    let mut after = 0;
    loop {
        // Status first: once it is final, the log is complete (the line that ends a
        // task is stored with its status).
        let finished = find(store, id)?.status.is_final();
        let lines = store.log_lines(id, after, PAGE)?;
        for l in &lines {
            print_line(l, raw);
        }
        if let Some(last) = lines.last() {
            after = last.seq;
        }
        if lines.len() == PAGE {
            continue;
        }
        if !follow || finished {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn execute(home: &Home, config: &Config, id: i64, json: bool) -> Result<i32> {
    let mut cfg = config.engine();
    cfg.concurrency = 1;
    let tty = std::io::stdout().is_terminal() && !json;
    let bar = tty.then(|| {
        let b = indicatif::ProgressBar::new(100);
        b.set_style(
            indicatif::ProgressStyle::with_template("{bar:40.cyan/blue} {pos:>3}% {wide_msg}")
                .expect("valid template"),
        );
        b
    });
    let mut observer = |_: i64, line: &LogLine| match &bar {
        Some(b) => {
            b.set_position(line.progress as u64);
            b.set_message(shown(&line.message).into_owned());
            if line.status != "running" {
                b.println(format_line(&LogLineView::new(line)));
            }
        }
        None if !json => println!("{}", format_line(&LogLineView::new(line))),
        None => {}
    };
    let summary = engine::run(home, &cfg, Mode::One(id), &mut observer)?;
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    // Tasks of dead processes recovered before this one ran: worth knowing, but not
    // this command's output.
    for r in &summary.recovered {
        eprintln!("recovered task {}: {}", r.id, r.reason);
    }
    let store = home.store()?;
    let t = find(&*store, id)?;
    if json {
        print_json(&TaskView::summary(&t))?;
    } else if bar.is_some() {
        println!("task {id}: {} — {}", t.status, shown(&t.message));
    }
    Ok(if t.status == Status::Completed { 0 } else { 1 })
}

fn process(home: &Home, config: &Config, concurrency: Option<usize>, json: bool) -> Result<i32> {
    let mut cfg = config.engine();
    if let Some(n) = concurrency {
        if n == 0 || n > 256 {
            bail!("--concurrency must be between 1 and 256, got {n}");
        }
        cfg.concurrency = n;
    }
    let store = home.store()?;
    let claimable = store.count_claimable(now_ms())?;
    drop(store);
    let bar = (std::io::stdout().is_terminal() && !json && claimable > 0).then(|| {
        let b = indicatif::ProgressBar::new(claimable as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40.cyan/blue} {pos}/{len} tasks {wide_msg}",
            )
            .expect("valid template"),
        );
        b
    });
    let mut observer = |id: i64, line: &LogLine| {
        if let Some(b) = &bar {
            if matches!(line.status.as_str(), "completed" | "failed" | "cancelled") {
                b.inc(1);
                b.set_message(format!("#{id} {}", line.status));
            }
        }
    };
    let summary = engine::run(home, &cfg, Mode::Drain, &mut observer)?;
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    if json {
        print_json(&summary)?;
    } else {
        for r in &summary.recovered {
            println!("recovered task {}: {}", r.id, r.reason);
        }
        println!(
            "{} completed, {} failed, {} cancelled, {} queued for retry",
            summary.completed, summary.failed, summary.cancelled, summary.retried
        );
        let waiting = home.store()?.task_status_counts()?.pending;
        if waiting > 0 {
            println!(
                "{waiting} tasks still pending (retries not yet due, or their worker is inactive)"
            );
        }
    }
    Ok(0)
}
