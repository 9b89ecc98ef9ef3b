//! The checkpointer a processor uses to record its progress in the lease.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::time::Instant;

use shardwise_lease_core::{
    Checkpoint, CheckpointBounds, CheckpointUpdate, ExtendedSequenceNumber, Lease, LeaseStore,
    PendingCheckpoint, Race, SequenceNumber, ShardId, StoreError, WorkerId, validate_checkpoint,
};

use crate::grant::Grant;
use crate::record::UserRecord;
use crate::transaction::{CommitError, Fence, TransactionalStore};

/// Why a checkpoint was refused. Nothing was written, except perhaps after a
/// [`CheckpointError::Store`] error whose write may have been applied (see there).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// This worker no longer holds the lease (another worker took it, or it expired): the
    /// processor must stop; the new holder continues from the last checkpoint.
    #[error("the lease is no longer held by this worker")]
    LeaseLost,
    /// The position is not allowed (behind the stored checkpoint, beyond the last delivered
    /// record, `SHARD_END` before the end, …).
    #[error(transparent)]
    Invalid(#[from] shardwise_lease_core::CheckpointError),
    /// The lease store failed; [`StoreError::is_retryable`] says whether trying again may help.
    /// After a transactional checkpoint this may mean the transaction's outcome is unknown: the
    /// next write of the checkpointer reads the lease first, and a retried batch comes without
    /// the records the transaction covered if it was applied.
    #[error("checkpoint not stored: {0}")]
    Store(#[from] StoreError),
    /// A transactional checkpoint ([`Checkpointer::commit`]) that would not move past the
    /// stored checkpoint: its writes could only repeat effects already committed. Nothing was
    /// written.
    #[error(
        "a transactional checkpoint must move past the stored checkpoint {stored}, not to {requested}"
    )]
    NotAhead {
        /// The requested position.
        requested: Checkpoint,
        /// The stored checkpoint.
        stored: Checkpoint,
    },
    /// The store refused a transactional checkpoint because of one of the application's own
    /// writes (a condition of its own that failed, say). Nothing was written.
    #[error("the transaction was refused: {0}")]
    Refused(String),
}

/// What the pipeline has handed to the processor so far.
///
/// A record is *delivered* while the `process_records` call that received it runs, and after it
/// only if that call returned `Ok`. A batch whose call failed or panicked is not delivered: no
/// checkpoint may cover it (`checkpoint()` in `shutdown_requested` stops before it), so the
/// next attempt, on this worker or another, processes it again; on this worker without the
/// records that checkpoints the processor wrote during the failed call already cover.
#[derive(Debug, Default)]
pub(crate) struct Cursor {
    /// The last record of the last batch whose `process_records` returned `Ok`.
    processed: Option<ExtendedSequenceNumber>,
    /// The last record of the batch in the `process_records` call running now.
    in_hand: Option<ExtendedSequenceNumber>,
    pub(crate) shard_end_reached: bool,
    pub(crate) children: Vec<ShardId>,
}

impl Cursor {
    /// The last delivered record.
    fn delivered(&self) -> Option<&ExtendedSequenceNumber> {
        self.in_hand.as_ref().or(self.processed.as_ref())
    }
}

#[derive(Debug)]
struct Inner {
    store: Arc<dyn LeaseStore>,
    worker: WorkerId,
    grant: Arc<Grant>,
    cursor: Mutex<Cursor>,
    metrics: shardwise_metrics::ShardMetrics,
}

/// Records a shard's progress in its lease. Cheap to clone; valid only for the grant of the
/// lease it was made for: once the lease is lost, every call returns
/// [`CheckpointError::LeaseLost`], even if this worker takes the lease again later.
///
/// Checkpoints are validated before anything is written: never behind the stored checkpoint,
/// never beyond the last record delivered, sub-sequence aware for KPL records, `SHARD_END` only
/// at the end of the shard.
#[derive(Debug, Clone)]
pub struct Checkpointer {
    inner: Arc<Inner>,
}

