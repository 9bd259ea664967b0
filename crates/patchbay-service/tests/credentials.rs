//! The credentials service: validation, masking, bundle fallthrough, removal,
//! encryption at rest and tamper resistance — on SQLite and PostgreSQL.

mod common;

use common::{Harness, map, medusa, stripe};
use patchbay_service::ServiceError;
use patchbay_service::credentials::Source;
use patchbay_store::Change;
use patchbay_vault::MASK;
use serde_json::json;

on_both!(
    saving_masks_secrets_and_resolving_decrypts_them,
    every_problem_of_a_save_is_reported_at_once,
    a_masked_secret_sent_back_keeps_the_stored_value,
    bundle_members_fall_through_to_the_bundle_and_can_override,
    removal_is_a_hard_delete,
    each_save_gets_a_new_key_id_and_use_is_tracked,
    ciphertext_is_bound_to_its_row,
    another_tenant_sees_none_of_it,
    features_are_required,
);

fn errors(e: &ServiceError) -> Vec<(String, &'static str)> {
    match e {
        ServiceError::Invalid { errors, .. } | ServiceError::Conflict { errors, .. } => {
            errors.iter().map(|f| (f.field.clone(), f.code)).collect()
        }
        other => panic!("expected field errors, got {other:?}"),
    }
}

async fn saving_masks_secrets_and_resolving_decrypts_them(h: Harness) {
    let s = &h.services;
    let saved = s
        .save_credentials(&h.a, "gateway_stripe", stripe("sk_live_canary"))
        .await
        .unwrap();
    assert_eq!(saved.values["secretKey"], MASK);
    assert_eq!(saved.values["webhookSecret"], MASK);
    assert_eq!(saved.values["publishableKey"], "pk_test_123");
    assert_eq!(saved.values["captureMethod"], "manual");
    assert_eq!(saved.values["enableApplePay"], true);
    let read = s.credentials_masked(&h.a, "gateway_stripe").await.unwrap();
    assert_eq!(read.values, saved.values);
    assert_eq!(read.source, Some(Source::Own));
    let scope = h.a.tenant_scope().unwrap();
    let resolved = s
        .resolve_credentials(scope, "gateway_stripe")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resolved.values["secretKey"], "sk_live_canary");
    assert!(
        !format!("{resolved:?}").contains("canary"),
        "Debug hides values"
    );
    // At rest it is ciphertext.
    let row = h
        .store
        .find_credentials(scope, &["gateway_stripe"])
        .await
        .unwrap()
        .remove(0);
    assert!(!String::from_utf8_lossy(&row.ciphertext).contains("canary"));
    assert_eq!(row.nonce.len(), 24);
}

async fn every_problem_of_a_save_is_reported_at_once(h: Harness) {
    let bad = map(json!({
        "publishableKey": 42,
        "webhookSecret": "",
        "captureMethod": "sometimes",
        "enableApplePay": "yes",
        "colour": "blue",
    }));
    let e = h
        .services
        .save_credentials(&h.a, "gateway_stripe", bad)
        .await
        .unwrap_err();
    let mut got = errors(&e);
    got.sort();
    assert_eq!(
        got,
        vec![
            ("values.captureMethod".to_owned(), "invalid_option"),
            ("values.colour".to_owned(), "unknown_field"),
            ("values.enableApplePay".to_owned(), "invalid_type"),
            ("values.publishableKey".to_owned(), "invalid_type"),
            ("values.secretKey".to_owned(), "required"),
            ("values.webhookSecret".to_owned(), "required"),
        ]
    );
    let url = h.services.save_credentials(&h.a, "sync_medusa", map(json!({"medusaApiUrl": "ftp://x", "medusaApiKey": "k1234", "medusaWebhookSecret": "w1234"}))).await.unwrap_err();
    assert_eq!(
        errors(&url),
        vec![("values.medusaApiUrl".to_owned(), "invalid_url")]
    );
    let num = h.services.save_credentials(&h.a, "notification_smtp", map(json!({"host": "smtp.example.com", "port": "587", "security": "tls", "fromAddress": "a@b.c"}))).await.unwrap_err();
    assert_eq!(
        errors(&num),
        vec![("values.port".to_owned(), "invalid_type")]
    );
    // Nothing was stored by the failed saves.
    assert_eq!(
        h.services
            .credentials_masked(&h.a, "gateway_stripe")
            .await
            .unwrap()
            .source,
        None
    );
    let unknown = h
        .services
        .save_credentials(&h.a, "gateway_paypal", stripe("x"))
        .await
        .unwrap_err();
    assert!(matches!(unknown, ServiceError::NotFound(_)), "{unknown:?}");
    let member = h
        .services
        .save_credentials(&h.a, "webhook_standard", map(json!({})))
        .await
        .unwrap_err();
    assert_eq!(
        errors(&member),
        vec![("values.signingSecret".to_owned(), "required")]
    );
}

