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

pub fn control_characters_in_messages_are_stored_escaped(h: &dyn Harness) {
    // What a plugin may report: an ANSI colour sequence, NUL, BEL, DEL, a C1 CSI, a
    // tab, and text that only looks like an escape.
    const PLUGIN_TEXT: &str =
        "\u{1b}[31mred\u{1b}[0m nul:\0 bell:\u{7} del:\u{7f} csi:\u{9b} tab:\t \\x1b";
    const STORED: &str =
        "\\x1b[31mred\\x1b[0m nul:\\0 bell:\\x07 del:\\x7f csi:\\x9b tab:\t \\\\x1b";
    let mut s = h.open();
    register(&mut *s, &["w"], true);
    let id = insert(&mut *s, &task("w", 0), 1)[0];
    claim(&mut *s, "me", 10, 1);
    s.record_progress("me", &[], &[(id, line("running", PLUGIN_TEXT))])
        .unwrap();
    let mut end = super::finish(
        id,
        "me",
        crate::Outcome::Failed {
            error: PLUGIN_TEXT.into(),
            retry_at: None,
        },
        "failed",
        20,
    );
    end.lines = vec![line("failed", PLUGIN_TEXT)];
    assert_eq!(s.finish_tasks(&[end]).unwrap(), [true]);
    let all = s.log_lines(id, 0, usize::MAX).unwrap();
    let plugin_lines: Vec<_> = all.iter().filter(|l| l.text.contains("red")).collect();
    assert_eq!(plugin_lines.len(), 2, "{all:?}");
    for l in plugin_lines {
        assert!(
            l.text.ends_with(&format!("|{STORED}")),
            "escaped visibly: {:?}",
            l.text
        );
        assert!(
            !l.text.chars().any(|c| c.is_control() && c != '\t'),
            "no raw control character is stored: {:?}",
            l.text
        );
        assert_eq!(
            l.parse().unwrap().message,
            PLUGIN_TEXT,
            "the message reads back as reported"
        );
    }
    assert!(s
        .last_log_line(id)
        .unwrap()
        .unwrap()
        .text
        .starts_with("failed|"));
}

pub fn lines_carry_the_time_they_were_stored(h: &dyn Harness) {
    // The times given to the operations are far in the past: a line's time is when it
    // was stored, not the time an operation was asked for.
    let mut s = h.open();
    register(&mut *s, &["w"], true);
    let before = crate::now_ms();
    let id = insert(&mut *s, &task("w", 0), 1)[0];
    let pending = insert(&mut *s, &task("w", 5), 1)[0];
    claim(&mut *s, "me", 10, 1);
    s.record_progress("me", &[], &[(id, line("running", "half way"))])
        .unwrap();
    let end = super::finish(
        id,
        "me",
        crate::Outcome::Failed {
            error: "broke".into(),
            retry_at: None,
        },
        "failed",
        20,
    );
    assert_eq!(s.finish_tasks(&[end]).unwrap(), [true]);
    s.retry_task(id, 30, &|_| line("pending", "retried"))
        .unwrap()
        .unwrap();
    s.request_cancel(pending, 40, &line("cancelled", "cancelled"))
        .unwrap()
        .unwrap();
    // PostgreSQL rounds its clock to the nearest millisecond, this clock truncates.
    let after = crate::now_ms() + 1;
    let mut lines = s.log_lines(id, 0, usize::MAX).unwrap();
    assert_eq!(
        lines.len(),
        5,
        "created, started, progress, failed, retried"
    );
    lines.extend(s.log_lines(pending, 0, usize::MAX).unwrap());
    assert_eq!(lines.len(), 7, "created, cancelled");
    for l in &lines {
        let at = l.at.unwrap_or_else(|| panic!("no time: {l:?}"));
        assert!(
            (before..=after).contains(&at),
            "{at} not in {before}..={after}: {l:?}"
        );
    }
    assert!(
        lines[..5].windows(2).all(|w| w[0].at <= w[1].at),
        "a task's lines are stored in order: {lines:?}"
    );
    assert_eq!(s.last_log_line(id).unwrap().unwrap().at, lines[4].at);
    assert_eq!(s.log_tail(id, 1).unwrap().0[0].at, lines[4].at);
}
