//! Per-tenant integration state and lifecycle (SPEC-045a §4, implementation
//! guide "Connection lifecycle" and "Principal and scope model").
//!
//! * Status: `draft` → `enabled` ↔ `disabled`, any → `revoked` (credentials
//!   destroyed), `revoked` → `draft`. An integration never touched is a draft.
//! * Enabling is refused (409, every reason at once) while required
//!   credentials are missing — bundle fallthrough counts — or the selected API
//!   version is past its sunset date. Selecting a deprecated version is
//!   allowed and answered with a warning naming the sunset date and guide.
//! * Each enabled connection acts as its own principal: a principal id, a key
//!   id, its scope and the action keys of its manifest. Disabling or revoking
//!   revokes the principal; enabling again issues a new one.
//! * Writes compare-and-set on the state's version; a lost race is retried.

use std::collections::HashMap;
use std::sync::Arc;

use patchbay_core::{
    Bundle, CatalogQuery, Category, Integration, IntegrationStatus, Registry, Scope, Timestamp,
    VersionStatus,
};
use patchbay_store::{Change, Expect, PrincipalRecord, StateRecord, StoreError};
use serde::ser::{SerializeMap as _, SerializeSeq as _};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::auth::{Caller, Feature};
use crate::credentials::Source;
use crate::error::{FieldError, Result, ServiceError};
use crate::{Services, audit, events};

/// A requested change of state. Absent fields stay as they are.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StateIn {
    pub status: Option<IntegrationStatus>,
    /// A version id, or `null` for "the default version".
    #[serde(default)]
    pub api_version: VersionChoice,
}

/// What a state change does to the selected API version.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum VersionChoice {
    /// The field was absent: keep the selection.
    #[default]
    Unchanged,
    /// `null`: follow the integration's default version.
    Default,
    /// A version id.
    Version(String),
}

impl schemars::JsonSchema for VersionChoice {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "VersionChoice".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": ["string", "null"], "description": "An API version id, or null for the default version" })
    }
}

impl<'de> Deserialize<'de> for VersionChoice {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(
            Option::<String>::deserialize(d)?
                .map_or(VersionChoice::Default, VersionChoice::Version),
        )
    }
}

/// Enable or disable every member of a bundle.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BundleStateIn {
    pub enabled: bool,
}

/// The state of one integration for the caller's scope.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StateOut {
    pub status: IntegrationStatus,
    /// The version the tenant selected; `null` means "the default".
    pub api_version: Option<String>,
    /// The version in effect (the selected one, or the default).
    pub effective_api_version: Option<String>,
    pub enabled_at: Option<Timestamp>,
    pub enabled_by: Option<String>,
    pub last_health: Option<serde_json::Value>,
    pub last_health_at: Option<Timestamp>,
    pub updated_at: Option<Timestamp>,
    /// Increases with every change (0: never changed).
    pub version: i64,
}

/// Something the caller should know although the call succeeded.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Warning {
    pub code: &'static str,
    pub message: String,
    pub sunset_at: Option<patchbay_core::date::Date>,
    pub migration_guide_url: Option<String>,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StateOutcome {
    pub integration_id: String,
    pub state: StateOut,
    pub warnings: Vec<Warning>,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BundleOutcome {
    pub bundle_id: String,
    pub members: Vec<StateOutcome>,
}

/// A principal as the API shows it.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrincipalOut {
    pub principal_id: String,
    pub principal_type: &'static str,
    pub key_id: String,
    pub integration_id: String,
    pub tenant_id: String,
    pub organization_id: String,
    pub action_keys: Vec<String>,
    pub created_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
    pub active: bool,
}

fn principal_out(p: PrincipalRecord) -> PrincipalOut {
    PrincipalOut {
        active: p.revoked_at.is_none(),
        principal_id: p.principal_id,
        principal_type: "integration_principal",
        key_id: p.key_id,
        integration_id: p.integration_id,
        tenant_id: p.scope.tenant_id.to_string(),
        organization_id: p.scope.organization_id.to_string(),
        action_keys: p.action_keys,
        created_at: p.created_at,
        revoked_at: p.revoked_at,
    }
}

