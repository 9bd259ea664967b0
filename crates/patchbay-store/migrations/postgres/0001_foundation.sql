-- Foundation tables: tenancy, API tokens, tenant data keys, credentials, integration states,
-- operation logs, the event outbox and the audit trail.
-- Timestamps are BIGINT microseconds since the Unix epoch (UTC); read them with
-- to_timestamp(col / 1e6). Every tenant-owned row carries tenant_id and
-- organization_id.

CREATE TABLE tenants (
    id          TEXT PRIMARY KEY,
    slug        TEXT NOT NULL UNIQUE,
    name        TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE organizations (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    slug        TEXT NOT NULL,
    name        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    UNIQUE (tenant_id, slug),
    UNIQUE (tenant_id, id)
);

CREATE TABLE api_tokens (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL,
    token_hash      BYTEA NOT NULL UNIQUE,
    prefix          TEXT NOT NULL,
    tenant_id       TEXT REFERENCES tenants(id) ON DELETE CASCADE,
    organization_id TEXT,
    features        TEXT NOT NULL,
    created_by      TEXT,
    created_at      BIGINT NOT NULL,
    expires_at      BIGINT,
    last_used_at    BIGINT,
    revoked_at      BIGINT,
    FOREIGN KEY (tenant_id, organization_id) REFERENCES organizations(tenant_id, id) ON DELETE CASCADE,
    CHECK ((tenant_id IS NULL) = (organization_id IS NULL))
);

-- Per-tenant data keys, each wrapped by a master key. The highest version
-- that is not retired encrypts new credentials.
CREATE TABLE tenant_keys (
    tenant_id       TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    version         BIGINT NOT NULL,
    master_key_id   TEXT NOT NULL,
    nonce           BYTEA NOT NULL,
    wrapped_key     BYTEA NOT NULL,
    created_at      BIGINT NOT NULL,
    retired_at      BIGINT,
    PRIMARY KEY (tenant_id, version)
);

CREATE TABLE integration_credentials (
    tenant_id       TEXT NOT NULL,
    organization_id TEXT NOT NULL,
    integration_id  TEXT NOT NULL,
    key_id          TEXT NOT NULL UNIQUE,
    key_version     BIGINT NOT NULL,
    nonce           BYTEA NOT NULL,
    ciphertext      BYTEA NOT NULL,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    last_used_at    BIGINT,
    PRIMARY KEY (tenant_id, organization_id, integration_id),
    FOREIGN KEY (tenant_id, organization_id) REFERENCES organizations(tenant_id, id) ON DELETE CASCADE,
    -- A data key cannot be deleted while a credential still needs it.
    FOREIGN KEY (tenant_id, key_version) REFERENCES tenant_keys(tenant_id, version)
);

CREATE TABLE integration_states (
    tenant_id           TEXT NOT NULL,
    organization_id     TEXT NOT NULL,
    integration_id      TEXT NOT NULL,
    status              TEXT NOT NULL CHECK (status IN ('draft', 'enabled', 'disabled', 'revoked')),
    api_version         TEXT,
    enabled_at          BIGINT,
    enabled_by          TEXT,
    last_health         TEXT,
    last_health_at      BIGINT,
    updated_at          BIGINT NOT NULL,
    version             BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, organization_id, integration_id),
    FOREIGN KEY (tenant_id, organization_id) REFERENCES organizations(tenant_id, id) ON DELETE CASCADE
);

CREATE TABLE integration_logs (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id       TEXT NOT NULL,
    organization_id TEXT NOT NULL,
    integration_id  TEXT NOT NULL,
    level           TEXT NOT NULL CHECK (level IN ('debug', 'info', 'warning', 'error')),
    operation       TEXT NOT NULL,
    message         TEXT NOT NULL,
    details         TEXT,
    correlation_id  TEXT,
    entity_type     TEXT,
    entity_id       TEXT,
    duration_ms     BIGINT,
    created_at      BIGINT NOT NULL
);
CREATE INDEX integration_logs_by_integration ON integration_logs (tenant_id, organization_id, integration_id, id);
CREATE INDEX integration_logs_by_correlation ON integration_logs (tenant_id, correlation_id);
CREATE INDEX integration_logs_by_age ON integration_logs (tenant_id, created_at);

CREATE TABLE events (
    seq             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id              TEXT NOT NULL UNIQUE,
    tenant_id       TEXT NOT NULL,
    organization_id TEXT NOT NULL,
    event_type      TEXT NOT NULL,
    integration_id  TEXT,
    payload         TEXT NOT NULL,
    created_at      BIGINT NOT NULL
);
CREATE INDEX events_by_scope ON events (tenant_id, organization_id, seq);

CREATE TABLE audit_records (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id       TEXT,
    organization_id TEXT,
    actor           TEXT NOT NULL,
    action          TEXT NOT NULL,
    target          TEXT,
    outcome         TEXT NOT NULL,
    details         TEXT,
    correlation_id  TEXT,
    created_at      BIGINT NOT NULL
);
CREATE INDEX audit_records_by_tenant ON audit_records (tenant_id, id);
