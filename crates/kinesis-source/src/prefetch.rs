//! The bounded queue between a reader's background task and the processor: at most so many
//! batches, records and bytes fetched ahead (exceeded by at most one response), so a slow
//! processor never makes memory grow; and within the worker's [`MemoryBudget`] shared by all
//! its readers. A processor that falls behind gets the batches that queued up while it worked
//! joined into one, so that its time per batch (a bulk write, a checkpoint) is spent once for
//! all of them. (A batch that could not be joined waits outside the queue to be handed out
//! next: one batch more than `batches` may be fetched ahead; records and bytes still count.)

use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{Notify, mpsc};

use crate::batch::Batch;
use crate::budget::{Account, Held, MemoryBudget, Reservation};
use crate::error::KinesisError;

/// How far a reader may read ahead of the processor.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PrefetchLimits {
    pub(crate) records: usize,
    pub(crate) bytes: usize,
    pub(crate) batches: usize,
    /// Most records in one batch handed out when queued batches are joined.
    pub(crate) joined_records: usize,
}

/// Records and bytes waiting in the queue.
#[derive(Debug, Default)]
struct Buffered {
    records: usize,
    bytes: usize,
}

#[derive(Debug)]
struct Budget {
    limits: PrefetchLimits,
    buffered: Mutex<Buffered>,
    room: Notify,
}

impl Budget {
    fn lock(&self) -> std::sync::MutexGuard<'_, Buffered> {
        // Two counters updated together: a poisoned lock still holds consistent values.
        self.buffered.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn add(&self, records: usize, bytes: usize) {
        let mut b = self.lock();
        b.records += records;
        b.bytes += bytes;
    }

    fn remove(&self, records: usize, bytes: usize) {
        {
            let mut b = self.lock();
            b.records = b.records.saturating_sub(records);
            b.bytes = b.bytes.saturating_sub(bytes);
        }
        self.room.notify_one();
    }

    /// How many records may be fetched now, or `None` when the queue is full.
    fn room(&self) -> Option<usize> {
        let b = self.lock();
        (b.records < self.limits.records && b.bytes < self.limits.bytes)
            .then(|| self.limits.records - b.records)
    }

    fn snapshot(&self) -> (usize, usize) {
        let b = self.lock();
        (b.records, b.bytes)
    }
}

/// A new queue bounded by `limits` and by the shared `memory`.
pub(crate) fn channel(
    limits: PrefetchLimits,
    memory: MemoryBudget,
) -> (PrefetchSender, PrefetchReceiver) {
    let budget = Arc::new(Budget {
        limits,
        buffered: Mutex::new(Buffered::default()),
        room: Notify::new(),
    });
    let (tx, rx) = mpsc::channel(limits.batches.max(1));
    (
        PrefetchSender {
            tx,
            budget: budget.clone(),
            memory: memory.account(),
        },
        PrefetchReceiver {
            rx,
            budget,
            held_back: None,
            finished: false,
        },
    )
}

/// The background task's end.
/// A queued batch, with the shared budget's hold on its bytes.
type Item = Result<(Batch, Held), KinesisError>;

#[derive(Debug)]
pub(crate) struct PrefetchSender {
    tx: mpsc::Sender<Item>,
    budget: Arc<Budget>,
    memory: Account,
}

impl PrefetchSender {
    /// Waits until the queue has room; returns how many records may be fetched.
    pub(crate) async fn room(&self) -> usize {
        loop {
            // Register for the wake-up before looking, so a batch taken in between is not
            // missed.
            let notified = self.budget.room.notified();
            if let Some(room) = self.budget.room() {
                return room;
            }
            notified.await;
        }
    }

    /// What this reader's share of the shared memory budget has left, in bytes.
    pub(crate) fn memory_available(&self) -> usize {
        self.memory.available()
    }

    /// Waits until `bytes` fit in the shared memory budget and reserves them for a response on
    /// its way (0: waits only until the budget is not overspent).
    pub(crate) async fn reserve(&self, bytes: usize) -> Reservation {
        self.memory.reserve(bytes).await
    }

    /// Queues a batch, waiting for a free slot; `false` once the reader is gone. Its data stays
    /// counted in the shared budget, instead of `memory`, until the processor takes it.
    pub(crate) async fn send(&self, batch: Batch, memory: Reservation) -> bool {
        let bytes = batch.bytes();
        self.budget.add(batch.records.len(), bytes);
        let held = memory.settle(bytes);
        self.tx.send(Ok((batch, held))).await.is_ok()
    }

    /// Queues a batch without records (only "caught up" and the lag) if a slot is free, never
    /// waiting: the task goes on reading meanwhile.
    pub(crate) fn offer_empty(&self, batch: Batch) {
        let none = self.memory.hold_nothing();
        let _ = self.tx.try_send(Ok((batch, none)));
    }

    /// Hands an error that retrying cannot fix to the processor.
    pub(crate) async fn fail(&self, err: KinesisError) {
        let _ = self.tx.send(Err(err)).await;
    }
}

/// The processor's end.
#[derive(Debug)]
pub(crate) struct PrefetchReceiver {
    rx: mpsc::Receiver<Item>,
    budget: Arc<Budget>,
    /// An item taken from the queue that could not be joined to the batch handed out before
    /// it: the next one handed out.
    held_back: Option<Item>,
    finished: bool,
}

