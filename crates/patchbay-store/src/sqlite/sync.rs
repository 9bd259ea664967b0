//! Data sync on SQLite. A batch is one IMMEDIATE transaction on the single
//! writer: the cursor compare-and-set and the run check first, then per
//! record one primary-key lookup (stream id, external id) of the stored hash
//! and an insert, an update or nothing (no id-mapping row: the record is
//! the mapping), all through cached prepared statements with the
//! batch's strings bound by reference (no allocation per record).

use patchbay_core::{Scope, Timestamp};
use rusqlite::{Connection, OptionalExtension as _, Row, TransactionBehavior, params};

use super::{SqliteStore, all, bad_column, db, exec, one};
use crate::sql::{from_ts, ts};
use crate::statements::lite;
use crate::sync::*;
use crate::{Result, StoreError};

/// The stream's id, cursor, last sequence number and entity type.
const GET_STREAM: &str = "SELECT id, cursor, last_seq, entity_type FROM sync_cursors
    WHERE tenant_id = ?1 AND organization_id = ?2 AND integration_id = ?3 AND stream = ?4";
/// The stream's first batch creates its row.
const CREATE_STREAM: &str = "INSERT INTO sync_cursors (tenant_id, organization_id, integration_id, stream, entity_type, cursor, last_seq, updated_at)
    VALUES (?1, ?2, ?3, ?4, ?5, NULL, 0, ?6) RETURNING id";
const FIND_RECORD: &str =
    "SELECT hash, deleted FROM sync_records WHERE stream_id = ?1 AND external_id = ?2";
const INSERT_RECORD: &str = "INSERT INTO sync_records
      (stream_id, external_id, local_id, seq, data, hash, deleted, run_id, created_at, updated_at)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9)";
const UPDATE_RECORD: &str = "UPDATE sync_records SET seq = ?3, data = ?4, hash = ?5, deleted = ?6, run_id = ?7, updated_at = ?8
    WHERE stream_id = ?1 AND external_id = ?2";
/// A created record's mapping under another entity type than its stream's;
/// an existing pair for the external id is kept.
const INSERT_ID_MAPPING: &str = "INSERT INTO sync_id_mappings
      (tenant_id, organization_id, integration_id, entity_type, external_id, local_id, updated_at)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
    ON CONFLICT (tenant_id, organization_id, integration_id, entity_type, external_id) DO NOTHING";
const PUT_CURSOR: &str =
    "UPDATE sync_cursors SET cursor = ?2, last_seq = ?3, updated_at = ?4 WHERE id = ?1";
const ID_MAPPING: &str = "SELECT entity_type, local_id, external_id, updated_at FROM sync_id_mappings
    WHERE tenant_id = ?1 AND organization_id = ?2 AND integration_id = ?3 AND entity_type = ?4 AND external_id = ?5";
const INSERT_EXPORT_ITEM: &str =
    "INSERT INTO sync_export_items (run_id, position, local_id, data) VALUES (?1, ?2, ?3, ?4)";
const RECORD_MAPPING: &str = "SELECT local_id, external_id, created_at FROM sync_records WHERE stream_id = ?1 AND external_id = ?2";

fn run(r: &Row<'_>) -> rusqlite::Result<SyncRunRecord> {
    let direction: String = r.get("direction")?;
    let status: String = r.get("status")?;
    Ok(SyncRunRecord {
        id: r.get("id")?,
        scope: Scope::new(
            r.get::<_, String>("tenant_id")?,
            r.get::<_, String>("organization_id")?,
        ),
        integration_id: r.get("integration_id")?,
        stream: r.get("stream")?,
        direction: SyncDirection::parse(&direction)
            .ok_or_else(|| bad_column("unknown sync direction"))?,
        status: SyncStatus::parse(&status).ok_or_else(|| bad_column("unknown sync status"))?,
        counters: SyncCounters {
            processed: r.get("processed")?,
            created: r.get("created")?,
            updated: r.get("updated")?,
            unchanged: r.get("unchanged")?,
            skipped: r.get("skipped")?,
            failed: r.get("failed")?,
        },
        total: r.get("total")?,
        cursor_start: r.get("cursor_start")?,
        cursor_end: r.get("cursor_end")?,
        error: r.get("error")?,
        job_id: r.get("job_id")?,
        cancel_requested: r.get("cancel_requested")?,
        created_at: Timestamp::from_micros(r.get("created_at")?),
        started_at: from_ts(r.get("started_at")?),
        finished_at: from_ts(r.get("finished_at")?),
        updated_at: Timestamp::from_micros(r.get("updated_at")?),
    })
}

