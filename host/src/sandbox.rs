//! The sandbox runners confine themselves to before they load a plugin library.
//!
//! A runner may read and execute the system's software (`/usr`, `/lib`, …) and a few
//! harmless files of `/etc` (the dynamic linker's cache, time zone, name resolution,
//! CA certificates), read its own directory in `/proc` and a few system-wide files
//! there (never another process's: the service's environment holds its key and
//! database URL when they are given as variables), read its library copy, and
//! read and write its slot's private directory (result files and `TMPDIR`). Beyond that
//! it may touch only what its worker declares (`stask_plugin_api::access`) or what an
//! operator set instead in the `sandbox_*` settings. Everything else is denied by the
//! kernel, the home's database, keys and other workers' data included. Outbound TCP is
//! limited to the declared ports; binding TCP ports is denied; signals and abstract
//! Unix sockets are scoped to the runner's own processes.
//!
//! Per host, the `sandbox` setting says what happens on a kernel without Landlock:
//! `required` fails the runs, `best-effort` (the default) runs them unconfined with a
//! warning, `off` never confines.
//!
//! What Landlock cannot do is said plainly in the README's threat model: hosts in
//! `host:port` are not enforced (only ports are), UDP is not restricted, and a path
//! that does not exist when the runner starts cannot be granted.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use stask_plugin_api::access::{
    check_address, setting_reference, split_list, AccessSpec, SANDBOX_CONNECTS, SANDBOX_READS,
    SANDBOX_WRITES,
};

/// What happens to runs on a kernel without Landlock (config key `sandbox`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Runs fail: nothing runs unconfined.
    Required,
    /// Runs go on unconfined, with a warning in the log.
    #[default]
    BestEffort,
    /// Runners are never confined.
    Off,
}

impl Mode {
    /// Parses a configuration value.
    pub fn parse(text: &str) -> Result<Mode, String> {
        match text {
            "required" => Ok(Mode::Required),
            "best-effort" => Ok(Mode::BestEffort),
            "off" => Ok(Mode::Off),
            other => Err(format!(
                "'{other}' is not a sandbox mode: required, best-effort or off"
            )),
        }
    }

    /// The configuration value.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Required => "required",
            Mode::BestEffort => "best-effort",
            Mode::Off => "off",
        }
    }
}

/// A worker's access with every path made absolute: what its runs may touch beyond the
/// baseline.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Access {
    /// Read (and list, and execute).
    pub reads: Vec<PathBuf>,
    /// Read and write.
    pub writes: Vec<PathBuf>,
    /// Outbound TCP, as declared (`host:port`).
    pub connects: Vec<String>,
}

impl Access {
    /// The ports of `connects`.
    pub fn ports(&self) -> Vec<u16> {
        let mut ports: Vec<u16> = self
            .connects
            .iter()
            .filter_map(|a| check_address(a).ok())
            .collect();
        ports.sort_unstable();
        ports.dedup();
        ports
    }

    /// One line for messages: "reads imports; writes nothing; connects to nothing".
    pub fn describe(&self) -> String {
        let paths =
            |v: &[PathBuf]| -> Vec<String> { v.iter().map(|p| p.display().to_string()).collect() };
        access_line(&paths(&self.reads), &paths(&self.writes), &self.connects)
    }
}

/// What a worker may touch, in one line for people: "reads a, b; writes nothing;
/// connects to api.example.com:443".
pub fn access_line(reads: &[String], writes: &[String], connects: &[String]) -> String {
    let list = |v: &[String]| {
        if v.is_empty() {
            "nothing".to_owned()
        } else {
            v.join(", ")
        }
    };
    format!(
        "reads {}; writes {}; connects to {}",
        list(reads),
        list(writes),
        list(connects)
    )
}

