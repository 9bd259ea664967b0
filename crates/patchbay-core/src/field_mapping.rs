//! Field mappings of data-sync streams: how a record a connector reads
//! becomes the record Patchbay stores.
//!
//! A mapping is stored as JSON per (integration, tenant, stream):
//!
//! ```json
//! { "idPath": "id", "deletedPath": "deleted_at",
//!   "fields": [ {"source": "title", "target": "name", "cast": "string"},
//!               {"source": "variants[0].prices[1].amount", "target": "price",
//!                "cast": "integer", "default": 0},
//!               {"source": "updated_at", "target": "updatedAt",
//!                "cast": "timestamp", "required": true} ],
//!   "keepUnmapped": false }
//! ```
//!
//! [`FieldMapping::parse`] checks it (every problem, each with where it is)
//! and compiles its paths once; [`FieldMapping::apply`] then maps each
//! record to a [`Mapped`] (external id, data, deleted marker) or an
//! [`ItemError`] for that record alone.
//!
//! # What a mapping does
//!
//! * **Id.** `idPath` (default `id`) is read from the record: a non-blank
//!   string is the external id as is, an integer is written in decimal.
//!   Anything else — missing, `null`, blank, a fraction, an object — is an
//!   item error.
//! * **Deleted.** When `deletedPath` is set and the value there is present
//!   and not false-like, the record is a deletion: its `data` is `null` and
//!   no field is mapped (a tombstone usually carries little more than its
//!   id). False-like: missing, `null`, `false`, `0`, an empty string, an
//!   empty array or object, and the texts a boolean cast reads as false
//!   (`false`, `no`, `0`, …). A timestamp such as `deleted_at` is true-like.
//! * **Fields.** Without `fields`, the record is stored as read (the
//!   identity mapping, also [`FieldMapping::default`]). With them, `data` is
//!   an object holding each rule's `target`, from the value at its `source`
//!   passed through its `cast`:
//!   - a source that is missing or `null` — or, for every cast but `string`
//!     and `json`, a blank string (an empty CSV cell) — takes the rule's
//!     `default` (checked against the cast when the mapping is parsed);
//!     without a default it is an item error when `required`, else `null`;
//!   - a value the cast cannot convert is an item error naming the target and
//!     the reason, never the value (records may hold personal data).
//! * **Unmapped fields.** With `keepUnmapped`, the record's top-level
//!   fields that no rule reads from (the first key of a `source`) are copied
//!   too; a mapped target of the same name wins.
//!
//! # Casts
//!
//! | cast | accepts | gives |
//! |---|---|---|
//! | `string` | text; numbers and booleans (as written); arrays and objects (compact JSON) | text |
//! | `integer` | integers; numbers without a fraction (`42.0`); text of either (`" 42 "`, `"1e3"`) | an integer |
//! | `number` | numbers; text of a finite number | a number (integers stay integers) |
//! | `boolean` | booleans; `0`/`1`; text `true`/`false`, `t`/`f`, `yes`/`no`, `y`/`n`, `on`/`off`, `1`/`0` (any case) | a boolean |
//! | `timestamp` | RFC 3339 text (with `Z` or an offset; a bare date is midnight UTC); Unix time as a number or numeric text: seconds when below 10¹¹ in magnitude (before year 5138), milliseconds otherwise; years 1 to 9999 | RFC 3339 text in UTC (`2026-02-24T13:23:05Z`, microseconds when not zero) |
//! | `json` (default) | anything | the value as is |
//!
//! Everything else is refused (`true` as an integer, `"abc"` as a number,
//! `NaN`, a fraction as an integer, an array as a timestamp, …).
//!
//! # Source paths
//!
//! ```text
//! path    = segment *( "." key / "[" index "]" / "[" quoted "]" )
//! segment = key / "[" index "]" / "[" quoted "]"
//! key     = 1*( any character except . [ ] " )
//! index   = 1*DIGIT                      ; 0-based array position
//! quoted  = DQUOTE *( char / "\" DQUOTE / "\\" ) DQUOTE
//!                                        ; any key, e.g. ["a.b"] or [""]
//! ```
//!
//! `title`, `variants[0].prices[1].amount`, `["order.id"]`,
//! `meta["x-y"].z`, `first name` (spaces are part of a key). A path that
//! walks into something else than what it names (a key of an array, an
//! index past the end) finds nothing: the value is missing.
//!
//! # Targets
//!
//! Keys separated by `.`, each non-empty and without `[`, `]` or `"`:
//! `price`, `prices.amount` (creates the object `prices`). Two rules may not
//! write the same target, nor one a target inside another's (`a` and `a.b`).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Number, Value};

use crate::time::Timestamp;

/// Problems of a mapping: (where, what). Where is a JSON Pointer into the
/// mapping without its leading `/` (`fields/1/source`; empty: the whole
/// mapping).
pub type Problems = Vec<(String, String)>;

/// How a source value is converted (see the module documentation).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Cast {
    String,
    Integer,
    Number,
    Boolean,
    Timestamp,
    /// The value as is.
    #[default]
    Json,
}

impl Cast {
    pub const ALL: [Cast; 6] = [
        Cast::String,
        Cast::Integer,
        Cast::Number,
        Cast::Boolean,
        Cast::Timestamp,
        Cast::Json,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Cast::String => "string",
            Cast::Integer => "integer",
            Cast::Number => "number",
            Cast::Boolean => "boolean",
            Cast::Timestamp => "timestamp",
            Cast::Json => "json",
        }
    }

    pub fn parse(s: &str) -> Option<Cast> {
        Cast::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// One field of a mapping.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FieldRule {
    /// Where the value is in the source record: `title`,
    /// `variants[0].prices[1].amount`, `["a.b"]`.
    pub source: String,
    /// Where it goes in the stored record: `name`, `price.amount`.
    pub target: String,
    /// `string`, `integer`, `number`, `boolean`, `timestamp` or `json`
    /// (the default: as is).
    #[serde(default)]
    pub cast: Cast,
    /// The value when the source is missing or empty (it must pass the cast).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    /// A record without the value (and no default) fails.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub required: bool,
}

/// A mapping as written and stored; [`FieldMapping`] is its checked,
/// compiled form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FieldMappingSpec {
    /// The path of the record's id (a string or an integer); default `id`.
    #[serde(default = "default_id_path")]
    pub id_path: String,
    /// The path of a value that, when present and not false-like, marks
    /// the record deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_path: Option<String>,
    /// The fields of the stored record; none: the record as read.
    #[serde(default)]
    pub fields: Vec<FieldRule>,
    /// Also copy the record's top-level fields that no rule reads.
    #[serde(default)]
    pub keep_unmapped: bool,
}

fn default_id_path() -> String {
    "id".to_owned()
}

impl Default for FieldMappingSpec {
    fn default() -> FieldMappingSpec {
        FieldMappingSpec {
            id_path: default_id_path(),
            deleted_path: None,
            fields: Vec::new(),
            keep_unmapped: false,
        }
    }
}

impl FieldMappingSpec {
    /// Every problem of the mapping (empty: it is valid).
    pub fn check(&self) -> Problems {
        compile(self).err().unwrap_or_default()
    }
}

/// A checked mapping with its paths compiled, ready to map records.
/// (De)serializes as its [`FieldMappingSpec`]; deserializing checks it.
#[derive(Clone)]
pub struct FieldMapping {
    spec: FieldMappingSpec,
    compiled: Compiled,
}

/// A mapped record.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Mapped {
    pub external_id: String,
    /// The record to store (`null` for a deletion).
    pub data: Value,
    pub deleted: bool,
}

/// Why one record does not map. The message names paths and targets,
/// never a value of the record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema, thiserror::Error)]
#[serde(rename_all = "camelCase")]
#[error("{message}")]
pub struct ItemError {
    /// The record's id, when it could be read.
    pub external_id: Option<String>,
    pub message: String,
}

