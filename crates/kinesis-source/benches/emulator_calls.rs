//! Where a backlogged shard's time goes against the Kinesis emulator at `KINESIS_ENDPOINT`:
//! the time one `GetRecords` call takes by the number of records it returns, through the same
//! SDK client and parsing the reader uses, for records of 100 B and 1,000 B. Prints figures,
//! decides nothing; skipped when `KINESIS_ENDPOINT` is not set.
//!
//! A call's time is split into the emulator's answer (until the response is parsed by the SDK,
//! which the client cannot tell apart) and the records' conversion into the reader's batches
//! (included). From it: how many records a second one shard can give at 5 calls a second, and
//! at back-to-back calls, for each call size.
//!
//! `cargo bench -p shardwise-kinesis-source --bench emulator_calls`

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use common::{Emulator, Harness};
use shardwise_kinesis_source::{KinesisApi, StartPosition, StreamId};

/// A new stream of `shards` shards on the emulator, loaded with `records` records of `size`
/// bytes (through `PutRecords`, 500 at a time).
async fn load(emulator: &Emulator, stream: &str, shards: u32, records: usize, size: usize) {
    emulator.create_stream(stream, shards).await;
    let client = &emulator.0;
    let payload = Blob::new(vec![b'x'; size]);
    let ids: Vec<usize> = (0..records).collect();
    for chunk in ids.chunks(500) {
        let entries: Vec<_> = chunk
            .iter()
            .map(|i| {
                PutRecordsRequestEntry::builder()
                    .partition_key(format!("k{i}"))
                    .data(payload.clone())
                    .build()
                    .unwrap()
            })
            .collect();
        client
            .put_records()
            .stream_name(stream)
            .set_records(Some(entries))
            .send()
            .await
            .unwrap();
    }
}

/// Reads shard `shard` of the stream `rounds` times with calls of `limit` records, back to
/// back; the time of each call and the records returned.
async fn calls(
    api: &dyn KinesisApi,
    stream: &StreamId,
    shard: &str,
    limit: u32,
    rounds: usize,
) -> (Vec<Duration>, usize) {
    let mut times = Vec::new();
    let mut returned = 0usize;
    for _ in 0..rounds {
        let mut iterator = Some(
            api.get_shard_iterator(stream, shard, &StartPosition::TrimHorizon)
                .await
                .unwrap(),
        );
        while let Some(current) = iterator.take() {
            let started = Instant::now();
            let out = api.get_records(stream, &current, limit).await.unwrap();
            if out.records.is_empty() {
                break;
            }
            times.push(started.elapsed());
            returned += out.records.len();
            iterator = out.next_iterator;
        }
    }
    (times, returned)
}

/// Reads every shard of the stream at once, calls of `limit` records back to back on each;
/// the records per second of all of them together.
async fn all_at_once(
    client: &aws_sdk_kinesis::Client,
    stream: &StreamId,
    shards: usize,
    limit: u32,
) -> f64 {
    let started = Instant::now();
    let tasks: Vec<_> = (0..shards)
        .map(|i| {
            let (client, stream) = (client.clone(), stream.clone());
            tokio::spawn(async move {
                calls(&client, &stream, &format!("shardId-{i:012}"), limit, 1)
                    .await
                    .1
            })
        })
        .collect();
    let mut records = 0;
    for task in tasks {
        records += task.await.unwrap();
    }
    records as f64 / started.elapsed().as_secs_f64()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::var("KINESIS_ENDPOINT").is_err() {
        println!("skipped: KINESIS_ENDPOINT is not set");
        return;
    }
    let emulator = common::emulator();
    let client = emulator.0.clone();
    println!(
        "| record | records a call (asked) | records a call (got) | time a call (median) | per record | records/s at 5 calls/s | records/s back to back |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    let pid = std::process::id();
    for (size, records) in [(100, 40_000), (1_000, 10_000)] {
        let name = format!("calls-{size}-{pid}");
        load(&emulator, &name, 1, records, size).await;
        let stream = StreamId::Name(name.clone());
        for limit in [500, 1_000, 2_000, 4_000, 10_000] {
            let (mut times, returned) =
                calls(&client, &stream, "shardId-000000000000", limit, 2).await;
            // The emulator's cost may grow with the position in the shard: the first and the
            // last call of a pass.
            let pass = times.len() / 2;
            let first = times.first().copied().unwrap_or_default();
            let last = times
                .get(pass.saturating_sub(1))
                .copied()
                .unwrap_or_default();
            times.sort();
            let time = times.get(times.len() / 2).copied().unwrap_or_default();
            let per_call = returned as f64 / times.len().max(1) as f64;
            let per_record = time.as_secs_f64() / per_call.max(1.0);
            let paced = (per_call * 5.0).min(per_call / time.as_secs_f64());
            println!(
                "| {size} B | {limit} | {per_call:.0} | {:.1} ms ({:.1} at the start of the shard, {:.1} at its end) | {:.1} µs | {paced:.0} | {:.0} |",
                time.as_secs_f64() * 1e3,
                first.as_secs_f64() * 1e3,
                last.as_secs_f64() * 1e3,
                per_record * 1e6,
                per_call / time.as_secs_f64(),
            );
        }
        let _ = client.delete_stream().stream_name(&name).send().await;
    }
    println!();
    println!("| record | shards read at once | records a call (asked) | records/s, all shards |");
    println!("| --- | --- | --- | --- |");
    for (size, shards, records) in [(100, 4, 20_000), (1_000, 16, 8_000)] {
        let name = format!("calls-{size}-{shards}-{pid}");
        load(&emulator, &name, shards, records, size).await;
        let stream = StreamId::Name(name.clone());
        for limit in [1_000, 4_000, 10_000] {
            let rate = all_at_once(&client, &stream, shards as usize, limit).await;
            println!("| {size} B | {shards} | {limit} | {rate:.0} |");
        }
        let _ = client.delete_stream().stream_name(&name).send().await;
    }
}
