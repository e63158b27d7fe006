//! Discover, rescan and clean-orphaned: keeping the worker registry in step with the
//! plugins directory.
//!
//! The host never loads a library itself: manifests come from probe child processes
//! ([`crate::probe`]). Every operation reports per file what it did and why it skipped
//! anything, and carries on with the other files.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::{Map, Value};
use stask_plugin_api::manifest::host_setting;
use stask_plugin_api::{LibraryManifest, WorkerManifest};
use stask_storage::{
    LibraryFingerprint, RemovedWorker, Restoration, Store, WorkerMetadata, WorkerRecord,
};

use crate::fingerprint;
use crate::loader::LoadError;
use crate::probe::probe_library;
use crate::problem::Problem;
use crate::safety::check_library;

/// A file or worker that was not registered or updated, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    /// The library file.
    pub path: String,
    /// The worker concerned, when the problem is about one worker of the library.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identifier: Option<String>,
    /// Machine-readable kind.
    pub kind: String,
    /// What is wrong and what to do.
    pub reason: String,
}

/// A worker that a command registered or changed.
#[derive(Debug, Clone, Serialize)]
pub struct WorkerChange {
    /// Worker id.
    pub identifier: String,
    /// Title.
    pub title: String,
    /// Library file.
    pub library: String,
    /// Version now registered.
    pub version: String,
    /// Whether it is active.
    pub active: bool,
    /// Why stask made it inactive, when it did (see [`DiscoverReport::held`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inactive_reason: Option<String>,
}

/// A setting a worker registered again did not get back, and why.
#[derive(Debug, Clone, Serialize)]
pub struct DroppedSetting {
    /// The settings key.
    pub key: String,
    /// Why it was dropped.
    pub reason: String,
}

/// A worker registered again after it was removed (clean-orphaned), with what it took
/// back of what the operator had set.
#[derive(Debug, Clone, Serialize)]
pub struct Restored {
    /// The worker as registered now.
    #[serde(flatten)]
    pub worker: WorkerChange,
    /// Settings keys it got back.
    pub kept: Vec<String>,
    /// Settings the new manifest does not accept (the key is gone, or the value no
    /// longer fits); their defaults apply.
    pub dropped: Vec<DroppedSetting>,
    /// Its schedule, when it had one: `"paused"` or `"active"`, as it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// When it was removed (ms since epoch).
    pub removed_at: i64,
    /// What happened, in one sentence.
    pub message: String,
}

/// Result of `workers discover`.
#[derive(Debug, Default, Serialize)]
pub struct DiscoverReport {
    /// Newly registered workers.
    pub registered: Vec<WorkerChange>,
    /// Workers removed before (clean-orphaned) and registered again: their settings come
    /// back (checked against the new manifest), and their schedule as it was; they are
    /// active only when the same library (by hash) came back and they were active.
    pub restored: Vec<Restored>,
    /// Registered workers whose missing library was found at a new path (the same
    /// contents: nothing new runs).
    pub relocated: Vec<WorkerChange>,
    /// Registered workers whose missing library was replaced by another file exporting
    /// the same identifier with other contents: the registration follows the new file,
    /// but the worker is inactive (with its `inactive_reason`) until an operator
    /// activates it, so new code never starts running unseen.
    pub held: Vec<WorkerChange>,
    /// Files and workers that were not registered.
    pub skipped: Vec<Skipped>,
    /// Workers already registered from the same file.
    pub already_registered: usize,
}

/// Result of `workers rescan`.
#[derive(Debug, Default, Serialize)]
pub struct RescanReport {
    /// Workers whose metadata was refreshed from a changed library.
    pub updated: Vec<WorkerChange>,
    /// Libraries that did not change.
    pub unchanged: usize,
    /// Changed libraries that could not be read (old metadata kept).
    pub failed: Vec<Skipped>,
    /// Workers whose library file is gone (see clean-orphaned).
    pub missing: Vec<String>,
}

