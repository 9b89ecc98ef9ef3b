//! The narrow Kinesis API seam: the handful of calls the readers make, and their data.

use std::fmt;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::KinesisError;

/// Which stream: by name or by ARN (the ARN form also works across accounts).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum StreamId {
    /// The stream's name, in the client's account and region.
    Name(String),
    /// The stream's ARN.
    Arn(String),
}

impl StreamId {
    /// Reads `arn:aws:kinesis:…:stream/NAME` as an ARN and anything else as a name.
    pub fn parse(text: &str) -> Self {
        if text.starts_with("arn:") {
            Self::Arn(text.to_owned())
        } else {
            Self::Name(text.to_owned())
        }
    }

    /// The stream's name (the last part of an ARN).
    pub fn name(&self) -> &str {
        match self {
            Self::Name(name) => name,
            Self::Arn(arn) => arn.rsplit('/').next().unwrap_or(arn),
        }
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Name(name) => f.write_str(name),
            Self::Arn(arn) => f.write_str(arn),
        }
    }
}

/// An inclusive range of 128-bit hash keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HashRange {
    /// First hash key.
    pub start: u128,
    /// Last hash key (included).
    pub end: u128,
}

/// A shard as `ListShards` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shard {
    /// The shard id.
    pub shard_id: String,
    /// The shard it was split from, or the first of the two it was merged from.
    pub parent_shard_id: Option<String>,
    /// The second shard of a merge.
    pub adjacent_parent_shard_id: Option<String>,
    /// The hash keys it covers.
    pub hash_range: HashRange,
    /// The first sequence number it holds.
    pub starting_sequence_number: String,
    /// Set once the shard is closed (split or merged): its last sequence number.
    pub ending_sequence_number: Option<String>,
}

impl Shard {
    /// The parent ids (none, one after a split, two after a merge).
    pub fn parents(&self) -> Vec<String> {
        self.parent_shard_id
            .iter()
            .chain(&self.adjacent_parent_shard_id)
            .cloned()
            .collect()
    }

    /// Whether the shard is closed.
    pub fn is_closed(&self) -> bool {
        self.ending_sequence_number.is_some()
    }
}

/// A shard that a closed shard was split or merged into, as `GetRecords` and
/// `SubscribeToShard` report it at the shard's end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildShard {
    /// The child's id.
    pub shard_id: String,
    /// Every parent of the child (two for a merge).
    pub parent_shards: Vec<String>,
    /// The hash keys the child covers.
    pub hash_range: HashRange,
}

/// A Kinesis record as read from a shard (still KPL-aggregated, if it was).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The sequence number (decimal, up to 128 digits).
    pub sequence_number: String,
    /// The partition key.
    pub partition_key: String,
    /// The data blob.
    pub data: Bytes,
    /// When Kinesis accepted the record.
    pub approximate_arrival: Option<SystemTime>,
}

/// Where to start reading a shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartPosition {
    /// The oldest record still retained.
    TrimHorizon,
    /// After the newest record at the time of the call.
    Latest,
    /// The first record that arrived at or after the timestamp.
    AtTimestamp(SystemTime),
    /// The record with this sequence number.
    AtSequenceNumber(String),
    /// The record after this sequence number.
    AfterSequenceNumber(String),
}

/// Which shards `ListShards` returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShardFilter {
    /// Open shards only.
    AtLatest,
    /// Shards open at the trim horizon and after.
    AtTrimHorizon,
    /// Shards open at or after the timestamp.
    FromTimestamp(SystemTime),
    /// Shards after this shard id.
    AfterShardId(String),
}

/// One page of `ListShards`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ShardPage {
    /// The shards on this page.
    pub shards: Vec<Shard>,
    /// The token for the next page (valid for 300 s); `None` on the last page.
    pub next_token: Option<String>,
}

/// A `ListShards` request: the first page of a stream's listing, or a following page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListShardsRequest {
    /// The first page.
    First {
        /// The stream.
        stream: StreamId,
        /// An optional filter.
        filter: Option<ShardFilter>,
        /// Page size (1–10,000; `None` for the service default).
        max_results: Option<u32>,
    },
    /// A following page.
    Next {
        /// The previous page's token.
        token: String,
        /// Page size.
        max_results: Option<u32>,
    },
}

/// What `GetRecords` returns.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GetRecordsOutput {
    /// The records, in sequence order.
    pub records: Vec<Record>,
    /// The iterator for the next call; `None` once a closed shard is fully read.
    pub next_iterator: Option<String>,
    /// How far the shard's newest record is ahead of the last record returned, in milliseconds.
    pub millis_behind_latest: Option<i64>,
    /// The children, in the response that reaches the end of a closed shard.
    pub child_shards: Option<Vec<ChildShard>>,
}

/// A page of stream names, from `ListStreams`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamNamePage {
    /// The names on this page.
    pub names: Vec<String>,
    /// Whether more names follow (ask again after the last one).
    pub has_more: bool,
}

/// A page of a stream's tags, from `ListTagsForStream`, in key order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagPage {
    /// The tags on this page: key and value (a tag may have no value).
    pub tags: Vec<(String, Option<String>)>,
    /// Whether more tags follow (ask again after the last key).
    pub has_more: bool,
}

/// What `DescribeStreamSummary` says about a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSummary {
    /// The stream's name.
    pub stream_name: String,
    /// The stream's ARN (what the consumer calls need).
    pub stream_arn: String,
    /// Whether the stream can be read.
    pub status: StreamStatus,
    /// How many shards are open.
    pub open_shard_count: u32,
    /// When the stream was created (a stream deleted and created again under the same name
    /// has another creation time). `None` when the service did not say.
    pub created: Option<std::time::SystemTime>,
}

