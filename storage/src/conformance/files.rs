//! Result files: stored in chunks, listed once complete, read back exactly.

use super::{insert, register, task, Harness};
use crate::{PutFileError, ResultFileInfo, RESULT_CHUNK_BYTES};

fn read_all(s: &dyn crate::Store, id: i64, name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(chunk) = s.result_file_chunk(id, name, i).unwrap() {
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
    assert_eq!(
        s.result_files(id).unwrap(),
        [
            ResultFileInfo {
                name: "empty".into(),
                size: 0
            },
            ResultFileInfo {
                name: "parts/big.bin".into(),
                size: big.len() as u64
            },
            ResultFileInfo {
                name: "summary.json".into(),
                size: 2
            },
        ]
    );
    assert_eq!(read_all(&*s, id, "parts/big.bin"), big);
    assert_eq!(read_all(&*s, id, "summary.json"), b"{}");
    assert!(read_all(&*s, id, "empty").is_empty());
    assert!(s.result_file_chunk(id, "missing", 0).unwrap().is_none());
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
    assert!(s.result_file_chunk(id, "x", 0).unwrap().is_none());
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
    s.put_result_file(id, "out.txt", &mut &b"second"[..], 100)
        .unwrap();
    assert_eq!(
        s.result_files(id).unwrap(),
        [ResultFileInfo {
            name: "out.txt".into(),
            size: 6
        }]
    );
    assert_eq!(read_all(&*s, id, "out.txt"), b"second");
}
