//! `sync_postgres_table` against a real PostgreSQL (the test kit's throwaway
//! cluster): reads in keyset order with ties, incremental reads, the network
//! policy, identifier injection, `check`, upserts, and errors that never
//! show the password.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use patchbay_runtime::{
    CallContext, CallLog, Connector, ConnectorError, Credentials, HttpClient, HttpPolicy,
    NativeConnectors, WrittenRecord,
};
use serde_json::{Map, Value, json};
use sqlx::postgres::{PgPool, PgPoolOptions};

const PASSWORD: &str = "pw-Zq7-never-shown";

/// A fresh database of the throwaway cluster.
struct Db {
    name: String,
    port: u16,
    pool: PgPool,
}

async fn database() -> Option<Db> {
    let pg = patchbay_testkit::postgres()?;
    let url = pg.fresh_database();
    let name = url.rsplit('/').next().unwrap().to_owned();
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect(&url)
        .await
        .unwrap();
    Some(Db {
        name,
        port: pg.port(),
        pool,
    })
}

impl Db {
    async fn exec(&self, sql: &str) {
        sqlx::raw_sql(sql).execute(&self.pool).await.unwrap();
    }

    /// Credentials for `table`, with `extra` fields on top.
    fn ctx(&self, table: &str, extra: Value) -> CallContext {
        let mut values = json!({
            "host": "127.0.0.1",
            "port": self.port,
            "database": self.name,
            "user": "postgres",
            "password": PASSWORD,
            "table": table,
            "cursorColumn": "updated_at",
            "primaryKey": "id",
        });
        let Value::Object(extra) = extra else {
            panic!("extra fields are an object")
        };
        for (k, v) in extra {
            values[k] = v;
        }
        let Value::Object(values) = values else {
            unreachable!()
        };
        CallContext {
            integration_id: "sync_postgres_table".into(),
            api_version: None,
            credentials: Credentials::new(values),
            config: Map::new(),
            deadline: Duration::from_secs(30),
            correlation_id: None,
            log: CallLog::default(),
        }
    }
}

fn connector_with(allow_private: bool) -> Arc<dyn Connector> {
    NativeConnectors::builtin_with(&HttpClient::new(HttpPolicy {
        allow_private,
        ..HttpPolicy::default()
    }))
    .get("sync_postgres_table", None)
    .unwrap()
}

fn connector() -> Arc<dyn Connector> {
    connector_with(true)
}

/// Reads until the stream is exhausted, as the sync engine does: the
/// records, the cursor to keep, and each batch's size and total.
async fn read_all(
    c: &dyn Connector,
    ctx: &CallContext,
    mut cursor: Option<String>,
) -> (Vec<Value>, Option<String>, Vec<(usize, Option<u64>)>) {
    let mut records = Vec::new();
    let mut batches = Vec::new();
    loop {
        let batch = c.read(ctx, "rows", cursor.as_deref()).await.unwrap();
        assert!(batch.failures.is_empty(), "{:?}", batch.failures);
        batches.push((batch.records.len(), batch.total));
        if batch.records.is_empty() {
            assert_eq!(batch.next_cursor, None);
            return (records, cursor, batches);
        }
        assert!(batch.next_cursor.is_some());
        records.extend(batch.records);
        cursor = batch.next_cursor.or(cursor);
        assert!(batches.len() < 1_000, "the read never ends");
    }
}

fn ids(records: &[Value]) -> Vec<i64> {
    records.iter().map(|r| r["id"].as_i64().unwrap()).collect()
}

/// 2,500 rows with only 3 distinct cursor values, ids interleaved across them.
const ITEMS: &str = "
CREATE TABLE items (id bigint PRIMARY KEY, name text NOT NULL, updated_at timestamptz);
CREATE INDEX ON items (updated_at, id);
INSERT INTO items
  SELECT n, 'item ' || n, timestamptz '2026-01-01 00:00:00+00' + (n % 3) * interval '1 hour'
  FROM generate_series(1, 2500) AS n;
INSERT INTO items VALUES (9001, 'no cursor value', NULL);
";

