//! The sandbox around WebAssembly connectors, against the echo guest
//! (`connectors-wasm/echo`), built once per test binary.

use std::sync::{LazyLock, OnceLock};
use std::time::{Duration, Instant};

use patchbay_core::{HostRule, LogLevel};
use patchbay_runtime::http::{HttpClient, HttpPolicy, Resolve};
use patchbay_runtime::{
    CallContext, Connector, ConnectorError, Credentials, WebhookOutcome, WebhookRequest,
};
use patchbay_wasm::{HostConfig, WasmConnector, WasmHost};
use serde_json::{Map, Value, json};

const MIB: usize = 1 << 20;

/// Tests that measure time or memory run one at a time.
static SERIAL: LazyLock<tokio::sync::Mutex<()>> = LazyLock::new(|| tokio::sync::Mutex::new(()));

fn echo_wasm() -> &'static [u8] {
    patchbay_testkit::wasm::echo_guest()
}

fn host() -> &'static WasmHost {
    static HOST: OnceLock<WasmHost> = OnceLock::new();
    HOST.get_or_init(|| WasmHost::new(&HostConfig::default()).expect("creating the wasm host"))
}

fn echo() -> WasmConnector {
    static ECHO: OnceLock<WasmConnector> = OnceLock::new();
    ECHO.get_or_init(|| host().load(echo_wasm()).expect("loading the echo guest"))
        .clone()
}

fn ctx(deadline: Duration) -> CallContext {
    let mut secrets = Map::new();
    secrets.insert("token".into(), json!("s3cret"));
    CallContext {
        integration_id: "int-echo-1".into(),
        api_version: None,
        credentials: Credentials::new(secrets),
        config: Map::new(),
        deadline,
        correlation_id: None,
        log: patchbay_runtime::CallLog::default(),
    }
}

fn fatal_message(err: ConnectorError) -> String {
    match err {
        ConnectorError::Fatal { message } => message,
        other => panic!("expected a fatal error, got {other:?}"),
    }
}

