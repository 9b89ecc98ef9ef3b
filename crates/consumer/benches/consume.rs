//! Consumption benchmark: prints figures, decides nothing.
//!
//! - Library overhead: the whole worker (leases in memory, polling reader, deaggregation,
//!   checkpoint after each batch) on the in-memory Kinesis: 200,000 records of 100 B from 4
//!   shards, and 100,000 records of 1,000 B from 16 shards. Wall time, records/s, CPU seconds
//!   (user + system, from /proc/self/stat) and peak RSS (VmHWM).
//! - Time to first record from a cold start with an empty lease table, against the Kinesis
//!   emulator at `KINESIS_ENDPOINT` with leases in the DynamoDB emulator at `DYNAMODB_ENDPOINT`
//!   (skipped when those are not set).
//!
//! - With `SHARDWISE_BENCH_EMULATOR_WORKLOADS=1` (or `W1`, `W2` for one), only the same
//!   workloads against the emulators, polling with DynamoDB leases, in a process that runs
//!   nothing else. The streams (`shardwise-bench-w1`, `shardwise-bench-w2`) are loaded when
//!   missing (about 10 and 5 minutes on kinesis-local) and tagged once complete, so later runs
//!   against the same emulator reuse them; only the consumption is measured.
//!
//! Run: `cargo bench -p shardwise --features testkit,dynamodb --bench consume`

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use shardwise::kinesis::testkit::InMemoryKinesis;
use shardwise::kinesis::{KinesisApi, PollingConfig};
use shardwise::lease::{LeaseStore, MemoryLeaseStore};
use shardwise::{Consumer, ConsumerConfig, InitialPosition, RecordBatch, Retrieval, processor_fn};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

fn cpu_seconds() -> f64 {
    // Fields 14 and 15 of /proc/self/stat: user and system time in clock ticks (100 per second
    // on Linux).
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or_default();
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

fn peak_rss_mb() -> f64 {
    status_mb("VmHWM:")
}

/// A memory figure of /proc/self/status, in MB.
fn status_mb(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Runs one worker until `total` records were processed; returns the wall time.
async fn consume(
    kinesis: Arc<dyn KinesisApi>,
    store: Arc<dyn LeaseStore>,
    stream: &str,
    total: usize,
) -> Duration {
    let seen = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(Notify::new());
    let config = ConsumerConfig {
        initial_position: InitialPosition::TrimHorizon,
        retrieval: Retrieval::Polling(PollingConfig {
            idle_time_between_reads: Duration::from_millis(200),
            ..PollingConfig::default()
        }),
        ..ConsumerConfig::default()
    };
    let (counter, finished) = (seen.clone(), done.clone());
    let consumer = Consumer::builder()
        .stream(stream)
        .kinesis(kinesis)
        .lease_store(store)
        .worker_id("bench")
        .config(config)
        .processor(processor_fn(move |batch: RecordBatch| {
            let (counter, finished) = (counter.clone(), finished.clone());
            async move {
                if counter.fetch_add(batch.records.len(), Ordering::SeqCst) + batch.records.len()
                    >= total
                {
                    finished.notify_one();
                }
                Ok(())
            }
        }))
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let stop = CancellationToken::new();
    let started = Instant::now();
    let task = tokio::spawn(consumer.run(stop.clone()));
    done.notified().await;
    let elapsed = started.elapsed();
    stop.cancel();
    let _ = task.await;
    elapsed
}

async fn in_memory(label: &str, shards: u32, records: usize, size: usize) {
    let kinesis = Arc::new(InMemoryKinesis::new());
    kinesis.create_stream("bench", shards);
    let payload = vec![b'x'; size];
    for i in 0..records {
        let _ = kinesis.put("bench", &format!("key-{}", i % 1_000), payload.clone());
    }
    let cpu_before = cpu_seconds();
    let wall = consume(kinesis, Arc::new(MemoryLeaseStore::new()), "bench", records).await;
    let cpu = cpu_seconds() - cpu_before;
    println!(
        "{label}: {records} records of {size} B from {shards} shards: {:.2} s wall, {:.0} records/s, {:.2} CPU-s ({:.0} records per CPU-s), peak RSS {:.0} MB (process, includes the in-memory stream)",
        wall.as_secs_f64(),
        records as f64 / wall.as_secs_f64(),
        cpu,
        records as f64 / cpu.max(0.01),
        peak_rss_mb()
    );
}

async fn first_record_on_emulators() {
    let Some((kinesis, dynamodb)) = emulator_clients() else {
        println!(
            "time to first record: skipped (set KINESIS_ENDPOINT and DYNAMODB_ENDPOINT, or run under ./scripts/test's services)"
        );
        return;
    };
    let name = format!("bench-first-{}", std::process::id());
    let _ = kinesis
        .create_stream()
        .stream_name(&name)
        .shard_count(4)
        .send()
        .await;
    wait_active(&kinesis, &name).await;
    for i in 0..4 {
        let _ = kinesis
            .put_record()
            .stream_name(&name)
            .partition_key(format!("k{i}"))
            .data(aws_sdk_kinesis::primitives::Blob::new(b"hello".to_vec()))
            .send()
            .await;
    }
    let store = shardwise::lease::dynamodb::DynamoDbLeaseStore::new(dynamodb, name.clone())
        .unwrap_or_else(|e| panic!("{e}"));
    // Cold start: the table does not exist yet; the worker creates it.
    let wall = consume(Arc::new(kinesis), Arc::new(store), &name, 1).await;
    println!(
        "time to first record, cold start (lease table created by the worker), emulators: {:.0} ms",
        wall.as_secs_f64() * 1_000.0
    );
}

/// Waits until stream `name` is ACTIVE.
async fn wait_active(kinesis: &aws_sdk_kinesis::Client, name: &str) {
    loop {
        let active = kinesis
            .describe_stream_summary()
            .stream_name(name)
            .send()
            .await
            .ok()
            .and_then(|o| {
                o.stream_description_summary()
                    .map(|s| *s.stream_status() == aws_sdk_kinesis::types::StreamStatus::Active)
            });
        if active == Some(true) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn emulator_clients() -> Option<(aws_sdk_kinesis::Client, aws_sdk_dynamodb::Client)> {
    use aws_sdk_kinesis::config::{BehaviorVersion, Credentials, Region};
    let (Ok(kinesis_endpoint), Ok(dynamodb_endpoint)) = (
        std::env::var("KINESIS_ENDPOINT"),
        std::env::var("DYNAMODB_ENDPOINT"),
    ) else {
        return None;
    };
    let kinesis = aws_sdk_kinesis::Client::from_conf(
        aws_sdk_kinesis::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("test", "test", None, None, "static"))
            .endpoint_url(kinesis_endpoint)
            .build(),
    );
    let dynamodb = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::Config::builder()
            .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
            .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                "test", "test", None, None, "static",
            ))
            .endpoint_url(dynamodb_endpoint)
            .build(),
    );
    Some((kinesis, dynamodb))
}

