//! This engine as one host among several sharing a store (PostgreSQL).
//!
//! Each host has its own plugins directory. It registers itself with the content
//! hashes of the libraries it holds ([`stask_storage::Hosts`]), claims only tasks of
//! workers whose registered library it holds with the same content, and runs them from
//! its own file of that content (the registered path is the registering host's). What
//! it holds is looked at again every [`RESCAN_EVERY`], hashing only files that changed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use stask_storage::{HostRecord, Store};

/// How often the plugins directory and the registry are looked at again.
pub const RESCAN_EVERY: Duration = Duration::from_secs(10);

/// The libraries this host holds, by content hash.
pub struct LocalLibraries {
    plugins_dir: PathBuf,
    /// sha256 -> a file with that content.
    by_sha: HashMap<String, PathBuf>,
    /// Hashes of files seen, by (path, size, mtime), so a rescan hashes only changes.
    memo: HashMap<(PathBuf, u64, i64), String>,
    /// Workers this host cannot run (their registered library is not here).
    excluded: Vec<String>,
    looked_at: Option<Instant>,
    /// When this host started (ms since epoch), as registered.
    started_at: i64,
}

impl LocalLibraries {
    /// An empty set for `plugins_dir`, filled by the first [`LocalLibraries::refresh`].
    pub fn new(plugins_dir: &Path) -> Self {
        LocalLibraries {
            plugins_dir: plugins_dir.to_path_buf(),
            by_sha: HashMap::new(),
            memo: HashMap::new(),
            excluded: Vec::new(),
            looked_at: None,
            started_at: stask_storage::now_ms(),
        }
    }

    /// Looks at the plugins directory and the registry again when [`RESCAN_EVERY`]
    /// passed (or `force`); registers the host when what it holds changed (or `force`).
    pub fn refresh(
        &mut self,
        store: &mut dyn Store,
        owner: &str,
        capacity: usize,
        force: bool,
    ) -> anyhow::Result<()> {
        if !force && self.looked_at.is_some_and(|t| t.elapsed() < RESCAN_EVERY) {
            return Ok(());
        }
        self.looked_at = Some(Instant::now());
        let before: Vec<String> = self.hashes();
        let mut by_sha = HashMap::new();
        let mut memo = HashMap::new();
        for path in crate::discovery::scan(&self.plugins_dir).unwrap_or_default() {
            let Ok((size, mtime)) = crate::fingerprint::stat(&path) else {
                continue;
            };
            let key = (path.clone(), size, mtime);
            let sha = match self.memo.get(&key) {
                Some(sha) => sha.clone(),
                None => match crate::fingerprint::sha256_file(&path) {
                    Ok(sha) => sha,
                    Err(_) => continue,
                },
            };
            by_sha.entry(sha.clone()).or_insert_with(|| path.clone());
            memo.insert(key, sha);
        }
        self.by_sha = by_sha;
        self.memo = memo;
        self.excluded = store
            .list_workers()?
            .into_iter()
            .filter(|w| !self.by_sha.contains_key(&w.library.sha256))
            .map(|w| w.identifier)
            .collect();
        let now = self.hashes();
        if force || now != before {
            store.register_host(&HostRecord {
                id: owner.to_owned(),
                name: crate::recovery::hostname(),
                version: env!("CARGO_PKG_VERSION").to_owned(),
                capacity: capacity as i64,
                libraries: now,
                started_at: self.started_at,
                renewed_at: None,
            })?;
        }
        Ok(())
    }

    fn hashes(&self) -> Vec<String> {
        let mut v: Vec<String> = self.by_sha.keys().cloned().collect();
        v.sort();
        v
    }

    /// Workers whose tasks this host must not claim.
    pub fn excluded(&self) -> &[String] {
        &self.excluded
    }

    /// This host's file with the content `sha256`, if it holds one.
    pub fn file_of(&self, sha256: &str) -> Option<&Path> {
        self.by_sha.get(sha256).map(PathBuf::as_path)
    }
}
