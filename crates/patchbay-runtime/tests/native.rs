//! The built-in native connectors against a real filesystem.

use std::sync::Arc;
use std::time::Duration;

use patchbay_runtime::{
    CallContext, Connector, ConnectorError, Credentials, NativeConnectors, RecordFailure,
    native::FILE_BATCH,
};
use serde_json::{Map, Value, json};

fn ctx(id: &str, credentials: Value) -> CallContext {
    let Value::Object(values) = credentials else {
        panic!("not an object")
    };
    CallContext {
        integration_id: id.into(),
        api_version: None,
        credentials: Credentials::new(values),
        config: Map::new(),
        deadline: Duration::from_secs(10),
        correlation_id: None,
        log: patchbay_runtime::CallLog::default(),
    }
}

fn natives(id: &str) -> Arc<dyn Connector> {
    NativeConnectors::builtin().get(id, None).unwrap()
}

#[tokio::test]
async fn local_storage_puts_gets_lists_and_deletes_inside_its_root() {
    let root = tempfile::tempdir().unwrap();
    let c = ctx(
        "storage_local",
        json!({ "root": root.path().to_str().unwrap() }),
    );
    let s = natives("storage_local");
    let health = s.check(&c).await.unwrap();
    assert!(health.ok);
    assert_eq!(health.message, "the root directory is writable");
    let put = s
        .invoke(
            &c,
            "put",
            json!({ "path": "a/b/hello.txt", "content": "hi there" }),
        )
        .await
        .unwrap();
    assert_eq!(put, json!({ "path": "a/b/hello.txt", "size": 8 }));
    assert_eq!(
        std::fs::read_to_string(root.path().join("a/b/hello.txt")).unwrap(),
        "hi there"
    );
    s.invoke(
        &c,
        "put",
        json!({ "path": "top.bin", "contentBase64": "AAEC" }),
    )
    .await
    .unwrap();
    let got = s
        .invoke(&c, "get", json!({ "path": "a/b/hello.txt" }))
        .await
        .unwrap();
    assert_eq!(got["contentBase64"], "aGkgdGhlcmU=");
    let listed = s.invoke(&c, "list", json!({})).await.unwrap();
    assert_eq!(
        listed,
        json!({ "items": [{ "path": "a/b/hello.txt", "size": 8 }, { "path": "top.bin", "size": 3 }] })
    );
    let only_a = s
        .invoke(&c, "list", json!({ "prefix": "a/" }))
        .await
        .unwrap();
    assert_eq!(only_a["items"].as_array().unwrap().len(), 1);
    s.invoke(&c, "delete", json!({ "path": "top.bin" }))
        .await
        .unwrap();
    assert!(!root.path().join("top.bin").exists());
    let missing = s
        .invoke(&c, "get", json!({ "path": "top.bin" }))
        .await
        .unwrap_err();
    assert_eq!(missing, ConnectorError::invalid("no such object"));
    let unknown = s.invoke(&c, "presign", json!({})).await.unwrap_err();
    assert!(matches!(unknown, ConnectorError::Unsupported { .. }));
}

