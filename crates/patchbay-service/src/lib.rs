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
//! * [`demo`] — the demo tenant of `patchbay serve --demo`.
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
pub mod credentials;
pub mod demo;
pub mod error;
pub mod events;
pub mod health;
pub mod integrations;
pub mod jobs;
pub mod keys;
pub mod logs;
pub mod tenants;
pub mod users;
pub mod worker;

use std::sync::{Arc, RwLock};

use patchbay_core::{Registry, Timestamp};
use patchbay_store::Store;

pub use auth::{Access, Caller, CallerKind, Feature};
pub use clock::{Clock, FixedClock, SystemClock};
pub use error::{FieldError, Result, ServiceError};
pub use keys::{KeyError, KeyManager, KeySource, RotationOptions};

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
    /// The connectors compiled into this build.
    natives: patchbay_runtime::NativeConnectors,
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
        Services {
            inner: Arc::new(Inner {
                store,
                registry: RwLock::new(Arc::new(registry)),
                keys,
                clock,
                logs,
                sign_in: users::SignInLimiter::default(),
                job_finishes: tokio::sync::watch::Sender::new(0),
                natives: patchbay_runtime::NativeConnectors::builtin(),
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
    pub fn natives(&self) -> &patchbay_runtime::NativeConnectors {
        &self.inner.natives
    }

    /// A counter bumped whenever this process's workers finish jobs.
    pub fn job_finishes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.job_finishes.subscribe()
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

    /// Waits until every operation-log entry handed over so far is stored.
    pub async fn flush_logs(&self) -> Result<()> {
        self.inner.logs.flush().await
    }
}
