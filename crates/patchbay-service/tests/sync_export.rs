//! Exports through the workers: records the host hands over are written
//! through the connector's `write` in batches — into a real CSV file by
//! `sync_files`, with per-record refusals counted and logged by the host's
//! id, id mappings kept, and the completion event; a transient failure and
//! a rate limit mid-export resume without losing a record; cancellation;
//! the checks of the request; tenant isolation.

mod common;

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::Live;
use patchbay_core::IntegrationStatus;
use patchbay_runtime::{
    CallContext, Connector, ConnectorError, Health, WriteOutcome, WrittenRecord,
};
use patchbay_service::integrations::{StateIn, VersionChoice};
use patchbay_service::logs::LogQueryIn;
use patchbay_service::sync::{EXPORT_BATCH, ExportIn, ExportRecordIn, SyncRunOut};
use patchbay_service::worker::{WorkerConfig, Workers};
use patchbay_service::{Caller, ServiceError};
use patchbay_store::{SyncDirection, SyncStatus};
use serde_json::{Value, json};

fn fast() -> WorkerConfig {
    WorkerConfig {
        worker_id: "export-test".to_owned(),
        lease: Duration::from_secs(2),
        poll: Duration::from_millis(20),
        retry_base: Duration::from_millis(20),
        retry_cap: Duration::from_millis(100),
        schedules: false,
        ..WorkerConfig::default()
    }
}

async fn enable_files(h: &Live, caller: &Caller, path: &std::path::Path, format: &str) {
    h.services
        .save_credentials(
            caller,
            "sync_files",
            common::map(
                json!({ "path": path.to_str().unwrap(), "format": format, "idField": "sku" }),
            ),
        )
        .await
        .unwrap();
    h.services
        .set_state(
            caller,
            "sync_files",
            StateIn {
                status: Some(IntegrationStatus::Enabled),
                api_version: VersionChoice::Unchanged,
            },
        )
        .await
        .unwrap();
}

fn export(records: Vec<(String, Value)>) -> ExportIn {
    ExportIn {
        stream: "records".into(),
        records: records
            .into_iter()
            .map(|(id, data)| ExportRecordIn { id, data })
            .collect(),
    }
}

async fn wait_finished(h: &Live, caller: &Caller, id: i64) -> SyncRunOut {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let run = h.services.sync_run(caller, id).await.unwrap();
        if !run.status.is_active() {
            return run;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "run {id} never finished: {run:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn an_export_writes_through_the_connector_in_batches(h: Live) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.csv");
    enable_files(&h, &h.a, &path, "csv").await;
    // 1,200 records; every 100th has a field the file has no column for.
    let records: Vec<(String, Value)> = (0..1200)
        .map(|n| {
            let data = if n % 100 == 50 {
                json!({ "sku": format!("S{n}"), "title": format!("Item {n}"), "colour": "red" })
            } else {
                json!({ "sku": format!("S{n}"), "title": format!("Item {n}") })
            };
            (format!("host-{n}"), data)
        })
        .collect();
    let queued = h
        .services
        .start_export(&h.a, "sync_files", export(records))
        .await
        .unwrap();
    assert_eq!(queued.direction, SyncDirection::Export);
    assert_eq!(queued.status, SyncStatus::Queued);
    assert_eq!(queued.total, Some(1200));
    // Tenant B sees nothing of it.
    let err = h.services.sync_run(&h.b, queued.id).await.unwrap_err();
    assert!(matches!(err, ServiceError::NotFound(_)), "{err:?}");

    let workers = Workers::start(h.services.clone(), fast()).await.unwrap();
    let run = wait_finished(&h, &h.a, queued.id).await;
    assert_eq!(run.status, SyncStatus::Succeeded, "{run:?}");
    assert_eq!(run.counters.processed, 1200, "{run:?}");
    assert_eq!(run.counters.failed, 12, "{run:?}");
    // A file append reports no created/updated: counted as updated.
    assert_eq!(run.counters.updated, 1188, "{run:?}");
    assert_eq!(run.cursor_end.as_deref(), Some("1200"));

    // The file holds the header and the 1,188 written rows, in order.
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1189);
    assert_eq!(lines[0], "sku,title");
    assert_eq!(lines[1], "S0,Item 0");
    assert!(!text.contains("S50,"), "a refused record was written");
    assert_eq!(lines[1188], "S1199,Item 1199");

    // Id mappings: the host's id ↔ the record's id in the file.
    let scope =
        h.a.scope_with(patchbay_service::Feature::IntegrationsView)
            .unwrap()
            .clone();
    let mappings = h
        .store
        .get_id_mappings(
            &scope,
            "sync_files",
            "records",
            &["S0".to_owned(), "S50".to_owned(), "S1199".to_owned()],
        )
        .await
        .unwrap();
    let pairs: Vec<(&str, &str)> = mappings
        .iter()
        .map(|m| (m.external_id.as_str(), m.local_id.as_str()))
        .collect();
    assert_eq!(pairs, vec![("S0", "host-0"), ("S1199", "host-1199")]);

    // Each refusal is logged with the host's id, without the record.
    h.services.flush_logs().await.unwrap();
    let logs = h
        .services
        .query_logs(
            &h.a,
            Some("sync_files"),
            LogQueryIn {
                entity_type: Some("records".into()),
                limit: Some(100),
                ..LogQueryIn::default()
            },
        )
        .await
        .unwrap();
    let mut ids: Vec<&str> = logs
        .items
        .iter()
        .filter_map(|l| l.entity_id.as_deref())
        .collect();
    ids.sort_unstable();
    let mut expected: Vec<String> = (0..12).map(|k| format!("host-{}", k * 100 + 50)).collect();
    expected.sort();
    assert_eq!(ids, expected);
    assert!(logs.items.iter().all(|l| !l.message.contains("Item")));

    // The completion event says it was an export.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let done = loop {
        let events = h.services.list_events(&h.a, 0, 100).await.unwrap();
        if let Some(e) = events
            .iter()
            .find(|e| e.event_type == "data_sync.run.completed")
        {
            break e.payload.clone();
        }
        assert!(tokio::time::Instant::now() < deadline, "no event");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(done["direction"], "export");
    assert_eq!(done["counters"]["failed"], 12);
    // Nothing is left waiting.
    assert!(
        h.store
            .pending_exports(&scope, run.id, 1000)
            .await
            .unwrap()
            .is_empty()
    );
    workers.shutdown(Duration::from_secs(5)).await;
}

