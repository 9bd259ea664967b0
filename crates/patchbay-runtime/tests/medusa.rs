//! The `sync_medusa_*` connectors against `patchbay_testkit::medusa`, a
//! FAKE of MedusaJS's Admin API that follows its documented wire format
//! (Medusa itself, a hosted/commercial backend, cannot run here). The fake
//! returns records sharing a sort value in a new order on every request, so
//! offset pagination over ties would be caught.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use patchbay_core::{HostRule, Manifest};
use patchbay_runtime::native::{MEDUSA_PAGE, MedusaPart};
use patchbay_runtime::{
    Batch, CallContext, CallLog, Connector, ConnectorError, Credentials, HttpClient, HttpPolicy,
    NativeConnectors,
};
use patchbay_testkit::medusa::{FakeMedusa, Fault, auth_header};
use serde_json::{Map, Value, json};

const KEY: &str = "sk_test_9f8e7d6c5b4a39281706f5e4d3c2b1a0";
const MS: Duration = Duration::from_millis(1);

fn natives() -> NativeConnectors {
    NativeConnectors::builtin_with(&HttpClient::new(HttpPolicy {
        allow_private: true,
        ..HttpPolicy::default()
    }))
}

fn connector(id: &str) -> Arc<dyn Connector> {
    natives().get(id, None).expect("registered")
}

fn ctx_with(id: &str, url: &str, key: &str) -> CallContext {
    let mut values = Map::new();
    values.insert("medusaApiUrl".into(), url.into());
    values.insert("medusaApiKey".into(), key.into());
    CallContext {
        integration_id: id.into(),
        api_version: None,
        credentials: Credentials::new(values),
        config: Map::new(),
        deadline: Duration::from_secs(30),
        correlation_id: None,
        log: CallLog::default(),
    }
}

fn ctx(fake: &FakeMedusa, id: &str) -> CallContext {
    ctx_with(id, &fake.url(), KEY)
}

/// One run as the sync engine makes it: batch after batch, each batch's
/// cursor kept, until a batch ends the run.
#[derive(Debug)]
struct Run {
    batches: Vec<Batch>,
    cursor: Option<String>,
}

impl Run {
    fn records(&self) -> impl Iterator<Item = &Value> {
        self.batches.iter().flat_map(|b| b.records.iter())
    }

    fn ids(&self) -> Vec<String> {
        self.records()
            .map(|r| r["id"].as_str().expect("an id").to_owned())
            .collect()
    }
}

async fn run(c: &dyn Connector, ctx: &CallContext, stream: &str, cursor: Option<&str>) -> Run {
    let mut cursor = cursor.map(str::to_owned);
    let mut batches = Vec::new();
    for _ in 0..200 {
        let batch = c
            .read(ctx, stream, cursor.as_deref())
            .await
            .unwrap_or_else(|e| panic!("reading {stream}: {e}"));
        let ends =
            batch.next_cursor.is_none() || (batch.records.is_empty() && batch.failures.is_empty());
        if let Some(next) = &batch.next_cursor {
            cursor = Some(next.clone());
        }
        batches.push(batch);
        if ends {
            return Run { batches, cursor };
        }
    }
    panic!("the run of {stream} did not end");
}

/// How many times each id came.
fn tally(ids: &[String]) -> HashMap<&str, usize> {
    let mut t = HashMap::new();
    for id in ids {
        *t.entry(id.as_str()).or_insert(0) += 1;
    }
    t
}

fn assert_once(ids: &[String], expected: &HashSet<String>) {
    let t = tally(ids);
    let twice: Vec<_> = t.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "read more than once: {twice:?}");
    let got: HashSet<String> = ids.iter().cloned().collect();
    let missing: Vec<_> = expected.difference(&got).collect();
    let extra: Vec<_> = got.difference(expected).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:?}, unexpected {extra:?}"
    );
}

