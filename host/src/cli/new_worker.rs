//! `stask new-worker NAME [--dir DIR] [--sdk PATH]`: scaffolds a worker crate that
//! builds, passes its tests and is discovered and run by stask without edits.
//!
//! The crate depends on the SDK (`stask-plugin-api`) by path, since the SDK is not on
//! crates.io: `--sdk`, else the `plugin-api/` of the checkout this binary was built
//! from, if it is still there. The SDK must be one this host loads libraries of (same
//! 0.x minor). When the SDK sits in a checkout with a `Cargo.lock`, that lock file is
//! copied too, so the worker builds with the dependency versions stask was tested with
//! (and can reuse their compiled artifacts, see the guide's `CARGO_TARGET_DIR` tip).
//!
//! Nothing is ever overwritten: the directory must be new or empty, files are created
//! with `O_EXCL`, and on a failure what this command created is removed again. It needs
//! no stask home.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use serde::Serialize;
use stask_plugin_api::abi::API_VERSION;

use super::print_json;
use crate::problem::shown_input;

const CARGO_TOML: &str = include_str!("new_worker/Cargo.toml.in");
const LIB_RS: &str = include_str!("new_worker/lib.rs.in");
const README_MD: &str = include_str!("new_worker/README.md.in");
const GITIGNORE: &str = include_str!("new_worker/gitignore.in");

/// Where the SDK is when this binary was built from a checkout.
const BUILT_SDK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../plugin-api");

/// Names Cargo refuses or that would shadow what the generated code uses: Rust
/// keywords (strict and reserved), the standard crates, Cargo's output directories,
/// the SDK itself.
#[rustfmt::skip]
const RESERVED_NAMES: &[&str] = &[
    "abstract", "as", "async", "await", "become", "box", "break", "const", "continue",
    "crate", "do", "dyn", "else", "enum", "extern", "false", "final", "fn", "for",
    "gen", "if", "impl", "in", "let", "loop", "macro", "match", "mod", "move", "mut",
    "override", "priv", "pub", "ref", "return", "self", "static", "struct", "super",
    "trait", "true", "try", "type", "typeof", "unsafe", "unsized", "use", "virtual",
    "where", "while", "yield", "std", "core", "alloc", "proc_macro", "proc-macro",
    "test", "build", "deps", "examples", "incremental", "stask-plugin-api",
    "stask_plugin_api",
];

/// Type names the generated `src/lib.rs` already uses (its imports and Rust's prelude):
/// a worker struct with one of these names would not compile.
#[rustfmt::skip]
const TAKEN_TYPE_NAMES: &[&str] = &[
    "Worker", "Context", "Input", "Error", "Level", "Value", "WorkerManifest",
    "ActionSpec", "SettingSpec", "TestRun", "String", "Vec", "Option", "Result", "Box",
    "Some", "None", "Ok", "Err", "Send", "Sync", "Sized", "Copy", "Clone", "Default",
    "Drop", "Fn", "FnMut", "FnOnce", "Iterator", "IntoIterator", "Extend", "ToString",
    "ToOwned", "Into", "From", "AsRef", "AsMut", "PartialEq", "Eq", "PartialOrd", "Ord",
    "Unpin",
];

/// Arguments of `stask new-worker`.
#[derive(Debug, clap::Args)]
pub(super) struct NewWorkerArgs {
    /// The crate's name, which is also the worker's identifier: lowercase letters,
    /// digits, '-' and '_', starting with a letter, at most 64 characters (my-worker).
    name: String,
    /// Directory to create the crate in; it must not exist or be empty [default: ./NAME].
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// The stask-plugin-api SDK to build against: the plugin-api directory of an stask
    /// checkout, of the same version as this stask [default: the checkout this stask
    /// was built from].
    #[arg(long, value_name = "PATH")]
    sdk: Option<PathBuf>,
}

/// What `new-worker` created, as `--json` prints it.
#[derive(Debug, Serialize)]
struct Created {
    /// Crate (package) name.
    crate_name: String,
    /// Worker identifier.
    identifier: String,
    /// The crate's directory.
    dir: PathBuf,
    /// Files created, relative to `dir`.
    files: Vec<String>,
    /// The library file `cargo build` produces (under `target/debug` or `target/release`).
    library_file: String,
    /// The SDK directory the crate depends on.
    sdk: PathBuf,
    /// The lock file copied into the crate, if any.
    lock_file_from: Option<PathBuf>,
}

