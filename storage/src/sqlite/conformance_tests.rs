//! The conformance suite against SQLite: a fresh database file per case.

use crate::conformance::Harness;
use crate::Store;

/// A database in a temporary directory.
pub struct SqliteHarness {
    dir: tempfile::TempDir,
}

impl SqliteHarness {
    pub fn new() -> Self {
        SqliteHarness {
            dir: tempfile::tempdir().unwrap(),
        }
    }
}

impl Harness for SqliteHarness {
    fn open(&self) -> Box<dyn Store> {
        crate::open(self.dir.path().join("stask.db").to_str().unwrap()).unwrap()
    }

    fn check_released(&self, bytes: u64) {
        // Incremental auto-vacuum: the pages of the deleted rows go back.
        assert!(bytes > 3_000_000, "gave back only {bytes} bytes");
    }
}

crate::conformance_tests!(super::SqliteHarness::new());
