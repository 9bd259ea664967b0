//! `/backend/integrations/bundle/{id}`: one credentials form shared by the
//! members, per-member toggles, Enable all / Disable all, links to members.

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use patchbay_core::IntegrationStatus;
use patchbay_service::integrations::BundleStateIn;
use patchbay_service::{Feature, ServiceError};
use serde::Deserialize;

use super::integration::{Retry, credentials_form, values_from_form};
use crate::PanelState;
use crate::session::Signed;
use crate::view::{
    Nav, PanelError, avatar, category_label, csrf_field, frame, html_response, notice, status_badge,
};

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Params {
    notice: Option<String>,
}

async fn render_inner(
    state: &PanelState,
    signed: &Signed,
    id: &str,
    p: &Params,
    retry: &Retry,
) -> Result<Markup, PanelError> {
    let l = signed.lang;
    let caller = &signed.session.caller;
    let detail = state
        .services
        .bundle_detail(caller, id)
        .await
        .map_err(|e| PanelError::from_service(e, l))?;
    let chrome = super::chrome(state, signed, Nav::Marketplace).await?;
    let b = &detail.bundle;
    let csrf = &signed.session.csrf_token;
    let can_manage = caller.has(Feature::IntegrationsManage);
    let creds = if caller.has(Feature::IntegrationsCredentials) {
        let masked = state
            .services
            .credentials_masked(caller, id)
            .await
            .map_err(|e| PanelError::from_service(e, l))?;
        let values = retry.values.clone().unwrap_or(masked.values);
        html! {
            @if let Some(m) = &retry.message {
                div class="alert alert-bad" role="alert" data-errors {
                    strong { (m) }
                    ul { @for e in &retry.errors { li { @if let Some(member) = e.field.strip_prefix("members.").and_then(|r| r.split('.').next()) { (member) ": " } (e.message) } } }
                }
            }
            (credentials_form(l, csrf, &format!("/backend/integrations/bundle/{id}/credentials"), &b.credentials, &values, &retry.errors))
        }
    } else {
        html! { div class="empty" { (l.t("credentials.no_access")) } }
    };
    let body = html! {
        p { a href="/backend/integrations" { "← " (l.t("detail.back")) } }
        (notice(l, p.notice.as_deref()))
        div class="head" {
            (avatar(&b.id, &b.title, true))
            div class="grow" {
                h1 { (b.title) }
                p class="meta" {
                    (l.fmt("marketplace.bundle_summary", &[("count", &detail.members.len().to_string()), ("enabled", &detail.enabled_count.to_string())]))
                    @if let (Some(pkg), Some(v)) = (&b.package, &b.version) { " · " (pkg) " v" (v) }
                }
            }
            @if can_manage {
                div class="actions" {
                    @for (enabled, key, class) in [("true", "bundle.enable_all", ""), ("false", "bundle.disable_all", "secondary")] {
                        form method="post" action={ "/backend/integrations/bundle/" (b.id) "/state" } {
                            (csrf_field(csrf))
                            input type="hidden" name="enabled" value=(enabled);
                            button type="submit" class=(class) data-bundle-action=(enabled) { (l.t(key)) }
                        }
                    }
                }
            }
        }
        p { (b.description) }
        h2 { (l.t("bundle.members")) }
        div class="table-wrap" {
            table {
                thead { tr { th { (l.t("bundle.member")) } th { (l.t("bundle.category")) } th { (l.t("bundle.status")) } @if can_manage { th { span class="skip" { (l.t("bundle.toggle")) } } } } }
                tbody {
                    @for m in &detail.members {
                        tr data-member=(m.id) {
                            td { a href={ "/backend/integrations/" (m.id) } { (m.title) } }
                            td { (category_label(l, m.category)) }
                            td { (status_badge(l, m.state.status)) }
                            @if can_manage {
                                td {
                                    @let (action, key) = if m.state.status == IntegrationStatus::Enabled { ("disable", "state.disable") } else { ("enable", "state.enable") };
                                    @if m.state.status != IntegrationStatus::Revoked {
                                        form method="post" action={ "/backend/integrations/" (m.id) "/state" } {
                                            (csrf_field(csrf))
                                            input type="hidden" name="action" value=(action);
                                            input type="hidden" name="return" value={ "/backend/integrations/bundle/" (b.id) };
                                            button type="submit" class="secondary" { (l.t(key)) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        h2 { (l.t("bundle.shared_credentials")) }
        p class="lead" { (l.t("bundle.shared_lead")) }
        (creds)
    };
    Ok(frame(&chrome, &b.title, body))
}

async fn render(
    state: &PanelState,
    signed: &Signed,
    id: &str,
    p: &Params,
    retry: Retry,
    status: StatusCode,
) -> Response {
    match render_inner(state, signed, id, p, &retry).await {
        Ok(m) => html_response(status, m),
        Err(e) => e.into_response(),
    }
}

pub(crate) async fn page(
    State(state): State<PanelState>,
    signed: Signed,
    Path(id): Path<String>,
    Query(p): Query<Params>,
) -> Response {
    if let Err(r) = super::need_tenant(&signed) {
        return *r;
    }
    render(&state, &signed, &id, &p, Retry::default(), StatusCode::OK).await
}

pub(crate) async fn save_credentials(
    State(state): State<PanelState>,
    signed: Signed,
    Path(id): Path<String>,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    if let Err(e) = signed.check_csrf(super::field(&form, "csrf")) {
        return e.into_response();
    }
    let l = signed.lang;
    let reg = state.services.registry();
    let Some(b) = reg.bundle(&id) else {
        return PanelError::NotFound { lang: l }.into_response();
    };
    let (values, mut errors) = values_from_form(&b.credentials, &form);
    if errors.is_empty() {
        match state
            .services
            .save_credentials(&signed.session.caller, &id, values.clone())
            .await
        {
            Ok(_) => return super::done(&format!("/backend/integrations/bundle/{id}"), "saved"),
            Err(ServiceError::Invalid { errors: e, .. }) => errors.extend(e),
            Err(e) => return PanelError::from_service(e, l).into_response(),
        }
    }
    let retry = Retry {
        values: Some(values),
        errors,
        message: Some(l.t("credentials.invalid").to_owned()),
    };
    render(
        &state,
        &signed,
        &id,
        &Params::default(),
        retry,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await
}

pub(crate) async fn set_state(
    State(state): State<PanelState>,
    signed: Signed,
    Path(id): Path<String>,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    if let Err(e) = signed.check_csrf(super::field(&form, "csrf")) {
        return e.into_response();
    }
    let l = signed.lang;
    let enabled = super::field(&form, "enabled") == Some("true");
    let back = if super::field(&form, "return") == Some("marketplace") {
        "/backend/integrations".to_owned()
    } else {
        format!("/backend/integrations/bundle/{id}")
    };
    match state
        .services
        .set_bundle_state(&signed.session.caller, &id, BundleStateIn { enabled })
        .await
    {
        Ok(_) => super::done(
            &back,
            if enabled {
                "bundle_enabled"
            } else {
                "bundle_disabled"
            },
        ),
        Err(ServiceError::Conflict { errors, .. }) => {
            let retry = Retry {
                values: None,
                errors,
                message: Some(l.t("bundle.refused").to_owned()),
            };
            render(
                &state,
                &signed,
                &id,
                &Params::default(),
                retry,
                StatusCode::CONFLICT,
            )
            .await
        }
        Err(e) => PanelError::from_service(e, l).into_response(),
    }
}
