//! The WebAssembly connector host: runs connectors built as components
//! against `wit/connector.wit`, sandboxed.
//!
//! - One [`WasmHost`] per process: an [`Engine`] with the pooling allocator
//!   and epoch interruption, and a background thread ticking the epoch every
//!   [`EPOCH_TICK`].
//! - One [`WasmConnector`] per component: compiled once, pre-instantiated
//!   (imports resolved once), implementing [`patchbay_runtime::Connector`].
//! - Per call a fresh [`Store`]: memory capped by [`StoreLimits`], CPU time
//!   bounded by the call's deadline, WASI with an empty context (no files, no
//!   environment, no inherited stdio, no network).
//!
//! A trap — deadline, memory, or a bug in the guest — becomes
//! [`ConnectorError::Fatal`]; the host goes on.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use patchbay_core::{HostRule, LogLevel as CoreLevel};
use patchbay_runtime::http::{HttpClient, HttpError, HttpRequest};
use patchbay_runtime::{
    Batch, CallContext, CallLog, Connector, ConnectorError, Health, WebhookOutcome, WebhookRequest,
    WriteOutcome,
};
use serde_json::Value;
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, ResourceLimiter, Store,
    StoreLimits, StoreLimitsBuilder, UpdateDeadline,
};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

mod bindings {
    wasmtime::component::bindgen!({
        path: "wit",
        world: "connector",
        imports: { "patchbay:connector/host.http-fetch": async },
        exports: { default: async },
    });
}

use bindings::exports::patchbay::connector::contract as guest;
use bindings::patchbay::connector::host::{self as host_api, LogLevel};

/// How often the epoch advances: the granularity of deadlines.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// A mebibyte.
const MIB: usize = 1 << 20;

/// Sizes of the engine's instance pool.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// Component instances alive at once (each call has its own).
    pub max_concurrent_calls: u32,
    /// The most linear memory any one instance may have (the pool reserves
    /// this much address space per slot); per-connector limits sit below it.
    pub max_memory_bytes: usize,
}

impl Default for HostConfig {
    fn default() -> HostConfig {
        HostConfig {
            max_concurrent_calls: 32,
            max_memory_bytes: 256 * MIB,
        }
    }
}

/// The engine shared by every WebAssembly connector of the process.
#[derive(Clone)]
pub struct WasmHost {
    engine: Engine,
    linker: Arc<Linker<CallState>>,
}

impl std::fmt::Debug for WasmHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmHost").finish_non_exhaustive()
    }
}

impl WasmHost {
    pub fn new(config: &HostConfig) -> wasmtime::Result<WasmHost> {
        let calls = config.max_concurrent_calls.max(1);
        let mut pool = PoolingAllocationConfig::default();
        // A Rust wasm32-wasip2 component has a handful of core instances
        // (the program and small adapter shims), one memory and a few tables.
        pool.total_component_instances(calls)
            .total_core_instances(calls * 8)
            .max_core_instances_per_component(16)
            .total_memories(calls)
            .max_memories_per_component(1)
            .total_tables(calls * 4)
            .max_tables_per_component(4)
            .total_stacks(calls)
            .max_memory_size(config.max_memory_bytes);

        let mut cfg = Config::new();
        cfg.async_support(true)
            .epoch_interruption(true)
            .wasm_component_model(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&cfg)?;
        spawn_epoch_ticker(&engine);

        let mut linker = Linker::<CallState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        bindings::Connector::add_to_linker::<CallState, HasSelf<CallState>>(&mut linker, |s| s)?;
        Ok(WasmHost {
            engine,
            linker: Arc::new(linker),
        })
    }

    /// Compiles a component (once) and resolves its imports (once).
    pub fn load(&self, wasm: &[u8]) -> wasmtime::Result<WasmConnector> {
        let component = Component::new(&self.engine, wasm)?;
        let pre = self.linker.instantiate_pre(&component)?;
        let pre = bindings::ConnectorPre::new(pre)?;
        Ok(WasmConnector {
            engine: self.engine.clone(),
            pre,
            memory_limit: 64 * MIB,
            max_deadline: None,
            network: None,
        })
    }
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until the engine is dropped.
fn spawn_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("patchbay-wasm-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .expect("spawning the epoch thread");
}

/// HTTP requests one call may make at most.
pub const MAX_REQUESTS_PER_CALL: u32 = 100;

/// A connector's way out: the process's guarded client and the hosts the
/// connector's manifest declares.
#[derive(Debug, Clone)]
pub struct Network {
    pub client: HttpClient,
    pub hosts: Arc<[HostRule]>,
}

/// One connector component, ready to be called.
#[derive(Clone)]
pub struct WasmConnector {
    engine: Engine,
    pre: bindings::ConnectorPre<CallState>,
    memory_limit: usize,
    /// No call runs longer than this, whatever its context asks.
    max_deadline: Option<Duration>,
    network: Option<Network>,
}

impl std::fmt::Debug for WasmConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmConnector")
            .field("memory_limit", &self.memory_limit)
            .finish_non_exhaustive()
    }
}

