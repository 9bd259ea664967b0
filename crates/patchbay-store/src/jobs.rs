//! The durable job queue: jobs, their attempts and recurring schedules, in
//! the same database as everything else (SPEC: "Jobs" in the architecture).
//!
//! * **Claiming** takes queued jobs whose `run_at` has come, in fair order,
//!   and leases them to a worker until `lease_expires_at`. On PostgreSQL the
//!   claim uses `FOR UPDATE SKIP LOCKED`, so several processes claim without
//!   blocking each other or taking the same job; SQLite serves one process,
//!   whose single writer serialises claims.
//! * **Leases** are renewed by their worker while it works. A job whose lease
//!   expired (its worker died or hung) is put back in the queue, or declared
//!   dead when its attempts are used up; its open attempt is marked `lost`.
//!   A worker finishes a job only while it still holds the lease: a late
//!   finish from a worker that lost it changes nothing.
//! * **Fairness** between tenants comes from the `vt` (virtual time) column:
//!   a new job of a lane (a tenant; `""` for platform work) goes after that
//!   lane's own queued and running jobs, but never before the head of the
//!   queue. Claims take the lowest `vt` first, so lanes take turns: a tenant
//!   that enqueues 10,000 jobs delays another tenant's next job by about one
//!   job, not 10,000.
//! * **Unique jobs**: at most one queued or running job per `unique_key`;
//!   enqueueing a duplicate returns the existing job.
//! * **Wake-ups**: every enqueue (and every job put back in the queue) bumps
//!   a counter that workers watch, in-process on SQLite and through
//!   PostgreSQL `LISTEN/NOTIFY` across processes, so an idle worker picks up
//!   a new job at once instead of on its next poll.

use patchbay_core::{Scope, TenantId, Timestamp};

use crate::Result;

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobStatus {
    /// Waiting for its `run_at` and a free worker.
    Queued,
    /// Leased to a worker.
    Running,
    Succeeded,
    /// Failed for good: attempts used up, or a permanent failure. An admin may retry it.
    Dead,
    /// Cancelled while queued.
    Cancelled,
}

impl JobStatus {
    pub const ALL: [JobStatus; 5] = [
        JobStatus::Queued,
        JobStatus::Running,
        JobStatus::Succeeded,
        JobStatus::Dead,
        JobStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Dead => "dead",
            JobStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<JobStatus> {
        JobStatus::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// Whether the job has ended (nothing will run it again by itself).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobStatus::Succeeded | JobStatus::Dead | JobStatus::Cancelled
        )
    }
}

/// How one attempt of a job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    Succeeded,
    Failed,
    /// Its worker stopped renewing the lease (crashed, killed, cut off).
    Lost,
    /// Given back unfinished at a graceful shutdown; not counted as an attempt.
    Released,
}

impl AttemptOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Succeeded => "succeeded",
            AttemptOutcome::Failed => "failed",
            AttemptOutcome::Lost => "lost",
            AttemptOutcome::Released => "released",
        }
    }

    pub fn parse(s: &str) -> Option<AttemptOutcome> {
        [
            AttemptOutcome::Succeeded,
            AttemptOutcome::Failed,
            AttemptOutcome::Lost,
            AttemptOutcome::Released,
        ]
        .into_iter()
        .find(|x| x.as_str() == s)
    }
}

/// A job to enqueue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewJob {
    pub queue: String,
    pub kind: String,
    /// The tenant scope the job works for; `None` for platform work.
    pub scope: Option<Scope>,
    /// JSON text.
    pub payload: String,
    pub unique_key: Option<String>,
    pub run_at: Timestamp,
    pub max_attempts: i32,
    pub created_at: Timestamp,
}

impl NewJob {
    /// The fairness lane: the tenant, or `""` for platform work.
    pub fn lane(&self) -> &str {
        self.scope.as_ref().map_or("", |s| s.tenant_id.as_str())
    }
}

/// What enqueueing one job did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// A new job with this id.
    Created(i64),
    /// A queued or running job with the same unique key exists: this one.
    Existing(i64),
}

impl Enqueued {
    pub fn id(self) -> i64 {
        match self {
            Enqueued::Created(id) | Enqueued::Existing(id) => id,
        }
    }
}

