//! Data sync in the panel:
//!
//! * the integration page's **Sync** tab (integrations that declare
//!   streams): per stream *Run import now*, the latest runs and the state of
//!   its field mapping;
//! * a run's page, `/backend/sync/runs/{id}`: status, counters, cursors,
//!   timings, error, *Cancel* while active, and the run's failed records from
//!   the operation log (correlation id `sync_{id}`). While the run is active
//!   `/backend/sync/runs/{id}/stream` pushes its figures as server-sent
//!   events, which `app.js` writes into the page; without script the page
//!   shows the figures of its load;
//! * the field-mapping editor of a stream,
//!   `/backend/integrations/{id}/streams/{stream}/mapping`: the mapping's
//!   JSON, *Save* (every problem with its path) and *Preview* (the
//!   connector's first batch through the mapping in the text area);
//! * the tenant's runs, `/backend/sync`: newest first, filtered by status
//!   and integration, older pages by `before`.
//!
//! Everything goes through `Services` with the session's caller: a viewer
//! sees runs and mappings, starting, cancelling, saving and previewing need
//! `integrations.manage`, and another tenant's run is not found.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream};
use maud::{Markup, html};
use patchbay_core::Integration;
use patchbay_service::logs::{LogPageOut, LogQueryIn};
use patchbay_service::sync::{PreviewIn, PreviewOut, StartSyncIn, SyncRunOut, SyncRunsIn};
use patchbay_service::{Caller, Feature, FieldError, ServiceError};
use patchbay_store::{SyncCounters, SyncDirection, SyncStatus};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::PanelState;
use crate::i18n::Lang;
use crate::session::Signed;
use crate::view::{
    Nav, PanelError, csrf_field, frame, html_response, notice, time, time_text, urlencode,
};

/// Runs shown per stream on the Sync tab.
const RECENT_RUNS: u32 = 5;
/// Runs per page of `/backend/sync`.
const PAGE_SIZE: u32 = 50;
/// Failed records shown on a run's page (the rest through the log link).
const FAILURE_LINES: u32 = 50;
/// Records a preview maps.
const PREVIEW_RECORDS: u32 = 10;
/// How often a live stream reads its run when nothing in this process said
/// that it moved (another server may be running it).
const LIVE_POLL: Duration = Duration::from_secs(2);
/// A live stream reads its run at most this often, however fast batches commit.
const LIVE_MIN_INTERVAL: Duration = Duration::from_millis(250);
/// How much of a run's error the tables show.
const ERROR_PREVIEW_CHARS: usize = 80;

/// The statuses, in the order the filter offers them.
const STATUSES: [SyncStatus; 5] = [
    SyncStatus::Queued,
    SyncStatus::Running,
    SyncStatus::Succeeded,
    SyncStatus::Failed,
    SyncStatus::Cancelled,
];

/// The counters, in the order the pages show them: (name, label key).
const COUNTERS: [(&str, &str); 6] = [
    ("processed", "sync.processed"),
    ("created", "sync.created"),
    ("updated", "sync.updated"),
    ("unchanged", "sync.unchanged"),
    ("skipped", "sync.skipped"),
    ("failed", "sync.failed"),
];

/// The counters the tables show (`skipped` only on a run's page).
const TABLE_COUNTERS: [(&str, &str); 5] = [
    ("processed", "sync.processed"),
    ("created", "sync.created"),
    ("updated", "sync.updated"),
    ("unchanged", "sync.unchanged"),
    ("failed", "sync.failed"),
];

fn status_key(s: SyncStatus) -> &'static str {
    match s {
        SyncStatus::Queued => "sync.status_queued",
        SyncStatus::Running => "sync.status_running",
        SyncStatus::Succeeded => "sync.status_succeeded",
        SyncStatus::Failed => "sync.status_failed",
        SyncStatus::Cancelled => "sync.status_cancelled",
    }
}

fn direction_key(d: SyncDirection) -> &'static str {
    match d {
        SyncDirection::Import => "sync.direction_import",
        SyncDirection::Export => "sync.direction_export",
    }
}

/// A run's status as a badge (the word, not only a colour).
fn run_badge(l: Lang, s: SyncStatus) -> Markup {
    html! { span class={ "badge badge-" (s.as_str()) } data-run-status=(s.as_str()) { (l.t(status_key(s))) } }
}

fn counter(c: &SyncCounters, name: &str) -> i64 {
    match name {
        "processed" => c.processed,
        "created" => c.created,
        "updated" => c.updated,
        "unchanged" => c.unchanged,
        "skipped" => c.skipped,
        "failed" => c.failed,
        _ => 0,
    }
}

fn count(l: Lang, n: i64) -> String {
    l.number(u64::try_from(n).unwrap_or(0))
}

fn truncate(s: &str, n: usize) -> String {
    let mut out: String = s.chars().take(n).collect();
    if s.chars().nth(n).is_some() {
        out.push('…');
    }
    out
}

