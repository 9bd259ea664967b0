//! Connector packages: one signed archive per connector version, made by
//! `patchbay connector pack` and `sign`, checked by [`verify`] before
//! anything of it is installed (issue 8; the format is described for
//! authors in `docs/packages.md`).
//!
//! # The format (version 1)
//!
//! A package is one gzip-compressed tar file, named `<id>-<version>.pbpkg`,
//! holding regular files only (directories are tolerated, never needed):
//!
//! * `package.json` — what the package is and what it holds:
//!   `{ "format": 1, "id", "version", "publisher", "wit", "files": { path: sha256 hex } }`.
//!   `files` lists every other file of the archive with the SHA-256 of its
//!   bytes. The **content digest** of the package is the SHA-256 of
//!   `package.json`'s exact bytes (shown as `sha256:<hex>`).
//! * `package.sig` — added by [`sign`]: `{ "publisher", "key", "signature" }`,
//!   the ed25519 public key and the signature over `package.json`'s exact
//!   bytes, both standard base64. It is not listed in `files`.
//! * `patchbay.toml` — the manifest (one integration, or a bundle and its
//!   integrations), as the registry reads it.
//! * the WebAssembly components the manifest's `[integration.runtime]`
//!   names (`component` and `components`), at the same relative paths.
//! * optionally `README.md`, `LICENSE`, `icon.svg`, `icon.png`.
//!
//! `id` and `version` are the manifest's `package` and `version` (the
//! bundle's for a bundle); `publisher` is the manifest's `author` unless
//! [`PackOptions::publisher`] says otherwise. `wit` is the WIT world version
//! the components were built against; the host supports [`SUPPORTED_WIT`].
//!
//! Archives are deterministic: entries in a fixed order (`package.json`,
//! `package.sig`, then the other files by path), mtime 0, uid/gid 0, no
//! owner names, mode 0644, gzip header without a time or name. Packing the
//! same folder twice gives the same bytes, and so the same digest.
//!
//! # What [`verify`] refuses
//!
//! Everything is read into memory, never onto disk, under [`Limits`]: the
//! compressed size, the uncompressed stream (counted while reading, so a
//! "zip bomb" stops at the limit), each file's size (checked from its header
//! before it is read) and the number of entries. Entry paths must be
//! relative, normalized and free of `..`; only regular files and directories
//! are accepted (no links or devices); no path may appear twice. Then: the
//! signature must exist, be made by a trusted key trusted for the package's
//! publisher, and verify; every file must be listed with its digest and every
//! listed file present; the WIT version must be supported; the manifest must
//! pass the registry's validation (on its own: clashes with installed
//! connectors are the installer's question) and agree with `package.json`.

use std::collections::{BTreeMap, HashSet};
use std::io::{Read, Write};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use patchbay_core::{Manifest, ManifestSource, Registry};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// The package format this crate writes and reads.
pub const FORMAT: u32 = 1;

/// The connector WIT world this host runs (crates/patchbay-wasm/wit/connector.wit,
/// `package patchbay:connector@0.1.0`). Change it with the WIT file.
pub const SUPPORTED_WIT: &str = "patchbay:connector@0.1.0";

/// The package's description inside the archive.
pub const PACKAGE_JSON: &str = "package.json";
/// The publisher's signature inside the archive.
pub const PACKAGE_SIG: &str = "package.sig";
/// The manifest inside the archive.
pub const MANIFEST: &str = "patchbay.toml";
/// Files packed beside the manifest when the folder has them.
pub const OPTIONAL_FILES: [&str; 4] = ["README.md", "LICENSE", "icon.svg", "icon.png"];
/// A package file's extension.
pub const EXTENSION: &str = "pbpkg";

const MIB: u64 = 1 << 20;

/// How much of a package [`verify`] is willing to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The compressed archive (default 16 MiB).
    pub max_archive_bytes: u64,
    /// The uncompressed tar stream, headers included (default 64 MiB).
    pub max_unpacked_bytes: u64,
    /// One file (default 32 MiB).
    pub max_file_bytes: u64,
    /// Entries in the archive (default 1,000).
    pub max_entries: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_archive_bytes: 16 * MIB,
            max_unpacked_bytes: 64 * MIB,
            max_file_bytes: 32 * MIB,
            max_entries: 1000,
        }
    }
}

