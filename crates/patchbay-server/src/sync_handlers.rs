//! The data-sync routes: runs (start, list, read, cancel, live progress),
//! the records store's changes, field mappings and their preview.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::{self, Stream};
use patchbay_service::Caller;
use patchbay_service::sync::{ExportIn, PreviewIn, RecordsIn, StartSyncIn, SyncRunOut, SyncRunsIn};
use serde_json::Value;

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{Authed, Json, Query};
use crate::handlers::{ApiResult, json, ok};

fn run_id(id: &str) -> ApiResult<i64> {
    id.parse()
        .map_err(|_| ApiError::not_found("no such sync run: run ids are numbers"))
}

pub async fn start_sync(
    State(state): State<AppState>,
    Authed(caller): Authed,
    Path(id): Path<String>,
    Json(input): Json<StartSyncIn>,
) -> ApiResult<Response> {
    let run = state.services().start_sync(&caller, &id, input).await?;
    let mut response = json(StatusCode::ACCEPTED, &run)?;
    if let Ok(v) = HeaderValue::from_str(&format!("/api/sync/runs/{}", run.id)) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    Ok(response)
}

/// The largest export request body.
pub const EXPORT_BODY_LIMIT: usize = 16 << 20;

pub async fn start_export(
    State(state): State<AppState>,
    Authed(caller): Authed,
    Path(id): Path<String>,
    Json(input): Json<ExportIn>,
) -> ApiResult<Response> {
    let run = state.services().start_export(&caller, &id, input).await?;
    let mut response = json(StatusCode::ACCEPTED, &run)?;
    if let Ok(v) = HeaderValue::from_str(&format!("/api/sync/runs/{}", run.id)) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    Ok(response)
}

pub async fn list_runs(
    State(state): State<AppState>,
    Authed(caller): Authed,
    Query(q): Query<SyncRunsIn>,
) -> ApiResult<Response> {
    ok(&state.services().list_sync_runs(&caller, q).await?)
}

pub async fn run(
    State(state): State<AppState>,
    Authed(caller): Authed,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    ok(&state.services().sync_run(&caller, run_id(&id)?).await?)
}

pub async fn cancel_run(
    State(state): State<AppState>,
    Authed(caller): Authed,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    ok(&state
        .services()
        .cancel_sync_run(&caller, run_id(&id)?)
        .await?)
}

/// Live progress: a `progress` event with the run each time it changes
/// (the store is polled every 500 ms, and at once when this process commits
/// a batch, so it works the same with several servers), and a last `done`
/// event when the run has finished.
pub async fn run_events(
    State(state): State<AppState>,
    Authed(caller): Authed,
    Path(id): Path<String>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let id = run_id(&id)?;
    let first = state.services().sync_run(&caller, id).await?;
    let progress = state.services().sync_progress();
    let start: (
        AppState,
        Caller,
        Option<SyncRunOut>,
        Option<String>,
        bool,
        _,
    ) = (state, caller, Some(first), None, false, progress);
    let events = stream::unfold(
        start,
        move |(state, caller, fresh, last, done, mut progress)| async move {
            if done {
                return None;
            }
            let run = if let Some(r) = fresh {
                r
            } else {
                let _ = tokio::time::timeout(Duration::from_millis(500), progress.changed()).await;
                state.services().sync_run(&caller, id).await.ok()?
            };
            let text = serde_json::to_string(&run).unwrap_or_default();
            let finished = !run.status.is_active();
            let event = (last.as_deref() != Some(text.as_str())).then(|| {
                Ok(Event::default()
                    .event(if finished { "done" } else { "progress" })
                    .data(text.clone()))
            });
            Some((
                stream::iter(event),
                (state, caller, None, Some(text), finished, progress),
            ))
        },
    );
    Ok(Sse::new(futures_util::StreamExt::flatten(events)).keep_alive(KeepAlive::default()))
}

pub async fn records(
    State(state): State<AppState>,
    Authed(caller): Authed,
    Path(id): Path<String>,
    Query(q): Query<RecordsIn>,
) -> ApiResult<Response> {
    ok(&state.services().sync_records(&caller, &id, q).await?)
}

pub async fn mapping(
    State(state): State<AppState>,
    Authed(caller): Authed,
    Path((id, stream)): Path<(String, String)>,
) -> ApiResult<Response> {
    ok(&state
        .services()
        .field_mapping(&caller, &id, &stream)
        .await?)
}

pub async fn put_mapping(
    State(state): State<AppState>,
    Authed(caller): Authed,
    Path((id, stream)): Path<(String, String)>,
    Json(mapping): Json<Value>,
) -> ApiResult<Response> {
    ok(&state
        .services()
        .put_field_mapping(&caller, &id, &stream, mapping)
        .await?)
}

pub async fn preview_mapping(
    State(state): State<AppState>,
    Authed(caller): Authed,
    Path((id, stream)): Path<(String, String)>,
    Json(input): Json<PreviewIn>,
) -> ApiResult<Response> {
    ok(&state
        .services()
        .preview_field_mapping(&caller, &id, &stream, input)
        .await?)
}
