//! The HTTP API against a real server on 127.0.0.1:0 with a real database:
//! the OpenAPI document, authentication and features on every route, tenant
//! isolation on every route, strict bodies, and the main flows.

mod common;

use common::{ALL, Db, TestServer, assert_problem, stripe};
use patchbay_core::Scope;
use patchbay_server::routes::{self, Auth};
use patchbay_service::jobs::{JobKind, JobSpec};
use serde_json::{Value, json};

fn server() -> TestServer {
    TestServer::start(Db::Sqlite).unwrap()
}

/// A concrete path for a route, with ids that exist.
fn concrete(path: &str, tenant: &str, token_id: &str) -> String {
    let path = path
        .replace("{name}", "jobs.prune")
        .replace("{action}", "capture")
        .replace("{stream}", "records");
    let id = if path.starts_with("/api/jobs") || path.starts_with("/api/sync/runs") {
        "1"
    } else if path.starts_with("/api/sync") {
        "sync_files"
    } else if path.starts_with("/api/jobs") {
        "1"
    } else if path.starts_with("/api/hubs") {
        "payment_gateways"
    } else if path.starts_with("/api/bundles") {
        "sync_medusa"
    } else if path.starts_with("/api/tenants") {
        tenant
    } else if path.starts_with("/api/tokens") || path.starts_with("/api/users") {
        token_id
    } else {
        "gateway_stripe"
    };
    path.replace("{id}", id)
}

/// A valid body for each route that takes one.
fn body(operation: &str, n: usize, tenant: &str) -> Option<Value> {
    Some(match operation {
        "setIntegrationState" => json!({ "status": "enabled" }),
        "putCredentials" => stripe("sk_matrix"),
        "setBundleState" => json!({ "enabled": false }),
        "putSettings" => json!({ "logRetentionDays": 30, "errorLogRetentionDays": 90 }),
        "updateSchedule" => json!({ "enabled": true }),
        "invokeAction" | "readStream" | "putFieldMapping" | "previewFieldMapping" => json!({}),
        "startSync" => json!({ "stream": "records" }),
        "startExport" => {
            json!({ "stream": "records", "records": [{ "id": "h1", "data": { "id": "1" } }] })
        }
        "createTenant" => json!({ "slug": format!("t-{n}"), "name": "T" }),
        "createOrganization" => json!({ "slug": format!("o-{n}"), "name": "O" }),
        "createToken" => {
            json!({ "name": "x", "tenantId": tenant, "features": ["integrations.view"] })
        }
        "createUser" => {
            json!({ "email": format!("user{n}@example.com"), "name": "U", "password": "correct horse battery", "role": "viewer", "tenantId": tenant })
        }
        _ => return None,
    })
}

#[test]
fn probes_answer_without_a_token() {
    let s = server();
    let r = s.call("GET", "/healthz", None, None);
    assert_eq!((r.status, r.json["status"].as_str()), (200, Some("alive")));
    let r = s.call("GET", "/readyz", None, None);
    assert_eq!(r.status, 200, "{}", r.raw.text());
    assert_eq!(
        (r.json["database"].as_str(), r.json["migration"].as_i64()),
        (
            Some("sqlite"),
            patchbay_store::migrate::SQLITE.last().map(|m| m.version)
        )
    );
}

#[test]
fn readiness_fails_when_the_database_is_gone() {
    let s = server();
    s.runtime.block_on(s.store.close());
    assert_problem(&s.call("GET", "/readyz", None, None), 503, "not_ready");
    assert_eq!(s.call("GET", "/healthz", None, None).status, 200);
}