#[tokio::test]
async fn local_storage_refuses_every_way_out_of_its_root() {
    let base = tempfile::tempdir().unwrap();
    let root = base.path().join("root");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(base.path().join("secret.txt"), "outside").unwrap();
    std::os::unix::fs::symlink(base.path(), root.join("escape")).unwrap();
    let c = ctx("storage_local", json!({ "root": root.to_str().unwrap() }));
    let s = natives("storage_local");
    for path in [
        "../secret.txt",
        "/etc/passwd",
        "a/../../secret.txt",
        "escape/secret.txt",
        "",
    ] {
        let err = s
            .invoke(&c, "get", json!({ "path": path }))
            .await
            .unwrap_err();
        assert!(
            matches!(err, ConnectorError::InvalidInput { .. }),
            "{path}: {err:?}"
        );
        let err = s
            .invoke(&c, "put", json!({ "path": path, "content": "x" }))
            .await
            .unwrap_err();
        assert!(
            matches!(err, ConnectorError::InvalidInput { .. }),
            "{path}: {err:?}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(base.path().join("secret.txt")).unwrap(),
        "outside"
    );
    // A root that is not there: the check fails, saying why.
    let gone = ctx(
        "storage_local",
        json!({ "root": "/nonexistent/patchbay-root" }),
    );
    let err = s.check(&gone).await.unwrap_err();
    assert!(
        err.to_string()
            .starts_with("the root directory is unusable"),
        "{err}"
    );
    let relative = ctx("storage_local", json!({ "root": "relative/dir" }));
    assert!(matches!(
        s.check(&relative).await.unwrap_err(),
        ConnectorError::InvalidInput { .. }
    ));
}

#[tokio::test]
async fn file_sync_reads_json_lines_in_batches_and_resumes_from_the_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("products.jsonl");
    let mut text = String::new();
    for n in 0..12_500 {
        text.push_str(&format!("{{\"id\":{n},\"sku\":\"SKU-{n}\"}}\n"));
    }
    text.push_str("{\"id\":12500"); // a line still being written
    std::fs::write(&file, &text).unwrap();
    let c = ctx(
        "sync_files",
        json!({ "path": file.to_str().unwrap(), "format": "jsonl", "idField": "id" }),
    );
    let f = natives("sync_files");
    assert!(f.check(&c).await.unwrap().ok);
    let mut cursor: Option<String> = None;
    let mut ids = Vec::new();
    let mut batches = 0;
    loop {
        let batch = f.read(&c, "records", cursor.as_deref()).await.unwrap();
        if batch.records.is_empty() {
            break;
        }
        assert!(batch.records.len() <= FILE_BATCH);
        batches += 1;
        ids.extend(batch.records.iter().map(|r| r["id"].as_i64().unwrap()));
        cursor = batch.next_cursor;
    }
    assert_eq!(batches, 3);
    assert_eq!(ids, (0..12_500).collect::<Vec<i64>>());
    // The unfinished line is read once it is complete.
    std::fs::write(&file, format!("{text},\"sku\":\"SKU-12500\"}}\n")).unwrap();
    let more = f.read(&c, "records", cursor.as_deref()).await.unwrap();
    assert_eq!(more.records, [json!({ "id": 12500, "sku": "SKU-12500" })]);
    // Bad input says what is wrong.
    let err = f.read(&c, "records", Some("nope")).await.unwrap_err();
    assert_eq!(
        err,
        ConnectorError::invalid("the cursor is not a byte offset")
    );
    let err = f.read(&c, "orders", None).await.unwrap_err();
    assert!(matches!(err, ConnectorError::Unsupported { .. }));
    let xml = ctx(
        "sync_files",
        json!({ "path": file.to_str().unwrap(), "format": "xml", "idField": "id" }),
    );
    assert!(matches!(
        f.read(&xml, "records", None).await.unwrap_err(),
        ConnectorError::Unsupported { .. }
    ));
    let no_format = ctx("sync_files", json!({ "path": file.to_str().unwrap() }));
    assert_eq!(
        f.read(&no_format, "records", None).await.unwrap_err(),
        ConnectorError::invalid("no format is configured")
    );
}

fn files_ctx(path: &std::path::Path, format: &str) -> CallContext {
    ctx(
        "sync_files",
        json!({ "path": path.to_str().unwrap(), "format": format, "idField": "id" }),
    )
}

/// Every batch from `cursor` until the stream is exhausted: the records,
/// the failures and the last cursor.
async fn read_all(
    c: &CallContext,
    mut cursor: Option<String>,
) -> (Vec<Value>, Vec<RecordFailure>, Option<String>) {
    let f = natives("sync_files");
    let (mut records, mut failures) = (Vec::new(), Vec::new());
    loop {
        let batch = f.read(c, "records", cursor.as_deref()).await.unwrap();
        assert!(batch.records.len() + batch.failures.len() <= FILE_BATCH);
        records.extend(batch.records);
        failures.extend(batch.failures);
        match batch.next_cursor {
            Some(next) => cursor = Some(next),
            None => return (records, failures, cursor),
        }
    }
}

