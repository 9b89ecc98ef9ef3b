//! Handles the worker registers once (per shard, per worker, per lease-store operation) and then
//! records through on the hot path without looking names up again.

use metrics::{Counter, Gauge, Histogram, Level, Metadata};

use crate::labels::{Labels, MetricsLevel};
use crate::metric::{Metric, MetricKind};
use crate::names::MetricNames;

static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

/// Registers counter `metric` with `labels` on the current recorder; a no-op handle when
/// `labels` is `None` (level [`MetricsLevel::None`]).
pub fn counter(names: &MetricNames, metric: Metric, labels: Option<&Labels>) -> Counter {
    debug_assert_eq!(metric.kind(), MetricKind::Counter, "{metric:?}");
    match labels {
        None => Counter::noop(),
        Some(labels) => {
            let key = names.key(metric, labels.as_slice().to_vec());
            metrics::with_recorder(|r| r.register_counter(&key, &METADATA))
        }
    }
}

/// Registers gauge `metric`; see [`counter`].
pub fn gauge(names: &MetricNames, metric: Metric, labels: Option<&Labels>) -> Gauge {
    debug_assert_eq!(metric.kind(), MetricKind::Gauge, "{metric:?}");
    match labels {
        None => Gauge::noop(),
        Some(labels) => {
            let key = names.key(metric, labels.as_slice().to_vec());
            metrics::with_recorder(|r| r.register_gauge(&key, &METADATA))
        }
    }
}

/// Registers histogram `metric`; see [`counter`].
pub fn histogram(names: &MetricNames, metric: Metric, labels: Option<&Labels>) -> Histogram {
    debug_assert_eq!(metric.kind(), MetricKind::Histogram, "{metric:?}");
    match labels {
        None => Histogram::noop(),
        Some(labels) => {
            let key = names.key(metric, labels.as_slice().to_vec());
            metrics::with_recorder(|r| r.register_histogram(&key, &METADATA))
        }
    }
}

/// The per-shard metrics of one shard pipeline, registered once when the pipeline starts.
/// Labels follow [`Labels::for_shard`]: at [`MetricsLevel::None`] every handle is a no-op.
///
/// ```
/// use shardwise_metrics::{MetricNames, MetricsLevel, ShardMetrics};
///
/// let names = MetricNames::default();
/// let shard = ShardMetrics::register(&names, MetricsLevel::Detailed, "orders", "shardId-000000000000", "worker-1");
/// shard.records_processed.increment(500);
/// shard.millis_behind_latest.set(0.0);
/// shard.process_records_time.record(12.5);
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct ShardMetrics {
    /// [`Metric::RecordsProcessed`]
    pub records_processed: Counter,
    /// [`Metric::DataBytesProcessed`]
    pub data_bytes_processed: Counter,
    /// [`Metric::MillisBehindLatest`]
    pub millis_behind_latest: Gauge,
    /// [`Metric::ProcessRecordsTime`], in milliseconds
    pub process_records_time: Histogram,
    /// [`Metric::InitializeTime`], in milliseconds
    pub initialize_time: Histogram,
    /// [`Metric::ShutdownTime`], in milliseconds
    pub shutdown_time: Histogram,
    /// [`Metric::ProcessorFailures`]
    pub processor_failures: Counter,
    /// [`Metric::GetRecordsSuccess`]
    pub get_records_success: Counter,
    /// [`Metric::GetRecordsFailures`]
    pub get_records_failures: Counter,
    /// [`Metric::GetRecordsThrottled`]
    pub get_records_throttled: Counter,
    /// [`Metric::GetRecordsTime`], in milliseconds
    pub get_records_time: Histogram,
    /// [`Metric::SubscribeToShardSuccess`]
    pub subscribe_success: Counter,
    /// [`Metric::SubscribeToShardFailures`]
    pub subscribe_failures: Counter,
    /// [`Metric::SubscribeToShardThrottled`]
    pub subscribe_throttled: Counter,
    /// [`Metric::SubscribeToShardTime`], in milliseconds
    pub subscribe_time: Histogram,
    /// [`Metric::ExpiredIterator`]
    pub expired_iterators: Counter,
    /// [`Metric::CheckpointWrites`]
    pub checkpoint_writes: Counter,
    /// [`Metric::CheckpointFailures`]
    pub checkpoint_failures: Counter,
    /// [`Metric::KplRecordsDeaggregated`]
    pub kpl_records_deaggregated: Counter,
    /// [`Metric::KplRecordsDropped`]
    pub kpl_records_dropped: Counter,
}