impl FieldMapping {
    /// The identity mapping: records as read, the id from `id`.
    pub fn identity() -> FieldMapping {
        FieldMapping::default()
    }

    /// Checks and compiles a mapping.
    pub fn new(spec: FieldMappingSpec) -> Result<FieldMapping, Problems> {
        let compiled = compile(&spec)?;
        Ok(FieldMapping { spec, compiled })
    }

    /// Parses a mapping's JSON text; every problem when it is not valid.
    pub fn parse(text: &str) -> Result<FieldMapping, Problems> {
        let value: Value = serde_json::from_str(text)
            .map_err(|e| vec![(String::new(), format!("not valid JSON: {e}"))])?;
        FieldMapping::from_value(&value)
    }

    /// Reads a mapping from a JSON value; every problem when it is not
    /// valid (a structural one — an unknown key, a wrong type — stops the
    /// check at the first).
    pub fn from_value(value: &Value) -> Result<FieldMapping, Problems> {
        if !value.is_object() {
            return Err(vec![(
                String::new(),
                "a field mapping is a JSON object".to_owned(),
            )]);
        }
        let mut problems = Problems::new();
        // Unknown casts are reported each, then read as `json` so that the
        // rest of the mapping is still checked.
        let unknown: Vec<(usize, String)> = value
            .get("fields")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
            .filter_map(|(i, f)| {
                let c = f.get("cast")?.as_str()?;
                Cast::parse(c).is_none().then(|| (i, c.to_owned()))
            })
            .collect();
        let patched = (!unknown.is_empty()).then(|| {
            let mut copy = value.clone();
            for (i, c) in &unknown {
                problems.push((
                    format!("fields/{i}/cast"),
                    format!(
                        "unknown cast `{c}`; expected one of {}",
                        Cast::ALL.map(Cast::as_str).join(", ")
                    ),
                ));
                copy["fields"][*i]["cast"] = Value::from("json");
            }
            copy
        });
        let value = patched.as_ref().unwrap_or(value);
        let spec: FieldMappingSpec = match serde_path_to_error::deserialize(value) {
            Ok(spec) => spec,
            Err(e) => {
                problems.push((pointer_of(e.path()), e.inner().to_string()));
                return Err(problems);
            }
        };
        match compile(&spec) {
            Ok(compiled) if problems.is_empty() => Ok(FieldMapping { spec, compiled }),
            Ok(_) => Err(problems),
            Err(more) => {
                problems.extend(more);
                Err(problems)
            }
        }
    }

    /// The mapping as written.
    pub fn spec(&self) -> &FieldMappingSpec {
        &self.spec
    }

    /// Whether records pass as read (no `fields`).
    pub fn is_identity(&self) -> bool {
        self.compiled.rules.is_empty()
    }

    /// Maps one record (cloning only what it keeps).
    pub fn apply(&self, record: &Value) -> Result<Mapped, ItemError> {
        let c = &self.compiled;
        let external_id = c.external_id(record)?;
        if c.is_deleted(record) {
            return Ok(Mapped {
                external_id,
                data: Value::Null,
                deleted: true,
            });
        }
        if c.rules.is_empty() {
            return Ok(Mapped {
                external_id,
                data: record.clone(),
                deleted: false,
            });
        }
        let mut out = Map::new();
        if let Err(message) = c.map_fields(record, &mut out) {
            return Err(ItemError {
                external_id: Some(external_id),
                message,
            });
        }
        if c.keep_unmapped
            && let Value::Object(fields) = record
        {
            for (k, v) in fields {
                if !c.is_mapped_root(k) && !out.contains_key(k) {
                    out.insert(k.clone(), v.clone());
                }
            }
        }
        Ok(Mapped {
            external_id,
            data: Value::Object(out),
            deleted: false,
        })
    }

    /// Maps one record it owns: what the identity mapping and
    /// `keepUnmapped` keep is moved, not cloned.
    pub fn apply_owned(&self, record: Value) -> Result<Mapped, ItemError> {
        let c = &self.compiled;
        if !c.rules.is_empty() && !c.keep_unmapped {
            return self.apply(&record);
        }
        let external_id = c.external_id(&record)?;
        if c.is_deleted(&record) {
            return Ok(Mapped {
                external_id,
                data: Value::Null,
                deleted: true,
            });
        }
        if c.rules.is_empty() {
            return Ok(Mapped {
                external_id,
                data: record,
                deleted: false,
            });
        }
        let mut out = Map::new();
        if let Err(message) = c.map_fields(&record, &mut out) {
            return Err(ItemError {
                external_id: Some(external_id),
                message,
            });
        }
        if let Value::Object(fields) = record {
            for (k, v) in fields {
                if !c.is_mapped_root(&k) && !out.contains_key(&k) {
                    out.insert(k, v);
                }
            }
        }
        Ok(Mapped {
            external_id,
            data: Value::Object(out),
            deleted: false,
        })
    }

    /// Maps sample records, each on its own.
    pub fn preview(&self, records: &[Value]) -> Vec<Result<Mapped, ItemError>> {
        records.iter().map(|r| self.apply(r)).collect()
    }
}

impl Default for FieldMapping {
    fn default() -> FieldMapping {
        FieldMapping::new(FieldMappingSpec::default()).expect("the identity mapping is valid")
    }
}

impl std::fmt::Debug for FieldMapping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.spec.fmt(f)
    }
}

impl PartialEq for FieldMapping {
    fn eq(&self, other: &FieldMapping) -> bool {
        self.spec == other.spec
    }
}

impl TryFrom<FieldMappingSpec> for FieldMapping {
    type Error = Problems;

    fn try_from(spec: FieldMappingSpec) -> Result<FieldMapping, Problems> {
        FieldMapping::new(spec)
    }
}

impl Serialize for FieldMapping {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.spec.serialize(s)
    }
}

