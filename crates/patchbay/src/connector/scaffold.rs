//! `patchbay connector new`: a connector crate that builds, passes its unit
//! tests and its recorded cases as generated.
//!
//! The SDK's sources and its WIT are compiled into this binary and written
//! under `vendor/patchbay-connector-sdk/` (a path dependency), with a
//! `Cargo.lock` derived from the SDK's own: the scaffold builds anywhere
//! crates.io is reachable, with the dependency versions the SDK was tested
//! with.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use patchbay_core::{Category, Hub};
use serde_json::{Value, json};

use super::Failure;

/// The SDK as vendored into every scaffold (path inside the SDK, text).
pub(super) const SDK_FILES: &[(&str, &str)] = &[
    (
        "Cargo.toml",
        include_str!("../../../../sdk/rust/Cargo.toml"),
    ),
    ("README.md", include_str!("../../../../sdk/rust/README.md")),
    (
        "src/lib.rs",
        include_str!("../../../../sdk/rust/src/lib.rs"),
    ),
    (
        "src/guest.rs",
        include_str!("../../../../sdk/rust/src/guest.rs"),
    ),
    (
        "src/http.rs",
        include_str!("../../../../sdk/rust/src/http.rs"),
    ),
    (
        "src/log.rs",
        include_str!("../../../../sdk/rust/src/log.rs"),
    ),
    (
        "src/testing.rs",
        include_str!("../../../../sdk/rust/src/testing.rs"),
    ),
    (
        "wit/connector.wit",
        include_str!("../../../../sdk/rust/wit/connector.wit"),
    ),
];

/// The SDK's lock file: the dependency versions scaffolds start with.
const SDK_LOCK: &str = include_str!("../../../../sdk/rust/Cargo.lock");

/// Where the SDK goes inside a scaffold.
const VENDOR_DIR: &str = "vendor/patchbay-connector-sdk";

/// The credentials every recorded case of a scaffold uses.
const TEST_KEY: &str = "test-key";

/// What the scaffold is for.
#[derive(Debug)]
struct Spec {
    id: String,
    category: Category,
    hub: Hub,
    /// `AcmeNotify`.
    type_name: String,
    /// `Acme Notify`.
    title: String,
    /// `acme-notify-connector`.
    package: String,
    /// `https://api.acme-notify.example`.
    base_url: String,
    /// The hub's required actions.
    actions: &'static [&'static str],
    /// The stream the scaffold reads (data sync only).
    stream: Option<&'static str>,
}

