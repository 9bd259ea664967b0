//! The operation log: redaction before storage, queries, retention — on
//! SQLite and PostgreSQL.

mod common;

use common::{Harness, medusa, stripe};
use patchbay_core::LogLevel;
use patchbay_service::ServiceError;
use patchbay_service::logs::{Entry, LogQueryIn, SettingsInOut};
use serde_json::json;

on_both!(
    details_are_redacted_before_they_are_stored,
    queries_filter_paginate_and_refuse_bad_parameters,
    retention_is_per_tenant_and_errors_live_longer,
    concurrent_writers_share_commits_and_lose_nothing,
);

async fn details_are_redacted_before_they_are_stored(h: Harness) {
    let s = &h.services;
    let scope = h.a.tenant_scope().unwrap().clone();
    s.save_credentials(&h.a, "gateway_stripe", stripe("sk_live_CANARY42"))
        .await
        .unwrap();
    s.save_credentials(&h.a, "sync_medusa", medusa("MEDUSA-CANARY"))
        .await
        .unwrap();
    let log = s
        .logger(&scope, "gateway_stripe", Some("req_1".into()))
        .await
        .unwrap();
    log.error(
        "webhook.failed",
        "Stripe refused key sk_live_CANARY42",
        Some(json!({
            "secretKey": "anything",
            "Authorization": "Bearer abc",
            "nested": { "api_key": "k", "echo": "the key was sk_live_CANARY42!", "list": ["sk_live_CANARY42", 3] },
            "paymentId": "pay_1",
        })),
    )
    .await
    .unwrap();
    // A bundle member's logger knows the bundle's secret keys and values.
    let member = s
        .logger(&scope, "sync_medusa_products", None)
        .await
        .unwrap();
    member
        .info(
            "sync.import",
            "ok",
            Some(json!({ "medusaApiKey": "x", "body": "MEDUSA-CANARY" })),
        )
        .await
        .unwrap();

    let page = s
        .query_logs(&h.a, None, LogQueryIn::default())
        .await
        .unwrap();
    let stored = serde_json::to_string(&page).unwrap();
    assert!(!stored.contains("CANARY"), "{stored}");
    assert!(!stored.contains("Bearer abc"), "{stored}");
    let entry = page
        .items
        .iter()
        .find(|e| e.operation == "webhook.failed")
        .unwrap();
    let d = entry.details.as_ref().unwrap();
    assert_eq!(d["secretKey"], "[REDACTED]");
    assert_eq!(d["Authorization"], "[REDACTED]");
    assert_eq!(d["nested"]["api_key"], "[REDACTED]");
    assert_eq!(d["nested"]["echo"], "the key was [REDACTED]!");
    assert_eq!(d["paymentId"], "pay_1", "ordinary data stays");
    assert_eq!(entry.message, "Stripe refused key [REDACTED]");
    assert_eq!(entry.correlation_id.as_deref(), Some("req_1"));
    assert_eq!(entry.level, LogLevel::Error);
}

