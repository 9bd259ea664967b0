//! Master keys: the operator-held keys that wrap every tenant's data keys.
//!
//! The master key never leaves this crate and is never written to the
//! database; only its [`KeyId`] is, next to each wrapped data key, so the
//! right key of a [`MasterKeyRing`] can be picked after a rotation. The ring
//! is ordered: the first key wraps new data keys, the later ones are only
//! accepted for unwrapping until every data key has been rewrapped. A
//! [`KeyCheck`] stored at setup lets the server tell "wrong master key"
//! apart from "corrupt credential" before it touches any tenant data.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::{
    STANDARD, STANDARD_PAD_INDIFFERENT, URL_SAFE_PAD_INDIFFERENT,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

use crate::crypto::{self, KEY_LEN};
use crate::error::VaultError;

/// Domain separator of the key id hash.
const KEY_ID_DOMAIN: &[u8] = b"patchbay-master-key-id\0";
/// Plaintext of a [`KeyCheck`].
const CHECK_PLAINTEXT: &[u8] = b"patchbay master key check v1";
/// Associated data of a [`KeyCheck`].
const CHECK_AAD: &[u8] = b"patchbay/key-check/v1";
/// Length of a key id in hex characters.
const KEY_ID_LEN: usize = 16;

/// First line of a key file written by Patchbay.
pub(crate) const FILE_HEADER: &str =
    "# Patchbay master keys: the first is current; keep this file secret (mode 0600)";

/// Public identifier of a master key: the first 16 lowercase hex characters
/// of SHA-256 over a domain separator and the key bytes. Safe to store and
/// log; it reveals nothing usable about the key.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct KeyId(String);

impl KeyId {
    fn of(bytes: &[u8; KEY_LEN]) -> Self {
        let digest = Sha256::new()
            .chain_update(KEY_ID_DOMAIN)
            .chain_update(bytes)
            .finalize();
        let id = crypto::hex(&digest[..KEY_ID_LEN / 2]);
        KeyId(id)
    }

    /// Parses a stored key id (16 lowercase hex characters).
    pub fn parse(text: &str) -> Result<Self, VaultError> {
        if text.len() == KEY_ID_LEN && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            Ok(KeyId(text.to_owned()))
        } else {
            Err(VaultError::InvalidKeyId)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for KeyId {
    type Error = VaultError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        KeyId::parse(&value)
    }
}

impl From<KeyId> for String {
    fn from(id: KeyId) -> Self {
        id.0
    }
}

/// A 32-byte master key, zeroized on drop. `Debug` shows only its id.
#[derive(Clone)]
pub struct MasterKey {
    bytes: Zeroizing<[u8; KEY_LEN]>,
    id: KeyId,
}

impl MasterKey {
    /// Draws a new key from the operating system's random number generator.
    pub fn generate() -> Self {
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        getrandom::fill(bytes.as_mut_slice())
            .expect("the operating system's random number generator failed");
        Self::from_zeroizing(bytes)
    }

    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self::from_zeroizing(Zeroizing::new(bytes))
    }

    fn from_zeroizing(bytes: Zeroizing<[u8; KEY_LEN]>) -> Self {
        let id = KeyId::of(&bytes);
        MasterKey { bytes, id }
    }

    pub fn id(&self) -> &KeyId {
        &self.id
    }

    pub(crate) fn bytes(&self) -> &[u8; KEY_LEN] {
        &self.bytes
    }

