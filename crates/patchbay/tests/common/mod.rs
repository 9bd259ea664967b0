//! Running the real `patchbay` binary: processes that are killed when a test
//! fails, with their output collected, and an HTTP client with tokens.
#![allow(dead_code, unreachable_pub)]

use std::io::Read as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use patchbay_testkit::{free_port, http, wait_for};
use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_patchbay");

/// A `patchbay` command with a clean environment for its settings.
pub fn patchbay(args: &[&str], cwd: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.args(args).current_dir(cwd);
    for var in [
        "PATCHBAY_DATA_DIR",
        "PATCHBAY_DATABASE_URL",
        "PATCHBAY_LISTEN",
        "PATCHBAY_MASTER_KEY",
        "PATCHBAY_MASTER_KEY_FILE",
        "PATCHBAY_LOG",
        "PATCHBAY_LOG_FORMAT",
        "PATCHBAY_NO_BOOTSTRAP_TOKEN",
        "PATCHBAY_NO_WORKERS",
        "PATCHBAY_WORKER_CONCURRENCY",
        "PATCHBAY_JOB_LEASE_SECS",
        "PATCHBAY_SHUTDOWN_GRACE_SECS",
        "PATCHBAY_WORKER_ID",
    ] {
        c.env_remove(var);
    }
    c
}

/// A running process whose output is collected; killed on drop.
pub struct Proc {
    pub child: Child,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
}

fn collect(mut from: impl std::io::Read + Send + 'static) -> Arc<Mutex<String>> {
    let buf = Arc::new(Mutex::new(String::new()));
    let sink = buf.clone();
    std::thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        while let Ok(n) = from.read(&mut chunk) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&chunk[..n]));
        }
    });
    buf
}

