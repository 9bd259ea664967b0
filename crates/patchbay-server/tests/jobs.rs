//! Background jobs, schedules and health checks through the HTTP API, against
//! a real server and database, with in-process workers where a test needs
//! jobs to run. Every behaviour runs on SQLite and, when PostgreSQL is
//! installed, on PostgreSQL.

mod common;

use std::time::Duration;

use common::{ALL, Db, Resp, TestServer, assert_problem, stripe};
use patchbay_core::Scope;
use patchbay_service::jobs::{JobKind, JobSpec};
use patchbay_service::worker::{WorkerConfig, Workers};
use patchbay_testkit::wait_for;
use serde_json::{Value, json};

/// How long health-check requests wait in tests that run workers. A request
/// answers as soon as its check finishes; this only bounds a stuck one.
const LONG_WAIT: Duration = Duration::from_secs(20);

/// How long a test waits for a condition (a job to die, a log to be written).
const PATIENCE: Duration = Duration::from_secs(20);

on_both_backends!(
    a_writable_root_is_healthy_and_the_check_is_recorded,
    a_check_without_a_native_health_operation_is_unknown_never_healthy,
    without_a_worker_the_request_answers_202_with_the_job_to_poll,
    jobs_are_listed_and_filtered_within_the_callers_scope,
    a_queued_job_can_be_cancelled_once,
    only_a_dead_job_can_be_retried,
    platform_admins_read_and_change_the_schedules,
);

// ---- helpers ----

/// Workers that poll often, retry at once and fire no schedules (a schedule
/// falling due mid-test would add jobs the test did not ask for).
fn start_workers(s: &TestServer) -> Workers {
    let config = WorkerConfig {
        poll: Duration::from_millis(50),
        lease: Duration::from_secs(5),
        retry_base: Duration::from_millis(1),
        schedules: false,
        ..WorkerConfig::default()
    };
    s.runtime
        .block_on(Workers::start(s.services.clone(), config))
        .unwrap()
}

fn stop_workers(s: &TestServer, workers: Workers) {
    s.runtime.block_on(workers.shutdown(Duration::from_secs(1)));
}

/// The tenant scope of a tenant token.
fn scope_of(s: &TestServer, token: &str) -> Scope {
    let me = s.get("/api/me", token).json;
    Scope::new(
        me["tenantId"].as_str().unwrap(),
        me["organizationId"].as_str().unwrap(),
    )
}

/// Enqueues one job directly through the services; returns its id.
fn enqueue(s: &TestServer, spec: JobSpec) -> i64 {
    s.runtime.block_on(s.services.enqueue(vec![spec])).unwrap()[0].id()
}

fn noop(scope: Option<&Scope>, payload: Value) -> JobSpec {
    JobSpec::new(JobKind::Noop, scope.cloned(), payload)
}

fn post(s: &TestServer, path: &str, token: &str) -> Resp {
    s.call("POST", path, Some(token), None)
}

fn check_health(s: &TestServer, token: &str, id: &str) -> Resp {
    post(s, &format!("/api/integrations/{id}/health"), token)
}

/// Saves `storage_local` credentials with this root and enables it.
fn configure_storage(s: &TestServer, token: &str, root: &str) {
    let saved = s.put(
        "/api/integrations/storage_local/credentials",
        token,
        &json!({ "values": { "root": root } }),
    );
    assert_eq!(saved.status, 200, "{}", saved.raw.text());
    let enabled = s.put(
        "/api/integrations/storage_local/state",
        token,
        &json!({ "status": "enabled" }),
    );
    assert_eq!(enabled.status, 200, "{}", enabled.raw.text());
}

/// The named check of a health result.
fn named<'a>(result: &'a Value, name: &str) -> &'a Value {
    result["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no `{name}` check in {result}"))
}

fn ids(page: &Value) -> Vec<i64> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_i64().unwrap())
        .collect()
}

fn job_status(s: &TestServer, token: &str, id: i64) -> String {
    let r = s.get(&format!("/api/jobs/{id}"), token);
    assert_eq!(r.status, 200, "{}", r.raw.text());
    r.json["status"].as_str().unwrap().to_owned()
}

// ---- health checks ----

