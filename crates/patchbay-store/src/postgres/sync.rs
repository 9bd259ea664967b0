//! Data sync on PostgreSQL. A batch is one transaction of two statements
//! whatever its size (three on a stream's first batch): the stream's cursor
//! row locked `FOR UPDATE` (created by the first batch), the compare-and-set
//! checked on it, then one statement that travels the records as arrays
//! (`UNNEST`) and, set-based, classifies them against the stored hashes,
//! numbers the changed ones, upserts them, moves the
//! cursor and adds to the run — if the run is still running; otherwise the
//! transaction is rolled back.

use patchbay_core::{Scope, Timestamp};
use sqlx::Row as _;
use sqlx::postgres::PgRow;

use super::{PgStore, bind_args};
use crate::sql::{from_ts, ts};
use crate::sync::*;
use crate::{Result, StoreError};

/// A local id for each record of the batch, used if it is created (made
/// here, not by the database: a batch's ids cost the server nothing).
fn local_ids(b: &SyncBatch) -> Vec<String> {
    let mut ids = LocalIds::new(b.now);
    b.records.iter().map(|_| ids.next().to_owned()).collect()
}

/// Locks the stream's row: batches of a stream commit one at a time.
const LOCK_CURSOR: &str = "SELECT id, cursor, last_seq, entity_type FROM sync_cursors
    WHERE tenant_id = $1 AND organization_id = $2 AND integration_id = $3 AND stream = $4
    FOR UPDATE";

/// The stream's first batch creates its row. A concurrent first batch
/// waits here for the other's commit, then finds the row and locks it.
const CREATE_CURSOR: &str = "INSERT INTO sync_cursors (tenant_id, organization_id, integration_id, stream, entity_type, cursor, last_seq, updated_at)
    VALUES ($1, $2, $3, $4, $5, NULL, 0, $6)
    ON CONFLICT (tenant_id, organization_id, integration_id, stream) DO NOTHING
    RETURNING id, cursor, last_seq, entity_type";

