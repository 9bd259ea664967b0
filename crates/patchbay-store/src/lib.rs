//! Patchbay's storage layer: the [`Store`] trait and its two implementations,
//! embedded SQLite (the default, in a data directory) and PostgreSQL (for
//! several `patchbay serve` processes sharing one database).
//!
//! * [`connect`] picks the backend from the configuration, opens it, and
//!   applies pending migrations before returning.
//! * Reads are plain methods; every write that must be atomic goes through
//!   [`Store::apply`], which commits a list of [`Change`]s in one transaction
//!   (so an event or audit record is written with the change it reports).
//!
//! Architecture invariants:
//! * Only this crate knows SQL; sqlx types never cross the trait.
//! * Every query on tenant-owned rows filters by the scope it is given; no
//!   method reads another tenant's rows by accident of a missing filter.
//! * Secrets reach this crate only as ciphertext.

mod error;
pub mod jobs;
pub mod migrate;
mod model;
mod postgres;
mod sql;
mod sqlite;
mod statements;
pub mod sync;
pub mod usage;

use std::path::PathBuf;
use std::sync::Arc;

use patchbay_core::{OrganizationId, Scope, TenantId, Timestamp};

pub use error::{Result, StoreError};
pub use jobs::{
    AttemptOutcome, AttemptRecord, Enqueued, ExpiredLease, Finish, FinishOutcome, JobPage,
    JobQuery, JobRecord, JobStatus, JobStore, NewJob, ScheduleRecord,
};
pub use model::*;
pub use sync::{
    BatchOutcome, ExportCommit, ExportItem, IdMapping, IncomingRecord, NewSyncRun, PendingExport,
    SyncBatch, SyncCounters, SyncCursor, SyncDirection, SyncRecordRow, SyncRunQuery, SyncRunRecord,
    SyncStatus, SyncStore,
};
pub use usage::{UsageCounts, UsageQuery, UsageRecord, UsageStore};

/// Which database a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// Where the database is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseConfig {
    /// A SQLite database file (created with its directory when missing).
    Sqlite { path: PathBuf },
    /// A PostgreSQL URL (`postgres://user:password@host:port/db`).
    Postgres { url: String },
}

impl DatabaseConfig {
    /// The database for a data directory and an optional URL: no URL means
    /// `<data_dir>/patchbay.db`; `sqlite://<path>` a SQLite file elsewhere;
    /// `postgres://` or `postgresql://` a PostgreSQL server.
    pub fn from_settings(data_dir: &std::path::Path, url: Option<&str>) -> Result<DatabaseConfig> {
        match url.map(str::trim).filter(|u| !u.is_empty()) {
            None => Ok(DatabaseConfig::Sqlite {
                path: data_dir.join("patchbay.db"),
            }),
            Some(u) if u.starts_with("postgres://") || u.starts_with("postgresql://") => {
                Ok(DatabaseConfig::Postgres { url: u.to_owned() })
            }
            Some(u) => match u
                .strip_prefix("sqlite://")
                .or_else(|| u.strip_prefix("sqlite:"))
            {
                Some(path) if !path.is_empty() => Ok(DatabaseConfig::Sqlite {
                    path: PathBuf::from(path),
                }),
                _ => Err(StoreError::Config(format!(
                    "invalid database URL `{}`: expected postgres://…, postgresql://… or sqlite://<path>",
                    redact_url(u)
                ))),
            },
        }
    }

    /// A description safe to log: no password.
    pub fn describe(&self) -> String {
        match self {
            DatabaseConfig::Sqlite { path } => format!("sqlite {}", path.display()),
            DatabaseConfig::Postgres { url } => format!("postgres {}", redact_url(url)),
        }
    }
}

/// Replaces the password of a URL's user-info with `***`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            let masked = if userinfo.contains(':') {
                format!("{user}:***")
            } else {
                user.to_owned()
            };
            // Query parameters may carry a password too (`?password=`).
            let tail = if tail.contains("password=") {
                tail.split('?').next().unwrap_or("").to_owned() + "?***"
            } else {
                tail.to_owned()
            };
            format!("{scheme}://{masked}@{host}{tail}")
        }
        None if tail.contains("password=") => format!(
            "{scheme}://{authority}{}?***",
            tail.split('?').next().unwrap_or("")
        ),
        None => url.to_owned(),
    }
}

