//! The workers: run the jobs of the queue in [`crate::jobs`], in this process.
//!
//! Every `patchbay serve` process runs one [`Workers`]. With PostgreSQL,
//! several processes share the queue; with SQLite there is one process.
//!
//! * **Claim.** One loop per queue claims due jobs (fair order: see
//!   `patchbay_store::jobs`) up to the queue's free slots, each with a lease
//!   of [`WorkerConfig::lease`]. It wakes on the store's signal (PostgreSQL
//!   `LISTEN/NOTIFY`, an in-process signal on SQLite), when a slot frees, and
//!   every [`WorkerConfig::poll`] for delayed jobs (retries, `run_at`).
//!   While jobs are backed up, a claim waits up to 2 ms for half the slots
//!   to free, so that claims (write transactions) carry batches.
//! * **Run.** Each job runs in its own task under its kind's timeout. A
//!   handler that panics or times out fails the attempt like an error.
//! * **Finish.** Finished attempts are written in batches; a finish is
//!   applied only if this worker still holds the job with that attempt
//!   number, so a worker that lost its lease cannot overwrite the new
//!   holder's work. A failed attempt is retried after
//!   `retry_base · 2^(attempt−1)` (capped at `retry_cap`), with full jitter
//!   in the upper half; after the last attempt the job is dead.
//! * **Leases.** A keeper renews every lease this worker holds three times
//!   per lease period. A job missing from a renewal was lost (expired and
//!   taken by another worker) and its task is stopped. If renewals fail for
//!   a whole lease period (database unreachable), every task is stopped:
//!   the jobs may already run elsewhere. A sweeper puts back the jobs of
//!   workers that died (expired leases), marking their attempt `lost`.
//! * **Schedules.** A scheduler fires due schedules with a compare-and-set
//!   on their next run time, so each period enqueues one job however many
//!   processes are up; the job has the unique key `schedule:<name>`, so a
//!   period whose previous run is still pending does not pile up.
//! * **Shutdown.** [`Workers::shutdown`] stops claiming, lets running jobs
//!   finish within a grace period, and gives the rest back to the queue
//!   (the attempt is not counted).
//!
//! Delivery is at least once: a job whose worker died after doing its work
//! but before recording it runs again. Handlers are written to be
//! idempotent (health checks, pruning) or carry an idempotency key.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use patchbay_core::{IntegrationStatus, Schedule, Scope, Timestamp};
use patchbay_store::{Finish, FinishOutcome, JobRecord, NewJob};
use serde_json::Value;
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::{AbortHandle, JoinHandle};

use crate::Services;
use crate::error::ServiceError;
use crate::jobs::{JobKind, JobSpec, KEEP_DEAD_DAYS, KEEP_FINISHED_DAYS, QUEUES};

/// Why an attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobError {
    /// Try again later (until the job's attempts are used up).
    Retry(String),
    /// Retrying cannot help: the job is dead at once.
    Fatal(String),
}

impl From<ServiceError> for JobError {
    fn from(e: ServiceError) -> JobError {
        match e {
            ServiceError::NotFound(m) => JobError::Fatal(m),
            ServiceError::Invalid { message, .. } => JobError::Fatal(message),
            other => JobError::Retry(other.to_string()),
        }
    }
}

/// What a handler is given.
#[derive(Debug, Clone)]
pub struct JobContext {
    pub id: i64,
    /// 1 for the first attempt.
    pub attempt: i32,
    pub max_attempts: i32,
    pub kind: String,
    pub scope: Option<Scope>,
    pub payload: Value,
    /// The worker running it.
    pub worker: String,
}

/// The future a handler returns: the job's result (JSON) or why it failed.
pub type HandlerFuture = Pin<Box<dyn Future<Output = Result<Option<Value>, JobError>> + Send>>;
/// Runs one kind of job.
pub type Handler = Arc<dyn Fn(Services, JobContext) -> HandlerFuture + Send + Sync>;

