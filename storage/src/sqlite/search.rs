//! Searching tasks (filters, free text, pagination) and the few task changes the API
//! adds to the CLI's: making pending tasks due now.

use super::{texts, Context, SqliteStore};
use crate::error::StoreError;
use crate::queue::{TaskQueue, TaskRecord};
use crate::search::{TaskPage, TaskQuery, TaskSearch};
use crate::statistics::Statistics;

/// A free-text search matching at most this many tasks leads the plan whatever other
/// filters are given: at most that many rows are read to apply them.
const TEXT_LEADS_UP_TO: i64 = 20_000;

/// `%text%` for LIKE, with the wildcards of `text` escaped.
pub(super) fn like_pattern(text: &str) -> String {
    let mut p = String::with_capacity(text.len() + 2);
    p.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

impl TaskSearch for SqliteStore {
    /// Tasks matching `q`, newest first, with the number of matches.
    fn search_tasks(&self, q: &TaskQuery) -> Result<TaskPage, StoreError> {
        type Args = Vec<Box<dyn rusqlite::ToSql>>;
        let text = q
            .text
            .as_deref()
            .map(|t| t.trim_matches(' '))
            .filter(|t| !t.is_empty());
        // The free-text condition first: with the text index, whether the other filters
        // may use their indexes depends on how many tasks the text matches.
        let mut text_sql = String::new();
        let mut text_args: Args = Vec::new();
        let mut indexed = false;
        if let Some(text) = text {
            let pattern = like_pattern(text);
            let id = text.trim_start_matches('#').parse::<i64>().ok();
            text_args.push(Box::new(id));
            indexed = texts::ready(&self.conn)?;
            if indexed {
                // The same LIKE as below, on the distinct texts (texts.rs): a task that
                // is not running matches when its text does, a running one (which names
                // no text) by its row. The trigram index narrows the texts down when
                // the search text has a trigram; a shorter one (or one with a NUL) has
                // none, and then every text is read: still correct, and texts are few.
                let narrowed = match texts::fts_query(text) {
                    Some(fts) => {
                        text_args.push(Box::new(fts));
                        "x.id IN (SELECT rowid FROM task_texts_fts WHERE task_texts_fts MATCH ?)"
                    }
                    None => "1",
                };
                text_sql = format!(
                    " AND (id = ?
                        OR text_id IN (SELECT x.id FROM task_texts AS x WHERE {narrowed}
                            AND (x.worker LIKE ? ESCAPE '\\' OR x.action LIKE ? ESCAPE '\\'
                                OR x.message LIKE ? ESCAPE '\\'))
                        OR (status = 'running' AND (worker LIKE ? ESCAPE '\\'
                            OR action LIKE ? ESCAPE '\\' OR message LIKE ? ESCAPE '\\')))"
                );
                for _ in 0..6 {
                    text_args.push(Box::new(pattern.clone()));
                }
            } else {
                // The index is still being filled (a store that cannot be written,
                // opened before the upgrade finished): the table itself.
                text_sql = " AND (id = ? OR worker LIKE ? ESCAPE '\\' OR action LIKE ? ESCAPE '\\'
                    OR message LIKE ? ESCAPE '\\')"
                    .to_owned();
                for _ in 0..3 {
                    text_args.push(Box::new(pattern.clone()));
                }
            }
        }
        // A filter given beside the text would otherwise lead the plan (SQLite guesses
        // ten rows per key without statistics): all 900,000 completed tasks read for a
        // text 100 of them have. The text leads whenever it matches no more tasks than
        // the filter's maintained count, or few anyway (a date range or a user, which
        // have no count, then costs at most that many reads).
        let filtered = q.status.is_some()
            || q.worker.is_some()
            || q.action.is_some()
            || q.priority.is_some()
            || q.started_by.is_some()
            || q.created_from.is_some()
            || q.created_to.is_some();
        let text_leads = indexed && filtered && {
            let matches: i64 = self
                .conn
                .prepare(&format!("SELECT COUNT(*) FROM tasks WHERE 1=1{text_sql}"))
                .context("count tasks")?
                .query_row(rusqlite::params_from_iter(text_args.iter()), |r| r.get(0))
                .context("count tasks")?;
            matches <= TEXT_LEADS_UP_TO
                || ((q.status.is_some() || q.worker.is_some())
                    && matches <= self.count_tasks_by(q.worker.as_deref(), q.status)?)
        };
        // `+column` keeps SQLite from using an index on the column.
        let col = |name: &str| {
            if text_leads {
                format!("+{name}")
            } else {
                name.to_owned()
            }
        };
        let mut sql = String::from(" FROM tasks WHERE 1=1");
        let mut args: Args = Vec::new();
        if let Some(s) = q.status {
            sql.push_str(&format!(" AND {} = ?", col("status")));
            args.push(Box::new(s.as_str()));
        }
        if let Some(w) = &q.worker {
            sql.push_str(&format!(" AND {} = ?", col("worker")));
            args.push(Box::new(w.clone()));
        }
        if let Some(a) = &q.action {
            sql.push_str(&format!(" AND {} = ?", col("action")));
            args.push(Box::new(a.clone()));
        }
        if let Some(p) = q.priority {
            sql.push_str(&format!(" AND {} = ?", col("priority")));
            args.push(Box::new(p.rank()));
        }
        if let Some(u) = &q.started_by {
            sql.push_str(&format!(" AND {} = ?", col("started_by")));
            args.push(Box::new(u.clone()));
        }
        if let Some(t) = q.created_from {
            sql.push_str(&format!(" AND {} >= ?", col("created_at")));
            args.push(Box::new(t));
        }
        if let Some(t) = q.created_to {
            sql.push_str(&format!(" AND {} < ?", col("created_at")));
            args.push(Box::new(t));
        }
        sql.push_str(&text_sql);
        args.extend(text_args);
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
            self.conn
                .prepare(&format!("SELECT COUNT(*){sql}"))
                .context("count tasks")?
                .query_row(rusqlite::params_from_iter(args.iter()), |r| r.get(0))
                .context("count tasks")?
        };
        if let Some(b) = q.before_id {
            sql.push_str(" AND id < ?");
            args.push(Box::new(b));
        }
        // For a status filter alone SQLite picks the status index and sorts every
        // match by id: 0.2 s for 400,000 pending tasks. Walking the table backwards by id
        // and stopping after a page is far cheaper while the status is common; the
        // maintained counts say how many rows that walk would read. The same holds for
        // a text most tasks have (the text index finds every match, to be sorted), and
        // there the total just counted says it.
        let matching = if text.is_some() {
            Some(total)
        } else if q.status.is_some() && q.worker.is_none() {
            Some(self.count_tasks_by(None, q.status)?)
        } else {
            None
        };
        let walk_by_id = match matching {
            Some(matching) if matching > 0 => {
                let all = self.count_tasks_by(None, None)?.max(1);
                let page_end = q.offset.saturating_add(q.limit as u64) as i64;
                page_end.saturating_mul(all) / matching <= 200_000
            }
            _ => false,
        };
        if walk_by_id {
            sql = sql.replacen(" FROM tasks ", " FROM tasks NOT INDEXED ", 1);
        }
        sql.push_str(&format!(
            " ORDER BY id DESC LIMIT {} OFFSET {}",
            q.limit, q.offset
        ));
        let ids: Vec<i64> = {
            let mut stmt = self
                .conn
                .prepare(&format!("SELECT id{sql}"))
                .context("search tasks")?;
            let rows = stmt
                .query_map(rusqlite::params_from_iter(args.iter()), |r| r.get(0))
                .context("search tasks")?;
            rows.collect::<Result<_, _>>().context("search tasks")?
        };
        let mut tasks = Vec::with_capacity(ids.len());
        for id in ids {
            // A task deleted between the two reads is simply left out.
            if let Some(t) = self.get_task(id)? {
                tasks.push(t);
            }
        }
        Ok(TaskPage { tasks, total })
    }

    /// The `limit` newest tasks with their worker's scope (`None` when the worker is
    /// no longer registered).
    fn recent_tasks(&self, limit: u32) -> Result<Vec<(TaskRecord, Option<String>)>, StoreError> {
        let page = self.search_tasks(&TaskQuery {
            limit,
            ..Default::default()
        })?;
        let mut out = Vec::with_capacity(page.tasks.len());
        let mut stmt = self
            .conn
            .prepare_cached("SELECT scope FROM workers WHERE identifier = ?1")
            .context("read worker scope")?;
        for t in page.tasks {
            let scope: Option<String> = stmt
                .query_row([&t.worker], |r| r.get(0))
                .map(Some)
                .or_else(|e| match e {
                    rusqlite::Error::QueryReturnedNoRows => Ok(None),
                    e => Err(e),
                })
                .context("read worker scope")?;
            out.push((t, scope));
        }
        Ok(out)
    }

    fn task_children(&self, parent: i64, limit: u32) -> Result<Vec<i64>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id FROM tasks WHERE parent_id = ?1 ORDER BY id LIMIT ?2")
            .context("read child tasks")?;
        let ids = stmt
            .query_map(rusqlite::params![parent, i64::from(limit)], |r| r.get(0))
            .and_then(|rows| rows.collect::<Result<Vec<i64>, _>>())
            .context("read child tasks")?;
        Ok(ids)
    }
}
