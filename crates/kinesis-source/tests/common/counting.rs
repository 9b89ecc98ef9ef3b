//! A [`KinesisApi`] wrapper that counts `SubscribeToShard` calls, so the fan-out scenarios can
//! check resubscriptions against any Kinesis.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use shardwise_kinesis_source::{
    ConsumerPage, GetRecordsOutput, KinesisApi, KinesisError, ListShardsRequest, ShardPage,
    ShardSubscription, StartPosition, StreamConsumer, StreamId, StreamSummary,
};

#[derive(Debug)]
pub struct Counting {
    inner: Arc<dyn KinesisApi>,
    subscribes: AtomicUsize,
}

impl Counting {
    pub fn new(inner: Arc<dyn KinesisApi>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            subscribes: AtomicUsize::new(0),
        })
    }

    pub fn subscribes(&self) -> usize {
        self.subscribes.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl KinesisApi for Counting {
    async fn list_shards(&self, request: &ListShardsRequest) -> Result<ShardPage, KinesisError> {
        self.inner.list_shards(request).await
    }
    async fn get_shard_iterator(
        &self,
        stream: &StreamId,
        shard_id: &str,
        position: &StartPosition,
    ) -> Result<String, KinesisError> {
        self.inner
            .get_shard_iterator(stream, shard_id, position)
            .await
    }
    async fn get_records(
        &self,
        stream: &StreamId,
        iterator: &str,
        limit: u32,
    ) -> Result<GetRecordsOutput, KinesisError> {
        self.inner.get_records(stream, iterator, limit).await
    }
    async fn describe_stream_summary(
        &self,
        stream: &StreamId,
    ) -> Result<StreamSummary, KinesisError> {
        self.inner.describe_stream_summary(stream).await
    }
    async fn list_streams(
        &self,
        exclusive_start: Option<&str>,
    ) -> Result<shardwise_kinesis_source::StreamNamePage, KinesisError> {
        self.inner.list_streams(exclusive_start).await
    }
    async fn list_tags_for_stream(
        &self,
        stream: &StreamId,
        exclusive_start: Option<&str>,
    ) -> Result<shardwise_kinesis_source::TagPage, KinesisError> {
        self.inner
            .list_tags_for_stream(stream, exclusive_start)
            .await
    }

    async fn register_stream_consumer(
        &self,
        stream_arn: &str,
        consumer_name: &str,
    ) -> Result<StreamConsumer, KinesisError> {
        self.inner
            .register_stream_consumer(stream_arn, consumer_name)
            .await
    }
    async fn describe_stream_consumer(
        &self,
        stream_arn: &str,
        consumer_name: &str,
    ) -> Result<StreamConsumer, KinesisError> {
        self.inner
            .describe_stream_consumer(stream_arn, consumer_name)
            .await
    }
    async fn list_stream_consumers(
        &self,
        stream_arn: &str,
        next_token: Option<&str>,
    ) -> Result<ConsumerPage, KinesisError> {
        self.inner
            .list_stream_consumers(stream_arn, next_token)
            .await
    }
    async fn deregister_stream_consumer(&self, consumer_arn: &str) -> Result<(), KinesisError> {
        self.inner.deregister_stream_consumer(consumer_arn).await
    }
    async fn subscribe_to_shard(
        &self,
        consumer_arn: &str,
        shard_id: &str,
        position: &StartPosition,
    ) -> Result<Box<dyn ShardSubscription>, KinesisError> {
        self.subscribes.fetch_add(1, Ordering::SeqCst);
        self.inner
            .subscribe_to_shard(consumer_arn, shard_id, position)
            .await
    }
}
