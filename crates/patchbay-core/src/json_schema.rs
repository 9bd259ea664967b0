//! A JSON Schema validator for the subset of draft 2020-12 that the hub
//! contracts use ([`crate::hub_contract`]), small enough to compile in a
//! moment and to read in one sitting.
//!
//! Keywords: `type` (one or a list; `integer` too), `enum`, `const`;
//! strings: `minLength`, `maxLength` (in characters), `pattern` (a subset of
//! ECMA-262, see `pattern`), `format` (`email`, `uri`, `date-time`, `date`;
//! checked loosely), `contentEncoding` (`base64`, asserted); numbers:
//! `minimum`, `maximum`, `exclusiveMinimum`, `exclusiveMaximum`; arrays:
//! `items`, `minItems`, `maxItems`; objects: `properties`, `required`,
//! `additionalProperties` (`false` or a schema), `minProperties`,
//! `maxProperties`; `anyOf`, `oneOf`; boolean schemas. Annotations:
//! `$schema`, `$comment`, `title`, `description`, `examples`, `default`,
//! `deprecated`. [`check_schema`] refuses anything else, so a schema never
//! relies on a keyword this validator would silently ignore.
//!
//! Two deliberate differences from the specification, both stricter:
//! `integer` means a JSON number written without a fraction or exponent
//! (`1.0` is refused, so a connector can read it as an integer), and
//! `contentEncoding: base64` is asserted (standard alphabet, padded).
//!
//! [`validate`] returns every problem at once, each with a JSON Pointer
//! (RFC 6901) to the offending value (a missing property: to where it
//! belongs), a stable code and a message. Messages quote the schema (bounds,
//! allowed values, property names), never the instance's values, so they
//! can be logged and returned to clients.

mod pattern;

use std::cmp::Ordering;

use serde::Serialize;
use serde_json::{Map, Number, Value};

/// The dialect of the schemas this module reads.
pub const DIALECT: &str = "https://json-schema.org/draft/2020-12/schema";

/// One problem: where, a stable code, and a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SchemaError {
    /// A JSON Pointer into the instance (`/items/0/path`; empty: the whole
    /// value) — or, from [`check_schema`], into the schema.
    pub pointer: String,
    /// `invalid_type`, `required`, `unknown_field`, `invalid_option`,
    /// `invalid_value`, `too_short`, `too_long`, `pattern_mismatch`,
    /// `invalid_format`, `invalid_base64`, `out_of_range`, `too_few_items`,
    /// `too_many_items`, `too_few_properties`, `too_many_properties`,
    /// `no_match`, `ambiguous`, `not_allowed`; from [`check_schema`]:
    /// `unknown_keyword`, `invalid_keyword`.
    pub code: &'static str,
    pub message: String,
}

impl std::fmt::Display for SchemaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let at = if self.pointer.is_empty() {
            "(root)"
        } else {
            &self.pointer
        };
        write!(f, "{at}: {} ({})", self.message, self.code)
    }
}

/// Appends `key` to `pointer`, escaped (`~` → `~0`, `/` → `~1`).
pub fn pointer_push(pointer: &str, key: &str) -> String {
    let mut out = String::with_capacity(pointer.len() + key.len() + 1);
    out.push_str(pointer);
    out.push('/');
    for c in key.chars() {
        match c {
            '~' => out.push_str("~0"),
            '/' => out.push_str("~1"),
            c => out.push(c),
        }
    }
    out
}

/// Validates `instance` against `schema`; every problem, in document order.
///
/// `schema` is expected to have passed [`check_schema`]; a malformed keyword
/// is ignored here rather than reported against the instance.
pub fn validate(schema: &Value, instance: &Value) -> Vec<SchemaError> {
    let mut errors = Vec::new();
    walk(schema, instance, "", &mut errors);
    errors
}

/// Whether `instance` is valid against `schema`.
pub fn is_valid(schema: &Value, instance: &Value) -> bool {
    validate(schema, instance).is_empty()
}

const TYPES: [&str; 7] = [
    "null", "boolean", "object", "array", "number", "integer", "string",
];
const FORMATS: [&str; 4] = ["email", "uri", "date-time", "date"];

fn type_matches(t: &str, v: &Value) -> bool {
    match t {
        "null" => v.is_null(),
        "boolean" => v.is_boolean(),
        "object" => v.is_object(),
        "array" => v.is_array(),
        "number" => v.is_number(),
        "integer" => v.is_i64() || v.is_u64(),
        "string" => v.is_string(),
        _ => false,
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Object(_) => "object",
        Value::Array(_) => "array",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
    }
}

/// A schema value as a message shows it: strings bare, the rest as JSON.
fn show(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn compare(a: &Number, b: &Number) -> Option<Ordering> {
    let int = |n: &Number| {
        n.as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from))
    };
    match (int(a), int(b)) {
        (Some(x), Some(y)) => Some(x.cmp(&y)),
        _ => a.as_f64()?.partial_cmp(&b.as_f64()?),
    }
}

fn count(schema: &Map<String, Value>, key: &str) -> Option<usize> {
    schema
        .get(key)
        .and_then(Value::as_u64)
        .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
}

fn push(errors: &mut Vec<SchemaError>, pointer: &str, code: &'static str, message: String) {
    errors.push(SchemaError {
        pointer: pointer.to_owned(),
        code,
        message,
    });
}

