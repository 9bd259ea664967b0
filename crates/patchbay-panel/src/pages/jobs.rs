//! Background jobs: `/backend/jobs` (the tenant's, newest first, with a
//! status filter and cursor pages), `/backend/jobs/{id}` (one job with its
//! attempts, Retry when dead, Cancel when queued), the same across every
//! tenant under `/backend/platform/jobs` for platform admins, and the
//! recurring schedules at `/backend/platform/schedules`.
//!
//! A list page costs one service call: the page of jobs and the counts per
//! status, each counted only up to 10,000 (shown as "10,000+"), so a page
//! costs the same with a million jobs.

use std::collections::HashMap;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use patchbay_service::jobs::{JobOut, JobQueryIn, PANEL_COUNT_LIMIT, ScheduleIn, ScheduleOut};
use patchbay_service::{Access, Caller, Feature, FieldError, ServiceError};
use serde::Deserialize;
use serde_json::Value;

use crate::PanelState;
use crate::i18n::Lang;
use crate::session::Signed;
use crate::view::{
    Nav, PanelError, csrf_field, frame, html_response, job_badge, notice, time, urlencode,
};

const PAGE_SIZE: u32 = 50;

/// The statuses, in the order the filter offers them.
const STATUSES: [(&str, &str); 5] = [
    ("queued", "jobs.status_queued"),
    ("running", "jobs.status_running"),
    ("succeeded", "jobs.status_succeeded"),
    ("dead", "jobs.status_dead"),
    ("cancelled", "jobs.status_cancelled"),
];

/// How much of a job's last error the list shows.
const ERROR_PREVIEW_CHARS: usize = 80;

/// Where the pages are: the tenant's jobs, or every tenant's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Area {
    Tenant,
    Platform,
}

impl Area {
    fn base(self) -> &'static str {
        match self {
            Area::Tenant => "/backend/jobs",
            Area::Platform => "/backend/platform/jobs",
        }
    }

    fn nav(self) -> Nav {
        match self {
            Area::Tenant => Nav::Jobs,
            Area::Platform => Nav::PlatformJobs,
        }
    }

    /// The caller the pages act as. In the tenant area, the session's caller
    /// (a platform admin who switched to a tenant sees that tenant's jobs).
    /// In the platform area, a platform admin's session acts on the platform
    /// whichever tenant it has switched to: the same user, platform access,
    /// and only the platform feature (not the tenant features the switch adds).
    fn caller(self, signed: &Signed) -> Result<Caller, Box<Response>> {
        match self {
            Area::Tenant => {
                super::need_tenant(signed)?;
                Ok(signed.session.caller.clone())
            }
            Area::Platform => {
                super::platform::admin_only(signed).map_err(|e| Box::new(e.into_response()))?;
                if signed.session.user.tenant_id.is_some() {
                    return Err(Box::new(
                        PanelError::Forbidden {
                            lang: signed.lang,
                            message: signed.lang.t("error.platform_only").to_owned(),
                        }
                        .into_response(),
                    ));
                }
                let mut caller = signed.session.caller.clone();
                caller.access = Access::Platform;
                caller.features.retain(|f| *f == Feature::PlatformAdmin);
                Ok(caller)
            }
        }
    }

    fn can_manage(self, caller: &Caller) -> bool {
        match self {
            Area::Tenant => caller.has(Feature::IntegrationsManage),
            Area::Platform => caller.has(Feature::PlatformAdmin),
        }
    }
}

/// The list's filters, from the query string.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct ListParams {
    status: Option<String>,
    /// Platform area: a tenant id, or `platform` for platform work.
    tenant: Option<String>,
    /// Text, not a number: a cursor that does not parse is the first page.
    cursor: Option<String>,
    notice: Option<String>,
}

impl ListParams {
    fn status(&self) -> Option<&str> {
        self.status
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
    }

    fn tenant(&self) -> Option<&str> {
        self.tenant
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
    }