#[tokio::test]
async fn a_full_import_reads_every_product_once_through_a_tie_bigger_than_a_page() {
    let fake = FakeMedusa::start(KEY);
    let mut expected = HashSet::new();
    for n in 0..100 {
        fake.advance(MS);
        expected.insert(fake.add_product(&format!("Before {n}"), 1));
    }
    // 250 products that Medusa prints with one `updated_at` (a bulk import);
    // underneath, some differ by microseconds, as in PostgreSQL.
    fake.advance(MS);
    let tied_at = fake.clock();
    for n in 0..250 {
        if n % 3 == 0 {
            fake.advance(Duration::from_micros(3));
        }
        expected.insert(fake.add_product(&format!("Tied {n}"), 1));
    }
    for n in 0..100 {
        fake.advance(MS);
        expected.insert(fake.add_product(&format!("After {n}"), 1));
    }
    assert_eq!(expected.len(), 450);

    let c = connector("sync_medusa_products");
    let cx = ctx(&fake, "sync_medusa_products");
    let first = run(c.as_ref(), &cx, "products", None).await;
    assert_once(&first.ids(), &expected);
    assert_eq!(first.batches[0].total, Some(450));
    assert!(first.batches.len() >= 5, "{} batches", first.batches.len());
    for b in &first.batches {
        assert!(b.records.len() <= MEDUSA_PAGE);
        assert!(b.failures.is_empty());
    }
    for r in first.records() {
        if r["title"].as_str().unwrap().starts_with("Tied") {
            assert_eq!(r["updated_at"], tied_at.as_str());
        }
    }
    // The tie was read by id inside its millisecond.
    let seen = fake.requests();
    assert!(
        seen.iter().any(|r| r.param("order") == Some("id")
            && r.param("updated_at[$gte]") == Some(tied_at.as_str())
            && r.param("updated_at[$lt]").is_some()),
        "no request read the tie by id"
    );

    // Nothing changed: the next run reads nothing, in one request.
    fake.clear_requests();
    let again = run(c.as_ref(), &cx, "products", first.cursor.as_deref()).await;
    assert_eq!(again.ids(), Vec::<String>::new());
    assert_eq!(fake.requests().len(), 1);
}

/// Adds one record of `stream` to the fake; its id.
fn add(fake: &FakeMedusa, stream: &str, n: usize) -> String {
    match stream {
        "products" => fake.add_product(&format!("Product {n}"), 1),
        "customers" => fake.add_customer(&format!("c{n}@example.com")),
        "orders" => fake.add_order(&format!("o{n}@example.com"), "pending"),
        other => panic!("no stream {other}"),
    }
}

#[tokio::test]
async fn a_second_run_reads_only_what_changed_or_was_added() {
    for (integration, stream) in [
        ("sync_medusa_products", "products"),
        ("sync_medusa_customers", "customers"),
        ("sync_medusa_orders", "orders"),
    ] {
        let fake = FakeMedusa::start(KEY);
        let ids: Vec<String> = (0..150)
            .map(|n| {
                fake.advance(MS);
                add(&fake, stream, n)
            })
            .collect();
        let c = connector(integration);
        let cx = ctx(&fake, integration);
        let first = run(c.as_ref(), &cx, stream, None).await;
        assert_eq!(first.ids().len(), 150, "{stream}");
        assert_eq!(first.batches[0].total, Some(150), "{stream}");

        fake.advance(Duration::from_secs(60));
        let mut changed: HashSet<String> = HashSet::new();
        for i in [0, 75, 149] {
            fake.update(&ids[i], json!({ "metadata": { "revision": 2 } }));
            changed.insert(ids[i].clone());
        }
        fake.advance(MS);
        changed.insert(add(&fake, stream, 150));
        changed.insert(add(&fake, stream, 151));

        fake.clear_requests();
        let second = run(c.as_ref(), &cx, stream, first.cursor.as_deref()).await;
        assert_once(&second.ids(), &changed);
        assert_eq!(second.batches[0].total, None, "{stream}");
        for r in second.records() {
            if ids.contains(&r["id"].as_str().unwrap().to_owned()) {
                assert_eq!(r["metadata"]["revision"], 2, "{stream}: {r}");
            }
        }
        // It asked from where the first run stopped.
        let u: Value = serde_json::from_str(first.cursor.as_deref().unwrap()).unwrap();
        assert_eq!(
            fake.requests()[0].param("updated_at[$gte]"),
            u["u"].as_str(),
            "{stream}"
        );

        let third = run(c.as_ref(), &cx, stream, second.cursor.as_deref()).await;
        assert!(third.ids().is_empty(), "{stream}: {:?}", third.ids());
    }
}