/// A stored job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRecord {
    pub id: i64,
    pub queue: String,
    pub kind: String,
    pub scope: Option<Scope>,
    pub payload: String,
    pub unique_key: Option<String>,
    pub status: JobStatus,
    /// The job's place in the fair order of its queue.
    pub vt: i64,
    pub run_at: Timestamp,
    /// Attempts started so far. A release at shutdown counts here but adds
    /// one to `max_attempts`, so it costs the job nothing.
    pub attempts: i32,
    pub max_attempts: i32,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<Timestamp>,
    pub last_error: Option<String>,
    /// JSON text a successful handler returned.
    pub result: Option<String>,
    pub created_at: Timestamp,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    pub updated_at: Timestamp,
}

/// One attempt of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRecord {
    pub job_id: i64,
    pub attempt: i32,
    pub worker: String,
    pub started_at: Timestamp,
    /// The lease as last renewed.
    pub lease_expires_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    /// `None` while the attempt runs.
    pub outcome: Option<AttemptOutcome>,
    pub error: Option<String>,
}

/// How a worker ends the attempt it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinishOutcome {
    Succeeded {
        result: Option<String>,
    },
    /// Failed; queued again for `run_at`.
    Retry {
        error: String,
        run_at: Timestamp,
    },
    /// Failed for good.
    Dead {
        error: String,
    },
}

/// One finished attempt, reported by the worker that held the lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finish {
    pub id: i64,
    /// The attempt number the worker was given (`attempts` when claimed).
    pub attempt: i32,
    pub outcome: FinishOutcome,
}

/// A job put back in the queue, or declared dead, because its lease expired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiredLease {
    pub id: i64,
    pub kind: String,
    pub worker: String,
    pub status: JobStatus,
}

/// A filter over jobs, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobQuery {
    /// Only this scope's jobs; `None` for every job (platform admins).
    pub scope: Option<Scope>,
    /// With `scope: None`: only platform jobs (no tenant) when `Some(None)`,
    /// only this tenant's when `Some(Some(t))`.
    pub tenant: Option<Option<TenantId>>,
    pub status: Option<JobStatus>,
    pub kind: Option<String>,
    pub queue: Option<String>,
    /// Jobs with an id below this (the next page).
    pub before_id: Option<i64>,
    pub limit: u32,
    /// Leave [`JobPage::total`] at 0 (the caller knows it from
    /// [`JobStore::count_jobs`]; counting a large scope twice costs).
    pub skip_total: bool,
}

/// One page of jobs and how many match in all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobPage {
    pub items: Vec<JobRecord>,
    pub total: u64,
}

/// A recurring job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleRecord {
    pub name: String,
    /// The schedule expression (`every 15m`, a cron line), as `patchbay_core::Schedule` reads it.
    pub schedule: String,
    pub queue: String,
    pub kind: String,
    /// JSON text.
    pub payload: String,
    pub enabled: bool,
    pub next_run_at: Timestamp,
    pub last_run_at: Option<Timestamp>,
    pub last_job_id: Option<i64>,
    pub updated_at: Timestamp,
}

/// The durable job queue, on either backend.
#[async_trait::async_trait]
pub trait JobStore: Send + Sync {
    /// Enqueues jobs in one transaction and wakes the workers.
    async fn enqueue_jobs(&self, jobs: Vec<NewJob>) -> Result<Vec<Enqueued>>;

    /// Leases up to `limit` due jobs of `queue` to `worker`, in fair order,
    /// and opens an attempt for each.
    async fn claim_jobs(
        &self,
        queue: &str,
        worker: &str,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
    ) -> Result<Vec<JobRecord>>;

    /// Extends the leases of every job `worker` holds; returns their ids
    /// (a job missing from the answer was lost and must not go on).
    async fn renew_leases(&self, worker: &str, lease_until: Timestamp) -> Result<Vec<i64>>;

    /// Ends attempts. Each is applied only if `worker` still holds the job
    /// with that attempt number; returns, per finish, whether it was.
    async fn finish_jobs(
        &self,
        worker: &str,
        now: Timestamp,
        finishes: Vec<Finish>,
    ) -> Result<Vec<bool>>;

    /// Gives running jobs back to the queue unfinished (graceful shutdown);
    /// the attempt is not counted. Returns how many were given back.
    async fn release_jobs(&self, worker: &str, ids: &[i64], now: Timestamp) -> Result<u64>;

