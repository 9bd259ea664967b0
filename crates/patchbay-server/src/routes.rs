//! The route table: every route once, with what it needs and what it
//! returns. The router and the OpenAPI 3.1 document are both built from it,
//! so a route cannot exist without being documented.

use axum::http::Method;
use axum::routing::{MethodRouter, delete, get, post, put};
use patchbay_service::Feature;
use patchbay_service::integrations::{
    BundleDetail, BundleOutcome, BundleStateIn, IntegrationDetail, IntegrationList, PrincipalOut,
    StateIn, StateOutcome,
};
use patchbay_service::jobs::{JobOut, JobPageOut, JobQueryIn, ScheduleIn, ScheduleOut};
use patchbay_service::logs::{LogPageOut, LogQueryIn, SettingsInOut};
use patchbay_service::tenants::{OrganizationOut, TenantIn, TenantOut, TokenIn, TokenOut};
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde_json::{Map, Value, json};

use crate::AppState;
use crate::handlers as h;
use crate::sync_handlers as sync;

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// No token needed (probes, the document).
    Public,
    /// Any valid token.
    Token,
    /// A token carrying this feature.
    Feature(Feature),
    /// A tenant token carrying this feature, for its own tenant's objects,
    /// or a platform token carrying `platform.admin`, for every tenant's.
    FeatureOrAdmin(Feature),
}

/// A second success response of a route (besides [`Route::status`]).
#[derive(Debug, Clone, Copy)]
pub struct Alternative {
    pub status: u16,
    pub description: &'static str,
    pub response: SchemaFn,
    /// What the `Location` header points at, when the response has one.
    pub location: Option<&'static str>,
}

type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

/// One route.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    pub method: &'static str,
    /// axum path syntax (`/api/integrations/{id}`), which is also OpenAPI's.
    pub path: &'static str,
    pub operation_id: &'static str,
    pub summary: &'static str,
    pub tag: &'static str,
    pub auth: Auth,
    pub query: Option<SchemaFn>,
    pub body: Option<SchemaFn>,
    /// `None` for 204 No Content.
    pub response: Option<SchemaFn>,
    pub status: u16,
    /// Another success response, such as 202 Accepted for work still running.
    pub alternative: Option<Alternative>,
    /// The largest request body it accepts, when not [`crate::BODY_LIMIT`].
    pub body_limit: Option<usize>,
    handler: fn() -> MethodRouter<AppState>,
}

fn s<T: JsonSchema>(g: &mut SchemaGenerator) -> Schema {
    g.subschema_for::<T>()
}

fn inline<T: JsonSchema>(g: &mut SchemaGenerator) -> Schema {
    T::json_schema(g)
}

const VIEW: Auth = Auth::Feature(Feature::IntegrationsView);
const MANAGE: Auth = Auth::Feature(Feature::IntegrationsManage);
const CREDENTIALS: Auth = Auth::Feature(Feature::IntegrationsCredentials);
const ADMIN: Auth = Auth::Feature(Feature::PlatformAdmin);
const VIEW_OR_ADMIN: Auth = Auth::FeatureOrAdmin(Feature::IntegrationsView);
const MANAGE_OR_ADMIN: Auth = Auth::FeatureOrAdmin(Feature::IntegrationsManage);

macro_rules! route {
    ($method:ident $path:literal, $id:literal, $summary:literal, $tag:literal, $auth:expr, query: $q:expr, body: $b:expr, response: $r:expr, status: $st:literal, $handler:path) => {
        route!($method $path, $id, $summary, $tag, $auth, query: $q, body: $b, response: $r, status: $st, alternative: None, $handler)
    };
    ($method:ident $path:literal, $id:literal, $summary:literal, $tag:literal, $auth:expr, query: $q:expr, body: $b:expr, response: $r:expr, status: $st:literal, alternative: $alt:expr, $handler:path) => {
        route!($method $path, $id, $summary, $tag, $auth, query: $q, body: $b, response: $r, status: $st, alternative: $alt, body_limit: None, $handler)
    };
    ($method:ident $path:literal, $id:literal, $summary:literal, $tag:literal, $auth:expr, query: $q:expr, body: $b:expr, response: $r:expr, status: $st:literal, alternative: $alt:expr, body_limit: $lim:expr, $handler:path) => {
        Route {
            method: stringify!($method),
            path: $path,
            operation_id: $id,
            summary: $summary,
            tag: $tag,
            auth: $auth,
            query: $q,
            body: $b,
            response: $r,
            status: $st,
            alternative: $alt,
            body_limit: $lim,
            handler: || $method($handler),
        }
    };
}

