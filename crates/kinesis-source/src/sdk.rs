//! [`KinesisApi`] on the AWS SDK client. Errors are classified with the SDK's `is_*()`
//! predicates, never by matching message text.

use std::error::Error as StdError;
use std::fmt;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::config::http::HttpResponse;
use aws_sdk_kinesis::error::{DisplayErrorContext, SdkError};
use aws_sdk_kinesis::operation::deregister_stream_consumer::DeregisterStreamConsumerError;
use aws_sdk_kinesis::operation::describe_stream_consumer::DescribeStreamConsumerError;
use aws_sdk_kinesis::operation::describe_stream_summary::DescribeStreamSummaryError;
use aws_sdk_kinesis::operation::get_records::GetRecordsError;
use aws_sdk_kinesis::operation::get_shard_iterator::GetShardIteratorError;
use aws_sdk_kinesis::operation::list_shards::ListShardsError;
use aws_sdk_kinesis::operation::list_stream_consumers::ListStreamConsumersError;
use aws_sdk_kinesis::operation::list_streams::ListStreamsError;
use aws_sdk_kinesis::operation::list_tags_for_stream::ListTagsForStreamError;
use aws_sdk_kinesis::operation::register_stream_consumer::RegisterStreamConsumerError;
use aws_sdk_kinesis::operation::subscribe_to_shard::SubscribeToShardError;
use aws_sdk_kinesis::primitives::DateTime;
use aws_sdk_kinesis::primitives::event_stream::EventReceiver;
use aws_sdk_kinesis::types::error::SubscribeToShardEventStreamError;
use aws_sdk_kinesis::types::{self, ShardIteratorType, SubscribeToShardEventStream};
use bytes::Bytes;

use crate::api::{
    ChildShard, ConsumerPage, ConsumerStatus, GetRecordsOutput, HashRange, KinesisApi,
    ListShardsRequest, Record, Shard, ShardFilter, ShardPage, ShardSubscription, StartPosition,
    StreamConsumer, StreamId, StreamNamePage, StreamStatus, StreamSummary, SubscriptionEvent,
    TagPage,
};
use crate::error::{KinesisError, KinesisErrorKind};

/// What a modeled Kinesis error means for the reader.
trait Classify {
    fn kind(&self) -> Option<KinesisErrorKind>;
}

impl Classify for GetRecordsError {
    fn kind(&self) -> Option<KinesisErrorKind> {
        Some(if self.is_expired_iterator_exception() {
            KinesisErrorKind::ExpiredIterator
        } else if self.is_provisioned_throughput_exceeded_exception()
            || self.is_kms_throttling_exception()
        {
            KinesisErrorKind::Throttled
        } else if self.is_resource_not_found_exception() {
            KinesisErrorKind::ResourceNotFound
        } else if self.is_invalid_argument_exception() {
            KinesisErrorKind::InvalidArgument
        } else if self.is_access_denied_exception() || self.is_kms_access_denied_exception() {
            KinesisErrorKind::AccessDenied
        } else if self.is_internal_failure_exception() {
            KinesisErrorKind::Unavailable
        } else {
            return None;
        })
    }
}

impl Classify for GetShardIteratorError {
    fn kind(&self) -> Option<KinesisErrorKind> {
        Some(if self.is_provisioned_throughput_exceeded_exception() {
            KinesisErrorKind::Throttled
        } else if self.is_resource_not_found_exception() {
            KinesisErrorKind::ResourceNotFound
        } else if self.is_invalid_argument_exception() {
            KinesisErrorKind::InvalidArgument
        } else if self.is_access_denied_exception() {
            KinesisErrorKind::AccessDenied
        } else if self.is_internal_failure_exception() {
            KinesisErrorKind::Unavailable
        } else {
            return None;
        })
    }
}

impl Classify for ListShardsError {
    fn kind(&self) -> Option<KinesisErrorKind> {
        Some(if self.is_expired_next_token_exception() {
            KinesisErrorKind::ExpiredNextToken
        } else if self.is_limit_exceeded_exception() {
            KinesisErrorKind::Throttled
        } else if self.is_resource_in_use_exception() {
            KinesisErrorKind::ResourceInUse
        } else if self.is_resource_not_found_exception() {
            KinesisErrorKind::ResourceNotFound
        } else if self.is_invalid_argument_exception() {
            KinesisErrorKind::InvalidArgument
        } else if self.is_access_denied_exception() {
            KinesisErrorKind::AccessDenied
        } else {
            return None;
        })
    }
}

