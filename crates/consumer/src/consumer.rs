//! The public entry point: `Consumer` and its builder.

use std::sync::Arc;
use std::time::Duration;

use shardwise_kinesis_source::{KinesisApi, StreamId};
use shardwise_lease_core::{LeaseStore, StoreError, WorkerId};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::{ConsumerConfig, InitialPosition, Retrieval};
use crate::context::Context;
use crate::processor::ProcessorFactory;
use crate::streams::{StreamTracker, Streams};
use crate::worker::Worker;

/// What can stop a consumer from starting.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConsumerError {
    /// The configuration is incomplete or invalid.
    #[error("invalid consumer configuration: {0}")]
    Config(String),
    /// The lease store could not be prepared (its table or schema created).
    #[error("lease store: {0}")]
    Store(#[from] StoreError),
    /// Kinesis refused what the worker needs to start (the fan-out consumer could not be found
    /// or registered, the stream does not exist).
    #[error("kinesis: {0}")]
    Kinesis(#[from] shardwise_kinesis_source::KinesisError),
}

/// A worker of a consumer application: it shares the stream's shards with every other worker
/// using the same lease store, runs a processor per shard it holds, and checkpoints.
///
/// ```no_run
/// use std::sync::Arc;
/// use shardwise::{Consumer, InitialPosition, RecordBatch, processor_fn};
/// use shardwise::lease::MemoryLeaseStore;
/// use tokio_util::sync::CancellationToken;
///
/// # async fn run(kinesis: aws_sdk_kinesis::Client) -> Result<(), shardwise::ConsumerError> {
/// let consumer = Consumer::builder()
///     .stream("my-stream")
///     .kinesis(Arc::new(kinesis))
///     .lease_store(Arc::new(MemoryLeaseStore::new()))
///     .initial_position(InitialPosition::TrimHorizon)
///     .processor(processor_fn(|batch: RecordBatch| async move {
///         println!("{} records from {}", batch.records.len(), batch.shard_id);
///         Ok(())
///     }))
///     .build()?;
/// let stop = CancellationToken::new();
/// consumer.run(stop).await?;
/// # Ok(()) }
/// ```
pub struct Consumer {
    ctx: Arc<Context>,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("streams", &self.ctx.streams.describe())
            .field("worker_id", &self.ctx.worker_id)
            .field("config", &self.ctx.config)
            .finish_non_exhaustive()
    }
}

impl Consumer {
    /// Starts describing a consumer.
    pub fn builder() -> ConsumerBuilder {
        ConsumerBuilder::default()
    }

    /// This worker's id.
    pub fn worker_id(&self) -> &WorkerId {
        &self.ctx.worker_id
    }

    /// Runs the worker until `cancel` fires, then shuts down gracefully: processors checkpoint
    /// (`shutdown_requested`), leases are released so other workers take them at once.
    pub async fn run(self, cancel: CancellationToken) -> Result<(), ConsumerError> {
        self.ctx.store.create_table_if_missing().await?;
        let single = (!self.ctx.streams.is_multi())
            .then(|| self.ctx.streams.scopes().into_iter().next())
            .flatten();
        if let (Retrieval::FanOut { consumer_name, .. }, Some(scope)) =
            (&self.ctx.config.retrieval, single)
        {
            let name = consumer_name
                .clone()
                .unwrap_or_else(|| self.ctx.application.clone());
            let consumer = shardwise_kinesis_source::find_or_register_consumer(
                self.ctx.kinesis.as_ref(),
                &scope.stream,
                &name,
                &shardwise_kinesis_source::RegistrationConfig::default(),
            )
            .await?;
            tracing::info!(consumer = %consumer.consumer_arn, "reading by enhanced fan-out");
            self.ctx.streams.set_consumer_arn(consumer.consumer_arn);
        }
        let span = tracing::info_span!("worker", worker = %self.ctx.worker_id, stream = %self.ctx.streams.describe());
        Worker::new(self.ctx).run(cancel).instrument(span).await;
        Ok(())
    }
}

/// Builds a [`Consumer`]; [`ConsumerBuilder::build`] validates everything.
#[derive(Default)]
pub struct ConsumerBuilder {
    application: Option<String>,
    stream: Option<StreamId>,
    tracker: Option<Arc<dyn StreamTracker>>,
    kinesis: Option<Arc<dyn KinesisApi>>,
    store: Option<Arc<dyn LeaseStore>>,
    factory: Option<Arc<dyn ProcessorFactory>>,
    worker_id: Option<String>,
    config: ConsumerConfig,
}

impl ConsumerBuilder {
    /// The application's name: the default fan-out consumer name, and a label in logs
    /// (default `shardwise`). Workers of one application share one lease store.
    pub fn application_name(mut self, name: impl Into<String>) -> Self {
        self.application = Some(name.into());
        self
    }

    /// How records are read: [`Retrieval::Polling`] (the default) or [`Retrieval::fan_out`].
    pub fn retrieval(mut self, retrieval: Retrieval) -> Self {
        self.config.retrieval = retrieval;
        self
    }

    /// The stream, by name or ARN (a single-stream application: lease keys are shard ids, as
    /// in the KCL).
    pub fn stream(mut self, stream: &str) -> Self {
        self.stream = Some(StreamId::parse(stream));
        self
    }

