//! Usage metering on PostgreSQL: a batch travels as arrays (`UNNEST`), one
//! statement whatever its size; its rows are merged and sorted by key first,
//! so concurrent flushes of several processes lock rows in the same order.

use patchbay_core::{Scope, Timestamp};
use sqlx::Row as _;
use sqlx::postgres::PgRow;

use super::PgStore;
use crate::Result;
use crate::sql::ts;
use crate::usage::{UsageCounts, UsageQuery, UsageRecord, UsageStore, merged, sql};

/// [`sql::ADD`] for a whole batch.
const ADD_BATCH: &str = "INSERT INTO action_usage
      (tenant_id, organization_id, integration_id, hour, calls, errors, duration_ms, input_bytes, output_bytes, updated_at)
    SELECT t, o, i, h, c, e, d, ib, ob, $10
      FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[], $8::bigint[], $9::bigint[])
        AS batch(t, o, i, h, c, e, d, ib, ob)
    ON CONFLICT (tenant_id, organization_id, hour, integration_id) DO UPDATE SET
      calls = action_usage.calls + excluded.calls,
      errors = action_usage.errors + excluded.errors,
      duration_ms = action_usage.duration_ms + excluded.duration_ms,
      input_bytes = action_usage.input_bytes + excluded.input_bytes,
      output_bytes = action_usage.output_bytes + excluded.output_bytes,
      updated_at = excluded.updated_at";

fn record(r: &PgRow) -> Result<UsageRecord> {
    Ok(UsageRecord {
        scope: Scope::new(
            r.try_get::<String, _>("tenant_id")?,
            r.try_get::<String, _>("organization_id")?,
        ),
        integration_id: r.try_get("integration_id")?,
        hour: Timestamp::from_micros(r.try_get("hour")?),
        counts: UsageCounts {
            calls: r.try_get("calls")?,
            errors: r.try_get("errors")?,
            duration_ms: r.try_get("duration_ms")?,
            input_bytes: r.try_get("input_bytes")?,
            output_bytes: r.try_get("output_bytes")?,
        },
    })
}

#[async_trait::async_trait]
impl UsageStore for PgStore {
    async fn add_usage(&self, records: Vec<UsageRecord>, now: Timestamp) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let records = merged(records);
        let text = |f: fn(&UsageRecord) -> &str| -> Vec<String> {
            records.iter().map(|r| f(r).to_owned()).collect()
        };
        let int = |f: fn(&UsageRecord) -> i64| -> Vec<i64> { records.iter().map(f).collect() };
        sqlx::query(ADD_BATCH)
            .bind(text(|r| r.scope.tenant_id.as_str()))
            .bind(text(|r| r.scope.organization_id.as_str()))
            .bind(text(|r| &r.integration_id))
            .bind(int(|r| ts(r.hour)))
            .bind(int(|r| r.counts.calls))
            .bind(int(|r| r.counts.errors))
            .bind(int(|r| r.counts.duration_ms))
            .bind(int(|r| r.counts.input_bytes))
            .bind(int(|r| r.counts.output_bytes))
            .bind(ts(now))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn query_usage(&self, scope: &Scope, q: &UsageQuery) -> Result<Vec<UsageRecord>> {
        let query = match &q.integration_id {
            Some(id) => sqlx::query(sql::QUERY_ONE)
                .bind(scope.tenant_id.as_str())
                .bind(scope.organization_id.as_str())
                .bind(ts(q.from))
                .bind(ts(q.until))
                .bind(id.as_str()),
            None => sqlx::query(sql::QUERY)
                .bind(scope.tenant_id.as_str())
                .bind(scope.organization_id.as_str())
                .bind(ts(q.from))
                .bind(ts(q.until)),
        };
        query
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(record)
            .collect()
    }

    async fn prune_usage(&self, before: Timestamp) -> Result<u64> {
        Ok(sqlx::query(sql::PRUNE)
            .bind(ts(before))
            .execute(&self.pool)
            .await?
            .rows_affected())
    }
}
