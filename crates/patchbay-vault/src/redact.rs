//! Redaction of secrets from operation log details and messages.
//!
//! Operation logs are shown to operators, exported and kept for a long
//! time, so they must never hold a credential, even when a connector echoes
//! its request (with an `Authorization` header) or an upstream error message
//! quotes the API key it rejected. Two rules are applied to every log detail
//! before it is stored:
//!
//! * by *name*: the value of any field whose name looks sensitive (generic
//!   names such as `password` or `api_key`, plus the secret fields the
//!   integration's manifest declares) is replaced, whatever it contains;
//! * by *value*: every occurrence of one of the tenant's actual secret values
//!   is cut out of any string, wherever it appears.
//!
//! Names are compared after normalisation (lowercase, without `_`, `-` and
//! `.`), so `Client-Secret`, `client_secret` and `clientSecret` are one name.
//! Plain string search is used (no regex): the secret list is short and logs
//! are written on hot paths.

use std::collections::BTreeSet;
use std::fmt;

use serde_json::Value;
use zeroize::Zeroizing;

/// What a redacted value or substring is replaced with.
pub const REDACTED: &str = "[REDACTED]";

/// Secret values shorter than this (in characters) are not searched for:
/// they would match everywhere and turn logs into noise.
const MIN_SECRET_CHARS: usize = 4;

/// Normalised field names that are always sensitive.
const SENSITIVE_NAMES: &[&str] = &[
    "password",
    "passwd",
    "pwd",
    "passphrase",
    "secret",
    "clientsecret",
    "token",
    "accesstoken",
    "refreshtoken",
    "idtoken",
    "apikey",
    "apisecret",
    "authorization",
    "auth",
    "cookie",
    "setcookie",
    "privatekey",
    "secretkey",
    "signature",
    "credentials",
    "sessionid",
    "webhooksecret",
];

/// Normalised name endings that are always sensitive (`stripeSecretKey`,
/// `x-api-key`, `adminPassword`, `githubToken`, ...).
const SENSITIVE_SUFFIXES: &[&str] = &[
    "secret",
    "password",
    "passwd",
    "token",
    "apikey",
    "secretkey",
    "privatekey",
];

/// Lowercases `name` and drops `_`, `-` and `.`.
fn normalise(name: &str) -> String {
    name.chars()
        .filter(|c| !matches!(c, '_' | '-' | '.'))
        .flat_map(char::to_lowercase)
        .collect()
}

/// Removes secrets from JSON log details and free text. Build one per
/// operation from the integration's secret field names and the tenant's
/// secret values; the values are zeroized when it is dropped.
#[derive(Clone, Default)]
pub struct Redactor {
    /// Normalised secret field names of the integration.
    keys: BTreeSet<String>,
    /// Secret values, longest first so that a secret containing another is
    /// replaced whole.
    values: Vec<Zeroizing<String>>,
}

impl Redactor {
    pub fn new(
        secret_keys: impl IntoIterator<Item = String>,
        secret_values: impl IntoIterator<Item = String>,
    ) -> Self {
        let keys = secret_keys
            .into_iter()
            .map(|k| normalise(&k))
            .filter(|k| !k.is_empty())
            .collect();
        let mut values: Vec<Zeroizing<String>> = secret_values
            .into_iter()
            .map(Zeroizing::new)
            .filter(|v| v.chars().count() >= MIN_SECRET_CHARS)
            .collect();
        values.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        values.dedup();
        Redactor { keys, values }
    }