/// Result of `workers clean-orphaned`.
#[derive(Debug, Default, Serialize)]
pub struct CleanReport {
    /// Deleted workers with the library they pointed at. Their settings, state and
    /// schedule are remembered: a worker registered again under the same identifier gets
    /// them back (see [`DiscoverReport::restored`]).
    pub deleted: Vec<WorkerChange>,
}

fn skipped(path: &Path, identifier: Option<&str>, kind: &str, reason: String) -> Skipped {
    Skipped {
        path: path.display().to_string(),
        identifier: identifier.map(str::to_owned),
        kind: kind.to_owned(),
        reason,
    }
}

/// A registered library that is there but cannot be read: its workers are kept as
/// they were.
fn unreadable(path: &Path, e: &std::io::Error) -> Skipped {
    if e.kind() == std::io::ErrorKind::PermissionDenied {
        return skipped(
            path,
            None,
            "permission-denied",
            format!(
                "permission denied: the file is there but this user cannot read it ({e}); its workers were kept as they were. Give the user running stask read access to the file and search access to its directories"
            ),
        );
    }
    skipped(
        path,
        None,
        "unreadable",
        format!("cannot read it ({e}); its workers were kept as they were"),
    )
}

fn load_skip(path: &Path, e: LoadError) -> Skipped {
    if !e.detail.is_empty() {
        tracing::debug!(path = %path.display(), detail = %e.detail, "library load details");
    }
    skipped(path, None, &e.kind, e.message)
}

/// Library files under the plugins directory, sorted, with this platform's extension.
/// Symlinked directories are not followed.
pub fn scan(plugins_dir: &Path) -> Result<Vec<PathBuf>> {
    if !plugins_dir.is_dir() {
        return Err(Problem::conflict(
            "plugins_dir_missing",
            format!(
                "plugins directory '{}' does not exist; create it or configure another one",
                plugins_dir.display()
            ),
        )
        .hint("choose the directory with --plugins-dir, STASK_PLUGINS_DIR or plugins_dir in stask.toml")
        .into());
    }
    let mut out = Vec::new();
    for entry in walkdir::WalkDir::new(plugins_dir)
        .follow_links(false)
        .sort_by_file_name()
    {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!("skipping unreadable entry in plugins directory: {e}");
                continue;
            }
        };
        if entry.file_type().is_dir() {
            continue;
        }
        let is_lib = entry
            .path()
            .extension()
            .is_some_and(|x| x == std::env::consts::DLL_EXTENSION);
        if is_lib {
            out.push(entry.path().to_path_buf());
        }
    }
    Ok(out)
}

/// Applies the safety checks to scanned files and returns `(path, real file)` pairs. A
/// symlink to another scanned file is the same library, not a second copy: only the
/// real file is kept.
fn safe_libraries(
    plugins_root: &Path,
    files: Vec<PathBuf>,
    skipped_out: &mut Vec<Skipped>,
) -> Vec<(PathBuf, PathBuf)> {
    let mut safe: Vec<(PathBuf, PathBuf)> = Vec::new();
    for path in files {
        if path.to_str().is_none() {
            skipped_out.push(skipped(
                &path,
                None,
                "path-not-utf8",
                "its path is not valid UTF-8; library paths are stored as text, so it cannot be registered. Rename it (or its directory) to a valid UTF-8 name".into(),
            ));
            continue;
        }
        match check_library(plugins_root, &path) {
            Ok(real) => safe.push((path, real)),
            Err(reason) => skipped_out.push(skipped(&path, None, "unsafe", reason)),
        }
    }
    let real_paths: std::collections::HashSet<PathBuf> = safe
        .iter()
        .filter(|(p, _)| !p.is_symlink())
        .map(|(_, r)| r.clone())
        .collect();
    let mut seen = std::collections::HashSet::new();
    safe.retain(|(path, real)| {
        if path.is_symlink() && real_paths.contains(real) {
            return false;
        }
        seen.insert(real.clone())
    });
    safe
}

/// A library that passed the safety checks and was probed.
struct Probed {
    path: PathBuf,
    fingerprint: LibraryFingerprint,
    result: Result<LibraryManifest, LoadError>,
}

