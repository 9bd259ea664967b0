//! `patchbay sync run <integration> --tenant <slug> --stream <stream>`: runs
//! one import from the command line and shows its progress.
//!
//! The run is queued like one started through the API and the command runs
//! a worker for the `sync` queue in its own process, so it works with no
//! server running; when a server on the same database claims the job first,
//! the command simply follows the run. Progress is one line redrawn in place
//! on a terminal (records, records/s, and the percentage and ETA when the
//! source reports a total), one line a second otherwise; the summary is
//! printed at the end. Exit status 0 when the run succeeded, 1 otherwise.

use std::io::{IsTerminal as _, Write as _};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use patchbay_service::sync::{StartSyncIn, SyncRunOut};
use patchbay_service::worker::{WorkerConfig, Workers};
use patchbay_service::{Access, Caller, CallerKind, Feature, Services};
use patchbay_store::SyncStatus;

/// The flags of `patchbay sync run`.
#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    #[command(flatten)]
    pub(crate) data: crate::config::DataArgs,
    /// The integration to import from (e.g. `sync_files`).
    pub(crate) integration: String,
    /// The tenant, by slug or id.
    #[arg(long)]
    pub(crate) tenant: String,
    /// The organization of the tenant, by slug or id (default: its first, `main`).
    #[arg(long)]
    pub(crate) organization: Option<String>,
    /// The stream to import.
    #[arg(long)]
    pub(crate) stream: String,
    /// Let the connector reach loopback, private and link-local addresses
    /// (as `patchbay serve --connector-allow-private-network`).
    #[arg(long = "connector-allow-private-network")]
    pub(crate) allow_private_network: bool,
    /// A program the Airbyte source connector may run (as `patchbay serve
    /// --airbyte-source`); repeatable.
    #[arg(long = "airbyte-source", value_name = "PROGRAM")]
    pub(crate) airbyte_sources: Vec<String>,
}

/// The caller the command acts as: the operator at the command line, in one
/// tenant's scope.
async fn caller(services: &Services, args: &RunArgs) -> anyhow::Result<Caller> {
    let tenant = services
        .store()
        .list_tenants()
        .await?
        .into_iter()
        .find(|t| t.id.as_str() == args.tenant || t.slug == args.tenant)
        .with_context(|| format!("no tenant with slug or id `{}`", args.tenant))?;
    let orgs = services.store().list_organizations(&tenant.id).await?;
    let org = match &args.organization {
        Some(o) => orgs
            .into_iter()
            .find(|x| x.id.as_str() == o || x.slug == *o)
            .with_context(|| format!("tenant `{}` has no organization `{o}`", tenant.slug))?,
        None => orgs
            .into_iter()
            .next()
            .with_context(|| format!("tenant `{}` has no organization", tenant.slug))?,
    };
    Ok(Caller {
        kind: CallerKind::System,
        id: "cli".to_owned(),
        name: "patchbay sync run".to_owned(),
        access: Access::Tenant(patchbay_core::Scope::new(
            tenant.id.as_str(),
            org.id.as_str(),
        )),
        features: vec![Feature::IntegrationsView, Feature::IntegrationsManage],
    })
}

fn progress_line(run: &SyncRunOut, elapsed: Duration) -> String {
    let done = run.counters.processed;
    #[allow(clippy::cast_precision_loss)] // Record counts, far below 2^52.
    let rate = done as f64 / elapsed.as_secs_f64().max(0.001);
    let mut line = format!(
        "{:>9} {}  {done} records  {rate:.0}/s  ({} failed)",
        run.status.as_str(),
        run.stream,
        run.counters.failed
    );
    if let Some(total) = run.total.filter(|t| *t > 0) {
        #[allow(clippy::cast_precision_loss)]
        let share = done as f64 / total as f64;
        let width: u32 = 24;
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "a share in [0, 1] times a small width"
        )]
        let filled = ((share.clamp(0.0, 1.0)) * f64::from(width)) as usize;
        #[allow(clippy::cast_precision_loss)]
        let eta = if rate > 0.0 {
            format!("ETA {:.0} s", (total - done).max(0) as f64 / rate)
        } else {
            "ETA —".to_owned()
        };
        line = format!(
            "[{}{}] {:.0}% {line}  {eta}",
            "#".repeat(filled),
            ".".repeat((width as usize).saturating_sub(filled)),
            share * 100.0
        );
    }
    line
}

pub(crate) async fn run(services: Services, args: RunArgs) -> anyhow::Result<bool> {
    let caller = caller(&services, &args).await?;
    let describe = |e: patchbay_service::ServiceError| anyhow::anyhow!("{}", crate::describe(&e));
    let run = services
        .start_sync(
            &caller,
            &args.integration,
            StartSyncIn {
                stream: args.stream.clone(),
            },
        )
        .await
        .map_err(describe)?;
    eprintln!(
        "run {} queued: {} / {} for tenant {}",
        run.id, args.integration, args.stream, args.tenant
    );
    let workers = Workers::start(
        services.clone(),
        WorkerConfig {
            queues: vec![("sync".to_owned(), 1)],
            schedules: false,
            ..WorkerConfig::default()
        },
    )
    .await?;
    let started = Instant::now();
    let terminal = std::io::stderr().is_terminal();
    let mut last_print: Option<Instant> = None;
    let done = loop {
        let now = services.sync_run(&caller, run.id).await.map_err(describe)?;
        if now.status != SyncStatus::Queued
            && (terminal || last_print.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)))
        {
            let line = progress_line(&now, started.elapsed());
            if terminal {
                eprint!("\r\x1b[2K{line}");
            } else {
                eprintln!("{line}");
            }
            let _ = std::io::stderr().flush();
            last_print = Some(Instant::now());
        }
        if !now.status.is_active() {
            break now;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    if terminal {
        eprintln!();
    }
    workers.shutdown(Duration::from_secs(5)).await;
    services.flush_logs().await?;
    let c = done.counters;
    println!(
        "run {} {} in {:.1} s: {} processed, {} created, {} updated, {} unchanged, {} skipped, {} failed{}",
        done.id,
        done.status.as_str(),
        started.elapsed().as_secs_f64(),
        c.processed,
        c.created,
        c.updated,
        c.unchanged,
        c.skipped,
        c.failed,
        done.error
            .as_deref()
            .map(|e| format!("; error: {e}"))
            .unwrap_or_default()
    );
    if c.failed > 0 {
        println!(
            "the failed records are in the operation log of `{}` (correlation id sync_{})",
            done.integration_id, done.id
        );
    }
    Ok(done.status == SyncStatus::Succeeded)
}