fn walk(schema: &Value, instance: &Value, at: &str, errors: &mut Vec<SchemaError>) {
    let s = match schema {
        Value::Object(s) => s,
        Value::Bool(false) => {
            push(errors, at, "not_allowed", "no value is allowed here".into());
            return;
        }
        _ => return,
    };
    if let Some(t) = s.get("type") {
        let allowed: Vec<&str> = match t {
            Value::String(one) => vec![one.as_str()],
            Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if !allowed.is_empty() && !allowed.iter().any(|t| type_matches(t, instance)) {
            let message = if allowed.len() == 1 {
                format!("must be {} {}", article(allowed[0]), allowed[0])
            } else {
                format!("must be one of the types {}", allowed.join(", "))
            };
            push(
                errors,
                at,
                "invalid_type",
                format!("{message}, not {}", type_name(instance)),
            );
            // The other keywords would only repeat the type mismatch.
            return;
        }
    }
    if let Some(Value::Array(options)) = s.get("enum")
        && !options.contains(instance)
    {
        let shown: Vec<String> = options.iter().map(show).collect();
        push(
            errors,
            at,
            "invalid_option",
            format!("must be one of {}", shown.join(", ")),
        );
    }
    if let Some(c) = s.get("const")
        && c != instance
    {
        push(
            errors,
            at,
            "invalid_value",
            format!("must be exactly {}", show(c)),
        );
    }
    match instance {
        Value::String(text) => string(s, text, at, errors),
        Value::Number(n) => number(s, n, at, errors),
        Value::Array(items) => array(s, items, at, errors),
        Value::Object(members) => object(s, members, at, errors),
        Value::Null | Value::Bool(_) => {}
    }
    if let Some(Value::Array(branches)) = s.get("anyOf") {
        alternatives(branches, instance, at, errors, false);
    }
    if let Some(Value::Array(branches)) = s.get("oneOf") {
        alternatives(branches, instance, at, errors, true);
    }
}

fn article(word: &str) -> &'static str {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

fn string(s: &Map<String, Value>, text: &str, at: &str, errors: &mut Vec<SchemaError>) {
    let len = text.chars().count();
    if let Some(min) = count(s, "minLength")
        && len < min
    {
        let message = if min == 1 {
            "must not be empty".to_owned()
        } else {
            format!("must be at least {min} characters long")
        };
        push(errors, at, "too_short", message);
    }
    if let Some(max) = count(s, "maxLength")
        && len > max
    {
        push(
            errors,
            at,
            "too_long",
            format!("must be at most {max} characters long"),
        );
    }
    if let Some(Value::String(p)) = s.get("pattern")
        && let Ok(compiled) = pattern::Pattern::parse(p)
        && !compiled.is_match(text)
    {
        push(
            errors,
            at,
            "pattern_mismatch",
            format!("must match the pattern {p}"),
        );
    }
    if let Some(Value::String(f)) = s.get("format")
        && let Some(why) = format_problem(f, text)
    {
        push(errors, at, "invalid_format", why.to_owned());
    }
    if s.get("contentEncoding").and_then(Value::as_str) == Some("base64") && !is_base64(text) {
        push(
            errors,
            at,
            "invalid_base64",
            "must be base64 (standard alphabet, padded with `=`)".into(),
        );
    }
}

/// A numeric bound: its keyword, whether a comparison of the value with it
/// breaks it, and how a message words it.
type Bound = (&'static str, fn(Ordering) -> bool, &'static str);

fn number(s: &Map<String, Value>, n: &Number, at: &str, errors: &mut Vec<SchemaError>) {
    let bounds: [Bound; 4] = [
        ("minimum", |o| o == Ordering::Less, "at least"),
        ("maximum", |o| o == Ordering::Greater, "at most"),
        ("exclusiveMinimum", |o| o != Ordering::Greater, "more than"),
        ("exclusiveMaximum", |o| o != Ordering::Less, "less than"),
    ];
    for (keyword, breaks, words) in bounds {
        if let Some(Value::Number(bound)) = s.get(keyword)
            && compare(n, bound).is_some_and(breaks)
        {
            push(
                errors,
                at,
                "out_of_range",
                format!("must be {words} {bound}"),
            );
        }
    }
}

fn array(s: &Map<String, Value>, items: &[Value], at: &str, errors: &mut Vec<SchemaError>) {
    if let Some(min) = count(s, "minItems")
        && items.len() < min
    {
        let message = if min == 1 {
            "must have at least one item".to_owned()
        } else {
            format!("must have at least {min} items")
        };
        push(errors, at, "too_few_items", message);
    }
    if let Some(max) = count(s, "maxItems")
        && items.len() > max
    {
        push(
            errors,
            at,
            "too_many_items",
            format!("must have at most {max} items"),
        );
    }
    if let Some(item_schema) = s.get("items") {
        for (n, item) in items.iter().enumerate() {
            walk(item_schema, item, &pointer_push(at, &n.to_string()), errors);
        }
    }
}

fn object(
    s: &Map<String, Value>,
    members: &Map<String, Value>,
    at: &str,
    errors: &mut Vec<SchemaError>,
) {
    if let Some(Value::Array(required)) = s.get("required") {
        for name in required.iter().filter_map(Value::as_str) {
            if !members.contains_key(name) {
                push(
                    errors,
                    &pointer_push(at, name),
                    "required",
                    format!("`{name}` is required"),
                );
            }
        }
    }
    let properties = s.get("properties").and_then(Value::as_object);
    let additional = s.get("additionalProperties");
    for (key, value) in members {
        let here = pointer_push(at, key);
        match properties.and_then(|p| p.get(key)) {
            Some(sub) => walk(sub, value, &here, errors),
            None => match additional {
                Some(Value::Bool(false)) => {
                    let known: Vec<&str> = properties
                        .map(|p| p.keys().map(String::as_str).collect())
                        .unwrap_or_default();
                    let message = if known.is_empty() {
                        format!("`{key}` is not allowed here: no properties are")
                    } else {
                        format!(
                            "`{key}` is not allowed here; the properties are {}",
                            known.join(", ")
                        )
                    };
                    push(errors, &here, "unknown_field", message);
                }
                Some(sub) => walk(sub, value, &here, errors),
                None => {}
            },
        }
    }
    if let Some(min) = count(s, "minProperties")
        && members.len() < min
    {
        push(
            errors,
            at,
            "too_few_properties",
            format!("must have at least {min} properties"),
        );
    }
    if let Some(max) = count(s, "maxProperties")
        && members.len() > max
    {
        push(
            errors,
            at,
            "too_many_properties",
            format!("must have at most {max} properties"),
        );
    }
}

/// `anyOf` (at least one branch) or `oneOf` (exactly one).
fn alternatives(
    branches: &[Value],
    instance: &Value,
    at: &str,
    errors: &mut Vec<SchemaError>,
    exactly_one: bool,
) {
    let label = |n: usize| {
        branches[n]
            .get("title")
            .and_then(Value::as_str)
            .map_or_else(|| format!("form {}", n + 1), str::to_owned)
    };
    let outcomes: Vec<Vec<SchemaError>> = branches
        .iter()
        .map(|b| validate_at(b, instance, at))
        .collect();
    let matching: Vec<usize> = (0..branches.len())
        .filter(|&n| outcomes[n].is_empty())
        .collect();
    if matching.is_empty() {
        let why: Vec<String> = outcomes
            .iter()
            .enumerate()
            .map(|(n, errs)| match errs.first() {
                Some(e) if e.pointer == at => format!("{}: {}", label(n), e.message),
                Some(e) => format!("{}: {} {}", label(n), e.pointer, e.message),
                None => label(n),
            })
            .collect();
        push(
            errors,
            at,
            "no_match",
            format!("must match one of the allowed forms ({})", why.join("; ")),
        );
    } else if exactly_one && matching.len() > 1 {
        let names: Vec<String> = matching.iter().map(|&n| label(n)).collect();
        push(
            errors,
            at,
            "ambiguous",
            format!(
                "must match exactly one of the allowed forms, but matches {}",
                names.join(" and ")
            ),
        );
    }
}

fn validate_at(schema: &Value, instance: &Value, at: &str) -> Vec<SchemaError> {
    let mut errors = Vec::new();
    walk(schema, instance, at, &mut errors);
    errors
}

/// Why `text` is not of `format`, checked loosely; `None` when it is (or the
/// format is unknown: formats are annotations unless this module knows them).
fn format_problem(format: &str, text: &str) -> Option<&'static str> {
    match format {
        "email" => (!is_email(text)).then_some("must be an email address (name@example.com)"),
        "uri" => (!is_uri(text)).then_some("must be an absolute URI (https://example.com/…)"),
        "date-time" => (text.len() <= 10 || crate::Timestamp::parse_rfc3339(text).is_err())
            .then_some("must be an RFC 3339 date and time (2026-02-24T09:30:00Z)"),
        "date" => crate::date::Date::parse(text)
            .is_err()
            .then_some("must be a date (2026-02-24)"),
        _ => None,
    }
}

