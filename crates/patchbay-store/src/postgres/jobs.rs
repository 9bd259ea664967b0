//! The job queue on PostgreSQL, shared by several processes: claims use
//! `FOR UPDATE SKIP LOCKED` (no two processes take the same job, none waits
//! on another's claim), batches travel as arrays (`UNNEST`) so a claim or a
//! batch of finishes is one statement, and enqueues `NOTIFY patchbay_jobs`
//! so idle workers in every process wake at once.

use std::collections::HashMap;
use std::sync::Weak;
use std::time::Duration;

use patchbay_core::{Scope, Timestamp};
use sqlx::Row as _;
use sqlx::postgres::{PgListener, PgRow};

use super::PgStore;
use crate::jobs::{sql, *};
use crate::sql::{Arg, from_ts, ts};
use crate::{Result, StoreError};

const CHANNEL: &str = "patchbay_jobs";
/// Jobs per multi-row insert.
const INSERT_BATCH: usize = 2000;

fn job(r: &PgRow) -> Result<JobRecord> {
    let status: String = r.try_get("status")?;
    let tenant: Option<String> = r.try_get("tenant_id")?;
    let org: Option<String> = r.try_get("organization_id")?;
    Ok(JobRecord {
        id: r.try_get("id")?,
        queue: r.try_get("queue")?,
        kind: r.try_get("kind")?,
        scope: tenant.zip(org).map(|(t, o)| Scope::new(t, o)),
        payload: r.try_get("payload")?,
        unique_key: r.try_get("unique_key")?,
        status: JobStatus::parse(&status).ok_or_else(|| {
            StoreError::Database(format!("unknown job status `{status}` in the database"))
        })?,
        vt: r.try_get("vt")?,
        run_at: Timestamp::from_micros(r.try_get("run_at")?),
        attempts: r.try_get("attempts")?,
        max_attempts: r.try_get("max_attempts")?,
        lease_owner: r.try_get("lease_owner")?,
        lease_expires_at: from_ts(r.try_get("lease_expires_at")?),
        last_error: r.try_get("last_error")?,
        result: r.try_get("result")?,
        created_at: Timestamp::from_micros(r.try_get("created_at")?),
        started_at: from_ts(r.try_get("started_at")?),
        finished_at: from_ts(r.try_get("finished_at")?),
        updated_at: Timestamp::from_micros(r.try_get("updated_at")?),
    })
}

fn status_counts(rows: &[PgRow]) -> Result<Vec<(JobStatus, u64)>> {
    let mut out = Vec::new();
    for r in rows {
        let s: String = r.try_get("status")?;
        let n: i64 = r.try_get("n")?;
        if let Some(s) = JobStatus::parse(&s) {
            out.push((s, u64::try_from(n).unwrap_or(0)));
        }
    }
    Ok(out)
}

fn attempt(r: &PgRow) -> Result<AttemptRecord> {
    let outcome: Option<String> = r.try_get("outcome")?;
    Ok(AttemptRecord {
        job_id: r.try_get("job_id")?,
        attempt: r.try_get("attempt")?,
        worker: r.try_get("worker")?,
        started_at: Timestamp::from_micros(r.try_get("started_at")?),
        lease_expires_at: Timestamp::from_micros(r.try_get("lease_expires_at")?),
        finished_at: from_ts(r.try_get("finished_at")?),
        outcome: match outcome {
            None => None,
            Some(o) => Some(AttemptOutcome::parse(&o).ok_or_else(|| {
                StoreError::Database(format!("unknown attempt outcome `{o}` in the database"))
            })?),
        },
        error: r.try_get("error")?,
    })
}

fn schedule(r: &PgRow) -> Result<ScheduleRecord> {
    Ok(ScheduleRecord {
        name: r.try_get("name")?,
        schedule: r.try_get("schedule")?,
        queue: r.try_get("queue")?,
        kind: r.try_get("kind")?,
        payload: r.try_get("payload")?,
        enabled: r.try_get("enabled")?,
        next_run_at: Timestamp::from_micros(r.try_get("next_run_at")?),
        last_run_at: from_ts(r.try_get("last_run_at")?),
        last_job_id: r.try_get("last_job_id")?,
        updated_at: Timestamp::from_micros(r.try_get("updated_at")?),
    })
}