    /// Puts back (or declares dead) every running job whose lease expired
    /// before `now`, marking its open attempt lost.
    async fn expire_leases(&self, now: Timestamp) -> Result<Vec<ExpiredLease>>;

    /// A job, within `scope` when given.
    async fn get_job(&self, scope: Option<&Scope>, id: i64) -> Result<Option<JobRecord>>;
    async fn list_jobs(&self, query: &JobQuery) -> Result<JobPage>;
    /// How many jobs of each status, within `scope` when given.
    async fn count_jobs(&self, scope: Option<&Scope>) -> Result<Vec<(JobStatus, u64)>>;
    /// How many jobs of each status match `query` (its status, cursor and
    /// limit aside), counting each status only up to `cap`: the cost stays
    /// bounded however many jobs there are (a count equal to `cap` means
    /// "at least").
    async fn count_jobs_upto(&self, query: &JobQuery, cap: u64) -> Result<Vec<(JobStatus, u64)>>;
    /// How many jobs of each status one tenant has (every organization),
    /// or, with `None`, the platform (jobs of no tenant).
    async fn count_tenant_jobs(&self, tenant: Option<&TenantId>) -> Result<Vec<(JobStatus, u64)>>;
    async fn list_attempts(&self, job_id: i64) -> Result<Vec<AttemptRecord>>;

    /// Queues a dead job again with `extra_attempts` more attempts. Returns
    /// false when there is no such dead job; a conflict when a job with the
    /// same unique key is queued or running.
    async fn retry_job(
        &self,
        scope: Option<&Scope>,
        id: i64,
        extra_attempts: i32,
        now: Timestamp,
    ) -> Result<bool>;
    /// Cancels a queued job. Returns false when there is no such queued job.
    async fn cancel_job(&self, scope: Option<&Scope>, id: i64, now: Timestamp) -> Result<bool>;

    /// Deletes succeeded and cancelled jobs that finished before
    /// `finished_before`, and dead ones before `dead_before`.
    async fn prune_jobs(&self, finished_before: Timestamp, dead_before: Timestamp) -> Result<u64>;

    /// A counter bumped whenever jobs may have become claimable.
    fn job_wakeups(&self) -> tokio::sync::watch::Receiver<u64>;

    /// Inserts a schedule unless one of that name exists; returns whether it did.
    async fn ensure_schedule(&self, schedule: ScheduleRecord) -> Result<bool>;
    async fn list_schedules(&self) -> Result<Vec<ScheduleRecord>>;
    /// Changes a schedule's expression, on/off and next run. False if unknown.
    async fn update_schedule(
        &self,
        name: &str,
        schedule: &str,
        enabled: bool,
        next_run_at: Timestamp,
        now: Timestamp,
    ) -> Result<bool>;
    /// Moves a due schedule from `expect_next` to `new_next` and enqueues
    /// its job, in one transaction; `None` if another process did first.
    async fn fire_schedule(
        &self,
        name: &str,
        expect_next: Timestamp,
        new_next: Timestamp,
        job: NewJob,
    ) -> Result<Option<i64>>;
}

/// The statements both backends share (`$N` placeholders; SQLite runs them
/// through `statements::lite`). Status literals are written inline so that
/// the planners can use the partial indexes.
pub(crate) mod sql {
    pub(crate) const COLUMNS: &str = "id, queue, kind, tenant_id, organization_id, payload, unique_key, status, vt, run_at, attempts, max_attempts, lease_owner, lease_expires_at, last_error, result, created_at, started_at, finished_at, updated_at";
    pub(crate) const ATTEMPT_COLUMNS: &str =
        "job_id, attempt, worker, started_at, lease_expires_at, finished_at, outcome, error";
    pub(crate) const SCHEDULE_COLUMNS: &str = "name, schedule, queue, kind, payload, enabled, next_run_at, last_run_at, last_job_id, updated_at";

