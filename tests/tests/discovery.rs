//! Acceptance tests of the worker registry: `stask workers discover / rescan /
//! clean-orphaned / list / show / activate / deactivate`, driven through the real
//! binary against real built plugin libraries.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use stask_e2e::{
    chmod, copy_library, describe, find_by, identifiers, paths_of, plugin_lib, run_with_timeout,
    stask, Home, COMMAND_TIMEOUT,
};

const DEMO: &str = "stask_worker_demo";
const PRODUCT: &str = "stask_worker_product";
const CRASH_ON_LOAD: &str = "stask_fixture_crash_on_load";
const PANIC_ON_LOAD: &str = "stask_fixture_panic_on_load";
const ABI_FUTURE: &str = "stask_fixture_abi_future";
const ABI_CHANGED_LAYOUT: &str = "stask_fixture_abi_changed_layout";

fn s(p: &Path) -> String {
    p.display().to_string()
}

fn sha256_of(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read '{}': {e}", path.display()));
    hex::encode(Sha256::digest(bytes))
}

/// A home with the two example workers installed (not yet discovered).
fn home_with_examples() -> (Home, PathBuf, PathBuf) {
    let home = Home::new();
    let product = home.install(PRODUCT);
    let demo = home.install(DEMO);
    (home, product, demo)
}

/// A home with both example workers installed and registered.
fn registered_examples() -> (Home, PathBuf, PathBuf) {
    let (home, product, demo) = home_with_examples();
    let report = home.json(&["workers", "discover"]);
    assert_eq!(
        identifiers(&report["registered"]),
        ["demo", "product"],
        "{report:#}"
    );
    (home, product, demo)
}

fn list(home: &Home) -> Value {
    home.json(&["workers", "list"])
}

fn show(home: &Home, id: &str) -> Value {
    home.json(&["workers", "show", id])
}

/// The one `skipped` entry of `report` for `path`; fails when there is none, or more.
fn skipped_for<'a>(report: &'a Value, path: &Path) -> &'a Value {
    let hits: Vec<&Value> = report["skipped"]
        .as_array()
        .expect("skipped is an array")
        .iter()
        .filter(|e| e["path"] == s(path))
        .collect();
    assert_eq!(
        hits.len(),
        1,
        "expected exactly one skipped entry for '{}' in {report:#}",
        path.display()
    );
    let entry = hits[0];
    assert!(
        entry["reason"]
            .as_str()
            .is_some_and(|r| !r.trim().is_empty()),
        "the skipped entry has no reason: {entry:#}"
    );
    entry
}

/// Runs discover in a plugins directory holding the good `good_id` library and the bad
/// `bad` file: the bad file must be reported (path and reason, in JSON and in text)
/// while the good one is still registered. Returns the JSON skipped entry.
fn assert_bad_file_reported_and_good_registered(home: &Home, bad: &Path, good_id: &str) -> Value {
    let report = home.json(&["workers", "discover"]);
    assert_eq!(
        identifiers(&report["registered"]),
        [good_id],
        "the good library in the same directory must still be registered: {report:#}"
    );
    assert_eq!(
        paths_of(&report["skipped"]),
        [s(bad)],
        "only the bad file is skipped: {report:#}"
    );
    let entry = skipped_for(&report, bad).clone();
    let reason = entry["reason"].as_str().unwrap();

    // The text report shows the same thing: the path and the reason on one line.
    // (The bad file was not registered, so a second discover looks at it again.)
    let text = home.ok(&["workers", "discover"]);
    assert!(
        text.lines()
            .any(|l| l.contains(&s(bad)) && l.contains(reason)),
        "text report does not show '{}' with its reason '{reason}':\n{text}",
        bad.display()
    );
    assert!(
        text.contains("0 registered, 1 skipped, 1 already registered"),
        "{text}"
    );
    let listed = list(home);
    assert_eq!(identifiers(&listed), [good_id], "{listed:#}");
    entry
}

/// End of the last loadable segment's file contents (`p_offset + p_filesz` of the
/// `PT_LOAD` program headers) of a little-endian ELF64 file.
fn loadable_image_end(path: &Path) -> u64 {
    let elf = std::fs::read(path).unwrap();
    assert_eq!(&elf[..4], b"\x7fELF", "not an ELF file: {}", path.display());
    assert_eq!(elf[4], 2, "not ELF64: {}", path.display());
    assert_eq!(elf[5], 1, "not little-endian: {}", path.display());
    let u16_at = |o: usize| u16::from_le_bytes(elf[o..o + 2].try_into().unwrap()) as usize;
    let u32_at = |o: usize| u32::from_le_bytes(elf[o..o + 4].try_into().unwrap());
    let u64_at = |o: usize| u64::from_le_bytes(elf[o..o + 8].try_into().unwrap());
    let (phoff, phentsize, phnum) = (u64_at(0x20) as usize, u16_at(0x36), u16_at(0x38));
    (0..phnum)
        .map(|i| phoff + i * phentsize)
        .filter(|&ph| u32_at(ph) == 1)
        .map(|ph| u64_at(ph + 8) + u64_at(ph + 0x20))
        .max()
        .expect("no PT_LOAD segment")
}

fn set_mtime(path: &Path, offset: Duration) {
    let file = std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open '{}': {e}", path.display()));
    let old = file.metadata().unwrap().modified().unwrap();
    file.set_modified(old + offset).expect("set mtime");
}

// ---------------------------------------------------------------------------------
// discover
// ---------------------------------------------------------------------------------

#[test]
fn discover_registers_example_workers_inactive_by_default() {
    let (home, _, _) = home_with_examples();
    home.ok(&["workers", "discover"]);
    let listed = list(&home);
    assert_eq!(identifiers(&listed), ["demo", "product"], "{listed:#}");
    for id in ["demo", "product"] {
        let w = find_by(&listed, "identifier", id).unwrap();
        assert_eq!(w["active"], false, "{id} must be inactive: {w:#}");
    }
}

#[test]
fn discover_with_activate_registers_workers_active() {
    let (home, _, _) = home_with_examples();
    let report = home.json(&["workers", "discover", "--activate"]);
    for id in ["demo", "product"] {
        let change = find_by(&report["registered"], "identifier", id)
            .unwrap_or_else(|| panic!("{id} not registered: {report:#}"));
        assert_eq!(change["active"], true, "{change:#}");
    }
    let listed = list(&home);
    assert_eq!(identifiers(&listed), ["demo", "product"], "{listed:#}");
    for id in ["demo", "product"] {
        assert_eq!(
            find_by(&listed, "identifier", id).unwrap()["active"],
            true,
            "{listed:#}"
        );
    }
}

