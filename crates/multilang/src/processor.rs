//! The record processor that drives one child per shard.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;
use shardwise::lease::{SequenceNumber, ShardId, StoreErrorKind, StreamIdentifier};
use shardwise::{
    CheckpointError, Checkpointer, GiveUpShard, InitializeInput, ProcessorError, ProcessorFactory,
    RecordBatch, ShardProcessor,
};
use tracing::{debug, warn};

use crate::child::{ChildCommand, ChildError, ChildProcess};
use crate::message::{self, CheckpointRequest, FromChild};

/// Makes a [`MultiLangProcessor`] for each shard: the factory to give the consumer.
///
/// ```no_run
/// # async fn run(consumer: shardwise::ConsumerBuilder) -> Result<(), Box<dyn std::error::Error>> {
/// use shardwise_multilang::{ChildCommand, MultiLangFactory};
/// let factory = MultiLangFactory::new(ChildCommand::from_executable_name("python3 app.py"));
/// let consumer = consumer.processor(factory).build()?;
/// # let _ = consumer; Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct MultiLangFactory {
    command: Arc<ChildCommand>,
}

impl MultiLangFactory {
    /// Children started with `command`.
    pub fn new(command: ChildCommand) -> Self {
        Self {
            command: Arc::new(command),
        }
    }
}

impl ProcessorFactory for MultiLangFactory {
    fn create(&self, shard_id: &ShardId) -> Box<dyn ShardProcessor> {
        self.create_for_stream(None, shard_id)
    }

    fn create_for_stream(
        &self,
        _stream: Option<&StreamIdentifier>,
        shard_id: &ShardId,
    ) -> Box<dyn ShardProcessor> {
        Box::new(MultiLangProcessor {
            command: self.command.clone(),
            shard: shard_id.to_string(),
            child: None,
        })
    }
}

/// A [`ShardProcessor`] that hands everything to a child process speaking the KCL's MultiLang
/// protocol: `initialize` starts the child, each batch is a `processRecords` message, the
/// shard's end is `shardEnded`, a lost lease `leaseLost`, a shutdown or hand-off
/// `shutdownRequested` followed by `leaseLost` (as the KCL does); the child's checkpoint
/// requests are carried out by the worker's checkpointer and answered with the KCL's error
/// names.
///
/// A child that exits, does not answer within the response timeout, or answers out of turn is
/// killed and the shard given up ([`GiveUpShard`]): its lease is released without any
/// checkpoint beyond what the child asked for, and the shard starts again, with a new child,
/// from there.
#[derive(Debug)]
pub struct MultiLangProcessor {
    command: Arc<ChildCommand>,
    shard: String,
    /// `None` before `initialize`, after the shard's end, and once the child failed.
    child: Option<ChildProcess>,
}

impl MultiLangProcessor {
    /// Sends `line` (of action `action`) and serves the child until its status: checkpoint
    /// requests go to `checkpointer`, or are refused when there is none. On any failure the
    /// child is killed.
    async fn exchange(
        &mut self,
        action: &'static str,
        line: &str,
        checkpointer: Option<&Checkpointer>,
    ) -> Result<(), ChildError> {
        let Some(child) = self.child.as_mut() else {
            return Err(ChildError::Exited(action));
        };
        // `leaseLost` asks for nothing but an answer: it never waits longer than an exit.
        let limit = (action == message::LEASE_LOST).then_some(self.command.exit_timeout);
        let outcome = serve(child, action, line, checkpointer, limit).await;
        if outcome.is_err()
            && let Some(mut child) = self.child.take()
        {
            child.kill().await;
        }
        outcome
    }

    /// Sends the last message of the child's life, then lets it exit.
    async fn finish(
        &mut self,
        action: &'static str,
        checkpointer: Option<&Checkpointer>,
    ) -> Result<(), ChildError> {
        // No child (never started, or already given up): nothing to tell, as in the KCL.
        if self.child.is_none() {
            return Ok(());
        }
        let outcome = self
            .exchange(action, &message::bare(action), checkpointer)
            .await;
        if let Some(child) = self.child.take() {
            child.close(&self.shard).await;
        }
        outcome
    }
}

