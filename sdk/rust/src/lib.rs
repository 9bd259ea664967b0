//! Write Patchbay connectors in Rust.
//!
//! A connector is a WebAssembly component (built for `wasm32-wasip2`) that
//! implements the `patchbay:connector` WIT world (`wit/connector.wit`). This
//! crate hides the bindings: implement [`Connector`] on a type and export it
//! with [`export_connector!`].
//!
//! ```
//! use patchbay_connector_sdk::prelude::*;
//!
//! struct Acme;
//!
//! impl Connector for Acme {
//!     fn check(ctx: &Context) -> Result<Health, Error> {
//!         match ctx.credential("apiKey") {
//!             Some(_) => Ok(Health::healthy("ready")),
//!             None => Err(Error::auth("the API key is missing")),
//!         }
//!     }
//!
//!     fn invoke(ctx: &Context, action: &str, input: Value) -> Result<Value, Error> {
//!         match action {
//!             "echo" => Ok(input),
//!             other => Err(Error::unsupported(format!("action `{other}`"))),
//!         }
//!     }
//! }
//!
//! export_connector!(Acme);
//! ```
//!
//! * [`Connector`] — the operations; those a connector lacks answer
//!   [`Error::Unsupported`].
//! * [`Context`] — what one call may know: integration id, API version,
//!   credentials and configuration.
//! * [`http`] — requests through the host (only to hosts the manifest
//!   declares). [`log`] — lines for the integration's operation log.
//! * [`testing`] (native builds only) — a stand-in for the host in the
//!   author's unit tests: answer HTTP requests, read the logged lines.
//!
//! On a native target (`cargo test`) nothing is exported, logging goes to
//! standard error, and HTTP is answered by the handler a test sets with
//! [`testing::mock_http`] (without one, every request fails with a message
//! saying so).

// The export macro refers to this crate by name, inside and outside it.
extern crate self as patchbay_connector_sdk;

pub mod http;
pub mod log;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;

#[cfg(target_arch = "wasm32")]
mod guest;

pub use serde_json;
pub use serde_json::{Map, Value, json};

/// Everything a connector usually needs: `use patchbay_connector_sdk::prelude::*;`.
pub mod prelude {
    pub use crate::http;
    pub use crate::log;
    pub use crate::{
        Batch, Connector, Context, Error, Health, RecordFailure, WebhookOutcome, WebhookRequest,
        WriteResult, export_connector,
    };
    pub use crate::{debug, error, info, trace, warn};
    pub use serde_json::{Map, Value, json};
}

/// A connector: the operations the host calls. Each call gets its own
/// [`Context`]; a connector keeps no state between calls (every call runs
/// in a fresh instance).
pub trait Connector {
    /// Talks to the provider with the credentials: can the connection be used?
    fn check(ctx: &Context) -> Result<Health, Error>;

    /// The next batch of `stream` after `cursor` (`None`: from the start).
    fn read(ctx: &Context, stream: &str, cursor: Option<&str>) -> Result<Batch, Error> {
        let _ = (ctx, cursor);
        Err(Error::unsupported(format!("reading stream `{stream}`")))
    }

    /// Writes `records` to `stream`; records refused one by one go in
    /// [`WriteResult::failed`].
    fn write(ctx: &Context, stream: &str, records: Vec<Value>) -> Result<WriteResult, Error> {
        let _ = (ctx, records);
        Err(Error::unsupported(format!("writing stream `{stream}`")))
    }

    /// Runs `action` with JSON input and output.
    fn invoke(ctx: &Context, action: &str, input: Value) -> Result<Value, Error> {
        let _ = (ctx, input);
        Err(Error::unsupported(format!("action `{action}`")))
    }

    /// Verifies an inbound webhook request and maps it to events.
    fn verify_webhook(ctx: &Context, request: &WebhookRequest) -> Result<WebhookOutcome, Error> {
        let _ = (ctx, request);
        Err(Error::unsupported("webhooks"))
    }
}

/// What one call may know. `Debug` shows the credentials' names, never
/// their values.
#[derive(Clone, PartialEq)]
pub struct Context {
    /// The integration's id (`acme_notify`).
    pub integration_id: String,
    /// The API version in effect, when the integration is versioned.
    pub api_version: Option<String>,
    /// Non-secret settings, a JSON object.
    pub config: Value,
    credentials: Value,
}

impl Context {
    /// A context with no credentials and an empty configuration (for tests;
    /// the host builds the real one).
    pub fn new(integration_id: impl Into<String>) -> Context {
        Context {
            integration_id: integration_id.into(),
            api_version: None,
            config: Value::Object(Map::new()),
            credentials: Value::Object(Map::new()),
        }
    }

    /// Adds (or replaces) one text credential.
    #[must_use]
    pub fn with_credential(mut self, key: &str, value: impl Into<String>) -> Context {
        if let Value::Object(map) = &mut self.credentials {
            map.insert(key.to_owned(), Value::String(value.into()));
        }
        self
    }

    /// Replaces the credentials (a JSON object).
    #[must_use]
    pub fn with_credentials(mut self, credentials: Value) -> Context {
        self.credentials = credentials;
        self
    }

    /// Replaces the configuration (a JSON object).
    #[must_use]
    pub fn with_config(mut self, config: Value) -> Context {
        self.config = config;
        self
    }

    #[must_use]
    pub fn with_api_version(mut self, version: impl Into<String>) -> Context {
        self.api_version = Some(version.into());
        self
    }

    /// A text credential (`None` when absent, empty or not text).
    pub fn credential(&self, key: &str) -> Option<&str> {
        self.credentials
            .get(key)
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
    }

