//! The connector manifest, `patchbay.toml` — the Rust counterpart of the
//! `integration.ts` convention file of SPEC-045a §1.
//!
//! A manifest holds either one standalone integration:
//!
//! ```toml
//! [integration]
//! id = "gateway_stripe"
//! title = "Stripe"
//! # …
//! ```
//!
//! or one bundle and its member integrations, which share the bundle's
//! credentials (SPEC-045a §1.2):
//!
//! ```toml
//! [bundle]
//! id = "sync_medusa"
//! # …
//! [[integrations]]
//! id = "sync_medusa_products"
//! bundle_id = "sync_medusa"   # optional inside the bundle's own file
//! # …
//! ```
//!
//! Every table refuses unknown keys, so a typo is an error, not a silently
//! ignored setting. Keys are `snake_case` in TOML; the same types serialize as
//! `camelCase` JSON, which is the catalog's wire format in the REST API.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::category::{Category, Hub};
use crate::credentials::CredentialSchema;
use crate::registry::CatalogError;
use crate::text;
use crate::version::ApiVersion;

/// One integration: a spoke of a hub that a tenant can enable and configure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all(serialize = "camelCase"))]
pub struct Integration {
    pub id: String,
    pub title: String,
    pub description: String,
    pub category: Category,
    pub hub: Hub,
    pub provider_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icon: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docs_url: Option<String>,
    /// The package that ships the connector; bundle members inherit the bundle's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<String>,
    /// The package version (semantic versioning); bundle members inherit the bundle's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub credentials: CredentialSchema,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle_id: Option<String>,
    /// Empty for an unversioned integration (no version picker is shown).
    #[serde(default)]
    pub api_versions: Vec<ApiVersion>,
    pub capabilities: Capabilities,
    /// The hosts the connector may call; everything else is refused by the runtime.
    #[serde(default)]
    pub network_hosts: Vec<HostRule>,
    /// What runs the connector; absent: a native connector of this build.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<RuntimeSpec>,
    /// How fast Patchbay may call the provider for one tenant (data-sync
    /// reads and writes); absent: no limit beyond the provider's answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
}

/// A token bucket per integration and tenant: `burst` calls at once, then
/// `requests_per_second` on average.
///
/// ```toml
/// [integration.rate_limit]
/// requests_per_second = 25
/// burst = 50
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all(serialize = "camelCase"))]
pub struct RateLimit {
    /// 1-10,000.
    pub requests_per_second: u32,
    /// 1-10,000; default: one second's worth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
}

/// How an integration's connector runs.
///
/// ```toml
/// [integration.runtime]
/// kind = "wasm"
/// component = "dist/acme_notify.wasm"   # relative to the manifest's folder
/// deadline_secs = 10                    # per call; the operator's maximum wins
/// memory_mib = 64                       # per call; the operator's maximum wins
///
/// [integration.runtime.components]      # optional: one component per API version
/// "2024-06-20" = "dist/acme_notify_2024.wasm"
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all(serialize = "camelCase"))]
pub struct RuntimeSpec {
    pub kind: RuntimeKind,
    /// The WebAssembly component (kind `wasm`) for every API version without its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<String>,
    /// Components for particular API versions.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub components: std::collections::BTreeMap<String, String>,
    /// How long one call may run (1-300 s; default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_secs: Option<u32>,
    /// How much linear memory one call may use (1-4096 MiB; default 64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mib: Option<u32>,
}

impl RuntimeSpec {
    pub const DEFAULT_DEADLINE_SECS: u32 = 10;
    pub const DEFAULT_MEMORY_MIB: u32 = 64;
}

/// What a connector is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RuntimeKind {
    /// Rust code compiled into the binary.
    Native,
    /// A WebAssembly component run in the sandbox.
    Wasm,
}

