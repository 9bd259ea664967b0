//! Discovers the built-in connectors: every folder under `<workspace>/connectors/`
//! holding a `patchbay.toml` is embedded into the binary. Adding a folder adds a
//! connector; there is no list to edit by hand.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

// Build scripts learn their paths from Cargo's environment; that is not configuration.
#[allow(clippy::disallowed_methods)]
fn main() {
    let manifest_dir = PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    );
    let root = manifest_dir
        .join("../..")
        .canonicalize()
        .expect("workspace root");
    let connectors = root.join("connectors");
    // Cargo rescans a directory given here for any change inside it, so a new
    // folder or an edited manifest rebuilds the catalog.
    println!("cargo:rerun-if-changed={}", connectors.display());

    let mut entries: Vec<PathBuf> = std::fs::read_dir(&connectors)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", connectors.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.is_dir())
        .collect();
    entries.sort();

    let mut out = String::from(
        "/// Every built-in manifest: (path relative to the workspace, text).\npub static BUILTIN_MANIFESTS: &[(&str, &str)] = &[\n",
    );
    for dir in entries {
        let manifest = dir.join("patchbay.toml");
        assert!(
            manifest.is_file(),
            "{} is a connector folder without a patchbay.toml; add one or remove the folder",
            dir.display()
        );
        let rel = relative(&manifest, &root);
        writeln!(
            out,
            "    ({rel:?}, include_str!({:?})),",
            manifest.display().to_string()
        )
        .expect("write to string");
    }
    out.push_str("];\n");
    let dest = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"))
        .join("builtin_manifests.rs");
    std::fs::write(&dest, out).unwrap_or_else(|e| panic!("cannot write {}: {e}", dest.display()));
}

fn relative(path: &Path, root: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .to_string_lossy()
        .replace('\\', "/")
}
