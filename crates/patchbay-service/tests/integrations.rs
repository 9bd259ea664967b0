//! Integration state and lifecycle, API versions and sunsets, bundles,
//! principals and events — on SQLite and PostgreSQL.

mod common;

use common::{Harness, medusa, stripe};
use patchbay_core::{CatalogQuery, IntegrationStatus as S, Timestamp};
use patchbay_service::ServiceError;
use patchbay_service::integrations::{BundleStateIn, StateIn, VersionChoice};

on_both!(
    an_untouched_integration_is_a_draft,
    enabling_needs_the_required_credentials,
    lifecycle_transitions_follow_the_rules,
    revoking_destroys_credentials_and_needs_a_new_draft,
    deprecated_versions_warn_and_sunset_versions_cannot_be_enabled,
    unknown_versions_are_refused,
    bundle_enable_all_is_all_or_nothing,
    enabled_connections_get_their_own_principal,
    state_changes_emit_events_in_the_same_transaction,
    the_list_carries_states_and_bundle_counts,
    tenants_do_not_see_each_others_states,
);

fn status(to: S) -> StateIn {
    StateIn {
        status: Some(to),
        api_version: VersionChoice::Unchanged,
    }
}

fn codes(e: &ServiceError) -> Vec<(String, &'static str)> {
    match e {
        ServiceError::Invalid { errors, .. } | ServiceError::Conflict { errors, .. } => {
            errors.iter().map(|f| (f.field.clone(), f.code)).collect()
        }
        other => panic!("expected field errors, got {other:?}"),
    }
}

async fn an_untouched_integration_is_a_draft(h: Harness) {
    let d = h
        .services
        .integration_detail(&h.a, "gateway_stripe")
        .await
        .unwrap();
    assert_eq!(d.state.status, S::Draft);
    assert_eq!(d.state.version, 0);
    assert_eq!(d.state.effective_api_version.as_deref(), Some("2024-12-18"));
    assert!(!d.credentials.configured);
    assert!(d.principal.is_none());
    let missing = h
        .services
        .integration_detail(&h.a, "gateway_paypal")
        .await
        .unwrap_err();
    assert!(matches!(missing, ServiceError::NotFound(_)));
}

async fn enabling_needs_the_required_credentials(h: Harness) {
    let s = &h.services;
    let e = s
        .set_state(&h.a, "gateway_stripe", status(S::Enabled))
        .await
        .unwrap_err();
    assert!(
        matches!(
            &e,
            ServiceError::Conflict {
                code: "enable_refused",
                ..
            }
        ),
        "{e:?}"
    );
    let mut got = codes(&e);
    got.sort();
    assert_eq!(
        got,
        [
            ("credentials.publishableKey".to_owned(), "required"),
            ("credentials.secretKey".to_owned(), "required"),
            ("credentials.webhookSecret".to_owned(), "required")
        ]
    );
    s.save_credentials(&h.a, "gateway_stripe", stripe("sk"))
        .await
        .unwrap();
    let ok = s
        .set_state(&h.a, "gateway_stripe", status(S::Enabled))
        .await
        .unwrap();
    assert_eq!(ok.state.status, S::Enabled);
    assert_eq!(ok.state.enabled_by.as_deref(), Some(h.a.actor().as_str()));
    assert_eq!(ok.state.enabled_at, Some(s.now()));
    // A bundle member is satisfied by the bundle's credentials.
    assert!(
        s.set_state(&h.a, "sync_medusa_products", status(S::Enabled))
            .await
            .is_err()
    );
    s.save_credentials(&h.a, "sync_medusa", medusa("mk"))
        .await
        .unwrap();
    s.set_state(&h.a, "sync_medusa_products", status(S::Enabled))
        .await
        .unwrap();
    // An integration without a credential form enables freely… none in the catalog needs none, so
    // the refusal is audited instead.
    let audit = s.list_audit(&h.admin, None, None, 200).await.unwrap();
    assert!(
        audit
            .iter()
            .any(|r| r.action == "integration.state" && r.outcome == "refused")
    );
}