/// A bundle: one package contributing several integrations that share one set
/// of credentials (SPEC-045a §1.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all(serialize = "camelCase"))]
pub struct Bundle {
    pub id: String,
    pub title: String,
    pub description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icon: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docs_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    /// Shared credentials: one form configures every member.
    #[serde(default)]
    pub credentials: CredentialSchema,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
}

/// How an integration's health is checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all(serialize = "camelCase"))]
pub struct HealthCheck {
    /// The name of the check the connector implements.
    pub service: String,
    /// Seconds before the check is abandoned (SPEC-045: 10 s unless set; 1-60).
    #[serde(default = "HealthCheck::default_timeout")]
    pub timeout_secs: u32,
}

impl HealthCheck {
    fn default_timeout() -> u32 {
        10
    }
}

/// Which way data flows between Patchbay and the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Inbound,
    Outbound,
    Bidirectional,
}

/// What an integration can do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all(serialize = "camelCase"))]
pub struct Capabilities {
    pub direction: Direction,
    /// Data-sync streams the connector can `read`/`write` (e.g. `products`).
    #[serde(default)]
    pub streams: Vec<String>,
    /// Action keys the connector can `invoke` (e.g. `create_session`).
    #[serde(default)]
    pub actions: Vec<String>,
    /// Inbound webhooks the connector accepts, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhooks: Option<Webhooks>,
}

/// Inbound webhook support.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all(serialize = "camelCase"))]
pub struct Webhooks {
    pub scheme: WebhookScheme,
    /// Provider event types the connector understands (informational).
    #[serde(default)]
    pub events: Vec<String>,
}

/// How inbound webhook requests are authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum WebhookScheme {
    /// Standard Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature`).
    StandardWebhooks,
    /// Stripe's `Stripe-Signature: t=…,v1=…`.
    Stripe,
    /// GitHub's `X-Hub-Signature-256`.
    Github,
    /// Shopify's `X-Shopify-Hmac-Sha256`.
    Shopify,
    /// A shared secret in a request header.
    SharedSecret,
    /// The connector verifies requests itself (`verify_webhook`).
    Connector,
}

/// A host a connector may call.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostRule {
    /// Exactly this host (`api.stripe.com`), on any port or on the given one.
    Exact { host: String, port: Option<u16> },
    /// Any host under this domain (`*.amazonaws.com` matches `s3.amazonaws.com`).
    Suffix { domain: String, port: Option<u16> },
    /// The host of the URL the tenant entered in this credential field
    /// (`{medusaApiUrl}`), for providers that live at a tenant-chosen address.
    FromField(String),
}

impl HostRule {
    /// Parses `host`, `host:port`, `*.domain`, `*.domain:port` or `{field_key}`.
    pub fn parse(s: &str) -> Result<HostRule, String> {
        if let Some(inner) = s.strip_prefix('{').and_then(|r| r.strip_suffix('}')) {
            text::check_field_key(inner)?;
            return Ok(HostRule::FromField(inner.to_owned()));
        }
        let (name, port) = match s.rsplit_once(':') {
            Some((h, p)) => match p.parse::<u16>() {
                Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => (h, Some(n)),
                _ => return Err(format!("`{s}` has an invalid port")),
            },
            None => (s, None),
        };
        let lower = name.to_ascii_lowercase();
        if lower != name {
            return Err(format!("`{s}` must be written in lowercase"));
        }
        if let Some(domain) = name.strip_prefix("*.") {
            text::check_host_name(domain)?;
            if !domain.contains('.') {
                return Err(format!(
                    "`{s}` is too broad: a wildcard needs a domain with at least two labels"
                ));
            }
            return Ok(HostRule::Suffix {
                domain: domain.to_owned(),
                port,
            });
        }
        text::check_host_name(name)?;
        Ok(HostRule::Exact {
            host: name.to_owned(),
            port,
        })
    }
}

