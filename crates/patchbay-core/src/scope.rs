//! Tenancy: who owns a row. Every tenant-owned object belongs to one tenant and
//! one organization of that tenant; together they form a [`Scope`].
//!
//! Architecture invariant: a `Scope` is only ever built from an authenticated
//! caller (an API token, a session) or a job that carries one — never from a
//! request body or query string.

use serde::{Deserialize, Serialize};

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn new(id: impl Into<String>) -> Self {
                Self(id.into())
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(
    /// A tenant: the unit of isolation (a store, a customer of the host application).
    TenantId
);
id_type!(
    /// An organization inside a tenant.
    OrganizationId
);

/// The tenant and organization an object belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Scope {
    pub tenant_id: TenantId,
    pub organization_id: OrganizationId,
}

impl Scope {
    pub fn new(tenant_id: impl Into<String>, organization_id: impl Into<String>) -> Scope {
        Scope {
            tenant_id: TenantId::new(tenant_id),
            organization_id: OrganizationId::new(organization_id),
        }
    }
}
