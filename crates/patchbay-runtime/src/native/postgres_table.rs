//! `sync_postgres_table`: the rows of a PostgreSQL table, read incrementally
//! and written by upsert.
//!
//! Credentials: `host`, `port` (5432 by default), `database`, `user`,
//! `password`, `table` (`name` or `schema.name`), `cursorColumn`,
//! `primaryKey` and, optionally, `batchSize` (rows a batch, [`BATCH`] by
//! default, at most [`MAX_BATCH`]). One stream, `rows`. PostgreSQL 12 or
//! later.
//!
//! **Names** (table, schema, columns) are taken as written, case and all:
//! `public.Products` is the table `"Products"` of the schema `"public"`, not
//! `products`. Each part is quoted as an identifier (`"…"`, a quote doubled),
//! so no name can change a statement; an empty name, a NUL character or a
//! name longer than 63 bytes is refused. A table name containing a dot cannot
//! be given.
//!
//! **The network**: before connecting, the host is vetted with
//! [`HttpClient::vet`] under the operator's policy (public addresses only,
//! unless private networks are allowed) and the driver connects to the vetted
//! address, never re-resolving the name. Connections are kept between calls
//! in a small cache of pools (at most 2 connections each, closed after a
//! minute idle) keyed by host, port, database, user and a SHA-256 of the
//! password; the password is never logged nor put in an error.
//!
//! **Encryption** (`sslMode`): `prefer` (the default) uses TLS when the
//! server offers it, `require` refuses a server that does not, `disable`
//! never uses it. The server's certificate is not verified: the connection
//! goes to the vetted address, not to the name a certificate would carry, so
//! TLS here protects against eavesdropping, not against an impostor on the
//! network path (put such databases on a trusted network or a tunnel).
//!
//! **Reading** is keyset pagination on (cursor column, primary key):
//! `WHERE (c, pk) > ($c, $pk) ORDER BY c, pk LIMIT n`, each row sent as
//! `row_to_json` (a JSON object of its columns: timestamps in UTC, numbers
//! as JSON numbers, parsed as 64-bit floats when they do not fit an
//! integer). Rows that share a cursor value (ties) are ordered by their
//! primary key, so none is skipped or read twice across batches. The cursor
//! is `{"c":"<cursor value as text>","k":"<primary key as text>"}`; the
//! values are cast back to the columns' types. A batch holds at most
//! `batchSize` rows and ends early once it holds 32 MiB of JSON. A run reads
//! rows whose cursor value grew since the last one: a row changed without its
//! cursor column growing is not read again, and deleted rows are not seen.
//! Operators should give the table an index on (cursor column, primary key):
//! `CREATE INDEX ON t (updated_at, id)` — without one each batch scans and
//! sorts the table (`check` says so).
//!
//! **NULLs**: rows with no value in the cursor column (or the primary key)
//! cannot be placed in the order and are not read; a read from the start
//! logs how many there are, once.
//!
//! **Total**: a read from the start (no cursor) reports the number of rows it
//! will read — an exact `count(*)` for tables under 1 GiB (and for views and
//! foreign tables), the planner's estimate (`pg_class.reltuples`) for larger
//! ones; the run keeps it. Reads after a cursor (incremental runs, and the
//! rest of a run) report none, so no batch pays for a count.
//!
//! **Writing** upserts each batch in one statement:
//! `INSERT … SELECT … FROM json_populate_record(…) ON CONFLICT (pk) DO UPDATE`
//! (the primary key column needs a primary key or unique index of its own).
//! Only the columns a record has are inserted or updated: a key the record
//! lacks keeps the row's value (or the column's default for a new row), a
//! key with `null` sets NULL. Records with different sets of columns go in
//! one statement per set; records for the same primary key within a batch
//! are merged in order. Keys that are not columns (or are generated
//! columns) are ignored and logged. A record that is not an object or has no
//! primary key value is a per-record failure. When the statement fails on
//! a record's data (a type error, a constraint), the batch is split until
//! the bad records are alone: the good ones are written, each bad one is a
//! failure with the database's message (values withheld). The results name
//! each written row by its primary key, created or updated (`xmax = 0`).
//!
//! **Errors**: unreachable servers, timeouts, shutdowns and serialization
//! failures are transient; refused logins are authentication failures; a
//! missing database, table or column is invalid input; other refusals are
//! fatal. Every call ends by the call's deadline.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures_util::TryStreamExt as _;
use patchbay_core::LogLevel;
use serde_json::{Map, Value};
use sha2::Digest as _;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgSslMode};
use sqlx::{ConnectOptions as _, Connection as _, Row as _};

use crate::contract::{
    Batch, CallContext, Connector, ConnectorError, Health, RecordFailure, WriteOutcome,
    WrittenRecord,
};
use crate::http::{HttpClient, HttpError};

/// Rows a batch, unless `batchSize` says otherwise.
pub const BATCH: usize = 5_000;
/// The largest `batchSize`.
pub const MAX_BATCH: usize = 10_000;
/// A batch ends after the row that crosses this many bytes of JSON.
const MAX_BATCH_BYTES: usize = 32 << 20;
/// The stream.
const STREAM: &str = "rows";
/// Connections a pool may open.
const POOL_CONNECTIONS: u32 = 2;
/// An idle connection is closed after this long.
const POOL_IDLE: Duration = Duration::from_secs(60);
/// A pool unused this long is dropped.
const POOL_UNUSED: Duration = Duration::from_secs(600);
/// Pools kept at most (the least recently used goes first).
const MAX_POOLS: usize = 32;
/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A backstop for statements left running by a call that gave up.
const STATEMENT_TIMEOUT: &str = "120s";
/// Tables smaller than this are counted exactly for `total`.
const EXACT_COUNT_BYTES: i64 = 1 << 30;
/// PostgreSQL's longest identifier (`NAMEDATALEN - 1`).
const MAX_NAME_BYTES: usize = 63;

// ---------------------------------------------------------------------------
// Names.

/// A PostgreSQL identifier, as the tenant wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Ident(String);