#[test]
fn the_openapi_document_describes_every_route_and_only_those() {
    let s = server();
    let r = s.call("GET", "/api/openapi.json", None, None);
    assert_eq!(r.status, 200);
    let doc = r.json;
    assert_eq!(doc["openapi"], "3.1.0");
    let table = routes::table();
    let mut documented = 0;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            documented += 1;
            let route = table
                .iter()
                .find(|t| t.path == path && t.method == method)
                .unwrap_or_else(|| panic!("{method} {path} documented but not routed"));
            assert_eq!(op["operationId"], route.operation_id);
            assert!(
                op["responses"]
                    .as_object()
                    .unwrap()
                    .contains_key(&route.status.to_string()),
                "{method} {path}"
            );
            if let Auth::Feature(f) | Auth::FeatureOrAdmin(f) = route.auth {
                assert_eq!(op["x-patchbay-feature"], f.as_str());
            }
        }
    }
    assert_eq!(documented, table.len(), "every route is documented");
    // Every route answers (none falls through to the 404 fallback).
    let (tenant, token) = s.tenant("doc", ALL);
    for route in &table {
        let path = concrete(route.path, &tenant, "tok_none");
        let r = s.call(
            &route.method.to_ascii_uppercase(),
            &path,
            Some(&token),
            body(route.operation_id, 0, &tenant).as_ref(),
        );
        let fell_through = r.status == 404
            && r.json["detail"]
                .as_str()
                .is_some_and(|d| d.starts_with("no route"));
        assert!(!fell_through, "{} {path} is not routed", route.method);
    }
    // Every $ref resolves.
    let text = doc.to_string();
    for part in text.split("\"$ref\":\"#/components/").skip(1) {
        let target = part.split('"').next().unwrap();
        let mut node = &doc["components"];
        for seg in target.split('/') {
            node = &node[seg];
        }
        assert!(!node.is_null(), "dangling $ref {target}");
    }
    assert!(doc["x-error-codes"].as_array().unwrap().len() >= 15);
}

#[test]
fn every_route_checks_the_token_and_its_features() {
    let s = server();
    let (tenant, _) = s.tenant("acme", ALL);
    let spare = s.post(
        "/api/tokens",
        &s.admin,
        &json!({ "name": "spare", "tenantId": tenant, "features": ["integrations.view"] }),
    );
    let spare_id = spare.json["id"].as_str().unwrap().to_owned();
    let only = |f: &str| s.token(&tenant, &[f]);
    let all_but = |f: &str| {
        s.token(
            &tenant,
            &ALL.iter().copied().filter(|x| *x != f).collect::<Vec<_>>(),
        )
    };
    for (n, route) in routes::table().iter().enumerate() {
        let method = route.method.to_ascii_uppercase();
        let path = concrete(route.path, &tenant, &spare_id);
        let b = body(route.operation_id, n, &tenant);
        let call = |token: Option<&str>| s.call(&method, &path, token, b.as_ref());
        match route.auth {
            Auth::Public => assert_ne!(call(None).status, 401, "{method} {path}"),
            Auth::Token => {
                assert_problem(&call(None), 401, "unauthenticated");
                assert_problem(&call(Some("pb_not_a_real_token")), 401, "unauthenticated");
                let r = call(Some(&only("integrations.view")));
                assert!(r.status < 400, "{method} {path}: {}", r.raw.text());
            }
            Auth::Feature(f) if f.as_str() == "platform.admin" => {
                assert_problem(&call(None), 401, "unauthenticated");
                assert_problem(&call(Some(&s.token(&tenant, ALL))), 403, "forbidden");
                let r = call(Some(&s.admin));
                assert!(
                    r.status != 401 && r.status != 403,
                    "{method} {path}: {}",
                    r.raw.text()
                );
            }
            Auth::Feature(f) => {
                assert_problem(&call(None), 401, "unauthenticated");
                let without = call(Some(&all_but(f.as_str())));
                assert_problem(&without, 403, "forbidden");
                assert!(
                    without.json["detail"]
                        .as_str()
                        .unwrap()
                        .contains(f.as_str())
                );
                let with = call(Some(&only(f.as_str())));
                assert!(
                    with.status != 401 && with.status != 403,
                    "{method} {path} with {}: {}",
                    f.as_str(),
                    with.raw.text()
                );
                // A platform token has no tenant scope for tenant routes.
                assert_problem(&call(Some(&s.admin)), 403, "forbidden");
            }
            Auth::FeatureOrAdmin(f) => {
                assert_problem(&call(None), 401, "unauthenticated");
                let without = call(Some(&all_but(f.as_str())));
                assert_problem(&without, 403, "forbidden");
                assert!(
                    without.json["detail"]
                        .as_str()
                        .unwrap()
                        .contains(f.as_str())
                );
                // (A manage-only token: `a_manage_only_token_cancels_and_retries_jobs`.)
                let reader = s.token(&tenant, &[f.as_str()]);
                for token in [reader, s.admin.clone()] {
                    let with = call(Some(&token));
                    assert!(
                        with.status != 401 && with.status != 403,
                        "{method} {path}: {}",
                        with.raw.text()
                    );
                }
            }
        }
    }
    let revoked = s.call(
        "DELETE",
        &format!("/api/tokens/{spare_id}"),
        Some(&s.admin),
        None,
    );
    assert!(revoked.status == 204 || revoked.status == 404);
}

