//! Data sync: runs, cursors, the records store, external-id mappings and
//! field mappings (SPEC-045 "Data Sync — Delta Streaming").
//!
//! * **One batch, one transaction.** [`SyncStore::commit_sync_batch`] writes a
//!   batch's records, their id mappings, the run's counters and the stream's
//!   new cursor together. The cursor moves by compare-and-set: the batch
//!   names the cursor it was read from (`from_cursor`), and if the stored
//!   cursor is no longer that, nothing is written and the call answers
//!   [`StoreError::Stale`](crate::StoreError::Stale). So a batch is
//!   committed at most once, however many workers (a zombie whose lease
//!   expired included) read it, and a cursor never moves backwards.
//! * **The records store** keeps the latest version of each record, keyed by
//!   (stream, external id) — a stream being (scope, integration, stream
//!   name), given a small id by its first batch — with a content hash (an
//!   unchanged record is counted `unchanged` and not rewritten), a `deleted`
//!   marker, and a change sequence `seq` strictly increasing per (scope,
//!   integration, stream): every created, updated or deleted record takes
//!   the next numbers. Only one run writes a stream at a time (and the
//!   cursor row is locked by the batch), so `seq` commits in order and a
//!   reader paging with `after = last seq seen` misses nothing.
//! * **Which records change.** A record whose stored hash and `deleted` flag
//!   equal the incoming ones is `unchanged`. Otherwise a record not stored
//!   yet is `created` (with a new local id `rec_<uuid v7>`), and a stored
//!   one `updated` (its local id kept) — a
//!   deletion of a stored record included: it is stored as the `deleted`
//!   marker with the incoming data. A deletion of a record never stored
//!   changes nothing and counts `unchanged`. Only created and updated
//!   records take sequence numbers, in the batch's order.
//! * **Id mappings of imports.** A created record is its own id mapping
//!   (external id ↔ local id, `updated_at` its creation) under its stream's
//!   entity type (the one of the stream's first batch); no mapping row is
//!   written per record. [`SyncStore::get_id_mappings`] answers the stored
//!   mappings (`put_id_mappings`) first, then the records of the entity
//!   type's streams (the earliest created, when several hold the external
//!   id). A batch naming another entity type than its stream's stores
//!   mapping rows for its created records, an existing pair kept.
//! * **Checks, in order**: the batch's external ids must be unique
//!   ([`StoreError::Invalid`](crate::StoreError::Invalid)); then the cursor
//!   compare-and-set (`Stale`); then the run, which must be `running` in the
//!   batch's scope, integration and stream (`NotFound`). A refused batch
//!   writes nothing.
//! * **One active run per stream**: a run is `queued` or `running` at most
//!   once per (scope, integration, stream); a second is refused with
//!   [`StoreError::Conflict`](crate::StoreError::Conflict).
//! * Every method takes the scope; rows of other scopes are never read.

use patchbay_core::{Scope, Timestamp};
use serde::{Deserialize, Serialize};

use crate::Result;

/// Which way a run moves records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SyncDirection {
    /// From the connector (`read`) into the records store.
    Import,
    /// From the host application through the connector (`write`).
    Export,
}

impl SyncDirection {
    pub fn as_str(self) -> &'static str {
        match self {
            SyncDirection::Import => "import",
            SyncDirection::Export => "export",
        }
    }

    pub fn parse(s: &str) -> Option<SyncDirection> {
        match s {
            "import" => Some(SyncDirection::Import),
            "export" => Some(SyncDirection::Export),
            _ => None,
        }
    }
}

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SyncStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl SyncStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SyncStatus::Queued => "queued",
            SyncStatus::Running => "running",
            SyncStatus::Succeeded => "succeeded",
            SyncStatus::Failed => "failed",
            SyncStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<SyncStatus> {
        match s {
            "queued" => Some(SyncStatus::Queued),
            "running" => Some(SyncStatus::Running),
            "succeeded" => Some(SyncStatus::Succeeded),
            "failed" => Some(SyncStatus::Failed),
            "cancelled" => Some(SyncStatus::Cancelled),
            _ => None,
        }
    }

    /// Queued or running: the stream is busy.
    pub fn is_active(self) -> bool {
        matches!(self, SyncStatus::Queued | SyncStatus::Running)
    }
}

