//! WebAssembly connectors loaded from a connectors folder, called through
//! the services: each tenant's call carries only that tenant's credentials,
//! the connector's log lines reach the operation log redacted, a stream is
//! read batch by batch, the health check runs the component's `check`, and
//! an export is written through the component's `write` by the workers.

mod common;

use std::time::Duration;

use common::Harness;
use patchbay_core::{IntegrationStatus, ManifestSource, Registry};
use patchbay_service::components::{self, OperatorLimits};
use patchbay_service::integrations::{StateIn, VersionChoice};
use patchbay_service::logs::LogQueryIn;
use patchbay_service::streams::ReadIn;
use patchbay_service::{Caller, ServiceError};
use serde_json::{Value, json};

/// The harness's services with `wasm_echo` added from a connectors folder.
fn with_echo(h: &Harness) -> tempfile::TempDir {
    echo_on(&h.services)
}

/// `services` with `wasm_echo` added from a connectors folder.
fn echo_on(services: &patchbay_service::Services) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    patchbay_testkit::wasm::echo_connector_dir(dir.path(), "deadline_secs = 120\n");

    let local = components::read_connector_dirs(&[dir.path().to_owned()]).unwrap();
    assert_eq!(local.len(), 1);
    let paths: Vec<String> = local
        .iter()
        .map(components::LocalManifest::display_path)
        .collect();
    let registry = Registry::load(
        patchbay_connectors::builtin_sources()
            .map(|b| ManifestSource {
                path: b.path,
                text: b.text,
            })
            .chain(local.iter().zip(&paths).map(|(m, path)| ManifestSource {
                path,
                text: &m.text,
            })),
    )
    .unwrap();
    let wasm_loader = patchbay_wasm::WasmLoader {
        host: patchbay_wasm::WasmHost::new(&patchbay_wasm::HostConfig::default()).unwrap(),
        http: patchbay_runtime::HttpClient::new(patchbay_runtime::HttpPolicy::default()),
    };
    let limits = OperatorLimits {
        max_deadline: Duration::from_millis(300),
        ..OperatorLimits::default()
    };
    let loaded = components::load_components(&registry, &local, &wasm_loader, limits).unwrap();
    assert_eq!(loaded.len(), 1);
    // The manifest asks 120 s; the operator allows 300 ms.
    assert!(loaded[0].0.clamped);
    assert_eq!(loaded[0].0.deadline, Duration::from_millis(300));
    services.set_registry(registry);
    services.register_components(loaded);
    dir
}

async fn enable(h: &Harness, caller: &Caller, token: &str) {
    enable_on(&h.services, caller, token).await;
}

async fn enable_on(services: &patchbay_service::Services, caller: &Caller, token: &str) {
    services
        .save_credentials(caller, "wasm_echo", common::map(json!({ "token": token })))
        .await
        .unwrap();
    services
        .set_state(
            caller,
            "wasm_echo",
            StateIn {
                status: Some(IntegrationStatus::Enabled),
                api_version: VersionChoice::Unchanged,
            },
        )
        .await
        .unwrap();
}

async fn a_tenant_connector_sees_only_its_tenants_credentials(h: Harness) {
    let _dir = with_echo(&h);
    enable(&h, &h.a, "token-of-acme").await;
    enable(&h, &h.b, "token-of-globex").await;
    let (a, b) = tokio::join!(
        h.services
            .invoke_action(&h.a, "wasm_echo", "credentials", json!({})),
        h.services
            .invoke_action(&h.b, "wasm_echo", "credentials", json!({})),
    );
    assert_eq!(a.unwrap().output, json!({ "token": "token-of-acme" }));
    assert_eq!(b.unwrap().output, json!({ "token": "token-of-globex" }));
    let echoed = h
        .services
        .invoke_action(&h.a, "wasm_echo", "echo", json!({ "x": [1, 2] }))
        .await
        .unwrap();
    assert_eq!(echoed.output, json!({ "x": [1, 2] }));
}

async fn connector_log_lines_are_redacted_in_the_operation_log(h: Harness) {
    let _dir = with_echo(&h);
    enable(&h, &h.a, "tok-very-secret-123").await;
    let out = h
        .services
        .invoke_action(
            &h.a,
            "wasm_echo",
            "log",
            json!({ "note": "calling with tok-very-secret-123" }),
        )
        .await
        .unwrap();
    h.services.flush_logs().await.unwrap();
    let logs = h
        .services
        .query_logs(
            &h.a,
            Some("wasm_echo"),
            LogQueryIn {
                correlation_id: Some(out.correlation_id.clone()),
                ..LogQueryIn::default()
            },
        )
        .await
        .unwrap();
    let line = logs
        .items
        .iter()
        .find(|l| l.operation == "action.log.connector")
        .unwrap_or_else(|| panic!("no connector line in {:?}", logs.items));
    assert!(line.message.contains("[REDACTED]"), "{}", line.message);
    assert!(
        !line.message.contains("tok-very-secret-123"),
        "{}",
        line.message
    );
    assert_eq!(line.level, patchbay_core::LogLevel::Warning);
    // Tenant B sees none of it.
    let theirs = h
        .services
        .query_logs(&h.b, Some("wasm_echo"), LogQueryIn::default())
        .await
        .unwrap();
    assert!(theirs.items.is_empty());
}

