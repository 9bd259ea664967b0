//! The panel over HTTP, without a browser: security headers and cookies,
//! CSRF refusals, sign-in limits, tenant isolation, both languages, and
//! markup that the Content-Security-Policy allows; the Health tab, the jobs
//! pages with their actions, and the schedules, against real workers; the
//! Usage page's figures; data sync — the Sync tab, a run's page with its live
//! stream, the field-mapping editor, the runs list — and one import walked in
//! headless Chromium (skipped when it is not installed, like the binary's
//! browser test).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use patchbay_service::jobs::{JobKind, JobQueryIn, JobSpec};
use patchbay_service::tenants::TenantIn;
use patchbay_service::users::{Role, UserIn};
use patchbay_service::worker::{WorkerConfig, Workers};
use patchbay_service::{KeyManager, KeySource, Services, SystemClock};
use patchbay_testkit::http;
use serde_json::{Value, json};

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
        "/backend/integrations/storage_local?tab=health",
        "/backend/logs",
        "/backend/jobs",
        "/backend/jobs?status=dead",
        "/backend/usage",
        "/backend/usage?period=7d",
        "/backend/sync",
        "/backend/sync?status=failed&integration=sync_files",
        "/backend/integrations/sync_files?tab=sync",
        "/backend/integrations/sync_medusa_products?tab=sync",
        "/backend/integrations/sync_files/streams/records/mapping",
        "/backend/platform/tenants",
        "/backend/platform/failing",
        "/backend/platform/audit",
        "/backend/platform/jobs",
        "/backend/platform/jobs?tenant=platform&status=queued",
        "/backend/platform/schedules",
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
            assert_every_control_labelled(&html, path);
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
            for missing in [
                "nav.",
                "marketplace.",
                "detail.tab_",
                "health.",
                "jobs.",
                "schedules.",
                "usage.",
                "sync.",
                "mapping.",
            ] {
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

// ---- Health, jobs and schedules ----

/// The session's scope of a signed-in client.
fn scope_of(p: &Panel, c: &Client) -> patchbay_core::Scope {
    session_of(p, c).scope.unwrap()
}

fn session_of(p: &Panel, c: &Client) -> patchbay_service::users::Session {
    let cookie = &c.cookies.iter().find(|(k, _)| k == "pb_session").unwrap().1;
    p.runtime.block_on(p.services.session(cookie)).unwrap()
}

/// Workers that run jobs at once and retry failures within milliseconds;
/// no schedules, so only the jobs a test enqueues run.
fn start_workers(p: &Panel) -> Workers {
    p.runtime
        .block_on(Workers::start(
            p.services.clone(),
            WorkerConfig {
                poll: Duration::from_millis(50),
                retry_base: Duration::from_millis(1),
                retry_cap: Duration::from_millis(5),
                schedules: false,
                ..WorkerConfig::default()
            },
        ))
        .unwrap()
}

fn stop_workers(p: &Panel, workers: Workers) {
    p.runtime.block_on(workers.shutdown(Duration::from_secs(1)));
}

/// Enqueues `noop` jobs with these payloads; their ids, in order.
fn enqueue(p: &Panel, scope: Option<&patchbay_core::Scope>, payloads: Vec<Value>) -> Vec<i64> {
    let specs = payloads
        .into_iter()
        .map(|v| JobSpec::new(JobKind::Noop, scope.cloned(), v))
        .collect();
    p.runtime
        .block_on(p.services.enqueue(specs))
        .unwrap()
        .into_iter()
        .map(patchbay_store::Enqueued::id)
        .collect()
}

/// Waits until a job has the status.
fn wait_job(p: &Panel, caller: &patchbay_service::Caller, id: i64, status: &str) {
    patchbay_testkit::wait_for(&format!("job {id} to be {status}"), WAIT, || {
        let job = p.runtime.block_on(p.services.get_job(caller, id)).unwrap();
        (job.status == status).then_some(())
    });
}

/// The ids of the job rows of a list page, in order.
fn job_rows(html: &str) -> Vec<i64> {
    html.split("data-job=\"")
        .skip(1)
        .map(|r| r.split('"').next().unwrap().parse().unwrap())
        .collect()
}

/// The value of an attribute of the first element carrying `marker`.
fn attr_after(html: &str, marker: &str, attr: &str) -> Option<String> {
    let tag_start = html[..html.find(marker)?].rfind('<')?;
    let tag = &html[tag_start..];
    let tag = &tag[..tag.find('>')?];
    let value = tag
        .split(&format!(" {attr}=\""))
        .nth(1)?
        .split('"')
        .next()?;
    Some(value.replace("&amp;", "&"))
}

/// Every visible form control has a label (or an `aria-label`) and every
/// button a name — what the browser test checks, here without a browser.
#[track_caller]
fn assert_every_control_labelled(html: &str, page: &str) {
    for tag in ["<input ", "<select ", "<textarea "] {
        for part in html.split(tag).skip(1) {
            let attrs = part.split('>').next().unwrap();
            if attrs.contains("type=\"hidden\"") || attrs.contains("aria-label=") {
                continue;
            }
            let spaced = format!(" {attrs}");
            let id = spaced
                .split(" id=\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .unwrap_or_else(|| panic!("a control without an id on {page}: {attrs}"));
            assert!(
                html.contains(&format!("for=\"{id}\"")),
                "no label for #{id} on {page}"
            );
        }
    }
    for part in html.split("<button").skip(1) {
        let inner = part.split_once('>').unwrap().1;
        let text = inner.split("</button>").next().unwrap();
        assert!(!text.trim().is_empty(), "a button without a name on {page}");
    }
}

const WAIT: Duration = Duration::from_secs(20);

fn make_viewer(p: &Panel) {
    p.runtime
        .block_on(p.services.create_user_as_system(UserIn {
            email: "viewer@acme.example".into(),
            name: "viewer".into(),
            password: PASSWORD.into(),
            role: Role::Viewer,
            tenant_id: Some(p.acme.clone()),
            organization_id: None,
        }))
        .unwrap();
}

/// Saves a root directory for `storage_local` and enables it, through the forms.
fn configure_local_storage(c: &mut Client, root: &std::path::Path) {
    let csrf = csrf_of(&c.get("/backend/integrations/storage_local").text());
    let r = c.post(
        "/backend/integrations/storage_local/credentials",
        &[("csrf", &csrf), ("v.root", root.to_str().unwrap())],
    );
    assert_eq!(r.status, 303, "{}", r.text());
    let r = c.post(
        "/backend/integrations/storage_local/state",
        &[("csrf", &csrf), ("action", "enable")],
    );
    assert_eq!(r.status, 303, "{}", r.text());
}

const HEALTH_TAB: &str = "/backend/integrations/storage_local?tab=health";

#[test]
fn the_health_tab_shows_the_last_result_its_checks_and_drift() {
    let p = panel();
    let root = tempfile::tempdir().unwrap();
    let mut c = Client::new(&p);
    c.sign_in("ops@acme.example");
    let r = c.get(HEALTH_TAB);
    assert_eq!(r.status, 200);
    let html = r.text();
    assert!(html.contains("data-empty") && html.contains("No health check has run yet."));
    assert!(html.contains("data-run-health"), "an owner may run a check");
    assert_every_control_labelled(&html, "the health tab");

    configure_local_storage(&mut c, root.path());
    let scope = scope_of(&p, &c);
    let result = p
        .runtime
        .block_on(p.services.run_health_check(&scope, "storage_local"))
        .unwrap();
    assert_eq!(result.status.as_str(), "healthy", "{result:?}");
    let html = c.get(HEALTH_TAB).text();
    assert!(!html.contains("data-empty"));
    assert!(
        html.contains("data-health=\"healthy\"") && html.contains(">Healthy<"),
        "the status as a word, not only a colour"
    );
    assert!(html.contains("the root directory is writable"));
    for check in ["credentials", "api_version", "provider"] {
        assert!(
            html.contains(&format!(
                "data-check=\"{check}\" data-check-status=\"pass\""
            )),
            "{check} passes"
        );
    }
    assert!(html.contains(&format!(">{} ms<", result.latency_ms)));
    assert!(html.contains(&format!("datetime=\"{}\"", result.checked_at)));

    // New credentials after a healthy check read as degraded until the next check.
    let csrf = csrf_of(&html);
    let other = tempfile::tempdir().unwrap();
    let r = c.post(
        "/backend/integrations/storage_local/credentials",
        &[("csrf", &csrf), ("v.root", other.path().to_str().unwrap())],
    );
    assert_eq!(r.status, 303);
    let html = c.get(HEALTH_TAB).text();
    assert!(html.contains("data-health=\"degraded\"") && html.contains(">Degraded<"));
    assert!(html.contains("data-check=\"drift\" data-check-status=\"warn\""));
    assert!(html.contains("credentials changed since the last good check"));

    // In Polish.
    c.get("/backend/lang/pl?next=/backend/integrations");
    let html = c.get(HEALTH_TAB).text();
    assert!(html.contains("Działa częściowo") && html.contains("Sprawdź teraz"));

    // A viewer sees the result but no button, and cannot post the form.
    make_viewer(&p);
    let mut viewer = Client::new(&p);
    viewer.sign_in("viewer@acme.example");
    let html = viewer.get(HEALTH_TAB).text();
    assert!(html.contains("data-health=\"degraded\""));
    assert!(!html.contains("data-run-health"));
    let r = viewer.post(
        "/backend/integrations/storage_local/health",
        &[("csrf", &csrf_of(&html))],
    );
    assert_eq!(r.status, 403);
}

#[test]
fn run_check_now_answers_with_the_result_or_that_the_check_is_queued() {
    let p = panel();
    let root = tempfile::tempdir().unwrap();
    let mut c = Client::new(&p);
    c.sign_in("ops@acme.example");
    configure_local_storage(&mut c, root.path());
    let csrf = csrf_of(&c.get(HEALTH_TAB).text());

    // Without its CSRF token nothing is requested.
    let r = c.post("/backend/integrations/storage_local/health", &[]);
    assert_eq!(r.status, 403);
    let caller = session_of(&p, &c).caller;
    let none = p
        .runtime
        .block_on(p.services.list_jobs(&caller, JobQueryIn::default()))
        .unwrap();
    assert_eq!(none.total, 0);

    // No worker runs: the check stays queued, and the page says so.
    let r = c.post(
        "/backend/integrations/storage_local/health",
        &[("csrf", &csrf)],
    );
    assert_eq!(r.status, 303, "{}", r.text());
    let location = r.header("location").unwrap().to_owned();
    let job: i64 = location
        .strip_prefix("/backend/integrations/storage_local?tab=health&job=")
        .and_then(|rest| rest.strip_suffix("&notice=health_pending"))
        .unwrap_or_else(|| panic!("{location}"))
        .parse()
        .unwrap();
    let html = c.get(&location).text();
    assert!(html.contains("data-notice=\"health_pending\""));
    assert!(html.contains("Health check queued; refresh to see the result."));
    assert!(html.contains(&format!("href=\"/backend/jobs/{job}\"")));
    assert!(html.contains("data-empty"), "no result yet");
    let detail = c.get(&format!("/backend/jobs/{job}")).text();
    assert!(detail.contains("data-job-status=\"queued\"") && detail.contains("health.check"));
    assert!(detail.contains("&quot;integrationId&quot;: &quot;storage_local&quot;"));

    // With workers the queued check runs; the next request waits for its own result.
    let workers = start_workers(&p);
    patchbay_testkit::wait_for("the queued check's result", WAIT, || {
        c.get(HEALTH_TAB)
            .text()
            .contains("data-health=\"healthy\"")
            .then_some(())
    });
    let r = c.post(
        "/backend/integrations/storage_local/health",
        &[("csrf", &csrf)],
    );
    assert_eq!(r.status, 303);
    let location = r.header("location").unwrap().to_owned();
    assert!(
        location.ends_with("&notice=health_healthy"),
        "done within the wait: {location}"
    );
    let html = c.get(&location).text();
    assert!(html.contains("Health check finished: healthy."));
    assert!(html.contains("data-health=\"healthy\""));
    stop_workers(&p, workers);
    let checks = p
        .runtime
        .block_on(p.services.list_jobs(
            &caller,
            JobQueryIn {
                kind: Some("health.check".into()),
                status: Some("succeeded".into()),
                ..JobQueryIn::default()
            },
        ))
        .unwrap();
    assert_eq!(checks.total, 2, "the queued check and the second one");
}

#[test]
fn the_jobs_page_lists_newest_first_filters_by_status_and_pages_older() {
    let p = panel();
    let mut c = Client::new(&p);
    c.sign_in("ops@acme.example");
    let session = session_of(&p, &c);
    let scope = session.scope.clone().unwrap();
    let workers = start_workers(&p);
    let finished = enqueue(
        &p,
        Some(&scope),
        vec![json!({ "fail": "boom: the provider said no" }), json!({})],
    );
    let (dead, succeeded) = (finished[0], finished[1]);
    wait_job(&p, &session.caller, dead, "dead");
    wait_job(&p, &session.caller, succeeded, "succeeded");
    stop_workers(&p, workers);
    let queued = enqueue(
        &p,
        Some(&scope),
        (0..55).map(|n| json!({ "n": n })).collect(),
    );
    let mut globex = Client::new(&p);
    globex.sign_in("ops@globex.example");
    let theirs = enqueue(&p, Some(&scope_of(&p, &globex)), vec![json!({})])[0];

    let r = c.get("/backend/jobs");
    assert_eq!(r.status, 200);
    let html = r.text();
    assert!(html.contains("href=\"/backend/jobs\" aria-current=\"page\""));
    assert_every_control_labelled(&html, "/backend/jobs");
    let first = job_rows(&html);
    assert_eq!(first.len(), 50);
    assert_eq!(first[0], *queued.last().unwrap(), "newest first");
    assert!(first.windows(2).all(|w| w[0] > w[1]));
    assert!(!first.contains(&theirs));
    assert!(html.contains("Showing 50 of 57"));
    for (status, n) in [
        ("queued", 55),
        ("dead", 1),
        ("succeeded", 1),
        ("running", 0),
    ] {
        assert!(
            html.contains(&format!("data-count=\"{status}\">{n}<")),
            "{n} {status}"
        );
    }
    // Older: the rest, by cursor.
    let older = attr_after(&html, "data-older", "href").expect("an Older link");
    assert!(older.contains(&format!("cursor={}", first[49])), "{older}");
    let html = c.get(&older).text();
    let rest = job_rows(&html);
    assert_eq!(rest.len(), 7);
    assert!(rest.iter().all(|id| *id < first[49]));
    assert!(rest.contains(&dead) && rest.contains(&succeeded));
    assert!(!html.contains("data-older"), "the last page");
    assert!(html.contains("rel=\"first\""));

    // Filtered by status.
    let html = c.get("/backend/jobs?status=dead").text();
    assert_eq!(job_rows(&html), vec![dead]);
    assert!(html.contains("boom: the provider said no"));
    assert!(html.contains("data-job-status=\"dead\">Dead<"));
    assert!(html.contains(
        "data-status-filter=\"dead\" href=\"/backend/jobs?status=dead\" aria-current=\"true\""
    ));
    assert!(html.contains(">5/5<"), "attempts of the most allowed");
    let html = c.get("/backend/jobs?status=succeeded").text();
    assert_eq!(job_rows(&html), vec![succeeded]);
    let html = c.get("/backend/jobs?status=queued").text();
    assert_eq!(job_rows(&html).len(), 50);
    assert!(html.contains("Showing 50 of 55"));
    let older = attr_after(&html, "data-older", "href").unwrap();
    assert!(
        older.starts_with("/backend/jobs?status=queued&cursor="),
        "{older}"
    );
    assert_eq!(job_rows(&c.get(&older).text()).len(), 5);
    let html = c.get("/backend/jobs?status=running").text();
    assert!(job_rows(&html).is_empty() && html.contains("data-empty"));
    let r = c.get("/backend/jobs?status=bogus");
    assert_eq!(r.status, 200);
    assert!(r.text().contains("data-invalid"));

    // Globex sees only its own.
    assert_eq!(job_rows(&globex.get("/backend/jobs").text()), vec![theirs]);
}

#[test]
fn a_dead_job_is_retried_and_a_queued_one_cancelled_through_the_forms() {
    let p = panel();
    let mut c = Client::new(&p);
    c.sign_in("ops@acme.example");
    let session = session_of(&p, &c);
    let scope = session.scope.clone().unwrap();
    let workers = start_workers(&p);
    let dead = enqueue(&p, Some(&scope), vec![json!({ "fail": "boom" })])[0];
    wait_job(&p, &session.caller, dead, "dead");
    stop_workers(&p, workers);
    let queued = enqueue(&p, Some(&scope), vec![json!({ "wait": "for me" })])[0];

    // The dead job with every attempt.
    let r = c.get(&format!("/backend/jobs/{dead}"));
    assert_eq!(r.status, 200);
    let html = r.text();
    assert!(html.contains(&format!("Job #{dead}")));
    for attempt in 1..=5 {
        assert!(
            html.contains(&format!(
                "data-attempt=\"{attempt}\" data-outcome=\"failed\""
            )),
            "attempt {attempt}"
        );
    }
    assert_eq!(
        html.matches("<td>boom</td>").count(),
        5,
        "each attempt's error"
    );
    assert!(html.contains("data-last-error>boom<"));
    assert!(
        html.contains("&quot;fail&quot;: &quot;boom&quot;"),
        "the payload"
    );
    assert!(html.contains("data-job-action=\"retry\""));
    assert!(!html.contains("data-job-action=\"cancel\""));
    assert_every_control_labelled(&html, "a dead job");
    let csrf = csrf_of(&html);
    let html = c.get(&format!("/backend/jobs/{queued}")).text();
    assert!(
        html.contains("data-job-action=\"cancel\"") && !html.contains("data-job-action=\"retry\"")
    );
    assert!(html.contains("data-no-history"));

    // Another tenant can neither see nor touch them.
    let mut globex = Client::new(&p);
    globex.sign_in("ops@globex.example");
    assert_eq!(globex.get(&format!("/backend/jobs/{dead}")).status, 404);
    let their_csrf = csrf_of(&globex.get("/backend/jobs").text());
    for path in [
        format!("/backend/jobs/{dead}/retry"),
        format!("/backend/jobs/{queued}/cancel"),
    ] {
        let r = globex.post(&path, &[("csrf", &their_csrf)]);
        assert_eq!(r.status, 404, "{path}");
    }
    // A viewer sees them but has no buttons, and the forms are refused.
    make_viewer(&p);
    let mut viewer = Client::new(&p);
    viewer.sign_in("viewer@acme.example");
    let html = viewer.get(&format!("/backend/jobs/{dead}")).text();
    assert!(html.contains("data-job-status=\"dead\"") && !html.contains("data-job-action"));
    let r = viewer.post(
        &format!("/backend/jobs/{dead}/retry"),
        &[("csrf", &csrf_of(&html))],
    );
    assert_eq!(r.status, 403);
    // Without the CSRF token, nothing happens.
    assert_eq!(
        c.post(&format!("/backend/jobs/{dead}/retry"), &[]).status,
        403
    );
    wait_job(&p, &session.caller, dead, "dead");

    // Retry: queued again; a second retry is refused with a notice, not an error page.
    let r = c.post(&format!("/backend/jobs/{dead}/retry"), &[("csrf", &csrf)]);
    assert_eq!(
        (r.status, r.header("location")),
        (
            303,
            Some(format!("/backend/jobs/{dead}?notice=job_retried").as_str())
        )
    );
    let html = c
        .get(&format!("/backend/jobs/{dead}?notice=job_retried"))
        .text();
    assert!(html.contains("The job is queued again."));
    assert!(html.contains("data-job-status=\"queued\""));
    wait_job(&p, &session.caller, dead, "queued");
    let r = c.post(&format!("/backend/jobs/{dead}/retry"), &[("csrf", &csrf)]);
    let location = r.header("location").unwrap().to_owned();
    assert_eq!(
        location,
        format!("/backend/jobs/{dead}?notice=job_retry_refused")
    );
    let html = c.get(&location).text();
    assert!(html.contains("role=\"alert\" data-notice=\"job_retry_refused\""));
    assert!(html.contains("only dead jobs can"));

    // Cancel the queued job; cancelling again is refused the same way.
    let r = c.post(
        &format!("/backend/jobs/{queued}/cancel"),
        &[("csrf", &csrf)],
    );
    assert_eq!(
        r.header("location"),
        Some(format!("/backend/jobs/{queued}?notice=job_cancelled").as_str())
    );
    wait_job(&p, &session.caller, queued, "cancelled");
    let html = c
        .get(&format!("/backend/jobs/{queued}?notice=job_cancelled"))
        .text();
    assert!(
        html.contains("The job was cancelled.") && html.contains("data-job-status=\"cancelled\"")
    );
    assert!(!html.contains("data-job-action"));
    let r = c.post(
        &format!("/backend/jobs/{queued}/cancel"),
        &[("csrf", &csrf)],
    );
    assert_eq!(
        r.header("location"),
        Some(format!("/backend/jobs/{queued}?notice=job_cancel_refused").as_str())
    );
    // Jobs that do not exist (or are not numbers) are not found.
    assert_eq!(c.get("/backend/jobs/999999").status, 404);
    assert_eq!(c.get("/backend/jobs/not-a-number").status, 404);
}

#[test]
fn the_platform_lists_every_tenants_jobs_and_edits_the_schedules() {
    let p = panel();
    let mut acme = Client::new(&p);
    acme.sign_in("ops@acme.example");
    let mut globex = Client::new(&p);
    globex.sign_in("ops@globex.example");
    let ours = enqueue(&p, Some(&scope_of(&p, &acme)), vec![json!({})])[0];
    let theirs = enqueue(&p, Some(&scope_of(&p, &globex)), vec![json!({})])[0];
    let platform = enqueue(&p, None, vec![json!({ "platform": true })])[0];
    p.runtime
        .block_on(p.services.ensure_builtin_schedules())
        .unwrap();

    // Tenant operators cannot open the platform's pages.
    let csrf = csrf_of(&acme.get("/backend/jobs").text());
    for path in [
        "/backend/platform/jobs".to_owned(),
        format!("/backend/platform/jobs/{ours}"),
        "/backend/platform/schedules".to_owned(),
    ] {
        assert_eq!(acme.get(&path).status, 403, "{path}");
    }
    let r = acme.post(
        "/backend/platform/schedules/health.sweep",
        &[("csrf", &csrf), ("schedule", "every 1m")],
    );
    assert_eq!(r.status, 403);
    let r = acme.post(
        &format!("/backend/platform/jobs/{theirs}/cancel"),
        &[("csrf", &csrf)],
    );
    assert_eq!(r.status, 403);

    let mut admin = Client::new(&p);
    admin.sign_in("root@platform.example");
    let r = admin.get("/backend/platform/jobs");
    assert_eq!(r.status, 200);
    let html = r.text();
    assert_eq!(job_rows(&html), vec![platform, theirs, ours]);
    assert!(html.contains(">Acme<") && html.contains(">Globex<"));
    assert_every_control_labelled(&html, "/backend/platform/jobs");
    let html = admin
        .get(&format!("/backend/platform/jobs?tenant={}", p.acme))
        .text();
    assert_eq!(job_rows(&html), vec![ours]);
    assert!(
        html.contains("data-count=\"queued\">1<"),
        "the counts follow the tenant filter"
    );
    let html = admin.get("/backend/platform/jobs").text();
    assert!(html.contains("data-count=\"queued\">3<"));
    let html = admin.get("/backend/platform/jobs?tenant=platform").text();
    assert_eq!(job_rows(&html), vec![platform]);

    // Acting on another tenant's job from the platform.
    let html = admin
        .get(&format!("/backend/platform/jobs/{theirs}"))
        .text();
    assert!(html.contains("Globex") && html.contains("data-job-action=\"cancel\""));
    let csrf = csrf_of(&html);
    let r = admin.post(
        &format!("/backend/platform/jobs/{theirs}/cancel"),
        &[("csrf", &csrf)],
    );
    assert_eq!(
        r.header("location"),
        Some(format!("/backend/platform/jobs/{theirs}?notice=job_cancelled").as_str())
    );
    assert!(
        admin
            .get(&format!("/backend/platform/jobs/{theirs}"))
            .text()
            .contains("data-job-status=\"cancelled\"")
    );
    // After switching to a tenant the platform page still shows every tenant,
    // and the tenant page only that tenant's.
    let r = admin.post(
        "/backend/switch-tenant",
        &[("csrf", &csrf), ("tenant", &p.acme)],
    );
    assert_eq!(r.status, 303);
    assert_eq!(
        job_rows(&admin.get("/backend/platform/jobs").text()),
        vec![platform, theirs, ours]
    );
    assert_eq!(job_rows(&admin.get("/backend/jobs").text()), vec![ours]);

    // The schedules.
    let r = admin.get("/backend/platform/schedules");
    assert_eq!(r.status, 200);
    let html = r.text();
    for name in ["health.sweep", "logs.prune", "jobs.prune"] {
        assert!(
            html.contains(&format!("data-schedule=\"{name}\"")),
            "{name}"
        );
    }
    assert!(html.contains("every 15m"));
    assert_every_control_labelled(&html, "/backend/platform/schedules");
    let r = admin.post(
        "/backend/platform/schedules/health.sweep",
        &[("csrf", &csrf), ("schedule", "every 30m")],
    );
    assert_eq!(
        r.header("location"),
        Some("/backend/platform/schedules?notice=schedule_saved")
    );
    let html = admin
        .get("/backend/platform/schedules?notice=schedule_saved")
        .text();
    assert!(html.contains("Schedule saved."));
    let row = html
        .split("data-schedule=\"health.sweep\"")
        .nth(1)
        .unwrap()
        .split("</tr>")
        .next()
        .unwrap();
    assert!(
        row.contains("data-expression><code>every 30m</code>"),
        "{row}"
    );
    assert!(row.contains("data-enabled=\"false\""), "{row}");

    // An invalid expression comes back with the error under the field.
    let r = admin.post(
        "/backend/platform/schedules/health.sweep",
        &[
            ("csrf", &csrf),
            ("schedule", "every banana"),
            ("enabled", "on"),
        ],
    );
    assert_eq!(r.status, 422);
    let html = r.text();
    assert!(html.contains("data-errors"));
    let row = html
        .split("data-schedule=\"health.sweep\"")
        .nth(1)
        .unwrap()
        .split("</tr>")
        .next()
        .unwrap();
    assert!(
        row.contains("class=\"field invalid\" data-field=\"schedule\""),
        "{row}"
    );
    assert!(
        row.contains("value=\"every banana\""),
        "what was typed is kept"
    );
    assert!(
        row.contains("role=\"alert\">`every banana` has no count"),
        "{row}"
    );
    assert!(row.contains("aria-invalid=\"true\""));
    let caller = session_of(&p, &admin).caller;
    let saved = p
        .runtime
        .block_on(p.services.list_schedules(&caller))
        .unwrap();
    let sweep = saved.iter().find(|s| s.name == "health.sweep").unwrap();
    assert_eq!(
        (sweep.schedule.as_str(), sweep.enabled),
        ("every 30m", false)
    );
    // An unknown schedule is not found.
    let r = admin.post(
        "/backend/platform/schedules/no.such",
        &[("csrf", &csrf), ("schedule", "every 1h")],
    );
    assert_eq!(r.status, 404);
}

// ---- Usage ----

/// Adds usage counts to `scope`'s row of the hour holding `at`.
fn add_usage(
    p: &Panel,
    scope: &patchbay_core::Scope,
    integration: &str,
    at: patchbay_core::Timestamp,
    counts: [i64; 5],
) {
    let [calls, errors, duration_ms, input_bytes, output_bytes] = counts;
    p.runtime
        .block_on(p.services.store().add_usage(
            vec![patchbay_store::UsageRecord {
                scope: scope.clone(),
                integration_id: integration.into(),
                hour: at,
                counts: patchbay_store::UsageCounts {
                    calls,
                    errors,
                    duration_ms,
                    input_bytes,
                    output_bytes,
                },
            }],
            at,
        ))
        .unwrap();
}

/// The `data-…` figures of the usage row `marker` (`data-usage="id"` or `data-usage-total`).
fn usage_row(html: &str, marker: &str) -> Vec<(String, String)> {
    let row = html
        .split(marker)
        .nth(1)
        .unwrap_or_else(|| panic!("no row {marker}"))
        .split("</tr>")
        .next()
        .unwrap();
    [
        "data-calls",
        "data-errors",
        "data-avg-ms",
        "data-input-bytes",
        "data-output-bytes",
    ]
    .iter()
    .map(|a| {
        let cell = row
            .split(&format!("{a}=\""))
            .nth(1)
            .unwrap_or_else(|| panic!("no {a} in {row}"));
        let value = cell.split('"').next().unwrap().to_owned();
        let shown = cell
            .split('>')
            .nth(1)
            .unwrap()
            .split('<')
            .next()
            .unwrap()
            .to_owned();
        (value, shown)
    })
    .collect()
}

fn figures(row: &[(String, String)]) -> Vec<&str> {
    row.iter().map(|(_, shown)| shown.as_str()).collect()
}

#[test]
fn the_usage_page_shows_calls_errors_average_duration_and_bytes_per_integration() {
    let p = panel();
    let mut acme = Client::new(&p);
    acme.sign_in("ops@acme.example");
    let mut globex = Client::new(&p);
    globex.sign_in("ops@globex.example");
    // Nothing yet.
    let html = acme.get("/backend/usage").text();
    assert!(html.contains("data-empty") && html.contains("No actions ran in this period."));
    assert!(
        html.contains("href=\"/backend/usage\" aria-current=\"page\""),
        "the Usage tab is current"
    );

    let (a, g) = (scope_of(&p, &acme), scope_of(&p, &globex));
    let now = patchbay_core::Timestamp::now();
    add_usage(
        &p,
        &a,
        "storage_local",
        now.plus_seconds(-2 * 3600),
        [3, 1, 300, 1536, 2048],
    );
    add_usage(
        &p,
        &a,
        "gateway_stripe",
        now.plus_seconds(-2 * 3600),
        [1, 0, 40, 10, 0],
    );
    add_usage(
        &p,
        &a,
        "storage_local",
        now.plus_seconds(-3 * 86_400),
        [7, 0, 700, 100, 5000],
    );
    add_usage(
        &p,
        &g,
        "storage_local",
        now.plus_seconds(-3600),
        [999, 0, 999, 999, 999],
    );

    // The last 24 hours: per integration, most calls first, and the total.
    let html = acme.get("/backend/usage").text();
    assert_every_control_labelled(&html, "the usage page");
    assert!(html.contains("data-period=\"24h\" aria-current=\"page\""));
    let storage = html.find("data-usage=\"storage_local\"").unwrap();
    let stripe = html.find("data-usage=\"gateway_stripe\"").unwrap();
    assert!(storage < stripe, "most calls first");
    assert!(
        html.contains(
            "<a href=\"/backend/integrations/storage_local\">Local Filesystem Storage</a>"
        )
    );
    assert_eq!(
        figures(&usage_row(&html, "data-usage=\"storage_local\"")),
        ["3", "1", "100 ms", "1.5 KiB", "2.0 KiB"]
    );
    assert_eq!(
        figures(&usage_row(&html, "data-usage=\"gateway_stripe\"")),
        ["1", "0", "40 ms", "10 B", "0 B"]
    );
    let total = usage_row(&html, "data-usage-total");
    assert_eq!(figures(&total), ["4", "1", "85 ms", "1.5 KiB", "2.0 KiB"]);
    assert_eq!(total[3].0, "1546", "exact bytes in the markup");
    assert!(!html.contains("999"), "nothing of another tenant");

    // The last 7 days include the older hour.
    let html = acme.get("/backend/usage?period=7d").text();
    assert!(html.contains("data-period=\"7d\" aria-current=\"page\""));
    assert_eq!(
        figures(&usage_row(&html, "data-usage=\"storage_local\"")),
        ["10", "1", "100 ms", "1.5 KiB", "6.8 KiB"]
    );
    assert_eq!(figures(&usage_row(&html, "data-usage-total"))[0], "11");
    // An unknown period is the default one.
    assert!(
        acme.get("/backend/usage?period=forever")
            .text()
            .contains("data-period=\"24h\" aria-current=\"page\"")
    );

    // The other tenant sees its own figures only; in Polish, with its marks.
    globex.get("/backend/lang/pl?next=/backend/usage");
    let html = globex.get("/backend/usage").text();
    assert!(html.contains("Użycie") && html.contains("Ostatnie 24 godziny"));
    assert_eq!(
        figures(&usage_row(&html, "data-usage=\"storage_local\"")),
        ["999", "0", "1 ms", "999 B", "999 B"]
    );
    assert!(!html.contains("gateway_stripe"));

    // A viewer may look; a session-less visitor is sent to sign in.
    make_viewer(&p);
    let mut viewer = Client::new(&p);
    viewer.sign_in("viewer@acme.example");
    let r = viewer.get("/backend/usage");
    assert_eq!(r.status, 200);
    assert_eq!(figures(&usage_row(&r.text(), "data-usage-total"))[0], "4");
    let r = Client::new(&p).get("/backend/usage");
    assert_eq!(r.status, 303);
}

// ---- Data sync ----

const SYNC_TAB: &str = "/backend/integrations/sync_files?tab=sync";
const MAPPING: &str = "/backend/integrations/sync_files/streams/records/mapping";
const START: &str = "/backend/integrations/sync_files/sync";

/// Four lines: two records, a line that is no JSON, and a record without a title.
const RECORDS: [&str; 4] = [
    r#"{"id": "a", "title": "Alpha"}"#,
    r#"{"id": "b", "title": "Beta"}"#,
    "not json",
    r#"{"id": "c"}"#,
];

/// A mapping under which the record without a title fails (with its id).
const TITLE_REQUIRED: &str =
    r#"{"fields": [{"source": "title", "target": "name", "cast": "string", "required": true}]}"#;

/// Writes a JSON Lines file, then saves `sync_files` credentials reading it
/// and enables the integration, through the forms.
fn configure_file_sync(c: &mut Client, dir: &std::path::Path) {
    let file = dir.join("records.jsonl");
    let text = RECORDS.join("\n") + "\n";
    std::fs::write(&file, text).unwrap();
    let csrf = csrf_of(&c.get("/backend/integrations/sync_files").text());
    let r = c.post(
        "/backend/integrations/sync_files/credentials",
        &[
            ("csrf", &csrf),
            ("v.path", file.to_str().unwrap()),
            ("v.format", "jsonl"),
            ("v.idField", "id"),
        ],
    );
    assert_eq!(r.status, 303, "{}", r.text());
    let r = c.post(
        "/backend/integrations/sync_files/state",
        &[("csrf", &csrf), ("action", "enable")],
    );
    assert_eq!(r.status, 303, "{}", r.text());
}

/// The ids of the run rows of a page, in order.
fn run_rows(html: &str) -> Vec<i64> {
    html.split("data-run=\"")
        .skip(1)
        .map(|r| r.split('"').next().unwrap().parse().unwrap())
        .collect()
}

/// The figure a run's page shows for counter `name`.
fn counter_of(html: &str, name: &str) -> String {
    html.split(&format!("data-counter=\"{name}\">"))
        .nth(1)
        .unwrap_or_else(|| panic!("no counter {name}"))
        .split('<')
        .next()
        .unwrap()
        .to_owned()
}

fn wait_run(p: &Panel, caller: &patchbay_service::Caller, id: i64, status: &str) {
    patchbay_testkit::wait_for(&format!("run {id} to be {status}"), WAIT, || {
        let run = p.runtime.block_on(p.services.sync_run(caller, id)).unwrap();
        (run.status.as_str() == status).then_some(())
    });
}

/// The first server-sent event of `path` (the stream stays open while the
/// run is active, so this reads only up to the end of that event).
fn first_event(p: &Panel, c: &Client, path: &str) -> String {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(p.addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {}\r\nCookie: {}\r\n\r\n",
        p.addr,
        c.cookie_header()
    )
    .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf).unwrap();
        assert!(
            n > 0,
            "the stream ended: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&seen).into_owned();
        if let Some(event) = text.split("event: run\n").nth(1)
            && let Some((event, _)) = event.split_once("\n\n")
        {
            assert!(text.starts_with("HTTP/1.1 200"), "{text}");
            assert!(text.contains("content-type: text/event-stream"), "{text}");
            return event.to_owned();
        }
    }
}

#[test]
#[allow(clippy::too_many_lines)]
fn the_sync_tab_starts_an_import_whose_page_shows_its_counters_and_failures() {
    let p = panel();
    let dir = tempfile::tempdir().unwrap();
    let mut c = Client::new(&p);
    c.sign_in("ops@acme.example");
    // Not enabled yet: the tab says so and offers no import.
    let r = c.get(SYNC_TAB);
    assert_eq!(r.status, 200);
    let html = r.text();
    assert!(
        html.contains("data-tab=\"sync\"")
            && html.contains("aria-current=\"page\" data-tab=\"sync\"")
    );
    assert!(html.contains("data-sync-disabled") && !html.contains("data-run-import"));
    assert!(html.contains("data-no-runs") && html.contains("data-mapping-state=\"none\""));
    assert!(
        !html.contains("data-hub-notice"),
        "sync_files has a connector in this build"
    );
    // Integrations without streams have no Sync tab.
    assert!(
        !c.get("/backend/integrations/gateway_stripe")
            .text()
            .contains("data-tab=\"sync\"")
    );
    configure_file_sync(&mut c, dir.path());
    let csrf = csrf_of(&c.get(MAPPING).text());
    let r = c.post(
        MAPPING,
        &[
            ("csrf", &csrf),
            ("action", "save"),
            ("mapping", TITLE_REQUIRED),
        ],
    );
    assert_eq!(r.status, 303, "{}", r.text());
    let html = c.get(SYNC_TAB).text();
    assert!(
        html.contains("data-mapping-state=\"set\"") && html.contains("data-run-import=\"records\"")
    );
    assert_every_control_labelled(&html, "the sync tab");

    // Without the CSRF token nothing starts.
    assert_eq!(c.post(START, &[("stream", "records")]).status, 403);
    // Started without workers: queued, with Cancel and the live stream.
    let r = c.post(START, &[("csrf", &csrf), ("stream", "records")]);
    assert_eq!(r.status, 303, "{}", r.text());
    let location = r.header("location").unwrap().to_owned();
    let run: i64 = location
        .strip_prefix("/backend/sync/runs/")
        .and_then(|rest| rest.strip_suffix("?notice=sync_started"))
        .unwrap_or_else(|| panic!("{location}"))
        .parse()
        .unwrap();
    let page = format!("/backend/sync/runs/{run}");
    let html = c.get(&location).text();
    assert!(html.contains("data-notice=\"sync_started\""));
    assert!(html.contains(&format!("Import run #{run}")));
    assert!(html.contains("data-run-status=\"queued\">Queued<"));
    assert!(html.contains("data-run-action=\"cancel\""));
    assert!(html.contains(&format!(
        "data-live-run=\"/backend/sync/runs/{run}/stream\""
    )));
    assert!(html.contains("href=\"/backend/sync\" aria-current=\"page\""));
    assert_every_control_labelled(&html, "a queued run");
    // Its stream sends the figures at once.
    let event = first_event(&p, &c, &format!("{page}/stream"));
    assert!(
        event.contains("\"status\":\"queued\"") && event.contains("\"active\":true"),
        "{event}"
    );
    // A second import of the stream is refused while the first is queued.
    let r = c.post(START, &[("csrf", &csrf), ("stream", "records")]);
    assert_eq!(r.status, 409);
    let html = r.text();
    assert!(
        html.contains("A run of this stream is already queued or running"),
        "{html}"
    );
    assert!(
        html.contains(&format!("data-run=\"{run}\"")),
        "the tab lists the active run"
    );
    // A stream the integration does not have is not found.
    assert_eq!(
        c.post(START, &[("csrf", &csrf), ("stream", "nope")]).status,
        404
    );

    // Another tenant finds nothing of it.
    let mut globex = Client::new(&p);
    globex.sign_in("ops@globex.example");
    let their_csrf = csrf_of(&globex.get("/backend/sync").text());
    assert_eq!(globex.get(&page).status, 404);
    assert_eq!(globex.get(&format!("{page}/stream")).status, 404);
    assert_eq!(
        globex
            .post(&format!("{page}/cancel"), &[("csrf", &their_csrf)])
            .status,
        404
    );
    // A viewer sees it, without buttons, and the forms are refused.
    make_viewer(&p);
    let mut viewer = Client::new(&p);
    viewer.sign_in("viewer@acme.example");
    let html = viewer.get(&page).text();
    assert!(html.contains("data-run-status=\"queued\"") && !html.contains("data-run-action"));
    let html = viewer.get(SYNC_TAB).text();
    assert!(html.contains(&format!("data-run=\"{run}\"")) && !html.contains("data-run-import"));
    assert!(html.contains(">View the field mapping<"));
    let viewer_csrf = csrf_of(&html);
    assert_eq!(
        viewer
            .post(START, &[("csrf", &viewer_csrf), ("stream", "records")])
            .status,
        403
    );
    assert_eq!(
        viewer
            .post(&format!("{page}/cancel"), &[("csrf", &viewer_csrf)])
            .status,
        403
    );

    // Workers run it to the end: its counters and the records that failed.
    let caller = session_of(&p, &c).caller;
    let workers = start_workers(&p);
    wait_run(&p, &caller, run, "succeeded");
    stop_workers(&p, workers);
    let html = c.get(&page).text();
    assert!(html.contains("data-run-status=\"succeeded\">Succeeded<"));
    assert!(!html.contains("data-run-action") && !html.contains("data-live-run="));
    for (name, n) in [
        ("processed", "4"),
        ("created", "2"),
        ("updated", "0"),
        ("unchanged", "0"),
        ("skipped", "0"),
        ("failed", "2"),
    ] {
        assert_eq!(counter_of(&html, name), n, "{name}");
    }
    assert!(html.contains("data-run-failures=\"2\""));
    assert!(
        html.contains("records <code>c</code>"),
        "the failed record's entity type and id"
    );
    assert!(html.contains(&format!(
        "href=\"/backend/integrations/sync_files?tab=logs&amp;correlation=sync_{run}\""
    )));
    assert!(html.contains("data-run-error hidden"), "no error");
    let tab = c.get(SYNC_TAB).text();
    assert!(tab.contains(&format!(
        "data-run=\"{run}\" data-run-row-status=\"succeeded\""
    )));
    // The stream of a finished run: its figures once, then the end.
    let r = c.get(&format!("{page}/stream"));
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("text/event-stream")
    );
    let events = r.text();
    assert_eq!(events.matches("event: run").count(), 1, "{events}");
    for part in [
        "\"status\":\"succeeded\"",
        "\"active\":false",
        "\"processed\":\"4\"",
        "\"failed\":\"2\"",
    ] {
        assert!(events.contains(part), "{part} in {events}");
    }
    // Cancelling a finished run is refused with a notice.
    let r = c.post(&format!("{page}/cancel"), &[("csrf", &csrf)]);
    assert_eq!(
        r.header("location"),
        Some(format!("{page}?notice=sync_cancel_refused").as_str())
    );
    // In Polish.
    c.get("/backend/lang/pl?next=/backend/integrations");
    let html = c.get(&page).text();
    assert!(
        html.contains(">Udany<")
            && html.contains("Przetworzone")
            && html.contains("Błędne rekordy")
    );
    assert_eq!(c.get("/backend/sync/runs/999999").status, 404);
    assert_eq!(c.get("/backend/sync/runs/not-a-number").status, 404);
}