fn rss_bytes() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("reading /proc/self/status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("VmRSS line");
    let kib: usize = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("VmRSS value");
    kib * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_and_echo_round_trip() {
    let _serial = SERIAL.lock().await;
    let echo = echo();
    let ctx = ctx(Duration::from_secs(5));

    let health = echo.check(&ctx).await.unwrap();
    assert!(health.ok);
    assert!(health.message.contains("int-echo-1"), "{}", health.message);
    let (logs, dropped) = ctx.log.drain();
    assert_eq!(dropped, 0);
    assert!(
        logs.iter()
            .any(|l| l.level == LogLevel::Info && l.message == "checking int-echo-1"),
        "{logs:?}"
    );

    let input = json!({"hello": ["wasm", 1, true, null]});
    let started = Instant::now();
    let output = echo.invoke(&ctx, "echo", input.clone()).await.unwrap();
    eprintln!("echo call: {:?}", started.elapsed());
    assert_eq!(output, input);

    let err = echo.invoke(&ctx, "nope", Value::Null).await.unwrap_err();
    assert!(matches!(err, ConnectorError::Unsupported { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spinning_guest_is_stopped_at_its_deadline() {
    let _serial = SERIAL.lock().await;
    let echo = echo();
    // Warm up (first instantiation touches the pool).
    echo.check(&ctx(Duration::from_secs(5))).await.unwrap();

    let deadline = Duration::from_millis(200);
    let started = Instant::now();
    let err = echo
        .invoke(&ctx(deadline), "spin", Value::Null)
        .await
        .unwrap_err();
    let took = started.elapsed();
    eprintln!("spin stopped after {took:?} (deadline {deadline:?})");
    let message = fatal_message(err);
    assert!(message.contains("deadline"), "{message}");
    assert!(took >= deadline, "stopped early: {took:?}");
    assert!(
        took < deadline + Duration::from_millis(100),
        "overshot: {took:?}"
    );

    // The host goes on.
    let out = echo
        .invoke(&ctx(Duration::from_secs(5)), "echo", json!("after"))
        .await
        .unwrap();
    assert_eq!(out, json!("after"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_is_capped_per_call() {
    let _serial = SERIAL.lock().await;
    let limit = 16 * MIB;
    let echo = echo().with_memory_limit(limit);
    echo.check(&ctx(Duration::from_secs(5))).await.unwrap();

    let before = rss_bytes();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut peak = rss_bytes();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(rss_bytes());
                std::thread::sleep(Duration::from_millis(1));
            }
            peak.max(rss_bytes())
        })
    };
    let result = echo
        .invoke(&ctx(Duration::from_secs(10)), "grow", Value::Null)
        .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let peak = sampler.join().unwrap();
    let growth = peak.saturating_sub(before);
    eprintln!(
        "grow: {result:?}; RSS before {} KiB, peak {} KiB, growth {} KiB (limit {} KiB)",
        before / 1024,
        peak / 1024,
        growth / 1024,
        limit / 1024
    );
    let message = fatal_message(result.unwrap_err());
    assert!(message.contains("memory"), "{message}");
    assert!(
        growth < limit + limit / 10,
        "RSS grew by {growth} bytes, over the {limit}-byte limit + 10 %"
    );

    // The host goes on, and so does the connector.
    let out = echo
        .invoke(&ctx(Duration::from_secs(5)), "echo", json!(1))
        .await
        .unwrap();
    assert_eq!(out, json!(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_sees_no_files_and_no_environment() {
    let _serial = SERIAL.lock().await;
    let echo = echo();
    let ctx = ctx(Duration::from_secs(5));

    let err = echo
        .invoke(&ctx, "read_file", Value::Null)
        .await
        .unwrap_err();
    eprintln!("read_file: {err:?}");
    assert!(matches!(err, ConnectorError::Fatal { .. }), "{err:?}");

    let vars = echo.invoke(&ctx, "env", Value::Null).await.unwrap();
    assert_eq!(vars, json!(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_pages_through_a_stream_with_cursors() {
    let _serial = SERIAL.lock().await;
    let echo = echo();
    let ctx = ctx(Duration::from_secs(5));

    let mut cursor: Option<String> = None;
    let mut seen = Vec::new();
    let mut batches = 0;
    loop {
        let batch = echo.read(&ctx, "numbers", cursor.as_deref()).await.unwrap();
        batches += 1;
        seen.extend(batch.records);
        match batch.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
        assert!(batches < 10, "the stream never ends");
    }
    assert_eq!(batches, 3);
    let numbers: Vec<u64> = seen.iter().map(|r| r["n"].as_u64().unwrap()).collect();
    assert_eq!(numbers, [0, 1, 2, 3, 4]);

    let batch = echo.read(&ctx, "numbers", Some("4")).await.unwrap();
    assert_eq!(batch.records, [json!({"n": 4})]);
    assert_eq!(batch.next_cursor, None);

    let err = echo.read(&ctx, "numbers", Some("x")).await.unwrap_err();
    assert!(
        matches!(err, ConnectorError::InvalidInput { .. }),
        "{err:?}"
    );
    let err = echo.read(&ctx, "letters", None).await.unwrap_err();
    assert!(matches!(err, ConnectorError::Unsupported { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spinning_call_does_not_slow_the_others() {
    let _serial = SERIAL.lock().await;
    let echo = echo();
    let ctx_fast = ctx(Duration::from_secs(5));
    // Baseline latency.
    echo.invoke(&ctx_fast, "echo", json!(0)).await.unwrap();
    let started = Instant::now();
    echo.invoke(&ctx_fast, "echo", json!(0)).await.unwrap();
    let baseline = started.elapsed();

    let spinner = {
        let echo = echo.clone();
        tokio::spawn(async move {
            echo.invoke(&ctx(Duration::from_secs(2)), "spin", Value::Null)
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!spinner.is_finished(), "the spin ended early");

    let started = Instant::now();
    let out = echo.invoke(&ctx_fast, "echo", json!("fast")).await.unwrap();
    let during = started.elapsed();
    eprintln!("echo latency: {baseline:?} idle, {during:?} while another call spins");
    assert_eq!(out, json!("fast"));
    assert!(!spinner.is_finished(), "the spin ended before the echo did");
    assert!(
        during < baseline + Duration::from_millis(50),
        "echo took {during:?} while another call was spinning (idle: {baseline:?})"
    );
    let err = spinner.await.unwrap().unwrap_err();
    assert!(fatal_message(err).contains("deadline"));
}

/// A plain HTTP/1.1 server on 127.0.0.1 answering every request with
/// `hello from <path>`; returns its port and the request heads it saw.
async fn http_peer() -> (u16, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&buf).into_owned();
                let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
                log.lock().unwrap().push(head);
                let body = format!("hello from {path}");
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(response.as_bytes()).await;
            });
        }
    });
    (port, seen)
}

/// A resolver with a fixed table, standing in for a DNS server that
/// answers a public-looking name with a private address.
#[derive(Debug)]
struct FixedResolver(Vec<(&'static str, std::net::IpAddr)>);

#[async_trait::async_trait]
impl Resolve for FixedResolver {
    async fn lookup(&self, host: &str, port: u16) -> std::io::Result<Vec<std::net::SocketAddr>> {
        Ok(self
            .0
            .iter()
            .filter(|(h, _)| *h == host)
            .map(|(_, ip)| std::net::SocketAddr::new(*ip, port))
            .collect())
    }
}

fn rules(hosts: &[&str]) -> Vec<HostRule> {
    hosts.iter().map(|h| HostRule::parse(h).unwrap()).collect()
}

async fn fetch(echo: &WasmConnector, url: &str) -> Value {
    echo.invoke(&ctx(Duration::from_secs(5)), "fetch", json!({ "url": url }))
        .await
        .unwrap()
}

fn denied(out: &Value) -> String {
    assert_eq!(out["error"]["kind"], "denied", "{out}");
    out["error"]["message"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_reaches_only_declared_public_hosts() {
    let _serial = SERIAL.lock().await;
    let (port, seen) = http_peer().await;

    // No network declared: nothing goes out.
    let out = fetch(&echo(), &format!("http://127.0.0.1:{port}/")).await;
    assert!(denied(&out).contains("declares no network hosts"), "{out}");

    let resolver = FixedResolver(vec![
        ("internal.example.com", "10.0.0.7".parse().unwrap()),
        ("metadata.example.com", "169.254.169.254".parse().unwrap()),
    ]);
    let client = HttpClient::new(HttpPolicy {
        resolver: std::sync::Arc::new(resolver),
        ..HttpPolicy::default()
    });
    let echo = echo().with_network(
        client,
        rules(&[
            "api.example.com",
            "127.0.0.1",
            "169.254.169.254",
            "internal.example.com",
            "metadata.example.com",
        ]),
    );
    // An undeclared host.
    let out = fetch(&echo, "https://evil.example.org/steal").await;
    let message = denied(&out);
    assert!(
        message.contains("evil.example.org") && message.contains("api.example.com"),
        "{message}"
    );
    // Declared, but loopback and link-local (the cloud metadata service).
    let out = fetch(&echo, &format!("http://127.0.0.1:{port}/")).await;
    assert!(denied(&out).contains("loopback"), "{out}");
    let out = fetch(&echo, "http://169.254.169.254/latest/meta-data/").await;
    assert!(denied(&out).contains("link-local"), "{out}");
    // Declared names that resolve to private addresses.
    let out = fetch(&echo, "http://internal.example.com/").await;
    let message = denied(&out);
    assert!(
        message.contains("resolved to") && message.contains("private"),
        "{message}"
    );
    let out = fetch(&echo, "http://metadata.example.com/").await;
    assert!(denied(&out).contains("link-local"), "{out}");
    // Not http(s).
    let out = fetch(&echo, "file:///etc/passwd").await;
    assert_eq!(out["error"]["kind"], "invalid", "{out}");
    assert!(
        seen.lock().unwrap().is_empty(),
        "a refused request reached the peer"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_the_system_resolves_to_loopback_is_refused() {
    let _serial = SERIAL.lock().await;
    let (port, seen) = http_peer().await;
    let echo = echo().with_network(
        HttpClient::new(HttpPolicy::default()),
        rules(&["localhost"]),
    );
    let out = fetch(&echo, &format!("http://localhost:{port}/")).await;
    let message = denied(&out);
    assert!(
        message.contains("resolved to") && message.contains("loopback"),
        "{message}"
    );
    assert!(seen.lock().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_may_allow_private_addresses() {
    let _serial = SERIAL.lock().await;
    let (port, seen) = http_peer().await;
    let client = HttpClient::new(HttpPolicy {
        allow_private: true,
        ..HttpPolicy::default()
    });
    let echo = echo().with_network(client, rules(&[&format!("127.0.0.1:{port}")]));
    let out = fetch(&echo, &format!("http://127.0.0.1:{port}/v1/items?page=2")).await;
    assert_eq!(
        out,
        json!({"status": 200, "body": "hello from /v1/items?page=2"})
    );
    let heads = seen.lock().unwrap().clone();
    assert_eq!(heads.len(), 1);
    assert!(
        heads[0].starts_with("GET /v1/items?page=2 HTTP/1.1"),
        "{}",
        heads[0]
    );
    assert!(
        heads[0].contains(&format!("host: 127.0.0.1:{port}")),
        "{}",
        heads[0]
    );
    // Another port of the same address is still undeclared.
    let out = fetch(&echo, "http://127.0.0.1:1/").await;
    assert!(denied(&out).contains("not among the hosts"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_call_sees_only_its_own_credentials() {
    let _serial = SERIAL.lock().await;
    let echo = echo();
    let call = |tenant: &'static str| {
        let echo = echo.clone();
        tokio::spawn(async move {
            let mut secrets = Map::new();
            secrets.insert("token".into(), json!(format!("secret-of-{tenant}")));
            let ctx = CallContext {
                integration_id: format!("int-{tenant}"),
                credentials: Credentials::new(secrets),
                ..ctx(Duration::from_secs(5))
            };
            let mut outs = Vec::new();
            for _ in 0..20 {
                let out = echo.invoke(&ctx, "credentials", Value::Null).await.unwrap();
                outs.push(out);
            }
            outs
        })
    };
    let (a, b) = (call("tenant-a"), call("tenant-b"));
    for out in a.await.unwrap() {
        assert_eq!(out, json!({"token": "secret-of-tenant-a"}));
    }
    for out in b.await.unwrap() {
        assert_eq!(out, json!({"token": "secret-of-tenant-b"}));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_and_verify_webhook_cross_the_boundary() {
    let _serial = SERIAL.lock().await;
    let echo = echo();
    let ctx = ctx(Duration::from_secs(5));
    let out = echo
        .write(
            &ctx,
            "numbers",
            vec![json!({"n": 1}), json!("bad"), json!({"n": 2})],
        )
        .await
        .unwrap();
    assert_eq!(out.written, 2);
    assert_eq!(out.failed, vec![(1, "a record needs an `n`".to_owned())]);

    let request = |token: &str| WebhookRequest {
        method: "POST".into(),
        path: "/webhooks/x".into(),
        headers: vec![("x-echo-token".into(), token.into())],
        body: br#"{"id":"evt_1"}"#.to_vec(),
    };
    match echo.verify_webhook(&ctx, &request("s3cret")).await.unwrap() {
        WebhookOutcome::Accepted { events } => {
            assert_eq!(
                events,
                vec![json!({"type": "echo.received", "body": "{\"id\":\"evt_1\"}"})]
            );
        }
        other @ WebhookOutcome::Rejected { .. } => panic!("{other:?}"),
    }
    assert_eq!(
        echo.verify_webhook(&ctx, &request("forged")).await.unwrap(),
        WebhookOutcome::Rejected {
            reason: "token mismatch".into()
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_panic_fails_only_that_call() {
    let _serial = SERIAL.lock().await;
    let echo = echo();
    let ctx = ctx(Duration::from_secs(5));
    let message = fatal_message(echo.invoke(&ctx, "panic", Value::Null).await.unwrap_err());
    assert!(message.contains("trapped"), "{message}");
    assert_eq!(echo.invoke(&ctx, "echo", json!(2)).await.unwrap(), json!(2));
}