/// Clears the batch in hand when dropped.
struct InHand<'a>(&'a Checkpointer);

impl Drop for InHand<'_> {
    fn drop(&mut self) {
        self.0.with_cursor(|c| c.in_hand = None);
    }
}

/// The first phase of a two-phase checkpoint; [`PreparedCheckpoint::commit`] completes it.
#[derive(Debug)]
#[must_use = "a prepared checkpoint does nothing until committed"]
pub struct PreparedCheckpoint {
    checkpointer: Checkpointer,
    position: Checkpoint,
}

impl PreparedCheckpoint {
    /// The prepared position.
    pub fn position(&self) -> &Checkpoint {
        &self.position
    }

    /// Moves the checkpoint to the prepared position and clears the pending one.
    pub async fn commit(self) -> Result<(), CheckpointError> {
        self.checkpointer.write(self.position, None).await
    }
}

impl Checkpointer {
    pub(crate) fn new(
        store: Arc<dyn LeaseStore>,
        worker: WorkerId,
        grant: Arc<Grant>,
        metrics: shardwise_metrics::ShardMetrics,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                worker,
                grant,
                cursor: Mutex::new(Cursor::default()),
                metrics,
            }),
        }
    }

    /// Runs `handle`, a `process_records` call with a batch ending at `last`: the batch is
    /// delivered while it runs, and stays delivered only if `succeeded` says the call did.
    pub(crate) async fn delivering<T>(
        &self,
        last: ExtendedSequenceNumber,
        handle: impl Future<Output = T>,
        succeeded: impl FnOnce(&T) -> bool,
    ) -> T {
        self.with_cursor(|c| c.in_hand = Some(last));
        // Cleared however the call ends, a pipeline aborted in the middle of it included: a
        // clone of this checkpointer kept by the processor can never cover the batch then.
        let _clear = InHand(self);
        let outcome = handle.await;
        if succeeded(&outcome) {
            self.with_cursor(|c| c.processed = c.in_hand.clone());
        }
        outcome
    }

    pub(crate) fn with_cursor<T>(&self, f: impl FnOnce(&mut Cursor) -> T) -> T {
        f(&mut self
            .inner
            .cursor
            .lock()
            .unwrap_or_else(PoisonError::into_inner))
    }

    /// The shard this checkpointer writes for.
    pub fn shard_id(&self) -> &ShardId {
        &self.inner.grant.shard_id
    }

    /// The checkpoint currently stored in the lease.
    pub async fn stored(&self) -> Checkpoint {
        self.inner.grant.state().checkpoint.clone()
    }

    /// Checkpoints everything delivered so far: the batch being processed and every batch
    /// processed successfully before it, or `SHARD_END` once the end of the shard was delivered.
    /// A batch whose `process_records` failed is not delivered, so in `shutdown_requested` this
    /// checkpoints the batches before it.
    pub async fn checkpoint(&self) -> Result<(), CheckpointError> {
        let target = self.with_cursor(|c| {
            if c.shard_end_reached {
                Some(Checkpoint::ShardEnd)
            } else {
                c.delivered().cloned().map(Checkpoint::At)
            }
        });
        match target {
            // The processor checkpointed further itself (inside a batch that then failed, say):
            // the stored checkpoint stands.
            Some(target) if target.cmp_progress(&self.stored().await).is_lt() => Ok(()),
            Some(target) => self.write(target, None).await,
            // Nothing delivered since the lease was taken: the stored checkpoint stands.
            None => Ok(()),
        }
    }

    /// Checkpoints at a record: it and everything before it are processed.
    pub async fn checkpoint_at(&self, record: &UserRecord) -> Result<(), CheckpointError> {
        self.write(Checkpoint::At(record.position()), None).await
    }

    /// Checkpoints at a sequence number and sub-sequence number.
    pub async fn checkpoint_at_sequence(
        &self,
        sequence: SequenceNumber,
        sub_sequence: u64,
    ) -> Result<(), CheckpointError> {
        self.write(Checkpoint::at(sequence, sub_sequence), None)
            .await
    }

    /// Commits the application's `writes` together with a checkpoint at everything delivered
    /// (the batch in hand included), in one transaction of `store`, fenced by the lease: both
    /// are applied, or neither. With one such commit per batch, each record's effects are
    /// applied exactly once, whatever crashes, freezes or steals happen (see
    /// [`TransactionalStore`]).
    ///
    /// `store` must be the store this worker's leases are in (the same table and namespace);
    /// any other fails the fence and is [`CheckpointError::LeaseLost`].
    ///
    /// Errors, and nothing of `writes` applied: [`CheckpointError::LeaseLost`] when another
    /// worker holds the lease now; [`CheckpointError::NotAhead`] when nothing was delivered
    /// past the stored checkpoint; [`CheckpointError::Refused`] for the application's own
    /// writes; [`CheckpointError::Store`] when the store failed, and after a failed commit
    /// the outcome may be unknown: returning the error from `process_records` is then right,
    /// the retried batch comes without what the commit covered if it was applied.
    ///
    /// ```no_run
    /// # use std::sync::{Arc, Mutex};
    /// # async fn run(
    /// #     batch: &shardwise::RecordBatch,
    /// #     checkpointer: &shardwise::Checkpointer,
    /// # ) -> Result<(), shardwise::ProcessorError> {
    /// // With the in-memory store the writes are a closure, run under the store's lock; with
    /// // PostgreSQL they are the application's sqlx transaction, with DynamoDB its
    /// // `TransactWriteItem`s (see the README's "exactly once into PostgreSQL").
    /// let store = shardwise::lease::MemoryLeaseStore::new();
    /// let sink: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    /// let rows: Vec<Vec<u8>> = batch.records.iter().map(|r| r.data.to_vec()).collect();
    /// let insert = move || {
    ///     if let Ok(mut sink) = sink.lock() {
    ///         sink.extend(rows);
    ///     }
    /// };
    /// checkpointer.commit(&store, Box::new(insert)).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn commit<S: TransactionalStore>(
        &self,
        store: &S,
        writes: S::Writes,
    ) -> Result<(), CheckpointError> {
        let Some(target) = self.with_cursor(|c| c.delivered().cloned()) else {
            return Err(CheckpointError::Invalid(
                shardwise_lease_core::CheckpointError::BeyondDelivered {
                    requested: self.stored().await,
                    last_delivered: None,
                },
            ));
        };
        self.commit_through(store, writes, Checkpoint::At(target))
            .await
    }

    /// [`Checkpointer::commit`] with the checkpoint at `record`: `writes` are the effects of
    /// the records after the stored checkpoint up to `record`.
    pub async fn commit_at<S: TransactionalStore>(
        &self,
        store: &S,
        writes: S::Writes,
        record: &UserRecord,
    ) -> Result<(), CheckpointError> {
        self.commit_through(store, writes, Checkpoint::At(record.position()))
            .await
    }

    async fn commit_through<S: TransactionalStore>(
        &self,
        store: &S,
        writes: S::Writes,
        target: Checkpoint,
    ) -> Result<(), CheckpointError> {
        let grant = &self.inner.grant;
        let _turn = self.turn().await?;
        let state = grant.state().clone();
        self.check(&state.checkpoint, &target)?;
        if target.cmp_progress(&state.checkpoint).is_le() {
            return Err(CheckpointError::NotAhead {
                requested: target,
                stored: state.checkpoint,
            });
        }
        let update = CheckpointUpdate {
            checkpoint: target,
            pending: None,
        };
        let mut fence = Fence::new(grant, &self.inner.worker, state.counter, update);
        let sent = Instant::now();
        let outcome = store.commit_fenced(writes, &mut fence).await;
        let metrics = &self.inner.metrics;
        match outcome {
            Ok(counter) => {
                metrics.checkpoint_writes.increment(1);
                let mut state = grant.state();
                state.counter = counter;
                state.checkpoint = fence.update().checkpoint.clone();
                state.has_pending = false;
                if grant.writes_renew {
                    state.renewed_at = state.renewed_at.max(sent);
                }
                Ok(())
            }
            Err(error) => {
                metrics.checkpoint_failures.increment(1);
                Err(match error {
                    CommitError::LeaseLost => {
                        grant.lost.cancel();
                        CheckpointError::LeaseLost
                    }
                    CommitError::NotApplied(e) => CheckpointError::Store(e),
                    CommitError::Unknown(e) => {
                        grant.in_doubt(Some(&fence.update().checkpoint));
                        CheckpointError::Store(e)
                    }
                    CommitError::Refused(reasons) => CheckpointError::Refused(reasons),
                })
            }
        }
    }

    /// The stored checkpoint, once any doubt about this grant's last write is settled (one
    /// read of the lease when in doubt). `LeaseLost` when the lease turned out lost.
    pub(crate) async fn settled(&self) -> Result<Checkpoint, CheckpointError> {
        let _turn = self.turn().await?;
        Ok(self.inner.grant.state().checkpoint.clone())
    }

    /// Prepares a checkpoint at `position` (everything delivered when `None`) with optional
    /// application state, stored beside the current checkpoint until committed. After a restart
    /// the processor finds it in [`InitializeInput::pending_checkpoint`](crate::InitializeInput).
    pub async fn prepare(
        &self,
        position: Option<ExtendedSequenceNumber>,
        state: Option<Vec<u8>>,
    ) -> Result<PreparedCheckpoint, CheckpointError> {
        let position = match position {
            Some(p) => Checkpoint::At(p),
            None => match self.with_cursor(|c| c.delivered().cloned()) {
                Some(p) => Checkpoint::At(p),
                None => {
                    return Err(CheckpointError::Invalid(
                        shardwise_lease_core::CheckpointError::BeyondDelivered {
                            requested: self.stored().await,
                            last_delivered: None,
                        },
                    ));
                }
            },
        };
        let pending = PendingCheckpoint::new(position.clone(), state);
        self.write_pending(pending).await?;
        Ok(PreparedCheckpoint {
            checkpointer: self.clone(),
            position,
        })
    }

    /// Resolves `LATEST` to a real position before a shard's first records are delivered: writes
    /// [`Checkpoint::Before`] the first one, so that whoever holds the lease next resumes at that
    /// record rather than after the newest. Does nothing unless the stored checkpoint is `LATEST`.
    pub(crate) async fn pin_latest(&self, first: &SequenceNumber) -> Result<(), CheckpointError> {
        let grant = &self.inner.grant;
        let _turn = self.turn().await?;
        let state = grant.state().clone();
        if state.checkpoint != Checkpoint::Latest {
            return Ok(());
        }
        let checkpoint = Checkpoint::Before(first.clone());
        // A prepared checkpoint left by an earlier holder stays, unless it is behind the pin.
        let pending = match &grant.pending {
            Some(p) if state.has_pending && p.position.cmp_progress(&checkpoint).is_ge() => {
                Some(p.clone())
            }
            _ => None,
        };
        let update = CheckpointUpdate {
            checkpoint,
            pending,
        };
        self.update(&update).await
    }

    fn check(&self, stored: &Checkpoint, target: &Checkpoint) -> Result<(), CheckpointError> {
        self.with_cursor(|c| {
            let bounds = CheckpointBounds {
                stored,
                last_delivered: c.delivered(),
                shard_end_reached: c.shard_end_reached,
            };
            validate_checkpoint(&bounds, target)
        })?;
        Ok(())
    }

    async fn write_pending(&self, pending: PendingCheckpoint) -> Result<(), CheckpointError> {
        let grant = &self.inner.grant;
        let _turn = self.turn().await?;
        let state = grant.state().clone();
        self.check(&state.checkpoint, &pending.position)?;
        let update = CheckpointUpdate::prepare(state.checkpoint.clone(), pending);
        self.update(&update).await
    }

    /// Validates and writes, in the grant's turn to write (so a renewal never races it).
    pub(crate) async fn write(
        &self,
        target: Checkpoint,
        pending: Option<PendingCheckpoint>,
    ) -> Result<(), CheckpointError> {
        let grant = &self.inner.grant;
        let _turn = self.turn().await?;
        let state = grant.state().clone();
        self.check(&state.checkpoint, &target)?;
        if target == state.checkpoint && pending.is_none() && !state.has_pending {
            // Already stored: nothing to write (saves a store call per idle batch).
            return Ok(());
        }
        if target.is_shard_end() {
            let children = self.with_cursor(|c| c.children.clone());
            let (store, me) = (&self.inner.store, &self.inner.worker);
            return self
                .conditional(&Checkpoint::ShardEnd, |counter| {
                    store.mark_ended(&grant.key, me, counter, &children)
                })
                .await;
        }
        let update = CheckpointUpdate {
            checkpoint: target,
            pending,
        };
        self.update(&update).await
    }

    /// The grant's turn to write, with any doubt about its counter settled; `LeaseLost` when the
    /// lease turned out lost.
    async fn turn(&self) -> Result<tokio::sync::MutexGuard<'_, ()>, CheckpointError> {
        let grant = &self.inner.grant;
        let turn = grant.writing.lock().await;
        if !grant.is_lost() {
            grant
                .settle_doubt(self.inner.store.as_ref(), &self.inner.worker)
                .await?;
        }
        if grant.is_lost() {
            return Err(CheckpointError::LeaseLost);
        }
        Ok(turn)
    }

    /// One `update_checkpoint`; the caller holds the grant's turn to write.
    async fn update(&self, update: &CheckpointUpdate) -> Result<(), CheckpointError> {
        let (store, me) = (&self.inner.store, &self.inner.worker);
        let key = &self.inner.grant.key;
        self.conditional(&update.checkpoint, |counter| {
            store.update_checkpoint(key, me, counter, update)
        })
        .await
    }

    /// One conditional write at the grant's counter; the caller holds the grant's turn to write.
    /// A write that loses its race is not always a lost lease: when the lease read back is still
    /// this grant's (another worker asked for it, see [`Grant::reread`]), the write runs once more
    /// at the counter adopted.
    async fn conditional<F, Fut>(
        &self,
        leaves: &Checkpoint,
        write: F,
    ) -> Result<(), CheckpointError>
    where
        F: Fn(u64) -> Fut,
        Fut: Future<Output = Result<Race<Lease>, StoreError>>,
    {
        let grant = &self.inner.grant;
        for attempt in 0..2 {
            let counter = grant.state().counter;
            let sent = Instant::now();
            if self.settle(write(counter).await, leaves, sent)? {
                return Ok(());
            }
            if attempt > 0
                || !grant
                    .reread(self.inner.store.as_ref(), &self.inner.worker)
                    .await?
            {
                break;
            }
        }
        self.inner.metrics.checkpoint_failures.increment(1);
        grant.lost.cancel();
        Err(CheckpointError::LeaseLost)
    }

    /// Records the outcome of a write that would leave the checkpoint at `leaves` in the grant:
    /// a won write moved the counter and, like a renewal, proves the lease ours from the time
    /// it was `sent`. `Ok(false)` when it lost its race.
    fn settle(
        &self,
        outcome: Result<Race<Lease>, StoreError>,
        leaves: &Checkpoint,
        sent: Instant,
    ) -> Result<bool, CheckpointError> {
        let outcome = outcome.inspect_err(|e| {
            self.inner.metrics.checkpoint_failures.increment(1);
            self.inner.grant.failed_write(e, Some(leaves));
        })?;
        let Race::Won(lease) = outcome else {
            return Ok(false);
        };
        self.inner.metrics.checkpoint_writes.increment(1);
        let mut state = self.inner.grant.state();
        state.counter = lease.counter;
        state.checkpoint = lease.checkpoint;
        state.has_pending = lease.pending_checkpoint.is_some();
        if self.inner.grant.writes_renew {
            state.renewed_at = state.renewed_at.max(sent);
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use shardwise_lease_core::{Lease, LeaseKey, MemoryLeaseStore, ShardId};

    use super::*;

    /// A `process_records` call cut off in the middle (its pipeline aborted at the end of the
    /// shutdown timeout) leaves nothing delivered: a clone of the checkpointer that the processor
    /// kept cannot checkpoint the batch it was handling.
    #[tokio::test(start_paused = true)]
    async fn a_call_cut_off_delivers_nothing() {
        let store = Arc::new(MemoryLeaseStore::new());
        let (key, _, checkpointer) = held(&store).await;
        let call = checkpointer.delivering(last(), std::future::pending::<()>(), |_| true);
        assert!(
            tokio::time::timeout(std::time::Duration::from_secs(1), call)
                .await
                .is_err()
        );
        checkpointer.checkpoint().await.unwrap();
        let stored = store.get(&key).await.unwrap().unwrap().checkpoint;
        assert_eq!(
            stored,
            Checkpoint::TrimHorizon,
            "the cut-off batch is not checkpointed"
        );
    }

    /// The last record of the batch the tests deliver.
    fn last() -> ExtendedSequenceNumber {
        ExtendedSequenceNumber::new(SequenceNumber::new("42").unwrap(), 0)
    }

    /// A lease taken at counter 1 by `w`, and a checkpointer on it.
    async fn held(store: &Arc<MemoryLeaseStore>) -> (LeaseKey, Arc<Grant>, Checkpointer) {
        let key = LeaseKey::new("shardId-0").unwrap();
        let me = WorkerId::new("w").unwrap();
        let lease = Lease::new(key.clone(), Checkpoint::TrimHorizon);
        assert!(store.create_if_absent(&lease).await.unwrap().is_won());
        let taken = store.take(&key, 0, &me).await.unwrap().won().unwrap();
        let grant = Arc::new(Grant::new(&taken, ShardId::new("shardId-0").unwrap()));
        let names = shardwise_metrics::MetricNames::new("test").unwrap();
        let metrics = shardwise_metrics::ShardMetrics::register(
            &names,
            shardwise_metrics::MetricsLevel::default(),
            "s",
            "shardId-0",
            "w",
        );
        let checkpointer = Checkpointer::new(store.clone(), me, grant.clone(), metrics);
        (key, grant, checkpointer)
    }

    /// [`held`], with the batch ending at [`last`] delivered.
    async fn delivered(store: &Arc<MemoryLeaseStore>) -> (LeaseKey, Arc<Grant>, Checkpointer) {
        let (key, grant, checkpointer) = held(store).await;
        checkpointer.delivering(last(), async {}, |_| true).await;
        (key, grant, checkpointer)
    }

    /// The rows a transactional checkpoint's writes add to `sink`.
    fn insert(
        sink: &Arc<Mutex<Vec<&'static str>>>,
        rows: &[&'static str],
    ) -> Box<dyn FnOnce() + Send> {
        let (sink, rows) = (sink.clone(), rows.to_vec());
        Box::new(move || sink.lock().unwrap().extend(rows))
    }

    #[tokio::test]
    async fn a_transaction_commits_its_writes_with_the_checkpoint() {
        let store = Arc::new(MemoryLeaseStore::new());
        let (key, grant, checkpointer) = delivered(&store).await;
        let sink = Arc::default();
        checkpointer
            .commit(store.as_ref(), insert(&sink, &["a", "b"]))
            .await
            .unwrap();
        assert_eq!(*sink.lock().unwrap(), ["a", "b"]);
        let stored = store.get(&key).await.unwrap().unwrap();
        assert_eq!(
            stored.checkpoint,
            Checkpoint::at(SequenceNumber::new("42").unwrap(), 0)
        );
        assert_eq!(
            grant.state().counter,
            stored.counter,
            "the grant follows its commit"
        );
    }

    /// The fence is the store's: a grant that has not noticed its lease was taken commits
    /// nothing, and learns it lost the lease.
    #[tokio::test]
    async fn a_transaction_on_a_stolen_lease_applies_nothing() {
        let store = Arc::new(MemoryLeaseStore::new());
        let (key, grant, checkpointer) = delivered(&store).await;
        let thief = WorkerId::new("thief").unwrap();
        assert!(store.take(&key, 1, &thief).await.unwrap().is_won());
        let sink = Arc::default();
        let refused = checkpointer
            .commit(store.as_ref(), insert(&sink, &["a"]))
            .await;
        assert!(
            matches!(refused, Err(CheckpointError::LeaseLost)),
            "{refused:?}"
        );
        assert!(
            sink.lock().unwrap().is_empty(),
            "nothing of the writes applied"
        );
        let stored = store.get(&key).await.unwrap().unwrap();
        assert_eq!(stored.checkpoint, Checkpoint::TrimHorizon);
        assert!(grant.is_lost());
    }

    /// A hand-off request moves the counter without taking the lease: the transaction still
    /// commits, at the counter adopted.
    #[tokio::test]
    async fn a_transaction_racing_a_handoff_request_commits() {
        let store = Arc::new(MemoryLeaseStore::new());
        let (key, grant, checkpointer) = delivered(&store).await;
        let me = WorkerId::new("w").unwrap();
        let thief = WorkerId::new("thief").unwrap();
        assert!(
            store
                .request_handoff(&key, 1, &me, &thief)
                .await
                .unwrap()
                .is_won()
        );
        let sink = Arc::default();
        checkpointer
            .commit(store.as_ref(), insert(&sink, &["a"]))
            .await
            .unwrap();
        assert_eq!(*sink.lock().unwrap(), ["a"]);
        assert!(grant.is_handing_off() && !grant.is_lost());
        assert_eq!(store.get(&key).await.unwrap().unwrap().counter, 3);
    }

    /// A second transaction over records already committed would repeat their effects.
    #[tokio::test]
    async fn a_transaction_must_move_past_the_stored_checkpoint() {
        let store = Arc::new(MemoryLeaseStore::new());
        let (_, _, checkpointer) = delivered(&store).await;
        let sink = Arc::default();
        checkpointer
            .commit(store.as_ref(), insert(&sink, &["a"]))
            .await
            .unwrap();
        let again = checkpointer
            .commit(store.as_ref(), insert(&sink, &["a"]))
            .await;
        assert!(
            matches!(again, Err(CheckpointError::NotAhead { .. })),
            "{again:?}"
        );
        assert_eq!(*sink.lock().unwrap(), ["a"]);
    }

    /// A checkpoint that loses its race to a hand-off request is written again at the new
    /// counter: the processor's `shutdown_requested` checkpoint must not fail because it was
    /// asked for the lease.
    #[tokio::test]
    async fn a_checkpoint_racing_a_handoff_request_is_written() {
        let store = Arc::new(MemoryLeaseStore::new());
        let (key, grant, checkpointer) = delivered(&store).await;
        let me = WorkerId::new("w").unwrap();
        let thief = WorkerId::new("thief").unwrap();
        assert!(
            store
                .request_handoff(&key, 1, &me, &thief)
                .await
                .unwrap()
                .is_won()
        );
        checkpointer.checkpoint().await.unwrap();
        let stored = store.get(&key).await.unwrap().unwrap();
        assert_eq!(
            stored.checkpoint,
            Checkpoint::at(SequenceNumber::new("42").unwrap(), 0)
        );
        assert_eq!(
            stored.checkpoint_owner.as_ref(),
            Some(&me),
            "still handing off"
        );
        assert!(grant.is_handing_off() && !grant.is_lost());
    }
}
