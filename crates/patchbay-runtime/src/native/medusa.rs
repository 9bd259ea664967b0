//! `sync_medusa_products`, `sync_medusa_customers`, `sync_medusa_orders`,
//! `sync_medusa_inventory`: MedusaJS (v2) through its Admin API
//! (<https://docs.medusajs.com/api/admin>).
//!
//! Credentials (the bundle's): `medusaApiUrl` (the backend's address; a path
//! prefix is kept) and `medusaApiKey`, a secret API key sent as
//! `Authorization: Basic base64("<key>:")`. Requests go only through the
//! guarded [`HttpClient`], to the host of `medusaApiUrl` (the manifest's
//! `network_hosts = ["{medusaApiUrl}"]`).
//!
//! | integration | reads | writes |
//! | --- | --- | --- |
//! | `sync_medusa_products` | `products` (`GET /admin/products`), `variants` (each product's variants, `fields=id,updated_at,*variants`, one record per variant with its `product_id`) | — |
//! | `sync_medusa_customers` | `customers` (`GET /admin/customers`, `fields=*addresses`) | — |
//! | `sync_medusa_orders` | `orders` (`GET /admin/orders`) | `order_status` |
//! | `sync_medusa_inventory` | `inventory_levels` (`GET /admin/inventory-items`, `fields=id,sku,updated_at,*location_levels`, one record per location level with its `inventory_item_id` and the item's `sku`) | `inventory_levels` |
//!
//! **Incremental reads, keyset-safe.** Medusa's lists page with `limit` and
//! `offset` and sort by one field (`order=updated_at`); offsets alone lose or
//! repeat records while data changes, and records sharing an `updated_at`
//! come back in no fixed order. So the cursor is a position in `updated_at`,
//! not an offset — JSON `{ "u": <updated_at>, "ids": [...], "n": …, "c": … }`:
//! 1. A page is `updated_at[$gte]=<u>&order=updated_at&offset=0&limit=PAGE`.
//!    Records at exactly `u` whose ids the cursor lists were read already
//!    and are skipped. The next cursor is the page's last `updated_at` with
//!    the ids read at it (at most [`PAGE`]). Every `updated_at` before the
//!    page's last is complete (the page runs past it), so nothing between is
//!    lost; a record changed meanwhile moves to a later `updated_at` and is
//!    read again there.
//! 2. `$gte` (not `$gt`) because Medusa prints milliseconds while its
//!    database keeps microseconds: `$gt=<printed>` would match the same
//!    records again.
//! 3. A full page that is all one `updated_at` (a bulk import) cannot move
//!    the position: those records are read as a group —
//!    `updated_at[$gte]=<u>&updated_at[$lt]=<u + 1 ms>&order=id`, by offset
//!    `n` within the group, which `id` orders totally. When the group's
//!    `count` shrinks between pages (records changed, moving out of it), the
//!    offset steps back by as many, so none is skipped (a few may come
//!    twice; the store keeps one version per id). After the group, the
//!    position is `u + 1 ms`.
//!
//! Whether more pages follow is told by the answer's `limit` and `count`, so
//! a store (or a proxy) that caps the page size is read to the end too.
//!
//! A read makes requests until it has records (a page of products without
//! variants yields none) or the stream is exhausted, at most
//! [`MAX_REQUESTS_PER_READ`]. The last batch of a run carries its cursor;
//! the next read (one request) finds nothing new and ends the run. `total`
//! is Medusa's `count` on the first page of a full import (`products`,
//! `customers`, `orders`).
//!
//! Known limits: a record written with an `updated_at` earlier than a
//! position already passed (a long transaction committing late) is not seen
//! until it changes again. A variant's or a location level's own change is
//! seen when its product or inventory item changes: Medusa filters those
//! lists by the parent's `updated_at` (reset the stream's cursor for a full
//! re-read).
//!
//! **Writes.** `inventory_levels` records `{ "inventory_item_id",
//! "location_id", "stocked_quantity" }` → `POST
//! /admin/inventory-items/{id}/location-levels/{location_id}` with `{
//! "stocked_quantity": n }`; the written record's external id is the level's
//! id. `order_status` records `{ "id", "status": "completed" | "canceled" }`
//! (`cancelled` accepted) → `POST /admin/orders/{id}/complete` or `POST
//! /admin/orders/{id}/cancel`; when Medusa refuses because the order
//! already has that status (a batch sent again), it counts as written.
//! Records are written one by one: a malformed record, or one Medusa refuses
//! with 400, 404, 409 or 422, is a per-record failure and the others are
//! written. Both writes set a state, so a batch sent again after a
//! transient error changes nothing twice.
//!
//! **Errors.** 401/403 → [`ConnectorError::Auth`]; 429 →
//! [`ConnectorError::RateLimited`] with `Retry-After`; 408, 5xx, timeouts
//! and connection failures → [`ConnectorError::Transient`]; other 4xx →
//! [`ConnectorError::Fatal`] with Medusa's `type` and `message`. Messages
//! never carry the API key, nor more of the URL than its host.