pub(super) fn run(
    id: &str,
    category: &str,
    hub: Option<&str>,
    dir: Option<&Path>,
) -> Result<(), Failure> {
    let spec = spec(id, category, hub).map_err(|m| Failure::usage(anyhow::anyhow!(m)))?;
    let dir = dir.map_or_else(|| PathBuf::from(&spec.id), Path::to_path_buf);
    if dir.exists() {
        let empty = std::fs::read_dir(&dir).is_ok_and(|mut d| d.next().is_none());
        if !dir.is_dir() || !empty {
            return Err(Failure::usage(anyhow::anyhow!(
                "{} already exists and is not an empty folder; nothing was written (choose another --dir)",
                dir.display()
            )));
        }
    }
    for (path, text) in files(&spec) {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    let what = if spec.actions.is_empty() {
        spec.stream
            .map_or_else(|| "check".to_owned(), |s| format!("check, read of `{s}`"))
    } else {
        format!("check, {}", spec.actions.join(", "))
    };
    println!(
        "created connector {} ({} / {}) in {}:\n  src/lib.rs      {what}, with unit tests (cargo test)\n  patchbay.toml   its manifest\n  fixtures/       recorded cases (patchbay connector test)\n  vendor/         the Rust SDK\nnext: cd {} && cargo test && patchbay connector build && patchbay connector test",
        spec.id,
        spec.category,
        spec.hub,
        dir.display(),
        dir.display()
    );
    Ok(())
}

/// Checks the id, category and hub with the catalog's own rules.
fn spec(id: &str, category: &str, hub: Option<&str>) -> Result<Spec, String> {
    patchbay_core::text::check_id(id).map_err(|e| format!("invalid connector id: {e}"))?;
    let category = Category::parse(category).ok_or_else(|| {
        let all: Vec<&str> = Category::ALL.iter().map(|c| c.as_str()).collect();
        format!(
            "unknown category `{category}`: expected one of {}",
            all.join(", ")
        )
    })?;
    let hub = match hub {
        None => category.hubs()[0],
        Some(name) => {
            let hub = Hub::ALL
                .into_iter()
                .find(|h| h.as_str() == name)
                .ok_or_else(|| {
                    let all: Vec<&str> = Hub::ALL.iter().map(|h| h.as_str()).collect();
                    format!("unknown hub `{name}`: expected one of {}", all.join(", "))
                })?;
            if !category.hubs().contains(&hub) {
                let allowed: Vec<&str> = category.hubs().iter().map(|h| h.as_str()).collect();
                return Err(format!(
                    "hub `{hub}` does not belong to category `{category}` (expected {})",
                    allowed.join(" or ")
                ));
            }
            hub
        }
    };
    let words: Vec<String> = id
        .split('_')
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut chars = w.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect();
    let dashed = id.replace('_', "-");
    let dashed = dashed.trim_matches('-');
    Ok(Spec {
        id: id.to_owned(),
        category,
        hub,
        type_name: words.concat(),
        title: words.join(" "),
        package: format!("{dashed}-connector"),
        base_url: format!("https://api.{dashed}.example"),
        actions: hub.required_actions(),
        stream: (hub == Hub::DataSync).then_some("records"),
    })
}

/// Every file of the scaffold: path inside it, text.
fn files(spec: &Spec) -> Vec<(String, String)> {
    let mut files = vec![
        ("Cargo.toml".to_owned(), cargo_toml(spec)),
        ("Cargo.lock".to_owned(), lockfile(&spec.package)),
        (".gitignore".to_owned(), "/target/\n".to_owned()),
        ("src/lib.rs".to_owned(), lib_rs(spec)),
        ("patchbay.toml".to_owned(), manifest(spec)),
        ("README.md".to_owned(), readme(spec)),
    ];
    files.extend(
        SDK_FILES
            .iter()
            .map(|(path, text)| (format!("{VENDOR_DIR}/{path}"), (*text).to_owned())),
    );
    files.extend(fixtures(spec));
    files
}

fn cargo_toml(spec: &Spec) -> String {
    format!(
        r#"# The {title} connector for Patchbay, built as a WebAssembly component:
# `patchbay connector build` (cargo build --release --target wasm32-wasip2).
[package]
name = "{package}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
crate-type = ["cdylib"]

[dependencies]
# Vendored by `patchbay connector new`; Cargo.lock pins what it was tested with.
patchbay-connector-sdk = {{ path = "{VENDOR_DIR}" }}

[profile.release]
opt-level = "s"
debug = false
strip = true
panic = "abort"

# A connector is a workspace of its own, wherever it lives.
[workspace]
"#,
        title = spec.title,
        package = spec.package,
    )
}

/// The SDK's lock file with the scaffold's package added, in the order
/// cargo writes (by name, then version), so `--locked` builds accept it.
fn lockfile(package: &str) -> String {
    let mut pieces = SDK_LOCK.split("[[package]]\n");
    let header = pieces.next().unwrap_or_default().trim_end();
    let mut blocks: Vec<String> = pieces.map(|b| b.trim_end().to_owned()).collect();
    blocks.push(format!(
        "name = \"{package}\"\nversion = \"0.1.0\"\ndependencies = [\n \"patchbay-connector-sdk\",\n]"
    ));
    let key = |block: &str| {
        let field = |name: &str| {
            block
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim_matches('"').to_owned())
                .unwrap_or_default()
        };
        let version: Vec<u64> = field("version = ")
            .split(['.', '-', '+'])
            .map(|part| part.parse().unwrap_or(0))
            .collect();
        (field("name = "), version)
    };
    blocks.sort_by_cached_key(|b| key(b));
    let mut out = format!("{header}\n");
    for block in blocks {
        let _ = write!(out, "\n[[package]]\n{block}\n");
    }
    out
}

