//! The workers against a real store (SQLite and PostgreSQL), on the system
//! clock: retries with backoff, dead jobs and an admin's retry, timeouts,
//! lost leases, graceful shutdown, fairness between tenants, schedules fired
//! once per period by several workers, and the health sweep.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::Live;
use patchbay_core::{Scope, Timestamp};
use patchbay_service::jobs::{JobKind, JobQueryIn, JobSpec};
use patchbay_service::worker::{Handler, JobContext, JobError, WorkerConfig, Workers, backoff};
use patchbay_service::{Access, Caller};
use patchbay_store::{AttemptOutcome, JobStatus, NewJob, ScheduleRecord};
use serde_json::{Value, json};

/// Polls `check` until it answers, or fails the test after `limit`.
async fn until<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn scope(c: &Caller) -> Scope {
    match &c.access {
        Access::Tenant(s) => s.clone(),
        Access::Platform => panic!("not a tenant caller"),
    }
}

fn fast(worker: &str) -> WorkerConfig {
    WorkerConfig {
        worker_id: worker.to_owned(),
        lease: Duration::from_secs(2),
        poll: Duration::from_millis(20),
        retry_base: Duration::from_millis(20),
        retry_cap: Duration::from_millis(200),
        schedules: false,
        ..WorkerConfig::default()
    }
}

fn handler<F, Fut>(f: F) -> Handler
where
    F: Fn(JobContext) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Option<Value>, JobError>> + Send + 'static,
{
    Arc::new(move |_, ctx| Box::pin(f(ctx)))
}

fn raw_job(kind: &str, scope: Option<Scope>, max_attempts: i32) -> NewJob {
    let now = Timestamp::now();
    NewJob {
        queue: "default".into(),
        kind: kind.into(),
        scope,
        payload: "{}".into(),
        unique_key: None,
        run_at: now,
        max_attempts,
        created_at: now,
    }
}

/// Sets its flag when dropped (a task stopped mid-way drops it too).
struct Flag(Arc<AtomicBool>);

impl Drop for Flag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

async fn status(h: &Live, id: i64) -> JobStatus {
    h.store.get_job(None, id).await.unwrap().unwrap().status
}