use std::time::Instant;

use base64::Engine as _;
use patchbay_core::{HostRule, LogLevel, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::contract::{
    Batch, CallContext, Connector, ConnectorError, Health, RecordFailure, WriteOutcome,
    WrittenRecord,
};
use crate::http::{HttpClient, HttpError, HttpRequest, HttpResponse};

/// Records asked for per page (Medusa's default is 50; it documents no
/// maximum, and 100 stays well inside what a store answers quickly).
pub const PAGE: usize = 100;
/// Requests one `read` makes at most while its pages yield no records.
pub const MAX_REQUESTS_PER_READ: usize = 50;
/// The credential fields.
const URL_FIELD: &str = "medusaApiUrl";
const KEY_FIELD: &str = "medusaApiKey";
/// A cursor lists at most this many ids (a page's worth, unless the store
/// sends more than it was asked for).
const MAX_CURSOR_IDS: usize = 10 * PAGE;
/// Medusa's own error message is cut to this many characters.
const MAX_DETAIL_CHARS: usize = 300;

/// A member of the MedusaJS bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MedusaPart {
    Products,
    Customers,
    Orders,
    Inventory,
}

impl MedusaPart {
    /// Every member, with its integration id.
    pub const ALL: [(&'static str, MedusaPart); 4] = [
        ("sync_medusa_products", MedusaPart::Products),
        ("sync_medusa_customers", MedusaPart::Customers),
        ("sync_medusa_orders", MedusaPart::Orders),
        ("sync_medusa_inventory", MedusaPart::Inventory),
    ];

    /// The streams it reads.
    pub fn read_streams(self) -> &'static [&'static str] {
        match self {
            MedusaPart::Products => &["products", "variants"],
            MedusaPart::Customers => &["customers"],
            MedusaPart::Orders => &["orders"],
            MedusaPart::Inventory => &["inventory_levels"],
        }
    }

    /// The streams it writes.
    pub fn write_streams(self) -> &'static [&'static str] {
        match self {
            MedusaPart::Products | MedusaPart::Customers => &[],
            MedusaPart::Orders => &["order_status"],
            MedusaPart::Inventory => &["inventory_levels"],
        }
    }

    /// The list `check` asks one record of, and what it holds.
    fn check_list(self) -> (ListSpec, &'static str) {
        let (stream, noun) = match self {
            MedusaPart::Products => ("products", "products"),
            MedusaPart::Customers => ("customers", "customers"),
            MedusaPart::Orders => ("orders", "orders"),
            MedusaPart::Inventory => ("inventory_levels", "inventory items"),
        };
        (spec(self, stream).unwrap_or(PRODUCTS), noun)
    }
}

/// One member's connector: how it reads and writes is told at the top of
/// `native/medusa.rs`.
#[derive(Debug, Clone)]
pub struct Medusa {
    http: HttpClient,
    part: MedusaPart,
    rules: Vec<HostRule>,
}

impl Medusa {
    pub fn new(http: &HttpClient, part: MedusaPart) -> Medusa {
        Medusa {
            http: http.clone(),
            part,
            // As the manifest declares: `network_hosts = ["{medusaApiUrl}"]`.
            rules: vec![HostRule::FromField(URL_FIELD.to_owned())],
        }
    }

    pub fn part(&self) -> MedusaPart {
        self.part
    }
}

// ---------------------------------------------------------------------------
// What each stream lists.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// A record per listed record.
    Whole,
    /// A record per variant of each listed product.
    Variants,
    /// A record per location level of each listed inventory item.
    Levels,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ListSpec {
    path: &'static str,
    /// The list's key in Medusa's answer.
    key: &'static str,
    fields: Option<&'static str>,
    shape: Shape,
}

const PRODUCTS: ListSpec = ListSpec {
    path: "/admin/products",
    key: "products",
    fields: None,
    shape: Shape::Whole,
};

