//! Platform administration: tenants, their organizations, and API tokens.
//! Only callers with `platform.admin` reach these, except the bootstrap token
//! minted on first start.

use patchbay_core::{OrganizationId, Scope, TenantId, Timestamp};
use patchbay_store::{ApiTokenRecord, Change, Organization, Tenant, TokenScope};
use patchbay_vault::SecretString;
use serde::{Deserialize, Serialize};

use crate::auth::{self, Caller, Feature};
use crate::error::{FieldError, Result, ServiceError};
use crate::{Services, audit};

/// Input for a new tenant.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TenantIn {
    /// 2-63 lowercase letters, digits and `-`, starting with a letter or digit.
    pub slug: String,
    pub name: String,
}

/// Input for a new organization of a tenant.
pub type OrganizationIn = TenantIn;

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrganizationOut {
    pub id: String,
    pub tenant_id: String,
    pub slug: String,
    pub name: String,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantOut {
    pub id: String,
    pub slug: String,
    pub name: String,
    pub created_at: Timestamp,
    pub organizations: Vec<OrganizationOut>,
}

/// Input for a new token: a platform token (no tenant) or a tenant token.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TokenIn {
    pub name: String,
    /// The tenant the token acts for; omit for a platform token.
    pub tenant_id: Option<String>,
    /// The organization (defaults to the tenant's `main` organization).
    pub organization_id: Option<String>,
    pub features: Vec<String>,
    /// RFC 3339; omit for a token that does not expire.
    pub expires_at: Option<Timestamp>,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenOut {
    pub id: String,
    pub name: String,
    /// The recognisable start of the token (`pb_AbCdEfGh`), never the token.
    pub prefix: String,
    pub tenant_id: Option<String>,
    pub organization_id: Option<String>,
    pub features: Vec<String>,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub last_used_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
}

/// A token just created: the only time its secret is shown.
#[derive(Debug)]
pub struct CreatedToken {
    pub token: SecretString,
    pub info: TokenOut,
}

fn org_out(o: Organization) -> OrganizationOut {
    OrganizationOut {
        id: o.id.to_string(),
        tenant_id: o.tenant_id.to_string(),
        slug: o.slug,
        name: o.name,
        created_at: o.created_at,
    }
}

fn token_out(t: ApiTokenRecord) -> TokenOut {
    let (tenant_id, organization_id) = match t.scope {
        TokenScope::Platform => (None, None),
        TokenScope::Tenant(s) => (
            Some(s.tenant_id.to_string()),
            Some(s.organization_id.to_string()),
        ),
    };
    TokenOut {
        id: t.id,
        name: t.name,
        prefix: t.prefix,
        tenant_id,
        organization_id,
        features: t.features,
        created_at: t.created_at,
        expires_at: t.expires_at,
        last_used_at: t.last_used_at,
        revoked_at: t.revoked_at,
    }
}

fn check_slug_and_name(input: &TenantIn) -> Result<()> {
    let mut errors = Vec::new();
    let s = &input.slug;
    let ok = (2..=63).contains(&s.len())
        && s.bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !ok {
        errors.push(FieldError::new(
            "slug",
            "invalid_format",
            "use 2-63 lowercase letters, digits or `-`, starting with a letter or digit",
        ));
    }
    if input.name.trim().is_empty() || input.name.len() > 200 {
        errors.push(FieldError::new(
            "name",
            "invalid_length",
            "must be 1-200 characters",
        ));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ServiceError::invalid("the input is invalid", errors))
    }
}

fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::now_v7().simple())
}

impl Services {
    /// Creates a tenant with its `main` organization and its first data key.
    pub async fn create_tenant(&self, caller: &Caller, input: TenantIn) -> Result<TenantOut> {
        self.audited(caller, "tenant.create", &input.slug.clone(), async {
            caller.require(Feature::PlatformAdmin)?;
            check_slug_and_name(&input)?;
            let now = self.now();
            let tenant = Tenant {
                id: TenantId::new(new_id("ten")),
                slug: input.slug.clone(),
                name: input.name.trim().to_owned(),
                created_at: now,
            };
            let org = Organization {
                id: OrganizationId::new(new_id("org")),
                tenant_id: tenant.id.clone(),
                slug: "main".to_owned(),
                name: "Main".to_owned(),
                created_at: now,
            };
            let (key, _) = self.keys().new_tenant_key(&tenant.id, 1, now);
            let scope = Scope {
                tenant_id: tenant.id.clone(),
                organization_id: org.id.clone(),
            };
            self.store()
                .apply(vec![
                    Change::CreateTenant(tenant.clone()),
                    Change::CreateOrganization(org.clone()),
                    Change::PutTenantKey(key),
                    audit::success(
                        caller,
                        Some(&scope),
                        "tenant.create",
                        tenant.id.as_str(),
                        Some(serde_json::json!({ "slug": tenant.slug })),
                        now,
                    ),
                ])
                .await?;
            Ok(TenantOut {
                id: tenant.id.to_string(),
                slug: tenant.slug,
                name: tenant.name,
                created_at: now,
                organizations: vec![org_out(org)],
            })
        })
        .await
    }

