//! Command-line interface: argument parsing (clap) and dispatch.
//!
//! Every command that prints data takes `--json`, which prints one JSON document on
//! stdout instead of text. Errors go to stderr with a non-zero exit code (1; clap's
//! usage errors exit with 2), followed by a hint when the domain layer gave one.
//! Commands parse their flags, call the domain layer ([`crate::ops`]) and print.

mod new_worker;
mod schedule;
mod stats;
mod tasks;
mod terminal;
mod tokens;
mod users;
mod workers;
mod workflows;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::home::{Home, DEFAULT_HOME};
use crate::logging::LogFormat;
use crate::problem::Problem;

/// stask: a background-task manager whose workers are plugins.
#[derive(Debug, Parser)]
#[command(name = "stask", version, about, long_about = None)]
pub struct Cli {
    /// Home directory (database, plugins, logs).
    // Any bytes, also an empty value: an empty one is refused after parsing, naming
    // where it came from (the flag or STASK_HOME), see `check_home`.
    #[arg(
        long,
        global = true,
        env = "STASK_HOME",
        default_value = DEFAULT_HOME,
        value_parser = clap::builder::TypedValueParser::map(
            clap::builder::OsStringValueParser::new(),
            PathBuf::from
        )
    )]
    pub home: PathBuf,

    /// Plugins directory [default: HOME/plugins; also STASK_PLUGINS_DIR or plugins_dir in stask.toml].
    #[arg(long, global = true)]
    pub plugins_dir: Option<PathBuf>,

    /// The database: a PostgreSQL URL (postgres://USER@HOST/DB) shared by several
    /// hosts [default: HOME/stask.db (SQLite); also STASK_DATABASE_URL or database_url
    /// in stask.toml].
    #[arg(long, global = true, value_name = "URL")]
    pub database: Option<String>,

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
    /// Manage workflows: several tasks created together from a JSON document, with
    /// dependencies between them; cancelled and retried as a group.
    #[command(subcommand)]
    Workflows(workflows::WorkflowsCommand),
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
    /// Audit the home and print what to fix: modes and owners, plugin directory safety,
    /// the secret key, database integrity, free disk space. Exits 1 when something is
    /// wrong. Changes nothing.
    Check,
    /// Worker secrets at rest: rotate the key, encrypt what an older stask stored in
    /// plaintext.
    #[command(subcommand)]
    Secrets(SecretsCommand),
    /// Create a worker crate (a plugin) that builds, passes its tests and runs as it is:
    /// Cargo.toml, src/lib.rs, README.md. Needs no home.
    NewWorker(new_worker::NewWorkerArgs),
    /// Create or upgrade the database's schema (serve and every command do it too; safe
    /// to run on several hosts at once) and print its version.
    Migrate,
    /// Internal: read a library's manifest in a child process.
    #[command(name = "__probe", hide = true)]
    Probe { library: PathBuf },
    /// Internal: run tasks of one library in a child process.
    #[command(name = "__runner", hide = true)]
    Runner {
        library: PathBuf,
        /// The sandbox to confine itself to (JSON, from the engine).
        #[arg(long)]
        sandbox: Option<String>,
    },
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
    /// Log format: text (for people, the default) or json (one object a line, for log
    /// shippers).
    #[arg(long, value_name = "text|json")]
    log_format: Option<String>,
}

