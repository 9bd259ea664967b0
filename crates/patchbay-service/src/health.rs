//! Health checks (SPEC-045 "Health Check Timeout": asynchronous, run by a
//! worker, 10 s timeout, last result cached on the state).
//!
//! A check is a list of named checks, each `pass`, `warn`, `fail` or `skip`:
//!
//! * `credentials` — every required credential field is present (bundle
//!   fallthrough counts).
//! * `api_version` — the version in effect is not past its sunset (fail) nor
//!   deprecated with a sunset within [`SUNSET_WARNING_DAYS`] (warn).
//! * `provider` — the connector's `check` (the runtime's contract, for the
//!   integration's `health_check.service`), run with the manifest's timeout
//!   (10 s by default). Only connectors this build carries run; for the
//!   others the check is `skip` and says so plainly.
//! * `drift` — with no provider operation to re-verify them, credentials
//!   changed since the last healthy check are a warning.
//!
//! The overall status is `unhealthy` if any check fails, else `degraded` if
//! any warns, else `healthy` if the provider operation passed — and
//! `unknown` when nothing reached the provider: Patchbay never reports a
//! connection healthy that it has not talked to.
//!
//! The result is stored on the integration's state, emitted as
//! `integrations.health.checked`, and written to the operation log.
//! Reading a stored `healthy` result whose credentials changed afterwards
//! shows `degraded` (drift) until the next check.

use std::time::{Duration, Instant};

use patchbay_core::{IntegrationStatus, LogLevel, Scope, Timestamp, VersionStatus};
use patchbay_store::{Change, Expect, StateRecord, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::auth::{Caller, Feature};
use crate::error::{Result, ServiceError};
use crate::jobs::{JobKind, JobOut, JobSpec, job_out};
use crate::logs::Entry;
use crate::{Services, audit, events};

/// A deprecated version whose sunset is this close makes a check degraded.
pub const SUNSET_WARNING_DAYS: i64 = 30;

/// The overall outcome of a health check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    Healthy,
    Degraded,
    Unhealthy,
    /// Nothing reached the provider (no health operation in this build).
    Unknown,
}

impl HealthStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Healthy => "healthy",
            HealthStatus::Degraded => "degraded",
            HealthStatus::Unhealthy => "unhealthy",
            HealthStatus::Unknown => "unknown",
        }
    }
}

/// The outcome of one named check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    Pass,
    Warn,
    Fail,
    Skip,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CheckOut {
    pub name: String,
    pub status: CheckStatus,
    pub message: String,
}

/// A health-check result, as stored on the state and returned by the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthResult {
    pub status: HealthStatus,
    /// One line for people.
    pub message: String,
    /// How long the whole check took.
    pub latency_ms: i64,
    pub checked_at: Timestamp,
    /// The API version in effect when checked.
    #[serde(default)]
    pub api_version: Option<String>,
    pub checks: Vec<CheckOut>,
}

/// What `POST /api/integrations/{id}/health` answers.
#[derive(Debug, Clone)]
pub enum HealthRequest {
    /// The check finished within the wait.
    Done { result: HealthResult, job: JobOut },
    /// Not succeeded within the wait: still queued or running (or, rarely,
    /// failed without a result — the job's status and `lastError` say). Poll the job.
    Pending { job: JobOut },
}

fn check(name: &str, status: CheckStatus, message: impl Into<String>) -> CheckOut {
    CheckOut {
        name: name.to_owned(),
        status,
        message: message.into(),
    }
}

/// Reads a stored result for display, applying drift: a healthy result
/// older than the credentials it vouched for reads as degraded.
pub fn effective_health(
    stored: Option<&str>,
    credentials_updated_at: Option<Timestamp>,
) -> Option<HealthResult> {
    let mut result: HealthResult = serde_json::from_str(stored?).ok()?;
    if result.status == HealthStatus::Healthy
        && credentials_updated_at.is_some_and(|u| u > result.checked_at)
    {
        result.status = HealthStatus::Degraded;
        "credentials changed since the last good check; run a check"
            .clone_into(&mut result.message);
        result.checks.push(check(
            "drift",
            CheckStatus::Warn,
            "credentials changed since the last good check",
        ));
    }
    Some(result)
}

