//! No secret leaks: canary secrets are saved for several integrations, every
//! route is exercised (failing paths too) with trace logging on, and then the
//! canaries are searched for — plain, base64 and hex — in the API responses,
//! the log output, the operation logs, the events and the raw database
//! (SQLite file and WAL; a PostgreSQL dump). There must be no hit.

mod common;

use std::path::Path;

use base64::Engine as _;
use common::{Proc, call, local_addr, patchbay};
use patchbay_server::routes;
use serde_json::{Value, json};

const CANARIES: &[&str] = &[
    "CNRYstripeSK7731x",
    "CNRYwebhook5520q",
    "CNRYmedusaKey4410z",
    "CNRYs3secret9912k",
    "CNRYsmtpPass5531m",
    "CNRYtwilioTok8123w",
];

/// Every encoding under which a canary must not appear.
fn forms(canary: &str) -> Vec<String> {
    let b = canary.as_bytes();
    let mut out = vec![canary.to_owned(), hex(b), hex(b).to_uppercase()];
    for engine in [
        &base64::engine::general_purpose::STANDARD,
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ] {
        let enc = engine.encode(b);
        // Also the part of the encoding that is stable whatever precedes the canary.
        out.push(enc.trim_end_matches('=').chars().take(16).collect());
    }
    out
}

fn hex(b: &[u8]) -> String {
    use std::fmt::Write as _;
    b.iter().fold(String::new(), |mut s, x| {
        let _ = write!(s, "{x:02x}");
        s
    })
}

#[track_caller]
fn assert_clean(place: &str, haystack: &[u8]) {
    let text = String::from_utf8_lossy(haystack);
    for c in CANARIES {
        for f in forms(c) {
            assert!(!text.contains(&f), "canary {c} found as `{f}` in {place}");
        }
    }
}

/// Saves canaries, walks every route (and failing paths), returns every response body.
fn exercise(addr: std::net::SocketAddr, admin: &str) -> String {
    let (tenant, t) = common::tenant(addr, admin, "leaky");
    let mut seen = String::new();
    let mut record = |r: (u16, Value, String)| seen.push_str(&r.2);
    let put = |path: &str, body: Value| call(addr, "PUT", path, &t, Some(&body));
    record(put(
        "/api/integrations/gateway_stripe/credentials",
        json!({ "values": { "publishableKey": "pk_1", "secretKey": CANARIES[0], "webhookSecret": CANARIES[1] } }),
    ));
    record(put(
        "/api/integrations/sync_medusa/credentials",
        json!({ "values": { "medusaApiUrl": "https://m.example.com", "medusaApiKey": CANARIES[2], "medusaWebhookSecret": "wh-plain" } }),
    ));
    record(put(
        "/api/integrations/storage_s3/credentials",
        json!({ "values": { "region": "eu", "bucket": "b", "accessKeyId": "AK", "secretAccessKey": CANARIES[3] } }),
    ));
    record(put(
        "/api/integrations/notification_smtp/credentials",
        json!({ "values": { "host": "smtp.example.com", "port": 587, "security": "starttls", "password": CANARIES[4], "fromAddress": "a@b.c" } }),
    ));
    record(put(
        "/api/integrations/channel_twilio_sms/credentials",
        json!({ "values": { "accountSid": "AC1", "authToken": CANARIES[5], "fromNumber": "+1555" } }),
    ));
    // Failing paths that carry secrets: invalid saves, a secret in an unknown field, a wrong type, malformed JSON.
    record(put(
        "/api/integrations/gateway_stripe/credentials",
        json!({ "values": { "secretKey": CANARIES[0], "surprise": CANARIES[0] } }),
    ));
    record(put(
        "/api/integrations/gateway_stripe/credentials",
        json!({ "values": { "publishableKey": CANARIES[1], "secretKey": 5, "webhookSecret": "x", "captureMethod": CANARIES[0] } }),
    ));
    record(put(
        "/api/integrations/gateway_stripe/state",
        json!({ "status": CANARIES[0], "apiVersion": CANARIES[1] }),
    ));
    record(call(
        addr,
        "GET",
        &format!("/api/logs?level={}", CANARIES[3]),
        &t,
        None,
    ));
    record(put(
        "/api/integrations/sync_medusa/credentials",
        json!({ "values": { "medusaApiUrl": CANARIES[2], "medusaApiKey": CANARIES[2] } }),
    ));
    record(put(
        "/api/integrations/gateway_stripe/credentials",
        json!({ "values": CANARIES[0] }),
    ));
    let auth = format!("Bearer {t}");
    let raw = patchbay_testkit::http::request(
        addr,
        "PUT",
        "/api/integrations/gateway_stripe/credentials",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        format!("{{\"values\": {{\"secretKey\": \"{}\"", CANARIES[0]).as_bytes(),
    )
    .unwrap();
    record((raw.status, Value::Null, raw.text()));
    // Lifecycle changes that decrypt (enable validation) and log.
    for id in [
        "gateway_stripe",
        "storage_s3",
        "notification_smtp",
        "sync_medusa_products",
        "channel_twilio_sms",
    ] {
        record(put(
            &format!("/api/integrations/{id}/state"),
            json!({ "status": "enabled" }),
        ));
    }
    record(put(
        "/api/bundles/sync_medusa/state",
        json!({ "enabled": true }),
    ));
    record(put(
        "/api/integrations/storage_s3/state",
        json!({ "status": "revoked" }),
    ));
    // Every route, with the tenant token and with the admin token.
    for route in routes::table() {
        let method = route.method.to_ascii_uppercase();
        let path = route.path.replace(
            "{id}",
            if route.path.starts_with("/api/tenants") {
                &tenant
            } else if route.path.starts_with("/api/bundles") {
                "sync_medusa"
            } else if route.path.starts_with("/api/tokens") {
                "tok_none"
            } else {
                "gateway_stripe"
            },
        );
        if method == "DELETE" || route.operation_id == "putCredentials" {
            continue;
        }
        let body = match route.operation_id {
            "setIntegrationState" => Some(json!({ "status": "disabled" })),
            "setBundleState" => Some(json!({ "enabled": false })),
            "putSettings" => Some(json!({ "logRetentionDays": 30, "errorLogRetentionDays": 90 })),
            "createTenant" => Some(json!({ "slug": "other", "name": "Other" })),
            "createOrganization" => Some(json!({ "slug": "org2", "name": "Org" })),
            "createToken" => {
                Some(json!({ "name": "x", "tenantId": tenant, "features": ["integrations.view"] }))
            }
            "createUser" => Some(
                json!({ "email": "leak@example.com", "name": "L", "password": CANARIES[4], "role": "viewer", "tenantId": tenant }),
            ),
            _ => None,
        };
        for token in [&t, admin] {
            record(call(addr, &method, &path, token, body.as_ref()));
        }
    }
    for q in [
        "/api/logs?limit=200",
        "/api/events?limit=1000",
        "/api/integrations/gateway_stripe/logs",
        "/api/integrations/sync_medusa_products/logs",
    ] {
        let r = call(addr, "GET", q, &t, None);
        assert_eq!(r.0, 200, "{}", r.2);
        record(r);
    }
    let masked = call(
        addr,
        "GET",
        "/api/integrations/gateway_stripe/credentials",
        &t,
        None,
    );
    assert_eq!(
        masked.1["values"]["secretKey"], "••••••••",
        "the canary is stored (masked read proves it)"
    );
    record(masked);
    record(call(
        addr,
        "DELETE",
        "/api/integrations/channel_twilio_sms/credentials",
        &t,
        None,
    ));
    seen
}