async fn a_stream_is_read_batch_by_batch(h: Harness) {
    let _dir = with_echo(&h);
    enable(&h, &h.a, "t").await;
    let mut cursor = None;
    let mut records: Vec<Value> = Vec::new();
    for _ in 0..10 {
        let batch = h
            .services
            .read_stream(&h.a, "wasm_echo", "numbers", ReadIn { cursor })
            .await
            .unwrap();
        records.extend(batch.records);
        cursor = batch.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    let numbers: Vec<u64> = records.iter().map(|r| r["n"].as_u64().unwrap()).collect();
    assert_eq!(numbers, [0, 1, 2, 3, 4]);
    // An undeclared stream, and another tenant that has not enabled it.
    let err = h
        .services
        .read_stream(&h.a, "wasm_echo", "letters", ReadIn::default())
        .await
        .unwrap_err();
    assert!(matches!(err, ServiceError::NotFound(_)), "{err:?}");
    let err = h
        .services
        .read_stream(&h.b, "wasm_echo", "numbers", ReadIn::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not enabled"), "{err}");
}

async fn the_operators_deadline_stops_a_spinning_connector(h: Harness) {
    let _dir = with_echo(&h);
    enable(&h, &h.a, "t").await;
    let started = std::time::Instant::now();
    let err = h
        .services
        .invoke_action(&h.a, "wasm_echo", "spin", json!({}))
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert!(err.to_string().contains("deadline of 300 ms"), "{err}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    // The health check runs the component's `check` and logs its line.
    let scope = match &h.a.access {
        patchbay_service::Access::Tenant(s) => s.clone(),
        patchbay_service::Access::Platform => unreachable!(),
    };
    let result = h
        .services
        .run_health_check(&scope, "wasm_echo")
        .await
        .unwrap();
    let provider = result.checks.iter().find(|c| c.name == "provider").unwrap();
    assert_eq!(provider.message, "echo connector ready for wasm_echo");
    h.services.flush_logs().await.unwrap();
    let logs = h
        .services
        .query_logs(
            &h.a,
            Some("wasm_echo"),
            LogQueryIn {
                operation: Some("health.check.connector".into()),
                ..LogQueryIn::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(logs.items.len(), 1);
    assert_eq!(logs.items[0].message, "checking wasm_echo");
}

on_both!(
    a_tenant_connector_sees_only_its_tenants_credentials,
    connector_log_lines_are_redacted_in_the_operation_log,
    a_stream_is_read_batch_by_batch,
    the_operators_deadline_stops_a_spinning_connector,
);

async fn an_export_is_written_by_a_webassembly_connector(h: common::Live) {
    let _dir = echo_on(&h.services);
    enable_on(&h.services, &h.a, "tok").await;
    // 700 records; every 100th has no `n`, which the component refuses.
    let records = (0..700)
        .map(|i| patchbay_service::sync::ExportRecordIn {
            id: format!("h{i}"),
            data: if i % 100 == 0 {
                json!({ "m": i })
            } else {
                json!({ "n": i })
            },
        })
        .collect();
    let run = h
        .services
        .start_export(
            &h.a,
            "wasm_echo",
            patchbay_service::sync::ExportIn {
                stream: "numbers".into(),
                records,
            },
        )
        .await
        .unwrap();
    let workers = patchbay_service::worker::Workers::start(
        h.services.clone(),
        patchbay_service::worker::WorkerConfig {
            poll: Duration::from_millis(20),
            schedules: false,
            ..patchbay_service::worker::WorkerConfig::default()
        },
    )
    .await
    .unwrap();
    let done = loop {
        let now = h.services.sync_run(&h.a, run.id).await.unwrap();
        if !now.status.is_active() {
            break now;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        done.status,
        patchbay_store::SyncStatus::Succeeded,
        "{done:?}"
    );
    assert_eq!(done.counters.processed, 700, "{done:?}");
    assert_eq!(done.counters.failed, 7, "{done:?}");
    assert_eq!(done.counters.updated, 693, "{done:?}");
    workers.shutdown(Duration::from_secs(5)).await;
}

live_on_both!(an_export_is_written_by_a_webassembly_connector);
