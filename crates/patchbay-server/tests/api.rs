//! The HTTP API against a real server on 127.0.0.1:0 with a real database.

use std::net::SocketAddr;
use std::sync::Arc;

use patchbay_store::{DatabaseConfig, Store};
use patchbay_testkit::http;
use serde_json::Value;

/// A server running on its own runtime thread; stops when dropped.
struct TestServer {
    addr: SocketAddr,
    store: Arc<dyn Store>,
    runtime: tokio::runtime::Runtime,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    _dir: Option<tempfile::TempDir>,
}

impl TestServer {
    fn start(config: Option<DatabaseConfig>) -> TestServer {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (dir, config) = if let Some(c) = config {
            (None, c)
        } else {
            let dir = tempfile::tempdir().unwrap();
            let c = DatabaseConfig::from_settings(dir.path(), None).unwrap();
            (Some(dir), c)
        };
        let store = runtime.block_on(patchbay_store::connect(&config)).unwrap();
        let registry = patchbay_connectors::builtin_registry().unwrap();
        let state = patchbay_server::AppState::new(store.clone(), registry);
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
        TestServer {
            addr,
            store,
            runtime,
            stop: Some(stop),
            _dir: dir,
        }
    }

    fn get(&self, path: &str) -> (u16, Value, http::Response) {
        let r = http::get(self.addr, path).unwrap();
        let json = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
        (r.status, json, r)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

#[track_caller]
fn assert_problem(r: &http::Response, json: &Value, status: u16, code: &str) {
    assert_eq!(r.status, status, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    assert_eq!(json["code"], code, "{json}");
    assert_eq!(json["status"], status);
    assert!(
        json["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{json}"
    );
}

fn ids(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn probes_answer_alive_and_ready() {
    let s = TestServer::start(None);
    let (status, json, _) = s.get("/healthz");
    assert_eq!((status, json["status"].as_str()), (200, Some("alive")));
    let (status, json, _) = s.get("/readyz");
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["status"], "ready");
    assert_eq!(json["database"], "sqlite");
    assert_eq!(json["migration"], 2);
}

#[test]
fn readiness_fails_when_the_database_is_gone() {
    let s = TestServer::start(None);
    s.runtime.block_on(s.store.close());
    let (_, json, r) = s.get("/readyz");
    assert_problem(&r, &json, 503, "not_ready");
    // Liveness is unaffected: the process still serves.
    assert_eq!(s.get("/healthz").0, 200);
}

#[test]
fn the_catalog_lists_every_integration_and_bundle() {
    let s = TestServer::start(None);
    let (status, json, r) = s.get("/api/catalog");
    assert_eq!(status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let reg = patchbay_connectors::builtin_registry().unwrap();
    assert_eq!(
        json["items"].as_array().unwrap().len(),
        reg.integrations().len()
    );
    let bundles = json["bundles"].as_array().unwrap();
    assert_eq!(bundles.len(), 1);
    assert_eq!(bundles[0]["id"], "sync_medusa");
    assert_eq!(bundles[0]["integrationCount"], 5);
    assert_eq!(bundles[0]["members"].as_array().unwrap().len(), 5);
    let categories = json["categories"].as_array().unwrap();
    assert_eq!(categories.len(), 7);
    assert!(
        categories.iter().all(|c| c["count"].as_u64().unwrap() >= 1),
        "every category has an entry"
    );
    let stripe = json["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == "gateway_stripe")
        .unwrap();
    assert_eq!(stripe["apiVersions"][1]["status"], "deprecated");
    assert_eq!(stripe["apiVersions"][1]["sunsetAt"], "2026-12-01");
    assert_eq!(stripe["credentials"]["fields"][1]["type"], "secret");
}

#[test]
fn the_catalog_filters_by_category_search_and_bundle() {
    let s = TestServer::start(None);
    let (_, json, _) = s.get("/api/catalog?category=payment");
    assert_eq!(ids(&json["items"]), ["gateway_stripe"]);
    assert!(json["bundles"].as_array().unwrap().is_empty());

    let (_, json, _) = s.get("/api/catalog?category=webhook");
    assert_eq!(ids(&json["items"]).len(), 2);
    assert_eq!(
        ids(&json["bundles"]),
        ["sync_medusa"],
        "a bundle shows when one of its members matches"
    );

    let (_, json, _) = s.get("/api/catalog?search=medusa%20inventory");
    assert_eq!(ids(&json["items"]), ["sync_medusa_inventory"]);

    let (_, json, _) = s.get("/api/catalog?bundleId=sync_medusa&category=data_sync");
    assert_eq!(ids(&json["items"]).len(), 4);

    let (_, json, _) = s.get("/api/catalog?search=no-such-thing");
    assert!(json["items"].as_array().unwrap().is_empty());
    let (_, json, _) = s.get("/api/catalog?category=");
    assert_eq!(
        json["items"].as_array().unwrap().len(),
        15,
        "an empty filter is no filter"
    );
}

#[test]
fn bad_catalog_queries_are_problems_naming_the_field() {
    let s = TestServer::start(None);
    let (_, json, r) = s.get("/api/catalog?category=payments");
    assert_problem(&r, &json, 400, "invalid_query");
    assert_eq!(json["field"], "category");
    assert!(json["detail"].as_str().unwrap().contains("payments"));

    let (_, json, r) = s.get("/api/catalog?catgory=payment");
    assert_problem(&r, &json, 400, "invalid_query");
    assert_eq!(json["field"], "catgory");
}

#[test]
fn one_catalog_entry_by_id() {
    let s = TestServer::start(None);
    let (status, json, _) = s.get("/api/catalog/sync_medusa_orders");
    assert_eq!(status, 200);
    assert_eq!(json["kind"], "integration");
    assert_eq!(json["integration"]["bundleId"], "sync_medusa");
    assert_eq!(
        json["integration"]["package"], "patchbay-sync-medusa",
        "members inherit the bundle's package"
    );
    assert_eq!(json["bundle"]["id"], "sync_medusa");

    let (_, json, _) = s.get("/api/catalog/sync_medusa");
    assert_eq!(json["kind"], "bundle");
    assert_eq!(json["members"].as_array().unwrap().len(), 5);
    assert_eq!(
        json["bundle"]["credentials"]["fields"][0]["key"],
        "medusaApiUrl"
    );

    let (_, json, _) = s.get("/api/catalog/gateway_stripe");
    assert_eq!(json["bundle"], Value::Null);

    let (_, json, r) = s.get("/api/catalog/gateway_paypal");
    assert_problem(&r, &json, 404, "not_found");
}

#[test]
fn unknown_routes_and_methods_are_problems() {
    let s = TestServer::start(None);
    let (_, json, r) = s.get("/api/nothing-here");
    assert_problem(&r, &json, 404, "not_found");
    let r = http::request(s.addr, "DELETE", "/api/catalog", &[], b"").unwrap();
    let json: Value = serde_json::from_slice(&r.body).unwrap();
    assert_problem(&r, &json, 405, "method_not_allowed");
}

#[test]
fn the_same_server_runs_on_postgresql() {
    let Some(pg) = patchbay_testkit::postgres() else {
        return;
    };
    let s = TestServer::start(Some(DatabaseConfig::Postgres {
        url: pg.fresh_database(),
    }));
    let (status, json, _) = s.get("/readyz");
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["database"], "postgres");
    assert_eq!(
        s.get("/api/catalog?category=storage").1["items"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}