/// Every route of the API.
pub fn table() -> Vec<Route> {
    vec![
        route!(get "/healthz", "healthz", "Liveness: the process serves HTTP", "probes", Auth::Public, query: None, body: None, response: Some(s::<h::Alive>), status: 200, h::healthz),
        route!(get "/readyz", "readyz", "Readiness: the database answers and is fully migrated", "probes", Auth::Public, query: None, body: None, response: Some(s::<h::Ready>), status: 200, h::readyz),
        route!(get "/api/openapi.json", "openapi", "This document", "meta", Auth::Public, query: None, body: None, response: Some(s::<Value>), status: 200, h::openapi),
        route!(get "/api/me", "me", "The calling token: scope and features", "meta", Auth::Token, query: None, body: None, response: Some(s::<h::MeOut>), status: 200, h::me),
        route!(get "/api/catalog", "listCatalog", "The connector catalog (no tenant state)", "catalog", Auth::Token, query: Some(inline::<h::CatalogParams>), body: None, response: Some(s::<h::CatalogOut<'static>>), status: 200, h::catalog),
        route!(get "/api/catalog/{id}", "getCatalogEntry", "One integration (with its bundle) or one bundle (with its members)", "catalog", Auth::Token, query: None, body: None, response: Some(s::<h::CatalogEntryOut<'static>>), status: 200, h::catalog_entry),
        route!(get "/api/hubs", "listHubs", "Every hub's contract: its actions with JSON Schemas for input and output, and an example of each", "catalog", Auth::Token, query: None, body: None, response: Some(s::<h::HubsOut>), status: 200, h::hubs),
        route!(get "/api/hubs/{id}", "getHub", "One hub's contract", "catalog", Auth::Token, query: None, body: None, response: Some(s::<h::HubOut>), status: 200, h::hub),
        route!(get "/api/integrations", "listIntegrations", "Integrations with the caller's states; bundles with member and enabled counts", "integrations", VIEW, query: Some(inline::<h::CatalogParams>), body: None, response: Some(s::<IntegrationList>), status: 200, h::list_integrations),
        route!(get "/api/integrations/{id}", "getIntegration", "One integration with state, credential summary and principal", "integrations", VIEW, query: None, body: None, response: Some(s::<IntegrationDetail>), status: 200, h::integration),
        route!(post "/api/integrations/{id}/actions/{action}", "invokeAction", "Run one of the integration's actions through its connector, as its principal", "integrations", MANAGE, query: None, body: Some(s::<serde_json::Map<String, serde_json::Value>>), response: Some(s::<patchbay_service::actions::ActionOut>), status: 200, h::invoke_action),
        route!(post "/api/integrations/{id}/streams/{stream}/read", "readStream", "Read one batch of a stream through the connector (a preview: nothing is stored); pass `nextCursor` back for the next", "integrations", MANAGE, query: None, body: Some(s::<patchbay_service::streams::ReadIn>), response: Some(s::<patchbay_service::streams::BatchOut>), status: 200, h::read_stream),
        route!(post "/api/sync/{id}/runs", "startSync", "Queue an import of one of the integration's streams; poll the run at `Location` or follow `/api/sync/runs/{id}/events`", "sync", MANAGE, query: None, body: Some(s::<patchbay_service::sync::StartSyncIn>), response: Some(s::<patchbay_service::sync::SyncRunOut>), status: 202, sync::start_sync),
        route!(post "/api/sync/{id}/export", "startExport", "Queue an export: the records (up to 10,000, a body of at most 16 MiB) are stored, then written through the connector's `write` in batches; poll the run at `Location`", "sync", MANAGE, query: None, body: Some(s::<patchbay_service::sync::ExportIn>), response: Some(s::<patchbay_service::sync::SyncRunOut>), status: 202, alternative: None, body_limit: Some(sync::EXPORT_BODY_LIMIT), sync::start_export),
        route!(get "/api/sync/runs", "listSyncRuns", "Sync runs of the caller's tenant, newest first", "sync", VIEW, query: Some(inline::<patchbay_service::sync::SyncRunsIn>), body: None, response: Some(s::<patchbay_service::sync::SyncRunPage>), status: 200, sync::list_runs),
        route!(get "/api/sync/runs/{id}", "getSyncRun", "One sync run with its counters and cursors", "sync", VIEW, query: None, body: None, response: Some(s::<patchbay_service::sync::SyncRunOut>), status: 200, sync::run),
        route!(get "/api/sync/runs/{id}/events", "followSyncRun", "Server-sent events (`text/event-stream`): `progress` with the run each time it changes, then `done`", "sync", VIEW, query: None, body: None, response: None, status: 200, sync::run_events),
        route!(post "/api/sync/runs/{id}/cancel", "cancelSyncRun", "Stop a run after the batch in hand (a queued run stops at once)", "sync", MANAGE, query: None, body: None, response: Some(s::<patchbay_service::sync::SyncRunOut>), status: 200, sync::cancel_run),
        route!(get "/api/sync/{id}/records", "listSyncRecords", "Changes of a stream's records after change `after` (delta by change sequence), oldest first", "sync", VIEW, query: Some(inline::<patchbay_service::sync::RecordsIn>), body: None, response: Some(s::<patchbay_service::sync::RecordPage>), status: 200, sync::records),
        route!(get "/api/sync/{id}/mappings/{stream}", "getFieldMapping", "A stream's field mapping", "sync", VIEW, query: None, body: None, response: Some(s::<patchbay_service::sync::MappingOut>), status: 200, sync::mapping),
        route!(put "/api/sync/{id}/mappings/{stream}", "putFieldMapping", "Set a stream's field mapping (`null` removes it)", "sync", MANAGE, query: None, body: Some(s::<patchbay_core::field_mapping::FieldMappingSpec>), response: Some(s::<patchbay_service::sync::MappingOut>), status: 200, sync::put_mapping),
        route!(post "/api/sync/{id}/mappings/{stream}/preview", "previewFieldMapping", "Map sample records (given, or the connector's first batch) with a mapping (given, or the stored one)", "sync", MANAGE, query: None, body: Some(s::<patchbay_service::sync::PreviewIn>), response: Some(s::<patchbay_service::sync::PreviewOut>), status: 200, sync::preview_mapping),
        route!(put "/api/integrations/{id}/state", "setIntegrationState", "Enable, disable, revoke, or select an API version", "integrations", MANAGE, query: None, body: Some(s::<StateIn>), response: Some(s::<StateOutcome>), status: 200, h::set_state),
        route!(get "/api/integrations/{id}/principal", "getPrincipal", "The principal the connection acts as, with its grants", "integrations", VIEW, query: None, body: None, response: Some(s::<PrincipalOut>), status: 200, h::principal),
        route!(get "/api/integrations/{id}/credentials", "getCredentials", "Credentials of an integration or bundle, secrets masked", "credentials", CREDENTIALS, query: None, body: None, response: Some(s::<patchbay_service::credentials::MaskedCredentials>), status: 200, h::get_credentials),
        route!(put "/api/integrations/{id}/credentials", "putCredentials", "Save credentials (validated against the form, encrypted)", "credentials", CREDENTIALS, query: None, body: Some(s::<h::CredentialsIn>), response: Some(s::<patchbay_service::credentials::MaskedCredentials>), status: 200, h::put_credentials),
        route!(delete "/api/integrations/{id}/credentials", "deleteCredentials", "Hard-delete the credentials of an integration or bundle", "credentials", CREDENTIALS, query: None, body: None, response: None, status: 204, h::delete_credentials),
        route!(get "/api/integrations/{id}/logs", "getIntegrationLogs", "Operation-log entries of one integration, newest first", "logs", VIEW, query: Some(inline::<LogQueryIn>), body: None, response: Some(s::<LogPageOut>), status: 200, h::integration_logs),
        route!(post "/api/integrations/{id}/health", "checkIntegrationHealth", "Run a health check now; answers with the result, or 202 with the job when it takes longer than a short wait", "integrations", MANAGE, query: None, body: None, response: Some(s::<h::HealthDoneOut>), status: 200, alternative: Some(Alternative { status: 202, description: "The check is queued or running; poll the job at `Location`", response: s::<h::HealthPendingOut>, location: Some("The job: `/api/jobs/{jobId}`") }), h::health_check),
        route!(get "/api/bundles/{id}", "getBundle", "A bundle with its members' states", "integrations", VIEW, query: None, body: None, response: Some(s::<BundleDetail>), status: 200, h::bundle),
        route!(put "/api/bundles/{id}/state", "setBundleState", "Enable all or disable all members of a bundle", "integrations", MANAGE, query: None, body: Some(s::<BundleStateIn>), response: Some(s::<BundleOutcome>), status: 200, h::set_bundle_state),
        route!(get "/api/logs", "listLogs", "Operation-log entries of the caller's scope, newest first", "logs", VIEW, query: Some(inline::<LogQueryIn>), body: None, response: Some(s::<LogPageOut>), status: 200, h::logs),
        route!(get "/api/usage", "getUsage", "Action usage of the caller's scope per integration and hour (calls, errors, durations, bytes), with totals", "usage", VIEW, query: Some(inline::<patchbay_service::usage::UsageQueryIn>), body: None, response: Some(s::<patchbay_service::usage::UsageOut>), status: 200, h::usage),
        route!(get "/api/events", "listEvents", "Lifecycle events after an outbox position", "events", VIEW, query: Some(inline::<h::EventsParams>), body: None, response: Some(s::<Vec<patchbay_service::events::EventOut>>), status: 200, h::events),
        route!(get "/api/settings", "getSettings", "The tenant's retention settings", "settings", VIEW, query: None, body: None, response: Some(s::<SettingsInOut>), status: 200, h::get_settings),
        route!(put "/api/settings", "putSettings", "Change the tenant's retention settings", "settings", MANAGE, query: None, body: Some(s::<SettingsInOut>), response: Some(s::<SettingsInOut>), status: 200, h::put_settings),
        route!(get "/api/jobs", "listJobs", "Background jobs of the caller's tenant (platform admins: every job, or one tenant's), newest first", "jobs", VIEW_OR_ADMIN, query: Some(inline::<JobQueryIn>), body: None, response: Some(s::<JobPageOut>), status: 200, h::list_jobs),
        route!(get "/api/jobs/{id}", "getJob", "One job with every attempt", "jobs", VIEW_OR_ADMIN, query: None, body: None, response: Some(s::<JobOut>), status: 200, h::job),
        route!(post "/api/jobs/{id}/retry", "retryJob", "Queue a dead job again, with its kind's number of attempts", "jobs", MANAGE_OR_ADMIN, query: None, body: None, response: Some(s::<JobOut>), status: 200, h::retry_job),
        route!(post "/api/jobs/{id}/cancel", "cancelJob", "Cancel a queued job", "jobs", MANAGE_OR_ADMIN, query: None, body: None, response: Some(s::<JobOut>), status: 200, h::cancel_job),
        route!(get "/api/schedules", "listSchedules", "The recurring jobs", "jobs", ADMIN, query: None, body: None, response: Some(s::<Vec<ScheduleOut>>), status: 200, h::list_schedules),
        route!(put "/api/schedules/{name}", "updateSchedule", "Change a recurring job's schedule, or turn it on or off", "jobs", ADMIN, query: None, body: Some(s::<ScheduleIn>), response: Some(s::<ScheduleOut>), status: 200, h::update_schedule),
        route!(get "/api/tenants", "listTenants", "Every tenant with its organizations", "admin", ADMIN, query: None, body: None, response: Some(s::<Vec<TenantOut>>), status: 200, h::list_tenants),
        route!(post "/api/tenants", "createTenant", "Create a tenant (with its `main` organization)", "admin", ADMIN, query: None, body: Some(s::<TenantIn>), response: Some(s::<TenantOut>), status: 201, h::create_tenant),
        route!(get "/api/tenants/{id}", "getTenant", "One tenant", "admin", ADMIN, query: None, body: None, response: Some(s::<TenantOut>), status: 200, h::tenant),
        route!(post "/api/tenants/{id}/organizations", "createOrganization", "Create an organization in a tenant", "admin", ADMIN, query: None, body: Some(s::<TenantIn>), response: Some(s::<OrganizationOut>), status: 201, h::create_organization),
        route!(get "/api/tokens", "listTokens", "Every API token (never their secrets)", "admin", ADMIN, query: None, body: None, response: Some(s::<Vec<TokenOut>>), status: 200, h::list_tokens),
        route!(post "/api/tokens", "createToken", "Create an API token; the response shows it once", "admin", ADMIN, query: None, body: Some(s::<TokenIn>), response: Some(s::<h::TokenCreatedOut>), status: 201, h::create_token),
        route!(delete "/api/tokens/{id}", "revokeToken", "Revoke an API token", "admin", ADMIN, query: None, body: None, response: None, status: 204, h::revoke_token),
        route!(get "/api/users", "listUsers", "Operator accounts of the admin panel", "admin", ADMIN, query: None, body: None, response: Some(s::<Vec<patchbay_service::users::UserOut>>), status: 200, h::list_users),
        route!(post "/api/users", "createUser", "Create an operator account", "admin", ADMIN, query: None, body: Some(s::<patchbay_service::users::UserIn>), response: Some(s::<patchbay_service::users::UserOut>), status: 201, h::create_user),
        route!(delete "/api/users/{id}", "disableUser", "Disable an operator account and end its sessions", "admin", ADMIN, query: None, body: None, response: None, status: 204, h::disable_user),
        route!(get "/api/audit", "listAudit", "The audit trail, newest first", "admin", ADMIN, query: Some(inline::<h::AuditParams>), body: None, response: Some(s::<Vec<patchbay_service::audit::AuditOut>>), status: 200, h::audit),
    ]
}

/// The router of every route in the table.
pub fn router() -> axum::Router<AppState> {
    table().into_iter().fold(axum::Router::new(), |r, route| {
        let handler = (route.handler)();
        r.route(
            route.path,
            match route.body_limit {
                Some(limit) => handler
                    .layer(axum::extract::DefaultBodyLimit::max(limit))
                    .layer(axum::middleware::from_fn_with_state(
                        limit,
                        crate::limit_body,
                    )),
                None => handler,
            },
        )
    })
}

/// The OpenAPI 3.1 document of the table.
pub fn openapi() -> Value {
    let settings = schemars::generate::SchemaSettings::draft2020_12().with(|s| {
        s.definitions_path = "/components/schemas".into();
        s.meta_schema = None;
        s.contract = schemars::generate::Contract::Serialize;
    });
    let mut g = SchemaGenerator::new(settings);
    let mut paths: Map<String, Value> = Map::new();
    for r in table() {
        let mut op = Map::new();
        op.insert("operationId".into(), json!(r.operation_id));
        op.insert("summary".into(), json!(r.summary));
        op.insert("tags".into(), json!([r.tag]));
        let mut params: Vec<Value> = r
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }))
            .collect();
        if let Some(q) = r.query {
            let schema = q(&mut g);
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (name, prop) in props {
                    let description = prop.get("description").cloned().unwrap_or(Value::Null);
                    let mut p =
                        json!({ "name": name, "in": "query", "required": false, "schema": prop });
                    if !description.is_null() {
                        p["description"] = description;
                    }
                    params.push(p);
                }
            }
        }
        if !params.is_empty() {
            op.insert("parameters".into(), Value::Array(params));
        }
        if let Some(b) = r.body {
            op.insert("requestBody".into(), json!({ "required": true, "content": { "application/json": { "schema": b(&mut g) } } }));
        }
        let mut responses = Map::new();
        let success = match r.response {
            Some(f) => {
                json!({ "description": "Success", "content": { "application/json": { "schema": f(&mut g) } } })
            }
            None => json!({ "description": "Done; no content" }),
        };
        responses.insert(r.status.to_string(), success);
        if let Some(alt) = r.alternative {
            let mut other = json!({ "description": alt.description, "content": { "application/json": { "schema": (alt.response)(&mut g) } } });
            if let Some(location) = alt.location {
                other["headers"] = json!({ "Location": { "description": location, "schema": { "type": "string" } } });
            }
            responses.insert(alt.status.to_string(), other);
        }
        responses.insert(
            "default".into(),
            json!({ "$ref": "#/components/responses/Problem" }),
        );
        op.insert("responses".into(), Value::Object(responses));
        match r.auth {
            Auth::Public => {
                op.insert("security".into(), json!([]));
            }
            Auth::Token => {}
            Auth::Feature(f) => {
                op.insert("x-patchbay-feature".into(), json!(f.as_str()));
            }
            Auth::FeatureOrAdmin(f) => {
                op.insert("x-patchbay-feature".into(), json!(f.as_str()));
                op.insert(
                    "x-patchbay-platform-feature".into(),
                    json!(Feature::PlatformAdmin.as_str()),
                );
            }
        }
        let entry = paths.entry(r.path.to_owned()).or_insert_with(|| json!({}));
        entry[r.method] = Value::Object(op);
    }
    let mut schemas = g.take_definitions(true);
    // Each hub action's input and output, for clients generating types:
    // `POST /api/integrations/{id}/actions/{action}` takes and returns them.
    for c in patchbay_core::hub_contract::contracts() {
        for a in &c.actions {
            schemas.insert(format!("{}.{}.input", c.id, a.name), a.input.clone());
            schemas.insert(format!("{}.{}.output", c.id, a.name), a.output.clone());
        }
    }
    schemas.insert(
        "Problem".into(),
        json!({
            "type": "object",
            "description": "RFC 9457 problem details with a stable `code`",
            "required": ["type", "title", "status", "code", "detail"],
            "properties": {
                "type": { "type": "string" },
                "title": { "type": "string" },
                "status": { "type": "integer" },
                "code": { "type": "string", "enum": crate::error::CODES.iter().map(|c| c.0).collect::<Vec<_>>() },
                "detail": { "type": "string" },
                "field": { "type": "string" },
                "errors": { "type": "array", "items": {
                    "type": "object",
                    "required": ["field", "code", "message"],
                    "properties": { "field": { "type": "string" }, "code": { "type": "string" }, "message": { "type": "string" } }
                } }
            }
        }),
    );
    let codes: Vec<Value> = crate::error::CODES.iter().map(|(code, status, title, when)| json!({ "code": code, "status": status, "title": title, "description": when })).collect();
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Patchbay API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The REST API of Patchbay. Every call but the probes needs `Authorization: Bearer pb_…`; the token decides the tenant scope and the features. Errors are application/problem+json with a stable `code` (see `x-error-codes`)."
        },
        "security": [{ "bearer": [] }],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer", "description": "An API token, `pb_…`" } },
            "responses": { "Problem": { "description": "An error", "content": { "application/problem+json": { "schema": { "$ref": "#/components/schemas/Problem" } } } } }
        },
        "x-error-codes": codes
    })
}

/// The HTTP method of a route, for tests that call every route.
pub fn method_of(r: &Route) -> Method {
    Method::from_bytes(r.method.to_ascii_uppercase().as_bytes()).unwrap_or(Method::GET)
}
