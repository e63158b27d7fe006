//! Reading progress logs: pages, resuming after a position, the last line.

use super::{claim, insert, line, register, task, Harness};

pub fn lines_page_and_resume_after_a_position(h: &dyn Harness) {
    let mut s = h.open();
    register(&mut *s, &["w"], true);
    let id = insert(&mut *s, &task("w", 0), 1)[0];
    let other = insert(&mut *s, &task("w", 0), 1)[0];
    claim(&mut *s, "me", 10, 1);
    let lines: Vec<_> = (0..25)
        .map(|i| {
            (
                id,
                line("running", &format!("line {i}|with a pipe\nand a newline")),
            )
        })
        .collect();
    s.record_progress("me", &[], &lines).unwrap();
    let all = s.log_lines(id, 0, usize::MAX).unwrap();
    assert_eq!(all.len(), 27);
    assert!(
        all.windows(2).all(|w| w[0].seq < w[1].seq),
        "positions grow with each line"
    );
    assert!(all[0].seq > 0, "0 means the start");
    assert_eq!(
        all[2].text,
        "running|0|0|0|-|line 0|with a pipe\\nand a newline"
    );
    assert_eq!(
        all[2].parse().unwrap().message,
        "line 0|with a pipe\nand a newline"
    );
    let page = s.log_lines(id, all[4].seq, 10).unwrap();
    assert_eq!(page, all[5..15]);
    let rest = s.log_lines(id, page[9].seq, 100).unwrap();
    assert_eq!(rest, all[15..]);
    assert!(s.log_lines(id, all[26].seq, 100).unwrap().is_empty());
    assert_eq!(s.last_log_line(id).unwrap().unwrap(), all[26]);
    assert_eq!(s.log_lines(other, 0, 100).unwrap().len(), 1);
    let (tail, total) = s.log_tail(id, 5).unwrap();
    assert_eq!((tail.as_slice(), total), (&all[22..], 27));
    let (whole, total) = s.log_tail(other, 5).unwrap();
    assert_eq!((whole.len(), total), (1, 1));
    assert_eq!(s.log_tail(other + 100, 5).unwrap(), (Vec::new(), 0));
    assert!(s.last_log_line(other + 100).unwrap().is_none());
}
