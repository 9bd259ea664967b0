//! One error type for every HTTP handler, rendered as RFC 9457
//! `application/problem+json` with a stable, documented `code`.
//!
//! Clients match on `code`, never on the human `detail`. [`CODES`] is the
//! catalog (also published in the OpenAPI document). Internal errors are
//! logged where they happen and answered with a generic message, so nothing
//! internal — or secret — leaks.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use patchbay_service::{FieldError, ServiceError};
use serde::Serialize;

/// Every error code: (code, HTTP status, title, when it happens).
pub const CODES: &[(&str, u16, &str, &str)] = &[
    (
        "sync_run_active",
        409,
        "A run of this stream is already active",
        "Only one run per integration, tenant and stream is queued or running at a time; follow the active one.",
    ),
    (
        "sync_export_unsupported",
        409,
        "The integration cannot export",
        "Its direction is inbound: it reads from the provider and has no `write`.",
    ),
    (
        "sync_run_finished",
        409,
        "The run has finished",
        "A finished run cannot be cancelled.",
    ),
    (
        "integration_not_enabled",
        409,
        "The integration is not enabled",
        "Actions run only on an integration enabled in the caller's scope.",
    ),
    (
        "connector_auth_failed",
        502,
        "The provider refused the credentials",
        "The connector reached the provider, which refused the saved credentials; update them.",
    ),
    (
        "connector_rate_limited",
        429,
        "The provider is rate-limiting",
        "The provider asked to slow down; retry after `Retry-After` seconds when given.",
    ),
    (
        "connector_unavailable",
        503,
        "The provider is temporarily unavailable",
        "A temporary failure (network, provider error, timeout); retrying later may succeed.",
    ),
    (
        "connector_failed",
        502,
        "The connector failed",
        "The connector or the provider failed the call; retrying will not help without a change.",
    ),
    (
        "connector_invalid_output",
        502,
        "The connector broke its hub's contract",
        "The connector's output does not match the hub's output schema (`GET /api/hubs`); the action ran and may have taken effect, so check its correlation id in the operation log before retrying.",
    ),
    (
        "action_unsupported",
        501,
        "The action has no implementation here",
        "The integration declares the action, but this build has no connector implementing it.",
    ),
    (
        "invalid_query",
        400,
        "Invalid query parameter",
        "A query-string parameter is unknown or malformed; `field` names it.",
    ),
    (
        "invalid_json",
        400,
        "Malformed JSON",
        "The body is not well-formed JSON.",
    ),
    (
        "unauthenticated",
        401,
        "Unauthenticated",
        "No valid `Authorization: Bearer pb_…` token: missing, unknown, revoked or expired.",
    ),
    (
        "forbidden",
        403,
        "Forbidden",
        "The token lacks the feature the route needs, or has the wrong kind of scope.",
    ),
    (
        "not_found",
        404,
        "Not found",
        "No such object — or one belonging to another tenant, which is answered the same way.",
    ),
    (
        "method_not_allowed",
        405,
        "Method not allowed",
        "The route exists but not for this HTTP method.",
    ),
    ("conflict", 409, "Conflict", "The object already exists."),
    (
        "stale",
        409,
        "Changed concurrently",
        "The object changed between read and write; read it again and retry.",
    ),
    (
        "enable_refused",
        409,
        "Cannot enable",
        "Enabling is refused; `errors` lists every reason (missing credentials, sunset API version).",
    ),
    (
        "invalid_transition",
        409,
        "Invalid lifecycle transition",
        "The integration's current status cannot become the requested one.",
    ),
    (
        "bundle_refused",
        409,
        "Bundle change refused",
        "Not every member of the bundle can change; `errors` lists every reason per member.",
    ),
    (
        "job_not_dead",
        409,
        "Job not dead",
        "Only a dead job can be retried; this one is queued, running, succeeded or cancelled.",
    ),
    (
        "job_duplicate",
        409,
        "Duplicate job",
        "Retrying would duplicate a job with the same unique key that is queued or running.",
    ),
    (
        "job_not_queued",
        409,
        "Job not queued",
        "Only a queued job can be cancelled; this one is running or has finished.",
    ),
    (
        "payload_too_large",
        413,
        "Payload too large",
        "The body exceeds the size limit (64 KiB).",
    ),
    (
        "tenant_concurrency_exceeded",
        429,
        "Too many actions running",
        "The tenant already runs as many actions as it may at once and its queue is full (or the call waited too long); retry after `Retry-After` seconds.",
    ),
    (
        "too_many_attempts",
        429,
        "Too many attempts",
        "Too many failed attempts (sign-in); `Retry-After` says when to try again.",
    ),
    (
        "unsupported_media_type",
        415,
        "Unsupported media type",
        "The body must be `application/json`.",
    ),
    (
        "invalid_body",
        422,
        "Invalid body",
        "The JSON has a wrong type, a missing or an unknown field; `field` names it.",
    ),
    (
        "validation_failed",
        422,
        "Validation failed",
        "The input breaks the rules; `errors` lists every problem with its field.",
    ),
    (
        "not_ready",
        503,
        "Not ready",
        "The database is unreachable or not fully migrated.",
    ),
    (
        "internal",
        500,
        "Internal server error",
        "An unexpected failure; the server log has the details.",
    ),
];

