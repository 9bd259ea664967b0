//! Background jobs as the API and the panel see them: the kinds Patchbay
//! runs, enqueueing, listing, retrying dead jobs, cancelling queued ones, and
//! the recurring schedules. The workers that run them are in [`crate::worker`].
//!
//! Invariant: a job's payload holds ids and options, never a secret (a
//! handler resolves credentials itself, when it runs), so payloads may be
//! shown to whoever may see the job.

use patchbay_core::{Schedule, Scope, TenantId, Timestamp};
use patchbay_store::{
    AttemptRecord, Enqueued, JobQuery, JobRecord, JobStatus, NewJob, ScheduleRecord, StoreError,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::auth::{Access, Caller, Feature};
use crate::error::{FieldError, Result, ServiceError};
use crate::{Services, audit};

/// The queues, with the default number of jobs each process runs at once.
pub const QUEUES: [(&str, usize); 4] = [
    ("default", 8),
    ("health", 4),
    ("maintenance", 1),
    // Long data-sync runs, apart so they never hold the other queues' slots.
    ("sync", 2),
];

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobKind {
    /// Does nothing (or sleeps, or fails, as its payload says): checks and
    /// measures the workers.
    Noop,
    /// Runs one integration's health check.
    HealthCheck,
    /// Enqueues a health check for every enabled integration of every tenant.
    HealthSweep,
    /// Applies every tenant's operation-log retention.
    LogsPrune,
    /// Deletes old finished jobs, expired panel sessions and usage hours
    /// past their retention.
    JobsPrune,
    /// Runs (or resumes) one data-sync run.
    SyncRun,
}

impl JobKind {
    pub const ALL: [JobKind; 6] = [
        JobKind::Noop,
        JobKind::HealthCheck,
        JobKind::HealthSweep,
        JobKind::LogsPrune,
        JobKind::JobsPrune,
        JobKind::SyncRun,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Noop => "noop",
            JobKind::HealthCheck => "health.check",
            JobKind::HealthSweep => "health.sweep",
            JobKind::LogsPrune => "logs.prune",
            JobKind::JobsPrune => "jobs.prune",
            JobKind::SyncRun => "sync.run",
        }
    }

    pub fn parse(s: &str) -> Option<JobKind> {
        JobKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    pub fn queue(self) -> &'static str {
        match self {
            JobKind::Noop => "default",
            JobKind::HealthCheck => "health",
            JobKind::HealthSweep | JobKind::LogsPrune | JobKind::JobsPrune => "maintenance",
            JobKind::SyncRun => "sync",
        }
    }

    pub fn max_attempts(self) -> i32 {
        match self {
            JobKind::Noop => 5,
            // A run resumes from its cursor: a crash or a provider outage
            // costs an attempt, not the run.
            JobKind::SyncRun => 25,
            _ => 3,
        }
    }

    /// How long one attempt may run before it is abandoned as failed.
    pub fn timeout(self) -> std::time::Duration {
        std::time::Duration::from_secs(match self {
            // The check itself is bounded by the manifest (10 s by default, at most 60).
            JobKind::HealthCheck => 75,
            JobKind::Noop => 30,
            JobKind::HealthSweep => 120,
            JobKind::LogsPrune | JobKind::JobsPrune => 600,
            // An attempt that runs out of time resumes from its cursor.
            JobKind::SyncRun => 3600,
        })
    }
}

/// A job to enqueue.
#[derive(Debug, Clone)]
pub struct JobSpec {
    pub kind: JobKind,
    pub scope: Option<Scope>,
    pub payload: Value,
    pub unique_key: Option<String>,
    pub run_at: Option<Timestamp>,
}

impl JobSpec {
    pub fn new(kind: JobKind, scope: Option<Scope>, payload: Value) -> JobSpec {
        JobSpec {
            kind,
            scope,
            payload,
            unique_key: None,
            run_at: None,
        }
    }

