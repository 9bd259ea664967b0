//! The SQL both backends share.
//!
//! SQLite and PostgreSQL accept the same `$N` placeholders, `ON CONFLICT`,
//! `RETURNING` and the column types used here, so the queries are written once.
//! [`impl_store!`] stamps them out for each backend's concrete sqlx types;
//! generic code over `sqlx::Database` would need a wall of trait bounds for the
//! same result. What truly differs (DDL, locking, connection set-up) lives in
//! `sqlite.rs` and `postgres.rs`.

use std::fmt::Write as _;

use patchbay_core::{IntegrationStatus, LogLevel, Scope, Timestamp};

use crate::{StoreError, TokenScope};

/// A value bound to a dynamically built query.
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    Text(String),
    Int(i64),
}

pub(crate) fn ts(t: Timestamp) -> i64 {
    t.as_micros()
}

pub(crate) fn opt_ts(t: Option<Timestamp>) -> Option<i64> {
    t.map(Timestamp::as_micros)
}

pub(crate) fn from_ts(v: Option<i64>) -> Option<Timestamp> {
    v.map(Timestamp::from_micros)
}

pub(crate) fn status(s: &str) -> Result<IntegrationStatus, StoreError> {
    IntegrationStatus::parse(s).ok_or_else(|| {
        StoreError::Database(format!("unknown integration status `{s}` in the database"))
    })
}

pub(crate) fn level(s: &str) -> Result<LogLevel, StoreError> {
    LogLevel::parse(s)
        .ok_or_else(|| StoreError::Database(format!("unknown log level `{s}` in the database")))
}

pub(crate) fn token_scope(tenant: Option<String>, org: Option<String>) -> TokenScope {
    match (tenant, org) {
        (Some(t), Some(o)) => TokenScope::Tenant(Scope::new(t, o)),
        _ => TokenScope::Platform,
    }
}

/// Builds the WHERE clause of an operation-log query, starting after the two
/// scope placeholders. Returns (clause, args, clause with the cursor, args with the cursor).
pub(crate) fn log_filters(q: &crate::LogQuery) -> (String, Vec<Arg>) {
    let mut sql = String::from("tenant_id = $1 AND organization_id = $2");
    let mut args = Vec::new();
    let mut push = |col: &str, op: &str, a: Arg| {
        args.push(a);
        let _ = write!(sql, " AND {col} {op} ${}", args.len() + 2);
    };
    if let Some(v) = &q.integration_id {
        push("integration_id", "=", Arg::Text(v.clone()));
    }
    if let Some(v) = q.level {
        push("level", "=", Arg::Text(v.as_str().to_owned()));
    }
    if let Some(v) = &q.operation {
        push("operation", "=", Arg::Text(v.clone()));
    }
    if let Some(v) = &q.correlation_id {
        push("correlation_id", "=", Arg::Text(v.clone()));
    }
    if let Some(v) = &q.entity_type {
        push("entity_type", "=", Arg::Text(v.clone()));
    }
    if let Some(v) = &q.entity_id {
        push("entity_id", "=", Arg::Text(v.clone()));
    }
    if let Some(v) = q.since {
        push("created_at", ">=", Arg::Int(ts(v)));
    }
    if let Some(v) = q.until {
        push("created_at", "<", Arg::Int(ts(v)));
    }
    (sql, args)
}

pub(crate) const LOG_COLUMNS: &str = "id, tenant_id, organization_id, integration_id, level, operation, message, details, correlation_id, entity_type, entity_id, duration_ms, created_at";
pub(crate) const TOKEN_COLUMNS: &str = "id, name, token_hash, prefix, tenant_id, organization_id, features, created_by, created_at, expires_at, last_used_at, revoked_at";
pub(crate) const CREDENTIAL_COLUMNS: &str = "tenant_id, organization_id, integration_id, key_id, key_version, nonce, ciphertext, created_at, updated_at, last_used_at";
pub(crate) const STATE_COLUMNS: &str = "tenant_id, organization_id, integration_id, status, api_version, enabled_at, enabled_by, last_health, last_health_at, updated_at, version";
pub(crate) const EVENT_COLUMNS: &str =
    "seq, id, tenant_id, organization_id, event_type, integration_id, payload, created_at";
pub(crate) const TENANT_KEY_COLUMNS: &str =
    "tenant_id, version, master_key_id, nonce, wrapped_key, created_at, retired_at";
pub(crate) const PRINCIPAL_COLUMNS: &str = "tenant_id, organization_id, integration_id, principal_id, key_id, action_keys, created_at, revoked_at";
pub(crate) const AUDIT_COLUMNS: &str = "id, tenant_id, organization_id, actor, action, target, outcome, details, correlation_id, created_at";

/// Rows per multi-row INSERT of log entries (13 parameters each stays far
/// below both backends' parameter limits).
pub(crate) const LOG_BATCH: usize = 500;