/// An API error.
#[derive(Debug)]
pub struct ApiError {
    pub code: &'static str,
    pub detail: String,
    /// The single offending field, for request-shape errors.
    pub field: Option<String>,
    /// Every problem, for rule violations.
    pub errors: Vec<FieldError>,
    /// Seconds for a `Retry-After` header.
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error with a catalogued `code`.
    pub fn new(code: &'static str, detail: impl Into<String>) -> ApiError {
        debug_assert!(
            CODES.iter().any(|c| c.0 == code),
            "uncatalogued error code {code}"
        );
        ApiError {
            code,
            detail: detail.into(),
            field: None,
            errors: Vec::new(),
            retry_after: None,
        }
    }

    #[must_use]
    pub fn with_field(mut self, field: impl Into<String>) -> ApiError {
        self.field = Some(field.into());
        self
    }

    pub fn not_found(what: impl Into<String>) -> ApiError {
        ApiError::new("not_found", what)
    }

    /// An unexpected failure: the cause goes to the log, not to the client.
    pub fn internal(cause: &dyn std::fmt::Display) -> ApiError {
        tracing::error!(error = %cause, "internal error");
        ApiError::new(
            "internal",
            "an unexpected error occurred; the server log has the details",
        )
    }

    fn entry(&self) -> (u16, &'static str) {
        CODES
            .iter()
            .find(|c| c.0 == self.code)
            .map_or((500, "Internal server error"), |c| (c.1, c.2))
    }
}

#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    code: &'a str,
    detail: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    errors: &'a [FieldError],
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, title) = self.entry();
        let body = Problem {
            kind: format!("https://patchbay.dev/errors/{}", self.code),
            title,
            status,
            code: self.code,
            detail: &self.detail,
            field: self.field.as_deref(),
            errors: &self.errors,
        };
        let json = serde_json::to_vec(&body).unwrap_or_else(|_| b"{}".to_vec());
        let mut resp = (
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            json,
        )
            .into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(secs) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        if self.code == "unauthenticated" {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"patchbay\""),
            );
        }
        resp
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Unauthenticated(m) => ApiError::new("unauthenticated", m),
            ServiceError::Forbidden(m) => ApiError::new("forbidden", m),
            ServiceError::NotFound(m) => ApiError::new("not_found", m),
            ServiceError::Invalid { message, errors } => ApiError {
                errors,
                ..ApiError::new("validation_failed", message)
            },
            ServiceError::Conflict {
                code,
                message,
                errors,
            } => {
                let code = if CODES.iter().any(|c| c.0 == code && c.1 == 409) {
                    code
                } else {
                    "conflict"
                };
                ApiError {
                    errors,
                    ..ApiError::new(code, message)
                }
            }
            ServiceError::RateLimited { retry_after_secs } => ApiError {
                retry_after: Some(retry_after_secs),
                ..ApiError::new(
                    "too_many_attempts",
                    format!("too many attempts; try again in {retry_after_secs} seconds"),
                )
            },
            ServiceError::Unavailable(m) => ApiError::new("not_ready", m),
            ServiceError::Overloaded {
                code,
                message,
                retry_after_secs,
            } => ApiError {
                retry_after: Some(retry_after_secs),
                ..ApiError::new(code, message)
            },
            ServiceError::Connector {
                code,
                message,
                retry_after_secs,
            } => ApiError {
                retry_after: retry_after_secs,
                ..ApiError::new(code, message)
            },
            // Already logged by the service.
            ServiceError::Internal(m) => ApiError::new("internal", m),
        }
    }
}

impl From<patchbay_store::StoreError> for ApiError {
    fn from(e: patchbay_store::StoreError) -> Self {
        ServiceError::from(e).into()
    }
}