impl PrefetchReceiver {
    /// The next batch; `None` after the last batch of a closed shard, or after an error (which
    /// is returned once, before the `None`). Batches with records that are already queued
    /// behind it are joined to it, in order, up to `joined_records` records: a batch with
    /// records never waits for one still being fetched.
    pub(crate) async fn next_batch(&mut self) -> Option<Result<Batch, KinesisError>> {
        if self.finished {
            return None;
        }
        let item = match self.held_back.take() {
            Some(item) => Some(item),
            None => self.rx.recv().await,
        };
        match item {
            Some(Ok((mut batch, held))) => {
                self.take(&batch, held);
                while !batch.records.is_empty() && !batch.is_shard_end() {
                    match self.rx.try_recv() {
                        Ok(Ok((next, held)))
                            if !next.records.is_empty()
                                && batch.records.len() + next.records.len()
                                    <= self.budget.limits.joined_records =>
                        {
                            self.take(&next, held);
                            batch.records.extend(next.records);
                            if next.millis_behind_latest.is_some() {
                                batch.millis_behind_latest = next.millis_behind_latest;
                            }
                            batch.child_shards = next.child_shards;
                        }
                        Ok(other) => {
                            self.held_back = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                if batch.is_shard_end() {
                    self.finished = true;
                }
                Some(Ok(batch))
            }
            Some(Err(e)) => {
                self.finished = true;
                Some(Err(e))
            }
            None => {
                self.finished = true;
                None
            }
        }
    }

    /// Counts `batch` as handed out and gives its bytes back to the shared budget.
    fn take(&self, batch: &Batch, held: Held) {
        self.budget.remove(batch.records.len(), batch.bytes());
        drop(held);
    }

    /// Records and bytes fetched but not yet handed out.
    pub(crate) fn buffered(&self) -> (usize, usize) {
        self.budget.snapshot()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ChildShard, Record};
    use crate::error::KinesisErrorKind;

    fn records(from: u32, n: u32) -> Batch {
        Batch {
            records: (from..from + n)
                .map(|i| Record {
                    sequence_number: i.to_string(),
                    partition_key: "k".into(),
                    data: bytes::Bytes::from_static(b"data"),
                    approximate_arrival: None,
                })
                .collect(),
            millis_behind_latest: Some(i64::from(1_000 - from)),
            child_shards: None,
        }
    }

    fn empty(child_shards: Option<Vec<ChildShard>>) -> Batch {
        Batch {
            records: Vec::new(),
            millis_behind_latest: Some(0),
            child_shards,
        }
    }

    fn limits(joined_records: usize) -> PrefetchLimits {
        PrefetchLimits {
            records: 1_000,
            bytes: 1 << 20,
            batches: 8,
            joined_records,
        }
    }

    async fn send(tx: &PrefetchSender, batch: Batch) {
        let memory = tx.reserve(batch.bytes()).await;
        assert!(tx.send(batch, memory).await);
    }

    fn sequences(batch: &Batch) -> Vec<String> {
        batch
            .records
            .iter()
            .map(|r| r.sequence_number.clone())
            .collect()
    }

    /// Joining stops at a batch without records, at an error, and at the cap; what stops it is
    /// handed out next, in order, and the queue's counts and the budget follow.
    #[tokio::test(start_paused = true)]
    async fn joining_stops_at_what_cannot_be_joined() {
        let budget = MemoryBudget::new(1 << 20);
        let (tx, mut rx) = channel(limits(10), budget.clone());
        send(&tx, records(0, 3)).await;
        send(&tx, records(3, 3)).await;
        tx.offer_empty(empty(None));
        send(&tx, records(6, 3)).await;
        send(&tx, records(9, 3)).await;
        send(&tx, records(12, 3)).await;
        tx.fail(KinesisError::new(KinesisErrorKind::InvalidArgument, "gone"))
            .await;

        let first = rx.next_batch().await.unwrap().unwrap();
        assert_eq!(sequences(&first), ["0", "1", "2", "3", "4", "5"]);
        assert_eq!(first.millis_behind_latest, Some(997), "the last one's lag");
        assert_eq!(
            rx.buffered().0,
            9,
            "the held-back batch is no longer counted"
        );
        let caught_up = rx.next_batch().await.unwrap().unwrap();
        assert!(caught_up.records.is_empty(), "the empty batch, on its own");
        let capped = rx.next_batch().await.unwrap().unwrap();
        assert_eq!(capped.records.len(), 9, "three batches of 3 within 10");
        let err = rx.next_batch().await.unwrap();
        assert!(err.is_err(), "the error after the records before it");
        assert!(rx.next_batch().await.is_none());
        assert_eq!(budget.used(), 0);
    }

    /// The service ends a closed shard with a response without records that carries the
    /// children: it is not joined, and ends the shard after the records before it.
    #[tokio::test(start_paused = true)]
    async fn an_empty_last_batch_still_ends_the_shard() {
        let budget = MemoryBudget::new(1 << 20);
        let (tx, mut rx) = channel(limits(100), budget.clone());
        send(&tx, records(0, 2)).await;
        send(&tx, records(2, 2)).await;
        send(&tx, empty(Some(Vec::new()))).await;
        let joined = rx.next_batch().await.unwrap().unwrap();
        assert_eq!(joined.records.len(), 4);
        assert!(!joined.is_shard_end());
        let end = rx.next_batch().await.unwrap().unwrap();
        assert!(end.is_shard_end());
        assert!(rx.next_batch().await.is_none());
    }

    /// A batch held back is given back to the budget when the reader goes.
    #[tokio::test(start_paused = true)]
    async fn a_held_back_batch_gives_its_bytes_back() {
        let budget = MemoryBudget::new(1 << 20);
        let (tx, mut rx) = channel(limits(3), budget.clone());
        send(&tx, records(0, 2)).await;
        send(&tx, records(2, 2)).await;
        assert_eq!(rx.next_batch().await.unwrap().unwrap().records.len(), 2);
        assert_eq!(budget.used(), 2 * 5, "the second batch, held back");
        drop((tx, rx));
        assert_eq!(budget.used(), 0);
    }
}