impl<'de> Deserialize<'de> for FieldMapping {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let spec = FieldMappingSpec::deserialize(d)?;
        FieldMapping::new(spec).map_err(|problems| {
            serde::de::Error::custom(
                problems
                    .iter()
                    .map(|(at, message)| {
                        if at.is_empty() {
                            message.clone()
                        } else {
                            format!("{at}: {message}")
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })
    }
}

impl schemars::JsonSchema for FieldMapping {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "FieldMapping".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        FieldMappingSpec::json_schema(generator)
    }
}

/// A serde path as a JSON Pointer without its leading `/`.
fn pointer_of(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path {
        let part = match segment {
            Segment::Seq { index } => index.to_string(),
            Segment::Map { key } => key.replace('~', "~0").replace('/', "~1"),
            Segment::Enum { variant } => variant.clone(),
            Segment::Unknown => continue,
        };
        if !out.is_empty() {
            out.push('/');
        }
        out.push_str(&part);
    }
    out
}

// ---------------------------------------------------------------------------
// The compiled form.

/// One step of a source path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(Box<str>),
    Index(usize),
}

#[derive(Debug, Clone)]
struct Rule {
    source: Vec<Step>,
    /// The target's keys.
    target: Vec<Box<str>>,
    /// The target as written, for messages.
    name: Box<str>,
    cast: Cast,
    /// Already cast.
    default: Option<Value>,
    required: bool,
}

#[derive(Debug, Clone)]
struct Compiled {
    id: Vec<Step>,
    id_name: Box<str>,
    deleted: Option<Vec<Step>>,
    rules: Vec<Rule>,
    keep_unmapped: bool,
    /// The first keys of the rules' sources, sorted.
    mapped_roots: Vec<Box<str>>,
}

fn compile(spec: &FieldMappingSpec) -> Result<Compiled, Problems> {
    let mut problems = Problems::new();
    let id = parse_source(&spec.id_path)
        .map_err(|e| problems.push(("idPath".to_owned(), e)))
        .unwrap_or_default();
    let deleted = spec.deleted_path.as_deref().and_then(|p| {
        parse_source(p)
            .map_err(|e| problems.push(("deletedPath".to_owned(), e)))
            .ok()
    });
    let mut rules = Vec::with_capacity(spec.fields.len());
    // Targets so far (keys joined by '.') → rule index; and their proper prefixes.
    let mut targets: HashMap<&str, usize> = HashMap::new();
    let mut prefixes: HashMap<&str, usize> = HashMap::new();
    for (i, f) in spec.fields.iter().enumerate() {
        let at = |leaf: &str| format!("fields/{i}/{leaf}");
        let source = parse_source(&f.source).map_err(|e| problems.push((at("source"), e)));
        let target = parse_target(&f.target).map_err(|e| problems.push((at("target"), e)));
        if target.is_ok() {
            let t = f.target.as_str();
            if let Some(j) = targets.get(t) {
                problems.push((
                    at("target"),
                    format!("`{t}` is already the target of fields/{j}"),
                ));
            } else if let Some(j) = prefixes.get(t) {
                problems.push((
                    at("target"),
                    format!("`{t}` is an object holding the target of fields/{j}"),
                ));
            } else if let Some((p, j)) = t
                .match_indices('.')
                .find_map(|(n, _)| targets.get(&t[..n]).map(|j| (&t[..n], j)))
            {
                problems.push((
                    at("target"),
                    format!("`{p}` is the target of fields/{j}, so it cannot hold `{t}`"),
                ));
            } else {
                targets.insert(t, i);
                for (n, _) in t.match_indices('.') {
                    prefixes.entry(&t[..n]).or_insert(i);
                }
            }
        }
        let default = match &f.default {
            None => None,
            Some(d) => match cast(f.cast, d) {
                Ok(Value::Null) => {
                    problems.push((
                        at("default"),
                        format!("an empty default is no {} value", f.cast.as_str()),
                    ));
                    None
                }
                Ok(v) => Some(v),
                Err(reason) => {
                    problems.push((
                        at("default"),
                        format!("the default {reason} (cast `{}`)", f.cast.as_str()),
                    ));
                    None
                }
            },
        };
        if let (Ok(source), Ok(target)) = (source, target) {
            rules.push(Rule {
                source,
                target,
                name: f.target.as_str().into(),
                cast: f.cast,
                default,
                required: f.required,
            });
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let mut mapped_roots: Vec<Box<str>> = rules
        .iter()
        .filter_map(|r| match r.source.first() {
            Some(Step::Key(k)) => Some(k.clone()),
            _ => None,
        })
        .collect();
    mapped_roots.sort();
    mapped_roots.dedup();
    Ok(Compiled {
        id,
        id_name: spec.id_path.as_str().into(),
        deleted,
        rules,
        keep_unmapped: spec.keep_unmapped,
        mapped_roots,
    })
}

/// Parses a source path (grammar in the module documentation).
fn parse_source(path: &str) -> Result<Vec<Step>, String> {
    if path.is_empty() {
        return Err("the path is empty".to_owned());
    }
    let at = |rest: &str| path[..path.len() - rest.len()].chars().count() + 1;
    let mut steps = Vec::new();
    let mut rest = path;
    let mut after_dot = false;
    loop {
        if let Some(r) = rest.strip_prefix('[') {
            if after_dot {
                return Err(format!(
                    "expected a key after `.` at character {}, found `[`",
                    at(rest)
                ));
            }
            let (step, r) = parse_bracket(r).map_err(|e| format!("{e} at character {}", at(r)))?;
            steps.push(step);
            rest = r;
        } else {
            let n = rest.find(['.', '[', ']', '"']).unwrap_or(rest.len());
            if n == 0 {
                let found = rest
                    .chars()
                    .next()
                    .map_or_else(|| "the end".to_owned(), |c| format!("`{c}`"));
                return Err(format!(
                    "expected a key at character {}, found {found}",
                    at(rest)
                ));
            }
            steps.push(Step::Key(rest[..n].into()));
            rest = &rest[n..];
        }
        after_dot = false;
        match rest.chars().next() {
            None => return Ok(steps),
            Some('.') => {
                rest = &rest[1..];
                after_dot = true;
            }
            Some('[') => {}
            Some(c) => {
                return Err(format!("unexpected `{c}` at character {}", at(rest)));
            }
        }
    }
}

/// After a `[`: an index or a quoted key, then `]`.
fn parse_bracket(rest: &str) -> Result<(Step, &str), String> {
    if let Some(quoted) = rest.strip_prefix('"') {
        let mut key = String::new();
        let mut chars = quoted.char_indices();
        loop {
            match chars.next() {
                None => return Err("unterminated quoted key".to_owned()),
                Some((n, '"')) => {
                    let after = &quoted[n + 1..];
                    return match after.strip_prefix(']') {
                        Some(r) => Ok((Step::Key(key.into()), r)),
                        None => Err("expected `]` after the quoted key".to_owned()),
                    };
                }
                Some((_, '\\')) => match chars.next() {
                    Some((_, c @ ('"' | '\\'))) => key.push(c),
                    _ => {
                        return Err("only `\\\"` and `\\\\` are escapes in a quoted key".to_owned());
                    }
                },
                Some((_, c)) => key.push(c),
            }
        }
    }
    let n = rest.bytes().take_while(u8::is_ascii_digit).count();
    if n == 0 {
        return Err("expected an index (digits) or a quoted key after `[`".to_owned());
    }
    let index = rest[..n]
        .parse::<usize>()
        .map_err(|_| "the index is too large".to_owned())?;
    match rest[n..].strip_prefix(']') {
        Some(r) => Ok((Step::Index(index), r)),
        None => Err("expected `]` after the index".to_owned()),
    }
}

/// Parses a target: keys separated by `.`.
fn parse_target(target: &str) -> Result<Vec<Box<str>>, String> {
    if target.is_empty() {
        return Err("the target is empty".to_owned());
    }
    target
        .split('.')
        .enumerate()
        .map(|(n, key)| {
            if key.is_empty() {
                Err(format!("key {} of the target is empty", n + 1))
            } else if key.contains(['[', ']', '"']) {
                Err(format!(
                    "key {} of the target has `[`, `]` or `\"`; targets are keys separated by `.`",
                    n + 1
                ))
            } else {
                Ok(key.into())
            }
        })
        .collect()
}

/// The value at `path`, if there is one.
fn resolve<'a>(mut value: &'a Value, path: &[Step]) -> Option<&'a Value> {
    for step in path {
        value = match (step, value) {
            (Step::Key(k), Value::Object(m)) => m.get(&**k)?,
            (Step::Index(i), Value::Array(a)) => a.get(*i)?,
            _ => return None,
        };
    }
    Some(value)
}

impl Compiled {
    fn external_id(&self, record: &Value) -> Result<String, ItemError> {
        let fail = |what: &str| ItemError {
            external_id: None,
            message: format!("the id (`{}`) {what}", self.id_name),
        };
        match resolve(record, &self.id) {
            Some(Value::String(s)) if s.trim().is_empty() => Err(fail("is empty")),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(Value::Number(n)) if n.is_i64() || n.is_u64() => Ok(n.to_string()),
            None | Some(Value::Null) => Err(fail("is missing")),
            Some(_) => Err(fail("is not a string or an integer")),
        }
    }

    fn is_deleted(&self, record: &Value) -> bool {
        let Some(path) = &self.deleted else {
            return false;
        };
        match resolve(record, path) {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(Value::Number(n)) => {
                !(n.as_i64() == Some(0) || n.as_u64() == Some(0) || n.as_f64() == Some(0.0))
            }
            Some(Value::String(s)) => {
                let t = s.trim();
                bool_word(t).unwrap_or(!t.is_empty())
            }
            Some(Value::Array(a)) => !a.is_empty(),
            Some(Value::Object(o)) => !o.is_empty(),
        }
    }