    /// The lowest virtual time queued in a queue.
    pub(crate) const QUEUE_HEAD: &str =
        "SELECT (SELECT vt FROM jobs WHERE status = 'queued' AND queue = $1 ORDER BY vt LIMIT 1)";
    /// The highest virtual time of a lane's queued and running jobs.
    /// (`ORDER BY … LIMIT 1` rather than `MAX`: PostgreSQL then reads one
    /// index entry even before the table has statistics.)
    pub(crate) const LANE_TAIL: &str = "SELECT (SELECT vt FROM jobs WHERE queue = $1 AND lane = $2 AND status IN ('queued', 'running') ORDER BY vt DESC LIMIT 1)";
    pub(crate) const INSERT: &str = "INSERT INTO jobs (queue, kind, tenant_id, organization_id, lane, payload, unique_key, status, vt, run_at, attempts, max_attempts, created_at, updated_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, 'queued', $8, $9, 0, $10, $11, $11)
        ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL AND status IN ('queued', 'running') DO NOTHING
        RETURNING id";
    pub(crate) const FIND_ACTIVE: &str =
        "SELECT id FROM jobs WHERE unique_key = $1 AND status IN ('queued', 'running')";

    pub(crate) const RENEW: &str = "UPDATE jobs SET lease_expires_at = $2 WHERE status = 'running' AND lease_owner = $1 RETURNING id";
    pub(crate) const RENEW_ATTEMPTS: &str =
        "UPDATE job_attempts SET lease_expires_at = $2 WHERE worker = $1 AND finished_at IS NULL";

    /// Ends an attempt if the worker still holds the job with that attempt number.
    pub(crate) const FINISH: &str =
        "UPDATE jobs SET status = $4, result = $5, last_error = $6, run_at = COALESCE($7, run_at),
          finished_at = $8, lease_owner = NULL, lease_expires_at = NULL, updated_at = $9
        WHERE id = $1 AND status = 'running' AND lease_owner = $2 AND attempts = $3";
    pub(crate) const FINISH_ATTEMPT: &str = "UPDATE job_attempts SET finished_at = $3, outcome = $4, error = $5 WHERE job_id = $1 AND attempt = $2 AND finished_at IS NULL";

    pub(crate) const RELEASE: &str = "UPDATE jobs SET status = 'queued', max_attempts = max_attempts + 1, lease_owner = NULL, lease_expires_at = NULL, updated_at = $3
        WHERE id = $1 AND status = 'running' AND lease_owner = $2 RETURNING attempts";

    pub(crate) const LOST: &str =
        "its worker stopped renewing the lease (crashed, killed or cut off)";

    pub(crate) const RETRY: &str = "UPDATE jobs SET status = 'queued', run_at = $2, max_attempts = attempts + $3, finished_at = NULL, updated_at = $2 WHERE id = $1 AND status = 'dead'";
    pub(crate) const CANCEL: &str = "UPDATE jobs SET status = 'cancelled', finished_at = $2, updated_at = $2 WHERE id = $1 AND status = 'queued'";
    /// Scope conditions appended to RETRY and CANCEL.
    pub(crate) const IN_SCOPE: &str = " AND tenant_id = $4 AND organization_id = $5";
    pub(crate) const CANCEL_IN_SCOPE: &str = " AND tenant_id = $3 AND organization_id = $4";

    /// One batch of old finished jobs (their attempts go with them).
    pub(crate) const PRUNE: &str = "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs
        WHERE (status IN ('succeeded', 'cancelled') AND finished_at < $1) OR (status = 'dead' AND finished_at < $2) LIMIT 5000)";

    pub(crate) const COUNT_BY_STATUS: &str =
        "SELECT status, COUNT(*) AS n FROM jobs GROUP BY status";
    pub(crate) const COUNT_BY_STATUS_OF_TENANT: &str =
        "SELECT status, COUNT(*) AS n FROM jobs WHERE tenant_id = $1 GROUP BY status";
    pub(crate) const COUNT_BY_STATUS_OF_PLATFORM: &str =
        "SELECT status, COUNT(*) AS n FROM jobs WHERE tenant_id IS NULL GROUP BY status";
    pub(crate) const COUNT_BY_STATUS_IN_SCOPE: &str = "SELECT status, COUNT(*) AS n FROM jobs WHERE tenant_id = $1 AND organization_id = $2 GROUP BY status";

    pub(crate) const ENSURE_SCHEDULE: &str = "INSERT INTO job_schedules (name, schedule, queue, kind, payload, enabled, next_run_at, last_run_at, last_job_id, updated_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (name) DO NOTHING";
    pub(crate) const UPDATE_SCHEDULE: &str = "UPDATE job_schedules SET schedule = $2, enabled = $3, next_run_at = $4, updated_at = $5 WHERE name = $1";
    /// The compare-and-set that makes one process, and only one, run a period.
    pub(crate) const ADVANCE_SCHEDULE: &str =
        "UPDATE job_schedules SET next_run_at = $3, last_run_at = $4, updated_at = $4
        WHERE name = $1 AND next_run_at = $2 AND enabled";
    pub(crate) const SET_SCHEDULE_JOB: &str =
        "UPDATE job_schedules SET last_job_id = $2 WHERE name = $1";
}

