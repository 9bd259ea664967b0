//! The built-in native connectors against a real filesystem.

use std::sync::Arc;
use std::time::Duration;

use patchbay_runtime::{
    CallContext, Connector, ConnectorError, Credentials, NativeConnectors, native::FILE_BATCH,
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
    for n in 0..2_500 {
        text.push_str(&format!("{{\"id\":{n},\"sku\":\"SKU-{n}\"}}\n"));
    }
    text.push_str("{\"id\":2500"); // a line still being written
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
    assert_eq!(ids, (0..2_500).collect::<Vec<i64>>());
    // The unfinished line is read once it is complete.
    std::fs::write(&file, format!("{text},\"sku\":\"SKU-2500\"}}\n")).unwrap();
    let more = f.read(&c, "records", cursor.as_deref()).await.unwrap();
    assert_eq!(more.records, [json!({ "id": 2500, "sku": "SKU-2500" })]);
    // Bad input says what is wrong.
    let err = f.read(&c, "records", Some("nope")).await.unwrap_err();
    assert_eq!(
        err,
        ConnectorError::invalid("the cursor is not a byte offset")
    );
    let err = f.read(&c, "orders", None).await.unwrap_err();
    assert!(matches!(err, ConnectorError::Unsupported { .. }));
    let csv = ctx(
        "sync_files",
        json!({ "path": file.to_str().unwrap(), "format": "csv", "idField": "id" }),
    );
    assert!(matches!(
        f.read(&csv, "records", None).await.unwrap_err(),
        ConnectorError::Unsupported { .. }
    ));
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
