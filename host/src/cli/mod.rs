//! Command-line interface: argument parsing (clap) and dispatch.
//!
//! Every command that prints data takes `--json`, which prints one JSON document on
//! stdout instead of text. Errors go to stderr with a non-zero exit code (1; clap's
//! usage errors exit with 2), followed by a hint when the domain layer gave one.
//! Commands parse their flags, call the domain layer ([`crate::ops`]) and print.

mod schedule;
mod stats;
mod tasks;
mod tokens;
mod users;
mod workers;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::home::{Home, DEFAULT_HOME};
use crate::problem::Problem;

/// stask: a background-task manager whose workers are plugins.
#[derive(Debug, Parser)]
#[command(name = "stask", version, about, long_about = None)]
pub struct Cli {
    /// Home directory (database, plugins, logs).
    #[arg(long, global = true, env = "STASK_HOME", default_value = DEFAULT_HOME)]
    pub home: PathBuf,

    /// Plugins directory [default: HOME/plugins; also STASK_PLUGINS_DIR or plugins_dir in stask.toml].
    #[arg(long, global = true)]
    pub plugins_dir: Option<PathBuf>,

    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,

    /// More log output (repeat for more); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create the home directory layout and database (safe to repeat).
    Init,
    /// Manage workers (plugin registry).
    #[command(subcommand)]
    Workers(workers::WorkersCommand),
    /// Manage tasks: create, inspect, cancel, retry, run.
    #[command(subcommand)]
    Tasks(tasks::TasksCommand),
    /// Run the service: pick up tasks as they are created, run schedules and clean-up,
    /// until SIGTERM or SIGINT (SIGHUP discovers new plugins).
    Serve(ServeArgs),
    /// Print the effective configuration and where each value came from.
    Config,
    /// Manage users of the HTTP API (admin, operator, viewer).
    #[command(subcommand)]
    Users(users::UsersCommand),
    /// Manage API tokens for programs (sent as `Authorization: Bearer …`).
    #[command(subcommand)]
    Tokens(tokens::TokensCommand),
    /// Task statistics: overview, per worker, today / this week / this month or a range.
    Stats(stats::StatsArgs),
    /// Internal: read a library's manifest in a child process.
    #[command(name = "__probe", hide = true)]
    Probe { library: PathBuf },
    /// Internal: run tasks of one library in a child process.
    #[command(name = "__runner", hide = true)]
    Runner { library: PathBuf },
}

/// Flags of `stask serve` (each overrides stask.toml and STASK_* variables).
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on (default 127.0.0.1:8080; binding elsewhere is explicit).
    #[arg(long)]
    bind: Option<String>,
    /// Tasks at the same time.
    #[arg(long)]
    concurrency: Option<String>,
    /// Schedule timezone (IANA name).
    #[arg(long)]
    timezone: Option<String>,
    /// Seconds running tasks get to finish when stopping.
    #[arg(long)]
    shutdown_grace_secs: Option<String>,
}

impl ServeArgs {
    fn flags(&self) -> Vec<(&'static str, String)> {
        [
            ("bind", &self.bind),
            ("concurrency", &self.concurrency),
            ("timezone", &self.timezone),
            ("shutdown_grace_secs", &self.shutdown_grace_secs),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.clone().map(|v| (k, v)))
        .collect()
    }
}

/// Runs the CLI and returns the process exit code.
pub fn main() -> i32 {
    // Before anything creates a file: what stask creates is for its user only.
    crate::privacy::private_umask();
    let cli = Cli::parse();
    match &cli.command {
        Command::Probe { library } => return crate::probe::run_child(library),
        Command::Runner { library } => return crate::runner::run_child(library),
        _ => {}
    }
    let serving = matches!(cli.command, Command::Serve(_));
    let runs_engine = serving
        || matches!(
            cli.command,
            Command::Tasks(
                tasks::TasksCommand::Process { .. } | tasks::TasksCommand::Execute { .. }
            )
        );
    if !runs_engine {
        // Like other Unix tools, end quietly when the reader of our output goes away
        // (`stask tasks list | head`). Engine commands keep SIGPIPE ignored: they write
        // to runner pipes and handle a closed one as a dead runner.
        // SAFETY: setting a signal disposition before any thread exists.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    // Kept until the end of this function, so every buffered log line is written.
    let _log_writer = init_tracing(cli.verbose, serving);
    let json = cli.json;
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            report_error(&e, json);
            1
        }
    }
}

/// Prints a failed command's error on stderr (see [`error_text`]).
fn report_error(e: &anyhow::Error, json: bool) {
    eprintln!("{}", error_text(e, json));
}

/// A failed command's error as printed: its message (with the context of every layer),
/// then a domain problem's hint for command-line users on a line of its own (`hint:
/// …`); with `--json`, one object `{"error": …, "hint": …}`.
fn error_text(e: &anyhow::Error, json: bool) -> String {
    let message = format!("{e:#}");
    let hint = Problem::find(e).and_then(|p| p.hint.as_deref());
    if json {
        let mut out = serde_json::json!({ "error": message });
        if let Some(h) = hint {
            out["hint"] = serde_json::json!(h);
        }
        return out.to_string();
    }
    match hint {
        Some(h) => format!("error: {message}\nhint: {h}"),
        None => format!("error: {message}"),
    }
}

