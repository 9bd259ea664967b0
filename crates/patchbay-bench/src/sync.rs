//! Data sync: an end-to-end import of a JSON Lines file of 1,000,000
//! records of about 200 bytes through the engine (the `sync_files`
//! connector's batches of 1,000, hashing, the records store, id mappings,
//! counters and cursor committed per batch by the workers) into SQLite
//! (`sync`, target ≥ 150,000 records/s) and into PostgreSQL (`sync_pg`,
//! target ≥ 80,000 records/s), with the process's resident memory sampled
//! during the run (target: under 150 MiB whatever the source size).
//!
//! Baseline, in the same run on the same database: the store's batch commit
//! alone — the same rows, already serialized and hashed, committed 1,000 at
//! a time with no connector, mapping or worker in between (target: the
//! engine keeps at least 50 % of it).

use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use patchbay_core::{IntegrationStatus, Scope, Timestamp};
use patchbay_service::integrations::{StateIn, VersionChoice};
use patchbay_service::sync::StartSyncIn;
use patchbay_service::tenants::{TenantIn, TokenIn};
use patchbay_service::worker::{WorkerConfig, Workers};
use patchbay_service::{Caller, KeyManager, KeySource, Services, SystemClock};
use patchbay_store::{DatabaseConfig, IncomingRecord, NewSyncRun, Store, SyncBatch, SyncDirection};
use patchbay_vault::ExposeSecret as _;
use serde_json::json;

use crate::{Baseline, Figure};

/// Records imported per run.
const RECORDS: usize = 1_000_000;
/// Records per batch of the baseline (the file connector's batch size).
const BATCH: usize = patchbay_runtime::native::FILE_BATCH;

fn record(n: usize) -> String {
    json!({
        "id": format!("p{n:07}"),
        "sku": format!("SKU-{n:07}"),
        "title": format!("Product {n} of the benchmark catalog"),
        "price": 1000 + n % 9000,
        "currency": "EUR",
        "stock": n % 97,
        "updatedAt": "2026-11-01T00:00:00Z",
    })
    .to_string()
}

/// The source file: `RECORDS` JSON lines.
fn source(dir: &std::path::Path) -> anyhow::Result<(std::path::PathBuf, u64)> {
    let path = dir.join("products.jsonl");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path)?);
    for n in 0..RECORDS {
        writeln!(out, "{}", record(n))?;
    }
    out.flush()?;
    let bytes = std::fs::metadata(&path)?.len();
    Ok((path, bytes))
}

fn rss_bytes() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse::<usize>().ok())
        })
        .unwrap_or(0)
        * 1024
}

/// A tenant caller on `services`.
async fn tenant(services: &Services) -> anyhow::Result<Caller> {
    let bootstrap = services
        .bootstrap_admin_token()
        .await?
        .ok_or_else(|| anyhow::anyhow!("no bootstrap token"))?;
    let admin = services.authenticate(bootstrap.expose_secret()).await?;
    let t = services
        .create_tenant(
            &admin,
            TenantIn {
                slug: "bench".into(),
                name: "Bench".into(),
            },
        )
        .await?;
    let created = services
        .create_token(
            &admin,
            TokenIn {
                name: "bench".into(),
                tenant_id: Some(t.id),
                organization_id: None,
                features: [
                    "integrations.view",
                    "integrations.manage",
                    "integrations.credentials",
                ]
                .map(str::to_owned)
                .to_vec(),
                expires_at: None,
            },
        )
        .await?;
    Ok(services.authenticate(created.token.expose_secret()).await?)
}

