//! `POST /api/integrations/{id}/actions/{action}`: actions run through the
//! integration's connector, as its principal, within the caller's scope.

mod common;

use common::{ALL, Db, TestServer, assert_problem, stripe};
use serde_json::json;

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

fn actions_run_through_the_connector_within_the_callers_scope(db: Db) {
    let Some(s) = TestServer::start(db) else {
        return;
    };
    let (a_id, a) = s.tenant("acme", ALL);
    let (_, b) = s.tenant("globex", ALL);
    let root = tempfile::tempdir().unwrap();
    let act = |token: &str, action: &str, input: serde_json::Value| {
        s.post(
            &format!("/api/integrations/storage_local/actions/{action}"),
            token,
            &input,
        )
    };
    // Not enabled yet.
    assert_problem(&act(&a, "list", json!({})), 409, "integration_not_enabled");
    enable_storage(&s, &a, root.path().to_str().unwrap());

    let put = act(
        &a,
        "put",
        json!({ "path": "notes/hello.txt", "content": "hello" }),
    );
    assert_eq!(put.status, 200, "{}", put.raw.text());
    assert_eq!(
        put.json["output"],
        json!({ "path": "notes/hello.txt", "size": 5 })
    );
    let correlation = put.json["correlationId"].as_str().unwrap().to_owned();
    assert!(correlation.starts_with("act_"));
    assert_eq!(
        std::fs::read_to_string(root.path().join("notes/hello.txt")).unwrap(),
        "hello"
    );
    let got = act(&a, "get", json!({ "path": "notes/hello.txt" }));
    assert_eq!(got.json["output"]["contentBase64"], "aGVsbG8=");
    let listed = act(&a, "list", json!({}));
    assert_eq!(
        listed.json["output"]["items"],
        json!([{ "path": "notes/hello.txt", "size": 5 }])
    );

    // The connector refuses a path out of its root: 422, naming the input.
    let escape = act(&a, "get", json!({ "path": "../../etc/passwd" }));
    assert_problem(&escape, 422, "validation_failed");
    assert_eq!(escape.json["errors"][0]["field"], "input");
    assert_eq!(escape.json["errors"][0]["code"], "connector_invalid_input");
    // An action the manifest does not declare: 404.
    assert_problem(&act(&a, "presign", json!({})), 404, "not_found");
    // Another tenant's storage is its own (not enabled there).
    assert_problem(&act(&b, "list", json!({})), 409, "integration_not_enabled");
    // A token without `integrations.manage` may not run actions.
    let viewer = s.token(&a_id, &["integrations.view"]);
    assert_problem(&act(&viewer, "list", json!({})), 403, "forbidden");

    // The calls are in the operation log, with the correlation id, without contents.
    let logs = s
        .get(
            &format!("/api/integrations/storage_local/logs?correlationId={correlation}"),
            &a,
        )
        .json;
    let entries = logs["items"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{logs}");
    assert_eq!(entries[0]["operation"], "action.put");
    let sent = json!({ "path": "notes/hello.txt", "content": "hello" }).to_string();
    assert_eq!(entries[0]["details"]["inputBytes"], sent.len());
    assert!(!logs.to_string().contains("hello\""), "{logs}");

    // An integration this build has no connector for: 501, saying so.
    let saved = s.put(
        "/api/integrations/gateway_stripe/credentials",
        &a,
        &stripe("sk_act"),
    );
    assert_eq!(saved.status, 200, "{}", saved.raw.text());
    let enabled = s.put(
        "/api/integrations/gateway_stripe/state",
        &a,
        &json!({ "status": "enabled" }),
    );
    assert_eq!(enabled.status, 200, "{}", enabled.raw.text());
    let capture = s.post(
        "/api/integrations/gateway_stripe/actions/capture",
        &a,
        &json!({ "sessionId": "cs_1" }),
    );
    assert_problem(&capture, 501, "action_unsupported");
}

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

on_both_backends!(actions_run_through_the_connector_within_the_callers_scope);
