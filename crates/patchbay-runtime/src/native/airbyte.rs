//! `sync_airbyte_source`: any executable that speaks the Airbyte protocol
//! (<https://docs.airbyte.com/understanding-airbyte/airbyte-protocol>) as a
//! data-sync source. docs/airbyte.md describes it for operators.
//!
//! Credentials: `command` — the executable and any fixed leading arguments,
//! split on whitespace (no shell, no quoting; an absolute path or a bare name
//! looked up on `PATH`) — and `config`, the source's configuration: a JSON
//! object (as text; it is a secret field).
//!
//! **Which programs may run is the operator's decision** ([`AirbytePrograms`],
//! `patchbay serve --airbyte-source PROGRAM`, repeatable): whoever may set an
//! integration's credentials (a tenant's administrator) must not be able to
//! run any program on the server. By default none may; the program word of
//! `command` must equal an allowed one exactly (`*` allows any: for a
//! single-tenant installation whose tenants are the operator).
//!
//! **Calls.** `check` runs `<command> check --config <file>` (the
//! `CONNECTION_STATUS`); the actions `discover` and `spec` run those
//! commands; `read(stream, cursor)` runs `<command> read --config <file>
//! --catalog <file> [--state <file>]` for one stream. Each call gets a
//! private temporary directory (mode 0700, files 0600, also the child's
//! working directory and `TMPDIR`), removed when the process ends. The child
//! gets no environment but `PATH`, `HOME`, `LANG`, `LC_ALL` and `TZ` (never
//! Patchbay's own: the master key, database URLs), no stdin, and is killed
//! when its call or session is dropped.
//!
//! **Output.** stdout is read line by line (a line longer than
//! [`MAX_LINE_BYTES`] is skipped: a record failure); a line that is not JSON
//! is logged as source output. `LOG` messages and traces go to the call's
//! log (levels mapped); an `ERROR` trace fails the call (`config_error`:
//! [`ConnectorError::Fatal`], otherwise `Transient`), as does a non-zero exit
//! (with the end of stderr, which is otherwise kept only bounded). The
//! `ESTIMATE` trace's `row_estimate` is the batch's `total`. Text from the
//! source that reaches a log line or an error has the configuration's string
//! values (of four characters or more) replaced by `[redacted]`.
//!
//! **Catalog.** `read` runs `discover` first (cached per configuration for
//! [`CATALOG_TTL`]) and configures the stream `incremental` + `append` when
//! it supports incremental syncs with a cursor, else `full_refresh` +
//! `overwrite`.
//!
//! **Cursor.** A JSON object: `{"state": S}`, `S` being the `state` of the
//! last `STATE` message for the stream (a `STREAM` state naming it, or a
//! `GLOBAL` or `LEGACY` one, kept verbatim without the per-message
//! `sourceStats`/`destinationStats`), or `null` before the first; with
//! `"after": n` when the batch ended `n` records past that state (at the end
//! of the output, or cut without a state, below). A new process resumes from
//! `S` (`--state` holds `[S]`, or `S.data` for a legacy state): records after
//! it are read again, which is harmless (records are stored by id).
//!
//! **Sessions.** A `read` process lives for the whole run: after a batch it
//! is parked in a table keyed by (credentials fingerprint, stream, the cursor
//! it continues from), and a `read` with that cursor continues it — so the
//! engine's prefetch, which asks for the next cursor as soon as a batch is
//! returned, finds it. Any other cursor (first call, a retry from an older
//! cursor, a new Patchbay process) starts a new process. Parked sessions
//! idle for [`SESSION_IDLE`] are killed (a task checks every
//! [`REAP_EVERY`]), and at most [`MAX_SESSIONS`] are kept (the least
//! recently used goes first).
//!
//! **Batches** end at the first `STATE` for the stream once [`BATCH`]
//! records or [`MAX_BATCH_BYTES`] of messages have accumulated, or a quarter
//! of the call's deadline has passed, so the next cursor is a checkpoint. A
//! source that sends no state for a long time is cut (an `after` cursor) at
//! [`HARD_BATCH`] records, [`HARD_BATCH_BYTES`] or half the deadline. At the
//! end of the output (exit status 0) the records since the last state are
//! returned with an `after` cursor; the next `read` then answers an empty
//! batch without a cursor (or with the last state when states came without
//! records). When no record arrives within three quarters of the deadline
//! the call fails `Transient` and the session is kept under the same cursor,
//! so the retry continues the same process.

use std::borrow::Cow;
use std::collections::HashMap;
use std::ffi::OsString;
use std::hash::{BuildHasher, Hash, Hasher};
use std::io::Write as _;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use patchbay_core::LogLevel;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, BufReader};
use tokio::process::{Child, ChildStdout};
use tokio::task::JoinHandle;
use zeroize::Zeroizing;

use crate::contract::{
    Batch, CallContext, CallLog, Connector, ConnectorError, Health, RecordFailure,
};

/// A batch ends at the next state once it holds this many records.
pub const BATCH: usize = 1_000;
/// … or this many bytes of record messages.
pub(crate) const MAX_BATCH_BYTES: usize = 16 << 20;
/// A batch is cut without a state at this many records…
pub(crate) const HARD_BATCH: usize = 10 * BATCH;
/// … or this many bytes.
pub(crate) const HARD_BATCH_BYTES: usize = 64 << 20;
/// A longer line of the source's output is skipped.
pub(crate) const MAX_LINE_BYTES: usize = 16 << 20;
/// A parked session unused for this long is killed.
pub(crate) const SESSION_IDLE: Duration = Duration::from_secs(5 * 60);
/// How often parked sessions are checked.
pub(crate) const REAP_EVERY: Duration = Duration::from_secs(30);
/// Parked sessions kept at most.
pub(crate) const MAX_SESSIONS: usize = 16;
/// How long a discovered catalog is used.
pub(crate) const CATALOG_TTL: Duration = Duration::from_secs(10 * 60);
/// The bytes of stderr kept (the last ones).
pub(crate) const STDERR_TAIL: usize = 16 << 10;
/// The environment variables a source inherits.
pub(crate) const INHERITED_ENV: [&str; 5] = ["PATH", "HOME", "LANG", "LC_ALL", "TZ"];

