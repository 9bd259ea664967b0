//! Usage metering of connector actions: per scope, integration and UTC hour,
//! the calls, the errors, their total duration and the bytes of inputs and
//! outputs; and the reads behind `GET /api/usage` and the panel's Usage page.
//!
//! **Recording costs a map update, not a write.** [`UsageMeter`] adds each
//! call's counts to an in-memory map (one short mutex hold); a flusher task
//! swaps the map out about once a second and adds the batch to the store
//! (`UsageStore::add_usage`: one upsert per scope, integration and hour,
//! adding to the stored counters, in one transaction). It is a task of its
//! own rather than part of the operation-log writer because the two want
//! opposite things: the log writer makes each caller wait for durability and
//! commits every entry, while metering wants no caller to wait and as few
//! rows written as possible — a busy hour of one integration is one row
//! updated once a second whatever the call rate. Additions commute, so the
//! processes sharing a PostgreSQL database flush into the same rows safely.
//!
//! The price: counts of the last second live only in memory. A graceful
//! shutdown flushes them (`Services::flush_logs`, which `patchbay serve`
//! calls on the way out, or dropping the services); a crash loses at most
//! that second. A failed flush keeps its counts for the next one.
//!
//! Metering counts calls that reached the connector: a call refused before
//! (not enabled, not granted, over the tenant's concurrency limit, invalid
//! input) is in the audit trail, not here. An error is a call whose
//! connector failed or timed out; its output bytes are 0.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use patchbay_core::{Scope, Timestamp};
use patchbay_store::usage::hour_of;
use patchbay_store::{Store, UsageCounts, UsageQuery, UsageRecord};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::Services;
use crate::auth::{Caller, Feature};
use crate::error::{FieldError, Result, ServiceError};

/// How often pending counts are written.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// The longest range one usage read covers.
pub const MAX_RANGE_DAYS: i64 = 92;
/// Hours kept by the maintenance job (13 months: a year back, compared).
pub const RETENTION_DAYS: i64 = 400;

/// What one action adds to its bucket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ActionUsage {
    pub failed: bool,
    pub duration_ms: i64,
    pub input_bytes: usize,
    pub output_bytes: usize,
}

type Key = (Scope, String, Timestamp);
type Pending = Arc<Mutex<HashMap<Key, UsageCounts>>>;

fn lock(p: &Pending) -> MutexGuard<'_, HashMap<Key, UsageCounts>> {
    p.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The in-memory accumulator and its flusher (see the module docs).
#[derive(Debug)]
pub(crate) struct UsageMeter {
    pending: Pending,
    /// Asks the flusher to write now and answer when done. The flusher ends,
    /// after a last flush, when this sender is dropped with the services.
    flushes: mpsc::Sender<oneshot::Sender<Result<(), String>>>,
}

impl UsageMeter {
    /// Starts the flusher task (inside a Tokio runtime).
    pub(crate) fn start(store: Arc<dyn Store>) -> UsageMeter {
        let pending: Pending = Arc::default();
        let (flushes, rx) = mpsc::channel(64);
        tokio::spawn(Self::run(store, pending.clone(), rx));
        UsageMeter { pending, flushes }
    }

    /// Adds one action's counts to the bucket of `at`'s hour.
    pub(crate) fn record(
        &self,
        scope: &Scope,
        integration_id: &str,
        at: Timestamp,
        u: ActionUsage,
    ) {
        let add = UsageCounts {
            calls: 1,
            errors: i64::from(u.failed),
            duration_ms: u.duration_ms.max(0),
            input_bytes: i64::try_from(u.input_bytes).unwrap_or(i64::MAX),
            output_bytes: i64::try_from(u.output_bytes).unwrap_or(i64::MAX),
        };
        lock(&self.pending)
            .entry((scope.clone(), integration_id.to_owned(), hour_of(at)))
            .or_default()
            .add(&add);
    }

