//! Failures injected on purpose, in dev mode only (`NENE_ENV=dev`, set through the signed
//! `POST /internal/v1/dev/faults`): the end-to-end tests use them to prove that an outage of one
//! part loses nothing and charges nothing twice. A production core never mounts the route, so the
//! counters stay at zero.

use std::sync::atomic::{AtomicU32, Ordering};

#[derive(Debug, Default)]
pub struct DevFaults {
    /// The next this-many charge credits fail as if the ledger were down.
    pub credit_failures: AtomicU32,
    /// The next this-many joins answer 503 as if the core were down, before touching anything.
    pub join_failures: AtomicU32,
}

fn take(counter: &AtomicU32) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
            left.checked_sub(1)
        })
        .is_ok()
}

impl DevFaults {
    /// Whether this charge credit must fail (and counts it).
    pub fn take_credit_failure(&self) -> bool {
        take(&self.credit_failures)
    }

    /// Whether this join must fail (and counts it).
    pub fn take_join_failure(&self) -> bool {
        take(&self.join_failures)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fault_counter_fails_exactly_that_many_times() {
        let faults = DevFaults::default();
        faults.join_failures.store(2, Ordering::SeqCst);
        let outcomes: Vec<bool> = (0..4).map(|_| faults.take_join_failure()).collect();
        assert_eq!(outcomes, [true, true, false, false]);
        assert!(!faults.take_credit_failure());
    }
}