#[test]
fn no_route_shows_one_tenant_anything_of_another() {
    let s = server();
    let (a_id, a) = s.tenant("alpha", ALL);
    let (b_id, b) = s.tenant("bravo", ALL);
    // Tenant B's objects.
    assert_eq!(
        s.put(
            "/api/integrations/gateway_stripe/credentials",
            &b,
            &stripe("sk_BRAVO_CANARY")
        )
        .status,
        200
    );
    assert_eq!(
        s.put(
            "/api/integrations/gateway_stripe/state",
            &b,
            &json!({ "status": "enabled" })
        )
        .status,
        200
    );
    assert_eq!(
        s.put(
            "/api/settings",
            &b,
            &json!({ "logRetentionDays": 7, "errorLogRetentionDays": 14 })
        )
        .status,
        200
    );
    let b_key = s
        .get("/api/integrations/gateway_stripe/credentials", &b)
        .json["keyId"]
        .as_str()
        .unwrap()
        .to_owned();
    let b_principal = s.get("/api/integrations/gateway_stripe/principal", &b).json["principalId"]
        .as_str()
        .unwrap()
        .to_owned();
    let b_me = s.get("/api/me", &b).json;
    let b_token_id = b_me["tokenId"].as_str().unwrap().to_owned();
    let b_job = s
        .runtime
        .block_on(s.services.enqueue(vec![JobSpec::new(
            JobKind::Noop,
            Some(Scope::new(
                b_id.as_str(),
                b_me["organizationId"].as_str().unwrap(),
            )),
            json!({ "note": "BRAVO_JOB_CANARY" }),
        )]))
        .unwrap()[0]
        .id()
        .to_string();
    let secrets = [
        "BRAVO_CANARY",
        &b_id,
        &b_key,
        &b_principal,
        &b_token_id,
        "BRAVO_JOB_CANARY",
    ];

    let mut seen = String::new();
    for (n, route) in routes::table().iter().enumerate() {
        let method = route.method.to_ascii_uppercase();
        // B's ids wherever a route takes one.
        let path = route.path.replace("{name}", "jobs.prune").replace(
            "{id}",
            if route.path.starts_with("/api/tenants") {
                &b_id
            } else if route.path.starts_with("/api/jobs") {
                &b_job
            } else if route.path.starts_with("/api/tokens") {
                &b_token_id
            } else if route.path.starts_with("/api/bundles") {
                "sync_medusa"
            } else {
                "gateway_stripe"
            },
        );
        if route.operation_id == "putCredentials"
            || route.operation_id == "deleteCredentials"
            || route.operation_id == "setIntegrationState"
        {
            continue; // writes on A's own row; checked below
        }
        let r = s.call(
            &method,
            &path,
            Some(&a),
            body(route.operation_id, n, &a_id).as_ref(),
        );
        if route.path.starts_with("/api/tenants")
            || route.path.starts_with("/api/tokens")
            || route.path.starts_with("/api/users")
            || route.path == "/api/audit"
            || route.path.starts_with("/api/schedules")
        {
            assert_problem(&r, 403, "forbidden");
        }
        if route.path.starts_with("/api/jobs/") {
            assert_problem(&r, 404, "not_found");
        }
        seen.push_str(&r.raw.text());
    }
    for secret in secrets {
        assert!(
            !seen.contains(secret),
            "tenant A saw `{secret}` of tenant B"
        );
    }
    // A's view of the shared catalog ids is its own: a draft without credentials.
    let mine = s.get("/api/integrations/gateway_stripe", &a);
    assert_eq!(
        (
            mine.json["state"]["status"].as_str(),
            mine.json["credentials"]["configured"].as_bool()
        ),
        (Some("draft"), Some(false))
    );
    assert_eq!(s.get("/api/settings", &a).json["logRetentionDays"], 30);
    // A deleting "its" credentials finds none, and B's are untouched.
    assert_problem(
        &s.call(
            "DELETE",
            "/api/integrations/gateway_stripe/credentials",
            Some(&a),
            None,
        ),
        404,
        "not_found",
    );
    assert_eq!(
        s.get("/api/integrations/gateway_stripe/credentials", &b)
            .json["keyId"],
        b_key.as_str()
    );
    assert!(s.get("/api/events", &a).json.as_array().unwrap().is_empty());
}

