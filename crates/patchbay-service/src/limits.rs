//! The per-tenant concurrency limit of connector actions.
//!
//! A tenant runs at most [`ActionLimits::concurrency`] actions at once
//! (default 5); further calls wait in the tenant's queue, first come first
//! served, at most [`ActionLimits::queue`] of them (default 20) and each at
//! most [`ActionLimits::max_wait`] (default 10 s). A call that finds the
//! queue full, or waits longer than that, is refused with
//! [`ServiceError::Overloaded`] (HTTP 429 `tenant_concurrency_exceeded`
//! with `Retry-After`). One tenant's burst therefore never holds another
//! tenant's calls back, and a tenant's backlog stays bounded in memory.
//!
//! **Per process, not cluster-wide.** The gate lives in this process's
//! memory: with N servers sharing a PostgreSQL database, a tenant may run up
//! to N × `concurrency` actions. That is deliberate: the limit protects this
//! process (its connections, memory and the providers it calls) from one
//! tenant, and keeping it in memory costs nothing per call, where a shared
//! counter would add a database round trip (and a lease to recover from
//! crashed holders) to every action. A cluster-wide quota belongs with
//! usage metering, which is stored.
//!
//! Each tenant's semaphore exists only while the tenant has calls running or
//! waiting: the last one out removes it, so the map holds busy tenants only.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use patchbay_core::TenantId;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::ServiceError;

/// How many actions a tenant may run and queue in this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActionLimits {
    /// Actions of one tenant running at once (at least 1).
    pub concurrency: u32,
    /// Calls of one tenant waiting for a slot; 0 refuses at once when busy.
    pub queue: u32,
    /// How long a call waits in the queue before it is refused.
    pub max_wait: Duration,
}

impl Default for ActionLimits {
    fn default() -> Self {
        ActionLimits {
            concurrency: 5,
            queue: 20,
            max_wait: Duration::from_secs(10),
        }
    }
}

impl ActionLimits {
    /// The `Retry-After` of a refusal: the longest wait, rounded up to whole
    /// seconds (at least 1). By then every call waiting at the refusal has
    /// started or been refused itself.
    pub fn retry_after_secs(&self) -> u64 {
        let ms = u64::try_from(self.max_wait.as_millis()).unwrap_or(u64::MAX);
        ms.div_ceil(1000).max(1)
    }
}

/// One busy tenant: its slots and who is using or waiting for them.
#[derive(Debug)]
struct Lane {
    slots: Arc<Semaphore>,
    /// Calls waiting for a slot.
    waiting: u32,
    /// Calls running or waiting; the lane is removed when it drops to 0.
    users: u32,
}

#[derive(Debug)]
struct State {
    limits: ActionLimits,
    lanes: HashMap<TenantId, Lane>,
}

/// The gate every action passes (see the module docs).
#[derive(Debug, Clone)]
pub(crate) struct ActionGate {
    state: Arc<Mutex<State>>,
}

impl Default for ActionGate {
    fn default() -> Self {
        ActionGate::new(ActionLimits::default())
    }
}

/// A call's place in its tenant's lane: counted as a user until dropped
/// (also when the waiting call is cancelled, e.g. its client went away).
#[derive(Debug)]
struct Ticket {
    state: Arc<Mutex<State>>,
    tenant: TenantId,
    waiting: bool,
}

