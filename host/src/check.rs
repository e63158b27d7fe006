//! `stask check`: audits a home and says what to fix, changing nothing (other commands
//! tighten modes as they open a home; this one only reports).
//!
//! Checks, in order: the home exists; modes and owners of the home and its files (the
//! rule of [`crate::privacy`]: nothing of the home readable or writable by others, all
//! of it owned by the user stask runs as); the plugins directory and every library in
//! it (the rules of [`crate::safety`]); the secret key (present, private, able to open
//! every stored secret, no secret left in plaintext; [`crate::secrets::audit`]); the
//! database: SQLite's file (it opens, and `PRAGMA quick_check` through
//! [`stask_storage::Store::check_integrity`] finds nothing) or, for a home whose
//! `database_url` names PostgreSQL, the server (reachable, the schema at this stask's
//! version, every table answering; nothing is created or upgraded); free disk space and
//! inodes on the home's file system (result files and library copies live there on
//! either backend).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::config::Config;
use crate::secrets::{self, KeySource};

/// Free space the home's file system must keep at least: room for result files, the
/// write-ahead log and the statistics, whatever the database's size.
const MIN_FREE_BYTES: u64 = 256 << 20;
/// Free inodes it must keep at least (scratch directories, cache copies).
const MIN_FREE_INODES: u64 = 1000;

/// One finding: a check that passed, or a problem with its fix.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Finding {
    /// Which check: `home`, `modes`, `plugins`, `key`, `database`, `disk`.
    pub check: &'static str,
    /// Whether all is well.
    pub ok: bool,
    /// What was found.
    pub message: String,
    /// What to do (problems only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

/// Everything `stask check` found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The home checked.
    pub home: PathBuf,
    /// Whether every check passed.
    pub ok: bool,
    /// Number of problems.
    pub problems: usize,
    /// Each finding, in the order checked.
    pub findings: Vec<Finding>,
}

#[derive(Default)]
struct Findings(Vec<Finding>);

impl Findings {
    fn ok(&mut self, check: &'static str, message: impl Into<String>) {
        self.0.push(Finding {
            check,
            ok: true,
            message: message.into(),
            fix: None,
        });
    }

    fn problem(&mut self, check: &'static str, message: impl Into<String>, fix: impl Into<String>) {
        self.0.push(Finding {
            check,
            ok: false,
            message: message.into(),
            fix: Some(fix.into()),
        });
    }

    fn problems_of(&self, check: &str) -> usize {
        self.0.iter().filter(|f| f.check == check && !f.ok).count()
    }
}

fn euid() -> u32 {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() }
}

/// Audits the home at `root` (`plugins_dir`: the `--plugins-dir` flag, `database`: the
/// `--database` flag, if given).
pub fn check(root: &Path, plugins_dir: Option<&Path>, database: Option<&str>) -> Report {
    let mut f = Findings::default();
    let root = std::path::absolute(root).unwrap_or_else(|_| root.to_path_buf());
    match std::fs::metadata(&root) {
        Ok(m) if m.is_dir() => f.ok("home", format!("'{}' is a stask home", root.display())),
        Ok(_) => f.problem(
            "home",
            format!("'{}' is not a directory", root.display()),
            "point --home or STASK_HOME at a stask home",
        ),
        Err(e) => f.problem(
            "home",
            format!("cannot read the stask home '{}': {e}", root.display()),
            format!(
                "create it with `stask --home {} init`, or point --home / STASK_HOME at an existing one",
                root.display()
            ),
        ),
    }
    if f.problems_of("home") > 0 {
        return report(root, f);
    }
    modes(&root, &mut f);
    plugins(&root, plugins_dir, &mut f);
    let url = database_url(&root, database, &mut f);
    let store = match &url {
        Some(url) => postgres(url, &mut f),
        None => self::database(&root, &mut f),
    };
    key(&root, store.as_deref(), &mut f);
    disk(&root, url.is_none(), &mut f);
    sandbox(&mut f);
    report(root, f)
}

/// Whether this kernel can confine runners (Landlock).
fn sandbox(f: &mut Findings) {
    match crate::sandbox::kernel_abi() {
        Some(abi) => f.ok(
            "sandbox",
            format!("the kernel supports Landlock (ABI {abi}): runners confine themselves to what their worker declares"),
        ),
        None => f.problem(
            "sandbox",
            "the kernel does not support Landlock: plugin code can read and write whatever the service's user can",
            "run on Linux 5.13 or later with Landlock enabled (lsm=…,landlock), and run the service as a dedicated user; `sandbox = \"required\"` refuses to run tasks unconfined",
        ),
    }
}

fn report(home: PathBuf, f: Findings) -> Report {
    let problems = f.0.iter().filter(|x| !x.ok).count();
    Report {
        home,
        ok: problems == 0,
        problems,
        findings: f.0,
    }
}