/// A stream's name as an HTML id.
fn dom_id(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

/// How long a run took (or has been running), for people.
fn duration(l: Lang, ms: i64) -> String {
    let ms = u64::try_from(ms).unwrap_or(0);
    if ms < 1000 {
        return l.fmt("sync.duration_ms", &[("ms", &l.number(ms))]);
    }
    let secs = ms / 1000;
    if secs < 60 {
        let sep = match l {
            Lang::En => '.',
            Lang::Pl => ',',
        };
        let tenths = ms % 1000 / 100;
        return l.fmt("sync.duration_s", &[("s", &format!("{secs}{sep}{tenths}"))]);
    }
    l.fmt(
        "sync.duration_min",
        &[
            ("min", &l.number(secs / 60)),
            ("s", &(secs % 60).to_string()),
        ],
    )
}

fn run_duration(l: Lang, run: &SyncRunOut) -> Option<String> {
    let (start, end) = (run.started_at?, run.finished_at?);
    Some(duration(
        l,
        (end.as_micros() - start.as_micros()).max(0) / 1000,
    ))
}

fn integration_title(state: &PanelState, id: &str) -> String {
    state
        .services
        .registry()
        .integration(id)
        .map_or_else(|| id.to_owned(), |i| i.title.clone())
}

fn run_link(id: i64) -> String {
    format!("/backend/sync/runs/{id}")
}

fn mapping_link(integration: &str, stream: &str) -> String {
    format!(
        "/backend/integrations/{}/streams/{}/mapping",
        urlencode(integration),
        urlencode(stream)
    )
}

/// A table of runs; `titles` (integration id → title) adds the integration
/// and stream columns.
fn runs_table(l: Lang, runs: &[SyncRunOut], titles: Option<&dyn Fn(&str) -> String>) -> Markup {
    html! {
        div class="table-wrap" {
            table class="runs" aria-label=(l.t("sync.runs_table")) {
                thead { tr {
                    th scope="col" { (l.t("sync.run")) }
                    @if titles.is_some() {
                        th scope="col" { (l.t("sync.integration")) }
                        th scope="col" { (l.t("sync.stream")) }
                    }
                    th scope="col" { (l.t("sync.status")) }
                    @for (_, key) in TABLE_COUNTERS { th scope="col" class="num" { (l.t(key)) } }
                    th scope="col" { (l.t("sync.started")) }
                    th scope="col" { (l.t("sync.finished")) }
                    th scope="col" { (l.t("sync.error")) }
                } }
                tbody {
                    @for r in runs {
                        tr data-run=(r.id) data-run-row-status=(r.status.as_str()) {
                            td { a href=(run_link(r.id)) { "#" (r.id) } }
                            @if let Some(title) = titles {
                                td { a href={ "/backend/integrations/" (urlencode(&r.integration_id)) "?tab=sync" } { (title(&r.integration_id)) } }
                                td { code { (r.stream) } }
                            }
                            td { (run_badge(l, r.status)) }
                            @for (name, _) in TABLE_COUNTERS {
                                td class="num" data-counter=(name) { (count(l, counter(&r.counters, name))) }
                            }
                            td { @if let Some(t) = r.started_at { (time(t)) } @else { "—" } }
                            td { @if let Some(t) = r.finished_at { (time(t)) } @else { "—" } }
                            td { @if let Some(e) = &r.error { span class="error-text" title=(e) { (truncate(e, ERROR_PREVIEW_CHARS)) } } @else { "—" } }
                        }
                    }
                }
            }
        }
    }
}

// ---- The integration page's Sync tab ----

/// The Sync tab of an integration with streams.
pub(crate) async fn tab(
    state: &PanelState,
    signed: &Signed,
    i: &Integration,
    enabled: bool,
) -> Result<Markup, PanelError> {
    let l = signed.lang;
    let caller = &signed.session.caller;
    let can_manage = caller.has(Feature::IntegrationsManage);
    let csrf = &signed.session.csrf_token;
    let mut streams = Vec::with_capacity(i.capabilities.streams.len());
    for stream in &i.capabilities.streams {
        let runs = state
            .services
            .list_sync_runs(
                caller,
                SyncRunsIn {
                    integration: Some(i.id.clone()),
                    stream: Some(stream.clone()),
                    limit: Some(RECENT_RUNS),
                    ..SyncRunsIn::default()
                },
            )
            .await
            .map_err(|e| PanelError::from_service(e, l))?;
        let mapping = state
            .services
            .field_mapping(caller, &i.id, stream)
            .await
            .map_err(|e| PanelError::from_service(e, l))?;
        streams.push((stream, runs, mapping));
    }
    Ok(html! {
        div data-sync-tab {
            p class="lead" { (l.t("sync.tab_lead")) }
            @if !enabled { div class="alert alert-info" data-sync-disabled { (l.t("sync.enable_first")) } }
            @for (stream, runs, mapping) in &streams {
                @let heading = format!("stream-{}", dom_id(stream));
                section class="panel-box" data-sync-stream=(stream) aria-labelledby=(heading) {
                    div class="head" {
                        h2 id=(heading) class="grow" { (l.t("sync.stream")) " " code { (stream) } }
                        @if can_manage && enabled {
                            form method="post" action={ "/backend/integrations/" (urlencode(&i.id)) "/sync" } {
                                (csrf_field(csrf))
                                input type="hidden" name="stream" value=(stream);
                                button type="submit" data-run-import=(stream) { (l.t("sync.run_now")) }
                            }
                        }
                    }
                    p class="meta" data-mapping-state=(if mapping.mapping.is_some() { "set" } else { "none" }) {
                        @match mapping.updated_at {
                            Some(at) if mapping.mapping.is_some() => { (l.t("sync.mapping_set")) " " (time(at)) ". " }
                            _ => { (l.t("sync.mapping_none")) " " }
                        }
                        a href=(mapping_link(&i.id, stream)) data-edit-mapping=(stream) {
                            @if can_manage { (l.t("sync.edit_mapping")) } @else { (l.t("sync.view_mapping")) }
                        }
                    }
                    @if runs.items.is_empty() {
                        p class="meta" data-no-runs { (l.t("sync.no_runs")) }
                    } @else {
                        (runs_table(l, &runs.items, None))
                        p class="meta" {
                            a href={ "/backend/sync?integration=" (urlencode(&i.id)) "&stream=" (urlencode(stream)) } { (l.t("sync.all_runs_of_stream")) }
                        }
                    }
                }
            }
        }
    })
}

/// "Run import now": queues a run and opens its page. A stream with a run
/// queued or running already (409 `sync_run_active`), or an integration
/// that is not enabled, comes back to the tab with the reason.
pub(crate) async fn start(
    State(state): State<PanelState>,
    signed: Signed,
    Path(id): Path<String>,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    if let Err(e) = signed.check_csrf(super::field(&form, "csrf")) {
        return e.into_response();
    }
    if let Err(r) = super::need_tenant(&signed) {
        return *r;
    }
    let l = signed.lang;
    let stream = super::field(&form, "stream").unwrap_or("").to_owned();
    match state
        .services
        .start_sync(&signed.session.caller, &id, StartSyncIn { stream })
        .await
    {
        Ok(run) => super::done(&run_link(run.id), "sync_started"),
        Err(ServiceError::Conflict { code, message, .. }) => {
            let text = match code {
                "sync_run_active" => l.t("sync.run_active").to_owned(),
                "integration_not_enabled" => l.t("sync.enable_first").to_owned(),
                _ => message,
            };
            super::integration::render(
                &state,
                &signed,
                &id,
                &super::integration::Params::tab("sync"),
                super::integration::Retry {
                    values: None,
                    errors: Vec::new(),
                    message: Some(text),
                },
                StatusCode::CONFLICT,
            )
            .await
        }
        Err(e) => PanelError::from_service(e, l).into_response(),
    }
}

// ---- A run's page, its live figures and Cancel ----

#[derive(Debug, Default, Deserialize)]
pub(crate) struct NoticeParam {
    notice: Option<String>,
}

/// What the live stream sends of a run: its figures, formatted for the page.
fn live_json(l: Lang, run: &SyncRunOut) -> String {
    let counters: serde_json::Map<String, Value> = COUNTERS
        .iter()
        .map(|(name, _)| {
            (
                (*name).to_owned(),
                Value::from(count(l, counter(&run.counters, name))),
            )
        })
        .collect();
    json!({
        "id": run.id,
        "status": run.status.as_str(),
        "statusLabel": l.t(status_key(run.status)),
        "active": run.status.is_active(),
        "counters": counters,
        "startedAt": run.started_at.map(time_text),
        "finishedAt": run.finished_at.map(time_text),
        "duration": run_duration(l, run),
        "cursorEnd": run.cursor_end,
        "error": run.error,
        "cancelRequested": run.cancel_requested,
    })
    .to_string()
}

fn parse_run_id(id: &str, lang: Lang) -> Result<i64, PanelError> {
    id.parse::<i64>().map_err(|_| PanelError::NotFound { lang })
}

/// `/backend/sync/runs/{id}`.
pub(crate) async fn run_page(
    State(state): State<PanelState>,
    signed: Signed,
    Path(id): Path<String>,
    Query(p): Query<NoticeParam>,
) -> Response {
    if let Err(r) = super::need_tenant(&signed) {
        return *r;
    }
    match run_inner(&state, &signed, &id, p.notice.as_deref()).await {
        Ok(m) => html_response(StatusCode::OK, m),
        Err(e) => e.into_response(),
    }
}

#[allow(clippy::too_many_lines)]
async fn run_inner(
    state: &PanelState,
    signed: &Signed,
    id: &str,
    note: Option<&str>,
) -> Result<Markup, PanelError> {
    let l = signed.lang;
    let caller = &signed.session.caller;
    let run_id = parse_run_id(id, l)?;
    let run = state
        .services
        .sync_run(caller, run_id)
        .await
        .map_err(|e| PanelError::from_service(e, l))?;
    let correlation = format!("sync_{}", run.id);
    // The records the run refused, each logged with the stream as its entity
    // type. (An integration gone from the catalog has no log to query.)
    let failures = match state
        .services
        .query_logs(
            caller,
            Some(&run.integration_id),
            LogQueryIn {
                correlation_id: Some(correlation.clone()),
                entity_type: Some(run.stream.clone()),
                limit: Some(FAILURE_LINES),
                ..LogQueryIn::default()
            },
        )
        .await
    {
        Ok(page) => page,
        Err(ServiceError::NotFound(_)) => LogPageOut {
            items: Vec::new(),
            total: 0,
            next_cursor: None,
        },
        Err(e) => return Err(PanelError::from_service(e, l)),
    };
    let chrome = super::chrome(state, signed, Nav::Sync).await?;
    let can_manage = caller.has(Feature::IntegrationsManage);
    let active = run.status.is_active();
    let title = l.fmt("sync.run_title", &[("id", &run.id.to_string())]);
    let integration = integration_title(state, &run.integration_id);
    let live = active.then(|| format!("/backend/sync/runs/{}/stream", run.id));
    let all_logs = format!(
        "/backend/integrations/{}?tab=logs&correlation={}",
        urlencode(&run.integration_id),
        urlencode(&correlation)
    );
    let body = html! {
        p { a href="/backend/sync" { "← " (l.t("sync.back")) } }
        (notice(l, note))
        div class="run-live" data-live-run=[live.as_deref()] data-run-id=(run.id) {
            div class="head" {
                div class="grow" {
                    h1 { (title) }
                    p class="meta" {
                        a href={ "/backend/integrations/" (urlencode(&run.integration_id)) "?tab=sync" } { (integration) }
                        " · " (l.t("sync.stream")) " " code { (run.stream) }
                        " · " (l.t(direction_key(run.direction)))
                    }
                }
                (run_badge(l, run.status))
                @if live.is_some() {
                    span class="live" data-live data-state="off" data-on=(l.t("sync.live_on")) data-off=(l.t("sync.live_off")) { (l.t("sync.live_off")) }
                }
                @if active && can_manage {
                    form method="post" action={ "/backend/sync/runs/" (run.id) "/cancel" } data-run-cancel {
                        (csrf_field(chrome.csrf()))
                        button type="submit" class="danger" data-run-action="cancel" { (l.t("sync.cancel")) }
                    }
                }
            }
            @if run.cancel_requested && active {
                div class="alert alert-info" data-cancel-requested { (l.t("sync.cancel_pending")) }
            }
            section class="panel-box" aria-labelledby="run-counters" {
                h2 id="run-counters" { (l.t("sync.counters")) }
                ul class="counters" {
                    @for (name, key) in COUNTERS {
                        li data-counter-box=(name) {
                            span class="figure" data-counter=(name) { (count(l, counter(&run.counters, name))) }
                            span class="label" { (l.t(key)) }
                        }
                    }
                }
                @if let Some(total) = run.total { p class="meta" { (l.fmt("sync.total", &[("total", &count(l, total))])) } }
            }
            div class="alert alert-bad" role="alert" data-run-error hidden[run.error.is_none()] {
                strong { (l.t("sync.error")) } " " span data-run-error-text { (run.error.as_deref().unwrap_or("")) }
            }
            section class="panel-box" aria-labelledby="run-facts" {
                h2 id="run-facts" { (l.t("sync.facts")) }
                dl class="props" {
                    dt { (l.t("sync.created_at")) } dd { (time(run.created_at)) }
                    dt { (l.t("sync.started")) } dd data-run-started { @if let Some(t) = run.started_at { (time(t)) } @else { "—" } }
                    dt { (l.t("sync.finished")) } dd data-run-finished { @if let Some(t) = run.finished_at { (time(t)) } @else { "—" } }
                    dt { (l.t("sync.duration")) } dd data-run-duration { (run_duration(l, &run).unwrap_or_else(|| "—".to_owned())) }
                    dt { (l.t("sync.cursor_start")) } dd { @if let Some(c) = &run.cursor_start { code { (c) } } @else { (l.t("sync.cursor_beginning")) } }
                    dt { (l.t("sync.cursor_end")) } dd data-run-cursor-end { @if let Some(c) = &run.cursor_end { code { (c) } } @else { "—" } }
                    dt { (l.t("sync.job")) } dd { @if let Some(j) = run.job_id { a href={ "/backend/jobs/" (j) } { "#" (j) } } @else { "—" } }
                    dt { (l.t("sync.correlation")) } dd { code { (correlation) } }
                }
            }
        }
        section class="panel-box" aria-labelledby="run-failures" data-run-failures=(failures.total) {
            h2 id="run-failures" { (l.t("sync.failures")) }
            @if failures.items.is_empty() {
                p class="meta" data-no-failures { (l.t("sync.no_failures")) }
            } @else {
                p class="meta" { (l.fmt("sync.failures_shown", &[("shown", &l.number(failures.items.len() as u64)), ("total", &l.number(failures.total))])) }
                ul class="timeline" {
                    @for e in &failures.items { (super::logs::entry(l, e, false)) }
                }
            }
            p class="meta" { a href=(all_logs) data-run-logs { (l.t("sync.all_log_lines")) } }
        }
    };
    Ok(frame(&chrome, &title, body))
}

/// Cancel: a queued run stops at once, a running one after its batch.
pub(crate) async fn cancel(
    State(state): State<PanelState>,
    signed: Signed,
    Path(id): Path<String>,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    if let Err(e) = signed.check_csrf(super::field(&form, "csrf")) {
        return e.into_response();
    }
    if let Err(r) = super::need_tenant(&signed) {
        return *r;
    }
    let l = signed.lang;
    let run_id = match parse_run_id(&id, l) {
        Ok(n) => n,
        Err(e) => return e.into_response(),
    };
    let back = run_link(run_id);
    match state
        .services
        .cancel_sync_run(&signed.session.caller, run_id)
        .await
    {
        Ok(run) if run.status == SyncStatus::Cancelled => super::done(&back, "sync_cancelled"),
        Ok(_) => super::done(&back, "sync_cancel_requested"),
        Err(ServiceError::Conflict { .. }) => super::done(&back, "sync_cancel_refused"),
        Err(e) => PanelError::from_service(e, l).into_response(),
    }
}

/// What a live stream keeps between events.
struct Live {
    state: PanelState,
    caller: Caller,
    lang: Lang,
    run_id: i64,
    progress: tokio::sync::watch::Receiver<u64>,
    /// The run as first read, sent at once.
    first: Option<SyncRunOut>,
    last_sent: Option<String>,
    last_read: Option<Instant>,
    done: bool,
}

impl Live {
    /// Waits until the run may have moved: a batch committed in this
    /// process, or [`LIVE_POLL`] (another process may run it); never sooner
    /// than [`LIVE_MIN_INTERVAL`] after the last read.
    async fn wait(&mut self) {
        if let Some(rest) = self
            .last_read
            .and_then(|at| LIVE_MIN_INTERVAL.checked_sub(at.elapsed()))
        {
            tokio::time::sleep(rest).await;
        }
        tokio::select! {
            changed = self.progress.changed() => {
                if changed.is_err() {
                    tokio::time::sleep(LIVE_POLL).await;
                }
            }
            () = tokio::time::sleep(LIVE_POLL) => {}
        }
        self.last_read = Some(Instant::now());
    }

    /// The next figures to send; `None` ends the stream.
    async fn next(mut self) -> Option<(Result<Event, Infallible>, Live)> {
        if self.done {
            return None;
        }
        loop {
            let run = if let Some(run) = self.first.take() {
                run
            } else {
                self.wait().await;
                // Gone, or the store unreachable: end; the browser
                // reconnects, and a run it may no longer see is a 404.
                self.state
                    .services
                    .sync_run(&self.caller, self.run_id)
                    .await
                    .ok()?
            };
            let data = live_json(self.lang, &run);
            if self.last_sent.as_deref() == Some(data.as_str()) {
                continue;
            }
            self.done = !run.status.is_active();
            let event = Event::default().event("run").data(data.clone());
            self.last_sent = Some(data);
            return Some((Ok(event), self));
        }
    }
}

/// Server-sent events: the run's figures as a `run` event (JSON) now and
/// whenever they change, until the run has finished (the last event says
/// `"active": false`). Woken by this process's batch commits, and reading
/// the run every [`LIVE_POLL`] otherwise, so it works with several servers.
pub(crate) async fn stream(
    State(state): State<PanelState>,
    signed: Signed,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, PanelError> {
    let l = signed.lang;
    let run_id = parse_run_id(&id, l)?;
    // Subscribed before the first read: a commit after it wakes the stream.
    let progress = state.services.sync_progress();
    let run = state
        .services
        .sync_run(&signed.session.caller, run_id)
        .await
        .map_err(|e| PanelError::from_service(e, l))?;
    let live = Live {
        state,
        caller: signed.session.caller,
        lang: l,
        run_id,
        progress,
        first: Some(run),
        last_sent: None,
        last_read: None,
        done: false,
    };
    Ok(Sse::new(stream::unfold(live, Live::next)).keep_alive(KeepAlive::default()))
}

// ---- The tenant's runs ----

/// The list's filters, from the query string.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct ListParams {
    status: Option<String>,
    integration: Option<String>,
    stream: Option<String>,
    /// Text, not a number: a cursor that does not parse is the first page.
    before: Option<String>,
}

fn nonempty(s: Option<&String>) -> Option<&str> {
    s.map(|s| s.trim()).filter(|s| !s.is_empty())
}

impl ListParams {
    fn status(&self) -> Option<&str> {
        nonempty(self.status.as_ref())
    }

    fn integration(&self) -> Option<&str> {
        nonempty(self.integration.as_ref())
    }

    fn stream(&self) -> Option<&str> {
        nonempty(self.stream.as_ref())
    }

    /// A link to the list with these filters, another status, and a cursor.
    fn link(&self, status: Option<&str>, before: Option<i64>) -> String {
        let mut q = Vec::new();
        if let Some(s) = status {
            q.push(format!("status={}", urlencode(s)));
        }
        if let Some(i) = self.integration() {
            q.push(format!("integration={}", urlencode(i)));
        }
        if let Some(s) = self.stream() {
            q.push(format!("stream={}", urlencode(s)));
        }
        if let Some(b) = before {
            q.push(format!("before={b}"));
        }
        if q.is_empty() {
            "/backend/sync".to_owned()
        } else {
            format!("/backend/sync?{}", q.join("&"))
        }
    }
}

/// `/backend/sync`.
pub(crate) async fn list(
    State(state): State<PanelState>,
    signed: Signed,
    Query(p): Query<ListParams>,
) -> Response {
    if let Err(r) = super::need_tenant(&signed) {
        return *r;
    }
    match list_inner(&state, &signed, &p).await {
        Ok(m) => html_response(StatusCode::OK, m),
        Err(e) => e.into_response(),
    }
}

async fn list_inner(
    state: &PanelState,
    signed: &Signed,
    p: &ListParams,
) -> Result<Markup, PanelError> {
    let l = signed.lang;
    let before = p
        .before
        .as_deref()
        .and_then(|b| b.trim().parse::<i64>().ok());
    let page = match state
        .services
        .list_sync_runs(
            &signed.session.caller,
            SyncRunsIn {
                integration: p.integration().map(str::to_owned),
                stream: p.stream().map(str::to_owned),
                status: p.status().map(str::to_owned),
                before,
                limit: Some(PAGE_SIZE),
            },
        )
        .await
    {
        Ok(page) => Some(page),
        Err(ServiceError::Invalid { .. }) => None,
        Err(e) => return Err(PanelError::from_service(e, l)),
    };
    let chrome = super::chrome(state, signed, Nav::Sync).await?;
    let reg = state.services.registry();
    let with_streams: Vec<(&str, &str)> = reg
        .integrations()
        .iter()
        .filter(|i| !i.capabilities.streams.is_empty())
        .map(|i| (i.id.as_str(), i.title.as_str()))
        .collect();
    let title_of = |id: &str| {
        reg.integration(id)
            .map_or_else(|| id.to_owned(), |i| i.title.clone())
    };
    let status = p.status();
    let body = html! {
        h1 { (l.t("sync.title")) }
        p class="lead" { (l.t("sync.lead")) }
        form class="filters" method="get" action="/backend/sync" aria-label=(l.t("sync.filters")) {
            @if let Some(s) = status { input type="hidden" name="status" value=(s); }
            label for="integration" { (l.t("sync.integration"))
                select id="integration" name="integration" {
                    option value="" { (l.t("sync.all_integrations")) }
                    @for (id, title) in &with_streams {
                        option value=(id) selected[p.integration() == Some(*id)] { (title) }
                    }
                }
            }
            @if let Some(s) = p.stream() {
                label for="stream" { (l.t("sync.stream"))
                    input type="text" id="stream" name="stream" value=(s);
                }
            }
            button type="submit" class="secondary" { (l.t("sync.apply")) }
        }
        ul class="chips" aria-label=(l.t("sync.by_status")) {
            li { a class="chip" data-status-filter="all" href=(p.link(None, None)) aria-current=[status.is_none().then_some("true")] { (l.t("sync.all")) } }
            @for s in STATUSES {
                li { a class="chip" data-status-filter=(s.as_str()) href=(p.link(Some(s.as_str()), None)) aria-current=[(status == Some(s.as_str())).then_some("true")] { (l.t(status_key(s))) } }
            }
        }
        @match &page {
            None => div class="alert alert-bad" role="alert" data-invalid { (l.t("sync.invalid")) },
            Some(pg) => {
                @if pg.items.is_empty() {
                    div class="empty" data-empty { (l.t("sync.empty")) }
                } @else {
                    (runs_table(l, &pg.items, Some(&title_of)))
                }
                @if before.is_some() || pg.next_before.is_some() {
                    nav class="pager" aria-label=(l.t("sync.pages")) {
                        @if before.is_some() { a class="button secondary" href=(p.link(status, None)) rel="first" { "← " (l.t("sync.newest")) } }
                        @if let Some(next) = pg.next_before { a class="button secondary" href=(p.link(status, Some(next))) rel="next" data-older { (l.t("sync.older")) " →" } }
                    }
                }
            }
        }
    };
    Ok(frame(&chrome, l.t("sync.title"), body))
}

// ---- The field-mapping editor ----

/// The example a stream without a mapping starts from: every line a
/// comment, so saving it unchanged keeps "no mapping".
fn example(l: Lang) -> String {
    const JSON: &str = r#"{
  "idPath": "id",
  "deletedPath": "deleted_at",
  "fields": [
    { "source": "title", "target": "name", "cast": "string", "required": true },
    { "source": "variants[0].price", "target": "price", "cast": "number", "default": 0 },
    { "source": "updated_at", "target": "updatedAt", "cast": "timestamp" }
  ],
  "keepUnmapped": false
}"#;
    let mut out = String::new();
    for line in [
        l.t("mapping.example_none"),
        l.t("mapping.example_how"),
        l.t("mapping.example_casts"),
        "",
    ] {
        out.push_str("// ");
        out.push_str(line);
        out.push('\n');
    }
    for line in JSON.lines() {
        out.push_str("// ");
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The mapping typed in the text area: lines starting with `//` are
/// comments (blanked, so that error positions keep their line numbers);
/// nothing else: no mapping (`null`).
fn mapping_value(text: &str) -> Result<Value, String> {
    let stripped: Vec<&str> = text
        .lines()
        .map(|line| {
            if line.trim_start().starts_with("//") {
                ""
            } else {
                line
            }
        })
        .collect();
    let stripped = stripped.join("\n");
    if stripped.trim().is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(&stripped).map_err(|e| e.to_string())
}

/// Where a problem is, as the editor shows it: a JSON Pointer into the
/// mapping (`fields/0/cast`), empty for the whole mapping.
fn problem_path(field: &str) -> &str {
    match field {
        "mapping" => "",
        f => f.strip_prefix("mapping/").unwrap_or(f),
    }
}

/// What the editor shows besides the stored mapping.
#[derive(Debug, Default)]
struct Editor {
    /// The text typed (kept after a refusal or a preview).
    text: Option<String>,
    /// A refusal: its title and every problem.
    message: Option<String>,
    problems: Vec<FieldError>,
    preview: Option<PreviewOut>,
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

#[allow(clippy::too_many_lines)]
async fn editor_page(
    state: &PanelState,
    signed: &Signed,
    id: &str,
    stream: &str,
    editor: Editor,
    note: Option<&str>,
) -> Result<Markup, PanelError> {
    let l = signed.lang;
    let caller = &signed.session.caller;
    let stored = state
        .services
        .field_mapping(caller, id, stream)
        .await
        .map_err(|e| PanelError::from_service(e, l))?;
    let chrome = super::chrome(state, signed, Nav::Marketplace).await?;
    let can_manage = caller.has(Feature::IntegrationsManage);
    let integration = integration_title(state, id);
    let text = editor.text.clone().unwrap_or_else(|| {
        stored.mapping.as_ref().map_or_else(
            || example(l),
            |m| serde_json::to_string_pretty(m).unwrap_or_default(),
        )
    });
    let title = l.fmt("mapping.title", &[("stream", stream)]);
    let action = mapping_link(id, stream);
    let body = html! {
        p { a href={ "/backend/integrations/" (urlencode(id)) "?tab=sync" } { "← " (integration) } }
        (notice(l, note))
        h1 { (title) }
        p class="lead" { (l.fmt("mapping.lead", &[("integration", &integration)])) }
        p class="meta" data-mapping-state=(if stored.mapping.is_some() { "set" } else { "none" }) {
            @match (&stored.mapping, stored.updated_at) {
                (Some(_), Some(at)) => { (l.t("sync.mapping_set")) " " (time(at)) "." }
                _ => (l.t("sync.mapping_none")),
            }
        }
        @if let Some(m) = &editor.message {
            div class="alert alert-bad" role="alert" data-problems=(editor.problems.len()) {
                strong { (m) }
                @if !editor.problems.is_empty() {
                    ul {
                        @for e in &editor.problems {
                            @let path = problem_path(&e.field);
                            li data-path=(path) data-code=(e.code) {
                                @if path.is_empty() { (l.t("mapping.whole")) } @else { code { (path) } }
                                ": " (e.message)
                            }
                        }
                    }
                }
            }
        }
        form class="form mapping" method="post" action=(action) novalidate {
            (csrf_field(chrome.csrf()))
            div class={ "field" @if editor.message.is_some() { " invalid" } } {
                label for="mapping" { (l.t("mapping.label")) }
                textarea id="mapping" name="mapping" rows="20" spellcheck="false" autocomplete="off"
                    readonly[!can_manage] aria-describedby="mapping-help"
                    aria-invalid=[editor.message.is_some().then_some("true")] { (text) }
                span class="help" id="mapping-help" { (l.t("mapping.help")) }
            }
            @if can_manage {
                div class="actions" {
                    button type="submit" name="action" value="save" data-mapping-save { (l.t("mapping.save")) }
                    button type="submit" name="action" value="preview" class="secondary" data-mapping-preview { (l.t("mapping.preview")) }
                }
            } @else {
                p class="meta" data-read-only { (l.t("mapping.read_only")) }
            }
        }
        @if let Some(preview) = &editor.preview {
            section class="panel-box" aria-labelledby="preview-title" data-preview=(preview.items.len()) {
                h2 id="preview-title" { (l.t("mapping.preview_title")) }
                p class="meta" { (l.t("mapping.preview_lead")) }
                @if preview.items.is_empty() {
                    p class="meta" data-preview-empty { (l.t("mapping.preview_empty")) }
                } @else {
                    div class="table-wrap" {
                        table class="preview" aria-labelledby="preview-title" {
                            thead { tr {
                                th scope="col" { "#" }
                                th scope="col" { (l.t("mapping.external_id")) }
                                th scope="col" { (l.t("mapping.mapped")) }
                            } }
                            tbody {
                                @for (n, item) in preview.items.iter().enumerate() {
                                    tr data-preview-item=(n + 1) data-outcome=(if item.error.is_some() { "error" } else if item.deleted { "deleted" } else { "mapped" }) {
                                        td { (n + 1) }
                                        td { @if let Some(x) = &item.external_id { code data-external-id { (x) } } @else { "—" } }
                                        td {
                                            @if let Some(e) = &item.error {
                                                span class="error-text" data-item-error { (e) }
                                            } @else if item.deleted {
                                                span class="badge badge-cancelled" { (l.t("mapping.deleted")) }
                                            } @else if let Some(d) = &item.data {
                                                pre data-mapped { (pretty(d)) }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(frame(&chrome, &title, body))
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct MappingParams {
    notice: Option<String>,
}

/// `GET /backend/integrations/{id}/streams/{stream}/mapping`.
pub(crate) async fn mapping(
    State(state): State<PanelState>,
    signed: Signed,
    Path((id, stream)): Path<(String, String)>,
    Query(p): Query<MappingParams>,
) -> Response {
    if let Err(r) = super::need_tenant(&signed) {
        return *r;
    }
    match editor_page(
        &state,
        &signed,
        &id,
        &stream,
        Editor::default(),
        p.notice.as_deref(),
    )
    .await
    {
        Ok(m) => html_response(StatusCode::OK, m),
        Err(e) => e.into_response(),
    }
}

/// Save (`action=save`) or Preview (`action=preview`) the mapping typed.
pub(crate) async fn mapping_post(
    State(state): State<PanelState>,
    signed: Signed,
    Path((id, stream)): Path<(String, String)>,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    if let Err(e) = signed.check_csrf(super::field(&form, "csrf")) {
        return e.into_response();
    }
    if let Err(r) = super::need_tenant(&signed) {
        return *r;
    }
    let l = signed.lang;
    let caller = &signed.session.caller;
    let text = super::field(&form, "mapping").unwrap_or("").to_owned();
    let preview = super::field(&form, "action") == Some("preview");
    let mut editor = Editor {
        text: Some(text.clone()),
        ..Editor::default()
    };
    let value = match mapping_value(&text) {
        Ok(v) => v,
        Err(e) => {
            editor.message = Some(l.t("mapping.invalid").to_owned());
            editor.problems = vec![FieldError::new(
                "mapping",
                "invalid_json",
                l.fmt("mapping.not_json", &[("error", &e)]),
            )];
            return respond(
                &state,
                &signed,
                &id,
                &stream,
                editor,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await;
        }
    };
    let s = &state.services;
    let outcome = if preview {
        // No mapping typed: records as read (not the stored mapping).
        let mapping = if value.is_null() { json!({}) } else { value };
        s.preview_field_mapping(
            caller,
            &id,
            &stream,
            PreviewIn {
                mapping: Some(mapping),
                records: None,
                limit: Some(PREVIEW_RECORDS),
            },
        )
        .await
        .map(|p| {
            editor.preview = Some(p);
        })
    } else {
        let removed = value.is_null();
        match s.put_field_mapping(caller, &id, &stream, value).await {
            Ok(_) => {
                return super::done(
                    &mapping_link(&id, &stream),
                    if removed {
                        "mapping_removed"
                    } else {
                        "mapping_saved"
                    },
                );
            }
            Err(e) => Err(e),
        }
    };
    let status = match outcome {
        Ok(()) => StatusCode::OK,
        Err(ServiceError::Invalid { errors, .. }) => {
            editor.message = Some(l.t("mapping.invalid").to_owned());
            editor.problems = errors;
            StatusCode::UNPROCESSABLE_ENTITY
        }
        Err(ServiceError::Conflict { code, message, .. }) => {
            editor.message = Some(match code {
                "integration_not_enabled" => l.t("mapping.enable_first").to_owned(),
                _ => message,
            });
            StatusCode::CONFLICT
        }
        Err(ServiceError::Connector { message, .. }) => {
            editor.message = Some(l.fmt("mapping.preview_failed", &[("error", &message)]));
            StatusCode::BAD_GATEWAY
        }
        Err(e) => return PanelError::from_service(e, l).into_response(),
    };
    respond(&state, &signed, &id, &stream, editor, status).await
}

async fn respond(
    state: &PanelState,
    signed: &Signed,
    id: &str,
    stream: &str,
    editor: Editor,
    status: StatusCode,
) -> Response {
    match editor_page(state, signed, id, stream, editor, None).await {
        Ok(m) => html_response(status, m),
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comment_lines_are_blanked_and_nothing_is_no_mapping() {
        assert_eq!(mapping_value(&example(Lang::En)), Ok(Value::Null));
        assert_eq!(mapping_value(&example(Lang::Pl)), Ok(Value::Null));
        assert_eq!(mapping_value("  \n"), Ok(Value::Null));
        assert_eq!(
            mapping_value("// a note\n{\"idPath\": \"sku\"}\r\n"),
            Ok(json!({ "idPath": "sku" }))
        );
        // Error positions count the comment lines.
        let e = mapping_value("// one\n// two\n{\"idPath\": }").unwrap_err();
        assert!(e.contains("line 3"), "{e}");
        // The example is the documented one once its comment marks are gone.
        let uncommented: String = example(Lang::En)
            .lines()
            .filter_map(|l| l.strip_prefix("// "))
            .skip_while(|l| !l.starts_with('{'))
            .collect::<Vec<_>>()
            .join("\n");
        let v: Value = serde_json::from_str(&uncommented).unwrap();
        assert!(
            patchbay_core::field_mapping::FieldMapping::from_value(&v).is_ok(),
            "{v}"
        );
    }

    #[test]
    fn problem_paths_are_pointers_into_the_mapping() {
        assert_eq!(problem_path("mapping"), "");
        assert_eq!(problem_path("mapping/fields/0/cast"), "fields/0/cast");
        assert_eq!(problem_path("limit"), "limit");
    }

    #[test]
    fn durations_read_in_units_for_people() {
        assert_eq!(duration(Lang::En, 350), "350 ms");
        assert_eq!(duration(Lang::En, 1_250), "1.2 s");
        assert_eq!(duration(Lang::Pl, 1_250), "1,2 s");
        assert_eq!(duration(Lang::En, 125_000), "2 min 5 s");
    }
}