impl Services {
    /// Runs the health check of one integration in `scope` and records the
    /// result (state, event, operation log). Called by the `health.check` job.
    pub async fn run_health_check(&self, scope: &Scope, id: &str) -> Result<HealthResult> {
        let started = Instant::now();
        let reg = self.registry();
        let integration = reg
            .integration(id)
            .ok_or_else(|| ServiceError::NotFound(format!("no integration `{id}`")))?;
        let current = self.store().get_state(scope, id).await?;
        let now = self.now();
        let mut checks = Vec::new();

        // Credentials: the required fields, and when they last changed.
        let owner = crate::credentials::owner(&reg, id)?;
        let resolved = self.peek_credentials(scope, id).await?;
        let missing: Vec<&str> = owner
            .schema
            .fields
            .iter()
            .filter(|f| f.required)
            .filter(|f| {
                resolved
                    .as_ref()
                    .and_then(|r| r.values.get(&f.key))
                    .is_none_or(Value::is_null)
            })
            .map(|f| f.label.as_str())
            .collect();
        checks.push(if missing.is_empty() {
            check(
                "credentials",
                CheckStatus::Pass,
                "required credentials are present",
            )
        } else {
            check(
                "credentials",
                CheckStatus::Fail,
                format!("missing: {}", missing.join(", ")),
            )
        });

        // API version.
        let selected = current.as_ref().and_then(|s| s.api_version.clone());
        let effective = reg
            .resolve_api_version(id, selected.as_deref())
            .ok()
            .flatten();
        checks.push(api_version_check(effective, now));

        // The provider's own health operation.
        let mut probed = false;
        // A bundle member without its own operation uses its bundle's.
        let operation = integration
            .health_check
            .as_ref()
            .or_else(|| reg.bundle_of(id).and_then(|b| b.health_check.as_ref()));
        match operation {
            None => checks.push(check(
                "provider",
                CheckStatus::Skip,
                format!("`{id}` declares no health operation"),
            )),
            Some(h) if missing.is_empty() => {
                let version = effective.map(|v| v.id.as_str());
                match self.natives().get(id, version) {
                    None => checks.push(check(
                        "provider",
                        CheckStatus::Skip,
                        format!(
                            "no health operation for `{}` in this build; the provider was not contacted",
                            h.service
                        ),
                    )),
                    Some(connector) => {
                        probed = true;
                        let timeout = Duration::from_secs(u64::from(h.timeout_secs.clamp(1, 60)));
                        let ctx = patchbay_runtime::CallContext {
                            integration_id: id.to_owned(),
                            api_version: version.map(str::to_owned),
                            credentials: patchbay_runtime::Credentials::new(
                                resolved.as_ref().map(|r| r.values.clone()).unwrap_or_default(),
                            ),
                            config: Map::new(),
                            deadline: timeout,
                            correlation_id: None,
                            log: patchbay_runtime::CallLog::default(),
                        };
                        checks.push(match tokio::time::timeout(timeout, connector.check(&ctx)).await {
                            Err(_) => check(
                                "provider",
                                CheckStatus::Fail,
                                format!("`{}` timed out after {} s", h.service, timeout.as_secs()),
                            ),
                            Ok(Ok(health)) if health.ok => {
                                check("provider", CheckStatus::Pass, health.message)
                            }
                            Ok(Ok(health)) => check("provider", CheckStatus::Fail, health.message),
                            Ok(Err(e)) => check("provider", CheckStatus::Fail, e.to_string()),
                        });
                        let logger = self.logger(scope, id, None).await?;
                        crate::actions::write_connector_log(&logger, &ctx.log, "health.check")
                            .await?;
                    }
                }
            }
            Some(h) => checks.push(check(
                "provider",
                CheckStatus::Skip,
                format!("`{}` needs the missing credentials", h.service),
            )),
        }

        // Drift, when nothing re-verified the credentials.
        if !probed
            && let Some(previous) = current
                .as_ref()
                .and_then(|s| s.last_health.as_deref())
                .and_then(|h| serde_json::from_str::<HealthResult>(h).ok())
            && previous.status == HealthStatus::Healthy
            && let Some(changed) = self
                .credential_summary(scope, id, owner.fallback)
                .await?
                .updated_at
            && changed > previous.checked_at
        {
            checks.push(check(
                "drift",
                CheckStatus::Warn,
                "credentials changed since the last good check",
            ));
        }

        let status = overall(&checks, probed);
        let message = summary(status, &checks);
        let latency_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
        let result = HealthResult {
            status,
            message,
            latency_ms,
            checked_at: self.now(),
            api_version: effective.map(|v| v.id.clone()),
            checks,
        };
        self.record_health(scope, id, &result).await?;
        Ok(result)
    }

