-- Usage metering of connector actions: one row per scope, integration and
-- UTC hour (`hour` = the hour's start, µs). The service accumulates counts
-- in memory and adds them in batches (`calls = calls + excluded.calls`), so
-- a row is written about once a second while its hour is busy, not once per
-- call. No foreign key to the organization, like the operation log: a batch
-- is appended whole.
CREATE TABLE action_usage (
    tenant_id       TEXT NOT NULL,
    organization_id TEXT NOT NULL,
    integration_id  TEXT NOT NULL,
    hour            INTEGER NOT NULL,
    calls           INTEGER NOT NULL,
    errors          INTEGER NOT NULL,
    duration_ms     INTEGER NOT NULL,
    input_bytes     INTEGER NOT NULL,
    output_bytes    INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    -- A scope's hours in order: the reads are range scans of it.
    PRIMARY KEY (tenant_id, organization_id, hour, integration_id)
);
-- Pruning old hours across every scope.
CREATE INDEX action_usage_by_hour ON action_usage (hour);