/// What one call's store holds.
struct CallState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: Limiter,
    deadline_exceeded: bool,
    /// The call's log (drained by whoever made the call).
    log: CallLog,
    /// The call, for HTTP: the declared hosts may name credential fields.
    call: Option<CallContext>,
    network: Option<Network>,
    until: Instant,
    requests: u32,
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl host_api::Host for CallState {
    /// Guest lines go only to the call's log, which the service writes to
    /// the operation log through its redaction — never to the process's own
    /// log, where a secret a guest printed would escape redaction.
    fn log(&mut self, level: LogLevel, message: String) {
        let level = match level {
            LogLevel::Trace | LogLevel::Debug => CoreLevel::Debug,
            LogLevel::Info => CoreLevel::Info,
            LogLevel::Warn => CoreLevel::Warning,
            LogLevel::Error => CoreLevel::Error,
        };
        self.log.push(level, &message);
    }

    async fn http_fetch(
        &mut self,
        request: host_api::HttpRequest,
    ) -> Result<host_api::HttpResponse, host_api::HttpError> {
        let (Some(network), Some(call)) = (&self.network, &self.call) else {
            return Err(host_api::HttpError::Denied(
                "this connector declares no network hosts".to_owned(),
            ));
        };
        self.requests += 1;
        if self.requests > MAX_REQUESTS_PER_CALL {
            return Err(host_api::HttpError::Denied(format!(
                "a call may make at most {MAX_REQUESTS_PER_CALL} requests"
            )));
        }
        let request = HttpRequest {
            method: request.method,
            url: request.url,
            headers: request.headers,
            body: request.body,
            timeout: request
                .timeout_ms
                .map(|ms| Duration::from_millis(u64::from(ms))),
        };
        match network
            .client
            .fetch(&network.hosts, call, request, self.until)
            .await
        {
            Ok(r) => Ok(host_api::HttpResponse {
                status: r.status,
                headers: r.headers,
                body: r.body,
            }),
            Err(HttpError::Denied(m)) => Err(host_api::HttpError::Denied(m)),
            Err(HttpError::Invalid(m)) => Err(host_api::HttpError::Invalid(m)),
            Err(HttpError::Timeout(m)) => Err(host_api::HttpError::Timeout(m)),
            Err(HttpError::Failed(m)) => Err(host_api::HttpError::Failed(m)),
        }
    }
}

/// [`StoreLimits`], remembering whether it refused memory.
struct Limiter {
    inner: StoreLimits,
    memory_refused: bool,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.inner.memory_growing(current, desired, maximum)?;
        if !allowed {
            self.memory_refused = true;
        }
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.inner.table_growing(current, desired, maximum)
    }

    fn instances(&self) -> usize {
        self.inner.instances()
    }

    fn tables(&self) -> usize {
        self.inner.tables()
    }

    fn memories(&self) -> usize {
        self.inner.memories()
    }
}

impl WasmConnector {
    /// Caps each call's linear memory (default 64 MiB; never above the
    /// host's [`HostConfig::max_memory_bytes`]).
    #[must_use]
    pub fn with_memory_limit(mut self, bytes: usize) -> WasmConnector {
        self.memory_limit = bytes;
        self
    }

    /// Caps every call's deadline (the manifest's `deadline_secs`, within
    /// the operator's maximum); a call whose context allows less keeps less.
    #[must_use]
    pub fn with_max_deadline(mut self, deadline: Duration) -> WasmConnector {
        self.max_deadline = Some(deadline);
        self
    }

    /// Lets the connector make HTTP requests to the hosts it declares,
    /// through `client` (whose policy refuses non-public addresses unless
    /// the operator allows them). Without this, every request is refused.
    #[must_use]
    pub fn with_network(mut self, client: HttpClient, hosts: Vec<HostRule>) -> WasmConnector {
        self.network = Some(Network {
            client,
            hosts: hosts.into(),
        });
        self
    }

    /// The call's deadline: its context's, capped by the connector's own.
    fn deadline(&self, ctx: &CallContext) -> Duration {
        self.max_deadline
            .map_or(ctx.deadline, |m| m.min(ctx.deadline))
    }

