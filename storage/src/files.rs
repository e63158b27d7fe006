//! Result files: what a task's attempts left in their scratch directories, ingested
//! into the store when each attempt ends and served from there (never from a path on
//! disk).

use std::io::Read;

use crate::error::StoreError;

/// A stored result file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultFileInfo {
    /// This version of the file: a file stored again under the same name gets a new id,
    /// so a download that reads chunks by id never mixes two versions.
    pub id: i64,
    /// Its path relative to the scratch directory (`summary.json`, `parts/1.csv`).
    pub name: String,
    /// Size in bytes.
    pub size: u64,
}

/// Why a result file was not stored.
#[derive(Debug)]
pub enum PutFileError {
    /// The content is larger than the limit it was given (bytes).
    TooLarge {
        /// The limit.
        limit: u64,
    },
    /// Reading the content failed.
    Read(std::io::Error),
    /// The store failed.
    Store(StoreError),
}

impl From<StoreError> for PutFileError {
    fn from(e: StoreError) -> Self {
        PutFileError::Store(e)
    }
}

/// The result files of a store.
pub trait ResultFiles {
    /// Stores `content` as result file `name` of task `task`, replacing a file of the
    /// same name. The content is read and written in chunks (memory and time linear in
    /// its size); until the last chunk is stored the file is not listed, and a content
    /// longer than `limit` bytes stores nothing. Of two stores of the same name at once,
    /// the one that completes last wins. Returns the size stored.
    fn put_result_file(
        &mut self,
        task: i64,
        name: &str,
        content: &mut dyn Read,
        limit: u64,
    ) -> Result<u64, PutFileError>;

    /// The task's result files, by name.
    fn result_files(&self, task: i64) -> Result<Vec<ResultFileInfo>, StoreError>;

    /// Chunk `index` (from 0) of version `file` (an id from
    /// [`ResultFiles::result_files`]) of one of task `task`'s result files; `None` past
    /// its end, or when that version is gone (replaced or deleted: a download that gets
    /// fewer bytes than the listed size must fail). Chunks are at most
    /// [`RESULT_CHUNK_BYTES`] long; downloads stream them one by one.
    fn result_file_chunk(
        &self,
        task: i64,
        file: i64,
        index: u64,
    ) -> Result<Option<Vec<u8>>, StoreError>;
}

/// Largest chunk of a result file, in bytes.
pub const RESULT_CHUNK_BYTES: usize = 1 << 20;
