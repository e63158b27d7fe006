//! Private copies of plugin libraries, named by content hash.
//!
//! Runners never map the file in the plugins directory: overwriting a mapped library in
//! place crashes the process that mapped it, and a process that loaded a path once keeps
//! the old code. Each distinct content gets its own `{home}/cache/{sha256}.so`, so a
//! replaced plugin file is safe while tasks run and the next run uses the new code.
//!
//! A copy is checked before a runner starts from it: its size against the plugin
//! file's (every full check), its content against the hash it is named by (once per
//! copy and process, and again whenever its stat changes). A copy that does not match
//! (truncated by a crash or a full disk, damaged, edited) is replaced from the plugin
//! file: a runner mapping a truncated library dies of SIGBUS, and it would do so for
//! every task, across restarts.

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
    /// Copies whose content this process found to match their name, with their
    /// identity then: while it is unchanged they are not read again.
    verified: Mutex<HashMap<PathBuf, FileId>>,
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
            verified: Mutex::new(HashMap::new()),
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
        if !self.copy_is_sound(&path, size, &sha256, library) {
            self.copy(library, &real, &sha256, &path)?;
        }
        Ok(CachedLibrary { path, sha256 })
    }

    /// Whether the copy at `path` exists and holds the `size` bytes hashing to
    /// `sha256` it is named by. The size is compared every time; the content once per
    /// copy and process, and again when the copy's stat changes.
    fn copy_is_sound(&self, path: &Path, size: u64, sha256: &str, library: &Path) -> bool {
        let Some(id) = FileId::of(path) else {
            return false;
        };
        if id.size != size {
            tracing::warn!(
                "the private copy '{}' of '{}' is {} bytes instead of {size} (truncated or damaged); copying the library again",
                path.display(),
                library.display(),
                id.size
            );
            return false;
        }
        if self.verified.lock().unwrap().get(path) == Some(&id) {
            return true;
        }
        match fingerprint::sha256_file(path) {
            Ok(found) if found == sha256 => {
                self.verified.lock().unwrap().insert(path.to_path_buf(), id);
                true
            }
            Ok(_) => {
                tracing::warn!(
                    "the private copy '{}' of '{}' does not match the content it is named by (damaged); copying the library again",
                    path.display(),
                    library.display()
                );
                false
            }
            Err(e) => {
                tracing::warn!(
                    "the private copy '{}' of '{}' cannot be read ({e}); copying the library again",
                    path.display(),
                    library.display()
                );
                false
            }
        }
    }

    /// Copies `real` (the file of `library`) to `path`, through a temporary file that
    /// is verified against `sha256` and then renamed over whatever `path` held.
    fn copy(&self, library: &Path, real: &Path, sha256: &str, path: &Path) -> Result<()> {
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("cannot create '{}'", self.dir.display()))?;
        let tmp = self
            .dir
            .join(format!(".{sha256}.{}.tmp", std::process::id()));
        // A leftover of an earlier try (read-only, 0500) would make the copy fail.
        let _ = std::fs::remove_file(&tmp);
        std::fs::copy(real, &tmp)
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
        std::fs::rename(&tmp, path)
            .with_context(|| format!("cannot move the copy to '{}'", path.display()))?;
        // (After the rename, which changes the file's ctime. Whatever another process
        // may have renamed there since was verified the same way.)
        if let Some(id) = FileId::of(path) {
            self.verified.lock().unwrap().insert(path.to_path_buf(), id);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    /// A plugins directory with one "library" (any bytes do: nothing loads it here)
    /// and a cache directory beside it: (the temporary directory, the library, the
    /// cache directory).
    fn setup() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let plugins = dir.path().join("plugins");
        std::fs::create_dir(&plugins).unwrap();
        std::fs::set_permissions(&plugins, std::fs::Permissions::from_mode(0o755)).unwrap();
        let lib = plugins.join("libx.so");
        let content: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&lib, content).unwrap();
        std::fs::set_permissions(&lib, std::fs::Permissions::from_mode(0o755)).unwrap();
        let cache = dir.path().join("cache");
        (dir, lib, cache)
    }

    /// Overwrites `path` (a read-only copy) through `change`.
    fn damage(path: &Path, change: impl FnOnce(&std::fs::File)) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        change(&f);
        drop(f);
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o500)).unwrap();
    }

    #[test]
    fn a_truncated_or_damaged_copy_is_replaced_before_it_is_used() {
        let (_dir, lib, cache_dir) = setup();
        let plugins = lib.parent().unwrap().to_path_buf();
        let original = std::fs::read(&lib).unwrap();
        let cache = LibraryCache::new(cache_dir.clone(), &plugins);
        let copy = cache.prepare(&lib).unwrap();
        assert_eq!(std::fs::read(&copy.path).unwrap(), original);

        // Truncated (as a crash can leave it): a new process (cache) sees the size.
        damage(&copy.path, |f| f.set_len(1000).unwrap());
        let again = LibraryCache::new(cache_dir.clone(), &plugins)
            .prepare(&lib)
            .unwrap();
        assert_eq!(again.path, copy.path);
        assert_eq!(std::fs::read(&again.path).unwrap(), original);

        // Same size, other bytes: the hash, once per process.
        damage(&copy.path, |f| {
            use std::io::{Seek as _, Write as _};
            let mut f = f;
            f.seek(std::io::SeekFrom::Start(5000)).unwrap();
            f.write_all(b"garbage").unwrap();
        });
        let fresh = LibraryCache::new(cache_dir.clone(), &plugins);
        fresh.prepare(&lib).unwrap();
        assert_eq!(std::fs::read(&copy.path).unwrap(), original);

        // The same process notices a change of a copy it verified (its stat changed),
        // at its next full check.
        damage(&copy.path, |f| {
            use std::io::Write as _;
            let mut f = f;
            f.write_all(b"xx").unwrap();
        });
        fresh.recent.lock().unwrap().clear();
        fresh.prepare(&lib).unwrap();
        assert_eq!(std::fs::read(&copy.path).unwrap(), original);
        assert_eq!(
            std::fs::metadata(&copy.path).unwrap().permissions().mode() & 0o777,
            0o500
        );
    }

    #[test]
    fn a_sound_copy_is_read_once_per_process() {
        let (_dir, lib, cache_dir) = setup();
        let plugins = lib.parent().unwrap().to_path_buf();
        let cache = LibraryCache::new(cache_dir.clone(), &plugins);
        let copy = cache.prepare(&lib).unwrap();
        let id = FileId::of(&copy.path).unwrap();
        assert_eq!(cache.verified.lock().unwrap().get(&copy.path), Some(&id));
        let other = LibraryCache::new(cache_dir, &plugins);
        assert!(other.verified.lock().unwrap().is_empty());
        other.prepare(&lib).unwrap();
        // Not copied again (same file), but verified by this "process" too.
        assert_eq!(FileId::of(&copy.path), Some(id));
        assert_eq!(other.verified.lock().unwrap().get(&copy.path), Some(&id));
    }
}