    /// Decodes one key entry; `entry` is 1-based, for the error message.
    fn decode(text: &str, entry: usize) -> Result<Self, VaultError> {
        // Room for a too-long entry to be reported as "wrong length" rather
        // than as a buffer error; zeroized whatever the outcome.
        let mut buf = Zeroizing::new([0u8; 2 * KEY_LEN]);
        // URL-safe only when the standard alphabet is the problem, so that a
        // too-long standard key is reported as such.
        let decoded = match STANDARD_PAD_INDIFFERENT.decode_slice(text, buf.as_mut_slice()) {
            Err(base64::DecodeSliceError::DecodeError(_)) => {
                URL_SAFE_PAD_INDIFFERENT.decode_slice(text, buf.as_mut_slice())
            }
            other => other,
        };
        match decoded {
            Ok(KEY_LEN) => {
                let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
                bytes.copy_from_slice(&buf[..KEY_LEN]);
                Ok(Self::from_zeroizing(bytes))
            }
            Ok(_) | Err(base64::DecodeSliceError::OutputSliceTooSmall) => {
                Err(VaultError::InvalidKey {
                    entry,
                    why: "is not 32 bytes long (a master key is 32 random bytes, base64-encoded)",
                })
            }
            Err(base64::DecodeSliceError::DecodeError(_)) => Err(VaultError::InvalidKey {
                entry,
                why: "is not valid base64",
            }),
        }
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MasterKey({})", self.id)
    }
}

/// A non-empty, ordered list of master keys without duplicates. The first
/// key is current (wraps new data keys); the others are previous keys still
/// accepted for unwrapping during a rotation.
#[derive(Clone)]
pub struct MasterKeyRing {
    keys: Vec<MasterKey>,
}

impl MasterKeyRing {
    /// A ring holding only `key`.
    pub fn from_key(key: MasterKey) -> Self {
        MasterKeyRing { keys: vec![key] }
    }

    /// A ring of `keys`, the first being current. Refuses an empty list and
    /// duplicates (entries are numbered from 1 in the error).
    pub fn new(keys: Vec<MasterKey>) -> Result<Self, VaultError> {
        if keys.is_empty() {
            return Err(VaultError::NoMasterKey);
        }
        for (i, key) in keys.iter().enumerate() {
            if keys[..i].iter().any(|k| k.id == key.id) {
                return Err(VaultError::InvalidKey {
                    entry: i + 1,
                    why: "repeats an earlier key",
                });
            }
        }
        Ok(MasterKeyRing { keys })
    }

    /// Parses a key list: base64 keys (standard or URL-safe alphabet, padded
    /// or not) separated by newlines and/or commas. Blank entries and lines
    /// starting with `#` are ignored. Errors give the 1-based entry number
    /// and never echo the entry.
    pub fn parse(text: &str) -> Result<Self, VaultError> {
        let mut keys = Vec::new();
        let entries = text
            .lines()
            .map(str::trim)
            .filter(|line| !line.starts_with('#'))
            .flat_map(|line| line.split(','))
            .map(str::trim)
            .filter(|entry| !entry.is_empty());
        for (i, entry) in entries.enumerate() {
            keys.push(MasterKey::decode(entry, i + 1)?);
        }
        Self::new(keys)
    }

    /// The text of a key file: a comment header, then one standard-base64
    /// key per line, current key first. Zeroized on drop.
    pub fn to_file_contents(&self) -> Zeroizing<String> {
        let mut out = Zeroizing::new(String::with_capacity(
            FILE_HEADER.len() + 1 + self.keys.len() * 45,
        ));
        out.push_str(FILE_HEADER);
        out.push('\n');
        for key in &self.keys {
            STANDARD.encode_string(key.bytes(), &mut out);
            out.push('\n');
        }
        out
    }

    /// The key that wraps new data keys.
    pub fn current(&self) -> &MasterKey {
        &self.keys[0]
    }

    pub fn get(&self, id: &KeyId) -> Option<&MasterKey> {
        self.keys.iter().find(|k| &k.id == id)
    }

    /// Ids of all keys, current first.
    pub fn ids(&self) -> impl Iterator<Item = &KeyId> {
        self.keys.iter().map(MasterKey::id)
    }

    /// Number of keys (never zero).
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Always `false`: a ring holds at least one key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// A ring with `key` as the new current key and every existing key kept
    /// after it as a previous key. If `key` is already in the ring it is
    /// moved to the front rather than repeated.
    #[must_use]
    pub fn with_new_current(&self, key: MasterKey) -> MasterKeyRing {
        let mut keys = Vec::with_capacity(self.keys.len() + 1);
        let id = key.id.clone();
        keys.push(key);
        keys.extend(self.keys.iter().filter(|k| k.id != id).cloned());
        MasterKeyRing { keys }
    }

