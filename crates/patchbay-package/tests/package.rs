//! Connector packages end to end in memory: pack a folder, sign, verify; and
//! every refusal of `verify`, each with its own error and message.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::path::Path;
use std::time::{Duration, Instant};

use patchbay_package::{
    Limits, PackOptions, PackageError, SUPPORTED_WIT, SecretKey, TrustedKey, generate_key, pack,
    sign, verify,
};
use sha2::{Digest as _, Sha256};

const COMPONENT: &[u8] = b"\0asm\x0d\0\x01\0not a real component, only bytes to pack";

fn manifest(package: &str, version: &str) -> String {
    format!(
        r#"
[integration]
id = "acme_echo"
title = "Acme Echo"
description = "A connector packed by the tests."
category = "data_sync"
hub = "data_sync"
provider_key = "acme"
package = "{package}"
version = "{version}"
author = "Acme Inc."

[integration.runtime]
kind = "wasm"
component = "dist/acme_echo.wasm"

[integration.runtime.components]
"2024-01-01" = "dist/acme_echo_2024.wasm"

[[integration.api_versions]]
id = "2024-01-01"
label = "2024-01-01"
status = "stable"
default = true

[integration.capabilities]
direction = "bidirectional"
streams = ["numbers"]
actions = ["echo"]

[[integration.credentials.fields]]
key = "token"
label = "Token"
type = "secret"
required = true
"#
    )
}

/// A connector folder: the manifest, two components, a README and an icon.
fn connector_dir() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(
        dir.join("patchbay.toml"),
        manifest("acme-echo", "1.2.3").as_bytes(),
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("dist")).unwrap();
    std::fs::write(dir.join("dist/acme_echo.wasm"), COMPONENT).unwrap();
    std::fs::write(dir.join("dist/acme_echo_2024.wasm"), b"\0asm 2024").unwrap();
    std::fs::write(dir.join("README.md"), b"# Acme Echo\n").unwrap();
    std::fs::write(dir.join("icon.svg"), b"<svg/>").unwrap();
    // Not packed: only the manifest's files and the known optional ones are.
    std::fs::write(dir.join("notes.txt"), b"private").unwrap();
    tmp
}

fn key() -> SecretKey {
    SecretKey::from_text("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n").unwrap()
}

fn trusted(publisher: &str, key: &SecretKey) -> Vec<TrustedKey> {
    vec![TrustedKey {
        publisher: publisher.to_owned(),
        key: key.public(),
    }]
}

fn signed_package() -> Vec<u8> {
    let dir = connector_dir();
    let packed = pack(dir.path(), &PackOptions::default()).unwrap();
    sign(&packed.bytes, &key(), None).unwrap()
}

fn sha256_hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    Sha256::digest(bytes)
        .iter()
        .fold(String::new(), |mut s, b| {
            write!(s, "{b:02x}").unwrap();
            s
        })
}

/// The entries of a package, in archive order (for rebuilding altered copies).
fn entries(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
    archive
        .entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let path = String::from_utf8(e.path_bytes().into_owned()).unwrap();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            (path, data)
        })
        .collect()
}

/// One raw tar entry: any path bytes (even `..`), any type.
struct Raw<'a> {
    path: &'a str,
    kind: tar::EntryType,
    data: &'a [u8],
    link: Option<&'a str>,
}

fn file<'a>(path: &'a str, data: &'a [u8]) -> Raw<'a> {
    Raw {
        path,
        kind: tar::EntryType::Regular,
        data,
        link: None,
    }
}

