//! `patchbay connector …`: the tooling for third-party connectors written as
//! WebAssembly components with the Rust SDK (`sdk/rust`).
//!
//! * `new` writes a scaffold ([`scaffold`]): a crate depending on the SDK
//!   (vendored, so it builds with only crates.io reachable), the hub's
//!   required actions, unit tests, a manifest and recorded fixtures.
//! * `build` compiles it for `wasm32-wasip2`, copies the component where the
//!   manifest says, and checks that Patchbay's host can load it ([`component`]).
//! * `test` runs the recorded cases of `fixtures/` against the component, with
//!   a local fixture server answering its HTTP requests ([`fixtures`]).
//! * `pack`, `keygen`, `sign` and `verify` make and check connector packages
//!   (`patchbay-package`; [`package`]).
//!
//! Failures are one line on standard error: exit 2 for bad usage (unknown
//! id, category or hub, a folder that is not a connector), 1 for the rest.

mod component;
mod fixtures;
mod package;
mod scaffold;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Subcommand;
use patchbay_core::{Integration, Manifest, RuntimeKind, RuntimeSpec};

#[derive(Debug, Subcommand)]
pub(crate) enum ConnectorCommand {
    /// Create a connector: a Rust crate built with the Patchbay SDK, its
    /// manifest, unit tests and recorded fixtures.
    New {
        /// The integration id (`acme_notify`: lowercase letters, digits, `_`).
        id: String,
        /// `payment`, `shipping`, `communication`, `notification`, `storage`, `data_sync` or `webhook`.
        #[arg(long)]
        category: String,
        /// The hub the connector implements (default: the category's hub).
        #[arg(long)]
        hub: Option<String>,
        /// Where to create it (default: ./<id>); must not exist or be empty.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Build the connector's WebAssembly component into the path its
    /// manifest names (dist/<id>.wasm) and check that Patchbay can load it.
    Build {
        /// The connector's folder (holding patchbay.toml and Cargo.toml).
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// Pass `--locked` to cargo: refuse to change Cargo.lock.
        #[arg(long)]
        locked: bool,
    },
    /// Run the recorded cases of fixtures/*.json against the component
    /// (built first when missing or older than its sources).
    Test {
        /// The connector's folder (holding patchbay.toml and fixtures/).
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// Pass `--locked` to cargo when building first.
        #[arg(long)]
        locked: bool,
    },
    /// Pack a connector folder (patchbay.toml, the components it names,
    /// README.md, LICENSE, icon.svg/icon.png) into one package file.
    Pack {
        /// The connector's folder (holding patchbay.toml).
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// The package file (default: ./<id>-<version>.pbpkg).
        #[arg(long)]
        out: Option<PathBuf>,
        /// The publisher name recorded in the package (default: the manifest's `author`).
        #[arg(long)]
        publisher: Option<String>,
    },
    /// Create a publisher's ed25519 signing key (written with mode 0600)
    /// and print its public key.
    Keygen {
        /// The secret key file to create; an existing file is never overwritten.
        #[arg(long)]
        out: PathBuf,
    },
    /// Sign a package with a publisher's key (replacing any signature).
    Sign {
        /// The package file.
        package: PathBuf,
        /// The secret key file (from `patchbay connector keygen`).
        #[arg(long)]
        key: PathBuf,
        /// Refuse unless the package names this publisher.
        #[arg(long)]
        publisher: Option<String>,
        /// Where to write the signed package (default: in place).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Check a package's signature, digests, WIT version and manifest, and
    /// print what it is.
    Verify {
        /// The package file.
        package: PathBuf,
        /// A trusted publisher key, `<publisher>=<public key base64>`; repeatable.
        #[arg(long = "trust", value_name = "PUBLISHER=KEY")]
        trust: Vec<String>,
    },
}

/// Why a command stopped, and its exit status.
#[derive(Debug)]
struct Failure {
    code: u8,
    error: anyhow::Error,
}

impl Failure {
    /// Bad usage: exit 2.
    fn usage(error: anyhow::Error) -> Failure {
        Failure { code: 2, error }
    }
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Failure {
        Failure { code: 1, error }
    }
}

pub(crate) fn run(command: ConnectorCommand) -> ExitCode {
    let outcome = match command {
        ConnectorCommand::New {
            id,
            category,
            hub,
            dir,
        } => scaffold::run(&id, &category, hub.as_deref(), dir.as_deref()).map(|()| true),
        ConnectorCommand::Build { dir, locked } => ConnectorDir::open(&dir).and_then(|c| {
            component::build(&c, locked)?;
            Ok(true)
        }),
        ConnectorCommand::Test { dir, locked } => {
            ConnectorDir::open(&dir).and_then(|c| fixtures::run(&c, locked))
        }
        ConnectorCommand::Pack {
            dir,
            out,
            publisher,
        } => package::pack(&dir, out.as_deref(), publisher).map(|()| true),
        ConnectorCommand::Keygen { out } => package::keygen(&out).map(|()| true),
        ConnectorCommand::Sign {
            package,
            key,
            publisher,
            out,
        } => package::sign(&package, &key, publisher.as_deref(), out.as_deref()).map(|()| true),
        ConnectorCommand::Verify { package, trust } => {
            package::verify(&package, &trust).map(|()| true)
        }
    };
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        // The command has reported what failed (test cases) on its own.
        Ok(false) => ExitCode::from(1),
        Err(f) => crate::fail(&f.error, f.code),
    }
}

/// A connector's folder and what its manifest says about running it.
#[derive(Debug)]
struct ConnectorDir {
    root: PathBuf,
    integration: Integration,
    /// The component file (`<root>/dist/<id>.wasm`).
    component: PathBuf,
    /// As the manifest wrote it (`dist/<id>.wasm`), for messages.
    component_display: String,
    deadline: Duration,
    memory_bytes: usize,
}

impl ConnectorDir {
    fn open(dir: &Path) -> Result<ConnectorDir, Failure> {
        let manifest_path = dir.join("patchbay.toml");
        if !manifest_path.is_file() {
            return Err(Failure::usage(anyhow::anyhow!(
                "{} is not a connector folder (no patchbay.toml): pass it with --dir, or create one with `patchbay connector new`",
                dir.display()
            )));
        }
        let text = std::fs::read_to_string(&manifest_path)
            .with_context(|| format!("cannot read {}", manifest_path.display()))?;
        let shown = manifest_path.display().to_string();
        let manifest = Manifest::parse(&shown, &text).map_err(|errors| {
            let all: Vec<String> = errors.iter().map(ToString::to_string).collect();
            anyhow::anyhow!("the manifest is invalid: {}", all.join("; "))
        })?;
        if manifest.bundle.is_some() || manifest.integrations.len() != 1 {
            return Err(anyhow::anyhow!(
                "{shown}: a connector folder declares one [integration], not a bundle"
            )
            .into());
        }
        let (_, integration) = manifest
            .integrations
            .into_iter()
            .next()
            .expect("one integration, checked above");
        let runtime = match &integration.runtime {
            Some(r) if r.kind == RuntimeKind::Wasm => r.clone(),
            _ => {
                return Err(anyhow::anyhow!(
                    "{shown}: `patchbay connector` works with WebAssembly connectors; add [integration.runtime] with kind = \"wasm\""
                )
                .into());
            }
        };
        let Some(component) = runtime.component.clone() else {
            return Err(anyhow::anyhow!(
                "{shown}: integration.runtime.component is missing (the default component, like \"dist/{}.wasm\")",
                integration.id
            )
            .into());
        };
        Ok(ConnectorDir {
            root: dir.to_path_buf(),
            component: dir.join(&component),
            component_display: component,
            deadline: Duration::from_secs(u64::from(
                runtime
                    .deadline_secs
                    .unwrap_or(RuntimeSpec::DEFAULT_DEADLINE_SECS),
            )),
            memory_bytes: usize::try_from(
                runtime
                    .memory_mib
                    .unwrap_or(RuntimeSpec::DEFAULT_MEMORY_MIB),
            )
            .unwrap_or(usize::MAX)
            .saturating_mul(1 << 20),
            integration,
        })
    }
}
