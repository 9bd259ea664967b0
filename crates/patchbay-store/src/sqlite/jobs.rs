//! The job queue on SQLite. One process owns the database, so claims need no
//! row locks: the single writer connection serialises them.

use std::collections::HashMap;

use patchbay_core::{Scope, Timestamp};
use rusqlite::{OptionalExtension as _, Row, TransactionBehavior, params, params_from_iter};

use super::{SqliteStore, bad_column, db};
use crate::jobs::{sql, *};
use crate::sql::{from_ts, ts};
use crate::statements::lite;
use crate::{Result, StoreError};

fn job(r: &Row<'_>) -> rusqlite::Result<JobRecord> {
    let status: String = r.get("status")?;
    let tenant: Option<String> = r.get("tenant_id")?;
    let org: Option<String> = r.get("organization_id")?;
    Ok(JobRecord {
        id: r.get("id")?,
        queue: r.get("queue")?,
        kind: r.get("kind")?,
        scope: tenant.zip(org).map(|(t, o)| Scope::new(t, o)),
        payload: r.get("payload")?,
        unique_key: r.get("unique_key")?,
        status: JobStatus::parse(&status).ok_or_else(|| bad_column("unknown job status"))?,
        vt: r.get("vt")?,
        run_at: Timestamp::from_micros(r.get("run_at")?),
        attempts: r.get("attempts")?,
        max_attempts: r.get("max_attempts")?,
        lease_owner: r.get("lease_owner")?,
        lease_expires_at: from_ts(r.get("lease_expires_at")?),
        last_error: r.get("last_error")?,
        result: r.get("result")?,
        created_at: Timestamp::from_micros(r.get("created_at")?),
        started_at: from_ts(r.get("started_at")?),
        finished_at: from_ts(r.get("finished_at")?),
        updated_at: Timestamp::from_micros(r.get("updated_at")?),
    })
}

fn attempt(r: &Row<'_>) -> rusqlite::Result<AttemptRecord> {
    let outcome: Option<String> = r.get("outcome")?;
    Ok(AttemptRecord {
        job_id: r.get("job_id")?,
        attempt: r.get("attempt")?,
        worker: r.get("worker")?,
        started_at: Timestamp::from_micros(r.get("started_at")?),
        lease_expires_at: Timestamp::from_micros(r.get("lease_expires_at")?),
        finished_at: from_ts(r.get("finished_at")?),
        outcome: match outcome {
            None => None,
            Some(o) => Some(
                AttemptOutcome::parse(&o).ok_or_else(|| bad_column("unknown attempt outcome"))?,
            ),
        },
        error: r.get("error")?,
    })
}

fn schedule(r: &Row<'_>) -> rusqlite::Result<ScheduleRecord> {
    Ok(ScheduleRecord {
        name: r.get("name")?,
        schedule: r.get("schedule")?,
        queue: r.get("queue")?,
        kind: r.get("kind")?,
        payload: r.get("payload")?,
        enabled: r.get("enabled")?,
        next_run_at: Timestamp::from_micros(r.get("next_run_at")?),
        last_run_at: from_ts(r.get("last_run_at")?),
        last_job_id: r.get("last_job_id")?,
        updated_at: Timestamp::from_micros(r.get("updated_at")?),
    })
}

