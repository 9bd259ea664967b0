//! Request extractors whose failures are problem+json, naming the field.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

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
                let field = message.split('`').nth(1).unwrap_or("(query)").to_owned();
                ApiError::invalid_query(&field, message)
            })
    }
}