impl Ident {
    fn parse(what: &str, text: &str) -> Result<Ident, ConnectorError> {
        let name = text.trim();
        if name.is_empty() {
            return Err(ConnectorError::invalid(format!("the {what} is empty")));
        }
        if name.contains('\0') {
            return Err(ConnectorError::invalid(format!(
                "the {what} contains a NUL character"
            )));
        }
        if name.len() > MAX_NAME_BYTES {
            return Err(ConnectorError::invalid(format!(
                "the {what} is longer than {MAX_NAME_BYTES} bytes (PostgreSQL's limit)"
            )));
        }
        Ok(Ident(name.to_owned()))
    }

    /// As a quoted identifier: `"name"`, a quote doubled.
    fn quoted(&self) -> String {
        quote(&self.0)
    }
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

impl std::fmt::Display for Ident {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// `name` or `schema.name`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Table {
    schema: Option<Ident>,
    name: Ident,
}

impl Table {
    fn parse(text: &str) -> Result<Table, ConnectorError> {
        let parts: Vec<&str> = text.trim().split('.').collect();
        match parts[..] {
            [name] => Ok(Table {
                schema: None,
                name: Ident::parse("table name", name)?,
            }),
            [schema, name] => Ok(Table {
                schema: Some(Ident::parse("schema name", schema)?),
                name: Ident::parse("table name", name)?,
            }),
            _ => Err(ConnectorError::invalid(
                "the table is not `name` or `schema.name`",
            )),
        }
    }

    fn quoted(&self) -> String {
        match &self.schema {
            Some(s) => format!("{}.{}", s.quoted(), self.name.quoted()),
            None => self.name.quoted(),
        }
    }
}

impl std::fmt::Display for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.schema {
            Some(s) => write!(f, "{s}.{}", self.name),
            None => write!(f, "{}", self.name),
        }
    }
}

// ---------------------------------------------------------------------------
// Settings.

/// One call's settings, borrowed from its credentials.
struct Settings<'a> {
    host: &'a str,
    port: u16,
    database: &'a str,
    user: &'a str,
    password: &'a str,
    ssl: PgSslMode,
    table: Table,
    cursor: Ident,
    pk: Ident,
    batch: usize,
}

fn required<'a>(ctx: &'a CallContext, key: &str, what: &str) -> Result<&'a str, ConnectorError> {
    ctx.credentials
        .text(key)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ConnectorError::invalid(format!("no {what} is configured")))
}

/// A whole number field (a JSON number, or text of one); `None` when unset.
fn number(ctx: &CallContext, key: &str) -> Result<Option<u64>, ()> {
    match ctx.credentials.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_u64().map(Some).ok_or(()),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => s.trim().parse().map(Some).map_err(|_| ()),
        Some(_) => Err(()),
    }
}

impl Settings<'_> {
    fn of(ctx: &CallContext) -> Result<Settings<'_>, ConnectorError> {
        let host = required(ctx, "host", "host")?;
        if host.starts_with('/') || host.contains(['/', ' ', '\0', '@']) {
            return Err(ConnectorError::invalid(
                "the host is not a host name or an address",
            ));
        }
        let port = match number(ctx, "port") {
            Ok(None) => 5432,
            Ok(Some(p)) => u16::try_from(p)
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| ConnectorError::invalid("the port is not between 1 and 65535"))?,
            Err(()) => return Err(ConnectorError::invalid("the port is not a number")),
        };
        let batch = match number(ctx, "batchSize") {
            Ok(None) => BATCH,
            Ok(Some(n)) => usize::try_from(n)
                .ok()
                .filter(|n| (1..=MAX_BATCH).contains(n))
                .ok_or_else(|| {
                    ConnectorError::invalid(format!(
                        "the batch size is not between 1 and {MAX_BATCH}"
                    ))
                })?,
            Err(()) => return Err(ConnectorError::invalid("the batch size is not a number")),
        };
        let ssl = match ctx.credentials.text("sslMode").map(str::trim) {
            None | Some("" | "prefer") => PgSslMode::Prefer,
            Some("require") => PgSslMode::Require,
            Some("disable") => PgSslMode::Disable,
            Some(_) => {
                return Err(ConnectorError::invalid(
                    "the TLS mode is not one of `prefer`, `require` or `disable`",
                ));
            }
        };
        Ok(Settings {
            host,
            port,
            ssl,
            database: required(ctx, "database", "database")?,
            user: required(ctx, "user", "user")?,
            password: ctx.credentials.text("password").unwrap_or_default(),
            table: Table::parse(required(ctx, "table", "table")?)?,
            cursor: Ident::parse(
                "cursor column",
                required(ctx, "cursorColumn", "cursor column")?,
            )?,
            pk: Ident::parse(
                "primary key column",
                required(ctx, "primaryKey", "primary key column")?,
            )?,
            batch,
        })
    }

    fn key(&self) -> PoolKey {
        PoolKey {
            host: self.host.to_ascii_lowercase(),
            port: self.port,
            database: self.database.to_owned(),
            user: self.user.to_owned(),
            password: sha2::Sha256::digest(self.password.as_bytes()).into(),
            ssl: match self.ssl {
                PgSslMode::Disable => 0,
                PgSslMode::Require => 2,
                _ => 1,
            },
        }
    }

    /// The driver's options for a vetted address. The driver starts from the
    /// process's `PG*` environment: every setting it takes from there is set
    /// again here (an empty password rather than the operator's
    /// `PGPASSWORD`), except `PGOPTIONS` (the operator's own) and the TLS
    /// files (unused: certificates are not verified, see the module).
    fn options(&self, addr: SocketAddr) -> PgConnectOptions {
        PgConnectOptions::new_without_pgpass()
            .host(&addr.ip().to_string())
            .port(addr.port())
            .database(self.database)
            .username(self.user)
            .password(self.password)
            .ssl_mode(self.ssl)
            .application_name("patchbay")
            .statement_cache_capacity(32)
            .options([("statement_timeout", STATEMENT_TIMEOUT)])
            .disable_statement_logging()
    }
}

// ---------------------------------------------------------------------------
// Cursors.

/// Where a read stopped: the last row's cursor value and primary key, as text.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Cursor {
    c: String,
    k: String,
}