impl std::fmt::Display for HostRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let port = |p: &Option<u16>| p.map(|p| format!(":{p}")).unwrap_or_default();
        match self {
            HostRule::Exact { host, port: p } => write!(f, "{host}{}", port(p)),
            HostRule::Suffix { domain, port: p } => write!(f, "*.{domain}{}", port(p)),
            HostRule::FromField(k) => write!(f, "{{{k}}}"),
        }
    }
}

impl Serialize for HostRule {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HostRule {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        HostRule::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for HostRule {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "HostRule".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "`host`, `host:port`, `*.domain`, or `{credentialField}` for the host a tenant configures"
        })
    }
}

/// The raw shape of a `patchbay.toml` file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestFile {
    integration: Option<Integration>,
    bundle: Option<Bundle>,
    #[serde(default)]
    integrations: Vec<Integration>,
}

/// What one manifest file contributes to the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub bundle: Option<Bundle>,
    /// Each integration with the field path prefix it was declared under
    /// (`integration` or `integrations[2]`), for error messages.
    pub integrations: Vec<(String, Integration)>,
}

impl Manifest {
    /// Parses and checks one manifest on its own. Rules that need the whole
    /// catalog (unique ids, known bundles) are checked by the registry.
    pub fn parse(file: &str, source: &str) -> Result<Manifest, Vec<CatalogError>> {
        let raw: ManifestFile = match serde_path_to_error::deserialize(
            toml::de::Deserializer::parse(source)
                .map_err(|e| vec![syntax_error(file, source, &e)])?,
        ) {
            Ok(raw) => raw,
            Err(e) => return Err(vec![field_error(file, source, &e)]),
        };
        let mut errors = Vec::new();
        let err = |errors: &mut Vec<CatalogError>, field: String, message: String| {
            errors.push(CatalogError {
                file: file.to_owned(),
                field,
                line: None,
                message,
            });
        };
        let manifest = match raw {
            ManifestFile {
                integration: Some(i),
                bundle: None,
                integrations,
            } if integrations.is_empty() => Manifest {
                bundle: None,
                integrations: vec![("integration".to_owned(), i)],
            },
            ManifestFile {
                integration: None,
                bundle: Some(b),
                integrations,
            } => {
                if integrations.is_empty() {
                    err(
                        &mut errors,
                        "integrations".to_owned(),
                        format!("bundle `{}` declares no [[integrations]]", b.id),
                    );
                }
                let integrations = integrations
                    .into_iter()
                    .enumerate()
                    .map(|(n, mut i)| {
                        // Inside the bundle's own file, members belong to it unless they say otherwise.
                        i.bundle_id.get_or_insert_with(|| b.id.clone());
                        (format!("integrations[{n}]"), i)
                    })
                    .collect();
                Manifest {
                    bundle: Some(b),
                    integrations,
                }
            }
            ManifestFile {
                integration: None,
                bundle: None,
                integrations,
            } if integrations.is_empty() => {
                err(&mut errors, "(file)".to_owned(), "declares nothing: expected an [integration] table, or a [bundle] table with [[integrations]]".to_owned());
                return Err(errors);
            }
            _ => {
                err(&mut errors, "(file)".to_owned(), "declares either one [integration] table, or a [bundle] table with [[integrations]], not a mix".to_owned());
                return Err(errors);
            }
        };
        if let Some(b) = &manifest.bundle {
            for (field, message) in check_bundle(b) {
                err(&mut errors, format!("bundle.{field}"), message);
            }
        }
        for (at, i) in &manifest.integrations {
            for (field, message) in check_integration(i) {
                err(&mut errors, format!("{at}.{field}"), message);
            }
        }
        if errors.is_empty() {
            Ok(manifest)
        } else {
            Err(errors)
        }
    }
}

fn line_of(source: &str, span: Option<std::ops::Range<usize>>) -> Option<u32> {
    let start = span?.start.min(source.len());
    u32::try_from(source[..start].bytes().filter(|&b| b == b'\n').count() + 1).ok()
}