#[test]
fn discover_text_output_names_registered_workers_and_libraries() {
    let (home, product, demo) = home_with_examples();
    let text = home.ok(&["workers", "discover"]);
    for (id, lib) in [("demo", &demo), ("product", &product)] {
        assert!(
            text.lines().any(|l| l.contains(id) && l.contains(&s(lib))),
            "no line names worker '{id}' and its library '{}':\n{text}",
            lib.display()
        );
    }
    assert!(
        text.contains("2 registered, 0 skipped, 0 already registered"),
        "{text}"
    );
    assert!(
        text.contains("inactive"),
        "says the new workers are inactive:\n{text}"
    );
}

#[test]
fn discover_json_report_has_registered_skipped_and_already_registered() {
    let (home, product, demo) = home_with_examples();
    let report = home.json(&["workers", "discover"]);
    assert!(report["registered"].is_array(), "{report:#}");
    assert_eq!(report["skipped"], json!([]), "{report:#}");
    assert_eq!(report["already_registered"], 0, "{report:#}");
    assert_eq!(
        identifiers(&report["registered"]),
        ["demo", "product"],
        "{report:#}"
    );
    for (id, lib) in [("demo", &demo), ("product", &product)] {
        let change = find_by(&report["registered"], "identifier", id).unwrap();
        assert_eq!(change["library"], s(lib), "{change:#}");
        assert_eq!(change["active"], false, "{change:#}");
        assert!(
            change["title"].as_str().is_some_and(|t| !t.is_empty()),
            "{change:#}"
        );
        assert!(change["version"].is_string(), "{change:#}");
    }
}

#[test]
fn discover_again_registers_nothing_and_counts_already_registered() {
    let (home, _, _) = registered_examples();
    let before = list(&home);
    let report = home.json(&["workers", "discover"]);
    assert_eq!(report["registered"], json!([]), "{report:#}");
    assert_eq!(report["skipped"], json!([]), "{report:#}");
    assert_eq!(report["already_registered"], 2, "{report:#}");
    let text = home.ok(&["workers", "discover"]);
    assert!(
        text.contains("0 registered, 0 skipped, 2 already registered"),
        "{text}"
    );
    assert_eq!(list(&home), before, "a repeated discover changes nothing");
}

// ---------------------------------------------------------------------------------
// list / show / activate / deactivate
// ---------------------------------------------------------------------------------

#[test]
fn list_shows_registered_workers_in_text_and_json() {
    let (home, product, demo) = registered_examples();
    let text = home.ok(&["workers", "list"]);
    assert!(text.contains("IDENTIFIER"), "{text}");
    for id in ["demo", "product"] {
        assert!(
            text.lines()
                .any(|l| l.starts_with(id) && l.contains("inactive")),
            "no inactive row for {id}:\n{text}"
        );
    }
    let listed = list(&home);
    assert_eq!(identifiers(&listed), ["demo", "product"], "{listed:#}");
    for (id, lib) in [("demo", &demo), ("product", &product)] {
        let w = find_by(&listed, "identifier", id).unwrap();
        assert_eq!(w["library"]["path"], s(lib), "{w:#}");
        assert_eq!(w["library"]["exists"], true, "{w:#}");
        assert_eq!(w["library"]["sha256"], sha256_of(lib), "{w:#}");
    }
}

#[test]
fn list_with_no_workers_says_how_to_register_some() {
    let home = Home::new();
    assert_eq!(list(&home), json!([]));
    let text = home.ok(&["workers", "list"]);
    assert!(text.contains("discover"), "{text}");
}

#[test]
fn show_lists_actions_and_settings_schema() {
    let (home, _, demo) = registered_examples();
    let w = show(&home, "demo");
    assert_eq!(w["identifier"], "demo", "{w:#}");
    assert_eq!(w["library"]["path"], s(&demo), "{w:#}");
    let actions: Vec<&str> = w["actions"]
        .as_array()
        .expect("actions")
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    for name in ["run", "noop", "echo"] {
        assert!(actions.contains(&name), "action {name} missing: {w:#}");
    }
    let schema = w["settings_schema"].as_array().expect("settings_schema");
    let api_key = schema
        .iter()
        .find(|s| s["key"] == "api_key")
        .unwrap_or_else(|| panic!("no api_key in the schema: {w:#}"));
    assert_eq!(api_key["secret"], true, "{w:#}");
    assert_eq!(api_key["kind"], "string", "{w:#}");
    assert!(schema.iter().any(|s| s["key"] == "greeting"), "{w:#}");

    let text = home.ok(&["workers", "show", "demo"]);
    assert!(text.contains("actions:"), "{text}");
    assert!(text.contains("settings:"), "{text}");
    for name in ["run", "noop", "echo"] {
        assert!(
            text.lines().any(|l| l.trim_start().starts_with(name)),
            "action {name} not shown:\n{text}"
        );
    }
    for key in ["greeting", "api_key"] {
        assert!(
            text.lines().any(|l| l.trim_start().starts_with(key)),
            "setting {key} not shown:\n{text}"
        );
    }
    assert!(text.contains(&s(&demo)), "{text}");
    assert!(text.contains(&sha256_of(&demo)), "{text}");
}

#[test]
fn show_reports_secret_setting_as_set_or_not_set_never_its_value() {
    let (home, _, _) = registered_examples();
    let w = show(&home, "demo");
    assert_eq!(
        w["settings"]["api_key"],
        json!({ "secret": true, "set": false }),
        "{w:#}"
    );
    let text = home.ok(&["workers", "show", "demo"]);
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("api_key"))
        .unwrap_or_else(|| panic!("api_key not shown:\n{text}"));
    assert!(line.contains("secret, not set"), "{line}");

    // Through the store, as `workers settings` would (secrets are not set on a
    // command line).
    const SECRET: &str = "e2e-do-not-print-me-3141";
    let changed = home
        .store()
        .set_worker_settings(
            "demo",
            &json!({ "api_key": SECRET, "greeting": "Hi" }).to_string(),
        )
        .expect("store a secret setting");
    assert!(changed);

    let w = show(&home, "demo");
    assert_eq!(
        w["settings"]["api_key"],
        json!({ "secret": true, "set": true }),
        "{w:#}"
    );
    assert_eq!(
        w["settings"]["greeting"], "Hi",
        "non-secret values are shown: {w:#}"
    );
    let text = home.ok(&["workers", "show", "demo"]);
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("api_key"))
        .unwrap_or_else(|| panic!("api_key not shown:\n{text}"));
    assert!(line.contains("secret, set"), "{line}");
    for args in [
        &["workers", "show", "demo"][..],
        &["workers", "show", "demo", "--json"],
        &["workers", "list"],
        &["workers", "list", "--json"],
    ] {
        let out = home.run(args);
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !all.contains(SECRET),
            "the secret value leaked\n{}",
            describe(&args.join(" "), &out)
        );
    }
}

