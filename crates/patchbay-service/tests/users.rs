//! Operator accounts, sign-in, sessions and tenant switching — on SQLite and PostgreSQL.

mod common;

use common::Harness;
use patchbay_service::users::{Role, UserIn};
use patchbay_service::{Access, Feature, ServiceError};
use patchbay_vault::ExposeSecret as _;

on_both!(
    accounts_are_validated_and_never_show_their_password,
    sign_in_opens_a_session_and_wrong_passwords_do_not,
    sign_in_attempts_are_rate_limited,
    sessions_slide_expire_and_end,
    platform_admins_switch_tenants_and_operators_cannot,
);

fn user(email: &str, role: Role, tenant: Option<&str>) -> UserIn {
    UserIn {
        email: email.into(),
        name: "Ops".into(),
        password: "correct horse battery".into(),
        role,
        tenant_id: tenant.map(str::to_owned),
        organization_id: None,
    }
}

fn tenant_of(h: &Harness) -> String {
    h.a.tenant_scope().unwrap().tenant_id.to_string()
}

async fn accounts_are_validated_and_never_show_their_password(h: Harness) {
    let s = &h.services;
    let u = s
        .create_user(
            &h.admin,
            user("Ops@Acme.example", Role::Owner, Some(&tenant_of(&h))),
        )
        .await
        .unwrap();
    assert_eq!(
        (u.email.as_str(), u.role),
        ("ops@acme.example", Role::Owner),
        "emails are lower-cased"
    );
    let json = serde_json::to_string(&s.list_users(&h.admin).await.unwrap()).unwrap();
    assert!(
        !json.contains("argon2") && !json.contains("battery"),
        "{json}"
    );
    let dup = s
        .create_user(
            &h.admin,
            user("ops@acme.example", Role::Viewer, Some(&tenant_of(&h))),
        )
        .await
        .unwrap_err();
    assert!(matches!(dup, ServiceError::Conflict { .. }), "{dup:?}");
    let bad = s
        .create_user(
            &h.admin,
            UserIn {
                password: "short".into(),
                ..user("nope", Role::Viewer, None)
            },
        )
        .await
        .unwrap_err();
    let ServiceError::Invalid { errors, .. } = bad else {
        panic!("{bad:?}")
    };
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, ["email", "password", "tenantId"]);
    let wrong_role = s
        .create_user(
            &h.admin,
            user("x@y.z", Role::PlatformAdmin, Some(&tenant_of(&h))),
        )
        .await
        .unwrap_err();
    assert!(matches!(wrong_role, ServiceError::Invalid { .. }));
    assert!(matches!(
        s.create_user(&h.a, user("x@y.z", Role::Viewer, Some(&tenant_of(&h))))
            .await,
        Err(ServiceError::Forbidden(_))
    ));
}

async fn sign_in_opens_a_session_and_wrong_passwords_do_not(h: Harness) {
    let s = &h.services;
    s.create_user(
        &h.admin,
        user("ops@acme.example", Role::Manager, Some(&tenant_of(&h))),
    )
    .await
    .unwrap();
    let signed = s
        .sign_in("  OPS@acme.example ", "correct horse battery", "10.0.0.1")
        .await
        .unwrap();
    let session = s.session(signed.cookie.expose_secret()).await.unwrap();
    assert_eq!(session.user.email, "ops@acme.example");
    assert_eq!(
        session.caller.features,
        [Feature::IntegrationsView, Feature::IntegrationsManage]
    );
    assert_eq!(
        session.caller.access,
        Access::Tenant(h.a.tenant_scope().unwrap().clone())
    );
    assert!(session.caller.actor().starts_with("user:usr_"));
    assert_eq!(session.csrf_token.len(), 43);
    assert!(
        s.store()
            .list_users(None)
            .await
            .unwrap()
            .iter()
            .any(|u| u.last_sign_in_at.is_some())
    );
    for (email, password) in [
        ("ops@acme.example", "wrong password!"),
        ("nobody@acme.example", "correct horse battery"),
    ] {
        let e = s.sign_in(email, password, "10.0.0.1").await.unwrap_err();
        assert!(
            matches!(&e, ServiceError::Unauthenticated(m) if m == "wrong email or password"),
            "{e:?}"
        );
    }
    assert!(s.session("not-a-cookie").await.is_err());
    let audit = s.list_audit(&h.admin, None, None, 100).await.unwrap();
    assert!(
        audit
            .iter()
            .any(|r| r.action == "user.sign_in" && r.outcome == "denied")
    );
    assert!(
        audit
            .iter()
            .any(|r| r.action == "user.sign_in" && r.outcome == "success")
    );
}