fn a_writable_root_is_healthy_and_the_check_is_recorded(db: Db) {
    let Some(s) = TestServer::start_with(db, LONG_WAIT) else {
        return;
    };
    let (_, t) = s.tenant("acme", ALL);
    let root = tempfile::tempdir().unwrap();
    configure_storage(&s, &t, root.path().to_str().unwrap());
    let workers = start_workers(&s);

    let r = check_health(&s, &t, "storage_local");
    assert_eq!(r.status, 200, "{}", r.raw.text());
    let result = &r.json["result"];
    assert_eq!(result["status"], "healthy", "{result}");
    assert_eq!(named(result, "credentials")["status"], "pass");
    let provider = named(result, "provider");
    assert_eq!(
        (provider["status"].as_str(), provider["message"].as_str()),
        (Some("pass"), Some("the root directory is writable"))
    );
    let job = &r.json["job"];
    assert_eq!(
        (
            job["kind"].as_str(),
            job["status"].as_str(),
            job["integrationId"].as_str()
        ),
        (
            Some("health.check"),
            Some("succeeded"),
            Some("storage_local")
        )
    );
    assert_eq!(&job["result"], result, "the job carries the same result");
    assert_eq!(
        std::fs::read_dir(root.path()).unwrap().count(),
        0,
        "the probe file is removed again"
    );

    // The result is on the state, in the events and in the operation log.
    let detail = s.get("/api/integrations/storage_local", &t);
    let last = &detail.json["state"]["lastHealth"];
    assert_eq!(
        (last["status"].as_str(), &last["checkedAt"]),
        (Some("healthy"), &result["checkedAt"])
    );
    let events = s.get("/api/events", &t).json;
    let checked: Vec<&Value> = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "integrations.health.checked")
        .collect();
    assert_eq!(checked.len(), 1, "{events}");
    assert_eq!(
        (
            checked[0]["integrationId"].as_str(),
            checked[0]["payload"]["status"].as_str()
        ),
        (Some("storage_local"), Some("healthy"))
    );
    let logged = wait_for("the health check's log entry", PATIENCE, || {
        let logs = s.get("/api/logs?operation=health.check", &t).json;
        logs["items"].as_array().and_then(|i| i.first().cloned())
    });
    assert_eq!(
        (
            logged["integrationId"].as_str(),
            logged["level"].as_str(),
            logged["operation"].as_str()
        ),
        (Some("storage_local"), Some("info"), Some("health.check"))
    );

    // A root that does not exist is unhealthy, and says why.
    let missing = root.path().join("missing");
    configure_storage(&s, &t, missing.to_str().unwrap());
    let r = check_health(&s, &t, "storage_local");
    assert_eq!(r.status, 200, "{}", r.raw.text());
    assert_eq!(r.json["result"]["status"], "unhealthy", "{}", r.json);
    let provider = named(&r.json["result"], "provider");
    assert_eq!(provider["status"], "fail");
    assert!(
        provider["message"]
            .as_str()
            .unwrap()
            .starts_with("the root directory is unusable"),
        "{provider}"
    );
    assert_ne!(r.json["job"]["id"], job["id"], "a new check, a new job");
    assert_eq!(
        s.get("/api/integrations/storage_local", &t).json["state"]["lastHealth"]["status"],
        "unhealthy"
    );
    stop_workers(&s, workers);
}

fn a_check_without_a_native_health_operation_is_unknown_never_healthy(db: Db) {
    let Some(s) = TestServer::start_with(db, LONG_WAIT) else {
        return;
    };
    let (_, t) = s.tenant("acme", ALL);
    let workers = start_workers(&s);

    // Without its required credentials: unhealthy, naming what is missing.
    let r = check_health(&s, &t, "gateway_stripe");
    assert_eq!(r.status, 200, "{}", r.raw.text());
    let result = &r.json["result"];
    assert_eq!(result["status"], "unhealthy", "{result}");
    let credentials = named(result, "credentials");
    assert_eq!(credentials["status"], "fail");
    assert!(
        credentials["message"]
            .as_str()
            .unwrap()
            .contains("Secret Key"),
        "{credentials}"
    );
    assert_eq!(named(result, "provider")["status"], "skip");

    // With them: nothing in this build can reach Stripe, so the outcome is unknown.
    let saved = s.put(
        "/api/integrations/gateway_stripe/credentials",
        &t,
        &stripe("sk_test_health"),
    );
    assert_eq!(saved.status, 200, "{}", saved.raw.text());
    let r = check_health(&s, &t, "gateway_stripe");
    assert_eq!(r.status, 200, "{}", r.raw.text());
    let result = &r.json["result"];
    assert_eq!(result["status"], "unknown", "{result}");
    assert_eq!(named(result, "credentials")["status"], "pass");
    let provider = named(result, "provider");
    assert_eq!(provider["status"], "skip");
    assert!(
        provider["message"]
            .as_str()
            .unwrap()
            .contains("no health operation"),
        "{provider}"
    );
    assert_eq!(
        s.get("/api/integrations/gateway_stripe", &t).json["state"]["lastHealth"]["status"],
        "unknown"
    );
    stop_workers(&s, workers);
}

