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
    /// Most records asked for per `GetRecords` call (service maximum 10,000), and most records
    /// in one batch handed to the processor. Calls are sized below it from the shard's byte
    /// budget (see [`max_bytes_per_second`](Self::max_bytes_per_second)) and the worker's
    /// memory budget; batches that queued up while the processor worked are handed over
    /// joined, up to this many records.
    pub max_records: u32,
    /// Pause after a call that returned no records (the shard is caught up).
    pub idle_time_between_reads: Duration,
    /// Shortest time between two calls on one shard. The service allows 5 calls per second per
    /// shard, shared by every consumer of the shard: 200 ms is the floor.
    pub min_time_between_reads: Duration,
    /// The shard's read budget in bytes per second (the service allows 2 MiB/s per shard).
    /// Each call asks for as many records as this budget allows over one
    /// `min_time_between_reads` (about 420 KB at the defaults), judged by the average record
    /// of the previous response, up to `max_records`; after a larger response the reader waits
    /// as long as the service needs to refill the budget. A reader so keeps a backlogged shard
    /// at its limit with the smallest calls that do, and raising `min_time_between_reads`
    /// (to leave calls to another application reading the same shard) makes calls larger
    /// instead of slower.
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
/// known: few enough that records of up to about 20 KB stay within the shard's one second of
/// burst.
const FIRST_CALL_RECORDS: u32 = 100;

/// The largest record Kinesis accepts (data and partition key): what each record of the first
/// call is counted at.
const MAX_RECORD_BYTES: usize = 1024 * 1024;

/// The largest response the service returns: the most any call reserves.
const MAX_RESPONSE_BYTES: usize = 10 * 1024 * 1024;

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
    /// worker's readers): each call reserves what its response may hold (the records it asks for
    /// at the largest record size of the previous response), and asks for no more than its
    /// share of the budget (the budget divided by the readers sharing it) has left; a
    /// response's data stays counted until the processor takes it. Before any record size is known, records
    /// are counted at 1 MiB, the largest Kinesis allows, and the first call asks for at most
    /// 100.
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
                joined_records: config.max_records as usize,
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
        // The record sizes of the last response with records.
        let mut sizes: Option<RecordSizes> = None;
        loop {
            // Waits while the prefetch queue is full; woken when the processor takes a batch.
            let room = self.tx.room().await;
            tokio::time::sleep_until(next_call).await;
            let call = CallSize::new(&self.config, sizes, self.tx.memory_available(), room);
            // Only now, so that a reader pausing between calls holds none of the budget.
            let memory = self.tx.reserve(call.reserve).await;
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

            let called = Instant::now();
            let result = self
                .api
                .get_records(&self.stream, &current, call.records)
                .await;
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
                        sizes = RecordSizes::of(&batch);
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

/// The sizes of a response's records (data and partition key), in bytes.
#[derive(Debug, Clone, Copy)]
struct RecordSizes {
    average: f64,
    largest: usize,
}

impl RecordSizes {
    /// `None` for a batch without records.
    fn of(batch: &Batch) -> Option<Self> {
        let largest = batch.largest_record()?;
        Some(Self {
            average: batch.bytes() as f64 / batch.records.len() as f64,
            largest,
        })
    }
}

/// One `GetRecords` call: how many records to ask for, and how much of the worker's memory
/// budget to reserve for the response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CallSize {
    records: u32,
    reserve: usize,
}