pub(crate) fn state_out(reg: &Registry, id: &str, rec: Option<&StateRecord>) -> StateOut {
    let selected = rec.and_then(|r| r.api_version.clone());
    let effective = reg
        .resolve_api_version(id, selected.as_deref())
        .ok()
        .flatten()
        .map(|v| v.id.clone());
    StateOut {
        status: rec.map_or(IntegrationStatus::Draft, |r| r.status),
        api_version: selected,
        effective_api_version: effective,
        enabled_at: rec.and_then(|r| r.enabled_at),
        enabled_by: rec.and_then(|r| r.enabled_by.clone()),
        last_health: rec
            .and_then(|r| r.last_health.as_deref())
            .and_then(|h| serde_json::from_str(h).ok()),
        last_health_at: rec.and_then(|r| r.last_health_at),
        updated_at: rec.map(|r| r.updated_at),
        version: rec.map_or(0, |r| r.version),
    }
}

/// The catalog with the caller's states, for `GET /api/integrations`.
/// Serialized directly from the registry, without an intermediate copy.
#[derive(Debug)]
pub struct IntegrationList {
    registry: Arc<Registry>,
    /// Each integration's JSON without its closing brace, by registry index.
    prefixes: Arc<Vec<String>>,
    items: Vec<usize>,
    bundles: Vec<usize>,
    states: HashMap<String, StateRecord>,
}

/// Each integration of a registry as JSON without its closing brace — the
/// static part of a list entry, to which the tenant's `state` is appended.
/// Built once per registry (the catalog changes rarely; listing it is the
/// API's hottest read): a list then copies bytes instead of serializing
/// every field of a thousand manifests.
#[derive(Debug, Default)]
pub(crate) struct CatalogJson {
    cached: std::sync::Mutex<Option<CachedCatalog>>,
}

/// The registry the entries were made from, and the entries.
type CachedCatalog = (std::sync::Weak<Registry>, Arc<Vec<String>>);

impl CatalogJson {
    fn prefixes(&self, registry: &Arc<Registry>) -> Arc<Vec<String>> {
        let mut cached = self
            .cached
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((of, prefixes)) = cached.as_ref()
            && std::ptr::eq(of.as_ptr(), Arc::as_ptr(registry))
        {
            return prefixes.clone();
        }
        let prefixes: Arc<Vec<String>> = Arc::new(
            registry
                .integrations()
                .iter()
                .map(|i| {
                    let mut json = serde_json::to_string(i).unwrap_or_else(|_| "{".to_owned());
                    json.pop();
                    json
                })
                .collect(),
        );
        *cached = Some((Arc::downgrade(registry), prefixes.clone()));
        prefixes
    }
}

struct Item<'a> {
    integration: &'a Integration,
    state: StateOut,
}

/// The fields of [`Integration`] by reference, followed by `state`: the same
/// JSON as `#[serde(flatten)]` would give, without flatten's buffering of
/// every field (which doubled the list's serialization time). The test
/// `item_serializes_like_the_flattened_integration` keeps the two equal.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ItemRef<'a> {
    id: &'a str,
    title: &'a str,
    description: &'a str,
    category: patchbay_core::Category,
    hub: patchbay_core::Hub,
    provider_key: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    icon: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    docs_url: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    package: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    author: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    license: Option<&'a str>,
    tags: &'a [String],
    credentials: &'a patchbay_core::credentials::CredentialSchema,
    #[serde(skip_serializing_if = "Option::is_none")]
    health_check: Option<&'a patchbay_core::HealthCheck>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bundle_id: Option<&'a str>,
    api_versions: &'a [patchbay_core::ApiVersion],
    capabilities: &'a patchbay_core::Capabilities,
    network_hosts: &'a [patchbay_core::HostRule],
    #[serde(skip_serializing_if = "Option::is_none")]
    runtime: Option<&'a patchbay_core::RuntimeSpec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rate_limit: Option<&'a patchbay_core::RateLimit>,
    state: &'a StateOut,
}

