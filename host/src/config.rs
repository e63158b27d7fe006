//! Configuration: defaults, `{home}/stask.toml`, `STASK_*` environment variables and
//! command-line flags, in increasing order of precedence. `stask config` prints the
//! effective values and where each came from; a wrong value is an error naming the key.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::engine::EngineConfig;
use crate::http::server::HttpLimits;
use crate::logging::LogFormat;
use crate::task_log::parse_age;

/// Where a configuration value came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// Built-in default.
    Default,
    /// `stask.toml`.
    File,
    /// An environment variable (named).
    Env(String),
    /// A command-line flag.
    Flag,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File => f.write_str("stask.toml"),
            Source::Env(v) => write!(f, "env {v}"),
            Source::Flag => f.write_str("command line"),
        }
    }
}

/// The effective configuration.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    /// Address the service listens on.
    pub bind: String,
    /// Tasks run at the same time by one host.
    pub concurrency: usize,
    /// Optional per-worker limits of tasks at the same time.
    pub worker_concurrency: BTreeMap<String, usize>,
    /// Time limit of a run when the worker sets none, in seconds.
    pub default_timeout_secs: u64,
    /// Time a cancelled task gets to stop before it is killed, in ms.
    pub cancel_grace_ms: u64,
    /// First automatic-retry delay, in ms (doubles per attempt, at most one hour).
    pub retry_base_ms: u64,
    /// Heartbeat age after which a running task is recovered, in seconds.
    pub stale_after_secs: u64,
    /// Time running tasks get to finish when the service stops, in seconds.
    pub shutdown_grace_secs: u64,
    /// Completed tasks older than this are removed by the service's clean-up (`30d`).
    pub retention: String,
    /// How often the service cleans up (`1d`; `0s` disables it).
    pub cleanup_interval: String,
    /// IANA timezone for schedules (`Europe/Kyiv`).
    pub timezone: String,
    /// Plugins directory (relative paths are relative to the home).
    pub plugins_dir: PathBuf,
    /// Whether the service runs `workers discover` when it starts (new workers stay
    /// inactive).
    pub discover_on_start: bool,
    /// How the service writes its log: `text` (for people) or `json` (one object a line,
    /// for log shippers).
    pub log_format: LogFormat,
    /// Largest result file a task may leave, in MB.
    pub max_result_file_mb: u64,
    /// All result files of one task together, in MB.
    pub max_result_task_mb: u64,
    /// Longest result JSON a task may return, in KB.
    pub max_result_json_kb: u64,
    /// Memory a run may use unless its worker's `max_memory_mb` says otherwise, in MiB
    /// (0: no limit).
    pub worker_max_memory_mb: u64,
    /// CPU time of a run unless its worker's `max_cpu_secs` says otherwise, in seconds
    /// (0: no limit; the time limit still applies).
    pub worker_max_cpu_secs: u64,
    /// Open files of a run unless its worker's `max_open_files` says otherwise (0: no
    /// limit).
    pub worker_max_open_files: u64,
    /// What happens to runs on a kernel without Landlock: `required`, `best-effort` or
    /// `off` (see the README's threat model).
    pub sandbox: crate::sandbox::Mode,
    /// The database: a PostgreSQL URL shared by several hosts, or empty for the home's
    /// SQLite database (also `--database`).
    pub database_url: String,
    /// The HTTP server's limits (`http_*` keys, see [`HttpLimits::SETTINGS`]), in the
    /// order of that table.
    pub http: [u64; 6],
    /// Where each value came from, by key.
    #[serde(skip)]
    pub sources: BTreeMap<&'static str, Source>,
}

/// Keys in `stask.toml`, each also settable as `STASK_<KEY>`.
pub const KEYS: &[&str] = &[
    "bind",
    "concurrency",
    "worker_concurrency",
    "default_timeout_secs",
    "cancel_grace_ms",
    "retry_base_ms",
    "stale_after_secs",
    "shutdown_grace_secs",
    "retention",
    "cleanup_interval",
    "timezone",
    "plugins_dir",
    "discover_on_start",
    "log_format",
    "max_result_file_mb",
    "max_result_task_mb",
    "max_result_json_kb",
    "worker_max_memory_mb",
    "worker_max_cpu_secs",
    "worker_max_open_files",
    "sandbox",
    "database_url",
    "http_header_timeout_secs",
    "http_body_timeout_secs",
    "http_idle_timeout_secs",
    "http_max_connections",
    "http_max_streams",
    "http_max_streams_per_user",
];

