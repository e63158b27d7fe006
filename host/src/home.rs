//! The home directory: where the database, plugins, logs and caches live.
//!
//! ```text
//! {home}/stask.db            SQLite database
//! {home}/plugins/            plugin libraries (overridable)
//! {home}/storage/stask/      progress logs and result files
//! {home}/cache/              private copies of libraries, named by content hash
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
        let home = Home { root, plugins };
        // Homes made by an older stask may lack newer subdirectories.
        for dir in [home.log_dir(), home.results_root(), home.cache_dir()] {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create '{}'", dir.display()))?;
        }
        Ok(home)
    }

    /// Creates the home layout (idempotent) and opens it.
    pub fn init(root: &Path, plugins: Option<&Path>) -> Result<Home> {
        if root.exists() && !root.is_dir() {
            bail!("stask home '{}' is not a directory", root.display());
        }
        std::fs::create_dir_all(root)
            .with_context(|| format!("cannot create stask home '{}'", root.display()))?;
        let home = Home::open(root, plugins)?;
        std::fs::create_dir_all(&home.plugins)
            .with_context(|| format!("cannot create '{}'", home.plugins.display()))?;
        home.store()?;
        Ok(home)
    }

    /// The same home with another plugins directory (from the configuration).
    pub fn with_plugins_dir(mut self, plugins: std::path::PathBuf) -> Home {
        self.plugins = plugins;
        self
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

    /// Directory of progress logs.
    pub fn log_dir(&self) -> PathBuf {
        self.root.join("storage").join("stask")
    }

    /// Directory holding one result directory per task.
    pub fn results_root(&self) -> PathBuf {
        self.log_dir().join("results")
    }

    /// Private copies of libraries that runners load.
    pub fn cache_dir(&self) -> PathBuf {
        self.root.join("cache")
    }

    /// Opens the database (creating and migrating it when needed).
    pub fn store(&self) -> Result<Store> {
        Store::open(&self.db_path()).map_err(|e| anyhow::anyhow!(e))
    }
}
