//! Hub contracts on the action path, with a scripted connector standing in
//! for a storage spoke: a hub action's input is checked before the
//! connector is called (and refused input never reaches it), the output
//! after it (502 `connector_invalid_output`, logged without values), for
//! optional hub actions too; a spoke's own actions pass unchecked. On
//! SQLite and PostgreSQL.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use common::Harness;
use patchbay_core::{IntegrationStatus, ManifestSource, Registry};
use patchbay_runtime::{CallContext, Connector, ConnectorError, Health};
use patchbay_service::ServiceError;
use patchbay_service::integrations::{StateIn, VersionChoice};
use patchbay_service::logs::LogQueryIn;
use serde_json::{Value, json};

/// A storage spoke with the hub's actions, the optional `presign`, and an
/// action of its own.
const MANIFEST: &str = r#"
[integration]
id = "storage_scripted"
title = "Scripted storage"
description = "A storage spoke whose answers the test decides."
category = "storage"
hub = "storage_providers"
provider_key = "scripted"

[integration.capabilities]
direction = "bidirectional"
actions = ["put", "get", "delete", "list", "presign", "thumbnail"]
"#;

/// Answers every call with the output the test set, counting calls.
struct Scripted {
    calls: AtomicUsize,
    answer: Mutex<Value>,
}

impl Scripted {
    fn answer(&self, v: Value) {
        *self.answer.lock().unwrap() = v;
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl Connector for Scripted {
    async fn check(&self, _: &CallContext) -> Result<Health, ConnectorError> {
        Ok(Health {
            ok: true,
            message: "scripted".into(),
        })
    }

    async fn invoke(&self, _: &CallContext, _: &str, _: Value) -> Result<Value, ConnectorError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Ok(self.answer.lock().unwrap().clone())
    }
}

async fn install(h: &Harness) -> Arc<Scripted> {
    let registry = Registry::load(
        patchbay_connectors::builtin_sources()
            .map(|b| ManifestSource {
                path: b.path,
                text: b.text,
            })
            .chain([ManifestSource {
                path: "scripted/patchbay.toml",
                text: MANIFEST,
            }]),
    )
    .unwrap();
    h.services.set_registry(registry);
    let scripted = Arc::new(Scripted {
        calls: AtomicUsize::new(0),
        answer: Mutex::new(Value::Null),
    });
    h.services
        .register_native("storage_scripted", None, scripted.clone());
    h.services
        .set_state(
            &h.a,
            "storage_scripted",
            StateIn {
                status: Some(IntegrationStatus::Enabled),
                api_version: VersionChoice::Unchanged,
            },
        )
        .await
        .unwrap();
    scripted
}

fn fields(e: &ServiceError) -> Vec<(String, &'static str)> {
    let ServiceError::Invalid { errors, .. } = e else {
        panic!("not a validation error: {e:?}");
    };
    let mut out: Vec<(String, &'static str)> =
        errors.iter().map(|f| (f.field.clone(), f.code)).collect();
    out.sort_unstable();
    out
}

fn connector_message(e: &ServiceError) -> &str {
    match e {
        ServiceError::Connector {
            code: "connector_invalid_output",
            message,
            retry_after_secs: None,
        } => message,
        other => panic!("not an invalid output: {other:?}"),
    }
}

async fn input_breaking_the_contract_never_reaches_the_connector(h: Harness) {
    let scripted = install(&h).await;
    let s = &h.services;
    let err = s
        .invoke_action(
            &h.a,
            "storage_scripted",
            "put",
            json!({ "path": 3, "contentBase64": "not base64!", "acl": "public" }),
        )
        .await
        .unwrap_err();
    assert_eq!(
        fields(&err),
        [
            ("input/acl".to_owned(), "unknown_field"),
            ("input/contentBase64".to_owned(), "invalid_base64"),
            ("input/path".to_owned(), "invalid_type"),
        ]
    );
    let err = s
        .invoke_action(
            &h.a,
            "storage_scripted",
            "presign",
            json!({ "path": "a", "method": "post" }),
        )
        .await
        .unwrap_err();
    assert_eq!(
        fields(&err),
        [("input/method".to_owned(), "invalid_option")]
    );
    assert_eq!(scripted.calls(), 0, "refused input reached the connector");

    // Valid input and output go through untouched.
    scripted.answer(json!({ "path": "a.txt", "size": 5, "etag": "\"abc\"" }));
    let ok = s
        .invoke_action(
            &h.a,
            "storage_scripted",
            "put",
            json!({ "path": "a.txt", "content": "hello", "contentType": "text/plain" }),
        )
        .await
        .unwrap();
    assert_eq!(
        ok.output,
        json!({ "path": "a.txt", "size": 5, "etag": "\"abc\"" })
    );
    assert_eq!(scripted.calls(), 1);
}

async fn output_breaking_the_contract_is_the_connectors_fault(h: Harness) {
    let scripted = install(&h).await;
    let s = &h.services;
    scripted.answer(json!({ "path": "a.txt", "size": "5", "owner": "OUTPUT_CANARY" }));
    let err = s
        .invoke_action(
            &h.a,
            "storage_scripted",
            "put",
            json!({ "path": "a.txt", "content": "x" }),
        )
        .await
        .unwrap_err();
    let message = connector_message(&err);
    assert!(
        message.contains("at /owner (unknown_field), /size (invalid_type)"),
        "{message}"
    );
    assert!(!message.contains("OUTPUT_CANARY"), "{message}");
    let correlation = message.rsplit(' ').next().unwrap();
    let logged = s
        .query_logs(
            &h.a,
            Some("storage_scripted"),
            LogQueryIn {
                correlation_id: Some(correlation.to_owned()),
                ..LogQueryIn::default()
            },
        )
        .await
        .unwrap()
        .items;
    assert_eq!(logged.len(), 1, "{logged:?}");
    let entry = &logged[0];
    assert_eq!(entry.level, patchbay_core::LogLevel::Error);
    assert_eq!(entry.operation, "action.put");
    let details = entry.details.as_ref().unwrap();
    let pointers: Vec<&str> = details["invalidOutput"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["pointer"].as_str().unwrap())
        .collect();
    assert_eq!(pointers, ["/owner", "/size"]);
    assert!(
        !serde_json::to_string(entry)
            .unwrap()
            .contains("OUTPUT_CANARY")
    );

    // Not an object at all: the whole output is named.
    scripted.answer(json!("done"));
    let err = s
        .invoke_action(&h.a, "storage_scripted", "list", json!({}))
        .await
        .unwrap_err();
    assert!(
        connector_message(&err).contains("at (root) (invalid_type)"),
        "{err}"
    );

    // An optional hub action is held to its contract as well.
    scripted.answer(
        json!({ "url": "not a url", "method": "get", "expiresAt": "2026-11-01T00:15:00Z" }),
    );
    let err = s
        .invoke_action(
            &h.a,
            "storage_scripted",
            "presign",
            json!({ "path": "a", "method": "get" }),
        )
        .await
        .unwrap_err();
    assert!(
        connector_message(&err).contains("/url (invalid_format)"),
        "{err}"
    );

    // A spoke's own action has no contract: anything goes, both ways.
    scripted.answer(json!(["whatever", 1]));
    let own = s
        .invoke_action(
            &h.a,
            "storage_scripted",
            "thumbnail",
            json!({ "any": { "shape": true } }),
        )
        .await
        .unwrap();
    assert_eq!(own.output, json!(["whatever", 1]));
    assert_eq!(scripted.calls(), 4);
}

on_both!(
    input_breaking_the_contract_never_reaches_the_connector,
    output_breaking_the_contract_is_the_connectors_fault,
);