impl ShardMetrics {
    /// Registers the handles of shard `shard` of `stream`, read by `worker`.
    pub fn register(
        names: &MetricNames,
        level: MetricsLevel,
        stream: &str,
        shard: &str,
        worker: &str,
    ) -> ShardMetrics {
        let labels = Labels::for_shard(level, stream, shard, worker);
        let l = labels.as_ref();
        let c = |m| counter(names, m, l);
        let h = |m| histogram(names, m, l);
        ShardMetrics {
            records_processed: c(Metric::RecordsProcessed),
            data_bytes_processed: c(Metric::DataBytesProcessed),
            millis_behind_latest: gauge(names, Metric::MillisBehindLatest, l),
            process_records_time: h(Metric::ProcessRecordsTime),
            initialize_time: h(Metric::InitializeTime),
            shutdown_time: h(Metric::ShutdownTime),
            processor_failures: c(Metric::ProcessorFailures),
            get_records_success: c(Metric::GetRecordsSuccess),
            get_records_failures: c(Metric::GetRecordsFailures),
            get_records_throttled: c(Metric::GetRecordsThrottled),
            get_records_time: h(Metric::GetRecordsTime),
            subscribe_success: c(Metric::SubscribeToShardSuccess),
            subscribe_failures: c(Metric::SubscribeToShardFailures),
            subscribe_throttled: c(Metric::SubscribeToShardThrottled),
            subscribe_time: h(Metric::SubscribeToShardTime),
            expired_iterators: c(Metric::ExpiredIterator),
            checkpoint_writes: c(Metric::CheckpointWrites),
            checkpoint_failures: c(Metric::CheckpointFailures),
            kpl_records_deaggregated: c(Metric::KplRecordsDeaggregated),
            kpl_records_dropped: c(Metric::KplRecordsDropped),
        }
    }
}

/// The per-worker lease metrics, registered once when the worker starts. Labels follow
/// [`Labels::for_worker`].
#[derive(Clone)]
#[non_exhaustive]
pub struct WorkerMetrics {
    /// [`Metric::CurrentLeases`]
    pub current_leases: Gauge,
    /// [`Metric::TotalLeases`]
    pub total_leases: Gauge,
    /// [`Metric::TakenLeases`]
    pub taken_leases: Counter,
    /// [`Metric::StolenLeases`]
    pub stolen_leases: Counter,
    /// [`Metric::HandoffsRequested`]
    pub handoffs_requested: Counter,
    /// [`Metric::HandoffsCompleted`]
    pub handoffs_completed: Counter,
    /// [`Metric::HandoffsTimedOut`]
    pub handoffs_timed_out: Counter,
    /// [`Metric::HandoffTime`]
    pub handoff_time: Histogram,
    /// [`Metric::LostLeases`]
    pub lost_leases: Counter,
    /// [`Metric::ExpiredLeases`]
    pub expired_leases: Gauge,
    /// [`Metric::NumWorkers`]
    pub num_workers: Gauge,
    /// [`Metric::PrefetchedBytes`]
    pub prefetched_bytes: Gauge,
}

impl WorkerMetrics {
    /// Registers the handles of `worker`.
    pub fn register(names: &MetricNames, level: MetricsLevel, worker: &str) -> WorkerMetrics {
        let labels = Labels::for_worker(level, worker);
        let l = labels.as_ref();
        WorkerMetrics {
            current_leases: gauge(names, Metric::CurrentLeases, l),
            total_leases: gauge(names, Metric::TotalLeases, l),
            taken_leases: counter(names, Metric::TakenLeases, l),
            stolen_leases: counter(names, Metric::StolenLeases, l),
            handoffs_requested: counter(names, Metric::HandoffsRequested, l),
            handoffs_completed: counter(names, Metric::HandoffsCompleted, l),
            handoffs_timed_out: counter(names, Metric::HandoffsTimedOut, l),
            handoff_time: histogram(names, Metric::HandoffTime, l),
            lost_leases: counter(names, Metric::LostLeases, l),
            expired_leases: gauge(names, Metric::ExpiredLeases, l),
            num_workers: gauge(names, Metric::NumWorkers, l),
            prefetched_bytes: gauge(names, Metric::PrefetchedBytes, l),
        }
    }
}

/// The metrics of one lease-store operation, registered once per operation. Labels follow
/// [`Labels::for_operation`]; use the names in [`operation`](crate::operation).
///
/// ```
/// use shardwise_metrics::{operation, LeaseStoreMetrics, MetricNames, MetricsLevel};
///
/// let renew = LeaseStoreMetrics::register(&MetricNames::default(), MetricsLevel::Summary, "worker-1", operation::RENEW_LEASE);
/// renew.time.record(3.0);
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct LeaseStoreMetrics {
    /// [`Metric::LeaseStoreTime`], in milliseconds
    pub time: Histogram,
    /// [`Metric::LeaseStoreFailures`]
    pub failures: Counter,
}

impl LeaseStoreMetrics {
    /// Registers the handles of `operation` called by `worker`.
    pub fn register(
        names: &MetricNames,
        level: MetricsLevel,
        worker: &str,
        operation: &str,
    ) -> LeaseStoreMetrics {
        let labels = Labels::for_operation(level, worker, operation);
        LeaseStoreMetrics {
            time: histogram(names, Metric::LeaseStoreTime, labels.as_ref()),
            failures: counter(names, Metric::LeaseStoreFailures, labels.as_ref()),
        }
    }
}

impl std::fmt::Debug for ShardMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardMetrics").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for WorkerMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerMetrics").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for LeaseStoreMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseStoreMetrics").finish_non_exhaustive()
    }
}
