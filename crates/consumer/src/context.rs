//! What the worker, its renewer and every pipeline share.

use std::sync::Arc;

use shardwise_kinesis_source::{KinesisApi, MemoryBudget};
use shardwise_lease_core::{LeaseStore, WorkerId};
use tokio::time::Instant;

use crate::config::ConsumerConfig;
use crate::processor::ProcessorFactory;

/// One worker's settings and connections, shared read-only by its tasks.
pub(crate) struct Context {
    pub(crate) store: Arc<dyn LeaseStore>,
    pub(crate) kinesis: Arc<dyn KinesisApi>,
    /// The stream, or the streams of a multi-stream application.
    pub(crate) streams: crate::streams::Streams,
    pub(crate) worker_id: WorkerId,
    pub(crate) config: ConsumerConfig,
    pub(crate) factory: Arc<dyn ProcessorFactory>,
    pub(crate) metric_names: shardwise_metrics::MetricNames,
    /// The worker's metrics, shared by its tasks.
    pub(crate) worker_metrics: shardwise_metrics::WorkerMetrics,
    /// The prefetch memory all readers share.
    pub(crate) prefetch: MemoryBudget,
    pub(crate) application: String,
}

/// Milliseconds since `since`, for the timing metrics.
pub(crate) fn millis(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1_000.0
}
