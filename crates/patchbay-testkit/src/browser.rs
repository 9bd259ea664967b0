//! A small WebDriver client driving a real headless Chromium, for end-to-end
//! tests of the server-rendered admin panel.
//!
//! Why WebDriver, over a tiny blocking HTTP exchange: `chromedriver`
//! (Debian's `chromium-driver`) speaks the W3C WebDriver protocol, which is
//! plain JSON over HTTP/1.1, one request at a time. The handful of commands
//! the tests need (navigate, find, click, type, read text, run a script, take a
//! screenshot) are each one request and one JSON answer, so a few lines of
//! `std::net` are enough: no async runtime, no HTTP client crate, no
//! browser-automation framework in the test build. The DevTools protocol
//! (what Puppeteer-style libraries speak) would need WebSockets and event
//! handling for the same result.
//!
//! The exchange is `exchange` here rather than [`crate::http::request`]:
//! that client reads a response until the server closes the connection, and
//! `chromedriver` answers `Connection: close` but keeps the socket open, so
//! every command would wait for the 30 s read timeout. `exchange` reads
//! exactly `Content-Length` bytes instead.
//!
//! Every [`Browser`] is one WebDriver session with its own `chromedriver`
//! (on a free port) and its own fresh Chromium profile, so tests may run
//! several browsers in parallel in one test process without sharing cookies
//! or storage. Only `localhost` and `127.0.0.1` resolve in the browser: serve
//! the page under test there; anything else fails at once instead of waiting
//! on the network.
//!
//! Cleanup, on both paths:
//! * dropping the [`Browser`] deletes the session (Chromium shuts down), kills
//!   and reaps `chromedriver` and waits for the watcher below to finish;
//! * `chromedriver` runs in its own process group, which the browser processes
//!   it starts inherit, and a small `sh` watcher holds a pipe from the test
//!   process: when that pipe closes (the browser dropped, or the test process
//!   exiting or killed, however it ends) the watcher sends SIGTERM to the whole
//!   group, escalates to SIGKILL after 5 s, and removes the session's
//!   temporary directory (profile, `TMPDIR`, XDG config and cache).
//!   The watcher ignores SIGINT/SIGHUP/SIGTERM, so a Ctrl-C reaching the test's
//!   process group does not stop it before it has cleaned up.
//!
//! Errors are panics naming the command and the WebDriver error: these are
//! test helpers, and a failed browser command is a failed test. Waiting
//! helpers poll the browser every 20 ms up to their deadline; there are no
//! fixed sleeps.
//!
//! When `chromedriver` or `chromium` is missing, [`browser`] returns `None`
//! and browser tests skip with a note — except under `CI=true`, where that
//! fails the run (the same policy as the PostgreSQL helper).
// "WebDriver" is the protocol's name, not a code identifier: backticks on
// every mention would only make the docs harder to read.
#![allow(clippy::doc_markdown)]

use std::fmt::Write as _;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

use crate::{free_port, under_ci};

/// The key under which WebDriver returns (and accepts) element references.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// How long [`Browser::find`] and [`Element::find`] wait for an element.
pub const FIND_TIMEOUT: Duration = Duration::from_secs(5);

/// How often waiting helpers ask the browser again.
const POLL: Duration = Duration::from_millis(20);