impl ServeArgs {
    fn flags(&self) -> Vec<(&'static str, String)> {
        [
            ("bind", &self.bind),
            ("concurrency", &self.concurrency),
            ("timezone", &self.timezone),
            ("shutdown_grace_secs", &self.shutdown_grace_secs),
            ("log_format", &self.log_format),
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
    let (cli, home_source) = parse_args();
    match &cli.command {
        Command::Probe { library } => return crate::probe::run_child(library),
        Command::Runner { library, sandbox } => {
            return crate::runner::run_child(library, sandbox.as_deref())
        }
        _ => {}
    }
    if let Err(e) = check_home(&cli.home, home_source) {
        report_error(&e, cli.json);
        return 2;
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
    let format = match &cli.command {
        Command::Serve(args) => service_log_format(&cli.home, args),
        _ => LogFormat::Text,
    };
    // Kept until the end of this function, so every buffered log line is written.
    let _log_writer = init_tracing(cli.verbose, serving, format);
    let json = cli.json;
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            report_error(&e, json);
            1
        }
    }
}

/// Parses the command line, and tells where the home's value came from.
fn parse_args() -> (Cli, Option<clap::parser::ValueSource>) {
    use clap::{CommandFactory as _, FromArgMatches as _};
    let mut matches = Cli::command().get_matches();
    let source = matches.value_source("home");
    let cli = Cli::from_arg_matches_mut(&mut matches)
        .unwrap_or_else(|e| e.format(&mut Cli::command()).exit());
    (cli, source)
}

/// Refuses an empty home, naming where it came from: `STASK_HOME=` (set but empty)
/// or `--home ''`.
fn check_home(home: &std::path::Path, source: Option<clap::parser::ValueSource>) -> Result<()> {
    if !home.as_os_str().is_empty() {
        return Ok(());
    }
    if source == Some(clap::parser::ValueSource::EnvVariable) {
        anyhow::bail!(
            "the environment variable STASK_HOME is set but empty; set it to a stask home directory, or unset it to use ./{DEFAULT_HOME}"
        );
    }
    anyhow::bail!(
        "--home was given an empty path; give it a stask home directory, or leave it out to use STASK_HOME or ./{DEFAULT_HOME}"
    )
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

/// The service's log format (`--log-format`, `STASK_LOG_FORMAT`, `log_format` in
/// `stask.toml`), known before logging starts so that every line of the service has it.
/// A configuration that does not load falls back to text here: opening the home then
/// reports the error, naming the key and where it came from.
fn service_log_format(home: &std::path::Path, args: &ServeArgs) -> LogFormat {
    Config::load(home, &args.flags()).map_or(LogFormat::Text, |c| c.log_format)
}

/// Sets up logging to stderr, as text or JSON lines (`format`). A service writes through
/// a background thread, so a busy engine (one line per task attempt) never waits for
/// the write; the returned guard flushes what is buffered when dropped.
fn init_tracing(
    verbose: u8,
    serving: bool,
    format: LogFormat,
) -> Option<tracing_appender::non_blocking::WorkerGuard> {
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
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(writer);
        let _ = match format {
            LogFormat::Text => builder.with_ansi(ansi).try_init(),
            LogFormat::Json => {
                crate::logging::log_panics();
                builder
                    .with_ansi(false)
                    .event_format(crate::logging::JsonLines)
                    .try_init()
            }
        };
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
    // The home, plugins directory and database every command but init opens.
    let open_with = |flags: &[(&'static str, String)]| {
        open(
            &cli.home,
            cli.plugins_dir.as_deref(),
            cli.database.as_deref(),
            flags,
        )
    };
    match cli.command {
        Command::Init => {
            Home::init(&cli.home, cli.plugins_dir.as_deref())?;
            let (home, _config) = open_with(&[])?;
            // Creates (or upgrades) the database.
            home.store()?;
            let key = crate::secrets::init_key(&home)?;
            if cli.json {
                println!(
                    "{}",
                    serde_json::json!({
                        "home": home.root(),
                        "plugins_dir": home.plugins_dir(),
                        "database": home.database_shown(),
                        "secret_key": key,
                    })
                );
            } else {
                println!("stask home ready at {}", home.root().display());
                println!("  plugins:  {}", home.plugins_dir().display());
                println!("  database: {}", home.database_shown());
                print_init_key(&key);
            }
            Ok(0)
        }
        Command::Workers(cmd) => {
            let (home, config) = open_with(&[])?;
            workers::run(&home, &config, cmd, cli.json).map(|()| 0)
        }
        Command::Tasks(cmd) => {
            let (home, config) = open_with(&[])?;
            tasks::run(&home, &config, cmd, cli.json)
        }
        Command::Workflows(cmd) => {
            let (home, _config) = open_with(&[])?;
            workflows::run(&home, cmd, cli.json).map(|()| 0)
        }
        Command::Serve(args) => {
            let (home, config) = open_with(&args.flags())?;
            crate::service::serve(&home, &config)?;
            Ok(0)
        }
        Command::Config => {
            let (_home, config) = open_with(&[])?;
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
            let (home, _config) = open_with(&[])?;
            users::run(&mut *home.store()?, cmd, cli.json).map(|()| 0)
        }
        Command::Tokens(cmd) => {
            let (home, _config) = open_with(&[])?;
            tokens::run(&mut *home.store()?, cmd, cli.json).map(|()| 0)
        }
        Command::Stats(args) => {
            let (home, config) = open_with(&[])?;
            stats::run(&*home.store()?, &config, args, cli.json).map(|()| 0)
        }
        Command::Check => {
            let report = crate::check::check(
                &cli.home,
                cli.plugins_dir.as_deref(),
                cli.database.as_deref(),
            );
            if cli.json {
                print_json(&report)?;
            } else {
                crate::check::print(&report);
            }
            Ok(if report.ok { 0 } else { 1 })
        }
        Command::Secrets(cmd) => {
            let (home, _config) = open_with(&[])?;
            run_secrets(&home, cmd, cli.json).map(|()| 0)
        }
        Command::NewWorker(args) => new_worker::run(args, cli.json),
        Command::Migrate => {
            let (home, _config) = open_with(&[])?;
            let store = home.store()?;
            let version = store.schema_version()?;
            if cli.json {
                print_json(&serde_json::json!({
                    "database": home.database_shown(),
                    "schema_version": version,
                }))?;
            } else {
                println!("{}: schema version {version}", store.describe());
            }
            Ok(0)
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
    database: Option<&str>,
    flags: &[(&'static str, String)],
) -> Result<(Home, Config)> {
    let home = Home::open(root, None)?;
    let mut flags = flags.to_vec();
    if let Some(url) = database {
        flags.push(("database_url", url.to_owned()));
    }
    // Library paths are stored as text: a plugins directory that is not UTF-8 is
    // refused rather than mangled (the flag) or ignored (the variable).
    let not_utf8 = |from: &str, p: &std::path::Path| {
        anyhow::anyhow!(
            "the plugins directory '{}' ({from}) is not valid UTF-8; library paths are stored as text, so choose a directory whose path is valid UTF-8",
            p.display()
        )
    };
    match plugins_dir {
        Some(p) => {
            let text = p.to_str().ok_or_else(|| not_utf8("--plugins-dir", p))?;
            flags.push(("plugins_dir", text.to_owned()));
        }
        None => {
            if let Some(v) = std::env::var_os("STASK_PLUGINS_DIR") {
                if v.to_str().is_none() {
                    return Err(not_utf8("STASK_PLUGINS_DIR", std::path::Path::new(&v)));
                }
            }
        }
    }
    let config = Config::load(home.root(), &flags)?;
    let home = home
        .with_plugins_dir(config.plugins_dir.clone())
        .with_database(config.database())?;
    crate::secrets::use_home_key_file(&home);
    Ok((home, config))
}

/// `stask secrets …`.
#[derive(Debug, Subcommand)]
enum SecretsCommand {
    /// Re-encrypt every stored secret with a new key, in one store operation (all
    /// secrets move to the new key or none does). With a key file the new key is
    /// generated and written there; with STASK_SECRET_KEY give it with --new-key-stdin
    /// and set the variable to it afterwards.
    RotateKey {
        /// Read the new key (32 bytes in base64, e.g. from `openssl rand -base64 32`)
        /// from standard input instead of generating one.
        #[arg(long)]
        new_key_stdin: bool,
        /// Remove stored secrets that no key in use opens (a lost key), listing each,
        /// so they can be set again; without it such secrets stop the rotation.
        #[arg(long)]
        forget_unreadable: bool,
    },
    /// Encrypt the secret settings an older stask stored in plaintext (engine starts
    /// and settings changes do it too).
    Encrypt,
}

fn run_secrets(home: &Home, cmd: SecretsCommand, json: bool) -> Result<()> {
    use crate::secrets::{self, KeySource, SecretKey};
    let source = KeySource::for_home(home);
    let mut store = home.store()?;
    match cmd {
        SecretsCommand::RotateKey {
            new_key_stdin,
            forget_unreadable,
        } => {
            let new = if new_key_stdin {
                use std::io::Read as _;
                let mut text = zeroize::Zeroizing::new(String::new());
                std::io::stdin().read_to_string(&mut text).map_err(|e| {
                    anyhow::anyhow!("cannot read the new key from standard input: {e}")
                })?;
                Some(SecretKey::parse(&text).ok_or_else(|| {
                    anyhow::anyhow!("standard input does not hold a key: 32 bytes in base64 (e.g. from `openssl rand -base64 32`)")
                })?)
            } else {
                None
            };
            let report = secrets::rotate(&source, &mut *store, new, forget_unreadable)?;
            if json {
                return print_json(&report);
            }
            for f in &report.forgotten {
                println!("removed unreadable secret {f} (set it again)");
            }
            println!(
                "re-encrypted {} secret(s) of {} worker(s) with key {}{}",
                report.secrets,
                report.workers,
                report.key_id,
                if report.previous.is_empty() {
                    String::new()
                } else {
                    format!(" (was {})", report.previous.join(", "))
                }
            );
            match &report.key_file {
                Some(path) => println!(
                    "the new key is in '{}': back it up; the old key no longer opens anything",
                    path.display()
                ),
                None => println!(
                    "set {} to the new key before stask next starts; the old key no longer opens the stored secrets",
                    secrets::KEY_ENV
                ),
            }
        }
        SecretsCommand::Encrypt => {
            let report = secrets::encrypt_plaintext(&source, &mut *store)?;
            if json {
                return print_json(&report);
            }
            for s in &report.skipped {
                println!("left in plaintext: {s}");
            }
            println!(
                "encrypted {} secret(s) stored in plaintext{}",
                report.encrypted,
                if report.workers.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", report.workers.join(", "))
                }
            );
        }
    }
    Ok(())
}

/// What `stask init` says about the secret key.
fn print_init_key(key: &crate::secrets::InitKey) {
    use crate::secrets::InitKey;
    match key {
        InitKey::Created { path } => println!(
            "  secret key: {} (new: back it up with the database)",
            path.display()
        ),
        InitKey::Exists { path } => println!("  secret key: {}", path.display()),
        InitKey::FromEnv => println!("  secret key: from {}", crate::secrets::KEY_ENV),
        InitKey::Missing { message } => eprintln!("warning: {message}"),
    }
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
