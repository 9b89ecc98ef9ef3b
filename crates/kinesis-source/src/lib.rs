//! How records get from Kinesis to a shard pipeline: shard discovery and per-shard readers behind
//! a narrow API seam.
//!
//! - [`KinesisApi`]: the handful of Kinesis calls the readers make, implemented for
//!   [`aws_sdk_kinesis::Client`] and (feature `testkit`) by an in-memory Kinesis with puts,
//!   split, merge, retention, fan-out consumers and subscriptions, virtual time and fault
//!   injection.
//! - [`list_all_shards`]: every shard of a stream, across pages.
//! - [`PollingReader`]: `GetRecords` within the service's limits (5 calls/s and 2 MiB/s per
//!   shard), bounded prefetch, expired-iterator recovery, throttling backoff with jitter, and the
//!   child shards at the end of a closed shard.
//! - Enhanced fan-out: [`find_or_register_consumer`] (waits until the consumer is ACTIVE),
//!   [`deregister_consumer`], and [`FanOutReader`]: a `SubscribeToShard` event stream over
//!   HTTP/2, resubscribed after the continuation sequence number before the service's
//!   five-minute limit or when it breaks, `ResourceInUse` retried after about five seconds,
//!   the same bounded prefetch, and the child shards at the end of a closed shard.
//! - [`ShardReader`]: either reader behind one type; both hand out [`Batch`]es the same way.
//!
//! This crate knows nothing of leases or checkpoints: a reader starts from a
//! [`StartPosition`] and reports what it read.
//!
//! # Performance
//!
//! `cargo bench -p shardwise-kinesis-source --bench polling` (with `KINESIS_ENDPOINT` set for
//! the emulator rows) reads 100-byte records with the polling reader from TRIM_HORIZON, every
//! shard at once, on a 2-core machine (two runs, low–high):
//!
//! | Kinesis | shards | records | records/s | CPU per record |
//! | --- | --- | --- | --- | --- |
//! | in memory, paused clock (reader overhead) | 1 | 400,000 | 8.9–9.1 million | 0.11 µs |
//! | in memory, paused clock (reader overhead) | 16 | 400,000 | 7.4–7.9 million | 0.13 µs |
//! | kinesis-local 0.6.2, plain HTTP | 1 | 2,000 | 6,600–6,700 | 2.1 µs |
//! | kinesis-local 0.6.2, plain HTTP | 16 | 2,000 | 6,200–6,800 | 8.2–8.3 µs |
//!
//! In memory, the service's pacing costs no wall time (the clock is paused): the figures are
//! the reader's own cost plus the in-memory Kinesis copying records out. With the real limits
//! the same 400,000 records take 20.5 s of (virtual) time on one shard, where the 2 MiB/s
//! read budget dominates, and 1.4 s on 16. Against the emulator, each reader's first call asks
//! for 100 records (no record size is known yet) and the next for the rest, 200 ms later: the
//! pause between the two is most of the wall time. With 16 shards each reader makes its own
//! two calls (125 records: 100, then 25), so HTTP and JSON work per record grows. CPU is the
//! run time of all the process's threads (`/proc/self/task/*/schedstat`), the SDK included.
mod api;
mod backoff;
mod batch;
mod budget;
mod consumer_registration;
mod discovery;
mod error;
mod fanout;
mod polling;
mod prefetch;
mod reader;
mod restart;
mod sdk;
mod stats;

#[cfg(feature = "testkit")]
pub mod testkit;

pub use api::{
    ChildShard, ConsumerPage, ConsumerStatus, GetRecordsOutput, HashRange, KinesisApi,
    ListShardsRequest, Record, Shard, ShardFilter, ShardPage, ShardSubscription, StartPosition,
    StreamConsumer, StreamId, StreamNamePage, StreamStatus, StreamSummary, SubscriptionEvent,
    TagPage,
};
pub use batch::Batch;
pub use budget::MemoryBudget;
pub use consumer_registration::{
    RegistrationConfig, deregister_consumer, find_or_register_consumer, list_all_consumers,
    stream_arn,
};
pub use discovery::{list_all_shards, list_all_streams, list_all_tags};
pub use error::{KinesisError, KinesisErrorKind};
pub use fanout::{FanOutConfig, FanOutReader};
pub use polling::{PollingConfig, PollingReader};
pub use reader::ShardReader;
pub use stats::{ReaderCounts, ReaderStats};
