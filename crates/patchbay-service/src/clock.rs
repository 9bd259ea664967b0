//! The time source. Services ask a [`Clock`] rather than the system, so that
//! rules depending on dates (API-version sunsets, retention, token expiry) are
//! tested on chosen days instead of whatever day the tests happen to run.

use std::sync::atomic::{AtomicI64, Ordering};

use patchbay_core::Timestamp;

/// Where "now" comes from.
pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    fn now(&self) -> Timestamp;
}

/// The system clock.
#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A clock that stays where it is put (tests).
#[derive(Debug)]
pub struct FixedClock(AtomicI64);

impl FixedClock {
    pub fn new(at: Timestamp) -> FixedClock {
        FixedClock(AtomicI64::new(at.as_micros()))
    }

    pub fn set(&self, at: Timestamp) {
        self.0.store(at.as_micros(), Ordering::SeqCst);
    }

    pub fn advance_seconds(&self, secs: i64) {
        self.0.fetch_add(secs * 1_000_000, Ordering::SeqCst);
    }
}

impl Clock for FixedClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_micros(self.0.load(Ordering::SeqCst))
    }
}
