//! `patchbay connector test`: recorded cases run against the component.
//!
//! A case is one file `fixtures/<name>.json`:
//!
//! ```json
//! {
//!   "operation": "invoke",
//!   "action": "send",
//!   "credentials": { "apiKey": "test-key", "baseUrl": "{{fixture_url}}" },
//!   "input": { "to": ["ada@example.com"], "subject": "Hi", "text": "Hello" },
//!   "expect": { "messageId": "{{any}}", "status": "queued" }
//! }
//! ```
//!
//! `operation` is `check`, `read` (`stream`, `cursor`), `write` (`stream`,
//! `input`: the records), `invoke` (`action`, `input`) or `verify_webhook`
//! (`input`: `{method, path, headers, body}`); `expect` is the result as JSON
//! (`check`: `{ok, message}`; `read`: `{records, next_cursor}`; `write`:
//! `{written, failed}`; `verify_webhook`: `{accepted}` or `{rejected}`), or
//! `expect_error` an error kind (`"auth"`, or `{"kind", "message_contains"}`).
//! `"{{any}}"` in `expect` matches any value.
//!
//! The component's HTTP goes to a fixture server on 127.0.0.1, the only
//! address it may reach in this command; `{{fixture_url}}` anywhere in a case
//! or a recording is that server's URL, so a case points the connector at it
//! through its credentials or configuration. The server answers from the
//! case's own `http` list, then from `fixtures/http/*.json` — each file one
//! recorded exchange or a list of them:
//!
//! ```json
//! { "method": "POST", "path": "/v1/send",
//!   "request": { "headers": { "authorization": "Bearer test-key" }, "body": { "to": "{{any}}" } },
//!   "status": 200, "headers": { "content-type": "application/json" }, "body": { "id": "m_1" } }
//! ```
//!
//! The first exchange whose method and path (the query too when the
//! recording has one) match, and whose optional `request` headers and JSON
//! body members the request carries (members not named are ignored), is
//! answered; an unmatched request gets a 404 and is reported with the case.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, Response, Uri};
use patchbay_core::HostRule;
use patchbay_runtime::http::{HttpClient, HttpPolicy, Resolve};
use patchbay_runtime::{
    CallContext, CallLog, Connector, ConnectorError, Credentials, WebhookOutcome, WebhookRequest,
};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{ConnectorDir, Failure, component};

/// Replaced by the fixture server's URL (`http://127.0.0.1:<port>`).
const FIXTURE_URL: &str = "{{fixture_url}}";
/// In `expect` and in recorded requests: any value.
const ANY: &str = "{{any}}";