/// Why a package could not be made, signed or accepted. Each message is one line.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PackageError {
    #[error("cannot read {path}: {message}")]
    Io { path: String, message: String },
    #[error("the manifest is invalid: {0}")]
    InvalidManifest(String),
    #[error("the manifest names no {field} (set `{field}` in patchbay.toml{where_})")]
    MissingManifestField {
        field: &'static str,
        where_: &'static str,
    },
    #[error(
        "invalid package id `{0}`: 1-100 lowercase letters, digits, `-`, `_` or `.`, starting with a letter or digit"
    )]
    InvalidId(String),
    #[error(
        "invalid publisher name `{0}`: 1-100 characters, no control characters, no `=`, no leading or trailing space"
    )]
    InvalidPublisher(String),
    #[error("the archive is {size} bytes, over the limit of {limit}")]
    ArchiveTooLarge { size: u64, limit: u64 },
    #[error("the archive unpacks to more than {limit} bytes")]
    UnpackedTooLarge { limit: u64 },
    #[error("`{path}` is {size} bytes, over the limit of {limit} for one file")]
    FileTooLarge { path: String, size: u64, limit: u64 },
    #[error("the archive has more than {limit} entries")]
    TooManyEntries { limit: usize },
    #[error("the archive is not a readable package (gzip-compressed tar): {0}")]
    Corrupt(String),
    #[error("archive entry `{0}` is an absolute path")]
    AbsolutePath(String),
    #[error("archive entry `{0}` escapes the package's folder (`..`)")]
    PathEscapes(String),
    #[error("archive entry `{0}` is not a normalized relative path")]
    UnnormalizedPath(String),
    #[error("archive entry `{path}` is a {kind}; packages hold only regular files")]
    NotARegularFile { path: String, kind: &'static str },
    #[error("archive entry `{0}` appears twice")]
    DuplicateEntry(String),
    #[error("the archive has no package.json")]
    NoPackageJson,
    #[error("package.json is invalid: {0}")]
    InvalidPackageJson(String),
    #[error("package format {0} is not supported (this Patchbay reads format 1)")]
    UnsupportedFormat(u64),
    #[error("`{0}` is in the archive but not listed in package.json")]
    UnlistedFile(String),
    #[error("`{0}` is listed in package.json but missing from the archive")]
    MissingFile(String),
    #[error("`{0}` does not match its digest in package.json (the package was altered)")]
    DigestMismatch(String),
    #[error("the package is not signed (no package.sig)")]
    Unsigned,
    #[error("package.sig is invalid: {0}")]
    InvalidSignatureFile(String),
    #[error("package.sig names publisher `{signed}` but package.json names `{publisher}`")]
    SignerMismatch { signed: String, publisher: String },
    #[error("the package is signed by key {key}, which is not a trusted publisher key")]
    UnknownKey { key: String },
    #[error("key {key} is trusted for publisher `{trusted_for}`, not for `{publisher}`")]
    KeyOfOtherPublisher {
        key: String,
        trusted_for: String,
        publisher: String,
    },
    #[error("the signature does not verify against package.json (the package was altered)")]
    BadSignature,
    #[error("the package was built against WIT `{0}`; this Patchbay supports `{SUPPORTED_WIT}`")]
    UnsupportedWit(String),
    #[error("package.json says {field} `{package}` but the manifest says `{manifest}`")]
    ManifestMismatch {
        field: &'static str,
        package: String,
        manifest: String,
    },
    #[error("the manifest's component `{0}` is not in the package")]
    MissingComponent(String),
    #[error("invalid key: {0}")]
    InvalidKey(String),
}

