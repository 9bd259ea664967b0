//! `patchbay`: the one binary. Subcommands:
//!
//! * `serve` runs the server (API, probes; later the panel and workers).
//! * `catalog check` validates connector manifests, for connector authors.
//!
//! Errors are printed as one readable line on standard error, with a non-zero
//! exit status: 2 for bad usage or configuration, 1 for failures at run time.

mod config;

use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use patchbay_core::{ManifestSource, Registry};

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
    /// Work with connector manifests.
    #[command(subcommand)]
    Catalog(CatalogCommand),
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
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    return fail(
                        &anyhow::Error::from(e).context("cannot start the async runtime"),
                        1,
                    );
                }
            };
            match runtime.block_on(serve(config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(&e, 1),
            }
        }
        Command::Catalog(CatalogCommand::Check { manifests }) => {
            match check_manifests(&manifests) {
                Ok(summary) => {
                    println!("{summary}");
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&e, 1),
            }
        }
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

async fn serve(config: config::ServeConfig) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let registry = patchbay_connectors::builtin_registry()?;
    // Bind first: a busy port fails fast, before touching the database.
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let store = patchbay_store::connect(&config.database).await?;
    tracing::info!(database = %config.database.describe(), integrations = registry.integrations().len(), bundles = registry.bundles().len(), "database ready");
    let state = patchbay_server::AppState::new(store.clone(), registry);
    let addr = listener.local_addr()?;
    tracing::info!(%addr, startup_ms = started.elapsed().as_millis(), "listening on http://{addr}");
    patchbay_server::serve(listener, patchbay_server::router(state), shutdown_signal()).await?;
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
