//! Patchbay's admin panel, served by the same binary at `/backend`
//! (SPEC-045a §1.2 "Bundle UX", §3.7 "Log UI", §5 backend pages).
//!
//! Pages are rendered on the server with maud (compile-time-checked,
//! auto-escaping templates); every form works without JavaScript. The one
//! small script (`static/app.js`) adds the live parts over server-sent
//! events: the tail of the log timeline and the counters of a running data
//! sync. Everything is served from the binary: no CDN, works offline.
//!
//! Architecture invariants:
//! * Pages call `patchbay-service` with the session's caller, exactly like the
//!   API does with a token's: scope and features come from the session.
//! * Every POST carries the session's CSRF token; the sign-in form a
//!   double-submit token. Cookies are `HttpOnly`, `SameSite=Strict`, and
//!   `Secure` when served over TLS.
//! * The Content-Security-Policy allows no inline script or style; the markup
//!   uses none.
//! * Every string is in `i18n/en.toml` and `i18n/pl.toml`.

pub mod i18n;
mod pages;
mod session;
mod view;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use patchbay_service::Services;

/// How the panel is served.
#[derive(Debug, Clone, Copy, Default)]
pub struct PanelOptions {
    /// Mark cookies `Secure` (the panel is reached over HTTPS, directly or
    /// through a TLS-terminating proxy).
    pub secure_cookies: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct PanelState {
    pub services: Services,
    pub options: PanelOptions,
}

/// The panel's routes, all under `/backend`.
pub fn router(services: Services, options: PanelOptions) -> Router {
    let state = PanelState { services, options };
    Router::new()
        .route("/backend", get(pages::home))
        .route("/backend/", get(pages::home))
        .route(
            "/backend/login",
            get(pages::login::form).post(pages::login::submit),
        )
        .route("/backend/logout", post(pages::login::logout))
        .route("/backend/lang/{code}", get(pages::login::language))
        .route(
            "/backend/switch-tenant",
            post(pages::platform::switch_tenant),
        )
        .route("/backend/integrations", get(pages::marketplace::page))
        .route(
            "/backend/integrations/bundle/{id}",
            get(pages::bundle::page),
        )
        .route(
            "/backend/integrations/bundle/{id}/credentials",
            post(pages::bundle::save_credentials),
        )
        .route(
            "/backend/integrations/bundle/{id}/state",
            post(pages::bundle::set_state),
        )
        .route("/backend/integrations/{id}", get(pages::integration::page))
        .route(
            "/backend/integrations/{id}/credentials",
            post(pages::integration::save_credentials),
        )
        .route(
            "/backend/integrations/{id}/credentials/remove",
            post(pages::integration::remove_credentials),
        )
        .route(
            "/backend/integrations/{id}/state",
            post(pages::integration::set_state),
        )
        .route(
            "/backend/integrations/{id}/health",
            post(pages::integration::run_health),
        )
        .route(
            "/backend/integrations/{id}/logs/stream",
            get(pages::logs::stream),
        )
        .route("/backend/integrations/{id}/sync", post(pages::sync::start))
        .route(
            "/backend/integrations/{id}/streams/{stream}/mapping",
            get(pages::sync::mapping).post(pages::sync::mapping_post),
        )
        .route("/backend/sync", get(pages::sync::list))
        .route("/backend/sync/runs/{id}", get(pages::sync::run_page))
        .route("/backend/sync/runs/{id}/cancel", post(pages::sync::cancel))
        .route("/backend/sync/runs/{id}/stream", get(pages::sync::stream))
        .route("/backend/logs", get(pages::logs::page))
        .route("/backend/usage", get(pages::usage::page))
        .route("/backend/jobs", get(pages::jobs::page))
        .route("/backend/jobs/{id}", get(pages::jobs::job))
        .route("/backend/jobs/{id}/retry", post(pages::jobs::retry))
        .route("/backend/jobs/{id}/cancel", post(pages::jobs::cancel))
        .route("/backend/platform/tenants", get(pages::platform::tenants))
        .route("/backend/platform/failing", get(pages::platform::failing))
        .route("/backend/platform/audit", get(pages::platform::audit))
        .route("/backend/platform/jobs", get(pages::jobs::platform_page))
        .route(
            "/backend/platform/jobs/{id}",
            get(pages::jobs::platform_job),
        )
        .route(
            "/backend/platform/jobs/{id}/retry",
            post(pages::jobs::platform_retry),
        )
        .route(
            "/backend/platform/jobs/{id}/cancel",
            post(pages::jobs::platform_cancel),
        )
        .route("/backend/platform/schedules", get(pages::jobs::schedules))
        .route(
            "/backend/platform/schedules/{name}",
            post(pages::jobs::save_schedule),
        )
        .route("/backend/static/app.css", get(pages::css))
        .route("/backend/static/app.js", get(pages::js))
        .layer(middleware::from_fn(security_headers))
        .with_state(state)
}

/// The Content-Security-Policy and its companions, on every panel response.
async fn security_headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    resp
}