/// The statement of [`JobStore::count_jobs_upto`]: one row per status,
/// `(status, n)`, each count a bounded index range scan.
pub(crate) fn capped_counts(q: &JobQuery, cap: u64) -> (String, Vec<crate::sql::Arg>) {
    let filter = JobQuery {
        status: None,
        before_id: None,
        ..q.clone()
    };
    let (clause, mut args) = list_filters(&filter);
    args.push(crate::sql::Arg::Int(i64::try_from(cap).unwrap_or(i64::MAX)));
    let cap_arg = args.len();
    let sql = JobStatus::ALL
        .iter()
        .map(|st| {
            format!(
                "SELECT '{s}' AS status, (SELECT COUNT(*) FROM (SELECT 1 FROM jobs WHERE {clause} AND status = '{s}' LIMIT ${cap_arg}) AS c) AS n",
                s = st.as_str()
            )
        })
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    (sql, args)
}

/// The WHERE clause and arguments of a job listing (`$1`… placeholders).
pub(crate) fn list_filters(q: &JobQuery) -> (String, Vec<crate::sql::Arg>) {
    use crate::sql::Arg;
    use std::fmt::Write as _;
    fn push(clause: &mut String, args: &mut Vec<Arg>, cond: &str, a: Arg) {
        args.push(a);
        let _ = write!(clause, " AND {cond} ${}", args.len());
    }
    let mut clause = String::from("1 = 1");
    let mut args = Vec::new();
    if let Some(s) = &q.scope {
        push(
            &mut clause,
            &mut args,
            "tenant_id =",
            Arg::Text(s.tenant_id.to_string()),
        );
        push(
            &mut clause,
            &mut args,
            "organization_id =",
            Arg::Text(s.organization_id.to_string()),
        );
    } else {
        match &q.tenant {
            Some(Some(t)) => push(
                &mut clause,
                &mut args,
                "tenant_id =",
                Arg::Text(t.to_string()),
            ),
            Some(None) => clause.push_str(" AND tenant_id IS NULL"),
            None => {}
        }
    }
    if let Some(s) = q.status {
        // A literal: lets the planner use the status index.
        let _ = write!(clause, " AND status = '{}'", s.as_str());
    }
    if let Some(k) = &q.kind {
        push(&mut clause, &mut args, "kind =", Arg::Text(k.clone()));
    }
    if let Some(qu) = &q.queue {
        push(&mut clause, &mut args, "queue =", Arg::Text(qu.clone()));
    }
    (clause, args)
}

/// The column values of a finish.
pub(crate) struct FinishParams {
    pub status: &'static str,
    pub outcome: &'static str,
    pub result: Option<String>,
    pub error: Option<String>,
    pub run_at: Option<i64>,
    pub finished_at: Option<i64>,
}

pub(crate) fn finish_params(f: &Finish, now: Timestamp) -> FinishParams {
    match &f.outcome {
        FinishOutcome::Succeeded { result } => FinishParams {
            status: JobStatus::Succeeded.as_str(),
            outcome: AttemptOutcome::Succeeded.as_str(),
            result: result.clone(),
            error: None,
            run_at: None,
            finished_at: Some(crate::sql::ts(now)),
        },
        FinishOutcome::Retry { error, run_at } => FinishParams {
            status: JobStatus::Queued.as_str(),
            outcome: AttemptOutcome::Failed.as_str(),
            result: None,
            error: Some(error.clone()),
            run_at: Some(crate::sql::ts(*run_at)),
            finished_at: None,
        },
        FinishOutcome::Dead { error } => FinishParams {
            status: JobStatus::Dead.as_str(),
            outcome: AttemptOutcome::Failed.as_str(),
            result: None,
            error: Some(error.clone()),
            run_at: None,
            finished_at: Some(crate::sql::ts(now)),
        },
    }
}