/// Marks `path` as last modified an hour ago.
fn settle(path: &std::path::Path) {
    let f = std::fs::File::options().append(true).open(path).unwrap();
    f.set_modified(std::time::SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
}

#[tokio::test]
async fn file_sync_reads_csv_with_every_quoting_rule() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("products.csv");
    let text = concat!(
        "\u{feff}id, title ,price,,note\r\n",
        "1,Plain,10,x,simple\r\n",
        "2,\"Comma, inside\",20,,\"say \"\"hi\"\"\"\r\n",
        "3,\"Two\r\nlines\",30,,\"\"\r\n",
        "\r\n",
        "4,5\" tall,40,,\"\"\"quoted\"\"\"\n",
        "5,Ünïcödé,,,\n",
    );
    std::fs::write(&file, text).unwrap();
    let c = files_ctx(&file, "csv");
    let (records, failures, cursor) = read_all(&c, None).await;
    assert_eq!(failures, []);
    assert_eq!(
        records,
        [
            json!({ "id": "1", "title": "Plain", "price": "10", "note": "simple" }),
            json!({ "id": "2", "title": "Comma, inside", "price": "20", "note": "say \"hi\"" }),
            json!({ "id": "3", "title": "Two\r\nlines", "price": "30", "note": "" }),
            json!({ "id": "4", "title": "5\" tall", "price": "40", "note": "\"quoted\"" }),
            json!({ "id": "5", "title": "Ünïcödé", "price": "", "note": "" }),
        ]
    );
    let offset: u64 = cursor.unwrap().split(':').next().unwrap().parse().unwrap();
    assert_eq!(offset, text.len() as u64);

    // Semicolons, as spreadsheets write them in much of Europe.
    let semi = dir.path().join("semi.csv");
    std::fs::write(&semi, "id;name\n7;\"a;b\"\n").unwrap();
    let c = ctx(
        "sync_files",
        json!({ "path": semi.to_str().unwrap(), "format": "csv", "idField": "id", "delimiter": ";" }),
    );
    assert_eq!(
        read_all(&c, None).await.0,
        [json!({ "id": "7", "name": "a;b" })]
    );
    let c = ctx(
        "sync_files",
        json!({ "path": semi.to_str().unwrap(), "format": "csv", "idField": "id", "delimiter": "#" }),
    );
    assert!(matches!(
        natives("sync_files")
            .read(&c, "records", None)
            .await
            .unwrap_err(),
        ConnectorError::InvalidInput { .. }
    ));

    // A header naming a column twice cannot be read at all.
    let twice = dir.path().join("twice.csv");
    std::fs::write(&twice, "id,a,a\n1,2,3\n").unwrap();
    assert_eq!(
        natives("sync_files")
            .read(&files_ctx(&twice, "csv"), "records", None)
            .await
            .unwrap_err(),
        ConnectorError::invalid("the header names the column `a` twice")
    );
    // A header alone, or nothing: no records.
    for (name, text) in [
        ("empty.csv", ""),
        ("header.csv", "id,a\n"),
        ("cut.csv", "id,a"),
    ] {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        let (records, failures, _) = read_all(&files_ctx(&p, "csv"), None).await;
        assert!(records.is_empty() && failures.is_empty(), "{name}");
    }
}

#[tokio::test]
async fn file_sync_resumes_csv_from_its_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("orders.csv");
    let mut text = String::from("id,total\n");
    for n in 0..12_500 {
        text.push_str(&format!("{n},\"{n}.00\"\n"));
    }
    std::fs::write(&file, &text).unwrap();
    let c = files_ctx(&file, "csv");
    let f = natives("sync_files");
    let first = f.read(&c, "records", None).await.unwrap();
    assert_eq!(first.records.len(), FILE_BATCH);
    assert_eq!(first.records[0], json!({ "id": "0", "total": "0.00" }));
    let (rest, failures, cursor) = read_all(&c, first.next_cursor.clone()).await;
    assert_eq!(failures, []);
    let ids: Vec<String> = first
        .records
        .iter()
        .chain(&rest)
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, (0..12_500).map(|n| n.to_string()).collect::<Vec<_>>());
    // Nothing new: an empty batch and no cursor.
    let again = f.read(&c, "records", cursor.as_deref()).await.unwrap();
    assert_eq!((again.records.len(), again.next_cursor), (0, None));

    // Appended rows, the last one without its line break yet: the header is
    // read again, only the new complete rows come.
    text.push_str("12500,\"1,5\"\n12501,7");
    std::fs::write(&file, &text).unwrap();
    let (new, _, cursor2) = read_all(&c, cursor.clone()).await;
    assert_eq!(new, [json!({ "id": "12500", "total": "1,5" })]);
    // Once the file has settled, the last row counts as complete.
    settle(&file);
    let (last, _, cursor3) = read_all(&c, cursor2.clone()).await;
    assert_eq!(last, [json!({ "id": "12501", "total": "7" })]);
    assert_ne!(cursor3, cursor2);
    // A plain offset (no fingerprint) is accepted too.
    let plain = cursor.unwrap().split(':').next().unwrap().to_owned();
    let (from_plain, _, _) = read_all(&c, Some(plain)).await;
    assert_eq!(from_plain.len(), 2);

    // A file replaced by another: read again from the start, said in the log.
    std::fs::write(&file, "id,total\nA,1\nB,2\nC,3\nD,4\nE,5\n").unwrap();
    let (replaced, _, _) = read_all(&c, cursor3).await;
    let ids: Vec<&str> = replaced.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["A", "B", "C", "D", "E"]);
    let (lines, _) = c.log.drain();
    assert!(
        lines.iter().any(|l| l
            .message
            .starts_with("the file is not the one the cursor was taken in")),
        "{lines:?}"
    );
}

