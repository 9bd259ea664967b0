//! Usage metering on SQLite: a batch is one transaction on the writer.

use patchbay_core::{Scope, Timestamp};
use rusqlite::{Row, TransactionBehavior, params};

use super::{SqliteStore, all, db, exec};
use crate::Result;
use crate::sql::ts;
use crate::statements::lite;
use crate::usage::{UsageCounts, UsageQuery, UsageRecord, UsageStore, merged, sql};

fn record(r: &Row<'_>) -> rusqlite::Result<UsageRecord> {
    Ok(UsageRecord {
        scope: Scope::new(
            r.get::<_, String>("tenant_id")?,
            r.get::<_, String>("organization_id")?,
        ),
        integration_id: r.get("integration_id")?,
        hour: Timestamp::from_micros(r.get("hour")?),
        counts: UsageCounts {
            calls: r.get("calls")?,
            errors: r.get("errors")?,
            duration_ms: r.get("duration_ms")?,
            input_bytes: r.get("input_bytes")?,
            output_bytes: r.get("output_bytes")?,
        },
    })
}

#[async_trait::async_trait]
impl UsageStore for SqliteStore {
    async fn add_usage(&self, records: Vec<UsageRecord>, now: Timestamp) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let records = merged(records);
        self.write(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db)?;
            {
                let mut add = tx.prepare_cached(&lite(sql::ADD)).map_err(db)?;
                for r in &records {
                    add.execute(params![
                        r.scope.tenant_id.as_str(),
                        r.scope.organization_id.as_str(),
                        r.integration_id,
                        ts(r.hour),
                        r.counts.calls,
                        r.counts.errors,
                        r.counts.duration_ms,
                        r.counts.input_bytes,
                        r.counts.output_bytes,
                        ts(now)
                    ])
                    .map_err(db)?;
                }
            }
            tx.commit().map_err(db)
        })
        .await
    }

    async fn query_usage(&self, scope: &Scope, q: &UsageQuery) -> Result<Vec<UsageRecord>> {
        let (t, o) = (scope.tenant_id.as_str(), scope.organization_id.as_str());
        let (from, until) = (ts(q.from), ts(q.until));
        self.read(|c| match &q.integration_id {
            Some(id) => all(c, sql::QUERY_ONE, params![t, o, from, until, id], record),
            None => all(c, sql::QUERY, params![t, o, from, until], record),
        })
    }

    async fn prune_usage(&self, before: Timestamp) -> Result<u64> {
        let n = self
            .write(move |c| exec(c, sql::PRUNE, params![ts(before)]).map_err(db))
            .await?;
        Ok(u64::try_from(n).unwrap_or(u64::MAX))
    }
}