    /// Writes every count recorded so far; returns once they are stored.
    pub(crate) async fn flush(&self) -> Result<()> {
        let (done, wait) = oneshot::channel();
        let stopped = || ServiceError::internal(&"the usage flusher has stopped");
        self.flushes.send(done).await.map_err(|_| stopped())?;
        match wait.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(ServiceError::internal(&format!("usage not stored: {e}"))),
            Err(_) => Err(stopped()),
        }
    }

    async fn run(
        store: Arc<dyn Store>,
        pending: Pending,
        mut requests: mpsc::Receiver<oneshot::Sender<Result<(), String>>>,
    ) {
        let mut tick = tokio::time::interval(FLUSH_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let _ = Self::write(&*store, &pending).await;
                }
                request = requests.recv() => {
                    let result = Self::write(&*store, &pending).await;
                    match request {
                        Some(done) => {
                            let _ = done.send(result);
                        }
                        // The services are gone; the last counts are written.
                        None => return,
                    }
                }
            }
        }
    }

    /// One flush: takes the pending counts and stores them; on failure puts
    /// them back, to go with the next flush.
    async fn write(store: &dyn Store, pending: &Pending) -> Result<(), String> {
        let batch: Vec<UsageRecord> = std::mem::take(&mut *lock(pending))
            .into_iter()
            .map(|((scope, integration_id, hour), counts)| UsageRecord {
                scope,
                integration_id,
                hour,
                counts,
            })
            .collect();
        if batch.is_empty() {
            return Ok(());
        }
        let rows = batch.len();
        match store.add_usage(batch.clone(), Timestamp::now()).await {
            Ok(()) => Ok(()),
            Err(e) => {
                tracing::warn!(error = %e, rows, "cannot store usage counts; keeping them for the next flush");
                let mut map = lock(pending);
                for r in batch {
                    map.entry((r.scope, r.integration_id, r.hour))
                        .or_default()
                        .add(&r.counts);
                }
                Err(e.to_string())
            }
        }
    }
}

/// Query parameters of `GET /api/usage`.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UsageQueryIn {
    /// Only this integration.
    pub integration: Option<String>,
    /// RFC 3339: from the hour holding it on. Default: 24 hours before `to`.
    pub from: Option<String>,
    /// RFC 3339, exclusive: hours starting before it. Default: the end of the
    /// current hour. At most 92 days after `from`.
    pub to: Option<String>,
}

/// One integration's counts in one hour.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UsageHourOut {
    pub integration_id: String,
    /// The start of the UTC hour.
    pub hour: Timestamp,
    pub calls: i64,
    pub errors: i64,
    /// The calls' durations added up.
    pub duration_ms: i64,
    pub input_bytes: i64,
    pub output_bytes: i64,
}

/// Counts over the whole range, of one integration or of all.
#[derive(Debug, Clone, Default, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UsageTotalsOut {
    pub calls: i64,
    pub errors: i64,
    pub duration_ms: i64,
    /// `durationMs / calls`, rounded; absent without calls.
    pub avg_duration_ms: Option<i64>,
    pub input_bytes: i64,
    pub output_bytes: i64,
}

impl UsageTotalsOut {
    fn from_counts(c: &UsageCounts) -> UsageTotalsOut {
        UsageTotalsOut {
            calls: c.calls,
            errors: c.errors,
            duration_ms: c.duration_ms,
            avg_duration_ms: (c.calls > 0).then(|| (c.duration_ms + c.calls / 2) / c.calls),
            input_bytes: c.input_bytes,
            output_bytes: c.output_bytes,
        }
    }
}

/// One integration's totals over the range.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IntegrationUsageOut {
    pub integration_id: String,
    #[serde(flatten)]
    pub totals: UsageTotalsOut,
}

/// The caller's usage over a range of hours.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UsageOut {
    /// The start of the first hour covered.
    pub from: Timestamp,
    /// The end of the range (exclusive).
    pub to: Timestamp,
    /// Every hour with calls, oldest first, then by integration.
    pub hours: Vec<UsageHourOut>,
    /// Per integration, most calls first.
    pub integrations: Vec<IntegrationUsageOut>,
    /// Everything in the range.
    pub totals: UsageTotalsOut,
}

impl Services {
    /// The metering of actions in this process.
    pub(crate) fn meter(&self) -> &UsageMeter {
        &self.inner.usage
    }

    /// Writes the usage counts recorded in this process so far.
    pub async fn flush_usage(&self) -> Result<()> {
        self.inner.usage.flush().await
    }

