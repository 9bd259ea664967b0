//! The panel over HTTP, without a browser: security headers and cookies,
//! CSRF refusals, sign-in limits, tenant isolation, both languages, and
//! markup that the Content-Security-Policy allows.

use std::net::SocketAddr;
use std::sync::Arc;

use patchbay_service::tenants::TenantIn;
use patchbay_service::users::{Role, UserIn};
use patchbay_service::{KeyManager, KeySource, Services, SystemClock};
use patchbay_testkit::http;

struct Panel {
    addr: SocketAddr,
    services: Services,
    runtime: tokio::runtime::Runtime,
    acme: String,
    globex: String,
    _dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Panel {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

const PASSWORD: &str = "correct horse battery";

fn panel() -> Panel {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (services, acme, globex) = runtime.block_on(async {
        let store = patchbay_store::connect(
            &patchbay_store::DatabaseConfig::from_settings(dir.path(), None).unwrap(),
        )
        .await
        .unwrap();
        let keys = KeyManager::open(
            KeySource::File(dir.path().join("master.key")),
            &*store,
            patchbay_core::Timestamp::now(),
        )
        .await
        .unwrap();
        let services = Services::new(
            store,
            patchbay_connectors::builtin_registry().unwrap(),
            keys,
            Arc::new(SystemClock),
        );
        let make = |email: &str, role, tenant: Option<String>| UserIn {
            email: email.into(),
            name: email.split('@').next().unwrap().into(),
            password: PASSWORD.into(),
            role,
            tenant_id: tenant,
            organization_id: None,
        };
        services
            .create_user_as_system(make("root@platform.example", Role::PlatformAdmin, None))
            .await
            .unwrap();
        let system = patchbay_service::Caller {
            kind: patchbay_service::CallerKind::System,
            id: "test".into(),
            name: "test".into(),
            access: patchbay_service::Access::Platform,
            features: vec![patchbay_service::Feature::PlatformAdmin],
        };
        let a = services
            .create_tenant(
                &system,
                TenantIn {
                    slug: "acme".into(),
                    name: "Acme".into(),
                },
            )
            .await
            .unwrap();
        let g = services
            .create_tenant(
                &system,
                TenantIn {
                    slug: "globex".into(),
                    name: "Globex".into(),
                },
            )
            .await
            .unwrap();
        services
            .create_user_as_system(make("ops@acme.example", Role::Owner, Some(a.id.clone())))
            .await
            .unwrap();
        services
            .create_user_as_system(make("ops@globex.example", Role::Owner, Some(g.id.clone())))
            .await
            .unwrap();
        (services, a.id, g.id)
    });
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let app = patchbay_panel::router(services.clone(), patchbay_panel::PanelOptions::default());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    runtime.spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    Panel {
        addr,
        services,
        runtime,
        acme,
        globex,
        _dir: dir,
        stop: Some(stop),
    }
}

/// A browser-like client: keeps cookies, reads the CSRF token of pages.
struct Client<'a> {
    panel: &'a Panel,
    cookies: Vec<(String, String)>,
}

fn set_cookies(r: &http::Response, jar: &mut Vec<(String, String)>) {
    for (k, v) in &r.headers {
        if k == "set-cookie" {
            let pair = v.split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            jar.retain(|(n, _)| n != name);
            if !value.is_empty() {
                jar.push((name.to_owned(), value.to_owned()));
            }
        }
    }
}

fn form_encode(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

impl<'a> Client<'a> {
    fn new(panel: &'a Panel) -> Self {
        Client {
            panel,
            cookies: Vec::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn get(&mut self, path: &str) -> http::Response {
        let c = self.cookie_header();
        let r = http::request(self.panel.addr, "GET", path, &[("Cookie", &c)], b"").unwrap();
        set_cookies(&r, &mut self.cookies);
        r
    }

    fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> http::Response {
        let c = self.cookie_header();
        let body = form_encode(fields);
        let r = http::request(
            self.panel.addr,
            "POST",
            path,
            &[
                ("Cookie", &c),
                ("Content-Type", "application/x-www-form-urlencoded"),
            ],
            body.as_bytes(),
        )
        .unwrap();
        set_cookies(&r, &mut self.cookies);
        r
    }

    fn sign_in(&mut self, email: &str) -> http::Response {
        let page = self.get("/backend/login").text();
        let csrf = csrf_of(&page);
        self.post(
            "/backend/login",
            &[
                ("csrf", &csrf),
                ("email", email),
                ("password", PASSWORD),
                ("next", "/backend/integrations"),
            ],
        )
    }
}

fn csrf_of(html: &str) -> String {
    html.split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or("")
        .to_owned()
}

#[test]
fn pages_carry_the_security_headers_and_strict_cookies() {
    let p = panel();
    let mut c = Client::new(&p);
    let login = c.get("/backend/login");
    assert_eq!(login.status, 200);
    let csp = login.header("content-security-policy").unwrap();
    assert!(
        csp.contains("script-src 'self'")
            && csp.contains("style-src 'self'")
            && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert_eq!(login.header("x-frame-options"), Some("DENY"));
    let signed = c.sign_in("ops@acme.example");
    assert_eq!(signed.status, 303);
    let cookie = signed
        .headers
        .iter()
        .find(|(k, v)| k == "set-cookie" && v.starts_with("pb_session="))
        .unwrap()
        .1
        .clone();
    assert!(
        cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Strict")
            && cookie.contains("Path=/backend"),
        "{cookie}"
    );
    assert!(
        !cookie.contains("Secure"),
        "plain HTTP here: Secure is for TLS (--secure-cookies)"
    );
    assert_eq!(c.get("/backend/integrations").status, 200);
}

#[test]
fn every_page_works_without_inline_code_in_both_languages() {
    let p = panel();
    let mut admin = Client::new(&p);
    assert_eq!(admin.sign_in("root@platform.example").status, 303);
    // A platform admin without a tenant is sent to the tenant list.
    let r = admin.get("/backend/integrations");
    assert_eq!(
        (r.status, r.header("location")),
        (303, Some("/backend/platform/tenants"))
    );
    let tenants = admin.get("/backend/platform/tenants").text();
    let csrf = csrf_of(&tenants);
    assert_eq!(
        admin
            .post(
                "/backend/switch-tenant",
                &[("csrf", &csrf), ("tenant", &p.acme)]
            )
            .status,
        303
    );
    let pages = [
        "/backend/integrations",
        "/backend/integrations?category=payment&q=stripe",
        "/backend/integrations/gateway_stripe",
        "/backend/integrations/gateway_stripe?tab=health",
        "/backend/integrations/gateway_stripe?tab=logs&level=error",
        "/backend/integrations/sync_medusa_orders",
        "/backend/integrations/bundle/sync_medusa",
        "/backend/logs",
        "/backend/platform/tenants",
        "/backend/platform/failing",
        "/backend/platform/audit",
    ];
    for lang in ["en", "pl"] {
        assert_eq!(
            admin
                .get(&format!("/backend/lang/{lang}?next=/backend/integrations"))
                .status,
            303
        );
        for path in pages {
            let r = admin.get(path);
            assert_eq!(r.status, 200, "{path} ({lang}): {}", r.text());
            let html = r.text();
            assert!(html.contains(&format!("<html lang=\"{lang}\"")), "{path}");
            assert!(
                !html.contains(" style=") && !html.contains("<style"),
                "no inline styles on {path}"
            );
            assert!(
                !html.contains("<script>")
                    && !html.contains(" onclick=")
                    && !html.contains("javascript:"),
                "no inline scripts on {path}"
            );
            for missing in ["nav.", "marketplace.", "detail.tab_"] {
                assert!(
                    !html.contains(&format!(">{missing}")),
                    "an untranslated key on {path}"
                );
            }
        }
    }
    let polish = admin.get("/backend/integrations").text();
    assert!(
        polish.contains("Włącz wszystkie") && polish.contains("Katalog"),
        "the Polish strings are used"
    );
    let english = admin.get("/backend/lang/en?next=/backend/integrations");
    assert_eq!(english.status, 303);
    assert!(
        admin
            .get("/backend/integrations")
            .text()
            .contains("Enable all")
    );
}

#[test]
fn forms_without_the_csrf_token_are_refused() {
    let p = panel();
    let mut c = Client::new(&p);
    c.sign_in("ops@acme.example");
    let page = c.get("/backend/integrations/gateway_stripe").text();
    let csrf = csrf_of(&page);
    assert_eq!(csrf.len(), 43);
    let values = [
        ("v.publishableKey", "pk"),
        ("v.secretKey", "sk_csrf"),
        ("v.webhookSecret", "wh"),
    ];
    for bad in [None, Some("forged-token-of-the-right-size-but-wrong-0000")] {
        let mut fields: Vec<(&str, &str)> = values.to_vec();
        if let Some(b) = bad {
            fields.push(("csrf", b));
        }
        let r = c.post("/backend/integrations/gateway_stripe/credentials", &fields);
        assert_eq!(r.status, 403, "{}", r.text());
        assert!(r.text().contains("data-error=\"403\""));
    }
    let scope = p
        .runtime
        .block_on(
            p.services
                .session(&c.cookies.iter().find(|(k, _)| k == "pb_session").unwrap().1),
        )
        .unwrap()
        .scope
        .unwrap();
    assert!(
        p.runtime
            .block_on(p.services.resolve_credentials(&scope, "gateway_stripe"))
            .unwrap()
            .is_none(),
        "nothing was saved"
    );
    // With the token it saves.
    let mut fields: Vec<(&str, &str)> = values.to_vec();
    fields.push(("csrf", &csrf));
    let r = c.post("/backend/integrations/gateway_stripe/credentials", &fields);
    assert_eq!(
        (r.status, r.header("location")),
        (
            303,
            Some("/backend/integrations/gateway_stripe?notice=saved")
        )
    );
    // Sign-out needs it too.
    assert_eq!(c.post("/backend/logout", &[]).status, 403);
    // The sign-in form needs its own double-submit token.
    let mut fresh = Client::new(&p);
    let r = fresh.post(
        "/backend/login",
        &[("email", "ops@acme.example"), ("password", PASSWORD)],
    );
    assert_eq!(r.status, 403);
}

#[test]
fn a_tenant_operator_cannot_open_another_tenants_pages() {
    let p = panel();
    // Globex configures Stripe.
    let mut globex = Client::new(&p);
    globex.sign_in("ops@globex.example");
    let csrf = csrf_of(&globex.get("/backend/integrations/gateway_stripe").text());
    let r = globex.post(
        "/backend/integrations/gateway_stripe/credentials",
        &[
            ("csrf", &csrf),
            ("v.publishableKey", "pk_globex_only"),
            ("v.secretKey", "sk"),
            ("v.webhookSecret", "wh"),
        ],
    );
    assert_eq!(r.status, 303);
    let mut acme = Client::new(&p);
    acme.sign_in("ops@acme.example");
    // The same URL shows Acme's own (unconfigured) Stripe.
    let mine = acme.get("/backend/integrations/gateway_stripe").text();
    assert!(!mine.contains("pk_globex_only") && mine.contains("data-unconfigured"));
    for path in [
        "/backend/platform/tenants",
        "/backend/platform/failing",
        "/backend/platform/audit",
    ] {
        let r = acme.get(path);
        assert_eq!(r.status, 403, "{path}");
        assert!(!r.text().contains("Globex"));
    }
    let csrf = csrf_of(&acme.get("/backend/integrations").text());
    let r = acme.post(
        "/backend/switch-tenant",
        &[("csrf", &csrf), ("tenant", &p.globex)],
    );
    assert_eq!(r.status, 403);
    assert!(
        !acme
            .get("/backend/integrations/gateway_stripe")
            .text()
            .contains("pk_globex_only"),
        "still its own tenant"
    );
    // Without a session, pages send to sign-in.
    let mut anon = Client::new(&p);
    let r = anon.get("/backend/integrations/gateway_stripe");
    assert_eq!(
        (r.status, r.header("location")),
        (
            303,
            Some("/backend/login?next=/backend/integrations/gateway_stripe")
        )
    );
}

#[test]
fn sign_in_failures_are_limited_and_explained() {
    let p = panel();
    let mut c = Client::new(&p);
    for _ in 0..5 {
        let csrf = csrf_of(&c.get("/backend/login").text());
        let r = c.post(
            "/backend/login",
            &[
                ("csrf", &csrf),
                ("email", "ops@acme.example"),
                ("password", "not the password"),
            ],
        );
        assert_eq!(r.status, 401);
        assert!(r.text().contains("Wrong email or password"));
    }
    let csrf = csrf_of(&c.get("/backend/login").text());
    let r = c.post(
        "/backend/login",
        &[
            ("csrf", &csrf),
            ("email", "ops@acme.example"),
            ("password", PASSWORD),
        ],
    );
    assert_eq!(r.status, 429);
    assert!(r.header("retry-after").is_some());
    assert!(r.text().contains("Too many failed attempts"));
    // An open redirect through `next` is not followed.
    let mut other = Client::new(&p);
    let csrf = csrf_of(&other.get("/backend/login").text());
    let r = other.post(
        "/backend/login",
        &[
            ("csrf", &csrf),
            ("email", "ops@globex.example"),
            ("password", PASSWORD),
            ("next", "https://evil.example/"),
        ],
    );
    assert_eq!(r.header("location"), Some("/backend/integrations"));
}
