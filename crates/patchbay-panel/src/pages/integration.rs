//! `/backend/integrations/{id}`: one integration — status and the enable
//! toggle, the API-version picker, and the Credentials / Health / Logs tabs.

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use patchbay_core::credentials::{CredentialField, CredentialSchema, FieldType};
use patchbay_core::{IntegrationStatus, VersionStatus};
use patchbay_service::credentials::{MaskedCredentials, Source};
use patchbay_service::health::{
    CheckStatus, HealthRequest, HealthResult, HealthStatus, effective_health,
};
use patchbay_service::integrations::{StateIn, VersionChoice};
use patchbay_service::{Feature, FieldError, ServiceError};
use patchbay_vault::MASK;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::PanelState;
use crate::i18n::Lang;
use crate::session::Signed;
use crate::view::{
    Nav, PanelError, avatar, category_label, csrf_field, frame, html_response, notice, status_badge,
};

/// How long "Run check now" waits for the check before answering that it
/// is queued (the check itself may take up to its manifest's timeout).
const HEALTH_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Params {
    tab: Option<String>,
    #[serde(rename = "override")]
    override_: Option<String>,
    notice: Option<String>,
    /// The job of a health check just requested (shown with its notice).
    job: Option<String>,
    #[serde(flatten)]
    logs: super::logs::Filters,
}

impl Params {
    /// The page on one tab.
    pub(crate) fn tab(tab: &str) -> Params {
        Params {
            tab: Some(tab.to_owned()),
            ..Params::default()
        }
    }
}

/// What a failed POST hands back to the page: the values typed and every problem.
#[derive(Debug, Default)]
pub(crate) struct Retry {
    pub values: Option<Map<String, Value>>,
    pub errors: Vec<FieldError>,
    pub message: Option<String>,
}

/// Whether a connector for the integration runs in this process (a native
/// one of this build, or a component loaded from `--connectors-dir`). Without
/// one the panel says so instead of pretending that provider calls happen.
pub(crate) fn runtime_available(state: &PanelState, id: &str) -> bool {
    state.services.natives().has(id)
}

fn field_input(
    l: Lang,
    f: &CredentialField,
    value: Option<&Value>,
    error: Option<&FieldError>,
    disabled: bool,
) -> Markup {
    let id = format!("f-{}", f.key);
    let name = format!("v.{}", f.key);
    let text = value.and_then(Value::as_str).unwrap_or("");
    html! {
        div class={ "field" @if f.field_type == FieldType::Boolean { " check" } @if error.is_some() { " invalid" } } data-field=(f.key) {
            @match f.field_type {
                FieldType::Boolean => {
                    input type="checkbox" id=(id) name=(name) value="on" checked[value.and_then(Value::as_bool).unwrap_or(false)] disabled[disabled];
                    label for=(id) { (f.label) }
                }
                _ => {
                    label for=(id) { (f.label) @if f.required { " " span class="req" aria-hidden="true" { "*" } } }
                    @match f.field_type {
                        FieldType::Secret => input type="password" id=(id) name=(name) value=(text) placeholder=[f.placeholder.as_deref()] autocomplete="off" required[f.required] disabled[disabled] aria-describedby={ (id) "-help" };
                        FieldType::Url => input type="url" id=(id) name=(name) value=(text) placeholder=[f.placeholder.as_deref()] required[f.required] disabled[disabled] aria-describedby={ (id) "-help" };
                        FieldType::Number => input type="number" step="any" id=(id) name=(name) value=(value.and_then(Value::as_f64).map(|n| n.to_string()).unwrap_or_default()) placeholder=[f.placeholder.as_deref()] required[f.required] disabled[disabled] aria-describedby={ (id) "-help" };
                        FieldType::Select => select id=(id) name=(name) required[f.required] disabled[disabled] aria-describedby={ (id) "-help" } {
                            @if !f.required { option value="" { (l.t("form.choose")) } }
                            @for o in &f.options { option value=(o.value) selected[text == o.value] { (o.label) } }
                        },
                        FieldType::Oauth2 => p class="help" { (l.t("form.oauth_managed")) },
                        FieldType::SshKey => p class="help" { (l.t("form.ssh_managed")) },
                        _ => input type="text" id=(id) name=(name) value=(text) placeholder=[f.placeholder.as_deref()] required[f.required] disabled[disabled] aria-describedby={ (id) "-help" };
                    }
                }
            }
            @if let Some(h) = &f.help { span class="help" id={ (id) "-help" } { (h) } }
            @if f.field_type == FieldType::Secret && text == MASK { span class="help" { (l.t("form.secret_kept")) } }
            @if let Some(e) = error { span class="error" role="alert" { (e.message) } }
        }
    }
}