/// A destination that keeps what it is given: rate limited on its first
/// call, failing transiently on its third; it creates records it has not
/// seen and updates the others, reporting `ext-<sku>` ids.
#[derive(Default)]
struct Destination {
    calls: AtomicUsize,
    seen: Mutex<Vec<String>>,
    slow: bool,
}

#[async_trait::async_trait]
impl Connector for Destination {
    async fn check(&self, _: &CallContext) -> Result<Health, ConnectorError> {
        Ok(Health {
            ok: true,
            message: "destination".into(),
        })
    }

    async fn write(
        &self,
        _: &CallContext,
        _: &str,
        records: Vec<Value>,
    ) -> Result<WriteOutcome, ConnectorError> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        if self.slow {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        if call == 0 && !self.slow {
            return Err(ConnectorError::RateLimited {
                message: "slow down".into(),
                retry_after_ms: Some(50),
            });
        }
        if call == 2 && !self.slow {
            return Err(ConnectorError::transient("the provider is restarting"));
        }
        let mut seen = self.seen.lock().unwrap();
        let mut out = WriteOutcome::default();
        for (index, r) in records.iter().enumerate() {
            let sku = r["sku"].as_str().unwrap().to_owned();
            let created = !seen.contains(&sku);
            seen.push(sku.clone());
            out.written += 1;
            out.results.push(WrittenRecord {
                index,
                external_id: Some(format!("ext-{sku}")),
                created: Some(created),
            });
        }
        Ok(out)
    }
}

async fn an_export_resumes_after_a_rate_limit_and_a_transient_failure(h: Live) {
    let dest = Arc::new(Destination::default());
    h.services.register_native("sync_files", None, dest.clone());
    enable_files(&h, &h.a, std::path::Path::new("/unused"), "jsonl").await;
    let n = EXPORT_BATCH as usize * 3;
    let records: Vec<(String, Value)> = (0..n)
        .map(|i| (format!("h{i}"), json!({ "sku": format!("S{i}") })))
        .collect();
    let queued = h
        .services
        .start_export(&h.a, "sync_files", export(records))
        .await
        .unwrap();
    let workers = Workers::start(h.services.clone(), fast()).await.unwrap();
    let run = wait_finished(&h, &h.a, queued.id).await;
    assert_eq!(run.status, SyncStatus::Succeeded, "{run:?}");
    // Call 1 rate limited, 2 wrote batch 1, 3 failed (batch 2, retried by
    // the job), 4 and 5 wrote batches 2 and 3: nothing lost, nothing twice.
    assert_eq!(dest.calls.load(Ordering::SeqCst), 5);
    let seen = dest.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), n);
    assert_eq!(
        seen.iter().collect::<std::collections::HashSet<_>>().len(),
        n
    );
    assert_eq!(run.counters.processed, i64::try_from(n).unwrap());
    assert_eq!(run.counters.created, i64::try_from(n).unwrap());
    assert_eq!(run.counters.updated, 0);
    let scope =
        h.a.scope_with(patchbay_service::Feature::IntegrationsView)
            .unwrap()
            .clone();
    let m = h
        .store
        .get_id_mappings(&scope, "sync_files", "records", &["ext-S7".to_owned()])
        .await
        .unwrap();
    assert_eq!(m[0].local_id, "h7");
    workers.shutdown(Duration::from_secs(5)).await;
}

