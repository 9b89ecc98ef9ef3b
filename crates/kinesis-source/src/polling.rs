//! The polling reader: one background task per shard calling `GetRecords` within the service's
//! limits, a bounded prefetch queue, and recovery from expired iterators and throttling.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::api::{KinesisApi, StartPosition, StreamId};
use crate::backoff::Backoff;
use crate::batch::Batch;
use crate::budget::MemoryBudget;
use crate::error::{KinesisError, KinesisErrorKind};
use crate::prefetch::{self, PrefetchLimits, PrefetchReceiver, PrefetchSender};
use crate::restart::Restart;
use crate::stats::ReaderStats;

/// Settings of the polling reader. The defaults follow the KCL's and the service's limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollingConfig {
    /// Most records asked for per `GetRecords` call (service maximum 10,000). The reader asks
    /// for fewer when a response would take more than `max_response_memory`.
    pub max_records: u32,
    /// About how much memory one response should take while it is received and parsed. The
    /// reader estimates a record's footprint from the largest record (data and partition key)
    /// of the previous response: 3 bytes per byte (the base64 text, its buffer and the decoded
    /// data) plus 512 bytes of structures. It asks for no more records than fit; the first call
    /// asks for at most 1,000. Memory per shard so follows bytes instead of record count
    /// (10,000 records of 1 KB would take about 30 MB); it is a target, not a hard bound, since
    /// the records to come may be larger than the ones seen (the service caps a response at
    /// 10 MiB). Records smaller than about 120 B may take more: a call always asks for enough
    /// to use the shard's byte budget at the call rate (about 420 KB of data at the defaults),
    /// up to 10,000 records, at most about 5.4 MB for the smallest records.
    pub max_response_memory: usize,
    /// Pause after a call that returned no records (the shard is caught up).
    pub idle_time_between_reads: Duration,
    /// Shortest time between two calls on one shard. The service allows 5 calls per second per
    /// shard, shared by every consumer of the shard: 200 ms is the floor.
    pub min_time_between_reads: Duration,
    /// The shard's read budget in bytes per second (the service allows 2 MiB/s per shard): after
    /// a large response the reader waits as long as the service needs to refill it.
    pub max_bytes_per_second: u64,
    /// Most records fetched ahead of the processor.
    pub prefetch_records: usize,
    /// Most bytes fetched ahead of the processor (exceeded by at most one response).
    pub prefetch_bytes: usize,
    /// Most batches fetched ahead of the processor.
    pub prefetch_batches: usize,
    /// First pause after a throttled or failed call; doubled on each further failure.
    pub backoff_initial: Duration,
    /// Longest pause after failures.
    pub backoff_max: Duration,
}

impl Default for PollingConfig {
    fn default() -> Self {
        Self {
            max_records: 10_000,
            max_response_memory: 3 * 1024 * 1024,
            idle_time_between_reads: Duration::from_millis(1_000),
            min_time_between_reads: Duration::from_millis(200),
            max_bytes_per_second: 2 * 1024 * 1024,
            prefetch_records: 30_000,
            prefetch_bytes: 8 * 1024 * 1024,
            prefetch_batches: 4,
            backoff_initial: Duration::from_millis(500),
            backoff_max: Duration::from_secs(10),
        }
    }
}

impl PollingConfig {
    /// Checks the settings against the service's limits.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=10_000).contains(&self.max_records) {
            return Err(format!(
                "max_records must be 1 to 10,000, not {}",
                self.max_records
            ));
        }
        if self.min_time_between_reads < Duration::from_millis(200) {
            return Err(
                "min_time_between_reads below 200 ms exceeds 5 GetRecords per second per shard"
                    .into(),
            );
        }
        if self.prefetch_records == 0 || self.prefetch_bytes == 0 || self.prefetch_batches == 0 {
            return Err("prefetch limits must be above zero".into());
        }
        if self.max_response_memory == 0 {
            return Err("max_response_memory must be above zero".into());
        }
        if self.max_bytes_per_second == 0 {
            return Err("max_bytes_per_second must be above zero".into());
        }
        if self.backoff_initial.is_zero() || self.backoff_max < self.backoff_initial {
            return Err("backoff_initial must be above zero and not above backoff_max".into());
        }
        Ok(())
    }
}

/// Most records the first `GetRecords` call of a reader asks for, before any record size is
/// known (see [`PollingConfig::max_records`]).
const FIRST_CALL_RECORDS: u32 = 1_000;