/// The access of a worker's runs: its declarations, each kind replaced by the matching
/// `sandbox_*` setting when an operator set one, `${key}` entries taken from the
/// resolved settings, relative paths made absolute against the home. A path that
/// contains the home (the home itself, `/`) is refused: no worker gets the database.
pub fn resolve(
    declared: &AccessSpec,
    settings: &Map<String, Value>,
    home: &Path,
) -> Result<Access> {
    let chosen = |key: &str, declared: &[String]| -> Vec<String> {
        match settings.get(key).and_then(Value::as_str) {
            Some(text) => split_list(text),
            None => declared.to_vec(),
        }
    };
    let paths = |key: &str, declared: &[String]| -> Result<Vec<PathBuf>> {
        let mut out = Vec::new();
        for entry in chosen(key, declared) {
            let text = match setting_reference(&entry) {
                Some(setting) => match settings.get(setting).and_then(Value::as_str) {
                    Some(v) if !v.trim().is_empty() => v.to_owned(),
                    _ => continue, // an unset optional setting grants nothing
                },
                None => entry.clone(),
            };
            let path = absolute(home, Path::new(&text));
            if home.starts_with(&path) {
                bail!(
                    "the sandbox entry '{entry}' ({}) contains the stask home, with its database, keys and every worker's data; give the worker a directory of its own (setting `{key}`)",
                    path.display()
                );
            }
            out.push(path);
        }
        Ok(out)
    };
    Ok(Access {
        reads: paths(SANDBOX_READS, &declared.reads)?,
        writes: paths(SANDBOX_WRITES, &declared.writes)?,
        connects: chosen(SANDBOX_CONNECTS, &declared.connects),
    })
}

