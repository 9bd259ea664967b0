//! The store conformance suite: one behaviour story, run against SQLite and
//! against PostgreSQL (a throwaway cluster started by `patchbay-testkit`).
//! Every backend must pass every test here, unchanged.

// Short names (s = store, a/b = tenant scopes, f = fixture) keep the story readable.
#![allow(clippy::many_single_char_names)]

use std::sync::Arc;

use patchbay_core::{IntegrationStatus, LogLevel, OrganizationId, Scope, TenantId, Timestamp};
use patchbay_store::*;

/// A store plus whatever keeps its database alive for the test.
struct Fixture {
    store: Arc<dyn Store>,
    config: DatabaseConfig,
    _dir: Option<tempfile::TempDir>,
}

async fn sqlite() -> Option<Fixture> {
    let dir = tempfile::tempdir().unwrap();
    let config = DatabaseConfig::from_settings(dir.path(), None).unwrap();
    Some(Fixture {
        store: connect(&config).await.unwrap(),
        config,
        _dir: Some(dir),
    })
}

async fn postgres() -> Option<Fixture> {
    let cluster = patchbay_testkit::postgres()?;
    let config = DatabaseConfig::Postgres {
        url: cluster.fresh_database(),
    };
    Some(Fixture {
        store: connect(&config).await.unwrap(),
        config,
        _dir: None,
    })
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let f = super::sqlite().await.unwrap();
                super::$name(f).await;
            })*
        }
        mod on_postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let Some(f) = super::postgres().await else { return };
                super::$name(f).await;
            })*
        }
    };
}

conformance!(
    migrations_are_applied_once_and_reported_ready,
    a_database_from_a_newer_release_is_refused,
    tenants_and_organizations,
    api_tokens_are_found_by_hash_and_revoked_within_scope,
    credentials_upsert_fall_through_in_order_and_hard_delete,
    state_writes_are_optimistic,
    apply_is_all_or_nothing,
    logs_are_batched_filtered_paginated_and_pruned,
    events_are_ordered_and_scoped,
    audit_records_are_readable_per_tenant_and_platform_wide,
    concurrent_writers_all_succeed,
    rows_of_unknown_organizations_are_refused,
    the_vault_check_is_set_once_and_replaced_by_compare_and_set,
    tenant_keys_are_versioned_rewrapped_and_retired,
    credentials_are_reencrypted_by_compare_and_set,
    principals_are_granted_revoked_and_scoped,
    tenant_settings_are_upserted,
    users_are_unique_by_email_and_disabling_ends_their_sessions,
    sessions_are_found_by_hash_moved_and_expired,
    failing_connections_are_counted_across_tenants,
    log_pages_can_be_numbered,
    jobs_are_claimed_in_fair_order_with_leases,
    unique_jobs_are_deduplicated_while_active,
    finishing_a_job_needs_its_lease,
    expired_leases_are_requeued_or_dead_and_renewals_keep_them,
    released_jobs_cost_no_attempt,
    dead_jobs_are_retried_and_queued_ones_cancelled,
    jobs_are_listed_counted_and_pruned,
    schedules_fire_once_per_period,
    concurrent_claims_never_take_a_job_twice,
    enqueues_wake_workers_across_processes,
    usage_is_added_per_hour_and_read_within_scope,
    concurrent_usage_batches_add_up_across_processes,
    sync_runs_have_a_lifecycle_and_one_active_run_per_stream,
    sync_batches_create_update_skip_unchanged_and_delete_in_seq_order,
    sync_batches_move_the_cursor_by_compare_and_set,
    concurrent_first_sync_batches_commit_once,
    sync_data_is_isolated_per_scope,
    sync_id_and_field_mappings_are_stored_per_stream,
    imported_records_are_mapped_under_their_streams_entity_type,
);

fn t(us: i64) -> Timestamp {
    Timestamp::from_micros(1_800_000_000_000_000 + us)
}

/// Creates tenant `slug` with organization `main`; returns its scope.
async fn tenant(store: &dyn Store, slug: &str) -> Scope {
    let scope = Scope::new(format!("ten_{slug}"), format!("org_{slug}"));
    store
        .apply(vec![
            Change::CreateTenant(Tenant {
                id: scope.tenant_id.clone(),
                slug: slug.into(),
                name: slug.to_uppercase(),
                created_at: t(0),
            }),
            Change::CreateOrganization(Organization {
                id: scope.organization_id.clone(),
                tenant_id: scope.tenant_id.clone(),
                slug: "main".into(),
                name: "Main".into(),
                created_at: t(1),
            }),
            Change::PutTenantKey(tkey(&scope.tenant_id, 1, "m1")),
        ])
        .await
        .unwrap();
    scope
}

async fn migrations_are_applied_once_and_reported_ready(f: Fixture) {
    let r = f.store.readiness().await.unwrap();
    assert!(r.is_ready(), "{r:?}");
    assert!(r.expected_migration >= 1);
    let backend = f.store.backend();
    f.store.close().await;
    drop(f.store);
    // Opening again finds nothing to do and keeps the data.
    let again = connect(&f.config).await.unwrap();
    assert_eq!(again.backend(), backend);
    assert!(again.readiness().await.unwrap().is_ready());
}

async fn a_database_from_a_newer_release_is_refused(f: Fixture) {
    f.store.close().await;
    drop(f.store);
    let sql = "INSERT INTO patchbay_migrations (version, name, checksum, applied_at) VALUES (9999, 'future', 'x', 0)";
    match &f.config {
        DatabaseConfig::Sqlite { path } => {
            rusqlite::Connection::open(path)
                .unwrap()
                .execute(sql, [])
                .unwrap();
        }
        DatabaseConfig::Postgres { url } => {
            let mut c = <sqlx::PgConnection as sqlx::Connection>::connect(url)
                .await
                .unwrap();
            sqlx::query(sql).execute(&mut c).await.unwrap();
        }
    }
    let err = connect(&f.config).await.unwrap_err();
    assert!(matches!(err, StoreError::Schema(_)), "{err}");
    assert!(err.to_string().contains("newer release"), "{err}");
}

async fn tenants_and_organizations(f: Fixture) {
    let s = &*f.store;
    let a = tenant(s, "acme").await;
    let b = tenant(s, "globex").await;
    let got = s.get_tenant(&a.tenant_id).await.unwrap().unwrap();
    assert_eq!(
        (got.slug.as_str(), got.name.as_str(), got.created_at),
        ("acme", "ACME", t(0))
    );
    assert!(
        s.get_tenant(&TenantId::new("nope"))
            .await
            .unwrap()
            .is_none()
    );
    let slugs: Vec<String> = s
        .list_tenants()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.slug)
        .collect();
    assert_eq!(slugs, ["acme", "globex"]);

    let dup = s
        .apply(vec![Change::CreateTenant(Tenant {
            id: TenantId::new("other"),
            slug: "acme".into(),
            name: "x".into(),
            created_at: t(0),
        })])
        .await;
    assert!(
        matches!(&dup, Err(StoreError::Conflict(m)) if m.contains("slug `acme`")),
        "{dup:?}"
    );

    let orgs = s.list_organizations(&a.tenant_id).await.unwrap();
    assert_eq!(orgs.len(), 1);
    assert_eq!(orgs[0].id, a.organization_id);
    // An organization is only found under its own tenant.
    assert!(
        s.get_organization(&a.tenant_id, &a.organization_id)
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        s.get_organization(&b.tenant_id, &a.organization_id)
            .await
            .unwrap()
            .is_none()
    );

    let orphan = s
        .apply(vec![Change::CreateOrganization(Organization {
            id: OrganizationId::new("o"),
            tenant_id: TenantId::new("missing"),
            slug: "x".into(),
            name: "x".into(),
            created_at: t(0),
        })])
        .await;
    assert!(matches!(orphan, Err(StoreError::NotFound(_))), "{orphan:?}");
}

fn token(id: &str, hash: u8, scope: TokenScope) -> ApiTokenRecord {
    ApiTokenRecord {
        id: id.into(),
        name: format!("token {id}"),
        token_hash: vec![hash; 32],
        prefix: format!("pb_{id}"),
        scope,
        features: vec!["integrations.view".into(), "integrations.manage".into()],
        created_by: Some("system".into()),
        created_at: t(10),
        expires_at: Some(t(1_000_000)),
        last_used_at: None,
        revoked_at: None,
    }
}

async fn api_tokens_are_found_by_hash_and_revoked_within_scope(f: Fixture) {
    let s = &*f.store;
    let a = tenant(s, "acme").await;
    let b = tenant(s, "globex").await;
    let admin = token("adm", 1, TokenScope::Platform);
    let ta = token("ta", 2, TokenScope::Tenant(a.clone()));
    let tb = token("tb", 3, TokenScope::Tenant(b.clone()));
    s.apply(vec![
        Change::InsertApiToken(admin.clone()),
        Change::InsertApiToken(ta.clone()),
        Change::InsertApiToken(tb.clone()),
    ])
    .await
    .unwrap();

    assert_eq!(s.find_api_token(&[1; 32]).await.unwrap().unwrap(), admin);
    assert_eq!(s.find_api_token(&[2; 32]).await.unwrap().unwrap(), ta);
    assert!(s.find_api_token(&[9; 32]).await.unwrap().is_none());
    assert_eq!(
        s.list_api_tokens(Some(&a.tenant_id)).await.unwrap(),
        vec![ta.clone()]
    );
    assert_eq!(s.list_api_tokens(None).await.unwrap().len(), 3);

    let dup = s
        .apply(vec![Change::InsertApiToken(token(
            "x",
            2,
            TokenScope::Platform,
        ))])
        .await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");

    // Tenant A cannot revoke tenant B's token, even knowing its id.
    let cross = s
        .apply(vec![Change::RevokeApiToken {
            id: "tb".into(),
            scope: Some(a.clone()),
            at: t(20),
        }])
        .await;
    assert!(matches!(cross, Err(StoreError::NotFound(_))), "{cross:?}");
    assert!(
        s.find_api_token(&[3; 32])
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_none()
    );
    s.apply(vec![Change::RevokeApiToken {
        id: "tb".into(),
        scope: Some(b.clone()),
        at: t(20),
    }])
    .await
    .unwrap();
    assert_eq!(
        s.find_api_token(&[3; 32])
            .await
            .unwrap()
            .unwrap()
            .revoked_at,
        Some(t(20))
    );
    let twice = s
        .apply(vec![Change::RevokeApiToken {
            id: "tb".into(),
            scope: None,
            at: t(21),
        }])
        .await;
    assert!(matches!(twice, Err(StoreError::NotFound(_))), "{twice:?}");

    s.touch_api_token("ta", t(30)).await.unwrap();
    assert_eq!(
        s.find_api_token(&[2; 32])
            .await
            .unwrap()
            .unwrap()
            .last_used_at,
        Some(t(30))
    );
}

fn cred(scope: &Scope, integration: &str, key_id: &str, byte: u8) -> CredentialRecord {
    CredentialRecord {
        scope: scope.clone(),
        integration_id: integration.into(),
        key_id: key_id.into(),
        key_version: 1,
        nonce: vec![byte; 12],
        ciphertext: vec![byte; 48],
        created_at: t(5),
        updated_at: t(5),
        last_used_at: None,
    }
}

async fn credentials_upsert_fall_through_in_order_and_hard_delete(f: Fixture) {
    let s = &*f.store;
    let a = tenant(s, "acme").await;
    let b = tenant(s, "globex").await;
    s.apply(vec![
        Change::PutCredential(cred(&a, "sync_medusa", "k1", 1)),
        Change::PutCredential(cred(&b, "sync_medusa", "k2", 2)),
    ])
    .await
    .unwrap();

    // Bundle only: the member falls through to it.
    let found = s
        .find_credentials(&a, &["sync_medusa_products", "sync_medusa"])
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].ciphertext, vec![1; 48]);

    // Member override comes first.
    s.apply(vec![Change::PutCredential(cred(
        &a,
        "sync_medusa_products",
        "k3",
        3,
    ))])
    .await
    .unwrap();
    let found = s
        .find_credentials(&a, &["sync_medusa_products", "sync_medusa"])
        .await
        .unwrap();
    let ids: Vec<&str> = found.iter().map(|c| c.integration_id.as_str()).collect();
    assert_eq!(ids, ["sync_medusa_products", "sync_medusa"]);
    assert!(s.find_credentials(&a, &[]).await.unwrap().is_empty());

    // Upsert replaces the values and the key id; the unique row stays one.
    let mut updated = cred(&a, "sync_medusa", "k4", 4);
    updated.updated_at = t(99);
    s.apply(vec![Change::PutCredential(updated.clone())])
        .await
        .unwrap();
    let got = s.find_credentials(&a, &["sync_medusa"]).await.unwrap();
    assert_eq!(got, vec![updated]);

    // Key ids are unique across the store.
    let reuse = s
        .apply(vec![Change::PutCredential(cred(
            &b,
            "gateway_stripe",
            "k4",
            5,
        ))])
        .await;
    assert!(matches!(reuse, Err(StoreError::Conflict(_))), "{reuse:?}");

    // Scope isolation: B sees only its own.
    let theirs = s
        .find_credentials(&b, &["sync_medusa_products", "sync_medusa"])
        .await
        .unwrap();
    assert_eq!(theirs.len(), 1);
    assert_eq!(theirs[0].ciphertext, vec![2; 48]);

    s.touch_credential(&a, "sync_medusa", t(500)).await.unwrap();
    assert_eq!(
        s.find_credentials(&a, &["sync_medusa"]).await.unwrap()[0].last_used_at,
        Some(t(500))
    );

    let del = Change::DeleteCredential {
        scope: a.clone(),
        integration_id: "sync_medusa".into(),
    };
    assert_eq!(s.apply(vec![del.clone()]).await.unwrap(), vec![1]);
    assert_eq!(s.apply(vec![del]).await.unwrap(), vec![0]);
    assert!(
        s.find_credentials(&a, &["sync_medusa"])
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        s.find_credentials(&b, &["sync_medusa"])
            .await
            .unwrap()
            .len(),
        1,
        "B's row is untouched"
    );
}

fn state(scope: &Scope, id: &str, status: IntegrationStatus, version: i64) -> StateRecord {
    StateRecord {
        scope: scope.clone(),
        integration_id: id.into(),
        status,
        api_version: Some("2024-12-18".into()),
        enabled_at: None,
        enabled_by: None,
        last_health: None,
        last_health_at: None,
        updated_at: t(version),
        version,
    }
}

