//! Data-sync runs through the workers: a JSON Lines import into the records
//! store and its delta pulls; an incremental second run; item failures
//! counted and logged while the rest imports; a run resumed from its cursor
//! after a transient failure, with nothing lost or duplicated; one active
//! run per stream; cancellation; tenant isolation.

mod common;

use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::Live;
use patchbay_core::IntegrationStatus;
use patchbay_runtime::{Batch, CallContext, Connector, ConnectorError, Health};
use patchbay_service::integrations::{StateIn, VersionChoice};
use patchbay_service::logs::LogQueryIn;
use patchbay_service::sync::{RecordsIn, StartSyncIn, SyncRunOut};
use patchbay_service::worker::{WorkerConfig, Workers};
use patchbay_service::{Caller, ServiceError};
use patchbay_store::SyncStatus;
use serde_json::{Value, json};

fn fast() -> WorkerConfig {
    WorkerConfig {
        worker_id: "sync-test".to_owned(),
        lease: Duration::from_secs(2),
        poll: Duration::from_millis(20),
        retry_base: Duration::from_millis(20),
        retry_cap: Duration::from_millis(100),
        schedules: false,
        ..WorkerConfig::default()
    }
}

/// Writes `lines` to a fresh JSON Lines file in `dir`.
fn jsonl(dir: &std::path::Path, name: &str, lines: &[String]) -> std::path::PathBuf {
    let path = dir.join(name);
    let mut f = std::fs::File::create(&path).unwrap();
    for l in lines {
        writeln!(f, "{l}").unwrap();
    }
    path
}

fn product(n: usize) -> String {
    json!({ "id": format!("p{n}"), "title": format!("Product {n}"), "price": 100 + n }).to_string()
}