/// Starts a headless Chromium session; `None` when `chromedriver` or
/// `chromium` is not installed (and not under CI, where that panics).
pub fn browser() -> Option<Browser> {
    let (driver, chromium) = match (find_binary("chromedriver"), find_binary("chromium")) {
        (Some(driver), Some(chromium)) => (driver, chromium),
        (driver, chromium) => {
            let missing = [
                ("chromedriver", driver.is_none()),
                ("chromium", chromium.is_none()),
            ]
            .iter()
            .filter(|(_, missing)| *missing)
            .map(|(name, _)| *name)
            .collect::<Vec<_>>()
            .join(" and ");
            assert!(
                !under_ci(),
                "{missing} not found (apt-get install chromium chromium-driver), \
                 and CI=true forbids skipping the browser tests"
            );
            eprintln!(
                "note: {missing} not found; browser tests are skipped \
                 (apt-get install chromium chromium-driver; set CI=true to make this an error)"
            );
            return None;
        }
    };
    let driver = Driver::start(&driver)
        .unwrap_or_else(|e| panic!("cannot start chromedriver ({}): {e}", driver.display()));
    let args = [
        "--headless=new".to_owned(),
        "--no-sandbox".to_owned(),
        "--disable-gpu".to_owned(),
        "--disable-dev-shm-usage".to_owned(),
        "--disable-quic".to_owned(),
        "--no-first-run".to_owned(),
        "--disable-background-networking".to_owned(),
        "--disable-component-update".to_owned(),
        "--disable-sync".to_owned(),
        "--window-size=1280,900".to_owned(),
        format!("--user-data-dir={}", driver.dir.join("profile").display()),
        // Hermetic: only loopback resolves. Without it the initial New Tab
        // Page looks up Debian's default search engine's start page, which on
        // a closed network stalled the first navigation by ~5 s in about one
        // start in six.
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1".to_owned(),
    ];
    let capabilities = json!({
        "capabilities": {
            "alwaysMatch": {
                "browserName": "chrome",
                // Below the HTTP client's 30 s read timeout, so a hung page
                // fails with WebDriver's own "timeout" error.
                "timeouts": { "pageLoad": 20_000, "script": 20_000, "implicit": 0 },
                "goog:chromeOptions": { "binary": chromium, "args": args },
            }
        }
    });
    let session = call(driver.addr, "POST", "/session", Some(&capabilities))
        .and_then(|v| {
            v["sessionId"]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| format!("no sessionId in {v}"))
        })
        .unwrap_or_else(|e| {
            panic!(
                "cannot start a Chromium session ({}): {e}",
                chromium.display()
            )
        });
    Some(Browser { driver, session })
}

/// Where tests put artifacts a reviewer may want to open (screenshots).
///
/// * `$CARGO_TARGET_TMPDIR/test-artifacts` when that variable is set at run
///   time (an explicit override: cargo itself sets it only while *compiling*
///   integration tests, not when running them);
/// * otherwise `<target dir>/test-artifacts`, the target dir found at run time
///   as the nearest ancestor of the running test executable holding cargo's
///   `CACHEDIR.TAG` (so `CARGO_TARGET_DIR` and `--target` are honoured, and the
///   answer does not depend on which crate compiled this code);
/// * otherwise `std::env::temp_dir()/patchbay-test-artifacts`.
///
/// The directory is not created here; [`Browser::screenshot`] creates what it
/// writes into.
pub fn artifacts_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_TMPDIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("test-artifacts");
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| {
            exe.ancestors()
                .skip(1)
                .find(|d| d.join("CACHEDIR.TAG").is_file())
                .map(|target| target.join("test-artifacts"))
        })
        .unwrap_or_else(|| std::env::temp_dir().join("patchbay-test-artifacts"))
}

