//! The records the store keeps. These are storage shapes, not API shapes:
//! JSON columns are carried as text, secrets only as ciphertext.

use patchbay_core::{IntegrationStatus, LogLevel, OrganizationId, Scope, TenantId, Timestamp};

/// A tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    pub id: TenantId,
    pub slug: String,
    pub name: String,
    pub created_at: Timestamp,
}

/// An organization of a tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Organization {
    pub id: OrganizationId,
    pub tenant_id: TenantId,
    pub slug: String,
    pub name: String,
    pub created_at: Timestamp,
}

/// What an API token may reach: the whole platform, or one tenant's organization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenScope {
    Platform,
    Tenant(Scope),
}

/// An API token, as stored: only the hash of its secret, never the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiTokenRecord {
    pub id: String,
    pub name: String,
    /// SHA-256 of the whole token string.
    pub token_hash: Vec<u8>,
    /// The recognisable, non-secret start of the token (`pb_live_AbCd`), for display.
    pub prefix: String,
    pub scope: TokenScope,
    pub features: Vec<String>,
    pub created_by: Option<String>,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub last_used_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
}

/// One encrypted credential set of an integration or bundle, for one scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialRecord {
    pub scope: Scope,
    /// An integration id, or a bundle id for shared bundle credentials.
    pub integration_id: String,
    /// A new id for every save (secret rotation gives a new key id).
    pub key_id: String,
    /// The version of the tenant data key that encrypted it.
    pub key_version: i64,
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub last_used_at: Option<Timestamp>,
}

/// The state of one integration for one scope (SPEC-045a §4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateRecord {
    pub scope: Scope,
    pub integration_id: String,
    pub status: IntegrationStatus,
    pub api_version: Option<String>,
    pub enabled_at: Option<Timestamp>,
    pub enabled_by: Option<String>,
    /// The last health-check result, as JSON text.
    pub last_health: Option<String>,
    pub last_health_at: Option<Timestamp>,
    pub updated_at: Timestamp,
    /// Incremented by every write; writes name the version they read (optimistic concurrency).
    pub version: i64,
}

/// An operation-log entry to append (SPEC-045a §3.3). `details` must already be redacted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewLogEntry {
    pub scope: Scope,
    pub integration_id: String,
    pub level: LogLevel,
    pub operation: String,
    pub message: String,
    /// JSON object text.
    pub details: Option<String>,
    pub correlation_id: Option<String>,
    pub entity_type: Option<String>,
    pub entity_id: Option<String>,
    pub duration_ms: Option<i64>,
    pub created_at: Timestamp,
}

/// A stored operation-log entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub id: i64,
    pub entry: NewLogEntry,
}

/// Filters of an operation-log query; results are newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogQuery {
    pub integration_id: Option<String>,
    pub level: Option<LogLevel>,
    pub operation: Option<String>,
    pub correlation_id: Option<String>,
    pub entity_type: Option<String>,
    pub entity_id: Option<String>,
    /// Inclusive lower bound on `created_at`.
    pub since: Option<Timestamp>,
    /// Exclusive upper bound on `created_at`.
    pub until: Option<Timestamp>,
    /// Cursor: only entries with an id below this one (the previous page's last id).
    pub before_id: Option<i64>,
    /// Entries to skip (page-numbered browsing in the panel; the API uses the cursor).
    pub offset: Option<u32>,
    pub limit: u32,
}

/// One page of operation-log entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogPage {
    pub items: Vec<LogEntry>,
    /// How many entries match the filters, across all pages.
    pub total: u64,
    /// The cursor for the next (older) page, when there is one.
    pub next_before_id: Option<i64>,
}

/// An event to publish through the outbox, in the transaction of the change it reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    /// A globally unique id (consumers deduplicate on it).
    pub id: String,
    pub scope: Scope,
    /// `integrations.integration.enabled`, …
    pub event_type: String,
    pub integration_id: Option<String>,
    /// JSON object text.
    pub payload: String,
    pub created_at: Timestamp,
}

/// A stored event with its position in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRecord {
    /// Position in the outbox; increases in commit order.
    pub seq: i64,
    pub event: NewEvent,
}

/// An audit record (`INTEGRATION_MODEL` §10): who did what, where, when, with what outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAudit {
    /// `token:<id>`, `user:<id>` or `system`.
    pub actor: String,
    /// `None` for platform-level actions.
    pub scope: Option<Scope>,
    pub action: String,
    pub target: Option<String>,
    /// `success`, `denied`, `failed`, …
    pub outcome: String,
    /// JSON object text, without secrets.
    pub details: Option<String>,
    pub correlation_id: Option<String>,
    pub created_at: Timestamp,
}

/// A stored audit record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub id: i64,
    pub audit: NewAudit,
}

/// Filters for reading the audit trail, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Only records of this tenant; `None` reads every record (platform admins).
    pub tenant_id: Option<TenantId>,
    pub before_id: Option<i64>,
    pub limit: u32,
}

