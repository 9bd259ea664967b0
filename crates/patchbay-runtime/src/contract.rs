//! The contract every connector implements, whatever it is made of.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use patchbay_core::LogLevel;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The decrypted credentials of one integration, for one call. `Debug`
/// never shows them; they are wiped from memory when dropped.
#[derive(Clone, Default)]
pub struct Credentials(Map<String, Value>);

impl Credentials {
    pub fn new(values: Map<String, Value>) -> Credentials {
        Credentials(values)
    }

    /// A field's value, for the connector's own use.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key)
    }

    /// A text field.
    pub fn text(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(Value::as_str)
    }

    pub fn expose(&self) -> &Map<String, Value> {
        &self.0
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("keys", &self.0.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Drop for Credentials {
    fn drop(&mut self) {
        fn wipe(v: &mut Value) {
            match v {
                Value::String(s) => zeroize::Zeroize::zeroize(s),
                Value::Array(a) => a.iter_mut().for_each(wipe),
                Value::Object(o) => o.values_mut().for_each(wipe),
                _ => {}
            }
        }
        self.0.values_mut().for_each(wipe);
    }
}

/// What one call may know.
#[derive(Debug, Clone)]
pub struct CallContext {
    pub integration_id: String,
    /// The API version in effect for the tenant (selected or default);
    /// `None` when the integration is not versioned.
    pub api_version: Option<String>,
    pub credentials: Credentials,
    /// Non-secret settings of this integration.
    pub config: Map<String, Value>,
    /// How long the call may take (the manifest's, within the operator's maximum).
    pub deadline: Duration,
    /// Carried into the connector's log lines.
    pub correlation_id: Option<String>,
    /// Where the connector's own log lines go; the host writes them to the
    /// operation log (redacted) once the call is over.
    pub log: CallLog,
}

/// One line a connector logged during a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub level: LogLevel,
    pub message: String,
}

/// The log lines of one call, bounded: a chatty connector cannot fill the
/// host's memory (lines past [`CallLog::MAX_LINES`] are counted, not kept;
/// each line is cut at [`CallLog::MAX_LINE_CHARS`]).
#[derive(Debug, Clone, Default)]
pub struct CallLog(Arc<Mutex<CallLogInner>>);

#[derive(Debug, Default)]
struct CallLogInner {
    lines: Vec<LogLine>,
    dropped: u64,
}

impl CallLog {
    pub const MAX_LINES: usize = 200;
    pub const MAX_LINE_CHARS: usize = 2048;

    fn lock(&self) -> std::sync::MutexGuard<'_, CallLogInner> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn push(&self, level: LogLevel, message: &str) {
        let mut inner = self.lock();
        if inner.lines.len() < Self::MAX_LINES {
            let message = match message.char_indices().nth(Self::MAX_LINE_CHARS) {
                Some((cut, _)) => format!("{}…", &message[..cut]),
                None => message.to_owned(),
            };
            inner.lines.push(LogLine { level, message });
        } else {
            inner.dropped += 1;
        }
    }

    pub fn info(&self, message: &str) {
        self.push(LogLevel::Info, message);
    }

    /// The lines so far, oldest first, and how many were dropped; empties the log.
    pub fn drain(&self) -> (Vec<LogLine>, u64) {
        let mut inner = self.lock();
        (
            std::mem::take(&mut inner.lines),
            std::mem::take(&mut inner.dropped),
        )
    }
}

/// Why a call failed. The host retries `Transient` (with backoff),
/// waits out `RateLimited`, and stops on the others.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ConnectorError {
    /// The input (action input, record, configuration) is not acceptable.
    #[error("invalid input: {message}")]
    InvalidInput { message: String },
    /// The provider refused the credentials.
    #[error("authentication failed: {message}")]
    Auth { message: String },
    /// Too many calls; try again after `retry_after_ms` when given.
    #[error("rate limited: {message}")]
    RateLimited {
        message: String,
        retry_after_ms: Option<u64>,
    },
    /// Worth retrying (network, 5xx, timeout).
    #[error("temporary failure: {message}")]
    Transient { message: String },
    /// Not worth retrying.
    #[error("{message}")]
    Fatal { message: String },
    /// The connector does not implement this operation (or this action, stream).
    #[error("not supported: {message}")]
    Unsupported { message: String },
}

impl ConnectorError {
    pub fn invalid(message: impl Into<String>) -> ConnectorError {
        ConnectorError::InvalidInput {
            message: message.into(),
        }
    }