fn without_a_worker_the_request_answers_202_with_the_job_to_poll(db: Db) {
    let Some(s) = TestServer::start(db) else {
        return;
    };
    let (_, t) = s.tenant("acme", ALL);
    let root = tempfile::tempdir().unwrap();
    configure_storage(&s, &t, root.path().to_str().unwrap());

    let r = check_health(&s, &t, "storage_local");
    assert_eq!(r.status, 202, "{}", r.raw.text());
    let id = r.json["job"]["id"].as_i64().unwrap();
    let location = format!("/api/jobs/{id}");
    assert_eq!(r.raw.header("location"), Some(location.as_str()));
    assert_eq!(r.raw.header("content-type"), Some("application/json"));
    assert!(r.json.get("result").is_none(), "{}", r.json);
    let polled = s.get(&location, &t);
    assert_eq!(polled.status, 200, "{}", polled.raw.text());
    assert_eq!(
        (
            polled.json["status"].as_str(),
            polled.json["kind"].as_str(),
            polled.json["attempts"].as_i64(),
            polled.json["history"].as_array().map(Vec::len)
        ),
        (Some("queued"), Some("health.check"), Some(0), Some(0))
    );
    // Asking again joins the pending check instead of queueing another.
    let again = check_health(&s, &t, "storage_local");
    assert_eq!(again.status, 202, "{}", again.raw.text());
    assert_eq!(again.json["job"]["id"], id);
    assert_eq!(s.get("/api/jobs", &t).json["total"], 1);

    // Once a worker runs, the polled job carries the result.
    let workers = start_workers(&s);
    wait_for("the check to finish", PATIENCE, || {
        (job_status(&s, &t, id) == "succeeded").then_some(())
    });
    stop_workers(&s, workers);
    let done = s.get(&location, &t).json;
    assert_eq!(done["result"]["status"], "healthy", "{done}");
    let history = done["history"].as_array().unwrap();
    assert_eq!(history.len(), 1, "{done}");
    assert_eq!(history[0]["outcome"], "succeeded");
}

// ---- jobs ----