/// Inserts jobs inside a transaction, placing each fairly in its queue.
fn insert_jobs(tx: &rusqlite::Transaction<'_>, jobs: &[NewJob]) -> Result<Vec<Enqueued>> {
    // The next virtual time per (queue, lane), computed once per batch.
    let mut next_vt: HashMap<(String, String), i64> = HashMap::new();
    let mut head = tx.prepare_cached(&lite(sql::QUEUE_HEAD)).map_err(db)?;
    let mut tail = tx.prepare_cached(&lite(sql::LANE_TAIL)).map_err(db)?;
    let mut insert = tx.prepare_cached(&lite(sql::INSERT)).map_err(db)?;
    let mut find = tx.prepare_cached(&lite(sql::FIND_ACTIVE)).map_err(db)?;
    let mut out = Vec::with_capacity(jobs.len());
    for j in jobs {
        let key = (j.queue.clone(), j.lane().to_owned());
        let vt = if let Some(v) = next_vt.get(&key) {
            *v
        } else {
            let h: Option<i64> = head.query_row([&j.queue], |r| r.get(0)).map_err(db)?;
            let t: Option<i64> = tail
                .query_row([&j.queue, &key.1], |r| r.get(0))
                .map_err(db)?;
            t.map_or(0, |t| t + 1).max(h.unwrap_or(0))
        };
        let (tenant, org) = j.scope.as_ref().map_or((None, None), |s| {
            (Some(s.tenant_id.as_str()), Some(s.organization_id.as_str()))
        });
        let id: Option<i64> = insert
            .query_row(
                params![
                    j.queue,
                    j.kind,
                    tenant,
                    org,
                    key.1,
                    j.payload,
                    j.unique_key,
                    vt,
                    ts(j.run_at),
                    j.max_attempts,
                    ts(j.created_at)
                ],
                |r| r.get(0),
            )
            .optional()
            .map_err(db)?;
        if let Some(id) = id {
            next_vt.insert(key, vt + 1);
            out.push(Enqueued::Created(id));
        } else {
            let existing: i64 = find.query_row([&j.unique_key], |r| r.get(0)).map_err(db)?;
            out.push(Enqueued::Existing(existing));
        }
    }
    Ok(out)
}

impl SqliteStore {
    fn wake(&self) {
        self.inner.wake.send_modify(|n| *n = n.wrapping_add(1));
    }

    fn scoped(base: &str, extra: &str, scope: Option<&Scope>) -> String {
        if scope.is_some() {
            lite(&format!("{base}{extra}"))
        } else {
            lite(base)
        }
    }
}