/// The tag that marks a bench stream as completely loaded (value: the number of records).
const LOADED_TAG: &str = "shardwise-bench-loaded";

/// Makes sure stream `name` holds exactly `records` records of `size` bytes, loading it when it
/// does not. kinesis-local is slow to load (its PutRecords cost grows with the records already in
/// the shard: about an hour for W1), so a loaded stream is tagged and reused by later runs against
/// the same emulator (start it with `SHOULD_PERSIST_DATA=true` to keep it across restarts).
async fn ensure_loaded(
    kinesis: &aws_sdk_kinesis::Client,
    name: &str,
    shards: i32,
    records: usize,
    size: usize,
) {
    let tags = kinesis
        .list_tags_for_stream()
        .stream_name(name)
        .send()
        .await;
    match tags {
        Ok(out) => {
            let loaded = out
                .tags()
                .iter()
                .find(|t| t.key() == LOADED_TAG)
                .and_then(|t| t.value())
                .and_then(|v| v.parse::<usize>().ok());
            if loaded == Some(records) {
                println!("{name}: reusing the loaded stream ({records} records)");
                return;
            }
            println!("{name}: exists but is not completely loaded; deleting it and loading again");
            let _ = kinesis.delete_stream().stream_name(name).send().await;
            while kinesis
                .describe_stream_summary()
                .stream_name(name)
                .send()
                .await
                .is_ok()
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_resource_not_found_exception()) => {}
        Err(e) => panic!("{name}: cannot list its tags: {e:?}"),
    }
    kinesis
        .create_stream()
        .stream_name(name)
        .shard_count(shards)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{name}: cannot create it: {e:?}"));
    wait_active(kinesis, name).await;
    println!(
        "{name}: loading {records} records of {size} B into {shards} shards (not measured; slow on kinesis-local)"
    );
    let loading = Instant::now();
    let payload = aws_sdk_kinesis::primitives::Blob::new(vec![b'x'; size]);
    // kinesis-local's PutRecords costs time in proportion to the records already in the shard
    // (it hashes the shard's whole record list for every entry), while a single PutRecord does
    // not: batches of 500 while the shards are small, then single records, 16 in flight. This
    // loads W1 in about 10 minutes instead of an hour.
    let batched = records.min(4_000 * usize::try_from(shards).unwrap_or(1));
    let ids: Vec<usize> = (0..batched).collect();
    for chunk in ids.chunks(500) {
        let entries: Vec<_> = chunk
            .iter()
            .filter_map(|i| {
                aws_sdk_kinesis::types::PutRecordsRequestEntry::builder()
                    .partition_key(format!("key-{i}"))
                    .data(payload.clone())
                    .build()
                    .ok()
            })
            .collect();
        loop {
            match kinesis
                .put_records()
                .stream_name(name)
                .set_records(Some(entries.clone()))
                .send()
                .await
            {
                Ok(out) if out.failed_record_count().unwrap_or(0) == 0 => break,
                // The emulator never fails single entries; a partial failure would leave the
                // stream with a different record count, so the whole batch is not resent.
                Ok(out) => panic!(
                    "{name}: {} records of a PutRecords failed",
                    out.failed_record_count().unwrap_or(0)
                ),
                Err(e) => {
                    eprintln!("{name}: PutRecords failed, retrying: {e:?}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }
    futures_util::stream::iter(batched..records)
        .map(|i| {
            let (kinesis, payload) = (&kinesis, payload.clone());
            async move {
                while let Err(e) = kinesis
                    .put_record()
                    .stream_name(name)
                    .partition_key(format!("key-{i}"))
                    .data(payload.clone())
                    .send()
                    .await
                {
                    eprintln!("{name}: PutRecord failed, retrying: {e:?}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        })
        .buffer_unordered(16)
        .collect::<()>()
        .await;
    kinesis
        .add_tags_to_stream()
        .stream_name(name)
        .tags(LOADED_TAG, records.to_string())
        .send()
        .await
        .unwrap_or_else(|e| panic!("{name}: cannot tag it: {e:?}"));
    println!("{name}: loaded in {:.0} s", loading.elapsed().as_secs_f64());
}

/// The workloads against the emulators: make sure the stream is loaded (not measured),
/// then consume with DynamoDB leases in a new lease table from TRIM_HORIZON until every record
/// was seen, measuring this process's CPU time and peak RSS over the consumption only.
async fn emulator_workload(label: &str, shards: i32, records: usize, size: usize) {
    let Some((kinesis, dynamodb)) = emulator_clients() else {
        println!("{label}: skipped (set KINESIS_ENDPOINT and DYNAMODB_ENDPOINT)");
        return;
    };
    let stream = format!("shardwise-bench-{}", label.to_lowercase());
    ensure_loaded(&kinesis, &stream, shards, records, size).await;
    let table = format!("{stream}-leases-{}", std::process::id());
    // Reset the peak RSS so it covers the consumption only (Linux: "5" clears VmHWM).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let before = status_mb("VmRSS:");
    let store =
        shardwise::lease::dynamodb::DynamoDbLeaseStore::new(dynamodb.clone(), table.clone())
            .unwrap_or_else(|e| panic!("{e}"));
    let cpu_before = cpu_seconds();
    let wall = consume(Arc::new(kinesis), Arc::new(store), &stream, records).await;
    let cpu = cpu_seconds() - cpu_before;
    println!(
        "emulator {label}: consumed {records} records of {size} B from {shards} shards (polling, DynamoDB leases): {:.1} s wall, {:.0} records/s, {:.2} CPU-s, peak RSS {:.0} MB ({:.0} MB before consuming)",
        wall.as_secs_f64(),
        records as f64 / wall.as_secs_f64(),
        cpu,
        peak_rss_mb(),
        before
    );
    let _ = dynamodb.delete_table().table_name(&table).send().await;
}

#[tokio::main]
async fn main() {
    // The emulator workloads run alone, so that the process's CPU time and peak RSS are the
    // consumer's and not left over from the in-memory runs.
    if let Ok(which) = std::env::var("SHARDWISE_BENCH_EMULATOR_WORKLOADS") {
        // "W1" or "W2" runs one of them; any other value runs both.
        if which != "W2" {
            emulator_workload("W1", 4, 200_000, 100).await;
        }
        if which != "W1" {
            emulator_workload("W2", 16, 100_000, 1_000).await;
        }
        return;
    }
    in_memory("in memory W1", 4, 200_000, 100).await;
    in_memory("in memory W2", 16, 100_000, 1_000).await;
    first_record_on_emulators().await;
    println!(
        "emulator workloads: skipped (set SHARDWISE_BENCH_EMULATOR_WORKLOADS=1, W1 or W2 to run them alone)"
    );
}