/// `name` on `PATH`, then in `/usr/bin`, then in `/usr/lib/chromium/`.
fn find_binary(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([
            PathBuf::from("/usr/bin"),
            PathBuf::from("/usr/lib/chromium"),
        ])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// A running `chromedriver` with its watcher.
#[derive(Debug)]
struct Driver {
    addr: SocketAddr,
    child: Child,
    watcher: Child,
    /// Closing this pipe makes the watcher stop the process group.
    watch: Option<ChildStdin>,
    /// Everything the session writes: `profile/` (Chromium's user data dir),
    /// and `tmp/`, `config/`, `cache/` (`TMPDIR` and XDG directories of
    /// chromedriver and Chromium, which otherwise leave singleton sockets in
    /// `/tmp` and crash-report settings in `$HOME` behind).
    dir: PathBuf,
}

/// Run by `sh -c` with `$1` = chromedriver's process group and `$2` = the
/// session's directory. Waits for its stdin to close, then stops the group
/// (SIGTERM, SIGKILL after 5 s) and removes the directory. Zombies do not count
/// as running: browser helpers orphaned by the browser's exit wait for init to
/// reap them, which some inits do only every second or so.
const WATCHER: &str = r#"
trap '' INT HUP TERM
group=$1
dir=$2
running() {
  for stat in /proc/[0-9]*/stat; do
    read -r line <"$stat" || continue
    set -- ${line##*) }
    [ "$1" != Z ] && [ "$3" = "$group" ] && return 0
  done
  return 1
}
read -r _ignored
kill -s TERM -- "-$group" 2>/dev/null
i=0
while running; do
  i=$((i + 1))
  if [ "$i" -ge 100 ]; then
    kill -s KILL -- "-$group" 2>/dev/null
    break
  fi
  sleep 0.05
done
rm -rf "$dir"
"#;

impl Driver {
    fn start(bin: &Path) -> Result<Driver, String> {
        let mut last = String::new();
        for _attempt in 0..5 {
            let dir = tempfile::Builder::new()
                .prefix("patchbay-chromium-")
                .tempdir()
                .map_err(|e| format!("cannot create a temporary directory: {e}"))?
                .keep();
            for sub in ["profile", "tmp", "config", "cache"] {
                std::fs::create_dir(dir.join(sub))
                    .map_err(|e| format!("cannot create {}/{sub}: {e}", dir.display()))?;
            }
            let port = free_port();
            let mut cmd = Command::new(bin);
            cmd.arg(format!("--port={port}"))
                .env("TMPDIR", dir.join("tmp"))
                .env("XDG_CONFIG_HOME", dir.join("config"))
                .env("XDG_CACHE_HOME", dir.join("cache"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            // Its own process group: Chromium and its helpers join it, and the
            // watcher stops them all with one signal.
            std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
            let child = match cmd.spawn() {
                Ok(c) => c,
                Err(e) => {
                    let _ = std::fs::remove_dir_all(&dir);
                    return Err(format!("spawn: {e}"));
                }
            };
            let watcher = Command::new("sh")
                .args(["-c", WATCHER, "chromedriver-watch"])
                .arg(child.id().to_string())
                .arg(&dir)
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn();
            let mut watcher = match watcher {
                Ok(w) => w,
                Err(e) => {
                    let mut child = child;
                    let _ = child.kill();
                    let _ = child.wait();
                    let _ = std::fs::remove_dir_all(&dir);
                    return Err(format!("spawn the watcher shell: {e}"));
                }
            };
            let watch = watcher.stdin.take();
            let mut driver = Driver {
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
                child,
                watcher,
                watch,
                dir,
            };
            match driver.wait_ready(Duration::from_secs(10)) {
                Ok(()) => return Ok(driver),
                // Most likely the port was taken in the meantime: try another.
                Err(e) => last = e,
            }
        }
        Err(format!("not ready after 5 attempts; last: {last}"))
    }

    fn wait_ready(&mut self, limit: Duration) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("chromedriver exited with {status}"));
            }
            if let Ok(v) = call(self.addr, "GET", "/status", None)
                && v["ready"] == Value::Bool(true)
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!("GET /status not ready after {limit:?}"));
            }
            std::thread::sleep(POLL);
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // Closing the pipe sets the watcher going (SIGTERM to the group, then
        // the session's directory removed); killing the driver here as well makes Drop not
        // depend on the watcher for the process this struct owns.
        if let Some(mut w) = self.watch.take() {
            let _ = w.write_all(b"\n");
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = self.watcher.wait();
    }
}

/// Sends one WebDriver command and returns its `value`, or the WebDriver
/// error as `error: message (HTTP status)`.
fn call(addr: SocketAddr, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
    let body = body.map(Value::to_string).unwrap_or_default();
    let (status, resp) =
        exchange(addr, method, path, body.as_bytes()).map_err(|e| format!("HTTP: {e}"))?;
    let mut json: Value = serde_json::from_slice(&resp).map_err(|e| {
        format!(
            "HTTP {status}: not JSON ({e}): {}",
            String::from_utf8_lossy(&resp)
                .chars()
                .take(500)
                .collect::<String>()
        )
    })?;
    let value = json["value"].take();
    if status == 200 {
        return Ok(value);
    }
    Err(format!(
        "{}: {} (HTTP {})",
        value["error"].as_str().unwrap_or("unknown error"),
        value["message"]
            .as_str()
            .unwrap_or_default()
            .lines()
            .next()
            .unwrap_or_default(),
        status
    ))
}

/// One HTTP/1.1 request with a JSON body; returns the status and the body,
/// read up to `Content-Length` (to the end when the server sends none).
/// The timeout is above the session's page-load and script timeouts.
fn exchange(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
) -> std::io::Result<(u16, Vec<u8>)> {
    let invalid =
        |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let status = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| invalid("malformed status line"))?;
    let mut length = None;
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Err(invalid("connection closed in the headers"));
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.trim().eq_ignore_ascii_case("content-length")
        {
            length = Some(
                value
                    .trim()
                    .parse::<usize>()
                    .map_err(|_| invalid("bad Content-Length"))?,
            );
        }
    }
    let mut out = Vec::new();
    match length {
        Some(n) => {
            out.resize(n, 0);
            reader.read_exact(&mut out)?;
        }
        None => {
            reader.read_to_end(&mut out)?;
        }
    }
    Ok((status, out))
}