fn bind_args<'q>(
    mut q: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    args: &'q [Arg],
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    for a in args {
        q = match a {
            Arg::Text(s) => q.bind(s.as_str()),
            Arg::Int(i) => q.bind(*i),
        };
    }
    q
}

fn unique_conflict(e: sqlx::Error) -> StoreError {
    match StoreError::from(e) {
        StoreError::Conflict(_) => StoreError::Conflict(
            "a job with the same unique key is already queued or running".to_owned(),
        ),
        other => other,
    }
}

/// Inserts jobs inside a transaction, placing each fairly in its queue.
async fn insert_jobs(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    jobs: &[NewJob],
) -> Result<Vec<Enqueued>> {
    let mut next_vt: HashMap<(&str, &str), i64> = HashMap::new();
    let mut vts = Vec::with_capacity(jobs.len());
    for j in jobs {
        let key = (j.queue.as_str(), j.lane());
        let vt = if let Some(v) = next_vt.get(&key) {
            *v
        } else {
            let head: Option<i64> = sqlx::query_scalar(sql::QUEUE_HEAD)
                .bind(&j.queue)
                .fetch_one(&mut **tx)
                .await?;
            let tail: Option<i64> = sqlx::query_scalar(sql::LANE_TAIL)
                .bind(&j.queue)
                .bind(key.1)
                .fetch_one(&mut **tx)
                .await?;
            tail.map_or(0, |t| t + 1).max(head.unwrap_or(0))
        };
        next_vt.insert(key, vt + 1);
        vts.push(vt);
    }
    let mut out: Vec<Option<Enqueued>> = vec![None; jobs.len()];
    // Jobs without a unique key: multi-row inserts. Identity values follow the
    // order of the rows, so the ids, sorted, are the jobs' in input order.
    let plain: Vec<usize> = (0..jobs.len())
        .filter(|&i| jobs[i].unique_key.is_none())
        .collect();
    for chunk in plain.chunks(INSERT_BATCH) {
        let col = |f: &dyn Fn(&NewJob) -> Option<String>| -> Vec<Option<String>> {
            chunk.iter().map(|&i| f(&jobs[i])).collect()
        };
        let mut ids: Vec<i64> = sqlx::query_scalar(
            "INSERT INTO jobs (queue, kind, tenant_id, organization_id, lane, payload, status, vt, run_at, attempts, max_attempts, created_at, updated_at)
             SELECT q, k, t, o, l, p, 'queued', v, r, 0, m, c, c
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bigint[], $8::bigint[], $9::int[], $10::bigint[])
               AS u(q, k, t, o, l, p, v, r, m, c)
             RETURNING id",
        )
        .bind(col(&|j| Some(j.queue.clone())))
        .bind(col(&|j| Some(j.kind.clone())))
        .bind(col(&|j| j.scope.as_ref().map(|s| s.tenant_id.to_string())))
        .bind(col(&|j| {
            j.scope.as_ref().map(|s| s.organization_id.to_string())
        }))
        .bind(col(&|j| Some(j.lane().to_owned())))
        .bind(col(&|j| Some(j.payload.clone())))
        .bind(chunk.iter().map(|&i| vts[i]).collect::<Vec<i64>>())
        .bind(chunk.iter().map(|&i| ts(jobs[i].run_at)).collect::<Vec<i64>>())
        .bind(chunk.iter().map(|&i| jobs[i].max_attempts).collect::<Vec<i32>>())
        .bind(
            chunk
                .iter()
                .map(|&i| ts(jobs[i].created_at))
                .collect::<Vec<i64>>(),
        )
        .fetch_all(&mut **tx)
        .await?;
        ids.sort_unstable();
        for (&i, id) in chunk.iter().zip(ids) {
            out[i] = Some(Enqueued::Created(id));
        }
    }
    for i in (0..jobs.len()).filter(|&i| jobs[i].unique_key.is_some()) {
        let j = &jobs[i];
        let id: Option<i64> = sqlx::query_scalar(sql::INSERT)
            .bind(&j.queue)
            .bind(&j.kind)
            .bind(j.scope.as_ref().map(|s| s.tenant_id.as_str()))
            .bind(j.scope.as_ref().map(|s| s.organization_id.as_str()))
            .bind(j.lane())
            .bind(&j.payload)
            .bind(j.unique_key.as_deref())
            .bind(vts[i])
            .bind(ts(j.run_at))
            .bind(j.max_attempts)
            .bind(ts(j.created_at))
            .fetch_optional(&mut **tx)
            .await?;
        out[i] = Some(match id {
            Some(id) => Enqueued::Created(id),
            None => Enqueued::Existing(
                sqlx::query_scalar(sql::FIND_ACTIVE)
                    .bind(j.unique_key.as_deref())
                    .fetch_one(&mut **tx)
                    .await?,
            ),
        });
    }
    let mut queues: Vec<&str> = jobs.iter().map(|j| j.queue.as_str()).collect();
    queues.sort_unstable();
    queues.dedup();
    for q in queues {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(q)
            .execute(&mut **tx)
            .await?;
    }
    Ok(out.into_iter().flatten().collect())
}

