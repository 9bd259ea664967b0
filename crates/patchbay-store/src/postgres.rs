//! The PostgreSQL backend, for several Patchbay processes sharing one database.
//!
//! Migrations run under a session advisory lock, so servers starting together
//! apply each migration once. Transactions that append to the event outbox
//! take a transaction advisory lock first, so outbox sequence numbers are
//! assigned in commit order and a consumer reading `after=<seq>` never skips
//! an event that commits late.
// A backend implements the whole model; naming each type adds nothing.
#![allow(clippy::wildcard_imports)]

use std::str::FromStr as _;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions as _, Connection as _, Postgres, Row as _};

use crate::migrate::{self, Migration};
use crate::statements as st;
use crate::{Backend, Result, StoreError};

/// Advisory lock keys ("patchbay" in ASCII, plus a purpose).
const MIGRATION_LOCK: i64 = 0x7061_7463_6862_6100;
const OUTBOX_LOCK: i64 = 0x7061_7463_6862_6101;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

mod jobs;
mod sync;
mod usage;

#[derive(Debug)]
pub(crate) struct PgStore {
    pool: PgPool,
    /// Bumped on this process's enqueues and on `patchbay_jobs` notifications.
    wake: std::sync::Arc<tokio::sync::watch::Sender<u64>>,
    /// Set once the notification listener runs.
    listening: std::sync::OnceLock<()>,
}

impl PgStore {
    const BACKEND: Backend = Backend::Postgres;
    const MIGRATIONS: &'static [Migration] = migrate::POSTGRES;

    fn reader(&self) -> &PgPool {
        &self.pool
    }

    fn writer(&self) -> &PgPool {
        &self.pool
    }

    async fn lock_outbox(tx: &mut sqlx::Transaction<'_, Postgres>) -> Result<()> {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(OUTBOX_LOCK)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    pub(crate) async fn open(url: &str) -> Result<PgStore> {
        let shown = crate::redact_url(url);
        let options = PgConnectOptions::from_str(url).map_err(|e| {
            StoreError::Config(format!(
                "invalid PostgreSQL URL `{shown}`: {}",
                first_line(&e.to_string())
            ))
        })?;
        // One direct connection first: the pool would retry until its timeout
        // and report only "timed out", hiding why (refused, bad password, …).
        let probe = tokio::time::timeout(CONNECT_TIMEOUT, options.connect()).await;
        let unavailable = |why: String| {
            StoreError::Unavailable(format!("cannot connect to PostgreSQL at {shown}: {why}"))
        };
        match probe {
            Err(_) => {
                return Err(unavailable(format!(
                    "no answer within {} s",
                    CONNECT_TIMEOUT.as_secs()
                )));
            }
            Ok(Err(e)) => return Err(unavailable(first_line(&e.to_string()).to_owned())),
            Ok(Ok(conn)) => conn.close().await?,
        }
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(CONNECT_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(|e| unavailable(first_line(&e.to_string()).to_owned()))?;
        migrate(&pool).await?;
        Ok(PgStore {
            pool,
            wake: std::sync::Arc::new(tokio::sync::watch::Sender::new(0)),
            listening: std::sync::OnceLock::new(),
        })
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

async fn migrate(pool: &PgPool) -> Result<()> {
    let mut conn = pool.acquire().await?;
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *conn)
        .await?;
    let outcome = async {
        sqlx::raw_sql(migrate::CREATE_TABLE).execute(&mut *conn).await?;
        let applied: Vec<(i64, String)> = sqlx::query("SELECT version, checksum FROM patchbay_migrations ORDER BY version")
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(|r| Ok((r.try_get("version")?, r.try_get("checksum")?)))
            .collect::<Result<_, sqlx::Error>>()?;
        for m in migrate::plan(PgStore::MIGRATIONS, &applied)? {
            tracing::info!(version = m.version, name = m.name, "applying PostgreSQL migration");
            let mut tx = sqlx::Connection::begin(&mut *conn).await?;
            sqlx::raw_sql(m.sql).execute(&mut *tx).await?;
            sqlx::query("INSERT INTO patchbay_migrations (version, name, checksum, applied_at) VALUES ($1, $2, $3, $4)")
                .bind(m.version)
                .bind(m.name)
                .bind(m.checksum())
                .bind(patchbay_core::Timestamp::now().as_micros())
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        }
        Ok::<(), StoreError>(())
    }
    .await;
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *conn)
        .await?;
    outcome
}

mod rows {
    use super::*;
    use crate::sql::*;
    use crate::*;

