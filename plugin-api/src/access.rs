//! What a worker's runs may touch: the sandbox declarations of a manifest.
//!
//! The host runs every task in a runner process confined by the kernel (Landlock on
//! Linux). Beyond what every run may do (load its library and the system's shared
//! libraries, write its result directory and a private temporary directory), a run may
//! only touch what its worker declares here:
//!
//! * **reads**: files or directories (with everything below) it may read;
//! * **writes**: files or directories it may create, change and delete in (reading
//!   included);
//! * **connects**: outbound TCP connections, as `host:port`.
//!
//! A path is absolute or relative to the stask home; `${key}` stands for the value of
//! the worker's string setting `key` (an import directory an operator chooses, say).
//! Operators see the declarations in `stask workers show` and on the Workers page and
//! can replace them with the `sandbox_reads`, `sandbox_writes` and `sandbox_connects`
//! settings (comma-separated).
//!
//! ```
//! use stask_plugin_api::prelude::*;
//!
//! let manifest = WorkerManifest::new("product", "Product import")
//!     .action(ActionSpec::new("import", "Import"))
//!     .setting(SettingSpec::string("import_dir", "Import directory").default("imports"))
//!     .reads("${import_dir}")
//!     .writes("exports/products")
//!     .connects("shop.example.com:443");
//! assert_eq!(manifest.validate(), Ok(()));
//! assert_eq!(manifest.access.reads, ["${import_dir}"]);
//! ```

use serde::{Deserialize, Serialize};

use crate::manifest::{SettingKind, SettingSpec, WorkerManifest};

/// Settings key replacing a worker's declared reads (comma-separated paths).
pub const SANDBOX_READS: &str = "sandbox_reads";

/// Settings key replacing a worker's declared writes (comma-separated paths).
pub const SANDBOX_WRITES: &str = "sandbox_writes";

/// Settings key replacing a worker's declared connections (comma-separated
/// `host:port`).
pub const SANDBOX_CONNECTS: &str = "sandbox_connects";

/// Longest path or address accepted in a declaration.
const MAX_ENTRY: usize = 1024;

/// What a worker's runs may touch beyond what every run may.
///
/// ```
/// use stask_plugin_api::access::AccessSpec;
///
/// let nothing = AccessSpec::default();
/// assert!(nothing.is_empty());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessSpec {
    /// Paths read: absolute, relative to the home, or `${setting}`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reads: Vec<String>,
    /// Paths written (and read), in the same forms.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub writes: Vec<String>,
    /// Outbound TCP connections as `host:port` (`*:443` for any host on a port).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub connects: Vec<String>,
}

impl AccessSpec {
    /// Whether it declares nothing (a worker that only computes and writes results).
    pub fn is_empty(&self) -> bool {
        self.reads.is_empty() && self.writes.is_empty() && self.connects.is_empty()
    }

    /// Checks every entry; `settings` is the worker's schema, for `${key}` entries.
    ///
    /// ```
    /// use stask_plugin_api::access::AccessSpec;
    ///
    /// let bad = AccessSpec { connects: vec!["example.com".into()], ..AccessSpec::default() };
    /// assert!(bad.validate(&[]).unwrap_err().contains("host:port"));
    /// ```
    pub fn validate(&self, settings: &[SettingSpec]) -> Result<(), String> {
        for path in self.reads.iter().chain(&self.writes) {
            check_path(path, settings)?;
        }
        for address in &self.connects {
            check_address(address)?;
        }
        Ok(())
    }
}

/// Checks one declared path: not empty, no control characters, and a `${key}` form
/// names a string setting of the worker.
pub fn check_path(path: &str, settings: &[SettingSpec]) -> Result<(), String> {
    check_entry(path)?;
    if let Some(key) = setting_reference(path) {
        let is_string = settings
            .iter()
            .any(|s| s.key == key && s.kind == SettingKind::String);
        if !is_string {
            return Err(format!(
                "access path '{path}' refers to '{key}', which is not a string setting of the worker"
            ));
        }
    } else if path.contains("${") {
        return Err(format!(
            "access path '{path}' must be a whole `${{setting}}` reference or a plain path"
        ));
    }
    Ok(())
}