async fn an_export_can_be_cancelled_and_its_records_are_dropped(h: Live) {
    let dest = Arc::new(Destination {
        slow: true,
        ..Destination::default()
    });
    h.services.register_native("sync_files", None, dest.clone());
    enable_files(&h, &h.a, std::path::Path::new("/unused"), "jsonl").await;
    let records: Vec<(String, Value)> = (0..EXPORT_BATCH as usize * 4)
        .map(|i| (format!("h{i}"), json!({ "sku": format!("S{i}") })))
        .collect();
    let queued = h
        .services
        .start_export(&h.a, "sync_files", export(records))
        .await
        .unwrap();
    // A second run of the stream is refused while this one is active.
    let err = h
        .services
        .start_export(
            &h.a,
            "sync_files",
            export(vec![("x".into(), json!({ "sku": "x" }))]),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ServiceError::Conflict { code, .. } if *code == "sync_run_active"),
        "{err:?}"
    );
    let workers = Workers::start(h.services.clone(), fast()).await.unwrap();
    while dest.calls.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    h.services.cancel_sync_run(&h.a, queued.id).await.unwrap();
    let run = wait_finished(&h, &h.a, queued.id).await;
    assert_eq!(run.status, SyncStatus::Cancelled, "{run:?}");
    assert!(
        run.counters.processed < i64::from(EXPORT_BATCH) * 4,
        "{run:?}"
    );
    let scope =
        h.a.scope_with(patchbay_service::Feature::IntegrationsView)
            .unwrap()
            .clone();
    assert!(
        h.store
            .pending_exports(&scope, run.id, 1000)
            .await
            .unwrap()
            .is_empty()
    );
    workers.shutdown(Duration::from_secs(5)).await;
}

async fn a_bad_export_is_refused_whole(h: Live) {
    let dir = tempfile::tempdir().unwrap();
    enable_files(&h, &h.a, &dir.path().join("x.jsonl"), "jsonl").await;
    let invalid = |e: ServiceError| match e {
        ServiceError::Invalid { errors, .. } => errors
            .iter()
            .map(|f| (f.field.clone(), f.code.to_string()))
            .collect::<Vec<_>>(),
        other => panic!("not invalid: {other:?}"),
    };
    let err = h
        .services
        .start_export(&h.a, "sync_files", export(vec![]))
        .await
        .unwrap_err();
    assert_eq!(
        invalid(err),
        vec![("records".into(), "out_of_range".into())]
    );
    let err = h
        .services
        .start_export(
            &h.a,
            "sync_files",
            export(vec![("a".into(), json!({})), ("a".into(), json!({}))]),
        )
        .await
        .unwrap_err();
    assert_eq!(
        invalid(err),
        vec![("records/1/id".into(), "duplicate_id".into())]
    );
    let err = h
        .services
        .start_export(&h.a, "sync_files", export(vec![("a".into(), json!([1]))]))
        .await
        .unwrap_err();
    assert_eq!(
        invalid(err),
        vec![("records/0/data".into(), "expected_object".into())]
    );
    // An import-only integration cannot export.
    let err = h
        .services
        .start_export(
            &h.a,
            "sync_medusa_products",
            ExportIn {
                stream: "products".into(),
                records: vec![ExportRecordIn {
                    id: "a".into(),
                    data: json!({}),
                }],
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ServiceError::Conflict { code, .. } if *code == "sync_export_unsupported"),
        "{err:?}"
    );
    // Not enabled for tenant B.
    let err = h
        .services
        .start_export(&h.b, "sync_files", export(vec![("a".into(), json!({}))]))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ServiceError::Conflict { code, .. } if *code == "integration_not_enabled"),
        "{err:?}"
    );
    // Nothing was queued.
    let runs = h
        .services
        .list_sync_runs(&h.a, patchbay_service::sync::SyncRunsIn::default())
        .await
        .unwrap();
    assert!(runs.items.is_empty());
}

live_on_both!(
    an_export_writes_through_the_connector_in_batches,
    an_export_resumes_after_a_rate_limit_and_a_transient_failure,
    an_export_can_be_cancelled_and_its_records_are_dropped,
    a_bad_export_is_refused_whole,
);
