//! An Airbyte-protocol source through the sync engine: the real
//! `airbyte-source-faker` from `PyPI` (installed into a virtualenv by
//! `cargo xtask test` and `.ci/run`) imported by the workers into the
//! records store; the run's count and ids equal what the source reports,
//! the source's log reaches the operation log, and a second run starts
//! from the saved state.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::Live;
use patchbay_core::IntegrationStatus;
use patchbay_runtime::native::{AirbytePrograms, AirbyteSource};
use patchbay_service::Caller;
use patchbay_service::integrations::{StateIn, VersionChoice};
use patchbay_service::logs::LogQueryIn;
use patchbay_service::sync::{RecordsIn, StartSyncIn, SyncRunOut};
use patchbay_service::worker::{WorkerConfig, Workers};
use patchbay_store::SyncStatus;
use serde_json::json;

async fn configure(h: &Live, caller: &Caller, faker: &str, count: u32) {
    h.services
        .save_credentials(
            caller,
            "sync_airbyte_source",
            common::map(json!({
                "command": faker,
                "config": json!({ "count": count, "seed": 7, "records_per_slice": 250 }).to_string(),
            })),
        )
        .await
        .unwrap();
}

async fn run_users(h: &Live, caller: &Caller) -> SyncRunOut {
    let run = h
        .services
        .start_sync(
            caller,
            "sync_airbyte_source",
            StartSyncIn {
                stream: "users".into(),
            },
        )
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    loop {
        let now = h.services.sync_run(caller, run.id).await.unwrap();
        if !now.status.is_active() {
            return now;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never finished: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The stream's external ids after change `after`, as numbers.
async fn ids_after(h: &Live, caller: &Caller, mut after: i64) -> Vec<u64> {
    let mut ids = Vec::new();
    loop {
        let page = h
            .services
            .sync_records(
                caller,
                "sync_airbyte_source",
                RecordsIn {
                    stream: Some("users".into()),
                    after: Some(after),
                    limit: Some(1000),
                },
            )
            .await
            .unwrap();
        ids.extend(
            page.items
                .iter()
                .map(|r| r.external_id.parse::<u64>().unwrap()),
        );
        after = page.next_after;
        if !page.has_more {
            return ids;
        }
    }
}

async fn a_faker_import_through_the_airbyte_protocol(h: Live) {
    let Some(faker) = patchbay_testkit::airbyte_faker() else {
        return;
    };
    let faker = faker.to_str().unwrap().to_owned();
    h.services.register_native(
        "sync_airbyte_source",
        None,
        Arc::new(AirbyteSource::allowing(AirbytePrograms::from_list(
            std::slice::from_ref(&faker),
        ))),
    );
    configure(&h, &h.a, &faker, 1500).await;
    h.services
        .set_state(
            &h.a,
            "sync_airbyte_source",
            StateIn {
                status: Some(IntegrationStatus::Enabled),
                api_version: VersionChoice::Unchanged,
            },
        )
        .await
        .unwrap();
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

    let first = run_users(&h, &h.a).await;
    assert_eq!(first.status, SyncStatus::Succeeded, "{first:?}");
    // The source's own estimate is the run's total; every id once.
    assert_eq!(first.total, Some(1500), "{first:?}");
    assert_eq!(first.counters.created, 1500, "{first:?}");
    assert_eq!(first.counters.failed, 0, "{first:?}");
    let mut ids = ids_after(&h, &h.a, 0).await;
    let last_seq = i64::try_from(ids.len()).unwrap();
    ids.sort_unstable();
    assert_eq!(ids, (1..=1500).collect::<Vec<u64>>());
    // The saved cursor is the source's state.
    let cursor: serde_json::Value =
        serde_json::from_str(first.cursor_end.as_deref().unwrap()).unwrap();
    assert!(cursor["state"].is_object(), "{cursor}");

    // The source's LOG messages are in the tenant's operation log.
    h.services.flush_logs().await.unwrap();
    let logs = h
        .services
        .query_logs(
            &h.a,
            Some("sync_airbyte_source"),
            LogQueryIn {
                limit: Some(200),
                ..LogQueryIn::default()
            },
        )
        .await
        .unwrap();
    assert!(
        logs.items
            .iter()
            .any(|l| l.message.contains("Read 1500 records from users stream")),
        "{:?}",
        logs.items.iter().map(|l| &l.message).collect::<Vec<_>>()
    );

    // A second run starts from the saved state: with 500 more users at the
    // source, those are the run's created records (faker 7 sends the
    // earlier users again, as updated: stored by id, never twice).
    configure(&h, &h.a, &faker, 2000).await;
    let second = run_users(&h, &h.a).await;
    assert_eq!(second.status, SyncStatus::Succeeded, "{second:?}");
    assert_eq!(second.cursor_start, first.cursor_end);
    assert_eq!(second.counters.created, 500, "{second:?}");
    let mut all = ids_after(&h, &h.a, 0).await;
    all.sort_unstable();
    assert_eq!(all, (1..=2000).collect::<Vec<u64>>());
    let new: Vec<u64> = ids_after(&h, &h.a, last_seq)
        .await
        .into_iter()
        .filter(|id| *id > 1500)
        .collect();
    assert_eq!(new.len(), 500);
    workers.shutdown(Duration::from_secs(5)).await;
}

live_on_both!(a_faker_import_through_the_airbyte_protocol);