#[test]
fn activate_and_deactivate_change_state_visible_in_list_json() {
    let (home, _, _) = registered_examples();
    let state = |home: &Home, id: &str| {
        let listed = list(home);
        find_by(&listed, "identifier", id).unwrap()["active"].clone()
    };
    let out = home.ok(&["workers", "activate", "demo"]);
    assert!(out.contains("demo") && out.contains("active"), "{out}");
    assert_eq!(state(&home, "demo"), true);
    assert_eq!(state(&home, "product"), false, "only demo changes");
    assert_eq!(show(&home, "demo")["active"], true);

    let reply = home.json(&["workers", "deactivate", "demo"]);
    assert_eq!(reply, json!({ "identifier": "demo", "active": false }));
    assert_eq!(state(&home, "demo"), false);

    let reply = home.json(&["workers", "activate", "product"]);
    assert_eq!(reply, json!({ "identifier": "product", "active": true }));
    assert_eq!(state(&home, "product"), true);
    assert_eq!(state(&home, "demo"), false);
}

#[test]
fn activating_a_worker_whose_library_is_gone_fails_naming_the_file_and_changes_nothing() {
    let (home, _, demo) = registered_examples();
    std::fs::remove_file(&demo).unwrap();
    let err = home.fail(&["workers", "activate", "demo"]);
    assert!(
        err.contains("demo") && err.contains(&demo.display().to_string()),
        "{err}"
    );
    assert!(err.contains("clean-orphaned"), "{err}");
    let listed = list(&home);
    assert_eq!(
        find_by(&listed, "identifier", "demo").unwrap()["active"],
        false
    );
}

#[test]
fn unknown_worker_id_fails_for_show_activate_and_deactivate_naming_the_id() {
    let (home, _, _) = registered_examples();
    for cmd in ["show", "activate", "deactivate"] {
        let err = home.fail(&["workers", cmd, "no-such-worker"]);
        assert!(err.contains("no-such-worker"), "{cmd}: {err}");
        let err = home.fail(&["workers", cmd, "no-such-worker", "--json"]);
        let parsed: Value = serde_json::from_str(err.trim())
            .unwrap_or_else(|e| panic!("{cmd} --json: stderr is not JSON ({e}): {err}"));
        assert!(
            parsed["error"]
                .as_str()
                .is_some_and(|m| m.contains("no-such-worker")),
            "{cmd}: {parsed}"
        );
    }
    assert_eq!(identifiers(&list(&home)), ["demo", "product"]);
}

// ---------------------------------------------------------------------------------
// bad input: reported with path and reason, the scan carries on
// ---------------------------------------------------------------------------------

#[test]
fn garbage_file_is_reported_and_good_library_still_registered() {
    let home = Home::new();
    home.install(DEMO);
    let bad = home.plugins_dir().join("libgarbage.so");
    std::fs::write(
        &bad,
        b"this is not a shared library, just some text\n".repeat(50),
    )
    .unwrap();
    chmod(&bad, 0o755);
    let entry = assert_bad_file_reported_and_good_registered(&home, &bad, "demo");
    assert_eq!(entry["kind"], "not-a-library", "{entry:#}");
}

#[test]
fn empty_file_is_reported_and_good_library_still_registered() {
    let home = Home::new();
    home.install(DEMO);
    let bad = home.plugins_dir().join("libempty.so");
    std::fs::write(&bad, b"").unwrap();
    chmod(&bad, 0o755);
    let entry = assert_bad_file_reported_and_good_registered(&home, &bad, "demo");
    assert_eq!(entry["kind"], "not-a-library", "{entry:#}");
}

#[test]
fn truncated_library_is_reported_and_good_library_still_registered() {
    let home = Home::new();
    home.install(DEMO);
    let bad = home.install_as(PRODUCT, "libtruncated.so");
    // Half of the file: debug builds end in debug info the loader never reads, so cut
    // at half of the loadable image instead, which removes code the loader needs.
    let cut = loadable_image_end(&bad) / 2;
    assert!(cut < std::fs::metadata(&bad).unwrap().len() / 2 + 1);
    std::fs::File::options()
        .write(true)
        .open(&bad)
        .unwrap()
        .set_len(cut)
        .unwrap();
    let entry = assert_bad_file_reported_and_good_registered(&home, &bad, "demo");
    // The dynamic loader maps segments past the end of the file without checking, so
    // the probe typically dies of SIGBUS; either way it is reported, not registered.
    assert!(
        entry["kind"] == "not-a-library"
            || (entry["kind"] == "crashed" && entry["reason"].as_str().unwrap().contains("SIG")),
        "{entry:#}"
    );
}

#[test]
fn shared_library_that_is_not_a_worker_is_reported_and_good_library_still_registered() {
    let home = Home::new();
    home.install(DEMO);
    let src = home.scratch_dir().join("answer.c");
    std::fs::write(&src, "int stask_e2e_answer(void) { return 42; }\n").unwrap();
    let bad = home.plugins_dir().join("libanswer.so");
    let out = run_with_timeout(
        Command::new("cc")
            .args(["-shared", "-fPIC", "-o"])
            .arg(&bad)
            .arg(&src),
        COMMAND_TIMEOUT,
    );
    assert!(out.status.success(), "{}", describe("cc", &out));
    chmod(&bad, 0o755);
    let entry = assert_bad_file_reported_and_good_registered(&home, &bad, "demo");
    assert_eq!(entry["kind"], "not-a-worker", "{entry:#}");
    assert!(
        entry["reason"]
            .as_str()
            .unwrap()
            .contains("not an stask worker"),
        "{entry:#}"
    );
}

#[test]
fn library_built_against_future_plugin_api_is_reported_with_both_versions() {
    let home = Home::new();
    home.install(DEMO);
    let bad = home.install(ABI_FUTURE);
    let entry = assert_bad_file_reported_and_good_registered(&home, &bad, "demo");
    let reason = entry["reason"].as_str().unwrap();
    assert!(
        reason.contains("1.0.0"),
        "names the library's version: {reason}"
    );
    assert!(reason.contains("0.1"), "names the host's version: {reason}");
    assert_eq!(entry["kind"], "incompatible-version", "{entry:#}");
}

#[test]
fn library_with_changed_abi_layout_is_reported_as_interface_mismatch() {
    let home = Home::new();
    home.install(DEMO);
    let bad = home.install(ABI_CHANGED_LAYOUT);
    let entry = assert_bad_file_reported_and_good_registered(&home, &bad, "demo");
    assert_eq!(entry["kind"], "abi-mismatch", "{entry:#}");
    let reason = entry["reason"].as_str().unwrap();
    assert!(reason.contains("interface does not match"), "{reason}");
}