/// The home's own files and directories (the secret key is checked with the key).
fn home_paths(root: &Path) -> Vec<PathBuf> {
    let mut paths = vec![root.to_path_buf()];
    for name in [
        "stask.db",
        "stask.db-wal",
        "stask.db-shm",
        "stask.db-journal",
        "stask.toml",
        "cache",
        "scratch",
        "run",
    ] {
        paths.push(root.join(name));
    }
    paths
}

fn modes(root: &Path, f: &mut Findings) {
    let me = euid();
    for path in home_paths(root) {
        // The home's own files are never links; a link is not followed.
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.file_type().is_symlink() {
            continue;
        }
        let mode = meta.mode() & 0o7777;
        if mode & 0o077 != 0 {
            let (what, how) = if meta.is_dir() {
                ("directory", "is open to")
            } else if crate::privacy::readable_by_others(&path) {
                ("file", "can be read by")
            } else {
                ("file", "is open to")
            };
            f.problem(
                "modes",
                format!(
                    "{what} '{}' {how} other users (mode {mode:04o}); the home holds worker secrets and password hashes",
                    path.display()
                ),
                format!(
                    "chmod go-rwx '{}' (any other stask command also makes the home private as it opens it)",
                    path.display()
                ),
            );
        }
        if meta.uid() != me {
            f.problem(
                "modes",
                format!(
                    "'{}' belongs to uid {}, not to the user running stask (uid {me})",
                    path.display(),
                    meta.uid()
                ),
                format!(
                    "run stask as uid {}, or `chown {me} '{}'`",
                    meta.uid(),
                    path.display()
                ),
            );
        }
    }
    if f.problems_of("modes") == 0 {
        f.ok(
            "modes",
            format!("the home and its files are private to uid {me}"),
        );
    }
}

fn plugins(root: &Path, flag: Option<&Path>, f: &mut Findings) {
    let mut flags = Vec::new();
    if let Some(p) = flag {
        flags.push(("plugins_dir", p.to_string_lossy().into_owned()));
    }
    let dir = match Config::load(root, &flags) {
        Ok(c) => c.plugins_dir,
        Err(e) => {
            f.problem(
                "plugins",
                format!("the configuration cannot be read: {e:#}"),
                "fix stask.toml or the STASK_* variable the message names",
            );
            return;
        }
    };
    let meta = match std::fs::metadata(&dir) {
        Ok(m) if m.is_dir() => m,
        _ => {
            f.problem(
                "plugins",
                format!("the plugins directory '{}' does not exist", dir.display()),
                format!(
                    "mkdir -m 755 '{}', or configure another one (--plugins-dir, STASK_PLUGINS_DIR or plugins_dir in stask.toml)",
                    dir.display()
                ),
            );
            return;
        }
    };
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        f.problem(
            "plugins",
            format!(
                "the plugins directory '{}' is writable by other users (mode {mode:04o}), so anyone could put code there that stask runs",
                dir.display()
            ),
            format!("chmod go-w '{}'", dir.display()),
        );
    }
    let me = euid();
    if meta.uid() != me && meta.uid() != 0 {
        f.problem(
            "plugins",
            format!(
                "the plugins directory '{}' belongs to uid {}, not to the user running stask (uid {me}) or root",
                dir.display(),
                meta.uid()
            ),
            format!("chown {me} '{}'", dir.display()),
        );
    }
    let root_dir = std::fs::canonicalize(&dir).unwrap_or_else(|_| dir.clone());
    let libraries = crate::discovery::scan(&dir).unwrap_or_default();
    let mut reasons = std::collections::BTreeSet::new();
    for lib in &libraries {
        if let Err(reason) = crate::safety::check_library(&root_dir, lib) {
            // The directory itself was reported above, once.
            if mode & 0o022 != 0 && reason.contains(&format!("'{}'", root_dir.display())) {
                continue;
            }
            if reasons.insert(reason.clone()) {
                f.problem(
                    "plugins",
                    format!("library '{}' is refused: {reason}", lib.display()),
                    "make it safe as the message says, or remove it from the plugins directory",
                );
            }
        }
    }
    if f.problems_of("plugins") == 0 {
        f.ok(
            "plugins",
            format!(
                "the plugins directory '{}' and its {} librar{} are safe",
                dir.display(),
                libraries.len(),
                if libraries.len() == 1 { "y" } else { "ies" }
            ),
        );
    }
}