/// How this process's workers behave.
#[derive(Clone)]
pub struct WorkerConfig {
    /// Names this process in leases and attempts.
    pub worker_id: String,
    /// Queues to work and how many jobs of each run at once.
    pub queues: Vec<(String, usize)>,
    /// How long a claim holds a job without renewal.
    pub lease: Duration,
    /// How often to look for delayed jobs when nothing signals.
    pub poll: Duration,
    /// The delay before the first retry; doubled for each further one.
    pub retry_base: Duration,
    pub retry_cap: Duration,
    /// Whether this process fires schedules (any number of processes may).
    pub schedules: bool,
    /// Extra or replacement handlers, with their timeouts, by kind.
    pub handlers: Vec<(String, Handler, Duration)>,
}

impl std::fmt::Debug for WorkerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerConfig")
            .field("worker_id", &self.worker_id)
            .field("queues", &self.queues)
            .field("lease", &self.lease)
            .field("poll", &self.poll)
            .field("retry_base", &self.retry_base)
            .field("retry_cap", &self.retry_cap)
            .field("schedules", &self.schedules)
            .field(
                "handlers",
                &self.handlers.iter().map(|h| &h.0).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            worker_id: default_worker_id(),
            queues: QUEUES.iter().map(|(q, n)| ((*q).to_owned(), *n)).collect(),
            lease: Duration::from_secs(30),
            poll: Duration::from_secs(1),
            retry_base: Duration::from_secs(5),
            retry_cap: Duration::from_secs(3600),
            schedules: true,
            handlers: Vec::new(),
        }
    }
}

/// `<host>-<pid>-<random>`: unique per process, readable in the panel.
pub fn default_worker_id() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "patchbay".to_owned());
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}-{}-{}", std::process::id(), &random[..6])
}

/// The retry delay after failed attempt `attempt` (1-based), before jitter.
pub fn backoff(base: Duration, cap: Duration, attempt: i32) -> Duration {
    let exp = u32::try_from(attempt.saturating_sub(1))
        .unwrap_or(0)
        .min(30);
    base.saturating_mul(1 << exp).min(cap)
}

fn jitter(d: Duration) -> Duration {
    // Uniform in [d/2, d].
    let half = d / 2;
    let micros = u64::try_from(half.as_micros()).unwrap_or(u64::MAX);
    let r = random_u64() % micros.saturating_add(1);
    half + Duration::from_micros(r)
}

fn random_u64() -> u64 {
    #[allow(clippy::cast_possible_truncation)] // Any 64 of the random bits will do.
    let r = uuid::Uuid::new_v4().as_u128() as u64;
    r
}

fn after(t: Timestamp, d: Duration) -> Timestamp {
    Timestamp::from_micros(
        t.as_micros()
            .saturating_add(i64::try_from(d.as_micros()).unwrap_or(i64::MAX)),
    )
}

struct Registered {
    handler: Handler,
    timeout: Duration,
}

struct Running {
    attempt: i32,
    queue: usize,
    claimed: Instant,
    abort: Option<AbortHandle>,
    /// The attempt ended and its finish is on its way to the store.
    done: bool,
}

struct Done {
    id: i64,
    finish: Finish,
}

struct Shared {
    services: Services,
    worker: String,
    lease: Duration,
    retry_base: Duration,
    retry_cap: Duration,
    queues: Vec<(String, usize)>,
    handlers: HashMap<String, Registered>,
    running: Mutex<HashMap<i64, Running>>,
    in_flight: Vec<AtomicUsize>,
    slots: Vec<Notify>,
    done_tx: Mutex<Option<mpsc::UnboundedSender<Done>>>,
}

impl Shared {
    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Running>> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Forgets an attempt (finished, lost or released) and frees its slot.
    /// A later attempt of the same job (claimed again after a lost lease)
    /// is left alone.
    fn forget(&self, id: i64, attempt: i32) {
        let mut running = self.running();
        if running.get(&id).is_some_and(|r| r.attempt == attempt)
            && let Some(r) = running.remove(&id)
        {
            drop(running);
            self.in_flight[r.queue].fetch_sub(1, Ordering::AcqRel);
            self.slots[r.queue].notify_one();
        }
    }
}

/// This process's workers. Dropping them without [`Workers::shutdown`]
/// stops everything abruptly (as a crash would).
pub struct Workers {
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    loops: Vec<JoinHandle<()>>,
    keeper: JoinHandle<()>,
    completer: JoinHandle<()>,
}

