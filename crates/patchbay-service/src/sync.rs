//! Data sync (SPEC-045 "Data Sync — Delta Streaming"): runs that pull a
//! stream from a connector batch by batch into Patchbay's records store,
//! resumable, with per-item failures counted and logged.
//!
//! The engine ([`Services::execute_sync_run`], run by the `sync.run` job):
//! 1. reads the stream's cursor, asks the connector for the next batch
//!    (`read(stream, cursor)`);
//! 2. applies the stream's field mapping to each record (or takes it as is,
//!    its id from `id`); a record that fails (unreadable in the source, no
//!    id, a cast that fails) is counted `failed` and logged with its entity
//!    type and id, and the run goes on;
//! 3. commits the records, their id mappings, the run's counters and the new
//!    cursor in one transaction (`SyncStore::commit_sync_batch`, which moves
//!    the cursor by compare-and-set), so a crash at any point loses nothing
//!    and duplicates nothing: the next attempt reads again from the last
//!    committed cursor;
//! 4. stops when the connector says the stream is exhausted (no next cursor,
//!    or an empty batch), when the run is cancelled (checked after every
//!    batch), or on an error: a connector's rate limit waits out its
//!    retry-after and asks again; a transient error (or a lost process) lets
//!    the job retry, resuming from the cursor; any other error fails the run.
//!
//! Only one run per (scope, integration, stream) is queued or running at a
//! time (the store refuses a second: 409 `sync_run_active`), import or
//! export.
//!
//! **Exports** ([`Services::start_export`], `POST /api/sync/{id}/export`):
//! the host application hands over up to [`MAX_EXPORT_RECORDS`] records,
//! each with its own id; they are stored with a new `export` run in one
//! transaction before the call answers (so an accepted export is never
//! lost), and the same `sync.run` job writes them through the connector's
//! `write` in batches of [`EXPORT_BATCH`]. Each written batch commits the
//! run's counters (created/updated from what the connector reports, failed
//! for the records it refused — each logged with the entity type and the
//! host's id), the id mappings (host id ↔ provider id, when the connector
//! reports one) and the removal of the written items in one transaction.
//! Delivery to the provider is at least once: a process that dies after
//! the provider accepted a batch and before the commit writes that batch
//! again when the run resumes, so connectors write idempotently (upserts by
//! key). Records are written as given: field mappings apply to imports.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use patchbay_core::field_mapping::{FieldMapping, FieldMappingSpec};
use patchbay_core::{LogLevel, RateLimit, Scope, Timestamp};
use patchbay_runtime::ConnectorError;
use patchbay_store::{
    ExportCommit, ExportItem, IdMapping, IncomingRecord, NewSyncRun, PendingExport, StoreError,
    SyncBatch, SyncCounters, SyncDirection, SyncRecordRow, SyncRunQuery, SyncRunRecord, SyncStatus,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::auth::{Caller, Feature};
use crate::error::{FieldError, Result, ServiceError};
use crate::jobs::{JobKind, JobSpec};
use crate::logs::{Entry, ScopedLogger};
use crate::worker::{JobContext, JobError};
use crate::{Services, actions, events};

/// How long one `read` may take.
pub const READ_DEADLINE: Duration = Duration::from_secs(60);
/// The longest a run waits out one rate-limit answer before asking again.
pub const MAX_RATE_LIMIT_WAIT: Duration = Duration::from_secs(60);
/// Item failures logged one by one per run; past it, one line per batch.
pub const LOGGED_FAILURES_PER_RUN: i64 = 1000;

/// How long one `write` may take.
pub const WRITE_DEADLINE: Duration = Duration::from_secs(60);
/// Records one export call may hand over.
pub const MAX_EXPORT_RECORDS: usize = 10_000;
/// The largest record an export may hold (its JSON text).
pub const MAX_EXPORT_RECORD_BYTES: usize = 1 << 20;
/// Records written through the connector per `write` call.
pub const EXPORT_BATCH: u32 = 500;

/// The event a finished run emits.
pub const RUN_COMPLETED: &str = "data_sync.run.completed";

/// A run as the API shows it.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncRunOut {
    pub id: i64,
    pub integration_id: String,
    pub stream: String,
    pub direction: SyncDirection,
    pub status: SyncStatus,
    pub counters: SyncCounters,
    pub total: Option<i64>,
    pub cursor_start: Option<String>,
    pub cursor_end: Option<String>,
    pub error: Option<String>,
    pub job_id: Option<i64>,
    pub cancel_requested: bool,
    pub created_at: Timestamp,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    pub updated_at: Timestamp,
}

impl From<SyncRunRecord> for SyncRunOut {
    fn from(r: SyncRunRecord) -> SyncRunOut {
        SyncRunOut {
            id: r.id,
            integration_id: r.integration_id,
            stream: r.stream,
            direction: r.direction,
            status: r.status,
            counters: r.counters,
            total: r.total,
            cursor_start: r.cursor_start,
            cursor_end: r.cursor_end,
            error: r.error,
            job_id: r.job_id,
            cancel_requested: r.cancel_requested,
            created_at: r.created_at,
            started_at: r.started_at,
            finished_at: r.finished_at,
            updated_at: r.updated_at,
        }
    }
}

/// What run to start.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StartSyncIn {
    pub stream: String,
}

/// Records the host application exports through a connector.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ExportIn {
    /// The stream to write (one the integration declares).
    pub stream: String,
    /// 1 to 10,000 records, written in this order.
    pub records: Vec<ExportRecordIn>,
}

/// One exported record.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ExportRecordIn {
    /// The host application's id for the record (1-200 characters): the
    /// local side of its id mapping, and how failures name it.
    pub id: String,
    /// The record, a JSON object, as the connector's `write` receives it.
    pub data: Value,
}

/// Which runs to list.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SyncRunsIn {
    pub integration: Option<String>,
    pub stream: Option<String>,
    pub status: Option<String>,
    /// The `nextBefore` of the previous page.
    pub before: Option<i64>,
    /// 1-200, default 50.
    pub limit: Option<u32>,
}

