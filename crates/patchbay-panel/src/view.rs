//! The page frame and the small pieces every page uses: the top bar with
//! navigation, tenant switcher, language and sign-out; alerts; badges;
//! avatars; error pages.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{DOCTYPE, Markup, html};
use patchbay_core::{IntegrationStatus, Timestamp};
use patchbay_service::Feature;

use crate::i18n::Lang;
use crate::session::Signed;

/// The sections of the top navigation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Nav {
    Marketplace,
    Logs,
    Jobs,
    Sync,
    Usage,
    Tenants,
    Failing,
    Audit,
    PlatformJobs,
}

/// What the frame shows besides the page: who is signed in, and for
/// platform admins the tenants to switch between.
#[derive(Debug)]
pub(crate) struct Chrome<'a> {
    pub signed: &'a Signed,
    pub tenants: Vec<(String, String)>,
    pub nav: Nav,
}

impl Chrome<'_> {
    pub(crate) fn lang(&self) -> Lang {
        self.signed.lang
    }

    pub(crate) fn csrf(&self) -> &str {
        &self.signed.session.csrf_token
    }
}

/// A hidden CSRF field for a form.
pub(crate) fn csrf_field(token: &str) -> Markup {
    html! { input type="hidden" name="csrf" value=(token); }
}

/// A whole page.
// Pages build their bodies inline and hand them over; maud renders them in place.
#[allow(clippy::needless_pass_by_value)]
pub(crate) fn frame(chrome: &Chrome<'_>, title: &str, body: Markup) -> Markup {
    let l = chrome.lang();
    let s = &chrome.signed.session;
    let admin = s.caller.has(Feature::PlatformAdmin);
    let current = |n: Nav| if n == chrome.nav { Some("page") } else { None };
    let selected_tenant = s.scope.as_ref().map(|x| x.tenant_id.to_string());
    html! {
        (DOCTYPE)
        html lang=(l.code()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Patchbay" }
                link rel="stylesheet" href="/backend/static/app.css";
                script src="/backend/static/app.js" defer {}
            }
            body {
                a class="skip" href="#main" { (l.t("nav.skip")) }
                header class="topbar" {
                    a class="brand" href="/backend/integrations" { "Patchbay" }
                    nav class="nav" aria-label=(l.t("nav.label")) {
                        @if s.scope.is_some() {
                            a href="/backend/integrations" aria-current=[current(Nav::Marketplace)] { (l.t("nav.marketplace")) }
                            a href="/backend/logs" aria-current=[current(Nav::Logs)] { (l.t("nav.logs")) }
                            a href="/backend/jobs" aria-current=[current(Nav::Jobs)] { (l.t("nav.jobs")) }
                            a href="/backend/sync" aria-current=[current(Nav::Sync)] { (l.t("nav.sync")) }
                            a href="/backend/usage" aria-current=[current(Nav::Usage)] { (l.t("nav.usage")) }
                        }
                        @if admin {
                            a href="/backend/platform/tenants" aria-current=[current(Nav::Tenants)] { (l.t("nav.tenants")) }
                            a href="/backend/platform/failing" aria-current=[current(Nav::Failing)] { (l.t("nav.failing")) }
                            a href="/backend/platform/audit" aria-current=[current(Nav::Audit)] { (l.t("nav.audit")) }
                            a href="/backend/platform/jobs" aria-current=[current(Nav::PlatformJobs)] { (l.t("nav.platform_jobs")) }
                        }
                    }
                    span class="spacer" {}
                    @if admin && !chrome.tenants.is_empty() {
                        form method="post" action="/backend/switch-tenant" {
                            (csrf_field(chrome.csrf()))
                            label for="tenant-switch" class="who" { (l.t("nav.tenant")) }
                            select id="tenant-switch" name="tenant" {
                                @if selected_tenant.is_none() { option value="" selected { (l.t("nav.choose_tenant")) } }
                                @for (id, name) in &chrome.tenants {
                                    option value=(id) selected[selected_tenant.as_deref() == Some(id.as_str())] { (name) }
                                }
                            }
                            button type="submit" class="secondary" { (l.t("nav.switch")) }
                        }
                    }
                    span class="who" { (s.user.name) }
                    span class="lang" {
                        @for other in Lang::ALL {
                            @if other != l {
                                a href={ "/backend/lang/" (other.code()) "?next=" (urlencode(&chrome.signed.here)) } lang=(other.code()) { (other.code().to_uppercase()) }
                            }
                        }
                    }
                    form method="post" action="/backend/logout" {
                        (csrf_field(chrome.csrf()))
                        button type="submit" class="secondary" { (l.t("nav.sign_out")) }
                    }
                }
                main id="main" { (body) }
                footer { "Patchbay " (env!("CARGO_PKG_VERSION")) }
            }
        }
    }
}