#[test]
fn changed_abi_layout_reason_shows_an_actual_difference() {
    let home = Home::new();
    let bad = home.install(ABI_CHANGED_LAYOUT);
    let report = home.json(&["workers", "discover"]);
    let reason = skipped_for(&report, &bad)["reason"]
        .as_str()
        .unwrap()
        .to_owned();
    // abi_stable's report starts with a "Compared <this>:" header line; quoting that as
    // the "first difference" tells the operator nothing.
    if let Some((_, first)) = reason.split_once("First difference:") {
        let first = first.trim();
        assert!(
            !first.is_empty() && first != "Compared <this>:",
            "the quoted first difference is only the report's header: {reason}"
        );
    }
}

#[test]
fn library_that_crashes_on_load_is_reported_with_signal_sigabrt() {
    let home = Home::new();
    home.install(DEMO);
    let bad = home.install(CRASH_ON_LOAD);
    let entry = assert_bad_file_reported_and_good_registered(&home, &bad, "demo");
    assert_eq!(entry["kind"], "crashed", "{entry:#}");
    let reason = entry["reason"].as_str().unwrap();
    assert!(reason.contains("crashed while loading"), "{reason}");
    assert!(reason.contains("SIGABRT"), "{reason}");
}

#[test]
fn library_whose_manifest_panics_is_reported_with_the_panic_text() {
    let home = Home::new();
    home.install(DEMO);
    let bad = home.install(PANIC_ON_LOAD);
    let entry = assert_bad_file_reported_and_good_registered(&home, &bad, "demo");
    let reason = entry["reason"].as_str().unwrap();
    assert!(reason.contains(PANIC_TEXT), "{reason}");
}

/// The message `stask-fixture-panic-on-load` panics with in `manifest()`.
const PANIC_TEXT: &str = "fixture: manifest panicked";

#[test]
fn two_copies_of_a_library_in_one_scan_register_neither_and_name_both_files() {
    let home = Home::new();
    home.install(PRODUCT);
    let a = home.install_as(DEMO, "libdemo_a.so");
    let b = home.install_as(DEMO, "libdemo_b.so");
    let report = home.json(&["workers", "discover"]);
    assert_eq!(
        identifiers(&report["registered"]),
        ["product"],
        "{report:#}"
    );
    for copy in [&a, &b] {
        let entry = skipped_for(&report, copy);
        assert_eq!(entry["identifier"], "demo", "{entry:#}");
        assert_eq!(entry["kind"], "duplicate-identifier", "{entry:#}");
        let reason = entry["reason"].as_str().unwrap();
        assert!(
            reason.contains(&s(&a)) && reason.contains(&s(&b)),
            "names both: {reason}"
        );
    }
    assert_eq!(identifiers(&list(&home)), ["product"]);
    let text = home.ok(&["workers", "discover"]);
    assert!(text.contains(&s(&a)) && text.contains(&s(&b)), "{text}");
}

#[test]
fn copy_appearing_after_registration_is_skipped_naming_the_registered_file() {
    let home = Home::new();
    let original = home.install(DEMO);
    home.json(&["workers", "discover"]);
    let before = show(&home, "demo");

    let copy = home.install_as(DEMO, "libdemo_copy.so");
    let report = home.json(&["workers", "discover"]);
    assert_eq!(report["registered"], json!([]), "{report:#}");
    assert_eq!(report["already_registered"], 1, "{report:#}");
    let entry = skipped_for(&report, &copy);
    assert_eq!(entry["identifier"], "demo", "{entry:#}");
    assert_eq!(entry["kind"], "duplicate-identifier", "{entry:#}");
    let reason = entry["reason"].as_str().unwrap();
    assert!(
        reason.contains(&s(&original)),
        "names the registered file: {reason}"
    );

    let after = show(&home, "demo");
    assert_eq!(after, before, "the registered worker is unchanged");
    assert_eq!(after["library"]["path"], s(&original));
}

#[test]
fn symlink_to_library_outside_plugins_dir_is_refused() {
    let home = Home::new();
    home.install(PRODUCT);
    let outside = home.scratch_dir().join("libstask_worker_demo.so");
    copy_library(&plugin_lib(DEMO), &outside);
    let link = home.plugins_dir().join("libstask_worker_demo.so");
    std::os::unix::fs::symlink(&outside, &link).unwrap();
    let entry = assert_bad_file_reported_and_good_registered(&home, &link, "product");
    assert_eq!(entry["kind"], "unsafe", "{entry:#}");
    assert!(
        entry["reason"].as_str().unwrap().contains("outside"),
        "{entry:#}"
    );
}

#[test]
fn symlink_to_library_in_subdirectory_of_plugins_dir_is_accepted() {
    let home = Home::new();
    home.install(PRODUCT);
    // The versioned-soname layout: the scan only picks up `*.so`, so the target itself
    // is not a second candidate.
    let target = home.install_as(DEMO, "versions/libstask_worker_demo.so.1");
    let link = home.plugins_dir().join("libstask_worker_demo.so");
    std::os::unix::fs::symlink("versions/libstask_worker_demo.so.1", &link).unwrap();
    let report = home.json(&["workers", "discover"]);
    assert_eq!(report["skipped"], json!([]), "{report:#}");
    assert_eq!(
        identifiers(&report["registered"]),
        ["demo", "product"],
        "{report:#}"
    );
    let w = show(&home, "demo");
    assert_eq!(w["library"]["path"], s(&link), "{w:#}");
    assert_eq!(w["library"]["sha256"], sha256_of(&target), "{w:#}");
}

#[test]
fn symlink_and_its_target_inside_plugins_dir_count_as_one_library_not_two_copies() {
    let home = Home::new();
    home.install(PRODUCT);
    // Both the link and its target end in `.so`, so the scan meets the same file twice.
    let target = home.install_as(DEMO, "sub/libstask_worker_demo.so");
    let link = home.plugins_dir().join("libdemo.so");
    std::os::unix::fs::symlink("sub/libstask_worker_demo.so", &link).unwrap();
    let report = home.json(&["workers", "discover"]);
    assert_eq!(
        report["skipped"],
        json!([]),
        "a symlink and the file it points to are one library, not two copies claiming \
         'demo': {report:#}"
    );
    assert_eq!(
        identifiers(&report["registered"]),
        ["demo", "product"],
        "{report:#}"
    );
    let w = show(&home, "demo");
    let path = w["library"]["path"].as_str().unwrap();
    assert!(path == s(&link) || path == s(&target), "{w:#}");
}