#[test]
fn a_queued_run_is_cancelled_through_its_form() {
    let p = panel();
    let dir = tempfile::tempdir().unwrap();
    let mut c = Client::new(&p);
    c.sign_in("ops@acme.example");
    configure_file_sync(&mut c, dir.path());
    let csrf = csrf_of(&c.get(SYNC_TAB).text());
    let r = c.post(START, &[("csrf", &csrf), ("stream", "records")]);
    let location = r.header("location").unwrap().to_owned();
    let page = location.split('?').next().unwrap().to_owned();
    assert_eq!(c.post(&format!("{page}/cancel"), &[]).status, 403, "CSRF");
    let r = c.post(&format!("{page}/cancel"), &[("csrf", &csrf)]);
    assert_eq!(
        r.header("location"),
        Some(format!("{page}?notice=sync_cancelled").as_str())
    );
    let html = c.get(&format!("{page}?notice=sync_cancelled")).text();
    assert!(html.contains("The run was cancelled."));
    assert!(html.contains("data-run-status=\"cancelled\"") && !html.contains("data-run-action"));
    // The stream is free again.
    let r = c.post(START, &[("csrf", &csrf), ("stream", "records")]);
    assert_eq!(r.status, 303, "{}", r.text());
}

#[test]
#[allow(clippy::too_many_lines)]
fn the_mapping_editor_saves_previews_and_shows_every_problem() {
    let p = panel();
    let dir = tempfile::tempdir().unwrap();
    let mut c = Client::new(&p);
    c.sign_in("ops@acme.example");
    let caller = session_of(&p, &c).caller;
    let stored = |p: &Panel| {
        p.runtime
            .block_on(p.services.field_mapping(&caller, "sync_files", "records"))
            .unwrap()
            .mapping
    };
    let r = c.get(MAPPING);
    assert_eq!(r.status, 200);
    let html = r.text();
    assert!(html.contains("data-mapping-state=\"none\""));
    assert!(
        html.contains("// No field mapping is set") && html.contains("// {"),
        "a commented example"
    );
    assert!(html.contains("data-mapping-save") && html.contains("data-mapping-preview"));
    assert_every_control_labelled(&html, "the mapping editor");
    let csrf = csrf_of(&html);

    // Invalid: every problem, each with its path; the text is kept; nothing saved.
    let bad = r#"{"idPath": "", "fields": [{"source": "title", "target": "name", "cast": "bogus"}, {"source": "x", "target": "name"}, {"source": "p", "target": "price", "cast": "integer", "default": "abc"}]}"#;
    let r = c.post(
        MAPPING,
        &[("csrf", &csrf), ("action", "save"), ("mapping", bad)],
    );
    assert_eq!(r.status, 422);
    let html = r.text();
    assert!(html.contains("data-problems=\"4\""), "{html}");
    for path in [
        "fields/0/cast",
        "idPath",
        "fields/1/target",
        "fields/2/default",
    ] {
        assert!(
            html.contains(&format!("data-path=\"{path}\"")),
            "a problem at {path}"
        );
    }
    assert!(html.contains("<code>fields/0/cast</code>: unknown cast `bogus`"));
    assert!(
        html.contains("&quot;cast&quot;: &quot;bogus&quot;"),
        "the text is kept"
    );
    assert!(stored(&p).is_none());
    // Not JSON: one problem about the whole mapping.
    let r = c.post(
        MAPPING,
        &[
            ("csrf", &csrf),
            ("action", "save"),
            ("mapping", "{ \"fields\": [ }"),
        ],
    );
    assert_eq!(r.status, 422);
    let html = r.text();
    assert!(html.contains("data-path=\"\"") && html.contains("not valid JSON"));
    assert!(html.contains("The mapping: not valid JSON"), "{html}");

    // A preview reads the connector: the integration must be enabled.
    let r = c.post(
        MAPPING,
        &[
            ("csrf", &csrf),
            ("action", "preview"),
            ("mapping", TITLE_REQUIRED),
        ],
    );
    assert_eq!(r.status, 409);
    assert!(
        r.text()
            .contains("Enable this integration to preview records")
    );
    configure_file_sync(&mut c, dir.path());
    // The first batch through the mapping typed: each record mapped or its error.
    let r = c.post(
        MAPPING,
        &[
            ("csrf", &csrf),
            ("action", "preview"),
            ("mapping", TITLE_REQUIRED),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let html = r.text();
    assert!(
        html.contains("data-preview=\"3\""),
        "the three JSON records"
    );
    assert!(html.contains("data-preview-item=\"1\" data-outcome=\"mapped\""));
    assert!(html.contains("data-preview-item=\"3\" data-outcome=\"error\""));
    assert!(html.contains("data-external-id>c<"));
    assert!(html.contains("&quot;name&quot;: &quot;Alpha&quot;"));
    assert!(!html.contains("&quot;title&quot;: &quot;Alpha&quot;"));
    assert!(stored(&p).is_none(), "a preview stores nothing");
    // Nothing typed but comments: records as read.
    let r = c.post(
        MAPPING,
        &[
            ("csrf", &csrf),
            ("action", "preview"),
            ("mapping", "// nothing\n"),
        ],
    );
    assert_eq!(r.status, 200);
    let html = r.text();
    assert!(html.contains("&quot;title&quot;: &quot;Alpha&quot;"));
    assert_eq!(html.matches("data-outcome=\"mapped\"").count(), 3);

    // Saved: stored, and shown as stored.
    let r = c.post(
        MAPPING,
        &[
            ("csrf", &csrf),
            ("action", "save"),
            ("mapping", TITLE_REQUIRED),
        ],
    );
    assert_eq!(
        (r.status, r.header("location")),
        (
            303,
            Some(format!("{MAPPING}?notice=mapping_saved").as_str())
        )
    );
    assert!(stored(&p).is_some());
    let html = c.get(&format!("{MAPPING}?notice=mapping_saved")).text();
    assert!(
        html.contains("data-notice=\"mapping_saved\"")
            && html.contains("data-mapping-state=\"set\"")
    );
    assert!(html.contains("&quot;source&quot;: &quot;title&quot;"));

    // A viewer reads it, and can neither save nor preview.
    make_viewer(&p);
    let mut viewer = Client::new(&p);
    viewer.sign_in("viewer@acme.example");
    let html = viewer.get(MAPPING).text();
    assert!(html.contains(" readonly") && html.contains("data-read-only"));
    assert!(!html.contains("data-mapping-save") && !html.contains("data-mapping-preview"));
    let viewer_csrf = csrf_of(&html);
    for action in ["save", "preview"] {
        let r = viewer.post(
            MAPPING,
            &[
                ("csrf", &viewer_csrf),
                ("action", action),
                ("mapping", "{}"),
            ],
        );
        assert_eq!(r.status, 403, "{action}");
    }
    assert!(stored(&p).is_some());
    // Without the CSRF token nothing changes.
    assert_eq!(
        c.post(MAPPING, &[("action", "save"), ("mapping", "")])
            .status,
        403
    );
    // Another tenant has its own (none).
    let mut globex = Client::new(&p);
    globex.sign_in("ops@globex.example");
    assert!(
        globex
            .get(MAPPING)
            .text()
            .contains("data-mapping-state=\"none\"")
    );
    // Comments only: the mapping is removed.
    let r = c.post(
        MAPPING,
        &[
            ("csrf", &csrf),
            ("action", "save"),
            ("mapping", "// none\n"),
        ],
    );
    assert_eq!(
        r.header("location"),
        Some(format!("{MAPPING}?notice=mapping_removed").as_str())
    );
    assert!(stored(&p).is_none());
    // In Polish; a stream the integration does not have is not found.
    c.get("/backend/lang/pl?next=/backend/integrations");
    let html = c.get(MAPPING).text();
    assert!(
        html.contains("Mapowanie pól strumienia records")
            && html.contains("// Mapowanie pól nie jest ustawione")
    );
    assert_eq!(
        c.get("/backend/integrations/sync_files/streams/nope/mapping")
            .status,
        404
    );
}

#[test]
fn the_sync_runs_page_lists_newest_first_filters_and_pages_older() {
    use patchbay_service::sync::StartSyncIn;
    let p = panel();
    let dir = tempfile::tempdir().unwrap();
    let mut c = Client::new(&p);
    c.sign_in("ops@acme.example");
    configure_file_sync(&mut c, dir.path());
    let caller = session_of(&p, &c).caller;
    let start = || {
        p.runtime
            .block_on(p.services.start_sync(
                &caller,
                "sync_files",
                StartSyncIn {
                    stream: "records".into(),
                },
            ))
            .unwrap()
            .id
    };
    let mut cancelled = Vec::new();
    for _ in 0..52 {
        let id = start();
        p.runtime
            .block_on(p.services.cancel_sync_run(&caller, id))
            .unwrap();
        cancelled.push(id);
    }
    let queued = start();

    let r = c.get("/backend/sync");
    assert_eq!(r.status, 200);
    let html = r.text();
    assert!(html.contains("href=\"/backend/sync\" aria-current=\"page\""));
    assert_every_control_labelled(&html, "/backend/sync");
    let first = run_rows(&html);
    assert_eq!(first.len(), 50);
    assert_eq!(first[0], queued, "newest first");
    assert!(first.windows(2).all(|w| w[0] > w[1]));
    assert!(
        html.contains(">CSV / JSON Lines Files<"),
        "the integration's title"
    );
    let older = attr_after(&html, "data-older", "href").expect("an Older link");
    assert_eq!(older, format!("/backend/sync?before={}", first[49]));
    let html = c.get(&older).text();
    let rest = run_rows(&html);
    assert_eq!(rest, vec![cancelled[2], cancelled[1], cancelled[0]]);
    assert!(!html.contains("data-older") && html.contains("rel=\"first\""));

    // By status and by integration.
    let html = c.get("/backend/sync?status=queued").text();
    assert_eq!(run_rows(&html), vec![queued]);
    assert!(html.contains(
        "data-status-filter=\"queued\" href=\"/backend/sync?status=queued\" aria-current=\"true\""
    ));
    let html = c
        .get("/backend/sync?status=cancelled&integration=sync_files")
        .text();
    assert_eq!(run_rows(&html).len(), 50);
    let older = attr_after(&html, "data-older", "href").unwrap();
    assert!(
        older.starts_with("/backend/sync?status=cancelled&integration=sync_files&before="),
        "{older}"
    );
    assert_eq!(run_rows(&c.get(&older).text()).len(), 2);
    assert!(html.contains("<option value=\"sync_files\" selected>"));
    let html = c
        .get("/backend/sync?integration=sync_medusa_products")
        .text();
    assert!(run_rows(&html).is_empty() && html.contains("data-empty"));
    let html = c.get("/backend/sync?status=bogus").text();
    assert!(html.contains("data-invalid"));
    // Another tenant sees none of them.
    let mut globex = Client::new(&p);
    globex.sign_in("ops@globex.example");
    assert!(run_rows(&globex.get("/backend/sync").text()).is_empty());
}

/// One import walked in headless Chromium: started from the Sync tab while
/// no worker runs, the run's page (queued, its live stream connected) turns
/// to "Succeeded" with the final counters once workers start — without a
/// reload. Screenshots go to `<target>/test-artifacts/panel/`.
#[test]
fn an_import_of_a_jsonl_file_reaches_succeeded_live_in_a_real_browser() {
    use patchbay_testkit::browser::{artifacts_dir, browser};
    let Some(b) = browser() else {
        eprintln!("note: skipping the sync browser test: Chromium is not installed");
        return;
    };
    let p = panel();
    let dir = tempfile::tempdir().unwrap();
    let mut c = Client::new(&p);
    c.sign_in("ops@acme.example");
    configure_file_sync(&mut c, dir.path());
    let url = |path: &str| format!("http://{}{path}", p.addr);
    let path_of = |b: &patchbay_testkit::browser::Browser| {
        let u = b.url();
        let rest = u
            .split_once("://")
            .map_or(u.as_str(), |(_, r)| r)
            .to_owned();
        rest.find('/')
            .map_or("/".to_owned(), |i| rest[i..].to_owned())
    };
    let shot = |b: &patchbay_testkit::browser::Browser, name: &str| {
        b.screenshot(artifacts_dir().join("panel").join(format!("{name}.png")));
    };
    b.set_window_size(1280, 900);
    b.goto(&url("/backend/login"));
    b.find("#email").type_text("ops@acme.example");
    b.find("#password")
        .type_text(&format!("{PASSWORD}\u{E007}"));
    patchbay_testkit::wait_for("sign-in", WAIT, || {
        (!path_of(&b).starts_with("/backend/login")).then_some(())
    });

    b.goto(&url(SYNC_TAB));
    b.find("[data-sync-tab] [data-sync-stream=records]");
    shot(&b, "sync-01-tab");
    b.find("button[data-run-import=records]").click();
    patchbay_testkit::wait_for("the run's page", WAIT, || {
        path_of(&b).starts_with("/backend/sync/runs/").then_some(())
    });
    b.find("[data-live-run] .head [data-run-status=queued]");
    b.wait_for_text("[data-live][data-state=on]", "", WAIT);
    // A reload would forget this.
    b.execute("window.patchbayNotReloaded = true; return null;", &[]);
    shot(&b, "sync-02-run-queued");

    let workers = start_workers(&p);
    b.wait_for_text(
        "[data-live-run] .head [data-run-status=succeeded]",
        "Succeeded",
        WAIT,
    );
    // No mapping: three records as read, and the line that is no JSON failed.
    for (name, n) in [("processed", "4"), ("created", "3"), ("failed", "1")] {
        assert_eq!(
            b.find(&format!("[data-counter={name}]")).text(),
            n,
            "{name}"
        );
    }
    assert_eq!(
        b.execute("return window.patchbayNotReloaded === true;", &[]),
        json!(true),
        "updated in place"
    );
    assert!(
        b.try_find("[data-run-cancel]").is_none(),
        "nothing left to cancel"
    );
    assert_ne!(b.find("[data-run-finished]").text(), "—");
    shot(&b, "sync-03-run-succeeded");
    stop_workers(&p, workers);
    // Loaded again, the page shows the same figures and the failed records.
    b.goto(&b.url());
    b.find("[data-run-status=succeeded]");
    assert_eq!(b.find("[data-counter=processed]").text(), "4");
    b.find("[data-run-failures='1']");
    b.execute(
        "document.querySelector('[data-run-failures]').scrollIntoView(); return null;",
        &[],
    );
    shot(&b, "sync-04-run-failures");

    // The field mapping: a preview of the file's first batch, then saved.
    b.goto(&url(MAPPING));
    let editor = b.find("textarea#mapping");
    assert!(editor.value().starts_with("// "), "a commented example");
    editor.clear();
    editor.type_text(TITLE_REQUIRED);
    b.find("button[data-mapping-preview]").click();
    b.find("[data-preview='3']");
    assert_eq!(
        b.find("textarea#mapping").value(),
        TITLE_REQUIRED,
        "the text is kept"
    );
    assert!(
        b.find("tr[data-preview-item='3'] [data-item-error]")
            .text()
            .contains("name"),
        "the record without a title fails on its target"
    );
    b.execute(
        "document.querySelector('[data-preview]').scrollIntoView(); return null;",
        &[],
    );
    shot(&b, "sync-05-mapping-preview");
    b.find("button[data-mapping-save]").click();
    b.find("[data-notice=mapping_saved]");
    b.find("[data-mapping-state=set]");
    shot(&b, "sync-06-mapping-saved");
}