    /// A text credential the call cannot do without: its absence is an
    /// [`Error::Auth`] naming the field (never a value).
    pub fn require_credential(&self, key: &str) -> Result<&str, Error> {
        self.credential(key)
            .ok_or_else(|| Error::auth(format!("the `{key}` credential is missing")))
    }

    /// Every credential, as the JSON object the host sent (numbers and
    /// booleans included).
    pub fn credentials(&self) -> &Value {
        &self.credentials
    }

    /// A text setting of the configuration, falling back to a text
    /// credential of the same name (`None` when absent or empty).
    pub fn setting(&self, key: &str) -> Option<&str> {
        self.config
            .get(key)
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
            .or_else(|| self.credential(key))
    }
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys: Vec<&String> = self
            .credentials
            .as_object()
            .map(|m| m.keys().collect())
            .unwrap_or_default();
        f.debug_struct("Context")
            .field("integration_id", &self.integration_id)
            .field("api_version", &self.api_version)
            .field("config", &self.config)
            .field("credential_keys", &keys)
            .finish()
    }
}

/// Why a call failed; the host retries `Transient`, waits out
/// `RateLimited`, and stops on the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The input (action input, record, configuration) is not acceptable.
    InvalidInput(String),
    /// The provider refused the credentials (or one is missing).
    Auth(String),
    /// Too many calls; try again after `retry_after_ms` when given.
    RateLimited {
        message: String,
        retry_after_ms: Option<u64>,
    },
    /// Worth retrying: network trouble, a 5xx, a timeout.
    Transient(String),
    /// Not worth retrying.
    Fatal(String),
    /// This connector does not do that (operation, action, stream).
    Unsupported(String),
}

impl Error {
    pub fn invalid_input(message: impl Into<String>) -> Error {
        Error::InvalidInput(message.into())
    }

    pub fn auth(message: impl Into<String>) -> Error {
        Error::Auth(message.into())
    }

    pub fn rate_limited(message: impl Into<String>, retry_after_ms: Option<u64>) -> Error {
        Error::RateLimited {
            message: message.into(),
            retry_after_ms,
        }
    }

    pub fn transient(message: impl Into<String>) -> Error {
        Error::Transient(message.into())
    }

    pub fn fatal(message: impl Into<String>) -> Error {
        Error::Fatal(message.into())
    }

    pub fn unsupported(message: impl Into<String>) -> Error {
        Error::Unsupported(message.into())
    }

    /// The kind as the host names it: `invalid_input`, `auth`,
    /// `rate_limited`, `transient`, `fatal` or `unsupported`.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::InvalidInput(_) => "invalid_input",
            Error::Auth(_) => "auth",
            Error::RateLimited { .. } => "rate_limited",
            Error::Transient(_) => "transient",
            Error::Fatal(_) => "fatal",
            Error::Unsupported(_) => "unsupported",
        }
    }

    pub fn message(&self) -> &str {
        match self {
            Error::InvalidInput(m)
            | Error::Auth(m)
            | Error::RateLimited { message: m, .. }
            | Error::Transient(m)
            | Error::Fatal(m)
            | Error::Unsupported(m) => m,
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind(), self.message())
    }
}

impl std::error::Error for Error {}

/// A JSON input that does not parse into the type an action expects is the
/// caller's mistake: `let input: SendInput = serde_json::from_value(input)?;`.
impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Error {
        Error::InvalidInput(e.to_string())
    }
}

/// The outcome of [`Connector::check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub ok: bool,
    /// One line for people, never a secret.
    pub message: String,
}

impl Health {
    pub fn healthy(message: impl Into<String>) -> Health {
        Health {
            ok: true,
            message: message.into(),
        }
    }

    pub fn unhealthy(message: impl Into<String>) -> Health {
        Health {
            ok: false,
            message: message.into(),
        }
    }
}

/// One batch of [`Connector::read`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Batch {
    pub records: Vec<Value>,
    /// Where the next batch starts; `None`: the stream is exhausted for now.
    pub next_cursor: Option<String>,
}

/// The outcome of [`Connector::write`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteResult {
    pub written: u64,
    /// Records refused one by one (the others were written).
    pub failed: Vec<RecordFailure>,
}

/// One refused record of a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordFailure {
    /// The record's position in the written list.
    pub index: u32,
    pub message: String,
}

/// An inbound webhook request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebhookRequest {
    pub method: String,
    pub path: String,
    /// Lower-cased names.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl WebhookRequest {
    /// The first value of a header (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub fn json(&self) -> Result<Value, Error> {
        serde_json::from_slice(&self.body)
            .map_err(|e| Error::invalid_input(format!("the webhook body is not JSON: {e}")))
    }
}

/// What [`Connector::verify_webhook`] decided.
#[derive(Debug, Clone, PartialEq)]
pub enum WebhookOutcome {
    /// Verified: the normalized events.
    Accepted(Vec<Value>),
    /// Not verified, and why (logged, never shown to the sender).
    Rejected(String),
}

/// Exports a [`Connector`] as the component's implementation of the
/// `patchbay:connector` world. Use it once, at the crate's root. On a native
/// target it only checks that the type implements [`Connector`].
#[macro_export]
macro_rules! export_connector {
    ($connector:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            type PatchbayConnectorExport = $crate::__private::Adapter<$connector>;
            $crate::__private::bindings::__patchbay_export_world!(
                PatchbayConnectorExport with_types_in $crate::__private::bindings
            );
        };
        #[cfg(not(target_arch = "wasm32"))]
        const _: () = {
            fn implements_connector<T: $crate::Connector>() {}
            let _ = implements_connector::<$connector>;
        };
    };
}

#[doc(hidden)]
pub mod __private {
    #[cfg(target_arch = "wasm32")]
    pub use crate::guest::{Adapter, bindings, wit_bindgen};
}
