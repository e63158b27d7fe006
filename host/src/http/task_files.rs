//! A task's progress, log lines, live events (server-sent events), log download and
//! result files, all read from the store.
//!
//! No path from a client is ever used as a file path: the log is found by task id, and
//! a result file is served only when the requested name equals, byte for byte, a name
//! in the task's stored listing (or is that listing's index). Positions in a log are
//! line sequence numbers: `offset=N` means "after line N".

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures_util::Stream;
use serde_json::{json, Value};
use stask_storage::{LogLine, StoredLine};
use tokio::sync::watch;

use super::error::ApiError;
use super::extract::{Id, Params, PathText};
use super::streams::{Slot, Snapshot};
use super::{Principal, Shared};
use crate::ops::tasks as ops;
use crate::views::LogLineView;

/// Lines returned by one `GET /logs` at most.
pub const MAX_LOG_LINES: i64 = 10_000;

/// `GET /tasks/{id}/progress`: the task's status and its current state, and the last
/// line of its progress log.
pub async fn progress(
    State(st): State<Shared>,
    Extension(_p): Extension<Principal>,
    Id(id): Id,
) -> Result<Json<Value>, ApiError> {
    st.db(move |store, _| {
        let t = ops::find(store, id)?;
        let last = store
            .last_log_line(id)?
            .and_then(|l| LogLineView::stored(&l));
        Ok(json!({
            "id": id,
            "status": t.status.as_str(),
            "progress": t.progress,
            "processed": t.processed,
            "total": t.total,
            "message": t.message,
            "last_line": last,
        }))
    })
    .await
    .map(Json)
}

/// Parsed lines (for the JSON views); a line that does not parse (imported from an old
/// file) is passed as its text in the message.
fn parsed(lines: &[StoredLine]) -> Vec<LogLineView> {
    lines
        .iter()
        .map(|l| {
            LogLineView::stored(l).unwrap_or_else(|| LogLineView {
                at: l.at,
                ..LogLineView::new(&LogLine::new("unknown", 0, 0, 0, "", &l.text))
            })
        })
        .collect()
}

/// `GET /tasks/{id}/logs?offset=N&limit=M`: the lines after line `offset`, and the
/// position to continue from (`next_offset`); `finished` once the task has ended and
/// every line has been read.
///
/// `GET /tasks/{id}/logs?before=N&limit=M` pages backwards instead: the last `limit`
/// lines before line `N` (`before=9223372036854775807`: the end of the log) and after
/// line `offset`, oldest first, with `first_offset` (the `before` of the page before
/// it) and `has_older`.
pub async fn logs(
    State(st): State<Shared>,
    Extension(_p): Extension<Principal>,
    Id(id): Id,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    params.allow(&["offset", "limit", "before"])?;
    let offset = params.int("offset", 0, i64::MAX)?.unwrap_or(0) as u64;
    let before = params.int("before", 1, i64::MAX)?;
    let limit = params
        .int("limit", 1, MAX_LOG_LINES)?
        .unwrap_or(MAX_LOG_LINES) as usize;
    st.db(move |store, _| {
        // Status first: when it is final the log is complete (the line that ends a
        // task is stored with its status).
        let t = ops::find(store, id)?;
        if let Some(before) = before {
            let (lines, has_older) = lines_before(&*store, id, offset, before as u64, limit)?;
            let next = lines.last().map_or(0, |l| l.seq);
            let first = lines.first().map_or(before as u64, |l| l.seq);
            let finished = t.status.is_final() && store.log_lines(id, next, 1)?.is_empty();
            return Ok(json!({
                "id": id,
                "status": t.status.as_str(),
                "lines": parsed(&lines),
                "offset": offset,
                "before": before,
                "first_offset": first,
                "has_older": has_older,
                "next_offset": next,
                "finished": finished,
            }));
        }
        let lines = store.log_lines(id, offset, limit)?;
        let next = lines.last().map_or(offset, |l| l.seq);
        let finished = t.status.is_final() && lines.len() < limit;
        Ok(json!({
            "id": id,
            "status": t.status.as_str(),
            "lines": parsed(&lines),
            "offset": offset,
            "next_offset": next,
            "finished": finished,
        }))
    })
    .await
    .map(Json)
}