impl Cursor {
    fn parse(text: &str) -> Result<Cursor, ConnectorError> {
        let bad = || {
            ConnectorError::invalid(
                "the cursor is not one of this connector's (`{\"c\": …, \"k\": …}`)",
            )
        };
        let value: Value = serde_json::from_str(text).map_err(|_| bad())?;
        match (value.get("c"), value.get("k")) {
            (Some(Value::String(c)), Some(Value::String(k))) => Ok(Cursor {
                c: c.clone(),
                k: k.clone(),
            }),
            _ => Err(bad()),
        }
    }

    fn text(&self) -> String {
        serde_json::json!({ "c": self.c, "k": self.k }).to_string()
    }
}

// ---------------------------------------------------------------------------
// Errors.

/// Quoted names in a database message are kept (`column "x"`); quoted
/// values are withheld, so no record content reaches an error.
fn redact(message: &str) -> String {
    const NAMES: &[&str] = &[
        "column",
        "relation",
        "constraint",
        "table",
        "index",
        "schema",
        "function",
        "role",
        "user",
        "database",
        "sequence",
        "view",
        "trigger",
        "domain",
        "host",
    ];
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(open) = rest.find('"') {
        let before = &rest[..open];
        out.push_str(before);
        let word = before
            .trim_end()
            .rsplit(|c: char| c.is_whitespace())
            .next()
            .unwrap_or_default();
        let after = &rest[open + 1..];
        if NAMES.contains(&word) {
            if let Some(close) = after.find('"') {
                out.push('"');
                out.push_str(&after[..=close]);
                rest = &after[close + 1..];
            } else {
                out.push_str("\"…");
                rest = "";
            }
        } else if word.ends_with(':') {
            // `…: "value"` — the value runs to the end.
            out.push_str("\"…\"");
            rest = "";
        } else {
            out.push_str("\"…\"");
            // The value ends at a quote followed by a space or the end.
            let close = after
                .match_indices('"')
                .map(|(i, _)| i)
                .find(|&i| after[i + 1..].is_empty() || after[i + 1..].starts_with(' '));
            rest = close.map_or("", |i| &after[i + 1..]);
        }
    }
    out.push_str(rest);
    out
}

/// A database error's code and message (values withheld).
fn database_error(e: &sqlx::Error) -> Option<(String, String)> {
    match e {
        sqlx::Error::Database(d) => Some((
            d.code()
                .map(std::borrow::Cow::into_owned)
                .unwrap_or_default(),
            redact(d.message()),
        )),
        _ => None,
    }
}

/// Whether the error is about a record's data: splitting the batch isolates it.
fn is_record_error(e: &sqlx::Error) -> bool {
    database_error(e).is_some_and(|(code, _)| {
        code.starts_with("22") || code.starts_with("23") || code == "21000" || code == "42804"
    })
}

/// A connector error for a driver error; never the password.
fn db_error(e: &sqlx::Error, s: &Settings<'_>) -> ConnectorError {
    let server = format!("{}:{}", s.host, s.port);
    match e {
        sqlx::Error::Database(_) => {
            let (code, message) = database_error(e).unwrap_or_default();
            let class = code.get(..2).unwrap_or_default();
            match code.as_str() {
                "28P01" => ConnectorError::Auth {
                    message: format!(
                        "the database server refused the password of the user `{}`",
                        s.user
                    ),
                },
                "28000"
                    if message.contains("SSL off")
                        || message.contains("no encryption")
                        || message.contains("SSL connection is required") =>
                {
                    ConnectorError::fatal(
                        "the database server accepts only encrypted (TLS) connections: set \
                         the TLS mode to `prefer` or `require`",
                    )
                }
                "28000" => ConnectorError::Auth {
                    message: format!("the database server refused the login: {message}"),
                },
                "3D000" => ConnectorError::invalid(format!(
                    "the database `{}` does not exist on `{server}`",
                    s.database
                )),
                "42P01" | "3F000" => ConnectorError::invalid(format!(
                    "the table `{}` does not exist (names are case-sensitive): {message}",
                    s.table
                )),
                "42703" => ConnectorError::invalid(format!(
                    "a column is missing (names are case-sensitive): {message}"
                )),
                "42P10" => ConnectorError::invalid(format!(
                    "writing needs a primary key or a unique index on exactly `{}` of `{}`",
                    s.pk, s.table
                )),
                "42501" => ConnectorError::fatal(format!(
                    "the user `{}` lacks a privilege: {message}",
                    s.user
                )),
                _ if matches!(class, "08" | "40" | "53" | "57" | "58")
                    || code == "55P03"
                    || code == "55006" =>
                {
                    ConnectorError::transient(format!(
                        "the database server is not available: {message} (SQLSTATE {code})"
                    ))
                }
                _ => ConnectorError::fatal(format!(
                    "the database refused the statement: {message} (SQLSTATE {code})"
                )),
            }
        }
        sqlx::Error::Io(io) => ConnectorError::transient(format!(
            "cannot talk with the database server `{server}`: {io}"
        )),
        sqlx::Error::PoolTimedOut => ConnectorError::transient(format!(
            "no connection to the database server `{server}` became available in time"
        )),
        sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => {
            ConnectorError::transient("the connection pool was closed; try again")
        }
        sqlx::Error::Tls(_) => ConnectorError::fatal(format!(
            "cannot set up an encrypted connection with `{server}`"
        )),
        sqlx::Error::Protocol(_) => ConnectorError::fatal(format!(
            "the server at `{server}` does not speak PostgreSQL's protocol as expected"
        )),
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => {
            ConnectorError::fatal("the database answered with values of unexpected types")
        }
        _ => ConnectorError::fatal(format!("the database call failed ({})", error_kind(e))),
    }
}

/// A short name for a driver error, without its text.
fn error_kind(e: &sqlx::Error) -> &'static str {
    match e {
        sqlx::Error::Configuration(_) => "configuration",
        sqlx::Error::RowNotFound => "no row",
        sqlx::Error::TypeNotFound { .. } => "unknown type",
        sqlx::Error::ColumnIndexOutOfBounds { .. } | sqlx::Error::ColumnNotFound(_) => "column",
        _ => "driver error",
    }
}

