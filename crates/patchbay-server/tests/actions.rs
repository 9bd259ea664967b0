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
        &json!({ "sessionId": "cs_1", "idempotencyKey": "capture-cs_1" }),
    );
    assert_problem(&capture, 501, "action_unsupported");
}

fn hub_contracts_are_enforced_on_the_action_path(db: Db) {
    let Some(s) = TestServer::start(db) else {
        return;
    };
    let (_, a) = s.tenant("acme", ALL);
    let root = tempfile::tempdir().unwrap();
    enable_storage(&s, &a, root.path().to_str().unwrap());
    let act = |action: &str, input: serde_json::Value| {
        s.post(
            &format!("/api/integrations/storage_local/actions/{action}"),
            &a,
            &input,
        )
    };
    let logs = |query: &str| {
        s.get(&format!("/api/integrations/storage_local/logs?{query}"), &a)
            .json["items"]
            .as_array()
            .unwrap()
            .clone()
    };

    // Input that breaks the storage hub's schema: 422 naming every path,
    // before the connector runs (nothing written, nothing logged).
    let bad = act(
        "put",
        json!({ "path": "", "content": 5, "contentType": "text/plain", "owner": "SECRET_OWNER" }),
    );
    assert_problem(&bad, 422, "validation_failed");
    let mut fields: Vec<(&str, &str)> = bad.json["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["field"].as_str().unwrap(), e["code"].as_str().unwrap()))
        .collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        [
            ("input/content", "invalid_type"),
            ("input/owner", "unknown_field"),
            ("input/path", "too_short"),
        ]
    );
    assert!(
        bad.json["detail"]
            .as_str()
            .unwrap()
            .contains("`storage_providers` contract of `put`")
    );
    assert!(!bad.raw.text().contains("SECRET_OWNER"));
    // Both kinds of content at once: one problem at the input itself.
    let both = act(
        "put",
        json!({ "path": "a.txt", "content": "a", "contentBase64": "YQ==" }),
    );
    assert_problem(&both, 422, "validation_failed");
    assert_eq!(both.json["errors"][0]["field"], "input");
    assert_eq!(both.json["errors"][0]["code"], "ambiguous");
    assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0);
    assert!(logs("operation=action.put").is_empty());
    // Valid input passes (the connector's own rules still apply after it).
    let put = act(
        "put",
        json!({ "path": "ok.bin", "contentBase64": "aGVsbG8=", "contentType": "application/octet-stream" }),
    );
    assert_eq!(put.status, 200, "{}", put.raw.text());
    assert_eq!(put.json["output"], json!({ "path": "ok.bin", "size": 5 }));
    let deleted = act("delete", json!({ "path": "ok.bin" }));
    assert_eq!(
        deleted.json["output"],
        json!({ "path": "ok.bin", "deleted": true })
    );

    // An object put there by something else, with a path longer than the
    // hub allows (1024 characters): `list` returns output that breaks the
    // contract, which is the connector's fault — 502, logged without values.
    let segment = "d".repeat(210);
    let deep = root
        .path()
        .join(format!("{segment}/{segment}/{segment}/{segment}/{segment}"));
    std::fs::create_dir_all(&deep).unwrap();
    std::fs::write(deep.join("long-name.txt"), "x").unwrap();
    let listed = act("list", json!({}));
    assert_problem(&listed, 502, "connector_invalid_output");
    let detail = listed.json["detail"].as_str().unwrap();
    assert!(detail.contains("/items/0/path (too_long)"), "{detail}");
    assert!(detail.contains("may have taken effect"), "{detail}");
    assert!(
        !listed.raw.text().contains(&segment),
        "{}",
        listed.raw.text()
    );
    let correlation = detail.rsplit(' ').next().unwrap();
    assert!(correlation.starts_with("act_"), "{detail}");
    let entries = logs(&format!("correlationId={correlation}"));
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["level"], "error");
    assert_eq!(entries[0]["operation"], "action.list");
    let details = &entries[0]["details"];
    assert_eq!(details["invalidOutput"][0]["pointer"], "/items/0/path");
    assert_eq!(details["invalidOutput"][0]["code"], "too_long");
    assert!(details["outputBytes"].as_u64().unwrap() > 1050);
    assert!(!entries[0].to_string().contains(&segment), "{}", entries[0]);
    // Listing a prefix without that object is fine.
    std::fs::write(root.path().join("short.txt"), "y").unwrap();
    let short = act("list", json!({ "prefix": "short" }));
    assert_eq!(short.status, 200, "{}", short.raw.text());
    assert_eq!(
        short.json["output"],
        json!({ "items": [{ "path": "short.txt", "size": 1 }] })
    );

    // A hub action is checked even where this build has no connector: the
    // input's problems come first.
    let saved = s.put(
        "/api/integrations/gateway_stripe/credentials",
        &a,
        &stripe("sk_hub"),
    );
    assert_eq!(saved.status, 200, "{}", saved.raw.text());
    let enabled = s.put(
        "/api/integrations/gateway_stripe/state",
        &a,
        &json!({ "status": "enabled" }),
    );
    assert_eq!(enabled.status, 200, "{}", enabled.raw.text());
    let refund = s.post(
        "/api/integrations/gateway_stripe/actions/refund",
        &a,
        &json!({ "sessionId": "cs_1", "amount": 12.5, "reason": "because" }),
    );
    assert_problem(&refund, 422, "validation_failed");
    let fields: Vec<&str> = refund.json["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        ["input/idempotencyKey", "input/amount", "input/reason"]
    );
}

on_both_backends!(
    actions_run_through_the_connector_within_the_callers_scope,
    hub_contracts_are_enforced_on_the_action_path,
);
