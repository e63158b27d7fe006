//! Keeping the home private: the database holds worker secrets, password hashes and
//! everything tasks left behind, so no other local user may read it.
//!
//! * Every stask process sets its file-creation mask to 077 before it creates anything,
//!   so whatever it (and the runners it starts) creates is 0600 / 0700 whatever umask it
//!   was started with.
//! * Opening a home tightens what an older stask, or a careless copy, left readable by
//!   others: the home directory, the database with its WAL and shared-memory files, the
//!   configuration, the library cache, scratch and run directories; each change is
//!   reported. A database others can read that cannot be made private is refused,
//!   unless it is on a read-only file system (then it is only read, and that is said).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

/// Group and other permission bits.
const OTHERS: u32 = 0o077;

/// Makes files this process creates from now on private to its user.
pub fn private_umask() {
    // SAFETY: umask only changes this process's file-creation mask; it cannot fail.
    unsafe {
        libc::umask(0o077);
    }
}

/// What [`tighten`] changed: each path with its old mode.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Tightened {
    /// Paths made private, with their previous permission bits.
    pub changed: Vec<(PathBuf, u32)>,
}

/// Makes `paths` private (their group and other bits cleared) when they exist and are
/// not already. `must` lists those that must end up private: when one of them cannot be
/// changed and others can still read it, the result is an error naming it and the fix.
pub fn tighten(paths: &[PathBuf], must: &[PathBuf]) -> Result<Tightened> {
    let mut out = Tightened::default();
    for path in paths {
        // A symbolic link is not followed: the home's own files are never links.
        let meta = match std::fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_symlink() => continue,
            Ok(m) => m,
            Err(_) => continue,
        };
        let mode = meta.mode() & 0o7777;
        if mode & OTHERS == 0 {
            continue;
        }
        let private = mode & !OTHERS;
        match std::fs::set_permissions(path, std::fs::Permissions::from_mode(private)) {
            Ok(()) => out.changed.push((path.clone(), mode)),
            // A read-only file system: nothing can change it (stask included), and
            // refusing to read it would protect nothing.
            Err(e) if e.kind() == std::io::ErrorKind::ReadOnlyFilesystem => tracing::warn!(
                "'{}' can be read or written by other users (mode {mode:04o}) but cannot be made private on a read-only file system ({e}); make it private where it is writable",
                path.display()
            ),
            Err(e) if must.contains(path) && mode & 0o044 != 0 => bail!(
                "'{}' can be read by other users (mode {mode:04o}) and cannot be made private ({e}): it holds worker secrets and password hashes. Run stask as the file's owner, or make it private with `chmod 600 {}`",
                path.display(),
                path.display()
            ),
            Err(e) => tracing::warn!(
                "cannot make '{}' private (mode {mode:04o}): {e}",
                path.display()
            ),
        }
    }
    Ok(out)
}

/// Whether the file at `path` can be read by anyone but its owner.
pub fn readable_by_others(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.mode() & 0o044 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().mode() & 0o777
    }

    #[test]
    fn readable_files_and_directories_are_made_private_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("stask.db");
        let sub = dir.path().join("cache");
        std::fs::write(&db, "x").unwrap();
        std::fs::create_dir(&sub).unwrap();
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o755)).unwrap();
        let missing = dir.path().join("stask.db-wal");
        let done = tighten(
            &[db.clone(), sub.clone(), missing],
            std::slice::from_ref(&db),
        )
        .unwrap();
        assert_eq!(done.changed, [(db.clone(), 0o644), (sub.clone(), 0o755)]);
        assert_eq!((mode(&db), mode(&sub)), (0o600, 0o700));
        assert!(!readable_by_others(&db));
        // Already private: nothing to report.
        assert!(tighten(std::slice::from_ref(&db), &[])
            .unwrap()
            .changed
            .is_empty());
    }
}