#[tokio::test]
async fn a_record_changed_between_pages_is_not_lost() {
    // Distinct timestamps: a record changed after its page moves to the end.
    let fake = FakeMedusa::start(KEY);
    let ids: Vec<String> = (0..250)
        .map(|n| {
            fake.advance(MS);
            fake.add_customer(&format!("c{n}@example.com"))
        })
        .collect();
    let c = connector("sync_medusa_customers");
    let cx = ctx(&fake, "sync_medusa_customers");
    let page = c.read(&cx, "customers", None).await.unwrap();
    assert_eq!(page.records.len(), MEDUSA_PAGE);
    fake.advance(Duration::from_secs(1));
    fake.update(&ids[10], json!({ "first_name": "Read before" }));
    fake.update(&ids[150], json!({ "first_name": "Not read yet" }));
    let rest = run(c.as_ref(), &cx, "customers", page.next_cursor.as_deref()).await;
    let mut all: Vec<String> = page
        .records
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    all.extend(rest.ids());
    let t = tally(&all);
    assert_eq!(t.len(), 250);
    assert_eq!(t[ids[10].as_str()], 2, "read, then read again changed");
    assert_eq!(t[ids[150].as_str()], 1);
    let latest = |id: &str| {
        rest.records()
            .filter(|r| r["id"] == id)
            .last()
            .unwrap()
            .clone()
    };
    assert_eq!(latest(&ids[10])["first_name"], "Read before");
    assert_eq!(latest(&ids[150])["first_name"], "Not read yet");

    // Inside a tie read by id: records leaving the group do not make the
    // next page skip the ones behind them.
    let fake = FakeMedusa::start(KEY);
    let mut tied: Vec<String> = (0..250)
        .map(|n| fake.add_product(&format!("Tied {n}"), 0))
        .collect();
    tied.sort();
    let c = connector("sync_medusa_products");
    let cx = ctx(&fake, "sync_medusa_products");
    let page = c.read(&cx, "products", None).await.unwrap();
    let first: Vec<String> = page
        .records
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        first,
        tied[..MEDUSA_PAGE],
        "the first page of the tie, by id"
    );
    fake.advance(Duration::from_secs(1));
    for id in [&tied[3], &tied[40], &tied[120]] {
        fake.update(id, json!({ "title": "Changed" }));
    }
    let rest = run(c.as_ref(), &cx, "products", page.next_cursor.as_deref()).await;
    let mut all = first.clone();
    all.extend(rest.ids());
    let got: HashSet<&String> = all.iter().collect();
    assert_eq!(got.len(), 250, "every product read at least once");
    for id in [&tied[3], &tied[40], &tied[120]] {
        let last = rest.records().filter(|r| r["id"] == id.as_str()).last();
        assert_eq!(last.unwrap()["title"], "Changed", "{id}");
    }
}

#[tokio::test]
async fn a_store_that_caps_the_page_size_is_still_read_to_the_end() {
    let fake = FakeMedusa::start(KEY);
    fake.set_max_limit(Some(30));
    let mut expected = HashSet::new();
    for n in 0..70 {
        fake.advance(MS);
        expected.insert(fake.add_customer(&format!("c{n}@example.com")));
    }
    // And a tie larger than the capped page.
    fake.advance(MS);
    for n in 70..140 {
        expected.insert(fake.add_customer(&format!("c{n}@example.com")));
    }
    let c = connector("sync_medusa_customers");
    let cx = ctx(&fake, "sync_medusa_customers");
    let all = run(c.as_ref(), &cx, "customers", None).await;
    assert_once(&all.ids(), &expected);
    assert!(all.batches.iter().all(|b| b.records.len() <= 30));
}

