//! The connector contract: one host-side interface that every connector
//! kind implements — native Rust code compiled into the binary, WebAssembly
//! components run by the sandboxed host, Airbyte executables.
//!
//! A call carries a [`CallContext`]: the integration id, the tenant's API
//! version in effect, the decrypted credentials and the configuration of
//! that one integration — nothing else (no tenant id, no other integration's
//! data, no store). Errors are typed ([`ConnectorError`]) so the host can
//! retry, pause or stop rightly.
//!
//! * [`contract`] — the trait, the context and the values that cross it.
//! * [`http`] — the guarded HTTP client, connectors' only way out.
//! * [`loader`] — how connectors named by a manifest's `runtime` are loaded.
//! * [`native`] — the registry of native connectors and the built-in ones.

pub mod contract;
pub mod http;
pub mod loader;
pub mod native;

pub use contract::{
    Batch, CallContext, CallLog, Connector, ConnectorError, Credentials, Health, LogLine,
    RecordFailure, WebhookOutcome, WebhookRequest, WriteOutcome, WrittenRecord,
};
pub use http::{HttpClient, HttpError, HttpPolicy, HttpRequest, HttpResponse};
pub use loader::{ComponentLoader, ComponentSpec};
pub use native::NativeConnectors;