/// Runs `work` within the call's deadline.
async fn within<T>(
    ctx: &CallContext,
    work: impl Future<Output = Result<T, ConnectorError>>,
) -> Result<T, ConnectorError> {
    tokio::time::timeout(ctx.deadline, work)
        .await
        .unwrap_or_else(|_| {
            Err(ConnectorError::transient(format!(
                "the database did not answer within {} s",
                ctx.deadline.as_secs_f32()
            )))
        })
}

// ---------------------------------------------------------------------------
// Connections.

/// What a pool is for: one server, database and login.
#[derive(Clone, PartialEq, Eq, Hash)]
struct PoolKey {
    host: String,
    port: u16,
    database: String,
    user: String,
    password: [u8; 32],
    ssl: u8,
}

struct CachedPool {
    pool: Arc<tokio::sync::OnceCell<PgPool>>,
    used: Instant,
}

/// The PostgreSQL table connector.
pub struct PostgresTable {
    http: HttpClient,
    pools: Mutex<HashMap<PoolKey, CachedPool>>,
}

impl std::fmt::Debug for PostgresTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pools = self.pools.lock().map_or(0, |p| p.len());
        f.debug_struct("PostgresTable")
            .field("http", &self.http)
            .field("pools", &pools)
            .finish()
    }
}

/// What the catalog says of the table.
#[derive(Debug)]
struct TableInfo {
    /// `r` table, `p` partitioned table, `v` view, `m` materialized view,
    /// `f` foreign table.
    kind: String,
    bytes: i64,
    estimate: f64,
    /// The cursor column's type, as SQL (`format_type`).
    cursor_type: Option<String>,
    pk_type: Option<String>,
    /// Columns a row may be written to, in the table's order.
    writable: Vec<String>,
    /// An index leads with (cursor column, primary key).
    indexed: bool,
}

const TABLE_INFO: &str = "\
SELECT c.relkind::text,
  CASE WHEN c.relkind = 'p' THEN (SELECT COALESCE(sum(pg_relation_size(p.relid)), 0)::int8
    FROM pg_partition_tree(c.oid) AS p) ELSE pg_relation_size(c.oid) END,
  CASE WHEN c.relkind = 'p' THEN (SELECT COALESCE(sum(x.reltuples) FILTER (WHERE x.reltuples >= 0), -1)::float8
    FROM pg_partition_tree(c.oid) AS p JOIN pg_class x ON x.oid = p.relid AND p.isleaf)
    ELSE c.reltuples::float8 END,
  (SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
    WHERE a.attrelid = c.oid AND a.attname = $2 AND a.attnum > 0 AND NOT a.attisdropped),
  (SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
    WHERE a.attrelid = c.oid AND a.attname = $3 AND a.attnum > 0 AND NOT a.attisdropped),
  ARRAY(SELECT a.attname::text FROM pg_attribute a
    WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
    ORDER BY a.attnum),
  EXISTS (SELECT 1 FROM pg_index i
    WHERE i.indrelid = c.oid AND i.indisvalid AND i.indpred IS NULL AND i.indnatts >= 2
      AND i.indkey[0] = (SELECT a.attnum FROM pg_attribute a
        WHERE a.attrelid = c.oid AND a.attname = $2 AND NOT a.attisdropped)
      AND i.indkey[1] = (SELECT a.attnum FROM pg_attribute a
        WHERE a.attrelid = c.oid AND a.attname = $3 AND NOT a.attisdropped))
FROM pg_class c WHERE c.oid = to_regclass($1)";

impl PostgresTable {
    /// The connector, reaching databases under `http`'s policy.
    pub fn new(http: HttpClient) -> PostgresTable {
        PostgresTable {
            http,
            pools: Mutex::new(HashMap::new()),
        }
    }

    /// The pool for the settings' server and login, connecting on first use.
    async fn pool(&self, s: &Settings<'_>) -> Result<PgPool, ConnectorError> {
        let key = s.key();
        let (cell, dropped) = {
            let mut pools = self.pools.lock().unwrap_or_else(PoisonError::into_inner);
            let now = Instant::now();
            let mut dropped = Vec::new();
            // Unused for long: closed (no call is using them).
            pools.retain(|k, c| {
                let keep = *k == key || now.duration_since(c.used) < POOL_UNUSED;
                if !keep {
                    dropped.push(c.pool.clone());
                }
                keep
            });
            // Too many: the least recently used is forgotten; a call still
            // using it finishes, and its connections close with it.
            if !pools.contains_key(&key)
                && pools.len() >= MAX_POOLS
                && let Some(oldest) = pools
                    .iter()
                    .min_by_key(|(_, c)| c.used)
                    .map(|(k, _)| k.clone())
            {
                pools.remove(&oldest);
            }
            let entry = pools.entry(key).or_insert_with(|| CachedPool {
                pool: Arc::default(),
                used: now,
            });
            entry.used = now;
            (entry.pool.clone(), dropped)
        };
        for cell in dropped {
            if let Some(pool) = cell.get().cloned() {
                tokio::spawn(async move { pool.close().await });
            }
        }
        cell.get_or_try_init(|| self.connect(s)).await.cloned()
    }