/// Whether a [`call`] error is WebDriver's "no such element".
fn is_no_such_element(error: &str) -> bool {
    error.starts_with("no such element:")
}

/// Percent-encodes a path segment (attribute and property names).
fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// A CSS string literal for `s`, for attribute selectors.
fn css_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\n' => out.push_str("\\a "),
            _ => out.push(c),
        }
    }
    out.push('"');
    out
}

/// One headless Chromium session. Dropping it ends the session and stops its
/// `chromedriver` and browser processes.
#[derive(Debug)]
pub struct Browser {
    /// Dropped (its processes stopped) after [`Browser::drop`] has deleted
    /// the session.
    driver: Driver,
    session: String,
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Chromium shuts down cleanly with the session; the driver's own Drop
        // then stops chromedriver and removes the session's directory.
        let _ = call(
            self.driver.addr,
            "DELETE",
            &format!("/session/{}", self.session),
            None,
        );
    }
}

impl Browser {
    /// Sends any WebDriver command of this session (`rel` relative to
    /// `/session/{id}`, e.g. `("POST", "/forward", Some(&json!({})))`) and
    /// returns its `value`, for the commands this type has no method for.
    #[track_caller]
    pub fn command(&self, method: &str, rel: &str, body: Option<&Value>) -> Value {
        self.cmd(method, rel, body)
    }

    /// The WebDriver session id.
    pub fn session_id(&self) -> &str {
        &self.session
    }

    /// Sends a command relative to this session (`rel` is e.g. `/url`).
    fn try_cmd(&self, method: &str, rel: &str, body: Option<&Value>) -> Result<Value, String> {
        let path = format!("/session/{}{rel}", self.session);
        call(self.driver.addr, method, &path, body)
    }

    /// Like [`Browser::try_cmd`], panicking with the command and the error.
    #[track_caller]
    fn cmd(&self, method: &str, rel: &str, body: Option<&Value>) -> Value {
        match self.try_cmd(method, rel, body) {
            Ok(v) => v,
            Err(e) => panic!("WebDriver {method} {rel} failed: {e}"),
        }
    }