    pub(super) fn tenant(r: &sqlx::postgres::PgRow) -> Result<Tenant> {
        Ok(Tenant {
            id: TenantId::new(r.try_get::<String, _>("id")?),
            slug: r.try_get("slug")?,
            name: r.try_get("name")?,
            created_at: Timestamp::from_micros(r.try_get("created_at")?),
        })
    }

    pub(super) fn organization(r: &sqlx::postgres::PgRow) -> Result<Organization> {
        Ok(Organization {
            id: OrganizationId::new(r.try_get::<String, _>("id")?),
            tenant_id: TenantId::new(r.try_get::<String, _>("tenant_id")?),
            slug: r.try_get("slug")?,
            name: r.try_get("name")?,
            created_at: Timestamp::from_micros(r.try_get("created_at")?),
        })
    }

    pub(super) fn token(r: &sqlx::postgres::PgRow) -> Result<ApiTokenRecord> {
        let features: String = r.try_get("features")?;
        Ok(ApiTokenRecord {
            id: r.try_get("id")?,
            name: r.try_get("name")?,
            token_hash: r.try_get("token_hash")?,
            prefix: r.try_get("prefix")?,
            scope: token_scope(r.try_get("tenant_id")?, r.try_get("organization_id")?),
            features: features
                .split(',')
                .filter(|f| !f.is_empty())
                .map(str::to_owned)
                .collect(),
            created_by: r.try_get("created_by")?,
            created_at: Timestamp::from_micros(r.try_get("created_at")?),
            expires_at: from_ts(r.try_get("expires_at")?),
            last_used_at: from_ts(r.try_get("last_used_at")?),
            revoked_at: from_ts(r.try_get("revoked_at")?),
        })
    }