impl std::fmt::Debug for Workers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workers")
            .field("worker", &self.shared.worker)
            .field("queues", &self.shared.queues)
            .finish_non_exhaustive()
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for h in &self.loops {
            h.abort();
        }
        self.keeper.abort();
        self.completer.abort();
        for r in self.shared.running().values() {
            if let Some(a) = &r.abort {
                a.abort();
            }
        }
    }
}

/// What a graceful shutdown did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ShutdownReport {
    /// Jobs that finished during the grace period.
    pub finished: usize,
    /// Jobs given back to the queue.
    pub released: u64,
}

fn builtin_handlers() -> HashMap<String, Registered> {
    fn handler<F, Fut>(f: F) -> Handler
    where
        F: Fn(Services, JobContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Option<Value>, JobError>> + Send + 'static,
    {
        Arc::new(move |s, c| Box::pin(f(s, c)))
    }
    JobKind::ALL
        .into_iter()
        .map(|kind| {
            let h = match kind {
                JobKind::Noop => handler(noop),
                JobKind::HealthCheck => handler(health_check),
                JobKind::HealthSweep => handler(health_sweep),
                JobKind::LogsPrune => handler(logs_prune),
                JobKind::JobsPrune => handler(jobs_prune),
                JobKind::SyncRun => handler(crate::sync::sync_run_job),
            };
            (
                kind.as_str().to_owned(),
                Registered {
                    handler: h,
                    timeout: kind.timeout(),
                },
            )
        })
        .collect()
}

impl Workers {
    /// Starts the workers (and creates the built-in schedules when this
    /// process fires schedules). Must be called inside a Tokio runtime.
    pub async fn start(services: Services, config: WorkerConfig) -> crate::Result<Workers> {
        if config.schedules {
            services.ensure_builtin_schedules().await?;
        }
        let mut handlers = builtin_handlers();
        for (kind, handler, timeout) in config.handlers {
            handlers.insert(kind, Registered { handler, timeout });
        }
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            services,
            worker: config.worker_id,
            lease: config.lease,
            retry_base: config.retry_base,
            retry_cap: config.retry_cap,
            in_flight: config.queues.iter().map(|_| AtomicUsize::new(0)).collect(),
            slots: config.queues.iter().map(|_| Notify::new()).collect(),
            queues: config.queues,
            handlers,
            running: Mutex::new(HashMap::new()),
            done_tx: Mutex::new(Some(done_tx)),
        });
        let (stop, stop_rx) = watch::channel(false);
        let mut loops = Vec::new();
        for q in 0..shared.queues.len() {
            loops.push(tokio::spawn(claim_loop(
                shared.clone(),
                q,
                config.poll,
                stop_rx.clone(),
            )));
        }
        loops.push(tokio::spawn(sweeper(shared.clone(), stop_rx.clone())));
        if config.schedules {
            loops.push(tokio::spawn(scheduler(shared.clone(), stop_rx.clone())));
        }
        let keeper = tokio::spawn(lease_keeper(shared.clone()));
        let completer = tokio::spawn(completer(shared.clone(), done_rx));
        tracing::info!(worker = %shared.worker, queues = ?shared.queues, "workers started");
        Ok(Workers {
            shared,
            stop,
            loops,
            keeper,
            completer,
        })
    }

    pub fn worker_id(&self) -> &str {
        &self.shared.worker
    }

    /// How many jobs run in this process now.
    pub fn running(&self) -> usize {
        self.shared.running().len()
    }

    /// Stops claiming, waits up to `grace` for running jobs, and gives the
    /// others back to the queue.
    pub async fn shutdown(mut self, grace: Duration) -> ShutdownReport {
        let _ = self.stop.send(true);
        for h in std::mem::take(&mut self.loops) {
            let _ = h.await;
        }
        let before = self.shared.running().len();
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let pending = self.shared.running().values().filter(|r| !r.done).count();
            if pending == 0 || tokio::time::Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10).min(grace)).await;
        }
        let unfinished: Vec<(i64, i32)> = {
            let running = self.shared.running();
            running
                .iter()
                .filter(|(_, r)| !r.done)
                .map(|(id, r)| {
                    if let Some(a) = &r.abort {
                        a.abort();
                    }
                    (*id, r.attempt)
                })
                .collect()
        };
        // Let the finishes already made reach the store, then stop the completer.
        drop(
            self.shared
                .done_tx
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        let completer = std::mem::replace(&mut self.completer, tokio::spawn(async {}));
        let _ = tokio::time::timeout(Duration::from_secs(15), completer).await;
        let mut released = 0;
        if !unfinished.is_empty() {
            let now = self.shared.services.now();
            let ids: Vec<i64> = unfinished.iter().map(|u| u.0).collect();
            match self
                .shared
                .services
                .store()
                .release_jobs(&self.shared.worker, &ids, now)
                .await
            {
                Ok(n) => released = n,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot release jobs at shutdown; their leases will expire");
                }
            }
            for (id, attempt) in &unfinished {
                self.shared.forget(*id, *attempt);
            }
        }
        self.keeper.abort();
        tracing::info!(worker = %self.shared.worker, released, "workers stopped");
        ShutdownReport {
            finished: before.saturating_sub(unfinished.len()),
            released,
        }
    }
}

