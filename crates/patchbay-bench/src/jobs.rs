//! The durable job queue.
//!
//! * `jobs` (SQLite, workers in this process): throughput of 20,000 no-op
//!   jobs queued before the workers start (target: at least 5,000/s), at the
//!   chosen concurrency and at the shipped default, and pick-up latency on an
//!   idle queue (target: p50 under 10 ms).
//! * `jobs_pg` (PostgreSQL, two `patchbay serve` processes sharing one
//!   database of a throwaway cluster): throughput of 20,000 no-op jobs
//!   (target: at least 3,000/s) and how the work split between the two
//!   processes, then pick-up latency (target: p50 under 10 ms).
//!
//! Baselines, measured in the same run. Throughput on SQLite: the store's
//! own `claim_jobs` + `finish_jobs` in a loop with the same batch size and no
//! worker machinery (the ceiling the workers could reach). Throughput on
//! PostgreSQL: enqueueing alone, batches of 1,000, on a database of its own
//! (a store loop is no fair ceiling for two processes). Pick-up latency: one
//! single-job enqueue call on the same database with the workers stopped.
//! The PostgreSQL cluster is the test kit's, with fsync off.
//!
//! Pick-up latency is the first attempt's `started_at` minus the job's
//! `created_at`: from the moment the enqueueing call read the clock to the
//! moment a worker read it before claiming. It includes the enqueue's own
//! commit and the wake-up (in-process signal, or `NOTIFY`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use patchbay_core::Timestamp;
use patchbay_service::jobs::{JobKind, JobSpec};
use patchbay_service::worker::{WorkerConfig, Workers};
use patchbay_service::{KeyManager, KeySource, Services, SystemClock};
use patchbay_store::{DatabaseConfig, Finish, FinishOutcome, JobStatus, NewJob, Store};
use serde_json::json;

use crate::{Baseline, Figure, ms, quantile};

/// Jobs per throughput run.
/// Jobs per throughput run.
const JOBS: usize = 20_000;
/// Jobs per enqueue call when queueing them.
const BATCH: usize = 1_000;
/// Jobs of the `default` queue each process runs at once. On SQLite every
/// claim and every batch of finishes is one write transaction (about
/// 0.25 ms whatever its size), and with no-op jobs the concurrency is the
/// batch size: throughput grows with it (8: ~5,000/s, 32: ~14,000/s, 64:
/// ~18,000/s, 256: ~27,000/s on 2 cores). 64 is the value a deployment
/// running many small jobs would set; beyond it the gain flattens while
/// in-flight jobs (and lease renewals) grow.
const CONCURRENCY: usize = 64;
/// The shipped default of the `default` queue, measured for comparison.
const SHIPPED: usize = 8;
/// Jobs of a pick-up latency run.
const PICKUPS: usize = 500;
/// How long one wait may take before the scenario gives up.
const LIMIT: Duration = Duration::from_secs(40);

fn specs(n: usize) -> Vec<JobSpec> {
    (0..n)
        .map(|_| JobSpec::new(JobKind::Noop, None, json!({})))
        .collect()
}

/// A no-op job as the service would enqueue it, for a store on its own.
fn new_job(now: Timestamp) -> NewJob {
    NewJob {
        queue: JobKind::Noop.queue().to_owned(),
        kind: JobKind::Noop.as_str().to_owned(),
        scope: None,
        payload: "{}".to_owned(),
        unique_key: None,
        run_at: now,
        max_attempts: JobKind::Noop.max_attempts(),
        created_at: now,
    }
}

#[allow(clippy::cast_precision_loss)]
fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

/// Queues `JOBS` no-op jobs in batches of `BATCH` (one transaction each);
/// returns how long that took and the last job's id.
async fn enqueue_batched(store: &dyn Store) -> anyhow::Result<(Duration, i64)> {
    let started = Instant::now();
    let mut last = 0;
    for _ in 0..JOBS / BATCH {
        let now = Timestamp::now();
        let ids = store
            .enqueue_jobs((0..BATCH).map(|_| new_job(now)).collect())
            .await?;
        last = ids.last().map_or(last, |e| e.id());
    }
    Ok((started.elapsed(), last))
}

/// How long enqueueing one job takes, `n` times (after a warm-up).
async fn enqueue_one(store: &dyn Store, n: usize) -> anyhow::Result<Vec<Duration>> {
    for _ in 0..20 {
        store.enqueue_jobs(vec![new_job(Timestamp::now())]).await?;
    }
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        store.enqueue_jobs(vec![new_job(Timestamp::now())]).await?;
        samples.push(t.elapsed());
    }
    Ok(samples)
}

