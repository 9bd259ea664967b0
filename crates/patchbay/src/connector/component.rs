//! `patchbay connector build`: cargo for `wasm32-wasip2`, the component
//! copied where the manifest says, and a load through Patchbay's host.

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::SystemTime;

use anyhow::{Context as _, bail};
use patchbay_wasm::{HostConfig, WasmConnector, WasmHost};

use super::ConnectorDir;

/// The Rust target connectors are built for.
pub(super) const TARGET: &str = "wasm32-wasip2";

/// Builds the component, copies it into place, checks that it loads and
/// prints where it is.
pub(super) fn build(dir: &ConnectorDir, locked: bool) -> anyhow::Result<()> {
    ensure_target()?;
    let built = cargo_build(&dir.root, locked)?;
    if let Some(parent) = dir.component.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    std::fs::copy(&built, &dir.component).with_context(|| {
        format!(
            "cannot copy {} to {}",
            built.display(),
            dir.component.display()
        )
    })?;
    let bytes = std::fs::read(&dir.component)
        .with_context(|| format!("cannot read {}", dir.component.display()))?;
    load(&bytes, dir.memory_bytes)?;
    println!(
        "built {}: {} ({}); it loads in Patchbay's WebAssembly host",
        dir.integration.id,
        shown(&dir.root.join(&dir.component_display)),
        human_size(bytes.len())
    );
    Ok(())
}

/// Compiles the component and resolves its imports against the host's
/// linker, as the server will.
pub(super) fn load(bytes: &[u8], memory_bytes: usize) -> anyhow::Result<WasmConnector> {
    let host = WasmHost::new(&HostConfig {
        max_concurrent_calls: 2,
        max_memory_bytes: memory_bytes.max(1 << 20),
    })
    .map_err(|e| anyhow::anyhow!("cannot start the WebAssembly host: {e:#}"))?;
    let connector = host.load(bytes).map_err(|e| {
        anyhow::anyhow!(
            "the component does not load in Patchbay's host (world patchbay:connector/connector@0.1.0): {e:#}"
        )
    })?;
    Ok(connector.with_memory_limit(memory_bytes))
}

/// Installs the target with rustup when it is missing. Without rustup,
/// cargo reports a missing target itself.
fn ensure_target() -> anyhow::Result<()> {
    let Ok(listed) = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .stderr(Stdio::null())
        .output()
    else {
        return Ok(());
    };
    if !listed.status.success() || String::from_utf8_lossy(&listed.stdout).contains(TARGET) {
        return Ok(());
    }
    eprintln!(
        "patchbay: the Rust target {TARGET} is missing; installing it (rustup target add {TARGET})"
    );
    let added = Command::new("rustup")
        .args(["target", "add", TARGET])
        .status()
        .is_ok_and(|s| s.success());
    if !added {
        bail!(
            "the Rust target {TARGET} is missing and `rustup target add {TARGET}` failed; install it and run again"
        );
    }
    Ok(())
}

/// Runs `cargo build --release --target wasm32-wasip2` in `root` (its
/// messages on standard error) and returns the component it produced.
fn cargo_build(root: &Path, locked: bool) -> anyhow::Result<PathBuf> {
    let manifest = root.join("Cargo.toml");
    if !manifest.is_file() {
        bail!(
            "{} has no Cargo.toml: `patchbay connector build` builds Rust connectors",
            root.display()
        );
    }
    let mut cargo = Command::new("cargo");
    cargo
        .args(["build", "--release", "--target", TARGET])
        .arg("--message-format=json-render-diagnostics")
        // Run in the connector's folder, so its own cargo configuration applies.
        .args(["--manifest-path", "Cargo.toml"])
        .current_dir(root)
        .stdout(Stdio::piped());
    if locked {
        cargo.arg("--locked");
    }
    let mut child = cargo
        .spawn()
        .context("cannot run cargo; install Rust (https://rustup.rs) and run again")?;
    let mut component = None;
    let stdout = child.stdout.take().expect("stdout is piped");
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line.context("reading cargo's output")?;
        let Ok(message) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        let is_cdylib = message["target"]["kind"]
            .as_array()
            .is_some_and(|kinds| kinds.iter().any(|k| k == "cdylib"));
        if message["reason"] == "compiler-artifact" && is_cdylib {
            let wasm = message["filenames"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(serde_json::Value::as_str)
                .find(|f| {
                    Path::new(f)
                        .extension()
                        .is_some_and(|x| x.eq_ignore_ascii_case("wasm"))
                });
            if let Some(wasm) = wasm {
                component = Some(PathBuf::from(wasm));
            }
        }
    }
    let status = child.wait().context("waiting for cargo")?;
    if !status.success() {
        bail!(
            "cargo build failed for {} (its messages are above)",
            root.display()
        );
    }
    component.context(
        "the build produced no WebAssembly component: Cargo.toml's [lib] needs crate-type = [\"cdylib\"]",
    )
}

/// The newest source file of the connector, when it is newer than the
/// component (or the component is missing): why it must be built again.
pub(super) fn stale_because(dir: &ConnectorDir) -> Option<String> {
    let Ok(built) = std::fs::metadata(&dir.component).and_then(|m| m.modified()) else {
        return Some(format!("{} is missing", dir.component_display));
    };
    let mut newest: Option<(SystemTime, PathBuf)> = None;
    newest_source(&dir.root, &dir.root, &mut newest);
    match newest {
        Some((time, path)) if time > built => Some(format!(
            "{} is older than {}",
            dir.component_display,
            path.strip_prefix(&dir.root).unwrap_or(&path).display()
        )),
        _ => None,
    }
}

/// Folders whose files do not go into the component.
const NOT_SOURCES: &[&str] = &["target", "dist", "fixtures", "node_modules"];

fn newest_source(root: &Path, dir: &Path, newest: &mut Option<(SystemTime, PathBuf)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') {
            continue;
        }
        let Ok(meta) = entry.metadata() else {
            continue;
        };
        if meta.is_dir() {
            if !(dir == root && NOT_SOURCES.contains(&name.as_ref())) {
                newest_source(root, &path, newest);
            }
            continue;
        }
        if name.ends_with(".md") || (dir == root && name == "patchbay.toml") {
            continue;
        }
        if let Ok(modified) = meta.modified()
            && newest.as_ref().is_none_or(|(t, _)| modified > *t)
        {
            *newest = Some((modified, path));
        }
    }
}

/// A path for messages, without a leading `./`.
fn shown(path: &Path) -> String {
    let text = path.display().to_string();
    text.strip_prefix("./")
        .map_or_else(|| text.clone(), str::to_owned)
}

#[allow(
    clippy::cast_precision_loss,
    reason = "a file size shown with one decimal"
)]
fn human_size(bytes: usize) -> String {
    if bytes < 1024 {
        format!("{bytes} bytes")
    } else if bytes < 1 << 20 {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    } else {
        format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
    }
}