/// The estimated memory a record takes in a response beyond its bytes (the SDK's structures and
/// ours), for [`PollingConfig::max_response_memory`].
const RECORD_OVERHEAD: f64 = 512.0;

/// Reads one shard by polling, ahead of the processor within the prefetch bounds.
///
/// A background task calls `GetRecords` at most once per `min_time_between_reads`, pauses when
/// the shard is caught up, paces itself to the shard's byte budget, backs off exponentially with
/// jitter on throttling and service errors, and replaces an expired iterator by one after the
/// last record it fetched, so nothing is lost or repeated. Dropping the reader stops the task.
#[derive(Debug)]
pub struct PollingReader {
    batches: PrefetchReceiver,
    task: JoinHandle<()>,
    stats: ReaderStats,
}

impl PollingReader {
    /// Starts reading `shard_id` of `stream` from `position`, within `memory` (shared by the
    /// worker's readers): each call reserves `max_response_memory` of it while in flight, and a
    /// response's data stays counted until the processor takes it.
    pub fn start(
        api: Arc<dyn KinesisApi>,
        stream: StreamId,
        shard_id: String,
        position: StartPosition,
        config: PollingConfig,
        memory: MemoryBudget,
    ) -> Self {
        let stats = ReaderStats::default();
        let (tx, batches) = prefetch::channel(
            PrefetchLimits {
                records: config.prefetch_records,
                bytes: config.prefetch_bytes,
                batches: config.prefetch_batches,
            },
            memory,
        );
        let fetcher = Fetcher {
            api,
            stream,
            backoff: Backoff::seeded(&shard_id, config.backoff_initial, config.backoff_max),
            shard_id,
            restart: Restart::new(position),
            config,
            tx,
            stats: stats.clone(),
        };
        let task = tokio::spawn(fetcher.run());
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

    /// Records and bytes fetched but not yet handed out.
    pub fn buffered(&self) -> (usize, usize) {
        self.batches.buffered()
    }

    /// The reader's `GetRecords` counters.
    pub fn stats(&self) -> &ReaderStats {
        &self.stats
    }
}

impl Drop for PollingReader {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Fetcher {
    api: Arc<dyn KinesisApi>,
    stream: StreamId,
    shard_id: String,
    restart: Restart,
    config: PollingConfig,
    tx: PrefetchSender,
    backoff: Backoff,
    stats: ReaderStats,
}

impl Fetcher {
    async fn run(mut self) {
        let mut iterator: Option<String> = None;
        let mut next_call = Instant::now();
        // The largest record of the last response with records.
        let mut bytes_per_record: Option<f64> = None;
        loop {
            // Waits while the prefetch queue is full; woken when the processor takes a batch.
            let room = self.tx.room().await;
            tokio::time::sleep_until(next_call).await;
            // Only now, so that a reader pausing between calls holds none of the budget.
            let memory = self.tx.reserve(self.config.max_response_memory).await;
            let started = Instant::now();

            let current = match iterator.take() {
                Some(it) => it,
                None => {
                    // An iterator that expires before any record came (the reader waited on the
                    // worker's budget, say) is replaced from when reading from LATEST began.
                    let position = self.restart.position(self.api.now());
                    match self
                        .api
                        .get_shard_iterator(&self.stream, &self.shard_id, &position)
                        .await
                    {
                        Ok(it) => it,
                        Err(err) => match self.on_error(err, started).await {
                            Some(at) => {
                                next_call = at;
                                continue;
                            }
                            None => return,
                        },
                    }
                }
            };

            let limit = u32::try_from(room)
                .unwrap_or(u32::MAX)
                .min(records_per_call(&self.config, bytes_per_record))
                .max(1);
            let called = Instant::now();
            let result = self.api.get_records(&self.stream, &current, limit).await;
            match &result {
                Ok(_) => self.stats.success(called.elapsed()),
                Err(e) if e.kind() == KinesisErrorKind::ExpiredIterator => {
                    self.stats.expired_iterator()
                }
                Err(e) => self
                    .stats
                    .failure(e.kind() == KinesisErrorKind::Throttled, called.elapsed()),
            }
            match result {
                Ok(out) => {
                    self.backoff.reset();
                    let batch = Batch {
                        records: out.records,
                        millis_behind_latest: out.millis_behind_latest,
                        child_shards: match out.next_iterator {
                            Some(_) => None,
                            None => Some(out.child_shards.unwrap_or_default()),
                        },
                    };
                    if let Some(seq) = batch.resume_after() {
                        self.restart.read_through(seq.to_owned());
                        bytes_per_record = batch.largest_record().map(|n| n as f64);
                    }
                    iterator = out.next_iterator;
                    next_call = started + self.pause_after(&batch);
                    let ended = batch.is_shard_end();
                    if batch.records.is_empty() && !ended {
                        // An empty batch only carries "caught up"; never wait for room to hand
                        // it over, so the iterator keeps being refreshed.
                        self.tx.offer_empty(batch);
                        continue;
                    }
                    if !self.tx.send(batch, memory).await || ended {
                        return;
                    }
                }
                Err(err) if err.kind() == KinesisErrorKind::ExpiredIterator => {
                    // Ask for a new iterator after the last fetched record, right away (within
                    // the per-shard call rate).
                    next_call = started + self.config.min_time_between_reads;
                }
                Err(err) => {
                    iterator = Some(current);
                    match self.on_error(err, started).await {
                        Some(at) => next_call = at,
                        None => return,
                    }
                }
            }
        }
    }