    fn is_mapped_root(&self, key: &str) -> bool {
        self.mapped_roots
            .binary_search_by(|k| (**k).cmp(key))
            .is_ok()
    }

    /// Writes every rule's target into `out`; the first failure's message.
    fn map_fields(&self, record: &Value, out: &mut Map<String, Value>) -> Result<(), String> {
        for rule in &self.rules {
            let value = match resolve(record, &rule.source) {
                None | Some(Value::Null) => Value::Null,
                Some(v) => {
                    cast(rule.cast, v).map_err(|reason| format!("`{}` {reason}", rule.name))?
                }
            };
            let value = if value.is_null() {
                match &rule.default {
                    Some(d) => d.clone(),
                    None if rule.required => {
                        return Err(format!(
                            "`{}` is required and the record has no value for it",
                            rule.name
                        ));
                    }
                    None => Value::Null,
                }
            } else {
                value
            };
            place(out, &rule.target, value);
        }
        Ok(())
    }
}

/// Sets `target` (keys) in `out`, creating the objects on the way.
fn place(out: &mut Map<String, Value>, target: &[Box<str>], value: Value) {
    let Some((last, parents)) = target.split_last() else {
        return;
    };
    let mut object = out;
    for key in parents {
        if !matches!(object.get(&**key), Some(Value::Object(_))) {
            object.insert((**key).to_owned(), Value::Object(Map::new()));
        }
        let Some(Value::Object(next)) = object.get_mut(&**key) else {
            unreachable!("just inserted an object");
        };
        object = next;
    }
    object.insert((**last).to_owned(), value);
}

// ---------------------------------------------------------------------------
// Casts. A reason completes "`target` …" and never shows the value.

type Reason = &'static str;

/// Casts a present, non-null value; `Ok(Null)`: a blank text that counts
/// as missing.
fn cast(cast: Cast, v: &Value) -> Result<Value, Reason> {
    match cast {
        Cast::Json => Ok(v.clone()),
        Cast::String => Ok(match v {
            Value::String(s) => Value::String(s.clone()),
            Value::Number(n) => Value::String(n.to_string()),
            Value::Bool(b) => Value::String(b.to_string()),
            Value::Array(_) | Value::Object(_) => Value::String(v.to_string()),
            Value::Null => Value::Null,
        }),
        Cast::Integer => to_integer(v),
        Cast::Number => to_number(v),
        Cast::Boolean => to_boolean(v),
        Cast::Timestamp => to_timestamp(v),
    }
}

/// 2^63 as a float: the first value past `i64`'s range.
const TWO_POW_63: f64 = 9_223_372_036_854_775_808.0;

// An exact test for a whole number is wanted; whole and in range, the
// conversion is exact.
#[allow(clippy::float_cmp, clippy::cast_possible_truncation)]
fn whole(f: f64) -> Result<Value, Reason> {
    if !f.is_finite() {
        Err("is not a finite number")
    } else if f.fract() != 0.0 {
        Err("has a fraction and is no integer")
    } else if !(-TWO_POW_63..TWO_POW_63).contains(&f) {
        Err("is out of range for an integer")
    } else {
        Ok(Value::from(f as i64))
    }
}

fn to_integer(v: &Value) -> Result<Value, Reason> {
    match v {
        Value::Number(n) if n.is_i64() || n.is_u64() => Ok(v.clone()),
        Value::Number(n) => whole(n.as_f64().unwrap_or(f64::NAN)),
        Value::String(s) => {
            let t = s.trim();
            if t.is_empty() {
                return Ok(Value::Null);
            }
            if let Ok(i) = t.parse::<i64>() {
                return Ok(Value::from(i));
            }
            if let Ok(u) = t.parse::<u64>() {
                return Ok(Value::from(u));
            }
            match numeric_text(t) {
                Some(f) => whole(f),
                None => Err("is text that is not an integer"),
            }
        }
        other => Err(match other {
            Value::Bool(_) => "is a boolean, not an integer",
            Value::Array(_) => "is an array, not an integer",
            _ => "is an object, not an integer",
        }),
    }
}

/// A finite number written in text (`1.5`, `-2e3`); not `inf`, `NaN`.
fn numeric_text(t: &str) -> Option<f64> {
    // Rust also reads `inf`, `infinity` and `nan`: numbers start with a
    // digit, a sign or a point.
    if !t.starts_with(|c: char| c.is_ascii_digit() || matches!(c, '-' | '+' | '.')) {
        return None;
    }
    t.parse::<f64>().ok().filter(|f| f.is_finite())
}

fn to_number(v: &Value) -> Result<Value, Reason> {
    match v {
        Value::Number(_) => Ok(v.clone()),
        Value::String(s) => {
            let t = s.trim();
            if t.is_empty() {
                return Ok(Value::Null);
            }
            if let Ok(i) = t.parse::<i64>() {
                return Ok(Value::from(i));
            }
            if let Ok(u) = t.parse::<u64>() {
                return Ok(Value::from(u));
            }
            numeric_text(t)
                .and_then(Number::from_f64)
                .map(Value::Number)
                .ok_or("is text that is not a number")
        }
        Value::Bool(_) => Err("is a boolean, not a number"),
        Value::Array(_) => Err("is an array, not a number"),
        _ => Err("is an object, not a number"),
    }
}

/// A word a boolean cast reads.
fn bool_word(t: &str) -> Option<bool> {
    const TRUE: [&str; 6] = ["true", "t", "yes", "y", "1", "on"];
    const FALSE: [&str; 6] = ["false", "f", "no", "n", "0", "off"];
    if TRUE.iter().any(|w| t.eq_ignore_ascii_case(w)) {
        Some(true)
    } else if FALSE.iter().any(|w| t.eq_ignore_ascii_case(w)) {
        Some(false)
    } else {
        None
    }
}

fn to_boolean(v: &Value) -> Result<Value, Reason> {
    match v {
        Value::Bool(_) => Ok(v.clone()),
        Value::Number(n) => match n.as_f64() {
            Some(0.0) => Ok(Value::Bool(false)),
            Some(1.0) => Ok(Value::Bool(true)),
            _ => Err("is a number other than 0 or 1, not a boolean"),
        },
        Value::String(s) => {
            let t = s.trim();
            if t.is_empty() {
                return Ok(Value::Null);
            }
            bool_word(t)
                .map(Value::Bool)
                .ok_or("is text that is not a boolean (true/false, yes/no, on/off, 1/0)")
        }
        Value::Array(_) => Err("is an array, not a boolean"),
        _ => Err("is an object, not a boolean"),
    }
}

/// The seconds of 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z.
const MIN_SECS: i64 = -62_135_596_800;
const MAX_SECS: i64 = 253_402_300_799;
/// Below this magnitude Unix time is in seconds (until year 5138), from it
/// in milliseconds.
const MILLIS_FROM: i64 = 100_000_000_000;

fn stamp(micros: i64) -> Result<Value, Reason> {
    if (MIN_SECS * 1_000_000..=MAX_SECS * 1_000_000 + 999_999).contains(&micros) {
        Ok(Value::String(Timestamp::from_micros(micros).to_string()))
    } else {
        Err("is out of range for a timestamp (years 1 to 9999)")
    }
}

fn epoch_int(n: i64) -> Result<Value, Reason> {
    let micros = if n.unsigned_abs() < MILLIS_FROM.unsigned_abs() {
        n * 1_000_000
    } else {
        n.checked_mul(1_000)
            .ok_or("is out of range for a timestamp (years 1 to 9999)")?
    };
    stamp(micros)
}

// 10^11 is exact in a float; `micros` is whole and in range when cast.
#[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
fn epoch_float(f: f64) -> Result<Value, Reason> {
    let scale = if f.abs() < MILLIS_FROM as f64 {
        1e6
    } else {
        1e3
    };
    let micros = (f * scale).round();
    if !(-TWO_POW_63..TWO_POW_63).contains(&micros) {
        return Err("is out of range for a timestamp (years 1 to 9999)");
    }
    stamp(micros as i64)
}

fn to_timestamp(v: &Value) -> Result<Value, Reason> {
    match v {
        Value::Number(n) => match n.as_i64() {
            Some(i) => epoch_int(i),
            None => epoch_float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => {
            let t = s.trim();
            if t.is_empty() {
                return Ok(Value::Null);
            }
            if let Ok(ts) = Timestamp::parse_rfc3339(t) {
                return stamp(ts.as_micros());
            }
            if let Ok(i) = t.parse::<i64>() {
                return epoch_int(i);
            }
            match numeric_text(t) {
                Some(f) => epoch_float(f),
                None => Err("is text that is not an RFC 3339 timestamp or Unix time"),
            }
        }
        Value::Bool(_) => Err("is a boolean, not a timestamp"),
        Value::Array(_) => Err("is an array, not a timestamp"),
        _ => Err("is an object, not a timestamp"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[allow(clippy::needless_pass_by_value)]
    fn mapping(v: Value) -> FieldMapping {
        FieldMapping::from_value(&v).unwrap_or_else(|p| panic!("{p:?}"))
    }

    #[allow(clippy::needless_pass_by_value)]
    fn problems(v: Value) -> Problems {
        FieldMapping::from_value(&v).expect_err("the mapping should not be valid")
    }

    #[allow(clippy::needless_pass_by_value)]
    fn one(c: Cast, v: Value) -> Result<Value, Reason> {
        cast(c, &v)
    }

    #[test]
    fn the_example_maps_a_record() {
        let m = FieldMapping::parse(
            r#"{ "idPath": "id", "deletedPath": "deleted_at",
                 "fields": [ {"source": "title", "target": "name", "cast": "string"},
                             {"source": "variants[0].prices[1].amount", "target": "price", "cast": "integer", "default": 0},
                             {"source": "updated_at", "target": "updatedAt", "cast": "timestamp", "required": true} ],
                 "keepUnmapped": false }"#,
        )
        .unwrap();
        let record = json!({
            "id": 17, "title": "Mug", "deleted_at": null,
            "variants": [{ "prices": [{ "amount": 1 }, { "amount": "1250" }] }],
            "updated_at": "2026-02-24T14:23:05+01:00", "secret": "not kept"
        });
        assert_eq!(
            m.apply(&record).unwrap(),
            Mapped {
                external_id: "17".into(),
                data: json!({ "name": "Mug", "price": 1250, "updatedAt": "2026-02-24T13:23:05Z" }),
                deleted: false,
            }
        );
        // The default fills a missing price; the record is not changed.
        let no_price = json!({ "id": "a", "title": 5, "updated_at": 1_700_000_000 });
        assert_eq!(
            m.apply(&no_price).unwrap().data,
            json!({ "name": "5", "price": 0, "updatedAt": "2023-11-14T22:13:20Z" })
        );
        // A deletion: no field mapped (a tombstone lacks `updated_at`).
        let gone = json!({ "id": "a", "deleted_at": "2026-01-01T00:00:00Z" });
        assert_eq!(
            m.apply(&gone).unwrap(),
            Mapped {
                external_id: "a".into(),
                data: Value::Null,
                deleted: true
            }
        );
        // A required field missing.
        let err = m.apply(&json!({ "id": "b", "title": "x" })).unwrap_err();
        assert_eq!(
            err,
            ItemError {
                external_id: Some("b".into()),
                message: "`updatedAt` is required and the record has no value for it".into(),
            }
        );
        // It round-trips as written.
        let text = serde_json::to_string(&m).unwrap();
        assert_eq!(FieldMapping::parse(&text).unwrap(), m);
        let back: FieldMapping = serde_json::from_str(&text).unwrap();
        assert_eq!(back.spec(), m.spec());
    }

    #[test]
    fn the_identity_mapping_passes_records_as_read() {
        let m = FieldMapping::identity();
        assert!(m.is_identity());
        assert_eq!(m, FieldMapping::parse("{}").unwrap());
        let r = json!({ "id": 42, "a": { "b": [1, 2] } });
        let mapped = m.apply(&r).unwrap();
        assert_eq!(mapped.external_id, "42");
        assert_eq!(mapped.data, r);
        assert!(!mapped.deleted);
        assert_eq!(m.apply_owned(r.clone()).unwrap(), mapped);
        assert_eq!(m.apply(&json!({ "id": "x-1" })).unwrap().external_id, "x-1");
        assert_eq!(
            m.apply(&json!({ "id": u64::MAX })).unwrap().external_id,
            u64::MAX.to_string()
        );
        assert_eq!(m.apply(&json!({ "id": -3 })).unwrap().external_id, "-3");
        assert_eq!(
            serde_json::to_value(&m).unwrap(),
            json!({ "idPath": "id", "fields": [], "keepUnmapped": false })
        );
    }

    #[test]
    fn ids_that_cannot_be_read_are_item_errors() {
        let m = FieldMapping::identity();
        let cases = [
            (json!({ "name": "x" }), "the id (`id`) is missing"),
            (json!({ "id": null }), "the id (`id`) is missing"),
            (json!({ "id": "  " }), "the id (`id`) is empty"),
            (
                json!({ "id": 1.5 }),
                "the id (`id`) is not a string or an integer",
            ),
            (
                json!({ "id": { "n": 1 } }),
                "the id (`id`) is not a string or an integer",
            ),
            (
                json!({ "id": true }),
                "the id (`id`) is not a string or an integer",
            ),
            (json!([1, 2]), "the id (`id`) is missing"),
            (json!("text"), "the id (`id`) is missing"),
        ];
        for (record, message) in cases {
            let e = m.apply(&record).unwrap_err();
            assert_eq!(e.external_id, None, "{record}");
            assert_eq!(e.to_string(), message, "{record}");
        }
        let nested = mapping(json!({ "idPath": "meta[\"order.id\"]" }));
        assert_eq!(
            nested
                .apply(&json!({ "meta": { "order.id": "o-1" } }))
                .unwrap()
                .external_id,
            "o-1"
        );
        assert_eq!(
            nested.apply(&json!({ "meta": {} })).unwrap_err().message,
            "the id (`meta[\"order.id\"]`) is missing"
        );
    }

    #[test]
    fn every_source_path_form_resolves() {
        let record = json!({
            "id": 1,
            "title": "T",
            "first name": "Ann",
            "a.b": "dotted",
            "": "empty key",
            "q\"uote": "quoted",
            "meta": { "x-y": { "z": 9 } },
            "variants": [{ "prices": [10, { "amount": 20 }] }],
            "matrix": [[1, 2], [3, 4]],
        });
        let cases = [
            ("title", json!("T")),
            ("first name", json!("Ann")),
            ("[\"a.b\"]", json!("dotted")),
            ("[\"\"]", json!("empty key")),
            ("[\"q\\\"uote\"]", json!("quoted")),
            ("meta[\"x-y\"].z", json!(9)),
            ("meta.x-y.z", json!(9)),
            ("variants[0].prices[0]", json!(10)),
            ("variants[0].prices[1].amount", json!(20)),
            ("matrix[1][0]", json!(3)),
            ("variants[0]", json!({ "prices": [10, { "amount": 20 }] })),
        ];
        for (path, want) in cases {
            let steps = parse_source(path).unwrap_or_else(|e| panic!("{path}: {e}"));
            assert_eq!(resolve(&record, &steps), Some(&want), "{path}");
        }
        // Paths that find nothing.
        for path in [
            "missing",
            "title.more",
            "variants[1]",
            "variants.prices",
            "meta[0]",
            "matrix[0][9]",
            "[0]",
        ] {
            let steps = parse_source(path).unwrap();
            assert_eq!(resolve(&record, &steps), None, "{path}");
        }
        assert_eq!(
            parse_source("a[\"b\\\\c\"]").unwrap(),
            [Step::Key("a".into()), Step::Key("b\\c".into())]
        );
    }

    #[test]
    fn bad_source_paths_say_where() {
        let cases = [
            ("", "the path is empty"),
            ("a..b", "expected a key at character 3, found `.`"),
            ("a.", "expected a key at character 3, found the end"),
            (".a", "expected a key at character 1, found `.`"),
            (
                "a.[0]",
                "expected a key after `.` at character 3, found `[`",
            ),
            (
                "a[x]",
                "expected an index (digits) or a quoted key after `[` at character 3",
            ),
            (
                "a[]",
                "expected an index (digits) or a quoted key after `[` at character 3",
            ),
            (
                "a[-1]",
                "expected an index (digits) or a quoted key after `[` at character 3",
            ),
            ("a[1", "expected `]` after the index at character 3"),
            ("a[\"b", "unterminated quoted key at character 3"),
            (
                "a[\"b\"",
                "expected `]` after the quoted key at character 3",
            ),
            (
                "a[\"b\\n\"]",
                "only `\\\"` and `\\\\` are escapes in a quoted key at character 3",
            ),
            ("a]", "unexpected `]` at character 2"),
            ("a\"b", "unexpected `\"` at character 2"),
            ("a[0]b", "unexpected `b` at character 5"),
            ("é]", "unexpected `]` at character 2"),
            (
                "a[99999999999999999999999]",
                "the index is too large at character 3",
            ),
        ];
        for (path, message) in cases {
            assert_eq!(parse_source(path).unwrap_err(), message, "{path}");
        }
    }

    #[test]
    fn targets_create_nested_objects() {
        let m = mapping(json!({
            "fields": [
                { "source": "a", "target": "x.y.z" },
                { "source": "b", "target": "x.y.w", "cast": "string" },
                { "source": "c", "target": "x.v" },
                { "source": "d", "target": "top" },
            ]
        }));
        let out = m
            .apply(&json!({ "id": 1, "a": [1], "b": 2, "c": null }))
            .unwrap();
        assert_eq!(
            out.data,
            json!({ "x": { "y": { "z": [1], "w": "2" }, "v": null }, "top": null })
        );
    }

    #[test]
    fn bad_targets_are_each_reported() {
        let p = problems(json!({
            "fields": [
                { "source": "a", "target": "" },
                { "source": "a", "target": "x..y" },
                { "source": "a", "target": "x[0]" },
                { "source": "a", "target": "name" },
                { "source": "b", "target": "name" },
                { "source": "c", "target": "price.amount" },
                { "source": "d", "target": "price" },
                { "source": "e", "target": "meta" },
                { "source": "f", "target": "meta.id" },
            ]
        }));
        assert_eq!(
            p,
            [
                (
                    "fields/0/target".to_owned(),
                    "the target is empty".to_owned()
                ),
                (
                    "fields/1/target".to_owned(),
                    "key 2 of the target is empty".to_owned()
                ),
                (
                    "fields/2/target".to_owned(),
                    "key 1 of the target has `[`, `]` or `\"`; targets are keys separated by `.`"
                        .to_owned()
                ),
                (
                    "fields/4/target".to_owned(),
                    "`name` is already the target of fields/3".to_owned()
                ),
                (
                    "fields/6/target".to_owned(),
                    "`price` is an object holding the target of fields/5".to_owned()
                ),
                (
                    "fields/8/target".to_owned(),
                    "`meta` is the target of fields/7, so it cannot hold `meta.id`".to_owned()
                ),
            ]
        );
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let p = problems(json!({
            "idPath": "",
            "deletedPath": "a[",
            "fields": [
                { "source": "ok", "target": "ok", "cast": "money" },
                { "source": "x]", "target": "y", "cast": "integer", "default": "abc" },
                { "source": "z", "target": "z", "cast": "boolean", "default": "maybe" },
                { "source": "t", "target": "t", "cast": "timestamp", "default": "yesterday" },
                { "source": "n", "target": "n", "cast": "integer", "default": "" },
                { "source": "w", "target": "w", "cast": "wat" },
            ]
        }));
        assert_eq!(
            p,
            [
                (
                    "fields/0/cast".to_owned(),
                    "unknown cast `money`; expected one of string, integer, number, boolean, timestamp, json".to_owned()
                ),
                (
                    "fields/5/cast".to_owned(),
                    "unknown cast `wat`; expected one of string, integer, number, boolean, timestamp, json".to_owned()
                ),
                ("idPath".to_owned(), "the path is empty".to_owned()),
                (
                    "deletedPath".to_owned(),
                    "expected an index (digits) or a quoted key after `[` at character 3".to_owned()
                ),
                ("fields/1/source".to_owned(), "unexpected `]` at character 2".to_owned()),
                (
                    "fields/1/default".to_owned(),
                    "the default is text that is not an integer (cast `integer`)".to_owned()
                ),
                (
                    "fields/2/default".to_owned(),
                    "the default is text that is not a boolean (true/false, yes/no, on/off, 1/0) (cast `boolean`)".to_owned()
                ),
                (
                    "fields/3/default".to_owned(),
                    "the default is text that is not an RFC 3339 timestamp or Unix time (cast `timestamp`)".to_owned()
                ),
                (
                    "fields/4/default".to_owned(),
                    "an empty default is no integer value".to_owned()
                ),
            ]
        );
        // The spec's own check says the same (bar the casts serde refuses).
        let spec = FieldMappingSpec {
            id_path: String::new(),
            ..FieldMappingSpec::default()
        };
        assert_eq!(
            spec.check(),
            [("idPath".to_owned(), "the path is empty".to_owned())]
        );
        assert!(FieldMappingSpec::default().check().is_empty());
        assert!(FieldMapping::new(spec).is_err());
    }

    #[test]
    fn structural_problems_name_their_place() {
        let p = FieldMapping::parse("{ \"fields\": [ }").unwrap_err();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].0, "");
        assert!(p[0].1.starts_with("not valid JSON: "), "{p:?}");
        let p = problems(json!({ "idpath": "id" }));
        assert_eq!(p.len(), 1);
        assert!(p[0].1.contains("unknown field `idpath`"), "{p:?}");
        let p = problems(json!({ "fields": [{ "source": "a", "target": "b", "requird": true }] }));
        assert_eq!(p.len(), 1);
        assert!(p[0].0.starts_with("fields/0"), "{p:?}");
        assert!(p[0].1.contains("unknown field `requird`"), "{p:?}");
        let p = problems(json!({ "keepUnmapped": "yes" }));
        assert_eq!(p[0].0, "keepUnmapped", "{p:?}");
        let p = problems(json!({ "fields": [{ "target": "b" }] }));
        assert!(p[0].1.contains("missing field `source`"), "{p:?}");
        assert_eq!(
            problems(json!([])),
            [(String::new(), "a field mapping is a JSON object".to_owned())]
        );
        // An unknown cast and a structural problem: both.
        let p = problems(
            json!({ "fields": [{ "source": "a", "target": "b", "cast": "x", "extra": 1 }] }),
        );
        assert_eq!(p.len(), 2, "{p:?}");
        // Deserializing directly refuses an invalid mapping too.
        let e = serde_json::from_value::<FieldMapping>(json!({ "idPath": "a..b" })).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("idPath: expected a key at character 3"),
            "{e}"
        );
    }

