//! Metrics and tracing conventions for shardwise, in the Kinesis Client Library's vocabulary.
//!
//! The library emits through the [`metrics`] facade only and never installs a recorder: the
//! application chooses one, perhaps one of the two exporters here.
//!
//! - [`Metric`]: every metric, defined once in one table: KCL name (the CloudWatch name),
//!   Prometheus base name, kind, unit, labels, description.
//! - [`MetricNames`]: the recorded names, `{prefix}_{base_name}` (`shardwise_` by default).
//! - [`describe`]: registers units and descriptions with the installed recorder.
//! - [`MetricsLevel`] and [`Labels`]: which labels a series carries (`none` records nothing,
//!   `summary` drops `shard`, `detailed` keeps everything).
//! - [`ShardMetrics`], [`WorkerMetrics`], [`LeaseStoreMetrics`]: handles registered once and
//!   recorded through on the hot path.
//! - [`trace`]: span and field names for `tracing`.
//! - `prometheus` (feature `prometheus`): serves `/metrics` with `metrics-exporter-prometheus`.
//! - `cloudwatch` (feature `cloudwatch`): publishes with `PutMetricData`, aggregating in memory.
//!
//! # Names
//!
//! | KCL / CloudWatch name | Prometheus name (default prefix) | kind | unit | labels |
//! | --- | --- | --- | --- | --- |
//! | `RecordsProcessed` | `shardwise_records_processed_total` | counter | count | stream, shard, worker |
//! | `DataBytesProcessed` | `shardwise_data_processed_bytes_total` | counter | bytes | stream, shard, worker |
//! | `MillisBehindLatest` | `shardwise_millis_behind_latest` | gauge | ms | stream, shard, worker |
//! | `RecordProcessor.processRecords` | `shardwise_record_processor_process_records_milliseconds` | histogram | ms | stream, shard, worker |
//! | `RecordProcessor.initialize` | `shardwise_record_processor_initialize_milliseconds` | histogram | ms | stream, shard, worker |
//! | `RecordProcessor.shutdown` | `shardwise_record_processor_shutdown_milliseconds` | histogram | ms | stream, shard, worker |
//! | `RecordProcessor.Failure` | `shardwise_record_processor_failures_total` | counter | count | stream, shard, worker |
//! | `KinesisDataFetcher.getRecords.Success` | `shardwise_get_records_success_total` | counter | count | stream, shard, worker |
//! | `KinesisDataFetcher.getRecords.Failure` | `shardwise_get_records_failures_total` | counter | count | stream, shard, worker |
//! | `KinesisDataFetcher.getRecords.Throttled` | `shardwise_get_records_throttled_total` | counter | count | stream, shard, worker |
//! | `KinesisDataFetcher.getRecords.Time` | `shardwise_get_records_milliseconds` | histogram | ms | stream, shard, worker |
//! | `SubscribeToShard.Success` | `shardwise_subscribe_to_shard_success_total` | counter | count | stream, shard, worker |
//! | `SubscribeToShard.Failure` | `shardwise_subscribe_to_shard_failures_total` | counter | count | stream, shard, worker |
//! | `SubscribeToShard.Throttled` | `shardwise_subscribe_to_shard_throttled_total` | counter | count | stream, shard, worker |
//! | `SubscribeToShard.Time` | `shardwise_subscribe_to_shard_milliseconds` | histogram | ms | stream, shard, worker |
//! | `ExpiredIterator` | `shardwise_expired_iterators_total` | counter | count | stream, shard, worker |
//! | `Checkpoint.Success` | `shardwise_checkpoint_writes_total` | counter | count | stream, shard, worker |
//! | `Checkpoint.Failure` | `shardwise_checkpoint_failures_total` | counter | count | stream, shard, worker |
//! | `KplRecordsDeaggregated` | `shardwise_kpl_records_deaggregated_total` | counter | count | stream, shard, worker |
//! | `KplRecordsDropped` | `shardwise_kpl_records_dropped_total` | counter | count | stream, shard, worker |
//! | `CurrentLeases` | `shardwise_current_leases` | gauge | count | worker |
//! | `TotalLeases` | `shardwise_total_leases` | gauge | count | worker |
//! | `TakenLeases` | `shardwise_taken_leases_total` | counter | count | worker |
//! | `StolenLeases` | `shardwise_stolen_leases_total` | counter | count | worker |
//! | `HandoffsRequested` | `shardwise_handoffs_requested_total` | counter | count | worker |
//! | `HandoffsCompleted` | `shardwise_handoffs_completed_total` | counter | count | worker |
//! | `HandoffsTimedOut` | `shardwise_handoffs_timed_out_total` | counter | count | worker |
//! | `Handoff.Time` | `shardwise_handoff_milliseconds` | histogram | ms | worker |
//! | `LostLeases` | `shardwise_lost_leases_total` | counter | count | worker |
//! | `ExpiredLeases` | `shardwise_expired_leases` | gauge | count | worker |
//! | `NumWorkers` | `shardwise_workers` | gauge | count | worker |
//! | `PrefetchedBytes` | `shardwise_prefetched_bytes` | gauge | bytes | worker |
//! | `LeaseStore.Time` | `shardwise_lease_store_call_milliseconds` | histogram | ms | worker, operation |
//! | `LeaseStore.Failure` | `shardwise_lease_store_failures_total` | counter | count | worker, operation |
//!
//! The Prometheus rule: snake case, counters end in `_total`, the unit is in the name. Times
//! stay in milliseconds (not Prometheus's seconds) so that both exporters and the KCL agree on
//! values. CloudWatch names the labels as the KCL names its dimensions: `StreamId`, `ShardId`,
//! `WorkerIdentifier`, `Operation`.
//!
//! ```
//! use shardwise_metrics::{describe, MetricNames, MetricsLevel, ShardMetrics};
//!
//! // The application installed a recorder (or none: then all of this is free).
//! let names = MetricNames::new("shardwise")?;
//! describe(&names);
//! let shard = ShardMetrics::register(&names, MetricsLevel::Detailed, "orders", "shardId-000000000000", "worker-1");
//! shard.records_processed.increment(100);
//! # Ok::<(), shardwise_metrics::Error>(())
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]

mod describe;
mod error;
mod handles;
mod labels;
mod metric;
mod names;
pub mod operation;
pub mod trace;

#[cfg(feature = "cloudwatch")]
pub mod cloudwatch;
#[cfg(feature = "prometheus")]
pub mod prometheus;

pub use describe::describe;
pub use error::Error;
pub use handles::{LeaseStoreMetrics, ShardMetrics, WorkerMetrics, counter, gauge, histogram};
pub use labels::{Labels, MetricsLevel, OPERATION, SHARD, STREAM, WORKER};
pub use metric::{Metric, MetricKind};
pub use names::{DEFAULT_PREFIX, MAX_PREFIX_LEN, MetricNames};

/// The README's example, compiled and run as a doc test.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeExample;