impl PgStore {
    fn wake(&self) {
        self.wake.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Listens on `patchbay_jobs` for the life of the store, reconnecting
    /// after failures; every notification bumps the wake-up counter.
    fn start_listener(&self) {
        let pool = self.pool.clone();
        let wake: Weak<tokio::sync::watch::Sender<u64>> = std::sync::Arc::downgrade(&self.wake);
        tokio::spawn(async move {
            while !pool.is_closed() {
                let mut listener = match PgListener::connect_with(&pool).await {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot listen for job notifications; polling meanwhile");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                };
                if let Err(e) = listener.listen(CHANNEL).await {
                    tracing::warn!(error = %e, "cannot listen for job notifications; polling meanwhile");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
                loop {
                    // `try_recv` reports a lost connection (`None`), after
                    // which notifications may have been missed: wake anyway.
                    let got = listener.try_recv().await;
                    let Some(w) = wake.upgrade() else { return };
                    w.send_modify(|n| *n = n.wrapping_add(1));
                    match got {
                        Ok(Some(_)) => {}
                        Ok(None) => {
                            if pool.is_closed() {
                                return;
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "job notifications interrupted; reconnecting");
                            break;
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
    }
}

#[async_trait::async_trait]
impl JobStore for PgStore {
    async fn enqueue_jobs(&self, jobs: Vec<NewJob>) -> Result<Vec<Enqueued>> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.pool.begin().await?;
        let out = insert_jobs(&mut tx, &jobs).await?;
        tx.commit().await?;
        self.wake();
        Ok(out)
    }

    async fn claim_jobs(
        &self,
        queue: &str,
        worker: &str,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
    ) -> Result<Vec<JobRecord>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let returning = sql::COLUMNS
            .split(", ")
            .map(|c| format!("j.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let stmt = format!(
            "WITH picked AS (
               SELECT id FROM jobs WHERE status = 'queued' AND queue = $1 AND run_at <= $2
               ORDER BY vt, id LIMIT $3 FOR UPDATE SKIP LOCKED
             ), claimed AS (
               UPDATE jobs j SET status = 'running', attempts = j.attempts + 1, lease_owner = $4,
                 lease_expires_at = $5, started_at = $2, updated_at = $2
               FROM picked WHERE j.id = picked.id
               RETURNING {returning}
             ), opened AS (
               INSERT INTO job_attempts (job_id, attempt, worker, started_at, lease_expires_at)
               SELECT id, attempts, $4, $2, $5 FROM claimed
             )
             SELECT * FROM claimed"
        );
        let rows = sqlx::query(&stmt)
            .bind(queue)
            .bind(ts(now))
            .bind(i64::from(limit))
            .bind(worker)
            .bind(ts(lease_until))
            .fetch_all(&self.pool)
            .await?;
        let mut claimed = rows.iter().map(job).collect::<Result<Vec<_>>>()?;
        claimed.sort_by_key(|j| (j.vt, j.id));
        Ok(claimed)
    }

    async fn renew_leases(&self, worker: &str, lease_until: Timestamp) -> Result<Vec<i64>> {
        let mut tx = self.pool.begin().await?;
        let ids: Vec<i64> = sqlx::query_scalar(sql::RENEW)
            .bind(worker)
            .bind(ts(lease_until))
            .fetch_all(&mut *tx)
            .await?;
        sqlx::query(sql::RENEW_ATTEMPTS)
            .bind(worker)
            .bind(ts(lease_until))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(ids)
    }

    async fn finish_jobs(
        &self,
        worker: &str,
        now: Timestamp,
        finishes: Vec<Finish>,
    ) -> Result<Vec<bool>> {
        if finishes.is_empty() {
            return Ok(Vec::new());
        }
        let params: Vec<_> = finishes.iter().map(|f| finish_params(f, now)).collect();
        let done: Vec<i64> = sqlx::query_scalar(
            "WITH u AS (
               SELECT * FROM UNNEST($1::bigint[], $2::int[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::bigint[], $8::text[])
                 AS u(id, attempt, status, result, error, run_at, finished_at, outcome)
             ), done AS (
               UPDATE jobs j SET status = u.status, result = u.result, last_error = u.error,
                 run_at = COALESCE(u.run_at, j.run_at), finished_at = u.finished_at,
                 lease_owner = NULL, lease_expires_at = NULL, updated_at = $9
               FROM u WHERE j.id = u.id AND j.status = 'running' AND j.lease_owner = $10 AND j.attempts = u.attempt
               RETURNING j.id, u.attempt, u.error, u.outcome
             ), closed AS (
               UPDATE job_attempts a SET finished_at = $9, outcome = done.outcome, error = done.error
               FROM done WHERE a.job_id = done.id AND a.attempt = done.attempt AND a.finished_at IS NULL
             )
             SELECT id FROM done",
        )
        .bind(finishes.iter().map(|f| f.id).collect::<Vec<i64>>())
        .bind(finishes.iter().map(|f| f.attempt).collect::<Vec<i32>>())
        .bind(params.iter().map(|p| p.status).collect::<Vec<&str>>())
        .bind(params.iter().map(|p| p.result.clone()).collect::<Vec<_>>())
        .bind(params.iter().map(|p| p.error.clone()).collect::<Vec<_>>())
        .bind(params.iter().map(|p| p.run_at).collect::<Vec<_>>())
        .bind(params.iter().map(|p| p.finished_at).collect::<Vec<_>>())
        .bind(params.iter().map(|p| p.outcome).collect::<Vec<&str>>())
        .bind(ts(now))
        .bind(worker)
        .fetch_all(&self.pool)
        .await?;
        let done: std::collections::HashSet<i64> = done.into_iter().collect();
        if params
            .iter()
            .zip(&finishes)
            .any(|(p, f)| done.contains(&f.id) && p.run_at.is_some_and(|r| r <= ts(now)))
        {
            self.wake();
        }
        Ok(finishes.iter().map(|f| done.contains(&f.id)).collect())
    }

    async fn release_jobs(&self, worker: &str, ids: &[i64], now: Timestamp) -> Result<u64> {
        let n: i64 = sqlx::query_scalar(
            "WITH released AS (
               UPDATE jobs SET status = 'queued', max_attempts = max_attempts + 1, lease_owner = NULL,
                 lease_expires_at = NULL, updated_at = $3
               WHERE id = ANY($1) AND status = 'running' AND lease_owner = $2
               RETURNING id, attempts
             ), closed AS (
               UPDATE job_attempts a SET finished_at = $3, outcome = 'released'
               FROM released r WHERE a.job_id = r.id AND a.attempt = r.attempts AND a.finished_at IS NULL
             )
             SELECT COUNT(*) FROM released",
        )
        .bind(ids)
        .bind(worker)
        .bind(ts(now))
        .fetch_one(&self.pool)
        .await?;
        let n = u64::try_from(n).unwrap_or(0);
        if n > 0 {
            self.wake();
        }
        Ok(n)
    }

    async fn expire_leases(&self, now: Timestamp) -> Result<Vec<ExpiredLease>> {
        let rows = sqlx::query(
            "WITH expired AS (
               SELECT id, lease_owner AS worker, attempts FROM jobs
               WHERE status = 'running' AND lease_expires_at < $1
               FOR UPDATE SKIP LOCKED
             ), moved AS (
               UPDATE jobs j SET
                 status = CASE WHEN j.attempts >= j.max_attempts THEN 'dead' ELSE 'queued' END,
                 finished_at = CASE WHEN j.attempts >= j.max_attempts THEN $1 END,
                 last_error = $2, lease_owner = NULL, lease_expires_at = NULL, updated_at = $1
               FROM expired e WHERE j.id = e.id
               RETURNING j.id, j.kind, j.status, e.worker, e.attempts
             ), closed AS (
               UPDATE job_attempts a SET finished_at = $1, outcome = 'lost', error = $2
               FROM moved m WHERE a.job_id = m.id AND a.attempt = m.attempts AND a.finished_at IS NULL
             )
             SELECT id, kind, status, worker FROM moved",
        )
        .bind(ts(now))
        .bind(sql::LOST)
        .fetch_all(&self.pool)
        .await?;
        let out = rows
            .iter()
            .map(|r| {
                let status: String = r.try_get("status")?;
                Ok(ExpiredLease {
                    id: r.try_get("id")?,
                    kind: r.try_get("kind")?,
                    worker: r
                        .try_get::<Option<String>, _>("worker")?
                        .unwrap_or_default(),
                    status: JobStatus::parse(&status).unwrap_or(JobStatus::Queued),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        if out.iter().any(|e| e.status == JobStatus::Queued) {
            self.wake();
        }
        Ok(out)
    }

    async fn get_job(&self, scope: Option<&Scope>, id: i64) -> Result<Option<JobRecord>> {
        let base = format!("SELECT {} FROM jobs WHERE id = $1", sql::COLUMNS);
        let row = match scope {
            Some(s) => {
                sqlx::query(&format!(
                    "{base} AND tenant_id = $2 AND organization_id = $3"
                ))
                .bind(id)
                .bind(s.tenant_id.as_str())
                .bind(s.organization_id.as_str())
                .fetch_optional(&self.pool)
                .await?
            }
            None => {
                sqlx::query(&base)
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?
            }
        };
        row.as_ref().map(job).transpose()
    }

    async fn list_jobs(&self, q: &JobQuery) -> Result<JobPage> {
        let (clause, args) = list_filters(q);
        let total: i64 = if q.skip_total {
            0
        } else {
            let sql = format!("SELECT COUNT(*) FROM jobs WHERE {clause}");
            let mut query = sqlx::query_scalar::<_, i64>(&sql);
            for a in &args {
                query = match a {
                    Arg::Text(s) => query.bind(s.as_str()),
                    Arg::Int(i) => query.bind(*i),
                };
            }
            query.fetch_one(&self.pool).await?
        };
        let mut page_clause = clause;
        let mut page_args = args;
        if let Some(before) = q.before_id {
            page_args.push(Arg::Int(before));
            page_clause.push_str(&format!(" AND id < ${}", page_args.len()));
        }
        page_args.push(Arg::Int(i64::from(q.limit.clamp(1, 500))));
        let page_sql = format!(
            "SELECT {} FROM jobs WHERE {page_clause} ORDER BY id DESC LIMIT ${}",
            sql::COLUMNS,
            page_args.len()
        );
        let rows = bind_args(sqlx::query(&page_sql), &page_args)
            .fetch_all(&self.pool)
            .await?;
        Ok(JobPage {
            items: rows.iter().map(job).collect::<Result<_>>()?,
            total: u64::try_from(total).unwrap_or(0),
        })
    }

    async fn count_jobs_upto(&self, query: &JobQuery, cap: u64) -> Result<Vec<(JobStatus, u64)>> {
        let (sql, args) = capped_counts(query, cap);
        let rows = bind_args(sqlx::query(&sql), &args)
            .fetch_all(&self.pool)
            .await?;
        Ok(status_counts(&rows)?
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .collect())
    }

    async fn count_tenant_jobs(
        &self,
        tenant: Option<&patchbay_core::TenantId>,
    ) -> Result<Vec<(JobStatus, u64)>> {
        let rows = match tenant {
            Some(t) => {
                sqlx::query(sql::COUNT_BY_STATUS_OF_TENANT)
                    .bind(t.as_str())
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                sqlx::query(sql::COUNT_BY_STATUS_OF_PLATFORM)
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        status_counts(&rows)
    }

    async fn count_jobs(&self, scope: Option<&Scope>) -> Result<Vec<(JobStatus, u64)>> {
        let rows = match scope {
            Some(s) => {
                sqlx::query(sql::COUNT_BY_STATUS_IN_SCOPE)
                    .bind(s.tenant_id.as_str())
                    .bind(s.organization_id.as_str())
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                sqlx::query(sql::COUNT_BY_STATUS)
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        status_counts(&rows)
    }

    async fn list_attempts(&self, job_id: i64) -> Result<Vec<AttemptRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {} FROM job_attempts WHERE job_id = $1 ORDER BY attempt",
            sql::ATTEMPT_COLUMNS
        ))
        .bind(job_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(attempt).collect()
    }

    async fn retry_job(
        &self,
        scope: Option<&Scope>,
        id: i64,
        extra_attempts: i32,
        now: Timestamp,
    ) -> Result<bool> {
        let n = match scope {
            Some(s) => sqlx::query(&format!("{}{}", sql::RETRY, sql::IN_SCOPE))
                .bind(id)
                .bind(ts(now))
                .bind(extra_attempts)
                .bind(s.tenant_id.as_str())
                .bind(s.organization_id.as_str())
                .execute(&self.pool)
                .await
                .map_err(unique_conflict)?,
            None => sqlx::query(sql::RETRY)
                .bind(id)
                .bind(ts(now))
                .bind(extra_attempts)
                .execute(&self.pool)
                .await
                .map_err(unique_conflict)?,
        }
        .rows_affected();
        if n == 1 {
            sqlx::query("SELECT pg_notify($1, 'retry')")
                .bind(CHANNEL)
                .execute(&self.pool)
                .await?;
            self.wake();
        }
        Ok(n == 1)
    }

    async fn cancel_job(&self, scope: Option<&Scope>, id: i64, now: Timestamp) -> Result<bool> {
        let n = match scope {
            Some(s) => {
                sqlx::query(&format!("{}{}", sql::CANCEL, sql::CANCEL_IN_SCOPE))
                    .bind(id)
                    .bind(ts(now))
                    .bind(s.tenant_id.as_str())
                    .bind(s.organization_id.as_str())
                    .execute(&self.pool)
                    .await?
            }
            None => {
                sqlx::query(sql::CANCEL)
                    .bind(id)
                    .bind(ts(now))
                    .execute(&self.pool)
                    .await?
            }
        }
        .rows_affected();
        Ok(n == 1)
    }

    async fn prune_jobs(&self, finished_before: Timestamp, dead_before: Timestamp) -> Result<u64> {
        let mut total = 0;
        loop {
            let n = sqlx::query(sql::PRUNE)
                .bind(ts(finished_before))
                .bind(ts(dead_before))
                .execute(&self.pool)
                .await?
                .rows_affected();
            total += n;
            if n < 5000 {
                return Ok(total);
            }
        }
    }

    fn job_wakeups(&self) -> tokio::sync::watch::Receiver<u64> {
        if self.listening.set(()).is_ok() {
            self.start_listener();
        }
        self.wake.subscribe()
    }

    async fn ensure_schedule(&self, s: ScheduleRecord) -> Result<bool> {
        let n = sqlx::query(sql::ENSURE_SCHEDULE)
            .bind(&s.name)
            .bind(&s.schedule)
            .bind(&s.queue)
            .bind(&s.kind)
            .bind(&s.payload)
            .bind(s.enabled)
            .bind(ts(s.next_run_at))
            .bind(s.last_run_at.map(ts))
            .bind(s.last_job_id)
            .bind(ts(s.updated_at))
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(n == 1)
    }

    async fn list_schedules(&self) -> Result<Vec<ScheduleRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {} FROM job_schedules ORDER BY name",
            sql::SCHEDULE_COLUMNS
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(schedule).collect()
    }

    async fn update_schedule(
        &self,
        name: &str,
        expr: &str,
        enabled: bool,
        next_run_at: Timestamp,
        now: Timestamp,
    ) -> Result<bool> {
        let n = sqlx::query(sql::UPDATE_SCHEDULE)
            .bind(name)
            .bind(expr)
            .bind(enabled)
            .bind(ts(next_run_at))
            .bind(ts(now))
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(n == 1)
    }

    async fn fire_schedule(
        &self,
        name: &str,
        expect_next: Timestamp,
        new_next: Timestamp,
        job: NewJob,
    ) -> Result<Option<i64>> {
        let mut tx = self.pool.begin().await?;
        let moved = sqlx::query(sql::ADVANCE_SCHEDULE)
            .bind(name)
            .bind(ts(expect_next))
            .bind(ts(new_next))
            .bind(ts(job.created_at))
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if moved != 1 {
            return Ok(None);
        }
        let id = insert_jobs(&mut tx, std::slice::from_ref(&job)).await?[0].id();
        sqlx::query(sql::SET_SCHEDULE_JOB)
            .bind(name)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.wake();
        Ok(Some(id))
    }
}
