//! **A FAKE of MedusaJS's Admin API (v2), for tests only — not Medusa.**
//!
//! Medusa is a commercial, hosted (or self-hosted Node.js and PostgreSQL)
//! commerce backend that cannot run inside this repository's tests. This
//! module stands in for it: a small in-memory server that follows the wire
//! format Medusa documents at <https://docs.medusajs.com/api/admin>, so the
//! `sync_medusa_*` connectors can be tested end to end over real HTTP. It is
//! written from that documentation, not from Medusa's code; where the
//! documentation is silent the choice is named below. Passing against it
//! says the connector speaks the documented protocol — not that every
//! Medusa release behaves the same way.
//!
//! What it mirrors:
//! * **Auth**: a secret API key as `Authorization: Basic base64("<key>:")`;
//!   anything else is `401 { "type": "unauthorized", "message": "Unauthorized" }`.
//! * **Lists**: `GET /admin/products`, `/admin/customers`, `/admin/orders`,
//!   `/admin/inventory-items` with `limit` (default 50), `offset`, `order`
//!   (one field, ascending; `-field` descending; `id`, `created_at`,
//!   `updated_at`), `created_at[$op]` / `updated_at[$op]` filters (`$gt`,
//!   `$gte`, `$lt`, `$lte`, `$eq`), `id` filters and `fields`; the answer is
//!   `{ "<resource>": [...], "count": N, "offset": O, "limit": L }`, `count`
//!   being every match, not the page. An unknown query parameter is
//!   `400 invalid_data` ("Unrecognized fields"), as Medusa's validators do.
//! * **Relations** (`variants` of products, `location_levels` of inventory
//!   items) are included when `fields` asks for them (`*variants`,
//!   `+*variants`, `variants.*`). Stricter than Medusa, whose defaults may
//!   include them: a connector that forgets to ask is caught. Other `fields`
//!   are accepted and do not project.
//! * **Timestamps**: kept in microseconds (as PostgreSQL keeps them) and
//!   printed with milliseconds (`2024-05-01T10:00:00.123Z`, as JavaScript
//!   prints them), so records that print the same `updated_at` may still
//!   differ underneath — `updated_at[$gt]=<printed>` then still matches
//!   them, as it would against Medusa.
//! * **Ties**: records with the same sort value come back in an order that
//!   changes with every request (PostgreSQL does not promise one either), so
//!   offset pagination over ties is caught losing or repeating records.
//!   [`FakeMedusa::set_shuffle_ties`] turns that off.
//! * **Writes**: `POST /admin/inventory-items/{id}/location-levels/{location_id}`
//!   with `{ "stocked_quantity": n }` (updates the level and its
//!   `updated_at`; not the item's — a level is its own record),
//!   `POST /admin/orders/{id}/complete` and `POST /admin/orders/{id}/cancel`
//!   (`400 not_allowed` when the order already is, or cannot become, that),
//!   and `GET /admin/<resource>/{id}`. Unknown ids are
//!   `404 { "type": "not_found", "message": "… was not found" }`.
//! * **Faults** on demand ([`FakeMedusa::inject`]): `429` with
//!   `Retry-After`, and `500`.
//!
//! Every request is recorded ([`FakeMedusa::requests`]): method, path,
//! decoded query parameters, the `Authorization` header and the status
//! answered. Time stands still unless the test moves it
//! ([`FakeMedusa::set_clock`], [`FakeMedusa::advance`]): records created or
//! changed together share an `updated_at`.
//!
//! The server listens on `127.0.0.1` on a free port, in a thread of its
//! own (usable from synchronous and asynchronous tests alike), and stops
//! when the [`FakeMedusa`] is dropped.

use std::collections::VecDeque;
use std::hash::{Hash as _, Hasher as _};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::{Map, Value, json};

/// The fake's default clock: 2024-05-01T10:00:00.000Z.
const START_MICROS: i64 = 1_714_557_600_000_000;

/// A failure the next request answers with, whatever it asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// `429 Too Many Requests` with `Retry-After: <retry_after_secs>`.
    RateLimited { retry_after_secs: u64 },
    /// `500 Internal Server Error`.
    ServerError,
}