impl Serialize for Item<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let i = self.integration;
        // Destructured so that a new field of `Integration` fails to compile here.
        let Integration {
            id,
            title,
            description,
            category,
            hub,
            provider_key,
            icon,
            docs_url,
            package,
            version,
            author,
            license,
            tags,
            credentials,
            health_check,
            bundle_id,
            api_versions,
            capabilities,
            network_hosts,
            runtime,
            rate_limit,
        } = i;
        ItemRef {
            id,
            title,
            description,
            category: *category,
            hub: *hub,
            provider_key,
            icon: icon.as_deref(),
            docs_url: docs_url.as_deref(),
            package: package.as_deref(),
            version: version.as_deref(),
            author: author.as_deref(),
            license: license.as_deref(),
            tags,
            credentials,
            health_check: health_check.as_ref(),
            bundle_id: bundle_id.as_deref(),
            api_versions,
            capabilities,
            network_hosts,
            runtime: runtime.as_ref(),
            rate_limit: rate_limit.as_ref(),
            state: &self.state,
        }
        .serialize(s)
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BundleItem<'a> {
    #[serde(flatten)]
    bundle: &'a Bundle,
    integration_count: usize,
    enabled_count: usize,
    members: Vec<&'a str>,
}

impl IntegrationList {
    /// The listed integrations with their states, sorted by title.
    pub fn items(&self) -> impl Iterator<Item = (&Integration, StateOut)> + '_ {
        self.items.iter().map(|&n| {
            let i = &self.registry.integrations()[n];
            (i, state_out(&self.registry, &i.id, self.states.get(&i.id)))
        })
    }

    /// The listed bundles, each with all its members and their states.
    pub fn bundles(&self) -> impl Iterator<Item = (&Bundle, Vec<(&Integration, StateOut)>)> + '_ {
        self.bundles.iter().map(|&n| {
            let b = &self.registry.bundles()[n];
            let members = self
                .registry
                .members(&b.id)
                .map(|i| (i, state_out(&self.registry, &i.id, self.states.get(&i.id))))
                .collect();
            (b, members)
        })
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    fn bundle_item<'a>(&'a self, b: &'a Bundle) -> BundleItem<'a> {
        let members: Vec<&str> = self
            .registry
            .members(&b.id)
            .map(|i| i.id.as_str())
            .collect();
        let enabled_count = members
            .iter()
            .filter(|m| {
                self.states
                    .get(**m)
                    .is_some_and(|s| s.status == IntegrationStatus::Enabled)
            })
            .count();
        BundleItem {
            bundle: b,
            integration_count: members.len(),
            enabled_count,
            members,
        }
    }
}

/// The schema of [`IntegrationList`] (which serializes itself without copies).
#[derive(Serialize, schemars::JsonSchema)]
#[schemars(rename = "IntegrationList")]
struct IntegrationListSchema {
    items: Vec<IntegrationItemSchema>,
    bundles: Vec<BundleItemSchema>,
}

#[derive(Serialize, schemars::JsonSchema)]
#[schemars(rename = "IntegrationItem")]
struct IntegrationItemSchema {
    #[serde(flatten)]
    integration: Integration,
    state: StateOut,
}

#[derive(Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "BundleItem")]
struct BundleItemSchema {
    #[serde(flatten)]
    bundle: Bundle,
    integration_count: usize,
    enabled_count: usize,
    members: Vec<String>,
}

impl schemars::JsonSchema for IntegrationList {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "IntegrationList".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        IntegrationListSchema::json_schema(generator)
    }
}

impl Serialize for IntegrationList {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        struct Items<'a>(&'a IntegrationList);
        impl Serialize for Items<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let l = self.0;
                let mut seq = s.serialize_seq(Some(l.items.len()))?;
                let mut entry = String::new();
                for &n in &l.items {
                    let i = &l.registry.integrations()[n];
                    let state = state_out(&l.registry, &i.id, l.states.get(&i.id));
                    match l.prefixes.get(n) {
                        // The cached fields, then `state`: the same JSON as `Item`.
                        Some(prefix) if prefix.len() > 1 => {
                            entry.clear();
                            entry.push_str(prefix);
                            entry.push_str(",\"state\":");
                            entry.push_str(
                                &serde_json::to_string(&state)
                                    .map_err(serde::ser::Error::custom)?,
                            );
                            entry.push('}');
                            let raw = serde_json::value::RawValue::from_string(std::mem::take(
                                &mut entry,
                            ))
                            .map_err(serde::ser::Error::custom)?;
                            seq.serialize_element(&raw)?;
                            entry = String::from(Box::<str>::from(raw));
                        }
                        _ => seq.serialize_element(&Item {
                            integration: i,
                            state,
                        })?,
                    }
                }
                seq.end()
            }
        }
        struct Bundles<'a>(&'a IntegrationList);
        impl Serialize for Bundles<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let l = self.0;
                let mut seq = s.serialize_seq(Some(l.bundles.len()))?;
                for &n in &l.bundles {
                    seq.serialize_element(&l.bundle_item(&l.registry.bundles()[n]))?;
                }
                seq.end()
            }
        }
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("items", &Items(self))?;
        m.serialize_entry("bundles", &Bundles(self))?;
        m.end()
    }
}

