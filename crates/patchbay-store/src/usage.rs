//! Usage metering of connector actions: per scope, integration and UTC hour,
//! how many calls, how many failed, their total duration and the bytes of
//! their inputs and outputs.
//!
//! * **Writes add.** [`UsageStore::add_usage`] upserts each row, adding the
//!   given counts to what is stored (`calls = calls + excluded.calls`, …).
//!   Additions commute, so several processes may flush counts for the same
//!   hour in any order; the service accumulates counts in memory and writes
//!   a batch about once a second, not a row per call.
//! * **Deadlock-free batches.** A batch is merged by key and written in key
//!   order: two PostgreSQL processes flushing overlapping hours lock rows in
//!   the same order, so neither waits on the other in a cycle.
//! * **No foreign key** to the organization (like the operation log): a
//!   batch is appended as it is, and one stale row could otherwise refuse the
//!   whole batch.
//! * **Reads** take a scope and an hour range, optionally one integration,
//!   and return the hourly rows oldest first.

use patchbay_core::{Scope, Timestamp};

use crate::Result;

/// Microseconds in an hour: the bucket size.
pub const HOUR_MICROS: i64 = 3_600_000_000;

/// The start of the UTC hour holding `t`.
pub fn hour_of(t: Timestamp) -> Timestamp {
    Timestamp::from_micros(t.as_micros().div_euclid(HOUR_MICROS) * HOUR_MICROS)
}

/// The counters of one bucket (also what a flush adds to it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UsageCounts {
    pub calls: i64,
    /// Calls whose connector returned an error (or timed out).
    pub errors: i64,
    pub duration_ms: i64,
    pub input_bytes: i64,
    pub output_bytes: i64,
}

impl UsageCounts {
    /// Adds `other` to these counts (saturating: a counter never wraps).
    pub fn add(&mut self, other: &UsageCounts) {
        self.calls = self.calls.saturating_add(other.calls);
        self.errors = self.errors.saturating_add(other.errors);
        self.duration_ms = self.duration_ms.saturating_add(other.duration_ms);
        self.input_bytes = self.input_bytes.saturating_add(other.input_bytes);
        self.output_bytes = self.output_bytes.saturating_add(other.output_bytes);
    }
}

/// One hour of one integration in one scope: counts to add, or the stored row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRecord {
    pub scope: Scope,
    pub integration_id: String,
    /// The start of the UTC hour ([`hour_of`]).
    pub hour: Timestamp,
    pub counts: UsageCounts,
}

/// Which rows to read: hours in `[from, until)`, of one integration or all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageQuery {
    pub integration_id: Option<String>,
    /// Inclusive: rows whose hour starts at or after it.
    pub from: Timestamp,
    /// Exclusive: rows whose hour starts before it.
    pub until: Timestamp,
}

/// The usage meter's storage, on either backend.
#[async_trait::async_trait]
pub trait UsageStore: Send + Sync {
    /// Adds each record's counts to its row (created when missing), in one
    /// transaction. Records are bucketed by [`hour_of`] their `hour`.
    async fn add_usage(&self, records: Vec<UsageRecord>, now: Timestamp) -> Result<()>;

    /// The rows of `scope` matching `query`, oldest hour first, then by
    /// integration.
    async fn query_usage(&self, scope: &Scope, query: &UsageQuery) -> Result<Vec<UsageRecord>>;

    /// Deletes every scope's rows of hours before `before`; returns how many.
    async fn prune_usage(&self, before: Timestamp) -> Result<u64>;
}

