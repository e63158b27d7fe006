//! Task search: filters, free text, pages.

use super::{line, Harness};
use crate::{NewTask, Priority, TaskQuery};

pub fn filters_text_and_pages(h: &dyn Harness) {
    let mut s = h.open();
    let mk = |worker: &str, action: &str, by: Option<&str>, at: i64| NewTask {
        limit: None,
        parent: None,
        worker: worker.into(),
        action: action.into(),
        data: "{}".into(),
        priority: Priority::Normal,
        max_attempts: 3,
        started_by: by.map(str::to_owned),
        run_after: at,
        created_at: at,
    };
    let created = line("pending", "created");
    let demo = s
        .insert_tasks(&mk("demo", "run", Some("ann"), 1000), 3, &created)
        .unwrap();
    let product = s
        .insert_tasks(&mk("product", "import_100%", None, 2000), 2, &created)
        .unwrap();
    let all = s
        .search_tasks(&TaskQuery {
            limit: 2,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(all.total, 5);
    assert_eq!(
        all.tasks.iter().map(|t| t.id).collect::<Vec<_>>(),
        vec![product[1], product[0]]
    );
    let next = s
        .search_tasks(&TaskQuery {
            limit: 2,
            before_id: Some(product[0]),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(
        next.tasks.iter().map(|t| t.id).collect::<Vec<_>>(),
        vec![demo[2], demo[1]]
    );
    let q = |text: &str| {
        s.search_tasks(&TaskQuery {
            text: Some(text.into()),
            limit: 10,
            ..Default::default()
        })
        .unwrap()
        .total
    };
    assert_eq!(q("PROD"), 2);
    assert_eq!(q("100%"), 2);
    assert_eq!(q("0%"), 2);
    assert_eq!(q("_"), 2, "'_' is literal, not a wildcard");
    assert_eq!(q(&demo[2].to_string()), 1, "an id");
    assert_eq!(q(&format!("#{}", demo[2])), 1, "an id with #");
    let by = s
        .search_tasks(&TaskQuery {
            started_by: Some("ann".into()),
            created_from: Some(500),
            created_to: Some(1500),
            limit: 10,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(by.total, 3);
    let recent = s.recent_tasks(2).unwrap();
    assert_eq!(recent.len(), 2);
    assert_eq!(recent[0].0.id, product[1]);
    assert_eq!(recent[0].1, None, "the worker is not registered");
}

/// The tasks a search finds, newest first, and its total (one page of 50).
fn found(s: &dyn crate::Store, text: &str) -> (Vec<i64>, i64) {
    let page = s
        .search_tasks(&TaskQuery {
            text: Some(text.into()),
            limit: 50,
            ..Default::default()
        })
        .unwrap();
    (page.tasks.iter().map(|t| t.id).collect(), page.total)
}

pub fn text_search_follows_progress_outcomes_cancels_retries_and_clean_up(h: &dyn Harness) {
    use super::{claim, completed, insert, register, task};
    use crate::{Finish, Outcome, ProgressUpdate, Status};
    let mut s = h.open();
    register(&mut *s, &["importer", "mailer"], true);
    let imports = insert(&mut *s, &task("importer", 0), 3);
    let mail = s
        .insert_tasks(&task("mailer", 0), 1, &line("pending", "queued for ann"))
        .unwrap()[0];
    assert_eq!(
        found(&*s, "created"),
        (imports.iter().rev().copied().collect(), 3)
    );
    assert_eq!(
        found(&*s, "MAILER"),
        (vec![mail], 1),
        "by worker, any ASCII case"
    );
    assert_eq!(
        found(&*s, "ann"),
        (vec![mail], 1),
        "by the creation message"
    );
    // The first import runs and reports progress: its message is what a search sees.
    let running = claim(&mut *s, "me", 10, 1);
    assert_eq!(running[0].task.id, imports[0]);
    let progress = |message: &str| ProgressUpdate {
        id: imports[0],
        progress: 42,
        processed: 42,
        total: 100,
        message: message.into(),
    };
    s.record_progress("me", &[progress("copying shard-0042 of 100")], &[])
        .unwrap();
    assert_eq!(found(&*s, "shard-0042"), (vec![imports[0]], 1));
    assert_eq!(found(&*s, "SHARD-0042 OF"), (vec![imports[0]], 1));
    assert_eq!(
        found(&*s, "created").1,
        2,
        "the running task's message changed"
    );
    s.record_progress("me", &[progress("copying shard-0043 of 100")], &[])
        .unwrap();
    assert_eq!(
        found(&*s, "shard-0042").1,
        0,
        "only the latest message counts"
    );
    assert_eq!(found(&*s, "shard-0043").1, 1);
    // It ends with a message of its own.
    let end = Finish {
        message: "imported 100 shards into warehouse-7".into(),
        ..super::finish(imports[0], "me", completed(), "completed", 20)
    };
    assert_eq!(s.finish_tasks(&[end]).unwrap(), [true]);
    assert_eq!(found(&*s, "shard-0043").1, 0);
    assert_eq!(found(&*s, "warehouse-7"), (vec![imports[0]], 1));
    assert_eq!(found(&*s, "100 shards").1, 1);
    // A pending task cancelled, then retried: each time its new message.
    let cancelled = s
        .request_cancel(imports[1], 30, &line("cancelled", "cancelled by bob"))
        .unwrap();
    assert_eq!(cancelled, Some(crate::CancelResult::CancelledPending));
    assert_eq!(found(&*s, "by bob"), (vec![imports[1]], 1));
    let retried = s
        .retry_task(imports[1], 40, &|_| line("pending", "retry asked by carol"))
        .unwrap();
    assert!(retried.is_some());
    assert_eq!(found(&*s, "by bob").1, 0);
    assert_eq!(found(&*s, "asked by carol"), (vec![imports[1]], 1));
    // A failed attempt queued again for a retry: its message too.
    let again = claim(&mut *s, "me", 50, 1);
    assert_eq!(again[0].task.id, imports[1]);
    let failed = Finish {
        message: "attempt 1 failed: disk quota exceeded; retrying".into(),
        ..super::finish(
            imports[1],
            "me",
            Outcome::Failed {
                error: "disk quota exceeded".into(),
                retry_at: Some(60),
            },
            "pending",
            55,
        )
    };
    assert_eq!(s.finish_tasks(&[failed]).unwrap(), [true]);
    assert_eq!(found(&*s, "quota exceeded"), (vec![imports[1]], 1));
    assert_eq!(
        s.get_task(imports[1]).unwrap().unwrap().status,
        Status::Pending
    );
    // Ids still find tasks whatever their text.
    assert_eq!(
        found(&*s, &format!("#{}", imports[2])),
        (vec![imports[2]], 1)
    );
    // Clean-up: the deleted tasks are gone from every search.
    let done = claim(&mut *s, "me", 100, 10);
    let ends: Vec<_> = done
        .iter()
        .map(|c| Finish {
            message: format!("delivered {} to warehouse-7", c.task.id),
            ..super::finish(c.task.id, "me", completed(), "completed", 110)
        })
        .collect();
    assert_eq!(s.finish_tasks(&ends).unwrap().len(), done.len());
    assert_eq!(found(&*s, "warehouse-7").1, 1 + done.len() as i64);
    let statuses = [Status::Completed, Status::Failed, Status::Cancelled];
    let mut deleted = Vec::new();
    loop {
        let batch = s.delete_finished_before(&statuses, 1_000, 2).unwrap();
        deleted.extend(batch.iter().copied());
        if batch.len() < 2 {
            break;
        }
    }
    assert_eq!(deleted.len(), 1 + done.len());
    assert_eq!(found(&*s, "warehouse-7"), (vec![], 0));
    assert_eq!(found(&*s, "shards").1, 0);
    assert_eq!(found(&*s, "importer").1, 0, "no importer task is left");
    // A new task with a text a deleted one had is found again.
    let back = s
        .insert_tasks(&task("mailer", 200), 1, &line("pending", "queued for ann"))
        .unwrap()[0];
    assert_eq!(found(&*s, "ann"), (vec![back], 1));
}

pub fn text_search_finds_substrings_among_many_texts_short_ones_too(h: &dyn Harness) {
    let mut s = h.open();
    let mut ids = Vec::new();
    for i in 0..120 {
        let t = NewTask {
            limit: None,
            parent: None,
            action: format!("step_{}", i % 7),
            ..super::task("batch", i)
        };
        let message = format!("row {i}: ok\tdone");
        ids.push(s.insert_tasks(&t, 1, &line("pending", &message)).unwrap()[0]);
    }
    let newest_first = |picked: Vec<usize>| -> Vec<i64> {
        let mut v: Vec<i64> = picked.into_iter().map(|i| ids[i]).collect();
        v.sort_unstable_by(|a, b| b.cmp(a));
        v
    };
    // Three characters and more: the rows whose number has these digits.
    let (got, total) = found(&*s, "w 11");
    assert_eq!(total, 11, "rows 11 and 110-119");
    assert_eq!(
        got,
        newest_first([11].into_iter().chain(110..120).collect())
    );
    assert_eq!(found(&*s, "row 7:"), (newest_first(vec![7]), 1));
    let step_3 = (0..120).filter(|i| i % 7 == 3).count() as i64;
    assert_eq!(found(&*s, "STEP_3").1, step_3, "by action, any ASCII case");
    // Shorter than three characters: found all the same.
    let (got, total) = found(&*s, "9:");
    assert_eq!(total, 12, "rows 9, 19, … 119");
    assert_eq!(
        got,
        newest_first((0..120).filter(|i| i % 10 == 9).collect())
    );
    assert_eq!(found(&*s, "_").1, 120, "every action has an underscore");
    // A control character is matched as itself.
    assert_eq!(found(&*s, "ok\tdone").1, 120);
    assert_eq!(found(&*s, "ok\ndone").1, 0);
    assert_eq!(found(&*s, "ok done").1, 0);
    // Pages of a search: newest first, then before the last id seen.
    let page = s
        .search_tasks(&TaskQuery {
            text: Some("row 1".into()),
            limit: 5,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(page.total, 1 + 10 + 20, "rows 1, 10-19 and 100-119");
    assert_eq!(
        page.tasks.iter().map(|t| t.id).collect::<Vec<_>>(),
        newest_first((115..120).collect())
    );
    let next = s
        .search_tasks(&TaskQuery {
            text: Some("row 1".into()),
            limit: 5,
            before_id: Some(ids[115]),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(
        next.tasks.iter().map(|t| t.id).collect::<Vec<_>>(),
        newest_first((110..115).collect())
    );
    // With another filter.
    let page = s
        .search_tasks(&TaskQuery {
            text: Some("row 1".into()),
            action: Some("step_0".into()),
            limit: 50,
            ..Default::default()
        })
        .unwrap();
    let expected: Vec<usize> = [1]
        .into_iter()
        .chain(10..20)
        .chain(100..120)
        .filter(|i| i % 7 == 0)
        .collect();
    assert_eq!(page.total, expected.len() as i64);
    assert_eq!(
        page.tasks.iter().map(|t| t.id).collect::<Vec<_>>(),
        newest_first(expected)
    );
}

/// The tasks a task enqueued are stored with its id and listed as its children, oldest
/// first; other tasks have none, and the parent reads back on each child.
pub fn children_are_listed_by_parent(h: &dyn Harness) {
    let mut s = h.open();
    let mk = |parent: Option<i64>| NewTask {
        limit: None,
        parent,
        worker: "demo".into(),
        action: "run".into(),
        data: "{}".into(),
        priority: Priority::Normal,
        max_attempts: 3,
        started_by: parent.map(|p| format!("task #{p}")),
        run_after: 1000,
        created_at: 1000,
    };
    let created = line("pending", "created");
    let parent = s.insert_tasks(&mk(None), 1, &created).unwrap()[0];
    let other = s.insert_tasks(&mk(None), 1, &created).unwrap()[0];
    let first = s.insert_tasks(&mk(Some(parent)), 2, &created).unwrap();
    let third = s.insert_tasks(&mk(Some(parent)), 1, &created).unwrap()[0];
    let mut all = first.clone();
    all.push(third);
    assert_eq!(s.task_children(parent, 10).unwrap(), all);
    assert_eq!(s.task_children(parent, 2).unwrap(), first);
    assert!(s.task_children(other, 10).unwrap().is_empty());
    assert!(s.task_children(i64::MAX, 10).unwrap().is_empty());
    let child = s.get_task(third).unwrap().expect("child stored");
    assert_eq!(child.parent, Some(parent));
    assert_eq!(s.get_task(other).unwrap().unwrap().parent, None);
}
