//! Shared set-up for the service tests: a store (SQLite or PostgreSQL), the
//! built-in catalog, a master key file, a fixed clock, two tenants with a
//! full-featured token each, and a platform admin.
#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;
use std::sync::Arc;

use patchbay_core::Timestamp;
use patchbay_service::tenants::{TenantIn, TokenIn};
use patchbay_service::{Caller, FixedClock, KeyManager, KeySource, Services};
use patchbay_store::{DatabaseConfig, Store};
use patchbay_vault::ExposeSecret as _;

pub struct Harness {
    pub services: Services,
    pub store: Arc<dyn Store>,
    pub clock: Arc<FixedClock>,
    pub admin: Caller,
    pub a: Caller,
    pub b: Caller,
    pub key_file: PathBuf,
    pub config: DatabaseConfig,
    pub dir: tempfile::TempDir,
}

/// 2026-11-01T00:00:00Z: before the Stripe 2023-10-16 sunset (2026-12-01).
pub const NOV_1_2026: i64 = 1_793_491_200;

pub enum Backend {
    Sqlite,
    Postgres,
}

pub async fn harness(backend: Backend) -> Option<Harness> {
    let clock = Arc::new(FixedClock::new(Timestamp::from_micros(
        NOV_1_2026 * 1_000_000,
    )));
    let h = open(backend, clock.clone(), clock.now_ts()).await?;
    Some(Harness {
        services: h.services,
        store: h.store,
        clock,
        admin: h.admin,
        a: h.a,
        b: h.b,
        key_file: h.key_file,
        config: h.config,
        dir: h.dir,
    })
}

struct Opened {
    services: Services,
    store: Arc<dyn Store>,
    admin: Caller,
    a: Caller,
    b: Caller,
    key_file: PathBuf,
    config: DatabaseConfig,
    dir: tempfile::TempDir,
}

/// A fresh database on `backend`, the built-in catalog, a key file, a
/// platform admin and the two tenants.
async fn open(
    backend: Backend,
    clock: Arc<dyn patchbay_service::Clock>,
    now: Timestamp,
) -> Option<Opened> {
    let dir = tempfile::tempdir().unwrap();
    let config = match backend {
        Backend::Sqlite => DatabaseConfig::from_settings(dir.path(), None).unwrap(),
        Backend::Postgres => DatabaseConfig::Postgres {
            url: patchbay_testkit::postgres()?.fresh_database(),
        },
    };
    let store = patchbay_store::connect(&config).await.unwrap();
    let key_file = dir.path().join("master.key");
    let keys = KeyManager::open(KeySource::File(key_file.clone()), &*store, now)
        .await
        .unwrap();
    let services = Services::new(
        store.clone(),
        patchbay_connectors::builtin_registry().unwrap(),
        keys,
        clock,
    );
    let bootstrap = services
        .bootstrap_admin_token()
        .await
        .unwrap()
        .expect("first start mints a token");
    let admin = services
        .authenticate(bootstrap.expose_secret())
        .await
        .unwrap();
    let a = tenant_caller(&services, &admin, "acme").await;
    let b = tenant_caller(&services, &admin, "globex").await;
    Some(Opened {
        services,
        store,
        admin,
        a,
        b,
        key_file,
        config,
        dir,
    })
}

trait Now {
    fn now_ts(&self) -> Timestamp;
}

impl Now for FixedClock {
    fn now_ts(&self) -> Timestamp {
        patchbay_service::Clock::now(self)
    }
}

/// Creates tenant `slug` and returns a caller with every tenant feature.
pub async fn tenant_caller(s: &Services, admin: &Caller, slug: &str) -> Caller {
    let t = s
        .create_tenant(
            admin,
            TenantIn {
                slug: slug.into(),
                name: slug.to_uppercase(),
            },
        )
        .await
        .unwrap();
    token_for(
        s,
        admin,
        &t.id,
        &[
            "integrations.view",
            "integrations.manage",
            "integrations.credentials",
        ],
    )
    .await
}

pub async fn token_for(s: &Services, admin: &Caller, tenant_id: &str, features: &[&str]) -> Caller {
    let created = s
        .create_token(
            admin,
            TokenIn {
                name: format!("{tenant_id} token"),
                tenant_id: Some(tenant_id.into()),
                organization_id: None,
                features: features.iter().map(|f| (*f).to_owned()).collect(),
                expires_at: None,
            },
        )
        .await
        .unwrap();
    s.authenticate(created.token.expose_secret()).await.unwrap()
}

pub fn map(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    match v {
        serde_json::Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

/// Valid Stripe credentials with a recognisable secret.
pub fn stripe(secret: &str) -> serde_json::Map<String, serde_json::Value> {
    map(serde_json::json!({
        "publishableKey": "pk_test_123",
        "secretKey": secret,
        "webhookSecret": format!("whsec_{secret}"),
        "captureMethod": "manual",
        "enableApplePay": true,
    }))
}

pub fn medusa(key: &str) -> serde_json::Map<String, serde_json::Value> {
    map(serde_json::json!({
        "medusaApiUrl": "https://medusa.example.com",
        "medusaApiKey": key,
        "medusaWebhookSecret": format!("{key}-hook"),
    }))
}

/// Runs each named async test on SQLite and on PostgreSQL.
#[macro_export]
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::$name(super::common::harness(super::common::Backend::Sqlite).await.unwrap()).await;
            })*
        }
        mod on_postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let Some(h) = super::common::harness(super::common::Backend::Postgres).await else { return };
                super::$name(h).await;
            })*
        }
    };
}

/// Like [`Harness`], on the system clock: for the workers, whose leases,
/// retries and schedules follow real time.
pub struct Live {
    pub services: Services,
    pub store: Arc<dyn Store>,
    pub admin: Caller,
    pub a: Caller,
    pub b: Caller,
    pub config: DatabaseConfig,
    pub dir: tempfile::TempDir,
}

pub async fn live(backend: Backend) -> Option<Live> {
    let h = open(
        backend,
        Arc::new(patchbay_service::SystemClock),
        Timestamp::now(),
    )
    .await?;
    Some(Live {
        services: h.services,
        store: h.store,
        admin: h.admin,
        a: h.a,
        b: h.b,
        config: h.config,
        dir: h.dir,
    })
}

/// Runs each named async test on SQLite and on PostgreSQL, on the system clock.
#[macro_export]
macro_rules! live_on_both {
    ($($name:ident),* $(,)?) => {
        mod live_sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::$name(super::common::live(super::common::Backend::Sqlite).await.unwrap()).await;
            })*
        }
        mod live_postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let Some(h) = super::common::live(super::common::Backend::Postgres).await else { return };
                super::$name(h).await;
            })*
        }
    };
}