async fn serve(
    child: &mut ChildProcess,
    action: &'static str,
    line: &str,
    checkpointer: Option<&Checkpointer>,
    limit: Option<std::time::Duration>,
) -> Result<(), ChildError> {
    child.send(action, line).await?;
    loop {
        match child.next(action, limit).await? {
            FromChild::Status(done) if done == action => return Ok(()),
            FromChild::Status(got) => {
                return Err(ChildError::WrongStatus {
                    expected: action,
                    got,
                });
            }
            FromChild::Checkpoint(request) => {
                let error = match checkpointer {
                    Some(checkpointer) => checkpoint(checkpointer, &request).await,
                    // No checkpointer during `initialize` and `leaseLost`, as in the KCL.
                    None => Some("InvalidStateException"),
                };
                child
                    .send(action, &message::checkpoint_answer(&request, error))
                    .await?;
            }
            FromChild::Other => {}
        }
    }
}

/// Carries out a checkpoint request; the KCL exception name when it was refused.
async fn checkpoint(
    checkpointer: &Checkpointer,
    request: &CheckpointRequest,
) -> Option<&'static str> {
    let outcome = match (&request.sequence_number, &request.sub_sequence_number) {
        // Everything delivered (`SHARD_END` once the shard's end was delivered).
        (Value::Null, _) => checkpointer.checkpoint().await,
        (Value::String(sequence), sub) => {
            let sub = match sub {
                Value::Null => Some(0),
                other => other.as_u64(),
            };
            match (SequenceNumber::new(sequence), sub) {
                (Ok(sequence), Some(sub)) => {
                    checkpointer.checkpoint_at_sequence(sequence, sub).await
                }
                _ => return Some("IllegalArgumentException"),
            }
        }
        _ => return Some("IllegalArgumentException"),
    };
    match outcome {
        Ok(()) => None,
        Err(e) => {
            warn!(shard = %checkpointer.shard_id(), error = %e, "the child's checkpoint was refused");
            Some(match e {
                CheckpointError::LeaseLost => "ShutdownException",
                CheckpointError::Invalid(_) => "IllegalArgumentException",
                CheckpointError::Store(e) if e.kind() == StoreErrorKind::Throttled => {
                    "ThrottlingException"
                }
                CheckpointError::Store(_) => "KinesisClientLibDependencyException",
                _ => "InvalidStateException",
            })
        }
    }
}

#[async_trait]
impl ShardProcessor for MultiLangProcessor {
    async fn initialize(&mut self, input: InitializeInput) -> Result<(), ProcessorError> {
        self.child = Some(ChildProcess::start(&self.command, &self.shard)?);
        let line = message::initialize(input.shard_id.as_str(), &input.checkpoint);
        self.exchange(message::INITIALIZE, &line, None).await?;
        Ok(())
    }

    async fn process_records(
        &mut self,
        batch: RecordBatch,
        checkpointer: &Checkpointer,
    ) -> Result<(), ProcessorError> {
        let line = message::process_records(&batch.records, batch.millis_behind_latest);
        self.exchange(message::PROCESS_RECORDS, &line, Some(checkpointer))
            .await
            .map_err(|e| GiveUpShard::new(e.to_string()))?;
        if let Some(last) = batch.records.last() {
            debug!(shard = %self.shard, last = %last.sequence_number, count = batch.records.len(), "the child processed a batch");
        }
        Ok(())
    }

    async fn lease_lost(&mut self) -> Result<(), ProcessorError> {
        self.finish(message::LEASE_LOST, None).await?;
        Ok(())
    }

    async fn shard_ended(&mut self, checkpointer: &Checkpointer) -> Result<(), ProcessorError> {
        self.finish(message::SHARD_ENDED, Some(checkpointer))
            .await?;
        // As in the KCL, a shard is finished only when the child checkpointed its end: the
        // worker does not write `SHARD_END` for it, and the next holder finishes it again.
        if !checkpointer.stored().await.is_shard_end() {
            return Err(
                "the child did not checkpoint at the shard's end (SHARD_END); \
                        the shard will be finished again"
                    .into(),
            );
        }
        Ok(())
    }

    async fn shutdown_requested(
        &mut self,
        checkpointer: &Checkpointer,
    ) -> Result<(), ProcessorError> {
        if self.child.is_none() {
            return Ok(());
        }
        let line = message::bare(message::SHUTDOWN_REQUESTED);
        let asked = self
            .exchange(message::SHUTDOWN_REQUESTED, &line, Some(checkpointer))
            .await;
        // The KCL follows a shutdown request with the lease's loss, and the child then exits.
        if self.child.is_some() {
            self.finish(message::LEASE_LOST, None).await?;
        }
        asked?;
        Ok(())
    }
}

impl Drop for MultiLangProcessor {
    fn drop(&mut self) {
        // A processor dropped without its ending call (it panicked, the worker stopped): the
        // child is killed with it (`kill_on_drop`).
        if self.child.is_some() {
            warn!(shard = %self.shard, "a child left without its ending call is killed");
        }
    }
}