async fn queries_filter_paginate_and_refuse_bad_parameters(h: Harness) {
    let s = &h.services;
    let scope = h.a.tenant_scope().unwrap().clone();
    let log = s
        .logger(&scope, "sync_files", Some("run_7".into()))
        .await
        .unwrap();
    let entries = (0..120).map(|n| {
        let level = if n % 4 == 0 {
            LogLevel::Error
        } else {
            LogLevel::Info
        };
        (
            level,
            Entry {
                operation: if n % 2 == 0 {
                    "sync.import.batch".into()
                } else {
                    "sync.import.item_failed".into()
                },
                message: format!("entry {n}"),
                entity_type: Some("catalog.product".into()),
                entity_id: Some(format!("p{n}")),
                duration_ms: Some(n),
                ..Entry::default()
            },
        )
    });
    log.log_many(entries).await.unwrap();
    let q = |f: fn(&mut LogQueryIn)| {
        let mut q = LogQueryIn::default();
        f(&mut q);
        q
    };
    let errors = s
        .query_logs(
            &h.a,
            Some("sync_files"),
            q(|q| q.level = Some("error".into())),
        )
        .await
        .unwrap();
    assert_eq!(errors.total, 30);
    assert_eq!(
        s.query_logs(
            &h.a,
            None,
            q(|q| q.operation = Some("sync.import.batch".into()))
        )
        .await
        .unwrap()
        .total,
        60
    );
    assert_eq!(
        s.query_logs(&h.a, None, q(|q| q.correlation_id = Some("run_7".into())))
            .await
            .unwrap()
            .total,
        120
    );
    assert_eq!(
        s.query_logs(&h.a, None, q(|q| q.entity_id = Some("p7".into())))
            .await
            .unwrap()
            .items[0]
            .message,
        "entry 7"
    );
    // Newest first, through every page.
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = s
            .query_logs(
                &h.a,
                Some("sync_files"),
                LogQueryIn {
                    limit: Some(50),
                    cursor: cursor.clone(),
                    ..LogQueryIn::default()
                },
            )
            .await
            .unwrap();
        seen.extend(page.items.iter().map(|e| e.duration_ms.unwrap()));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen, (0..120).rev().collect::<Vec<_>>());
    let none = s
        .query_logs(
            &h.a,
            None,
            q(|q| q.since = Some("2030-01-01T00:00:00Z".into())),
        )
        .await
        .unwrap();
    assert_eq!(none.total, 0);
    let bad = s
        .query_logs(
            &h.a,
            None,
            LogQueryIn {
                level: Some("loud".into()),
                since: Some("yesterday".into()),
                limit: Some(0),
                cursor: Some("abc".into()),
                ..LogQueryIn::default()
            },
        )
        .await
        .unwrap_err();
    let ServiceError::Invalid { errors, .. } = bad else {
        panic!("{bad:?}")
    };
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, ["level", "since", "cursor", "limit"]);
    assert!(matches!(
        s.query_logs(&h.a, Some("nope"), LogQueryIn::default())
            .await,
        Err(ServiceError::NotFound(_))
    ));
    // Another tenant sees none of them.
    assert_eq!(
        s.query_logs(&h.b, None, LogQueryIn::default())
            .await
            .unwrap()
            .total,
        0
    );
}

async fn retention_is_per_tenant_and_errors_live_longer(h: Harness) {
    let s = &h.services;
    assert_eq!(s.get_settings(&h.a).await.unwrap().log_retention_days, 30);
    let bad = s
        .put_settings(
            &h.a,
            SettingsInOut {
                log_retention_days: 0,
                error_log_retention_days: 5000,
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(bad, ServiceError::Invalid { ref errors, .. } if errors.len() == 2),
        "{bad:?}"
    );
    s.put_settings(
        &h.b,
        SettingsInOut {
            log_retention_days: 5,
            error_log_retention_days: 10,
        },
    )
    .await
    .unwrap();
    for caller in [&h.a, &h.b] {
        let log = s
            .logger(caller.tenant_scope().unwrap(), "sync_files", None)
            .await
            .unwrap();
        log.info("old", "info", None).await.unwrap();
        log.error("old", "error", None).await.unwrap();
    }
    // 20 days later: B's info (5 d) and errors (10 d) are gone; A keeps both (30/90 d).
    h.clock.advance_seconds(20 * 86_400);
    assert_eq!(s.prune_logs().await.unwrap(), 2);
    assert_eq!(
        s.query_logs(&h.a, None, LogQueryIn::default())
            .await
            .unwrap()
            .total,
        2
    );
    assert_eq!(
        s.query_logs(&h.b, None, LogQueryIn::default())
            .await
            .unwrap()
            .total,
        0
    );
    // 40 days on (60 in all): A's info is older than 30 days, its error younger than 90.
    h.clock.advance_seconds(40 * 86_400);
    assert_eq!(s.prune_logs().await.unwrap(), 1);
    let left = s
        .query_logs(&h.a, None, LogQueryIn::default())
        .await
        .unwrap();
    assert_eq!((left.total, left.items[0].level), (1, LogLevel::Error));
    h.clock.advance_seconds(31 * 86_400);
    assert_eq!(s.prune_logs().await.unwrap(), 1);
}

async fn concurrent_writers_share_commits_and_lose_nothing(h: Harness) {
    let s = h.services.clone();
    let scope = h.a.tenant_scope().unwrap().clone();
    let mut tasks = Vec::new();
    for t in 0..8 {
        let log = s
            .logger(&scope, "sync_files", Some(format!("w{t}")))
            .await
            .unwrap();
        tasks.push(tokio::spawn(async move {
            for n in 0..50 {
                log.info("x", &format!("{t}/{n}"), None).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(
        s.query_logs(&h.a, None, LogQueryIn::default())
            .await
            .unwrap()
            .total,
        400
    );
}