/// Catalogs cached at most.
const MAX_CATALOGS: usize = 64;
/// Characters of stderr shown in an error.
const STDERR_SHOWN: usize = 1_000;
/// How long a source that closed its output may take to exit.
const EXIT_WAIT: Duration = Duration::from_secs(10);
/// Configuration strings shorter than this are not redacted (they would
/// mangle every message).
const MIN_REDACTED: usize = 4;

/// The programs the operator lets `sync_airbyte_source` run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum AirbytePrograms {
    /// None (the default).
    #[default]
    None,
    /// These, compared exactly with the command's program word.
    Only(Vec<String>),
    /// Any program (`--airbyte-source '*'`).
    Any,
}

impl AirbytePrograms {
    /// From the operator's list: empty → none, `*` among them → any.
    pub fn from_list(list: &[String]) -> AirbytePrograms {
        if list.iter().any(|p| p == "*") {
            AirbytePrograms::Any
        } else if list.is_empty() {
            AirbytePrograms::None
        } else {
            AirbytePrograms::Only(list.to_vec())
        }
    }

    fn allows(&self, program: &str) -> bool {
        match self {
            AirbytePrograms::None => false,
            AirbytePrograms::Only(list) => list.iter().any(|p| p == program),
            AirbytePrograms::Any => true,
        }
    }
}

/// The Airbyte-protocol source connector.
#[derive(Clone, Default)]
pub struct AirbyteSource {
    shared: Arc<Shared>,
    programs: Arc<AirbytePrograms>,
}

impl std::fmt::Debug for AirbyteSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AirbyteSource")
            .field("sessions", &self.shared.table().map.len())
            .finish_non_exhaustive()
    }
}

impl AirbyteSource {
    /// A connector that may run no program (see [`AirbytePrograms`]).
    pub fn new() -> AirbyteSource {
        AirbyteSource::default()
    }

    /// A connector that may run `programs`.
    pub fn allowing(programs: AirbytePrograms) -> AirbyteSource {
        AirbyteSource {
            programs: Arc::new(programs),
            ..AirbyteSource::default()
        }
    }

    /// The command of `ctx`, if the operator allows its program.
    fn command(&self, ctx: &CallContext) -> Result<Command, ConnectorError> {
        let command = Command::of(ctx)?;
        if self.programs.allows(&command.program) {
            Ok(command)
        } else {
            Err(ConnectorError::fatal(format!(
                "the operator has not allowed the Airbyte source program `{}` on this server \
                 (patchbay serve --airbyte-source {})",
                command.program, command.program
            )))
        }
    }

    /// How many `read` processes are parked between batches.
    pub fn parked_sessions(&self) -> usize {
        self.shared.table().map.len()
    }
}

#[derive(Default)]
struct Shared {
    /// Keyed at random per connector: fingerprints cannot be forged.
    hasher: std::collections::hash_map::RandomState,
    table: Mutex<Table>,
    catalogs: Mutex<HashMap<u64, (Instant, Arc<Value>)>>,
}

#[derive(Default)]
struct Table {
    map: HashMap<Key, Session>,
    reaper: Option<JoinHandle<()>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    fingerprint: u64,
    stream: String,
    cursor: Option<String>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    fn table(&self) -> MutexGuard<'_, Table> {
        lock(&self.table)
    }

    /// The parked session for `key`, if it is still fresh.
    fn take(&self, key: &Key) -> Option<Session> {
        let session = self.table().map.remove(key)?;
        (session.last_used.elapsed() < SESSION_IDLE).then_some(session)
    }

    /// Parks `session` under `key` (replacing one parked there), making room
    /// and starting the reaper as needed.
    fn park(self: &Arc<Shared>, key: Key, mut session: Session) {
        session.last_used = Instant::now();
        let mut evicted = Vec::new();
        {
            let mut table = self.table();
            while table.map.len() >= MAX_SESSIONS && !table.map.contains_key(&key) {
                let oldest = table
                    .map
                    .iter()
                    .min_by_key(|(_, s)| s.last_used)
                    .map(|(k, _)| k.clone());
                match oldest.and_then(|k| table.map.remove(&k)) {
                    Some(s) => evicted.push(s),
                    None => break,
                }
            }
            evicted.extend(table.map.insert(key, session));
            if table.reaper.as_ref().is_none_or(JoinHandle::is_finished) {
                let weak = Arc::downgrade(self);
                table.reaper = Some(tokio::spawn(reap(weak)));
            }
        }
        drop(evicted);
    }

    /// Removes the sessions idle too long; whether any is left.
    fn reap_idle(&self) -> bool {
        let stale: Vec<Session>;
        let left;
        {
            let mut table = self.table();
            let keys: Vec<Key> = table
                .map
                .iter()
                .filter(|(_, s)| s.last_used.elapsed() >= SESSION_IDLE)
                .map(|(k, _)| k.clone())
                .collect();
            stale = keys.iter().filter_map(|k| table.map.remove(k)).collect();
            left = !table.map.is_empty();
            if !left {
                table.reaper = None;
            }
        }
        drop(stale);
        left
    }

    fn cached_catalog(&self, fingerprint: u64) -> Option<Arc<Value>> {
        let catalogs = lock(&self.catalogs);
        catalogs
            .get(&fingerprint)
            .filter(|(at, _)| at.elapsed() < CATALOG_TTL)
            .map(|(_, c)| c.clone())
    }

    fn cache_catalog(&self, fingerprint: u64, catalog: Arc<Value>) {
        let mut catalogs = lock(&self.catalogs);
        if catalogs.len() >= MAX_CATALOGS {
            catalogs.retain(|_, (at, _)| at.elapsed() < CATALOG_TTL);
            if catalogs.len() >= MAX_CATALOGS {
                catalogs.clear();
            }
        }
        catalogs.insert(fingerprint, (Instant::now(), catalog));
    }
}

/// Kills idle sessions until none is parked (or the connector is gone).
async fn reap(shared: Weak<Shared>) {
    loop {
        tokio::time::sleep(REAP_EVERY).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        if !shared.reap_idle() {
            return;
        }
    }
}