fn spec(part: MedusaPart, stream: &str) -> Option<ListSpec> {
    Some(match (part, stream) {
        (MedusaPart::Products, "products") => PRODUCTS,
        (MedusaPart::Products, "variants") => ListSpec {
            fields: Some("id,updated_at,*variants"),
            shape: Shape::Variants,
            ..PRODUCTS
        },
        (MedusaPart::Customers, "customers") => ListSpec {
            path: "/admin/customers",
            key: "customers",
            fields: Some("*addresses"),
            shape: Shape::Whole,
        },
        (MedusaPart::Orders, "orders") => ListSpec {
            path: "/admin/orders",
            key: "orders",
            fields: None,
            shape: Shape::Whole,
        },
        (MedusaPart::Inventory, "inventory_levels") => ListSpec {
            path: "/admin/inventory-items",
            key: "inventory_items",
            fields: Some("id,sku,updated_at,*location_levels"),
            shape: Shape::Levels,
        },
        _ => return None,
    })
}

// ---------------------------------------------------------------------------
// Talking to Medusa.

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn query(params: &[(&str, String)]) -> String {
    params
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Why a request did not succeed.
#[derive(Debug)]
enum Failure {
    /// Medusa refused this one request (400, 404, 409, 422): for a write,
    /// that record's failure.
    Refused { status: u16, message: String },
    /// Anything else: the whole call fails.
    Stop(ConnectorError),
}

impl Failure {
    fn into_error(self) -> ConnectorError {
        match self {
            Failure::Refused { message, .. } => ConnectorError::fatal(message),
            Failure::Stop(e) => e,
        }
    }
}

/// `Retry-After` in seconds (Medusa sends seconds), as milliseconds.
fn retry_after_ms(response: &HttpResponse) -> Option<u64> {
    let value = response.header("retry-after")?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(secs.saturating_mul(1000));
    }
    value
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        // A sane bound first: the cast cannot overflow.
        .map(|s| s.min(86_400.0))
        .map(|s| {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let ms = (s * 1000.0).ceil() as u64;
            ms
        })
}

/// Medusa's error `type` and `message`, as one line.
fn detail(body: &[u8]) -> String {
    let parsed: Option<Map<String, Value>> = serde_json::from_slice(body).ok();
    let text = |k: &str| {
        parsed
            .as_ref()
            .and_then(|o| o.get(k))
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
    };
    let line = match (text("message"), text("type")) {
        (Some(m), Some(t)) => format!("{m} ({t})"),
        (Some(m), None) => m.to_owned(),
        (None, Some(t)) => t.to_owned(),
        (None, None) => "no error message".to_owned(),
    };
    let line: String = line
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    match line.char_indices().nth(MAX_DETAIL_CHARS) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line,
    }
}

/// One page of a list: its records, Medusa's `count` of every match, and
/// the page size in effect.
struct Page {
    items: Vec<Value>,
    count: Option<u64>,
    limit: usize,
}

/// One call's view of Medusa: where it is, how to authenticate, until when.
struct Api<'a> {
    http: &'a HttpClient,
    rules: &'a [HostRule],
    ctx: &'a CallContext,
    base: String,
    authorization: String,
    /// The key and its encoded form, never to appear in a message.
    secrets: Vec<String>,
    deadline: Instant,
}

