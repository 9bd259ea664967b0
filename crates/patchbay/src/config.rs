//! Configuration of `patchbay serve`: flags, `PATCHBAY_*` environment
//! variables and defaults that work with no configuration at all.
//!
//! Precedence: a flag beats its environment variable, which beats the
//! default. This is the only place that reads the environment (clap does it
//! for us); the rest of the code receives a validated [`ServeConfig`].

use std::net::{SocketAddr, ToSocketAddrs as _};
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use patchbay_store::DatabaseConfig;

/// Where the data lives: shared by `serve` and the administrative commands.
#[derive(Debug, Args)]
pub(crate) struct DataArgs {
    /// Directory for the embedded SQLite database, the master key file and local files.
    #[arg(long, env = "PATCHBAY_DATA_DIR", default_value = "./patchbay-data")]
    pub(crate) data_dir: PathBuf,

    /// Database URL: postgres://user:password@host:port/db for PostgreSQL, or
    /// sqlite://<path>. Unset: SQLite in the data directory.
    #[arg(long, env = "PATCHBAY_DATABASE_URL", hide_env_values = true)]
    pub(crate) database_url: Option<String>,

    /// The master key file (created with mode 0600 on first start). Default:
    /// master.key in the data directory. Ignored when `PATCHBAY_MASTER_KEY` is set.
    #[arg(long, env = "PATCHBAY_MASTER_KEY_FILE")]
    pub(crate) master_key_file: Option<PathBuf>,

    /// Master keys given directly (base64, comma-separated, current first),
    /// instead of a key file. Environment only: a flag would show it in `ps`.
    #[arg(
        long = "master-key-from-env",
        env = "PATCHBAY_MASTER_KEY",
        hide = true,
        hide_env_values = true
    )]
    pub(crate) master_key: Option<String>,
}

impl DataArgs {
    pub(crate) fn database(&self) -> anyhow::Result<DatabaseConfig> {
        Ok(DatabaseConfig::from_settings(
            &self.data_dir,
            self.database_url.as_deref(),
        )?)
    }

    pub(crate) fn key_source(&self) -> patchbay_service::KeySource {
        match &self.master_key {
            Some(k) if !k.trim().is_empty() => {
                patchbay_service::KeySource::Inline(k.clone().into())
            }
            _ => patchbay_service::KeySource::File(
                self.master_key_file
                    .clone()
                    .unwrap_or_else(|| self.data_dir.join("master.key")),
            ),
        }
    }
}

/// The flags of `patchbay serve`.
#[derive(Debug, Args)]
#[allow(clippy::struct_excessive_bools)] // Command-line switches: each is independent.
pub(crate) struct ServeArgs {
    #[command(flatten)]
    pub(crate) data: DataArgs,

    /// Do not mint and print a platform admin token on first start (create
    /// one with `patchbay token create --platform` instead).
    #[arg(long, env = "PATCHBAY_NO_BOOTSTRAP_TOKEN")]
    pub(crate) no_bootstrap_token: bool,

    /// Create a demo tenant with configured integrations and some history on
    /// first start, and print a token for it once.
    #[arg(long, env = "PATCHBAY_DEMO")]
    pub(crate) demo: bool,

    /// Mark the panel's cookies `Secure`: set it when the panel is reached over
    /// HTTPS (directly or through a TLS-terminating proxy).
    #[arg(long, env = "PATCHBAY_SECURE_COOKIES")]
    pub(crate) secure_cookies: bool,

    /// Address to listen on, host:port.
    #[arg(long, env = "PATCHBAY_LISTEN", default_value = "127.0.0.1:8080")]
    pub(crate) listen: String,

    /// Run no background jobs in this process (serve the API and panel only).
    #[arg(long, env = "PATCHBAY_NO_WORKERS")]
    pub(crate) no_workers: bool,

    /// How many jobs of a queue this process runs at once, as
    /// `queue=n[,queue=n…]` (queues: default, health, maintenance).
    #[arg(long, env = "PATCHBAY_WORKER_CONCURRENCY", value_name = "QUEUE=N,…")]
    pub(crate) worker_concurrency: Option<String>,

    /// Seconds a worker holds a job without renewing its lease; a job whose
    /// process died is run again this long after (1-3600).
    #[arg(long, env = "PATCHBAY_JOB_LEASE_SECS", default_value_t = 30)]
    pub(crate) job_lease_secs: u64,

    /// Seconds running jobs get to finish at shutdown before they are given
    /// back to the queue (0-3600).
    #[arg(long, env = "PATCHBAY_SHUTDOWN_GRACE_SECS", default_value_t = 10)]
    pub(crate) shutdown_grace_secs: u64,

    /// This process's name in job leases and attempts (default:
    /// host-pid-random).
    #[arg(long, env = "PATCHBAY_WORKER_ID")]
    pub(crate) worker_id: Option<String>,

    /// Connector actions one tenant may run at once in this process
    /// (1-1024); further calls wait in the tenant's queue. Per process: N
    /// servers let a tenant run N times as many.
    #[arg(long, env = "PATCHBAY_ACTION_CONCURRENCY", default_value_t = 5)]
    pub(crate) action_concurrency: u32,

