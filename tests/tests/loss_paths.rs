//! The loss, stall and contract paths a review found (issue 13), each walked on purpose: in
//! memory under a paused clock, with processors and stores that fail exactly where the path
//! needs them to.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use shardwise::lease::Operation;
use shardwise::lease::testkit::{Fault, FaultyStore};
use shardwise::lease::{Checkpoint, Lease, LeaseKey, LeaseStore, MemoryLeaseStore, ShardId};
use shardwise::{
    Checkpointer, Consumer, ConsumerConfig, InitialPosition, ProcessorError, ProcessorFactory,
    RecordBatch, Retrieval, ShardProcessor, processor_fn,
};
use shardwise_tests::recorder::{checkpoint_of, leases};
use shardwise_tests::{
    Behaviour, Fleet, Memory, Recorder, StreamDriver, factory, scenarios, wait_for,
};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const PATIENCE: Duration = Duration::from_secs(900);

fn config(initial_position: InitialPosition) -> ConsumerConfig {
    let lease_duration = Duration::from_secs(10);
    ConsumerConfig {
        initial_position,
        lease_duration,
        take_interval: lease_duration / 2,
        shard_sync_interval: lease_duration / 2,
        parent_poll_interval: Duration::from_millis(200),
        ..ConsumerConfig::default()
    }
}

fn start(
    memory: &Memory,
    store: Arc<dyn LeaseStore>,
    worker: &str,
    config: ConsumerConfig,
    factory: impl ProcessorFactory,
) -> (CancellationToken, JoinHandle<()>) {
    let consumer = Consumer::builder()
        .stream(memory.stream())
        .kinesis(memory.api())
        .lease_store(store)
        .worker_id(worker)
        .config(config)
        .processor(factory)
        .build()
        .unwrap();
    let stop = CancellationToken::new();
    let task = tokio::spawn({
        let stop = stop.clone();
        async move { consumer.run(stop).await.unwrap() }
    });
    (stop, task)
}

fn record_id(data: &[u8]) -> usize {
    std::str::from_utf8(data)
        .unwrap()
        .trim_start_matches("record-")
        .parse()
        .unwrap()
}

/// The id of the stream's only shard.
async fn only_shard(memory: &Memory) -> String {
    memory.shards().await[0].shard_id.clone()
}

