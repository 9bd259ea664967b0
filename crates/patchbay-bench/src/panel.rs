//! Server-side render time of each admin-panel page with 1,000 catalog
//! entries, 100,000 operation-log entries and 100,000 jobs (target: p99
//! under 20 ms).
//! Measured over loopback HTTP, so each figure also includes the request's
//! round trip; the baseline is the panel's static stylesheet.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use patchbay_core::{LogLevel, Timestamp};
use patchbay_service::tenants::TenantIn;
use patchbay_service::users::{Role, UserIn};
use patchbay_service::{
    Access, Caller, CallerKind, Feature, KeyManager, KeySource, Services, SystemClock,
};
use patchbay_store::NewLogEntry;
use patchbay_vault::ExposeSecret as _;

use crate::{Baseline, Figure, ms, quantile};

const RUNS: usize = 200;

pub(crate) fn run(rt: &tokio::runtime::Runtime) -> anyhow::Result<Vec<Figure>> {
    let dir = tempfile::tempdir()?;
    let (addr, cookie, stop) = rt.block_on(async {
        let store = patchbay_store::connect(&patchbay_store::DatabaseConfig::from_settings(
            dir.path(),
            None,
        )?)
        .await?;
        let keys = KeyManager::open(
            KeySource::File(dir.path().join("master.key")),
            &*store,
            Timestamp::now(),
        )
        .await?;
        let services = Services::new(
            store.clone(),
            crate::services::big_registry()?,
            keys,
            Arc::new(SystemClock),
        );
        let system = Caller {
            kind: CallerKind::System,
            id: "bench".into(),
            name: "bench".into(),
            access: Access::Platform,
            features: vec![Feature::PlatformAdmin],
        };
        let tenant = services
            .create_tenant(
                &system,
                TenantIn {
                    slug: "bench".into(),
                    name: "Bench".into(),
                },
            )
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        services
            .create_user_as_system(UserIn {
                email: "root@bench.example".into(),
                name: "Root".into(),
                password: "correct horse battery".into(),
                role: Role::PlatformAdmin,
                tenant_id: None,
                organization_id: None,
            })
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let signed = services
            .sign_in("root@bench.example", "correct horse battery", "bench")
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let cookie = signed.cookie.expose_secret().to_owned();
        services
            .switch_tenant(&signed.session, &tenant.id)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let scope =
            patchbay_core::Scope::new(tenant.id.clone(), tenant.organizations[0].id.clone());
        // 100,000 log entries: most on one integration, errors sprinkled in.
        let now = Timestamp::now();
        for chunk in 0..100 {
            let entries: Vec<NewLogEntry> = (0..1000)
                .map(|n| {
                    let k = chunk * 1000 + n;
                    NewLogEntry {
                        scope: scope.clone(),
                        integration_id: if k % 10 == 0 {
                            format!("gen_{}", k % 50)
                        } else {
                            "sync_medusa_products".to_owned()
                        },
                        level: if k % 20 == 0 {
                            LogLevel::Error
                        } else {
                            LogLevel::Info
                        },
                        operation: "sync.import.item".into(),
                        message: format!("Imported product {k}"),
                        details: Some(format!(r#"{{"productId":{k},"sku":"SKU-{k}"}}"#)),
                        correlation_id: Some(format!("run_{}", k / 1000)),
                        entity_type: Some("catalog.product".into()),
                        entity_id: Some(format!("prod_{k}")),
                        duration_ms: Some(3),
                        created_at: now.plus_seconds(-100_000 + i64::from(k)),
                    }
                })
                .collect();
            store.append_logs(entries).await?;
        }
        // 100,000 background jobs of the tenant, a fifth of them finished.
        for chunk in 0..100 {
            let specs = (0..1000)
                .map(|n| {
                    patchbay_service::jobs::JobSpec::new(
                        patchbay_service::jobs::JobKind::Noop,
                        Some(scope.clone()),
                        serde_json::json!({ "n": chunk * 1000 + n }),
                    )
                })
                .collect();
            services
                .enqueue(specs)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        services
            .ensure_builtin_schedules()
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let t = Timestamp::now();
        let claimed = store
            .claim_jobs("default", "bench", t, t.plus_seconds(600), 20_000)
            .await?;
        store
            .finish_jobs(
                "bench",
                t,
                claimed
                    .iter()
                    .map(|j| patchbay_store::Finish {
                        id: j.id,
                        attempt: j.attempts,
                        outcome: patchbay_store::FinishOutcome::Succeeded { result: None },
                    })
                    .collect(),
            )
            .await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let app = patchbay_panel::router(services.clone(), patchbay_panel::PanelOptions::default());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await;
        });
        anyhow::Ok((addr, cookie, stop))
    })?;
    let header = format!("pb_session={cookie}");
    let time = |path: &str| -> anyhow::Result<Vec<Duration>> {
        let mut samples = Vec::with_capacity(RUNS);
        for n in 0..RUNS + 20 {
            let t = Instant::now();
            let r =
                patchbay_testkit::http::request(addr, "GET", path, &[("Cookie", &header)], b"")?;
            let d = t.elapsed();
            anyhow::ensure!(r.status == 200, "{path}: {}", r.status);
            if n >= 20 {
                samples.push(d);
            }
        }
        Ok(samples)
    };
    let base = quantile(time("/backend/static/app.css")?, 0.99);
    let pages = [
        ("marketplace, 1,000 entries", "/backend/integrations"),
        (
            "marketplace, search",
            "/backend/integrations?q=generated%2099",
        ),
        ("integration detail", "/backend/integrations/gateway_stripe"),
        ("bundle page", "/backend/integrations/bundle/sync_medusa"),
        (
            "logs tab, 90,000 entries",
            "/backend/integrations/sync_medusa_products?tab=logs",
        ),
        (
            "logs tab, errors only",
            "/backend/integrations/sync_medusa_products?tab=logs&level=error",
        ),
        (
            "logs tab, page 200",
            "/backend/integrations/sync_medusa_products?tab=logs&page=200",
        ),
        ("tenant logs, 100,000 entries", "/backend/logs"),
        ("platform tenants", "/backend/platform/tenants"),
        ("failing connections", "/backend/platform/failing"),
        ("audit trail", "/backend/platform/audit"),
        ("tenant jobs, 100,000", "/backend/jobs"),
        (
            "tenant jobs, succeeded only",
            "/backend/jobs?status=succeeded",
        ),
        ("job detail", "/backend/jobs/50000"),
        ("platform jobs", "/backend/platform/jobs"),
        ("platform schedules", "/backend/platform/schedules"),
    ];
    let mut figures = Vec::new();
    for (name, path) in pages {
        let p99 = quantile(time(path)?, 0.99);
        figures.push(Figure {
            scenario: "panel",
            metric: format!("{name} (p99 of {RUNS})"),
            value: ms(p99),
            unit: "ms",
            target: Some("< 20 ms"),
            meets_target: Some(ms(p99) < 20.0),
            baseline: Some(Baseline {
                what: "static stylesheet (p99)",
                value: ms(base),
                unit: "ms",
                ratio: ms(p99) / ms(base),
            }),
        });
    }
    let _ = stop.send(());
    Ok(figures)
}