/// A publisher's ed25519 public key; text form: 32 bytes, standard base64.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    pub fn from_base64(text: &str) -> Result<PublicKey, PackageError> {
        let bytes = BASE64
            .decode(text.trim())
            .map_err(|e| PackageError::InvalidKey(format!("not base64: {e}")))?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| {
            PackageError::InvalidKey(format!(
                "an ed25519 public key is 32 bytes, not {}",
                b.len()
            ))
        })?;
        VerifyingKey::from_bytes(&bytes)
            .map(PublicKey)
            .map_err(|_| PackageError::InvalidKey("not an ed25519 public key".to_owned()))
    }
}

impl std::fmt::Display for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&BASE64.encode(self.0.as_bytes()))
    }
}

/// A publisher's ed25519 signing key. Key file text: the 32-byte seed in
/// standard base64 on one line (the CLI writes it with mode 0600).
pub struct SecretKey(SigningKey);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretKey(public {})", self.public())
    }
}

impl SecretKey {
    /// Reads a key file's text.
    pub fn from_text(text: &str) -> Result<SecretKey, PackageError> {
        let bytes = BASE64
            .decode(text.trim())
            .map_err(|e| PackageError::InvalidKey(format!("not base64: {e}")))?;
        let seed: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| {
            PackageError::InvalidKey(format!(
                "an ed25519 secret key file holds a 32-byte seed, not {} bytes",
                b.len()
            ))
        })?;
        Ok(SecretKey(SigningKey::from_bytes(&seed)))
    }

    /// The key file's text (ends with a newline).
    pub fn to_text(&self) -> String {
        format!("{}\n", BASE64.encode(self.0.as_bytes()))
    }

    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }
}

/// A new key pair from the operating system's random number generator.
pub fn generate_key() -> (SecretKey, PublicKey) {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).expect("the operating system's random number generator failed");
    let secret = SecretKey(SigningKey::from_bytes(&seed));
    seed.fill(0);
    let public = secret.public();
    (secret, public)
}

/// A key the operator trusts for one publisher name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedKey {
    pub publisher: String,
    pub key: PublicKey,
}

impl TrustedKey {
    /// Parses `<publisher>=<public key base64>`.
    pub fn parse(text: &str) -> Result<TrustedKey, PackageError> {
        // Publisher names hold no `=`; base64 keys end in `=` padding.
        let Some((publisher, key)) = text.split_once('=') else {
            return Err(PackageError::InvalidKey(
                "a trusted key is `<publisher>=<public key base64>`".to_owned(),
            ));
        };
        check_publisher(publisher)?;
        Ok(TrustedKey {
            publisher: publisher.to_owned(),
            key: PublicKey::from_base64(key)?,
        })
    }
}

/// Choices for [`pack`].
#[derive(Debug, Clone, Default)]
pub struct PackOptions {
    /// The publisher name recorded in `package.json` (default: the manifest's `author`).
    pub publisher: Option<String>,
    /// The WIT world the components were built against (default: [`SUPPORTED_WIT`]).
    pub wit: Option<String>,
}

/// A packed package: its bytes and what it is.
#[derive(Debug, Clone)]
pub struct Packed {
    pub bytes: Vec<u8>,
    pub id: String,
    pub version: String,
    pub publisher: String,
    pub digest: String,
}

impl Packed {
    /// `<id>-<version>.pbpkg`.
    pub fn file_name(&self) -> String {
        file_name(&self.id, &self.version)
    }
}

