//! Sealing credential values with a tenant's data key.
//!
//! Each ciphertext is bound to the row it belongs to through associated
//! data (tenant, organisation, integration and data key version). Someone
//! who can write to the database can therefore not move an encrypted API key
//! from one tenant or integration to another and have the server decrypt it
//! there: opening fails instead of returning someone else's secret. Opening
//! never returns unauthenticated plaintext, and the plaintext it returns is
//! zeroized on drop.

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::crypto;
use crate::datakey::DataKey;
use crate::error::VaultError;

/// Domain separator of a credential's associated data.
const CREDENTIAL_DOMAIN: &[u8] = b"patchbay/credential/v1";

/// The row a credential value belongs to; authenticated, not encrypted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CredentialAad<'a> {
    pub tenant_id: &'a str,
    pub organization_id: &'a str,
    pub integration_id: &'a str,
    pub key_version: i64,
}

impl CredentialAad<'_> {
    /// The associated data bytes: the domain and every field, each
    /// length-prefixed, so no choice of ids can collide with another row.
    pub fn to_bytes(&self) -> Vec<u8> {
        crypto::aad(&[
            CREDENTIAL_DOMAIN,
            self.tenant_id.as_bytes(),
            self.organization_id.as_bytes(),
            self.integration_id.as_bytes(),
            &self.key_version.to_be_bytes(),
        ])
    }

    fn describe(&self) -> String {
        format!(
            "credential of tenant {}, organization {}, integration {}",
            self.tenant_id, self.organization_id, self.integration_id
        )
    }
}

/// A sealed credential value: what the store persists.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sealed {
    /// 24 random bytes.
    pub nonce: Vec<u8>,
    /// The encrypted value followed by the 16-byte authentication tag.
    pub ciphertext: Vec<u8>,
}

/// Encrypts `plaintext` under `key`, bound to the row `aad`, with a fresh
/// random nonce.
pub fn seal(key: &DataKey, aad: &CredentialAad<'_>, plaintext: &[u8]) -> Sealed {
    let (nonce, ciphertext) = crypto::encrypt(key.bytes(), &aad.to_bytes(), plaintext);
    Sealed {
        nonce: nonce.to_vec(),
        ciphertext,
    }
}

