-- The vault's master-key check value, integration principals, and per-tenant
-- settings.

-- One row: proves at start-up that the configured master key is the one this
-- database was set up with.
CREATE TABLE vault_meta (
    id          BIGINT PRIMARY KEY CHECK (id = 1),
    key_id      TEXT NOT NULL,
    nonce       BYTEA NOT NULL,
    ciphertext  BYTEA NOT NULL,
    updated_at  BIGINT NOT NULL
);

-- Each enabled connection acts as its own principal with explicit grants.
CREATE TABLE integration_principals (
    tenant_id       TEXT NOT NULL,
    organization_id TEXT NOT NULL,
    integration_id  TEXT NOT NULL,
    principal_id    TEXT NOT NULL UNIQUE,
    key_id          TEXT NOT NULL UNIQUE,
    action_keys     TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    revoked_at      BIGINT,
    PRIMARY KEY (tenant_id, organization_id, integration_id),
    FOREIGN KEY (tenant_id, organization_id) REFERENCES organizations(tenant_id, id) ON DELETE CASCADE
);

CREATE TABLE tenant_settings (
    tenant_id                   TEXT PRIMARY KEY REFERENCES tenants(id) ON DELETE CASCADE,
    log_retention_days          BIGINT NOT NULL,
    error_log_retention_days    BIGINT NOT NULL,
    updated_at                  BIGINT NOT NULL
);
