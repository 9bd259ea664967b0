//! The sandbox around WebAssembly connectors, against the echo guest
//! (`connectors-wasm/echo`), built once per test binary.

// The guest build reads the build environment (CARGO, CARGO_TARGET_DIR, CI),
// as build tooling does; the product never does.
#![allow(clippy::disallowed_methods)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{LazyLock, OnceLock};
use std::time::{Duration, Instant};

use patchbay_runtime::{CallContext, Connector, ConnectorError, Credentials};
use patchbay_wasm::{HostConfig, WasmConnector, WasmHost};
use serde_json::{Map, Value, json};

const MIB: usize = 1 << 20;

/// Tests that measure time or memory run one at a time.
static SERIAL: LazyLock<tokio::sync::Mutex<()>> = LazyLock::new(|| tokio::sync::Mutex::new(()));

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace_root().join("target"), PathBuf::from)
        .join("wasm-guests")
}

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Builds the echo guest (once) and returns its component's bytes.
fn echo_wasm() -> &'static [u8] {
    static WASM: OnceLock<Vec<u8>> = OnceLock::new();
    WASM.get_or_init(|| {
        let installed = Command::new("rustup")
            .args(["target", "list", "--installed"])
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("wasm32-wasip2"));
        if !installed {
            let status = Command::new("rustup")
                .args(["target", "add", "wasm32-wasip2"])
                .status();
            assert!(
                status.is_ok_and(|s| s.success()),
                "the wasm32-wasip2 target is missing and `rustup target add wasm32-wasip2` failed"
            );
        }
        let manifest = workspace_root().join("connectors-wasm/echo/Cargo.toml");
        let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cargo
            .args([
                "build",
                "--release",
                "--target",
                "wasm32-wasip2",
                "--manifest-path",
            ])
            .arg(&manifest)
            .arg("--target-dir")
            .arg(target_dir())
            // The host's own build flags are not the guest's.
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS");
        if ci() {
            cargo.arg("--locked");
        }
        let status = cargo.status().expect("running cargo for the echo guest");
        assert!(status.success(), "building the echo guest failed");
        let wasm = target_dir().join("wasm32-wasip2/release/patchbay_connector_echo.wasm");
        std::fs::read(&wasm).unwrap_or_else(|e| panic!("reading {}: {e}", wasm.display()))
    })
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
    let logs = echo.take_logs();
    assert!(
        logs.iter()
            .any(|l| l.level == "info" && l.message == "checking int-echo-1"),
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
