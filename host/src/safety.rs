//! Refusing plugin files that someone other than the operator could have planted or
//! changed, in the spirit of sudo's plugin checks.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Checks a candidate library file and returns the real file to read.
///
/// Refused: symlinks that resolve outside `plugins_root` (canonical), broken symlinks,
/// files or directories (from the file up to the plugins directory) writable by group
/// or others, and files owned by anyone but the current user or root.
pub fn check_library(plugins_root: &Path, path: &Path) -> Result<PathBuf, String> {
    let link_meta = std::fs::symlink_metadata(path).map_err(|e| format!("cannot read it: {e}"))?;
    let real = if link_meta.file_type().is_symlink() {
        let target = std::fs::canonicalize(path).map_err(|_| {
            let to = std::fs::read_link(path)
                .map(|t| t.display().to_string())
                .unwrap_or_default();
            format!("it is a broken symlink (to '{to}')")
        })?;
        if !target.starts_with(plugins_root) {
            return Err(format!(
                "it is a symlink that leads outside the plugins directory (to '{}'); copy the library into the plugins directory instead",
                target.display()
            ));
        }
        target
    } else {
        std::fs::canonicalize(path).map_err(|e| format!("cannot resolve it: {e}"))?
    };
    let meta = std::fs::metadata(&real).map_err(|e| format!("cannot read it: {e}"))?;
    if !meta.is_file() {
        return Err("it is not a regular file".into());
    }
    check_not_writable_by_others(&real, &meta)?;
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me && meta.uid() != 0 {
        return Err(format!(
            "it is owned by uid {}, not by the user running stask (uid {me}) or root; a plugin must belong to whoever runs it",
            meta.uid()
        ));
    }
    let mut dir = real.parent();
    while let Some(d) = dir {
        if !d.starts_with(plugins_root) {
            break;
        }
        let m = std::fs::metadata(d).map_err(|e| format!("cannot read '{}': {e}", d.display()))?;
        check_not_writable_by_others(d, &m)?;
        if d == plugins_root {
            break;
        }
        dir = d.parent();
    }
    Ok(real)
}

fn check_not_writable_by_others(path: &Path, meta: &std::fs::Metadata) -> Result<(), String> {
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o022 != 0 {
        let what = if meta.is_dir() { "directory" } else { "file" };
        return Err(format!(
            "{what} '{}' is writable by other users (mode {mode:04o}), so anyone could replace the code; fix it with `chmod go-w {}`",
            path.display(),
            path.display()
        ));
    }
    Ok(())
}