    #[test]
    fn string_cast() {
        assert_eq!(one(Cast::String, json!("x")), Ok(json!("x")));
        assert_eq!(one(Cast::String, json!("")), Ok(json!("")));
        assert_eq!(one(Cast::String, json!(42)), Ok(json!("42")));
        assert_eq!(one(Cast::String, json!(-1.5)), Ok(json!("-1.5")));
        assert_eq!(one(Cast::String, json!(true)), Ok(json!("true")));
        assert_eq!(one(Cast::String, json!([1, "a"])), Ok(json!("[1,\"a\"]")));
        assert_eq!(one(Cast::String, json!({ "a": 1 })), Ok(json!("{\"a\":1}")));
    }

    #[test]
    fn integer_cast() {
        let ok = [
            (json!(42), json!(42)),
            (json!(-7), json!(-7)),
            (json!(u64::MAX), json!(u64::MAX)),
            (json!(42.0), json!(42)),
            (json!("42"), json!(42)),
            (json!(" -42 "), json!(-42)),
            (json!("+5"), json!(5)),
            (json!("18446744073709551615"), json!(u64::MAX)),
            (json!("42.0"), json!(42)),
            (json!("1e3"), json!(1000)),
            (json!(""), Value::Null),
            (json!("   "), Value::Null),
        ];
        for (v, want) in ok {
            assert_eq!(one(Cast::Integer, v.clone()), Ok(want), "{v}");
        }
        let bad = [
            (json!(1.5), "has a fraction and is no integer"),
            (json!("1.5"), "has a fraction and is no integer"),
            (json!(1e300), "is out of range for an integer"),
            (
                json!("99999999999999999999999"),
                "is out of range for an integer",
            ),
            (json!("abc"), "is text that is not an integer"),
            (json!("12abc"), "is text that is not an integer"),
            (json!("inf"), "is text that is not an integer"),
            (json!("NaN"), "is text that is not an integer"),
            (json!("1,000"), "is text that is not an integer"),
            (json!(true), "is a boolean, not an integer"),
            (json!([1]), "is an array, not an integer"),
            (json!({}), "is an object, not an integer"),
        ];
        for (v, reason) in bad {
            assert_eq!(one(Cast::Integer, v.clone()), Err(reason), "{v}");
        }
    }

