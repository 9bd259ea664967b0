//! The registry's validation rules, each shown refusing a bad manifest with an
//! error naming the file and the field, and its catalog queries.

use patchbay_core::{CatalogQuery, Category, ManifestSource, Registry, VersionError};

const STRIPE: &str = r#"
[integration]
id = "gateway_stripe"
title = "Stripe"
description = "Card payments."
category = "payment"
hub = "payment_gateways"
provider_key = "stripe"
version = "1.0.0"
tags = ["cards"]
network_hosts = ["api.stripe.com"]

[integration.capabilities]
direction = "bidirectional"
actions = ["create_session", "capture", "refund", "get_status"]
webhooks = { scheme = "stripe" }

[[integration.api_versions]]
id = "2024-12-18"
label = "2024-12-18 (latest)"
status = "stable"
default = true

[[integration.api_versions]]
id = "2023-10-16"
label = "2023-10-16"
status = "deprecated"
sunset_at = 2026-12-01

[[integration.credentials.fields]]
key = "secretKey"
label = "Secret Key"
type = "secret"
required = true

[[integration.credentials.fields]]
key = "captureMethod"
label = "Capture Method"
type = "select"
options = [{ value = "automatic", label = "Automatic" }, { value = "manual", label = "Manual" }]
"#;

const MEDUSA: &str = r#"
[bundle]
id = "sync_medusa"
title = "MedusaJS"
description = "Sync with MedusaJS."
package = "patchbay-sync-medusa"
version = "1.0.0"
author = "Patchbay"

[[bundle.credentials.fields]]
key = "medusaApiUrl"
label = "Medusa API URL"
type = "url"
required = true

[[integrations]]
id = "sync_medusa_products"
title = "MedusaJS — Products"
description = "Products."
category = "data_sync"
hub = "data_sync"
provider_key = "medusa_products"
network_hosts = ["{medusaApiUrl}"]
capabilities = { direction = "bidirectional", streams = ["products"] }

[[integrations]]
id = "sync_medusa_webhooks"
title = "MedusaJS — Webhooks"
description = "Webhooks."
category = "webhook"
hub = "webhook_endpoints"
provider_key = "medusa_webhooks"
capabilities = { direction = "inbound", webhooks = { scheme = "standard_webhooks" } }
"#;

fn load(files: &[(&str, &str)]) -> Result<Registry, patchbay_core::CatalogErrors> {
    Registry::load(
        files
            .iter()
            .map(|(path, text)| ManifestSource { path, text }),
    )
}

/// Loads `files`, expects refusal, and checks that some error names `file`,
/// `field` and contains `says`; also that the rendered message names them.
#[track_caller]
fn refuse(files: &[(&str, &str)], file: &str, field: &str, says: &str) {
    let Err(errs) = load(files) else {
        panic!("catalog should be refused for {field}");
    };
    let hit = errs
        .0
        .iter()
        .find(|e| e.file == file && e.field == field && e.message.contains(says));
    assert!(
        hit.is_some(),
        "no error for {file} {field} saying {says:?}; got:\n{errs}"
    );
    let rendered = errs.to_string();
    assert!(
        rendered.contains(file) && rendered.contains(field),
        "{rendered}"
    );
}

/// A bad variant of STRIPE, with `from` replaced by `to`.
#[track_caller]
fn stripe_with(from: &str, to: &str) -> String {
    assert!(STRIPE.contains(from), "fixture lacks {from:?}");
    STRIPE.replacen(from, to, 1)
}

#[track_caller]
fn medusa_with(from: &str, to: &str) -> String {
    assert!(MEDUSA.contains(from), "fixture lacks {from:?}");
    MEDUSA.replacen(from, to, 1)
}

const S: &str = "connectors/gateway_stripe/patchbay.toml";
const M: &str = "connectors/sync_medusa/patchbay.toml";

#[test]
fn the_fixtures_are_valid() {
    let reg = load(&[(S, STRIPE), (M, MEDUSA)]).unwrap();
    assert_eq!(reg.integrations().len(), 3);
    assert_eq!(reg.bundles().len(), 1);
}