impl Classify for SubscribeToShardError {
    fn kind(&self) -> Option<KinesisErrorKind> {
        Some(if self.is_resource_in_use_exception() {
            KinesisErrorKind::ResourceInUse
        } else if self.is_limit_exceeded_exception() || self.is_kms_throttling_exception() {
            KinesisErrorKind::Throttled
        } else if self.is_resource_not_found_exception() {
            KinesisErrorKind::ResourceNotFound
        } else if self.is_invalid_argument_exception() {
            KinesisErrorKind::InvalidArgument
        } else if self.is_access_denied_exception() || self.is_kms_access_denied_exception() {
            KinesisErrorKind::AccessDenied
        } else if self.is_internal_failure_exception() {
            KinesisErrorKind::Unavailable
        } else {
            return None;
        })
    }
}

impl Classify for SubscribeToShardEventStreamError {
    fn kind(&self) -> Option<KinesisErrorKind> {
        Some(if self.is_resource_in_use_exception() {
            KinesisErrorKind::ResourceInUse
        } else if self.is_kms_throttling_exception() {
            KinesisErrorKind::Throttled
        } else if self.is_resource_not_found_exception() {
            KinesisErrorKind::ResourceNotFound
        } else if self.is_kms_access_denied_exception() {
            KinesisErrorKind::AccessDenied
        } else if self.is_internal_failure_exception() {
            KinesisErrorKind::Unavailable
        } else {
            return None;
        })
    }
}

impl Classify for ListStreamsError {
    fn kind(&self) -> Option<KinesisErrorKind> {
        Some(if self.is_limit_exceeded_exception() {
            KinesisErrorKind::Throttled
        } else if self.is_invalid_argument_exception() || self.is_expired_next_token_exception() {
            KinesisErrorKind::InvalidArgument
        } else {
            return None;
        })
    }
}

impl Classify for DescribeStreamSummaryError {
    fn kind(&self) -> Option<KinesisErrorKind> {
        Some(if self.is_limit_exceeded_exception() {
            KinesisErrorKind::Throttled
        } else if self.is_resource_not_found_exception() {
            KinesisErrorKind::ResourceNotFound
        } else if self.is_invalid_argument_exception() {
            KinesisErrorKind::InvalidArgument
        } else if self.is_access_denied_exception() {
            KinesisErrorKind::AccessDenied
        } else {
            return None;
        })
    }
}

impl Classify for ListTagsForStreamError {
    fn kind(&self) -> Option<KinesisErrorKind> {
        Some(if self.is_limit_exceeded_exception() {
            KinesisErrorKind::Throttled
        } else if self.is_resource_not_found_exception() {
            KinesisErrorKind::ResourceNotFound
        } else if self.is_invalid_argument_exception() {
            KinesisErrorKind::InvalidArgument
        } else if self.is_access_denied_exception() {
            KinesisErrorKind::AccessDenied
        } else {
            return None;
        })
    }
}

impl Classify for RegisterStreamConsumerError {
    fn kind(&self) -> Option<KinesisErrorKind> {
        Some(if self.is_resource_in_use_exception() {
            KinesisErrorKind::ResourceInUse
        } else if self.is_limit_exceeded_exception() {
            KinesisErrorKind::Throttled
        } else if self.is_resource_not_found_exception() {
            KinesisErrorKind::ResourceNotFound
        } else if self.is_invalid_argument_exception() {
            KinesisErrorKind::InvalidArgument
        } else {
            return None;
        })
    }
}

impl Classify for DescribeStreamConsumerError {
    fn kind(&self) -> Option<KinesisErrorKind> {
        Some(if self.is_limit_exceeded_exception() {
            KinesisErrorKind::Throttled
        } else if self.is_resource_not_found_exception() {
            KinesisErrorKind::ResourceNotFound
        } else if self.is_invalid_argument_exception() {
            KinesisErrorKind::InvalidArgument
        } else {
            return None;
        })
    }
}

impl Classify for ListStreamConsumersError {
    fn kind(&self) -> Option<KinesisErrorKind> {
        Some(if self.is_expired_next_token_exception() {
            KinesisErrorKind::ExpiredNextToken
        } else if self.is_limit_exceeded_exception() {
            KinesisErrorKind::Throttled
        } else if self.is_resource_in_use_exception() {
            KinesisErrorKind::ResourceInUse
        } else if self.is_resource_not_found_exception() {
            KinesisErrorKind::ResourceNotFound
        } else if self.is_invalid_argument_exception() {
            KinesisErrorKind::InvalidArgument
        } else {
            return None;
        })
    }
}

