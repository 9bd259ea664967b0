//! The data-sync kill test: a 1,000,000-record import, its server killed
//! with SIGKILL at 10 random moments and restarted each time; at the end the
//! records store holds exactly the source's records (compared by id and
//! content hash: none lost, none duplicated) and the stream's cursor never
//! moved backwards. Into SQLite from a JSON Lines file (`sync_files`), and
//! into PostgreSQL from a PostgreSQL table (`sync_postgres_table`) in another
//! database of the same throwaway cluster.

mod common;

use std::collections::HashMap;
use std::io::{BufRead as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
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

/// Where a cursor is in the source, ordered as the source is read: no
/// cursor is before every other.
type Position = (String, u64);

/// What an import reads.
struct Source {
    integration: &'static str,
    stream: &'static str,
    credentials: Value,
    /// The source's records by id (as the records store keys them), with
    /// their content hash.
    expected: HashMap<String, [u8; 32]>,
    /// Where a run's `cursorEnd` is.
    position: fn(&Value) -> Position,
    /// The run's `total` the source must report, when checked.
    total: Option<u64>,
}

/// The id a record is stored under: a string as is, a number as text.
fn id_of(record: &Value) -> String {
    match &record["id"] {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The byte offset of a `sync_files` cursor (`<offset>:<fingerprint>`).
fn offset(cursor: &Value) -> Position {
    let at = cursor
        .as_str()
        .and_then(|c| c.split(':').next())
        .and_then(|o| o.parse().ok())
        .unwrap_or(0);
    (String::new(), at)
}

/// A JSON Lines file of `RECORDS` records.
fn file_source(dir: &Path) -> Source {
    let source = dir.join("products.jsonl");
    let mut expected: HashMap<String, [u8; 32]> = HashMap::with_capacity(RECORDS);
    let mut out = std::io::BufWriter::new(std::fs::File::create(&source).unwrap());
    for n in 0..RECORDS {
        let r = record(n);
        writeln!(out, "{r}").unwrap();
        expected.insert(id_of(&r), content_hash(&r));
    }
    out.flush().unwrap();
    Source {
        integration: "sync_files",
        stream: "records",
        credentials: json!({
            "path": source.to_str().unwrap(), "format": "jsonl", "idField": "id"
        }),
        expected,
        position: offset,
        total: None,
    }
}

/// The (cursor value, primary key) of a `sync_postgres_table` cursor
/// (`{"c": "<timestamp>", "k": "<id>"}`): the timestamps all have the same
/// shape, so their text sorts as they do.
fn keyset(cursor: &Value) -> Position {
    let Some(text) = cursor.as_str() else {
        return (String::new(), 0);
    };
    let c: Value = serde_json::from_str(text).unwrap();
    (
        c["c"].as_str().unwrap().to_owned(),
        c["k"].as_str().unwrap().parse().unwrap(),
    )
}

/// `psql` of the machine's PostgreSQL: on `PATH`, else the newest under
/// `/usr/lib/postgresql`.
fn psql() -> Command {
    let on_path = Command::new("psql")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let bin = if on_path {
        PathBuf::from("psql")
    } else {
        let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .expect("psql is not installed")
            .filter_map(|e| e.ok().map(|e| e.path().join("bin/psql")))
            .filter(|p| p.is_file())
            .collect();
        found.sort();
        found.pop().expect("psql is not installed")
    };
    let mut c = Command::new(bin);
    // The connector's sessions are in UTC too: the same JSON for timestamps.
    c.env("PGTZ", "UTC")
        .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"]);
    c
}

/// A table of `RECORDS` rows in a new database of the cluster, with the
/// index the connector wants; the cursor values repeat (about 750 rows
/// each) and interleave the ids, so batches end inside ties.
fn postgres_source(pg: &patchbay_testkit::PgCluster) -> Source {
    let url = pg.fresh_database();
    let started = Instant::now();
    let out = psql()
        .args(["-d", &url, "-c"])
        .arg(format!(
            "CREATE TABLE products (
               id bigint PRIMARY KEY, sku text NOT NULL, title text NOT NULL,
               price int NOT NULL, currency text NOT NULL, stock int NOT NULL,
               updated_at timestamptz NOT NULL);
             INSERT INTO products
               SELECT n, 'SKU-' || lpad(n::text, 7, '0'), 'Product ' || n || ' of the kill test',
                 1000 + n % 9000, 'EUR', n % 97,
                 timestamptz '2026-11-01 00:00:00+00' + ((n * 7) % 1337) * interval '1 second'
               FROM generate_series(0, {}) AS n;
             CREATE INDEX ON products (updated_at, id);
             ANALYZE products;",
            RECORDS - 1
        ))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The records as the connector sends them: `row_to_json` of each row.
    let mut reader = psql()
        .args([
            "-d",
            &url,
            "-c",
            "SELECT row_to_json(t.*)::text FROM products AS t",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut expected: HashMap<String, [u8; 32]> = HashMap::with_capacity(RECORDS);
    for line in std::io::BufReader::new(reader.stdout.take().unwrap()).lines() {
        let r: Value = serde_json::from_str(&line.unwrap()).unwrap();
        expected.insert(id_of(&r), content_hash(&r));
    }
    assert!(reader.wait().unwrap().success());
    assert_eq!(expected.len(), RECORDS);
    eprintln!(
        "source table of {RECORDS} rows made in {:?}",
        started.elapsed()
    );
    Source {
        integration: "sync_postgres_table",
        stream: "rows",
        credentials: json!({
            "host": "127.0.0.1",
            "port": pg.port(),
            "database": url.rsplit('/').next().unwrap(),
            "user": "postgres",
            "table": "public.products",
            "cursorColumn": "updated_at",
            "primaryKey": "id",
        }),
        expected,
        position: keyset,
        total: Some(RECORDS as u64),
    }
}

fn kill_and_restart(database: &[&str], config: &DatabaseConfig, source: &Source) {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("master.key");
    let started = Instant::now();
    let addr = local_addr();
    let mut p = server(database, &key, addr, true);
    let admin = common::bootstrap_token(&p.stdout()).expect("a bootstrap token");
    let (_, token) = tenant(addr, &admin, "killtest");
    let ok = |(status, body, text): (u16, Value, String)| {
        assert!((200..300).contains(&status), "{status}: {text}");
        body
    };
    let integration = source.integration;
    ok(call(
        addr,
        "PUT",
        &format!("/api/integrations/{integration}/credentials"),
        &token,
        Some(&json!({ "values": source.credentials })),
    ));
    ok(call(
        addr,
        "PUT",
        &format!("/api/integrations/{integration}/state"),
        &token,
        Some(&json!({ "status": "enabled" })),
    ));
    let run = ok(call(
        addr,
        "POST",
        &format!("/api/sync/{integration}/runs"),
        &token,
        Some(&json!({ "stream": source.stream })),
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
    let position = source.position;
    let mut last_position = Position::default();
    let mut killed_mid_run = 0;
    for _ in 0..KILLS {
        std::thread::sleep(Duration::from_millis(200 + rng.next(1200)));
        let now = ok(call(addr, "GET", &run_path, &token, None));
        let at = position(&now["cursorEnd"]);
        assert!(
            at >= last_position,
            "the cursor moved back: {at:?} < {last_position:?}"
        );
        last_position = at;
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
        let at = position(&now["cursorEnd"]);
        assert!(
            at >= last_position,
            "the cursor moved back: {at:?} < {last_position:?}"
        );
        last_position = at;
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
            .block_on(store.list_sync_records(&scope, integration, source.stream, after, 1000))
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
        stored == source.expected,
        "a stored record differs from its source"
    );
    assert_eq!(
        done["counters"]["created"].as_u64(),
        Some(RECORDS as u64),
        "{done}"
    );
    if let Some(total) = source.total {
        assert_eq!(done["total"].as_u64(), Some(total), "{done}");
    }
    rt.block_on(store.close());
    eprintln!(
        "{integration}: imported, killed {KILLS} times and checked in {:?}",
        started.elapsed()
    );
}

#[test]
fn a_killed_import_into_sqlite_ends_with_exactly_the_source_records() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_arg = data.to_str().unwrap().to_owned();
    let config = DatabaseConfig::from_settings(&data, None).unwrap();
    let source = file_source(dir.path());
    kill_and_restart(&["--data-dir", &data_arg], &config, &source);
}

#[test]
fn a_killed_import_into_postgresql_ends_with_exactly_the_source_records() {
    let Some(pg) = patchbay_testkit::postgres() else {
        return;
    };
    let source = postgres_source(pg);
    let url = pg.fresh_database();
    let config = DatabaseConfig::Postgres { url: url.clone() };
    let dir = tempfile::tempdir().unwrap();
    let data_arg = dir.path().to_str().unwrap().to_owned();
    // The source is on this machine: the operator allows private addresses.
    kill_and_restart(
        &[
            "--data-dir",
            &data_arg,
            "--database-url",
            &url,
            "--connector-allow-private-network",
        ],
        &config,
        &source,
    );
}