fn record(r: &Row<'_>) -> rusqlite::Result<SyncRecordRow> {
    Ok(SyncRecordRow {
        external_id: r.get(0)?,
        local_id: r.get(1)?,
        seq: r.get(2)?,
        data: r.get(3)?,
        deleted: r.get(4)?,
        created_at: Timestamp::from_micros(r.get(5)?),
        updated_at: Timestamp::from_micros(r.get(6)?),
    })
}

fn cursor(r: &Row<'_>) -> rusqlite::Result<SyncCursor> {
    Ok(SyncCursor {
        cursor: r.get(0)?,
        last_seq: r.get(1)?,
        updated_at: Timestamp::from_micros(r.get(2)?),
    })
}

fn id_mapping(r: &Row<'_>) -> rusqlite::Result<IdMapping> {
    Ok(IdMapping {
        entity_type: r.get(0)?,
        local_id: r.get(1)?,
        external_id: r.get(2)?,
        updated_at: Timestamp::from_micros(r.get(3)?),
    })
}

fn record_mapping(stream_id: i64, r: &Row<'_>) -> rusqlite::Result<RecordMapping> {
    Ok(RecordMapping {
        stream_id,
        local_id: r.get(0)?,
        external_id: r.get(1)?,
        created_at: Timestamp::from_micros(r.get(2)?),
    })
}

