//! The embedded SQLite backend: one file in the data directory, in WAL mode,
//! through rusqlite.
//!
//! SQLite answers a point query in about a microsecond; the cost of reaching
//! it is what matters. Reads therefore run inline on the calling task, on
//! one of a few read-only connections (a query is a few microseconds, well
//! below what a thread hand-off costs). Writes run on Tokio's blocking pool
//! through the single writer connection, so in-process writers queue instead
//! of failing with `SQLITE_BUSY`, and a write that waits on the disk never
//! stalls an async worker. A lock file keeps a second server from opening
//! the same database: SQLite is the single-server backend, PostgreSQL the
//! shared one (administrative commands may still open it beside a server).
// A backend implements the whole model; naming each type adds nothing.
#![allow(clippy::wildcard_imports)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use patchbay_core::{OrganizationId, Scope, TenantId, Timestamp};
use rusqlite::types::{ToSqlOutput, Type};
use rusqlite::{
    Connection, OpenFlags, OptionalExtension as _, Row, ToSql, TransactionBehavior, params,
};

use crate::migrate::{self, Migration};
use crate::sql::{Arg, from_ts, log_filters, opt_ts, token_scope, ts};
use crate::statements::{self as st, lite};
use crate::*;

mod jobs;
mod sync;
mod usage;

const READERS: usize = 4;

#[derive(Debug, Clone)]
pub(crate) struct SqliteStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    writer: Mutex<Option<Connection>>,
    readers: Vec<Mutex<Option<Connection>>>,
    next: AtomicUsize,
    /// Bumped when jobs may have become claimable (one process: no need for more).
    wake: tokio::sync::watch::Sender<u64>,
    /// Held for the life of a server's store: an exclusive lock on `<db>.lock`.
    _lock: Option<std::fs::File>,
}

/// Whether the store takes the one-server-per-database lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lock {
    /// A server: refuses to open a database another server holds.
    Exclusive,
    /// An administrative command beside a server.
    Shared,
}

fn closed() -> StoreError {
    StoreError::Unavailable("the database has been closed".to_owned())
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Maps rusqlite's errors onto the store's (by value: it is `map_err`'s argument).
#[allow(clippy::needless_pass_by_value)]
fn db(e: rusqlite::Error) -> StoreError {
    use rusqlite::ffi;
    match &e {
        rusqlite::Error::SqliteFailure(f, msg) => {
            let m = msg.clone().unwrap_or_else(|| f.to_string());
            match f.extended_code {
                ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY => {
                    StoreError::Conflict(m)
                }
                ffi::SQLITE_CONSTRAINT_FOREIGNKEY => StoreError::NotFound(format!(
                    "a referenced tenant or organization does not exist ({m})"
                )),
                ffi::SQLITE_CONSTRAINT_CHECK | ffi::SQLITE_CONSTRAINT_NOTNULL => {
                    StoreError::Invalid(m)
                }
                _ => match f.code {
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked => {
                        StoreError::Unavailable(format!("the database is busy: {m}"))
                    }
                    rusqlite::ErrorCode::CannotOpen
                    | rusqlite::ErrorCode::SystemIoFailure
                    | rusqlite::ErrorCode::DiskFull => {
                        StoreError::Unavailable(format!("the database is unavailable: {m}"))
                    }
                    _ => StoreError::Database(m),
                },
            }
        }
        _ => StoreError::Database(e.to_string()),
    }
}

fn bad_column(what: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(0, Type::Text, what.to_owned().into())
}

impl ToSql for Arg {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        match self {
            Arg::Text(s) => s.to_sql(),
            Arg::Int(i) => i.to_sql(),
        }
    }
}

impl Inner {
    /// Runs `f` on a reader, inline: the least busy one without waiting if
    /// possible, otherwise the next in turn.
    fn read<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for i in 0..self.readers.len() {
            if let Ok(guard) = self.readers[(start + i) % self.readers.len()].try_lock() {
                return f(guard.as_ref().ok_or_else(closed)?).map_err(db);
            }
        }
        let guard = lock(&self.readers[start % self.readers.len()]);
        f(guard.as_ref().ok_or_else(closed)?).map_err(db)
    }
}

impl SqliteStore {
    pub(crate) async fn open(path: &Path, mode: Lock) -> Result<SqliteStore> {
        let path = path.to_path_buf();
        tokio::task::spawn_blocking(move || Self::open_blocking(&path, mode))
            .await
            .map_err(|e| StoreError::Database(e.to_string()))?
    }

