//! Data sync through the HTTP API: start an import (202 + Location), follow
//! it live (server-sent events), read the run, pull the records by delta,
//! set and preview a field mapping, and the errors of each route. On SQLite
//! and, when installed, PostgreSQL.

mod common;

use std::io::Write as _;
use std::time::Duration;

use common::{Db, TestServer, assert_problem};
use patchbay_service::worker::{WorkerConfig, Workers};
use patchbay_testkit::wait_for;
use serde_json::{Value, json};

on_both_backends!(
    an_import_is_started_followed_and_pulled_by_delta,
    field_mappings_are_checked_previewed_and_applied,
    an_export_is_accepted_past_the_usual_body_limit_and_written,
);

const FEATURES: &[&str] = &[
    "integrations.view",
    "integrations.manage",
    "integrations.credentials",
];

fn workers(s: &TestServer) -> Workers {
    s.runtime
        .block_on(Workers::start(
            s.services.clone(),
            WorkerConfig {
                poll: Duration::from_millis(20),
                schedules: false,
                ..WorkerConfig::default()
            },
        ))
        .unwrap()
}

/// A JSON Lines file of `n` products, `sync_files` configured on it and enabled.
fn files_on(s: &TestServer, token: &str, n: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("products.jsonl");
    let mut f = std::fs::File::create(&path).unwrap();
    for i in 0..n {
        writeln!(
            f,
            "{}",
            json!({ "id": i, "title": format!("Product {i}"), "price": format!("{}", 100 + i) })
        )
        .unwrap();
    }
    let r = s.put(
        "/api/integrations/sync_files/credentials",
        token,
        &json!({ "values": { "path": path.to_str().unwrap(), "format": "jsonl", "idField": "id" } }),
    );
    assert_eq!(r.status, 200, "{}", r.raw.text());
    let r = s.put(
        "/api/integrations/sync_files/state",
        token,
        &json!({ "status": "enabled" }),
    );
    assert_eq!(r.status, 200, "{}", r.raw.text());
    dir
}

fn an_import_is_started_followed_and_pulled_by_delta(db: Db) {
    let Some(s) = TestServer::start(db) else {
        return;
    };
    let (_, token) = s.tenant("acme", FEATURES);
    let (_, other) = s.tenant("globex", FEATURES);
    let _dir = files_on(&s, &token, 1500);

    let started = s.post(
        "/api/sync/sync_files/runs",
        &token,
        &json!({ "stream": "records" }),
    );
    assert_eq!(started.status, 202, "{}", started.raw.text());
    let id = started.json["id"].as_i64().unwrap();
    assert_eq!(
        started.raw.header("location"),
        Some(format!("/api/sync/runs/{id}").as_str())
    );
    assert_eq!(started.json["status"], "queued");
    // A second run of the stream while the first is queued.
    let again = s.post(
        "/api/sync/sync_files/runs",
        &token,
        &json!({ "stream": "records" }),
    );
    assert_problem(&again, 409, "sync_run_active");

    // Follow it live: the stream ends with `done` once the run has finished.
    let follow = {
        let (addr, token) = (s.addr, token.clone());
        std::thread::spawn(move || {
            let auth = format!("Bearer {token}");
            patchbay_testkit::http::request(
                addr,
                "GET",
                &format!("/api/sync/runs/{id}/events"),
                &[("Authorization", auth.as_str())],
                b"",
            )
            .unwrap()
        })
    };
    std::thread::sleep(Duration::from_millis(100));
    let w = workers(&s);
    let events = follow.join().unwrap();
    assert_eq!(events.status, 200);
    assert_eq!(events.header("content-type"), Some("text/event-stream"));
    let text = events.text();
    assert!(text.contains("event: progress"), "{text}");
    let done = text
        .split("event: done\ndata: ")
        .nth(1)
        .and_then(|rest| rest.lines().next())
        .unwrap_or_else(|| panic!("no done event in {text}"));
    let done: Value = serde_json::from_str(done).unwrap();
    assert_eq!(done["status"], "succeeded");
    assert_eq!(done["counters"]["created"], 1500);

    let run = s.get(&format!("/api/sync/runs/{id}"), &token);
    assert_eq!(run.status, 200);
    assert_eq!(run.json["counters"]["processed"], 1500);
    let list = s.get(
        "/api/sync/runs?integration=sync_files&status=succeeded",
        &token,
    );
    assert_eq!(list.json["items"][0]["id"], id);

    // Delta pulls: pages in change order, then nothing new.
    let mut after = 0;
    let mut ids = Vec::new();
    loop {
        let page = s.get(
            &format!("/api/sync/sync_files/records?stream=records&after={after}&limit=400"),
            &token,
        );
        assert_eq!(page.status, 200, "{}", page.raw.text());
        for r in page.json["items"].as_array().unwrap() {
            assert_eq!(r["change"], "created");
            ids.push(r["externalId"].as_str().unwrap().to_owned());
        }
        after = page.json["nextAfter"].as_i64().unwrap();
        if page.json["hasMore"] == false {
            break;
        }
    }
    assert_eq!(ids.len(), 1500);
    assert_eq!(ids[0], "0");
    let empty = s.get(
        &format!("/api/sync/sync_files/records?stream=records&after={after}"),
        &token,
    );
    assert_eq!(empty.json["items"], json!([]));
    assert_eq!(empty.json["nextAfter"], after);

    // Errors, and another tenant.
    assert_problem(
        &s.get("/api/sync/sync_files/records?stream=orders", &token),
        404,
        "not_found",
    );
    assert_problem(
        &s.get(
            "/api/sync/sync_files/records?stream=records&limit=0",
            &token,
        ),
        422,
        "validation_failed",
    );
    assert_problem(
        &s.get(&format!("/api/sync/runs/{id}"), &other),
        404,
        "not_found",
    );
    assert_problem(
        &s.post(&format!("/api/sync/runs/{id}/cancel"), &other, &json!({})),
        404,
        "not_found",
    );
    assert_problem(
        &s.post(&format!("/api/sync/runs/{id}/cancel"), &token, &json!({})),
        409,
        "sync_run_finished",
    );
    let page = s.get("/api/sync/sync_files/records?stream=records", &other);
    assert_eq!(page.json["items"], json!([]));
    s.runtime.block_on(w.shutdown(Duration::from_secs(5)));
}

