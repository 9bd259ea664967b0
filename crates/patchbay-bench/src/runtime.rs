//! Connector calls through the runtime contract: an `invoke` round trip
//! into a WebAssembly component (the `echo` guest of `connectors-wasm/`),
//! against the same work done by a native connector in the same run.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use patchbay_runtime::{CallContext, Connector, ConnectorError, Credentials, Health};
use serde_json::{Map, Value, json};

use crate::{Baseline, Figure, quantile};

const RUNS: usize = 20_000;

/// The native twin of the guest's `echo` action.
struct NativeEcho;

#[async_trait::async_trait]
impl Connector for NativeEcho {
    async fn check(&self, _: &CallContext) -> Result<Health, ConnectorError> {
        Ok(Health {
            ok: true,
            message: "native".into(),
        })
    }

    async fn invoke(
        &self,
        _: &CallContext,
        _: &str,
        input: Value,
    ) -> Result<Value, ConnectorError> {
        Ok(input)
    }
}

/// Builds the echo guest (once per target directory) and returns its bytes.
fn guest() -> anyhow::Result<Vec<u8>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    // Where the test suite builds its guests too (`cargo xtask bench` runs
    // with the same target directory), so the guest is built once.
    #[allow(clippy::disallowed_methods)] // Cargo's own setting, not Patchbay configuration.
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root.join("target"), std::path::PathBuf::from)
        .join("wasm-guests");
    let status = Command::new("cargo")
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--manifest-path",
        ])
        .arg(root.join("connectors-wasm/echo/Cargo.toml"))
        .arg("--target-dir")
        .arg(&target)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .status()
        .context("running cargo for the echo guest")?;
    anyhow::ensure!(
        status.success(),
        "building the echo guest failed (is the wasm32-wasip2 target installed?)"
    );
    let wasm = target.join("wasm32-wasip2/release/patchbay_connector_echo.wasm");
    std::fs::read(&wasm).with_context(|| format!("reading {}", wasm.display()))
}

async fn time_invokes(c: &dyn Connector, ctx: &CallContext) -> anyhow::Result<Vec<Duration>> {
    let input = json!({ "orderId": "ord_123", "amount": 1299, "currency": "EUR" });
    for _ in 0..1_000 {
        c.invoke(ctx, "echo", input.clone()).await?;
    }
    let mut samples = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let t = Instant::now();
        let out = c.invoke(ctx, "echo", input.clone()).await?;
        samples.push(t.elapsed());
        anyhow::ensure!(out == input, "the echo changed the payload: {out}");
    }
    Ok(samples)
}

pub(crate) fn run(rt: &tokio::runtime::Runtime) -> anyhow::Result<Vec<Figure>> {
    let wasm = guest()?;
    rt.block_on(async {
        let host = patchbay_wasm::WasmHost::new(&patchbay_wasm::HostConfig::default())
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let guest = host.load(&wasm).map_err(|e| anyhow::anyhow!("{e}"))?;
        let ctx = CallContext {
            integration_id: "bench_echo".into(),
            api_version: None,
            credentials: Credentials::new(Map::new()),
            config: Map::new(),
            deadline: Duration::from_secs(10),
            correlation_id: None,
        };
        let wasm_samples = time_invokes(&guest, &ctx).await?;
        let native_samples = time_invokes(&NativeEcho, &ctx).await?;
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        let native_p50 = quantile(native_samples, 0.5);
        let p50 = quantile(wasm_samples.clone(), 0.5);
        let p99 = quantile(wasm_samples, 0.99);
        Ok(vec![
            Figure {
                scenario: "runtime",
                metric: format!(
                    "WebAssembly invoke round trip, small JSON payload, warm (p50 of {RUNS})"
                ),
                value: us(p50),
                unit: "µs",
                target: Some("< 50 µs"),
                meets_target: Some(us(p50) < 50.0),
                baseline: Some(Baseline {
                    what: "the same echo by a native connector (p50)",
                    value: us(native_p50),
                    unit: "µs",
                    ratio: us(p50) / us(native_p50).max(f64::MIN_POSITIVE),
                }),
            },
            Figure {
                scenario: "runtime",
                metric: format!("WebAssembly invoke round trip, warm (p99 of {RUNS})"),
                value: us(p99),
                unit: "µs",
                target: None,
                meets_target: None,
                baseline: None,
            },
        ])
    })
}