    fn open_blocking(path: &Path, mode: Lock) -> Result<SqliteStore> {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&dir).map_err(|e| {
            StoreError::Config(format!(
                "cannot create data directory {}: {e}",
                dir.display()
            ))
        })?;
        let probe = dir.join(".patchbay-write-test");
        std::fs::write(&probe, b"")
            .and_then(|()| std::fs::remove_file(&probe))
            .map_err(|e| {
                StoreError::Config(format!(
                    "data directory {} is not writable: {e}",
                    dir.display()
                ))
            })?;
        let lock = match mode {
            Lock::Exclusive => Some(take_lock(path)?),
            Lock::Shared => None,
        };
        let unavailable = |e: rusqlite::Error| {
            StoreError::Unavailable(format!(
                "cannot open SQLite database {}: {e}",
                path.display()
            ))
        };
        let mut writer = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(unavailable)?;
        configure(&writer, false).map_err(unavailable)?;
        migrate(&mut writer)?;
        let readers = (0..READERS)
            .map(|_| {
                let c = Connection::open_with_flags(
                    path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .map_err(unavailable)?;
                configure(&c, true).map_err(unavailable)?;
                Ok(Mutex::new(Some(c)))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                writer: Mutex::new(Some(writer)),
                readers,
                next: AtomicUsize::new(0),
                wake: tokio::sync::watch::Sender::new(0),
                _lock: lock,
            }),
        })
    }

    fn read<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T> {
        self.inner.read(f)
    }

    /// Runs `f` with the writer connection on the blocking pool.
    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = lock(&inner.writer);
            let conn = guard.as_mut().ok_or_else(closed)?;
            f(conn)
        })
        .await
        .map_err(|e| StoreError::Database(format!("a database task failed: {e}")))?
    }
}

fn configure(c: &Connection, read_only: bool) -> rusqlite::Result<()> {
    c.busy_timeout(Duration::from_secs(5))?;
    c.set_prepared_statement_cache_capacity(64);
    if !read_only {
        c.pragma_update(None, "journal_mode", "WAL")?;
        c.pragma_update(None, "synchronous", "NORMAL")?;
        c.pragma_update(None, "foreign_keys", "ON")?;
    }
    Ok(())
}

fn take_lock(path: &Path) -> Result<std::fs::File> {
    let lock_path = path.with_extension("lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| {
            StoreError::Config(format!(
                "cannot create lock file {}: {e}",
                lock_path.display()
            ))
        })?;
    lock.try_lock().map_err(|_| {
        StoreError::Config(format!(
            "the database {} is in use by another Patchbay process (lock {} is held); SQLite serves one process, use PostgreSQL to run several",
            path.display(),
            lock_path.display()
        ))
    })?;
    Ok(lock)
}

fn migrate(conn: &mut Connection) -> Result<()> {
    conn.execute_batch(migrate::CREATE_TABLE).map_err(db)?;
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db)?;
    let applied: Vec<(i64, String)> = {
        let mut stmt = tx
            .prepare("SELECT version, checksum FROM patchbay_migrations ORDER BY version")
            .map_err(db)?;
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(db)?
            .collect::<rusqlite::Result<_>>()
            .map_err(db)?
    };
    for m in migrate::plan(SqliteStore::MIGRATIONS, &applied)? {
        tracing::info!(
            version = m.version,
            name = m.name,
            "applying SQLite migration"
        );
        tx.execute_batch(m.sql).map_err(db)?;
        tx.execute(
            "INSERT INTO patchbay_migrations (version, name, checksum, applied_at) VALUES (?1, ?2, ?3, ?4)",
            params![m.version, m.name, m.checksum(), Timestamp::now().as_micros()],
        )
        .map_err(db)?;
    }
    tx.commit().map_err(db)
}

// ---- rows ----

fn scope_of(r: &Row<'_>, t: &str, o: &str) -> rusqlite::Result<Scope> {
    Ok(Scope::new(r.get::<_, String>(t)?, r.get::<_, String>(o)?))
}

fn tenant(r: &Row<'_>) -> rusqlite::Result<Tenant> {
    Ok(Tenant {
        id: TenantId::new(r.get::<_, String>("id")?),
        slug: r.get("slug")?,
        name: r.get("name")?,
        created_at: Timestamp::from_micros(r.get("created_at")?),
    })
}

fn organization(r: &Row<'_>) -> rusqlite::Result<Organization> {
    Ok(Organization {
        id: OrganizationId::new(r.get::<_, String>("id")?),
        tenant_id: TenantId::new(r.get::<_, String>("tenant_id")?),
        slug: r.get("slug")?,
        name: r.get("name")?,
        created_at: Timestamp::from_micros(r.get("created_at")?),
    })
}

fn token(r: &Row<'_>) -> rusqlite::Result<ApiTokenRecord> {
    let features: String = r.get("features")?;
    Ok(ApiTokenRecord {
        id: r.get("id")?,
        name: r.get("name")?,
        token_hash: r.get("token_hash")?,
        prefix: r.get("prefix")?,
        scope: token_scope(r.get("tenant_id")?, r.get("organization_id")?),
        features: features
            .split(',')
            .filter(|f| !f.is_empty())
            .map(str::to_owned)
            .collect(),
        created_by: r.get("created_by")?,
        created_at: Timestamp::from_micros(r.get("created_at")?),
        expires_at: from_ts(r.get("expires_at")?),
        last_used_at: from_ts(r.get("last_used_at")?),
        revoked_at: from_ts(r.get("revoked_at")?),
    })
}

fn credential(r: &Row<'_>) -> rusqlite::Result<CredentialRecord> {
    Ok(CredentialRecord {
        scope: scope_of(r, "tenant_id", "organization_id")?,
        integration_id: r.get("integration_id")?,
        key_id: r.get("key_id")?,
        key_version: r.get("key_version")?,
        nonce: r.get("nonce")?,
        ciphertext: r.get("ciphertext")?,
        created_at: Timestamp::from_micros(r.get("created_at")?),
        updated_at: Timestamp::from_micros(r.get("updated_at")?),
        last_used_at: from_ts(r.get("last_used_at")?),
    })
}

