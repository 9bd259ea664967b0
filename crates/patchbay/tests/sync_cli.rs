//! `patchbay sync run`: an import from the command line, beside no server,
//! with progress on stderr and a summary on stdout; errors are one line.

mod common;

use std::io::Write as _;
use std::path::Path;

use common::{call, error_line, local_addr, patchbay, run, serve, tenant};
use serde_json::json;

/// A data directory holding tenant `acme` with `sync_files` configured on a
/// JSON Lines file of `n` records (the last `bad` of them not JSON).
fn prepared(n: usize, bad: usize) -> (tempfile::TempDir, tempfile::TempDir) {
    let data = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    let path = src.path().join("items.jsonl");
    let mut f = std::fs::File::create(&path).unwrap();
    for i in 0..n {
        if i + bad >= n {
            writeln!(f, "{{broken {i}").unwrap();
        } else {
            writeln!(f, "{}", json!({ "id": i, "name": format!("item {i}") })).unwrap();
        }
    }
    let addr = local_addr();
    let (mut p, admin) = serve(data.path(), addr, &[]);
    let (_, token) = tenant(addr, &admin.unwrap(), "acme");
    let (status, _, text) = call(
        addr,
        "PUT",
        "/api/integrations/sync_files/credentials",
        &token,
        Some(
            &json!({ "values": { "path": path.to_str().unwrap(), "format": "jsonl", "idField": "id" } }),
        ),
    );
    assert_eq!(status, 200, "{text}");
    let (status, _, text) = call(
        addr,
        "PUT",
        "/api/integrations/sync_files/state",
        &token,
        Some(&json!({ "status": "enabled" })),
    );
    assert_eq!(status, 200, "{text}");
    assert!(p.stop().success());
    (data, src)
}

/// `patchbay sync run sync_files --tenant acme --stream records` on `data`.
fn sync_run(data: &Path) -> std::process::Output {
    run(patchbay(
        &[
            "sync",
            "run",
            "sync_files",
            "--tenant",
            "acme",
            "--stream",
            "records",
            "--data-dir",
            data.to_str().unwrap(),
        ],
        Path::new("/"),
    ))
}

#[test]
fn sync_run_imports_and_prints_a_summary() {
    let (data, _src) = prepared(3000, 30);
    let out = sync_run(data.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("succeeded")
            && stdout.contains("3000 processed, 2970 created")
            && stdout.contains("30 failed"),
        "{stdout}"
    );
    assert!(stdout.contains("correlation id sync_"), "{stdout}");
    assert!(
        stderr.contains("records/s") || stderr.contains("/s"),
        "{stderr}"
    );

    // Again: nothing new in the file.
    let out = sync_run(data.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("0 processed"), "{stdout}");
}

#[test]
fn sync_run_errors_are_one_line() {
    let (data, _src) = prepared(10, 0);
    let d = data.path().to_str().unwrap();
    for (args, says) in [
        (
            vec![
                "sync",
                "run",
                "sync_files",
                "--tenant",
                "nobody",
                "--stream",
                "records",
                "--data-dir",
                d,
            ],
            "no tenant with slug or id `nobody`",
        ),
        (
            vec![
                "sync",
                "run",
                "sync_files",
                "--tenant",
                "acme",
                "--stream",
                "orders",
                "--data-dir",
                d,
            ],
            "has no stream `orders`",
        ),
        (
            vec![
                "sync",
                "run",
                "gateway_stripe",
                "--tenant",
                "acme",
                "--stream",
                "records",
                "--data-dir",
                d,
            ],
            "has no stream",
        ),
    ] {
        let out = run(patchbay(&args, Path::new("/")));
        assert!(!out.status.success());
        assert!(error_line(&out).contains(says), "{}", error_line(&out));
    }
}