async fn failing_jobs_back_off_die_and_can_be_retried(h: Live) {
    let workers = Workers::start(h.services.clone(), fast("w1"))
        .await
        .unwrap();
    // Fails on attempts 1-5 (all of a noop's attempts), succeeds from the 6th.
    let id = h
        .services
        .enqueue(vec![JobSpec::new(
            JobKind::Noop,
            Some(scope(&h.a)),
            json!({ "fail": "boom", "failUntilAttempt": 6 }),
        )])
        .await
        .unwrap()[0]
        .id();
    until("the job to die", Duration::from_secs(20), || async {
        (status(&h, id).await == JobStatus::Dead).then_some(())
    })
    .await;
    let job = h.services.get_job(&h.a, id).await.unwrap();
    assert_eq!(job.attempts, 5);
    assert_eq!(job.last_error.as_deref(), Some("boom"));
    let history = job.history.unwrap();
    assert_eq!(history.len(), 5);
    assert!(history.iter().all(|a| a.outcome == Some("failed")
        && a.error.as_deref() == Some("boom")
        && a.worker == "w1"));
    // Each retry waited at least half its backoff (the jitter's lower bound).
    for pair in history.windows(2) {
        let waited = pair[1].started_at.as_micros() - pair[0].finished_at.unwrap().as_micros();
        let due = backoff(
            Duration::from_millis(20),
            Duration::from_millis(200),
            pair[0].attempt,
        );
        assert!(
            u128::try_from(waited).unwrap() >= due.as_micros() / 2,
            "attempt {} retried after {waited} µs, before half of {due:?}",
            pair[1].attempt
        );
    }
    // The dead job is visible in the list, filtered by status.
    let dead = h
        .services
        .list_jobs(
            &h.a,
            JobQueryIn {
                status: Some("dead".into()),
                ..JobQueryIn::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(dead.items.iter().map(|j| j.id).collect::<Vec<_>>(), [id]);
    assert_eq!(dead.counts.get("dead"), Some(&1));
    // Another tenant sees nothing of it.
    assert!(
        h.services
            .list_jobs(&h.b, JobQueryIn::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert!(h.services.get_job(&h.b, id).await.is_err());
    assert!(h.services.retry_job(&h.b, id).await.is_err());
    // An admin's retry gives it its attempts again; attempt 6 succeeds.
    let retried = h.services.retry_job(&h.a, id).await.unwrap();
    // (The worker may already have picked it up.)
    assert!(
        ["queued", "running", "succeeded"].contains(&retried.status),
        "{}",
        retried.status
    );
    until(
        "the retried job to succeed",
        Duration::from_secs(20),
        || async { (status(&h, id).await == JobStatus::Succeeded).then_some(()) },
    )
    .await;
    let job = h.services.get_job(&h.a, id).await.unwrap();
    assert_eq!(job.result, Some(json!({ "attempt": 6 })));
    assert_eq!(job.history.unwrap().len(), 6);
    let again = h.services.retry_job(&h.a, id).await.unwrap_err();
    assert!(again.to_string().contains("only dead jobs"), "{again}");
    workers.shutdown(Duration::from_secs(1)).await;
}

async fn a_handler_past_its_timeout_fails_the_attempt(h: Live) {
    let mut config = fast("w1");
    config.handlers.push((
        "test.slow".into(),
        handler(|_| async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok(None)
        }),
        Duration::from_millis(100),
    ));
    config.handlers.push((
        "test.panics".into(),
        handler(|ctx| async move {
            assert!(ctx.attempt > 99, "a handler bug");
            Ok(None)
        }),
        Duration::from_secs(5),
    ));
    let workers = Workers::start(h.services.clone(), config).await.unwrap();
    let ids: Vec<i64> = h
        .store
        .enqueue_jobs(vec![
            raw_job("test.slow", None, 1),
            raw_job("test.panics", None, 2),
            raw_job("test.unknown", None, 5),
        ])
        .await
        .unwrap()
        .into_iter()
        .map(patchbay_store::Enqueued::id)
        .collect();
    for id in &ids {
        until("the jobs to die", Duration::from_secs(20), || async {
            (status(&h, *id).await == JobStatus::Dead).then_some(())
        })
        .await;
    }
    let job = |id| {
        let h = &h;
        async move { h.store.get_job(None, id).await.unwrap().unwrap() }
    };
    assert_eq!(
        job(ids[0]).await.last_error.as_deref(),
        Some("timed out after 0.1 s")
    );
    let panicked = job(ids[1]).await;
    assert_eq!(panicked.attempts, 2);
    assert_eq!(
        panicked.last_error.as_deref(),
        Some("the job's handler panicked")
    );
    // An unknown kind is dead at once: retrying cannot help.
    let unknown = job(ids[2]).await;
    assert_eq!(unknown.attempts, 1);
    assert_eq!(
        unknown.last_error.as_deref(),
        Some("no handler for job kind `test.unknown` in this build")
    );
    assert_eq!(workers.running(), 0);
    workers.shutdown(Duration::from_secs(1)).await;
}

async fn a_dead_workers_jobs_run_again_and_a_lost_lease_stops_its_task(h: Live) {
    // A worker that died holding a job: its lease expires and another runs it.
    let ghost = h
        .store
        .enqueue_jobs(vec![raw_job("noop", None, 3)])
        .await
        .unwrap()[0]
        .id();
    let now = Timestamp::now();
    let claimed = h
        .store
        .claim_jobs("default", "ghost", now, now.plus_seconds(1), 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);

    // A job whose first attempt holds on until stopped.
    let stopped = Arc::new(AtomicBool::new(false));
    let second_started = Arc::new(AtomicUsize::new(0));
    let hold = {
        let stopped = stopped.clone();
        let second_started = second_started.clone();
        handler(move |ctx| {
            let stopped = stopped.clone();
            let second_started = second_started.clone();
            async move {
                if ctx.attempt == 1 {
                    let _flag = Flag(stopped);
                    tokio::time::sleep(Duration::from_secs(60)).await;
                } else {
                    second_started.fetch_add(1, Ordering::SeqCst);
                }
                Ok(Some(json!({ "worker": ctx.worker })))
            }
        })
    };
    let mut one = fast("one");
    one.handlers
        .push(("test.hold".into(), hold.clone(), Duration::from_secs(90)));
    one.lease = Duration::from_millis(900);
    let w1 = Workers::start(h.services.clone(), one).await.unwrap();
    until(
        "the ghost's job to run again",
        Duration::from_secs(20),
        || async { (status(&h, ghost).await == JobStatus::Succeeded).then_some(()) },
    )
    .await;
    let history = h.store.list_attempts(ghost).await.unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[0].worker, "ghost");
    assert_eq!(history[0].outcome, Some(AttemptOutcome::Lost));
    assert_eq!(history[1].worker, "one");
    assert_eq!(history[1].outcome, Some(AttemptOutcome::Succeeded));

    let holder = h
        .store
        .enqueue_jobs(vec![raw_job("test.hold", None, 3)])
        .await
        .unwrap()[0]
        .id();
    until(
        "worker one to hold the job",
        Duration::from_secs(10),
        || async { (w1.running() == 1).then_some(()) },
    )
    .await;
    // Worker one's lease is taken away (as if it had paused past its lease)
    // and the job is queued again for any worker.
    let mut two = fast("two");
    two.handlers
        .push(("test.hold".into(), hold, Duration::from_secs(90)));
    let expired = h
        .store
        .expire_leases(Timestamp::now().plus_seconds(3600))
        .await
        .unwrap();
    assert_eq!(expired.iter().map(|e| e.id).collect::<Vec<_>>(), [holder]);
    // Whichever worker claims it next, the first attempt must stop: worker
    // one's keeper finds the lease gone, or its own new claim replaces it.
    let w2 = Workers::start(h.services.clone(), two).await.unwrap();
    until(
        "the first attempt to be stopped",
        Duration::from_secs(10),
        || async { stopped.load(Ordering::SeqCst).then_some(()) },
    )
    .await;
    until("the job to succeed", Duration::from_secs(10), || async {
        (status(&h, holder).await == JobStatus::Succeeded).then_some(())
    })
    .await;
    assert_eq!(second_started.load(Ordering::SeqCst), 1);
    let history = h.store.list_attempts(holder).await.unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[0].outcome, Some(AttemptOutcome::Lost));
    assert_eq!(history[1].outcome, Some(AttemptOutcome::Succeeded));
    until("worker one to let go", Duration::from_secs(10), || async {
        (w1.running() == 0).then_some(())
    })
    .await;
    w1.shutdown(Duration::from_secs(1)).await;
    w2.shutdown(Duration::from_secs(1)).await;
}

async fn shutdown_finishes_short_jobs_and_gives_back_long_ones(h: Live) {
    let workers = Workers::start(h.services.clone(), fast("w1"))
        .await
        .unwrap();
    let ids: Vec<i64> = h
        .services
        .enqueue(vec![
            JobSpec::new(JobKind::Noop, None, json!({ "sleepMs": 300 })),
            JobSpec::new(JobKind::Noop, None, json!({ "sleepMs": 10_000 })),
        ])
        .await
        .unwrap()
        .into_iter()
        .map(patchbay_store::Enqueued::id)
        .collect();
    until("both jobs to run", Duration::from_secs(10), || async {
        (workers.running() == 2).then_some(())
    })
    .await;
    let report = workers.shutdown(Duration::from_secs(2)).await;
    assert_eq!(report.finished, 1);
    assert_eq!(report.released, 1);
    let short = h.store.get_job(None, ids[0]).await.unwrap().unwrap();
    assert_eq!(short.status, JobStatus::Succeeded);
    let long = h.store.get_job(None, ids[1]).await.unwrap().unwrap();
    assert_eq!(long.status, JobStatus::Queued);
    assert_eq!(long.lease_owner, None);
    // The given-back attempt does not count against the job.
    assert_eq!(long.max_attempts - long.attempts, 5);
    let history = h.store.list_attempts(ids[1]).await.unwrap();
    assert_eq!(history[0].outcome, Some(AttemptOutcome::Released));
    // Another worker runs it.
    let again = Workers::start(h.services.clone(), fast("w2"))
        .await
        .unwrap();
    until(
        "the released job to run again",
        Duration::from_secs(20),
        || async { (status(&h, ids[1]).await == JobStatus::Succeeded).then_some(()) },
    )
    .await;
    again.shutdown(Duration::from_secs(1)).await;
}

async fn one_tenants_flood_does_not_starve_another(h: Live) {
    let (a, b) = (scope(&h.a), scope(&h.b));
    let workers = Workers::start(h.services.clone(), fast("w1"))
        .await
        .unwrap();
    let flood: Vec<JobSpec> = (0..10_000)
        .map(|i| JobSpec::new(JobKind::Noop, Some(a.clone()), json!({ "n": i })))
        .collect();
    for chunk in flood.chunks(1_000) {
        h.services.enqueue(chunk.to_vec()).await.unwrap();
    }
    // What A's workers did before B arrived does not count against B.
    let b_enqueued = Timestamp::now();
    let few: Vec<i64> = h
        .services
        .enqueue(
            (0..10)
                .map(|i| JobSpec::new(JobKind::Noop, Some(b.clone()), json!({ "n": i })))
                .collect(),
        )
        .await
        .unwrap()
        .into_iter()
        .map(patchbay_store::Enqueued::id)
        .collect();
    for id in &few {
        until("tenant B's jobs", Duration::from_secs(60), || async {
            (status(&h, *id).await == JobStatus::Succeeded).then_some(())
        })
        .await;
    }
    workers.shutdown(Duration::from_secs(1)).await;
    let mut b_done = Timestamp::from_micros(0);
    for id in &few {
        let job = h.store.get_job(None, *id).await.unwrap().unwrap();
        b_done = b_done.max(job.finished_at.unwrap());
    }
    // Page through A's finished jobs (500 a page).
    let mut before_b = 0;
    let mut cursor = None;
    loop {
        let page = h
            .store
            .list_jobs(&patchbay_store::JobQuery {
                scope: Some(a.clone()),
                status: Some(JobStatus::Succeeded),
                before_id: cursor,
                limit: 500,
                ..patchbay_store::JobQuery::default()
            })
            .await
            .unwrap()
            .items;
        before_b += page
            .iter()
            .filter(|j| j.finished_at.is_some_and(|f| f > b_enqueued && f <= b_done))
            .count();
        match page.last() {
            Some(last) if page.len() == 500 => cursor = Some(last.id),
            _ => break,
        }
    }
    assert!(
        before_b < 100,
        "B's 10 jobs waited for A's backlog: {before_b} of A's jobs finished between B's enqueue and B's last"
    );
}

async fn several_workers_fire_each_period_once(h: Live) {
    let mut workers = Vec::new();
    for name in ["s1", "s2", "s3"] {
        let mut config = fast(name);
        config.schedules = true;
        workers.push(Workers::start(h.services.clone(), config).await.unwrap());
    }
    // The built-in schedules exist once.
    let names: Vec<String> = h
        .services
        .list_schedules(&h.admin)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["health.sweep", "jobs.prune", "logs.prune"]);
    let now = Timestamp::now();
    let every = patchbay_core::Schedule::parse("every 1s").unwrap();
    h.store
        .ensure_schedule(ScheduleRecord {
            name: "test.tick".into(),
            schedule: every.to_string(),
            queue: "default".into(),
            kind: "noop".into(),
            payload: "{}".into(),
            enabled: true,
            next_run_at: every.next_after(now).unwrap(),
            last_run_at: None,
            last_job_id: None,
            updated_at: now,
        })
        .await
        .unwrap();
    let periods = until("four periods", Duration::from_secs(20), || async {
        let page = h
            .store
            .list_jobs(&patchbay_store::JobQuery {
                kind: Some("noop".into()),
                limit: 200,
                ..patchbay_store::JobQuery::default()
            })
            .await
            .unwrap();
        (page.items.len() >= 4).then_some(page.items)
    })
    .await;
    for w in workers {
        w.shutdown(Duration::from_secs(1)).await;
    }
    let mut seen: Vec<String> = periods
        .iter()
        .map(|j| {
            let p: Value = serde_json::from_str(&j.payload).unwrap();
            assert_eq!(p["schedule"], "test.tick");
            p["period"].as_str().unwrap().to_owned()
        })
        .collect();
    let all = seen.len();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), all, "a period ran twice: {seen:?}");
}