fn state(r: &Row<'_>) -> rusqlite::Result<StateRecord> {
    let status: String = r.get("status")?;
    Ok(StateRecord {
        scope: scope_of(r, "tenant_id", "organization_id")?,
        integration_id: r.get("integration_id")?,
        status: patchbay_core::IntegrationStatus::parse(&status)
            .ok_or_else(|| bad_column("unknown integration status"))?,
        api_version: r.get("api_version")?,
        enabled_at: from_ts(r.get("enabled_at")?),
        enabled_by: r.get("enabled_by")?,
        last_health: r.get("last_health")?,
        last_health_at: from_ts(r.get("last_health_at")?),
        updated_at: Timestamp::from_micros(r.get("updated_at")?),
        version: r.get("version")?,
    })
}

fn log(r: &Row<'_>) -> rusqlite::Result<LogEntry> {
    let level: String = r.get("level")?;
    Ok(LogEntry {
        id: r.get("id")?,
        entry: NewLogEntry {
            scope: scope_of(r, "tenant_id", "organization_id")?,
            integration_id: r.get("integration_id")?,
            level: patchbay_core::LogLevel::parse(&level)
                .ok_or_else(|| bad_column("unknown log level"))?,
            operation: r.get("operation")?,
            message: r.get("message")?,
            details: r.get("details")?,
            correlation_id: r.get("correlation_id")?,
            entity_type: r.get("entity_type")?,
            entity_id: r.get("entity_id")?,
            duration_ms: r.get("duration_ms")?,
            created_at: Timestamp::from_micros(r.get("created_at")?),
        },
    })
}

fn event(r: &Row<'_>) -> rusqlite::Result<EventRecord> {
    Ok(EventRecord {
        seq: r.get("seq")?,
        event: NewEvent {
            id: r.get("id")?,
            scope: scope_of(r, "tenant_id", "organization_id")?,
            event_type: r.get("event_type")?,
            integration_id: r.get("integration_id")?,
            payload: r.get("payload")?,
            created_at: Timestamp::from_micros(r.get("created_at")?),
        },
    })
}

fn audit(r: &Row<'_>) -> rusqlite::Result<AuditRecord> {
    let tenant: Option<String> = r.get("tenant_id")?;
    let org: Option<String> = r.get("organization_id")?;
    Ok(AuditRecord {
        id: r.get("id")?,
        audit: NewAudit {
            actor: r.get("actor")?,
            scope: tenant.zip(org).map(|(t, o)| Scope::new(t, o)),
            action: r.get("action")?,
            target: r.get("target")?,
            outcome: r.get("outcome")?,
            details: r.get("details")?,
            correlation_id: r.get("correlation_id")?,
            created_at: Timestamp::from_micros(r.get("created_at")?),
        },
    })
}

fn tenant_key(r: &Row<'_>) -> rusqlite::Result<TenantKeyRecord> {
    Ok(TenantKeyRecord {
        tenant_id: TenantId::new(r.get::<_, String>("tenant_id")?),
        version: r.get("version")?,
        master_key_id: r.get("master_key_id")?,
        nonce: r.get("nonce")?,
        wrapped_key: r.get("wrapped_key")?,
        created_at: Timestamp::from_micros(r.get("created_at")?),
        retired_at: from_ts(r.get("retired_at")?),
    })
}

fn principal(r: &Row<'_>) -> rusqlite::Result<PrincipalRecord> {
    let keys: String = r.get("action_keys")?;
    Ok(PrincipalRecord {
        scope: scope_of(r, "tenant_id", "organization_id")?,
        integration_id: r.get("integration_id")?,
        principal_id: r.get("principal_id")?,
        key_id: r.get("key_id")?,
        action_keys: keys
            .split(',')
            .filter(|k| !k.is_empty())
            .map(str::to_owned)
            .collect(),
        created_at: Timestamp::from_micros(r.get("created_at")?),
        revoked_at: from_ts(r.get("revoked_at")?),
    })
}

fn user(r: &Row<'_>) -> rusqlite::Result<UserRecord> {
    let features: String = r.get("features")?;
    let tenant: Option<String> = r.get("tenant_id")?;
    let org: Option<String> = r.get("organization_id")?;
    Ok(UserRecord {
        id: r.get("id")?,
        email: r.get("email")?,
        name: r.get("name")?,
        password_hash: r.get("password_hash")?,
        scope: tenant.zip(org).map(|(t, o)| Scope::new(t, o)),
        features: features
            .split(',')
            .filter(|f| !f.is_empty())
            .map(str::to_owned)
            .collect(),
        created_at: Timestamp::from_micros(r.get("created_at")?),
        disabled_at: from_ts(r.get("disabled_at")?),
        last_sign_in_at: from_ts(r.get("last_sign_in_at")?),
    })
}