/// Sets up logging to stderr. A service writes through a background thread, so a busy
/// engine (one line per task attempt) never waits for the write; the returned guard
/// flushes what is buffered when dropped.
fn init_tracing(verbose: u8, serving: bool) -> Option<tracing_appender::non_blocking::WorkerGuard> {
    let default = match verbose {
        // A service narrates task state changes by default; commands stay quiet.
        0 if serving => "info",
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    use std::io::IsTerminal;
    let ansi = std::io::stderr().is_terminal();
    if serving {
        // Blocking when its buffer is full rather than dropping lines.
        let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
            .lossy(false)
            .finish(std::io::stderr());
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(ansi)
            .with_writer(writer)
            .try_init();
        return Some(guard);
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .try_init();
    None
}

fn run(cli: Cli) -> Result<i32> {
    match cli.command {
        Command::Init => {
            let home = Home::init(&cli.home, cli.plugins_dir.as_deref())?;
            if cli.json {
                println!(
                    "{}",
                    serde_json::json!({
                        "home": home.root(),
                        "plugins_dir": home.plugins_dir(),
                        "database": home.db_path(),
                    })
                );
            } else {
                println!("stask home ready at {}", home.root().display());
                println!("  plugins:  {}", home.plugins_dir().display());
                println!("  database: {}", home.db_path().display());
            }
            Ok(0)
        }
        Command::Workers(cmd) => {
            let (home, config) = open(&cli.home, cli.plugins_dir.as_deref(), &[])?;
            workers::run(&home, &config, cmd, cli.json).map(|()| 0)
        }
        Command::Tasks(cmd) => {
            let (home, config) = open(&cli.home, cli.plugins_dir.as_deref(), &[])?;
            tasks::run(&home, &config, cmd, cli.json)
        }
        Command::Serve(args) => {
            let (home, config) = open(&cli.home, cli.plugins_dir.as_deref(), &args.flags())?;
            crate::service::serve(&home, &config)?;
            Ok(0)
        }
        Command::Config => {
            let (_home, config) = open(&cli.home, cli.plugins_dir.as_deref(), &[])?;
            if cli.json {
                let rows: serde_json::Map<String, serde_json::Value> = config
                    .rows()
                    .into_iter()
                    .map(|(k, v, src)| {
                        (
                            k.to_owned(),
                            serde_json::json!({ "value": v, "source": src }),
                        )
                    })
                    .collect();
                print_json(&rows)?;
            } else {
                for (k, v, src) in config.rows() {
                    println!("{k:<22} = {v:<30} ({src})");
                }
            }
            Ok(0)
        }
        Command::Users(cmd) => {
            let (home, _config) = open(&cli.home, cli.plugins_dir.as_deref(), &[])?;
            users::run(&mut *home.store()?, cmd, cli.json).map(|()| 0)
        }
        Command::Tokens(cmd) => {
            let (home, _config) = open(&cli.home, cli.plugins_dir.as_deref(), &[])?;
            tokens::run(&mut *home.store()?, cmd, cli.json).map(|()| 0)
        }
        Command::Stats(args) => {
            let (home, config) = open(&cli.home, cli.plugins_dir.as_deref(), &[])?;
            stats::run(&*home.store()?, &config, args, cli.json).map(|()| 0)
        }
        Command::Probe { .. } | Command::Runner { .. } => {
            unreachable!("handled before logging starts")
        }
    }
}

/// Opens the home and loads its configuration; `--plugins-dir` and `STASK_PLUGINS_DIR`
/// act as the `plugins_dir` key.
fn open(
    root: &std::path::Path,
    plugins_dir: Option<&std::path::Path>,
    flags: &[(&'static str, String)],
) -> Result<(Home, Config)> {
    let home = Home::open(root, None)?;
    let mut flags = flags.to_vec();
    if let Some(p) = plugins_dir {
        flags.push(("plugins_dir", p.display().to_string()));
    }
    let config = Config::load(home.root(), &flags)?;
    let home = home.with_plugins_dir(config.plugins_dir.clone());
    Ok((home, config))
}

/// `--data`: JSON given inline, or `@FILE` to read it from a file.
pub(crate) fn read_data(text: &str) -> Result<serde_json::Value> {
    use anyhow::Context as _;
    let (source, content) = match text.strip_prefix('@') {
        Some(path) => (
            format!("file '{path}'"),
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read data file '{path}'"))?,
        ),
        None => ("--data".to_owned(), text.to_owned()),
    };
    serde_json::from_str(&content).with_context(|| format!("{source} is not valid JSON"))
}

/// Prints a value as pretty JSON.
pub(crate) fn print_json<T: serde::Serialize>(value: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_printed_with_their_hint_on_a_line_of_its_own() {
        let e = anyhow::Error::from(
            Problem::not_found("task_not_found", "no task 7").hint("see `stask tasks list`"),
        );
        assert_eq!(
            error_text(&e, false),
            "error: no task 7\nhint: see `stask tasks list`"
        );
        let v: serde_json::Value = serde_json::from_str(&error_text(&e, true)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({ "error": "no task 7", "hint": "see `stask tasks list`" })
        );
        let plain = anyhow::anyhow!("disk full").context("cannot store the task");
        assert_eq!(
            error_text(&plain, false),
            "error: cannot store the task: disk full"
        );
        assert_eq!(
            error_text(&plain, true),
            r#"{"error":"cannot store the task: disk full"}"#
        );
    }
}
