//! The audit trail (`INTEGRATION_MODEL` §10): every mutating call records who
//! (the token), the scope, the action, the target, the outcome and the time.
//! Successful changes carry their record in their own transaction; refused
//! and failed calls are recorded on their own.

use patchbay_core::{Scope, TenantId, Timestamp};
use patchbay_store::{AuditQuery, Change, NewAudit};
use serde::Serialize;

use crate::Services;
use crate::auth::{Caller, Feature};
use crate::error::{Result, ServiceError};

/// An audit change for a successful action.
pub(crate) fn success(
    caller: &Caller,
    scope: Option<&Scope>,
    action: &str,
    target: &str,
    details: Option<serde_json::Value>,
    at: Timestamp,
) -> Change {
    Change::AppendAudit(NewAudit {
        actor: caller.actor(),
        scope: scope.cloned().or_else(|| caller.audit_scope()),
        action: action.to_owned(),
        target: Some(target.to_owned()),
        outcome: "success".to_owned(),
        details: details.map(|d| d.to_string()),
        correlation_id: None,
        created_at: at,
    })
}

/// An audit record as the API shows it.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditOut {
    pub id: i64,
    pub actor: String,
    pub tenant_id: Option<String>,
    pub organization_id: Option<String>,
    pub action: String,
    pub target: Option<String>,
    pub outcome: String,
    pub details: Option<serde_json::Value>,
    pub created_at: Timestamp,
}

impl Services {
    /// Records a refused or failed mutating call; never fails the caller's request.
    pub(crate) async fn audit_failure(
        &self,
        caller: &Caller,
        action: &str,
        target: &str,
        error: &ServiceError,
    ) {
        let record = NewAudit {
            actor: caller.actor(),
            scope: caller.audit_scope(),
            action: action.to_owned(),
            target: Some(target.to_owned()),
            outcome: error.outcome().to_owned(),
            details: Some(serde_json::json!({ "reason": error.to_string() }).to_string()),
            correlation_id: None,
            created_at: self.now(),
        };
        if let Err(e) = self.store().apply(vec![Change::AppendAudit(record)]).await {
            tracing::warn!(error = %e, action, "cannot write an audit record");
        }
    }

    /// Runs a mutating call and audits it if it fails.
    pub(crate) async fn audited<T>(
        &self,
        caller: &Caller,
        action: &str,
        target: &str,
        call: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let result = call.await;
        if let Err(e) = &result {
            self.audit_failure(caller, action, target, e).await;
        }
        result
    }

    /// The audit trail, newest first: platform admins only, optionally one tenant.
    pub async fn list_audit(
        &self,
        caller: &Caller,
        tenant: Option<TenantId>,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<AuditOut>> {
        caller.require(Feature::PlatformAdmin)?;
        let rows = self
            .store()
            .list_audit(&AuditQuery {
                tenant_id: tenant,
                before_id: before,
                limit,
            })
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| AuditOut {
                id: r.id,
                actor: r.audit.actor,
                tenant_id: r.audit.scope.as_ref().map(|s| s.tenant_id.to_string()),
                organization_id: r
                    .audit
                    .scope
                    .as_ref()
                    .map(|s| s.organization_id.to_string()),
                action: r.audit.action,
                target: r.audit.target,
                outcome: r.audit.outcome,
                details: r.audit.details.and_then(|d| serde_json::from_str(&d).ok()),
                created_at: r.audit.created_at,
            })
            .collect())
    }
}