impl<'a> Api<'a> {
    fn new(connector: &'a Medusa, ctx: &'a CallContext) -> Result<Api<'a>, ConnectorError> {
        let url = ctx
            .credentials
            .text(URL_FIELD)
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .ok_or_else(|| ConnectorError::invalid("no Medusa API URL is configured"))?;
        let lower = url.to_ascii_lowercase();
        if !(lower.starts_with("https://") || lower.starts_with("http://"))
            || url.contains(['?', '#'])
            || url.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(ConnectorError::invalid(
                "the Medusa API URL is not an http(s) address without query or fragment",
            ));
        }
        let key = ctx
            .credentials
            .text(KEY_FIELD)
            .filter(|k| !k.trim().is_empty())
            .ok_or_else(|| ConnectorError::invalid("no Medusa API key is configured"))?;
        if key.chars().any(char::is_control) {
            return Err(ConnectorError::invalid(
                "the Medusa API key contains control characters",
            ));
        }
        let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{key}:"));
        // Stop a little before the host's own deadline, to report why.
        let budget = ctx.deadline.mul_f64(0.95);
        Ok(Api {
            http: &connector.http,
            rules: &connector.rules,
            ctx,
            base: url.trim_end_matches('/').to_owned(),
            authorization: format!("Basic {encoded}"),
            secrets: [key.to_owned(), encoded]
                .into_iter()
                .filter(|s| s.len() >= 6)
                .collect(),
            deadline: Instant::now() + budget,
        })
    }

    fn scrub(&self, message: String) -> String {
        self.secrets
            .iter()
            .fold(message, |m, s| m.replace(s.as_str(), "[redacted]"))
    }

    fn transport(&self, e: HttpError) -> ConnectorError {
        match e {
            HttpError::Denied(m) => ConnectorError::fatal(self.scrub(format!(
                "the request to Medusa was refused by Patchbay: {m}"
            ))),
            HttpError::Invalid(_) => {
                ConnectorError::invalid("the Medusa API URL cannot be used for a request")
            }
            HttpError::Timeout(m) => ConnectorError::transient(
                self.scrub(format!("Medusa did not answer in time ({m})")),
            ),
            HttpError::Failed(m) => {
                ConnectorError::transient(self.scrub(format!("cannot reach Medusa: {m}")))
            }
        }
    }

    fn failure(&self, response: &HttpResponse) -> Failure {
        let status = response.status;
        let detail = self.scrub(detail(&response.body));
        match status {
            401 | 403 => Failure::Stop(ConnectorError::Auth {
                message: format!(
                    "Medusa refused the API key (HTTP {status}: {detail}); use a secret API key \
                     of an admin user that is not revoked"
                ),
            }),
            429 => Failure::Stop(ConnectorError::RateLimited {
                message: format!("Medusa answered HTTP 429: {detail}"),
                retry_after_ms: retry_after_ms(response),
            }),
            408 | 500..=599 => Failure::Stop(ConnectorError::transient(format!(
                "Medusa answered HTTP {status}: {detail}"
            ))),
            400 | 404 | 409 | 422 => Failure::Refused {
                status,
                message: format!("Medusa refused the request (HTTP {status}): {detail}"),
            },
            300..=399 => Failure::Stop(ConnectorError::fatal(format!(
                "Medusa answered with a redirect (HTTP {status}): enter the final address of \
                 its backend as the Medusa API URL"
            ))),
            _ => Failure::Stop(ConnectorError::fatal(format!(
                "Medusa answered HTTP {status}: {detail}"
            ))),
        }
    }

    /// `method path_and_query` with an optional JSON body; the JSON answer.
    async fn call(
        &self,
        method: &str,
        path_and_query: &str,
        body: Option<&Value>,
    ) -> Result<Value, Failure> {
        let mut headers = vec![
            ("authorization".to_owned(), self.authorization.clone()),
            ("accept".to_owned(), "application/json".to_owned()),
        ];
        let body = match body {
            Some(b) => {
                headers.push(("content-type".to_owned(), "application/json".to_owned()));
                b.to_string().into_bytes()
            }
            None => Vec::new(),
        };
        let request = HttpRequest {
            method: method.to_owned(),
            url: format!("{}{path_and_query}", self.base),
            headers,
            body,
            timeout: None,
        };
        let response = self
            .http
            .fetch(self.rules, self.ctx, request, self.deadline)
            .await
            .map_err(|e| Failure::Stop(self.transport(e)))?;
        if !(200..300).contains(&response.status) {
            return Err(self.failure(&response));
        }
        serde_json::from_slice(&response.body).map_err(|_| {
            Failure::Stop(ConnectorError::fatal(
                "Medusa's answer is not JSON: is the Medusa API URL the address of its backend \
                 (not of the storefront or the admin dashboard)?",
            ))
        })
    }

    /// One page of a list.
    async fn list(
        &self,
        spec: &ListSpec,
        params: &[(&str, String)],
    ) -> Result<Page, ConnectorError> {
        let answer = self
            .call("GET", &format!("{}?{}", spec.path, query(params)), None)
            .await
            .map_err(Failure::into_error)?;
        let Value::Object(mut answer) = answer else {
            return Err(ConnectorError::fatal(
                "Medusa's answer is not a JSON object",
            ));
        };
        let count = answer.get("count").and_then(Value::as_u64);
        // A store that caps `limit` says so in its answer.
        let limit = answer
            .get("limit")
            .and_then(Value::as_u64)
            .and_then(|l| usize::try_from(l).ok())
            .filter(|l| (1..PAGE).contains(l))
            .unwrap_or(PAGE);
        match answer.remove(spec.key) {
            Some(Value::Array(items)) => Ok(Page {
                items,
                count,
                limit,
            }),
            _ => Err(ConnectorError::fatal(format!(
                "Medusa's answer has no `{}` list",
                spec.key
            ))),
        }
    }
}

