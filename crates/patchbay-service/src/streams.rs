//! Reading one batch of a stream: `POST /api/integrations/{id}/streams/{stream}/read`.
//!
//! What an operator or a connector author uses to see what a connector
//! returns, one batch at a time, before a sync is set up (the sync engine
//! calls the same `read` in a loop and persists the cursor). Nothing is
//! stored except the operation-log entry and the connector's own log lines.
//! The same rules as an action: the integration must be enabled in the
//! caller's scope and declare the stream; the connector gets the
//! integration's credentials, the API version in effect and a deadline.

use std::time::{Duration, Instant};

use patchbay_core::LogLevel;
use patchbay_runtime::ConnectorError;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::auth::{Caller, Feature};
use crate::error::Result;
use crate::logs::Entry;
use crate::{Services, actions};

/// How long one read may run.
pub const READ_DEADLINE: Duration = Duration::from_secs(30);

/// Where to read from.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ReadIn {
    /// The cursor a previous batch returned; absent: from the start.
    #[serde(default)]
    pub cursor: Option<String>,
}

/// One batch.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BatchOut {
    pub integration_id: String,
    pub stream: String,
    pub records: Vec<Value>,
    /// Pass it back to read the next batch; `null`: the stream is exhausted for now.
    pub next_cursor: Option<String>,
    pub correlation_id: String,
    pub duration_ms: i64,
}

impl Services {
    /// Reads the batch of `stream` after `input.cursor`.
    pub async fn read_stream(
        &self,
        caller: &Caller,
        id: &str,
        stream: &str,
        input: ReadIn,
    ) -> Result<BatchOut> {
        let scope = caller.scope_with(Feature::IntegrationsManage)?;
        self.sync_target(id, stream)?;
        let reg = self.registry();
        let state = self.enabled_state(scope, id, "reading its streams").await?;
        let correlation_id = format!("read_{}", uuid::Uuid::now_v7().simple());
        let (connector, ctx) = self
            .prepare_call(scope, &reg, id, &state, READ_DEADLINE, &correlation_id)
            .await?;
        let started = Instant::now();
        let outcome = match tokio::time::timeout(
            READ_DEADLINE,
            connector.read(&ctx, stream, input.cursor.as_deref()),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => Err(ConnectorError::transient(format!(
                "the read did not finish within {} s",
                READ_DEADLINE.as_secs()
            ))),
        };
        let duration_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
        let logger = self.logger(scope, id, Some(correlation_id.clone())).await?;
        let operation = format!("read.{stream}");
        actions::write_connector_log(&logger, &ctx.log, &operation).await?;
        let (level, message) = match &outcome {
            Ok(b) => (
                LogLevel::Info,
                format!(
                    "read {} record(s) of `{stream}`{}",
                    b.records.len(),
                    if b.next_cursor.is_some() {
                        ""
                    } else {
                        "; the stream is exhausted"
                    }
                ),
            ),
            Err(e) => (LogLevel::Error, format!("reading `{stream}` failed: {e}")),
        };
        logger
            .log(
                level,
                Entry {
                    operation,
                    message,
                    duration_ms: Some(duration_ms),
                    ..Entry::default()
                },
            )
            .await?;
        let batch = outcome.map_err(actions::connector_error)?;
        Ok(BatchOut {
            integration_id: id.to_owned(),
            stream: stream.to_owned(),
            records: batch.records,
            next_cursor: batch.next_cursor,
            correlation_id,
            duration_ms,
        })
    }
}
