//! `patchbay connector new | build | test` as a connector author runs them,
//! and the Rust SDK (`sdk/rust`) they vendor: a fresh scaffold passes
//! `cargo test`, builds into a component Patchbay's host loads, and passes
//! its recorded cases; a wrong expectation fails with a readable diff; bad
//! ids, categories and hubs are one line and exit 2; the example connector
//! (`connectors-wasm/notification_postmark`) passes its fixtures; `keygen`,
//! `pack`, `sign` and `verify` make a package only its publisher's key verifies.
//!
//! Guests are built into `$CARGO_TARGET_DIR/wasm-guests`, shared with the
//! sandbox tests, so dependencies are compiled once; the scaffold is built
//! once per test binary.

// Like the sandbox tests, these read the build environment (CARGO,
// CARGO_TARGET_DIR, CI) to run cargo as the workspace's own build does.
#![allow(clippy::disallowed_methods)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use common::{Drive, error_line, exercise_connector, patchbay, recorded_http_server};
use patchbay_testkit::wasm::{guest_target_dir, workspace_root};
use serde_json::json;

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// The host's build flags are not the guests'; guests share one target dir.
fn guest_env(cmd: &mut Command) -> &mut Command {
    cmd.env("CARGO_TARGET_DIR", guest_target_dir())
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
}

/// `patchbay connector <args>` in `cwd`, run to completion.
fn connector(args: &[&str], cwd: &Path) -> Output {
    let mut full = vec!["connector"];
    full.extend_from_slice(args);
    let mut cmd = patchbay(&full, cwd);
    guest_env(&mut cmd)
        .output()
        .expect("running the patchbay binary")
}

/// `cargo <args>` in `cwd`, run to completion.
fn cargo(args: &[&str], cwd: &Path) -> Output {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.args(args).current_dir(cwd);
    guest_env(&mut cmd).output().expect("running cargo")
}

#[track_caller]
fn assert_success(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} failed ({:?})\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `acme_notify` (notification hub), created unchanged, unit-tested with
/// `cargo test` and built with `connector build` — once per test binary.
fn scaffold() -> &'static Path {
    static SCAFFOLD: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &SCAFFOLD
        .get_or_init(|| {
            let tmp = tempfile::tempdir().unwrap();
            let created = connector(
                &[
                    "new",
                    "acme_notify",
                    "--category",
                    "notification",
                    "--hub",
                    "notification_providers",
                    "--dir",
                    "acme_notify",
                ],
                tmp.path(),
            );
            assert_success("connector new", &created);
            let dir = tmp.path().join("acme_notify");
            // The generated Cargo.lock is exact: --locked proves it.
            let tested = cargo(&["test", "--locked"], &dir);
            assert_success("cargo test in the scaffold", &tested);
            let built = connector(&["build", "--locked"], &dir);
            assert_success("connector build", &built);
            assert!(
                stdout(&built).contains("built acme_notify: dist/acme_notify.wasm"),
                "{}",
                stdout(&built)
            );
            (tmp, dir)
        })
        .1
}

#[test]
fn a_new_connector_passes_its_unit_tests_builds_and_passes_its_recorded_cases() {
    let dir = scaffold();
    assert!(dir.join("dist/acme_notify.wasm").is_file());

    let out = connector(&["test"], dir);
    assert_success("connector test", &out);
    let text = stdout(&out);
    for line in [
        "ok      check\n",
        "ok      check_refused_key\n",
        "ok      send\n",
        "test result: ok. 3 passed; 0 failed",
    ] {
        assert!(text.contains(line), "{line:?} missing from:\n{text}");
    }
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("building first"),
        "a fresh component is not built again"
    );

    let manifest = std::fs::read_to_string(dir.join("patchbay.toml")).unwrap();
    assert!(
        manifest.contains(
            "[integration.runtime]\nkind = \"wasm\"\ncomponent = \"dist/acme_notify.wasm\"\ndeadline_secs = 10\nmemory_mib = 64\n"
        ),
        "{manifest}"
    );
    let checked = patchbay(&["catalog", "check", "patchbay.toml"], dir)
        .output()
        .unwrap();
    assert_success("catalog check of the scaffold's manifest", &checked);

    // Generated code is formatted as `cargo fmt` would (where rustfmt is installed).
    if let Ok(formatted) = Command::new("rustfmt")
        .args(["--check", "--edition", "2024", "src/lib.rs"])
        .current_dir(dir)
        .output()
    {
        assert_success("rustfmt --check of the scaffold", &formatted);
    }
}