/// `local@domain.tld`: no spaces, controls, or characters that would break
/// a mail header; a dotted domain.
fn is_email(text: &str) -> bool {
    let Some((local, domain)) = text.rsplit_once('@') else {
        return false;
    };
    let clean = |s: &str| {
        !s.is_empty()
            && !s
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || "<>()[],;:\\\"@".contains(c))
    };
    text.len() <= 254
        && local.len() <= 64
        && clean(local)
        && clean(domain)
        && domain.contains('.')
        && domain
            .split('.')
            .all(|label| !label.is_empty() && !label.starts_with('-') && !label.ends_with('-'))
}

/// `scheme:rest`: a scheme (letter, then letters, digits, `+ - .`), something
/// after it, no spaces or controls.
fn is_uri(text: &str) -> bool {
    let Some((scheme, rest)) = text.split_once(':') else {
        return false;
    };
    let mut sc = scheme.chars();
    sc.next().is_some_and(|c| c.is_ascii_alphabetic())
        && sc.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        && !rest.is_empty()
        && !text
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "<>\"{}|\\^`".contains(c))
}

/// Canonical standard base64 with padding (the empty string included): the
/// bits after the last byte are zero, as strict decoders require.
fn is_base64(text: &str) -> bool {
    let sextet = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let b = text.as_bytes();
    if !b.len().is_multiple_of(4) {
        return false;
    }
    let padding = b.iter().rev().take_while(|&&c| c == b'=').count();
    let body = &b[..b.len() - padding];
    let Some(values) = body.iter().map(|&c| sextet(c)).collect::<Option<Vec<u8>>>() else {
        return false;
    };
    match (padding, values.last()) {
        (0, _) | (_, None) => padding == 0,
        // One `=`: 2 bits after the last byte; two: 4 bits.
        (1, Some(last)) => last.trailing_zeros() >= 2,
        (2, Some(last)) => last.trailing_zeros() >= 4,
        _ => false,
    }
}