async fn lifecycle_transitions_follow_the_rules(h: Harness) {
    let s = &h.services;
    s.save_credentials(&h.a, "gateway_stripe", stripe("sk"))
        .await
        .unwrap();
    let e = s
        .set_state(&h.a, "gateway_stripe", status(S::Disabled))
        .await
        .unwrap_err();
    assert!(
        matches!(
            &e,
            ServiceError::Conflict {
                code: "invalid_transition",
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(
        s.set_state(&h.a, "gateway_stripe", status(S::Enabled))
            .await
            .unwrap()
            .state
            .version,
        1
    );
    // Setting the same status again changes nothing.
    assert_eq!(
        s.set_state(&h.a, "gateway_stripe", status(S::Enabled))
            .await
            .unwrap()
            .state
            .version,
        1
    );
    assert_eq!(
        s.set_state(&h.a, "gateway_stripe", status(S::Disabled))
            .await
            .unwrap()
            .state
            .status,
        S::Disabled
    );
    assert_eq!(
        s.set_state(&h.a, "gateway_stripe", status(S::Enabled))
            .await
            .unwrap()
            .state
            .status,
        S::Enabled
    );
    assert!(matches!(
        s.set_state(&h.a, "gateway_stripe", status(S::Draft)).await,
        Err(ServiceError::Conflict {
            code: "invalid_transition",
            ..
        })
    ));
    let detail = s.integration_detail(&h.a, "gateway_stripe").await.unwrap();
    assert_eq!((detail.state.status, detail.state.version), (S::Enabled, 3));
}

async fn revoking_destroys_credentials_and_needs_a_new_draft(h: Harness) {
    let s = &h.services;
    s.save_credentials(&h.a, "gateway_stripe", stripe("sk_revoke"))
        .await
        .unwrap();
    s.set_state(&h.a, "gateway_stripe", status(S::Enabled))
        .await
        .unwrap();
    s.set_state(&h.a, "gateway_stripe", status(S::Revoked))
        .await
        .unwrap();
    assert!(
        s.resolve_credentials(h.a.tenant_scope().unwrap(), "gateway_stripe")
            .await
            .unwrap()
            .is_none()
    );
    assert!(!s.principal(&h.a, "gateway_stripe").await.unwrap().active);
    assert!(matches!(
        s.set_state(&h.a, "gateway_stripe", status(S::Enabled))
            .await,
        Err(ServiceError::Conflict {
            code: "invalid_transition",
            ..
        })
    ));
    assert_eq!(
        s.set_state(&h.a, "gateway_stripe", status(S::Draft))
            .await
            .unwrap()
            .state
            .status,
        S::Draft
    );
}

async fn deprecated_versions_warn_and_sunset_versions_cannot_be_enabled(h: Harness) {
    let s = &h.services;
    s.save_credentials(&h.a, "gateway_stripe", stripe("sk"))
        .await
        .unwrap();
    let picked = s
        .set_state(
            &h.a,
            "gateway_stripe",
            StateIn {
                status: None,
                api_version: VersionChoice::Version("2023-10-16".into()),
            },
        )
        .await
        .unwrap();
    assert_eq!(picked.state.api_version.as_deref(), Some("2023-10-16"));
    assert_eq!(picked.warnings.len(), 1);
    let w = &picked.warnings[0];
    assert_eq!(w.code, "deprecated_api_version");
    assert_eq!(w.sunset_at.unwrap().to_string(), "2026-12-01");
    assert!(
        w.migration_guide_url
            .as_deref()
            .unwrap()
            .starts_with("https://")
    );
    // Before the sunset, enabling with it works.
    s.set_state(&h.a, "gateway_stripe", status(S::Enabled))
        .await
        .unwrap();
    s.set_state(&h.a, "gateway_stripe", status(S::Disabled))
        .await
        .unwrap();
    // After the sunset date, it cannot be enabled…
    h.clock
        .set(Timestamp::parse_rfc3339("2026-12-02T00:00:00Z").unwrap());
    let e = s
        .set_state(&h.a, "gateway_stripe", status(S::Enabled))
        .await
        .unwrap_err();
    assert_eq!(codes(&e), [("apiVersion".to_owned(), "past_sunset")]);
    // …until the default version is selected again (null).
    let back = s
        .set_state(
            &h.a,
            "gateway_stripe",
            StateIn {
                status: Some(S::Enabled),
                api_version: VersionChoice::Default,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (
            back.state.api_version,
            back.state.effective_api_version.as_deref()
        ),
        (None, Some("2024-12-18"))
    );
    assert!(back.warnings.is_empty());
    // Switching an enabled connection to a sunset version is refused too.
    let e = s
        .set_state(
            &h.a,
            "gateway_stripe",
            StateIn {
                status: None,
                api_version: VersionChoice::Version("2023-10-16".into()),
            },
        )
        .await
        .unwrap_err();
    assert_eq!(codes(&e), [("apiVersion".to_owned(), "past_sunset")]);
}

async fn unknown_versions_are_refused(h: Harness) {
    let e = h
        .services
        .set_state(
            &h.a,
            "gateway_stripe",
            StateIn {
                status: None,
                api_version: VersionChoice::Version("1999-01-01".into()),
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(&e, ServiceError::Invalid { .. }), "{e:?}");
    assert_eq!(
        codes(&e),
        [("apiVersion".to_owned(), "unknown_api_version")]
    );
    let e = h
        .services
        .set_state(
            &h.a,
            "sync_files",
            StateIn {
                status: None,
                api_version: VersionChoice::Version("v2".into()),
            },
        )
        .await
        .unwrap_err();
    assert_eq!(
        codes(&e),
        [("apiVersion".to_owned(), "unknown_api_version")],
        "unversioned integrations take no version"
    );
}

async fn bundle_enable_all_is_all_or_nothing(h: Harness) {
    let s = &h.services;
    let e = s
        .set_bundle_state(&h.a, "sync_medusa", BundleStateIn { enabled: true })
        .await
        .unwrap_err();
    assert!(
        matches!(
            &e,
            ServiceError::Conflict {
                code: "bundle_refused",
                ..
            }
        ),
        "{e:?}"
    );
    let fields: Vec<String> = codes(&e).into_iter().map(|(f, _)| f).collect();
    assert!(
        fields.contains(&"members.sync_medusa_orders.credentials.medusaApiKey".to_owned()),
        "{fields:?}"
    );
    assert!(
        s.bundle_detail(&h.a, "sync_medusa")
            .await
            .unwrap()
            .members
            .iter()
            .all(|m| m.state.status == S::Draft),
        "nothing enabled"
    );

    s.save_credentials(&h.a, "sync_medusa", medusa("mk"))
        .await
        .unwrap();
    let done = s
        .set_bundle_state(&h.a, "sync_medusa", BundleStateIn { enabled: true })
        .await
        .unwrap();
    assert_eq!(done.members.len(), 5);
    let detail = s.bundle_detail(&h.a, "sync_medusa").await.unwrap();
    assert_eq!(detail.enabled_count, 5);
    assert!(detail.credentials.configured);
    // Each member's own timeline records the change made through the bundle.
    let timeline = s
        .query_logs(
            &h.a,
            Some("sync_medusa_products"),
            patchbay_service::logs::LogQueryIn::default(),
        )
        .await
        .unwrap();
    assert!(
        timeline
            .items
            .iter()
            .any(|e| e.operation == "integration.state"
                && e.message == "Status enabled (bundle sync_medusa)"),
        "{:?}",
        timeline
            .items
            .iter()
            .map(|e| &e.message)
            .collect::<Vec<_>>()
    );

    s.set_state(&h.a, "sync_medusa_inventory", status(S::Disabled))
        .await
        .unwrap();
    s.set_bundle_state(&h.a, "sync_medusa", BundleStateIn { enabled: false })
        .await
        .unwrap();
    assert_eq!(
        s.bundle_detail(&h.a, "sync_medusa")
            .await
            .unwrap()
            .enabled_count,
        0
    );
    let events: Vec<String> = s
        .list_events(&h.a, 0, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event_type)
        .collect();
    assert!(
        events.contains(&"integrations.bundle.enabled".to_owned())
            && events.contains(&"integrations.bundle.disabled".to_owned()),
        "{events:?}"
    );
    assert!(matches!(
        s.set_bundle_state(&h.a, "sync_shopify", BundleStateIn { enabled: true })
            .await,
        Err(ServiceError::NotFound(_))
    ));
}

async fn enabled_connections_get_their_own_principal(h: Harness) {
    let s = &h.services;
    assert!(matches!(
        s.principal(&h.a, "gateway_stripe").await,
        Err(ServiceError::NotFound(_))
    ));
    s.save_credentials(&h.a, "gateway_stripe", stripe("sk"))
        .await
        .unwrap();
    s.set_state(&h.a, "gateway_stripe", status(S::Enabled))
        .await
        .unwrap();
    let p = s.principal(&h.a, "gateway_stripe").await.unwrap();
    assert!(p.active && p.principal_id.starts_with("integration:"));
    assert_eq!(
        p.action_keys,
        ["create_session", "capture", "refund", "get_status"]
    );
    assert_eq!(&p.tenant_id, h.a.tenant_scope().unwrap().tenant_id.as_str());
    s.set_state(&h.a, "gateway_stripe", status(S::Disabled))
        .await
        .unwrap();
    assert!(!s.principal(&h.a, "gateway_stripe").await.unwrap().active);
    s.set_state(&h.a, "gateway_stripe", status(S::Enabled))
        .await
        .unwrap();
    let again = s.principal(&h.a, "gateway_stripe").await.unwrap();
    assert!(again.active);
    assert_ne!(again.key_id, p.key_id, "re-enabling issues a new key id");
    let grants: Vec<_> = s
        .list_audit(&h.admin, None, None, 200)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.action == "principal.grant")
        .collect();
    assert_eq!(grants.len(), 2);
    assert_eq!(grants[0].details.as_ref().unwrap()["keyId"], again.key_id);
}

async fn state_changes_emit_events_in_the_same_transaction(h: Harness) {
    let s = &h.services;
    s.save_credentials(&h.a, "gateway_stripe", stripe("sk"))
        .await
        .unwrap();
    s.set_state(&h.a, "gateway_stripe", status(S::Enabled))
        .await
        .unwrap();
    s.set_state(&h.a, "gateway_stripe", status(S::Disabled))
        .await
        .unwrap();
    let all = s.list_events(&h.a, 0, 100).await.unwrap();
    let kinds: Vec<&str> = all.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "integrations.credentials.updated",
            "integrations.integration.enabled",
            "integrations.integration.disabled"
        ]
    );
    assert_eq!(all[1].payload["integrationId"], "gateway_stripe");
    assert_eq!(all[1].payload["to"], "enabled");
    let after = s.list_events(&h.a, all[1].seq, 100).await.unwrap();
    assert_eq!(after.len(), 1);
    // A refused change writes no event.
    let _ = s
        .set_state(&h.a, "storage_s3", status(S::Enabled))
        .await
        .unwrap_err();
    assert_eq!(s.list_events(&h.a, 0, 100).await.unwrap().len(), 3);
}

async fn the_list_carries_states_and_bundle_counts(h: Harness) {
    let s = &h.services;
    s.save_credentials(&h.a, "sync_medusa", medusa("mk"))
        .await
        .unwrap();
    s.set_state(&h.a, "sync_medusa_orders", status(S::Enabled))
        .await
        .unwrap();
    let list = s
        .list_integrations(&h.a, &CatalogQuery::default())
        .await
        .unwrap();
    let json = serde_json::to_value(&list).unwrap();
    let items = json["items"].as_array().unwrap();
    assert_eq!(items.len(), 15);
    let orders = items
        .iter()
        .find(|i| i["id"] == "sync_medusa_orders")
        .unwrap();
    assert_eq!(orders["state"]["status"], "enabled");
    assert_eq!(orders["bundleId"], "sync_medusa");
    let stripe = items.iter().find(|i| i["id"] == "gateway_stripe").unwrap();
    assert_eq!(stripe["state"]["status"], "draft");
    let bundle = &json["bundles"][0];
    assert_eq!(
        (
            bundle["integrationCount"].as_u64(),
            bundle["enabledCount"].as_u64()
        ),
        (Some(5), Some(1))
    );
    let q = CatalogQuery {
        category: Some(patchbay_core::Category::Payment),
        ..CatalogQuery::default()
    };
    assert_eq!(s.list_integrations(&h.a, &q).await.unwrap().len(), 1);
}

async fn tenants_do_not_see_each_others_states(h: Harness) {
    let s = &h.services;
    s.save_credentials(&h.a, "gateway_stripe", stripe("sk"))
        .await
        .unwrap();
    s.set_state(&h.a, "gateway_stripe", status(S::Enabled))
        .await
        .unwrap();
    let theirs = s.integration_detail(&h.b, "gateway_stripe").await.unwrap();
    assert_eq!(theirs.state.status, S::Draft);
    assert!(!theirs.credentials.configured);
    assert!(theirs.principal.is_none());
    assert!(s.list_events(&h.b, 0, 100).await.unwrap().is_empty());
    let bj = serde_json::to_value(
        s.list_integrations(&h.b, &CatalogQuery::default())
            .await
            .unwrap(),
    )
    .unwrap();
    assert!(
        bj["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["state"]["status"] == "draft")
    );
}
