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
}

crate::conformance_tests!(super::SqliteHarness::new());
