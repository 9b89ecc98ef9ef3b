//! The polling reader: one background task per shard calling `GetRecords` within the service's
//! limits, a bounded prefetch queue, and recovery from expired iterators and throttling.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::api::{ChildShard, KinesisApi, Record, StartPosition, StreamId};
use crate::error::{KinesisError, KinesisErrorKind};

/// Settings of the polling reader. The defaults follow the KCL's and the service's limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollingConfig {
    /// Most records asked for per `GetRecords` call (service maximum 10,000).
    pub max_records: u32,
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

/// Records read from a shard in one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// The records, in sequence order (possibly none: a caught-up shard).
    pub records: Vec<Record>,
    /// How far behind the shard's newest record this batch is.
    pub millis_behind_latest: Option<i64>,
    /// Set on the last batch of a closed shard: the shards it was split or merged into.
    pub child_shards: Option<Vec<ChildShard>>,
}

impl Batch {
    /// Whether this is the last batch of a closed shard.
    pub fn is_shard_end(&self) -> bool {
        self.child_shards.is_some()
    }

    /// The sequence number to resume after (the last record's), if the batch has records.
    pub fn resume_after(&self) -> Option<&str> {
        self.records.last().map(|r| r.sequence_number.as_str())
    }

    fn bytes(&self) -> usize {
        self.records
            .iter()
            .map(|r| r.data.len() + r.partition_key.len())
            .sum()
    }
}

/// Records and bytes waiting in the prefetch queue.
#[derive(Debug, Default)]
struct Buffered {
    records: usize,
    bytes: usize,
}

#[derive(Debug)]
struct Budget {
    buffered: Mutex<Buffered>,
    room: Notify,
}

impl Budget {
    fn add(&self, records: usize, bytes: usize) {
        let mut b = self.buffered.lock().unwrap_or_else(PoisonError::into_inner);
        b.records += records;
        b.bytes += bytes;
    }

    fn remove(&self, records: usize, bytes: usize) {
        {
            let mut b = self.buffered.lock().unwrap_or_else(PoisonError::into_inner);
            b.records = b.records.saturating_sub(records);
            b.bytes = b.bytes.saturating_sub(bytes);
        }
        self.room.notify_one();
    }

    /// Room for more records: how many may be fetched now, or `None` when full.
    fn room(&self, config: &PollingConfig) -> Option<usize> {
        let b = self.buffered.lock().unwrap_or_else(PoisonError::into_inner);
        (b.records < config.prefetch_records && b.bytes < config.prefetch_bytes)
            .then(|| config.prefetch_records - b.records)
    }

    fn snapshot(&self) -> (usize, usize) {
        let b = self.buffered.lock().unwrap_or_else(PoisonError::into_inner);
        (b.records, b.bytes)
    }
}

/// Reads one shard by polling, ahead of the processor within the prefetch bounds.
///
/// A background task calls `GetRecords` at most once per `min_time_between_reads`, pauses when
/// the shard is caught up, paces itself to the shard's byte budget, backs off exponentially with
/// jitter on throttling and service errors, and replaces an expired iterator by one after the
/// last record it fetched, so nothing is lost or repeated. Dropping the reader stops the task.
#[derive(Debug)]
pub struct PollingReader {
    batches: mpsc::Receiver<Result<Batch, KinesisError>>,
    budget: Arc<Budget>,
    task: JoinHandle<()>,
    finished: bool,
}

impl PollingReader {
    /// Starts reading `shard_id` of `stream` from `position`.
    pub fn start(
        api: Arc<dyn KinesisApi>,
        stream: StreamId,
        shard_id: String,
        position: StartPosition,
        config: PollingConfig,
    ) -> Self {
        let budget = Arc::new(Budget {
            buffered: Mutex::new(Buffered::default()),
            room: Notify::new(),
        });
        let (tx, batches) = mpsc::channel(config.prefetch_batches.max(1));
        let fetcher = Fetcher {
            api,
            stream,
            jitter: Jitter::seeded(&shard_id),
            shard_id,
            start: position,
            config,
            budget: budget.clone(),
            tx,
        };
        let task = tokio::spawn(fetcher.run());
        Self {
            batches,
            budget,
            task,
            finished: false,
        }
    }