#[tokio::test]
async fn variants_are_one_record_each_with_their_product_id() {
    let fake = FakeMedusa::start(KEY);
    // More than a page of products without variants first: one read must
    // go past them to records.
    for n in 0..150 {
        fake.advance(MS);
        fake.add_product(&format!("Plain {n}"), 0);
    }
    let mut expected = HashMap::new();
    for n in 0..40 {
        fake.advance(MS);
        let id = fake.add_product(&format!("Shirt {n}"), n % 4);
        for v in fake.get(&id).unwrap()["variants"].as_array().unwrap() {
            expected.insert(v["id"].as_str().unwrap().to_owned(), id.clone());
        }
    }
    let c = connector("sync_medusa_products");
    let cx = ctx(&fake, "sync_medusa_products");
    let first = c.read(&cx, "variants", None).await.unwrap();
    assert!(
        !first.records.is_empty(),
        "the first read went past the plain products"
    );
    assert_eq!(first.total, None);
    let all = run(c.as_ref(), &cx, "variants", None).await;
    let ids = all.ids();
    assert_once(&ids, &expected.keys().cloned().collect());
    for r in all.records() {
        assert_eq!(
            r["product_id"],
            expected[r["id"].as_str().unwrap()].as_str()
        );
        assert!(r["sku"].is_string() && r["updated_at"].is_string(), "{r}");
    }
    assert!(
        fake.requests()
            .iter()
            .all(|r| r.param("fields") == Some("id,updated_at,*variants")),
        "variants are asked for"
    );
}

#[tokio::test]
async fn inventory_levels_are_read_per_location_and_written() {
    let fake = FakeMedusa::start(KEY);
    let shirt = fake.add_inventory_item("SHIRT-M", &[("sloc_a", 10), ("sloc_b", 4)]);
    let mug = fake.add_inventory_item("MUG", &[("sloc_a", 0)]);
    let c = connector("sync_medusa_inventory");
    let cx = ctx(&fake, "sync_medusa_inventory");
    let read = run(c.as_ref(), &cx, "inventory_levels", None).await;
    let levels: Vec<&Value> = read.records().collect();
    assert_eq!(levels.len(), 3);
    let shirt_a = levels
        .iter()
        .find(|l| l["inventory_item_id"] == shirt.as_str() && l["location_id"] == "sloc_a")
        .unwrap();
    assert_eq!(shirt_a["stocked_quantity"], 10);
    assert_eq!(shirt_a["sku"], "SHIRT-M");
    assert!(shirt_a["id"].as_str().unwrap().starts_with("ilev_"));
    assert_eq!(
        fake.requests()[0].param("fields"),
        Some("id,sku,updated_at,*location_levels")
    );

    fake.advance(Duration::from_secs(5));
    let records = vec![
        json!({ "inventory_item_id": shirt, "location_id": "sloc_a", "stocked_quantity": 40 }),
        json!({ "inventory_item_id": mug, "location_id": "sloc_a", "stocked_quantity": "7" }),
        json!({ "inventory_item_id": "iitem_missing", "location_id": "sloc_a", "stocked_quantity": 1 }),
        json!({ "inventory_item_id": shirt, "location_id": "sloc_nowhere", "stocked_quantity": 3 }),
        json!({ "inventory_item_id": shirt, "location_id": "sloc_a", "stocked_quantity": -3 }),
        json!("not a record"),
    ];
    fake.clear_requests();
    let out = c.write(&cx, "inventory_levels", records).await.unwrap();
    assert_eq!(out.written, 2);
    let failed: Vec<usize> = out.failed.iter().map(|(i, _)| *i).collect();
    assert_eq!(failed, [2, 3, 4, 5]);
    assert!(out.failed[0].1.contains("HTTP 404"), "{}", out.failed[0].1);
    assert!(
        out.failed[0].1.contains("was not found"),
        "{}",
        out.failed[0].1
    );
    assert!(
        out.failed[2].1.contains("stocked_quantity"),
        "{}",
        out.failed[2].1
    );
    let written: Vec<(usize, Option<String>)> = out
        .results
        .iter()
        .map(|r| (r.index, r.external_id.clone()))
        .collect();
    assert_eq!(
        written[0],
        (0, Some(shirt_a["id"].as_str().unwrap().to_owned()))
    );
    assert_eq!(written[1].0, 1);
    assert!(written[1].1.as_deref().unwrap().starts_with("ilev_"));

    let now = fake.get(&shirt).unwrap();
    let level = &now["location_levels"][0];
    assert_eq!(level["stocked_quantity"], 40);
    assert_eq!(level["updated_at"], fake.clock().as_str());
    assert_eq!(
        fake.get(&mug).unwrap()["location_levels"][0]["stocked_quantity"],
        7
    );
    let posts: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST")
        .collect();
    assert_eq!(posts.len(), 4, "malformed records are not sent");
    assert_eq!(
        posts[0].path,
        format!("/admin/inventory-items/{shirt}/location-levels/sloc_a")
    );
    assert_eq!(
        serde_json::from_slice::<Value>(&posts[0].body).unwrap(),
        json!({ "stocked_quantity": 40 })
    );
}

