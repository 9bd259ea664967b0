//! Native connectors: Rust implementations compiled into the binary,
//! registered beside their `patchbay.toml` by integration id — one per API
//! version where versions differ (the tenant's selection picks it), or one
//! for every version.
//!
//! Built in so far:
//! * `storage_local` — `check` (the root is a writable directory) and the
//!   storage actions `put`, `get`, `delete`, `list`, every path confined to
//!   the configured root (no absolute paths, no `..`, no symbolic link
//!   leading out).
//! * `sync_files` — `check` (the file or directory is readable) and `read`
//!   of JSON Lines and CSV files in batches, the cursor being a byte offset
//!   with a fingerprint; unreadable lines and rows are per-record failures.

use std::collections::HashMap;
use std::sync::Arc;

use crate::contract::Connector;
use crate::http::{HttpClient, HttpPolicy};

mod files;
mod local_storage;

pub use files::{
    BATCH as FILE_BATCH, FileSync, MAX_BATCH_BYTES as FILE_MAX_BATCH_BYTES,
    MAX_RECORD_BYTES as FILE_MAX_RECORD_BYTES, SETTLED_AFTER as FILE_SETTLED_AFTER,
};
pub use local_storage::{LocalStorage, MAX_OBJECT_BYTES};

/// A connector for one API version (`None`: for every version).
type Versioned = (Option<String>, Arc<dyn Connector>);

/// The native connectors by integration id.
#[derive(Default, Clone)]
pub struct NativeConnectors {
    by_id: HashMap<String, Vec<Versioned>>,
}

impl std::fmt::Debug for NativeConnectors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NativeConnectors")
            .field("integrations", &self.by_id.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl NativeConnectors {
    /// The connectors this build carries, reaching the network (if they
    /// do) under the default policy: public addresses only.
    pub fn builtin() -> NativeConnectors {
        NativeConnectors::builtin_with(&HttpClient::new(HttpPolicy::default()))
    }

    /// The connectors this build carries; those that talk to a provider
    /// do it through `http` (the operator's policy: declared hosts only,
    /// private addresses only when allowed). A connector that opens its
    /// own sockets (a database driver) vets the address with
    /// [`HttpClient::vet`] first, under the same policy.
    pub fn builtin_with(http: &HttpClient) -> NativeConnectors {
        let _ = http;
        let mut n = NativeConnectors::default();
        n.register("storage_local", None, Arc::new(LocalStorage));
        n.register("sync_files", None, Arc::new(FileSync));
        n
    }

    /// Registers `connector` for `integration_id`, for one API version or
    /// (with `None`) for every version without its own.
    pub fn register(
        &mut self,
        integration_id: &str,
        api_version: Option<&str>,
        connector: Arc<dyn Connector>,
    ) {
        let list = self.by_id.entry(integration_id.to_owned()).or_default();
        list.retain(|(v, _)| v.as_deref() != api_version);
        list.push((api_version.map(str::to_owned), connector));
    }

    /// The connector for an integration at the API version in effect.
    pub fn get(
        &self,
        integration_id: &str,
        api_version: Option<&str>,
    ) -> Option<Arc<dyn Connector>> {
        let list = self.by_id.get(integration_id)?;
        list.iter()
            .find(|(v, _)| v.is_some() && v.as_deref() == api_version)
            .or_else(|| list.iter().find(|(v, _)| v.is_none()))
            .map(|(_, c)| c.clone())
    }

    pub fn has(&self, integration_id: &str) -> bool {
        self.by_id.contains_key(integration_id)
    }
}
