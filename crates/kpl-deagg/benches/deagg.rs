//! Deaggregation throughput against a minimal baseline, in the same process.
//!
//! The baseline only checks the magic, computes the MD5 over the body and decodes the protobuf
//! without copying: the least any correct deaggregator must do. The crate runs with full
//! validation (required fields, key-table indices, explicit hash keys) and builds its
//! `UserRecord`s. Run with `cargo bench -p shardwise-kpl-deagg`; set `DEAGG_BENCH_ROUNDS` to
//! change the number of rounds (best round counts).

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use md5::{Digest, Md5};
use prost::Message;
use shardwise_kpl_deagg::{
    Aggregator, AggregatorConfig, DIGEST_SIZE, Deaggregator, MAGIC, UserRecord,
};

/// The baseline's view of the format: plain prost types, zero-copy `Bytes` fields.
#[derive(Clone, PartialEq, Message)]
struct BaselineAggregate {
    #[prost(bytes = "bytes", repeated, tag = "1")]
    partition_keys: Vec<Bytes>,
    #[prost(bytes = "bytes", repeated, tag = "2")]
    explicit_hash_keys: Vec<Bytes>,
    #[prost(message, repeated, tag = "3")]
    records: Vec<BaselineRecord>,
}

#[derive(Clone, PartialEq, Message)]
struct BaselineRecord {
    #[prost(uint64, tag = "1")]
    partition_key_index: u64,
    #[prost(uint64, optional, tag = "2")]
    explicit_hash_key_index: Option<u64>,
    #[prost(bytes = "bytes", tag = "3")]
    data: Bytes,
}

/// Magic, MD5, decode; returns the number of sub-records.
fn baseline(data: &Bytes) -> usize {
    if data.len() <= MAGIC.len() + DIGEST_SIZE || data[..MAGIC.len()] != MAGIC {
        return 1;
    }
    let body_end = data.len() - DIGEST_SIZE;
    let body = data.slice(MAGIC.len()..body_end);
    if Md5::digest(&body).as_slice() != &data[body_end..] {
        return 1;
    }
    match BaselineAggregate::decode(body) {
        Ok(message) => black_box(message).records.len(),
        Err(_) => 1,
    }
}

struct Workload {
    name: &'static str,
    aggregates: Vec<Bytes>,
    sub_records: usize,
    bytes: usize,
}

/// Deterministic filler so that data is not trivially compressible or constant.
fn filler(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 56) as u8
        })
        .collect()
}

fn workload(
    name: &'static str,
    aggregates: usize,
    per_aggregate: usize,
    data_len: usize,
) -> Workload {
    let config = AggregatorConfig::new()
        .with_max_size(10 * 1024 * 1024)
        .unwrap_or_default();
    let mut aggregator = Aggregator::new(config);
    let mut out = Vec::with_capacity(aggregates);
    let mut bytes = 0;
    for a in 0..aggregates {
        for r in 0..per_aggregate {
            let n = (a * per_aggregate + r) as u64;
            let key = format!("{:016x}", n.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            if let Err(error) = aggregator.add(&key, None, filler(n, data_len)) {
                panic!("building the workload: {error}");
            }
        }
        match aggregator.flush() {
            Some(put) if put.aggregated && put.user_records == per_aggregate => {
                bytes += put.data.len();
                out.push(put.data);
            }
            _ => panic!("building the workload: aggregate not as planned"),
        }
    }
    Workload {
        name,
        aggregates: out,
        sub_records: aggregates * per_aggregate,
        bytes,
    }
}

fn time(run: impl Fn() -> usize, expected: usize) -> Duration {
    let start = Instant::now();
    let count = run();
    let elapsed = start.elapsed();
    assert_eq!(count, expected, "every sub-record must be seen");
    elapsed
}

fn main() {
    let rounds = std::env::var("DEAGG_BENCH_ROUNDS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(7_u32);
    let deaggregator = Deaggregator::new();
    for (name, aggregates, per_aggregate, data_len) in [
        (
            "W1: 10,000 aggregates x 100 sub-records x 100 B",
            10_000,
            100,
            100,
        ),
        (
            "W2: 1,000 aggregates x 10 sub-records x 10 KiB",
            1_000,
            10,
            10 * 1024,
        ),
    ] {
        let w = workload(name, aggregates, per_aggregate, data_len);
        let run_baseline = || w.aggregates.iter().map(baseline).sum::<usize>();
        let run_crate = || {
            w.aggregates
                .iter()
                .map(|data| match deaggregator.deaggregate("a", data.clone()) {
                    Ok(out) => black_box(out.records).len(),
                    Err(error) => panic!("{error}"),
                })
                .sum::<usize>()
        };
        let mut reused: Vec<UserRecord> = Vec::new();
        let mut run_crate_into = || {
            w.aggregates
                .iter()
                .map(|data| {
                    reused.clear();
                    match deaggregator.deaggregate_into("a", data.clone(), None, &mut reused) {
                        Ok(report) => black_box(&reused).len().min(report.delivered),
                        Err(error) => panic!("{error}"),
                    }
                })
                .sum::<usize>()
        };
        let mut best = [Duration::MAX; 3];
        for _ in 0..rounds {
            best[0] = best[0].min(time(run_baseline, w.sub_records));
            best[1] = best[1].min(time(run_crate, w.sub_records));
            let start = Instant::now();
            let count = run_crate_into();
            best[2] = best[2].min(start.elapsed());
            assert_eq!(count, w.sub_records);
        }
        println!(
            "{} ({} MB, best of {rounds} rounds)",
            w.name,
            w.bytes / 1_000_000
        );
        let figures = |label: &str, elapsed: Duration| {
            let secs = elapsed.as_secs_f64();
            println!(
                "  {label:<34} {:>11.0} sub-records/s {:>7.1} MB/s  ratio {:.3}",
                w.sub_records as f64 / secs,
                w.bytes as f64 / secs / 1e6,
                best[0].as_secs_f64() / secs,
            );
        };
        figures("baseline (magic, MD5, decode)", best[0]);
        figures("deaggregate (full validation)", best[1]);
        figures("deaggregate_into (reused Vec)", best[2]);
    }
}