    /// Navigates to `url` and waits for the page to load.
    #[track_caller]
    pub fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(&json!({ "url": url })));
    }

    /// The current page's URL.
    #[track_caller]
    pub fn url(&self) -> String {
        string(self.cmd("GET", "/url", None))
    }

    /// The current page's title.
    #[track_caller]
    pub fn title(&self) -> String {
        string(self.cmd("GET", "/title", None))
    }

    /// The current page's HTML, as serialised from the DOM.
    #[track_caller]
    pub fn source(&self) -> String {
        string(self.cmd("GET", "/source", None))
    }

    /// Goes back one page in history.
    #[track_caller]
    pub fn back(&self) {
        self.cmd("POST", "/back", Some(&json!({})));
    }

    /// Resizes the browser window (outer size, in CSS pixels).
    #[track_caller]
    pub fn set_window_size(&self, width: u32, height: u32) {
        self.cmd(
            "POST",
            "/window/rect",
            Some(&json!({ "width": width, "height": height })),
        );
    }

    /// Runs `script` as the body of a function (use `return` for a result;
    /// `arguments[i]` are `args`, where [`Element::as_arg`] passes elements)
    /// and returns its JSON result.
    #[track_caller]
    pub fn execute(&self, script: &str, args: &[Value]) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(&json!({ "script": script, "args": args })),
        )
    }

    /// Writes a PNG screenshot of the viewport to `path`, creating its parent
    /// directories.
    #[track_caller]
    pub fn screenshot(&self, path: impl AsRef<Path>) {
        let path = path.as_ref();
        let png = base64::engine::general_purpose::STANDARD
            .decode(string(self.cmd("GET", "/screenshot", None)))
            .unwrap_or_else(|e| panic!("screenshot: invalid base64: {e}"));
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        }
        std::fs::write(path, png)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    }

    /// The cookies visible to the current page, as WebDriver cookie objects
    /// (`name`, `value`, `path`, `domain`, `httpOnly`, …).
    #[track_caller]
    pub fn cookies(&self) -> Vec<Value> {
        match self.cmd("GET", "/cookie", None) {
            Value::Array(cookies) => cookies,
            other => panic!("WebDriver GET /cookie: expected an array, got {other}"),
        }
    }

    /// Deletes every cookie visible to the current page.
    #[track_caller]
    pub fn delete_cookies(&self) {
        self.cmd("DELETE", "/cookie", None);
    }

    /// The first element matching `css`, waiting up to [`FIND_TIMEOUT`] for it
    /// to appear.
    #[track_caller]
    pub fn find(&self, css: &str) -> Element<'_> {
        self.find_from("", css, "")
    }

    /// The first element matching `css` now, or `None`.
    #[track_caller]
    pub fn try_find(&self, css: &str) -> Option<Element<'_>> {
        self.try_find_from("", css)
    }

    /// Every element matching `css` now (no waiting; possibly none).
    #[track_caller]
    pub fn find_all(&self, css: &str) -> Vec<Element<'_>> {
        let found = self.cmd(
            "POST",
            "/elements",
            Some(&json!({ "using": "css selector", "value": css })),
        );
        let Value::Array(found) = found else {
            panic!("WebDriver POST /elements: expected an array, got {found}");
        };
        found.iter().map(|e| self.element(e, css)).collect()
    }

    /// Waits up to `timeout` for an element matching `css` whose visible text
    /// contains `text`, and returns it.
    #[track_caller]
    pub fn wait_for_text(&self, css: &str, text: &str, timeout: Duration) -> Element<'_> {
        let deadline = Instant::now() + timeout;
        let mut last = None;
        loop {
            for el in self.find_all(css) {
                // The element may be replaced between the two calls: retry.
                if let Ok(v) = self.try_cmd("GET", &format!("/element/{}/text", el.id), None) {
                    let seen = string(v);
                    if seen.contains(text) {
                        return el;
                    }
                    last = Some(seen);
                }
            }
            if Instant::now() >= deadline {
                let seen = last.map_or_else(
                    || "no matching element".to_owned(),
                    |t| format!("last text seen: {t:?}"),
                );
                panic!(
                    "timed out after {timeout:?} waiting for `{css}` to contain {text:?} on {} ({seen})",
                    self.url()
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// The element reference in a WebDriver result.
    #[track_caller]
    fn element(&self, value: &Value, css: &str) -> Element<'_> {
        match value[ELEMENT_KEY].as_str() {
            Some(id) => Element {
                browser: self,
                id: id.to_owned(),
                css: css.to_owned(),
            },
            None => panic!("WebDriver: not an element reference: {value}"),
        }
    }

    /// Looks `css` up under `base` (`""` for the document, or
    /// `/element/{id}`) once.
    #[track_caller]
    fn try_find_from(&self, base: &str, css: &str) -> Option<Element<'_>> {
        let body = json!({ "using": "css selector", "value": css });
        let rel = format!("{base}/element");
        match self.try_cmd("POST", &rel, Some(&body)) {
            Ok(v) => Some(self.element(&v, css)),
            Err(e) if is_no_such_element(&e) => None,
            Err(e) => panic!("WebDriver POST {rel} `{css}` failed: {e}"),
        }
    }

    /// Looks `css` up under `base`, polling up to [`FIND_TIMEOUT`].
    #[track_caller]
    fn find_from(&self, base: &str, css: &str, within: &str) -> Element<'_> {
        let deadline = Instant::now() + FIND_TIMEOUT;
        loop {
            if let Some(el) = self.try_find_from(base, css) {
                return el;
            }
            assert!(
                Instant::now() < deadline,
                "no element `{css}`{within} on {} after {FIND_TIMEOUT:?}",
                self.url()
            );
            std::thread::sleep(POLL);
        }
    }
}

/// A WebDriver result that should be a string (`null` reads as empty).
#[track_caller]
fn string(v: Value) -> String {
    match v {
        Value::String(s) => s,
        Value::Null => String::new(),
        other => panic!("WebDriver: expected a string, got {other}"),
    }
}

/// An element of the current page of a [`Browser`].
#[derive(Debug, Clone)]
pub struct Element<'b> {
    browser: &'b Browser,
    id: String,
    /// The selector it was found with, for error messages.
    css: String,
}

