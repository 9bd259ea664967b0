//! The MedusaJS bundle through the sync engine, against the labelled local
//! FAKE of Medusa's Admin API (`patchbay_testkit::medusa`: Medusa is a
//! hosted commerce backend that cannot run here; the fake follows its
//! documented wire format): products imported by the workers into the
//! records store, an incremental second run that picks up only what
//! changed, and order statuses exported back through `write`.

mod common;

use std::time::Duration;

use common::Live;
use patchbay_core::IntegrationStatus;
use patchbay_runtime::native::NativeOptions;
use patchbay_runtime::{HttpClient, HttpPolicy};
use patchbay_service::Caller;
use patchbay_service::integrations::{StateIn, VersionChoice};
use patchbay_service::sync::{ExportIn, ExportRecordIn, RecordsIn, StartSyncIn, SyncRunOut};
use patchbay_service::worker::{WorkerConfig, Workers};
use patchbay_store::SyncStatus;
use patchbay_testkit::medusa::FakeMedusa;
use serde_json::{Value, json};

async fn enable(h: &Live, caller: &Caller, id: &str, medusa: &FakeMedusa) {
    h.services
        .save_credentials(
            caller,
            id,
            common::map(json!({
                "medusaApiUrl": medusa.url(),
                "medusaApiKey": medusa.api_key(),
                "medusaWebhookSecret": "whsec_unused_here",
            })),
        )
        .await
        .unwrap();
    h.services
        .set_state(
            caller,
            id,
            StateIn {
                status: Some(IntegrationStatus::Enabled),
                api_version: VersionChoice::Unchanged,
            },
        )
        .await
        .unwrap();
}

async fn wait(h: &Live, caller: &Caller, id: i64) -> SyncRunOut {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let run = h.services.sync_run(caller, id).await.unwrap();
        if !run.status.is_active() {
            return run;
        }
        assert!(tokio::time::Instant::now() < deadline, "{run:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn import(h: &Live, caller: &Caller, id: &str, stream: &str) -> SyncRunOut {
    let run = h
        .services
        .start_sync(
            caller,
            id,
            StartSyncIn {
                stream: stream.into(),
            },
        )
        .await
        .unwrap();
    wait(h, caller, run.id).await
}

async fn changes(h: &Live, caller: &Caller, id: &str, stream: &str, after: i64) -> Vec<Value> {
    let page = h
        .services
        .sync_records(
            caller,
            id,
            RecordsIn {
                stream: Some(stream.into()),
                after: Some(after),
                limit: Some(1000),
            },
        )
        .await
        .unwrap();
    assert!(!page.has_more);
    page.items
        .into_iter()
        .map(|r| json!({ "id": r.external_id, "seq": r.seq, "change": r.change, "data": r.data }))
        .collect()
}

async fn medusa_products_and_order_statuses_sync_through_the_engine(h: Live) {
    let medusa = FakeMedusa::start("sk_test_medusa_key_123");
    for n in 0..320 {
        medusa.add_product(&format!("Product {n}"), 2);
        if n % 100 == 99 {
            medusa.advance(Duration::from_secs(1));
        }
    }
    // As `patchbay serve --connector-allow-private-network`: the fake is on loopback.
    h.services.set_native_network(
        &HttpClient::new(HttpPolicy {
            allow_private: true,
            ..HttpPolicy::default()
        }),
        &NativeOptions::default(),
    );
    enable(&h, &h.a, "sync_medusa_products", &medusa).await;
    let workers = Workers::start(
        h.services.clone(),
        WorkerConfig {
            poll: Duration::from_millis(20),
            schedules: false,
            ..WorkerConfig::default()
        },
    )
    .await
    .unwrap();

    let first = import(&h, &h.a, "sync_medusa_products", "products").await;
    assert_eq!(first.status, SyncStatus::Succeeded, "{first:?}");
    assert_eq!(first.counters.created, 320, "{first:?}");
    assert_eq!(first.total, Some(320), "{first:?}");
    let stored = changes(&h, &h.a, "sync_medusa_products", "products", 0).await;
    assert_eq!(stored.len(), 320);
    let last_seq = stored.last().unwrap()["seq"].as_i64().unwrap();
    assert!(
        stored[0]["data"]["title"]
            .as_str()
            .unwrap()
            .starts_with("Product ")
    );
    // The requests carried the documented auth header, and the key never
    // reached the run.
    assert!(medusa.requests().iter().all(|r| r.authorization.as_deref()
        == Some(patchbay_testkit::medusa::auth_header("sk_test_medusa_key_123").as_str())));
    assert!(!format!("{first:?}").contains("sk_test_medusa_key_123"));

    // Two products change and one is added: the next run reads only those.
    medusa.advance(Duration::from_secs(5));
    let changed = stored[10]["id"].as_str().unwrap().to_owned();
    medusa.update(&changed, json!({ "title": "Renamed" }));
    medusa.update(
        stored[200]["id"].as_str().unwrap(),
        json!({ "status": "draft" }),
    );
    let added = medusa.add_product("Brand new", 1);
    let second = import(&h, &h.a, "sync_medusa_products", "products").await;
    assert_eq!(second.status, SyncStatus::Succeeded, "{second:?}");
    assert_eq!(second.counters.created, 1, "{second:?}");
    assert_eq!(second.counters.updated, 2, "{second:?}");
    let delta = changes(&h, &h.a, "sync_medusa_products", "products", last_seq).await;
    let mut ids: Vec<&str> = delta.iter().map(|r| r["id"].as_str().unwrap()).collect();
    ids.sort_unstable();
    let mut expected = vec![
        changed.as_str(),
        stored[200]["id"].as_str().unwrap(),
        added.as_str(),
    ];
    expected.sort_unstable();
    assert_eq!(ids, expected);

    // Order statuses go back to Medusa through an export.
    let open = medusa.add_order("a@example.com", "pending");
    let other = medusa.add_order("b@example.com", "pending");
    enable(&h, &h.a, "sync_medusa_orders", &medusa).await;
    let export = h
        .services
        .start_export(
            &h.a,
            "sync_medusa_orders",
            ExportIn {
                stream: "order_status".into(),
                records: vec![
                    ExportRecordIn {
                        id: "host-order-1".into(),
                        data: json!({ "id": open, "status": "completed" }),
                    },
                    ExportRecordIn {
                        id: "host-order-2".into(),
                        data: json!({ "id": other, "status": "canceled" }),
                    },
                    ExportRecordIn {
                        id: "host-order-3".into(),
                        data: json!({ "id": "order_missing", "status": "completed" }),
                    },
                ],
            },
        )
        .await
        .unwrap();
    let done = wait(&h, &h.a, export.id).await;
    assert_eq!(done.status, SyncStatus::Succeeded, "{done:?}");
    assert_eq!(done.counters.processed, 3, "{done:?}");
    assert_eq!(done.counters.failed, 1, "{done:?}");
    assert_eq!(medusa.get(&open).unwrap()["status"], "completed");
    assert_eq!(medusa.get(&other).unwrap()["status"], "canceled");
    workers.shutdown(Duration::from_secs(5)).await;
}

live_on_both!(medusa_products_and_order_statuses_sync_through_the_engine);
