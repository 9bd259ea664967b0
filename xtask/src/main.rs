//! `cargo xtask <task>`: the project's automation, in Rust.
//!
//! * `test`  — sets up what the tests need (a PostgreSQL installation for the
//!   throwaway clusters the tests start, Chromium and ChromeDriver for the
//!   browser tests, a Python virtualenv with `airbyte-source-faker` for the
//!   Airbyte connector tests) and runs every test of the workspace.
//! * `bench [scenario…]` — builds in release mode and runs the benchmark
//!   harness, writing `target/bench/results.json` and `docs/benchmarks.md`.
// xtask reads its own environment (CARGO, PATH) to drive cargo; that is not product configuration.
#![allow(clippy::disallowed_methods)]

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => test(&args[1..]),
        Some("bench") => bench(&args[1..]),
        _ => Err("usage: cargo xtask <test [cargo test args…] | bench [scenario…]>".to_owned()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root. `cargo run` sets `CARGO_MANIFEST_DIR` when it runs
/// the binary; the compile-time value is only a fallback, because a binary
/// built from another checkout that shares the target directory (and is
/// still fresh there) would otherwise work on that checkout.
fn root() -> PathBuf {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    Path::new(&manifest_dir)
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    c.current_dir(root());
    c
}

fn run(mut c: Command) -> Result<(), String> {
    let shown = format!("{c:?}");
    eprintln!("xtask: running {shown}");
    let status = c.status().map_err(|e| format!("cannot run {shown}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{shown} failed with {status}"))
    }
}

fn have_postgres() -> bool {
    let on_path = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("initdb").is_file()));
    on_path
        || std::fs::read_dir("/usr/lib/postgresql")
            .is_ok_and(|mut d| d.any(|e| e.is_ok_and(|e| e.path().join("bin/initdb").is_file())))
}

fn have_chromedriver() -> bool {
    Path::new("/usr/bin/chromedriver").is_file()
        || std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("chromedriver").is_file()))
}

/// The Airbyte source the Airbyte connector tests run (from the Python Package Index).
const AIRBYTE_FAKER: &str = "airbyte-source-faker==7.2.1";

/// Where the tests find it: `$PATCHBAY_AIRBYTE_VENV`, else
/// `~/.cache/patchbay-airbyte-venv`.
fn airbyte_venv() -> PathBuf {
    std::env::var_os("PATCHBAY_AIRBYTE_VENV").map_or_else(
        || {
            let home = std::env::var_os("HOME").unwrap_or_else(|| ".".into());
            Path::new(&home).join(".cache/patchbay-airbyte-venv")
        },
        PathBuf::from,
    )
}

/// A Python that can make a virtualenv for the faker (3.10-3.12, its
/// supported range).
fn venv_python() -> Option<&'static str> {
    ["python3.12", "python3.11", "python3.10", "python3"]
        .into_iter()
        .find(|py| {
            Command::new(py)
                .args([
                    "-c",
                    "import sys, ensurepip, venv; sys.exit(not (3, 10) <= sys.version_info[:2] < (3, 13))",
                ])
                .output()
                .is_ok_and(|o| o.status.success())
        })
}

/// Creates the faker's virtualenv when it is missing.
fn setup_airbyte(venv: &Path) -> Result<(), String> {
    if venv.join("bin/source-faker").is_file() {
        return Ok(());
    }
    let python = venv_python().ok_or_else(|| {
        format!(
            "{AIRBYTE_FAKER} needs Python 3.10-3.12 with venv (Debian: python3 python3-venv); \
             install it and run again"
        )
    })?;
    eprintln!("xtask: installing {AIRBYTE_FAKER} into {}", venv.display());
    let mut create = Command::new(python);
    create.args(["-m", "venv"]).arg(venv);
    run(create)?;
    let mut install = Command::new(venv.join("bin/pip"));
    install
        .args(["install", "--quiet", "--disable-pip-version-check"])
        .arg(AIRBYTE_FAKER);
    run(install).map_err(|e| format!("{e}; remove {} and run again", venv.display()))
}

