//! WebAssembly connectors in a running `patchbay serve`: loaded from
//! `--connectors-dir`, listed in the catalog, health-checked, invoked and
//! read through the API; a broken connectors folder stops the start with
//! one line naming the file.

mod common;

use std::path::Path;

use common::{Drive, error_line, exercise_connector, patchbay, run};
use serde_json::json;

fn echo_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    patchbay_testkit::wasm::echo_connector_dir(dir.path(), "");
    dir
}

#[test]
fn a_wasm_connector_runs_inside_serve() {
    let dir = echo_dir();
    let seen = exercise_connector(
        dir.path(),
        &Drive {
            id: "wasm_echo",
            credentials: json!({ "token": "t0k" }),
            action: Some(("echo", json!({ "hello": "wasm" }))),
            stream: Some("numbers"),
            serve_flags: &[],
        },
    );
    assert_eq!(
        seen.health["result"]["status"], "healthy",
        "{}",
        seen.health
    );
    assert_eq!(
        seen.health["result"]["message"],
        "echo connector ready for wasm_echo"
    );
    assert_eq!(seen.action.unwrap()["output"], json!({ "hello": "wasm" }));
    let batch = seen.batch.unwrap();
    assert_eq!(batch["records"], json!([{ "n": 0 }, { "n": 1 }]));
    assert_eq!(batch["nextCursor"], "2");
}

/// Runs `patchbay serve` on `dir`, expecting it to refuse to start; its error line.
fn refused_start(dir: &Path, data: &Path) -> String {
    let out = run(patchbay(
        &[
            "serve",
            "--data-dir",
            data.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--connectors-dir",
            dir.to_str().unwrap(),
        ],
        Path::new("/"),
    ));
    assert!(!out.status.success());
    error_line(&out)
}

#[test]
fn a_missing_component_stops_the_start_naming_the_file() {
    let dir = echo_dir();
    std::fs::remove_file(dir.path().join("echo/echo.wasm")).unwrap();
    let data = tempfile::tempdir().unwrap();
    let line = refused_start(dir.path(), data.path());
    assert!(
        line.contains("echo.wasm") && line.contains("wasm_echo"),
        "{line}"
    );
    // Nothing was written: the check comes before the database.
    assert!(std::fs::read_dir(data.path()).unwrap().next().is_none());
}

#[test]
fn a_component_that_is_not_one_is_refused() {
    let dir = echo_dir();
    std::fs::write(dir.path().join("echo/echo.wasm"), b"\0asm not really").unwrap();
    let data = tempfile::tempdir().unwrap();
    let line = refused_start(dir.path(), data.path());
    assert!(
        line.contains("not a loadable connector component"),
        "{line}"
    );
}

#[test]
fn connector_limits_out_of_range_are_one_line() {
    let data = tempfile::tempdir().unwrap();
    for (flag, value, says) in [
        ("--connector-max-deadline-secs", "0", "expected 1 to 3600"),
        ("--connector-max-memory-mib", "9999", "expected 1 to 4096"),
        ("--connectors-dir", "/no/such/folder", "not a folder"),
    ] {
        let out = run(patchbay(
            &[
                "serve",
                "--data-dir",
                data.path().to_str().unwrap(),
                flag,
                value,
            ],
            Path::new("/"),
        ));
        assert_eq!(out.status.code(), Some(2), "{flag}");
        assert!(
            error_line(&out).contains(says),
            "{flag}: {}",
            error_line(&out)
        );
    }
}
