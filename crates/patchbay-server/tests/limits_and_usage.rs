//! Over HTTP: a tenant past its concurrency limit gets 429
//! `tenant_concurrency_exceeded` with `Retry-After` while another tenant's
//! calls run, and `GET /api/usage` reports each tenant its own figures.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{ALL, Db, TestServer, assert_problem};
use patchbay_core::TenantId;
use patchbay_runtime::{CallContext, Connector, ConnectorError, Health};
use patchbay_service::ActionLimits;
use patchbay_testkit::wait_for;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

/// A storage provider whose `put` waits until the test lets it go.
struct Gated {
    started: AtomicUsize,
    release: Semaphore,
}

impl Gated {
    fn started(&self) -> usize {
        self.started.load(Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl Connector for Gated {
    async fn check(&self, _: &CallContext) -> Result<Health, ConnectorError> {
        Ok(Health {
            ok: true,
            message: "gated".into(),
        })
    }

    async fn invoke(
        &self,
        _: &CallContext,
        _: &str,
        input: Value,
    ) -> Result<Value, ConnectorError> {
        self.started.fetch_add(1, Ordering::SeqCst);
        self.release.acquire().await.unwrap().forget();
        let path = input["path"].as_str().unwrap_or_default();
        let size = input["content"].as_str().map_or(0, str::len);
        Ok(json!({ "path": path, "size": size }))
    }
}

fn put(n: usize) -> Value {
    json!({ "path": format!("f{n}.txt"), "content": "x".repeat(n) })
}

fn enable_storage(s: &TestServer, token: &str, root: &str) {
    let saved = s.put(
        "/api/integrations/storage_local/credentials",
        token,
        &json!({ "values": { "root": root } }),
    );
    assert_eq!(saved.status, 200, "{}", saved.raw.text());
    let enabled = s.put(
        "/api/integrations/storage_local/state",
        token,
        &json!({ "status": "enabled" }),
    );
    assert_eq!(enabled.status, 200, "{}", enabled.raw.text());
}

const WAIT: Duration = Duration::from_secs(25);

fn a_tenant_past_its_limit_gets_429_with_retry_after_while_another_tenant_runs(db: Db) {
    let Some(s) = TestServer::start(db) else {
        return;
    };
    let gated = Arc::new(Gated {
        started: AtomicUsize::new(0),
        release: Semaphore::new(0),
    });
    s.services
        .register_native("storage_local", None, gated.clone());
    s.services.set_action_limits(ActionLimits {
        concurrency: 5,
        queue: 3,
        max_wait: Duration::from_secs(120),
    });
    let (a_id, a) = s.tenant("acme", ALL);
    let (_, b) = s.tenant("globex", ALL);
    let root = tempfile::tempdir().unwrap();
    enable_storage(&s, &a, root.path().to_str().unwrap());
    enable_storage(&s, &b, root.path().to_str().unwrap());
    let a_tenant = TenantId::new(a_id.as_str());
    let call = |token: &str, n: usize| {
        s.post(
            "/api/integrations/storage_local/actions/put",
            token,
            &put(n),
        )
    };

    let (a_ref, call_ref) = (a.as_str(), &call);
    std::thread::scope(|scope| {
        let mut a_calls: Vec<_> = (0..5)
            .map(|n| scope.spawn(move || call_ref(a_ref, n)))
            .collect();
        wait_for("five running", WAIT, || {
            (gated.started() == 5).then_some(())
        });
        // The sixth to eighth wait: they hold no connection to the provider.
        a_calls.extend((5..8).map(|n| scope.spawn(move || call_ref(a_ref, n))));
        wait_for("three waiting", WAIT, || {
            (s.services.action_load(&a_tenant) == (5, 3)).then_some(())
        });
        assert_eq!(gated.started(), 5);

        // The ninth: 429 with Retry-After and the stable code.
        let refused = call(&a, 8);
        assert_problem(&refused, 429, "tenant_concurrency_exceeded");
        assert_eq!(refused.raw.header("retry-after"), Some("120"));

        // Another tenant runs meanwhile.
        let b_call = scope.spawn(|| call(&b, 100));
        wait_for("tenant B's call running", WAIT, || {
            (gated.started() == 6).then_some(())
        });

        gated.release.add_permits(100);
        for c in a_calls {
            let r = c.join().unwrap();
            assert_eq!(r.status, 200, "{}", r.raw.text());
        }
        let r = b_call.join().unwrap();
        assert_eq!(r.status, 200, "{}", r.raw.text());
    });

    // Each tenant reads its own usage; the refused call is not counted.
    let a_usage = s.get("/api/usage", &a);
    assert_eq!(a_usage.status, 200, "{}", a_usage.raw.text());
    let totals = &a_usage.json["totals"];
    assert_eq!(totals["calls"], 8, "{}", a_usage.json);
    assert_eq!(totals["errors"], 0);
    let sent: usize = (0..8).map(|n| put(n).to_string().len()).sum();
    assert_eq!(totals["inputBytes"], sent);
    let returned: usize = (0..8)
        .map(|n| {
            json!({ "path": format!("f{n}.txt"), "size": n })
                .to_string()
                .len()
        })
        .sum();
    assert_eq!(totals["outputBytes"], returned);
    assert_eq!(
        a_usage.json["integrations"][0]["integrationId"],
        "storage_local"
    );
    assert_eq!(a_usage.json["integrations"][0]["calls"], 8);
    assert_eq!(a_usage.json["hours"].as_array().unwrap().len(), 1);

    let b_usage = s.get("/api/usage?integration=storage_local", &b);
    assert_eq!(b_usage.status, 200, "{}", b_usage.raw.text());
    assert_eq!(b_usage.json["totals"]["calls"], 1, "{}", b_usage.json);
    assert_eq!(
        b_usage.json["totals"]["inputBytes"],
        put(100).to_string().len()
    );

    // A reader may look; the query is checked.
    let viewer = s.token(&a_id, &["integrations.view"]);
    assert_eq!(s.get("/api/usage", &viewer).json["totals"]["calls"], 8);
    let from = s.get("/api/usage?from=yesterday", &a);
    assert_problem(&from, 422, "validation_failed");
    assert_eq!(from.json["errors"][0]["field"], "from");
    assert_problem(&s.get("/api/usage?tenant=x", &a), 400, "invalid_query");
    assert_problem(
        &s.get("/api/usage?integration=no_such_thing", &a),
        404,
        "not_found",
    );
}

on_both_backends!(a_tenant_past_its_limit_gets_429_with_retry_after_while_another_tenant_runs);