async fn state_writes_are_optimistic(f: Fixture) {
    let s = &*f.store;
    let a = tenant(s, "acme").await;
    let b = tenant(s, "globex").await;
    s.apply(vec![Change::PutState {
        state: state(&a, "gateway_stripe", IntegrationStatus::Draft, 1),
        expect: Expect::Absent,
    }])
    .await
    .unwrap();
    let again = s
        .apply(vec![Change::PutState {
            state: state(&a, "gateway_stripe", IntegrationStatus::Draft, 1),
            expect: Expect::Absent,
        }])
        .await;
    assert!(matches!(again, Err(StoreError::Stale(_))), "{again:?}");

    let mut enabled = state(&a, "gateway_stripe", IntegrationStatus::Enabled, 2);
    enabled.enabled_at = Some(t(7));
    enabled.enabled_by = Some("token:ta".into());
    enabled.last_health = Some(r#"{"status":"healthy"}"#.into());
    enabled.last_health_at = Some(t(8));
    s.apply(vec![Change::PutState {
        state: enabled.clone(),
        expect: Expect::Version(1),
    }])
    .await
    .unwrap();
    assert_eq!(
        s.get_state(&a, "gateway_stripe").await.unwrap().unwrap(),
        enabled
    );

    // A writer that read version 1 lost the race.
    let lost = s
        .apply(vec![Change::PutState {
            state: state(&a, "gateway_stripe", IntegrationStatus::Disabled, 2),
            expect: Expect::Version(1),
        }])
        .await;
    assert!(matches!(lost, Err(StoreError::Stale(_))), "{lost:?}");
    // Another scope's version does not count.
    let cross = s
        .apply(vec![Change::PutState {
            state: state(&b, "gateway_stripe", IntegrationStatus::Disabled, 2),
            expect: Expect::Version(1),
        }])
        .await;
    assert!(matches!(cross, Err(StoreError::Stale(_))), "{cross:?}");

    s.apply(vec![Change::PutState {
        state: state(&a, "storage_s3", IntegrationStatus::Draft, 1),
        expect: Expect::Absent,
    }])
    .await
    .unwrap();
    let ids: Vec<String> = s
        .list_states(&a)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.integration_id)
        .collect();
    assert_eq!(ids, ["gateway_stripe", "storage_s3"]);
    assert!(s.list_states(&b).await.unwrap().is_empty());
    assert!(s.get_state(&b, "gateway_stripe").await.unwrap().is_none());
    // Across tenants, by status (the health sweep).
    s.apply(vec![Change::PutState {
        state: state(&b, "storage_s3", IntegrationStatus::Enabled, 1),
        expect: Expect::Absent,
    }])
    .await
    .unwrap();
    let enabled: Vec<(String, String)> = s
        .list_states_with_status(IntegrationStatus::Enabled)
        .await
        .unwrap()
        .into_iter()
        .map(|s| (s.scope.tenant_id.to_string(), s.integration_id))
        .collect();
    assert_eq!(
        enabled,
        [
            ("ten_acme".to_owned(), "gateway_stripe".to_owned()),
            ("ten_globex".to_owned(), "storage_s3".to_owned())
        ]
    );
}

