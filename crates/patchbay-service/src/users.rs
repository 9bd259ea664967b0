//! Operator accounts and browser sessions for the admin panel.
//!
//! * Passwords are hashed with Argon2id (RustCrypto defaults: 19 MiB, 2
//!   passes) and never stored or logged otherwise.
//! * A role maps onto the API's features: `viewer` (view), `manager` (view,
//!   manage), `owner` (view, manage, credentials) for a tenant's operators;
//!   `platform_admin` for the platform, who can switch into any tenant and then
//!   acts there with every tenant feature.
//! * A session is a random cookie; only its SHA-256 is stored, with a CSRF
//!   token and the tenant a platform admin is looking at. Sessions slide: 12
//!   hours after the last request.
//! * Sign-in attempts are rate-limited per email and per client address, in
//!   this process (a failed attempt costs an Argon2 verification either way,
//!   unknown emails included, so timing does not reveal accounts).

use std::collections::HashMap;
use std::sync::Mutex;

use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use base64::Engine as _;
use patchbay_core::{OrganizationId, Scope, TenantId, Timestamp};
use patchbay_store::{Change, SessionRecord, UserRecord};
use patchbay_vault::SecretString;
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use crate::auth::{Access, Caller, CallerKind, Feature};
use crate::error::{FieldError, Result, ServiceError};
use crate::{Services, audit};

/// How long a session lives after its last request.
pub const SESSION_IDLE_SECONDS: i64 = 12 * 3600;
/// Failed sign-ins allowed per email, and per client address, in [`WINDOW_SECONDS`].
pub const MAX_FAILURES_PER_EMAIL: usize = 5;
pub const MAX_FAILURES_PER_CLIENT: usize = 20;
pub const WINDOW_SECONDS: i64 = 15 * 60;

/// What an operator may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Viewer,
    Manager,
    Owner,
    PlatformAdmin,
}

impl Role {
    pub fn features(self) -> Vec<Feature> {
        match self {
            Role::Viewer => vec![Feature::IntegrationsView],
            Role::Manager => vec![Feature::IntegrationsView, Feature::IntegrationsManage],
            Role::Owner => Feature::TENANT.to_vec(),
            Role::PlatformAdmin => vec![Feature::PlatformAdmin],
        }
    }

    fn of(features: &[String]) -> Role {
        let has = |f: Feature| features.iter().any(|x| x == f.as_str());
        if has(Feature::PlatformAdmin) {
            Role::PlatformAdmin
        } else if has(Feature::IntegrationsCredentials) {
            Role::Owner
        } else if has(Feature::IntegrationsManage) {
            Role::Manager
        } else {
            Role::Viewer
        }
    }
}

/// Input for a new operator account.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UserIn {
    pub email: String,
    pub name: String,
    /// At least 12 characters.
    pub password: String,
    pub role: Role,
    /// The tenant of a tenant operator; omit for a platform admin.
    pub tenant_id: Option<String>,
    /// The organization (defaults to the tenant's `main` organization).
    pub organization_id: Option<String>,
}

/// An operator account as shown: never the password hash.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserOut {
    pub id: String,
    pub email: String,
    pub name: String,
    pub role: Role,
    pub tenant_id: Option<String>,
    pub organization_id: Option<String>,
    pub created_at: Timestamp,
    pub disabled_at: Option<Timestamp>,
    pub last_sign_in_at: Option<Timestamp>,
}

fn user_out(u: &UserRecord) -> UserOut {
    UserOut {
        id: u.id.clone(),
        email: u.email.clone(),
        name: u.name.clone(),
        role: Role::of(&u.features),
        tenant_id: u.scope.as_ref().map(|s| s.tenant_id.to_string()),
        organization_id: u.scope.as_ref().map(|s| s.organization_id.to_string()),
        created_at: u.created_at,
        disabled_at: u.disabled_at,
        last_sign_in_at: u.last_sign_in_at,
    }
}

/// A signed-in browser session.
#[derive(Debug, Clone)]
pub struct Session {
    /// The caller the session acts as.
    pub caller: Caller,
    pub user: UserOut,
    pub csrf_token: String,
    /// The tenant the session looks at (a tenant operator's own, or the one a
    /// platform admin switched to).
    pub scope: Option<Scope>,
    id_hash: Vec<u8>,
}

/// The result of a successful sign-in: the cookie value (shown to the
/// browser once) and the session.
#[derive(Debug)]
pub struct SignedIn {
    pub cookie: SecretString,
    pub session: Session,
}