    /// The next batch; `None` after the last batch of a closed shard, or after an error that
    /// retrying cannot fix (which is returned once, before the `None`).
    pub async fn next_batch(&mut self) -> Option<Result<Batch, KinesisError>> {
        if self.finished {
            return None;
        }
        let item = self.batches.recv().await;
        match &item {
            Some(Ok(batch)) => {
                self.budget.remove(batch.records.len(), batch.bytes());
                if batch.is_shard_end() {
                    self.finished = true;
                }
            }
            Some(Err(_)) | None => self.finished = true,
        }
        item
    }

    /// Records and bytes fetched but not yet handed out.
    pub fn buffered(&self) -> (usize, usize) {
        self.budget.snapshot()
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
    start: StartPosition,
    config: PollingConfig,
    budget: Arc<Budget>,
    tx: mpsc::Sender<Result<Batch, KinesisError>>,
    jitter: Jitter,
}

impl Fetcher {
    async fn run(mut self) {
        let mut iterator: Option<String> = None;
        let mut last_fetched: Option<String> = None;
        let mut next_call = Instant::now();
        let mut backoff = self.config.backoff_initial;
        loop {
            let room = loop {
                if let Some(room) = self.budget.room(&self.config) {
                    break room;
                }
                // Woken when the processor takes a batch.
                self.budget.room.notified().await;
            };
            tokio::time::sleep_until(next_call).await;
            let started = Instant::now();

            let current = match iterator.take() {
                Some(it) => it,
                None => {
                    let position = match &last_fetched {
                        Some(seq) => StartPosition::AfterSequenceNumber(seq.clone()),
                        None => self.start.clone(),
                    };
                    match self
                        .api
                        .get_shard_iterator(&self.stream, &self.shard_id, &position)
                        .await
                    {
                        Ok(it) => it,
                        Err(err) => match self.on_error(err, &mut backoff, started).await {
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
                .min(self.config.max_records)
                .max(1);
            match self.api.get_records(&self.stream, &current, limit).await {
                Ok(out) => {
                    backoff = self.config.backoff_initial;
                    let batch = Batch {
                        records: out.records,
                        millis_behind_latest: out.millis_behind_latest,
                        child_shards: match out.next_iterator {
                            Some(_) => None,
                            None => Some(out.child_shards.unwrap_or_default()),
                        },
                    };
                    if let Some(seq) = batch.resume_after() {
                        last_fetched = Some(seq.to_owned());
                    }
                    iterator = out.next_iterator;
                    next_call = started + self.pause_after(&batch);
                    let ended = batch.is_shard_end();
                    if batch.records.is_empty() && !ended {
                        // An empty batch only carries "caught up"; never wait for room to hand
                        // it over, so the iterator keeps being refreshed.
                        let _ = self.tx.try_send(Ok(batch));
                        continue;
                    }
                    self.budget.add(batch.records.len(), batch.bytes());
                    if self.tx.send(Ok(batch)).await.is_err() || ended {
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
                    match self.on_error(err, &mut backoff, started).await {
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
    async fn on_error(
        &mut self,
        err: KinesisError,
        backoff: &mut Duration,
        started: Instant,
    ) -> Option<Instant> {
        if err.is_retryable() {
            let floor = if err.kind() == KinesisErrorKind::ResourceInUse {
                Duration::from_secs(5)
            } else {
                Duration::ZERO
            };
            let pause = self
                .jitter
                .apply(*backoff)
                .max(floor)
                .max(self.config.min_time_between_reads);
            *backoff = (*backoff * 2).min(self.config.backoff_max);
            return Some(started + pause);
        }
        let _ = self.tx.send(Err(err)).await;
        None
    }
}

/// Deterministic jitter: a pause drawn from [d/2, d] by xorshift, seeded per shard so that
/// shards backing off together spread out.
#[derive(Debug)]
struct Jitter(u64);

impl Jitter {
    fn seeded(seed: &str) -> Self {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in seed.bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        Self(hash | 1)
    }

    fn apply(&mut self, d: Duration) -> Duration {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        let fraction = (self.0 % 1_000) as f64 / 1_000.0;
        d.mul_f64(0.5 + fraction / 2.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_half_to_full() {
        let mut j = Jitter::seeded("shardId-000000000001");
        let d = Duration::from_millis(1_000);
        for _ in 0..1_000 {
            let p = j.apply(d);
            assert!(p >= d / 2 && p <= d, "{p:?}");
        }
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
