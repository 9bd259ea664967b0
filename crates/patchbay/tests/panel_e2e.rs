//! The admin panel end to end, in headless Chromium against the real
//! `patchbay` binary: an operator's whole flow (sign in, filter the
//! marketplace, configure the MedusaJS bundle, enable it, inspect and
//! override a member, try Stripe without credentials, pick a deprecated API
//! version, filter the logs, watch the live tail, sign out), then tenant
//! isolation, CSRF refusals, the platform admin's views, and a health check
//! run from the Health tab with the tenant's jobs.
//!
//! Every page visited is saved as a screenshot under
//! `<target>/test-artifacts/panel/` for a reviewer to look at.
//!
//! Skipped with a note when Chromium is not installed, except under `CI=true`
//! (see `patchbay_testkit::browser`).

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{call, local_addr, serve, tenant};
use patchbay_testkit::browser::{Browser, artifacts_dir, browser};
use serde_json::json;

const PASSWORD: &str = "long enough passphrase";
const MASK: &str = "\u{2022}\u{2022}\u{2022}\u{2022}\u{2022}\u{2022}\u{2022}\u{2022}";
const MEDUSA_KEY: &str = "sk_medusa_canary_3f9a1c";
const MEDUSA_HOOK: &str = "whsec_medusa_canary_77b2";
const WAIT: Duration = Duration::from_secs(10);

struct Site {
    addr: SocketAddr,
}