// ---------------------------------------------------------------------------
// Credentials.

/// The command: the program and its leading arguments.
#[derive(Debug, Clone)]
struct Command {
    program: String,
    args: Vec<String>,
}

impl Command {
    fn of(ctx: &CallContext) -> Result<Command, ConnectorError> {
        let text = ctx
            .credentials
            .text("command")
            .ok_or_else(|| ConnectorError::invalid("no source command is configured"))?;
        let mut words = text.split_whitespace().map(str::to_owned);
        let program = words
            .next()
            .ok_or_else(|| ConnectorError::invalid("the source command is empty"))?;
        if program.contains('/') && !program.starts_with('/') {
            return Err(ConnectorError::invalid(format!(
                "the source command `{program}` is a relative path: give an absolute path or a \
                 name found on PATH"
            )));
        }
        Ok(Command {
            program,
            args: words.collect(),
        })
    }
}

/// The source's configuration, as written to its file, and what to hide.
struct Config {
    text: Zeroizing<String>,
    redact: Redactor,
}

impl Config {
    fn of(ctx: &CallContext) -> Result<Config, ConnectorError> {
        let mut value = match ctx.credentials.get("config") {
            None => return Err(ConnectorError::invalid("no source configuration is set")),
            Some(Value::String(s)) => serde_json::from_str::<Value>(s).map_err(|e| {
                ConnectorError::invalid(format!(
                    "the source configuration is not valid JSON (line {}, column {})",
                    e.line(),
                    e.column()
                ))
            })?,
            Some(v) => v.clone(),
        };
        if !value.is_object() {
            wipe(&mut value);
            return Err(ConnectorError::invalid(
                "the source configuration is not a JSON object",
            ));
        }
        let mut secrets = Zeroizing::new(Vec::new());
        collect_strings(&value, &mut secrets);
        let text = Zeroizing::new(value.to_string());
        wipe(&mut value);
        Ok(Config {
            text,
            redact: Redactor(secrets),
        })
    }
}

fn collect_strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) if s.chars().count() >= MIN_REDACTED => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|v| collect_strings(v, out)),
        Value::Object(o) => o.values().for_each(|v| collect_strings(v, out)),
        _ => {}
    }
}

fn wipe(v: &mut Value) {
    match v {
        Value::String(s) => zeroize::Zeroize::zeroize(s),
        Value::Array(a) => a.iter_mut().for_each(wipe),
        Value::Object(o) => o.values_mut().for_each(wipe),
        _ => {}
    }
}

/// Replaces the configuration's string values in text from the source.
#[derive(Default)]
struct Redactor(Zeroizing<Vec<String>>);

impl Redactor {
    fn apply<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(text);
        for secret in self.0.iter() {
            if out.contains(secret.as_str()) {
                out = Cow::Owned(out.replace(secret.as_str(), "[redacted]"));
            }
        }
        out
    }
}

/// A fingerprint of everything that makes a source what it is.
fn fingerprint(shared: &Shared, ctx: &CallContext, command: &Command, config: &Config) -> u64 {
    let mut h = shared.hasher.build_hasher();
    ctx.integration_id.hash(&mut h);
    command.program.hash(&mut h);
    command.args.hash(&mut h);
    config.text.as_str().hash(&mut h);
    h.finish()
}

// ---------------------------------------------------------------------------
// Messages.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
enum Kind {
    Record,
    State,
    Log,
    Trace,
    ConnectionStatus,
    Catalog,
    Spec,
    Control,
    #[serde(other)]
    Other,
}

/// One line of the source's output; only the part its type uses is parsed.
#[derive(Debug, Deserialize)]
struct Message<'a> {
    #[serde(rename = "type")]
    kind: Kind,
    #[serde(borrow)]
    record: Option<RecordMessage<'a>>,
    state: Option<Value>,
    log: Option<LogMessage>,
    trace: Option<Value>,
    #[serde(rename = "connectionStatus")]
    connection_status: Option<Value>,
    catalog: Option<Value>,
    spec: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct RecordMessage<'a> {
    #[serde(borrow)]
    stream: Cow<'a, str>,
    data: Value,
}

#[derive(Debug, Deserialize)]
struct LogMessage {
    level: String,
    message: String,
}

fn log_level(level: &str) -> LogLevel {
    match level {
        "FATAL" | "ERROR" => LogLevel::Error,
        "WARN" | "WARNING" => LogLevel::Warning,
        "DEBUG" | "TRACE" => LogLevel::Debug,
        _ => LogLevel::Info,
    }
}

/// The first `max` characters of `text`, with `…` when cut.
fn cut(text: &str, max: usize) -> Cow<'_, str> {
    match text.char_indices().nth(max) {
        Some((at, _)) => Cow::Owned(format!("{}…", &text[..at])),
        None => Cow::Borrowed(text),
    }
}

/// The error an `ERROR` trace stands for.
fn trace_error(trace: &Value, redact: &Redactor) -> ConnectorError {
    let error = &trace["error"];
    let message = error["message"]
        .as_str()
        .filter(|m| !m.trim().is_empty())
        .unwrap_or("the source reported an error");
    let text = match error["internal_message"].as_str() {
        Some(i) if !i.trim().is_empty() && i != message => {
            format!("{message} ({})", cut(i.trim(), 500))
        }
        _ => message.to_owned(),
    };
    let text = format!("the source failed: {}", redact.apply(&text));
    if error["failure_type"] == "config_error" {
        ConnectorError::fatal(text)
    } else {
        ConnectorError::transient(text)
    }
}