    pub(crate) fn into_new_job(self, now: Timestamp) -> NewJob {
        NewJob {
            queue: self.kind.queue().to_owned(),
            kind: self.kind.as_str().to_owned(),
            scope: self.scope,
            payload: self.payload.to_string(),
            unique_key: self.unique_key,
            run_at: self.run_at.unwrap_or(now),
            max_attempts: self.kind.max_attempts(),
            created_at: now,
        }
    }
}

/// The built-in recurring jobs: (name, default schedule, kind).
pub const BUILTIN_SCHEDULES: [(&str, &str, JobKind); 3] = [
    ("health.sweep", "every 15m", JobKind::HealthSweep),
    ("logs.prune", "every 1h", JobKind::LogsPrune),
    ("jobs.prune", "every 1h", JobKind::JobsPrune),
];

/// How long finished jobs are kept: succeeded and cancelled ones, then dead ones.
pub const KEEP_FINISHED_DAYS: i64 = 7;
pub const KEEP_DEAD_DAYS: i64 = 30;

/// One attempt of a job, as shown.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AttemptOut {
    pub attempt: i32,
    /// The worker (process) that ran it.
    pub worker: String,
    pub started_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    /// `succeeded`, `failed`, `lost` (its worker stopped renewing the lease),
    /// `released` (given back at a graceful shutdown); `null` while running.
    pub outcome: Option<&'static str>,
    pub error: Option<String>,
}

impl From<AttemptRecord> for AttemptOut {
    fn from(a: AttemptRecord) -> Self {
        AttemptOut {
            attempt: a.attempt,
            worker: a.worker,
            started_at: a.started_at,
            finished_at: a.finished_at,
            outcome: a.outcome.map(patchbay_store::AttemptOutcome::as_str),
            error: a.error,
        }
    }
}

/// A job as the API shows it.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobOut {
    pub id: i64,
    pub kind: String,
    pub queue: String,
    /// `queued`, `running`, `succeeded`, `dead` or `cancelled`.
    pub status: &'static str,
    /// `null` for platform work.
    pub tenant_id: Option<String>,
    pub organization_id: Option<String>,
    /// The integration the job works on, when it works on one.
    pub integration_id: Option<String>,
    pub payload: Value,
    pub attempts: i32,
    pub max_attempts: i32,
    pub run_at: Timestamp,
    pub created_at: Timestamp,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    pub last_error: Option<String>,
    pub result: Option<Value>,
    /// The worker holding the job while it runs.
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<Timestamp>,
    /// Every attempt, oldest first (only on `GET /api/jobs/{id}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<Vec<AttemptOut>>,
}

pub(crate) fn job_out(j: JobRecord) -> JobOut {
    let payload: Value = serde_json::from_str(&j.payload).unwrap_or(Value::Null);
    JobOut {
        id: j.id,
        integration_id: payload
            .get("integrationId")
            .and_then(Value::as_str)
            .map(str::to_owned),
        payload,
        kind: j.kind,
        queue: j.queue,
        status: j.status.as_str(),
        tenant_id: j.scope.as_ref().map(|s| s.tenant_id.to_string()),
        organization_id: j.scope.as_ref().map(|s| s.organization_id.to_string()),
        attempts: j.attempts,
        max_attempts: j.max_attempts,
        run_at: j.run_at,
        created_at: j.created_at,
        started_at: j.started_at,
        finished_at: j.finished_at,
        last_error: j.last_error,
        result: j
            .result
            .as_deref()
            .and_then(|r| serde_json::from_str(r).ok()),
        lease_owner: j.lease_owner,
        lease_expires_at: j.lease_expires_at,
        history: None,
    }
}

/// Filters of `GET /api/jobs`.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct JobQueryIn {
    /// `queued`, `running`, `succeeded`, `dead` or `cancelled`.
    pub status: Option<String>,
    pub kind: Option<String>,
    pub queue: Option<String>,
    /// Platform admins: one tenant's jobs, or `platform` for platform work only.
    pub tenant_id: Option<String>,
    /// The `nextCursor` of the previous page.
    pub cursor: Option<i64>,
    /// 1–200 (default 50).
    pub limit: Option<u32>,
}