#[test]
fn bodies_are_parsed_strictly_and_bounded() {
    let s = server();
    let (_, t) = s.tenant("acme", ALL);
    let auth = format!("Bearer {t}");
    let send = |body: &[u8], ctype: &str| {
        let r = patchbay_testkit::http::request(
            s.addr,
            "PUT",
            "/api/integrations/gateway_stripe/state",
            &[("Authorization", &auth), ("Content-Type", ctype)],
            body,
        )
        .unwrap();
        common::Resp {
            status: r.status,
            json: serde_json::from_slice(&r.body).unwrap_or(Value::Null),
            raw: r,
        }
    };
    assert_problem(
        &send(b"{\"status\": ", "application/json"),
        400,
        "invalid_json",
    );
    let wrong = send(b"{\"status\": 3}", "application/json");
    assert_problem(&wrong, 422, "invalid_body");
    assert_eq!(wrong.json["field"], "status");
    let unknown = send(b"{\"staus\": \"enabled\"}", "application/json");
    assert_problem(&unknown, 422, "invalid_body");
    assert!(unknown.json["detail"].as_str().unwrap().contains("staus"));
    let bad_value = send(b"{\"status\": \"on\"}", "application/json");
    assert_problem(&bad_value, 422, "invalid_body");
    assert_problem(
        &send(b"status=enabled", "application/x-www-form-urlencoded"),
        415,
        "unsupported_media_type",
    );
    let big = format!(
        "{{\"values\": {{\"publishableKey\": \"{}\"}}}}",
        "x".repeat(70 * 1024)
    );
    let r = patchbay_testkit::http::request(
        s.addr,
        "PUT",
        "/api/integrations/gateway_stripe/credentials",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        big.as_bytes(),
    )
    .unwrap();
    assert_eq!(r.status, 413, "{}", r.text());
    // A nested field is named by its path.
    let nested = s.put(
        "/api/integrations/gateway_stripe/credentials",
        &t,
        &json!({ "values": 5 }),
    );
    assert_problem(&nested, 422, "invalid_body");
    assert_eq!(nested.json["field"], "values");
    // Query parameters too.
    let q = s.get("/api/logs?level=loud&limit=0", &t);
    assert_problem(&q, 422, "validation_failed");
    assert_eq!(q.json["errors"].as_array().unwrap().len(), 2);
    assert_problem(&s.get("/api/logs?colour=red", &t), 400, "invalid_query");
    assert_problem(
        &s.get("/api/integrations?category=payments", &t),
        400,
        "invalid_query",
    );
}