/// Per-process memory of failed sign-ins.
#[derive(Debug, Default)]
pub(crate) struct SignInLimiter {
    failures: Mutex<HashMap<String, Vec<Timestamp>>>,
}

impl SignInLimiter {
    fn recent(&self, key: &str, now: Timestamp) -> usize {
        let mut map = self
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let cutoff = now.plus_seconds(-WINDOW_SECONDS);
        let entry = map.entry(key.to_owned()).or_default();
        entry.retain(|t| *t > cutoff);
        entry.len()
    }

    /// Seconds until the oldest failure in the window expires.
    fn retry_after(&self, key: &str, now: Timestamp) -> i64 {
        let map = self
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.get(key)
            .and_then(|v| v.iter().min())
            .map_or(0, |oldest| {
                ((oldest.as_micros() - now.as_micros()) / 1_000_000 + WINDOW_SECONDS).max(1)
            })
    }

    fn fail(&self, key: &str, now: Timestamp) {
        self.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(key.to_owned())
            .or_default()
            .push(now);
    }

    fn clear(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(key);
    }
}

/// A random password of 20 characters from an alphabet without look-alikes
/// (about 115 bits), for accounts whose password is shown once.
pub(crate) fn random_password() -> Result<SecretString> {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzACDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut bytes = [0u8; 20];
    getrandom::fill(&mut bytes)
        .map_err(|e| ServiceError::internal(&format!("no randomness available: {e}")))?;
    // 256 is not a multiple of the alphabet's 55 letters: the slight bias
    // costs a fraction of a bit per character.
    let password: String = bytes
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect();
    Ok(SecretString::from(password))
}

fn random_token() -> Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| ServiceError::internal(&format!("no randomness available: {e}")))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

fn hash(cookie: &str) -> Vec<u8> {
    sha2::Sha256::digest(cookie.as_bytes()).to_vec()
}

/// A hash to verify against when the email is unknown, so that the answer
/// takes as long as for a known one.
fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| {
        argon2::Argon2::default()
            .hash_password(b"decoy password for unknown accounts")
            .map(|h| h.to_string())
            .unwrap_or_default()
    })
}

impl Services {
    /// Creates an operator account (platform admins only).
    pub async fn create_user(&self, caller: &Caller, input: UserIn) -> Result<UserOut> {
        let email = input.email.trim().to_lowercase();
        self.audited(caller, "user.create", &email, async {
            caller.require(Feature::PlatformAdmin)?;
            let mut errors = Vec::new();
            if !(3..=254).contains(&email.len())
                || !email.contains('@')
                || email.contains(char::is_whitespace)
            {
                errors.push(FieldError::new(
                    "email",
                    "invalid_format",
                    "must be an email address",
                ));
            }
            if input.name.trim().is_empty() || input.name.len() > 200 {
                errors.push(FieldError::new(
                    "name",
                    "invalid_length",
                    "must be 1-200 characters",
                ));
            }
            if input.password.chars().count() < 12 {
                errors.push(FieldError::new(
                    "password",
                    "too_short",
                    "must be at least 12 characters",
                ));
            }
            let scope = match (&input.tenant_id, input.role) {
                (None, Role::PlatformAdmin) => None,
                (None, _) => {
                    errors.push(FieldError::new(
                        "tenantId",
                        "required",
                        "a tenant operator needs a tenant",
                    ));
                    None
                }
                (Some(_), Role::PlatformAdmin) => {
                    errors.push(FieldError::new(
                        "role",
                        "platform_role",
                        "a platform admin belongs to no tenant",
                    ));
                    None
                }
                (Some(t), _) => {
                    let tenant = TenantId::new(t.clone());
                    let orgs = self.store().list_organizations(&tenant).await?;
                    let found = match &input.organization_id {
                        Some(o) => orgs.into_iter().find(|x| x.id.as_str() == o),
                        None => orgs.into_iter().find(|x| x.slug == "main"),
                    };
                    if let Some(o) = found {
                        Some(Scope {
                            tenant_id: tenant,
                            organization_id: o.id,
                        })
                    } else {
                        errors.push(FieldError::new(
                            "tenantId",
                            "not_found",
                            "no such tenant or organization",
                        ));
                        None
                    }
                }
            };
            if !errors.is_empty() {
                return Err(ServiceError::invalid("the account is invalid", errors));
            }
            let password_hash = argon2::Argon2::default()
                .hash_password(input.password.as_bytes())
                .map_err(|e| ServiceError::internal(&format!("cannot hash a password: {e}")))?
                .to_string();
            let now = self.now();
            let record = UserRecord {
                id: format!("usr_{}", uuid::Uuid::now_v7().simple()),
                email: email.clone(),
                name: input.name.trim().to_owned(),
                password_hash,
                scope: scope.clone(),
                features: input
                    .role
                    .features()
                    .iter()
                    .map(|f| f.as_str().to_owned())
                    .collect(),
                created_at: now,
                disabled_at: None,
                last_sign_in_at: None,
            };
            self.store()
                .apply(vec![
                    Change::CreateUser(record.clone()),
                    audit::success(
                        caller,
                        scope.as_ref(),
                        "user.create",
                        &record.id,
                        Some(serde_json::json!({ "email": email, "role": input.role })),
                        now,
                    ),
                ])
                .await?;
            Ok(user_out(&record))
        })
        .await
    }

