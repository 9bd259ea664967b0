//! API tokens and what they allow.
//!
//! A token is `pb_` followed by 43 URL-safe base64 characters (32 random
//! bytes). Only its SHA-256 is stored; it is shown once, at creation. Each
//! token carries one scope — the platform, or one tenant's organization — and
//! a set of features. The scope of every request comes from its token.

use base64::Engine as _;
use patchbay_core::{Scope, Timestamp};
use patchbay_store::{ApiTokenRecord, TokenScope};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use crate::error::{Result, ServiceError};

/// What a token may do.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
pub enum Feature {
    /// Read the catalog, integration states, logs, events.
    #[serde(rename = "integrations.view")]
    IntegrationsView,
    /// Enable, disable, select API versions, change tenant settings.
    #[serde(rename = "integrations.manage")]
    IntegrationsManage,
    /// Read (masked), save and remove credentials.
    #[serde(rename = "integrations.credentials")]
    IntegrationsCredentials,
    /// Manage tenants, organizations and tokens; read the audit trail.
    #[serde(rename = "platform.admin")]
    PlatformAdmin,
}

impl Feature {
    pub const ALL: [Feature; 4] = [
        Feature::IntegrationsView,
        Feature::IntegrationsManage,
        Feature::IntegrationsCredentials,
        Feature::PlatformAdmin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Feature::IntegrationsView => "integrations.view",
            Feature::IntegrationsManage => "integrations.manage",
            Feature::IntegrationsCredentials => "integrations.credentials",
            Feature::PlatformAdmin => "platform.admin",
        }
    }

    pub fn parse(s: &str) -> Option<Feature> {
        Feature::ALL.into_iter().find(|f| f.as_str() == s)
    }

    /// Features a tenant-scoped token may carry.
    pub const TENANT: [Feature; 3] = [
        Feature::IntegrationsView,
        Feature::IntegrationsManage,
        Feature::IntegrationsCredentials,
    ];
}

/// Whom a caller acts for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    Platform,
    Tenant(Scope),
}

/// What authenticated a caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallerKind {
    /// An API token.
    Token,
    /// An operator signed in to the admin panel.
    User,
    /// Patchbay itself, for the operator at the command line (`patchbay token create`) or for seeding.
    System,
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    pub kind: CallerKind,
    /// The token id, user id or system actor name.
    pub id: String,
    /// The token's or user's name, for display.
    pub name: String,
    pub access: Access,
    pub features: Vec<Feature>,
}

impl Caller {
    /// How the caller is named in audit records and `enabled_by` (`token:…`, `user:…`).
    pub fn actor(&self) -> String {
        let kind = match self.kind {
            CallerKind::Token => "token",
            CallerKind::User => "user",
            CallerKind::System => "system",
        };
        format!("{kind}:{}", self.id)
    }

    pub fn has(&self, f: Feature) -> bool {
        self.features.contains(&f)
    }

    /// Refuses unless the token carries `f`.
    pub fn require(&self, f: Feature) -> Result<()> {
        if self.has(f) {
            Ok(())
        } else {
            Err(ServiceError::Forbidden(format!(
                "this token lacks the `{}` feature",
                f.as_str()
            )))
        }
    }

    /// The tenant scope of a tenant token; platform tokens act on no tenant's
    /// integrations (they mint a tenant token for that).
    pub fn tenant_scope(&self) -> Result<&Scope> {
        match &self.access {
            Access::Tenant(s) => Ok(s),
            Access::Platform => Err(ServiceError::Forbidden(
                "this route acts on one tenant's integrations; call it with a tenant-scoped token"
                    .to_owned(),
            )),
        }
    }

    /// Checks the feature and returns the tenant scope.
    pub fn scope_with(&self, f: Feature) -> Result<&Scope> {
        self.require(f)?;
        self.tenant_scope()
    }

    /// The scope for audit records (`None` for platform callers).
    pub fn audit_scope(&self) -> Option<Scope> {
        match &self.access {
            Access::Tenant(s) => Some(s.clone()),
            Access::Platform => None,
        }
    }
}

/// A newly generated token: the string to show once, and what to store.
#[derive(Debug)]
pub struct GeneratedToken {
    pub token: patchbay_vault::SecretString,
    pub hash: Vec<u8>,
    pub prefix: String,
}

pub const TOKEN_PREFIX: &str = "pb_";
const TOKEN_LEN: usize = 3 + 43;

/// Draws a new random token.
pub fn generate_token() -> Result<GeneratedToken> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| ServiceError::internal(&format!("no randomness available: {e}")))?;
    let token = format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    let hash = hash_token(&token);
    let prefix = token[..11].to_owned();
    Ok(GeneratedToken {
        token: token.into(),
        hash,
        prefix,
    })
}

/// SHA-256 of the whole token string.
pub fn hash_token(token: &str) -> Vec<u8> {
    sha2::Sha256::digest(token.as_bytes()).to_vec()
}

/// Whether a string has the shape of a Patchbay token (cheap pre-check).
pub fn looks_like_token(s: &str) -> bool {
    s.len() == TOKEN_LEN
        && s.starts_with(TOKEN_PREFIX)
        && s[3..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Turns a stored token into a caller, or says why it cannot be used.
pub(crate) fn caller_from(record: &ApiTokenRecord, now: Timestamp) -> Result<Caller> {
    if record.revoked_at.is_some() {
        return Err(ServiceError::Unauthenticated(
            "this API token has been revoked".to_owned(),
        ));
    }
    if record.expires_at.is_some_and(|e| e <= now) {
        return Err(ServiceError::Unauthenticated(
            "this API token has expired".to_owned(),
        ));
    }
    Ok(Caller {
        kind: CallerKind::Token,
        id: record.id.clone(),
        name: record.name.clone(),
        access: match &record.scope {
            TokenScope::Platform => Access::Platform,
            TokenScope::Tenant(s) => Access::Tenant(s.clone()),
        },
        features: record
            .features
            .iter()
            .filter_map(|f| Feature::parse(f))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_prefixed_and_hashed() {
        use patchbay_vault::ExposeSecret as _;
        let a = generate_token().unwrap();
        let b = generate_token().unwrap();
        let (ta, tb) = (a.token.expose_secret(), b.token.expose_secret());
        assert_ne!(ta, tb);
        assert!(looks_like_token(ta), "{ta}");
        assert_eq!(a.hash, hash_token(ta));
        assert_eq!(a.hash.len(), 32);
        assert!(ta.starts_with(&a.prefix) && a.prefix.starts_with("pb_"));
        assert!(
            !format!("{a:?}").contains(ta),
            "Debug never shows the token"
        );
        for bad in [
            "",
            "pb_",
            "pk_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            &format!("{ta}x"),
            "pb_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!",
        ] {
            assert!(!looks_like_token(bad), "{bad}");
        }
    }

    #[test]
    fn features_round_trip() {
        for f in Feature::ALL {
            assert_eq!(Feature::parse(f.as_str()), Some(f));
            assert_eq!(serde_json::to_value(f).unwrap(), f.as_str());
        }
    }
}