#[test]
fn duplicate_ids_across_integrations_and_bundles_are_refused() {
    let copy = STRIPE.to_owned();
    refuse(
        &[(S, STRIPE), ("connectors/copy/patchbay.toml", &copy)],
        "connectors/copy/patchbay.toml",
        "integration.id",
        "duplicate id `gateway_stripe`",
    );
    let clash = stripe_with(r#"id = "gateway_stripe""#, r#"id = "sync_medusa""#);
    refuse(
        &[(M, MEDUSA), (S, &clash)],
        S,
        "integration.id",
        "already declared in connectors/sync_medusa/patchbay.toml",
    );
}

#[test]
fn a_member_naming_an_unknown_bundle_is_refused() {
    let bad = stripe_with(
        "provider_key = \"stripe\"",
        "provider_key = \"stripe\"\nbundle_id = \"sync_shopify\"",
    );
    refuse(
        &[(S, &bad)],
        S,
        "integration.bundle_id",
        "unknown bundle `sync_shopify`",
    );
    let bad = medusa_with(
        "provider_key = \"medusa_products\"",
        "provider_key = \"medusa_products\"\nbundle_id = \"sync_magento\"",
    );
    refuse(
        &[(M, &bad)],
        M,
        "integrations[0].bundle_id",
        "unknown bundle",
    );
}

#[test]
fn an_unknown_category_is_refused() {
    refuse(
        &[(
            S,
            &stripe_with(r#"category = "payment""#, r#"category = "payments""#),
        )],
        S,
        "integration.category",
        "unknown variant `payments`",
    );
}

#[test]
fn a_hub_outside_its_category_is_refused() {
    refuse(
        &[(
            S,
            &stripe_with(
                r#"hub = "payment_gateways""#,
                r#"hub = "shipping_carriers""#,
            ),
        )],
        S,
        "integration.hub",
        "does not belong to category `payment`",
    );
    refuse(
        &[(
            S,
            &stripe_with(r#"hub = "payment_gateways""#, r#"hub = "payments""#),
        )],
        S,
        "integration.hub",
        "unknown variant",
    );
}

#[test]
fn several_defaults_or_none_are_refused() {
    refuse(
        &[(
            S,
            &stripe_with(
                "status = \"deprecated\"",
                "status = \"deprecated\"\ndefault = true",
            ),
        )],
        S,
        "integration.api_versions",
        "several API versions are marked default (2024-12-18, 2023-10-16)",
    );
    refuse(
        &[(S, &stripe_with("default = true", "default = false"))],
        S,
        "integration.api_versions",
        "no API version is marked",
    );
}

#[test]
fn a_sunset_date_on_a_stable_version_is_refused() {
    let bad = stripe_with("status = \"deprecated\"", "status = \"stable\"");
    refuse(
        &[(S, &bad)],
        S,
        "integration.api_versions[1].sunset_at",
        "stable version `2023-10-16` cannot have a sunset date",
    );
}

#[test]
fn an_impossible_sunset_date_is_refused_with_its_line() {
    let bad = stripe_with("sunset_at = 2026-12-01", "sunset_at = \"2026-02-30\"");
    let errs = load(&[(S, &bad)]).unwrap_err();
    let e = &errs.0[0];
    assert_eq!(e.field, "integration.api_versions[1].sunset_at");
    assert!(e.message.contains("not a date"), "{e}");
    assert_eq!(e.line, Some(28), "{e}");
}

#[test]
fn a_select_without_options_is_refused() {
    let bad = stripe_with(
        r#"options = [{ value = "automatic", label = "Automatic" }, { value = "manual", label = "Manual" }]"#,
        "",
    );
    refuse(
        &[(S, &bad)],
        S,
        "integration.credentials.fields[1].options",
        "select field `captureMethod` needs at least one option",
    );
}

#[test]
fn options_on_a_field_that_is_not_a_select_are_refused() {
    let bad = stripe_with(
        "required = true",
        "required = true\noptions = [{ value = \"a\", label = \"A\" }]",
    );
    refuse(
        &[(S, &bad)],
        S,
        "integration.credentials.fields[0].options",
        "only select fields take options",
    );
}

#[test]
fn duplicate_credential_keys_are_refused() {
    let bad = stripe_with(r#"key = "captureMethod""#, r#"key = "secretKey""#);
    refuse(
        &[(S, &bad)],
        S,
        "integration.credentials.fields[1].key",
        "duplicate credential key `secretKey`",
    );
    let bad = medusa_with(
        r#"type = "url""#,
        "type = \"url\"\n\n[[bundle.credentials.fields]]\nkey = \"medusaApiUrl\"\nlabel = \"Again\"\ntype = \"text\"",
    );
    refuse(
        &[(M, &bad)],
        M,
        "bundle.credentials.fields[1].key",
        "duplicate credential key",
    );
}

#[test]
fn unknown_fields_are_refused_at_every_level() {
    refuse(
        &[(
            S,
            &stripe_with("title = \"Stripe\"", "title = \"Stripe\"\ntitel = \"typo\""),
        )],
        S,
        "integration.titel",
        "unknown field `titel`",
    );
    refuse(
        &[(
            S,
            &stripe_with("required = true", "required = true\nrequird = true"),
        )],
        S,
        "integration.credentials.fields[0].requird",
        "unknown field",
    );
    refuse(
        &[(
            S,
            &stripe_with("default = true", "default = true\nsunset = 1"),
        )],
        S,
        "integration.api_versions[0].sunset",
        "unknown field",
    );
    refuse(
        &[(
            S,
            &stripe_with(
                "direction = \"bidirectional\"",
                "direction = \"bidirectional\"\nstream = []",
            ),
        )],
        S,
        "integration.capabilities.stream",
        "unknown field",
    );
    refuse(
        &[(
            M,
            &medusa_with(
                "author = \"Patchbay\"",
                "author = \"Patchbay\"\nauthr = \"x\"",
            ),
        )],
        M,
        "bundle.authr",
        "unknown field",
    );
    refuse(
        &[(S, &format!("{STRIPE}\n[extra]\nx = 1\n"))],
        S,
        "extra",
        "unknown field `extra`",
    );
}

#[test]
fn wrong_types_and_missing_fields_are_refused() {
    refuse(
        &[(S, &stripe_with("required = true", "required = \"yes\""))],
        S,
        "integration.credentials.fields[0].required",
        "invalid type",
    );
    refuse(
        &[(S, &stripe_with("title = \"Stripe\"\n", ""))],
        S,
        "integration",
        "missing field `title`",
    );
    refuse(
        &[(
            S,
            &stripe_with(r#"type = "secret""#, r#"type = "password""#),
        )],
        S,
        "integration.credentials.fields[0].type",
        "unknown variant `password`",
    );
}

#[test]
fn malformed_values_are_refused() {
    refuse(
        &[(
            S,
            &stripe_with(r#"id = "gateway_stripe""#, r#"id = "Gateway-Stripe""#),
        )],
        S,
        "integration.id",
        "not a valid identifier",
    );
    refuse(
        &[(
            S,
            &stripe_with(r#"version = "1.0.0""#, r#"version = "1.0""#),
        )],
        S,
        "integration.version",
        "not a semantic version",
    );
    refuse(
        &[(
            S,
            &stripe_with(
                r#"tags = ["cards"]"#,
                "tags = [\"cards\"]\ndocs_url = \"docs.stripe.com\"",
            ),
        )],
        S,
        "integration.docs_url",
        "no scheme",
    );
    refuse(
        &[(
            S,
            &stripe_with(
                r#"network_hosts = ["api.stripe.com"]"#,
                r#"network_hosts = ["*.com"]"#,
            ),
        )],
        S,
        "integration.network_hosts[0]",
        "too broad",
    );
    refuse(
        &[(
            S,
            &stripe_with(
                r#"actions = ["create_session", "capture", "refund", "get_status"]"#,
                r#"actions = ["create_session", "capture", "refund", "get_status", "refund"]"#,
            ),
        )],
        S,
        "integration.capabilities.actions[4]",
        "duplicate entry",
    );
}

#[test]
fn a_spoke_missing_one_of_its_hubs_actions_is_refused_naming_the_action() {
    refuse(
        &[(
            S,
            &stripe_with(
                r#"actions = ["create_session", "capture", "refund", "get_status"]"#,
                r#"actions = ["create_session", "refund", "get_status"]"#,
            ),
        )],
        S,
        "integration.capabilities.actions",
        "hub `payment_gateways` requires action `capture`, which `gateway_stripe` does not provide",
    );
    // The built-in catalog honours every hub's contract.
    let files: Vec<(String, String)> =
        // Relative to the package folder, the working directory of tests
        // (not `env!`: a build reused from another checkout names that one).
        std::fs::read_dir("../../connectors")
            .unwrap()
            .map(|e| e.unwrap().path().join("patchbay.toml"))
            .filter(|p| p.is_file())
            .map(|p| {
                (
                    p.display().to_string(),
                    std::fs::read_to_string(&p).unwrap(),
                )
            })
            .collect();
    let reg = Registry::load(
        files
            .iter()
            .map(|(path, text)| ManifestSource { path, text }),
    )
    .unwrap();
    assert!(reg.integrations().len() >= 15);
    for i in reg.integrations() {
        for action in i.hub.required_actions() {
            assert!(
                i.capabilities.actions.iter().any(|a| a == action),
                "{}: {action}",
                i.id
            );
        }
    }
}

#[test]
fn a_host_rule_must_name_a_url_field_of_the_integration_or_its_bundle() {
    let bad = medusa_with(
        r#"network_hosts = ["{medusaApiUrl}"]"#,
        r#"network_hosts = ["{medusaUrl}"]"#,
    );
    refuse(
        &[(M, &bad)],
        M,
        "integrations[0].network_hosts[0]",
        "names no credential field",
    );
    let bad = stripe_with(
        r#"network_hosts = ["api.stripe.com"]"#,
        r#"network_hosts = ["{secretKey}"]"#,
    );
    refuse(
        &[(S, &bad)],
        S,
        "integration.network_hosts[0]",
        "must name a url or text field",
    );
}

#[test]
fn a_file_must_be_one_integration_or_one_bundle_with_members() {
    let mixed = format!(
        "{STRIPE}\n{}",
        MEDUSA.split("[[integrations]]").next().unwrap()
    );
    refuse(&[(S, &mixed)], S, "(file)", "not a mix");
    refuse(&[(S, "# nothing here\n")], S, "(file)", "declares nothing");
    let lonely = MEDUSA.split("[[integrations]]").next().unwrap().to_owned();
    refuse(
        &[(M, &lonely)],
        M,
        "integrations",
        "declares no [[integrations]]",
    );
    refuse(&[(S, "[integration\nid = 1")], S, "(syntax)", "");
}

#[test]
fn every_problem_is_reported_at_once() {
    let bad1 = stripe_with(r#"category = "payment""#, r#"category = "money""#);
    let bad2 = medusa_with(r#"id = "sync_medusa""#, r#"id = "Sync""#);
    let errs = load(&[(S, &bad1), (M, &bad2)]).unwrap_err();
    assert!(errs.0.iter().any(|e| e.file == S));
    assert!(errs.0.iter().any(|e| e.file == M));
}

#[test]
fn members_inherit_package_facts_and_bundle_credentials_stay_on_the_bundle() {
    let reg = load(&[(S, STRIPE), (M, MEDUSA)]).unwrap();
    let products = reg.integration("sync_medusa_products").unwrap();
    assert_eq!(products.bundle_id.as_deref(), Some("sync_medusa"));
    assert_eq!(products.package.as_deref(), Some("patchbay-sync-medusa"));
    assert_eq!(products.version.as_deref(), Some("1.0.0"));
    assert!(products.credentials.is_empty());
    assert_eq!(
        reg.bundle_of("sync_medusa_products").unwrap().id,
        "sync_medusa"
    );
    assert!(reg.bundle_of("gateway_stripe").is_none());
    let members: Vec<&str> = reg.members("sync_medusa").map(|i| i.id.as_str()).collect();
    assert_eq!(members, ["sync_medusa_products", "sync_medusa_webhooks"]);
    assert_eq!(reg.members("nope").count(), 0);
    assert_eq!(reg.manifest_path("sync_medusa_products"), Some(M));
    assert!(reg.bundle("gateway_stripe").is_none());
    assert!(reg.integration("sync_medusa").is_none());
}

#[test]
fn listing_filters_by_category_text_and_bundle() {
    let reg = load(&[(S, STRIPE), (M, MEDUSA)]).unwrap();
    let ids = |q: CatalogQuery<'_>| {
        reg.list(&q)
            .into_iter()
            .map(|i| i.id.as_str())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        ids(CatalogQuery {
            category: Some(Category::Payment),
            ..Default::default()
        }),
        ["gateway_stripe"]
    );
    assert_eq!(
        ids(CatalogQuery {
            search: Some("CARDS"),
            ..Default::default()
        }),
        ["gateway_stripe"]
    );
    assert_eq!(
        ids(CatalogQuery {
            search: Some("medusa webhooks"),
            ..Default::default()
        }),
        ["sync_medusa_webhooks"]
    );
    assert_eq!(
        ids(CatalogQuery {
            bundle: Some("sync_medusa"),
            category: Some(Category::DataSync),
            ..Default::default()
        }),
        ["sync_medusa_products"]
    );
    assert!(
        ids(CatalogQuery {
            search: Some("nothing-matches"),
            ..Default::default()
        })
        .is_empty()
    );
    assert_eq!(ids(CatalogQuery::default()).len(), 3);

    let bundles = |q: CatalogQuery<'_>| reg.list_bundles(&q).len();
    assert_eq!(
        bundles(CatalogQuery {
            category: Some(Category::Webhook),
            ..Default::default()
        }),
        1
    );
    assert_eq!(
        bundles(CatalogQuery {
            category: Some(Category::Payment),
            ..Default::default()
        }),
        0
    );
    assert_eq!(
        bundles(CatalogQuery {
            search: Some("products"),
            ..Default::default()
        }),
        1
    );
}

#[test]
fn api_versions_resolve_through_the_registry() {
    let reg = load(&[(S, STRIPE), (M, MEDUSA)]).unwrap();
    assert_eq!(
        reg.resolve_api_version("gateway_stripe", None)
            .unwrap()
            .unwrap()
            .id,
        "2024-12-18"
    );
    assert_eq!(
        reg.resolve_api_version("gateway_stripe", Some("2023-10-16"))
            .unwrap()
            .unwrap()
            .id,
        "2023-10-16"
    );
    assert!(matches!(
        reg.resolve_api_version("gateway_stripe", Some("1999")),
        Err(VersionError::UnknownVersion { .. })
    ));
    assert!(
        reg.resolve_api_version("sync_medusa_products", None)
            .unwrap()
            .is_none()
    );
    assert!(matches!(
        reg.resolve_api_version("sync_medusa_products", Some("v2")),
        Err(VersionError::Unversioned { .. })
    ));
    assert!(matches!(
        reg.resolve_api_version("nope", None),
        Err(VersionError::UnknownIntegration(_))
    ));
    let old = reg
        .resolve_api_version("gateway_stripe", Some("2023-10-16"))
        .unwrap()
        .unwrap();
    assert_eq!(old.sunset_at.unwrap().to_string(), "2026-12-01");
}

#[test]
fn the_catalog_serializes_as_camel_case_json() {
    let reg = load(&[(S, STRIPE)]).unwrap();
    let json = serde_json::to_value(reg.integration("gateway_stripe").unwrap()).unwrap();
    assert_eq!(json["providerKey"], "stripe");
    assert_eq!(json["apiVersions"][1]["sunsetAt"], "2026-12-01");
    assert_eq!(json["credentials"]["fields"][0]["type"], "secret");
    assert_eq!(json["networkHosts"][0], "api.stripe.com");
    assert_eq!(json["capabilities"]["webhooks"]["scheme"], "stripe");
}

/// STRIPE with a runtime table inserted before its capabilities.
fn stripe_runtime(table: &str) -> String {
    stripe_with(
        "[integration.capabilities]",
        &format!("{table}\n[integration.capabilities]"),
    )
}

#[test]
fn a_wasm_runtime_is_parsed_with_its_limits() {
    let text = stripe_runtime(
        "[integration.runtime]\nkind = \"wasm\"\ncomponent = \"dist/stripe.wasm\"\ndeadline_secs = 20\nmemory_mib = 32\n[integration.runtime.components]\n\"2023-10-16\" = \"dist/stripe_2023.wasm\"\n",
    );
    let reg = load(&[(S, &text)]).unwrap();
    let runtime = reg
        .integration("gateway_stripe")
        .unwrap()
        .runtime
        .clone()
        .unwrap();
    assert_eq!(runtime.kind, patchbay_core::RuntimeKind::Wasm);
    assert_eq!(runtime.component.as_deref(), Some("dist/stripe.wasm"));
    assert_eq!(runtime.components["2023-10-16"], "dist/stripe_2023.wasm");
    assert_eq!(
        (runtime.deadline_secs, runtime.memory_mib),
        (Some(20), Some(32))
    );
}

#[test]
fn bad_runtimes_are_refused_naming_the_field() {
    let wasm =
        |rest: &str| stripe_runtime(&format!("[integration.runtime]\nkind = \"wasm\"\n{rest}"));
    refuse(
        &[(S, &wasm(""))],
        S,
        "integration.runtime.component",
        "needs `component`",
    );
    refuse(
        &[(S, &wasm("component = \"../../etc/x.wasm\"\n"))],
        S,
        "integration.runtime.component",
        "no `..`",
    );
    refuse(
        &[(S, &wasm("component = \"/abs/x.wasm\"\n"))],
        S,
        "integration.runtime.component",
        "relative path",
    );
    refuse(
        &[(S, &wasm("component = \"x.wasm\"\ndeadline_secs = 0\n"))],
        S,
        "integration.runtime.deadline_secs",
        "outside 1-300",
    );
    refuse(
        &[(S, &wasm("component = \"x.wasm\"\nmemory_mib = 100000\n"))],
        S,
        "integration.runtime.memory_mib",
        "outside 1-4096",
    );
    refuse(
        &[(
            S,
            &wasm("[integration.runtime.components]\n\"1999-01-01\" = \"old.wasm\"\n"),
        )],
        S,
        "integration.runtime.components.1999-01-01",
        "not one of the integration's api_versions",
    );
    refuse(
        &[(
            S,
            &wasm("[integration.runtime.components]\n\"2024-12-18\" = \"new.wasm\"\n"),
        )],
        S,
        "integration.runtime.components",
        "`2023-10-16` has no component",
    );
    refuse(
        &[(
            S,
            &stripe_runtime("[integration.runtime]\nkind = \"native\"\ncomponent = \"x.wasm\"\n"),
        )],
        S,
        "integration.runtime.component",
        "native connector has no component",
    );
    refuse(
        &[(
            S,
            &stripe_runtime("[integration.runtime]\nkind = \"lua\"\n"),
        )],
        S,
        "integration.runtime.kind",
        "unknown variant",
    );
}

#[test]
fn rate_limits_are_checked() {
    let limited = |table: &str| {
        stripe_with(
            "[integration.capabilities]",
            &format!("[integration.rate_limit]\n{table}\n[integration.capabilities]"),
        )
    };
    let reg = load(&[(S, &limited("requests_per_second = 25\nburst = 50"))]).unwrap();
    let l = reg
        .integration("gateway_stripe")
        .unwrap()
        .rate_limit
        .unwrap();
    assert_eq!((l.requests_per_second, l.burst), (25, Some(50)));
    refuse(
        &[(S, &limited("requests_per_second = 0"))],
        S,
        "integration.rate_limit.requests_per_second",
        "outside 1-10000",
    );
    refuse(
        &[(S, &limited("requests_per_second = 5\nburst = 20000"))],
        S,
        "integration.rate_limit.burst",
        "outside 1-10000",
    );
}
