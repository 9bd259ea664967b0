//! Sign-in, sign-out and the language switch.

use std::net::SocketAddr;

use axum::Form;
use axum::extract::{ConnectInfo, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use patchbay_service::ServiceError;
use patchbay_vault::ExposeSecret as _;
use serde::Deserialize;

use crate::PanelState;
use crate::i18n::Lang;
use crate::session::{
    LANG_COOKIE, LOGIN_CSRF_COOKIE, Language, SESSION_COOKIE, Signed, cookie, login_csrf_ok,
    set_cookie,
};
use crate::view::{PanelError, bare, html_response};

/// The client's address, for rate limiting sign-in.
pub(crate) struct Client(String);

impl<S: Send + Sync> FromRequestParts<S> for Client {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Client(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map_or_else(|| "unknown".to_owned(), |c| c.0.ip().to_string()),
        ))
    }
}

/// The login CSRF cookie of the request.
pub(crate) struct LoginCookie(Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for LoginCookie {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(LoginCookie(
            cookie(parts, LOGIN_CSRF_COOKIE).map(str::to_owned),
        ))
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct NextParam {
    next: Option<String>,
}

fn random() -> String {
    let mut bytes = [0u8; 24];
    // Without randomness the form carries an empty token, which never validates.
    if getrandom::fill(&mut bytes).is_err() {
        return String::new();
    }
    bytes.iter().fold(String::new(), |mut s, b| {
        s.push_str(&format!("{b:02x}"));
        s
    })
}

fn form_page(lang: Lang, next: &str, csrf: &str, email: &str, error: Option<&str>) -> maud::Markup {
    let l = lang;
    bare(
        l,
        l.t("login.title"),
        html! {
            div class="auth" {
                h1 { (l.t("login.title")) }
                p class="lead" { (l.t("login.lead")) }
                @if let Some(e) = error { div class="alert alert-bad" role="alert" { (e) } }
                form class="form" method="post" action="/backend/login" {
                    input type="hidden" name="csrf" value=(csrf);
                    input type="hidden" name="next" value=(next);
                    div class="field" {
                        label for="email" { (l.t("login.email")) }
                        input type="email" id="email" name="email" value=(email) autocomplete="username" required autofocus;
                    }
                    div class="field" {
                        label for="password" { (l.t("login.password")) }
                        input type="password" id="password" name="password" autocomplete="current-password" required;
                    }
                    button type="submit" { (l.t("login.submit")) }
                }
                p class="meta" {
                    @for other in Lang::ALL {
                        @if other != l { a href={ "/backend/lang/" (other.code()) "?next=/backend/login" } lang=(other.code()) { (other.code().to_uppercase()) } " " }
                    }
                }
            }
        },
    )
}

fn with_login_cookie(
    status: StatusCode,
    markup: maud::Markup,
    csrf: &str,
    secure: bool,
) -> Response {
    let mut resp = html_response(status, markup);
    if let Ok(v) = header::HeaderValue::from_str(&set_cookie(LOGIN_CSRF_COOKIE, csrf, 3600, secure))
    {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

pub(crate) async fn form(
    State(state): State<PanelState>,
    Language(lang): Language,
    Query(q): Query<NextParam>,
) -> Response {
    let csrf = random();
    with_login_cookie(
        StatusCode::OK,
        form_page(lang, &super::safe_next(q.next.as_deref()), &csrf, "", None),
        &csrf,
        state.options.secure_cookies,
    )
}

pub(crate) async fn submit(
    State(state): State<PanelState>,
    Language(lang): Language,
    Client(client): Client,
    LoginCookie(cookie): LoginCookie,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let next = super::safe_next(super::field(&form, "next"));
    let email = super::field(&form, "email").unwrap_or("").to_owned();
    let fresh = random();
    let secure = state.options.secure_cookies;
    if !login_csrf_ok(cookie.as_deref(), super::field(&form, "csrf")) {
        return with_login_cookie(
            StatusCode::FORBIDDEN,
            form_page(lang, &next, &fresh, &email, Some(lang.t("login.expired"))),
            &fresh,
            secure,
        );
    }
    match state
        .services
        .sign_in(
            &email,
            super::field(&form, "password").unwrap_or(""),
            &client,
        )
        .await
    {
        Ok(signed) => {
            let mut resp = Redirect::to(&next).into_response();
            let value = set_cookie(
                SESSION_COOKIE,
                signed.cookie.expose_secret(),
                patchbay_service::users::SESSION_IDLE_SECONDS,
                secure,
            );
            if let Ok(v) = header::HeaderValue::from_str(&value) {
                resp.headers_mut().append(header::SET_COOKIE, v);
            }
            if let Ok(v) =
                header::HeaderValue::from_str(&set_cookie(LOGIN_CSRF_COOKIE, "", 0, secure))
            {
                resp.headers_mut().append(header::SET_COOKIE, v);
            }
            resp
        }
        Err(ServiceError::RateLimited { retry_after_secs }) => {
            let minutes = retry_after_secs.div_ceil(60).to_string();
            let mut resp = with_login_cookie(
                StatusCode::TOO_MANY_REQUESTS,
                form_page(
                    lang,
                    &next,
                    &fresh,
                    &email,
                    Some(&lang.fmt("login.rate_limited", &[("minutes", &minutes)])),
                ),
                &fresh,
                secure,
            );
            if let Ok(v) = header::HeaderValue::from_str(&retry_after_secs.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
            resp
        }
        Err(ServiceError::Unauthenticated(_)) => with_login_cookie(
            StatusCode::UNAUTHORIZED,
            form_page(lang, &next, &fresh, &email, Some(lang.t("login.wrong"))),
            &fresh,
            secure,
        ),
        Err(e) => PanelError::from_service(e, lang).into_response(),
    }
}

pub(crate) async fn logout(
    State(state): State<PanelState>,
    signed: Signed,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, PanelError> {
    signed.check_csrf(super::field(&form, "csrf"))?;
    state
        .services
        .sign_out(&signed.session)
        .await
        .map_err(|e| PanelError::from_service(e, signed.lang))?;
    let mut resp = Redirect::to("/backend/login").into_response();
    if let Ok(v) = header::HeaderValue::from_str(&set_cookie(
        SESSION_COOKIE,
        "",
        0,
        state.options.secure_cookies,
    )) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    Ok(resp)
}

/// Sets the language cookie and goes back. A GET: it changes only a display
/// preference, and the sign-in page needs it without a session.
pub(crate) async fn language(
    State(state): State<PanelState>,
    Path(code): Path<String>,
    Query(q): Query<NextParam>,
) -> Response {
    let Some(lang) = Lang::parse(&code) else {
        return Redirect::to("/backend/integrations").into_response();
    };
    let mut resp = Redirect::to(&super::safe_next(q.next.as_deref())).into_response();
    if let Ok(v) = header::HeaderValue::from_str(&set_cookie(
        LANG_COOKIE,
        lang.code(),
        365 * 86_400,
        state.options.secure_cookies,
    )) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}