#[test]
fn a_wrong_expectation_fails_with_a_readable_diff_and_exit_1() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("acme_notify");
    copy_dir(scaffold(), &dir);
    // The copied component is as new as the copied sources: no rebuild.
    std::fs::File::options()
        .write(true)
        .open(dir.join("dist/acme_notify.wasm"))
        .unwrap()
        .set_modified(std::time::SystemTime::now())
        .unwrap();
    let send = dir.join("fixtures/send.json");
    let text = std::fs::read_to_string(&send).unwrap();
    assert!(text.contains("\"status\": \"queued\""), "{text}");
    std::fs::write(
        &send,
        text.replace("\"status\": \"queued\"", "\"status\": \"sent\""),
    )
    .unwrap();
    std::fs::write(
        dir.join("fixtures/typo.json"),
        r#"{ "operation": "check", "expected": { "ok": true } }"#,
    )
    .unwrap();

    let out = connector(&["test", "--dir", dir.to_str().unwrap()], tmp.path());
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let text = stdout(&out);
    for expected in [
        "ok      check\n",
        "FAILED  send\n",
        "fixtures/send.json: the result differs from `expect` (- expected, + actual):\n",
        "          $.status\n            - \"sent\"\n            + \"queued\"\n",
        "        actual result: {",
        "        http: POST /v1/send → 200 (fixtures/http/send.json)\n",
        "        log: info: send: calling the provider\n",
        "FAILED  typo\n",
        "fixtures/typo.json: unknown field `expected`",
        "test result: FAILED. 2 passed; 2 failed",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} missing from:\n{text}"
        );
    }
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("building first"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn unknown_ids_categories_and_hubs_are_one_line_and_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    for (args, message) in [
        (
            &["new", "Acme", "--category", "notification"][..],
            "patchbay: invalid connector id: `Acme` is not a valid identifier",
        ),
        (
            &["new", "acme", "--category", "email"][..],
            "patchbay: unknown category `email`: expected one of payment, shipping, communication, notification, storage, data_sync, webhook",
        ),
        (
            &["new", "acme", "--category", "payment", "--hub", "payments"][..],
            "patchbay: unknown hub `payments`: expected one of payment_gateways,",
        ),
        (
            &["new", "acme", "--category", "payment", "--hub", "data_sync"][..],
            "patchbay: hub `data_sync` does not belong to category `payment` (expected payment_gateways)",
        ),
        (
            &["build", "--dir", "."][..],
            "patchbay: . is not a connector folder (no patchbay.toml)",
        ),
    ] {
        let out = connector(args, tmp.path());
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let line = error_line(&out);
        assert!(line.starts_with(message), "{args:?}: {line}");
    }
    assert_eq!(
        std::fs::read_dir(tmp.path()).unwrap().count(),
        0,
        "nothing was written"
    );

    std::fs::create_dir(tmp.path().join("taken")).unwrap();
    std::fs::write(tmp.path().join("taken/notes.txt"), "mine").unwrap();
    let out = connector(
        &["new", "acme", "--category", "storage", "--dir", "taken"],
        tmp.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        error_line(&out).contains("taken already exists and is not an empty folder"),
        "{}",
        error_line(&out)
    );
    assert_eq!(
        std::fs::read_dir(tmp.path().join("taken")).unwrap().count(),
        1
    );
}

#[test]
fn a_data_sync_connector_reads_its_stream_and_is_built_by_test_when_missing() {
    let tmp = tempfile::tempdir().unwrap();
    let created = connector(&["new", "acme_rows", "--category", "data_sync"], tmp.path());
    assert_success("connector new", &created);
    let dir = tmp.path().join("acme_rows");
    let lib = std::fs::read_to_string(dir.join("src/lib.rs")).unwrap();
    assert!(
        lib.contains("fn read(") && !lib.contains("fn invoke("),
        "{lib}"
    );
    assert_success("cargo test", &cargo(&["test", "--locked"], &dir));

    let out = connector(&["test", "--locked"], &dir);
    assert_success("connector test", &out);
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("building first: dist/acme_rows.wasm is missing")
    );
    let text = stdout(&out);
    assert!(
        text.contains("ok      read_records\n") && text.contains("3 passed; 0 failed"),
        "{text}"
    );
}