/// A page of runs, newest first.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncRunPage {
    pub items: Vec<SyncRunOut>,
    /// Pass as `before` for the next page; `null` on the last.
    pub next_before: Option<i64>,
}

/// Which records to pull.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RecordsIn {
    /// The stream (required).
    pub stream: Option<String>,
    /// The `nextAfter` of the previous page (a change sequence number); 0 or
    /// absent: from the first change.
    pub after: Option<i64>,
    /// 1-1000, default 100.
    pub limit: Option<u32>,
}

/// One record of the records store.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecordOut {
    pub external_id: String,
    pub local_id: String,
    /// Its change sequence number.
    pub seq: i64,
    /// `created` (first stored), `updated`, or `deleted` (a marker).
    pub change: &'static str,
    pub data: Value,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A page of changes, oldest first.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecordPage {
    pub items: Vec<RecordOut>,
    /// Pass as `after` for the next page (the last change's `seq`; the same
    /// `after` again when there is nothing new).
    pub next_after: i64,
    /// Whether more changes follow now.
    pub has_more: bool,
}

/// A stream's field mapping.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MappingOut {
    pub integration_id: String,
    pub stream: String,
    /// `null`: none set; records are stored as read, their id from `id`.
    pub mapping: Option<FieldMappingSpec>,
    pub updated_at: Option<Timestamp>,
}

/// Records mapped by a mapping, for a preview.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PreviewOut {
    pub items: Vec<PreviewItem>,
}

/// One previewed record.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PreviewItem {
    pub external_id: Option<String>,
    /// The mapped record, when it maps.
    pub data: Option<Value>,
    pub deleted: bool,
    /// Why it does not map.
    pub error: Option<String>,
}

/// A sample to preview a mapping on: given records, or (none given) the
/// first batch the connector reads.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PreviewIn {
    /// The mapping to try (default: the stream's stored one).
    pub mapping: Option<Value>,
    pub records: Option<Vec<Value>>,
    /// 1-50, default 10.
    pub limit: Option<u32>,
}

fn hash_hex(data: &str) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(data.as_bytes());
    let mut out = String::with_capacity(32);
    for b in &digest[..16] {
        out.push(char::from_digit(u32::from(b >> 4), 16).unwrap_or('0'));
        out.push(char::from_digit(u32::from(b & 0xf), 16).unwrap_or('0'));
    }
    out
}

fn parse_mapping(text: &str) -> Result<FieldMapping> {
    FieldMapping::parse(text).map_err(|problems| {
        ServiceError::invalid(
            "the field mapping is not valid",
            problems
                .into_iter()
                .map(|(path, message)| {
                    let field = if path.is_empty() {
                        "mapping".to_owned()
                    } else {
                        format!("mapping/{path}")
                    };
                    FieldError::new(field, "invalid_mapping", message)
                })
                .collect(),
        )
    })
}

/// A store error creating a run, with the store's one-active-run refusal
/// as 409 `sync_run_active`.
fn active_run(e: StoreError, id: &str, stream: &str) -> ServiceError {
    match e {
        StoreError::Conflict(_) => ServiceError::conflict(
            "sync_run_active",
            format!("a run of `{id}` stream `{stream}` is already queued or running"),
        ),
        other => other.into(),
    }
}

/// The sync job of run `run_id`.
pub(crate) fn sync_job(scope: &Scope, run_id: i64) -> JobSpec {
    let mut spec = JobSpec::new(
        JobKind::SyncRun,
        Some(scope.clone()),
        serde_json::json!({ "runId": run_id }),
    );
    spec.unique_key = Some(format!("sync.run:{run_id}"));
    spec
}

/// Token buckets per (tenant, organization, integration): the manifest's
/// `rate_limit`, honoured by this process's sync runs before every call to
/// the connector. Per process, like the action limit: several servers each
/// keep to the rate (documented in ARCHITECTURE).
#[derive(Debug, Default)]
pub(crate) struct Buckets {
    inner: std::sync::Mutex<HashMap<(String, String, String), Bucket>>,
}

#[derive(Debug)]
struct Bucket {
    /// May go below zero: calls that reserved a token and are waiting for it.
    tokens: f64,
    at: std::time::Instant,
}

