-- Operator accounts of the admin panel and their sessions.

-- A user signs in with an email and a password (Argon2id). Platform users
-- have no tenant; tenant users belong to one organization of one tenant.
CREATE TABLE users (
    id              TEXT PRIMARY KEY,
    email           TEXT NOT NULL UNIQUE,
    name            TEXT NOT NULL,
    password_hash   TEXT NOT NULL,
    tenant_id       TEXT REFERENCES tenants(id) ON DELETE CASCADE,
    organization_id TEXT,
    features        TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    disabled_at     INTEGER,
    last_sign_in_at INTEGER,
    FOREIGN KEY (tenant_id, organization_id) REFERENCES organizations(tenant_id, id) ON DELETE CASCADE,
    CHECK ((tenant_id IS NULL) = (organization_id IS NULL))
);

-- A session is found by the SHA-256 of its cookie; the cookie itself is
-- never stored. Platform users carry the tenant they are looking at.
CREATE TABLE sessions (
    id_hash         BLOB PRIMARY KEY,
    user_id         TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    csrf_token      TEXT NOT NULL,
    tenant_id       TEXT,
    organization_id TEXT,
    created_at      INTEGER NOT NULL,
    last_seen_at    INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL
);
CREATE INDEX sessions_by_user ON sessions (user_id);
CREATE INDEX sessions_by_expiry ON sessions (expires_at);
