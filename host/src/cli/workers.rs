//! `stask workers …`: discover, rescan, clean-orphaned, list, show, activate, deactivate.

use anyhow::{Context, Result};
use clap::Subcommand;
use stask_storage::{escape_text as shown, Store};

use super::print_json;
use super::terminal::NoEcho;
use crate::config::Config;
use crate::discovery::{Restored, Skipped, WorkerChange};
use crate::home::Home;
use crate::ops::workers::{self as ops, find, SettingsChange};
use crate::views::{WorkerDetails, WorkerView};

#[derive(Debug, Subcommand)]
pub(super) enum WorkersCommand {
    /// Register workers from new libraries in the plugins directory (inactive unless
    /// --activate).
    Discover {
        /// Activate newly registered workers right away.
        #[arg(long)]
        activate: bool,
    },
    /// Refresh registered workers whose library file changed.
    Rescan,
    /// Remove workers whose library file no longer exists (their tasks are kept).
    CleanOrphaned,
    /// List registered workers.
    List,
    /// Show one worker.
    Show {
        /// Worker identifier.
        id: String,
    },
    /// Allow a worker's tasks to run.
    Activate {
        /// Worker identifier.
        id: String,
    },
    /// Stop a worker from taking new tasks.
    Deactivate {
        /// Worker identifier.
        id: String,
    },
    /// Show or set a worker's schedule: manual, once, hourly, daily, weekly or
    /// regular; pause and resume it.
    Schedule(super::schedule::ScheduleArgs),
    /// Show a worker's settings, or change them with KEY=VALUE pairs. Secret values are
    /// never printed, only whether they are set, and never taken from the command line:
    /// set one with --secret KEY.
    Settings {
        /// Worker identifier.
        id: String,
        /// KEY=VALUE pairs; values are read as the schema's type (text, integer, number,
        /// true/false). Not for secret keys (see --secret).
        assignments: Vec<String>,
        /// Set this secret key: its value is typed at a prompt (without echo) when
        /// standard input is a terminal, else read from standard input (one trailing
        /// newline removed).
        #[arg(long, value_name = "KEY")]
        secret: Option<String>,
        /// Read settings from a JSON object in this file (merged before KEY=VALUE pairs).
        #[arg(long)]
        json_file: Option<std::path::PathBuf>,
        /// Remove a key, so its default applies again (repeatable).
        #[arg(long)]
        unset: Vec<String>,
    },
}