/// Decrypts a value sealed by [`seal`] for the same key and row. A wrong
/// key, a wrong nonce length, any altered byte or another row all give
/// [`VaultError::Decrypt`] naming the row's ids.
pub fn open(
    key: &DataKey,
    aad: &CredentialAad<'_>,
    nonce: &[u8],
    ciphertext: &[u8],
) -> Result<Zeroizing<Vec<u8>>, VaultError> {
    crypto::decrypt(key.bytes(), nonce, &aad.to_bytes(), ciphertext).ok_or_else(|| {
        VaultError::Decrypt {
            what: aad.describe(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROW: CredentialAad<'static> = CredentialAad {
        tenant_id: "tenant-1",
        organization_id: "org-1",
        integration_id: "shopify",
        key_version: 1,
    };
    const SECRET: &[u8] = b"shpat_0123456789abcdef";

    #[test]
    fn seal_open_round_trip() {
        let key = DataKey::generate(1);
        let sealed = seal(&key, &ROW, SECRET);
        assert_eq!(sealed.nonce.len(), 24);
        assert_eq!(sealed.ciphertext.len(), SECRET.len() + 16);
        assert!(!sealed.ciphertext.windows(SECRET.len()).any(|w| w == SECRET));
        let opened = open(&key, &ROW, &sealed.nonce, &sealed.ciphertext).unwrap();
        assert_eq!(opened.as_slice(), SECRET);
        // Empty values round-trip too.
        let empty = seal(&key, &ROW, b"");
        assert!(
            open(&key, &ROW, &empty.nonce, &empty.ciphertext)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn every_flipped_byte_fails() {
        let key = DataKey::generate(1);
        let sealed = seal(&key, &ROW, SECRET);
        for i in 0..sealed.ciphertext.len() {
            for bit in [0x01u8, 0x80] {
                let mut ct = sealed.ciphertext.clone();
                ct[i] ^= bit;
                assert!(
                    matches!(
                        open(&key, &ROW, &sealed.nonce, &ct),
                        Err(VaultError::Decrypt { .. })
                    ),
                    "ciphertext byte {i}"
                );
            }
        }
        for i in 0..sealed.nonce.len() {
            let mut nonce = sealed.nonce.clone();
            nonce[i] ^= 0x01;
            assert!(
                open(&key, &ROW, &nonce, &sealed.ciphertext).is_err(),
                "nonce byte {i}"
            );
        }
    }

    #[test]
    fn wrong_lengths_and_wrong_key_fail() {
        let key = DataKey::generate(1);
        let sealed = seal(&key, &ROW, SECRET);
        let ct = &sealed.ciphertext;
        assert!(open(&key, &ROW, &sealed.nonce[..12], ct).is_err());
        assert!(open(&key, &ROW, &[sealed.nonce.as_slice(), &[0]].concat(), ct).is_err());
        assert!(open(&key, &ROW, &[], ct).is_err());
        assert!(open(&key, &ROW, &sealed.nonce, &ct[..ct.len() - 1]).is_err());
        assert!(open(&key, &ROW, &sealed.nonce, &[ct.as_slice(), &[0]].concat()).is_err());
        assert!(open(&key, &ROW, &sealed.nonce, &[]).is_err());
        assert!(open(&DataKey::generate(1), &ROW, &sealed.nonce, ct).is_err());
    }

    #[test]
    fn ciphertext_moved_to_another_row_fails() {
        let key = DataKey::generate(1);
        let sealed = seal(&key, &ROW, SECRET);
        let rows = [
            CredentialAad {
                tenant_id: "tenant-2",
                ..ROW
            },
            CredentialAad {
                organization_id: "org-2",
                ..ROW
            },
            CredentialAad {
                integration_id: "stripe",
                ..ROW
            },
            CredentialAad {
                key_version: 2,
                ..ROW
            },
            // Shifting bytes between fields must not collide either.
            CredentialAad {
                tenant_id: "tenant-1o",
                organization_id: "rg-1",
                ..ROW
            },
            CredentialAad {
                organization_id: "org-1shopify",
                integration_id: "",
                ..ROW
            },
        ];
        for row in rows {
            let err = open(&key, &row, &sealed.nonce, &sealed.ciphertext).unwrap_err();
            let msg = err.to_string();
            assert!(
                msg.contains(row.tenant_id) && msg.contains(row.integration_id),
                "{msg}"
            );
            assert!(
                msg.contains(&format!("organization {}", row.organization_id)),
                "{msg}"
            );
            assert!(!msg.contains("shpat_"), "{msg}");
        }
    }

    #[test]
    fn two_seals_of_one_value_differ() {
        let key = DataKey::generate(1);
        let a = seal(&key, &ROW, SECRET);
        let b = seal(&key, &ROW, SECRET);
        assert_ne!(a.nonce, b.nonce);
        assert_ne!(a.ciphertext, b.ciphertext);
    }

    #[test]
    fn aad_bytes_are_length_prefixed() {
        let ab_c = CredentialAad {
            tenant_id: "ab",
            organization_id: "c",
            ..ROW
        };
        let a_bc = CredentialAad {
            tenant_id: "a",
            organization_id: "bc",
            ..ROW
        };
        assert_ne!(ab_c.to_bytes(), a_bc.to_bytes());
        assert!(
            ROW.to_bytes()
                .starts_with(b"\0\0\0\x16patchbay/credential/v1\0\0\0\x08tenant-1")
        );
        assert!(
            ROW.to_bytes()
                .ends_with(&[0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 1])
        );
    }
}