#[test]
fn an_operator_configures_and_enables_an_integration_end_to_end() {
    let s = server();
    let (tenant, t) = s.tenant("acme", ALL);
    let me = s.get("/api/me", &t);
    assert_eq!(
        (me.json["scope"].as_str(), me.json["tenantId"].as_str()),
        (Some("tenant"), Some(tenant.as_str()))
    );

    let refused = s.put(
        "/api/integrations/gateway_stripe/state",
        &t,
        &json!({ "status": "enabled" }),
    );
    assert_problem(&refused, 409, "enable_refused");
    assert_eq!(refused.json["errors"].as_array().unwrap().len(), 3);

    let invalid = s.put(
        "/api/integrations/gateway_stripe/credentials",
        &t,
        &json!({ "values": { "secretKey": 1, "nope": true } }),
    );
    assert_problem(&invalid, 422, "validation_failed");
    let saved = s.put(
        "/api/integrations/gateway_stripe/credentials",
        &t,
        &stripe("sk_live_e2e"),
    );
    assert_eq!(saved.status, 200);
    assert_eq!(saved.json["values"]["secretKey"], "••••••••");
    let picked = s.put(
        "/api/integrations/gateway_stripe/state",
        &t,
        &json!({ "status": "enabled", "apiVersion": "2023-10-16" }),
    );
    assert_eq!(picked.status, 200, "{}", picked.raw.text());
    assert_eq!(picked.json["state"]["status"], "enabled");
    assert_eq!(picked.json["warnings"][0]["code"], "deprecated_api_version");
    assert_eq!(picked.json["warnings"][0]["sunsetAt"], "2026-12-01");

    let list = s.get("/api/integrations?category=payment", &t);
    assert_eq!(
        list.json["items"][0]["state"]["effectiveApiVersion"],
        "2023-10-16"
    );
    let events = s.get("/api/events", &t).json;
    let kinds: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "integrations.credentials.updated",
            "integrations.integration.enabled"
        ]
    );
    let after = events[0]["seq"].as_i64().unwrap();
    assert_eq!(
        s.get(&format!("/api/events?after={after}"), &t)
            .json
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let logs = s.get("/api/integrations/gateway_stripe/logs", &t);
    assert!(logs.json["total"].as_u64().unwrap() >= 2, "{}", logs.json);
    let principal = s.get("/api/integrations/gateway_stripe/principal", &t);
    assert_eq!(principal.json["actionKeys"].as_array().unwrap().len(), 4);

    // Bundles: shared credentials, enable all.
    assert_eq!(s.put("/api/integrations/sync_medusa/credentials", &t, &json!({ "values": { "medusaApiUrl": "https://m.example.com", "medusaApiKey": "mk_1", "medusaWebhookSecret": "wh_1" } })).status, 200);
    let all = s.put(
        "/api/bundles/sync_medusa/state",
        &t,
        &json!({ "enabled": true }),
    );
    assert_eq!(all.status, 200, "{}", all.raw.text());
    assert_eq!(
        s.get("/api/bundles/sync_medusa", &t).json["enabledCount"],
        5
    );
    let member = s.get("/api/integrations/sync_medusa_orders/credentials", &t);
    assert_eq!(
        (
            member.json["source"].as_str(),
            member.json["bundleId"].as_str()
        ),
        (Some("bundle"), Some("sync_medusa"))
    );

    // The platform admin sees the audit trail of it all.
    let audit = s.get(&format!("/api/audit?tenantId={tenant}"), &s.admin);
    let actions: Vec<&str> = audit
        .json
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.get("action").and_then(Value::as_str).unwrap())
        .collect();
    assert!(
        actions.contains(&"credentials.update")
            && actions.contains(&"integration.state")
            && actions.contains(&"bundle.state"),
        "{actions:?}"
    );
    assert_eq!(
        s.call(
            "DELETE",
            "/api/integrations/gateway_stripe/credentials",
            Some(&t),
            None
        )
        .status,
        204
    );
}

