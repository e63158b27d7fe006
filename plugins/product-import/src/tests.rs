//! Runs the worker through the SDK's harness against real files in a temporary import
//! directory.

use std::path::Path;

use stask_plugin_api::prelude::*;
use stask_plugin_api::testing::{Outcome, TestRun};
use stask_plugin_api::Level;
use tempfile::TempDir;

use crate::ProductImport;

fn import_dir(files: &[(&str, &str)]) -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

fn run_import(dir: &Path, file: &str, settings: Value) -> Outcome {
    let mut settings = settings;
    settings["import_dir"] = json!(dir.to_str().unwrap());
    TestRun::new(&ProductImport, "import")
        .data(json!({ "file": file }))
        .settings(settings)
        .run()
}

fn error_of(outcome: &Outcome) -> &str {
    match &outcome.result {
        Err(e) => e,
        Ok(v) => panic!("expected an error, got {v}"),
    }
}

const THREE: &str = "sku,name,price,stock\nA-1,Apple,0.50,10\nB-2,Banana,0.25,4\nC-3,Cherry,2,1\n";

#[test]
fn manifest_is_valid_and_import_is_scheduled() {
    let m = ProductImport.manifest();
    m.validate().unwrap();
    assert_eq!(m.identifier, "product");
    assert_eq!(m.scheduled_action().unwrap().name, "import");
    assert_eq!(m.version, env!("CARGO_PKG_VERSION"));
}

#[test]
fn happy_path_reports_each_row_and_writes_the_summary() {
    let dir = import_dir(&[("products.csv", THREE)]);
    let out = run_import(dir.path(), "products.csv", json!({}));
    assert_eq!(
        out.result,
        Ok(json!({ "imported": 3, "summary_file": "summary.json" }))
    );
    let progress: Vec<_> = out.progress().collect();
    assert_eq!(
        progress,
        vec![
            (1, 3, "Processing products..."),
            (2, 3, "Processing products..."),
            (3, 3, "Processing products..."),
        ]
    );
    let logs: Vec<_> = out.logs().collect();
    assert_eq!(
        logs,
        vec![
            (Level::Info, "Importing **3** products from products.csv"),
            (Level::Info, "Imported **3** products"),
        ]
    );
    let summary: Value =
        serde_json_from(&std::fs::read_to_string(out.result_file("summary.json")).unwrap());
    assert_eq!(
        summary,
        json!({
            "file": dir.path().join("products.csv").display().to_string(),
            "imported": 3,
            "duplicates": 0,
            "total_stock": 15,
            "total_value": 8.0,
            "skus_sample": ["A-1", "B-2", "C-3"],
        })
    );
}

fn serde_json_from(text: &str) -> Value {
    stask_plugin_api::serde_json::from_str(text).unwrap()
}

#[test]
fn bundled_sample_file_imports_cleanly() {
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/products.csv");
    let out = TestRun::new(&ProductImport, "import")
        .data(json!({ "file": sample.to_str().unwrap() }))
        .run();
    let result = out.result.as_ref().unwrap();
    assert_eq!(result["imported"], json!(25));
    assert_eq!(out.progress().count(), 25);
}

#[test]
fn absolute_path_ignores_import_dir_and_optional_columns_may_be_missing() {
    let dir = import_dir(&[("p.csv", "name,sku\nPear,P-1\n")]);
    let out = TestRun::new(&ProductImport, "import")
        .data(json!({ "file": dir.path().join("p.csv").to_str().unwrap() }))
        .settings(json!({ "import_dir": "/nonexistent" }))
        .run();
    assert_eq!(out.result.as_ref().unwrap()["imported"], json!(1));
    let summary =
        serde_json_from(&std::fs::read_to_string(out.result_file("summary.json")).unwrap());
    assert_eq!(summary["total_stock"], json!(0));
    assert_eq!(summary["skus_sample"], json!(["P-1"]));
}

#[test]
fn missing_file_names_path_and_import_dir() {
    let dir = import_dir(&[]);
    let out = run_import(dir.path(), "nope.csv", json!({}));
    assert_eq!(
        error_of(&out),
        format!(
            "products file '{}' does not exist (relative paths are resolved against import_dir '{}')",
            dir.path().join("nope.csv").display(),
            dir.path().display()
        )
    );
}

#[test]
fn missing_file_field_is_refused() {
    let out = TestRun::new(&ProductImport, "import").run();
    assert_eq!(error_of(&out), "task data is missing the 'file' field");
}

#[test]
fn malformed_price_names_the_line() {
    let text = "sku,name,price,stock\nA-1,Apple,1,1\nB-2,Banana,2,2\nC-3,Cherry,abc,3\n";
    let dir = import_dir(&[("products.csv", text)]);
    let out = run_import(dir.path(), "products.csv", json!({}));
    assert_eq!(
        error_of(&out),
        "products.csv line 4: price 'abc' is not a number"
    );
    // The rows before the bad one were reported.
    assert_eq!(out.progress().count(), 2);
}

#[test]
fn line_numbers_count_multi_line_records_from_their_start() {
    let text = "sku,name,stock\nA-1,\"Apple\nGreen\",1\nB-2,Banana,-5\n";
    let dir = import_dir(&[("products.csv", text)]);
    let out = run_import(dir.path(), "products.csv", json!({}));
    assert_eq!(
        error_of(&out),
        "products.csv line 4: stock '-5' is not a non-negative integer"
    );
}

