//! The enhanced fan-out reader: one background task per shard holding a `SubscribeToShard`
//! event stream, resubscribing from the continuation sequence number, with the same bounded
//! prefetch queue as the polling reader.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::api::{KinesisApi, ShardSubscription, StartPosition, SubscriptionEvent};
use crate::backoff::Backoff;
use crate::batch::Batch;
use crate::budget::{MemoryBudget, Reservation};
use crate::error::{KinesisError, KinesisErrorKind};
use crate::prefetch::{self, PrefetchLimits, PrefetchReceiver, PrefetchSender};
use crate::restart::Restart;
use crate::stats::ReaderStats;

/// Most records in one batch handed to the processor when events queued up while it worked
/// are joined: the most one `GetRecords` call returns, so that a processor sees batches no
/// larger with either way of reading.
const JOINED_RECORDS: usize = 10_000;

/// The service accepts one `SubscribeToShard` call per second per consumer and shard.
const MIN_TIME_BETWEEN_SUBSCRIBES: Duration = Duration::from_secs(1);

/// Settings of the fan-out reader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FanOutConfig {
    /// Most records received ahead of the processor (exceeded by at most one event).
    pub prefetch_records: usize,
    /// Most bytes received ahead of the processor (exceeded by at most one event).
    pub prefetch_bytes: usize,
    /// Most batches received ahead of the processor.
    pub prefetch_batches: usize,
    /// First pause after a throttled or failed subscription; doubled on each further failure.
    pub backoff_initial: Duration,
    /// Longest pause after failures.
    pub backoff_max: Duration,
    /// Pause after `ResourceInUse` (another subscription to the shard is still active, or the
    /// consumer is not ACTIVE yet). The service documents about five seconds.
    pub resource_in_use_pause: Duration,
    /// The reader ends a subscription itself after this long and continues in a new one. The
    /// service ends every subscription after five minutes; a little less avoids being cut off
    /// mid-event.
    pub max_subscription_age: Duration,
    /// A subscription that delivers no event for this long is taken as broken (the service
    /// sends events also when there are no records) and replaced.
    pub event_timeout: Duration,
}

impl Default for FanOutConfig {
    fn default() -> Self {
        Self {
            prefetch_records: 30_000,
            prefetch_bytes: 8 * 1024 * 1024,
            prefetch_batches: 4,
            backoff_initial: Duration::from_millis(500),
            backoff_max: Duration::from_secs(10),
            resource_in_use_pause: Duration::from_secs(5),
            max_subscription_age: Duration::from_secs(290),
            event_timeout: Duration::from_secs(60),
        }
    }
}

impl FanOutConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<(), String> {
        if self.prefetch_records == 0 || self.prefetch_bytes == 0 || self.prefetch_batches == 0 {
            return Err("prefetch limits must be above zero".into());
        }
        if self.backoff_initial.is_zero() || self.backoff_max < self.backoff_initial {
            return Err("backoff_initial must be above zero and not above backoff_max".into());
        }
        if self.max_subscription_age < MIN_TIME_BETWEEN_SUBSCRIBES {
            return Err("max_subscription_age must be at least one second".into());
        }
        if self.event_timeout.is_zero() {
            return Err("event_timeout must be above zero".into());
        }
        Ok(())
    }
}