    #[test]
    fn number_cast() {
        let ok = [
            (json!(42), json!(42)),
            (json!(1.25), json!(1.25)),
            (json!("1.25"), json!(1.25)),
            (json!(" 7 "), json!(7)),
            (json!("-0.5e1"), json!(-5.0)),
            (json!(".5"), json!(0.5)),
            (json!(""), Value::Null),
        ];
        for (v, want) in ok {
            assert_eq!(one(Cast::Number, v.clone()), Ok(want), "{v}");
        }
        let bad = [
            (json!("abc"), "is text that is not a number"),
            (json!("infinity"), "is text that is not a number"),
            (json!("-inf"), "is text that is not a number"),
            (json!("1e999"), "is text that is not a number"),
            (json!(false), "is a boolean, not a number"),
            (json!([]), "is an array, not a number"),
            (json!({}), "is an object, not a number"),
        ];
        for (v, reason) in bad {
            assert_eq!(one(Cast::Number, v.clone()), Err(reason), "{v}");
        }
    }

    #[test]
    fn boolean_cast() {
        for t in ["true", "TRUE", "t", "Yes", "y", "1", "on", " true "] {
            assert_eq!(one(Cast::Boolean, json!(t)), Ok(json!(true)), "{t}");
        }
        for f in ["false", "F", "no", "N", "0", "OFF"] {
            assert_eq!(one(Cast::Boolean, json!(f)), Ok(json!(false)), "{f}");
        }
        assert_eq!(one(Cast::Boolean, json!(true)), Ok(json!(true)));
        assert_eq!(one(Cast::Boolean, json!(1)), Ok(json!(true)));
        assert_eq!(one(Cast::Boolean, json!(0.0)), Ok(json!(false)));
        assert_eq!(one(Cast::Boolean, json!("")), Ok(Value::Null));
        let bad = [
            (json!(2), "is a number other than 0 or 1, not a boolean"),
            (
                json!("maybe"),
                "is text that is not a boolean (true/false, yes/no, on/off, 1/0)",
            ),
            (json!([true]), "is an array, not a boolean"),
            (json!({}), "is an object, not a boolean"),
        ];
        for (v, reason) in bad {
            assert_eq!(one(Cast::Boolean, v.clone()), Err(reason), "{v}");
        }
    }