    /// A fresh store for one call, within the deadline and the memory limit,
    /// and the call's context as the guest sees it.
    fn prepare(&self, ctx: &CallContext) -> (Store<CallState>, guest::CallContext) {
        let state = CallState {
            // Empty: no preopened directories, no environment, no arguments,
            // stdin empty, stdout/stderr discarded, no sockets.
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
            limiter: Limiter {
                inner: StoreLimitsBuilder::new()
                    .memory_size(self.memory_limit)
                    .instances(16)
                    .build(),
                memory_refused: false,
            },
            deadline_exceeded: false,
            log: ctx.log.clone(),
            call: self.network.as_ref().map(|_| ctx.clone()),
            network: self.network.clone(),
            until: Instant::now() + self.deadline(ctx),
            requests: 0,
        };
        let until = state.until;
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        // Every tick: out of time → trap; otherwise yield to the executor so
        // a spinning guest does not hold a worker thread.
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |mut cx| {
            if Instant::now() >= until {
                cx.data_mut().deadline_exceeded = true;
                Ok(UpdateDeadline::Interrupt)
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        let wctx = guest::CallContext {
            integration_id: ctx.integration_id.clone(),
            api_version: ctx.api_version.clone(),
            credentials: Value::Object(ctx.credentials.expose().clone()).to_string(),
            config: Value::Object(ctx.config.clone()).to_string(),
        };
        (store, wctx)
    }

    /// How long a call may take in all: the deadline, plus a few ticks for
    /// the epoch to notice. The epoch stops guest code; this timeout also
    /// stops a guest blocked in a host call (a WASI sleep, say), which burns
    /// no epochs.
    fn time_limit(&self, ctx: &CallContext) -> Duration {
        self.deadline(ctx) + EPOCH_TICK * 5
    }

    /// Wipes the call's credentials and maps its outcome.
    fn finish<R>(
        &self,
        ctx: &CallContext,
        store: &mut Store<CallState>,
        wctx: &mut guest::CallContext,
        outcome: Result<
            wasmtime::Result<Result<R, guest::ConnectorError>>,
            tokio::time::error::Elapsed,
        >,
    ) -> Result<R, ConnectorError> {
        // The serialized credentials are wiped before the allocation is freed.
        zeroize::Zeroize::zeroize(&mut wctx.credentials);
        // The store's copy of the context (for HTTP) goes now, not with the store.
        store.data_mut().call = None;
        match outcome {
            Err(_elapsed) => Err(deadline_error(self.deadline(ctx))),
            Ok(Ok(result)) => result.map_err(from_guest),
            Ok(Err(trap)) => Err(trap_error(
                store.data(),
                &trap,
                self.deadline(ctx),
                self.memory_limit,
            )),
        }
    }
}

fn deadline_error(deadline: Duration) -> ConnectorError {
    ConnectorError::fatal(format!(
        "connector exceeded its deadline of {} ms",
        deadline.as_millis()
    ))
}

fn trap_error(
    state: &CallState,
    trap: &wasmtime::Error,
    deadline: Duration,
    memory_limit: usize,
) -> ConnectorError {
    if state.deadline_exceeded
        || matches!(
            trap.downcast_ref::<wasmtime::Trap>(),
            Some(wasmtime::Trap::Interrupt)
        )
    {
        deadline_error(deadline)
    } else if state.limiter.memory_refused {
        ConnectorError::fatal(format!(
            "connector ran out of memory (limit {} MiB): {trap}",
            memory_limit / MIB
        ))
    } else {
        ConnectorError::fatal(format!("connector trapped: {trap:#}"))
    }
}

fn from_guest(err: guest::ConnectorError) -> ConnectorError {
    match err {
        guest::ConnectorError::InvalidInput(message) => ConnectorError::InvalidInput { message },
        guest::ConnectorError::Auth(message) => ConnectorError::Auth { message },
        guest::ConnectorError::RateLimited(r) => ConnectorError::RateLimited {
            message: r.message,
            retry_after_ms: r.retry_after_ms,
        },
        guest::ConnectorError::Transient(message) => ConnectorError::Transient { message },
        guest::ConnectorError::Fatal(message) => ConnectorError::Fatal { message },
        guest::ConnectorError::Unsupported(message) => ConnectorError::Unsupported { message },
    }
}

fn parse_json(text: &str, what: &str) -> Result<Value, ConnectorError> {
    serde_json::from_str(text)
        .map_err(|e| ConnectorError::fatal(format!("connector returned invalid JSON {what}: {e}")))
}

#[async_trait]
impl Connector for WasmConnector {
    async fn check(&self, ctx: &CallContext) -> Result<Health, ConnectorError> {
        let (mut store, mut wctx) = self.prepare(ctx);
        let outcome = tokio::time::timeout(self.time_limit(ctx), async {
            let instance = self.pre.instantiate_async(&mut store).await?;
            let api = instance.patchbay_connector_contract();
            api.call_check(&mut store, &wctx).await
        })
        .await;
        let health = self.finish(ctx, &mut store, &mut wctx, outcome)?;
        Ok(Health {
            ok: health.ok,
            message: health.message,
        })
    }

    async fn read(
        &self,
        ctx: &CallContext,
        stream: &str,
        cursor: Option<&str>,
    ) -> Result<Batch, ConnectorError> {
        let (mut store, mut wctx) = self.prepare(ctx);
        let outcome = tokio::time::timeout(self.time_limit(ctx), async {
            let instance = self.pre.instantiate_async(&mut store).await?;
            let api = instance.patchbay_connector_contract();
            api.call_read(&mut store, &wctx, stream, cursor).await
        })
        .await;
        let batch = self.finish(ctx, &mut store, &mut wctx, outcome)?;
        let records = batch
            .records
            .iter()
            .map(|r| parse_json(r, "record"))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Batch {
            records,
            next_cursor: batch.next_cursor,
            failures: Vec::new(),
            total: None,
        })
    }

    async fn invoke(
        &self,
        ctx: &CallContext,
        action: &str,
        input: Value,
    ) -> Result<Value, ConnectorError> {
        let input = input.to_string();
        let (mut store, mut wctx) = self.prepare(ctx);
        let outcome = tokio::time::timeout(self.time_limit(ctx), async {
            let instance = self.pre.instantiate_async(&mut store).await?;
            let api = instance.patchbay_connector_contract();
            api.call_invoke(&mut store, &wctx, action, &input).await
        })
        .await;
        let output = self.finish(ctx, &mut store, &mut wctx, outcome)?;
        parse_json(&output, "output")
    }

    async fn write(
        &self,
        ctx: &CallContext,
        stream: &str,
        records: Vec<Value>,
    ) -> Result<WriteOutcome, ConnectorError> {
        let records: Vec<String> = records.iter().map(Value::to_string).collect();
        let (mut store, mut wctx) = self.prepare(ctx);
        let outcome = tokio::time::timeout(self.time_limit(ctx), async {
            let instance = self.pre.instantiate_async(&mut store).await?;
            let api = instance.patchbay_connector_contract();
            api.call_write(&mut store, &wctx, stream, &records).await
        })
        .await;
        let result = self.finish(ctx, &mut store, &mut wctx, outcome)?;
        Ok(WriteOutcome {
            written: result.written,
            failed: result
                .failed
                .into_iter()
                .map(|f| (f.index as usize, f.message))
                .collect(),
            results: Vec::new(),
        })
    }

    async fn verify_webhook(
        &self,
        ctx: &CallContext,
        request: &WebhookRequest,
    ) -> Result<WebhookOutcome, ConnectorError> {
        let wreq = guest::WebhookRequest {
            method: request.method.clone(),
            path: request.path.clone(),
            headers: request.headers.clone(),
            body: request.body.clone(),
        };
        let (mut store, mut wctx) = self.prepare(ctx);
        let outcome = tokio::time::timeout(self.time_limit(ctx), async {
            let instance = self.pre.instantiate_async(&mut store).await?;
            let api = instance.patchbay_connector_contract();
            api.call_verify_webhook(&mut store, &wctx, &wreq).await
        })
        .await;
        match self.finish(ctx, &mut store, &mut wctx, outcome)? {
            guest::WebhookOutcome::Accepted(events) => Ok(WebhookOutcome::Accepted {
                events: events
                    .iter()
                    .map(|e| parse_json(e, "event"))
                    .collect::<Result<_, _>>()?,
            }),
            guest::WebhookOutcome::Rejected(reason) => Ok(WebhookOutcome::Rejected { reason }),
        }
    }
}

/// Loads components for the service (`patchbay serve --connectors-dir`):
/// each under its manifest's limits and network rules.
#[derive(Debug, Clone)]
pub struct WasmLoader {
    pub host: WasmHost,
    pub http: HttpClient,
}

impl patchbay_runtime::ComponentLoader for WasmLoader {
    fn load(
        &self,
        bytes: &[u8],
        spec: &patchbay_runtime::ComponentSpec,
    ) -> Result<Arc<dyn Connector>, String> {
        let connector = self
            .host
            .load(bytes)
            .map_err(|e| format!("not a loadable connector component: {e:#}"))?;
        Ok(Arc::new(
            connector
                .with_memory_limit(spec.memory_bytes)
                .with_max_deadline(spec.deadline)
                .with_network(self.http.clone(), spec.network_hosts.clone()),
        ))
    }
}