/// The master-key check value: proves the configured master key is the one
/// this database was set up with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultCheckRecord {
    pub key_id: String,
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
    pub updated_at: Timestamp,
}

/// A tenant data key, wrapped by a master key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantKeyRecord {
    pub tenant_id: TenantId,
    pub version: i64,
    pub master_key_id: String,
    pub nonce: Vec<u8>,
    pub wrapped_key: Vec<u8>,
    pub created_at: Timestamp,
    /// Set once a newer version encrypts new credentials.
    pub retired_at: Option<Timestamp>,
}

/// The principal an enabled connection acts as, with its explicit grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrincipalRecord {
    pub scope: Scope,
    pub integration_id: String,
    /// `integration:<uuid>`.
    pub principal_id: String,
    pub key_id: String,
    /// The action keys this principal may invoke.
    pub action_keys: Vec<String>,
    pub created_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
}

/// Per-tenant settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantSettings {
    pub tenant_id: TenantId,
    pub log_retention_days: i64,
    pub error_log_retention_days: i64,
    pub updated_at: Timestamp,
}

/// An operator account of the admin panel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub id: String,
    /// Lower-cased; the sign-in name.
    pub email: String,
    pub name: String,
    /// An Argon2id PHC string.
    pub password_hash: String,
    /// `None` for a platform user.
    pub scope: Option<Scope>,
    pub features: Vec<String>,
    pub created_at: Timestamp,
    pub disabled_at: Option<Timestamp>,
    pub last_sign_in_at: Option<Timestamp>,
}

/// A signed-in browser session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// SHA-256 of the session cookie.
    pub id_hash: Vec<u8>,
    pub user_id: String,
    pub csrf_token: String,
    /// The tenant a platform user is looking at; a tenant user's own scope.
    pub scope: Option<Scope>,
    pub created_at: Timestamp,
    pub last_seen_at: Timestamp,
    pub expires_at: Timestamp,
}

/// An integration with errors logged since a point in time, across tenants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailingConnection {
    pub scope: Scope,
    pub integration_id: String,
    pub errors: u64,
    pub last_error_at: Timestamp,
}

/// What a write expects to find, for optimistic concurrency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// The row must not exist yet.
    Absent,
    /// The row must exist at this version.
    Version(i64),
}

/// One change of an atomic write; see [`crate::Store::apply`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    CreateTenant(Tenant),
    CreateOrganization(Organization),
    InsertApiToken(ApiTokenRecord),
    /// Revokes a token that is not revoked yet; with a scope, only a token of that scope.
    RevokeApiToken {
        id: String,
        scope: Option<Scope>,
        at: Timestamp,
    },
    /// Inserts or replaces the credential set of (scope, integration).
    PutCredential(CredentialRecord),
    /// Hard-deletes the credential set of (scope, integration), if any.
    DeleteCredential {
        scope: Scope,
        integration_id: String,
    },
    /// Writes a state; the record's `version` must be the expected one plus one.
    PutState {
        state: StateRecord,
        expect: Expect,
    },
    AppendEvent(NewEvent),
    AppendAudit(NewAudit),
    /// Sets the master-key check value: inserts it when `expect_key_id` is
    /// `None` (refused if one exists), else replaces the one made with that key.
    PutVaultCheck {
        record: VaultCheckRecord,
        expect_key_id: Option<String>,
    },
    /// Inserts a new tenant data key version.
    PutTenantKey(TenantKeyRecord),
    /// Re-wraps a data key under another master key, if it is still wrapped by `expect_master_key_id`.
    RewrapTenantKey {
        record: TenantKeyRecord,
        expect_master_key_id: String,
    },
    RetireTenantKey {
        tenant_id: TenantId,
        version: i64,
        at: Timestamp,
    },
    DeleteTenantKey {
        tenant_id: TenantId,
        version: i64,
    },
    /// Replaces a credential set's ciphertext, if its key id is still `expect_key_id`
    /// (re-encryption that loses to a concurrent save is refused as stale).
    ReplaceCredential {
        record: CredentialRecord,
        expect_key_id: String,
    },
    /// Inserts or replaces the principal of (scope, integration).
    PutPrincipal(PrincipalRecord),
    /// Revokes the active principal of (scope, integration), if any.
    RevokePrincipal {
        scope: Scope,
        integration_id: String,
        at: Timestamp,
    },
    PutTenantSettings(TenantSettings),
    CreateUser(UserRecord),
    /// Disables a user and ends their sessions.
    DisableUser {
        id: String,
        at: Timestamp,
    },
    CreateSession(SessionRecord),
    DeleteSession {
        id_hash: Vec<u8>,
    },
    /// Sets the tenant a platform user's session looks at.
    SetSessionScope {
        id_hash: Vec<u8>,
        scope: Option<Scope>,
    },
}