    /// Vets the address and opens a pool to it.
    async fn connect(&self, s: &Settings<'_>) -> Result<PgPool, ConnectorError> {
        let addrs = self.http.vet(s.host, s.port).await.map_err(|e| match e {
            HttpError::Denied(why) => ConnectorError::fatal(format!(
                "the operator's network policy refuses the database address: {why} (the \
                 operator can allow private networks)"
            )),
            HttpError::Failed(why) | HttpError::Invalid(why) | HttpError::Timeout(why) => {
                ConnectorError::transient(format!("cannot reach the database server: {why}"))
            }
        })?;
        let mut last = None;
        for addr in addrs {
            // A first connection of its own says at once why it cannot be
            // made (the pool would retry until its timeout).
            let options = s.options(addr);
            match tokio::time::timeout(CONNECT_TIMEOUT, options.connect()).await {
                Ok(Ok(probe)) => {
                    let _ = probe.close().await;
                    return Ok(PgPoolOptions::new()
                        .max_connections(POOL_CONNECTIONS)
                        .min_connections(0)
                        .idle_timeout(Some(POOL_IDLE))
                        .max_lifetime(Some(Duration::from_secs(1800)))
                        .acquire_timeout(CONNECT_TIMEOUT)
                        .connect_lazy_with(options));
                }
                Ok(Err(e @ sqlx::Error::Io(_))) => last = Some(db_error(&e, s)),
                Ok(Err(e)) => return Err(db_error(&e, s)),
                Err(_) => {
                    last = Some(ConnectorError::transient(format!(
                        "no answer from the database server `{}:{}` within {} s",
                        s.host,
                        s.port,
                        CONNECT_TIMEOUT.as_secs()
                    )));
                }
            }
        }
        Err(last
            .unwrap_or_else(|| ConnectorError::transient(format!("`{}` has no address", s.host))))
    }

    async fn connection(
        &self,
        s: &Settings<'_>,
    ) -> Result<sqlx::pool::PoolConnection<sqlx::Postgres>, ConnectorError> {
        let pool = self.pool(s).await?;
        pool.acquire().await.map_err(|e| db_error(&e, s))
    }
}

async fn table_info(
    conn: &mut PgConnection,
    s: &Settings<'_>,
) -> Result<Option<TableInfo>, ConnectorError> {
    let row = sqlx::query(TABLE_INFO)
        .bind(s.table.quoted())
        .bind(&s.cursor.0)
        .bind(&s.pk.0)
        .fetch_optional(&mut *conn)
        .await
        .map_err(|e| db_error(&e, s))?;
    let Some(row) = row else { return Ok(None) };
    let get = |e: sqlx::Error| db_error(&e, s);
    Ok(Some(TableInfo {
        kind: row.try_get(0).map_err(get)?,
        bytes: row.try_get(1).map_err(get)?,
        estimate: row.try_get(2).map_err(get)?,
        cursor_type: row.try_get(3).map_err(get)?,
        pk_type: row.try_get(4).map_err(get)?,
        writable: row.try_get(5).map_err(get)?,
        indexed: row.try_get(6).map_err(get)?,
    }))
}

fn missing_table(s: &Settings<'_>) -> String {
    format!(
        "the table `{}` does not exist, or the user `{}` cannot see it (names are case-sensitive)",
        s.table, s.user
    )
}

fn missing_column(s: &Settings<'_>, what: &str, column: &Ident) -> String {
    format!(
        "the table `{}` has no column `{column}` (the {what}; names are case-sensitive)",
        s.table
    )
}

/// The table's description, with both columns present.
async fn described(
    conn: &mut PgConnection,
    s: &Settings<'_>,
) -> Result<(TableInfo, String, String), ConnectorError> {
    let mut info = table_info(conn, s)
        .await?
        .ok_or_else(|| ConnectorError::invalid(missing_table(s)))?;
    let cursor_type = info
        .cursor_type
        .take()
        .ok_or_else(|| ConnectorError::invalid(missing_column(s, "cursor column", &s.cursor)))?;
    let pk_type = info
        .pk_type
        .take()
        .ok_or_else(|| ConnectorError::invalid(missing_column(s, "primary key column", &s.pk)))?;
    Ok((info, cursor_type, pk_type))
}

// ---------------------------------------------------------------------------
// Reading.

/// The select of one batch: after a cursor (`$1`, `$2`; limit `$3`) or from
/// the start (limit `$1`). The type names are `format_type`'s, from the same
/// server the statement goes to.
fn select_sql(s: &Settings<'_>, cursor_type: &str, pk_type: &str, after: bool) -> String {
    let (c, k, table) = (s.cursor.quoted(), s.pk.quoted(), s.table.quoted());
    let (filter, limit) = if after {
        (
            format!(
                "(t.{c}, t.{k}) > ($1::text::{cursor_type}, $2::text::{pk_type}) \
                 AND t.{k} IS NOT NULL"
            ),
            "$3",
        )
    } else {
        (format!("t.{c} IS NOT NULL AND t.{k} IS NOT NULL"), "$1")
    };
    format!(
        "SELECT row_to_json(t.*)::text, t.{c}::text, t.{k}::text FROM {table} AS t \
         WHERE {filter} ORDER BY t.{c}, t.{k} LIMIT {limit}"
    )
}

/// The rows a read from the start will read; logs, once, those it cannot.
async fn starting_total(
    conn: &mut PgConnection,
    s: &Settings<'_>,
    info: &TableInfo,
    ctx: &CallContext,
) -> Result<Option<u64>, ConnectorError> {
    let (c, k, table) = (s.cursor.quoted(), s.pk.quoted(), s.table.quoted());
    if info.bytes < EXACT_COUNT_BYTES {
        let row = sqlx::query(&format!(
            "SELECT count(*) FILTER (WHERE t.{c} IS NOT NULL AND t.{k} IS NOT NULL), \
             count(*) FILTER (WHERE t.{c} IS NULL OR t.{k} IS NULL) FROM {table} AS t"
        ))
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| db_error(&e, s))?;
        let total: i64 = row.try_get(0).map_err(|e| db_error(&e, s))?;
        let unplaced: i64 = row.try_get(1).map_err(|e| db_error(&e, s))?;
        if unplaced > 0 {
            ctx.log.push(
                LogLevel::Warning,
                &format!(
                    "{unplaced} row(s) of `{}` have no value in the cursor column `{}` or the \
                     primary key `{}`: they are not read",
                    s.table, s.cursor, s.pk
                ),
            );
        }
        return Ok(u64::try_from(total).ok());
    }
    // Large: the planner's estimate; NULLs looked for only through the index.
    if info.indexed {
        let any: bool = sqlx::query_scalar(&format!(
            "SELECT EXISTS (SELECT 1 FROM {table} AS t WHERE t.{c} IS NULL)"
        ))
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| db_error(&e, s))?;
        if any {
            ctx.log.push(
                LogLevel::Warning,
                &format!(
                    "some rows of `{}` have no value in the cursor column `{}`: they are not read",
                    s.table, s.cursor
                ),
            );
        }
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "a non-negative row estimate, far below u64::MAX"
    )]
    let estimate = (info.estimate >= 0.0).then(|| info.estimate.round() as u64);
    Ok(estimate)
}

