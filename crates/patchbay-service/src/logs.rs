//! The operation log (SPEC-045a §3): one shape for every integration's
//! entries, a scoped logger the rest of the code writes through, queries for
//! the API and the panel, and retention.
//!
//! * Writes are group-committed: a single writer task takes every entry
//!   waiting in its queue and stores them in one transaction, then answers
//!   each caller; while one transaction commits, the next batch gathers. Callers wait for durability, and concurrent callers share
//!   commits (thousands of entries per transaction under load).
//! * Before anything is stored, `details` and `message` are redacted: keys of
//!   the integration's secret fields, generic sensitive keys, and any value
//!   equal to one of the integration's stored secrets become `[REDACTED]`.
//! * Retention per tenant (default 30 days, errors 90); [`Services::prune_logs`]
//!   is what the scheduled worker runs.

use std::sync::Arc;

use patchbay_core::{LogLevel, Scope, TenantId, Timestamp};
use patchbay_store::{Change, LogQuery, NewLogEntry, Store, TenantSettings};
use patchbay_vault::Redactor;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::auth::{Caller, Feature};
use crate::error::{FieldError, Result, ServiceError};
use crate::{Services, audit};

pub const DEFAULT_RETENTION_DAYS: i64 = 30;
pub const DEFAULT_ERROR_RETENTION_DAYS: i64 = 90;
/// Most entries the writer stores in one transaction.
const MAX_BATCH: usize = 5_000;

struct Pending {
    entries: Vec<NewLogEntry>,
    done: oneshot::Sender<Result<(), String>>,
}

/// The group-committing writer (see the module docs).
#[derive(Debug, Clone)]
pub(crate) struct LogWriter {
    queue: mpsc::Sender<Pending>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pending({} entries)", self.entries.len())
    }
}

impl LogWriter {
    pub(crate) fn start(store: Arc<dyn Store>) -> LogWriter {
        let (queue, rx) = mpsc::channel::<Pending>(4096);
        tokio::spawn(Self::run(store, rx));
        LogWriter { queue }
    }

    /// The writer: one transaction in flight at a time; while it commits,
    /// the next batch gathers, and is written as soon as it is done (batches
    /// stay in order, so `flush` sees everything sent before it).
    async fn run(store: Arc<dyn Store>, mut rx: mpsc::Receiver<Pending>) {
        type Write = tokio::task::JoinHandle<(Vec<Pending>, Result<(), String>)>;
        let start = |mut batch: Vec<Pending>| -> Write {
            let store = store.clone();
            tokio::spawn(async move {
                let entries: Vec<NewLogEntry> = batch
                    .iter_mut()
                    .flat_map(|p| std::mem::take(&mut p.entries))
                    .collect();
                let count = entries.len();
                let result = store.append_logs(entries).await.map_err(|e| e.to_string());
                if let Err(e) = &result {
                    tracing::error!(error = %e, entries = count, "cannot store operation-log entries");
                }
                (batch, result)
            })
        };
        let mut gathering: Vec<Pending> = Vec::new();
        let mut gathered = 0;
        let mut in_flight: Option<Write> = None;
        let mut open = true;
        loop {
            if let Some(write) = in_flight.as_mut() {
                tokio::select! {
                    done = write => {
                        in_flight = None;
                        match done {
                            Ok((batch, result)) => {
                                for p in batch {
                                    let _ = p.done.send(result.clone());
                                }
                            }
                            Err(e) => tracing::error!(error = %e, "the operation-log write task failed"),
                        }
                    }
                    next = rx.recv(), if open && gathered < MAX_BATCH => match next {
                        Some(p) => {
                            gathered += p.entries.len();
                            gathering.push(p);
                        }
                        None => open = false,
                    },
                }
                continue;
            }
            if gathering.is_empty() {
                if !open {
                    return;
                }
                match rx.recv().await {
                    Some(p) => {
                        gathered += p.entries.len();
                        gathering.push(p);
                    }
                    None => return,
                }
            }
            while gathered < MAX_BATCH {
                match rx.try_recv() {
                    Ok(p) => {
                        gathered += p.entries.len();
                        gathering.push(p);
                    }
                    Err(_) => break,
                }
            }
            in_flight = Some(start(std::mem::take(&mut gathering)));
            gathered = 0;
        }
    }

