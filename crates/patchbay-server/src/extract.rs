//! Request extractors whose failures are problem+json naming the problem:
//! the bearer-token caller, query strings and JSON bodies.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::AppState;
use crate::error::ApiError;

/// The caller authenticated by `Authorization: Bearer pb_…`.
#[derive(Debug, Clone)]
pub struct Authed(pub patchbay_service::Caller);

impl FromRequestParts<AppState> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let header = parts.headers.get(header::AUTHORIZATION).ok_or_else(|| {
            ApiError::new(
                "unauthenticated",
                "send the API token as `Authorization: Bearer pb_…`",
            )
        })?;
        let token = header
            .to_str()
            .ok()
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .ok_or_else(|| {
                ApiError::new(
                    "unauthenticated",
                    "the Authorization header must be `Bearer pb_…`",
                )
            })?;
        Ok(Authed(state.services().authenticate(token).await?))
    }
}

/// Like `axum::extract::Query`, but a bad parameter is a 400 `invalid_query`
/// problem that names the parameter. Query structs refuse unknown parameters.
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::try_from_uri(&parts.uri)
            .map(|q| Query(q.0))
            .map_err(|e| {
                use std::error::Error as _;
                // serde's message names the field between backticks: "unknown field `x`, expected …".
                let message = e
                    .source()
                    .map_or_else(|| e.body_text(), ToString::to_string);
                let field = if message.contains("unknown field") {
                    message.split('`').nth(1).unwrap_or("(query)").to_owned()
                } else {
                    "(query)".to_owned()
                };
                ApiError::new("invalid_query", without_values(&message)).with_field(field)
            })
    }
}

/// A JSON body: `application/json`, at most the body limit, parsed strictly.
/// Malformed JSON is 400 `invalid_json`; a wrong type, a missing or an
/// unknown field is 422 `invalid_body` naming the field's path.
#[derive(Debug)]
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
        if !is_json {
            return Err(ApiError::new(
                "unsupported_media_type",
                "send the body as application/json",
            ));
        }
        let limit = req
            .extensions()
            .get::<crate::BodyLimit>()
            .map_or(crate::BODY_LIMIT, |l| l.0);
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| {
                if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(
                        "payload_too_large",
                        format!("the body exceeds {}", crate::limit_text(limit)),
                    )
                } else {
                    ApiError::new("invalid_json", "the body could not be read")
                }
            })?;
        // Syntax first, on its own: serde_json reports some type mismatches
        // (a number where an enum is expected) as syntax errors otherwise.
        let tree: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
            ApiError::new(
                "invalid_json",
                format!("malformed JSON at line {}, column {}", e.line(), e.column()),
            )
        })?;
        let value = serde_path_to_error::deserialize(tree).map_err(|e| {
            let path = e.path().to_string();
            let field = if path == "." {
                "(body)".to_owned()
            } else {
                path
            };
            ApiError::new(
                "invalid_body",
                format!("{field}: {}", without_values(&e.inner().to_string())),
            )
            .with_field(field)
        })?;
        Ok(Json(value))
    }
}

/// A serde message without the client's values: serde quotes offending input
/// (an invalid type or an unknown variant names the value it got), and that
/// input may be a secret pasted into the wrong field. Field names and
/// expectations stay.
pub(crate) fn without_values(message: &str) -> String {
    // Query-string messages come prefixed with the parameter (`level: …`).
    let (prefix, body) = ["invalid type: ", "invalid value: ", "unknown variant"]
        .iter()
        .find_map(|m| message.find(m))
        .map_or(("", message), |at| message.split_at(at));
    let expected = body.split_once(", expected ").map(|(_, e)| e);
    let rewritten = if let Some(rest) = body
        .strip_prefix("invalid type: ")
        .or_else(|| body.strip_prefix("invalid value: "))
    {
        let kind = rest.split([' ', ',']).next().unwrap_or("value");
        let what = if body.starts_with("invalid type") {
            "invalid type"
        } else {
            "invalid value"
        };
        format!(
            "{what}: got a {kind}, expected {}",
            expected.unwrap_or("something else")
        )
    } else if body.starts_with("unknown variant") {
        format!(
            "unknown value, expected {}",
            expected.unwrap_or("one of the documented values")
        )
    } else {
        return message.to_owned();
    };
    format!("{prefix}{rewritten}")
}

#[cfg(test)]
mod tests {
    use super::without_values;

    #[test]
    fn serde_messages_lose_the_clients_values() {
        assert_eq!(
            without_values("invalid type: string \"s3cret\", expected a map"),
            "invalid type: got a string, expected a map"
        );
        assert_eq!(
            without_values("invalid value: integer `77`, expected u8"),
            "invalid value: got a integer, expected u8"
        );
        assert_eq!(
            without_values("unknown variant `s3cret`, expected one of `draft`, `enabled`"),
            "unknown value, expected one of `draft`, `enabled`"
        );
        assert_eq!(
            without_values("unknown field `colour`, expected `a`"),
            "unknown field `colour`, expected `a`"
        );
        assert_eq!(
            without_values("missing field `name`"),
            "missing field `name`"
        );
    }
}
