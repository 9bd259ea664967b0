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
//!
//! The connector call itself passes the tenant's concurrency gate
//! ([`crate::limits`]: at most N running per tenant, then a bounded queue,
//! then 429) and is metered per hour ([`crate::usage`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use patchbay_core::{IntegrationStatus, LogLevel, Registry, Scope};
use patchbay_runtime::{CallContext, Connector, ConnectorError, Credentials};
use patchbay_store::StateRecord;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::auth::{Caller, Feature};
use crate::error::{FieldError, Result, ServiceError};
use crate::logs::Entry;
use crate::usage::ActionUsage;
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

pub(crate) fn connector_error(e: ConnectorError) -> ServiceError {
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

/// Writes what a connector logged during a call to the operation log
/// (operation `<operation>.connector`), through `logger`'s redaction:
/// a secret the connector printed is stored as `[REDACTED]`.
pub(crate) async fn write_connector_log(
    logger: &crate::logs::ScopedLogger,
    log: &patchbay_runtime::CallLog,
    operation: &str,
) -> Result<()> {
    let (lines, dropped) = log.drain();
    for line in lines {
        logger
            .log(
                line.level,
                Entry {
                    operation: format!("{operation}.connector"),
                    message: line.message,
                    ..Entry::default()
                },
            )
            .await?;
    }
    if dropped > 0 {
        logger
            .log(
                LogLevel::Warning,
                Entry {
                    operation: format!("{operation}.connector"),
                    message: format!(
                        "the connector logged {dropped} more line(s) than the {} a call may keep",
                        patchbay_runtime::CallLog::MAX_LINES
                    ),
                    ..Entry::default()
                },
            )
            .await?;
    }
    Ok(())
}

impl Services {
    /// The state of integration `id` in `scope`, when it is enabled; else
    /// 409 `integration_not_enabled` (`before` says what needs it).
    pub(crate) async fn enabled_state(
        &self,
        scope: &Scope,
        id: &str,
        before: &str,
    ) -> Result<StateRecord> {
        match self.store().get_state(scope, id).await? {
            Some(state) if state.status == IntegrationStatus::Enabled => Ok(state),
            _ => Err(ServiceError::conflict(
                "integration_not_enabled",
                format!("`{id}` is not enabled; enable it before {before}"),
            )),
        }
    }

    /// The connector of integration `id` at the API version in effect for
    /// `state`, and the context of one call to it: the integration's
    /// decrypted credentials (a use), `deadline`, `correlation_id`.
    pub(crate) async fn prepare_call(
        &self,
        scope: &Scope,
        reg: &Registry,
        id: &str,
        state: &StateRecord,
        deadline: Duration,
        correlation_id: &str,
    ) -> Result<(Arc<dyn Connector>, CallContext)> {
        let version = reg
            .resolve_api_version(id, state.api_version.as_deref())
            .ok()
            .flatten()
            .map(|v| v.id.clone());
        let connector =
            self.natives()
                .get(id, version.as_deref())
                .ok_or_else(|| ServiceError::Connector {
                    code: "action_unsupported",
                    message: format!("this build has no connector for `{id}` yet"),
                    retry_after_secs: None,
                })?;
        let credentials = self
            .resolve_credentials(scope, id)
            .await?
            .map(|r| r.values)
            .unwrap_or_default();
        let ctx = CallContext {
            integration_id: id.to_owned(),
            api_version: version,
            credentials: Credentials::new(credentials),
            config: Map::new(),
            deadline,
            correlation_id: Some(correlation_id.to_owned()),
            log: patchbay_runtime::CallLog::default(),
        };
        Ok((connector, ctx))
    }

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
            let state = self.enabled_state(scope, id, "running its actions").await?;
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
            // ---- Hub contract: the input (`hub_checks`) ----
            // A hub action's input must match the hub's schema before any
            // credential is decrypted or connector called: 422 with every
            // problem under `input/…`. A spoke's own actions (beyond its
            // hub's contract) are not checked: manifests declare no schemas.
            let contract = crate::hub_checks::contract_of(integration.hub, action);
            if let Some(c) = contract {
                crate::hub_checks::check_input(integration.hub, c, &input)?;
            }
            // ---- End of the hub contract's input check ----
            let correlation_id = format!("act_{}", uuid::Uuid::now_v7().simple());
            let (connector, ctx) = self
                .prepare_call(scope, &reg, id, &state, ACTION_DEADLINE, &correlation_id)
                .await?;
            // ---- Concurrency gate and usage metering (`limits`, `usage`) ----
            // Around the connector call only: what runs before it (lookups,
            // validation) is neither gated nor metered. A refused call ends
            // here with 429 `tenant_concurrency_exceeded`; the wait for a
            // slot is not part of the call's duration.
            let input_bytes = input.to_string().len();
            let slot = self.action_gate().enter(&scope.tenant_id).await?;
            let called_at = self.now();
            let started = Instant::now();
            let outcome =
                match tokio::time::timeout(ACTION_DEADLINE, connector.invoke(&ctx, action, input))
                    .await
                {
                    Ok(r) => r,
                    Err(_) => Err(ConnectorError::transient(format!(
                        "the action did not finish within {} s",
                        ACTION_DEADLINE.as_secs()
                    ))),
                };
            let duration_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
            drop(slot);
            let output_bytes = outcome.as_ref().map_or(0, |out| out.to_string().len());
            // Output breaking the hub's contract is a failed call too (checked below).
            let problems = match (contract, &outcome) {
                (Some(c), Ok(out)) => c.check_output(out),
                _ => Vec::new(),
            };
            self.meter().record(
                scope,
                id,
                called_at,
                ActionUsage {
                    failed: outcome.is_err() || !problems.is_empty(),
                    duration_ms,
                    input_bytes,
                    output_bytes,
                },
            );
            // ---- End of the concurrency gate and usage metering ----
            let logger = self.logger(scope, id, Some(correlation_id.clone())).await?;
            // The connector's own lines, redacted by the logger, first.
            write_connector_log(&logger, &ctx.log, &format!("action.{action}")).await?;
            // ---- Hub contract: the output (`hub_checks`) ----
            // Output that breaks the hub's schema is the connector's fault:
            // 502 `connector_invalid_output`, logged with the failing paths
            // and codes, never the values.
            if let Ok(out) = &outcome
                && !problems.is_empty()
            {
                let entry = crate::hub_checks::invalid_output_entry(
                    action,
                    input_bytes,
                    out,
                    duration_ms,
                    &problems,
                );
                logger.log(LogLevel::Error, entry).await?;
                return Err(crate::hub_checks::invalid_output(
                    integration.hub,
                    action,
                    &correlation_id,
                    &problems,
                ));
            }
            // ---- End of the hub contract's output check ----
            let (level, message, details) = match &outcome {
                Ok(_) => (
                    LogLevel::Info,
                    format!("action `{action}` succeeded"),
                    serde_json::json!({ "inputBytes": input_bytes, "outputBytes": output_bytes }),
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
