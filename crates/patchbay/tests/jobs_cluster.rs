//! Several real `patchbay serve` processes on one PostgreSQL database:
//! jobs survive SIGKILL at random moments (none lost, each succeeds exactly
//! once, no two attempts overlap while a lease is valid), and a schedule
//! fires once per period with three processes up. Plus the single-process
//! SQLite restart.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Proc, local_addr, patchbay};
use patchbay_core::{Schedule, Timestamp};
use patchbay_store::{
    AttemptOutcome, DatabaseConfig, JobQuery, JobStatus, NewJob, ScheduleRecord, Store,
};
use serde_json::Value;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A server process on a shared database, with its own worker id.
fn server(database: &[&str], key: &Path, worker: &str, extra: &[&str]) -> Proc {
    let addr = local_addr();
    let listen = addr.to_string();
    let mut args = vec!["serve"];
    args.extend_from_slice(database);
    args.extend_from_slice(&[
        "--master-key-file",
        key.to_str().unwrap(),
        "--listen",
        &listen,
        "--no-bootstrap-token",
        "--worker-id",
        worker,
        "--log",
        "warn",
    ]);
    args.extend_from_slice(extra);
    let mut p = Proc::spawn(patchbay(&args, Path::new("/")));
    p.ready(addr);
    p
}

fn noop_jobs(n: usize, payload: &str) -> Vec<NewJob> {
    let now = Timestamp::now();
    (0..n)
        .map(|i| NewJob {
            queue: "default".into(),
            kind: "noop".into(),
            scope: None,
            payload: payload.replace("{i}", &i.to_string()),
            unique_key: Some(format!("crash-test:{i}")),
            run_at: now,
            max_attempts: 20,
            created_at: now,
        })
        .collect()
}

/// How many noop jobs (the tests' own; the built-in schedules may fire
/// meanwhile) have `status`.
async fn count(store: &dyn Store, status: JobStatus) -> u64 {
    store
        .list_jobs(&JobQuery {
            status: Some(status),
            kind: Some("noop".into()),
            limit: 1,
            ..JobQuery::default()
        })
        .await
        .unwrap()
        .total
}

/// Every job succeeded exactly once, and no attempt began while an earlier
/// one still held a valid lease. Returns how many attempts were lost.
async fn check_exactly_once(store: &dyn Store, ids: &[i64]) -> usize {
    let mut lost = 0;
    for id in ids {
        let job = store.get_job(None, *id).await.unwrap().unwrap();
        assert_eq!(job.status, JobStatus::Succeeded, "job {id}: {job:?}");
        let attempts = store.list_attempts(*id).await.unwrap();
        let succeeded = attempts
            .iter()
            .filter(|a| a.outcome == Some(AttemptOutcome::Succeeded))
            .count();
        assert_eq!(
            succeeded, 1,
            "job {id} succeeded {succeeded} times: {attempts:?}"
        );
        assert_eq!(
            attempts.last().unwrap().outcome,
            Some(AttemptOutcome::Succeeded),
            "job {id}: {attempts:?}"
        );
        for pair in attempts.windows(2) {
            let (before, next) = (&pair[0], &pair[1]);
            let held_until = match before.outcome {
                Some(AttemptOutcome::Lost) => {
                    lost += 1;
                    before.lease_expires_at
                }
                Some(_) => before.finished_at.unwrap(),
                None => panic!("job {id}: attempt {} never ended", before.attempt),
            };
            assert!(
                next.started_at >= held_until,
                "job {id}: attempt {} by {} began at {:?} while attempt {} by {} held the job until {:?}",
                next.attempt,
                next.worker,
                next.started_at,
                before.attempt,
                before.worker,
                held_until
            );
        }
    }
    lost
}

#[test]
fn jobs_survive_sigkill_of_either_of_two_servers() {
    let Some(pg) = patchbay_testkit::postgres() else {
        return;
    };
    let url = pg.fresh_database();
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("master.key");
    let database = ["--database-url", url.as_str()];
    let extra = [
        "--job-lease-secs",
        "2",
        "--worker-concurrency",
        "default=16",
        "--shutdown-grace-secs",
        "1",
    ];
    // The first start creates the schema and the key check; then the pair.
    let mut servers = vec![
        server(&database, &key, "a-0", &extra),
        server(&database, &key, "b-0", &extra),
    ];
    let rt = runtime();
    let store: Arc<dyn Store> = rt
        .block_on(patchbay_store::connect(&DatabaseConfig::Postgres {
            url: url.clone(),
        }))
        .unwrap();
    let ids: Vec<i64> = rt.block_on(async {
        let mut ids = Vec::new();
        for chunk in noop_jobs(10_000, r#"{"sleepMs": 8, "n": {i}}"#).chunks(1_000) {
            ids.extend(
                store
                    .enqueue_jobs(chunk.to_vec())
                    .await
                    .unwrap()
                    .into_iter()
                    .map(patchbay_store::Enqueued::id),
            );
        }
        ids
    });
    assert_eq!(ids.len(), 10_000);

    // Kill one of the two at random moments, and start it again.
    let mut seed = u64::from(std::process::id()) ^ 0x9e37_79b9_7f4a_7c15;
    let mut random = move |below: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % below
    };
    let mut kills = 0;
    for round in 1..=5 {
        std::thread::sleep(Duration::from_millis(200 + random(600)));
        let victim = usize::try_from(random(2)).unwrap();
        servers[victim].signal("-KILL");
        servers[victim].wait(Duration::from_secs(10));
        kills += 1;
        let name = format!("{}-{round}", if victim == 0 { "a" } else { "b" });
        servers[victim] = server(&database, &key, &name, &extra);
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let done = rt.block_on(count(&*store, JobStatus::Succeeded));
        if done == 10_000 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {done} of 10,000 jobs succeeded after 2 minutes; dead: {}; stderr:\n{}",
            rt.block_on(count(&*store, JobStatus::Dead)),
            servers[0].stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let lost = rt.block_on(check_exactly_once(&*store, &ids));
    assert_eq!(kills, 5);
    assert!(
        lost > 0,
        "no kill interrupted a running job; the test proved nothing"
    );
    assert_eq!(rt.block_on(count(&*store, JobStatus::Dead)), 0);
    for s in &mut servers {
        assert!(s.stop().success(), "{}", s.stderr());
        assert!(!s.stderr().contains("panicked"), "{}", s.stderr());
    }
    rt.block_on(store.close());
}