    /// Stores `entries` and returns once they are committed.
    pub(crate) async fn write(&self, entries: Vec<NewLogEntry>) -> Result<()> {
        let (done, wait) = oneshot::channel();
        self.queue
            .send(Pending { entries, done })
            .await
            .map_err(|_| ServiceError::internal(&"the operation-log writer has stopped"))?;
        match wait.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(ServiceError::internal(&format!(
                "operation log not stored: {e}"
            ))),
            Err(_) => Err(ServiceError::internal(
                &"the operation-log writer has stopped",
            )),
        }
    }

    pub(crate) async fn flush(&self) -> Result<()> {
        self.write(Vec::new()).await
    }
}

/// One entry as a caller describes it.
#[derive(Debug, Clone, Default)]
pub struct Entry {
    pub operation: String,
    pub message: String,
    pub details: Option<serde_json::Value>,
    pub entity_type: Option<String>,
    pub entity_id: Option<String>,
    pub duration_ms: Option<i64>,
}

/// A logger bound to one integration, scope and correlation id (§3.4).
#[derive(Debug, Clone)]
pub struct ScopedLogger {
    services: Services,
    scope: Scope,
    integration_id: String,
    correlation_id: Option<String>,
    redactor: Arc<Redactor>,
}

impl ScopedLogger {
    pub fn correlation_id(&self) -> Option<&str> {
        self.correlation_id.as_deref()
    }

    fn entry(&self, level: LogLevel, e: Entry) -> NewLogEntry {
        let details = e.details.map(|mut d| {
            self.redactor.redact(&mut d);
            d.to_string()
        });
        NewLogEntry {
            scope: self.scope.clone(),
            integration_id: self.integration_id.clone(),
            level,
            operation: e.operation,
            message: self.redactor.redact_str(&e.message),
            details,
            correlation_id: self.correlation_id.clone(),
            entity_type: e.entity_type,
            entity_id: e.entity_id,
            duration_ms: e.duration_ms,
            created_at: self.services.now(),
        }
    }

    /// Writes one entry.
    pub async fn log(&self, level: LogLevel, e: Entry) -> Result<()> {
        self.services
            .inner
            .logs
            .write(vec![self.entry(level, e)])
            .await
    }

    /// Writes several entries in one go.
    pub async fn log_many(
        &self,
        entries: impl IntoIterator<Item = (LogLevel, Entry)>,
    ) -> Result<()> {
        let batch = entries.into_iter().map(|(l, e)| self.entry(l, e)).collect();
        self.services.inner.logs.write(batch).await
    }

    pub async fn info(
        &self,
        operation: &str,
        message: &str,
        details: Option<serde_json::Value>,
    ) -> Result<()> {
        self.log(
            LogLevel::Info,
            Entry {
                operation: operation.to_owned(),
                message: message.to_owned(),
                details,
                ..Entry::default()
            },
        )
        .await
    }

    pub async fn warning(
        &self,
        operation: &str,
        message: &str,
        details: Option<serde_json::Value>,
    ) -> Result<()> {
        self.log(
            LogLevel::Warning,
            Entry {
                operation: operation.to_owned(),
                message: message.to_owned(),
                details,
                ..Entry::default()
            },
        )
        .await
    }

    pub async fn error(
        &self,
        operation: &str,
        message: &str,
        details: Option<serde_json::Value>,
    ) -> Result<()> {
        self.log(
            LogLevel::Error,
            Entry {
                operation: operation.to_owned(),
                message: message.to_owned(),
                details,
                ..Entry::default()
            },
        )
        .await
    }

    pub async fn debug(
        &self,
        operation: &str,
        message: &str,
        details: Option<serde_json::Value>,
    ) -> Result<()> {
        self.log(
            LogLevel::Debug,
            Entry {
                operation: operation.to_owned(),
                message: message.to_owned(),
                details,
                ..Entry::default()
            },
        )
        .await
    }
}