/// The credentials form of an integration or bundle.
pub(crate) fn credentials_form(
    l: Lang,
    csrf: &str,
    action: &str,
    schema: &CredentialSchema,
    values: &Map<String, Value>,
    errors: &[FieldError],
) -> Markup {
    html! {
        form class="form" method="post" action=(action) novalidate {
            (csrf_field(csrf))
            @for f in &schema.fields {
                (field_input(l, f, values.get(&f.key), errors.iter().find(|e| e.field == format!("values.{}", f.key)), false))
            }
            button type="submit" { (l.t("form.save")) }
        }
    }
}

/// Turns a posted form into credential values: booleans from checkboxes,
/// numbers parsed, empty fields left out.
pub(crate) fn values_from_form(
    schema: &CredentialSchema,
    form: &[(String, String)],
) -> (Map<String, Value>, Vec<FieldError>) {
    let mut values = Map::new();
    let mut errors = Vec::new();
    for f in &schema.fields {
        let raw = super::field(form, &format!("v.{}", f.key));
        match f.field_type {
            FieldType::Boolean => {
                values.insert(f.key.clone(), Value::Bool(raw == Some("on")));
            }
            FieldType::Number => {
                if let Some(s) = raw.map(str::trim).filter(|s| !s.is_empty()) {
                    match s.parse::<f64>().ok().and_then(serde_json::Number::from_f64) {
                        Some(n) => {
                            values.insert(f.key.clone(), Value::Number(n));
                        }
                        None => errors.push(FieldError::new(
                            format!("values.{}", f.key),
                            "invalid_type",
                            format!("{} must be a number", f.label),
                        )),
                    }
                }
            }
            FieldType::Oauth2 | FieldType::SshKey => {}
            _ => {
                if let Some(s) = raw.filter(|s| !s.is_empty()) {
                    values.insert(f.key.clone(), Value::String(s.to_owned()));
                }
            }
        }
    }
    (values, errors)
}

fn errors_box(l: Lang, title: &str, errors: &[FieldError]) -> Markup {
    html! {
        div class="alert alert-bad" role="alert" data-errors {
            strong { (title) }
            ul { @for e in errors { li data-code=(e.code) { (e.message) } } }
        }
        @let _ = l;
    }
}

#[allow(clippy::too_many_lines)]
pub(crate) async fn render(
    state: &PanelState,
    signed: &Signed,
    id: &str,
    p: &Params,
    retry: Retry,
    status: StatusCode,
) -> Response {
    match render_inner(state, signed, id, p, retry).await {
        Ok(m) => html_response(status, m),
        Err(e) => e.into_response(),
    }
}

