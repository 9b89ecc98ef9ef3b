//! Transactional checkpoints in memory under a paused clock: what the pipeline does around a
//! commit whose outcome is unknown. (Against real servers: `exactly_once.rs`; under every
//! fault at once: the simulator's sink model.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use shardwise::lease::{LeaseStore, MemoryLeaseStore, ShardId, StoreError};
use shardwise::{
    Checkpointer, CommitError, Consumer, ConsumerConfig, Fence, InitialPosition, ProcessorError,
    ProcessorFactory, RecordBatch, ShardProcessor, TransactionalStore,
};
use shardwise_tests::{Memory, StreamDriver, wait_for};
use tokio_util::sync::CancellationToken;

/// The memory store, whose first transactional commit is answered with an error that does not
/// say whether it was applied: a connection that broke during `COMMIT`, after the server
/// committed (`applied`) or before.
struct AnswerLost {
    store: Arc<MemoryLeaseStore>,
    applied: bool,
    lost: AtomicBool,
}

impl TransactionalStore for AnswerLost {
    type Writes = Box<dyn FnOnce() + Send>;

    async fn commit_fenced(
        &self,
        writes: Self::Writes,
        fence: &mut Fence<'_>,
    ) -> Result<u64, CommitError> {
        let first = !self.lost.swap(true, Ordering::SeqCst);
        if first && !self.applied {
            return Err(CommitError::Unknown(StoreError::unavailable(
                "the connection broke before COMMIT reached the server",
            )));
        }
        let counter = self.store.commit_fenced(writes, fence).await?;
        if first {
            return Err(CommitError::Unknown(StoreError::unavailable(
                "the connection broke during COMMIT",
            )));
        }
        Ok(counter)
    }
}

#[derive(Default)]
struct Sink {
    /// How many times each record was handed to the processor.
    delivered: Mutex<BTreeMap<String, usize>>,
    /// Rows per record, written by committed transactions only.
    rows: Mutex<BTreeMap<String, usize>>,
}

struct Processor {
    store: Arc<AnswerLost>,
    sink: Arc<Sink>,
}

#[async_trait]
impl ShardProcessor for Processor {
    async fn process_records(
        &mut self,
        batch: RecordBatch,
        checkpointer: &Checkpointer,
    ) -> Result<(), ProcessorError> {
        let records: Vec<String> = batch
            .records
            .iter()
            .map(|r| String::from_utf8_lossy(&r.data).into_owned())
            .collect();
        for record in &records {
            *self
                .sink
                .delivered
                .lock()
                .unwrap()
                .entry(record.clone())
                .or_default() += 1;
        }
        let sink = self.sink.clone();
        let writes = Box::new(move || {
            let mut rows = sink.rows.lock().unwrap();
            for record in records {
                *rows.entry(record).or_default() += 1;
            }
        });
        checkpointer.commit(self.store.as_ref(), writes).await?;
        Ok(())
    }
}

struct Factory(Arc<AnswerLost>, Arc<Sink>);

impl ProcessorFactory for Factory {
    fn create(&self, _shard_id: &ShardId) -> Box<dyn ShardProcessor> {
        Box::new(Processor {
            store: self.0.clone(),
            sink: self.1.clone(),
        })
    }
}

/// Runs one worker on 100 records whose first commit's answer is lost; returns the sink.
async fn first_answer_lost(applied: bool) -> Arc<Sink> {
    let memory = Memory::new("answer-lost");
    memory.create(1).await;
    memory.put(0..50, 4).await;
    let store = Arc::new(MemoryLeaseStore::new());
    let transactional = Arc::new(AnswerLost {
        store: store.clone(),
        applied,
        lost: AtomicBool::new(false),
    });
    let sink = Arc::new(Sink::default());
    let consumer = Consumer::builder()
        .stream(memory.stream())
        .kinesis(memory.api())
        .lease_store(store.clone() as Arc<dyn LeaseStore>)
        .worker_id("w")
        .config(ConsumerConfig {
            initial_position: InitialPosition::TrimHorizon,
            ..ConsumerConfig::default()
        })
        .processor(Factory(transactional.clone(), sink.clone()))
        .build()
        .unwrap();
    let stop = CancellationToken::new();
    let task = tokio::spawn({
        let stop = stop.clone();
        async move { consumer.run(stop).await.unwrap() }
    });
    wait_for(
        "the first batch committed",
        Duration::from_secs(600),
        || {
            let sink = sink.clone();
            async move { sink.rows.lock().unwrap().len() == 50 }
        },
    )
    .await;
    // Read after the first batch's retry: the pipeline retries before it reads on.
    memory.put(50..100, 4).await;
    wait_for("every record committed", Duration::from_secs(600), || {
        let sink = sink.clone();
        async move { sink.rows.lock().unwrap().len() == 100 }
    })
    .await;
    stop.cancel();
    task.await.unwrap();
    assert!(
        transactional.lost.load(Ordering::SeqCst),
        "an answer was lost"
    );
    for (record, n) in sink.rows.lock().unwrap().iter() {
        assert_eq!(*n, 1, "{record} committed {n} times");
    }
    sink
}

/// The first commit is applied but its answer lost, so `process_records` fails and the batch
/// is retried: the retry must not hand over the records the commit covered (it failed before
/// the pipeline settled the doubt: every record of the first batch came three times).
#[tokio::test(start_paused = true)]
async fn a_commit_whose_answer_was_lost_is_not_delivered_again() {
    let sink = first_answer_lost(true).await;
    for (record, n) in sink.delivered.lock().unwrap().iter() {
        assert_eq!(*n, 1, "{record} delivered {n} times");
    }
}

/// The first commit fails without being applied, with an error that does not say so: the
/// retry hands the batch over again, and its records are committed once.
#[tokio::test(start_paused = true)]
async fn a_commit_that_failed_unknown_to_its_client_is_delivered_again() {
    let sink = first_answer_lost(false).await;
    let delivered = sink.delivered.lock().unwrap();
    for i in 0..100 {
        let n = delivered[&format!("record-{i}")];
        let expected = if i < 50 { 2 } else { 1 };
        assert_eq!(n, expected, "record-{i} delivered {n} times");
    }
}
