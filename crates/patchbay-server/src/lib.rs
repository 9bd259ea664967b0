//! Patchbay's HTTP server: the REST API, probes and request logging, on axum.
//!
//! [`router`] builds the application from an [`AppState`]; [`serve`] runs it on
//! a bound listener until a shutdown signal, then drains in-flight requests.
//!
//! Architecture invariants:
//! * Only this crate knows HTTP. Handlers parse, call the store or the
//!   registry, and map the result; rules live below them.
//! * Every error response is `application/problem+json` with a stable code
//!   (see [`error::ErrorCode`]); internal causes are logged, never echoed.

pub mod catalog;
pub mod error;
pub mod extract;
pub mod health;

use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use axum::Router;
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use patchbay_core::Registry;
use patchbay_store::Store;

use crate::error::{ApiError, ErrorCode};

/// What every handler can reach. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Arc<dyn Store>,
    /// Swapped whole when connectors are installed; readers keep the `Arc` they took.
    registry: RwLock<Arc<Registry>>,
}

impl AppState {
    pub fn new(store: Arc<dyn Store>, registry: Registry) -> AppState {
        AppState {
            inner: Arc::new(Inner {
                store,
                registry: RwLock::new(Arc::new(registry)),
            }),
        }
    }

    pub fn store(&self) -> &dyn Store {
        &*self.inner.store
    }

    /// The current catalog.
    pub fn registry(&self) -> Arc<Registry> {
        self.inner
            .registry
            .read()
            .map_or_else(|poisoned| poisoned.into_inner().clone(), |r| r.clone())
    }

    /// Replaces the catalog (after installing or removing connectors).
    pub fn set_registry(&self, registry: Registry) {
        let mut slot = self
            .inner
            .registry
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *slot = Arc::new(registry);
    }
}

/// The whole application.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/api/catalog", get(catalog::list))
        .route("/api/catalog/{id}", get(catalog::get))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(log_request))
        .with_state(state)
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!("no route for {}", uri.path()))
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        "this route does not accept that HTTP method",
    )
}

/// Logs each request: method, path (never the query, which may carry
/// tokens), status and duration.
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