fn field_mappings_are_checked_previewed_and_applied(db: Db) {
    let Some(s) = TestServer::start(db) else {
        return;
    };
    let (_, token) = s.tenant("acme", FEATURES);
    let _dir = files_on(&s, &token, 20);
    let path = "/api/sync/sync_files/mappings/records";
    assert_eq!(s.get(path, &token).json["mapping"], Value::Null);

    let bad = s.put(
        path,
        &token,
        &json!({ "fields": [ { "source": "a[", "target": "x" }, { "source": "b", "target": "x", "cast": "money" } ] }),
    );
    assert_problem(&bad, 422, "validation_failed");
    let fields: Vec<&str> = bad.json["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert!(
        fields.iter().any(|f| f.starts_with("mapping/fields/0")),
        "{fields:?}"
    );
    assert!(
        fields.iter().any(|f| f.starts_with("mapping/fields/1")),
        "{fields:?}"
    );

    let mapping = json!({ "fields": [
        { "source": "title", "target": "name", "cast": "string" },
        { "source": "price", "target": "price.cents", "cast": "integer", "required": true }
    ] });
    // Preview on the connector's first batch, before saving.
    let preview = s.post(
        &format!("{path}/preview"),
        &token,
        &json!({ "mapping": mapping, "limit": 2 }),
    );
    assert_eq!(preview.status, 200, "{}", preview.raw.text());
    assert_eq!(
        preview.json["items"],
        json!([
            { "externalId": "0", "data": { "name": "Product 0", "price": { "cents": 100 } }, "deleted": false, "error": null },
            { "externalId": "1", "data": { "name": "Product 1", "price": { "cents": 101 } }, "deleted": false, "error": null },
        ])
    );
    // Preview on given records, one of which does not map.
    let preview = s.post(
        &format!("{path}/preview"),
        &token,
        &json!({ "mapping": mapping, "records": [ { "id": "x", "title": "X" } ] }),
    );
    assert_eq!(preview.json["items"][0]["externalId"], "x");
    assert!(
        preview.json["items"][0]["error"]
            .as_str()
            .unwrap()
            .contains("price")
    );

    let saved = s.put(path, &token, &mapping);
    assert_eq!(saved.status, 200, "{}", saved.raw.text());
    assert_eq!(saved.json["mapping"]["fields"][1]["target"], "price.cents");

    let w = workers(&s);
    let run = s.post(
        "/api/sync/sync_files/runs",
        &token,
        &json!({ "stream": "records" }),
    );
    let id = run.json["id"].as_i64().unwrap();
    wait_for("the run to finish", Duration::from_secs(30), || {
        let r = s.get(&format!("/api/sync/runs/{id}"), &token);
        (r.json["status"] == "succeeded").then_some(())
    });
    let page = s.get(
        "/api/sync/sync_files/records?stream=records&limit=1",
        &token,
    );
    assert_eq!(
        page.json["items"][0]["data"],
        json!({ "name": "Product 0", "price": { "cents": 100 } })
    );
    // Removing it.
    let removed = s.put(path, &token, &Value::Null);
    assert_eq!(removed.json["mapping"], Value::Null);
    s.runtime.block_on(w.shutdown(Duration::from_secs(5)));
}

