//! Ingesting an attempt's scratch directory into the store when the attempt ends.
//!
//! Only regular files with a single link are taken; symbolic links, hard-linked files,
//! devices, pipes and sockets are skipped with a message naming them, and nothing
//! outside the directory is ever opened: every step opens relative to its parent
//! directory without following links (`openat` with `O_NOFOLLOW`).
//!
//! The checks come before a file is opened, and again on the opened descriptor. That
//! order matters on SQLite: closing any descriptor of the database file releases every
//! lock this process holds on it, so a hard link to `stask.db` must never be opened at
//! all. A file that turns into one of the store's private files between the two checks
//! (a plugin racing the ingest) is skipped and its descriptor deliberately never
//! closed. Files are streamed into the store in chunks, so time and memory are linear in
//! their size.

use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use stask_storage::{PutFileError, Store};

/// Size limits of one task's result files.
#[derive(Debug, Clone, Copy)]
pub struct IngestLimits {
    /// Largest file, in bytes.
    pub per_file: u64,
    /// All files of the task together, in bytes.
    pub per_task: u64,
}

/// What an ingest did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ingested {
    /// Files stored.
    pub files: usize,
    /// Their bytes.
    pub bytes: u64,
    /// What was left out, and why (one message each).
    pub skipped: Vec<String>,
    /// Why the ingest stopped; the attempt fails with it.
    pub error: Option<IngestError>,
}

/// Why an ingest stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IngestError {
    /// A size limit was exceeded: another attempt would do the same.
    Limit(String),
    /// The store failed; `transient` when it may work next time (the scratch
    /// directory is then kept, for the ingest to be tried again).
    Store {
        /// What failed.
        message: String,
        /// Whether trying again may succeed (a lock, a full disk).
        transient: bool,
    },
}

impl IngestError {
    /// The message.
    pub fn message(&self) -> &str {
        match self {
            IngestError::Limit(m) | IngestError::Store { message: m, .. } => m,
        }
    }
}

fn mb(bytes: u64) -> String {
    if bytes % (1 << 20) == 0 {
        format!("{} MB", bytes >> 20)
    } else {
        format!("{bytes} bytes")
    }
}

/// (device, inode) of files that must never be opened.
type Private = Vec<(u64, u64)>;

// The field types differ between platforms (u64 here).
#[allow(clippy::unnecessary_cast)]
fn identity(stat: &rustix::fs::Stat) -> (u64, u64) {
    (stat.st_dev as u64, stat.st_ino as u64)
}

/// Stores the regular files under `dir` as task `task`'s result files, then removes
/// `dir`. A missing directory stores nothing.
pub fn ingest(store: &mut dyn Store, task: i64, dir: &Path, limits: IngestLimits) -> Ingested {
    let mut out = Ingested::default();
    let private: Private = store
        .private_files()
        .iter()
        .filter_map(|p| rustix::fs::stat(p).ok())
        .map(|s| identity(&s))
        .collect();
    let root = match rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => return out,
        Err(e) => {
            out.skipped.push(format!(
                "the result directory could not be read ({e}); no result files were kept"
            ));
            let _ = std::fs::remove_dir_all(dir);
            return out;
        }
    };
    walk(store, task, root, "", 0, limits, &private, &mut out);
    if let Some(IngestError::Store {
        transient: true, ..
    }) = out.error
    {
        // Kept for another try.
        return out;
    }
    if let Err(e) = std::fs::remove_dir_all(dir) {
        tracing::warn!(
            task,
            "cannot remove the scratch directory {}: {e}",
            dir.display()
        );
    }
    out
}

/// Directories deeper than this are not walked (each level holds a descriptor and a
/// stack frame; a plugin could nest thousands).
const MAX_DEPTH: usize = 32;