async fn sign_in_attempts_are_rate_limited(h: Harness) {
    let s = &h.services;
    s.create_user(
        &h.admin,
        user("ops@acme.example", Role::Viewer, Some(&tenant_of(&h))),
    )
    .await
    .unwrap();
    for _ in 0..5 {
        assert!(matches!(
            s.sign_in("ops@acme.example", "guess guess guess", "10.0.0.2")
                .await,
            Err(ServiceError::Unauthenticated(_))
        ));
    }
    // The sixth attempt is refused before the password is even checked — the right one too.
    let e = s
        .sign_in("ops@acme.example", "correct horse battery", "10.0.0.3")
        .await
        .unwrap_err();
    let ServiceError::RateLimited { retry_after_secs } = e else {
        panic!("{e:?}")
    };
    assert!((1..=900).contains(&retry_after_secs));
    // Once the window has passed, the right password works again.
    h.clock.advance_seconds(16 * 60);
    s.sign_in("ops@acme.example", "correct horse battery", "10.0.0.3")
        .await
        .unwrap();
}

async fn sessions_slide_expire_and_end(h: Harness) {
    let s = &h.services;
    let u = s
        .create_user(
            &h.admin,
            user("ops@acme.example", Role::Viewer, Some(&tenant_of(&h))),
        )
        .await
        .unwrap();
    let cookie = s
        .sign_in("ops@acme.example", "correct horse battery", "10.0.0.4")
        .await
        .unwrap()
        .cookie;
    // Active use keeps it alive past the 12-hour idle limit…
    for _ in 0..4 {
        h.clock.advance_seconds(6 * 3600);
        s.session(cookie.expose_secret()).await.unwrap();
    }
    // …idleness ends it.
    h.clock.advance_seconds(13 * 3600);
    assert!(matches!(
        s.session(cookie.expose_secret()).await,
        Err(ServiceError::Unauthenticated(_))
    ));
    // Signing out ends it at once.
    let cookie = s
        .sign_in("ops@acme.example", "correct horse battery", "10.0.0.4")
        .await
        .unwrap()
        .cookie;
    let session = s.session(cookie.expose_secret()).await.unwrap();
    s.sign_out(&session).await.unwrap();
    assert!(s.session(cookie.expose_secret()).await.is_err());
    // Disabling the account ends its sessions.
    let cookie = s
        .sign_in("ops@acme.example", "correct horse battery", "10.0.0.4")
        .await
        .unwrap()
        .cookie;
    s.disable_user(&h.admin, &u.id).await.unwrap();
    assert!(s.session(cookie.expose_secret()).await.is_err());
    assert!(matches!(
        s.sign_in("ops@acme.example", "correct horse battery", "10.0.0.5")
            .await,
        Err(ServiceError::Unauthenticated(_))
    ));
}

async fn platform_admins_switch_tenants_and_operators_cannot(h: Harness) {
    let s = &h.services;
    s.create_user(
        &h.admin,
        user("root@platform.example", Role::PlatformAdmin, None),
    )
    .await
    .unwrap();
    s.create_user(
        &h.admin,
        user("ops@acme.example", Role::Owner, Some(&tenant_of(&h))),
    )
    .await
    .unwrap();
    let admin_cookie = s
        .sign_in("root@platform.example", "correct horse battery", "10.0.0.6")
        .await
        .unwrap()
        .cookie;
    let session = s.session(admin_cookie.expose_secret()).await.unwrap();
    assert_eq!(session.caller.access, Access::Platform);
    let b = h.b.tenant_scope().unwrap().clone();
    let scope = s
        .switch_tenant(&session, b.tenant_id.as_str())
        .await
        .unwrap();
    assert_eq!(scope, b);
    let switched = s.session(admin_cookie.expose_secret()).await.unwrap();
    assert_eq!(switched.caller.access, Access::Tenant(b.clone()));
    assert!(
        switched.caller.has(Feature::IntegrationsCredentials)
            && switched.caller.has(Feature::PlatformAdmin)
    );
    // It now acts on tenant B's integrations.
    s.save_credentials(
        &switched.caller,
        "gateway_stripe",
        common::stripe("sk_switched"),
    )
    .await
    .unwrap();
    assert!(
        s.resolve_credentials(&b, "gateway_stripe")
            .await
            .unwrap()
            .is_some()
    );
    assert!(matches!(
        s.switch_tenant(&switched, "ten_missing").await,
        Err(ServiceError::NotFound(_))
    ));
    // A tenant operator cannot switch.
    let ops_cookie = s
        .sign_in("ops@acme.example", "correct horse battery", "10.0.0.7")
        .await
        .unwrap()
        .cookie;
    let ops = s.session(ops_cookie.expose_secret()).await.unwrap();
    assert!(matches!(
        s.switch_tenant(&ops, b.tenant_id.as_str()).await,
        Err(ServiceError::Forbidden(_))
    ));
    assert_eq!(
        s.session(ops_cookie.expose_secret())
            .await
            .unwrap()
            .caller
            .access,
        Access::Tenant(h.a.tenant_scope().unwrap().clone())
    );
}