/// The longest a claim waits for more free slots while jobs are backed up.
const BATCH_WAIT: Duration = Duration::from_millis(2);

/// Sleeps for `d` unless stopped first; returns whether to stop.
async fn pause(stop: &mut watch::Receiver<bool>, d: Duration) -> bool {
    if *stop.borrow() {
        return true;
    }
    tokio::select! {
        _ = stop.changed() => true,
        () = tokio::time::sleep(d) => *stop.borrow(),
    }
}

async fn claim_loop(
    shared: Arc<Shared>,
    q: usize,
    poll: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let (queue, concurrency) = shared.queues[q].clone();
    let mut wake = shared.services.store().job_wakeups();
    let mut failures = 0u32;
    let free_slots = || concurrency.saturating_sub(shared.in_flight[q].load(Ordering::Acquire));
    // Whether the last claim filled every free slot (more jobs are likely due).
    let mut backlog = false;
    loop {
        if *stop.borrow() {
            return;
        }
        wake.borrow_and_update();
        let mut free = free_slots();
        // With a backlog, claim in batches: a transaction costs about the
        // same for one job as for thirty, so wait briefly until half the
        // slots are free rather than claiming each one as it frees.
        if backlog && free > 0 && free < concurrency.div_ceil(2) {
            let deadline = tokio::time::Instant::now() + BATCH_WAIT;
            while free < concurrency.div_ceil(2) {
                tokio::select! {
                    () = shared.slots[q].notified() => {}
                    () = tokio::time::sleep_until(deadline) => break,
                    _ = stop.changed() => break,
                }
                free = free_slots();
            }
        }
        if free > 0 {
            let now = shared.services.now();
            let claimed = shared
                .services
                .store()
                .claim_jobs(
                    &queue,
                    &shared.worker,
                    now,
                    after(now, shared.lease),
                    u32::try_from(free).unwrap_or(u32::MAX),
                )
                .await;
            match claimed {
                Ok(jobs) => {
                    failures = 0;
                    backlog = jobs.len() == free;
                    for job in jobs {
                        spawn_job(&shared, q, job);
                    }
                    if backlog {
                        continue;
                    }
                }
                Err(e) => {
                    failures += 1;
                    tracing::warn!(error = %e, queue, "cannot claim jobs");
                    let delay = Duration::from_millis(100 << failures.min(6));
                    if pause(&mut stop, delay).await {
                        return;
                    }
                    continue;
                }
            }
        }
        tokio::select! {
            _ = wake.changed() => {}
            () = shared.slots[q].notified() => {}
            () = tokio::time::sleep(poll) => {}
            _ = stop.changed() => {}
        }
    }
}

