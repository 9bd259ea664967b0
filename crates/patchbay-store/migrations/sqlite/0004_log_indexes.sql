-- Indexes for the log views of the admin panel: a tenant's whole timeline,
-- one integration's entries of one level, and recent errors across tenants
-- (the failing-connections view reads only error rows, through a partial index).
CREATE INDEX integration_logs_by_scope ON integration_logs (tenant_id, organization_id, id);
CREATE INDEX integration_logs_by_level ON integration_logs (tenant_id, organization_id, integration_id, level, id);
CREATE INDEX integration_logs_recent_errors ON integration_logs (created_at) WHERE level = 'error';
