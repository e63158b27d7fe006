//! Result files on PostgreSQL, as chunks of at most [`RESULT_CHUNK_BYTES`] in `BYTEA`
//! (`result_files`, `result_chunks`).
//!
//! As in SQLite, each chunk is committed on its own, so a large file never holds locks
//! for long; the file is listed only once complete, and a file of the same name is
//! replaced in the transaction that completes the new one.
//!
//! What differs from SQLite, where one writer at a time makes the completing
//! transaction atomic by itself:
//! * The completing transaction first takes a key-share lock on the task's row, and
//!   fails (storing nothing) when the task is gone: a clean-up on another host locks its
//!   tasks before it deletes their files, so a file completes either before the
//!   clean-up looks (and goes with its task) or not at all, never left behind without
//!   its task. The lock blocks only deletes of the task, not its updates.
//! * It then locks every version of the name (`FOR UPDATE`, in id order), so of two
//!   stores of the same name completing at once one waits for the other and then
//!   replaces it: the one that completes last wins, as the interface says.
//! * A file whose task went away while it was stored has its chunks removed too.

use std::io::Read;

use super::{Context, PgStore};
use crate::error::{ErrorKind, StoreError};
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

fn task_gone(task: i64, name: &str) -> PutFileError {
    PutFileError::Store(StoreError::new(
        ErrorKind::Other,
        "store result file",
        format!("task {task} was deleted while its result file '{name}' was stored"),
    ))
}

impl PgStore {
    /// Removes an incomplete file's rows (after a failed or refused ingest).
    fn drop_file(&self, file_id: i64) -> Result<(), StoreError> {
        let mut client = self.client()?;
        let mut tx = client.transaction().context("begin removing result file")?;
        tx.execute("DELETE FROM result_chunks WHERE file_id = $1", &[&file_id])
            .context("remove result file")?;
        tx.execute("DELETE FROM result_files WHERE id = $1", &[&file_id])
            .context("remove result file")?;
        tx.commit().context("commit removing result file")
    }

    /// Stores the chunks of file `file_id`, each committed on its own; returns the size.
    fn put_chunks(
        &self,
        file_id: i64,
        content: &mut dyn Read,
        limit: u64,
    ) -> Result<u64, PutFileError> {
        let mut buf = Vec::with_capacity(RESULT_CHUNK_BYTES);
        let mut size: u64 = 0;
        let mut index: i64 = 0;
        loop {
            let n = read_chunk(content, &mut buf).map_err(PutFileError::Read)?;
            if n == 0 {
                return Ok(size);
            }
            size += n as u64;
            if size > limit {
                return Err(PutFileError::TooLarge { limit });
            }
            self.client()?
                .execute(
                    "INSERT INTO result_chunks (file_id, idx, data) VALUES ($1, $2, $3)",
                    &[&file_id, &index, &buf.as_slice()],
                )
                .context("store result file")?;
            index += 1;
        }
    }

    /// Lists version `file_id` of `name` as complete with `size`, replacing the complete
    /// versions of the same name, in one transaction (see the module docs for the
    /// locks). Returns false, having changed nothing, when the task or this version is
    /// gone.
    fn complete_file(
        &self,
        task: i64,
        name: &str,
        file_id: i64,
        size: u64,
    ) -> Result<bool, StoreError> {
        let mut client = self.client()?;
        let mut tx = client.transaction().context("begin storing result file")?;
        let exists = tx
            .query_opt("SELECT 1 FROM tasks WHERE id = $1 FOR KEY SHARE", &[&task])
            .context("store result file")?;
        if exists.is_none() {
            return Ok(false);
        }
        let versions: Vec<i64> = tx
            .query(
                "SELECT id FROM result_files WHERE task_id = $1 AND name = $2
                 ORDER BY id FOR UPDATE",
                &[&task, &name],
            )
            .context("store result file")?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if !versions.contains(&file_id) {
            return Ok(false);
        }
        // Only complete versions are replaced: an incomplete one belongs to a store still
        // writing (it replaces this one when it completes) or to one that died (it goes
        // with its task).
        let replaced: Vec<i64> = tx
            .query(
                "DELETE FROM result_files
                 WHERE task_id = $1 AND name = $2 AND id <> $3 AND complete
                 RETURNING id",
                &[&task, &name, &file_id],
            )
            .context("replace result file")?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if !replaced.is_empty() {
            tx.execute(
                "DELETE FROM result_chunks WHERE file_id = ANY($1)",
                &[&replaced],
            )
            .context("replace result file")?;
        }
        let completed = tx
            .execute(
                "UPDATE result_files SET size = $2, complete = TRUE WHERE id = $1",
                &[&file_id, &(size as i64)],
            )
            .context("store result file")?;
        if completed != 1 {
            return Ok(false);
        }
        tx.commit().context("commit result file")?;
        Ok(true)
    }
}

impl ResultFiles for PgStore {
    fn put_result_file(
        &mut self,
        task: i64,
        name: &str,
        content: &mut dyn Read,
        limit: u64,
    ) -> Result<u64, PutFileError> {
        let file_id: Option<i64> = self
            .client()?
            .query_opt(
                "INSERT INTO result_files (task_id, name, created_at)
                 SELECT $1, $2, $3 WHERE EXISTS (SELECT 1 FROM tasks WHERE id = $1)
                 RETURNING id",
                &[&task, &name, &crate::now_ms()],
            )
            .context("store result file")?
            .map(|r| r.get(0));
        let Some(file_id) = file_id else {
            return Err(PutFileError::Store(StoreError::new(
                ErrorKind::Other,
                "store result file",
                format!("task {task} does not exist"),
            )));
        };
        let stored = self.put_chunks(file_id, content, limit).and_then(|size| {
            match self.complete_file(task, name, file_id, size) {
                Ok(true) => Ok(size),
                Ok(false) => Err(task_gone(task, name)),
                Err(e) => Err(e.into()),
            }
        });
        if stored.is_err() {
            // Best effort: an incomplete file is never listed, and goes with its task.
            let _ = self.drop_file(file_id);
        }
        stored
    }