/// Ingests the entries of the open directory `fd`, whose relative name is `prefix`, at
/// nesting `depth`.
#[allow(clippy::too_many_arguments)]
fn walk(
    store: &mut dyn Store,
    task: i64,
    fd: OwnedFd,
    prefix: &str,
    depth: usize,
    limits: IngestLimits,
    private: &Private,
    out: &mut Ingested,
) {
    let mut names: Vec<Vec<u8>> = Vec::new();
    match rustix::fs::Dir::read_from(&fd) {
        Ok(dir) => {
            for entry in dir.flatten() {
                let name = entry.file_name().to_bytes();
                if name != b"." && name != b".." {
                    names.push(name.to_vec());
                }
            }
        }
        Err(e) => {
            out.skipped
                .push(format!("directory '{prefix}' could not be read ({e})"));
            return;
        }
    }
    // Sorted, so what is kept when a limit is reached does not depend on the disk.
    names.sort();
    for raw in names {
        if out.error.is_some() {
            return;
        }
        let Ok(name) = std::str::from_utf8(&raw) else {
            out.skipped.push(format!(
                "'{prefix}{}' has a name that is not UTF-8",
                String::from_utf8_lossy(&raw)
            ));
            continue;
        };
        let rel = format!("{prefix}{name}");
        let os = OsStr::from_bytes(&raw);
        let stat = match rustix::fs::statat(&fd, os, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(s) => s,
            Err(e) => {
                out.skipped.push(format!("'{rel}' could not be read ({e})"));
                continue;
            }
        };
        match FileType::from_raw_mode(stat.st_mode) {
            FileType::Directory if depth >= MAX_DEPTH => out.skipped.push(format!(
                "'{rel}' is nested more than {MAX_DEPTH} directories deep; its contents are not kept"
            )),
            FileType::Directory => {
                match rustix::fs::openat(
                    &fd,
                    os,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                ) {
                    Ok(sub) => walk(
                        store,
                        task,
                        sub,
                        &format!("{rel}/"),
                        depth + 1,
                        limits,
                        private,
                        out,
                    ),
                    Err(e) => out.skipped.push(format!("'{rel}' could not be read ({e})")),
                }
            }
            FileType::RegularFile if stat.st_nlink > 1 => out.skipped.push(format!(
                "'{rel}' is a hard link ({} names for one file); only files with a single name are kept",
                stat.st_nlink
            )),
            FileType::RegularFile if private.contains(&identity(&stat)) => out
                .skipped
                .push(format!("'{rel}' is a file of the store itself")),
            FileType::RegularFile => {
                file(store, task, &fd, os, &rel, identity(&stat), limits, private, out)
            }
            FileType::Symlink => out.skipped.push(format!(
                "'{rel}' is a symbolic link; only regular files are kept"
            )),
            other => out.skipped.push(format!(
                "'{rel}' is a {}; only regular files are kept",
                describe(other)
            )),
        }
    }
}

fn describe(t: FileType) -> &'static str {
    match t {
        FileType::Fifo => "named pipe",
        FileType::Socket => "socket",
        FileType::CharacterDevice | FileType::BlockDevice => "device",
        _ => "special file",
    }
}

