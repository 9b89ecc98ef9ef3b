//! One shard's pipeline, in phases: wait for the parents, initialize the processor, open the
//! reader, process batches; then end the processor with one call that says why.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures_util::FutureExt;
use shardwise_kinesis_source::{
    Batch, ChildShard, FanOutReader, KinesisErrorKind, PollingReader, ShardReader, StartPosition,
    list_all_shards,
};
use shardwise_lease_core::{Checkpoint, LeaseStore, SequenceNumber, ShardId};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::checkpointer::{CheckpointError, Checkpointer};
use crate::config::{InitialPosition, Retrieval};
use crate::context::{Context, millis};
use crate::grant::Grant;
use crate::processor::{GiveUpShard, InitializeInput, ProcessorError, ShardProcessor};
use crate::record::{RecordBatch, UserRecord};
use crate::streams::Scope;
use crate::user_records::{deaggregator, user_records};

/// How a pipeline ended; the coordinator decides what happens to the lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PipelineEnd {
    /// The lease was lost; nothing more to do.
    LeaseLost,
    /// The shard is fully processed and `SHARD_END` stored.
    ShardEnded,
    /// Shutdown was requested and the processor had its chance to checkpoint.
    ShutDown,
    /// The processor kept failing (or panicked): release the lease so it is retried.
    Failed,
}

/// Why processing stopped, which decides the processor's one ending call.
#[derive(Debug)]
enum Ending {
    LeaseLost,
    ShutdownRequested,
    /// Every record of the closed shard was delivered; these are its children.
    ShardEnded(Vec<ChildShard>),
    /// Initialize failed, the retries ran out, or the shard could not be read.
    Failed,
    /// The processor panicked: it is not called again.
    Panicked,
}

/// The outcome of calling the processor: its result, or a panic.
enum Called {
    Done(Result<(), ProcessorError>),
    Panicked,
}

async fn call<F>(future: F) -> Called
where
    F: std::future::Future<Output = Result<(), ProcessorError>>,
{
    match AssertUnwindSafe(future).catch_unwind().await {
        Ok(result) => Called::Done(result),
        Err(_) => Called::Panicked,
    }
}

/// Runs one grant of a shard's lease to its end.
pub(crate) async fn run(
    ctx: Arc<Context>,
    grant: Arc<Grant>,
    shutdown: CancellationToken,
) -> PipelineEnd {
    // A lease of a stream no longer consumed is given back (the worker does not take them).
    let Some(scope) = ctx.streams.scope_of(&grant.key) else {
        return PipelineEnd::ShutDown;
    };
    // Nor is a lease of a stream deleted (or created again under its name) read.
    if !ctx.streams.is_current(ctx.kinesis.as_ref(), &scope).await {
        return PipelineEnd::Failed;
    }
    let pipeline = Pipeline::new(ctx, scope, grant, shutdown);
    if let Some(end) = pipeline.wait_for_parents().await {
        return end;
    }
    let stored = pipeline.checkpointer.stored().await;
    if stored.is_shard_end() {
        return PipelineEnd::ShardEnded;
    }
    let mut processor = pipeline
        .ctx
        .factory
        .create_for_stream(pipeline.scope.identifier.as_ref(), &pipeline.grant.shard_id);
    let ending = match pipeline.initialize(processor.as_mut(), &stored).await {
        Some(ending) => ending,
        None => match pipeline.open_reader(&stored) {
            Ok((reader, resume)) => {
                pipeline
                    .process_batches(processor.as_mut(), reader, resume)
                    .await
            }
            Err(ending) => ending,
        },
    };
    pipeline.end(processor.as_mut(), ending).await
}

struct Pipeline {
    ctx: Arc<Context>,
    /// The lease's stream.
    scope: Scope,
    grant: Arc<Grant>,
    shutdown: CancellationToken,
    metrics: shardwise_metrics::ShardMetrics,
    checkpointer: Checkpointer,
}