/// The batch, set-based, in one statement whose plan does not hinge on
/// statistics (stale during a stream's first import, the common case):
/// each record is looked up by the full primary key (stream id, external
/// id) in a `LATERAL` subquery kept apart by `OFFSET 0` — a parameterised
/// index probe per record; as a plain join the planner may hash-join a scan
/// of the whole table, and keep that plan while the table grows. New
/// records are plain inserts (the lookup found none, and the stream's lock
/// keeps its other batches out); changed stored ones are updated through
/// `ON CONFLICT` on the primary key, an index probe by construction.
///
/// `$6` is the stream's `last_seq` read under the lock; changed records
/// take `$6 + 1 …` in the batch's order (`ord`). A created record's local
/// id is its entry of `$19`, made by the caller as on SQLite (`rec_` and a
/// UUID v7 of the batch's millisecond; see `LocalIds`). Created records are
/// their own id mappings; only under another entity type than the
/// stream's (`$18` not NULL) is a mapping row written. The run is updated
/// only while `running`: no row (`cancel_requested` NULL) and the caller
/// rolls the transaction back.
const COMMIT_RECORDS: &str = "WITH u AS (
    SELECT * FROM UNNEST($2::text[], $3::text[], $4::bytea[], $5::bool[], $19::text[])
      WITH ORDINALITY AS u(external_id, data, hash, deleted, new_id, ord)
  ), looked AS (
    SELECT u.*, s.hash AS stored_hash, s.deleted AS stored_deleted, s.hash IS NOT NULL AS stored
    FROM u LEFT JOIN LATERAL (
      SELECT r.hash, r.deleted FROM sync_records r
      WHERE r.stream_id = $1 AND r.external_id = u.external_id
      OFFSET 0
    ) s ON TRUE
  ), changed AS (
    SELECT external_id, data, hash, deleted, stored,
      $6::bigint + row_number() OVER (ORDER BY ord) AS seq,
      CASE WHEN stored THEN '' ELSE new_id END AS local_id
    FROM looked
    WHERE CASE WHEN stored THEN stored_hash <> hash OR stored_deleted <> deleted
               ELSE NOT deleted END
  ), inserted AS (
    INSERT INTO sync_records (stream_id, external_id, local_id, seq, data, hash, deleted, run_id, created_at, updated_at)
    SELECT $1, external_id, local_id, seq, data, hash, deleted, $7, $8, $8
    FROM changed WHERE NOT stored
  ), updated AS (
    INSERT INTO sync_records (stream_id, external_id, local_id, seq, data, hash, deleted, run_id, created_at, updated_at)
    SELECT $1, external_id, local_id, seq, data, hash, deleted, $7, $8, $8
    FROM changed WHERE stored
    ON CONFLICT (stream_id, external_id) DO UPDATE SET
      seq = excluded.seq, data = excluded.data, hash = excluded.hash, deleted = excluded.deleted,
      run_id = excluded.run_id, updated_at = excluded.updated_at
  ), mapped AS (
    INSERT INTO sync_id_mappings (tenant_id, organization_id, integration_id, entity_type, external_id, local_id, updated_at)
    SELECT $14, $15, $16, $18::text, external_id, local_id, $8 FROM changed
    WHERE NOT stored AND $18::text IS NOT NULL
    ON CONFLICT (tenant_id, organization_id, integration_id, entity_type, external_id) DO NOTHING
  ), n AS (
    SELECT COUNT(*) FILTER (WHERE NOT stored) AS n_created, COUNT(*) FILTER (WHERE stored) AS n_updated
    FROM changed
  ), cur AS (
    UPDATE sync_cursors SET cursor = $9, last_seq = $6 + n.n_created + n.n_updated, updated_at = $8
    FROM n
    WHERE id = $1
  ), run AS (
    UPDATE sync_runs SET processed = processed + $10 + $11 + $12,
      created = created + n.n_created, updated = updated + n.n_updated,
      unchanged = unchanged + $10 - n.n_created - n.n_updated,
      skipped = skipped + $11, failed = failed + $12,
      total = COALESCE($13, total), cursor_end = $9, updated_at = $8
    FROM n
    WHERE id = $7 AND tenant_id = $14 AND organization_id = $15 AND integration_id = $16
      AND stream = $17 AND status = 'running'
    RETURNING cancel_requested
  )
  SELECT n.n_created, n.n_updated, (SELECT cancel_requested FROM run) AS cancel_requested FROM n";

const PUT_ID_MAPPINGS: &str = "INSERT INTO sync_id_mappings
      (tenant_id, organization_id, integration_id, entity_type, external_id, local_id, updated_at)
    SELECT $1, $2, $3, e, x, l, u
      FROM UNNEST($4::text[], $5::text[], $6::text[], $7::bigint[]) AS m(e, x, l, u)
    ON CONFLICT (tenant_id, organization_id, integration_id, entity_type, external_id) DO UPDATE SET
      local_id = excluded.local_id, updated_at = excluded.updated_at";

/// An export's items, numbered 1, 2, … in the order given.
const INSERT_EXPORT_ITEMS: &str = "INSERT INTO sync_export_items (run_id, position, local_id, data)
    SELECT $1, n, l, d FROM UNNEST($2::text[], $3::text[]) WITH ORDINALITY AS i(l, d, n)";

const ID_MAPPINGS: &str =
    "SELECT entity_type, local_id, external_id, updated_at FROM sync_id_mappings
    WHERE tenant_id = $1 AND organization_id = $2 AND integration_id = $3 AND entity_type = $4
      AND external_id = ANY($5)";

/// The records of the entity type's streams, for these external ids.
const RECORD_MAPPINGS_OF: &str = "SELECT c.id, r.local_id, r.external_id, r.created_at
    FROM sync_cursors c JOIN sync_records r ON r.stream_id = c.id
    WHERE c.tenant_id = $1 AND c.organization_id = $2 AND c.integration_id = $3 AND c.entity_type = $4
      AND r.external_id = ANY($5)";