/// Logs a trace other than `ERROR`; an `ESTIMATE` for `stream` gives its
/// total.
fn note_trace(trace: &Value, stream: Option<&str>, log: &CallLog) -> Option<u64> {
    match trace["type"].as_str() {
        Some("ESTIMATE") => {
            let e = &trace["estimate"];
            let ours = match e["type"].as_str() {
                Some("STREAM") => stream.is_some_and(|s| e["name"] == s),
                _ => true,
            };
            let rows = e["row_estimate"].as_u64();
            log.push(
                LogLevel::Debug,
                &format!(
                    "the source estimates {} rows",
                    rows.map_or_else(|| "?".to_owned(), |r| r.to_string())
                ),
            );
            if ours { rows } else { None }
        }
        Some("STREAM_STATUS") => {
            let s = &trace["stream_status"];
            log.push(
                LogLevel::Debug,
                &format!(
                    "stream `{}`: {}",
                    s["stream_descriptor"]["name"].as_str().unwrap_or("?"),
                    s["status"].as_str().unwrap_or("?")
                ),
            );
            None
        }
        other => {
            log.push(
                LogLevel::Debug,
                &format!("the source sent a {} trace", other.unwrap_or("typeless")),
            );
            None
        }
    }
}

/// What a JSON line that is not a readable message is called (its content
/// is never shown: it may be a record).
const MALFORMED: &str = "a JSON line of the source's output is not a readable Airbyte message";

/// Whether a line that is not a protocol message is JSON all the same.
fn is_json(line: &[u8]) -> bool {
    serde_json::from_slice::<serde::de::IgnoredAny>(line).is_ok()
}

/// Logs a line that is not a protocol message (and not JSON).
fn note_output(line: &[u8], redact: &Redactor, log: &CallLog) {
    let text = String::from_utf8_lossy(line);
    let text = text.trim();
    if !text.is_empty() {
        log.push(
            LogLevel::Info,
            &format!("source output: {}", redact.apply(&cut(text, 1_000))),
        );
    }
}

/// Logs a control message (which Patchbay does not act on).
fn note_control(log: &CallLog) {
    log.push(
        LogLevel::Warning,
        "the source sent a CONTROL message (e.g. an updated configuration); Patchbay does not \
         apply it: update the configuration by hand if needed",
    );
}

/// The state of a `STATE` message, when it is for `stream`, without the
/// per-message statistics.
fn stream_state(mut state: Value, stream: &str) -> Option<Value> {
    let ours = match state["type"].as_str() {
        Some("STREAM") => state["stream"]["stream_descriptor"]["name"] == stream,
        Some("GLOBAL" | "LEGACY") | None => true,
        Some(_) => false,
    };
    if !ours {
        return None;
    }
    if let Value::Object(o) = &mut state {
        o.remove("sourceStats");
        o.remove("destinationStats");
    }
    Some(state)
}

/// The cursor: the last state, and how many records were returned past it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Cursor {
    state: Option<Value>,
    #[serde(default, skip_serializing_if = "is_zero")]
    after: u64,
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's `skip_serializing_if` signature.
fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Cursor {
    fn parse(text: Option<&str>) -> Result<Cursor, ConnectorError> {
        let Some(text) = text else {
            return Ok(Cursor::default());
        };
        serde_json::from_str::<Cursor>(text)
            .ok()
            .filter(|c| c.state.as_ref().is_none_or(Value::is_object))
            .ok_or_else(|| {
                ConnectorError::invalid("the cursor is not an Airbyte state this connector wrote")
            })
    }

    fn text(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The `--state` file for a new process.
    fn state_file(&self) -> Option<Value> {
        let state = self.state.as_ref()?;
        match state["type"].as_str() {
            Some("LEGACY") | None => Some(state.get("data").cloned().unwrap_or(json!({}))),
            Some(_) => Some(Value::Array(vec![state.clone()])),
        }
    }
}

// ---------------------------------------------------------------------------
// Processes.

/// The end of a process's stderr.
#[derive(Debug, Default)]
struct Tail(Vec<u8>);

impl Tail {
    fn push(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
        if self.0.len() > 2 * STDERR_TAIL {
            let extra = self.0.len() - STDERR_TAIL;
            self.0.drain(..extra);
        }
    }

    fn shown(&self, redact: &Redactor) -> Option<String> {
        let start = self.0.len().saturating_sub(STDERR_TAIL);
        let text = String::from_utf8_lossy(&self.0[start..]);
        let text = text.trim();
        if text.is_empty() {
            return None;
        }
        let count = text.chars().count();
        let text = if count > STDERR_SHOWN {
            let skip = text
                .char_indices()
                .nth(count - STDERR_SHOWN)
                .map_or(0, |(i, _)| i);
            format!("…{}", &text[skip..])
        } else {
            text.to_owned()
        };
        Some(redact.apply(&text).into_owned())
    }
}

/// A running source process and its private directory.
struct Proc {
    child: Child,
    out: BufReader<ChildStdout>,
    stderr: Arc<Mutex<Tail>>,
    stderr_task: Option<JoinHandle<()>>,
    /// Removed when the process is dropped (after it is killed).
    _dir: tempfile::TempDir,
}

/// What a line read gave.
enum Line {
    /// A whole line is in the buffer.
    Complete,
    /// A line longer than [`MAX_LINE_BYTES`] was skipped.
    TooLong,
    /// The output ended.
    Eof,
}

impl Proc {
    /// Starts `command` with `args` (paths inside `dir`) in `dir`.
    fn start(
        command: &Command,
        dir: tempfile::TempDir,
        args: &[OsString],
    ) -> Result<Proc, ConnectorError> {
        let mut cmd = tokio::process::Command::new(&command.program);
        cmd.args(&command.args).args(args).env_clear();
        for key in INHERITED_ENV {
            #[allow(
                clippy::disallowed_methods,
                reason = "a source gets a few variables of Patchbay's environment, nothing else"
            )]
            if let Some(value) = std::env::var_os(key) {
                cmd.env(key, value);
            }
        }
        cmd.env("TMPDIR", dir.path())
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| {
            ConnectorError::invalid(format!(
                "cannot start the source command `{}`: {e}",
                command.program
            ))
        })?;
        let out = child
            .stdout
            .take()
            .ok_or_else(|| ConnectorError::transient("the source's stdout is not available"))?;
        let stderr = Arc::new(Mutex::new(Tail::default()));
        let stderr_task = child.stderr.take().map(|mut pipe| {
            let tail = stderr.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8 << 10];
                while let Ok(n) = pipe.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    lock(&tail).push(&buf[..n]);
                }
            })
        });
        Ok(Proc {
            child,
            out: BufReader::with_capacity(1 << 20, out),
            stderr,
            stderr_task,
            _dir: dir,
        })
    }

    /// Reads the rest of a line into `line` (kept across cancellations: a
    /// line cut by a timeout is completed by the next call).
    async fn next_line(
        &mut self,
        line: &mut Vec<u8>,
        skipping: &mut bool,
    ) -> std::io::Result<Line> {
        loop {
            let available = self.out.fill_buf().await?;
            if available.is_empty() {
                return Ok(if line.is_empty() && !*skipping {
                    Line::Eof
                } else if std::mem::take(skipping) {
                    Line::TooLong
                } else {
                    Line::Complete
                });
            }
            let (take, done) = match available.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (available.len(), false),
            };
            if !*skipping {
                if line.len() + take > MAX_LINE_BYTES + 1 {
                    *skipping = true;
                    line.clear();
                } else {
                    line.extend_from_slice(&available[..take]);
                }
            }
            self.out.consume(take);
            if done {
                return Ok(if std::mem::take(skipping) {
                    Line::TooLong
                } else {
                    Line::Complete
                });
            }
        }
    }

    /// Waits for the exit after the output ended: `Ok` for status 0.
    async fn finish(&mut self, redact: &Redactor) -> Result<(), ConnectorError> {
        let status = match tokio::time::timeout(EXIT_WAIT, self.child.wait()).await {
            Ok(Ok(status)) => status,
            Ok(Err(e)) => {
                return Err(ConnectorError::transient(format!(
                    "cannot wait for the source: {e}"
                )));
            }
            Err(_) => {
                return Err(ConnectorError::transient(format!(
                    "the source closed its output but did not exit within {} s",
                    EXIT_WAIT.as_secs()
                )));
            }
        };
        if status.success() {
            return Ok(());
        }
        Err(ConnectorError::transient(format!(
            "the source exited with {status}{}",
            self.stderr_note(redact).await
        )))
    }

    /// `; stderr: <its end>`, or nothing.
    async fn stderr_note(&mut self, redact: &Redactor) -> String {
        if let Some(task) = self.stderr_task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(1), task).await;
        }
        lock(&self.stderr)
            .shown(redact)
            .map_or_else(String::new, |s| format!("; stderr: {s}"))
    }
}