/// A page of jobs, newest first.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobPageOut {
    pub items: Vec<JobOut>,
    pub total: u64,
    /// Pass as `cursor` for the next page; `null` on the last.
    pub next_cursor: Option<i64>,
    /// How many jobs of each status (within the same tenant filter).
    pub counts: std::collections::BTreeMap<String, u64>,
    /// Set when counts were taken only up to this number (the panel's
    /// listing): a count equal to it, and then `total`, mean "at least".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub counted_up_to: Option<u64>,
}

/// How far the panel counts jobs per status: exact counts cost a scan of
/// every job of the scope; beyond this the panel shows "10,000+".
pub const PANEL_COUNT_LIMIT: u64 = 10_000;

/// A recurring job, as shown.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleOut {
    pub name: String,
    /// `every 15m`, or a five-field cron line (UTC).
    pub schedule: String,
    pub kind: String,
    pub queue: String,
    pub enabled: bool,
    pub next_run_at: Timestamp,
    pub last_run_at: Option<Timestamp>,
    pub last_job_id: Option<i64>,
}

impl From<ScheduleRecord> for ScheduleOut {
    fn from(s: ScheduleRecord) -> Self {
        ScheduleOut {
            name: s.name,
            schedule: s.schedule,
            kind: s.kind,
            queue: s.queue,
            enabled: s.enabled,
            next_run_at: s.next_run_at,
            last_run_at: s.last_run_at,
            last_job_id: s.last_job_id,
        }
    }
}

/// A change to a schedule.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ScheduleIn {
    /// `every <n>s|m|h|d`, `@hourly`/`@daily`/…, or a five-field cron line (UTC).
    pub schedule: Option<String>,
    pub enabled: Option<bool>,
}

fn not_found(id: i64) -> ServiceError {
    ServiceError::NotFound(format!("no job {id}"))
}

impl Services {
    /// Enqueues jobs (one transaction) and wakes the workers.
    pub async fn enqueue(&self, specs: Vec<JobSpec>) -> Result<Vec<Enqueued>> {
        let now = self.now();
        let jobs = specs.into_iter().map(|s| s.into_new_job(now)).collect();
        Ok(self.store().enqueue_jobs(jobs).await?)
    }

    /// The scope a caller sees jobs in: a tenant's, or all (platform admins).
    fn job_scope(caller: &Caller, feature: Feature) -> Result<Option<&Scope>> {
        match &caller.access {
            Access::Tenant(s) => {
                caller.require(feature)?;
                Ok(Some(s))
            }
            Access::Platform => {
                caller.require(Feature::PlatformAdmin)?;
                Ok(None)
            }
        }
    }

    /// Jobs of the caller's tenant (platform admins: every job), newest first.
    pub async fn list_jobs(&self, caller: &Caller, q: JobQueryIn) -> Result<JobPageOut> {
        self.list_jobs_counting(caller, q, None).await
    }