    /// When to call next after `batch`: the per-shard call rate, the idle pause when caught up,
    /// and the byte budget after a large response.
    fn pause_after(&self, batch: &Batch) -> Duration {
        let mut pause = self.config.min_time_between_reads;
        if batch.records.is_empty() {
            pause = pause.max(self.config.idle_time_between_reads);
        }
        let bytes = batch.bytes() as u64;
        let refill =
            Duration::from_secs_f64(bytes as f64 / self.config.max_bytes_per_second as f64);
        pause.max(refill)
    }

    /// A retryable error: when to try again. Any other: hand it to the processor and stop.
    async fn on_error(&mut self, err: KinesisError, started: Instant) -> Option<Instant> {
        if err.is_retryable() {
            let floor = if err.kind() == KinesisErrorKind::ResourceInUse {
                Duration::from_secs(5)
            } else {
                Duration::ZERO
            };
            let pause = self
                .backoff
                .next_pause()
                .max(floor)
                .max(self.config.min_time_between_reads);
            return Some(started + pause);
        }
        self.tx.fail(err).await;
        None
    }
}

/// How many records to ask for: `max_records`, lowered to what fits in
/// `max_response_memory` at the last response's largest record size, but never below what
/// one call needs to use the shard's byte budget at the call rate (`max_bytes_per_second`
/// times `min_time_between_reads`: with small records, the memory target alone would leave
/// a tenth of the 2 MiB/s unused). At most [`FIRST_CALL_RECORDS`] before any size is known.
fn records_per_call(config: &PollingConfig, bytes_per_record: Option<f64>) -> u32 {
    let max = config.max_records;
    let Some(size) = bytes_per_record else {
        return max.min(FIRST_CALL_RECORDS);
    };
    let footprint = 3.0 * size + RECORD_OVERHEAD;
    let fits = config.max_response_memory as f64 / footprint;
    let fills = config.max_bytes_per_second as f64 * config.min_time_between_reads.as_secs_f64()
        / size.max(1.0);
    // Saturating float-to-int conversion; at least one record.
    (fits.max(fills) as u32).min(max).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Small records: a call asks for enough to use the shard's 2 MiB/s at 5 calls a second
    /// (the 3 MiB memory target alone allowed 3,874 records of 100 B, 90% of it); large ones:
    /// what fits in the memory target.
    #[test]
    fn calls_are_sized_to_the_byte_budget_and_the_memory_target() {
        let config = PollingConfig::default();
        assert_eq!(records_per_call(&config, None), 1_000);
        let small = records_per_call(&config, Some(100.0));
        assert_eq!(
            small,
            2 * 1024 * 1024 / 5 / 100,
            "a fifth of 2 MiB in records of 100 B"
        );
        assert_eq!(records_per_call(&config, Some(1.0)), 10_000);
        assert_eq!(records_per_call(&config, Some(1_000.0)), 895);
        assert_eq!(records_per_call(&config, Some(5_000_000.0)), 1);
    }

    #[test]
    fn config_validation() {
        assert!(PollingConfig::default().validate().is_ok());
        let too_fast = PollingConfig {
            min_time_between_reads: Duration::from_millis(100),
            ..PollingConfig::default()
        };
        assert!(too_fast.validate().is_err());
        let too_many = PollingConfig {
            max_records: 10_001,
            ..PollingConfig::default()
        };
        assert!(too_many.validate().is_err());
        let no_prefetch = PollingConfig {
            prefetch_records: 0,
            ..PollingConfig::default()
        };
        assert!(no_prefetch.validate().is_err());
    }
}