/// Whether the database is reachable and fully migrated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Readiness {
    pub applied_migration: i64,
    pub expected_migration: i64,
}

impl Readiness {
    pub fn is_ready(self) -> bool {
        self.applied_migration == self.expected_migration
    }
}

/// Opens the configured database for a server and brings its schema up to
/// date. On SQLite it takes the database's exclusive lock: one server per file.
pub async fn connect(config: &DatabaseConfig) -> Result<Arc<dyn Store>> {
    Ok(match config {
        DatabaseConfig::Sqlite { path } => {
            Arc::new(sqlite::SqliteStore::open(path, sqlite::Lock::Exclusive).await?)
        }
        DatabaseConfig::Postgres { url } => Arc::new(postgres::PgStore::open(url).await?),
    })
}

/// Opens the database for a short administrative command (`patchbay token
/// create`, `patchbay keys rotate`) that may run beside a server: on SQLite
/// it does not take the server's lock, and relies on SQLite's own locking
/// (WAL, busy timeout) for the few writes it makes.
pub async fn connect_for_admin(config: &DatabaseConfig) -> Result<Arc<dyn Store>> {
    Ok(match config {
        DatabaseConfig::Sqlite { path } => {
            Arc::new(sqlite::SqliteStore::open(path, sqlite::Lock::Shared).await?)
        }
        DatabaseConfig::Postgres { url } => Arc::new(postgres::PgStore::open(url).await?),
    })
}