fn manifest(spec: &Spec) -> String {
    let direction = match spec.hub {
        Hub::NotificationProviders | Hub::CommunicationChannels => "outbound",
        Hub::DataSync | Hub::WebhookEndpoints => "inbound",
        Hub::PaymentGateways | Hub::ShippingCarriers | Hub::StorageProviders => "bidirectional",
    };
    let quoted = |items: &[&str]| -> String {
        let items: Vec<String> = items.iter().map(|a| format!("\"{a}\"")).collect();
        format!("[{}]", items.join(", "))
    };
    let mut capabilities = format!(
        "direction = \"{direction}\"\nactions = {}\n",
        quoted(spec.actions)
    );
    if let Some(stream) = spec.stream {
        let _ = writeln!(capabilities, "streams = [\"{stream}\"]");
    }
    let host = spec.base_url.trim_start_matches("https://");
    format!(
        r#"# The manifest of the {title} connector: what Patchbay's catalog shows, the
# credentials form, the hosts the connector may reach and the component that
# runs it. Check it with `patchbay catalog check patchbay.toml`.
[integration]
id = "{id}"
title = "{title}"
description = "{title} through its HTTP API, as a WebAssembly connector."
category = "{category}"
hub = "{hub}"
provider_key = "{id}"
version = "0.1.0"
health_check = {{ service = "check" }}
# The only hosts the connector may call; `{{baseUrl}}` is the host of the URL
# in that credential (and of the fixture server in `patchbay connector test`).
network_hosts = ["{host}", "{{baseUrl}}"]

[integration.capabilities]
{capabilities}
[integration.runtime]
kind = "wasm"
component = "dist/{id}.wasm"
deadline_secs = 10
memory_mib = 64

[[integration.credentials.fields]]
key = "apiKey"
label = "API Key"
type = "secret"
required = true

[[integration.credentials.fields]]
key = "baseUrl"
label = "API Base URL"
type = "url"
placeholder = "{base_url}"
help = "Leave empty for {base_url}."
"#,
        title = spec.title,
        id = spec.id,
        category = spec.category,
        hub = spec.hub,
        base_url = spec.base_url,
    )
}