/// The PostgreSQL URL the home's configuration names (`None`: its SQLite database). A
/// configuration that cannot be read is a problem of the `database` check.
fn database_url(root: &Path, flag: Option<&str>, f: &mut Findings) -> Option<String> {
    let mut flags = Vec::new();
    if let Some(url) = flag {
        flags.push(("database_url", url.to_owned()));
    }
    match Config::load(root, &flags) {
        Ok(c) => c.database(),
        Err(e) => {
            f.problem(
                "database",
                format!("the configuration cannot be read: {e:#}"),
                "fix stask.toml or the STASK_* variable the message names",
            );
            None
        }
    }
}

/// A PostgreSQL store: reachable, at this stask's schema version, every table
/// answering. Connects without migrating: a check changes nothing, and an older host's
/// check must not upgrade the schema under the others.
fn postgres(url: &str, f: &mut Findings) -> Option<Box<dyn stask_storage::Store>> {
    use stask_storage::postgres::PgStore;
    use stask_storage::Store as _;
    let shown = stask_storage::postgres::redact(url);
    if !stask_storage::is_postgres(url) {
        f.problem(
            "database",
            format!("database_url '{shown}' is not a PostgreSQL URL"),
            "give postgres://USER@HOST:PORT/DATABASE, or leave database_url empty for the home's SQLite database",
        );
        return None;
    }
    let store = match PgStore::connect(url) {
        Ok(s) => s,
        Err(e) => {
            f.problem(
                "database",
                format!("the PostgreSQL database {shown} cannot be reached: {e}"),
                "start the server or fix what the message names (host, port, user, password, database in database_url, STASK_DATABASE_URL or --database)",
            );
            return None;
        }
    };
    let latest = PgStore::SCHEMA_VERSION;
    match store.schema_version() {
        Ok(0) => {
            f.problem(
                "database",
                format!("the PostgreSQL database {shown} has no stask schema yet"),
                "`stask migrate` creates it (`stask serve` and every other command do too)",
            );
            return None;
        }
        Ok(v) if v < latest => {
            f.problem(
                "database",
                format!(
                    "the PostgreSQL database {shown} is at schema version {v}; this stask uses {latest}"
                ),
                "`stask migrate` upgrades it (`stask serve` does too when it starts); upgrade stask on every host first, as an older one refuses a newer schema",
            );
            // Old enough tables still hold the secrets the key check opens.
            return Some(Box::new(store));
        }
        Ok(v) if v > latest => {
            f.problem(
                "database",
                format!(
                    "the PostgreSQL database {shown} is at schema version {v}, newer than this stask knows ({latest}): a newer stask upgraded it"
                ),
                "upgrade stask on this host to the version the other hosts run",
            );
            return None;
        }
        Ok(_) => {}
        Err(e) => {
            f.problem(
                "database",
                format!(
                    "the schema version of the PostgreSQL database {shown} cannot be read: {e}"
                ),
                "fix what the message names, then check again",
            );
            return None;
        }
    }
    match store.check_integrity() {
        Ok(problems) if problems.is_empty() => f.ok(
            "database",
            format!(
                "the PostgreSQL database {shown} is reachable, at schema version {latest}, and every table answers"
            ),
        ),
        Ok(problems) => {
            let shown_problems: Vec<&str> = problems.iter().take(5).map(String::as_str).collect();
            f.problem(
                "database",
                format!(
                    "tables of the PostgreSQL database {shown} do not answer ({} problem(s)): {}",
                    problems.len(),
                    shown_problems.join("; ")
                ),
                "fix what the messages name (permissions of stask's database user, a dropped table: restore from a backup)",
            );
        }
        Err(e) => f.problem(
            "database",
            format!("the PostgreSQL database {shown} cannot be checked: {e}"),
            "fix what the message names, then check again",
        ),
    }
    Some(Box::new(store))
}

fn database(root: &Path, f: &mut Findings) -> Option<Box<dyn stask_storage::Store>> {
    let db = root.join("stask.db");
    if !db.exists() {
        f.problem(
            "database",
            format!("there is no database '{}'", db.display()),
            format!("stask --home {} init", root.display()),
        );
        return None;
    }
    let store = match stask_storage::open_sqlite(&db) {
        Ok(s) => s,
        Err(e) => {
            f.problem(
                "database",
                format!("the database '{}' cannot be opened: {e}", db.display()),
                "fix what the message names; if the file is damaged, restore it from a backup",
            );
            return None;
        }
    };
    match store.check_integrity() {
        Ok(problems) if problems.is_empty() => f.ok(
            "database",
            format!(
                "the database '{}' is readable and sound (quick_check)",
                db.display()
            ),
        ),
        Ok(problems) => {
            let shown: Vec<&str> = problems.iter().take(5).map(String::as_str).collect();
            f.problem(
                "database",
                format!(
                    "the database '{}' is damaged ({} problem(s)): {}",
                    db.display(),
                    problems.len(),
                    shown.join("; ")
                ),
                format!(
                    "stop every stask process and restore '{}' from a backup (or salvage what is readable with `sqlite3 {} .recover | sqlite3 recovered.db`)",
                    db.display(),
                    db.display()
                ),
            );
        }
        Err(e) => f.problem(
            "database",
            format!("the database '{}' cannot be checked: {e}", db.display()),
            "fix what the message names, then check again",
        ),
    }
    Some(store)
}

