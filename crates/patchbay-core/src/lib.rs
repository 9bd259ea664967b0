//! The pure core of Patchbay: what a connector *is*, independent of where it
//! runs or where its state is stored.
//!
//! * [`manifest`] parses a connector's `patchbay.toml` (one integration, or a
//!   bundle and its members) into checked domain types.
//! * [`registry`] validates a whole catalog of manifests together and answers
//!   catalog questions (list, search, bundles, API-version resolution).
//! * [`category`], [`credentials`], [`version`], [`date`] and [`text`] are the
//!   vocabulary those types are made of.
//! * [`field_mapping`] checks data-sync field mappings and maps records with them.
//!
//! Architecture invariant: this crate does no I/O and knows no async runtime,
//! database or HTTP. Callers hand it manifest *text*; it hands back values or
//! errors that name the file and the field.

pub mod category;
pub mod credentials;
pub mod date;
pub mod field_mapping;
pub mod hub_contract;
pub mod json_schema;
pub mod manifest;
pub mod registry;
pub mod schedule;
pub mod scope;
pub mod state;
pub mod text;
pub mod time;
pub mod version;

pub use category::{Category, Hub};
pub use manifest::{
    Bundle, Capabilities, Direction, HealthCheck, HostRule, Integration, Manifest, RateLimit,
    RuntimeKind, RuntimeSpec, WebhookScheme, Webhooks,
};
pub use registry::{CatalogError, CatalogErrors, CatalogQuery, Entry, ManifestSource, Registry};
pub use schedule::{Schedule, ScheduleError};
pub use scope::{OrganizationId, Scope, TenantId};
pub use state::{IntegrationStatus, LogLevel};
pub use time::Timestamp;
pub use version::{ApiVersion, VersionError, VersionStatus};