async fn render_inner(
    state: &PanelState,
    signed: &Signed,
    id: &str,
    p: &Params,
    retry: Retry,
) -> Result<Markup, PanelError> {
    let l = signed.lang;
    let caller = &signed.session.caller;
    let s = &state.services;
    let detail = s
        .integration_detail(caller, id)
        .await
        .map_err(|e| PanelError::from_service(e, l))?;
    let reg = s.registry();
    let i = &detail.integration;
    let has_streams = !i.capabilities.streams.is_empty();
    let tab = match p.tab.as_deref() {
        Some("health") => "health",
        Some("logs") => "logs",
        Some("sync") if has_streams => "sync",
        _ => "credentials",
    };
    let chrome = super::chrome(state, signed, Nav::Marketplace).await?;
    let can_manage = caller.has(Feature::IntegrationsManage);
    let can_credentials = caller.has(Feature::IntegrationsCredentials);
    let csrf = &signed.session.csrf_token;
    let effective = reg
        .resolve_api_version(&i.id, detail.state.api_version.as_deref())
        .ok()
        .flatten()
        .cloned();
    let today = s.now().date();
    let tab_body = match tab {
        "health" => {
            // Drift is applied on reading: a healthy result older than the
            // credentials in use reads as degraded. The detail may have
            // applied it already; applying it twice changes nothing.
            let stored = detail.state.last_health.as_ref().map(Value::to_string);
            let result = effective_health(stored.as_deref(), detail.credentials.updated_at);
            health_tab(
                l,
                csrf,
                &i.id,
                result.as_ref(),
                can_manage,
                p.job.as_deref().and_then(|j| j.parse::<i64>().ok()),
            )
        }
        "sync" => {
            super::sync::tab(
                state,
                signed,
                i,
                detail.state.status == IntegrationStatus::Enabled,
            )
            .await?
        }
        "logs" => {
            super::logs::timeline(
                state,
                signed,
                Some(&i.id),
                &p.logs,
                &format!("/backend/integrations/{}?tab=logs", i.id),
            )
            .await?
        }
        _ => {
            if can_credentials {
                let masked = s
                    .credentials_masked(caller, id)
                    .await
                    .map_err(|e| PanelError::from_service(e, l))?;
                let schema = patchbay_service::credentials::form_for(&reg, id)
                    .map_err(|e| PanelError::from_service(e, l))?;
                credentials_tab(
                    l,
                    csrf,
                    i,
                    detail
                        .bundle
                        .as_ref()
                        .map(|b| (b.id.as_str(), b.title.as_str())),
                    schema,
                    &masked,
                    p.override_.is_some(),
                    &retry,
                )
            } else {
                html! { div class="empty" { (l.t("credentials.no_access")) } }
            }
        }
    };
    let body = html! {
        p { a href="/backend/integrations" { "← " (l.t("detail.back")) } }
        (notice(l, p.notice.as_deref()))
        @if let Some(m) = &retry.message {
            @if tab != "credentials" || retry.values.is_none() { (errors_box(l, m, &retry.errors)) }
        }
        div class="head" {
            (avatar(&i.id, &i.title, true))
            div class="grow" {
                h1 { (i.title) }
                p class="meta" {
                    span class="badge badge-cat" { (category_label(l, i.category)) } " "
                    @if let Some(b) = &detail.bundle { (l.t("detail.part_of")) " " a href={ "/backend/integrations/bundle/" (b.id) } { (b.title) } " · " }
                    @if let (Some(pkg), Some(v)) = (&i.package, &i.version) { (pkg) " v" (v) }
                }
            }
            (status_badge(l, detail.state.status))
            @if can_manage {
                div class="actions" {
                    @for (action, key, class) in actions(detail.state.status) {
                        form method="post" action={ "/backend/integrations/" (i.id) "/state" } {
                            (csrf_field(csrf))
                            input type="hidden" name="action" value=(action);
                            button type="submit" class=(class) data-action=(action) { (l.t(key)) }
                        }
                    }
                }
            }
        }
        p { (i.description) }
        @if !runtime_available(state, &i.id) {
            div class="alert alert-info" data-hub-notice { (l.fmt("detail.hub_missing", &[("hub", i.hub.as_str())])) }
        }
        @if let Some(v) = &effective {
            @if v.status == VersionStatus::Deprecated {
                @let sunset = v.sunset_at.map(|d| d.to_string()).unwrap_or_default();
                div class={ "alert " @if v.is_past_sunset(today) { "alert-bad" } @else { "alert-warn" } } data-deprecated=(v.id) {
                    @if v.is_past_sunset(today) { (l.fmt("versions.past_sunset", &[("version", &v.id), ("date", &sunset)])) }
                    @else { (l.fmt("versions.deprecated", &[("version", &v.id), ("date", &sunset)])) }
                    @if let Some(g) = &v.migration_guide_url { " " a href=(g) rel="noopener noreferrer" { (l.t("versions.guide")) } }
                }
            }
        }
        @if !i.api_versions.is_empty() {
            section class="panel-box" aria-labelledby="versions-title" {
                h2 id="versions-title" { (l.t("versions.title")) }
                div class="table-wrap" {
                    table class="versions" {
                        thead { tr { th { (l.t("versions.version")) } th { (l.t("versions.status")) } th { (l.t("versions.sunset")) } th { (l.t("versions.guide")) } } }
                        tbody {
                            @for v in &i.api_versions {
                                tr data-version=(v.id) {
                                    td { (v.label) @if v.default { " " span class="badge badge-cat" { (l.t("versions.default")) } } }
                                    td { @if v.status == VersionStatus::Deprecated { span class="badge badge-draft" { (l.t("versions.deprecated_badge")) } } @else { span class="badge badge-enabled" { (l.t("versions.stable")) } } }
                                    td { @if let Some(d) = v.sunset_at { (d.to_string()) } @else { "—" } }
                                    td { @if let Some(g) = &v.migration_guide_url { a href=(g) rel="noopener noreferrer" { (l.t("versions.guide")) } } @else { "—" } }
                                }
                            }
                        }
                    }
                }
                @if can_manage {
                    form class="filters" method="post" action={ "/backend/integrations/" (i.id) "/state" } {
                        (csrf_field(csrf))
                        label for="api_version" { (l.t("versions.pick"))
                            select id="api_version" name="api_version" {
                                option value="" selected[detail.state.api_version.is_none()] { (l.t("versions.use_default")) }
                                @for v in &i.api_versions {
                                    option value=(v.id) selected[detail.state.api_version.as_deref() == Some(v.id.as_str())] {
                                        (v.label) @if v.status == VersionStatus::Deprecated { " — " (l.t("versions.deprecated_badge")) }
                                    }
                                }
                            }
                        }
                        button type="submit" class="secondary" { (l.t("versions.apply")) }
                    }
                }
            }
        }
        nav class="tabs" aria-label=(l.t("detail.tabs")) {
            a href={ "/backend/integrations/" (i.id) } aria-current=[(tab == "credentials").then_some("page")] { (l.t("detail.tab_credentials")) }
            a href={ "/backend/integrations/" (i.id) "?tab=health" } aria-current=[(tab == "health").then_some("page")] { (l.t("detail.tab_health")) }
            @if has_streams {
                a href={ "/backend/integrations/" (i.id) "?tab=sync" } aria-current=[(tab == "sync").then_some("page")] data-tab="sync" { (l.t("detail.tab_sync")) }
            }
            a href={ "/backend/integrations/" (i.id) "?tab=logs" } aria-current=[(tab == "logs").then_some("page")] { (l.t("detail.tab_logs")) }
        }
        (tab_body)
    };
    Ok(frame(&chrome, &i.title, body))
}

