//! Scenarios over the services and the API on SQLite: credential resolve
//! (decryption and bundle fallthrough), `GET /api/integrations` with 1,000
//! catalog entries, and operation-log writes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use patchbay_core::{CatalogQuery, LogLevel, ManifestSource, Registry, Scope};
use patchbay_service::logs::Entry;
use patchbay_service::tenants::{TenantIn, TokenIn};
use patchbay_service::{Caller, KeyManager, KeySource, Services, SystemClock};
use patchbay_store::{DatabaseConfig, NewLogEntry, Store};
use patchbay_vault::ExposeSecret as _;
use serde_json::json;

use crate::{Baseline, Figure, stats};

struct World {
    services: Services,
    store: Arc<dyn Store>,
    admin: Caller,
    tenant: Caller,
    token: String,
    _dir: tempfile::TempDir,
}

async fn world(registry: Registry) -> anyhow::Result<World> {
    let dir = tempfile::tempdir()?;
    let store = patchbay_store::connect(&DatabaseConfig::from_settings(dir.path(), None)?).await?;
    let keys = KeyManager::open(
        KeySource::File(dir.path().join("master.key")),
        &*store,
        patchbay_core::Timestamp::now(),
    )
    .await?;
    let services = Services::new(store.clone(), registry, keys, Arc::new(SystemClock));
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
    let features = [
        "integrations.view",
        "integrations.manage",
        "integrations.credentials",
    ]
    .map(str::to_owned)
    .to_vec();
    let created = services
        .create_token(
            &admin,
            TokenIn {
                name: "bench".into(),
                tenant_id: Some(t.id),
                organization_id: None,
                features,
                expires_at: None,
            },
        )
        .await?;
    let token = created.token.expose_secret().to_owned();
    let tenant = services.authenticate(&token).await?;
    Ok(World {
        services,
        store,
        admin,
        tenant,
        token,
        _dir: dir,
    })
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

pub(crate) fn credentials(rt: &tokio::runtime::Runtime) -> anyhow::Result<Vec<Figure>> {
    rt.block_on(async {
        let w = world(patchbay_connectors::builtin_registry()?).await?;
        let values = json!({ "medusaApiUrl": "https://m.example.com", "medusaApiKey": "mk_0123456789abcdef", "medusaWebhookSecret": "wh_0123456789" });
        w.services.save_credentials(&w.tenant, "sync_medusa", values.as_object().cloned().unwrap_or_default()).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        let scope: Scope = w.tenant.tenant_scope().map_err(|e| anyhow::anyhow!("{e}"))?.clone();
        // Warm up (cache the data key, prepare statements).
        for _ in 0..500 {
            w.services.resolve_credentials(&scope, "sync_medusa_products").await.map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        let n = 20_000;
        let mut samples = Vec::with_capacity(n);
        for _ in 0..n {
            let t = Instant::now();
            let r = w.services.resolve_credentials(&scope, "sync_medusa_products").await.map_err(|e| anyhow::anyhow!("{e}"))?;
            samples.push(t.elapsed());
            std::hint::black_box(r);
        }
        let mut base = Vec::with_capacity(n);
        for _ in 0..n {
            let t = Instant::now();
            let r = w.store.find_credentials(&scope, &["sync_medusa_products", "sync_medusa"]).await?;
            base.push(t.elapsed());
            std::hint::black_box(r);
        }
        let s = stats(samples.clone());
        let p99 = crate::quantile(samples, 0.99);
        let b = stats(base);
        let _ = &w.admin;
        Ok(vec![
            Figure {
                scenario: "credentials",
                metric: "resolve with decryption + bundle fallthrough, SQLite (p50 of 20,000)".into(),
                value: us(s.median),
                unit: "µs",
                target: Some("< 50 µs"),
                meets_target: Some(us(s.median) < 50.0),
                baseline: Some(Baseline { what: "the store's query alone (p50)", value: us(b.median), unit: "µs", ratio: us(s.median) / us(b.median) }),
            },
            Figure {
                scenario: "credentials",
                metric: "resolve with decryption + bundle fallthrough, SQLite (p99 of 20,000)".into(),
                value: us(p99),
                unit: "µs",
                target: Some("< 200 µs"),
                meets_target: Some(us(p99) < 200.0),
                baseline: None,
            },
        ])
    })
}

/// A catalog of 1,000 entries: the built-in one plus generated integrations.
pub(crate) fn big_registry() -> anyhow::Result<Registry> {
    let generated: Vec<(String, String)> = (0..1000 - 16)
        .map(|n| {
            (
                format!("connectors/gen_{n}/patchbay.toml"),
                format!(
                    "[integration]\nid = \"gen_{n}\"\ntitle = \"Generated {n}\"\ndescription = \"Generated integration {n}.\"\ncategory = \"payment\"\nhub = \"payment_gateways\"\nprovider_key = \"gen_{n}\"\ntags = [\"generated\"]\ncapabilities = {{ direction = \"outbound\", actions = [\"create_session\", \"capture\", \"refund\", \"get_status\"] }}\n\n[[integration.credentials.fields]]\nkey = \"apiKey\"\nlabel = \"API key\"\ntype = \"secret\"\nrequired = true\n"
                ),
            )
        })
        .collect();
    let builtin = patchbay_connectors::builtin_sources().map(|s| ManifestSource {
        path: s.path,
        text: s.text,
    });
    let extra = generated
        .iter()
        .map(|(path, text)| ManifestSource { path, text });
    Registry::load(builtin.chain(extra)).map_err(|e| anyhow::anyhow!("{e}"))
}

pub(crate) fn api_list(rt: &tokio::runtime::Runtime) -> anyhow::Result<Vec<Figure>> {
    let registry = big_registry()?;
    let entries = registry.len();
    let (w, addr, stop) = rt.block_on(async {
        let w = world(registry).await?;
        // Some states, so the list joins real rows.
        for n in 0..200 {
            let id = format!("gen_{n}");
            let values = json!({ "apiKey": format!("k{n}") })
                .as_object()
                .cloned()
                .unwrap_or_default();
            w.services
                .save_credentials(&w.tenant, &id, values)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            w.services
                .set_state(
                    &w.tenant,
                    &id,
                    patchbay_service::integrations::StateIn {
                        status: Some(patchbay_core::IntegrationStatus::Enabled),
                        ..Default::default()
                    },
                )
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let app = patchbay_server::router(patchbay_server::AppState::new(w.services.clone()));
        tokio::spawn(patchbay_server::serve(listener, app, async {
            let _ = stopped.await;
        }));
        anyhow::Ok((w, addr, stop))
    })?;
    let auth = format!("Bearer {}", w.token);
    let call = |path: &str| -> anyhow::Result<Duration> {
        let t = Instant::now();
        let r =
            patchbay_testkit::http::request(addr, "GET", path, &[("Authorization", &auth)], b"")?;
        let d = t.elapsed();
        anyhow::ensure!(r.status == 200, "{path}: {}", r.status);
        Ok(d)
    };
    let check = patchbay_testkit::http::request(
        addr,
        "GET",
        "/api/integrations",
        &[("Authorization", &auth)],
        b"",
    )?;
    let listed: serde_json::Value = serde_json::from_slice(&check.body)?;
    anyhow::ensure!(
        listed["items"].as_array().map_or(0, Vec::len)
            + listed["bundles"].as_array().map_or(0, Vec::len)
            == entries,
        "the list holds every entry"
    );
    for _ in 0..50 {
        call("/api/integrations")?;
    }
    let n = 500;
    let samples: Vec<Duration> = (0..n)
        .map(|_| call("/api/integrations"))
        .collect::<anyhow::Result<_>>()?;
    let base: Vec<Duration> = (0..n)
        .map(|_| call("/healthz"))
        .collect::<anyhow::Result<_>>()?;
    // In-process, without HTTP: the service call and its serialization.
    let direct: Vec<Duration> = rt.block_on(async {
        let mut v = Vec::new();
        for _ in 0..n {
            let t = Instant::now();
            let list = w
                .services
                .list_integrations(&w.tenant, &CatalogQuery::default())
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            std::hint::black_box(serde_json::to_vec(&list)?);
            v.push(t.elapsed());
        }
        anyhow::Ok(v)
    })?;
    let _ = stop.send(());
    let p99 = crate::quantile(samples.clone(), 0.99);
    let p50 = stats(samples).median;
    let base99 = crate::quantile(base, 0.99);
    let ms = crate::ms;
    Ok(vec![
        Figure {
            scenario: "api_list",
            metric: format!(
                "GET /api/integrations, {entries} catalog entries, over HTTP (p99 of {n})"
            ),
            value: ms(p99),
            unit: "ms",
            target: Some("< 5 ms"),
            meets_target: Some(ms(p99) < 5.0),
            baseline: Some(Baseline {
                what: "GET /healthz (p99)",
                value: ms(base99),
                unit: "ms",
                ratio: ms(p99) / ms(base99),
            }),
        },
        Figure {
            scenario: "api_list",
            metric: format!("GET /api/integrations, {entries} entries (p50 of {n})"),
            value: ms(p50),
            unit: "ms",
            target: None,
            meets_target: None,
            baseline: None,
        },
        Figure {
            scenario: "api_list",
            metric: "list + serialize in process, no HTTP (p99)".into(),
            value: ms(crate::quantile(direct, 0.99)),
            unit: "ms",
            target: None,
            meets_target: None,
            baseline: None,
        },
    ])
}

pub(crate) fn oplog(rt: &tokio::runtime::Runtime) -> anyhow::Result<Vec<Figure>> {
    rt.block_on(async {
        let w = world(patchbay_connectors::builtin_registry()?).await?;
        let scope = w.tenant.tenant_scope().map_err(|e| anyhow::anyhow!("{e}"))?.clone();
        let entry = |n: usize| Entry {
            operation: "sync.import.item".into(),
            message: format!("imported product {n}"),
            details: Some(json!({ "productId": n, "sku": format!("SKU-{n}"), "price": 1299 })),
            entity_type: Some("catalog.product".into()),
            entity_id: Some(format!("prod_{n}")),
            duration_ms: Some(3),
        };
        // 16 writers, each logging entries one at a time: group commit batches them.
        let total = 100_000usize;
        let writers = 16;
        let started = Instant::now();
        let mut tasks = Vec::new();
        for t in 0..writers {
            let log = w.services.logger(&scope, "sync_files", Some(format!("run_{t}"))).await.map_err(|e| anyhow::anyhow!("{e}"))?;
            tasks.push(tokio::spawn(async move {
                for n in 0..total / writers {
                    log.log(LogLevel::Info, entry(n)).await.map_err(|e| anyhow::anyhow!("{e}"))?;
                }
                anyhow::Ok(())
            }));
        }
        for t in tasks {
            t.await??;
        }
        let concurrent = started.elapsed();
        // One writer handing over batches of 500.
        let log = w.services.logger(&scope, "sync_files", Some("batched".into())).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        let started = Instant::now();
        for chunk in 0..total / 500 {
            log.log_many((0..500).map(|n| (LogLevel::Info, entry(chunk * 500 + n)))).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        let batched = started.elapsed();
        // Baseline: the store's raw multi-row insert, no redaction, no queue.
        let raw: Vec<NewLogEntry> = (0..500)
            .map(|n| NewLogEntry {
                scope: scope.clone(),
                integration_id: "sync_files".into(),
                level: LogLevel::Info,
                operation: "sync.import.item".into(),
                message: format!("imported product {n}"),
                details: Some(json!({ "productId": n, "sku": format!("SKU-{n}"), "price": 1299 }).to_string()),
                correlation_id: Some("raw".into()),
                entity_type: Some("catalog.product".into()),
                entity_id: Some(format!("prod_{n}")),
                duration_ms: Some(3),
                created_at: patchbay_core::Timestamp::now(),
            })
            .collect();
        let started = Instant::now();
        for _ in 0..total / 500 {
            w.store.append_logs(raw.clone()).await?;
        }
        let raw_time = started.elapsed();
        #[allow(clippy::cast_precision_loss)]
        let rate = |d: Duration| total as f64 / d.as_secs_f64();
        Ok(vec![
            Figure {
                scenario: "oplog",
                metric: format!("operation-log writes, {writers} concurrent writers, one entry per call (group commit)"),
                value: rate(concurrent),
                unit: "entries/s",
                target: Some("≥ 20,000/s"),
                meets_target: Some(rate(concurrent) >= 20_000.0),
                baseline: Some(Baseline { what: "the store's append_logs alone, batches of 500", value: rate(raw_time), unit: "entries/s", ratio: rate(concurrent) / rate(raw_time) }),
            },
            Figure {
                scenario: "oplog",
                metric: "operation-log writes, one writer, batches of 500".into(),
                value: rate(batched),
                unit: "entries/s",
                target: Some("≥ 20,000/s"),
                meets_target: Some(rate(batched) >= 20_000.0),
                baseline: Some(Baseline { what: "the store's append_logs alone, batches of 500", value: rate(raw_time), unit: "entries/s", ratio: rate(batched) / rate(raw_time) }),
            },
        ])
    })
}
