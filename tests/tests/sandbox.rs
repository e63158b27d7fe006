//! The sandbox: runners confine themselves (Landlock) to what their worker declares.
//!
//! The `misbehaving` fixture declares nothing, so beyond the baseline (system files,
//! its library, its slot's private directory) every access is refused: the home's
//! database, `/etc/shadow` (readable by permissions when the tests run as root, so only
//! the sandbox stops it), another worker's data and outbound TCP. These tests run with
//! `sandbox = "required"`, so a kernel without Landlock fails them rather than passing
//! unconfined.

use std::net::TcpListener;

use serde_json::{json, Value};
use stask_e2e::Home;

const DEMO: &str = "stask_worker_demo";
const MISBEHAVING: &str = "stask_fixture_misbehaving";
const PRODUCT: &str = "stask_worker_product";

fn home() -> Home {
    let home = Home::new();
    home.install_active(&[MISBEHAVING, DEMO, PRODUCT]);
    home
}

fn process(home: &Home, env: &[(&str, &str)]) -> Value {
    let mut all = vec![("STASK_SANDBOX", "required")];
    all.extend_from_slice(env);
    home.json_env(&["tasks", "process"], &all)
}

/// Runs a `touch` task with `data` and returns the task.
fn touch(home: &Home, data: Value) -> Value {
    let id = home.create_task("misbehaving", "touch", &data, &["--max-attempts", "1"]);
    process(home, &[]);
    home.task(id)
}

fn assert_refused(task: &Value, target: &str) {
    assert_eq!(task["status"], "failed", "{task:#}");
    let error = task["error"].as_str().unwrap_or_default();
    assert!(
        error.contains(target) && error.contains("Permission denied"),
        "the error names {target}: {error}"
    );
    assert!(
        error.contains("sandbox") && error.contains("sandbox_reads"),
        "the error says how the sandbox can be changed: {error}"
    );
}

#[test]
fn the_database_and_the_home_are_out_of_reach() {
    let home = home();
    let db = home.db_path();
    assert_refused(&touch(&home, json!({ "read": db })), db.to_str().unwrap());
    let root = home.path().to_str().unwrap().to_owned();
    assert_refused(&touch(&home, json!({ "read": root })), &root);
    let key = home.path().join("secret.key");
    let t = touch(&home, json!({ "write": key }));
    assert_eq!(t["status"], "failed", "{t:#}");
}

#[test]
fn system_secrets_are_out_of_reach_even_for_root() {
    let home = home();
    assert!(
        std::fs::read("/etc/shadow").is_ok() || unsafe { libc::geteuid() } != 0,
        "as root, only the sandbox keeps /etc/shadow closed"
    );
    assert_refused(
        &touch(&home, json!({ "read": "/etc/shadow" })),
        "/etc/shadow",
    );
}

#[test]
fn another_workers_data_and_other_slots_results_are_out_of_reach() {
    let home = home();
    // Data of another worker: the product worker's import directory.
    let imports = home.path().join("imports");
    std::fs::create_dir_all(&imports).unwrap();
    std::fs::write(imports.join("products.csv"), "sku,name\n1,a\n").unwrap();
    let file = imports.join("products.csv");
    assert_refused(
        &touch(&home, json!({ "read": file })),
        file.to_str().unwrap(),
    );
    // The scratch area holds every running task's result files.
    let scratch = home.path().join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    assert_refused(
        &touch(&home, json!({ "read": scratch })),
        scratch.to_str().unwrap(),
    );
}

#[test]
fn outbound_connections_are_refused_unless_an_operator_allows_them() {
    let home = home();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    assert_refused(&touch(&home, json!({ "connect": address })), &address);

    // Widened by an operator: the same access now works.
    home.ok(&[
        "workers",
        "settings",
        "misbehaving",
        &format!("sandbox_connects={address}"),
    ]);
    let t = touch(&home, json!({ "connect": address }));
    assert_eq!(t["status"], "completed", "{t:#}");
}

