//! The operation-log timeline (SPEC-045a §3.7): newest first, filters by
//! level, operation and correlation id, expandable details, numbered pages,
//! and a live tail over server-sent events.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream};
use maud::{Markup, html};
use patchbay_service::logs::{LogEntryOut, LogQueryIn};
use serde::Deserialize;

use crate::PanelState;
use crate::i18n::Lang;
use crate::session::Signed;
use crate::view::{Nav, PanelError, frame, html_response, time, urlencode};

const PAGE_SIZE: u32 = 25;

/// The timeline's filters, from the query string.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct Filters {
    pub level: Option<String>,
    pub operation: Option<String>,
    pub correlation: Option<String>,
    /// Text, not a number: serde's `flatten` hands query values over as
    /// strings, and a page that does not parse is simply page 1.
    pub page: Option<String>,
}

impl Filters {
    fn query(&self, page: Option<u32>) -> LogQueryIn {
        let nonempty = |s: &Option<String>| {
            s.as_deref()
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        LogQueryIn {
            level: nonempty(&self.level),
            operation: nonempty(&self.operation),
            correlation_id: nonempty(&self.correlation),
            page,
            limit: Some(PAGE_SIZE),
            ..LogQueryIn::default()
        }
    }

    /// The filters as query parameters (for pager links and the stream).
    fn params(&self) -> String {
        let mut out = String::new();
        for (k, v) in [
            ("level", &self.level),
            ("operation", &self.operation),
            ("correlation", &self.correlation),
        ] {
            if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
                out.push_str(&format!("&{k}={}", urlencode(v)));
            }
        }
        out
    }
}

fn level_key(level: patchbay_core::LogLevel) -> &'static str {
    match level {
        patchbay_core::LogLevel::Debug => "logs.level_debug",
        patchbay_core::LogLevel::Info => "logs.level_info",
        patchbay_core::LogLevel::Warning => "logs.level_warning",
        patchbay_core::LogLevel::Error => "logs.level_error",
    }
}

/// One entry of the timeline (also sent, rendered, over the live stream).
pub(crate) fn entry(l: Lang, e: &LogEntryOut, show_integration: bool) -> Markup {
    html! {
        li class={ "entry level-" (e.level.as_str()) } data-id=(e.id) data-level=(e.level.as_str()) {
            div class="top" {
                span class={ "badge badge-" (e.level.as_str()) } { (l.t(level_key(e.level))) }
                (time(e.created_at))
                span class="op" { (e.operation) }
                @if show_integration { a href={ "/backend/integrations/" (e.integration_id) "?tab=logs" } { (e.integration_id) } }
            }
            p class="msg" { (e.message) }
            p class="facts" {
                @if let Some(c) = &e.correlation_id { (l.t("logs.correlation")) " " code { (c) } }
                @if let Some(d) = e.duration_ms { " · " (l.t("logs.duration")) " " (d) " ms" }
                @if let Some(t) = &e.entity_type { " · " (t) @if let Some(id) = &e.entity_id { " " code { (id) } } }
            }
            @if let Some(d) = &e.details {
                details { summary { (l.t("logs.details")) } pre { (serde_json::to_string_pretty(d).unwrap_or_default()) } }
            }
        }
    }
}