/// A run's counters (also what a batch adds to them).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub struct SyncCounters {
    /// Records the run handled: created + updated + unchanged + skipped + failed.
    pub processed: i64,
    pub created: i64,
    pub updated: i64,
    pub unchanged: i64,
    /// Records deliberately not written (e.g. filtered out).
    pub skipped: i64,
    /// Records refused one by one (mapping, validation); logged, not written.
    pub failed: i64,
}

impl SyncCounters {
    pub fn add(&mut self, o: &SyncCounters) {
        self.processed += o.processed;
        self.created += o.created;
        self.updated += o.updated;
        self.unchanged += o.unchanged;
        self.skipped += o.skipped;
        self.failed += o.failed;
    }
}

/// One sync run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncRunRecord {
    pub id: i64,
    pub scope: Scope,
    pub integration_id: String,
    pub stream: String,
    pub direction: SyncDirection,
    pub status: SyncStatus,
    pub counters: SyncCounters,
    /// Records the source holds in all, when it says.
    pub total: Option<i64>,
    /// The stream's cursor when the run started.
    pub cursor_start: Option<String>,
    /// The cursor after the run's last committed batch.
    pub cursor_end: Option<String>,
    /// Why the run failed (never a secret or a record's content).
    pub error: Option<String>,
    /// The job running it.
    pub job_id: Option<i64>,
    /// Set by a cancel request; the engine stops after the batch in hand.
    pub cancel_requested: bool,
    pub created_at: Timestamp,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    pub updated_at: Timestamp,
}

/// A run to create (`queued`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSyncRun {
    pub scope: Scope,
    pub integration_id: String,
    pub stream: String,
    pub direction: SyncDirection,
}

/// Which runs to list: newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncRunQuery {
    pub integration_id: Option<String>,
    pub stream: Option<String>,
    pub status: Option<SyncStatus>,
    /// Only runs with an id below this (the previous page's last id).
    pub before_id: Option<i64>,
    /// 1-1000.
    pub limit: u32,
}

/// A stream's position: where the next import reads from, and the last
/// change sequence number given out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncCursor {
    pub cursor: Option<String>,
    pub last_seq: i64,
    pub updated_at: Timestamp,
}

/// One record of a batch, mapped and ready to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingRecord {
    pub external_id: String,
    /// The record as stored: a JSON text (after the field mapping).
    pub data: String,
    /// A hash of `data` (hex); equal hashes mean an unchanged record.
    pub hash: String,
    /// The source says the record was deleted: stored as a marker.
    pub deleted: bool,
}

/// One batch of an import run, committed atomically.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncBatch {
    pub scope: Scope,
    pub run_id: i64,
    pub integration_id: String,
    pub stream: String,
    /// The entity type of the id mappings written (usually the stream).
    pub entity_type: String,
    /// The cursor the batch was read from: the stored cursor must still be
    /// this (compare-and-set).
    pub from_cursor: Option<String>,
    /// The cursor to store after the batch; `None` keeps `from_cursor`
    /// (the stream is exhausted for now).
    pub next_cursor: Option<String>,
    /// Valid records to store. External ids are unique within a batch (the
    /// engine keeps the last version of a duplicate).
    pub records: Vec<IncomingRecord>,
    /// Records refused before storage, counted as failed.
    pub failed: i64,
    /// Records deliberately not written, counted as skipped.
    pub skipped: i64,
    /// The source's total, when it reports one.
    pub total: Option<i64>,
    pub now: Timestamp,
}

/// What a committed batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    /// What the batch added to the run's counters.
    pub counters: SyncCounters,
    /// The stream's last change sequence number after the batch.
    pub last_seq: i64,
    /// The run has been asked to stop.
    pub cancel_requested: bool,
}