// ---------------------------------------------------------------------------
// Cursors.

/// Milliseconds since the epoch of an RFC 3339 timestamp.
fn millis(text: &str) -> Option<i64> {
    Timestamp::parse_rfc3339(text)
        .ok()
        .map(|t| t.as_micros().div_euclid(1000))
}

/// Milliseconds as Medusa prints them: `2024-05-01T10:00:00.123Z`.
fn iso_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let tod = secs.rem_euclid(86_400);
    format!(
        "{}T{:02}:{:02}:{:02}.{:03}Z",
        Timestamp::from_micros(ms.saturating_mul(1000)).date(),
        tod / 3600,
        tod % 3600 / 60,
        tod % 60,
        ms.rem_euclid(1000)
    )
}

/// Where a stream's read stands (see the module's documentation).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Cursor {
    /// Records from this `updated_at` on (milliseconds, as Medusa prints it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    u: Option<String>,
    /// Records at exactly `u` already read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    ids: Vec<String>,
    /// Inside the group of records at `u`, ordered by id: how many are passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    n: Option<u64>,
    /// The group's `count` when `n` was taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    c: Option<u64>,
}

impl Cursor {
    fn parse(text: &str) -> Result<Cursor, ConnectorError> {
        let bad = || ConnectorError::invalid("the cursor is not one this connector wrote");
        let cursor: Cursor = serde_json::from_str(text).map_err(|_| bad())?;
        let valid_at = cursor.u.as_deref().is_none_or(|u| millis(u).is_some());
        if !valid_at
            || cursor.ids.len() > MAX_CURSOR_IDS
            || (cursor.n.is_some() && cursor.u.is_none())
        {
            return Err(bad());
        }
        Ok(cursor)
    }

    /// `u` in milliseconds.
    fn at(&self) -> Option<i64> {
        self.u.as_deref().and_then(millis)
    }