    /// Whether this redactor knows no integration-specific secret field and
    /// no secret value. The generic sensitive names still apply.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.values.is_empty()
    }

    /// Whether a field called `name` holds a secret by its name alone.
    pub fn is_secret_key(&self, name: &str) -> bool {
        let name = normalise(name);
        SENSITIVE_NAMES.contains(&name.as_str())
            || SENSITIVE_SUFFIXES.iter().any(|s| name.ends_with(s))
            || self.keys.contains(&name)
    }

    /// Redacts `value` in place: values of sensitive fields (at any depth,
    /// inside objects and arrays) become [`REDACTED`], and secret values are
    /// cut out of every string and object key. A sensitive field that is
    /// `null` or `""` is kept as is: it holds no secret, and "the token was
    /// missing" is worth seeing in a log.
    pub fn redact(&self, value: &mut Value) {
        match value {
            Value::String(s) => {
                if let Some(clean) = self.replace_values(s) {
                    *s = clean;
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|item| self.redact(item)),
            Value::Object(map) => {
                if !self.values.is_empty() {
                    let renamed: Vec<(String, String)> = map
                        .keys()
                        .filter_map(|k| self.replace_values(k).map(|clean| (k.clone(), clean)))
                        .collect();
                    for (old, new) in renamed {
                        if let Some(v) = map.remove(&old) {
                            map.insert(new, v);
                        }
                    }
                }
                for (key, field) in map.iter_mut() {
                    if self.is_secret_key(key) {
                        let empty = match field {
                            Value::Null => true,
                            Value::String(s) => s.is_empty(),
                            _ => false,
                        };
                        if !empty {
                            *field = Value::String(REDACTED.to_owned());
                        }
                    } else {
                        self.redact(field);
                    }
                }
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }

    /// `text` with every secret value replaced by [`REDACTED`]; for free
    /// text such as log messages and upstream error bodies.
    pub fn redact_str(&self, text: &str) -> String {
        self.replace_values(text).unwrap_or_else(|| text.to_owned())
    }

    /// `Some(cleaned)` if `text` contains a secret value, `None` otherwise
    /// (no allocation in the common case).
    fn replace_values(&self, text: &str) -> Option<String> {
        let mut out: Option<String> = None;
        for secret in &self.values {
            let current = out.as_deref().unwrap_or(text);
            if current.contains(secret.as_str()) {
                out = Some(current.replace(secret.as_str(), REDACTED));
            }
        }
        out
    }
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redactor")
            .field("secret_keys", &self.keys)
            .field(
                "secret_values",
                &format_args!("{} hidden", self.values.len()),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn redactor() -> Redactor {
        Redactor::new(
            ["shop_access_code".to_owned(), "Store-PIN".to_owned()],
            [
                "sk_live_abcdef123456".to_owned(),
                "abc".to_owned(),
                "pin-9876".to_owned(),
            ],
        )
    }

    #[test]
    fn generic_names_are_redacted_at_any_depth() {
        let mut v = json!({
            "request": {
                "headers": {
                    "Authorization": "Bearer xyz",
                    "X-Api-Key": "k-1",
                    "Content-Type": "application/json",
                    "Set-Cookie": ["a=1", "b=2"],
                },
                "body": [
                    {"api_key": "k-2", "name": "first"},
                    {"client-secret": {"nested": "k-3"}, "count": 3},
                    {"stripeSecretKey": "k-4", "adminPassword": "k-5", "github.token": "k-6"},
                    {"password": 12345, "PWD": true, "private_key": "k-7", "sessionId": "k-8"},
                ],
            },
            "refresh_token": "k-9",
            "webhook_secret": "k-10",
        });
        Redactor::default().redact(&mut v);
        let r = REDACTED;
        assert_eq!(
            v,
            json!({
                "request": {
                    "headers": {
                        "Authorization": r,
                        "X-Api-Key": r,
                        "Content-Type": "application/json",
                        "Set-Cookie": r,
                    },
                    "body": [
                        {"api_key": r, "name": "first"},
                        {"client-secret": r, "count": 3},
                        {"stripeSecretKey": r, "adminPassword": r, "github.token": r},
                        {"password": r, "PWD": r, "private_key": r, "sessionId": r},
                    ],
                },
                "refresh_token": r,
                "webhook_secret": r,
            })
        );
    }

    #[test]
    fn integration_secret_keys_are_redacted() {
        let mut v = json!({
            "shopAccessCode": "c-1",
            "config": {"SHOP.ACCESS.CODE": "c-2", "store_pin": 1234, "store": "main"},
        });
        redactor().redact(&mut v);
        assert_eq!(
            v,
            json!({
                "shopAccessCode": REDACTED,
                "config": {"SHOP.ACCESS.CODE": REDACTED, "store_pin": REDACTED, "store": "main"},
            })
        );
        // Without the integration's keys, these fields are not sensitive.
        let mut v = json!({"shopAccessCode": "c-1"});
        Redactor::default().redact(&mut v);
        assert_eq!(v, json!({"shopAccessCode": "c-1"}));
    }

    #[test]
    fn secret_values_are_cut_out_of_strings_and_keys() {
        let mut v = json!({
            "message": "upstream said: invalid key sk_live_abcdef123456 (twice: sk_live_abcdef123456)",
            "list": ["pin-9876", "x pin-9876 y", 42],
            "by_key": {"sk_live_abcdef123456": "value"},
            "number": 123_456,
        });
        redactor().redact(&mut v);
        assert_eq!(
            v,
            json!({
                "message": "upstream said: invalid key [REDACTED] (twice: [REDACTED])",
                "list": ["[REDACTED]", "x [REDACTED] y", 42],
                "by_key": {"[REDACTED]": "value"},
                "number": 123_456,
            })
        );
        assert_eq!(
            redactor().redact_str("auth failed for pin-9876 and sk_live_abcdef123456."),
            "auth failed for [REDACTED] and [REDACTED]."
        );
    }

    #[test]
    fn longer_secret_wins_over_its_substring() {
        let r = Redactor::new([], ["abcd".to_owned(), "abcdefgh".to_owned()]);
        assert_eq!(
            r.redact_str("x abcdefgh y abcd"),
            "x [REDACTED] y [REDACTED]"
        );
    }

    #[test]
    fn short_values_are_ignored_and_other_data_untouched() {
        let original = json!({
            "name": "abc shop",
            "abc": "abcabc",
            "tokens_used": 12,
            "author": "Ada",
            "keyboard": "qwerty",
            "status": {"ok": true, "items": [1, "two", null]},
            "token": null,
            "password": "",
        });
        let mut v = original.clone();
        redactor().redact(&mut v);
        assert_eq!(v, original);
        assert_eq!(redactor().redact_str("abc only"), "abc only");
        assert!(Redactor::new([], ["abc".to_owned(), String::new()]).is_empty());
        assert!(!redactor().is_empty());
        assert!(Redactor::default().is_empty());
    }

    #[test]
    fn debug_hides_secret_values() {
        let out = format!("{:?}", redactor());
        assert!(
            !out.contains("sk_live") && !out.contains("pin-9876"),
            "{out}"
        );
        assert!(out.contains("shopaccesscode"), "{out}");
    }
}
