//! Renews 1, 100 and 1,000 held leases against the Redis at `REDIS_URL` (default
//! `redis://127.0.0.1:6379`) and prints round trips and time per renewal round, for
//! `renew_many` (one script call) and for renewing one by one.
//!
//! Round trips are counted twice: the commands the store sent, and the script calls the server
//! executed according to `INFO commandstats` (`evalsha`, `eval`, `script load`, summed over all
//! clients, so run it on a quiet server).
//!
//! Run: `cargo bench -p shardwise-lease-redis`

// A benchmark binary: a failure is a panic with a message.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::{Duration, Instant};

use shardwise_lease_core::{Checkpoint, Lease, LeaseKey, LeaseStore, Race, WorkerId};
use shardwise_lease_redis::{RedisConfig, RedisLeaseStore};

const ROUNDS: usize = 50;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let prefix = format!("shardwise-bench:{}", std::process::id());
    let config = RedisConfig::builder(url.as_str(), prefix)
        .build()
        .expect("config");
    let store = RedisLeaseStore::connect(&config).await.expect("connect");
    store.create_table_if_missing().await.expect("reach Redis");
    store.delete_all_leases().await.expect("clean prefix");
    let mut stats = redis::Client::open(url.as_str())
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("stats connection");
    let me = WorkerId::new("bench-worker").expect("worker id");

    println!("Redis renewals ({ROUNDS} rounds each)");
    println!(
        "{:>7} | {:<10} | {:>14} | {:>17} | {:>13} | {:>13} | {:>12}",
        "leases",
        "method",
        "commands/round",
        "server cmds/round",
        "median/round",
        "mean/round",
        "per lease"
    );
    let mut held: Vec<(LeaseKey, u64)> = Vec::new();
    for n in [1usize, 100, 1_000] {
        while held.len() < n {
            let key = LeaseKey::new(format!("shardId-{:012}", held.len())).expect("key");
            let lease = Lease::new(key.clone(), Checkpoint::TrimHorizon);
            assert!(
                store
                    .create_if_absent(&lease)
                    .await
                    .expect("create")
                    .is_won()
            );
            let taken = store
                .take(&key, 0, &me)
                .await
                .expect("take")
                .won()
                .expect("won");
            held.push((key, taken.counter));
        }
        // Warm-up: the scripts are loaded once.
        renew_round(&store, &me, &mut held, true).await;
        renew_round(&store, &me, &mut held, false).await;
        for batch in [true, false] {
            let rounds = if !batch && n == 1_000 { 5 } else { ROUNDS };
            let mut times = Vec::with_capacity(rounds);
            let server_before = server_commands(&mut stats).await;
            let sent_before = store.commands_sent();
            for _ in 0..rounds {
                let started = Instant::now();
                renew_round(&store, &me, &mut held, batch).await;
                times.push(started.elapsed());
            }
            let sent = store.commands_sent() - sent_before;
            let server = server_commands(&mut stats).await - server_before;
            times.sort();
            let median = times[times.len() / 2];
            let mean = times.iter().sum::<Duration>() / rounds as u32;
            println!(
                "{:>7} | {:<10} | {:>14} | {:>17} | {:>13?} | {:>13?} | {:>12?}",
                n,
                if batch { "renew_many" } else { "renew each" },
                sent as f64 / rounds as f64,
                server as f64 / rounds as f64,
                median,
                mean,
                median / n as u32,
            );
        }
    }
    store.delete_all_leases().await.expect("clean up");
}

async fn renew_round(
    store: &RedisLeaseStore,
    me: &WorkerId,
    held: &mut [(LeaseKey, u64)],
    batch: bool,
) {
    let outcomes = if batch {
        store.renew_many(me, held).await
    } else {
        let mut outcomes = Vec::with_capacity(held.len());
        for (key, counter) in held.iter() {
            outcomes.push(store.renew(key, me, *counter).await);
        }
        outcomes
    };
    for ((key, counter), outcome) in held.iter_mut().zip(outcomes) {
        match outcome {
            Ok(Race::Won(new)) => *counter = new,
            other => panic!("renew {key}: {other:?}"),
        }
    }
}

/// Script calls the server has executed so far. Commands a script runs (`redis.call`) are
/// counted under their own names, so only the top-level script commands are summed: a script
/// call is one `evalsha` (plus `script load` and `eval` when a script had to be loaded).
async fn server_commands(conn: &mut redis::aio::MultiplexedConnection) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await
        .expect("INFO commandstats");
    info.lines()
        .filter_map(|line| line.strip_prefix("cmdstat_"))
        .filter_map(|line| line.split_once(':'))
        .filter(|(name, _)| matches!(*name, "evalsha" | "eval" | "script|load" | "script"))
        .filter_map(|(_, stats)| {
            stats
                .split(',')
                .find_map(|field| field.strip_prefix("calls="))
                .and_then(|calls| calls.parse::<u64>().ok())
        })
        .sum()
}