    fn text(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// What one request of a read gave.
#[derive(Debug, Default)]
struct Step {
    records: Vec<Value>,
    failures: Vec<RecordFailure>,
    next: Cursor,
    /// Nothing more to read for now.
    done: bool,
    count: Option<u64>,
}

fn id_of(record: &Value) -> Option<String> {
    record
        .get("id")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

fn millis_of(record: &Value) -> Option<i64> {
    record
        .get("updated_at")
        .and_then(Value::as_str)
        .and_then(millis)
}

fn unreadable(spec: &ListSpec, offset: u64, index: usize, id: Option<String>) -> RecordFailure {
    RecordFailure {
        position: format!("{} record {} from offset {offset}", spec.key, index + 1),
        external_id: id,
        message: "Medusa listed a record without an id or a valid `updated_at`".to_owned(),
    }
}

fn base_params(spec: &ListSpec, offset: u64, order: &str) -> Vec<(&'static str, String)> {
    let mut params = vec![
        ("limit", PAGE.to_string()),
        ("offset", offset.to_string()),
        ("order", order.to_owned()),
    ];
    if let Some(fields) = spec.fields {
        params.push(("fields", fields.to_owned()));
    }
    params
}

impl Medusa {
    /// Step 1 of the module's documentation: the page from `u` on.
    async fn step_from(
        &self,
        api: &Api<'_>,
        spec: &ListSpec,
        cursor: &Cursor,
        at: Option<i64>,
    ) -> Result<Step, ConnectorError> {
        let mut params = base_params(spec, 0, "updated_at");
        if let Some(u) = at {
            params.push(("updated_at[$gte]", iso_ms(u)));
        }
        let Page {
            items,
            count,
            limit,
        } = api.list(spec, &params).await?;
        // More than this page? (`count` covers a store capping `limit` silently.)
        let full = items.len() >= limit || count.is_some_and(|c| c > items.len() as u64);
        let mut step = Step {
            count,
            ..Step::default()
        };
        let mut keyed = Vec::with_capacity(items.len());
        for (index, item) in items.into_iter().enumerate() {
            match (id_of(&item), millis_of(&item)) {
                (Some(id), Some(ms)) => keyed.push((id, ms, item)),
                (id, _) => step.failures.push(unreadable(spec, 0, index, id)),
            }
        }
        let first = keyed.iter().map(|(_, ms, _)| *ms).min();
        let last = keyed.iter().map(|(_, ms, _)| *ms).max();
        let Some(last) = last else {
            step.next = cursor.clone();
            step.done = true;
            return Ok(step);
        };
        if full && first == Some(last) {
            // A whole page at one `updated_at`: read that group by id.
            api.ctx.log.push(
                LogLevel::Info,
                &format!(
                    "more than {limit} {} share the updated_at {}: reading them in id order",
                    spec.key,
                    iso_ms(last)
                ),
            );
            step.next = Cursor {
                u: Some(iso_ms(last)),
                ids: if at == Some(last) {
                    cursor.ids.clone()
                } else {
                    Vec::new()
                },
                n: Some(0),
                c: None,
            };
            return Ok(step);
        }
        let mut ids_at_last = Vec::new();
        for (id, ms, item) in keyed {
            if ms == last {
                ids_at_last.push(id.clone());
            }
            if !(Some(ms) == at && cursor.ids.contains(&id)) {
                step.records.push(item);
            }
        }
        step.next = Cursor {
            u: Some(iso_ms(last)),
            ids: ids_at_last,
            n: None,
            c: None,
        };
        step.done = !full;
        Ok(step)
    }

    /// Step 3: the next page of the group at `u`, in id order.
    async fn step_in_group(
        &self,
        api: &Api<'_>,
        spec: &ListSpec,
        cursor: &Cursor,
        at: i64,
        passed: u64,
    ) -> Result<Step, ConnectorError> {
        let params = |offset: u64| {
            let mut p = base_params(spec, offset, "id");
            p.push(("updated_at[$gte]", iso_ms(at)));
            p.push(("updated_at[$lt]", iso_ms(at + 1)));
            p
        };
        let mut offset = passed;
        let mut page = api.list(spec, &params(offset)).await?;
        if let (Some(before), Some(now)) = (cursor.c, page.count)
            && now < before
            && offset > 0
        {
            // Records left the group since the last page: those before the
            // offset moved up by as many places.
            offset = offset.saturating_sub(before - now);
            page = api.list(spec, &params(offset)).await?;
        }
        let Page {
            items,
            count,
            limit,
        } = page;
        let got = items.len();
        let group_done =
            got == 0 || (got < limit && count.is_none_or(|c| c <= offset + got as u64));
        let mut step = Step {
            count,
            ..Step::default()
        };
        for (index, item) in items.into_iter().enumerate() {
            match id_of(&item) {
                Some(id) if cursor.ids.contains(&id) => {}
                Some(_) => step.records.push(item),
                None => step.failures.push(unreadable(spec, offset, index, None)),
            }
        }
        step.next = if group_done {
            Cursor {
                u: Some(iso_ms(at + 1)),
                ..Cursor::default()
            }
        } else {
            Cursor {
                u: cursor.u.clone(),
                ids: cursor.ids.clone(),
                n: Some(offset + got as u64),
                c: count,
            }
        };
        Ok(step)
    }

    async fn read_list(
        &self,
        ctx: &CallContext,
        spec: ListSpec,
        cursor: Option<&str>,
    ) -> Result<Batch, ConnectorError> {
        let api = Api::new(self, ctx)?;
        let start = match cursor {
            Some(text) => Cursor::parse(text)?,
            None => Cursor::default(),
        };
        let mut current = start.clone();
        let mut batch = Batch::default();
        let began = Instant::now();
        for request in 1.. {
            let step = match (current.n, current.at()) {
                (Some(passed), Some(at)) => {
                    self.step_in_group(&api, &spec, &current, at, passed)
                        .await?
                }
                (_, at) => self.step_from(&api, &spec, &current, at).await?,
            };
            if cursor.is_none() && request == 1 && spec.shape == Shape::Whole {
                batch.total = step.count;
            }
            batch.failures.extend(step.failures);
            flatten(spec.shape, step.records, &mut batch.records);
            current = step.next;
            if !batch.records.is_empty() || !batch.failures.is_empty() || step.done {
                break;
            }
            if request >= MAX_REQUESTS_PER_READ || began.elapsed() > ctx.deadline / 2 {
                ctx.log.push(
                    LogLevel::Info,
                    &format!(
                        "{request} pages of {} without records to sync; going on at the next run",
                        spec.key
                    ),
                );
                break;
            }
        }
        batch.next_cursor = (current != start).then(|| current.text());
        Ok(batch)
    }
}

/// The records a stream yields from the records Medusa listed.
fn flatten(shape: Shape, listed: Vec<Value>, out: &mut Vec<Value>) {
    let children = match shape {
        Shape::Whole => {
            out.extend(listed);
            return;
        }
        Shape::Variants => "variants",
        Shape::Levels => "location_levels",
    };
    for parent in listed {
        let Value::Object(mut parent) = parent else {
            continue;
        };
        let id = parent.get("id").cloned().unwrap_or(Value::Null);
        let sku = parent.get("sku").cloned().unwrap_or(Value::Null);
        let Some(Value::Array(list)) = parent.remove(children) else {
            continue;
        };
        for child in list {
            let Value::Object(mut child) = child else {
                continue;
            };
            if shape == Shape::Variants {
                child.insert("product_id".into(), id.clone());
            } else {
                child.insert("inventory_item_id".into(), id.clone());
                child.entry("sku").or_insert_with(|| sku.clone());
            }
            out.push(Value::Object(child));
        }
    }
}

// ---------------------------------------------------------------------------
// Writes.

fn text_field(record: &Map<String, Value>, key: &str) -> Result<String, String> {
    record
        .get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| format!("`{key}` is missing or not a text"))
}

fn quantity(value: Option<&Value>) -> Option<u64> {
    match value? {
        Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < 9.0e15)
                .map(|f| {
                    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                    let q = f as u64;
                    q
                })
        }),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn as_object(record: &Value) -> Result<&Map<String, Value>, String> {
    record
        .as_object()
        .ok_or_else(|| "the record is not a JSON object".to_owned())
}

impl Medusa {
    async fn write_levels(
        &self,
        api: &Api<'_>,
        records: &[Value],
    ) -> Result<WriteOutcome, ConnectorError> {
        let mut outcome = WriteOutcome::default();
        for (index, record) in records.iter().enumerate() {
            let parsed = as_object(record).and_then(|o| {
                Ok((
                    text_field(o, "inventory_item_id")?,
                    text_field(o, "location_id")?,
                    quantity(o.get("stocked_quantity")).ok_or_else(|| {
                        "`stocked_quantity` is not a whole number of 0 or more".to_owned()
                    })?,
                ))
            });
            let (item, location, stocked) = match parsed {
                Ok(p) => p,
                Err(message) => {
                    outcome.failed.push((index, message));
                    continue;
                }
            };
            let path = format!(
                "/admin/inventory-items/{}/location-levels/{}",
                encode(&item),
                encode(&location)
            );
            match api
                .call("POST", &path, Some(&json!({ "stocked_quantity": stocked })))
                .await
            {
                Ok(answer) => {
                    let level_id = answer
                        .pointer("/inventory_item/location_levels")
                        .and_then(Value::as_array)
                        .and_then(|levels| {
                            levels.iter().find(|l| {
                                l.get("location_id").and_then(Value::as_str)
                                    == Some(location.as_str())
                            })
                        })
                        .and_then(id_of);
                    outcome.written += 1;
                    outcome.results.push(WrittenRecord {
                        index,
                        external_id: level_id,
                        created: Some(false),
                    });
                }
                Err(Failure::Refused { message, .. }) => outcome.failed.push((index, message)),
                Err(Failure::Stop(e)) => return Err(e),
            }
        }
        Ok(outcome)
    }

