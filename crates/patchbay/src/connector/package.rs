//! `patchbay connector pack | keygen | sign | verify`: connector packages
//! (the format is `patchbay-package`'s; docs/packages.md describes it).

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use patchbay_package::{Limits, PackOptions, SecretKey, TrustedKey};

use super::Failure;

/// Packs `dir` into `out` (default: `<id>-<version>.pbpkg` in the working folder).
pub(super) fn pack(
    dir: &Path,
    out: Option<&Path>,
    publisher: Option<String>,
) -> Result<(), Failure> {
    if !dir.join(patchbay_package::MANIFEST).is_file() {
        return Err(Failure::usage(anyhow::anyhow!(
            "{} is not a connector folder (no patchbay.toml)",
            dir.display()
        )));
    }
    let packed = patchbay_package::pack(
        dir,
        &PackOptions {
            publisher,
            ..PackOptions::default()
        },
    )
    .map_err(|e| anyhow::anyhow!("cannot pack {}: {e}", dir.display()))?;
    let out = out.map_or_else(|| PathBuf::from(packed.file_name()), Path::to_path_buf);
    write_replacing(&out, &packed.bytes)?;
    println!(
        "packed {} {} (publisher {}) into {} ({} bytes)",
        packed.id,
        packed.version,
        packed.publisher,
        out.display(),
        packed.bytes.len()
    );
    println!("digest: {}", packed.digest);
    println!(
        "sign it with: patchbay connector sign {} --key <secret key file>",
        out.display()
    );
    Ok(())
}

/// Writes a new secret key file (mode 0600; never over an existing file)
/// and prints the public key.
pub(super) fn keygen(out: &Path) -> Result<(), Failure> {
    let (secret, public) = patchbay_package::generate_key();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(out).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            Failure::usage(anyhow::anyhow!(
                "{} exists; a key file is never overwritten",
                out.display()
            ))
        } else {
            anyhow::anyhow!("cannot create {}: {e}", out.display()).into()
        }
    })?;
    std::io::Write::write_all(&mut file, secret.to_text().as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", out.display()))?;
    println!(
        "wrote the secret key to {} (mode 0600: keep it private)",
        out.display()
    );
    println!("public key: {public}");
    Ok(())
}

/// Signs `package` in place (or into `out`).
pub(super) fn sign(
    package: &Path,
    key: &Path,
    publisher: Option<&str>,
    out: Option<&Path>,
) -> Result<(), Failure> {
    let text = std::fs::read_to_string(key)
        .with_context(|| format!("cannot read the key file {}", key.display()))?;
    let secret = SecretKey::from_text(&text)
        .map_err(|e| Failure::usage(anyhow::anyhow!("{}: {e}", key.display())))?;
    let bytes = read_package(package)?;
    let signed = patchbay_package::sign(&bytes, &secret, publisher)
        .map_err(|e| anyhow::anyhow!("cannot sign {}: {e}", package.display()))?;
    let out = out.unwrap_or(package);
    write_replacing(out, &signed)?;
    println!("signed {} with key {}", out.display(), secret.public());
    Ok(())
}

/// Verifies `package` against the `<publisher>=<key>` pairs of `trust`.
pub(super) fn verify(package: &Path, trust: &[String]) -> Result<(), Failure> {
    let trusted = trust
        .iter()
        .map(|t| TrustedKey::parse(t))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Failure::usage(anyhow::anyhow!("--trust: {e}")))?;
    let bytes = read_package(package)?;
    let verified = patchbay_package::verify(&bytes, &trusted, &Limits::default())
        .map_err(|e| anyhow::anyhow!("{} is refused: {e}", package.display()))?;
    println!("id: {}", verified.id());
    println!("version: {}", verified.version());
    println!("publisher: {}", verified.publisher());
    println!("key: {}", verified.key());
    println!("wit: {}", verified.wit());
    println!("digest: {}", verified.digest());
    Ok(())
}

/// Reads a package file, refusing one over the archive limit unread.
fn read_package(path: &Path) -> Result<Vec<u8>, Failure> {
    let limit = Limits::default().max_archive_bytes;
    let len = std::fs::metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .len();
    if len > limit {
        return Err(anyhow::anyhow!(
            "{} is refused: {}",
            path.display(),
            patchbay_package::PackageError::ArchiveTooLarge { size: len, limit }
        )
        .into());
    }
    Ok(std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?)
}

/// Writes `bytes` to `path` through a temporary file beside it, so a reader
/// never sees half a package.
fn write_replacing(path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, path))
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