    /// Stores the result on the state (compare-and-set, retried), with its
    /// event, and logs it.
    async fn record_health(&self, scope: &Scope, id: &str, result: &HealthResult) -> Result<()> {
        let text = serde_json::to_string(result).map_err(|e| ServiceError::internal(&e))?;
        let payload = serde_json::json!({
            "integrationId": id,
            "status": result.status,
            "message": result.message,
            "latencyMs": result.latency_ms,
            "checkedAt": result.checked_at,
        });
        let mut tries = 0;
        loop {
            tries += 1;
            let current = self.store().get_state(scope, id).await?;
            let expect = current
                .as_ref()
                .map_or(Expect::Absent, |c| Expect::Version(c.version));
            let mut record = current.unwrap_or(StateRecord {
                scope: scope.clone(),
                integration_id: id.to_owned(),
                status: IntegrationStatus::Draft,
                api_version: None,
                enabled_at: None,
                enabled_by: None,
                last_health: None,
                last_health_at: None,
                updated_at: result.checked_at,
                version: 0,
            });
            record.last_health = Some(text.clone());
            record.last_health_at = Some(result.checked_at);
            record.version += 1;
            let changes = vec![
                Change::PutState {
                    state: record,
                    expect,
                },
                events::event(
                    scope,
                    events::HEALTH_CHECKED,
                    id,
                    &payload,
                    result.checked_at,
                ),
            ];
            match self.store().apply(changes).await {
                Ok(_) => break,
                Err(StoreError::Conflict(_)) if tries < 5 => {}
                Err(e) => return Err(e.into()),
            }
        }
        let level = match result.status {
            // Unknown is not a problem of the connection: nothing could be asked.
            HealthStatus::Healthy | HealthStatus::Unknown => LogLevel::Info,
            HealthStatus::Degraded => LogLevel::Warning,
            HealthStatus::Unhealthy => LogLevel::Error,
        };
        self.logger(scope, id, None)
            .await?
            .log(
                level,
                Entry {
                    operation: "health.check".to_owned(),
                    message: format!(
                        "health check: {} — {}",
                        result.status.as_str(),
                        result.message
                    ),
                    details: Some(serde_json::json!({ "checks": result.checks })),
                    duration_ms: Some(result.latency_ms),
                    ..Entry::default()
                },
            )
            .await
    }

    /// `POST /api/integrations/{id}/health`: enqueues a check (or joins the
    /// one already pending) and waits up to `wait` for its result.
    pub async fn request_health_check(
        &self,
        caller: &Caller,
        id: &str,
        wait: Duration,
    ) -> Result<HealthRequest> {
        let job_id = self
            .audited(caller, "integration.health", id, async {
                let scope = caller.scope_with(Feature::IntegrationsManage)?;
                let reg = self.registry();
                if reg.integration(id).is_none() {
                    return Err(ServiceError::NotFound(format!("no integration `{id}`")));
                }
                let job = health_job(scope, id);
                let enqueued = self.enqueue(vec![job]).await?;
                let job_id = enqueued[0].id();
                self.store()
                    .apply(vec![audit::success(
                        caller,
                        Some(scope),
                        "integration.health",
                        id,
                        Some(serde_json::json!({ "jobId": job_id })),
                        self.now(),
                    )])
                    .await?;
                Ok(job_id)
            })
            .await?;
        let scope = caller.scope_with(Feature::IntegrationsManage)?;
        let job = self.wait_for_job(Some(scope), job_id, wait).await?;
        let result = (job.status == patchbay_store::JobStatus::Succeeded)
            .then(|| {
                job.result
                    .as_deref()
                    .and_then(|r| serde_json::from_str(r).ok())
            })
            .flatten();
        let job = job_out(job);
        Ok(match result {
            Some(result) => HealthRequest::Done { result, job },
            None => HealthRequest::Pending { job },
        })
    }