/// Hashes and probes libraries, a few at a time (each probe is its own process).
fn probe_many(exe: &Path, files: Vec<(PathBuf, PathBuf)>) -> Vec<Probed> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(1, 8);
    let queue = std::sync::Mutex::new(files.into_iter().enumerate().collect::<Vec<_>>());
    let results = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let Some((index, (path, real))) = queue.lock().unwrap().pop() else {
                    break;
                };
                let probed = probe_one(exe, path, &real);
                results.lock().unwrap().push((index, probed));
            });
        }
    });
    let mut results = results.into_inner().unwrap();
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, p)| p).collect()
}

fn probe_one(exe: &Path, path: PathBuf, real: &Path) -> Probed {
    let fp = fingerprint_of(&path, real);
    let result = match &fp {
        Ok(_) => probe_library(exe, real),
        Err(e) => Err(LoadError::new("unreadable", e.clone())),
    };
    Probed {
        fingerprint: fp.unwrap_or_else(|_| LibraryFingerprint {
            path: path.display().to_string(),
            size: 0,
            mtime_ns: 0,
            sha256: String::new(),
        }),
        path,
        result,
    }
}

fn fingerprint_of(path: &Path, real: &Path) -> Result<LibraryFingerprint, String> {
    let (size, mtime_ns) = fingerprint::stat(real).map_err(|e| format!("cannot read it: {e}"))?;
    let sha256 = fingerprint::sha256_file(real).map_err(|e| format!("cannot read it: {e}"))?;
    Ok(LibraryFingerprint {
        path: path.display().to_string(),
        size,
        mtime_ns,
        sha256,
    })
}

fn meta_of<'a>(m: &'a WorkerManifest, json: &'a str) -> WorkerMetadata<'a> {
    WorkerMetadata {
        scope: &m.scope,
        title: &m.title,
        description: &m.description,
        icon: &m.icon,
        version: &m.version,
        manifest: json,
    }
}

fn change(m: &WorkerManifest, library: &str, active: bool) -> WorkerChange {
    WorkerChange {
        identifier: m.identifier.clone(),
        title: m.title.clone(),
        library: library.to_owned(),
        version: m.version.clone(),
        active,
        inactive_reason: None,
    }
}

fn record_change(w: &WorkerRecord) -> WorkerChange {
    WorkerChange {
        identifier: w.identifier.clone(),
        title: w.title.clone(),
        library: w.library.path.clone(),
        version: w.version.clone(),
        active: w.active,
        inactive_reason: w.inactive_reason.clone(),
    }
}

/// Why a worker whose library file disappeared was moved onto a different library
/// inactive. It is shown to every API client that may read workers, so the files are
/// named relative to the plugins directory, never by their paths on the server.
fn replaced_reason(
    plugins_dir: &Path,
    existing: &WorkerRecord,
    new: &LibraryFingerprint,
) -> String {
    let name = |path: &str| {
        let path = Path::new(path);
        path.strip_prefix(plugins_dir)
            .ok()
            .or_else(|| path.file_name().map(Path::new))
            .unwrap_or(path)
            .display()
            .to_string()
    };
    let short = |sha: &str| sha.get(..12).unwrap_or(sha).to_owned();
    format!(
        "its library file '{}' (sha256 {}…) disappeared and '{}', a different library (sha256 {}…) exporting the same worker, took its place; the worker stays inactive until an operator has checked the new library and activates it",
        name(&existing.library.path),
        short(&existing.library.sha256),
        name(&new.path),
        short(&new.sha256)
    )
}