#[test]
fn world_writable_library_is_refused_naming_mode_and_chmod_fix() {
    let home = Home::new();
    home.install(PRODUCT);
    let bad = home.install(DEMO);
    chmod(&bad, 0o777);
    let entry = assert_bad_file_reported_and_good_registered(&home, &bad, "product");
    assert_eq!(entry["kind"], "unsafe", "{entry:#}");
    let reason = entry["reason"].as_str().unwrap();
    assert!(reason.contains("0777"), "names the mode: {reason}");
    assert!(
        reason.contains("chmod go-w"),
        "says how to fix it: {reason}"
    );
}

#[test]
fn library_in_group_writable_subdirectory_is_refused() {
    let home = Home::new();
    home.install(PRODUCT);
    let bad = home.install_as(DEMO, "shared/libstask_worker_demo.so");
    let dir = home.plugins_dir().join("shared");
    chmod(&dir, 0o775);
    let entry = assert_bad_file_reported_and_good_registered(&home, &bad, "product");
    assert_eq!(entry["kind"], "unsafe", "{entry:#}");
    let reason = entry["reason"].as_str().unwrap();
    assert!(
        reason.contains(&s(&dir)) && reason.contains("0775"),
        "{reason}"
    );
}

#[test]
fn library_in_world_writable_subdirectory_is_refused() {
    let home = Home::new();
    home.install(PRODUCT);
    let bad = home.install_as(DEMO, "public/libstask_worker_demo.so");
    let dir = home.plugins_dir().join("public");
    chmod(&dir, 0o757);
    let entry = assert_bad_file_reported_and_good_registered(&home, &bad, "product");
    assert_eq!(entry["kind"], "unsafe", "{entry:#}");
    let reason = entry["reason"].as_str().unwrap();
    assert!(
        reason.contains(&s(&dir)) && reason.contains("0757"),
        "{reason}"
    );
}

// ---------------------------------------------------------------------------------
// rescan
// ---------------------------------------------------------------------------------

#[test]
fn rescan_with_nothing_changed_updates_nothing() {
    let (home, _, _) = registered_examples();
    let before = list(&home);
    let report = home.json(&["workers", "rescan"]);
    assert_eq!(report["updated"], json!([]), "{report:#}");
    assert_eq!(report["unchanged"], 2, "{report:#}");
    assert_eq!(report["failed"], json!([]), "{report:#}");
    assert_eq!(report["missing"], json!([]), "{report:#}");
    let text = home.ok(&["workers", "rescan"]);
    assert!(
        text.contains("0 updated, 2 unchanged, 0 failed, 0 missing"),
        "{text}"
    );
    assert_eq!(list(&home), before);
}

#[test]
fn rescan_after_touch_only_counts_library_unchanged() {
    let (home, _, demo) = registered_examples();
    let before = show(&home, "demo");
    set_mtime(&demo, Duration::from_secs(10));
    let report = home.json(&["workers", "rescan"]);
    assert_eq!(report["updated"], json!([]), "{report:#}");
    assert_eq!(report["unchanged"], 2, "{report:#}");
    assert_eq!(report["failed"], json!([]), "{report:#}");
    let after = show(&home, "demo");
    assert_eq!(after["library"]["sha256"], before["library"]["sha256"]);
    assert_eq!(after["version"], before["version"]);
    // And again after the new mtime was remembered.
    let report = home.json(&["workers", "rescan"]);
    assert_eq!(report["unchanged"], 2, "{report:#}");
}

#[test]
fn rescan_after_content_change_updates_that_worker_and_its_sha256() {
    let (home, product, demo) = registered_examples();
    let old_sha = show(&home, "demo")["library"]["sha256"].clone();
    let product_before = show(&home, "product");
    // An ELF file with trailing bytes still loads, but hashes differently.
    std::fs::File::options()
        .append(true)
        .open(&demo)
        .unwrap()
        .write_all(b"\0stask-e2e: trailing bytes that change the hash\0")
        .unwrap();
    let new_sha = sha256_of(&demo);
    assert_ne!(json!(new_sha), old_sha);

    let report = home.json(&["workers", "rescan"]);
    assert_eq!(identifiers(&report["updated"]), ["demo"], "{report:#}");
    assert_eq!(report["updated"][0]["library"], s(&demo), "{report:#}");
    assert_eq!(report["unchanged"], 1, "{report:#}");
    assert_eq!(report["failed"], json!([]), "{report:#}");

    let w = show(&home, "demo");
    assert_eq!(w["library"]["sha256"], new_sha, "{w:#}");
    assert_eq!(
        w["library"]["size"],
        std::fs::metadata(&demo).unwrap().len(),
        "{w:#}"
    );
    assert_eq!(
        show(&home, "product"),
        product_before,
        "product is untouched"
    );
    assert_eq!(sha256_of(&product), product_before["library"]["sha256"]);

    let report = home.json(&["workers", "rescan"]);
    assert_eq!(
        report["updated"],
        json!([]),
        "a second rescan finds nothing new: {report:#}"
    );
    assert_eq!(report["unchanged"], 2, "{report:#}");
}

#[test]
fn rescan_of_library_replaced_by_garbage_reports_failure_and_keeps_old_registration() {
    let (home, _, demo) = registered_examples();
    home.ok(&["workers", "activate", "demo"]);
    let before = show(&home, "demo");
    std::fs::write(&demo, b"garbage instead of a library\n".repeat(100)).unwrap();

    let report = home.json(&["workers", "rescan"]);
    assert_eq!(report["updated"], json!([]), "{report:#}");
    assert_eq!(report["unchanged"], 1, "{report:#}");
    assert_eq!(paths_of(&report["failed"]), [s(&demo)], "{report:#}");
    let reason = report["failed"][0]["reason"].as_str().unwrap_or_default();
    assert!(!reason.trim().is_empty(), "{report:#}");

    let text = home.ok(&["workers", "rescan"]);
    assert!(
        text.lines()
            .any(|l| l.contains(&s(&demo)) && l.contains(reason)),
        "{text}"
    );
    assert!(
        text.contains("0 updated, 1 unchanged, 1 failed, 0 missing"),
        "{text}"
    );

    let after = show(&home, "demo");
    assert_eq!(after, before, "the old registration is kept as it was");
}

// ---------------------------------------------------------------------------------
// clean-orphaned
// ---------------------------------------------------------------------------------

#[test]
fn clean_orphaned_deletes_exactly_the_workers_of_a_deleted_library() {
    let (home, product, demo) = registered_examples();
    let product_before = show(&home, "product");
    std::fs::remove_file(&demo).unwrap();

    let rescan = home.json(&["workers", "rescan"]);
    assert_eq!(rescan["missing"], json!(["demo"]), "{rescan:#}");

    let report = home.json(&["workers", "clean-orphaned"]);
    assert_eq!(identifiers(&report["deleted"]), ["demo"], "{report:#}");
    assert_eq!(report["deleted"][0]["library"], s(&demo), "{report:#}");
    assert_eq!(identifiers(&list(&home)), ["product"]);
    assert_eq!(show(&home, "product"), product_before);
    assert!(product.exists());
    home.fail(&["workers", "show", "demo"]);

    let again = home.json(&["workers", "clean-orphaned"]);
    assert_eq!(again["deleted"], json!([]), "{again:#}");
    let text = home.ok(&["workers", "clean-orphaned"]);
    assert!(text.contains("0 deleted"), "{text}");
    assert_eq!(identifiers(&list(&home)), ["product"]);
}