/// The state of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamStatus {
    /// Being created.
    Creating,
    /// Readable and writable.
    Active,
    /// Being resharded or reconfigured; still readable.
    Updating,
    /// Being deleted.
    Deleting,
    /// A state this crate does not know.
    Other(String),
}

/// The state of an enhanced fan-out consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsumerStatus {
    /// Registered, not yet usable (the service refuses subscriptions).
    Creating,
    /// Usable.
    Active,
    /// Being deregistered.
    Deleting,
    /// A state this crate does not know.
    Other(String),
}

/// An enhanced fan-out consumer registered on a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamConsumer {
    /// The name, unique per stream.
    pub consumer_name: String,
    /// The ARN that `SubscribeToShard` takes.
    pub consumer_arn: String,
    /// The state.
    pub status: ConsumerStatus,
}

/// One page of `ListStreamConsumers`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConsumerPage {
    /// The consumers on this page.
    pub consumers: Vec<StreamConsumer>,
    /// The token for the next page; `None` on the last page.
    pub next_token: Option<String>,
}

/// One `SubscribeToShardEvent`: the records pushed since the previous event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SubscriptionEvent {
    /// The records, in sequence order (possibly none: the service also sends empty events).
    pub records: Vec<Record>,
    /// Where a new subscription continues (with `AFTER_SEQUENCE_NUMBER`) so that nothing is
    /// lost or repeated; `None` once the shard has ended.
    pub continuation_sequence_number: Option<String>,
    /// How far the shard's newest record is ahead of this event, in milliseconds.
    pub millis_behind_latest: Option<i64>,
    /// The children, in the event that reaches the end of a closed shard.
    pub child_shards: Option<Vec<ChildShard>>,
}

/// A live `SubscribeToShard` event stream (enhanced fan-out): Kinesis pushes events for up to
/// five minutes, then ends the stream.
#[async_trait]
pub trait ShardSubscription: fmt::Debug + Send {
    /// The next event; `None` when the stream ended (after five minutes, at the end of a closed
    /// shard, or after an error). An error ends the subscription: the next call returns `None`.
    async fn next_event(&mut self) -> Option<Result<SubscriptionEvent, KinesisError>>;
}

/// The narrow Kinesis API the readers use.
///
/// Implemented for [`aws_sdk_kinesis::Client`] and, with feature `testkit`, by
/// [`InMemoryKinesis`](crate::testkit::InMemoryKinesis). Object safe.
#[async_trait]
pub trait KinesisApi: fmt::Debug + Send + Sync + 'static {
    /// The service's wall clock, for `AT_TIMESTAMP` positions the readers compute themselves:
    /// this machine's clock, unless the implementation keeps its own (the in-memory Kinesis
    /// does).
    fn now(&self) -> std::time::SystemTime {
        std::time::SystemTime::now()
    }

    /// One page of the stream's shards.
    async fn list_shards(&self, request: &ListShardsRequest) -> Result<ShardPage, KinesisError>;

    /// An iterator for reading `shard_id` from `position`.
    async fn get_shard_iterator(
        &self,
        stream: &StreamId,
        shard_id: &str,
        position: &StartPosition,
    ) -> Result<String, KinesisError>;

    /// Up to `limit` records (1–10,000) from `iterator`.
    async fn get_records(
        &self,
        stream: &StreamId,
        iterator: &str,
        limit: u32,
    ) -> Result<GetRecordsOutput, KinesisError>;

    /// The stream's ARN, state and open shard count.
    async fn describe_stream_summary(
        &self,
        stream: &StreamId,
    ) -> Result<StreamSummary, KinesisError>;

    /// One page of the names of the account's streams (in the client's region), in name
    /// order, after `exclusive_start` when given.
    async fn list_streams(
        &self,
        exclusive_start: Option<&str>,
    ) -> Result<StreamNamePage, KinesisError>;

    /// One page of the stream's tags, in key order, after the key `exclusive_start` when given.
    async fn list_tags_for_stream(
        &self,
        stream: &StreamId,
        exclusive_start: Option<&str>,
    ) -> Result<TagPage, KinesisError>;

    /// Registers an enhanced fan-out consumer named `consumer_name` on the stream. It starts in
    /// [`ConsumerStatus::Creating`]; a name already taken gives
    /// [`ResourceInUse`](crate::KinesisErrorKind::ResourceInUse).
    async fn register_stream_consumer(
        &self,
        stream_arn: &str,
        consumer_name: &str,
    ) -> Result<StreamConsumer, KinesisError>;

    /// The consumer named `consumer_name` on the stream; an unknown name gives
    /// [`ResourceNotFound`](crate::KinesisErrorKind::ResourceNotFound).
    async fn describe_stream_consumer(
        &self,
        stream_arn: &str,
        consumer_name: &str,
    ) -> Result<StreamConsumer, KinesisError>;

    /// One page of the stream's consumers (`next_token` from the previous page, or `None`).
    async fn list_stream_consumers(
        &self,
        stream_arn: &str,
        next_token: Option<&str>,
    ) -> Result<ConsumerPage, KinesisError>;

    /// Starts deregistering the consumer (it goes through [`ConsumerStatus::Deleting`]).
    async fn deregister_stream_consumer(&self, consumer_arn: &str) -> Result<(), KinesisError>;

    /// Subscribes the consumer to a shard from `position` (enhanced fan-out). One subscription
    /// per consumer and shard may be active: another gives
    /// [`ResourceInUse`](crate::KinesisErrorKind::ResourceInUse), either here or as the first
    /// event of the returned stream.
    async fn subscribe_to_shard(
        &self,
        consumer_arn: &str,
        shard_id: &str,
        position: &StartPosition,
    ) -> Result<Box<dyn ShardSubscription>, KinesisError>;
}