fn syntax_error(file: &str, source: &str, e: &toml::de::Error) -> CatalogError {
    CatalogError {
        file: file.to_owned(),
        field: "(syntax)".to_owned(),
        line: line_of(source, e.span()),
        message: e.message().trim().to_owned(),
    }
}

fn field_error(
    file: &str,
    source: &str,
    e: &serde_path_to_error::Error<toml::de::Error>,
) -> CatalogError {
    let path = e.path().to_string();
    CatalogError {
        file: file.to_owned(),
        field: if path == "." {
            "(file)".to_owned()
        } else {
            path
        },
        line: line_of(source, e.inner().span()),
        message: e.inner().message().trim().to_owned(),
    }
}

fn check_common(
    id: &str,
    title: &str,
    docs_url: Option<&String>,
    version: Option<&String>,
    tags: &[String],
    credentials: &CredentialSchema,
    health_check: Option<&HealthCheck>,
) -> Vec<(String, String)> {
    let mut p = Vec::new();
    if let Err(e) = text::check_id(id) {
        p.push(("id".to_owned(), e));
    }
    if title.trim().is_empty() {
        p.push(("title".to_owned(), "must not be empty".to_owned()));
    }
    if let Some(u) = docs_url
        && let Err(e) = text::parse_http_url(u)
    {
        p.push(("docs_url".to_owned(), e));
    }
    if let Some(v) = version
        && let Err(e) = semver::Version::parse(v)
    {
        p.push((
            "version".to_owned(),
            format!("`{v}` is not a semantic version (like 1.2.3): {e}"),
        ));
    }
    for (n, t) in tags.iter().enumerate() {
        if t.trim().is_empty() || t.len() > 40 {
            p.push((
                format!("tags[{n}]"),
                "tags must be 1-40 characters".to_owned(),
            ));
        }
    }
    p.extend(
        credentials
            .check()
            .into_iter()
            .map(|(f, m)| (format!("credentials.{f}"), m)),
    );
    if let Some(h) = health_check {
        if h.service.trim().is_empty() {
            p.push((
                "health_check.service".to_owned(),
                "must not be empty".to_owned(),
            ));
        }
        if !(1..=60).contains(&h.timeout_secs) {
            p.push((
                "health_check.timeout_secs".to_owned(),
                format!("{} is outside 1-60 seconds", h.timeout_secs),
            ));
        }
    }
    p
}

fn check_bundle(b: &Bundle) -> Vec<(String, String)> {
    check_common(
        &b.id,
        &b.title,
        b.docs_url.as_ref(),
        b.version.as_ref(),
        &b.tags,
        &b.credentials,
        b.health_check.as_ref(),
    )
}

fn check_integration(i: &Integration) -> Vec<(String, String)> {
    let mut p = check_common(
        &i.id,
        &i.title,
        i.docs_url.as_ref(),
        i.version.as_ref(),
        &i.tags,
        &i.credentials,
        i.health_check.as_ref(),
    );
    if !i.category.hubs().contains(&i.hub) {
        let allowed: Vec<&str> = i.category.hubs().iter().map(|h| h.as_str()).collect();
        p.push((
            "hub".to_owned(),
            format!(
                "hub `{}` does not belong to category `{}` (expected {})",
                i.hub,
                i.category,
                allowed.join(" or ")
            ),
        ));
    }
    for action in i.hub.required_actions() {
        if !i.capabilities.actions.iter().any(|a| a == action) {
            p.push((
                "capabilities.actions".to_owned(),
                format!(
                    "hub `{}` requires action `{action}`, which `{}` does not provide",
                    i.hub, i.id
                ),
            ));
        }
    }
    if let Err(e) = text::check_id(&i.provider_key) {
        p.push(("provider_key".to_owned(), e));
    }
    if let Some(r) = &i.runtime {
        p.extend(check_runtime(r, i));
    }
    if let Some(l) = &i.rate_limit {
        if !(1..=10_000).contains(&l.requests_per_second) {
            p.push((
                "rate_limit.requests_per_second".to_owned(),
                format!("{} is outside 1-10000", l.requests_per_second),
            ));
        }
        if let Some(b) = l.burst
            && !(1..=10_000).contains(&b)
        {
            p.push((
                "rate_limit.burst".to_owned(),
                format!("{b} is outside 1-10000"),
            ));
        }
    }
    p.extend(crate::version::check(&i.api_versions));
    for (list, name) in [
        (&i.capabilities.streams, "streams"),
        (&i.capabilities.actions, "actions"),
    ] {
        let mut seen = std::collections::HashSet::new();
        for (n, key) in list.iter().enumerate() {
            if let Err(e) = text::check_id(key) {
                p.push((format!("capabilities.{name}[{n}]"), e));
            } else if !seen.insert(key) {
                p.push((
                    format!("capabilities.{name}[{n}]"),
                    format!("duplicate entry `{key}`"),
                ));
            }
        }
    }
    p
}

