//! The master key file: how the operator's keys reach the server.
//!
//! A key file is only as safe as its permissions, so loading refuses a file
//! that group or others can access (with the `chmod` that fixes it) rather
//! than silently using a key that other local users could copy. Files are
//! created with mode 0600 from the first byte (never created and chmod-ed
//! afterwards), and rewritten through a temporary file and a rename so that
//! a crash during a rotation leaves either the old or the new key list,
//! never a truncated file and a lost key.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::crypto;
use crate::error::VaultError;
use crate::master::{MasterKey, MasterKeyRing};

/// Permission bits a key file may have beyond the owner's.
const OTHERS_MASK: u32 = 0o077;

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> VaultError + '_ {
    move |source| VaultError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Creates `path` (which must not exist) with mode 0600, writes `contents`
/// and syncs. If writing fails, the partial file (created by this call, so
/// never someone else's) is removed: a later start would refuse it instead
/// of creating a proper one.
fn create_private(path: &Path, contents: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    let written = file.write_all(contents).and_then(|()| file.sync_all());
    if written.is_err() {
        drop(file);
        let _ = fs::remove_file(path);
    }
    written
}

/// Flushes a directory entry change (create, rename) to disk.
fn sync_parent(path: &Path) -> io::Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(parent)?.sync_all()
}

impl MasterKeyRing {
    /// Loads the key file at `path`, or, if there is none, generates a key
    /// and creates the file with mode 0600. Returns the ring and whether the
    /// file was created. Never overwrites an existing file.
    pub fn load_or_create_file(path: &Path) -> Result<(MasterKeyRing, bool), VaultError> {
        let ring = MasterKeyRing::from_key(MasterKey::generate());
        let contents = ring.to_file_contents();
        match create_private(path, contents.as_bytes()) {
            Ok(()) => {
                sync_parent(path).map_err(io_error(path))?;
                Ok((ring, true))
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                Ok((MasterKeyRing::load_file(path)?, false))
            }
            Err(e) => Err(io_error(path)(e)),
        }
    }

    /// Loads a key file, refusing one that is not a regular file or that
    /// group or others may access.
    pub fn load_file(path: &Path) -> Result<MasterKeyRing, VaultError> {
        // Checked on the path first so that opening a FIFO cannot block.
        let meta = fs::metadata(path).map_err(io_error(path))?;
        if !meta.is_file() {
            return Err(VaultError::NotAFile {
                path: path.to_path_buf(),
            });
        }
        let mut file = File::open(path).map_err(io_error(path))?;
        // Checked again on the open file, which is what is actually read.
        let meta = file.metadata().map_err(io_error(path))?;
        if !meta.is_file() {
            return Err(VaultError::NotAFile {
                path: path.to_path_buf(),
            });
        }
        let mode = meta.permissions().mode() & 0o7777;
        if mode & OTHERS_MASK != 0 {
            return Err(VaultError::InsecureKeyFile {
                path: path.to_path_buf(),
                mode,
            });
        }
        let mut text = Zeroizing::new(String::new());
        file.read_to_string(&mut text).map_err(io_error(path))?;
        MasterKeyRing::parse(&text).map_err(|e| match e {
            VaultError::InvalidKey { entry, why } => VaultError::InvalidKeyFile {
                path: path.to_path_buf(),
                entry,
                why,
            },
            VaultError::NoMasterKey => VaultError::EmptyKeyFile {
                path: path.to_path_buf(),
            },
            other => other,
        })
    }

    /// Replaces the file at `path` with this ring: writes a temporary file
    /// with mode 0600 in the same directory, syncs it, then renames it over
    /// `path`. A crash leaves the old file or the new one, never a mix.
    pub fn write_file_atomically(&self, path: &Path) -> Result<(), VaultError> {
        let tmp = temp_path(path);
        let contents = self.to_file_contents();
        create_private(&tmp, contents.as_bytes()).map_err(io_error(path))?;
        if let Err(e) = fs::rename(&tmp, path) {
            let _ = fs::remove_file(&tmp);
            return Err(io_error(path)(e));
        }
        sync_parent(path).map_err(io_error(path))
    }
}