/// A private directory with the configuration (and more) in it.
fn private_dir() -> Result<tempfile::TempDir, ConnectorError> {
    let dir = tempfile::Builder::new()
        .prefix("patchbay-airbyte-")
        .tempdir()
        .map_err(|e| {
            ConnectorError::transient(format!("cannot create a temporary directory: {e}"))
        })?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).map_err(
            |e| ConnectorError::transient(format!("cannot protect the temporary directory: {e}")),
        )?;
    }
    Ok(dir)
}

/// Writes a file only the owner can read; its path as an argument.
fn private_file(dir: &Path, name: &str, bytes: &[u8]) -> Result<OsString, ConnectorError> {
    let path = dir.join(name);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    options
        .open(&path)
        .and_then(|mut f| f.write_all(bytes))
        .map_err(|e| ConnectorError::transient(format!("cannot write `{name}`: {e}")))?;
    Ok(path.into_os_string())
}

fn output_error(e: &std::io::Error) -> ConnectorError {
    ConnectorError::transient(format!("cannot read the source's output: {e}"))
}

/// What a one-shot command (`spec`, `check`, `discover`) is run for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    Spec,
    ConnectionStatus,
    Catalog,
}

impl Want {
    fn name(self) -> &'static str {
        match self {
            Want::Spec => "spec",
            Want::ConnectionStatus => "check",
            Want::Catalog => "discover",
        }
    }
}

/// Runs `spec`, `check` or `discover` and answers the message it is run for.
async fn one_shot(
    ctx: &CallContext,
    command: &Command,
    config: Option<&Config>,
    want: Want,
) -> Result<Value, ConnectorError> {
    let dir = private_dir()?;
    let mut args = vec![OsString::from(want.name())];
    if let Some(config) = config {
        args.push("--config".into());
        args.push(private_file(
            dir.path(),
            "config.json",
            config.text.as_bytes(),
        )?);
    }
    let none = Redactor::default();
    let redact = config.map_or(&none, |c| &c.redact);
    let mut proc = Proc::start(command, dir, &args)?;
    let work = async {
        let mut line = Vec::new();
        let mut skipping = false;
        let mut found = None;
        loop {
            line.clear();
            match proc
                .next_line(&mut line, &mut skipping)
                .await
                .map_err(|e| output_error(&e))?
            {
                Line::Eof => break,
                Line::TooLong => {
                    ctx.log.push(
                        LogLevel::Warning,
                        &format!(
                            "a line of the source's output longer than {} MiB was skipped",
                            MAX_LINE_BYTES >> 20
                        ),
                    );
                    continue;
                }
                Line::Complete => {}
            }
            let Ok(message) = serde_json::from_slice::<Message>(&line) else {
                if is_json(&line) {
                    ctx.log.push(LogLevel::Warning, MALFORMED);
                } else {
                    note_output(&line, redact, &ctx.log);
                }
                continue;
            };
            match message.kind {
                Kind::Log => {
                    if let Some(l) = message.log {
                        ctx.log.push(log_level(&l.level), &redact.apply(&l.message));
                    }
                }
                Kind::Trace => {
                    if let Some(t) = message.trace {
                        if t["type"] == "ERROR" {
                            return Err(trace_error(&t, redact));
                        }
                        note_trace(&t, None, &ctx.log);
                    }
                }
                Kind::Control => note_control(&ctx.log),
                Kind::Spec if want == Want::Spec => found = found.or(message.spec),
                Kind::ConnectionStatus if want == Want::ConnectionStatus => {
                    found = found.or(message.connection_status);
                }
                Kind::Catalog if want == Want::Catalog => found = found.or(message.catalog),
                _ => {}
            }
        }
        let finished = proc.finish(redact).await;
        match (found, finished) {
            (Some(v), _) => Ok(v),
            (None, Err(e)) => Err(e),
            (None, Ok(())) => Err(ConnectorError::transient(format!(
                "the source's `{}` ended without a {} message{}",
                want.name(),
                match want {
                    Want::Spec => "SPEC",
                    Want::ConnectionStatus => "CONNECTION_STATUS",
                    Want::Catalog => "CATALOG",
                },
                proc.stderr_note(redact).await
            ))),
        }
    };
    match tokio::time::timeout(ctx.deadline, work).await {
        Ok(r) => r,
        Err(_) => Err(ConnectorError::transient(format!(
            "the source's `{}` did not finish within {} s",
            want.name(),
            ctx.deadline.as_secs()
        ))),
    }
}