/// `<id>-<version>.pbpkg`.
pub fn file_name(id: &str, version: &str) -> String {
    format!("{id}-{version}.{EXTENSION}")
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PackageJson {
    format: u32,
    id: String,
    version: String,
    publisher: String,
    wit: String,
    files: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PackageSig {
    publisher: String,
    key: String,
    signature: String,
}

/// What a manifest says about its package.
struct ManifestFacts {
    id: String,
    version: String,
    author: Option<String>,
    components: Vec<String>,
}

fn manifest_facts(text: &str) -> Result<ManifestFacts, PackageError> {
    // The registry's validation of this manifest on its own.
    Registry::load([ManifestSource {
        path: MANIFEST,
        text,
    }])
    .map_err(|errors| {
        let all: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
        PackageError::InvalidManifest(all.join("; "))
    })?;
    let manifest = Manifest::parse(MANIFEST, text).map_err(|errors| {
        let all: Vec<String> = errors.iter().map(ToString::to_string).collect();
        PackageError::InvalidManifest(all.join("; "))
    })?;
    let (package, version, author, where_) = if let Some(b) = &manifest.bundle {
        (&b.package, &b.version, &b.author, " under [bundle]")
    } else {
        let i = &manifest.integrations[0].1;
        (&i.package, &i.version, &i.author, " under [integration]")
    };
    let id = package.clone().ok_or(PackageError::MissingManifestField {
        field: "package",
        where_,
    })?;
    check_id(&id)?;
    let version = version.clone().ok_or(PackageError::MissingManifestField {
        field: "version",
        where_,
    })?;
    let mut components: Vec<String> = manifest
        .integrations
        .iter()
        .filter_map(|(_, i)| i.runtime.as_ref())
        .flat_map(|r| r.component.iter().chain(r.components.values()).cloned())
        .collect();
    components.sort();
    components.dedup();
    Ok(ManifestFacts {
        id,
        version,
        author: author.clone(),
        components,
    })
}

fn check_id(id: &str) -> Result<(), PackageError> {
    let ok = (1..=100).contains(&id.len())
        && id
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && id.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
        });
    if ok {
        Ok(())
    } else {
        Err(PackageError::InvalidId(id.to_owned()))
    }
}

fn check_publisher(name: &str) -> Result<(), PackageError> {
    let ok = (1..=100).contains(&name.chars().count())
        && name.trim() == name
        && !name.chars().any(|c| c.is_control() || c == '=');
    if ok {
        Ok(())
    } else {
        Err(PackageError::InvalidPublisher(name.to_owned()))
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
        out.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
    }
    out
}

/// The content digest shown for a package: `sha256:` and the hex SHA-256 of `package.json`.
fn content_digest(package_json: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(package_json))
}

/// Packs a connector folder: its `patchbay.toml`, the components it names and
/// the optional files present. The manifest must pass the registry's validation.
pub fn pack(dir: &std::path::Path, options: &PackOptions) -> Result<Packed, PackageError> {
    let read = |rel: &str| {
        let path = dir.join(rel);
        std::fs::read(&path).map_err(|e| PackageError::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        })
    };
    let manifest_bytes = read(MANIFEST)?;
    let manifest_text = String::from_utf8(manifest_bytes.clone())
        .map_err(|_| PackageError::InvalidManifest("patchbay.toml is not UTF-8".to_owned()))?;
    let facts = manifest_facts(&manifest_text)?;
    let publisher = match (&options.publisher, &facts.author) {
        (Some(p), _) | (None, Some(p)) => p.clone(),
        (None, None) => {
            return Err(PackageError::MissingManifestField {
                field: "author",
                where_: ", or pass a publisher name",
            });
        }
    };
    check_publisher(&publisher)?;

    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    files.insert(MANIFEST.to_owned(), manifest_bytes);
    for component in &facts.components {
        files.insert(component.clone(), read(component)?);
    }
    for optional in OPTIONAL_FILES {
        let path = dir.join(optional);
        if path.is_file() {
            files.insert(optional.to_owned(), read(optional)?);
        }
    }
    let package_json = PackageJson {
        format: FORMAT,
        id: facts.id,
        version: facts.version,
        publisher,
        wit: options
            .wit
            .clone()
            .unwrap_or_else(|| SUPPORTED_WIT.to_owned()),
        files: files
            .iter()
            .map(|(p, b)| (p.clone(), sha256_hex(b)))
            .collect(),
    };
    let json = package_json_bytes(&package_json);
    let digest = content_digest(&json);
    let bytes = write_archive(&json, None, &files);
    Ok(Packed {
        bytes,
        id: package_json.id,
        version: package_json.version,
        publisher: package_json.publisher,
        digest,
    })
}

fn package_json_bytes(p: &PackageJson) -> Vec<u8> {
    let mut json = serde_json::to_vec_pretty(p).expect("package.json serializes");
    json.push(b'\n');
    json
}