/// `dir/.name.tmp-<random>` next to `path`, so the rename stays on one
/// file system.
fn temp_path(path: &Path) -> PathBuf {
    let suffix: [u8; 8] = crypto::random();
    let suffix: String = crypto::hex(&suffix);
    let name = path
        .file_name()
        .map_or_else(|| "master.key".into(), |n| n.to_string_lossy());
    path.with_file_name(format!(".{name}.tmp-{suffix}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode_of(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn creates_a_0600_file_and_loads_it_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let (ring, created) = MasterKeyRing::load_or_create_file(&path).unwrap();
        assert!(created);
        assert_eq!(mode_of(&path), 0o600);
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# Patchbay master keys: the first is current"));
        assert_eq!(text.lines().count(), 2);

        let (again, created) = MasterKeyRing::load_or_create_file(&path).unwrap();
        assert!(!created);
        assert_eq!(again.current().id(), ring.current().id());
        assert_eq!(
            MasterKeyRing::load_file(&path).unwrap().current().id(),
            ring.current().id()
        );
        // Nothing else was left in the directory.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn refuses_a_file_others_can_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        MasterKeyRing::load_or_create_file(&path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = MasterKeyRing::load_file(&path).unwrap_err();
        assert!(
            matches!(err, VaultError::InsecureKeyFile { mode: 0o644, .. }),
            "{err:?}"
        );
        let msg = err.to_string();
        let shown = path.display().to_string();
        assert!(
            msg.contains(&format!("master key file {shown} is readable by others")),
            "{msg}"
        );
        assert!(msg.contains("(mode 0644)"), "{msg}");
        assert!(msg.contains(&format!("run chmod 600 {shown}")), "{msg}");
        // load_or_create_file does not bypass the check or overwrite the file.
        assert!(matches!(
            MasterKeyRing::load_or_create_file(&path),
            Err(VaultError::InsecureKeyFile { .. })
        ));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        assert!(MasterKeyRing::load_file(&path).is_err());
        fs::set_permissions(&path, fs::Permissions::from_mode(0o400)).unwrap();
        assert!(MasterKeyRing::load_file(&path).is_ok());
    }

    #[test]
    fn refuses_non_files_and_names_the_path_on_errors() {
        let dir = tempfile::tempdir().unwrap();
        let err = MasterKeyRing::load_file(dir.path()).unwrap_err();
        assert!(matches!(err, VaultError::NotAFile { .. }), "{err:?}");
        assert!(err.to_string().contains(&dir.path().display().to_string()));

        let missing = dir.path().join("missing.key");
        let err = MasterKeyRing::load_file(&missing).unwrap_err();
        assert!(
            matches!(&err, VaultError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
        );
        assert!(err.to_string().contains(&missing.display().to_string()));

        let nowhere = dir.path().join("no-such-dir").join("master.key");
        let err = MasterKeyRing::load_or_create_file(&nowhere).unwrap_err();
        assert!(err.to_string().contains(&nowhere.display().to_string()));
    }

    #[test]
    fn bad_file_contents_name_the_path_not_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let bad = "c2hvcnQga2V5IG9mIDE2IGI="; // 17 bytes, valid base64
        create_private(&path, format!("# keys\n{bad}\n").as_bytes()).unwrap();
        let err = MasterKeyRing::load_file(&path).unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(err, VaultError::InvalidKeyFile { entry: 1, .. }),
            "{msg}"
        );
        assert!(
            msg.contains(&path.display().to_string()) && !msg.contains(bad),
            "{msg}"
        );

        let empty = dir.path().join("empty.key");
        create_private(&empty, b"# nothing here\n").unwrap();
        assert!(matches!(
            MasterKeyRing::load_file(&empty),
            Err(VaultError::EmptyKeyFile { .. })
        ));
    }

    #[test]
    fn write_file_atomically_replaces_the_file_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let (ring, _) = MasterKeyRing::load_or_create_file(&path).unwrap();
        let rotated = ring.with_new_current(MasterKey::generate());
        rotated.write_file_atomically(&path).unwrap();
        assert_eq!(mode_of(&path), 0o600);
        let loaded = MasterKeyRing::load_file(&path).unwrap();
        assert_eq!(
            loaded.ids().collect::<Vec<_>>(),
            rotated.ids().collect::<Vec<_>>()
        );
        assert_eq!(loaded.len(), 2);
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "temporary file left behind"
        );

        // Also creates a file that did not exist, and replaces a 0644 one.
        let fresh = dir.path().join("fresh.key");
        fs::write(&fresh, "old").unwrap();
        fs::set_permissions(&fresh, fs::Permissions::from_mode(0o644)).unwrap();
        rotated.write_file_atomically(&fresh).unwrap();
        assert_eq!(mode_of(&fresh), 0o600);
        assert_eq!(
            MasterKeyRing::load_file(&fresh).unwrap().current().id(),
            rotated.current().id()
        );

        // Failure (missing directory) names the path and leaves nothing.
        let nowhere = dir.path().join("no-such-dir").join("master.key");
        let err = rotated.write_file_atomically(&nowhere).unwrap_err();
        assert!(err.to_string().contains(&nowhere.display().to_string()));
    }
}