#[allow(clippy::cast_precision_loss)]
fn per_second(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

/// The store alone: the same rows, prepared, committed in batches.
async fn store_alone(store: &dyn Store, scope: &Scope) -> anyhow::Result<Duration> {
    let now = Timestamp::now();
    let run = store
        .create_sync_run(
            NewSyncRun {
                scope: scope.clone(),
                integration_id: "bench_raw".into(),
                stream: "records".into(),
                direction: SyncDirection::Import,
            },
            now,
        )
        .await?;
    store
        .start_sync_run(scope, run.id, now)
        .await?
        .context("the baseline run did not start")?;
    // Each batch is prepared just before its commit, and only the commits
    // are timed: the baseline holds one batch in memory, like the engine.
    let mut took = Duration::ZERO;
    let mut cursor: Option<String> = None;
    for b in 0..RECORDS / BATCH {
        let records: Vec<IncomingRecord> = (b * BATCH..(b + 1) * BATCH)
            .map(|n| IncomingRecord {
                external_id: format!("p{n:07}"),
                hash: format!("{n:032x}"),
                data: record(n),
                deleted: false,
            })
            .collect();
        let next = Some(((b + 1) * BATCH).to_string());
        let started = Instant::now();
        store
            .commit_sync_batch(SyncBatch {
                scope: scope.clone(),
                run_id: run.id,
                integration_id: "bench_raw".into(),
                stream: "records".into(),
                entity_type: "records".into(),
                from_cursor: cursor.take(),
                next_cursor: next.clone(),
                records,
                failed: 0,
                skipped: 0,
                total: None,
                now: Timestamp::now(),
            })
            .await?;
        took += started.elapsed();
        cursor = next;
    }
    Ok(took)
}

/// A store with the services' tenant `bench` on `config`, and its scope.
async fn fresh(
    config: &DatabaseConfig,
    key: &std::path::Path,
) -> anyhow::Result<(Arc<dyn Store>, Services, Caller)> {
    let store = patchbay_store::connect(config).await?;
    let keys = KeyManager::open(KeySource::File(key.to_owned()), &*store, Timestamp::now()).await?;
    let services = Services::new(
        store.clone(),
        patchbay_connectors::builtin_registry()?,
        keys,
        Arc::new(SystemClock),
    );
    let caller = tenant(&services).await?;
    Ok((store, services, caller))
}

async fn scenario(
    config: DatabaseConfig,
    baseline_config: DatabaseConfig,
    dir: &std::path::Path,
    label: &'static str,
    target: (&'static str, f64),
) -> anyhow::Result<Vec<Figure>> {
    let (path, bytes) = source(dir)?;
    let (store, services, caller) = fresh(&config, &dir.join("master.key")).await?;
    services
        .save_credentials(
            &caller,
            "sync_files",
            json!({ "path": path.to_str().context("a UTF-8 path")?, "format": "jsonl", "idField": "id" })
                .as_object()
                .cloned()
                .unwrap_or_default(),
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    services
        .set_state(
            &caller,
            "sync_files",
            StateIn {
                status: Some(IntegrationStatus::Enabled),
                api_version: VersionChoice::Unchanged,
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let workers = Workers::start(
        services.clone(),
        WorkerConfig {
            schedules: false,
            ..WorkerConfig::default()
        },
    )
    .await?;

    // Resident memory, sampled every 10 ms during the run.
    let before = rss_bytes();
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicUsize::new(before));
    let sampler = {
        let (stop, peak) = (stop.clone(), peak.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(rss_bytes(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    let started = Instant::now();
    let run = services
        .start_sync(
            &caller,
            "sync_files",
            StartSyncIn {
                stream: "records".into(),
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let done = loop {
        let r = services
            .sync_run(&caller, run.id)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        if !r.status.is_active() {
            break r;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "the import never finished"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    workers.shutdown(Duration::from_secs(5)).await;
    anyhow::ensure!(
        usize::try_from(done.counters.created).unwrap_or(0) == RECORDS,
        "the import created {} of {RECORDS} records: {done:?}",
        done.counters.created
    );
    store.close().await;
    // The baseline on a database of its own, empty like the engine's was.
    let (raw_store, _raw_services, raw_caller) =
        fresh(&baseline_config, &dir.join("baseline.key")).await?;
    let scope = raw_caller
        .tenant_scope()
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .clone();
    let raw = store_alone(&*raw_store, &scope).await?;
    raw_store.close().await;
    let engine = per_second(RECORDS, took);
    let alone = per_second(RECORDS, raw);
    #[allow(clippy::cast_precision_loss)]
    let mib = |b: usize| b as f64 / f64::from(1u32 << 20);
    let peak = peak.load(Ordering::Relaxed);
    #[allow(clippy::cast_precision_loss)]
    let avg = bytes as f64 / RECORDS as f64;
    Ok(vec![
        Figure {
            scenario: label,
            metric: format!(
                "import {RECORDS} JSONL records (~{avg:.0} bytes each) end to end into the records store{}",
                if matches!(config, DatabaseConfig::Postgres { .. }) {
                    " (PostgreSQL: fsync off, shared_buffers 256 MB)"
                } else {
                    ""
                }
            ),
            value: engine,
            unit: "records/s",
            target: Some(target.0),
            meets_target: Some(engine >= target.1),
            baseline: Some(Baseline {
                what: "the store's batch commit alone, same rows prepared",
                value: alone,
                unit: "records/s",
                ratio: engine / alone.max(f64::MIN_POSITIVE),
            }),
        },
        Figure {
            scenario: label,
            metric: "resident memory, peak during the import".to_owned(),
            value: mib(peak),
            unit: "MiB",
            target: Some("< 150 MiB"),
            meets_target: Some(mib(peak) < 150.0),
            baseline: Some(Baseline {
                what: "before the import",
                value: mib(before),
                unit: "MiB",
                ratio: mib(peak) / mib(before).max(f64::MIN_POSITIVE),
            }),
        },
    ])
}

/// Into SQLite.
pub(crate) fn sqlite(rt: &tokio::runtime::Runtime) -> anyhow::Result<Vec<Figure>> {
    let dir = tempfile::tempdir()?;
    rt.block_on(scenario(
        DatabaseConfig::from_settings(dir.path(), None)?,
        DatabaseConfig::from_settings(&dir.path().join("baseline"), None)?,
        dir.path(),
        "sync",
        ("≥ 150,000 records/s", 150_000.0),
    ))
}

/// Into PostgreSQL (the test kit's throwaway cluster: fsync off, `shared_buffers` 256 MB —
/// a 1,000,000-record store with its indexes does not fit the 64 MB it had, and
/// any production server is given more than that).
pub(crate) fn postgres(rt: &tokio::runtime::Runtime) -> anyhow::Result<Vec<Figure>> {
    let pg = patchbay_testkit::postgres().context("PostgreSQL binaries are needed")?;
    let dir = tempfile::tempdir()?;
    rt.block_on(scenario(
        DatabaseConfig::Postgres {
            url: pg.fresh_database(),
        },
        DatabaseConfig::Postgres {
            url: pg.fresh_database(),
        },
        dir.path(),
        "sync_pg",
        ("≥ 80,000 records/s", 80_000.0),
    ))
}
