//! Result files as chunks of at most 1 MiB (`result_files`, `result_chunks`).
//!
//! Each chunk is committed on its own, so a large file never holds the write lock for
//! long (claims of the engine go on between chunks); the file is listed only once
//! complete, and a file of the same name is replaced in the transaction that completes
//! the new one.

use std::io::Read;

use rusqlite::{params, OptionalExtension, TransactionBehavior};

use super::{Context, SqliteStore};
use crate::error::StoreError;
use crate::files::{PutFileError, ResultFileInfo, ResultFiles, RESULT_CHUNK_BYTES};

/// Reads up to a full chunk (short only at the end of the content).
fn read_chunk(content: &mut dyn Read, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    buf.clear();
    buf.resize(RESULT_CHUNK_BYTES, 0);
    let mut filled = 0;
    while filled < buf.len() {
        match content.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(filled);
    Ok(filled)
}

impl SqliteStore {
    /// Removes an incomplete file's rows (after a failed or refused ingest).
    fn drop_file(&mut self, file_id: i64) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .context("begin removing result file")?;
        tx.execute("DELETE FROM result_chunks WHERE file_id = ?1", [file_id])
            .context("remove result file")?;
        tx.execute("DELETE FROM result_files WHERE id = ?1", [file_id])
            .context("remove result file")?;
        tx.commit().context("commit removing result file")
    }
}

impl ResultFiles for SqliteStore {
    fn put_result_file(
        &mut self,
        task: i64,
        name: &str,
        content: &mut dyn Read,
        limit: u64,
    ) -> Result<u64, PutFileError> {
        let inserted = self
            .conn
            .execute(
                "INSERT INTO result_files (task_id, name, created_at)
                 SELECT ?1, ?2, ?3 WHERE EXISTS (SELECT 1 FROM tasks WHERE id = ?1)",
                params![task, name, crate::now_ms()],
            )
            .context("store result file")?;
        if inserted == 0 {
            return Err(PutFileError::Store(StoreError::new(
                crate::error::ErrorKind::Other,
                "store result file",
                format!("task {task} does not exist"),
            )));
        }
        let file_id = self.conn.last_insert_rowid();
        let mut buf = Vec::with_capacity(RESULT_CHUNK_BYTES);
        let mut size: u64 = 0;
        let mut index: i64 = 0;
        let failure = loop {
            let n = match read_chunk(content, &mut buf) {
                Ok(n) => n,
                Err(e) => break Some(PutFileError::Read(e)),
            };
            if n == 0 {
                break None;
            }
            size += n as u64;
            if size > limit {
                break Some(PutFileError::TooLarge { limit });
            }
            if let Err(e) = self
                .conn
                .prepare_cached(
                    "INSERT INTO result_chunks (file_id, idx, data) VALUES (?1, ?2, ?3)",
                )
                .and_then(|mut s| s.execute(params![file_id, index, buf]))
                .context("store result file")
            {
                break Some(e.into());
            }
            index += 1;
        };
        if let Some(e) = failure {
            // Best effort: an incomplete file is never listed, and goes with its task.
            let _ = self.drop_file(file_id);
            return Err(e);
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .context("begin storing result file")?;
        // Only complete versions are replaced: an incomplete one belongs to a store still
        // writing (it replaces this one when it completes) or to one that died (it goes
        // with its task).
        tx.execute(
            "DELETE FROM result_chunks WHERE file_id IN (SELECT id FROM result_files
                WHERE task_id = ?1 AND name = ?2 AND id <> ?3 AND complete = 1)",
            params![task, name, file_id],
        )
        .context("replace result file")?;
        tx.execute(
            "DELETE FROM result_files
             WHERE task_id = ?1 AND name = ?2 AND id <> ?3 AND complete = 1",
            params![task, name, file_id],
        )
        .context("replace result file")?;
        let completed = tx
            .execute(
                "UPDATE result_files SET size = ?2, complete = 1 WHERE id = ?1",
                params![file_id, size as i64],
            )
            .context("store result file")?;
        if completed != 1 {
            // Its row went with its task meanwhile: nothing to keep.
            return Err(PutFileError::Store(StoreError::new(
                crate::error::ErrorKind::Other,
                "store result file",
                format!("task {task} was deleted while its result file '{name}' was stored"),
            )));
        }
        tx.commit().context("commit result file")?;
        Ok(size)
    }

    fn result_files(&self, task: i64) -> Result<Vec<ResultFileInfo>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, name, size FROM result_files WHERE task_id = ?1 AND complete = 1
                 ORDER BY name",
            )
            .context("list result files")?;
        let rows = stmt
            .query_map([task], |r| {
                Ok(ResultFileInfo {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    size: r.get::<_, i64>(2)? as u64,
                })
            })
            .context("list result files")?;
        rows.collect::<Result<_, _>>().context("list result files")
    }

    fn result_file_chunk(
        &self,
        task: i64,
        file: i64,
        index: u64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        self.conn
            .prepare_cached(
                "SELECT c.data FROM result_files f JOIN result_chunks c ON c.file_id = f.id
                 WHERE f.id = ?2 AND f.task_id = ?1 AND f.complete = 1 AND c.idx = ?3",
            )
            .and_then(|mut s| {
                s.query_row(params![task, file, index as i64], |r| r.get(0))
                    .optional()
            })
            .context("read result file")
    }
}
