//! Lifecycle events (SPEC-045a §7), written to the outbox in the transaction
//! of the change they report, and read back by the host application with
//! `GET /api/events?after=<seq>`.

use patchbay_core::{Scope, Timestamp};
use patchbay_store::{Change, NewEvent};
use serde::Serialize;

use crate::auth::{Caller, Feature};
use crate::error::Result;
use crate::{ServiceError, Services};

pub const INTEGRATION_ENABLED: &str = "integrations.integration.enabled";
pub const INTEGRATION_DISABLED: &str = "integrations.integration.disabled";
pub const INTEGRATION_REVOKED: &str = "integrations.integration.revoked";
pub const CREDENTIALS_UPDATED: &str = "integrations.credentials.updated";
pub const CREDENTIALS_REMOVED: &str = "integrations.credentials.removed";
pub const HEALTH_CHECKED: &str = "integrations.health.checked";
pub const BUNDLE_ENABLED: &str = "integrations.bundle.enabled";
pub const BUNDLE_DISABLED: &str = "integrations.bundle.disabled";

/// An outbox change for `event_type` about `subject`, with a JSON payload.
pub(crate) fn event(
    scope: &Scope,
    event_type: &str,
    subject: &str,
    payload: &serde_json::Value,
    at: Timestamp,
) -> Change {
    Change::AppendEvent(NewEvent {
        id: format!("evt_{}", uuid::Uuid::now_v7().simple()),
        scope: scope.clone(),
        event_type: event_type.to_owned(),
        integration_id: Some(subject.to_owned()),
        payload: payload.to_string(),
        created_at: at,
    })
}

/// An event as the API shows it.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventOut {
    /// Outbox position; pass the last one seen as `after` to read on.
    pub seq: i64,
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub integration_id: Option<String>,
    pub payload: serde_json::Value,
    pub created_at: Timestamp,
}

impl Services {
    /// Events of the caller's scope after outbox position `after`, oldest first.
    pub async fn list_events(
        &self,
        caller: &Caller,
        after: i64,
        limit: u32,
    ) -> Result<Vec<EventOut>> {
        let scope = caller.scope_with(Feature::IntegrationsView)?;
        let rows = self.store().list_events(scope, after, limit).await?;
        rows.into_iter()
            .map(|r| {
                Ok(EventOut {
                    seq: r.seq,
                    id: r.event.id,
                    event_type: r.event.event_type,
                    integration_id: r.event.integration_id,
                    payload: serde_json::from_str(&r.event.payload)
                        .map_err(|e| ServiceError::internal(&e))?,
                    created_at: r.event.created_at,
                })
            })
            .collect()
    }
}