    /// A link to the list with these filters, another status, and a cursor.
    fn link(&self, area: Area, status: Option<&str>, cursor: Option<i64>) -> String {
        let mut q = Vec::new();
        if let Some(s) = status {
            q.push(format!("status={}", urlencode(s)));
        }
        if let Some(t) = self.tenant() {
            q.push(format!("tenant={}", urlencode(t)));
        }
        if let Some(c) = cursor {
            q.push(format!("cursor={c}"));
        }
        if q.is_empty() {
            area.base().to_owned()
        } else {
            format!("{}?{}", area.base(), q.join("&"))
        }
    }
}

fn truncate(s: &str, n: usize) -> String {
    let mut out: String = s.chars().take(n).collect();
    if s.chars().nth(n).is_some() {
        out.push('…');
    }
    out
}

fn tenant_name<'a>(names: &'a HashMap<String, String>, job: &'a JobOut) -> &'a str {
    job.tenant_id
        .as_deref()
        .map_or("", |t| names.get(t).map_or(t, String::as_str))
}

/// A count taken up to [`PANEL_COUNT_LIMIT`]: at the limit it reads "10,000+".
fn counted(l: Lang, n: u64) -> String {
    if n >= PANEL_COUNT_LIMIT {
        format!("{}+", l.number(PANEL_COUNT_LIMIT))
    } else {
        l.number(n)
    }
}

/// The table of jobs; `tenants` names the tenant column (platform area).
fn table(
    l: Lang,
    area: Area,
    items: &[JobOut],
    tenants: Option<&HashMap<String, String>>,
) -> Markup {
    html! {
        div class="table-wrap" {
            table class="jobs" aria-label=(l.t("jobs.table")) {
                thead { tr {
                    th scope="col" { (l.t("jobs.id")) }
                    @if tenants.is_some() { th scope="col" { (l.t("jobs.tenant")) } }
                    th scope="col" { (l.t("jobs.kind")) }
                    th scope="col" { (l.t("jobs.status")) }
                    th scope="col" { (l.t("jobs.integration")) }
                    th scope="col" { (l.t("jobs.attempts")) }
                    th scope="col" { (l.t("jobs.when")) }
                    th scope="col" { (l.t("jobs.last_error")) }
                } }
                tbody {
                    @for j in items {
                        tr data-job=(j.id) data-job-row-status=(j.status) {
                            td { a href={ (area.base()) "/" (j.id) } { "#" (j.id) } }
                            @if let Some(names) = tenants {
                                td { @if j.tenant_id.is_some() { (tenant_name(names, j)) } @else { span class="meta" { (l.t("jobs.platform_work")) } } }
                            }
                            td { code { (j.kind) } }
                            td { (job_badge(l, j.status)) }
                            td {
                                @match (&j.integration_id, area) {
                                    (Some(i), Area::Tenant) => a href={ "/backend/integrations/" (i) } { (i) },
                                    (Some(i), Area::Platform) => (i),
                                    (None, _) => "—",
                                }
                            }
                            td { (j.attempts) "/" (j.max_attempts) }
                            td {
                                @if let Some(f) = j.finished_at { span class="meta" { (l.t("jobs.finished")) } " " (time(f)) }
                                @else { span class="meta" { (l.t("jobs.run_at")) } " " (time(j.run_at)) }
                            }
                            td { @if let Some(e) = &j.last_error { span class="error-text" title=(e) { (truncate(e, ERROR_PREVIEW_CHARS)) } } @else { "—" } }
                        }
                    }
                }
            }
        }
    }
}

/// The tabs of the platform's jobs area.
fn platform_tabs(l: Lang, schedules: bool) -> Markup {
    html! {
        nav class="tabs" aria-label=(l.t("jobs.sections")) {
            a href="/backend/platform/jobs" aria-current=[(!schedules).then_some("page")] { (l.t("jobs.tab_jobs")) }
            a href="/backend/platform/schedules" aria-current=[schedules.then_some("page")] { (l.t("jobs.tab_schedules")) }
        }
    }
}