    pub(super) fn credential(r: &sqlx::postgres::PgRow) -> Result<CredentialRecord> {
        Ok(CredentialRecord {
            scope: Scope::new(
                r.try_get::<String, _>("tenant_id")?,
                r.try_get::<String, _>("organization_id")?,
            ),
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

    pub(super) fn state(r: &sqlx::postgres::PgRow) -> Result<StateRecord> {
        Ok(StateRecord {
            scope: Scope::new(
                r.try_get::<String, _>("tenant_id")?,
                r.try_get::<String, _>("organization_id")?,
            ),
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

    pub(super) fn log(r: &sqlx::postgres::PgRow) -> Result<LogEntry> {
        Ok(LogEntry {
            id: r.try_get("id")?,
            entry: NewLogEntry {
                scope: Scope::new(
                    r.try_get::<String, _>("tenant_id")?,
                    r.try_get::<String, _>("organization_id")?,
                ),
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

    pub(super) fn event(r: &sqlx::postgres::PgRow) -> Result<EventRecord> {
        Ok(EventRecord {
            seq: r.try_get("seq")?,
            event: NewEvent {
                id: r.try_get("id")?,
                scope: Scope::new(
                    r.try_get::<String, _>("tenant_id")?,
                    r.try_get::<String, _>("organization_id")?,
                ),
                event_type: r.try_get("event_type")?,
                integration_id: r.try_get("integration_id")?,
                payload: r.try_get("payload")?,
                created_at: Timestamp::from_micros(r.try_get("created_at")?),
            },
        })
    }

    pub(super) fn tenant_key(r: &sqlx::postgres::PgRow) -> Result<TenantKeyRecord> {
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

    pub(super) fn principal(r: &sqlx::postgres::PgRow) -> Result<PrincipalRecord> {
        let keys: String = r.try_get("action_keys")?;
        Ok(PrincipalRecord {
            scope: Scope::new(
                r.try_get::<String, _>("tenant_id")?,
                r.try_get::<String, _>("organization_id")?,
            ),
            integration_id: r.try_get("integration_id")?,
            principal_id: r.try_get("principal_id")?,
            key_id: r.try_get("key_id")?,
            action_keys: keys
                .split(',')
                .filter(|k| !k.is_empty())
                .map(str::to_owned)
                .collect(),
            created_at: Timestamp::from_micros(r.try_get("created_at")?),
            revoked_at: from_ts(r.try_get("revoked_at")?),
        })
    }

    pub(super) fn user(r: &sqlx::postgres::PgRow) -> Result<UserRecord> {
        let features: String = r.try_get("features")?;
        let tenant: Option<String> = r.try_get("tenant_id")?;
        let org: Option<String> = r.try_get("organization_id")?;
        Ok(UserRecord {
            id: r.try_get("id")?,
            email: r.try_get("email")?,
            name: r.try_get("name")?,
            password_hash: r.try_get("password_hash")?,
            scope: tenant.zip(org).map(|(t, o)| Scope::new(t, o)),
            features: features
                .split(',')
                .filter(|f| !f.is_empty())
                .map(str::to_owned)
                .collect(),
            created_at: Timestamp::from_micros(r.try_get("created_at")?),
            disabled_at: from_ts(r.try_get("disabled_at")?),
            last_sign_in_at: from_ts(r.try_get("last_sign_in_at")?),
        })
    }

    pub(super) fn session(r: &sqlx::postgres::PgRow) -> Result<SessionRecord> {
        let tenant: Option<String> = r.try_get("tenant_id")?;
        let org: Option<String> = r.try_get("organization_id")?;
        Ok(SessionRecord {
            id_hash: r.try_get("id_hash")?,
            user_id: r.try_get("user_id")?,
            csrf_token: r.try_get("csrf_token")?,
            scope: tenant.zip(org).map(|(t, o)| Scope::new(t, o)),
            created_at: Timestamp::from_micros(r.try_get("created_at")?),
            last_seen_at: Timestamp::from_micros(r.try_get("last_seen_at")?),
            expires_at: Timestamp::from_micros(r.try_get("expires_at")?),
        })
    }

    pub(super) fn audit(r: &sqlx::postgres::PgRow) -> Result<AuditRecord> {
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
    mut q: sqlx::query::Query<
        'q,
        sqlx::Postgres,
        <sqlx::Postgres as sqlx::Database>::Arguments<'q>,
    >,
    args: &'q [crate::sql::Arg],
) -> sqlx::query::Query<'q, sqlx::Postgres, <sqlx::Postgres as sqlx::Database>::Arguments<'q>> {
    for a in args {
        q = match a {
            crate::sql::Arg::Text(s) => q.bind(s.as_str()),
            crate::sql::Arg::Int(i) => q.bind(*i),
        };
    }
    q
}

async fn apply_one(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    change: &crate::Change,
) -> crate::Result<u64> {
    use crate::sql::*;
    use crate::*;
    let conn = &mut **tx;
    let done = match change {
        Change::CreateTenant(t) => sqlx::query(st::INSERT_TENANT)
            .bind(t.id.as_str())
            .bind(&t.slug)
            .bind(&t.name)
            .bind(ts(t.created_at))
            .execute(conn)
            .await
            .map_err(|e| {
                conflict(e, || {
                    format!("a tenant with slug `{}` already exists", t.slug)
                })
            })?,
        Change::CreateOrganization(o) => sqlx::query(st::INSERT_ORGANIZATION)
            .bind(o.id.as_str())
            .bind(o.tenant_id.as_str())
            .bind(&o.slug)
            .bind(&o.name)
            .bind(ts(o.created_at))
            .execute(conn)
            .await
            .map_err(|e| {
                conflict(e, || {
                    format!(
                        "tenant `{}` already has an organization with slug `{}`",
                        o.tenant_id, o.slug
                    )
                })
            })?,
        Change::InsertApiToken(t) => {
            let (tenant, org) = match &t.scope {
                TokenScope::Platform => (None, None),
                TokenScope::Tenant(s) => {
                    (Some(s.tenant_id.as_str()), Some(s.organization_id.as_str()))
                }
            };
            sqlx::query(st::INSERT_TOKEN)
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
                None => {
                    sqlx::query(st::REVOKE_TOKEN)
                        .bind(id)
                        .bind(ts(*at))
                        .execute(conn)
                        .await?
                }
                Some(s) => {
                    sqlx::query(st::REVOKE_TOKEN_IN_SCOPE)
                        .bind(id)
                        .bind(ts(*at))
                        .bind(s.tenant_id.as_str())
                        .bind(s.organization_id.as_str())
                        .execute(conn)
                        .await?
                }
            };
            if r.rows_affected() == 0 {
                return Err(StoreError::NotFound(format!("active API token `{id}`")));
            }
            r
        }
        Change::PutCredential(c) => {
            sqlx::query(st::UPSERT_CREDENTIAL)
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
                .await?
        }
        Change::DeleteCredential {
            scope,
            integration_id,
        } => {
            sqlx::query(st::DELETE_CREDENTIAL)
                .bind(scope.tenant_id.as_str())
                .bind(scope.organization_id.as_str())
                .bind(integration_id)
                .execute(conn)
                .await?
        }
        Change::PutState { state: s, expect } => {
            let what = || format!("the state of `{}`", s.integration_id);
            let r = match expect {
                Expect::Absent => sqlx::query(st::INSERT_STATE),
                Expect::Version(_) => sqlx::query(st::UPDATE_STATE),
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
            PgStore::lock_outbox(tx).await?;
            sqlx::query(st::INSERT_EVENT)
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
        Change::AppendAudit(a) => {
            sqlx::query(st::INSERT_AUDIT)
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
                .await?
        }
        Change::PutVaultCheck {
            record: v,
            expect_key_id,
        } => {
            let r = match expect_key_id {
                None => sqlx::query(st::INSERT_VAULT_CHECK)
                    .bind(&v.key_id)
                    .bind(&v.nonce)
                    .bind(&v.ciphertext)
                    .bind(ts(v.updated_at))
                    .execute(conn)
                    .await
                    .map_err(|e| conflict(e, || "the vault is already initialised".to_owned()))?,
                Some(old) => {
                    sqlx::query(st::UPDATE_VAULT_CHECK)
                        .bind(&v.key_id)
                        .bind(&v.nonce)
                        .bind(&v.ciphertext)
                        .bind(ts(v.updated_at))
                        .bind(old)
                        .execute(conn)
                        .await?
                }
            };
            if r.rows_affected() == 0 {
                return Err(StoreError::Stale("the vault check value".to_owned()));
            }
            r
        }
        Change::PutTenantKey(k) => sqlx::query(st::INSERT_TENANT_KEY)
            .bind(k.tenant_id.as_str())
            .bind(k.version)
            .bind(&k.master_key_id)
            .bind(&k.nonce)
            .bind(&k.wrapped_key)
            .bind(ts(k.created_at))
            .bind(opt_ts(k.retired_at))
            .execute(conn)
            .await
            .map_err(|e| {
                conflict(e, || {
                    format!(
                        "tenant `{}` already has data key version {}",
                        k.tenant_id, k.version
                    )
                })
            })?,
        Change::RewrapTenantKey {
            record: k,
            expect_master_key_id,
        } => {
            let r = sqlx::query(st::REWRAP_TENANT_KEY)
                .bind(k.tenant_id.as_str())
                .bind(k.version)
                .bind(&k.master_key_id)
                .bind(&k.nonce)
                .bind(&k.wrapped_key)
                .bind(expect_master_key_id)
                .execute(conn)
                .await?;
            if r.rows_affected() == 0 {
                return Err(StoreError::Stale(format!(
                    "data key {} of tenant `{}`",
                    k.version, k.tenant_id
                )));
            }
            r
        }
        Change::RetireTenantKey {
            tenant_id,
            version,
            at,
        } => {
            sqlx::query(st::RETIRE_TENANT_KEY)
                .bind(tenant_id.as_str())
                .bind(*version)
                .bind(ts(*at))
                .execute(conn)
                .await?
        }
        Change::DeleteTenantKey { tenant_id, version } => sqlx::query(st::DELETE_TENANT_KEY)
            .bind(tenant_id.as_str())
            .bind(*version)
            .execute(conn)
            .await
            .map_err(|e| match StoreError::from(e) {
                // The credentials' foreign key keeps a data key that is still needed.
                StoreError::NotFound(_) => StoreError::Conflict(format!(
                    "data key {version} of tenant `{tenant_id}` still encrypts credentials"
                )),
                other => other,
            })?,
        Change::ReplaceCredential {
            record: c,
            expect_key_id,
        } => {
            let r = sqlx::query(st::REPLACE_CREDENTIAL)
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
                return Err(StoreError::Stale(format!(
                    "the credentials of `{}`",
                    c.integration_id
                )));
            }
            r
        }
        Change::PutPrincipal(p) => {
            sqlx::query(st::UPSERT_PRINCIPAL)
                .bind(p.scope.tenant_id.as_str())
                .bind(p.scope.organization_id.as_str())
                .bind(&p.integration_id)
                .bind(&p.principal_id)
                .bind(&p.key_id)
                .bind(p.action_keys.join(","))
                .bind(ts(p.created_at))
                .bind(opt_ts(p.revoked_at))
                .execute(conn)
                .await?
        }
        Change::RevokePrincipal {
            scope,
            integration_id,
            at,
        } => {
            sqlx::query(st::REVOKE_PRINCIPAL)
                .bind(scope.tenant_id.as_str())
                .bind(scope.organization_id.as_str())
                .bind(integration_id)
                .bind(ts(*at))
                .execute(conn)
                .await?
        }
        Change::PutTenantSettings(t) => {
            sqlx::query(st::UPSERT_SETTINGS)
                .bind(t.tenant_id.as_str())
                .bind(t.log_retention_days)
                .bind(t.error_log_retention_days)
                .bind(ts(t.updated_at))
                .execute(conn)
                .await?
        }
        Change::CreateUser(u) => sqlx::query(st::INSERT_USER)
            .bind(&u.id)
            .bind(&u.email)
            .bind(&u.name)
            .bind(&u.password_hash)
            .bind(u.scope.as_ref().map(|s| s.tenant_id.as_str()))
            .bind(u.scope.as_ref().map(|s| s.organization_id.as_str()))
            .bind(u.features.join(","))
            .bind(ts(u.created_at))
            .bind(opt_ts(u.disabled_at))
            .bind(opt_ts(u.last_sign_in_at))
            .execute(conn)
            .await
            .map_err(|e| {
                conflict(e, || {
                    format!("a user with email `{}` already exists", u.email)
                })
            })?,
        Change::DisableUser { id, at } => {
            let r = sqlx::query(st::DISABLE_USER)
                .bind(id)
                .bind(ts(*at))
                .execute(&mut **tx)
                .await?;
            if r.rows_affected() == 0 {
                return Err(StoreError::NotFound(format!("active user `{id}`")));
            }
            sqlx::query(st::DELETE_SESSIONS_OF_USER)
                .bind(id)
                .execute(&mut **tx)
                .await?;
            r
        }
        Change::CreateSession(x) => {
            sqlx::query(st::INSERT_SESSION)
                .bind(&x.id_hash)
                .bind(&x.user_id)
                .bind(&x.csrf_token)
                .bind(x.scope.as_ref().map(|s| s.tenant_id.as_str()))
                .bind(x.scope.as_ref().map(|s| s.organization_id.as_str()))
                .bind(ts(x.created_at))
                .bind(ts(x.last_seen_at))
                .bind(ts(x.expires_at))
                .execute(conn)
                .await?
        }
        Change::DeleteSession { id_hash } => {
            sqlx::query(st::DELETE_SESSION)
                .bind(id_hash)
                .execute(conn)
                .await?
        }
        Change::SetSessionScope { id_hash, scope } => {
            sqlx::query(st::SET_SESSION_SCOPE)
                .bind(id_hash)
                .bind(scope.as_ref().map(|s| s.tenant_id.as_str()))
                .bind(scope.as_ref().map(|s| s.organization_id.as_str()))
                .execute(conn)
                .await?
        }
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
impl crate::Store for PgStore {
    fn backend(&self) -> crate::Backend {
        Self::BACKEND
    }

    async fn readiness(&self) -> crate::Result<crate::Readiness> {
        use sqlx::Row as _;
        let row = sqlx::query(st::READINESS).fetch_one(self.reader()).await?;
        let applied: i64 = row.try_get("v")?;
        Ok(crate::Readiness {
            applied_migration: applied,
            expected_migration: Self::MIGRATIONS.last().map_or(0, |m| m.version),
        })
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

    async fn get_tenant(
        &self,
        id: &patchbay_core::TenantId,
    ) -> crate::Result<Option<crate::Tenant>> {
        sqlx::query(st::GET_TENANT)
            .bind(id.as_str())
            .fetch_optional(self.reader())
            .await?
            .as_ref()
            .map(rows::tenant)
            .transpose()
    }

    async fn list_tenants(&self) -> crate::Result<Vec<crate::Tenant>> {
        sqlx::query(st::LIST_TENANTS)
            .fetch_all(self.reader())
            .await?
            .iter()
            .map(rows::tenant)
            .collect()
    }

    async fn get_organization(
        &self,
        tenant: &patchbay_core::TenantId,
        id: &patchbay_core::OrganizationId,
    ) -> crate::Result<Option<crate::Organization>> {
        sqlx::query(st::GET_ORGANIZATION)
            .bind(tenant.as_str())
            .bind(id.as_str())
            .fetch_optional(self.reader())
            .await?
            .as_ref()
            .map(rows::organization)
            .transpose()
    }

    async fn list_organizations(
        &self,
        tenant: &patchbay_core::TenantId,
    ) -> crate::Result<Vec<crate::Organization>> {
        sqlx::query(st::LIST_ORGANIZATIONS)
            .bind(tenant.as_str())
            .fetch_all(self.reader())
            .await?
            .iter()
            .map(rows::organization)
            .collect()
    }

    async fn find_api_token(
        &self,
        token_hash: &[u8],
    ) -> crate::Result<Option<crate::ApiTokenRecord>> {
        sqlx::query(st::FIND_TOKEN)
            .bind(token_hash)
            .fetch_optional(self.reader())
            .await?
            .as_ref()
            .map(rows::token)
            .transpose()
    }

    async fn list_api_tokens(
        &self,
        tenant: Option<&patchbay_core::TenantId>,
    ) -> crate::Result<Vec<crate::ApiTokenRecord>> {
        match tenant {
            Some(t) => {
                sqlx::query(st::LIST_TOKENS_OF_TENANT)
                    .bind(t.as_str())
                    .fetch_all(self.reader())
                    .await?
            }
            None => {
                sqlx::query(st::LIST_TOKENS)
                    .fetch_all(self.reader())
                    .await?
            }
        }
        .iter()
        .map(rows::token)
        .collect()
    }

    async fn touch_api_token(&self, id: &str, at: patchbay_core::Timestamp) -> crate::Result<()> {
        sqlx::query(st::TOUCH_TOKEN)
            .bind(id)
            .bind(crate::sql::ts(at))
            .execute(self.writer())
            .await?;
        Ok(())
    }

    async fn find_credentials(
        &self,
        scope: &patchbay_core::Scope,
        integration_ids: &[&str],
    ) -> crate::Result<Vec<crate::CredentialRecord>> {
        if integration_ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = crate::sql::find_credentials_sql(integration_ids.len());
        let mut q = sqlx::query(&sql)
            .bind(scope.tenant_id.as_str())
            .bind(scope.organization_id.as_str());
        for id in integration_ids {
            q = q.bind(*id);
        }
        let mut found: Vec<crate::CredentialRecord> = q
            .fetch_all(self.reader())
            .await?
            .iter()
            .map(rows::credential)
            .collect::<crate::Result<_>>()?;
        // In the order asked for, so callers can take the first as the most specific.
        found.sort_by_key(|c| {
            integration_ids
                .iter()
                .position(|id| *id == c.integration_id)
        });
        Ok(found)
    }

    async fn touch_credential(
        &self,
        scope: &patchbay_core::Scope,
        integration_id: &str,
        at: patchbay_core::Timestamp,
    ) -> crate::Result<()> {
        sqlx::query(st::TOUCH_CREDENTIAL)
            .bind(scope.tenant_id.as_str())
            .bind(scope.organization_id.as_str())
            .bind(integration_id)
            .bind(crate::sql::ts(at))
            .execute(self.writer())
            .await?;
        Ok(())
    }

    async fn get_state(
        &self,
        scope: &patchbay_core::Scope,
        integration_id: &str,
    ) -> crate::Result<Option<crate::StateRecord>> {
        sqlx::query(st::GET_STATE)
            .bind(scope.tenant_id.as_str())
            .bind(scope.organization_id.as_str())
            .bind(integration_id)
            .fetch_optional(self.reader())
            .await?
            .as_ref()
            .map(rows::state)
            .transpose()
    }

    async fn list_states_with_status(
        &self,
        status: patchbay_core::IntegrationStatus,
    ) -> crate::Result<Vec<crate::StateRecord>> {
        sqlx::query(st::LIST_STATES_WITH_STATUS)
            .bind(status.as_str())
            .fetch_all(self.reader())
            .await?
            .iter()
            .map(rows::state)
            .collect()
    }

    async fn list_states(
        &self,
        scope: &patchbay_core::Scope,
    ) -> crate::Result<Vec<crate::StateRecord>> {
        sqlx::query(st::LIST_STATES)
            .bind(scope.tenant_id.as_str())
            .bind(scope.organization_id.as_str())
            .fetch_all(self.reader())
            .await?
            .iter()
            .map(rows::state)
            .collect()
    }

    async fn append_logs(&self, entries: Vec<crate::NewLogEntry>) -> crate::Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut tx = self.writer().begin().await?;
        for chunk in entries.chunks(crate::sql::LOG_BATCH) {
            let sql = crate::sql::insert_logs_sql(chunk.len());
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

    async fn query_logs(
        &self,
        scope: &patchbay_core::Scope,
        q: &crate::LogQuery,
    ) -> crate::Result<crate::LogPage> {
        use sqlx::Row as _;
        let (filter, args) = crate::sql::log_filters(q);
        let limit = i64::from(q.limit.clamp(1, 1000));
        let count_sql = format!("SELECT COUNT(*) AS n FROM integration_logs WHERE {filter}");
        let total: i64 = bind_args(
            sqlx::query(&count_sql)
                .bind(scope.tenant_id.as_str())
                .bind(scope.organization_id.as_str()),
            &args,
        )
        .fetch_one(self.reader())
        .await?
        .try_get("n")?;
        let mut page_args = args.clone();
        let mut page_filter = filter;
        if let Some(before) = q.before_id {
            page_args.push(crate::sql::Arg::Int(before));
            let _ = std::fmt::Write::write_fmt(
                &mut page_filter,
                format_args!(" AND id < ${}", page_args.len() + 2),
            );
        }
        page_args.push(crate::sql::Arg::Int(limit + 1));
        let mut sql = format!(
            "{} WHERE {page_filter} ORDER BY id DESC LIMIT ${}",
            st::LOG_SELECT,
            page_args.len() + 2
        );
        if let Some(offset) = q.offset {
            page_args.push(crate::sql::Arg::Int(i64::from(offset)));
            let _ = std::fmt::Write::write_fmt(
                &mut sql,
                format_args!(" OFFSET ${}", page_args.len() + 2),
            );
        }
        let mut items: Vec<crate::LogEntry> = bind_args(
            sqlx::query(&sql)
                .bind(scope.tenant_id.as_str())
                .bind(scope.organization_id.as_str()),
            &page_args,
        )
        .fetch_all(self.reader())
        .await?
        .iter()
        .map(rows::log)
        .collect::<crate::Result<_>>()?;
        let more = items.len() > usize::try_from(limit).unwrap_or(usize::MAX);
        items.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        let next_before_id = if more {
            items.last().map(|e| e.id)
        } else {
            None
        };
        Ok(crate::LogPage {
            items,
            total: u64::try_from(total).unwrap_or(0),
            next_before_id,
        })
    }

    async fn prune_logs(
        &self,
        tenant: &patchbay_core::TenantId,
        older_than: patchbay_core::Timestamp,
        errors_older_than: patchbay_core::Timestamp,
    ) -> crate::Result<u64> {
        let r = sqlx::query(st::PRUNE_LOGS)
            .bind(tenant.as_str())
            .bind(crate::sql::ts(older_than))
            .bind(crate::sql::ts(errors_older_than))
            .execute(self.writer())
            .await?;
        Ok(r.rows_affected())
    }

    async fn list_events(
        &self,
        scope: &patchbay_core::Scope,
        after_seq: i64,
        limit: u32,
    ) -> crate::Result<Vec<crate::EventRecord>> {
        sqlx::query(st::LIST_EVENTS)
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
        let limit = i64::from(q.limit.clamp(1, 1000));
        let before = q.before_id.unwrap_or(i64::MAX);
        match &q.tenant_id {
            Some(t) => {
                sqlx::query(st::LIST_AUDIT_OF_TENANT)
                    .bind(t.as_str())
                    .bind(before)
                    .bind(limit)
                    .fetch_all(self.reader())
                    .await?
            }
            None => {
                sqlx::query(st::LIST_AUDIT)
                    .bind(before)
                    .bind(limit)
                    .fetch_all(self.reader())
                    .await?
            }
        }
        .iter()
        .map(rows::audit)
        .collect()
    }

    async fn get_vault_check(&self) -> crate::Result<Option<crate::VaultCheckRecord>> {
        use sqlx::Row as _;
        let row = sqlx::query(st::GET_VAULT_CHECK)
            .fetch_optional(self.reader())
            .await?;
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

    async fn list_tenant_keys(
        &self,
        tenant: Option<&patchbay_core::TenantId>,
    ) -> crate::Result<Vec<crate::TenantKeyRecord>> {
        match tenant {
            Some(t) => {
                sqlx::query(st::LIST_TENANT_KEYS_OF_TENANT)
                    .bind(t.as_str())
                    .fetch_all(self.reader())
                    .await?
            }
            None => {
                sqlx::query(st::LIST_TENANT_KEYS)
                    .fetch_all(self.reader())
                    .await?
            }
        }
        .iter()
        .map(rows::tenant_key)
        .collect()
    }

    async fn get_tenant_key(
        &self,
        tenant: &patchbay_core::TenantId,
        version: i64,
    ) -> crate::Result<Option<crate::TenantKeyRecord>> {
        sqlx::query(st::GET_TENANT_KEY)
            .bind(tenant.as_str())
            .bind(version)
            .fetch_optional(self.reader())
            .await?
            .as_ref()
            .map(rows::tenant_key)
            .transpose()
    }

    async fn list_credentials_below_version(
        &self,
        tenant: &patchbay_core::TenantId,
        version: i64,
        limit: u32,
    ) -> crate::Result<Vec<crate::CredentialRecord>> {
        sqlx::query(st::LIST_CREDENTIALS_BELOW_VERSION)
            .bind(tenant.as_str())
            .bind(version)
            .bind(i64::from(limit.clamp(1, 1000)))
            .fetch_all(self.reader())
            .await?
            .iter()
            .map(rows::credential)
            .collect()
    }

    async fn count_credentials_with_version(
        &self,
        tenant: &patchbay_core::TenantId,
        version: i64,
    ) -> crate::Result<u64> {
        use sqlx::Row as _;
        let n: i64 = sqlx::query(st::COUNT_CREDENTIALS_WITH_VERSION)
            .bind(tenant.as_str())
            .bind(version)
            .fetch_one(self.reader())
            .await?
            .try_get("n")?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn get_principal(
        &self,
        scope: &patchbay_core::Scope,
        integration_id: &str,
    ) -> crate::Result<Option<crate::PrincipalRecord>> {
        sqlx::query(st::GET_PRINCIPAL)
            .bind(scope.tenant_id.as_str())
            .bind(scope.organization_id.as_str())
            .bind(integration_id)
            .fetch_optional(self.reader())
            .await?
            .as_ref()
            .map(rows::principal)
            .transpose()
    }

    async fn list_principals(
        &self,
        scope: &patchbay_core::Scope,
    ) -> crate::Result<Vec<crate::PrincipalRecord>> {
        sqlx::query(st::LIST_PRINCIPALS)
            .bind(scope.tenant_id.as_str())
            .bind(scope.organization_id.as_str())
            .fetch_all(self.reader())
            .await?
            .iter()
            .map(rows::principal)
            .collect()
    }

    async fn get_tenant_settings(
        &self,
        tenant: &patchbay_core::TenantId,
    ) -> crate::Result<Option<crate::TenantSettings>> {
        use sqlx::Row as _;
        let row = sqlx::query(st::GET_SETTINGS)
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

    async fn find_user_by_email(&self, email: &str) -> crate::Result<Option<crate::UserRecord>> {
        sqlx::query(st::FIND_USER_BY_EMAIL)
            .bind(email)
            .fetch_optional(self.reader())
            .await?
            .as_ref()
            .map(rows::user)
            .transpose()
    }

    async fn get_user(&self, id: &str) -> crate::Result<Option<crate::UserRecord>> {
        sqlx::query(st::GET_USER)
            .bind(id)
            .fetch_optional(self.reader())
            .await?
            .as_ref()
            .map(rows::user)
            .transpose()
    }

    async fn list_users(
        &self,
        tenant: Option<&patchbay_core::TenantId>,
    ) -> crate::Result<Vec<crate::UserRecord>> {
        match tenant {
            Some(t) => {
                sqlx::query(st::LIST_USERS_OF_TENANT)
                    .bind(t.as_str())
                    .fetch_all(self.reader())
                    .await?
            }
            None => sqlx::query(st::LIST_USERS).fetch_all(self.reader()).await?,
        }
        .iter()
        .map(rows::user)
        .collect()
    }

    async fn touch_user_sign_in(
        &self,
        id: &str,
        at: patchbay_core::Timestamp,
    ) -> crate::Result<()> {
        sqlx::query(st::TOUCH_USER_SIGN_IN)
            .bind(id)
            .bind(crate::sql::ts(at))
            .execute(self.writer())
            .await?;
        Ok(())
    }

    async fn find_session(&self, id_hash: &[u8]) -> crate::Result<Option<crate::SessionRecord>> {
        sqlx::query(st::FIND_SESSION)
            .bind(id_hash)
            .fetch_optional(self.reader())
            .await?
            .as_ref()
            .map(rows::session)
            .transpose()
    }

    async fn touch_session(
        &self,
        id_hash: &[u8],
        at: patchbay_core::Timestamp,
        expires_at: patchbay_core::Timestamp,
    ) -> crate::Result<()> {
        sqlx::query(st::TOUCH_SESSION)
            .bind(id_hash)
            .bind(crate::sql::ts(at))
            .bind(crate::sql::ts(expires_at))
            .execute(self.writer())
            .await?;
        Ok(())
    }

    async fn delete_expired_sessions(&self, now: patchbay_core::Timestamp) -> crate::Result<u64> {
        Ok(sqlx::query(st::DELETE_EXPIRED_SESSIONS)
            .bind(crate::sql::ts(now))
            .execute(self.writer())
            .await?
            .rows_affected())
    }

    async fn list_failing(
        &self,
        since: patchbay_core::Timestamp,
        limit: u32,
    ) -> crate::Result<Vec<crate::FailingConnection>> {
        use sqlx::Row as _;
        sqlx::query(st::LIST_FAILING)
            .bind(crate::sql::ts(since))
            .bind(i64::from(limit.clamp(1, 1000)))
            .fetch_all(self.reader())
            .await?
            .iter()
            .map(|r| {
                Ok(crate::FailingConnection {
                    scope: patchbay_core::Scope::new(
                        r.try_get::<String, _>("tenant_id")?,
                        r.try_get::<String, _>("organization_id")?,
                    ),
                    integration_id: r.try_get("integration_id")?,
                    errors: u64::try_from(r.try_get::<i64, _>("errors")?).unwrap_or(0),
                    last_error_at: patchbay_core::Timestamp::from_micros(
                        r.try_get("last_error_at")?,
                    ),
                })
            })
            .collect()
    }

    async fn close(&self) {
        self.writer().close().await;
        self.reader().close().await;
    }
}
