//! One shard's pipeline: wait for parents, initialize, process batches, shut down.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures_util::FutureExt;
use shardwise_kinesis_source::{
    Batch, ChildShard, FanOutReader, KinesisErrorKind, PollingReader, Record, ShardReader,
    StartPosition, list_all_shards,
};
use shardwise_kpl_deagg::{
    Deaggregator, HashKeyRange as DeaggRange, InvalidSubRecordPolicy, MAGIC,
};
use shardwise_lease_core::{
    Checkpoint, HashKeyRange, Lease, LeaseKey, LeaseStore, SequenceNumber, ShardId,
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::checkpointer::{CheckpointError, Checkpointer};
use crate::config::{InitialPosition, Retrieval};
use crate::grant::Grant;
use crate::processor::{InitializeInput, ProcessorError, ShardProcessor};
use crate::record::{RecordBatch, UserRecord};
use crate::worker::Context;

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

/// The outcome of calling the processor: its result, or a panic.
async fn call<F>(future: F) -> Result<(), ProcessorError>
where
    F: std::future::Future<Output = Result<(), ProcessorError>>,
{
    match AssertUnwindSafe(future).catch_unwind().await {
        Ok(result) => result,
        Err(_) => Err("the processor panicked".into()),
    }
}

pub(crate) async fn run(
    ctx: Arc<Context>,
    grant: Arc<Grant>,
    shutdown: CancellationToken,
) -> PipelineEnd {
    let shard = grant.shard_id.clone();
    let metrics = shardwise_metrics::ShardMetrics::register(
        &ctx.metric_names,
        ctx.config.metrics_level,
        ctx.stream.name(),
        shard.as_str(),
        ctx.worker_id.as_str(),
    );
    let checkpointer = Checkpointer::new(
        ctx.store.clone(),
        ctx.worker_id.clone(),
        grant.clone(),
        metrics.clone(),
    );

    // 1. Parents first: a child starts only after every parent's SHARD_END checkpoint.
    loop {
        match parents_done(ctx.store.as_ref(), &grant.parents).await {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => {
                warn!(shard = %shard, error = %e, "could not read the parent leases; retrying")
            }
        }
        tokio::select! {
            () = grant.lost.cancelled() => return PipelineEnd::LeaseLost,
            () = shutdown.cancelled() => return PipelineEnd::ShutDown,
            () = tokio::time::sleep(ctx.config.parent_poll_interval) => {}
        }
    }

    // 2. Initialize.
    let (checkpoint, pending) = {
        let state = grant.state.lock().await;
        (state.checkpoint.clone(), grant.pending.clone())
    };
    if checkpoint.is_shard_end() {
        return PipelineEnd::ShardEnded;
    }
    let mut processor = ctx.factory.create(&shard);
    let input = InitializeInput {
        shard_id: shard.clone(),
        checkpoint: checkpoint.clone(),
        pending_checkpoint: pending,
    };
    let started = tokio::time::Instant::now();
    let initialized = call(processor.initialize(input)).await;
    metrics
        .initialize_time
        .record(started.elapsed().as_secs_f64() * 1_000.0);
    if let Err(e) = initialized {
        warn!(shard = %shard, error = %e, "processor initialize failed; releasing the lease");
        return PipelineEnd::Failed;
    }

    // 3. Read and process.
    let (position, resume) = match &checkpoint {
        Checkpoint::TrimHorizon => (StartPosition::TrimHorizon, None),
        Checkpoint::Latest => (StartPosition::Latest, None),
        Checkpoint::AtTimestamp => match ctx.config.initial_position {
            InitialPosition::AtTimestamp(t) => (StartPosition::AtTimestamp(t), None),
            _ => (StartPosition::TrimHorizon, None),
        },
        // Start at the checkpointed record itself and skip what was processed inside it: right
        // for plain records and for a checkpoint in the middle of a KPL aggregate.
        Checkpoint::At(at) => (
            StartPosition::AtSequenceNumber(at.sequence.as_str().to_owned()),
            Some((at.sequence.clone(), at.sub_sequence)),
        ),
        Checkpoint::ShardEnd => return PipelineEnd::ShardEnded,
    };
    info!(shard = %shard, %checkpoint, token = grant.token, "shard processing starts");
    let mut reader = match (&ctx.config.retrieval, ctx.consumer_arn.get()) {
        (Retrieval::FanOut { config, .. }, Some(arn)) => ShardReader::FanOut(FanOutReader::start(
            ctx.kinesis.clone(),
            arn.clone(),
            shard.as_str().to_owned(),
            position,
            config.clone(),
        )),
        (Retrieval::Polling(polling), _) => ShardReader::Polling(PollingReader::start(
            ctx.kinesis.clone(),
            ctx.stream.clone(),
            shard.as_str().to_owned(),
            position,
            polling.clone(),
        )),
        (Retrieval::FanOut { .. }, None) => {
            warn!(shard = %shard, "fan-out without a registered consumer; releasing the lease");
            return PipelineEnd::Failed;
        }
    };
    let deaggregator = deaggregator(grant.hash_key_range);
    let mut resume = resume;

    loop {
        let next = tokio::select! {
            // Loss and shutdown first: never take another batch when either has happened.
            biased;
            () = grant.lost.cancelled() => {
                let _ = call(processor.lease_lost()).await;
                info!(shard = %shard, "lease lost; processing stopped");
                return PipelineEnd::LeaseLost;
            }
            () = shutdown.cancelled() => {
                let started = tokio::time::Instant::now();
                let end = shut_down(processor.as_mut(), &checkpointer, &shard).await;
                metrics.shutdown_time.record(started.elapsed().as_secs_f64() * 1_000.0);
                return end;
            }
            next = reader.next_batch() => next,
        };
        report_reader(&reader, &metrics);
        let batch = match next {
            Some(Ok(batch)) => batch,
            Some(Err(e)) => {
                if e.kind() == KinesisErrorKind::ResourceNotFound
                    && let Some(children) = aged_out_children(&ctx, &shard).await
                {
                    warn!(shard = %shard, "the shard aged out of the stream before it was finished (its unread records expired); finishing it so that its children start");
                    return finish_shard(
                        &ctx,
                        processor.as_mut(),
                        &checkpointer,
                        &grant,
                        &children,
                    )
                    .await;
                }
                warn!(shard = %shard, error = %e, "reading the shard failed; releasing the lease");
                return PipelineEnd::Failed;
            }
            None => {
                warn!(shard = %shard, "the reader stopped; releasing the lease");
                return PipelineEnd::Failed;
            }
        };
        let Batch {
            records,
            millis_behind_latest: millis_behind,
            child_shards,
        } = batch;
        if let Some(behind) = millis_behind {
            metrics.millis_behind_latest.set(behind as f64);
        }
        let records = match user_records(&deaggregator, records, &mut resume, &metrics) {
            Ok(records) => records,
            Err(e) => {
                warn!(shard = %shard, error = %e, "a record from Kinesis could not be read; releasing the lease");
                return PipelineEnd::Failed;
            }
        };
        // The renewer gives a lease up after two thirds of the lease duration without a
        // renewal; check here too, so that no batch starts on a lease that may be expiring.
        let renewed_at = grant.state.lock().await.renewed_at;
        if renewed_at.elapsed()
            >= ctx
                .config
                .lease_duration
                .saturating_sub(ctx.config.renew_interval())
        {
            warn!(shard = %shard, "lease not renewed recently; stopping before the next batch");
            grant.lost.cancel();
        }
        if grant.is_lost() {
            let _ = call(processor.lease_lost()).await;
            return PipelineEnd::LeaseLost;
        }
        if !records.is_empty() {
            let last = records.last().map(UserRecord::position);
            checkpointer.with_cursor(|c| c.last_delivered = last);
            let count = records.len() as u64;
            let bytes = records.iter().map(|r| r.data.len() as u64).sum::<u64>();
            let batch = RecordBatch {
                shard_id: shard.clone(),
                records,
                millis_behind_latest: millis_behind,
            };
            match process_with_retries(
                &ctx,
                processor.as_mut(),
                batch,
                &checkpointer,
                &grant,
                &shutdown,
                &metrics,
            )
            .await
            {
                Ok(()) => {
                    metrics.records_processed.increment(count);
                    metrics.data_bytes_processed.increment(bytes);
                }
                Err(PipelineEnd::LeaseLost) => {
                    let _ = call(processor.lease_lost()).await;
                    return PipelineEnd::LeaseLost;
                }
                Err(PipelineEnd::ShutDown) => {
                    return shut_down(processor.as_mut(), &checkpointer, &shard).await;
                }
                Err(end) => return end,
            }
        }
        if let Some(children) = child_shards {
            return finish_shard(&ctx, processor.as_mut(), &checkpointer, &grant, &children).await;
        }
    }
}

async fn shut_down(
    processor: &mut dyn ShardProcessor,
    checkpointer: &Checkpointer,
    shard: &ShardId,
) -> PipelineEnd {
    if let Err(e) = call(processor.shutdown_requested(checkpointer)).await {
        warn!(shard = %shard, error = %e, "shutdown_requested failed");
    }
    PipelineEnd::ShutDown
}

/// Hands a batch to the processor, retrying with backoff; `Err` says how the pipeline ends.
async fn process_with_retries(
    ctx: &Context,
    processor: &mut dyn ShardProcessor,
    batch: RecordBatch,
    checkpointer: &Checkpointer,
    grant: &Grant,
    shutdown: &CancellationToken,
    metrics: &shardwise_metrics::ShardMetrics,
) -> Result<(), PipelineEnd> {
    let mut pause = ctx.config.process_retry_backoff;
    for attempt in 1.. {
        let started = tokio::time::Instant::now();
        let result = call(processor.process_records(batch.clone(), checkpointer)).await;
        metrics
            .process_records_time
            .record(started.elapsed().as_secs_f64() * 1_000.0);
        if result.is_err() {
            metrics.processor_failures.increment(1);
        }
        match result {
            Ok(()) => return Ok(()),
            Err(e) if is_lease_lost(&e) || grant.is_lost() => return Err(PipelineEnd::LeaseLost),
            Err(e) => {
                let panicked = e.to_string() == "the processor panicked";
                warn!(shard = %batch.shard_id, attempt, error = %e, "process_records failed");
                // A shard still at LATEST has no position to resume from: released now, its
                // next holder would start after the newest record and skip this batch. So it
                // is retried here, without limit, instead.
                let resumable = !matches!(checkpointer.stored().await, Checkpoint::Latest);
                if panicked || (attempt >= ctx.config.max_process_attempts && resumable) {
                    return Err(PipelineEnd::Failed);
                }
            }
        }
        tokio::select! {
            () = grant.lost.cancelled() => return Err(PipelineEnd::LeaseLost),
            () = shutdown.cancelled() => return Err(PipelineEnd::ShutDown),
            () = tokio::time::sleep(pause) => {}
        }
        pause = pause.saturating_mul(2).min(MAX_RETRY_PAUSE);
    }
    Err(PipelineEnd::Failed)
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

/// The end of a closed shard: create the children's leases, let the processor checkpoint, and
/// write `SHARD_END` if it did not.
async fn finish_shard(
    ctx: &Context,
    processor: &mut dyn ShardProcessor,
    checkpointer: &Checkpointer,
    grant: &Grant,
    children: &[ChildShard],
) -> PipelineEnd {
    let shard = &grant.shard_id;
    for child in children {
        if let Err(e) = crate::shard_sync::create_child_lease(ctx.store.as_ref(), child).await {
            warn!(shard = %shard, child = %child.shard_id, error = %e, "creating a child lease failed; shard sync will retry");
        }
    }
    let children: Vec<ShardId> = children
        .iter()
        .filter_map(|c| ShardId::new(c.shard_id.as_str()).ok())
        .collect();
    checkpointer.with_cursor(|c| {
        c.shard_end_reached = true;
        c.children = children;
    });
    if let Err(e) = call(processor.shard_ended(checkpointer)).await {
        if is_lease_lost(&e) || grant.is_lost() {
            return PipelineEnd::LeaseLost;
        }
        warn!(shard = %shard, error = %e, "shard_ended failed; the shard will be finished again");
        return PipelineEnd::Failed;
    }
    if !checkpointer.stored().await.is_shard_end() {
        match checkpointer.checkpoint().await {
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

/// After `ResourceNotFound` on a shard: its children, when the shard is no longer listed but
/// listed shards name it as their parent, which means it closed and aged out of the stream's
/// retention period (the KCL treats the error as the shard's end too). `None` when that cannot
/// be shown (the stream is gone, the listing fails, or no listed shard descends from it, as for
/// a lease of another stream): then the error stands.
async fn aged_out_children(ctx: &Context, shard: &ShardId) -> Option<Vec<ChildShard>> {
    let shards = list_all_shards(ctx.kinesis.as_ref(), &ctx.stream, None, None)
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
    parents: &[ShardId],
) -> Result<bool, shardwise_lease_core::StoreError> {
    for parent in parents {
        if let Some(lease) = store.get(&LeaseKey::from(parent)).await?
            && !lease.is_ended()
        {
            return Ok(false);
        }
    }
    Ok(true)
}

fn deaggregator(range: Option<HashKeyRange>) -> Deaggregator {
    // Deliver every valid sub-record, and count what is dropped (never the KCL's silent loss of
    // the rest of an aggregate).
    let d = Deaggregator::new().with_policy(InvalidSubRecordPolicy::SkipInvalid);
    match range.and_then(|r| DeaggRange::new(r.start(), r.end()).ok()) {
        Some(range) => d.with_hash_key_range(range),
        None => d,
    }
}

/// Deaggregates a batch into user records, skipping what a checkpoint inside the first record
/// already covers. A plain record (no KPL magic) is moved as it is, without a copy.
fn user_records(
    deaggregator: &Deaggregator,
    records: Vec<Record>,
    resume: &mut Option<(SequenceNumber, u64)>,
    metrics: &shardwise_metrics::ShardMetrics,
) -> Result<Vec<UserRecord>, String> {
    let mut out = Vec::with_capacity(records.len());
    let mut parts = Vec::new();
    for record in records {
        let sequence = SequenceNumber::new(&record.sequence_number).map_err(|e| e.to_string())?;
        let skip_through = match resume.take() {
            Some((at, sub)) if at == sequence => Some(sub),
            Some(other) if sequence < other.0 => {
                *resume = Some(other);
                continue;
            }
            _ => None,
        };
        if !record.data.starts_with(&MAGIC) {
            // A plain record is sub-record 0, which any resume point inside it covers.
            if skip_through.is_none() {
                out.push(UserRecord {
                    partition_key: record.partition_key,
                    explicit_hash_key: None,
                    sub_sequence_number: 0,
                    aggregated: false,
                    data: record.data,
                    sequence_number: sequence,
                    approximate_arrival: record.approximate_arrival,
                });
            }
            continue;
        }
        parts.clear();
        let report = deaggregator
            .deaggregate_into(record.partition_key, record.data, skip_through, &mut parts)
            .map_err(|e| e.to_string())?;
        if report.framing == shardwise_kpl_deagg::Framing::Aggregated {
            metrics
                .kpl_records_deaggregated
                .increment(report.delivered as u64);
        }
        let dropped = (report.dropped_invalid + report.dropped_out_of_range) as u64;
        metrics.kpl_records_dropped.increment(dropped);
        if dropped > 0 {
            debug!(
                sequence = %sequence,
                dropped_invalid = report.dropped_invalid,
                dropped_out_of_range = report.dropped_out_of_range,
                "KPL sub-records dropped"
            );
        }
        for part in parts.drain(..) {
            out.push(UserRecord {
                partition_key: part.partition_key().into_owned(),
                explicit_hash_key: part.explicit_hash_key().map(str::to_owned),
                sub_sequence_number: part.sub_sequence_number(),
                aggregated: part.is_aggregated(),
                data: part.into_data(),
                sequence_number: sequence.clone(),
                approximate_arrival: record.approximate_arrival,
            });
        }
    }
    Ok(out)
}

/// Used by the coordinator when a lease is taken.
pub(crate) fn grant_for(lease: &Lease) -> Option<Grant> {
    let shard = ShardId::new(lease.key.as_str().rsplit(':').next().unwrap_or_default()).ok()?;
    Some(Grant::new(lease, shard))
}
