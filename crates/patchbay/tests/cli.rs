//! The `patchbay` binary as an operator runs it: start, readiness, graceful
//! stop, and one readable line with a non-zero exit for every bad setting.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use patchbay_testkit::{free_port, http, wait_for};

const BIN: &str = env!("CARGO_BIN_EXE_patchbay");

fn patchbay(args: &[&str], cwd: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.args(args)
        .current_dir(cwd)
        .env_remove("PATCHBAY_DATA_DIR")
        .env_remove("PATCHBAY_DATABASE_URL")
        .env_remove("PATCHBAY_LISTEN");
    c
}

/// Runs a command that must fail, with a timeout, and returns its output.
fn run_failing(mut cmd: Command) -> Output {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = wait_with_timeout(child, Duration::from_secs(30));
    assert!(
        !out.status.success(),
        "expected failure, got success: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn wait_with_timeout(mut child: Child, limit: Duration) -> Output {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("process did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The single `patchbay: …` error line, asserting there is exactly one and no panic.
#[track_caller]
fn error_line(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("patchbay: "))
        .collect();
    assert_eq!(lines.len(), 1, "exactly one error line expected:\n{stderr}");
    lines[0].to_owned()
}

fn sigterm(child: &Child) {
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

fn wait_ready(addr: SocketAddr) -> serde_json::Value {
    wait_for("/readyz to answer 200", Duration::from_secs(30), || {
        let r = http::get(addr, "/readyz").ok()?;
        (r.status == 200).then(|| serde_json::from_slice(&r.body).unwrap())
    })
}

#[test]
fn serve_starts_with_defaults_answers_ready_and_stops_gracefully_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    // No data directory given: ./patchbay-data under the working directory.
    let child = patchbay(&["serve", "--listen", &addr.to_string()], dir.path())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let ready = wait_ready(addr);
    assert_eq!(ready["database"], "sqlite");
    assert!(dir.path().join("patchbay-data/patchbay.db").is_file());
    let catalog: serde_json::Value =
        serde_json::from_slice(&http::get(addr, "/api/catalog").unwrap().body).unwrap();
    assert!(catalog["items"].as_array().unwrap().len() >= 10);

    sigterm(&child);
    let out = wait_with_timeout(child, Duration::from_secs(15));
    assert!(
        out.status.success(),
        "graceful stop exits 0: {:?}",
        out.status
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("shutdown requested") && stderr.contains("stopped"),
        "{stderr}"
    );
    assert!(
        !stderr.contains('\u{1b}'),
        "no colour codes when stderr is not a terminal"
    );

    // Restart on the existing data directory, configured through the environment.
    let child = patchbay(&["serve"], Path::new("/"))
        .env("PATCHBAY_DATA_DIR", dir.path().join("patchbay-data"))
        .env("PATCHBAY_LISTEN", addr.to_string())
        .env("PATCHBAY_LOG_FORMAT", "json")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_ready(addr);
    sigterm(&child);
    let out = wait_with_timeout(child, Duration::from_secs(15));
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let first: serde_json::Value =
        serde_json::from_str(stderr.lines().next().unwrap()).expect("JSON log lines");
    assert!(first["level"].is_string(), "{first}");
    assert!(
        !stderr.contains("applying SQLite migration"),
        "nothing to migrate the second time: {stderr}"
    );
}

#[test]
fn an_unreachable_database_is_one_line_without_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "postgres://patchbay:hunter2@127.0.0.1:{}/patchbay",
        free_port()
    );
    let out = run_failing(patchbay(
        &[
            "serve",
            "--listen",
            &format!("127.0.0.1:{}", free_port()),
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
    let out = run_failing(patchbay(
        &[
            "serve",
            "--listen",
            &format!("127.0.0.1:{}", free_port()),
            "--data-dir",
            "plain-file/data",
        ],
        dir.path(),
    ));
    assert_eq!(out.status.code(), Some(1));
    let line = error_line(&out);
    assert!(
        line.contains("cannot create data directory plain-file/data"),
        "{line}"
    );
}

#[test]
fn an_invalid_database_url_is_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_failing(patchbay(
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
    let out = run_failing(patchbay(&["serve", "--listen", "localhost"], dir.path()));
    assert_eq!(out.status.code(), Some(2));
    assert!(error_line(&out).contains("invalid listen address `localhost`"));
}

#[test]
fn a_port_in_use_is_one_line_and_touches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let out = run_failing(patchbay(
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
        "no database created"
    );
}

#[test]
fn serve_runs_on_postgresql() {
    let Some(pg) = patchbay_testkit::postgres() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let child = patchbay(
        &[
            "serve",
            "--listen",
            &addr.to_string(),
            "--database-url",
            &pg.fresh_database(),
        ],
        dir.path(),
    )
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    assert_eq!(wait_ready(addr)["database"], "postgres");
    sigterm(&child);
    assert!(
        wait_with_timeout(child, Duration::from_secs(15))
            .status
            .success()
    );
}

#[test]
fn catalog_check_names_the_file_and_field_of_a_bad_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "[integration]\nid = \"notification_example\"\ntitle = \"Example\"\ndescription = \"x\"\ncategory = \"notification\"\nhub = \"notification_providers\"\nprovider_key = \"example\"\ncapabilities = { direction = \"outbound\" }\n",
    )
    .unwrap();
    let out = patchbay(&["catalog", "check", "good.toml"], dir.path())
        .output()
        .unwrap();
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
    let out = patchbay(&["catalog", "check", "bad.toml"], dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bad.toml: integration.hub: hub `storage_providers` does not belong to category `notification`"), "{stderr}");

    let out = patchbay(&["catalog", "check", "missing.toml"], dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(error_line(&out).contains("cannot read missing.toml"));
}

#[test]
fn catalog_list_prints_the_builtin_catalog() {
    let out = patchbay(&["catalog", "list"], Path::new("/"))
        .output()
        .unwrap();
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