impl Buckets {
    /// Takes a token for one call, waiting until the bucket has one.
    pub(crate) async fn acquire(&self, scope: &Scope, integration: &str, limit: RateLimit) {
        let rate = f64::from(limit.requests_per_second.max(1));
        let burst = f64::from(limit.burst.unwrap_or(limit.requests_per_second).max(1));
        let wait = {
            let mut map = self
                .inner
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let now = std::time::Instant::now();
            let b = map
                .entry((
                    scope.tenant_id.as_str().to_owned(),
                    scope.organization_id.as_str().to_owned(),
                    integration.to_owned(),
                ))
                .or_insert(Bucket {
                    tokens: burst,
                    at: now,
                });
            b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * rate).min(burst);
            b.at = now;
            b.tokens -= 1.0;
            if b.tokens >= 0.0 {
                Duration::ZERO
            } else {
                Duration::from_secs_f64(-b.tokens / rate)
            }
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

/// The read of the next batch, running while the current one commits;
/// stopped when dropped unused.
struct Prefetch {
    /// The cursor it reads from.
    cursor: Option<String>,
    handle: Option<tokio::task::JoinHandle<ReadOutcome>>,
}

/// A read batch, mapped and hashed, ready to commit.
struct Prepared {
    records: Vec<IncomingRecord>,
    /// (external id, position, why) of the records that failed, in the
    /// source or the mapping.
    failures: Vec<(Option<String>, String, String)>,
    next_cursor: Option<String>,
    total: Option<u64>,
    /// The stream has nothing more for now: this is the run's last batch.
    exhausted: bool,
    /// Records repeated within the batch (the last version kept), counted skipped.
    duplicates: usize,
}

type ReadOutcome =
    std::result::Result<std::result::Result<Prepared, ConnectorError>, tokio::time::error::Elapsed>;

/// Reads the batch at `cursor` and maps it: the work of one batch that
/// does not touch the database, run while the previous batch commits.
async fn read_and_map(
    connector: Arc<dyn patchbay_runtime::Connector>,
    ctx: patchbay_runtime::CallContext,
    stream: String,
    cursor: Option<String>,
    mapping: Arc<FieldMapping>,
) -> ReadOutcome {
    let batch = match tokio::time::timeout(
        READ_DEADLINE,
        connector.read(&ctx, &stream, cursor.as_deref()),
    )
    .await?
    {
        Ok(b) => b,
        Err(e) => return Ok(Err(e)),
    };
    // Mapping, serializing and hashing thousands of records is CPU work with
    // no await in it: on the blocking pool, so the runtime's workers stay
    // free to drive the database connection committing the previous batch.
    match tokio::task::spawn_blocking(move || map_batch(batch, &mapping)).await {
        Ok(prepared) => Ok(Ok(prepared)),
        Err(e) => Ok(Err(ConnectorError::transient(format!(
            "mapping the batch failed: {e}"
        )))),
    }
}

/// Maps a read batch (see [`read_and_map`]).
fn map_batch(batch: patchbay_runtime::Batch, mapping: &FieldMapping) -> Prepared {
    let exhausted =
        batch.next_cursor.is_none() || (batch.records.is_empty() && batch.failures.is_empty());
    let read_records = batch.records.len();
    // Map; keep the last version of an id repeated within the batch.
    let mut records: Vec<IncomingRecord> = Vec::with_capacity(read_records);
    let mut at: HashMap<String, usize> = HashMap::with_capacity(read_records);
    let mut failures: Vec<(Option<String>, String, String)> = batch
        .failures
        .into_iter()
        .map(|f| (f.external_id, f.position, f.message))
        .collect();
    let mut mapping_failures = 0;
    for (n, record) in batch.records.into_iter().enumerate() {
        match mapping.apply_owned(record) {
            Ok(m) => {
                let data = m.data.to_string();
                let incoming = IncomingRecord {
                    hash: hash_hex(&data),
                    external_id: m.external_id,
                    data,
                    deleted: m.deleted,
                };
                if let Some(&i) = at.get(&incoming.external_id) {
                    records[i] = incoming;
                } else {
                    at.insert(incoming.external_id.clone(), records.len());
                    records.push(incoming);
                }
            }
            Err(e) => {
                mapping_failures += 1;
                failures.push((
                    e.external_id.clone(),
                    format!("record {} of the batch", n + 1),
                    e.to_string(),
                ));
            }
        }
    }
    Prepared {
        duplicates: read_records - records.len() - mapping_failures,
        records,
        failures,
        next_cursor: batch.next_cursor,
        total: batch.total,
        exhausted,
    }
}

impl Drop for Prefetch {
    fn drop(&mut self) {
        if let Some(h) = &self.handle {
            h.abort();
        }
    }
}

/// Why the current attempt stops.
enum Stop {
    /// Finished, one way or another (recorded).
    Done,
    /// Try again later (the job retries; the run resumes from its cursor).
    Retry(String),
    /// The run failed.
    Fail(String),
}

impl Services {
    /// Checks that `id` is an integration of the catalog with stream
    /// `stream`. A data-sync integration that declares no streams (an
    /// Airbyte source: its streams are discovered from the source) takes
    /// any well-formed stream name; its connector refuses one it does not
    /// have when the run reads it.
    pub(crate) fn sync_target(&self, id: &str, stream: &str) -> Result<()> {
        let reg = self.registry();
        let integration = reg
            .integration(id)
            .ok_or_else(|| ServiceError::NotFound(format!("no integration `{id}`")))?;
        let discovered = integration.capabilities.streams.is_empty()
            && integration.hub == patchbay_core::Hub::DataSync;
        if discovered {
            let well_formed = !stream.is_empty()
                && stream.len() <= 200
                && stream
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
            if !well_formed {
                return Err(ServiceError::NotFound(format!(
                    "`{id}` has no stream `{stream}`: stream names are 1 to 200 letters, digits, `_`, `-` or `.`"
                )));
            }
            return Ok(());
        }
        if !integration.capabilities.streams.iter().any(|s| s == stream) {
            return Err(ServiceError::NotFound(format!(
                "`{id}` has no stream `{stream}`; its streams: {}",
                if integration.capabilities.streams.is_empty() {
                    "none".to_owned()
                } else {
                    integration.capabilities.streams.join(", ")
                }
            )));
        }
        Ok(())
    }

    /// Queues an import of `input.stream` of integration `id`.
    pub async fn start_sync(
        &self,
        caller: &Caller,
        id: &str,
        input: StartSyncIn,
    ) -> Result<SyncRunOut> {
        let target = format!("{id}/{}", input.stream);
        self.audited(caller, "sync.run.start", &target, async {
            let scope = caller.scope_with(Feature::IntegrationsManage)?;
            self.sync_target(id, &input.stream)?;
            self.enabled_state(scope, id, "syncing it").await?;
            let run = self
                .store()
                .create_sync_run(
                    NewSyncRun {
                        scope: scope.clone(),
                        integration_id: id.to_owned(),
                        stream: input.stream.clone(),
                        direction: SyncDirection::Import,
                    },
                    self.now(),
                )
                .await
                .map_err(|e| active_run(e, id, &input.stream))?;
            self.queue_run(scope, run).await
        })
        .await
    }

    /// Queues an export of `input.records` to `input.stream` of integration
    /// `id` (see the module documentation).
    pub async fn start_export(
        &self,
        caller: &Caller,
        id: &str,
        input: ExportIn,
    ) -> Result<SyncRunOut> {
        let target = format!("{id}/{}", input.stream);
        self.audited(caller, "sync.export.start", &target, async {
            let scope = caller.scope_with(Feature::IntegrationsManage)?;
            self.sync_target(id, &input.stream)?;
            let items = export_items(input.records)?;
            let writes = self.registry().integration(id).is_some_and(|i| {
                !matches!(i.capabilities.direction, patchbay_core::Direction::Inbound)
            });
            if !writes {
                return Err(ServiceError::conflict(
                    "sync_export_unsupported",
                    format!("`{id}` only imports (its direction is inbound): it cannot export"),
                ));
            }
            self.enabled_state(scope, id, "exporting through it")
                .await?;
            let run = self
                .store()
                .create_export_run(
                    NewSyncRun {
                        scope: scope.clone(),
                        integration_id: id.to_owned(),
                        stream: input.stream.clone(),
                        direction: SyncDirection::Export,
                    },
                    items,
                    self.now(),
                )
                .await
                .map_err(|e| active_run(e, id, &input.stream))?;
            self.queue_run(scope, run).await
        })
        .await
    }

    /// Queues the job of a created run and records it on the run.
    async fn queue_run(&self, scope: &Scope, run: SyncRunRecord) -> Result<SyncRunOut> {
        let job = self.enqueue(vec![sync_job(scope, run.id)]).await?;
        let job_id = job.first().map(|j| j.id());
        if let Some(job_id) = job_id {
            self.store().set_sync_run_job(scope, run.id, job_id).await?;
        }
        let mut out = SyncRunOut::from(run);
        out.job_id = job_id;
        Ok(out)
    }

    /// One run of the caller's scope.
    pub async fn sync_run(&self, caller: &Caller, id: i64) -> Result<SyncRunOut> {
        let scope = caller.scope_with(Feature::IntegrationsView)?;
        self.store()
            .get_sync_run(scope, id)
            .await?
            .map(SyncRunOut::from)
            .ok_or_else(|| ServiceError::NotFound(format!("no sync run {id}")))
    }

    /// Runs of the caller's scope, newest first.
    pub async fn list_sync_runs(&self, caller: &Caller, q: SyncRunsIn) -> Result<SyncRunPage> {
        let scope = caller.scope_with(Feature::IntegrationsView)?;
        let limit = q.limit.unwrap_or(50);
        if !(1..=200).contains(&limit) {
            return Err(ServiceError::invalid(
                "the query is not valid",
                vec![FieldError::new(
                    "limit",
                    "out_of_range",
                    "expected 1 to 200",
                )],
            ));
        }
        let status = match q.status.as_deref() {
            None => None,
            Some(s) => Some(SyncStatus::parse(s).ok_or_else(|| {
                ServiceError::invalid(
                    "the query is not valid",
                    vec![FieldError::new(
                        "status",
                        "invalid_choice",
                        "expected queued, running, succeeded, failed or cancelled",
                    )],
                )
            })?),
        };
        let rows = self
            .store()
            .list_sync_runs(
                scope,
                &SyncRunQuery {
                    integration_id: q.integration,
                    stream: q.stream,
                    status,
                    before_id: q.before,
                    limit: limit + 1,
                },
            )
            .await?;
        let more = rows.len() > limit as usize;
        let items: Vec<SyncRunOut> = rows
            .into_iter()
            .take(limit as usize)
            .map(SyncRunOut::from)
            .collect();
        Ok(SyncRunPage {
            next_before: if more {
                items.last().map(|r| r.id)
            } else {
                None
            },
            items,
        })
    }

    /// Asks a run to stop (a queued one stops at once).
    pub async fn cancel_sync_run(&self, caller: &Caller, id: i64) -> Result<SyncRunOut> {
        self.audited(caller, "sync.run.cancel", &id.to_string(), async {
            let scope = caller.scope_with(Feature::IntegrationsManage)?;
            let run = self
                .store()
                .request_sync_cancel(scope, id, self.now())
                .await?
                .ok_or_else(|| ServiceError::NotFound(format!("no sync run {id}")))?;
            if !run.status.is_active() && run.status != SyncStatus::Cancelled {
                return Err(ServiceError::conflict(
                    "sync_run_finished",
                    format!("run {id} already finished ({})", run.status.as_str()),
                ));
            }
            Ok(SyncRunOut::from(run))
        })
        .await
    }

    /// Changes of a stream's records after change `after`, oldest first.
    pub async fn sync_records(
        &self,
        caller: &Caller,
        id: &str,
        q: RecordsIn,
    ) -> Result<RecordPage> {
        let scope = caller.scope_with(Feature::IntegrationsView)?;
        let Some(stream) = q.stream.as_deref() else {
            return Err(ServiceError::invalid(
                "the query is not valid",
                vec![FieldError::new(
                    "stream",
                    "required",
                    "name the stream to read",
                )],
            ));
        };
        self.sync_target(id, stream)?;
        let limit = q.limit.unwrap_or(100);
        let after = q.after.unwrap_or(0);
        let mut errors = Vec::new();
        if !(1..=1000).contains(&limit) {
            errors.push(FieldError::new(
                "limit",
                "out_of_range",
                "expected 1 to 1000",
            ));
        }
        if after < 0 {
            errors.push(FieldError::new(
                "after",
                "out_of_range",
                "expected 0 or more",
            ));
        }
        if !errors.is_empty() {
            return Err(ServiceError::invalid("the query is not valid", errors));
        }
        let rows = self
            .store()
            .list_sync_records(scope, id, stream, after, limit + 1)
            .await?;
        let has_more = rows.len() > limit as usize;
        let items = rows
            .into_iter()
            .take(limit as usize)
            .map(record_out)
            .collect::<Result<Vec<_>>>()?;
        Ok(RecordPage {
            next_after: items.last().map_or(after, |r| r.seq),
            has_more,
            items,
        })
    }

    /// The stream's field mapping.
    pub async fn field_mapping(
        &self,
        caller: &Caller,
        id: &str,
        stream: &str,
    ) -> Result<MappingOut> {
        let scope = caller.scope_with(Feature::IntegrationsView)?;
        self.sync_target(id, stream)?;
        self.mapping_out(scope, id, stream).await
    }

    async fn mapping_out(&self, scope: &Scope, id: &str, stream: &str) -> Result<MappingOut> {
        let stored = self.store().get_field_mapping(scope, id, stream).await?;
        let (mapping, updated_at) = match stored {
            Some((text, at)) => (Some(parse_mapping(&text)?.spec().clone()), Some(at)),
            None => (None, None),
        };
        Ok(MappingOut {
            integration_id: id.to_owned(),
            stream: stream.to_owned(),
            mapping,
            updated_at,
        })
    }

    /// Sets (or, with `null`, removes) the stream's field mapping. The next
    /// batch of a running import uses it.
    pub async fn put_field_mapping(
        &self,
        caller: &Caller,
        id: &str,
        stream: &str,
        mapping: Value,
    ) -> Result<MappingOut> {
        let target = format!("{id}/{stream}");
        self.audited(caller, "sync.mapping.update", &target, async {
            let scope = caller.scope_with(Feature::IntegrationsManage)?;
            self.sync_target(id, stream)?;
            let text = if mapping.is_null() {
                None
            } else {
                let text = mapping.to_string();
                parse_mapping(&text)?;
                Some(text)
            };
            self.store()
                .put_field_mapping(scope, id, stream, text, self.now())
                .await?;
            self.mapping_out(scope, id, stream).await
        })
        .await
    }

    /// Maps sample records with a mapping (given, or the stored one): the
    /// given records, or the first batch the connector reads.
    pub async fn preview_field_mapping(
        &self,
        caller: &Caller,
        id: &str,
        stream: &str,
        input: PreviewIn,
    ) -> Result<PreviewOut> {
        let scope = caller.scope_with(Feature::IntegrationsManage)?;
        self.sync_target(id, stream)?;
        let limit = input.limit.unwrap_or(10);
        if !(1..=50).contains(&limit) {
            return Err(ServiceError::invalid(
                "the preview is not valid",
                vec![FieldError::new("limit", "out_of_range", "expected 1 to 50")],
            ));
        }
        let mapping = match input.mapping {
            Some(m) if !m.is_null() => parse_mapping(&m.to_string())?,
            _ => match self.store().get_field_mapping(scope, id, stream).await? {
                Some((text, _)) => parse_mapping(&text)?,
                None => FieldMapping::default(),
            },
        };
        let records = match input.records {
            Some(r) => r,
            None => {
                self.read_stream(caller, id, stream, crate::streams::ReadIn::default())
                    .await?
                    .records
            }
        };
        let items = records
            .iter()
            .take(limit as usize)
            .map(|r| match mapping.apply(r) {
                Ok(m) => PreviewItem {
                    external_id: Some(m.external_id),
                    data: Some(m.data),
                    deleted: m.deleted,
                    error: None,
                },
                Err(e) => PreviewItem {
                    external_id: e.external_id.clone(),
                    data: None,
                    deleted: false,
                    error: Some(e.to_string()),
                },
            })
            .collect();
        Ok(PreviewOut { items })
    }

    /// Runs (or resumes) import run `run_id`: the `sync.run` job.
    pub(crate) async fn execute_sync_run(
        &self,
        scope: &Scope,
        run_id: i64,
        job: &JobContext,
    ) -> std::result::Result<Option<Value>, JobError> {
        let last_attempt = job.attempt >= job.max_attempts;
        let Some(run) = self
            .store()
            .start_sync_run(scope, run_id, self.now())
            .await
            .map_err(ServiceError::from)?
        else {
            // Finished or cancelled meanwhile: nothing to do.
            return Ok(Some(
                serde_json::json!({ "runId": run_id, "skipped": "not active" }),
            ));
        };
        let correlation_id = format!("sync_{run_id}");
        let logger = self
            .logger(scope, &run.integration_id, Some(correlation_id.clone()))
            .await?;
        if job.attempt > 1 {
            self.sync_log(
                &logger,
                LogLevel::Info,
                &run,
                format!(
                    "resuming run {run_id} (attempt {}) from cursor {}",
                    job.attempt,
                    run.cursor_end.as_deref().unwrap_or("(start)")
                ),
            )
            .await?;
        }
        let work = match run.direction {
            SyncDirection::Import => {
                self.import_batches(scope, &run, &logger, &correlation_id)
                    .await
            }
            SyncDirection::Export => {
                self.export_batches(scope, &run, &logger, &correlation_id)
                    .await
            }
        };
        let stop = match work {
            Ok(stop) => stop,
            Err(e) => Stop::Retry(e.to_string()),
        };
        match stop {
            Stop::Done => {}
            Stop::Retry(reason) if !last_attempt => {
                self.sync_log(
                    &logger,
                    LogLevel::Warning,
                    &run,
                    format!("run {run_id} paused; it resumes from its cursor: {reason}"),
                )
                .await?;
                return Err(JobError::Retry(reason));
            }
            Stop::Retry(reason) | Stop::Fail(reason) => {
                self.end_run(scope, &run, &logger, SyncStatus::Failed, Some(reason))
                    .await?;
            }
        }
        let run = self
            .store()
            .get_sync_run(scope, run_id)
            .await
            .map_err(ServiceError::from)?;
        Ok(run.map(
            |r| serde_json::json!({ "runId": r.id, "status": r.status, "counters": r.counters }),
        ))
    }

    async fn sync_log(
        &self,
        logger: &ScopedLogger,
        level: LogLevel,
        run: &SyncRunRecord,
        message: String,
    ) -> Result<()> {
        logger
            .log(
                level,
                Entry {
                    operation: format!("sync.{}", run.stream),
                    message,
                    ..Entry::default()
                },
            )
            .await
    }

    /// A connector's rate-limited answer: logs it and waits out its
    /// retry-after (1 s when it gives none, [`MAX_RATE_LIMIT_WAIT`] at most).
    async fn wait_out_rate_limit(
        &self,
        logger: &ScopedLogger,
        run: &SyncRunRecord,
        message: &str,
        retry_after_ms: Option<u64>,
    ) -> Result<()> {
        let wait = retry_after_ms
            .map_or(Duration::from_secs(1), Duration::from_millis)
            .min(MAX_RATE_LIMIT_WAIT);
        self.sync_log(
            logger,
            LogLevel::Warning,
            run,
            format!(
                "the provider is rate limiting ({message}); waiting {} ms",
                wait.as_millis()
            ),
        )
        .await?;
        tokio::time::sleep(wait).await;
        Ok(())
    }

    /// Finishes a run, logs it and emits `data_sync.run.completed`.
    async fn end_run(
        &self,
        scope: &Scope,
        run: &SyncRunRecord,
        logger: &ScopedLogger,
        status: SyncStatus,
        error: Option<String>,
    ) -> Result<()> {
        let now = self.now();
        if !self
            .store()
            .finish_sync_run(scope, run.id, status, error.clone(), now)
            .await?
        {
            return Ok(());
        }
        self.notify_sync_progress();
        let done = self.store().get_sync_run(scope, run.id).await?;
        let counters = done.as_ref().map(|r| r.counters).unwrap_or_default();
        let level = if status == SyncStatus::Failed {
            LogLevel::Error
        } else {
            LogLevel::Info
        };
        logger
            .log(
                level,
                Entry {
                    operation: format!("sync.{}", run.stream),
                    message: format!(
                        "run {} {}: {} processed, {} created, {} updated, {} unchanged, {} failed{}",
                        run.id,
                        status.as_str(),
                        counters.processed,
                        counters.created,
                        counters.updated,
                        counters.unchanged,
                        counters.failed,
                        error.as_deref().map(|e| format!(" — {e}")).unwrap_or_default()
                    ),
                    details: Some(serde_json::json!({ "runId": run.id, "counters": counters })),
                    duration_ms: done.as_ref().and_then(|r| {
                        r.started_at
                            .zip(r.finished_at)
                            .map(|(s, f)| (f.as_micros() - s.as_micros()) / 1000)
                    }),
                    ..Entry::default()
                },
            )
            .await?;
        self.store()
            .apply(vec![events::event(
                scope,
                RUN_COMPLETED,
                &run.integration_id,
                &serde_json::json!({
                    "runId": run.id,
                    "integrationId": run.integration_id,
                    "stream": run.stream,
                    "direction": run.direction,
                    "status": status,
                    "counters": counters,
                    "error": error,
                }),
                now,
            )])
            .await?;
        Ok(())
    }

    /// Pulls, maps and commits batches until the run stops.
    async fn import_batches(
        &self,
        scope: &Scope,
        run: &SyncRunRecord,
        logger: &ScopedLogger,
        correlation_id: &str,
    ) -> Result<Stop> {
        let id = run.integration_id.as_str();
        let stream = run.stream.as_str();
        let reg = self.registry();
        if reg.integration(id).is_none() {
            return Ok(Stop::Fail(format!("`{id}` is no longer in the catalog")));
        }
        let Ok(state) = self.enabled_state(scope, id, "syncing it").await else {
            self.end_run(
                scope,
                run,
                logger,
                SyncStatus::Failed,
                Some(format!("`{id}` is not enabled")),
            )
            .await?;
            return Ok(Stop::Done);
        };
        let (connector, ctx) = self
            .prepare_call(scope, &reg, id, &state, READ_DEADLINE, correlation_id)
            .await?;
        let mut logged_failures = run.counters.failed;
        let rate_limit = reg.integration(id).and_then(|i| i.rate_limit);
        // The stream's cursor as this run last committed it (read from the
        // store before the first batch), and the next batch, read while the
        // current one commits: the connector and the database work at once.
        let mut known_cursor: Option<Option<String>> = None;
        let mut prefetch: Option<Prefetch> = None;
        loop {
            // The mapping is read for each batch: a change applies to the
            // next batch read (the one after the batch being committed).
            let mapping = match self.store().get_field_mapping(scope, id, stream).await? {
                Some((text, _)) => match FieldMapping::parse(&text) {
                    Ok(m) => Arc::new(m),
                    Err(_) => {
                        return Ok(Stop::Fail(
                            "the stream's field mapping is not valid".to_owned(),
                        ));
                    }
                },
                None => Arc::new(FieldMapping::default()),
            };
            let cursor = match &known_cursor {
                Some(c) => c.clone(),
                None => self
                    .store()
                    .get_sync_cursor(scope, id, stream)
                    .await?
                    .and_then(|c| c.cursor),
            };
            let read = match prefetch.take() {
                Some(mut p) if p.cursor == cursor => match p.handle.take() {
                    Some(h) => match h.await {
                        Ok(r) => r,
                        Err(e) => return Ok(Stop::Retry(format!("the read task failed: {e}"))),
                    },
                    None => return Ok(Stop::Retry("the read task was lost".to_owned())),
                },
                _ => {
                    if let Some(limit) = rate_limit {
                        self.sync_buckets().acquire(scope, id, limit).await;
                    }
                    read_and_map(
                        connector.clone(),
                        ctx.clone(),
                        stream.to_owned(),
                        cursor.clone(),
                        mapping.clone(),
                    )
                    .await
                }
            };
            actions::write_connector_log(logger, &ctx.log, &format!("sync.{stream}")).await?;
            let batch = match read {
                Err(_) => {
                    return Ok(Stop::Retry(format!(
                        "the connector did not answer within {} s",
                        READ_DEADLINE.as_secs()
                    )));
                }
                Ok(Ok(batch)) => batch,
                Ok(Err(ConnectorError::RateLimited {
                    message,
                    retry_after_ms,
                })) => {
                    self.wait_out_rate_limit(logger, run, &message, retry_after_ms)
                        .await?;
                    continue;
                }
                Ok(Err(e)) if e.is_retryable() => return Ok(Stop::Retry(e.to_string())),
                Ok(Err(e)) => return Ok(Stop::Fail(e.to_string())),
            };
            let Prepared {
                records,
                failures,
                next_cursor,
                total,
                exhausted,
                duplicates,
            } = batch;
            if !exhausted {
                // The next batch is read and mapped while this one commits.
                if let Some(limit) = rate_limit {
                    self.sync_buckets().acquire(scope, id, limit).await;
                }
                prefetch = Some(Prefetch {
                    cursor: next_cursor.clone(),
                    handle: Some(tokio::spawn(read_and_map(
                        connector.clone(),
                        ctx.clone(),
                        stream.to_owned(),
                        next_cursor.clone(),
                        mapping.clone(),
                    ))),
                });
            }
            let failed = i64::try_from(failures.len()).unwrap_or(i64::MAX);
            for (external_id, position, message) in &failures {
                if logged_failures < LOGGED_FAILURES_PER_RUN {
                    logger
                        .log(
                            LogLevel::Warning,
                            Entry {
                                operation: format!("sync.{stream}"),
                                message: format!("{position} skipped: {message}"),
                                entity_type: Some(stream.to_owned()),
                                entity_id: external_id.clone(),
                                ..Entry::default()
                            },
                        )
                        .await?;
                }
                logged_failures += 1;
            }
            if failed > 0 && logged_failures > LOGGED_FAILURES_PER_RUN {
                self.sync_log(
                    logger,
                    LogLevel::Warning,
                    run,
                    format!("{failed} record(s) of this batch failed (not logged one by one past {LOGGED_FAILURES_PER_RUN} a run)"),
                )
                .await?;
            }
            let commit = self
                .store()
                .commit_sync_batch(SyncBatch {
                    scope: scope.clone(),
                    run_id: run.id,
                    integration_id: id.to_owned(),
                    stream: stream.to_owned(),
                    entity_type: stream.to_owned(),
                    from_cursor: cursor.clone(),
                    next_cursor: next_cursor.clone(),
                    records,
                    failed,
                    skipped: i64::try_from(duplicates).unwrap_or(0),
                    total: total.and_then(|t| i64::try_from(t).ok()),
                    now: self.now(),
                })
                .await;
            let outcome = match commit {
                Ok(o) => o,
                Err(StoreError::Stale(_)) => {
                    return Ok(Stop::Retry(
                        "the stream's cursor moved under this run (another worker committed the batch)"
                            .to_owned(),
                    ));
                }
                Err(StoreError::NotFound(_)) => return Ok(Stop::Done),
                Err(e) => return Err(e.into()),
            };
            self.notify_sync_progress();
            known_cursor = Some(next_cursor.or(cursor));
            if outcome.cancel_requested {
                self.end_run(scope, run, logger, SyncStatus::Cancelled, None)
                    .await?;
                return Ok(Stop::Done);
            }
            if exhausted {
                self.end_run(scope, run, logger, SyncStatus::Succeeded, None)
                    .await?;
                return Ok(Stop::Done);
            }
        }
    }
}

impl Services {
    /// Writes the export run's pending records through the connector,
    /// batch by batch, until none is left or the run stops.
    async fn export_batches(
        &self,
        scope: &Scope,
        run: &SyncRunRecord,
        logger: &ScopedLogger,
        correlation_id: &str,
    ) -> Result<Stop> {
        let id = run.integration_id.as_str();
        let stream = run.stream.as_str();
        let reg = self.registry();
        if reg.integration(id).is_none() {
            return Ok(Stop::Fail(format!("`{id}` is no longer in the catalog")));
        }
        let Ok(state) = self.enabled_state(scope, id, "exporting through it").await else {
            self.end_run(
                scope,
                run,
                logger,
                SyncStatus::Failed,
                Some(format!("`{id}` is not enabled")),
            )
            .await?;
            return Ok(Stop::Done);
        };
        let (connector, ctx) = self
            .prepare_call(scope, &reg, id, &state, WRITE_DEADLINE, correlation_id)
            .await?;
        let rate_limit = reg.integration(id).and_then(|i| i.rate_limit);
        let mut logged_failures = run.counters.failed;
        loop {
            let items = self
                .store()
                .pending_exports(scope, run.id, EXPORT_BATCH)
                .await?;
            let Some(last) = items.last() else {
                self.end_run(scope, run, logger, SyncStatus::Succeeded, None)
                    .await?;
                return Ok(Stop::Done);
            };
            let through = last.position;
            let records = items
                .iter()
                .map(|i| serde_json::from_str::<Value>(&i.data))
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| ServiceError::Internal(format!("a stored export item: {e}")))?;
            if let Some(limit) = rate_limit {
                self.sync_buckets().acquire(scope, id, limit).await;
            }
            let written =
                tokio::time::timeout(WRITE_DEADLINE, connector.write(&ctx, stream, records)).await;
            actions::write_connector_log(logger, &ctx.log, &format!("sync.{stream}")).await?;
            let outcome = match written {
                Err(_) => {
                    return Ok(Stop::Retry(format!(
                        "the connector did not answer within {} s",
                        WRITE_DEADLINE.as_secs()
                    )));
                }
                Ok(Ok(outcome)) => outcome,
                Ok(Err(ConnectorError::RateLimited {
                    message,
                    retry_after_ms,
                })) => {
                    self.wait_out_rate_limit(logger, run, &message, retry_after_ms)
                        .await?;
                    continue;
                }
                Ok(Err(e)) if e.is_retryable() => return Ok(Stop::Retry(e.to_string())),
                Ok(Err(e)) => return Ok(Stop::Fail(e.to_string())),
            };
            let (counters, mappings, failures) =
                export_outcome(&items, outcome, stream, self.now());
            for (item, message) in &failures {
                if logged_failures < LOGGED_FAILURES_PER_RUN {
                    logger
                        .log(
                            LogLevel::Warning,
                            Entry {
                                operation: format!("sync.{stream}"),
                                message: format!(
                                    "record {} of the export not written: {message}",
                                    item.position
                                ),
                                entity_type: Some(stream.to_owned()),
                                entity_id: Some(item.local_id.clone()),
                                ..Entry::default()
                            },
                        )
                        .await?;
                }
                logged_failures += 1;
            }
            let commit = self
                .store()
                .commit_export_batch(ExportCommit {
                    scope: scope.clone(),
                    run_id: run.id,
                    integration_id: id.to_owned(),
                    through,
                    counters,
                    mappings,
                    now: self.now(),
                })
                .await;
            let cancel = match commit {
                Ok(cancel) => cancel,
                Err(StoreError::NotFound(_)) => return Ok(Stop::Done),
                Err(e) => return Err(e.into()),
            };
            self.notify_sync_progress();
            if cancel {
                self.end_run(scope, run, logger, SyncStatus::Cancelled, None)
                    .await?;
                return Ok(Stop::Done);
            }
        }
    }
}

/// Checks an export's records and makes them store items.
fn export_items(records: Vec<ExportRecordIn>) -> Result<Vec<ExportItem>> {
    let invalid = |field: String, code: &'static str, message: String| {
        ServiceError::invalid(
            "the export is not valid",
            vec![FieldError::new(field, code, message)],
        )
    };
    if records.is_empty() || records.len() > MAX_EXPORT_RECORDS {
        return Err(invalid(
            "records".to_owned(),
            "out_of_range",
            format!("expected 1 to {MAX_EXPORT_RECORDS} records"),
        ));
    }
    let mut seen = std::collections::HashSet::with_capacity(records.len());
    let mut items = Vec::with_capacity(records.len());
    for (n, r) in records.into_iter().enumerate() {
        if r.id.trim().is_empty()
            || r.id.chars().count() > 200
            || r.id.chars().any(char::is_control)
        {
            return Err(invalid(
                format!("records/{n}/id"),
                "invalid_id",
                "expected 1 to 200 printable characters".to_owned(),
            ));
        }
        if !seen.insert(r.id.clone()) {
            return Err(invalid(
                format!("records/{n}/id"),
                "duplicate_id",
                format!("the id `{}` appears twice in the export", r.id),
            ));
        }
        if !r.data.is_object() {
            return Err(invalid(
                format!("records/{n}/data"),
                "expected_object",
                "expected a JSON object".to_owned(),
            ));
        }
        let data = r.data.to_string();
        if data.len() > MAX_EXPORT_RECORD_BYTES {
            return Err(invalid(
                format!("records/{n}/data"),
                "too_large",
                format!("a record may hold at most {MAX_EXPORT_RECORD_BYTES} bytes"),
            ));
        }
        items.push(ExportItem {
            local_id: r.id,
            data,
        });
    }
    Ok(items)
}

