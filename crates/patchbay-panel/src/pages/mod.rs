//! The pages of the panel, one module per section.

pub(crate) mod bundle;
pub(crate) mod integration;
pub(crate) mod jobs;
pub(crate) mod login;
pub(crate) mod logs;
pub(crate) mod marketplace;
pub(crate) mod platform;
pub(crate) mod sync;
pub(crate) mod usage;

use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use patchbay_service::Feature;

use crate::PanelState;
use crate::session::Signed;
use crate::view::{Chrome, Nav, PanelError};

pub(crate) async fn home() -> Redirect {
    Redirect::to("/backend/integrations")
}

pub(crate) async fn css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("../../static/app.css"),
    )
        .into_response()
}

pub(crate) async fn js() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("../../static/app.js"),
    )
        .into_response()
}

/// The frame of a signed-in page; platform admins get the tenant list.
pub(crate) async fn chrome<'a>(
    state: &PanelState,
    signed: &'a Signed,
    nav: Nav,
) -> Result<Chrome<'a>, PanelError> {
    let tenants = if signed.session.caller.has(Feature::PlatformAdmin) {
        state
            .services
            .list_tenants(&signed.session.caller)
            .await
            .map_err(|e| PanelError::from_service(e, signed.lang))?
            .into_iter()
            .map(|t| (t.id, t.name))
            .collect()
    } else {
        Vec::new()
    };
    Ok(Chrome {
        signed,
        tenants,
        nav,
    })
}

/// Pages about one tenant's integrations need a tenant in the session; a
/// platform admin who has not picked one is sent to the tenant list.
pub(crate) fn need_tenant(signed: &Signed) -> Result<(), Box<Response>> {
    if signed.session.scope.is_none() {
        return Err(Box::new(
            Redirect::to("/backend/platform/tenants").into_response(),
        ));
    }
    Ok(())
}

/// The value of a form field.
pub(crate) fn field<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// A redirect after a successful POST, with a notice key.
pub(crate) fn done(path: &str, notice: &str) -> Response {
    let sep = if path.contains('?') { '&' } else { '?' };
    Redirect::to(&format!("{path}{sep}notice={notice}")).into_response()
}

/// Only local paths are followed after sign-in or a language change.
pub(crate) fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with("/backend") && !n.starts_with("//") && !n.contains("://") => {
            n.to_owned()
        }
        _ => "/backend/integrations".to_owned(),
    }
}