    #[test]
    fn timestamp_cast() {
        let ok = [
            ("2026-02-24T14:23:05Z", "2026-02-24T14:23:05Z"),
            ("2026-02-24T14:23:05.5+01:00", "2026-02-24T13:23:05.500000Z"),
            ("2026-02-24t14:23:05z", "2026-02-24T14:23:05Z"),
            ("2026-02-24 14:23:05-02:30", "2026-02-24T16:53:05Z"),
            ("2026-02-24", "2026-02-24T00:00:00Z"),
            (" 2026-02-24T00:00:00Z ", "2026-02-24T00:00:00Z"),
            ("1700000000", "2023-11-14T22:13:20Z"),
            ("1700000000000", "2023-11-14T22:13:20Z"),
            ("1700000000.25", "2023-11-14T22:13:20.250000Z"),
            ("0", "1970-01-01T00:00:00Z"),
            ("-86400", "1969-12-31T00:00:00Z"),
        ];
        for (v, want) in ok {
            assert_eq!(one(Cast::Timestamp, json!(v)), Ok(json!(want)), "{v}");
        }
        assert_eq!(
            one(Cast::Timestamp, json!(1_700_000_000)),
            Ok(json!("2023-11-14T22:13:20Z"))
        );
        assert_eq!(
            one(Cast::Timestamp, json!(1_700_000_000_123_i64)),
            Ok(json!("2023-11-14T22:13:20.123000Z"))
        );
        assert_eq!(
            one(Cast::Timestamp, json!(1_700_000_000.5)),
            Ok(json!("2023-11-14T22:13:20.500000Z"))
        );
        // The largest seconds, the smallest milliseconds.
        assert_eq!(
            one(Cast::Timestamp, json!(99_999_999_999_i64)),
            Ok(json!("5138-11-16T09:46:39Z"))
        );
        assert_eq!(
            one(Cast::Timestamp, json!(100_000_000_000_i64)),
            Ok(json!("1973-03-03T09:46:40Z"))
        );
        assert_eq!(
            one(Cast::Timestamp, json!(253_402_300_799_999_i64)),
            Ok(json!("9999-12-31T23:59:59.999000Z"))
        );
        assert_eq!(
            one(Cast::Timestamp, json!(-62_135_596_800_000_i64)),
            Ok(json!("0001-01-01T00:00:00Z"))
        );
        assert_eq!(one(Cast::Timestamp, json!("")), Ok(Value::Null));
        let range = "is out of range for a timestamp (years 1 to 9999)";
        let bad = [
            (json!(253_402_300_800_000_i64), range),
            (json!(-62_135_596_800_001_i64), range),
            (json!(i64::MAX), range),
            (json!(i64::MIN), range),
            (json!(u64::MAX), range),
            (json!(1e300), range),
            (json!("1700000000000000"), range),
            (
                json!("yesterday"),
                "is text that is not an RFC 3339 timestamp or Unix time",
            ),
            (
                json!("2026-02-30T00:00:00Z"),
                "is text that is not an RFC 3339 timestamp or Unix time",
            ),
            (
                json!("2026-02-24T10:00:00"),
                "is text that is not an RFC 3339 timestamp or Unix time",
            ),
            (
                json!("nan"),
                "is text that is not an RFC 3339 timestamp or Unix time",
            ),
            (json!(true), "is a boolean, not a timestamp"),
            (json!([]), "is an array, not a timestamp"),
            (json!({}), "is an object, not a timestamp"),
        ];
        for (v, reason) in bad {
            assert_eq!(one(Cast::Timestamp, v.clone()), Err(reason), "{v}");
        }
        // Odd text never panics.
        for v in [
            "2026-02-24Té",
            "2026-02-24T10:00:00+é:00",
            "2026-02-24T1é:00:00Z",
            "éééééééééééé",
            "2026-02-24T10:00:00.",
            "-",
            "+",
            ".",
        ] {
            assert!(one(Cast::Timestamp, json!(v)).is_err(), "{v}");
        }
    }