#[test]
fn clean_orphaned_text_output_names_deleted_workers() {
    let (home, _, demo) = registered_examples();
    std::fs::remove_file(&demo).unwrap();
    let text = home.ok(&["workers", "clean-orphaned"]);
    assert!(
        text.lines()
            .any(|l| l.contains("demo") && l.contains(&s(&demo))),
        "{text}"
    );
    assert!(text.contains("1 deleted"), "{text}");
}

// ---------------------------------------------------------------------------------
// home errors
// ---------------------------------------------------------------------------------

#[test]
fn missing_home_fails_saying_it_does_not_exist_and_mentions_init() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-home-here");
    let out = stask(&["--home", &s(&missing), "workers", "list"]);
    assert!(
        !out.status.success() && out.status.code().is_some(),
        "{}",
        describe("workers list", &out)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("does not exist"), "{err}");
    assert!(err.contains("init"), "{err}");
    assert!(err.contains(&s(&missing)), "{err}");
    assert!(!missing.exists(), "a read command must not create the home");
}

#[test]
fn home_that_is_a_regular_file_fails_with_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    let home = s(&file);
    for args in [&["workers", "list"][..], &["workers", "discover"]] {
        let mut all = vec!["--home", &home];
        all.extend_from_slice(args);
        let out = stask(&all);
        assert!(
            !out.status.success() && out.status.code().is_some(),
            "{}",
            describe(&args.join(" "), &out)
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&s(&file)), "{}: {err}", args.join(" "));
        assert!(
            err.contains("not a directory") || err.contains("Not a directory"),
            "{}: {err}",
            args.join(" ")
        );
    }
}

#[test]
fn init_on_a_home_path_that_is_a_regular_file_says_it_is_not_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    let out = stask(&["--home", &s(&file), "init"]);
    assert!(
        !out.status.success() && out.status.code().is_some(),
        "{}",
        describe("init", &out)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&s(&file)), "{err}");
    assert!(err.contains("not a directory"), "{err}");
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "x",
        "the file is left alone"
    );
}

// ---------------------------------------------------------------------------------
// isolation
// ---------------------------------------------------------------------------------