/// A gzip-compressed tar of raw entries, written without the tar crate's path checks.
fn archive(entries: &[Raw<'_>]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    for e in entries {
        let mut header = tar::Header::new_gnu();
        let name = &mut header.as_gnu_mut().unwrap().name;
        name[..e.path.len()].copy_from_slice(e.path.as_bytes());
        header.set_entry_type(e.kind);
        header.set_size(e.data.len() as u64);
        header.set_mode(0o644);
        if let Some(link) = e.link {
            header.set_link_name(link).unwrap();
        }
        header.set_cksum();
        tar.append(&header, e.data).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap()
}

/// A signed package of `files` whose package.json lists them all correctly.
fn crafted(files: &[(&str, &[u8])], wit: &str) -> Vec<u8> {
    let listed: BTreeMap<&str, String> = files.iter().map(|(p, d)| (*p, sha256_hex(d))).collect();
    let json = serde_json::to_vec(&serde_json::json!({
        "format": 1,
        "id": "acme-echo",
        "version": "1.2.3",
        "publisher": "Acme Inc.",
        "wit": wit,
        "files": listed,
    }))
    .unwrap();
    let mut raw = vec![file("package.json", &json)];
    raw.extend(files.iter().map(|(p, d)| file(p, d)));
    sign(&archive(&raw), &key(), None).unwrap()
}

fn good_files() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("patchbay.toml", manifest("acme-echo", "1.2.3").into_bytes()),
        ("dist/acme_echo.wasm", COMPONENT.to_vec()),
        ("dist/acme_echo_2024.wasm", b"\0asm 2024".to_vec()),
    ]
}

#[track_caller]
fn refused(bytes: &[u8], trusted: &[TrustedKey], limits: &Limits) -> PackageError {
    let e = verify(bytes, trusted, limits).expect_err("the package must be refused");
    let message = e.to_string();
    assert!(
        !message.contains('\n') && !message.is_empty(),
        "one line: {message:?}"
    );
    e
}

#[test]
fn pack_sign_verify_round_trip_is_deterministic() {
    let dir = connector_dir();
    let first = pack(dir.path(), &PackOptions::default()).unwrap();
    let second = pack(dir.path(), &PackOptions::default()).unwrap();
    assert_eq!(
        first.bytes, second.bytes,
        "packing twice gives the same bytes"
    );
    assert_eq!(first.file_name(), "acme-echo-1.2.3.pbpkg");
    assert_eq!(first.publisher, "Acme Inc.");

    let signed = sign(&first.bytes, &key(), None).unwrap();
    assert_eq!(signed, sign(&first.bytes, &key(), None).unwrap());
    // Signing again replaces the signature rather than adding one.
    assert_eq!(signed, sign(&signed, &key(), Some("Acme Inc.")).unwrap());

    let verified = verify(&signed, &trusted("Acme Inc.", &key()), &Limits::default()).unwrap();
    assert_eq!(verified.id(), "acme-echo");
    assert_eq!(verified.version(), "1.2.3");
    assert_eq!(verified.publisher(), "Acme Inc.");
    assert_eq!(verified.wit(), SUPPORTED_WIT);
    assert_eq!(verified.key(), key().public());
    assert_eq!(verified.digest(), first.digest);
    assert!(verified.digest().starts_with("sha256:") && verified.digest().len() == 71);
    assert_eq!(verified.manifest(), manifest("acme-echo", "1.2.3"));
    let files: Vec<(&str, &[u8])> = verified
        .files()
        .iter()
        .map(|(p, d)| (p.as_str(), d.as_slice()))
        .collect();
    assert_eq!(
        files,
        [
            ("README.md", b"# Acme Echo\n".as_slice()),
            ("dist/acme_echo.wasm", COMPONENT),
            ("dist/acme_echo_2024.wasm", b"\0asm 2024".as_slice()),
            ("icon.svg", b"<svg/>".as_slice()),
            ("patchbay.toml", manifest("acme-echo", "1.2.3").as_bytes()),
        ]
    );

    // The digest is the SHA-256 of package.json, which lists every file.
    let inside = entries(&signed);
    let names: Vec<&str> = inside.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        names,
        [
            "package.json",
            "package.sig",
            "README.md",
            "dist/acme_echo.wasm",
            "dist/acme_echo_2024.wasm",
            "icon.svg",
            "patchbay.toml"
        ]
    );
    assert_eq!(
        verified.digest(),
        format!("sha256:{}", sha256_hex(&inside[0].1))
    );
    let json: serde_json::Value = serde_json::from_slice(&inside[0].1).unwrap();
    assert_eq!(json["format"], 1);
    assert_eq!(json["wit"], "patchbay:connector@0.1.0");
    assert_eq!(
        json["files"]["dist/acme_echo.wasm"],
        sha256_hex(COMPONENT).as_str()
    );
    let sig: serde_json::Value = serde_json::from_slice(&inside[1].1).unwrap();
    assert_eq!(sig["publisher"], "Acme Inc.");
    assert_eq!(sig["key"], key().public().to_string());
}

