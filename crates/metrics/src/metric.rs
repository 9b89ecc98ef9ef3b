//! The metric table: every metric shardwise emits, defined once.
//!
//! Each row gives the KCL name (used as the CloudWatch metric name, so dashboards and alarms built
//! for the Java KCL keep working), the Prometheus base name (snake case, prefixed at run time by
//! [`MetricNames`](crate::MetricNames)), the kind, the unit, the labels it carries and a
//! description.

use metrics::Unit;

use crate::labels::Scope;

/// What kind of instrument a metric is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricKind {
    /// Only goes up; exporters publish the increase (CloudWatch) or the running total (Prometheus).
    Counter,
    /// A value that is set and can go down.
    Gauge,
    /// A distribution of observations (latencies).
    Histogram,
}

/// Every metric shardwise emits. The facade records them through
/// [`ShardMetrics`](crate::ShardMetrics), [`WorkerMetrics`](crate::WorkerMetrics) and
/// [`LeaseStoreMetrics`](crate::LeaseStoreMetrics), or by name with
/// [`MetricNames::name`](crate::MetricNames::name).
///
/// ```
/// use shardwise_metrics::{Metric, MetricKind};
///
/// assert_eq!(Metric::RecordsProcessed.kcl_name(), "RecordsProcessed");
/// assert_eq!(Metric::RecordsProcessed.base_name(), "records_processed_total");
/// assert_eq!(Metric::RecordsProcessed.kind(), MetricKind::Counter);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Metric {
    /// Records handed to the record processor (after KPL deaggregation).
    RecordsProcessed,
    /// Bytes of record data handed to the record processor.
    DataBytesProcessed,
    /// How far the last batch was behind the tip of the shard.
    MillisBehindLatest,
    /// Time spent in the processor's `process_records`.
    ProcessRecordsTime,
    /// Time spent in the processor's `initialize`.
    InitializeTime,
    /// Time spent in the processor's shutdown callbacks.
    ShutdownTime,
    /// Processor callbacks that returned an error.
    ProcessorFailures,
    /// GetRecords calls that returned records (or an empty batch).
    GetRecordsSuccess,
    /// GetRecords calls that failed for a reason other than throttling.
    GetRecordsFailures,
    /// GetRecords calls rejected with `ProvisionedThroughputExceededException`.
    GetRecordsThrottled,
    /// GetRecords call latency.
    GetRecordsTime,
    /// SubscribeToShard subscriptions established.
    SubscribeToShardSuccess,
    /// SubscribeToShard calls or subscriptions that failed, other than throttling.
    SubscribeToShardFailures,
    /// SubscribeToShard calls rejected as throttled (`LimitExceededException`, `ResourceInUseException`).
    SubscribeToShardThrottled,
    /// Time from a SubscribeToShard call until the subscription is established.
    SubscribeToShardTime,
    /// Shard iterators that expired and were re-created.
    ExpiredIterator,
    /// Checkpoints written.
    CheckpointWrites,
    /// Checkpoint writes that failed.
    CheckpointFailures,
    /// User records produced by deaggregating KPL aggregated records.
    KplRecordsDeaggregated,
    /// KPL user records dropped: outside the lease's hash-key range, or in a corrupt aggregate.
    KplRecordsDropped,
    /// Leases this worker holds.
    CurrentLeases,
    /// Leases in the lease table, as last seen by this worker.
    TotalLeases,
    /// Leases this worker took (free or expired).
    TakenLeases,
    /// Leases that reached this worker from another live worker, to balance the fleet.
    StolenLeases,
    /// Hand-offs this worker asked a live worker for.
    HandoffsRequested,
    /// Hand-offs asked for by this worker that the holder completed.
    HandoffsCompleted,
    /// Hand-offs asked for by this worker that it ended with a take: the holder stopped
    /// renewing, or did not finish within the hand-off timeout.
    HandoffsTimedOut,
    /// Time from asking for a hand-off until this worker holds the lease.
    HandoffTime,
    /// Leases this worker lost (taken by another worker, or failed to renew).
    LostLeases,
    /// Leases seen expired when this worker last looked for leases to take.
    ExpiredLeases,
    /// Workers seen holding leases, this one included.
    NumWorkers,
    /// Bytes of record data the worker's readers fetched ahead of the processors (or are
    /// fetching), within the worker's prefetch budget.
    PrefetchedBytes,
    /// Lease-store call latency, by operation.
    LeaseStoreTime,
    /// Lease-store calls that failed, by operation (lost races are not failures).
    LeaseStoreFailures,
}