impl Config {
    fn defaults(home: &Path) -> Config {
        Config {
            bind: "127.0.0.1:8080".into(),
            concurrency: std::thread::available_parallelism().map_or(2, |n| n.get()),
            worker_concurrency: BTreeMap::new(),
            default_timeout_secs: 3600,
            cancel_grace_ms: 5000,
            retry_base_ms: 2000,
            stale_after_secs: 30,
            shutdown_grace_secs: 30,
            retention: "30d".into(),
            cleanup_interval: "1d".into(),
            timezone: "UTC".into(),
            plugins_dir: home.join("plugins"),
            discover_on_start: true,
            log_format: LogFormat::Text,
            max_result_file_mb: 256,
            max_result_task_mb: 1024,
            max_result_json_kb: 1024,
            worker_max_memory_mb: crate::engine::DEFAULT_MEMORY_MB,
            worker_max_cpu_secs: 0,
            worker_max_open_files: crate::engine::DEFAULT_OPEN_FILES,
            sandbox: crate::sandbox::Mode::BestEffort,
            database_url: String::new(),
            http: std::array::from_fn(|i| HttpLimits::SETTINGS[i].1),
            sources: KEYS.iter().map(|k| (*k, Source::Default)).collect(),
        }
    }

    /// Loads the configuration of the home at `home`: defaults, then `stask.toml` (if
    /// present), then `STASK_*` variables, then `flags` (key, value) pairs.
    pub fn load(home: &Path, flags: &[(&'static str, String)]) -> Result<Config> {
        let mut cfg = Config::defaults(home);
        let file = home.join("stask.toml");
        match std::fs::read_to_string(&file) {
            Ok(text) => {
                let table: toml::Table = text
                    .parse()
                    .with_context(|| format!("{} is not valid TOML", file.display()))?;
                for (key, value) in &table {
                    let Some(key) = KEYS.iter().find(|k| **k == key.as_str()) else {
                        bail!(
                            "{}: unknown key '{key}'; known keys: {}",
                            file.display(),
                            KEYS.join(", ")
                        );
                    };
                    let text = toml_to_text(key, value)
                        .with_context(|| format!("{}: key '{key}'", file.display()))?;
                    cfg.set(key, &text, home)
                        .with_context(|| format!("{}: key '{key}'", file.display()))?;
                    cfg.sources.insert(key, Source::File);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => bail!("cannot read {}: {e}", file.display()),
        }
        for key in KEYS {
            let var = format!("STASK_{}", key.to_uppercase());
            if let Ok(value) = std::env::var(&var) {
                cfg.set(key, &value, home)
                    .with_context(|| format!("environment variable {var}"))?;
                cfg.sources.insert(key, Source::Env(var));
            }
        }
        for (key, value) in flags {
            cfg.set(key, value, home)
                .with_context(|| format!("option --{}", key.replace('_', "-")))?;
            cfg.sources.insert(key, Source::Flag);
        }
        Ok(cfg)
    }

    fn set(&mut self, key: &str, value: &str, home: &Path) -> Result<()> {
        let v = value.trim();
        match key {
            "bind" => {
                v.parse::<std::net::SocketAddr>()
                    .map_err(|_| anyhow::anyhow!("'{v}' is not an address like 127.0.0.1:8080"))?;
                self.bind = v.to_owned();
            }
            "concurrency" => self.concurrency = int_in(v, 1, 256)? as usize,
            "worker_concurrency" => {
                let mut map = BTreeMap::new();
                for pair in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                    let (worker, n) = pair.split_once('=').ok_or_else(|| {
                        anyhow::anyhow!("'{pair}' is not WORKER=N (e.g. product=1,demo=2)")
                    })?;
                    map.insert(worker.trim().to_owned(), int_in(n.trim(), 1, 256)? as usize);
                }
                self.worker_concurrency = map;
            }
            "default_timeout_secs" => self.default_timeout_secs = int_in(v, 1, u32::MAX as u64)?,
            "cancel_grace_ms" => self.cancel_grace_ms = int_in(v, 0, 3_600_000)?,
            "retry_base_ms" => self.retry_base_ms = int_in(v, 0, 3_600_000)?,
            "stale_after_secs" => self.stale_after_secs = int_in(v, 1, 86_400)?,
            "shutdown_grace_secs" => self.shutdown_grace_secs = int_in(v, 0, 86_400)?,
            "retention" => {
                parse_age(v).map_err(|e| anyhow::anyhow!(e))?;
                self.retention = v.to_owned();
            }
            "cleanup_interval" => {
                parse_age(v).map_err(|e| anyhow::anyhow!(e))?;
                self.cleanup_interval = v.to_owned();
            }
            "timezone" => {
                v.parse::<chrono_tz::Tz>().map_err(|_| {
                    anyhow::anyhow!("'{v}' is not an IANA timezone name like UTC or Europe/Kyiv")
                })?;
                self.timezone = v.to_owned();
            }
            "plugins_dir" => {
                if v.is_empty() {
                    bail!("must not be empty");
                }
                self.plugins_dir = home.join(v);
            }
            "discover_on_start" => {
                self.discover_on_start = match v {
                    "true" | "1" | "yes" => true,
                    "false" | "0" | "no" => false,
                    _ => bail!("'{v}' is not true or false"),
                }
            }
            "log_format" => self.log_format = LogFormat::parse(v).map_err(anyhow::Error::msg)?,
            "max_result_file_mb" => self.max_result_file_mb = int_in(v, 1, 1 << 20)?,
            "max_result_task_mb" => self.max_result_task_mb = int_in(v, 1, 1 << 20)?,
            "max_result_json_kb" => self.max_result_json_kb = int_in(v, 1, 1 << 20)?,
            "worker_max_memory_mb" => self.worker_max_memory_mb = zero_or_in(v, 64, 1 << 30)?,
            "worker_max_cpu_secs" => self.worker_max_cpu_secs = zero_or_in(v, 1, 31_536_000)?,
            "worker_max_open_files" => self.worker_max_open_files = zero_or_in(v, 32, 1 << 20)?,
            "sandbox" => {
                self.sandbox = crate::sandbox::Mode::parse(v).map_err(anyhow::Error::msg)?
            }
            "database_url" => {
                if !v.is_empty() && !stask_storage::is_postgres(v) {
                    bail!("'{v}' is not a PostgreSQL URL (postgres://USER@HOST:PORT/DATABASE); leave it empty for the home's SQLite database");
                }
                self.database_url = v.to_owned();
            }
            other => match HttpLimits::SETTINGS.iter().position(|s| s.0 == other) {
                Some(i) => {
                    let (_, _, min, max) = HttpLimits::SETTINGS[i];
                    self.http[i] = int_in(v, min, max)?;
                }
                None => bail!("unknown key '{other}'"),
            },
        }
        Ok(())
    }

    /// The schedule timezone.
    pub fn tz(&self) -> chrono_tz::Tz {
        self.timezone.parse().unwrap_or(chrono_tz::UTC)
    }

    /// Age after which completed tasks are cleaned up.
    pub fn retention(&self) -> Duration {
        parse_age(&self.retention).unwrap_or(Duration::from_secs(30 * 86_400))
    }

    /// Interval between clean-ups (`None` when disabled).
    pub fn cleanup_interval(&self) -> Option<Duration> {
        parse_age(&self.cleanup_interval)
            .ok()
            .filter(|d| !d.is_zero())
    }

    /// The engine's settings.
    pub fn engine(&self) -> EngineConfig {
        EngineConfig {
            concurrency: self.concurrency,
            worker_concurrency: self.worker_concurrency.clone(),
            default_timeout: Duration::from_secs(self.default_timeout_secs),
            cancel_grace: Duration::from_millis(self.cancel_grace_ms),
            retry_base: Duration::from_millis(self.retry_base_ms),
            stale_after: Duration::from_secs(self.stale_after_secs),
            shutdown_grace: Duration::from_secs(self.shutdown_grace_secs),
            max_result_file_bytes: self.max_result_file_mb << 20,
            max_result_task_bytes: self.max_result_task_mb << 20,
            max_result_json_bytes: self.max_result_json_kb << 10,
            limits: crate::engine::limits::Limits {
                memory_mb: Some(self.worker_max_memory_mb).filter(|n| *n > 0),
                cpu_secs: Some(self.worker_max_cpu_secs).filter(|n| *n > 0),
                open_files: Some(self.worker_max_open_files).filter(|n| *n > 0),
            },
            sandbox: self.sandbox,
            ..EngineConfig::default()
        }
    }

    /// The PostgreSQL URL, if one is set.
    pub fn database(&self) -> Option<String> {
        (!self.database_url.is_empty()).then(|| self.database_url.clone())
    }

    /// The HTTP server's limits.
    pub fn http_limits(&self) -> HttpLimits {
        HttpLimits::from_values(&self.http)
    }

    /// `(key, value as text, source)` rows for `stask config`.
    pub fn rows(&self) -> Vec<(&'static str, String, String)> {
        let value = |key: &str| -> String {
            match key {
                "bind" => self.bind.clone(),
                "concurrency" => self.concurrency.to_string(),
                "worker_concurrency" => self
                    .worker_concurrency
                    .iter()
                    .map(|(w, n)| format!("{w}={n}"))
                    .collect::<Vec<_>>()
                    .join(","),
                "default_timeout_secs" => self.default_timeout_secs.to_string(),
                "cancel_grace_ms" => self.cancel_grace_ms.to_string(),
                "retry_base_ms" => self.retry_base_ms.to_string(),
                "stale_after_secs" => self.stale_after_secs.to_string(),
                "shutdown_grace_secs" => self.shutdown_grace_secs.to_string(),
                "retention" => self.retention.clone(),
                "cleanup_interval" => self.cleanup_interval.clone(),
                "timezone" => self.timezone.clone(),
                "plugins_dir" => self.plugins_dir.display().to_string(),
                "discover_on_start" => self.discover_on_start.to_string(),
                "log_format" => self.log_format.as_str().to_owned(),
                "max_result_file_mb" => self.max_result_file_mb.to_string(),
                "max_result_task_mb" => self.max_result_task_mb.to_string(),
                "max_result_json_kb" => self.max_result_json_kb.to_string(),
                "worker_max_memory_mb" => self.worker_max_memory_mb.to_string(),
                "worker_max_cpu_secs" => self.worker_max_cpu_secs.to_string(),
                "worker_max_open_files" => self.worker_max_open_files.to_string(),
                "sandbox" => self.sandbox.as_str().to_owned(),
                "database_url" => stask_storage::postgres::redact(&self.database_url),
                other => HttpLimits::SETTINGS
                    .iter()
                    .position(|s| s.0 == other)
                    .map_or_else(String::new, |i| self.http[i].to_string()),
            }
        };
        KEYS.iter()
            .map(|k| (*k, value(k), self.sources[k].to_string()))
            .collect()
    }
}

/// 0 (meaning "no limit") or a number in `min..=max`.
fn zero_or_in(v: &str, min: u64, max: u64) -> Result<u64> {
    if v.trim() == "0" {
        return Ok(0);
    }
    int_in(v, min, max).map_err(|e| anyhow::anyhow!("{e} (or 0 for no limit)"))
}

fn int_in(v: &str, min: u64, max: u64) -> Result<u64> {
    let n: u64 = v
        .parse()
        .map_err(|_| anyhow::anyhow!("'{v}' is not a whole number"))?;
    if n < min || n > max {
        bail!("{n} is out of range ({min} to {max})");
    }
    Ok(n)
}

/// TOML values as the same text an environment variable would hold.
fn toml_to_text(key: &str, value: &toml::Value) -> Result<String> {
    Ok(match value {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Table(t) if key == "worker_concurrency" => {
            let mut parts = Vec::new();
            for (w, n) in t {
                let n = n.as_integer().ok_or_else(|| {
                    anyhow::anyhow!("the limit of worker '{w}' must be an integer")
                })?;
                parts.push(format!("{w}={n}"));
            }
            parts.join(",")
        }
        other => bail!("unsupported value type {}", other.type_str()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_values_apply_and_wrong_values_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("stask.toml"),
            "concurrency = 3\ntimezone = \"Europe/Kyiv\"\n[worker_concurrency]\nproduct = 1\n",
        )
        .unwrap();
        let cfg = Config::load(dir.path(), &[]).unwrap();
        assert_eq!(cfg.concurrency, 3);
        assert_eq!(cfg.tz(), chrono_tz::Europe::Kyiv);
        assert_eq!(cfg.worker_concurrency["product"], 1);
        assert_eq!(cfg.sources["concurrency"], Source::File);

        std::fs::write(dir.path().join("stask.toml"), "concurrency = 0\n").unwrap();
        let err = format!("{:#}", Config::load(dir.path(), &[]).unwrap_err());
        assert!(
            err.contains("'concurrency'") && err.contains("out of range"),
            "{err}"
        );

        std::fs::write(dir.path().join("stask.toml"), "concurency = 2\n").unwrap();
        let err = format!("{:#}", Config::load(dir.path(), &[]).unwrap_err());
        assert!(err.contains("unknown key 'concurency'"), "{err}");

        std::fs::write(dir.path().join("stask.toml"), "timezone = \"Mars/Base\"\n").unwrap();
        let err = format!("{:#}", Config::load(dir.path(), &[]).unwrap_err());
        assert!(err.contains("'timezone'") && err.contains("IANA"), "{err}");
    }

    #[test]
    fn http_limits_are_settings_with_checked_ranges() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("stask.toml"),
            "http_header_timeout_secs = 2\nhttp_max_streams_per_user = 3\n",
        )
        .unwrap();
        let limits = Config::load(dir.path(), &[]).unwrap().http_limits();
        assert_eq!(limits.header_timeout, Duration::from_secs(2));
        assert_eq!(limits.max_streams_per_user, 3);
        assert_eq!(limits.max_connections, 512);
        for bad in ["0", "-1", "x", "99999999999"] {
            std::fs::write(
                dir.path().join("stask.toml"),
                format!("http_max_connections = \"{bad}\"\n"),
            )
            .unwrap();
            let err = format!("{:#}", Config::load(dir.path(), &[]).unwrap_err());
            assert!(err.contains("'http_max_connections'"), "{bad}: {err}");
        }
    }

    #[test]
    fn log_format_is_text_or_json_and_a_wrong_value_names_where_and_the_choices() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            Config::load(dir.path(), &[]).unwrap().log_format,
            LogFormat::Text
        );
        std::fs::write(dir.path().join("stask.toml"), "log_format = \"json\"\n").unwrap();
        let cfg = Config::load(dir.path(), &[]).unwrap();
        assert_eq!(
            (cfg.log_format, &cfg.sources["log_format"]),
            (LogFormat::Json, &Source::File)
        );
        let cfg = Config::load(dir.path(), &[("log_format", "text".into())]).unwrap();
        assert_eq!(cfg.log_format, LogFormat::Text);
        let err = format!(
            "{:#}",
            Config::load(dir.path(), &[("log_format", "xml".into())]).unwrap_err()
        );
        assert!(
            err.contains("--log-format") && err.contains("'xml'") && err.contains("text or json"),
            "{err}"
        );
        std::fs::write(dir.path().join("stask.toml"), "log_format = \"JSON\"\n").unwrap();
        let err = format!("{:#}", Config::load(dir.path(), &[]).unwrap_err());
        assert!(
            err.contains("'log_format'") && err.contains("text or json"),
            "{err}"
        );
    }

    #[test]
    fn flags_override_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("stask.toml"), "bind = \"127.0.0.1:9000\"\n").unwrap();
        let cfg = Config::load(dir.path(), &[("bind", "127.0.0.1:9100".into())]).unwrap();
        assert_eq!(cfg.bind, "127.0.0.1:9100");
        assert_eq!(cfg.sources["bind"], Source::Flag);
        let err = format!(
            "{:#}",
            Config::load(dir.path(), &[("bind", "nowhere".into())]).unwrap_err()
        );
        assert!(err.contains("--bind"), "{err}");
    }
}