impl<'b> Element<'b> {
    #[track_caller]
    fn cmd(&self, method: &str, what: &str, body: Option<&Value>) -> Value {
        let rel = format!("/element/{}{what}", self.id);
        match self.browser.try_cmd(method, &rel, body) {
            Ok(v) => v,
            Err(e) => panic!("WebDriver {method} {what} on `{}` failed: {e}", self.css),
        }
    }

    /// The WebDriver element id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The element as an argument for [`Browser::execute`].
    pub fn as_arg(&self) -> Value {
        json!({ ELEMENT_KEY: self.id })
    }

    /// Clicks the element (scrolling it into view first).
    #[track_caller]
    pub fn click(&self) {
        self.cmd("POST", "/click", Some(&json!({})));
    }

    /// The element's visible text.
    #[track_caller]
    pub fn text(&self) -> String {
        string(self.cmd("GET", "/text", None))
    }

    /// An HTML attribute, `None` when absent.
    #[track_caller]
    pub fn attr(&self, name: &str) -> Option<String> {
        match self.cmd("GET", &format!("/attribute/{}", segment(name)), None) {
            Value::Null => None,
            v => Some(string(v)),
        }
    }

    /// A DOM property (`checked`, `value`, `selectedIndex`, …).
    #[track_caller]
    pub fn prop(&self, name: &str) -> Value {
        self.cmd("GET", &format!("/property/{}", segment(name)), None)
    }

    /// The current `value` property of a form control.
    #[track_caller]
    pub fn value(&self) -> String {
        string(self.prop("value"))
    }

    /// Clears a text input or textarea.
    #[track_caller]
    pub fn clear(&self) {
        self.cmd("POST", "/clear", Some(&json!({})));
    }

    /// Types `text` into the element, as keystrokes.
    #[track_caller]
    pub fn type_text(&self, text: &str) {
        self.cmd("POST", "/value", Some(&json!({ "text": text })));
    }

    /// Selects the `<option>` of this `<select>` whose `value` is `value`, by
    /// clicking it (so `change` handlers run as for a user).
    #[track_caller]
    pub fn select_option(&self, value: &str) {
        let css = format!("option[value={}]", css_string(value));
        let option = self
            .browser
            .try_find_from(&format!("/element/{}", self.id), &css);
        let Some(option) = option else {
            let values: Vec<String> = self
                .find_all_within("option")
                .iter()
                .filter_map(|o| o.attr("value"))
                .collect();
            panic!(
                "`{}` has no option with value {value:?} (values: {values:?})",
                self.css
            );
        };
        option.click();
    }

    /// Whether the element is rendered visibly.
    #[track_caller]
    pub fn is_displayed(&self) -> bool {
        self.cmd("GET", "/displayed", None) == Value::Bool(true)
    }

    /// The first element within this one matching `css`, waiting up to
    /// [`FIND_TIMEOUT`] for it to appear.
    #[must_use]
    #[track_caller]
    pub fn find(&self, css: &str) -> Element<'b> {
        let within = format!(" within `{}`", self.css);
        self.browser
            .find_from(&format!("/element/{}", self.id), css, &within)
    }

    #[track_caller]
    fn find_all_within(&self, css: &str) -> Vec<Element<'b>> {
        let found = self.cmd(
            "POST",
            "/elements",
            Some(&json!({ "using": "css selector", "value": css })),
        );
        let Value::Array(found) = found else {
            panic!(
                "WebDriver POST /elements within `{}`: expected an array",
                self.css
            );
        };
        found.iter().map(|e| self.browser.element(e, css)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn css_strings_are_escaped() {
        assert_eq!(css_string(r#"a"b\c"#), r#""a\"b\\c""#);
    }

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(segment("data-x"), "data-x");
        assert_eq!(segment("a b/c"), "a%20b%2Fc");
    }

    #[test]
    fn artifacts_dir_is_in_the_target_dir() {
        let dir = artifacts_dir();
        assert!(dir.ends_with("test-artifacts"), "{}", dir.display());
        if std::env::var_os("CARGO_TARGET_TMPDIR").is_none() {
            // Test executables run from <target>/<profile>/deps; cargo marks <target>.
            let target = dir.parent().expect("a parent");
            assert!(target.join("CACHEDIR.TAG").is_file(), "{}", dir.display());
        }
    }
}