/// The lifecycle buttons a status offers: (action, label key, class).
fn actions(status: IntegrationStatus) -> Vec<(&'static str, &'static str, &'static str)> {
    match status {
        IntegrationStatus::Draft => vec![("enable", "state.enable", "")],
        IntegrationStatus::Enabled => vec![
            ("disable", "state.disable", "secondary"),
            ("revoke", "state.revoke", "danger"),
        ],
        IntegrationStatus::Disabled => vec![
            ("enable", "state.enable", ""),
            ("revoke", "state.revoke", "danger"),
        ],
        IntegrationStatus::Revoked => vec![("draft", "state.new_draft", "secondary")],
    }
}

fn health_key(s: HealthStatus) -> &'static str {
    match s {
        HealthStatus::Healthy => "health.status_healthy",
        HealthStatus::Degraded => "health.status_degraded",
        HealthStatus::Unhealthy => "health.status_unhealthy",
        HealthStatus::Unknown => "health.status_unknown",
    }
}

fn check_key(s: CheckStatus) -> (&'static str, &'static str) {
    match s {
        CheckStatus::Pass => ("pass", "health.check_pass"),
        CheckStatus::Warn => ("warn", "health.check_warn"),
        CheckStatus::Fail => ("fail", "health.check_fail"),
        CheckStatus::Skip => ("skip", "health.check_skip"),
    }
}

/// The names of the checks this build runs, in words; others as they are.
fn check_name(l: Lang, name: &str) -> &str {
    match name {
        "credentials" => l.t("health.name_credentials"),
        "api_version" => l.t("health.name_api_version"),
        "provider" => l.t("health.name_provider"),
        "drift" => l.t("health.name_drift"),
        other => other,
    }
}