#[test]
fn keys_round_trip_through_their_text_forms() {
    let (secret, public) = generate_key();
    let again = SecretKey::from_text(&secret.to_text()).unwrap();
    assert_eq!(again.public(), public);
    assert!(secret.to_text().ends_with('\n') && secret.to_text().lines().count() == 1);
    let trusted = TrustedKey::parse(&format!("Acme Inc.={public}")).unwrap();
    assert_eq!(trusted.publisher, "Acme Inc.");
    assert_eq!(trusted.key, public);
    assert!(matches!(
        TrustedKey::parse("no key here"),
        Err(PackageError::InvalidKey(_))
    ));
    assert!(matches!(
        TrustedKey::parse("Acme=c2hvcnQ="),
        Err(PackageError::InvalidKey(_))
    ));
    // The secret never shows in debug output.
    assert!(!format!("{secret:?}").contains(secret.to_text().trim()));
}

#[test]
fn a_packing_publisher_overrides_the_author_and_signing_checks_it() {
    let dir = connector_dir();
    let options = PackOptions {
        publisher: Some("Acme Labs".to_owned()),
        ..PackOptions::default()
    };
    let packed = pack(dir.path(), &options).unwrap();
    assert_eq!(packed.publisher, "Acme Labs");
    let e = sign(&packed.bytes, &key(), Some("Acme Inc.")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "package.sig names publisher `Acme Inc.` but package.json names `Acme Labs`"
    );
    let signed = sign(&packed.bytes, &key(), Some("Acme Labs")).unwrap();
    verify(&signed, &trusted("Acme Labs", &key()), &Limits::default()).unwrap();
}

#[test]
fn packing_refuses_an_invalid_manifest_a_missing_component_and_a_missing_package_name() {
    let dir = connector_dir();
    std::fs::write(
        dir.path().join("patchbay.toml"),
        manifest("acme-echo", "1.2.3").replace("hub = \"data_sync\"", "hub = \"payments\""),
    )
    .unwrap();
    let e = pack(dir.path(), &PackOptions::default()).unwrap_err();
    assert!(matches!(e, PackageError::InvalidManifest(_)), "{e}");
    assert!(
        e.to_string()
            .starts_with("the manifest is invalid: patchbay.toml"),
        "{e}"
    );

    let dir = connector_dir();
    std::fs::remove_file(dir.path().join("dist/acme_echo_2024.wasm")).unwrap();
    let e = pack(dir.path(), &PackOptions::default()).unwrap_err();
    assert!(matches!(e, PackageError::Io { .. }), "{e}");
    assert!(e.to_string().contains("acme_echo_2024.wasm"), "{e}");

    let dir = connector_dir();
    std::fs::write(
        dir.path().join("patchbay.toml"),
        manifest("acme-echo", "1.2.3").replace("package = \"acme-echo\"\n", ""),
    )
    .unwrap();
    let e = pack(dir.path(), &PackOptions::default()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "the manifest names no package (set `package` in patchbay.toml under [integration])"
    );
}

#[test]
fn a_tampered_file_byte_is_a_digest_mismatch() {
    let signed = signed_package();
    let mut inside = entries(&signed);
    let wasm = inside
        .iter_mut()
        .find(|(p, _)| p == "dist/acme_echo.wasm")
        .unwrap();
    wasm.1[10] ^= 1;
    let raw: Vec<Raw<'_>> = inside.iter().map(|(p, d)| file(p, d)).collect();
    let e = refused(
        &archive(&raw),
        &trusted("Acme Inc.", &key()),
        &Limits::default(),
    );
    assert_eq!(
        e,
        PackageError::DigestMismatch("dist/acme_echo.wasm".into())
    );
    assert_eq!(
        e.to_string(),
        "`dist/acme_echo.wasm` does not match its digest in package.json (the package was altered)"
    );
}