/// The setting a `${key}` path stands for.
///
/// ```
/// use stask_plugin_api::access::setting_reference;
///
/// assert_eq!(setting_reference("${import_dir}"), Some("import_dir"));
/// assert_eq!(setting_reference("imports"), None);
/// ```
pub fn setting_reference(path: &str) -> Option<&str> {
    path.strip_prefix("${")?.strip_suffix('}')
}

/// Checks one `host:port` entry and returns its port.
///
/// ```
/// use stask_plugin_api::access::check_address;
///
/// assert_eq!(check_address("api.example.com:443"), Ok(443));
/// assert_eq!(check_address("[::1]:8080"), Ok(8080));
/// assert!(check_address("api.example.com").is_err());
/// assert!(check_address("api.example.com:0").is_err());
/// ```
pub fn check_address(address: &str) -> Result<u16, String> {
    check_entry(address)?;
    let bad = || {
        format!("access address '{address}' must be host:port with a port from 1 to 65535 (e.g. api.example.com:443, or *:443 for any host)")
    };
    let (host, port) = address.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    if host.is_empty() || port == 0 {
        return Err(bad());
    }
    Ok(port)
}

fn check_entry(entry: &str) -> Result<(), String> {
    if entry.trim().is_empty() || entry.len() > MAX_ENTRY {
        return Err(format!(
            "an access entry must be 1 to {MAX_ENTRY} characters and not blank"
        ));
    }
    if entry.chars().any(char::is_control) || entry.contains(',') {
        return Err(format!(
            "access entry '{}' contains a control character or a comma",
            entry.escape_default()
        ));
    }
    Ok(())
}

/// Splits an operator's comma-separated list (a `sandbox_*` setting) into entries; an
/// empty text is an empty list (no access of that kind).
///
/// ```
/// use stask_plugin_api::access::split_list;
///
/// assert_eq!(split_list(" imports , /srv/data "), ["imports", "/srv/data"]);
/// assert!(split_list("").is_empty());
/// ```
pub fn split_list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(str::to_owned)
        .collect()
}

impl WorkerManifest {
    /// Declares a path the worker's runs read (absolute, relative to the home, or
    /// `${setting}`).
    ///
    /// ```
    /// # use stask_plugin_api::prelude::*;
    /// let m = WorkerManifest::new("w", "W").reads("imports");
    /// assert_eq!(m.access.reads, ["imports"]);
    /// ```
    pub fn reads(mut self, path: &str) -> Self {
        self.access.reads.push(path.to_owned());
        self
    }

    /// Declares a path the worker's runs write in (and read).
    ///
    /// ```
    /// # use stask_plugin_api::prelude::*;
    /// let m = WorkerManifest::new("w", "W").writes("exports");
    /// assert_eq!(m.access.writes, ["exports"]);
    /// ```
    pub fn writes(mut self, path: &str) -> Self {
        self.access.writes.push(path.to_owned());
        self
    }

    /// Declares an outbound TCP connection, `host:port`.
    ///
    /// ```
    /// # use stask_plugin_api::prelude::*;
    /// let m = WorkerManifest::new("w", "W").connects("api.example.com:443");
    /// assert_eq!(m.access.connects, ["api.example.com:443"]);
    /// ```
    pub fn connects(mut self, address: &str) -> Self {
        self.access.connects.push(address.to_owned());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setting_references_must_name_a_string_setting() {
        let settings = [
            SettingSpec::string("dir", "Dir"),
            SettingSpec::integer("n", "N"),
        ];
        assert_eq!(check_path("${dir}", &settings), Ok(()));
        assert!(check_path("${n}", &settings)
            .unwrap_err()
            .contains("not a string"));
        assert!(check_path("${nope}", &settings).is_err());
        assert!(check_path("a/${dir}", &settings)
            .unwrap_err()
            .contains("whole"));
        assert!(check_path("a\u{1b}b", &settings).is_err());
        assert!(check_path(" ", &settings).is_err());
    }
}
