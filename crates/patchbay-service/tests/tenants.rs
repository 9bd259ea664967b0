//! Tenants, organizations, tokens and authentication — on SQLite and PostgreSQL.

mod common;

use common::Harness;
use patchbay_core::Timestamp;
use patchbay_service::tenants::{TenantIn, TokenIn};
use patchbay_service::{Access, Feature, ServiceError};
use patchbay_vault::ExposeSecret as _;

on_both!(
    the_bootstrap_token_is_minted_once,
    tenants_get_a_main_organization_and_validated_slugs,
    tokens_are_shown_once_scoped_and_revocable,
    authentication_refuses_bad_expired_and_revoked_tokens,
    only_platform_admins_administer,
);

fn token_in(tenant: Option<&str>, features: &[&str]) -> TokenIn {
    TokenIn {
        name: "t".into(),
        tenant_id: tenant.map(str::to_owned),
        organization_id: None,
        features: features.iter().map(|f| (*f).to_owned()).collect(),
        expires_at: None,
    }
}

async fn the_bootstrap_token_is_minted_once(h: Harness) {
    assert!(
        h.services.bootstrap_admin_token().await.unwrap().is_none(),
        "tokens exist already"
    );
    assert_eq!(h.admin.access, Access::Platform);
    assert_eq!(h.admin.features, [Feature::PlatformAdmin]);
}