/// The ceiling: the store alone claims `batch` queued jobs and finishes them,
/// in a loop, until `JOBS` are done (no tasks, no channels, no wake-ups).
async fn store_alone(store: &dyn Store, batch: usize) -> anyhow::Result<Duration> {
    let limit = u32::try_from(batch)?;
    let started = Instant::now();
    let mut done = 0;
    while done < JOBS {
        let now = Timestamp::now();
        let claimed = store
            .claim_jobs("default", "bench", now, now.plus_seconds(30), limit)
            .await?;
        anyhow::ensure!(!claimed.is_empty(), "the queue ran dry after {done} jobs");
        done += claimed.len();
        let finishes = claimed
            .iter()
            .map(|j| Finish {
                id: j.id,
                attempt: j.attempts,
                outcome: FinishOutcome::Succeeded {
                    result: Some(json!({ "attempt": j.attempts }).to_string()),
                },
            })
            .collect();
        let applied = store
            .finish_jobs("bench", Timestamp::now(), finishes)
            .await?;
        anyhow::ensure!(applied.iter().all(|a| *a), "a finish was refused");
    }
    Ok(started.elapsed())
}

/// Waits until `n` jobs have succeeded, checking the last job's status every
/// `every` (a point query) and counting only once it has ended.
async fn until_succeeded(
    store: &dyn Store,
    last: i64,
    n: u64,
    every: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + LIMIT;
    loop {
        let last_ended = store
            .get_job(None, last)
            .await?
            .is_some_and(|j| j.status.is_final());
        if last_ended {
            let counts: BTreeMap<&str, u64> = store
                .count_jobs(None)
                .await?
                .into_iter()
                .map(|(s, c)| (s.as_str(), c))
                .collect();
            let count = |s: JobStatus| counts.get(s.as_str()).copied().unwrap_or(0);
            anyhow::ensure!(count(JobStatus::Dead) == 0, "jobs died: {counts:?}");
            if count(JobStatus::Succeeded) >= n {
                return Ok(());
            }
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the jobs did not all succeed within {LIMIT:?}"
        );
        tokio::time::sleep(every).await;
    }
}

/// Waits until job `id` has succeeded, polling every `every`.
async fn until_ended(store: &dyn Store, id: i64, every: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match store.get_job(None, id).await?.map(|j| j.status) {
            Some(JobStatus::Succeeded) => return Ok(()),
            Some(s) if s.is_final() => anyhow::bail!("job {id} ended {}", s.as_str()),
            _ => {}
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "job {id} did not succeed within 10 s"
        );
        tokio::time::sleep(every).await;
    }
}

/// Pseudo-random pauses of 1-10 ms between pick-ups, so that they do not
/// fall into step with the workers' timers.
struct Pauses(u64);

impl Pauses {
    fn new() -> Pauses {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        Pauses(u64::from(seed) | 1)
    }

    fn next(&mut self) -> Duration {
        // xorshift64
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        Duration::from_micros(1_000 + self.0 % 9_000)
    }
}

/// The pick-up latency of one job: its first attempt's start minus its creation.
async fn pickup(store: &dyn Store, id: i64) -> anyhow::Result<Duration> {
    let job = store.get_job(None, id).await?.context("the job vanished")?;
    let attempts = store.list_attempts(id).await?;
    let first = attempts.first().context("the job has no attempt")?;
    let micros = first.started_at.as_micros() - job.created_at.as_micros();
    Ok(Duration::from_micros(u64::try_from(micros).unwrap_or(0)))
}

/// Enqueues one job at a time on an idle queue and waits for it to succeed
/// (`enqueue_and_wait` does both and returns the job's id), `PICKUPS` times
/// after 20 to warm up.
async fn pickups(
    store: &dyn Store,
    mut enqueue_and_wait: impl AsyncFnMut() -> anyhow::Result<i64>,
) -> anyhow::Result<Vec<Duration>> {
    let mut pause = Pauses::new();
    let mut samples = Vec::with_capacity(PICKUPS);
    for n in 0..PICKUPS + 20 {
        tokio::time::sleep(pause.next()).await;
        let id = enqueue_and_wait().await?;
        if n >= 20 {
            samples.push(pickup(store, id).await?);
        }
    }
    Ok(samples)
}

fn throughput_base(what: &'static str, value: f64, figure: f64) -> Baseline {
    Baseline {
        what,
        value,
        unit: "jobs/s",
        ratio: figure / value,
    }
}

