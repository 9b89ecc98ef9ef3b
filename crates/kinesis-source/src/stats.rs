//! What a reader did: calls that succeeded, failed or were throttled, expired iterators, and
//! call latencies. The caller (the worker) turns these into metrics; this crate emits none.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// Most latencies kept between two [`ReaderStats::take`] calls; older ones are dropped.
const MAX_LATENCIES: usize = 1_024;

#[derive(Debug, Default)]
struct Inner {
    successes: AtomicU64,
    failures: AtomicU64,
    throttles: AtomicU64,
    expired_iterators: AtomicU64,
    latencies_ms: Mutex<Vec<f64>>,
}

/// A shared handle on a reader's counters (`GetRecords` calls for a polling reader,
/// `SubscribeToShard` calls for a fan-out reader).
#[derive(Debug, Clone, Default)]
pub struct ReaderStats(Arc<Inner>);

/// The counts since the previous [`ReaderStats::take`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ReaderCounts {
    /// Calls that succeeded.
    pub successes: u64,
    /// Calls that failed (throttled ones included).
    pub failures: u64,
    /// Calls refused for throttling.
    pub throttles: u64,
    /// Iterators found expired (polling only).
    pub expired_iterators: u64,
    /// Call latencies in milliseconds (at most 1,024 of them).
    pub latencies_ms: Vec<f64>,
}

impl ReaderStats {
    pub(crate) fn success(&self, latency: Duration) {
        self.0.successes.fetch_add(1, Ordering::Relaxed);
        self.latency(latency);
    }

    pub(crate) fn failure(&self, throttled: bool, latency: Duration) {
        self.0.failures.fetch_add(1, Ordering::Relaxed);
        if throttled {
            self.0.throttles.fetch_add(1, Ordering::Relaxed);
        }
        self.latency(latency);
    }

    pub(crate) fn expired_iterator(&self) {
        self.0.expired_iterators.fetch_add(1, Ordering::Relaxed);
    }

    fn latency(&self, latency: Duration) {
        let mut latencies = self
            .0
            .latencies_ms
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if latencies.len() < MAX_LATENCIES {
            latencies.push(latency.as_secs_f64() * 1_000.0);
        }
    }

    /// The counts since the previous call, resetting them.
    pub fn take(&self) -> ReaderCounts {
        let latencies = std::mem::take(
            &mut *self
                .0
                .latencies_ms
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        ReaderCounts {
            successes: self.0.successes.swap(0, Ordering::Relaxed),
            failures: self.0.failures.swap(0, Ordering::Relaxed),
            throttles: self.0.throttles.swap(0, Ordering::Relaxed),
            expired_iterators: self.0.expired_iterators.swap(0, Ordering::Relaxed),
            latencies_ms: latencies,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_returns_deltas() {
        let stats = ReaderStats::default();
        stats.success(Duration::from_millis(3));
        stats.failure(true, Duration::from_millis(1));
        stats.expired_iterator();
        let first = stats.take();
        assert_eq!(
            (
                first.successes,
                first.failures,
                first.throttles,
                first.expired_iterators
            ),
            (1, 1, 1, 1)
        );
        assert_eq!(first.latencies_ms.len(), 2);
        assert_eq!(stats.take(), ReaderCounts::default());
    }
}