impl Classify for DeregisterStreamConsumerError {
    fn kind(&self) -> Option<KinesisErrorKind> {
        Some(if self.is_limit_exceeded_exception() {
            KinesisErrorKind::Throttled
        } else if self.is_resource_not_found_exception() {
            KinesisErrorKind::ResourceNotFound
        } else if self.is_invalid_argument_exception() {
            KinesisErrorKind::InvalidArgument
        } else {
            return None;
        })
    }
}

fn classify<E>(operation: &'static str, err: SdkError<E, HttpResponse>) -> KinesisError
where
    E: Classify + StdError + Send + Sync + 'static,
{
    classify_with(operation, err, |raw| raw.status().is_server_error())
}

/// Classifies an error whose raw response is `R` (an HTTP response, or an event-stream message
/// for errors that arrive inside a subscription); `server_error` tells a 5xx.
fn classify_with<E, R>(
    operation: &'static str,
    err: SdkError<E, R>,
    server_error: impl Fn(&R) -> bool,
) -> KinesisError
where
    E: Classify + StdError + Send + Sync + 'static,
    R: fmt::Debug + Send + Sync + 'static,
{
    let kind = match &err {
        SdkError::ServiceError(service) => service.err().kind().unwrap_or_else(|| {
            // Unmodeled: a 5xx is the service failing (retryable); anything else is not ours to
            // retry.
            if server_error(service.raw()) {
                KinesisErrorKind::Unavailable
            } else {
                KinesisErrorKind::Other
            }
        }),
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            KinesisErrorKind::Unavailable
        }
        _ => KinesisErrorKind::Other,
    };
    let message = format!("Kinesis {operation} failed: {}", DisplayErrorContext(&err));
    KinesisError::new(kind, message).with_source(err)
}

fn invalid(message: String) -> KinesisError {
    KinesisError::new(KinesisErrorKind::Other, message)
}

fn hash_range(range: Option<&types::HashKeyRange>) -> Result<HashRange, KinesisError> {
    let range = range.ok_or_else(|| invalid("shard without a hash key range".into()))?;
    let parse = |text: &str| {
        text.parse::<u128>()
            .map_err(|_| invalid(format!("hash key {text:?} is not a decimal below 2^128")))
    };
    Ok(HashRange {
        start: parse(range.starting_hash_key())?,
        end: parse(range.ending_hash_key())?,
    })
}

fn shard(s: &types::Shard) -> Result<Shard, KinesisError> {
    let sequence = s.sequence_number_range();
    Ok(Shard {
        shard_id: s.shard_id().to_owned(),
        parent_shard_id: s.parent_shard_id().map(str::to_owned),
        adjacent_parent_shard_id: s.adjacent_parent_shard_id().map(str::to_owned),
        hash_range: hash_range(s.hash_key_range())?,
        starting_sequence_number: sequence
            .map(|r| r.starting_sequence_number().to_owned())
            .unwrap_or_default(),
        ending_sequence_number: sequence
            .and_then(|r| r.ending_sequence_number())
            .map(str::to_owned),
    })
}

fn to_datetime(t: SystemTime) -> DateTime {
    DateTime::from(t)
}

fn to_system_time(t: &DateTime) -> Option<SystemTime> {
    let nanos = t.subsec_nanos();
    match u64::try_from(t.secs()) {
        Ok(secs) => SystemTime::UNIX_EPOCH.checked_add(Duration::new(secs, nanos)),
        Err(_) => None,
    }
}

fn child_shards(children: &[types::ChildShard]) -> Result<Vec<ChildShard>, KinesisError> {
    children
        .iter()
        .map(|c| {
            Ok(ChildShard {
                shard_id: c.shard_id().to_owned(),
                parent_shards: c.parent_shards().to_vec(),
                hash_range: hash_range(c.hash_key_range())?,
            })
        })
        .collect()
}

fn record(r: types::Record) -> Record {
    Record {
        approximate_arrival: r.approximate_arrival_timestamp().and_then(to_system_time),
        sequence_number: r.sequence_number,
        partition_key: r.partition_key.unwrap_or_default(),
        data: Bytes::from(r.data.into_inner()),
    }
}

