//! The vault at start-up and during master-key rotation — on SQLite and PostgreSQL.

mod common;

use std::os::unix::fs::PermissionsExt as _;

use common::{Harness, medusa, stripe};
use patchbay_service::tenants::TenantIn;
use patchbay_service::{KeyManager, KeySource, Services};
use patchbay_vault::{MasterKey, MasterKeyRing};

on_both!(
    a_wrong_master_key_is_refused_and_nothing_is_written,
    a_missing_key_file_is_not_recreated_for_a_set_up_database,
    a_key_file_readable_by_others_is_refused,
    keys_can_come_from_the_environment,
    rotation_reencrypts_everything_and_running_servers_keep_working,
);

async fn a_wrong_master_key_is_refused_and_nothing_is_written(h: Harness) {
    let check_before = h.store.get_vault_check().await.unwrap();
    let other = h.dir.path().join("other.key");
    let (other_ring, _) = MasterKeyRing::load_or_create_file(&other).unwrap();
    let before = std::fs::read(&other).unwrap();
    let err = KeyManager::open(KeySource::File(other.clone()), &*h.store, h.services.now())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("does not match this database"),
        "{err}"
    );
    assert!(
        !err.to_string().contains(
            &other_ring
                .to_file_contents()
                .lines()
                .nth(1)
                .unwrap()
                .to_owned()
        ),
        "no key material in errors"
    );
    assert_eq!(h.store.get_vault_check().await.unwrap(), check_before);
    assert_eq!(std::fs::read(&other).unwrap(), before);
    // The right key still opens.
    KeyManager::open(
        KeySource::File(h.key_file.clone()),
        &*h.store,
        h.services.now(),
    )
    .await
    .unwrap();
}

