//! Helpers shared by the storage unit tests.

use super::SqliteStore;
use crate::conformance::{lib, meta};
use crate::Registry;

/// A fresh database in a temporary directory with the named workers registered and
/// active, so their tasks can be claimed. Keep the directory alive as long as the store.
pub(crate) fn store_with_workers(names: &[&str]) -> (tempfile::TempDir, SqliteStore) {
    store_with_workers_as(names, "{}", true)
}

/// Like [`store_with_workers`], with the workers' manifest JSON and active flag.
pub(crate) fn store_with_workers_as(
    names: &[&str],
    manifest: &str,
    active: bool,
) -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let mut store = SqliteStore::open(&dir.path().join("stask.db")).unwrap();
    let workers: Vec<_> = names
        .iter()
        .map(|n| ((*n).to_owned(), meta(manifest), lib(), active))
        .collect();
    store.insert_workers(&workers).unwrap();
    (dir, store)
}
