//! Enhanced fan-out consumers: find or register one and wait until it is ACTIVE, list them,
//! deregister one.

use std::time::Duration;

use tokio::time::Instant;

use crate::api::{ConsumerStatus, KinesisApi, StreamConsumer, StreamId};
use crate::error::{KinesisError, KinesisErrorKind};

/// How [`find_or_register_consumer`] waits for a consumer to become ACTIVE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationConfig {
    /// Give up when the consumer is not ACTIVE after this long (the service usually needs a
    /// few seconds).
    pub active_timeout: Duration,
    /// Pause between two looks at the consumer's state.
    pub poll_interval: Duration,
}

impl Default for RegistrationConfig {
    fn default() -> Self {
        Self {
            active_timeout: Duration::from_secs(60),
            poll_interval: Duration::from_secs(1),
        }
    }
}

/// The stream's ARN, which the consumer calls need: the id itself, or `DescribeStreamSummary`.
pub async fn stream_arn(api: &dyn KinesisApi, stream: &StreamId) -> Result<String, KinesisError> {
    match stream {
        StreamId::Arn(arn) => Ok(arn.clone()),
        StreamId::Name(_) => Ok(api.describe_stream_summary(stream).await?.stream_arn),
    }
}

/// Finds the consumer named `consumer_name` on `stream`, registers it when it does not exist,
/// and waits until it is ACTIVE (at most `config.active_timeout`).
///
/// Safe to call from every worker at once: a registration that loses the race
/// (`ResourceInUse`) just waits for the winner's consumer. A consumer being deregistered is
/// waited out and registered again. Throttling and service errors are retried until the
/// deadline; other errors are returned. Past the deadline the error is
/// [`Unavailable`](KinesisErrorKind::Unavailable) (retryable).
///
/// ```
/// # use std::sync::Arc;
/// # use shardwise_kinesis_source::{find_or_register_consumer, RegistrationConfig, StreamId};
/// # use shardwise_kinesis_source::testkit::InMemoryKinesis;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), shardwise_kinesis_source::KinesisError> {
/// let kinesis = InMemoryKinesis::new();
/// kinesis.create_stream("orders", 2);
/// let consumer = find_or_register_consumer(
///     &kinesis,
///     &StreamId::Name("orders".into()),
///     "billing",
///     &RegistrationConfig::default(),
/// )
/// .await?;
/// assert!(consumer.consumer_arn.contains("/consumer/billing:"));
/// # Ok(())
/// # }
/// ```
pub async fn find_or_register_consumer(
    api: &dyn KinesisApi,
    stream: &StreamId,
    consumer_name: &str,
    config: &RegistrationConfig,
) -> Result<StreamConsumer, KinesisError> {
    let deadline = Instant::now() + config.active_timeout;
    let arn = stream_arn(api, stream).await?;
    loop {
        let last_seen = match api.describe_stream_consumer(&arn, consumer_name).await {
            Ok(consumer) if consumer.status == ConsumerStatus::Active => return Ok(consumer),
            Ok(consumer) => format!("{:?}", consumer.status),
            Err(err) if err.kind() == KinesisErrorKind::ResourceNotFound => {
                match api.register_stream_consumer(&arn, consumer_name).await {
                    Ok(consumer) => format!("{:?}", consumer.status),
                    // Registered by someone else meanwhile, or the old one is still DELETING.
                    Err(err) if err.kind() == KinesisErrorKind::ResourceInUse => "in use".into(),
                    Err(err) if err.is_retryable() => err.to_string(),
                    Err(err) => return Err(err),
                }
            }
            Err(err) if err.is_retryable() => err.to_string(),
            Err(err) => return Err(err),
        };
        if Instant::now() + config.poll_interval > deadline {
            return Err(KinesisError::new(
                KinesisErrorKind::Unavailable,
                format!(
                    "consumer {consumer_name} on {arn} not ACTIVE after {:?} (last seen: {last_seen})",
                    config.active_timeout
                ),
            ));
        }
        tokio::time::sleep(config.poll_interval).await;
    }
}

/// Every consumer registered on `stream`, across pages.
pub async fn list_all_consumers(
    api: &dyn KinesisApi,
    stream: &StreamId,
) -> Result<Vec<StreamConsumer>, KinesisError> {
    let arn = stream_arn(api, stream).await?;
    let mut consumers = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = api.list_stream_consumers(&arn, token.as_deref()).await?;
        consumers.extend(page.consumers);
        match page.next_token {
            Some(next) => token = Some(next),
            None => return Ok(consumers),
        }
    }
}

/// Deregisters the consumer named `consumer_name` on `stream`; `false` when there was none.
///
/// Deregistration is asynchronous: the consumer is DELETING for a while, and registering the
/// same name again meanwhile is refused (which [`find_or_register_consumer`] waits out).
pub async fn deregister_consumer(
    api: &dyn KinesisApi,
    stream: &StreamId,
    consumer_name: &str,
) -> Result<bool, KinesisError> {
    let arn = stream_arn(api, stream).await?;
    let consumer = match api.describe_stream_consumer(&arn, consumer_name).await {
        Ok(consumer) => consumer,
        Err(err) if err.kind() == KinesisErrorKind::ResourceNotFound => return Ok(false),
        Err(err) => return Err(err),
    };
    match api.deregister_stream_consumer(&consumer.consumer_arn).await {
        Ok(()) => Ok(true),
        Err(err) if err.kind() == KinesisErrorKind::ResourceNotFound => Ok(false),
        Err(err) => Err(err),
    }
}