/// One integration with everything the detail page shows.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IntegrationDetail {
    pub integration: Integration,
    pub bundle: Option<BundleRef>,
    pub state: StateOut,
    pub credentials: CredentialSummary,
    pub principal: Option<PrincipalOut>,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BundleRef {
    pub id: String,
    pub title: String,
}

/// Whether credentials are saved, and where they come from — never the values.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CredentialSummary {
    pub configured: bool,
    pub source: Option<Source>,
    pub bundle_id: Option<String>,
    pub key_id: Option<String>,
    pub updated_at: Option<Timestamp>,
    pub last_used_at: Option<Timestamp>,
}

/// A bundle with its members' states.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BundleDetail {
    pub bundle: Bundle,
    pub members: Vec<MemberOut>,
    pub enabled_count: usize,
    pub credentials: CredentialSummary,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberOut {
    pub id: String,
    pub title: String,
    pub category: Category,
    pub state: StateOut,
}

/// What every plan of one call shares.
#[derive(Clone, Copy)]
struct PlanContext<'a> {
    caller: &'a Caller,
    scope: &'a Scope,
    reg: &'a Registry,
    now: Timestamp,
}

/// A planned write for one integration.
struct Plan {
    changes: Vec<Change>,
    outcome: StateOutcome,
    /// Whether anything changes (an unchanged state is not written).
    writes: bool,
}