impl Pipeline {
    fn new(
        ctx: Arc<Context>,
        scope: Scope,
        grant: Arc<Grant>,
        shutdown: CancellationToken,
    ) -> Self {
        let metrics = shardwise_metrics::ShardMetrics::register(
            &ctx.metric_names,
            ctx.config.metrics_level,
            scope.name(),
            grant.shard_id.as_str(),
            ctx.worker_id.as_str(),
        );
        let checkpointer = Checkpointer::new(
            ctx.store.clone(),
            ctx.worker_id.clone(),
            grant.clone(),
            metrics.clone(),
        );
        Self {
            ctx,
            scope,
            grant,
            shutdown,
            metrics,
            checkpointer,
        }
    }

    fn shard(&self) -> &ShardId {
        &self.grant.shard_id
    }

    /// Parents first: a child starts only after every parent's `SHARD_END`. `Some` when the
    /// lease was lost or shutdown came first.
    async fn wait_for_parents(&self) -> Option<PipelineEnd> {
        loop {
            match parents_done(self.ctx.store.as_ref(), &self.scope, &self.grant.parents).await {
                Ok(true) => return None,
                Ok(false) => {}
                Err(e) => {
                    warn!(shard = %self.shard(), error = %e, "could not read the parent leases; retrying")
                }
            }
            tokio::select! {
                biased;
                () = self.grant.lost.cancelled() => return Some(PipelineEnd::LeaseLost),
                () = self.shutdown.cancelled() => return Some(PipelineEnd::ShutDown),
                () = tokio::time::sleep(self.ctx.config.parent_poll_interval) => {}
            }
        }
    }

    /// `Some` when the processor could not be initialized.
    async fn initialize(
        &self,
        processor: &mut dyn ShardProcessor,
        stored: &Checkpoint,
    ) -> Option<Ending> {
        let input = InitializeInput {
            stream: self.scope.identifier.clone(),
            shard_id: self.shard().clone(),
            checkpoint: stored.clone(),
            pending_checkpoint: self.grant.pending.clone(),
        };
        let started = Instant::now();
        let called = call(processor.initialize(input)).await;
        self.metrics.initialize_time.record(millis(started));
        match called {
            Called::Done(Ok(())) => None,
            Called::Done(Err(e)) => {
                warn!(shard = %self.shard(), error = %e, "processor initialize failed; releasing the lease");
                Some(Ending::Failed)
            }
            Called::Panicked => {
                warn!(shard = %self.shard(), "processor initialize panicked; releasing the lease");
                Some(Ending::Panicked)
            }
        }
    }

    /// The reader from the stored checkpoint, and the sub-records of the first record that a
    /// checkpoint inside a KPL aggregate already covers.
    fn open_reader(
        &self,
        stored: &Checkpoint,
    ) -> Result<(ShardReader, Option<(SequenceNumber, u64)>), Ending> {
        let ctx = &self.ctx;
        let (position, resume) = match stored {
            Checkpoint::TrimHorizon => (StartPosition::TrimHorizon, None),
            Checkpoint::Latest => (StartPosition::Latest, None),
            Checkpoint::AtTimestamp => match self.scope.initial_position {
                InitialPosition::AtTimestamp(t) => (StartPosition::AtTimestamp(t), None),
                _ => (StartPosition::TrimHorizon, None),
            },
            Checkpoint::Before(first) => (
                StartPosition::AtSequenceNumber(first.as_str().to_owned()),
                None,
            ),
            // Start at the checkpointed record itself and skip what was processed inside it:
            // right for plain records and for a checkpoint in the middle of a KPL aggregate.
            Checkpoint::At(at) => (
                StartPosition::AtSequenceNumber(at.sequence.as_str().to_owned()),
                Some((at.sequence.clone(), at.sub_sequence)),
            ),
            Checkpoint::ShardEnd => return Err(Ending::ShardEnded(Vec::new())),
        };
        info!(shard = %self.shard(), checkpoint = %stored, token = self.grant.token, "shard processing starts");
        let shard = self.shard().as_str().to_owned();
        let reader = match (&ctx.config.retrieval, &self.scope.consumer_arn) {
            (Retrieval::FanOut { config, .. }, Some(arn)) => {
                ShardReader::FanOut(FanOutReader::start(
                    ctx.kinesis.clone(),
                    arn.clone(),
                    shard,
                    position,
                    config.clone(),
                    ctx.prefetch.clone(),
                ))
            }
            (Retrieval::Polling(polling), _) => ShardReader::Polling(PollingReader::start(
                ctx.kinesis.clone(),
                self.scope.stream.clone(),
                shard,
                position,
                polling.clone(),
                ctx.prefetch.clone(),
            )),
            (Retrieval::FanOut { .. }, None) => {
                warn!(shard = %self.shard(), "fan-out without a registered consumer; releasing the lease");
                return Err(Ending::Failed);
            }
        };
        Ok((reader, resume))
    }