fn an_export_is_accepted_past_the_usual_body_limit_and_written(db: Db) {
    let Some(s) = TestServer::start(db) else {
        return;
    };
    let (_, token) = s.tenant("acme", FEATURES);
    let (_, other) = s.tenant("globex", FEATURES);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("export.jsonl");
    let r = s.put(
        "/api/integrations/sync_files/credentials",
        &token,
        &json!({ "values": { "path": path.to_str().unwrap(), "format": "jsonl", "idField": "id" } }),
    );
    assert_eq!(r.status, 200, "{}", r.raw.text());
    let r = s.put(
        "/api/integrations/sync_files/state",
        &token,
        &json!({ "status": "enabled" }),
    );
    assert_eq!(r.status, 200, "{}", r.raw.text());
    // 2,000 records: about 150 KiB, past the 64 KiB of other routes.
    let records: Vec<Value> = (0..2000)
        .map(|i| json!({ "id": format!("h{i}"), "data": { "id": format!("x{i}"), "title": format!("Exported product number {i}") } }))
        .collect();
    let body = json!({ "stream": "records", "records": records });
    assert!(body.to_string().len() > 128 << 10);
    let started = s.post("/api/sync/sync_files/export", &token, &body);
    assert_eq!(started.status, 202, "{}", started.raw.text());
    let id = started.json["id"].as_i64().unwrap();
    assert_eq!(
        started.raw.header("location"),
        Some(format!("/api/sync/runs/{id}").as_str())
    );
    assert_eq!(started.json["direction"], "export");
    assert_eq!(started.json["total"], 2000);
    // Another tenant cannot see it.
    let hidden = s.get(&format!("/api/sync/runs/{id}"), &other);
    assert_problem(&hidden, 404, "not_found");

    let workers = workers(&s);
    let done = wait_for("the export to finish", Duration::from_secs(60), || {
        let r = s.get(&format!("/api/sync/runs/{id}"), &token);
        (r.json["status"] != "queued" && r.json["status"] != "running").then_some(r.json)
    });
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["counters"]["processed"], 2000, "{done}");
    assert_eq!(done["counters"]["failed"], 0, "{done}");
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2000);
    assert_eq!(
        lines[1999],
        json!({ "id": "x1999", "title": "Exported product number 1999" })
    );

    // Bad exports: a problem each, nothing queued.
    let bad = s.post(
        "/api/sync/sync_files/export",
        &token,
        &json!({ "stream": "records", "records": [{ "id": "a", "data": 5 }] }),
    );
    assert_problem(&bad, 422, "validation_failed");
    let bad = s.post(
        "/api/sync/sync_files/export",
        &token,
        &json!({ "stream": "nope", "records": [{ "id": "a", "data": {} }] }),
    );
    assert_problem(&bad, 404, "not_found");
    let bad = s.post(
        "/api/sync/sync_medusa_products/export",
        &token,
        &json!({ "stream": "products", "records": [{ "id": "a", "data": {} }] }),
    );
    assert_problem(&bad, 409, "sync_export_unsupported");
    // Over 16 MiB: refused from its Content-Length, before the body is
    // read. Sent by hand with `Expect: 100-continue` and no body: a client
    // writing all 17 MiB races the server's answer and close.
    {
        use std::io::{Read as _, Write as _};
        let mut conn = std::net::TcpStream::connect(s.addr).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let head = format!(
            "POST /api/sync/sync_files/export HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
            17 << 20
        );
        conn.write_all(head.as_bytes()).unwrap();
        let mut answer = Vec::new();
        let _ = conn.read_to_end(&mut answer);
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
        assert!(answer.contains("payload_too_large"), "{answer}");
        assert!(answer.contains("the body exceeds 16 MiB"), "{answer}");
    }
    let runs = s.get("/api/sync/runs", &token);
    assert_eq!(runs.json["items"].as_array().unwrap().len(), 1);
    s.runtime.block_on(workers.shutdown(Duration::from_secs(5)));
}