    /// Waits until a job is finished or `wait` has passed; returns it as it is then.
    pub async fn wait_for_job(
        &self,
        scope: Option<&Scope>,
        id: i64,
        wait: Duration,
    ) -> Result<patchbay_store::JobRecord> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut finished = self.job_finishes();
        loop {
            finished.borrow_and_update();
            let job = self
                .store()
                .get_job(scope, id)
                .await?
                .ok_or_else(|| ServiceError::NotFound(format!("no job {id}")))?;
            if job.status.is_final() || tokio::time::Instant::now() >= deadline {
                return Ok(job);
            }
            // A local worker signals each finish; one in another process is
            // seen by polling.
            tokio::select! {
                _ = finished.changed() => {}
                () = tokio::time::sleep(Duration::from_millis(50)) => {}
                () = tokio::time::sleep_until(deadline) => {}
            }
        }
    }
}

/// The `health.check` job of one integration: unique per (scope, integration).
pub fn health_job(scope: &Scope, id: &str) -> JobSpec {
    let mut spec = JobSpec::new(
        JobKind::HealthCheck,
        Some(scope.clone()),
        serde_json::json!({ "integrationId": id }),
    );
    spec.unique_key = Some(format!(
        "health:{}:{}:{id}",
        scope.tenant_id, scope.organization_id
    ));
    spec
}

fn api_version_check(effective: Option<&patchbay_core::ApiVersion>, now: Timestamp) -> CheckOut {
    let Some(v) = effective else {
        return check("api_version", CheckStatus::Pass, "not versioned");
    };
    if v.is_past_sunset(now.date()) {
        return check(
            "api_version",
            CheckStatus::Fail,
            format!(
                "API version {} was sunset on {}; select a current version",
                v.id,
                v.sunset_at.map(|d| d.to_string()).unwrap_or_default()
            ),
        );
    }
    if v.status == VersionStatus::Deprecated {
        return match v.sunset_at {
            Some(d) if d <= now.plus_seconds(SUNSET_WARNING_DAYS * 86_400).date() => check(
                "api_version",
                CheckStatus::Warn,
                format!("API version {} is deprecated and is sunset on {d}", v.id),
            ),
            Some(d) => check(
                "api_version",
                CheckStatus::Pass,
                format!("API version {} is deprecated (sunset on {d})", v.id),
            ),
            None => check(
                "api_version",
                CheckStatus::Pass,
                format!("API version {} is deprecated", v.id),
            ),
        };
    }
    check(
        "api_version",
        CheckStatus::Pass,
        format!("API version {}", v.id),
    )
}

fn overall(checks: &[CheckOut], probed: bool) -> HealthStatus {
    if checks.iter().any(|c| c.status == CheckStatus::Fail) {
        HealthStatus::Unhealthy
    } else if checks.iter().any(|c| c.status == CheckStatus::Warn) {
        HealthStatus::Degraded
    } else if probed {
        HealthStatus::Healthy
    } else {
        HealthStatus::Unknown
    }
}

fn summary(status: HealthStatus, checks: &[CheckOut]) -> String {
    let pick = |s: CheckStatus| checks.iter().find(|c| c.status == s);
    match status {
        HealthStatus::Unhealthy => {
            pick(CheckStatus::Fail).map_or_else(String::new, |c| c.message.clone())
        }
        HealthStatus::Degraded => {
            pick(CheckStatus::Warn).map_or_else(String::new, |c| c.message.clone())
        }
        HealthStatus::Healthy => checks
            .iter()
            .find(|c| c.name == "provider")
            .map_or_else(|| "healthy".to_owned(), |c| c.message.clone()),
        HealthStatus::Unknown => checks
            .iter()
            .find(|c| c.name == "provider")
            .map_or_else(String::new, |c| c.message.clone()),
    }
}