    /// Reads and processes batches until the lease is lost, shutdown is asked for, the shard
    /// ends, or processing fails.
    async fn process_batches(
        &self,
        processor: &mut dyn ShardProcessor,
        mut reader: ShardReader,
        mut resume: Option<(SequenceNumber, u64)>,
    ) -> Ending {
        let deaggregator = deaggregator(self.grant.hash_key_range);
        let mut at_latest = matches!(self.checkpointer.stored().await, Checkpoint::Latest);
        loop {
            let next = tokio::select! {
                // Loss and shutdown first: never take another batch when either has happened.
                biased;
                () = self.grant.lost.cancelled() => return Ending::LeaseLost,
                () = self.shutdown.cancelled() => return Ending::ShutdownRequested,
                next = reader.next_batch() => next,
            };
            report_reader(&reader, &self.metrics);
            self.ctx
                .worker_metrics
                .prefetched_bytes
                .set(self.ctx.prefetch.used() as f64);
            let batch = match next {
                Some(Ok(batch)) => batch,
                Some(Err(e)) => {
                    if e.kind() == KinesisErrorKind::ResourceNotFound
                        && let Some(children) =
                            aged_out_children(&self.ctx, &self.scope, self.shard()).await
                    {
                        warn!(shard = %self.shard(), "the shard aged out of the stream before it was finished (its unread records expired); finishing it so that its children start");
                        return Ending::ShardEnded(children);
                    }
                    warn!(shard = %self.shard(), error = %e, "reading the shard failed; releasing the lease");
                    return Ending::Failed;
                }
                None => {
                    warn!(shard = %self.shard(), "the reader stopped; releasing the lease");
                    return Ending::Failed;
                }
            };
            let Batch {
                records,
                millis_behind_latest,
                child_shards,
            } = batch;
            if let Some(behind) = millis_behind_latest {
                self.metrics.millis_behind_latest.set(behind as f64);
            }
            if at_latest && let Some(first) = records.first() {
                if let Err(ending) = self.pin_latest(&first.sequence_number).await {
                    return ending;
                }
                at_latest = false;
            }
            let records = match user_records(&deaggregator, records, &mut resume, &self.metrics) {
                Ok(records) => records,
                Err(e) => {
                    warn!(shard = %self.shard(), error = %e, "a record from Kinesis could not be read; releasing the lease");
                    return Ending::Failed;
                }
            };
            if !self.renewed_recently().await {
                warn!(shard = %self.shard(), "lease not renewed recently; stopping before the next batch");
                self.grant.lost.cancel();
            }
            if self.grant.is_lost() {
                return Ending::LeaseLost;
            }
            if !records.is_empty() {
                let batch = RecordBatch {
                    stream: self.scope.identifier.clone(),
                    shard_id: self.shard().clone(),
                    records: records.into(),
                    millis_behind_latest,
                };
                if let Err(ending) = self.process(processor, batch).await {
                    return ending;
                }
            }
            if let Some(children) = child_shards {
                return Ending::ShardEnded(children);
            }
        }
    }