async fn the_health_sweep_checks_every_enabled_integration_once(h: Live) {
    let root = tempfile::tempdir().unwrap();
    for caller in [&h.a, &h.b] {
        h.services
            .save_credentials(
                caller,
                "storage_local",
                common::map(json!({ "root": root.path().to_str().unwrap() })),
            )
            .await
            .unwrap();
        h.services
            .set_state(
                caller,
                "storage_local",
                patchbay_service::integrations::StateIn {
                    status: Some(patchbay_core::IntegrationStatus::Enabled),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
    }
    // Two sweeps in a row enqueue one pending check per integration and scope.
    h.services
        .enqueue(vec![
            JobSpec::new(JobKind::HealthSweep, None, json!({})),
            JobSpec::new(JobKind::HealthSweep, None, json!({})),
        ])
        .await
        .unwrap();
    let mut config = fast("w1");
    config.queues = vec![("maintenance".into(), 1)];
    let sweeper = Workers::start(h.services.clone(), config).await.unwrap();
    until("the sweeps", Duration::from_secs(20), || async {
        let page = h
            .store
            .list_jobs(&patchbay_store::JobQuery {
                kind: Some("health.sweep".into()),
                status: Some(JobStatus::Succeeded),
                limit: 10,
                ..patchbay_store::JobQuery::default()
            })
            .await
            .unwrap();
        (page.total == 2).then_some(())
    })
    .await;
    sweeper.shutdown(Duration::from_secs(1)).await;
    let checks = h
        .store
        .list_jobs(&patchbay_store::JobQuery {
            kind: Some("health.check".into()),
            limit: 10,
            ..patchbay_store::JobQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(checks.total, 2, "one per tenant");
    let mut config = fast("w2");
    config.queues = vec![("health".into(), 4)];
    let checker = Workers::start(h.services.clone(), config).await.unwrap();
    for caller in [&h.a, &h.b] {
        until("the check result", Duration::from_secs(20), || async {
            let d = h
                .services
                .integration_detail(caller, "storage_local")
                .await
                .unwrap();
            d.state
                .last_health
                .filter(|r| r["status"] == "healthy")
                .map(|_| ())
        })
        .await;
    }
    checker.shutdown(Duration::from_secs(1)).await;
}

async fn the_maintenance_jobs_prune_logs_jobs_and_sessions(h: Live) {
    use patchbay_core::LogLevel::{Error, Info};
    let a = scope(&h.a);
    let now = Timestamp::now();
    let entry = |level, days_ago: i64| patchbay_store::NewLogEntry {
        scope: a.clone(),
        integration_id: "gateway_stripe".into(),
        level,
        operation: "test".into(),
        message: format!("{days_ago} days ago"),
        details: None,
        correlation_id: None,
        entity_type: None,
        entity_id: None,
        duration_ms: None,
        created_at: now.plus_seconds(-days_ago * 86_400),
    };
    // Default retention: 30 days, errors 90.
    h.store
        .append_logs(vec![
            entry(Info, 1),
            entry(Info, 31),
            entry(Error, 31),
            entry(Error, 91),
        ])
        .await
        .unwrap();
    // A job finished 8 days ago, past the 7 days finished jobs are kept.
    let old = h
        .store
        .enqueue_jobs(vec![raw_job("noop", None, 1)])
        .await
        .unwrap()[0]
        .id();
    let now = Timestamp::now();
    let long_ago = now.plus_seconds(-8 * 86_400);
    h.store
        .claim_jobs("default", "old", now, now.plus_seconds(60), 1)
        .await
        .unwrap();
    h.store
        .finish_jobs(
            "old",
            long_ago,
            vec![patchbay_store::Finish {
                id: old,
                attempt: 1,
                outcome: patchbay_store::FinishOutcome::Succeeded { result: None },
            }],
        )
        .await
        .unwrap();
    let ids: Vec<i64> = h
        .services
        .enqueue(vec![
            JobSpec::new(JobKind::LogsPrune, None, json!({})),
            JobSpec::new(JobKind::JobsPrune, None, json!({})),
        ])
        .await
        .unwrap()
        .into_iter()
        .map(patchbay_store::Enqueued::id)
        .collect();
    let mut config = fast("w1");
    config.queues = vec![("maintenance".into(), 1)];
    let workers = Workers::start(h.services.clone(), config).await.unwrap();
    for id in &ids {
        until("the maintenance jobs", Duration::from_secs(20), || async {
            (status(&h, *id).await == JobStatus::Succeeded).then_some(())
        })
        .await;
    }
    workers.shutdown(Duration::from_secs(1)).await;
    let result = |id| {
        let h = &h;
        async move {
            let j = h.store.get_job(None, id).await.unwrap().unwrap();
            serde_json::from_str::<Value>(&j.result.unwrap()).unwrap()
        }
    };
    assert_eq!(result(ids[0]).await, json!({ "deleted": 2 }));
    assert_eq!(result(ids[1]).await["deletedJobs"], 1);
    assert!(h.store.get_job(None, old).await.unwrap().is_none());
    let left = h
        .services
        .query_logs(&h.a, None, patchbay_service::logs::LogQueryIn::default())
        .await
        .unwrap();
    let mut messages: Vec<&str> = left.items.iter().map(|e| e.message.as_str()).collect();
    messages.sort_unstable();
    assert_eq!(messages, ["1 days ago", "31 days ago"]);
}

async fn counts_can_be_bounded(h: Live) {
    let a = scope(&h.a);
    h.services
        .enqueue(
            (0..12)
                .map(|n| JobSpec::new(JobKind::Noop, Some(a.clone()), json!({ "n": n })))
                .collect(),
        )
        .await
        .unwrap();
    let exact = h
        .services
        .list_jobs(&h.a, JobQueryIn::default())
        .await
        .unwrap();
    assert_eq!((exact.total, exact.counted_up_to), (12, None));
    assert_eq!(exact.counts.get("queued"), Some(&12));
    let bounded = h
        .services
        .list_jobs_counting(
            &h.a,
            JobQueryIn {
                limit: Some(3),
                ..JobQueryIn::default()
            },
            Some(5),
        )
        .await
        .unwrap();
    assert_eq!(bounded.items.len(), 3);
    assert_eq!((bounded.total, bounded.counted_up_to), (5, Some(5)));
    assert_eq!(bounded.counts.get("queued"), Some(&5));
    // Tenant B's count is its own.
    let other = h
        .services
        .list_jobs_counting(&h.b, JobQueryIn::default(), Some(5))
        .await
        .unwrap();
    assert!(other.counts.is_empty());
    assert_eq!(other.total, 0);
}

live_on_both!(
    counts_can_be_bounded,
    the_maintenance_jobs_prune_logs_jobs_and_sessions,
    failing_jobs_back_off_die_and_can_be_retried,
    a_handler_past_its_timeout_fails_the_attempt,
    a_dead_workers_jobs_run_again_and_a_lost_lease_stops_its_task,
    shutdown_finishes_short_jobs_and_gives_back_long_ones,
    one_tenants_flood_does_not_starve_another,
    several_workers_fire_each_period_once,
    the_health_sweep_checks_every_enabled_integration_once,
);