/// One row of the table.
struct Row {
    metric: Metric,
    kcl_name: &'static str,
    base_name: &'static str,
    kind: MetricKind,
    unit: Unit,
    scope: Scope,
    description: &'static str,
}

const fn row(
    metric: Metric,
    kcl_name: &'static str,
    base_name: &'static str,
    kind: MetricKind,
    unit: Unit,
    scope: Scope,
    description: &'static str,
) -> Row {
    Row {
        metric,
        kcl_name,
        base_name,
        kind,
        unit,
        scope,
        description,
    }
}

use MetricKind::{Counter, Gauge, Histogram};
use Scope::{Operation, Shard, Worker};
use Unit::{Bytes, Count, Milliseconds};

/// The table. Its order is the order of [`Metric`]; a unit test checks that.
#[rustfmt::skip]
const TABLE: &[Row] = &[
    row(Metric::RecordsProcessed, "RecordsProcessed", "records_processed_total", Counter, Count, Shard,
        "Records handed to the record processor, after KPL deaggregation and hash-key filtering"),
    row(Metric::DataBytesProcessed, "DataBytesProcessed", "data_processed_bytes_total", Counter, Bytes, Shard,
        "Bytes of record data handed to the record processor"),
    row(Metric::MillisBehindLatest, "MillisBehindLatest", "millis_behind_latest", Gauge, Milliseconds, Shard,
        "How far the last batch read from the shard was behind its tip, as reported by Kinesis"),
    row(Metric::ProcessRecordsTime, "RecordProcessor.processRecords", "record_processor_process_records_milliseconds", Histogram, Milliseconds, Shard,
        "Time spent in the record processor's process_records"),
    row(Metric::InitializeTime, "RecordProcessor.initialize", "record_processor_initialize_milliseconds", Histogram, Milliseconds, Shard,
        "Time spent in the record processor's initialize"),
    row(Metric::ShutdownTime, "RecordProcessor.shutdown", "record_processor_shutdown_milliseconds", Histogram, Milliseconds, Shard,
        "Time spent in the record processor's lease_lost, shard_ended or shutdown_requested"),
    row(Metric::ProcessorFailures, "RecordProcessor.Failure", "record_processor_failures_total", Counter, Count, Shard,
        "Record processor callbacks that returned an error"),
    row(Metric::GetRecordsSuccess, "KinesisDataFetcher.getRecords.Success", "get_records_success_total", Counter, Count, Shard,
        "GetRecords calls that succeeded"),
    row(Metric::GetRecordsFailures, "KinesisDataFetcher.getRecords.Failure", "get_records_failures_total", Counter, Count, Shard,
        "GetRecords calls that failed, throttling excluded"),
    row(Metric::GetRecordsThrottled, "KinesisDataFetcher.getRecords.Throttled", "get_records_throttled_total", Counter, Count, Shard,
        "GetRecords calls rejected because the shard's read throughput was exceeded"),
    row(Metric::GetRecordsTime, "KinesisDataFetcher.getRecords.Time", "get_records_milliseconds", Histogram, Milliseconds, Shard,
        "GetRecords call latency"),
    row(Metric::SubscribeToShardSuccess, "SubscribeToShard.Success", "subscribe_to_shard_success_total", Counter, Count, Shard,
        "SubscribeToShard subscriptions established"),
    row(Metric::SubscribeToShardFailures, "SubscribeToShard.Failure", "subscribe_to_shard_failures_total", Counter, Count, Shard,
        "SubscribeToShard calls or subscriptions that failed, throttling excluded"),
    row(Metric::SubscribeToShardThrottled, "SubscribeToShard.Throttled", "subscribe_to_shard_throttled_total", Counter, Count, Shard,
        "SubscribeToShard calls rejected as throttled or with another subscription still active"),
    row(Metric::SubscribeToShardTime, "SubscribeToShard.Time", "subscribe_to_shard_milliseconds", Histogram, Milliseconds, Shard,
        "Time from a SubscribeToShard call until the subscription is established"),
    row(Metric::ExpiredIterator, "ExpiredIterator", "expired_iterators_total", Counter, Count, Shard,
        "Shard iterators that expired and were re-created from the last delivered record"),
    row(Metric::CheckpointWrites, "Checkpoint.Success", "checkpoint_writes_total", Counter, Count, Shard,
        "Checkpoints written to the lease store"),
    row(Metric::CheckpointFailures, "Checkpoint.Failure", "checkpoint_failures_total", Counter, Count, Shard,
        "Checkpoint writes that failed or were refused because the lease was lost"),
    row(Metric::KplRecordsDeaggregated, "KplRecordsDeaggregated", "kpl_records_deaggregated_total", Counter, Count, Shard,
        "User records produced by deaggregating KPL aggregated records"),
    row(Metric::KplRecordsDropped, "KplRecordsDropped", "kpl_records_dropped_total", Counter, Count, Shard,
        "KPL user records dropped: outside the lease's hash-key range or in a corrupt aggregate"),
    row(Metric::CurrentLeases, "CurrentLeases", "current_leases", Gauge, Count, Worker,
        "Leases this worker holds"),
    row(Metric::TotalLeases, "TotalLeases", "total_leases", Gauge, Count, Worker,
        "Leases in the lease table, as last listed by this worker"),
    row(Metric::TakenLeases, "TakenLeases", "taken_leases_total", Counter, Count, Worker,
        "Leases this worker took because they were free or expired"),
    row(Metric::StolenLeases, "StolenLeases", "stolen_leases_total", Counter, Count, Worker,
        "Leases that reached this worker from another live worker to balance the fleet"),
    row(Metric::HandoffsRequested, "HandoffsRequested", "handoffs_requested_total", Counter, Count, Worker,
        "Lease hand-offs this worker asked a live worker for"),
    row(Metric::HandoffsCompleted, "HandoffsCompleted", "handoffs_completed_total", Counter, Count, Worker,
        "Lease hand-offs asked for by this worker that the holder completed"),
    row(Metric::HandoffsTimedOut, "HandoffsTimedOut", "handoffs_timed_out_total", Counter, Count, Worker,
        "Lease hand-offs asked for by this worker that it ended with a take (the holder stopped renewing or ran out of time)"),
    row(Metric::HandoffTime, "Handoff.Time", "handoff_milliseconds", Histogram, Milliseconds, Worker,
        "Time from asking for a lease hand-off until this worker holds the lease"),
    row(Metric::LostLeases, "LostLeases", "lost_leases_total", Counter, Count, Worker,
        "Leases this worker lost to another worker or failed to renew in time"),
    row(Metric::ExpiredLeases, "ExpiredLeases", "expired_leases", Gauge, Count, Worker,
        "Leases seen expired when this worker last looked for leases to take"),
    row(Metric::NumWorkers, "NumWorkers", "workers", Gauge, Count, Worker,
        "Workers seen holding leases, this one included"),
    row(Metric::PrefetchedBytes, "PrefetchedBytes", "prefetched_bytes", Gauge, Bytes, Worker,
        "Bytes of record data fetched ahead of the processors or being fetched, within the worker's prefetch budget"),
    row(Metric::LeaseStoreTime, "LeaseStore.Time", "lease_store_call_milliseconds", Histogram, Milliseconds, Operation,
        "Lease-store call latency, by operation"),
    row(Metric::LeaseStoreFailures, "LeaseStore.Failure", "lease_store_failures_total", Counter, Count, Operation,
        "Lease-store calls that failed, by operation; lost races are outcomes, not failures"),
];