#[tokio::test]
async fn order_status_is_written_with_complete_and_cancel() {
    let fake = FakeMedusa::start(KEY);
    let a = fake.add_order("a@example.com", "pending");
    let b = fake.add_order("b@example.com", "pending");
    let gone = fake.add_order("c@example.com", "canceled");
    let c = connector("sync_medusa_orders");
    let cx = ctx(&fake, "sync_medusa_orders");
    let batch = vec![
        json!({ "id": a, "status": "completed" }),
        json!({ "id": b, "status": "canceled" }),
        json!({ "id": "order_missing", "status": "completed" }),
        json!({ "id": gone, "status": "completed" }),
        json!({ "id": a, "status": "shipped" }),
    ];
    let out = c.write(&cx, "order_status", batch).await.unwrap();
    assert_eq!(out.written, 2);
    let failed: Vec<usize> = out.failed.iter().map(|(i, _)| *i).collect();
    assert_eq!(failed, [2, 3, 4]);
    assert!(
        out.failed[0].1.contains("HTTP 404") && out.failed[0].1.contains("was not found"),
        "{}",
        out.failed[0].1
    );
    assert!(
        out.failed[1].1.contains("not_allowed"),
        "{}",
        out.failed[1].1
    );
    assert_eq!(
        out.results
            .iter()
            .map(|r| (r.index, r.external_id.clone().unwrap(), r.created))
            .collect::<Vec<_>>(),
        [(0, a.clone(), Some(false)), (1, b.clone(), Some(false))]
    );
    assert_eq!(fake.get(&a).unwrap()["status"], "completed");
    assert_eq!(fake.get(&b).unwrap()["status"], "canceled");
    let posts: Vec<String> = fake
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST")
        .map(|r| r.path)
        .collect();
    assert_eq!(
        posts[..2],
        [
            format!("/admin/orders/{a}/complete"),
            format!("/admin/orders/{b}/cancel")
        ]
    );

    // The same batch again (a retry after a transient error): Medusa refuses
    // to complete a completed order, and that counts as written.
    let again = vec![
        json!({ "id": a, "status": "completed" }),
        json!({ "id": b, "status": "cancelled" }),
    ];
    let out = c.write(&cx, "order_status", again).await.unwrap();
    assert_eq!((out.written, out.failed.len()), (2, 0), "{:?}", out.failed);
}