// ---- the meta-check ----

/// Checks that `schema` uses only the keywords this module knows, each with
/// a value of the right kind, and catches mistakes that make a schema refuse
/// what it means to accept: a required property that
/// `additionalProperties: false` forbids, a lower bound above its upper
/// bound, an `enum` or `const` value of another `type`. Pointers are into
/// the schema.
pub fn check_schema(schema: &Value) -> Vec<SchemaError> {
    let mut errors = Vec::new();
    meta(schema, "", &mut errors);
    errors
}

fn bad(errors: &mut Vec<SchemaError>, at: &str, key: &str, why: &str) {
    push(
        errors,
        &pointer_push(at, key),
        "invalid_keyword",
        why.to_owned(),
    );
}

fn meta(schema: &Value, at: &str, errors: &mut Vec<SchemaError>) {
    let s = match schema {
        Value::Bool(_) => return,
        Value::Object(s) => s,
        _ => {
            push(
                errors,
                at,
                "invalid_keyword",
                "a schema must be an object or a boolean".into(),
            );
            return;
        }
    };
    for (key, value) in s {
        let here = pointer_push(at, key);
        match key.as_str() {
            "$schema" | "$comment" | "title" | "description" => {
                if !value.is_string() {
                    bad(errors, at, key, "must be a string");
                }
            }
            "examples" => {
                if !value.is_array() {
                    bad(errors, at, key, "must be an array");
                }
            }
            "deprecated" => {
                if !value.is_boolean() {
                    bad(errors, at, key, "must be a boolean");
                }
            }
            "default" | "const" => {}
            "type" => {
                if declared_types(value).is_none() {
                    bad(
                        errors,
                        at,
                        key,
                        "must be a type name (null, boolean, object, array, number, integer, string) or a non-empty list of distinct ones",
                    );
                }
            }
            "enum" => {
                if value.as_array().is_none_or(Vec::is_empty) {
                    bad(errors, at, key, "must be a non-empty array");
                }
            }
            "minLength" | "maxLength" | "minItems" | "maxItems" | "minProperties"
            | "maxProperties" => {
                if !value.is_u64() {
                    bad(errors, at, key, "must be a non-negative integer");
                }
            }
            "minimum" | "maximum" | "exclusiveMinimum" | "exclusiveMaximum" => {
                if !value.is_number() {
                    bad(errors, at, key, "must be a number");
                }
            }
            "pattern" => match value.as_str().map(pattern::Pattern::parse) {
                Some(Ok(_)) => {}
                Some(Err(why)) => bad(
                    errors,
                    at,
                    key,
                    &format!("is outside the supported subset: {why}"),
                ),
                None => bad(errors, at, key, "must be a string"),
            },
            "format" => {
                if !value.as_str().is_some_and(|f| FORMATS.contains(&f)) {
                    bad(
                        errors,
                        at,
                        key,
                        "must be one of email, uri, date-time, date",
                    );
                }
            }
            "contentEncoding" => {
                if value.as_str() != Some("base64") {
                    bad(errors, at, key, "must be base64");
                }
            }
            "items" | "additionalProperties" => meta(value, &here, errors),
            "properties" => match value.as_object() {
                Some(props) => {
                    for (name, sub) in props {
                        meta(sub, &pointer_push(&here, name), errors);
                    }
                }
                None => bad(errors, at, key, "must be an object of schemas"),
            },
            "required" => {
                let names: Option<Vec<&str>> = value
                    .as_array()
                    .and_then(|a| a.iter().map(Value::as_str).collect());
                match names {
                    Some(names) => {
                        let mut sorted = names.clone();
                        sorted.sort_unstable();
                        sorted.dedup();
                        if sorted.len() != names.len() {
                            bad(errors, at, key, "must not name a property twice");
                        }
                    }
                    None => bad(errors, at, key, "must be an array of property names"),
                }
            }
            "anyOf" | "oneOf" => match value.as_array() {
                Some(branches) if !branches.is_empty() => {
                    for (n, sub) in branches.iter().enumerate() {
                        meta(sub, &pointer_push(&here, &n.to_string()), errors);
                    }
                }
                _ => bad(errors, at, key, "must be a non-empty array of schemas"),
            },
            _ => push(
                errors,
                &here,
                "unknown_keyword",
                format!("`{key}` is not a keyword this validator supports"),
            ),
        }
    }
    lint(s, at, errors);
}

/// The names of a valid `type` value.
fn declared_types(value: &Value) -> Option<Vec<&str>> {
    let names: Vec<&str> = match value {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) if !ts.is_empty() => {
            ts.iter().map(Value::as_str).collect::<Option<_>>()?
        }
        _ => return None,
    };
    let mut seen: Vec<&str> = Vec::new();
    for t in names {
        if !TYPES.contains(&t) || seen.contains(&t) {
            return None;
        }
        seen.push(t);
    }
    Some(seen)
}