/// Runs `stask new-worker`.
pub(super) fn run(args: NewWorkerArgs, json: bool) -> Result<i32> {
    check_name(&args.name)?;
    let sdk = find_sdk(args.sdk.as_deref())?;
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(&args.name));
    let files = render(&args.name, &sdk);
    write_crate(&dir, &files)?;
    let created = Created {
        crate_name: args.name.clone(),
        identifier: args.name.clone(),
        dir: std::fs::canonicalize(&dir).unwrap_or_else(|_| dir.clone()),
        files: files.iter().map(|(path, _)| (*path).to_owned()).collect(),
        library_file: library_file(&args.name),
        sdk: sdk.dir.clone(),
        lock_file_from: sdk.lock.as_ref().map(|(path, _)| path.clone()),
    };
    if json {
        print_json(&created)?;
        return Ok(0);
    }
    println!(
        "Created worker crate {} in {} (SDK {})",
        created.crate_name,
        dir.display(),
        created.sdk.display()
    );
    println!("  {}", created.files.join(", "));
    println!("Next:");
    println!("  cd {}", shell_quote(&dir.display().to_string()));
    println!("  cargo test");
    println!(
        "  cargo build --release     # the library: target/release/{}",
        created.library_file
    );
    println!(
        "Then install, discover and run it as README.md says; the guide is {}",
        created.sdk.join("README.md").display()
    );
    Ok(0)
}

/// Refuses names that are not both a valid crate name and a valid worker identifier.
fn check_name(name: &str) -> Result<()> {
    let shown = shown_input(name);
    if name.is_empty() {
        bail!("the worker name is empty; give one such as my-worker");
    }
    let valid = name.len() <= 64
        && name.as_bytes()[0].is_ascii_lowercase()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if !valid {
        let lower = name.to_ascii_lowercase().replace([' ', '.'], "-");
        let suggestion = if lower != name && check_name(&lower).is_ok() {
            format!(", e.g. {lower}")
        } else {
            String::new()
        };
        bail!(
            "'{shown}' cannot be a worker name: it is both the crate's name and the worker's identifier, so use 1-64 lowercase ASCII letters, digits, '-' and '_', starting with a letter{suggestion}"
        );
    }
    if RESERVED_NAMES.contains(&name) {
        bail!(
            "'{name}' cannot be a worker name: it is a Rust keyword or the name of a standard crate, a Cargo directory or the SDK; choose another, e.g. {name}-worker"
        );
    }
    Ok(())
}

/// The SDK a new crate builds against.
#[derive(Debug)]
struct Sdk {
    /// Its directory, absolute.
    dir: PathBuf,
    /// Its package version.
    version: String,
    /// Its declared minimum Rust version.
    rust_version: String,
    /// The lock file of the checkout it sits in: path and content.
    lock: Option<(PathBuf, String)>,
}