#[tokio::test]
async fn file_sync_counts_malformed_json_lines_as_failures_and_reads_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mixed.jsonl");
    let mut text = String::new();
    let mut bad_at = Vec::new();
    for n in 0..1_500 {
        let line = match n % 100 {
            7 => format!("{{\"id\":{n},\"email\":\"secret-{n}@example.com\""),
            8 => format!("[\"secret-{n}\"]"),
            9 => "   ".to_owned(),
            _ => format!("{{\"id\":{n}}}"),
        };
        if n % 100 == 7 || n % 100 == 8 {
            bad_at.push(text.len());
        }
        text.push_str(&line);
        text.push('\n');
    }
    text.push_str("\u{ff}not utf-8 either\n");
    let mut bytes = text.clone().into_bytes();
    // Not UTF-8 at all.
    bad_at.push(bytes.len());
    bytes.extend_from_slice(b"{\"id\": \"\xff\xfe\"}\n");
    bytes.extend_from_slice(b"{\"id\":\"tail\"}");
    std::fs::write(&file, &bytes).unwrap();
    let c = files_ctx(&file, "jsonl");
    let (records, failures, cursor) = read_all(&c, None).await;
    let ids: Vec<&Value> = records.iter().map(|r| &r["id"]).collect();
    let want: Vec<Value> = (0..1_500)
        .filter(|n| !matches!(n % 100, 7..=9))
        .map(|n| json!(n))
        .chain([json!("tail")])
        .collect();
    assert_eq!(ids, want.iter().collect::<Vec<_>>());
    // 15 cut objects, 15 arrays, the `\u{ff}` line and the bad bytes.
    assert_eq!(failures.len(), 32, "{failures:?}");
    let positions: Vec<String> = failures.iter().map(|f| f.position.clone()).collect();
    let mut expected: Vec<String> = bad_at[..30].iter().map(|b| format!("byte {b}")).collect();
    expected.push(format!(
        "byte {}",
        text.len() - "\u{ff}not utf-8 either\n".len()
    ));
    expected.push(format!("byte {}", bad_at[30]));
    assert_eq!(positions, expected);
    assert_eq!(
        failures[0].message,
        "the line is not valid JSON (it ends early at column 38)"
    );
    assert_eq!(failures[1].message, "the line is JSON but not an object");
    for f in &failures {
        assert!(!f.message.contains("secret"), "{f:?}");
        assert_eq!(f.external_id, None);
    }
    // The cursor is at the end, the unterminated but whole last object read.
    let offset: usize = cursor.unwrap().split(':').next().unwrap().parse().unwrap();
    assert_eq!(offset, bytes.len());
}

#[tokio::test]
async fn file_sync_refuses_csv_rows_with_the_wrong_number_of_fields() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("people.csv");
    let text = "name,id,email\nAnn,1,ann@example.com\nBob,2\nCid,3,cid@example.com,extra\n\"Dee\"x,4,d@example.com\nEve,5,eve@example.com\n";
    std::fs::write(&file, text).unwrap();
    let c = files_ctx(&file, "csv");
    let (records, failures, _) = read_all(&c, None).await;
    assert_eq!(
        records,
        [
            json!({ "name": "Ann", "id": "1", "email": "ann@example.com" }),
            json!({ "name": "Eve", "id": "5", "email": "eve@example.com" }),
        ]
    );
    let at = |row: &str| format!("byte {}", text.find(row).unwrap());
    assert_eq!(
        failures,
        [
            RecordFailure {
                position: at("Bob"),
                external_id: Some("2".into()),
                message: "the row has 2 field(s) and the header 3".into(),
            },
            RecordFailure {
                position: at("Cid"),
                external_id: Some("3".into()),
                message: "the row has 4 field(s) and the header 3".into(),
            },
            RecordFailure {
                position: at("\"Dee"),
                external_id: Some("4".into()),
                message: "field 1: a closing quote is followed by other characters (a quote \
                          inside a quoted field is written twice)"
                    .into(),
            },
        ]
    );
    for f in &failures {
        assert!(!f.message.contains("example.com"), "{f:?}");
    }
}

