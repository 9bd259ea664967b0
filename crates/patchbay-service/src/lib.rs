//! Patchbay's services: the rules behind the API, callable without HTTP.
//!
//! [`Services`] holds the store, the catalog, the vault's keys, the clock and
//! the operation-log writer. Its methods take an authenticated [`Caller`]
//! (whose token decides the scope and features) and return domain results or
//! a [`ServiceError`].
//!
//! * [`auth`] — tokens, features, callers.
//! * [`tenants`] — tenants, organizations, tokens (platform administration).
//! * [`keys`] — master key ring, tenant data keys, rotation.
//! * [`credentials`] — save (validated, encrypted), resolve (bundle
//!   fallthrough), masked read, remove.
//! * [`integrations`] — per-tenant state and lifecycle, API versions,
//!   bundles, principals.
//! * [`logs`] — the operation log: scoped loggers, redaction, queries,
//!   retention.
//! * [`events`], [`audit`] — the outbox and the audit trail.
//! * [`users`] — operator accounts, sessions and sign-in for the admin panel.
//! * [`components`] — connectors from folders (`--connectors-dir`): their
//!   manifests and WebAssembly components.
//! * [`sync`] — data-sync runs (the `sync.run` job), the records store's
//!   changes, field mappings.
//! * [`demo`] — the demo tenant of `patchbay serve --demo`.
//! * [`actions`] — an integration's actions run through its connector;
//!   [`limits`] — the per-tenant concurrency limit they pass;
//!   [`usage`] — their metering per hour, and its reads.
//!
//! Architecture invariants:
//! * Scope comes only from the [`Caller`]; no method takes a tenant or
//!   organization id from client input for a tenant-owned object.
//! * Another tenant's object is reported exactly like a missing one.
//! * A change, its event and its audit record commit together
//!   (`Store::apply`); refused calls are audited too.
//! * Plaintext secrets exist only in memory, between decryption and use.

pub mod actions;
pub mod audit;
pub mod auth;
pub mod clock;
pub mod components;
pub mod credentials;
pub mod demo;
pub mod error;
pub mod events;
pub mod health;
mod hub_checks;
pub mod integrations;
pub mod jobs;
pub mod keys;
pub mod limits;
pub mod logs;
pub mod streams;
pub mod sync;
pub mod tenants;
pub mod usage;
pub mod users;
pub mod worker;

use std::sync::{Arc, RwLock};

use patchbay_core::{Registry, Timestamp};
use patchbay_store::Store;

pub use auth::{Access, Caller, CallerKind, Feature};
pub use clock::{Clock, FixedClock, SystemClock};
pub use error::{FieldError, Result, ServiceError};
pub use keys::{KeyError, KeyManager, KeySource, RotationOptions};
pub use limits::ActionLimits;

/// Everything the services need. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Services {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Arc<dyn Store>,
    /// Swapped whole when connectors are installed; readers keep the `Arc` they took.
    registry: RwLock<Arc<Registry>>,
    keys: KeyManager,
    clock: Arc<dyn Clock>,
    logs: logs::LogWriter,
    sign_in: users::SignInLimiter,
    /// Bumped whenever a worker of this process has recorded finished jobs.
    job_finishes: tokio::sync::watch::Sender<u64>,
    /// Bumped whenever this process commits a sync batch or ends a run.
    sync_progress: tokio::sync::watch::Sender<u64>,
    /// The manifests' rate limits, per tenant and integration, in this process.
    sync_buckets: sync::Buckets,
    /// The connectors compiled into this build (and any registered since);
    /// swapped whole, like the registry.
    natives: RwLock<Arc<patchbay_runtime::NativeConnectors>>,
    /// The per-tenant concurrency limit of actions.
    gate: limits::ActionGate,
    /// Actions' usage counts, flushed to the store about once a second.
    usage: usage::UsageMeter,
    /// The catalog's entries as JSON, cached per registry.
    catalog_json: integrations::CatalogJson,
}

impl Services {
    /// Builds the services. Must be called inside a Tokio runtime (the
    /// operation-log writer runs as a task).
    pub fn new(
        store: Arc<dyn Store>,
        registry: Registry,
        keys: KeyManager,
        clock: Arc<dyn Clock>,
    ) -> Services {
        let logs = logs::LogWriter::start(store.clone());
        let usage = usage::UsageMeter::start(store.clone());
        Services {
            inner: Arc::new(Inner {
                store,
                registry: RwLock::new(Arc::new(registry)),
                keys,
                clock,
                logs,
                sign_in: users::SignInLimiter::default(),
                job_finishes: tokio::sync::watch::Sender::new(0),
                sync_progress: tokio::sync::watch::Sender::new(0),
                sync_buckets: sync::Buckets::default(),
                natives: RwLock::new(Arc::new(patchbay_runtime::NativeConnectors::builtin())),
                gate: limits::ActionGate::default(),
                usage,
                catalog_json: integrations::CatalogJson::default(),
            }),
        }
    }

