//! What stands between a simulated worker and the shared lease store and Kinesis: a gate that
//! holds every call while the worker is frozen, the store's faults (down, slow, ambiguous), and
//! the log of every lease write that succeeded.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use shardwise::kinesis::testkit::InMemoryKinesis;
use shardwise::kinesis::{
    ConsumerPage, GetRecordsOutput, KinesisApi, KinesisError, ListShardsRequest, ShardPage,
    ShardSubscription, StartPosition, StreamConsumer, StreamId, StreamSummary, SubscriptionEvent,
};
use shardwise::lease::{
    Checkpoint, CheckpointUpdate, Lease, LeaseKey, LeaseListing, LeaseStore, Membership,
    MemoryLeaseStore, Race, ShardId, StoreError, WorkerId,
};
use shardwise::{CommitError, Fence, TransactionalStore};
use tokio::time::Instant;

use crate::log::{Event, LeaseState, Log, Write};
use crate::rng::Rng;

/// Holds a worker's calls while it is frozen.
#[derive(Debug, Default)]
pub(crate) struct Gate {
    frozen_until: Mutex<Option<Instant>>,
    /// The worker's heartbeats fail until then.
    muted_until: Mutex<Option<Instant>>,
    /// Wakes the calls held when the freeze changes (lifted early, at the quiet phase).
    changed: tokio::sync::Notify,
}

impl Gate {
    /// Makes the worker's heartbeats fail until `until`.
    pub(crate) fn mute_until(&self, until: Instant) {
        *self
            .muted_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(until);
    }

    fn is_muted(&self) -> bool {
        self.muted_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some_and(|until| Instant::now() < until)
    }

    /// Freezes the worker until `until` (a time already past lifts the freeze at once).
    pub(crate) fn freeze_until(&self, until: Instant) {
        *self.lock() = Some(until);
        self.changed.notify_waiters();
    }