    #[test]
    fn json_cast_keeps_the_value() {
        for v in [
            json!(1),
            json!("a"),
            json!([1, { "b": null }]),
            json!({ "c": true }),
        ] {
            assert_eq!(one(Cast::Json, v.clone()), Ok(v));
        }
        let m = mapping(json!({ "fields": [{ "source": "a", "target": "b" }] }));
        assert_eq!(m.spec().fields[0].cast, Cast::Json);
        assert_eq!(
            m.apply(&json!({ "id": 1, "a": "" })).unwrap().data,
            json!({ "b": "" })
        );
    }

    #[test]
    fn cast_failures_name_the_target_never_the_value() {
        let m = mapping(json!({
            "fields": [
                { "source": "email", "target": "contact.email", "cast": "string" },
                { "source": "age", "target": "age", "cast": "integer" },
            ]
        }));
        let e = m
            .apply(&json!({ "id": "c-1", "email": "ann@example.com", "age": "ann@example.com" }))
            .unwrap_err();
        assert_eq!(e.external_id.as_deref(), Some("c-1"));
        assert_eq!(e.message, "`age` is text that is not an integer");
        assert!(!e.to_string().contains("example.com"));
    }

    #[test]
    fn missing_values_take_the_default_else_fail_when_required_else_null() {
        let m = mapping(json!({
            "fields": [
                { "source": "qty", "target": "qty", "cast": "integer", "default": "3" },
                { "source": "flag", "target": "flag", "cast": "boolean", "default": "yes" },
                { "source": "note", "target": "note", "cast": "string" },
                { "source": "seen", "target": "seen", "cast": "timestamp", "default": 0 },
                { "source": "sku", "target": "sku", "cast": "string", "required": true, "default": "none" },
            ]
        }));
        assert_eq!(
            m.spec().fields[0].default,
            Some(json!("3")),
            "the spec keeps the default as written"
        );
        for record in [
            json!({ "id": 1 }),
            json!({ "id": 1, "qty": null, "flag": null, "note": null, "seen": null }),
            json!({ "id": 1, "qty": "", "flag": " ", "seen": "" }),
        ] {
            assert_eq!(
                m.apply(&record).unwrap().data,
                json!({ "qty": 3, "flag": true, "note": null, "seen": "1970-01-01T00:00:00Z", "sku": "none" }),
                "{record}"
            );
        }
        let strict = mapping(json!({
            "fields": [{ "source": "qty", "target": "qty", "cast": "integer", "required": true }]
        }));
        for record in [
            json!({ "id": 1 }),
            json!({ "id": 1, "qty": null }),
            json!({ "id": 1, "qty": "  " }),
        ] {
            assert_eq!(
                strict.apply(&record).unwrap_err().message,
                "`qty` is required and the record has no value for it"
            );
        }
        // An empty string is a value for `string`.
        let s = mapping(json!({
            "fields": [{ "source": "a", "target": "a", "cast": "string", "required": true }]
        }));
        assert_eq!(
            s.apply(&json!({ "id": 1, "a": "" })).unwrap().data,
            json!({ "a": "" })
        );
    }

    #[test]
    fn keep_unmapped_copies_the_other_top_level_fields() {
        let m = mapping(json!({
            "fields": [
                { "source": "title", "target": "name" },
                { "source": "variants[0].sku", "target": "sku" },
                { "source": "price", "target": "extra.price" },
            ],
            "keepUnmapped": true
        }));
        let record = json!({
            "id": 5, "title": "T", "variants": [{ "sku": "S" }], "price": 1,
            "color": "red", "name": "overwritten", "extra": "lost", "tags": ["a"]
        });
        let want = json!({
            "id": 5, "name": "T", "sku": "S", "extra": { "price": 1 },
            "color": "red", "tags": ["a"]
        });
        assert_eq!(m.apply(&record).unwrap().data, want);
        assert_eq!(m.apply_owned(record).unwrap().data, want);
        // Without it only the targets remain.
        let only = mapping(json!({ "fields": [{ "source": "title", "target": "name" }] }));
        assert_eq!(
            only.apply(&json!({ "id": 5, "title": "T", "color": "red" }))
                .unwrap()
                .data,
            json!({ "name": "T" })
        );
        assert_eq!(
            only.apply_owned(json!({ "id": 5, "title": "T", "color": "red" }))
                .unwrap()
                .data,
            json!({ "name": "T" })
        );
        // Errors are the same either way.
        let bad = json!({ "id": "x", "title": "T" });
        let strict = mapping(json!({
            "fields": [{ "source": "n", "target": "n", "required": true }],
            "keepUnmapped": true
        }));
        assert_eq!(
            strict.apply(&bad).unwrap_err(),
            strict.apply_owned(bad).unwrap_err()
        );
    }

    #[test]
    fn deletion_markers() {
        let m = mapping(json!({
            "deletedPath": "meta.deleted",
            "fields": [{ "source": "n", "target": "n", "required": true }]
        }));
        let deleted = |v: Value| {
            m.apply_owned(json!({ "id": 1, "n": 1, "meta": { "deleted": v } }))
                .unwrap()
                .deleted
        };
        for yes in [
            json!(true),
            json!(1),
            json!(-2.5),
            json!("2026-01-01T00:00:00Z"),
            json!("yes"),
            json!("TRUE"),
            json!([0]),
            json!({ "at": 1 }),
        ] {
            assert!(deleted(yes.clone()), "{yes}");
        }
        for no in [
            json!(false),
            json!(0),
            json!(0.0),
            json!(""),
            json!(" "),
            json!("false"),
            json!("0"),
            json!("no"),
            json!([]),
            json!({}),
            Value::Null,
        ] {
            assert!(!deleted(no.clone()), "{no}");
        }
        assert!(!m.apply(&json!({ "id": 1, "n": 1 })).unwrap().deleted);
        // The identity mapping with a marker.
        let id = mapping(json!({ "deletedPath": "gone" }));
        assert_eq!(
            id.apply(&json!({ "id": 2, "gone": true })).unwrap(),
            Mapped {
                external_id: "2".into(),
                data: Value::Null,
                deleted: true
            }
        );
        assert_eq!(
            id.apply(&json!({ "id": 2, "gone": false })).unwrap().data,
            json!({ "id": 2, "gone": false })
        );
    }

    #[test]
    fn preview_maps_each_record_on_its_own() {
        let m = mapping(json!({
            "fields": [{ "source": "n", "target": "n", "cast": "integer" }]
        }));
        let out = m.preview(&[
            json!({ "id": 1, "n": "5" }),
            json!({ "n": 1 }),
            json!({ "id": 3, "n": "x" }),
        ]);
        assert_eq!(out.len(), 3);
        assert_eq!(out[0].as_ref().unwrap().data, json!({ "n": 5 }));
        assert_eq!(out[1].as_ref().unwrap_err().external_id, None);
        assert_eq!(
            out[2].as_ref().unwrap_err().external_id.as_deref(),
            Some("3")
        );
    }

    #[test]
    fn the_schema_is_the_written_form() {
        let schema = serde_json::to_value(schemars::schema_for!(FieldMapping)).unwrap();
        let props = &schema["properties"];
        for key in ["idPath", "deletedPath", "fields", "keepUnmapped"] {
            assert!(props.get(key).is_some(), "{key}: {schema}");
        }
        assert_eq!(schema["additionalProperties"], json!(false), "{schema}");
    }
}