/// The p50 and p99 figures of a pick-up run against single-job enqueues.
fn latency_figures(
    scenario: &'static str,
    setting: &str,
    latency: &[Duration],
    base: &[Duration],
) -> Vec<Figure> {
    let q = |s: &[Duration], q: f64| ms(quantile(s.to_vec(), q));
    let (p50, p99) = (q(latency, 0.5), q(latency, 0.99));
    let (b50, b99) = (q(base, 0.5), q(base, 0.99));
    vec![
        Figure {
            scenario,
            metric: format!("pick-up latency, idle queue, {setting} (p50 of {PICKUPS})"),
            value: p50,
            unit: "ms",
            target: Some("< 10 ms"),
            meets_target: Some(p50 < 10.0),
            baseline: Some(Baseline {
                what: "enqueue of one job alone (p50)",
                value: b50,
                unit: "ms",
                ratio: p50 / b50,
            }),
        },
        Figure {
            scenario,
            metric: format!("pick-up latency, idle queue, {setting} (p99 of {PICKUPS})"),
            value: p99,
            unit: "ms",
            target: None,
            meets_target: None,
            baseline: Some(Baseline {
                what: "enqueue of one job alone (p99)",
                value: b99,
                unit: "ms",
                ratio: p99 / b99,
            }),
        },
    ]
}

// ---- SQLite, workers in this process ----

struct Local {
    services: Services,
    store: Arc<dyn Store>,
    dir: tempfile::TempDir,
}

async fn local() -> anyhow::Result<Local> {
    let dir = tempfile::tempdir()?;
    let store = patchbay_store::connect(&DatabaseConfig::from_settings(dir.path(), None)?).await?;
    let keys = KeyManager::open(
        KeySource::File(dir.path().join("master.key")),
        &*store,
        Timestamp::now(),
    )
    .await?;
    let services = Services::new(
        store.clone(),
        patchbay_connectors::builtin_registry()?,
        keys,
        Arc::new(SystemClock),
    );
    Ok(Local {
        services,
        store,
        dir,
    })
}

impl Local {
    async fn workers(&self, concurrency: usize) -> anyhow::Result<Workers> {
        Ok(Workers::start(
            self.services.clone(),
            WorkerConfig {
                queues: vec![("default".into(), concurrency)],
                schedules: false,
                ..WorkerConfig::default()
            },
        )
        .await?)
    }

    /// Queues `JOBS` no-op jobs through the service, in batches of `BATCH`;
    /// returns how long it took and the last job's id.
    async fn enqueue(&self) -> anyhow::Result<(Duration, i64)> {
        let started = Instant::now();
        let mut last = 0;
        for _ in 0..JOBS / BATCH {
            let ids = self.services.enqueue(specs(BATCH)).await?;
            last = ids.last().map_or(last, |e| e.id());
        }
        Ok((started.elapsed(), last))
    }

    async fn close(self) {
        let _ = self.services.flush_logs().await;
        self.store.close().await;
        drop(self.dir);
    }
}

/// Throughput of the workers on a fresh database with `JOBS` queued before
/// they start: (jobs/s, enqueue jobs/s).
async fn sqlite_throughput(concurrency: usize) -> anyhow::Result<(f64, f64)> {
    let w = local().await?;
    let (enqueue, last) = w.enqueue().await?;
    let started = Instant::now();
    let workers = w.workers(concurrency).await?;
    until_succeeded(&*w.store, last, JOBS as u64, Duration::from_millis(1)).await?;
    let took = started.elapsed();
    workers.shutdown(Duration::from_secs(5)).await;
    w.close().await;
    Ok((rate(JOBS, took), rate(JOBS, enqueue)))
}

/// The store alone on a fresh database: jobs/s.
async fn sqlite_store_alone(batch: usize) -> anyhow::Result<f64> {
    let w = local().await?;
    w.enqueue().await?;
    let took = store_alone(&*w.store, batch).await?;
    w.close().await;
    Ok(rate(JOBS, took))
}

/// Pick-up latencies on an idle queue, then single-job enqueue times on the
/// same database with the workers stopped.
async fn sqlite_pickup() -> anyhow::Result<(Vec<Duration>, Vec<Duration>)> {
    let w = local().await?;
    let workers = w.workers(CONCURRENCY).await?;
    let mut finished = w.services.job_finishes();
    let (services, store) = (&w.services, &*w.store);
    let samples = pickups(store, async || {
        finished.borrow_and_update();
        let id = services.enqueue(specs(1)).await?[0].id();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if store
                .get_job(None, id)
                .await?
                .is_some_and(|j| j.status == JobStatus::Succeeded)
            {
                return Ok(id);
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "job {id} did not succeed within 10 s"
            );
            // Woken when this process's workers have recorded finishes.
            let _ = tokio::time::timeout(Duration::from_millis(50), finished.changed()).await;
        }
    })
    .await?;
    workers.shutdown(Duration::from_secs(5)).await;
    let base = enqueue_one(store, PICKUPS).await?;
    w.close().await;
    Ok((samples, base))
}