#[test]
fn empty_sku_and_wrong_field_count_are_reported_with_lines() {
    let dir = import_dir(&[
        ("empty-sku.csv", "sku,name\nA-1,Apple\n ,Nameless\n"),
        ("short.csv", "sku,name,price\nA-1,Apple,1\nB-2,Banana\n"),
    ]);
    let out = run_import(dir.path(), "empty-sku.csv", json!({}));
    assert_eq!(error_of(&out), "empty-sku.csv line 3: sku is empty");
    let out = run_import(dir.path(), "short.csv", json!({}));
    assert_eq!(
        error_of(&out),
        "short.csv line 3: expected 3 fields like the header, found 2"
    );
}

#[test]
fn missing_column_shows_the_header() {
    let dir = import_dir(&[("products.csv", "code,name,price\nA-1,Apple,1\n")]);
    let out = run_import(dir.path(), "products.csv", json!({}));
    assert_eq!(
        error_of(&out),
        "products.csv: missing required column 'sku' (header is: code,name,price)"
    );
}

#[test]
fn wrong_delimiter_gets_a_hint() {
    let dir = import_dir(&[("products.csv", "sku;name\nA-1;Apple\n")]);
    let out = run_import(dir.path(), "products.csv", json!({}));
    assert_eq!(
        error_of(&out),
        "products.csv: missing required column 'sku' (header is: sku;name); is the delimiter setting ',' right for this file?"
    );
}

#[test]
fn empty_file_is_a_clear_error() {
    let dir = import_dir(&[("products.csv", "")]);
    let out = run_import(dir.path(), "products.csv", json!({}));
    assert_eq!(
        error_of(&out),
        "products.csv is empty: expected a header row with at least the columns 'sku' and 'name'"
    );
}

#[test]
fn header_only_imports_nothing_with_a_warning() {
    let dir = import_dir(&[("products.csv", "sku,name\n")]);
    let out = run_import(dir.path(), "products.csv", json!({}));
    assert_eq!(out.result.as_ref().unwrap()["imported"], json!(0));
    assert!(out
        .logs()
        .any(|(l, m)| l == Level::Warn && m.contains("no product rows")));
}

#[test]
fn duplicate_skus_keep_the_last_row_and_warn() {
    let text = "sku,name,price,stock\nA-1,Apple,1,1\nB-2,Banana,1,1\nA-1,Apple (new),2,5\n";
    let dir = import_dir(&[("products.csv", text)]);
    let out = run_import(dir.path(), "products.csv", json!({}));
    assert_eq!(out.result.as_ref().unwrap()["imported"], json!(2));
    assert!(out
        .logs()
        .any(|(l, m)| l == Level::Warn
            && m == "Duplicate SKU **A-1** on lines 2 and 4: keeping line 4"));
    let summary =
        serde_json_from(&std::fs::read_to_string(out.result_file("summary.json")).unwrap());
    assert_eq!(summary["duplicates"], json!(1));
    assert_eq!(summary["total_stock"], json!(6));
    assert_eq!(summary["total_value"], json!(11.0));
    assert_eq!(summary["skus_sample"], json!(["A-1", "B-2"]));
}

#[test]
fn cancellation_stops_after_k_rows() {
    let dir = import_dir(&[("products.csv", THREE)]);
    let out = TestRun::new(&ProductImport, "import")
        .data(json!({ "file": "products.csv" }))
        .settings(json!({ "import_dir": dir.path().to_str().unwrap() }))
        .cancel_after_progress(2)
        .run();
    assert_eq!(out.result, Err("cancelled".to_owned()));
    assert_eq!(out.progress().count(), 2);
    assert!(!out.result_file("summary.json").exists());
}

#[test]
fn cancellation_is_honoured_during_the_row_delay() {
    let dir = import_dir(&[("products.csv", THREE)]);
    let started = std::time::Instant::now();
    let out = TestRun::new(&ProductImport, "import")
        .data(json!({ "file": "products.csv" }))
        .settings(json!({ "import_dir": dir.path().to_str().unwrap(), "row_delay_ms": 60_000 }))
        .cancel_after_progress(1)
        .run();
    assert_eq!(out.result, Err("cancelled".to_owned()));
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

#[test]
fn semicolon_delimiter_works() {
    let dir = import_dir(&[("products.csv", "sku;name;price\nA-1;Apple;1,5\n")]);
    let out = run_import(dir.path(), "products.csv", json!({ "delimiter": ";" }));
    // "1,5" is a decimal comma, which is not a number here: the delimiter split fields
    // correctly, so the error is about the value, on the right line.
    assert_eq!(
        error_of(&out),
        "products.csv line 2: price '1,5' is not a number"
    );
    let dir = import_dir(&[(
        "products.csv",
        "sku;name;price\nA-1;Apple;1.5\nB-2;Banana;2\n",
    )]);
    let out = run_import(dir.path(), "products.csv", json!({ "delimiter": ";" }));
    assert_eq!(out.result.as_ref().unwrap()["imported"], json!(2));
}

#[test]
fn bad_delimiters_are_refused() {
    let dir = import_dir(&[("products.csv", THREE)]);
    for bad in [";;", "", "é"] {
        let out = run_import(dir.path(), "products.csv", json!({ "delimiter": bad }));
        assert!(
            error_of(&out).starts_with("setting 'delimiter' must be exactly one ASCII character"),
            "{bad:?}: {}",
            error_of(&out)
        );
    }
    let out = run_import(dir.path(), "products.csv", json!({ "delimiter": "\"" }));
    assert!(error_of(&out).contains("part of the CSV syntax"));
}

#[test]
fn row_delay_pauses_each_row() {
    let dir = import_dir(&[("products.csv", THREE)]);
    let started = std::time::Instant::now();
    let out = run_import(dir.path(), "products.csv", json!({ "row_delay_ms": 20 }));
    assert!(out.result.is_ok());
    assert!(started.elapsed() >= std::time::Duration::from_millis(60));
}