    /// Calls of one tenant that may wait for a free slot (0-10000), each up
    /// to 10 s; beyond, 429 `tenant_concurrency_exceeded` with Retry-After.
    #[arg(long, env = "PATCHBAY_ACTION_QUEUE", default_value_t = 20)]
    pub(crate) action_queue: u32,

    /// A folder of connectors to add to the catalog: its own `patchbay.toml`
    /// and those of its subfolders, with the WebAssembly components they
    /// name. Repeat the flag (or separate with `:` in the variable) for more.
    #[arg(
        long = "connectors-dir",
        env = "PATCHBAY_CONNECTORS_DIR",
        value_name = "DIR",
        value_delimiter = ':'
    )]
    pub(crate) connectors_dirs: Vec<std::path::PathBuf>,

    /// The longest deadline, in seconds, a connector's manifest may set for
    /// one call (1-3600); a manifest asking more runs with this.
    #[arg(
        long,
        env = "PATCHBAY_CONNECTOR_MAX_DEADLINE_SECS",
        default_value_t = 60
    )]
    pub(crate) connector_max_deadline_secs: u64,

    /// The most memory, in MiB, a WebAssembly connector's call may use
    /// (1-4096); a manifest asking more runs with this.
    #[arg(long, env = "PATCHBAY_CONNECTOR_MAX_MEMORY_MIB", default_value_t = 256)]
    pub(crate) connector_max_memory_mib: u64,

    /// Let connectors reach loopback, private and link-local addresses (for
    /// providers on the operator's own network). Off: refused.
    #[arg(long, env = "PATCHBAY_CONNECTOR_ALLOW_PRIVATE_NETWORK")]
    pub(crate) connector_allow_private_network: bool,

    /// A program the Airbyte source connector may run (the first word of
    /// its `command` credential, compared exactly); repeat the flag (or
    /// separate with `:` in the variable) for more. None by default: who
    /// may set an integration's credentials must not run programs on the
    /// server. `*` allows any (only where tenants are the operator).
    #[arg(
        long = "airbyte-source",
        env = "PATCHBAY_AIRBYTE_SOURCES",
        value_name = "PROGRAM",
        value_delimiter = ':'
    )]
    pub(crate) airbyte_sources: Vec<String>,

    /// Log filter: a level (info, debug, …) or per-module directives
    /// (`info,patchbay_store=debug`).
    #[arg(long, env = "PATCHBAY_LOG", default_value = "info")]
    pub(crate) log: String,

    /// Log format.
    #[arg(long, env = "PATCHBAY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub(crate) log_format: LogFormat,
}

/// How log lines are written to standard error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Where extra connectors come from and what they may do.
#[derive(Debug, Clone)]
pub(crate) struct ConnectorsConfig {
    pub(crate) dirs: Vec<std::path::PathBuf>,
    pub(crate) limits: patchbay_service::components::OperatorLimits,
    pub(crate) allow_private_network: bool,
    /// The programs the Airbyte source connector may run.
    pub(crate) airbyte_programs: patchbay_runtime::native::AirbytePrograms,
}

/// A validated configuration.
#[derive(Debug)]
pub(crate) struct ServeConfig {
    pub(crate) database: DatabaseConfig,
    pub(crate) keys: patchbay_service::KeySource,
    pub(crate) bootstrap_token: bool,
    pub(crate) demo: bool,
    pub(crate) secure_cookies: bool,
    pub(crate) listen: SocketAddr,
    /// `None` when this process runs no jobs.
    pub(crate) workers: Option<patchbay_service::worker::WorkerConfig>,
    pub(crate) shutdown_grace: std::time::Duration,
    /// The per-tenant concurrency limit of connector actions.
    pub(crate) action_limits: patchbay_service::ActionLimits,
    pub(crate) connectors: ConnectorsConfig,
    pub(crate) log_filter: tracing_subscriber::EnvFilter,
    pub(crate) log_format: LogFormat,
}