    /// The usage of the caller's scope. Reads first flush this process's
    /// pending counts, so one server reads its own calls at once; with
    /// several servers, another's last second may not be stored yet.
    pub async fn usage(&self, caller: &Caller, q: UsageQueryIn) -> Result<UsageOut> {
        let scope = caller.scope_with(Feature::IntegrationsView)?;
        let mut errors = Vec::new();
        if let Some(id) = &q.integration
            && self.registry().entry(id).is_none()
        {
            return Err(ServiceError::NotFound(format!("no integration `{id}`")));
        }
        let mut time = |name: &str, v: Option<String>| {
            v.and_then(|s| {
                Timestamp::parse_rfc3339(&s)
                    .map_err(|e| errors.push(FieldError::new(name, "invalid_timestamp", e)))
                    .ok()
            })
        };
        let from_in = time("from", q.from);
        let to_in = time("to", q.to);
        if !errors.is_empty() {
            return Err(ServiceError::invalid("the usage query is invalid", errors));
        }
        let to = to_in.unwrap_or_else(|| hour_of(self.now()).plus_seconds(3600));
        let from = hour_of(from_in.unwrap_or_else(|| to.plus_seconds(-86_400)));
        if from >= to {
            errors.push(FieldError::new(
                "from",
                "out_of_range",
                "must be before `to`",
            ));
        } else if to.as_micros() - from.as_micros() > MAX_RANGE_DAYS * 86_400 * 1_000_000 {
            errors.push(FieldError::new(
                "from",
                "out_of_range",
                format!("the range may cover at most {MAX_RANGE_DAYS} days"),
            ));
        }
        if !errors.is_empty() {
            return Err(ServiceError::invalid("the usage query is invalid", errors));
        }
        self.flush_usage().await?;
        let rows = self
            .store()
            .query_usage(
                scope,
                &UsageQuery {
                    integration_id: q.integration,
                    from,
                    until: to,
                },
            )
            .await?;
        Ok(summarize(from, to, rows))
    }
}

/// The hours, per-integration totals and overall totals of stored rows.
fn summarize(from: Timestamp, to: Timestamp, rows: Vec<UsageRecord>) -> UsageOut {
    let mut per: HashMap<String, UsageCounts> = HashMap::new();
    let mut all = UsageCounts::default();
    let hours = rows
        .into_iter()
        .map(|r| {
            per.entry(r.integration_id.clone())
                .or_default()
                .add(&r.counts);
            all.add(&r.counts);
            UsageHourOut {
                integration_id: r.integration_id,
                hour: r.hour,
                calls: r.counts.calls,
                errors: r.counts.errors,
                duration_ms: r.counts.duration_ms,
                input_bytes: r.counts.input_bytes,
                output_bytes: r.counts.output_bytes,
            }
        })
        .collect();
    let mut integrations: Vec<IntegrationUsageOut> = per
        .into_iter()
        .map(|(integration_id, c)| IntegrationUsageOut {
            integration_id,
            totals: UsageTotalsOut::from_counts(&c),
        })
        .collect();
    integrations.sort_by(|a, b| {
        b.totals
            .calls
            .cmp(&a.totals.calls)
            .then_with(|| a.integration_id.cmp(&b.integration_id))
    });
    UsageOut {
        from,
        to,
        hours,
        integrations,
        totals: UsageTotalsOut::from_counts(&all),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_add_up_per_integration_and_overall() {
        let scope = Scope::new("t", "o");
        let row = |id: &str, hour: i64, calls: i64, errors: i64, ms: i64| UsageRecord {
            scope: scope.clone(),
            integration_id: id.into(),
            hour: Timestamp::from_micros(hour * patchbay_store::usage::HOUR_MICROS),
            counts: UsageCounts {
                calls,
                errors,
                duration_ms: ms,
                input_bytes: calls * 10,
                output_bytes: calls * 100,
            },
        };
        let out = summarize(
            Timestamp::from_micros(0),
            Timestamp::from_micros(1),
            vec![
                row("b", 1, 1, 0, 10),
                row("a", 1, 2, 1, 5),
                row("b", 2, 2, 2, 21),
            ],
        );
        assert_eq!(out.hours.len(), 3);
        let ids: Vec<_> = out
            .integrations
            .iter()
            .map(|i| i.integration_id.as_str())
            .collect();
        assert_eq!(ids, ["b", "a"], "most calls first");
        assert_eq!(
            out.integrations[0].totals,
            UsageTotalsOut {
                calls: 3,
                errors: 2,
                duration_ms: 31,
                avg_duration_ms: Some(10),
                input_bytes: 30,
                output_bytes: 300,
            }
        );
        assert_eq!(
            out.integrations[1].totals.avg_duration_ms,
            Some(3),
            "2.5 rounds up"
        );
        assert_eq!(out.totals.calls, 5);
        assert_eq!(out.totals.errors, 3);
        assert_eq!(
            summarize(Timestamp::from_micros(0), Timestamp::from_micros(1), vec![])
                .totals
                .avg_duration_ms,
            None
        );
    }
}
