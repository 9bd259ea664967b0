//! Actions under the per-tenant concurrency limit (a tenant's sixth call
//! waits, calls past its queue are refused, another tenant is not held back)
//! and their usage metering (calls, errors, durations and bytes per hour,
//! per tenant), on SQLite and PostgreSQL.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::Harness;
use patchbay_core::{IntegrationStatus, Scope, Timestamp};
use patchbay_runtime::{CallContext, Connector, ConnectorError, Health};
use patchbay_service::integrations::{StateIn, VersionChoice};
use patchbay_service::logs::LogQueryIn;
use patchbay_service::usage::{UsageOut, UsageQueryIn};
use patchbay_service::{ActionLimits, Caller, ServiceError};
use serde_json::{Value, json};
use tokio::sync::Semaphore;

/// A provider whose calls take `latency` and then wait until the test lets
/// them go (`release`): a slow connector, without sleeping in the test.
struct Gated {
    started: AtomicUsize,
    release: Semaphore,
    latency: Duration,
}

impl Gated {
    fn closed() -> Arc<Gated> {
        Arc::new(Gated {
            started: AtomicUsize::new(0),
            release: Semaphore::new(0),
            latency: Duration::ZERO,
        })
    }

    /// Lets every call through after `latency` (the provider's own time).
    fn open(latency: Duration) -> Arc<Gated> {
        Arc::new(Gated {
            started: AtomicUsize::new(0),
            release: Semaphore::new(Semaphore::MAX_PERMITS / 2),
            latency,
        })
    }

