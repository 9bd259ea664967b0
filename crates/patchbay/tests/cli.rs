//! The `patchbay` binary as an operator runs it: start, readiness, graceful
//! stop, the bootstrap token, and one readable line with a non-zero exit for
//! every bad setting.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{Proc, call, error_line, local_addr, patchbay, run, serve};
use patchbay_testkit::{free_port, http};

#[test]
fn serve_starts_with_defaults_prints_a_bootstrap_token_once_and_stops_gracefully() {
    let dir = tempfile::tempdir().unwrap();
    let addr = local_addr();
    // No data directory given: ./patchbay-data under the working directory.
    let mut p = Proc::spawn(patchbay(
        &["serve", "--listen", &addr.to_string()],
        dir.path(),
    ));
    assert_eq!(p.ready(addr)["database"], "sqlite");
    let data = dir.path().join("patchbay-data");
    assert!(data.join("patchbay.db").is_file());
    let key = data.join("master.key");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let token = patchbay_testkit::wait_for(
        "the bootstrap token on stdout",
        Duration::from_secs(10),
        || common::bootstrap_token(&p.stdout()),
    );
    let (status, me, _) = call(addr, "GET", "/api/me", &token, None);
    assert_eq!((status, me["scope"].as_str()), (200, Some("platform")));
    assert_eq!(
        http::get(addr, "/api/catalog").unwrap().status,
        401,
        "the catalog needs a token"
    );
    let (_, catalog, _) = call(addr, "GET", "/api/catalog", &token, None);
    assert!(catalog["items"].as_array().unwrap().len() >= 10);
    assert!(
        !p.stderr().contains(&token),
        "the token is printed, never logged"
    );

    let status = p.stop();
    assert!(status.success(), "graceful stop exits 0: {status:?}");
    let stderr = p.stderr();
    assert!(
        stderr.contains("shutdown requested") && stderr.contains("stopped"),
        "{stderr}"
    );
    assert!(
        !stderr.contains('\u{1b}'),
        "no colour codes when stderr is not a terminal"
    );

    // Restart on the existing data directory, configured through the environment.
    let mut cmd = patchbay(&["serve"], Path::new("/"));
    cmd.env("PATCHBAY_DATA_DIR", &data)
        .env("PATCHBAY_LISTEN", addr.to_string())
        .env("PATCHBAY_LOG_FORMAT", "json");
    let mut p = Proc::spawn(cmd);
    p.ready(addr);
    assert_eq!(
        call(addr, "GET", "/api/me", &token, None).0,
        200,
        "the token survives restarts"
    );
    assert!(p.stop().success());
    assert!(
        common::bootstrap_token(&p.stdout()).is_none(),
        "the bootstrap token is minted once"
    );
    let stderr = p.stderr();
    let first: serde_json::Value =
        serde_json::from_str(stderr.lines().next().unwrap()).expect("JSON log lines");
    assert!(first["level"].is_string(), "{first}");
    assert!(
        !stderr.contains("applying SQLite migration"),
        "nothing to migrate the second time: {stderr}"
    );
}

use std::os::unix::fs::PermissionsExt as _;

#[test]
fn an_unreachable_database_is_one_line_without_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "postgres://patchbay:hunter2@127.0.0.1:{}/patchbay",
        free_port()
    );
    let out = run(patchbay(
        &[
            "serve",
            "--listen",
            &local_addr().to_string(),
            "--database-url",
            &url,
        ],
        dir.path(),
    ));
    assert_eq!(out.status.code(), Some(1));
    let line = error_line(&out);
    assert!(
        line.contains("cannot connect to PostgreSQL") && line.contains("refused"),
        "{line}"
    );
    assert!(!String::from_utf8_lossy(&out.stderr).contains("hunter2"));
}

#[test]
fn an_unwritable_data_directory_is_one_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("plain-file"), b"").unwrap();
    let out = run(patchbay(
        &[
            "serve",
            "--listen",
            &local_addr().to_string(),
            "--data-dir",
            "plain-file/data",
        ],
        dir.path(),
    ));
    assert_eq!(out.status.code(), Some(1));
    assert!(error_line(&out).contains("cannot create data directory plain-file/data"));
}

#[test]
fn an_invalid_database_url_is_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(patchbay(
        &["serve", "--database-url", "mysql://root:pw@db/x"],
        dir.path(),
    ));
    assert_eq!(out.status.code(), Some(2));
    let line = error_line(&out);
    assert!(
        line.contains("invalid database URL") && !line.contains(":pw@"),
        "{line}"
    );
}

#[test]
fn an_invalid_listen_address_is_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(patchbay(&["serve", "--listen", "localhost"], dir.path()));
    assert_eq!(out.status.code(), Some(2));
    assert!(error_line(&out).contains("invalid listen address `localhost`"));
}