    /// Before the first records of a shard read from `LATEST` go anywhere, the lease records
    /// where they start ([`Checkpoint::Before`] the first), so that a failure, a panic or a
    /// shutdown before the processor checkpoints never makes the next holder start after the
    /// newest record. Retried until written; `Err` when the lease is lost or shutdown comes first.
    async fn pin_latest(&self, first: &str) -> Result<(), Ending> {
        let first = match SequenceNumber::new(first) {
            Ok(first) => first,
            Err(e) => {
                warn!(shard = %self.shard(), error = %e, "a record from Kinesis could not be read; releasing the lease");
                return Err(Ending::Failed);
            }
        };
        let mut pause = self.ctx.config.process_retry_backoff;
        loop {
            match self.checkpointer.pin_latest(&first).await {
                Ok(()) => return Ok(()),
                Err(CheckpointError::LeaseLost) => return Err(Ending::LeaseLost),
                Err(e) => {
                    warn!(shard = %self.shard(), error = %e, "could not record where LATEST starts; retrying before delivering anything")
                }
            }
            tokio::select! {
                biased;
                () = self.grant.lost.cancelled() => return Err(Ending::LeaseLost),
                () = self.shutdown.cancelled() => {
                    // One last try: released at LATEST, the lease's next holder would start
                    // after the newest record.
                    if let Err(e) = self.checkpointer.pin_latest(&first).await {
                        warn!(shard = %self.shard(), error = %e, "stopping before LATEST was resolved: the next holder starts after the newest record");
                    }
                    return Err(Ending::ShutdownRequested);
                }
                () = tokio::time::sleep(pause) => {}
            }
            pause = pause.saturating_mul(2).min(MAX_RETRY_PAUSE);
        }
    }

    /// The renewer gives a lease up after two thirds of the lease duration without a renewal;
    /// the pipeline checks too, so that no batch starts on a lease that may be expiring.
    async fn renewed_recently(&self) -> bool {
        let renewed_at = self.grant.state().renewed_at;
        renewed_at.elapsed() < self.ctx.config.give_up_after()
    }

    /// Hands a batch to the processor, retrying with backoff; `Err` says why processing stops.
    async fn process(
        &self,
        processor: &mut dyn ShardProcessor,
        mut batch: RecordBatch,
    ) -> Result<(), Ending> {
        let Some(last) = batch.records.last().map(UserRecord::position) else {
            return Ok(());
        };
        let mut pause = self.ctx.config.process_retry_backoff;
        for attempt in 1.. {
            if attempt > 1 {
                // A retry comes after a pause: as before a new batch, never on a lease that may
                // be expiring.
                if !self.renewed_recently().await {
                    warn!(shard = %self.shard(), "lease not renewed recently; no retry");
                    self.grant.lost.cancel();
                    return Err(Ending::LeaseLost);
                }
                // It hands over only what the processor's own checkpoints do not cover, once a
                // write of its whose answer was lost is settled: the effects a transactional
                // checkpoint committed are never produced again. No retry until the lease can
                // be read.
                match self.checkpointer.settled().await {
                    Ok(stored) => {
                        let covered = batch.records.iter().take_while(|r| {
                            Checkpoint::At(r.position()).cmp_progress(&stored).is_le()
                        });
                        let covered = covered.count();
                        if covered > 0 {
                            info!(shard = %self.shard(), covered, "the processor's own checkpoint covers part of the failed batch; handing over the rest");
                            batch.records = batch.records[covered..].to_vec().into();
                        }
                        if batch.records.is_empty() {
                            warn!(shard = %self.shard(), "the processor's own checkpoint covers the whole failed batch; not handing it over again");
                            return Ok(());
                        }
                    }
                    Err(CheckpointError::LeaseLost) => return Err(Ending::LeaseLost),
                    Err(e) => {
                        warn!(shard = %self.shard(), attempt, error = %e, "could not read the lease before a retry");
                        if attempt >= self.ctx.config.max_process_attempts {
                            return Err(Ending::Failed);
                        }
                        self.pause(&mut pause).await?;
                        continue;
                    }
                }
            }
            let started = Instant::now();
            let count = batch.records.len() as u64;
            let bytes = batch
                .records
                .iter()
                .map(|r| r.data.len() as u64)
                .sum::<u64>();
            let called = self
                .checkpointer
                .delivering(
                    last.clone(),
                    call(processor.process_records(batch.clone(), &self.checkpointer)),
                    |called| matches!(called, Called::Done(Ok(()))),
                )
                .await;
            self.metrics.process_records_time.record(millis(started));
            let error = match called {
                Called::Done(Ok(())) => {
                    self.metrics.records_processed.increment(count);
                    self.metrics.data_bytes_processed.increment(bytes);
                    return Ok(());
                }
                Called::Panicked => {
                    self.metrics.processor_failures.increment(1);
                    warn!(shard = %self.shard(), attempt, "process_records panicked; releasing the lease");
                    return Err(Ending::Panicked);
                }
                Called::Done(Err(e)) => e,
            };
            self.metrics.processor_failures.increment(1);
            if is_lease_lost(&error) || self.grant.is_lost() {
                return Err(Ending::LeaseLost);
            }
            if error.downcast_ref::<GiveUpShard>().is_some() {
                warn!(shard = %self.shard(), error = %error, "the processor gave the shard up; releasing the lease");
                return Err(Ending::Failed);
            }
            warn!(shard = %self.shard(), attempt, error = %error, "process_records failed");
            if attempt >= self.ctx.config.max_process_attempts {
                return Err(Ending::Failed);
            }
            self.pause(&mut pause).await?;
        }
        Err(Ending::Failed)
    }