/// The last `limit` lines of task `task` after line `after` and before line `before`,
/// oldest first, and whether older lines (after `after`) exist.
///
/// The store reads forwards only (`log_lines`: the lines after a position), and line
/// numbers are counted store-wide, so a task's numbers have gaps. The page is found by
/// searching the positions: `fits(x)` ("the `limit` lines after `x` all come before
/// `before`") holds for small `x` and not for large ones, and the largest `x` for which
/// it holds starts exactly the page wanted. A gallop backwards from `before` and a
/// binary search find it in O(log(before)) reads of `limit` lines each (a dense log,
/// one task's lines in a row, takes about log2(limit) reads).
pub fn lines_before(
    store: &dyn stask_storage::Store,
    task: i64,
    after: u64,
    before: u64,
    limit: usize,
) -> Result<(Vec<StoredLine>, bool), stask_storage::StoreError> {
    let fits = |x: u64| -> Result<Option<Vec<StoredLine>>, stask_storage::StoreError> {
        let lines = store.log_lines(task, x, limit)?;
        Ok((lines.len() == limit && lines.last().is_some_and(|l| l.seq < before)).then_some(lines))
    };
    // Past the end: search below the last line instead of the whole number range.
    let before = match store.last_log_line(task)? {
        None => return Ok((Vec::new(), false)),
        Some(last) => before.min(last.seq + 1),
    };
    if limit == 0 || before <= after.saturating_add(1) {
        return Ok((Vec::new(), false));
    }
    let Some(mut page) = fits(after)? else {
        // Fewer than `limit` lines in the range: all of them.
        let mut all = store.log_lines(task, after, limit)?;
        all.retain(|l| l.seq < before);
        return Ok((all, false));
    };
    // Gallop: `lo` fits, `hi` does not (`before - 1` never fits: nothing after it is
    // before `before`).
    let mut lo = after;
    let mut hi = before - 1;
    let mut step = limit as u64;
    while let Some(x) = hi.checked_sub(step).filter(|&x| x > lo) {
        match fits(x)? {
            Some(p) => {
                lo = x;
                page = p;
                break;
            }
            None => {
                hi = x;
                step = step.saturating_mul(2);
            }
        }
    }
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        match fits(mid)? {
            Some(p) => {
                lo = mid;
                page = p;
            }
            None => hi = mid,
        }
    }
    let first = store.log_lines(task, after, 1)?;
    let has_older = matches!((first.first(), page.first()), (Some(a), Some(b)) if a.seq < b.seq);
    Ok((page, has_older))
}

/// What a live stream still has to do.
struct Follow {
    st: Shared,
    id: i64,
    offset: u64,
    queued: VecDeque<Event>,
    done: bool,
    /// The task's watcher, once the stream has caught up with the stored log.
    live: Option<watch::Receiver<Arc<Snapshot>>>,
    /// Whether the watcher's current snapshot is still to be looked at (it was just
    /// subscribed to).
    look_now: bool,
    /// Counted among the open streams until dropped.
    _slot: Slot,
}

enum Step {
    Lines(Vec<StoredLine>),
    End(Option<stask_storage::Status>),
    Wait,
}

impl Follow {
    /// Reads the store: the next page of lines after the offset, or the end.
    async fn step(&self) -> Result<Step, ApiError> {
        let (id, offset) = (self.id, self.offset);
        self.st
            .db(move |store, _| {
                let status = store.get_task(id)?.map(|t| t.status);
                let lines = store.log_lines(id, offset, 1000)?;
                Ok(if !lines.is_empty() {
                    Step::Lines(lines)
                } else if status.is_none_or(|s| s.is_final()) {
                    Step::End(status)
                } else {
                    Step::Wait
                })
            })
            .await
    }

    fn lines(&mut self, lines: &[StoredLine]) {
        self.offset = lines.last().map_or(self.offset, |l| l.seq);
        self.queued.extend(line_events(lines));
    }

