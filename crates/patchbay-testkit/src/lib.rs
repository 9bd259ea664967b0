//! Test support shared by Patchbay's test suites: a throwaway PostgreSQL
//! cluster, free ports and condition waits, a minimal HTTP client ([`http`])
//! a headless-Chromium client ([`browser`]), WebAssembly test guests
//! ([`wasm`]) and a labelled fake of MedusaJS's Admin API ([`medusa`]).
//! Never linked into
//! the binary.
//!
//! The PostgreSQL cluster is started once per test process from the
//! machine's own `initdb`/`postgres` (found on `PATH` or under
//! `/usr/lib/postgresql/*/bin`), in a temporary directory, on a free port, with
//! durability switched off for speed. It is watched through a pipe: when the
//! test process exits (or is killed), the pipe closes and the cluster is shut
//! down and its directory removed. Each test asks for its own database.
//!
//! When the binaries are missing, [`postgres`] returns `None` and PostgreSQL
//! tests skip with a message — except under `CI=true`, where a missing
//! PostgreSQL fails the run instead of hiding behind a skip.
// Test support reads its own environment (PATH, CI): that is not product configuration.
#![allow(clippy::disallowed_methods)]

pub mod browser;
pub mod http;
pub mod medusa;
pub mod wasm;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// A running throwaway PostgreSQL cluster.
#[derive(Debug)]
pub struct PgCluster {
    bin: PathBuf,
    port: u16,
    /// Closing this pipe (at process exit) stops the cluster.
    watch: Mutex<std::process::ChildStdin>,
}

static CLUSTER: OnceLock<Option<PgCluster>> = OnceLock::new();
static NEXT_DB: AtomicU32 = AtomicU32::new(0);

/// Whether the run is under CI, where nothing may be skipped for a missing peer.
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// The process-wide cluster, started on first use; `None` when PostgreSQL is
/// not installed (and not under CI, where that panics).
pub fn postgres() -> Option<&'static PgCluster> {
    CLUSTER
        .get_or_init(|| match find_bin_dir() {
            Some(bin) => Some(PgCluster::start(&bin).unwrap_or_else(|e| panic!("cannot start a throwaway PostgreSQL cluster: {e}"))),
            None if under_ci() => panic!("PostgreSQL binaries (initdb, postgres) are not installed, and CI=true forbids skipping the PostgreSQL tests"),
            None => {
                eprintln!("note: PostgreSQL binaries not found; PostgreSQL tests are skipped (set CI=true to make this an error)");
                None
            }
        })
        .as_ref()
}

fn find_bin_dir() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .find(|d| d.join("initdb").is_file() && d.join("postgres").is_file())
    });
    if let Some(dir) = on_path {
        // Resolve symlinks (Debian links /usr/local/bin/initdb into /usr/lib/postgresql/N/bin)
        // so that createdb and pg_isready are found beside it.
        return dir
            .join("initdb")
            .canonicalize()
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .or(Some(dir));
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|b| b.join("initdb").is_file())
        .collect();
    versions.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    versions.pop()
}

/// The user to run PostgreSQL as: it refuses to run as root.
fn unprivileged_user() -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    for name in ["postgres", "nobody"] {
        for line in passwd.lines() {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() > 3 && f[0] == name {
                return Some((f[2].parse().ok()?, f[3].parse().ok()?));
            }
        }
    }
    None
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
}