impl ServeArgs {
    /// Checks every setting; the error is one line naming the setting.
    pub(crate) fn validate(self) -> anyhow::Result<ServeConfig> {
        let listen = parse_listen(&self.listen)?;
        let database = self.data.database()?;
        let keys = self.data.key_source();
        let workers = if self.no_workers {
            None
        } else {
            Some(worker_config(
                self.worker_concurrency.as_deref(),
                self.job_lease_secs,
                self.worker_id,
            )?)
        };
        if !(1..=3600).contains(&self.connector_max_deadline_secs) {
            anyhow::bail!(
                "invalid --connector-max-deadline-secs {}: expected 1 to 3600",
                self.connector_max_deadline_secs
            );
        }
        if !(1..=4096).contains(&self.connector_max_memory_mib) {
            anyhow::bail!(
                "invalid --connector-max-memory-mib {}: expected 1 to 4096",
                self.connector_max_memory_mib
            );
        }
        for dir in &self.connectors_dirs {
            if !dir.is_dir() {
                anyhow::bail!("invalid --connectors-dir {}: not a folder", dir.display());
            }
        }
        let connectors = ConnectorsConfig {
            dirs: self.connectors_dirs,
            limits: patchbay_service::components::OperatorLimits {
                max_deadline: std::time::Duration::from_secs(self.connector_max_deadline_secs),
                max_memory_bytes: usize::try_from(self.connector_max_memory_mib << 20)
                    .unwrap_or(usize::MAX),
            },
            allow_private_network: self.connector_allow_private_network,
            airbyte_programs: patchbay_runtime::native::AirbytePrograms::from_list(
                &self.airbyte_sources,
            ),
        };
        if self.shutdown_grace_secs > 3600 {
            anyhow::bail!(
                "invalid --shutdown-grace-secs {}: expected 0 to 3600",
                self.shutdown_grace_secs
            );
        }
        let action_limits = action_limits(self.action_concurrency, self.action_queue)?;
        // Quiet the SQL driver unless asked for by name.
        let directives = if self.log.contains("sqlx") {
            self.log.clone()
        } else {
            format!("{},sqlx=warn", self.log)
        };
        let log_filter = tracing_subscriber::EnvFilter::try_new(&directives)
            .map_err(|e| anyhow::anyhow!("invalid log filter `{}`: {e}", self.log))?;
        Ok(ServeConfig {
            database,
            keys,
            bootstrap_token: !self.no_bootstrap_token,
            demo: self.demo,
            secure_cookies: self.secure_cookies,
            listen,
            workers,
            shutdown_grace: std::time::Duration::from_secs(self.shutdown_grace_secs),
            action_limits,
            connectors,
            log_filter,
            log_format: self.log_format,
        })
    }
}

/// The workers' settings from `--worker-concurrency`, `--job-lease-secs`
/// and `--worker-id`.
fn worker_config(
    concurrency: Option<&str>,
    lease_secs: u64,
    worker_id: Option<String>,
) -> anyhow::Result<patchbay_service::worker::WorkerConfig> {
    let mut config = patchbay_service::worker::WorkerConfig::default();
    if !(1..=3600).contains(&lease_secs) {
        anyhow::bail!("invalid --job-lease-secs {lease_secs}: expected 1 to 3600");
    }
    config.lease = std::time::Duration::from_secs(lease_secs);
    if let Some(id) = worker_id {
        let id = id.trim();
        if id.is_empty()
            || id.len() > 100
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
        {
            anyhow::bail!(
                "invalid --worker-id: expected 1-100 letters, digits, `-`, `_`, `.` or `:`"
            );
        }
        id.clone_into(&mut config.worker_id);
    }
    for part in concurrency
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        let bad = || {
            anyhow::anyhow!(
                "invalid --worker-concurrency `{part}`: expected queue=n with a queue among {} and n from 0 to 1024",
                config
                    .queues
                    .iter()
                    .map(|q| q.0.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        let (queue, n) = part.split_once('=').ok_or_else(bad)?;
        let n: usize = n.trim().parse().map_err(|_| bad())?;
        if n > 1024 {
            return Err(bad());
        }
        let slot = config
            .queues
            .iter()
            .position(|q| q.0 == queue.trim())
            .ok_or_else(bad)?;
        config.queues[slot].1 = n;
    }
    config.queues.retain(|q| q.1 > 0);
    Ok(config)
}

/// The limit from `--action-concurrency` and `--action-queue`.
fn action_limits(concurrency: u32, queue: u32) -> anyhow::Result<patchbay_service::ActionLimits> {
    if !(1..=1024).contains(&concurrency) {
        anyhow::bail!("invalid --action-concurrency {concurrency}: expected 1 to 1024");
    }
    if queue > 10_000 {
        anyhow::bail!("invalid --action-queue {queue}: expected 0 to 10000");
    }
    Ok(patchbay_service::ActionLimits {
        concurrency,
        queue,
        ..patchbay_service::ActionLimits::default()
    })
}

fn parse_listen(s: &str) -> anyhow::Result<SocketAddr> {
    let bad = || {
        anyhow::anyhow!("invalid listen address `{s}`: expected host:port, such as 127.0.0.1:8080")
    };
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(bad());
    }
    (host, port.parse::<u16>().map_err(|_| bad())?)
        .to_socket_addrs()
        .map_err(|e| anyhow::anyhow!("invalid listen address `{s}`: {e}"))?
        .next()
        .ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses() {
        assert_eq!(parse_listen("127.0.0.1:8080").unwrap().port(), 8080);
        assert_eq!(parse_listen("[::1]:9000").unwrap().port(), 9000);
        assert!(parse_listen("localhost:8081").unwrap().ip().is_loopback());
        for bad in [
            "8080",
            "127.0.0.1",
            "127.0.0.1:http",
            ":8080",
            "127.0.0.1:70000",
            "",
        ] {
            let e = parse_listen(bad).unwrap_err().to_string();
            assert!(e.contains("invalid listen address"), "{bad}: {e}");
        }
    }
}