/// Commits one batch on the writer (see the module documentation of `sync`).
fn commit_batch(conn: &mut Connection, b: &SyncBatch) -> Result<BatchOutcome> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db)?;
    let (tenant, org) = (b.scope.tenant_id.as_str(), b.scope.organization_id.as_str());
    let (integration, stream) = (b.integration_id.as_str(), b.stream.as_str());
    // Compare-and-set on the cursor (no row yet: a stream never synced).
    let stored = tx
        .prepare_cached(GET_STREAM)
        .map_err(db)?
        .query_row(params![tenant, org, integration, stream], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, Option<String>>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, String>(3)?,
            ))
        })
        .optional()
        .map_err(db)?;
    let stored_cursor = stored.as_ref().and_then(|s| s.1.as_deref());
    if stored_cursor != b.from_cursor.as_deref() {
        return Err(stale());
    }
    let status: Option<String> = tx
        .prepare_cached(&lite(sql::RUN_STATUS))
        .map_err(db)?
        .query_row(params![tenant, org, b.run_id, integration, stream], |r| {
            r.get(0)
        })
        .optional()
        .map_err(db)?;
    if status.as_deref() != Some(SyncStatus::Running.as_str()) {
        return Err(run_not_running(b.run_id));
    }
    let now = ts(b.now);
    let (stream_id, last_seq, own_type) = if let Some((id, _, last_seq, entity_type)) = stored {
        (id, last_seq, entity_type == b.entity_type)
    } else {
        // The stream's first batch: its row, under the batch's entity type.
        let id: i64 = tx
            .prepare_cached(CREATE_STREAM)
            .map_err(db)?
            .query_row(
                params![tenant, org, integration, stream, b.entity_type, now],
                |r| r.get(0),
            )
            .map_err(db)?;
        (id, 0, true)
    };
    let mut seq = last_seq;
    let (mut created, mut updated) = (0_i64, 0_i64);
    {
        let mut find = tx.prepare_cached(FIND_RECORD).map_err(db)?;
        let mut insert = tx.prepare_cached(INSERT_RECORD).map_err(db)?;
        let mut update = tx.prepare_cached(UPDATE_RECORD).map_err(db)?;
        let mut ids = LocalIds::new(b.now);
        let mut hash = Vec::with_capacity(24);
        for r in &b.records {
            hash_key(&r.hash, &mut hash);
            // Whether the stored version is this one (compared in place).
            let same = find
                .query_row(params![stream_id, r.external_id], |row| {
                    Ok(row.get_ref(0)?.as_blob()? == hash.as_slice()
                        && row.get::<_, bool>(1)? == r.deleted)
                })
                .optional()
                .map_err(db)?;
            match same {
                None if !r.deleted => {
                    seq += 1;
                    let local = ids.next();
                    insert
                        .execute(params![
                            stream_id,
                            r.external_id,
                            local,
                            seq,
                            r.data,
                            hash,
                            r.deleted,
                            b.run_id,
                            now
                        ])
                        .map_err(db)?;
                    if !own_type {
                        tx.prepare_cached(INSERT_ID_MAPPING)
                            .map_err(db)?
                            .execute(params![
                                tenant,
                                org,
                                integration,
                                b.entity_type,
                                r.external_id,
                                local,
                                now
                            ])
                            .map_err(db)?;
                    }
                    created += 1;
                }
                Some(false) => {
                    seq += 1;
                    update
                        .execute(params![
                            stream_id,
                            r.external_id,
                            seq,
                            r.data,
                            hash,
                            r.deleted,
                            b.run_id,
                            now
                        ])
                        .map_err(db)?;
                    updated += 1;
                }
                // Unchanged, or deleted before it was ever stored: nothing to write.
                _ => {}
            }
        }
    }
    let next = next_cursor(b);
    tx.prepare_cached(PUT_CURSOR)
        .map_err(db)?
        .execute(params![stream_id, next, seq, now])
        .map_err(db)?;
    let counters = batch_counters(b, created, updated);
    let cancel_requested: Option<bool> = tx
        .prepare_cached(&lite(sql::ADD_BATCH))
        .map_err(db)?
        .query_row(
            params![
                tenant,
                org,
                b.run_id,
                integration,
                stream,
                counters.processed,
                counters.created,
                counters.updated,
                counters.unchanged,
                counters.skipped,
                counters.failed,
                b.total,
                next,
                now
            ],
            |r| r.get(0),
        )
        .optional()
        .map_err(db)?;
    let Some(cancel_requested) = cancel_requested else {
        return Err(run_not_running(b.run_id));
    };
    tx.commit().map_err(db)?;
    Ok(BatchOutcome {
        counters,
        last_seq: seq,
        cancel_requested,
    })
}

#[async_trait::async_trait]
impl SyncStore for SqliteStore {
    async fn create_sync_run(&self, run_in: NewSyncRun, now: Timestamp) -> Result<SyncRunRecord> {
        self.write(move |conn| {
            conn.prepare_cached(&lite(sql::CREATE_RUN))
                .map_err(db)?
                .query_row(
                    params![
                        run_in.scope.tenant_id.as_str(),
                        run_in.scope.organization_id.as_str(),
                        run_in.integration_id,
                        run_in.stream,
                        run_in.direction.as_str(),
                        ts(now)
                    ],
                    run,
                )
                .map_err(|e| match db(e) {
                    StoreError::Conflict(_) => one_active(&run_in.integration_id, &run_in.stream),
                    other => other,
                })
        })
        .await
    }

    async fn set_sync_run_job(&self, scope: &Scope, id: i64, job_id: i64) -> Result<()> {
        let scope = scope.clone();
        let n = self
            .write(move |conn| {
                exec(
                    conn,
                    sql::SET_RUN_JOB,
                    params![
                        scope.tenant_id.as_str(),
                        scope.organization_id.as_str(),
                        id,
                        job_id
                    ],
                )
                .map_err(db)
            })
            .await?;
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
        let scope = scope.clone();
        self.write(move |conn| {
            one(
                conn,
                sql::START_RUN,
                params![
                    scope.tenant_id.as_str(),
                    scope.organization_id.as_str(),
                    id,
                    ts(now)
                ],
                run,
            )
            .map_err(db)
        })
        .await
    }

