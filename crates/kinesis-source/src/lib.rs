//! How records get from Kinesis to a shard pipeline: shard discovery and per-shard readers behind
//! a narrow API seam.
//!
//! - [`KinesisApi`]: the handful of Kinesis calls the readers make, implemented for
//!   [`aws_sdk_kinesis::Client`] and (feature `testkit`) by an in-memory Kinesis with puts,
//!   split, merge, retention, virtual time and fault injection.
//! - [`list_all_shards`]: every shard of a stream, across pages.
//! - [`PollingReader`]: `GetRecords` within the service's limits (5 calls/s and 2 MiB/s per
//!   shard), bounded prefetch, expired-iterator recovery, throttling backoff with jitter, and the
//!   child shards at the end of a closed shard.
//!
//! This crate knows nothing of leases or checkpoints: a reader starts from a
//! [`StartPosition`] and reports what it read.

mod api;
mod discovery;
mod error;
mod polling;
mod sdk;

#[cfg(feature = "testkit")]
pub mod testkit;

pub use api::{
    ChildShard, GetRecordsOutput, HashRange, KinesisApi, ListShardsRequest, Record, Shard,
    ShardFilter, ShardPage, StartPosition, StreamId,
};
pub use discovery::list_all_shards;
pub use error::{KinesisError, KinesisErrorKind};
pub use polling::{Batch, PollingConfig, PollingReader};
