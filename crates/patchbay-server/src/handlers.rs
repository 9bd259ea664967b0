//! The handlers: parse, call a service, map the result. Rules live in
//! `patchbay-service`; authorization (features, scope) is checked there too,
//! so a handler cannot forget it.

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use patchbay_core::hub_contract::HubContract;
use patchbay_core::{Bundle, CatalogQuery, Category, Entry, Hub, Integration, Registry};
use patchbay_service::health::{HealthRequest, HealthResult};
use patchbay_service::integrations::{BundleStateIn, StateIn};
use patchbay_service::jobs::{JobOut, JobQueryIn, ScheduleIn};
use patchbay_service::logs::{LogQueryIn, SettingsInOut};
use patchbay_service::tenants::{TenantIn, TokenIn, TokenOut};
use patchbay_service::{Access, Feature};
use patchbay_vault::ExposeSecret as _;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{Authed, Json, Query};

pub(crate) type ApiResult<T> = Result<T, ApiError>;

pub(crate) fn json<T: Serialize>(status: StatusCode, value: &T) -> ApiResult<Response> {
    let body = serde_json::to_vec(value).map_err(|e| ApiError::internal(&e))?;
    Ok((
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response())
}

pub(crate) fn ok<T: Serialize>(value: &T) -> ApiResult<Response> {
    json(StatusCode::OK, value)
}

// ---- probes and the document ----

#[derive(Debug, Serialize, JsonSchema)]
pub struct Alive {
    status: &'static str,
}

pub async fn healthz() -> ApiResult<Response> {
    ok(&Alive { status: "alive" })
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Ready {
    status: &'static str,
    database: &'static str,
    migration: i64,
}

pub async fn readyz(State(state): State<AppState>) -> ApiResult<Response> {
    let store = state.services().store();
    let r = store.readiness().await.map_err(|e| {
        tracing::warn!(error = %e, "readiness check failed");
        ApiError::new("not_ready", "the database is unreachable")
    })?;
    if !r.is_ready() {
        return Err(ApiError::new(
            "not_ready",
            format!(
                "database schema at migration {} of {}",
                r.applied_migration, r.expected_migration
            ),
        ));
    }
    ok(&Ready {
        status: "ready",
        database: store.backend().as_str(),
        migration: r.applied_migration,
    })
}

pub async fn openapi(State(state): State<AppState>) -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        state.openapi_json(),
    )
        .into_response()
}

// ---- who am I ----

#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MeOut {
    token_id: String,
    token_name: String,
    /// `platform`, or `tenant` with the ids below.
    scope: &'static str,
    tenant_id: Option<String>,
    organization_id: Option<String>,
    features: Vec<Feature>,
}

pub async fn me(Authed(caller): Authed) -> ApiResult<Response> {
    let (scope, tenant_id, organization_id) = match &caller.access {
        Access::Platform => ("platform", None, None),
        Access::Tenant(s) => (
            "tenant",
            Some(s.tenant_id.to_string()),
            Some(s.organization_id.to_string()),
        ),
    };
    ok(&MeOut {
        token_id: caller.id.clone(),
        token_name: caller.name.clone(),
        scope,
        tenant_id,
        organization_id,
        features: caller.features.clone(),
    })
}

// ---- catalog ----

/// Filters of the catalog and integration lists.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CatalogParams {
    /// One of the category identifiers (`payment`, `data_sync`, …).
    category: Option<String>,
    /// Free text; every word must match.
    search: Option<String>,
    /// Only members of this bundle.
    bundle_id: Option<String>,
}

impl CatalogParams {
    fn query(&self) -> ApiResult<CatalogQuery<'_>> {
        let category = match self.category.as_deref() {
            None | Some("") => None,
            Some(c) => Some(Category::parse(c).ok_or_else(|| {
                let known: Vec<&str> = Category::ALL.iter().map(|c| c.as_str()).collect();
                ApiError::new(
                    "invalid_query",
                    format!(
                        "unknown category `{c}`; expected one of {}",
                        known.join(", ")
                    ),
                )
                .with_field("category")
            })?),
        };
        Ok(CatalogQuery {
            category,
            search: self.search.as_deref(),
            bundle: self.bundle_id.as_deref(),
        })
    }
}

#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CatalogBundle<'a> {
    #[serde(flatten)]
    bundle: &'a Bundle,
    integration_count: usize,
    /// Member integration ids, sorted by title.
    members: Vec<&'a str>,
}

#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CategoryOut {
    id: Category,
    label: &'static str,
    hubs: &'static [patchbay_core::Hub],
    /// Integrations of this category in the whole catalog.
    count: usize,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct CatalogOut<'a> {
    items: Vec<&'a Integration>,
    bundles: Vec<CatalogBundle<'a>>,
    categories: Vec<CategoryOut>,
}