/// Writes the deterministic archive: `package.json`, `package.sig`, then the files by path.
fn write_archive(
    package_json: &[u8],
    package_sig: Option<&[u8]>,
    files: &BTreeMap<String, Vec<u8>>,
) -> Vec<u8> {
    let gz = flate2::GzBuilder::new()
        .operating_system(255)
        .write(Vec::new(), flate2::Compression::best());
    let mut tar = tar::Builder::new(gz);
    tar.mode(tar::HeaderMode::Deterministic);
    let entries = std::iter::once((PACKAGE_JSON, package_json))
        .chain(package_sig.map(|s| (PACKAGE_SIG, s)))
        .chain(files.iter().map(|(p, b)| (p.as_str(), b.as_slice())));
    for (path, data) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        tar.append_data(&mut header, path, data)
            .expect("writing to memory cannot fail");
    }
    let gz = tar.into_inner().expect("writing to memory cannot fail");
    let mut bytes = gz.finish().expect("writing to memory cannot fail");
    bytes.flush().expect("flushing memory cannot fail");
    bytes
}

/// The entries of an archive, read under limits.
struct Unpacked {
    package_json: Option<Vec<u8>>,
    package_sig: Option<Vec<u8>>,
    files: BTreeMap<String, Vec<u8>>,
}

/// Counts the uncompressed bytes and fails once past the limit.
struct Counting<R> {
    inner: R,
    read: u64,
    limit: u64,
    exceeded: bool,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if self.read > self.limit {
            self.exceeded = true;
            return Err(std::io::Error::other("uncompressed size limit"));
        }
        Ok(n)
    }
}

fn unpack(bytes: &[u8], limits: &Limits) -> Result<Unpacked, PackageError> {
    if bytes.len() as u64 > limits.max_archive_bytes {
        return Err(PackageError::ArchiveTooLarge {
            size: bytes.len() as u64,
            limit: limits.max_archive_bytes,
        });
    }
    let mut counting = Counting {
        inner: flate2::read::GzDecoder::new(bytes),
        read: 0,
        limit: limits.max_unpacked_bytes,
        exceeded: false,
    };
    let result = read_entries(&mut counting, limits);
    if counting.exceeded {
        return Err(PackageError::UnpackedTooLarge {
            limit: limits.max_unpacked_bytes,
        });
    }
    result
}

fn corrupt(e: &std::io::Error) -> PackageError {
    PackageError::Corrupt(e.to_string())
}

fn read_entries<R: Read>(reader: R, limits: &Limits) -> Result<Unpacked, PackageError> {
    let mut archive = tar::Archive::new(reader);
    let mut out = Unpacked {
        package_json: None,
        package_sig: None,
        files: BTreeMap::new(),
    };
    let mut seen = HashSet::new();
    let mut count = 0usize;
    for entry in archive.entries().map_err(|e| corrupt(&e))? {
        let mut entry = entry.map_err(|e| corrupt(&e))?;
        count += 1;
        if count > limits.max_entries {
            return Err(PackageError::TooManyEntries {
                limit: limits.max_entries,
            });
        }
        let kind = entry.header().entry_type();
        let raw = entry.path_bytes().into_owned();
        let is_dir = kind.is_dir();
        let path = check_path(&raw, is_dir)?;
        if !seen.insert(path.clone()) {
            return Err(PackageError::DuplicateEntry(path));
        }
        if is_dir {
            continue;
        }
        if kind != tar::EntryType::Regular {
            return Err(PackageError::NotARegularFile {
                path,
                kind: kind_name(kind),
            });
        }
        let size = entry.size();
        if size > limits.max_file_bytes {
            return Err(PackageError::FileTooLarge {
                path,
                size,
                limit: limits.max_file_bytes,
            });
        }
        let mut data = Vec::with_capacity(usize::try_from(size.min(MIB)).unwrap_or(0));
        (&mut entry)
            .take(size)
            .read_to_end(&mut data)
            .map_err(|e| corrupt(&e))?;
        if data.len() as u64 != size {
            return Err(PackageError::Corrupt(format!("`{path}` is truncated")));
        }
        match path.as_str() {
            PACKAGE_JSON => out.package_json = Some(data),
            PACKAGE_SIG => out.package_sig = Some(data),
            _ => {
                out.files.insert(path, data);
            }
        }
    }
    Ok(out)
}