    /// Creates an account for the operator at the command line (`patchbay user create`).
    pub async fn create_user_as_system(&self, input: UserIn) -> Result<UserOut> {
        let system = Caller {
            kind: CallerKind::System,
            id: "cli".to_owned(),
            name: "patchbay user create".to_owned(),
            access: Access::Platform,
            features: vec![Feature::PlatformAdmin],
        };
        self.create_user(&system, input).await
    }

    pub async fn list_users(&self, caller: &Caller) -> Result<Vec<UserOut>> {
        caller.require(Feature::PlatformAdmin)?;
        Ok(self
            .store()
            .list_users(None)
            .await?
            .iter()
            .map(user_out)
            .collect())
    }

    /// Disables an account and ends its sessions.
    pub async fn disable_user(&self, caller: &Caller, id: &str) -> Result<()> {
        self.audited(caller, "user.disable", id, async {
            caller.require(Feature::PlatformAdmin)?;
            let now = self.now();
            self.store()
                .apply(vec![
                    Change::DisableUser {
                        id: id.to_owned(),
                        at: now,
                    },
                    audit::success(caller, None, "user.disable", id, None, now),
                ])
                .await
                .map_err(|e| match e {
                    patchbay_store::StoreError::NotFound(_) => {
                        ServiceError::NotFound(format!("no active user `{id}`"))
                    }
                    other => other.into(),
                })?;
            Ok(())
        })
        .await
    }

    /// Checks an email and password and opens a session. `client` is the
    /// caller's address, for rate limiting.
    pub async fn sign_in(&self, email: &str, password: &str, client: &str) -> Result<SignedIn> {
        let email = email.trim().to_lowercase();
        let now = self.now();
        let (by_email, by_client) = (format!("email:{email}"), format!("client:{client}"));
        let limiter = &self.inner.sign_in;
        for (key, max) in [
            (&by_email, MAX_FAILURES_PER_EMAIL),
            (&by_client, MAX_FAILURES_PER_CLIENT),
        ] {
            if limiter.recent(key, now) >= max {
                return Err(ServiceError::RateLimited {
                    retry_after_secs: u64::try_from(limiter.retry_after(key, now)).unwrap_or(60),
                });
            }
        }
        let user = self.store().find_user_by_email(&email).await?;
        let stored = user
            .as_ref()
            .map_or_else(|| decoy_hash().to_owned(), |u| u.password_hash.clone());
        let password = password.to_owned();
        // Argon2 takes tens of milliseconds: off the async workers.
        let matches = tokio::task::spawn_blocking(move || {
            argon2::Argon2::default()
                .verify_password(password.as_bytes(), stored.as_str())
                .is_ok()
        })
        .await
        .map_err(|e| ServiceError::internal(&e))?;
        let user = match user {
            Some(u) if matches && u.disabled_at.is_none() => u,
            _ => {
                limiter.fail(&by_email, now);
                limiter.fail(&by_client, now);
                let failure = patchbay_store::NewAudit {
                    actor: "anonymous".to_owned(),
                    scope: None,
                    action: "user.sign_in".to_owned(),
                    target: Some(email.clone()),
                    outcome: "denied".to_owned(),
                    details: None,
                    correlation_id: None,
                    created_at: now,
                };
                if let Err(e) = self.store().apply(vec![Change::AppendAudit(failure)]).await {
                    tracing::warn!(error = %e, "cannot audit a failed sign-in");
                }
                return Err(ServiceError::Unauthenticated(
                    "wrong email or password".to_owned(),
                ));
            }
        };
        limiter.clear(&by_email);
        let cookie = random_token()?;
        let record = SessionRecord {
            id_hash: hash(&cookie),
            user_id: user.id.clone(),
            csrf_token: random_token()?,
            scope: user.scope.clone(),
            created_at: now,
            last_seen_at: now,
            expires_at: now.plus_seconds(SESSION_IDLE_SECONDS),
        };
        let audit = patchbay_store::NewAudit {
            actor: format!("user:{}", user.id),
            scope: user.scope.clone(),
            action: "user.sign_in".to_owned(),
            target: Some(user.id.clone()),
            outcome: "success".to_owned(),
            details: None,
            correlation_id: None,
            created_at: now,
        };
        self.store()
            .apply(vec![
                Change::CreateSession(record.clone()),
                Change::AppendAudit(audit),
            ])
            .await?;
        self.store().touch_user_sign_in(&user.id, now).await?;
        Ok(SignedIn {
            cookie: cookie.into(),
            session: session_of(&user, &record),
        })
    }