#[async_trait::async_trait]
impl JobStore for SqliteStore {
    async fn enqueue_jobs(&self, jobs: Vec<NewJob>) -> Result<Vec<Enqueued>> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let out = self
            .write(move |conn| {
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(db)?;
                let out = insert_jobs(&tx, &jobs)?;
                tx.commit().map_err(db)?;
                Ok(out)
            })
            .await?;
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
        let (queue, worker) = (queue.to_owned(), worker.to_owned());
        self.write(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db)?;
            let mut claimed = {
                let claim = lite(&format!(
                    "UPDATE jobs SET status = 'running', attempts = attempts + 1, lease_owner = $4, lease_expires_at = $5, started_at = $2, updated_at = $2
                     WHERE id IN (SELECT id FROM jobs WHERE status = 'queued' AND queue = $1 AND run_at <= $2 ORDER BY vt, id LIMIT $3)
                     RETURNING {}",
                    sql::COLUMNS
                ));
                let mut stmt = tx.prepare_cached(&claim).map_err(db)?;
                stmt.query_map(
                    params![queue, ts(now), i64::from(limit), worker, ts(lease_until)],
                    job,
                )
                .map_err(db)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(db)?
            };
            {
                let mut open = tx
                    .prepare_cached("INSERT INTO job_attempts (job_id, attempt, worker, started_at, lease_expires_at) VALUES (?1, ?2, ?3, ?4, ?5)")
                    .map_err(db)?;
                for j in &claimed {
                    open.execute(params![j.id, j.attempts, worker, ts(now), ts(lease_until)])
                        .map_err(db)?;
                }
            }
            tx.commit().map_err(db)?;
            claimed.sort_by_key(|j| (j.vt, j.id));
            Ok(claimed)
        })
        .await
    }

    async fn renew_leases(&self, worker: &str, lease_until: Timestamp) -> Result<Vec<i64>> {
        let worker = worker.to_owned();
        self.write(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db)?;
            let ids = {
                let mut stmt = tx.prepare_cached(&lite(sql::RENEW)).map_err(db)?;
                stmt.query_map(params![worker, ts(lease_until)], |r| r.get(0))
                    .map_err(db)?
                    .collect::<rusqlite::Result<Vec<i64>>>()
                    .map_err(db)?
            };
            tx.execute(&lite(sql::RENEW_ATTEMPTS), params![worker, ts(lease_until)])
                .map_err(db)?;
            tx.commit().map_err(db)?;
            Ok(ids)
        })
        .await
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
        let worker = worker.to_owned();
        let (applied, requeued_now) = self
            .write(move |conn| {
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(db)?;
                let mut applied = Vec::with_capacity(finishes.len());
                let mut requeued_now = false;
                {
                    let mut fin = tx.prepare_cached(&lite(sql::FINISH)).map_err(db)?;
                    let mut att = tx.prepare_cached(&lite(sql::FINISH_ATTEMPT)).map_err(db)?;
                    for f in &finishes {
                        let p = crate::jobs::finish_params(f, now);
                        let n = fin
                            .execute(params![
                                f.id,
                                worker,
                                f.attempt,
                                p.status,
                                p.result,
                                p.error,
                                p.run_at,
                                p.finished_at,
                                ts(now)
                            ])
                            .map_err(db)?;
                        if n == 1 {
                            att.execute(params![f.id, f.attempt, ts(now), p.outcome, p.error])
                                .map_err(db)?;
                            requeued_now |= p.run_at.is_some_and(|r| r <= ts(now));
                        }
                        applied.push(n == 1);
                    }
                }
                tx.commit().map_err(db)?;
                Ok((applied, requeued_now))
            })
            .await?;
        if requeued_now {
            self.wake();
        }
        Ok(applied)
    }

    async fn release_jobs(&self, worker: &str, ids: &[i64], now: Timestamp) -> Result<u64> {
        let (worker, ids) = (worker.to_owned(), ids.to_vec());
        let n = self
            .write(move |conn| {
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(db)?;
                let mut n = 0;
                {
                    let mut rel = tx.prepare_cached(&lite(sql::RELEASE)).map_err(db)?;
                    let mut att = tx.prepare_cached(&lite(sql::FINISH_ATTEMPT)).map_err(db)?;
                    for id in ids {
                        let attempt: Option<i32> = rel
                            .query_row(params![id, worker, ts(now)], |r| r.get(0))
                            .optional()
                            .map_err(db)?;
                        if let Some(a) = attempt {
                            att.execute(params![
                                id,
                                a,
                                ts(now),
                                AttemptOutcome::Released.as_str(),
                                Option::<String>::None
                            ])
                            .map_err(db)?;
                            n += 1;
                        }
                    }
                }
                tx.commit().map_err(db)?;
                Ok(n)
            })
            .await?;
        if n > 0 {
            self.wake();
        }
        Ok(n)
    }

    async fn expire_leases(&self, now: Timestamp) -> Result<Vec<ExpiredLease>> {
        let out = self
            .write(move |conn| {
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(db)?;
                let expired: Vec<(i64, String, String, i32, i32)> = {
                    let mut stmt = tx
                        .prepare_cached("SELECT id, kind, lease_owner, attempts, max_attempts FROM jobs WHERE status = 'running' AND lease_expires_at < ?1")
                        .map_err(db)?;
                    stmt.query_map([ts(now)], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get::<_, Option<String>>(2)?.unwrap_or_default(), r.get(3)?, r.get(4)?))
                    })
                    .map_err(db)?
                    .collect::<rusqlite::Result<_>>()
                    .map_err(db)?
                };
                let mut out = Vec::with_capacity(expired.len());
                {
                    let mut upd = tx
                        .prepare_cached("UPDATE jobs SET status = ?2, last_error = ?3, finished_at = ?4, lease_owner = NULL, lease_expires_at = NULL, updated_at = ?5 WHERE id = ?1 AND status = 'running'")
                        .map_err(db)?;
                    let mut att = tx.prepare_cached(&lite(sql::FINISH_ATTEMPT)).map_err(db)?;
                    for (id, kind, worker, attempts, max) in expired {
                        let status = if attempts >= max { JobStatus::Dead } else { JobStatus::Queued };
                        let finished = (status == JobStatus::Dead).then_some(ts(now));
                        upd.execute(params![id, status.as_str(), sql::LOST, finished, ts(now)])
                            .map_err(db)?;
                        att.execute(params![id, attempts, ts(now), AttemptOutcome::Lost.as_str(), sql::LOST])
                            .map_err(db)?;
                        out.push(ExpiredLease { id, kind, worker, status });
                    }
                }
                tx.commit().map_err(db)?;
                Ok(out)
            })
            .await?;
        if out.iter().any(|e| e.status == JobStatus::Queued) {
            self.wake();
        }
        Ok(out)
    }

    async fn get_job(&self, scope: Option<&Scope>, id: i64) -> Result<Option<JobRecord>> {
        self.read(|c| {
            let base = format!("SELECT {} FROM jobs WHERE id = ?1", sql::COLUMNS);
            match scope {
                Some(s) => c
                    .prepare_cached(&format!(
                        "{base} AND tenant_id = ?2 AND organization_id = ?3"
                    ))?
                    .query_row(
                        params![id, s.tenant_id.as_str(), s.organization_id.as_str()],
                        job,
                    )
                    .optional(),
                None => c.prepare_cached(&base)?.query_row([id], job).optional(),
            }
        })
    }

    async fn list_jobs(&self, q: &JobQuery) -> Result<JobPage> {
        let (clause, args) = list_filters(q);
        let count_sql = lite(&format!("SELECT COUNT(*) FROM jobs WHERE {clause}"));
        let mut page_clause = clause;
        let mut page_args = args.clone();
        if let Some(before) = q.before_id {
            page_args.push(crate::sql::Arg::Int(before));
            page_clause.push_str(&format!(" AND id < ${}", page_args.len()));
        }
        page_args.push(crate::sql::Arg::Int(i64::from(q.limit.clamp(1, 500))));
        let page_sql = lite(&format!(
            "SELECT {} FROM jobs WHERE {page_clause} ORDER BY id DESC LIMIT ${}",
            sql::COLUMNS,
            page_args.len()
        ));
        self.read(|c| {
            let total: i64 = if q.skip_total {
                0
            } else {
                c.prepare_cached(&count_sql)?
                    .query_row(params_from_iter(args.iter()), |r| r.get(0))?
            };
            let items = c
                .prepare_cached(&page_sql)?
                .query_map(params_from_iter(page_args.iter()), job)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(JobPage {
                items,
                total: u64::try_from(total).unwrap_or(0),
            })
        })
    }

    async fn count_jobs(&self, scope: Option<&Scope>) -> Result<Vec<(JobStatus, u64)>> {
        let rows: Vec<(String, i64)> = self.read(|c| match scope {
            Some(s) => c
                .prepare_cached(&lite(sql::COUNT_BY_STATUS_IN_SCOPE))?
                .query_map(
                    params![s.tenant_id.as_str(), s.organization_id.as_str()],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?
                .collect(),
            None => c
                .prepare_cached(sql::COUNT_BY_STATUS)?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect(),
        })?;
        Ok(rows
            .into_iter()
            .filter_map(|(s, n)| Some((JobStatus::parse(&s)?, u64::try_from(n).unwrap_or(0))))
            .collect())
    }

    async fn count_jobs_upto(&self, query: &JobQuery, cap: u64) -> Result<Vec<(JobStatus, u64)>> {
        let (sql, args) = capped_counts(query, cap);
        let sql = lite(&sql);
        let rows: Vec<(String, i64)> = self.read(|c| {
            c.prepare_cached(&sql)?
                .query_map(params_from_iter(args.iter()), |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?
                .collect()
        })?;
        Ok(rows
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .filter_map(|(s, n)| Some((JobStatus::parse(&s)?, u64::try_from(n).unwrap_or(0))))
            .collect())
    }

    async fn count_tenant_jobs(
        &self,
        tenant: Option<&patchbay_core::TenantId>,
    ) -> Result<Vec<(JobStatus, u64)>> {
        let rows: Vec<(String, i64)> = self.read(|c| match tenant {
            Some(t) => c
                .prepare_cached(&lite(sql::COUNT_BY_STATUS_OF_TENANT))?
                .query_map(params![t.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect(),
            None => c
                .prepare_cached(sql::COUNT_BY_STATUS_OF_PLATFORM)?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect(),
        })?;
        Ok(rows
            .into_iter()
            .filter_map(|(s, n)| Some((JobStatus::parse(&s)?, u64::try_from(n).unwrap_or(0))))
            .collect())
    }

    async fn list_attempts(&self, job_id: i64) -> Result<Vec<AttemptRecord>> {
        self.read(|c| {
            c.prepare_cached(&format!(
                "SELECT {} FROM job_attempts WHERE job_id = ?1 ORDER BY attempt",
                sql::ATTEMPT_COLUMNS
            ))?
            .query_map([job_id], attempt)?
            .collect()
        })
    }

    async fn retry_job(
        &self,
        scope: Option<&Scope>,
        id: i64,
        extra_attempts: i32,
        now: Timestamp,
    ) -> Result<bool> {
        let stmt = Self::scoped(sql::RETRY, sql::IN_SCOPE, scope);
        let scope = scope.cloned();
        let n = self
            .write(move |conn| {
                let n = match &scope {
                    Some(s) => conn.execute(
                        &stmt,
                        params![
                            id,
                            ts(now),
                            extra_attempts,
                            s.tenant_id.as_str(),
                            s.organization_id.as_str()
                        ],
                    ),
                    None => conn.execute(&stmt, params![id, ts(now), extra_attempts]),
                };
                n.map_err(|e| match db(e) {
                    StoreError::Conflict(_) => StoreError::Conflict(
                        "a job with the same unique key is already queued or running".to_owned(),
                    ),
                    other => other,
                })
            })
            .await?;
        if n == 1 {
            self.wake();
        }
        Ok(n == 1)
    }

    async fn cancel_job(&self, scope: Option<&Scope>, id: i64, now: Timestamp) -> Result<bool> {
        let stmt = Self::scoped(sql::CANCEL, sql::CANCEL_IN_SCOPE, scope);
        let scope = scope.cloned();
        let n = self
            .write(move |conn| {
                match &scope {
                    Some(s) => conn.execute(
                        &stmt,
                        params![
                            id,
                            ts(now),
                            s.tenant_id.as_str(),
                            s.organization_id.as_str()
                        ],
                    ),
                    None => conn.execute(&stmt, params![id, ts(now)]),
                }
                .map_err(db)
            })
            .await?;
        Ok(n == 1)
    }

    async fn prune_jobs(&self, finished_before: Timestamp, dead_before: Timestamp) -> Result<u64> {
        let mut total = 0u64;
        loop {
            let n = self
                .write(move |conn| {
                    conn.execute(
                        &lite(sql::PRUNE),
                        params![ts(finished_before), ts(dead_before)],
                    )
                    .map_err(db)
                })
                .await?;
            total += n as u64;
            if n < 5000 {
                return Ok(total);
            }
        }
    }

    fn job_wakeups(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.wake.subscribe()
    }

    async fn ensure_schedule(&self, s: ScheduleRecord) -> Result<bool> {
        self.write(move |conn| {
            conn.execute(
                &lite(sql::ENSURE_SCHEDULE),
                params![
                    s.name,
                    s.schedule,
                    s.queue,
                    s.kind,
                    s.payload,
                    s.enabled,
                    ts(s.next_run_at),
                    s.last_run_at.map(ts),
                    s.last_job_id,
                    ts(s.updated_at)
                ],
            )
            .map(|n| n == 1)
            .map_err(db)
        })
        .await
    }

    async fn list_schedules(&self) -> Result<Vec<ScheduleRecord>> {
        self.read(|c| {
            c.prepare_cached(&format!(
                "SELECT {} FROM job_schedules ORDER BY name",
                sql::SCHEDULE_COLUMNS
            ))?
            .query_map([], schedule)?
            .collect()
        })
    }

    async fn update_schedule(
        &self,
        name: &str,
        expr: &str,
        enabled: bool,
        next_run_at: Timestamp,
        now: Timestamp,
    ) -> Result<bool> {
        let (name, expr) = (name.to_owned(), expr.to_owned());
        self.write(move |conn| {
            conn.execute(
                &lite(sql::UPDATE_SCHEDULE),
                params![name, expr, enabled, ts(next_run_at), ts(now)],
            )
            .map(|n| n == 1)
            .map_err(db)
        })
        .await
    }

    async fn fire_schedule(
        &self,
        name: &str,
        expect_next: Timestamp,
        new_next: Timestamp,
        job: NewJob,
    ) -> Result<Option<i64>> {
        let name = name.to_owned();
        let now = job.created_at;
        let id = self
            .write(move |conn| {
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(db)?;
                let moved = tx
                    .execute(
                        &lite(sql::ADVANCE_SCHEDULE),
                        params![name, ts(expect_next), ts(new_next), ts(now)],
                    )
                    .map_err(db)?;
                if moved != 1 {
                    return Ok(None);
                }
                let id = insert_jobs(&tx, std::slice::from_ref(&job))?[0].id();
                tx.execute(&lite(sql::SET_SCHEDULE_JOB), params![name, id])
                    .map_err(db)?;
                tx.commit().map_err(db)?;
                Ok(Some(id))
            })
            .await?;
        if id.is_some() {
            self.wake();
        }
        Ok(id)
    }
}
