//! The processor API: what an application implements to handle one shard's records.

use std::future::Future;
use std::marker::PhantomData;

use async_trait::async_trait;
use shardwise_lease_core::{Checkpoint, PendingCheckpoint, ShardId};

use crate::checkpointer::Checkpointer;
use crate::record::RecordBatch;

/// The error a processor returns; any error type will do.
pub type ProcessorError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The error a processor returns from `process_records` when it cannot go on with the shard at
/// all (a child process it drives died, say), as opposed to a failure worth retrying: the
/// worker does not retry the batch, calls `lease_lost`, and releases the lease without
/// checkpointing, so the shard starts again from its stored checkpoint (on another worker at
/// once; on this one after a lease duration).
///
/// ```
/// use shardwise::{GiveUpShard, ProcessorError};
/// let error: ProcessorError = GiveUpShard::new("the child process exited").into();
/// assert!(error.downcast_ref::<GiveUpShard>().is_some());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the processor gave the shard up: {reason}")]
pub struct GiveUpShard {
    /// Why, for the logs.
    pub reason: String,
}

impl GiveUpShard {
    /// Gives the shard up for `reason`.
    pub fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
        }
    }
}

/// What [`ShardProcessor::initialize`] learns about the shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitializeInput {
    /// The stream, in a multi-stream application; `None` when the application reads one.
    pub stream: Option<shardwise_lease_core::StreamIdentifier>,
    /// The shard.
    pub shard_id: ShardId,
    /// Where processing resumes (after this checkpoint).
    pub checkpoint: Checkpoint,
    /// A prepared but uncommitted checkpoint left by an earlier holder, with its state bytes.
    pub pending_checkpoint: Option<PendingCheckpoint>,
}

/// Handles the records of one shard, from one lease grant to its end. The worker calls the
/// methods in order, never concurrently: `initialize`, then `process_records` for each batch,
/// then exactly one of `lease_lost`, `shard_ended` or `shutdown_requested` — unless the
/// processor panicked, after which it is dropped without another call.
///
/// # Delivered records
///
/// A record is *delivered* while the `process_records` call that received it runs, and after it
/// only if that call returned `Ok`. Checkpoints never go beyond what was delivered: after a
/// failed or panicked batch, [`Checkpointer::checkpoint`] (the default `shutdown_requested`)
/// covers the batches before it, never the failed one.
///
/// # Errors and panics
///
/// When `process_records` returns `Err`, the worker retries the same batch with backoff (1 s,
/// doubling, at most 30 s between attempts), up to
/// [`ConsumerConfig::max_process_attempts`](crate::ConsumerConfig) attempts in all; then it
/// calls `lease_lost` and releases the lease without checkpointing, so that a worker (perhaps
/// this one, after [`lease_duration`](crate::ConsumerConfig)) takes it and retries from the last
/// checkpoint. Nothing is skipped. The same happens when `initialize` fails or the shard cannot be
/// read. A panic is treated as an error, and the processor instance is not used again after one:
/// the lease is released at once.
///
/// A shard read from `LATEST` is never released without a real position: before its first
/// records reach the processor, the worker stores where they start
/// ([`Checkpoint::Before`](shardwise_lease_core::Checkpoint::Before) the first), and the next
/// holder resumes there.