    async fn write_status(
        &self,
        api: &Api<'_>,
        records: &[Value],
    ) -> Result<WriteOutcome, ConnectorError> {
        let mut outcome = WriteOutcome::default();
        for (index, record) in records.iter().enumerate() {
            let parsed = as_object(record).and_then(|o| {
                let id = text_field(o, "id")?;
                let status = match o.get("status").and_then(Value::as_str).map(str::trim) {
                    Some("completed") => "completed",
                    Some("canceled" | "cancelled") => "canceled",
                    _ => return Err("`status` is not `completed` or `canceled`".to_owned()),
                };
                Ok((id, status))
            });
            let (id, status) = match parsed {
                Ok(p) => p,
                Err(message) => {
                    outcome.failed.push((index, message));
                    continue;
                }
            };
            let action = if status == "completed" {
                "complete"
            } else {
                "cancel"
            };
            let path = format!("/admin/orders/{}/{action}", encode(&id));
            let result = match api.call("POST", &path, Some(&json!({}))).await {
                Ok(_) => Ok(()),
                Err(Failure::Refused {
                    status: 400 | 409,
                    message,
                }) => {
                    // Already so (a batch sent again)? Then it is written.
                    let now = api
                        .call(
                            "GET",
                            &format!("/admin/orders/{}?fields=id%2Cstatus", encode(&id)),
                            None,
                        )
                        .await;
                    match now {
                        Ok(order)
                            if order.pointer("/order/status").and_then(Value::as_str)
                                == Some(status) =>
                        {
                            Ok(())
                        }
                        Ok(_) | Err(Failure::Refused { .. }) => Err(message),
                        Err(Failure::Stop(e)) => return Err(e),
                    }
                }
                Err(Failure::Refused { message, .. }) => Err(message),
                Err(Failure::Stop(e)) => return Err(e),
            };
            match result {
                Ok(()) => {
                    outcome.written += 1;
                    outcome.results.push(WrittenRecord {
                        index,
                        external_id: Some(id),
                        created: Some(false),
                    });
                }
                Err(message) => outcome.failed.push((index, message)),
            }
        }
        Ok(outcome)
    }
}

#[async_trait::async_trait]
impl Connector for Medusa {
    async fn check(&self, ctx: &CallContext) -> Result<Health, ConnectorError> {
        let api = Api::new(self, ctx)?;
        let (spec, noun) = self.part.check_list();
        let Page { count, .. } = api
            .list(
                &spec,
                &[("limit", "1".to_owned()), ("fields", "id".to_owned())],
            )
            .await?;
        Ok(Health {
            ok: true,
            message: match count {
                Some(n) => format!("Medusa accepted the API key and lists {n} {noun}"),
                None => "Medusa accepted the API key".to_owned(),
            },
        })
    }

