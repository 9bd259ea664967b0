//! `patchbay`: the one binary. Subcommands:
//!
//! * `serve` runs the server (API, admin panel, probes).
//! * `token create` mints an API token without the API (first set-up, recovery).
//! * `user create` makes an admin panel account (password read from stdin).
//! * `keys rotate` rotates the master key and re-encrypts every credential,
//!   beside running servers; it can be interrupted and run again.
//! * `logs prune` applies the operation-log retention now.
//! * `catalog check` / `catalog list` work with connector manifests.
//! * `connector new` / `build` / `test` make WebAssembly connectors with the
//!   Rust SDK (`sdk/rust`).
//!
//! Errors are printed as one readable line on standard error, with a non-zero
//! exit status: 2 for bad usage or configuration, 1 for failures at run time.

mod config;
mod connector;
mod sync_cli;

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use patchbay_core::{ManifestSource, Registry};
use patchbay_service::{KeyManager, Services, SystemClock};
use patchbay_vault::ExposeSecret as _;

/// Patchbay: a self-hosted integration platform.
#[derive(Debug, Parser)]
#[command(name = "patchbay", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server.
    Serve(config::ServeArgs),
    /// Manage API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Manage operator accounts of the admin panel.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage the master keys of the credentials vault.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Operation-log maintenance.
    #[command(subcommand)]
    Logs(LogsCommand),
    /// Work with connector manifests.
    #[command(subcommand)]
    Catalog(CatalogCommand),
    /// Create, build and test WebAssembly connectors.
    #[command(subcommand)]
    Connector(connector::ConnectorCommand),
    /// Data sync from the command line.
    #[command(subcommand)]
    Sync(SyncCommand),
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Create an API token and print it (shown once).
    Create {
        #[command(flatten)]
        data: config::DataArgs,
        /// A platform admin token (manages tenants, tokens, the audit trail).
        #[arg(long, conflicts_with_all = ["tenant", "features"])]
        platform: bool,
        /// The tenant the token acts for: its slug or id.
        #[arg(long, required_unless_present = "platform")]
        tenant: Option<String>,
        /// Features of a tenant token (repeatable).
        #[arg(long = "feature", value_name = "FEATURE", default_values_t = ["integrations.view".to_owned(), "integrations.manage".to_owned(), "integrations.credentials".to_owned()])]
        features: Vec<String>,
        /// A name to recognise the token by.
        #[arg(long, default_value = "created by patchbay token create")]
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Create an operator account; the password is read from standard input.
    Create {
        #[command(flatten)]
        data: config::DataArgs,
        /// The sign-in email.
        #[arg(long)]
        email: String,
        /// The name shown in the panel.
        #[arg(long)]
        name: String,
        /// `platform-admin`, or for a tenant operator `owner`, `manager` or `viewer`.
        #[arg(long, value_parser = ["platform-admin", "owner", "manager", "viewer"])]
        role: String,
        /// The tenant of a tenant operator: its slug or id.
        #[arg(long)]
        tenant: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Rotate the master key: new data keys, every credential re-encrypted,
    /// old keys removed. Safe beside running servers; re-run it if interrupted.
    Rotate {
        #[command(flatten)]
        data: config::DataArgs,
        /// Credential sets re-encrypted per batch.
        #[arg(long, default_value_t = 100)]
        batch_size: u32,
        /// Milliseconds to pause after each batch and tenant, to spare a busy database.
        #[arg(long, default_value_t = 0)]
        pause_ms: u64,
    },
}

#[derive(Debug, Subcommand)]
enum SyncCommand {
    /// Run one import of a stream for a tenant and show its progress.
    Run(sync_cli::RunArgs),
}

#[derive(Debug, Subcommand)]
enum LogsCommand {
    /// Delete operation-log entries older than each tenant's retention.
    Prune {
        #[command(flatten)]
        data: config::DataArgs,
    },
}

#[derive(Debug, Subcommand)]
enum CatalogCommand {
    /// Validate patchbay.toml files together with the built-in catalog.
    Check {
        /// Manifest files (patchbay.toml) to check.
        #[arg(required = true)]
        manifests: Vec<std::path::PathBuf>,
    },
    /// List the built-in catalog.
    List,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            let config = match args.validate() {
                Ok(c) => c,
                Err(e) => return fail(&e, 2),
            };
            init_tracing(&config);
            run(serve(config))
        }
        Command::Token(TokenCommand::Create {
            data,
            platform,
            tenant,
            features,
            name,
        }) => run(create_token(data, platform, tenant, features, name)),
        Command::User(UserCommand::Create {
            data,
            email,
            name,
            role,
            tenant,
        }) => run(create_user(data, email, name, role, tenant)),
        Command::Keys(KeysCommand::Rotate {
            data,
            batch_size,
            pause_ms,
        }) => run(rotate_keys(
            data,
            patchbay_service::RotationOptions {
                batch_size,
                pause: std::time::Duration::from_millis(pause_ms),
            },
        )),
        Command::Logs(LogsCommand::Prune { data }) => run(prune_logs(data)),
        Command::Catalog(CatalogCommand::Check { manifests }) => {
            match check_manifests(&manifests) {
                Ok(summary) => {
                    println!("{summary}");
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&e, 1),
            }
        }
        Command::Connector(command) => connector::run(command),
        Command::Sync(SyncCommand::Run(args)) => run(sync_run(args)),
        Command::Catalog(CatalogCommand::List) => match patchbay_connectors::builtin_registry() {
            Ok(reg) => {
                for i in reg.integrations() {
                    let bundle = i
                        .bundle_id
                        .as_deref()
                        .map(|b| format!(" (bundle {b})"))
                        .unwrap_or_default();
                    println!(
                        "{:<24} {:<14} {}{bundle}",
                        i.id,
                        i.category.as_str(),
                        i.title
                    );
                }
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e.into(), 1),
        },
    }
}

