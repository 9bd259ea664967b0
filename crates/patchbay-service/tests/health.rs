//! Health checks: the provider operation where this build has one, plain
//! "unknown" where it has none, configuration problems, version sunset and
//! credential drift; the result lands on the state, in the events and in
//! the operation log.

mod common;

use common::Harness;
use patchbay_core::IntegrationStatus;
use patchbay_service::health::{CheckStatus, HealthStatus, effective_health};
use patchbay_service::integrations::{StateIn, VersionChoice};
use patchbay_service::logs::LogQueryIn;
use serde_json::json;

async fn enable(h: &Harness, id: &str, version: VersionChoice) {
    h.services
        .set_state(
            &h.a,
            id,
            StateIn {
                status: Some(IntegrationStatus::Enabled),
                api_version: version,
            },
        )
        .await
        .unwrap();
}

fn scope(h: &Harness) -> patchbay_core::Scope {
    match &h.a.access {
        patchbay_service::Access::Tenant(s) => s.clone(),
        patchbay_service::Access::Platform => unreachable!(),
    }
}

async fn a_writable_root_is_healthy_and_recorded(h: Harness) {
    let root = tempfile::tempdir().unwrap();
    h.services
        .save_credentials(
            &h.a,
            "storage_local",
            common::map(json!({ "root": root.path().to_str().unwrap() })),
        )
        .await
        .unwrap();
    enable(&h, "storage_local", VersionChoice::Unchanged).await;
    let result = h
        .services
        .run_health_check(&scope(&h), "storage_local")
        .await
        .unwrap();
    assert_eq!(result.status, HealthStatus::Healthy, "{result:?}");
    let provider = result.checks.iter().find(|c| c.name == "provider").unwrap();
    assert_eq!(provider.status, CheckStatus::Pass);
    assert_eq!(provider.message, "the root directory is writable");
    // The probe file is gone.
    assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0);
    // Stored on the state…
    let detail = h
        .services
        .integration_detail(&h.a, "storage_local")
        .await
        .unwrap();
    assert_eq!(
        detail.state.last_health.as_ref().unwrap()["status"],
        "healthy"
    );
    assert_eq!(detail.state.last_health_at, Some(result.checked_at));
    // …emitted…
    let events = h.services.list_events(&h.a, 0, 100).await.unwrap();
    let checked = events
        .iter()
        .find(|e| e.event_type == "integrations.health.checked")
        .expect("a health event");
    assert_eq!(checked.payload["status"], "healthy");
    assert_eq!(checked.integration_id.as_deref(), Some("storage_local"));
    // …and logged.
    let logs = h
        .services
        .query_logs(
            &h.a,
            Some("storage_local"),
            LogQueryIn {
                operation: Some("health.check".into()),
                ..LogQueryIn::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(logs.items.len(), 1);
    assert!(logs.items[0].message.starts_with("health check: healthy"));
    assert!(logs.items[0].duration_ms.is_some());
    // Tenant B's state is untouched.
    let other = h
        .services
        .integration_detail(&h.b, "storage_local")
        .await
        .unwrap();
    assert!(other.state.last_health.is_none());

    // The root disappears: unhealthy, with the reason.
    drop(root);
    let result = h
        .services
        .run_health_check(&scope(&h), "storage_local")
        .await
        .unwrap();
    assert_eq!(result.status, HealthStatus::Unhealthy);
    assert!(
        result.message.starts_with("the root directory is unusable"),
        "{}",
        result.message
    );
}

async fn without_a_health_operation_the_check_says_so(h: Harness) {
    h.services
        .save_credentials(&h.a, "gateway_stripe", common::stripe("sk_test_secret_42"))
        .await
        .unwrap();
    enable(&h, "gateway_stripe", VersionChoice::Unchanged).await;
    let result = h
        .services
        .run_health_check(&scope(&h), "gateway_stripe")
        .await
        .unwrap();
    assert_eq!(result.status, HealthStatus::Unknown, "never a fake healthy");
    assert_eq!(
        result.message,
        "no health operation for `stripe` in this build; the provider was not contacted"
    );
    assert!(
        !serde_json::to_string(&result)
            .unwrap()
            .contains("sk_test_secret_42")
    );

    // A deprecated version 30 days from its sunset: degraded.
    enable(
        &h,
        "gateway_stripe",
        VersionChoice::Version("2023-10-16".into()),
    )
    .await;
    let result = h
        .services
        .run_health_check(&scope(&h), "gateway_stripe")
        .await
        .unwrap();
    assert_eq!(result.status, HealthStatus::Degraded);
    assert_eq!(result.api_version.as_deref(), Some("2023-10-16"));
    assert!(
        result.message.contains("is sunset on 2026-12-01"),
        "{}",
        result.message
    );
    // Past the sunset: unhealthy.
    h.clock.advance_seconds(31 * 86_400);
    let result = h
        .services
        .run_health_check(&scope(&h), "gateway_stripe")
        .await
        .unwrap();
    assert_eq!(result.status, HealthStatus::Unhealthy);
    assert!(result.message.contains("was sunset"), "{}", result.message);
}

async fn missing_credentials_are_unhealthy(h: Harness) {
    let result = h
        .services
        .run_health_check(&scope(&h), "storage_local")
        .await
        .unwrap();
    assert_eq!(result.status, HealthStatus::Unhealthy);
    assert_eq!(result.message, "missing: Root Directory");
    let provider = result.checks.iter().find(|c| c.name == "provider").unwrap();
    assert_eq!(provider.status, CheckStatus::Skip);
}

async fn changed_credentials_read_as_drift(h: Harness) {
    let root = tempfile::tempdir().unwrap();
    let creds = common::map(json!({ "root": root.path().to_str().unwrap() }));
    h.services
        .save_credentials(&h.a, "storage_local", creds.clone())
        .await
        .unwrap();
    let result = h
        .services
        .run_health_check(&scope(&h), "storage_local")
        .await
        .unwrap();
    let stored = serde_json::to_string(&result).unwrap();
    assert_eq!(
        effective_health(Some(&stored), Some(result.checked_at))
            .unwrap()
            .status,
        HealthStatus::Healthy
    );
    h.clock.advance_seconds(60);
    h.services
        .save_credentials(&h.a, "storage_local", creds)
        .await
        .unwrap();
    let masked = h
        .services
        .credentials_masked(&h.a, "storage_local")
        .await
        .unwrap();
    let drifted = effective_health(Some(&stored), masked.updated_at).unwrap();
    assert_eq!(drifted.status, HealthStatus::Degraded);
    assert!(drifted.checks.iter().any(|c| c.name == "drift"));
    // The detail shows it so.
    let detail = h
        .services
        .integration_detail(&h.a, "storage_local")
        .await
        .unwrap();
    let shown = detail.state.last_health.unwrap();
    assert_eq!(shown["status"], "degraded");
    assert_eq!(
        shown["message"],
        "credentials changed since the last good check; run a check"
    );
    // A new check (the provider re-verifies them) is healthy again.
    let again = h
        .services
        .run_health_check(&scope(&h), "storage_local")
        .await
        .unwrap();
    assert_eq!(again.status, HealthStatus::Healthy);
}

on_both!(
    a_writable_root_is_healthy_and_recorded,
    without_a_health_operation_the_check_says_so,
    missing_credentials_are_unhealthy,
    changed_credentials_read_as_drift,
);