fn catalog_bundle<'a>(reg: &'a Registry, b: &'a Bundle) -> CatalogBundle<'a> {
    let members: Vec<&str> = reg.members(&b.id).map(|i| i.id.as_str()).collect();
    CatalogBundle {
        bundle: b,
        integration_count: members.len(),
        members,
    }
}

pub async fn catalog(
    State(state): State<AppState>,
    Authed(_caller): Authed,
    Query(p): Query<CatalogParams>,
) -> ApiResult<Response> {
    let reg = state.services().registry();
    let q = p.query()?;
    ok(&CatalogOut {
        items: reg.list(&q),
        bundles: reg
            .list_bundles(&q)
            .into_iter()
            .map(|b| catalog_bundle(&reg, b))
            .collect(),
        categories: Category::ALL
            .iter()
            .map(|&c| CategoryOut {
                id: c,
                label: c.label(),
                hubs: c.hubs(),
                count: reg
                    .integrations()
                    .iter()
                    .filter(|i| i.category == c)
                    .count(),
            })
            .collect(),
    })
}

/// One catalog entry: an integration with its bundle, or a bundle with its members.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum CatalogEntryOut<'a> {
    Integration {
        integration: &'a Integration,
        bundle: Option<CatalogBundle<'a>>,
    },
    Bundle {
        bundle: CatalogBundle<'a>,
        members: Vec<&'a Integration>,
    },
}

pub async fn catalog_entry(
    State(state): State<AppState>,
    Authed(_caller): Authed,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let reg = state.services().registry();
    let out = match reg.entry(&id) {
        Some(Entry::Integration(i)) => CatalogEntryOut::Integration {
            integration: i,
            bundle: reg.bundle_of(&i.id).map(|b| catalog_bundle(&reg, b)),
        },
        Some(Entry::Bundle(b)) => CatalogEntryOut::Bundle {
            bundle: catalog_bundle(&reg, b),
            members: reg.members(&b.id).collect(),
        },
        None => {
            return Err(ApiError::not_found(format!(
                "no integration or bundle `{id}` in the catalog"
            )));
        }
    };
    ok(&out)
}

// ---- hub contracts ----

/// Every hub's contract: its actions with their input and output schemas.
#[derive(Debug, Serialize, JsonSchema)]
pub struct HubsOut {
    /// The JSON Schema dialect of every schema here.
    dialect: &'static str,
    items: &'static [HubContract],
}

/// One hub's contract.
#[derive(Debug, Serialize, JsonSchema)]
pub struct HubOut {
    /// The JSON Schema dialect of every schema here.
    dialect: &'static str,
    #[serde(flatten)]
    contract: &'static HubContract,
}

pub async fn hubs(Authed(_caller): Authed) -> ApiResult<Response> {
    ok(&HubsOut {
        dialect: patchbay_core::json_schema::DIALECT,
        items: patchbay_core::hub_contract::contracts(),
    })
}

pub async fn hub(Authed(_caller): Authed, Path(id): Path<String>) -> ApiResult<Response> {
    let hub = Hub::ALL
        .into_iter()
        .find(|h| h.as_str() == id)
        .ok_or_else(|| ApiError::not_found(format!("no hub `{id}`")))?;
    ok(&HubOut {
        dialect: patchbay_core::json_schema::DIALECT,
        contract: hub.contract(),
    })
}

// ---- integrations ----

pub async fn list_integrations(
    State(state): State<AppState>,
    Authed(caller): Authed,
    Query(p): Query<CatalogParams>,
) -> ApiResult<Response> {
    let list = state
        .services()
        .list_integrations(&caller, &p.query()?)
        .await?;
    ok(&list)
}

pub async fn integration(
    State(state): State<AppState>,
    Authed(caller): Authed,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    ok(&state.services().integration_detail(&caller, &id).await?)
}

pub async fn set_state(
    State(state): State<AppState>,
    Authed(caller): Authed,
    Path(id): Path<String>,
    Json(input): Json<StateIn>,
) -> ApiResult<Response> {
    ok(&state.services().set_state(&caller, &id, input).await?)
}

pub async fn invoke_action(
    State(state): State<AppState>,
    Authed(caller): Authed,
    Path((id, action)): Path<(String, String)>,
    Json(input): Json<serde_json::Map<String, serde_json::Value>>,
) -> ApiResult<Response> {
    ok(&state
        .services()
        .invoke_action(&caller, &id, &action, serde_json::Value::Object(input))
        .await?)
}

pub async fn read_stream(
    State(state): State<AppState>,
    Authed(caller): Authed,
    Path((id, stream)): Path<(String, String)>,
    Json(input): Json<patchbay_service::streams::ReadIn>,
) -> ApiResult<Response> {
    ok(&state
        .services()
        .read_stream(&caller, &id, &stream, input)
        .await?)
}