impl Services {
    fn integration<'a>(reg: &'a Registry, id: &str) -> Result<&'a Integration> {
        reg.integration(id)
            .ok_or_else(|| ServiceError::NotFound(format!("no integration `{id}`")))
    }

    /// The catalog with the caller's states; bundles with member and enabled counts.
    pub async fn list_integrations(
        &self,
        caller: &Caller,
        q: &CatalogQuery<'_>,
    ) -> Result<IntegrationList> {
        let scope = caller.scope_with(Feature::IntegrationsView)?;
        let registry = self.registry();
        let index: HashMap<&str, usize> = registry
            .integrations()
            .iter()
            .enumerate()
            .map(|(n, i)| (i.id.as_str(), n))
            .collect();
        let items = registry
            .list(q)
            .into_iter()
            .filter_map(|i| index.get(i.id.as_str()).copied())
            .collect();
        let bundle_index: HashMap<&str, usize> = registry
            .bundles()
            .iter()
            .enumerate()
            .map(|(n, b)| (b.id.as_str(), n))
            .collect();
        let bundles = registry
            .list_bundles(q)
            .into_iter()
            .filter_map(|b| bundle_index.get(b.id.as_str()).copied())
            .collect();
        let states = self
            .store()
            .list_states(scope)
            .await?
            .into_iter()
            .map(|s| (s.integration_id.clone(), s))
            .collect();
        drop(index);
        drop(bundle_index);
        Ok(IntegrationList {
            prefixes: self.inner.catalog_json.prefixes(&registry),
            registry,
            items,
            bundles,
            states,
        })
    }

    pub(crate) async fn credential_summary(
        &self,
        scope: &Scope,
        id: &str,
        fallback: Option<&str>,
    ) -> Result<CredentialSummary> {
        let ids: Vec<&str> = std::iter::once(id).chain(fallback).collect();
        let found = self
            .store()
            .find_credentials(scope, &ids)
            .await?
            .into_iter()
            .next();
        Ok(match found {
            Some(r) => CredentialSummary {
                configured: true,
                source: Some(if r.integration_id == id {
                    Source::Own
                } else {
                    Source::Bundle
                }),
                bundle_id: (r.integration_id != id).then(|| r.integration_id.clone()),
                key_id: Some(r.key_id),
                updated_at: Some(r.updated_at),
                last_used_at: r.last_used_at,
            },
            None => CredentialSummary {
                configured: false,
                source: None,
                bundle_id: None,
                key_id: None,
                updated_at: None,
                last_used_at: None,
            },
        })
    }

    pub async fn integration_detail(&self, caller: &Caller, id: &str) -> Result<IntegrationDetail> {
        let scope = caller.scope_with(Feature::IntegrationsView)?;
        let reg = self.registry();
        let i = Self::integration(&reg, id)?;
        let state = self.store().get_state(scope, id).await?;
        let principal = self
            .store()
            .get_principal(scope, id)
            .await?
            .map(principal_out);
        let credentials = self
            .credential_summary(scope, id, i.bundle_id.as_deref())
            .await?;
        let mut state = state_out(&reg, id, state.as_ref());
        // Drift: a healthy result older than the credentials reads as degraded.
        if let Some(drifted) = state.last_health.as_ref().and_then(|h| {
            crate::health::effective_health(Some(&h.to_string()), credentials.updated_at)
        }) {
            state.last_health = serde_json::to_value(drifted).ok();
        }
        Ok(IntegrationDetail {
            integration: i.clone(),
            bundle: reg.bundle_of(id).map(|b| BundleRef {
                id: b.id.clone(),
                title: b.title.clone(),
            }),
            state,
            credentials,
            principal,
        })
    }

    pub async fn bundle_detail(&self, caller: &Caller, id: &str) -> Result<BundleDetail> {
        let scope = caller.scope_with(Feature::IntegrationsView)?;
        let reg = self.registry();
        let b = reg
            .bundle(id)
            .ok_or_else(|| ServiceError::NotFound(format!("no bundle `{id}`")))?;
        let states: HashMap<String, StateRecord> = self
            .store()
            .list_states(scope)
            .await?
            .into_iter()
            .map(|s| (s.integration_id.clone(), s))
            .collect();
        let members: Vec<MemberOut> = reg
            .members(id)
            .map(|i| MemberOut {
                id: i.id.clone(),
                title: i.title.clone(),
                category: i.category,
                state: state_out(&reg, &i.id, states.get(&i.id)),
            })
            .collect();
        Ok(BundleDetail {
            bundle: b.clone(),
            enabled_count: members
                .iter()
                .filter(|m| m.state.status == IntegrationStatus::Enabled)
                .count(),
            members,
            credentials: self.credential_summary(scope, id, None).await?,
        })
    }

    /// The principal of a connection (active or last revoked).
    pub async fn principal(&self, caller: &Caller, id: &str) -> Result<PrincipalOut> {
        let scope = caller.scope_with(Feature::IntegrationsView)?;
        Self::integration(&self.registry(), id)?;
        self.store()
            .get_principal(scope, id)
            .await?
            .map(principal_out)
            .ok_or_else(|| {
                ServiceError::NotFound(format!("`{id}` has no principal: it was never enabled"))
            })
    }

    /// Plans the change of one integration's state; errors are per field.
    async fn plan(
        &self,
        cx: &PlanContext<'_>,
        i: &Integration,
        current: Option<StateRecord>,
        input: &StateIn,
    ) -> Result<Plan, Vec<FieldError>> {
        let PlanContext {
            caller,
            scope,
            reg,
            now,
        } = *cx;
        let mut errors = Vec::new();
        let from = current
            .as_ref()
            .map_or(IntegrationStatus::Draft, |c| c.status);
        let selected_before = current.as_ref().and_then(|c| c.api_version.clone());
        let selected = match &input.api_version {
            VersionChoice::Unchanged => selected_before.clone(),
            VersionChoice::Default => None,
            VersionChoice::Version(v) => Some(v.clone()),
        };
        let effective = match reg.resolve_api_version(&i.id, selected.as_deref()) {
            Ok(v) => v,
            Err(e) => {
                // The message lists what exists, not what was sent (input is never echoed).
                let message = match e {
                    patchbay_core::VersionError::UnknownVersion { available, .. } => {
                        format!(
                            "not an API version of `{}`; available: {}",
                            i.id,
                            available.join(", ")
                        )
                    }
                    _ => format!("`{}` is not versioned; send no apiVersion", i.id),
                };
                errors.push(FieldError::new(
                    "apiVersion",
                    "unknown_api_version",
                    message,
                ));
                return Err(errors);
            }
        };
        let to = input.status.unwrap_or(from);
        if to != from && !from.can_become(to) {
            errors.push(FieldError::new(
                "status",
                "invalid_transition",
                format!("`{}` cannot become `{}`", from.as_str(), to.as_str()),
            ));
            return Err(errors);
        }
        let version_changed = selected != selected_before;
        let mut warnings = Vec::new();
        if let Some(v) = effective
            && v.status == VersionStatus::Deprecated
        {
            warnings.push(Warning {
                code: "deprecated_api_version",
                message: match v.sunset_at {
                    Some(d) => format!(
                        "API version {} is deprecated and stops working after {d}",
                        v.id
                    ),
                    None => format!("API version {} is deprecated", v.id),
                },
                sunset_at: v.sunset_at,
                migration_guide_url: v.migration_guide_url.clone(),
            });
        }
        if to == IntegrationStatus::Enabled && (from != to || version_changed) {
            if let Some(v) = effective
                && v.is_past_sunset(now.date())
            {
                errors.push(FieldError::new(
                    "apiVersion",
                    "past_sunset",
                    format!(
                        "API version {} was sunset on {}; select a current version",
                        v.id,
                        v.sunset_at.map(|d| d.to_string()).unwrap_or_default()
                    ),
                ));
            }
            let o = crate::credentials::owner(reg, &i.id)
                .map_err(|e| vec![FieldError::new("integrationId", "not_found", e.to_string())])?;
            let resolved = self
                .peek_credentials(scope, &i.id)
                .await
                .map_err(|e| vec![FieldError::new("credentials", "unreadable", e.to_string())])?;
            for f in o.schema.fields.iter().filter(|f| f.required) {
                let present = resolved
                    .as_ref()
                    .and_then(|r| r.values.get(&f.key))
                    .is_some_and(|v| !v.is_null());
                if !present {
                    errors.push(FieldError::new(
                        format!("credentials.{}", f.key),
                        "required",
                        format!("{} is required before enabling", f.label),
                    ));
                }
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let writes = to != from || version_changed;
        let mut record = current.clone().unwrap_or(StateRecord {
            scope: scope.clone(),
            integration_id: i.id.clone(),
            status: IntegrationStatus::Draft,
            api_version: None,
            enabled_at: None,
            enabled_by: None,
            last_health: None,
            last_health_at: None,
            updated_at: now,
            version: 0,
        });
        let mut changes = Vec::new();
        if writes {
            let expect = current
                .as_ref()
                .map_or(Expect::Absent, |c| Expect::Version(c.version));
            record.status = to;
            record.api_version.clone_from(&selected);
            record.updated_at = now;
            record.version += 1;
            let payload = serde_json::json!({ "integrationId": i.id, "from": from.as_str(), "to": to.as_str(), "apiVersion": effective.map(|v| &v.id) });
            if to != from {
                match to {
                    IntegrationStatus::Enabled => {
                        record.enabled_at = Some(now);
                        record.enabled_by = Some(caller.actor());
                        let principal = PrincipalRecord {
                            scope: scope.clone(),
                            integration_id: i.id.clone(),
                            principal_id: format!("integration:{}", uuid::Uuid::new_v4()),
                            key_id: format!("pk_{}", uuid::Uuid::new_v4().simple()),
                            action_keys: i.capabilities.actions.clone(),
                            created_at: now,
                            revoked_at: None,
                        };
                        changes.push(audit::success(
                            caller,
                            Some(scope),
                            "principal.grant",
                            &principal.principal_id,
                            Some(serde_json::json!({ "integrationId": i.id, "keyId": principal.key_id, "actionKeys": principal.action_keys })),
                            now,
                        ));
                        changes.push(Change::PutPrincipal(principal));
                        changes.push(events::event(
                            scope,
                            events::INTEGRATION_ENABLED,
                            &i.id,
                            &payload,
                            now,
                        ));
                    }
                    IntegrationStatus::Disabled | IntegrationStatus::Revoked => {
                        changes.push(Change::RevokePrincipal {
                            scope: scope.clone(),
                            integration_id: i.id.clone(),
                            at: now,
                        });
                        if to == IntegrationStatus::Revoked {
                            changes.push(Change::DeleteCredential {
                                scope: scope.clone(),
                                integration_id: i.id.clone(),
                            });
                            changes.push(events::event(
                                scope,
                                events::INTEGRATION_REVOKED,
                                &i.id,
                                &payload,
                                now,
                            ));
                        } else {
                            changes.push(events::event(
                                scope,
                                events::INTEGRATION_DISABLED,
                                &i.id,
                                &payload,
                                now,
                            ));
                        }
                    }
                    IntegrationStatus::Draft => {}
                }
            }
            changes.push(audit::success(
                caller,
                Some(scope),
                "integration.state",
                &i.id,
                Some(payload),
                now,
            ));
            changes.insert(
                0,
                Change::PutState {
                    state: record.clone(),
                    expect,
                },
            );
        }
        Ok(Plan {
            changes,
            outcome: StateOutcome {
                integration_id: i.id.clone(),
                state: state_out(reg, &i.id, Some(&record).filter(|r| r.version > 0)),
                warnings,
            },
            writes,
        })
    }

    /// Changes the status and/or API version of one integration.
    pub async fn set_state(
        &self,
        caller: &Caller,
        id: &str,
        input: StateIn,
    ) -> Result<StateOutcome> {
        self.audited(caller, "integration.state", id, async {
            let scope = caller.scope_with(Feature::IntegrationsManage)?.clone();
            let reg = self.registry();
            let i = Self::integration(&reg, id)?;
            for _attempt in 0..3 {
                let now = self.now();
                let current = self.store().get_state(&scope, id).await?;
                let plan = self
                    .plan(
                        &PlanContext {
                            caller,
                            scope: &scope,
                            reg: &reg,
                            now,
                        },
                        i,
                        current,
                        &input,
                    )
                    .await
                    .map_err(|errors| refusal(&errors, id))?;
                if !plan.writes {
                    return Ok(plan.outcome);
                }
                match self.store().apply(plan.changes).await {
                    Ok(_) => {
                        self.log_lifecycle(
                            &scope,
                            id,
                            "integration.state",
                            &format!("Status {}", plan.outcome.state.status.as_str()),
                        )
                        .await;
                        return Ok(plan.outcome);
                    }
                    Err(StoreError::Stale(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Err(ServiceError::conflict(
                "stale",
                format!("the state of `{id}` keeps changing; try again"),
            ))
        })
        .await
    }

    /// "Enable all" / "Disable all" of a bundle: every member or none.
    pub async fn set_bundle_state(
        &self,
        caller: &Caller,
        id: &str,
        input: BundleStateIn,
    ) -> Result<BundleOutcome> {
        self.audited(caller, "bundle.state", id, async {
            let scope = caller.scope_with(Feature::IntegrationsManage)?.clone();
            let reg = self.registry();
            reg.bundle(id)
                .ok_or_else(|| ServiceError::NotFound(format!("no bundle `{id}`")))?;
            let target = if input.enabled {
                IntegrationStatus::Enabled
            } else {
                IntegrationStatus::Disabled
            };
            for _attempt in 0..3 {
                let now = self.now();
                let states: HashMap<String, StateRecord> = self
                    .store()
                    .list_states(&scope)
                    .await?
                    .into_iter()
                    .map(|s| (s.integration_id.clone(), s))
                    .collect();
                let mut errors = Vec::new();
                let mut changes = Vec::new();
                let mut members = Vec::new();
                let mut touched = Vec::new();
                for m in reg.members(id) {
                    let current = states.get(&m.id).cloned();
                    let from = current
                        .as_ref()
                        .map_or(IntegrationStatus::Draft, |c| c.status);
                    // Disabling leaves drafts and revoked members as they are.
                    let wanted = if !input.enabled
                        && matches!(from, IntegrationStatus::Draft | IntegrationStatus::Revoked)
                    {
                        from
                    } else {
                        target
                    };
                    let plan_in = StateIn {
                        status: Some(wanted),
                        api_version: VersionChoice::Unchanged,
                    };
                    match self
                        .plan(
                            &PlanContext {
                                caller,
                                scope: &scope,
                                reg: &reg,
                                now,
                            },
                            m,
                            current,
                            &plan_in,
                        )
                        .await
                    {
                        Ok(plan) => {
                            if plan.writes {
                                touched.push(m.id.clone());
                            }
                            changes.extend(plan.changes);
                            members.push(plan.outcome);
                        }
                        Err(errs) => errors.extend(errs.into_iter().map(|e| FieldError {
                            field: format!("members.{}.{}", m.id, e.field),
                            ..e
                        })),
                    }
                }
                if !errors.is_empty() {
                    let verb = if input.enabled { "enabled" } else { "disabled" };
                    return Err(ServiceError::Conflict {
                        code: "bundle_refused",
                        message: format!("bundle `{id}` cannot be {verb}: see errors"),
                        errors,
                    });
                }
                if touched.is_empty() {
                    return Ok(BundleOutcome {
                        bundle_id: id.to_owned(),
                        members,
                    });
                }
                let event = if input.enabled {
                    events::BUNDLE_ENABLED
                } else {
                    events::BUNDLE_DISABLED
                };
                changes.push(events::event(
                    &scope,
                    event,
                    id,
                    &serde_json::json!({ "bundleId": id, "members": touched }),
                    now,
                ));
                changes.push(audit::success(
                    caller,
                    Some(&scope),
                    "bundle.state",
                    id,
                    Some(serde_json::json!({ "enabled": input.enabled, "members": touched })),
                    now,
                ));
                match self.store().apply(changes).await {
                    Ok(_) => {
                        // Each member's timeline records its own change.
                        let verb = if input.enabled { "enabled" } else { "disabled" };
                        for member in &touched {
                            self.log_lifecycle(
                                &scope,
                                member,
                                "integration.state",
                                &format!("Status {verb} (bundle {id})"),
                            )
                            .await;
                        }
                        return Ok(BundleOutcome {
                            bundle_id: id.to_owned(),
                            members,
                        });
                    }
                    Err(StoreError::Stale(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Err(ServiceError::conflict(
                "stale",
                format!("the members of `{id}` keep changing; try again"),
            ))
        })
        .await
    }
}

/// A refusal with every reason: 409 when the state forbids it, 422 when the
/// input itself is wrong.
fn refusal(errors: &[FieldError], id: &str) -> ServiceError {
    let input_problem = errors.iter().any(|e| e.code == "unknown_api_version");
    if input_problem {
        ServiceError::invalid("the request is invalid", errors.to_vec())
    } else if errors.iter().any(|e| e.code == "invalid_transition") {
        ServiceError::Conflict {
            code: "invalid_transition",
            message: errors[0].message.clone(),
            errors: errors.to_vec(),
        }
    } else {
        ServiceError::Conflict {
            code: "enable_refused",
            message: format!("`{id}` cannot be enabled: see errors"),
            errors: errors.to_vec(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_serializes_like_the_flattened_integration() {
        #[derive(Serialize)]
        struct Flat<'a> {
            #[serde(flatten)]
            integration: &'a Integration,
            state: &'a StateOut,
        }
        let reg = patchbay_connectors::builtin_registry().unwrap();
        assert!(!reg.integrations().is_empty());
        for i in reg.integrations() {
            let state = state_out(&reg, &i.id, None);
            let flat = serde_json::to_string(&Flat {
                integration: i,
                state: &state,
            })
            .unwrap();
            let item = serde_json::to_string(&Item {
                integration: i,
                state: state.clone(),
            })
            .unwrap();
            assert_eq!(item, flat, "{}", i.id);
        }
    }

    #[test]
    fn the_list_splices_cached_entries_into_the_same_json() {
        let reg = Arc::new(patchbay_connectors::builtin_registry().unwrap());
        let cache = CatalogJson::default();
        let prefixes = cache.prefixes(&reg);
        // The same registry: the same cached entries, not rebuilt.
        assert!(Arc::ptr_eq(&prefixes, &cache.prefixes(&reg)));
        let n = reg.integrations().len();
        let list = IntegrationList {
            registry: reg.clone(),
            prefixes,
            items: (0..n).collect(),
            bundles: Vec::new(),
            states: HashMap::new(),
        };
        let spliced: serde_json::Value =
            serde_json::from_str(&serde_json::to_string(&list).unwrap()).unwrap();
        let items = spliced["items"].as_array().unwrap();
        assert_eq!(items.len(), n);
        for (i, item) in reg.integrations().iter().zip(items) {
            let expected = serde_json::to_value(&Item {
                integration: i,
                state: state_out(&reg, &i.id, None),
            })
            .unwrap();
            assert_eq!(item, &expected, "{}", i.id);
        }
        // Another registry: rebuilt.
        let other = Arc::new(patchbay_connectors::builtin_registry().unwrap());
        assert!(!Arc::ptr_eq(&cache.prefixes(&reg), &cache.prefixes(&other)));
    }
}