fn consumer_status(status: &types::ConsumerStatus) -> ConsumerStatus {
    match status {
        types::ConsumerStatus::Active => ConsumerStatus::Active,
        types::ConsumerStatus::Creating => ConsumerStatus::Creating,
        types::ConsumerStatus::Deleting => ConsumerStatus::Deleting,
        other => ConsumerStatus::Other(other.as_str().to_owned()),
    }
}

fn stream_status(status: &types::StreamStatus) -> StreamStatus {
    match status {
        types::StreamStatus::Active => StreamStatus::Active,
        types::StreamStatus::Creating => StreamStatus::Creating,
        types::StreamStatus::Deleting => StreamStatus::Deleting,
        types::StreamStatus::Updating => StreamStatus::Updating,
        other => StreamStatus::Other(other.as_str().to_owned()),
    }
}

fn starting_position(position: &StartPosition) -> Result<types::StartingPosition, KinesisError> {
    let builder = types::StartingPosition::builder();
    let builder = match position {
        StartPosition::TrimHorizon => builder.r#type(ShardIteratorType::TrimHorizon),
        StartPosition::Latest => builder.r#type(ShardIteratorType::Latest),
        StartPosition::AtTimestamp(t) => builder
            .r#type(ShardIteratorType::AtTimestamp)
            .timestamp(to_datetime(*t)),
        StartPosition::AtSequenceNumber(seq) => builder
            .r#type(ShardIteratorType::AtSequenceNumber)
            .sequence_number(seq),
        StartPosition::AfterSequenceNumber(seq) => builder
            .r#type(ShardIteratorType::AfterSequenceNumber)
            .sequence_number(seq),
    };
    builder
        .build()
        .map_err(|e| invalid(format!("invalid starting position: {e}")))
}

/// A `SubscribeToShard` event stream read through the SDK's event receiver.
#[derive(Debug)]
struct SdkSubscription {
    events: EventReceiver<SubscribeToShardEventStream, SubscribeToShardEventStreamError>,
    ended: bool,
}

#[async_trait]
impl ShardSubscription for SdkSubscription {
    async fn next_event(&mut self) -> Option<Result<SubscriptionEvent, KinesisError>> {
        while !self.ended {
            let event = match self.events.recv().await {
                Ok(Some(SubscribeToShardEventStream::SubscribeToShardEvent(event))) => event,
                // A kind of event this SDK version does not know: nothing to deliver.
                Ok(Some(_)) => continue,
                Ok(None) => break,
                Err(err) => {
                    self.ended = true;
                    // Modeled errors arrive as exception frames inside the stream (the
                    // ResourceInUse of a second subscription, for one); the raw message has no
                    // HTTP status.
                    return Some(Err(classify_with("SubscribeToShard", err, |_| false)));
                }
            };
            let children = match event.child_shards.as_deref() {
                None | Some([]) => None,
                Some(children) => match child_shards(children) {
                    Ok(children) => Some(children),
                    Err(err) => {
                        self.ended = true;
                        return Some(Err(err));
                    }
                },
            };
            let continuation = Some(event.continuation_sequence_number).filter(|c| !c.is_empty());
            return Some(Ok(SubscriptionEvent {
                records: event.records.into_iter().map(record).collect(),
                continuation_sequence_number: continuation,
                millis_behind_latest: Some(event.millis_behind_latest),
                child_shards: children,
            }));
        }
        self.ended = true;
        None
    }
}

fn stream_name_and_arn(stream: &StreamId) -> (Option<String>, Option<String>) {
    match stream {
        StreamId::Name(name) => (Some(name.clone()), None),
        StreamId::Arn(arn) => (None, Some(arn.clone())),
    }
}