/// A page outside the signed-in frame (sign-in, errors).
// Pages build their bodies inline and hand them over; maud renders them in place.
#[allow(clippy::needless_pass_by_value)]
pub(crate) fn bare(lang: Lang, title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang=(lang.code()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Patchbay" }
                link rel="stylesheet" href="/backend/static/app.css";
            }
            body {
                header class="topbar" { a class="brand" href="/backend/integrations" { "Patchbay" } }
                main id="main" { (body) }
            }
        }
    }
}

pub(crate) fn html_response(status: StatusCode, markup: Markup) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        markup.into_string(),
    )
        .into_response()
}

/// Percent-encodes a value for a query string.
pub(crate) fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub(crate) fn status_badge(l: Lang, s: IntegrationStatus) -> Markup {
    let key = match s {
        IntegrationStatus::Draft => "status.draft",
        IntegrationStatus::Enabled => "status.enabled",
        IntegrationStatus::Disabled => "status.disabled",
        IntegrationStatus::Revoked => "status.revoked",
    };
    html! { span class={ "badge badge-" (s.as_str()) } data-status=(s.as_str()) { (l.t(key)) } }
}

pub(crate) fn category_label(l: Lang, c: patchbay_core::Category) -> &'static str {
    match c {
        patchbay_core::Category::Payment => l.t("category.payment"),
        patchbay_core::Category::Shipping => l.t("category.shipping"),
        patchbay_core::Category::Communication => l.t("category.communication"),
        patchbay_core::Category::Notification => l.t("category.notification"),
        patchbay_core::Category::Storage => l.t("category.storage"),
        patchbay_core::Category::DataSync => l.t("category.data_sync"),
        patchbay_core::Category::Webhook => l.t("category.webhook"),
    }
}

/// A coloured initial standing in for a connector's icon (no external images).
pub(crate) fn avatar(id: &str, title: &str, large: bool) -> Markup {
    let colour = id
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)))
        % 8;
    let initial: String = title
        .chars()
        .next()
        .map(|c| c.to_uppercase().collect())
        .unwrap_or_default();
    html! { span class={ "avatar c" (colour) @if large { " lg" } } aria-hidden="true" { (initial) } }
}

/// A timestamp as `2026-11-23 14:23:05 UTC`, with the exact value in `datetime`.
pub(crate) fn time(t: Timestamp) -> Markup {
    let full = t.to_string();
    html! { time datetime=(full) { (time_text(t)) } }
}

/// A timestamp as the pages show it: `2026-11-23 14:23:05 UTC`.
pub(crate) fn time_text(t: Timestamp) -> String {
    let full = t.to_string();
    format!("{} UTC", full.get(..19).unwrap_or(&full).replace('T', " "))
}

/// How a notice reads: a plain confirmation, something to look at, or a refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tone {
    Ok,
    Info,
    Warn,
    Bad,
}

