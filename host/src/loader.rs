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
///
/// The version the library declares is checked before its root module is initialised
/// or compared: abi_stable accepts a 0.x library of a *newer* minor version than the
/// host's (it only refuses older minors), and would then compare layouts and call into
/// code built against an SDK whose 0.x minor may have changed anything.
pub fn load(path: &Path) -> Result<WorkerLibRef, LoadError> {
    let header = lib_header_from_path(path).map_err(|e| map_error(e, None))?;
    let declared = header.version_strings().version.as_str().to_owned();
    check_api_version(&declared)?;
    header
        .init_root_module::<WorkerLibRef>()
        .map_err(|e| map_error(e, Some(&declared)))
}

/// `major.minor` of a version string (`0.1.0` -> `(0, 1)`).
fn major_minor(version: &str) -> Option<(u64, u64)> {
    let mut it = version.trim().split('.');
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// Whether a library built against stask-plugin-api `theirs` may be loaded by this host:
/// semver compatibility with [`API_VERSION`], i.e. the same major and, for 0.x, the same
/// minor (cargo's rule: in 0.x every minor release may break the interface).
pub fn check_api_version(theirs: &str) -> Result<(), LoadError> {
    let ours = major_minor(API_VERSION).expect("the SDK's own version is major.minor.patch");
    let Some(lib) = major_minor(theirs) else {
        return Err(LoadError::new(
            "incompatible-version",
            format!(
                "the library declares an unreadable stask-plugin-api version '{}' (this host uses stask-plugin-api {API_VERSION}); rebuild the plugin against stask-plugin-api {}.{}.x",
                theirs.escape_debug(),
                ours.0,
                ours.1
            ),
        ));
    };
    if lib.0 == ours.0 && (ours.0 != 0 || lib.1 == ours.1) {
        return Ok(());
    }
    Err(LoadError::new(
        "incompatible-version",
        version_mismatch(theirs, lib, ours),
    ))
}

/// The message for a library of an incompatible stask-plugin-api version: both versions,
/// why they do not fit, and what to do about it (which depends on which side is newer).
fn version_mismatch(theirs: &str, lib: (u64, u64), ours: (u64, u64)) -> String {
    let why = if lib.0 == 0 && ours.0 == 0 {
        " (in 0.x releases every minor version may change the interface)"
    } else {
        ""
    };
    let rebuild = format!(
        "rebuild the plugin against stask-plugin-api {}.{}.x (set its stask-plugin-api dependency to \"{}.{}\")",
        ours.0, ours.1, ours.0, ours.1
    );
    let fix = if lib > ours {
        format!(
            "{rebuild}, or upgrade stask to a release built with stask-plugin-api {}.{}.x",
            lib.0, lib.1
        )
    } else {
        rebuild
    };
    format!(
        "built against stask-plugin-api {theirs}, but this host uses stask-plugin-api {API_VERSION} and loads only libraries built against {}.{}.x{why}; {fix}",
        ours.0, ours.1
    )
}

fn first_line(s: &str) -> &str {
    s.lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
}

/// Maps abi_stable's error to what an operator can act on; `declared` is the
/// stask-plugin-api version the library declares, once its header was read.
fn map_error(e: LibraryError, declared: Option<&str>) -> LoadError {
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
        // Only reached if abi_stable is stricter than `check_api_version`.
        LibraryError::IncompatibleVersionNumber {
            expected_version,
            actual_version,
            ..
        } => LoadError::new(
            "incompatible-version",
            version_mismatch(
                &actual_version.to_string(),
                (actual_version.major.into(), actual_version.minor.into()),
                (expected_version.major.into(), expected_version.minor.into()),
            ),
        ),
        LibraryError::AbiInstability(report) => {
            let report = report.to_string();
            let declared = declared.map_or_else(
                || "an unknown stask-plugin-api version".to_owned(),
                |v| format!("stask-plugin-api {v}"),
            );
            LoadError {
                kind: "abi-mismatch".into(),
                message: format!(
                    "its stask-plugin-api interface does not match this host's: the library declares {declared} and this host uses stask-plugin-api {API_VERSION} (abi_stable 0.11), yet the layouts differ, so the library was built against a modified or mismatched stask-plugin-api; rebuild it against an unmodified stask-plugin-api {API_VERSION}. Difference: {}",
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_same_0x_minor_or_1x_major_is_accepted() {
        let (major, minor) = major_minor(API_VERSION).unwrap();
        assert!(check_api_version(API_VERSION).is_ok());
        assert!(check_api_version(&format!("{major}.{minor}.999")).is_ok());
        for other in [
            format!("{major}.{}.0", minor + 1),
            format!("{}.0.0", major + 1),
            "x.y".to_owned(),
        ] {
            let e = check_api_version(&other).unwrap_err();
            assert_eq!(e.kind, "incompatible-version", "{other}");
        }
    }

    #[test]
    fn a_mismatch_names_both_versions_and_what_to_do() {
        // A 0.x library one minor ahead of a 0.x host.
        let m = version_mismatch("0.2.0", (0, 2), (0, 1));
        assert!(m.contains("0.2.0") && m.contains(API_VERSION), "{m}");
        assert!(m.contains("every minor version"), "{m}");
        assert!(
            m.contains("rebuild the plugin against stask-plugin-api 0.1.x"),
            "{m}"
        );
        assert!(m.contains("upgrade stask"), "a newer library: {m}");
        // An older one: only rebuilding helps.
        let m = version_mismatch("0.0.3", (0, 0), (0, 1));
        assert!(m.contains("0.0.3") && m.contains("rebuild"), "{m}");
        assert!(!m.contains("upgrade stask"), "{m}");
        // Across majors the 0.x remark does not apply.
        let m = version_mismatch("1.0.0", (1, 0), (0, 1));
        assert!(!m.contains("every minor version"), "{m}");
    }
}
