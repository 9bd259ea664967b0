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

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use patchbay_runtime::{Batch, CallContext, Connector, ConnectorError, Health};
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
            logs: Arc::new(Mutex::new(Vec::new())),
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

/// One line a guest logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub integration_id: String,
    pub level: &'static str,
    pub message: String,
}

/// One connector component, ready to be called.
#[derive(Clone)]
pub struct WasmConnector {
    engine: Engine,
    pre: bindings::ConnectorPre<CallState>,
    memory_limit: usize,
    logs: Arc<Mutex<Vec<LogLine>>>,
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
    integration_id: String,
    logs: Vec<LogLine>,
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
    fn log(&mut self, level: LogLevel, message: String) {
        let id = self.integration_id.as_str();
        let level = match level {
            LogLevel::Trace => {
                tracing::trace!(integration = id, "{message}");
                "trace"
            }
            LogLevel::Debug => {
                tracing::debug!(integration = id, "{message}");
                "debug"
            }
            LogLevel::Info => {
                tracing::info!(integration = id, "{message}");
                "info"
            }
            LogLevel::Warn => {
                tracing::warn!(integration = id, "{message}");
                "warn"
            }
            LogLevel::Error => {
                tracing::error!(integration = id, "{message}");
                "error"
            }
        };
        // Bounded: a chatty guest cannot fill the host's memory.
        if self.logs.len() < 1000 {
            self.logs.push(LogLine {
                integration_id: self.integration_id.clone(),
                level,
                message: message.chars().take(4096).collect(),
            });
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

    /// The lines guests logged so far, oldest first; empties the buffer.
    pub fn take_logs(&self) -> Vec<LogLine> {
        std::mem::take(
            &mut *self
                .logs
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
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
            integration_id: ctx.integration_id.clone(),
            logs: Vec::new(),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        let until = Instant::now() + ctx.deadline;
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
    fn time_limit(ctx: &CallContext) -> Duration {
        ctx.deadline + EPOCH_TICK * 5
    }

    /// Wipes the call's credentials, keeps its logs, and maps its outcome.
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
        let logs = std::mem::take(&mut store.data_mut().logs);
        if !logs.is_empty() {
            self.logs
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .extend(logs);
        }
        match outcome {
            Err(_elapsed) => Err(deadline_error(ctx.deadline)),
            Ok(Ok(result)) => result.map_err(from_guest),
            Ok(Err(trap)) => Err(trap_error(
                store.data(),
                &trap,
                ctx.deadline,
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
        let outcome = tokio::time::timeout(Self::time_limit(ctx), async {
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
        let outcome = tokio::time::timeout(Self::time_limit(ctx), async {
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
        let outcome = tokio::time::timeout(Self::time_limit(ctx), async {
            let instance = self.pre.instantiate_async(&mut store).await?;
            let api = instance.patchbay_connector_contract();
            api.call_invoke(&mut store, &wctx, action, &input).await
        })
        .await;
        let output = self.finish(ctx, &mut store, &mut wctx, outcome)?;
        parse_json(&output, "output")
    }
}