    fn started(&self) -> usize {
        self.started.load(Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl Connector for Gated {
    async fn check(&self, _: &CallContext) -> Result<Health, ConnectorError> {
        Ok(Health {
            ok: true,
            message: "gated".into(),
        })
    }

    async fn invoke(
        &self,
        _: &CallContext,
        action: &str,
        input: Value,
    ) -> Result<Value, ConnectorError> {
        self.started.fetch_add(1, Ordering::SeqCst);
        self.release.acquire().await.unwrap().forget();
        if !self.latency.is_zero() {
            // The provider's latency, so that durations are measurable.
            tokio::time::sleep(self.latency).await;
        }
        // `put` as the storage hub's contract has it: `{ path, content }` in,
        // `{ path, size }` out. The path `fail` fails.
        let path = input["path"].as_str().unwrap_or_default();
        if path == "fail" {
            return Err(ConnectorError::fatal(format!(
                "the provider refused `{action}`"
            )));
        }
        let size = input["content"].as_str().map_or(0, str::len);
        Ok(json!({ "path": path, "size": size }))
    }
}

/// A `put` of a small file.
fn put(n: usize) -> Value {
    json!({ "path": format!("f{n}.txt"), "content": "x".repeat(n) })
}

fn scope_of(c: &Caller) -> Scope {
    match &c.access {
        patchbay_service::Access::Tenant(s) => s.clone(),
        patchbay_service::Access::Platform => unreachable!(),
    }
}

/// Enables `storage_local` for `caller` (its root is never touched: the
/// gated connector stands in for it).
async fn enable_storage(h: &Harness, caller: &Caller) {
    h.services
        .save_credentials(
            caller,
            "storage_local",
            common::map(json!({ "root": h.dir.path().to_str().unwrap() })),
        )
        .await
        .unwrap();
    h.services
        .set_state(
            caller,
            "storage_local",
            StateIn {
                status: Some(IntegrationStatus::Enabled),
                api_version: VersionChoice::Unchanged,
            },
        )
        .await
        .unwrap();
}

/// Waits (with a deadline) until `check` holds.
async fn until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn the_sixth_call_waits_and_calls_past_the_queue_are_refused_while_another_tenant_runs(
    h: Harness,
) {
    let defaults = ActionLimits::default();
    assert_eq!(
        (defaults.concurrency, defaults.queue, defaults.max_wait),
        (5, 20, Duration::from_secs(10))
    );
    // The defaults, with a wait long enough for a slow test machine.
    h.services.set_action_limits(ActionLimits {
        max_wait: Duration::from_secs(120),
        ..defaults
    });
    let gated = Gated::closed();
    h.services
        .register_native("storage_local", None, gated.clone());
    enable_storage(&h, &h.a).await;
    enable_storage(&h, &h.b).await;
    let a_tenant = scope_of(&h.a).tenant_id;
    let call = |caller: &Caller, n: usize| {
        let (s, c) = (h.services.clone(), caller.clone());
        tokio::spawn(async move { s.invoke_action(&c, "storage_local", "put", put(n)).await })
    };

    // Five run; the sixth and the next 19 wait (the queue holds 20).
    let mut a_calls: Vec<_> = (0..5).map(|n| call(&h.a, n)).collect();
    until("five running", || gated.started() == 5).await;
    assert_eq!(h.services.action_load(&a_tenant), (5, 0));
    a_calls.push(call(&h.a, 5));
    until("the sixth waiting", || {
        h.services.action_load(&a_tenant) == (5, 1)
    })
    .await;
    a_calls.extend((6..25).map(|n| call(&h.a, n)));
    until("a full queue", || {
        h.services.action_load(&a_tenant) == (5, 20)
    })
    .await;
    assert_eq!(
        gated.started(),
        5,
        "waiting calls have not reached the connector"
    );

    // The 26th is refused at once, with when to retry.
    let refused = h
        .services
        .invoke_action(&h.a, "storage_local", "put", put(25))
        .await
        .unwrap_err();
    let ServiceError::Overloaded {
        code,
        retry_after_secs,
        ..
    } = &refused
    else {
        panic!("{refused:?}");
    };
    assert_eq!(
        (*code, *retry_after_secs),
        ("tenant_concurrency_exceeded", 120)
    );

    // Another tenant's call runs meanwhile.
    let b_call = call(&h.b, 100);
    until("tenant B's call running", || gated.started() == 6).await;
    assert_eq!(h.services.action_load(&a_tenant), (5, 20));

    // Freed slots go to the waiting calls; everything accepted succeeds.
    gated.release.add_permits(1);
    until("a waiting call started", || gated.started() == 7).await;
    gated.release.add_permits(100);
    for c in a_calls {
        c.await.unwrap().unwrap();
    }
    b_call.await.unwrap().unwrap();
    assert_eq!(gated.started(), 26);
    until("tenant A idle", || {
        h.services.action_load(&a_tenant) == (0, 0)
    })
    .await;

    // The refusal is audited; refused calls are not metered.
    let audit = h
        .store
        .list_audit(&patchbay_store::AuditQuery {
            tenant_id: Some(a_tenant.clone()),
            limit: 200,
            ..patchbay_store::AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(
        audit
            .iter()
            .filter(|r| r.audit.action == "integration.action" && r.audit.outcome == "rate_limited")
            .count(),
        1
    );
    assert_eq!(
        usage(&h, &h.a, UsageQueryIn::default()).await.totals.calls,
        25
    );
    assert_eq!(
        usage(&h, &h.b, UsageQueryIn::default()).await.totals.calls,
        1
    );
}

async fn usage(h: &Harness, caller: &Caller, q: UsageQueryIn) -> UsageOut {
    h.services.usage(caller, q).await.unwrap()
}

async fn usage_counts_calls_errors_durations_and_bytes_per_tenant_and_hour(h: Harness) {
    let latency = Duration::from_millis(15);
    h.services
        .register_native("storage_local", None, Gated::open(latency));
    enable_storage(&h, &h.a).await;
    enable_storage(&h, &h.b).await;
    let hour0 = h.services.now();
    let mut input_bytes = 0;
    let mut output_bytes = 0;
    let mut run = |caller: &Caller, input: Value| {
        let (s, c) = (h.services.clone(), caller.clone());
        input_bytes += input.to_string().len();
        async move { s.invoke_action(&c, "storage_local", "put", input).await }
    };
    // Tenant A: three successes and a failure in the first hour…
    for input in [
        json!({ "path": "a", "content": "" }),
        json!({ "path": "notes/bb.txt", "content": "some longer content" }),
        json!({ "path": "c", "content": "ü" }),
    ] {
        let out = run(&h.a, input).await.unwrap();
        output_bytes += out.output.to_string().len();
    }
    let failed = run(&h.a, json!({ "path": "fail", "content": "nope" }))
        .await
        .unwrap_err();
    assert!(
        matches!(
            failed,
            ServiceError::Connector {
                code: "connector_failed",
                ..
            }
        ),
        "{failed:?}"
    );
    // …and one more an hour later.
    h.clock.advance_seconds(3600);
    let out = run(&h.a, json!({ "path": "late", "content": "yes" }))
        .await
        .unwrap();
    output_bytes += out.output.to_string().len();
    let a_input_bytes = input_bytes;
    // Tenant B: one call.
    let b_input = json!({ "path": "b", "content": "tenant b" });
    let b_out = h
        .services
        .invoke_action(&h.b, "storage_local", "put", b_input.clone())
        .await
        .unwrap();

    // The meter writes by itself, about once a second: wait for it.
    let a = scope_of(&h.a);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let rows = h
            .store
            .query_usage(
                &a,
                &patchbay_store::UsageQuery {
                    integration_id: None,
                    from: Timestamp::from_micros(0),
                    until: h.services.now().plus_seconds(3600),
                },
            )
            .await
            .unwrap();
        if rows.iter().map(|r| r.counts.calls).sum::<i64>() == 5 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "usage not flushed: {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Durations are the ones in the operation log, each at least the
    // provider's latency.
    let logged: Vec<i64> = h
        .services
        .query_logs(
            &h.a,
            Some("storage_local"),
            LogQueryIn {
                operation: Some("action.put".into()),
                limit: Some(200),
                ..LogQueryIn::default()
            },
        )
        .await
        .unwrap()
        .items
        .iter()
        .map(|e| e.duration_ms.unwrap())
        .collect();
    assert_eq!(logged.len(), 5);
    let min_ms = i64::try_from(latency.as_millis()).unwrap();
    assert!(logged.iter().all(|d| *d >= min_ms), "{logged:?}");

    let range = UsageQueryIn {
        integration: None,
        from: Some(hour0.to_string()),
        to: Some(h.services.now().plus_seconds(60).to_string()),
    };
    let a_usage = usage(&h, &h.a, range.clone()).await;
    assert_eq!(a_usage.totals.calls, 5);
    assert_eq!(a_usage.totals.errors, 1);
    assert_eq!(a_usage.totals.duration_ms, logged.iter().sum::<i64>());
    assert_eq!(
        a_usage.totals.input_bytes,
        i64::try_from(a_input_bytes).unwrap()
    );
    assert_eq!(
        a_usage.totals.output_bytes,
        i64::try_from(output_bytes).unwrap(),
        "a failed call has no output"
    );
    assert_eq!(
        a_usage.totals.avg_duration_ms,
        Some((a_usage.totals.duration_ms + 2) / 5)
    );
    // Two hours, one row each, oldest first; one integration.
    let per_hour: Vec<(i64, i64)> = a_usage.hours.iter().map(|r| (r.calls, r.errors)).collect();
    assert_eq!(per_hour, [(4, 1), (1, 0)]);
    assert!(a_usage.hours[0].hour < a_usage.hours[1].hour);
    assert_eq!(a_usage.integrations.len(), 1);
    assert_eq!(a_usage.integrations[0].integration_id, "storage_local");
    assert_eq!(a_usage.integrations[0].totals, a_usage.totals);

    // Tenant B sees its own call only, and A's figures hold none of B's.
    let b_usage = usage(&h, &h.b, range.clone()).await;
    assert_eq!(b_usage.totals.calls, 1);
    assert_eq!(b_usage.totals.errors, 0);
    assert_eq!(
        b_usage.totals.input_bytes,
        i64::try_from(b_input.to_string().len()).unwrap()
    );
    assert_eq!(
        b_usage.totals.output_bytes,
        i64::try_from(b_out.output.to_string().len()).unwrap()
    );

    // A range covering only the second hour; one integration.
    let later = usage(
        &h,
        &h.a,
        UsageQueryIn {
            from: Some(hour0.plus_seconds(3600).to_string()),
            ..range.clone()
        },
    )
    .await;
    assert_eq!((later.totals.calls, later.totals.errors), (1, 0));
    let other = usage(
        &h,
        &h.a,
        UsageQueryIn {
            integration: Some("gateway_stripe".into()),
            ..range.clone()
        },
    )
    .await;
    assert_eq!(other.totals.calls, 0);
    assert!(other.hours.is_empty() && other.integrations.is_empty());
    // The default range is the last 24 hours.
    assert_eq!(
        usage(&h, &h.a, UsageQueryIn::default()).await.totals.calls,
        5
    );
}

async fn usage_reads_are_checked_and_need_the_view_feature(h: Harness) {
    let bad = |q: UsageQueryIn| {
        let s = h.services.clone();
        let a = h.a.clone();
        async move { s.usage(&a, q).await.unwrap_err() }
    };
    let e = bad(UsageQueryIn {
        from: Some("yesterday".into()),
        ..UsageQueryIn::default()
    })
    .await;
    let ServiceError::Invalid { errors, .. } = &e else {
        panic!("{e:?}")
    };
    assert_eq!(
        (errors[0].field.as_str(), errors[0].code),
        ("from", "invalid_timestamp")
    );
    let now = h.services.now();
    let e = bad(UsageQueryIn {
        from: Some(now.to_string()),
        to: Some(now.plus_seconds(-7200).to_string()),
        ..UsageQueryIn::default()
    })
    .await;
    assert!(
        matches!(&e, ServiceError::Invalid { errors, .. } if errors[0].code == "out_of_range"),
        "{e:?}"
    );
    let e = bad(UsageQueryIn {
        from: Some(now.plus_seconds(-100 * 86_400).to_string()),
        ..UsageQueryIn::default()
    })
    .await;
    assert!(
        matches!(&e, ServiceError::Invalid { errors, .. } if errors[0].code == "out_of_range"),
        "{e:?}"
    );
    let e = bad(UsageQueryIn {
        integration: Some("no_such_thing".into()),
        ..UsageQueryIn::default()
    })
    .await;
    assert!(matches!(e, ServiceError::NotFound(_)), "{e:?}");

    let tenant = scope_of(&h.a).tenant_id;
    let viewer = common::token_for(
        &h.services,
        &h.admin,
        tenant.as_str(),
        &["integrations.view"],
    )
    .await;
    assert_eq!(
        usage(&h, &viewer, UsageQueryIn::default())
            .await
            .totals
            .calls,
        0
    );
    let no_view = common::token_for(
        &h.services,
        &h.admin,
        tenant.as_str(),
        &["integrations.manage"],
    )
    .await;
    let e = h
        .services
        .usage(&no_view, UsageQueryIn::default())
        .await
        .unwrap_err();
    assert!(matches!(e, ServiceError::Forbidden(_)), "{e:?}");
    // A platform token has no tenant scope.
    let e = h
        .services
        .usage(&h.admin, UsageQueryIn::default())
        .await
        .unwrap_err();
    assert!(matches!(e, ServiceError::Forbidden(_)), "{e:?}");
}

on_both!(
    the_sixth_call_waits_and_calls_past_the_queue_are_refused_while_another_tenant_runs,
    usage_counts_calls_errors_durations_and_bytes_per_tenant_and_hour,
    usage_reads_are_checked_and_need_the_view_feature,
);