/// The configured catalog for `stream` of `catalog`.
fn configured_catalog(catalog: &Value, stream: &str) -> Result<Value, ConnectorError> {
    let streams = catalog["streams"].as_array().map_or(&[][..], Vec::as_slice);
    let Some(found) = streams.iter().find(|s| s["name"] == stream) else {
        let names: Vec<&str> = streams.iter().filter_map(|s| s["name"].as_str()).collect();
        return Err(ConnectorError::unsupported(format!(
            "reading stream `{stream}`: the source's streams are {}",
            if names.is_empty() {
                "none".to_owned()
            } else {
                names.join(", ")
            }
        )));
    };
    let modes = found["supported_sync_modes"]
        .as_array()
        .map_or(&[][..], Vec::as_slice);
    let cursor_field = found["default_cursor_field"]
        .as_array()
        .filter(|f| !f.is_empty())
        .cloned();
    let incremental = modes.iter().any(|m| m == "incremental")
        && (found["source_defined_cursor"] == true || cursor_field.is_some());
    let mut configured = json!({
        "stream": found,
        "sync_mode": if incremental { "incremental" } else { "full_refresh" },
        "destination_sync_mode": if incremental { "append" } else { "overwrite" },
    });
    if let Some(field) = cursor_field {
        configured["cursor_field"] = Value::Array(field);
    }
    if let Some(pk) = found["source_defined_primary_key"].as_array() {
        configured["primary_key"] = Value::Array(pk.clone());
    }
    Ok(json!({ "streams": [configured] }))
}

// ---------------------------------------------------------------------------
// Read sessions.

/// A `read` process and where it is.
struct Session {
    /// `None`: the source ended (status 0).
    proc: Option<Proc>,
    pos: Position,
    last_used: Instant,
}

/// Where a session is in the source's output.
struct Position {
    /// The line being read (kept across calls: a line cut by a timeout is
    /// completed by the next one).
    line: Vec<u8>,
    skipping: bool,
    line_no: u64,
    /// The last state for the stream, and the records read past it.
    cursor: Cursor,
    total: Option<u64>,
}

/// The batch being read.
struct Pending<'c> {
    ctx: &'c CallContext,
    stream: &'c str,
    redact: &'c Redactor,
    batch: Batch,
    bytes: usize,
    started: Instant,
}

impl Pending<'_> {
    fn count(&self) -> usize {
        self.batch.records.len() + self.batch.failures.len()
    }

    fn fail(&mut self, line_no: u64, message: String) {
        self.batch.failures.push(RecordFailure {
            position: format!("line {line_no} of the source's output"),
            external_id: None,
            message,
        });
    }
}

/// After a message: read on, or the batch is complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    More,
    Complete,
}

/// How a batch read ended.
enum Step {
    Batch(Batch),
    /// No record came within the time: park and ask again.
    Waiting,
}

impl Position {
    /// Takes one line of the source's output into the batch.
    fn take(&mut self, line: &[u8], p: &mut Pending<'_>) -> Result<Flow, ConnectorError> {
        let Ok(message) = serde_json::from_slice::<Message>(line) else {
            if is_json(line) {
                // Most likely a record the source wrote wrongly: a failure.
                self.cursor.after += 1;
                p.fail(self.line_no, MALFORMED.to_owned());
            } else {
                note_output(line, p.redact, &p.ctx.log);
            }
            return Ok(Flow::More);
        };
        match message.kind {
            Kind::Record => {
                let Some(record) = message.record.filter(|r| r.stream == p.stream) else {
                    return Ok(Flow::More);
                };
                self.cursor.after += 1;
                p.bytes += line.len();
                if record.data.is_object() {
                    p.batch.records.push(record.data);
                } else {
                    p.fail(
                        self.line_no,
                        "the record's data is not a JSON object".to_owned(),
                    );
                }
                if p.count() >= HARD_BATCH || p.bytes >= HARD_BATCH_BYTES {
                    return Ok(Flow::Complete);
                }
            }
            Kind::State => {
                if let Some(state) = message.state.and_then(|s| stream_state(s, p.stream)) {
                    self.cursor = Cursor {
                        state: Some(state),
                        after: 0,
                    };
                    let count = p.count();
                    if count > 0
                        && (count >= BATCH
                            || p.bytes >= MAX_BATCH_BYTES
                            || p.started.elapsed() >= p.ctx.deadline / 4)
                    {
                        return Ok(Flow::Complete);
                    }
                }
            }
            Kind::Log => {
                if let Some(l) = message.log {
                    p.ctx
                        .log
                        .push(log_level(&l.level), &p.redact.apply(&l.message));
                }
            }
            Kind::Trace => {
                if let Some(t) = message.trace {
                    if t["type"] == "ERROR" {
                        return Err(trace_error(&t, p.redact));
                    }
                    if let Some(total) = note_trace(&t, Some(p.stream), &p.ctx.log) {
                        self.total = Some(total);
                        p.batch.total = Some(total);
                    }
                }
            }
            Kind::Control => note_control(&p.ctx.log),
            Kind::ConnectionStatus | Kind::Catalog | Kind::Spec | Kind::Other => {}
        }
        Ok(Flow::More)
    }
}

