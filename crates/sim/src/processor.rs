//! The simulated record processor: logs every batch it is handed, and, while faults are on,
//! fails, panics, dawdles or never checkpoints as the seed says.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use shardwise::lease::ShardId;
use shardwise::{Checkpointer, ProcessorError, ProcessorFactory, RecordBatch, ShardProcessor};

use crate::log::{Event, Log};
use crate::plan::Processors;
use crate::rng::Rng;
use crate::wrap::{Gate, SimStore};

/// What the processors of one worker share.
#[derive(Clone)]
pub(crate) struct Factory {
    pub(crate) worker: String,
    pub(crate) log: Log,
    pub(crate) behaviour: Processors,
    pub(crate) rng: Arc<Mutex<Rng>>,
    /// Off in the quiet phase: processors then behave.
    pub(crate) faults_on: Arc<AtomicBool>,
    pub(crate) gate: Arc<Gate>,
    pub(crate) lease_duration: Duration,
    /// The worker's store, for transactional checkpoints: `Some` when the processors commit
    /// their effects with them.
    pub(crate) transactional: Option<Arc<SimStore>>,
}

impl Factory {
    fn draw(&self, p: f64) -> bool {
        self.faults_on.load(Ordering::SeqCst)
            && self
                .rng
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .chance(p)
    }
}

impl ProcessorFactory for Factory {
    fn create(&self, _shard_id: &ShardId) -> Box<dyn ShardProcessor> {
        // A transactional processor's effects are its checkpoints.
        let never_checkpoints =
            self.transactional.is_none() && self.draw(self.behaviour.never_checkpoints);
        Box::new(Processor {
            factory: self.clone(),
            never_checkpoints,
        })
    }
}

struct Processor {
    factory: Factory,
    never_checkpoints: bool,
}

#[async_trait]
impl ShardProcessor for Processor {
    async fn process_records(
        &mut self,
        batch: RecordBatch,
        checkpointer: &Checkpointer,
    ) -> Result<(), ProcessorError> {
        let f = self.factory.clone();
        let ids: Vec<usize> = batch
            .records
            .iter()
            .filter_map(|r| {
                std::str::from_utf8(&r.data)
                    .ok()?
                    .strip_prefix('r')?
                    .parse()
                    .ok()
            })
            .collect();
        // Logged when handed over; a frozen worker's processor then waits like the rest of it.
        f.log.push(Event::Delivered {
            worker: f.worker.clone(),
            shard: batch.shard_id.to_string(),
            ids: ids.clone(),
        });
        f.gate.pass().await;
        if f.draw(f.behaviour.slow) {
            tokio::time::sleep(f.lease_duration / 2).await;
            f.gate.pass().await;
        }
        if f.draw(f.behaviour.panic) {
            panic!("simulated processor panic");
        }
        if f.draw(f.behaviour.fail) {
            return Err("simulated processor failure".into());
        }
        if f.draw(f.behaviour.give_up) {
            return Err(shardwise::GiveUpShard::new("simulated: the processor gives up").into());
        }
        if let Some(store) = &f.transactional {
            // The effects and the checkpoint in one transaction: the records are done exactly
            // when it commits.
            let (log, worker, shard) =
                (f.log.clone(), f.worker.clone(), batch.shard_id.to_string());
            let effects = Box::new(move || log.push(Event::Processed { worker, shard, ids }));
            checkpointer.commit(store.as_ref(), effects).await?;
            return Ok(());
        }
        // The work is done; then the checkpoint, as an application does it. A checkpoint that
        // fails (the lease lost, an answer lost) fails the call, but the records were
        // processed all the same: an application's effects are not undone by it.
        f.log.push(Event::Processed {
            worker: f.worker.clone(),
            shard: batch.shard_id.to_string(),
            ids,
        });
        if !self.never_checkpoints {
            checkpointer.checkpoint().await?;
        }
        Ok(())
    }

    async fn shard_ended(&mut self, checkpointer: &Checkpointer) -> Result<(), ProcessorError> {
        self.factory.gate.pass().await;
        if !self.never_checkpoints {
            checkpointer.checkpoint().await?;
        }
        Ok(())
    }

    async fn shutdown_requested(
        &mut self,
        checkpointer: &Checkpointer,
    ) -> Result<(), ProcessorError> {
        self.factory.gate.pass().await;
        if !self.never_checkpoints {
            checkpointer.checkpoint().await?;
        }
        Ok(())
    }
}