    /// A ring without the key `id` (at the end of a rotation). If `id` is the
    /// current key, the next one becomes current.
    pub fn without(&self, id: &KeyId) -> Result<MasterKeyRing, VaultError> {
        if self.get(id).is_none() {
            return Err(VaultError::UnknownMasterKey { key_id: id.clone() });
        }
        if self.keys.len() == 1 {
            return Err(VaultError::LastMasterKey { key_id: id.clone() });
        }
        let keys = self.keys.iter().filter(|k| &k.id != id).cloned().collect();
        Ok(MasterKeyRing { keys })
    }

    /// A fresh check value under the current key, to store at setup (and
    /// again after a rotation).
    pub fn key_check(&self) -> KeyCheck {
        let key = self.current();
        let (nonce, ciphertext) = crypto::encrypt(key.bytes(), CHECK_AAD, CHECK_PLAINTEXT);
        KeyCheck {
            key_id: key.id.clone(),
            nonce: nonce.to_vec(),
            ciphertext,
        }
    }

    /// Whether this ring holds the key `check` was made with (current or
    /// previous). Fails with [`VaultError::WrongMasterKey`] otherwise.
    pub fn verify_check(&self, check: &KeyCheck) -> Result<(), VaultError> {
        let wrong = || VaultError::WrongMasterKey {
            key_id: check.key_id.clone(),
        };
        let key = self.get(&check.key_id).ok_or_else(wrong)?;
        let plaintext = crypto::decrypt(key.bytes(), &check.nonce, CHECK_AAD, &check.ciphertext)
            .ok_or_else(wrong)?;
        if plaintext.as_slice() == CHECK_PLAINTEXT {
            Ok(())
        } else {
            Err(wrong())
        }
    }
}