#[test]
fn invalid_worker_settings_are_one_line_and_create_nothing() {
    let dir = tempfile::tempdir().unwrap();
    for (args, expected) in [
        (
            vec!["--worker-concurrency", "default=4,bulk=2"],
            "invalid --worker-concurrency `bulk=2`: expected queue=n with a queue among default, health, maintenance",
        ),
        (
            vec!["--worker-concurrency", "default=lots"],
            "invalid --worker-concurrency `default=lots`",
        ),
        (
            vec!["--job-lease-secs", "0"],
            "invalid --job-lease-secs 0: expected 1 to 3600",
        ),
        (vec!["--worker-id", "has space"], "invalid --worker-id"),
        (
            vec!["--shutdown-grace-secs", "7200"],
            "invalid --shutdown-grace-secs 7200",
        ),
        (
            vec!["--action-concurrency", "0"],
            "invalid --action-concurrency 0: expected 1 to 1024",
        ),
        (
            vec!["--action-queue", "20000"],
            "invalid --action-queue 20000: expected 0 to 10000",
        ),
    ] {
        let mut all = vec!["serve", "--data-dir", "data"];
        all.extend(args);
        let out = run(patchbay(&all, dir.path()));
        assert_eq!(out.status.code(), Some(2), "{all:?}");
        let line = error_line(&out);
        assert!(line.contains(expected), "{line}");
    }
    assert!(!dir.path().join("data").exists());
}

#[test]
fn a_port_in_use_is_one_line_and_touches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let out = run(patchbay(
        &["serve", "--listen", &addr.to_string()],
        dir.path(),
    ));
    assert_eq!(out.status.code(), Some(1));
    let line = error_line(&out);
    assert!(
        line.contains(&format!("cannot listen on {addr}")) && line.contains("in use"),
        "{line}"
    );
    assert!(
        !dir.path().join("patchbay-data").exists(),
        "no database or key created"
    );
}

#[test]
fn serve_runs_on_postgresql() {
    let Some(pg) = patchbay_testkit::postgres() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let addr = local_addr();
    let mut p = Proc::spawn(patchbay(
        &[
            "serve",
            "--listen",
            &addr.to_string(),
            "--database-url",
            &pg.fresh_database(),
        ],
        dir.path(),
    ));
    assert_eq!(p.ready(addr)["database"], "postgres");
    assert!(p.stop().success());
}

#[test]
fn token_create_works_beside_a_running_server() {
    let dir = tempfile::tempdir().unwrap();
    let addr = local_addr();
    let (mut server, admin) = serve(dir.path(), addr, &["--no-bootstrap-token"]);
    assert!(admin.is_none(), "--no-bootstrap-token prints none");
    let data = dir.path().to_str().unwrap();
    let out = run(patchbay(
        &[
            "token",
            "create",
            "--data-dir",
            data,
            "--platform",
            "--name",
            "ops",
        ],
        Path::new("/"),
    ));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let admin = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(admin.starts_with("pb_"));
    let (tenant_id, _) = common::tenant(addr, &admin, "acme");
    let out = run(patchbay(
        &[
            "token",
            "create",
            "--data-dir",
            data,
            "--tenant",
            "acme",
            "--feature",
            "integrations.view",
        ],
        Path::new("/"),
    ));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let viewer = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let (_, me, _) = call(addr, "GET", "/api/me", &viewer, None);
    assert_eq!(
        (
            me["tenantId"].as_str(),
            me["features"].as_array().unwrap().len()
        ),
        (Some(tenant_id.as_str()), 1)
    );
    let out = run(patchbay(
        &["token", "create", "--data-dir", data, "--tenant", "nope"],
        Path::new("/"),
    ));
    assert_eq!(out.status.code(), Some(1));
    assert!(error_line(&out).contains("no tenant with slug or id `nope`"));
    let out = run(patchbay(
        &[
            "token",
            "create",
            "--data-dir",
            data,
            "--tenant",
            "acme",
            "--feature",
            "platform.admin",
        ],
        Path::new("/"),
    ));
    assert!(
        error_line(&out).contains("features"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(server.stop().success());
}

#[test]
fn catalog_check_names_the_file_and_field_of_a_bad_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "[integration]\nid = \"notification_example\"\ntitle = \"Example\"\ndescription = \"x\"\ncategory = \"notification\"\nhub = \"notification_providers\"\nprovider_key = \"example\"\ncapabilities = { direction = \"outbound\", actions = [\"send\"] }\n",
    )
    .unwrap();
    let out = run(patchbay(&["catalog", "check", "good.toml"], dir.path()));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("ok: 1 manifest(s) valid"));

    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        std::fs::read_to_string(&good).unwrap().replace(
            "hub = \"notification_providers\"",
            "hub = \"storage_providers\"",
        ),
    )
    .unwrap();
    let out = run(patchbay(&["catalog", "check", "bad.toml"], dir.path()));
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bad.toml: integration.hub: hub `storage_providers` does not belong to category `notification`"), "{stderr}");

    let out = run(patchbay(&["catalog", "check", "missing.toml"], dir.path()));
    assert_eq!(out.status.code(), Some(1));
    assert!(error_line(&out).contains("cannot read missing.toml"));
}

