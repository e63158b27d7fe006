//! Result files: stored in chunks, listed once complete, read back exactly.

use super::{insert, register, task, Harness};
use crate::{PutFileError, RESULT_CHUNK_BYTES};

fn read_all(s: &dyn crate::Store, id: i64, name: &str) -> Vec<u8> {
    let file = s
        .result_files(id)
        .unwrap()
        .into_iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("no file {name}"));
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(chunk) = s.result_file_chunk(id, file.id, i).unwrap() {
        assert!(chunk.len() <= RESULT_CHUNK_BYTES);
        out.extend(chunk);
        i += 1;
    }
    out
}

pub fn files_are_stored_listed_and_read_back_in_chunks(h: &dyn Harness) {
    let mut s = h.open();
    register(&mut *s, &["w"], true);
    let id = insert(&mut *s, &task("w", 0), 1)[0];
    // Larger than two chunks, with a pattern that shows misplaced chunks.
    let big: Vec<u8> = (0..RESULT_CHUNK_BYTES * 2 + 12_345)
        .map(|i| (i % 251) as u8)
        .collect();
    assert_eq!(
        s.put_result_file(id, "parts/big.bin", &mut &big[..], u64::MAX)
            .unwrap(),
        big.len() as u64
    );
    s.put_result_file(id, "summary.json", &mut &b"{}"[..], 100)
        .unwrap();
    s.put_result_file(id, "empty", &mut &b""[..], 100).unwrap();
    let listed: Vec<(String, u64)> = s
        .result_files(id)
        .unwrap()
        .into_iter()
        .map(|f| (f.name, f.size))
        .collect();
    assert_eq!(
        listed,
        [
            ("empty".to_owned(), 0),
            ("parts/big.bin".to_owned(), big.len() as u64),
            ("summary.json".to_owned(), 2)
        ]
    );
    assert_eq!(read_all(&*s, id, "parts/big.bin"), big);
    assert_eq!(read_all(&*s, id, "summary.json"), b"{}");
    assert!(read_all(&*s, id, "empty").is_empty());
    assert!(s.result_file_chunk(id, -1, 0).unwrap().is_none());
    assert!(s.result_files(id + 100).unwrap().is_empty());
    // Another connection sees the same.
    assert_eq!(h.open().result_files(id).unwrap().len(), 3);
}

pub fn a_file_over_its_limit_stores_nothing(h: &dyn Harness) {
    let mut s = h.open();
    register(&mut *s, &["w"], true);
    let id = insert(&mut *s, &task("w", 0), 1)[0];
    let data = vec![7u8; RESULT_CHUNK_BYTES + 10];
    match s.put_result_file(id, "x", &mut &data[..], RESULT_CHUNK_BYTES as u64 + 9) {
        Err(PutFileError::TooLarge { limit }) => assert_eq!(limit, RESULT_CHUNK_BYTES as u64 + 9),
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert!(s.result_files(id).unwrap().is_empty());
    // Exactly at the limit is fine.
    s.put_result_file(id, "x", &mut &data[..], data.len() as u64)
        .unwrap();
    assert_eq!(s.result_files(id).unwrap()[0].size, data.len() as u64);
}

pub fn a_file_of_the_same_name_is_replaced(h: &dyn Harness) {
    let mut s = h.open();
    register(&mut *s, &["w"], true);
    let id = insert(&mut *s, &task("w", 0), 1)[0];
    s.put_result_file(id, "out.txt", &mut &b"first attempt"[..], 100)
        .unwrap();
    let first = s.result_files(id).unwrap()[0].clone();
    s.put_result_file(id, "out.txt", &mut &b"second"[..], 100)
        .unwrap();
    let files = s.result_files(id).unwrap();
    assert_eq!(files.len(), 1);
    assert_eq!((files[0].name.as_str(), files[0].size), ("out.txt", 6));
    assert_ne!(files[0].id, first.id, "a new version");
    assert_eq!(read_all(&*s, id, "out.txt"), b"second");
    assert!(
        s.result_file_chunk(id, first.id, 0).unwrap().is_none(),
        "the replaced version is gone: a download of it ends short"
    );
    assert!(
        s.result_file_chunk(id + 1, files[0].id, 0)
            .unwrap()
            .is_none(),
        "a version is read only through its task"
    );
}

pub fn a_file_of_a_task_that_does_not_exist_is_refused(h: &dyn Harness) {
    let mut s = h.open();
    match s.put_result_file(12_345, "x", &mut &b"x"[..], 100) {
        Err(PutFileError::Store(_)) => {}
        other => panic!("expected a store error, got {other:?}"),
    }
    assert!(s.result_files(12_345).unwrap().is_empty());
}