/// Runs an async command on a fresh runtime and turns its result into an exit code.
fn run(task: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => match runtime.block_on(task) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&e, 1),
        },
        Err(e) => fail(
            &anyhow::Error::from(e).context("cannot start the async runtime"),
            1,
        ),
    }
}

/// Prints `patchbay: <error>: <cause>: …` on one line (catalog errors add one
/// line per problem) and returns the exit code.
fn fail(e: &anyhow::Error, code: u8) -> ExitCode {
    eprintln!("patchbay: {e:#}");
    ExitCode::from(code)
}

fn init_tracing(config: &config::ServeConfig) {
    let colours = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(config.log_filter.clone())
        .with_writer(std::io::stderr)
        .with_ansi(colours);
    match config.log_format {
        config::LogFormat::Text => builder.init(),
        config::LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// Opens the database of an administrative command, which never creates one.
async fn admin_store(data: &config::DataArgs) -> anyhow::Result<Arc<dyn patchbay_store::Store>> {
    let database = data.database()?;
    if let patchbay_store::DatabaseConfig::Sqlite { path } = &database
        && !path.is_file()
    {
        anyhow::bail!(
            "no Patchbay database at {}; run `patchbay serve` first, or pass the right --data-dir",
            path.display()
        );
    }
    Ok(patchbay_store::connect_for_admin(&database).await?)
}

/// Opens the store and the vault for an administrative command.
async fn open_for_admin(data: &config::DataArgs) -> anyhow::Result<Services> {
    let store = admin_store(data).await?;
    let keys =
        KeyManager::open(data.key_source(), &*store, patchbay_core::Timestamp::now()).await?;
    Ok(Services::new(
        store,
        patchbay_connectors::builtin_registry()?,
        keys,
        Arc::new(SystemClock),
    ))
}

/// The client every connector reaches the network with, under the
/// operator's policy.
fn connector_http(connectors: &config::ConnectorsConfig) -> patchbay_runtime::HttpClient {
    patchbay_runtime::HttpClient::new(patchbay_runtime::HttpPolicy {
        allow_private: connectors.allow_private_network,
        ..patchbay_runtime::HttpPolicy::default()
    })
}

/// The catalog: the built-in connectors and those of `--connectors-dir`,
/// whose WebAssembly components are loaded, ready to register.
fn catalog(
    connectors: &config::ConnectorsConfig,
) -> anyhow::Result<(
    patchbay_core::Registry,
    Vec<patchbay_service::components::Loaded>,
)> {
    use patchbay_service::components;
    let local = components::read_connector_dirs(&connectors.dirs).map_err(anyhow::Error::msg)?;
    if local.is_empty() {
        return Ok((patchbay_connectors::builtin_registry()?, Vec::new()));
    }
    let paths: Vec<String> = local
        .iter()
        .map(components::LocalManifest::display_path)
        .collect();
    let registry = patchbay_core::Registry::load(
        patchbay_connectors::builtin_sources()
            .map(|b| patchbay_core::ManifestSource {
                path: b.path,
                text: b.text,
            })
            .chain(
                local
                    .iter()
                    .zip(&paths)
                    .map(|(m, path)| patchbay_core::ManifestSource {
                        path,
                        text: &m.text,
                    }),
            ),
    )?;
    let host = patchbay_wasm::WasmHost::new(&patchbay_wasm::HostConfig {
        max_memory_bytes: connectors.limits.max_memory_bytes,
        ..patchbay_wasm::HostConfig::default()
    })
    .map_err(|e| anyhow::anyhow!("cannot start the WebAssembly host: {e:#}"))?;
    let loader = patchbay_wasm::WasmLoader {
        host,
        http: connector_http(connectors),
    };
    let components = components::load_components(&registry, &local, &loader, connectors.limits)
        .map_err(anyhow::Error::msg)?;
    Ok((registry, components))
}

async fn serve(config: config::ServeConfig) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let (registry, components) = catalog(&config.connectors)?;
    // Bind first: a busy port fails fast, before touching the database.
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let store = patchbay_store::connect(&config.database).await?;
    let keys = KeyManager::open(config.keys, &*store, patchbay_core::Timestamp::now()).await?;
    tracing::info!(database = %config.database.describe(), integrations = registry.integrations().len(), bundles = registry.bundles().len(), "database and vault ready");
    let services = Services::new(store.clone(), registry, keys, Arc::new(SystemClock));
    services.set_action_limits(config.action_limits);
    services.set_native_network(
        &connector_http(&config.connectors),
        &patchbay_runtime::native::NativeOptions {
            airbyte_programs: config.connectors.airbyte_programs.clone(),
        },
    );
    services.register_components(components);
    if config.bootstrap_token
        && let Some(token) = services.bootstrap_admin_token().await?
    {
        // Printed, not logged: the token must not sit in log files.
        println!(
            "\nPatchbay created a platform admin token. It is shown this once; store it now:\n\n    {}\n\nCall the API with `Authorization: Bearer <token>`: create tenants (POST /api/tenants),\ntenant tokens (POST /api/tokens) and admin panel accounts (POST /api/users) with it.\n",
            token.expose_secret()
        );
    }
    if config.demo
        && let Some(demo) = services.seed_demo().await?
    {
        let addr = listener.local_addr()?;
        println!(
            "\nPatchbay created the demo tenant `demo`, with Stripe, the MedusaJS bundle and SMTP configured.\nIts token and its operator's password are shown this once:\n\n    token     {}\n    panel     http://{addr}/backend  (email {}, password {})\n\nTry: curl -H \"Authorization: Bearer <token>\" http://{addr}/api/integrations\n",
            demo.token.expose_secret(),
            demo.operator_email,
            demo.operator_password.expose_secret(),
        );
    }
    let workers = match config.workers {
        Some(w) => Some(patchbay_service::worker::Workers::start(services.clone(), w).await?),
        None => None,
    };
    let addr = listener.local_addr()?;
    tracing::info!(%addr, startup_ms = started.elapsed().as_millis(), "listening on http://{addr}");
    let panel = patchbay_panel::router(
        services.clone(),
        patchbay_panel::PanelOptions {
            secure_cookies: config.secure_cookies,
        },
    );
    let app =
        patchbay_server::router(patchbay_server::AppState::new(services.clone())).merge(panel);
    patchbay_server::serve(listener, app, shutdown_signal()).await?;
    if let Some(workers) = workers {
        let report = workers.shutdown(config.shutdown_grace).await;
        tracing::info!(
            finished = report.finished,
            released = report.released,
            "background jobs stopped"
        );
    }
    services.flush_logs().await?;
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
    tracing::info!("shutdown requested; finishing in-flight requests");
}

async fn create_token(
    data: config::DataArgs,
    platform: bool,
    tenant: Option<String>,
    features: Vec<String>,
    name: String,
) -> anyhow::Result<()> {
    let services = open_for_admin(&data).await?;
    let tenant_id = match tenant {
        None => None,
        Some(t) => {
            let tenants = services.store().list_tenants().await?;
            let found = tenants
                .into_iter()
                .find(|x| x.id.as_str() == t || x.slug == t)
                .with_context(|| format!("no tenant with slug or id `{t}`"))?;
            Some(found.id.to_string())
        }
    };
    let input = patchbay_service::tenants::TokenIn {
        name,
        tenant_id,
        organization_id: None,
        features: if platform {
            vec!["platform.admin".to_owned()]
        } else {
            features
        },
        expires_at: None,
    };
    let created = services
        .create_token_as_system(input)
        .await
        .map_err(|e| anyhow::anyhow!("{}", describe(&e)))?;
    println!("{}", created.token.expose_secret());
    eprintln!(
        "created token {} ({}); it is shown once",
        created.info.id, created.info.prefix
    );
    Ok(())
}

async fn create_user(
    data: config::DataArgs,
    email: String,
    name: String,
    role: String,
    tenant: Option<String>,
) -> anyhow::Result<()> {
    let mut password = String::new();
    std::io::stdin()
        .read_line(&mut password)
        .context("cannot read the password from standard input")?;
    let password = password.trim_end_matches(['\r', '\n']).to_owned();
    let services = open_for_admin(&data).await?;
    let tenant_id = match tenant {
        None => None,
        Some(t) => {
            let found = services
                .store()
                .list_tenants()
                .await?
                .into_iter()
                .find(|x| x.id.as_str() == t || x.slug == t)
                .with_context(|| format!("no tenant with slug or id `{t}`"))?;
            Some(found.id.to_string())
        }
    };
    let role = match role.as_str() {
        "platform-admin" => patchbay_service::users::Role::PlatformAdmin,
        "owner" => patchbay_service::users::Role::Owner,
        "manager" => patchbay_service::users::Role::Manager,
        _ => patchbay_service::users::Role::Viewer,
    };
    let input = patchbay_service::users::UserIn {
        email,
        name,
        password,
        role,
        tenant_id,
        organization_id: None,
    };
    let user = services
        .create_user_as_system(input)
        .await
        .map_err(|e| anyhow::anyhow!("{}", describe(&e)))?;
    println!(
        "created user {} ({}); sign in at /backend/login",
        user.id, user.email
    );
    Ok(())
}

async fn rotate_keys(
    data: config::DataArgs,
    options: patchbay_service::RotationOptions,
) -> anyhow::Result<()> {
    let store = admin_store(&data).await?;
    let keys =
        KeyManager::open(data.key_source(), &*store, patchbay_core::Timestamp::now()).await?;
    let report = keys
        .rotate(
            &*store,
            patchbay_core::Timestamp::now(),
            options,
            &mut |line| println!("{line}"),
        )
        .await?;
    println!(
        "rotation complete: master key {}, {} tenant(s), {} credential set(s) re-encrypted, {} old data key(s) deleted",
        report.master_key_id, report.tenants, report.reencrypted, report.deleted_data_keys
    );
    Ok(())
}

async fn sync_run(args: sync_cli::RunArgs) -> anyhow::Result<()> {
    let services = open_for_admin(&args.data).await?;
    services.set_native_network(
        &patchbay_runtime::HttpClient::new(patchbay_runtime::HttpPolicy {
            allow_private: args.allow_private_network,
            ..patchbay_runtime::HttpPolicy::default()
        }),
        &patchbay_runtime::native::NativeOptions {
            airbyte_programs: patchbay_runtime::native::AirbytePrograms::from_list(
                &args.airbyte_sources,
            ),
        },
    );
    if sync_cli::run(services, args).await? {
        Ok(())
    } else {
        anyhow::bail!("the run did not succeed")
    }
}

async fn prune_logs(data: config::DataArgs) -> anyhow::Result<()> {
    let services = open_for_admin(&data).await?;
    let deleted = services
        .prune_logs()
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!("deleted {deleted} operation-log entries past their retention");
    Ok(())
}

/// A service error as one line, with every field problem.
fn describe(e: &patchbay_service::ServiceError) -> String {
    match e {
        patchbay_service::ServiceError::Invalid { message, errors }
        | patchbay_service::ServiceError::Conflict {
            message, errors, ..
        } if !errors.is_empty() => {
            let parts: Vec<String> = errors
                .iter()
                .map(|f| format!("{}: {}", f.field, f.message))
                .collect();
            format!("{message}: {}", parts.join("; "))
        }
        other => other.to_string(),
    }
}

fn check_manifests(paths: &[std::path::PathBuf]) -> anyhow::Result<String> {
    let texts: Vec<(String, String)> = paths
        .iter()
        .map(|p| {
            Ok((
                p.display().to_string(),
                std::fs::read_to_string(p)
                    .with_context(|| format!("cannot read {}", p.display()))?,
            ))
        })
        .collect::<anyhow::Result<_>>()?;
    let extra = texts
        .iter()
        .map(|(path, text)| ManifestSource { path, text });
    // Re-borrow the 'static built-in sources at the shorter lifetime of `texts`.
    let builtin = patchbay_connectors::builtin_sources().map(|s| ManifestSource {
        path: s.path,
        text: s.text,
    });
    let reg = Registry::load(builtin.chain(extra))?;
    Ok(format!(
        "ok: {} manifest(s) valid; the catalog would hold {} integrations and {} bundles",
        paths.len(),
        reg.integrations().len(),
        reg.bundles().len()
    ))
}
