//! Secrets held in memory and shown on screen.
//!
//! Decrypted credential values travel through the server as [`SecretString`]
//! (re-exported from `secrecy`) so that they are zeroized when dropped and a
//! stray `{:?}` prints a placeholder instead of the value; reading one takes
//! an explicit, greppable [`ExposeSecret::expose_secret`]. When a UI or CLI
//! shows that a secret is set without showing it, it prints [`MASK`], one
//! fixed string whose length says nothing about the secret's length.

pub use secrecy::{ExposeSecret, SecretString};

/// What a secret is displayed as: eight bullets (U+2022), whatever its length.
pub const MASK: &str = "\u{2022}\u{2022}\u{2022}\u{2022}\u{2022}\u{2022}\u{2022}\u{2022}";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_is_eight_bullets() {
        assert_eq!(MASK.chars().count(), 8);
        assert!(MASK.chars().all(|c| c == '\u{2022}'));
    }

    #[test]
    fn secret_string_debug_is_redacted() {
        let secret = SecretString::from("hunter2-password");
        assert!(!format!("{secret:?}").contains("hunter2"));
        assert_eq!(secret.expose_secret(), "hunter2-password");
    }
}