pub(crate) fn sqlite(rt: &tokio::runtime::Runtime) -> anyhow::Result<Vec<Figure>> {
    rt.block_on(async {
        let (chosen, enqueue) = sqlite_throughput(CONCURRENCY).await?;
        let chosen_alone = sqlite_store_alone(CONCURRENCY).await?;
        let (shipped, _) = sqlite_throughput(SHIPPED).await?;
        let shipped_alone = sqlite_store_alone(SHIPPED).await?;
        let (latency, base) = sqlite_pickup().await?;
        let mut figures = vec![
            Figure {
                scenario: "jobs",
                metric: format!(
                    "no-op jobs, SQLite, workers in process, default={CONCURRENCY}, 20,000 queued"
                ),
                value: chosen,
                unit: "jobs/s",
                target: Some("≥ 5,000/s"),
                meets_target: Some(chosen >= 5_000.0),
                baseline: Some(throughput_base(
                    "the store's claim + finish alone, batches of 64",
                    chosen_alone,
                    chosen,
                )),
            },
            Figure {
                scenario: "jobs",
                metric: format!("no-op jobs, SQLite, shipped default={SHIPPED}, 20,000 queued"),
                value: shipped,
                unit: "jobs/s",
                target: None,
                meets_target: None,
                baseline: Some(throughput_base(
                    "the store's claim + finish alone, batches of 8",
                    shipped_alone,
                    shipped,
                )),
            },
            Figure {
                scenario: "jobs",
                metric: "enqueue, SQLite, batches of 1,000".into(),
                value: enqueue,
                unit: "jobs/s",
                target: None,
                meets_target: None,
                baseline: None,
            },
        ];
        figures.extend(latency_figures("jobs", "SQLite", &latency, &base));
        Ok(figures)
    })
}

// ---- PostgreSQL, two `patchbay serve` processes ----

/// A `patchbay serve` process, killed if dropped before [`Server::stop`].
struct Server {
    child: Option<Child>,
    log: PathBuf,
}

