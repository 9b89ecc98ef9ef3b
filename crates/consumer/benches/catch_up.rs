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

/// How long the processor takes with a batch, in virtual time.
#[derive(Clone, Copy)]
struct Pace {
    per_batch: Duration,
    per_record: Duration,
}

/// A processor that takes no time.
const INSTANT: Pace = Pace {
    per_batch: Duration::ZERO,
    per_record: Duration::ZERO,
};

struct Scenario {
    label: &'static str,
    shards: u32,
    record_bytes: usize,
    backlog_seconds: f64,
    pace: Pace,
    prefetch_memory: usize,
}

struct Drained {
    seconds: f64,
    bytes_per_second: f64,
    records_per_second: f64,
    calls_per_second: f64,
    throttled: u64,
}

/// A scenario's figures: each shard's, and the most record data the worker held fetched but
/// not yet processed (sampled every 10 ms), in bytes.
struct Outcome {
    shards: Vec<Drained>,
    peak_held: u64,
}

async fn drain(scenario: &Scenario) -> Outcome {
    let Scenario {
        shards,
        record_bytes,
        backlog_seconds,
        pace,
        prefetch_memory,
        ..
    } = *scenario;
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
            prefetch_memory,
            ..ConsumerConfig::default()
        })
        .processor(processor_fn(move |batch: RecordBatch| {
            let (counter, finished, last) = (counter.clone(), finished.clone(), last.clone());
            async move {
                let n = batch.records.len();
                let cost = pace.per_batch + pace.per_record * n as u32;
                if !cost.is_zero() {
                    tokio::time::sleep(cost).await;
                }
                if let Ok(mut last) = last.lock() {
                    last.insert(batch.shard_id.to_string(), Instant::now());
                }
                let before = counter.fetch_add(n, Ordering::Relaxed);
                if before + n >= total {
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
    // Records served but not yet processed, times their size: what the worker holds.
    let sampler = tokio::spawn({
        let (kinesis, seen, ids) = (
            kinesis.clone(),
            seen.clone(),
            listed
                .iter()
                .map(|s| s.shard_id.clone())
                .collect::<Vec<_>>(),
        );
        async move {
            let mut peak = 0u64;
            loop {
                tokio::time::sleep(Duration::from_millis(10)).await;
                let served: u64 = ids.iter().map(|id| kinesis.shard_reads(id).records).sum();
                let held = served.saturating_sub(seen.load(Ordering::Relaxed) as u64);
                peak = peak.max(held * record_bytes as u64);
                if seen.load(Ordering::Relaxed) >= total {
                    return peak;
                }
            }
        }
    });
    done.notified().await;
    stop.cancel();
    let _ = task.await;
    let peak_held = sampler.await.unwrap_or_default();
    let last = last_of.lock().map(|l| l.clone()).unwrap_or_default();
    let shards = listed
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
        .collect();
    Outcome { shards, peak_held }
}

fn report(scenario: &Scenario, outcome: &Outcome) {
    let drained = &outcome.shards;
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
    let pace = if scenario.pace.per_batch.is_zero() && scenario.pace.per_record.is_zero() {
        "none".to_owned()
    } else {
        format!(
            "{} ms/batch + {} µs/record",
            scenario.pace.per_batch.as_millis(),
            scenario.pace.per_record.as_micros()
        )
    };
    println!(
        "| {} | {} | {} B | {pace} | {} MiB | {seconds:.1} s | {records:.0} | {calls:.2} | {:.0}% (worst shard {:.0}%) | {throttled} | {:.1} MB |",
        scenario.label,
        scenario.shards,
        scenario.record_bytes,
        scenario.prefetch_memory >> 20,
        100.0 * mean,
        100.0 * worst,
        outcome.peak_held as f64 / 1e6,
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
        "| backlog | shards per worker | record | processor time | prefetch_memory | drained in | records/s per shard | calls/s per shard | of the shard's limit | throttled calls | most data held |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    let default_memory = ConsumerConfig::default().prefetch_memory;
    let scenarios = [
        ("20 s of reads", 1, 100, 20.0, INSTANT, default_memory),
        ("20 s of reads", 1, 1_000, 20.0, INSTANT, default_memory),
        ("20 s of reads", 1, 25_000, 20.0, INSTANT, default_memory),
        ("3 s of reads", 100, 1_000, 3.0, INSTANT, default_memory),
        ("10 s of reads", 100, 1_000, 10.0, INSTANT, default_memory),
        ("3 s of reads", 100, 1_000, 3.0, INSTANT, 16 << 20),
        // A processor at half the shard's rate, its time per record.
        (
            "20 s of reads",
            1,
            1_000,
            20.0,
            Pace {
                per_batch: Duration::ZERO,
                per_record: Duration::from_micros(1_000),
            },
            default_memory,
        ),
        // A processor whose time goes per batch (one bulk write, say).
        (
            "20 s of reads",
            1,
            1_000,
            20.0,
            Pace {
                per_batch: Duration::from_millis(500),
                per_record: Duration::ZERO,
            },
            default_memory,
        ),
    ];
    runtime.block_on(async {
        for (label, shards, record_bytes, backlog_seconds, pace, prefetch_memory) in scenarios {
            let scenario = Scenario {
                label,
                shards,
                record_bytes,
                backlog_seconds,
                pace,
                prefetch_memory,
            };
            let outcome = drain(&scenario).await;
            report(&scenario, &outcome);
        }
    });
}