/// One stored record, as the host application pulls it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncRecordRow {
    pub external_id: String,
    /// Patchbay's id for it (`rec_…`), stable across updates.
    pub local_id: String,
    pub seq: i64,
    /// The JSON text; for a deleted record, the data its deletion came with.
    pub data: String,
    pub deleted: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A local id ↔ external id pair for one entity type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdMapping {
    pub entity_type: String,
    pub local_id: String,
    pub external_id: String,
    pub updated_at: Timestamp,
}

/// One record the host application exports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportItem {
    /// The host's id for it (kept as the id mapping's local id).
    pub local_id: String,
    /// The record, a JSON text, as the connector's `write` receives it.
    pub data: String,
}

/// An exported record not written yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingExport {
    /// Its place in the export: 1, 2, …
    pub position: i64,
    pub local_id: String,
    pub data: String,
}

/// What one written export batch did, committed atomically.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportCommit {
    pub scope: Scope,
    pub run_id: i64,
    pub integration_id: String,
    /// The items up to this position are done: removed, and the run's
    /// `cursor_end` set to it.
    pub through: i64,
    /// What the batch adds to the run's counters.
    pub counters: SyncCounters,
    /// Local id ↔ provider id pairs the connector reported.
    pub mappings: Vec<IdMapping>,
    pub now: Timestamp,
}

/// Data sync's storage, on either backend.
#[async_trait::async_trait]
pub trait SyncStore: Send + Sync {
    /// Creates a `queued` run. `Conflict` while another run of the same
    /// (scope, integration, stream) is queued or running.
    async fn create_sync_run(&self, run: NewSyncRun, now: Timestamp) -> Result<SyncRunRecord>;

    /// Records the job that runs it. `NotFound` when the scope has no such run.
    async fn set_sync_run_job(&self, scope: &Scope, id: i64, job_id: i64) -> Result<()>;

    /// Marks the run `running` (from `queued` or `running`: a resumed run),
    /// setting `started_at` the first time and `cursor_start` from the
    /// stream's cursor the first time. `None` when the run is not active
    /// (finished or cancelled) or not in this scope.
    async fn start_sync_run(
        &self,
        scope: &Scope,
        id: i64,
        now: Timestamp,
    ) -> Result<Option<SyncRunRecord>>;

    async fn get_sync_run(&self, scope: &Scope, id: i64) -> Result<Option<SyncRunRecord>>;

    /// Runs of `scope`, newest first.
    async fn list_sync_runs(&self, scope: &Scope, q: &SyncRunQuery) -> Result<Vec<SyncRunRecord>>;

    /// The stream's position (`None`: never synced).
    async fn get_sync_cursor(
        &self,
        scope: &Scope,
        integration_id: &str,
        stream: &str,
    ) -> Result<Option<SyncCursor>>;

    /// Forgets the stream's cursor (the next import reads from the start;
    /// stored records and their sequence stay). `Conflict` while a run of
    /// the stream is active.
    async fn reset_sync_cursor(
        &self,
        scope: &Scope,
        integration_id: &str,
        stream: &str,
    ) -> Result<()>;

    /// Commits one batch (see the module documentation): records (created,
    /// updated, unchanged by hash), id mappings of created records, the
    /// run's counters, `total`, `cursor_end` and the stream's cursor, in one
    /// transaction. `Stale` when the stored cursor is not `from_cursor`;
    /// `NotFound` when the run is not `running` (cancelled meanwhile, say).
    async fn commit_sync_batch(&self, batch: SyncBatch) -> Result<BatchOutcome>;

    /// Adds counters to a run without records (an export batch, or failures
    /// counted outside a batch); returns whether cancellation was requested.
    /// `NotFound` when the run is not `running`.
    async fn add_sync_counters(
        &self,
        scope: &Scope,
        id: i64,
        counters: SyncCounters,
        now: Timestamp,
    ) -> Result<bool>;

    /// Creates a `queued` export run holding `items` (positions 1, 2, … in
    /// the order given; `total` their number), in one transaction.
    /// `Conflict` as [`SyncStore::create_sync_run`].
    async fn create_export_run(
        &self,
        run: NewSyncRun,
        items: Vec<ExportItem>,
        now: Timestamp,
    ) -> Result<SyncRunRecord>;