/// Reads one shard through an enhanced fan-out subscription, ahead of the processor within the
/// prefetch bounds.
///
/// A background task subscribes the consumer to the shard from the start position, hands each
/// event's records over as a [`Batch`], and when the subscription ends (the service's five-minute
/// limit, [`FanOutConfig::max_subscription_age`], a broken connection, or silence longer than
/// [`FanOutConfig::event_timeout`]) subscribes again after the continuation sequence number of
/// the last event it handed over, so nothing is lost or repeated. `ResourceInUse` (from the call
/// or as the stream's first message) is retried after about five seconds, throttling and service
/// errors with exponential backoff and jitter. The last batch of a closed shard carries its
/// children. Dropping the reader stops the task and ends the subscription.
///
/// If the reader must subscribe again before the first event arrived, it starts again from the
/// original position; from [`StartPosition::Latest`], at the time of the first subscription (a
/// second early, for clocks that differ), so that records put in between are still read.
///
/// ```
/// # use std::sync::Arc;
/// # use shardwise_kinesis_source::*;
/// # use shardwise_kinesis_source::testkit::InMemoryKinesis;
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), KinesisError> {
/// let kinesis = Arc::new(InMemoryKinesis::new());
/// kinesis.create_stream("orders", 1);
/// let (shard, _) = kinesis.put("orders", "customer-7", "order 1")?;
/// let stream = StreamId::Name("orders".into());
/// let consumer =
///     find_or_register_consumer(kinesis.as_ref(), &stream, "billing", &Default::default())
///         .await?;
/// let mut reader = FanOutReader::start(
///     kinesis.clone(),
///     consumer.consumer_arn,
///     shard,
///     StartPosition::TrimHorizon,
///     FanOutConfig::default(),
///     MemoryBudget::unlimited(),
/// );
/// let batch = reader.next_batch().await.expect("a batch")?;
/// assert_eq!(batch.records[0].data.as_ref(), b"order 1");
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct FanOutReader {
    batches: PrefetchReceiver,
    task: JoinHandle<()>,
    stats: ReaderStats,
}

impl FanOutReader {
    /// Starts reading `shard_id` through the consumer `consumer_arn` (see
    /// [`find_or_register_consumer`](crate::find_or_register_consumer)) from `position`, within
    /// `memory` (shared by the worker's readers): the reader stops taking events while the
    /// budget is spent, and an event's data stays counted until the processor takes it (events
    /// are pushed, so one already on its way may go over the budget).
    pub fn start(
        api: Arc<dyn KinesisApi>,
        consumer_arn: String,
        shard_id: String,
        position: StartPosition,
        config: FanOutConfig,
        memory: MemoryBudget,
    ) -> Self {
        let stats = ReaderStats::default();
        let (tx, batches) = prefetch::channel(
            PrefetchLimits {
                records: config.prefetch_records,
                bytes: config.prefetch_bytes,
                batches: config.prefetch_batches,
                joined_records: JOINED_RECORDS,
            },
            memory,
        );
        let subscriber = Subscriber {
            api,
            consumer_arn,
            backoff: Backoff::seeded(&shard_id, config.backoff_initial, config.backoff_max),
            shard_id,
            config,
            tx,
            restart: Restart::new(position.clone()),
            last_record: None,
            stats: stats.clone(),
        };
        let task = tokio::spawn(subscriber.run());
        Self {
            batches,
            task,
            stats,
        }
    }

    /// The next batch; `None` after the last batch of a closed shard, or after an error that
    /// retrying cannot fix (which is returned once, before the `None`).
    pub async fn next_batch(&mut self) -> Option<Result<Batch, KinesisError>> {
        self.batches.next_batch().await
    }

    /// Records and bytes received but not yet handed out.
    pub fn buffered(&self) -> (usize, usize) {
        self.batches.buffered()
    }

    /// The reader's `SubscribeToShard` counters.
    pub fn stats(&self) -> &ReaderStats {
        &self.stats
    }
}

impl Drop for FanOutReader {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// How one subscription ended.
enum Ended {
    /// Cleanly (the service's time limit, or ours): subscribe again at once.
    Cleanly,
    /// With an error (a silent stream counts as `Unavailable`).
    Failed(KinesisError),
    /// The shard ended, an error was handed over, or the reader is gone: stop.
    Finished,
}

struct Subscriber {
    api: Arc<dyn KinesisApi>,
    consumer_arn: String,
    shard_id: String,
    config: FanOutConfig,
    tx: PrefetchSender,
    backoff: Backoff,
    /// The continuation of the last event handed over: where the next subscription starts.
    restart: Restart,
    /// The last record handed over, to drop any record a new subscription sends again.
    last_record: Option<String>,
    stats: ReaderStats,
}

impl Subscriber {
    async fn run(mut self) {
        let mut next_subscribe = Instant::now();
        loop {
            // Never hold a subscription open while the processor is behind.
            self.tx.room().await;
            tokio::time::sleep_until(next_subscribe).await;
            let started = Instant::now();
            let position = self.restart.position(self.api.now());
            let ended = match self
                .api
                .subscribe_to_shard(&self.consumer_arn, &self.shard_id, &position)
                .await
            {
                Ok(subscription) => {
                    self.stats.success(started.elapsed());
                    self.drain(subscription, started).await
                }
                Err(err) => {
                    self.stats
                        .failure(err.kind() == KinesisErrorKind::Throttled, started.elapsed());
                    Ended::Failed(err)
                }
            };
            let pause = match ended {
                Ended::Cleanly => Duration::ZERO,
                Ended::Failed(err) => match self.pause_after(err).await {
                    Some(pause) => pause,
                    None => return,
                },
                Ended::Finished => return,
            };
            next_subscribe = started + pause.max(MIN_TIME_BETWEEN_SUBSCRIBES);
        }
    }

    /// Hands over the subscription's events until it ends.
    async fn drain(
        &mut self,
        mut subscription: Box<dyn ShardSubscription>,
        started: Instant,
    ) -> Ended {
        let expires = started + self.config.max_subscription_age;
        loop {
            // Events are pushed: waiting only while the worker's budget is overspent, and an
            // event on its way is counted when it arrives.
            let ready = async {
                self.tx.room().await;
                self.tx.reserve(0).await
            };
            let Ok(memory) = tokio::time::timeout_at(expires, ready).await else {
                return Ended::Cleanly;
            };
            let silence = Instant::now() + self.config.event_timeout;
            let event = match tokio::time::timeout_at(
                silence.min(expires),
                subscription.next_event(),
            )
            .await
            {
                Ok(Some(Ok(event))) => event,
                Ok(Some(Err(err))) => return Ended::Failed(err),
                Ok(None) => return Ended::Cleanly,
                Err(_) if Instant::now() >= expires => return Ended::Cleanly,
                Err(_) => {
                    return Ended::Failed(KinesisError::new(
                        KinesisErrorKind::Unavailable,
                        format!(
                            "no SubscribeToShard event on {} for {:?}",
                            self.shard_id, self.config.event_timeout
                        ),
                    ));
                }
            };
            self.backoff.reset();
            if !self.hand_over(event, memory).await {
                return Ended::Finished;
            }
        }
    }

    /// Queues an event's records; `false` when the reader should stop (shard end, reader gone).
    async fn hand_over(&mut self, event: SubscriptionEvent, memory: Reservation) -> bool {
        let mut records = event.records;
        if let Some(last) = &self.last_record {
            records.retain(|r| sequence_after(&r.sequence_number, last));
        }
        let batch = Batch {
            records,
            millis_behind_latest: event.millis_behind_latest,
            child_shards: event.child_shards,
        };
        let continuation = event
            .continuation_sequence_number
            .or_else(|| batch.resume_after().map(str::to_owned));
        let last_record = batch.resume_after().map(str::to_owned);
        let ended = batch.is_shard_end();
        if batch.records.is_empty() && !ended {
            // "Caught up" only: never wait for room to hand it over.
            self.tx.offer_empty(batch);
        } else if !self.tx.send(batch, memory).await {
            return false;
        }
        if last_record.is_some() {
            self.last_record = last_record;
        }
        if let Some(continuation) = continuation {
            self.restart.read_through(continuation);
        }
        !ended
    }

    /// A retryable error: how long to wait before subscribing again. Any other: hand it to the
    /// processor and stop.
    async fn pause_after(&mut self, err: KinesisError) -> Option<Duration> {
        if !err.is_retryable() {
            self.tx.fail(err).await;
            return None;
        }
        Some(if err.kind() == KinesisErrorKind::ResourceInUse {
            self.backoff.stretch(self.config.resource_in_use_pause)
        } else {
            self.backoff.next_pause()
        })
    }
}

/// Whether sequence number `a` comes after `b`. Both are decimal strings without leading zeros,
/// up to 128 digits: longer is larger, equal lengths compare as text.
fn sequence_after(a: &str, b: &str) -> bool {
    (a.len(), a) > (b.len(), b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_compare_as_numbers() {
        let cases = [
            ("2", "1", true),
            ("1", "2", false),
            ("10", "9", true),
            ("9", "10", false),
            (
                "49590338271490256608559692538361571095921575989136588898",
                "49590338271490256608559692538361571095921575989136588897",
                true,
            ),
            ("5", "5", false),
        ];
        for (a, b, after) in cases {
            assert_eq!(sequence_after(a, b), after, "{a} after {b}");
        }
    }

    #[test]
    fn config_validation() {
        assert!(FanOutConfig::default().validate().is_ok());
        let no_prefetch = FanOutConfig {
            prefetch_bytes: 0,
            ..FanOutConfig::default()
        };
        assert!(no_prefetch.validate().is_err());
        let too_short = FanOutConfig {
            max_subscription_age: Duration::from_millis(10),
            ..FanOutConfig::default()
        };
        assert!(too_short.validate().is_err());
    }
}
