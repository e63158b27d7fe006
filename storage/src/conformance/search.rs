//! Task search: filters, free text, pages.

use super::{line, Harness};
use crate::{NewTask, Priority, TaskQuery};

pub fn filters_text_and_pages(h: &dyn Harness) {
    let mut s = h.open();
    let mk = |worker: &str, action: &str, by: Option<&str>, at: i64| NewTask {
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