impl Session {
    /// Reads the next batch of `stream`.
    async fn next_batch(
        &mut self,
        ctx: &CallContext,
        stream: &str,
        redact: &Redactor,
    ) -> Result<Step, ConnectorError> {
        let start_cursor = self.pos.cursor.clone();
        let mut p = Pending {
            ctx,
            stream,
            redact,
            batch: Batch {
                total: self.pos.total,
                ..Batch::default()
            },
            bytes: 0,
            started: Instant::now(),
        };
        let Some(proc) = self.proc.as_mut() else {
            return Ok(Step::Batch(p.batch));
        };
        let pos = &mut self.pos;
        loop {
            let limit = if p.count() == 0 {
                ctx.deadline * 3 / 4
            } else {
                ctx.deadline / 2
            };
            let read = tokio::time::timeout(
                limit.saturating_sub(p.started.elapsed()),
                proc.next_line(&mut pos.line, &mut pos.skipping),
            )
            .await;
            let line = match read {
                Err(_) if p.count() == 0 => return Ok(Step::Waiting),
                Err(_) => {
                    p.batch.next_cursor = Some(pos.cursor.text());
                    return Ok(Step::Batch(p.batch));
                }
                Ok(r) => r.map_err(|e| output_error(&e))?,
            };
            pos.line_no += 1;
            let flow = match line {
                Line::Eof => break,
                Line::TooLong => {
                    pos.cursor.after += 1;
                    p.fail(
                        pos.line_no,
                        format!("the message is longer than {} MiB", MAX_LINE_BYTES >> 20),
                    );
                    Flow::More
                }
                Line::Complete => {
                    let line = std::mem::take(&mut pos.line);
                    let flow = pos.take(&line, &mut p);
                    pos.line = line;
                    pos.line.clear();
                    flow?
                }
            };
            if flow == Flow::Complete {
                p.batch.next_cursor = Some(pos.cursor.text());
                return Ok(Step::Batch(p.batch));
            }
        }
        // The output ended: the process must have succeeded.
        proc.finish(redact).await?;
        self.proc = None;
        if p.count() > 0 || pos.cursor != start_cursor {
            p.batch.next_cursor = Some(pos.cursor.text());
        }
        Ok(Step::Batch(p.batch))
    }
}

impl AirbyteSource {
    /// The discovered catalog (cached).
    async fn catalog(
        &self,
        ctx: &CallContext,
        command: &Command,
        config: &Config,
        fingerprint: u64,
    ) -> Result<Arc<Value>, ConnectorError> {
        if let Some(c) = self.shared.cached_catalog(fingerprint) {
            return Ok(c);
        }
        let catalog = Arc::new(one_shot(ctx, command, Some(config), Want::Catalog).await?);
        self.shared.cache_catalog(fingerprint, catalog.clone());
        Ok(catalog)
    }

    /// Starts a `read` process for `stream` from `cursor`.
    async fn start_session(
        &self,
        ctx: &CallContext,
        command: &Command,
        config: &Config,
        fingerprint: u64,
        stream: &str,
        cursor: &Cursor,
    ) -> Result<Session, ConnectorError> {
        let catalog = self.catalog(ctx, command, config, fingerprint).await?;
        let configured = configured_catalog(&catalog, stream)?;
        let dir = private_dir()?;
        let mut args = vec![
            OsString::from("read"),
            "--config".into(),
            private_file(dir.path(), "config.json", config.text.as_bytes())?,
            "--catalog".into(),
            private_file(
                dir.path(),
                "catalog.json",
                configured.to_string().as_bytes(),
            )?,
        ];
        if let Some(state) = cursor.state_file() {
            args.push("--state".into());
            args.push(private_file(
                dir.path(),
                "state.json",
                state.to_string().as_bytes(),
            )?);
        }
        let proc = Proc::start(command, dir, &args)?;
        Ok(Session {
            proc: Some(proc),
            pos: Position {
                line: Vec::new(),
                skipping: false,
                line_no: 0,
                cursor: Cursor {
                    state: cursor.state.clone(),
                    after: 0,
                },
                total: None,
            },
            last_used: Instant::now(),
        })
    }
}

fn discovered_streams(catalog: &Value) -> Value {
    let streams = catalog["streams"].as_array().map_or(&[][..], Vec::as_slice);
    Value::Array(
        streams
            .iter()
            .map(|s| {
                json!({
                    "name": s["name"],
                    "namespace": s["namespace"],
                    "jsonSchema": s["json_schema"],
                    "supportedSyncModes": s["supported_sync_modes"],
                    "sourceDefinedCursor": s["source_defined_cursor"],
                    "defaultCursorField": s["default_cursor_field"],
                    "sourceDefinedPrimaryKey": s["source_defined_primary_key"],
                })
            })
            .collect(),
    )
}

#[async_trait::async_trait]
impl Connector for AirbyteSource {
    async fn check(&self, ctx: &CallContext) -> Result<Health, ConnectorError> {
        let not_ok = |message: String| Health { ok: false, message };
        let (command, config) = match (self.command(ctx), Config::of(ctx)) {
            (Ok(command), Ok(config)) => (command, config),
            (
                Err(ConnectorError::InvalidInput { message } | ConnectorError::Fatal { message }),
                _,
            )
            | (_, Err(ConnectorError::InvalidInput { message })) => return Ok(not_ok(message)),
            (Err(e), _) | (_, Err(e)) => return Err(e),
        };
        let status = match one_shot(ctx, &command, Some(&config), Want::ConnectionStatus).await {
            Ok(status) => status,
            Err(ConnectorError::InvalidInput { message } | ConnectorError::Fatal { message }) => {
                return Ok(not_ok(message));
            }
            Err(e) => return Err(e),
        };
        let message = status["message"]
            .as_str()
            .map(|m| config.redact.apply(m).into_owned());
        Ok(match status["status"].as_str() {
            Some("SUCCEEDED") => Health {
                ok: true,
                message: message.unwrap_or_else(|| "the source accepted the configuration".into()),
            },
            _ => not_ok(message.unwrap_or_else(|| "the source refused the configuration".into())),
        })
    }