/// Combinations of valid keywords that cannot be what the author meant.
fn lint(s: &Map<String, Value>, at: &str, errors: &mut Vec<SchemaError>) {
    if s.get("additionalProperties") == Some(&Value::Bool(false))
        && let Some(Value::Array(required)) = s.get("required")
    {
        let props = s.get("properties").and_then(Value::as_object);
        for name in required.iter().filter_map(Value::as_str) {
            if !props.is_some_and(|p| p.contains_key(name)) {
                bad(
                    errors,
                    at,
                    "required",
                    &format!(
                        "`{name}` is required but not in `properties`, and `additionalProperties` is false: nothing can validate"
                    ),
                );
            }
        }
    }
    for (lo, hi) in [
        ("minLength", "maxLength"),
        ("minItems", "maxItems"),
        ("minProperties", "maxProperties"),
        ("minimum", "maximum"),
    ] {
        if let (Some(Value::Number(l)), Some(Value::Number(h))) = (s.get(lo), s.get(hi))
            && compare(l, h) == Some(Ordering::Greater)
        {
            bad(errors, at, lo, &format!("is greater than `{hi}`"));
        }
    }
    if let Some(types) = s.get("type").and_then(declared_types) {
        let fits = |v: &Value| types.iter().any(|t| type_matches(t, v));
        if let Some(Value::Array(options)) = s.get("enum")
            && !options.iter().all(fits)
        {
            bad(
                errors,
                at,
                "enum",
                "has a value that is not of the declared `type`",
            );
        }
        if let Some(c) = s.get("const")
            && !fits(c)
        {
            bad(errors, at, "const", "is not of the declared `type`");
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::{SchemaError, check_schema, is_valid, pointer_push, validate};

    /// The (pointer, code) pairs of every error.
    fn errs(schema: &Value, instance: &Value) -> Vec<(String, &'static str)> {
        assert!(
            check_schema(schema).is_empty(),
            "test schema invalid: {:?}",
            check_schema(schema)
        );
        validate(schema, instance)
            .into_iter()
            .map(|e| (e.pointer, e.code))
            .collect()
    }

    fn one(pointer: &str, code: &'static str) -> Vec<(String, &'static str)> {
        vec![(pointer.to_owned(), code)]
    }

    #[test]
    fn type_accepts_its_kind_and_refuses_the_others() {
        let samples = [
            json!(null),
            json!(true),
            json!({}),
            json!([]),
            json!(1.5),
            json!(7),
            json!("s"),
        ];
        let kinds = [
            "null", "boolean", "object", "array", "number", "integer", "string",
        ];
        for (k, kind) in kinds.iter().enumerate() {
            for (n, sample) in samples.iter().enumerate() {
                // An integer is also a number.
                let expected = n == k || (*kind == "number" && n == 5);
                assert_eq!(
                    is_valid(&json!({ "type": kind }), sample),
                    expected,
                    "{kind} vs {sample}"
                );
            }
        }
        assert_eq!(
            errs(&json!({ "type": "string" }), &json!(3)),
            one("", "invalid_type")
        );
        assert_eq!(
            validate(&json!({ "type": "integer" }), &json!("x"))[0].message,
            "must be an integer, not string"
        );
    }

    #[test]
    fn integer_means_written_without_a_fraction() {
        let int = json!({ "type": "integer" });
        assert!(is_valid(&int, &json!(0)));
        assert!(is_valid(&int, &json!(-5)));
        assert!(is_valid(&int, &json!(u64::MAX)));
        // Stricter than the specification, on purpose.
        assert!(!is_valid(
            &int,
            &serde_json::from_str::<Value>("1.0").unwrap()
        ));
        assert!(!is_valid(&int, &json!(1.5)));
    }

    #[test]
    fn a_list_of_types_accepts_any_of_them() {
        let s = json!({ "type": ["string", "null"] });
        assert!(is_valid(&s, &json!("a")));
        assert!(is_valid(&s, &json!(null)));
        assert_eq!(errs(&s, &json!(1)), one("", "invalid_type"));
        assert!(validate(&s, &json!(1))[0].message.contains("string, null"));
    }

    #[test]
    fn properties_required_and_additional_properties() {
        let s = json!({
            "type": "object",
            "additionalProperties": false,
            "required": ["a", "b"],
            "properties": { "a": { "type": "string" }, "b": { "type": "integer" } }
        });
        assert!(is_valid(&s, &json!({ "a": "x", "b": 1 })));
        assert_eq!(
            errs(&s, &json!({ "a": 1, "c": true })),
            vec![
                ("/b".to_owned(), "required"),
                ("/a".to_owned(), "invalid_type"),
                ("/c".to_owned(), "unknown_field"),
            ]
        );
        let unknown = &validate(&s, &json!({ "a": "x", "b": 1, "c": 1 }))[0];
        assert_eq!(
            unknown.message,
            "`c` is not allowed here; the properties are a, b"
        );
        // Without `additionalProperties`, other members are allowed.
        let open = json!({ "type": "object", "properties": { "a": { "type": "string" } } });
        assert!(is_valid(&open, &json!({ "z": 1 })));
        // With a schema, other members must match it.
        let map = json!({ "type": "object", "additionalProperties": { "type": "string" } });
        assert!(is_valid(&map, &json!({ "k": "v" })));
        assert_eq!(errs(&map, &json!({ "k": 1 })), one("/k", "invalid_type"));
    }

    #[test]
    fn nested_errors_carry_escaped_json_pointers() {
        let s = json!({
            "type": "object",
            "properties": {
                "a/b~c": { "type": "array", "items": { "type": "object", "properties": { "n": { "type": "integer" } } } }
            }
        });
        assert_eq!(
            errs(&s, &json!({ "a/b~c": [{ "n": 1 }, { "n": "2" }] })),
            one("/a~1b~0c/1/n", "invalid_type")
        );
        assert_eq!(pointer_push("", "x"), "/x");
        assert_eq!(pointer_push("/a", "~/"), "/a/~0~1");
    }

    #[test]
    fn items_min_items_and_max_items() {
        let s =
            json!({ "type": "array", "items": { "type": "string" }, "minItems": 1, "maxItems": 2 });
        assert!(is_valid(&s, &json!(["a"])));
        assert!(is_valid(&s, &json!(["a", "b"])));
        assert_eq!(errs(&s, &json!([])), one("", "too_few_items"));
        assert_eq!(errs(&s, &json!(["a", "b", "c"])), one("", "too_many_items"));
        assert_eq!(errs(&s, &json!(["a", 2])), one("/1", "invalid_type"));
    }

    #[test]
    fn enum_and_const() {
        let e = json!({ "enum": ["pending", "captured", 3] });
        assert!(is_valid(&e, &json!("captured")));
        assert!(is_valid(&e, &json!(3)));
        assert_eq!(errs(&e, &json!("Captured")), one("", "invalid_option"));
        assert_eq!(
            validate(&e, &json!("x"))[0].message,
            "must be one of pending, captured, 3"
        );
        let c = json!({ "const": true });
        assert!(is_valid(&c, &json!(true)));
        assert_eq!(errs(&c, &json!(false)), one("", "invalid_value"));
        let obj = json!({ "const": { "a": [1] } });
        assert!(is_valid(&obj, &json!({ "a": [1] })));
        assert!(!is_valid(&obj, &json!({ "a": [1, 2] })));
    }

    #[test]
    fn string_lengths_count_characters() {
        let s = json!({ "type": "string", "minLength": 2, "maxLength": 3 });
        assert!(is_valid(&s, &json!("ab")));
        assert!(is_valid(&s, &json!("żół"))); // 3 characters, 6 bytes
        assert_eq!(errs(&s, &json!("a")), one("", "too_short"));
        assert_eq!(errs(&s, &json!("abcd")), one("", "too_long"));
        assert_eq!(
            validate(&json!({ "minLength": 1 }), &json!(""))[0].message,
            "must not be empty"
        );
        // Length keywords ignore other types.
        assert!(is_valid(&json!({ "minLength": 5 }), &json!(1)));
    }

    #[test]
    fn numeric_bounds_inclusive_and_exclusive() {
        let s = json!({ "minimum": 1, "maximum": 10 });
        assert!(is_valid(&s, &json!(1)));
        assert!(is_valid(&s, &json!(10)));
        assert!(is_valid(&s, &json!(5.5)));
        assert_eq!(errs(&s, &json!(0)), one("", "out_of_range"));
        assert_eq!(errs(&s, &json!(10.01)), one("", "out_of_range"));
        assert_eq!(validate(&s, &json!(11))[0].message, "must be at most 10");
        let x = json!({ "exclusiveMinimum": 0, "exclusiveMaximum": 1.5 });
        assert!(is_valid(&x, &json!(1)));
        assert_eq!(errs(&x, &json!(0)), one("", "out_of_range"));
        assert_eq!(errs(&x, &json!(1.5)), one("", "out_of_range"));
        // Large integers compare exactly, across signed and unsigned.
        let big = json!({ "maximum": 9_007_199_254_740_991_u64 });
        assert!(is_valid(&big, &json!(9_007_199_254_740_991_u64)));
        assert!(!is_valid(&big, &json!(9_007_199_254_740_992_u64)));
        assert!(!is_valid(&json!({ "minimum": 0 }), &json!(i64::MIN)));
        assert!(is_valid(&json!({ "minimum": -1 }), &json!(u64::MAX)));
    }

    #[test]
    fn min_and_max_properties() {
        let s = json!({ "type": "object", "minProperties": 1, "maxProperties": 2 });
        assert!(is_valid(&s, &json!({ "a": 1 })));
        assert_eq!(errs(&s, &json!({})), one("", "too_few_properties"));
        assert_eq!(
            errs(&s, &json!({ "a": 1, "b": 2, "c": 3 })),
            one("", "too_many_properties")
        );
    }

    #[test]
    fn pattern_accepts_and_refuses() {
        let s = json!({ "type": "string", "pattern": "^[A-Z]{3}$" });
        assert!(is_valid(&s, &json!("EUR")));
        assert_eq!(errs(&s, &json!("eur")), one("", "pattern_mismatch"));
        assert_eq!(
            validate(&s, &json!("eur"))[0].message,
            "must match the pattern ^[A-Z]{3}$"
        );
    }

    #[test]
    fn formats_are_checked_loosely() {
        let email = json!({ "format": "email" });
        for ok in ["a@example.com", "first.last+tag@sub.example.co.uk"] {
            assert!(is_valid(&email, &json!(ok)), "{ok}");
        }
        for bad in [
            "plain",
            "@example.com",
            "a@",
            "a@localhost",
            "a b@example.com",
            "a@exa mple.com",
            "a@example..com",
            "a@-example.com",
            "x@example.com\r\nBcc: y@example.com",
            "Name <a@example.com>",
        ] {
            assert_eq!(
                errs(&email, &json!(bad)),
                one("", "invalid_format"),
                "{bad}"
            );
        }
        let uri = json!({ "format": "uri" });
        for ok in [
            "https://example.com/a?b=c#d",
            "mailto:a@example.com",
            "urn:isbn:0451450523",
        ] {
            assert!(is_valid(&uri, &json!(ok)), "{ok}");
        }
        for bad in [
            "example.com/path",
            "/relative",
            "https://exa mple.com",
            "1http://x",
            "https:",
        ] {
            assert_eq!(errs(&uri, &json!(bad)), one("", "invalid_format"), "{bad}");
        }
        let dt = json!({ "format": "date-time" });
        assert!(is_valid(&dt, &json!("2026-02-24T09:30:00Z")));
        assert!(is_valid(&dt, &json!("2026-02-24T09:30:00.5+01:00")));
        assert!(!is_valid(&dt, &json!("2026-02-24")));
        assert!(!is_valid(&dt, &json!("2026-02-30T09:30:00Z")));
        assert!(!is_valid(&dt, &json!("yesterday")));
        let date = json!({ "format": "date" });
        assert!(is_valid(&date, &json!("2028-02-29")));
        assert!(!is_valid(&date, &json!("2026-02-29")));
        assert!(!is_valid(&date, &json!("2026-2-1")));
        // Formats constrain strings only.
        assert!(is_valid(&email, &json!(5)));
    }

    #[test]
    fn base64_content_encoding_is_asserted() {
        let s = json!({ "type": "string", "contentEncoding": "base64" });
        for ok in ["", "aGVsbG8=", "aGVsbG8h", "aGk=", "+/+/"] {
            assert!(is_valid(&s, &json!(ok)), "{ok}");
        }
        // `aGl=` and `QR==` carry stray bits after the last byte.
        for bad in [
            "aGVsbG8",
            "aGVs bG8=",
            "a===",
            "aG=k",
            "aGVsbG8-",
            "héllo===",
            "aGl=",
            "QR==",
            "====",
        ] {
            assert_eq!(errs(&s, &json!(bad)), one("", "invalid_base64"), "{bad}");
        }
    }

    #[test]
    fn one_of_needs_exactly_one_match() {
        let s = json!({
            "type": "object",
            "properties": { "text": { "type": "string" }, "b64": { "type": "string" } },
            "oneOf": [
                { "title": "text content", "required": ["text"] },
                { "title": "base64 content", "required": ["b64"] }
            ]
        });
        assert!(is_valid(&s, &json!({ "text": "a" })));
        assert!(is_valid(&s, &json!({ "b64": "YQ==" })));
        assert_eq!(errs(&s, &json!({})), one("", "no_match"));
        assert_eq!(
            validate(&s, &json!({}))[0].message,
            "must match one of the allowed forms (text content: /text `text` is required; base64 content: /b64 `b64` is required)"
        );
        assert_eq!(
            errs(&s, &json!({ "text": "a", "b64": "YQ==" })),
            one("", "ambiguous")
        );
        assert_eq!(
            validate(&s, &json!({ "text": "a", "b64": "YQ==" }))[0].message,
            "must match exactly one of the allowed forms, but matches text content and base64 content"
        );
    }

    #[test]
    fn any_of_needs_at_least_one_match() {
        let s = json!({ "anyOf": [ { "required": ["text"] }, { "required": ["html"] } ] });
        assert!(is_valid(&s, &json!({ "text": "a" })));
        assert!(is_valid(&s, &json!({ "text": "a", "html": "<p>a</p>" })));
        assert_eq!(errs(&s, &json!({ "subject": "x" })), one("", "no_match"));
        assert!(
            validate(&s, &json!({}))[0]
                .message
                .contains("form 1: /text `text` is required; form 2: /html")
        );
    }

    #[test]
    fn boolean_schemas() {
        assert!(is_valid(&json!(true), &json!({ "anything": [1] })));
        assert_eq!(errs(&json!(false), &json!(1)), one("", "not_allowed"));
        let s = json!({ "type": "object", "properties": { "gone": false } });
        assert_eq!(errs(&s, &json!({ "gone": 1 })), one("/gone", "not_allowed"));
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let s = json!({
            "type": "object",
            "additionalProperties": false,
            "required": ["amount", "currency", "idempotencyKey"],
            "properties": {
                "amount": { "type": "integer", "minimum": 1 },
                "currency": { "type": "string", "pattern": "^[A-Z]{3}$" },
                "idempotencyKey": { "type": "string", "minLength": 1 },
                "to": { "type": "array", "items": { "type": "string", "format": "email" } }
            }
        });
        let found = errs(
            &s,
            &json!({ "amount": 0, "currency": "eur", "to": ["ok@example.com", "nope"], "x": 1 }),
        );
        assert_eq!(
            found,
            vec![
                ("/idempotencyKey".to_owned(), "required"),
                ("/amount".to_owned(), "out_of_range"),
                ("/currency".to_owned(), "pattern_mismatch"),
                ("/to/1".to_owned(), "invalid_format"),
                ("/x".to_owned(), "unknown_field"),
            ]
        );
    }

    #[test]
    fn messages_never_echo_the_instance() {
        let canary = "CANARY_VALUE_1234";
        let s = json!({
            "type": "object",
            "properties": {
                "a": { "type": "integer" },
                "b": { "enum": ["x"] },
                "c": { "const": "y" },
                "d": { "maxLength": 2 },
                "e": { "pattern": "^[0-9]+$" },
                "f": { "format": "email" },
                "g": { "format": "uri" },
                "h": { "format": "date-time" },
                "i": { "contentEncoding": "base64" },
                "j": { "oneOf": [ { "const": 1 }, { "const": 2 } ] }
            }
        });
        let all = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"];
        let instance: serde_json::Map<String, Value> = all
            .iter()
            .map(|k| ((*k).to_owned(), json!(canary)))
            .collect();
        let found = validate(&s, &Value::Object(instance));
        assert_eq!(found.len(), all.len(), "{found:?}");
        for e in &found {
            assert!(!e.message.contains(canary), "{e}");
            assert!(!e.to_string().contains(canary), "{e}");
        }
    }

    #[test]
    fn the_meta_check_knows_every_supported_keyword() {
        let full = json!({
            "$schema": super::DIALECT,
            "$comment": "c",
            "title": "t",
            "description": "d",
            "examples": [{}],
            "default": {},
            "deprecated": false,
            "type": ["object", "null"],
            "required": ["a"],
            "additionalProperties": false,
            "minProperties": 1,
            "maxProperties": 3,
            "properties": {
                "a": { "type": "string", "minLength": 1, "maxLength": 9, "pattern": "^a", "format": "email", "contentEncoding": "base64" },
                "b": { "type": "number", "minimum": 0, "maximum": 1, "exclusiveMinimum": -1, "exclusiveMaximum": 2 },
                "c": { "type": "array", "items": { "enum": [1, 2] }, "minItems": 0, "maxItems": 2 },
                "d": { "const": 1 }
            },
            "anyOf": [true, { "required": ["a"] }],
            "oneOf": [{}]
        });
        assert_eq!(check_schema(&full), Vec::<SchemaError>::new());
    }

    #[test]
    fn the_meta_check_refuses_unknown_and_malformed_keywords() {
        let codes = |s: Value| -> Vec<(String, &'static str)> {
            check_schema(&s)
                .into_iter()
                .map(|e| (e.pointer, e.code))
                .collect()
        };
        assert_eq!(
            codes(json!({ "$ref": "#/x" })),
            one("/$ref", "unknown_keyword")
        );
        assert_eq!(
            codes(json!({ "properties": { "a": { "patternProperties": {} } } })),
            one("/properties/a/patternProperties", "unknown_keyword")
        );
        assert_eq!(
            codes(json!({ "items": [{ "type": "string" }] })),
            one("/items", "invalid_keyword")
        );
        for (schema, pointer) in [
            (json!({ "type": "text" }), "/type"),
            (json!({ "type": ["string", "string"] }), "/type"),
            (json!({ "type": [] }), "/type"),
            (json!({ "enum": [] }), "/enum"),
            (json!({ "minLength": -1 }), "/minLength"),
            (json!({ "maxItems": 1.5 }), "/maxItems"),
            (json!({ "minimum": "0" }), "/minimum"),
            (json!({ "pattern": "(a|b)" }), "/pattern"),
            (json!({ "format": "ipv4" }), "/format"),
            (json!({ "contentEncoding": "base32" }), "/contentEncoding"),
            (json!({ "required": "a" }), "/required"),
            (json!({ "required": ["a", "a"] }), "/required"),
            (json!({ "properties": [] }), "/properties"),
            (json!({ "oneOf": [] }), "/oneOf"),
            (json!({ "anyOf": [3] }), "/anyOf/0"),
            (json!({ "title": 1 }), "/title"),
            (json!({ "deprecated": "no" }), "/deprecated"),
            (json!({ "examples": {} }), "/examples"),
            (json!("string"), ""),
        ] {
            assert_eq!(
                codes(schema.clone()),
                one(pointer, "invalid_keyword"),
                "{schema}"
            );
        }
    }

    #[test]
    fn the_meta_check_catches_schemas_that_refuse_what_they_mean() {
        let pointers =
            |s: Value| -> Vec<String> { check_schema(&s).into_iter().map(|e| e.pointer).collect() };
        assert_eq!(
            pointers(
                json!({ "additionalProperties": false, "required": ["a"], "properties": { "b": {} } })
            ),
            ["/required"]
        );
        assert_eq!(
            pointers(json!({ "minLength": 3, "maxLength": 2 })),
            ["/minLength"]
        );
        assert_eq!(
            pointers(json!({ "minimum": 3, "maximum": 2.5 })),
            ["/minimum"]
        );
        assert_eq!(
            pointers(json!({ "type": "string", "enum": ["a", 1] })),
            ["/enum"]
        );
        assert_eq!(
            pointers(json!({ "type": "integer", "const": "1" })),
            ["/const"]
        );
        assert!(pointers(json!({ "type": "number", "enum": [1, 1.5] })).is_empty());
    }
}