#[test]
fn operators_widen_and_narrow_paths_in_the_settings() {
    let home = home();
    let data = home.path().join("shared-data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("in.txt"), "x").unwrap();
    let file = data.join("in.txt");
    assert_refused(
        &touch(&home, json!({ "read": file })),
        file.to_str().unwrap(),
    );
    home.ok(&[
        "workers",
        "settings",
        "misbehaving",
        "sandbox_reads=shared-data",
    ]);
    let t = touch(&home, json!({ "read": file }));
    assert_eq!(t["status"], "completed", "{t:#}");
    let out = data.join("out.txt");
    assert_eq!(touch(&home, json!({ "write": out }))["status"], "failed");
    home.ok(&[
        "workers",
        "settings",
        "misbehaving",
        "sandbox_writes=shared-data",
    ]);
    assert_eq!(touch(&home, json!({ "write": out }))["status"], "completed");
    assert!(out.exists());

    // Nobody can grant the home itself.
    home.ok(&["workers", "settings", "misbehaving", "sandbox_reads=."]);
    let t = touch(&home, json!({ "read": file }));
    assert_eq!(t["status"], "failed", "{t:#}");
    let e = t["error"].as_str().unwrap_or_default();
    assert!(e.contains("contains the stask home"), "{e}");
}

#[test]
fn the_example_workers_run_confined_with_what_they_declare() {
    let home = home();
    let imports = home.path().join("imports");
    std::fs::create_dir_all(&imports).unwrap();
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../plugins/product-import/examples/products.csv"
        ),
        imports.join("products.csv"),
    )
    .unwrap();
    let product = home.create_task("product", "import", &json!({ "file": "products.csv" }), &[]);
    let demo = home.create_task("demo", "run", &json!({ "steps": 2, "step_ms": 1 }), &[]);
    let summary = process(&home, &[]);
    assert_eq!(summary["completed"], 2, "{summary:#}");
    for id in [product, demo] {
        let t = home.task(id);
        assert_eq!(t["status"], "completed", "{t:#}");
        assert!(
            !t["result_files"].as_array().unwrap().is_empty(),
            "result files are written inside the sandbox: {t:#}"
        );
    }
}

#[test]
fn a_hard_link_to_the_database_is_refused_before_it_exists() {
    let home = home();
    let id = home.create_task(
        "misbehaving",
        "leave-links",
        &json!({}),
        &["--max-attempts", "1"],
    );
    process(&home, &[]);
    let t = home.task(id);
    assert_eq!(t["status"], "failed", "{t:#}");
    let e = t["error"].as_str().unwrap_or_default();
    assert!(e.contains("cannot create db-hard"), "{e}");
}

#[test]
fn the_sandbox_mode_is_a_host_setting_with_a_clear_error() {
    let home = home();
    let out = home.run_env(&["tasks", "process"], &[("STASK_SANDBOX", "strict")]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("STASK_SANDBOX") && err.contains("required, best-effort or off"),
        "{err}"
    );
    let config = home.json(&["config"]);
    let text = config.to_string();
    assert!(
        text.contains("sandbox") && text.contains("best-effort"),
        "{config:#}"
    );
}

#[test]
fn stask_check_says_whether_the_kernel_can_confine_runners() {
    let home = home();
    let report = home.json(&["check"]);
    let finding = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["check"] == "sandbox")
        .unwrap_or_else(|| panic!("no sandbox finding: {report:#}"));
    // The tests above require Landlock, so this kernel has it.
    assert_eq!(finding["ok"], true, "{finding:#}");
    assert!(
        finding["message"]
            .as_str()
            .unwrap()
            .contains("Landlock (ABI "),
        "{finding:#}"
    );
}

#[test]
fn other_processes_files_in_proc_are_out_of_reach_the_services_environment_included() {
    let home = home();
    let mut svc = home.serve(&[], &[("STASK_SANDBOX", "required")]);
    let pid = svc.pid();
    let environ = format!("/proc/{pid}/environ");
    let maps = format!("/proc/{pid}/maps");
    let ids: Vec<i64> = [&environ, &maps]
        .iter()
        .map(|p| {
            home.create_task(
                "misbehaving",
                "touch",
                &json!({ "read": p }),
                &["--max-attempts", "1"],
            )
        })
        .collect();
    let own = home.create_task(
        "misbehaving",
        "touch",
        &json!({ "read": "/proc/self/status" }),
        &["--max-attempts", "1"],
    );
    stask_e2e::wait_until(
        std::time::Duration::from_secs(30),
        "the tasks ended",
        || {
            ids.iter()
                .chain([&own])
                .all(|id| {
                    let s = home.task(*id)["status"].clone();
                    s == "failed" || s == "completed"
                })
                .then_some(())
        },
    );
    assert_refused(&home.task(ids[0]), &environ);
    assert_refused(&home.task(ids[1]), &maps);
    assert_eq!(
        home.task(own)["status"],
        "completed",
        "its own /proc/self is readable"
    );
    svc.signal(libc::SIGTERM);
    svc.wait(std::time::Duration::from_secs(30));
}
