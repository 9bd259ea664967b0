//! Connector calls through the runtime contract: an `invoke` round trip
//! into a WebAssembly component (the `echo` guest of `connectors-wasm/`),
//! and `read` of 1,000-record batches out of it, each against the same work
//! done by a native connector in the same run.

use std::time::{Duration, Instant};

use patchbay_runtime::{CallContext, Connector, ConnectorError, Credentials, Health};
use serde_json::{Map, Value, json};

use crate::{Baseline, Figure, quantile};

const RUNS: usize = 20_000;

/// Batches `read` the benchmark times, of [`BULK_BATCH`] records each.
const READ_BATCHES: usize = 300;
const BULK_BATCH: u64 = 1_000;

/// The native twin of the guest's `echo` action and `bulk` stream.
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

    /// The same records as the guest's `bulk` stream, built natively.
    async fn read(
        &self,
        _: &CallContext,
        _: &str,
        cursor: Option<&str>,
    ) -> Result<patchbay_runtime::Batch, ConnectorError> {
        let start: u64 = cursor
            .map_or(Ok(0), str::parse)
            .map_err(|_| ConnectorError::invalid("cursor"))?;
        let end = start + BULK_BATCH;
        let records = (start..end)
            .map(|n| {
                json!({
                    "id": n,
                    "sku": format!("SKU-{n:08}"),
                    "title": format!("Item {n}"),
                    "price": 1000 + n % 9000,
                    "currency": "EUR",
                    "updatedAt": "2026-11-01T00:00:00Z",
                })
            })
            .collect();
        Ok(patchbay_runtime::Batch {
            records,
            next_cursor: Some(end.to_string()),
            failures: Vec::new(),
            total: None,
        })
    }
}

/// Reads [`READ_BATCHES`] batches of the `bulk` stream; records per second.
async fn time_reads(c: &dyn Connector, ctx: &CallContext) -> anyhow::Result<f64> {
    let mut cursor = c.read(ctx, "bulk", None).await?.next_cursor;
    let started = Instant::now();
    let mut records = 0usize;
    for _ in 0..READ_BATCHES {
        let batch = c.read(ctx, "bulk", cursor.as_deref()).await?;
        records += batch.records.len();
        anyhow::ensure!(
            batch
                .records
                .first()
                .and_then(|r| r["sku"].as_str())
                .is_some(),
            "a bulk record lacks its sku"
        );
        cursor = batch.next_cursor;
    }
    #[allow(clippy::cast_precision_loss)] // A record count, far below 2^52.
    Ok(records as f64 / started.elapsed().as_secs_f64())
}

/// Builds the echo guest (once per target directory, shared with the test
/// suite) and returns its bytes.
fn guest() -> Vec<u8> {
    patchbay_testkit::wasm::echo_guest().to_vec()
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
    let wasm = guest();
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
            log: patchbay_runtime::CallLog::default(),
        };
        let wasm_samples = time_invokes(&guest, &ctx).await?;
        let native_samples = time_invokes(&NativeEcho, &ctx).await?;
        let wasm_reads = time_reads(&guest, &ctx).await?;
        let native_reads = time_reads(&NativeEcho, &ctx).await?;
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
            Figure {
                scenario: "runtime",
                metric: format!(
                    "WebAssembly read through the component boundary, {BULK_BATCH}-record batches, JSON parsed on the host ({READ_BATCHES} batches)"
                ),
                value: wasm_reads,
                unit: "records/s",
                target: Some("≥ 200,000 records/s"),
                meets_target: Some(wasm_reads >= 200_000.0),
                baseline: Some(Baseline {
                    what: "the same records built by a native connector",
                    value: native_reads,
                    unit: "records/s",
                    ratio: wasm_reads / native_reads.max(f64::MIN_POSITIVE),
                }),
            },
        ])
    })
}