    /// The export run's items not written yet, by position, at most `limit`
    /// (1-1001). Empty for a run of another scope.
    async fn pending_exports(
        &self,
        scope: &Scope,
        run_id: i64,
        limit: u32,
    ) -> Result<Vec<PendingExport>>;

    /// Commits a written export batch: the run's counters and `cursor_end`,
    /// the id mappings (upserted under their entity type) and the removal
    /// of the items through `through`, in one transaction. Returns whether
    /// cancellation was requested; `NotFound` (nothing written) when the run
    /// is not `running`.
    async fn commit_export_batch(&self, commit: ExportCommit) -> Result<bool>;

    /// Ends an active run with `status` (succeeded, failed or cancelled) and
    /// `error`, deleting the export items it still holds. Returns false
    /// when it was no longer active; `Invalid` for an active `status`.
    async fn finish_sync_run(
        &self,
        scope: &Scope,
        id: i64,
        status: SyncStatus,
        error: Option<String>,
        now: Timestamp,
    ) -> Result<bool>;

    /// Asks an active run to stop; a `queued` one is cancelled at once.
    /// Returns the run as it is now, `None` when not found in the scope.
    async fn request_sync_cancel(
        &self,
        scope: &Scope,
        id: i64,
        now: Timestamp,
    ) -> Result<Option<SyncRunRecord>>;

    /// Stored records of a stream with `seq > after`, by `seq`, at most
    /// `limit` (1-1001), deletion markers included.
    async fn list_sync_records(
        &self,
        scope: &Scope,
        integration_id: &str,
        stream: &str,
        after: i64,
        limit: u32,
    ) -> Result<Vec<SyncRecordRow>>;

    /// How many live (not deleted) records a stream holds.
    async fn count_sync_records(
        &self,
        scope: &Scope,
        integration_id: &str,
        stream: &str,
    ) -> Result<i64>;

    /// Stores id mappings (upsert by entity type and external id).
    async fn put_id_mappings(
        &self,
        scope: &Scope,
        integration_id: &str,
        mappings: Vec<IdMapping>,
    ) -> Result<()>;

    /// The mappings of `entity_type` for these external ids (all of the
    /// entity type when `external_ids` is empty, at most 1000), by external
    /// id; ids without a mapping are left out.
    async fn get_id_mappings(
        &self,
        scope: &Scope,
        integration_id: &str,
        entity_type: &str,
        external_ids: &[String],
    ) -> Result<Vec<IdMapping>>;

    /// The field mapping of a stream (a JSON text), if one is set.
    async fn get_field_mapping(
        &self,
        scope: &Scope,
        integration_id: &str,
        stream: &str,
    ) -> Result<Option<(String, Timestamp)>>;

    /// Sets (`Some`) or removes (`None`) the field mapping of a stream.
    async fn put_field_mapping(
        &self,
        scope: &Scope,
        integration_id: &str,
        stream: &str,
        mapping: Option<String>,
        now: Timestamp,
    ) -> Result<()>;
}

/// The most rows one listing returns: pages of 1,000 and one more row,
/// which tells the caller whether another page follows.
pub(crate) const MAX_LIMIT: u32 = 1001;

/// The page size asked for, within 1..=[`MAX_LIMIT`].
pub(crate) fn limit(n: u32) -> i64 {
    i64::from(n.clamp(1, MAX_LIMIT))
}

/// The cursor a batch leaves stored.
pub(crate) fn next_cursor(b: &SyncBatch) -> Option<&str> {
    b.next_cursor.as_deref().or(b.from_cursor.as_deref())
}

/// The stored form of a record's hash: a hex text's bytes (16 for the
/// engine's 32 hex digits) then `0`, or any other text's bytes then `1`
/// (distinct texts stay distinct). Written into `out`, reused per record.
pub(crate) fn hash_key(hash: &str, out: &mut Vec<u8>) {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    out.clear();
    let bytes = hash.as_bytes();
    if bytes.len().is_multiple_of(2) {
        for pair in bytes.chunks_exact(2) {
            let (Some(h), Some(l)) = (nibble(pair[0]), nibble(pair[1])) else {
                out.clear();
                break;
            };
            out.push(h << 4 | l);
        }
        if out.len() * 2 == bytes.len() {
            out.push(0);
            return;
        }
    }
    out.extend_from_slice(bytes);
    out.push(1);
}