#[test]
fn a_changed_package_json_breaks_the_signature() {
    let signed = signed_package();
    let mut inside = entries(&signed);
    let json = String::from_utf8(inside[0].1.clone()).unwrap();
    inside[0].1 = json.replace("1.2.3", "1.2.4").into_bytes();
    let raw: Vec<Raw<'_>> = inside.iter().map(|(p, d)| file(p, d)).collect();
    let e = refused(
        &archive(&raw),
        &trusted("Acme Inc.", &key()),
        &Limits::default(),
    );
    assert_eq!(e, PackageError::BadSignature);
}

#[test]
fn added_and_removed_files_are_refused() {
    let signed = signed_package();
    let inside = entries(&signed);
    let mut raw: Vec<Raw<'_>> = inside.iter().map(|(p, d)| file(p, d)).collect();
    raw.push(file("extra.wasm", b"smuggled"));
    let e = refused(
        &archive(&raw),
        &trusted("Acme Inc.", &key()),
        &Limits::default(),
    );
    assert_eq!(e, PackageError::UnlistedFile("extra.wasm".into()));

    let raw: Vec<Raw<'_>> = inside
        .iter()
        .filter(|(p, _)| p != "README.md")
        .map(|(p, d)| file(p, d))
        .collect();
    let e = refused(
        &archive(&raw),
        &trusted("Acme Inc.", &key()),
        &Limits::default(),
    );
    assert_eq!(e, PackageError::MissingFile("README.md".into()));
}

#[test]
fn unsigned_unknown_key_and_other_publishers_key_are_refused() {
    let dir = connector_dir();
    let packed = pack(dir.path(), &PackOptions::default()).unwrap();
    let e = refused(
        &packed.bytes,
        &trusted("Acme Inc.", &key()),
        &Limits::default(),
    );
    assert_eq!(e, PackageError::Unsigned);
    assert_eq!(e.to_string(), "the package is not signed (no package.sig)");

    let signed = sign(&packed.bytes, &key(), None).unwrap();
    let (other, _) = generate_key();
    let e = refused(&signed, &trusted("Acme Inc.", &other), &Limits::default());
    assert!(matches!(e, PackageError::UnknownKey { .. }), "{e}");
    assert_eq!(
        e.to_string(),
        format!(
            "the package is signed by key {}, which is not a trusted publisher key",
            key().public()
        )
    );

    let e = refused(&signed, &trusted("Mallory", &key()), &Limits::default());
    assert_eq!(
        e.to_string(),
        format!(
            "key {} is trusted for publisher `Mallory`, not for `Acme Inc.`",
            key().public()
        )
    );
    assert!(matches!(e, PackageError::KeyOfOtherPublisher { .. }));

    // The same key trusted for both names is fine.
    let mut both = trusted("Mallory", &key());
    both.extend(trusted("Acme Inc.", &key()));
    verify(&signed, &both, &Limits::default()).unwrap();
}

#[test]
fn truncated_and_garbage_archives_are_refused() {
    let signed = signed_package();
    let trusted = trusted("Acme Inc.", &key());
    for bytes in [
        &signed[..signed.len() / 2],
        &signed[..5],
        b"not a package at all".as_slice(),
        b"".as_slice(),
    ] {
        let e = refused(bytes, &trusted, &Limits::default());
        assert!(matches!(e, PackageError::Corrupt(_)), "{e}");
        assert!(
            e.to_string()
                .starts_with("the archive is not a readable package (gzip-compressed tar): "),
            "{e}"
        );
    }
    // A valid gzip of something that is no tar with a package.json.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&[0u8; 1024]).unwrap();
    let e = refused(&gz.finish().unwrap(), &trusted, &Limits::default());
    assert_eq!(e, PackageError::NoPackageJson);
}