impl Metric {
    /// Every metric, in table order.
    pub const ALL: [Metric; 34] = [
        Metric::RecordsProcessed,
        Metric::DataBytesProcessed,
        Metric::MillisBehindLatest,
        Metric::ProcessRecordsTime,
        Metric::InitializeTime,
        Metric::ShutdownTime,
        Metric::ProcessorFailures,
        Metric::GetRecordsSuccess,
        Metric::GetRecordsFailures,
        Metric::GetRecordsThrottled,
        Metric::GetRecordsTime,
        Metric::SubscribeToShardSuccess,
        Metric::SubscribeToShardFailures,
        Metric::SubscribeToShardThrottled,
        Metric::SubscribeToShardTime,
        Metric::ExpiredIterator,
        Metric::CheckpointWrites,
        Metric::CheckpointFailures,
        Metric::KplRecordsDeaggregated,
        Metric::KplRecordsDropped,
        Metric::CurrentLeases,
        Metric::TotalLeases,
        Metric::TakenLeases,
        Metric::StolenLeases,
        Metric::HandoffsRequested,
        Metric::HandoffsCompleted,
        Metric::HandoffsTimedOut,
        Metric::HandoffTime,
        Metric::LostLeases,
        Metric::ExpiredLeases,
        Metric::NumWorkers,
        Metric::PrefetchedBytes,
        Metric::LeaseStoreTime,
        Metric::LeaseStoreFailures,
    ];