fn jobs_are_listed_and_filtered_within_the_callers_scope(db: Db) {
    let Some(s) = TestServer::start(db) else {
        return;
    };
    let (a_id, a) = s.tenant("alpha", ALL);
    let (_, b) = s.tenant("bravo", ALL);
    let a_scope = scope_of(&s, &a);
    let mine: Vec<i64> = (0..3)
        .map(|n| enqueue(&s, noop(Some(&a_scope), json!({ "n": n }))))
        .collect();
    let platform = enqueue(&s, noop(None, json!({ "n": "platform" })));
    let theirs = enqueue(&s, noop(Some(&scope_of(&s, &b)), json!({ "n": "bravo" })));
    let cancelled = post(&s, &format!("/api/jobs/{}/cancel", mine[0]), &a);
    assert_eq!(cancelled.status, 200, "{}", cancelled.raw.text());

    // A tenant sees its own jobs, newest first, with counts per status.
    let page = s.get("/api/jobs", &a).json;
    assert_eq!(ids(&page), [mine[2], mine[1], mine[0]]);
    assert_eq!(page["total"], 3);
    assert_eq!(page["counts"], json!({ "queued": 2, "cancelled": 1 }));
    assert!(page["nextCursor"].is_null());
    let first = &page["items"][2];
    assert_eq!(
        (
            first["kind"].as_str(),
            first["queue"].as_str(),
            first["tenantId"].as_str(),
            &first["payload"]
        ),
        (
            Some("noop"),
            Some("default"),
            Some(a_id.as_str()),
            &json!({ "n": 0 })
        )
    );
    assert!(first.get("history").is_none(), "history only on one job");
    let filtered = |q: &str| ids(&s.get(&format!("/api/jobs?{q}"), &a).json);
    assert_eq!(filtered("status=queued"), [mine[2], mine[1]]);
    assert_eq!(filtered("status=cancelled"), [mine[0]]);
    assert_eq!(filtered("status=dead"), Vec::<i64>::new());
    assert_eq!(filtered("kind=noop&queue=default").len(), 3);
    assert_eq!(filtered("kind=health.check"), Vec::<i64>::new());
    // Pages follow `nextCursor`.
    let one = s.get("/api/jobs?limit=2", &a).json;
    assert_eq!(ids(&one), [mine[2], mine[1]]);
    assert_eq!(one["nextCursor"], mine[1]);
    let two = s
        .get(&format!("/api/jobs?limit=2&cursor={}", mine[1]), &a)
        .json;
    assert_eq!(ids(&two), [mine[0]]);
    assert!(two["nextCursor"].is_null());

    // Bad filters are named.
    let bad = s.get("/api/jobs?status=stuck&limit=0", &a);
    assert_problem(&bad, 422, "validation_failed");
    let fields: Vec<&str> = bad.json["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["status", "limit"]);
    let scoped = s.get(&format!("/api/jobs?tenantId={a_id}"), &b);
    assert_problem(&scoped, 422, "validation_failed");
    assert_eq!(scoped.json["errors"][0]["code"], "not_allowed");
    let unknown = s.get("/api/jobs?colour=red", &a);
    assert_problem(&unknown, 400, "invalid_query");
    assert_eq!(unknown.json["field"], "colour");

    // Another tenant's job is answered exactly like a missing one.
    assert_eq!(ids(&s.get("/api/jobs", &b).json), [theirs]);
    let missing = s.get("/api/jobs/999999", &b);
    assert_problem(&missing, 404, "not_found");
    for (method, path) in [
        ("GET", format!("/api/jobs/{}", mine[1])),
        ("POST", format!("/api/jobs/{}/cancel", mine[1])),
        ("POST", format!("/api/jobs/{}/retry", mine[1])),
    ] {
        let r = s.call(method, &path, Some(&b), None);
        assert_problem(&r, 404, "not_found");
        assert_eq!(
            r.json["detail"],
            missing.json["detail"]
                .as_str()
                .unwrap()
                .replace("999999", &mine[1].to_string()),
            "{method} {path}"
        );
    }
    assert_eq!(job_status(&s, &a, mine[1]), "queued", "B cancelled nothing");
    assert_problem(&s.get("/api/jobs/not-a-number", &a), 404, "not_found");
    assert_problem(
        &s.get("/api/jobs", &s.token(&a_id, &["integrations.manage"])),
        403,
        "forbidden",
    );

    // Platform admins see every job, or one tenant's, or platform work only.
    let all = s.get("/api/jobs", &s.admin).json;
    assert_eq!(
        ids(&all),
        [theirs, platform, mine[2], mine[1], mine[0]],
        "{all}"
    );
    assert_eq!(
        ids(&s.get(&format!("/api/jobs?tenantId={a_id}"), &s.admin).json),
        [mine[2], mine[1], mine[0]]
    );
    let platform_only = s.get("/api/jobs?tenantId=platform", &s.admin).json;
    assert_eq!(ids(&platform_only), [platform]);
    assert!(platform_only["items"][0]["tenantId"].is_null());
    assert_eq!(
        s.get(&format!("/api/jobs/{theirs}"), &s.admin).json["payload"],
        json!({ "n": "bravo" })
    );
}

fn a_queued_job_can_be_cancelled_once(db: Db) {
    let Some(s) = TestServer::start(db) else {
        return;
    };
    let (tenant, t) = s.tenant("acme", ALL);
    let id = enqueue(&s, noop(Some(&scope_of(&s, &t)), json!({})));
    let viewer = s.token(&tenant, &["integrations.view"]);
    let refused = post(&s, &format!("/api/jobs/{id}/cancel"), &viewer);
    assert_problem(&refused, 403, "forbidden");
    assert!(
        refused.json["detail"]
            .as_str()
            .unwrap()
            .contains("integrations.manage")
    );

    let r = post(&s, &format!("/api/jobs/{id}/cancel"), &t);
    assert_eq!(r.status, 200, "{}", r.raw.text());
    assert_eq!(
        (r.json["id"].as_i64(), r.json["status"].as_str()),
        (Some(id), Some("cancelled"))
    );
    assert!(r.json["finishedAt"].is_string(), "{}", r.json);
    let again = post(&s, &format!("/api/jobs/{id}/cancel"), &t);
    assert_problem(&again, 409, "job_not_queued");
    assert!(
        again.json["detail"]
            .as_str()
            .unwrap()
            .contains("is cancelled"),
        "{}",
        again.json
    );
    let audit = s
        .get(&format!("/api/audit?tenantId={tenant}"), &s.admin)
        .json;
    let cancels: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["action"] == "job.cancel")
        .map(|a| a["outcome"].as_str().unwrap())
        .collect();
    // Newest first: the refused second try, the cancel, the viewer's refusal.
    assert_eq!(cancels, ["refused", "success", "denied"], "{audit}");
}

