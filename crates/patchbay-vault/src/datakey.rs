//! Per-tenant data keys and their wrapping under the master key.
//!
//! Credentials are not encrypted with the master key directly: each tenant
//! has its own data keys, stored only wrapped (encrypted) by a master key.
//! Rotating the master key then means rewrapping a handful of 32-byte keys
//! ([`rewrap_data_key`]) instead of re-encrypting every credential, and a
//! data key leaked from memory exposes one tenant, not all of them. The
//! associated data binds each wrapped key to its tenant and version, so a
//! wrapped key copied to another tenant's row (or relabelled as another
//! version) does not unwrap.

use std::fmt;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::crypto::{self, KEY_LEN};
use crate::error::VaultError;
use crate::master::{KeyId, MasterKey, MasterKeyRing};

/// Domain separator of a wrapped data key's associated data.
const DATA_KEY_DOMAIN: &[u8] = b"patchbay/data-key/v1";

/// A tenant's data key: 32 bytes, zeroized on drop, never stored unwrapped.
/// `Debug` shows only the version.
#[derive(Clone)]
pub struct DataKey {
    version: i64,
    bytes: Zeroizing<[u8; KEY_LEN]>,
}

impl DataKey {
    /// Draws a new data key from the operating system's random number
    /// generator.
    pub fn generate(version: i64) -> Self {
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        getrandom::fill(bytes.as_mut_slice())
            .expect("the operating system's random number generator failed");
        DataKey { version, bytes }
    }

    /// The version the store records next to the wrapped key and in every
    /// credential's associated data.
    pub fn version(&self) -> i64 {
        self.version
    }