async fn a_masked_secret_sent_back_keeps_the_stored_value(h: Harness) {
    let s = &h.services;
    s.save_credentials(&h.a, "gateway_stripe", stripe("sk_first"))
        .await
        .unwrap();
    let mut form = s
        .credentials_masked(&h.a, "gateway_stripe")
        .await
        .unwrap()
        .values;
    form.insert("publishableKey".into(), json!("pk_changed"));
    s.save_credentials(&h.a, "gateway_stripe", form)
        .await
        .unwrap();
    let resolved = s
        .resolve_credentials(h.a.tenant_scope().unwrap(), "gateway_stripe")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resolved.values["secretKey"], "sk_first");
    assert_eq!(resolved.values["webhookSecret"], "whsec_sk_first");
    assert_eq!(resolved.values["publishableKey"], "pk_changed");
    // A mask with nothing stored behind it is refused.
    let e = s
        .save_credentials(
            &h.b,
            "gateway_stripe",
            map(json!({"publishableKey": "pk", "secretKey": MASK, "webhookSecret": "w"})),
        )
        .await
        .unwrap_err();
    assert_eq!(
        errors(&e),
        vec![("values.secretKey".to_owned(), "required")]
    );
}

async fn bundle_members_fall_through_to_the_bundle_and_can_override(h: Harness) {
    let s = &h.services;
    let scope = h.a.tenant_scope().unwrap();
    s.save_credentials(&h.a, "sync_medusa", medusa("bundle-key-1"))
        .await
        .unwrap();
    let r = s
        .resolve_credentials(scope, "sync_medusa_products")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (r.source, r.owner_id.as_str()),
        (Source::Bundle, "sync_medusa")
    );
    assert_eq!(r.values["medusaApiKey"], "bundle-key-1");
    let masked = s
        .credentials_masked(&h.a, "sync_medusa_orders")
        .await
        .unwrap();
    assert_eq!(masked.source, Some(Source::Bundle));
    assert_eq!(masked.bundle_id.as_deref(), Some("sync_medusa"));
    assert_eq!(masked.values["medusaApiKey"], MASK);
    assert_eq!(masked.values["medusaApiUrl"], "https://medusa.example.com");

    // Saving on the member overrides, with the bundle's form; the mask keeps the bundle's secret.
    let mut form = masked.values.clone();
    form.insert(
        "medusaApiUrl".into(),
        json!("https://eu.medusa.example.com"),
    );
    s.save_credentials(&h.a, "sync_medusa_orders", form)
        .await
        .unwrap();
    let own = s
        .resolve_credentials(scope, "sync_medusa_orders")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (own.source, own.owner_id.as_str()),
        (Source::Own, "sync_medusa_orders")
    );
    assert_eq!(own.values["medusaApiUrl"], "https://eu.medusa.example.com");
    assert_eq!(own.values["medusaApiKey"], "bundle-key-1");
    // Other members still use the bundle's.
    assert_eq!(
        s.resolve_credentials(scope, "sync_medusa_products")
            .await
            .unwrap()
            .unwrap()
            .source,
        Source::Bundle
    );
    // Removing the override falls through again.
    s.remove_credentials(&h.a, "sync_medusa_orders")
        .await
        .unwrap();
    assert_eq!(
        s.resolve_credentials(scope, "sync_medusa_orders")
            .await
            .unwrap()
            .unwrap()
            .source,
        Source::Bundle
    );
}

async fn removal_is_a_hard_delete(h: Harness) {
    let s = &h.services;
    s.save_credentials(&h.a, "gateway_stripe", stripe("sk_gone"))
        .await
        .unwrap();
    s.remove_credentials(&h.a, "gateway_stripe").await.unwrap();
    let scope = h.a.tenant_scope().unwrap();
    assert!(
        h.store
            .find_credentials(scope, &["gateway_stripe"])
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        s.resolve_credentials(scope, "gateway_stripe")
            .await
            .unwrap()
            .is_none()
    );
    let again = s
        .remove_credentials(&h.a, "gateway_stripe")
        .await
        .unwrap_err();
    assert!(matches!(again, ServiceError::NotFound(_)), "{again:?}");
    let events = s.list_events(&h.a, 0, 100).await.unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "integrations.credentials.updated",
            "integrations.credentials.removed"
        ]
    );
}

async fn each_save_gets_a_new_key_id_and_use_is_tracked(h: Harness) {
    let s = &h.services;
    let k1 = s
        .save_credentials(&h.a, "gateway_stripe", stripe("one"))
        .await
        .unwrap()
        .key_id
        .unwrap();
    let k2 = s
        .save_credentials(&h.a, "gateway_stripe", stripe("two"))
        .await
        .unwrap()
        .key_id
        .unwrap();
    assert_ne!(k1, k2);
    assert!(
        s.credentials_masked(&h.a, "gateway_stripe")
            .await
            .unwrap()
            .last_used_at
            .is_none()
    );
    s.resolve_credentials(h.a.tenant_scope().unwrap(), "gateway_stripe")
        .await
        .unwrap();
    assert_eq!(
        s.credentials_masked(&h.a, "gateway_stripe")
            .await
            .unwrap()
            .last_used_at,
        Some(s.now())
    );
}

