//! A task's progress, log lines, live events (server-sent events), log download and
//! result files.
//!
//! No path from a client is ever used as a file path: the log is found by task id, and
//! a result file is served only when the requested name equals, byte for byte, a name
//! in the listing of that task's result directory (or is that listing's index); the file
//! is then opened without following a symbolic link.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures_util::Stream;
use serde_json::{json, Value};
use stask_storage::progress_log;

use super::error::ApiError;
use super::extract::{Id, Params, PathText};
use super::{Principal, Shared};
use crate::task_log;
use crate::task_ops;
use crate::task_view::{result_files, ResultFile};

/// Lines returned by one `GET /logs` at most.
pub const MAX_LOG_LINES: i64 = 10_000;

/// How often a live stream looks for new lines.
const POLL: Duration = Duration::from_millis(100);

/// `GET /tasks/{id}/progress`: the task's status and its current state, the last
/// complete line of its progress log (read from the end of the file).
pub async fn progress(
    State(st): State<Shared>,
    Extension(_p): Extension<Principal>,
    Id(id): Id,
) -> Result<Json<Value>, ApiError> {
    st.db(move |store, st| {
        let t = task_ops::find(store, id)?;
        let path = task_log::log_path(&st.home().log_dir(), id);
        let last = progress_log::last_line(&path).map_err(|e| ApiError::internal(e.into()))?;
        Ok(json!({
            "id": id,
            "status": t.status,
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

/// `GET /tasks/{id}/logs?offset=N&limit=M`: complete lines from byte `offset` on, and
/// the offset to continue from (`next_offset`); `finished` once the task has ended and
/// every line has been read.
pub async fn logs(
    State(st): State<Shared>,
    Extension(_p): Extension<Principal>,
    Id(id): Id,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    params.allow(&["offset", "limit"])?;
    let offset = params.int("offset", 0, i64::MAX)?.unwrap_or(0) as u64;
    let limit = params
        .int("limit", 1, MAX_LOG_LINES)?
        .unwrap_or(MAX_LOG_LINES) as usize;
    st.db(move |store, st| {
        // Status first: when it is final the log is complete (the engine writes the
        // last line before it records the outcome).
        let t = task_ops::find(store, id)?;
        let path = task_log::log_path(&st.home().log_dir(), id);
        let (lines, next) = progress_log::read_from_limited(&path, offset, limit)
            .map_err(|e| ApiError::internal(e.into()))?;
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        let finished = t.status.is_final() && lines.len() < limit && next >= size;
        Ok(json!({
            "id": id,
            "status": t.status,
            "lines": lines,
            "offset": offset.min(size),
            "next_offset": next,
            "finished": finished,
        }))
    })
    .await
    .map(Json)
}

/// What a live stream still has to do.
struct Follow {
    st: Shared,
    id: i64,
    path: PathBuf,
    offset: u64,
    queued: VecDeque<Event>,
    done: bool,
}

enum Step {
    Lines(Vec<progress_log::LogLine>, u64),
    End(Option<stask_storage::Status>),
    Wait,
}

impl Follow {
    async fn step(&self) -> Result<Step, ApiError> {
        let (id, path, offset) = (self.id, self.path.clone(), self.offset);
        self.st
            .db(move |store, _| {
                let status = store.get_task(id)?.map(|t| t.status);
                let (lines, next) = progress_log::read_from_limited(&path, offset, 1000)
                    .map_err(|e| ApiError::internal(e.into()))?;
                Ok(if !lines.is_empty() || next != offset {
                    Step::Lines(lines, next)
                } else if status.is_none_or(|s| s.is_final()) {
                    Step::End(status)
                } else {
                    Step::Wait
                })
            })
            .await
    }
}

fn line_events(lines: Vec<progress_log::LogLine>, next: u64) -> VecDeque<Event> {
    let n = lines.len();
    lines
        .into_iter()
        .enumerate()
        .map(|(i, l)| {
            let ev = Event::default()
                .event("line")
                .data(serde_json::to_string(&l).unwrap_or_default());
            // The id is the offset to resume from (EventSource sends it back as
            // Last-Event-ID when it reconnects); only a batch's last line has one.
            if i + 1 == n {
                ev.id(next.to_string())
            } else {
                ev
            }
        })
        .collect()
}

fn follow(f: Follow) -> impl Stream<Item = Result<Event, Infallible>> {
    futures_util::stream::unfold(f, |mut f| async move {
        loop {
            if let Some(ev) = f.queued.pop_front() {
                return Some((Ok(ev), f));
            }
            if f.done {
                return None;
            }
            match f.step().await {
                Ok(Step::Lines(lines, next)) => {
                    f.offset = next;
                    f.queued = line_events(lines, next);
                }
                Ok(Step::End(status)) => {
                    f.done = true;
                    let data = json!({ "status": status, "offset": f.offset });
                    f.queued
                        .push_back(Event::default().event("end").data(data.to_string()));
                }
                Ok(Step::Wait) => tokio::time::sleep(POLL).await,
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
/// is an event `line` (data: the parsed line; id: the offset after it) as it is
/// appended; after the task's final line comes an event `end` (data: the final status)
/// and the stream closes. A reconnecting EventSource resumes from `Last-Event-ID`.
pub async fn events(
    State(st): State<Shared>,
    Extension(_p): Extension<Principal>,
    Id(id): Id,
    params: Params,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    params.allow(&["offset"])?;
    let mut offset = params.int("offset", 0, i64::MAX)?.unwrap_or(0) as u64;
    if let Some(v) = headers.get("last-event-id").and_then(|v| v.to_str().ok()) {
        offset = v.trim().parse().map_err(|_| {
            ApiError::bad_field(
                "Last-Event-ID",
                "invalid_parameter",
                "Last-Event-ID must be a byte offset sent by this stream",
            )
        })?;
    }
    st.db(move |store, _| task_ops::find(store, id).map_err(ApiError::from))
        .await?;
    let path = task_log::log_path(&st.home().log_dir(), id);
    let stream = follow(Follow {
        st,
        id,
        path,
        offset,
        queued: VecDeque::new(),
        done: false,
    });
    let mut res = Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response();
    // Proxies must pass events on as they come.
    res.headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(res)
}

/// The contents of an open file, read in chunks as the client takes them.
fn file_body(file: std::fs::File) -> Body {
    let file = tokio::fs::File::from_std(file);
    let stream = futures_util::stream::unfold(Some(file), |state| async move {
        use tokio::io::AsyncReadExt as _;
        let mut file = state?;
        let mut buf = vec![0u8; 64 * 1024];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(Bytes::from(buf)), Some(file)))
            }
            Err(e) => Some((Err(e), None)),
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

/// Opens a regular file without following a symbolic link at its last component.
fn open_regular(path: &Path) -> std::io::Result<Option<std::fs::File>> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        // ELOOP: the name is now a symbolic link.
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Ok(None),
        Err(e) => return Err(e),
    };
    Ok(file.metadata()?.is_file().then_some(file))
}

/// `GET /tasks/{id}/log`: the whole progress log as text.
pub async fn download_log(
    State(st): State<Shared>,
    Extension(_p): Extension<Principal>,
    Id(id): Id,
) -> Result<Response, ApiError> {
    let file = st
        .db(move |store, st| {
            task_ops::find(store, id)?;
            open_regular(&task_log::log_path(&st.home().log_dir(), id))
                .map_err(|e| ApiError::internal(e.into()))
        })
        .await?;
    let body = match file {
        Some(f) => file_body(f),
        None => Body::empty(),
    };
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

fn listing(
    store: &stask_storage::Store,
    st: &super::AppState,
    id: i64,
) -> Result<(PathBuf, Vec<ResultFile>), ApiError> {
    task_ops::find(store, id)?;
    let dir = task_log::result_dir(&st.home().results_root(), id);
    let files = result_files(&dir);
    Ok((dir, files))
}

/// `GET /tasks/{id}/files`: the task's result files.
pub async fn list_files(
    State(st): State<Shared>,
    Extension(_p): Extension<Principal>,
    Id(id): Id,
) -> Result<Json<Value>, ApiError> {
    let (_, files) = st.db(move |store, st| listing(store, st, id)).await?;
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
    let file = st
        .db(move |store, st| {
            let (dir, files) = listing(store, st, id)?;
            let entry = files
                .iter()
                .find(|f| f.name == name)
                .or_else(|| name.parse::<usize>().ok().and_then(|i| files.get(i)))
                .ok_or_else(|| {
                    ApiError::not_found(
                        "file_not_found",
                        format!("task {id} has no result file '{name}'"),
                    )
                })?;
            // The name comes from our own listing of `dir`, never from the request.
            let opened = open_regular(&dir.join(&entry.name))
                .map_err(|e| ApiError::internal(e.into()))?
                .ok_or_else(|| {
                    ApiError::not_found(
                        "file_not_found",
                        format!("task {id} has no result file '{name}'"),
                    )
                })?;
            let base = entry
                .name
                .rsplit('/')
                .next()
                .unwrap_or(&entry.name)
                .to_owned();
            Ok((opened, base))
        })
        .await?;
    let (f, base) = file;
    // No Content-Length: a file still being written may grow while it is sent.
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (header::CONTENT_DISPOSITION, attachment(&base)),
        ],
        file_body(f),
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
}
