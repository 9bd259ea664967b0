-- The failing-connections view groups recent error rows by connection: with
-- the connection's columns in the (partial) index, it reads no table rows.
CREATE INDEX integration_logs_recent_errors_by_connection
    ON integration_logs (created_at, tenant_id, organization_id, integration_id) WHERE level = 'error';
DROP INDEX integration_logs_recent_errors;
