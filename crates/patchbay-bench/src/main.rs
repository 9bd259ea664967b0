//! `patchbay-bench <scenario>…`: runs benchmark scenarios on this machine and
//! prints one table. Run it through `cargo xtask bench`, which builds
//! everything in release mode first.
//!
//! Every scenario measures a baseline in the same run (raw TOML parsing for
//! the registry, a bare process start for start-up, the store's own calls
//! for the job queue) and reports the ratio, because shared machines are
//! noisy: the ratio moves less than the figure.
//! Results are also written as JSON (`--json <file>`) for `docs/benchmarks.md`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde::Serialize;

mod jobs;
mod panel;
mod registry;
mod runtime;
mod services;
mod startup;
mod sync;

/// One measured figure.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Figure {
    pub(crate) scenario: &'static str,
    pub(crate) metric: String,
    pub(crate) value: f64,
    pub(crate) unit: &'static str,
    /// The target the issue sets, as text (`< 50 ms`).
    pub(crate) target: Option<&'static str>,
    pub(crate) meets_target: Option<bool>,
    pub(crate) baseline: Option<Baseline>,
}

/// The same run's baseline for a figure.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Baseline {
    pub(crate) what: &'static str,
    pub(crate) value: f64,
    pub(crate) unit: &'static str,
    /// figure / baseline.
    pub(crate) ratio: f64,
}

/// Summary statistics of repeated timings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stats {
    pub(crate) median: Duration,
    pub p90: Duration,
}

pub(crate) fn stats(mut samples: Vec<Duration>) -> Stats {
    samples.sort();
    let at = |q: f64| {
        // Truncation is intended: the index of quantile q.
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let i = ((samples.len() - 1) as f64 * q).round() as usize;
        samples[i]
    };
    Stats {
        median: at(0.5),
        p90: at(0.9),
    }
}

/// The `q` quantile (0.0-1.0) of samples.
pub(crate) fn quantile(mut samples: Vec<Duration>, q: f64) -> Duration {
    samples.sort();
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let i = ((samples.len() - 1) as f64 * q).round() as usize;
    samples[i]
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Times `f` `n` times (after one warm-up run).
pub(crate) fn time_n(n: usize, mut f: impl FnMut()) -> Stats {
    f();
    stats(
        (0..n)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed()
            })
            .collect(),
    )
}

const SCENARIOS: &[&str] = &[
    "registry",
    "startup",
    "credentials",
    "api_list",
    "oplog",
    "panel",
    "jobs",
    "jobs_pg",
    "runtime",
    "sync",
    "sync_pg",
];

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut scenarios = Vec::new();
    let mut json_out: Option<PathBuf> = None;
    let mut bin: Option<PathBuf> = None;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--json" => json_out = Some(args.next().context("--json needs a file")?.into()),
            "--bin" => bin = Some(args.next().context("--bin needs a binary")?.into()),
            "all" => scenarios.extend(SCENARIOS.iter().map(|s| (*s).to_owned())),
            s if SCENARIOS.contains(&s) => scenarios.push(s.to_owned()),
            other => bail!(
                "unknown scenario or flag `{other}`; scenarios: {}, all",
                SCENARIOS.join(", ")
            ),
        }
    }
    if scenarios.is_empty() {
        scenarios.extend(SCENARIOS.iter().map(|s| (*s).to_owned()));
    }
    let mut figures = Vec::new();
    for s in &scenarios {
        eprintln!("running scenario `{s}` …");
        match s.as_str() {
            "registry" => figures.extend(registry::run()?),
            "startup" => figures
                .extend(startup::run(bin.as_deref().context(
                    "the startup scenario needs --bin <release patchbay binary>",
                )?)?),
            "credentials" => figures.extend(services::credentials(&runtime()?)?),
            "api_list" => figures.extend(services::api_list(&runtime()?)?),
            "oplog" => figures.extend(services::oplog(&runtime()?)?),
            "panel" => figures.extend(panel::run(&runtime()?)?),
            "jobs" => figures.extend(jobs::sqlite(&runtime()?)?),
            "jobs_pg" => figures.extend(jobs::postgres(
                &runtime()?,
                bin.as_deref()
                    .context("the jobs_pg scenario needs --bin <release patchbay binary>")?,
            )?),
            "runtime" => figures.extend(runtime::run(&runtime()?)?),
            "sync" => figures.extend(sync::sqlite(&runtime()?)?),
            "sync_pg" => figures.extend(sync::postgres(&runtime()?)?),
            _ => unreachable!("checked above"),
        }
    }
    print_table(&figures);
    if let Some(path) = json_out {
        std::fs::write(&path, serde_json::to_vec_pretty(&figures)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("results written to {}", path.display());
    }
    Ok(())
}

fn print_table(figures: &[Figure]) {
    println!("| scenario | metric | value | target | baseline | ratio |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for f in figures {
        let target = match (f.target, f.meets_target) {
            (Some(t), Some(true)) => format!("{t} ✓"),
            (Some(t), Some(false)) => format!("{t} ✗"),
            (Some(t), None) => t.to_owned(),
            (None, _) => String::new(),
        };
        let (base, ratio) = f
            .baseline
            .as_ref()
            .map_or((String::new(), String::new()), |b| {
                (
                    format!("{}: {:.3} {}", b.what, b.value, b.unit),
                    format!("{:.2}×", b.ratio),
                )
            });
        println!(
            "| {} | {} | {:.3} {} | {target} | {base} | {ratio} |",
            f.scenario, f.metric, f.value, f.unit
        );
    }
}
