//! Consume Amazon Kinesis Data Streams the way the Java Kinesis Client Library does: a fleet of
//! workers shares a stream's shards through leases in a shared store, each worker runs one
//! [`ShardProcessor`] per shard it holds, checkpoints progress, and the fleet rebalances when
//! workers come and go or shards split and merge.
//!
//! - [`Consumer`]: one worker; [`Consumer::builder`] describes it, [`Consumer::run`] runs it
//!   until a [`CancellationToken`](tokio_util::sync::CancellationToken) fires.
//! - [`ShardProcessor`] and [`Checkpointer`]: the processor API; [`processor_fn`] for the simple
//!   case.
//! - [`Checkpointer::commit`] on a [`TransactionalStore`] (PostgreSQL, DynamoDB, memory):
//!   exactly-once effects, the application's writes and the checkpoint in one transaction of the
//!   lease store, fenced by the lease.
//! - Lease stores: [`lease::MemoryLeaseStore`], and behind features `dynamodb` (default),
//!   `postgres`, `redis` the stores of their crates, re-exported under [`lease`]; `postgres-tls`
//!   adds TLS to the PostgreSQL store, `redis-tls` `rediss://` URLs to the Redis store.
//!
//! Guarantees: a record is handed to a processor only while its worker holds the shard's lease;
//! checkpoints are fenced by the lease counter; a parent shard is fully processed (`SHARD_END`)
//! before its children start; KPL aggregates are deaggregated and filtered by the shard's hash
//! range; nothing is skipped after a failure (at-least-once delivery).
//!
//! Two rules make the last one hold:
//! - **Delivered** means handed to a `process_records` call that is running or returned `Ok`.
//!   A checkpoint never covers more than was delivered, so a batch whose call failed or
//!   panicked is processed again, even when shutdown (whose default `shutdown_requested`
//!   checkpoints everything delivered) arrives between two attempts.
//! - **`LATEST` is resolved before anything is delivered.** When a shard read from `LATEST`
//!   returns its first records, the lease records where they start
//!   ([`Checkpoint::Before`](lease::Checkpoint::Before) the first) before the processor sees
//!   them; a lease at `LATEST` is so never released with records behind it, and its next holder
//!   resumes there rather than after the newest record.
//!
//! Liveness: each lease-store call of a worker is bounded by
//! [`ConsumerConfig::store_timeout`], and a renewal never waits for a checkpoint, so one slow
//! call costs at most its own lease a renewal. The record data read ahead of the processors is
//! bounded per shard and, across all shards, by [`ConsumerConfig::prefetch_memory`].

mod checkpointer;
mod config;
mod consumer;
mod context;
mod grant;
mod pipeline;
mod processor;
mod record;
mod renewer;
mod shard_sync;
mod streams;
mod timed_store;
mod transaction;
mod user_records;
mod worker;

pub use checkpointer::{CheckpointError, Checkpointer, PreparedCheckpoint};
pub use config::{ConsumerConfig, FormerStreams, InitialPosition, Liveness, Retrieval};
pub use consumer::{Consumer, ConsumerBuilder, ConsumerError};
pub use processor::{
    FnProcessorFactory, GiveUpShard, InitializeInput, ProcessorError, ProcessorFactory,
    ShardProcessor, processor_fn,
};
pub use record::{RecordBatch, Records, UserRecord};
pub use streams::{StreamConfig, StreamTracker, StreamsByPrefix, TrackerError};
pub use transaction::{CommitError, Fence, TransactionalStore};

/// Kinesis access: the API seam, readers' settings, stream ids.
pub mod kinesis {
    pub use shardwise_kinesis_source::*;
}

/// Metric names, levels and (behind features `prometheus`, `cloudwatch`) exporters. The worker
/// emits through the `metrics` facade and never installs a recorder: the application does.
pub mod metrics {
    pub use shardwise_metrics::*;
}

/// Leases: the model, the store contract, and the stores enabled by features.
pub mod lease {
    pub use shardwise_lease_core::*;
    #[cfg(feature = "dynamodb")]
    pub use shardwise_lease_dynamodb as dynamodb;
    #[cfg(feature = "postgres")]
    pub use shardwise_lease_postgres as postgres;
    #[cfg(feature = "redis")]
    pub use shardwise_lease_redis as redis;
}
