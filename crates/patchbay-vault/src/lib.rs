//! Only `patchbay-vault` touches key material.
//!
//! Integration credentials (API keys, OAuth client secrets, webhook secrets)
//! are the most sensitive data Patchbay holds, so every operation on the keys
//! that protect them lives in this one small crate that can be reviewed on its
//! own. Everything else in the workspace handles ciphertext, key *ids* and
//! [`SecretString`]s, never raw keys.
//!
//! The scheme is envelope encryption:
//!
//! * a [`MasterKeyRing`] holds the operator's master keys (from a 0600 key
//!   file, see [`MasterKeyRing::load_or_create_file`]); the first key is the
//!   current one, the others are kept so that data wrapped before a rotation
//!   can still be read;
//! * every tenant has [`DataKey`]s, stored only in wrapped form
//!   ([`wrap_data_key`] / [`unwrap_data_key`]), so rotating the master key
//!   rewraps a few small keys instead of re-encrypting every credential;
//! * each credential value is sealed with the tenant's data key
//!   ([`seal`] / [`open`]) and associated data that binds the ciphertext to
//!   its row ([`CredentialAad`]), so a ciphertext copied to another tenant,
//!   organisation or integration does not decrypt;
//! * a [`KeyCheck`] lets the server refuse to start with the wrong master key
//!   instead of failing later on every credential.
//!
//! Secrets that must be *shown* or *logged* go through [`MASK`] and
//! [`Redactor`], so operation logs never hold a secret.
//!
//! Architecture invariant: this crate does no database I/O and no async; the
//! store persists the bytes it returns. Its only file I/O is the master key
//! file. No error message contains key material or plaintext.

mod credential;
mod crypto;
mod datakey;
mod error;
mod keyfile;
mod master;
mod redact;
mod secret;

pub use credential::{CredentialAad, Sealed, open, seal};
pub use datakey::{DataKey, WrappedKey, rewrap_data_key, unwrap_data_key, wrap_data_key};
pub use error::VaultError;
pub use master::{KeyCheck, KeyId, MasterKey, MasterKeyRing};
pub use redact::{REDACTED, Redactor};
pub use secret::{ExposeSecret, MASK, SecretString};
/// Returned by [`open`] and [`MasterKeyRing::to_file_contents`]; re-exported so
/// callers need no direct `zeroize` dependency.
pub use zeroize::Zeroizing;