fn only_a_dead_job_can_be_retried(db: Db) {
    let Some(s) = TestServer::start(db) else {
        return;
    };
    let (tenant, t) = s.tenant("acme", ALL);
    let scope = scope_of(&s, &t);
    let dead = enqueue(&s, noop(Some(&scope), json!({ "fail": "boom" })));
    let mut keyed = noop(Some(&scope), json!({ "fail": "boom" }));
    keyed.unique_key = Some("nightly-export".to_owned());
    let dead_keyed = enqueue(&s, keyed.clone());
    let workers = start_workers(&s);
    wait_for("both jobs to use up their attempts", PATIENCE, || {
        [dead, dead_keyed]
            .iter()
            .all(|id| job_status(&s, &t, *id) == "dead")
            .then_some(())
    });
    stop_workers(&s, workers);

    let job = s.get(&format!("/api/jobs/{dead}"), &t).json;
    assert_eq!(
        (
            job["attempts"].as_i64(),
            job["maxAttempts"].as_i64(),
            job["lastError"].as_str()
        ),
        (Some(5), Some(5), Some("boom"))
    );
    let history = job["history"].as_array().unwrap();
    assert_eq!(
        history
            .iter()
            .map(|a| (
                a["attempt"].as_i64().unwrap(),
                a["outcome"].as_str().unwrap(),
                a["error"].as_str().unwrap()
            ))
            .collect::<Vec<_>>(),
        (1..=5).map(|n| (n, "failed", "boom")).collect::<Vec<_>>()
    );

    let viewer = s.token(&tenant, &["integrations.view"]);
    assert_problem(
        &post(&s, &format!("/api/jobs/{dead}/retry"), &viewer),
        403,
        "forbidden",
    );
    let retried = post(&s, &format!("/api/jobs/{dead}/retry"), &t);
    assert_eq!(retried.status, 200, "{}", retried.raw.text());
    assert_eq!(
        (
            retried.json["status"].as_str(),
            retried.json["attempts"].as_i64(),
            retried.json["maxAttempts"].as_i64()
        ),
        (Some("queued"), Some(5), Some(10)),
        "five more attempts"
    );
    let again = post(&s, &format!("/api/jobs/{dead}/retry"), &t);
    assert_problem(&again, 409, "job_not_dead");
    assert!(
        again.json["detail"].as_str().unwrap().contains("is queued"),
        "{}",
        again.json
    );

    // A dead job whose unique key another queued job holds would duplicate it.
    let holder = enqueue(&s, keyed);
    assert_ne!(holder, dead_keyed);
    assert_problem(
        &post(&s, &format!("/api/jobs/{dead_keyed}/retry"), &t),
        409,
        "job_duplicate",
    );
    assert_eq!(job_status(&s, &t, dead_keyed), "dead");
}

// ---- schedules ----