    async fn read(
        &self,
        ctx: &CallContext,
        stream: &str,
        cursor: Option<&str>,
    ) -> Result<Batch, ConnectorError> {
        let spec = spec(self.part, stream).ok_or_else(|| {
            ConnectorError::unsupported(format!(
                "reading stream `{stream}` (this integration reads {})",
                self.part.read_streams().join(", ")
            ))
        })?;
        self.read_list(ctx, spec, cursor).await
    }

    async fn write(
        &self,
        ctx: &CallContext,
        stream: &str,
        records: Vec<Value>,
    ) -> Result<WriteOutcome, ConnectorError> {
        if !self.part.write_streams().contains(&stream) {
            return Err(ConnectorError::unsupported(format!(
                "writing stream `{stream}`"
            )));
        }
        let api = Api::new(self, ctx)?;
        if self.part == MedusaPart::Orders {
            self.write_status(&api, &records).await
        } else {
            self.write_levels(&api, &records).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_at_millisecond_precision() {
        let ms = millis("2024-05-01T10:00:00.123456Z").unwrap();
        assert_eq!(iso_ms(ms), "2024-05-01T10:00:00.123Z");
        assert_eq!(iso_ms(ms + 1), "2024-05-01T10:00:00.124Z");
        assert_eq!(
            millis("2024-05-01T12:00:00.123+02:00"),
            millis("2024-05-01T10:00:00.123Z")
        );
        assert_eq!(iso_ms(0), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn queries_are_percent_encoded() {
        assert_eq!(
            query(&[
                ("updated_at[$gte]", "2024-05-01T10:00:00.000Z".to_owned()),
                ("fields", "id,*variants".to_owned()),
            ]),
            "updated_at%5B%24gte%5D=2024-05-01T10%3A00%3A00.000Z&fields=id%2C%2Avariants"
        );
        assert_eq!(encode("a/b?c"), "a%2Fb%3Fc");
    }

    #[test]
    fn cursors_are_checked() {
        let c = Cursor {
            u: Some("2024-05-01T10:00:00.000Z".into()),
            ids: vec!["prod_1".into()],
            n: None,
            c: None,
        };
        let back = Cursor::parse(&c.text()).unwrap();
        assert_eq!(back, c);
        assert_eq!(back.at(), millis("2024-05-01T10:00:00Z"));
        for bad in ["12", "{\"u\":\"yesterday\"}", "{\"n\":3}", "{\"x\":1}"] {
            assert!(Cursor::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn retry_after_is_read_in_seconds() {
        let r = |v: &str| HttpResponse {
            status: 429,
            headers: vec![("retry-after".into(), v.into())],
            body: Vec::new(),
        };
        assert_eq!(retry_after_ms(&r("7")), Some(7000));
        assert_eq!(retry_after_ms(&r("1.5")), Some(1500));
        assert_eq!(retry_after_ms(&r("Wed, 21 Oct 2015 07:28:00 GMT")), None);
    }

    #[test]
    fn medusa_errors_become_one_line() {
        assert_eq!(
            detail(br#"{"type":"not_found","message":"Order with id: x was not found"}"#),
            "Order with id: x was not found (not_found)"
        );
        assert_eq!(detail(b"<html>"), "no error message");
    }
}
