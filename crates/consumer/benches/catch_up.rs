//! Catch-up under the service's limits: how close a backlogged shard comes to what the service
//! allows. Prints figures, decides nothing.
//!
//! The whole worker (leases in memory, polling with its defaults, a processor that takes no
//! time) drains a backlog from the in-memory Kinesis under its service model: 5 `GetRecords`
//! calls a second per shard, 2 MiB/s per shard (a shard in debt is throttled until it is paid
//! back), 10 MiB and 10,000 records a call, and a latency per call, under tokio's paused clock,
//! so the figures are the reader's pacing and sizing alone, in virtual time. For each shard:
//! bytes/s and records/s from the start to its last record, as a fraction of the shard's limit
//! (2 MiB/s, or 50,000 records/s when records are small), and the calls the model throttled.
//!
//! `cargo bench -p shardwise --features testkit --bench catch_up`

#![allow(clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use shardwise::kinesis::testkit::{InMemoryKinesis, ServiceModel};
use shardwise::kinesis::{KinesisApi, StreamId, list_all_shards};
use shardwise::lease::MemoryLeaseStore;
use shardwise::{Consumer, ConsumerConfig, InitialPosition, RecordBatch, processor_fn};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The service's latency is not documented; a round trip of this much is assumed.
const CALL_LATENCY: Duration = Duration::from_millis(30);

struct Drained {
    seconds: f64,
    bytes_per_second: f64,
    records_per_second: f64,
    calls_per_second: f64,
    throttled: u64,
}

async fn drain(shards: u32, record_bytes: usize, backlog_seconds: f64) -> Vec<Drained> {
    let model = ServiceModel {
        call_latency: CALL_LATENCY,
        ..ServiceModel::service()
    };
    let kinesis = Arc::new(InMemoryKinesis::new());
    kinesis.create_stream("backlog", shards);
    let per_shard =
        (model.bytes_per_second as f64 * backlog_seconds / record_bytes as f64).ceil() as usize;
    let listed = list_all_shards(
        kinesis.as_ref(),
        &StreamId::Name("backlog".into()),
        None,
        None,
    )
    .await
    .unwrap_or_default();
    // One buffer shared by every record: a backlog of 300 MB takes no more memory than one.
    let data = bytes::Bytes::from(vec![b'x'; record_bytes]);
    for shard in &listed {
        for i in 0..per_shard {
            let _ = kinesis.put_with_hash_key(
                "backlog",
                &format!("k{i}"),
                shard.hash_range.start,
                data.clone(),
            );
        }
    }
    kinesis.set_service_model(Some(model.clone()));
    let total = per_shard * listed.len();
    let seen = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(Notify::new());
    let last_of: Arc<std::sync::Mutex<std::collections::HashMap<String, Instant>>> = Arc::default();
    let (counter, finished, last) = (seen.clone(), done.clone(), last_of.clone());
    let consumer = Consumer::builder()
        .stream("backlog")
        .kinesis(kinesis.clone() as Arc<dyn KinesisApi>)
        .lease_store(Arc::new(MemoryLeaseStore::new()))
        .worker_id("bench")
        .config(ConsumerConfig {
            initial_position: InitialPosition::TrimHorizon,
            ..ConsumerConfig::default()
        })
        .processor(processor_fn(move |batch: RecordBatch| {
            let (counter, finished, last) = (counter.clone(), finished.clone(), last.clone());
            async move {
                if let Ok(mut last) = last.lock() {
                    last.insert(batch.shard_id.to_string(), Instant::now());
                }
                let n = counter.fetch_add(batch.records.len(), Ordering::Relaxed);
                if n + batch.records.len() >= total {
                    finished.notify_one();
                }
                Ok(())
            }
        }))
        .build()
        .expect("a valid consumer");
    let stop = CancellationToken::new();
    let started = Instant::now();
    let task = tokio::spawn({
        let stop = stop.clone();
        async move { consumer.run(stop).await }
    });
    done.notified().await;
    stop.cancel();
    let _ = task.await;
    let last = last_of.lock().map(|l| l.clone()).unwrap_or_default();
    listed
        .iter()
        .map(|shard| {
            let reads = kinesis.shard_reads(&shard.shard_id);
            let seconds = last
                .get(&shard.shard_id)
                .map_or(0.0, |t| t.duration_since(started).as_secs_f64());
            Drained {
                seconds,
                bytes_per_second: reads.bytes as f64 / seconds,
                records_per_second: reads.records as f64 / seconds,
                calls_per_second: reads.calls as f64 / seconds,
                throttled: reads.throttled,
            }
        })
        .collect()
}

fn report(label: &str, shards: u32, record_bytes: usize, drained: &[Drained]) {
    let limit_bytes = 2.0 * 1024.0 * 1024.0;
    let limit_records = 50_000.0;
    let fraction =
        |d: &Drained| (d.bytes_per_second / limit_bytes).max(d.records_per_second / limit_records);
    let n = drained.len().max(1) as f64;
    let mean = drained.iter().map(fraction).sum::<f64>() / n;
    let worst = drained.iter().map(fraction).fold(f64::INFINITY, f64::min);
    let calls = drained.iter().map(|d| d.calls_per_second).sum::<f64>() / n;
    let records = drained.iter().map(|d| d.records_per_second).sum::<f64>() / n;
    let seconds = drained.iter().map(|d| d.seconds).fold(0.0, f64::max);
    let throttled: u64 = drained.iter().map(|d| d.throttled).sum();
    println!(
        "| {label} | {shards} | {record_bytes} B | {seconds:.1} s | {records:.0} | {calls:.2} | {:.0}% (worst shard {:.0}%) | {throttled} |",
        100.0 * mean,
        100.0 * worst
    );
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("a runtime");
    println!(
        "service model: 5 calls/s, 2 MiB/s, 10 MiB and 10,000 records a call per shard, {} ms a call; virtual time",
        CALL_LATENCY.as_millis()
    );
    println!(
        "| backlog | shards per worker | record | drained in | records/s per shard | calls/s per shard | of the shard's limit | throttled calls |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    runtime.block_on(async {
        for (label, shards, bytes, seconds) in [
            ("20 s of reads", 1, 100, 20.0),
            ("20 s of reads", 1, 1_000, 20.0),
            ("20 s of reads", 1, 25_000, 20.0),
            ("3 s of reads", 100, 1_000, 3.0),
        ] {
            let drained = drain(shards, bytes, seconds).await;
            report(label, shards, bytes, &drained);
        }
    });
}