    pub(crate) fn bytes(&self) -> &[u8; KEY_LEN] {
        &self.bytes
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataKey")
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// A data key encrypted under a master key: what the store persists.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WrappedKey {
    pub master_key_id: KeyId,
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

fn data_key_aad(tenant_id: &str, version: i64) -> Vec<u8> {
    crypto::aad(&[
        DATA_KEY_DOMAIN,
        tenant_id.as_bytes(),
        &version.to_be_bytes(),
    ])
}

/// Wraps `key` for `tenant_id` under `master` with a fresh random nonce.
pub fn wrap_data_key(master: &MasterKey, tenant_id: &str, key: &DataKey) -> WrappedKey {
    let aad = data_key_aad(tenant_id, key.version);
    let (nonce, ciphertext) = crypto::encrypt(master.bytes(), &aad, key.bytes());
    WrappedKey {
        master_key_id: master.id().clone(),
        nonce: nonce.to_vec(),
        ciphertext,
    }
}

/// Unwraps the data key `version` of `tenant_id`, with whichever key of
/// `ring` it was wrapped by.
pub fn unwrap_data_key(
    ring: &MasterKeyRing,
    tenant_id: &str,
    version: i64,
    wrapped: &WrappedKey,
) -> Result<DataKey, VaultError> {
    let master = ring
        .get(&wrapped.master_key_id)
        .ok_or_else(|| VaultError::UnknownMasterKey {
            key_id: wrapped.master_key_id.clone(),
        })?;
    let aad = data_key_aad(tenant_id, version);
    let fail = || VaultError::Decrypt {
        what: format!(
            "data key of tenant {tenant_id}, version {version} (wrapped by master key {})",
            wrapped.master_key_id
        ),
    };
    let plaintext = crypto::decrypt(master.bytes(), &wrapped.nonce, &aad, &wrapped.ciphertext)
        .ok_or_else(fail)?;
    let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
    if plaintext.len() != KEY_LEN {
        return Err(fail());
    }
    bytes.copy_from_slice(&plaintext);
    Ok(DataKey { version, bytes })
}

/// Unwraps with any key of `ring` and wraps again under the current key:
/// one step of a master key rotation.
pub fn rewrap_data_key(
    ring: &MasterKeyRing,
    tenant_id: &str,
    version: i64,
    wrapped: &WrappedKey,
) -> Result<WrappedKey, VaultError> {
    let key = unwrap_data_key(ring, tenant_id, version, wrapped)?;
    Ok(wrap_data_key(ring.current(), tenant_id, &key))
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE_NO_PAD};

    use super::*;

    fn master(n: u8) -> MasterKey {
        MasterKey::from_bytes([n; KEY_LEN])
    }

    #[test]
    fn wrap_unwrap_round_trip() {
        let ring = MasterKeyRing::from_key(master(1));
        let key = DataKey::generate(3);
        let wrapped = wrap_data_key(ring.current(), "tenant-a", &key);
        assert_eq!(&wrapped.master_key_id, master(1).id());
        assert_eq!(wrapped.nonce.len(), 24);
        assert_eq!(wrapped.ciphertext.len(), KEY_LEN + 16);
        assert_ne!(&wrapped.ciphertext[..KEY_LEN], key.bytes().as_slice());
        let back = unwrap_data_key(&ring, "tenant-a", 3, &wrapped).unwrap();
        assert_eq!(back.version(), 3);
        assert_eq!(back.bytes(), key.bytes());
        // Wrapping twice uses different nonces.
        assert_ne!(
            wrap_data_key(ring.current(), "tenant-a", &key).nonce,
            wrapped.nonce
        );
    }

    #[test]
    fn unwrap_with_other_tenant_or_version_fails() {
        let ring = MasterKeyRing::from_key(master(1));
        let key = DataKey::generate(1);
        let wrapped = wrap_data_key(ring.current(), "tenant-a", &key);
        for (tenant, version) in [("tenant-b", 1), ("tenant-a", 2), ("tenant-a\0", 1), ("", 1)] {
            let err = unwrap_data_key(&ring, tenant, version, &wrapped).unwrap_err();
            let VaultError::Decrypt { what } = &err else {
                panic!("unexpected {err:?}");
            };
            assert!(
                what.contains(&format!("tenant {tenant}, version {version}")),
                "{what}"
            );
        }
        // Tampering with the ciphertext or the nonce fails too.
        let mut bad = wrapped.clone();
        bad.ciphertext[5] ^= 0x80;
        assert!(unwrap_data_key(&ring, "tenant-a", 1, &bad).is_err());
        let mut bad = wrapped.clone();
        bad.nonce[0] ^= 1;
        assert!(unwrap_data_key(&ring, "tenant-a", 1, &bad).is_err());
        // The same master key id but another key (a forged id) fails.
        let mut forged = wrap_data_key(&master(2), "tenant-a", &key);
        forged.master_key_id = master(1).id().clone();
        assert!(matches!(
            unwrap_data_key(&ring, "tenant-a", 1, &forged),
            Err(VaultError::Decrypt { .. })
        ));
    }

    #[test]
    fn unwrap_after_rotation_and_rewrap() {
        let old = MasterKeyRing::from_key(master(1));
        let key = DataKey::generate(7);
        let wrapped = wrap_data_key(old.current(), "t", &key);

        let rotated = old.with_new_current(master(2));
        let back = unwrap_data_key(&rotated, "t", 7, &wrapped).unwrap();
        assert_eq!(back.bytes(), key.bytes());

        let rewrapped = rewrap_data_key(&rotated, "t", 7, &wrapped).unwrap();
        assert_eq!(&rewrapped.master_key_id, master(2).id());
        let finished = rotated.without(master(1).id()).unwrap();
        assert_eq!(
            unwrap_data_key(&finished, "t", 7, &rewrapped)
                .unwrap()
                .bytes(),
            key.bytes()
        );
        // The old wrapping is no longer readable once the old key is gone.
        let err = unwrap_data_key(&finished, "t", 7, &wrapped).unwrap_err();
        assert!(
            matches!(&err, VaultError::UnknownMasterKey { key_id } if key_id == master(1).id())
        );
    }

    #[test]
    fn unknown_master_key_names_the_id() {
        let key = DataKey::generate(1);
        let wrapped = wrap_data_key(&master(9), "t", &key);
        let err =
            unwrap_data_key(&MasterKeyRing::from_key(master(1)), "t", 1, &wrapped).unwrap_err();
        assert!(
            matches!(&err, VaultError::UnknownMasterKey { key_id } if key_id == master(9).id())
        );
        assert!(err.to_string().contains(master(9).id().as_str()), "{err}");
    }

    #[test]
    fn debug_shows_only_the_version() {
        let key = DataKey::generate(42);
        let out = format!("{key:?} {key:#?}");
        assert!(out.contains("42"));
        let bytes = key.bytes();
        let hex: String = crypto::hex(bytes);
        for form in [
            STANDARD.encode(bytes),
            STANDARD_NO_PAD.encode(bytes),
            URL_SAFE_NO_PAD.encode(bytes),
            hex,
            format!("{:?}", bytes.as_slice()),
        ] {
            assert!(!out.contains(&form), "{out}");
        }
        assert_eq!(format!("{key:?}"), "DataKey { version: 42, .. }");
    }
}