impl PgCluster {
    fn start(bin: &Path) -> Result<PgCluster, String> {
        let root = tempfile::Builder::new()
            .prefix("patchbay-pg-")
            .tempdir()
            .map_err(|e| e.to_string())?
            .keep();
        let data = root.join("data");
        std::fs::create_dir(&data).map_err(|e| e.to_string())?;
        let run_as = if is_root() { unprivileged_user() } else { None };
        if let Some((uid, gid)) = run_as {
            for p in [&root, &data] {
                std::os::unix::fs::chown(p, Some(uid), Some(gid))
                    .map_err(|e| format!("chown {}: {e}", p.display()))?;
            }
        }
        let with_user = |mut c: Command| {
            if let Some((uid, gid)) = run_as {
                std::os::unix::process::CommandExt::uid(&mut c, uid);
                std::os::unix::process::CommandExt::gid(&mut c, gid);
            }
            c
        };

        let mut initdb = Command::new(bin.join("initdb"));
        initdb.args(["-D"]).arg(&data).args([
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ]);
        let out = with_user(initdb)
            .output()
            .map_err(|e| format!("initdb: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }

        for _attempt in 0..5 {
            let port = free_port();
            // The shell waits for its stdin to close (the test process ending,
            // however it ends), then stops the server and removes its files.
            let script = r#"
                "$1/postgres" -D "$2/data" -p "$3" -k "$2" -c listen_addresses=127.0.0.1 -c fsync=off \
                  -c synchronous_commit=off -c full_page_writes=off -c max_connections=300 \
                  -c shared_buffers=256MB >"$2/postgres.log" 2>&1 &
                pid=$!
                read -r _ignored
                kill -INT "$pid" 2>/dev/null
                wait "$pid"
                rm -rf "$2"
            "#;
            let mut sh = Command::new("sh");
            sh.args(["-c", script, "pg-watch"])
                .arg(bin)
                .arg(&root)
                .arg(port.to_string())
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let mut child = with_user(sh)
                .spawn()
                .map_err(|e| format!("spawn postgres: {e}"))?;
            let stdin = child.stdin.take().ok_or("no stdin pipe")?;
            // The child is reaped by init after the test process exits.
            std::mem::forget(child);
            let cluster = PgCluster {
                bin: bin.to_path_buf(),
                port,
                watch: Mutex::new(stdin),
            };
            if cluster.wait_ready(Duration::from_secs(20)) {
                return Ok(cluster);
            }
            let log = std::fs::read_to_string(root.join("postgres.log")).unwrap_or_default();
            if !log.contains("could not bind") && !log.contains("already in use") {
                return Err(format!("postgres did not become ready:\n{log}"));
            }
            if let Ok(mut w) = cluster.watch.lock() {
                let _ = w.write_all(b"\n");
            }
        }
        Err("no free port for postgres after 5 attempts".to_owned())
    }

    fn wait_ready(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            let ok = Command::new(self.bin.join("pg_isready"))
                .args([
                    "-q",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &self.port.to_string(),
                    "-U",
                    "postgres",
                ])
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of database `db` on this cluster.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates a new, empty database and returns its URL.
    pub fn fresh_database(&self) -> String {
        let name = format!(
            "t{}_{}",
            std::process::id(),
            NEXT_DB.fetch_add(1, Ordering::Relaxed)
        );
        let out = Command::new(self.bin.join("createdb"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                &name,
            ])
            .output()
            .unwrap_or_else(|e| panic!("createdb: {e}"));
        assert!(
            out.status.success(),
            "createdb {name} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.url(&name)
    }
}

impl PgCluster {
    /// `pg_dump` of a database of this cluster (schema and data, as SQL text).
    pub fn dump(&self, url: &str) -> String {
        let out = Command::new(self.bin.join("pg_dump"))
            .args(["--no-owner", "--inserts", "-d", url])
            .output()
            .unwrap_or_else(|e| panic!("pg_dump: {e}"));
        assert!(
            out.status.success(),
            "pg_dump failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// A TCP port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port")
}

/// Polls `check` until it returns `Some`, or panics after `limit` naming `what`.
/// Tests wait on conditions, never on fixed sleeps.
pub fn wait_for<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The `source-faker` executable of the virtualenv `cargo xtask test` and
/// `.ci/run` install (`airbyte-source-faker` from `PyPI`), at
/// `$PATCHBAY_AIRBYTE_VENV` or `~/.cache/patchbay-airbyte-venv`; `None`
/// when it is missing (and not under CI, where that panics).
pub fn airbyte_faker() -> Option<PathBuf> {
    #[allow(
        clippy::disallowed_methods,
        reason = "the tests find the virtualenv xtask installed"
    )]
    let venv = std::env::var_os("PATCHBAY_AIRBYTE_VENV")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/patchbay-airbyte-venv"))
        });
    let bin = venv.map(|v| v.join("bin/source-faker"));
    if let Some(bin) = bin.filter(|b| b.is_file()) {
        return Some(bin);
    }
    assert!(
        !under_ci(),
        "source-faker not found (cargo xtask test installs airbyte-source-faker==7.2.1 into \
         ~/.cache/patchbay-airbyte-venv), and CI=true forbids skipping the Airbyte tests"
    );
    eprintln!(
        "note: source-faker not found; the Airbyte tests are skipped (cargo xtask test \
         installs it; set CI=true to make this an error)"
    );
    None
}