/// The position of a row of [`select_sql`].
fn row_cursor(row: &sqlx::postgres::PgRow, s: &Settings<'_>) -> Result<Cursor, ConnectorError> {
    Ok(Cursor {
        c: row.try_get(1).map_err(|e| db_error(&e, s))?,
        k: row.try_get(2).map_err(|e| db_error(&e, s))?,
    })
}

impl PostgresTable {
    async fn read_batch(
        &self,
        ctx: &CallContext,
        cursor: Option<Cursor>,
    ) -> Result<Batch, ConnectorError> {
        let s = Settings::of(ctx)?;
        let mut conn = self.connection(&s).await?;
        let (info, cursor_type, pk_type) = described(&mut conn, &s).await?;
        let mut batch = Batch::default();
        if cursor.is_none() {
            batch.total = starting_total(&mut conn, &s, &info, ctx).await?;
        }
        let sql = select_sql(&s, &cursor_type, &pk_type, cursor.is_some());
        let limit = i64::try_from(s.batch).unwrap_or(i64::MAX);
        let mut query = sqlx::query(&sql);
        if let Some(c) = &cursor {
            query = query.bind(&c.c).bind(&c.k);
        }
        let mut rows = query.bind(limit).fetch(&mut *conn);
        let mut bytes = 0;
        let mut last = None;
        loop {
            let row = match rows.try_next().await {
                Ok(Some(row)) => row,
                Ok(None) => break,
                Err(e) if cursor.is_some() && is_record_error(&e) => {
                    return Err(ConnectorError::invalid(format!(
                        "the saved cursor does not fit the cursor column `{}` ({cursor_type}) or \
                         the primary key `{}` ({pk_type}): were the columns changed? Reset the \
                         stream's cursor to read from the start",
                        s.cursor, s.pk
                    )));
                }
                Err(e) => return Err(db_error(&e, &s)),
            };
            let json: &str = row.try_get(0).map_err(|e| db_error(&e, &s))?;
            bytes += json.len();
            match serde_json::from_str::<Value>(json) {
                Ok(record) => batch.records.push(record),
                Err(e) => {
                    let at = row_cursor(&row, &s)?;
                    batch.failures.push(RecordFailure {
                        position: format!("{} = {}, {} = {}", s.cursor, at.c, s.pk, at.k),
                        external_id: Some(at.k),
                        message: format!("the row's JSON does not parse (column {})", e.column()),
                    });
                }
            }
            // Only the last row's position is kept (as text, once).
            last = Some(row);
            if bytes >= MAX_BATCH_BYTES {
                break;
            }
        }
        drop(rows);
        batch.next_cursor = match last {
            Some(row) => Some(row_cursor(&row, &s)?.text()),
            None => None,
        };
        Ok(batch)
    }
}

// ---------------------------------------------------------------------------
// Writing.

/// One row to write: a record (or several for the same key, merged).
#[derive(Debug, Clone, PartialEq)]
struct Pending {
    /// The records' indices in the batch, in order.
    indices: Vec<usize>,
    /// The primary key as text, as the record gave it.
    key: String,
    doc: Map<String, Value>,
}

/// Rows with the same columns: one statement.
#[derive(Debug, Clone, PartialEq)]
struct Group {
    /// The primary key first, then the others in the table's order.
    columns: Vec<String>,
    rows: Vec<Pending>,
}

#[derive(Debug, Default, PartialEq)]
struct Plan {
    groups: Vec<Group>,
    failed: Vec<(usize, String)>,
    /// Keys that are not writable columns.
    ignored: BTreeSet<String>,
}

/// The primary key value as text, or why it cannot be one.
fn key_text(value: Option<&Value>, pk: &str) -> Result<String, String> {
    match value {
        None | Some(Value::Null) => Err(format!(
            "the record has no value for the primary key column `{pk}`"
        )),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(v @ (Value::Number(_) | Value::Bool(_))) => Ok(v.to_string()),
        Some(Value::Array(_) | Value::Object(_)) => Err(format!(
            "the record's primary key `{pk}` is not a single value"
        )),
    }
}

/// Sorts a batch of records into statements.
fn plan(records: Vec<Value>, pk: &str, writable: &[String]) -> Plan {
    let mut plan = Plan::default();
    let position: HashMap<&str, usize> = writable
        .iter()
        .enumerate()
        .map(|(i, c)| (c.as_str(), i))
        .collect();
    let mut rows: Vec<Pending> = Vec::new();
    let mut by_key: HashMap<String, usize> = HashMap::new();
    for (index, record) in records.into_iter().enumerate() {
        let Value::Object(mut doc) = record else {
            plan.failed
                .push((index, "the record is not a JSON object".to_owned()));
            continue;
        };
        let key = match key_text(doc.get(pk), pk) {
            Ok(k) => k,
            Err(why) => {
                plan.failed.push((index, why));
                continue;
            }
        };
        doc.retain(|name, _| {
            let keep = position.contains_key(name.as_str());
            if !keep {
                plan.ignored.insert(name.clone());
            }
            keep
        });
        if let Some(&at) = by_key.get(&key) {
            let row = &mut rows[at];
            row.indices.push(index);
            row.doc.extend(doc);
        } else {
            by_key.insert(key.clone(), rows.len());
            rows.push(Pending {
                indices: vec![index],
                key,
                doc,
            });
        }
    }
    let mut by_columns: HashMap<Vec<usize>, usize> = HashMap::new();
    for row in rows {
        let mut columns: Vec<usize> = row
            .doc
            .keys()
            .filter(|name| name.as_str() != pk)
            .filter_map(|name| position.get(name.as_str()).copied())
            .collect();
        columns.sort_unstable();
        let at = *by_columns.entry(columns.clone()).or_insert_with(|| {
            plan.groups.push(Group {
                columns: std::iter::once(pk.to_owned())
                    .chain(columns.iter().map(|&i| writable[i].clone()))
                    .collect(),
                rows: Vec::new(),
            });
            plan.groups.len() - 1
        });
        plan.groups[at].rows.push(row);
    }
    plan
}

