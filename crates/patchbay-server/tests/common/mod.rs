//! A real server on 127.0.0.1:0 over a real database, and an HTTP client
//! that speaks to it with tokens.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use patchbay_service::{KeyManager, KeySource, Services, SystemClock};
use patchbay_store::{DatabaseConfig, Store};
use patchbay_testkit::http;
use patchbay_vault::ExposeSecret as _;
use serde_json::{Value, json};

/// A server running on its own runtime thread; stops when dropped.
pub struct TestServer {
    pub addr: SocketAddr,
    pub store: Arc<dyn Store>,
    pub services: Services,
    pub runtime: tokio::runtime::Runtime,
    pub admin: String,
    pub dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

#[derive(Clone, Copy)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// An HTTP response with its JSON body (Null when not JSON).
pub struct Resp {
    pub status: u16,
    pub json: Value,
    pub raw: http::Response,
}

impl TestServer {
    /// A server whose health-check requests do not wait: no workers run
    /// unless a test starts them, so waiting could only time out.
    pub fn start(db: Db) -> Option<TestServer> {
        TestServer::start_with(db, Duration::ZERO)
    }

    /// A server whose health-check requests wait up to `health_wait`.
    pub fn start_with(db: Db, health_wait: Duration) -> Option<TestServer> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let config = match db {
            Db::Sqlite => DatabaseConfig::from_settings(dir.path(), None).unwrap(),
            Db::Postgres => DatabaseConfig::Postgres {
                url: patchbay_testkit::postgres()?.fresh_database(),
            },
        };
        let key_file = dir.path().join("master.key");
        let (store, services, admin) = runtime.block_on(async {
            let store = patchbay_store::connect(&config).await.unwrap();
            let keys = KeyManager::open(
                KeySource::File(key_file),
                &*store,
                patchbay_core::Timestamp::now(),
            )
            .await
            .unwrap();
            let services = Services::new(
                store.clone(),
                patchbay_connectors::builtin_registry().unwrap(),
                keys,
                Arc::new(SystemClock),
            );
            let admin = services
                .bootstrap_admin_token()
                .await
                .unwrap()
                .unwrap()
                .expose_secret()
                .to_owned();
            (store, services, admin)
        });
        let state = patchbay_server::AppState::new(services.clone()).with_health_wait(health_wait);
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        runtime.spawn(patchbay_server::serve(
            listener,
            patchbay_server::router(state),
            async {
                let _ = stopped.await;
            },
        ));
        Some(TestServer {
            addr,
            store,
            services,
            runtime,
            admin,
            dir,
            stop: Some(stop),
        })
    }

    pub fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Resp {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers: Vec<(&str, &str)> = Vec::new();
        if let Some(a) = &auth {
            headers.push(("Authorization", a));
        }
        let bytes = body
            .map(|b| serde_json::to_vec(b).unwrap())
            .unwrap_or_default();
        if body.is_some() {
            headers.push(("Content-Type", "application/json"));
        }
        let raw = http::request(self.addr, method, path, &headers, &bytes).unwrap();
        let json = serde_json::from_slice(&raw.body).unwrap_or(Value::Null);
        Resp {
            status: raw.status,
            json,
            raw,
        }
    }

    pub fn get(&self, path: &str, token: &str) -> Resp {
        self.call("GET", path, Some(token), None)
    }

    pub fn put(&self, path: &str, token: &str, body: &Value) -> Resp {
        self.call("PUT", path, Some(token), Some(body))
    }

    pub fn post(&self, path: &str, token: &str, body: &Value) -> Resp {
        self.call("POST", path, Some(token), Some(body))
    }

    /// Creates a tenant through the API; returns (tenant id, token with `features`).
    pub fn tenant(&self, slug: &str, features: &[&str]) -> (String, String) {
        let t = self.post(
            "/api/tenants",
            &self.admin,
            &json!({ "slug": slug, "name": slug.to_uppercase() }),
        );
        assert_eq!(t.status, 201, "{}", t.raw.text());
        let id = t.json["id"].as_str().unwrap().to_owned();
        (id.clone(), self.token(&id, features))
    }

    pub fn token(&self, tenant_id: &str, features: &[&str]) -> String {
        let r = self.post(
            "/api/tokens",
            &self.admin,
            &json!({ "name": "test", "tenantId": tenant_id, "features": features }),
        );
        assert_eq!(r.status, 201, "{}", r.raw.text());
        r.json["token"].as_str().unwrap().to_owned()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

pub const ALL: &[&str] = &[
    "integrations.view",
    "integrations.manage",
    "integrations.credentials",
];

#[track_caller]
pub fn assert_problem(r: &Resp, status: u16, code: &str) {
    assert_eq!(r.status, status, "{}", r.raw.text());
    assert_eq!(
        r.raw.header("content-type"),
        Some("application/problem+json"),
        "{}",
        r.raw.text()
    );
    assert_eq!(r.json["code"], code, "{}", r.json);
    assert_eq!(r.json["status"], status);
    assert!(
        r.json["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{}",
        r.json
    );
}

pub fn stripe(secret: &str) -> Value {
    json!({ "values": {
        "publishableKey": "pk_test_1",
        "secretKey": secret,
        "webhookSecret": format!("whsec_{secret}"),
        "captureMethod": "automatic",
    } })
}

/// Runs each behaviour once per backend (`fn name(db: Db)`); the PostgreSQL
/// run is skipped (by `TestServer::start`) when PostgreSQL is not installed.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[test] fn $name() { super::$name(super::Db::Sqlite) } )*
        }
        mod postgresql {
            $( #[test] fn $name() { super::$name(super::Db::Postgres) } )*
        }
    };
}