    pub async fn list_tenants(&self, caller: &Caller) -> Result<Vec<TenantOut>> {
        caller.require(Feature::PlatformAdmin)?;
        let mut out = Vec::new();
        for t in self.store().list_tenants().await? {
            let organizations = self
                .store()
                .list_organizations(&t.id)
                .await?
                .into_iter()
                .map(org_out)
                .collect();
            out.push(TenantOut {
                id: t.id.to_string(),
                slug: t.slug,
                name: t.name,
                created_at: t.created_at,
                organizations,
            });
        }
        Ok(out)
    }

    pub async fn get_tenant(&self, caller: &Caller, id: &str) -> Result<TenantOut> {
        caller.require(Feature::PlatformAdmin)?;
        let t = self
            .store()
            .get_tenant(&TenantId::new(id))
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("no tenant `{id}`")))?;
        let organizations = self
            .store()
            .list_organizations(&t.id)
            .await?
            .into_iter()
            .map(org_out)
            .collect();
        Ok(TenantOut {
            id: t.id.to_string(),
            slug: t.slug,
            name: t.name,
            created_at: t.created_at,
            organizations,
        })
    }

    pub async fn create_organization(
        &self,
        caller: &Caller,
        tenant_id: &str,
        input: OrganizationIn,
    ) -> Result<OrganizationOut> {
        self.audited(caller, "organization.create", tenant_id, async {
            caller.require(Feature::PlatformAdmin)?;
            check_slug_and_name(&input)?;
            let tenant = self
                .store()
                .get_tenant(&TenantId::new(tenant_id))
                .await?
                .ok_or_else(|| ServiceError::NotFound(format!("no tenant `{tenant_id}`")))?;
            let now = self.now();
            let org = Organization {
                id: OrganizationId::new(new_id("org")),
                tenant_id: tenant.id.clone(),
                slug: input.slug,
                name: input.name.trim().to_owned(),
                created_at: now,
            };
            let scope = Scope {
                tenant_id: tenant.id.clone(),
                organization_id: org.id.clone(),
            };
            self.store()
                .apply(vec![
                    Change::CreateOrganization(org.clone()),
                    audit::success(
                        caller,
                        Some(&scope),
                        "organization.create",
                        org.id.as_str(),
                        None,
                        now,
                    ),
                ])
                .await?;
            Ok(org_out(org))
        })
        .await
    }

    /// Creates an API token; its secret is in the result and nowhere else.
    pub async fn create_token(&self, caller: &Caller, input: TokenIn) -> Result<CreatedToken> {
        self.audited(caller, "token.create", &input.name.clone(), async {
            caller.require(Feature::PlatformAdmin)?;
            let mut errors = Vec::new();
            if input.name.trim().is_empty() || input.name.len() > 200 {
                errors.push(FieldError::new("name", "invalid_length", "must be 1-200 characters"));
            }
            let mut features = Vec::new();
            for (n, f) in input.features.iter().enumerate() {
                match Feature::parse(f) {
                    Some(f) if !features.contains(&f) => features.push(f),
                    Some(_) => {}
                    None => errors.push(FieldError::new(format!("features[{n}]"), "unknown_feature", format!("unknown feature `{f}`"))),
                }
            }
            let now = self.now();
            if input.expires_at.is_some_and(|e| e <= now) {
                errors.push(FieldError::new("expiresAt", "in_the_past", "the expiry must be in the future"));
            }
            let scope = match (&input.tenant_id, &input.organization_id) {
                (None, Some(_)) => {
                    errors.push(FieldError::new("organizationId", "needs_tenant", "an organization needs its tenantId"));
                    None
                }
                (None, None) => {
                    if features != [Feature::PlatformAdmin] {
                        errors.push(FieldError::new("features", "platform_features", "a platform token carries exactly [\"platform.admin\"]"));
                    }
                    None
                }
                (Some(t), org) => {
                    if features.is_empty() || features.iter().any(|f| !Feature::TENANT.contains(f)) {
                        errors.push(FieldError::new("features", "tenant_features", "a tenant token carries one or more of integrations.view, integrations.manage, integrations.credentials"));
                    }
                    let tenant = TenantId::new(t.clone());
                    let orgs = self.store().list_organizations(&tenant).await?;
                    let found = match org {
                        Some(o) => orgs.into_iter().find(|x| x.id.as_str() == o),
                        None => orgs.into_iter().find(|x| x.slug == "main"),
                    };
                    if let Some(o) = found {
                        Some(Scope { tenant_id: tenant, organization_id: o.id })
                    } else {
                        errors.push(FieldError::new(if org.is_some() { "organizationId" } else { "tenantId" }, "not_found", "no such tenant or organization"));
                        None
                    }
                }
            };
            if !errors.is_empty() {
                return Err(ServiceError::invalid("the token request is invalid", errors));
            }
            let generated = auth::generate_token()?;
            let record = ApiTokenRecord {
                id: new_id("tok"),
                name: input.name.trim().to_owned(),
                token_hash: generated.hash,
                prefix: generated.prefix,
                scope: scope.clone().map_or(TokenScope::Platform, TokenScope::Tenant),
                features: features.iter().map(|f| f.as_str().to_owned()).collect(),
                created_by: Some(caller.actor()),
                created_at: now,
                expires_at: input.expires_at,
                last_used_at: None,
                revoked_at: None,
            };
            self.store()
                .apply(vec![
                    Change::InsertApiToken(record.clone()),
                    audit::success(caller, scope.as_ref(), "token.create", &record.id, Some(serde_json::json!({ "features": record.features, "prefix": record.prefix })), now),
                ])
                .await?;
            Ok(CreatedToken { token: generated.token, info: token_out(record) })
        })
        .await
    }

    /// Creates a token on behalf of the operator at the command line (`patchbay
    /// token create`), who holds the database and the master key already.
    pub async fn create_token_as_system(&self, input: TokenIn) -> Result<CreatedToken> {
        let system = Caller {
            kind: crate::auth::CallerKind::System,
            id: "cli".to_owned(),
            name: "patchbay token create".to_owned(),
            access: crate::Access::Platform,
            features: vec![Feature::PlatformAdmin],
        };
        self.create_token(&system, input).await
    }

    pub async fn list_tokens(&self, caller: &Caller) -> Result<Vec<TokenOut>> {
        caller.require(Feature::PlatformAdmin)?;
        Ok(self
            .store()
            .list_api_tokens(None)
            .await?
            .into_iter()
            .map(token_out)
            .collect())
    }

    pub async fn revoke_token(&self, caller: &Caller, id: &str) -> Result<()> {
        self.audited(caller, "token.revoke", id, async {
            caller.require(Feature::PlatformAdmin)?;
            let now = self.now();
            self.store()
                .apply(vec![
                    Change::RevokeApiToken {
                        id: id.to_owned(),
                        scope: None,
                        at: now,
                    },
                    audit::success(caller, None, "token.revoke", id, None, now),
                ])
                .await
                .map_err(|e| match e {
                    patchbay_store::StoreError::NotFound(_) => {
                        ServiceError::NotFound(format!("no active token `{id}`"))
                    }
                    other => other.into(),
                })?;
            Ok(())
        })
        .await
    }

    /// On a database without any token, creates a platform admin token and
    /// returns it (to be shown once). Otherwise `None`.
    pub async fn bootstrap_admin_token(&self) -> Result<Option<SecretString>> {
        if !self.store().list_api_tokens(None).await?.is_empty() {
            return Ok(None);
        }
        let generated = auth::generate_token()?;
        let now = self.now();
        let record = ApiTokenRecord {
            id: new_id("tok"),
            name: "bootstrap admin".to_owned(),
            token_hash: generated.hash,
            prefix: generated.prefix,
            scope: TokenScope::Platform,
            features: vec![Feature::PlatformAdmin.as_str().to_owned()],
            created_by: Some("system".to_owned()),
            created_at: now,
            expires_at: None,
            last_used_at: None,
            revoked_at: None,
        };
        let audit = patchbay_store::NewAudit {
            actor: "system".to_owned(),
            scope: None,
            action: "token.bootstrap".to_owned(),
            target: Some(record.id.clone()),
            outcome: "success".to_owned(),
            details: None,
            correlation_id: None,
            created_at: now,
        };
        self.store()
            .apply(vec![
                Change::InsertApiToken(record),
                Change::AppendAudit(audit),
            ])
            .await?;
        Ok(Some(generated.token))
    }
}
