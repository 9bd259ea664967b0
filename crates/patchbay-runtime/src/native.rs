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
//! * `sync_postgres_table` — `check` (connects, the table and its cursor and
//!   primary key columns exist), `read` of a table's rows in keyset order on
//!   (cursor column, primary key) and `write` by upsert, connecting only to
//!   addresses the operator's network policy allows.
//! * `sync_airbyte_source` — any Airbyte-protocol source executable:
//!   `check` (its `check`), `read` of one stream (its `read`, one process per
//!   run kept between batches, the cursor being its last state) and the
//!   actions `discover` and `spec`; the process gets a cleared environment.
//! * `sync_medusa_products`, `sync_medusa_customers`, `sync_medusa_orders`,
//!   `sync_medusa_inventory` — MedusaJS (v2) through its Admin API: `check`,
//!   incremental `read` by `updated_at` (keyset-safe through ties, see
//!   [`Medusa`]) and `write` of inventory levels and order status.

use std::collections::HashMap;
use std::sync::Arc;

use crate::contract::Connector;
use crate::http::{HttpClient, HttpPolicy};

mod airbyte;
mod files;
mod local_storage;
mod medusa;
mod postgres_table;

pub use airbyte::{AirbytePrograms, AirbyteSource, BATCH as AIRBYTE_BATCH};

/// What the operator decides for the native connectors besides the network.
#[derive(Debug, Clone, Default)]
pub struct NativeOptions {
    /// The programs `sync_airbyte_source` may run (none by default).
    pub airbyte_programs: AirbytePrograms,
}
pub use files::{
    BATCH as FILE_BATCH, FileSync, MAX_BATCH_BYTES as FILE_MAX_BATCH_BYTES,
    MAX_RECORD_BYTES as FILE_MAX_RECORD_BYTES, SETTLED_AFTER as FILE_SETTLED_AFTER,
};
pub use local_storage::{LocalStorage, MAX_OBJECT_BYTES};
pub use medusa::{
    MAX_REQUESTS_PER_READ as MEDUSA_MAX_REQUESTS_PER_READ, Medusa, MedusaPart, PAGE as MEDUSA_PAGE,
};
pub use postgres_table::{
    BATCH as POSTGRES_TABLE_BATCH, MAX_BATCH as POSTGRES_TABLE_MAX_BATCH, PostgresTable,
};

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
        NativeConnectors::builtin_with_options(http, &NativeOptions::default())
    }

    /// [`NativeConnectors::builtin_with`], with the operator's other choices.
    pub fn builtin_with_options(http: &HttpClient, options: &NativeOptions) -> NativeConnectors {
        let mut n = NativeConnectors::default();
        n.register("storage_local", None, Arc::new(LocalStorage));
        n.register("sync_files", None, Arc::new(FileSync));
        for (id, part) in MedusaPart::ALL {
            n.register(id, None, Arc::new(Medusa::new(http, part)));
        }
        n.register(
            "sync_airbyte_source",
            None,
            Arc::new(AirbyteSource::allowing(options.airbyte_programs.clone())),
        );
        n.register(
            "sync_postgres_table",
            None,
            Arc::new(PostgresTable::new(http.clone())),
        );
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