pub(super) fn run(home: &Home, config: &Config, cmd: WorkersCommand, json: bool) -> Result<()> {
    let mut store = home.store()?;
    let exe = std::env::current_exe().context("cannot locate the stask executable")?;
    match cmd {
        WorkersCommand::Discover { activate } => {
            let report = ops::discover(&mut *store, &exe, home.plugins_dir(), activate)?;
            if json {
                return print_json(&report);
            }
            print_changes("Registered", &report.registered);
            print_restored(&report.restored);
            print_changes("Relocated", &report.relocated);
            print_held(&report.held);
            print_skipped(&report.skipped);
            println!(
                "{} registered, {} skipped, {} already registered",
                report.registered.len(),
                report.skipped.len(),
                report.already_registered
            );
            if !report.restored.is_empty() {
                println!(
                    "{} registered again with their earlier settings",
                    report.restored.len()
                );
            }
            if !activate && !report.registered.is_empty() {
                println!("New workers are inactive; enable one with `stask workers activate ID`.");
            }
        }
        WorkersCommand::Rescan => {
            let report = ops::rescan(&mut *store, &exe, home.plugins_dir())?;
            if json {
                return print_json(&report);
            }
            print_changes("Updated", &report.updated);
            print_skipped(&report.failed);
            for id in &report.missing {
                println!("  ? {id}: library file is missing (run `stask workers clean-orphaned` to remove it)");
            }
            println!(
                "{} updated, {} unchanged, {} failed, {} missing",
                report.updated.len(),
                report.unchanged,
                report.failed.len(),
                report.missing.len()
            );
        }
        WorkersCommand::CleanOrphaned => {
            let report = ops::clean_orphaned(&mut *store)?;
            if json {
                return print_json(&report);
            }
            print_changes("Deleted", &report.deleted);
            println!("{} deleted", report.deleted.len());
            if !report.deleted.is_empty() {
                println!("Their settings, state and schedules are kept: a worker discovered again gets them back.");
            }
        }
        WorkersCommand::List => {
            let views: Vec<WorkerView> =
                store.list_workers()?.iter().map(WorkerView::new).collect();
            if json {
                return print_json(&views);
            }
            if views.is_empty() {
                println!(
                    "No workers registered. Put libraries in {} and run `stask workers discover`.",
                    home.plugins_dir().display()
                );
                return Ok(());
            }
            let width = views
                .iter()
                .map(|v| v.identifier.len())
                .max()
                .unwrap_or(10)
                .max(10);
            println!(
                "{:<width$}  {:<8}  {:<12}  {:<8}  TITLE",
                "IDENTIFIER", "STATE", "SCOPE", "VERSION"
            );
            for v in &views {
                println!(
                    "{:<width$}  {:<8}  {:<12}  {:<8}  {}",
                    v.identifier,
                    if v.active { "active" } else { "inactive" },
                    shown(&v.scope),
                    shown(&v.version),
                    shown(&v.title)
                );
                if let Some(reason) = &v.inactive_reason {
                    println!("{:<width$}  inactive because {}", "", shown(reason));
                }
            }
        }
        WorkersCommand::Schedule(args) => super::schedule::run(&*store, args, json, config.tz())?,
        WorkersCommand::Show { id } => {
            let w = find(&*store, &id)?;
            let details = WorkerDetails::load(&*store, &w, config.tz())?;
            if json {
                return print_json(&details);
            }
            let (view, schedule) = (&details.worker, &details.schedule);
            println!("{} — {}", view.identifier, shown(&view.title));
            println!(
                "  state:       {}",
                if view.active { "active" } else { "inactive" }
            );
            if let Some(reason) = &view.inactive_reason {
                println!("  inactive because {}", shown(reason));
                println!(
                    "  (check the library, then allow it with `stask workers activate {}`)",
                    view.identifier
                );
            }
            println!("  schedule:    {}", schedule.summary());
            println!("  scope:       {}", shown(&view.scope));
            println!("  version:     {}", shown(&view.version));
            println!("  icon:        {}", shown(&view.icon));
            println!("  description: {}", shown(&view.description));
            println!(
                "  library:     {}{}",
                shown(view.library.path.as_deref().unwrap_or(&view.library.file)),
                if view.library.exists {
                    ""
                } else {
                    " (missing)"
                }
            );
            println!("  sha256:      {}", view.library.sha256);
            match &details.hosts {
                Some(hosts) if hosts.is_empty() => println!(
                    "  hosts:       none — no live host holds its library (sha256 {}); its tasks wait until one does",
                    view.library.sha256
                ),
                Some(hosts) => println!(
                    "  hosts:       {}",
                    hosts
                        .iter()
                        .map(|h| format!("{} ({})", h.name, h.id))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                None => {}
            }
            println!("  sandbox:     {}", shown(&view.access.summary()));
            if !view.enqueues.is_empty() {
                println!("  enqueues:    {}", view.enqueues.join(", "));
            }
            if view.access.reads != view.access.declared.reads
                || view.access.writes != view.access.declared.writes
                || view.access.connects != view.access.declared.connects
            {
                let declared = crate::views::worker::AccessView::declared_summary(&view.access);
                println!(
                    "               (set in its sandbox_* settings; it declares: {})",
                    shown(&declared)
                );
            }
            println!("  actions:");
            for a in &view.actions {
                println!(
                    "    {:<16} {}{}",
                    a.name,
                    shown(&a.title),
                    if a.scheduled { " (scheduled)" } else { "" }
                );
            }
            if !view.settings_schema.is_empty() {
                println!("  settings:");
                for s in &view.settings_schema {
                    println!(
                        "    {:<16} {:<8} {}",
                        shown(&s.key),
                        s.kind.name(),
                        shown_setting(view, s)
                    );
                }
            }
        }
        WorkersCommand::Settings {
            id,
            assignments,
            json_file,
            unset,
            secret,
        } => {
            let w = if assignments.is_empty()
                && json_file.is_none()
                && unset.is_empty()
                && secret.is_none()
            {
                find(&*store, &id)?
            } else {
                let value = match &secret {
                    Some(key) => Some(read_secret(&id, key)?),
                    None => None,
                };
                let change = SettingsChange::Assignments {
                    assignments: &assignments,
                    json_file: json_file.as_deref(),
                    unset: &unset,
                    secret: secret.as_deref().zip(value.as_deref().map(|v| v.as_str())),
                };
                ops::change_settings(&mut *store, &id, &change)?
            };
            let view = WorkerView::new(&w);
            if json {
                return print_json(&view.settings);
            }
            if view.settings_schema.is_empty() {
                println!(
                    "{id} declares no settings (every worker accepts timeout_secs, max_memory_mb, max_cpu_secs, max_open_files, limits and the sandbox_* settings)."
                );
            }
            for s in &view.settings_schema {
                println!(
                    "{:<20} {:<8} {}",
                    shown(&s.key),
                    s.kind.name(),
                    shown_setting(&view, s)
                );
            }
            for host in stask_plugin_api::manifest::HOST_SETTINGS {
                if let Some(v) = view.settings.get(host.key) {
                    // `limits` is JSON text on a command line, not a plain string.
                    let kind = match host.kind {
                        stask_plugin_api::manifest::HostKind::Limits => "json",
                        _ => host.setting_kind().name(),
                    };
                    println!("{:<20} {:<8} {v}", host.key, kind);
                }
            }
        }
        WorkersCommand::Activate { id } => set_active(&*store, &id, true, json)?,
        WorkersCommand::Deactivate { id } => set_active(&*store, &id, false, json)?,
    }
    Ok(())
}

fn set_active(store: &dyn Store, id: &str, active: bool, json: bool) -> Result<()> {
    ops::set_active(store, id, active)?;
    if json {
        print_json(&serde_json::json!({ "identifier": id, "active": active }))
    } else {
        println!("{id} is now {}", if active { "active" } else { "inactive" });
        Ok(())
    }
}

fn print_changes(label: &str, changes: &[WorkerChange]) {
    if changes.is_empty() {
        return;
    }
    println!("{label}:");
    for c in changes {
        println!(
            "  + {} {} ({}) from {}",
            c.identifier,
            shown(&c.version),
            if c.active { "active" } else { "inactive" },
            shown(&c.library)
        );
    }
}

/// Workers registered again after a removal, with what they got back and, for one that
/// stays inactive, why and what to do.
fn print_restored(restored: &[Restored]) {
    if restored.is_empty() {
        return;
    }
    println!("Registered again:");
    for r in restored {
        let c = &r.worker;
        println!(
            "  + {} {} ({}) from {}: {}",
            c.identifier,
            shown(&c.version),
            if c.active { "active" } else { "inactive" },
            shown(&c.library),
            shown(&r.message)
        );
        if let Some(schedule) = &r.schedule {
            println!("    schedule restored ({schedule})");
        }
        if let Some(reason) = &c.inactive_reason {
            println!(
                "    inactive: {}; once checked, allow it with `stask workers activate {}`",
                shown(reason),
                c.identifier
            );
        }
    }
}

/// Workers moved onto a different library and kept inactive, with why and what to do.
fn print_held(held: &[WorkerChange]) {
    if held.is_empty() {
        return;
    }
    println!("Held (inactive until you activate them):");
    for c in held {
        println!(
            "  ! {} {} from {}: {}; once checked, allow it with `stask workers activate {}`",
            c.identifier,
            shown(&c.version),
            shown(&c.library),
            shown(
                c.inactive_reason
                    .as_deref()
                    .unwrap_or("its library was replaced")
            ),
            c.identifier
        );
    }
}

fn print_skipped(skipped: &[Skipped]) {
    if skipped.is_empty() {
        return;
    }
    println!("Skipped:");
    for s in skipped {
        // Reasons can quote plugin text (a panic message, a manifest value).
        match &s.identifier {
            Some(id) => println!("  ! {} [{id}]: {}", shown(&s.path), shown(&s.reason)),
            None => println!("  ! {}: {}", shown(&s.path), shown(&s.reason)),
        }
    }
}

/// A setting's value for people: secrets only as set / not set.
fn shown_setting(view: &WorkerView, spec: &stask_plugin_api::SettingSpec) -> String {
    let value = &view.settings[&spec.key];
    match (spec.secret, value["set"] == true) {
        (true, true) => "(secret, set)".to_owned(),
        (true, false) => "(secret, not set)".to_owned(),
        // JSON text: its strings are escaped already.
        (false, _) => value.to_string(),
    }
}

/// A secret setting's value, never from the command line: typed at a prompt without
/// echo when standard input is a terminal, else all of standard input with one trailing
/// newline removed.
fn read_secret(worker: &str, key: &str) -> Result<zeroize::Zeroizing<String>> {
    use std::io::{IsTerminal, Read, Write};
    let mut text = zeroize::Zeroizing::new(String::new());
    if std::io::stdin().is_terminal() {
        eprint!("Value of secret setting '{key}' of {worker} (not shown): ");
        std::io::stderr().flush()?;
        let _guard = NoEcho::new();
        std::io::stdin().read_line(&mut text)?;
    } else {
        std::io::stdin()
            .read_to_string(&mut text)
            .with_context(|| format!("cannot read the value of '{key}' from standard input"))?;
    }
    let value = text
        .strip_suffix('\n')
        .map(|t| t.strip_suffix('\r').unwrap_or(t))
        .unwrap_or(&text);
    if value.is_empty() {
        anyhow::bail!(
            "no value for secret setting '{key}' on standard input; nothing was changed (to remove it use --unset {key})"
        );
    }
    Ok(zeroize::Zeroizing::new(value.to_owned()))
}