/// The Health tab: the last result (drift applied) with its checks, and
/// "Run check now" for those who may manage the integration.
fn health_tab(
    l: Lang,
    csrf: &str,
    id: &str,
    result: Option<&HealthResult>,
    can_manage: bool,
    job: Option<i64>,
) -> Markup {
    html! {
        section class="panel-box" aria-labelledby="health-title" data-health-tab {
            div class="head" {
                h2 id="health-title" class="grow" { (l.t("health.title")) }
                @if can_manage {
                    form method="post" action={ "/backend/integrations/" (id) "/health" } {
                        (csrf_field(csrf))
                        button type="submit" data-run-health { (l.t("health.run_now")) }
                    }
                }
            }
            @if let Some(j) = job {
                p class="meta" data-health-job=(j) { a href={ "/backend/jobs/" (j) } { (l.fmt("health.see_job", &[("id", &j.to_string())])) } }
            }
            @match result {
                Some(r) => {
                    p data-health=(r.status.as_str()) {
                        span class={ "badge badge-" (r.status.as_str()) } { (l.t(health_key(r.status))) }
                        " " span data-health-message { (r.message) }
                    }
                    dl class="props" {
                        dt { (l.t("health.last")) } dd { (crate::view::time(r.checked_at)) }
                        dt { (l.t("health.latency")) } dd data-latency { (l.fmt("health.ms", &[("ms", &r.latency_ms.to_string())])) }
                        @if let Some(v) = &r.api_version { dt { (l.t("versions.version")) } dd { code { (v) } } }
                    }
                    @if !r.checks.is_empty() {
                        div class="table-wrap" {
                            table class="checks" aria-label=(l.t("health.checks")) {
                                thead { tr { th scope="col" { (l.t("health.check")) } th scope="col" { (l.t("health.outcome")) } th scope="col" { (l.t("health.details")) } } }
                                tbody {
                                    @for c in &r.checks {
                                        @let (class, key) = check_key(c.status);
                                        tr data-check=(c.name) data-check-status=(class) {
                                            td { (check_name(l, &c.name)) }
                                            td { span class={ "badge badge-" (class) } { (l.t(key)) } }
                                            td { (c.message) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                None => div class="empty" data-empty { (l.t("health.never")) },
            }
            p class="meta" { (l.t("health.scheduled_note")) }
        }
    }
}

/// "Run check now": requests a check, waits a little for it, and goes back
/// to the Health tab with the outcome (or that it is still queued).
pub(crate) async fn run_health(
    State(state): State<PanelState>,
    signed: Signed,
    Path(id): Path<String>,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    if let Err(e) = signed.check_csrf(super::field(&form, "csrf")) {
        return e.into_response();
    }
    let back = format!("/backend/integrations/{id}?tab=health");
    match state
        .services
        .request_health_check(&signed.session.caller, &id, HEALTH_WAIT)
        .await
    {
        Ok(HealthRequest::Done { result, job }) => super::done(
            &format!("{back}&job={}", job.id),
            match result.status {
                HealthStatus::Healthy => "health_healthy",
                HealthStatus::Degraded => "health_degraded",
                HealthStatus::Unhealthy => "health_unhealthy",
                HealthStatus::Unknown => "health_unknown",
            },
        ),
        // A job that ended without a result failed (its error is on the job);
        // one still queued or running finishes in the background.
        Ok(HealthRequest::Pending { job }) => super::done(
            &format!("{back}&job={}", job.id),
            if matches!(job.status, "dead" | "cancelled") {
                "health_failed"
            } else {
                "health_pending"
            },
        ),
        Err(e) => PanelError::from_service(e, signed.lang).into_response(),
    }
}

#[allow(clippy::too_many_arguments)]
fn credentials_tab(
    l: Lang,
    csrf: &str,
    i: &patchbay_core::Integration,
    bundle: Option<(&str, &str)>,
    schema: &CredentialSchema,
    masked: &MaskedCredentials,
    overriding: bool,
    retry: &Retry,
) -> Markup {
    let action = format!("/backend/integrations/{}/credentials", i.id);
    if schema.is_empty() {
        return html! { div class="empty" { (l.t("credentials.none_needed")) } };
    }
    let values = retry
        .values
        .clone()
        .unwrap_or_else(|| masked.values.clone());
    html! {
        @if let Some(m) = &retry.message { @if retry.values.is_some() { (errors_box(l, m, &retry.errors)) } }
        @match (&masked.source, bundle) {
            (Some(Source::Bundle), Some((bid, btitle))) if !overriding && retry.values.is_none() => {
                div class="alert alert-info" data-inherited=(bid) {
                    (l.fmt("credentials.shared_from", &[("bundle", btitle)]))
                }
                div class="form" {
                    @for f in &schema.fields { (field_input(l, f, masked.values.get(&f.key), None, true)) }
                    div class="actions" {
                        a class="button" href={ "/backend/integrations/" (i.id) "?override=1" } data-override { (l.t("credentials.override")) }
                        a class="button secondary" href={ "/backend/integrations/bundle/" (bid) } { (l.t("credentials.edit_bundle")) }
                    }
                }
            }
            (Some(Source::Own), Some((_, btitle))) => {
                div class="alert alert-warn" data-overrides { (l.fmt("credentials.overrides", &[("bundle", btitle)])) }
                (credentials_form(l, csrf, &action, schema, &values, &retry.errors))
                form method="post" action={ "/backend/integrations/" (i.id) "/credentials/remove" } {
                    (csrf_field(csrf))
                    button type="submit" class="secondary" data-remove-override { (l.t("credentials.remove_override")) }
                }
            }
            _ => {
                @if overriding { div class="alert alert-info" { (l.t("credentials.overriding")) } }
                @if masked.source.is_none() && retry.values.is_none() { p class="meta" data-unconfigured { (l.t("credentials.not_configured")) } }
                (credentials_form(l, csrf, &action, schema, &values, &retry.errors))
                @if masked.source == Some(Source::Own) {
                    form method="post" action={ "/backend/integrations/" (i.id) "/credentials/remove" } {
                        (csrf_field(csrf))
                        button type="submit" class="danger" { (l.t("credentials.delete")) }
                    }
                }
            }
        }
        @if let Some(at) = masked.updated_at { p class="meta" { (l.t("credentials.updated")) " " (crate::view::time(at)) @if let Some(k) = &masked.key_id { " · " (l.t("credentials.key_id")) " " code { (k) } } } }
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
    let Ok(schema) = patchbay_service::credentials::form_for(&reg, &id) else {
        return PanelError::NotFound { lang: l }.into_response();
    };
    let (values, mut errors) = values_from_form(schema, &form);
    let result = if errors.is_empty() {
        state
            .services
            .save_credentials(&signed.session.caller, &id, values.clone())
            .await
            .map(|_| ())
    } else {
        Ok(())
    };
    let failure = match result {
        Ok(()) if errors.is_empty() => {
            return super::done(&format!("/backend/integrations/{id}"), "saved");
        }
        Ok(()) => None,
        Err(ServiceError::Invalid { errors: e, .. }) => {
            errors.extend(e);
            None
        }
        Err(e) => Some(e),
    };
    if let Some(e) = failure {
        return PanelError::from_service(e, l).into_response();
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
        &Params {
            override_: Some("1".into()),
            ..Params::default()
        },
        retry,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await
}

pub(crate) async fn remove_credentials(
    State(state): State<PanelState>,
    signed: Signed,
    Path(id): Path<String>,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    if let Err(e) = signed.check_csrf(super::field(&form, "csrf")) {
        return e.into_response();
    }
    match state
        .services
        .remove_credentials(&signed.session.caller, &id)
        .await
    {
        Ok(()) => super::done(&format!("/backend/integrations/{id}"), "removed"),
        Err(e) => PanelError::from_service(e, signed.lang).into_response(),
    }
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
    let (input, notice) = match (
        super::field(&form, "action"),
        super::field(&form, "api_version"),
    ) {
        (Some(a), _) => {
            let status = match a {
                "enable" => IntegrationStatus::Enabled,
                "disable" => IntegrationStatus::Disabled,
                "revoke" => IntegrationStatus::Revoked,
                "draft" => IntegrationStatus::Draft,
                _ => return PanelError::NotFound { lang: l }.into_response(),
            };
            (
                StateIn {
                    status: Some(status),
                    api_version: VersionChoice::Unchanged,
                },
                status.as_str(),
            )
        }
        (None, Some("")) => (
            StateIn {
                status: None,
                api_version: VersionChoice::Default,
            },
            "version",
        ),
        (None, Some(v)) => (
            StateIn {
                status: None,
                api_version: VersionChoice::Version(v.to_owned()),
            },
            "version",
        ),
        (None, None) => return PanelError::NotFound { lang: l }.into_response(),
    };
    let back = super::field(&form, "return")
        .filter(|r| r.starts_with("/backend/"))
        .map_or_else(|| format!("/backend/integrations/{id}"), str::to_owned);
    match state
        .services
        .set_state(&signed.session.caller, &id, input)
        .await
    {
        Ok(_) => super::done(&back, notice),
        Err(
            ServiceError::Conflict {
                message, errors, ..
            }
            | ServiceError::Invalid { message, errors },
        ) => {
            let title = if notice == "enabled" {
                l.t("state.enable_refused").to_owned()
            } else {
                message
            };
            render(
                &state,
                &signed,
                &id,
                &Params::default(),
                Retry {
                    values: None,
                    errors,
                    message: Some(title),
                },
                StatusCode::CONFLICT,
            )
            .await
        }
        Err(e) => PanelError::from_service(e, l).into_response(),
    }
}