/// The upsert of one group: `$1` a JSON array of the rows; answers each
/// written row's ordinal in the array, primary key and whether it was new.
fn upsert_sql(table: &Table, columns: &[String]) -> String {
    let names: Vec<String> = columns.iter().map(|c| quote(c)).collect();
    let aliases: Vec<String> = (0..columns.len()).map(|i| format!("v{i}")).collect();
    let picks: Vec<String> = names.iter().map(|n| format!("r.{n}")).collect();
    let pk = &names[0];
    let action = if names.len() == 1 {
        "NOTHING".to_owned()
    } else {
        let set: Vec<String> = names[1..]
            .iter()
            .map(|n| format!("{n} = EXCLUDED.{n}"))
            .collect();
        format!("UPDATE SET {}", set.join(", "))
    };
    let table = table.quoted();
    format!(
        "WITH input (n, {aliases}) AS (SELECT e.n, {picks} \
           FROM json_array_elements($1::json) WITH ORDINALITY AS e (doc, n), \
           json_populate_record(NULL::{table}, e.doc) AS r), \
         written AS (INSERT INTO {table} AS t ({names}) SELECT {aliases} FROM input \
           ON CONFLICT ({pk}) DO {action} RETURNING t.{pk} AS k, (t.xmax = 0) AS created) \
         SELECT input.n, written.k::text, written.created FROM written \
           JOIN input ON input.v0 = written.k",
        aliases = aliases.join(", "),
        picks = picks.join(", "),
        names = names.join(", "),
    )
}

impl PostgresTable {
    async fn write_rows(
        &self,
        ctx: &CallContext,
        records: Vec<Value>,
    ) -> Result<WriteOutcome, ConnectorError> {
        let s = Settings::of(ctx)?;
        let mut conn = self.connection(&s).await?;
        let info = table_info(&mut conn, &s)
            .await?
            .ok_or_else(|| ConnectorError::invalid(missing_table(&s)))?;
        if !matches!(info.kind.as_str(), "r" | "p") {
            return Err(ConnectorError::invalid(format!(
                "`{}` is not a table (a view or a foreign table): rows are written to tables only",
                s.table
            )));
        }
        if info.pk_type.is_none() {
            return Err(ConnectorError::invalid(missing_column(
                &s,
                "primary key column",
                &s.pk,
            )));
        }
        if !info.writable.contains(&s.pk.0) {
            return Err(ConnectorError::invalid(format!(
                "the primary key column `{}` is generated: rows cannot be written by it",
                s.pk
            )));
        }
        let plan = plan(records, &s.pk.0, &info.writable);
        if !plan.ignored.is_empty() {
            let names: Vec<&str> = plan.ignored.iter().take(10).map(String::as_str).collect();
            ctx.log.push(
                LogLevel::Warning,
                &format!(
                    "{} key(s) of the records are not columns of `{}` that can be written, and \
                     are ignored: {}{}",
                    plan.ignored.len(),
                    s.table,
                    names.join(", "),
                    if plan.ignored.len() > names.len() {
                        ", …"
                    } else {
                        ""
                    }
                ),
            );
        }
        let mut outcome = WriteOutcome {
            failed: plan.failed,
            ..WriteOutcome::default()
        };
        for group in &plan.groups {
            write_group(&mut conn, &s, group, &mut outcome).await?;
        }
        outcome.failed.sort_by_key(|(i, _)| *i);
        outcome.results.sort_by_key(|r| r.index);
        Ok(outcome)
    }
}