#[async_trait]
pub trait ShardProcessor: Send + 'static {
    /// Called once before any record; the default does nothing.
    async fn initialize(&mut self, input: InitializeInput) -> Result<(), ProcessorError> {
        let _ = input;
        Ok(())
    }

    /// Handles a batch of user records; checkpoint through `checkpointer` when it suits.
    async fn process_records(
        &mut self,
        batch: RecordBatch,
        checkpointer: &Checkpointer,
    ) -> Result<(), ProcessorError>;

    /// The lease was lost (taken by another worker or expired), or the worker gives the shard up
    /// after failures (`initialize` failed, retries ran out, the shard could not be read): stop;
    /// checkpointing is no longer possible. The default does nothing.
    async fn lease_lost(&mut self) -> Result<(), ProcessorError> {
        Ok(())
    }

    /// Every record of the closed shard was delivered. Checkpoint (`checkpointer.checkpoint()`
    /// writes `SHARD_END`) — or not: when this returns `Ok` without having checkpointed, the
    /// worker writes `SHARD_END` itself, so the children are never blocked. An `Err` leaves the
    /// shard to be finished again by the next holder.
    async fn shard_ended(&mut self, checkpointer: &Checkpointer) -> Result<(), ProcessorError> {
        let _ = checkpointer;
        Ok(())
    }

    /// The worker is shutting down, or another worker asked for this lease (a hand-off, to
    /// balance the fleet): checkpoint what is done. The lease is released (or handed over)
    /// right after, and this processor gets nothing more. During a hand-off the call is bounded
    /// by `ConsumerConfig::handoff_timeout`; on shutdown, by `shutdown_timeout`. The default
    /// checkpoints everything delivered, so the next holder repeats nothing.
    async fn shutdown_requested(
        &mut self,
        checkpointer: &Checkpointer,
    ) -> Result<(), ProcessorError> {
        checkpointer.checkpoint().await?;
        Ok(())
    }
}

/// Makes a processor for each shard a worker starts processing.
pub trait ProcessorFactory: Send + Sync + 'static {
    /// A new processor for `shard_id`.
    fn create(&self, shard_id: &ShardId) -> Box<dyn ShardProcessor>;

    /// A new processor for `shard_id` of `stream` (a multi-stream application; `None` when
    /// the application reads one stream). By default, [`ProcessorFactory::create`].
    fn create_for_stream(
        &self,
        stream: Option<&shardwise_lease_core::StreamIdentifier>,
        shard_id: &ShardId,
    ) -> Box<dyn ShardProcessor> {
        let _ = stream;
        self.create(shard_id)
    }
}

impl<F, P> ProcessorFactory for F
where
    F: Fn(&ShardId) -> P + Send + Sync + 'static,
    P: ShardProcessor,
{
    fn create(&self, shard_id: &ShardId) -> Box<dyn ShardProcessor> {
        Box::new(self(shard_id))
    }
}

/// The simple case as a closure: handle each batch, and the worker checkpoints everything
/// delivered after each batch that returns `Ok`.
///
/// ```
/// use shardwise::{RecordBatch, processor_fn};
/// let factory = processor_fn(|batch: RecordBatch| async move {
///     for record in &batch.records {
///         println!("{}: {} bytes", record.partition_key, record.data.len());
///     }
///     Ok(())
/// });
/// # let _ = factory;
/// ```
pub fn processor_fn<F, Fut>(handle: F) -> FnProcessorFactory<F, Fut>
where
    F: Fn(RecordBatch) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<(), ProcessorError>> + Send + 'static,
{
    FnProcessorFactory {
        handle,
        _future: PhantomData,
    }
}

/// The factory [`processor_fn`] returns.
#[derive(Debug, Clone)]
pub struct FnProcessorFactory<F, Fut> {
    handle: F,
    _future: PhantomData<fn() -> Fut>,
}

struct FnProcessor<F, Fut> {
    handle: F,
    _future: PhantomData<fn() -> Fut>,
}

impl<F, Fut> ProcessorFactory for FnProcessorFactory<F, Fut>
where
    F: Fn(RecordBatch) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<(), ProcessorError>> + Send + 'static,
{
    fn create(&self, _shard_id: &ShardId) -> Box<dyn ShardProcessor> {
        Box::new(FnProcessor {
            handle: self.handle.clone(),
            _future: PhantomData,
        })
    }
}

#[async_trait]
impl<F, Fut> ShardProcessor for FnProcessor<F, Fut>
where
    F: Fn(RecordBatch) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<(), ProcessorError>> + Send + 'static,
{
    async fn process_records(
        &mut self,
        batch: RecordBatch,
        checkpointer: &Checkpointer,
    ) -> Result<(), ProcessorError> {
        (self.handle)(batch).await?;
        checkpointer.checkpoint().await?;
        Ok(())
    }

    async fn shard_ended(&mut self, checkpointer: &Checkpointer) -> Result<(), ProcessorError> {
        checkpointer.checkpoint().await?;
        Ok(())
    }
}
