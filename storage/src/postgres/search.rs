//! Searching tasks on PostgreSQL: filters, free text, pagination.
//!
//! The matching is SQLite's, exactly:
//! * Free text is trimmed of spaces, then matches the task id (`123` or `#123`) or a
//!   substring of the worker, action or message, case-insensitive for ASCII letters
//!   only (SQLite's `LIKE`). PostgreSQL's `ILIKE` and `lower()` fold by the database's
//!   locale (`É` as `é`), so both sides are folded with `translate()` of A–Z instead.
//! * `%`, `_` and `\` in the text are literal (escaped); other characters, control
//!   characters too, match themselves. PostgreSQL text cannot hold NUL: messages are
//!   stored with a NUL written as `\0` ([`super::storable`]), and a NUL in the search
//!   text is written the same way, so it finds the messages that held one. (SQLite's
//!   `LIKE` reads its pattern only up to a NUL, an accident not worth copying.)
//!
//! What differs:
//! * A page is one query returning the task rows (SQLite reads ids, then each task).
//! * SQLite's planner needs to be told to walk the table by id for a common status
//!   (`NOT INDEXED`); PostgreSQL's planner picks the primary key's backward scan
//!   itself when that is cheaper, so there is no such hint here.
//! * The total of a search that only filters by status and worker comes from the
//!   maintained counts, as in SQLite; any other filter counts the matching rows.

use postgres::types::ToSql;

use super::queue::{from_row, COLUMNS};
use super::{Context, PgStore};
use crate::error::StoreError;
use crate::queue::TaskRecord;
use crate::search::{TaskPage, TaskQuery, TaskSearch};
use crate::statistics::Statistics;

/// `%text%` for LIKE, with the wildcards of `text` escaped and its ASCII letters in
/// lower case (the columns are folded the same way, see [`folded`]).
fn like_pattern(text: &str) -> String {
    let mut p = String::with_capacity(text.len() + 2);
    p.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c.to_ascii_lowercase());
    }
    p.push('%');
    p
}

/// `column` with its ASCII capitals in lower case, and nothing else changed.
fn folded(column: &str) -> String {
    format!("translate({column}, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz')")
}

/// A `WHERE` clause under construction with its numbered parameters.
#[derive(Default)]
struct Conditions {
    sql: String,
    args: Vec<Box<dyn ToSql + Sync>>,
}

impl Conditions {
    /// Adds `arg` as the next parameter and returns its placeholder.
    fn arg(&mut self, arg: impl ToSql + Sync + 'static) -> String {
        self.args.push(Box::new(arg));
        format!("${}", self.args.len())
    }

    fn and(&mut self, condition: &str) {
        self.sql.push_str(" AND ");
        self.sql.push_str(condition);
    }

    fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.args.iter().map(|a| &**a as _).collect()
    }
}

impl TaskSearch for PgStore {
    /// Tasks matching `q`, newest first, with the number of matches.
    fn search_tasks(&self, q: &TaskQuery) -> Result<TaskPage, StoreError> {
        let mut w = Conditions {
            sql: String::from(" FROM tasks WHERE TRUE"),
            ..Default::default()
        };
        if let Some(s) = q.status {
            let p = w.arg(s.as_str());
            w.and(&format!("status = {p}"));
        }
        if let Some(v) = &q.worker {
            let p = w.arg(v.clone());
            w.and(&format!("worker = {p}"));
        }
        if let Some(a) = &q.action {
            let p = w.arg(a.clone());
            w.and(&format!("action = {p}"));
        }
        if let Some(p) = q.priority {
            let p = w.arg(p.rank() as i16);
            w.and(&format!("priority = {p}"));
        }
        if let Some(u) = &q.started_by {
            let p = w.arg(u.clone());
            w.and(&format!("started_by = {p}"));
        }
        if let Some(t) = q.created_from {
            let p = w.arg(t);
            w.and(&format!("created_at >= {p}"));
        }
        if let Some(t) = q.created_to {
            let p = w.arg(t);
            w.and(&format!("created_at < {p}"));
        }
        let text = q
            .text
            .as_deref()
            .map(|t| t.trim_matches(' '))
            .filter(|t| !t.is_empty());
        if let Some(text) = text {
            let id = text.trim_start_matches('#').parse::<i64>().ok();
            let id = w.arg(id);
            // NUL as the messages store it (see the module docs).
            let pattern = w.arg(like_pattern(&super::storable(text)));
            let like = |column: &str| format!("{} LIKE {pattern} ESCAPE E'\\\\'", folded(column));
            w.and(&format!(
                "(id = {id} OR {} OR {} OR {})",
                like("worker"),
                like("action"),
                like("message")
            ));
        }
        // Status and worker alone are answered by the maintained counts: the common
        // list views cost the same with a million tasks.
        let counts_suffice = q.action.is_none()
            && q.priority.is_none()
            && q.started_by.is_none()
            && q.created_from.is_none()
            && q.created_to.is_none()
            && text.is_none();
        let total = if counts_suffice {
            self.count_tasks_by(q.worker.as_deref(), q.status)?
        } else {
            self.client()?
                .query_one(&format!("SELECT COUNT(*){}", w.sql), &w.params())
                .context("count tasks")?
                .get(0)
        };
        if let Some(b) = q.before_id {
            let p = w.arg(b);
            w.and(&format!("id < {p}"));
        }
        let limit = w.arg(i64::from(q.limit));
        let offset = w.arg(i64::try_from(q.offset).unwrap_or(i64::MAX));
        let rows = self
            .client()?
            .query(
                &format!(
                    "SELECT {COLUMNS}{} ORDER BY id DESC LIMIT {limit} OFFSET {offset}",
                    w.sql
                ),
                &w.params(),
            )
            .context("search tasks")?;
        Ok(TaskPage {
            tasks: rows.iter().map(from_row).collect(),
            total,
        })
    }