/// Aborts the inner task when the outer one is aborted.
struct AbortOnDrop(AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn spawn_job(shared: &Arc<Shared>, q: usize, job: JobRecord) {
    let id = job.id;
    shared.in_flight[q].fetch_add(1, Ordering::AcqRel);
    let replaced = shared.running().insert(
        id,
        Running {
            attempt: job.attempts,
            queue: q,
            claimed: Instant::now(),
            abort: None,
            done: false,
        },
    );
    if let Some(old) = replaced {
        // This worker lost the job's lease and claimed it again before its
        // keeper noticed: the old attempt must not go on.
        if let Some(a) = old.abort {
            a.abort();
        }
        shared.in_flight[old.queue].fetch_sub(1, Ordering::AcqRel);
    }
    let Some(done_tx) = shared
        .done_tx
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
    else {
        // Shutting down: the job goes back with the others.
        return;
    };
    let job_attempt = job.attempts;
    let task_shared = shared.clone();
    let handle = tokio::spawn(async move {
        let shared = task_shared;
        let attempt = job.attempts;
        let max_attempts = job.max_attempts;
        let ctx = JobContext {
            id,
            attempt,
            max_attempts,
            kind: job.kind.clone(),
            scope: job.scope.clone(),
            payload: serde_json::from_str(&job.payload).unwrap_or(Value::Null),
            worker: shared.worker.clone(),
        };
        let outcome = match shared.handlers.get(&job.kind) {
            None => Err(JobError::Fatal(format!(
                "no handler for job kind `{}` in this build",
                job.kind
            ))),
            Some(r) => {
                let inner = tokio::spawn((r.handler)(shared.services.clone(), ctx));
                let _guard = AbortOnDrop(inner.abort_handle());
                match tokio::time::timeout(r.timeout, inner).await {
                    Ok(Ok(result)) => result,
                    Ok(Err(e)) if e.is_panic() => {
                        Err(JobError::Retry("the job's handler panicked".to_owned()))
                    }
                    Ok(Err(_)) => Err(JobError::Retry("the job was stopped".to_owned())),
                    Err(_) => Err(JobError::Retry(format!(
                        "timed out after {} s",
                        r.timeout.as_secs_f64()
                    ))),
                }
            }
        };
        let now = shared.services.now();
        let outcome = match outcome {
            Ok(result) => FinishOutcome::Succeeded {
                result: result.map(|v| v.to_string()),
            },
            Err(JobError::Fatal(error)) => FinishOutcome::Dead { error },
            Err(JobError::Retry(error)) if attempt >= max_attempts => FinishOutcome::Dead { error },
            Err(JobError::Retry(error)) => FinishOutcome::Retry {
                error,
                run_at: after(
                    now,
                    jitter(backoff(shared.retry_base, shared.retry_cap, attempt)),
                ),
            },
        };
        if let Some(r) = shared
            .running()
            .get_mut(&id)
            .filter(|r| r.attempt == attempt)
        {
            r.done = true;
        }
        let _ = done_tx.send(Done {
            id,
            finish: Finish {
                id,
                attempt,
                outcome,
            },
        });
    });
    if let Some(r) = shared
        .running()
        .get_mut(&id)
        .filter(|r| r.attempt == job_attempt)
    {
        r.abort = Some(handle.abort_handle());
    }
}

/// Writes finished attempts in batches, then frees their slots.
async fn completer(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<Done>) {
    let mut batch = Vec::new();
    while rx.recv_many(&mut batch, 1024).await > 0 {
        let finishes: Vec<Finish> = batch.iter().map(|d| d.finish.clone()).collect();
        let mut tries = 0u32;
        loop {
            let now = shared.services.now();
            match shared
                .services
                .store()
                .finish_jobs(&shared.worker, now, finishes.clone())
                .await
            {
                Ok(applied) => {
                    for (d, ok) in batch.iter().zip(applied) {
                        if !ok {
                            tracing::warn!(
                                job = d.id,
                                "a finished job had been taken over after its lease expired; its result was dropped"
                            );
                        }
                    }
                    break;
                }
                Err(e) if tries < 10 => {
                    tries += 1;
                    tracing::warn!(error = %e, "cannot record finished jobs; retrying");
                    tokio::time::sleep(Duration::from_millis(100 << tries.min(4))).await;
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot record finished jobs; their leases will expire and they will run again");
                    break;
                }
            }
        }
        for d in batch.drain(..) {
            shared.forget(d.id, d.finish.attempt);
        }
        shared.services.notify_job_finishes();
    }
}

/// Renews this worker's leases; stops the tasks of jobs it no longer holds.
async fn lease_keeper(shared: Arc<Shared>) {
    let every = (shared.lease / 3).max(Duration::from_millis(50));
    let mut last_ok = Instant::now();
    loop {
        tokio::time::sleep(every).await;
        let asked = Instant::now();
        if shared.running().is_empty() {
            last_ok = asked;
            continue;
        }
        let now = shared.services.now();
        match shared
            .services
            .store()
            .renew_leases(&shared.worker, after(now, shared.lease))
            .await
        {
            Ok(ids) => {
                last_ok = asked;
                let held: HashSet<i64> = ids.into_iter().collect();
                let lost: Vec<(i64, i32)> = shared
                    .running()
                    .iter()
                    .filter(|(id, r)| !r.done && r.claimed < asked && !held.contains(id))
                    .map(|(id, r)| (*id, r.attempt))
                    .collect();
                for (id, attempt) in lost {
                    tracing::warn!(job = id, worker = %shared.worker, "lost the lease of a running job; stopping it");
                    stop_job(&shared, id, attempt);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot renew job leases");
                if last_ok.elapsed() + every >= shared.lease {
                    let all: Vec<(i64, i32)> = shared
                        .running()
                        .iter()
                        .filter(|(_, r)| !r.done)
                        .map(|(id, r)| (*id, r.attempt))
                        .collect();
                    for (id, attempt) in all {
                        tracing::error!(
                            job = id,
                            "leases could not be renewed for a whole lease period; stopping the job"
                        );
                        stop_job(&shared, id, attempt);
                    }
                }
            }
        }
    }
}

fn stop_job(shared: &Shared, id: i64, attempt: i32) {
    if let Some(a) = shared
        .running()
        .get(&id)
        .filter(|r| r.attempt == attempt)
        .and_then(|r| r.abort.clone())
    {
        a.abort();
    }
    shared.forget(id, attempt);
}

/// Puts back the jobs of workers that stopped renewing their leases.
async fn sweeper(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let every = (shared.lease / 2).clamp(Duration::from_millis(100), Duration::from_secs(10));
    loop {
        if pause(&mut stop, every).await {
            return;
        }
        let now = shared.services.now();
        match shared.services.store().expire_leases(now).await {
            Ok(expired) => {
                for e in expired {
                    tracing::warn!(job = e.id, kind = %e.kind, worker = %e.worker, status = e.status.as_str(), "a worker stopped renewing a job's lease; the job was put back");
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot expire job leases"),
        }
    }
}

/// Fires due schedules (each period once across all processes).
async fn scheduler(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    loop {
        let now = shared.services.now();
        let mut wait = Duration::from_secs(1);
        match shared.services.store().list_schedules().await {
            Ok(schedules) => {
                for s in schedules.into_iter().filter(|s| s.enabled) {
                    if s.next_run_at > now {
                        let until = Duration::from_micros(
                            u64::try_from(s.next_run_at.as_micros() - now.as_micros()).unwrap_or(0),
                        );
                        wait = wait.min(until);
                        continue;
                    }
                    if let Err(e) = fire(&shared, &s, now).await {
                        tracing::warn!(schedule = %s.name, error = %e, "cannot fire a schedule");
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read schedules"),
        }
        if pause(&mut stop, wait.max(Duration::from_millis(5))).await {
            return;
        }
    }
}

async fn fire(
    shared: &Shared,
    s: &patchbay_store::ScheduleRecord,
    now: Timestamp,
) -> Result<(), String> {
    let schedule = Schedule::parse(&s.schedule).map_err(|e| e.to_string())?;
    let Some(next) = schedule.next_after(now) else {
        return Err("the schedule never fires again".to_owned());
    };
    let mut payload: Value = serde_json::from_str(&s.payload).unwrap_or(Value::Null);
    if !payload.is_object() {
        payload = Value::Object(serde_json::Map::new());
    }
    payload["schedule"] = Value::String(s.name.clone());
    payload["period"] = serde_json::to_value(s.next_run_at).map_err(|e| e.to_string())?;
    let job = NewJob {
        queue: s.queue.clone(),
        kind: s.kind.clone(),
        scope: None,
        payload: payload.to_string(),
        unique_key: Some(format!("schedule:{}", s.name)),
        run_at: now,
        max_attempts: JobKind::parse(&s.kind).map_or(3, JobKind::max_attempts),
        created_at: now,
    };
    let fired = shared
        .services
        .store()
        .fire_schedule(&s.name, s.next_run_at, next, job)
        .await
        .map_err(|e| e.to_string())?;
    if let Some(id) = fired {
        tracing::debug!(schedule = %s.name, job = id, "schedule fired");
    }
    Ok(())
}

// ---- the built-in handlers ----

/// `noop`: does nothing, or what its payload says: `sleepMs` (at most
/// 10,000), `fail` (an error message), `failUntilAttempt` (fail before that
/// attempt). Used to exercise and measure the workers.
async fn noop(_: Services, ctx: JobContext) -> Result<Option<Value>, JobError> {
    let p = &ctx.payload;
    if let Some(ms) = p.get("sleepMs").and_then(Value::as_u64) {
        tokio::time::sleep(Duration::from_millis(ms.min(10_000))).await;
    }
    let fail_until = p
        .get("failUntilAttempt")
        .and_then(Value::as_i64)
        .unwrap_or(i64::MAX);
    if let Some(message) = p.get("fail").and_then(Value::as_str)
        && i64::from(ctx.attempt) < fail_until
    {
        return Err(JobError::Retry(message.chars().take(500).collect()));
    }
    Ok(Some(serde_json::json!({ "attempt": ctx.attempt })))
}

async fn health_check(services: Services, ctx: JobContext) -> Result<Option<Value>, JobError> {
    let scope = ctx
        .scope
        .ok_or_else(|| JobError::Fatal("a health check needs a tenant scope".to_owned()))?;
    let id = ctx
        .payload
        .get("integrationId")
        .and_then(Value::as_str)
        .ok_or_else(|| JobError::Fatal("the payload names no integrationId".to_owned()))?;
    let result = services.run_health_check(&scope, id).await?;
    serde_json::to_value(result)
        .map(Some)
        .map_err(|e| JobError::Fatal(e.to_string()))
}

/// Enqueues a health check of every enabled integration (one pending check
/// per integration and scope: the unique key).
async fn health_sweep(services: Services, _: JobContext) -> Result<Option<Value>, JobError> {
    let states = services
        .store()
        .list_states_with_status(IntegrationStatus::Enabled)
        .await
        .map_err(|e| JobError::Retry(e.to_string()))?;
    let reg = services.registry();
    let specs: Vec<JobSpec> = states
        .iter()
        .filter(|s| reg.integration(&s.integration_id).is_some())
        .map(|s| crate::health::health_job(&s.scope, &s.integration_id))
        .collect();
    let mut enqueued = 0;
    for chunk in specs.chunks(500) {
        enqueued += services.enqueue(chunk.to_vec()).await?.len();
    }
    Ok(Some(serde_json::json!({ "enqueued": enqueued })))
}

async fn logs_prune(services: Services, _: JobContext) -> Result<Option<Value>, JobError> {
    let deleted = services.prune_logs().await?;
    Ok(Some(serde_json::json!({ "deleted": deleted })))
}

async fn jobs_prune(services: Services, _: JobContext) -> Result<Option<Value>, JobError> {
    let now = services.now();
    let store = services.store();
    let jobs = store
        .prune_jobs(
            now.plus_seconds(-KEEP_FINISHED_DAYS * 86_400),
            now.plus_seconds(-KEEP_DEAD_DAYS * 86_400),
        )
        .await
        .map_err(|e| JobError::Retry(e.to_string()))?;
    let sessions = store
        .delete_expired_sessions(now)
        .await
        .map_err(|e| JobError::Retry(e.to_string()))?;
    let usage = store
        .prune_usage(now.plus_seconds(-crate::usage::RETENTION_DAYS * 86_400))
        .await
        .map_err(|e| JobError::Retry(e.to_string()))?;
    Ok(Some(serde_json::json!({
        "deletedJobs": jobs,
        "deletedSessions": sessions,
        "deletedUsageHours": usage,
    })))
}
