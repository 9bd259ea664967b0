//! A stand-in for the host in native builds, for the author's unit tests.
//!
//! Each test thread has its own HTTP handler and its own log, so tests
//! running in parallel do not see each other's.
//!
//! ```
//! use patchbay_connector_sdk::prelude::*;
//! use patchbay_connector_sdk::testing;
//!
//! testing::mock_http(|req| {
//!     assert_eq!(req.url, "https://api.acme.example/v1/me");
//!     Ok(http::Response::with_json(200, &json!({ "id": "acct_1" })))
//! });
//! let me = http::get("https://api.acme.example/v1/me").unwrap();
//! assert_eq!(me.json::<Value>().unwrap()["id"], "acct_1");
//! info!("checked {}", "acct_1");
//! assert_eq!(testing::take_logs(), vec![(log::Level::Info, "checked acct_1".to_owned())]);
//! ```

use std::cell::RefCell;

use crate::http::{HttpError, Request, Response};
use crate::log::Level;

type Handler = Box<dyn FnMut(&Request) -> Result<Response, HttpError>>;

thread_local! {
    static HTTP: RefCell<Option<Handler>> = const { RefCell::new(None) };
    static LOGS: RefCell<Vec<(Level, String)>> = const { RefCell::new(Vec::new()) };
}

/// Answers this thread's HTTP requests with `handler` (replacing any
/// earlier one) until [`clear_http`].
pub fn mock_http(handler: impl FnMut(&Request) -> Result<Response, HttpError> + 'static) {
    HTTP.with(|h| *h.borrow_mut() = Some(Box::new(handler)));
}

/// Removes this thread's HTTP handler: requests fail again.
pub fn clear_http() {
    HTTP.with(|h| *h.borrow_mut() = None);
}

/// The lines logged on this thread since the last call, oldest first.
pub fn take_logs() -> Vec<(Level, String)> {
    LOGS.with(|l| std::mem::take(&mut *l.borrow_mut()))
}

pub(crate) fn http_fetch(request: &Request) -> Result<Response, HttpError> {
    HTTP.with(|h| match h.borrow_mut().as_mut() {
        Some(handler) => handler(request),
        None => Err(HttpError::Denied(format!(
            "HTTP is only available inside the Patchbay host (no request to {} was made); \
             in unit tests, answer requests with patchbay_connector_sdk::testing::mock_http",
            request.url
        ))),
    })
}

pub(crate) fn log(level: Level, message: &str) {
    eprintln!("[{level}] {message}");
    LOGS.with(|l| l.borrow_mut().push((level, message.to_owned())));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Context, Error, json};

    #[test]
    fn without_a_handler_requests_fail_with_a_message_that_says_why() {
        clear_http();
        let err = crate::http::get("https://api.acme.example/").unwrap_err();
        assert!(
            err.to_string()
                .contains("only available inside the Patchbay host"),
            "{err}"
        );
        assert!(matches!(Error::from(err), Error::Fatal(_)));
    }

    #[test]
    fn encode_keeps_unreserved_characters_only() {
        assert_eq!(crate::http::encode("a b/ć~"), "a%20b%2F%C4%87~");
    }

    #[test]
    fn statuses_map_to_error_kinds() {
        let kind = |status: u16, headers: &[(&str, &str)]| {
            let r = Response {
                status,
                headers: headers
                    .iter()
                    .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                    .collect(),
                body: b"nope".to_vec(),
            };
            r.error_for_status().map(|r| r.status)
        };
        assert_eq!(kind(204, &[]), Ok(204));
        assert_eq!(kind(401, &[]).unwrap_err().kind(), "auth");
        assert_eq!(
            kind(429, &[("retry-after", "3")]),
            Err(Error::rate_limited(
                "the provider answered 429: nope",
                Some(3000)
            ))
        );
        assert_eq!(kind(503, &[]).unwrap_err().kind(), "transient");
        assert_eq!(kind(422, &[]).unwrap_err().kind(), "invalid_input");
    }

    #[test]
    fn context_reads_credentials_and_settings_and_hides_values_in_debug() {
        let ctx = Context::new("acme")
            .with_credential("apiKey", "s3cret")
            .with_credential("empty", "")
            .with_config(json!({ "region": "eu" }));
        assert_eq!(ctx.credential("apiKey"), Some("s3cret"));
        assert_eq!(ctx.credential("empty"), None);
        assert_eq!(ctx.setting("region"), Some("eu"));
        assert_eq!(ctx.setting("apiKey"), Some("s3cret"));
        assert_eq!(
            ctx.require_credential("other"),
            Err(Error::auth("the `other` credential is missing"))
        );
        let debug = format!("{ctx:?}");
        assert!(
            debug.contains("apiKey") && !debug.contains("s3cret"),
            "{debug}"
        );
    }
}