/// A component path: relative, inside the manifest's folder, a `.wasm` file.
fn check_component_path(path: &str) -> Result<(), String> {
    let ok = !path.is_empty()
        && !path.starts_with('/')
        && !path.contains('\\')
        && path
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..")
        && std::path::Path::new(path)
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("wasm"));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{path}` must be a relative path to a .wasm file inside the manifest's folder (no `..`)"
        ))
    }
}

fn check_runtime(r: &RuntimeSpec, i: &Integration) -> Vec<(String, String)> {
    let mut p = Vec::new();
    match r.kind {
        RuntimeKind::Native => {
            if r.component.is_some() || !r.components.is_empty() {
                p.push((
                    "runtime.component".to_owned(),
                    "a native connector has no component; use kind = \"wasm\"".to_owned(),
                ));
            }
        }
        RuntimeKind::Wasm => {
            if r.component.is_none() && r.components.is_empty() {
                p.push((
                    "runtime.component".to_owned(),
                    "a wasm connector needs `component` (or `components` per API version)"
                        .to_owned(),
                ));
            }
            if let Some(c) = &r.component
                && let Err(e) = check_component_path(c)
            {
                p.push(("runtime.component".to_owned(), e));
            }
            for (version, c) in &r.components {
                if let Err(e) = check_component_path(c) {
                    p.push((format!("runtime.components.{version}"), e));
                }
                if !i.api_versions.iter().any(|v| &v.id == version) {
                    p.push((
                        format!("runtime.components.{version}"),
                        format!("`{version}` is not one of the integration's api_versions"),
                    ));
                }
            }
            if r.component.is_none()
                && let Some(v) = i
                    .api_versions
                    .iter()
                    .find(|v| !r.components.contains_key(&v.id))
            {
                p.push((
                    "runtime.components".to_owned(),
                    format!(
                        "API version `{}` has no component and there is no default `component`",
                        v.id
                    ),
                ));
            }
        }
    }
    if let Some(d) = r.deadline_secs
        && !(1..=300).contains(&d)
    {
        p.push((
            "runtime.deadline_secs".to_owned(),
            format!("{d} is outside 1-300 seconds"),
        ));
    }
    if let Some(m) = r.memory_mib
        && !(1..=4096).contains(&m)
    {
        p.push((
            "runtime.memory_mib".to_owned(),
            format!("{m} is outside 1-4096 MiB"),
        ));
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_rules_parse_and_print() {
        for s in [
            "api.stripe.com",
            "api.stripe.com:8443",
            "*.amazonaws.com",
            "{medusaApiUrl}",
            "127.0.0.1:5432",
        ] {
            assert_eq!(HostRule::parse(s).unwrap().to_string(), s);
        }
        for bad in [
            "",
            "*.com",
            "API.example.com",
            "x.com:0",
            "x.com:http",
            "{}",
            "{bad-key}",
            "a..b",
            "http://x.com",
        ] {
            assert!(HostRule::parse(bad).is_err(), "{bad} should be refused");
        }
    }
}
