//! Liveness and readiness probes.
//!
//! `/healthz` answers as long as the process serves HTTP. `/readyz` answers 200
//! only when the database answers and every migration this build knows is
//! applied; load balancers and orchestrators route traffic on it.

use axum::Json;
use axum::extract::State;
use serde_json::json;

use crate::AppState;
use crate::error::{ApiError, ErrorCode};

pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "alive" }))
}

pub async fn readyz(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let r = state.store().readiness().await.map_err(|e| {
        tracing::warn!(error = %e, "readiness check failed");
        ApiError::new(ErrorCode::NotReady, "the database is unreachable")
    })?;
    if !r.is_ready() {
        return Err(ApiError::new(
            ErrorCode::NotReady,
            format!(
                "database schema at migration {} of {}",
                r.applied_migration, r.expected_migration
            ),
        ));
    }
    Ok(Json(json!({
        "status": "ready",
        "database": state.store().backend().as_str(),
        "migration": r.applied_migration,
    })))
}