async fn list(state: &PanelState, signed: &Signed, area: Area, p: &ListParams) -> Response {
    let caller = match area.caller(signed) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let result = async {
        let l = signed.lang;
        let cursor = p.cursor.as_deref().and_then(|c| c.trim().parse::<i64>().ok());
        let query = JobQueryIn {
            status: p.status().map(str::to_owned),
            tenant_id: (area == Area::Platform).then(|| p.tenant().map(str::to_owned)).flatten(),
            cursor,
            limit: Some(PAGE_SIZE),
            ..JobQueryIn::default()
        };
        let page = match state
            .services
            .list_jobs_counting(&caller, query, Some(PANEL_COUNT_LIMIT))
            .await
        {
            Ok(page) => Some(page),
            Err(ServiceError::Invalid { .. }) => None,
            Err(e) => return Err(PanelError::from_service(e, l)),
        };
        let chrome = super::chrome(state, signed, area.nav()).await?;
        // The platform area names tenants from the switcher's list (no extra query).
        let names: HashMap<String, String> = chrome.tenants.iter().cloned().collect();
        let status = p.status();
        // Per status within the caller's reach and the tenant filter.
        let counts = page.as_ref().map(|pg| &pg.counts);
        let count_of = |s: Option<&str>| -> Option<u64> {
            counts.map(|c| match s {
                Some(s) => c.get(s).copied().unwrap_or(0),
                None => c.values().sum(),
            })
        };
        let title = match area {
            Area::Tenant => l.t("jobs.title"),
            Area::Platform => l.t("jobs.platform_title"),
        };
        let body = html! {
            h1 { (title) }
            p class="lead" { @match area { Area::Tenant => (l.t("jobs.lead")), Area::Platform => (l.t("jobs.platform_lead")) } }
            @if area == Area::Platform { (platform_tabs(l, false)) }
            (notice(l, p.notice.as_deref()))
            @if area == Area::Platform {
                form class="filters" method="get" action=(area.base()) aria-label=(l.t("jobs.filters")) {
                    @if let Some(s) = status { input type="hidden" name="status" value=(s); }
                    label for="tenant" { (l.t("jobs.tenant"))
                        select id="tenant" name="tenant" {
                            option value="" { (l.t("jobs.all_tenants")) }
                            option value="platform" selected[p.tenant() == Some("platform")] { (l.t("jobs.platform_work")) }
                            @for (id, name) in &chrome.tenants {
                                option value=(id) selected[p.tenant() == Some(id.as_str())] { (name) }
                            }
                        }
                    }
                    button type="submit" class="secondary" { (l.t("jobs.apply")) }
                }
            }
            ul class="chips" aria-label=(l.t("jobs.by_status")) {
                li { a class="chip" data-status-filter="all" href=(p.link(area, None, None)) aria-current=[status.is_none().then_some("true")] {
                    (l.t("jobs.all")) @if let Some(n) = count_of(None) { " (" (counted(l, n)) ")" }
                } }
                @for (s, key) in STATUSES {
                    li { a class="chip" data-status-filter=(s) href=(p.link(area, Some(s), None)) aria-current=[(status == Some(s)).then_some("true")] {
                        (l.t(key)) @if let Some(n) = count_of(Some(s)) { " (" span data-count=(s) { (counted(l, n)) } ")" }
                    } }
                }
            }
            @match &page {
                None => div class="alert alert-bad" role="alert" data-invalid { (l.t("jobs.invalid")) },
                Some(pg) => {
                    @if pg.items.is_empty() {
                        div class="empty" data-empty { (l.t("jobs.empty")) }
                    } @else {
                        p class="meta" data-total=(pg.total) { (l.fmt("jobs.showing", &[("shown", &l.number(pg.items.len() as u64)), ("total", &counted(l, pg.total))])) }
                        (table(l, area, &pg.items, (area == Area::Platform).then_some(&names)))
                    }
                    @if cursor.is_some() || pg.next_cursor.is_some() {
                        nav class="pager" aria-label=(l.t("jobs.pages")) {
                            @if cursor.is_some() { a class="button secondary" href=(p.link(area, status, None)) rel="first" { "← " (l.t("jobs.newest")) } }
                            @if let Some(next) = pg.next_cursor { a class="button secondary" href=(p.link(area, status, Some(next))) rel="next" data-older { (l.t("jobs.older")) " →" } }
                        }
                    }
                }
            }
        };
        Ok::<_, PanelError>(frame(&chrome, title, body))
    }
    .await;
    match result {
        Ok(m) => html_response(StatusCode::OK, m),
        Err(e) => e.into_response(),
    }
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

#[allow(clippy::too_many_lines)]
async fn detail(
    state: &PanelState,
    signed: &Signed,
    area: Area,
    id: &str,
    note: Option<&str>,
) -> Response {
    let caller = match area.caller(signed) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let l = signed.lang;
    let Ok(id) = id.parse::<i64>() else {
        return PanelError::NotFound { lang: l }.into_response();
    };
    let result = async {
        let job = state.services.get_job(&caller, id).await.map_err(|e| PanelError::from_service(e, l))?;
        let chrome = super::chrome(state, signed, area.nav()).await?;
        let can_manage = area.can_manage(&caller);
        let csrf = chrome.csrf().to_owned();
        let title = l.fmt("jobs.job_title", &[("id", &job.id.to_string())]);
        let tenant = job.tenant_id.as_deref().map(|t| {
            chrome.tenants.iter().find(|(id, _)| id == t).map_or(t, |(_, name)| name.as_str())
        });
        let history = job.history.as_deref().unwrap_or_default();
        let body = html! {
            p { a href=(area.base()) { "← " (l.t("jobs.back")) } }
            (notice(l, note))
            div class="head" {
                div class="grow" {
                    h1 { (title) }
                    p class="meta" { code { (job.kind) } " · " (l.t("jobs.queue")) " " code { (job.queue) } }
                }
                (job_badge(l, job.status))
                @if can_manage && (job.status == "dead" || job.status == "queued") {
                    div class="actions" {
                        @if job.status == "dead" {
                            form method="post" action={ (area.base()) "/" (job.id) "/retry" } {
                                (csrf_field(&csrf))
                                button type="submit" data-job-action="retry" { (l.t("jobs.retry")) }
                            }
                        }
                        @if job.status == "queued" {
                            form method="post" action={ (area.base()) "/" (job.id) "/cancel" } {
                                (csrf_field(&csrf))
                                button type="submit" class="danger" data-job-action="cancel" { (l.t("jobs.cancel")) }
                            }
                        }
                    }
                }
            }
            section class="panel-box" aria-labelledby="job-facts" {
                h2 id="job-facts" { (l.t("jobs.facts")) }
                dl class="props" {
                    @if area == Area::Platform {
                        dt { (l.t("jobs.tenant")) } dd { @match tenant { Some(t) => (t), None => (l.t("jobs.platform_work")) } }
                    }
                    dt { (l.t("jobs.integration")) }
                    dd { @match (&job.integration_id, area) {
                        (Some(i), Area::Tenant) => a href={ "/backend/integrations/" (i) } { (i) },
                        (Some(i), Area::Platform) => (i),
                        (None, _) => "—",
                    } }
                    dt { (l.t("jobs.attempts")) } dd data-attempts { (job.attempts) "/" (job.max_attempts) }
                    dt { (l.t("jobs.created")) } dd { (time(job.created_at)) }
                    dt { (l.t("jobs.run_at")) } dd { (time(job.run_at)) }
                    dt { (l.t("jobs.started")) } dd { @if let Some(t) = job.started_at { (time(t)) } @else { "—" } }
                    dt { (l.t("jobs.finished")) } dd { @if let Some(t) = job.finished_at { (time(t)) } @else { "—" } }
                    @if let Some(w) = &job.lease_owner {
                        dt { (l.t("jobs.worker")) } dd { code { (w) } @if let Some(t) = job.lease_expires_at { " · " (l.t("jobs.lease_until")) " " (time(t)) } }
                    }
                }
            }
            @if let Some(e) = &job.last_error {
                section class="panel-box" aria-labelledby="job-error" {
                    h2 id="job-error" { (l.t("jobs.last_error")) }
                    pre data-last-error { (e) }
                }
            }
            section class="panel-box" aria-labelledby="job-payload" {
                h2 id="job-payload" { (l.t("jobs.payload")) }
                pre data-payload { (pretty(&job.payload)) }
            }
            @if let Some(r) = &job.result {
                section class="panel-box" aria-labelledby="job-result" {
                    h2 id="job-result" { (l.t("jobs.result")) }
                    pre data-result { (pretty(r)) }
                }
            }
            section class="panel-box" aria-labelledby="job-history" {
                h2 id="job-history" { (l.t("jobs.history")) }
                @if history.is_empty() { p class="meta" data-no-history { (l.t("jobs.no_history")) } } @else {
                    div class="table-wrap" { table class="attempts" aria-labelledby="job-history" {
                        thead { tr {
                            th scope="col" { (l.t("jobs.attempt")) }
                            th scope="col" { (l.t("jobs.worker")) }
                            th scope="col" { (l.t("jobs.started")) }
                            th scope="col" { (l.t("jobs.finished")) }
                            th scope="col" { (l.t("jobs.outcome")) }
                            th scope="col" { (l.t("jobs.error")) }
                        } }
                        tbody { @for a in history {
                            tr data-attempt=(a.attempt) data-outcome=(a.outcome.unwrap_or("running")) {
                                td { (a.attempt) }
                                td { code { (a.worker) } }
                                td { (time(a.started_at)) }
                                td { @if let Some(t) = a.finished_at { (time(t)) } @else { "—" } }
                                td { (outcome_badge(l, a.outcome)) }
                                td { @if let Some(e) = &a.error { (e) } @else { "—" } }
                            }
                        } }
                    } }
                }
            }
        };
        Ok::<_, PanelError>(frame(&chrome, &title, body))
    }
    .await;
    match result {
        Ok(m) => html_response(StatusCode::OK, m),
        Err(e) => e.into_response(),
    }
}

fn outcome_badge(l: Lang, outcome: Option<&str>) -> Markup {
    let (class, key) = match outcome {
        None => ("running", "jobs.outcome_running"),
        Some("succeeded") => ("succeeded", "jobs.outcome_succeeded"),
        Some("failed") => ("dead", "jobs.outcome_failed"),
        Some("lost") => ("dead", "jobs.outcome_lost"),
        Some("released") => ("cancelled", "jobs.outcome_released"),
        Some(other) => return html! { span class="badge" { (other) } },
    };
    html! { span class={ "badge badge-" (class) } { (l.t(key)) } }
}

#[derive(Debug, Clone, Copy)]
enum Action {
    Retry,
    Cancel,
}

/// Retry or Cancel, then back to the job with a notice; a job that changed
/// meanwhile is a notice too, not an error page.
async fn act(
    state: &PanelState,
    signed: &Signed,
    area: Area,
    id: &str,
    form: &[(String, String)],
    action: Action,
) -> Response {
    if let Err(e) = signed.check_csrf(super::field(form, "csrf")) {
        return e.into_response();
    }
    let caller = match area.caller(signed) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let Ok(id) = id.parse::<i64>() else {
        return PanelError::NotFound { lang: signed.lang }.into_response();
    };
    let s = &state.services;
    let (result, ok, refused) = match action {
        Action::Retry => (
            s.retry_job(&caller, id).await,
            "job_retried",
            "job_retry_refused",
        ),
        Action::Cancel => (
            s.cancel_job(&caller, id).await,
            "job_cancelled",
            "job_cancel_refused",
        ),
    };
    let back = format!("{}/{id}", area.base());
    match result {
        Ok(_) => super::done(&back, ok),
        Err(ServiceError::Conflict { .. }) => super::done(&back, refused),
        Err(e) => PanelError::from_service(e, signed.lang).into_response(),
    }
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct NoticeParam {
    notice: Option<String>,
}

pub(crate) async fn page(
    State(state): State<PanelState>,
    signed: Signed,
    Query(p): Query<ListParams>,
) -> Response {
    list(&state, &signed, Area::Tenant, &p).await
}

pub(crate) async fn job(
    State(state): State<PanelState>,
    signed: Signed,
    Path(id): Path<String>,
    Query(p): Query<NoticeParam>,
) -> Response {
    detail(&state, &signed, Area::Tenant, &id, p.notice.as_deref()).await
}

pub(crate) async fn retry(
    State(state): State<PanelState>,
    signed: Signed,
    Path(id): Path<String>,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    act(&state, &signed, Area::Tenant, &id, &form, Action::Retry).await
}

pub(crate) async fn cancel(
    State(state): State<PanelState>,
    signed: Signed,
    Path(id): Path<String>,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    act(&state, &signed, Area::Tenant, &id, &form, Action::Cancel).await
}

pub(crate) async fn platform_page(
    State(state): State<PanelState>,
    signed: Signed,
    Query(p): Query<ListParams>,
) -> Response {
    list(&state, &signed, Area::Platform, &p).await
}

pub(crate) async fn platform_job(
    State(state): State<PanelState>,
    signed: Signed,
    Path(id): Path<String>,
    Query(p): Query<NoticeParam>,
) -> Response {
    detail(&state, &signed, Area::Platform, &id, p.notice.as_deref()).await
}

pub(crate) async fn platform_retry(
    State(state): State<PanelState>,
    signed: Signed,
    Path(id): Path<String>,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    act(&state, &signed, Area::Platform, &id, &form, Action::Retry).await
}

pub(crate) async fn platform_cancel(
    State(state): State<PanelState>,
    signed: Signed,
    Path(id): Path<String>,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    act(&state, &signed, Area::Platform, &id, &form, Action::Cancel).await
}

/// A schedule form sent back with its problems: the values typed and the
/// errors, for the one schedule that was edited.
#[derive(Debug)]
struct ScheduleRetry {
    name: String,
    schedule: String,
    enabled: bool,
    errors: Vec<FieldError>,
}

/// A schedule's name as an HTML id (names have dots).
fn dom_id(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

fn schedule_row(l: Lang, csrf: &str, s: &ScheduleOut, retry: Option<&ScheduleRetry>) -> Markup {
    let key = dom_id(&s.name);
    let expr_id = format!("schedule-{key}");
    let enabled_id = format!("enabled-{key}");
    let value = retry.map_or(s.schedule.as_str(), |r| r.schedule.as_str());
    let enabled = retry.map_or(s.enabled, |r| r.enabled);
    let error = retry.and_then(|r| r.errors.iter().find(|e| e.field == "schedule"));
    html! {
        tr data-schedule=(s.name) {
            th scope="row" { code { (s.name) } }
            td data-expression { code { (s.schedule) } }
            td { code { (s.kind) } }
            td { @if s.enabled { span class="badge badge-enabled" data-enabled="true" { (l.t("schedules.on")) } } @else { span class="badge badge-disabled" data-enabled="false" { (l.t("schedules.off")) } } }
            td { (time(s.next_run_at)) }
            td { @if let Some(t) = s.last_run_at { (time(t)) } @else { "—" } }
            td { @if let Some(j) = s.last_job_id { a href={ "/backend/platform/jobs/" (j) } { "#" (j) } } @else { "—" } }
            td {
                form class="schedule-form" method="post" action={ "/backend/platform/schedules/" (s.name) } novalidate {
                    (csrf_field(csrf))
                    div class={ "field" @if error.is_some() { " invalid" } } data-field="schedule" {
                        label for=(expr_id) { (l.t("schedules.expression")) }
                        input type="text" id=(expr_id) name="schedule" value=(value) required
                            aria-invalid=[error.is_some().then_some("true")]
                            aria-describedby=[error.is_some().then(|| format!("{expr_id}-error"))];
                        @if let Some(e) = error { span class="error" id={ (expr_id) "-error" } role="alert" { (e.message) } }
                    }
                    div class="field check" {
                        input type="checkbox" id=(enabled_id) name="enabled" value="on" checked[enabled];
                        label for=(enabled_id) { (l.t("schedules.enabled")) }
                    }
                    button type="submit" class="secondary" { (l.t("schedules.save")) }
                }
            }
        }
    }
}

async fn render_schedules(
    state: &PanelState,
    signed: &Signed,
    note: Option<&str>,
    retry: Option<&ScheduleRetry>,
    status: StatusCode,
) -> Response {
    let caller = match Area::Platform.caller(signed) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let result = async {
        let l = signed.lang;
        let schedules = state.services.list_schedules(&caller).await.map_err(|e| PanelError::from_service(e, l))?;
        let chrome = super::chrome(state, signed, Nav::PlatformJobs).await?;
        let csrf = chrome.csrf().to_owned();
        let body = html! {
            h1 { (l.t("schedules.title")) }
            p class="lead" { (l.t("schedules.lead")) }
            (platform_tabs(l, true))
            (notice(l, note))
            @if let Some(r) = retry {
                div class="alert alert-bad" role="alert" data-errors {
                    strong { (l.fmt("schedules.invalid", &[("name", &r.name)])) }
                    @let others: Vec<&FieldError> = r.errors.iter().filter(|e| e.field != "schedule").collect();
                    @if !others.is_empty() { ul { @for e in others { li data-code=(e.code) { (e.message) } } } }
                }
            }
            @if schedules.is_empty() { div class="empty" data-empty { (l.t("schedules.none")) } } @else {
                div class="table-wrap" { table class="schedules" aria-label=(l.t("schedules.title")) {
                    thead { tr {
                        th scope="col" { (l.t("schedules.name")) }
                        th scope="col" { (l.t("schedules.expression")) }
                        th scope="col" { (l.t("schedules.kind")) }
                        th scope="col" { (l.t("schedules.state")) }
                        th scope="col" { (l.t("schedules.next_run")) }
                        th scope="col" { (l.t("schedules.last_run")) }
                        th scope="col" { (l.t("schedules.last_job")) }
                        th scope="col" { (l.t("schedules.change")) }
                    } }
                    tbody { @for s in &schedules {
                        (schedule_row(l, &csrf, s, retry.filter(|r| r.name == s.name)))
                    } }
                } }
            }
            p class="meta" { (l.t("schedules.syntax")) }
        };
        Ok::<_, PanelError>(frame(&chrome, l.t("schedules.title"), body))
    }
    .await;
    match result {
        Ok(m) => html_response(status, m),
        Err(e) => e.into_response(),
    }
}

pub(crate) async fn schedules(
    State(state): State<PanelState>,
    signed: Signed,
    Query(p): Query<NoticeParam>,
) -> Response {
    render_schedules(&state, &signed, p.notice.as_deref(), None, StatusCode::OK).await
}

/// Changes a schedule's expression and enabled flag; an invalid expression
/// comes back on the page with the error under the field (422).
pub(crate) async fn save_schedule(
    State(state): State<PanelState>,
    signed: Signed,
    Path(name): Path<String>,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    if let Err(e) = signed.check_csrf(super::field(&form, "csrf")) {
        return e.into_response();
    }
    let caller = match Area::Platform.caller(&signed) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let schedule = super::field(&form, "schedule").unwrap_or("").to_owned();
    let enabled = super::field(&form, "enabled") == Some("on");
    let input = ScheduleIn {
        schedule: Some(schedule.clone()),
        enabled: Some(enabled),
    };
    match state.services.update_schedule(&caller, &name, input).await {
        Ok(_) => super::done("/backend/platform/schedules", "schedule_saved"),
        Err(ServiceError::Invalid { errors, .. }) => {
            let retry = ScheduleRetry {
                name,
                schedule,
                enabled,
                errors,
            };
            render_schedules(
                &state,
                &signed,
                None,
                Some(&retry),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
        Err(e) => PanelError::from_service(e, signed.lang).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_at_the_limit_read_as_at_least() {
        assert_eq!(counted(Lang::En, 9_999), "9,999");
        assert_eq!(counted(Lang::En, PANEL_COUNT_LIMIT), "10,000+");
        assert_eq!(counted(Lang::Pl, PANEL_COUNT_LIMIT), "10\u{a0}000+");
    }
}