/// One request the fake received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenRequest {
    pub method: String,
    pub path: String,
    /// The raw query string, as sent.
    pub query: Option<String>,
    /// The query parameters, percent-decoded, in order.
    pub params: Vec<(String, String)>,
    pub authorization: Option<String>,
    pub body: Vec<u8>,
    /// The status the fake answered with.
    pub status: u16,
}

impl SeenRequest {
    /// The first value of a query parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The resources the fake holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Product,
    Customer,
    Order,
    InventoryItem,
}

impl Kind {
    const ALL: [Kind; 4] = [
        Kind::Product,
        Kind::Customer,
        Kind::Order,
        Kind::InventoryItem,
    ];

    /// The path segment under `/admin`.
    fn path(self) -> &'static str {
        match self {
            Kind::Product => "products",
            Kind::Customer => "customers",
            Kind::Order => "orders",
            Kind::InventoryItem => "inventory-items",
        }
    }

    /// The list's key in an answer.
    fn plural(self) -> &'static str {
        match self {
            Kind::InventoryItem => "inventory_items",
            other => other.path(),
        }
    }

    /// The key of one record in an answer.
    fn singular(self) -> &'static str {
        match self {
            Kind::Product => "product",
            Kind::Customer => "customer",
            Kind::Order => "order",
            Kind::InventoryItem => "inventory_item",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Kind::Product => "Product",
            Kind::Customer => "Customer",
            Kind::Order => "Order",
            Kind::InventoryItem => "Inventory item",
        }
    }

    /// The relation `fields` can ask for.
    fn children(self) -> Option<&'static str> {
        match self {
            Kind::Product => Some("variants"),
            Kind::InventoryItem => Some("location_levels"),
            Kind::Customer | Kind::Order => None,
        }
    }
}

/// One record (or a variant, a location level).
#[derive(Debug, Clone)]
struct Entity {
    id: String,
    created: i64,
    updated: i64,
    fields: Map<String, Value>,
    children: Vec<Entity>,
}

impl Entity {
    fn render(&self, kind: Kind, with_children: bool) -> Value {
        let mut o = self.fields.clone();
        o.insert("id".into(), Value::String(self.id.clone()));
        o.insert("created_at".into(), Value::String(iso_ms(self.created)));
        o.insert("updated_at".into(), Value::String(iso_ms(self.updated)));
        if let Some(key) = kind.children()
            && with_children
        {
            let children = self.children.iter().map(Entity::render_child).collect();
            o.insert(key.into(), Value::Array(children));
        }
        Value::Object(o)
    }

    fn render_child(&self) -> Value {
        let mut o = self.fields.clone();
        if let (Some(stocked), Some(reserved)) = (
            o.get("stocked_quantity").and_then(Value::as_i64),
            o.get("reserved_quantity").and_then(Value::as_i64),
        ) {
            o.insert("available_quantity".into(), json!(stocked - reserved));
        }
        o.insert("id".into(), Value::String(self.id.clone()));
        o.insert("created_at".into(), Value::String(iso_ms(self.created)));
        o.insert("updated_at".into(), Value::String(iso_ms(self.updated)));
        Value::Object(o)
    }
}

#[derive(Debug)]
struct State {
    clock: i64,
    next_id: u64,
    request_seq: u64,
    shuffle_ties: bool,
    max_limit: Option<usize>,
    products: Vec<Entity>,
    customers: Vec<Entity>,
    orders: Vec<Entity>,
    inventory: Vec<Entity>,
    faults: VecDeque<Fault>,
    requests: Vec<SeenRequest>,
}

impl State {
    fn collection(&mut self, kind: Kind) -> &mut Vec<Entity> {
        match kind {
            Kind::Product => &mut self.products,
            Kind::Customer => &mut self.customers,
            Kind::Order => &mut self.orders,
            Kind::InventoryItem => &mut self.inventory,
        }
    }