/// The timeline with its filter form and pager. `base` is the page's URL
/// without the filters.
pub(crate) async fn timeline(
    state: &PanelState,
    signed: &Signed,
    integration: Option<&str>,
    f: &Filters,
    base: &str,
) -> Result<Markup, PanelError> {
    let l = signed.lang;
    let page_no = f
        .page
        .as_deref()
        .and_then(|p| p.parse::<u32>().ok())
        .unwrap_or(1)
        .max(1);
    let result = state
        .services
        .query_logs(&signed.session.caller, integration, f.query(Some(page_no)))
        .await;
    let (page_items, total, invalid) = match result {
        Ok(p) => (p.items, p.total, false),
        Err(patchbay_service::ServiceError::Invalid { .. }) => (Vec::new(), 0, true),
        Err(e) => return Err(PanelError::from_service(e, l)),
    };
    let from = u64::from((page_no - 1) * PAGE_SIZE) + 1;
    let to = from + page_items.len() as u64 - 1;
    let sep = if base.contains('?') { '&' } else { '?' };
    let link = |p: u32| format!("{base}{sep}page={p}{}", f.params());
    let last_page = u32::try_from(total.div_ceil(u64::from(PAGE_SIZE)))
        .unwrap_or(u32::MAX)
        .max(1);
    let newest = page_items.first().map_or(0, |e| e.id);
    let stream = integration.filter(|_| page_no == 1).map(|id| {
        format!(
            "/backend/integrations/{id}/logs/stream?after={newest}{}",
            f.params()
        )
    });
    let (tab_field, path) = match base.split_once('?') {
        Some((path, q)) => (q.strip_prefix("tab=").map(str::to_owned), path.to_owned()),
        None => (None, base.to_owned()),
    };
    Ok(html! {
        form class="filters" method="get" action=(path) aria-label=(l.t("logs.filters")) {
            @if let Some(t) = &tab_field { input type="hidden" name="tab" value=(t); }
            label for="level" { (l.t("logs.level"))
                select id="level" name="level" {
                    option value="" { (l.t("logs.level_all")) }
                    @for (v, k) in [("error", "logs.level_error"), ("warning", "logs.level_warning"), ("info", "logs.level_info"), ("debug", "logs.level_debug")] {
                        option value=(v) selected[f.level.as_deref() == Some(v)] { (l.t(k)) }
                    }
                }
            }
            label for="operation" { (l.t("logs.operation")) input type="text" id="operation" name="operation" value=[f.operation.as_deref()] placeholder="sync.import"; }
            label for="correlation" { (l.t("logs.correlation")) input type="text" id="correlation" name="correlation" value=[f.correlation.as_deref()]; }
            button type="submit" class="secondary" { (l.t("logs.apply")) }
        }
        @if invalid { div class="alert alert-bad" role="alert" { (l.t("logs.invalid")) } }
        div class="pager" {
            @if total > 0 {
                // The live tail updates the counts from the template.
                span data-showing data-to=(to) data-total=(total)
                    data-template=(l.fmt("logs.showing", &[("from", &l.number(from)), ("to", "{to}"), ("total", "{total}")])) {
                    (l.fmt("logs.showing", &[("from", &l.number(from)), ("to", &l.number(to)), ("total", &l.number(total))]))
                }
            }
            @if stream.is_some() { span class="live" data-live data-state="off" data-on=(l.t("logs.live_on")) data-off=(l.t("logs.live_off")) { (l.t("logs.live_off")) } }
        }
        ul class="timeline" data-stream=[stream] {
            @for e in &page_items { (entry(l, e, integration.is_none())) }
        }
        @if page_items.is_empty() { div class="empty" data-empty { (l.t("logs.empty")) } }
        @if last_page > 1 {
            nav class="pager" aria-label=(l.t("logs.pages")) {
                @if page_no > 1 { a class="button secondary" href=(link(page_no - 1)) rel="prev" { "← " (l.t("logs.newer")) } }
                span { (l.fmt("logs.page_of", &[("page", &page_no.to_string()), ("pages", &last_page.to_string())])) }
                @if page_no < last_page { a class="button secondary" href=(link(page_no + 1)) rel="next" { (l.t("logs.older")) " →" } }
            }
        }
    })
}

/// `/backend/logs`: every integration's entries of the tenant.
pub(crate) async fn page(
    State(state): State<PanelState>,
    signed: Signed,
    Query(f): Query<Filters>,
) -> Response {
    if let Err(r) = super::need_tenant(&signed) {
        return *r;
    }
    let result = async {
        let chrome = super::chrome(&state, &signed, Nav::Logs).await?;
        let l = signed.lang;
        let body = html! {
            h1 { (l.t("logs.title")) }
            p class="lead" { (l.t("logs.lead")) }
            (timeline(&state, &signed, None, &f, "/backend/logs").await?)
        };
        Ok::<_, PanelError>(frame(&chrome, l.t("logs.title"), body))
    }
    .await;
    match result {
        Ok(m) => html_response(StatusCode::OK, m),
        Err(e) => e.into_response(),
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct StreamParams {
    after: Option<i64>,
    #[serde(flatten)]
    filters: Filters,
}

/// Server-sent events: each new entry, rendered, as an `entry` event. Polls
/// the store once a second, so it works the same with several servers.
pub(crate) async fn stream(
    State(state): State<PanelState>,
    signed: Signed,
    Path(id): Path<String>,
    Query(p): Query<StreamParams>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, PanelError> {
    let l = signed.lang;
    // Check access and the integration once, up front.
    state
        .services
        .query_logs(&signed.session.caller, Some(&id), p.filters.query(None))
        .await
        .map_err(|e| PanelError::from_service(e, l))?;
    let start = (state, signed, id, p.filters, p.after.unwrap_or(0));
    let events = stream::unfold(start, |(state, signed, id, filters, last)| async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut query = filters.query(None);
        query.limit = Some(50);
        let fresh = state
            .services
            .query_logs(&signed.session.caller, Some(&id), query)
            .await
            .map(|p| p.items)
            .unwrap_or_default();
        let mut new: Vec<LogEntryOut> = fresh.into_iter().filter(|e| e.id > last).collect();
        new.sort_by_key(|e| e.id);
        let next = new.last().map_or(last, |e| e.id);
        let events: Vec<Result<Event, Infallible>> = new
            .iter()
            .map(|e| {
                Ok(Event::default()
                    .event("entry")
                    .id(e.id.to_string())
                    .data(entry(signed.lang, e, false).into_string()))
            })
            .collect();
        Some((stream::iter(events), (state, signed, id, filters, next)))
    });
    Ok(Sse::new(futures_util::StreamExt::flatten(events)).keep_alive(KeepAlive::default()))
}