/// One recorded test case (`fixtures/<name>.json`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    /// For people reading the file.
    #[serde(default)]
    #[allow(dead_code, reason = "documentation inside the fixture file")]
    description: Option<String>,
    operation: Operation,
    #[serde(default)]
    action: Option<String>,
    #[serde(default)]
    stream: Option<String>,
    #[serde(default)]
    cursor: Option<String>,
    #[serde(default)]
    api_version: Option<String>,
    #[serde(default)]
    credentials: Map<String, Value>,
    #[serde(default)]
    config: Map<String, Value>,
    #[serde(default)]
    input: Option<Value>,
    /// Exchanges only this case's requests see, before `fixtures/http/`.
    #[serde(default)]
    http: Vec<Exchange>,
    #[serde(default)]
    expect: Option<Value>,
    #[serde(default)]
    expect_error: Option<ExpectError>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Operation {
    Check,
    Read,
    Write,
    Invoke,
    VerifyWebhook,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ExpectError {
    Kind(String),
    Detailed(ExpectErrorDetailed),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectErrorDetailed {
    kind: String,
    #[serde(default)]
    message_contains: Option<String>,
}

/// One recorded HTTP exchange.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Exchange {
    method: String,
    /// `/v1/send`; with a `?query`, the query must match too.
    path: String,
    /// What the request must also carry to be answered by this exchange.
    #[serde(default)]
    request: RequestMatch,
    #[serde(default = "Exchange::default_status")]
    status: u16,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    /// JSON (sent as JSON), a string (sent as is) or absent (empty).
    #[serde(default)]
    body: Option<Value>,
}

impl Exchange {
    fn default_status() -> u16 {
        200
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestMatch {
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    body: Option<Value>,
}

/// An exchange and where it was recorded, for reports.
#[derive(Debug, Clone)]
struct Recorded {
    source: String,
    exchange: Exchange,
}

/// What the fixture server knows.
#[derive(Debug)]
struct Server {
    shared: Vec<Recorded>,
    current: Mutex<CurrentCase>,
}

/// The running case's own exchanges, and the requests it made.
#[derive(Debug, Default)]
struct CurrentCase {
    exchanges: Vec<Recorded>,
    requests: Vec<String>,
}

/// A case file that could be read, or why not.
struct Loaded {
    name: String,
    file: String,
    case: Result<Case, String>,
}

/// Runs every case; `Ok(false)` when one failed (each reported on stdout).
pub(super) fn run(dir: &ConnectorDir, locked: bool) -> Result<bool, Failure> {
    if let Some(why) = component::stale_because(dir) {
        eprintln!("patchbay: building first: {why}");
        component::build(dir, locked)?;
    }
    let fixtures = dir.root.join("fixtures");
    let cases = load_cases(&fixtures)?;
    if cases.is_empty() {
        return Err(anyhow::anyhow!(
            "no test cases: add fixtures/<name>.json files to {}",
            dir.root.display()
        )
        .into());
    }
    let recordings = load_recordings(&fixtures.join("http"))?;
    let bytes = std::fs::read(&dir.component)
        .with_context(|| format!("cannot read {}", dir.component.display()))?;
    let loaded = component::load(&bytes, dir.memory_bytes)?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime
        .block_on(async {
            let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                .await
                .context("cannot start the fixture server on 127.0.0.1")?;
            let addr = listener.local_addr()?;
            let url = format!("http://{addr}");
            let server = Arc::new(Server {
                shared: recordings
                    .into_iter()
                    .map(|mut r| {
                        r.exchange = substitute_exchange(r.exchange, &url);
                        r
                    })
                    .collect(),
                current: Mutex::new(CurrentCase::default()),
            });
            let app = axum::Router::new()
                .fallback(answer)
                .with_state(server.clone());
            tokio::spawn(async move {
                let _ = axum::serve(listener, app).await;
            });

            // Test mode: the fixture server is the only address reachable; no
            // name is resolved, so no request leaves the machine.
            let client = HttpClient::new(HttpPolicy {
                allow_private: true,
                resolver: Arc::new(NoResolver),
                ..HttpPolicy::default()
            });
            let connector = loaded.with_network(
                client,
                vec![HostRule::Exact {
                    host: addr.ip().to_string(),
                    port: Some(addr.port()),
                }],
            );

            println!(
                "running {} case{} against {} (fixture server {url})",
                cases.len(),
                if cases.len() == 1 { "" } else { "s" },
                dir.component_display
            );
            let (mut passed, mut failed) = (0, 0);
            for loaded in cases {
                let report = match loaded.case {
                    Err(problem) => Err(vec![format!("{}: {problem}", loaded.file)]),
                    Ok(case) => run_case(&connector, dir, &server, &loaded.file, case, &url).await,
                };
                match report {
                    Ok(()) => {
                        passed += 1;
                        println!("ok      {}", loaded.name);
                    }
                    Err(lines) => {
                        failed += 1;
                        println!("FAILED  {}", loaded.name);
                        for line in lines {
                            println!("        {line}");
                        }
                    }
                }
            }
            println!(
                "\ntest result: {}. {passed} passed; {failed} failed",
                if failed == 0 { "ok" } else { "FAILED" }
            );
            Ok::<bool, anyhow::Error>(failed == 0)
        })
        .map_err(Failure::from)
}

fn load_cases(dir: &Path) -> anyhow::Result<Vec<Loaded>> {
    let mut cases = Vec::new();
    for (path, text) in json_files(dir)? {
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let file = format!("fixtures/{name}.json");
        let case = serde_json::from_str::<Case>(&text).map_err(|e| e.to_string());
        cases.push(Loaded { name, file, case });
    }
    Ok(cases)
}

fn load_recordings(dir: &Path) -> anyhow::Result<Vec<Recorded>> {
    let mut all = Vec::new();
    for (path, text) in json_files(dir)? {
        let file = format!(
            "fixtures/http/{}",
            path.file_name().unwrap_or_default().to_string_lossy()
        );
        let value: Value = serde_json::from_str(&text).with_context(|| file.clone())?;
        let list = match value {
            Value::Array(items) => items,
            one => vec![one],
        };
        let many = list.len() > 1;
        for (n, item) in list.into_iter().enumerate() {
            let exchange: Exchange =
                serde_json::from_value(item).with_context(|| format!("{file}[{n}]"))?;
            all.push(Recorded {
                source: if many {
                    format!("{file}[{n}]")
                } else {
                    file.clone()
                },
                exchange,
            });
        }
    }
    Ok(all)
}

/// The `*.json` files of `dir` (none when it does not exist), by name.
fn json_files(dir: &Path) -> anyhow::Result<Vec<(std::path::PathBuf, String)>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
    };
    let mut paths: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p)
                .with_context(|| format!("cannot read {}", p.display()))?;
            Ok((p, text))
        })
        .collect()
}