/// What a written batch adds to the run: counters, id mappings, and the
/// records the connector refused with why.
fn export_outcome<'a>(
    items: &'a [PendingExport],
    outcome: patchbay_runtime::WriteOutcome,
    entity_type: &str,
    now: Timestamp,
) -> (
    SyncCounters,
    Vec<IdMapping>,
    Vec<(&'a PendingExport, String)>,
) {
    let mut failed: HashMap<usize, String> = HashMap::new();
    for (index, message) in outcome.failed {
        if index < items.len() {
            failed.entry(index).or_insert(message);
        }
    }
    let mut counters = SyncCounters {
        processed: i64::try_from(items.len()).unwrap_or(i64::MAX),
        failed: i64::try_from(failed.len()).unwrap_or(i64::MAX),
        ..SyncCounters::default()
    };
    let mut created = std::collections::HashSet::new();
    let mut mappings = Vec::new();
    for r in outcome.results {
        if r.index >= items.len() || failed.contains_key(&r.index) {
            continue;
        }
        if r.created == Some(true) {
            created.insert(r.index);
        }
        if let Some(external_id) = r.external_id.filter(|e| !e.is_empty()) {
            mappings.push(IdMapping {
                entity_type: entity_type.to_owned(),
                local_id: items[r.index].local_id.clone(),
                external_id,
                updated_at: now,
            });
        }
    }
    counters.created = i64::try_from(created.len()).unwrap_or(i64::MAX);
    counters.updated = counters.processed - counters.failed - counters.created;
    let mut failures: Vec<(&PendingExport, String)> = failed
        .into_iter()
        .map(|(i, message)| (&items[i], message))
        .collect();
    failures.sort_by_key(|(item, _)| item.position);
    (counters, mappings, failures)
}

fn record_out(r: SyncRecordRow) -> Result<RecordOut> {
    let change = if r.deleted {
        "deleted"
    } else if r.created_at == r.updated_at {
        "created"
    } else {
        "updated"
    };
    Ok(RecordOut {
        data: serde_json::from_str(&r.data).map_err(|e| ServiceError::internal(&e))?,
        external_id: r.external_id,
        local_id: r.local_id,
        seq: r.seq,
        change,
        created_at: r.created_at,
        updated_at: r.updated_at,
    })
}

/// The `sync.run` job handler.
pub(crate) async fn sync_run_job(
    services: Services,
    ctx: JobContext,
) -> std::result::Result<Option<Value>, JobError> {
    let scope = ctx
        .scope
        .clone()
        .ok_or_else(|| JobError::Fatal("a sync run needs a tenant scope".to_owned()))?;
    let run_id = ctx
        .payload
        .get("runId")
        .and_then(Value::as_i64)
        .ok_or_else(|| JobError::Fatal("the payload names no runId".to_owned()))?;
    services.execute_sync_run(&scope, run_id, &ctx).await
}
