//! The worker's metrics after an end-to-end run on the in-memory Kinesis, read with
//! `metrics-util`'s `DebuggingRecorder` (installed globally: this file holds one test).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use shardwise::lease::MemoryLeaseStore;
use shardwise_tests::{Behaviour, Fleet, Memory};

#[tokio::test(start_paused = true)]
async fn records_leases_and_lag_are_reported() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().unwrap();

    let mut fleet = Fleet::new(
        Arc::new(Memory::new("metrics")),
        Arc::new(MemoryLeaseStore::new()),
        Duration::from_secs(10),
        Duration::from_secs(300),
    );
    fleet.driver.create(4).await;
    fleet.driver.put(0..500, 50).await;
    fleet.start("w1", Behaviour::Checkpointing);
    fleet.wait_records(500).await;
    // One more round of reads so every shard reports it has caught up.
    tokio::time::sleep(Duration::from_secs(3)).await;
    // A second worker gets its two leases by hand-off.
    fleet.start("w2", Behaviour::Checkpointing);
    let recorder = fleet.recorder.clone();
    shardwise_tests::wait_for("w2 runs two leases handed over", fleet.patience, || {
        let started = recorder
            .initialized
            .lock()
            .unwrap()
            .iter()
            .filter(|(worker, _)| worker == "w2")
            .count();
        async move { started == 2 }
    })
    .await;
    fleet.stop_all().await;

    let snapshot = snapshotter.snapshot().into_vec();
    let sum_counter = |name: &str| -> u64 {
        snapshot
            .iter()
            .filter(|(k, ..)| k.key().name() == name)
            .map(|(.., v)| match v {
                DebugValue::Counter(c) => *c,
                _ => 0,
            })
            .sum()
    };
    let gauges = |name: &str| -> Vec<f64> {
        snapshot
            .iter()
            .filter(|(k, ..)| k.key().name() == name)
            .filter_map(|(.., v)| match v {
                DebugValue::Gauge(g) => Some(g.into_inner()),
                _ => None,
            })
            .collect()
    };
    assert_eq!(
        sum_counter("shardwise_records_processed_total"),
        500,
        "records processed = records put"
    );
    assert_eq!(
        sum_counter("shardwise_data_processed_bytes_total"),
        (0..500)
            .map(|i| format!("record-{i}").len() as u64)
            .sum::<u64>()
    );
    assert_eq!(
        sum_counter("shardwise_taken_leases_total"),
        6,
        "leases taken = shards, and the two handed over"
    );
    assert_eq!(sum_counter("shardwise_handoffs_requested_total"), 2);
    assert_eq!(sum_counter("shardwise_handoffs_completed_total"), 2);
    assert_eq!(sum_counter("shardwise_handoffs_timed_out_total"), 0);
    assert_eq!(sum_counter("shardwise_stolen_leases_total"), 2);
    let handoff_times: Vec<f64> = snapshot
        .iter()
        .filter(|(k, ..)| k.key().name() == "shardwise_handoff_milliseconds")
        .flat_map(|(.., v)| match v {
            DebugValue::Histogram(h) => h.iter().map(|x| x.into_inner()).collect(),
            _ => Vec::new(),
        })
        .collect();
    assert_eq!(
        handoff_times.len(),
        2,
        "one duration per hand-off: {handoff_times:?}"
    );
    assert!(
        handoff_times.iter().all(|&ms| ms > 0.0 && ms < 10_000.0),
        "hand-offs complete within a lease duration: {handoff_times:?}"
    );
    let lag = gauges("shardwise_millis_behind_latest");
    assert_eq!(
        lag.len(),
        6,
        "one lag gauge per shard and worker (w1's four, w2's two): {lag:?}"
    );
    assert!(
        lag.iter().all(|&l| l == 0.0),
        "every shard caught up: {lag:?}"
    );
    assert!(sum_counter("shardwise_checkpoint_writes_total") >= 4);
    assert!(
        sum_counter("shardwise_get_records_success_total") >= 4,
        "GetRecords calls counted"
    );
    assert_eq!(sum_counter("shardwise_get_records_failures_total"), 0);
    let shard_labels: Vec<String> = snapshot
        .iter()
        .filter(|(k, ..)| k.key().name() == "shardwise_records_processed_total")
        .filter_map(|(k, ..)| {
            k.key()
                .labels()
                .find(|l| l.key() == "shard")
                .map(|l| l.value().to_owned())
        })
        .collect();
    assert_eq!(
        shard_labels.len(),
        6,
        "per-shard (and worker) labels at the default (detailed) level"
    );

    // A multi-stream application: each stream's records are counted under its own label.
    let kinesis = Arc::new(shardwise::kinesis::testkit::InMemoryKinesis::new());
    for (stream, shards, records) in [("metrics-orders", 2, 30), ("metrics-refunds", 1, 20)] {
        kinesis.create_stream(stream, shards);
        for i in 0..records {
            kinesis
                .put(stream, &format!("k{i}"), format!("{stream}-{i}"))
                .unwrap();
        }
    }
    let seen: shardwise_tests::multi::Seen = Arc::default();
    let (stop, task) = shardwise_tests::multi::start(
        "w3",
        kinesis,
        Arc::new(MemoryLeaseStore::new()),
        shardwise_tests::multi::Changing::of(
            &["metrics-orders", "metrics-refunds"],
            shardwise::InitialPosition::TrimHorizon,
        ),
        &seen,
        Duration::from_secs(10),
        Duration::from_secs(60),
    );
    let counted = seen.clone();
    shardwise_tests::wait_for("both streams read", Duration::from_secs(300), || {
        let n = counted.lock().unwrap().len();
        async move { n == 50 }
    })
    .await;
    stop.cancel();
    task.await.unwrap();
    let snapshot = snapshotter.snapshot().into_vec();
    let per_stream = |stream: &str| -> (u64, usize) {
        let series: Vec<u64> = snapshot
            .iter()
            .filter(|(k, ..)| k.key().name() == "shardwise_records_processed_total")
            .filter(|(k, ..)| {
                k.key()
                    .labels()
                    .any(|l| l.key() == "stream" && l.value() == stream)
            })
            .map(|(.., v)| match v {
                DebugValue::Counter(c) => *c,
                _ => 0,
            })
            .collect();
        (series.iter().sum(), series.len())
    };
    assert_eq!(per_stream("metrics-orders"), (30, 2), "two shards' series");
    assert_eq!(per_stream("metrics-refunds"), (20, 1));
}