#[tokio::test]
async fn a_bad_key_is_an_auth_error_that_never_shows_the_key() {
    let fake = FakeMedusa::start(KEY);
    fake.add_product("Shirt", 1);
    let wrong = "sk_live_0123456789abcdef0123456789abcdef";
    let c = connector("sync_medusa_products");
    let cx = ctx_with("sync_medusa_products", &fake.url(), wrong);
    let encoded = auth_header(wrong);
    for result in [
        c.check(&cx).await.map(|_| ()),
        c.read(&cx, "products", None).await.map(|_| ()),
    ] {
        let e = result.unwrap_err();
        let ConnectorError::Auth { message } = &e else {
            panic!("not an auth error: {e:?}")
        };
        assert!(message.contains("HTTP 401"), "{message}");
        let shown = e.to_string();
        assert!(
            !shown.contains(wrong) && !shown.contains(&encoded[6..]),
            "{shown}"
        );
    }
    let sent = fake.requests();
    assert_eq!(sent.len(), 2);
    assert!(
        sent.iter()
            .all(|r| r.status == 401 && r.authorization.as_deref() == Some(encoded.as_str()))
    );
}

#[tokio::test]
async fn rate_limits_and_server_errors_are_told_apart() {
    let fake = FakeMedusa::start(KEY);
    let order = fake.add_order("a@example.com", "pending");
    let c = connector("sync_medusa_orders");
    let cx = ctx(&fake, "sync_medusa_orders");

    fake.inject(Fault::RateLimited {
        retry_after_secs: 7,
    });
    match c.read(&cx, "orders", None).await {
        Err(ConnectorError::RateLimited { retry_after_ms, .. }) => {
            assert_eq!(retry_after_ms, Some(7000));
        }
        other => panic!("not rate limited: {other:?}"),
    }
    fake.inject(Fault::ServerError);
    let e = c.read(&cx, "orders", None).await.unwrap_err();
    assert!(
        matches!(e, ConnectorError::Transient { .. }) && e.is_retryable(),
        "{e:?}"
    );
    assert!(e.to_string().contains("HTTP 500"), "{e}");
    // A write stopped by the rate limit fails as a whole (the batch is sent again).
    fake.inject(Fault::RateLimited {
        retry_after_secs: 2,
    });
    let e = c
        .write(
            &cx,
            "order_status",
            vec![json!({ "id": order, "status": "completed" })],
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            ConnectorError::RateLimited {
                retry_after_ms: Some(2000),
                ..
            }
        ),
        "{e:?}"
    );
    // Once Medusa answers again, reading works.
    let batch = c.read(&cx, "orders", None).await.unwrap();
    assert_eq!(batch.records.len(), 1);
}