#[test]
fn tokens_and_tenants_are_administered_through_the_api() {
    let s = server();
    let created = s.post(
        "/api/tenants",
        &s.admin,
        &json!({ "slug": "acme", "name": "Acme" }),
    );
    assert_eq!(created.status, 201);
    let tenant = created.json["id"].as_str().unwrap();
    assert_eq!(created.json["organizations"][0]["slug"], "main");
    assert_problem(
        &s.post(
            "/api/tenants",
            &s.admin,
            &json!({ "slug": "acme", "name": "Again" }),
        ),
        409,
        "conflict",
    );
    let org = s.post(
        &format!("/api/tenants/{tenant}/organizations"),
        &s.admin,
        &json!({ "slug": "emea", "name": "EMEA" }),
    );
    assert_eq!(org.status, 201);
    assert_problem(
        &s.post(
            "/api/tenants/ten_missing/organizations",
            &s.admin,
            &json!({ "slug": "xy", "name": "X" }),
        ),
        404,
        "not_found",
    );

    let tok = s.post("/api/tokens", &s.admin, &json!({ "name": "ci", "tenantId": tenant, "organizationId": org.json["id"], "features": ["integrations.view"] }));
    assert_eq!(tok.status, 201);
    let secret = tok.json["token"].as_str().unwrap().to_owned();
    assert_eq!(
        s.get("/api/me", &secret).json["organizationId"],
        org.json["id"]
    );
    let listed = s.get("/api/tokens", &s.admin);
    assert!(
        !listed.raw.text().contains(&secret),
        "listing never shows a token"
    );
    assert_eq!(
        s.call(
            "DELETE",
            &format!("/api/tokens/{}", tok.json["id"].as_str().unwrap()),
            Some(&s.admin),
            None
        )
        .status,
        204
    );
    assert_problem(&s.get("/api/me", &secret), 401, "unauthenticated");
    let bad = s.post(
        "/api/tokens",
        &s.admin,
        &json!({ "name": "", "features": ["integrations.view"] }),
    );
    assert_problem(&bad, 422, "validation_failed");
}