#[test]
fn the_example_connector_passes_its_unit_tests_and_recorded_cases() {
    let dir = workspace_root().join("connectors-wasm/notification_postmark");
    let locked: &[&str] = if ci() { &["--locked"] } else { &[] };
    let mut args = vec!["test"];
    args.extend_from_slice(locked);
    assert_success("cargo test of the example", &cargo(&args, &dir));

    let mut args = vec!["build", "--dir", dir.to_str().unwrap()];
    args.extend_from_slice(locked);
    assert_success("connector build", &connector(&args, &workspace_root()));
    let out = connector(&["test", "--dir", dir.to_str().unwrap()], &workspace_root());
    assert_success("connector test", &out);
    let text = stdout(&out);
    assert!(
        text.contains("test result: ok. 9 passed; 0 failed"),
        "{text}"
    );

    let checked = patchbay(&["catalog", "check", "patchbay.toml"], &dir)
        .output()
        .unwrap();
    assert_success("catalog check of the example's manifest", &checked);
}

#[test]
fn the_sdk_wit_is_the_hosts() {
    let root = workspace_root();
    let sdk = std::fs::read(root.join("sdk/rust/wit/connector.wit")).unwrap();
    let host = std::fs::read(root.join("crates/patchbay-wasm/wit/connector.wit")).unwrap();
    assert!(
        sdk == host,
        "sdk/rust/wit/connector.wit differs from crates/patchbay-wasm/wit/connector.wit: copy the host's file over the SDK's"
    );
}

#[test]
fn a_scaffold_vendors_the_sdk_exactly_as_in_the_repository() {
    let tmp = tempfile::tempdir().unwrap();
    let created = connector(&["new", "acme_pay", "--category", "payment"], tmp.path());
    assert_success("connector new", &created);
    let sdk = workspace_root().join("sdk/rust");
    let vendored = tmp.path().join("acme_pay/vendor/patchbay-connector-sdk");
    let mut files = Vec::new();
    list_files(&sdk, &sdk, &mut files);
    files.retain(|f| f != "Cargo.lock" && !f.starts_with("target/"));
    let mut copied = Vec::new();
    list_files(&vendored, &vendored, &mut copied);
    assert_eq!(copied, files, "every SDK file is vendored, and only those");
    for f in &files {
        assert!(
            std::fs::read(sdk.join(f)).unwrap() == std::fs::read(vendored.join(f)).unwrap(),
            "{f} differs"
        );
    }
    let lib = std::fs::read_to_string(tmp.path().join("acme_pay/src/lib.rs")).unwrap();
    assert!(
        lib.contains(
            r#"const ACTIONS: &[&str] = &["create_session", "capture", "refund", "get_status"];"#
        ),
        "{lib}"
    );
}

#[test]
fn the_sdk_passes_its_own_tests() {
    let sdk = workspace_root().join("sdk/rust");
    let args: &[&str] = if ci() {
        &["test", "--locked"]
    } else {
        &["test"]
    };
    assert_success("cargo test of the SDK", &cargo(args, &sdk));
}

/// Files under `dir` as `/`-separated paths relative to `root`, sorted.
fn list_files(root: &Path, dir: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            list_files(root, &path, out);
        } else {
            out.push(
                path.strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/"),
            );
        }
    }
    out.sort();
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// The scaffold of `hub`'s category, unchanged, in a running `patchbay
/// serve`: its recorded HTTP exchanges served locally, the tenant's
/// `baseUrl` pointing at them (private addresses allowed by the operator).
fn scaffold_in_serve(
    dir: &Path,
    drive: impl FnOnce(String) -> Drive<'static>,
) -> common::Exercised {
    let peer = recorded_http_server(&dir.join("fixtures/http"));
    exercise_connector(dir, &drive(format!("http://{peer}")))
}