/// Installs what the test suites need and is missing from this machine.
fn setup() -> Result<(), String> {
    let mut packages = Vec::new();
    let mut missing = Vec::new();
    if !have_postgres() {
        eprintln!(
            "xtask: PostgreSQL binaries (initdb, postgres) are missing; installing Debian's postgresql package"
        );
        packages.push("postgresql");
        missing.push("PostgreSQL (initdb, pg_ctl, postgres)");
    }
    if !have_chromedriver() {
        eprintln!(
            "xtask: chromedriver is missing; installing Debian's chromium and chromium-driver packages"
        );
        packages.extend(["chromium", "chromium-driver"]);
        missing.push("Chromium and ChromeDriver (chromium, chromedriver)");
    }
    if !airbyte_venv().join("bin/source-faker").is_file() && venv_python().is_none() {
        eprintln!(
            "xtask: no Python with venv for the Airbyte tests; installing Debian's python3 and python3-venv packages"
        );
        packages.extend(["python3", "python3-venv"]);
        missing.push("Python 3.10-3.12 with venv (python3, python3-venv)");
    }
    if !packages.is_empty() {
        let mut update = Command::new("apt-get");
        update.args(["-qq", "update"]);
        run(update)?;
        let mut install = Command::new("apt-get");
        install
            .args(["-qq", "install", "-y", "--no-install-recommends"])
            .args(&packages)
            .env("DEBIAN_FRONTEND", "noninteractive");
        run(install)
            .map_err(|e| format!("{e}; install {} and run again", missing.join(" and ")))?;
    }
    // The WebAssembly connector tests build their guests for this target.
    let mut target = Command::new("rustup");
    target.args(["target", "add", "wasm32-wasip2"]);
    run(target).map_err(|e| format!("{e}; install rustup's wasm32-wasip2 target and run again"))?;
    setup_airbyte(&airbyte_venv())
}

fn test(extra: &[String]) -> Result<(), String> {
    setup()?;
    let mut c = cargo();
    c.args(["test", "--workspace", "--locked"])
        .args(extra)
        .env("PATCHBAY_AIRBYTE_VENV", airbyte_venv());
    run(c)
}

fn bench(scenarios: &[String]) -> Result<(), String> {
    let mut build = cargo();
    build.args([
        "build",
        "--release",
        "--locked",
        "-p",
        "patchbay",
        "-p",
        "patchbay-bench",
    ]);
    run(build)?;
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from);
    let release = target.join("release");
    let out_dir = target.join("bench");
    std::fs::create_dir_all(&out_dir)
        .map_err(|e| format!("cannot create {}: {e}", out_dir.display()))?;
    let json = out_dir.join("results.json");
    let mut bench = Command::new(release.join("patchbay-bench"));
    bench
        .args(scenarios)
        .arg("--bin")
        .arg(release.join("patchbay"))
        .arg("--json")
        .arg(&json);
    let output = bench
        .output()
        .map_err(|e| format!("cannot run the benchmark harness: {e}"))?;
    eprint!("{}", String::from_utf8_lossy(&output.stderr));
    let table = String::from_utf8_lossy(&output.stdout).into_owned();
    print!("{table}");
    if !output.status.success() {
        return Err("the benchmark harness failed".to_owned());
    }
    let doc = root().join("docs/benchmarks.md");
    std::fs::write(&doc, render(&table))
        .map_err(|e| format!("cannot write {}: {e}", doc.display()))?;
    eprintln!("xtask: wrote {}", doc.display());
    Ok(())
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|k| k.parse::<u64>().ok())
        })
        .map_or_else(
            || "unknown memory".to_owned(),
            |kib| format!("{} GiB RAM", kib / 1024 / 1024),
        );
    format!("{cores} cores ({cpu}), {mem}")
}

fn render(table: &str) -> String {
    format!(
        "# Benchmarks\n\n\
         Produced by `cargo xtask bench` (release build, this repository's own harness in\n\
         `crates/patchbay-bench`). Each scenario measures a baseline in the same run and reports\n\
         the ratio, because shared machines are noisy: compare ratios across machines, not raw\n\
         figures. Raw results: `target/bench/results.json`.\n\n\
         Machine: {}.\n\n{table}",
        machine()
    )
}