#[test]
fn the_catalog_needs_a_token_and_filters() {
    let s = server();
    let (_, t) = s.tenant("acme", &["integrations.view"]);
    assert_problem(
        &s.call("GET", "/api/catalog", None, None),
        401,
        "unauthenticated",
    );
    let all = s.get("/api/catalog", &t);
    assert_eq!(all.json["items"].as_array().unwrap().len(), 15);
    assert_eq!(all.json["bundles"][0]["integrationCount"], 5);
    assert_eq!(
        s.get("/api/catalog?category=payment", &t).json["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        s.get("/api/catalog?search=medusa%20inventory", &t).json["items"][0]["id"],
        "sync_medusa_inventory"
    );
    let entry = s.get("/api/catalog/sync_medusa_orders", &t);
    assert_eq!(
        (
            entry.json["kind"].as_str(),
            entry.json["bundle"]["id"].as_str()
        ),
        (Some("integration"), Some("sync_medusa"))
    );
    assert_eq!(
        s.get("/api/catalog/sync_medusa", &t).json["members"]
            .as_array()
            .unwrap()
            .len(),
        5
    );
    assert_problem(&s.get("/api/catalog/gateway_paypal", &t), 404, "not_found");
    let bad = s.get("/api/catalog?catgory=payment", &t);
    assert_problem(&bad, 400, "invalid_query");
    assert_eq!(bad.json["field"], "catgory");
}

#[test]
fn the_hub_contracts_are_published_with_their_schemas() {
    let s = server();
    let (_, t) = s.tenant("acme", &["integrations.view"]);
    assert_problem(
        &s.call("GET", "/api/hubs", None, None),
        401,
        "unauthenticated",
    );
    let r = s.get("/api/hubs", &t);
    assert_eq!(r.status, 200, "{}", r.raw.text());
    assert_eq!(
        r.json["dialect"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    let hubs = r.json["items"].as_array().unwrap();
    let ids: Vec<&str> = hubs.iter().map(|h| h["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        [
            "payment_gateways",
            "shipping_carriers",
            "communication_channels",
            "notification_providers",
            "storage_providers",
            "data_sync",
            "webhook_endpoints"
        ]
    );
    // Each hub as core defines it: category, statuses, actions with schemas.
    for (hub, core) in hubs.iter().zip(patchbay_core::hub_contract::contracts()) {
        assert_eq!(*hub, serde_json::to_value(core).unwrap());
        assert_eq!(hub["category"], core.id.category().as_str());
        let required: Vec<&str> = hub["actions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["required"] == true)
            .map(|a| a["name"].as_str().unwrap())
            .collect();
        assert_eq!(required, core.id.required_actions(), "{}", core.id);
    }
    let payment = &hubs[0];
    assert_eq!(payment["statuses"].as_array().unwrap().len(), 8);
    let create = &payment["actions"][0];
    assert_eq!(create["name"], "create_session");
    assert_eq!(create["input"]["properties"]["amount"]["type"], "integer");
    assert_eq!(create["example"]["input"]["currency"], "EUR");
    let storage = &hubs[4]["actions"];
    let presign = storage
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "presign")
        .unwrap();
    assert_eq!(presign["required"], false);
    assert!(presign["output"]["required"].is_array());

    // One hub; an unknown one is 404.
    let one = s.get("/api/hubs/storage_providers", &t);
    assert_eq!(one.status, 200, "{}", one.raw.text());
    assert_eq!(one.json["id"], "storage_providers");
    assert_eq!(one.json["dialect"], r.json["dialect"]);
    assert_eq!(one.json["actions"], hubs[4]["actions"]);
    assert_problem(&s.get("/api/hubs/payments", &t), 404, "not_found");

    // The OpenAPI document carries each action's schemas as components.
    let doc = s.call("GET", "/api/openapi.json", None, None).json;
    let components = &doc["components"]["schemas"];
    assert_eq!(
        components["storage_providers.put.input"],
        hubs[4]["actions"][0]["input"]
    );
    assert_eq!(
        components["payment_gateways.refund.output"],
        payment["actions"][2]["output"]
    );
    let codes = doc["x-error-codes"].as_array().unwrap();
    assert!(
        codes
            .iter()
            .any(|c| c["code"] == "connector_invalid_output" && c["status"] == 502)
    );
}

#[test]
fn unknown_routes_and_methods_are_problems() {
    let s = server();
    assert_problem(
        &s.call("GET", "/api/nothing-here", None, None),
        404,
        "not_found",
    );
    assert_problem(
        &s.call("DELETE", "/api/catalog", Some(&s.admin), None),
        405,
        "method_not_allowed",
    );
}

#[test]
fn the_same_api_runs_on_postgresql() {
    let Some(s) = TestServer::start(Db::Postgres) else {
        return;
    };
    assert_eq!(
        s.call("GET", "/readyz", None, None).json["database"],
        "postgres"
    );
    let (_, t) = s.tenant("acme", ALL);
    assert_eq!(
        s.put(
            "/api/integrations/gateway_stripe/credentials",
            &t,
            &stripe("sk_pg")
        )
        .status,
        200
    );
    assert_eq!(
        s.put(
            "/api/integrations/gateway_stripe/state",
            &t,
            &json!({ "status": "enabled" })
        )
        .status,
        200
    );
    assert_eq!(
        s.get("/api/integrations/gateway_stripe", &t).json["state"]["status"],
        "enabled"
    );
}