impl Ticket {
    fn stop_waiting(&mut self) {
        if std::mem::take(&mut self.waiting) {
            let mut state = lock(&self.state);
            if let Some(lane) = state.lanes.get_mut(&self.tenant) {
                lane.waiting -= 1;
            }
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut state = lock(&self.state);
        let empty = match state.lanes.get_mut(&self.tenant) {
            Some(lane) => {
                if self.waiting {
                    lane.waiting -= 1;
                }
                lane.users -= 1;
                lane.users == 0
            }
            None => false,
        };
        if empty {
            state.lanes.remove(&self.tenant);
        }
    }
}

/// A running action's slot; dropping it frees the slot for the next call.
#[derive(Debug)]
pub(crate) struct ActionSlot {
    // Field order matters: the permit goes back before the ticket may remove
    // the lane, so a removed lane has no slot in use.
    _permit: OwnedSemaphorePermit,
    _ticket: Ticket,
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl ActionGate {
    pub(crate) fn new(limits: ActionLimits) -> ActionGate {
        ActionGate {
            state: Arc::new(Mutex::new(State {
                limits: sanitized(limits),
                lanes: HashMap::new(),
            })),
        }
    }

    pub(crate) fn limits(&self) -> ActionLimits {
        lock(&self.state).limits
    }

    /// New limits apply to each tenant from its next idle moment on (a busy
    /// tenant keeps its current slots until its calls are done).
    pub(crate) fn set_limits(&self, limits: ActionLimits) {
        lock(&self.state).limits = sanitized(limits);
    }

    /// How many calls of `tenant` run and wait now (for tests and metrics).
    pub(crate) fn load(&self, tenant: &TenantId) -> (u32, u32) {
        let state = lock(&self.state);
        state
            .lanes
            .get(tenant)
            .map_or((0, 0), |l| (l.users - l.waiting, l.waiting))
    }

    /// Takes a slot for one of `tenant`'s actions: at once when one is free,
    /// else after waiting in the tenant's queue; refused when the queue is
    /// full or the wait too long.
    pub(crate) async fn enter(&self, tenant: &TenantId) -> Result<ActionSlot, ServiceError> {
        let (slots, limits, mut ticket) = {
            let mut state = lock(&self.state);
            let limits = state.limits;
            let lane = state.lanes.entry(tenant.clone()).or_insert_with(|| Lane {
                slots: Arc::new(Semaphore::new(limits.concurrency as usize)),
                waiting: 0,
                users: 0,
            });
            // Tokio's semaphore hands freed permits to waiters first, so a
            // free permit here means nobody is queued ahead of this call.
            if let Ok(permit) = lane.slots.clone().try_acquire_owned() {
                lane.users += 1;
                drop(state);
                return Ok(ActionSlot {
                    _permit: permit,
                    _ticket: Ticket {
                        state: self.state.clone(),
                        tenant: tenant.clone(),
                        waiting: false,
                    },
                });
            }
            if lane.waiting >= limits.queue {
                let running = lane.users - lane.waiting;
                let waiting = lane.waiting;
                drop(state);
                return Err(refused(&limits, running, waiting));
            }
            lane.waiting += 1;
            lane.users += 1;
            let slots = lane.slots.clone();
            drop(state);
            (
                slots,
                limits,
                Ticket {
                    state: self.state.clone(),
                    tenant: tenant.clone(),
                    waiting: true,
                },
            )
        };
        let acquired = tokio::time::timeout(limits.max_wait, slots.acquire_owned()).await;
        ticket.stop_waiting();
        if let Ok(Ok(permit)) = acquired {
            return Ok(ActionSlot {
                _permit: permit,
                _ticket: ticket,
            });
        }
        // Timed out (the semaphore is never closed). This call still counts
        // as running in the lane until its ticket goes: leave it out.
        let (running, waiting) = self.load(tenant);
        drop(ticket);
        Err(refused(&limits, running.saturating_sub(1), waiting))
    }
}

fn sanitized(limits: ActionLimits) -> ActionLimits {
    ActionLimits {
        concurrency: limits
            .concurrency
            .clamp(1, u32::try_from(Semaphore::MAX_PERMITS).unwrap_or(u32::MAX)),
        ..limits
    }
}

fn refused(limits: &ActionLimits, running: u32, waiting: u32) -> ServiceError {
    ServiceError::Overloaded {
        code: "tenant_concurrency_exceeded",
        message: format!(
            "the tenant already runs {running} actions with {waiting} waiting (limit {} running, {} waiting); retry later",
            limits.concurrency, limits.queue
        ),
        retry_after_secs: limits.retry_after_secs(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(concurrency: u32, queue: u32, wait_ms: u64) -> ActionLimits {
        ActionLimits {
            concurrency,
            queue,
            max_wait: Duration::from_millis(wait_ms),
        }
    }

    #[tokio::test]
    async fn a_tenant_waits_in_order_then_is_refused_while_others_pass() {
        let gate = ActionGate::new(limits(2, 1, 60_000));
        let (a, b) = (TenantId::new("a"), TenantId::new("b"));
        let s1 = gate.enter(&a).await.unwrap();
        let _s2 = gate.enter(&a).await.unwrap();
        // The third waits…
        let waiter = {
            let gate = gate.clone();
            let a = a.clone();
            tokio::spawn(async move { gate.enter(&a).await.map(|_| ()) })
        };
        while gate.load(&a) != (2, 1) {
            tokio::task::yield_now().await;
        }
        // …the fourth finds the queue full…
        let e = gate.enter(&a).await.unwrap_err();
        assert!(
            matches!(
                e,
                ServiceError::Overloaded {
                    code: "tenant_concurrency_exceeded",
                    retry_after_secs: 60,
                    ..
                }
            ),
            "{e:?}"
        );
        // …another tenant is not held back…
        let _b = gate.enter(&b).await.unwrap();
        // …and a freed slot goes to the waiter.
        drop(s1);
        waiter.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_wait_is_bounded_and_idle_tenants_are_forgotten() {
        let gate = ActionGate::new(limits(1, 5, 20));
        let a = TenantId::new("a");
        let slot = gate.enter(&a).await.unwrap();
        let e = gate.enter(&a).await.unwrap_err();
        assert!(
            matches!(
                e,
                ServiceError::Overloaded {
                    retry_after_secs: 1,
                    ..
                }
            ),
            "{e:?}"
        );
        assert_eq!(gate.load(&a), (1, 0), "the refused call left the queue");
        drop(slot);
        assert!(lock(&gate.state).lanes.is_empty());
        // A cancelled waiter leaves no trace either.
        let slot = gate.enter(&a).await.unwrap();
        let gate2 = gate.clone();
        let a2 = a.clone();
        let waiter = tokio::spawn(async move { gate2.enter(&a2).await.map(|_| ()) });
        while gate.load(&a) != (1, 1) {
            tokio::task::yield_now().await;
        }
        waiter.abort();
        let _ = waiter.await;
        assert_eq!(gate.load(&a), (1, 0));
        drop(slot);
        assert!(lock(&gate.state).lanes.is_empty());
    }

    #[tokio::test]
    async fn new_limits_apply_once_a_tenant_is_idle() {
        let gate = ActionGate::new(limits(1, 0, 10));
        let a = TenantId::new("a");
        let slot = gate.enter(&a).await.unwrap();
        gate.set_limits(limits(3, 0, 10));
        assert!(gate.enter(&a).await.is_err(), "busy: still one slot");
        drop(slot);
        let _held: Vec<_> = [
            gate.enter(&a).await,
            gate.enter(&a).await,
            gate.enter(&a).await,
        ]
        .into_iter()
        .map(Result::unwrap)
        .collect();
        assert!(gate.enter(&a).await.is_err());
        // Zero concurrency would refuse everything: at least one slot.
        gate.set_limits(limits(0, 0, 10));
        assert_eq!(gate.limits().concurrency, 1);
    }
}