#[test]
fn canaries_appear_nowhere_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let addr = local_addr();
    let mut server = Proc::spawn(patchbay(
        &[
            "serve",
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--listen",
            &addr.to_string(),
            "--log",
            "trace,sqlx=trace",
        ],
        Path::new("/"),
    ));
    server.ready(addr);
    let admin = patchbay_testkit::wait_for(
        "bootstrap token",
        std::time::Duration::from_secs(10),
        || common::bootstrap_token(&server.stdout()),
    );
    let responses = exercise(addr, &admin);
    assert_clean("API responses", responses.as_bytes());
    // The database while the server runs (file and write-ahead log)…
    let db = dir.path().join("patchbay.db");
    assert_clean("the SQLite file (live)", &common::read_all(&db));
    assert_clean(
        "the SQLite WAL (live)",
        &common::read_all(&dir.path().join("patchbay.db-wal")),
    );
    assert!(server.stop().success());
    // …and after shutdown.
    assert_clean("the SQLite file", &common::read_all(&db));
    let logs = server.stderr();
    assert!(
        logs.contains("TRACE") || logs.contains("DEBUG"),
        "trace logging was on"
    );
    assert_clean("the log output", logs.as_bytes());
    assert_clean("stdout", server.stdout().as_bytes());
}

#[test]
fn canaries_appear_nowhere_on_postgresql() {
    let Some(pg) = patchbay_testkit::postgres() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let url = pg.fresh_database();
    let addr = local_addr();
    let mut server = Proc::spawn(patchbay(
        &[
            "serve",
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--database-url",
            &url,
            "--listen",
            &addr.to_string(),
            "--log",
            "trace,sqlx=trace",
        ],
        Path::new("/"),
    ));
    server.ready(addr);
    let admin = patchbay_testkit::wait_for(
        "bootstrap token",
        std::time::Duration::from_secs(10),
        || common::bootstrap_token(&server.stdout()),
    );
    let responses = exercise(addr, &admin);
    assert_clean("API responses", responses.as_bytes());
    let dump = pg.dump(&url);
    assert!(
        dump.contains("integration_credentials"),
        "the dump holds the tables"
    );
    assert_clean("the PostgreSQL dump", dump.as_bytes());
    assert!(server.stop().success());
    assert_clean("the log output", server.stderr().as_bytes());
}