    /// The pause before a retry, doubling `pause` for the next; `Err` when the lease is lost or
    /// shutdown comes first.
    async fn pause(&self, pause: &mut std::time::Duration) -> Result<(), Ending> {
        tokio::select! {
            biased;
            () = self.grant.lost.cancelled() => return Err(Ending::LeaseLost),
            () = self.shutdown.cancelled() => return Err(Ending::ShutdownRequested),
            () = tokio::time::sleep(*pause) => {}
        }
        *pause = pause.saturating_mul(2).min(MAX_RETRY_PAUSE);
        Ok(())
    }

    /// The processor's one ending call, chosen by why processing stopped.
    async fn end(&self, processor: &mut dyn ShardProcessor, ending: Ending) -> PipelineEnd {
        match ending {
            Ending::LeaseLost => {
                let _ = call(processor.lease_lost()).await;
                info!(shard = %self.shard(), "lease lost; processing stopped");
                PipelineEnd::LeaseLost
            }
            Ending::ShutdownRequested => {
                let started = Instant::now();
                let called = call(processor.shutdown_requested(&self.checkpointer));
                // Asked for by another worker, the lease is handed over after the hand-off
                // timeout whether the processor has finished or not; otherwise (shutdown, a
                // stream no longer consumed) it is given up after the shutdown timeout.
                let config = &self.ctx.config;
                let limit = if self.grant.is_handing_off() {
                    config.handoff_timeout
                } else {
                    config.shutdown_timeout
                };
                let called = match tokio::time::timeout(limit, called).await {
                    Ok(called) => called,
                    Err(_) => {
                        warn!(shard = %self.shard(), timeout = ?limit, "shutdown_requested did not finish in time; the lease is given up");
                        Called::Done(Ok(()))
                    }
                };
                if let Called::Done(Err(e)) = called {
                    warn!(shard = %self.shard(), error = %e, "shutdown_requested failed");
                }
                self.metrics.shutdown_time.record(millis(started));
                PipelineEnd::ShutDown
            }
            Ending::ShardEnded(children) => self.finish_shard(processor, &children).await,
            Ending::Failed => {
                // The lease is released: to the processor, that is a lost lease.
                let _ = call(processor.lease_lost()).await;
                PipelineEnd::Failed
            }
            // A processor that panicked is in no state to be called again.
            Ending::Panicked => PipelineEnd::Failed,
        }
    }