pub async fn principal(
    State(state): State<AppState>,
    Authed(caller): Authed,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    ok(&state.services().principal(&caller, &id).await?)
}

/// New credential values. Secrets sent back as `••••••••` keep their stored value.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CredentialsIn {
    values: serde_json::Map<String, serde_json::Value>,
}

pub async fn get_credentials(
    State(state): State<AppState>,
    Authed(caller): Authed,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    ok(&state.services().credentials_masked(&caller, &id).await?)
}

pub async fn put_credentials(
    State(state): State<AppState>,
    Authed(caller): Authed,
    Path(id): Path<String>,
    Json(input): Json<CredentialsIn>,
) -> ApiResult<Response> {
    ok(&state
        .services()
        .save_credentials(&caller, &id, input.values)
        .await?)
}

pub async fn delete_credentials(
    State(state): State<AppState>,
    Authed(caller): Authed,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    state.services().remove_credentials(&caller, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn integration_logs(
    State(state): State<AppState>,
    Authed(caller): Authed,
    Path(id): Path<String>,
    Query(q): Query<LogQueryIn>,
) -> ApiResult<Response> {
    if q.integration_id.is_some() {
        return Err(
            ApiError::new("invalid_query", "integrationId is given by the path here")
                .with_field("integrationId"),
        );
    }
    ok(&state.services().query_logs(&caller, Some(&id), q).await?)
}

pub async fn logs(
    State(state): State<AppState>,
    Authed(caller): Authed,
    Query(q): Query<LogQueryIn>,
) -> ApiResult<Response> {
    ok(&state.services().query_logs(&caller, None, q).await?)
}

pub async fn usage(
    State(state): State<AppState>,
    Authed(caller): Authed,
    Query(q): Query<patchbay_service::usage::UsageQueryIn>,
) -> ApiResult<Response> {
    ok(&state.services().usage(&caller, q).await?)
}

/// A health check that finished within the wait.
#[derive(Debug, Serialize, JsonSchema)]
pub struct HealthDoneOut {
    result: HealthResult,
    /// The `health.check` job that ran it.
    job: JobOut,
}

/// A health check still queued or running: poll the job (`Location`).
#[derive(Debug, Serialize, JsonSchema)]
pub struct HealthPendingOut {
    job: JobOut,
}

pub async fn health_check(
    State(state): State<AppState>,
    Authed(caller): Authed,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    match state
        .services()
        .request_health_check(&caller, &id, state.health_wait())
        .await?
    {
        HealthRequest::Done { result, job } => ok(&HealthDoneOut { result, job }),
        HealthRequest::Pending { job } => {
            let location = HeaderValue::from_str(&format!("/api/jobs/{}", job.id))
                .map_err(|e| ApiError::internal(&e))?;
            let mut resp = json(StatusCode::ACCEPTED, &HealthPendingOut { job })?;
            resp.headers_mut().insert(header::LOCATION, location);
            Ok(resp)
        }
    }
}

pub async fn bundle(
    State(state): State<AppState>,
    Authed(caller): Authed,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    ok(&state.services().bundle_detail(&caller, &id).await?)
}

pub async fn set_bundle_state(
    State(state): State<AppState>,
    Authed(caller): Authed,
    Path(id): Path<String>,
    Json(input): Json<BundleStateIn>,
) -> ApiResult<Response> {
    ok(&state
        .services()
        .set_bundle_state(&caller, &id, input)
        .await?)
}

/// Paging through the event outbox.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EventsParams {
    /// The `seq` of the last event already seen (0 for the start).
    after: Option<i64>,
    /// 1-1000, default 100.
    limit: Option<u32>,
}

pub async fn events(
    State(state): State<AppState>,
    Authed(caller): Authed,
    Query(p): Query<EventsParams>,
) -> ApiResult<Response> {
    let limit = p.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(
            ApiError::new("invalid_query", "limit must be between 1 and 1000").with_field("limit"),
        );
    }
    ok(&state
        .services()
        .list_events(&caller, p.after.unwrap_or(0).max(0), limit)
        .await?)
}

pub async fn get_settings(
    State(state): State<AppState>,
    Authed(caller): Authed,
) -> ApiResult<Response> {
    ok(&state.services().get_settings(&caller).await?)
}

pub async fn put_settings(
    State(state): State<AppState>,
    Authed(caller): Authed,
    Json(input): Json<SettingsInOut>,
) -> ApiResult<Response> {
    ok(&state.services().put_settings(&caller, input).await?)
}

// ---- background jobs ----

