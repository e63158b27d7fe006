//! The home directory: where the database, plugins and caches live.
//!
//! ```text
//! {home}/stask.db            SQLite database: tasks, their logs and result files
//! {home}/stask.toml          configuration (optional)
//! {home}/plugins/            plugin libraries (overridable)
//! {home}/cache/              private copies of libraries, named by content hash
//! {home}/scratch/            scratch directories of running attempts, per engine
//! {home}/run/                wake-up sockets of running services
//! {home}/lang/               extra languages of the web interface (optional)
//! ```

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use stask_storage::Store;

/// Default home when neither `--home` nor `STASK_HOME` is given.
pub const DEFAULT_HOME: &str = "stask-home";

/// A validated home directory.
#[derive(Debug, Clone)]
pub struct Home {
    root: PathBuf,
    plugins: PathBuf,
    /// A PostgreSQL URL when the store is a server shared by several hosts; `None`: the
    /// home's SQLite database.
    database: Option<String>,
}

impl Home {
    /// Opens an existing home. A missing or unreadable directory is an error that says
    /// how to create one.
    pub fn open(root: &Path, plugins: Option<&Path>) -> Result<Home> {
        let meta = match std::fs::metadata(root) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
                "stask home '{}' does not exist; create it with `stask --home {} init`, or point --home / STASK_HOME at an existing one",
                root.display(),
                root.display()
            ),
            Err(e) => bail!("cannot read stask home '{}': {e}", root.display()),
        };
        if !meta.is_dir() {
            bail!("stask home '{}' is not a directory", root.display());
        }
        std::fs::read_dir(root)
            .with_context(|| format!("cannot read stask home '{}'", root.display()))?;
        let root = std::path::absolute(root)
            .with_context(|| format!("cannot resolve '{}'", root.display()))?;
        let plugins = match plugins {
            Some(p) => std::path::absolute(p)
                .with_context(|| format!("cannot resolve '{}'", p.display()))?,
            None => root.join("plugins"),
        };
        let home = Home {
            root,
            plugins,
            database: None,
        };
        // Homes made by an older stask may lack newer subdirectories. A read-only home
        // is read as it is (only running tasks needs them, and that writes anyway).
        for dir in [home.cache_dir(), home.scratch_root()] {
            match std::fs::create_dir_all(&dir) {
                Ok(()) => {}
                Err(e) if is_read_only(&e) => {
                    tracing::debug!("cannot create '{}' in a read-only home: {e}", dir.display());
                }
                Err(e) => {
                    return Err(e).with_context(|| format!("cannot create '{}'", dir.display()))
                }
            }
        }
        home.make_private()?;
        Ok(home)
    }

    /// Creates the home layout (idempotent) and opens it. The home and plugins paths
    /// must be valid UTF-8: paths of libraries are stored as text.
    pub fn init(root: &Path, plugins: Option<&Path>) -> Result<Home> {
        let absolute = std::path::absolute(root)
            .with_context(|| format!("cannot resolve '{}'", root.display()))?;
        if absolute.to_str().is_none() {
            bail!(
                "stask home path '{}' is not valid UTF-8; stask stores the paths of plugin libraries as text, so choose a home whose path is valid UTF-8",
                absolute.display()
            );
        }
        if let Some(p) = plugins {
            let absolute = std::path::absolute(p)
                .with_context(|| format!("cannot resolve '{}'", p.display()))?;
            if absolute.to_str().is_none() {
                bail!(
                    "plugins directory path '{}' is not valid UTF-8; stask stores the paths of plugin libraries as text, so choose a plugins directory whose path is valid UTF-8",
                    absolute.display()
                );
            }
        }
        if root.exists() && !root.is_dir() {
            bail!("stask home '{}' is not a directory", root.display());
        }
        std::fs::create_dir_all(root)
            .with_context(|| format!("cannot create stask home '{}'", root.display()))?;
        let home = Home::open(root, plugins)?;
        std::fs::create_dir_all(&home.plugins)
            .with_context(|| format!("cannot create '{}'", home.plugins.display()))?;
        Ok(home)
    }

    /// Makes what others must not read private (the home, the database and its
    /// journals, the configuration, caches and scratch space), saying what changed;
    /// refuses a database others can read that cannot be made private.
    fn make_private(&self) -> Result<()> {
        let db = self.db_path();
        let name = db
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let journals: Vec<PathBuf> = ["-wal", "-shm", "-journal"]
            .iter()
            .map(|s| db.with_file_name(format!("{name}{s}")))
            .collect();
        let mut paths = vec![self.root.clone(), db.clone()];
        paths.extend(journals.iter().cloned());
        paths.extend([
            self.root.join("stask.toml"),
            self.cache_dir(),
            self.scratch_root(),
            self.root.join("run"),
        ]);
        let mut must = vec![db];
        must.extend(journals);
        let done = crate::privacy::tighten(&paths, &must)?;
        for (path, mode) in &done.changed {
            tracing::warn!(
                "made '{}' private to its owner (it was mode {mode:04o}, readable or writable by other users)",
                path.display()
            );
        }
        Ok(())
    }

    /// The same home with another plugins directory (from the configuration).
    pub fn with_plugins_dir(mut self, plugins: std::path::PathBuf) -> Home {
        self.plugins = plugins;
        self
    }

    /// The same home with its store in the PostgreSQL database at `url` (`None`: the
    /// home's SQLite database). Anything but a `postgres://` URL is refused.
    pub fn with_database(mut self, url: Option<String>) -> Result<Home> {
        if let Some(url) = &url {
            if !stask_storage::is_postgres(url) {
                bail!(
                    "database URL '{url}' is not a PostgreSQL URL; give postgres://USER@HOST:PORT/DATABASE, or leave database_url empty for the home's SQLite database"
                );
            }
        }
        self.database = url;
        Ok(self)
    }

    /// Whether the store is a PostgreSQL database (shared by several hosts).
    pub fn is_shared(&self) -> bool {
        self.database.is_some()
    }

    /// Where the store is, for people: the SQLite file, or the PostgreSQL URL without its
    /// password.
    pub fn database_shown(&self) -> String {
        match &self.database {
            Some(url) => stask_storage::postgres::redact(url),
            None => self.db_path().display().to_string(),
        }
    }

    /// The home directory (absolute).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The plugins directory.
    pub fn plugins_dir(&self) -> &Path {
        &self.plugins
    }

    /// The database file.
    pub fn db_path(&self) -> PathBuf {
        self.root.join("stask.db")
    }

    /// Scratch directories of running attempts (`{engine}/{task id}`), where workers
    /// write result files until they are ingested into the store.
    pub fn scratch_root(&self) -> PathBuf {
        self.root.join("scratch")
    }

    /// Private copies of libraries that runners load.
    pub fn cache_dir(&self) -> PathBuf {
        self.root.join("cache")
    }

    /// Opens the store (creating and migrating the database when needed; read-only
    /// when the home cannot be written).
    pub fn store(&self) -> Result<Box<dyn Store>> {
        Ok(match &self.database {
            Some(url) => stask_storage::open(url)?,
            None => stask_storage::open_sqlite(&self.db_path())?,
        })
    }
}

/// Whether `e` says a file cannot be created or changed because of permissions or a
/// read-only file system.
fn is_read_only(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem
    )
}