fn platform_admins_read_and_change_the_schedules(db: Db) {
    let Some(s) = TestServer::start(db) else {
        return;
    };
    s.runtime
        .block_on(s.services.ensure_builtin_schedules())
        .unwrap();
    let (_, t) = s.tenant("acme", ALL);
    let schedule_of = |name: &str| {
        let list = s.get("/api/schedules", &s.admin);
        assert_eq!(list.status, 200, "{}", list.raw.text());
        list.json
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no schedule {name}"))
    };

    let list = s.get("/api/schedules", &s.admin).json;
    let mut names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["health.sweep", "jobs.prune", "logs.prune"]);
    let sweep = schedule_of("health.sweep");
    assert_eq!(
        (
            sweep["schedule"].as_str(),
            sweep["kind"].as_str(),
            sweep["queue"].as_str(),
            sweep["enabled"].as_bool()
        ),
        (
            Some("every 15m"),
            Some("health.sweep"),
            Some("maintenance"),
            Some(true)
        )
    );

    let put = |name: &str, body: Value| s.put(&format!("/api/schedules/{name}"), &s.admin, &body);
    let changed = put("health.sweep", json!({ "schedule": "*/5 * * * *" }));
    assert_eq!(changed.status, 200, "{}", changed.raw.text());
    assert_eq!(
        (
            changed.json["schedule"].as_str(),
            changed.json["enabled"].as_bool()
        ),
        (Some("*/5 * * * *"), Some(true))
    );
    assert_eq!(schedule_of("health.sweep")["schedule"], "*/5 * * * *");
    // The stored text is canonical.
    let daily = put("logs.prune", json!({ "schedule": "  @DAILY " }));
    assert_eq!(daily.json["schedule"], "0 0 * * *", "{}", daily.json);
    let off = put(
        "jobs.prune",
        json!({ "schedule": "every 3600s", "enabled": false }),
    );
    assert_eq!(
        (off.json["schedule"].as_str(), off.json["enabled"].as_bool()),
        (Some("every 1h"), Some(false))
    );

    // Refusals name the field and change nothing.
    for (expr, code) in [
        ("every 0m", "invalid_schedule"),
        ("0 0 30 2 *", "never_fires"),
    ] {
        let r = put("health.sweep", json!({ "schedule": expr }));
        assert_problem(&r, 422, "validation_failed");
        assert_eq!(
            (
                r.json["errors"][0]["field"].as_str(),
                r.json["errors"][0]["code"].as_str()
            ),
            (Some("schedule"), Some(code)),
            "{expr}: {}",
            r.json
        );
    }
    assert_problem(
        &put("health.sweep", json!({ "cron": "* * * * *" })),
        422,
        "invalid_body",
    );
    assert_eq!(schedule_of("health.sweep")["schedule"], "*/5 * * * *");
    assert_problem(
        &put("no.such", json!({ "enabled": false })),
        404,
        "not_found",
    );

    // Tenant tokens see no schedules.
    assert_problem(&s.get("/api/schedules", &t), 403, "forbidden");
    assert_problem(
        &s.put(
            "/api/schedules/health.sweep",
            &t,
            &json!({ "enabled": false }),
        ),
        403,
        "forbidden",
    );
    assert_eq!(schedule_of("health.sweep")["enabled"], true);
}

// ---- the document ----