    /// The streams of a multi-stream application, as `tracker` names them (a fixed
    /// `Vec<StreamConfig>`, or a tracker of the application's). Lease keys are the KCL's
    /// `account-id:stream-name:creation-epoch:shard-id`, so a lease table shared with Java KCL
    /// multi-stream workers reads the same; each stream's initial position comes from the
    /// tracker. Exclusive with [`ConsumerBuilder::stream`].
    pub fn streams(mut self, tracker: impl StreamTracker) -> Self {
        self.tracker = Some(Arc::new(tracker));
        self
    }

    /// The Kinesis client (an `aws_sdk_kinesis::Client` in an `Arc`, or any [`KinesisApi`]).
    pub fn kinesis(mut self, kinesis: Arc<dyn KinesisApi>) -> Self {
        self.kinesis = Some(kinesis);
        self
    }

    /// Where leases live. Every worker of the application uses the same store.
    pub fn lease_store(mut self, store: Arc<dyn LeaseStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// Makes a processor per shard.
    pub fn processor(mut self, factory: impl ProcessorFactory) -> Self {
        self.factory = Some(Arc::new(factory));
        self
    }

    /// This worker's id (default: host name, process id and a time stamp).
    pub fn worker_id(mut self, id: impl Into<String>) -> Self {
        self.worker_id = Some(id.into());
        self
    }

    /// Where shards without a checkpoint start (default `LATEST`, as in the KCL).
    pub fn initial_position(mut self, position: InitialPosition) -> Self {
        self.config.initial_position = position;
        self
    }

    /// The lease duration (default 10 s); renewals every third of it.
    pub fn lease_duration(mut self, duration: Duration) -> Self {
        self.config.lease_duration = duration;
        self.config.take_interval = duration / 2;
        self
    }

    /// How the worker shows it is alive (default: per-lease renewals, which Java KCL workers
    /// sharing the table understand; see [`Liveness`](crate::Liveness)).
    pub fn liveness(mut self, liveness: crate::Liveness) -> Self {
        self.config.liveness = liveness;
        self
    }

    /// Replaces the whole configuration.
    pub fn config(mut self, config: ConsumerConfig) -> Self {
        self.config = config;
        self
    }

    /// Checks everything and makes the consumer.
    pub fn build(self) -> Result<Consumer, ConsumerError> {
        let missing = |what: &str| ConsumerError::Config(format!("{what} is required"));
        let streams = match (self.stream, self.tracker) {
            (Some(stream), None) if stream.name().is_empty() => {
                return Err(ConsumerError::Config("the stream name is empty".into()));
            }
            (Some(stream), None) => Streams::single(stream, self.config.initial_position),
            (None, Some(tracker)) => Streams::tracked(tracker),
            (None, None) => return Err(missing("a stream (or a stream tracker)")),
            (Some(_), Some(_)) => {
                return Err(ConsumerError::Config(
                    "give one stream or a stream tracker, not both".into(),
                ));
            }
        };
        let kinesis = self.kinesis.ok_or_else(|| missing("kinesis client"))?;
        let store = self.store.ok_or_else(|| missing("lease store"))?;
        let factory = self.factory.ok_or_else(|| missing("processor"))?;
        self.config.validate().map_err(ConsumerError::Config)?;
        let worker_id = match self.worker_id {
            Some(id) => WorkerId::new(id).map_err(|e| ConsumerError::Config(e.to_string()))?,
            None => generated_worker_id()?,
        };
        let metric_names = shardwise_metrics::MetricNames::new(&self.config.metrics_prefix)
            .map_err(|e| ConsumerError::Config(format!("metrics_prefix: {e}")))?;
        shardwise_metrics::describe(&metric_names);
        let worker_metrics = shardwise_metrics::WorkerMetrics::register(
            &metric_names,
            self.config.metrics_level,
            worker_id.as_str(),
        );
        let prefetch = shardwise_kinesis_source::MemoryBudget::new(self.config.prefetch_memory);
        let store = Arc::new(shardwise_lease_core::Layered::wrap(
            store,
            crate::timed_store::Timeouts {
                call: self.config.store_timeout(),
                list: self.config.take_interval.max(self.config.store_timeout()),
            },
        ));
        Ok(Consumer {
            ctx: Arc::new(Context {
                store,
                kinesis,
                streams,
                worker_id,
                config: self.config,
                factory,
                metric_names,
                worker_metrics,
                prefetch,
                application: self.application.unwrap_or_else(|| "shardwise".to_owned()),
                beat: Default::default(),
            }),
        })
    }
}

/// `host:pid:time`, the host name cleaned of anything a worker id cannot hold.
fn generated_worker_id() -> Result<WorkerId, ConsumerError> {
    let host: String = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_control())
        .take(128)
        .collect();
    let host = if host.trim().is_empty() {
        "worker"
    } else {
        host.trim()
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    WorkerId::new(format!("{host}:{}:{nanos:x}", std::process::id()))
        .map_err(|e| ConsumerError::Config(format!("generated worker id: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_id_is_generated_when_none_is_given() {
        let consumer = Consumer::builder()
            .stream("s")
            .kinesis(Arc::new(
                shardwise_kinesis_source::testkit::InMemoryKinesis::new(),
            ))
            .lease_store(Arc::new(shardwise_lease_core::MemoryLeaseStore::new()))
            .processor(crate::processor_fn(|_batch: crate::RecordBatch| async {
                Ok(())
            }))
            .build()
            .unwrap();
        let id = consumer.worker_id().as_str();
        assert!(id.contains(&format!(":{}:", std::process::id())), "{id}");
    }
}
