//! Platform views for platform admins: tenants with their organizations,
//! tokens and operators; failing connections across tenants; the audit trail.
//! Also the tenant switch.

use axum::Form;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::html;
use patchbay_service::Feature;
use serde::Deserialize;

use crate::PanelState;
use crate::session::Signed;
use crate::view::{Nav, PanelError, csrf_field, frame, html_response, notice, time};

pub(crate) fn admin_only(signed: &Signed) -> Result<(), PanelError> {
    if signed.session.caller.has(Feature::PlatformAdmin) {
        Ok(())
    } else {
        Err(PanelError::Forbidden {
            lang: signed.lang,
            message: signed.lang.t("error.platform_only").to_owned(),
        })
    }
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct NoticeParam {
    notice: Option<String>,
}

pub(crate) async fn tenants(
    State(state): State<PanelState>,
    signed: Signed,
    Query(p): Query<NoticeParam>,
) -> Response {
    let result = async {
        admin_only(&signed)?;
        let l = signed.lang;
        let caller = &signed.session.caller;
        let s = &state.services;
        let tenants = s.list_tenants(caller).await.map_err(|e| PanelError::from_service(e, l))?;
        let tokens = s.list_tokens(caller).await.map_err(|e| PanelError::from_service(e, l))?;
        let users = s.list_users(caller).await.map_err(|e| PanelError::from_service(e, l))?;
        let chrome = super::chrome(&state, &signed, Nav::Tenants).await?;
        let selected = signed.session.scope.as_ref().map(|x| x.tenant_id.to_string());
        let body = html! {
            h1 { (l.t("platform.tenants_title")) }
            p class="lead" { (l.t("platform.tenants_lead")) }
            (notice(l, p.notice.as_deref()))
            @if tenants.is_empty() { div class="empty" { (l.t("platform.no_tenants")) } }
            @for t in &tenants {
                section class="panel-box" data-tenant=(t.slug) {
                    div class="head" {
                        div class="grow" {
                            h2 { (t.name) " " span class="meta" { "(" (t.slug) ")" } }
                            p class="meta" { (l.t("platform.created")) " " (time(t.created_at)) " · " (l.t("platform.organizations")) ": " @for (n, o) in t.organizations.iter().enumerate() { @if n > 0 { ", " } (o.name) } }
                        }
                        @if selected.as_deref() == Some(t.id.as_str()) { span class="badge badge-enabled" { (l.t("platform.current")) } }
                        @else {
                            form method="post" action="/backend/switch-tenant" {
                                (csrf_field(&signed.session.csrf_token))
                                input type="hidden" name="tenant" value=(t.id);
                                button type="submit" class="secondary" { (l.t("platform.open")) }
                            }
                        }
                    }
                    @let mine: Vec<_> = tokens.iter().filter(|k| k.tenant_id.as_deref() == Some(t.id.as_str())).collect();
                    h3 { (l.t("platform.tokens")) }
                    @if mine.is_empty() { p class="meta" { (l.t("platform.no_tokens")) } } @else {
                        div class="table-wrap" { table {
                            thead { tr { th { (l.t("platform.token_name")) } th { (l.t("platform.token_prefix")) } th { (l.t("platform.token_features")) } th { (l.t("platform.token_last_used")) } th { (l.t("platform.token_state")) } } }
                            tbody { @for k in &mine { tr {
                                td { (k.name) } td { code { (k.prefix) "…" } } td { (k.features.join(", ")) }
                                td { @if let Some(u) = k.last_used_at { (time(u)) } @else { "—" } }
                                td { @if k.revoked_at.is_some() { span class="badge badge-revoked" { (l.t("platform.revoked")) } } @else { span class="badge badge-enabled" { (l.t("platform.active")) } } }
                            } } }
                        } }
                    }
                    @let people: Vec<_> = users.iter().filter(|u| u.tenant_id.as_deref() == Some(t.id.as_str())).collect();
                    h3 { (l.t("platform.operators")) }
                    @if people.is_empty() { p class="meta" { (l.t("platform.no_operators")) } } @else {
                        ul { @for u in &people { li { (u.name) " <" (u.email) "> — " (format!("{:?}", u.role).to_lowercase()) } } }
                    }
                }
            }
        };
        Ok::<_, PanelError>(frame(&chrome, l.t("platform.tenants_title"), body))
    }
    .await;
    match result {
        Ok(m) => html_response(StatusCode::OK, m),
        Err(e) => e.into_response(),
    }
}

pub(crate) async fn failing(State(state): State<PanelState>, signed: Signed) -> Response {
    let result = async {
        admin_only(&signed)?;
        let l = signed.lang;
        let s = &state.services;
        let since = s.now().plus_seconds(-24 * 3600);
        let rows = s.store().list_failing(since, 200).await.map_err(|e| PanelError::from_service(e.into(), l))?;
        let names: std::collections::HashMap<String, String> =
            s.list_tenants(&signed.session.caller).await.map_err(|e| PanelError::from_service(e, l))?.into_iter().map(|t| (t.id, t.name)).collect();
        let chrome = super::chrome(&state, &signed, Nav::Failing).await?;
        let total: u64 = rows.iter().map(|r| r.errors).sum();
        let body = html! {
            h1 { (l.t("platform.failing_title")) }
            p class="lead" { (l.fmt("platform.failing_lead", &[("connections", &rows.len().to_string()), ("errors", &l.number(total))])) }
            @if rows.is_empty() { div class="empty" data-empty { (l.t("platform.failing_none")) } } @else {
                div class="table-wrap" { table {
                    thead { tr { th { (l.t("platform.tenant")) } th { (l.t("platform.integration")) } th { (l.t("platform.errors")) } th { (l.t("platform.last_error")) } } }
                    tbody { @for r in &rows { tr data-failing=(r.integration_id) {
                        td { (names.get(r.scope.tenant_id.as_str()).map_or(r.scope.tenant_id.as_str(), String::as_str)) }
                        td { (r.integration_id) }
                        td { (l.number(r.errors)) }
                        td { (time(r.last_error_at)) }
                    } } }
                } }
            }
        };
        Ok::<_, PanelError>(frame(&chrome, l.t("platform.failing_title"), body))
    }
    .await;
    match result {
        Ok(m) => html_response(StatusCode::OK, m),
        Err(e) => e.into_response(),
    }
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct AuditParams {
    before: Option<i64>,
}

pub(crate) async fn audit(
    State(state): State<PanelState>,
    signed: Signed,
    Query(p): Query<AuditParams>,
) -> Response {
    let result = async {
        admin_only(&signed)?;
        let l = signed.lang;
        let rows = state.services.list_audit(&signed.session.caller, None, p.before, 50).await.map_err(|e| PanelError::from_service(e, l))?;
        let chrome = super::chrome(&state, &signed, Nav::Audit).await?;
        let body = html! {
            h1 { (l.t("platform.audit_title")) }
            p class="lead" { (l.t("platform.audit_lead")) }
            @if rows.is_empty() { div class="empty" { (l.t("platform.audit_none")) } } @else {
                div class="table-wrap" { table {
                    thead { tr { th { (l.t("platform.when")) } th { (l.t("platform.who")) } th { (l.t("platform.action")) } th { (l.t("platform.target")) } th { (l.t("platform.outcome")) } } }
                    tbody { @for r in &rows { tr data-audit=(r.action) {
                        td { (time(r.created_at)) } td { code { (r.actor) } } td { (r.action) } td { @if let Some(t) = &r.target { code { (t) } } }
                        td { span class={ "badge " @if r.outcome == "success" { "badge-enabled" } @else { "badge-revoked" } } { (r.outcome) } }
                    } } }
                } }
                @if rows.len() == 50 { @if let Some(last) = rows.last() { p { a class="button secondary" href={ "/backend/platform/audit?before=" (last.id) } { (l.t("platform.older")) " →" } } } }
            }
        };
        Ok::<_, PanelError>(frame(&chrome, l.t("platform.audit_title"), body))
    }
    .await;
    match result {
        Ok(m) => html_response(StatusCode::OK, m),
        Err(e) => e.into_response(),
    }
}

pub(crate) async fn switch_tenant(
    State(state): State<PanelState>,
    signed: Signed,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    if let Err(e) = signed.check_csrf(super::field(&form, "csrf")) {
        return e.into_response();
    }
    let Some(tenant) = super::field(&form, "tenant").filter(|t| !t.is_empty()) else {
        return super::done("/backend/platform/tenants", "switched");
    };
    match state.services.switch_tenant(&signed.session, tenant).await {
        Ok(_) => super::done("/backend/integrations", "switched"),
        Err(e) => PanelError::from_service(e, signed.lang).into_response(),
    }
}