    fn end(&mut self, status: Option<stask_storage::Status>) {
        self.done = true;
        let data = json!({ "status": status.map(|s| s.as_str()), "offset": self.offset });
        self.queued
            .push_back(Event::default().event("end").data(data.to_string()));
    }

    /// Waits for the task's watcher to publish something this stream has not sent.
    /// `false`: the stream must read the store (it fell behind the publications, or
    /// the watcher was replaced).
    async fn wait_live(&mut self) -> bool {
        let Some(rx) = self.live.as_mut() else {
            return false;
        };
        if !std::mem::take(&mut self.look_now) && rx.changed().await.is_err() {
            self.live = None;
            return false;
        }
        let snap = rx.borrow_and_update().clone();
        if !snap.ready {
            return true;
        }
        if self.offset < snap.last_seq {
            if self.offset < snap.from {
                return false;
            }
            let new: Vec<StoredLine> = snap
                .lines
                .iter()
                .filter(|l| l.seq > self.offset)
                .cloned()
                .collect();
            self.lines(&new);
        }
        if let Some(status) = snap.end {
            if self.offset >= snap.last_seq {
                self.end(status);
            }
        }
        true
    }
}

fn line_events(lines: &[StoredLine]) -> VecDeque<Event> {
    lines
        .iter()
        .zip(parsed(lines))
        .map(|(stored, l)| {
            // The id is the position to resume from (EventSource sends it back as
            // Last-Event-ID when it reconnects).
            Event::default()
                .event("line")
                .id(stored.seq.to_string())
                .data(serde_json::to_string(&l).unwrap_or_default())
        })
        .collect()
}

/// The stream: the stored log from the offset (read by the stream itself), then what
/// the task's watcher publishes ([`super::streams`]), then `end`.
fn follow(f: Follow) -> impl Stream<Item = Result<Event, Infallible>> {
    futures_util::stream::unfold(f, |mut f| async move {
        loop {
            if let Some(ev) = f.queued.pop_front() {
                return Some((Ok(ev), f));
            }
            if f.done {
                return None;
            }
            if f.live.is_some() && f.wait_live().await {
                continue;
            }
            match f.step().await {
                Ok(Step::Lines(lines)) => f.lines(&lines),
                Ok(Step::End(status)) => f.end(status),
                Ok(Step::Wait) => {
                    if f.live.is_none() {
                        // Caught up: from now on the watcher says when there is more.
                        // Its current snapshot is looked at first, in case lines came
                        // in between. (After falling behind, the store just read
                        // holds everything the snapshot seen before the read has.)
                        f.live = Some(f.st.streams.subscribe(f.id));
                        f.look_now = true;
                    }
                }
                Err(e) => {
                    f.done = true;
                    let data = json!({ "error": { "code": e.code, "message": e.message } });
                    f.queued
                        .push_back(Event::default().event("error").data(data.to_string()));
                }
            }
        }
    })
}

/// `GET /tasks/{id}/events?offset=N`: server-sent events. Each new progress-log line
/// is an event `line` (data: the parsed line; id: its position) as it is stored; after
/// the task's final line comes an event `end` (data: the final status) and the stream
/// closes. A reconnecting EventSource resumes from `Last-Event-ID`. Streams are
/// limited per user and in all (429 / 503 naming the limit).
pub async fn events(
    State(st): State<Shared>,
    Extension(p): Extension<Principal>,
    Id(id): Id,
    params: Params,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    params.allow(&["offset"])?;
    let mut offset = params.int("offset", 0, i64::MAX)?.unwrap_or(0) as u64;
    if let Some(v) = headers.get("last-event-id") {
        // What this stream sent as an event id: a line sequence number (0 to i64::MAX).
        offset = v
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<i64>().ok())
            .and_then(|n| u64::try_from(n).ok())
            .ok_or_else(|| {
                ApiError::bad_field(
                    "Last-Event-ID",
                    "invalid_parameter",
                    "Last-Event-ID must be a line position sent by this stream",
                )
            })?;
    }
    st.db(move |store, _| ops::find(store, id).map_err(ApiError::from))
        .await?;
    let slot = st.streams.admit(&p.name)?;
    let stream = follow(Follow {
        st,
        id,
        offset,
        queued: VecDeque::new(),
        done: false,
        live: None,
        look_now: false,
        _slot: slot,
    });
    let mut res = Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response();
    // Proxies must pass events on as they come.
    res.headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(res)
}