#[test]
fn host_survives_library_that_crashes_while_loading() {
    let home = Home::new();
    let demo = home.install(DEMO);
    let bad = home.install(CRASH_ON_LOAD);
    let out = home.run(&["workers", "discover"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stask itself must not crash\n{}",
        describe("workers discover", &out)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("1 registered, 1 skipped, 0 already registered"),
        "{text}"
    );
    assert!(
        text.contains(&s(&demo)) && text.contains(&s(&bad)),
        "{text}"
    );
    assert!(text.contains("SIGABRT"), "{text}");
}

// ---------------------------------------------------------------------------------
// a replaced library waits for an operator
// ---------------------------------------------------------------------------------

const REPLACEABLE_V1: &str = "stask_fixture_replaceable_v1";
const REPLACEABLE_V2: &str = "stask_fixture_replaceable_v2";

/// A home where worker `replaceable` was registered active from v1's file, which is
/// then gone, while v2 (same identifier, other contents) lies in another file, not yet
/// discovered. Returns the home and both paths.
fn replaced_library_home() -> (Home, PathBuf, PathBuf) {
    let home = Home::new();
    let v1 = home.install_as(REPLACEABLE_V1, "libreplaceable_v1.so");
    let report = home.json(&["workers", "discover", "--activate"]);
    assert_eq!(
        identifiers(&report["registered"]),
        ["replaceable"],
        "{report:#}"
    );
    assert_eq!(show(&home, "replaceable")["active"], true);
    std::fs::remove_file(&v1).unwrap();
    let v2 = home.install_as(REPLACEABLE_V2, "libreplaceable_v2.so");
    assert_ne!(sha256_of(&v2), sha256_of(&plugin_lib(REPLACEABLE_V1)));
    (home, v1, v2)
}

#[test]
fn a_vanished_library_replaced_by_other_contents_keeps_its_worker_inactive_saying_why() {
    let (home, _v1, v2) = replaced_library_home();
    let report = home.json(&["workers", "discover"]);
    assert_eq!(
        report["relocated"],
        json!([]),
        "other code is not a move: {report:#}"
    );
    let held = find_by(&report["held"], "identifier", "replaceable")
        .unwrap_or_else(|| panic!("not reported as held: {report:#}"));
    assert_eq!(held["active"], false, "{held:#}");
    assert_eq!(held["library"], s(&v2), "{held:#}");
    let reason = held["inactive_reason"].as_str().unwrap_or_default();
    for needle in ["libreplaceable_v1.so", "libreplaceable_v2.so", "activate"] {
        assert!(
            reason.contains(needle),
            "the reason names {needle}: {reason}"
        );
    }
    assert!(
        !reason.contains(&s(home.path())),
        "no path on the server in a reason API clients see: {reason}"
    );

    // list and show say so, in JSON and in text.
    let w = find_by(&list(&home), "identifier", "replaceable")
        .unwrap()
        .clone();
    assert_eq!(w["active"], false, "{w:#}");
    assert_eq!(w["inactive_reason"], reason, "{w:#}");
    assert_eq!(w["library"]["path"], s(&v2), "{w:#}");
    assert_eq!(show(&home, "replaceable")["inactive_reason"], reason);
    let text = home.ok(&["workers", "show", "replaceable"]);
    assert!(text.contains(reason), "{text}");
    assert!(
        text.contains("stask workers activate replaceable"),
        "says what to do: {text}"
    );
    let text = home.ok(&["workers", "list"]);
    assert!(text.contains(reason), "{text}");

    // Its tasks do not run (and creating one says why), and a repeated discover
    // leaves it as it is.
    let err = home.fail(&["tasks", "create", "replaceable", "version"]);
    assert!(err.contains("inactive") && err.contains(reason), "{err}");
    let again = home.json(&["workers", "discover", "--activate"]);
    assert_eq!(again["held"], json!([]), "{again:#}");
    assert_eq!(show(&home, "replaceable")["active"], false);

    // An operator activates it: the reason is gone and the new code runs.
    home.ok(&["workers", "activate", "replaceable"]);
    let w = show(&home, "replaceable");
    assert_eq!(w["active"], true, "{w:#}");
    assert_eq!(w["inactive_reason"], Value::Null, "{w:#}");
    let id = home.create_task("replaceable", "version", &json!({}), &[]);
    let summary = home.json(&["tasks", "process"]);
    assert_eq!(summary["completed"], 1, "{summary:#}");
    assert_eq!(home.task(id)["result"], json!({ "version": 2 }));
}

#[test]
fn discover_text_output_names_a_held_worker_its_reason_and_what_to_do() {
    let (home, _v1, v2) = replaced_library_home();
    let text = home.ok(&["workers", "discover"]);
    let line = text
        .lines()
        .find(|l| l.contains("replaceable") && l.contains(&s(&v2)))
        .unwrap_or_else(|| panic!("no line names the worker and its new library:\n{text}"));
    assert!(line.contains("libreplaceable_v1.so"), "{line}");
    assert!(
        line.contains("stask workers activate replaceable"),
        "{line}"
    );
    assert!(!text.contains("Relocated"), "{text}");
    assert_eq!(show(&home, "replaceable")["active"], false);
}

#[test]
fn a_library_moved_with_the_same_contents_is_followed_and_stays_active() {
    let home = Home::new();
    let old = home.install_as(REPLACEABLE_V1, "libreplaceable.so");
    home.json(&["workers", "discover", "--activate"]);
    std::fs::remove_file(&old).unwrap();
    let moved = home.install_as(REPLACEABLE_V1, "moved/libreplaceable.so");
    let report = home.json(&["workers", "discover"]);
    assert_eq!(report["held"], json!([]), "{report:#}");
    let change = find_by(&report["relocated"], "identifier", "replaceable")
        .unwrap_or_else(|| panic!("not relocated: {report:#}"));
    assert_eq!(change["library"], s(&moved), "{change:#}");
    let w = show(&home, "replaceable");
    assert_eq!(w["active"], true, "{w:#}");
    assert_eq!(w["inactive_reason"], Value::Null, "{w:#}");
}

#[test]
fn the_api_shows_why_a_replaced_worker_is_inactive_and_activation_clears_it() {
    let (home, _v1, _v2) = replaced_library_home();
    home.json(&["workers", "discover"]);
    let token = |role: &str| {
        home.json(&["tokens", "create", "--role", role, "--name", role])["token"]
            .as_str()
            .expect("a token")
            .to_owned()
    };
    let (viewer, admin) = (token("viewer"), token("admin"));
    let (_service, url) = home.serve_http(&[], &[]);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(COMMAND_TIMEOUT))
        .build()
        .into();
    let call = |method: &str, path: &str, token: &str| -> Value {
        let req = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{url}{path}"))
            .header("Authorization", format!("Bearer {token}"))
            .body(Vec::new())
            .unwrap();
        let mut res = agent.run(req).expect("the request is answered");
        let status = res.status().as_u16();
        let text = res.body_mut().read_to_string().expect("a body");
        assert_eq!(status, 200, "{method} {path}: {text}");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {path} ({e}): {text}"))
    };
    let reason = show(&home, "replaceable")["inactive_reason"]
        .as_str()
        .expect("held")
        .to_owned();
    let w = call("GET", "/api/v1/workers/replaceable", &viewer);
    assert_eq!(w["active"], false, "{w:#}");
    assert_eq!(w["inactive_reason"], reason, "{w:#}");
    let all = call("GET", "/api/v1/workers", &viewer);
    let listed = all
        .as_array()
        .or_else(|| all["workers"].as_array())
        .and_then(|a| a.iter().find(|w| w["identifier"] == "replaceable"))
        .unwrap_or_else(|| panic!("not listed: {all:#}"))
        .clone();
    assert_eq!(listed["inactive_reason"], reason, "{listed:#}");

    // The description documents the field the answers carry.
    let doc = call("GET", "/api/v1/openapi.json", &viewer);
    for schema in ["Worker", "WorkerSummary"] {
        let field = &doc["components"]["schemas"][schema]["properties"]["inactive_reason"];
        assert_eq!(field["type"], "string", "{schema}: {field:#}");
        assert_eq!(field["nullable"], true, "{schema}: {field:#}");
    }

    call("POST", "/api/v1/workers/replaceable/activate", &admin);
    let w = call("GET", "/api/v1/workers/replaceable", &viewer);
    assert_eq!(w["active"], true, "{w:#}");
    assert_eq!(w["inactive_reason"], Value::Null, "{w:#}");
}

// ---------------------------------------------------------------------------------
// plugin-api version mismatches name both versions and what to do
// ---------------------------------------------------------------------------------

/// This host's `stask-plugin-api` version, from the SDK's Cargo.toml.
fn host_api_version() -> (u64, u64, String) {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugin-api/Cargo.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let version = text
        .lines()
        .find_map(|l| l.strip_prefix("version = "))
        .expect("a version line")
        .trim_matches('"')
        .to_owned();
    let mut parts = version.split('.').map(|p| p.parse::<u64>().unwrap());
    (parts.next().unwrap(), parts.next().unwrap(), version)
}

/// Installs a copy of the abi-future fixture that declares stask-plugin-api `version`
/// (five characters, like the `1.0.0` it declares) instead: the fixture's `1.0.0`s are
/// patched in the copy (the version string of its root module, and the text of its
/// refusal, which nothing calls). abi_stable records `std;1.0.0` as the package of std
/// types in the layout, so occurrences preceded by `;` are left alone.
fn install_abi_future_claiming(home: &Home, version: &str) -> PathBuf {
    assert_eq!(version.len(), "1.0.0".len(), "{version}");
    let mut bytes = std::fs::read(plugin_lib(ABI_FUTURE)).unwrap();
    let at: Vec<usize> = bytes
        .windows(5)
        .enumerate()
        .filter(|(i, w)| *w == b"1.0.0" && (*i == 0 || bytes[i - 1] != b';'))
        .map(|(i, _)| i)
        .collect();
    assert!(!at.is_empty(), "the fixture declares no 1.0.0");
    for i in at {
        bytes[i..i + 5].copy_from_slice(version.as_bytes());
    }
    let dest = home.plugins_dir().join("libabi_next_minor.so");
    std::fs::write(&dest, bytes).unwrap();
    chmod(&dest, 0o755);
    dest
}