/// A job id from the path. Ids are numbers, so anything else names no job.
fn job_id(id: &str) -> ApiResult<i64> {
    id.parse()
        .map_err(|_| ApiError::not_found("no such job: job ids are numbers"))
}

pub async fn list_jobs(
    State(state): State<AppState>,
    Authed(caller): Authed,
    Query(q): Query<JobQueryIn>,
) -> ApiResult<Response> {
    ok(&state.services().list_jobs(&caller, q).await?)
}

pub async fn job(
    State(state): State<AppState>,
    Authed(caller): Authed,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    ok(&state.services().get_job(&caller, job_id(&id)?).await?)
}

pub async fn retry_job(
    State(state): State<AppState>,
    Authed(caller): Authed,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    ok(&state.services().retry_job(&caller, job_id(&id)?).await?)
}

pub async fn cancel_job(
    State(state): State<AppState>,
    Authed(caller): Authed,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    ok(&state.services().cancel_job(&caller, job_id(&id)?).await?)
}

pub async fn list_schedules(
    State(state): State<AppState>,
    Authed(caller): Authed,
) -> ApiResult<Response> {
    ok(&state.services().list_schedules(&caller).await?)
}

pub async fn update_schedule(
    State(state): State<AppState>,
    Authed(caller): Authed,
    Path(name): Path<String>,
    Json(input): Json<ScheduleIn>,
) -> ApiResult<Response> {
    ok(&state
        .services()
        .update_schedule(&caller, &name, input)
        .await?)
}

// ---- platform administration ----

pub async fn list_tenants(
    State(state): State<AppState>,
    Authed(caller): Authed,
) -> ApiResult<Response> {
    ok(&state.services().list_tenants(&caller).await?)
}

pub async fn create_tenant(
    State(state): State<AppState>,
    Authed(caller): Authed,
    Json(input): Json<TenantIn>,
) -> ApiResult<Response> {
    json(
        StatusCode::CREATED,
        &state.services().create_tenant(&caller, input).await?,
    )
}

pub async fn tenant(
    State(state): State<AppState>,
    Authed(caller): Authed,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    ok(&state.services().get_tenant(&caller, &id).await?)
}

pub async fn create_organization(
    State(state): State<AppState>,
    Authed(caller): Authed,
    Path(id): Path<String>,
    Json(input): Json<TenantIn>,
) -> ApiResult<Response> {
    json(
        StatusCode::CREATED,
        &state
            .services()
            .create_organization(&caller, &id, input)
            .await?,
    )
}

pub async fn list_tokens(
    State(state): State<AppState>,
    Authed(caller): Authed,
) -> ApiResult<Response> {
    ok(&state.services().list_tokens(&caller).await?)
}

/// A token just created: `token` is shown this once and never again.
#[derive(Debug, Serialize, JsonSchema)]
pub struct TokenCreatedOut {
    token: String,
    #[serde(flatten)]
    info: TokenOut,
}

pub async fn create_token(
    State(state): State<AppState>,
    Authed(caller): Authed,
    Json(input): Json<TokenIn>,
) -> ApiResult<Response> {
    let created = state.services().create_token(&caller, input).await?;
    json(
        StatusCode::CREATED,
        &TokenCreatedOut {
            token: created.token.expose_secret().to_owned(),
            info: created.info,
        },
    )
}

pub async fn revoke_token(
    State(state): State<AppState>,
    Authed(caller): Authed,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    state.services().revoke_token(&caller, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Reading the audit trail.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AuditParams {
    /// Only this tenant's records.
    tenant_id: Option<String>,
    /// The `id` of the last record already seen (older records follow).
    before: Option<i64>,
    /// 1-1000, default 100.
    limit: Option<u32>,
}

pub async fn audit(
    State(state): State<AppState>,
    Authed(caller): Authed,
    Query(p): Query<AuditParams>,
) -> ApiResult<Response> {
    let limit = p.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(
            ApiError::new("invalid_query", "limit must be between 1 and 1000").with_field("limit"),
        );
    }
    ok(&state
        .services()
        .list_audit(
            &caller,
            p.tenant_id.map(patchbay_core::TenantId::new),
            p.before,
            limit,
        )
        .await?)
}

// ---- operator accounts ----

pub async fn list_users(
    State(state): State<AppState>,
    Authed(caller): Authed,
) -> ApiResult<Response> {
    ok(&state.services().list_users(&caller).await?)
}

pub async fn create_user(
    State(state): State<AppState>,
    Authed(caller): Authed,
    Json(input): Json<patchbay_service::users::UserIn>,
) -> ApiResult<Response> {
    json(
        StatusCode::CREATED,
        &state.services().create_user(&caller, input).await?,
    )
}

pub async fn disable_user(
    State(state): State<AppState>,
    Authed(caller): Authed,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    state.services().disable_user(&caller, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