    /// The end of a closed shard: create the children's leases, let the processor checkpoint,
    /// and write `SHARD_END` if it did not.
    async fn finish_shard(
        &self,
        processor: &mut dyn ShardProcessor,
        children: &[ChildShard],
    ) -> PipelineEnd {
        let shard = self.shard();
        for child in children {
            let created = crate::shard_sync::create_child_lease(
                self.ctx.store.as_ref(),
                &self.scope,
                shard,
                child,
            )
            .await;
            if let Err(e) = created {
                warn!(shard = %shard, child = %child.shard_id, error = %e, "creating a child lease failed; shard sync will retry");
            }
        }
        let children: Vec<ShardId> = children
            .iter()
            .filter_map(|c| ShardId::new(c.shard_id.as_str()).ok())
            .collect();
        self.checkpointer.with_cursor(|c| {
            c.shard_end_reached = true;
            c.children = children;
        });
        match call(processor.shard_ended(&self.checkpointer)).await {
            Called::Done(Ok(())) => {}
            Called::Done(Err(e)) if is_lease_lost(&e) || self.grant.is_lost() => {
                return PipelineEnd::LeaseLost;
            }
            Called::Done(Err(e)) => {
                warn!(shard = %shard, error = %e, "shard_ended failed; the shard will be finished again");
                return PipelineEnd::Failed;
            }
            Called::Panicked => {
                warn!(shard = %shard, "shard_ended panicked; the shard will be finished again");
                return PipelineEnd::Failed;
            }
        }
        if !self.checkpointer.stored().await.is_shard_end() {
            match self.checkpointer.checkpoint().await {
                Ok(()) => debug!(shard = %shard, "SHARD_END written for the processor"),
                Err(CheckpointError::LeaseLost) => return PipelineEnd::LeaseLost,
                Err(e) => {
                    warn!(shard = %shard, error = %e, "writing SHARD_END failed; the shard will be finished again");
                    return PipelineEnd::Failed;
                }
            }
        }
        info!(shard = %shard, "shard fully processed (SHARD_END)");
        PipelineEnd::ShardEnded
    }
}

/// The longest pause between two attempts at a batch.
const MAX_RETRY_PAUSE: std::time::Duration = std::time::Duration::from_secs(30);

/// Turns the reader's call counters into the `GetRecords` or `SubscribeToShard` metrics.
fn report_reader(reader: &ShardReader, metrics: &shardwise_metrics::ShardMetrics) {
    let counts = reader.stats().take();
    let (success, failures, throttled, time) = match reader {
        ShardReader::Polling(_) => (
            &metrics.get_records_success,
            &metrics.get_records_failures,
            &metrics.get_records_throttled,
            &metrics.get_records_time,
        ),
        ShardReader::FanOut(_) => (
            &metrics.subscribe_success,
            &metrics.subscribe_failures,
            &metrics.subscribe_throttled,
            &metrics.subscribe_time,
        ),
    };
    success.increment(counts.successes);
    failures.increment(counts.failures);
    throttled.increment(counts.throttles);
    metrics
        .expired_iterators
        .increment(counts.expired_iterators);
    for latency in counts.latencies_ms {
        time.record(latency);
    }
}

fn is_lease_lost(e: &ProcessorError) -> bool {
    matches!(
        e.downcast_ref::<CheckpointError>(),
        Some(CheckpointError::LeaseLost)
    )
}

/// After `ResourceNotFound` on a shard: its children, when the shard is no longer listed but
/// listed shards name it as their parent, which means it closed and aged out of the stream's
/// retention period (the KCL treats the error as the shard's end too). `None` when that cannot
/// be shown (the stream is gone, the listing fails, or no listed shard descends from it, as for
/// a lease of another stream): then the error stands.
async fn aged_out_children(
    ctx: &Context,
    scope: &Scope,
    shard: &ShardId,
) -> Option<Vec<ChildShard>> {
    let shards = list_all_shards(ctx.kinesis.as_ref(), &scope.stream, None, None)
        .await
        .ok()?;
    if shards.iter().any(|s| s.shard_id == shard.as_str()) {
        return None;
    }
    let children: Vec<ChildShard> = shards
        .iter()
        .filter(|s| s.parents().iter().any(|p| p == shard.as_str()))
        .map(|s| ChildShard {
            shard_id: s.shard_id.clone(),
            parent_shards: s.parents(),
            hash_range: s.hash_range,
        })
        .collect();
    (!children.is_empty()).then_some(children)
}

/// Whether every parent lease is gone or at `SHARD_END`.
async fn parents_done(
    store: &dyn LeaseStore,
    scope: &Scope,
    parents: &[ShardId],
) -> Result<bool, shardwise_lease_core::StoreError> {
    for parent in parents {
        if let Some(lease) = store.get(&scope.key(parent)).await?
            && !lease.is_ended()
        {
            return Ok(false);
        }
    }
    Ok(true)
}