/// `--sdk`, else the checkout this binary was built from; checked to be an SDK this
/// host loads libraries of.
fn find_sdk(given: Option<&Path>) -> Result<Sdk> {
    let dir = match given {
        Some(dir) => dir.to_path_buf(),
        None => {
            let built = PathBuf::from(BUILT_SDK);
            if !built.join("Cargo.toml").is_file() {
                bail!(
                    "cannot find the stask-plugin-api SDK: this stask was not built from a checkout that is still at '{}'. Give the SDK's directory with --sdk PATH: the plugin-api directory of an stask checkout of the same version as this stask (plugin-api {API_VERSION})",
                    Path::new(env!("CARGO_MANIFEST_DIR"))
                        .parent()
                        .unwrap_or(Path::new("/"))
                        .display()
                );
            }
            built
        }
    };
    let dir = std::fs::canonicalize(&dir).with_context(|| {
        format!(
            "cannot use '{}' as the SDK (--sdk): it must be the plugin-api directory of an stask checkout",
            dir.display()
        )
    })?;
    if dir.to_str().is_none() {
        bail!(
            "the SDK's path '{}' is not valid UTF-8, so Cargo.toml cannot name it; move the checkout to a UTF-8 path",
            dir.display()
        );
    }
    let manifest_path = dir.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest_path).with_context(|| {
        format!(
            "'{}' is not the stask-plugin-api SDK: cannot read its Cargo.toml; give --sdk the plugin-api directory of an stask checkout",
            dir.display()
        )
    })?;
    let manifest: toml::Table = toml::from_str(&text)
        .with_context(|| format!("cannot parse '{}'", manifest_path.display()))?;
    let package = manifest.get("package").and_then(toml::Value::as_table);
    let field = |key: &str| {
        package
            .and_then(|p| p.get(key))
            .and_then(toml::Value::as_str)
            .map(str::to_owned)
    };
    if field("name").as_deref() != Some("stask-plugin-api") {
        bail!(
            "'{}' is not the stask-plugin-api SDK (its Cargo.toml names package '{}'); give --sdk the plugin-api directory of an stask checkout",
            dir.display(),
            field("name").unwrap_or_default()
        );
    }
    let version = field("version").unwrap_or_default();
    if !compatible(&version, API_VERSION) {
        bail!(
            "the SDK at '{}' is stask-plugin-api {version}, but this stask loads libraries built against stask-plugin-api {}; give --sdk the plugin-api directory of the checkout this stask was built from",
            dir.display(),
            minor_series(API_VERSION)
        );
    }
    // An SDK whose rust-version is inherited from its workspace: the host's own.
    let rust_version =
        field("rust-version").unwrap_or_else(|| env!("CARGO_PKG_RUST_VERSION").to_owned());
    let lock = dir.parent().map(|p| p.join("Cargo.lock")).and_then(|path| {
        let text = std::fs::read_to_string(&path).ok()?;
        text.contains("name = \"stask-plugin-api\"")
            .then_some((path, text))
    });
    Ok(Sdk {
        dir,
        version,
        rust_version,
        lock,
    })
}

/// `(major, minor)` of a version.
fn major_minor(version: &str) -> Option<(u64, u64)> {
    let mut parts = version.split('.');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// Semver compatibility as the host checks it: same major, and for 0.x the same minor.
fn compatible(sdk: &str, host: &str) -> bool {
    match (major_minor(sdk), major_minor(host)) {
        (Some(a), Some(b)) => a.0 == b.0 && (a.0 != 0 || a.1 == b.1),
        _ => false,
    }
}

/// `0.1.x` for 0.1.0.
fn minor_series(version: &str) -> String {
    match major_minor(version) {
        Some((0, minor)) => format!("0.{minor}.x"),
        Some((major, _)) => format!("{major}.x"),
        None => version.to_owned(),
    }
}

/// The Cargo version requirement for the SDK: `0.1` for 0.1.x, `1` for 1.x.
fn version_req(version: &str) -> String {
    match major_minor(version) {
        Some((0, minor)) => format!("0.{minor}"),
        Some((major, _)) => major.to_string(),
        None => version.to_owned(),
    }
}

/// The file name `cargo build` gives the library: `my-worker` -> `libmy_worker.so`.
fn library_file(name: &str) -> String {
    format!(
        "{}{}.{}",
        std::env::consts::DLL_PREFIX,
        name.replace('-', "_"),
        std::env::consts::DLL_EXTENSION
    )
}

/// `my-worker` -> `My worker`.
fn title_of(name: &str) -> String {
    let words = name.replace(['-', '_'], " ");
    let mut chars = words.chars();
    match chars.next() {
        Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
        None => String::new(),
    }
}

/// `my-worker` -> `MyWorker`; `TheContext` for names the generated code already uses.
fn struct_name_of(name: &str) -> String {
    let camel: String = name
        .split(['-', '_'])
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            let first = chars.next().map(|c| c.to_ascii_uppercase());
            first.into_iter().chain(chars).collect::<String>()
        })
        .collect();
    if TAKEN_TYPE_NAMES.contains(&camel.as_str()) {
        format!("The{camel}")
    } else {
        camel
    }
}

/// The crate's files, relative path and content, in the order they are written.
fn render(name: &str, sdk: &Sdk) -> Vec<(&'static str, String)> {
    let sdk_dir = sdk.dir.to_str().expect("checked to be UTF-8 in find_sdk");
    let fill = |template: &str| {
        template
            .replace("{{crate_name}}", name)
            .replace("{{identifier}}", name)
            .replace("{{lib_name}}", &name.replace('-', "_"))
            .replace("{{title}}", &title_of(name))
            .replace("{{struct_name}}", &struct_name_of(name))
            .replace("{{rust_version}}", &sdk.rust_version)
            .replace("{{sdk_version_req}}", &version_req(&sdk.version))
            .replace(
                "{{sdk_path}}",
                &toml::Value::String(sdk_dir.to_owned()).to_string(),
            )
            .replace("{{sdk_dir}}", sdk_dir)
    };
    let mut files = vec![
        ("Cargo.toml", fill(CARGO_TOML)),
        ("src/lib.rs", fill(LIB_RS)),
        ("README.md", fill(README_MD)),
        (".gitignore", fill(GITIGNORE)),
    ];
    if let Some((_, lock)) = &sdk.lock {
        files.push(("Cargo.lock", lock.clone()));
    }
    files
}

