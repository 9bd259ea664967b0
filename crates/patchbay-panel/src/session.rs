//! Who is looking: the session cookie, the language, and the CSRF check
//! every form goes through.

use axum::extract::FromRequestParts;
use axum::http::header::{ACCEPT_LANGUAGE, COOKIE};
use axum::http::request::Parts;
use patchbay_service::users::Session;
use subtle::ConstantTimeEq as _;

use crate::PanelState;
use crate::i18n::Lang;
use crate::view::PanelError;

pub(crate) const SESSION_COOKIE: &str = "pb_session";
pub(crate) const LOGIN_CSRF_COOKIE: &str = "pb_login";
pub(crate) const LANG_COOKIE: &str = "pb_lang";

/// A cookie's value from the request.
pub(crate) fn cookie<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    parts
        .headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| {
            let (k, v) = c.trim().split_once('=')?;
            (k == name).then_some(v)
        })
}

/// The language: the `pb_lang` cookie, else `Accept-Language`.
pub(crate) fn lang_of(parts: &Parts) -> Lang {
    cookie(parts, LANG_COOKIE)
        .and_then(Lang::parse)
        .unwrap_or_else(|| {
            parts
                .headers
                .get(ACCEPT_LANGUAGE)
                .and_then(|v| v.to_str().ok())
                .map_or(Lang::En, Lang::from_accept_language)
        })
}

/// The language of the request, for pages without a session.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Language(pub Lang);

impl<S: Send + Sync> FromRequestParts<S> for Language {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Language(lang_of(parts)))
    }
}

/// A signed-in operator; pages that need one redirect to sign-in otherwise.
#[derive(Debug, Clone)]
pub(crate) struct Signed {
    pub session: Session,
    pub lang: Lang,
    /// The path and query, to come back to after signing in.
    pub here: String,
}

impl FromRequestParts<PanelState> for Signed {
    type Rejection = PanelError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &PanelState,
    ) -> Result<Self, Self::Rejection> {
        let lang = lang_of(parts);
        let here = parts
            .uri
            .path_and_query()
            .map_or_else(|| parts.uri.path().to_owned(), ToString::to_string);
        let Some(value) = cookie(parts, SESSION_COOKIE) else {
            return Err(PanelError::SignIn { next: here });
        };
        match state.services.session(value).await {
            Ok(session) => Ok(Signed {
                session,
                lang,
                here,
            }),
            Err(patchbay_service::ServiceError::Unauthenticated(_)) => {
                Err(PanelError::SignIn { next: here })
            }
            Err(e) => Err(PanelError::from_service(e, lang)),
        }
    }
}

impl Signed {
    /// Refuses a form whose CSRF token is missing or wrong.
    pub(crate) fn check_csrf(&self, sent: Option<&str>) -> Result<(), PanelError> {
        let expected = self.session.csrf_token.as_bytes();
        match sent {
            Some(s) if bool::from(s.as_bytes().ct_eq(expected)) => Ok(()),
            _ => Err(PanelError::Csrf { lang: self.lang }),
        }
    }
}

/// Compares a form's login CSRF value with its cookie (double submit).
pub(crate) fn login_csrf_ok(parts_cookie: Option<&str>, sent: Option<&str>) -> bool {
    match (parts_cookie, sent) {
        (Some(c), Some(s)) if !c.is_empty() => bool::from(c.as_bytes().ct_eq(s.as_bytes())),
        _ => false,
    }
}

/// A `Set-Cookie` value: `HttpOnly`, `SameSite=Strict`, path `/backend`,
/// `Secure` when the panel is served over TLS.
pub(crate) fn set_cookie(name: &str, value: &str, max_age: i64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{name}={value}; Path=/backend; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}")
}
