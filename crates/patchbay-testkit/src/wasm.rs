//! WebAssembly guests for tests: the crates under `connectors-wasm/`, built
//! for `wasm32-wasip2` (the target installed with rustup when missing) into
//! `$CARGO_TARGET_DIR/wasm-guests`, so every test binary shares one build.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// The workspace's root folder: the nearest folder above the working
/// directory (a test's package folder) that holds `Cargo.lock` — found at run
/// time, not with `env!`, which names the checkout the build was made in.
pub fn workspace_root() -> PathBuf {
    let here = std::env::current_dir().expect("a working directory");
    here.ancestors()
        .find(|d| d.join("Cargo.lock").is_file())
        .map_or_else(
            || Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."),
            Path::to_path_buf,
        )
}

/// Where guests are built: beside the host's build, in its own folder.
pub fn guest_target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace_root().join("target"), PathBuf::from)
        .join("wasm-guests")
}

/// Installs the `wasm32-wasip2` target when it is missing.
pub fn ensure_wasm_target() {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("wasm32-wasip2"));
    if !installed {
        let status = Command::new("rustup")
            .args(["target", "add", "wasm32-wasip2"])
            .status();
        assert!(
            status.is_ok_and(|s| s.success()),
            "the wasm32-wasip2 target is missing and `rustup target add wasm32-wasip2` failed"
        );
    }
}

/// Builds the guest crate at `connectors-wasm/<dir>` in release and
/// returns its component's bytes. `artifact` is the file's stem (the crate
/// name with `-` as `_`).
pub fn guest(dir: &str, artifact: &str) -> Vec<u8> {
    // One cargo at a time: parallel tests would fight over the build lock anyway.
    static BUILD: Mutex<()> = Mutex::new(());
    let _one = BUILD
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    ensure_wasm_target();
    let manifest = workspace_root()
        .join("connectors-wasm")
        .join(dir)
        .join("Cargo.toml");
    let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cargo
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--manifest-path",
        ])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(guest_target_dir())
        // The host's own build flags are not the guest's.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS");
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        cargo.arg("--locked");
    }
    let status = cargo
        .status()
        .unwrap_or_else(|e| panic!("running cargo for the guest {dir}: {e}"));
    assert!(status.success(), "building the guest {dir} failed");
    let wasm = guest_target_dir().join(format!("wasm32-wasip2/release/{artifact}.wasm"));
    std::fs::read(&wasm).unwrap_or_else(|e| panic!("reading {}: {e}", wasm.display()))
}

/// The echo test guest (`connectors-wasm/echo`).
pub fn echo_guest() -> &'static [u8] {
    static WASM: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    WASM.get_or_init(|| guest("echo", "patchbay_connector_echo"))
}

/// Writes `<dir>/echo/patchbay.toml` (integration `wasm_echo`: stream
/// `numbers`; actions `echo`, `log`, `credentials`, `spin`; a secret `token`)
/// and `<dir>/echo/echo.wasm`: a connectors folder for `--connectors-dir`.
/// `runtime_extra` is added to the `[integration.runtime]` table.
pub fn echo_connector_dir(dir: &Path, runtime_extra: &str) {
    let sub = dir.join("echo");
    std::fs::create_dir_all(&sub).unwrap();
    let manifest = format!(
        r#"
[integration]
id = "wasm_echo"
title = "Echo (WebAssembly)"
description = "The echo test guest."
category = "data_sync"
hub = "data_sync"
provider_key = "echo"

[integration.runtime]
kind = "wasm"
component = "echo.wasm"
{runtime_extra}
[integration.capabilities]
direction = "bidirectional"
streams = ["numbers"]
actions = ["echo", "log", "credentials", "spin"]

[integration.health_check]
service = "echo"

[[integration.credentials.fields]]
key = "token"
label = "Token"
type = "secret"
required = true
"#
    );
    std::fs::write(sub.join("patchbay.toml"), manifest).unwrap();
    std::fs::write(sub.join("echo.wasm"), echo_guest()).unwrap();
}
