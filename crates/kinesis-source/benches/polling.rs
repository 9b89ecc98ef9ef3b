//! Polling reader throughput: records per second and CPU per record, with 1 and 16 shards.
//!
//! - In memory, under a paused tokio clock: the service's pacing (5 calls/s per shard, idle
//!   pauses) costs no wall time, so the figures are the reader's own overhead (plus the
//!   in-memory Kinesis handing out records).
//! - Against the emulator at `KINESIS_ENDPOINT` (when set): a small workload (2,000 records per
//!   stream; kinesis-local writes ~400 records/s), real time, the SDK's HTTP and JSON included.
//!
//! CPU time is the run time of the process's threads from `/proc/self/task/*/schedstat`
//! (Linux, nanoseconds; it includes the SDK's HTTP and JSON work against the emulator).
//!
//! `cargo bench -p shardwise-kinesis-source --bench polling`

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_kinesis::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, StreamStatus};
use shardwise_kinesis_source::MemoryBudget;
use shardwise_kinesis_source::testkit::InMemoryKinesis;
use shardwise_kinesis_source::{
    KinesisApi, PollingConfig, PollingReader, StartPosition, StreamId, list_all_shards,
};

const RECORD_BYTES: usize = 100;

/// CPU time of this process so far: the run time of each of its threads from
/// `/proc/self/task/*/schedstat` (nanoseconds), or user + system time from `/proc/self/stat`
/// (10 ms ticks) where that is missing. Threads that exit are lost from the sum; the runtimes
/// here keep theirs.
fn cpu_time() -> Duration {
    let mut nanos: u64 = 0;
    let mut threads = 0;
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for task in tasks.flatten() {
            let stat = std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
            if let Some(run) = stat
                .split_whitespace()
                .next()
                .and_then(|f| f.parse::<u64>().ok())
            {
                nanos += run;
                threads += 1;
            }
        }
    }
    if threads > 0 {
        return Duration::from_nanos(nanos);
    }
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line: 12 and 13 after the name.
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // USER_HZ is 100 on Linux.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

struct Figures {
    label: String,
    records: usize,
    wall: Duration,
    cpu: Duration,
    virtual_time: Option<Duration>,
}

impl Figures {
    fn print(&self) {
        let per_s = self.records as f64 / self.wall.as_secs_f64();
        let cpu_per_record = self.cpu.as_secs_f64() * 1e6 / self.records as f64;
        let virtual_time = self
            .virtual_time
            .map(|v| format!(", {:.1} s of service pacing (virtual)", v.as_secs_f64()))
            .unwrap_or_default();
        println!(
            "{:<34} {:>8} records  {:>7.3} s wall  {:>11.0} records/s  {:>6.2} µs CPU/record{virtual_time}",
            self.label,
            self.records,
            self.wall.as_secs_f64(),
            per_s,
            cpu_per_record,
        );
    }
}

/// Settings as a caught-up consumer would run them (the service limits hold).
fn config() -> PollingConfig {
    PollingConfig {
        idle_time_between_reads: Duration::from_millis(200),
        ..PollingConfig::default()
    }
}