impl CallSize {
    /// As many records as the shard's byte budget allows over one call interval
    /// (`max_bytes_per_second` times `min_time_between_reads`, at the average record of the
    /// last response), within `max_records`, the prefetch queue's `room`, and what the reader's
    /// `share` of the worker's memory budget has left, at the largest record. Before any record
    /// was seen,
    /// the same bounds at the largest record Kinesis allows, and at most [`FIRST_CALL_RECORDS`]:
    /// a first response stays within the share whatever its records, but for a share below
    /// 1 MiB, where the one record asked for may go over it.
    fn new(config: &PollingConfig, sizes: Option<RecordSizes>, share: usize, room: usize) -> Self {
        let most = config
            .max_records
            .min(u32::try_from(room).unwrap_or(u32::MAX))
            .max(1);
        let Some(sizes) = sizes else {
            let fits = u32::try_from(share / MAX_RECORD_BYTES).unwrap_or(u32::MAX);
            let records = most.min(FIRST_CALL_RECORDS).min(fits).max(1);
            return Self {
                records,
                reserve: (records as usize)
                    .saturating_mul(MAX_RECORD_BYTES)
                    .min(MAX_RESPONSE_BYTES)
                    .min(share),
            };
        };
        let fills = config.max_bytes_per_second as f64
            * config.min_time_between_reads.as_secs_f64()
            / sizes.average.max(1.0);
        let fits = share as f64 / sizes.largest.max(1) as f64;
        // Rounded up: the pause after a response refills the byte budget exactly, while one
        // record short in every call would leave 4% of the limit unused with records of 25 KB.
        // Saturating float-to-int conversions; at least one record.
        let records = (fills.ceil().min(fits.floor()) as u32).min(most).max(1);
        Self {
            records,
            reserve: (records as usize)
                .saturating_mul(sizes.largest)
                .min(MAX_RESPONSE_BYTES),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sizes(average: f64, largest: usize) -> Option<RecordSizes> {
        Some(RecordSizes { average, largest })
    }

    /// A call asks for what the shard's 2 MiB/s allows over 200 ms, by the average record; it
    /// reserves that many of the largest record; before any size is known, 100 records and the
    /// service's largest response.
    #[test]
    fn a_call_takes_one_interval_of_the_byte_budget() {
        let config = PollingConfig::default();
        let unlimited = usize::MAX;
        let room = 30_000;
        assert_eq!(
            CallSize::new(&config, None, unlimited, room),
            CallSize {
                records: 100,
                reserve: 10 * 1024 * 1024
            }
        );
        assert_eq!(
            CallSize::new(&config, sizes(100.0, 100), unlimited, room),
            CallSize {
                records: 4_195,
                reserve: 419_500
            },
            "419,430 B in records of 100 B, rounded up"
        );
        let mixed = CallSize::new(&config, sizes(1_000.0, 10_000), unlimited, room);
        assert_eq!(mixed.records, 420, "by the average record");
        assert_eq!(
            mixed.reserve,
            mixed.records as usize * 10_000,
            "by the largest"
        );
        assert_eq!(
            CallSize::new(&config, sizes(1.0, 1), unlimited, room).records,
            10_000,
            "at most max_records"
        );
        assert_eq!(
            CallSize::new(&config, sizes(1.0, 1), unlimited, 7).records,
            7,
            "at most the queue's room"
        );
        assert_eq!(
            CallSize::new(&config, sizes(5_000_000.0, 5_000_000), unlimited, room),
            CallSize {
                records: 1,
                reserve: 5_000_000
            },
            "one record, however large"
        );
        assert_eq!(
            CallSize::new(&config, sizes(1_000.0, 1_000_000), unlimited, room).reserve,
            10 * 1024 * 1024,
            "never more than the service's largest response"
        );
        let slower = PollingConfig {
            min_time_between_reads: Duration::from_millis(400),
            ..config.clone()
        };
        assert_eq!(
            CallSize::new(&slower, sizes(1_000.0, 1_000), unlimited, room).records,
            839,
            "fewer calls, each larger: 2 MiB/s over 400 ms in records of 1,000 B"
        );
    }

    /// A call reserves at most the reader's share of the worker's budget, so that every reader
    /// fetches however small it is (but at least one record).
    #[test]
    fn a_call_takes_at_most_its_share_of_the_worker_budget() {
        let config = PollingConfig::default();
        let budget = 100_000;
        let call = CallSize::new(&config, sizes(1_000.0, 1_000), budget, 30_000);
        assert_eq!(call.records, 100);
        assert_eq!(call.reserve, 100_000);
        assert_eq!(
            CallSize::new(&config, None, budget, 30_000),
            CallSize {
                records: 1,
                reserve: budget
            },
            "before any size is known, one record, which may take 1 MiB, reserved within the share"
        );
        assert_eq!(
            CallSize::new(&config, None, 10 << 20, 30_000),
            CallSize {
                records: 10,
                reserve: 10 << 20
            },
            "ten records of up to 1 MiB in a share of 10 MiB"
        );
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