    /// The session behind a cookie, if it is valid; its expiry slides.
    pub async fn session(&self, cookie: &str) -> Result<Session> {
        let expired =
            || ServiceError::Unauthenticated("the session has ended; sign in again".to_owned());
        if cookie.len() != 43 {
            return Err(expired());
        }
        let id_hash = hash(cookie);
        let record = self
            .store()
            .find_session(&id_hash)
            .await?
            .ok_or_else(expired)?;
        let now = self.now();
        if record.expires_at <= now {
            return Err(expired());
        }
        let user = self
            .store()
            .get_user(&record.user_id)
            .await?
            .filter(|u| u.disabled_at.is_none())
            .ok_or_else(expired)?;
        if record.last_seen_at.plus_seconds(60) < now {
            self.store()
                .touch_session(&id_hash, now, now.plus_seconds(SESSION_IDLE_SECONDS))
                .await?;
        }
        Ok(session_of(&user, &record))
    }

    /// Ends a session.
    pub async fn sign_out(&self, session: &Session) -> Result<()> {
        let now = self.now();
        let audit = audit::success(
            &session.caller,
            session.scope.as_ref(),
            "user.sign_out",
            &session.user.id,
            None,
            now,
        );
        self.store()
            .apply(vec![
                Change::DeleteSession {
                    id_hash: session.id_hash.clone(),
                },
                audit,
            ])
            .await?;
        Ok(())
    }

    /// Points a platform admin's session at a tenant (its `main` organization).
    pub async fn switch_tenant(&self, session: &Session, tenant_id: &str) -> Result<Scope> {
        let caller = &session.caller;
        self.audited(caller, "user.switch_tenant", tenant_id, async {
            caller.require(Feature::PlatformAdmin)?;
            let tenant = TenantId::new(tenant_id);
            let org = self
                .store()
                .list_organizations(&tenant)
                .await?
                .into_iter()
                .find(|o| o.slug == "main")
                .ok_or_else(|| ServiceError::NotFound(format!("no tenant `{tenant_id}`")))?;
            let scope = Scope {
                tenant_id: tenant,
                organization_id: OrganizationId::new(org.id.as_str()),
            };
            let now = self.now();
            self.store()
                .apply(vec![
                    Change::SetSessionScope {
                        id_hash: session.id_hash.clone(),
                        scope: Some(scope.clone()),
                    },
                    audit::success(
                        caller,
                        Some(&scope),
                        "user.switch_tenant",
                        tenant_id,
                        None,
                        now,
                    ),
                ])
                .await?;
            Ok(scope)
        })
        .await
    }
}

fn session_of(user: &UserRecord, record: &SessionRecord) -> Session {
    let mut features: Vec<Feature> = user
        .features
        .iter()
        .filter_map(|f| Feature::parse(f))
        .collect();
    let access = match (&user.scope, &record.scope) {
        // A tenant operator always acts in their own scope.
        (Some(own), _) => Access::Tenant(own.clone()),
        // A platform admin acts in the tenant they switched to, with every tenant feature.
        (None, Some(selected)) => {
            features.extend(Feature::TENANT);
            Access::Tenant(selected.clone())
        }
        (None, None) => Access::Platform,
    };
    let scope = match &access {
        Access::Tenant(s) => Some(s.clone()),
        Access::Platform => None,
    };
    Session {
        caller: Caller {
            kind: CallerKind::User,
            id: user.id.clone(),
            name: user.name.clone(),
            access,
            features,
        },
        user: user_out(user),
        csrf_token: record.csrf_token.clone(),
        scope,
        id_hash: record.id_hash.clone(),
    }
}