async fn ciphertext_is_bound_to_its_row(h: Harness) {
    let s = &h.services;
    let (sa, sb) = (
        h.a.tenant_scope().unwrap().clone(),
        h.b.tenant_scope().unwrap().clone(),
    );
    s.save_credentials(&h.a, "gateway_stripe", stripe("sk_a"))
        .await
        .unwrap();
    s.save_credentials(&h.b, "gateway_stripe", stripe("sk_b"))
        .await
        .unwrap();
    s.save_credentials(
        &h.a,
        "storage_s3",
        map(
            json!({"region": "eu", "bucket": "b", "accessKeyId": "AK", "secretAccessKey": "sk_s3"}),
        ),
    )
    .await
    .unwrap();
    let row_a = h
        .store
        .find_credentials(&sa, &["gateway_stripe"])
        .await
        .unwrap()
        .remove(0);
    let row_b = h
        .store
        .find_credentials(&sb, &["gateway_stripe"])
        .await
        .unwrap()
        .remove(0);

    // A flipped byte anywhere in the ciphertext is refused, never decrypted wrongly.
    for i in [0, row_a.ciphertext.len() / 2, row_a.ciphertext.len() - 1] {
        let mut tampered = row_a.clone();
        tampered.ciphertext[i] ^= 0x01;
        h.store
            .apply(vec![Change::PutCredential(tampered)])
            .await
            .unwrap();
        assert!(
            matches!(
                s.resolve_credentials(&sa, "gateway_stripe").await,
                Err(ServiceError::Internal(_))
            ),
            "flip at {i}"
        );
    }
    // Tenant A's ciphertext copied into tenant B's row does not decrypt there.
    let mut moved = row_b.clone();
    moved.nonce.clone_from(&row_a.nonce);
    moved.ciphertext.clone_from(&row_a.ciphertext);
    h.store
        .apply(vec![Change::PutCredential(moved)])
        .await
        .unwrap();
    assert!(s.resolve_credentials(&sb, "gateway_stripe").await.is_err());
    // Nor does it under another integration of the same tenant.
    let mut other = h
        .store
        .find_credentials(&sa, &["storage_s3"])
        .await
        .unwrap()
        .remove(0);
    other.nonce.clone_from(&row_a.nonce);
    other.ciphertext.clone_from(&row_a.ciphertext);
    h.store
        .apply(vec![Change::PutCredential(other)])
        .await
        .unwrap();
    assert!(s.resolve_credentials(&sa, "storage_s3").await.is_err());
    // The untouched original still decrypts once restored.
    h.store
        .apply(vec![Change::PutCredential(row_a)])
        .await
        .unwrap();
    assert_eq!(
        s.resolve_credentials(&sa, "gateway_stripe")
            .await
            .unwrap()
            .unwrap()
            .values["secretKey"],
        "sk_a"
    );
}

async fn another_tenant_sees_none_of_it(h: Harness) {
    let s = &h.services;
    s.save_credentials(&h.a, "gateway_stripe", stripe("sk_private"))
        .await
        .unwrap();
    let theirs = s.credentials_masked(&h.b, "gateway_stripe").await.unwrap();
    assert_eq!((theirs.source, theirs.key_id), (None, None));
    assert!(theirs.values.is_empty());
    assert!(matches!(
        s.remove_credentials(&h.b, "gateway_stripe").await,
        Err(ServiceError::NotFound(_))
    ));
    assert!(
        s.resolve_credentials(h.a.tenant_scope().unwrap(), "gateway_stripe")
            .await
            .unwrap()
            .is_some()
    );
}

async fn features_are_required(h: Harness) {
    let s = &h.services;
    let tenant = h.a.tenant_scope().unwrap().tenant_id.to_string();
    let viewer = common::token_for(s, &h.admin, &tenant, &["integrations.view"]).await;
    for r in [
        s.credentials_masked(&viewer, "gateway_stripe")
            .await
            .map(|_| ()),
        s.save_credentials(&viewer, "gateway_stripe", stripe("x"))
            .await
            .map(|_| ()),
        s.remove_credentials(&viewer, "gateway_stripe").await,
        s.credentials_masked(&h.admin, "gateway_stripe")
            .await
            .map(|_| ()),
    ] {
        assert!(matches!(r, Err(ServiceError::Forbidden(_))), "{r:?}");
    }
    // The refusals are in the audit trail.
    let audit = s.list_audit(&h.admin, None, None, 100).await.unwrap();
    assert!(
        audit
            .iter()
            .any(|r| r.action == "credentials.update" && r.outcome == "denied")
    );
}