/// Implements [`crate::Store`] for a backend type with `reader()`/`writer()`
/// pools of database `$db`, and an inherent `lock_outbox(&mut tx)` method.
macro_rules! impl_store {
    ($store:ty, $db:ty, $row:ty) => {
        mod rows {
            use super::*;
            use crate::sql::*;
            use crate::*;

            pub(super) fn tenant(r: &$row) -> Result<Tenant> {
                Ok(Tenant {
                    id: TenantId::new(r.try_get::<String, _>("id")?),
                    slug: r.try_get("slug")?,
                    name: r.try_get("name")?,
                    created_at: Timestamp::from_micros(r.try_get("created_at")?),
                })
            }

            pub(super) fn organization(r: &$row) -> Result<Organization> {
                Ok(Organization {
                    id: OrganizationId::new(r.try_get::<String, _>("id")?),
                    tenant_id: TenantId::new(r.try_get::<String, _>("tenant_id")?),
                    slug: r.try_get("slug")?,
                    name: r.try_get("name")?,
                    created_at: Timestamp::from_micros(r.try_get("created_at")?),
                })
            }

            pub(super) fn token(r: &$row) -> Result<ApiTokenRecord> {
                let features: String = r.try_get("features")?;
                Ok(ApiTokenRecord {
                    id: r.try_get("id")?,
                    name: r.try_get("name")?,
                    token_hash: r.try_get("token_hash")?,
                    prefix: r.try_get("prefix")?,
                    scope: token_scope(r.try_get("tenant_id")?, r.try_get("organization_id")?),
                    features: features.split(',').filter(|f| !f.is_empty()).map(str::to_owned).collect(),
                    created_by: r.try_get("created_by")?,
                    created_at: Timestamp::from_micros(r.try_get("created_at")?),
                    expires_at: from_ts(r.try_get("expires_at")?),
                    last_used_at: from_ts(r.try_get("last_used_at")?),
                    revoked_at: from_ts(r.try_get("revoked_at")?),
                })
            }

            pub(super) fn credential(r: &$row) -> Result<CredentialRecord> {
                Ok(CredentialRecord {
                    scope: Scope::new(r.try_get::<String, _>("tenant_id")?, r.try_get::<String, _>("organization_id")?),
                    integration_id: r.try_get("integration_id")?,
                    key_id: r.try_get("key_id")?,
                    key_version: r.try_get("key_version")?,
                    nonce: r.try_get("nonce")?,
                    ciphertext: r.try_get("ciphertext")?,
                    created_at: Timestamp::from_micros(r.try_get("created_at")?),
                    updated_at: Timestamp::from_micros(r.try_get("updated_at")?),
                    last_used_at: from_ts(r.try_get("last_used_at")?),
                })
            }

            pub(super) fn state(r: &$row) -> Result<StateRecord> {
                Ok(StateRecord {
                    scope: Scope::new(r.try_get::<String, _>("tenant_id")?, r.try_get::<String, _>("organization_id")?),
                    integration_id: r.try_get("integration_id")?,
                    status: status(&r.try_get::<String, _>("status")?)?,
                    api_version: r.try_get("api_version")?,
                    enabled_at: from_ts(r.try_get("enabled_at")?),
                    enabled_by: r.try_get("enabled_by")?,
                    last_health: r.try_get("last_health")?,
                    last_health_at: from_ts(r.try_get("last_health_at")?),
                    updated_at: Timestamp::from_micros(r.try_get("updated_at")?),
                    version: r.try_get("version")?,
                })
            }

            pub(super) fn log(r: &$row) -> Result<LogEntry> {
                Ok(LogEntry {
                    id: r.try_get("id")?,
                    entry: NewLogEntry {
                        scope: Scope::new(r.try_get::<String, _>("tenant_id")?, r.try_get::<String, _>("organization_id")?),
                        integration_id: r.try_get("integration_id")?,
                        level: level(&r.try_get::<String, _>("level")?)?,
                        operation: r.try_get("operation")?,
                        message: r.try_get("message")?,
                        details: r.try_get("details")?,
                        correlation_id: r.try_get("correlation_id")?,
                        entity_type: r.try_get("entity_type")?,
                        entity_id: r.try_get("entity_id")?,
                        duration_ms: r.try_get("duration_ms")?,
                        created_at: Timestamp::from_micros(r.try_get("created_at")?),
                    },
                })
            }

            pub(super) fn event(r: &$row) -> Result<EventRecord> {
                Ok(EventRecord {
                    seq: r.try_get("seq")?,
                    event: NewEvent {
                        id: r.try_get("id")?,
                        scope: Scope::new(r.try_get::<String, _>("tenant_id")?, r.try_get::<String, _>("organization_id")?),
                        event_type: r.try_get("event_type")?,
                        integration_id: r.try_get("integration_id")?,
                        payload: r.try_get("payload")?,
                        created_at: Timestamp::from_micros(r.try_get("created_at")?),
                    },
                })
            }

            pub(super) fn tenant_key(r: &$row) -> Result<TenantKeyRecord> {
                Ok(TenantKeyRecord {
                    tenant_id: TenantId::new(r.try_get::<String, _>("tenant_id")?),
                    version: r.try_get("version")?,
                    master_key_id: r.try_get("master_key_id")?,
                    nonce: r.try_get("nonce")?,
                    wrapped_key: r.try_get("wrapped_key")?,
                    created_at: Timestamp::from_micros(r.try_get("created_at")?),
                    retired_at: from_ts(r.try_get("retired_at")?),
                })
            }

            pub(super) fn principal(r: &$row) -> Result<PrincipalRecord> {
                let keys: String = r.try_get("action_keys")?;
                Ok(PrincipalRecord {
                    scope: Scope::new(r.try_get::<String, _>("tenant_id")?, r.try_get::<String, _>("organization_id")?),
                    integration_id: r.try_get("integration_id")?,
                    principal_id: r.try_get("principal_id")?,
                    key_id: r.try_get("key_id")?,
                    action_keys: keys.split(',').filter(|k| !k.is_empty()).map(str::to_owned).collect(),
                    created_at: Timestamp::from_micros(r.try_get("created_at")?),
                    revoked_at: from_ts(r.try_get("revoked_at")?),
                })
            }

            pub(super) fn audit(r: &$row) -> Result<AuditRecord> {
                let tenant: Option<String> = r.try_get("tenant_id")?;
                let org: Option<String> = r.try_get("organization_id")?;
                Ok(AuditRecord {
                    id: r.try_get("id")?,
                    audit: NewAudit {
                        actor: r.try_get("actor")?,
                        scope: tenant.zip(org).map(|(t, o)| Scope::new(t, o)),
                        action: r.try_get("action")?,
                        target: r.try_get("target")?,
                        outcome: r.try_get("outcome")?,
                        details: r.try_get("details")?,
                        correlation_id: r.try_get("correlation_id")?,
                        created_at: Timestamp::from_micros(r.try_get("created_at")?),
                    },
                })
            }
        }

        fn bind_args<'q>(
            mut q: sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments<'q>>,
            args: &'q [crate::sql::Arg],
        ) -> sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments<'q>> {
            for a in args {
                q = match a {
                    crate::sql::Arg::Text(s) => q.bind(s.as_str()),
                    crate::sql::Arg::Int(i) => q.bind(*i),
                };
            }
            q
        }

        async fn apply_one(
            tx: &mut sqlx::Transaction<'_, $db>,
            change: &crate::Change,
        ) -> crate::Result<u64> {
            use crate::sql::*;
            use crate::*;
            let conn = &mut **tx;
            let done = match change {
                Change::CreateTenant(t) => sqlx::query("INSERT INTO tenants (id, slug, name, created_at) VALUES ($1, $2, $3, $4)")
                    .bind(t.id.as_str())
                    .bind(&t.slug)
                    .bind(&t.name)
                    .bind(ts(t.created_at))
                    .execute(conn)
                    .await
                    .map_err(|e| conflict(e, || format!("a tenant with slug `{}` already exists", t.slug)))?,
                Change::CreateOrganization(o) => sqlx::query("INSERT INTO organizations (id, tenant_id, slug, name, created_at) VALUES ($1, $2, $3, $4, $5)")
                    .bind(o.id.as_str())
                    .bind(o.tenant_id.as_str())
                    .bind(&o.slug)
                    .bind(&o.name)
                    .bind(ts(o.created_at))
                    .execute(conn)
                    .await
                    .map_err(|e| conflict(e, || format!("tenant `{}` already has an organization with slug `{}`", o.tenant_id, o.slug)))?,
                Change::InsertApiToken(t) => {
                    let (tenant, org) = match &t.scope {
                        TokenScope::Platform => (None, None),
                        TokenScope::Tenant(s) => (Some(s.tenant_id.as_str()), Some(s.organization_id.as_str())),
                    };
                    sqlx::query(&format!("INSERT INTO api_tokens ({TOKEN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"))
                        .bind(&t.id)
                        .bind(&t.name)
                        .bind(&t.token_hash)
                        .bind(&t.prefix)
                        .bind(tenant)
                        .bind(org)
                        .bind(t.features.join(","))
                        .bind(t.created_by.as_deref())
                        .bind(ts(t.created_at))
                        .bind(opt_ts(t.expires_at))
                        .bind(opt_ts(t.last_used_at))
                        .bind(opt_ts(t.revoked_at))
                        .execute(conn)
                        .await?
                }
                Change::RevokeApiToken { id, scope, at } => {
                    let r = match scope {
                        None => sqlx::query("UPDATE api_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
                            .bind(id)
                            .bind(ts(*at))
                            .execute(conn)
                            .await?,
                        Some(s) => sqlx::query("UPDATE api_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL AND tenant_id = $3 AND organization_id = $4")
                            .bind(id)
                            .bind(ts(*at))
                            .bind(s.tenant_id.as_str())
                            .bind(s.organization_id.as_str())
                            .execute(conn)
                            .await?,
                    };
                    if r.rows_affected() == 0 {
                        return Err(StoreError::NotFound(format!("active API token `{id}`")));
                    }
                    r
                }
                Change::PutCredential(c) => sqlx::query(&format!(
                    "INSERT INTO integration_credentials ({CREDENTIAL_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                     ON CONFLICT (tenant_id, organization_id, integration_id) DO UPDATE SET
                       key_id = excluded.key_id, key_version = excluded.key_version, nonce = excluded.nonce,
                       ciphertext = excluded.ciphertext, updated_at = excluded.updated_at, last_used_at = excluded.last_used_at"
                ))
                .bind(c.scope.tenant_id.as_str())
                .bind(c.scope.organization_id.as_str())
                .bind(&c.integration_id)
                .bind(&c.key_id)
                .bind(c.key_version)
                .bind(&c.nonce)
                .bind(&c.ciphertext)
                .bind(ts(c.created_at))
                .bind(ts(c.updated_at))
                .bind(opt_ts(c.last_used_at))
                .execute(conn)
                .await?,
                Change::DeleteCredential { scope, integration_id } => sqlx::query(
                    "DELETE FROM integration_credentials WHERE tenant_id = $1 AND organization_id = $2 AND integration_id = $3",
                )
                .bind(scope.tenant_id.as_str())
                .bind(scope.organization_id.as_str())
                .bind(integration_id)
                .execute(conn)
                .await?,
                Change::PutState { state: s, expect } => {
                    let what = || format!("the state of `{}`", s.integration_id);
                    let insert = format!(
                        "INSERT INTO integration_states ({STATE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
                         ON CONFLICT (tenant_id, organization_id, integration_id) DO NOTHING"
                    );
                    let r = match expect {
                        Expect::Absent => sqlx::query(&insert),
                        Expect::Version(_) => sqlx::query(
                            "UPDATE integration_states SET status = $4, api_version = $5, enabled_at = $6, enabled_by = $7,
                               last_health = $8, last_health_at = $9, updated_at = $10, version = $11
                             WHERE tenant_id = $1 AND organization_id = $2 AND integration_id = $3 AND version = $12",
                        ),
                    }
                    .bind(s.scope.tenant_id.as_str())
                    .bind(s.scope.organization_id.as_str())
                    .bind(&s.integration_id)
                    .bind(s.status.as_str())
                    .bind(s.api_version.as_deref())
                    .bind(opt_ts(s.enabled_at))
                    .bind(s.enabled_by.as_deref())
                    .bind(s.last_health.as_deref())
                    .bind(opt_ts(s.last_health_at))
                    .bind(ts(s.updated_at))
                    .bind(s.version);
                    let r = match expect {
                        Expect::Absent => r,
                        Expect::Version(v) => r.bind(*v),
                    }
                    .execute(conn)
                    .await?;
                    if r.rows_affected() == 0 {
                        return Err(StoreError::Stale(what()));
                    }
                    r
                }
                Change::AppendEvent(e) => {
                    <$store>::lock_outbox(tx).await?;
                    sqlx::query("INSERT INTO events (id, tenant_id, organization_id, event_type, integration_id, payload, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)")
                        .bind(&e.id)
                        .bind(e.scope.tenant_id.as_str())
                        .bind(e.scope.organization_id.as_str())
                        .bind(&e.event_type)
                        .bind(e.integration_id.as_deref())
                        .bind(&e.payload)
                        .bind(ts(e.created_at))
                        .execute(&mut **tx)
                        .await?
                }
                Change::AppendAudit(a) => sqlx::query(
                    "INSERT INTO audit_records (tenant_id, organization_id, actor, action, target, outcome, details, correlation_id, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                )
                .bind(a.scope.as_ref().map(|s| s.tenant_id.as_str()))
                .bind(a.scope.as_ref().map(|s| s.organization_id.as_str()))
                .bind(&a.actor)
                .bind(&a.action)
                .bind(a.target.as_deref())
                .bind(&a.outcome)
                .bind(a.details.as_deref())
                .bind(a.correlation_id.as_deref())
                .bind(ts(a.created_at))
                .execute(conn)
                .await?,
                Change::PutVaultCheck { record: v, expect_key_id } => {
                    let r = match expect_key_id {
                        None => sqlx::query("INSERT INTO vault_meta (id, key_id, nonce, ciphertext, updated_at) VALUES (1, $1, $2, $3, $4)")
                            .bind(&v.key_id)
                            .bind(&v.nonce)
                            .bind(&v.ciphertext)
                            .bind(ts(v.updated_at))
                            .execute(conn)
                            .await
                            .map_err(|e| conflict(e, || "the vault is already initialised".to_owned()))?,
                        Some(old) => sqlx::query("UPDATE vault_meta SET key_id = $1, nonce = $2, ciphertext = $3, updated_at = $4 WHERE id = 1 AND key_id = $5")
                            .bind(&v.key_id)
                            .bind(&v.nonce)
                            .bind(&v.ciphertext)
                            .bind(ts(v.updated_at))
                            .bind(old)
                            .execute(conn)
                            .await?,
                    };
                    if r.rows_affected() == 0 {
                        return Err(StoreError::Stale("the vault check value".to_owned()));
                    }
                    r
                }
                Change::PutTenantKey(k) => sqlx::query(&format!("INSERT INTO tenant_keys ({TENANT_KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"))
                    .bind(k.tenant_id.as_str())
                    .bind(k.version)
                    .bind(&k.master_key_id)
                    .bind(&k.nonce)
                    .bind(&k.wrapped_key)
                    .bind(ts(k.created_at))
                    .bind(opt_ts(k.retired_at))
                    .execute(conn)
                    .await
                    .map_err(|e| conflict(e, || format!("tenant `{}` already has data key version {}", k.tenant_id, k.version)))?,
                Change::RewrapTenantKey { record: k, expect_master_key_id } => {
                    let r = sqlx::query("UPDATE tenant_keys SET master_key_id = $3, nonce = $4, wrapped_key = $5 WHERE tenant_id = $1 AND version = $2 AND master_key_id = $6")
                        .bind(k.tenant_id.as_str())
                        .bind(k.version)
                        .bind(&k.master_key_id)
                        .bind(&k.nonce)
                        .bind(&k.wrapped_key)
                        .bind(expect_master_key_id)
                        .execute(conn)
                        .await?;
                    if r.rows_affected() == 0 {
                        return Err(StoreError::Stale(format!("data key {} of tenant `{}`", k.version, k.tenant_id)));
                    }
                    r
                }
                Change::RetireTenantKey { tenant_id, version, at } => sqlx::query("UPDATE tenant_keys SET retired_at = $3 WHERE tenant_id = $1 AND version = $2 AND retired_at IS NULL")
                    .bind(tenant_id.as_str())
                    .bind(*version)
                    .bind(ts(*at))
                    .execute(conn)
                    .await?,
                Change::DeleteTenantKey { tenant_id, version } => sqlx::query("DELETE FROM tenant_keys WHERE tenant_id = $1 AND version = $2")
                    .bind(tenant_id.as_str())
                    .bind(*version)
                    .execute(conn)
                    .await
                    .map_err(|e| match StoreError::from(e) {
                        // The credentials' foreign key keeps a data key that is still needed.
                        StoreError::NotFound(_) => StoreError::Conflict(format!("data key {version} of tenant `{tenant_id}` still encrypts credentials")),
                        other => other,
                    })?,
                Change::ReplaceCredential { record: c, expect_key_id } => {
                    let r = sqlx::query(
                        "UPDATE integration_credentials SET key_id = $4, key_version = $5, nonce = $6, ciphertext = $7, updated_at = $8
                         WHERE tenant_id = $1 AND organization_id = $2 AND integration_id = $3 AND key_id = $9",
                    )
                    .bind(c.scope.tenant_id.as_str())
                    .bind(c.scope.organization_id.as_str())
                    .bind(&c.integration_id)
                    .bind(&c.key_id)
                    .bind(c.key_version)
                    .bind(&c.nonce)
                    .bind(&c.ciphertext)
                    .bind(ts(c.updated_at))
                    .bind(expect_key_id)
                    .execute(conn)
                    .await?;
                    if r.rows_affected() == 0 {
                        return Err(StoreError::Stale(format!("the credentials of `{}`", c.integration_id)));
                    }
                    r
                }
                Change::PutPrincipal(p) => sqlx::query(&format!(
                    "INSERT INTO integration_principals ({PRINCIPAL_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                     ON CONFLICT (tenant_id, organization_id, integration_id) DO UPDATE SET
                       principal_id = excluded.principal_id, key_id = excluded.key_id, action_keys = excluded.action_keys,
                       created_at = excluded.created_at, revoked_at = excluded.revoked_at"
                ))
                .bind(p.scope.tenant_id.as_str())
                .bind(p.scope.organization_id.as_str())
                .bind(&p.integration_id)
                .bind(&p.principal_id)
                .bind(&p.key_id)
                .bind(p.action_keys.join(","))
                .bind(ts(p.created_at))
                .bind(opt_ts(p.revoked_at))
                .execute(conn)
                .await?,
                Change::RevokePrincipal { scope, integration_id, at } => sqlx::query(
                    "UPDATE integration_principals SET revoked_at = $4 WHERE tenant_id = $1 AND organization_id = $2 AND integration_id = $3 AND revoked_at IS NULL",
                )
                .bind(scope.tenant_id.as_str())
                .bind(scope.organization_id.as_str())
                .bind(integration_id)
                .bind(ts(*at))
                .execute(conn)
                .await?,
                Change::PutTenantSettings(t) => sqlx::query(
                    "INSERT INTO tenant_settings (tenant_id, log_retention_days, error_log_retention_days, updated_at) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (tenant_id) DO UPDATE SET log_retention_days = excluded.log_retention_days,
                       error_log_retention_days = excluded.error_log_retention_days, updated_at = excluded.updated_at",
                )
                .bind(t.tenant_id.as_str())
                .bind(t.log_retention_days)
                .bind(t.error_log_retention_days)
                .bind(ts(t.updated_at))
                .execute(conn)
                .await?,
            };
            Ok(done.rows_affected())
        }

        fn conflict(e: sqlx::Error, what: impl FnOnce() -> String) -> crate::StoreError {
            match crate::StoreError::from(e) {
                crate::StoreError::Conflict(_) => crate::StoreError::Conflict(what()),
                other => other,
            }
        }

        #[async_trait::async_trait]
        impl crate::Store for $store {
            fn backend(&self) -> crate::Backend {
                Self::BACKEND
            }

            async fn readiness(&self) -> crate::Result<crate::Readiness> {
                use sqlx::Row as _;
                let row = sqlx::query("SELECT COALESCE(MAX(version), 0) AS v FROM patchbay_migrations").fetch_one(self.reader()).await?;
                let applied: i64 = row.try_get("v")?;
                Ok(crate::Readiness { applied_migration: applied, expected_migration: Self::MIGRATIONS.last().map_or(0, |m| m.version) })
            }

            async fn apply(&self, changes: Vec<crate::Change>) -> crate::Result<Vec<u64>> {
                let mut tx = self.writer().begin().await?;
                let mut affected = Vec::with_capacity(changes.len());
                for c in &changes {
                    affected.push(apply_one(&mut tx, c).await?);
                }
                tx.commit().await?;
                Ok(affected)
            }

            async fn get_tenant(&self, id: &patchbay_core::TenantId) -> crate::Result<Option<crate::Tenant>> {
                sqlx::query("SELECT id, slug, name, created_at FROM tenants WHERE id = $1")
                    .bind(id.as_str())
                    .fetch_optional(self.reader())
                    .await?
                    .as_ref()
                    .map(rows::tenant)
                    .transpose()
            }

            async fn list_tenants(&self) -> crate::Result<Vec<crate::Tenant>> {
                sqlx::query("SELECT id, slug, name, created_at FROM tenants ORDER BY slug")
                    .fetch_all(self.reader())
                    .await?
                    .iter()
                    .map(rows::tenant)
                    .collect()
            }

            async fn get_organization(&self, tenant: &patchbay_core::TenantId, id: &patchbay_core::OrganizationId) -> crate::Result<Option<crate::Organization>> {
                sqlx::query("SELECT id, tenant_id, slug, name, created_at FROM organizations WHERE tenant_id = $1 AND id = $2")
                    .bind(tenant.as_str())
                    .bind(id.as_str())
                    .fetch_optional(self.reader())
                    .await?
                    .as_ref()
                    .map(rows::organization)
                    .transpose()
            }

            async fn list_organizations(&self, tenant: &patchbay_core::TenantId) -> crate::Result<Vec<crate::Organization>> {
                sqlx::query("SELECT id, tenant_id, slug, name, created_at FROM organizations WHERE tenant_id = $1 ORDER BY slug")
                    .bind(tenant.as_str())
                    .fetch_all(self.reader())
                    .await?
                    .iter()
                    .map(rows::organization)
                    .collect()
            }

            async fn find_api_token(&self, token_hash: &[u8]) -> crate::Result<Option<crate::ApiTokenRecord>> {
                sqlx::query(&format!("SELECT {} FROM api_tokens WHERE token_hash = $1", crate::sql::TOKEN_COLUMNS))
                    .bind(token_hash)
                    .fetch_optional(self.reader())
                    .await?
                    .as_ref()
                    .map(rows::token)
                    .transpose()
            }

            async fn list_api_tokens(&self, tenant: Option<&patchbay_core::TenantId>) -> crate::Result<Vec<crate::ApiTokenRecord>> {
                let cols = crate::sql::TOKEN_COLUMNS;
                match tenant {
                    Some(t) => sqlx::query(&format!("SELECT {cols} FROM api_tokens WHERE tenant_id = $1 ORDER BY created_at, id")).bind(t.as_str()).fetch_all(self.reader()).await?,
                    None => sqlx::query(&format!("SELECT {cols} FROM api_tokens ORDER BY created_at, id")).fetch_all(self.reader()).await?,
                }
                .iter()
                .map(rows::token)
                .collect()
            }

            async fn touch_api_token(&self, id: &str, at: patchbay_core::Timestamp) -> crate::Result<()> {
                sqlx::query("UPDATE api_tokens SET last_used_at = $2 WHERE id = $1")
                    .bind(id)
                    .bind(crate::sql::ts(at))
                    .execute(self.writer())
                    .await?;
                Ok(())
            }

            async fn find_credentials(&self, scope: &patchbay_core::Scope, integration_ids: &[&str]) -> crate::Result<Vec<crate::CredentialRecord>> {
                if integration_ids.is_empty() {
                    return Ok(Vec::new());
                }
                let placeholders: Vec<String> = (0..integration_ids.len()).map(|n| format!("${}", n + 3)).collect();
                let sql = format!(
                    "SELECT {} FROM integration_credentials WHERE tenant_id = $1 AND organization_id = $2 AND integration_id IN ({})",
                    crate::sql::CREDENTIAL_COLUMNS,
                    placeholders.join(", ")
                );
                let mut q = sqlx::query(&sql).bind(scope.tenant_id.as_str()).bind(scope.organization_id.as_str());
                for id in integration_ids {
                    q = q.bind(*id);
                }
                let mut found: Vec<crate::CredentialRecord> = q.fetch_all(self.reader()).await?.iter().map(rows::credential).collect::<crate::Result<_>>()?;
                // In the order asked for, so callers can take the first as the most specific.
                found.sort_by_key(|c| integration_ids.iter().position(|id| *id == c.integration_id));
                Ok(found)
            }

            async fn touch_credential(&self, scope: &patchbay_core::Scope, integration_id: &str, at: patchbay_core::Timestamp) -> crate::Result<()> {
                sqlx::query("UPDATE integration_credentials SET last_used_at = $4 WHERE tenant_id = $1 AND organization_id = $2 AND integration_id = $3")
                    .bind(scope.tenant_id.as_str())
                    .bind(scope.organization_id.as_str())
                    .bind(integration_id)
                    .bind(crate::sql::ts(at))
                    .execute(self.writer())
                    .await?;
                Ok(())
            }

            async fn get_state(&self, scope: &patchbay_core::Scope, integration_id: &str) -> crate::Result<Option<crate::StateRecord>> {
                sqlx::query(&format!(
                    "SELECT {} FROM integration_states WHERE tenant_id = $1 AND organization_id = $2 AND integration_id = $3",
                    crate::sql::STATE_COLUMNS
                ))
                .bind(scope.tenant_id.as_str())
                .bind(scope.organization_id.as_str())
                .bind(integration_id)
                .fetch_optional(self.reader())
                .await?
                .as_ref()
                .map(rows::state)
                .transpose()
            }

            async fn list_states(&self, scope: &patchbay_core::Scope) -> crate::Result<Vec<crate::StateRecord>> {
                sqlx::query(&format!(
                    "SELECT {} FROM integration_states WHERE tenant_id = $1 AND organization_id = $2 ORDER BY integration_id",
                    crate::sql::STATE_COLUMNS
                ))
                .bind(scope.tenant_id.as_str())
                .bind(scope.organization_id.as_str())
                .fetch_all(self.reader())
                .await?
                .iter()
                .map(rows::state)
                .collect()
            }

            async fn append_logs(&self, entries: &[crate::NewLogEntry]) -> crate::Result<()> {
                if entries.is_empty() {
                    return Ok(());
                }
                let mut tx = self.writer().begin().await?;
                for chunk in entries.chunks(crate::sql::LOG_BATCH) {
                    let mut sql = String::from(
                        "INSERT INTO integration_logs (tenant_id, organization_id, integration_id, level, operation, message, details, correlation_id, entity_type, entity_id, duration_ms, created_at) VALUES ",
                    );
                    for n in 0..chunk.len() {
                        let b = n * 12;
                        if n > 0 {
                            sql.push(',');
                        }
                        sql.push('(');
                        for c in 1..=12 {
                            if c > 1 {
                                sql.push(',');
                            }
                            sql.push('$');
                            sql.push_str(&(b + c).to_string());
                        }
                        sql.push(')');
                    }
                    let mut q = sqlx::query(&sql);
                    for e in chunk {
                        q = q
                            .bind(e.scope.tenant_id.as_str())
                            .bind(e.scope.organization_id.as_str())
                            .bind(&e.integration_id)
                            .bind(e.level.as_str())
                            .bind(&e.operation)
                            .bind(&e.message)
                            .bind(e.details.as_deref())
                            .bind(e.correlation_id.as_deref())
                            .bind(e.entity_type.as_deref())
                            .bind(e.entity_id.as_deref())
                            .bind(e.duration_ms)
                            .bind(crate::sql::ts(e.created_at));
                    }
                    q.execute(&mut *tx).await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn query_logs(&self, scope: &patchbay_core::Scope, q: &crate::LogQuery) -> crate::Result<crate::LogPage> {
                use sqlx::Row as _;
                let (filter, args) = crate::sql::log_filters(q);
                let limit = i64::from(q.limit.clamp(1, 1000));
                let count_sql = format!("SELECT COUNT(*) AS n FROM integration_logs WHERE {filter}");
                let total: i64 = bind_args(sqlx::query(&count_sql).bind(scope.tenant_id.as_str()).bind(scope.organization_id.as_str()), &args)
                    .fetch_one(self.reader())
                    .await?
                    .try_get("n")?;
                let mut page_args = args.clone();
                let mut page_filter = filter;
                if let Some(before) = q.before_id {
                    page_args.push(crate::sql::Arg::Int(before));
                    let _ = std::fmt::Write::write_fmt(&mut page_filter, format_args!(" AND id < ${}", page_args.len() + 2));
                }
                page_args.push(crate::sql::Arg::Int(limit + 1));
                let sql = format!(
                    "SELECT {} FROM integration_logs WHERE {page_filter} ORDER BY id DESC LIMIT ${}",
                    crate::sql::LOG_COLUMNS,
                    page_args.len() + 2
                );
                let mut items: Vec<crate::LogEntry> = bind_args(sqlx::query(&sql).bind(scope.tenant_id.as_str()).bind(scope.organization_id.as_str()), &page_args)
                    .fetch_all(self.reader())
                    .await?
                    .iter()
                    .map(rows::log)
                    .collect::<crate::Result<_>>()?;
                let more = items.len() > usize::try_from(limit).unwrap_or(usize::MAX);
                items.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
                let next_before_id = if more { items.last().map(|e| e.id) } else { None };
                Ok(crate::LogPage { items, total: u64::try_from(total).unwrap_or(0), next_before_id })
            }

            async fn prune_logs(
                &self,
                tenant: &patchbay_core::TenantId,
                older_than: patchbay_core::Timestamp,
                errors_older_than: patchbay_core::Timestamp,
            ) -> crate::Result<u64> {
                let r = sqlx::query(
                    "DELETE FROM integration_logs WHERE tenant_id = $1
                       AND ((level = 'error' AND created_at < $3) OR (level <> 'error' AND created_at < $2))",
                )
                .bind(tenant.as_str())
                .bind(crate::sql::ts(older_than))
                .bind(crate::sql::ts(errors_older_than))
                .execute(self.writer())
                .await?;
                Ok(r.rows_affected())
            }

            async fn list_events(&self, scope: &patchbay_core::Scope, after_seq: i64, limit: u32) -> crate::Result<Vec<crate::EventRecord>> {
                sqlx::query(&format!(
                    "SELECT {} FROM events WHERE tenant_id = $1 AND organization_id = $2 AND seq > $3 ORDER BY seq LIMIT $4",
                    crate::sql::EVENT_COLUMNS
                ))
                .bind(scope.tenant_id.as_str())
                .bind(scope.organization_id.as_str())
                .bind(after_seq)
                .bind(i64::from(limit.clamp(1, 1000)))
                .fetch_all(self.reader())
                .await?
                .iter()
                .map(rows::event)
                .collect()
            }

            async fn list_audit(&self, q: &crate::AuditQuery) -> crate::Result<Vec<crate::AuditRecord>> {
                let cols = crate::sql::AUDIT_COLUMNS;
                let limit = i64::from(q.limit.clamp(1, 1000));
                let before = q.before_id.unwrap_or(i64::MAX);
                match &q.tenant_id {
                    Some(t) => sqlx::query(&format!("SELECT {cols} FROM audit_records WHERE tenant_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3"))
                        .bind(t.as_str())
                        .bind(before)
                        .bind(limit)
                        .fetch_all(self.reader())
                        .await?,
                    None => sqlx::query(&format!("SELECT {cols} FROM audit_records WHERE id < $1 ORDER BY id DESC LIMIT $2"))
                        .bind(before)
                        .bind(limit)
                        .fetch_all(self.reader())
                        .await?,
                }
                .iter()
                .map(rows::audit)
                .collect()
            }

            async fn get_vault_check(&self) -> crate::Result<Option<crate::VaultCheckRecord>> {
                use sqlx::Row as _;
                let row = sqlx::query("SELECT key_id, nonce, ciphertext, updated_at FROM vault_meta WHERE id = 1").fetch_optional(self.reader()).await?;
                row.map(|r| {
                    Ok(crate::VaultCheckRecord {
                        key_id: r.try_get("key_id")?,
                        nonce: r.try_get("nonce")?,
                        ciphertext: r.try_get("ciphertext")?,
                        updated_at: patchbay_core::Timestamp::from_micros(r.try_get("updated_at")?),
                    })
                })
                .transpose()
            }

            async fn list_tenant_keys(&self, tenant: Option<&patchbay_core::TenantId>) -> crate::Result<Vec<crate::TenantKeyRecord>> {
                let cols = crate::sql::TENANT_KEY_COLUMNS;
                match tenant {
                    Some(t) => sqlx::query(&format!("SELECT {cols} FROM tenant_keys WHERE tenant_id = $1 ORDER BY version")).bind(t.as_str()).fetch_all(self.reader()).await?,
                    None => sqlx::query(&format!("SELECT {cols} FROM tenant_keys ORDER BY tenant_id, version")).fetch_all(self.reader()).await?,
                }
                .iter()
                .map(rows::tenant_key)
                .collect()
            }

            async fn get_tenant_key(&self, tenant: &patchbay_core::TenantId, version: i64) -> crate::Result<Option<crate::TenantKeyRecord>> {
                sqlx::query(&format!("SELECT {} FROM tenant_keys WHERE tenant_id = $1 AND version = $2", crate::sql::TENANT_KEY_COLUMNS))
                    .bind(tenant.as_str())
                    .bind(version)
                    .fetch_optional(self.reader())
                    .await?
                    .as_ref()
                    .map(rows::tenant_key)
                    .transpose()
            }

            async fn list_credentials_below_version(&self, tenant: &patchbay_core::TenantId, version: i64, limit: u32) -> crate::Result<Vec<crate::CredentialRecord>> {
                sqlx::query(&format!(
                    "SELECT {} FROM integration_credentials WHERE tenant_id = $1 AND key_version < $2 ORDER BY organization_id, integration_id LIMIT $3",
                    crate::sql::CREDENTIAL_COLUMNS
                ))
                .bind(tenant.as_str())
                .bind(version)
                .bind(i64::from(limit.clamp(1, 1000)))
                .fetch_all(self.reader())
                .await?
                .iter()
                .map(rows::credential)
                .collect()
            }

            async fn count_credentials_with_version(&self, tenant: &patchbay_core::TenantId, version: i64) -> crate::Result<u64> {
                use sqlx::Row as _;
                let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM integration_credentials WHERE tenant_id = $1 AND key_version = $2")
                    .bind(tenant.as_str())
                    .bind(version)
                    .fetch_one(self.reader())
                    .await?
                    .try_get("n")?;
                Ok(u64::try_from(n).unwrap_or(0))
            }

            async fn get_principal(&self, scope: &patchbay_core::Scope, integration_id: &str) -> crate::Result<Option<crate::PrincipalRecord>> {
                sqlx::query(&format!(
                    "SELECT {} FROM integration_principals WHERE tenant_id = $1 AND organization_id = $2 AND integration_id = $3",
                    crate::sql::PRINCIPAL_COLUMNS
                ))
                .bind(scope.tenant_id.as_str())
                .bind(scope.organization_id.as_str())
                .bind(integration_id)
                .fetch_optional(self.reader())
                .await?
                .as_ref()
                .map(rows::principal)
                .transpose()
            }

            async fn list_principals(&self, scope: &patchbay_core::Scope) -> crate::Result<Vec<crate::PrincipalRecord>> {
                sqlx::query(&format!(
                    "SELECT {} FROM integration_principals WHERE tenant_id = $1 AND organization_id = $2 ORDER BY integration_id",
                    crate::sql::PRINCIPAL_COLUMNS
                ))
                .bind(scope.tenant_id.as_str())
                .bind(scope.organization_id.as_str())
                .fetch_all(self.reader())
                .await?
                .iter()
                .map(rows::principal)
                .collect()
            }

            async fn get_tenant_settings(&self, tenant: &patchbay_core::TenantId) -> crate::Result<Option<crate::TenantSettings>> {
                use sqlx::Row as _;
                let row = sqlx::query("SELECT tenant_id, log_retention_days, error_log_retention_days, updated_at FROM tenant_settings WHERE tenant_id = $1")
                    .bind(tenant.as_str())
                    .fetch_optional(self.reader())
                    .await?;
                row.map(|r| {
                    Ok(crate::TenantSettings {
                        tenant_id: patchbay_core::TenantId::new(r.try_get::<String, _>("tenant_id")?),
                        log_retention_days: r.try_get("log_retention_days")?,
                        error_log_retention_days: r.try_get("error_log_retention_days")?,
                        updated_at: patchbay_core::Timestamp::from_micros(r.try_get("updated_at")?),
                    })
                })
                .transpose()
            }

            async fn close(&self) {
                self.writer().close().await;
                self.reader().close().await;
            }
        }
    };
}

pub(crate) use impl_store;