    fn result_files(&self, task: i64) -> Result<Vec<ResultFileInfo>, StoreError> {
        let rows = self
            .client()?
            .query(
                "SELECT id, name, size FROM result_files WHERE task_id = $1 AND complete
                 ORDER BY name COLLATE \"C\"",
                &[&task],
            )
            .context("list result files")?;
        Ok(rows
            .iter()
            .map(|r| ResultFileInfo {
                id: r.get(0),
                name: r.get(1),
                size: r.get::<_, i64>(2) as u64,
            })
            .collect())
    }

    fn result_file_chunk(
        &self,
        task: i64,
        file: i64,
        index: u64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let Ok(index) = i64::try_from(index) else {
            return Ok(None);
        };
        let row = self
            .client()?
            .query_opt(
                "SELECT c.data FROM result_files f JOIN result_chunks c ON c.file_id = f.id
                 WHERE f.id = $2 AND f.task_id = $1 AND f.complete AND c.idx = $3",
                &[&task, &file, &index],
            )
            .context("read result file")?;
        Ok(row.map(|r| r.get(0)))
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::sync::Barrier;

    use super::super::conformance_tests::PgHarness;
    use super::super::PgStore;
    use crate::conformance::{insert, register, task, Harness};
    use crate::{LogLine, PutFileError, Store, RESULT_CHUNK_BYTES};

    fn rows(store: &PgStore, table: &str) -> i64 {
        store
            .client()
            .unwrap()
            .query_one(&format!("SELECT COUNT(*) FROM {table}"), &[])
            .unwrap()
            .get(0)
    }

    /// Two hosts store the same name at once, many times: one version is listed, whole.
    #[test]
    fn stores_of_one_name_at_once_leave_one_whole_version() {
        let h = PgHarness::new();
        let mut setup = h.open();
        register(&mut *setup, &["w"], true);
        let id = insert(&mut *setup, &task("w", 0), 1)[0];
        let contents = [vec![1u8; RESULT_CHUNK_BYTES + 3], vec![2u8; 7]];
        let barrier = Barrier::new(2);
        let mut hosts: Vec<Box<dyn Store>> = (0..2).map(|_| h.open()).collect();
        for _ in 0..10 {
            std::thread::scope(|scope| {
                for (store, content) in hosts.iter_mut().zip(&contents) {
                    let barrier = &barrier;
                    scope.spawn(move || {
                        barrier.wait();
                        store
                            .put_result_file(id, "out.bin", &mut &content[..], u64::MAX)
                            .unwrap();
                    });
                }
            });
            let files = setup.result_files(id).unwrap();
            assert_eq!(files.len(), 1, "{files:?}");
            let mut got = Vec::new();
            let mut i = 0;
            while let Some(chunk) = setup.result_file_chunk(id, files[0].id, i).unwrap() {
                got.extend(chunk);
                i += 1;
            }
            assert!(contents.contains(&got));
            assert_eq!(got.len() as u64, files[0].size);
        }
        let pg = PgStore::open(&h.url()).unwrap();
        assert_eq!(rows(&pg, "result_files"), 1, "replaced versions are gone");
        let size = setup.result_files(id).unwrap()[0].size;
        assert_eq!(
            rows(&pg, "result_chunks") as u64,
            size.div_ceil(RESULT_CHUNK_BYTES as u64),
            "and their chunks"
        );
    }

    /// Content that deletes its task (through another connection) while it is read.
    struct DeletesTask<'a> {
        other: &'a mut dyn Store,
        task: i64,
        sent: usize,
    }

    impl Read for DeletesTask<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.sent == RESULT_CHUNK_BYTES {
                assert_eq!(
                    self.other.delete_finished_tasks(&[self.task]).unwrap(),
                    [self.task]
                );
            }
            let n = buf.len().min(2 * RESULT_CHUNK_BYTES - self.sent);
            buf[..n].fill(9);
            self.sent += n;
            Ok(n)
        }
    }

    #[test]
    fn a_file_whose_task_is_deleted_meanwhile_leaves_nothing() {
        let h = PgHarness::new();
        let mut s = h.open();
        register(&mut *s, &["w"], true);
        let id = insert(&mut *s, &task("w", 0), 1)[0];
        s.request_cancel(id, 1, &LogLine::new("cancelled", 0, 0, 0, "", "stop"))
            .unwrap();
        let mut other = h.open();
        let mut content = DeletesTask {
            other: &mut *other,
            task: id,
            sent: 0,
        };
        match s.put_result_file(id, "x", &mut content, u64::MAX) {
            Err(PutFileError::Store(_)) => {}
            other => panic!("expected a store error, got {other:?}"),
        }
        let pg = PgStore::open(&h.url()).unwrap();
        assert_eq!(rows(&pg, "result_files"), 0);
        assert_eq!(rows(&pg, "result_chunks"), 0);
    }
}