impl Proc {
    pub fn spawn(mut cmd: Command) -> Proc {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = collect(child.stdout.take().unwrap());
        let stderr = collect(child.stderr.take().unwrap());
        Proc {
            child,
            stdout,
            stderr,
        }
    }

    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// Waits until the server answers `/readyz` with 200; fails early, with
    /// its output, if the process exits first.
    pub fn ready(&mut self, addr: SocketAddr) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = http::get(addr, "/readyz")
                && r.status == 200
            {
                return serde_json::from_slice(&r.body).unwrap();
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                std::thread::sleep(Duration::from_millis(50));
                panic!(
                    "the server exited ({status}) before it was ready:\n{}",
                    self.stderr()
                );
            }
            assert!(
                Instant::now() < deadline,
                "not ready after 30 s; stderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits for the process to end by itself.
    pub fn wait(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                // Let the readers drain.
                std::thread::sleep(Duration::from_millis(50));
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "process did not exit within {limit:?}; stderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then waits.
    pub fn stop(&mut self) -> ExitStatus {
        self.signal("-TERM");
        self.wait(Duration::from_secs(15))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a command to completion (with a timeout) and returns its output.
pub fn run(cmd: Command) -> Output {
    let mut p = Proc::spawn(cmd);
    let status = p.wait(Duration::from_secs(60));
    Output {
        status,
        stdout: p.stdout().into_bytes(),
        stderr: p.stderr().into_bytes(),
    }
}

/// The single `patchbay: …` error line, asserting there is exactly one and no panic.
#[track_caller]
pub fn error_line(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("patchbay: "))
        .collect();
    assert_eq!(lines.len(), 1, "exactly one error line expected:\n{stderr}");
    lines[0].to_owned()
}

pub fn local_addr() -> SocketAddr {
    format!("127.0.0.1:{}", free_port()).parse().unwrap()
}

pub fn wait_ready(addr: SocketAddr) -> Value {
    wait_for("/readyz to answer 200", Duration::from_secs(30), || {
        let r = http::get(addr, "/readyz").ok()?;
        (r.status == 200).then(|| serde_json::from_slice(&r.body).unwrap())
    })
}

/// A server on a data directory; returns it with its bootstrap token (if printed).
pub fn serve(data: &Path, addr: SocketAddr, extra: &[&str]) -> (Proc, Option<String>) {
    let mut args = vec!["serve", "--data-dir", data.to_str().unwrap(), "--listen"];
    let listen = addr.to_string();
    args.push(&listen);
    args.extend_from_slice(extra);
    let mut p = Proc::spawn(patchbay(&args, Path::new("/")));
    p.ready(addr);
    // The token is printed before the server listens, but reaches us through a reader thread.
    let token = if extra.contains(&"--no-bootstrap-token") {
        None
    } else {
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            if let Some(t) = bootstrap_token(&p.stdout()) {
                break Some(t);
            }
            if Instant::now() > deadline {
                break None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    (p, token)
}

pub fn bootstrap_token(stdout: &str) -> Option<String> {
    stdout
        .split_whitespace()
        .find(|w| w.starts_with("pb_"))
        .map(str::to_owned)
}

/// One API call with a bearer token and an optional JSON body.
pub fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: &str,
    body: Option<&Value>,
) -> (u16, Value, String) {
    let auth = format!("Bearer {token}");
    let bytes = body
        .map(|b| serde_json::to_vec(b).unwrap())
        .unwrap_or_default();
    let mut headers = vec![("Authorization", auth.as_str())];
    if body.is_some() {
        headers.push(("Content-Type", "application/json"));
    }
    let r = http::request(addr, method, path, &headers, &bytes).unwrap();
    (
        r.status,
        serde_json::from_slice(&r.body).unwrap_or(Value::Null),
        r.text(),
    )
}

/// Creates a tenant and a full-featured tenant token through the API.
pub fn tenant(addr: SocketAddr, admin: &str, slug: &str) -> (String, String) {
    let (status, t, text) = call(
        addr,
        "POST",
        "/api/tenants",
        admin,
        Some(&serde_json::json!({ "slug": slug, "name": slug })),
    );
    assert_eq!(status, 201, "{text}");
    let id = t["id"].as_str().unwrap().to_owned();
    let body = serde_json::json!({ "name": slug, "tenantId": id, "features": ["integrations.view", "integrations.manage", "integrations.credentials"] });
    let (status, tok, text) = call(addr, "POST", "/api/tokens", admin, Some(&body));
    assert_eq!(status, 201, "{text}");
    (id, tok["token"].as_str().unwrap().to_owned())
}

pub fn read_all(path: &Path) -> Vec<u8> {
    let mut v = Vec::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        f.read_to_end(&mut v).unwrap();
    }
    v
}

/// What [`exercise_connector`] saw.
pub struct Exercised {
    pub health: Value,
    pub action: Option<Value>,
    pub batch: Option<Value>,
}

/// What [`exercise_connector`] drives.
pub struct Drive<'a> {
    pub id: &'a str,
    pub credentials: Value,
    /// An action and its input.
    pub action: Option<(&'a str, Value)>,
    /// A stream to read the first batch of.
    pub stream: Option<&'a str>,
    /// More `patchbay serve` flags.
    pub serve_flags: &'a [&'a str],
}

/// Runs a real `patchbay serve --connectors-dir <dir>` and drives one
/// integration of a fresh tenant end to end: checks the catalog shows its
/// WebAssembly runtime, saves the credentials, enables it, runs a health
/// check (the connector's `check`), the action, and reads the first batch
/// of the stream. Asserts each answers 200.
pub fn exercise_connector(connectors_dir: &Path, d: &Drive<'_>) -> Exercised {
    let data = tempfile::tempdir().unwrap();
    let addr = local_addr();
    let mut flags = vec!["--connectors-dir", connectors_dir.to_str().unwrap()];
    flags.extend_from_slice(d.serve_flags);
    let (mut p, admin) = serve(data.path(), addr, &flags);
    let admin = admin.expect("a bootstrap token");
    let (_, token) = tenant(addr, &admin, "author");
    let ok = |what: &str, (status, body, text): (u16, Value, String)| {
        assert_eq!(status, 200, "{what}: {text}\nserver log:\n{}", p.stderr());
        body
    };
    let id = d.id;
    let base = format!("/api/integrations/{id}");
    let catalog = ok(
        "the catalog entry",
        call(addr, "GET", &format!("/api/catalog/{id}"), &token, None),
    );
    assert_eq!(
        catalog["integration"]["runtime"]["kind"], "wasm",
        "{catalog}"
    );
    let put = |what: &str, path: String, body: Value| {
        ok(what, call(addr, "PUT", &path, &token, Some(&body)))
    };
    put(
        "saving credentials",
        format!("{base}/credentials"),
        serde_json::json!({ "values": d.credentials }),
    );
    put(
        "enabling",
        format!("{base}/state"),
        serde_json::json!({ "status": "enabled" }),
    );
    let health = ok(
        "the health check",
        call(addr, "POST", &format!("{base}/health"), &token, None),
    );
    let action = d.action.as_ref().map(|(name, input)| {
        ok(
            "the action",
            call(
                addr,
                "POST",
                &format!("{base}/actions/{name}"),
                &token,
                Some(input),
            ),
        )
    });
    let batch = d.stream.map(|stream| {
        ok(
            "the read",
            call(
                addr,
                "POST",
                &format!("{base}/streams/{stream}/read"),
                &token,
                Some(&serde_json::json!({})),
            ),
        )
    });
    assert!(p.stop().success());
    Exercised {
        health,
        action,
        batch,
    }
}

/// A plain HTTP server on 127.0.0.1 answering from recordings in the
/// format of `patchbay connector test` (`fixtures/http/*.json`: `method`,
/// `path`, `status`, `body`), matched by method and path without the query;
/// anything else gets 404. It runs until the test process ends.
pub fn recorded_http_server(recordings: &Path) -> SocketAddr {
    let mut answers: Vec<(String, String, u16, Vec<u8>)> = Vec::new();
    for entry in std::fs::read_dir(recordings).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        let value: Value = serde_json::from_str(&text).unwrap();
        let list = match value {
            Value::Array(items) => items,
            one => vec![one],
        };
        for r in list {
            let body = match &r["body"] {
                Value::String(s) => s.clone().into_bytes(),
                Value::Null => Vec::new(),
                other => serde_json::to_vec(other).unwrap(),
            };
            answers.push((
                r["method"].as_str().unwrap().to_owned(),
                r["path"].as_str().unwrap().to_owned(),
                r["status"]
                    .as_u64()
                    .map_or(200, |s| u16::try_from(s).unwrap()),
                body,
            ));
        }
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            if std::io::BufRead::read_line(&mut reader, &mut line).is_err() {
                continue;
            }
            let mut parts = line.split_whitespace();
            let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
            let path = target.split('?').next().unwrap_or("/");
            let mut length = 0usize;
            loop {
                let mut header = String::new();
                if std::io::BufRead::read_line(&mut reader, &mut header).is_err()
                    || header.trim().is_empty()
                {
                    break;
                }
                if let Some((name, value)) = header.split_once(':')
                    && name.eq_ignore_ascii_case("content-length")
                {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0u8; length];
            let _ = std::io::Read::read_exact(&mut reader, &mut body);
            let (status, answer) = answers
                .iter()
                .find(|(m, p, _, _)| m == method && p == path)
                .map_or((404, b"{}".to_vec()), |(_, _, s, b)| (*s, b.clone()));
            let head = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                answer.len()
            );
            let _ = std::io::Write::write_all(&mut stream, head.as_bytes());
            let _ = std::io::Write::write_all(&mut stream, &answer);
        }
    });
    addr
}