/// Query parameters of the log API.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LogQueryIn {
    pub integration_id: Option<String>,
    pub level: Option<String>,
    pub operation: Option<String>,
    pub correlation_id: Option<String>,
    pub entity_type: Option<String>,
    pub entity_id: Option<String>,
    /// RFC 3339, inclusive.
    pub since: Option<String>,
    /// RFC 3339, exclusive.
    pub until: Option<String>,
    /// The `nextCursor` of the previous page.
    pub cursor: Option<String>,
    /// A 1-based page number, for numbered browsing (instead of `cursor`).
    pub page: Option<u32>,
    /// 1-200, default 50.
    pub limit: Option<u32>,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LogEntryOut {
    pub id: i64,
    pub integration_id: String,
    pub level: LogLevel,
    pub operation: String,
    pub message: String,
    pub details: Option<serde_json::Value>,
    pub correlation_id: Option<String>,
    pub entity_type: Option<String>,
    pub entity_id: Option<String>,
    pub duration_ms: Option<i64>,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LogPageOut {
    pub items: Vec<LogEntryOut>,
    pub total: u64,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// Retention settings of a tenant.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SettingsInOut {
    pub log_retention_days: i64,
    pub error_log_retention_days: i64,
}

impl Services {
    /// A logger for one integration in `scope`. Its redactor knows the
    /// integration's secret field keys and its stored secret values.
    pub async fn logger(
        &self,
        scope: &Scope,
        integration_id: &str,
        correlation_id: Option<String>,
    ) -> Result<ScopedLogger> {
        let reg = self.registry();
        let owner = crate::credentials::owner(&reg, integration_id)?;
        let mut secret_keys: Vec<String> = owner.schema.secret_keys().map(str::to_owned).collect();
        if let Some(b) = owner.fallback.and_then(|b| reg.bundle(b)) {
            secret_keys.extend(b.credentials.secret_keys().map(str::to_owned));
        }
        let mut secret_values = Vec::new();
        if let Some(resolved) = self.peek_credentials(scope, integration_id).await? {
            for f in owner
                .schema
                .fields
                .iter()
                .filter(|f| f.field_type.is_secret())
            {
                collect_strings(resolved.values.get(&f.key), &mut secret_values);
            }
        }
        Ok(ScopedLogger {
            services: self.clone(),
            scope: scope.clone(),
            integration_id: integration_id.to_owned(),
            correlation_id,
            redactor: Arc::new(Redactor::new(secret_keys, secret_values)),
        })
    }

    /// An info entry about a lifecycle change; failures are logged, not raised.
    pub(crate) async fn log_lifecycle(
        &self,
        scope: &Scope,
        id: &str,
        operation: &str,
        message: &str,
    ) {
        let result = async {
            self.logger(scope, id, None)
                .await?
                .info(operation, message, None)
                .await
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, integration = id, "cannot write a lifecycle log entry");
        }
    }

    /// Operation-log entries of the caller's scope, newest first.
    pub async fn query_logs(
        &self,
        caller: &Caller,
        integration: Option<&str>,
        q: LogQueryIn,
    ) -> Result<LogPageOut> {
        let scope = caller.scope_with(Feature::IntegrationsView)?;
        let mut errors = Vec::new();
        let reg = self.registry();
        let integration_id = integration.map(str::to_owned).or(q.integration_id);
        if let Some(id) = &integration_id
            && reg.entry(id).is_none()
        {
            return Err(ServiceError::NotFound(format!("no integration `{id}`")));
        }
        let level = match q.level.as_deref() {
            None | Some("" | "all") => None,
            Some(l) => LogLevel::parse(l).or_else(|| {
                errors.push(FieldError::new(
                    "level",
                    "invalid_value",
                    "must be one of debug, info, warning, error",
                ));
                None
            }),
        };
        let mut time = |name: &str, v: Option<String>| {
            v.and_then(|s| {
                Timestamp::parse_rfc3339(&s)
                    .map_err(|e| errors.push(FieldError::new(name, "invalid_timestamp", e)))
                    .ok()
            })
        };
        let since = time("since", q.since);
        let until = time("until", q.until);
        let before_id = match q.cursor.as_deref() {
            None | Some("") => None,
            Some(c) => c.parse::<i64>().ok().filter(|n| *n > 0).or_else(|| {
                errors.push(FieldError::new(
                    "cursor",
                    "invalid_cursor",
                    "use the nextCursor of a previous page",
                ));
                None
            }),
        };
        let limit = crate::error::page_limit(q.limit, &mut errors);
        let offset = match q.page {
            None => None,
            Some(0) => {
                errors.push(FieldError::new("page", "out_of_range", "pages start at 1"));
                None
            }
            Some(_) if before_id.is_some() => {
                errors.push(FieldError::new(
                    "page",
                    "conflicting",
                    "use either page or cursor, not both",
                ));
                None
            }
            Some(p) => Some((p - 1).saturating_mul(limit)),
        };
        if !errors.is_empty() {
            return Err(ServiceError::invalid("the log query is invalid", errors));
        }
        let page = self
            .store()
            .query_logs(
                scope,
                &LogQuery {
                    integration_id,
                    level,
                    operation: q.operation,
                    correlation_id: q.correlation_id,
                    entity_type: q.entity_type,
                    entity_id: q.entity_id,
                    since,
                    until,
                    before_id,
                    offset,
                    limit,
                },
            )
            .await?;
        Ok(LogPageOut {
            total: page.total,
            next_cursor: page.next_before_id.map(|n| n.to_string()),
            items: page
                .items
                .into_iter()
                .map(|e| LogEntryOut {
                    id: e.id,
                    integration_id: e.entry.integration_id,
                    level: e.entry.level,
                    operation: e.entry.operation,
                    message: e.entry.message,
                    details: e.entry.details.and_then(|d| serde_json::from_str(&d).ok()),
                    correlation_id: e.entry.correlation_id,
                    entity_type: e.entry.entity_type,
                    entity_id: e.entry.entity_id,
                    duration_ms: e.entry.duration_ms,
                    created_at: e.entry.created_at,
                })
                .collect(),
        })
    }

    async fn settings_of(&self, tenant: &TenantId) -> Result<SettingsInOut> {
        Ok(match self.store().get_tenant_settings(tenant).await? {
            Some(s) => SettingsInOut {
                log_retention_days: s.log_retention_days,
                error_log_retention_days: s.error_log_retention_days,
            },
            None => SettingsInOut {
                log_retention_days: DEFAULT_RETENTION_DAYS,
                error_log_retention_days: DEFAULT_ERROR_RETENTION_DAYS,
            },
        })
    }

    pub async fn get_settings(&self, caller: &Caller) -> Result<SettingsInOut> {
        let scope = caller.scope_with(Feature::IntegrationsView)?;
        self.settings_of(&scope.tenant_id).await
    }

    pub async fn put_settings(
        &self,
        caller: &Caller,
        input: SettingsInOut,
    ) -> Result<SettingsInOut> {
        self.audited(caller, "settings.update", "retention", async {
            let scope = caller.scope_with(Feature::IntegrationsManage)?.clone();
            let mut errors = Vec::new();
            for (name, v) in [("logRetentionDays", input.log_retention_days), ("errorLogRetentionDays", input.error_log_retention_days)] {
                if !(1..=3650).contains(&v) {
                    errors.push(FieldError::new(name, "out_of_range", "must be between 1 and 3650 days"));
                }
            }
            if !errors.is_empty() {
                return Err(ServiceError::invalid("the settings are invalid", errors));
            }
            let now = self.now();
            let record = TenantSettings { tenant_id: scope.tenant_id.clone(), log_retention_days: input.log_retention_days, error_log_retention_days: input.error_log_retention_days, updated_at: now };
            self.store()
                .apply(vec![
                    Change::PutTenantSettings(record),
                    audit::success(caller, Some(&scope), "settings.update", "retention", Some(serde_json::json!({ "logRetentionDays": input.log_retention_days, "errorLogRetentionDays": input.error_log_retention_days })), now),
                ])
                .await?;
            Ok(input)
        })
        .await
    }

    /// Deletes every tenant's entries older than its retention; returns how
    /// many were deleted. The scheduled pruning worker calls this.
    pub async fn prune_logs(&self) -> Result<u64> {
        let now = self.now();
        let mut deleted = 0;
        for t in self.store().list_tenants().await? {
            let s = self.settings_of(&t.id).await?;
            let cutoff = now.plus_seconds(-s.log_retention_days * 86_400);
            let error_cutoff = now.plus_seconds(-s.error_log_retention_days * 86_400);
            deleted += self.store().prune_logs(&t.id, cutoff, error_cutoff).await?;
        }
        Ok(deleted)
    }
}

fn collect_strings(v: Option<&serde_json::Value>, out: &mut Vec<String>) {
    match v {
        Some(serde_json::Value::String(s)) => out.push(s.clone()),
        Some(serde_json::Value::Array(a)) => a.iter().for_each(|x| collect_strings(Some(x), out)),
        Some(serde_json::Value::Object(o)) => {
            o.values().for_each(|x| collect_strings(Some(x), out));
        }
        _ => {}
    }
}