/// A body streamed in pieces, each read from the store on a blocking thread as the
/// client takes them: `next(state)` returns the next piece, or `None` at the end.
fn store_body<S, F>(st: Shared, state: S, next: F) -> Body
where
    S: Send + 'static,
    F: Fn(&mut dyn stask_storage::Store, &mut S) -> Result<Option<Vec<u8>>, ApiError>
        + Send
        + Sync
        + Copy
        + 'static,
{
    let stream = futures_util::stream::unfold(Some((st, state)), move |s| async move {
        let (st, mut state) = s?;
        let piece = st
            .db(move |store, _| next(store, &mut state).map(|p| (p, state)))
            .await;
        match piece {
            Ok((Some(bytes), state)) => Some((
                Ok::<_, std::io::Error>(Bytes::from(bytes)),
                Some((st, state)),
            )),
            Ok((None, _)) => None,
            Err(e) => Some((Err(std::io::Error::other(e.message)), None)),
        }
    });
    Body::from_stream(stream)
}

/// `attachment; filename="…"` with anything but safe characters replaced.
fn attachment(name: &str) -> String {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("attachment; filename=\"{safe}\"")
}

/// `GET /tasks/{id}/log`: the whole progress log as text, exactly as stored (one
/// line per row, each ending in a newline), streamed a page of lines at a time.
pub async fn download_log(
    State(st): State<Shared>,
    Extension(_p): Extension<Principal>,
    Id(id): Id,
) -> Result<Response, ApiError> {
    st.db(move |store, _| ops::find(store, id).map_err(ApiError::from))
        .await?;
    let body = store_body(st, 0u64, move |store, after| {
        let lines = store.log_lines(id, *after, 1000)?;
        let Some(last) = lines.last() else {
            return Ok(None);
        };
        *after = last.seq;
        let mut text = String::new();
        for l in &lines {
            text.push_str(&l.text);
            text.push('\n');
        }
        Ok(Some(text.into_bytes()))
    });
    Ok((
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                attachment(&format!("task-{id}.log")),
            ),
        ],
        body,
    )
        .into_response())
}

/// `GET /tasks/{id}/files`: the task's result files.
pub async fn list_files(
    State(st): State<Shared>,
    Extension(_p): Extension<Principal>,
    Id(id): Id,
) -> Result<Json<Value>, ApiError> {
    let files = st
        .db(move |store, _| {
            ops::find(store, id)?;
            Ok(store.result_files(id)?)
        })
        .await?;
    let files: Vec<Value> = files
        .iter()
        .enumerate()
        .map(|(i, f)| json!({ "index": i, "name": f.name, "size": f.size }))
        .collect();
    Ok(Json(json!({ "id": id, "files": files })))
}

/// Whether a requested name could only be an attempt to leave the directory (`..`
/// components, absolute paths, backslashes, NUL): refused with 400 before looking.
fn is_traversal(name: &str) -> bool {
    name.is_empty()
        || name.starts_with('/')
        || name.contains('\0')
        || name.contains('\\')
        || name
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
}

