//! Reading a library's manifest in a short-lived child process.
//!
//! `stask __probe PATH` loads the library, prints one JSON line with the manifest or a
//! [`LoadError`], and exits. The parent side ([`probe_library`]) spawns it with a time
//! limit, so a library that crashes or hangs while loading fails only the probe, and a
//! replaced file is always read fresh (a process never sees an earlier mapping).

use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use stask_plugin_api::LibraryManifest;

use crate::loader::{self, LoadError};
use crate::protocol_fd;
use crate::signals::describe_exit;

/// How long a library may take to load and describe itself.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum ProbeReply {
    Ok(LibraryManifest),
    Error(LoadError),
}

/// Child side: load `path`, write the reply to the protocol stream, return the exit code.
pub fn run_child(path: &Path) -> i32 {
    // Plugin code may print; keep our reply on a private descriptor.
    let mut out = protocol_fd::take_stdout();
    let reply = match describe(path) {
        Ok(m) => ProbeReply::Ok(m),
        Err(e) => ProbeReply::Error(e),
    };
    let line = serde_json::to_string(&reply).expect("probe reply serializes");
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
    0
}

fn describe(path: &Path) -> Result<LibraryManifest, LoadError> {
    let lib = loader::load(path)?;
    let json = match (lib.manifest())() {
        abi_stable::std_types::RResult::ROk(s) => s.into_string(),
        abi_stable::std_types::RResult::RErr(e) => {
            return Err(LoadError::new("invalid-manifest", e.into_string()))
        }
    };
    let manifest: LibraryManifest = serde_json::from_str(&json).map_err(|e| {
        LoadError::new(
            "invalid-manifest",
            format!("the library's manifest is not valid: {e}"),
        )
    })?;
    // The manifest's own claim, checked like the library header's.
    loader::check_api_version(&manifest.api_version)?;
    manifest
        .validate()
        .map_err(|e| LoadError::new("invalid-manifest", e))?;
    Ok(manifest)
}

/// Parent side: probe `library` by running `exe __probe library`.
pub fn probe_library(exe: &Path, library: &Path) -> Result<LibraryManifest, LoadError> {
    let mut command = Command::new(exe);
    command
        .arg("__probe")
        .arg(library)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_remove("RUST_LOG");
    // Tracked, so an engine in this process never takes the probe for a stray.
    let (mut child, _tracked) = crate::process_tree::spawn_tracked(&mut command).map_err(|e| {
        LoadError::new(
            "probe-failed",
            format!("could not start the probe process: {e}"),
        )
    })?;
    let mut stdout = child.stdout.take().expect("piped stdout");
    let stderr = child.stderr.take().expect("piped stderr");
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.take(64 * 1024).read_to_string(&mut s);
        s
    });
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() > PROBE_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(LoadError::new(
                    "timeout",
                    format!(
                        "the library did not finish loading within {} s (it hangs while loading)",
                        PROBE_TIMEOUT.as_secs()
                    ),
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(2)),
            Err(e) => {
                return Err(LoadError::new(
                    "probe-failed",
                    format!("waiting for the probe failed: {e}"),
                ))
            }
        }
    };
    let stdout = out_reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    if let Some(line) = stdout.lines().rev().find(|l| !l.trim().is_empty()) {
        if let Ok(reply) = serde_json::from_str::<ProbeReply>(line) {
            return match reply {
                ProbeReply::Ok(m) => Ok(m),
                ProbeReply::Error(e) => Err(e),
            };
        }
    }
    let mut err = LoadError::new(
        "crashed",
        format!(
            "the library crashed while loading ({})",
            describe_exit(status.code(), status.signal())
        ),
    );
    err.detail = stderr;
    Err(err)
}