#[test]
fn a_library_of_a_newer_0x_minor_is_refused_naming_both_versions_and_what_to_do() {
    let (major, minor, host) = host_api_version();
    assert_eq!(major, 0, "this test is about 0.x releases");
    let theirs = format!("0.{}.0", minor + 1);
    let home = Home::new();
    home.install(DEMO);
    let bad = install_abi_future_claiming(&home, &theirs);
    let entry = assert_bad_file_reported_and_good_registered(&home, &bad, "demo");
    assert_eq!(entry["kind"], "incompatible-version", "{entry:#}");
    let reason = entry["reason"].as_str().unwrap();
    assert!(
        reason.contains(&theirs),
        "names the library's version: {reason}"
    );
    assert!(reason.contains(&host), "names the host's version: {reason}");
    assert!(
        reason.contains(&format!(
            "rebuild the plugin against stask-plugin-api 0.{minor}.x"
        )),
        "says what to do: {reason}"
    );
    assert!(
        reason.contains(&format!(
            "upgrade stask to a release built with stask-plugin-api 0.{}.x",
            minor + 1
        )),
        "a newer library can also be run by a newer stask: {reason}"
    );
}

#[test]
fn a_library_of_the_future_major_is_refused_saying_what_to_do() {
    let (_, minor, host) = host_api_version();
    let home = Home::new();
    home.install(DEMO);
    let bad = home.install(ABI_FUTURE);
    let entry = assert_bad_file_reported_and_good_registered(&home, &bad, "demo");
    let reason = entry["reason"].as_str().unwrap();
    assert!(
        reason.contains("1.0.0") && reason.contains(&host),
        "{reason}"
    );
    assert!(
        reason.contains(&format!(
            "rebuild the plugin against stask-plugin-api 0.{minor}.x"
        )) && reason.contains("upgrade stask"),
        "says what to do: {reason}"
    );
}

#[test]
fn changed_abi_layout_reason_names_the_declared_and_the_host_version() {
    let (_, _, host) = host_api_version();
    let home = Home::new();
    home.install(DEMO);
    let bad = home.install(ABI_CHANGED_LAYOUT);
    let entry = assert_bad_file_reported_and_good_registered(&home, &bad, "demo");
    assert_eq!(entry["kind"], "abi-mismatch", "{entry:#}");
    let reason = entry["reason"].as_str().unwrap();
    // The fixture declares the host's own version: only the layout differs.
    assert!(
        reason.contains(&format!("the library declares stask-plugin-api {host}")),
        "names the library's version: {reason}"
    );
    assert!(
        reason.contains(&format!("this host uses stask-plugin-api {host}")),
        "names the host's version: {reason}"
    );
    assert!(reason.contains("rebuild it"), "says what to do: {reason}");
}

// ---------------------------------------------------------------------------------
// A worker removed by clean-orphaned and discovered again
// ---------------------------------------------------------------------------------

/// The workers' settings as `workers settings ID --json` shows them.
fn settings_of(home: &Home, id: &str) -> Value {
    home.json(&["workers", "settings", id])
}

fn schedule_of(home: &Home, id: &str) -> Value {
    home.json(&["workers", "schedule", id])
}

#[test]
fn a_worker_removed_and_discovered_again_gets_back_its_settings_state_and_schedule() {
    let home = Home::new();
    let file = home.install_as(REPLACEABLE_V1, "libreplaceable.so");
    home.json(&["workers", "discover", "--activate"]);
    home.ok(&[
        "workers",
        "settings",
        "replaceable",
        "timeout_secs=42",
        "max_open_files=64",
    ]);
    let settings = settings_of(&home, "replaceable");
    let schedule = home.json(&[
        "workers",
        "schedule",
        "replaceable",
        "daily",
        "--at",
        "08:30",
        "--data",
        r#"{"n": 1}"#,
    ]);
    assert_eq!(schedule["paused"], false, "{schedule:#}");

    // The file goes, clean-orphaned removes the worker (and says what is kept).
    std::fs::remove_file(&file).unwrap();
    let text = home.ok(&["workers", "clean-orphaned"]);
    assert!(text.contains("replaceable"), "{text}");
    assert!(
        text.contains("settings"),
        "says the settings are kept: {text}"
    );
    assert!(find_by(&list(&home), "identifier", "replaceable").is_none());

    // The same file comes back: everything as it was, active again.
    home.install_as(REPLACEABLE_V1, "libreplaceable.so");
    let report = home.json(&["workers", "discover"]);
    assert_eq!(report["registered"], json!([]), "{report:#}");
    let restored = find_by(&report["restored"], "identifier", "replaceable")
        .unwrap_or_else(|| panic!("not reported as restored: {report:#}"));
    assert_eq!(restored["active"], true, "{restored:#}");
    assert_eq!(restored["dropped"], json!([]), "{restored:#}");
    let mut kept: Vec<&str> = restored["kept"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect();
    kept.sort();
    assert_eq!(kept, ["max_open_files", "timeout_secs"], "{restored:#}");
    assert_eq!(restored["schedule"], "active", "{restored:#}");
    let message = restored["message"].as_str().unwrap();
    assert!(
        message.contains("registered again with its earlier settings (2 kept, 0 dropped)"),
        "{message}"
    );
    let w = show(&home, "replaceable");
    assert_eq!(w["active"], true, "{w:#}");
    assert_eq!(w["inactive_reason"], Value::Null, "{w:#}");
    assert_eq!(settings_of(&home, "replaceable"), settings);
    assert_eq!(
        schedule_of(&home, "replaceable"),
        schedule,
        "the schedule comes back as it was"
    );
    let id = home.create_task("replaceable", "version", &json!({}), &[]);
    let summary = home.json(&["tasks", "process"]);
    assert_eq!(summary["completed"], 1, "{summary:#}");
    assert_eq!(home.task(id)["result"], json!({ "version": 1 }));

    // Another build of the library comes back instead: the settings and schedule come
    // back, but the worker waits for an operator, saying why.
    std::fs::remove_file(&file).unwrap();
    home.json(&["workers", "clean-orphaned"]);
    home.install_as(REPLACEABLE_V2, "libreplaceable.so");
    let text = home.ok(&["workers", "discover"]);
    let line = text
        .lines()
        .find(|l| l.contains("replaceable") && l.contains("registered again"))
        .unwrap_or_else(|| panic!("no line says it came back:\n{text}"));
    assert!(line.contains("inactive"), "{line}");
    assert!(
        text.contains("stask workers activate replaceable"),
        "says what to do: {text}"
    );
    let w = show(&home, "replaceable");
    assert_eq!(w["active"], false, "{w:#}");
    let reason = w["inactive_reason"].as_str().unwrap_or_default();
    assert!(reason.contains("different library"), "{reason}");
    assert!(
        !reason.contains(&s(home.path())),
        "no path on the server in a reason API clients see: {reason}"
    );
    assert_eq!(settings_of(&home, "replaceable"), settings);
    assert_eq!(schedule_of(&home, "replaceable"), schedule);
    home.ok(&["workers", "activate", "replaceable"]);
    assert_eq!(show(&home, "replaceable")["inactive_reason"], Value::Null);
}