/// Item 1: a batch whose `process_records` failed is not "delivered": when shutdown arrives
/// during the retry pause, the default `shutdown_requested` checkpoints the batch before it,
/// and the next worker processes the failed batch.
async fn a_failed_batch_is_not_checkpointed_on_shutdown(retrieval: Retrieval) {
    let memory = Memory::new("s");
    memory.create(1).await;
    let shard = only_shard(&memory).await;
    let store: Arc<dyn LeaseStore> = Arc::new(MemoryLeaseStore::new());
    let mut config = config(InitialPosition::TrimHorizon);
    config.retrieval = retrieval;

    memory.put(0..10, 3).await;
    let failed = Arc::new(tokio::sync::Notify::new());
    let notify = failed.clone();
    let (stop, task) = start(
        &memory,
        store.clone(),
        "first",
        config.clone(),
        processor_fn(move |batch: RecordBatch| {
            let notify = notify.clone();
            async move {
                if batch.records.iter().any(|r| record_id(&r.data) >= 10) {
                    notify.notify_one();
                    return Err("the second batch fails".into());
                }
                Ok(())
            }
        }),
    );
    let batch_one_end = {
        let kinesis = memory.kinesis.clone();
        let shard = shard.clone();
        async move {
            use shardwise::kinesis::{KinesisApi, StartPosition};
            let stream = shardwise::kinesis::StreamId::Name("s".into());
            let it = kinesis
                .get_shard_iterator(&stream, &shard, &StartPosition::TrimHorizon)
                .await
                .unwrap();
            let out = kinesis.get_records(&stream, &it, 100).await.unwrap();
            out.records.last().unwrap().sequence_number.clone()
        }
        .await
    };
    let expected = Checkpoint::at(batch_one_end.parse().unwrap(), 0);
    {
        let store = store.clone();
        let (shard, expected) = (shard.clone(), expected.clone());
        wait_for("the first batch checkpointed", PATIENCE, move || {
            let (store, shard, expected) = (store.clone(), shard.clone(), expected.clone());
            async move {
                leases(store.as_ref())
                    .await
                    .iter()
                    .any(|l| l.key.as_str() == shard && l.checkpoint == expected)
            }
        })
        .await;
    }
    memory.put(10..20, 3).await;
    failed.notified().await;
    // In the retry pause after the failed attempt.
    stop.cancel();
    task.await.unwrap();
    assert_eq!(
        checkpoint_of(&leases(store.as_ref()).await, &shard),
        expected,
        "the checkpoint stays at the end of the batch that succeeded"
    );

    let recorder = Arc::new(Recorder::default());
    let (stop, task) = start(
        &memory,
        store.clone(),
        "second",
        config,
        factory("second", &recorder, Behaviour::Checkpointing),
    );
    let r = recorder.clone();
    wait_for(
        "the failed batch processed by the next worker",
        PATIENCE,
        move || {
            let r = r.clone();
            async move { r.data().iter().any(|d| d == "record-19") }
        },
    )
    .await;
    stop.cancel();
    task.await.unwrap();
    let ids: Vec<usize> = recorder
        .data()
        .iter()
        .map(|d| record_id(d.as_bytes()))
        .collect();
    assert_eq!(
        ids,
        (10..20).collect::<Vec<_>>(),
        "exactly the failed batch, again"
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_batch_is_not_checkpointed_on_shutdown_polling() {
    a_failed_batch_is_not_checkpointed_on_shutdown(Retrieval::default()).await;
}

#[tokio::test(start_paused = true)]
async fn a_failed_batch_is_not_checkpointed_on_shutdown_fan_out() {
    a_failed_batch_is_not_checkpointed_on_shutdown(Retrieval::fan_out()).await;
}

/// Item 2: `AT_TIMESTAMP` before a split reads the closed parent from the timestamp.
#[tokio::test(start_paused = true)]
async fn at_timestamp_reads_a_parent_closed_after_it() {
    let mut fleet = Fleet::new(
        Arc::new(Memory::new("s")),
        Arc::new(MemoryLeaseStore::new()),
        Duration::from_secs(10),
        PATIENCE,
    );
    scenarios::at_timestamp_reads_a_parent_closed_after_it(&mut fleet, 50).await;
}

/// A processor that panics (or fails) on its first batch, once per factory.
#[derive(Clone)]
struct FirstBatchFails {
    panics: bool,
    calls: Arc<AtomicUsize>,
    happened: Arc<tokio::sync::Notify>,
}

#[async_trait]
impl ShardProcessor for FirstBatchFails {
    async fn process_records(
        &mut self,
        _batch: RecordBatch,
        checkpointer: &Checkpointer,
    ) -> Result<(), ProcessorError> {
        if self.calls.fetch_add(1, Ordering::SeqCst) == 0 {
            self.happened.notify_one();
            if self.panics {
                panic!("the first batch panics");
            }
            return Err("the first batch fails".into());
        }
        checkpointer.checkpoint().await?;
        Ok(())
    }
}

/// Waits until the worker's reader has called `GetRecords` on the shard, so that `LATEST` is
/// behind it and records put now are the shard's to deliver.
async fn reading(memory: &Memory, shard: &str) {
    let kinesis = memory.kinesis.clone();
    let shard = shard.to_owned();
    wait_for("the reader at LATEST", PATIENCE, move || {
        let (kinesis, shard) = (kinesis.clone(), shard.clone());
        async move { !kinesis.get_records_calls(&shard).is_empty() }
    })
    .await;
}

/// A shard read from `LATEST` whose processor fails (or panics) on its first batch on worker
/// "first"; then, with "first" stopped gracefully during its retry pause or still running,
/// worker "second" must process that batch (not start after the newest record).
async fn a_latest_shards_failed_first_batch_is_processed(panics: bool, stop_first: bool) {
    let memory = Memory::new("s");
    memory.create(1).await;
    let shard = only_shard(&memory).await;
    let store: Arc<dyn LeaseStore> = Arc::new(MemoryLeaseStore::new());
    let config = config(InitialPosition::Latest);
    let failing = FirstBatchFails {
        panics,
        calls: Arc::default(),
        happened: Arc::default(),
    };
    let happened = failing.happened.clone();
    let (stop_first_worker, first) = start(
        &memory,
        store.clone(),
        "first",
        config.clone(),
        move |_: &ShardId| failing.clone(),
    );
    reading(&memory, &shard).await;
    memory.put(0..10, 3).await;
    happened.notified().await;
    if stop_first {
        stop_first_worker.cancel();
    }

    let recorder = Arc::new(Recorder::default());
    let (stop_second, second) = start(
        &memory,
        store.clone(),
        "second",
        config,
        factory("second", &recorder, Behaviour::Checkpointing),
    );
    let r = recorder.clone();
    wait_for("the failed first batch processed", PATIENCE, move || {
        let r = r.clone();
        async move { r.coverage(10).0 == 10 }
    })
    .await;
    stop_first_worker.cancel();
    stop_second.cancel();
    first.await.unwrap();
    second.await.unwrap();
}

/// Item 3: a shard at `LATEST` whose processor panics on its first batch: the lease is released,
/// and the next holder processes that batch.
#[tokio::test(start_paused = true)]
async fn a_latest_shard_that_panics_on_its_first_batch_loses_nothing() {
    a_latest_shards_failed_first_batch_is_processed(true, false).await;
}

/// Items 1 and 3 together: a `LATEST` shard whose first batch fails, then a graceful shutdown
/// during the retry pause; the next worker processes the batch.
#[tokio::test(start_paused = true)]
async fn a_latest_shard_stopped_during_a_failing_first_batch_loses_nothing() {
    a_latest_shards_failed_first_batch_is_processed(false, true).await;
}

/// What the worker called on a processor, in order.
#[derive(Clone, Default)]
struct Calls(Arc<Mutex<Vec<&'static str>>>);

struct Failing {
    calls: Calls,
    fail_initialize: bool,
}

#[async_trait]
impl ShardProcessor for Failing {
    async fn initialize(
        &mut self,
        _input: shardwise::InitializeInput,
    ) -> Result<(), ProcessorError> {
        self.calls.0.lock().unwrap().push("initialize");
        if self.fail_initialize {
            return Err("initialize fails".into());
        }
        Ok(())
    }

    async fn process_records(
        &mut self,
        _batch: RecordBatch,
        _checkpointer: &Checkpointer,
    ) -> Result<(), ProcessorError> {
        self.calls.0.lock().unwrap().push("process_records");
        Err("every batch fails".into())
    }

    async fn lease_lost(&mut self) -> Result<(), ProcessorError> {
        self.calls.0.lock().unwrap().push("lease_lost");
        Ok(())
    }

    async fn shard_ended(&mut self, _checkpointer: &Checkpointer) -> Result<(), ProcessorError> {
        self.calls.0.lock().unwrap().push("shard_ended");
        Ok(())
    }

    async fn shutdown_requested(
        &mut self,
        _checkpointer: &Checkpointer,
    ) -> Result<(), ProcessorError> {
        self.calls.0.lock().unwrap().push("shutdown_requested");
        Ok(())
    }
}

/// Item 6: a pipeline that fails (initialize failed, retries exhausted) ends its processor with
/// `lease_lost`, as the trait promises: exactly one ending call per processor.
#[tokio::test(start_paused = true)]
async fn a_failed_pipeline_ends_its_processor_with_lease_lost() {
    for fail_initialize in [true, false] {
        let memory = Memory::new("s");
        memory.create(1).await;
        memory.put(0..5, 1).await;
        let store: Arc<dyn LeaseStore> = Arc::new(MemoryLeaseStore::new());
        let mut config = config(InitialPosition::TrimHorizon);
        config.max_process_attempts = 2;
        let calls = Calls::default();
        let made = calls.clone();
        let (stop, task) = start(&memory, store, "w", config, move |_: &ShardId| Failing {
            calls: made.clone(),
            fail_initialize,
        });
        let seen = calls.clone();
        let expected: &[&str] = if fail_initialize {
            &["initialize", "lease_lost"]
        } else {
            &[
                "initialize",
                "process_records",
                "process_records",
                "lease_lost",
            ]
        };
        wait_for("the processor ended", PATIENCE, move || {
            let seen = seen.clone();
            async move { seen.0.lock().unwrap().len() >= expected.len() }
        })
        .await;
        stop.cancel();
        task.await.unwrap();
        let calls = calls.0.lock().unwrap().clone();
        assert_eq!(
            &calls[..expected.len()],
            expected,
            "fail_initialize {fail_initialize}: {calls:?}"
        );
    }
}

/// Item 5: a checkpoint of lease K1 that never returns does not stall the renewal of K2: its
/// counter keeps advancing, and it stays this worker's, for three lease durations.
#[tokio::test(start_paused = true)]
async fn a_hung_checkpoint_does_not_stall_other_renewals() {
    let memory = Memory::new("s");
    memory.create(2).await;
    let shards: Vec<String> = memory
        .shards()
        .await
        .into_iter()
        .map(|s| s.shard_id)
        .collect();
    let (k1, k2) = (
        LeaseKey::new(shards[0].as_str()).unwrap(),
        LeaseKey::new(shards[1].as_str()).unwrap(),
    );
    let memory_store: Arc<dyn LeaseStore> = Arc::new(MemoryLeaseStore::new());
    let store = Arc::new(FaultyStore::new(memory_store.clone()));
    let hung = k1.clone();
    store.set_rule(move |operation, key| {
        (operation == Operation::UpdateCheckpoint && key == Some(&hung)).then_some(Fault::Hang)
    });
    let config = config(InitialPosition::TrimHorizon);
    let lease_duration = config.lease_duration;
    let recorder = Arc::new(Recorder::default());
    let (stop, task) = start(
        &memory,
        store.clone(),
        "w",
        config,
        factory("w", &recorder, Behaviour::Checkpointing),
    );
    memory.put(0..40, 20).await;
    {
        let memory_store = memory_store.clone();
        wait_for("both leases held", PATIENCE, move || {
            let memory_store = memory_store.clone();
            async move {
                let all = leases(memory_store.as_ref()).await;
                all.len() == 2 && all.iter().all(|l| l.owner.is_some())
            }
        })
        .await;
    }
    // Let the first checkpoint of K1 hang.
    tokio::time::sleep(lease_duration).await;
    let counter = |all: &[Lease], key: &LeaseKey| {
        let lease = all.iter().find(|l| &l.key == key).unwrap();
        assert_eq!(
            lease.owner.as_ref().map(|o| o.as_str()),
            Some("w"),
            "{key} still held"
        );
        lease.counter
    };
    let mut last = counter(&leases(memory_store.as_ref()).await, &k2);
    // Renewals every third of the lease duration: the counter moves in every half.
    for round in 0..6 {
        tokio::time::sleep(lease_duration / 2).await;
        let now = counter(&leases(memory_store.as_ref()).await, &k2);
        assert!(
            now > last,
            "round {round}: {k2}'s counter stayed at {last} for half a lease duration"
        );
        last = now;
    }
    let inits = recorder
        .events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| **e == format!("init:{k2}"))
        .count();
    assert_eq!(inits, 1, "{k2} was never lost and taken again");
    store.clear();
    stop.cancel();
    task.await.unwrap();
}

/// Item 8: a worker-wide prefetch budget far below one response still delivers every record of
/// every shard (readers take turns; none waits forever), by polling and by fan-out.
#[tokio::test(start_paused = true)]
async fn a_tiny_prefetch_budget_still_delivers_everything() {
    for retrieval in [Retrieval::default(), Retrieval::fan_out()] {
        let memory = Memory::new("s");
        memory.create(10).await;
        memory.put(0..500, 50).await;
        let mut config = config(InitialPosition::TrimHorizon);
        config.retrieval = retrieval.clone();
        config.prefetch_memory = 16 * 1024;
        let recorder = Arc::new(Recorder::default());
        let (stop, task) = start(
            &memory,
            Arc::new(MemoryLeaseStore::new()),
            "w",
            config,
            factory("w", &recorder, Behaviour::Checkpointing),
        );
        let r = recorder.clone();
        wait_for("every record", PATIENCE, move || {
            let r = r.clone();
            async move { r.coverage(500).0 == 500 }
        })
        .await;
        stop.cancel();
        task.await.unwrap();
        assert_eq!(recorder.coverage(500), (500, 0), "{retrieval:?}");
    }
}

/// Review finding: a write that times out after the store applied it (a renewal, a checkpoint)
/// leaves the worker's counter one behind. Before its next write the grant reads the lease and
/// adopts what its own write left, instead of losing the lease to itself.
#[tokio::test(start_paused = true)]
async fn a_write_applied_but_unanswered_does_not_lose_the_lease() {
    use shardwise::lease::StoreError;
    use std::sync::atomic::AtomicBool;
    let memory = Memory::new("s");
    memory.create(1).await;
    let shard = only_shard(&memory).await;
    let memory_store: Arc<dyn LeaseStore> = Arc::new(MemoryLeaseStore::new());
    let store = Arc::new(FaultyStore::new(memory_store.clone()));
    let (renewal, checkpoint) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    {
        let (renewal, checkpoint) = (renewal.clone(), checkpoint.clone());
        store.set_rule(move |operation, _| {
            let first = match operation {
                Operation::Renew => !renewal.swap(true, Ordering::SeqCst),
                Operation::UpdateCheckpoint => !checkpoint.swap(true, Ordering::SeqCst),
                _ => false,
            };
            first.then(|| Fault::Ambiguous(StoreError::unavailable("injected: answer lost")))
        });
    }
    let config = config(InitialPosition::TrimHorizon);
    let lease_duration = config.lease_duration;
    let recorder = Arc::new(Recorder::default());
    let (stop, task) = start(
        &memory,
        store.clone(),
        "w",
        config,
        factory("w", &recorder, Behaviour::Checkpointing),
    );
    for round in 0..6 {
        memory.put(round * 10..(round + 1) * 10, 3).await;
        tokio::time::sleep(lease_duration / 2).await;
    }
    let r = recorder.clone();
    wait_for("every record", PATIENCE, move || {
        let r = r.clone();
        async move { r.coverage(60).0 == 60 }
    })
    .await;
    assert!(
        renewal.load(Ordering::SeqCst) && checkpoint.load(Ordering::SeqCst),
        "both faults injected"
    );
    let inits = recorder
        .events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| **e == format!("init:{shard}"))
        .count();
    assert_eq!(inits, 1, "the lease was never lost and taken again");
    assert_eq!(recorder.lost.load(Ordering::SeqCst), 0, "no lease_lost");
    stop.cancel();
    task.await.unwrap();
}