/// [`hash_key`] into a new vector.
pub(crate) fn hash_bytes(hash: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(hash.len() / 2 + 1);
    hash_key(hash, &mut out);
    out
}

/// An import's pair, from a record of one of the entity type's streams.
pub(crate) struct RecordMapping {
    pub(crate) stream_id: i64,
    pub(crate) local_id: String,
    pub(crate) external_id: String,
    pub(crate) created_at: Timestamp,
}

/// The id mappings of an entity type: the stored ones (`put_id_mappings`)
/// win; otherwise a record's of the entity type's streams, the earliest
/// created (then the lowest stream id), as the first import to create it
/// mapped it. By external id, at most `limit`.
pub(crate) fn merge_mappings(
    entity_type: &str,
    stored: Vec<IdMapping>,
    records: Vec<RecordMapping>,
    limit: usize,
) -> Vec<IdMapping> {
    use std::collections::btree_map::{BTreeMap, Entry};
    let mut by_id: BTreeMap<String, ((u8, i64, i64), IdMapping)> = BTreeMap::new();
    let stored = stored.into_iter().map(|m| ((0, 0, 0), m));
    let derived = records.into_iter().map(|r| {
        (
            (1, r.created_at.as_micros(), r.stream_id),
            IdMapping {
                entity_type: entity_type.to_owned(),
                local_id: r.local_id,
                external_id: r.external_id,
                updated_at: r.created_at,
            },
        )
    });
    for (rank, m) in stored.chain(derived) {
        match by_id.entry(m.external_id.clone()) {
            Entry::Vacant(v) => {
                v.insert((rank, m));
            }
            Entry::Occupied(mut o) => {
                if rank < o.get().0 {
                    o.insert((rank, m));
                }
            }
        }
    }
    by_id.into_values().take(limit).map(|(_, m)| m).collect()
}

/// Refuses a batch the store cannot commit as asked: an external id twice
/// (which record would win?) or negative counts.
pub(crate) fn check_batch(b: &SyncBatch) -> Result<()> {
    if b.failed < 0 || b.skipped < 0 {
        return Err(crate::StoreError::Invalid(
            "a batch's failed and skipped counts cannot be negative".to_owned(),
        ));
    }
    let mut seen = std::collections::HashSet::with_capacity(b.records.len());
    for r in &b.records {
        if !seen.insert(r.external_id.as_str()) {
            return Err(crate::StoreError::Invalid(
                "a batch holds the same external id twice".to_owned(),
            ));
        }
    }
    Ok(())
}

/// The counters a batch adds: `created` and `updated` as counted, the rest
/// of its records unchanged, plus its skipped and failed.
pub(crate) fn batch_counters(b: &SyncBatch, created: i64, updated: i64) -> SyncCounters {
    let n = i64::try_from(b.records.len()).unwrap_or(i64::MAX);
    SyncCounters {
        processed: n + b.skipped + b.failed,
        created,
        updated,
        unchanged: n - created - updated,
        skipped: b.skipped,
        failed: b.failed,
    }
}

pub(crate) fn stale() -> crate::StoreError {
    crate::StoreError::Stale("the stream's sync cursor".to_owned())
}

pub(crate) fn run_not_running(id: i64) -> crate::StoreError {
    crate::StoreError::NotFound(format!("sync run {id} is not running"))
}

pub(crate) fn one_active(integration_id: &str, stream: &str) -> crate::StoreError {
    crate::StoreError::Conflict(format!(
        "a sync run of `{integration_id}` stream `{stream}` is already queued or running"
    ))
}

/// `finish_sync_run` takes a final status only.
pub(crate) fn check_final(status: SyncStatus) -> Result<()> {
    if status.is_active() {
        return Err(crate::StoreError::Invalid(format!(
            "a sync run cannot be finished as `{}`",
            status.as_str()
        )));
    }
    Ok(())
}