/// Writes one group, splitting it around records the database refuses.
async fn write_group(
    conn: &mut PgConnection,
    s: &Settings<'_>,
    group: &Group,
    outcome: &mut WriteOutcome,
) -> Result<(), ConnectorError> {
    let sql = upsert_sql(&s.table, &group.columns);
    let mut pending = vec![(0, group.rows.len())];
    while let Some((lo, hi)) = pending.pop() {
        let rows = &group.rows[lo..hi];
        let docs: Vec<&Map<String, Value>> = rows.iter().map(|r| &r.doc).collect();
        let payload = serde_json::to_string(&docs)
            .map_err(|e| ConnectorError::fatal(format!("cannot encode the rows: {e}")))?;
        match sqlx::query(&sql).bind(payload).fetch_all(&mut *conn).await {
            Ok(answered) => {
                let mut seen = vec![None; rows.len()];
                for row in answered {
                    let n: i64 = row.try_get(0).map_err(|e| db_error(&e, s))?;
                    let key: Option<String> = row.try_get(1).map_err(|e| db_error(&e, s))?;
                    let created: bool = row.try_get(2).map_err(|e| db_error(&e, s))?;
                    if let Some(slot) = usize::try_from(n)
                        .ok()
                        .and_then(|n| n.checked_sub(1))
                        .and_then(|i| seen.get_mut(i))
                    {
                        *slot = Some((key, created));
                    }
                }
                for (row, seen) in rows.iter().zip(seen) {
                    // Not answered: an existing row with nothing to update.
                    let (key, created) = seen.unwrap_or((None, false));
                    let key = key.unwrap_or_else(|| row.key.clone());
                    for (i, &index) in row.indices.iter().enumerate() {
                        outcome.written += 1;
                        outcome.results.push(WrittenRecord {
                            index,
                            external_id: Some(key.clone()),
                            created: Some(created && i == 0),
                        });
                    }
                }
            }
            Err(e) if is_record_error(&e) && rows.len() > 1 => {
                let mid = lo + rows.len() / 2;
                pending.push((mid, hi));
                pending.push((lo, mid));
            }
            Err(e) if is_record_error(&e) => {
                let (code, message) = database_error(&e).unwrap_or_default();
                for &index in &rows[0].indices {
                    outcome.failed.push((
                        index,
                        format!("the database refused the record: {message} (SQLSTATE {code})"),
                    ));
                }
            }
            Err(e) => return Err(db_error(&e, s)),
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// The contract.

#[async_trait::async_trait]
impl Connector for PostgresTable {
    async fn check(&self, ctx: &CallContext) -> Result<Health, ConnectorError> {
        within(ctx, async {
            let s = Settings::of(ctx)?;
            let mut conn = self.connection(&s).await?;
            sqlx::query("SELECT 1")
                .execute(&mut *conn)
                .await
                .map_err(|e| db_error(&e, &s))?;
            let fail = |message: String| Health { ok: false, message };
            let Some(info) = table_info(&mut conn, &s).await? else {
                return Ok(fail(format!("connected, but {}", missing_table(&s))));
            };
            let Some(cursor_type) = &info.cursor_type else {
                return Ok(fail(format!(
                    "connected, but {}",
                    missing_column(&s, "cursor column", &s.cursor)
                )));
            };
            let Some(pk_type) = &info.pk_type else {
                return Ok(fail(format!(
                    "connected, but {}",
                    missing_column(&s, "primary key column", &s.pk)
                )));
            };
            let mut message = format!(
                "connected to `{}`; `{}` has the cursor column `{}` ({cursor_type}) and the \
                 primary key column `{}` ({pk_type})",
                s.database, s.table, s.cursor, s.pk
            );
            if !info.indexed {
                message.push_str(&format!(
                    "; there is no index on ({c}, {k}), so each batch scans the table: \
                     CREATE INDEX ON {t} ({c}, {k})",
                    c = s.cursor.quoted(),
                    k = s.pk.quoted(),
                    t = s.table.quoted()
                ));
            }
            Ok(Health { ok: true, message })
        })
        .await
    }

    async fn read(
        &self,
        ctx: &CallContext,
        stream: &str,
        cursor: Option<&str>,
    ) -> Result<Batch, ConnectorError> {
        if stream != STREAM {
            return Err(ConnectorError::unsupported(format!("stream `{stream}`")));
        }
        let cursor = cursor.map(Cursor::parse).transpose()?;
        within(ctx, self.read_batch(ctx, cursor)).await
    }

    async fn write(
        &self,
        ctx: &CallContext,
        stream: &str,
        records: Vec<Value>,
    ) -> Result<WriteOutcome, ConnectorError> {
        if stream != STREAM {
            return Err(ConnectorError::unsupported(format!("stream `{stream}`")));
        }
        if records.is_empty() {
            return Ok(WriteOutcome::default());
        }
        within(ctx, self.write_rows(ctx, records)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_are_quoted_and_checked() {
        let t = Table::parse("public.products").unwrap();
        assert_eq!(t.quoted(), r#""public"."products""#);
        assert_eq!(t.to_string(), "public.products");
        let t = Table::parse(r#"x"; drop table y; --"#).unwrap();
        assert_eq!(t.quoted(), r#""x""; drop table y; --""#);
        assert_eq!(
            Table::parse(" Odd Name ").unwrap().quoted(),
            r#""Odd Name""#
        );
        for bad in ["", ".", "a.", ".b", "a.b.c", "a\0b", &"x".repeat(64)] {
            assert!(Table::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Ident::parse("column", &"x".repeat(63)).is_ok());
    }

    #[test]
    fn cursors_round_trip() {
        let c = Cursor {
            c: "2026-11-01 00:00:00+00".to_owned(),
            k: "a\"b".to_owned(),
        };
        assert_eq!(Cursor::parse(&c.text()).unwrap(), c);
        for bad in ["", "12", "{}", r#"{"c":1,"k":"x"}"#, r#"{"c":"x"}"#] {
            assert!(Cursor::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn database_messages_keep_names_and_withhold_values() {
        for (message, want) in [
            (
                r#"invalid input syntax for type integer: "abc def""#,
                r#"invalid input syntax for type integer: "…""#,
            ),
            (
                r#"value "99999999999" is out of range for type integer"#,
                r#"value "…" is out of range for type integer"#,
            ),
            (
                r#"null value in column "name" of relation "t" violates not-null constraint"#,
                r#"null value in column "name" of relation "t" violates not-null constraint"#,
            ),
            (
                r#"duplicate key value violates unique constraint "t_sku_key""#,
                r#"duplicate key value violates unique constraint "t_sku_key""#,
            ),
            (
                r#"malformed array literal: "a" b "c""#,
                r#"malformed array literal: "…""#,
            ),
            (
                "value too long for type character varying(3)",
                "value too long for type character varying(3)",
            ),
            (
                r#"role "nobody" does not exist"#,
                r#"role "nobody" does not exist"#,
            ),
        ] {
            assert_eq!(redact(message), want);
        }
    }

    #[test]
    fn records_are_planned_by_their_columns() {
        let writable: Vec<String> = ["id", "name", "price", "note"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let plan = plan(
            vec![
                json!({"id": 1, "name": "a", "price": 2}),
                json!("nope"),
                json!({"name": "no key"}),
                json!({"id": 2, "price": 3, "name": "b", "extra": true}),
                json!({"id": 3, "note": "n"}),
                json!({"id": "1", "note": "merged"}),
                json!({"id": [1]}),
                json!({"id": 4}),
            ],
            "id",
            &writable,
        );
        assert_eq!(
            plan.failed.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
            [1, 2, 6]
        );
        assert_eq!(plan.ignored.iter().collect::<Vec<_>>(), ["extra"]);
        let groups: Vec<(Vec<&str>, Vec<Vec<usize>>)> = plan
            .groups
            .iter()
            .map(|g| {
                (
                    g.columns.iter().map(String::as_str).collect(),
                    g.rows.iter().map(|r| r.indices.clone()).collect(),
                )
            })
            .collect();
        assert_eq!(
            groups,
            [
                (vec!["id", "name", "price", "note"], vec![vec![0, 5]]),
                (vec!["id", "name", "price"], vec![vec![3]]),
                (vec!["id", "note"], vec![vec![4]]),
                (vec!["id"], vec![vec![7]]),
            ]
        );
        assert_eq!(
            Value::Object(plan.groups[0].rows[0].doc.clone()),
            json!({"id": "1", "name": "a", "price": 2, "note": "merged"})
        );
    }
}