#[derive(Debug)]
struct Named(&'static str);

#[async_trait::async_trait]
impl Connector for Named {
    async fn check(&self, _: &CallContext) -> Result<patchbay_runtime::Health, ConnectorError> {
        Ok(patchbay_runtime::Health {
            ok: true,
            message: self.0.to_owned(),
        })
    }
}

#[tokio::test]
async fn file_sync_writes_json_lines_that_read_back_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.jsonl");
    let c = files_ctx(&path, "jsonl");
    let f = natives("sync_files");
    let first = vec![
        json!({ "id": "a1", "title": "Desk", "tags": ["wood"] }),
        json!("not an object"),
        json!({ "id": 7, "title": "Lamp" }),
    ];
    let out = f.write(&c, "records", first.clone()).await.unwrap();
    assert_eq!(out.written, 2);
    assert_eq!(
        out.failed,
        vec![(1, "the record is not a JSON object".to_owned())]
    );
    let ids: Vec<_> = out
        .results
        .iter()
        .map(|r| (r.index, r.external_id.clone()))
        .collect();
    assert_eq!(
        ids,
        vec![(0, Some("a1".to_owned())), (2, Some("7".to_owned()))]
    );
    // A second write appends.
    f.write(&c, "records", vec![json!({ "id": "a3" })])
        .await
        .unwrap();
    let (records, failures, _) = read_all(&c, None).await;
    assert!(failures.is_empty());
    assert_eq!(
        records,
        vec![first[0].clone(), first[2].clone(), json!({ "id": "a3" })]
    );
    assert!(matches!(
        f.write(&c, "other", vec![]).await,
        Err(ConnectorError::Unsupported { .. })
    ));
}

#[tokio::test]
async fn file_sync_writes_csv_under_the_files_header_with_quoting() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.csv");
    let c = files_ctx(&path, "csv");
    let f = natives("sync_files");
    // A new file: the header comes from the first record.
    let out = f
        .write(
            &c,
            "records",
            vec![
                json!({ "id": "1", "note": "comma, and \"quotes\"", "qty": 3 }),
                json!({ "id": "2", "note": "two\nlines", "qty": null }),
            ],
        )
        .await
        .unwrap();
    assert_eq!((out.written, out.failed.len()), (2, 0));
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        text,
        "id,note,qty\n1,\"comma, and \"\"quotes\"\"\",3\n2,\"two\nlines\",\n"
    );
    // An existing file: its header decides; an unknown field is refused.
    let out = f
        .write(
            &c,
            "records",
            vec![
                json!({ "id": "3", "colour": "red" }),
                json!({ "qty": 5, "id": "4" }),
            ],
        )
        .await
        .unwrap();
    assert_eq!(out.written, 1);
    assert_eq!(
        out.failed,
        vec![(0, "field `colour` is not a column of the file".to_owned())]
    );
    settle(&path);
    let (records, failures, _) = read_all(&c, None).await;
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(
        records,
        vec![
            json!({ "id": "1", "note": "comma, and \"quotes\"", "qty": "3" }),
            json!({ "id": "2", "note": "two\nlines", "qty": "" }),
            json!({ "id": "4", "note": "", "qty": "5" }),
        ]
    );
}

#[tokio::test]
async fn the_api_version_in_effect_picks_the_implementation() {
    let mut n = NativeConnectors::default();
    n.register("gateway_x", None, Arc::new(Named("any")));
    n.register("gateway_x", Some("2023-10-16"), Arc::new(Named("old")));
    let c = ctx("gateway_x", json!({}));
    let check = |v: Option<&str>| {
        let conn = n.get("gateway_x", v).unwrap();
        let c = c.clone();
        async move { conn.check(&c).await.unwrap().message }
    };
    assert_eq!(check(Some("2023-10-16")).await, "old");
    assert_eq!(check(Some("2024-06-20")).await, "any");
    assert_eq!(check(None).await, "any");
    assert!(n.get("gateway_y", None).is_none());
    // Credentials never show in debug output.
    let secret = ctx("gateway_x", json!({ "secretKey": "sk_live_very_secret" }));
    assert!(!format!("{secret:?}").contains("sk_live_very_secret"));
}
