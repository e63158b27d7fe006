//! `stask workflows …`: create (from a JSON document), list, show, cancel, retry.

use std::io::Read as _;

use anyhow::{Context, Result};
use clap::Subcommand;
use stask_storage::escape_text as shown;

use super::print_json;
use crate::home::Home;
use crate::ops::workflows::{self as ops, parse_document};
use crate::ops::Actor;
use crate::views::{WorkflowSummaryView, WorkflowView};

/// What `workflows create` documents in its help.
const DOCUMENT_HELP: &str = "The document is JSON:

  {\"name\": \"nightly import\",
   \"tasks\": [
     {\"step\": \"fetch\", \"worker\": \"demo\", \"action\": \"run\", \"data\": {\"steps\": 3}},
     {\"step\": \"a\", \"worker\": \"demo\", \"action\": \"run\", \"after\": [\"fetch\"]},
     {\"step\": \"b\", \"worker\": \"demo\", \"action\": \"run\", \"after\": [\"fetch\"]},
     {\"step\": \"merge\", \"worker\": \"demo\", \"action\": \"echo\", \"after\": [\"a\", \"b\"],
      \"priority\": \"high\", \"max_attempts\": 2, \"after_any\": false}
   ]}

Each task: step (1-64 of A-Z a-z 0-9 _ . -, unique), worker, action, data (a JSON
object, default {}), priority (high, normal, low), max_attempts (1-100, default 3),
after (steps it runs after), after_any (run once they ended whatever their outcome;
otherwise a failed or cancelled step cancels the steps after it), allow_sensitive.
At most 10,000 tasks; no cycles. Every task is checked as `tasks create` checks it,
and the workflow is stored whole or not at all.";

#[derive(Debug, Subcommand)]
pub(super) enum WorkflowsCommand {
    /// Create a workflow (tasks with dependencies) from a JSON document; prints its id.
    #[command(after_help = DOCUMENT_HELP)]
    Create {
        /// The document's file, or - to read it from standard input.
        file: String,
        /// Who is creating it (recorded as started_by of the workflow and its tasks).
        #[arg(long)]
        user: Option<String>,
    },
    /// List workflows, newest first, with overall progress.
    List {
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Skip this many of the newest.
        #[arg(long, default_value_t = 0)]
        offset: u64,
    },
    /// Show a workflow: its steps, their statuses and the graph.
    Show {
        /// Workflow id.
        id: i64,
    },
    /// Cancel a workflow: its pending tasks now, its running ones as they stop.
    Cancel {
        /// Workflow id.
        id: i64,
    },
    /// Queue a workflow's failed and cancelled tasks again; the tasks after them wait
    /// for them again.
    Retry {
        /// Workflow id.
        id: i64,
    },
}

pub(super) fn run(home: &Home, cmd: WorkflowsCommand, json: bool) -> Result<()> {
    let mut store = home.store()?;
    match cmd {
        WorkflowsCommand::Create { file, user } => {
            let text = if file == "-" {
                let mut s = String::new();
                std::io::stdin()
                    .read_to_string(&mut s)
                    .context("cannot read the workflow document from standard input")?;
                s
            } else {
                std::fs::read_to_string(&file)
                    .with_context(|| format!("cannot read workflow file '{file}'"))?
            };
            let doc = parse_document(&text)?;
            let created = ops::create(&mut *store, &doc, user.as_deref())?;
            if json {
                let tasks: serde_json::Map<String, serde_json::Value> = created
                    .tasks
                    .iter()
                    .map(|(s, id)| (s.clone(), serde_json::json!(id)))
                    .collect();
                print_json(&serde_json::json!({ "id": created.id, "tasks": tasks }))?;
            } else {
                println!("{}", created.id);
            }
        }
        WorkflowsCommand::List { limit, offset } => {
            let (list, total) = ops::list(&*store, limit, offset)?;
            let views: Vec<WorkflowSummaryView> =
                list.iter().map(WorkflowSummaryView::new).collect();
            if json {
                print_json(&serde_json::json!({ "workflows": views, "total": total }))?;
            } else if views.is_empty() {
                println!("No workflows.");
            } else {
                println!(
                    "{:>6}  {:<30}  {:<9}  {:>4}  {:>5}  {:<19}  COUNTS",
                    "ID", "NAME", "STATUS", "%", "TASKS", "CREATED"
                );
                for w in &views {
                    println!(
                        "{:>6}  {:<30}  {:<9}  {:>4}  {:>5}  {:<19}  {}",
                        w.id,
                        one_line(&w.name, 30),
                        w.status,
                        w.progress,
                        w.tasks,
                        time(w.created_at),
                        counts(&w.counts)
                    );
                }
                if total > views.len() as i64 + offset as i64 {
                    println!("({total} workflows in all; see --offset)");
                }
            }
        }
        WorkflowsCommand::Show { id } => {
            let view = WorkflowView::new(&ops::find(&*store, id)?);
            if json {
                print_json(&view)?;
            } else {
                print_workflow(&view);
            }
        }
        WorkflowsCommand::Cancel { id } => {
            let done = ops::cancel(&mut *store, &Actor::local(), id)?;
            if json {
                print_json(&serde_json::json!({
                    "id": id,
                    "cancelled": done.cancelled,
                    "requested": done.requested,
                }))?;
            } else {
                println!(
                    "workflow {id}: {} pending task(s) cancelled, {} running task(s) told to stop",
                    done.cancelled, done.requested
                );
            }
        }
        WorkflowsCommand::Retry { id } => {
            let done = ops::retry(&mut *store, &Actor::local(), id)?;
            if json {
                print_json(&serde_json::json!({
                    "id": id,
                    "retried": done.retried,
                    "waiting": done.waiting,
                }))?;
            } else {
                println!(
                    "workflow {id}: {} task(s) queued again ({} waiting for the steps before them)",
                    done.retried, done.waiting
                );
            }
        }
    }
    Ok(())
}

fn counts(c: &crate::views::StatusCountsView) -> String {
    let mut parts = Vec::new();
    for (n, name) in [
        (c.pending, "pending"),
        (c.running, "running"),
        (c.completed, "completed"),
        (c.failed, "failed"),
        (c.cancelled, "cancelled"),
    ] {
        if n > 0 {
            parts.push(format!("{n} {name}"));
        }
    }
    parts.join(", ")
}

fn print_workflow(w: &WorkflowView) {
    let s = &w.summary;
    println!("Workflow {}: {}", s.id, shown(&s.name));
    println!("Status:   {} ({}%)", s.status, s.progress);
    println!("Tasks:    {} ({})", s.tasks, counts(&s.counts));
    if let Some(by) = &s.started_by {
        println!("By:       {}", shown(by));
    }
    println!("Created:  {}", time(s.created_at));
    if let Some(f) = s.finished_at {
        println!("Finished: {}", time(f));
    }
    println!();
    println!(
        "{:<24}  {:>6}  {:<9}  {:>4}  {:<28}  MESSAGE",
        "STEP", "TASK", "STATUS", "%", "WORKER/ACTION"
    );
    for st in &w.steps {
        let t = &st.task;
        println!(
            "{:<24}  {:>6}  {:<9}  {:>4}  {:<28}  {}",
            st.step,
            t.id,
            t.status,
            t.progress,
            one_line(&format!("{}/{}", t.worker, t.action), 28),
            one_line(&t.message, 60)
        );
    }
    println!();
    println!("Graph (each step after the steps it runs after):");
    for st in &w.steps {
        if st.after.is_empty() {
            println!("  {} [{}]", st.step, st.task.status);
        } else {
            println!(
                "  {} -> {} [{}]{}",
                st.after.join(", "),
                st.step,
                st.task.status,
                if st.after_any {
                    " (whatever their outcome)"
                } else {
                    ""
                }
            );
        }
    }
}

fn time(ms: i64) -> String {
    use chrono::TimeZone;
    match chrono::Local.timestamp_millis_opt(ms) {
        chrono::LocalResult::Single(t) => t.format("%Y-%m-%d %H:%M:%S").to_string(),
        _ => "-".into(),
    }
}

/// Text on one line of at most `max` characters, escaped as log lines are.
fn one_line(s: &str, max: usize) -> String {
    let flat = shown(s).replace('\t', " ");
    if flat.chars().count() <= max {
        flat
    } else {
        let cut: String = flat.chars().take(max - 1).collect();
        format!("{cut}…")
    }
}