#[test]
fn escaping_absolute_unnormalized_and_duplicate_paths_are_refused() {
    let trusted = trusted("Acme Inc.", &key());
    let limits = Limits::default();
    let e = refused(&archive(&[file("../evil", b"x")]), &trusted, &limits);
    assert_eq!(e, PackageError::PathEscapes("../evil".into()));
    assert_eq!(
        e.to_string(),
        "archive entry `../evil` escapes the package's folder (`..`)"
    );
    let e = refused(
        &archive(&[file("dist/../../evil", b"x")]),
        &trusted,
        &limits,
    );
    assert!(matches!(e, PackageError::PathEscapes(_)), "{e}");

    let e = refused(&archive(&[file("/etc/passwd", b"x")]), &trusted, &limits);
    assert_eq!(e, PackageError::AbsolutePath("/etc/passwd".into()));
    assert_eq!(
        e.to_string(),
        "archive entry `/etc/passwd` is an absolute path"
    );

    for path in ["./patchbay.toml", "dist//a.wasm", "dist\\a.wasm", "C:evil"] {
        let e = refused(&archive(&[file(path, b"x")]), &trusted, &limits);
        assert_eq!(e, PackageError::UnnormalizedPath(path.into()));
    }

    let e = refused(
        &archive(&[file("README.md", b"a"), file("README.md", b"b")]),
        &trusted,
        &limits,
    );
    assert_eq!(e, PackageError::DuplicateEntry("README.md".into()));
    assert_eq!(e.to_string(), "archive entry `README.md` appears twice");
}

#[test]
fn links_and_devices_are_refused() {
    let trusted = trusted("Acme Inc.", &key());
    for (kind, name) in [
        (tar::EntryType::Symlink, "symbolic link"),
        (tar::EntryType::Link, "hard link"),
        (tar::EntryType::Char, "device"),
        (tar::EntryType::Fifo, "named pipe"),
    ] {
        let e = refused(
            &archive(&[Raw {
                path: "patchbay.toml",
                kind,
                data: b"",
                link: Some("/etc/passwd"),
            }]),
            &trusted,
            &Limits::default(),
        );
        assert_eq!(
            e,
            PackageError::NotARegularFile {
                path: "patchbay.toml".into(),
                kind: name
            }
        );
        assert_eq!(
            e.to_string(),
            format!("archive entry `patchbay.toml` is a {name}; packages hold only regular files")
        );
    }
}

#[test]
fn an_oversized_archive_is_refused_before_it_is_read() {
    let signed = signed_package();
    let limits = Limits {
        max_archive_bytes: 100,
        ..Limits::default()
    };
    let e = refused(&signed, &trusted("Acme Inc.", &key()), &limits);
    assert_eq!(
        e,
        PackageError::ArchiveTooLarge {
            size: signed.len() as u64,
            limit: 100
        }
    );
    // And at the default limit of 16 MiB.
    let big = vec![0u8; 16 * 1024 * 1024 + 1];
    let e = refused(&big, &trusted("Acme Inc.", &key()), &Limits::default());
    assert_eq!(
        e.to_string(),
        "the archive is 16777217 bytes, over the limit of 16777216"
    );
}

/// A gzip of a tar with one entry of `size` zero bytes, streamed (never held in memory).
fn bomb(entries: u64, size: u64) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    for n in 0..entries {
        let mut header = tar::Header::new_gnu();
        header.set_size(size);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(
            &mut header,
            format!("zeros{n}.wasm"),
            std::io::repeat(0).take(size),
        )
        .unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap()
}

#[test]
fn zip_bombs_are_refused_while_reading() {
    let trusted = trusted("Acme Inc.", &key());
    // One 1 GiB entry, compressed to about 1 MiB: refused from its header.
    let one = bomb(1, 1 << 30);
    assert!(one.len() < 16 << 20, "{}", one.len());
    let started = Instant::now();
    let e = refused(&one, &trusted, &Limits::default());
    assert_eq!(
        e.to_string(),
        "`zeros0.wasm` is 1073741824 bytes, over the limit of 33554432 for one file"
    );
    assert!(matches!(e, PackageError::FileTooLarge { .. }));
    assert!(started.elapsed() < Duration::from_secs(5));

    // Many entries, each under the per-file limit, together over the total:
    // the count stops the read at the limit.
    let many = bomb(5, 20 << 20);
    let started = Instant::now();
    let e = refused(&many, &trusted, &Limits::default());
    assert_eq!(e, PackageError::UnpackedTooLarge { limit: 64 << 20 });
    assert_eq!(
        e.to_string(),
        "the archive unpacks to more than 67108864 bytes"
    );
    assert!(started.elapsed() < Duration::from_secs(10));

    let e = refused(
        &bomb(3, 0),
        &trusted,
        &Limits {
            max_entries: 2,
            ..Limits::default()
        },
    );
    assert_eq!(e, PackageError::TooManyEntries { limit: 2 });
}