#[test]
fn the_job_routes_are_documented() {
    let s = TestServer::start(Db::Sqlite).unwrap();
    let doc = s.call("GET", "/api/openapi.json", None, None).json;
    for (method, path, operation, tag) in [
        ("get", "/api/jobs", "listJobs", "jobs"),
        ("get", "/api/jobs/{id}", "getJob", "jobs"),
        ("post", "/api/jobs/{id}/retry", "retryJob", "jobs"),
        ("post", "/api/jobs/{id}/cancel", "cancelJob", "jobs"),
        ("get", "/api/schedules", "listSchedules", "jobs"),
        ("put", "/api/schedules/{name}", "updateSchedule", "jobs"),
        (
            "post",
            "/api/integrations/{id}/health",
            "checkIntegrationHealth",
            "integrations",
        ),
    ] {
        let op = &doc["paths"][path][method];
        assert_eq!(op["operationId"], operation, "{method} {path}");
        assert_eq!(op["tags"], json!([tag]), "{method} {path}");
    }
    let list = &doc["paths"]["/api/jobs"]["get"];
    let mut params: Vec<&str> = list["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    params.sort_unstable();
    assert_eq!(
        params,
        ["cursor", "kind", "limit", "queue", "status", "tenantId"]
    );
    assert_eq!(
        (
            list["x-patchbay-feature"].as_str(),
            list["x-patchbay-platform-feature"].as_str()
        ),
        (Some("integrations.view"), Some("platform.admin"))
    );
    let schedule_param = &doc["paths"]["/api/schedules/{name}"]["put"]["parameters"][0];
    assert_eq!(
        (
            schedule_param["name"].as_str(),
            schedule_param["in"].as_str()
        ),
        (Some("name"), Some("path"))
    );

    // Both answers of a health check, the pending one with its Location.
    let health = &doc["paths"]["/api/integrations/{id}/health"]["post"]["responses"];
    let schema_of = |status: &str| {
        let r = health[status]["content"]["application/json"]["schema"]["$ref"]
            .as_str()
            .unwrap_or_else(|| panic!("no {status} schema in {health}"));
        let name = r.rsplit('/').next().unwrap();
        &doc["components"]["schemas"][name]
    };
    let mut done: Vec<&String> = schema_of("200")["properties"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    done.sort_unstable();
    assert_eq!(done, ["job", "result"]);
    assert_eq!(schema_of("202")["required"], json!(["job"]));
    assert!(health["202"]["headers"]["Location"].is_object(), "{health}");

    // The new error codes are catalogued as conflicts.
    let codes = doc["x-error-codes"].as_array().unwrap();
    for code in ["job_not_dead", "job_duplicate", "job_not_queued"] {
        let entry = codes
            .iter()
            .find(|c| c["code"] == code)
            .unwrap_or_else(|| panic!("{code} is not catalogued"));
        assert_eq!(entry["status"], 409);
    }
}

#[test]
fn a_manage_only_token_cancels_and_retries_jobs() {
    let s = TestServer::start(Db::Sqlite).unwrap();
    let (tenant, t) = s.tenant("acme", ALL);
    let scope = scope_of(&s, &t);
    let dead = enqueue(&s, noop(Some(&scope), json!({ "fail": "boom" })));
    let workers = start_workers(&s);
    wait_for("the failing job to die", PATIENCE, || {
        (job_status(&s, &t, dead) == "dead").then_some(())
    });
    stop_workers(&s, workers);
    let queued = enqueue(&s, noop(Some(&scope), json!({})));
    let manager = s.token(&tenant, &["integrations.manage"]);
    for (action, id, status) in [("cancel", queued, "cancelled"), ("retry", dead, "queued")] {
        let r = post(&s, &format!("/api/jobs/{id}/{action}"), &manager);
        assert_eq!(r.status, 200, "{action}: {}", r.raw.text());
        assert_eq!(r.json["status"], status);
    }
    let audit = s
        .get(&format!("/api/audit?tenantId={tenant}"), &s.admin)
        .json;
    let outcomes: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["action"].as_str().is_some_and(|x| x.starts_with("job.")))
        .map(|a| a["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["success", "success"], "{audit}");
}

#[test]
fn job_counts_follow_the_admins_tenant_filter() {
    let s = TestServer::start(Db::Sqlite).unwrap();
    let (a_id, a) = s.tenant("alpha", ALL);
    let (_, b) = s.tenant("bravo", ALL);
    enqueue(&s, noop(Some(&scope_of(&s, &a)), json!({})));
    let theirs = enqueue(&s, noop(Some(&scope_of(&s, &b)), json!({})));
    assert_eq!(
        post(&s, &format!("/api/jobs/{theirs}/cancel"), &b).status,
        200
    );
    let page = s.get(&format!("/api/jobs?tenantId={a_id}"), &s.admin).json;
    assert_eq!(page["total"], 1);
    assert_eq!(page["counts"], json!({ "queued": 1 }), "{page}");
    let platform = s.get("/api/jobs?tenantId=platform", &s.admin).json;
    assert_eq!(platform["counts"], json!({}), "{platform}");
}