    fn row(self) -> &'static Row {
        // `Metric` is a fieldless enum declared in table order (checked by a test).
        &TABLE[self as usize]
    }

    /// The KCL's name for this metric, or a name in the KCL's style where the KCL has none. The
    /// CloudWatch exporter publishes under this name.
    pub fn kcl_name(self) -> &'static str {
        self.row().kcl_name
    }

    /// The snake-case name without prefix; the Prometheus name is `{prefix}_{base_name}`.
    pub fn base_name(self) -> &'static str {
        self.row().base_name
    }

    /// Counter, gauge or histogram.
    pub fn kind(self) -> MetricKind {
        self.row().kind
    }

    /// The unit values are recorded in.
    pub fn unit(self) -> Unit {
        self.row().unit
    }

    /// One sentence saying what is measured.
    pub fn description(self) -> &'static str {
        self.row().description
    }

    /// The label keys this metric carries at [`MetricsLevel::Detailed`](crate::MetricsLevel::Detailed).
    pub fn label_keys(self) -> &'static [&'static str] {
        self.row().scope.label_keys()
    }

    /// The metric whose KCL name is `name`.
    pub fn from_kcl_name(name: &str) -> Option<Metric> {
        TABLE.iter().find(|r| r.kcl_name == name).map(|r| r.metric)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn the_enum_and_the_table_are_in_the_same_order() {
        assert_eq!(TABLE.len(), Metric::ALL.len());
        for (i, metric) in Metric::ALL.iter().enumerate() {
            assert_eq!(TABLE[i].metric, *metric, "row {i}");
            assert_eq!(*metric as usize, i, "{metric:?}");
        }
    }

    #[test]
    fn names_are_unique() {
        let kcl: HashSet<_> = Metric::ALL.iter().map(|m| m.kcl_name()).collect();
        let base: HashSet<_> = Metric::ALL.iter().map(|m| m.base_name()).collect();
        assert_eq!(kcl.len(), Metric::ALL.len());
        assert_eq!(base.len(), Metric::ALL.len());
    }

    #[test]
    fn base_names_follow_the_naming_rule() {
        for metric in Metric::ALL {
            let name = metric.base_name();
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{name}: snake case"
            );
            match metric.kind() {
                MetricKind::Counter => assert!(name.ends_with("_total"), "{name}: counter"),
                MetricKind::Gauge | MetricKind::Histogram => {
                    assert!(!name.ends_with("_total"), "{name}: not a counter")
                }
            }
            match metric.unit() {
                Unit::Milliseconds => assert!(name.contains("millis"), "{name}: says its unit"),
                Unit::Bytes => assert!(name.contains("_bytes"), "{name}: says its unit"),
                _ => {}
            }
            if metric.kind() == MetricKind::Histogram {
                assert_eq!(
                    metric.unit(),
                    Unit::Milliseconds,
                    "{name}: histograms are latencies"
                );
            }
        }
    }

    #[test]
    fn kcl_names_round_trip() {
        for metric in Metric::ALL {
            assert_eq!(Metric::from_kcl_name(metric.kcl_name()), Some(metric));
            assert!(!metric.description().is_empty());
            assert!(metric.kcl_name().len() <= 255, "CloudWatch's limit");
        }
        assert_eq!(Metric::from_kcl_name("NoSuchMetric"), None);
    }
}