/// Creates `dir` (or fills it when it is an empty directory) with `files`. Never
/// overwrites anything; on failure removes what it created.
fn write_crate(dir: &Path, files: &[(&'static str, String)]) -> Result<()> {
    let mut undo = Undo {
        dir: dir.to_path_buf(),
        made_dir: false,
        paths: Vec::new(),
    };
    let result = write_files(dir, files, &mut undo);
    if result.is_err() {
        undo.remove();
    }
    result
}

/// What `write_files` created so far, removed again (newest first) when it fails.
struct Undo {
    dir: PathBuf,
    made_dir: bool,
    paths: Vec<PathBuf>,
}

impl Undo {
    fn remove(self) {
        for path in self.paths.iter().rev() {
            // Directories this command made are empty again once their files are gone.
            let _ = if path.is_dir() {
                std::fs::remove_dir(path)
            } else {
                std::fs::remove_file(path)
            };
        }
        if self.made_dir {
            let _ = std::fs::remove_dir(&self.dir);
        }
    }
}

fn write_files(dir: &Path, files: &[(&'static str, String)], undo: &mut Undo) -> Result<()> {
    let nothing = "nothing was written";
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => {
            let mut entries = std::fs::read_dir(dir)
                .with_context(|| format!("cannot read '{}'; {nothing}", dir.display()))?;
            if entries.next().is_some() {
                bail!(
                    "'{}' already exists and is not empty; {nothing}. Choose a new or empty directory with --dir, or another name",
                    dir.display()
                );
            }
        }
        Ok(_) => bail!(
            "'{}' already exists and is not a directory; {nothing}. Choose a new or empty directory with --dir, or another name",
            dir.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).with_context(|| {
                    format!("cannot create the directory '{}'", parent.display())
                })?;
            }
            // Not create_dir_all: failing when it appeared meanwhile is the point.
            std::fs::create_dir(dir)
                .with_context(|| format!("cannot create '{}'; {nothing}", dir.display()))?;
            undo.made_dir = true;
        }
        Err(e) => bail!("cannot use '{}': {e}; {nothing}", dir.display()),
    }
    for (relative, content) in files {
        let path = dir.join(relative);
        if let Some(parent) = path.parent() {
            if !parent.exists() {
                std::fs::create_dir(parent)
                    .with_context(|| format!("cannot create '{}'", parent.display()))?;
                undo.paths.push(parent.to_path_buf());
            }
        }
        // create_new: a file that appeared meanwhile is never overwritten.
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .with_context(|| format!("cannot create '{}'", path.display()))?;
        undo.paths.push(path.clone());
        file.write_all(content.as_bytes())
            .and_then(|()| file.sync_all())
            .with_context(|| format!("cannot write '{}'", path.display()))?;
    }
    Ok(())
}

/// A path as a shell word: unchanged when it only has safe characters, else quoted.
fn shell_quote(text: &str) -> String {
    let safe = !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./+@%:,".contains(&b));
    if safe {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sdk() -> Sdk {
        find_sdk(None).expect("the SDK of this checkout")
    }

    #[test]
    fn names_must_be_crate_names_and_worker_identifiers() {
        for good in ["my-worker", "a", "sync_v2", "x1-y2"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for (bad, says) in [
            ("", "empty"),
            ("My-Worker", "e.g. my-worker"),
            ("1st", "starting with a letter"),
            ("-x", "starting with a letter"),
            ("my worker", "e.g. my-worker"),
            ("über", "lowercase ASCII"),
            (&"a".repeat(65), "1-64"),
            ("fn", "Rust keyword"),
            ("test", "standard crate"),
            ("stask-plugin-api", "the SDK"),
        ] {
            let err = check_name(bad).unwrap_err().to_string();
            assert!(err.contains(says), "{bad:?}: {err}");
        }
    }

    #[test]
    fn derived_names() {
        assert_eq!(title_of("my-worker"), "My worker");
        assert_eq!(struct_name_of("my-worker"), "MyWorker");
        assert_eq!(struct_name_of("a_b-c2"), "ABC2");
        assert_eq!(struct_name_of("worker"), "TheWorker");
        assert_eq!(struct_name_of("some"), "TheSome");
        assert_eq!(library_file("my-worker"), "libmy_worker.so");
        assert_eq!(version_req("0.1.3"), "0.1");
        assert_eq!(version_req("1.2.0"), "1");
    }

    #[test]
    fn sdk_versions_are_checked_as_the_host_checks_libraries() {
        assert!(compatible("0.1.7", "0.1.0"));
        assert!(!compatible("0.2.0", "0.1.0"));
        assert!(compatible("1.4.0", "1.0.0"));
        assert!(!compatible("x", "0.1.0"));
    }

    #[test]
    fn the_built_checkout_sdk_is_found_with_its_lock_file() {
        let sdk = sdk();
        assert!(sdk.dir.ends_with("plugin-api"), "{sdk:?}");
        assert_eq!(sdk.version, API_VERSION);
        assert!(sdk.lock.is_some());
    }

    #[test]
    fn an_sdk_elsewhere_is_refused_naming_the_option() {
        let dir = tempfile::tempdir().unwrap();
        let err = format!("{:#}", find_sdk(Some(dir.path())).unwrap_err());
        assert!(err.contains("--sdk"), "{err}");
        std::fs::write(
            dir.path().join("Cargo.toml"),
            "[package]\nname = \"stask-plugin-api\"\nversion = \"0.2.0\"\n",
        )
        .unwrap();
        let err = format!("{:#}", find_sdk(Some(dir.path())).unwrap_err());
        assert!(err.contains("0.2.0") && err.contains("0.1.x"), "{err}");
    }

    #[test]
    fn every_placeholder_is_filled() {
        for (path, content) in render("my-worker", &sdk()) {
            assert!(!content.contains("{{"), "{path} keeps a placeholder");
        }
    }

    #[test]
    fn existing_non_empty_directories_and_files_are_refused_untouched() {
        let root = tempfile::tempdir().unwrap();
        let files = render("my-worker", &sdk());

        let full = root.path().join("full");
        std::fs::create_dir(&full).unwrap();
        std::fs::write(full.join("notes.txt"), "mine").unwrap();
        let err = write_crate(&full, &files).unwrap_err().to_string();
        assert!(err.contains("not empty") && err.contains("--dir"), "{err}");
        let left: Vec<_> = std::fs::read_dir(&full).unwrap().collect();
        assert_eq!(left.len(), 1);
        assert_eq!(
            std::fs::read_to_string(full.join("notes.txt")).unwrap(),
            "mine"
        );

        let file = root.path().join("file");
        std::fs::write(&file, "mine").unwrap();
        let err = write_crate(&file, &files).unwrap_err().to_string();
        assert!(err.contains("not a directory"), "{err}");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "mine");
    }

    #[test]
    fn an_empty_directory_is_filled_and_a_new_one_created() {
        let root = tempfile::tempdir().unwrap();
        let files = render("my-worker", &sdk());
        let empty = root.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        write_crate(&empty, &files).unwrap();
        assert!(empty.join("src/lib.rs").is_file());
        let nested = root.path().join("a/b/new");
        write_crate(&nested, &files).unwrap();
        assert!(nested.join("Cargo.toml").is_file());
    }

    #[test]
    fn a_failed_write_removes_only_what_it_created() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("w");
        // Two files with the same path: the second create fails (O_EXCL).
        let files = vec![
            ("src/lib.rs", "first".to_owned()),
            ("src/lib.rs", "second".to_owned()),
        ];
        let err = format!("{:#}", write_crate(&dir, &files).unwrap_err());
        assert!(err.contains("cannot create"), "{err}");
        assert!(!dir.exists(), "the directory it made is gone again");

        std::fs::create_dir(&dir).unwrap();
        write_crate(&dir, &files).unwrap_err();
        assert!(dir.is_dir(), "a directory it did not make is kept");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    }

    #[test]
    fn shell_quoting() {
        assert_eq!(shell_quote("my-worker"), "my-worker");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }
}
