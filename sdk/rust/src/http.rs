//! HTTP through the host — a connector's only way to the network.
//!
//! The host makes the request for the connector, only to the hosts its
//! manifest declares (`network_hosts`) and only to public addresses unless
//! the operator allows otherwise. Redirects are not followed; each request
//! is bounded by its timeout and by the call's deadline.
//!
//! ```no_run
//! use patchbay_connector_sdk::prelude::*;
//!
//! # fn demo() -> Result<(), Error> {
//! let me = http::get("https://api.acme.example/v1/me")?.error_for_status()?.json::<Value>()?;
//! let sent = http::Request::post("https://api.acme.example/v1/messages")
//!     .bearer("key")
//!     .json(&json!({ "to": "ada@example.com" }))
//!     .send()?;
//! # let _ = (me, sent); Ok(()) }
//! ```
//!
//! In a native build (`cargo test`) there is no host: requests go to the
//! handler set with [`crate::testing::mock_http`], and fail without one.

use serde_json::Value;

use crate::Error;

/// One request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    /// `GET`, `POST`, …
    pub method: String,
    /// An absolute `http` or `https` URL.
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// At most this long (never past the call's deadline); `None`: the host's default.
    pub timeout_ms: Option<u32>,
}

impl Request {
    pub fn new(method: &str, url: impl Into<String>) -> Request {
        Request {
            method: method.to_owned(),
            url: url.into(),
            ..Request::default()
        }
    }

    pub fn get(url: impl Into<String>) -> Request {
        Request::new("GET", url)
    }

    pub fn post(url: impl Into<String>) -> Request {
        Request::new("POST", url)
    }

    pub fn put(url: impl Into<String>) -> Request {
        Request::new("PUT", url)
    }

    pub fn patch(url: impl Into<String>) -> Request {
        Request::new("PATCH", url)
    }

    pub fn delete(url: impl Into<String>) -> Request {
        Request::new("DELETE", url)
    }

    /// Adds a header.
    #[must_use]
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Request {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    /// Adds `authorization: Bearer <token>`.
    #[must_use]
    pub fn bearer(self, token: &str) -> Request {
        self.header("authorization", format!("Bearer {token}"))
    }

    /// Sends `value` as the JSON body (and says so in `content-type`).
    #[must_use]
    pub fn json(mut self, value: &Value) -> Request {
        self.body = value.to_string().into_bytes();
        self.headers
            .retain(|(n, _)| !n.eq_ignore_ascii_case("content-type"));
        self.header("content-type", "application/json")
    }

    /// Sends these bytes as the body.
    #[must_use]
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Request {
        self.body = body.into();
        self
    }

    #[must_use]
    pub fn timeout_ms(mut self, ms: u32) -> Request {
        self.timeout_ms = Some(ms);
        self
    }

    /// The first value of a header (any case).
    pub fn header_value(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON (`Value::Null` when it is empty or not JSON).
    pub fn json_body(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// Makes the request.
    pub fn send(self) -> Result<Response, HttpError> {
        request(self)
    }
}

/// The provider's answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// Lower-cased names, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn new(status: u16) -> Response {
        Response {
            status,
            ..Response::default()
        }
    }

    /// A response with a JSON body (for tests' handlers).
    pub fn with_json(status: u16, body: &Value) -> Response {
        Response {
            status,
            headers: vec![("content-type".to_owned(), "application/json".to_owned())],
            body: body.to_string().into_bytes(),
        }
    }

    /// The first value of a header (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON; a body that does not parse is the
    /// provider's fault, an [`Error::Fatal`].
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_slice(&self.body).map_err(|e| {
            Error::fatal(format!(
                "the provider answered {} with a body that is not the expected JSON: {e}",
                self.status
            ))
        })
    }

    /// This response when it is a success (2xx); otherwise the error its
    /// status means: 401/403 [`Error::Auth`], 429 [`Error::RateLimited`]
    /// (with `retry-after` seconds), 408 and 5xx [`Error::Transient`], other
    /// 4xx [`Error::InvalidInput`], anything else [`Error::Fatal`]. The
    /// message quotes the start of the body.
    pub fn error_for_status(self) -> Result<Response, Error> {
        if self.is_success() {
            return Ok(self);
        }
        let mut excerpt: String = self.text().chars().take(200).collect();
        if excerpt.trim().is_empty() {
            "(empty body)".clone_into(&mut excerpt);
        }
        let message = format!("the provider answered {}: {}", self.status, excerpt.trim());
        Err(match self.status {
            401 | 403 => Error::auth(message),
            429 => Error::rate_limited(
                message,
                self.header("retry-after")
                    .and_then(|s| s.trim().parse::<u64>().ok())
                    .map(|secs| secs.saturating_mul(1000)),
            ),
            408 | 500..=599 => Error::transient(message),
            400..=499 => Error::invalid_input(message),
            _ => Error::fatal(message),
        })
    }
}

/// Why a request was not made or did not complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// Refused by the host: a host the manifest does not declare, or an
    /// address that is not public.
    Denied(String),
    /// The request is malformed (URL, method, headers, size).
    Invalid(String),
    Timeout(String),
    /// Connection, TLS or protocol failure.
    Failed(String),
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HttpError::Denied(m) => write!(f, "request refused: {m}"),
            HttpError::Invalid(m) => write!(f, "invalid request: {m}"),
            HttpError::Timeout(m) => write!(f, "request timed out: {m}"),
            HttpError::Failed(m) => write!(f, "request failed: {m}"),
        }
    }
}

impl std::error::Error for HttpError {}

/// A refused or malformed request is the connector's own problem
/// ([`Error::Fatal`]); a timeout or a failed connection is worth retrying
/// ([`Error::Transient`]).
impl From<HttpError> for Error {
    fn from(e: HttpError) -> Error {
        match e {
            HttpError::Denied(_) | HttpError::Invalid(_) => Error::fatal(e.to_string()),
            HttpError::Timeout(_) | HttpError::Failed(_) => Error::transient(e.to_string()),
        }
    }
}

/// Makes a request through the host.
#[allow(
    clippy::needless_pass_by_value,
    reason = "the component hands the request over; a native build only reads it"
)]
pub fn request(request: Request) -> Result<Response, HttpError> {
    #[cfg(target_arch = "wasm32")]
    return crate::guest::http_fetch(request);
    #[cfg(not(target_arch = "wasm32"))]
    return crate::testing::http_fetch(&request);
}

/// Percent-encodes `text` for a URL path segment or query value (every
/// byte but ASCII letters, digits and `-._~`).
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `GET url`.
pub fn get(url: &str) -> Result<Response, HttpError> {
    request(Request::get(url))
}

/// `POST url` with a JSON body.
pub fn post_json(url: &str, body: &Value) -> Result<Response, HttpError> {
    request(Request::post(url).json(body))
}