fn kind_name(kind: tar::EntryType) -> &'static str {
    match kind {
        tar::EntryType::Symlink => "symbolic link",
        tar::EntryType::Link => "hard link",
        tar::EntryType::Char | tar::EntryType::Block => "device",
        tar::EntryType::Fifo => "named pipe",
        _ => "special entry",
    }
}

/// An entry path: UTF-8, relative, no empty, `.` or `..` component, no `\`, `:` or control character.
fn check_path(raw: &[u8], is_dir: bool) -> Result<String, PackageError> {
    let shown = String::from_utf8_lossy(raw).into_owned();
    let Ok(path) = std::str::from_utf8(raw) else {
        return Err(PackageError::UnnormalizedPath(shown));
    };
    if path.starts_with('/') {
        return Err(PackageError::AbsolutePath(shown));
    }
    let trimmed = if is_dir {
        path.strip_suffix('/').unwrap_or(path)
    } else {
        path
    };
    if trimmed.split(['/', '\\']).any(|c| c == "..") {
        return Err(PackageError::PathEscapes(shown));
    }
    let ok = !trimmed.is_empty()
        && trimmed.split('/').all(|c| {
            !c.is_empty()
                && c != "."
                && !c
                    .chars()
                    .any(|ch| ch.is_control() || ch == '\\' || ch == ':')
        });
    if ok {
        Ok(trimmed.to_owned())
    } else {
        Err(PackageError::UnnormalizedPath(shown))
    }
}

/// Signs a package with `key`, adding or replacing `package.sig`. With
/// `publisher`, refuses a package whose `package.json` names another one.
pub fn sign(
    bytes: &[u8],
    key: &SecretKey,
    publisher: Option<&str>,
) -> Result<Vec<u8>, PackageError> {
    let unpacked = unpack(bytes, &Limits::default())?;
    let json = unpacked.package_json.ok_or(PackageError::NoPackageJson)?;
    let package = parse_package_json(&json)?;
    if let Some(p) = publisher
        && p != package.publisher
    {
        return Err(PackageError::SignerMismatch {
            signed: p.to_owned(),
            publisher: package.publisher,
        });
    }
    let sig = PackageSig {
        publisher: package.publisher,
        key: key.public().to_string(),
        signature: BASE64.encode(key.0.sign(&json).to_bytes()),
    };
    let mut sig_bytes = serde_json::to_vec_pretty(&sig).expect("package.sig serializes");
    sig_bytes.push(b'\n');
    Ok(write_archive(&json, Some(&sig_bytes), &unpacked.files))
}

fn parse_package_json(json: &[u8]) -> Result<PackageJson, PackageError> {
    match serde_json::from_slice::<PackageJson>(json) {
        Ok(p) if p.format == FORMAT => Ok(p),
        Ok(p) => Err(PackageError::UnsupportedFormat(u64::from(p.format))),
        Err(e) => {
            // A later format may have other fields: say so rather than list them.
            let format = serde_json::from_slice::<serde_json::Value>(json)
                .ok()
                .and_then(|v| v.get("format").and_then(serde_json::Value::as_u64));
            match format {
                Some(f) if f != u64::from(FORMAT) => Err(PackageError::UnsupportedFormat(f)),
                _ => Err(PackageError::InvalidPackageJson(e.to_string())),
            }
        }
    }
}

/// A package that passed [`verify`].
#[derive(Debug, Clone)]
pub struct VerifiedPackage {
    id: String,
    version: String,
    publisher: String,
    wit: String,
    digest: String,
    key: PublicKey,
    manifest: String,
    files: BTreeMap<String, Vec<u8>>,
}