#[test]
fn an_unsupported_wit_version_is_refused() {
    let files = good_files();
    let files: Vec<(&str, &[u8])> = files.iter().map(|(p, d)| (*p, d.as_slice())).collect();
    let ok = crafted(&files, SUPPORTED_WIT);
    verify(&ok, &trusted("Acme Inc.", &key()), &Limits::default()).unwrap();

    let e = refused(
        &crafted(&files, "patchbay:connector@0.2.0"),
        &trusted("Acme Inc.", &key()),
        &Limits::default(),
    );
    assert_eq!(
        e,
        PackageError::UnsupportedWit("patchbay:connector@0.2.0".into())
    );
    assert_eq!(
        e.to_string(),
        "the package was built against WIT `patchbay:connector@0.2.0`; this Patchbay supports `patchbay:connector@0.1.0`"
    );
}

#[test]
fn an_invalid_manifest_is_refused_with_the_registrys_message() {
    let mut files = good_files();
    files[0].1 = manifest("acme-echo", "1.2.3")
        .replace(
            "provider_key = \"acme\"",
            "provider_key = \"acme\"\nunknown_key = 1",
        )
        .into_bytes();
    let files: Vec<(&str, &[u8])> = files.iter().map(|(p, d)| (*p, d.as_slice())).collect();
    let e = refused(
        &crafted(&files, SUPPORTED_WIT),
        &trusted("Acme Inc.", &key()),
        &Limits::default(),
    );
    assert!(matches!(e, PackageError::InvalidManifest(_)), "{e}");
    assert!(
        e.to_string()
            .starts_with("the manifest is invalid: patchbay.toml:")
            && e.to_string().contains("unknown_key"),
        "{e}"
    );
}

#[test]
fn a_manifest_disagreeing_with_package_json_or_missing_a_component_is_refused() {
    let mut files = good_files();
    files[0].1 = manifest("acme-other", "1.2.3").into_bytes();
    let listed: Vec<(&str, &[u8])> = files.iter().map(|(p, d)| (*p, d.as_slice())).collect();
    let e = refused(
        &crafted(&listed, SUPPORTED_WIT),
        &trusted("Acme Inc.", &key()),
        &Limits::default(),
    );
    assert_eq!(
        e.to_string(),
        "package.json says id `acme-echo` but the manifest says `acme-other`"
    );

    let files = good_files();
    let listed: Vec<(&str, &[u8])> = files[..2].iter().map(|(p, d)| (*p, d.as_slice())).collect();
    let e = refused(
        &crafted(&listed, SUPPORTED_WIT),
        &trusted("Acme Inc.", &key()),
        &Limits::default(),
    );
    assert_eq!(
        e,
        PackageError::MissingComponent("dist/acme_echo_2024.wasm".into())
    );
}

#[test]
fn a_bundle_packs_with_the_bundles_package_and_version() {
    let tmp = tempfile::tempdir().unwrap();
    let dir: &Path = tmp.path();
    let member = manifest("x", "0.0.0");
    let member = member
        .split("[integration.runtime]")
        .next()
        .unwrap()
        .replace("[integration]", "[[integrations]]")
        .replace("package = \"x\"\nversion = \"0.0.0\"\n", "");
    let text = format!(
        r#"
[bundle]
id = "acme"
title = "Acme"
description = "Acme's bundle."
package = "acme-bundle"
version = "2.0.0"
author = "Acme Inc."
{member}
[integrations.capabilities]
direction = "bidirectional"
streams = ["numbers"]
actions = ["echo"]
"#
    );
    std::fs::write(dir.join("patchbay.toml"), text).unwrap();
    let packed = pack(dir, &PackOptions::default()).unwrap();
    assert_eq!(packed.file_name(), "acme-bundle-2.0.0.pbpkg");
    let signed = sign(&packed.bytes, &key(), None).unwrap();
    let verified = verify(&signed, &trusted("Acme Inc.", &key()), &Limits::default()).unwrap();
    assert_eq!(verified.files().len(), 1);
}