impl Server {
    fn start(
        bin: &Path,
        dir: &Path,
        url: &str,
        worker: &str,
        concurrency: usize,
    ) -> anyhow::Result<Server> {
        let addr: SocketAddr = format!("127.0.0.1:{}", patchbay_testkit::free_port()).parse()?;
        let data = dir.join(worker);
        std::fs::create_dir_all(&data)?;
        let log = dir.join(format!("{worker}.log"));
        let child = Command::new(bin)
            .arg("serve")
            .arg("--data-dir")
            .arg(&data)
            .args(["--database-url", url])
            .arg("--master-key-file")
            .arg(dir.join("master.key"))
            .args(["--listen", &addr.to_string()])
            .arg("--no-bootstrap-token")
            .args([
                "--worker-concurrency",
                &format!("default={concurrency}"),
                "--worker-id",
                worker,
                "--log",
                "warn",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let server = Server {
            child: Some(child),
            log,
        };
        crate::startup::until_ready(addr, Duration::from_secs(30)).with_context(|| {
            format!(
                "patchbay serve ({worker}) did not become ready; its log:\n{}",
                std::fs::read_to_string(&server.log).unwrap_or_default()
            )
        })?;
        Ok(server)
    }

    /// SIGTERM, then waits for it to exit.
    fn stop(mut self) -> anyhow::Result<()> {
        match self.child.take() {
            Some(child) => crate::startup::stop(child),
            None => Ok(()),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

async fn connect(url: String) -> anyhow::Result<Arc<dyn Store>> {
    Ok(patchbay_store::connect(&DatabaseConfig::Postgres { url }).await?)
}

/// What one run with two servers measured.
struct PgRun {
    /// jobs/s.
    throughput: f64,
    /// Attempts of every 10th job, by worker.
    split: BTreeMap<String, usize>,
    /// Pick-up latencies, and single-job enqueues with the servers stopped
    /// (when asked for).
    pickups: Option<(Vec<Duration>, Vec<Duration>)>,
}

impl PgRun {
    fn split_text(&self) -> String {
        let sampled: usize = self.split.values().sum();
        #[allow(clippy::cast_precision_loss)]
        self.split
            .iter()
            .map(|(w, n)| format!("{w} {:.0}%", 100.0 * *n as f64 / sampled.max(1) as f64))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// On a fresh database: starts two servers running `concurrency` jobs of the
/// `default` queue each, queues `JOBS` no-op jobs in one transaction (all
/// become visible, and `NOTIFY` fires, at commit) and times them until all
/// succeeded; then, with `pickups`, measures pick-up latency.
fn pg_run(
    rt: &tokio::runtime::Runtime,
    pg: &patchbay_testkit::PgCluster,
    bin: &Path,
    concurrency: usize,
    pickups_too: bool,
) -> anyhow::Result<PgRun> {
    let dir = tempfile::tempdir()?;
    let url = pg.fresh_database();
    // The harness's store migrates the database first; the servers start one
    // after the other (the first creates the shared master key file).
    let store = rt.block_on(connect(url.clone()))?;
    let servers = ["bench-a", "bench-b"]
        .into_iter()
        .map(|worker| Server::start(bin, dir.path(), &url, worker, concurrency))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let measured = rt.block_on(async {
        let store = &*store;
        let now = Timestamp::now();
        let ids = store
            .enqueue_jobs((0..JOBS).map(|_| new_job(now)).collect())
            .await?;
        let started = Instant::now();
        let last = ids.last().context("nothing enqueued")?.id();
        until_succeeded(store, last, JOBS as u64, Duration::from_millis(5)).await?;
        let took = started.elapsed();
        let mut split: BTreeMap<String, usize> = BTreeMap::new();
        for e in ids.iter().step_by(10) {
            for a in store.list_attempts(e.id()).await? {
                *split.entry(a.worker).or_default() += 1;
            }
        }
        let latency = if pickups_too {
            Some(
                pickups(store, async || {
                    let id = store.enqueue_jobs(vec![new_job(Timestamp::now())]).await?[0].id();
                    until_ended(store, id, Duration::from_millis(1)).await?;
                    Ok(id)
                })
                .await?,
            )
        } else {
            None
        };
        anyhow::Ok((rate(JOBS, took), split, latency))
    });
    let stopped = servers
        .into_iter()
        .map(Server::stop)
        .collect::<anyhow::Result<Vec<()>>>();
    let (throughput, split, latency) = measured?;
    stopped?;
    let pickups = rt.block_on(async {
        let pickups = match latency {
            // The baseline: the same database, its workers stopped.
            Some(latency) => Some((latency, enqueue_one(&*store, PICKUPS).await?)),
            None => None,
        };
        store.close().await;
        anyhow::Ok(pickups)
    })?;
    Ok(PgRun {
        throughput,
        split,
        pickups,
    })
}

pub(crate) fn postgres(rt: &tokio::runtime::Runtime, bin: &Path) -> anyhow::Result<Vec<Figure>> {
    let Some(pg) = patchbay_testkit::postgres() else {
        eprintln!(
            "note: PostgreSQL binaries (initdb, postgres) not found; scenario `jobs_pg` skipped"
        );
        return Ok(Vec::new());
    };
    // The baseline, on a database of its own with no worker.
    let enqueue = rt.block_on(async {
        let store = connect(pg.fresh_database()).await?;
        let (took, _) = enqueue_batched(&*store).await?;
        store.close().await;
        anyhow::Ok(rate(JOBS, took))
    })?;
    let chosen = pg_run(rt, pg, bin, CONCURRENCY, true)?;
    let shipped = pg_run(rt, pg, bin, SHIPPED, false)?;
    let enqueue_base =
        |figure: f64| throughput_base("enqueue alone, batches of 1,000", enqueue, figure);
    let mut figures = vec![
        Figure {
            scenario: "jobs_pg",
            metric: format!(
                "no-op jobs, PostgreSQL (fsync off), 2 × serve with default={CONCURRENCY}, 20,000 queued (ran: {}, of every 10th job)",
                chosen.split_text()
            ),
            value: chosen.throughput,
            unit: "jobs/s",
            target: Some("≥ 3,000/s"),
            meets_target: Some(chosen.throughput >= 3_000.0),
            baseline: Some(enqueue_base(chosen.throughput)),
        },
        Figure {
            scenario: "jobs_pg",
            metric: format!(
                "no-op jobs, PostgreSQL (fsync off), 2 × serve with shipped default={SHIPPED}, 20,000 queued (ran: {})",
                shipped.split_text()
            ),
            value: shipped.throughput,
            unit: "jobs/s",
            target: None,
            meets_target: None,
            baseline: Some(enqueue_base(shipped.throughput)),
        },
    ];
    let (latency, base) = chosen.pickups.context("no pick-ups measured")?;
    figures.extend(latency_figures(
        "jobs_pg",
        "PostgreSQL (fsync off), 2 × serve",
        &latency,
        &base,
    ));
    Ok(figures)
}