/// A run listing: its statement (the scope is `$1`, `$2`) and the arguments
/// after the scope.
pub(crate) fn list_runs_sql(q: &SyncRunQuery) -> (String, Vec<crate::sql::Arg>) {
    use crate::sql::Arg;
    use std::fmt::Write as _;
    fn push(clause: &mut String, args: &mut Vec<Arg>, cond: &str, a: Arg) {
        args.push(a);
        let _ = write!(clause, " AND {cond} ${}", args.len() + 2);
    }
    let mut clause = String::from("tenant_id = $1 AND organization_id = $2");
    let mut args = Vec::new();
    if let Some(i) = &q.integration_id {
        push(
            &mut clause,
            &mut args,
            "integration_id =",
            Arg::Text(i.clone()),
        );
    }
    if let Some(st) = &q.stream {
        push(&mut clause, &mut args, "stream =", Arg::Text(st.clone()));
    }
    if let Some(b) = q.before_id {
        push(&mut clause, &mut args, "id <", Arg::Int(b));
    }
    if let Some(st) = q.status {
        // A literal, like the job listings: the planner sees the status.
        let _ = write!(clause, " AND status = '{}'", st.as_str());
    }
    args.push(Arg::Int(limit(q.limit)));
    let sql = format!(
        "SELECT {} FROM sync_runs WHERE {clause} ORDER BY id DESC LIMIT ${}",
        sql::RUN_COLUMNS,
        args.len() + 2
    );
    (sql, args)
}

/// Local ids for a batch's created records: `rec_` and a UUID v7 in simple
/// form, of the batch's millisecond. The random bits come from `SplitMix64`
/// seeded once per batch from the system's generator (a UUID v4): one
/// system call per batch instead of one per record. Local ids are names,
/// not secrets: what matters is that they do not repeat, and with 74 bits
/// of a well-mixed sequence a repeat is as unlikely as for any UUID v7.
pub(crate) struct LocalIds {
    millis: u64,
    state: u64,
    buf: [u8; 36],
}

impl LocalIds {
    pub(crate) fn new(now: Timestamp) -> LocalIds {
        let (high, low) = uuid::Uuid::new_v4().as_u64_pair();
        let mut buf = [0_u8; 36];
        buf[..4].copy_from_slice(b"rec_");
        LocalIds {
            millis: u64::try_from(now.as_micros() / 1000).unwrap_or(0),
            state: high ^ low,
            buf,
        }
    }

    fn splitmix(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub(crate) fn next(&mut self) -> &str {
        let (a, b) = (self.splitmix(), self.splitmix());
        let mut random = [0_u8; 10];
        random[..8].copy_from_slice(&a.to_be_bytes());
        random[8..].copy_from_slice(&b.to_be_bytes()[..2]);
        let id = uuid::Builder::from_unix_timestamp_millis(self.millis, &random).into_uuid();
        let _ = id.simple().encode_lower(&mut self.buf[4..]);
        std::str::from_utf8(&self.buf).unwrap_or_default()
    }
}

/// The statements both backends share (`$N` placeholders; SQLite runs them
/// through `statements::lite`). Every one names the scope.
pub(crate) mod sql {
    macro_rules! run_columns {
        () => {
            "id, tenant_id, organization_id, integration_id, stream, direction, status, processed, created, updated, unchanged, skipped, failed, total, cursor_start, cursor_end, error, job_id, cancel_requested, created_at, started_at, finished_at, updated_at"
        };
    }

    pub(crate) const RUN_COLUMNS: &str = run_columns!();

    pub(crate) const CREATE_RUN: &str = concat!(
        "INSERT INTO sync_runs (tenant_id, organization_id, integration_id, stream, direction, status, created_at, updated_at)
        VALUES ($1, $2, $3, $4, $5, 'queued', $6, $6) RETURNING ",
        run_columns!()
    );

    pub(crate) const SET_RUN_JOB: &str = "UPDATE sync_runs SET job_id = $4 WHERE tenant_id = $1 AND organization_id = $2 AND id = $3";