impl Site {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

/// Saves a screenshot of the current page as `panel/<name>.png`, after
/// checking that every control of the page has a label and every button a name.
#[track_caller]
fn shot(b: &Browser, name: &str) {
    let unlabelled = b.execute(
        "return Array.from(document.querySelectorAll('input:not([type=hidden]), select, textarea, button'))
           .filter(function (e) {
             var named = e.getAttribute('aria-label') || e.getAttribute('aria-labelledby');
             if (e.tagName === 'BUTTON') { return !named && !e.textContent.trim(); }
             return !named && !(e.labels && e.labels.length);
           })
           .map(function (e) { return e.outerHTML; });",
        &[],
    );
    assert_eq!(unlabelled, json!([]), "controls without a label on {name}");
    b.screenshot(artifacts_dir().join("panel").join(format!("{name}.png")));
}

/// The path (and query) of the browser's current URL.
fn path(b: &Browser) -> String {
    let url = b.url();
    let rest = url.split_once("://").map_or(url.as_str(), |(_, r)| r);
    rest.find('/').map_or("/", |i| &rest[i..]).to_owned()
}

/// Waits until the current path starts with `prefix`.
#[track_caller]
fn wait_path(b: &Browser, prefix: &str) {
    patchbay_testkit::wait_for(&format!("the browser to reach {prefix}"), WAIT, || {
        path(b).starts_with(prefix).then_some(())
    });
}

fn sign_in(b: &Browser, site: &Site, email: &str) {
    b.goto(&site.url("/backend/login"));
    b.find("#email").type_text(email);
    // From the keyboard: Enter in the password field submits the form.
    b.find("#password")
        .type_text(&format!("{PASSWORD}\u{E007}"));
    patchbay_testkit::wait_for("sign-in to leave the login page", WAIT, || {
        (!path(b).starts_with("/backend/login")).then_some(())
    });
}

fn sign_out(b: &Browser) {
    b.find("form[action='/backend/logout'] button[type=submit]")
        .click();
    wait_path(b, "/backend/login");
}

/// Submits the form containing `css` by clicking its submit button.
fn submit(b: &Browser, form_css: &str) {
    b.find(&format!("{form_css} button[type=submit]")).click();
}

fn create_user(site: &Site, admin: &str, email: &str, role: &str, tenant: Option<&str>) {
    let mut body = json!({ "email": email, "name": email.split('@').next().unwrap(), "password": PASSWORD, "role": role });
    if let Some(t) = tenant {
        body["tenantId"] = json!(t);
    }
    let (status, _, text) = call(site.addr, "POST", "/api/users", admin, Some(&body));
    assert_eq!(status, 201, "{text}");
}

#[test]
#[allow(clippy::too_many_lines)]
fn an_operator_walks_the_panel_in_a_real_browser() {
    let Some(b) = browser() else {
        eprintln!("note: skipping the panel browser test: Chromium is not installed");
        return;
    };
    b.set_window_size(1280, 900);
    let dir = tempfile::tempdir().unwrap();
    let addr = local_addr();
    let (mut server, admin) = serve(dir.path(), addr, &[]);
    let admin = admin.expect("a bootstrap token");
    let site = Site { addr };
    let (acme, acme_token) = tenant(addr, &admin, "acme");
    let (globex, _) = tenant(addr, &admin, "globex");
    create_user(&site, &admin, "ops@acme.example", "owner", Some(&acme));
    create_user(&site, &admin, "ops@globex.example", "owner", Some(&globex));
    create_user(
        &site,
        &admin,
        "root@platform.example",
        "platform_admin",
        None,
    );

    // --- Sign in. A page of the panel without a session leads to the login form.
    b.goto(&site.url("/backend/integrations"));
    wait_path(&b, "/backend/login");
    shot(&b, "01-login");
    // A wrong password is refused with a message, and the email is kept.
    b.find("#email").type_text("ops@acme.example");
    b.find("#password").type_text("not the password");
    submit(&b, "form[action='/backend/login']");
    b.wait_for_text("[role=alert]", "", WAIT);
    assert_eq!(b.find("#email").value(), "ops@acme.example");
    assert!(
        b.cookies().iter().all(|c| c["name"] != "pb_session"),
        "no session after a wrong password"
    );
    sign_in(&b, &site, "ops@acme.example");
    wait_path(&b, "/backend/integrations");
    let session = b
        .cookies()
        .into_iter()
        .find(|c| c["name"] == "pb_session")
        .expect("a session cookie");
    assert_eq!(session["httpOnly"], true, "{session}");
    assert_eq!(session["sameSite"], "Strict", "{session}");
    shot(&b, "02-marketplace");

    // --- The marketplace: bundles and standalone cards, chips and search.
    assert!(b.try_find("[data-bundle=sync_medusa]").is_some());
    assert!(b.try_find("[data-integration=gateway_stripe]").is_some());
    b.find("a.chip[data-category=data_sync]").click();
    patchbay_testkit::wait_for("the data-sync chip to apply", WAIT, || {
        path(&b).contains("category=data_sync").then_some(())
    });
    assert_eq!(
        b.find("a.chip[data-category=data_sync]")
            .attr("aria-current")
            .as_deref(),
        Some("true")
    );
    assert!(b.try_find("[data-bundle=sync_medusa]").is_some());
    assert!(
        b.try_find("[data-integration=gateway_stripe]").is_none(),
        "a payment integration under the data-sync chip"
    );
    // Every card shown matches the chip, bundle members included; the
    // bundle says how many of its members are hidden by the filter.
    assert_eq!(
        b.find("[data-bundle=sync_medusa] [data-matching]")
            .attr("data-matching")
            .as_deref(),
        Some("4")
    );
    assert!(
        b.try_find("[data-integration=sync_medusa_webhooks]")
            .is_none()
    );
    for card in b.find_all("article.card") {
        assert!(
            card.text().contains("Data Sync"),
            "card outside the category: {}",
            card.text()
        );
    }
    shot(&b, "03-marketplace-data-sync");
    // Searching keeps the chosen category; "All" widens it again.
    b.find("#q").type_text("orders");
    submit(&b, "form[role=search]");
    patchbay_testkit::wait_for("the search to apply", WAIT, || {
        path(&b).contains("q=orders").then_some(())
    });
    assert!(path(&b).contains("category=data_sync"), "{}", path(&b));
    assert!(
        b.try_find("[data-integration=sync_medusa_orders]")
            .is_some()
    );
    assert!(
        b.try_find("[data-integration=sync_medusa_products]")
            .is_none()
    );
    b.goto(&site.url("/backend/integrations?q=stripe"));
    assert!(b.try_find("[data-integration=gateway_stripe]").is_some());
    assert!(b.try_find("[data-bundle=sync_medusa]").is_none());
    b.goto(&site.url("/backend/integrations?q=no-such-thing-at-all"));
    b.find(".empty");
    shot(&b, "04-marketplace-empty");

    // --- The MedusaJS bundle: shared credentials, first with a mistake.
    b.goto(&site.url("/backend/integrations"));
    b.find("[data-bundle=sync_medusa] a.button[href='/backend/integrations/bundle/sync_medusa']")
        .click();
    wait_path(&b, "/backend/integrations/bundle/sync_medusa");
    shot(&b, "05-bundle");
    let creds_form = "form[action='/backend/integrations/bundle/sync_medusa/credentials']";
    b.find("#f-medusaApiUrl").type_text("not a url");
    b.find("#f-medusaApiKey").type_text(MEDUSA_KEY);
    submit(&b, creds_form);
    b.find("[data-errors]");
    let invalid = b.find("[data-field=medusaApiUrl].invalid .error");
    assert!(!invalid.text().is_empty());
    assert!(
        b.find("[data-field=medusaWebhookSecret].invalid .error")
            .text()
            .contains("required"),
    );
    // What was typed is kept for the retry; the refused secret is not echoed in the page.
    assert_eq!(b.find("#f-medusaApiUrl").value(), "not a url");
    shot(&b, "06-bundle-errors");
    b.find("#f-medusaApiUrl").clear();
    b.find("#f-medusaApiUrl")
        .type_text("https://medusa.acme.example");
    b.find("#f-medusaApiKey").clear();
    b.find("#f-medusaApiKey").type_text(MEDUSA_KEY);
    b.find("#f-medusaWebhookSecret").type_text(MEDUSA_HOOK);
    submit(&b, creds_form);
    patchbay_testkit::wait_for("the saved notice", WAIT, || {
        path(&b).contains("notice=saved").then_some(())
    });
    // Secrets come back masked, never in the page.
    assert_eq!(b.find("#f-medusaApiKey").value(), MASK);
    assert_eq!(
        b.find("#f-medusaApiKey").attr("type").as_deref(),
        Some("password")
    );
    assert_eq!(b.find("#f-medusaWebhookSecret").value(), MASK);
    assert_eq!(
        b.find("#f-medusaApiUrl").value(),
        "https://medusa.acme.example"
    );
    let source = b.source();
    assert!(!source.contains(MEDUSA_KEY) && !source.contains(MEDUSA_HOOK));

    // --- Enable all members.
    b.find("button[data-bundle-action=true]").click();
    patchbay_testkit::wait_for("the bundle-enabled notice", WAIT, || {
        path(&b).contains("notice=bundle_enabled").then_some(())
    });
    let members = b.find_all("tr[data-member]");
    assert_eq!(members.len(), 5, "MedusaJS has five members");
    for m in &members {
        assert_eq!(
            m.find("[data-status]").attr("data-status").as_deref(),
            Some("enabled"),
            "{}",
            m.text()
        );
    }
    shot(&b, "07-bundle-enabled");

    // --- A member shows the inherited credentials, masked, and can override them.
    b.find("tr[data-member=sync_medusa_orders] a").click();
    wait_path(&b, "/backend/integrations/sync_medusa_orders");
    let inherited = b.find("[data-inherited=sync_medusa]");
    assert!(
        inherited.text().contains("MedusaJS"),
        "{}",
        inherited.text()
    );
    let key = b.find("#f-medusaApiKey");
    assert_eq!(key.value(), MASK);
    assert_eq!(key.attr("type").as_deref(), Some("password"));
    assert_eq!(key.prop("disabled"), true, "inherited values are read-only");
    assert!(
        b.try_find("[data-hub-notice]").is_none(),
        "the member has a connector in this build"
    );
    shot(&b, "08-member-inherited");
    b.find("a[data-override]").click();
    wait_path(&b, "/backend/integrations/sync_medusa_orders?override=1");
    b.find("#f-medusaApiUrl").clear();
    b.find("#f-medusaApiUrl")
        .type_text("https://orders.medusa.acme.example");
    // The secrets stay masked: the bundle's values are kept for this member.
    assert_eq!(b.find("#f-medusaApiKey").value(), MASK);
    submit(
        &b,
        "form[action='/backend/integrations/sync_medusa_orders/credentials']",
    );
    b.find("[data-overrides]");
    assert_eq!(
        b.find("#f-medusaApiUrl").value(),
        "https://orders.medusa.acme.example"
    );
    assert_eq!(b.find("#f-medusaApiKey").value(), MASK);
    shot(&b, "09-member-override");
    let (status, own, text) = call(
        addr,
        "GET",
        "/api/integrations/sync_medusa_orders/credentials",
        &acme_token,
        None,
    );
    assert_eq!(status, 200, "{text}");
    assert_eq!(own["source"], "own", "{own}");
    assert_eq!(
        own["values"]["medusaApiUrl"],
        "https://orders.medusa.acme.example"
    );
    // The other members still inherit the bundle's.
    b.goto(&site.url("/backend/integrations/sync_medusa_products"));
    b.find("[data-inherited=sync_medusa]");
    assert_eq!(
        b.find("#f-medusaApiUrl").value(),
        "https://medusa.acme.example"
    );

    // --- Stripe without credentials: enabling is refused with the reasons.
    b.goto(&site.url("/backend/integrations/gateway_stripe"));
    b.find("[data-unconfigured]");
    b.find("button[data-action=enable]").click();
    let reasons = b.find("[data-errors]");
    let items = reasons.text();
    for field in ["Publishable Key", "Secret Key", "Webhook Secret"] {
        assert!(
            items.contains(field),
            "reasons should name {field}: {items}"
        );
    }
    assert_eq!(
        b.find(".head [data-status]").attr("data-status").as_deref(),
        Some("draft")
    );
    shot(&b, "10-stripe-enable-refused");

    // --- A deprecated API version shows its sunset date and migration guide.
    b.goto(&site.url("/backend/integrations/gateway_stripe"));
    assert!(b.try_find("[data-deprecated]").is_none());
    b.find("select#api_version").select_option("2023-10-16");
    submit(&b, "form:has(select#api_version)");
    let warning = b.find("[data-deprecated='2023-10-16']");
    assert!(warning.text().contains("2026-12-01"), "{}", warning.text());
    assert_eq!(
        warning.find("a").attr("href").as_deref(),
        Some("https://docs.stripe.com/upgrades#2024-12-18")
    );
    assert_eq!(b.find("select#api_version").value(), "2023-10-16");
    assert!(
        b.find("tr[data-version='2023-10-16']")
            .text()
            .contains("2026-12-01")
    );
    shot(&b, "11-stripe-deprecated-version");

    // --- The logs tab: entries newest first, the level filter, the live tail.
    b.goto(&site.url("/backend/integrations/sync_medusa_orders?tab=logs"));
    let entries = b.find_all("ul.timeline li.entry");
    assert!(entries.len() >= 2, "lifecycle entries expected");
    let ids: Vec<i64> = entries
        .iter()
        .map(|e| e.attr("data-id").unwrap().parse().unwrap())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");
    let n = entries.len();
    assert_eq!(
        b.find("[data-showing]").text(),
        format!("Showing 1–{n} of {n}")
    );
    // The live tail connects, and a change made elsewhere appears without a reload.
    b.wait_for_text("[data-live][data-state=on]", "", WAIT);
    shot(&b, "12-logs-tab");
    let (status, _, text) = call(
        addr,
        "PUT",
        "/api/integrations/sync_medusa_orders/state",
        &acme_token,
        Some(&json!({ "status": "disabled" })),
    );
    assert_eq!(status, 200, "{text}");
    let fresh = b.wait_for_text("ul.timeline li.entry.new", "Status disabled", WAIT);
    let fresh_id: i64 = fresh.attr("data-id").unwrap().parse().unwrap();
    assert!(fresh_id > ids[0]);
    let first = b.find("ul.timeline li.entry");
    assert_eq!(
        first.attr("data-id"),
        fresh.attr("data-id"),
        "new entries go on top"
    );
    let m = n + 1;
    b.wait_for_text("[data-showing]", &format!("Showing 1–{m} of {m}"), WAIT);
    shot(&b, "13-logs-live-tail");
    // Filter by level: nothing is an error here; info shows only info.
    b.find("select#level").select_option("error");
    submit(&b, "form[method=get].filters");
    patchbay_testkit::wait_for("the level filter to apply", WAIT, || {
        path(&b).contains("level=error").then_some(())
    });
    b.find("[data-empty]");
    assert!(b.find_all("ul.timeline li.entry").is_empty());
    assert_eq!(b.find("select#level").value(), "error");
    shot(&b, "14-logs-errors-only");
    b.find("select#level").select_option("info");
    submit(&b, "form[method=get].filters");
    patchbay_testkit::wait_for("the info filter to apply", WAIT, || {
        path(&b).contains("level=info").then_some(())
    });
    let infos = b.find_all("ul.timeline li.entry");
    assert!(!infos.is_empty());
    assert!(
        infos
            .iter()
            .all(|e| e.attr("data-level").as_deref() == Some("info"))
    );
    b.goto(&site.url("/backend/logs"));
    b.find("ul.timeline li.entry");
    shot(&b, "15-tenant-logs");

    // --- Sign out: the session is gone for good.
    sign_out(&b);
    shot(&b, "16-signed-out");
    b.goto(&site.url("/backend/integrations"));
    wait_path(&b, "/backend/login");

    // --- Another tenant's operator sees only their own tenant.
    sign_in(&b, &site, "ops@globex.example");
    wait_path(&b, "/backend/integrations");
    assert!(
        b.find("[data-bundle=sync_medusa]")
            .text()
            .contains("5 integrations, 0 enabled")
    );
    assert!(
        b.find_all("[data-status=enabled]").is_empty(),
        "globex has enabled nothing"
    );
    b.goto(&site.url("/backend/integrations/sync_medusa_orders"));
    b.find("[data-unconfigured]");
    assert!(b.try_find("[data-inherited]").is_none());
    assert!(!b.source().contains("medusa.acme.example"));
    // Platform pages and switching tenant are refused.
    for page in [
        "/backend/platform/tenants",
        "/backend/platform/failing",
        "/backend/platform/audit",
    ] {
        b.goto(&site.url(page));
        b.find("[data-error='403']");
    }
    shot(&b, "17-tenant-operator-forbidden");
    b.goto(&site.url("/backend/integrations"));
    let forged = b.execute(
        "var csrf = document.querySelector('input[name=csrf]').value;
         var f = document.createElement('form');
         f.method = 'post'; f.action = '/backend/switch-tenant';
         [['csrf', csrf], ['tenant', arguments[0]]].forEach(function (p) {
           var i = document.createElement('input');
           i.type = 'hidden'; i.name = p[0]; i.value = p[1]; f.appendChild(i);
         });
         document.body.appendChild(f); f.submit(); return true;",
        &[json!(acme)],
    );
    assert_eq!(forged, true);
    b.find("[data-error='403']");
    b.goto(&site.url("/backend/integrations/sync_medusa_orders"));
    b.find("[data-unconfigured]");

    // --- A form posted without its CSRF token (or with a forged one) is refused and saves nothing.
    b.goto(&site.url("/backend/integrations/bundle/sync_medusa"));
    b.find("#f-medusaApiUrl")
        .type_text("https://medusa.globex.example");
    b.find("#f-medusaApiKey").type_text("globex-key");
    b.find("#f-medusaWebhookSecret").type_text("globex-hook");
    b.execute(
        "document.querySelector(arguments[0] + ' input[name=csrf]').remove(); return null;",
        &[json!(creds_form)],
    );
    submit(&b, creds_form);
    b.find("[data-error='403']");
    shot(&b, "18-csrf-refused");
    b.goto(&site.url("/backend/integrations/bundle/sync_medusa"));
    assert_eq!(b.find("#f-medusaApiUrl").value(), "");
    b.execute(
        "document.querySelector(arguments[0] + ' input[name=csrf]').value = 'forged'; return null;",
        &[json!("form[action='/backend/logout']")],
    );
    submit(&b, "form[action='/backend/logout']");
    b.find("[data-error='403']");
    b.goto(&site.url("/backend/integrations"));
    assert_eq!(path(&b), "/backend/integrations", "still signed in");
    sign_out(&b);

    // --- The platform admin: tenants, failing connections, audit, switching.
    sign_in(&b, &site, "root@platform.example");
    wait_path(&b, "/backend/platform/tenants");
    b.find("[data-tenant=acme]");
    b.find("[data-tenant=globex]");
    shot(&b, "19-platform-tenants");
    b.goto(&site.url("/backend/platform/failing"));
    b.find("h1");
    shot(&b, "20-platform-failing");
    b.goto(&site.url("/backend/platform/audit"));
    b.find("tr[data-audit='credentials.update']");
    shot(&b, "21-platform-audit");
    b.find("select#tenant-switch").select_option(&acme);
    submit(&b, "form[action='/backend/switch-tenant']");
    wait_path(&b, "/backend/integrations");
    let enabled = b.find_all("[data-bundle=sync_medusa] [data-status=enabled]");
    assert_eq!(
        enabled.len(),
        4,
        "acme's bundle: four enabled, orders disabled"
    );
    shot(&b, "22-platform-switched-to-acme");
    // The same pages on a phone-sized screen.
    b.set_window_size(390, 844);
    b.goto(&site.url("/backend/integrations/gateway_stripe"));
    shot(&b, "23-mobile-detail");
    sign_out(&b);

    // --- The Health tab: "Run check now". With workers in the server the
    // result comes back within the wait; without, the page says it is queued.
    b.set_window_size(1280, 900);
    sign_in(&b, &site, "ops@acme.example");
    wait_path(&b, "/backend/integrations");
    b.goto(&site.url("/backend/integrations/sync_medusa_products?tab=health"));
    b.find("[data-health-tab]");
    b.find("button[data-run-health]").click();
    let notice = patchbay_testkit::wait_for("the health-check notice", WAIT, || {
        path(&b).split("notice=").nth(1).map(str::to_owned)
    });
    if notice == "health_pending" {
        assert!(
            b.find("[data-notice=health_pending]")
                .text()
                .contains("refresh to see the result")
        );
    } else {
        let shown = b.find("[data-health]").attr("data-health").unwrap();
        assert_eq!(
            notice,
            format!("health_{shown}"),
            "the notice tells the result"
        );
        b.find("tr[data-check=provider]");
    }
    shot(&b, "24-health-run-now");
    // --- The tenant's jobs list the check just requested.
    b.goto(&site.url("/backend/jobs"));
    let rows = b.find_all("table.jobs tr[data-job]");
    assert!(
        rows.iter().any(|r| r.text().contains("health.check")),
        "the health check is listed"
    );
    shot(&b, "25-jobs");
    sign_out(&b);

    drop(b);
    let stderr = server.stderr();
    for secret in [MEDUSA_KEY, MEDUSA_HOOK, PASSWORD] {
        assert!(!stderr.contains(secret), "a secret reached the server log");
    }
    server.stop();
}