    async fn get_sync_run(&self, scope: &Scope, id: i64) -> Result<Option<SyncRunRecord>> {
        self.read(|c| {
            one(
                c,
                sql::GET_RUN,
                params![scope.tenant_id.as_str(), scope.organization_id.as_str(), id],
                run,
            )
        })
    }

    async fn list_sync_runs(&self, scope: &Scope, q: &SyncRunQuery) -> Result<Vec<SyncRunRecord>> {
        let (stmt, args) = list_runs_sql(q);
        let (t, o) = (
            crate::sql::Arg::Text(scope.tenant_id.to_string()),
            crate::sql::Arg::Text(scope.organization_id.to_string()),
        );
        let all_args: Vec<&crate::sql::Arg> = [&t, &o].into_iter().chain(args.iter()).collect();
        self.read(|c| {
            c.prepare_cached(&lite(&stmt))?
                .query_map(rusqlite::params_from_iter(all_args), run)?
                .collect()
        })
    }

    async fn get_sync_cursor(
        &self,
        scope: &Scope,
        integration_id: &str,
        stream: &str,
    ) -> Result<Option<SyncCursor>> {
        self.read(|c| {
            one(
                c,
                sql::GET_CURSOR,
                params![
                    scope.tenant_id.as_str(),
                    scope.organization_id.as_str(),
                    integration_id,
                    stream
                ],
                cursor,
            )
        })
    }

    async fn reset_sync_cursor(
        &self,
        scope: &Scope,
        integration_id: &str,
        stream: &str,
    ) -> Result<()> {
        let (scope, integration_id, stream) =
            (scope.clone(), integration_id.to_owned(), stream.to_owned());
        self.write(move |conn| {
            let key = params![
                scope.tenant_id.as_str(),
                scope.organization_id.as_str(),
                integration_id,
                stream
            ];
            let n = exec(conn, sql::RESET_CURSOR, key).map_err(db)?;
            if n == 0 {
                let active: Option<i64> =
                    one(conn, sql::ACTIVE_RUN, key, |r| r.get(0)).map_err(db)?;
                if active.is_some() {
                    return Err(one_active(&integration_id, &stream));
                }
            }
            Ok(())
        })
        .await
    }

    async fn commit_sync_batch(&self, batch: SyncBatch) -> Result<BatchOutcome> {
        check_batch(&batch)?;
        self.write(move |conn| commit_batch(conn, &batch)).await
    }

