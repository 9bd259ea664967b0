//! One error type for every HTTP handler, rendered as RFC 9457
//! `application/problem+json` with a stable, documented `code`.
//!
//! The catalog of codes is [`ErrorCode`]: clients match on `code`, never on
//! the human `detail`. Internal errors are logged with their cause and
//! answered with a generic message, so nothing internal (or secret) leaks.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Every error code the API can answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// A query-string parameter is missing, unknown or malformed.
    InvalidQuery,
    /// The requested resource does not exist (or belongs to someone else).
    NotFound,
    /// The route exists but not for this HTTP method.
    MethodNotAllowed,
    /// The database is unreachable or not migrated yet.
    NotReady,
    /// An unexpected failure; details are in the server log.
    Internal,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidQuery => "invalid_query",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::NotReady => "not_ready",
            ErrorCode::Internal => "internal",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::InvalidQuery => StatusCode::BAD_REQUEST,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::NotReady => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn title(self) -> &'static str {
        match self {
            ErrorCode::InvalidQuery => "Invalid query parameter",
            ErrorCode::NotFound => "Not found",
            ErrorCode::MethodNotAllowed => "Method not allowed",
            ErrorCode::NotReady => "Not ready",
            ErrorCode::Internal => "Internal server error",
        }
    }
}

/// An API error: a code, a human explanation, and optionally the offending field.
#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub detail: String,
    pub field: Option<String>,
}

impl ApiError {
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> ApiError {
        ApiError {
            code,
            detail: detail.into(),
            field: None,
        }
    }

    pub fn invalid_query(field: &str, detail: impl Into<String>) -> ApiError {
        ApiError {
            code: ErrorCode::InvalidQuery,
            detail: detail.into(),
            field: Some(field.to_owned()),
        }
    }

    pub fn not_found(what: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::NotFound, what)
    }

    /// An unexpected failure: the cause goes to the log, not to the client.
    pub fn internal(cause: &dyn std::fmt::Display) -> ApiError {
        tracing::error!(error = %cause, "internal error");
        ApiError::new(
            ErrorCode::Internal,
            "an unexpected error occurred; the server log has the details",
        )
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
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.code.status();
        let body = Problem {
            kind: format!("https://patchbay.dev/errors/{}", self.code.as_str()),
            title: self.code.title(),
            status: status.as_u16(),
            code: self.code.as_str(),
            detail: &self.detail,
            field: self.field.as_deref(),
        };
        let json = serde_json::to_vec(&body).unwrap_or_else(|_| b"{}".to_vec());
        let mut resp = (status, json).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        resp
    }
}

impl From<patchbay_store::StoreError> for ApiError {
    fn from(e: patchbay_store::StoreError) -> Self {
        match e {
            patchbay_store::StoreError::Unavailable(_) => {
                tracing::warn!(error = %e, "database unavailable");
                ApiError::new(
                    ErrorCode::NotReady,
                    "the database is unavailable; try again shortly",
                )
            }
            other => ApiError::internal(&other),
        }
    }
}
