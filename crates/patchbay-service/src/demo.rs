//! Demo data for `patchbay serve --demo`: a tenant with a few integrations
//! configured and enabled, and some operation-log history, so that a fresh
//! install has something to look at. The credentials are placeholders for
//! providers that are not called.

use patchbay_core::{IntegrationStatus, LogLevel};
use patchbay_vault::{ExposeSecret as _, SecretString};
use serde_json::json;

use crate::auth::{Access, Caller, Feature};
use crate::error::Result;
use crate::integrations::{BundleStateIn, StateIn};
use crate::logs::Entry;
use crate::tenants::{TenantIn, TokenIn};
use crate::{ServiceError, Services};

pub const DEMO_TENANT: &str = "demo";
/// The sign-in email of the demo tenant's operator.
pub const DEMO_OPERATOR: &str = "demo@patchbay.local";

/// What the demo seed hands back once, to be shown once.
#[derive(Debug)]
pub struct DemoAccess {
    /// A tenant token for the API.
    pub token: SecretString,
    /// The operator's email ([`DEMO_OPERATOR`]) and a random password for the panel.
    pub operator_email: String,
    pub operator_password: SecretString,
}

impl Services {
    /// Creates the demo tenant with an owner account, once. Returns its
    /// token and the operator's password the first time (to be shown once),
    /// `None` when it exists already.
    pub async fn seed_demo(&self) -> Result<Option<DemoAccess>> {
        if self
            .store()
            .list_tenants()
            .await?
            .iter()
            .any(|t| t.slug == DEMO_TENANT)
        {
            return Ok(None);
        }
        let system = Caller {
            kind: crate::auth::CallerKind::System,
            id: "demo-seed".to_owned(),
            name: "demo data".to_owned(),
            access: Access::Platform,
            features: vec![Feature::PlatformAdmin],
        };
        let tenant = self
            .create_tenant(
                &system,
                TenantIn {
                    slug: DEMO_TENANT.to_owned(),
                    name: "Demo Store".to_owned(),
                },
            )
            .await?;
        let org = tenant
            .organizations
            .first()
            .ok_or_else(|| ServiceError::internal(&"the demo tenant has no organization"))?;
        let scope = patchbay_core::Scope::new(tenant.id.clone(), org.id.clone());
        let operator = Caller {
            kind: crate::auth::CallerKind::System,
            id: "demo-seed".to_owned(),
            name: "demo data".to_owned(),
            access: Access::Tenant(scope.clone()),
            features: Feature::TENANT.to_vec(),
        };
        let values = |v: serde_json::Value| v.as_object().cloned().unwrap_or_default();
        self.save_credentials(&operator, "gateway_stripe", values(json!({ "publishableKey": "pk_test_demo", "secretKey": "sk_test_demo_placeholder", "webhookSecret": "whsec_demo_placeholder", "captureMethod": "automatic" }))).await?;
        self.set_state(
            &operator,
            "gateway_stripe",
            StateIn {
                status: Some(IntegrationStatus::Enabled),
                ..StateIn::default()
            },
        )
        .await?;
        self.save_credentials(&operator, "sync_medusa", values(json!({ "medusaApiUrl": "https://medusa.demo.example", "medusaApiKey": "demo_placeholder_key", "medusaWebhookSecret": "demo_placeholder_hook" }))).await?;
        self.set_bundle_state(&operator, "sync_medusa", BundleStateIn { enabled: true })
            .await?;
        self.save_credentials(&operator, "notification_smtp", values(json!({ "host": "localhost", "port": 1025, "security": "none", "fromAddress": "Demo Store <shop@demo.example>" }))).await?;
        let log = self
            .logger(
                &scope,
                "sync_medusa_products",
                Some("demo-run-1".to_owned()),
            )
            .await?;
        log.log_many([
            (
                LogLevel::Info,
                Entry {
                    operation: "sync.import.started".into(),
                    message: "Starting product import from MedusaJS".into(),
                    ..Entry::default()
                },
            ),
            (
                LogLevel::Info,
                Entry {
                    operation: "sync.import.batch".into(),
                    message: "Processed batch: 50 imported, 0 skipped, 1 failed".into(),
                    details: Some(json!({ "imported": 50, "failed": 1 })),
                    ..Entry::default()
                },
            ),
            (
                LogLevel::Error,
                Entry {
                    operation: "sync.import.item_failed".into(),
                    message: "Failed to import product prod_17: price is missing".into(),
                    entity_type: Some("catalog.product".into()),
                    entity_id: Some("prod_17".into()),
                    ..Entry::default()
                },
            ),
            (
                LogLevel::Info,
                Entry {
                    operation: "sync.import.completed".into(),
                    message: "Import complete: 50 imported, 1 failed".into(),
                    duration_ms: Some(1840),
                    ..Entry::default()
                },
            ),
        ])
        .await?;
        let token = self
            .create_token(
                &system,
                TokenIn {
                    name: "demo tenant token".to_owned(),
                    tenant_id: Some(tenant.id),
                    organization_id: None,
                    features: Feature::TENANT
                        .iter()
                        .map(|f| f.as_str().to_owned())
                        .collect(),
                    expires_at: None,
                },
            )
            .await?;
        let password = crate::users::random_password()?;
        self.create_user_as_system(crate::users::UserIn {
            email: DEMO_OPERATOR.to_owned(),
            name: "Demo operator".to_owned(),
            password: password.expose_secret().to_owned(),
            role: crate::users::Role::Owner,
            tenant_id: Some(scope.tenant_id.to_string()),
            organization_id: None,
        })
        .await?;
        Ok(Some(DemoAccess {
            token: token.token,
            operator_email: DEMO_OPERATOR.to_owned(),
            operator_password: password,
        }))
    }
}