    pub fn fatal(message: impl Into<String>) -> ConnectorError {
        ConnectorError::Fatal {
            message: message.into(),
        }
    }

    pub fn transient(message: impl Into<String>) -> ConnectorError {
        ConnectorError::Transient {
            message: message.into(),
        }
    }

    pub fn unsupported(message: impl Into<String>) -> ConnectorError {
        ConnectorError::Unsupported {
            message: message.into(),
        }
    }

    /// Whether retrying the same call later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ConnectorError::Transient { .. } | ConnectorError::RateLimited { .. }
        )
    }
}

/// The outcome of `check`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub ok: bool,
    /// One line for people, never a secret.
    pub message: String,
}

/// One batch of `read`: records, and where the next batch starts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    pub records: Vec<Value>,
    /// Persist this after the batch is committed; `None`: the stream is
    /// exhausted for now (read again later from the last cursor).
    pub next_cursor: Option<String>,
    /// Records of the source that could not be read (a malformed line, a
    /// row with the wrong number of fields): skipped, each counted and
    /// logged by the host, while the batch goes on.
    #[serde(default)]
    pub failures: Vec<RecordFailure>,
    /// How many records the stream holds in all, when the source knows
    /// (a row count, a file's size in records): shown as progress and ETA.
    #[serde(default)]
    pub total: Option<u64>,
}

/// A record of the source that could not be read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordFailure {
    /// Where it is in the source, for people: `byte 1234`, `line 42`.
    pub position: String,
    /// Its id, when it could be read despite the failure.
    #[serde(default)]
    pub external_id: Option<String>,
    /// Why: never the record's content (it may be personal data).
    pub message: String,
}

/// The outcome of `write`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WriteOutcome {
    pub written: u64,
    /// Records refused one by one (the others were written), with why:
    /// (index in the batch, message — never the record's content).
    pub failed: Vec<(usize, String)>,
    /// What the connector knows of the records it wrote (any, all or none
    /// of them): the provider's id and whether the record was created or
    /// updated there. The host keeps the ids as id mappings and counts
    /// created/updated from it (records without an entry count as updated).
    #[serde(default)]
    pub results: Vec<WrittenRecord>,
}

/// One record `write` wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WrittenRecord {
    /// Its index in the batch.
    pub index: usize,
    /// Its id at the provider, when the provider assigns or reports one.
    #[serde(default)]
    pub external_id: Option<String>,
    /// `true`: created; `false`: updated (an existing record changed);
    /// `None`: not known.
    #[serde(default)]
    pub created: Option<bool>,
}

/// An inbound webhook request, as the connector sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookRequest {
    pub method: String,
    pub path: String,
    /// Lower-cased names.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// What `verify_webhook` decided.
#[derive(Debug, Clone, PartialEq)]
pub enum WebhookOutcome {
    Accepted { events: Vec<Value> },
    Rejected { reason: String },
}

/// One connector: every kind implements this. Operations a connector does
/// not have answer [`ConnectorError::Unsupported`].
#[async_trait::async_trait]
pub trait Connector: Send + Sync {
    /// Talks to the provider with the credentials: can it be used?
    async fn check(&self, ctx: &CallContext) -> Result<Health, ConnectorError>;

    /// The next batch of `stream` after `cursor` (`None`: from the start).
    async fn read(
        &self,
        ctx: &CallContext,
        stream: &str,
        cursor: Option<&str>,
    ) -> Result<Batch, ConnectorError> {
        let _ = (ctx, cursor);
        Err(ConnectorError::unsupported(format!(
            "reading stream `{stream}`"
        )))
    }

    /// Writes records to `stream`.
    async fn write(
        &self,
        ctx: &CallContext,
        stream: &str,
        records: Vec<Value>,
    ) -> Result<WriteOutcome, ConnectorError> {
        let _ = (ctx, records);
        Err(ConnectorError::unsupported(format!(
            "writing stream `{stream}`"
        )))
    }

    /// Runs an action with JSON input and output.
    async fn invoke(
        &self,
        ctx: &CallContext,
        action: &str,
        input: Value,
    ) -> Result<Value, ConnectorError> {
        let _ = (ctx, input);
        Err(ConnectorError::unsupported(format!("action `{action}`")))
    }

    /// Verifies an inbound webhook and maps it to events.
    async fn verify_webhook(
        &self,
        ctx: &CallContext,
        request: &WebhookRequest,
    ) -> Result<WebhookOutcome, ConnectorError> {
        let _ = (ctx, request);
        Err(ConnectorError::unsupported("webhooks"))
    }
}
