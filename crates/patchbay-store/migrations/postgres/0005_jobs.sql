-- Durable background jobs, their attempts, and recurring schedules.

-- A job waits as `queued` until `run_at`, is `running` while a worker holds
-- its lease, and ends `succeeded`, `dead` (attempts used up, or failed for
-- good) or `cancelled`. `vt` (virtual time) orders the queue fairly between
-- lanes (tenants): a lane's new job is placed after that lane's own backlog
-- but never behind the head of the queue, so one tenant's flood does not
-- starve another's jobs.
CREATE TABLE jobs (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue            TEXT NOT NULL,
    kind             TEXT NOT NULL,
    tenant_id        TEXT,
    organization_id  TEXT,
    lane             TEXT NOT NULL,
    payload          TEXT NOT NULL,
    unique_key       TEXT,
    status           TEXT NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'dead', 'cancelled')),
    vt               BIGINT NOT NULL,
    run_at           BIGINT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL CHECK (max_attempts >= 1),
    lease_owner      TEXT,
    lease_expires_at BIGINT,
    last_error       TEXT,
    result           TEXT,
    created_at       BIGINT NOT NULL,
    started_at       BIGINT,
    finished_at      BIGINT,
    updated_at       BIGINT NOT NULL,
    FOREIGN KEY (tenant_id, organization_id) REFERENCES organizations(tenant_id, id) ON DELETE CASCADE,
    CHECK ((tenant_id IS NULL) = (organization_id IS NULL))
);
-- At most one queued or running job per unique key (e.g. one pending health
-- check per integration and scope).
CREATE UNIQUE INDEX jobs_unique_active ON jobs (unique_key)
    WHERE unique_key IS NOT NULL AND status IN ('queued', 'running');
-- Claiming: the queued jobs of a queue in fair order.
CREATE INDEX jobs_claim ON jobs (queue, vt, id) WHERE status = 'queued';
-- A lane's place in its queue.
CREATE INDEX jobs_lane ON jobs (queue, lane, vt) WHERE status IN ('queued', 'running');
-- Expired leases and a worker's running jobs.
CREATE INDEX jobs_leases ON jobs (lease_expires_at) WHERE status = 'running';
CREATE INDEX jobs_by_scope ON jobs (tenant_id, organization_id, id);
CREATE INDEX jobs_by_status ON jobs (status, id);
-- A tenant's jobs of one status, newest first, and its counts per status (covering).
CREATE INDEX jobs_by_scope_status ON jobs (tenant_id, organization_id, status, id);

-- Every attempt of a job: who ran it, when, and how it ended (`succeeded`,
-- `failed`, `lost` when its worker stopped renewing the lease, `released` at
-- a graceful shutdown). Open attempts have no `finished_at`.
CREATE TABLE job_attempts (
    job_id           BIGINT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    attempt          INTEGER NOT NULL,
    worker           TEXT NOT NULL,
    started_at       BIGINT NOT NULL,
    lease_expires_at BIGINT NOT NULL,
    finished_at      BIGINT,
    outcome          TEXT CHECK (outcome IN ('succeeded', 'failed', 'lost', 'released')),
    error            TEXT,
    PRIMARY KEY (job_id, attempt)
);
CREATE INDEX job_attempts_open ON job_attempts (worker) WHERE finished_at IS NULL;

-- Recurring jobs. Whichever process first moves `next_run_at` on (a
-- compare-and-set) enqueues the period's job, in the same transaction.
CREATE TABLE job_schedules (
    name        TEXT PRIMARY KEY,
    schedule    TEXT NOT NULL,
    queue       TEXT NOT NULL,
    kind        TEXT NOT NULL,
    payload     TEXT NOT NULL,
    enabled     BOOLEAN NOT NULL,
    next_run_at BIGINT NOT NULL,
    last_run_at BIGINT,
    last_job_id BIGINT,
    updated_at  BIGINT NOT NULL
);
