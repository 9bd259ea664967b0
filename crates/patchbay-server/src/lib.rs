//! Patchbay's HTTP server: the REST API, probes and request logging, on axum.
//!
//! [`routes::table`] lists every route once; the router and the OpenAPI 3.1
//! document (`/api/openapi.json`) are both built from it. [`serve`] runs the
//! router on a bound listener until a shutdown signal, then drains in-flight
//! requests.
//!
//! Architecture invariants:
//! * Only this crate knows HTTP. Handlers parse, call a service, map the
//!   result; authorization and rules live in `patchbay-service`.
//! * Every error response is `application/problem+json` with a stable code
//!   (see [`error::CODES`]); internal causes are logged, never echoed.
//! * Request bodies are limited to 64 KiB and parsed strictly.

pub mod error;
pub mod extract;
pub mod handlers;
pub mod routes;
pub mod sync_handlers;

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::middleware::{self, Next};
use axum::response::Response;
use patchbay_service::Services;

use crate::error::ApiError;

/// The largest request body accepted.
pub const BODY_LIMIT: usize = 64 * 1024;

/// A route's own body limit (see [`routes::Route::body_limit`]), for the
/// extractors' messages.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyLimit(pub(crate) usize);

/// The human size of a body limit: `64 KiB`, `16 MiB`.
pub(crate) fn limit_text(limit: usize) -> String {
    if limit >= 1 << 20 && limit.is_multiple_of(1 << 20) {
        format!("{} MiB", limit >> 20)
    } else {
        format!("{} KiB", limit >> 10)
    }
}

/// A route with its own body limit refuses a request whose declared
/// `Content-Length` exceeds it before reading a byte of the body (413
/// `payload_too_large`: a client sending `Expect: 100-continue` is told
/// before it sends), and tells the extractors the limit.
pub(crate) async fn limit_body(
    axum::extract::State(limit): axum::extract::State<usize>,
    mut req: Request,
    next: Next,
) -> Response {
    use axum::response::IntoResponse as _;
    let declared = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return ApiError::new(
            "payload_too_large",
            format!("the body exceeds {}", limit_text(limit)),
        )
        .into_response();
    }
    req.extensions_mut().insert(BodyLimit(limit));
    next.run(req).await
}

/// How long `POST /api/integrations/{id}/health` waits for the check by
/// default before answering 202 with the job to poll.
pub const DEFAULT_HEALTH_WAIT: Duration = Duration::from_secs(3);

/// What every handler can reach. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    services: Services,
    openapi: Arc<OnceLock<String>>,
    health_wait: Duration,
}

impl AppState {
    /// The state with default settings (see [`DEFAULT_HEALTH_WAIT`]).
    pub fn new(services: Services) -> AppState {
        AppState {
            services,
            openapi: Arc::new(OnceLock::new()),
            health_wait: DEFAULT_HEALTH_WAIT,
        }
    }

    /// Sets how long a health-check request waits for its result before
    /// answering 202 Accepted (zero: never wait).
    #[must_use]
    pub fn with_health_wait(mut self, wait: Duration) -> AppState {
        self.health_wait = wait;
        self
    }

    pub fn services(&self) -> &Services {
        &self.services
    }

    /// How long a health-check request waits for its result.
    pub fn health_wait(&self) -> Duration {
        self.health_wait
    }

    /// The OpenAPI document, generated on first request.
    pub fn openapi_json(&self) -> String {
        self.openapi
            .get_or_init(|| routes::openapi().to_string())
            .clone()
    }
}

/// The whole application.
pub fn router(state: AppState) -> Router {
    routes::router()
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn(log_request))
        .with_state(state)
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!("no route for {}", uri.path()))
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        "method_not_allowed",
        "this route does not accept that HTTP method",
    )
}

/// Logs each request: method, path (never the query or headers, which may
/// carry tokens), status and duration.
async fn log_request(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let resp = next.run(req).await;
    let status = resp.status().as_u16();
    let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    if status >= 500 {
        tracing::warn!(%method, %path, status, micros, "request failed");
    } else {
        tracing::debug!(%method, %path, status, micros, "request");
    }
    resp
}

/// Serves `router` on `listener` until `shutdown` completes, then lets
/// in-flight requests finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}