/// Merges records with the same key and sorts them by key (see the module
/// docs: a batch's rows are locked in key order).
pub(crate) fn merged(records: Vec<UsageRecord>) -> Vec<UsageRecord> {
    let mut by_key: std::collections::BTreeMap<(String, String, i64, String), UsageRecord> =
        std::collections::BTreeMap::new();
    for mut r in records {
        r.hour = hour_of(r.hour);
        let key = (
            r.scope.tenant_id.to_string(),
            r.scope.organization_id.to_string(),
            r.hour.as_micros(),
            r.integration_id.clone(),
        );
        match by_key.get_mut(&key) {
            Some(existing) => existing.counts.add(&r.counts),
            None => {
                by_key.insert(key, r);
            }
        }
    }
    by_key.into_values().collect()
}

/// The statements both backends share (`$N` placeholders; SQLite runs them
/// through `statements::lite`).
pub(crate) mod sql {
    pub(crate) const ADD: &str = "INSERT INTO action_usage
          (tenant_id, organization_id, integration_id, hour, calls, errors, duration_ms, input_bytes, output_bytes, updated_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
        ON CONFLICT (tenant_id, organization_id, hour, integration_id) DO UPDATE SET
          calls = action_usage.calls + excluded.calls,
          errors = action_usage.errors + excluded.errors,
          duration_ms = action_usage.duration_ms + excluded.duration_ms,
          input_bytes = action_usage.input_bytes + excluded.input_bytes,
          output_bytes = action_usage.output_bytes + excluded.output_bytes,
          updated_at = excluded.updated_at";

    pub(crate) const QUERY: &str = "SELECT tenant_id, organization_id, integration_id, hour, calls, errors, duration_ms, input_bytes, output_bytes FROM action_usage
        WHERE tenant_id = $1 AND organization_id = $2 AND hour >= $3 AND hour < $4
        ORDER BY hour, integration_id";

    pub(crate) const QUERY_ONE: &str = "SELECT tenant_id, organization_id, integration_id, hour, calls, errors, duration_ms, input_bytes, output_bytes FROM action_usage
        WHERE tenant_id = $1 AND organization_id = $2 AND hour >= $3 AND hour < $4 AND integration_id = $5
        ORDER BY hour, integration_id";

    pub(crate) const PRUNE: &str = "DELETE FROM action_usage WHERE hour < $1";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hours_start_on_the_hour_also_before_the_epoch() {
        let t = Timestamp::from_micros(HOUR_MICROS * 5 + 1);
        assert_eq!(hour_of(t).as_micros(), HOUR_MICROS * 5);
        assert_eq!(
            hour_of(Timestamp::from_micros(HOUR_MICROS * 5)),
            Timestamp::from_micros(HOUR_MICROS * 5)
        );
        assert_eq!(
            hour_of(Timestamp::from_micros(-1)).as_micros(),
            -HOUR_MICROS
        );
    }

    #[test]
    fn a_batch_is_merged_by_key_and_sorted() {
        let rec = |tenant: &str, integration: &str, minute: i64, calls: i64| UsageRecord {
            scope: Scope::new(tenant, "org"),
            integration_id: integration.into(),
            hour: Timestamp::from_micros(HOUR_MICROS * 10 + minute * 60_000_000),
            counts: UsageCounts {
                calls,
                errors: 1,
                duration_ms: 10,
                input_bytes: 100,
                output_bytes: 1000,
            },
        };
        let out = merged(vec![
            rec("t2", "a", 0, 1),
            rec("t1", "b", 5, 2),
            rec("t1", "b", 59, 3),
            rec("t1", "a", 61, 4),
        ]);
        let keys: Vec<_> = out
            .iter()
            .map(|r| {
                (
                    r.scope.tenant_id.to_string(),
                    r.integration_id.clone(),
                    r.hour.as_micros() / HOUR_MICROS,
                    r.counts.calls,
                )
            })
            .collect();
        assert_eq!(
            keys,
            [
                ("t1".into(), "b".into(), 10, 5),
                ("t1".into(), "a".into(), 11, 4),
                ("t2".into(), "a".into(), 10, 1),
            ]
        );
        assert_eq!(out[0].counts.errors, 2);
        assert_eq!(out[0].counts.output_bytes, 2000);
    }
}