    pub fn store(&self) -> &dyn Store {
        &*self.inner.store
    }

    /// The current catalog.
    pub fn registry(&self) -> Arc<Registry> {
        self.inner
            .registry
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Replaces the catalog (after installing or removing connectors).
    pub fn set_registry(&self, registry: Registry) {
        *self
            .inner
            .registry
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(registry);
    }

    /// The native connectors of this build.
    pub fn natives(&self) -> Arc<patchbay_runtime::NativeConnectors> {
        self.inner
            .natives
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Rebuilds the built-in native connectors so that those reaching the
    /// network do it through `http` (the operator's policy), with the
    /// operator's other choices (`options`: the Airbyte programs allowed). `patchbay
    /// serve` calls it once at start-up, before anything is registered with
    /// [`Services::register_native`] (which it would undo).
    pub fn set_native_network(
        &self,
        http: &patchbay_runtime::HttpClient,
        options: &patchbay_runtime::native::NativeOptions,
    ) {
        *self
            .inner
            .natives
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(
            patchbay_runtime::NativeConnectors::builtin_with_options(http, options),
        );
    }

    /// Registers (or replaces) a native connector for `integration_id`, for
    /// one API version or, with `None`, for every version without its own.
    /// Calls already running keep the connector they took. Embedders and
    /// tests use it to plug in connectors this build does not carry.
    pub fn register_native(
        &self,
        integration_id: &str,
        api_version: Option<&str>,
        connector: Arc<dyn patchbay_runtime::Connector>,
    ) {
        let mut natives = self
            .inner
            .natives
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut next = (**natives).clone();
        next.register(integration_id, api_version, connector);
        *natives = Arc::new(next);
    }

    /// The per-tenant concurrency limit of actions in this process.
    pub fn action_limits(&self) -> ActionLimits {
        self.inner.gate.limits()
    }

    /// Changes the per-tenant concurrency limit of actions (per process:
    /// see [`limits`]). A tenant with calls running keeps its current slots
    /// until it is idle; `patchbay serve` sets it once, at start-up.
    pub fn set_action_limits(&self, limits: ActionLimits) {
        self.inner.gate.set_limits(limits);
    }

    /// How many of `tenant`'s actions run and wait in this process now.
    pub fn action_load(&self, tenant: &patchbay_core::TenantId) -> (u32, u32) {
        self.inner.gate.load(tenant)
    }

    pub(crate) fn action_gate(&self) -> &limits::ActionGate {
        &self.inner.gate
    }

    /// A counter bumped whenever this process's workers finish jobs.
    pub fn job_finishes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.job_finishes.subscribe()
    }

    /// A counter bumped whenever this process's sync runs make progress
    /// (live progress streams wait on it).
    pub fn sync_progress(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.sync_progress.subscribe()
    }

    pub(crate) fn sync_buckets(&self) -> &sync::Buckets {
        &self.inner.sync_buckets
    }

    pub(crate) fn notify_sync_progress(&self) {
        self.inner
            .sync_progress
            .send_modify(|n| *n = n.wrapping_add(1));
    }

    pub(crate) fn notify_job_finishes(&self) {
        self.inner
            .job_finishes
            .send_modify(|n| *n = n.wrapping_add(1));
    }

    pub fn keys(&self) -> &KeyManager {
        &self.inner.keys
    }

    pub fn now(&self) -> Timestamp {
        self.inner.clock.now()
    }

    /// Authenticates a bearer token.
    pub async fn authenticate(&self, token: &str) -> Result<Caller> {
        let unknown = || ServiceError::Unauthenticated("the API token is not valid".to_owned());
        if !auth::looks_like_token(token) {
            return Err(unknown());
        }
        let record = self
            .store()
            .find_api_token(&auth::hash_token(token))
            .await?
            .ok_or_else(unknown)?;
        let now = self.now();
        let caller = auth::caller_from(&record, now)?;
        // Last-used time at minute resolution: not a write on every request.
        if record.last_used_at.is_none_or(|t| t.plus_seconds(60) < now) {
            let store = self.inner.store.clone();
            let id = record.id.clone();
            tokio::spawn(async move {
                if let Err(e) = store.touch_api_token(&id, now).await {
                    tracing::warn!(error = %e, "cannot record token use");
                }
            });
        }
        Ok(caller)
    }

    /// Waits until every operation-log entry handed over so far is stored,
    /// and the usage counts recorded so far too: the flush of everything
    /// buffered, which `patchbay serve` runs at shutdown.
    pub async fn flush_logs(&self) -> Result<()> {
        let logs = self.inner.logs.flush().await;
        let usage = self.inner.usage.flush().await;
        logs.and(usage)
    }
}