/// Renders a notice passed through a redirect (`?notice=…`), from a fixed list.
pub(crate) fn notice(l: Lang, key: Option<&str>) -> Markup {
    let (text, tone) = match key {
        Some("saved") => (l.t("notice.saved"), Tone::Ok),
        Some("removed") => (l.t("notice.removed"), Tone::Ok),
        Some("enabled") => (l.t("notice.enabled"), Tone::Ok),
        Some("disabled") => (l.t("notice.disabled"), Tone::Ok),
        Some("revoked") => (l.t("notice.revoked"), Tone::Ok),
        Some("draft") => (l.t("notice.draft"), Tone::Ok),
        Some("version") => (l.t("notice.version"), Tone::Ok),
        Some("bundle_enabled") => (l.t("notice.bundle_enabled"), Tone::Ok),
        Some("bundle_disabled") => (l.t("notice.bundle_disabled"), Tone::Ok),
        Some("switched") => (l.t("notice.switched"), Tone::Ok),
        Some("health_healthy") => (l.t("notice.health_healthy"), Tone::Ok),
        Some("health_degraded") => (l.t("notice.health_degraded"), Tone::Warn),
        Some("health_unknown") => (l.t("notice.health_unknown"), Tone::Warn),
        Some("health_unhealthy") => (l.t("notice.health_unhealthy"), Tone::Bad),
        Some("health_pending") => (l.t("notice.health_pending"), Tone::Info),
        Some("health_failed") => (l.t("notice.health_failed"), Tone::Bad),
        Some("job_retried") => (l.t("notice.job_retried"), Tone::Ok),
        Some("job_cancelled") => (l.t("notice.job_cancelled"), Tone::Ok),
        Some("job_retry_refused") => (l.t("notice.job_retry_refused"), Tone::Bad),
        Some("job_cancel_refused") => (l.t("notice.job_cancel_refused"), Tone::Bad),
        Some("schedule_saved") => (l.t("notice.schedule_saved"), Tone::Ok),
        Some("sync_started") => (l.t("notice.sync_started"), Tone::Ok),
        Some("sync_cancelled") => (l.t("notice.sync_cancelled"), Tone::Ok),
        Some("sync_cancel_requested") => (l.t("notice.sync_cancel_requested"), Tone::Info),
        Some("sync_cancel_refused") => (l.t("notice.sync_cancel_refused"), Tone::Bad),
        Some("mapping_saved") => (l.t("notice.mapping_saved"), Tone::Ok),
        Some("mapping_removed") => (l.t("notice.mapping_removed"), Tone::Ok),
        _ => return html! {},
    };
    let (class, role) = match tone {
        Tone::Ok => ("alert alert-ok", "status"),
        Tone::Info => ("alert alert-info", "status"),
        Tone::Warn => ("alert alert-warn", "status"),
        Tone::Bad => ("alert alert-bad", "alert"),
    };
    html! { div class=(class) role=(role) data-notice=[key] { (text) } }
}

/// A job's status as a badge (the word, not only a colour).
pub(crate) fn job_badge(l: Lang, status: &str) -> Markup {
    let key = match status {
        "queued" => "jobs.status_queued",
        "running" => "jobs.status_running",
        "succeeded" => "jobs.status_succeeded",
        "dead" => "jobs.status_dead",
        "cancelled" => "jobs.status_cancelled",
        _ => return html! { span class="badge" data-job-status=(status) { (status) } },
    };
    html! { span class={ "badge badge-" (status) } data-job-status=(status) { (l.t(key)) } }
}

/// Why a panel request failed, rendered as a page (or a redirect to sign-in).
#[derive(Debug)]
pub(crate) enum PanelError {
    SignIn { next: String },
    Forbidden { lang: Lang, message: String },
    NotFound { lang: Lang },
    Csrf { lang: Lang },
    Internal { lang: Lang },
    Unavailable { lang: Lang },
}

impl PanelError {
    pub(crate) fn from_service(e: patchbay_service::ServiceError, lang: Lang) -> PanelError {
        use patchbay_service::ServiceError as E;
        match e {
            E::Unauthenticated(_) => PanelError::SignIn {
                next: "/backend/integrations".to_owned(),
            },
            E::Forbidden(m) => PanelError::Forbidden { lang, message: m },
            E::NotFound(_) => PanelError::NotFound { lang },
            E::Unavailable(_) => PanelError::Unavailable { lang },
            _ => PanelError::Internal { lang },
        }
    }
}

impl IntoResponse for PanelError {
    fn into_response(self) -> Response {
        let (status, lang, title, detail) = match self {
            PanelError::SignIn { next } => {
                return Redirect::to(&format!("/backend/login?next={}", urlencode(&next)))
                    .into_response();
            }
            PanelError::Forbidden { lang, message } => (
                StatusCode::FORBIDDEN,
                lang,
                lang.t("error.forbidden.title"),
                message,
            ),
            PanelError::NotFound { lang } => (
                StatusCode::NOT_FOUND,
                lang,
                lang.t("error.not_found.title"),
                lang.t("error.not_found.detail").to_owned(),
            ),
            PanelError::Csrf { lang } => (
                StatusCode::FORBIDDEN,
                lang,
                lang.t("error.csrf.title"),
                lang.t("error.csrf.detail").to_owned(),
            ),
            PanelError::Internal { lang } => (
                StatusCode::INTERNAL_SERVER_ERROR,
                lang,
                lang.t("error.internal.title"),
                lang.t("error.internal.detail").to_owned(),
            ),
            PanelError::Unavailable { lang } => (
                StatusCode::SERVICE_UNAVAILABLE,
                lang,
                lang.t("error.unavailable.title"),
                lang.t("error.unavailable.detail").to_owned(),
            ),
        };
        let body = html! {
            h1 { (title) }
            div class="alert alert-bad" role="alert" data-error=(status.as_u16()) { (detail) }
            p { a href="/backend/integrations" { (lang.t("error.back")) } }
        };
        html_response(status, bare(lang, title, body))
    }
}
