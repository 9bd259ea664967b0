//! The SQL both backends run, written once. PostgreSQL takes it as is;
//! SQLite takes it with `$N` turned into `?N` ([`lite`]), which SQLite reads
//! as the N-th parameter. Queries whose shape depends on the input (log
//! filters, `IN` lists, multi-row inserts) are built in `sql.rs`.

/// The statement for SQLite: `$N` placeholders become `?N`.
pub(crate) fn lite(sql: &str) -> String {
    sql.replace('$', "?")
}

pub(crate) const INSERT_TENANT: &str =
    "INSERT INTO tenants (id, slug, name, created_at) VALUES ($1, $2, $3, $4)";
pub(crate) const INSERT_ORGANIZATION: &str =
    "INSERT INTO organizations (id, tenant_id, slug, name, created_at) VALUES ($1, $2, $3, $4, $5)";
pub(crate) const INSERT_TOKEN: &str = "INSERT INTO api_tokens (id, name, token_hash, prefix, tenant_id, organization_id, features, created_by, created_at, expires_at, last_used_at, revoked_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)";
pub(crate) const REVOKE_TOKEN: &str =
    "UPDATE api_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL";
pub(crate) const REVOKE_TOKEN_IN_SCOPE: &str = "UPDATE api_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL AND tenant_id = $3 AND organization_id = $4";
pub(crate) const UPSERT_CREDENTIAL: &str = "INSERT INTO integration_credentials
      (tenant_id, organization_id, integration_id, key_id, key_version, nonce, ciphertext, created_at, updated_at, last_used_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
    ON CONFLICT (tenant_id, organization_id, integration_id) DO UPDATE SET
      key_id = excluded.key_id, key_version = excluded.key_version, nonce = excluded.nonce,
      ciphertext = excluded.ciphertext, updated_at = excluded.updated_at, last_used_at = excluded.last_used_at";
pub(crate) const DELETE_CREDENTIAL: &str = "DELETE FROM integration_credentials WHERE tenant_id = $1 AND organization_id = $2 AND integration_id = $3";
pub(crate) const INSERT_STATE: &str = "INSERT INTO integration_states
      (tenant_id, organization_id, integration_id, status, api_version, enabled_at, enabled_by, last_health, last_health_at, updated_at, version)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
    ON CONFLICT (tenant_id, organization_id, integration_id) DO NOTHING";
pub(crate) const UPDATE_STATE: &str =
    "UPDATE integration_states SET status = $4, api_version = $5, enabled_at = $6, enabled_by = $7,
      last_health = $8, last_health_at = $9, updated_at = $10, version = $11
    WHERE tenant_id = $1 AND organization_id = $2 AND integration_id = $3 AND version = $12";
pub(crate) const INSERT_EVENT: &str = "INSERT INTO events (id, tenant_id, organization_id, event_type, integration_id, payload, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)";
pub(crate) const INSERT_AUDIT: &str = "INSERT INTO audit_records (tenant_id, organization_id, actor, action, target, outcome, details, correlation_id, created_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";
pub(crate) const INSERT_VAULT_CHECK: &str =
    "INSERT INTO vault_meta (id, key_id, nonce, ciphertext, updated_at) VALUES (1, $1, $2, $3, $4)";
pub(crate) const UPDATE_VAULT_CHECK: &str = "UPDATE vault_meta SET key_id = $1, nonce = $2, ciphertext = $3, updated_at = $4 WHERE id = 1 AND key_id = $5";
pub(crate) const INSERT_TENANT_KEY: &str = "INSERT INTO tenant_keys (tenant_id, version, master_key_id, nonce, wrapped_key, created_at, retired_at) VALUES ($1, $2, $3, $4, $5, $6, $7)";
pub(crate) const REWRAP_TENANT_KEY: &str = "UPDATE tenant_keys SET master_key_id = $3, nonce = $4, wrapped_key = $5 WHERE tenant_id = $1 AND version = $2 AND master_key_id = $6";
pub(crate) const RETIRE_TENANT_KEY: &str = "UPDATE tenant_keys SET retired_at = $3 WHERE tenant_id = $1 AND version = $2 AND retired_at IS NULL";
pub(crate) const DELETE_TENANT_KEY: &str =
    "DELETE FROM tenant_keys WHERE tenant_id = $1 AND version = $2";
pub(crate) const REPLACE_CREDENTIAL: &str = "UPDATE integration_credentials SET key_id = $4, key_version = $5, nonce = $6, ciphertext = $7, updated_at = $8
    WHERE tenant_id = $1 AND organization_id = $2 AND integration_id = $3 AND key_id = $9";
pub(crate) const UPSERT_PRINCIPAL: &str = "INSERT INTO integration_principals
      (tenant_id, organization_id, integration_id, principal_id, key_id, action_keys, created_at, revoked_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
    ON CONFLICT (tenant_id, organization_id, integration_id) DO UPDATE SET
      principal_id = excluded.principal_id, key_id = excluded.key_id, action_keys = excluded.action_keys,
      created_at = excluded.created_at, revoked_at = excluded.revoked_at";
pub(crate) const REVOKE_PRINCIPAL: &str = "UPDATE integration_principals SET revoked_at = $4 WHERE tenant_id = $1 AND organization_id = $2 AND integration_id = $3 AND revoked_at IS NULL";
pub(crate) const UPSERT_SETTINGS: &str = "INSERT INTO tenant_settings (tenant_id, log_retention_days, error_log_retention_days, updated_at) VALUES ($1, $2, $3, $4)
    ON CONFLICT (tenant_id) DO UPDATE SET log_retention_days = excluded.log_retention_days,
      error_log_retention_days = excluded.error_log_retention_days, updated_at = excluded.updated_at";

pub(crate) const READINESS: &str = "SELECT COALESCE(MAX(version), 0) AS v FROM patchbay_migrations";
pub(crate) const GET_TENANT: &str = "SELECT id, slug, name, created_at FROM tenants WHERE id = $1";
pub(crate) const LIST_TENANTS: &str =
    "SELECT id, slug, name, created_at FROM tenants ORDER BY slug";
pub(crate) const GET_ORGANIZATION: &str = "SELECT id, tenant_id, slug, name, created_at FROM organizations WHERE tenant_id = $1 AND id = $2";
pub(crate) const LIST_ORGANIZATIONS: &str = "SELECT id, tenant_id, slug, name, created_at FROM organizations WHERE tenant_id = $1 ORDER BY slug";
macro_rules! token_select { () => { "SELECT id, name, token_hash, prefix, tenant_id, organization_id, features, created_by, created_at, expires_at, last_used_at, revoked_at FROM api_tokens" }; }
pub(crate) const FIND_TOKEN: &str = concat!(token_select!(), " WHERE token_hash = $1");
pub(crate) const LIST_TOKENS_OF_TENANT: &str = concat!(
    token_select!(),
    " WHERE tenant_id = $1 ORDER BY created_at, id"
);
pub(crate) const LIST_TOKENS: &str = concat!(token_select!(), " ORDER BY created_at, id");
pub(crate) const TOUCH_TOKEN: &str = "UPDATE api_tokens SET last_used_at = $2 WHERE id = $1";
macro_rules! credential_select { () => { "SELECT tenant_id, organization_id, integration_id, key_id, key_version, nonce, ciphertext, created_at, updated_at, last_used_at FROM integration_credentials" }; }
pub(crate) const CREDENTIAL_SELECT: &str = credential_select!();
pub(crate) const TOUCH_CREDENTIAL: &str = "UPDATE integration_credentials SET last_used_at = $4 WHERE tenant_id = $1 AND organization_id = $2 AND integration_id = $3";
macro_rules! state_select { () => { "SELECT tenant_id, organization_id, integration_id, status, api_version, enabled_at, enabled_by, last_health, last_health_at, updated_at, version FROM integration_states" }; }
pub(crate) const GET_STATE: &str = concat!(
    state_select!(),
    " WHERE tenant_id = $1 AND organization_id = $2 AND integration_id = $3"
);
pub(crate) const LIST_STATES: &str = concat!(
    state_select!(),
    " WHERE tenant_id = $1 AND organization_id = $2 ORDER BY integration_id"
);
/// Every tenant's states with one status (the scheduled health sweep).
pub(crate) const LIST_STATES_WITH_STATUS: &str = concat!(
    state_select!(),
    " WHERE status = $1 ORDER BY tenant_id, organization_id, integration_id"
);
pub(crate) const PRUNE_LOGS: &str = "DELETE FROM integration_logs WHERE tenant_id = $1 AND ((level = 'error' AND created_at < $3) OR (level <> 'error' AND created_at < $2))";
pub(crate) const LIST_EVENTS: &str = "SELECT seq, id, tenant_id, organization_id, event_type, integration_id, payload, created_at FROM events
    WHERE tenant_id = $1 AND organization_id = $2 AND seq > $3 ORDER BY seq LIMIT $4";
macro_rules! audit_select { () => { "SELECT id, tenant_id, organization_id, actor, action, target, outcome, details, correlation_id, created_at FROM audit_records" }; }
pub(crate) const LIST_AUDIT_OF_TENANT: &str = concat!(
    audit_select!(),
    " WHERE tenant_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3"
);
pub(crate) const LIST_AUDIT: &str =
    concat!(audit_select!(), " WHERE id < $1 ORDER BY id DESC LIMIT $2");
pub(crate) const GET_VAULT_CHECK: &str =
    "SELECT key_id, nonce, ciphertext, updated_at FROM vault_meta WHERE id = 1";
macro_rules! tenant_key_select { () => { "SELECT tenant_id, version, master_key_id, nonce, wrapped_key, created_at, retired_at FROM tenant_keys" }; }
pub(crate) const LIST_TENANT_KEYS_OF_TENANT: &str = concat!(
    tenant_key_select!(),
    " WHERE tenant_id = $1 ORDER BY version"
);
pub(crate) const LIST_TENANT_KEYS: &str =
    concat!(tenant_key_select!(), " ORDER BY tenant_id, version");
pub(crate) const GET_TENANT_KEY: &str = concat!(
    tenant_key_select!(),
    " WHERE tenant_id = $1 AND version = $2"
);
pub(crate) const LIST_CREDENTIALS_BELOW_VERSION: &str = concat!(
    credential_select!(),
    " WHERE tenant_id = $1 AND key_version < $2 ORDER BY organization_id, integration_id LIMIT $3"
);
pub(crate) const COUNT_CREDENTIALS_WITH_VERSION: &str =
    "SELECT COUNT(*) AS n FROM integration_credentials WHERE tenant_id = $1 AND key_version = $2";
macro_rules! principal_select { () => { "SELECT tenant_id, organization_id, integration_id, principal_id, key_id, action_keys, created_at, revoked_at FROM integration_principals" }; }
pub(crate) const GET_PRINCIPAL: &str = concat!(
    principal_select!(),
    " WHERE tenant_id = $1 AND organization_id = $2 AND integration_id = $3"
);
pub(crate) const LIST_PRINCIPALS: &str = concat!(
    principal_select!(),
    " WHERE tenant_id = $1 AND organization_id = $2 ORDER BY integration_id"
);
pub(crate) const GET_SETTINGS: &str = "SELECT tenant_id, log_retention_days, error_log_retention_days, updated_at FROM tenant_settings WHERE tenant_id = $1";
pub(crate) const LOG_SELECT: &str = "SELECT id, tenant_id, organization_id, integration_id, level, operation, message, details, correlation_id, entity_type, entity_id, duration_ms, created_at FROM integration_logs";
pub(crate) const INSERT_LOGS_PREFIX: &str = "INSERT INTO integration_logs (tenant_id, organization_id, integration_id, level, operation, message, details, correlation_id, entity_type, entity_id, duration_ms, created_at) VALUES ";
/// Parameters per log row in [`INSERT_LOGS_PREFIX`].
pub(crate) const LOG_PARAMS: usize = 12;

macro_rules! user_select { () => { "SELECT id, email, name, password_hash, tenant_id, organization_id, features, created_at, disabled_at, last_sign_in_at FROM users" }; }
pub(crate) const INSERT_USER: &str = "INSERT INTO users (id, email, name, password_hash, tenant_id, organization_id, features, created_at, disabled_at, last_sign_in_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";
pub(crate) const DISABLE_USER: &str =
    "UPDATE users SET disabled_at = $2 WHERE id = $1 AND disabled_at IS NULL";
pub(crate) const DELETE_SESSIONS_OF_USER: &str = "DELETE FROM sessions WHERE user_id = $1";
pub(crate) const FIND_USER_BY_EMAIL: &str = concat!(user_select!(), " WHERE email = $1");
pub(crate) const GET_USER: &str = concat!(user_select!(), " WHERE id = $1");
pub(crate) const LIST_USERS_OF_TENANT: &str =
    concat!(user_select!(), " WHERE tenant_id = $1 ORDER BY email");
pub(crate) const LIST_USERS: &str = concat!(user_select!(), " ORDER BY email");
pub(crate) const TOUCH_USER_SIGN_IN: &str = "UPDATE users SET last_sign_in_at = $2 WHERE id = $1";
pub(crate) const INSERT_SESSION: &str = "INSERT INTO sessions (id_hash, user_id, csrf_token, tenant_id, organization_id, created_at, last_seen_at, expires_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
pub(crate) const FIND_SESSION: &str = "SELECT id_hash, user_id, csrf_token, tenant_id, organization_id, created_at, last_seen_at, expires_at FROM sessions WHERE id_hash = $1";
pub(crate) const DELETE_SESSION: &str = "DELETE FROM sessions WHERE id_hash = $1";
pub(crate) const SET_SESSION_SCOPE: &str =
    "UPDATE sessions SET tenant_id = $2, organization_id = $3 WHERE id_hash = $1";
pub(crate) const TOUCH_SESSION: &str =
    "UPDATE sessions SET last_seen_at = $2, expires_at = $3 WHERE id_hash = $1";
pub(crate) const DELETE_EXPIRED_SESSIONS: &str = "DELETE FROM sessions WHERE expires_at < $1";
pub(crate) const LIST_FAILING: &str = "SELECT tenant_id, organization_id, integration_id, COUNT(*) AS errors, MAX(created_at) AS last_error_at
    FROM integration_logs WHERE level = 'error' AND created_at >= $1
    GROUP BY tenant_id, organization_id, integration_id ORDER BY errors DESC, last_error_at DESC LIMIT $2";
/// SQLite's version names the index: without statistics (a young database)
/// its planner prefers scanning a whole index in `GROUP BY` order, which reads
/// every log row (~25 ms at 100,000 rows, against ~4 ms for the recent errors).
pub(crate) const LIST_FAILING_SQLITE: &str = "SELECT tenant_id, organization_id, integration_id, COUNT(*) AS errors, MAX(created_at) AS last_error_at
    FROM integration_logs INDEXED BY integration_logs_recent_errors_by_connection WHERE level = 'error' AND created_at >= $1
    GROUP BY tenant_id, organization_id, integration_id ORDER BY errors DESC, last_error_at DESC LIMIT $2";