#[test]
fn unchanged_scaffolds_run_inside_serve_check_read_and_invoke() {
    // Notification: check and the hub's `send`.
    let input: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(scaffold().join("fixtures/send.json")).unwrap(),
    )
    .unwrap();
    let seen = scaffold_in_serve(scaffold(), |base| Drive {
        id: "acme_notify",
        credentials: json!({ "apiKey": "test-key", "baseUrl": base }),
        action: Some(("send", input["input"].clone())),
        stream: None,
        serve_flags: &["--connector-allow-private-network"],
    });
    assert_eq!(
        seen.health["result"]["status"], "healthy",
        "{}",
        seen.health
    );
    let sent = seen.action.unwrap();
    assert_eq!(sent["output"], input["expect"], "{sent}");

    // Data sync: check and a read of `records`.
    let tmp = tempfile::tempdir().unwrap();
    assert_success(
        "connector new",
        &connector(&["new", "acme_rows", "--category", "data_sync"], tmp.path()),
    );
    let dir = tmp.path().join("acme_rows");
    assert_success("connector build", &connector(&["build", "--locked"], &dir));
    let seen = scaffold_in_serve(&dir, |base| Drive {
        id: "acme_rows",
        credentials: json!({ "apiKey": "test-key", "baseUrl": base }),
        action: None,
        stream: Some("records"),
        serve_flags: &["--connector-allow-private-network"],
    });
    assert_eq!(
        seen.health["result"]["status"], "healthy",
        "{}",
        seen.health
    );
    let batch = seen.batch.unwrap();
    assert_eq!(
        batch["records"].as_array().map(Vec::len),
        Some(2),
        "{batch}"
    );
    assert_eq!(batch["nextCursor"], "2", "{batch}");
}

/// `keygen`, `pack`, `sign` and `verify` on the example connector's manifest
/// and README (with stand-in component bytes: packing does not load them):
/// the package verifies with the printed public key and is refused, in one
/// line and exit 1, with another publisher's key.
#[test]
fn a_packed_and_signed_connector_verifies_only_with_its_publishers_key() {
    let tmp = tempfile::tempdir().unwrap();
    let example = workspace_root().join("connectors-wasm/notification_postmark");
    let dir = tmp.path().join("postmark");
    std::fs::create_dir_all(dir.join("dist")).unwrap();
    for file in ["patchbay.toml", "README.md"] {
        std::fs::copy(example.join(file), dir.join(file)).unwrap();
    }
    std::fs::write(
        dir.join("dist/notification_postmark.wasm"),
        b"\0asm stand-in",
    )
    .unwrap();

    let keygen = |file: &str| {
        let out = connector(&["keygen", "--out", file], tmp.path());
        assert_success("connector keygen", &out);
        stdout(&out)
            .lines()
            .find_map(|l| l.strip_prefix("public key: "))
            .expect("the public key is printed")
            .to_owned()
    };
    let public = keygen("publisher.key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(tmp.path().join("publisher.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let again = connector(&["keygen", "--out", "publisher.key"], tmp.path());
    assert_eq!(again.status.code(), Some(2));
    assert!(error_line(&again).contains("is never overwritten"));

    let packed = connector(&["pack", "postmark", "--out", "postmark.pbpkg"], tmp.path());
    assert_success("connector pack", &packed);
    let text = stdout(&packed);
    assert!(
        text.contains("packed patchbay-connector-notification-postmark 0.1.0 (publisher Patchbay) into postmark.pbpkg"),
        "{text}"
    );
    let digest = text
        .lines()
        .find_map(|l| l.strip_prefix("digest: "))
        .expect("the digest is printed")
        .to_owned();

    let signed = connector(
        &[
            "sign",
            "postmark.pbpkg",
            "--key",
            "publisher.key",
            "--publisher",
            "Patchbay",
        ],
        tmp.path(),
    );
    assert_success("connector sign", &signed);

    let trust = format!("Patchbay={public}");
    let verified = connector(&["verify", "postmark.pbpkg", "--trust", &trust], tmp.path());
    assert_success("connector verify", &verified);
    let text = stdout(&verified);
    for line in [
        "id: patchbay-connector-notification-postmark\n".to_owned(),
        "version: 0.1.0\n".to_owned(),
        "publisher: Patchbay\n".to_owned(),
        format!("key: {public}\n"),
        "wit: patchbay:connector@0.1.0\n".to_owned(),
        format!("digest: {digest}\n"),
    ] {
        assert!(text.contains(&line), "{line:?} missing from:\n{text}");
    }

    let other = keygen("other.key");
    let refused = connector(
        &[
            "verify",
            "postmark.pbpkg",
            "--trust",
            &format!("Patchbay={other}"),
        ],
        tmp.path(),
    );
    assert_eq!(refused.status.code(), Some(1));
    assert_eq!(
        error_line(&refused),
        format!(
            "patchbay: postmark.pbpkg is refused: the package is signed by key {public}, which is not a trusted publisher key"
        )
    );
    assert!(stdout(&refused).is_empty());
}
