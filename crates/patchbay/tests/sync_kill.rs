//! The data-sync kill test: a 1,000,000-record import from a JSON Lines file,
//! its server killed with SIGKILL at 10 random moments and restarted each
//! time; at the end the records store holds exactly the source's records
//! (compared by id and content hash: none lost, none duplicated) and the
//! stream's cursor never moved backwards. On SQLite and on PostgreSQL.

mod common;

use std::collections::HashMap;
use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{Proc, call, local_addr, patchbay, tenant};
use patchbay_store::DatabaseConfig;
use serde_json::{Value, json};
use sha2::Digest as _;

const RECORDS: usize = 1_000_000;
const KILLS: usize = 10;

fn record(n: usize) -> Value {
    json!({
        "id": format!("p{n:07}"),
        "sku": format!("SKU-{n:07}"),
        "title": format!("Product {n} of the kill test"),
        "price": 1000 + n % 9000,
        "currency": "EUR",
        "stock": n % 97,
        "updatedAt": "2026-11-01T00:00:00Z",
    })
}

fn content_hash(v: &Value) -> [u8; 32] {
    // serde_json's maps are sorted: the same content, the same text.
    sha2::Sha256::digest(v.to_string().as_bytes()).into()
}

/// A tiny deterministic generator (no rand dependency); seeded from the clock
/// and printed, so a failing run can be replayed by hand.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % below
    }
}

fn server(database: &[&str], key: &Path, addr: std::net::SocketAddr, first: bool) -> Proc {
    let listen = addr.to_string();
    let mut args = vec!["serve"];
    args.extend_from_slice(database);
    args.extend_from_slice(&[
        "--master-key-file",
        key.to_str().unwrap(),
        "--listen",
        &listen,
        "--job-lease-secs",
        "1",
        "--log",
        "warn",
    ]);
    if !first {
        args.push("--no-bootstrap-token");
    }
    let mut p = Proc::spawn(patchbay(&args, Path::new("/")));
    p.ready(addr);
    p
}

/// The byte offset of a `sync_files` cursor (`<offset>:<fingerprint>`).
fn offset(cursor: &Value) -> u64 {
    cursor
        .as_str()
        .and_then(|c| c.split(':').next())
        .and_then(|o| o.parse().ok())
        .unwrap_or(0)
}

fn kill_and_restart(database: &[&str], config: &DatabaseConfig) {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("master.key");
    let source = dir.path().join("products.jsonl");
    let mut expected: HashMap<String, [u8; 32]> = HashMap::with_capacity(RECORDS);
    {
        let mut out = std::io::BufWriter::new(std::fs::File::create(&source).unwrap());
        for n in 0..RECORDS {
            let r = record(n);
            writeln!(out, "{r}").unwrap();
            expected.insert(r["id"].as_str().unwrap().to_owned(), content_hash(&r));
        }
        out.flush().unwrap();
    }
    let addr = local_addr();
    let mut p = server(database, &key, addr, true);
    let admin = common::bootstrap_token(&p.stdout()).expect("a bootstrap token");
    let (_, token) = tenant(addr, &admin, "killtest");
    let ok = |(status, body, text): (u16, Value, String)| {
        assert!((200..300).contains(&status), "{status}: {text}");
        body
    };
    ok(call(
        addr,
        "PUT",
        "/api/integrations/sync_files/credentials",
        &token,
        Some(&json!({ "values": {
            "path": source.to_str().unwrap(), "format": "jsonl", "idField": "id"
        } })),
    ));
    ok(call(
        addr,
        "PUT",
        "/api/integrations/sync_files/state",
        &token,
        Some(&json!({ "status": "enabled" })),
    ));
    let run = ok(call(
        addr,
        "POST",
        "/api/sync/sync_files/runs",
        &token,
        Some(&json!({ "stream": "records" })),
    ));
    let run_path = format!("/api/sync/runs/{}", run["id"]);

    let clock_seed = u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
            % u128::from(u64::MAX),
    )
    .unwrap();
    eprintln!("kill moments seeded with {clock_seed}");
    let mut rng = Lcg(clock_seed);
    let mut last_offset = 0;
    let mut killed_mid_run = 0;
    for _ in 0..KILLS {
        std::thread::sleep(Duration::from_millis(200 + rng.next(1200)));
        let now = ok(call(addr, "GET", &run_path, &token, None));
        let at = offset(&now["cursorEnd"]);
        assert!(
            at >= last_offset,
            "the cursor moved back: {at} < {last_offset}"
        );
        last_offset = at;
        if now["status"] == "running" || now["status"] == "queued" {
            killed_mid_run += 1;
        }
        p.signal("-KILL");
        p.wait(Duration::from_secs(10));
        p = server(database, &key, addr, false);
    }
    eprintln!("{killed_mid_run} of {KILLS} kills hit the run while it was active");
    assert!(killed_mid_run >= 3, "too few kills interrupted the run");

    let deadline = Instant::now() + Duration::from_secs(600);
    let done = loop {
        let now = ok(call(addr, "GET", &run_path, &token, None));
        assert!(
            offset(&now["cursorEnd"]) >= last_offset,
            "the cursor moved back"
        );
        last_offset = offset(&now["cursorEnd"]);
        if now["status"] != "running" && now["status"] != "queued" {
            break now;
        }
        assert!(
            Instant::now() < deadline,
            "the run never finished: {now}\n{}",
            p.stderr()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(done["status"], "succeeded", "{done}\n{}", p.stderr());
    assert!(p.stop().success());

    // The records store holds exactly the source's records.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = rt
        .block_on(patchbay_store::connect_for_admin(config))
        .unwrap();
    let scope = {
        let tenants = rt.block_on(store.list_tenants()).unwrap();
        let t = tenants.iter().find(|t| t.slug == "killtest").unwrap();
        let orgs = rt.block_on(store.list_organizations(&t.id)).unwrap();
        patchbay_core::Scope::new(t.id.as_str(), orgs[0].id.as_str())
    };
    let mut stored: HashMap<String, [u8; 32]> = HashMap::with_capacity(RECORDS);
    let mut after = 0;
    loop {
        let rows = rt
            .block_on(store.list_sync_records(&scope, "sync_files", "records", after, 1000))
            .unwrap();
        let Some(last) = rows.last() else { break };
        after = last.seq;
        for r in rows {
            assert!(!r.deleted);
            let data: Value = serde_json::from_str(&r.data).unwrap();
            let previous = stored.insert(r.external_id.clone(), content_hash(&data));
            assert!(previous.is_none(), "{} stored twice", r.external_id);
        }
    }
    assert_eq!(stored.len(), RECORDS, "records lost");
    assert!(
        stored == expected,
        "a stored record differs from its source"
    );
    assert_eq!(
        done["counters"]["created"].as_u64(),
        Some(RECORDS as u64),
        "{done}"
    );
    rt.block_on(store.close());
}

#[test]
fn a_killed_import_into_sqlite_ends_with_exactly_the_source_records() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_arg = data.to_str().unwrap().to_owned();
    let config = DatabaseConfig::from_settings(&data, None).unwrap();
    kill_and_restart(&["--data-dir", &data_arg], &config);
}

#[test]
fn a_killed_import_into_postgresql_ends_with_exactly_the_source_records() {
    let Some(pg) = patchbay_testkit::postgres() else {
        return;
    };
    let url = pg.fresh_database();
    let config = DatabaseConfig::Postgres { url: url.clone() };
    let dir = tempfile::tempdir().unwrap();
    let data_arg = dir.path().to_str().unwrap().to_owned();
    kill_and_restart(&["--data-dir", &data_arg, "--database-url", &url], &config);
}