async fn enable_files(h: &Live, caller: &Caller, path: &std::path::Path) {
    h.services
        .save_credentials(
            caller,
            "sync_files",
            common::map(
                json!({ "path": path.to_str().unwrap(), "format": "jsonl", "idField": "id" }),
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

/// Starts an import of `sync_files/records` and waits for it to finish.
async fn run_to_end(h: &Live, caller: &Caller) -> SyncRunOut {
    let run = h
        .services
        .start_sync(
            caller,
            "sync_files",
            StartSyncIn {
                stream: "records".into(),
            },
        )
        .await
        .unwrap();
    wait_finished(h, caller, run.id).await
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

/// Every change of the stream after `after`, paging through.
async fn pull(h: &Live, caller: &Caller, mut after: i64) -> (Vec<Value>, i64) {
    let mut all = Vec::new();
    loop {
        let page = h
            .services
            .sync_records(
                caller,
                "sync_files",
                RecordsIn {
                    stream: Some("records".into()),
                    after: Some(after),
                    limit: Some(700),
                },
            )
            .await
            .unwrap();
        let seqs: Vec<i64> = page.items.iter().map(|r| r.seq).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "seq not increasing");
        assert!(seqs.first().is_none_or(|&s| s > after));
        all.extend(
            page.items
                .into_iter()
                .map(|r| json!({ "id": r.external_id, "change": r.change, "data": r.data })),
        );
        after = page.next_after;
        if !page.has_more {
            return (all, after);
        }
    }
}

async fn an_import_lands_in_the_records_store_and_the_next_run_is_incremental(h: Live) {
    let dir = tempfile::tempdir().unwrap();
    let mut lines: Vec<String> = (0..2500).map(product).collect();
    let path = jsonl(dir.path(), "products.jsonl", &lines);
    enable_files(&h, &h.a, &path).await;
    let workers = Workers::start(h.services.clone(), fast()).await.unwrap();

    let run = run_to_end(&h, &h.a).await;
    assert_eq!(run.status, SyncStatus::Succeeded, "{run:?}");
    assert_eq!(run.counters.created, 2500);
    assert_eq!(run.counters.processed, 2500);
    assert_eq!(run.counters.failed, 0);
    let (records, last) = pull(&h, &h.a, 0).await;
    assert_eq!(records.len(), 2500);
    assert_eq!(
        records[0],
        json!({ "id": "p0", "change": "created", "data": { "id": "p0", "title": "Product 0", "price": 100 } })
    );

    // Appended lines: the next run reads only those.
    lines.extend((2500..2510).map(product));
    let path = jsonl(dir.path(), "products.jsonl", &lines);
    assert!(path.exists());
    let second = run_to_end(&h, &h.a).await;
    assert_eq!(second.status, SyncStatus::Succeeded, "{second:?}");
    assert_eq!(second.counters.created, 10, "{second:?}");
    assert_eq!(second.cursor_start, run.cursor_end);
    let (delta, _) = pull(&h, &h.a, last).await;
    let ids: Vec<&str> = delta.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        (2500..2510).map(|n| format!("p{n}")).collect::<Vec<_>>()
    );

    // The completion events (written just after the run's status).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let events = loop {
        let events = h.services.list_events(&h.a, 0, 100).await.unwrap();
        let n = events
            .iter()
            .filter(|e| e.event_type == "data_sync.run.completed")
            .count();
        if n >= 2 || tokio::time::Instant::now() > deadline {
            break events;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let done: Vec<&Value> = events
        .iter()
        .filter(|e| e.event_type == "data_sync.run.completed")
        .map(|e| &e.payload)
        .collect();
    assert_eq!(done.len(), 2);
    assert_eq!(done[0]["counters"]["created"], 2500);
    assert_eq!(done[0]["status"], "succeeded");

    // Tenant B sees none of it.
    let err = h.services.sync_run(&h.b, run.id).await.unwrap_err();
    assert!(matches!(err, ServiceError::NotFound(_)), "{err:?}");
    workers.shutdown(Duration::from_secs(5)).await;
}

async fn item_failures_are_counted_and_logged_while_the_rest_imports(h: Live) {
    let dir = tempfile::tempdir().unwrap();
    // 1,000 lines: 10 not JSON, 5 with a price that is not a number, 985 good.
    let lines: Vec<String> = (0..1000)
        .map(|n| match n % 100 {
            7 => format!("{{not json {n}"),
            13 if n < 500 => {
                json!({ "id": format!("p{n}"), "title": "bad", "price": "n/a" }).to_string()
            }
            _ => product(n),
        })
        .collect();
    let path = jsonl(dir.path(), "mixed.jsonl", &lines);
    enable_files(&h, &h.a, &path).await;
    h.services
        .put_field_mapping(
            &h.a,
            "sync_files",
            "records",
            json!({
                "idPath": "id",
                "fields": [
                    { "source": "title", "target": "name", "cast": "string" },
                    { "source": "price", "target": "priceCents", "cast": "integer", "required": true }
                ]
            }),
        )
        .await
        .unwrap();
    let workers = Workers::start(h.services.clone(), fast()).await.unwrap();
    let run = run_to_end(&h, &h.a).await;
    assert_eq!(run.status, SyncStatus::Succeeded, "{run:?}");
    assert_eq!(run.counters.failed, 15, "{run:?}");
    assert_eq!(run.counters.created, 985, "{run:?}");
    assert_eq!(run.counters.processed, 1000, "{run:?}");
    let (records, _) = pull(&h, &h.a, 0).await;
    assert_eq!(records.len(), 985);
    assert_eq!(
        records[0]["data"],
        json!({ "name": "Product 0", "priceCents": 100 })
    );

    h.services.flush_logs().await.unwrap();
    let logs = h
        .services
        .query_logs(
            &h.a,
            Some("sync_files"),
            LogQueryIn {
                entity_type: Some("records".into()),
                limit: Some(200),
                ..LogQueryIn::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(logs.items.len(), 15, "{:?}", logs.items);
    let bad_price: Vec<&str> = logs
        .items
        .iter()
        .filter_map(|l| l.entity_id.as_deref())
        .collect();
    let mut expected: Vec<String> = (0..5).map(|k| format!("p{}", k * 100 + 13)).collect();
    expected.sort();
    let mut got: Vec<String> = bad_price.iter().map(|s| (*s).to_owned()).collect();
    got.sort();
    assert_eq!(got, expected);
    // No record content in the messages.
    assert!(logs.items.iter().all(|l| !l.message.contains("n/a")));
    workers.shutdown(Duration::from_secs(5)).await;
}

/// A stream of `total` numbered records in batches of 100; fails with a
/// transient error the first time it is asked for the batch at `fail_at`.
struct Flaky {
    total: usize,
    fail_at: usize,
    failures: AtomicUsize,
    reads: AtomicUsize,
}

#[async_trait::async_trait]
impl Connector for Flaky {
    async fn check(&self, _: &CallContext) -> Result<Health, ConnectorError> {
        Ok(Health {
            ok: true,
            message: "flaky".into(),
        })
    }

    async fn read(
        &self,
        _: &CallContext,
        _: &str,
        cursor: Option<&str>,
    ) -> Result<Batch, ConnectorError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        let start: usize = cursor.map_or(0, |c| c.parse().unwrap());
        if start == self.fail_at
            && self
                .failures
                .compare_exchange(0, 1, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        {
            return Err(ConnectorError::transient("the provider is restarting"));
        }
        let end = (start + 100).min(self.total);
        Ok(Batch {
            records: (start..end)
                .map(|n| json!({ "id": n, "v": n * 2 }))
                .collect(),
            next_cursor: (end > start).then(|| end.to_string()),
            ..Batch::default()
        })
    }
}

async fn a_run_resumes_from_its_cursor_after_a_transient_failure(h: Live) {
    let flaky = Arc::new(Flaky {
        total: 1000,
        fail_at: 500,
        failures: AtomicUsize::new(0),
        reads: AtomicUsize::new(0),
    });
    h.services
        .register_native("sync_files", None, flaky.clone());
    enable_files(&h, &h.a, std::path::Path::new("/unused")).await;
    let workers = Workers::start(h.services.clone(), fast()).await.unwrap();
    let run = run_to_end(&h, &h.a).await;
    assert_eq!(run.status, SyncStatus::Succeeded, "{run:?}");
    assert_eq!(flaky.failures.load(Ordering::SeqCst), 1);
    // Nothing lost, nothing duplicated: 1,000 created, exactly once each.
    assert_eq!(run.counters.created, 1000, "{run:?}");
    assert_eq!(run.counters.processed, 1000, "{run:?}");
    let (records, _) = pull(&h, &h.a, 0).await;
    let mut ids: Vec<i64> = records
        .iter()
        .map(|r| r["id"].as_str().unwrap().parse().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, (0..1000).collect::<Vec<i64>>());
    // Attempt 1 read 0..500 and failed at 500; attempt 2 resumed at 500
    // (not from 0): 5 + 1 + 5 + the final empty read.
    assert_eq!(flaky.reads.load(Ordering::SeqCst), 12);
    workers.shutdown(Duration::from_secs(5)).await;
}

async fn the_manifests_rate_limit_paces_the_reads(h: Live) {
    // sync_files with a rate limit of 20 calls a second and no burst.
    let sources: Vec<(String, String)> = patchbay_connectors::builtin_sources()
        .map(|m| {
            let text = if m.text.contains("id = \"sync_files\"") {
                format!(
                    "{}\n[integration.rate_limit]\nrequests_per_second = 20\nburst = 1\n",
                    m.text
                )
            } else {
                m.text.to_owned()
            };
            (m.path.to_owned(), text)
        })
        .collect();
    let registry = patchbay_core::Registry::load(
        sources
            .iter()
            .map(|(path, text)| patchbay_core::ManifestSource { path, text }),
    )
    .unwrap();
    assert_eq!(
        registry
            .integration("sync_files")
            .unwrap()
            .rate_limit
            .map(|l| l.requests_per_second),
        Some(20)
    );
    h.services.set_registry(registry);
    let flaky = Arc::new(Flaky {
        total: 1000,
        fail_at: usize::MAX,
        failures: AtomicUsize::new(0),
        reads: AtomicUsize::new(0),
    });
    h.services
        .register_native("sync_files", None, flaky.clone());
    enable_files(&h, &h.a, std::path::Path::new("/unused")).await;
    let workers = Workers::start(h.services.clone(), fast()).await.unwrap();
    let started = std::time::Instant::now();
    let run = run_to_end(&h, &h.a).await;
    let took = started.elapsed();
    assert_eq!(run.status, SyncStatus::Succeeded, "{run:?}");
    // 11 reads: the first at once, each next one 50 ms later at the soonest.
    assert_eq!(flaky.reads.load(Ordering::SeqCst), 11);
    assert!(
        took >= Duration::from_millis(480),
        "the reads were not paced: {took:?}"
    );
    workers.shutdown(Duration::from_secs(5)).await;
}

async fn one_run_per_stream_and_a_queued_run_cancels_at_once(h: Live) {
    let dir = tempfile::tempdir().unwrap();
    let path = jsonl(dir.path(), "p.jsonl", &[product(1)]);
    enable_files(&h, &h.a, &path).await;
    // No workers: the run stays queued.
    let first = h
        .services
        .start_sync(
            &h.a,
            "sync_files",
            StartSyncIn {
                stream: "records".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(first.status, SyncStatus::Queued);
    assert!(first.job_id.is_some());
    let err = h
        .services
        .start_sync(
            &h.a,
            "sync_files",
            StartSyncIn {
                stream: "records".into(),
            },
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("already queued or running"),
        "{err}"
    );
    // Another tenant's stream is its own.
    enable_files(&h, &h.b, &path).await;
    h.services
        .start_sync(
            &h.b,
            "sync_files",
            StartSyncIn {
                stream: "records".into(),
            },
        )
        .await
        .unwrap();
    let cancelled = h.services.cancel_sync_run(&h.a, first.id).await.unwrap();
    assert_eq!(cancelled.status, SyncStatus::Cancelled);
    // The stream is free again.
    h.services
        .start_sync(
            &h.a,
            "sync_files",
            StartSyncIn {
                stream: "records".into(),
            },
        )
        .await
        .unwrap();
    // An undeclared stream.
    let err = h
        .services
        .start_sync(
            &h.a,
            "sync_files",
            StartSyncIn {
                stream: "orders".into(),
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ServiceError::NotFound(_)), "{err:?}");
}

live_on_both!(
    an_import_lands_in_the_records_store_and_the_next_run_is_incremental,
    item_failures_are_counted_and_logged_while_the_rest_imports,
    a_run_resumes_from_its_cursor_after_a_transient_failure,
    the_manifests_rate_limit_paces_the_reads,
    one_run_per_stream_and_a_queued_run_cancels_at_once,
);