impl fmt::Debug for MasterKeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterKeyRing")
            .field("current", &self.keys[0].id)
            .field(
                "previous",
                &self.keys[1..].iter().map(MasterKey::id).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// Proof that a master key is the one a database was set up with: the
/// XChaCha20-Poly1305 encryption of a fixed plaintext under that key. Not
/// secret; the store keeps it as is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyCheck {
    pub key_id: KeyId,
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};

    fn key(n: u8) -> MasterKey {
        MasterKey::from_bytes([n; KEY_LEN])
    }

    /// Bytes whose standard and URL-safe encodings differ (contain `+`/`/`).
    fn awkward_bytes() -> [u8; KEY_LEN] {
        let mut bytes = [0xfbu8; KEY_LEN];
        bytes[0] = 0xff;
        bytes[31] = 0xfe;
        bytes
    }

    #[test]
    fn key_id_is_sha256_prefix_of_domain_and_key() {
        let k = key(1);
        let digest = Sha256::new()
            .chain_update(b"patchbay-master-key-id\0")
            .chain_update([1u8; KEY_LEN])
            .finalize();
        let hex: String = crypto::hex(&digest[..8]);
        assert_eq!(k.id().as_str(), hex);
        assert_eq!(k.id().to_string().len(), 16);
        assert_ne!(key(1).id(), key(2).id());
        assert_eq!(KeyId::parse(&hex).unwrap(), *k.id());
    }

    #[test]
    fn key_id_parse_rejects_malformed() {
        assert!(KeyId::parse("0123456789abcdef").is_ok());
        for bad in [
            "",
            "0123456789ABCDEF",
            "0123456789abcde",
            "0123456789abcdef0",
            "0123456789abcdeg",
        ] {
            assert!(
                matches!(KeyId::parse(bad), Err(VaultError::InvalidKeyId)),
                "{bad}"
            );
        }
        let json = serde_json::to_string(key(3).id()).unwrap();
        let back: KeyId = serde_json::from_str(&json).unwrap();
        assert_eq!(&back, key(3).id());
        assert!(serde_json::from_str::<KeyId>("\"nothex\"").is_err());
    }

    #[test]
    fn parse_accepts_every_base64_form() {
        let bytes = awkward_bytes();
        let expected = MasterKey::from_bytes(bytes).id().clone();
        for engine in [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD] {
            let text = engine.encode(bytes);
            let ring = MasterKeyRing::parse(&text).unwrap();
            assert_eq!(ring.current().id(), &expected, "{text}");
            assert_eq!(ring.len(), 1);
        }
        // The standard and URL-safe forms really differ for these bytes.
        assert_ne!(STANDARD.encode(bytes), URL_SAFE.encode(bytes));
    }

    #[test]
    fn parse_handles_comments_blank_lines_and_commas() {
        let [a, b, c] = [[1u8; 32], [2u8; 32], [3u8; 32]].map(|k| STANDARD.encode(k));
        let text = format!("# header\n\n  {a} , {b}\n# {c} is commented out\n\n{c},\n");
        let ring = MasterKeyRing::parse(&text).unwrap();
        let ids: Vec<_> = ring.ids().cloned().collect();
        assert_eq!(
            ids,
            vec![
                key(1).id().clone(),
                key(2).id().clone(),
                key(3).id().clone()
            ]
        );
        assert_eq!(ring.current().id(), key(1).id());

        let ring = MasterKeyRing::parse(&format!("{a},{b}")).unwrap();
        assert_eq!(ring.len(), 2);
    }

    #[test]
    fn parse_errors_name_the_entry_without_echoing_it() {
        let good = STANDARD.encode([1u8; 32]);
        let short = STANDARD.encode([9u8; 16]);
        let long = STANDARD.encode([9u8; 33]);
        let very_long = STANDARD.encode([9u8; 200]);
        let not_b64 = "zzzz!!notbase64$$zzzz";
        let cases = [
            (format!("{good}\n{short}"), 2, "32 bytes", short.clone()),
            (long.clone(), 1, "32 bytes", long.clone()),
            (
                format!("# c\n{good},{good}x,{very_long}"),
                2,
                "base64",
                format!("{good}x"),
            ),
            (
                format!("{good},{very_long}"),
                2,
                "32 bytes",
                very_long.clone(),
            ),
            (
                format!("{good}\n{not_b64}"),
                2,
                "base64",
                not_b64.to_owned(),
            ),
            (format!("{good}\n{good}"), 2, "repeats", good.clone()),
        ];
        for (text, entry, why, secret) in cases {
            let err = MasterKeyRing::parse(&text).unwrap_err();
            let msg = err.to_string();
            assert!(
                matches!(err, VaultError::InvalidKey { entry: e, .. } if e == entry),
                "{msg}"
            );
            assert!(msg.contains(&format!("entry {entry}")), "{msg}");
            assert!(msg.contains(why), "{msg}");
            assert!(!msg.contains(&secret), "{msg}");
            assert!(!msg.contains(&good), "{msg}");
            assert!(!format!("{err:?}").contains(&secret));
        }
    }

    #[test]
    fn parse_refuses_empty_lists() {
        for text in ["", "\n\n", "# only a comment\n", " , ,\n"] {
            assert!(
                matches!(MasterKeyRing::parse(text), Err(VaultError::NoMasterKey)),
                "{text:?}"
            );
        }
    }

    #[test]
    fn file_contents_round_trip() {
        let ring = MasterKeyRing::from_key(key(1))
            .with_new_current(MasterKey::from_bytes(awkward_bytes()));
        let text = ring.to_file_contents();
        let mut lines = text.lines();
        assert_eq!(
            lines.next(),
            Some("# Patchbay master keys: the first is current; keep this file secret (mode 0600)")
        );
        assert_eq!(
            lines.next(),
            Some(STANDARD.encode(awkward_bytes()).as_str())
        );
        assert_eq!(lines.next(), Some(STANDARD.encode([1u8; 32]).as_str()));
        assert_eq!(lines.next(), None);
        let back = MasterKeyRing::parse(&text).unwrap();
        assert_eq!(
            back.ids().collect::<Vec<_>>(),
            ring.ids().collect::<Vec<_>>()
        );
    }

    #[test]
    fn ring_rotation_helpers() {
        let ring = MasterKeyRing::from_key(key(1));
        let rotated = ring.with_new_current(key(2));
        assert_eq!(rotated.current().id(), key(2).id());
        assert!(rotated.get(key(1).id()).is_some());
        assert_eq!(rotated.len(), 2);
        // Re-adding an existing key moves it to the front, no duplicate.
        let back = rotated.with_new_current(key(1));
        assert_eq!(
            back.ids().collect::<Vec<_>>(),
            vec![key(1).id(), key(2).id()]
        );

        let trimmed = rotated.without(key(1).id()).unwrap();
        assert_eq!(trimmed.ids().collect::<Vec<_>>(), vec![key(2).id()]);
        let err = trimmed.without(key(2).id()).unwrap_err();
        assert!(matches!(err, VaultError::LastMasterKey { .. }));
        assert!(err.to_string().contains(key(2).id().as_str()));
        let err = trimmed.without(key(9).id()).unwrap_err();
        assert!(matches!(err, VaultError::UnknownMasterKey { .. }));
        // Removing the current key promotes the next one.
        assert_eq!(
            rotated.without(key(2).id()).unwrap().current().id(),
            key(1).id()
        );

        assert!(matches!(
            MasterKeyRing::new(vec![]),
            Err(VaultError::NoMasterKey)
        ));
        assert!(matches!(
            MasterKeyRing::new(vec![key(1), key(2), key(1)]),
            Err(VaultError::InvalidKey { entry: 3, .. })
        ));
    }

    #[test]
    fn key_check_verifies_only_with_the_right_key() {
        let ring = MasterKeyRing::from_key(key(1));
        let check = ring.key_check();
        assert_eq!(&check.key_id, key(1).id());
        assert_eq!(check.nonce.len(), 24);
        ring.verify_check(&check).unwrap();

        let other = MasterKeyRing::from_key(key(2));
        let err = other.verify_check(&check).unwrap_err();
        assert!(matches!(&err, VaultError::WrongMasterKey { key_id } if key_id == key(1).id()));
        assert!(err.to_string().contains(key(1).id().as_str()), "{err}");

        // After a rotation the old key is a previous key: still verifies.
        ring.with_new_current(key(2)).verify_check(&check).unwrap();

        // A key that claims the right id but is not the key (forged id).
        let forged = KeyCheck {
            key_id: key(2).id().clone(),
            ..check.clone()
        };
        assert!(matches!(
            other.verify_check(&forged),
            Err(VaultError::WrongMasterKey { .. })
        ));

        // Tampering fails.
        let mut tampered = check.clone();
        tampered.ciphertext[0] ^= 1;
        assert!(ring.verify_check(&tampered).is_err());

        // Two checks use different nonces.
        assert_ne!(ring.key_check().nonce, check.nonce);
    }

    #[test]
    fn debug_output_holds_no_key_bytes() {
        let bytes = awkward_bytes();
        let master = MasterKey::from_bytes(bytes);
        let ring = MasterKeyRing::from_key(key(1)).with_new_current(master.clone());
        let hex: String = crypto::hex(&bytes);
        let forms = [
            STANDARD.encode(bytes),
            STANDARD_NO_PAD.encode(bytes),
            URL_SAFE_NO_PAD.encode(bytes),
            hex.clone(),
            hex[..16].to_owned(),
            format!("{:?}", bytes.as_slice()),
            "251, 251".to_owned(),
        ];
        for out in [
            format!("{master:?}"),
            format!("{master:#?}"),
            format!("{ring:?}"),
            format!("{ring:#?}"),
        ] {
            assert!(out.contains(master.id().as_str()), "{out}");
            for form in &forms {
                assert!(!out.contains(form.as_str()), "{out} contains {form}");
            }
        }
        assert_eq!(format!("{master:?}"), format!("MasterKey({})", master.id()));
    }
}