fn session(r: &Row<'_>) -> rusqlite::Result<SessionRecord> {
    let tenant: Option<String> = r.get("tenant_id")?;
    let org: Option<String> = r.get("organization_id")?;
    Ok(SessionRecord {
        id_hash: r.get("id_hash")?,
        user_id: r.get("user_id")?,
        csrf_token: r.get("csrf_token")?,
        scope: tenant.zip(org).map(|(t, o)| Scope::new(t, o)),
        created_at: Timestamp::from_micros(r.get("created_at")?),
        last_seen_at: Timestamp::from_micros(r.get("last_seen_at")?),
        expires_at: Timestamp::from_micros(r.get("expires_at")?),
    })
}

/// All rows of a query.
fn all<T>(
    c: &Connection,
    sql: &str,
    p: impl rusqlite::Params,
    f: fn(&Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<Vec<T>> {
    let mut stmt = c.prepare_cached(&lite(sql))?;
    stmt.query_map(p, f)?.collect()
}

/// The first row of a query, if any.
fn one<T>(
    c: &Connection,
    sql: &str,
    p: impl rusqlite::Params,
    f: fn(&Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<Option<T>> {
    c.prepare_cached(&lite(sql))?.query_row(p, f).optional()
}

fn exec(c: &Connection, sql: &str, p: impl rusqlite::Params) -> rusqlite::Result<usize> {
    c.prepare_cached(&lite(sql))?.execute(p)
}

fn conflict(e: rusqlite::Error, what: impl FnOnce() -> String) -> StoreError {
    match db(e) {
        StoreError::Conflict(_) => StoreError::Conflict(what()),
        other => other,
    }
}

/// Applies one change inside the writer's transaction.
fn apply_one(c: &Connection, change: &Change) -> Result<u64> {
    let n = match change {
        Change::CreateTenant(t) => exec(
            c,
            st::INSERT_TENANT,
            params![t.id.as_str(), t.slug, t.name, ts(t.created_at)],
        )
        .map_err(|e| {
            conflict(e, || {
                format!("a tenant with slug `{}` already exists", t.slug)
            })
        })?,
        Change::CreateOrganization(o) => exec(
            c,
            st::INSERT_ORGANIZATION,
            params![
                o.id.as_str(),
                o.tenant_id.as_str(),
                o.slug,
                o.name,
                ts(o.created_at)
            ],
        )
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
            exec(
                c,
                st::INSERT_TOKEN,
                params![
                    t.id,
                    t.name,
                    t.token_hash,
                    t.prefix,
                    tenant,
                    org,
                    t.features.join(","),
                    t.created_by,
                    ts(t.created_at),
                    opt_ts(t.expires_at),
                    opt_ts(t.last_used_at),
                    opt_ts(t.revoked_at)
                ],
            )
            .map_err(db)?
        }
        Change::RevokeApiToken { id, scope, at } => {
            let n = match scope {
                None => exec(c, st::REVOKE_TOKEN, params![id, ts(*at)]),
                Some(s) => exec(
                    c,
                    st::REVOKE_TOKEN_IN_SCOPE,
                    params![
                        id,
                        ts(*at),
                        s.tenant_id.as_str(),
                        s.organization_id.as_str()
                    ],
                ),
            }
            .map_err(db)?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("active API token `{id}`")));
            }
            n
        }
        Change::PutCredential(r) => exec(
            c,
            st::UPSERT_CREDENTIAL,
            params![
                r.scope.tenant_id.as_str(),
                r.scope.organization_id.as_str(),
                r.integration_id,
                r.key_id,
                r.key_version,
                r.nonce,
                r.ciphertext,
                ts(r.created_at),
                ts(r.updated_at),
                opt_ts(r.last_used_at)
            ],
        )
        .map_err(db)?,
        Change::DeleteCredential {
            scope,
            integration_id,
        } => exec(
            c,
            st::DELETE_CREDENTIAL,
            params![
                scope.tenant_id.as_str(),
                scope.organization_id.as_str(),
                integration_id
            ],
        )
        .map_err(db)?,
        Change::PutState { state: s, expect } => {
            let common = params![
                s.scope.tenant_id.as_str(),
                s.scope.organization_id.as_str(),
                s.integration_id,
                s.status.as_str(),
                s.api_version,
                opt_ts(s.enabled_at),
                s.enabled_by,
                s.last_health,
                opt_ts(s.last_health_at),
                ts(s.updated_at),
                s.version
            ];
            let n = match expect {
                Expect::Absent => exec(c, st::INSERT_STATE, common),
                Expect::Version(v) => {
                    let mut all: Vec<&dyn ToSql> = common.to_vec();
                    all.push(v);
                    exec(c, st::UPDATE_STATE, all.as_slice())
                }
            }
            .map_err(db)?;
            if n == 0 {
                return Err(StoreError::Stale(format!(
                    "the state of `{}`",
                    s.integration_id
                )));
            }
            n
        }
        Change::AppendEvent(e) => exec(
            c,
            st::INSERT_EVENT,
            params![
                e.id,
                e.scope.tenant_id.as_str(),
                e.scope.organization_id.as_str(),
                e.event_type,
                e.integration_id,
                e.payload,
                ts(e.created_at)
            ],
        )
        .map_err(db)?,
        Change::AppendAudit(a) => exec(
            c,
            st::INSERT_AUDIT,
            params![
                a.scope.as_ref().map(|s| s.tenant_id.as_str()),
                a.scope.as_ref().map(|s| s.organization_id.as_str()),
                a.actor,
                a.action,
                a.target,
                a.outcome,
                a.details,
                a.correlation_id,
                ts(a.created_at)
            ],
        )
        .map_err(db)?,
        Change::PutVaultCheck {
            record: v,
            expect_key_id,
        } => {
            let n = match expect_key_id {
                None => exec(
                    c,
                    st::INSERT_VAULT_CHECK,
                    params![v.key_id, v.nonce, v.ciphertext, ts(v.updated_at)],
                )
                .map_err(|e| conflict(e, || "the vault is already initialised".to_owned()))?,
                Some(old) => exec(
                    c,
                    st::UPDATE_VAULT_CHECK,
                    params![v.key_id, v.nonce, v.ciphertext, ts(v.updated_at), old],
                )
                .map_err(db)?,
            };
            if n == 0 {
                return Err(StoreError::Stale("the vault check value".to_owned()));
            }
            n
        }
        Change::PutTenantKey(k) => exec(
            c,
            st::INSERT_TENANT_KEY,
            params![
                k.tenant_id.as_str(),
                k.version,
                k.master_key_id,
                k.nonce,
                k.wrapped_key,
                ts(k.created_at),
                opt_ts(k.retired_at)
            ],
        )
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
            let n = exec(
                c,
                st::REWRAP_TENANT_KEY,
                params![
                    k.tenant_id.as_str(),
                    k.version,
                    k.master_key_id,
                    k.nonce,
                    k.wrapped_key,
                    expect_master_key_id
                ],
            )
            .map_err(db)?;
            if n == 0 {
                return Err(StoreError::Stale(format!(
                    "data key {} of tenant `{}`",
                    k.version, k.tenant_id
                )));
            }
            n
        }
        Change::RetireTenantKey {
            tenant_id,
            version,
            at,
        } => exec(
            c,
            st::RETIRE_TENANT_KEY,
            params![tenant_id.as_str(), version, ts(*at)],
        )
        .map_err(db)?,
        Change::DeleteTenantKey { tenant_id, version } => exec(
            c,
            st::DELETE_TENANT_KEY,
            params![tenant_id.as_str(), version],
        )
        .map_err(|e| match db(e) {
            // The credentials' foreign key keeps a data key that is still needed.
            StoreError::NotFound(_) => StoreError::Conflict(format!(
                "data key {version} of tenant `{tenant_id}` still encrypts credentials"
            )),
            other => other,
        })?,
        Change::ReplaceCredential {
            record: r,
            expect_key_id,
        } => {
            let n = exec(
                c,
                st::REPLACE_CREDENTIAL,
                params![
                    r.scope.tenant_id.as_str(),
                    r.scope.organization_id.as_str(),
                    r.integration_id,
                    r.key_id,
                    r.key_version,
                    r.nonce,
                    r.ciphertext,
                    ts(r.updated_at),
                    expect_key_id
                ],
            )
            .map_err(db)?;
            if n == 0 {
                return Err(StoreError::Stale(format!(
                    "the credentials of `{}`",
                    r.integration_id
                )));
            }
            n
        }
        Change::PutPrincipal(p) => exec(
            c,
            st::UPSERT_PRINCIPAL,
            params![
                p.scope.tenant_id.as_str(),
                p.scope.organization_id.as_str(),
                p.integration_id,
                p.principal_id,
                p.key_id,
                p.action_keys.join(","),
                ts(p.created_at),
                opt_ts(p.revoked_at)
            ],
        )
        .map_err(db)?,
        Change::RevokePrincipal {
            scope,
            integration_id,
            at,
        } => exec(
            c,
            st::REVOKE_PRINCIPAL,
            params![
                scope.tenant_id.as_str(),
                scope.organization_id.as_str(),
                integration_id,
                ts(*at)
            ],
        )
        .map_err(db)?,
        Change::PutTenantSettings(t) => exec(
            c,
            st::UPSERT_SETTINGS,
            params![
                t.tenant_id.as_str(),
                t.log_retention_days,
                t.error_log_retention_days,
                ts(t.updated_at)
            ],
        )
        .map_err(db)?,
        Change::CreateUser(u) => exec(
            c,
            st::INSERT_USER,
            params![
                u.id,
                u.email,
                u.name,
                u.password_hash,
                u.scope.as_ref().map(|s| s.tenant_id.as_str()),
                u.scope.as_ref().map(|s| s.organization_id.as_str()),
                u.features.join(","),
                ts(u.created_at),
                opt_ts(u.disabled_at),
                opt_ts(u.last_sign_in_at)
            ],
        )
        .map_err(|e| {
            conflict(e, || {
                format!("a user with email `{}` already exists", u.email)
            })
        })?,
        Change::DisableUser { id, at } => {
            let n = exec(c, st::DISABLE_USER, params![id, ts(*at)]).map_err(db)?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("active user `{id}`")));
            }
            exec(c, st::DELETE_SESSIONS_OF_USER, params![id]).map_err(db)?;
            n
        }
        Change::CreateSession(x) => exec(
            c,
            st::INSERT_SESSION,
            params![
                x.id_hash,
                x.user_id,
                x.csrf_token,
                x.scope.as_ref().map(|s| s.tenant_id.as_str()),
                x.scope.as_ref().map(|s| s.organization_id.as_str()),
                ts(x.created_at),
                ts(x.last_seen_at),
                ts(x.expires_at)
            ],
        )
        .map_err(db)?,
        Change::DeleteSession { id_hash } => {
            exec(c, st::DELETE_SESSION, params![id_hash]).map_err(db)?
        }
        Change::SetSessionScope { id_hash, scope } => exec(
            c,
            st::SET_SESSION_SCOPE,
            params![
                id_hash,
                scope.as_ref().map(|s| s.tenant_id.as_str()),
                scope.as_ref().map(|s| s.organization_id.as_str())
            ],
        )
        .map_err(db)?,
    };
    Ok(u64::try_from(n).unwrap_or(u64::MAX))
}