/// `path` made absolute against `home`, with `.` and `..` resolved lexically (so
/// `imports/../..` cannot slip past the home check).
fn absolute(home: &Path, path: &Path) -> PathBuf {
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        home.join(path)
    };
    let mut out = PathBuf::new();
    for part in joined.components() {
        match part {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Everything a runner needs to confine itself: handed to `stask __runner` as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Confinement {
    /// What to do without Landlock.
    pub mode: Mode,
    /// The library copy it loads.
    pub library: PathBuf,
    /// Its slot's private directory (result files, `tmp/`).
    pub private: PathBuf,
    /// The worker's access.
    pub access: Access,
}

/// Files and directories every run may read and execute: the system's software and
/// the parts of `/etc` that programs read to start, resolve names and check
/// certificates (none holds a secret).
const SYSTEM_READ: &[&str] = &[
    "/usr",
    "/lib",
    "/lib64",
    "/lib32",
    "/bin",
    "/sbin",
    // The runner's own directory in /proc only (resolved when the rules are made):
    // other processes' files there (the service's environment and memory maps
    // among them) stay closed. A few system-wide files programs read to size
    // themselves.
    "/proc/self",
    "/proc/cpuinfo",
    "/proc/meminfo",
    "/proc/stat",
    "/proc/loadavg",
    "/proc/uptime",
    "/proc/version",
    "/proc/sys/kernel/osrelease",
    "/proc/sys/kernel/hostname",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/localtime",
    "/etc/resolv.conf",
    "/etc/hosts",
    "/etc/nsswitch.conf",
    "/etc/host.conf",
    "/etc/gai.conf",
    "/etc/services",
    "/etc/protocols",
    "/etc/passwd",
    "/etc/group",
    "/etc/ssl",
    "/etc/pki",
    "/etc/ca-certificates",
    "/dev/zero",
    "/dev/urandom",
    "/dev/random",
];

/// Devices every run may also write.
const SYSTEM_WRITE: &[&str] = &["/dev/null", "/dev/full"];

/// How the runner's confinement went, for the host's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every restriction is enforced.
    Full,
    /// Landlock is there but lacks some features (an older kernel): what it has is
    /// enforced.
    Partial,
    /// Nothing is enforced (no Landlock, or `off`).
    None,
}

impl Confinement {
    /// Confines the calling thread (and every thread and process it starts later) to
    /// this confinement. Call it first thing in the runner, before any other thread
    /// exists. `Err` (with what to tell the operator) when the mode is `required` and
    /// the kernel cannot enforce it.
    pub fn apply(&self) -> Result<Outcome, String> {
        if self.mode == Mode::Off {
            return Ok(Outcome::None);
        }
        let outcome = self
            .restrict()
            .map_err(|e| format!("the sandbox could not be set up: {e}"))?;
        if outcome == Outcome::None && self.mode == Mode::Required {
            return Err(
                "this kernel does not support Landlock, and this host requires the sandbox (`sandbox = \"required\"`); run on a kernel with Landlock (Linux 5.13 or later, enabled with lsm=landlock) or set sandbox to best-effort"
                    .to_owned(),
            );
        }
        Ok(outcome)
    }

    fn restrict(&self) -> Result<Outcome, landlock::RulesetError> {
        use landlock::{
            path_beneath_rules, Access as _, AccessFs, AccessNet, NetPort, Ruleset, RulesetAttr,
            RulesetCreatedAttr, RulesetStatus, Scope, ABI,
        };
        let abi = ABI::V6;
        let read = AccessFs::from_read(abi);
        let all = AccessFs::from_all(abi);
        let mut writes: Vec<PathBuf> = vec![self.private.clone()];
        writes.extend(self.access.writes.iter().cloned());
        let mut reads: Vec<PathBuf> = SYSTEM_READ.iter().map(PathBuf::from).collect();
        reads.push(self.library.clone());
        reads.extend(self.access.reads.iter().cloned());
        let ports: Vec<NetPort> = self
            .access
            .ports()
            .into_iter()
            .map(|p| NetPort::new(p, AccessNet::ConnectTcp))
            .collect();
        let status = Ruleset::default()
            .handle_access(all)?
            .handle_access(AccessNet::from_all(abi))?
            .scope(Scope::from_all(abi))?
            .create()?
            .add_rules(path_beneath_rules(&reads, read))?
            .add_rules(path_beneath_rules(SYSTEM_WRITE, read | AccessFs::WriteFile))?
            .add_rules(path_beneath_rules(&writes, all))?
            .add_rules(ports.into_iter().map(Ok::<_, landlock::RulesetError>))?
            .restrict_self()?;
        Ok(match status.ruleset {
            RulesetStatus::FullyEnforced => Outcome::Full,
            RulesetStatus::PartiallyEnforced => Outcome::Partial,
            RulesetStatus::NotEnforced => Outcome::None,
        })
    }
}

/// The Landlock ABI version this kernel supports, `None` without Landlock.
pub fn kernel_abi() -> Option<i64> {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_long = 1;
    // SAFETY: landlock_create_ruleset with a null attribute and the version flag only
    // returns a number; it creates nothing.
    let abi = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    (abi > 0).then_some(abi)
}

/// The hint added to a run's error when it looks like the sandbox refused something
/// ("Permission denied"): what the worker may touch and how to change it.
pub fn explain_denial(message: String, worker: &str, access: Option<&Access>) -> String {
    let denied = message.contains("os error 13")
        || message.contains("Permission denied")
        || message.contains("os error 1)");
    match access {
        Some(access) if denied => format!(
            "{message} (denied, possibly by the sandbox: worker '{worker}' {}; an operator can change that with the `{SANDBOX_READS}`, `{SANDBOX_WRITES}` and `{SANDBOX_CONNECTS}` settings)",
            access.describe()
        ),
        _ => message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(reads: &[&str], writes: &[&str], connects: &[&str]) -> AccessSpec {
        let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect();
        AccessSpec {
            reads: v(reads),
            writes: v(writes),
            connects: v(connects),
        }
    }

    #[test]
    fn declarations_become_absolute_settings_replace_them_and_references_resolve() {
        let home = Path::new("/srv/stask");
        let mut settings = Map::new();
        settings.insert("import_dir".into(), Value::String("/data/in".into()));
        let a = resolve(
            &spec(
                &["${import_dir}", "lists"],
                &["out"],
                &["api.example.com:443"],
            ),
            &settings,
            home,
        )
        .unwrap();
        assert_eq!(
            a.reads,
            [PathBuf::from("/data/in"), "/srv/stask/lists".into()]
        );
        assert_eq!(a.writes, [PathBuf::from("/srv/stask/out")]);
        assert_eq!(a.ports(), [443]);
        settings.insert(SANDBOX_CONNECTS.into(), Value::String(String::new()));
        settings.insert(SANDBOX_WRITES.into(), Value::String("/tmp/a, b".into()));
        let narrowed = resolve(&spec(&[], &["out"], &["x:1"]), &settings, home).unwrap();
        assert!(narrowed.connects.is_empty());
        assert_eq!(
            narrowed.writes,
            [PathBuf::from("/tmp/a"), "/srv/stask/b".into()]
        );
    }

    #[test]
    fn a_path_that_contains_the_home_is_refused_however_it_is_spelled() {
        let home = Path::new("/srv/stask");
        for bad in [".", "/", "/srv", "imports/../..", "/srv/stask/"] {
            let e = resolve(&spec(&[bad], &[], &[]), &Map::new(), home).unwrap_err();
            assert!(
                e.to_string().contains("contains the stask home"),
                "{bad}: {e}"
            );
        }
        assert!(resolve(&spec(&["imports/../data"], &[], &[]), &Map::new(), home).is_ok());
    }
}
