//! Actions: `POST /api/integrations/{id}/actions/{action}` runs one of an
//! enabled integration's actions through its connector, as the
//! integration's principal.
//!
//! The call is refused unless the integration is enabled in the caller's
//! scope, its principal is active and holds the action key, and the manifest
//! declares the action. The connector gets the integration's decrypted
//! credentials (a use: last-used time recorded), the API version in effect
//! and a deadline (the manifest's health timeout is not used: 30 s). Each
//! call is written to the operation log with a correlation id and its
//! duration; the input and output are not logged (they may hold personal
//! data), only their sizes.

use std::time::{Duration, Instant};

use patchbay_core::{IntegrationStatus, LogLevel};
use patchbay_runtime::{CallContext, ConnectorError, Credentials};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::auth::{Caller, Feature};
use crate::error::{FieldError, Result, ServiceError};
use crate::logs::Entry;
use crate::{Services, audit};

/// How long an action may run.
pub const ACTION_DEADLINE: Duration = Duration::from_secs(30);

/// The outcome of an action.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ActionOut {
    pub integration_id: String,
    pub action: String,
    /// The connector's output (JSON).
    pub output: Value,
    /// Find this call in the operation log with it.
    pub correlation_id: String,
    pub duration_ms: i64,
}

fn connector_error(e: ConnectorError) -> ServiceError {
    match e {
        ConnectorError::InvalidInput { message } => ServiceError::invalid(
            "the connector refused the input",
            vec![FieldError::new("input", "connector_invalid_input", message)],
        ),
        ConnectorError::Auth { message } => ServiceError::Connector {
            code: "connector_auth_failed",
            message,
            retry_after_secs: None,
        },
        ConnectorError::RateLimited {
            message,
            retry_after_ms,
        } => ServiceError::Connector {
            code: "connector_rate_limited",
            message,
            retry_after_secs: retry_after_ms.map(|ms| ms.div_ceil(1000)),
        },
        ConnectorError::Transient { message } => ServiceError::Connector {
            code: "connector_unavailable",
            message,
            retry_after_secs: None,
        },
        ConnectorError::Fatal { message } => ServiceError::Connector {
            code: "connector_failed",
            message,
            retry_after_secs: None,
        },
        ConnectorError::Unsupported { message } => ServiceError::Connector {
            code: "action_unsupported",
            message: format!("not supported by the connector: {message}"),
            retry_after_secs: None,
        },
    }
}

impl Services {
    /// Runs `action` of integration `id` with `input`.
    pub async fn invoke_action(
        &self,
        caller: &Caller,
        id: &str,
        action: &str,
        input: Value,
    ) -> Result<ActionOut> {
        let target = format!("{id}/{action}");
        self.audited(caller, "integration.action", &target, async {
            let scope = caller.scope_with(Feature::IntegrationsManage)?;
            let reg = self.registry();
            let integration = reg
                .integration(id)
                .ok_or_else(|| ServiceError::NotFound(format!("no integration `{id}`")))?;
            if !integration.capabilities.actions.iter().any(|a| a == action) {
                return Err(ServiceError::NotFound(format!(
                    "`{id}` has no action `{action}`; its actions: {}",
                    integration.capabilities.actions.join(", ")
                )));
            }
            let state = self.store().get_state(scope, id).await?;
            if state.as_ref().map(|s| s.status) != Some(IntegrationStatus::Enabled) {
                return Err(ServiceError::conflict(
                    "integration_not_enabled",
                    format!("`{id}` is not enabled; enable it before running its actions"),
                ));
            }
            let principal = self
                .store()
                .get_principal(scope, id)
                .await?
                .filter(|p| p.revoked_at.is_none());
            if !principal.is_some_and(|p| p.action_keys.iter().any(|k| k == action)) {
                return Err(ServiceError::Forbidden(format!(
                    "the principal of `{id}` is not granted action `{action}`"
                )));
            }
            let version = reg
                .resolve_api_version(id, state.as_ref().and_then(|s| s.api_version.as_deref()))
                .ok()
                .flatten()
                .map(|v| v.id.clone());
            let connector = self.natives().get(id, version.as_deref()).ok_or_else(|| {
                ServiceError::Connector {
                    code: "action_unsupported",
                    message: format!("this build has no connector for `{id}` yet"),
                    retry_after_secs: None,
                }
            })?;
            let credentials = self
                .resolve_credentials(scope, id)
                .await?
                .map(|r| r.values)
                .unwrap_or_default();
            let correlation_id = format!("act_{}", uuid::Uuid::now_v7().simple());
            let ctx = CallContext {
                integration_id: id.to_owned(),
                api_version: version,
                credentials: Credentials::new(credentials),
                config: Map::new(),
                deadline: ACTION_DEADLINE,
                correlation_id: Some(correlation_id.clone()),
            };
            let input_bytes = input.to_string().len();
            let started = Instant::now();
            let outcome = match tokio::time::timeout(
                ACTION_DEADLINE,
                connector.invoke(&ctx, action, input),
            )
            .await
            {
                Ok(r) => r,
                Err(_) => Err(ConnectorError::transient(format!(
                    "the action did not finish within {} s",
                    ACTION_DEADLINE.as_secs()
                ))),
            };
            let duration_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
            let logger = self.logger(scope, id, Some(correlation_id.clone())).await?;
            let (level, message, details) = match &outcome {
                Ok(out) => (
                    LogLevel::Info,
                    format!("action `{action}` succeeded"),
                    serde_json::json!({ "inputBytes": input_bytes, "outputBytes": out.to_string().len() }),
                ),
                Err(e) => (
                    LogLevel::Error,
                    format!("action `{action}` failed: {e}"),
                    serde_json::json!({ "inputBytes": input_bytes, "error": e }),
                ),
            };
            logger
                .log(
                    level,
                    Entry {
                        operation: format!("action.{action}"),
                        message,
                        details: Some(details),
                        duration_ms: Some(duration_ms),
                        ..Entry::default()
                    },
                )
                .await?;
            let output = outcome.map_err(connector_error)?;
            self.store()
                .apply(vec![audit::success(
                    caller,
                    Some(scope),
                    "integration.action",
                    &target,
                    Some(serde_json::json!({ "correlationId": correlation_id })),
                    self.now(),
                )])
                .await?;
            Ok(ActionOut {
                integration_id: id.to_owned(),
                action: action.to_owned(),
                output,
                correlation_id,
                duration_ms,
            })
        })
        .await
    }
}
