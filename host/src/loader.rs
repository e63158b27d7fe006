//! Loading a plugin library in-process. Only child processes (probe, runner) call this:
//! the long-lived host never maps plugin code (see ARCHITECTURE.md).

use std::path::Path;

use abi_stable::library::{lib_header_from_path, LibraryError, RootModule};
use serde::{Deserialize, Serialize};
use stask_plugin_api::abi::{WorkerLibRef, API_VERSION};

/// Why a library could not be loaded, in words an operator can act on.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LoadError {
    /// Stable machine-readable kind (`not-a-library`, `not-a-worker`,
    /// `incompatible-version`, `abi-mismatch`, `incompatible-abi-stable`, `init-failed`,
    /// `invalid-manifest`, `crashed`, `timeout`).
    pub kind: String,
    /// One-line explanation.
    pub message: String,
    /// Longer diagnostics for the log (e.g. abi_stable's layout report).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

impl LoadError {
    /// A new error.
    pub fn new(kind: &str, message: impl Into<String>) -> Self {
        LoadError {
            kind: kind.to_owned(),
            message: message.into(),
            detail: String::new(),
        }
    }
}

/// Loads the library at `path` and returns its root module.
pub fn load(path: &Path) -> Result<WorkerLibRef, LoadError> {
    let header = lib_header_from_path(path).map_err(map_error)?;
    header.init_root_module::<WorkerLibRef>().map_err(map_error)
}

fn first_line(s: &str) -> &str {
    s.lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
}

fn map_error(e: LibraryError) -> LoadError {
    match e {
        LibraryError::OpenError { err, .. } => LoadError::new(
            "not-a-library",
            format!(
                "not a loadable library for this platform ({}); is the file complete and built for this machine?",
                strip_path_prefix(&err.to_string())
            ),
        ),
        LibraryError::GetSymbolError { .. } => LoadError::new(
            "not-a-worker",
            "not an stask worker: the library does not export an stask root module (build it with stask_plugin_api::export_workers!)",
        ),
        LibraryError::IncompatibleVersionNumber {
            expected_version,
            actual_version,
            ..
        } => LoadError::new(
            "incompatible-version",
            format!(
                "built against stask-plugin-api {actual_version}, but this host supports stask-plugin-api {}.{}.x ({API_VERSION}); rebuild the plugin against a compatible stask-plugin-api",
                expected_version.major, expected_version.minor
            ),
        ),
        LibraryError::AbiInstability(report) => {
            let report = report.to_string();
            LoadError {
                kind: "abi-mismatch".into(),
                message: format!(
                    "its stask-plugin-api interface does not match this host's (stask-plugin-api {API_VERSION}, abi_stable 0.11): the library was built against a modified or mismatched plugin-api; rebuild it against stask-plugin-api {API_VERSION}. Difference: {}",
                    layout_difference(&report)
                ),
                detail: report,
            }
        }
        LibraryError::InvalidAbiHeader(header) => LoadError::new(
            "incompatible-abi-stable",
            format!(
                "built with an incompatible abi_stable (library header {header:?}); this host uses abi_stable 0.11 (stask-plugin-api {API_VERSION})"
            ),
        ),
        LibraryError::RootModule { err, .. } => LoadError::new(
            "init-failed",
            format!("the library's root module failed to initialise: {err}"),
        ),
        other => LoadError {
            kind: "load-failed".into(),
            message: format!("the library could not be loaded: {}", first_line(&other.to_string())),
            detail: other.to_string(),
        },
    }
}

/// The gist of abi_stable's layout report (a few hundred lines): its `Error:` entries
/// with the expected and found field, e.g. `unexpected field (expected __returns:
/// RResult, found param_5: u32)`.
fn layout_difference(report: &str) -> String {
    let lines: Vec<&str> = report.lines().map(str::trim).collect();
    let mut found = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(kind) = line.strip_prefix("Error:") else {
            continue;
        };
        let field = |label: &str| -> Option<String> {
            let start = lines[i..].iter().position(|l| *l == label)? + i;
            let name = lines[start..]
                .iter()
                .find_map(|l| l.strip_prefix("field_name:"))?;
            let ty = lines[start..]
                .iter()
                .find_map(|l| l.strip_prefix("type:"))?;
            Some(format!("{}: {ty}", name.trim_matches(',')))
        };
        found.push(match (field("Expected:"), field("Found:")) {
            (Some(e), Some(f)) => format!("{kind} (expected {e}, found {f})"),
            _ => kind.to_owned(),
        });
    }
    if found.is_empty() {
        return first_line(report).to_owned();
    }
    // The last entry is the most specific one; earlier ones are its enclosing items.
    found.pop().unwrap_or_default()
}

/// libloading's messages repeat the full path, which the caller already prints.
fn strip_path_prefix(msg: &str) -> String {
    match msg.rfind(": ") {
        Some(i) => msg[i + 2..].to_owned(),
        None => msg.to_owned(),
    }
}

/// The stask root module's name, for messages.
pub fn root_module_name() -> &'static str {
    WorkerLibRef::NAME
}
