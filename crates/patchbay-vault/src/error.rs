//! The one error type of the vault.
//!
//! Errors from this crate end up in server logs and on operators' screens, so
//! every variant names *what* failed (a file path, a key id, the ids of a
//! credential row) and none can carry key bytes or plaintext: variants hold
//! only paths, ids, counts and fixed explanations, never the input that was
//! rejected.

use std::path::PathBuf;

use crate::master::KeyId;

/// Everything that can go wrong while handling keys and secrets.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VaultError {
    /// Reading or writing a key file failed.
    #[error("master key file {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// An entry of a master key list (1-based, counting keys only) is invalid.
    #[error("master key entry {entry} {why}")]
    InvalidKey { entry: usize, why: &'static str },

    /// An entry of a master key file (1-based, counting keys only) is invalid.
    #[error("master key file {}: entry {entry} {why}", path.display())]
    InvalidKeyFile {
        path: PathBuf,
        entry: usize,
        why: &'static str,
    },

    /// A master key list holds no key at all.
    #[error("no master key given (the list is empty or only has comments)")]
    NoMasterKey,

    /// A master key file holds no key at all.
    #[error("master key file {} holds no key", path.display())]
    EmptyKeyFile { path: PathBuf },

    /// The key file is not a regular file (a directory, a device, ...).
    #[error("master key file {} is not a regular file", path.display())]
    NotAFile { path: PathBuf },

    /// The key file can be read or written by users other than its owner.
    #[error(
        "master key file {} is readable by others (mode {mode:04o}); run chmod 600 {}",
        path.display(),
        path.display()
    )]
    InsecureKeyFile { path: PathBuf, mode: u32 },

    /// The key ring does not hold the master key the data was wrapped with.
    #[error(
        "master key {key_id} is not in the key ring (was it removed too early after a rotation?)"
    )]
    UnknownMasterKey { key_id: KeyId },

    /// The last key of a ring cannot be removed.
    #[error("master key {key_id} is the only key in the ring and cannot be removed")]
    LastMasterKey { key_id: KeyId },

    /// The configured master key is not the one the database was set up with.
    #[error("the master key does not match this database (it was set up with key {key_id})")]
    WrongMasterKey { key_id: KeyId },

    /// A stored key id is not 16 lowercase hex characters. The value is not
    /// echoed: a misplaced key could end up where an id was expected.
    #[error("invalid master key id (expected 16 lowercase hex characters)")]
    InvalidKeyId,

    /// Authenticated decryption failed: wrong key, or the data (or the row it
    /// is bound to) was altered. `what` names the thing by its ids.
    #[error("cannot decrypt {what}: wrong key, or the data was altered or moved")]
    Decrypt { what: String },
}