impl SqliteStore {
    const MIGRATIONS: &'static [Migration] = migrate::SQLITE;
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    async fn readiness(&self) -> Result<Readiness> {
        let applied: i64 = self.read(|c| c.query_row(st::READINESS, [], |r| r.get(0)))?;
        Ok(Readiness {
            applied_migration: applied,
            expected_migration: Self::MIGRATIONS.last().map_or(0, |m| m.version),
        })
    }

    async fn apply(&self, changes: Vec<Change>) -> Result<Vec<u64>> {
        self.write(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db)?;
            let affected = changes
                .iter()
                .map(|c| apply_one(&tx, c))
                .collect::<Result<Vec<_>>>()?;
            tx.commit().map_err(db)?;
            Ok(affected)
        })
        .await
    }

    async fn get_tenant(&self, id: &TenantId) -> Result<Option<Tenant>> {
        self.read(|c| one(c, st::GET_TENANT, [id.as_str()], tenant))
    }

    async fn list_tenants(&self) -> Result<Vec<Tenant>> {
        self.read(|c| all(c, st::LIST_TENANTS, [], tenant))
    }

    async fn get_organization(
        &self,
        tenant_id: &TenantId,
        id: &OrganizationId,
    ) -> Result<Option<Organization>> {
        self.read(|c| {
            one(
                c,
                st::GET_ORGANIZATION,
                [tenant_id.as_str(), id.as_str()],
                organization,
            )
        })
    }

    async fn list_organizations(&self, tenant_id: &TenantId) -> Result<Vec<Organization>> {
        self.read(|c| {
            all(
                c,
                st::LIST_ORGANIZATIONS,
                [tenant_id.as_str()],
                organization,
            )
        })
    }

    async fn find_api_token(&self, token_hash: &[u8]) -> Result<Option<ApiTokenRecord>> {
        self.read(|c| one(c, st::FIND_TOKEN, [token_hash], token))
    }

    async fn list_api_tokens(&self, tenant_id: Option<&TenantId>) -> Result<Vec<ApiTokenRecord>> {
        self.read(|c| match tenant_id {
            Some(t) => all(c, st::LIST_TOKENS_OF_TENANT, [t.as_str()], token),
            None => all(c, st::LIST_TOKENS, [], token),
        })
    }

    async fn touch_api_token(&self, id: &str, at: Timestamp) -> Result<()> {
        let id = id.to_owned();
        self.write(move |c| {
            exec(c, st::TOUCH_TOKEN, params![id, ts(at)])
                .map(drop)
                .map_err(db)
        })
        .await
    }

    async fn find_credentials(
        &self,
        scope: &Scope,
        integration_ids: &[&str],
    ) -> Result<Vec<CredentialRecord>> {
        if integration_ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = crate::sql::find_credentials_sql(integration_ids.len());
        let mut found = self.read(|c| {
            let (t, o) = (scope.tenant_id.as_str(), scope.organization_id.as_str());
            let mut args: Vec<&dyn ToSql> = vec![&t as &dyn ToSql, &o];
            args.extend(integration_ids.iter().map(|id| id as &dyn ToSql));
            all(c, &sql, args.as_slice(), credential)
        })?;
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
        scope: &Scope,
        integration_id: &str,
        at: Timestamp,
    ) -> Result<()> {
        let (scope, id) = (scope.clone(), integration_id.to_owned());
        self.write(move |c| {
            exec(
                c,
                st::TOUCH_CREDENTIAL,
                params![
                    scope.tenant_id.as_str(),
                    scope.organization_id.as_str(),
                    id,
                    ts(at)
                ],
            )
            .map(drop)
            .map_err(db)
        })
        .await
    }

    async fn get_state(&self, scope: &Scope, integration_id: &str) -> Result<Option<StateRecord>> {
        self.read(|c| {
            one(
                c,
                st::GET_STATE,
                [
                    scope.tenant_id.as_str(),
                    scope.organization_id.as_str(),
                    integration_id,
                ],
                state,
            )
        })
    }

    async fn list_states(&self, scope: &Scope) -> Result<Vec<StateRecord>> {
        self.read(|c| {
            all(
                c,
                st::LIST_STATES,
                [scope.tenant_id.as_str(), scope.organization_id.as_str()],
                state,
            )
        })
    }

    async fn list_states_with_status(
        &self,
        status: patchbay_core::IntegrationStatus,
    ) -> Result<Vec<StateRecord>> {
        self.read(|c| all(c, st::LIST_STATES_WITH_STATUS, [status.as_str()], state))
    }

    async fn append_logs(&self, entries: Vec<NewLogEntry>) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        self.write(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db)?;
            {
                let sql = lite(&crate::sql::insert_logs_sql(1));
                let mut stmt = tx.prepare_cached(&sql).map_err(db)?;
                for e in &entries {
                    stmt.execute(params![
                        e.scope.tenant_id.as_str(),
                        e.scope.organization_id.as_str(),
                        e.integration_id,
                        e.level.as_str(),
                        e.operation,
                        e.message,
                        e.details,
                        e.correlation_id,
                        e.entity_type,
                        e.entity_id,
                        e.duration_ms,
                        ts(e.created_at)
                    ])
                    .map_err(db)?;
                }
            }
            tx.commit().map_err(db)
        })
        .await
    }

    async fn query_logs(&self, scope: &Scope, q: &LogQuery) -> Result<LogPage> {
        let (filter, args) = log_filters(q);
        let limit = i64::from(q.limit.clamp(1, 1000));
        let count_sql = lite(&format!(
            "SELECT COUNT(*) FROM integration_logs WHERE {filter}"
        ));
        let mut page_args = args.clone();
        let mut page_filter = filter;
        if let Some(before) = q.before_id {
            page_args.push(Arg::Int(before));
            let _ = std::fmt::Write::write_fmt(
                &mut page_filter,
                format_args!(" AND id < ${}", page_args.len() + 2),
            );
        }
        page_args.push(Arg::Int(limit + 1));
        let mut page_sql = format!(
            "{} WHERE {page_filter} ORDER BY id DESC LIMIT ${}",
            st::LOG_SELECT,
            page_args.len() + 2
        );
        if let Some(offset) = q.offset {
            page_args.push(Arg::Int(i64::from(offset)));
            let _ = std::fmt::Write::write_fmt(
                &mut page_sql,
                format_args!(" OFFSET ${}", page_args.len() + 2),
            );
        }
        let page_sql = lite(&page_sql);
        let bind = |extra: &[Arg]| -> Vec<Box<dyn ToSql>> {
            let mut v: Vec<Box<dyn ToSql>> = vec![
                Box::new(scope.tenant_id.as_str().to_owned()),
                Box::new(scope.organization_id.as_str().to_owned()),
            ];
            v.extend(extra.iter().cloned().map(|a| Box::new(a) as Box<dyn ToSql>));
            v
        };
        let (total, mut items) = self.read(|c| {
            let total: i64 = c
                .prepare_cached(&count_sql)?
                .query_row(rusqlite::params_from_iter(bind(&args)), |r| r.get(0))?;
            let mut stmt = c.prepare_cached(&page_sql)?;
            let items = stmt
                .query_map(rusqlite::params_from_iter(bind(&page_args)), log)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok((total, items))
        })?;
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let more = items.len() > limit;
        items.truncate(limit);
        let next_before_id = if more {
            items.last().map(|e| e.id)
        } else {
            None
        };
        Ok(LogPage {
            items,
            total: u64::try_from(total).unwrap_or(0),
            next_before_id,
        })
    }

    async fn prune_logs(
        &self,
        tenant_id: &TenantId,
        older_than: Timestamp,
        errors_older_than: Timestamp,
    ) -> Result<u64> {
        let t = tenant_id.clone();
        let n = self
            .write(move |c| {
                exec(
                    c,
                    st::PRUNE_LOGS,
                    params![t.as_str(), ts(older_than), ts(errors_older_than)],
                )
                .map_err(db)
            })
            .await?;
        Ok(u64::try_from(n).unwrap_or(u64::MAX))
    }

    async fn list_events(
        &self,
        scope: &Scope,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<EventRecord>> {
        self.read(|c| {
            all(
                c,
                st::LIST_EVENTS,
                params![
                    scope.tenant_id.as_str(),
                    scope.organization_id.as_str(),
                    after_seq,
                    i64::from(limit.clamp(1, 1000))
                ],
                event,
            )
        })
    }

    async fn list_audit(&self, q: &AuditQuery) -> Result<Vec<AuditRecord>> {
        let limit = i64::from(q.limit.clamp(1, 1000));
        let before = q.before_id.unwrap_or(i64::MAX);
        self.read(|c| match &q.tenant_id {
            Some(t) => all(
                c,
                st::LIST_AUDIT_OF_TENANT,
                params![t.as_str(), before, limit],
                audit,
            ),
            None => all(c, st::LIST_AUDIT, params![before, limit], audit),
        })
    }

    async fn get_vault_check(&self) -> Result<Option<VaultCheckRecord>> {
        self.read(|c| {
            one(c, st::GET_VAULT_CHECK, [], |r| {
                Ok(VaultCheckRecord {
                    key_id: r.get(0)?,
                    nonce: r.get(1)?,
                    ciphertext: r.get(2)?,
                    updated_at: Timestamp::from_micros(r.get(3)?),
                })
            })
        })
    }

    async fn list_tenant_keys(&self, tenant_id: Option<&TenantId>) -> Result<Vec<TenantKeyRecord>> {
        self.read(|c| match tenant_id {
            Some(t) => all(c, st::LIST_TENANT_KEYS_OF_TENANT, [t.as_str()], tenant_key),
            None => all(c, st::LIST_TENANT_KEYS, [], tenant_key),
        })
    }

    async fn get_tenant_key(
        &self,
        tenant_id: &TenantId,
        version: i64,
    ) -> Result<Option<TenantKeyRecord>> {
        self.read(|c| {
            one(
                c,
                st::GET_TENANT_KEY,
                params![tenant_id.as_str(), version],
                tenant_key,
            )
        })
    }

    async fn list_credentials_below_version(
        &self,
        tenant_id: &TenantId,
        version: i64,
        limit: u32,
    ) -> Result<Vec<CredentialRecord>> {
        self.read(|c| {
            all(
                c,
                st::LIST_CREDENTIALS_BELOW_VERSION,
                params![tenant_id.as_str(), version, i64::from(limit.clamp(1, 1000))],
                credential,
            )
        })
    }

    async fn count_credentials_with_version(
        &self,
        tenant_id: &TenantId,
        version: i64,
    ) -> Result<u64> {
        let n: i64 = self.read(|c| {
            c.prepare_cached(&lite(st::COUNT_CREDENTIALS_WITH_VERSION))?
                .query_row(params![tenant_id.as_str(), version], |r| r.get(0))
        })?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn get_principal(
        &self,
        scope: &Scope,
        integration_id: &str,
    ) -> Result<Option<PrincipalRecord>> {
        self.read(|c| {
            one(
                c,
                st::GET_PRINCIPAL,
                [
                    scope.tenant_id.as_str(),
                    scope.organization_id.as_str(),
                    integration_id,
                ],
                principal,
            )
        })
    }

    async fn list_principals(&self, scope: &Scope) -> Result<Vec<PrincipalRecord>> {
        self.read(|c| {
            all(
                c,
                st::LIST_PRINCIPALS,
                [scope.tenant_id.as_str(), scope.organization_id.as_str()],
                principal,
            )
        })
    }

    async fn get_tenant_settings(&self, tenant_id: &TenantId) -> Result<Option<TenantSettings>> {
        self.read(|c| {
            one(c, st::GET_SETTINGS, [tenant_id.as_str()], |r| {
                Ok(TenantSettings {
                    tenant_id: TenantId::new(r.get::<_, String>(0)?),
                    log_retention_days: r.get(1)?,
                    error_log_retention_days: r.get(2)?,
                    updated_at: Timestamp::from_micros(r.get(3)?),
                })
            })
        })
    }

    async fn find_user_by_email(&self, email: &str) -> Result<Option<UserRecord>> {
        self.read(|c| one(c, st::FIND_USER_BY_EMAIL, [email], user))
    }

    async fn get_user(&self, id: &str) -> Result<Option<UserRecord>> {
        self.read(|c| one(c, st::GET_USER, [id], user))
    }

    async fn list_users(&self, tenant_id: Option<&TenantId>) -> Result<Vec<UserRecord>> {
        self.read(|c| match tenant_id {
            Some(t) => all(c, st::LIST_USERS_OF_TENANT, [t.as_str()], user),
            None => all(c, st::LIST_USERS, [], user),
        })
    }

    async fn touch_user_sign_in(&self, id: &str, at: Timestamp) -> Result<()> {
        let id = id.to_owned();
        self.write(move |c| {
            exec(c, st::TOUCH_USER_SIGN_IN, params![id, ts(at)])
                .map(drop)
                .map_err(db)
        })
        .await
    }

    async fn find_session(&self, id_hash: &[u8]) -> Result<Option<SessionRecord>> {
        self.read(|c| one(c, st::FIND_SESSION, [id_hash], session))
    }

    async fn touch_session(
        &self,
        id_hash: &[u8],
        at: Timestamp,
        expires_at: Timestamp,
    ) -> Result<()> {
        let id = id_hash.to_vec();
        self.write(move |c| {
            exec(c, st::TOUCH_SESSION, params![id, ts(at), ts(expires_at)])
                .map(drop)
                .map_err(db)
        })
        .await
    }

    async fn delete_expired_sessions(&self, now: Timestamp) -> Result<u64> {
        let n = self
            .write(move |c| exec(c, st::DELETE_EXPIRED_SESSIONS, params![ts(now)]).map_err(db))
            .await?;
        Ok(u64::try_from(n).unwrap_or(u64::MAX))
    }

    async fn list_failing(&self, since: Timestamp, limit: u32) -> Result<Vec<FailingConnection>> {
        self.read(|c| {
            all(
                c,
                st::LIST_FAILING_SQLITE,
                params![ts(since), i64::from(limit.clamp(1, 1000))],
                |r| {
                    Ok(FailingConnection {
                        scope: scope_of(r, "tenant_id", "organization_id")?,
                        integration_id: r.get("integration_id")?,
                        errors: u64::try_from(r.get::<_, i64>("errors")?).unwrap_or(0),
                        last_error_at: Timestamp::from_micros(r.get("last_error_at")?),
                    })
                },
            )
        })
    }

    async fn close(&self) {
        for reader in &self.inner.readers {
            drop(lock(reader).take());
        }
        // The writer closes last, so SQLite checkpoints the WAL into the file.
        drop(lock(&self.inner.writer).take());
    }
}
