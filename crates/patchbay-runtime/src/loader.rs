//! Loading connectors that are not compiled in: WebAssembly components (and,
//! later, other kinds) named by a manifest's `runtime` table.
//!
//! The service reads manifests and component files; a [`ComponentLoader`]
//! (in `patchbay serve`, the WebAssembly host) turns the bytes into a
//! [`Connector`]. The trait keeps the sandbox's engine out of every crate
//! that only needs to call connectors.

use std::sync::Arc;
use std::time::Duration;

use patchbay_core::HostRule;

use crate::contract::Connector;

/// The limits and network rules one component runs under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentSpec {
    /// The integration the component implements (for messages).
    pub integration_id: String,
    /// Longest a call may run (the manifest's, within the operator's maximum).
    pub deadline: Duration,
    /// Most linear memory a call may use.
    pub memory_bytes: usize,
    /// The hosts the manifest declares.
    pub network_hosts: Vec<HostRule>,
}

/// Turns a component's bytes into a connector.
pub trait ComponentLoader: Send + Sync + std::fmt::Debug {
    fn load(&self, bytes: &[u8], spec: &ComponentSpec) -> Result<Arc<dyn Connector>, String>;
}
