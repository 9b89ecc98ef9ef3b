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
        4,
        "leases taken = shards"
    );
    let lag = gauges("shardwise_millis_behind_latest");
    assert_eq!(lag.len(), 4, "one lag gauge per shard: {lag:?}");
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
        4,
        "per-shard labels at the default (detailed) level"
    );
}