/// Settings remembered for a removed worker, checked against the manifest it comes back
/// with: returns what to store, the keys kept and the keys dropped with why. Keys the
/// manifest declares but the settings lack need nothing: their defaults apply at run
/// time. Secret values stay as stored (encrypted, bound to the worker and key, so they
/// open again under the same identifier).
pub fn restore_settings(
    manifest: &WorkerManifest,
    stored: &str,
) -> (Map<String, Value>, Vec<String>, Vec<DroppedSetting>) {
    let stored: Map<String, Value> = serde_json::from_str(stored).unwrap_or_default();
    let mut out = Map::new();
    let mut kept = Vec::new();
    let mut dropped = Vec::new();
    let mut drop_key = |key: &str, reason: String| {
        dropped.push(DroppedSetting {
            key: key.to_owned(),
            reason,
        })
    };
    for (key, value) in stored {
        let sealed = crate::secrets::is_sealed(&value);
        if let Some(host) = host_setting(&key) {
            if host.accepts(&value) {
                out.insert(key.clone(), value);
                kept.push(key);
            } else {
                drop_key(&key, format!("must be {} now", host.expected()));
            }
            continue;
        }
        let Some(spec) = manifest.settings.iter().find(|s| s.key == key) else {
            drop_key(&key, "the worker no longer has this setting".to_owned());
            continue;
        };
        let fits = if sealed {
            // Only a secret setting may hold an encrypted value; what it holds inside
            // is checked when it is opened for a run.
            spec.secret
        } else {
            spec.kind.accepts(&value)
        };
        if fits {
            out.insert(key.clone(), value);
            kept.push(key);
        } else if sealed {
            drop_key(
                &key,
                "it was secret and no longer is; set it again".to_owned(),
            );
        } else {
            drop_key(&key, format!("must be {} now", spec.kind.with_article()));
        }
    }
    (out, kept, dropped)
}

/// Why a worker registered again stays inactive although it was active when removed:
/// its library is another build. Named like [`replaced_reason`], relative to the
/// plugins directory.
fn returned_reason(
    plugins_dir: &Path,
    removed: &RemovedWorker,
    new: &LibraryFingerprint,
) -> String {
    let path = Path::new(&new.path);
    let name = path
        .strip_prefix(plugins_dir)
        .ok()
        .or_else(|| path.file_name().map(Path::new))
        .unwrap_or(path)
        .display()
        .to_string();
    let short = |sha: &str| sha.get(..12).unwrap_or(sha).to_owned();
    format!(
        "it was removed while its library was gone and came back from '{}' (sha256 {}…), a different library than the one it was removed with (sha256 {}…); it kept its settings but stays inactive until an operator has checked the new library and activates it",
        name,
        short(&new.sha256),
        short(&removed.library_sha256)
    )
}

/// The report line of a restored worker.
fn restored_message(id: &str, kept: &[String], dropped: &[DroppedSetting]) -> String {
    let mut message = format!(
        "worker {id} registered again with its earlier settings ({} kept, {} dropped",
        kept.len(),
        dropped.len()
    );
    if !dropped.is_empty() {
        let list: Vec<String> = dropped
            .iter()
            .map(|d| format!("{} ({})", d.key, d.reason))
            .collect();
        message.push_str(": ");
        message.push_str(&list.join(", "));
    }
    message.push(')');
    message
}