    /// A Medusa-style id: the prefix and a ULID-like 26 characters (time,
    /// then a counter), so ids made later sort later.
    fn new_id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        let ms = u64::try_from(self.clock.div_euclid(1000)).unwrap_or(0);
        format!(
            "{prefix}_{}{}",
            crockford(u128::from(ms), 10),
            crockford(u128::from(self.next_id), 16)
        )
    }

    fn entity(&mut self, prefix: &str, fields: Map<String, Value>) -> Entity {
        Entity {
            id: self.new_id(prefix),
            created: self.clock,
            updated: self.clock,
            fields,
            children: Vec::new(),
        }
    }

    fn find(&mut self, kind: Kind, id: &str) -> Option<&mut Entity> {
        self.collection(kind).iter_mut().find(|e| e.id == id)
    }
}

fn crockford(mut n: u128, width: usize) -> String {
    const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let mut out = vec![b'0'; width];
    for slot in out.iter_mut().rev() {
        *slot = ALPHABET[usize::try_from(n % 32).unwrap_or(0)];
        n /= 32;
    }
    String::from_utf8(out).unwrap_or_default()
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(o) => o,
        _ => Map::new(),
    }
}

/// The running fake. Dropping it stops the server.
#[derive(Debug)]
pub struct FakeMedusa {
    addr: SocketAddr,
    api_key: String,
    state: Arc<Mutex<State>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for FakeMedusa {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The `Authorization` header Medusa expects for a secret API key.
pub fn auth_header(api_key: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{api_key}:"))
    )
}

impl FakeMedusa {
    /// Starts a fake that accepts the secret API key `api_key`.
    pub fn start(api_key: &str) -> FakeMedusa {
        let listener =
            std::net::TcpListener::bind("127.0.0.1:0").expect("bind the fake Medusa's port");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let addr = listener.local_addr().expect("the fake Medusa's address");
        let state = Arc::new(Mutex::new(State {
            clock: START_MICROS,
            next_id: 0,
            request_seq: 0,
            shuffle_ties: true,
            max_limit: None,
            products: Vec::new(),
            customers: Vec::new(),
            orders: Vec::new(),
            inventory: Vec::new(),
            faults: VecDeque::new(),
            requests: Vec::new(),
        }));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let app = App {
            state: state.clone(),
            expected_auth: auth_header(api_key),
        };
        std::thread::Builder::new()
            .name("fake-medusa".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("the fake Medusa's runtime");
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener)
                        .expect("the fake Medusa's listener");
                    let router = axum::Router::new().fallback(
                        move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                            let app = app.clone();
                            async move { app.handle(&method, &uri, &headers, &body) }
                        },
                    );
                    let _ = axum::serve(listener, router)
                        .with_graceful_shutdown(async {
                            let _ = stopped.await;
                        })
                        .await;
                });
            })
            .expect("spawn the fake Medusa's thread");
        FakeMedusa {
            addr,
            api_key: api_key.to_owned(),
            state,
            stop: Some(stop),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`: what a tenant enters as the Medusa API URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn api_key(&self) -> &str {
        &self.api_key
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    // ---- Time.

    /// Sets the clock (RFC 3339, e.g. `2024-05-01T10:00:00.000Z`).
    pub fn set_clock(&self, at: &str) {
        let us = parse_iso(at).unwrap_or_else(|| panic!("`{at}` is not an RFC 3339 timestamp"));
        self.state().clock = us;
    }

    /// Moves the clock forward (microsecond precision).
    pub fn advance(&self, by: Duration) {
        let us = i64::try_from(by.as_micros()).unwrap_or(i64::MAX);
        let mut st = self.state();
        st.clock = st.clock.saturating_add(us);
    }

    /// The clock as Medusa prints timestamps (milliseconds).
    pub fn clock(&self) -> String {
        iso_ms(self.state().clock)
    }

    // ---- Data.

    /// Adds a product with `variants` variants; its id.
    pub fn add_product(&self, title: &str, variants: usize) -> String {
        let mut st = self.state();
        let handle = title.to_ascii_lowercase().replace(' ', "-");
        let mut product = st.entity(
            "prod",
            object(json!({ "title": title, "handle": handle, "status": "published" })),
        );
        for n in 1..=variants {
            let variant = st.entity(
                "variant",
                object(json!({
                    "product_id": product.id,
                    "title": format!("{title} #{n}"),
                    "sku": format!("{handle}-{n}"),
                    "manage_inventory": true,
                })),
            );
            product.children.push(variant);
        }
        let id = product.id.clone();
        st.products.push(product);
        id
    }

    /// Adds a customer; its id.
    pub fn add_customer(&self, email: &str) -> String {
        let mut st = self.state();
        let customer = st.entity(
            "cus",
            object(json!({
                "email": email, "first_name": null, "last_name": null,
                "has_account": false, "addresses": [],
            })),
        );
        let id = customer.id.clone();
        st.customers.push(customer);
        id
    }

    /// Adds an order with `status` (`pending`, `completed`, `canceled`, …); its id.
    pub fn add_order(&self, email: &str, status: &str) -> String {
        let mut st = self.state();
        let display_id = st.orders.len() + 1;
        let order = st.entity(
            "order",
            object(json!({
                "display_id": display_id, "status": status, "email": email,
                "currency_code": "eur", "payment_status": "captured",
                "fulfillment_status": "not_fulfilled",
            })),
        );
        let id = order.id.clone();
        st.orders.push(order);
        id
    }

    /// Adds an inventory item stocked at `levels` (location id, stocked
    /// quantity); its id.
    pub fn add_inventory_item(&self, sku: &str, levels: &[(&str, i64)]) -> String {
        let mut st = self.state();
        let mut item = st.entity(
            "iitem",
            object(json!({ "sku": sku, "title": sku, "requires_shipping": true })),
        );
        for (location, stocked) in levels {
            let level = st.entity(
                "ilev",
                object(json!({
                    "inventory_item_id": item.id, "location_id": location,
                    "stocked_quantity": stocked, "reserved_quantity": 0,
                    "incoming_quantity": 0,
                })),
            );
            item.children.push(level);
        }
        let id = item.id.clone();
        st.inventory.push(item);
        id
    }

    /// Changes a record, variant or location level as an admin would: merges
    /// `patch`'s fields and sets its `updated_at` to the clock (only its
    /// own: a variant's change leaves its product's as it was).
    pub fn update(&self, id: &str, patch: Value) {
        let mut st = self.state();
        let now = st.clock;
        let patch = object(patch);
        for kind in Kind::ALL {
            for e in st.collection(kind).iter_mut() {
                let target = if e.id == id {
                    Some(e)
                } else {
                    e.children.iter_mut().find(|c| c.id == id)
                };
                if let Some(t) = target {
                    t.fields.extend(patch);
                    t.updated = now;
                    return;
                }
            }
        }
        panic!("the fake Medusa has no record `{id}`");
    }

    /// A record as the API shows it (with its variants or location levels).
    pub fn get(&self, id: &str) -> Option<Value> {
        let mut st = self.state();
        for kind in Kind::ALL {
            if let Some(e) = st.find(kind, id) {
                return Some(e.render(kind, true));
            }
        }
        None
    }

    /// Whether ties in the sort order come back in a new order every request
    /// (on by default).
    pub fn set_shuffle_ties(&self, on: bool) {
        self.state().shuffle_ties = on;
    }

    /// Caps `limit` at `max` (answering the cap in `limit`), as a store or
    /// a proxy in front of it may; `None` (the default) takes any `limit`.
    /// Medusa documents no maximum: this is for testing a client's
    /// tolerance, not a Medusa behaviour.
    pub fn set_max_limit(&self, max: Option<usize>) {
        self.state().max_limit = max;
    }

    // ---- Faults and observation.

    /// The next request (whatever it is) answers with `fault`; several
    /// queue up, one per request.
    pub fn inject(&self, fault: Fault) {
        self.state().faults.push_back(fault);
    }

    /// Every request so far, oldest first.
    pub fn requests(&self) -> Vec<SeenRequest> {
        self.state().requests.clone()
    }

    pub fn clear_requests(&self) {
        self.state().requests.clear();
    }
}

// ---------------------------------------------------------------------------
// The server.

#[derive(Debug, Clone)]
struct App {
    state: Arc<Mutex<State>>,
    expected_auth: String,
}

/// An answer: status, extra headers, JSON body.
type Answer = (StatusCode, Vec<(&'static str, String)>, Value);

fn error(status: StatusCode, kind: &str, message: &str) -> Answer {
    (
        status,
        Vec::new(),
        json!({ "type": kind, "message": message }),
    )
}

fn invalid(message: &str) -> Answer {
    error(StatusCode::BAD_REQUEST, "invalid_data", message)
}

fn ok(body: Value) -> Answer {
    (StatusCode::OK, Vec::new(), body)
}

impl App {
    fn handle(&self, method: &Method, uri: &Uri, headers: &HeaderMap, body: &Bytes) -> Response {
        let mut st = lock(&self.state);
        st.request_seq += 1;
        let params = parse_query(uri.query());
        let authorization = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let (status, extra, json) = if let Some(fault) = st.faults.pop_front() {
            match fault {
                Fault::RateLimited { retry_after_secs } => (
                    StatusCode::TOO_MANY_REQUESTS,
                    vec![("retry-after", retry_after_secs.to_string())],
                    json!({ "type": "too_many_requests", "message": "Too many requests, please try again later." }),
                ),
                Fault::ServerError => error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "unknown_error",
                    "An unknown error occurred.",
                ),
            }
        } else if authorization.as_deref() != Some(self.expected_auth.as_str()) {
            error(StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized")
        } else {
            route(&mut st, method, uri.path(), &params, body)
        };
        st.requests.push(SeenRequest {
            method: method.as_str().to_owned(),
            path: uri.path().to_owned(),
            query: uri.query().map(str::to_owned),
            params,
            authorization,
            body: body.to_vec(),
            status: status.as_u16(),
        });
        drop(st);
        let mut response = (status, axum::Json(json)).into_response();
        for (name, value) in extra {
            if let Ok(v) = HeaderValue::from_str(&value) {
                response.headers_mut().insert(name, v);
            }
        }
        response
    }
}

fn route(
    st: &mut State,
    method: &Method,
    path: &str,
    params: &[(String, String)],
    body: &[u8],
) -> Answer {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let kind = |segment: &str| Kind::ALL.into_iter().find(|k| k.path() == segment);
    match (method.as_str(), segments.as_slice()) {
        ("GET", ["admin", collection]) => match kind(collection) {
            Some(k) => list(st, k, params),
            None => not_found_route(method, path),
        },
        ("GET", ["admin", collection, id]) => match kind(collection) {
            Some(k) => retrieve(st, k, id, params),
            None => not_found_route(method, path),
        },
        ("POST", ["admin", "inventory-items", id, "location-levels", location]) => {
            if !params.is_empty() {
                return unrecognized(params);
            }
            update_level(st, id, location, body)
        }
        ("POST", ["admin", "orders", id, action @ ("complete" | "cancel")]) => {
            if !params.is_empty() {
                return unrecognized(params);
            }
            order_transition(st, id, action)
        }
        _ => not_found_route(method, path),
    }
}

fn not_found_route(method: &Method, path: &str) -> Answer {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        &format!("Cannot {method} {path}"),
    )
}

fn unrecognized(params: &[(String, String)]) -> Answer {
    let names: Vec<String> = params.iter().map(|(k, _)| format!("'{k}'")).collect();
    invalid(&format!(
        "Invalid request: Unrecognized fields: {}",
        names.join(", ")
    ))
}

/// The relations `fields` asks for.
fn asks_for(fields: &str, relation: &str) -> bool {
    fields.split(',').map(str::trim).any(|f| {
        let f = f.trim_start_matches('+');
        f == format!("*{relation}") || f == format!("{relation}.*") || f == relation
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Id,
    CreatedAt,
    UpdatedAt,
}

fn field(name: &str) -> Option<Field> {
    match name {
        "id" => Some(Field::Id),
        "created_at" => Some(Field::CreatedAt),
        "updated_at" => Some(Field::UpdatedAt),
        _ => None,
    }
}

fn time_of(e: &Entity, f: Field) -> i64 {
    if f == Field::CreatedAt {
        e.created
    } else {
        e.updated
    }
}

fn list(st: &mut State, kind: Kind, params: &[(String, String)]) -> Answer {
    let mut limit = 50usize;
    let mut offset = 0usize;
    let mut order: Option<(Field, bool)> = None;
    let mut with_children = false;
    let mut ids: Option<Vec<String>> = None;
    let mut filters: Vec<(Field, &str, i64)> = Vec::new();
    for (key, value) in params {
        match key.as_str() {
            "limit" | "offset" => {
                let Ok(n) = value.parse::<usize>() else {
                    return invalid(&format!(
                        "Invalid request: Expected number, received string at \"{key}\""
                    ));
                };
                if key == "limit" {
                    limit = n;
                } else {
                    offset = n;
                }
            }
            "order" => {
                let (name, desc) = match value.strip_prefix('-') {
                    Some(n) => (n, true),
                    None => (value.as_str(), false),
                };
                let Some(f) = field(name) else {
                    return invalid(&format!("Invalid order field: {value}"));
                };
                order = Some((f, desc));
            }
            "fields" => {
                with_children = kind.children().is_some_and(|c| asks_for(value, c));
            }
            "id" | "id[]" => ids.get_or_insert_with(Vec::new).push(value.clone()),
            other => {
                let parsed = other
                    .strip_suffix(']')
                    .and_then(|k| k.split_once('['))
                    .and_then(|(name, op)| {
                        let f = field(name).filter(|f| *f != Field::Id)?;
                        let op = ["$gt", "$gte", "$lt", "$lte", "$eq"]
                            .into_iter()
                            .find(|o| *o == op)?;
                        Some((f, op))
                    });
                let Some((f, op)) = parsed else {
                    return unrecognized(&[(other.to_owned(), String::new())]);
                };
                let Some(at) = parse_iso(value) else {
                    return invalid(&format!("Invalid request: Invalid date at \"{other}\""));
                };
                filters.push((f, op, at));
            }
        }
    }
    if let Some(max) = st.max_limit {
        limit = limit.min(max);
    }
    let seq = st.request_seq;
    let shuffle = st.shuffle_ties;
    let all = st.collection(kind);
    let mut matches: Vec<(usize, &Entity)> = all
        .iter()
        .enumerate()
        .filter(|(_, e)| ids.as_ref().is_none_or(|ids| ids.contains(&e.id)))
        .filter(|(_, e)| {
            filters.iter().all(|&(f, op, at)| {
                let v = time_of(e, f);
                match op {
                    "$gt" => v > at,
                    "$gte" => v >= at,
                    "$lt" => v < at,
                    "$lte" => v <= at,
                    _ => v == at,
                }
            })
        })
        .collect();
    if let Some((f, desc)) = order {
        let tie = |pos: usize, e: &Entity| -> u64 {
            if shuffle {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                (&e.id, seq).hash(&mut h);
                h.finish()
            } else {
                pos as u64
            }
        };
        matches.sort_by(|(pa, a), (pb, b)| {
            let by_field = match f {
                Field::Id => a.id.cmp(&b.id),
                other => time_of(a, other).cmp(&time_of(b, other)),
            };
            let by_field = if desc { by_field.reverse() } else { by_field };
            by_field.then_with(|| tie(*pa, a).cmp(&tie(*pb, b)))
        });
    }
    let count = matches.len();
    let page: Vec<Value> = matches
        .iter()
        .skip(offset)
        .take(limit)
        .map(|(_, e)| e.render(kind, with_children))
        .collect();
    ok(json!({
        kind.plural(): page,
        "count": count,
        "offset": offset,
        "limit": limit,
    }))
}

fn retrieve(st: &mut State, kind: Kind, id: &str, params: &[(String, String)]) -> Answer {
    let mut with_children = false;
    for (key, value) in params {
        if key == "fields" {
            with_children = kind.children().is_some_and(|c| asks_for(value, c));
        } else {
            return unrecognized(params);
        }
    }
    match st.find(kind, id) {
        Some(e) => ok(json!({ kind.singular(): e.render(kind, with_children) })),
        None => error(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("{} with id: {id} was not found", kind.label()),
        ),
    }
}

fn update_level(st: &mut State, id: &str, location: &str, body: &[u8]) -> Answer {
    let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(body) else {
        return invalid("Invalid request: Expected object, received something else");
    };
    for (key, value) in &fields {
        match key.as_str() {
            "stocked_quantity" | "incoming_quantity" => {
                if !value.is_number() {
                    return invalid(&format!("Invalid request: Expected number at \"{key}\""));
                }
            }
            other => {
                return invalid(&format!("Invalid request: Unrecognized fields: '{other}'"));
            }
        }
    }
    let now = st.clock;
    let Some(item) = st.find(Kind::InventoryItem, id) else {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("Inventory item with id: {id} was not found"),
        );
    };
    let Some(level) = item
        .children
        .iter_mut()
        .find(|l| l.fields.get("location_id").and_then(Value::as_str) == Some(location))
    else {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("Item {id} is not stocked at location {location}"),
        );
    };
    level.fields.extend(fields);
    level.updated = now;
    ok(json!({ "inventory_item": item.render(Kind::InventoryItem, true) }))
}

fn order_transition(st: &mut State, id: &str, action: &str) -> Answer {
    let now = st.clock;
    let Some(order) = st.find(Kind::Order, id) else {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("Order with id: {id} was not found"),
        );
    };
    let status = order
        .fields
        .get("status")
        .and_then(Value::as_str)
        .unwrap_or("pending")
        .to_owned();
    let (target, refused) = if action == "complete" {
        ("completed", ["completed", "canceled"])
    } else {
        ("canceled", ["canceled", "completed"])
    };
    if refused.contains(&status.as_str()) {
        return error(
            StatusCode::BAD_REQUEST,
            "not_allowed",
            &format!("Order with id {id} is {status}: it cannot be {target}"),
        );
    }
    order.fields.insert("status".into(), json!(target));
    order.updated = now;
    ok(json!({ "order": order.render(Kind::Order, false) }))
}

// ---------------------------------------------------------------------------
// Query strings and timestamps.

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match bytes.get(i + 1..i + 3) {
                Some(h) if h.iter().all(u8::is_ascii_hexdigit) => {
                    let hex = std::str::from_utf8(h).unwrap_or("00");
                    out.push(u8::from_str_radix(hex, 16).unwrap_or(0));
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_query(query: Option<&str>) -> Vec<(String, String)> {
    query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// Microseconds since the epoch, printed as JavaScript prints a `Date`:
/// `2024-05-01T10:00:00.123Z` (the microseconds cut off).
pub fn iso_ms(us: i64) -> String {
    let whole = patchbay_core::Timestamp::from_micros(us.div_euclid(1_000_000) * 1_000_000);
    let text = whole.to_string();
    format!(
        "{}.{:03}Z",
        text.trim_end_matches('Z'),
        us.rem_euclid(1_000_000) / 1000
    )
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±hh:mm)` (or a bare date) to
/// microseconds since the epoch.
pub fn parse_iso(s: &str) -> Option<i64> {
    patchbay_core::Timestamp::parse_rfc3339(s)
        .ok()
        .map(patchbay_core::Timestamp::as_micros)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_print_with_milliseconds_and_parse_back() {
        assert_eq!(iso_ms(START_MICROS), "2024-05-01T10:00:00.000Z");
        assert_eq!(iso_ms(START_MICROS + 123_456), "2024-05-01T10:00:00.123Z");
        assert_eq!(
            parse_iso("2024-05-01T10:00:00.123Z"),
            Some(START_MICROS + 123_000)
        );
        assert_eq!(
            parse_iso("2024-05-01T12:00:00.000123+02:00"),
            Some(START_MICROS + 123)
        );
        assert_eq!(parse_iso("2024-05-01T10:00:00Z"), Some(START_MICROS));
        assert_eq!(parse_iso("yesterday"), None);
    }

    #[test]
    fn queries_are_percent_decoded() {
        assert_eq!(
            parse_query(Some(
                "updated_at%5B%24gte%5D=2024-05-01T10%3A00%3A00.000Z&limit=5&x"
            )),
            vec![
                (
                    "updated_at[$gte]".to_owned(),
                    "2024-05-01T10:00:00.000Z".to_owned()
                ),
                ("limit".to_owned(), "5".to_owned()),
                ("x".to_owned(), String::new()),
            ]
        );
        assert_eq!(percent_decode("a%2"), "a%2");
    }

    #[test]
    fn ids_look_like_medusa_ids_and_sort_by_creation() {
        let fake = FakeMedusa::start("sk_test");
        let a = fake.add_product("A", 0);
        let b = fake.add_product("B", 0);
        assert!(
            a.starts_with("prod_") && a.len() == "prod_".len() + 26,
            "{a}"
        );
        assert!(a < b);
    }
}