async fn apply_is_all_or_nothing(f: Fixture) {
    let s = &*f.store;
    let a = tenant(s, "acme").await;
    let event = NewEvent {
        id: "evt_1".into(),
        scope: a.clone(),
        event_type: "integrations.credentials.updated".into(),
        integration_id: Some("gateway_stripe".into()),
        payload: "{}".into(),
        created_at: t(3),
    };
    let failing = s
        .apply(vec![
            Change::PutCredential(cred(&a, "gateway_stripe", "k1", 1)),
            Change::AppendEvent(event.clone()),
            Change::CreateTenant(Tenant {
                id: TenantId::new("dup"),
                slug: "acme".into(),
                name: "dup".into(),
                created_at: t(0),
            }),
        ])
        .await;
    assert!(failing.is_err());
    assert!(
        s.find_credentials(&a, &["gateway_stripe"])
            .await
            .unwrap()
            .is_empty(),
        "credential rolled back"
    );
    assert!(
        s.list_events(&a, 0, 10).await.unwrap().is_empty(),
        "event rolled back"
    );
    // The same changes without the failing one commit together.
    s.apply(vec![
        Change::PutCredential(cred(&a, "gateway_stripe", "k1", 1)),
        Change::AppendEvent(event),
    ])
    .await
    .unwrap();
    assert_eq!(
        s.find_credentials(&a, &["gateway_stripe"])
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(s.list_events(&a, 0, 10).await.unwrap().len(), 1);
}

fn log(scope: &Scope, n: i64, level: LogLevel, op: &str) -> NewLogEntry {
    NewLogEntry {
        scope: scope.clone(),
        integration_id: if n % 2 == 0 {
            "gateway_stripe".into()
        } else {
            "sync_medusa_products".into()
        },
        level,
        operation: op.into(),
        message: format!("entry {n}"),
        details: Some(format!(r#"{{"n":{n}}}"#)),
        correlation_id: Some(format!("run_{}", n / 100)),
        entity_type: Some("catalog.product".into()),
        entity_id: Some(format!("prod_{n}")),
        duration_ms: Some(n),
        created_at: t(n * 1000),
    }
}

async fn logs_are_batched_filtered_paginated_and_pruned(f: Fixture) {
    let s = &*f.store;
    let a = tenant(s, "acme").await;
    let b = tenant(s, "globex").await;
    let entries: Vec<NewLogEntry> = (0..1200)
        .map(|n| {
            log(
                &a,
                n,
                if n % 10 == 0 {
                    LogLevel::Error
                } else {
                    LogLevel::Info
                },
                if n % 3 == 0 {
                    "sync.import"
                } else {
                    "webhook.received"
                },
            )
        })
        .collect();
    s.append_logs(entries.clone()).await.unwrap();
    s.append_logs(vec![log(&b, 5, LogLevel::Error, "sync.import")])
        .await
        .unwrap();
    s.append_logs(vec![]).await.unwrap();

    // Newest first, cursor pagination through everything, total stable.
    let mut seen = Vec::new();
    let mut q = LogQuery {
        limit: 250,
        ..LogQuery::default()
    };
    loop {
        let page = s.query_logs(&a, &q).await.unwrap();
        assert_eq!(page.total, 1200);
        seen.extend(page.items.iter().map(|e| e.entry.duration_ms.unwrap()));
        match page.next_before_id {
            Some(c) => q.before_id = Some(c),
            None => break,
        }
    }
    assert_eq!(seen, (0..1200).rev().collect::<Vec<_>>());

    let first = s
        .query_logs(
            &a,
            &LogQuery {
                limit: 1,
                ..LogQuery::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        first.items[0].entry, entries[1199],
        "entries round-trip unchanged"
    );

    assert_eq!(
        query(
            s,
            &a,
            LogQuery {
                level: Some(LogLevel::Error),
                ..LogQuery::default()
            }
        )
        .await
        .total,
        120
    );
    assert_eq!(
        query(
            s,
            &a,
            LogQuery {
                operation: Some("sync.import".into()),
                ..LogQuery::default()
            }
        )
        .await
        .total,
        400
    );
    assert_eq!(
        query(
            s,
            &a,
            LogQuery {
                integration_id: Some("gateway_stripe".into()),
                ..LogQuery::default()
            }
        )
        .await
        .total,
        600
    );
    assert_eq!(
        query(
            s,
            &a,
            LogQuery {
                correlation_id: Some("run_3".into()),
                ..LogQuery::default()
            }
        )
        .await
        .total,
        100
    );
    assert_eq!(
        query(
            s,
            &a,
            LogQuery {
                entity_type: Some("catalog.product".into()),
                entity_id: Some("prod_7".into()),
                ..LogQuery::default()
            }
        )
        .await
        .total,
        1
    );
    let window = query(
        s,
        &a,
        LogQuery {
            since: Some(t(100_000)),
            until: Some(t(200_000)),
            ..LogQuery::default()
        },
    )
    .await;
    assert_eq!(window.total, 100);
    assert!(
        window
            .items
            .iter()
            .all(|e| (100..200).contains(&e.entry.duration_ms.unwrap()))
    );
    let combined = query(
        s,
        &a,
        LogQuery {
            level: Some(LogLevel::Error),
            operation: Some("sync.import".into()),
            integration_id: Some("gateway_stripe".into()),
            ..LogQuery::default()
        },
    )
    .await;
    assert_eq!(combined.total, 40);

    // Another tenant sees only its own entry.
    assert_eq!(
        s.query_logs(
            &b,
            &LogQuery {
                limit: 10,
                ..LogQuery::default()
            }
        )
        .await
        .unwrap()
        .total,
        1
    );

    // Retention: info older than t(600_000) and errors older than t(300_000) go.
    let deleted = s
        .prune_logs(&a.tenant_id, t(600_000), t(300_000))
        .await
        .unwrap();
    let info_gone = (0..600).filter(|n| n % 10 != 0).count() as u64;
    let errors_gone = (0..300).filter(|n| n % 10 == 0).count() as u64;
    assert_eq!(deleted, info_gone + errors_gone);
    let left = s
        .query_logs(
            &a,
            &LogQuery {
                limit: 1000,
                ..LogQuery::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(left.total, 1200 - deleted);
    assert!(left.items.iter().all(|e| e.entry.created_at >= t(300_000)));
    assert_eq!(
        s.query_logs(
            &b,
            &LogQuery {
                limit: 10,
                ..LogQuery::default()
            }
        )
        .await
        .unwrap()
        .total,
        1,
        "pruning is per tenant"
    );
}

async fn query(s: &dyn Store, scope: &Scope, q: LogQuery) -> LogPage {
    s.query_logs(scope, &LogQuery { limit: 1000, ..q })
        .await
        .unwrap()
}

async fn events_are_ordered_and_scoped(f: Fixture) {
    let s = &*f.store;
    let a = tenant(s, "acme").await;
    let b = tenant(s, "globex").await;
    for n in 0..5 {
        let scope = if n == 2 { &b } else { &a };
        s.apply(vec![Change::AppendEvent(NewEvent {
            id: format!("evt_{n}"),
            scope: scope.clone(),
            event_type: "integrations.integration.enabled".into(),
            integration_id: Some("gateway_stripe".into()),
            payload: format!(r#"{{"n":{n}}}"#),
            created_at: t(n),
        })])
        .await
        .unwrap();
    }
    let all = s.list_events(&a, 0, 100).await.unwrap();
    let ids: Vec<&str> = all.iter().map(|e| e.event.id.as_str()).collect();
    assert_eq!(ids, ["evt_0", "evt_1", "evt_3", "evt_4"]);
    assert!(all.windows(2).all(|w| w[0].seq < w[1].seq));
    let after = s.list_events(&a, all[1].seq, 100).await.unwrap();
    assert_eq!(after.len(), 2);
    assert_eq!(s.list_events(&a, 0, 1).await.unwrap().len(), 1);
    assert_eq!(s.list_events(&b, 0, 100).await.unwrap().len(), 1);
    let dup = s
        .apply(vec![Change::AppendEvent(NewEvent {
            id: "evt_0".into(),
            scope: a.clone(),
            event_type: "x".into(),
            integration_id: None,
            payload: "{}".into(),
            created_at: t(9),
        })])
        .await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");
}

async fn audit_records_are_readable_per_tenant_and_platform_wide(f: Fixture) {
    let s = &*f.store;
    let a = tenant(s, "acme").await;
    let b = tenant(s, "globex").await;
    let audit = |scope: Option<&Scope>, action: &str, n: i64| NewAudit {
        actor: "token:adm".into(),
        scope: scope.cloned(),
        action: action.into(),
        target: Some("gateway_stripe".into()),
        outcome: "success".into(),
        details: None,
        correlation_id: Some(format!("req_{n}")),
        created_at: t(n),
    };
    s.apply(vec![
        Change::AppendAudit(audit(None, "tenant.create", 1)),
        Change::AppendAudit(audit(Some(&a), "integration.enable", 2)),
        Change::AppendAudit(audit(Some(&b), "integration.enable", 3)),
        Change::AppendAudit(audit(Some(&a), "credentials.update", 4)),
    ])
    .await
    .unwrap();
    let mine = s
        .list_audit(&AuditQuery {
            tenant_id: Some(a.tenant_id.clone()),
            before_id: None,
            limit: 10,
        })
        .await
        .unwrap();
    let actions: Vec<&str> = mine.iter().map(|r| r.audit.action.as_str()).collect();
    assert_eq!(actions, ["credentials.update", "integration.enable"]);
    assert_eq!(mine[0].audit, audit(Some(&a), "credentials.update", 4));
    let everything = s
        .list_audit(&AuditQuery {
            tenant_id: None,
            before_id: None,
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(everything.len(), 4);
    assert_eq!(everything[3].audit.scope, None);
    let older = s
        .list_audit(&AuditQuery {
            tenant_id: None,
            before_id: Some(everything[1].id),
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(older.len(), 2);
}

async fn concurrent_writers_all_succeed(f: Fixture) {
    let a = tenant(&*f.store, "acme").await;
    let mut tasks = Vec::new();
    for n in 0..16 {
        let store = f.store.clone();
        let scope = a.clone();
        tasks.push(tokio::spawn(async move {
            for m in 0..10 {
                let id = format!("int_{n}_{m}");
                store
                    .apply(vec![Change::PutState {
                        state: state(&scope, &id, IntegrationStatus::Draft, 1),
                        expect: Expect::Absent,
                    }])
                    .await
                    .unwrap();
                store
                    .append_logs(vec![log(&scope, m, LogLevel::Info, "x")])
                    .await
                    .unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(f.store.list_states(&a).await.unwrap().len(), 160);
    assert_eq!(
        f.store
            .query_logs(
                &a,
                &LogQuery {
                    limit: 1,
                    ..LogQuery::default()
                }
            )
            .await
            .unwrap()
            .total,
        160
    );
}

async fn rows_of_unknown_organizations_are_refused(f: Fixture) {
    let s = &*f.store;
    let a = tenant(s, "acme").await;
    // A credential cannot name a data key version that does not exist.
    let mut unknown_key = cred(&a, "gateway_stripe", "k", 1);
    unknown_key.key_version = 42;
    let r = s.apply(vec![Change::PutCredential(unknown_key)]).await;
    assert!(matches!(r, Err(StoreError::NotFound(_))), "{r:?}");
    let wrong = Scope {
        tenant_id: a.tenant_id.clone(),
        organization_id: OrganizationId::new("not_ours"),
    };
    let r = s
        .apply(vec![Change::PutCredential(cred(
            &wrong,
            "gateway_stripe",
            "k",
            1,
        ))])
        .await;
    assert!(matches!(r, Err(StoreError::NotFound(_))), "{r:?}");
    let r = s
        .apply(vec![Change::PutState {
            state: state(&wrong, "gateway_stripe", IntegrationStatus::Draft, 1),
            expect: Expect::Absent,
        }])
        .await;
    assert!(matches!(r, Err(StoreError::NotFound(_))), "{r:?}");
}

async fn the_vault_check_is_set_once_and_replaced_by_compare_and_set(f: Fixture) {
    let s = &*f.store;
    assert!(s.get_vault_check().await.unwrap().is_none());
    let check = |key: &str| VaultCheckRecord {
        key_id: key.into(),
        nonce: vec![1; 24],
        ciphertext: vec![2; 40],
        updated_at: t(1),
    };
    s.apply(vec![Change::PutVaultCheck {
        record: check("k1"),
        expect_key_id: None,
    }])
    .await
    .unwrap();
    assert_eq!(s.get_vault_check().await.unwrap(), Some(check("k1")));
    let again = s
        .apply(vec![Change::PutVaultCheck {
            record: check("k9"),
            expect_key_id: None,
        }])
        .await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    let wrong = s
        .apply(vec![Change::PutVaultCheck {
            record: check("k2"),
            expect_key_id: Some("k0".into()),
        }])
        .await;
    assert!(matches!(wrong, Err(StoreError::Stale(_))), "{wrong:?}");
    s.apply(vec![Change::PutVaultCheck {
        record: check("k2"),
        expect_key_id: Some("k1".into()),
    }])
    .await
    .unwrap();
    assert_eq!(s.get_vault_check().await.unwrap().unwrap().key_id, "k2");
}

fn tkey(tenant: &TenantId, version: i64, master: &str) -> TenantKeyRecord {
    TenantKeyRecord {
        tenant_id: tenant.clone(),
        version,
        master_key_id: master.into(),
        nonce: vec![3; 24],
        wrapped_key: vec![u8::try_from(version).unwrap(); 48],
        created_at: t(version),
        retired_at: None,
    }
}

async fn tenant_keys_are_versioned_rewrapped_and_retired(f: Fixture) {
    let s = &*f.store;
    let a = tenant(s, "acme").await;
    let b = tenant(s, "globex").await;
    // tenant() made version 1 of each tenant's key.
    let dup = s
        .apply(vec![Change::PutTenantKey(tkey(&a.tenant_id, 1, "m1"))])
        .await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");
    s.apply(vec![Change::PutTenantKey(tkey(&a.tenant_id, 2, "m1"))])
        .await
        .unwrap();
    assert_eq!(
        s.list_tenant_keys(Some(&a.tenant_id))
            .await
            .unwrap()
            .iter()
            .map(|k| k.version)
            .collect::<Vec<_>>(),
        [1, 2]
    );
    assert_eq!(s.list_tenant_keys(None).await.unwrap().len(), 3);

    let mut rewrapped = tkey(&a.tenant_id, 1, "m2");
    rewrapped.wrapped_key = vec![9; 48];
    let lost = s
        .apply(vec![Change::RewrapTenantKey {
            record: rewrapped.clone(),
            expect_master_key_id: "m0".into(),
        }])
        .await;
    assert!(matches!(lost, Err(StoreError::Stale(_))), "{lost:?}");
    s.apply(vec![Change::RewrapTenantKey {
        record: rewrapped.clone(),
        expect_master_key_id: "m1".into(),
    }])
    .await
    .unwrap();
    let got = s.get_tenant_key(&a.tenant_id, 1).await.unwrap().unwrap();
    assert_eq!(
        (got.master_key_id.as_str(), got.wrapped_key.clone()),
        ("m2", vec![9; 48])
    );
    assert_eq!(
        s.get_tenant_key(&b.tenant_id, 1)
            .await
            .unwrap()
            .unwrap()
            .master_key_id,
        "m1",
        "other tenants untouched"
    );

    s.apply(vec![Change::RetireTenantKey {
        tenant_id: a.tenant_id.clone(),
        version: 1,
        at: t(50),
    }])
    .await
    .unwrap();
    assert_eq!(
        s.get_tenant_key(&a.tenant_id, 1)
            .await
            .unwrap()
            .unwrap()
            .retired_at,
        Some(t(50))
    );
    // A key that still encrypts a credential cannot be deleted.
    s.apply(vec![Change::PutCredential(cred(
        &a,
        "gateway_stripe",
        "k1",
        1,
    ))])
    .await
    .unwrap();
    let used = s
        .apply(vec![Change::DeleteTenantKey {
            tenant_id: a.tenant_id.clone(),
            version: 1,
        }])
        .await;
    assert!(
        matches!(&used, Err(StoreError::Conflict(m)) if m.contains("still encrypts")),
        "{used:?}"
    );
    s.apply(vec![Change::DeleteCredential {
        scope: a.clone(),
        integration_id: "gateway_stripe".into(),
    }])
    .await
    .unwrap();
    s.apply(vec![Change::DeleteTenantKey {
        tenant_id: a.tenant_id.clone(),
        version: 1,
    }])
    .await
    .unwrap();
    assert!(s.get_tenant_key(&a.tenant_id, 1).await.unwrap().is_none());
    assert!(s.get_tenant_key(&a.tenant_id, 2).await.unwrap().is_some());
}

async fn credentials_are_reencrypted_by_compare_and_set(f: Fixture) {
    let s = &*f.store;
    let a = tenant(s, "acme").await;
    let b = tenant(s, "globex").await;
    s.apply(vec![
        Change::PutCredential(cred(&a, "gateway_stripe", "k1", 1)),
        Change::PutCredential(cred(&a, "sync_medusa", "k2", 2)),
        Change::PutCredential(cred(&b, "gateway_stripe", "k3", 3)),
    ])
    .await
    .unwrap();
    assert_eq!(
        s.list_credentials_below_version(&a.tenant_id, 2, 100)
            .await
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        s.count_credentials_with_version(&a.tenant_id, 1)
            .await
            .unwrap(),
        2
    );

    s.apply(vec![Change::PutTenantKey(tkey(&a.tenant_id, 2, "m1"))])
        .await
        .unwrap();
    let mut next = cred(&a, "gateway_stripe", "k1b", 7);
    next.key_version = 2;
    let lost = s
        .apply(vec![Change::ReplaceCredential {
            record: next.clone(),
            expect_key_id: "kX".into(),
        }])
        .await;
    assert!(matches!(lost, Err(StoreError::Stale(_))), "{lost:?}");
    s.apply(vec![Change::ReplaceCredential {
        record: next.clone(),
        expect_key_id: "k1".into(),
    }])
    .await
    .unwrap();
    let got = s
        .find_credentials(&a, &["gateway_stripe"])
        .await
        .unwrap()
        .remove(0);
    assert_eq!(
        (got.key_id.as_str(), got.key_version, got.ciphertext.clone()),
        ("k1b", 2, vec![7; 48])
    );
    assert_eq!(got.created_at, t(5), "creation time is kept");
    let left = s
        .list_credentials_below_version(&a.tenant_id, 2, 100)
        .await
        .unwrap();
    assert_eq!(
        left.iter()
            .map(|c| c.integration_id.as_str())
            .collect::<Vec<_>>(),
        ["sync_medusa"]
    );
    assert_eq!(
        s.count_credentials_with_version(&a.tenant_id, 2)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        s.count_credentials_with_version(&b.tenant_id, 1)
            .await
            .unwrap(),
        1,
        "other tenants untouched"
    );
}

async fn principals_are_granted_revoked_and_scoped(f: Fixture) {
    let s = &*f.store;
    let a = tenant(s, "acme").await;
    let b = tenant(s, "globex").await;
    let p = PrincipalRecord {
        scope: a.clone(),
        integration_id: "gateway_stripe".into(),
        principal_id: "integration:p1".into(),
        key_id: "pk1".into(),
        action_keys: vec!["create_session".into(), "refund".into()],
        created_at: t(1),
        revoked_at: None,
    };
    s.apply(vec![Change::PutPrincipal(p.clone())])
        .await
        .unwrap();
    assert_eq!(
        s.get_principal(&a, "gateway_stripe").await.unwrap(),
        Some(p.clone())
    );
    assert!(
        s.get_principal(&b, "gateway_stripe")
            .await
            .unwrap()
            .is_none()
    );
    s.apply(vec![Change::RevokePrincipal {
        scope: a.clone(),
        integration_id: "gateway_stripe".into(),
        at: t(2),
    }])
    .await
    .unwrap();
    assert_eq!(
        s.get_principal(&a, "gateway_stripe")
            .await
            .unwrap()
            .unwrap()
            .revoked_at,
        Some(t(2))
    );
    let renewed = PrincipalRecord {
        principal_id: "integration:p2".into(),
        key_id: "pk2".into(),
        created_at: t(3),
        ..p
    };
    s.apply(vec![Change::PutPrincipal(renewed.clone())])
        .await
        .unwrap();
    assert_eq!(s.list_principals(&a).await.unwrap(), vec![renewed]);
    assert!(s.list_principals(&b).await.unwrap().is_empty());
}

async fn tenant_settings_are_upserted(f: Fixture) {
    let s = &*f.store;
    let a = tenant(s, "acme").await;
    assert!(s.get_tenant_settings(&a.tenant_id).await.unwrap().is_none());
    let mut settings = TenantSettings {
        tenant_id: a.tenant_id.clone(),
        log_retention_days: 30,
        error_log_retention_days: 90,
        updated_at: t(1),
    };
    s.apply(vec![Change::PutTenantSettings(settings.clone())])
        .await
        .unwrap();
    settings.log_retention_days = 7;
    s.apply(vec![Change::PutTenantSettings(settings.clone())])
        .await
        .unwrap();
    assert_eq!(
        s.get_tenant_settings(&a.tenant_id).await.unwrap(),
        Some(settings)
    );
}

fn user(id: &str, email: &str, scope: Option<&Scope>) -> UserRecord {
    UserRecord {
        id: id.into(),
        email: email.into(),
        name: id.to_uppercase(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        scope: scope.cloned(),
        features: vec!["integrations.view".into()],
        created_at: t(1),
        disabled_at: None,
        last_sign_in_at: None,
    }
}

fn session(hash: u8, user_id: &str, scope: Option<&Scope>) -> SessionRecord {
    SessionRecord {
        id_hash: vec![hash; 32],
        user_id: user_id.into(),
        csrf_token: format!("csrf{hash}"),
        scope: scope.cloned(),
        created_at: t(1),
        last_seen_at: t(1),
        expires_at: t(1_000),
    }
}

async fn users_are_unique_by_email_and_disabling_ends_their_sessions(f: Fixture) {
    let s = &*f.store;
    let a = tenant(s, "acme").await;
    let b = tenant(s, "globex").await;
    s.apply(vec![
        Change::CreateUser(user("u_admin", "admin@example.com", None)),
        Change::CreateUser(user("u_a", "ops@acme.example", Some(&a))),
        Change::CreateUser(user("u_b", "ops@globex.example", Some(&b))),
    ])
    .await
    .unwrap();
    let dup = s
        .apply(vec![Change::CreateUser(user(
            "u_x",
            "ops@acme.example",
            None,
        ))])
        .await;
    assert!(
        matches!(&dup, Err(StoreError::Conflict(m)) if m.contains("ops@acme.example")),
        "{dup:?}"
    );
    assert_eq!(
        s.find_user_by_email("ops@acme.example")
            .await
            .unwrap()
            .unwrap(),
        user("u_a", "ops@acme.example", Some(&a))
    );
    assert!(
        s.find_user_by_email("nobody@example.com")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(s.get_user("u_admin").await.unwrap().unwrap().scope, None);
    assert_eq!(s.list_users(Some(&a.tenant_id)).await.unwrap().len(), 1);
    assert_eq!(s.list_users(None).await.unwrap().len(), 3);
    s.touch_user_sign_in("u_a", t(77)).await.unwrap();
    assert_eq!(
        s.get_user("u_a").await.unwrap().unwrap().last_sign_in_at,
        Some(t(77))
    );

    s.apply(vec![
        Change::CreateSession(session(1, "u_a", Some(&a))),
        Change::CreateSession(session(2, "u_a", Some(&a))),
        Change::CreateSession(session(3, "u_b", Some(&b))),
    ])
    .await
    .unwrap();
    s.apply(vec![Change::DisableUser {
        id: "u_a".into(),
        at: t(80),
    }])
    .await
    .unwrap();
    assert_eq!(
        s.get_user("u_a").await.unwrap().unwrap().disabled_at,
        Some(t(80))
    );
    assert!(
        s.find_session(&[1; 32]).await.unwrap().is_none(),
        "the disabled user's sessions end"
    );
    assert!(s.find_session(&[2; 32]).await.unwrap().is_none());
    assert!(
        s.find_session(&[3; 32]).await.unwrap().is_some(),
        "other users keep theirs"
    );
    let again = s
        .apply(vec![Change::DisableUser {
            id: "u_a".into(),
            at: t(81),
        }])
        .await;
    assert!(matches!(again, Err(StoreError::NotFound(_))), "{again:?}");
}

async fn sessions_are_found_by_hash_moved_and_expired(f: Fixture) {
    let s = &*f.store;
    let a = tenant(s, "acme").await;
    let b = tenant(s, "globex").await;
    s.apply(vec![Change::CreateUser(user(
        "u_admin",
        "admin@example.com",
        None,
    ))])
    .await
    .unwrap();
    s.apply(vec![
        Change::CreateSession(session(1, "u_admin", None)),
        Change::CreateSession(session(2, "u_admin", None)),
    ])
    .await
    .unwrap();
    assert_eq!(
        s.find_session(&[1; 32]).await.unwrap().unwrap(),
        session(1, "u_admin", None)
    );
    assert!(s.find_session(&[9; 32]).await.unwrap().is_none());
    // A platform user switches between tenants.
    s.apply(vec![Change::SetSessionScope {
        id_hash: vec![1; 32],
        scope: Some(a.clone()),
    }])
    .await
    .unwrap();
    assert_eq!(
        s.find_session(&[1; 32]).await.unwrap().unwrap().scope,
        Some(a)
    );
    s.apply(vec![Change::SetSessionScope {
        id_hash: vec![1; 32],
        scope: Some(b.clone()),
    }])
    .await
    .unwrap();
    assert_eq!(
        s.find_session(&[1; 32]).await.unwrap().unwrap().scope,
        Some(b)
    );
    s.touch_session(&[1; 32], t(500), t(5_000)).await.unwrap();
    let moved = s.find_session(&[1; 32]).await.unwrap().unwrap();
    assert_eq!((moved.last_seen_at, moved.expires_at), (t(500), t(5_000)));
    assert_eq!(
        s.delete_expired_sessions(t(2_000)).await.unwrap(),
        1,
        "session 2 expired at t(1000)"
    );
    assert!(s.find_session(&[2; 32]).await.unwrap().is_none());
    s.apply(vec![Change::DeleteSession {
        id_hash: vec![1; 32],
    }])
    .await
    .unwrap();
    assert!(s.find_session(&[1; 32]).await.unwrap().is_none());
}

async fn failing_connections_are_counted_across_tenants(f: Fixture) {
    let s = &*f.store;
    let a = tenant(s, "acme").await;
    let b = tenant(s, "globex").await;
    let mut entries = Vec::new();
    for n in 0..5 {
        entries.push(log(&a, 0, LogLevel::Error, "x"));
        entries.last_mut().unwrap().created_at = t(100 + n);
    }
    let mut b_err = log(&b, 1, LogLevel::Error, "x");
    b_err.created_at = t(200);
    let mut old = log(&b, 1, LogLevel::Error, "x");
    old.created_at = t(1);
    let mut info = log(&a, 1, LogLevel::Info, "x");
    info.created_at = t(300);
    entries.extend([b_err, old, info]);
    s.append_logs(entries).await.unwrap();
    let failing = s.list_failing(t(50), 10).await.unwrap();
    assert_eq!(failing.len(), 2);
    assert_eq!(
        (
            failing[0].scope.clone(),
            failing[0].integration_id.as_str(),
            failing[0].errors,
            failing[0].last_error_at
        ),
        (a, "gateway_stripe", 5, t(104))
    );
    assert_eq!(
        (
            failing[1].scope.clone(),
            failing[1].integration_id.as_str(),
            failing[1].errors
        ),
        (b, "sync_medusa_products", 1)
    );
}

async fn log_pages_can_be_numbered(f: Fixture) {
    let s = &*f.store;
    let a = tenant(s, "acme").await;
    s.append_logs((0..30).map(|n| log(&a, n, LogLevel::Info, "x")).collect())
        .await
        .unwrap();
    let third = s
        .query_logs(
            &a,
            &LogQuery {
                limit: 10,
                offset: Some(20),
                ..LogQuery::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(third.total, 30);
    assert_eq!(
        third
            .items
            .iter()
            .map(|e| e.entry.duration_ms.unwrap())
            .collect::<Vec<_>>(),
        (0..10).rev().collect::<Vec<_>>()
    );
    let beyond = s
        .query_logs(
            &a,
            &LogQuery {
                limit: 10,
                offset: Some(30),
                ..LogQuery::default()
            },
        )
        .await
        .unwrap();
    assert!(beyond.items.is_empty());
}

// ---- the job queue ----

fn job(queue: &str, scope: Option<&Scope>, n: i64) -> NewJob {
    NewJob {
        queue: queue.into(),
        kind: "noop".into(),
        scope: scope.cloned(),
        payload: format!(r#"{{"n":{n}}}"#),
        unique_key: None,
        run_at: t(0),
        max_attempts: 3,
        created_at: t(0),
    }
}

fn n_of(j: &JobRecord) -> i64 {
    let v: serde_json::Value = serde_json::from_str(&j.payload).unwrap();
    v["n"].as_i64().unwrap()
}

async fn jobs_are_claimed_in_fair_order_with_leases(f: Fixture) {
    let s = &*f.store;
    let a = tenant(s, "acme").await;
    let b = tenant(s, "globex").await;
    // Tenant A floods the queue, then B enqueues two.
    s.enqueue_jobs((1..=6).map(|n| job("q", Some(&a), n)).collect())
        .await
        .unwrap();
    s.enqueue_jobs(vec![job("q", Some(&b), 101), job("q", Some(&b), 102)])
        .await
        .unwrap();
    // Platform work, another queue, and a job not due yet.
    s.enqueue_jobs(vec![job("other", None, 900)]).await.unwrap();
    let mut later = job("q", Some(&b), 103);
    later.run_at = t(1_000);
    s.enqueue_jobs(vec![later]).await.unwrap();

    let got = s
        .claim_jobs("q", "w1", t(10), t(30_000_000), 4)
        .await
        .unwrap();
    let order: Vec<i64> = got.iter().map(n_of).collect();
    assert_eq!(order, [1, 101, 2, 102], "lanes take turns");
    for j in &got {
        assert_eq!(j.status, JobStatus::Running);
        assert_eq!(j.attempts, 1);
        assert_eq!(j.lease_owner.as_deref(), Some("w1"));
        assert_eq!(j.lease_expires_at, Some(t(30_000_000)));
        assert_eq!(j.started_at, Some(t(10)));
        let attempts = s.list_attempts(j.id).await.unwrap();
        assert_eq!(attempts.len(), 1);
        assert_eq!(
            (
                attempts[0].attempt,
                attempts[0].worker.as_str(),
                attempts[0].outcome
            ),
            (1, "w1", None)
        );
    }
    // The rest of A's backlog comes next; B's later job only when due.
    let rest: Vec<i64> = s
        .claim_jobs("q", "w1", t(10), t(30_000_000), 10)
        .await
        .unwrap()
        .iter()
        .map(n_of)
        .collect();
    assert_eq!(rest, [3, 4, 5, 6]);
    let due: Vec<i64> = s
        .claim_jobs("q", "w1", t(2_000), t(30_000_000), 10)
        .await
        .unwrap()
        .iter()
        .map(n_of)
        .collect();
    assert_eq!(due, [103]);
    let other = s
        .claim_jobs("other", "w2", t(10), t(30_000_000), 10)
        .await
        .unwrap();
    assert_eq!(other.len(), 1);
    assert_eq!(other[0].scope, None);
    assert!(
        s.claim_jobs("q", "w1", t(3_000), t(30_000_000), 10)
            .await
            .unwrap()
            .is_empty()
    );
    // A tenant arriving while another's backlog waits is served next.
    s.enqueue_jobs((7..=9).map(|n| job("q", Some(&a), n)).collect())
        .await
        .unwrap();
    s.enqueue_jobs(vec![job("q", Some(&b), 104)]).await.unwrap();
    let next: Vec<i64> = s
        .claim_jobs("q", "w1", t(3_000), t(30_000_000), 2)
        .await
        .unwrap()
        .iter()
        .map(n_of)
        .collect();
    assert_eq!(next, [7, 104]);
}

async fn unique_jobs_are_deduplicated_while_active(f: Fixture) {
    let s = &*f.store;
    let a = tenant(s, "acme").await;
    let unique = |n| {
        let mut j = job("health", Some(&a), n);
        j.unique_key = Some("health:acme:stripe".into());
        j
    };
    let first = s.enqueue_jobs(vec![unique(1)]).await.unwrap()[0];
    assert!(matches!(first, Enqueued::Created(_)));
    let again = s
        .enqueue_jobs(vec![unique(2), job("health", Some(&a), 3)])
        .await
        .unwrap();
    assert_eq!(again[0], Enqueued::Existing(first.id()));
    assert!(matches!(again[1], Enqueued::Created(id) if id != first.id()));
    // Still one while it runs.
    let claimed = s
        .claim_jobs("health", "w", t(1), t(1_000_000), 1)
        .await
        .unwrap();
    assert_eq!(claimed[0].id, first.id());
    assert_eq!(
        s.enqueue_jobs(vec![unique(4)]).await.unwrap()[0],
        Enqueued::Existing(first.id())
    );
    // Once it has finished, the key is free again.
    let done = s
        .finish_jobs(
            "w",
            t(2),
            vec![Finish {
                id: first.id(),
                attempt: 1,
                outcome: FinishOutcome::Succeeded { result: None },
            }],
        )
        .await
        .unwrap();
    assert_eq!(done, [true]);
    let fresh = s.enqueue_jobs(vec![unique(5)]).await.unwrap()[0];
    assert!(matches!(fresh, Enqueued::Created(id) if id != first.id()));
}

async fn finishing_a_job_needs_its_lease(f: Fixture) {
    let s = &*f.store;
    let a = tenant(s, "acme").await;
    let id = s.enqueue_jobs(vec![job("q", Some(&a), 1)]).await.unwrap()[0].id();
    s.claim_jobs("q", "w1", t(1), t(1_000_000), 1)
        .await
        .unwrap();
    let ok = |attempt| Finish {
        id,
        attempt,
        outcome: FinishOutcome::Succeeded {
            result: Some("{}".into()),
        },
    };
    // Another worker, or a stale attempt number, changes nothing.
    assert_eq!(
        s.finish_jobs("w2", t(2), vec![ok(1)]).await.unwrap(),
        [false]
    );
    assert_eq!(
        s.finish_jobs("w1", t(2), vec![ok(2)]).await.unwrap(),
        [false]
    );
    // A failure with a retry time queues it again for then.
    let retry = Finish {
        id,
        attempt: 1,
        outcome: FinishOutcome::Retry {
            error: "connection refused".into(),
            run_at: t(500),
        },
    };
    assert_eq!(
        s.finish_jobs("w1", t(3), vec![retry]).await.unwrap(),
        [true]
    );
    let j = s.get_job(None, id).await.unwrap().unwrap();
    assert_eq!(
        (
            j.status,
            j.run_at,
            j.last_error.as_deref(),
            j.lease_owner.as_deref()
        ),
        (JobStatus::Queued, t(500), Some("connection refused"), None)
    );
    let att = s.list_attempts(id).await.unwrap();
    assert_eq!(
        (att[0].outcome, att[0].finished_at, att[0].error.as_deref()),
        (
            Some(AttemptOutcome::Failed),
            Some(t(3)),
            Some("connection refused")
        )
    );
    assert!(
        s.claim_jobs("q", "w1", t(499), t(1_000_000), 1)
            .await
            .unwrap()
            .is_empty()
    );
    let again = s
        .claim_jobs("q", "w1", t(500), t(1_000_000), 1)
        .await
        .unwrap();
    assert_eq!(again[0].attempts, 2);
    // Success records the result; the finish of attempt 1 no longer counts.
    assert_eq!(
        s.finish_jobs("w1", t(600), vec![ok(1)]).await.unwrap(),
        [false]
    );
    assert_eq!(
        s.finish_jobs("w1", t(600), vec![ok(2)]).await.unwrap(),
        [true]
    );
    let j = s.get_job(Some(&a), id).await.unwrap().unwrap();
    assert_eq!(
        (j.status, j.result.as_deref(), j.finished_at, j.last_error),
        (JobStatus::Succeeded, Some("{}"), Some(t(600)), None)
    );
    assert_eq!(
        s.list_attempts(id).await.unwrap()[1].outcome,
        Some(AttemptOutcome::Succeeded)
    );
    // A permanent failure makes it dead at once.
    let id2 = s.enqueue_jobs(vec![job("q", Some(&a), 2)]).await.unwrap()[0].id();
    s.claim_jobs("q", "w1", t(700), t(1_000_000), 1)
        .await
        .unwrap();
    let dead = Finish {
        id: id2,
        attempt: 1,
        outcome: FinishOutcome::Dead {
            error: "unknown integration".into(),
        },
    };
    assert_eq!(
        s.finish_jobs("w1", t(701), vec![dead]).await.unwrap(),
        [true]
    );
    let j = s.get_job(None, id2).await.unwrap().unwrap();
    assert_eq!((j.status, j.finished_at), (JobStatus::Dead, Some(t(701))));
    // Another tenant's scope does not find the job.
    let b = tenant(s, "globex").await;
    assert!(s.get_job(Some(&b), id2).await.unwrap().is_none());
}

async fn expired_leases_are_requeued_or_dead_and_renewals_keep_them(f: Fixture) {
    let s = &*f.store;
    let a = tenant(s, "acme").await;
    let mut once = job("q", Some(&a), 2);
    once.max_attempts = 1;
    let ids: Vec<i64> = s
        .enqueue_jobs(vec![job("q", Some(&a), 1), once, job("q", Some(&a), 3)])
        .await
        .unwrap()
        .iter()
        .map(|e| e.id())
        .collect();
    s.claim_jobs("q", "dead-worker", t(1), t(100), 2)
        .await
        .unwrap();
    s.claim_jobs("q", "live-worker", t(1), t(100), 1)
        .await
        .unwrap();
    assert!(
        s.expire_leases(t(50)).await.unwrap().is_empty(),
        "leases still valid"
    );
    // The live worker renews; the other does not.
    assert_eq!(
        s.renew_leases("live-worker", t(1_000)).await.unwrap(),
        [ids[2]]
    );
    assert!(s.renew_leases("nobody", t(1_000)).await.unwrap().is_empty());
    let mut expired = s.expire_leases(t(101)).await.unwrap();
    expired.sort_by_key(|e| e.id);
    assert_eq!(
        expired
            .iter()
            .map(|e| (e.id, e.worker.as_str(), e.status))
            .collect::<Vec<_>>(),
        [
            (ids[0], "dead-worker", JobStatus::Queued),
            (ids[1], "dead-worker", JobStatus::Dead)
        ]
    );
    let lost = s.list_attempts(ids[0]).await.unwrap();
    assert_eq!(lost[0].outcome, Some(AttemptOutcome::Lost));
    assert_eq!(lost[0].lease_expires_at, t(100));
    assert!(
        s.get_job(None, ids[1])
            .await
            .unwrap()
            .unwrap()
            .finished_at
            .is_some()
    );
    // The renewed attempt carries its new lease; a late finish by the dead worker is refused.
    assert_eq!(
        s.list_attempts(ids[2]).await.unwrap()[0].lease_expires_at,
        t(1_000)
    );
    let late = Finish {
        id: ids[0],
        attempt: 1,
        outcome: FinishOutcome::Succeeded { result: None },
    };
    assert_eq!(
        s.finish_jobs("dead-worker", t(102), vec![late])
            .await
            .unwrap(),
        [false]
    );
    // It is claimed again as attempt 2.
    let again = s
        .claim_jobs("q", "live-worker", t(102), t(1_000), 5)
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].id, again[0].attempts), (ids[0], 2));
}

async fn released_jobs_cost_no_attempt(f: Fixture) {
    let s = &*f.store;
    let a = tenant(s, "acme").await;
    let id = s.enqueue_jobs(vec![job("q", Some(&a), 1)]).await.unwrap()[0].id();
    s.claim_jobs("q", "w1", t(1), t(100), 1).await.unwrap();
    assert_eq!(s.release_jobs("w2", &[id], t(2)).await.unwrap(), 0);
    assert_eq!(s.release_jobs("w1", &[id], t(2)).await.unwrap(), 1);
    let j = s.get_job(None, id).await.unwrap().unwrap();
    assert_eq!(
        (j.status, j.attempts, j.max_attempts),
        (JobStatus::Queued, 1, 4)
    );
    assert_eq!(
        s.list_attempts(id).await.unwrap()[0].outcome,
        Some(AttemptOutcome::Released)
    );
    let again = s.claim_jobs("q", "w2", t(3), t(100), 1).await.unwrap();
    assert_eq!(again[0].attempts, 2);
    assert_eq!(s.list_attempts(id).await.unwrap().len(), 2);
}

async fn dead_jobs_are_retried_and_queued_ones_cancelled(f: Fixture) {
    let s = &*f.store;
    let a = tenant(s, "acme").await;
    let b = tenant(s, "globex").await;
    let mut unique = job("q", Some(&a), 1);
    unique.unique_key = Some("k".into());
    unique.max_attempts = 1;
    let id = s.enqueue_jobs(vec![unique.clone()]).await.unwrap()[0].id();
    s.claim_jobs("q", "w", t(1), t(100), 1).await.unwrap();
    let dead = Finish {
        id,
        attempt: 1,
        outcome: FinishOutcome::Retry {
            error: "boom".into(),
            run_at: t(2),
        },
    };
    // With no attempts left a retry request still finishes the attempt; the
    // worker decides dead vs retry, the store records what it is told.
    s.finish_jobs("w", t(2), vec![dead]).await.unwrap();
    s.claim_jobs("q", "w", t(3), t(100), 1).await.unwrap();
    let dead = Finish {
        id,
        attempt: 2,
        outcome: FinishOutcome::Dead {
            error: "boom".into(),
        },
    };
    assert_eq!(s.finish_jobs("w", t(4), vec![dead]).await.unwrap(), [true]);
    // Only a dead job of the caller's scope can be retried.
    assert!(!s.retry_job(Some(&b), id, 3, t(5)).await.unwrap());
    // While another job holds its unique key, a retry is a conflict.
    let holder = s.enqueue_jobs(vec![unique.clone()]).await.unwrap()[0];
    assert!(matches!(holder, Enqueued::Created(_)));
    let err = s.retry_job(Some(&a), id, 3, t(5)).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    assert!(!s.cancel_job(Some(&b), holder.id(), t(6)).await.unwrap());
    assert!(s.cancel_job(Some(&a), holder.id(), t(6)).await.unwrap());
    let c = s.get_job(None, holder.id()).await.unwrap().unwrap();
    assert_eq!(
        (c.status, c.finished_at),
        (JobStatus::Cancelled, Some(t(6)))
    );
    assert!(
        !s.cancel_job(None, holder.id(), t(7)).await.unwrap(),
        "only queued jobs"
    );
    // Now the retry goes through, with three more attempts.
    assert!(s.retry_job(Some(&a), id, 3, t(8)).await.unwrap());
    let j = s.get_job(None, id).await.unwrap().unwrap();
    assert_eq!(
        (
            j.status,
            j.attempts,
            j.max_attempts,
            j.run_at,
            j.finished_at
        ),
        (JobStatus::Queued, 2, 5, t(8), None)
    );
    assert!(
        !s.retry_job(None, id, 3, t(9)).await.unwrap(),
        "not dead any more"
    );
    let claimed = s.claim_jobs("q", "w", t(9), t(100), 1).await.unwrap();
    assert_eq!(claimed[0].attempts, 3);
}

async fn jobs_are_listed_counted_and_pruned(f: Fixture) {
    let s = &*f.store;
    let a = tenant(s, "acme").await;
    let b = tenant(s, "globex").await;
    let mut jobs: Vec<NewJob> = (1..=5).map(|n| job("q", Some(&a), n)).collect();
    jobs.push(job("q2", Some(&b), 6));
    let mut platform = job("maintenance", None, 7);
    platform.kind = "logs.prune".into();
    jobs.push(platform);
    let ids: Vec<i64> = s
        .enqueue_jobs(jobs)
        .await
        .unwrap()
        .iter()
        .map(|e| e.id())
        .collect();
    let page = s
        .list_jobs(&JobQuery {
            scope: Some(a.clone()),
            limit: 2,
            ..JobQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(page.total, 5);
    assert_eq!(
        page.items.iter().map(|j| j.id).collect::<Vec<_>>(),
        [ids[4], ids[3]],
        "newest first"
    );
    let next = s
        .list_jobs(&JobQuery {
            scope: Some(a.clone()),
            before_id: Some(ids[3]),
            limit: 10,
            ..JobQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(next.items.len(), 3);
    let all = s
        .list_jobs(&JobQuery {
            limit: 100,
            ..JobQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(all.total, 7);
    let platform_only = s
        .list_jobs(&JobQuery {
            tenant: Some(None),
            limit: 100,
            ..JobQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(platform_only.items.len(), 1);
    assert_eq!(platform_only.items[0].kind, "logs.prune");
    let of_b = s
        .list_jobs(&JobQuery {
            tenant: Some(Some(b.tenant_id.clone())),
            limit: 100,
            ..JobQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(of_b.total, 1);
    assert_eq!(
        s.count_tenant_jobs(Some(&b.tenant_id)).await.unwrap(),
        [(JobStatus::Queued, 1)]
    );
    assert_eq!(
        s.count_tenant_jobs(None).await.unwrap(),
        [(JobStatus::Queued, 1)]
    );
    // Finish some: two succeed (one long ago), one dies.
    let claimed = s.claim_jobs("q", "w", t(1), t(100), 3).await.unwrap();
    let fin = |j: &JobRecord, outcome| Finish {
        id: j.id,
        attempt: 1,
        outcome,
    };
    s.finish_jobs(
        "w",
        t(10),
        vec![fin(&claimed[0], FinishOutcome::Succeeded { result: None })],
    )
    .await
    .unwrap();
    s.finish_jobs(
        "w",
        t(1_000),
        vec![
            fin(&claimed[1], FinishOutcome::Succeeded { result: None }),
            fin(&claimed[2], FinishOutcome::Dead { error: "x".into() }),
        ],
    )
    .await
    .unwrap();
    let by_status = |st| JobQuery {
        scope: Some(a.clone()),
        status: Some(st),
        limit: 100,
        ..JobQuery::default()
    };
    assert_eq!(
        s.list_jobs(&by_status(JobStatus::Succeeded))
            .await
            .unwrap()
            .total,
        2
    );
    assert_eq!(
        s.list_jobs(&by_status(JobStatus::Dead))
            .await
            .unwrap()
            .total,
        1
    );
    let kind = s
        .list_jobs(&JobQuery {
            kind: Some("logs.prune".into()),
            queue: Some("maintenance".into()),
            limit: 10,
            ..JobQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(kind.total, 1);
    let mut counts = s.count_jobs(Some(&a)).await.unwrap();
    counts.sort_by_key(|(st, _)| st.as_str());
    assert_eq!(
        counts,
        [
            (JobStatus::Dead, 1),
            (JobStatus::Queued, 2),
            (JobStatus::Succeeded, 2)
        ]
    );
    let of_a = JobQuery {
        scope: Some(a.clone()),
        status: Some(JobStatus::Dead),
        ..JobQuery::default()
    };
    let mut upto = s.count_jobs_upto(&of_a, 100).await.unwrap();
    upto.sort_by_key(|(st, _)| st.as_str());
    assert_eq!(upto, counts, "every status, whatever the query's own");
    let mut capped = s.count_jobs_upto(&of_a, 1).await.unwrap();
    capped.sort_by_key(|(st, _)| st.as_str());
    assert_eq!(
        capped,
        [
            (JobStatus::Dead, 1),
            (JobStatus::Queued, 1),
            (JobStatus::Succeeded, 1)
        ]
    );
    // Pruning: succeeded before t(500) go; the dead one is kept longer.
    assert_eq!(s.prune_jobs(t(500), t(500)).await.unwrap(), 1);
    assert!(s.get_job(None, claimed[0].id).await.unwrap().is_none());
    assert!(s.list_attempts(claimed[0].id).await.unwrap().is_empty());
    assert_eq!(s.prune_jobs(t(2_000), t(500)).await.unwrap(), 1);
    assert_eq!(s.prune_jobs(t(2_000), t(2_000)).await.unwrap(), 1);
    assert_eq!(
        s.list_jobs(&JobQuery {
            limit: 100,
            ..JobQuery::default()
        })
        .await
        .unwrap()
        .total,
        4
    );
}

async fn schedules_fire_once_per_period(f: Fixture) {
    let s = &*f.store;
    let rec = ScheduleRecord {
        name: "logs.prune".into(),
        schedule: "every 1h".into(),
        queue: "maintenance".into(),
        kind: "logs.prune".into(),
        payload: "{}".into(),
        enabled: true,
        next_run_at: t(100),
        last_run_at: None,
        last_job_id: None,
        updated_at: t(0),
    };
    assert!(s.ensure_schedule(rec.clone()).await.unwrap());
    let mut changed = rec.clone();
    changed.schedule = "every 2h".into();
    assert!(
        !s.ensure_schedule(changed).await.unwrap(),
        "an existing schedule is kept"
    );
    let mut new_job = job("maintenance", None, 1);
    new_job.kind = "logs.prune".into();
    new_job.created_at = t(101);
    // Several processes race for the same period: exactly one wins.
    let store = f.store.clone();
    let racers: Vec<_> = (0..6)
        .map(|_| {
            let store = store.clone();
            let j = new_job.clone();
            tokio::spawn(async move { store.fire_schedule("logs.prune", t(100), t(200), j).await })
        })
        .collect();
    let mut won = Vec::new();
    for r in racers {
        if let Some(id) = r.await.unwrap().unwrap() {
            won.push(id);
        }
    }
    assert_eq!(won.len(), 1, "one run per period");
    let list = s.list_schedules().await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(
        (
            list[0].next_run_at,
            list[0].last_run_at,
            list[0].last_job_id,
            list[0].schedule.as_str()
        ),
        (t(200), Some(t(101)), Some(won[0]), "every 1h")
    );
    let j = s.get_job(None, won[0]).await.unwrap().unwrap();
    assert_eq!(
        (j.kind.as_str(), j.queue.as_str()),
        ("logs.prune", "maintenance")
    );
    // Disabled schedules do not fire; updates move the next run.
    assert!(
        s.update_schedule("logs.prune", "every 2h", false, t(300), t(150))
            .await
            .unwrap()
    );
    assert!(
        !s.update_schedule("nope", "every 2h", false, t(300), t(150))
            .await
            .unwrap()
    );
    assert_eq!(
        s.fire_schedule("logs.prune", t(300), t(400), new_job.clone())
            .await
            .unwrap(),
        None
    );
    assert!(
        s.update_schedule("logs.prune", "every 2h", true, t(300), t(150))
            .await
            .unwrap()
    );
    assert!(
        s.fire_schedule("logs.prune", t(300), t(400), new_job)
            .await
            .unwrap()
            .is_some()
    );
}

async fn concurrent_claims_never_take_a_job_twice(f: Fixture) {
    let a = tenant(&*f.store, "acme").await;
    let total = 300;
    f.store
        .enqueue_jobs((0..total).map(|n| job("q", Some(&a), n)).collect())
        .await
        .unwrap();
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let store = f.store.clone();
            tokio::spawn(async move {
                let name = format!("w{w}");
                let mut mine = Vec::new();
                loop {
                    let got = store
                        .claim_jobs("q", &name, t(1), t(1_000_000), 7)
                        .await
                        .unwrap();
                    if got.is_empty() {
                        return mine;
                    }
                    let finishes = got
                        .iter()
                        .map(|j| Finish {
                            id: j.id,
                            attempt: j.attempts,
                            outcome: FinishOutcome::Succeeded { result: None },
                        })
                        .collect();
                    let done = store.finish_jobs(&name, t(2), finishes).await.unwrap();
                    assert!(done.iter().all(|d| *d));
                    mine.extend(got.iter().map(|j| j.id));
                }
            })
        })
        .collect();
    let mut seen = Vec::new();
    for w in workers {
        seen.extend(w.await.unwrap());
    }
    seen.sort_unstable();
    let before = seen.len();
    seen.dedup();
    assert_eq!(before, seen.len(), "a job was claimed twice");
    assert_eq!(seen.len(), usize::try_from(total).unwrap());
}

async fn enqueues_wake_workers_across_processes(f: Fixture) {
    let a = tenant(&*f.store, "acme").await;
    let mut rx = f.store.job_wakeups();
    rx.borrow_and_update();
    f.store
        .enqueue_jobs(vec![job("q", Some(&a), 1)])
        .await
        .unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(5), rx.changed())
        .await
        .expect("woken by an enqueue")
        .unwrap();
    if f.store.backend() == Backend::Postgres {
        // Another process (another store on the same database) enqueues.
        // The listener may still be subscribing: enqueue until a wake-up comes.
        let other = connect(&f.config).await.unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            rx.borrow_and_update();
            other
                .enqueue_jobs(vec![job("q", Some(&a), 2)])
                .await
                .unwrap();
            let woke = tokio::time::timeout(std::time::Duration::from_millis(500), rx.changed());
            if woke.await.is_ok() {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no wake-up through LISTEN/NOTIFY"
            );
        }
    }
}

const HOUR: i64 = usage::HOUR_MICROS;

fn counts(calls: i64, errors: i64, duration_ms: i64, input: i64, output: i64) -> UsageCounts {
    UsageCounts {
        calls,
        errors,
        duration_ms,
        input_bytes: input,
        output_bytes: output,
    }
}

fn usage_row(scope: &Scope, integration: &str, at: Timestamp, c: UsageCounts) -> UsageRecord {
    UsageRecord {
        scope: scope.clone(),
        integration_id: integration.into(),
        hour: at,
        counts: c,
    }
}

/// Every hour of `scope` in `[from, until)`, as (integration, hour index from `t(0)`'s hour, counts).
async fn usage_of(
    s: &dyn Store,
    scope: &Scope,
    integration: Option<&str>,
    from: Timestamp,
    until: Timestamp,
) -> Vec<(String, i64, UsageCounts)> {
    let base = usage::hour_of(t(0)).as_micros();
    s.query_usage(
        scope,
        &UsageQuery {
            integration_id: integration.map(str::to_owned),
            from,
            until,
        },
    )
    .await
    .unwrap()
    .into_iter()
    .map(|r| {
        assert_eq!(&r.scope, scope);
        assert_eq!(r.hour, usage::hour_of(r.hour), "rows are whole hours");
        (
            r.integration_id,
            (r.hour.as_micros() - base) / HOUR,
            r.counts,
        )
    })
    .collect()
}

async fn usage_is_added_per_hour_and_read_within_scope(f: Fixture) {
    let s = &*f.store;
    let a = tenant(s, "acme").await;
    let b = tenant(s, "globex").await;
    let h0 = usage::hour_of(t(0));
    let at = |hour: i64, minute: i64| {
        Timestamp::from_micros(h0.as_micros() + hour * HOUR + minute * 60_000_000)
    };
    // One batch: two records for the same hour are merged; a later minute of
    // the same hour lands in the same row.
    s.add_usage(
        vec![
            usage_row(&a, "storage_local", at(0, 1), counts(2, 1, 30, 100, 1000)),
            usage_row(&a, "storage_local", at(0, 59), counts(1, 0, 5, 10, 20)),
            usage_row(&a, "gateway_stripe", at(0, 2), counts(4, 4, 400, 40, 0)),
            usage_row(&a, "storage_local", at(1, 0), counts(1, 0, 7, 1, 2)),
            usage_row(&b, "storage_local", at(0, 3), counts(9, 9, 9, 9, 9)),
        ],
        t(10),
    )
    .await
    .unwrap();
    // A later batch adds to the stored counters.
    s.add_usage(
        vec![usage_row(
            &a,
            "storage_local",
            at(0, 30),
            counts(3, 2, 100, 1, 1),
        )],
        t(20),
    )
    .await
    .unwrap();
    s.add_usage(Vec::new(), t(30)).await.unwrap();

    let all = usage_of(s, &a, None, at(0, 0), at(24, 0)).await;
    assert_eq!(
        all,
        vec![
            ("gateway_stripe".to_owned(), 0, counts(4, 4, 400, 40, 0)),
            ("storage_local".to_owned(), 0, counts(6, 3, 135, 111, 1021)),
            ("storage_local".to_owned(), 1, counts(1, 0, 7, 1, 2)),
        ],
        "oldest hour first, then by integration"
    );
    // One integration.
    assert_eq!(
        usage_of(s, &a, Some("gateway_stripe"), at(0, 0), at(24, 0)).await,
        vec![("gateway_stripe".to_owned(), 0, counts(4, 4, 400, 40, 0))]
    );
    // The range is [from, until) over hour starts: `from` inside hour 0
    // leaves hour 0 out; `until` at hour 1's start leaves hour 1 out.
    assert_eq!(
        usage_of(s, &a, Some("storage_local"), at(0, 1), at(24, 0)).await,
        vec![("storage_local".to_owned(), 1, counts(1, 0, 7, 1, 2))]
    );
    assert_eq!(
        usage_of(s, &a, Some("storage_local"), at(0, 0), at(1, 0)).await,
        vec![("storage_local".to_owned(), 0, counts(6, 3, 135, 111, 1021))]
    );
    // Another tenant sees only its own row; an organization of the same
    // tenant sees nothing of the other's.
    assert_eq!(
        usage_of(s, &b, None, at(0, 0), at(24, 0)).await,
        vec![("storage_local".to_owned(), 0, counts(9, 9, 9, 9, 9))]
    );
    let a_other = Scope::new(a.tenant_id.as_str(), "org_other");
    assert!(
        usage_of(s, &a_other, None, at(0, 0), at(24, 0))
            .await
            .is_empty()
    );

    // Pruning removes hours before the cutoff, across every scope.
    assert_eq!(s.prune_usage(at(1, 0)).await.unwrap(), 3);
    assert_eq!(
        usage_of(s, &a, None, at(0, 0), at(24, 0)).await,
        vec![("storage_local".to_owned(), 1, counts(1, 0, 7, 1, 2))]
    );
    assert!(usage_of(s, &b, None, at(0, 0), at(24, 0)).await.is_empty());
    assert_eq!(s.prune_usage(at(1, 0)).await.unwrap(), 0);
}

async fn concurrent_usage_batches_add_up_across_processes(f: Fixture) {
    let a = tenant(&*f.store, "acme").await;
    let b = tenant(&*f.store, "globex").await;
    let h0 = usage::hour_of(t(0));
    // On PostgreSQL, every writer is its own store (another process); on
    // SQLite one server owns the file, so the writers share the store.
    let mut stores = vec![f.store.clone()];
    if f.store.backend() == Backend::Postgres {
        for _ in 0..3 {
            stores.push(connect(&f.config).await.unwrap());
        }
    }
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let store = stores[w % stores.len()].clone();
            let (a, b) = (a.clone(), b.clone());
            tokio::spawn(async move {
                for round in 0..25 {
                    // Overlapping keys, in a different order per writer.
                    let mut batch = Vec::new();
                    for hour in 0..3 {
                        for (scope, integration) in [(&a, "x"), (&a, "y"), (&b, "x")] {
                            batch.push(usage_row(
                                scope,
                                integration,
                                Timestamp::from_micros(h0.as_micros() + hour * HOUR),
                                counts(1, i64::from(round % 2 == 0), 10, 100, 1000),
                            ));
                        }
                    }
                    if w % 2 == 1 {
                        batch.reverse();
                    }
                    store.add_usage(batch, t(round)).await.unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    let until = Timestamp::from_micros(h0.as_micros() + 3 * HOUR);
    for (scope, integrations) in [(&a, vec!["x", "y"]), (&b, vec!["x"])] {
        let rows = usage_of(&*f.store, scope, None, h0, until).await;
        assert_eq!(rows.len(), 3 * integrations.len(), "{rows:?}");
        for (_, _, c) in rows {
            // 8 writers × 25 rounds, 13 of them with an error.
            assert_eq!(c, counts(200, 8 * 13, 2000, 20_000, 200_000));
        }
    }
}

// ---- data sync ----

const SYNC: &str = "sync_files";

fn rec(id: &str, data: &str) -> IncomingRecord {
    IncomingRecord {
        external_id: id.into(),
        data: format!("{{\"v\":\"{data}\"}}"),
        hash: format!("hash-{data}"),
        deleted: false,
    }
}

fn gone(id: &str, data: &str) -> IncomingRecord {
    IncomingRecord {
        deleted: true,
        ..rec(id, data)
    }
}

fn batch(
    scope: &Scope,
    run_id: i64,
    stream: &str,
    from: Option<&str>,
    next: Option<&str>,
    records: Vec<IncomingRecord>,
    now: Timestamp,
) -> SyncBatch {
    SyncBatch {
        scope: scope.clone(),
        run_id,
        integration_id: SYNC.into(),
        stream: stream.into(),
        entity_type: format!("{stream}_entity"),
        from_cursor: from.map(str::to_owned),
        next_cursor: next.map(str::to_owned),
        records,
        failed: 0,
        skipped: 0,
        total: None,
        now,
    }
}

/// Commits a batch of `run` (its scope and stream) that must succeed.
async fn commit(
    s: &dyn Store,
    run: &SyncRunRecord,
    from: Option<&str>,
    next: Option<&str>,
    records: Vec<IncomingRecord>,
    now: Timestamp,
) -> BatchOutcome {
    s.commit_sync_batch(batch(
        &run.scope,
        run.id,
        &run.stream,
        from,
        next,
        records,
        now,
    ))
    .await
    .unwrap()
}

/// Commits a batch that must be refused: the error.
async fn refused(s: &dyn Store, b: SyncBatch) -> StoreError {
    s.commit_sync_batch(b).await.unwrap_err()
}

fn new_run(scope: &Scope, stream: &str) -> NewSyncRun {
    NewSyncRun {
        scope: scope.clone(),
        integration_id: SYNC.into(),
        stream: stream.into(),
        direction: SyncDirection::Import,
    }
}

/// A run of `stream`, created and started.
async fn running(s: &dyn Store, scope: &Scope, stream: &str, at: Timestamp) -> SyncRunRecord {
    let r = s.create_sync_run(new_run(scope, stream), at).await.unwrap();
    s.start_sync_run(scope, r.id, at).await.unwrap().unwrap()
}

async fn records_of(s: &dyn Store, scope: &Scope, stream: &str, after: i64) -> Vec<SyncRecordRow> {
    s.list_sync_records(scope, SYNC, stream, after, 1000)
        .await
        .unwrap()
}

/// (external id, seq, deleted) of each record.
fn shape(rows: &[SyncRecordRow]) -> Vec<(String, i64, bool)> {
    rows.iter()
        .map(|r| (r.external_id.clone(), r.seq, r.deleted))
        .collect()
}

fn sync_counters(
    processed: i64,
    created: i64,
    updated: i64,
    unchanged: i64,
    skipped: i64,
    failed: i64,
) -> SyncCounters {
    SyncCounters {
        processed,
        created,
        updated,
        unchanged,
        skipped,
        failed,
    }
}

async fn sync_runs_have_a_lifecycle_and_one_active_run_per_stream(f: Fixture) {
    let s = &*f.store;
    let a = tenant(s, "acme").await;
    let r1 = s
        .create_sync_run(new_run(&a, "orders"), t(10))
        .await
        .unwrap();
    assert_eq!(
        (r1.status, r1.direction, r1.counters, r1.total, r1.job_id),
        (
            SyncStatus::Queued,
            SyncDirection::Import,
            SyncCounters::default(),
            None,
            None
        )
    );
    assert_eq!(
        (
            r1.scope.clone(),
            r1.integration_id.as_str(),
            r1.stream.as_str()
        ),
        (a.clone(), SYNC, "orders")
    );
    assert_eq!(
        (r1.created_at, r1.updated_at, r1.started_at, r1.finished_at),
        (t(10), t(10), None, None)
    );
    assert!(!r1.cancel_requested && r1.cursor_start.is_none() && r1.cursor_end.is_none());
    assert_eq!(s.get_sync_run(&a, r1.id).await.unwrap().as_ref(), Some(&r1));

    // One active run per stream: a second queued one is refused; another
    // stream, or the same stream of another integration, is not.
    let dup = s.create_sync_run(new_run(&a, "orders"), t(11)).await;
    assert!(
        matches!(&dup, Err(StoreError::Conflict(m)) if m.contains("orders")),
        "{dup:?}"
    );
    let r2 = s
        .create_sync_run(new_run(&a, "customers"), t(12))
        .await
        .unwrap();
    let other = s
        .create_sync_run(
            NewSyncRun {
                integration_id: "other_sync".into(),
                direction: SyncDirection::Export,
                ..new_run(&a, "orders")
            },
            t(13),
        )
        .await
        .unwrap();
    assert_eq!(other.direction, SyncDirection::Export);

    // The job, then the start (no cursor yet), then a resumed start.
    s.set_sync_run_job(&a, r1.id, 42).await.unwrap();
    assert!(matches!(
        s.set_sync_run_job(&a, 999_999, 42).await,
        Err(StoreError::NotFound(_))
    ));
    let started = s.start_sync_run(&a, r1.id, t(20)).await.unwrap().unwrap();
    assert_eq!(
        (
            started.status,
            started.started_at,
            started.cursor_start.clone(),
            started.job_id,
            started.updated_at
        ),
        (SyncStatus::Running, Some(t(20)), None, Some(42), t(20))
    );
    // Still running, still one active run.
    assert!(matches!(
        s.create_sync_run(new_run(&a, "orders"), t(21)).await,
        Err(StoreError::Conflict(_))
    ));
    let out = commit(s, &r1, None, Some("c1"), vec![rec("x", "1")], t(22)).await;
    assert_eq!((out.last_seq, out.cancel_requested), (1, false));
    let resumed = s.start_sync_run(&a, r1.id, t(30)).await.unwrap().unwrap();
    assert_eq!(
        (
            resumed.started_at,
            resumed.cursor_start.clone(),
            resumed.cursor_end.as_deref()
        ),
        (Some(t(20)), None, Some("c1")),
        "a resumed run keeps its start"
    );

    // Counters outside a batch; then a cancel request, which the run sees.
    assert!(
        !s.add_sync_counters(&a, r1.id, sync_counters(3, 0, 0, 0, 1, 2), t(31))
            .await
            .unwrap()
    );
    let asked = s
        .request_sync_cancel(&a, r1.id, t(32))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (asked.status, asked.cancel_requested, asked.finished_at),
        (SyncStatus::Running, true, None)
    );
    assert!(
        s.add_sync_counters(&a, r1.id, SyncCounters::default(), t(33))
            .await
            .unwrap()
    );
    let got = s.get_sync_run(&a, r1.id).await.unwrap().unwrap();
    assert_eq!(got.counters, sync_counters(4, 1, 0, 0, 1, 2));

    // A queued run is cancelled at once and cannot start.
    let cancelled = s
        .request_sync_cancel(&a, r2.id, t(34))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            cancelled.status,
            cancelled.cancel_requested,
            cancelled.finished_at
        ),
        (SyncStatus::Cancelled, true, Some(t(34)))
    );
    assert!(s.start_sync_run(&a, r2.id, t(35)).await.unwrap().is_none());
    assert!(
        !s.finish_sync_run(&a, r2.id, SyncStatus::Failed, None, t(35))
            .await
            .unwrap()
    );

    // Finishing: only as a final status, only once.
    assert!(matches!(
        s.finish_sync_run(&a, r1.id, SyncStatus::Running, None, t(36))
            .await,
        Err(StoreError::Invalid(_))
    ));
    assert!(
        s.finish_sync_run(&a, r1.id, SyncStatus::Succeeded, None, t(40))
            .await
            .unwrap()
    );
    assert!(
        !s.finish_sync_run(&a, r1.id, SyncStatus::Failed, Some("late".into()), t(41))
            .await
            .unwrap()
    );
    let done = s.get_sync_run(&a, r1.id).await.unwrap().unwrap();
    assert_eq!(
        (
            done.status,
            done.finished_at,
            done.error.clone(),
            done.updated_at
        ),
        (SyncStatus::Succeeded, Some(t(40)), None, t(40))
    );
    // A finished run: a cancel request changes nothing, counters are refused.
    assert_eq!(
        s.request_sync_cancel(&a, r1.id, t(42)).await.unwrap(),
        Some(done.clone())
    );
    assert!(
        s.request_sync_cancel(&a, 999_999, t(42))
            .await
            .unwrap()
            .is_none()
    );
    assert!(matches!(
        s.add_sync_counters(&a, r1.id, SyncCounters::default(), t(42))
            .await,
        Err(StoreError::NotFound(_))
    ));

    // The stream is free again; the next run starts where the last left off.
    let r3 = s
        .create_sync_run(new_run(&a, "orders"), t(50))
        .await
        .unwrap();
    // Resetting the cursor is refused while a run of the stream is active
    // (queued here), and for a stream without a cursor row as well.
    for stream in ["orders", "customers"] {
        if stream == "customers" {
            s.create_sync_run(new_run(&a, stream), t(51)).await.unwrap();
        }
        assert!(
            matches!(
                s.reset_sync_cursor(&a, SYNC, stream).await,
                Err(StoreError::Conflict(_))
            ),
            "{stream}"
        );
    }
    let r3 = s.start_sync_run(&a, r3.id, t(52)).await.unwrap().unwrap();
    assert_eq!(r3.cursor_start.as_deref(), Some("c1"));
    assert!(
        s.finish_sync_run(
            &a,
            r3.id,
            SyncStatus::Failed,
            Some("connector down".into()),
            t(53)
        )
        .await
        .unwrap()
    );
    let failed = s.get_sync_run(&a, r3.id).await.unwrap().unwrap();
    assert_eq!(
        (failed.status, failed.error.as_deref()),
        (SyncStatus::Failed, Some("connector down"))
    );
    // Idle: the reset forgets the cursor and keeps the sequence.
    s.reset_sync_cursor(&a, SYNC, "orders").await.unwrap();
    let c = s
        .get_sync_cursor(&a, SYNC, "orders")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((c.cursor, c.last_seq), (None, 1));
    s.reset_sync_cursor(&a, SYNC, "never-synced").await.unwrap();
    assert!(
        s.get_sync_cursor(&a, SYNC, "never-synced")
            .await
            .unwrap()
            .is_none()
    );
    let r4 = running(s, &a, "orders", t(60)).await;
    assert_eq!(r4.cursor_start, None);
    let out = commit(s, &r4, None, Some("c1"), vec![rec("y", "1")], t(61)).await;
    assert_eq!(out.last_seq, 2, "sequence numbers go on after a reset");

    // Listing: newest first, filtered, paged.
    let ids = |runs: Vec<SyncRunRecord>| runs.into_iter().map(|r| r.id).collect::<Vec<_>>();
    let all = ids(s
        .list_sync_runs(
            &a,
            &SyncRunQuery {
                limit: 100,
                ..Default::default()
            },
        )
        .await
        .unwrap());
    assert_eq!(all.len(), 6);
    assert!(all.windows(2).all(|w| w[0] > w[1]), "{all:?}");
    assert_eq!(all[0], r4.id);
    let orders = ids(s
        .list_sync_runs(
            &a,
            &SyncRunQuery {
                integration_id: Some(SYNC.into()),
                stream: Some("orders".into()),
                limit: 100,
                ..Default::default()
            },
        )
        .await
        .unwrap());
    assert_eq!(orders, [r4.id, r3.id, r1.id]);
    let succeeded = ids(s
        .list_sync_runs(
            &a,
            &SyncRunQuery {
                status: Some(SyncStatus::Succeeded),
                limit: 100,
                ..Default::default()
            },
        )
        .await
        .unwrap());
    assert_eq!(succeeded, [r1.id]);
    let page = ids(s
        .list_sync_runs(
            &a,
            &SyncRunQuery {
                before_id: Some(r4.id),
                limit: 2,
                ..Default::default()
            },
        )
        .await
        .unwrap());
    assert_eq!(page, all[1..3]);
    let exports = ids(s
        .list_sync_runs(
            &a,
            &SyncRunQuery {
                integration_id: Some("other_sync".into()),
                status: Some(SyncStatus::Queued),
                limit: 0,
                ..Default::default()
            },
        )
        .await
        .unwrap());
    assert_eq!(exports, [other.id], "a limit of 0 reads as 1");
}

async fn sync_batches_create_update_skip_unchanged_and_delete_in_seq_order(f: Fixture) {
    let s = &*f.store;
    let a = tenant(s, "acme").await;
    let run = running(s, &a, "orders", t(1)).await;
    let first = SyncBatch {
        skipped: 1,
        failed: 2,
        total: Some(100),
        ..batch(
            &a,
            run.id,
            "orders",
            None,
            Some("p1"),
            vec![rec("a", "1"), rec("b", "1"), rec("c", "1")],
            t(10),
        )
    };
    let out = s.commit_sync_batch(first).await.unwrap();
    assert_eq!(
        out,
        BatchOutcome {
            counters: sync_counters(6, 3, 0, 0, 1, 2),
            last_seq: 3,
            cancel_requested: false
        }
    );
    let c = s
        .get_sync_cursor(&a, SYNC, "orders")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (c.cursor.as_deref(), c.last_seq, c.updated_at),
        (Some("p1"), 3, t(10))
    );
    let rows = records_of(s, &a, "orders", 0).await;
    assert_eq!(
        shape(&rows),
        [
            ("a".into(), 1, false),
            ("b".into(), 2, false),
            ("c".into(), 3, false)
        ]
    );
    for r in &rows {
        assert_eq!((r.created_at, r.updated_at), (t(10), t(10)));
        assert_eq!(r.data, r#"{"v":"1"}"#);
        // rec_ + a UUID v7 in simple form.
        let hex = r.local_id.strip_prefix("rec_").unwrap();
        assert_eq!(hex.len(), 32, "{}", r.local_id);
        assert!(
            hex.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert_eq!(&hex[12..13], "7", "version 7: {}", r.local_id);
        assert!("89ab".contains(&hex[16..17]), "RFC variant: {}", r.local_id);
    }
    let mut locals: Vec<&str> = rows.iter().map(|r| r.local_id.as_str()).collect();
    locals.sort_unstable();
    locals.dedup();
    assert_eq!(locals.len(), 3);
    // Created records are mapped under the batch's entity type.
    let maps = s
        .get_id_mappings(
            &a,
            SYNC,
            "orders_entity",
            &["a".into(), "b".into(), "c".into()],
        )
        .await
        .unwrap();
    assert_eq!(
        maps.iter()
            .map(|m| (m.external_id.as_str(), m.local_id.as_str(), m.updated_at))
            .collect::<Vec<_>>(),
        rows.iter()
            .map(|r| (r.external_id.as_str(), r.local_id.as_str(), t(10)))
            .collect::<Vec<_>>()
    );

    // a unchanged, b updated, c deleted, d created, e deleted before it was
    // ever stored (nothing to mark): changes numbered in the batch's order.
    let out = commit(
        s,
        &run,
        Some("p1"),
        Some("p2"),
        vec![
            rec("a", "1"),
            rec("b", "2"),
            gone("c", "1"),
            rec("d", "1"),
            gone("e", "1"),
        ],
        t(20),
    )
    .await;
    assert_eq!(
        (out.counters, out.last_seq),
        (sync_counters(5, 1, 2, 2, 0, 0), 6)
    );
    let changed = records_of(s, &a, "orders", 3).await;
    assert_eq!(
        shape(&changed),
        [
            ("b".into(), 4, false),
            ("c".into(), 5, true),
            ("d".into(), 6, false)
        ]
    );
    let b = &changed[0];
    assert_eq!(
        (b.data.as_str(), b.created_at, b.updated_at),
        (r#"{"v":"2"}"#, t(10), t(20))
    );
    assert_eq!(b.local_id, rows[1].local_id, "the local id stays");
    assert_eq!(changed[1].local_id, rows[2].local_id);
    assert_eq!(s.count_sync_records(&a, SYNC, "orders").await.unwrap(), 3);
    assert!(
        s.get_id_mappings(&a, SYNC, "orders_entity", &["e".into()])
            .await
            .unwrap()
            .is_empty(),
        "nothing stored for e"
    );

    // Paging by sequence misses nothing and repeats nothing.
    let mut after = 0;
    let mut pages = Vec::new();
    loop {
        let page = s
            .list_sync_records(&a, SYNC, "orders", after, 2)
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 2);
        after = page.last().unwrap().seq;
        pages.extend(shape(&page));
    }
    assert_eq!(
        pages,
        [
            ("a".into(), 1, false),
            ("b".into(), 4, false),
            ("c".into(), 5, true),
            ("d".into(), 6, false)
        ]
    );

    // The stream is exhausted for now (no next cursor: it stays). The same
    // deletion again is unchanged; c coming back is an update.
    let out = commit(s, &run, Some("p2"), None, vec![gone("c", "1")], t(30)).await;
    assert_eq!(
        (out.counters, out.last_seq),
        (sync_counters(1, 0, 0, 1, 0, 0), 6)
    );
    let out = commit(s, &run, Some("p2"), None, vec![rec("c", "3")], t(40)).await;
    assert_eq!(
        (out.counters, out.last_seq),
        (sync_counters(1, 0, 1, 0, 0, 0), 7)
    );
    assert_eq!(
        shape(&records_of(s, &a, "orders", 6).await),
        [("c".into(), 7, false)]
    );
    assert_eq!(s.count_sync_records(&a, SYNC, "orders").await.unwrap(), 4);
    // An empty batch moves the cursor only.
    let out = commit(s, &run, Some("p2"), Some("p3"), vec![], t(50)).await;
    assert_eq!((out.counters, out.last_seq), (SyncCounters::default(), 7));

    let c = s
        .get_sync_cursor(&a, SYNC, "orders")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (c.cursor.as_deref(), c.last_seq, c.updated_at),
        (Some("p3"), 7, t(50))
    );
    let got = s.get_sync_run(&a, run.id).await.unwrap().unwrap();
    assert_eq!(got.counters, sync_counters(13, 4, 3, 3, 1, 2));
    assert_eq!(
        (got.total, got.cursor_end.as_deref(), got.updated_at),
        (Some(100), Some("p3"), t(50)),
        "a batch without a total keeps the last one"
    );
    // Another stream of the same integration has its own sequence.
    let other = running(s, &a, "customers", t(60)).await;
    let out = commit(s, &other, None, Some("x"), vec![rec("a", "9")], t(61)).await;
    assert_eq!(out.last_seq, 1);
    assert_eq!(
        shape(&records_of(s, &a, "customers", 0).await),
        [("a".into(), 1, false)]
    );
    assert_eq!(records_of(s, &a, "orders", 0).await.len(), 4);
}

/// The run, the cursor and the records of `orders` are as they were after
/// the compare-and-set test's first batch.
async fn untouched(s: &dyn Store, a: &Scope, run: &SyncRunRecord, cursor: &SyncCursor) {
    assert_eq!(&s.get_sync_run(a, run.id).await.unwrap().unwrap(), run);
    assert_eq!(
        &s.get_sync_cursor(a, SYNC, "orders").await.unwrap().unwrap(),
        cursor
    );
    assert_eq!(
        shape(&records_of(s, a, "orders", 0).await),
        [("a".into(), 1, false)]
    );
    assert!(
        s.get_id_mappings(a, SYNC, "orders_entity", &["x".into()])
            .await
            .unwrap()
            .is_empty()
    );
}

async fn sync_batches_move_the_cursor_by_compare_and_set(f: Fixture) {
    let s = &*f.store;
    let a = tenant(s, "acme").await;
    let run = running(s, &a, "orders", t(1)).await;
    commit(s, &run, None, Some("c1"), vec![rec("a", "1")], t(10)).await;
    let before_run = s.get_sync_run(&a, run.id).await.unwrap().unwrap();
    let before_cursor = s
        .get_sync_cursor(&a, SYNC, "orders")
        .await
        .unwrap()
        .unwrap();
    // A batch read from an older cursor (a zombie worker, say) writes nothing.
    for from in [None, Some("zzz")] {
        let err = refused(
            s,
            batch(
                &a,
                run.id,
                "orders",
                from,
                Some("c2"),
                vec![rec("x", "1"), rec("a", "2")],
                t(20),
            ),
        )
        .await;
        assert!(matches!(err, StoreError::Stale(_)), "{err}");
        untouched(s, &a, &before_run, &before_cursor).await;
    }
    // The same external id twice in a batch is refused.
    let err = refused(
        s,
        batch(
            &a,
            run.id,
            "orders",
            Some("c1"),
            Some("c2"),
            vec![rec("x", "1"), rec("x", "2")],
            t(20),
        ),
    )
    .await;
    assert!(matches!(err, StoreError::Invalid(_)), "{err}");
    // A run that does not exist, or runs another stream, commits nothing.
    let other = running(s, &a, "customers", t(2)).await;
    for run_id in [999_999, other.id] {
        let err = refused(
            s,
            batch(
                &a,
                run_id,
                "orders",
                Some("c1"),
                Some("c2"),
                vec![rec("x", "1")],
                t(20),
            ),
        )
        .await;
        assert!(matches!(err, StoreError::NotFound(_)), "{err}");
    }
    untouched(s, &a, &before_run, &before_cursor).await;
    assert!(
        s.get_sync_cursor(&a, SYNC, "customers")
            .await
            .unwrap()
            .is_none()
    );

    // A cancel request: the batch in hand commits and reports it.
    s.request_sync_cancel(&a, run.id, t(30)).await.unwrap();
    let out = commit(s, &run, Some("c1"), Some("c2"), vec![rec("b", "1")], t(31)).await;
    assert!(out.cancel_requested);
    assert!(
        s.finish_sync_run(&a, run.id, SyncStatus::Cancelled, None, t(32))
            .await
            .unwrap()
    );
    let before_run = s.get_sync_run(&a, run.id).await.unwrap().unwrap();
    let before_cursor = s
        .get_sync_cursor(&a, SYNC, "orders")
        .await
        .unwrap()
        .unwrap();
    // A batch of a cancelled run: NotFound, nothing written.
    let err = refused(
        s,
        batch(
            &a,
            run.id,
            "orders",
            Some("c2"),
            Some("c3"),
            vec![rec("x", "1"), rec("a", "2")],
            t(40),
        ),
    )
    .await;
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
    assert_eq!(
        s.get_sync_run(&a, run.id).await.unwrap().unwrap(),
        before_run
    );
    assert_eq!(
        s.get_sync_cursor(&a, SYNC, "orders")
            .await
            .unwrap()
            .unwrap(),
        before_cursor
    );
    assert_eq!(
        shape(&records_of(s, &a, "orders", 0).await),
        [("a".into(), 1, false), ("b".into(), 2, false)]
    );
    // A queued (not started) run cannot commit either.
    let queued = s
        .create_sync_run(new_run(&a, "orders"), t(50))
        .await
        .unwrap();
    let err = refused(
        s,
        batch(
            &a,
            queued.id,
            "orders",
            Some("c2"),
            Some("c3"),
            vec![rec("x", "1")],
            t(51),
        ),
    )
    .await;
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
    // Started, it goes on from the stored cursor.
    s.start_sync_run(&a, queued.id, t(52))
        .await
        .unwrap()
        .unwrap();
    let out = commit(
        s,
        &queued,
        Some("c2"),
        Some("c3"),
        vec![rec("x", "1")],
        t(53),
    )
    .await;
    assert_eq!(out.last_seq, 3);
}

async fn concurrent_first_sync_batches_commit_once(f: Fixture) {
    let a = tenant(&*f.store, "acme").await;
    // On PostgreSQL the two workers are two stores (two processes).
    let second = if f.store.backend() == Backend::Postgres {
        connect(&f.config).await.unwrap()
    } else {
        f.store.clone()
    };
    for round in 0..10 {
        let stream = format!("stream{round}");
        let run_id = running(&*f.store, &a, &stream, t(1)).await.id;
        let barrier = Arc::new(tokio::sync::Barrier::new(2));
        let tasks: Vec<_> = [f.store.clone(), second.clone()]
            .into_iter()
            .enumerate()
            .map(|(w, store)| {
                let (a, stream, barrier) = (a.clone(), stream.clone(), barrier.clone());
                tokio::spawn(async move {
                    let records = (0..50).map(|n| rec(&format!("w{w}-{n}"), "1")).collect();
                    let next = format!("w{w}");
                    let b = batch(&a, run_id, &stream, None, Some(&next), records, t(2));
                    barrier.wait().await;
                    store.commit_sync_batch(b).await
                })
            })
            .collect();
        let mut won = Vec::new();
        for (w, task) in tasks.into_iter().enumerate() {
            match task.await.unwrap() {
                Ok(out) => {
                    assert_eq!((out.counters.created, out.last_seq), (50, 50));
                    won.push(w);
                }
                Err(StoreError::Stale(_) | StoreError::Conflict(_)) => {}
                Err(e) => panic!("round {round}: {e}"),
            }
        }
        assert_eq!(
            won.len(),
            1,
            "round {round}: exactly one first batch commits"
        );
        let w = won[0];
        let c = f
            .store
            .get_sync_cursor(&a, SYNC, &stream)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((c.cursor, c.last_seq), (Some(format!("w{w}")), 50));
        let rows = records_of(&*f.store, &a, &stream, 0).await;
        assert_eq!(rows.len(), 50);
        assert!(
            rows.iter()
                .all(|r| r.external_id.starts_with(&format!("w{w}-")))
        );
        assert_eq!(
            rows.iter().map(|r| r.seq).collect::<Vec<_>>(),
            (1..=50).collect::<Vec<_>>()
        );
        let got = f.store.get_sync_run(&a, run_id).await.unwrap().unwrap();
        assert_eq!(got.counters, sync_counters(50, 50, 0, 0, 0, 0));
    }
}

async fn sync_data_is_isolated_per_scope(f: Fixture) {
    let s = &*f.store;
    let a = tenant(s, "acme").await;
    let b = tenant(s, "globex").await;
    let run = running(s, &a, "orders", t(1)).await;
    commit(s, &run, None, Some("c1"), vec![rec("x", "1")], t(2)).await;
    s.put_id_mappings(
        &a,
        SYNC,
        vec![IdMapping {
            entity_type: "customer".into(),
            local_id: "cus_1".into(),
            external_id: "x".into(),
            updated_at: t(3),
        }],
    )
    .await
    .unwrap();
    s.put_field_mapping(&a, SYNC, "orders", Some("{\"a\":\"b\"}".into()), t(4))
        .await
        .unwrap();
    let a_run = s.get_sync_run(&a, run.id).await.unwrap().unwrap();

    // Another tenant, and another organization of the same tenant, see
    // nothing and change nothing of it.
    let a_other = Scope::new(a.tenant_id.as_str(), "org_other");
    for other in [&b, &a_other] {
        assert!(s.get_sync_run(other, run.id).await.unwrap().is_none());
        assert!(
            s.list_sync_runs(
                other,
                &SyncRunQuery {
                    limit: 100,
                    ..Default::default()
                }
            )
            .await
            .unwrap()
            .is_empty()
        );
        assert!(
            s.start_sync_run(other, run.id, t(10))
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            s.request_sync_cancel(other, run.id, t(10))
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            !s.finish_sync_run(other, run.id, SyncStatus::Failed, None, t(10))
                .await
                .unwrap()
        );
        assert!(matches!(
            s.set_sync_run_job(other, run.id, 7).await,
            Err(StoreError::NotFound(_))
        ));
        assert!(matches!(
            s.add_sync_counters(other, run.id, sync_counters(1, 1, 0, 0, 0, 0), t(10))
                .await,
            Err(StoreError::NotFound(_))
        ));
        let err = refused(
            s,
            batch(
                other,
                run.id,
                "orders",
                None,
                Some("evil"),
                vec![rec("x", "2")],
                t(10),
            ),
        )
        .await;
        assert!(matches!(err, StoreError::NotFound(_)), "{err}");
        assert!(
            s.get_sync_cursor(other, SYNC, "orders")
                .await
                .unwrap()
                .is_none()
        );
        assert!(records_of(s, other, "orders", 0).await.is_empty());
        assert_eq!(
            s.count_sync_records(other, SYNC, "orders").await.unwrap(),
            0
        );
        assert!(
            s.get_id_mappings(other, SYNC, "customer", &["x".into()])
                .await
                .unwrap()
                .is_empty()
        );
        assert!(
            s.get_id_mappings(other, SYNC, "customer", &[])
                .await
                .unwrap()
                .is_empty()
        );
        assert!(
            s.get_id_mappings(other, SYNC, "orders_entity", &[])
                .await
                .unwrap()
                .is_empty()
        );
        assert!(
            s.get_field_mapping(other, SYNC, "orders")
                .await
                .unwrap()
                .is_none()
        );
        s.put_field_mapping(other, SYNC, "orders", None, t(10))
            .await
            .unwrap();
        s.reset_sync_cursor(other, SYNC, "orders").await.unwrap();
    }
    // A's data is as it was.
    assert_eq!(s.get_sync_run(&a, run.id).await.unwrap().unwrap(), a_run);
    assert_eq!(
        s.get_sync_cursor(&a, SYNC, "orders")
            .await
            .unwrap()
            .unwrap()
            .cursor
            .as_deref(),
        Some("c1")
    );
    let rows = records_of(s, &a, "orders", 0).await;
    assert_eq!(shape(&rows), [("x".into(), 1, false)]);
    assert_eq!(rows[0].data, r#"{"v":"1"}"#);
    assert_eq!(
        s.get_id_mappings(&a, SYNC, "customer", &[])
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(
        s.get_field_mapping(&a, SYNC, "orders")
            .await
            .unwrap()
            .is_some()
    );

    // The one-active-run rule is per scope: B runs the same stream meanwhile,
    // with its own cursor and sequence.
    let b_run = running(s, &b, "orders", t(20)).await;
    let out = commit(
        s,
        &b_run,
        None,
        Some("b1"),
        vec![rec("x", "9"), rec("y", "9")],
        t(21),
    )
    .await;
    assert_eq!((out.counters.created, out.last_seq), (2, 2));
    assert_eq!(
        shape(&records_of(s, &a, "orders", 0).await),
        [("x".into(), 1, false)]
    );
    assert_eq!(
        s.list_sync_runs(
            &b,
            &SyncRunQuery {
                limit: 100,
                ..Default::default()
            }
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect::<Vec<_>>(),
        [b_run.id]
    );
}

async fn sync_id_and_field_mappings_are_stored_per_stream(f: Fixture) {
    let s = &*f.store;
    let a = tenant(s, "acme").await;
    let m = |entity: &str, local: &str, external: &str, at: i64| IdMapping {
        entity_type: entity.into(),
        local_id: local.into(),
        external_id: external.into(),
        updated_at: t(at),
    };
    s.put_id_mappings(&a, SYNC, Vec::new()).await.unwrap();
    s.put_id_mappings(
        &a,
        SYNC,
        vec![
            m("customer", "cus_2", "x2", 1),
            m("customer", "cus_1", "x1", 1),
            m("order", "ord_1", "x1", 1),
            // The same key twice in one call: the last wins.
            m("customer", "cus_3", "x3", 1),
            m("customer", "cus_3b", "x3", 2),
        ],
    )
    .await
    .unwrap();
    s.put_id_mappings(&a, "other_sync", vec![m("customer", "zzz", "x1", 1)])
        .await
        .unwrap();
    // An upsert replaces the local id and the time.
    s.put_id_mappings(&a, SYNC, vec![m("customer", "cus_1b", "x1", 5)])
        .await
        .unwrap();
    let scope = &a;
    let get = move |ids: &[&str]| {
        let ids: Vec<String> = ids.iter().map(|id| (*id).to_owned()).collect();
        async move {
            s.get_id_mappings(scope, SYNC, "customer", &ids)
                .await
                .unwrap()
        }
    };
    assert_eq!(
        get(&["x3", "missing", "x1", "x1"]).await,
        [
            m("customer", "cus_1b", "x1", 5),
            m("customer", "cus_3b", "x3", 2)
        ],
        "found ones only, by external id"
    );
    assert_eq!(
        get(&[]).await,
        [
            m("customer", "cus_1b", "x1", 5),
            m("customer", "cus_2", "x2", 1),
            m("customer", "cus_3b", "x3", 2)
        ]
    );
    assert_eq!(
        s.get_id_mappings(&a, SYNC, "order", &[]).await.unwrap(),
        [m("order", "ord_1", "x1", 1)]
    );
    // An import keeps an existing mapping of a record it creates.
    let run = running(s, &a, "customers", t(10)).await;
    let out = s
        .commit_sync_batch(SyncBatch {
            entity_type: "customer".into(),
            ..batch(
                &a,
                run.id,
                "customers",
                None,
                Some("c"),
                vec![rec("x2", "1"), rec("x9", "1")],
                t(11),
            )
        })
        .await
        .unwrap();
    assert_eq!(out.counters.created, 2);
    let rows = records_of(s, &a, "customers", 0).await;
    let maps = get(&["x2", "x9"]).await;
    assert_eq!(maps[0], m("customer", "cus_2", "x2", 1));
    assert_eq!(
        (maps[1].local_id.as_str(), maps[1].updated_at),
        (rows[1].local_id.as_str(), t(11))
    );

    // Field mappings: set, replaced, removed.
    assert!(
        s.get_field_mapping(&a, SYNC, "orders")
            .await
            .unwrap()
            .is_none()
    );
    s.put_field_mapping(&a, SYNC, "orders", Some("{\"v\":1}".into()), t(20))
        .await
        .unwrap();
    s.put_field_mapping(&a, SYNC, "customers", Some("{\"c\":1}".into()), t(20))
        .await
        .unwrap();
    assert_eq!(
        s.get_field_mapping(&a, SYNC, "orders").await.unwrap(),
        Some(("{\"v\":1}".to_owned(), t(20)))
    );
    s.put_field_mapping(&a, SYNC, "orders", Some("{\"v\":2}".into()), t(21))
        .await
        .unwrap();
    assert_eq!(
        s.get_field_mapping(&a, SYNC, "orders").await.unwrap(),
        Some(("{\"v\":2}".to_owned(), t(21)))
    );
    s.put_field_mapping(&a, SYNC, "orders", None, t(22))
        .await
        .unwrap();
    assert!(
        s.get_field_mapping(&a, SYNC, "orders")
            .await
            .unwrap()
            .is_none()
    );
    s.put_field_mapping(&a, SYNC, "orders", None, t(23))
        .await
        .unwrap();
    assert!(
        s.get_field_mapping(&a, SYNC, "customers")
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        s.get_field_mapping(&a, "other_sync", "customers")
            .await
            .unwrap()
            .is_none()
    );
}

/// (external id, local id, updated at) of each mapping.
fn pairs(maps: &[IdMapping]) -> Vec<(String, String, Timestamp)> {
    maps.iter()
        .map(|m| (m.external_id.clone(), m.local_id.clone(), m.updated_at))
        .collect()
}

async fn imported_records_are_mapped_under_their_streams_entity_type(f: Fixture) {
    let s = &*f.store;
    let a = tenant(s, "acme").await;
    let orders = running(s, &a, "orders", t(1)).await;
    commit(s, &orders, None, Some("1"), vec![rec("x", "1")], t(10)).await;
    // A second stream of the same entity type: the first record created wins.
    let more = running(s, &a, "more", t(1)).await;
    let b = batch(
        &a,
        more.id,
        "more",
        None,
        Some("1"),
        vec![rec("x", "1"), rec("y", "1")],
        t(20),
    );
    s.commit_sync_batch(SyncBatch {
        entity_type: "orders_entity".into(),
        ..b
    })
    .await
    .unwrap();
    let rows = records_of(s, &a, "orders", 0).await;
    let more_rows = records_of(s, &a, "more", 0).await;
    let expected = vec![
        ("x".to_owned(), rows[0].local_id.clone(), t(10)),
        ("y".to_owned(), more_rows[1].local_id.clone(), t(20)),
    ];
    let all = s
        .get_id_mappings(&a, SYNC, "orders_entity", &[])
        .await
        .unwrap();
    assert_eq!(pairs(&all), expected);
    assert!(all.iter().all(|m| m.entity_type == "orders_entity"));
    let some = s
        .get_id_mappings(
            &a,
            SYNC,
            "orders_entity",
            &["y".into(), "x".into(), "z".into()],
        )
        .await
        .unwrap();
    assert_eq!(pairs(&some), expected);
    // A batch under another entity type than its stream's maps its created
    // records under the batch's, an existing pair kept.
    s.put_id_mappings(
        &a,
        SYNC,
        vec![IdMapping {
            entity_type: "other".into(),
            local_id: "loc_p".into(),
            external_id: "p".into(),
            updated_at: t(25),
        }],
    )
    .await
    .unwrap();
    let b = batch(
        &a,
        orders.id,
        "orders",
        Some("1"),
        Some("2"),
        vec![rec("p", "1"), rec("q", "1")],
        t(30),
    );
    s.commit_sync_batch(SyncBatch {
        entity_type: "other".into(),
        ..b
    })
    .await
    .unwrap();
    let rows = records_of(s, &a, "orders", 1).await;
    assert_eq!(
        pairs(&s.get_id_mappings(&a, SYNC, "other", &[]).await.unwrap()),
        [
            ("p".to_owned(), "loc_p".to_owned(), t(25)),
            ("q".to_owned(), rows[1].local_id.clone(), t(30)),
        ]
    );
    // The stream's own entity type maps them too; a stored pair wins.
    s.put_id_mappings(
        &a,
        SYNC,
        vec![IdMapping {
            entity_type: "orders_entity".into(),
            local_id: "loc_x".into(),
            external_id: "x".into(),
            updated_at: t(40),
        }],
    )
    .await
    .unwrap();
    let got = s
        .get_id_mappings(&a, SYNC, "orders_entity", &["x".into(), "q".into()])
        .await
        .unwrap();
    assert_eq!(
        pairs(&got),
        [
            ("q".to_owned(), rows[1].local_id.clone(), t(30)),
            ("x".to_owned(), "loc_x".to_owned(), t(40)),
        ]
    );
}