    /// Running from queued or running; `started_at` and `cursor_start` the
    /// first time only (SET reads the row's values before the update).
    pub(crate) const START_RUN: &str = concat!(
        "UPDATE sync_runs SET status = 'running', started_at = COALESCE(started_at, $4),
          cursor_start = CASE WHEN started_at IS NULL THEN (
            SELECT c.cursor FROM sync_cursors c
            WHERE c.tenant_id = sync_runs.tenant_id AND c.organization_id = sync_runs.organization_id
              AND c.integration_id = sync_runs.integration_id AND c.stream = sync_runs.stream
          ) ELSE cursor_start END,
          updated_at = $4
        WHERE tenant_id = $1 AND organization_id = $2 AND id = $3 AND status IN ('queued', 'running')
        RETURNING ",
        run_columns!()
    );

    pub(crate) const GET_RUN: &str = concat!(
        "SELECT ",
        run_columns!(),
        " FROM sync_runs WHERE tenant_id = $1 AND organization_id = $2 AND id = $3"
    );

    pub(crate) const FINISH_RUN: &str = "UPDATE sync_runs SET status = $4, error = $5, finished_at = $6, updated_at = $6
        WHERE tenant_id = $1 AND organization_id = $2 AND id = $3 AND status IN ('queued', 'running')";

    /// A queued run is cancelled at once; a running one is asked to stop.
    pub(crate) const REQUEST_CANCEL: &str = concat!(
        "UPDATE sync_runs SET cancel_requested = TRUE,
          status = CASE WHEN status = 'queued' THEN 'cancelled' ELSE status END,
          finished_at = CASE WHEN status = 'queued' THEN $4 ELSE finished_at END,
          updated_at = $4
        WHERE tenant_id = $1 AND organization_id = $2 AND id = $3 AND status IN ('queued', 'running')
        RETURNING ",
        run_columns!()
    );

    pub(crate) const ADD_COUNTERS: &str = "UPDATE sync_runs SET processed = processed + $4, created = created + $5,
          updated = updated + $6, unchanged = unchanged + $7, skipped = skipped + $8, failed = failed + $9,
          updated_at = $10
        WHERE tenant_id = $1 AND organization_id = $2 AND id = $3 AND status = 'running'
        RETURNING cancel_requested";

    pub(crate) const GET_CURSOR: &str = "SELECT cursor, last_seq, updated_at FROM sync_cursors
        WHERE tenant_id = $1 AND organization_id = $2 AND integration_id = $3 AND stream = $4";

    pub(crate) const ACTIVE_RUN: &str = "SELECT id FROM sync_runs
        WHERE tenant_id = $1 AND organization_id = $2 AND integration_id = $3 AND stream = $4
          AND status IN ('queued', 'running')";

    /// Forgets the cursor unless a run of the stream is active; `last_seq` stays.
    pub(crate) const RESET_CURSOR: &str = "UPDATE sync_cursors SET cursor = NULL
        WHERE tenant_id = $1 AND organization_id = $2 AND integration_id = $3 AND stream = $4
          AND NOT EXISTS (SELECT 1 FROM sync_runs r
            WHERE r.tenant_id = $1 AND r.organization_id = $2 AND r.integration_id = $3 AND r.stream = $4
              AND r.status IN ('queued', 'running'))";

    /// The batch's run, read by SQLite before the records (PostgreSQL checks
    /// it in its batch statement).
    pub(crate) const RUN_STATUS: &str = "SELECT status FROM sync_runs
        WHERE tenant_id = $1 AND organization_id = $2 AND id = $3 AND integration_id = $4 AND stream = $5";

    /// What a batch adds to its run, if it is still running (SQLite).
    pub(crate) const ADD_BATCH: &str = "UPDATE sync_runs SET processed = processed + $6, created = created + $7,
          updated = updated + $8, unchanged = unchanged + $9, skipped = skipped + $10, failed = failed + $11,
          total = COALESCE($12, total), cursor_end = $13, updated_at = $14
        WHERE tenant_id = $1 AND organization_id = $2 AND id = $3 AND integration_id = $4 AND stream = $5
          AND status = 'running'
        RETURNING cancel_requested";