/// Registers workers from libraries in the plugins directory that are not known yet.
pub fn discover(
    store: &mut dyn Store,
    exe: &Path,
    plugins_dir: &Path,
    activate: bool,
) -> Result<DiscoverReport> {
    let mut report = DiscoverReport::default();
    // Library paths are stored as text: a path that is not UTF-8 would be stored
    // mangled, and every task of its workers would fail to find the file.
    if plugins_dir.to_str().is_none() {
        return Err(Problem::conflict(
            "plugins_dir_not_utf8",
            format!(
                "the plugins directory path '{}' is not valid UTF-8; library paths are stored as text, so no library under it can be registered. Use a plugins directory (and home) whose path is valid UTF-8",
                plugins_dir.display()
            ),
        )
        .hint("choose the directory with --plugins-dir, STASK_PLUGINS_DIR or plugins_dir in stask.toml, or move the home with --home")
        .into());
    }
    // Listed first: a missing directory is reported as such, not as a failed lookup.
    let files = scan(plugins_dir)?;
    let plugins_root = std::fs::canonicalize(plugins_dir)
        .with_context(|| format!("cannot resolve '{}'", plugins_dir.display()))?;
    let known = store.list_workers()?;
    let by_path: HashMap<&str, Vec<&WorkerRecord>> =
        known.iter().fold(HashMap::new(), |mut m, w| {
            m.entry(w.library.path.as_str()).or_default().push(w);
            m
        });
    let by_id: HashMap<&str, &WorkerRecord> =
        known.iter().map(|w| (w.identifier.as_str(), w)).collect();

    let mut to_probe = Vec::new();
    for (path, real) in safe_libraries(&plugins_root, files, &mut report.skipped) {
        // A known library whose size and mtime are unchanged needs no probe.
        let key = path.display().to_string();
        if let Some(ws) = by_path.get(key.as_str()) {
            if let Ok((size, mtime)) = fingerprint::stat(&real) {
                if ws
                    .iter()
                    .all(|w| w.library.size == size && w.library.mtime_ns == mtime)
                {
                    report.already_registered += ws.len();
                    continue;
                }
            }
        }
        to_probe.push((path, real));
    }

    // identifier -> the libraries (in scan order) that claim it among new workers.
    let mut claims: BTreeMap<String, Vec<(usize, WorkerManifest)>> = BTreeMap::new();
    let probed = probe_many(exe, to_probe);
    for (index, p) in probed.iter().enumerate() {
        let manifest = match &p.result {
            Ok(m) => m,
            Err(e) => {
                report.skipped.push(load_skip(&p.path, e.clone()));
                continue;
            }
        };
        for w in &manifest.workers {
            match by_id.get(w.identifier.as_str()) {
                Some(existing) if existing.library.path == p.fingerprint.path => {
                    report.already_registered += 1;
                }
                Some(existing) if Path::new(&existing.library.path).exists() => {
                    report.skipped.push(skipped(
                        &p.path,
                        Some(&w.identifier),
                        "duplicate-identifier",
                        format!(
                            "worker '{}' is already registered from '{}'; both files claim it, so this one is ignored. Remove one of them or give one worker another identifier",
                            w.identifier, existing.library.path
                        ),
                    ));
                }
                _ => claims
                    .entry(w.identifier.clone())
                    .or_default()
                    .push((index, w.clone())),
            }
        }
    }

    let mut inserts = Vec::new();
    for (identifier, claimants) in claims {
        if claimants.len() > 1 {
            let files: Vec<String> = claimants
                .iter()
                .map(|(i, _)| probed[*i].fingerprint.path.clone())
                .collect();
            for (i, _) in &claimants {
                report.skipped.push(skipped(
                    &probed[*i].path,
                    Some(&identifier),
                    "duplicate-identifier",
                    format!(
                        "worker '{identifier}' is claimed by several files ({}); none was registered. Remove all but one of them",
                        files.join(", ")
                    ),
                ));
            }
            continue;
        }
        let (i, manifest) = claimants.into_iter().next().expect("one claimant");
        let json = serde_json::to_string(&manifest)?;
        let fp = probed[i].fingerprint.clone();
        if let Some(existing) = by_id.get(identifier.as_str()) {
            // Registered before, but its file is gone.
            if existing.library.sha256 == fp.sha256 {
                // The same library moved: the code that runs does not change.
                store.update_worker_library(&identifier, &meta_of(&manifest, &json), &fp)?;
                report
                    .relocated
                    .push(change(&manifest, &fp.path, existing.active));
            } else {
                // Another library took its place: whoever put it there, no operator
                // has said it may run, so it waits for one to activate it.
                let reason = replaced_reason(plugins_dir, existing, &fp);
                store.update_worker_library_held(
                    &identifier,
                    &meta_of(&manifest, &json),
                    &fp,
                    &reason,
                )?;
                let mut held = change(&manifest, &fp.path, false);
                held.inactive_reason = Some(reason);
                report.held.push(held);
            }
        } else {
            report
                .registered
                .push(change(&manifest, &fp.path, activate));
            inserts.push((identifier, manifest, json, fp));
        }
    }
    let rows: Vec<_> = inserts
        .iter()
        .map(|(id, m, json, fp)| (id.clone(), meta_of(m, json), fp.clone(), activate))
        .collect();
    let manifests: HashMap<&str, &WorkerManifest> = inserts
        .iter()
        .map(|(id, m, _, _)| (id.as_str(), m))
        .collect();
    // Decided inside the registering transaction, on what the store remembers then.
    let mut restored = Vec::new();
    let mut restore = |removed: &RemovedWorker, lib: &LibraryFingerprint| {
        let mut back = Restoration::as_removed(removed, lib);
        let Some(manifest) = manifests.get(removed.identifier.as_str()) else {
            return back;
        };
        let (settings, kept, dropped) = restore_settings(manifest, &removed.settings);
        back.settings = Value::Object(settings).to_string();
        if removed.active && !back.active {
            back.inactive_reason = Some(returned_reason(plugins_dir, removed, lib));
        }
        let mut worker = change(manifest, &lib.path, back.active);
        worker.inactive_reason = back.inactive_reason.clone();
        restored.push(Restored {
            message: restored_message(&removed.identifier, &kept, &dropped),
            worker,
            kept,
            dropped,
            schedule: removed
                .schedule
                .as_ref()
                .map(|s| if s.paused { "paused" } else { "active" }.to_owned()),
            removed_at: removed.removed_at,
        });
        back
    };
    store.register_workers(&rows, &mut restore)?;
    let again: HashSet<String> = restored
        .iter()
        .map(|r| r.worker.identifier.clone())
        .collect();
    report.registered.retain(|w| !again.contains(&w.identifier));
    report.restored = restored;
    // Every worker, not only those changed: a store an older stask wrote has limits in
    // its manifests and none in the store yet. A read per worker when nothing changed.
    crate::limits::sync_all(store)?;
    Ok(report)
}

