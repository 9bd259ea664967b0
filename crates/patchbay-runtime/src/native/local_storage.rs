//! `storage_local`: files in a directory of the Patchbay server, confined
//! to its root.

use std::path::{Component, Path, PathBuf};

use base64::Engine as _;
use serde_json::{Value, json};

use crate::contract::{CallContext, Connector, ConnectorError, Health};

/// The local-filesystem storage spoke.
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalStorage;

/// The largest object `put` accepts and `get` returns inline.
pub const MAX_OBJECT_BYTES: usize = 16 * 1024 * 1024;

fn root(ctx: &CallContext) -> Result<PathBuf, ConnectorError> {
    let root = ctx
        .credentials
        .text("root")
        .ok_or_else(|| ConnectorError::invalid("no root directory is configured"))?;
    let root = Path::new(root);
    if !root.is_absolute() {
        return Err(ConnectorError::invalid(
            "the root directory must be an absolute path",
        ));
    }
    let canonical = root
        .canonicalize()
        .map_err(|e| ConnectorError::fatal(format!("the root directory is unusable: {e}")))?;
    if !canonical.is_dir() {
        return Err(ConnectorError::fatal("the root is not a directory"));
    }
    Ok(canonical)
}

/// Resolves an object path inside `root`: relative, no `..`, and no
/// symbolic link along the way leading out of the root.
fn inside(root: &Path, path: &str) -> Result<PathBuf, ConnectorError> {
    let rel = Path::new(path);
    if path.is_empty() || path.contains('\0') {
        return Err(ConnectorError::invalid(
            "`path` must be a non-empty relative path",
        ));
    }
    let mut out = root.to_path_buf();
    for c in rel.components() {
        match c {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                return Err(ConnectorError::invalid(
                    "`path` must stay inside the root: no absolute paths and no `..`",
                ));
            }
        }
    }
    // The deepest existing ancestor, resolved, must still be inside the root.
    let mut probe = out.as_path();
    loop {
        if let Ok(real) = probe.canonicalize() {
            if !real.starts_with(root) {
                return Err(ConnectorError::invalid(
                    "`path` leads out of the root through a symbolic link",
                ));
            }
            break;
        }
        match probe.parent() {
            Some(p) => probe = p,
            None => break,
        }
    }
    Ok(out)
}

fn path_arg(input: &Value) -> Result<&str, ConnectorError> {
    input
        .get("path")
        .and_then(Value::as_str)
        .ok_or_else(|| ConnectorError::invalid("`path` (a string) is required"))
}

fn io(e: &std::io::Error) -> ConnectorError {
    match e.kind() {
        std::io::ErrorKind::NotFound => ConnectorError::invalid("no such object"),
        _ => ConnectorError::transient(format!("storage I/O failed: {e}")),
    }
}

fn check_root(root: &Path) -> Result<String, ConnectorError> {
    use std::io::Write as _;
    let probe = root.join(format!(
        ".patchbay-health-{}",
        uuid::Uuid::new_v4().simple()
    ));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .map_err(|e| {
            ConnectorError::fatal(format!("cannot create a file in the root directory: {e}"))
        })?;
    let written = file.write_all(b"patchbay health check\n");
    drop(file);
    let removed = std::fs::remove_file(&probe);
    written
        .map_err(|e| ConnectorError::fatal(format!("cannot write in the root directory: {e}")))?;
    removed.map_err(|e| {
        ConnectorError::fatal(format!("cannot remove a file from the root directory: {e}"))
    })?;
    Ok("the root directory is writable".to_owned())
}

fn list(root: &Path, prefix: &str) -> Result<Vec<Value>, ConnectorError> {
    let mut items = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).map_err(|e| io(&e))? {
            let entry = entry.map_err(|e| io(&e))?;
            let kind = entry.file_type().map_err(|e| io(&e))?;
            let path = entry.path();
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_file() {
                let rel = path
                    .strip_prefix(root)
                    .unwrap_or(&path)
                    .to_string_lossy()
                    .into_owned();
                if rel.starts_with(prefix) && !rel.starts_with(".patchbay-health-") {
                    let size = entry.metadata().map_err(|e| io(&e))?.len();
                    items.push(json!({ "path": rel, "size": size }));
                }
            }
        }
    }
    items.sort_by(|a, b| a["path"].as_str().cmp(&b["path"].as_str()));
    Ok(items)
}

fn act(root: &Path, action: &str, input: &Value) -> Result<Value, ConnectorError> {
    match action {
        "put" => {
            let target = inside(root, path_arg(input)?)?;
            let bytes = match (input.get("content"), input.get("contentBase64")) {
                (Some(Value::String(text)), None) => text.as_bytes().to_vec(),
                (None, Some(Value::String(b64))) => base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .map_err(|_| ConnectorError::invalid("`contentBase64` is not base64"))?,
                _ => {
                    return Err(ConnectorError::invalid(
                        "give exactly one of `content` (text) or `contentBase64`",
                    ));
                }
            };
            if bytes.len() > MAX_OBJECT_BYTES {
                return Err(ConnectorError::invalid("the object is larger than 16 MiB"));
            }
            if let Some(dir) = target.parent() {
                std::fs::create_dir_all(dir).map_err(|e| io(&e))?;
                // Created directories must not have let a link lead out.
                inside(root, path_arg(input)?)?;
            }
            std::fs::write(&target, &bytes).map_err(|e| io(&e))?;
            Ok(json!({ "path": path_arg(input)?, "size": bytes.len() }))
        }
        "get" => {
            let target = inside(root, path_arg(input)?)?;
            let meta = std::fs::metadata(&target).map_err(|e| io(&e))?;
            if !meta.is_file() {
                return Err(ConnectorError::invalid("no such object"));
            }
            if usize::try_from(meta.len()).unwrap_or(usize::MAX) > MAX_OBJECT_BYTES {
                return Err(ConnectorError::invalid("the object is larger than 16 MiB"));
            }
            let bytes = std::fs::read(&target).map_err(|e| io(&e))?;
            Ok(json!({
                "path": path_arg(input)?,
                "size": bytes.len(),
                "contentBase64": base64::engine::general_purpose::STANDARD.encode(&bytes),
            }))
        }
        "delete" => {
            let target = inside(root, path_arg(input)?)?;
            std::fs::remove_file(&target).map_err(|e| io(&e))?;
            Ok(json!({ "path": path_arg(input)?, "deleted": true }))
        }
        "list" => {
            let prefix = input.get("prefix").and_then(Value::as_str).unwrap_or("");
            Ok(json!({ "items": list(root, prefix)? }))
        }
        other => Err(ConnectorError::unsupported(format!("action `{other}`"))),
    }
}

#[async_trait::async_trait]
impl Connector for LocalStorage {
    async fn check(&self, ctx: &CallContext) -> Result<Health, ConnectorError> {
        let root = root(ctx)?;
        let message = tokio::task::spawn_blocking(move || check_root(&root))
            .await
            .map_err(|e| ConnectorError::fatal(format!("the check failed: {e}")))??;
        Ok(Health { ok: true, message })
    }

    async fn invoke(
        &self,
        ctx: &CallContext,
        action: &str,
        input: Value,
    ) -> Result<Value, ConnectorError> {
        let root = root(ctx)?;
        let action = action.to_owned();
        tokio::task::spawn_blocking(move || act(&root, &action, &input))
            .await
            .map_err(|e| ConnectorError::fatal(format!("the action failed: {e}")))?
    }
}