fn key(root: &Path, store: Option<&dyn stask_storage::Store>, f: &mut Findings) {
    let audit = secrets::audit(&KeySource::for_dir(root), store);
    for p in &audit.problems {
        f.problem("key", p.problem.clone(), p.fix.clone());
    }
    if audit.problems.is_empty() {
        f.ok(
            "key",
            format!(
                "secret key {} from {} opens all {} stored secret(s)",
                audit.key_id.as_deref().unwrap_or("?"),
                audit.origin.as_deref().unwrap_or("?"),
                audit.encrypted
            ),
        );
    }
}

/// Free space and inodes of the home's file system; `sqlite`: the database is a file
/// there, whose size counts.
fn disk(root: &Path, sqlite: bool, f: &mut Findings) {
    let st = match rustix::fs::statvfs(root) {
        Ok(s) => s,
        Err(e) => {
            f.problem(
                "disk",
                format!("cannot read the free space of '{}': {e}", root.display()),
                "check the file system the home is on",
            );
            return;
        }
    };
    let free = st.f_bavail.saturating_mul(st.f_frsize);
    let db_size: u64 = ["stask.db", "stask.db-wal"]
        .iter()
        .filter_map(|n| std::fs::metadata(root.join(n)).ok())
        .map(|m| m.len())
        .sum();
    // The one-time rebuild of an upgrade, and giving space back, need about the
    // database's size again.
    let need = MIN_FREE_BYTES.max(db_size);
    if st.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY) {
        f.problem(
            "disk",
            format!(
                "the file system of '{}' is mounted read-only: commands that change the home fail",
                root.display()
            ),
            "remount it read-write, or move the home",
        );
    }
    if free < need {
        f.problem(
            "disk",
            format!(
                "only {} free on the file system of '{}' (at least {} needed: {} and the database's size)",
                crate::task_log::format_bytes(free),
                root.display(),
                crate::task_log::format_bytes(need),
                crate::task_log::format_bytes(MIN_FREE_BYTES)
            ),
            "free disk space there (e.g. `stask tasks clean`), or move the home to a larger file system",
        );
    }
    if st.f_files > 0 && st.f_favail < MIN_FREE_INODES {
        f.problem(
            "disk",
            format!(
                "only {} free inodes on the file system of '{}'",
                st.f_favail,
                root.display()
            ),
            "remove files there, or move the home",
        );
    }
    if f.problems_of("disk") == 0 {
        let database = if sqlite {
            format!(" (database {})", crate::task_log::format_bytes(db_size))
        } else {
            String::new()
        };
        f.ok(
            "disk",
            format!(
                "{} free on the file system of '{}'{database}",
                crate::task_log::format_bytes(free),
                root.display(),
            ),
        );
    }
}

/// Prints a report as text: one line per finding, each problem followed by its fix.
pub fn print(report: &Report) {
    println!("stask check: {}", report.home.display());
    for x in &report.findings {
        println!(
            "  {:<4}  {:<8}  {}",
            if x.ok { "ok" } else { "FAIL" },
            x.check,
            x.message
        );
        if let Some(fix) = &x.fix {
            println!("                  fix: {fix}");
        }
    }
    if report.ok {
        println!("All is well.");
    } else {
        println!(
            "{} problem{} to fix.",
            report.problems,
            if report.problems == 1 { "" } else { "s" }
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_home_is_one_problem_with_its_fix() {
        let dir = tempfile::tempdir().unwrap();
        let r = check(&dir.path().join("nope"), None, None);
        assert!(!r.ok);
        assert_eq!(r.findings.len(), 1);
        assert!(r.findings[0].fix.as_deref().unwrap().contains("init"));
    }

    #[test]
    fn a_fresh_home_passes_and_open_modes_are_reported_not_changed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("home");
        let home = crate::home::Home::init(&root, None).unwrap();
        secrets::init_key(&home).unwrap();
        // As any command does (tests run without stask's umask).
        crate::home::Home::open(&root, None).unwrap();
        std::fs::set_permissions(home.plugins_dir(), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        let r = check(&root, None, None);
        assert!(r.ok, "{r:#?}");
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
        let r = check(&root, None, None);
        let bad: Vec<&Finding> = r.findings.iter().filter(|f| !f.ok).collect();
        assert_eq!(bad.len(), 1, "{bad:#?}");
        assert_eq!(bad[0].check, "modes");
        let mode = std::fs::metadata(&root).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o755, "check changes nothing");
    }
}
