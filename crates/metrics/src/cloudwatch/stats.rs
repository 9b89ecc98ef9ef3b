//! What the exporter counts about itself: sends, failures and everything it dropped.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) collected_data: AtomicU64,
    pub(crate) rejected_series: AtomicU64,
    pub(crate) rejected_values: AtomicU64,
    pub(crate) dropped_samples: AtomicU64,
    pub(crate) dropped_data: AtomicU64,
    pub(crate) sent_requests: AtomicU64,
    pub(crate) sent_data: AtomicU64,
    pub(crate) failed_requests: AtomicU64,
    pub(crate) failed_data: AtomicU64,
}

/// A snapshot of the exporter's own counters, from [`CloudWatchHandle::stats`](super::CloudWatchHandle::stats).
///
/// A *datum* is one metric data item of a `PutMetricData` request. Everything lost is counted in
/// one of the `rejected_*`, `dropped_*` or `failed_*` fields.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CloudWatchStats {
    /// Data collected from the aggregates so far. Once the exporter has shut down, this equals
    /// `sent_data + failed_data + dropped_data`.
    pub collected_data: u64,
    /// Series refused at registration: over `max_series`, over CloudWatch's name or dimension
    /// limits, or registered again as another kind.
    pub rejected_series: u64,
    /// Values CloudWatch would refuse (NaN, infinite, beyond ±2^360), not recorded.
    pub rejected_values: u64,
    /// Histogram observations dropped because the series already had `max_values_per_series`
    /// distinct values this interval.
    pub dropped_samples: u64,
    /// Data dropped because the buffer of requests waiting to be sent was full (CloudWatch slow
    /// or failing).
    pub dropped_data: u64,
    /// `PutMetricData` requests that succeeded.
    pub sent_requests: u64,
    /// Data in requests that succeeded.
    pub sent_data: u64,
    /// `PutMetricData` requests that failed or timed out (after the SDK's own retries).
    pub failed_requests: u64,
    /// Data in requests that failed.
    pub failed_data: u64,
}

impl Counters {
    pub(crate) fn snapshot(&self) -> CloudWatchStats {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        CloudWatchStats {
            collected_data: get(&self.collected_data),
            rejected_series: get(&self.rejected_series),
            rejected_values: get(&self.rejected_values),
            dropped_samples: get(&self.dropped_samples),
            dropped_data: get(&self.dropped_data),
            sent_requests: get(&self.sent_requests),
            sent_data: get(&self.sent_data),
            failed_requests: get(&self.failed_requests),
            failed_data: get(&self.failed_data),
        }
    }
}