#[tokio::test]
async fn a_full_read_takes_every_row_once_in_batches_despite_ties() {
    let Some(db) = database().await else { return };
    db.exec(ITEMS).await;
    let c = connector();
    let ctx = db.ctx("public.items", json!({ "batchSize": 1000 }));
    let (records, cursor, batches) = read_all(&*c, &ctx, None).await;
    assert_eq!(
        batches,
        [(1000, Some(2500)), (1000, None), (500, None), (0, None)]
    );
    let got = ids(&records);
    assert_eq!(got.len(), 2500);
    assert_eq!(
        got.iter().copied().collect::<BTreeSet<_>>(),
        (1..=2500).collect::<BTreeSet<_>>(),
        "every row exactly once"
    );
    // Keyset order: by cursor value, then id.
    assert_eq!(&got[..3], [3, 6, 9]);
    assert_eq!(got[833], 1);
    let one = records.iter().find(|r| r["id"] == 1).unwrap();
    assert_eq!(
        one,
        &json!({ "id": 1, "name": "item 1", "updated_at": "2026-01-01T01:00:00+00:00" })
    );
    assert_eq!(
        cursor.as_deref(),
        Some(r#"{"c":"2026-01-01 02:00:00+00","k":"2498"}"#)
    );
    let (lines, _) = ctx.log.drain();
    assert!(
        lines.iter().any(|l| l.message
            == "1 row(s) of `public.items` have no value in the cursor column `updated_at` or \
                the primary key `id`: they are not read"),
        "{lines:?}"
    );

    // The batches went through the pool's connections (2 at most: one may
    // still be on its way back to the pool when the next read asks), and the
    // next read (the default batch size: one batch) uses them again.
    let connections = || async {
        sqlx::query_scalar::<_, i32>(
            "SELECT pid FROM pg_stat_activity \
             WHERE application_name = 'patchbay' AND datname = current_database() ORDER BY pid",
        )
        .fetch_all(&db.pool)
        .await
        .unwrap()
    };
    // (The first connection, which only tried the login, may still be
    // leaving the server.)
    let mut before = connections().await;
    for _ in 0..100 {
        if before.len() <= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        before = connections().await;
    }
    assert!((1..=2).contains(&before.len()), "{before:?}");
    let ctx = db.ctx("items", json!({}));
    let (records, _, batches) = read_all(&*c, &ctx, None).await;
    assert_eq!(records.len(), 2500);
    assert_eq!(batches, [(2500, Some(2500)), (0, None)]);
    assert_eq!(connections().await, before);
}

#[tokio::test]
async fn an_incremental_read_takes_only_rows_changed_after_the_cursor() {
    let Some(db) = database().await else { return };
    db.exec(ITEMS).await;
    let c = connector();
    let ctx = db.ctx("items", json!({ "batchSize": 700 }));
    let (_, cursor, _) = read_all(&*c, &ctx, None).await;
    let cursor = cursor.unwrap();

    // Nothing changed: nothing read, the cursor stays.
    let (records, kept, batches) = read_all(&*c, &ctx, Some(cursor.clone())).await;
    assert!(records.is_empty());
    assert_eq!(kept.as_deref(), Some(cursor.as_str()));
    assert_eq!(batches, [(0, None)]);

    db.exec(
        "
        INSERT INTO items
          SELECT n, 'new ' || n, timestamptz '2026-01-02 00:00:00+00' FROM generate_series(3001, 3005) n;
        UPDATE items SET name = 'changed', updated_at = '2026-01-03 00:00:00+00' WHERE id IN (10, 20);
        -- A tie with the last row read, after it in key order: read.
        INSERT INTO items VALUES (3000, 'tie after', '2026-01-01 02:00:00+00');
        -- Changed without its cursor growing, or behind the cursor: not read (documented).
        UPDATE items SET name = 'silent' WHERE id = 30;
        INSERT INTO items VALUES (0, 'tie before', '2026-01-01 02:00:00+00');
        ",
    )
    .await;
    let (records, next, batches) = read_all(&*c, &ctx, Some(cursor)).await;
    assert_eq!(ids(&records), [3000, 3001, 3002, 3003, 3004, 3005, 10, 20]);
    assert_eq!(records[6]["name"], "changed");
    assert_eq!(batches, [(8, None), (0, None)]);
    assert_eq!(
        next.as_deref(),
        Some(r#"{"c":"2026-01-03 00:00:00+00","k":"20"}"#)
    );
    let (again, _, _) = read_all(&*c, &ctx, next).await;
    assert!(again.is_empty());
}

#[tokio::test]
async fn the_default_network_policy_refuses_a_loopback_database() {
    let Some(db) = database().await else { return };
    db.exec(ITEMS).await;
    let strict = connector_with(false);
    let ctx = db.ctx("items", json!({}));
    for e in [
        strict.read(&ctx, "rows", None).await.unwrap_err(),
        strict.check(&ctx).await.unwrap_err(),
        strict
            .write(&ctx, "rows", vec![json!({ "id": 1 })])
            .await
            .unwrap_err(),
    ] {
        assert!(matches!(e, ConnectorError::Fatal { .. }), "{e:?}");
        assert_eq!(
            e.to_string(),
            "the operator's network policy refuses the database address: `127.0.0.1` is an \
             address that is loopback; connectors may reach only public addresses (the operator \
             can allow private networks)"
        );
    }
    // `builtin()` is the default policy too.
    let default = NativeConnectors::builtin()
        .get("sync_postgres_table", None)
        .unwrap();
    assert!(
        default
            .check(&ctx)
            .await
            .unwrap_err()
            .to_string()
            .contains("network policy")
    );
}

#[tokio::test]
async fn names_cannot_inject_sql() {
    let Some(db) = database().await else { return };
    db.exec(
        r#"
        CREATE TABLE victim (id int PRIMARY KEY, updated_at timestamptz);
        INSERT INTO victim VALUES (1, now());
        CREATE TABLE "we""ird; name" (id int PRIMARY KEY, "Updated At" timestamptz);
        INSERT INTO "we""ird; name" VALUES (1, now()), (2, now());
        "#,
    )
    .await;
    let c = connector();
    for (table, cursor) in [
        ("victim; drop table victim", "updated_at"),
        (r#"victim"; drop table victim; --"#, "updated_at"),
        ("public.victim; drop table victim", "updated_at"),
        ("VICTIM", "updated_at"),
        (
            "victim",
            r#"updated_at" from victim; drop table victim; --"#,
        ),
    ] {
        let ctx = db.ctx(table, json!({ "cursorColumn": cursor }));
        let e = c.read(&ctx, "rows", None).await.unwrap_err();
        assert!(matches!(e, ConnectorError::InvalidInput { .. }), "{e:?}");
        assert!(
            e.to_string().contains("does not exist") || e.to_string().contains("has no column"),
            "{e}"
        );
        if table != "victim" {
            let e = c
                .write(&ctx, "rows", vec![json!({ "id": 2 })])
                .await
                .unwrap_err();
            assert!(matches!(e, ConnectorError::InvalidInput { .. }), "{e:?}");
        }
    }
    for bad in ["a.b.c", "", ".victim", "x\0y"] {
        let e = c
            .read(&db.ctx(bad, json!({})), "rows", None)
            .await
            .unwrap_err();
        assert!(
            matches!(e, ConnectorError::InvalidInput { .. }),
            "{bad:?}: {e:?}"
        );
    }
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM victim")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(left, 1, "the other table is intact");

    // Names with quotes and spaces are quoted, not refused.
    let ctx = db.ctx(
        r#"public.we"ird; name"#,
        json!({ "cursorColumn": "Updated At" }),
    );
    let (records, _, _) = read_all(&*c, &ctx, None).await;
    assert_eq!(ids(&records), [1, 2]);
    let written = c
        .write(
            &ctx,
            "rows",
            vec![json!({ "id": 3, "Updated At": "2026-01-01T00:00:00Z" })],
        )
        .await
        .unwrap();
    assert_eq!(written.written, 1);
}

#[tokio::test]
async fn check_connects_and_names_what_is_missing() {
    let Some(db) = database().await else { return };
    db.exec(
        "
        CREATE TABLE items (id bigint PRIMARY KEY, updated_at timestamptz);
        CREATE INDEX ON items (updated_at, id);
        CREATE TABLE plain (id text PRIMARY KEY, updated_at bigint);
        ",
    )
    .await;
    let c = connector();
    let health = c.check(&db.ctx("items", json!({}))).await.unwrap();
    assert!(health.ok, "{health:?}");
    assert_eq!(
        health.message,
        format!(
            "connected to `{}`; `items` has the cursor column `updated_at` (timestamp with time \
             zone) and the primary key column `id` (bigint)",
            db.name
        )
    );

    let health = c.check(&db.ctx("public.plain", json!({}))).await.unwrap();
    assert!(health.ok, "{health:?}");
    assert!(
        health.message.ends_with(
            r#"; there is no index on ("updated_at", "id"), so each batch scans the table: CREATE INDEX ON "public"."plain" ("updated_at", "id")"#
        ),
        "{}",
        health.message
    );

    let health = c.check(&db.ctx("missing", json!({}))).await.unwrap();
    assert!(!health.ok);
    assert_eq!(
        health.message,
        "connected, but the table `missing` does not exist, or the user `postgres` cannot see it \
         (names are case-sensitive)"
    );
    let health = c
        .check(&db.ctx("items", json!({ "cursorColumn": "changed_at" })))
        .await
        .unwrap();
    assert!(!health.ok);
    assert_eq!(
        health.message,
        "connected, but the table `items` has no column `changed_at` (the cursor column; names \
         are case-sensitive)"
    );
    let health = c
        .check(&db.ctx("items", json!({ "primaryKey": "ID" })))
        .await
        .unwrap();
    assert!(!health.ok);
    assert!(
        health
            .message
            .contains("has no column `ID` (the primary key column")
    );

    let e = c
        .check(&db.ctx("items", json!({ "port": 70000 })))
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid input: the port is not between 1 and 65535"
    );
    let e = c
        .check(&db.ctx("items", json!({ "host": "/tmp" })))
        .await
        .unwrap_err();
    assert!(matches!(e, ConnectorError::InvalidInput { .. }), "{e:?}");

    // TLS: the test cluster offers none; `prefer` (above) connects without,
    // `disable` too, `require` refuses, and an unknown mode is refused.
    let health = c
        .check(&db.ctx("items", json!({ "sslMode": "disable" })))
        .await
        .unwrap();
    assert!(health.ok, "{health:?}");
    let e = c
        .check(&db.ctx("items", json!({ "sslMode": "require" })))
        .await
        .unwrap_err();
    assert!(!e.is_retryable(), "{e:?}");
    assert!(e.to_string().contains("encrypted connection"), "{e}");
    let e = c
        .check(&db.ctx("items", json!({ "sslMode": "verify-ca" })))
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid input: the TLS mode is not one of `prefer`, `require` or `disable`"
    );
}

const PRODUCTS: &str = "
CREATE TABLE products (
  id bigint PRIMARY KEY,
  name text NOT NULL DEFAULT 'unnamed',
  price int,
  note text,
  updated_at timestamptz NOT NULL DEFAULT now()
);
";

async fn product(db: &Db, id: i64) -> Value {
    let text: String = sqlx::query_scalar(
        "SELECT json_build_object('name', name, 'price', price, 'note', note)::text \
         FROM products WHERE id = $1",
    )
    .bind(id)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    serde_json::from_str(&text).unwrap()
}

fn result(index: usize, id: &str, created: bool) -> WrittenRecord {
    WrittenRecord {
        index,
        external_id: Some(id.to_owned()),
        created: Some(created),
    }
}

#[tokio::test]
async fn writes_create_and_update_only_the_columns_given() {
    let Some(db) = database().await else { return };
    db.exec(PRODUCTS).await;
    let c = connector();
    let ctx = db.ctx("products", json!({}));

    let out = c
        .write(
            &ctx,
            "rows",
            vec![
                json!({ "id": 1, "name": "one", "price": 10, "note": "n1" }),
                json!({ "id": 2, "name": "two", "price": 20 }),
            ],
        )
        .await
        .unwrap();
    assert_eq!(out.written, 2);
    assert!(out.failed.is_empty());
    assert_eq!(out.results, [result(0, "1", true), result(1, "2", true)]);

    // Partial records: the columns they lack keep their values.
    let out = c
        .write(
            &ctx,
            "rows",
            vec![
                json!({ "id": 1, "price": 11 }),
                json!({ "id": 3, "name": "three" }),
                json!({ "id": "2", "note": "n2" }),
                json!({ "id": 4 }),
                json!({ "id": 1 }),
            ],
        )
        .await
        .unwrap();
    assert_eq!(out.written, 5);
    assert!(out.failed.is_empty());
    assert_eq!(
        out.results,
        [
            result(0, "1", false),
            result(1, "3", true),
            result(2, "2", false),
            result(3, "4", true),
            result(4, "1", false),
        ]
    );
    assert_eq!(
        product(&db, 1).await,
        json!({ "name": "one", "price": 11, "note": "n1" })
    );
    assert_eq!(
        product(&db, 2).await,
        json!({ "name": "two", "price": 20, "note": "n2" })
    );
    assert_eq!(
        product(&db, 3).await,
        json!({ "name": "three", "price": null, "note": null })
    );
    assert_eq!(
        product(&db, 4).await,
        json!({ "name": "unnamed", "price": null, "note": null })
    );

    // An explicit null sets NULL; the same key twice in a batch is merged in
    // order; keys that are not columns are ignored and logged.
    let out = c
        .write(
            &ctx,
            "rows",
            vec![
                json!({ "id": 1, "note": null }),
                json!({ "id": 5, "name": "five", "bogus": true }),
                json!({ "id": 5, "price": 55 }),
            ],
        )
        .await
        .unwrap();
    assert_eq!(out.written, 3);
    assert_eq!(
        out.results,
        [
            result(0, "1", false),
            result(1, "5", true),
            result(2, "5", false)
        ]
    );
    assert_eq!(
        product(&db, 1).await,
        json!({ "name": "one", "price": 11, "note": null })
    );
    assert_eq!(
        product(&db, 5).await,
        json!({ "name": "five", "price": 55, "note": null })
    );
    let (lines, _) = ctx.log.drain();
    assert!(
        lines.iter().any(|l| l.message.contains("ignored: bogus")),
        "{lines:?}"
    );

    // What was written reads back.
    let (records, _, _) = read_all(&*c, &ctx, None).await;
    assert_eq!(records.len(), 5);
}

#[tokio::test]
async fn bad_records_fail_alone_and_the_others_are_written() {
    let Some(db) = database().await else { return };
    db.exec(PRODUCTS).await;
    db.exec("ALTER TABLE products ADD CONSTRAINT positive CHECK (price > 0)")
        .await;
    let c = connector();
    let ctx = db.ctx("products", json!({}));
    let mut records = vec![
        json!({ "id": 1, "name": "one", "price": "not-a-number-SECRET" }),
        json!({ "name": "no key" }),
        json!("not an object"),
        json!({ "id": 4, "name": "four", "price": 4 }),
        json!({ "id": 5, "name": null }),
        json!({ "id": 6, "name": "six", "price": -6 }),
        json!({ "id": [7], "name": "array key" }),
        json!({ "id": null, "name": "null key" }),
    ];
    records.extend((10..40).map(|n| json!({ "id": n, "name": format!("p{n}"), "price": n })));
    let out = c.write(&ctx, "rows", records).await.unwrap();
    assert_eq!(out.written, 31);
    assert_eq!(
        out.results.iter().map(|r| r.index).collect::<Vec<_>>(),
        std::iter::once(3).chain(8..38).collect::<Vec<_>>()
    );
    assert!(out.results.iter().all(|r| r.created == Some(true)));
    let failed: Vec<(usize, &str)> = out.failed.iter().map(|(i, m)| (*i, m.as_str())).collect();
    assert_eq!(
        failed,
        [
            (
                0,
                r#"the database refused the record: invalid input syntax for type integer: "…" (SQLSTATE 22P02)"#
            ),
            (1, "the record has no value for the primary key column `id`"),
            (2, "the record is not a JSON object"),
            (
                4,
                r#"the database refused the record: null value in column "name" of relation "products" violates not-null constraint (SQLSTATE 23502)"#
            ),
            (
                5,
                r#"the database refused the record: new row for relation "products" violates check constraint "positive" (SQLSTATE 23514)"#
            ),
            (6, "the record's primary key `id` is not a single value"),
            (7, "the record has no value for the primary key column `id`"),
        ]
    );
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM products")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(count, 31);
}

/// What to call with, the kind of error it must fail with, and what it says.
type Case = (CallContext, fn(&ConnectorError) -> bool, &'static str);

#[tokio::test]
async fn errors_say_what_is_wrong_and_never_show_the_password() {
    let Some(db) = database().await else { return };
    db.exec(ITEMS).await;
    let locked = format!("locked_{}", std::process::id());
    db.exec(&format!("CREATE ROLE {locked} NOLOGIN")).await;
    let c = connector();
    let closed = patchbay_testkit::free_port();
    // A server that takes connections and never answers: the call's deadline ends it.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut late = db.ctx(
        "items",
        json!({ "port": silent.local_addr().unwrap().port() }),
    );
    late.deadline = Duration::from_millis(300);
    let cases: Vec<Case> = vec![
        (
            db.ctx("items", json!({ "user": "nobody_here" })),
            |e| matches!(e, ConnectorError::Auth { .. }),
            r#"role "nobody_here" does not exist"#,
        ),
        (
            db.ctx("items", json!({ "user": locked })),
            |e| matches!(e, ConnectorError::Auth { .. }),
            "is not permitted to log in",
        ),
        (
            db.ctx("items", json!({ "database": "no_such_db" })),
            |e| matches!(e, ConnectorError::InvalidInput { .. }),
            "the database `no_such_db` does not exist",
        ),
        (
            db.ctx("items", json!({ "port": closed })),
            |e| matches!(e, ConnectorError::Transient { .. }),
            "cannot talk with the database server",
        ),
        (
            db.ctx("no_such_table", json!({})),
            |e| matches!(e, ConnectorError::InvalidInput { .. }),
            "the table `no_such_table` does not exist",
        ),
        (
            late,
            |e| matches!(e, ConnectorError::Transient { .. }),
            "the database did not answer within",
        ),
    ];
    for (ctx, kind, says) in cases {
        let e = c.read(&ctx, "rows", None).await.unwrap_err();
        let shown = format!("{e} {e:?}");
        assert!(kind(&e), "{shown}");
        assert!(e.to_string().contains(says), "{shown}");
        assert!(!shown.contains(PASSWORD), "{shown}");
        match c.check(&ctx).await {
            Ok(h) => assert!(!h.ok && !h.message.contains(PASSWORD), "{h:?}"),
            Err(e) => assert!(!format!("{e} {e:?}").contains(PASSWORD)),
        }
        let e = c
            .write(&ctx, "rows", vec![json!({ "id": 1 })])
            .await
            .unwrap_err();
        assert!(kind(&e), "{e:?}");
        assert!(!format!("{e} {e:?}").contains(PASSWORD));
        assert!(!format!("{ctx:?}").contains(PASSWORD));
    }

    // A cursor that does not fit the column.
    let ctx = db.ctx("items", json!({}));
    let e = c
        .read(&ctx, "rows", Some(r#"{"c":"not a time","k":"1"}"#))
        .await
        .unwrap_err();
    assert!(matches!(e, ConnectorError::InvalidInput { .. }), "{e:?}");
    assert!(
        e.to_string().contains("the saved cursor does not fit"),
        "{e}"
    );
    let e = c.read(&ctx, "rows", Some("12")).await.unwrap_err();
    assert!(matches!(e, ConnectorError::InvalidInput { .. }), "{e:?}");
    let e = c.read(&ctx, "other", None).await.unwrap_err();
    assert!(matches!(e, ConnectorError::Unsupported { .. }), "{e:?}");
}