/// `GET /tasks/{id}/files/{name}`: one result file, chosen from the listing by exact
/// name (which may contain `/` for files in subdirectories) or, failing that, by its
/// index in the listing.
pub async fn download_file(
    State(st): State<Shared>,
    Extension(_p): Extension<Principal>,
    Id(id): Id,
    path: PathText,
) -> Result<Response, ApiError> {
    let name = path.get("name");
    if is_traversal(&name) {
        return Err(ApiError::bad_field(
            "name",
            "invalid_file_name",
            "the file name must be a name from the task's file listing",
        ));
    }
    let (name, file, size) = st
        .db(move |store, _| {
            let f = ops::result_file(store, id, &name)?;
            Ok((f.name, f.id, f.size))
        })
        .await?;
    let base = name.rsplit('/').next().unwrap_or(&name).to_owned();
    // The version listed is what is sent, chunk by chunk; one replaced meanwhile ends
    // the body early with an error rather than mixing two versions.
    let body = store_body(st, (0u64, 0u64), move |store, (index, sent)| {
        let chunk = store.result_file_chunk(id, file, *index)?;
        *index += 1;
        match chunk {
            Some(c) => {
                *sent += c.len() as u64;
                Ok(Some(c))
            }
            None if *sent < size => Err(ApiError::new(
                StatusCode::CONFLICT,
                "file_replaced",
                "the file was replaced while it was being downloaded; download it again",
            )),
            None => Ok(None),
        }
    });
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (header::CONTENT_DISPOSITION, attachment(&base)),
            (header::CONTENT_LENGTH, size.to_string()),
        ],
        body,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traversal_names_are_refused() {
        for bad in [
            "../x",
            "a/../../b",
            "/etc/passwd",
            "a//b",
            "./a",
            "a\\b",
            "",
        ] {
            assert!(is_traversal(bad), "{bad:?}");
        }
        for ok in ["summary.json", "parts/1.csv", "a..b"] {
            assert!(!is_traversal(ok), "{ok:?}");
        }
        assert_eq!(
            attachment("a b\"c.json"),
            "attachment; filename=\"a_b_c.json\""
        );
    }

    /// Pages backwards match the log read forwards, for logs whose line numbers have
    /// gaps (two tasks writing in turns) and for dense ones.
    #[test]
    fn lines_before_pages_backwards_through_a_log_with_gaps() {
        use stask_storage::{now_ms, LogLine, Priority};
        let mut env = crate::ops::testing::Env::new();
        let req = ops::TaskRequest {
            worker: "w".into(),
            action: "noop".into(),
            data: json!({}),
            priority: Priority::Normal,
            max_attempts: 1,
            started_by: None,
            allow_sensitive: false,
        };
        let ids = ops::create(&mut *env.store, &req, 2).unwrap().ids;
        let (a, b) = (ids[0], ids[1]);
        for id in [a, b] {
            let start =
                |_: &stask_storage::TaskRecord| LogLine::new("running", 0, 0, 0, "", "Started");
            env.store
                .claim_task(id, "o", now_ms(), &start)
                .unwrap()
                .unwrap();
        }
        // Task a writes 1 line, then 3 of b, then 2 of a, …; then a long run of a alone.
        let line = |i: usize| LogLine::new("running", 0, i as u64, 0, "", &format!("line {i}"));
        let mut n = 0;
        for round in 0..40 {
            let mut batch = Vec::new();
            for _ in 0..(round % 3 + 1) {
                n += 1;
                batch.push((a, line(n)));
            }
            for _ in 0..(round % 4) {
                batch.push((b, line(0)));
            }
            env.store.record_progress("o", &[], &batch).unwrap();
        }
        let dense: Vec<(i64, LogLine)> = (0..300).map(|i| (a, line(n + 1 + i))).collect();
        env.store.record_progress("o", &[], &dense).unwrap();
        let all = env.store.log_lines(a, 0, 100_000).unwrap();
        let seqs: Vec<u64> = all.iter().map(|l| l.seq).collect();
        let last = *seqs.last().unwrap();
        for limit in [1, 2, 7, 50, 1000] {
            for before in (1..=last + 3).step_by(5).chain([last, last + 1, u64::MAX]) {
                for after in [0, seqs[3], seqs[50]] {
                    let (page, older) = lines_before(&*env.store, a, after, before, limit).unwrap();
                    let range: Vec<u64> = seqs
                        .iter()
                        .copied()
                        .filter(|&s| s > after && s < before)
                        .collect();
                    let want = &range[range.len().saturating_sub(limit)..];
                    let got: Vec<u64> = page.iter().map(|l| l.seq).collect();
                    let case = format!("after {after}, before {before}, limit {limit}");
                    assert_eq!(got, want, "{case}");
                    assert_eq!(older, want.first().is_some_and(|&f| f > range[0]), "{case}");
                }
            }
        }
        assert_eq!(
            lines_before(&*env.store, 999, 0, u64::MAX, 10).unwrap(),
            (Vec::new(), false)
        );
    }
}