#[test]
fn catalog_list_prints_the_builtin_catalog() {
    let out = run(patchbay(&["catalog", "list"], Path::new("/")));
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("gateway_stripe") && l.contains("payment")),
        "{stdout}"
    );
    assert!(stdout.contains("(bundle sync_medusa)"));
}

/// Signs in to the panel over HTTP (login CSRF cookie, then the form);
/// returns the status of the form post.
fn panel_sign_in(addr: std::net::SocketAddr, email: &str, password: &str) -> u16 {
    let form = patchbay_testkit::http::get(addr, "/backend/login").unwrap();
    let cookie = form
        .header("set-cookie")
        .and_then(|c| c.split(';').next())
        .unwrap()
        .to_owned();
    let csrf = cookie.split_once('=').unwrap().1.to_owned();
    let body = format!(
        "csrf={csrf}&next=%2Fbackend%2Fintegrations&email={}&password={}",
        email.replace('@', "%40"),
        password.replace(' ', "+")
    );
    let r = patchbay_testkit::http::request(
        addr,
        "POST",
        "/backend/login",
        &[
            ("Cookie", cookie.as_str()),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        body.as_bytes(),
    )
    .unwrap();
    if r.status == 303 {
        assert!(
            r.header("set-cookie")
                .is_some_and(|c| c.starts_with("pb_session=")),
            "a session cookie"
        );
    }
    r.status
}

#[test]
fn serve_with_demo_creates_a_demo_tenant_once() {
    let dir = tempfile::tempdir().unwrap();
    let addr = local_addr();
    let mut p = Proc::spawn(patchbay(
        &[
            "serve",
            "--demo",
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--listen",
            &addr.to_string(),
        ],
        Path::new("/"),
    ));
    p.ready(addr);
    let out = patchbay_testkit::wait_for("the demo token", Duration::from_secs(10), || {
        p.stdout().contains("demo tenant").then(|| p.stdout())
    });
    let tokens: Vec<&str> = out
        .split_whitespace()
        .filter(|w| w.starts_with("pb_"))
        .collect();
    assert_eq!(
        tokens.len(),
        2,
        "the bootstrap token and the demo token: {out}"
    );
    let demo = tokens[1];
    let (status, list, _) = call(addr, "GET", "/api/integrations", demo, None);
    assert_eq!(status, 200);
    let state = |id: &str| {
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["id"] == id)
            .unwrap()["state"]["status"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(state("gateway_stripe"), "enabled");
    assert_eq!(state("sync_medusa_orders"), "enabled");
    assert_eq!(state("notification_smtp"), "draft");
    let (_, logs, _) = call(addr, "GET", "/api/logs?level=error", demo, None);
    assert_eq!(logs["total"], 1);
    // The demo operator signs in to the panel with the password shown once.
    let words: Vec<&str> = out.split_whitespace().collect();
    let after = |label: &str| {
        let at = words.iter().rposition(|w| *w == label).unwrap();
        words[at + 1].trim_end_matches(&[',', ')'][..]).to_owned()
    };
    let (email, password) = (after("(email"), after("password"));
    assert_eq!(email, "demo@patchbay.local");
    assert!(password.len() >= 20, "{out}");
    assert_eq!(panel_sign_in(addr, &email, &password), 303);
    assert_eq!(panel_sign_in(addr, &email, "not the password"), 401);
    assert!(p.stop().success());
    // Once only.
    let mut p = Proc::spawn(patchbay(
        &[
            "serve",
            "--demo",
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--listen",
            &addr.to_string(),
        ],
        Path::new("/"),
    ));
    p.ready(addr);
    assert!(p.stop().success());
    assert!(!p.stdout().contains("pb_"), "{}", p.stdout());
}

#[test]
fn user_create_reads_the_password_from_stdin_and_refuses_weak_ones() {
    use std::io::Write as _;
    let dir = tempfile::tempdir().unwrap();
    let addr = local_addr();
    let (mut server, admin) = serve(dir.path(), addr, &[]);
    common::tenant(addr, &admin.unwrap(), "acme");
    let data = dir.path().to_str().unwrap();
    let create = |password: &str, tenant: &[&str]| {
        let mut args = vec![
            "user",
            "create",
            "--data-dir",
            data,
            "--email",
            "ops@acme.example",
            "--name",
            "Ops",
            "--role",
            "owner",
        ];
        args.extend_from_slice(tenant);
        let mut child = patchbay(&args, Path::new("/"))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{password}\n").as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let weak = create("short", &["--tenant", "acme"]);
    assert_eq!(weak.status.code(), Some(1));
    assert!(error_line(&weak).contains("password: must be at least 12 characters"));
    let ok = create("correct horse battery", &["--tenant", "acme"]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("created user usr_"));
    assert!(!String::from_utf8_lossy(&ok.stdout).contains("battery"));
    let again = create("correct horse battery", &["--tenant", "acme"]);
    assert!(error_line(&again).contains("already exists"));
    assert!(server.stop().success());
}