/// Ingests one regular file `os` of directory `fd`, whose (device, inode) was `seen`
/// before opening.
#[allow(clippy::too_many_arguments)]
fn file(
    store: &mut dyn Store,
    task: i64,
    fd: &OwnedFd,
    os: &OsStr,
    rel: &str,
    seen: (u64, u64),
    limits: IngestLimits,
    private: &Private,
    out: &mut Ingested,
) {
    // NONBLOCK: a name swapped for a pipe must not hang the slot.
    let opened = match rustix::fs::openat(
        fd,
        os,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(f) => f,
        Err(rustix::io::Errno::LOOP) => {
            out.skipped.push(format!(
                "'{rel}' is a symbolic link; only regular files are kept"
            ));
            return;
        }
        Err(e) => {
            out.skipped.push(format!("'{rel}' could not be read ({e})"));
            return;
        }
    };
    let stat = match rustix::fs::fstat(&opened) {
        Ok(s) => s,
        Err(e) => {
            out.skipped.push(format!("'{rel}' could not be read ({e})"));
            return;
        }
    };
    if identity(&stat) != seen || private.contains(&identity(&stat)) {
        // Swapped for another file while we looked. If that is a file of the store,
        // closing this descriptor would release the store's locks: keep it open.
        if private.contains(&identity(&stat)) {
            std::mem::forget(opened);
            tracing::warn!(task, "result file '{rel}' was swapped for a file of the store while it was ingested; skipped");
        }
        out.skipped
            .push(format!("'{rel}' changed while it was read; skipped"));
        return;
    }
    if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
        out.skipped.push(format!(
            "'{rel}' is not a regular file; only regular files are kept"
        ));
        return;
    }
    if stat.st_nlink > 1 {
        out.skipped.push(format!(
            "'{rel}' is a hard link ({} names for one file); only files with a single name are kept",
            stat.st_nlink
        ));
        return;
    }
    let left = limits.per_task.saturating_sub(out.bytes);
    let (limit, per_file) = if limits.per_file <= left {
        (limits.per_file, true)
    } else {
        (left, false)
    };
    let too_large = || {
        if per_file {
            format!(
                "result file '{rel}' is larger than the limit of {} per file (setting `max_result_file_mb`)",
                mb(limits.per_file)
            )
        } else {
            format!(
                "the task's result files exceed the limit of {} in all at '{rel}' (setting `max_result_task_mb`)",
                mb(limits.per_task)
            )
        }
    };
    if stat.st_size as u64 > limit {
        out.error = Some(IngestError::Limit(too_large()));
        return;
    }
    let mut reader = File::from(opened);
    match store.put_result_file(task, rel, &mut reader, limit) {
        Ok(size) => {
            out.files += 1;
            out.bytes += size;
        }
        Err(PutFileError::TooLarge { .. }) => out.error = Some(IngestError::Limit(too_large())),
        Err(PutFileError::Read(e)) => out.skipped.push(format!("'{rel}' could not be read ({e})")),
        Err(PutFileError::Store(e)) => {
            out.error = Some(IngestError::Store {
                transient: e.is_transient(),
                message: format!("result file '{rel}' could not be stored: {e}"),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: IngestLimits = IngestLimits {
        per_file: 1 << 20,
        per_task: 3 << 20,
    };

    /// A store with tasks 1 and 2 (result files belong to existing tasks).
    fn store() -> (tempfile::TempDir, Box<dyn Store>) {
        let dir = tempfile::tempdir().unwrap();
        let mut store = stask_storage::open(dir.path().join("stask.db").to_str().unwrap()).unwrap();
        let task = stask_storage::NewTask {
            limit: None,
            parent: None,
            worker: "w".into(),
            action: "run".into(),
            data: "{}".into(),
            priority: stask_storage::Priority::Normal,
            max_attempts: 1,
            started_by: None,
            run_after: 0,
            created_at: 0,
        };
        let line = stask_storage::LogLine::new("pending", 0, 0, 0, "", "created");
        assert_eq!(store.insert_tasks(&task, 2, &line).unwrap(), [1, 2]);
        (dir, store)
    }

    #[test]
    fn regular_files_are_kept_and_links_and_specials_are_named_and_skipped() {
        let (home, mut store) = store();
        let scratch = home.path().join("scratch");
        std::fs::create_dir_all(scratch.join("parts")).unwrap();
        std::fs::write(scratch.join("summary.json"), b"{}").unwrap();
        std::fs::write(scratch.join("parts/1.csv"), b"a,b\n").unwrap();
        // A link to the database and a hard link to a file outside the directory.
        std::os::unix::fs::symlink(home.path().join("stask.db"), scratch.join("db")).unwrap();
        std::os::unix::fs::symlink(home.path(), scratch.join("home")).unwrap();
        let outside = home.path().join("secret");
        std::fs::write(&outside, b"secret").unwrap();
        std::fs::hard_link(&outside, scratch.join("hard")).unwrap();
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            scratch.join("pipe"),
            Mode::RUSR | Mode::WUSR,
        )
        .unwrap();
        let got = ingest(&mut *store, 1, &scratch, LIMITS);
        assert_eq!(
            (got.files, got.bytes, got.error.clone()),
            (2, 6, None),
            "{got:?}"
        );
        let skipped = got.skipped.join("\n");
        for name in [
            "'db' is a symbolic link",
            "'home' is a symbolic link",
            "'hard' is a hard link",
            "'pipe' is a named pipe",
        ] {
            assert!(skipped.contains(name), "{name} missing in:\n{skipped}");
        }
        let names: Vec<String> = store
            .result_files(1)
            .unwrap()
            .into_iter()
            .map(|f| f.name)
            .collect();
        assert_eq!(names, ["parts/1.csv", "summary.json"]);
        assert!(!scratch.exists(), "the scratch directory is removed");
        assert!(outside.exists(), "a hard-linked file outside is untouched");
    }

    #[test]
    fn limits_stop_the_ingest_with_a_message_naming_the_setting() {
        let (home, mut store) = store();
        let scratch = home.path().join("scratch");
        std::fs::create_dir_all(&scratch).unwrap();
        std::fs::write(scratch.join("big"), vec![0u8; (1 << 20) + 1]).unwrap();
        let got = ingest(&mut *store, 1, &scratch, LIMITS);
        let e = got.error.unwrap().message().to_owned();
        assert!(
            e.contains("'big'") && e.contains("1 MB per file") && e.contains("max_result_file_mb"),
            "{e}"
        );
        assert!(store.result_files(1).unwrap().is_empty());

        std::fs::create_dir_all(&scratch).unwrap();
        for i in 0..4 {
            std::fs::write(scratch.join(format!("f{i}")), vec![1u8; 1 << 20]).unwrap();
        }
        let got = ingest(&mut *store, 2, &scratch, LIMITS);
        let e = got.error.unwrap().message().to_owned();
        assert!(
            e.contains("3 MB in all") && e.contains("max_result_task_mb"),
            "{e}"
        );
        assert_eq!(got.files, 3);
    }

    #[test]
    fn directories_nested_too_deep_are_skipped_not_walked() {
        let (home, mut store) = store();
        let scratch = home.path().join("scratch");
        let mut deep = scratch.clone();
        for _ in 0..(MAX_DEPTH + 5) {
            deep.push("d");
        }
        std::fs::create_dir_all(&deep).unwrap();
        std::fs::write(deep.join("x"), "x").unwrap();
        std::fs::write(scratch.join("top.txt"), "top").unwrap();
        let got = ingest(&mut *store, 1, &scratch, LIMITS);
        assert_eq!(got.files, 1, "{got:?}");
        assert!(
            got.skipped.iter().any(|s| s.contains("nested more than")),
            "{got:?}"
        );
    }

    #[test]
    fn a_missing_directory_stores_nothing() {
        let (home, mut store) = store();
        let got = ingest(&mut *store, 1, &home.path().join("none"), LIMITS);
        assert_eq!(got, Ingested::default());
    }
}