/// Reads `expected[i]` records from each shard at once; returns when all arrived.
async fn read_all(api: Arc<dyn KinesisApi>, stream: &StreamId, shards: Vec<(String, usize)>) {
    let tasks: Vec<_> = shards
        .into_iter()
        .map(|(shard, want)| {
            let api = api.clone();
            let stream = stream.clone();
            tokio::spawn(async move {
                let mut reader = PollingReader::start(
                    api,
                    stream,
                    shard.clone(),
                    StartPosition::TrimHorizon,
                    config(),
                    MemoryBudget::unlimited(),
                );
                let mut got = 0;
                while got < want {
                    let batch = reader
                        .next_batch()
                        .await
                        .expect("the reader ended early")
                        .expect("the reader failed");
                    got += batch.records.len();
                }
                assert_eq!(got, want, "{shard}");
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("reader task");
    }
}

fn in_memory(shard_count: u32, total: usize) -> Figures {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let kinesis = Arc::new(InMemoryKinesis::new());
        kinesis.create_stream("bench", shard_count);
        let width = u128::MAX / u128::from(shard_count);
        let data = bytes::Bytes::from(vec![b'x'; RECORD_BYTES]);
        let per_shard = total / shard_count as usize;
        let mut shards = Vec::new();
        for s in 0..shard_count {
            let mut shard = String::new();
            for i in 0..per_shard {
                shard = kinesis
                    .put_with_hash_key(
                        "bench",
                        &format!("k{i}"),
                        u128::from(s) * width,
                        data.clone(),
                    )
                    .expect("put")
                    .0;
            }
            shards.push((shard, per_shard));
        }
        let virtual_start = tokio::time::Instant::now();
        let (wall, cpu) = (Instant::now(), cpu_time());
        read_all(kinesis, &StreamId::Name("bench".into()), shards).await;
        Figures {
            label: format!("in memory, {shard_count} shard(s)"),
            records: per_shard * shard_count as usize,
            wall: wall.elapsed(),
            cpu: cpu_time().saturating_sub(cpu),
            virtual_time: Some(virtual_start.elapsed()),
        }
    })
}

async fn emulator(endpoint: &str, shard_count: u32, total: usize) -> Figures {
    let client = aws_sdk_kinesis::Client::from_conf(
        aws_sdk_kinesis::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("test", "test", None, None, "static"))
            .endpoint_url(endpoint)
            .build(),
    );
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let name = format!("bench-{shard_count}-{}-{nanos}", std::process::id());
    client
        .create_stream()
        .stream_name(&name)
        .shard_count(i32::try_from(shard_count).expect("shard count"))
        .send()
        .await
        .expect("CreateStream");
    loop {
        let out = client
            .describe_stream_summary()
            .stream_name(&name)
            .send()
            .await
            .expect("DescribeStreamSummary");
        if out
            .stream_description_summary()
            .is_some_and(|s| *s.stream_status() == StreamStatus::Active)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let api: Arc<dyn KinesisApi> = Arc::new(client.clone());
    let stream = StreamId::Name(name.clone());
    let listed = list_all_shards(api.as_ref(), &stream, None, None)
        .await
        .expect("ListShards");
    let mut counts: std::collections::BTreeMap<String, usize> =
        listed.iter().map(|s| (s.shard_id.clone(), 0)).collect();
    let ranges: Vec<u128> = listed.iter().map(|s| s.hash_range.start).collect();
    let data = vec![b'x'; RECORD_BYTES];
    for chunk in 0..total.div_ceil(500) {
        let entries: Vec<PutRecordsRequestEntry> = (chunk * 500..((chunk + 1) * 500).min(total))
            .map(|i| {
                PutRecordsRequestEntry::builder()
                    .partition_key(format!("k{i}"))
                    .explicit_hash_key(ranges[i % ranges.len()].to_string())
                    .data(Blob::new(data.clone()))
                    .build()
                    .expect("entry")
            })
            .collect();
        let out = client
            .put_records()
            .stream_name(&name)
            .set_records(Some(entries))
            .send()
            .await
            .expect("PutRecords");
        assert_eq!(out.failed_record_count(), Some(0), "no failed puts");
        for r in out.records() {
            if let Some(shard) = r.shard_id() {
                *counts.entry(shard.to_owned()).or_default() += 1;
            }
        }
    }
    let shards: Vec<(String, usize)> = counts.into_iter().filter(|(_, n)| *n > 0).collect();
    let (wall, cpu) = (Instant::now(), cpu_time());
    read_all(api, &stream, shards).await;
    let figures = Figures {
        label: format!("emulator, {shard_count} shard(s)"),
        records: total,
        wall: wall.elapsed(),
        cpu: cpu_time().saturating_sub(cpu),
        virtual_time: None,
    };
    let _ = client.delete_stream().stream_name(&name).send().await;
    figures
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing and wants a quick run.
    let quick = !std::env::args().any(|a| a == "--bench");
    let total = if quick { 16_000 } else { 400_000 };
    println!("polling reader, {RECORD_BYTES}-byte records");
    for shards in [1, 16] {
        in_memory(shards, total).print();
    }
    match std::env::var("KINESIS_ENDPOINT") {
        Ok(endpoint) if !quick => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            for shards in [1, 16] {
                runtime.block_on(emulator(&endpoint, shards, 2_000)).print();
            }
        }
        Ok(_) => println!("(emulator figures only with --bench)"),
        Err(_) => println!("(KINESIS_ENDPOINT not set: no emulator figures)"),
    }
}