/// Runs one case: `Err` holds the lines that explain its failure.
async fn run_case(
    connector: &patchbay_wasm::WasmConnector,
    dir: &ConnectorDir,
    server: &Server,
    file: &str,
    case: Case,
    url: &str,
) -> Result<(), Vec<String>> {
    let fail = |m: String| Err(vec![format!("{file}: {m}")]);
    let expectation = match (&case.expect, &case.expect_error) {
        (Some(_), Some(_)) => return fail("give `expect` or `expect_error`, not both".into()),
        (None, None) => {
            return fail("says nothing to check: add `expect` (the result) or `expect_error` (an error kind)".into());
        }
        (Some(expect), None) => Ok(substitute(expect.clone(), url)),
        (None, Some(e)) => Err(e),
    };
    {
        let mut current = server.current.lock().expect("fixture server state");
        current.requests.clear();
        current.exchanges = case
            .http
            .iter()
            .enumerate()
            .map(|(n, e)| Recorded {
                source: format!("{file} (http[{n}])"),
                exchange: substitute_exchange(e.clone(), url),
            })
            .collect();
    }
    let credentials = match substitute(Value::Object(case.credentials.clone()), url) {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    let config = match substitute(Value::Object(case.config.clone()), url) {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    let ctx = CallContext {
        integration_id: dir.integration.id.clone(),
        api_version: case.api_version.clone(),
        credentials: Credentials::new(credentials),
        config,
        deadline: dir.deadline,
        correlation_id: Some(format!("connector-test-{file}")),
        log: CallLog::default(),
    };
    let input = case.input.clone().map(|v| substitute(v, url));
    let outcome = match call(connector, &ctx, &case, input).await {
        Ok(outcome) => outcome,
        Err(problem) => return fail(problem),
    };

    let mut lines = Vec::new();
    match (&expectation, &outcome) {
        (Ok(expected), Ok(actual)) => {
            let differences = diff(expected, actual);
            if !differences.is_empty() {
                lines.push(format!(
                    "{file}: the result differs from `expect` (- expected, + actual):"
                ));
                lines.extend(render(&differences).into_iter().map(|l| format!("  {l}")));
                lines.push(format!("actual result: {}", excerpt(actual, 2000)));
            }
        }
        (Ok(_), Err(e)) => lines.push(format!(
            "{file}: expected a result, got the error {}",
            describe_error(e)
        )),
        (Err(want), Ok(actual)) => lines.push(format!(
            "{file}: expected the error `{}`, got the result {}",
            want_kind(want),
            excerpt(actual, 500)
        )),
        (Err(want), Err(e)) => {
            let kind = error_kind(e);
            let (want_kind, contains) = match want {
                ExpectError::Kind(k) => (k.as_str(), None),
                ExpectError::Detailed(d) => (d.kind.as_str(), d.message_contains.as_deref()),
            };
            if kind != want_kind {
                lines.push(format!(
                    "{file}: expected the error `{want_kind}`, got {}",
                    describe_error(e)
                ));
            } else if let Some(part) = contains
                && !error_message(e).contains(part)
            {
                lines.push(format!(
                    "{file}: expected the `{want_kind}` error's message to contain {part:?}, got {:?}",
                    error_message(e)
                ));
            }
        }
    }
    if lines.is_empty() {
        return Ok(());
    }
    if let Err(e) = &outcome
        && error_message(e).contains("is not among the hosts")
    {
        lines.push(format!(
            "hint: in `patchbay connector test` only the fixture server is reachable; point the connector at it with \"{FIXTURE_URL}\" in the case's credentials or config"
        ));
    }
    let requests = std::mem::take(
        &mut server
            .current
            .lock()
            .expect("fixture server state")
            .requests,
    );
    lines.extend(requests.into_iter().map(|r| format!("http: {r}")));
    let (logged, dropped) = ctx.log.drain();
    lines.extend(
        logged
            .into_iter()
            .map(|l| format!("log: {}: {}", l.level.as_str(), l.message)),
    );
    if dropped > 0 {
        lines.push(format!("log: … {dropped} more line(s)"));
    }
    Err(lines)
}

/// Makes the case's call; `Err` is a problem with the case itself.
async fn call(
    connector: &patchbay_wasm::WasmConnector,
    ctx: &CallContext,
    case: &Case,
    input: Option<Value>,
) -> Result<Result<Value, ConnectorError>, String> {
    let need = |v: &Option<String>, what: &str| {
        v.clone()
            .ok_or_else(|| format!("a `{what}` case needs `{what}`"))
    };
    Ok(match case.operation {
        Operation::Check => connector
            .check(ctx)
            .await
            .map(|h| json!({ "ok": h.ok, "message": h.message })),
        Operation::Read => {
            let stream = need(&case.stream, "stream")?;
            connector
                .read(ctx, &stream, case.cursor.as_deref())
                .await
                .map(|b| json!({ "records": b.records, "next_cursor": b.next_cursor }))
        }
        Operation::Write => {
            let stream = need(&case.stream, "stream")?;
            let Some(Value::Array(records)) = input else {
                return Err("a `write` case needs `input`: the list of records".into());
            };
            connector.write(ctx, &stream, records).await.map(|w| {
                let failed: Vec<Value> = w
                    .failed
                    .into_iter()
                    .map(|(index, message)| json!({ "index": index, "message": message }))
                    .collect();
                json!({ "written": w.written, "failed": failed })
            })
        }
        Operation::Invoke => {
            let action = need(&case.action, "action")?;
            connector
                .invoke(ctx, &action, input.unwrap_or_else(|| json!({})))
                .await
        }
        Operation::VerifyWebhook => {
            let request = webhook_request(input.unwrap_or_else(|| json!({})))?;
            connector
                .verify_webhook(ctx, &request)
                .await
                .map(|outcome| match outcome {
                    WebhookOutcome::Accepted { events } => json!({ "accepted": events }),
                    WebhookOutcome::Rejected { reason } => json!({ "rejected": reason }),
                })
        }
    })
}

/// `{method, path, headers, body}` (body: a string as is, JSON serialized).
fn webhook_request(input: Value) -> Result<WebhookRequest, String> {
    let Value::Object(mut input) = input else {
        return Err(
            "a `verify_webhook` case's `input` is an object: {method, path, headers, body}".into(),
        );
    };
    let text = |v: Option<Value>, default: &str| match v {
        Some(Value::String(s)) => s,
        _ => default.to_owned(),
    };
    let headers = match input.remove("headers") {
        Some(Value::Object(h)) => h
            .into_iter()
            .map(|(k, v)| {
                let v = match v {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                (k.to_ascii_lowercase(), v)
            })
            .collect(),
        _ => Vec::new(),
    };
    let body = match input.remove("body") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => s.into_bytes(),
        Some(json) => json.to_string().into_bytes(),
    };
    Ok(WebhookRequest {
        method: text(input.remove("method"), "POST"),
        path: text(input.remove("path"), "/"),
        headers,
        body,
    })
}

fn error_kind(e: &ConnectorError) -> String {
    serde_json::to_value(e)
        .ok()
        .and_then(|v| v["kind"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn error_message(e: &ConnectorError) -> &str {
    match e {
        ConnectorError::InvalidInput { message }
        | ConnectorError::Auth { message }
        | ConnectorError::RateLimited { message, .. }
        | ConnectorError::Transient { message }
        | ConnectorError::Fatal { message }
        | ConnectorError::Unsupported { message } => message,
    }
}

fn describe_error(e: &ConnectorError) -> String {
    format!("`{}`: {}", error_kind(e), error_message(e))
}

fn want_kind(want: &ExpectError) -> &str {
    match want {
        ExpectError::Kind(k) => k,
        ExpectError::Detailed(d) => &d.kind,
    }
}

/// The fixture server's one handler.
async fn answer(
    State(server): State<Arc<Server>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response<Body> {
    let path_and_query = uri
        .path_and_query()
        .map_or_else(|| uri.path().to_owned(), |p| p.as_str().to_owned());
    let mut current = server.current.lock().expect("fixture server state");
    let found = current
        .exchanges
        .iter()
        .chain(&server.shared)
        .find(|r| matches_request(&r.exchange, &method, &uri, &headers, &body))
        .cloned();
    let Some(recorded) = found else {
        current.requests.push(format!(
            "{method} {path_and_query} → 404: no recorded exchange matches (method, path, `request` headers and body)"
        ));
        return Response::builder()
            .status(404)
            .header("content-type", "application/json")
            .body(Body::from(
                json!({ "error": format!("no recorded exchange matches {method} {path_and_query}") })
                    .to_string(),
            ))
            .expect("a valid response");
    };
    let e = &recorded.exchange;
    current.requests.push(format!(
        "{method} {path_and_query} → {} ({})",
        e.status, recorded.source
    ));
    drop(current);
    let mut response = Response::builder().status(e.status);
    let mut has_type = false;
    for (name, value) in &e.headers {
        has_type |= name.eq_ignore_ascii_case("content-type");
        response = response.header(name.as_str(), value.as_str());
    }
    let body = match &e.body {
        None => Vec::new(),
        Some(Value::String(text)) => text.clone().into_bytes(),
        Some(json) => {
            if !has_type {
                response = response.header("content-type", "application/json");
            }
            json.to_string().into_bytes()
        }
    };
    response.body(Body::from(body)).unwrap_or_else(|e| {
        Response::builder()
            .status(500)
            .body(Body::from(format!(
                "the recording is not a valid response: {e}"
            )))
            .expect("a valid response")
    })
}

fn matches_request(
    e: &Exchange,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> bool {
    if !e.method.eq_ignore_ascii_case(method.as_str()) {
        return false;
    }
    let path_ok = if e.path.contains('?') {
        uri.path_and_query().is_some_and(|p| p.as_str() == e.path)
    } else {
        uri.path() == e.path
    };
    if !path_ok {
        return false;
    }
    let headers_ok = e.request.headers.iter().all(|(name, want)| {
        headers
            .get(name.as_str())
            .and_then(|v| v.to_str().ok())
            .is_some_and(|got| want == ANY || got == want)
    });
    if !headers_ok {
        return false;
    }
    match &e.request.body {
        None => true,
        Some(want) => match serde_json::from_slice::<Value>(body) {
            Ok(got) => contains(want, &got),
            Err(_) => want.as_str() == Some(&*String::from_utf8_lossy(body)),
        },
    }
}

/// Whether `got` carries everything `want` says: the members `want` names
/// (others are ignored), arrays element by element, `"{{any}}"` anything.
fn contains(want: &Value, got: &Value) -> bool {
    match (want, got) {
        (Value::String(w), _) if w == ANY => true,
        (Value::Object(w), Value::Object(g)) => w
            .iter()
            .all(|(k, wv)| g.get(k).is_some_and(|gv| contains(wv, gv))),
        (Value::Array(w), Value::Array(g)) => {
            w.len() == g.len() && w.iter().zip(g).all(|(wv, gv)| contains(wv, gv))
        }
        _ => want == got,
    }
}

/// Resolves nothing: in test mode only the fixture server's address is
/// reachable, and it is an IP literal.
#[derive(Debug)]
struct NoResolver;

#[async_trait::async_trait]
impl Resolve for NoResolver {
    async fn lookup(&self, host: &str, _port: u16) -> std::io::Result<Vec<SocketAddr>> {
        Err(std::io::Error::other(format!(
            "`patchbay connector test` resolves no names (asked for `{host}`)"
        )))
    }
}

/// Replaces `{{fixture_url}}` in every string of `value`.
fn substitute(value: Value, url: &str) -> Value {
    match value {
        Value::String(s) if s.contains(FIXTURE_URL) => Value::String(s.replace(FIXTURE_URL, url)),
        Value::Array(items) => {
            Value::Array(items.into_iter().map(|v| substitute(v, url)).collect())
        }
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (k, substitute(v, url)))
                .collect(),
        ),
        other => other,
    }
}

fn substitute_exchange(mut e: Exchange, url: &str) -> Exchange {
    for value in e.headers.values_mut().chain(e.request.headers.values_mut()) {
        *value = value.replace(FIXTURE_URL, url);
    }
    e.body = e.body.map(|b| substitute(b, url));
    e.request.body = e.request.body.map(|b| substitute(b, url));
    e
}

/// One place where the expected and the actual JSON differ; `None`: absent.
#[derive(Debug, PartialEq)]
struct Difference {
    path: String,
    expected: Option<Value>,
    actual: Option<Value>,
}

/// Every difference between `expected` and `actual` (`"{{any}}"` in
/// `expected` matches any value).
fn diff(expected: &Value, actual: &Value) -> Vec<Difference> {
    let mut out = Vec::new();
    diff_at("$", expected, actual, &mut out);
    out
}

fn diff_at(path: &str, expected: &Value, actual: &Value, out: &mut Vec<Difference>) {
    if expected.as_str() == Some(ANY) {
        return;
    }
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for (key, ev) in e {
                let at = member_path(path, key);
                match a.get(key) {
                    Some(av) => diff_at(&at, ev, av, out),
                    None => out.push(Difference {
                        path: at,
                        expected: Some(ev.clone()),
                        actual: None,
                    }),
                }
            }
            for (key, av) in a {
                if !e.contains_key(key) {
                    out.push(Difference {
                        path: member_path(path, key),
                        expected: None,
                        actual: Some(av.clone()),
                    });
                }
            }
        }
        (Value::Array(e), Value::Array(a)) => {
            for n in 0..e.len().max(a.len()) {
                let at = format!("{path}[{n}]");
                match (e.get(n), a.get(n)) {
                    (Some(ev), Some(av)) => diff_at(&at, ev, av, out),
                    (ev, av) => out.push(Difference {
                        path: at,
                        expected: ev.cloned(),
                        actual: av.cloned(),
                    }),
                }
            }
        }
        _ if expected == actual => {}
        _ => out.push(Difference {
            path: path.to_owned(),
            expected: Some(expected.clone()),
            actual: Some(actual.clone()),
        }),
    }
}

fn member_path(path: &str, key: &str) -> String {
    let plain = key
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if plain {
        format!("{path}.{key}")
    } else {
        format!("{path}[{}]", Value::String(key.to_owned()))
    }
}

/// Three lines per difference: the path, `- expected`, `+ actual`.
fn render(differences: &[Difference]) -> Vec<String> {
    let show = |v: &Option<Value>| {
        v.as_ref()
            .map_or_else(|| "(absent)".to_owned(), |v| excerpt(v, 300))
    };
    let mut lines = Vec::new();
    for d in differences {
        lines.push(d.path.clone());
        lines.push(format!("  - {}", show(&d.expected)));
        lines.push(format!("  + {}", show(&d.actual)));
    }
    lines
}

/// Compact JSON, cut at `max` characters.
fn excerpt(value: &Value, max: usize) -> String {
    let text = value.to_string();
    match text.char_indices().nth(max) {
        Some((cut, _)) => {
            let mut short = text[..cut].to_owned();
            let _ = write!(short, "… ({} more characters)", text[cut..].chars().count());
            short
        }
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_names_each_changed_missing_and_extra_member() {
        let expected = json!({ "id": "{{any}}", "status": "sent", "to": ["a", "b"], "x-y": 1 });
        let actual =
            json!({ "id": "m_1", "status": "queued", "to": ["a"], "x-y": 1, "extra": true });
        let lines = render(&diff(&expected, &actual));
        assert_eq!(
            lines,
            [
                "$.status",
                "  - \"sent\"",
                "  + \"queued\"",
                "$.to[1]",
                "  - \"b\"",
                "  + (absent)",
                "$.extra",
                "  - (absent)",
                "  + true",
            ]
        );
        assert!(
            diff(
                &json!({ "a": [1, { "b": null }] }),
                &json!({ "a": [1, { "b": null }] })
            )
            .is_empty()
        );
    }

    #[test]
    fn the_fixture_url_is_substituted_everywhere() {
        let v = substitute(
            json!({ "a": ["{{fixture_url}}/x"], "b": 1 }),
            "http://127.0.0.1:9",
        );
        assert_eq!(v, json!({ "a": ["http://127.0.0.1:9/x"], "b": 1 }));
    }

    #[test]
    fn recorded_requests_match_on_method_path_query_headers_and_body() {
        let e: Exchange = serde_json::from_value(json!({
            "method": "POST", "path": "/v1/send",
            "request": { "headers": { "authorization": "Bearer k" }, "body": { "to": "{{any}}" } },
            "body": { "ok": true }
        }))
        .unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("authorization", "Bearer k".parse().unwrap());
        let uri: Uri = "/v1/send?x=1".parse().unwrap();
        assert!(matches_request(
            &e,
            &Method::POST,
            &uri,
            &headers,
            br#"{"to":"a"}"#
        ));
        assert!(!matches_request(
            &e,
            &Method::GET,
            &uri,
            &headers,
            br#"{"to":"a"}"#
        ));
        assert!(!matches_request(
            &e,
            &Method::POST,
            &uri,
            &headers,
            br#"{"cc":"a"}"#
        ));
        assert!(
            matches_request(&e, &Method::POST, &uri, &headers, br#"{"to":"a","cc":"b"}"#),
            "members the recording does not name are ignored"
        );
        assert!(!matches_request(
            &e,
            &Method::POST,
            &uri,
            &HeaderMap::new(),
            br#"{"to":"a"}"#
        ));
        let with_query = Exchange {
            path: "/v1/send?x=2".into(),
            ..e
        };
        assert!(!matches_request(
            &with_query,
            &Method::POST,
            &uri,
            &headers,
            br#"{"to":"a"}"#
        ));
    }
}
