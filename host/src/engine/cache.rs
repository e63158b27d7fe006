//! Private copies of plugin libraries, named by content hash.
//!
//! Runners never map the file in the plugins directory: overwriting a mapped library in
//! place crashes the process that mapped it, and a process that loaded a path once keeps
//! the old code. Each distinct content gets its own `{home}/cache/{sha256}.so`, so a
//! replaced plugin file is safe while tasks run and the next run uses the new code.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::fingerprint;
use crate::safety::check_library;

/// The cache, with a memo of each library's last (size, mtime) -> hash.
pub struct LibraryCache {
    dir: PathBuf,
    plugins_root: Option<PathBuf>,
    memo: Mutex<HashMap<PathBuf, (u64, i64, String)>>,
    /// Libraries checked recently: the file's identity when checked, the check's time
    /// and its result. Dispatching thousands of tasks a second must not repeat the full
    /// safety check (canonicalize, every directory's mode) for each task.
    recent: Mutex<HashMap<PathBuf, Recent>>,
}

/// A library checked recently.
struct Recent {
    /// The file's identity at the full check.
    id: FileId,
    /// When the full safety check ran.
    checked_at: Instant,
    /// When the file was last found unchanged (stat) or checked.
    looked_at: Instant,
    lib: CachedLibrary,
}

/// What identifies a file's contents and permissions cheaply: one stat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i64,
    ctime_ns: i64,
}

impl FileId {
    fn of(path: &Path) -> Option<FileId> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path).ok()?;
        Some(FileId {
            dev: m.dev(),
            ino: m.ino(),
            size: m.len(),
            mtime_ns: m.mtime() * 1_000_000_000 + m.mtime_nsec(),
            ctime_ns: m.ctime() * 1_000_000_000 + m.ctime_nsec(),
        })
    }
}

/// How long a full safety check of a library is trusted while its stat is unchanged
/// (a permission change of a parent directory shows up within this time).
const RECHECK_AFTER: Duration = Duration::from_secs(1);

/// How long after a check a library is used without even a stat.
const TRUST_WITHOUT_STAT: Duration = Duration::from_millis(20);

/// A library ready to load.
#[derive(Debug, Clone)]
pub struct CachedLibrary {
    /// The private copy.
    pub path: PathBuf,
    /// Its content hash.
    pub sha256: String,
}

impl LibraryCache {
    /// A cache in `dir` for libraries under `plugins_dir`.
    pub fn new(dir: PathBuf, plugins_dir: &Path) -> Self {
        LibraryCache {
            dir,
            plugins_root: std::fs::canonicalize(plugins_dir).ok(),
            memo: Mutex::new(HashMap::new()),
            recent: Mutex::new(HashMap::new()),
        }
    }

    /// Checks the library (same safety rules as discovery) and returns its private copy,
    /// copying it first when this content was not cached yet.
    pub fn prepare(&self, library: &Path) -> Result<CachedLibrary> {
        let mut recent = self.recent.lock().unwrap();
        if let Some(r) = recent.get_mut(library) {
            // Within a few milliseconds of a look, even the stat is skipped: a burst of
            // thousands of tasks of one library needs a handful of stats, not one each.
            if r.looked_at.elapsed() < TRUST_WITHOUT_STAT {
                return Ok(r.lib.clone());
            }
            if r.checked_at.elapsed() < RECHECK_AFTER && FileId::of(library) == Some(r.id) {
                r.looked_at = Instant::now();
                return Ok(r.lib.clone());
            }
        }
        drop(recent);
        let id = FileId::of(library);
        let lib = self.prepare_checked(library)?;
        if let Some(id) = id {
            let now = Instant::now();
            self.recent.lock().unwrap().insert(
                library.to_path_buf(),
                Recent {
                    id,
                    checked_at: now,
                    looked_at: now,
                    lib: lib.clone(),
                },
            );
        }
        Ok(lib)
    }

    fn prepare_checked(&self, library: &Path) -> Result<CachedLibrary> {
        let real = match &self.plugins_root {
            Some(root) => check_library(root, library).map_err(|reason| {
                anyhow::anyhow!("library '{}' refused: {reason}", library.display())
            })?,
            None => library.to_path_buf(),
        };
        let (size, mtime) = fingerprint::stat(&real).with_context(|| {
            format!(
                "the worker's library '{}' cannot be read (was it removed? rescan the plugins directory)",
                library.display()
            )
        })?;
        let known = self
            .memo
            .lock()
            .unwrap()
            .get(library)
            .filter(|(s, m, _)| *s == size && *m == mtime)
            .map(|(_, _, sha)| sha.clone());
        let sha256 = match known {
            Some(sha) => sha,
            None => {
                let sha = fingerprint::sha256_file(&real)
                    .with_context(|| format!("cannot read '{}'", real.display()))?;
                self.memo
                    .lock()
                    .unwrap()
                    .insert(library.to_path_buf(), (size, mtime, sha.clone()));
                sha
            }
        };
        let path = self
            .dir
            .join(format!("{sha256}.{}", std::env::consts::DLL_EXTENSION));
        if !path.exists() {
            std::fs::create_dir_all(&self.dir)
                .with_context(|| format!("cannot create '{}'", self.dir.display()))?;
            let tmp = self
                .dir
                .join(format!(".{sha256}.{}.tmp", std::process::id()));
            std::fs::copy(&real, &tmp)
                .with_context(|| format!("cannot copy '{}' into the cache", real.display()))?;
            // `copy` keeps the plugin file's mode; the copy is for this user only, and
            // read-only (runners map it, nothing writes it).
            {
                use std::os::unix::fs::PermissionsExt as _;
                std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o500))
                    .with_context(|| format!("cannot make '{}' private", tmp.display()))?;
            }
            // The copy is verified against the hash it will be named by, so a file that
            // changed while being copied is never cached under the wrong name.
            let copied = fingerprint::sha256_file(&tmp)?;
            if copied != sha256 {
                let _ = std::fs::remove_file(&tmp);
                anyhow::bail!(
                    "library '{}' changed while it was being copied; try again",
                    library.display()
                );
            }
            std::fs::rename(&tmp, &path)
                .with_context(|| format!("cannot move the copy to '{}'", path.display()))?;
        }
        Ok(CachedLibrary { path, sha256 })
    }
}