    /// Delta reads: the stream's id, then its records by the sequence index.
    pub(crate) const LIST_RECORDS: &str = "SELECT r.external_id, r.local_id, r.seq, r.data, r.deleted, r.created_at, r.updated_at
        FROM sync_records r
        WHERE r.stream_id = (SELECT c.id FROM sync_cursors c
            WHERE c.tenant_id = $1 AND c.organization_id = $2 AND c.integration_id = $3 AND c.stream = $4)
          AND r.seq > $5
        ORDER BY r.seq LIMIT $6";

    /// A stream's live records.
    pub(crate) const COUNT_RECORDS: &str = "SELECT COUNT(*) FROM sync_records r
        WHERE r.stream_id = (SELECT c.id FROM sync_cursors c
            WHERE c.tenant_id = $1 AND c.organization_id = $2 AND c.integration_id = $3 AND c.stream = $4)
          AND NOT r.deleted";

    /// The streams whose created records are mapped under an entity type.
    pub(crate) const STREAMS_OF_ENTITY: &str = "SELECT id FROM sync_cursors
        WHERE tenant_id = $1 AND organization_id = $2 AND integration_id = $3 AND entity_type = $4
        ORDER BY id";

    /// A stream's records as id mappings, by external id.
    pub(crate) const RECORD_MAPPINGS: &str =
        "SELECT local_id, external_id, created_at FROM sync_records
        WHERE stream_id = $1 ORDER BY external_id LIMIT 1000";

    pub(crate) const PUT_ID_MAPPING: &str = "INSERT INTO sync_id_mappings
          (tenant_id, organization_id, integration_id, entity_type, external_id, local_id, updated_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7)
        ON CONFLICT (tenant_id, organization_id, integration_id, entity_type, external_id) DO UPDATE SET
          local_id = excluded.local_id, updated_at = excluded.updated_at";

    pub(crate) const ID_MAPPINGS_OF_TYPE: &str =
        "SELECT entity_type, local_id, external_id, updated_at FROM sync_id_mappings
        WHERE tenant_id = $1 AND organization_id = $2 AND integration_id = $3 AND entity_type = $4
        ORDER BY external_id LIMIT 1000";

    pub(crate) const GET_FIELD_MAPPING: &str = "SELECT mapping, updated_at FROM sync_field_mappings
        WHERE tenant_id = $1 AND organization_id = $2 AND integration_id = $3 AND stream = $4";

    pub(crate) const PUT_FIELD_MAPPING: &str = "INSERT INTO sync_field_mappings
          (tenant_id, organization_id, integration_id, stream, mapping, updated_at)
        VALUES ($1, $2, $3, $4, $5, $6)
        ON CONFLICT (tenant_id, organization_id, integration_id, stream) DO UPDATE SET
          mapping = excluded.mapping, updated_at = excluded.updated_at";

    pub(crate) const DELETE_FIELD_MAPPING: &str = "DELETE FROM sync_field_mappings
        WHERE tenant_id = $1 AND organization_id = $2 AND integration_id = $3 AND stream = $4";

    pub(crate) const SET_RUN_TOTAL: &str = "UPDATE sync_runs SET total = $2 WHERE id = $1";

    pub(crate) const PENDING_EXPORTS: &str = "SELECT e.position, e.local_id, e.data
        FROM sync_export_items e JOIN sync_runs r ON r.id = e.run_id
        WHERE r.tenant_id = $1 AND r.organization_id = $2 AND e.run_id = $3
        ORDER BY e.position LIMIT $4";

    /// An export batch's counters and progress, if the run is running.
    pub(crate) const COMMIT_EXPORT: &str = "UPDATE sync_runs SET processed = processed + $4, created = created + $5,
          updated = updated + $6, unchanged = unchanged + $7, skipped = skipped + $8, failed = failed + $9,
          updated_at = $10, cursor_end = $11
        WHERE tenant_id = $1 AND organization_id = $2 AND id = $3 AND status = 'running'
        RETURNING cancel_requested";

    pub(crate) const DELETE_EXPORTS_THROUGH: &str =
        "DELETE FROM sync_export_items WHERE run_id = $1 AND position <= $2";

    pub(crate) const DELETE_EXPORTS: &str = "DELETE FROM sync_export_items WHERE run_id = $1";
}
