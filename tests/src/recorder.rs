//! A processor that records what it sees, and helpers to wait and inspect leases.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use shardwise::lease::{Checkpoint, Lease, LeaseStore, SequenceNumber};
use shardwise::{Checkpointer, ProcessorError, RecordBatch, ShardProcessor};

/// One record as a processor saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub worker: String,
    pub shard: String,
    pub partition_key: String,
    pub data: String,
    pub sequence: SequenceNumber,
    pub sub_sequence: u64,
    /// When the processor got it (the tokio clock).
    pub at: tokio::time::Instant,
}

/// What processors saw, shared across workers.
#[derive(Debug, Default)]
pub struct Recorder {
    pub seen: Mutex<Vec<Seen>>,
    pub shard_ends: Mutex<Vec<String>>,
    /// `init:<shard>` and `end:<shard>` in the order they happened, across workers.
    pub events: Mutex<Vec<String>>,
    /// (worker, shard) of every processor initialized.
    pub initialized: Mutex<Vec<(String, String)>>,
    pub lost: AtomicUsize,
}

impl Recorder {
    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    pub fn data(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|s| s.data.clone())
            .collect()
    }

    /// Every id in `0..n` seen at least once, and the number of duplicates.
    pub fn coverage(&self, n: usize) -> (usize, usize) {
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for d in self.data() {
            *counts.entry(d).or_default() += 1;
        }
        let covered = (0..n)
            .filter(|i| counts.contains_key(&format!("record-{i}")))
            .count();
        let duplicates = counts.values().map(|c| c - 1).sum();
        (covered, duplicates)
    }

    /// Records per partition key, in the order processed (across shards and workers).
    pub fn by_key(&self) -> BTreeMap<String, Vec<Seen>> {
        let mut map: BTreeMap<String, Vec<Seen>> = BTreeMap::new();
        for s in self.seen.lock().unwrap().iter() {
            map.entry(s.partition_key.clone())
                .or_default()
                .push(s.clone());
        }
        map
    }
}

/// How the test processor behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Checkpoint after every batch.
    Checkpointing,
    /// Never checkpoint (not even at shard end).
    NeverCheckpoints,
    /// Fail the first `n` calls of process_records on each shard, then behave.
    FailsFirst(usize),
    /// Panic on the first call of process_records on each shard, then behave.
    PanicsOnce,
    /// Checkpoint at the middle record of each batch only (never everything).
    CheckpointsMiddle,
    /// Checkpoint after every batch, and never return from `shutdown_requested`.
    HangsOnShutdown,
    /// Give the shard up (`GiveUpShard`) on the first call of process_records on each shard,
    /// recording `gave-up:SHARD` in the events, then behave.
    GivesUpOnce,
}

pub struct RecordingProcessor {
    pub worker: String,
    pub recorder: Arc<Recorder>,
    pub behaviour: Behaviour,
    pub failures: Arc<Mutex<BTreeMap<String, usize>>>,
}

#[async_trait]
impl ShardProcessor for RecordingProcessor {
    async fn initialize(
        &mut self,
        input: shardwise::InitializeInput,
    ) -> Result<(), ProcessorError> {
        self.recorder
            .events
            .lock()
            .unwrap()
            .push(format!("init:{}", input.shard_id));
        self.recorder
            .initialized
            .lock()
            .unwrap()
            .push((self.worker.clone(), input.shard_id.to_string()));
        Ok(())
    }

    async fn process_records(
        &mut self,
        batch: RecordBatch,
        checkpointer: &Checkpointer,
    ) -> Result<(), ProcessorError> {
        let shard = batch.shard_id.to_string();
        let calls = {
            let mut f = self.failures.lock().unwrap();
            let n = f.entry(shard.clone()).or_default();
            *n += 1;
            *n
        };
        match self.behaviour {
            Behaviour::FailsFirst(n) if calls <= n => {
                return Err(format!("failure {calls} on {shard}").into());
            }
            Behaviour::PanicsOnce if calls == 1 => panic!("processor panic on {shard}"),
            Behaviour::GivesUpOnce if calls == 1 => {
                self.recorder
                    .events
                    .lock()
                    .unwrap()
                    .push(format!("gave-up:{shard}"));
                return Err(shardwise::GiveUpShard::new(format!("giving {shard} up")).into());
            }
            _ => {}
        }
        {
            let at = tokio::time::Instant::now();
            let mut seen = self.recorder.seen.lock().unwrap();
            for r in &batch.records {
                seen.push(Seen {
                    worker: self.worker.clone(),
                    shard: shard.clone(),
                    partition_key: r.partition_key.to_string(),
                    data: String::from_utf8_lossy(&r.data).into_owned(),
                    sequence: r.sequence_number.clone(),
                    sub_sequence: r.sub_sequence_number,
                    at,
                });
            }
        }
        match self.behaviour {
            Behaviour::NeverCheckpoints => {}
            Behaviour::CheckpointsMiddle => {
                checkpointer
                    .checkpoint_at(&batch.records[batch.records.len() / 2])
                    .await?
            }
            _ => checkpointer.checkpoint().await?,
        }
        Ok(())
    }

    async fn lease_lost(&mut self) -> Result<(), ProcessorError> {
        self.recorder.lost.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    async fn shard_ended(&mut self, checkpointer: &Checkpointer) -> Result<(), ProcessorError> {
        self.recorder
            .shard_ends
            .lock()
            .unwrap()
            .push(checkpointer.shard_id().to_string());
        self.recorder
            .events
            .lock()
            .unwrap()
            .push(format!("end:{}", checkpointer.shard_id()));
        if self.behaviour != Behaviour::NeverCheckpoints {
            checkpointer.checkpoint().await?;
        }
        Ok(())
    }

    async fn shutdown_requested(
        &mut self,
        checkpointer: &Checkpointer,
    ) -> Result<(), ProcessorError> {
        if self.behaviour == Behaviour::HangsOnShutdown {
            std::future::pending::<()>().await;
        }
        if self.behaviour != Behaviour::NeverCheckpoints {
            checkpointer.checkpoint().await?;
        }
        Ok(())
    }
}

pub fn factory(
    worker: &str,
    recorder: &Arc<Recorder>,
    behaviour: Behaviour,
) -> impl shardwise::ProcessorFactory {
    let worker = worker.to_owned();
    let recorder = recorder.clone();
    let failures = Arc::new(Mutex::new(BTreeMap::new()));
    move |_shard: &shardwise::lease::ShardId| RecordingProcessor {
        worker: worker.clone(),
        recorder: recorder.clone(),
        behaviour,
        failures: failures.clone(),
    }
}

/// Polls `condition` every 50 ms (of the tokio clock) until it holds, failing after `limit`.
pub async fn wait_for<F, Fut>(what: &str, limit: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if condition().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Leases per holder (during a hand-off: the worker still holding the lease).
pub async fn holdings(store: &dyn LeaseStore) -> BTreeMap<String, usize> {
    let mut map = BTreeMap::new();
    for lease in store.list().await.unwrap().leases {
        if let Some(holder) = lease.holder() {
            *map.entry(holder.to_string()).or_default() += 1;
        }
    }
    map
}

pub async fn leases(store: &dyn LeaseStore) -> Vec<Lease> {
    store.list().await.unwrap().leases
}

pub fn checkpoint_of(leases: &[Lease], shard: &str) -> Checkpoint {
    leases
        .iter()
        .find(|l| l.key.as_str() == shard)
        .map(|l| l.checkpoint.clone())
        .unwrap()
}