async fn tenants_get_a_main_organization_and_validated_slugs(h: Harness) {
    let s = &h.services;
    let list = s.list_tenants(&h.admin).await.unwrap();
    assert_eq!(
        list.iter().map(|t| t.slug.as_str()).collect::<Vec<_>>(),
        ["acme", "globex"]
    );
    assert_eq!(list[0].organizations.len(), 1);
    assert_eq!(list[0].organizations[0].slug, "main");
    let dup = s
        .create_tenant(
            &h.admin,
            TenantIn {
                slug: "acme".into(),
                name: "Again".into(),
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            dup,
            ServiceError::Conflict {
                code: "conflict",
                ..
            }
        ),
        "{dup:?}"
    );
    let bad = s
        .create_tenant(
            &h.admin,
            TenantIn {
                slug: "Not A Slug".into(),
                name: " ".into(),
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(bad, ServiceError::Invalid { ref errors, .. } if errors.len() == 2),
        "{bad:?}"
    );
    let org = s
        .create_organization(
            &h.admin,
            &list[0].id,
            TenantIn {
                slug: "emea".into(),
                name: "EMEA".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        s.get_tenant(&h.admin, &list[0].id)
            .await
            .unwrap()
            .organizations
            .len(),
        2
    );
    // A token for the second organization is a different scope.
    let created = s
        .create_token(
            &h.admin,
            TokenIn {
                organization_id: Some(org.id.clone()),
                ..token_in(Some(&list[0].id), &["integrations.view"])
            },
        )
        .await
        .unwrap();
    let caller = s.authenticate(created.token.expose_secret()).await.unwrap();
    assert_eq!(
        caller.tenant_scope().unwrap().organization_id.as_str(),
        org.id
    );
    assert!(matches!(
        s.get_tenant(&h.admin, "ten_nope").await,
        Err(ServiceError::NotFound(_))
    ));
}

async fn tokens_are_shown_once_scoped_and_revocable(h: Harness) {
    let s = &h.services;
    let tenant = h.a.tenant_scope().unwrap().tenant_id.to_string();
    let created = s
        .create_token(&h.admin, token_in(Some(&tenant), &["integrations.view"]))
        .await
        .unwrap();
    let secret = created.token.expose_secret().to_owned();
    assert!(secret.starts_with("pb_") && secret.starts_with(&created.info.prefix));
    let listed = s.list_tokens(&h.admin).await.unwrap();
    let listed_json = serde_json::to_string(&listed).unwrap();
    assert!(
        !listed_json.contains(&secret[3..]),
        "listing never shows a token"
    );
    let mine = listed.iter().find(|t| t.id == created.info.id).unwrap();
    assert_eq!(mine.features, ["integrations.view"]);
    assert_eq!(mine.tenant_id.as_deref(), Some(tenant.as_str()));
    s.revoke_token(&h.admin, &created.info.id).await.unwrap();
    assert!(
        matches!(s.authenticate(&secret).await, Err(ServiceError::Unauthenticated(m)) if m.contains("revoked"))
    );
    assert!(matches!(
        s.revoke_token(&h.admin, &created.info.id).await,
        Err(ServiceError::NotFound(_))
    ));

    for (input, field) in [
        (token_in(None, &["integrations.view"]), "features"),
        (token_in(Some(&tenant), &["platform.admin"]), "features"),
        (token_in(Some(&tenant), &[]), "features"),
        (
            token_in(Some(&tenant), &["integrations.fly"]),
            "features[0]",
        ),
        (
            token_in(Some("ten_missing"), &["integrations.view"]),
            "tenantId",
        ),
        (
            TokenIn {
                expires_at: Some(Timestamp::from_micros(1)),
                ..token_in(Some(&tenant), &["integrations.view"])
            },
            "expiresAt",
        ),
        (
            TokenIn {
                organization_id: Some("org_x".into()),
                ..token_in(None, &["platform.admin"])
            },
            "organizationId",
        ),
    ] {
        let e = s.create_token(&h.admin, input).await.unwrap_err();
        let ServiceError::Invalid { errors, .. } = &e else {
            panic!("{e:?}")
        };
        assert!(errors.iter().any(|x| x.field == field), "{field}: {e:?}");
    }
}

async fn authentication_refuses_bad_expired_and_revoked_tokens(h: Harness) {
    let s = &h.services;
    for bad in [
        "",
        "pb_short",
        "Bearer x",
        "pb_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ] {
        assert!(
            matches!(
                s.authenticate(bad).await,
                Err(ServiceError::Unauthenticated(_))
            ),
            "{bad}"
        );
    }
    let tenant = h.a.tenant_scope().unwrap().tenant_id.to_string();
    let expires = s.now().plus_seconds(3600);
    let created = s
        .create_token(
            &h.admin,
            TokenIn {
                expires_at: Some(expires),
                ..token_in(Some(&tenant), &["integrations.view"])
            },
        )
        .await
        .unwrap();
    let caller = s.authenticate(created.token.expose_secret()).await.unwrap();
    assert_eq!(caller.features, [Feature::IntegrationsView]);
    h.clock.advance_seconds(3601);
    assert!(
        matches!(s.authenticate(created.token.expose_secret()).await, Err(ServiceError::Unauthenticated(m)) if m.contains("expired"))
    );
}

async fn only_platform_admins_administer(h: Harness) {
    let s = &h.services;
    assert!(matches!(
        s.list_tenants(&h.a).await,
        Err(ServiceError::Forbidden(_))
    ));
    assert!(matches!(
        s.create_tenant(
            &h.a,
            TenantIn {
                slug: "evil".into(),
                name: "Evil".into()
            }
        )
        .await,
        Err(ServiceError::Forbidden(_))
    ));
    assert!(matches!(
        s.list_tokens(&h.a).await,
        Err(ServiceError::Forbidden(_))
    ));
    assert!(matches!(
        s.create_token(&h.a, token_in(None, &["platform.admin"]))
            .await,
        Err(ServiceError::Forbidden(_))
    ));
    assert!(matches!(
        s.list_audit(&h.a, None, None, 10).await,
        Err(ServiceError::Forbidden(_))
    ));
    let audit = s.list_audit(&h.admin, None, None, 100).await.unwrap();
    let denied: Vec<&str> = audit
        .iter()
        .filter(|r| r.outcome == "denied")
        .map(|r| r.action.as_str())
        .collect();
    assert!(
        denied.contains(&"tenant.create") && denied.contains(&"token.create"),
        "{denied:?}"
    );
    let created: Vec<_> = audit
        .iter()
        .filter(|r| r.action == "tenant.create" && r.outcome == "success")
        .collect();
    assert_eq!(created.len(), 2);
    assert_eq!(created[0].actor, h.admin.actor());
}
