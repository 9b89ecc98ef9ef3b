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
mod backoff;
mod batch;
mod consumer_registration;
mod discovery;
mod error;
mod fanout;
mod polling;
mod prefetch;
mod reader;
mod sdk;

#[cfg(feature = "testkit")]
pub mod testkit;

pub use api::{
    ChildShard, ConsumerPage, ConsumerStatus, GetRecordsOutput, HashRange, KinesisApi,
    ListShardsRequest, Record, Shard, ShardFilter, ShardPage, ShardSubscription, StartPosition,
    StreamConsumer, StreamId, StreamStatus, StreamSummary, SubscriptionEvent,
};
pub use batch::Batch;
pub use consumer_registration::{
    RegistrationConfig, deregister_consumer, find_or_register_consumer, list_all_consumers,
    stream_arn,
};
pub use discovery::list_all_shards;
pub use error::{KinesisError, KinesisErrorKind};
pub use fanout::{FanOutConfig, FanOutReader};
pub use polling::{PollingConfig, PollingReader};
pub use reader::ShardReader;
