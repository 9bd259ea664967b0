//! The AEAD primitive and associated-data encoding shared by every sealed
//! value in the vault.
//!
//! Keeping one encrypt/decrypt pair means there is one place where nonces are
//! drawn, one algorithm (XChaCha20-Poly1305: its 24-byte nonces can be drawn
//! at random for every encryption, with no counter to persist across
//! processes) and one way of building associated data. The associated data is
//! length-prefixed field by field, so that `("ab", "c")` and `("a", "bc")`
//! can never authenticate as each other, whatever bytes the ids contain.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use zeroize::Zeroizing;

/// Length of an XChaCha20-Poly1305 nonce.
pub(crate) const NONCE_LEN: usize = 24;

/// Length of every key in the vault (master keys and data keys).
pub(crate) const KEY_LEN: usize = 32;

/// Fills an array from the operating system's random number generator.
///
/// Panics if the OS generator fails: there is no safe way to continue
/// creating keys or nonces without randomness, and on supported platforms
/// this does not happen once the system has booted.
pub(crate) fn random<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).expect("the operating system's random number generator failed");
    bytes
}

/// Lowercase hex of `bytes` (for key ids and file names, never for keys).
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    out
}

/// Encodes associated data: every part is preceded by its length as a
/// big-endian `u32`, so no choice of part contents can make two different
/// part lists encode to the same bytes.
pub(crate) fn aad(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(parts.iter().map(|p| 4 + p.len()).sum());
    for part in parts {
        let len = u32::try_from(part.len()).expect("associated data part longer than 4 GiB");
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(part);
    }
    out
}

/// Encrypts `plaintext` under `key` with a fresh random nonce; returns the
/// nonce and the ciphertext (which ends with the 16-byte tag).
pub(crate) fn encrypt(
    key: &[u8; KEY_LEN],
    aad: &[u8],
    plaintext: &[u8],
) -> ([u8; NONCE_LEN], Vec<u8>) {
    let cipher = XChaCha20Poly1305::new(key.into());
    let nonce: [u8; NONCE_LEN] = random();
    let ciphertext = cipher
        .encrypt(
            &XNonce::from(nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .expect("XChaCha20-Poly1305 refuses only messages longer than 256 GiB");
    (nonce, ciphertext)
}

/// Decrypts and authenticates; `None` on a nonce of the wrong length, a wrong
/// key, altered data or other associated data. Never returns unauthenticated
/// plaintext.
pub(crate) fn decrypt(
    key: &[u8; KEY_LEN],
    nonce: &[u8],
    aad: &[u8],
    ciphertext: &[u8],
) -> Option<Zeroizing<Vec<u8>>> {
    let nonce = <&XNonce>::try_from(nonce).ok()?;
    let cipher = XChaCha20Poly1305::new(key.into());
    cipher
        .decrypt(
            nonce,
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .ok()
        .map(Zeroizing::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aad_length_prefix_separates_field_boundaries() {
        assert_ne!(aad(&[b"ab", b"c"]), aad(&[b"a", b"bc"]));
        assert_ne!(aad(&[b"a\0", b"b"]), aad(&[b"a", b"\0b"]));
        assert_ne!(aad(&[b"", b"x"]), aad(&[b"x", b""]));
        assert_ne!(aad(&[b"x"]), aad(&[b"x", b""]));
        assert_eq!(aad(&[b"ab", b"c"]), b"\0\0\0\x02ab\0\0\0\x01c".to_vec());
    }

    #[test]
    fn round_trip_and_rejections() {
        let key = [7u8; KEY_LEN];
        let (nonce, ct) = encrypt(&key, b"aad", b"hello");
        assert_eq!(ct.len(), 5 + 16);
        assert_eq!(
            decrypt(&key, &nonce, b"aad", &ct).unwrap().as_slice(),
            b"hello"
        );
        assert!(decrypt(&key, &nonce, b"other", &ct).is_none());
        assert!(decrypt(&[8u8; KEY_LEN], &nonce, b"aad", &ct).is_none());
        assert!(decrypt(&key, &nonce[..12], b"aad", &ct).is_none());
        assert!(decrypt(&key, &nonce, b"aad", &ct[..ct.len() - 1]).is_none());
        assert!(decrypt(&key, &nonce, b"aad", &[]).is_none());
    }

    #[test]
    fn hex_is_lowercase_and_padded() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
        assert_eq!(hex(&[]), "");
    }

    #[test]
    fn random_nonces_differ() {
        let a: [u8; NONCE_LEN] = random();
        let b: [u8; NONCE_LEN] = random();
        assert_ne!(a, b);
    }
}