    /// Like [`Services::list_jobs`], counting each status only up to
    /// `count_limit` when given (bounded cost however many jobs there are).
    pub async fn list_jobs_counting(
        &self,
        caller: &Caller,
        q: JobQueryIn,
        count_limit: Option<u64>,
    ) -> Result<JobPageOut> {
        let scope = Self::job_scope(caller, Feature::IntegrationsView)?;
        let mut errors = Vec::new();
        let status = match q.status.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            None => None,
            Some(s) => {
                let parsed = JobStatus::parse(s);
                if parsed.is_none() {
                    errors.push(FieldError::new(
                        "status",
                        "invalid_value",
                        "must be one of queued, running, succeeded, dead, cancelled",
                    ));
                }
                parsed
            }
        };
        let limit = crate::error::page_limit(q.limit, &mut errors);
        let tenant = match (scope, q.tenant_id.as_deref()) {
            (_, None) => None,
            (Some(_), Some(_)) => {
                errors.push(FieldError::new(
                    "tenantId",
                    "not_allowed",
                    "only platform admins filter by tenant",
                ));
                None
            }
            (None, Some("platform")) => Some(None),
            (None, Some(t)) => Some(Some(TenantId::new(t))),
        };
        if !errors.is_empty() {
            return Err(ServiceError::invalid("the job filters are invalid", errors));
        }
        let nonempty = |s: Option<String>| s.filter(|v| !v.trim().is_empty());
        let kind = nonempty(q.kind);
        let queue = nonempty(q.queue);
        // Without kind or queue filters the total is known from the counts.
        let from_counts = kind.is_none() && queue.is_none();
        let query = JobQuery {
            scope: scope.cloned(),
            tenant,
            status,
            kind,
            queue,
            before_id: q.cursor,
            limit,
            skip_total: from_counts || count_limit.is_some(),
        };
        let page = self.store().list_jobs(&query).await?;
        let counts = match (count_limit, &query.tenant) {
            (Some(cap), _) => self.store().count_jobs_upto(&query, cap).await?,
            // A platform admin's tenant filter: count within it.
            (None, Some(tenant)) => self.store().count_tenant_jobs(tenant.as_ref()).await?,
            (None, None) => self.store().count_jobs(scope).await?,
        }
        .into_iter()
        .map(|(s, n)| (s.as_str().to_owned(), n))
        .collect::<std::collections::BTreeMap<String, u64>>();
        // Capped counts follow every filter, so they give the total too.
        let from_counts = from_counts || count_limit.is_some();
        let total = if from_counts {
            match status {
                Some(s) => counts.get(s.as_str()).copied().unwrap_or(0),
                None => counts.values().sum(),
            }
        } else {
            page.total
        };
        let next_cursor = (page.items.len() == limit as usize)
            .then(|| page.items.last().map(|j| j.id))
            .flatten();
        Ok(JobPageOut {
            items: page.items.into_iter().map(job_out).collect(),
            total,
            next_cursor,
            counts,
            counted_up_to: count_limit,
        })
    }

    /// One job with every attempt.
    pub async fn get_job(&self, caller: &Caller, id: i64) -> Result<JobOut> {
        let scope = Self::job_scope(caller, Feature::IntegrationsView)?;
        self.job_with_history(scope, id).await
    }

    async fn job_with_history(&self, scope: Option<&Scope>, id: i64) -> Result<JobOut> {
        let job = self
            .store()
            .get_job(scope, id)
            .await?
            .ok_or_else(|| not_found(id))?;
        let history = self
            .store()
            .list_attempts(id)
            .await?
            .into_iter()
            .map(AttemptOut::from)
            .collect();
        let mut out = job_out(job);
        out.history = Some(history);
        Ok(out)
    }

    /// Queues a dead job again, with its kind's attempts.
    pub async fn retry_job(&self, caller: &Caller, id: i64) -> Result<JobOut> {
        self.audited(caller, "job.retry", &id.to_string(), async {
            let scope = Self::job_scope(caller, Feature::IntegrationsManage)?;
            let job = self
                .store()
                .get_job(scope, id)
                .await?
                .ok_or_else(|| not_found(id))?;
            if job.status != JobStatus::Dead {
                return Err(ServiceError::conflict(
                    "job_not_dead",
                    format!(
                        "job {id} is {}; only dead jobs can be retried",
                        job.status.as_str()
                    ),
                ));
            }
            let extra = JobKind::parse(&job.kind).map_or(3, JobKind::max_attempts);
            let now = self.now();
            let retried = match self.store().retry_job(scope, id, extra, now).await {
                Ok(r) => r,
                Err(StoreError::Conflict(m)) => {
                    return Err(ServiceError::conflict("job_duplicate", m));
                }
                Err(e) => return Err(e.into()),
            };
            if !retried {
                return Err(ServiceError::conflict(
                    "job_not_dead",
                    format!("job {id} changed meanwhile; only dead jobs can be retried"),
                ));
            }
            self.store()
                .apply(vec![audit::success(
                    caller,
                    job.scope.as_ref(),
                    "job.retry",
                    &id.to_string(),
                    Some(serde_json::json!({ "kind": job.kind })),
                    now,
                )])
                .await?;
            self.job_with_history(scope, id).await
        })
        .await
    }

    /// Cancels a queued job.
    pub async fn cancel_job(&self, caller: &Caller, id: i64) -> Result<JobOut> {
        self.audited(caller, "job.cancel", &id.to_string(), async {
            let scope = Self::job_scope(caller, Feature::IntegrationsManage)?;
            let job = self
                .store()
                .get_job(scope, id)
                .await?
                .ok_or_else(|| not_found(id))?;
            let now = self.now();
            if job.status != JobStatus::Queued || !self.store().cancel_job(scope, id, now).await? {
                return Err(ServiceError::conflict(
                    "job_not_queued",
                    format!(
                        "job {id} is {}; only queued jobs can be cancelled",
                        self.store()
                            .get_job(scope, id)
                            .await?
                            .map_or(job.status, |j| j.status)
                            .as_str()
                    ),
                ));
            }
            self.store()
                .apply(vec![audit::success(
                    caller,
                    job.scope.as_ref(),
                    "job.cancel",
                    &id.to_string(),
                    Some(serde_json::json!({ "kind": job.kind })),
                    now,
                )])
                .await?;
            self.job_with_history(scope, id).await
        })
        .await
    }

    /// Creates the built-in schedules that do not exist yet.
    pub async fn ensure_builtin_schedules(&self) -> Result<()> {
        let now = self.now();
        for (name, expr, kind) in BUILTIN_SCHEDULES {
            let schedule = Schedule::parse(expr).map_err(|e| ServiceError::internal(&e))?;
            self.store()
                .ensure_schedule(ScheduleRecord {
                    name: name.to_owned(),
                    schedule: schedule.to_string(),
                    queue: kind.queue().to_owned(),
                    kind: kind.as_str().to_owned(),
                    payload: "{}".to_owned(),
                    enabled: true,
                    next_run_at: schedule.next_after(now).unwrap_or(now),
                    last_run_at: None,
                    last_job_id: None,
                    updated_at: now,
                })
                .await?;
        }
        Ok(())
    }

    /// The recurring jobs (platform admins).
    pub async fn list_schedules(&self, caller: &Caller) -> Result<Vec<ScheduleOut>> {
        caller.require(Feature::PlatformAdmin)?;
        Ok(self
            .store()
            .list_schedules()
            .await?
            .into_iter()
            .map(ScheduleOut::from)
            .collect())
    }

    /// Changes a schedule's expression or turns it on or off (platform admins).
    pub async fn update_schedule(
        &self,
        caller: &Caller,
        name: &str,
        input: ScheduleIn,
    ) -> Result<ScheduleOut> {
        self.audited(caller, "schedule.update", name, async {
            caller.require(Feature::PlatformAdmin)?;
            let current = self
                .store()
                .list_schedules()
                .await?
                .into_iter()
                .find(|s| s.name == name)
                .ok_or_else(|| ServiceError::NotFound(format!("no schedule `{name}`")))?;
            let expr = input.schedule.as_deref().unwrap_or(&current.schedule);
            let schedule = Schedule::parse(expr).map_err(|e| {
                ServiceError::invalid(
                    "the schedule is invalid",
                    vec![FieldError::new(
                        "schedule",
                        "invalid_schedule",
                        e.to_string(),
                    )],
                )
            })?;
            let enabled = input.enabled.unwrap_or(current.enabled);
            let now = self.now();
            let next = schedule.next_after(now).ok_or_else(|| {
                ServiceError::invalid(
                    "the schedule is invalid",
                    vec![FieldError::new(
                        "schedule",
                        "never_fires",
                        "the schedule never fires",
                    )],
                )
            })?;
            self.store()
                .update_schedule(name, &schedule.to_string(), enabled, next, now)
                .await?;
            self.store()
                .apply(vec![audit::success(
                    caller,
                    None,
                    "schedule.update",
                    name,
                    Some(
                        serde_json::json!({ "schedule": schedule.to_string(), "enabled": enabled }),
                    ),
                    now,
                )])
                .await?;
            self.list_schedules(caller)
                .await?
                .into_iter()
                .find(|s| s.name == name)
                .ok_or_else(|| ServiceError::NotFound(format!("no schedule `{name}`")))
        })
        .await
    }
}