#[test]
fn three_servers_fire_each_period_once() {
    let Some(pg) = patchbay_testkit::postgres() else {
        return;
    };
    let url = pg.fresh_database();
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("master.key");
    let database = ["--database-url", url.as_str()];
    let mut servers = Vec::new();
    for name in ["s1", "s2", "s3"] {
        servers.push(server(&database, &key, name, &[]));
    }
    let rt = runtime();
    let store: Arc<dyn Store> = rt
        .block_on(patchbay_store::connect(&DatabaseConfig::Postgres { url }))
        .unwrap();
    let every = Schedule::parse("every 1s").unwrap();
    let now = Timestamp::now();
    rt.block_on(store.ensure_schedule(ScheduleRecord {
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
    }))
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let jobs = loop {
        let page = rt
            .block_on(store.list_jobs(&JobQuery {
                kind: Some("noop".into()),
                limit: 100,
                ..JobQuery::default()
            }))
            .unwrap();
        if page.items.len() >= 6 {
            break page.items;
        }
        assert!(
            Instant::now() < deadline,
            "the schedule fired {} times in 30 s",
            page.items.len()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut periods: Vec<i64> = jobs
        .iter()
        .map(|j| {
            let p: Value = serde_json::from_str(&j.payload).unwrap();
            assert_eq!(p["schedule"], "test.tick");
            Timestamp::parse_rfc3339(p["period"].as_str().unwrap())
                .unwrap()
                .as_micros()
        })
        .collect();
    periods.sort_unstable();
    let all = periods.len();
    periods.dedup();
    assert_eq!(periods.len(), all, "a period was fired twice");
    // Consecutive seconds: none skipped either.
    for pair in periods.windows(2) {
        assert_eq!(pair[1] - pair[0], 1_000_000, "{periods:?}");
    }
    // The built-in schedules exist once, whoever created them.
    let names: Vec<String> = rt
        .block_on(store.list_schedules())
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(
        names,
        ["health.sweep", "jobs.prune", "logs.prune", "test.tick"]
    );
    for s in &mut servers {
        assert!(s.stop().success(), "{}", s.stderr());
    }
    rt.block_on(store.close());
}

#[test]
fn sqlite_jobs_survive_a_crash_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_arg = data.to_str().unwrap().to_owned();
    let database = ["--data-dir", data_arg.as_str()];
    let key = dir.path().join("master.key");
    let extra = ["--job-lease-secs", "1", "--worker-concurrency", "default=8"];
    let mut first = server(&database, &key, "one", &extra);
    let rt = runtime();
    let config = DatabaseConfig::from_settings(&data, None).unwrap();
    let ids: Vec<i64> = {
        let store = rt
            .block_on(patchbay_store::connect_for_admin(&config))
            .unwrap();
        let ids = rt
            .block_on(store.enqueue_jobs(noop_jobs(400, r#"{"sleepMs": 20, "n": {i}}"#)))
            .unwrap()
            .into_iter()
            .map(patchbay_store::Enqueued::id)
            .collect();
        rt.block_on(store.close());
        ids
    };
    // The enqueue came from another process: the server finds the jobs by polling.
    let deadline = Instant::now() + Duration::from_secs(30);
    let store = rt
        .block_on(patchbay_store::connect_for_admin(&config))
        .unwrap();
    while rt.block_on(count(&*store, JobStatus::Succeeded)) < 50 {
        assert!(Instant::now() < deadline, "{}", first.stderr());
        std::thread::sleep(Duration::from_millis(20));
    }
    first.signal("-KILL");
    first.wait(Duration::from_secs(10));
    let mut second = server(&database, &key, "two", &extra);
    let deadline = Instant::now() + Duration::from_secs(60);
    while rt.block_on(count(&*store, JobStatus::Succeeded)) < 400 {
        assert!(Instant::now() < deadline, "{}", second.stderr());
        std::thread::sleep(Duration::from_millis(50));
    }
    let lost = rt.block_on(check_exactly_once(&*store, &ids));
    assert!(lost > 0, "the kill interrupted no job");
    assert!(second.stop().success());
    rt.block_on(store.close());
}