fn run(r: &PgRow) -> Result<SyncRunRecord> {
    let direction: String = r.try_get("direction")?;
    let status: String = r.try_get("status")?;
    Ok(SyncRunRecord {
        id: r.try_get("id")?,
        scope: Scope::new(
            r.try_get::<String, _>("tenant_id")?,
            r.try_get::<String, _>("organization_id")?,
        ),
        integration_id: r.try_get("integration_id")?,
        stream: r.try_get("stream")?,
        direction: SyncDirection::parse(&direction).ok_or_else(|| {
            StoreError::Database(format!(
                "unknown sync direction `{direction}` in the database"
            ))
        })?,
        status: SyncStatus::parse(&status).ok_or_else(|| {
            StoreError::Database(format!("unknown sync status `{status}` in the database"))
        })?,
        counters: SyncCounters {
            processed: r.try_get("processed")?,
            created: r.try_get("created")?,
            updated: r.try_get("updated")?,
            unchanged: r.try_get("unchanged")?,
            skipped: r.try_get("skipped")?,
            failed: r.try_get("failed")?,
        },
        total: r.try_get("total")?,
        cursor_start: r.try_get("cursor_start")?,
        cursor_end: r.try_get("cursor_end")?,
        error: r.try_get("error")?,
        job_id: r.try_get("job_id")?,
        cancel_requested: r.try_get("cancel_requested")?,
        created_at: Timestamp::from_micros(r.try_get("created_at")?),
        started_at: from_ts(r.try_get("started_at")?),
        finished_at: from_ts(r.try_get("finished_at")?),
        updated_at: Timestamp::from_micros(r.try_get("updated_at")?),
    })
}

fn record(r: &PgRow) -> Result<SyncRecordRow> {
    Ok(SyncRecordRow {
        external_id: r.try_get(0)?,
        local_id: r.try_get(1)?,
        seq: r.try_get(2)?,
        data: r.try_get(3)?,
        deleted: r.try_get(4)?,
        created_at: Timestamp::from_micros(r.try_get(5)?),
        updated_at: Timestamp::from_micros(r.try_get(6)?),
    })
}

fn id_mapping(r: &PgRow) -> Result<IdMapping> {
    Ok(IdMapping {
        entity_type: r.try_get(0)?,
        local_id: r.try_get(1)?,
        external_id: r.try_get(2)?,
        updated_at: Timestamp::from_micros(r.try_get(3)?),
    })
}

/// A statement whose first four parameters are the scope, the integration
/// and a stream (or an entity type).
fn keyed<'q>(
    stmt: &'q str,
    scope: &'q Scope,
    integration_id: &'q str,
    name: &'q str,
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    sqlx::query(stmt)
        .bind(scope.tenant_id.as_str())
        .bind(scope.organization_id.as_str())
        .bind(integration_id)
        .bind(name)
}

/// The stream's row as a batch finds it, locked until the transaction ends.
struct StreamRow {
    id: i64,
    cursor: Option<String>,
    last_seq: i64,
    entity_type: String,
}

/// The stream's row, locked until the transaction ends (created by the
/// stream's first batch).
async fn lock_cursor(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    b: &SyncBatch,
) -> Result<StreamRow> {
    let key = |stmt| keyed(stmt, &b.scope, &b.integration_id, &b.stream);
    let mut row = key(LOCK_CURSOR).fetch_optional(&mut **tx).await?;
    if row.is_none() {
        row = key(CREATE_CURSOR)
            .bind(b.entity_type.as_str())
            .bind(ts(b.now))
            .fetch_optional(&mut **tx)
            .await?;
    }
    if row.is_none() {
        // Another batch created it meanwhile and has committed: lock it now.
        row = key(LOCK_CURSOR).fetch_optional(&mut **tx).await?;
    }
    match row {
        Some(r) => Ok(StreamRow {
            id: r.try_get(0)?,
            cursor: r.try_get(1)?,
            last_seq: r.try_get(2)?,
            entity_type: r.try_get(3)?,
        }),
        None => Err(StoreError::Database(
            "the stream's sync cursor could not be created".to_owned(),
        )),
    }
}