    /// Waits while the worker is frozen.
    pub(crate) async fn pass(&self) {
        loop {
            // Made before the state is read, so that a change in between is not missed.
            let changed = self.changed.notified();
            let Some(until) = *self.lock() else {
                return;
            };
            if until <= Instant::now() {
                return;
            }
            tokio::select! {
                biased;
                () = changed => {}
                () = tokio::time::sleep_until(until) => return,
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.frozen_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// A small, seeded delay before every call to the store or Kinesis, as a network adds: which
/// worker's call lands first then varies from seed to seed, so the runs explore interleavings
/// a zero-latency world never shows.
#[derive(Debug)]
pub(crate) struct Latency {
    rng: Mutex<Rng>,
}

impl Latency {
    pub(crate) fn new(rng: Rng) -> Self {
        Self {
            rng: Mutex::new(rng),
        }
    }

    /// Waits 0 to 4 ms.
    pub(crate) async fn wait(&self) {
        let millis = self
            .rng
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .below(5);
        if millis > 0 {
            tokio::time::sleep(Duration::from_millis(millis)).await;
        }
    }
}

/// The store's faults, shared by every worker's view of it.
#[derive(Debug)]
pub(crate) struct StoreFaults {
    state: Mutex<FaultState>,
}

#[derive(Debug)]
struct FaultState {
    down_until: Option<Instant>,
    slow_until: Option<(Instant, Duration)>,
    ambiguous_until: Option<Instant>,
    /// Chance that a version increment is answered but not applied.
    lost_bumps: f64,
    rng: Rng,
    /// Faults on or off as a whole (off in the quiet phase).
    enabled: bool,
}

/// What the store does with one call.
enum Verdict {
    Pass,
    Down,
    Late(Duration),
    Ambiguous,
}

impl StoreFaults {
    /// No faults, with decisions drawn from `rng`.
    pub(crate) fn new(rng: Rng) -> Self {
        Self {
            state: Mutex::new(FaultState {
                down_until: None,
                slow_until: None,
                ambiguous_until: None,
                lost_bumps: 0.0,
                rng,
                enabled: true,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FaultState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The store refuses every call until `until`.
    pub(crate) fn down_until(&self, until: Instant) {
        self.lock().down_until = Some(until);
    }

    /// The store answers `delay` late until `until`.
    pub(crate) fn slow_until(&self, until: Instant, delay: Duration) {
        self.lock().slow_until = Some((until, delay));
    }

    /// Until `until`, half the writes are applied but answered with an error.
    pub(crate) fn ambiguous_until(&self, until: Instant) {
        self.lock().ambiguous_until = Some(until);
    }

    /// Every fault off, for good.
    pub(crate) fn stop(&self) {
        self.lock().enabled = false;
    }

    /// Sets the chance that a version increment is lost.
    pub(crate) fn lose_bumps(&self, chance: f64) {
        self.lock().lost_bumps = chance;
    }

    /// A fair coin from the faults' generator.
    fn coin(&self) -> bool {
        self.lock().rng.chance(0.5)
    }

    /// Whether this version increment is lost.
    fn bump_lost(&self) -> bool {
        let mut state = self.lock();
        let chance = state.lost_bumps;
        state.enabled && chance > 0.0 && state.rng.chance(chance)
    }

    fn verdict(&self, write: bool) -> Verdict {
        let mut state = self.lock();
        let now = Instant::now();
        if !state.enabled {
            return Verdict::Pass;
        }
        if state.down_until.is_some_and(|until| now < until) {
            return Verdict::Down;
        }
        if let Some((until, delay)) = state.slow_until
            && now < until
        {
            return Verdict::Late(delay);
        }
        if write && state.ambiguous_until.is_some_and(|until| now < until) && state.rng.chance(0.5)
        {
            return Verdict::Ambiguous;
        }
        Verdict::Pass
    }
}

/// One worker's view of the shared lease store.
#[derive(Debug)]
pub(crate) struct SimStore {
    inner: Arc<MemoryLeaseStore>,
    worker: String,
    log: Log,
    faults: Arc<StoreFaults>,
    gate: Arc<Gate>,
    latency: Arc<Latency>,
}

impl SimStore {
    /// The store as `worker` sees it.
    pub(crate) fn new(
        inner: Arc<MemoryLeaseStore>,
        worker: &str,
        log: Log,
        faults: Arc<StoreFaults>,
        gate: Arc<Gate>,
        latency: Arc<Latency>,
    ) -> Self {
        Self {
            inner,
            worker: worker.to_owned(),
            log,
            faults,
            gate,
            latency,
        }
    }

    /// Before a call: the gate, then the faults. `Ok(true)` when a write's answer is to be
    /// replaced by an error after it is applied.
    async fn enter(&self, write: bool) -> Result<bool, StoreError> {
        self.latency.wait().await;
        self.gate.pass().await;
        match self.faults.verdict(write) {
            Verdict::Pass => Ok(false),
            Verdict::Down => Err(StoreError::unavailable("simulated: lease store down")),
            Verdict::Late(delay) => {
                tokio::time::sleep(delay).await;
                Ok(false)
            }
            Verdict::Ambiguous => Ok(true),
        }
    }

    async fn before(&self, key: &LeaseKey) -> Option<Lease> {
        // The memory store answers without yielding: nothing runs between this and the write.
        self.inner.get(key).await.ok().flatten()
    }

    fn wrote(
        &self,
        write: Write,
        key: &LeaseKey,
        expected: Option<u64>,
        before: Option<&Lease>,
        after: Option<&Lease>,
    ) {
        // Logged by shard: shard ids are unique across the in-memory streams, and deliveries
        // and reshards name shards (a multi-stream key also names its stream).
        let key = key
            .shard_id()
            .map_or_else(|| key.to_string(), |s| s.to_string());
        self.log.push(Event::Wrote {
            worker: self.worker.clone(),
            write,
            key,
            expected,
            before: before.map(LeaseState::from),
            after: after.map(LeaseState::from),
        });
    }

    /// The answer of a write: replaced by an error when the fault says so.
    fn answer<T>(&self, ambiguous: bool, outcome: Result<T, StoreError>) -> Result<T, StoreError> {
        if ambiguous {
            return Err(StoreError::unavailable(
                "simulated: the write was applied but the answer was lost",
            ));
        }
        outcome
    }

    /// A write that returns the lease: logged when won.
    async fn lease_write<F>(
        &self,
        write: Write,
        key: &LeaseKey,
        expected: Option<u64>,
        call: F,
    ) -> Result<Race<Lease>, StoreError>
    where
        F: std::future::Future<Output = Result<Race<Lease>, StoreError>>,
    {
        let ambiguous = self.enter(true).await?;
        let before = self.before(key).await;
        let outcome = call.await;
        if let Ok(Race::Won(lease)) = &outcome {
            self.wrote(write, key, expected, before.as_ref(), Some(lease));
        }
        self.answer(ambiguous, outcome)
    }
}

/// Transactional checkpoints on the shared store: the processor's effects (a closure that logs
/// them) run under the store's lock exactly when the fenced checkpoint is written, with the
/// store's faults: down (nothing applied), slow, and ambiguous (applied, answer lost).
impl TransactionalStore for SimStore {
    type Writes = Box<dyn FnOnce() + Send>;

    async fn commit_fenced(
        &self,
        writes: Self::Writes,
        fence: &mut Fence<'_>,
    ) -> Result<u64, CommitError> {
        let ambiguous = self.enter(true).await.map_err(CommitError::NotApplied)?;
        if ambiguous && self.faults.coin() {
            // The other half of an ambiguous answer: the commit failed, and its client cannot
            // tell.
            self.log.push(Event::Note(format!(
                "{} commit lost before it was applied",
                self.worker
            )));
            return Err(CommitError::Unknown(StoreError::unavailable(
                "simulated: the connection broke before the transaction committed",
            )));
        }
        // The memory store's own transactional commit; nothing else runs while it does (it
        // never yields), so the lease read before is the one its winning attempt saw.
        let key = fence.key().clone();
        let before = self.before(&key).await;
        match self.inner.commit_fenced(writes, fence).await {
            Ok(counter) => {
                let after = self.before(&key).await;
                let expected = Some(fence.counter());
                self.wrote(
                    Write::Checkpoint,
                    &key,
                    expected,
                    before.as_ref(),
                    after.as_ref(),
                );
                if ambiguous {
                    self.log
                        .push(Event::Note(format!("{} commit answer lost", self.worker)));
                    return Err(CommitError::Unknown(StoreError::unavailable(
                        "simulated: the transaction committed but the answer was lost",
                    )));
                }
                Ok(counter)
            }
            Err(e) => {
                self.log
                    .push(Event::Note(format!("{} commit fenced off", self.worker)));
                Err(e)
            }
        }
    }
}

#[async_trait]
impl LeaseStore for SimStore {
    async fn create_table_if_missing(&self) -> Result<(), StoreError> {
        self.enter(false).await?;
        self.inner.create_table_if_missing().await
    }

    async fn list(&self) -> Result<LeaseListing, StoreError> {
        self.enter(false).await?;
        self.inner.list().await
    }

    async fn get(&self, key: &LeaseKey) -> Result<Option<Lease>, StoreError> {
        self.enter(false).await?;
        self.inner.get(key).await
    }

    async fn create_if_absent(&self, lease: &Lease) -> Result<Race<Lease>, StoreError> {
        let ambiguous = self.enter(true).await?;
        let outcome = self.inner.create_if_absent(lease).await;
        if let Ok(Race::Won(created)) = &outcome {
            self.wrote(Write::Create, &lease.key, None, None, Some(created));
        }
        self.answer(ambiguous, outcome)
    }

    async fn take(
        &self,
        key: &LeaseKey,
        expected_counter: u64,
        new_owner: &WorkerId,
    ) -> Result<Race<Lease>, StoreError> {
        let call = self.inner.take(key, expected_counter, new_owner);
        self.lease_write(Write::Take, key, Some(expected_counter), call)
            .await
    }

    async fn renew(
        &self,
        key: &LeaseKey,
        owner: &WorkerId,
        expected_counter: u64,
    ) -> Result<Race<u64>, StoreError> {
        let ambiguous = self.enter(true).await?;
        let before = self.before(key).await;
        let outcome = self.inner.renew(key, owner, expected_counter).await;
        if let Ok(Race::Won(_)) = &outcome {
            let after = self.before(key).await;
            self.wrote(
                Write::Renew,
                key,
                Some(expected_counter),
                before.as_ref(),
                after.as_ref(),
            );
        }
        self.answer(ambiguous, outcome)
    }

    async fn renew_many(
        &self,
        owner: &WorkerId,
        leases: &[(LeaseKey, u64)],
    ) -> Vec<Result<Race<u64>, StoreError>> {
        let ambiguous = match self.enter(true).await {
            Ok(ambiguous) => ambiguous,
            Err(e) => return leases.iter().map(|_| Err(e.clone())).collect(),
        };
        let mut befores = Vec::with_capacity(leases.len());
        for (key, _) in leases {
            befores.push(self.before(key).await);
        }
        let outcomes = self.inner.renew_many(owner, leases).await;
        for (((key, expected), before), outcome) in leases.iter().zip(&befores).zip(&outcomes) {
            if let Ok(Race::Won(_)) = outcome {
                let after = self.before(key).await;
                self.wrote(
                    Write::Renew,
                    key,
                    Some(*expected),
                    before.as_ref(),
                    after.as_ref(),
                );
            }
        }
        outcomes
            .into_iter()
            .map(|o| self.answer(ambiguous, o))
            .collect()
    }

    async fn evict(
        &self,
        key: &LeaseKey,
        owner: &WorkerId,
        expected_counter: u64,
    ) -> Result<Race<Lease>, StoreError> {
        let call = self.inner.evict(key, owner, expected_counter);
        self.lease_write(Write::Evict, key, Some(expected_counter), call)
            .await
    }

    async fn update_checkpoint(
        &self,
        key: &LeaseKey,
        owner: &WorkerId,
        expected_counter: u64,
        update: &CheckpointUpdate,
    ) -> Result<Race<Lease>, StoreError> {
        let call = self
            .inner
            .update_checkpoint(key, owner, expected_counter, update);
        self.lease_write(Write::Checkpoint, key, Some(expected_counter), call)
            .await
    }

    async fn mark_ended(
        &self,
        key: &LeaseKey,
        owner: &WorkerId,
        expected_counter: u64,
        children: &[ShardId],
    ) -> Result<Race<Lease>, StoreError> {
        let call = self
            .inner
            .mark_ended(key, owner, expected_counter, children);
        self.lease_write(Write::MarkEnded, key, Some(expected_counter), call)
            .await
    }

    async fn request_handoff(
        &self,
        key: &LeaseKey,
        expected_counter: u64,
        holder: &WorkerId,
        new_owner: &WorkerId,
    ) -> Result<Race<Lease>, StoreError> {
        let call = self
            .inner
            .request_handoff(key, expected_counter, holder, new_owner);
        self.lease_write(Write::RequestHandoff, key, Some(expected_counter), call)
            .await
    }

    async fn reset_checkpoint(
        &self,
        key: &LeaseKey,
        expected_counter: u64,
        checkpoint: &Checkpoint,
    ) -> Result<Race<Lease>, StoreError> {
        // Not used by workers; an operator's reset is not part of the simulation.
        self.enter(true).await?;
        self.inner
            .reset_checkpoint(key, expected_counter, checkpoint)
            .await
    }

    async fn delete(&self, key: &LeaseKey, expected_counter: u64) -> Result<Race<()>, StoreError> {
        let ambiguous = self.enter(true).await?;
        let before = self.before(key).await;
        let outcome = self.inner.delete(key, expected_counter).await;
        if let Ok(Race::Won(())) = &outcome {
            self.wrote(
                Write::Delete,
                key,
                Some(expected_counter),
                before.as_ref(),
                None,
            );
        }
        self.answer(ambiguous, outcome)
    }

    async fn heartbeat(
        &self,
        worker: &WorkerId,
        expected: Option<u64>,
    ) -> Result<Race<u64>, StoreError> {
        let ambiguous = self.enter(true).await?;
        if self.gate.is_muted() {
            return Err(StoreError::unavailable("simulated: heartbeats fail"));
        }
        let outcome = self.inner.heartbeat(worker, expected).await;
        if let Ok(Race::Won(_)) = &outcome {
            self.log.push(Event::Beat {
                worker: self.worker.clone(),
            });
        }
        self.answer(ambiguous, outcome)
    }

    async fn membership(&self) -> Result<Membership, StoreError> {
        self.enter(false).await?;
        self.inner.membership().await
    }

    async fn bump_version(&self) -> Result<u64, StoreError> {
        let ambiguous = self.enter(true).await?;
        if self.faults.bump_lost() {
            // As a worker that died between its write and the increment.
            self.log.push(Event::Note(format!(
                "lost version increment by {}",
                self.worker
            )));
            return Ok(0);
        }
        let outcome = self.inner.bump_version().await;
        self.answer(ambiguous, outcome)
    }

    async fn leave(
        &self,
        worker: &WorkerId,
        expected_heartbeat: u64,
    ) -> Result<Race<()>, StoreError> {
        let ambiguous = self.enter(true).await?;
        let outcome = self.inner.leave(worker, expected_heartbeat).await;
        self.answer(ambiguous, outcome)
    }
}

/// One worker's view of the shared in-memory Kinesis: every call passes the worker's gate.
#[derive(Debug)]
pub(crate) struct SimKinesis {
    inner: Arc<InMemoryKinesis>,
    gate: Arc<Gate>,
    latency: Arc<Latency>,
}

impl SimKinesis {
    /// Kinesis as a worker behind `gate` sees it.
    pub(crate) fn new(inner: Arc<InMemoryKinesis>, gate: Arc<Gate>, latency: Arc<Latency>) -> Self {
        Self {
            inner,
            gate,
            latency,
        }
    }

    async fn pass(&self) {
        self.latency.wait().await;
        self.gate.pass().await;
    }
}

#[derive(Debug)]
struct GatedSubscription {
    inner: Box<dyn ShardSubscription>,
    gate: Arc<Gate>,
}

#[async_trait]
impl ShardSubscription for GatedSubscription {
    async fn next_event(&mut self) -> Option<Result<SubscriptionEvent, KinesisError>> {
        let event = self.inner.next_event().await;
        self.gate.pass().await;
        event
    }
}

#[async_trait]
impl KinesisApi for SimKinesis {
    fn now(&self) -> std::time::SystemTime {
        self.inner.now()
    }

    async fn list_shards(&self, request: &ListShardsRequest) -> Result<ShardPage, KinesisError> {
        self.pass().await;
        self.inner.list_shards(request).await
    }

    async fn get_shard_iterator(
        &self,
        stream: &StreamId,
        shard_id: &str,
        position: &StartPosition,
    ) -> Result<String, KinesisError> {
        self.pass().await;
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
        self.pass().await;
        self.inner.get_records(stream, iterator, limit).await
    }

    async fn describe_stream_summary(
        &self,
        stream: &StreamId,
    ) -> Result<StreamSummary, KinesisError> {
        self.pass().await;
        self.inner.describe_stream_summary(stream).await
    }

    async fn list_streams(
        &self,
        exclusive_start: Option<&str>,
    ) -> Result<shardwise::kinesis::StreamNamePage, KinesisError> {
        self.pass().await;
        self.inner.list_streams(exclusive_start).await
    }

    async fn list_tags_for_stream(
        &self,
        stream: &StreamId,
        exclusive_start: Option<&str>,
    ) -> Result<shardwise::kinesis::TagPage, KinesisError> {
        self.pass().await;
        self.inner
            .list_tags_for_stream(stream, exclusive_start)
            .await
    }

    async fn register_stream_consumer(
        &self,
        stream_arn: &str,
        consumer_name: &str,
    ) -> Result<StreamConsumer, KinesisError> {
        self.pass().await;
        self.inner
            .register_stream_consumer(stream_arn, consumer_name)
            .await
    }

    async fn describe_stream_consumer(
        &self,
        stream_arn: &str,
        consumer_name: &str,
    ) -> Result<StreamConsumer, KinesisError> {
        self.pass().await;
        self.inner
            .describe_stream_consumer(stream_arn, consumer_name)
            .await
    }

    async fn list_stream_consumers(
        &self,
        stream_arn: &str,
        next_token: Option<&str>,
    ) -> Result<ConsumerPage, KinesisError> {
        self.pass().await;
        self.inner
            .list_stream_consumers(stream_arn, next_token)
            .await
    }

    async fn deregister_stream_consumer(&self, consumer_arn: &str) -> Result<(), KinesisError> {
        self.pass().await;
        self.inner.deregister_stream_consumer(consumer_arn).await
    }

    async fn subscribe_to_shard(
        &self,
        consumer_arn: &str,
        shard_id: &str,
        position: &StartPosition,
    ) -> Result<Box<dyn ShardSubscription>, KinesisError> {
        self.pass().await;
        let inner = self
            .inner
            .subscribe_to_shard(consumer_arn, shard_id, position)
            .await?;
        Ok(Box::new(GatedSubscription {
            inner,
            gate: self.gate.clone(),
        }))
    }
}