#[tokio::test]
async fn the_default_policy_refuses_loopback_before_any_request() {
    let fake = FakeMedusa::start(KEY);
    let c = NativeConnectors::builtin()
        .get("sync_medusa_products", None)
        .unwrap();
    let cx = ctx(&fake, "sync_medusa_products");
    let e = c.check(&cx).await.unwrap_err();
    assert!(matches!(e, ConnectorError::Fatal { .. }), "{e:?}");
    assert!(e.to_string().contains("loopback"), "{e}");
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn requests_carry_the_documented_auth_header_and_query() {
    let fake = FakeMedusa::start(KEY);
    for n in 0..120 {
        fake.advance(MS);
        fake.add_customer(&format!("c{n}@example.com"));
    }
    let c = connector("sync_medusa_customers");
    let cx = ctx(&fake, "sync_medusa_customers");
    let health = c.check(&cx).await.unwrap();
    assert!(health.ok);
    assert_eq!(
        health.message,
        "Medusa accepted the API key and lists 120 customers"
    );
    let all = run(c.as_ref(), &cx, "customers", None).await;
    assert_eq!(all.ids().len(), 120);

    let seen = fake.requests();
    let expected_auth = auth_header(KEY);
    for r in &seen {
        assert_eq!(r.method, "GET");
        assert_eq!(r.path, "/admin/customers");
        assert_eq!(r.authorization.as_deref(), Some(expected_auth.as_str()));
        assert_eq!(r.status, 200);
    }
    assert_eq!(seen[0].param("limit"), Some("1"));
    let list = &seen[1];
    assert_eq!(list.param("limit"), Some("100"));
    assert_eq!(list.param("offset"), Some("0"));
    assert_eq!(list.param("order"), Some("updated_at"));
    assert_eq!(list.param("fields"), Some("*addresses"));
    assert_eq!(list.param("updated_at[$gte]"), None);
    let next = &seen[2];
    let first_batch_cursor: Value =
        serde_json::from_str(all.batches[0].next_cursor.as_deref().unwrap()).unwrap();
    assert_eq!(
        next.param("updated_at[$gte]"),
        first_batch_cursor["u"].as_str()
    );
    assert!(
        next.query
            .as_deref()
            .unwrap()
            .contains("updated_at%5B%24gte%5D="),
        "{:?}",
        next.query
    );
    // Milliseconds, as Medusa prints them.
    let u = next.param("updated_at[$gte]").unwrap();
    assert!(
        u.len() == 24 && u.ends_with('Z') && u.as_bytes()[19] == b'.',
        "{u}"
    );
}

#[tokio::test]
async fn unsupported_streams_and_bad_settings_are_refused_plainly() {
    let fake = FakeMedusa::start(KEY);
    let products = connector("sync_medusa_products");
    let cx = ctx(&fake, "sync_medusa_products");
    for e in [
        products
            .write(&cx, "products", vec![json!({})])
            .await
            .unwrap_err(),
        products.read(&cx, "orders", None).await.unwrap_err(),
        connector("sync_medusa_orders")
            .read(&ctx(&fake, "sync_medusa_orders"), "order_status", None)
            .await
            .unwrap_err(),
        connector("sync_medusa_customers")
            .write(&ctx(&fake, "sync_medusa_customers"), "customers", vec![])
            .await
            .unwrap_err(),
    ] {
        assert!(matches!(e, ConnectorError::Unsupported { .. }), "{e:?}");
    }
    let e = products
        .read(&cx, "products", Some("offset=3"))
        .await
        .unwrap_err();
    assert!(matches!(e, ConnectorError::InvalidInput { .. }), "{e:?}");
    let odd = "ftp://medusa.internal.example/secret-path";
    let e = products
        .check(&ctx_with("sync_medusa_products", odd, KEY))
        .await
        .unwrap_err();
    assert!(matches!(e, ConnectorError::InvalidInput { .. }), "{e:?}");
    assert!(!e.to_string().contains("secret-path"), "{e}");
    assert!(fake.requests().is_empty());
}

#[test]
fn the_manifest_declares_what_the_connectors_do() {
    // The package folder is the working directory of tests.
    let path = "../../connectors/sync_medusa/patchbay.toml";
    let text = std::fs::read_to_string(path).unwrap();
    let manifest = Manifest::parse("sync_medusa/patchbay.toml", &text).unwrap();
    let natives = natives();
    for (id, part) in MedusaPart::ALL {
        let (_, integration) = manifest
            .integrations
            .iter()
            .find(|(_, i)| i.id == id)
            .unwrap_or_else(|| panic!("{id} is not in the manifest"));
        let declared: HashSet<&str> = integration
            .capabilities
            .streams
            .iter()
            .map(String::as_str)
            .collect();
        let handled: HashSet<&str> = part
            .read_streams()
            .iter()
            .chain(part.write_streams())
            .copied()
            .collect();
        assert_eq!(declared, handled, "{id}");
        assert_eq!(
            integration.network_hosts,
            [HostRule::FromField("medusaApiUrl".into())],
            "{id}"
        );
        assert!(natives.has(id), "{id}");
    }
}