async fn a_missing_key_file_is_not_recreated_for_a_set_up_database(h: Harness) {
    let missing = h.dir.path().join("lost.key");
    let err = KeyManager::open(
        KeySource::File(missing.clone()),
        &*h.store,
        h.services.now(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("does not exist"), "{err}");
    assert!(
        !missing.exists(),
        "no new key file is created for a database that has one"
    );
}

async fn a_key_file_readable_by_others_is_refused(h: Harness) {
    std::fs::set_permissions(&h.key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = KeyManager::open(
        KeySource::File(h.key_file.clone()),
        &*h.store,
        h.services.now(),
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains("readable by others") && err.to_string().contains("0644"),
        "{err}"
    );
    assert_eq!(
        std::fs::metadata(&h.key_file).unwrap().permissions().mode() & 0o777,
        0o644,
        "left as it was"
    );
}

async fn keys_can_come_from_the_environment(h: Harness) {
    let text = MasterKeyRing::load_file(&h.key_file)
        .unwrap()
        .to_file_contents();
    let inline: String = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .collect::<Vec<_>>()
        .join(",");
    KeyManager::open(
        KeySource::Inline(inline.clone().into()),
        &*h.store,
        h.services.now(),
    )
    .await
    .unwrap();
    let wrong = patchbay_vault::MasterKeyRing::from_key(MasterKey::generate()).to_file_contents();
    let wrong: String = wrong.lines().filter(|l| !l.starts_with('#')).collect();
    assert!(
        KeyManager::open(KeySource::Inline(wrong.into()), &*h.store, h.services.now())
            .await
            .is_err()
    );
    // A single inline key cannot start a rotation by itself.
    let keys = KeyManager::open(
        KeySource::Inline(inline.into()),
        &*h.store,
        h.services.now(),
    )
    .await
    .unwrap();
    let err = keys
        .rotate(
            &*h.store,
            h.services.now(),
            patchbay_service::RotationOptions::default(),
            &mut |_| {},
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("NEW,OLD"), "{err}");
}

async fn rotation_reencrypts_everything_and_running_servers_keep_working(h: Harness) {
    let s = &h.services;
    let c = common::tenant_caller(s, &h.admin, "initech").await;
    for (caller, n) in [(&h.a, 1), (&h.b, 2), (&c, 3)] {
        s.save_credentials(caller, "gateway_stripe", stripe(&format!("sk_{n}")))
            .await
            .unwrap();
        s.save_credentials(caller, "sync_medusa", medusa(&format!("mk_{n}")))
            .await
            .unwrap();
    }
    // A tenant created before any credentials exist, and one with none at all.
    s.create_tenant(
        &h.admin,
        TenantIn {
            slug: "empty".into(),
            name: "Empty".into(),
        },
    )
    .await
    .unwrap();
    let old_id = MasterKeyRing::load_file(&h.key_file)
        .unwrap()
        .current()
        .id()
        .to_string();

    // The rotation runs as another process would: its own key manager over the same database.
    let rotator = KeyManager::open(KeySource::File(h.key_file.clone()), &*h.store, s.now())
        .await
        .unwrap();
    let mut lines = Vec::new();
    let report = rotator
        .rotate(
            &*h.store,
            s.now(),
            patchbay_service::RotationOptions {
                batch_size: 2,
                ..Default::default()
            },
            &mut |l| lines.push(l.to_owned()),
        )
        .await
        .unwrap();
    assert_eq!(report.tenants, 4);
    assert_eq!(report.reencrypted, 6);
    assert_eq!(report.removed_master_keys, std::slice::from_ref(&old_id));
    assert_ne!(report.master_key_id, old_id);
    assert!(
        lines.iter().any(|l| l.contains("generated master key")),
        "{lines:?}"
    );

    // The key file now holds only the new key, still mode 0600.
    let ring = MasterKeyRing::load_file(&h.key_file).unwrap();
    assert_eq!(
        ring.ids().map(ToString::to_string).collect::<Vec<_>>(),
        std::slice::from_ref(&report.master_key_id)
    );
    assert_eq!(
        std::fs::metadata(&h.key_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // Every data key is wrapped by it; the old versions are gone.
    for k in h.store.list_tenant_keys(None).await.unwrap() {
        assert_eq!(k.master_key_id, report.master_key_id);
        assert_eq!(k.version, 2, "only the new version is left");
    }
    assert_eq!(
        h.store.get_vault_check().await.unwrap().unwrap().key_id,
        report.master_key_id
    );

    // The running server (its own key manager, old ring in memory) still decrypts and saves.
    for (caller, n) in [(&h.a, 1), (&h.b, 2), (&c, 3)] {
        let scope = caller.tenant_scope().unwrap();
        assert_eq!(
            s.resolve_credentials(scope, "gateway_stripe")
                .await
                .unwrap()
                .unwrap()
                .values["secretKey"],
            format!("sk_{n}")
        );
        assert_eq!(
            s.resolve_credentials(scope, "sync_medusa_orders")
                .await
                .unwrap()
                .unwrap()
                .values["medusaApiKey"],
            format!("mk_{n}")
        );
    }
    s.save_credentials(&h.a, "gateway_stripe", stripe("sk_after"))
        .await
        .unwrap();
    // A server started now opens with the new key; the old key alone is refused.
    KeyManager::open(KeySource::File(h.key_file.clone()), &*h.store, s.now())
        .await
        .unwrap();

    // A fresh services instance over the rotated database decrypts everything.
    let keys = KeyManager::open(KeySource::File(h.key_file.clone()), &*h.store, s.now())
        .await
        .unwrap();
    let fresh = Services::new(
        h.store.clone(),
        patchbay_connectors::builtin_registry().unwrap(),
        keys,
        h.clock.clone(),
    );
    assert_eq!(
        fresh
            .resolve_credentials(h.a.tenant_scope().unwrap(), "gateway_stripe")
            .await
            .unwrap()
            .unwrap()
            .values["secretKey"],
        "sk_after"
    );

    // Running it again starts a second rotation, which also completes.
    let again = rotator
        .rotate(
            &*h.store,
            s.now(),
            patchbay_service::RotationOptions::default(),
            &mut |_| {},
        )
        .await
        .unwrap();
    assert_ne!(again.master_key_id, report.master_key_id);
    assert_eq!(
        s.resolve_credentials(h.b.tenant_scope().unwrap(), "gateway_stripe")
            .await
            .unwrap()
            .unwrap()
            .values["secretKey"],
        "sk_2"
    );
}