/// Refreshes registered workers whose library changed on disk.
pub fn rescan(store: &mut dyn Store, exe: &Path, plugins_dir: &Path) -> Result<RescanReport> {
    let mut report = RescanReport::default();
    let plugins_root = std::fs::canonicalize(plugins_dir).ok();
    let known = store.list_workers()?;
    let mut by_path: BTreeMap<&str, Vec<&WorkerRecord>> = BTreeMap::new();
    for w in &known {
        by_path.entry(w.library.path.as_str()).or_default().push(w);
    }
    let mut to_probe = Vec::new();
    for (path, workers) in &by_path {
        let path = Path::new(path);
        // Missing (nothing there, or a link to nothing) is told apart from present but
        // unreadable: only a missing file's workers are for clean-orphaned.
        if let Err(e) = std::fs::metadata(path) {
            if e.kind() == std::io::ErrorKind::NotFound {
                report
                    .missing
                    .extend(workers.iter().map(|w| w.identifier.clone()));
            } else {
                report.failed.push(unreadable(path, &e));
            }
            continue;
        }
        let real = match &plugins_root {
            Some(root) => match check_library(root, path) {
                Ok(r) => r,
                Err(reason) => {
                    report.failed.push(skipped(path, None, "unsafe", reason));
                    continue;
                }
            },
            None => path.to_path_buf(),
        };
        let (size, mtime) = match fingerprint::stat(&real) {
            Ok(stat) => stat,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                report
                    .missing
                    .extend(workers.iter().map(|w| w.identifier.clone()));
                continue;
            }
            Err(e) => {
                report.failed.push(unreadable(path, &e));
                continue;
            }
        };
        let old = &workers[0].library;
        if old.size == size && old.mtime_ns == mtime {
            // Unchanged, but runners must still be able to read it (an open, no read).
            match std::fs::File::open(&real) {
                Ok(_) => report.unchanged += 1,
                Err(e) => report.failed.push(unreadable(path, &e)),
            }
            continue;
        }
        let sha = match fingerprint::sha256_file(&real) {
            Ok(sha) => sha,
            Err(e) => {
                report.failed.push(unreadable(path, &e));
                continue;
            }
        };
        if sha == old.sha256 {
            // Touched but identical: remember the new mtime so we skip hashing next time.
            store.touch_library(&old.path, size, mtime)?;
            report.unchanged += 1;
            continue;
        }
        to_probe.push((path.to_path_buf(), real));
    }
    for p in probe_many(exe, to_probe) {
        let manifest = match p.result {
            Ok(m) => m,
            Err(e) => {
                report.failed.push(load_skip(&p.path, e));
                continue;
            }
        };
        let key = p.fingerprint.path.as_str();
        for w in by_path.get(key).into_iter().flatten() {
            match manifest.workers.iter().find(|m| m.identifier == w.identifier) {
                Some(m) => {
                    let json = serde_json::to_string(m)?;
                    store.update_worker_library(&w.identifier, &meta_of(m, &json), &p.fingerprint)?;
                    // The new manifest may declare other limits.
                    crate::limits::sync_workers(store, [w.identifier.as_str()])?;
                    report.updated.push(change(m, key, w.active));
                }
                None => report.failed.push(skipped(
                    &p.path,
                    Some(&w.identifier),
                    "worker-removed",
                    format!(
                        "the new version of this library no longer exports worker '{}'; its registration was left as it was (remove it with clean-orphaned after deleting the file, or restore the worker)",
                        w.identifier
                    ),
                )),
            }
        }
    }
    Ok(report)
}