/// Everything Patchbay stores, on either backend.
///
/// Methods taking a [`Scope`] only ever see rows of that scope.
#[async_trait::async_trait]
pub trait Store:
    JobStore + UsageStore + SyncStore + Send + Sync + std::fmt::Debug + 'static
{
    fn backend(&self) -> Backend;

    /// Checks that the database answers and reports the migration versions.
    async fn readiness(&self) -> Result<Readiness>;

    /// Applies every change in one transaction: all or nothing. Returns the
    /// rows affected by each change.
    async fn apply(&self, changes: Vec<Change>) -> Result<Vec<u64>>;

    async fn get_tenant(&self, id: &TenantId) -> Result<Option<Tenant>>;
    async fn list_tenants(&self) -> Result<Vec<Tenant>>;
    async fn get_organization(
        &self,
        tenant: &TenantId,
        id: &OrganizationId,
    ) -> Result<Option<Organization>>;
    async fn list_organizations(&self, tenant: &TenantId) -> Result<Vec<Organization>>;

    /// The token whose SHA-256 is `token_hash`, revoked or not.
    async fn find_api_token(&self, token_hash: &[u8]) -> Result<Option<ApiTokenRecord>>;
    /// Tokens of one tenant, or of the whole platform with `None`.
    async fn list_api_tokens(&self, tenant: Option<&TenantId>) -> Result<Vec<ApiTokenRecord>>;
    async fn touch_api_token(&self, id: &str, at: Timestamp) -> Result<()>;

    /// The credential sets of the given integrations or bundles, in the order
    /// asked for (an integration before its bundle gives bundle fallthrough).
    async fn find_credentials(
        &self,
        scope: &Scope,
        integration_ids: &[&str],
    ) -> Result<Vec<CredentialRecord>>;
    async fn touch_credential(
        &self,
        scope: &Scope,
        integration_id: &str,
        at: Timestamp,
    ) -> Result<()>;

    async fn get_state(&self, scope: &Scope, integration_id: &str) -> Result<Option<StateRecord>>;
    async fn list_states(&self, scope: &Scope) -> Result<Vec<StateRecord>>;
    /// Every tenant's states with `status`, across scopes (platform work such
    /// as the scheduled health sweep; never answers a tenant's request).
    async fn list_states_with_status(
        &self,
        status: patchbay_core::IntegrationStatus,
    ) -> Result<Vec<StateRecord>>;

    /// Appends log entries in one transaction, in multi-row batches.
    async fn append_logs(&self, entries: Vec<NewLogEntry>) -> Result<()>;
    async fn query_logs(&self, scope: &Scope, query: &LogQuery) -> Result<LogPage>;
    /// Deletes a tenant's entries older than `older_than`, or, for errors,
    /// older than `errors_older_than`. Returns how many were deleted.
    async fn prune_logs(
        &self,
        tenant: &TenantId,
        older_than: Timestamp,
        errors_older_than: Timestamp,
    ) -> Result<u64>;

    /// Events of a scope after outbox position `after_seq`, oldest first.
    async fn list_events(
        &self,
        scope: &Scope,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<EventRecord>>;
    async fn list_audit(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>>;

    /// The master-key check value, once the vault is initialised.
    async fn get_vault_check(&self) -> Result<Option<VaultCheckRecord>>;
    /// Data keys of one tenant, or of every tenant with `None` (key rotation).
    async fn list_tenant_keys(&self, tenant: Option<&TenantId>) -> Result<Vec<TenantKeyRecord>>;
    async fn get_tenant_key(
        &self,
        tenant: &TenantId,
        version: i64,
    ) -> Result<Option<TenantKeyRecord>>;
    /// Credential sets of a tenant (all organizations) encrypted with a data
    /// key older than `version`, for re-encryption.
    async fn list_credentials_below_version(
        &self,
        tenant: &TenantId,
        version: i64,
        limit: u32,
    ) -> Result<Vec<CredentialRecord>>;
    async fn count_credentials_with_version(&self, tenant: &TenantId, version: i64) -> Result<u64>;

    async fn get_principal(
        &self,
        scope: &Scope,
        integration_id: &str,
    ) -> Result<Option<PrincipalRecord>>;
    async fn list_principals(&self, scope: &Scope) -> Result<Vec<PrincipalRecord>>;

    async fn get_tenant_settings(&self, tenant: &TenantId) -> Result<Option<TenantSettings>>;

    /// The user with this (lower-cased) email.
    async fn find_user_by_email(&self, email: &str) -> Result<Option<UserRecord>>;
    async fn get_user(&self, id: &str) -> Result<Option<UserRecord>>;
    /// Users of one tenant, or every user with `None`.
    async fn list_users(&self, tenant: Option<&TenantId>) -> Result<Vec<UserRecord>>;
    async fn touch_user_sign_in(&self, id: &str, at: Timestamp) -> Result<()>;
    /// The session whose cookie hashes to `id_hash`, expired or not.
    async fn find_session(&self, id_hash: &[u8]) -> Result<Option<SessionRecord>>;
    /// Records activity on a session and moves its expiry.
    async fn touch_session(
        &self,
        id_hash: &[u8],
        at: Timestamp,
        expires_at: Timestamp,
    ) -> Result<()>;
    /// Deletes sessions that expired before `now`; returns how many.
    async fn delete_expired_sessions(&self, now: Timestamp) -> Result<u64>;

    /// Integrations with errors logged since `since`, across every tenant,
    /// most errors first (the platform's failing-connections view).
    async fn list_failing(&self, since: Timestamp, limit: u32) -> Result<Vec<FailingConnection>>;

    /// Closes the connection pools (graceful shutdown).
    async fn close(&self);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls_pick_the_backend() {
        let dir = std::path::Path::new("/data");
        assert_eq!(
            DatabaseConfig::from_settings(dir, None).unwrap(),
            DatabaseConfig::Sqlite {
                path: "/data/patchbay.db".into()
            }
        );
        assert_eq!(
            DatabaseConfig::from_settings(dir, Some("  ")).unwrap(),
            DatabaseConfig::Sqlite {
                path: "/data/patchbay.db".into()
            }
        );
        assert_eq!(
            DatabaseConfig::from_settings(dir, Some("sqlite:///tmp/x.db")).unwrap(),
            DatabaseConfig::Sqlite {
                path: "/tmp/x.db".into()
            }
        );
        assert!(matches!(
            DatabaseConfig::from_settings(dir, Some("postgresql://u@h/db")).unwrap(),
            DatabaseConfig::Postgres { .. }
        ));
        let err = DatabaseConfig::from_settings(dir, Some("mysql://root:hunter2@h/db"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("invalid database URL") && !err.contains("hunter2"),
            "{err}"
        );
    }

    #[test]
    fn passwords_are_redacted_from_urls() {
        assert_eq!(
            redact_url("postgres://bob:s3cret@db:5432/pb"),
            "postgres://bob:***@db:5432/pb"
        );
        assert_eq!(redact_url("postgres://bob@db/pb"), "postgres://bob@db/pb");
        assert_eq!(
            redact_url("postgres://db/pb?user=x&password=s3cret"),
            "postgres://db/pb?***"
        );
        assert!(!redact_url("postgres://u:p@ss@db/pb").contains("p@ss"));
    }
}
