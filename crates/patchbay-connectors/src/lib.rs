//! The built-in connector catalog.
//!
//! `build.rs` embeds every `connectors/<id>/patchbay.toml` of the workspace;
//! [`builtin_registry`] validates them together. Native implementations of
//! these connectors will live beside their manifests as they arrive.
//!
//! Architecture invariant: this crate decides *which* connectors ship in the
//! binary; what a manifest means is `patchbay-core`'s business.

use patchbay_core::{CatalogErrors, ManifestSource, Registry};

include!(concat!(env!("OUT_DIR"), "/builtin_manifests.rs"));

/// The sources of every built-in manifest, for merging with installed packages.
pub fn builtin_sources() -> impl Iterator<Item = ManifestSource<'static>> {
    BUILTIN_MANIFESTS
        .iter()
        .map(|&(path, text)| ManifestSource { path, text })
}

/// The registry of built-in connectors.
pub fn builtin_registry() -> Result<Registry, CatalogErrors> {
    Registry::load(builtin_sources())
}

#[cfg(test)]
mod tests {
    use super::*;
    use patchbay_core::{Category, VersionStatus};

    #[test]
    fn the_builtin_catalog_is_valid() {
        if let Err(e) = builtin_registry() {
            panic!("{e}");
        }
    }

    #[test]
    fn every_folder_under_connectors_is_embedded() {
        // The package folder is the working directory of tests.
        let dir = "../../connectors";
        let on_disk = std::fs::read_dir(dir)
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().is_dir())
            .count();
        assert_eq!(BUILTIN_MANIFESTS.len(), on_disk);
        for (path, _) in BUILTIN_MANIFESTS {
            assert!(
                path.starts_with("connectors/") && path.ends_with("/patchbay.toml"),
                "{path}"
            );
        }
    }

    #[test]
    fn every_category_has_at_least_one_entry() {
        let reg = builtin_registry().unwrap();
        for c in Category::ALL {
            assert!(
                reg.integrations().iter().any(|i| i.category == c),
                "no built-in integration in {c}"
            );
        }
    }

    #[test]
    fn the_starting_catalog_has_the_specified_ids() {
        let reg = builtin_registry().unwrap();
        let members: Vec<&str> = reg.members("sync_medusa").map(|i| i.id.as_str()).collect();
        for m in ["products", "customers", "orders", "inventory", "webhooks"] {
            assert!(
                members.contains(&format!("sync_medusa_{m}").as_str()),
                "sync_medusa lacks {m}"
            );
        }
        assert_eq!(members.len(), 5);
        assert!(
            reg.members("sync_medusa").all(|i| i.credentials.is_empty()),
            "members share the bundle's credentials"
        );

        let stripe = reg.integration("gateway_stripe").unwrap();
        assert_eq!(stripe.category, Category::Payment);
        assert_eq!(stripe.api_versions.len(), 2);
        let old = stripe
            .api_versions
            .iter()
            .find(|v| v.status == VersionStatus::Deprecated)
            .unwrap();
        assert!(old.sunset_at.is_some());

        for id in [
            "notification_smtp",
            "storage_s3",
            "storage_local",
            "sync_files",
            "sync_postgres_table",
            "sync_airbyte_source",
            "webhook_standard",
            "carrier_dhl",
            "channel_twilio_sms",
        ] {
            assert!(reg.integration(id).is_some(), "missing {id}");
        }
    }
}