impl VerifiedPackage {
    pub fn id(&self) -> &str {
        &self.id
    }
    pub fn version(&self) -> &str {
        &self.version
    }
    pub fn publisher(&self) -> &str {
        &self.publisher
    }
    /// The WIT world the package was built against.
    pub fn wit(&self) -> &str {
        &self.wit
    }
    /// `sha256:<hex>` of `package.json`.
    pub fn digest(&self) -> &str {
        &self.digest
    }
    /// The key that signed it.
    pub fn key(&self) -> PublicKey {
        self.key
    }
    /// `patchbay.toml`'s text.
    pub fn manifest(&self) -> &str {
        &self.manifest
    }
    /// Every file but `package.json` and `package.sig`, by path.
    pub fn files(&self) -> &BTreeMap<String, Vec<u8>> {
        &self.files
    }
}

/// Checks a package (see the crate's documentation for every refusal) and
/// returns its contents, read into memory only.
pub fn verify(
    bytes: &[u8],
    trusted: &[TrustedKey],
    limits: &Limits,
) -> Result<VerifiedPackage, PackageError> {
    let unpacked = unpack(bytes, limits)?;
    let json = unpacked.package_json.ok_or(PackageError::NoPackageJson)?;
    let package = parse_package_json(&json)?;

    // The signature, before anything else of the content is looked at.
    let sig_bytes = unpacked.package_sig.ok_or(PackageError::Unsigned)?;
    let sig: PackageSig = serde_json::from_slice(&sig_bytes)
        .map_err(|e| PackageError::InvalidSignatureFile(e.to_string()))?;
    if sig.publisher != package.publisher {
        return Err(PackageError::SignerMismatch {
            signed: sig.publisher,
            publisher: package.publisher,
        });
    }
    let key = PublicKey::from_base64(&sig.key)
        .map_err(|e| PackageError::InvalidSignatureFile(e.to_string()))?;
    let mut for_key = trusted.iter().filter(|t| t.key == key).peekable();
    let Some(first) = for_key.peek().copied() else {
        return Err(PackageError::UnknownKey { key: sig.key });
    };
    if !for_key.any(|t| t.publisher == package.publisher) {
        return Err(PackageError::KeyOfOtherPublisher {
            key: sig.key,
            trusted_for: first.publisher.clone(),
            publisher: package.publisher,
        });
    }
    let signature: [u8; 64] = BASE64
        .decode(sig.signature.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| {
            PackageError::InvalidSignatureFile("the signature is not 64 bytes of base64".to_owned())
        })?;
    key.0
        .verify_strict(&json, &ed25519_dalek::Signature::from_bytes(&signature))
        .map_err(|_| PackageError::BadSignature)?;

    // The content, against the signed list.
    for path in unpacked.files.keys() {
        if !package.files.contains_key(path) {
            return Err(PackageError::UnlistedFile(path.clone()));
        }
    }
    for (path, digest) in &package.files {
        let Some(data) = unpacked.files.get(path) else {
            return Err(PackageError::MissingFile(path.clone()));
        };
        if sha256_hex(data) != digest.to_ascii_lowercase() {
            return Err(PackageError::DigestMismatch(path.clone()));
        }
    }

    if package.wit != SUPPORTED_WIT {
        return Err(PackageError::UnsupportedWit(package.wit));
    }

    let manifest = unpacked
        .files
        .get(MANIFEST)
        .ok_or_else(|| PackageError::MissingFile(MANIFEST.to_owned()))?;
    let manifest = String::from_utf8(manifest.clone())
        .map_err(|_| PackageError::InvalidManifest("patchbay.toml is not UTF-8".to_owned()))?;
    let facts = manifest_facts(&manifest)?;
    for (field, in_package, in_manifest) in [
        ("id", &package.id, &facts.id),
        ("version", &package.version, &facts.version),
    ] {
        if in_package != in_manifest {
            return Err(PackageError::ManifestMismatch {
                field,
                package: in_package.clone(),
                manifest: in_manifest.clone(),
            });
        }
    }
    if let Some(missing) = facts
        .components
        .iter()
        .find(|c| !unpacked.files.contains_key(*c))
    {
        return Err(PackageError::MissingComponent(missing.clone()));
    }
    check_publisher(&package.publisher)?;

    Ok(VerifiedPackage {
        digest: content_digest(&json),
        id: package.id,
        version: package.version,
        publisher: package.publisher,
        wit: package.wit,
        key,
        manifest,
        files: unpacked.files,
    })
}