fn lib_rs(spec: &Spec) -> String {
    let Spec {
        title,
        hub,
        type_name: ty,
        base_url,
        id,
        ..
    } = spec;
    let mut src = format!(
        r#"//! {title}: a Patchbay connector of the `{hub}` hub, generated by
//! `patchbay connector new`.
//!
//! It calls a placeholder API (`DEFAULT_BASE_URL`): replace the requests
//! with the provider's own, keeping the hub's input and output shapes,
//! then update the recorded cases in `fixtures/` and run
//! `patchbay connector test`.

use patchbay_connector_sdk::prelude::*;

/// The provider's API, unless the `baseUrl` credential says otherwise
/// (`patchbay connector test` points it at its fixture server).
const DEFAULT_BASE_URL: &str = "{base_url}";
"#
    );
    if !spec.actions.is_empty() {
        let list: Vec<String> = spec.actions.iter().map(|a| format!("\"{a}\"")).collect();
        let _ = write!(
            src,
            r"
/// The actions this connector provides: the hub's required ones.
const ACTIONS: &[&str] = &[{}];
",
            list.join(", ")
        );
    }
    let _ = write!(
        src,
        r#"
struct {ty};

impl Connector for {ty} {{
    /// Asks the provider whether it accepts the API key.
    fn check(ctx: &Context) -> Result<Health, Error> {{
        get(ctx, "/v1/me")?;
        Ok(Health::healthy("the provider accepts the API key"))
    }}
"#
    );
    if !spec.actions.is_empty() {
        src.push_str(
            r#"
    /// Sends each action's input to the provider and returns its answer.
    fn invoke(ctx: &Context, action: &str, input: Value) -> Result<Value, Error> {
        if !ACTIONS.contains(&action) {
            return Err(Error::unsupported(format!("action `{action}`")));
        }
        info!("{action}: calling the provider");
        http::Request::post(url(ctx, &format!("/v1/{action}")))
            .bearer(ctx.require_credential("apiKey")?)
            .json(&input)
            .send()?
            .error_for_status()?
            .json()
    }
"#,
        );
    }
    if let Some(stream) = spec.stream {
        let _ = write!(
            src,
            r#"
    /// Pages through the `{stream}` stream; the cursor is the provider's.
    fn read(ctx: &Context, stream: &str, cursor: Option<&str>) -> Result<Batch, Error> {{
        if stream != "{stream}" {{
            return Err(Error::unsupported(format!("stream `{{stream}}`")));
        }}
        let path = match cursor {{
            Some(cursor) => format!("/v1/{stream}?cursor={{}}", http::encode(cursor)),
            None => "/v1/{stream}".to_owned(),
        }};
        let page = get(ctx, &path)?;
        let records = page["records"]
            .as_array()
            .cloned()
            .ok_or_else(|| Error::fatal("the provider's page has no `records` list"))?;
        let next_cursor = page["next_cursor"].as_str().map(str::to_owned);
        info!("read {{}} record(s) of `{{stream}}`", records.len());
        Ok(Batch {{
            records,
            next_cursor,
        }})
    }}
"#
        );
    }
    let _ = write!(
        src,
        r#"}}

export_connector!({ty});

fn url(ctx: &Context, path: &str) -> String {{
    let base = ctx.setting("baseUrl").unwrap_or(DEFAULT_BASE_URL);
    format!("{{}}{{path}}", base.trim_end_matches('/'))
}}

/// `GET path` with the API key: the answer's JSON.
fn get(ctx: &Context, path: &str) -> Result<Value, Error> {{
    http::Request::get(url(ctx, path))
        .bearer(ctx.require_credential("apiKey")?)
        .send()?
        .error_for_status()?
        .json()
}}

#[cfg(test)]
mod tests {{
    use patchbay_connector_sdk::testing;

    use super::*;

    fn ctx() -> Context {{
        Context::new("{id}").with_credential("apiKey", "{TEST_KEY}")
    }}

    #[test]
    fn check_asks_the_provider_with_the_api_key() {{
        testing::mock_http(|req| {{
            assert_eq!(req.url, format!("{{DEFAULT_BASE_URL}}/v1/me"));
            assert_eq!(req.header_value("authorization"), Some("Bearer {TEST_KEY}"));
            Ok(http::Response::with_json(200, &json!({{ "id": "acct_1" }})))
        }});
        assert!({ty}::check(&ctx()).unwrap().ok);
    }}

    #[test]
    fn a_refused_api_key_is_an_auth_error() {{
        testing::mock_http(|_| {{
            Ok(http::Response::with_json(
                401,
                &json!({{ "error": "invalid API key" }}),
            ))
        }});
        assert_eq!({ty}::check(&ctx()).unwrap_err().kind(), "auth");
    }}

    #[test]
    fn without_an_api_key_nothing_is_sent() {{
        testing::clear_http();
        let err = {ty}::check(&Context::new("{id}")).unwrap_err();
        assert_eq!(err, Error::auth("the `apiKey` credential is missing"));
    }}
"#
    );
    if !spec.actions.is_empty() {
        let _ = write!(
            src,
            r#"
    #[test]
    fn every_action_sends_its_input_and_returns_the_answer() {{
        for &action in ACTIONS {{
            testing::mock_http(move |req| {{
                assert_eq!(req.method, "POST");
                assert_eq!(req.url, format!("{{DEFAULT_BASE_URL}}/v1/{{action}}"));
                assert_eq!(req.json_body(), json!({{ "probe": 1 }}));
                Ok(http::Response::with_json(200, &json!({{ "done": action }})))
            }});
            let output = {ty}::invoke(&ctx(), action, json!({{ "probe": 1 }})).unwrap();
            assert_eq!(output, json!({{ "done": action }}));
        }}
    }}

    #[test]
    fn other_actions_are_unsupported() {{
        let err = {ty}::invoke(&ctx(), "no_such_action", json!({{}})).unwrap_err();
        assert_eq!(err.kind(), "unsupported");
    }}
"#
        );
    }
    if let Some(stream) = spec.stream {
        let _ = write!(
            src,
            r#"
    #[test]
    fn read_pages_through_the_stream_with_the_providers_cursor() {{
        testing::mock_http(|req| {{
            let page = if req.url.ends_with("?cursor=2") {{
                json!({{ "records": [{{ "id": "3" }}], "next_cursor": null }})
            }} else {{
                json!({{ "records": [{{ "id": "1" }}, {{ "id": "2" }}], "next_cursor": "2" }})
            }};
            Ok(http::Response::with_json(200, &page))
        }});
        let first = {ty}::read(&ctx(), "{stream}", None).unwrap();
        assert_eq!(first.records.len(), 2);
        let last = {ty}::read(&ctx(), "{stream}", first.next_cursor.as_deref()).unwrap();
        assert_eq!(last.records, vec![json!({{ "id": "3" }})]);
        assert_eq!(last.next_cursor, None);
    }}
"#
        );
    }
    src.push_str("}\n");
    src
}

/// The recorded cases (`fixtures/*.json`) and exchanges (`fixtures/http/*.json`).
fn fixtures(spec: &Spec) -> Vec<(String, String)> {
    let credentials = json!({ "apiKey": TEST_KEY, "baseUrl": "{{fixture_url}}" });
    let bearer = format!("Bearer {TEST_KEY}");
    let mut files = vec![
        (
            "fixtures/check.json",
            json!({
                "description": "The provider accepts the API key.",
                "operation": "check",
                "credentials": credentials,
                "expect": { "ok": true, "message": "the provider accepts the API key" }
            }),
        ),
        (
            "fixtures/check_refused_key.json",
            json!({
                "description": "A refused API key is an `auth` error; this case answers with its own exchange.",
                "operation": "check",
                "credentials": { "apiKey": "wrong-key", "baseUrl": "{{fixture_url}}" },
                "http": [{
                    "method": "GET",
                    "path": "/v1/me",
                    "status": 401,
                    "body": { "error": "invalid API key" }
                }],
                "expect_error": "auth"
            }),
        ),
        (
            "fixtures/http/me.json",
            json!({
                "method": "GET",
                "path": "/v1/me",
                "request": { "headers": { "authorization": bearer } },
                "status": 200,
                "body": { "id": "acct_test", "name": "Test account" }
            }),
        ),
    ]
    .into_iter()
    .map(|(path, value)| (path.to_owned(), value))
    .collect::<Vec<(String, Value)>>();
    for &action in spec.actions {
        // The hub's own example: a valid input and output of the action.
        let example = spec
            .hub
            .contract()
            .actions
            .iter()
            .find(|a| a.name == action)
            .map(|a| (a.example.input.clone(), a.example.output.clone()));
        let (input, output) = example.unwrap_or_else(|| (json!({}), json!({})));
        files.push((
            format!("fixtures/{action}.json"),
            json!({
                "description": format!("`{action}` with the hub's example input answers the hub's example output."),
                "operation": "invoke",
                "action": action,
                "credentials": credentials,
                "input": input,
                "expect": output
            }),
        ));
        files.push((
            format!("fixtures/http/{action}.json"),
            json!({
                "method": "POST",
                "path": format!("/v1/{action}"),
                "request": { "headers": { "authorization": bearer }, "body": input },
                "status": 200,
                "body": output
            }),
        ));
    }
    if let Some(stream) = spec.stream {
        let records = json!([{ "id": "1", "name": "First" }, { "id": "2", "name": "Second" }]);
        files.push((
            format!("fixtures/read_{stream}.json"),
            json!({
                "description": format!("The first page of `{stream}`, and the cursor of the next."),
                "operation": "read",
                "stream": stream,
                "credentials": credentials,
                "expect": { "records": records, "next_cursor": "2" }
            }),
        ));
        files.push((
            format!("fixtures/http/{stream}.json"),
            json!({
                "method": "GET",
                "path": format!("/v1/{stream}"),
                "request": { "headers": { "authorization": bearer } },
                "status": 200,
                "body": { "records": records, "next_cursor": "2" }
            }),
        ));
    }
    files
        .into_iter()
        .map(|(path, value)| (path, pretty(&value)))
        .collect()
}

/// The order a case's or an exchange's members read best in (`serde_json`
/// sorts them by name).
const MEMBER_ORDER: &[&str] = &[
    "description",
    "operation",
    "action",
    "stream",
    "method",
    "path",
    "request",
    "credentials",
    "input",
    "http",
    "status",
    "headers",
    "body",
    "expect",
    "expect_error",
];

/// Pretty JSON (as `serde_json` writes it) with the members of the case or
/// exchange, and of the exchanges in its `http` list, in [`MEMBER_ORDER`].
fn pretty(value: &Value) -> String {
    let mut out = String::new();
    write_pretty(&mut out, value, 0, true);
    out.push('\n');
    out
}

fn write_pretty(out: &mut String, value: &Value, depth: usize, ordered: bool) {
    let pad = |depth: usize| "  ".repeat(depth);
    match value {
        Value::Object(map) if !map.is_empty() => {
            let rank = |key: &str| {
                MEMBER_ORDER
                    .iter()
                    .position(|k| *k == key)
                    .filter(|_| ordered)
                    .unwrap_or(usize::MAX)
            };
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_by_key(|(k, _)| rank(k));
            out.push_str("{\n");
            for (n, (key, member)) in members.into_iter().enumerate() {
                if n > 0 {
                    out.push_str(",\n");
                }
                let _ = write!(out, "{}{}: ", pad(depth + 1), Value::String(key.clone()));
                // The exchanges of a case's `http` list read like the files of fixtures/http/.
                write_pretty(out, member, depth + 1, ordered && key == "http");
            }
            let _ = write!(out, "\n{}}}", pad(depth));
        }
        Value::Array(items) if !items.is_empty() => {
            out.push_str("[\n");
            for (n, item) in items.iter().enumerate() {
                if n > 0 {
                    out.push_str(",\n");
                }
                out.push_str(&pad(depth + 1));
                write_pretty(out, item, depth + 1, ordered);
            }
            let _ = write!(out, "\n{}]", pad(depth));
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

fn readme(spec: &Spec) -> String {
    format!(
        r#"# {title}

A Patchbay connector of the `{hub}` hub ({category}), written in Rust with the
Patchbay connector SDK and run by Patchbay as a sandboxed WebAssembly component.
Generated by `patchbay connector new`; the requests go to a placeholder API at
{base_url} until you replace them with the provider's.

## Layout

| path | what |
| --- | --- |
| `src/lib.rs` | the connector (`impl Connector`) and its unit tests |
| `patchbay.toml` | the manifest: catalog entry, credentials form, `network_hosts`, `[integration.runtime]` |
| `fixtures/*.json` | recorded cases run by `patchbay connector test` |
| `fixtures/http/*.json` | recorded HTTP exchanges the fixture server answers with |
| `vendor/patchbay-connector-sdk/` | the SDK (see its README), vendored so this crate builds with only crates.io |
| `dist/{id}.wasm` | the component, written by `patchbay connector build` |

## Work on it

```sh
cargo test                       # unit tests, natively (HTTP answered by testing::mock_http)
patchbay connector build         # cargo build --release --target wasm32-wasip2 → dist/{id}.wasm
patchbay connector test          # every fixtures/*.json case against the component
patchbay catalog check patchbay.toml
```

The connector may only reach the hosts in `network_hosts`. In
`patchbay connector test` it may only reach the fixture server on 127.0.0.1:
each case sets the `baseUrl` credential to `{{{{fixture_url}}}}`, which the
command replaces with the server's URL.

## Recorded cases

`fixtures/<name>.json` is one call and what it must give:

```json
{{
  "operation": "invoke",
  "action": "send",
  "credentials": {{ "apiKey": "test-key", "baseUrl": "{{{{fixture_url}}}}" }},
  "input": {{ "…": "…" }},
  "expect": {{ "messageId": "{{{{any}}}}", "status": "queued" }}
}}
```

- `operation`: `check`, `read` (with `stream`, optional `cursor`), `write` (`stream`;
  `input` is the list of records), `invoke` (`action`, `input`) or `verify_webhook`
  (`input`: `{{ "method", "path", "headers", "body" }}`).
- `credentials`, `config`, `api_version`: the call's context.
- `expect`: the result as JSON — `check`: `{{ "ok", "message" }}`; `read`:
  `{{ "records", "next_cursor" }}`; `write`: `{{ "written", "failed" }}`; `invoke`: the
  output; `verify_webhook`: `{{ "accepted": [events] }}` or `{{ "rejected": reason }}`.
  `"{{{{any}}}}"` matches any value. Or `expect_error`: an error kind (`invalid_input`,
  `auth`, `rate_limited`, `transient`, `fatal`, `unsupported`), or
  `{{ "kind": "auth", "message_contains": "…" }}`.
- `http`: exchanges only this case sees (checked before `fixtures/http/`).

`fixtures/http/*.json` holds one exchange (or a list):

```json
{{
  "method": "POST",
  "path": "/v1/send",
  "request": {{ "headers": {{ "authorization": "Bearer test-key" }}, "body": {{ "to": "{{{{any}}}}" }} }},
  "status": 200,
  "headers": {{ "x-request-id": "r_1" }},
  "body": {{ "id": "m_1" }}
}}
```

The first exchange whose method and path (and query, when the recording has one)
match, and whose `request` headers and JSON body members the request carries (others
are ignored), answers; `body` is sent as JSON, or as is when
it is a string. A request nothing matches gets a 404, and the case's report lists it.
"#,
        title = spec.title,
        hub = spec.hub,
        category = spec.category,
        base_url = spec.base_url,
        id = spec.id,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_the_id() {
        let s = spec("acme_notify2", "notification", None).unwrap();
        assert_eq!(
            (s.type_name.as_str(), s.title.as_str(), s.package.as_str()),
            ("AcmeNotify2", "Acme Notify2", "acme-notify2-connector")
        );
        assert_eq!(s.base_url, "https://api.acme-notify2.example");
        assert_eq!(s.hub, Hub::NotificationProviders);
    }

    #[test]
    fn ids_categories_and_hubs_are_checked() {
        assert!(
            spec("Acme", "notification", None)
                .unwrap_err()
                .starts_with("invalid connector id")
        );
        assert!(
            spec("acme", "email", None)
                .unwrap_err()
                .starts_with("unknown category `email`")
        );
        assert!(
            spec("acme", "payment", Some("nope"))
                .unwrap_err()
                .starts_with("unknown hub `nope`")
        );
        assert_eq!(
            spec("acme", "payment", Some("data_sync")).err().unwrap(),
            "hub `data_sync` does not belong to category `payment` (expected payment_gateways)"
        );
    }

    #[test]
    fn fixtures_are_written_like_serde_json_in_reading_order() {
        let value = json!({
            "expect": { "b": [], "a": {} },
            "operation": "check",
            "http": [{ "status": 401, "method": "GET", "body": { "z": 1, "path": "/" } }]
        });
        assert_eq!(
            pretty(&value),
            "{\n  \"operation\": \"check\",\n  \"http\": [\n    {\n      \"method\": \"GET\",\n      \"status\": 401,\n      \"body\": {\n        \"path\": \"/\",\n        \"z\": 1\n      }\n    }\n  ],\n  \"expect\": {\n    \"a\": {},\n    \"b\": []\n  }\n}\n"
        );
        let parsed: Value = serde_json::from_str(&pretty(&value)).unwrap();
        assert_eq!(parsed, value);
    }

    #[test]
    fn the_lock_file_keeps_cargos_order() {
        let lock = lockfile("acme-connector");
        let names: Vec<&str> = lock
            .lines()
            .filter_map(|l| l.strip_prefix("name = \""))
            .map(|l| l.trim_end_matches('"'))
            .collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        assert_eq!(names, sorted);
        assert!(names.contains(&"acme-connector"));
        assert!(lock.starts_with("# This file is automatically @generated by Cargo."));
        assert!(lock.ends_with("]\n") || lock.ends_with("\"\n"));
    }

    #[test]
    fn every_hub_gets_a_manifest_the_catalog_accepts() {
        for hub in Hub::ALL {
            let s = spec("acme_test", hub.category().as_str(), Some(hub.as_str())).unwrap();
            let text = manifest(&s);
            let source = patchbay_core::ManifestSource {
                path: "patchbay.toml",
                text: &text,
            };
            if let Err(e) = patchbay_core::Registry::load([source]) {
                panic!("{hub}: {e}\n{text}");
            }
        }
    }
}