#[async_trait]
impl KinesisApi for Client {
    async fn list_shards(&self, request: &ListShardsRequest) -> Result<ShardPage, KinesisError> {
        let call = match request {
            ListShardsRequest::First {
                stream,
                filter,
                max_results,
            } => {
                let (name, arn) = stream_name_and_arn(stream);
                let filter = match filter {
                    None => None,
                    Some(f) => {
                        let builder = match f {
                            ShardFilter::AtLatest => types::ShardFilter::builder()
                                .r#type(types::ShardFilterType::AtLatest),
                            ShardFilter::AtTrimHorizon => types::ShardFilter::builder()
                                .r#type(types::ShardFilterType::AtTrimHorizon),
                            ShardFilter::FromTimestamp(t) => types::ShardFilter::builder()
                                .r#type(types::ShardFilterType::FromTimestamp)
                                .timestamp(to_datetime(*t)),
                            ShardFilter::AfterShardId(id) => types::ShardFilter::builder()
                                .r#type(types::ShardFilterType::AfterShardId)
                                .shard_id(id),
                        };
                        Some(
                            builder
                                .build()
                                .map_err(|e| invalid(format!("invalid shard filter: {e}")))?,
                        )
                    }
                };
                self.list_shards()
                    .set_stream_name(name)
                    .set_stream_arn(arn)
                    .set_shard_filter(filter)
                    .set_max_results(max_results.map(|m| i32::try_from(m).unwrap_or(i32::MAX)))
            }
            ListShardsRequest::Next { token, max_results } => self
                .list_shards()
                .next_token(token)
                .set_max_results(max_results.map(|m| i32::try_from(m).unwrap_or(i32::MAX))),
        };
        let out = call.send().await.map_err(|e| classify("ListShards", e))?;
        let shards = out
            .shards()
            .iter()
            .map(shard)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ShardPage {
            shards,
            next_token: out.next_token().map(str::to_owned),
        })
    }

    async fn get_shard_iterator(
        &self,
        stream: &StreamId,
        shard_id: &str,
        position: &StartPosition,
    ) -> Result<String, KinesisError> {
        let (name, arn) = stream_name_and_arn(stream);
        let mut call = self
            .get_shard_iterator()
            .set_stream_name(name)
            .set_stream_arn(arn)
            .shard_id(shard_id);
        call = match position {
            StartPosition::TrimHorizon => call.shard_iterator_type(ShardIteratorType::TrimHorizon),
            StartPosition::Latest => call.shard_iterator_type(ShardIteratorType::Latest),
            StartPosition::AtTimestamp(t) => call
                .shard_iterator_type(ShardIteratorType::AtTimestamp)
                .timestamp(to_datetime(*t)),
            StartPosition::AtSequenceNumber(seq) => call
                .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
                .starting_sequence_number(seq),
            StartPosition::AfterSequenceNumber(seq) => call
                .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                .starting_sequence_number(seq),
        };
        let out = call
            .send()
            .await
            .map_err(|e| classify("GetShardIterator", e))?;
        out.shard_iterator()
            .map(str::to_owned)
            .ok_or_else(|| invalid("GetShardIterator returned no iterator".into()))
    }

    async fn get_records(
        &self,
        stream: &StreamId,
        iterator: &str,
        limit: u32,
    ) -> Result<GetRecordsOutput, KinesisError> {
        let arn = match stream {
            StreamId::Arn(arn) => Some(arn.clone()),
            StreamId::Name(_) => None,
        };
        let out = self
            .get_records()
            .shard_iterator(iterator)
            .set_stream_arn(arn)
            .limit(i32::try_from(limit).unwrap_or(10_000))
            .send()
            .await
            .map_err(|e| classify("GetRecords", e))?;
        let child_shards = match out.child_shards {
            None => None,
            Some(children) => Some(child_shards(&children)?),
        };
        let records = out.records.into_iter().map(record).collect();
        Ok(GetRecordsOutput {
            records,
            next_iterator: out.next_shard_iterator,
            millis_behind_latest: out.millis_behind_latest,
            child_shards,
        })
    }
    async fn describe_stream_summary(
        &self,
        stream: &StreamId,
    ) -> Result<StreamSummary, KinesisError> {
        let (name, arn) = stream_name_and_arn(stream);
        let out = self
            .describe_stream_summary()
            .set_stream_name(name)
            .set_stream_arn(arn)
            .send()
            .await
            .map_err(|e| classify("DescribeStreamSummary", e))?;
        let summary = out
            .stream_description_summary()
            .ok_or_else(|| invalid("DescribeStreamSummary returned no summary".into()))?;
        Ok(StreamSummary {
            stream_name: summary.stream_name().to_owned(),
            stream_arn: summary.stream_arn().to_owned(),
            status: stream_status(summary.stream_status()),
            open_shard_count: u32::try_from(summary.open_shard_count()).unwrap_or(0),
            created: to_system_time(summary.stream_creation_timestamp()),
        })
    }

    async fn list_streams(
        &self,
        exclusive_start: Option<&str>,
    ) -> Result<StreamNamePage, KinesisError> {
        let out = self
            .list_streams()
            .set_exclusive_start_stream_name(exclusive_start.map(str::to_owned))
            .send()
            .await
            .map_err(|e| classify("ListStreams", e))?;
        Ok(StreamNamePage {
            names: out.stream_names().to_vec(),
            has_more: out.has_more_streams(),
        })
    }

    async fn list_tags_for_stream(
        &self,
        stream: &StreamId,
        exclusive_start: Option<&str>,
    ) -> Result<TagPage, KinesisError> {
        let (name, arn) = stream_name_and_arn(stream);
        let out = self
            .list_tags_for_stream()
            .set_stream_name(name)
            .set_stream_arn(arn)
            .set_exclusive_start_tag_key(exclusive_start.map(str::to_owned))
            .send()
            .await
            .map_err(|e| classify("ListTagsForStream", e))?;
        Ok(TagPage {
            tags: out
                .tags()
                .iter()
                .map(|t| (t.key().to_owned(), t.value().map(str::to_owned)))
                .collect(),
            has_more: out.has_more_tags(),
        })
    }

    async fn register_stream_consumer(
        &self,
        stream_arn: &str,
        consumer_name: &str,
    ) -> Result<StreamConsumer, KinesisError> {
        let out = self
            .register_stream_consumer()
            .stream_arn(stream_arn)
            .consumer_name(consumer_name)
            .send()
            .await
            .map_err(|e| classify("RegisterStreamConsumer", e))?;
        let consumer = out
            .consumer()
            .ok_or_else(|| invalid("RegisterStreamConsumer returned no consumer".into()))?;
        Ok(StreamConsumer {
            consumer_name: consumer.consumer_name().to_owned(),
            consumer_arn: consumer.consumer_arn().to_owned(),
            status: consumer_status(consumer.consumer_status()),
        })
    }

    async fn describe_stream_consumer(
        &self,
        stream_arn: &str,
        consumer_name: &str,
    ) -> Result<StreamConsumer, KinesisError> {
        let out = self
            .describe_stream_consumer()
            .stream_arn(stream_arn)
            .consumer_name(consumer_name)
            .send()
            .await
            .map_err(|e| classify("DescribeStreamConsumer", e))?;
        let consumer = out
            .consumer_description()
            .ok_or_else(|| invalid("DescribeStreamConsumer returned no description".into()))?;
        Ok(StreamConsumer {
            consumer_name: consumer.consumer_name().to_owned(),
            consumer_arn: consumer.consumer_arn().to_owned(),
            status: consumer_status(consumer.consumer_status()),
        })
    }

    async fn list_stream_consumers(
        &self,
        stream_arn: &str,
        next_token: Option<&str>,
    ) -> Result<ConsumerPage, KinesisError> {
        let out = self
            .list_stream_consumers()
            .stream_arn(stream_arn)
            .set_next_token(next_token.map(str::to_owned))
            .send()
            .await
            .map_err(|e| classify("ListStreamConsumers", e))?;
        Ok(ConsumerPage {
            consumers: out
                .consumers()
                .iter()
                .map(|c| StreamConsumer {
                    consumer_name: c.consumer_name().to_owned(),
                    consumer_arn: c.consumer_arn().to_owned(),
                    status: consumer_status(c.consumer_status()),
                })
                .collect(),
            next_token: out.next_token().map(str::to_owned),
        })
    }

    async fn deregister_stream_consumer(&self, consumer_arn: &str) -> Result<(), KinesisError> {
        self.deregister_stream_consumer()
            .consumer_arn(consumer_arn)
            .send()
            .await
            .map_err(|e| classify("DeregisterStreamConsumer", e))?;
        Ok(())
    }

    async fn subscribe_to_shard(
        &self,
        consumer_arn: &str,
        shard_id: &str,
        position: &StartPosition,
    ) -> Result<Box<dyn ShardSubscription>, KinesisError> {
        // `send()` returns once the first message arrived (the initial response, or the first
        // event from a service that sends none); a refusal may come here or as that message.
        let out = self
            .subscribe_to_shard()
            .consumer_arn(consumer_arn)
            .shard_id(shard_id)
            .starting_position(starting_position(position)?)
            .send()
            .await
            .map_err(|e| classify("SubscribeToShard", e))?;
        Ok(Box::new(SdkSubscription {
            events: out.event_stream,
            ended: false,
        }))
    }
}
