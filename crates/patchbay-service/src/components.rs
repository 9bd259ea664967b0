//! Connectors from folders: `patchbay serve --connectors-dir DIR` adds every
//! `DIR/*/patchbay.toml` (and `DIR/patchbay.toml`) to the catalog, and loads
//! the WebAssembly components their `[integration.runtime]` tables name.
//!
//! Decisions:
//! * A manifest asking for a longer deadline or more memory than the
//!   operator's maximum ([`OperatorLimits`]) is loaded with the maximum, and a
//!   warning says so: the operator's limit wins and the connector still runs.
//! * A component that cannot be read or loaded stops the start with an error
//!   naming the file: an operator who configured a connector wants to know
//!   at once, not at the first call.
//! * Components are resolved relative to their manifest's folder and must
//!   stay inside it (the manifest parser refuses `..` and absolute paths).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use patchbay_core::{Registry, RuntimeKind, RuntimeSpec};
use patchbay_runtime::{ComponentLoader, ComponentSpec, Connector};

use crate::Services;

/// The most any connector may ask for, set by the operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OperatorLimits {
    pub max_deadline: Duration,
    pub max_memory_bytes: usize,
}

impl Default for OperatorLimits {
    fn default() -> OperatorLimits {
        OperatorLimits {
            max_deadline: Duration::from_secs(60),
            max_memory_bytes: 256 << 20,
        }
    }
}

/// One manifest found in a connectors folder.
#[derive(Debug, Clone)]
pub struct LocalManifest {
    /// The manifest file.
    pub path: PathBuf,
    /// Its text.
    pub text: String,
}

impl LocalManifest {
    /// The folder its components are relative to.
    pub fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }

    /// The path as error messages and the catalog show it.
    pub fn display_path(&self) -> String {
        self.path.display().to_string()
    }
}

/// Finds the manifests in `dirs`: each folder's own `patchbay.toml` and
/// those of its immediate subfolders, in name order.
pub fn read_connector_dirs(dirs: &[PathBuf]) -> Result<Vec<LocalManifest>, String> {
    let mut found = Vec::new();
    for dir in dirs {
        let entries = std::fs::read_dir(dir)
            .map_err(|e| format!("cannot read connectors folder {}: {e}", dir.display()))?;
        let mut candidates = vec![dir.join("patchbay.toml")];
        let mut subdirs: Vec<PathBuf> = entries
            .filter_map(std::result::Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
        subdirs.sort();
        candidates.extend(subdirs.into_iter().map(|d| d.join("patchbay.toml")));
        for path in candidates {
            if !path.is_file() {
                continue;
            }
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            found.push(LocalManifest { path, text });
        }
    }
    Ok(found)
}

/// A loaded component: what it is, and the connector to register.
pub type Loaded = (LoadedComponent, Arc<dyn Connector>);

/// What one loaded component is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedComponent {
    pub integration_id: String,
    /// `None`: for every API version without its own component.
    pub api_version: Option<String>,
    pub file: PathBuf,
    pub deadline: Duration,
    pub memory_bytes: usize,
    /// The manifest asked for more than the operator allows.
    pub clamped: bool,
}

/// The limits a component runs under: its manifest's, within the operator's.
fn limits_of(spec: &RuntimeSpec, max: OperatorLimits) -> (Duration, usize, bool) {
    let asked_deadline = Duration::from_secs(u64::from(
        spec.deadline_secs
            .unwrap_or(RuntimeSpec::DEFAULT_DEADLINE_SECS),
    ));
    let asked_memory =
        spec.memory_mib.unwrap_or(RuntimeSpec::DEFAULT_MEMORY_MIB) as usize * (1 << 20);
    let deadline = asked_deadline.min(max.max_deadline);
    let memory = asked_memory.min(max.max_memory_bytes);
    (
        deadline,
        memory,
        deadline < asked_deadline || memory < asked_memory,
    )
}

/// Loads the components `manifests` name for the integrations of `registry`
/// (which must have been built from them), and returns them ready to
/// register.
pub fn load_components(
    registry: &Registry,
    manifests: &[LocalManifest],
    loader: &dyn ComponentLoader,
    max: OperatorLimits,
) -> Result<Vec<Loaded>, String> {
    let mut out = Vec::new();
    for m in manifests {
        let manifest =
            patchbay_core::Manifest::parse(&m.display_path(), &m.text).map_err(|errs| {
                errs.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            })?;
        for (_, declared) in &manifest.integrations {
            let Some(spec) = &declared.runtime else {
                continue;
            };
            if spec.kind != RuntimeKind::Wasm {
                continue;
            }
            // The registry's view (bundle members inherit their bundle's facts).
            let integration = registry.integration(&declared.id).ok_or_else(|| {
                format!(
                    "{}: `{}` is not in the catalog",
                    m.display_path(),
                    declared.id
                )
            })?;
            let (deadline, memory_bytes, clamped) = limits_of(spec, max);
            let mut files: Vec<(Option<String>, &String)> = spec
                .components
                .iter()
                .map(|(v, f)| (Some(v.clone()), f))
                .collect();
            if let Some(c) = &spec.component {
                files.push((None, c));
            }
            for (api_version, file) in files {
                let path = m.dir().join(file);
                let bytes = std::fs::read(&path).map_err(|e| {
                    format!(
                        "{}: cannot read the component {} of `{}`: {e}",
                        m.display_path(),
                        path.display(),
                        declared.id
                    )
                })?;
                let component_spec = ComponentSpec {
                    integration_id: declared.id.clone(),
                    deadline,
                    memory_bytes,
                    network_hosts: integration.network_hosts.clone(),
                };
                let connector = loader
                    .load(&bytes, &component_spec)
                    .map_err(|e| format!("{}: {}: {e}", m.display_path(), path.display()))?;
                out.push((
                    LoadedComponent {
                        integration_id: declared.id.clone(),
                        api_version,
                        file: path,
                        deadline,
                        memory_bytes,
                        clamped,
                    },
                    connector,
                ));
            }
        }
    }
    Ok(out)
}

impl Services {
    /// Registers loaded components, replacing any connector of the same
    /// integration and version.
    pub fn register_components(&self, loaded: Vec<Loaded>) {
        for (info, connector) in loaded {
            if info.clamped {
                tracing::warn!(
                    integration = %info.integration_id,
                    deadline_ms = info.deadline.as_millis(),
                    memory_mib = info.memory_bytes >> 20,
                    "the connector's manifest asks for more than the operator's maximum; it runs within the maximum"
                );
            }
            tracing::info!(
                integration = %info.integration_id,
                api_version = info.api_version.as_deref().unwrap_or("*"),
                file = %info.file.display(),
                "loaded WebAssembly connector"
            );
            self.register_native(&info.integration_id, info.api_version.as_deref(), connector);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_operators_maximum_wins() {
        let spec = RuntimeSpec {
            kind: RuntimeKind::Wasm,
            component: Some("x.wasm".into()),
            components: std::collections::BTreeMap::new(),
            deadline_secs: Some(120),
            memory_mib: Some(32),
        };
        let max = OperatorLimits {
            max_deadline: Duration::from_secs(30),
            max_memory_bytes: 256 << 20,
        };
        assert_eq!(
            limits_of(&spec, max),
            (Duration::from_secs(30), 32 << 20, true)
        );
        let defaults = RuntimeSpec {
            deadline_secs: None,
            memory_mib: None,
            ..spec
        };
        assert_eq!(
            limits_of(&defaults, max),
            (Duration::from_secs(10), 64 << 20, false)
        );
    }
}