/// Removes workers whose library file no longer exists. Decided from the filesystem
/// only; task history is kept.
pub fn clean_orphaned(store: &mut dyn Store) -> Result<CleanReport> {
    let mut report = CleanReport::default();
    for w in store.list_workers()? {
        let gone = matches!(
            std::fs::symlink_metadata(&w.library.path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound
        ) || (Path::new(&w.library.path).is_symlink()
            && !Path::new(&w.library.path).exists());
        if gone && store.delete_worker(&w.identifier)? {
            report.deleted.push(record_change(&w));
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use stask_plugin_api::{ActionSpec, SettingSpec};

    use super::*;

    #[test]
    fn restored_settings_keep_what_the_new_manifest_accepts_and_say_why_others_go() {
        let m = WorkerManifest::new("w", "W")
            .action(ActionSpec::new("run", "Run"))
            .setting(SettingSpec::string("greeting", "Greeting"))
            .setting(SettingSpec::integer("batch", "Batch").default(5))
            .setting(SettingSpec::string("token", "Token").secret())
            .setting(SettingSpec::string("plain", "Plain"));
        let sealed = json!({ crate::secrets::ENVELOPE: "v1:k:abc" });
        assert!(crate::secrets::is_sealed(&sealed));
        let stored = json!({
            "token": sealed,
            "plain": sealed,
            "greeting": "hi",
            "batch": "ten",
            "colour": "red",
            "timeout_secs": 30,
            "max_open_files": "many",
        });
        let (out, mut kept, dropped) = restore_settings(&m, &stored.to_string());
        kept.sort();
        assert_eq!(kept, ["greeting", "timeout_secs", "token"]);
        assert_eq!(
            Value::Object(out),
            json!({ "greeting": "hi", "timeout_secs": 30, "token": sealed }),
            "a secret stays encrypted as stored"
        );
        let mut why: Vec<(String, String)> =
            dropped.into_iter().map(|d| (d.key, d.reason)).collect();
        why.sort();
        assert_eq!(why[0].0, "batch");
        assert!(why[0].1.contains("an integer"), "{why:?}");
        assert_eq!(why[1].0, "colour");
        assert!(why[1].1.contains("no longer has"), "{why:?}");
        assert_eq!(why[2].0, "max_open_files");
        assert_eq!(why[3].0, "plain");
        assert!(why[3].1.contains("no longer is"), "{why:?}");
        assert_eq!(
            restored_message("w", &["greeting".into()], &[]),
            "worker w registered again with its earlier settings (1 kept, 0 dropped)"
        );
        let message = restored_message(
            "w",
            &[],
            &[DroppedSetting {
                key: "colour".into(),
                reason: "gone".into(),
            }],
        );
        assert!(
            message.ends_with("(0 kept, 1 dropped: colour (gone))"),
            "{message}"
        );
    }
}