    async fn add_sync_counters(
        &self,
        scope: &Scope,
        id: i64,
        c: SyncCounters,
        now: Timestamp,
    ) -> Result<bool> {
        let scope = scope.clone();
        self.write(move |conn| {
            one(
                conn,
                sql::ADD_COUNTERS,
                params![
                    scope.tenant_id.as_str(),
                    scope.organization_id.as_str(),
                    id,
                    c.processed,
                    c.created,
                    c.updated,
                    c.unchanged,
                    c.skipped,
                    c.failed,
                    ts(now)
                ],
                |r| r.get(0),
            )
            .map_err(db)?
            .ok_or_else(|| run_not_running(id))
        })
        .await
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
        let scope = scope.clone();
        self.write(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db)?;
            let n = exec(
                &tx,
                sql::FINISH_RUN,
                params![
                    scope.tenant_id.as_str(),
                    scope.organization_id.as_str(),
                    id,
                    status.as_str(),
                    error,
                    ts(now)
                ],
            )
            .map_err(db)?;
            if n == 1 {
                exec(&tx, sql::DELETE_EXPORTS, params![id]).map_err(db)?;
            }
            tx.commit().map_err(db)?;
            Ok(n == 1)
        })
        .await
    }

    async fn create_export_run(
        &self,
        run_in: NewSyncRun,
        items: Vec<ExportItem>,
        now: Timestamp,
    ) -> Result<SyncRunRecord> {
        self.write(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db)?;
            let mut created = tx
                .prepare_cached(&lite(sql::CREATE_RUN))
                .map_err(db)?
                .query_row(
                    params![
                        run_in.scope.tenant_id.as_str(),
                        run_in.scope.organization_id.as_str(),
                        run_in.integration_id,
                        run_in.stream,
                        run_in.direction.as_str(),
                        ts(now)
                    ],
                    run,
                )
                .map_err(|e| match db(e) {
                    StoreError::Conflict(_) => one_active(&run_in.integration_id, &run_in.stream),
                    other => other,
                })?;
            let total = i64::try_from(items.len()).unwrap_or(i64::MAX);
            exec(&tx, sql::SET_RUN_TOTAL, params![created.id, total]).map_err(db)?;
            {
                let mut put = tx.prepare_cached(INSERT_EXPORT_ITEM).map_err(db)?;
                for (position, item) in (1_i64..).zip(&items) {
                    put.execute(params![created.id, position, item.local_id, item.data])
                        .map_err(db)?;
                }
            }
            tx.commit().map_err(db)?;
            created.total = Some(total);
            Ok(created)
        })
        .await
    }

    async fn pending_exports(
        &self,
        scope: &Scope,
        run_id: i64,
        limit_n: u32,
    ) -> Result<Vec<PendingExport>> {
        self.read(|c| {
            all(
                c,
                sql::PENDING_EXPORTS,
                params![
                    scope.tenant_id.as_str(),
                    scope.organization_id.as_str(),
                    run_id,
                    limit(limit_n)
                ],
                |r| {
                    Ok(PendingExport {
                        position: r.get(0)?,
                        local_id: r.get(1)?,
                        data: r.get(2)?,
                    })
                },
            )
        })
    }

    async fn commit_export_batch(&self, commit: ExportCommit) -> Result<bool> {
        self.write(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db)?;
            let c = commit.counters;
            let (t, o) = (
                commit.scope.tenant_id.as_str(),
                commit.scope.organization_id.as_str(),
            );
            let cancel: Option<bool> = one(
                &tx,
                sql::COMMIT_EXPORT,
                params![
                    t,
                    o,
                    commit.run_id,
                    c.processed,
                    c.created,
                    c.updated,
                    c.unchanged,
                    c.skipped,
                    c.failed,
                    ts(commit.now),
                    commit.through.to_string()
                ],
                |r| r.get(0),
            )
            .map_err(db)?;
            let Some(cancel) = cancel else {
                return Err(run_not_running(commit.run_id));
            };
            {
                let mut put = tx.prepare_cached(&lite(sql::PUT_ID_MAPPING)).map_err(db)?;
                for m in &commit.mappings {
                    put.execute(params![
                        t,
                        o,
                        commit.integration_id,
                        m.entity_type,
                        m.external_id,
                        m.local_id,
                        ts(m.updated_at)
                    ])
                    .map_err(db)?;
                }
            }
            exec(
                &tx,
                sql::DELETE_EXPORTS_THROUGH,
                params![commit.run_id, commit.through],
            )
            .map_err(db)?;
            tx.commit().map_err(db)?;
            Ok(cancel)
        })
        .await
    }

    async fn request_sync_cancel(
        &self,
        scope: &Scope,
        id: i64,
        now: Timestamp,
    ) -> Result<Option<SyncRunRecord>> {
        let scope = scope.clone();
        self.write(move |conn| {
            let (t, o) = (scope.tenant_id.as_str(), scope.organization_id.as_str());
            match one(conn, sql::REQUEST_CANCEL, params![t, o, id, ts(now)], run).map_err(db)? {
                Some(r) => Ok(Some(r)),
                // Not active: the run as it is, if it exists in the scope.
                None => one(conn, sql::GET_RUN, params![t, o, id], run).map_err(db),
            }
        })
        .await
    }

    async fn list_sync_records(
        &self,
        scope: &Scope,
        integration_id: &str,
        stream: &str,
        after: i64,
        limit_n: u32,
    ) -> Result<Vec<SyncRecordRow>> {
        self.read(|c| {
            all(
                c,
                sql::LIST_RECORDS,
                params![
                    scope.tenant_id.as_str(),
                    scope.organization_id.as_str(),
                    integration_id,
                    stream,
                    after,
                    limit(limit_n)
                ],
                record,
            )
        })
    }

    async fn count_sync_records(
        &self,
        scope: &Scope,
        integration_id: &str,
        stream: &str,
    ) -> Result<i64> {
        self.read(|c| {
            c.prepare_cached(&lite(sql::COUNT_RECORDS))?.query_row(
                params![
                    scope.tenant_id.as_str(),
                    scope.organization_id.as_str(),
                    integration_id,
                    stream
                ],
                |r| r.get(0),
            )
        })
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
        let (scope, integration_id) = (scope.clone(), integration_id.to_owned());
        self.write(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db)?;
            {
                let mut put = tx.prepare_cached(&lite(sql::PUT_ID_MAPPING)).map_err(db)?;
                for m in &mappings {
                    put.execute(params![
                        scope.tenant_id.as_str(),
                        scope.organization_id.as_str(),
                        integration_id,
                        m.entity_type,
                        m.external_id,
                        m.local_id,
                        ts(m.updated_at)
                    ])
                    .map_err(db)?;
                }
            }
            tx.commit().map_err(db)
        })
        .await
    }

    async fn get_id_mappings(
        &self,
        scope: &Scope,
        integration_id: &str,
        entity_type: &str,
        external_ids: &[String],
    ) -> Result<Vec<IdMapping>> {
        let (t, o) = (scope.tenant_id.as_str(), scope.organization_id.as_str());
        let key = params![t, o, integration_id, entity_type];
        let (stored, records) = self.read(|c| {
            let streams: Vec<i64> = all(c, sql::STREAMS_OF_ENTITY, key, |r| r.get(0))?;
            let mut records = Vec::new();
            if external_ids.is_empty() {
                let stored = all(c, sql::ID_MAPPINGS_OF_TYPE, key, id_mapping)?;
                for &s in &streams {
                    let mut found = c.prepare_cached(&lite(sql::RECORD_MAPPINGS))?;
                    for m in found.query_map(params![s], |r| record_mapping(s, r))? {
                        records.push(m?);
                    }
                }
                return Ok((stored, records));
            }
            let mut find = c.prepare_cached(ID_MAPPING)?;
            let mut find_record = c.prepare_cached(RECORD_MAPPING)?;
            let mut stored = Vec::new();
            for id in external_ids {
                if let Some(m) = find
                    .query_row(params![t, o, integration_id, entity_type, id], id_mapping)
                    .optional()?
                {
                    stored.push(m);
                }
                for &s in &streams {
                    if let Some(m) = find_record
                        .query_row(params![s, id], |r| record_mapping(s, r))
                        .optional()?
                    {
                        records.push(m);
                    }
                }
            }
            Ok((stored, records))
        })?;
        let limit = if external_ids.is_empty() {
            MAX_LIMIT as usize
        } else {
            usize::MAX
        };
        Ok(merge_mappings(entity_type, stored, records, limit))
    }

    async fn get_field_mapping(
        &self,
        scope: &Scope,
        integration_id: &str,
        stream: &str,
    ) -> Result<Option<(String, Timestamp)>> {
        self.read(|c| {
            one(
                c,
                sql::GET_FIELD_MAPPING,
                params![
                    scope.tenant_id.as_str(),
                    scope.organization_id.as_str(),
                    integration_id,
                    stream
                ],
                |r| Ok((r.get(0)?, Timestamp::from_micros(r.get(1)?))),
            )
        })
    }

    async fn put_field_mapping(
        &self,
        scope: &Scope,
        integration_id: &str,
        stream: &str,
        mapping: Option<String>,
        now: Timestamp,
    ) -> Result<()> {
        let (scope, integration_id, stream) =
            (scope.clone(), integration_id.to_owned(), stream.to_owned());
        self.write(move |conn| {
            let (t, o) = (scope.tenant_id.as_str(), scope.organization_id.as_str());
            match mapping {
                Some(m) => exec(
                    conn,
                    sql::PUT_FIELD_MAPPING,
                    params![t, o, integration_id, stream, m, ts(now)],
                ),
                None => exec(
                    conn,
                    sql::DELETE_FIELD_MAPPING,
                    params![t, o, integration_id, stream],
                ),
            }
            .map(drop)
            .map_err(db)
        })
        .await
    }
}