    async fn read(
        &self,
        ctx: &CallContext,
        stream: &str,
        cursor: Option<&str>,
    ) -> Result<Batch, ConnectorError> {
        let command = self.command(ctx)?;
        let config = Config::of(ctx)?;
        let fingerprint = fingerprint(&self.shared, ctx, &command, &config);
        let key = Key {
            fingerprint,
            stream: stream.to_owned(),
            cursor: cursor.map(str::to_owned),
        };
        let mut session = if let Some(s) = self.shared.take(&key) {
            s
        } else {
            let from = Cursor::parse(cursor)?;
            self.start_session(ctx, &command, &config, fingerprint, stream, &from)
                .await?
        };
        match session.next_batch(ctx, stream, &config.redact).await? {
            Step::Batch(batch) => {
                if batch.records.len() + batch.failures.len() > 0
                    && let Some(next) = &batch.next_cursor
                {
                    let key = Key {
                        cursor: Some(next.clone()),
                        ..key
                    };
                    self.shared.park(key, session);
                }
                Ok(batch)
            }
            Step::Waiting => {
                self.shared.park(key, session);
                Err(ConnectorError::transient(format!(
                    "the source sent no record within {} s; the next attempt continues the same \
                     process",
                    (ctx.deadline * 3 / 4).as_secs()
                )))
            }
        }
    }

    async fn invoke(
        &self,
        ctx: &CallContext,
        action: &str,
        input: Value,
    ) -> Result<Value, ConnectorError> {
        let _ = input;
        if !matches!(action, "discover" | "spec") {
            return Err(ConnectorError::unsupported(format!(
                "action `{action}` (the actions are `discover` and `spec`)"
            )));
        }
        let command = self.command(ctx)?;
        if action == "spec" {
            let spec = one_shot(ctx, &command, None, Want::Spec).await?;
            return Ok(json!({ "spec": spec }));
        }
        let config = Config::of(ctx)?;
        let fingerprint = fingerprint(&self.shared, ctx, &command, &config);
        let catalog = Arc::new(one_shot(ctx, &command, Some(&config), Want::Catalog).await?);
        self.shared.cache_catalog(fingerprint, catalog.clone());
        Ok(json!({ "streams": discovered_streams(&catalog) }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_state_files_follow_the_state_type() {
        assert_eq!(Cursor::parse(None).unwrap(), Cursor::default());
        let stream = json!({"type": "STREAM", "stream": {"stream_descriptor": {"name": "users"}, "stream_state": {"n": 1}}});
        let c = Cursor {
            state: Some(stream.clone()),
            after: 0,
        };
        assert!(!c.text().contains("after"));
        assert_eq!(Cursor::parse(Some(&c.text())).unwrap(), c);
        assert_eq!(c.state_file(), Some(json!([stream])));
        let legacy = Cursor {
            state: Some(json!({"data": {"users": {"n": 2}}})),
            after: 7,
        };
        assert_eq!(Cursor::parse(Some(&legacy.text())).unwrap(), legacy);
        assert_eq!(legacy.state_file(), Some(json!({"users": {"n": 2}})));
        assert_eq!(Cursor::default().state_file(), None);
        for bad in ["", "12", "{\"state\": 3}", "[1]"] {
            assert!(Cursor::parse(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn states_of_other_streams_are_ignored_and_stats_dropped() {
        let ours = json!({"type": "STREAM", "stream": {"stream_descriptor": {"name": "users"}, "stream_state": {}}, "sourceStats": {"recordCount": 3.0}});
        assert_eq!(
            stream_state(ours, "users"),
            Some(
                json!({"type": "STREAM", "stream": {"stream_descriptor": {"name": "users"}, "stream_state": {}}})
            )
        );
        let theirs =
            json!({"type": "STREAM", "stream": {"stream_descriptor": {"name": "products"}}});
        assert_eq!(stream_state(theirs, "users"), None);
        let global = json!({"type": "GLOBAL", "global": {"shared_state": {"lsn": 4}}});
        assert_eq!(stream_state(global.clone(), "users"), Some(global));
    }

    #[test]
    fn the_catalog_asks_for_incremental_when_the_stream_has_a_cursor() {
        let catalog = json!({"streams": [
            {"name": "a", "json_schema": {}, "supported_sync_modes": ["full_refresh", "incremental"], "source_defined_cursor": true, "default_cursor_field": ["updated_at"], "source_defined_primary_key": [["id"]]},
            {"name": "b", "json_schema": {}, "supported_sync_modes": ["full_refresh"]},
        ]});
        let a = configured_catalog(&catalog, "a").unwrap();
        assert_eq!(a["streams"][0]["sync_mode"], "incremental");
        assert_eq!(a["streams"][0]["destination_sync_mode"], "append");
        assert_eq!(a["streams"][0]["cursor_field"], json!(["updated_at"]));
        assert_eq!(a["streams"][0]["primary_key"], json!([["id"]]));
        let b = configured_catalog(&catalog, "b").unwrap();
        assert_eq!(b["streams"][0]["sync_mode"], "full_refresh");
        assert_eq!(b["streams"][0]["destination_sync_mode"], "overwrite");
        let missing = configured_catalog(&catalog, "c").unwrap_err();
        assert!(
            missing
                .to_string()
                .contains("the source's streams are a, b")
        );
    }

    #[test]
    fn messages_parse_by_type_and_config_strings_are_redacted() {
        let m: Message = serde_json::from_slice(
            br#"{"type":"RECORD","record":{"stream":"users","data":{"id":1},"emitted_at":1}}"#,
        )
        .unwrap();
        assert_eq!(m.kind, Kind::Record);
        assert_eq!(m.record.unwrap().data, json!({"id": 1}));
        let m: Message = serde_json::from_slice(br#"{"type":"SOMETHING_NEW","x":1}"#).unwrap();
        assert_eq!(m.kind, Kind::Other);
        let r = Redactor(Zeroizing::new(vec!["hunter22".to_owned()]));
        assert_eq!(
            r.apply("password hunter22 refused"),
            "password [redacted] refused"
        );
        assert_eq!(log_level("WARN"), LogLevel::Warning);
        assert_eq!(log_level("FATAL"), LogLevel::Error);
        let mut tail = Tail::default();
        tail.push(&vec![b'x'; 3 * STDERR_TAIL]);
        tail.push(b"\nboom hunter22\n");
        let shown = tail.shown(&r).unwrap();
        assert!(shown.starts_with('…') && shown.ends_with("boom [redacted]"));
        assert!(shown.chars().count() <= STDERR_SHOWN + "[redacted]".len());
    }
}