    /// The `limit` newest tasks with their worker's scope (`None` when the worker is
    /// no longer registered).
    fn recent_tasks(&self, limit: u32) -> Result<Vec<(TaskRecord, Option<String>)>, StoreError> {
        let rows = self
            .client()?
            .query(
                &format!(
                    "SELECT t.*, (SELECT w.scope FROM workers w WHERE w.identifier = t.worker)
                         AS worker_scope
                     FROM (SELECT {COLUMNS} FROM tasks ORDER BY id DESC LIMIT $1) t
                     ORDER BY t.id DESC"
                ),
                &[&i64::from(limit)],
            )
            .context("read recent tasks")?;
        Ok(rows
            .iter()
            .map(|r| (from_row(r), r.get("worker_scope")))
            .collect())
    }

    fn task_children(&self, parent: i64, limit: u32) -> Result<Vec<i64>, StoreError> {
        let rows = self
            .client()?
            .query(
                "SELECT id FROM tasks WHERE parent_id = $1 ORDER BY id LIMIT $2",
                &[&parent, &i64::from(limit)],
            )
            .context("read child tasks")?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::super::conformance_tests::PgHarness;
    use crate::conformance::Harness;
    use crate::{LogLine, NewTask, Priority, Status, Store, TaskQuery};

    /// The same tasks in `store`; returns their ids in creation order.
    fn fill(store: &mut dyn Store) -> Vec<i64> {
        let rows: [(&str, &str, &str, Priority, Option<&str>); 12] = [
            ("Demo", "run", "created", Priority::Normal, Some("ann")),
            (
                "product",
                "import_100%",
                "Import ÄBC 100%",
                Priority::High,
                None,
            ),
            (
                "product",
                "export",
                "under_score and back\\slash",
                Priority::Low,
                None,
            ),
            (
                "ünï",
                "run",
                "ctl\u{1}char, tab\there, esc \u{1b}[0m",
                Priority::Normal,
                None,
            ),
            (
                "demo",
                "Run",
                "MiXeD Case äbc",
                Priority::Normal,
                Some("bob"),
            ),
            ("x", "y", "50% done", Priority::Normal, None),
            ("x", "y", "percent%sign", Priority::High, Some("ann")),
            ("x", "y", "Straße STRASSE", Priority::Normal, None),
            ("x", "y", "ΣΊΣΥΦΟΣ σίσυφος", Priority::Low, None),
            ("x", "y", "#7 is not an id here", Priority::Normal, None),
            ("x", "y", "  spaced  ", Priority::Normal, None),
            ("x", "y", "", Priority::Normal, None),
        ];
        let mut ids = Vec::new();
        for (i, (worker, action, message, priority, by)) in rows.into_iter().enumerate() {
            let t = NewTask {
                limit: None,
                parent: None,
                worker: worker.into(),
                action: action.into(),
                data: "{}".into(),
                priority,
                max_attempts: 3,
                started_by: by.map(str::to_owned),
                run_after: 0,
                created_at: 1_000 * i as i64,
            };
            let line = LogLine::new("pending", 0, 0, 0, "", message);
            ids.extend(store.insert_tasks(&t, 1, &line).unwrap());
        }
        store
            .request_cancel(ids[2], 5, &LogLine::new("cancelled", 0, 0, 0, "", "stop"))
            .unwrap();
        ids
    }

    /// A search's total and its tasks as positions in creation order.
    fn run(store: &dyn Store, ids: &[i64], q: &TaskQuery) -> (i64, Vec<usize>) {
        let page = store.search_tasks(q).unwrap();
        let found = page
            .tasks
            .iter()
            .map(|t| ids.iter().position(|id| *id == t.id).unwrap())
            .collect();
        (page.total, found)
    }

    /// Every query answers the same on PostgreSQL as on SQLite.
    #[test]
    fn searches_match_what_sqlite_matches() {
        let dir = tempfile::tempdir().unwrap();
        let mut lite = crate::open(dir.path().join("stask.db").to_str().unwrap()).unwrap();
        let h = PgHarness::new();
        let mut pg = h.open();
        let lite_ids = fill(&mut *lite);
        let pg_ids = fill(&mut *pg);
        let texts = [
            "abc",
            "äbc",
            "ÄBC",
            "Äbc",
            "ABC",
            "100%",
            "0%",
            "%",
            "_",
            "\\",
            "\\s",
            "\u{1}",
            "\t",
            "\u{1b}[0m",
            "mixed",
            "MIXED CASE",
            "ü",
            "Ü",
            "ÜNÏ",
            "strasse",
            "STRASSE",
            "straße",
            "STRAßE",
            "σίσυφος",
            "ΣΊΣΥΦΟΣ",
            "#7",
            " demo ",
            "DEMO",
            "",
            "   ",
            "run",
            "RUN",
            "import_",
            "spaced",
            "  spaced  ",
        ];
        let mut queries: Vec<TaskQuery> = texts
            .iter()
            .map(|t| TaskQuery {
                text: Some((*t).to_owned()),
                limit: 50,
                ..Default::default()
            })
            .collect();
        for id_text in ["1", "#2", "3", "+4", "#0", "-1", "99"] {
            queries.push(TaskQuery {
                text: Some(id_text.to_owned()),
                limit: 50,
                ..Default::default()
            });
        }
        queries.extend([
            TaskQuery {
                status: Some(Status::Cancelled),
                limit: 50,
                ..Default::default()
            },
            TaskQuery {
                status: Some(Status::Pending),
                worker: Some("x".into()),
                limit: 3,
                offset: 2,
                ..Default::default()
            },
            TaskQuery {
                priority: Some(Priority::High),
                limit: 50,
                ..Default::default()
            },
            TaskQuery {
                started_by: Some("ann".into()),
                created_from: Some(1_000),
                created_to: Some(7_000),
                limit: 50,
                ..Default::default()
            },
            TaskQuery {
                action: Some("y".into()),
                text: Some("S".into()),
                limit: 2,
                offset: 1,
                ..Default::default()
            },
            TaskQuery {
                worker: Some("demo".into()),
                limit: 50,
                ..Default::default()
            },
            TaskQuery {
                limit: 4,
                offset: 3,
                ..Default::default()
            },
        ]);
        for q in &queries {
            let mut q = q.clone();
            let expected = run(&*lite, &lite_ids, &q);
            assert_eq!(run(&*pg, &pg_ids, &q), expected, "{q:?}");
            // The next page by id.
            if let Some(&last) = expected.1.last() {
                q.before_id = Some(lite_ids[last]);
                let expected = run(&*lite, &lite_ids, &q);
                q.before_id = Some(pg_ids[last]);
                assert_eq!(run(&*pg, &pg_ids, &q), expected, "{q:?}");
            }
        }
        let recent = |s: &dyn Store, ids: &[i64]| -> Vec<(usize, Option<String>)> {
            s.recent_tasks(5)
                .unwrap()
                .into_iter()
                .map(|(t, scope)| (ids.iter().position(|id| *id == t.id).unwrap(), scope))
                .collect()
        };
        assert_eq!(recent(&*pg, &pg_ids), recent(&*lite, &lite_ids));
    }

    #[test]
    fn a_nul_in_the_text_finds_the_messages_that_held_one() {
        let h = PgHarness::new();
        let mut pg = h.open();
        let ids = fill(&mut *pg);
        let t = NewTask {
            limit: None,
            parent: None,
            worker: "x".into(),
            action: "y".into(),
            data: "{}".into(),
            priority: Priority::Normal,
            max_attempts: 3,
            started_by: None,
            run_after: 0,
            created_at: 0,
        };
        let line = LogLine::new("pending", 0, 0, 0, "", "before\0after");
        let nul = pg.insert_tasks(&t, 1, &line).unwrap()[0];
        let search = |text: &str| {
            let page = pg
                .search_tasks(&TaskQuery {
                    text: Some(text.into()),
                    limit: 10,
                    ..Default::default()
                })
                .unwrap();
            (
                page.total,
                page.tasks.iter().map(|t| t.id).collect::<Vec<_>>(),
            )
        };
        assert_eq!(search("E\0A"), (1, vec![nul]));
        assert_eq!(search("ctl\0"), (0, vec![]));
        assert!(!ids.contains(&nul));
    }
}