#[async_trait::async_trait]
impl SyncStore for PgStore {
    async fn create_sync_run(&self, new: NewSyncRun, now: Timestamp) -> Result<SyncRunRecord> {
        let row = sqlx::query(sql::CREATE_RUN)
            .bind(new.scope.tenant_id.as_str())
            .bind(new.scope.organization_id.as_str())
            .bind(&new.integration_id)
            .bind(&new.stream)
            .bind(new.direction.as_str())
            .bind(ts(now))
            .fetch_one(&self.pool)
            .await
            .map_err(|e| match StoreError::from(e) {
                StoreError::Conflict(_) => one_active(&new.integration_id, &new.stream),
                other => other,
            })?;
        run(&row)
    }

    async fn set_sync_run_job(&self, scope: &Scope, id: i64, job_id: i64) -> Result<()> {
        let n = sqlx::query(sql::SET_RUN_JOB)
            .bind(scope.tenant_id.as_str())
            .bind(scope.organization_id.as_str())
            .bind(id)
            .bind(job_id)
            .execute(&self.pool)
            .await?
            .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound(format!("sync run {id}")));
        }
        Ok(())
    }

    async fn start_sync_run(
        &self,
        scope: &Scope,
        id: i64,
        now: Timestamp,
    ) -> Result<Option<SyncRunRecord>> {
        sqlx::query(sql::START_RUN)
            .bind(scope.tenant_id.as_str())
            .bind(scope.organization_id.as_str())
            .bind(id)
            .bind(ts(now))
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(run)
            .transpose()
    }

    async fn get_sync_run(&self, scope: &Scope, id: i64) -> Result<Option<SyncRunRecord>> {
        sqlx::query(sql::GET_RUN)
            .bind(scope.tenant_id.as_str())
            .bind(scope.organization_id.as_str())
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(run)
            .transpose()
    }

    async fn list_sync_runs(&self, scope: &Scope, q: &SyncRunQuery) -> Result<Vec<SyncRunRecord>> {
        let (stmt, args) = list_runs_sql(q);
        let query = sqlx::query(&stmt)
            .bind(scope.tenant_id.as_str())
            .bind(scope.organization_id.as_str());
        bind_args(query, &args)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(run)
            .collect()
    }

    async fn get_sync_cursor(
        &self,
        scope: &Scope,
        integration_id: &str,
        stream: &str,
    ) -> Result<Option<SyncCursor>> {
        let row = keyed(sql::GET_CURSOR, scope, integration_id, stream)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            Ok(SyncCursor {
                cursor: r.try_get(0)?,
                last_seq: r.try_get(1)?,
                updated_at: Timestamp::from_micros(r.try_get(2)?),
            })
        })
        .transpose()
    }

    async fn reset_sync_cursor(
        &self,
        scope: &Scope,
        integration_id: &str,
        stream: &str,
    ) -> Result<()> {
        let key = |stmt| keyed(stmt, scope, integration_id, stream);
        let n = key(sql::RESET_CURSOR)
            .execute(&self.pool)
            .await?
            .rows_affected();
        if n == 0
            && key(sql::ACTIVE_RUN)
                .fetch_optional(&self.pool)
                .await?
                .is_some()
        {
            return Err(one_active(integration_id, stream));
        }
        Ok(())
    }

    async fn commit_sync_batch(&self, b: SyncBatch) -> Result<BatchOutcome> {
        check_batch(&b)?;
        // Made before the transaction: the database does no id work.
        let new_ids = local_ids(&b);
        let mut tx = self.pool.begin().await?;
        let stream = lock_cursor(&mut tx, &b).await?;
        if stream.cursor.as_deref() != b.from_cursor.as_deref() {
            tx.rollback().await?;
            return Err(stale());
        }
        let last_seq = stream.last_seq;
        let n = i64::try_from(b.records.len()).unwrap_or(i64::MAX);
        let other_type = (stream.entity_type != b.entity_type).then_some(b.entity_type.as_str());
        let row = sqlx::query(COMMIT_RECORDS)
            .bind(stream.id)
            .bind(
                b.records
                    .iter()
                    .map(|r| r.external_id.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(
                b.records
                    .iter()
                    .map(|r| r.data.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(
                b.records
                    .iter()
                    .map(|r| hash_bytes(&r.hash))
                    .collect::<Vec<_>>(),
            )
            .bind(b.records.iter().map(|r| r.deleted).collect::<Vec<_>>())
            .bind(last_seq)
            .bind(b.run_id)
            .bind(ts(b.now))
            .bind(next_cursor(&b))
            .bind(n)
            .bind(b.skipped)
            .bind(b.failed)
            .bind(b.total)
            .bind(b.scope.tenant_id.as_str())
            .bind(b.scope.organization_id.as_str())
            .bind(b.integration_id.as_str())
            .bind(b.stream.as_str())
            .bind(other_type)
            .bind(&new_ids)
            .fetch_one(&mut *tx)
            .await?;
        let created: i64 = row.try_get(0)?;
        let updated: i64 = row.try_get(1)?;
        let Some(cancel_requested) = row.try_get::<Option<bool>, _>(2)? else {
            tx.rollback().await?;
            return Err(run_not_running(b.run_id));
        };
        tx.commit().await?;
        Ok(BatchOutcome {
            counters: batch_counters(&b, created, updated),
            last_seq: last_seq + created + updated,
            cancel_requested,
        })
    }

    async fn add_sync_counters(
        &self,
        scope: &Scope,
        id: i64,
        c: SyncCounters,
        now: Timestamp,
    ) -> Result<bool> {
        let cancel: Option<bool> = sqlx::query_scalar(sql::ADD_COUNTERS)
            .bind(scope.tenant_id.as_str())
            .bind(scope.organization_id.as_str())
            .bind(id)
            .bind(c.processed)
            .bind(c.created)
            .bind(c.updated)
            .bind(c.unchanged)
            .bind(c.skipped)
            .bind(c.failed)
            .bind(ts(now))
            .fetch_optional(&self.pool)
            .await?;
        cancel.ok_or_else(|| run_not_running(id))
    }

    async fn finish_sync_run(
        &self,
        scope: &Scope,
        id: i64,
        status: SyncStatus,
        error: Option<String>,
        now: Timestamp,
    ) -> Result<bool> {
        check_final(status)?;
        let mut tx = self.pool.begin().await?;
        let n = sqlx::query(sql::FINISH_RUN)
            .bind(scope.tenant_id.as_str())
            .bind(scope.organization_id.as_str())
            .bind(id)
            .bind(status.as_str())
            .bind(error)
            .bind(ts(now))
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n == 1 {
            sqlx::query(sql::DELETE_EXPORTS)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(n == 1)
    }

    async fn create_export_run(
        &self,
        new: NewSyncRun,
        items: Vec<ExportItem>,
        now: Timestamp,
    ) -> Result<SyncRunRecord> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(sql::CREATE_RUN)
            .bind(new.scope.tenant_id.as_str())
            .bind(new.scope.organization_id.as_str())
            .bind(&new.integration_id)
            .bind(&new.stream)
            .bind(new.direction.as_str())
            .bind(ts(now))
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| match StoreError::from(e) {
                StoreError::Conflict(_) => one_active(&new.integration_id, &new.stream),
                other => other,
            })?;
        let mut created = run(&row)?;
        let total = i64::try_from(items.len()).unwrap_or(i64::MAX);
        sqlx::query(sql::SET_RUN_TOTAL)
            .bind(created.id)
            .bind(total)
            .execute(&mut *tx)
            .await?;
        sqlx::query(INSERT_EXPORT_ITEMS)
            .bind(created.id)
            .bind(
                items
                    .iter()
                    .map(|i| i.local_id.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(items.iter().map(|i| i.data.as_str()).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        created.total = Some(total);
        Ok(created)
    }

    async fn pending_exports(
        &self,
        scope: &Scope,
        run_id: i64,
        limit_n: u32,
    ) -> Result<Vec<PendingExport>> {
        let rows = sqlx::query(sql::PENDING_EXPORTS)
            .bind(scope.tenant_id.as_str())
            .bind(scope.organization_id.as_str())
            .bind(run_id)
            .bind(limit(limit_n))
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(PendingExport {
                    position: r.try_get(0)?,
                    local_id: r.try_get(1)?,
                    data: r.try_get(2)?,
                })
            })
            .collect()
    }

    async fn commit_export_batch(&self, commit: ExportCommit) -> Result<bool> {
        let c = commit.counters;
        let mut tx = self.pool.begin().await?;
        let cancel: Option<bool> = sqlx::query_scalar(sql::COMMIT_EXPORT)
            .bind(commit.scope.tenant_id.as_str())
            .bind(commit.scope.organization_id.as_str())
            .bind(commit.run_id)
            .bind(c.processed)
            .bind(c.created)
            .bind(c.updated)
            .bind(c.unchanged)
            .bind(c.skipped)
            .bind(c.failed)
            .bind(ts(commit.now))
            .bind(commit.through.to_string())
            .fetch_optional(&mut *tx)
            .await?;
        let Some(cancel) = cancel else {
            return Err(run_not_running(commit.run_id));
        };
        if !commit.mappings.is_empty() {
            let mut by_key = std::collections::BTreeMap::new();
            for m in &commit.mappings {
                by_key.insert((m.entity_type.as_str(), m.external_id.as_str()), m);
            }
            let rows: Vec<&IdMapping> = by_key.into_values().collect();
            sqlx::query(PUT_ID_MAPPINGS)
                .bind(commit.scope.tenant_id.as_str())
                .bind(commit.scope.organization_id.as_str())
                .bind(&commit.integration_id)
                .bind(
                    rows.iter()
                        .map(|m| m.entity_type.as_str())
                        .collect::<Vec<_>>(),
                )
                .bind(
                    rows.iter()
                        .map(|m| m.external_id.as_str())
                        .collect::<Vec<_>>(),
                )
                .bind(rows.iter().map(|m| m.local_id.as_str()).collect::<Vec<_>>())
                .bind(rows.iter().map(|m| ts(m.updated_at)).collect::<Vec<_>>())
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(sql::DELETE_EXPORTS_THROUGH)
            .bind(commit.run_id)
            .bind(commit.through)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(cancel)
    }

    async fn request_sync_cancel(
        &self,
        scope: &Scope,
        id: i64,
        now: Timestamp,
    ) -> Result<Option<SyncRunRecord>> {
        let asked = sqlx::query(sql::REQUEST_CANCEL)
            .bind(scope.tenant_id.as_str())
            .bind(scope.organization_id.as_str())
            .bind(id)
            .bind(ts(now))
            .fetch_optional(&self.pool)
            .await?;
        match asked {
            Some(r) => run(&r).map(Some),
            // Not active: the run as it is, if it exists in the scope.
            None => self.get_sync_run(scope, id).await,
        }
    }

    async fn list_sync_records(
        &self,
        scope: &Scope,
        integration_id: &str,
        stream: &str,
        after: i64,
        limit_n: u32,
    ) -> Result<Vec<SyncRecordRow>> {
        // Sorting disabled: stale statistics cannot turn a page into a sort
        // of the stream's whole tail instead of a walk of its sequence index.
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET LOCAL enable_sort = off")
            .execute(&mut *tx)
            .await?;
        let rows = keyed(sql::LIST_RECORDS, scope, integration_id, stream)
            .bind(after)
            .bind(limit(limit_n))
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        rows.iter().map(record).collect()
    }

    async fn count_sync_records(
        &self,
        scope: &Scope,
        integration_id: &str,
        stream: &str,
    ) -> Result<i64> {
        Ok(keyed(sql::COUNT_RECORDS, scope, integration_id, stream)
            .fetch_one(&self.pool)
            .await?
            .try_get(0)?)
    }

    async fn put_id_mappings(
        &self,
        scope: &Scope,
        integration_id: &str,
        mappings: Vec<IdMapping>,
    ) -> Result<()> {
        if mappings.is_empty() {
            return Ok(());
        }
        // One row per key, the last given winning (as row-by-row upserts
        // would), in key order: concurrent writers lock rows in one order.
        let mut by_key = std::collections::BTreeMap::new();
        for m in &mappings {
            by_key.insert((m.entity_type.as_str(), m.external_id.as_str()), m);
        }
        let rows: Vec<&IdMapping> = by_key.into_values().collect();
        sqlx::query(PUT_ID_MAPPINGS)
            .bind(scope.tenant_id.as_str())
            .bind(scope.organization_id.as_str())
            .bind(integration_id)
            .bind(
                rows.iter()
                    .map(|m| m.entity_type.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(
                rows.iter()
                    .map(|m| m.external_id.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(rows.iter().map(|m| m.local_id.as_str()).collect::<Vec<_>>())
            .bind(rows.iter().map(|m| ts(m.updated_at)).collect::<Vec<_>>())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn get_id_mappings(
        &self,
        scope: &Scope,
        integration_id: &str,
        entity_type: &str,
        external_ids: &[String],
    ) -> Result<Vec<IdMapping>> {
        let key = |stmt| keyed(stmt, scope, integration_id, entity_type);
        let record_mapping = |stream_id: i64, r: &PgRow| -> Result<RecordMapping> {
            Ok(RecordMapping {
                stream_id,
                local_id: r.try_get("local_id")?,
                external_id: r.try_get("external_id")?,
                created_at: Timestamp::from_micros(r.try_get("created_at")?),
            })
        };
        let (stored, records, limit) = if external_ids.is_empty() {
            let stored = key(sql::ID_MAPPINGS_OF_TYPE).fetch_all(&self.pool).await?;
            let streams = key(sql::STREAMS_OF_ENTITY)
                .fetch_all(&self.pool)
                .await?
                .iter()
                .map(|r| r.try_get(0))
                .collect::<std::result::Result<Vec<i64>, _>>()?;
            let mut records = Vec::new();
            for s in streams {
                for r in sqlx::query(sql::RECORD_MAPPINGS)
                    .bind(s)
                    .fetch_all(&self.pool)
                    .await?
                {
                    records.push(record_mapping(s, &r)?);
                }
            }
            (stored, records, MAX_LIMIT as usize)
        } else {
            let stored = key(ID_MAPPINGS)
                .bind(external_ids)
                .fetch_all(&self.pool)
                .await?;
            let records = key(RECORD_MAPPINGS_OF)
                .bind(external_ids)
                .fetch_all(&self.pool)
                .await?
                .iter()
                .map(|r| record_mapping(r.try_get(0)?, r))
                .collect::<Result<Vec<_>>>()?;
            (stored, records, usize::MAX)
        };
        let stored = stored.iter().map(id_mapping).collect::<Result<Vec<_>>>()?;
        Ok(merge_mappings(entity_type, stored, records, limit))
    }

    async fn get_field_mapping(
        &self,
        scope: &Scope,
        integration_id: &str,
        stream: &str,
    ) -> Result<Option<(String, Timestamp)>> {
        let row = keyed(sql::GET_FIELD_MAPPING, scope, integration_id, stream)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| Ok((r.try_get(0)?, Timestamp::from_micros(r.try_get(1)?))))
            .transpose()
    }

    async fn put_field_mapping(
        &self,
        scope: &Scope,
        integration_id: &str,
        stream: &str,
        mapping: Option<String>,
        now: Timestamp,
    ) -> Result<()> {
        let key = |stmt| keyed(stmt, scope, integration_id, stream);
        match mapping {
            Some(m) => key(sql::PUT_FIELD_MAPPING).bind(m).bind(ts(now)),
            None => key(sql::DELETE_FIELD_MAPPING),
        }
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
